//! Every way a use case can end other than with its answer. Each outcome has one reason (the
//! machine-readable string callers branch on), one [`ErrorKind`] (which the transport turns into
//! its own code) and the metadata a caller may see; the matches below are exhaustive, so a new
//! variant does not compile until someone decides all three.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ProviderError;
use crate::{
    domain::{AgeCheck, BindConflict, FieldViolation, VerificationPurpose},
    quota::QuotaExceeded,
    store::StoreError,
    telemetry::{log_limit::LogLimit, metrics},
};

/// The reason of a call that ran out of time, wherever it did: a use case waiting on a provider
/// here, or the transport's own deadline.
pub(crate) const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";

/// The reason of a call past one of its caller's bounds, wherever it was refused: a use case
/// here (sessions, look-ups, open sessions), or the transport's admission (its fair share of
/// MAX_IN_FLIGHT).
pub(crate) const CALLER_QUOTA: &str = "CALLER_QUOTA";

/// What kind of outcome an error is, in words that name no transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The request itself is wrong: retrying it unchanged cannot help.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The caller may not do this (CALLER_PERMISSIONS).
    PermissionDenied,
    /// The request is well formed but the facts refuse it.
    FailedPrecondition,
    /// Worth retrying later.
    Unavailable,
    /// Undone for a concurrent call: worth retrying at once.
    Aborted,
    DeadlineExceeded,
    /// Past a bound of this caller's: worth retrying after the delay the error carries.
    ResourceExhausted,
    /// A bug, or an answer we cannot use.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
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
    #[error("{}", conflict_text(*.0))]
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
    /// after use: it existed, and its session was redeemed.
    #[error("the certification was deleted at the identity provider after its session was redeemed")]
    CertificationDeleted,
    /// The certified person is not the one expected; the fields, never their values.
    #[error("the certified person differs from the expected one in: {}", fields.join(","))]
    IdentityMismatch { fields: Vec<&'static str> },
    /// CALLER_PERMISSIONS grants this caller BeginVerification for other purposes only.
    #[error("this caller may not begin {} sessions", purpose_name(*.purpose))]
    PurposeNotAllowed { purpose: VerificationPurpose },
    /// CheckDuplicate through a session whose purpose does not answer who holds its person.
    #[error("a {} session does not answer who holds its person", purpose_name(*.purpose))]
    PurposeAnswersNoHolder { purpose: VerificationPurpose },
    /// The caller is past SESSIONS_PER_MINUTE, LOOKUPS_PER_MINUTE or OPEN_SESSIONS_PER_CALLER.
    #[error(transparent)]
    CallerQuota(#[from] QuotaExceeded),
    /// The session caused `quota::SESSION_LOOKUPS` look-ups without being redeemed.
    #[error(
        "the verification session caused {} look-ups without being redeemed; begin a new one",
        crate::quota::SESSION_LOOKUPS
    )]
    SessionSpent,
    /// The call's access record could not be written, so the call did nothing else.
    #[error("access records cannot be written: {0}")]
    AccessRecordUnavailable(StoreError),
}

/// Per-call warnings about outages, at most one line a second each.
static STORE_DOWN: LogLimit = LogLimit::per(Duration::from_secs(1));
static STORE_CONTENDED: LogLimit = LogLimit::per(Duration::from_secs(1));
static PROVIDER_DOWN: LogLimit = LogLimit::per(Duration::from_secs(1));
static PURPOSE_REFUSED: LogLimit = LogLimit::per(Duration::from_secs(1));
static SHARED_TOKEN_WAIT: LogLimit = LogLimit::per(Duration::from_secs(1));

