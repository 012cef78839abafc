//! The one mapping from [`ServiceError`] to gRPC status. Exhaustive on purpose: a new error
//! variant does not compile until someone decides its code and reason. Internal causes are
//! logged here, where they are classified; callers get a clean message and a reason.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::ERROR_DOMAIN;
use crate::{
    domain::BindConflict, error::ServiceError, service::ProviderError, store::StoreError,
    telemetry::log_limit::LogLimit,
};

/// Per-call warnings about refusals and outages, at most one line a second each.
static REFUSED_UNAUTHENTICATED: LogLimit = LogLimit::per(Duration::from_secs(1));
static REFUSED_PERMISSION: LogLimit = LogLimit::per(Duration::from_secs(1));
static STORE_DOWN: LogLimit = LogLimit::per(Duration::from_secs(1));
static PORTONE_DOWN: LogLimit = LogLimit::per(Duration::from_secs(1));

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::InvalidArgument(violation) => {
                let mut details =
                    ErrorDetails::with_error_info(violation.reason, ERROR_DOMAIN, HashMap::new());
                details.add_bad_request_violation(violation.field, violation.description);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::NotCertified => reasoned(Code::FailedPrecondition, "NOT_CERTIFIED", message, []),
            ServiceError::CertificationExpired {
                certified_at,
                max_age,
            } => reasoned(
                Code::FailedPrecondition,
                "CERTIFICATION_EXPIRED",
                message,
                [
                    ("certified_at", certified_at.to_rfc3339()),
                    ("max_age_seconds", max_age.as_secs().to_string()),
                ],
            ),
            ServiceError::MerchantMismatch => {
                reasoned(Code::FailedPrecondition, "MERCHANT_MISMATCH", message, [])
            }
            // The required minimum only: the person's exact age is personal data.
            ServiceError::Underage(check) => reasoned(
                Code::FailedPrecondition,
                "UNDERAGE",
                message,
                [("min_age", check.min_age.to_string())],
            ),
            ServiceError::CertifiedInFuture {
                certified_at,
                clock_skew,
            } => {
                tracing::warn!(%certified_at, "certification dated in the future; clocks disagree");
                reasoned(
                    Code::FailedPrecondition,
                    "CERTIFIED_IN_FUTURE",
                    message,
                    [
                        ("certified_at", certified_at.to_rfc3339()),
                        ("clock_skew_seconds", clock_skew.as_secs().to_string()),
                    ],
                )
            }
            ServiceError::RejoinCooldown { until } => reasoned(
                Code::FailedPrecondition,
                "REJOIN_COOLDOWN",
                message,
                [("until", until.to_rfc3339())],
            ),
            ServiceError::Conflict(conflict) => {
                let (reason, text) = match conflict {
                    BindConflict::AlreadyRegistered => {
                        ("ALREADY_REGISTERED", "this person already holds another account")
                    }
                    BindConflict::CertificationReused => (
                        "CERTIFICATION_REUSED",
                        "this certification was already used by another account",
                    ),
                    BindConflict::AccountHasIdentity => (
                        "ACCOUNT_HAS_IDENTITY",
                        "this account already holds another person",
                    ),
                };
                reasoned(Code::AlreadyExists, reason, text.to_owned(), [])
            }
            ServiceError::Upstream(upstream) => upstream_status(upstream),
            ServiceError::BornInTheFuture => {
                tracing::error!("identity provider reported a birth date after today");
                upstream_malformed()
            }
            ServiceError::Unauthenticated { token_presented } => {
                // Which caller tried is unknown by definition; whether a token came is useful.
                if let Some(suppressed) = REFUSED_UNAUTHENTICATED.admit() {
                    tracing::warn!(token_presented, suppressed, "call refused: no valid caller token");
                }
                reasoned(Code::Unauthenticated, "UNAUTHENTICATED", message, [])
            }
            ServiceError::CallerMismatch => {
                if let Some(suppressed) = REFUSED_UNAUTHENTICATED.admit() {
                    tracing::warn!(
                        suppressed,
                        "call refused: token and client certificate name different callers"
                    );
                }
                reasoned(Code::Unauthenticated, "CALLER_MISMATCH", message, [])
            }
            ServiceError::MethodNotAllowed { method } => {
                if let Some(suppressed) = REFUSED_PERMISSION.admit() {
                    tracing::warn!(
                        method,
                        suppressed,
                        "call refused: CALLER_PERMISSIONS does not allow it"
                    );
                }
                reasoned(
                    Code::PermissionDenied,
                    "METHOD_NOT_ALLOWED",
                    message,
                    [("method", method.to_owned())],
                )
            }
            ServiceError::SessionRequired => {
                reasoned(Code::FailedPrecondition, "SESSION_REQUIRED", message, [])
            }
            ServiceError::SessionNotFound => reasoned(Code::NotFound, "SESSION_NOT_FOUND", message, []),
            ServiceError::SessionExpired { expires_at } => reasoned(
                Code::FailedPrecondition,
                "SESSION_EXPIRED",
                message,
                [("expired_at", expires_at.to_rfc3339())],
            ),
            ServiceError::SessionUsed => reasoned(Code::FailedPrecondition, "SESSION_USED", message, []),
            ServiceError::SessionMismatch { field } => {
                let mut details =
                    ErrorDetails::with_error_info("SESSION_MISMATCH", ERROR_DOMAIN, HashMap::new());
                details.add_bad_request_violation(field, "must be unset or equal the session's");
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::CiUnavailable => reasoned(Code::FailedPrecondition, "CI_UNAVAILABLE", message, []),
            ServiceError::TestChannel => reasoned(Code::FailedPrecondition, "TEST_CHANNEL", message, []),
            ServiceError::CertificationDeleted => {
                reasoned(Code::FailedPrecondition, "CERTIFICATION_DELETED", message, [])
            }
            ServiceError::CertifiedBeforeSession => {
                reasoned(Code::FailedPrecondition, "CERTIFIED_BEFORE_SESSION", message, [])
            }
            // The names of the fields only: their values are personal data.
            ServiceError::IdentityMismatch { fields } => reasoned(
                Code::FailedPrecondition,
                "IDENTITY_MISMATCH",
                message,
                [("fields", fields.join(","))],
            ),
            ServiceError::NotReady => reasoned(
                Code::Unavailable,
                "NOT_READY",
                "starting: the database is not prepared yet, retry shortly".into(),
                [],
            ),
            ServiceError::Store(StoreError::Unavailable(cause)) => {
                if let Some(suppressed) = STORE_DOWN.admit() {
                    tracing::warn!(%cause, suppressed, "database unavailable");
                }
                reasoned(
                    Code::Unavailable,
                    "STORE_UNAVAILABLE",
                    "database unavailable, retry later".into(),
                    [],
                )
            }
            ServiceError::Store(StoreError::Failure(cause)) => {
                tracing::error!(%cause, "database failure");
                reasoned(
                    Code::Internal,
                    "STORE_FAILURE",
                    "internal storage error".into(),
                    [],
                )
            }
            ServiceError::Overloaded { limit } => reasoned(
                Code::ResourceExhausted,
                "OVERLOADED",
                message,
                [("max_in_flight", limit.to_string())],
            ),
            ServiceError::DeadlineExceeded => {
                reasoned(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", message, [])
            }
        }
    }
}

