//! Access records (접속기록, 「개인정보의 안전성 확보조치 기준」 article 8): who touched whose data,
//! when, from where, and for what. One record per call that reads or changes personal data or a
//! binding, whatever its outcome: the caller and the actor it acts for, the peer address, the
//! method, the session's purpose, the kind of work, the account and a pseudonym of the person,
//! the outcome and the trace id. Never a name, phone, birth date, CI, DI or secret: the person
//! is named by a keyed hash of the CI under AUDIT_KEY, so an auditor given a CI finds its
//! records and the records alone give no CI back.
//!
//! Records are written in chains ([`chain`]): each carries a MAC over its content and its
//! predecessor's MAC, so a changed, inserted or removed record is found by recomputing them.
//! They are read back for the monthly review: the records an [`export`] selects, as JSON
//! lines, and the [`report`] of a month against the months before.

pub mod chain;
pub mod export;
pub(crate) mod report;

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::domain::{Ci, FieldViolation};

/// What was done with the data (수행업무).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Read: a certification looked up, a holder answered.
    Lookup,
    /// Entered: a person recorded or bound, an expected person kept with a session.
    Entry,
    /// Changed: stored data re-encrypted or re-indexed.
    Change,
    /// Deleted: a binding ended, data purged.
    Deletion,
    /// Records or data taken out of the service.
    Download,
}

impl Work {
    pub const ALL: [Self; 5] = [
        Self::Lookup,
        Self::Entry,
        Self::Change,
        Self::Deletion,
        Self::Download,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Entry => "entry",
            Self::Change => "change",
            Self::Deletion => "deletion",
            Self::Download => "download",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|work| work.as_str() == text)
    }
}

/// The outcome of an answered call.
pub const OUTCOME_OK: &str = "OK";
/// The outcome of an operator command that failed (what it did before is in its log).
pub(crate) const OUTCOME_FAILED: &str = "FAILED";

/// AUDIT_KEY: the key of the person pseudonyms and of the chains' MACs, one subkey each, so a
/// pseudonym is never a MAC of something else.
#[derive(Clone)]
pub struct AuditKey {
    person: [u8; 32],
    chain: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("AUDIT_KEY is not valid base64")]
    NotBase64,
    #[error("AUDIT_KEY must decode to at least 32 bytes, got {0}")]
    TooShort(usize),
}

impl AuditKey {
    const MIN_LEN: usize = 32;

