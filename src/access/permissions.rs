//! CALLER_PERMISSIONS: which methods each named caller may call. Checked on the one path every
//! RPC takes, after authentication named the caller.

use std::collections::HashMap;

use super::method::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Allowed {
    Every,
    Only(Vec<Method>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerPermissions {
    by_caller: HashMap<String, Allowed>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerPermissionsError {
    #[error("CALLER_PERMISSIONS entry {0} is not `name=Method+Method` (or `name=*`)")]
    Malformed(usize),
    #[error("CALLER_PERMISSIONS entry {0} names {1:?}, which is not a method (known: {known})", known = Method::ALL.iter().map(|method| method.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownMethod(usize, String),
    #[error("CALLER_PERMISSIONS names the caller {0:?} twice")]
    DuplicateCaller(String),
    #[error("CALLER_PERMISSIONS is set but holds no entry")]
    Empty,
}

impl CallerPermissions {
    /// `signup=Verify+CheckDuplicate,deletion=Unlink,ops=*`.
    pub fn parse(spec: &str) -> Result<Self, CallerPermissionsError> {
        let mut by_caller = HashMap::new();
        let entries = spec.split(',').map(str::trim).filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let position = index + 1;
            let (name, methods) = entry
                .split_once('=')
                .map(|(name, methods)| (name.trim(), methods.trim()))
                .filter(|(name, methods)| !name.is_empty() && !methods.is_empty())
                .ok_or(CallerPermissionsError::Malformed(position))?;
            let allowed = if methods == "*" {
                Allowed::Every
            } else {
                let parsed = methods
                    .split('+')
                    .map(str::trim)
                    .map(|method| {
                        Method::from_name(method)
                            .ok_or_else(|| CallerPermissionsError::UnknownMethod(position, method.to_owned()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Allowed::Only(parsed)
            };
            if by_caller.insert(name.to_owned(), allowed).is_some() {
                return Err(CallerPermissionsError::DuplicateCaller(name.to_owned()));
            }
        }
        if by_caller.is_empty() {
            return Err(CallerPermissionsError::Empty);
        }
        Ok(Self { by_caller })
    }

    /// Whether `caller` (None: not authenticated) may call `method`. A caller without an entry
    /// may call nothing.
    pub(crate) fn allows(&self, caller: Option<&str>, method: Method) -> bool {
        match caller.and_then(|caller| self.by_caller.get(caller)) {
            Some(Allowed::Every) => true,
            Some(Allowed::Only(methods)) => methods.contains(&method),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_methods_or_everything_and_unknown_callers_get_nothing() {
        let permissions =
            CallerPermissions::parse("signup=Verify+CheckDuplicate, deletion=Unlink,ops=*").unwrap();
        assert!(permissions.allows(Some("signup"), Method::Verify));
        assert!(permissions.allows(Some("signup"), Method::CheckDuplicate));
        assert!(!permissions.allows(Some("signup"), Method::Unlink));
        assert!(permissions.allows(Some("deletion"), Method::Unlink));
        assert!(!permissions.allows(Some("deletion"), Method::Verify));
        assert!(permissions.allows(Some("ops"), Method::Unlink));
        assert!(!permissions.allows(Some("stranger"), Method::Verify));
        assert!(!permissions.allows(None, Method::Verify));
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