impl ServiceError {
    /// The machine-readable reason callers see (`google.rpc.ErrorInfo.reason`) and metrics count.
    pub(crate) fn reason(&self) -> &'static str {
        use ProviderError as P;
        match self {
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
            Self::CallerQuota(_) => CALLER_QUOTA,
            Self::SessionSpent => "SESSION_SPENT",
            Self::AccessRecordUnavailable(_) => "ACCESS_RECORD_UNAVAILABLE",
            Self::PurposeNotAllowed { .. } | Self::PurposeAnswersNoHolder { .. } => "PURPOSE_NOT_ALLOWED",
            Self::Upstream(P::NotFound) => "CERTIFICATION_NOT_FOUND",
            Self::Upstream(P::Unavailable(_) | P::CircuitOpen { .. }) => "UPSTREAM_UNAVAILABLE",
            Self::Upstream(P::CredentialsRejected) => "UPSTREAM_AUTH_FAILED",
            Self::Upstream(P::Rejected { .. }) => "UPSTREAM_REJECTED",
            Self::Upstream(P::Malformed(_)) | Self::BornInTheFuture => "UPSTREAM_MALFORMED",
            Self::Upstream(P::NotConfigured(_)) => "PROVIDER_NOT_CONFIGURED",
            Self::Upstream(P::DeadlineExceeded | P::SharedTokenWait) => DEADLINE_EXCEEDED,
            Self::Store(StoreError::Unavailable(_)) => "STORE_UNAVAILABLE",
            Self::Store(StoreError::Failure(_)) => "STORE_FAILURE",
            Self::Store(StoreError::Contention(_)) => "STORE_CONTENTION",
        }
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        use ProviderError as P;
        match self {
            Self::InvalidArgument(_) | Self::SessionMismatch { .. } => K::InvalidArgument,
            Self::SessionNotFound | Self::Upstream(P::NotFound) => K::NotFound,
            Self::Conflict(_) => K::AlreadyExists,
            Self::PurposeNotAllowed { .. } | Self::PurposeAnswersNoHolder { .. } => K::PermissionDenied,
            Self::NotCertified
            | Self::CertificationExpired { .. }
            | Self::MerchantMismatch
            | Self::Underage(_)
            | Self::CertifiedInFuture { .. }
            | Self::RejoinCooldown { .. }
            | Self::SessionRequired
            | Self::SessionExpired { .. }
            | Self::SessionUsed
            | Self::SessionSpent
            | Self::CertifiedBeforeSession
            | Self::CiUnavailable
            | Self::TestChannel
            | Self::CertificationDeleted
            | Self::IdentityMismatch { .. }
            | Self::Upstream(P::Rejected { .. } | P::NotConfigured(_)) => K::FailedPrecondition,
            Self::Upstream(P::Unavailable(_) | P::CircuitOpen { .. } | P::CredentialsRejected)
            | Self::Store(StoreError::Unavailable(_))
            | Self::AccessRecordUnavailable(_) => K::Unavailable,
            Self::Upstream(P::DeadlineExceeded | P::SharedTokenWait) => K::DeadlineExceeded,
            Self::Store(StoreError::Contention(_)) => K::Aborted,
            Self::CallerQuota(_) => K::ResourceExhausted,
            Self::Upstream(P::Malformed(_)) | Self::BornInTheFuture | Self::Store(StoreError::Failure(_)) => {
                K::Internal
            }
        }
    }

    /// A refusal caused by the request or the person, as opposed to an outage, a time-out or a
    /// failure: what the session metrics count by reason.
    pub(crate) fn is_refusal(&self) -> bool {
        match self {
            Self::Upstream(ProviderError::NotFound) => true,
            Self::Upstream(_) | Self::Store(_) | Self::BornInTheFuture | Self::AccessRecordUnavailable(_) => {
                false
            }
            _ => true,
        }
    }

    /// What the caller is told. Outages and failures get a clean sentence: their causes are
    /// for the operator's log ([`Self::log_cause`]), never for the caller.
    pub(crate) fn public_message(&self) -> String {
        use ProviderError as P;
        match self {
            Self::Upstream(P::NotFound) => "no such certification at PortOne for our merchant account".into(),
            Self::Upstream(P::Unavailable(_) | P::CircuitOpen { .. }) => {
                "PortOne unavailable, retry later".into()
            }
            Self::Upstream(P::Rejected { .. }) => {
                "PortOne refused the request; the operator's log says why".into()
            }
            Self::Upstream(P::CredentialsRejected) => "PortOne refused this service's credentials".into(),
            Self::Upstream(P::Malformed(_)) | Self::BornInTheFuture => {
                "PortOne answered with an unusable body".into()
            }
            Self::Store(StoreError::Unavailable(_)) => "database unavailable, retry later".into(),
            Self::AccessRecordUnavailable(_) => {
                "the access record of this call cannot be written, so nothing was done; retry later".into()
            }
            Self::Store(StoreError::Failure(_)) => "internal storage error".into(),
            Self::Store(StoreError::Contention(_)) => {
                "undone for a concurrent call to the same person or account; retry".into()
            }
            _ => self.to_string(),
        }
    }

    /// The `ErrorInfo` metadata: facts about the refusal, never a value of the person's.
    pub(crate) fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::CertificationExpired {
                certified_at,
                max_age,
            } => vec![
                ("certified_at", certified_at.to_rfc3339()),
                ("max_age_seconds", max_age.as_secs().to_string()),
            ],
            // The required minimum only: the person's exact age is personal data.
            Self::Underage(check) => vec![("min_age", check.min_age.to_string())],
            Self::CertifiedInFuture {
                certified_at,
                clock_skew,
            } => vec![
                ("certified_at", certified_at.to_rfc3339()),
                ("clock_skew_seconds", clock_skew.as_secs().to_string()),
            ],
            Self::RejoinCooldown { until } => vec![("until", until.to_rfc3339())],
            Self::SessionExpired { expires_at } => vec![("expired_at", expires_at.to_rfc3339())],
            // The names of the fields only: their values are personal data.
            Self::IdentityMismatch { fields } => vec![("fields", fields.join(","))],
            Self::PurposeNotAllowed { purpose } | Self::PurposeAnswersNoHolder { purpose } => {
                vec![("purpose", purpose_name(*purpose))]
            }
            Self::Upstream(ProviderError::NotConfigured(provider)) => {
                vec![("provider", provider.as_str().to_owned())]
            }
            Self::Upstream(ProviderError::CircuitOpen { retry_after }) => vec![
                ("circuit", "open".to_owned()),
                ("retry_after_ms", retry_after.as_millis().to_string()),
            ],
            Self::CallerQuota(exceeded) => quota_metadata(exceeded),
            _ => Vec::new(),
        }
    }

    /// The field a request got wrong and what is wrong with it, for a `BadRequest` detail.
    pub(crate) fn violation(&self) -> Option<(&'static str, String)> {
        match self {
            Self::InvalidArgument(violation) => Some((violation.field, violation.description.clone())),
            Self::SessionMismatch { field } => Some((field, "must be unset or equal the session's".into())),
            _ => None,
        }
    }

    /// When retrying may succeed, where we know.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Upstream(ProviderError::CircuitOpen { retry_after }) => Some(*retry_after),
            Self::CallerQuota(exceeded) => Some(exceeded.retry_after),
            _ => None,
        }
    }

    /// Logs what the operator needs to know about this outcome, once, where the transport
    /// answers it: outages rate-limited, failures always, refusals not at all.
    pub(crate) fn log_cause(&self) {
        use ProviderError as P;
        match self {
            Self::CertifiedInFuture { certified_at, .. } => {
                tracing::warn!(%certified_at, "certification dated in the future; clocks disagree");
            }
            Self::BornInTheFuture => tracing::error!("identity provider reported a birth date after today"),
            Self::Store(StoreError::Unavailable(cause)) => {
                if let Some(suppressed) = STORE_DOWN.admit() {
                    tracing::warn!(%cause, suppressed, "database unavailable");
                }
            }
            Self::Store(StoreError::Failure(cause)) => tracing::error!(%cause, "database failure"),
            Self::Store(StoreError::Contention(cause)) => {
                if let Some(suppressed) = STORE_CONTENDED.admit() {
                    tracing::warn!(%cause, suppressed, "database contention outlasted the retries");
                }
            }
            Self::Upstream(P::Unavailable(cause)) => {
                if let Some(suppressed) = PROVIDER_DOWN.admit() {
                    tracing::warn!(%cause, suppressed, "portone unavailable");
                }
            }
            Self::Upstream(P::Rejected {
                status,
                code,
                message,
            }) => {
                // PortOne's own words go to the operator, never to the caller.
                metrics::record_upstream_rejection(*status);
                tracing::error!(
                    http_status = status,
                    portone_code = ?code,
                    portone_message = %message,
                    "portone refused the request"
                );
            }
            Self::Upstream(P::Malformed(cause)) => tracing::error!(%cause, "portone answer malformed"),
            Self::PurposeNotAllowed { purpose } => {
                if let Some(suppressed) = PURPOSE_REFUSED.admit() {
                    tracing::warn!(
                        purpose = purpose.as_str(),
                        suppressed,
                        "session refused: CALLER_PERMISSIONS does not allow its purpose"
                    );
                }
            }
            Self::Upstream(P::SharedTokenWait) => {
                if let Some(suppressed) = SHARED_TOKEN_WAIT.admit() {
                    tracing::warn!(
                        suppressed,
                        "deadline passed waiting for the portone token lock in redis; another replica holds it"
                    );
                }
            }
            // Logged once when the circuit opens, not per refused call.
            _ => {}
        }
    }
}