    pub fn from_base64(encoded: &str) -> Result<Self, AuditKeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| AuditKeyError::NotBase64)?;
        if bytes.len() < Self::MIN_LEN {
            return Err(AuditKeyError::TooShort(bytes.len()));
        }
        let subkey = |label: &[u8]| -> [u8; 32] { hmac(&bytes, &[label]) };
        Ok(Self {
            person: subkey(b"access-records:person"),
            chain: subkey(b"access-records:chain"),
        })
    }

    /// The person's pseudonym in records: hex of an HMAC of the canonical CI.
    pub fn person(&self, ci: &Ci) -> String {
        hex::encode(hmac(&self.person, &[ci.expose().as_bytes()]))
    }

    /// The MAC of a record's encoded content after its predecessor's MAC.
    fn chain_mac(&self, content: &[u8], previous: &[u8; 32]) -> [u8; 32] {
        hmac(&self.chain, &[content, previous])
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `x-actor`: the person a caller acts for (an operator's id in an internal tool).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Actor(String);

impl Actor {
    const MAX_LEN: usize = 64;
    const RULE: &str = "must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -";

    pub(crate) fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let fine = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._@-".contains(&byte));
        if fine {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Self::invalid())
        }
    }

    /// The refusal of an unusable `x-actor`.
    pub(crate) fn invalid() -> FieldViolation {
        FieldViolation::new("x-actor", "INVALID_ACTOR", Self::RULE)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who made a call and from where: what the transport (or an operator command) knows of it.
#[derive(Clone, Debug)]
pub(crate) struct Accessor {
    /// The caller's configured name (`anonymous` without authentication; [`Accessor::OPERATOR`]
    /// for a command run on the host).
    pub(crate) caller: String,
    pub(crate) actor: Option<Actor>,
    /// The IP address of the connection's peer.
    pub(crate) peer: Option<String>,
    /// The RPC or command.
    pub(crate) method: &'static str,
    pub(crate) trace_id: Option<String>,
}

impl Accessor {
    /// The caller of every operator command: no token or certificate names it.
    pub(crate) const OPERATOR: &str = "operator";
    /// The caller of what the service does on its own.
    const SERVICE: &str = "certification-service";

    /// An operator command (`method`) run on the host, by `actor` where the operator named
    /// themselves: no connection, so no peer, and no trace.
    pub(crate) fn operator(method: &'static str, actor: Option<Actor>) -> Self {
        Self {
            caller: Self::OPERATOR.to_owned(),
            actor,
            peer: None,
            method,
            trace_id: None,
        }
    }

    /// The service itself, doing `method` on its own (the background retention purge).
    pub(crate) fn service(method: &'static str) -> Self {
        Self {
            caller: Self::SERVICE.to_owned(),
            ..Self::operator(method, None)
        }
    }
}

/// Whose data a call touched and for what, as its use case learns it: the session's purpose,
/// the account, the person, and the kind of work where it is not the method's usual one. Each
/// is set once (the first fact stands); shared, as the transport reads it after the call.
///
/// A call that keeps a record ([`Subject::keeps`]) may have it written by the statement of its
/// own writes ([`Subject::ride`]): its [`Fate`] then tells the transport not to write another.
#[derive(Debug, Default)]
pub(crate) struct Subject {
    purpose: OnceLock<&'static str>,
    account: OnceLock<String>,
    /// The person's pseudonym ([`AuditKey::person`]).
    person: OnceLock<String>,
    work: OnceLock<Work>,
    /// Who calls, and the method's usual work: set where the call keeps a record.
    call: OnceLock<(Accessor, Work)>,
    fate: Arc<watch::Sender<Fate>>,
}

/// Where a call's record is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Not written: the transport writes it when the call ends.
    #[default]
    Open,
    /// In a statement of the call's writes, whose outcome is not known yet.
    Riding,
    /// Committed with the call's writes, its outcome OK.
    Written,
}

/// A record riding a statement: settle it with what the statement did. Dropped unsettled (its
/// task ended early), the record is the transport's again.
pub(crate) struct Rider {
    fate: Option<Arc<watch::Sender<Fate>>>,
}

impl Rider {
    /// `written`: the statement committed the record.
    pub(crate) fn settle(mut self, written: bool) {
        if let Some(fate) = self.fate.take() {
            fate.send_replace(if written { Fate::Written } else { Fate::Open });
        }
    }
}

impl Drop for Rider {
    fn drop(&mut self) {
        if let Some(fate) = self.fate.take() {
            fate.send_replace(Fate::Open);
        }
    }
}

impl Subject {
    /// The call by `accessor` keeps a record; `work` is its method's usual kind.
    pub(crate) fn keeps(&self, accessor: Accessor, work: Work) {
        let _ = self.call.set((accessor, work));
    }

    /// The call's record, ended with `outcome`, now; `None` when it keeps none.
    pub(crate) fn record(&self, outcome: &str) -> Option<AccessRecord> {
        let (accessor, work) = self.call.get()?;
        Some(AccessRecord::of(accessor, *work, self, outcome))
    }

    /// The call's record with `outcome` (and `work`, where given), for a statement that
    /// commits it with the call's writes, after which the call answers that outcome: `None`
    /// when the call keeps none, or its record is already taken.
    pub(crate) fn ride(&self, work: Option<Work>, outcome: &str) -> Option<(AccessRecord, Rider)> {
        let mut record = self.record(outcome)?;
        if let Some(work) = work {
            record.work = work;
        }
        let taken = self.fate.send_if_modified(|fate| {
            let open = *fate == Fate::Open;
            if open {
                *fate = Fate::Riding;
            }
            open
        });
        taken.then(|| {
            (
                record,
                Rider {
                    fate: Some(Arc::clone(&self.fate)),
                },
            )
        })
    }

    pub(crate) fn fate(&self) -> Fate {
        *self.fate.borrow()
    }

    /// The fate of the record once no statement carries it any more.
    pub(crate) async fn settled(&self) -> Fate {
        let mut fate = self.fate.subscribe();
        fate.wait_for(|fate| *fate != Fate::Riding)
            .await
            .map_or(Fate::Open, |fate| *fate)
    }

    pub(crate) fn purpose(&self, purpose: &'static str) {
        let _ = self.purpose.set(purpose);
    }

    pub(crate) fn account(&self, account: &str) {
        let _ = self.account.set(account.to_owned());
    }

    pub(crate) fn person(&self, key: &AuditKey, ci: &Ci) {
        let _ = self.person.set(key.person(ci));
    }

    /// The call did `work`, not its method's usual kind (a Verify that bound: an entry).
    pub(crate) fn did(&self, work: Work) {
        let _ = self.work.set(work);
    }
}

/// One access record, before it is chained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    /// UTC, to the microsecond (what both databases keep).
    pub at: DateTime<Utc>,
    pub caller: String,
    pub actor: Option<String>,
    pub peer: Option<String>,
    pub method: String,
    pub purpose: Option<String>,
    pub work: Work,
    pub account: Option<String>,
    pub person: Option<String>,
    /// [`OUTCOME_OK`] or the refusal's reason.
    pub outcome: String,
    pub trace_id: Option<String>,
}

