//! One person, one account: who holds a person, and why a binding can be refused. The store
//! decides these races; the transport reports them.

use chrono::{DateTime, Utc};

use super::AccountId;

/// Who holds a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub(crate) account_id: AccountId,
    pub(crate) bound_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindConflict {
    /// Another account holds this person.
    AlreadyRegistered,
    /// Another account already used this certification.
    CertificationReused,
    /// This account already holds another person.
    AccountHasIdentity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The account holds the person (now, or already since `bound_at`: binds are idempotent).
    Bound {
        bound_at: DateTime<Utc>,
    },
    Conflict(BindConflict),
    /// The person was unlinked from an account too recently to be bound again.
    Cooldown {
        until: DateTime<Utc>,
    },
}
