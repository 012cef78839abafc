//! The shapes every write and read of the store shares: a certification to record, a claim on
//! a session, a stored session, and what each answered. The bottom of the store: it imports
//! nothing of it but the entities.

use chrono::{DateTime, Utc};

use super::{StoreError, entities::session};
use crate::domain::{
    AccountId, BindConflict, BindOutcome, Holder, MinAge, PersonIndex, Provider, Redemption, Sealed,
    SessionId, VerificationPurpose,
};

/// A certified certification as the store records it: keyed hashes of CI and DI for lookups,
/// and the two sealed under one key (bound to the row's CI hash) for everything else. Owned, so
/// it can wait in a lane for its statement.
#[derive(Clone)]
pub struct Recordable {
    pub provider: Provider,
    pub id: String,
    pub ci_index: PersonIndex,
    pub di_index: Option<PersonIndex>,
    pub ci_sealed: Sealed,
    pub di_sealed: Option<Sealed>,
    pub certified_at: DateTime<Utc>,
}

impl Recordable {
    /// CI and DI sealed under one key: a row stores one `sealing_key_id` for both.
    pub(super) fn sealed_under_one_key(&self) -> bool {
        self.di_sealed
            .as_ref()
            .is_none_or(|di| di.key_id == self.ci_sealed.key_id)
    }
}

/// Whether a store call that was given a call's access record wrote it, as its result says:
/// some calls' records are written only with the call's own write.
pub trait RecordWritten {
    fn record_written(&self) -> bool;
}

impl RecordWritten for Recorded {
    fn record_written(&self) -> bool {
        true
    }
}

impl RecordWritten for Redeemed {
    fn record_written(&self) -> bool {
        matches!(self, Self::Bound { .. })
    }
}

impl RecordWritten for Claimed {
    fn record_written(&self) -> bool {
        matches!(self, Self::First)
    }
}

/// A look-up by CI: it records whatever it found.
impl RecordWritten for Option<Holder> {
    fn record_written(&self) -> bool {
        true
    }
}

/// An unlink: written with the binding it ended, when there was one.
impl RecordWritten for Option<DateTime<Utc>> {
    fn record_written(&self) -> bool {
        self.is_some()
    }
}

/// A session begun.
impl RecordWritten for () {
    fn record_written(&self) -> bool {
        true
    }
}

/// What `Store::record` learned: the person's row and who held them before.
#[derive(Clone)]
pub struct Recorded {
    pub person_id: i64,
    pub holder: Option<Holder>,
}

/// A certification's claim on a session: exactly one certification redeems a session.
#[derive(Clone)]
pub struct Claim {
    pub session: SessionId,
    pub provider: Provider,
    pub certification_id: String,
    /// Set: the first redemption also enqueues the certification's deletion at its provider,
    /// due at this time, in the same transaction (or statement).
    pub deletion_due: Option<DateTime<Utc>>,
}

/// What a claim found.
#[derive(Debug)]
pub enum Claimed {
    /// This claim redeemed the session.
    First,
    /// The same certification redeemed it before (a retry): its recorded answer.
    Again(Redemption),
    UsedByAnother,
    Expired,
}

/// What `Store::record_and_bind` decided.
#[derive(Debug)]
pub enum Redeemed {
    /// The account holds the person; `holder_before` is who held them before the first such call.
    Bound {
        holder_before: Option<Holder>,
        bound_at: DateTime<Utc>,
        /// This call redeemed the session (false for a retry, and without a session).
        redeemed_session: bool,
    },
    /// Refused: nothing was written, the session (if any) is not redeemed.
    Refused(BindOutcome),
    /// The session was redeemed by another certification first.
    SessionUsed,
    /// The session expired (or was purged) before this claim.
    SessionExpired,
}

/// A verification session as stored, begun or read back; the expected person still sealed.
/// Begun with no `redemption`.
#[derive(Debug)]
pub struct StoredSession {
    pub id: SessionId,
    pub caller: String,
    pub purpose: VerificationPurpose,
    pub provider: Provider,
    pub account: Option<AccountId>,
    pub min_age: Option<MinAge>,
    pub expected_sealed: Option<Sealed>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub redemption: Option<Redemption>,
}

