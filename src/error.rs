//! Every way a call can fail, as the service sees it. Mapped to gRPC status in one place:
//! `grpc::status`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    domain::{AgeCheck, BindConflict, FieldViolation},
    service::ProviderError,
    store::StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid argument: {0}")]
    InvalidArgument(#[from] FieldViolation),
    #[error("the person has not completed this certification")]
    NotCertified,
    #[error("certified at {certified_at}, longer ago than the allowed {}s", max_age.as_secs())]
    CertificationExpired {
        certified_at: DateTime<Utc>,
        max_age: Duration,
    },
    #[error("merchant_uid does not match the certification's")]
    MerchantMismatch,
    #[error("under the minimum age {}", .0.min_age)]
    Underage(AgeCheck),
    /// `certified_at` is later than now plus the allowed clock skew: no honest record is.
    #[error("certified at {certified_at}, later than now (allowed clock skew {}s)", clock_skew.as_secs())]
    CertifiedInFuture {
        certified_at: DateTime<Utc>,
        clock_skew: Duration,
    },
    #[error("binding refused: {0:?}")]
    Conflict(BindConflict),
    #[error("the person was unlinked recently; a new binding is possible from {until}")]
    RejoinCooldown { until: DateTime<Utc> },
    /// The provider reported a birth date after today (Asia/Seoul): no age can be computed.
    #[error("the certified birth date is after today in Asia/Seoul")]
    BornInTheFuture,
    #[error(transparent)]
    Upstream(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the caller's deadline passed")]
    DeadlineExceeded,
    /// MAX_IN_FLIGHT calls are in progress: refused at once rather than queued.
    #[error("overloaded: {limit} calls already in flight, retry shortly")]
    Overloaded { limit: usize },
    #[error("a valid caller token is required: `authorization: Bearer <token>`")]
    Unauthenticated { token_presented: bool },
    /// Under mTLS with tokens, the token names another caller than the certificate.
    #[error("the caller token does not belong to the client certificate's caller")]
    CallerMismatch,
    /// CALLER_PERMISSIONS does not let this caller call this method.
    #[error("this caller may not call {method}")]
    MethodNotAllowed { method: &'static str },
    /// Before the first successful migration and database check: the schema may not exist yet.
    #[error("not ready: the database is not prepared yet")]
    NotReady,
    /// REQUIRE_SESSION: a Verify must name the session BeginVerification issued.
    #[error("a verification session is required: call BeginVerification and pass its merchant_uid")]
    SessionRequired,
    /// Never issued, purged, or issued to another caller: to this caller it does not exist.
    #[error("no such verification session")]
    SessionNotFound,
    #[error("the verification session expired at {expires_at}; begin a new one")]
    SessionExpired { expires_at: DateTime<Utc> },
    /// Another certification redeemed the session first.
    #[error("the verification session was already redeemed by another certification")]
    SessionUsed,
    /// The Verify names another account or minimum age than its session.
    #[error("{field} differs from the verification session's")]
    SessionMismatch { field: &'static str },
    /// Certified before the session began: it cannot be the session's certification.
    #[error("the certification was made before its verification session began")]
    CertifiedBeforeSession,
    /// Certified, but the provider sent no CI (no CI contract): cannot be de-duplicated.
    #[error(
        "the identity provider sent no CI for this person (a contract matter: KG Inicis with Kakao and some channels need a separate CI contract)"
    )]
    CiUnavailable,
    /// Made on a PortOne V2 test channel while PORTONE_ALLOW_TEST_CHANNEL is off.
    #[error("the verification was made on a test channel")]
    TestChannel,
    /// PortOne no longer has the certification because we deleted it there
    /// (PORTONE_DELETE_AFTER): it existed, and its session was redeemed.
    #[error("the certification was deleted at the identity provider after its session was redeemed")]
    CertificationDeleted,
    /// The certified person is not the one expected; the fields, never their values.
    #[error("the certified person differs from the expected one in: {}", fields.join(","))]
    IdentityMismatch { fields: Vec<&'static str> },
}

impl ServiceError {
    /// The reason of a refusal caused by the request or the person (not an outage), as a
    /// metric label; None for outages, time-outs and failures.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::InvalidArgument(violation) => violation.reason,
            Self::NotCertified => "NOT_CERTIFIED",
            Self::CertificationExpired { .. } => "CERTIFICATION_EXPIRED",
            Self::MerchantMismatch => "MERCHANT_MISMATCH",
            Self::Underage(_) => "UNDERAGE",
            Self::CertifiedInFuture { .. } => "CERTIFIED_IN_FUTURE",
            Self::Conflict(BindConflict::AlreadyRegistered) => "ALREADY_REGISTERED",
            Self::Conflict(BindConflict::CertificationReused) => "CERTIFICATION_REUSED",
            Self::Conflict(BindConflict::AccountHasIdentity) => "ACCOUNT_HAS_IDENTITY",
            Self::RejoinCooldown { .. } => "REJOIN_COOLDOWN",
            Self::SessionRequired => "SESSION_REQUIRED",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::SessionExpired { .. } => "SESSION_EXPIRED",
            Self::SessionUsed => "SESSION_USED",
            Self::SessionMismatch { .. } => "SESSION_MISMATCH",
            Self::CertifiedBeforeSession => "CERTIFIED_BEFORE_SESSION",
            Self::IdentityMismatch { .. } => "IDENTITY_MISMATCH",
            Self::CiUnavailable => "CI_UNAVAILABLE",
            Self::TestChannel => "TEST_CHANNEL",
            Self::CertificationDeleted => "CERTIFICATION_DELETED",
            Self::Upstream(ProviderError::NotFound) => "CERTIFICATION_NOT_FOUND",
            _ => return None,
        })
    }
}
