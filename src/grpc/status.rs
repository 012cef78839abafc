//! The one mapping to gRPC status: a use case's [`ServiceError`] by its kind, reason and
//! metadata, and the transport's own [`Refusal`]s (authentication, permission, admission,
//! readiness, deadline). Both matches are exhaustive: a new outcome does not compile until
//! someone decides its code.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::ERROR_DOMAIN;
use crate::{
    access::Rpc,
    domain::FieldViolation,
    quota::QuotaExceeded,
    service::{CALLER_QUOTA, DEADLINE_EXCEEDED, ErrorKind, ServiceError, quota_metadata},
    telemetry::log_limit::LogLimit,
};

/// Per-call warnings about refused callers, at most one line a second each.
static REFUSED_UNAUTHENTICATED: LogLimit = LogLimit::per(Duration::from_secs(1));
static REFUSED_PERMISSION: LogLimit = LogLimit::per(Duration::from_secs(1));

/// A call the transport refuses before (or instead of) running its use case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("a valid caller token is required: `authorization: Bearer <token>`")]
    Unauthenticated { token_presented: bool },
    /// Under mTLS with tokens, the token names another caller than the certificate.
    #[error("the caller token does not belong to the client certificate's caller")]
    CallerMismatch,
    /// CALLER_PERMISSIONS does not let this caller call this method.
    #[error("this caller may not call {}", .rpc.as_str())]
    MethodNotAllowed { rpc: Rpc },
    /// MAX_IN_FLIGHT calls are in progress: refused at once rather than queued.
    #[error("overloaded: {limit} calls already in flight, retry shortly")]
    Overloaded { limit: usize },
    /// More than half of MAX_IN_FLIGHT is in use and this caller holds its equal share already.
    #[error("this caller holds its share of the calls in flight ({share}), retry shortly")]
    FairShare { share: usize, exceeded: QuotaExceeded },
    /// Before the first successful migration and database check: the schema may not exist yet.
    #[error("starting: the database is not prepared yet, retry shortly")]
    NotReady,
    #[error("the caller's deadline passed")]
    DeadlineExceeded,
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::Unauthenticated { token_presented } => {
                // Which caller tried is unknown by definition; whether a token came is useful.
                if let Some(suppressed) = REFUSED_UNAUTHENTICATED.admit() {
                    tracing::warn!(token_presented, suppressed, "call refused: no valid caller token");
                }
                reasoned(Code::Unauthenticated, "UNAUTHENTICATED", message, [])
            }
            Refusal::CallerMismatch => {
                if let Some(suppressed) = REFUSED_UNAUTHENTICATED.admit() {
                    tracing::warn!(
                        suppressed,
                        "call refused: token and client certificate name different callers"
                    );
                }
                reasoned(Code::Unauthenticated, "CALLER_MISMATCH", message, [])
            }
            Refusal::MethodNotAllowed { rpc } => {
                let method = rpc.as_str();
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
            Refusal::Overloaded { limit } => reasoned(
                Code::ResourceExhausted,
                "OVERLOADED",
                message,
                [("max_in_flight", limit.to_string())],
            ),
            Refusal::FairShare { share, exceeded } => {
                let mut metadata: HashMap<String, String> = quota_metadata(&exceeded)
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect();
                metadata.insert("share".to_owned(), share.to_string());
                let mut details = ErrorDetails::with_error_info(CALLER_QUOTA, ERROR_DOMAIN, metadata);
                details.set_retry_info(Some(exceeded.retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Refusal::NotReady => reasoned(Code::Unavailable, "NOT_READY", message, []),
            Refusal::DeadlineExceeded => reasoned(Code::DeadlineExceeded, DEADLINE_EXCEEDED, message, []),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        error.log_cause();
        let mut details = ErrorDetails::with_error_info(
            error.reason(),
            ERROR_DOMAIN,
            error
                .metadata()
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect::<HashMap<_, _>>(),
        );
        if let Some((field, description)) = error.violation() {
            details.add_bad_request_violation(field, description);
        }
        if let Some(retry_after) = error.retry_after() {
            details.set_retry_info(Some(retry_after));
        }
        Status::with_error_details(code_of(error.kind()), error.public_message(), details)
    }
}

/// A request the transport could not parse.
impl From<FieldViolation> for Status {
    fn from(violation: FieldViolation) -> Self {
        ServiceError::from(violation).into()
    }
}

fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    }
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
