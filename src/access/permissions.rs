//! CALLER_PERMISSIONS: which methods each named caller may call, and which purposes of session it
//! may begin. Checked on the one path every RPC takes, after authentication named the caller; the
//! purpose once BeginVerification's request is read.

use std::collections::HashMap;

use super::method::{Method, Rpc};
use crate::domain::VerificationPurpose;

/// What one caller may do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Grant {
    /// `name=*`.
    Every,
    Only {
        rpcs: Vec<Rpc>,
        /// The purposes its BeginVerification may begin: every one for a bare
        /// `BeginVerification`, none without BeginVerification.
        purposes: Vec<VerificationPurpose>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// `CALLER_PERMISSIONS=*`: every caller, every method, chosen in so many words.
    Everyone,
    /// A caller without an entry may call nothing.
    ByCaller(HashMap<String, Grant>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerPermissions {
    scope: Scope,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerPermissionsError {
    #[error("CALLER_PERMISSIONS entry {0} is not `name=Method+Method` (or `name=*`)")]
    Malformed(usize),
    #[error("CALLER_PERMISSIONS entry {0} names {1:?}, which is not a method (known: {known})", known = Rpc::known())]
    UnknownMethod(usize, String),
    #[error("CALLER_PERMISSIONS entry {0} names the purpose {1:?}, which is not one (known: {known}), as in `BeginVerification:SIGNUP|REVERIFY`", known = purpose_names())]
    UnknownPurpose(usize, String),
    #[error(
        "CALLER_PERMISSIONS entry {0}: only BeginVerification takes purposes (`BeginVerification:SIGNUP|REVERIFY`), not {1:?}"
    )]
    PurposesOnOtherMethod(usize, String),
    #[error("CALLER_PERMISSIONS names the caller {0:?} twice")]
    DuplicateCaller(String),
    #[error("CALLER_PERMISSIONS is set but holds no entry")]
    Empty,
}

/// A purpose's name in CALLER_PERMISSIONS: the proto's without `PURPOSE_` (`AGE_CHECK`).
fn purpose_name(purpose: VerificationPurpose) -> String {
    purpose.as_str().to_ascii_uppercase()
}

fn purpose_names() -> String {
    VerificationPurpose::ALL
        .into_iter()
        .map(purpose_name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One caller's items: `Verify+BeginVerification:SIGNUP|REVERIFY+Sandbox/Certify`.
fn parse_grant(position: usize, items: &str) -> Result<Grant, CallerPermissionsError> {
    if items == "*" {
        return Ok(Grant::Every);
    }
    let mut rpcs = Vec::new();
    let mut purposes = Vec::new();
    for item in items.split('+').map(str::trim) {
        let (name, purpose_list) = match item.split_once(':') {
            Some((name, list)) => (name.trim(), Some(list)),
            None => (item, None),
        };
        let rpc = Rpc::from_name(name)
            .ok_or_else(|| CallerPermissionsError::UnknownMethod(position, name.to_owned()))?;
        let granted: Vec<VerificationPurpose> = match (rpc, purpose_list) {
            (Rpc::Certification(Method::BeginVerification), None) => VerificationPurpose::ALL.to_vec(),
            (Rpc::Certification(Method::BeginVerification), Some(list)) => list
                .split('|')
                .map(str::trim)
                .map(|wanted| {
                    VerificationPurpose::ALL
                        .into_iter()
                        .find(|purpose| purpose_name(*purpose) == wanted)
                        .ok_or_else(|| CallerPermissionsError::UnknownPurpose(position, wanted.to_owned()))
                })
                .collect::<Result<_, _>>()?,
            (_, Some(_)) => {
                return Err(CallerPermissionsError::PurposesOnOtherMethod(
                    position,
                    name.to_owned(),
                ));
            }
            (_, None) => Vec::new(),
        };
        if !rpcs.contains(&rpc) {
            rpcs.push(rpc);
        }
        for purpose in granted {
            if !purposes.contains(&purpose) {
                purposes.push(purpose);
            }
        }
    }
    Ok(Grant::Only { rpcs, purposes })
}

impl CallerPermissions {
    /// `signup=BeginVerification:SIGNUP|REVERIFY+Verify+CheckDuplicate,deletion=Unlink,ops=*`, or
    /// `*` alone: every caller may call every method.
    pub fn parse(spec: &str) -> Result<Self, CallerPermissionsError> {
        if spec.trim() == "*" {
            return Ok(Self {
                scope: Scope::Everyone,
            });
        }
        let mut by_caller = HashMap::new();
        for (position, named) in super::named_entries(spec) {
            let (name, items) = named.ok_or(CallerPermissionsError::Malformed(position))?;
            let grant = parse_grant(position, items)?;
            if by_caller.insert(name.to_owned(), grant).is_some() {
                return Err(CallerPermissionsError::DuplicateCaller(name.to_owned()));
            }
        }
        if by_caller.is_empty() {
            return Err(CallerPermissionsError::Empty);
        }
        Ok(Self {
            scope: Scope::ByCaller(by_caller),
        })
    }

    /// The callers named, for the start-up check against CALLER_TOKENS; none for `*`.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        let names = match &self.scope {
            Scope::Everyone => None,
            Scope::ByCaller(by_caller) => Some(by_caller.keys().map(String::as_str)),
        };
        names.into_iter().flatten()
    }

    fn grant(&self, caller: Option<&str>) -> Option<&Grant> {
        match &self.scope {
            Scope::Everyone => Some(&Grant::Every),
            Scope::ByCaller(by_caller) => caller.and_then(|caller| by_caller.get(caller)),
        }
    }

    /// Whether `caller` (None: not authenticated) may call `rpc`. A caller without an entry may
    /// call nothing.
    pub(crate) fn allows(&self, caller: Option<&str>, rpc: Rpc) -> bool {
        match self.grant(caller) {
            Some(Grant::Every) => true,
            Some(Grant::Only { rpcs, .. }) => rpcs.contains(&rpc),
            None => false,
        }
    }

    /// Whether `caller` may begin a session of `purpose`.
    pub(crate) fn may_begin(&self, caller: Option<&str>, purpose: VerificationPurpose) -> bool {
        match self.grant(caller) {
            Some(Grant::Every) => true,
            Some(Grant::Only { purposes, .. }) => purposes.contains(&purpose),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFY: Rpc = Rpc::Certification(Method::Verify);
    const CHECK: Rpc = Rpc::Certification(Method::CheckDuplicate);
    const UNLINK: Rpc = Rpc::Certification(Method::Unlink);
    const BEGIN: Rpc = Rpc::Certification(Method::BeginVerification);

    #[test]
    fn entries_name_methods_or_everything_and_unknown_callers_get_nothing() {
        let permissions =
            CallerPermissions::parse("signup=Verify+CheckDuplicate, deletion=Unlink,ops=*").unwrap();
        assert!(permissions.allows(Some("signup"), VERIFY));
        assert!(permissions.allows(Some("signup"), CHECK));
        assert!(!permissions.allows(Some("signup"), UNLINK));
        assert!(permissions.allows(Some("deletion"), UNLINK));
        assert!(!permissions.allows(Some("deletion"), VERIFY));
        assert!(permissions.allows(Some("ops"), UNLINK));
        assert!(permissions.allows(Some("ops"), Rpc::SandboxCertify));
        assert!(!permissions.allows(Some("stranger"), VERIFY));
        assert!(!permissions.allows(None, VERIFY));
        let mut names: Vec<_> = permissions.names().collect();
        names.sort_unstable();
        assert_eq!(names, ["deletion", "ops", "signup"]);
    }

    #[test]
    fn a_lone_star_lets_every_caller_call_everything() {
        let permissions = CallerPermissions::parse(" * ").unwrap();
        assert!(permissions.allows(Some("anyone"), UNLINK));
        assert!(permissions.allows(None, Rpc::SandboxCertify));
        assert!(permissions.may_begin(Some("anyone"), VerificationPurpose::Recovery));
        assert_eq!(permissions.names().count(), 0);
    }

    #[test]
    fn begin_verification_grants_its_listed_purposes_and_bare_every_purpose() {
        let permissions = CallerPermissions::parse(
            "agegate=BeginVerification:AGE_CHECK+Verify,signup=BeginVerification:SIGNUP|REVERIFY+Verify,\
             any=BeginVerification,ops=*,tester=Verify+Sandbox/Certify",
        )
        .unwrap();
        assert!(permissions.allows(Some("agegate"), BEGIN));
        assert!(permissions.may_begin(Some("agegate"), VerificationPurpose::AgeCheck));
        assert!(!permissions.may_begin(Some("agegate"), VerificationPurpose::Recovery));
        assert!(permissions.may_begin(Some("signup"), VerificationPurpose::Reverify));
        assert!(!permissions.may_begin(Some("signup"), VerificationPurpose::AgeCheck));
        for purpose in VerificationPurpose::ALL {
            assert!(permissions.may_begin(Some("any"), purpose));
            assert!(permissions.may_begin(Some("ops"), purpose));
            assert!(!permissions.may_begin(Some("tester"), purpose));
            assert!(!permissions.may_begin(None, purpose));
        }
        assert!(permissions.allows(Some("tester"), Rpc::SandboxCertify));
        assert!(!permissions.allows(Some("signup"), Rpc::SandboxCertify));
    }

    #[test]
    fn mistakes_are_refused_with_their_position() {
        assert_eq!(
            CallerPermissions::parse("a=Verify,b"),
            Err(CallerPermissionsError::Malformed(2))
        );
        assert_eq!(
            CallerPermissions::parse("a=Verify+Delete"),
            Err(CallerPermissionsError::UnknownMethod(1, "Delete".into()))
        );
        assert_eq!(
            CallerPermissions::parse("a=Verify,b=BeginVerification:SIGNUP|PURPOSE_RECOVERY"),
            Err(CallerPermissionsError::UnknownPurpose(
                2,
                "PURPOSE_RECOVERY".into()
            ))
        );
        assert_eq!(
            CallerPermissions::parse("a=BeginVerification:"),
            Err(CallerPermissionsError::UnknownPurpose(1, String::new()))
        );
        assert_eq!(
            CallerPermissions::parse("a=Verify:SIGNUP"),
            Err(CallerPermissionsError::PurposesOnOtherMethod(1, "Verify".into()))
        );
        assert_eq!(
            CallerPermissions::parse("a=Verify,a=Unlink"),
            Err(CallerPermissionsError::DuplicateCaller("a".into()))
        );
        assert_eq!(
            CallerPermissions::parse(" , "),
            Err(CallerPermissionsError::Empty)
        );
        assert_eq!(
            CallerPermissions::parse("a="),
            Err(CallerPermissionsError::Malformed(1))
        );
    }
}
