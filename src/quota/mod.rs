//! Bounds per caller (issue 29): sessions begun per minute (SESSIONS_PER_MINUTE), PortOne look-ups
//! caused per minute (LOOKUPS_PER_MINUTE), and look-ups per unredeemed session
//! ([`SESSION_LOOKUPS`]). They protect PortOne, our database and the other callers from one
//! caller's flood; they are not a door. So the counters live in Redis when REDIS_URL is set, one
//! round trip a check, shared by every replica, and a Redis that fails or is slow lets the call
//! through (a rate-limited warning and a metric say so); without Redis they live in this process
//! (one replica). The open sessions bound (OPEN_SESSIONS_PER_CALLER) is counted in the database,
//! which knows the sessions: see `Store::open_sessions`.
//!
//! Each counter is a fixed window: the first increment starts it (INCRBY, then PEXPIRE), the count
//! past the caller's bound is refused until the window ends, and the refusal says when that is.
//! A replica takes a caller's per-minute counts from Redis in leases (see `counters`).

mod counters;
mod limits;

use std::time::Duration;

use sha2::{Digest, Sha256};

pub(crate) use counters::Counters;
pub(crate) use limits::MAX_LIMIT;
pub use limits::{CallerLimits, CallerLimitsError, Limits};

use crate::telemetry::metrics;

/// Look-ups one session may cause before it is redeemed; the next is refused (SESSION_SPENT)
/// without reaching PortOne. A signup needs one, a few retries a handful: ten is generous, and it
/// stops a session from being an oracle on other certifications.
pub(crate) const SESSION_LOOKUPS: u64 = 10;

/// Which bound a refusal is about: the `bound` label and ErrorInfo metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Sessions,
    Lookups,
    Open,
    /// The caller's fair share of MAX_IN_FLIGHT (the transport's admission).
    InFlight,
}

impl Bound {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::Lookups => "lookups",
            Self::Open => "open",
            Self::InFlight => "in_flight",
        }
    }
}

/// A caller past one of its bounds: which, and when trying again may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this caller is over its {} bound; retry in {}ms", bound.as_str(), retry_after.as_millis())]
pub(crate) struct QuotaExceeded {
    pub(crate) bound: Bound,
    pub(crate) retry_after: Duration,
}

impl QuotaExceeded {
    /// The refusal, counted by caller and bound: the one place every quota refusal passes.
    pub(crate) fn refuse(caller: &str, bound: Bound, retry_after: Duration) -> Self {
        metrics::caller_quota_refused(caller, bound.as_str());
        Self { bound, retry_after }
    }
}

/// The settings of the quotas.
#[derive(Clone, Debug)]
pub struct QuotaSettings {
    /// Every caller's bounds unless CALLER_LIMITS says otherwise.
    pub defaults: Limits,
    pub per_caller: CallerLimits,
    /// The counting window: a minute; tests shorten it.
    pub window: Duration,
    /// The Redis keys' prefix: replicas sharing it share their counters. Tests give each fleet
    /// its own.
    pub namespace: String,
}

/// The Redis keys' prefix in production.
pub(crate) const NAMESPACE: &str = "certification-service:quota";

/// The per-caller bounds and their counters.
pub(crate) struct Quotas {
    settings: QuotaSettings,
    counters: Counters,
}

impl Quotas {
    pub(crate) fn new(settings: QuotaSettings, counters: Counters) -> Self {
        Self { settings, counters }
    }

    /// `caller`'s bounds.
    pub(crate) fn limits(&self, caller: &str) -> Limits {
        self.settings
            .per_caller
            .for_caller(caller, self.settings.defaults)
    }

    /// One session begun by `caller`, unless that puts it past SESSIONS_PER_MINUTE.
    pub(crate) async fn begin_session(&self, caller: &str) -> Result<(), QuotaExceeded> {
        self.take(caller, Bound::Sessions, self.limits(caller).sessions)
            .await
    }

    /// One PortOne look-up caused by `caller`, unless that puts it past LOOKUPS_PER_MINUTE.
    pub(crate) async fn lookup(&self, caller: &str) -> Result<(), QuotaExceeded> {
        metrics::caller_lookup(caller);
        self.take(caller, Bound::Lookups, self.limits(caller).lookups)
            .await
    }

    /// One look-up through the unredeemed session `session` (alive `ttl` at most): false when it
    /// already caused [`SESSION_LOOKUPS`], and so is spent.
    pub(crate) async fn session_lookup(&self, session: &str, ttl: Duration) -> bool {
        // The key names a hash: a session id is what the browser holds, not for Redis to keep.
        let hash = hex::encode(Sha256::digest(session.as_bytes()));
        let key = format!("{}:session:{}", self.settings.namespace, &hash[..32]);
        match self.counters.count(&key, ttl, 1).await {
            Some((count, _)) => count <= SESSION_LOOKUPS,
            None => true,
        }
    }

    async fn take(&self, caller: &str, bound: Bound, limit: u64) -> Result<(), QuotaExceeded> {
        let key = format!("{}:{}:{caller}", self.settings.namespace, bound.as_str());
        self.counters
            .take(&key, limit, self.settings.window)
            .await
            .map_err(|left| QuotaExceeded::refuse(caller, bound, left))
    }
}