impl AccessRecord {
    /// The record of a call by `accessor` on `subject`'s data (`work`, unless the call said
    /// otherwise), ended with `outcome`, now.
    pub(crate) fn of(accessor: &Accessor, work: Work, subject: &Subject, outcome: &str) -> Self {
        Self {
            at: crate::domain::stored_precision(Utc::now()),
            caller: accessor.caller.clone(),
            actor: accessor.actor.as_ref().map(|actor| actor.as_str().to_owned()),
            peer: accessor.peer.clone(),
            method: accessor.method.to_owned(),
            purpose: subject.purpose.get().map(|purpose| (*purpose).to_owned()),
            work: subject.work.get().copied().unwrap_or(work),
            account: subject.account.get().cloned(),
            person: subject.person.get().cloned(),
            outcome: outcome.to_owned(),
            trace_id: accessor.trace_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_short_plain_names() {
        assert!(Actor::parse("ops.kim@example-1_a").is_ok());
        assert!(Actor::parse(&"a".repeat(64)).is_ok());
        for bad in ["", &"a".repeat(65), "kim lee", "kim;drop", "김", "a\nb"] {
            assert_eq!(Actor::parse(bad).unwrap_err().reason, "INVALID_ACTOR", "{bad:?}");
        }
    }

    #[test]
    fn a_pseudonym_depends_on_the_key_and_is_not_the_ci_index() {
        let ci = Ci::parse("ci-of-one-person").unwrap();
        let one = AuditKey::from_base64(&STANDARD.encode([1u8; 32])).unwrap();
        let two = AuditKey::from_base64(&STANDARD.encode([2u8; 32])).unwrap();
        assert_eq!(one.person(&ci), one.person(&ci));
        assert_ne!(one.person(&ci), two.person(&ci));
        assert_eq!(one.person(&ci).len(), 64);
        let index = crate::domain::CiIndexKey::from_base64(&STANDARD.encode([1u8; 32])).unwrap();
        assert_ne!(
            one.person(&ci),
            index.ci_index(&ci).0,
            "a pseudonym is not a lookup key"
        );
        assert!(matches!(
            AuditKey::from_base64(&STANDARD.encode([1u8; 31])),
            Err(AuditKeyError::TooShort(31))
        ));
        assert!(matches!(
            AuditKey::from_base64("%%"),
            Err(AuditKeyError::NotBase64)
        ));
    }

    #[test]
    fn works_read_back() {
        for work in Work::ALL {
            assert_eq!(Work::parse(work.as_str()), Some(work));
        }
        assert_eq!(Work::parse("read"), None);
    }
}