fn upstream_status(error: ProviderError) -> Status {
    let message = error.to_string();
    match error {
        ProviderError::NotFound => reasoned(
            Code::NotFound,
            "CERTIFICATION_NOT_FOUND",
            "no such certification at PortOne for our merchant account".into(),
            [],
        ),
        ProviderError::Unavailable(cause) => {
            if let Some(suppressed) = PORTONE_DOWN.admit() {
                tracing::warn!(%cause, suppressed, "portone unavailable");
            }
            reasoned(
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
                "PortOne unavailable, retry later".into(),
                [],
            )
        }
        ProviderError::Rejected {
            status,
            code,
            message,
        } => {
            // PortOne's own words go to the operator, never to the caller.
            crate::telemetry::metrics::record_upstream_rejection(status);
            tracing::error!(
                http_status = status,
                portone_code = ?code,
                portone_message = %message,
                "portone refused the request"
            );
            reasoned(
                Code::FailedPrecondition,
                "UPSTREAM_REJECTED",
                "PortOne refused the request; the operator's log says why".into(),
                [],
            )
        }
        ProviderError::CredentialsRejected => reasoned(
            Code::Unavailable,
            "UPSTREAM_AUTH_FAILED",
            "PortOne refused this service's credentials".into(),
            [],
        ),
        ProviderError::Malformed(cause) => {
            tracing::error!(%cause, "portone answer malformed");
            upstream_malformed()
        }
        ProviderError::NotConfigured(provider) => reasoned(
            Code::FailedPrecondition,
            "PROVIDER_NOT_CONFIGURED",
            message,
            [("provider", provider.as_str().to_owned())],
        ),
        ProviderError::DeadlineExceeded => reasoned(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", message, []),
        ProviderError::CircuitOpen { retry_after } => {
            // Logged once when the circuit opens, not per refused call.
            let mut details = ErrorDetails::with_error_info(
                "UPSTREAM_UNAVAILABLE",
                ERROR_DOMAIN,
                HashMap::from([
                    ("circuit".to_owned(), "open".to_owned()),
                    ("retry_after_ms".to_owned(), retry_after.as_millis().to_string()),
                ]),
            );
            details.set_retry_info(Some(retry_after));
            Status::with_error_details(Code::Unavailable, "PortOne unavailable, retry later", details)
        }
    }
}

fn upstream_malformed() -> Status {
    reasoned(
        Code::Internal,
        "UPSTREAM_MALFORMED",
        "PortOne answered with an unusable body".into(),
        [],
    )
}

fn reasoned<const N: usize>(
    code: Code,
    reason: &str,
    message: String,
    metadata: [(&str, String); N],
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}
