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
}
