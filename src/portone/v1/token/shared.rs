//! The Redis half of the token cache: the shared key and the fleet-wide lock, every call bounded
//! by a timeout, and an outage logged once at its start and once at its end.

use std::{
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::TokenCache;
use crate::telemetry::metrics;

pub(super) struct RedisTokens {
    pub(super) connection: ConnectionManager,
    /// Seals the token for Redis and opens what Redis holds.
    pub(super) seal: super::seal::TokenSeal,
    /// Namespaced by a hash of imp_key: two merchants' tokens never mix, and the key name
    /// carries no secret.
    pub(super) key: String,
    pub(super) lock_key: String,
    /// Every Redis call is cut at this: a slow Redis must not slow a signup down.
    pub(super) timeout: Duration,
    /// Set while Redis fails, so an outage is logged once, not once per request.
    pub(super) degraded: AtomicBool,
    /// When a degraded replica last tried Redis again, so recovery probes stay rare.
    pub(super) last_probe: Mutex<Option<Instant>>,
}

/// Deletes a key only if it still holds the given value: a late 401 for an old token never
/// throws away the fresh token another replica stored, and a lock is released only by its owner.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Takes the getToken lock, or breaks a stale one: a lock without expiry, or with more time
/// left than any holder sets (`ARGV[2]`, TOKEN_LOCK_TTL), can only be left over (written by
/// hand, restored from a dump, an older release) and would otherwise stall every replica's
/// getToken for ever. Answers `{1, 0}` taken, `{0, 0}` held by a live holder, `{2, left}` taken
/// over a stale lock that had `left` ms (-1: no expiry).
const TAKE_LOCK: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 0}
end
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {2, left}
end
return {0, 0}
"#;

/// How [`TokenCache::take_lock`] went.
pub(super) enum LockTaken {
    Taken,
    HeldElsewhere,
    /// Taken over a stale lock that had this many ms left (-1: no expiry).
    BrokeStale {
        left_ms: i64,
    },
}

impl TokenCache {
    /// The fleet-wide lock for `owner`, held at most `ttl`: `None` if Redis did not answer.
    pub(super) async fn take_lock(&self, owner: &str, ttl: Duration) -> Option<LockTaken> {
        let redis = self.redis.as_ref()?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = redis.connection.clone();
        let (outcome, left_ms) = self
            .call(async move {
                redis::Script::new(TAKE_LOCK)
                    .key(&redis.lock_key)
                    .arg(owner)
                    .arg(millis)
                    .invoke_async::<(i64, i64)>(&mut connection)
                    .await
            })
            .await?;
        Some(match outcome {
            1 => LockTaken::Taken,
            2 => LockTaken::BrokeStale { left_ms },
            _ => LockTaken::HeldElsewhere,
        })
    }

    /// `SET key value NX PX ttl`: `Some(true)` if set, `Some(false)` if the key existed, `None`
    /// if Redis did not answer.
    pub(super) async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Option<bool> {
        let redis = self.redis.as_ref()?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = redis.connection.clone();
        let answer = self
            .call(async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis)
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await?;
        Some(answer.is_some())
    }

    pub(super) async fn compare_and_delete(&self, key: &str, expected: &str) {
        let Some(redis) = &self.redis else {
            return;
        };
        let mut connection = redis.connection.clone();
        self.call(async move {
            redis::Script::new(COMPARE_AND_DELETE)
                .key(key)
                .arg(expected)
                .invoke_async::<i64>(&mut connection)
                .await
        })
        .await;
    }

    /// One Redis round trip, cut at the configured timeout. A failure is `None`: the start and
    /// the end of an outage are logged once each, never per request.
    pub(super) async fn call<T>(&self, request: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        let redis = self.redis.as_ref()?;
        self.counters.redis_round_trips.fetch_add(1, Ordering::Relaxed);
        let failure = match tokio::time::timeout(redis.timeout, request).await {
            Ok(Ok(value)) => {
                if redis.degraded.swap(false, Ordering::Relaxed) {
                    metrics::set_token_cache_degraded(false);
                    tracing::info!("redis answers again; the shared token cache is back in use");
                }
                return Some(value);
            }
            Ok(Err(error)) => format!("{:?}", error.kind()),
            Err(_) => "timed out".to_owned(),
        };
        self.counters.redis_failures.fetch_add(1, Ordering::Relaxed);
        if !redis.degraded.swap(true, Ordering::Relaxed) {
            metrics::set_token_cache_degraded(true);
            tracing::warn!(
                failure = %failure,
                degraded = true,
                "redis unavailable; token cache degraded to in-process"
            );
        }
        None
    }
}
