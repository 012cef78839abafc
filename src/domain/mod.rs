//! The domain: what a certification says and the rules we apply to it. Pure: no tonic, no
//! sea_orm, no I/O, so every rule here is unit-testable and shared by every transport.

mod age;
mod binding;
mod identity;
mod index_key;
mod input;
mod sealing;
mod session;

pub(crate) use age::{AgeCheck, full_age, today_in_seoul};
pub(crate) use binding::{BindConflict, BindOutcome, Holder};
pub use identity::{Carrier, Ci, Di, Gender, Identity, PersonName, Phone};
pub use index_key::{CiIndexKey, IndexKeyError, PersonIndex};
pub use input::{AccountId, FieldViolation, IdentityVerificationId, ImpUid, MerchantUid, MinAge};
pub use sealing::{Purpose, Sealed, SealingError, SealingKeys};
pub(crate) use session::{
    AgeDisclosure, Disclosure, ExpectedPerson, LoggedSessionId, Redemption, Session, SessionId, SessionSpec,
    VerificationPurpose,
};

use chrono::{DateTime, Utc};

/// `period` after `start`, or the end of time when that lies past what the calendar holds: a
/// configured period too long to add means "never", not an error.
pub(crate) fn saturating_after(start: DateTime<Utc>, period: std::time::Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(period)
        .ok()
        .and_then(|period| start.checked_add_signed(period))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A time as the database keeps it (PostgreSQL: microseconds), so the first answer carries the
/// same time as the retries that read it back.
pub(crate) fn stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike as _;
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000).unwrap_or(at)
}

/// Which identity provider and API a certification came from: the stored certification is keyed
/// by (provider, id) so PortOne V2 identity verifications can join without reshaping the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    PortoneV1,
    PortoneV2,
}

impl Provider {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provider::PortoneV1 => "portone_v1",
            Provider::PortoneV2 => "portone_v2",
        }
    }

    /// The provider a stored `as_str` names.
    pub(crate) fn from_stored(raw: &str) -> Option<Self> {
        [Provider::PortoneV1, Provider::PortoneV2]
            .into_iter()
            .find(|provider| provider.as_str() == raw)
    }
}

/// Which certification, at which provider: the provider-neutral key a lookup takes. Built only
/// from an id already parsed for its provider, so the id is safe in that provider's URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertificationRef {
    provider: Provider,
    id: String,
}

impl CertificationRef {
    pub(crate) fn portone_v1(imp_uid: ImpUid) -> Self {
        Self {
            provider: Provider::PortoneV1,
            id: imp_uid.as_str().to_owned(),
        }
    }

    pub(crate) fn portone_v2(id: IdentityVerificationId) -> Self {
        Self {
            provider: Provider::PortoneV2,
            id: id.as_str().to_owned(),
        }
    }

    pub(crate) fn provider(&self) -> Provider {
        self.provider
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for CertificationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certification ids are not personal data: they name a record, not a person. A V2 id
        // is the session's id (the service issues it) and a bearer value like V1's merchant_uid:
        // cut the same way. A V1 imp_uid names PortOne's record only, and is shown whole.
        match self.provider {
            Provider::PortoneV1 => write!(f, "{}:{}", self.provider.as_str(), self.id),
            Provider::PortoneV2 => write!(f, "{}:{}", self.provider.as_str(), LoggedSessionId(&self.id)),
        }
    }
}

impl std::fmt::Debug for CertificationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificationRef({self})")
    }
}

/// Which certification, made for what and through which PG, as its provider reports it: what a
/// Verify's answer repeats to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificationFacts {
    pub(crate) provider: Provider,
    /// The provider's id of the certification (an imp_uid for PortOne V1).
    pub(crate) id: String,
    pub(crate) merchant_uid: Option<String>,
    pub(crate) pg_provider: String,
}

/// A certification as the provider reports it, before any of our checks. Only its facts' `id`
/// and `provider`, and `certified`, are always known: a record exists at PortOne before the
/// person finishes.
#[derive(Clone, Debug)]
pub struct ProviderCertification {
    pub(crate) facts: CertificationFacts,
    pub(crate) certified: bool,
    pub(crate) certified_at: Option<DateTime<Utc>>,
    /// Present when certified and the provider sent a CI.
    pub(crate) identity: Option<Identity>,
    /// Certified, but without a CI (KG Inicis with Kakao and other channels without the CI
    /// contract): such a person cannot be de-duplicated.
    pub(crate) ci_unavailable: bool,
    /// Made on a provider's test channel (PortOne V2 `channel.type` TEST): not a real person.
    pub(crate) test_channel: bool,
}