/// Which bound, and when to retry: the transport's in-flight refusal says it the same way.
pub(crate) fn quota_metadata(exceeded: &QuotaExceeded) -> Vec<(&'static str, String)> {
    vec![
        ("bound", exceeded.bound.as_str().to_owned()),
        ("retry_after_ms", exceeded.retry_after.as_millis().to_string()),
    ]
}

/// A purpose as the proto names it (`PURPOSE_AGE_CHECK`), for the caller.
fn purpose_name(purpose: VerificationPurpose) -> String {
    format!("PURPOSE_{}", purpose.as_str().to_ascii_uppercase())
}

fn conflict_text(conflict: BindConflict) -> &'static str {
    match conflict {
        BindConflict::AlreadyRegistered => "this person already holds another account",
        BindConflict::CertificationReused => "this certification was already used by another account",
        BindConflict::AccountHasIdentity => "this account already holds another person",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::Provider;

    /// One of every outcome, so a reason cannot be written twice for two meanings.
    fn every_outcome() -> Vec<ServiceError> {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        vec![
            FieldViolation::new("imp_uid", "INVALID_IMP_UID", "bad").into(),
            ServiceError::NotCertified,
            ServiceError::CertificationExpired {
                certified_at: at,
                max_age: Duration::from_secs(1),
            },
            ServiceError::MerchantMismatch,
            ServiceError::Underage(AgeCheck { age: 1, min_age: 19 }),
            ServiceError::CertifiedInFuture {
                certified_at: at,
                clock_skew: Duration::ZERO,
            },
            ServiceError::Conflict(BindConflict::AlreadyRegistered),
            ServiceError::Conflict(BindConflict::CertificationReused),
            ServiceError::Conflict(BindConflict::AccountHasIdentity),
            ServiceError::RejoinCooldown { until: at },
            ServiceError::SessionRequired,
            ServiceError::SessionNotFound,
            ServiceError::SessionExpired { expires_at: at },
            ServiceError::SessionUsed,
            ServiceError::SessionMismatch { field: "account_id" },
            ServiceError::CertifiedBeforeSession,
            ServiceError::IdentityMismatch { fields: vec!["name"] },
            ServiceError::CiUnavailable,
            ServiceError::TestChannel,
            ServiceError::CertificationDeleted,
            ServiceError::PurposeNotAllowed {
                purpose: VerificationPurpose::AgeCheck,
            },
            ServiceError::SessionSpent,
            QuotaExceeded {
                bound: crate::quota::Bound::Lookups,
                retry_after: Duration::from_secs(1),
            }
            .into(),
            ProviderError::NotFound.into(),
            ProviderError::Unavailable("x".into()).into(),
            ProviderError::CircuitOpen {
                retry_after: Duration::from_secs(1),
            }
            .into(),
            ProviderError::CredentialsRejected.into(),
            ProviderError::Rejected {
                status: 400,
                code: None,
                message: "x".into(),
            }
            .into(),
            ProviderError::Malformed("x".into()).into(),
            ServiceError::BornInTheFuture,
            ProviderError::NotConfigured(Provider::PortoneV2).into(),
            ProviderError::DeadlineExceeded.into(),
            ProviderError::SharedTokenWait.into(),
            StoreError::Unavailable("x".into()).into(),
            StoreError::Failure("x".into()).into(),
            StoreError::Contention("x".into()).into(),
            ServiceError::AccessRecordUnavailable(StoreError::Failure("x".into())),
        ]
    }

    #[test]
    fn one_reason_has_one_kind() {
        let mut kinds = HashMap::new();
        for error in every_outcome() {
            let kind = *kinds.entry(error.reason()).or_insert(error.kind());
            assert_eq!(kind, error.kind(), "{} has two kinds", error.reason());
        }
        assert_eq!(kinds.len(), 34);
    }

    #[test]
    fn outages_and_failures_tell_the_caller_no_cause() {
        for error in every_outcome() {
            if matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
                let message = error.public_message();
                assert!(!message.contains(": x"), "{message}");
                assert!(!error.is_refusal(), "{}", error.reason());
            }
        }
    }
}