impl From<StoredSession> for session::ActiveModel {
    fn from(stored: StoredSession) -> Self {
        use sea_orm::ActiveValue::Set;
        debug_assert!(stored.redemption.is_none(), "a session is begun unredeemed");
        let (expected_sealed, sealing_key_id) = match stored.expected_sealed {
            Some(sealed) => (Some(sealed.blob), Some(sealed.key_id)),
            None => (None, None),
        };
        Self {
            merchant_uid: Set(stored.id.as_str().to_owned()),
            caller: Set(stored.caller),
            purpose: Set(stored.purpose.as_str().to_owned()),
            provider: Set(stored.provider.as_str().to_owned()),
            account_id: Set(stored.account.map(|account| account.as_str().to_owned())),
            min_age: Set(stored
                .min_age
                .map(|age| i32::try_from(age.get()).unwrap_or(i32::MAX))),
            expected_sealed: Set(expected_sealed),
            sealing_key_id: Set(sealing_key_id),
            created_at: Set(stored.created_at),
            expires_at: Set(stored.expires_at),
            redeemed_provider: Set(None),
            redeemed_id: Set(None),
            redeemed_at: Set(None),
            holder_account_id: Set(None),
            holder_bound_at: Set(None),
            bound: Set(false),
            refusal: Set(None),
            refused_until: Set(None),
        }
    }
}

impl TryFrom<session::Model> for StoredSession {
    type Error = StoreError;

    fn try_from(row: session::Model) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str| StoreError::Failure(format!("verification session with an unreadable {what}"));
        let id = SessionId::recognise(&row.merchant_uid).ok_or_else(|| corrupt("id"))?;
        let purpose = VerificationPurpose::from_stored(&row.purpose).ok_or_else(|| corrupt("purpose"))?;
        let min_age = row
            .min_age
            .map(|age| u32::try_from(age).ok().and_then(|age| MinAge::parse(age).ok()))
            .map(|age| age.ok_or_else(|| corrupt("min_age")))
            .transpose()?;
        let expected_sealed = match (row.expected_sealed, row.sealing_key_id) {
            (Some(blob), Some(key_id)) => Some(Sealed { key_id, blob }),
            (None, _) => None,
            (Some(_), None) => return Err(corrupt("sealing key id")),
        };
        let redemption = match (row.redeemed_provider, row.redeemed_id, row.redeemed_at) {
            (Some(provider), Some(certification_id), Some(redeemed_at)) => Some(Redemption {
                provider: Provider::from_stored(&provider).ok_or_else(|| corrupt("provider"))?,
                certification_id,
                redeemed_at,
                holder_before: holder(row.holder_account_id, row.holder_bound_at),
                refused: refusal_from_stored(row.refusal.as_deref(), row.refused_until)
                    .map_err(|()| corrupt("refusal"))?,
            }),
            _ => None,
        };
        Ok(Self {
            id,
            caller: row.caller,
            purpose,
            provider: Provider::from_stored(&row.provider).ok_or_else(|| corrupt("provider"))?,
            account: row.account_id.map(AccountId::from_trusted),
            min_age,
            expected_sealed,
            created_at: row.created_at,
            expires_at: row.expires_at,
            redemption,
        })
    }
}

/// A person's holder from its two columns: both set, or nobody.
pub(super) fn holder(account_id: Option<String>, bound_at: Option<DateTime<Utc>>) -> Option<Holder> {
    match (account_id, bound_at) {
        (Some(account_id), Some(bound_at)) => Some(Holder {
            account_id: AccountId::from_trusted(account_id),
            bound_at,
        }),
        _ => None,
    }
}

/// A refused bind as a session's row keeps it: `refusal`, and `refused_until` for a cooldown.
pub(crate) fn refusal_stored(refused: Option<&BindOutcome>) -> (Option<&'static str>, Option<DateTime<Utc>>) {
    match refused {
        None | Some(BindOutcome::Bound { .. }) => (None, None),
        Some(BindOutcome::Cooldown { until }) => (Some(COOLDOWN), Some(*until)),
        Some(BindOutcome::Conflict(conflict)) => (
            CONFLICTS
                .iter()
                .find(|(_, stored)| stored == conflict)
                .map(|(name, _)| *name),
            None,
        ),
    }
}

fn refusal_from_stored(
    refusal: Option<&str>,
    until: Option<DateTime<Utc>>,
) -> Result<Option<BindOutcome>, ()> {
    match (refusal, until) {
        (None, _) => Ok(None),
        (Some(COOLDOWN), Some(until)) => Ok(Some(BindOutcome::Cooldown { until })),
        (Some(name), _) => CONFLICTS
            .iter()
            .find(|(stored, _)| *stored == name)
            .map(|(_, conflict)| Some(BindOutcome::Conflict(*conflict)))
            .ok_or(()),
    }
}

const COOLDOWN: &str = "cooldown";
const CONFLICTS: [(&str, BindConflict); 3] = [
    ("already_registered", BindConflict::AlreadyRegistered),
    ("certification_reused", BindConflict::CertificationReused),
    ("account_has_identity", BindConflict::AccountHasIdentity),
];
