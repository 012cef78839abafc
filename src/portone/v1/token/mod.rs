//! The PortOne access token cache: in-process, or in Redis shared by every replica with an
//! in-process copy in front. Redis is an optimisation, never a dependency: any Redis failure or
//! slow answer is a miss, answered by PortOne and the in-process copy.
//!
//! The fleet-wide single flight lives here as primitives (a short lock with an owner and an
//! expiry); `client.rs` composes them with getToken.

mod seal;
mod shared;

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use self::{
    seal::TokenSeal,
    shared::{LockTaken, RedisTokens},
};
use crate::telemetry::metrics;

/// A PortOne access token. A credential: its `Debug` redacts and it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub(super) fn new(raw: String) -> Self {
        Self(raw)
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// A token with how long it remains usable (PortOne's expiry less our margin).
#[derive(Clone, Debug)]
pub(super) struct UsableToken {
    pub(crate) token: AccessToken,
    pub(crate) remaining: Duration,
}

struct CachedToken {
    token: AccessToken,
    valid_until: Instant,
}

/// The in-process copy, and the token PortOne last refused (its SHA-256): a copy of that token
/// read from Redis before the refusal and stored after it must not come back, or the call
/// retrying with a fresh token would be handed the refused one again.
#[derive(Default)]
struct Local {
    cached: Option<CachedToken>,
    refused: Option<[u8; 32]>,
}

fn fingerprint(token: &AccessToken) -> [u8; 32] {
    Sha256::digest(token.expose().as_bytes()).into()
}

/// What Redis said about the shared token.
pub(super) enum SharedToken {
    Found(UsableToken),
    Missing,
    /// Redis failed or was too slow: carry on without it.
    Unavailable,
}

/// The outcome of asking for the fleet-wide getToken lock.
pub(super) enum LockAttempt {
    /// Ours until released or until it expires; the owner id makes the release safe.
    Acquired(LockOwner),
    /// Another replica is fetching: wait for its token to appear.
    HeldElsewhere,
    Unavailable,
}

pub(super) struct LockOwner(String);

/// Counters for benchmarks and operators: how the token was found, and what it cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCacheStats {
    /// Answered from the in-process copy.
    pub local_hits: u64,
    /// Answered by Redis (another replica's fetch, or ours after a restart).
    pub(crate) redis_hits: u64,
    /// getToken calls this replica made.
    pub fetches: u64,
    /// Redis commands sent (a pipeline or a script counts once: it is one round trip).
    pub redis_round_trips: u64,
    /// Redis calls that failed or timed out.
    pub(crate) redis_failures: u64,
}

#[derive(Default)]
struct Counters {
    local_hits: AtomicU64,
    redis_hits: AtomicU64,
    fetches: AtomicU64,
    redis_round_trips: AtomicU64,
    redis_failures: AtomicU64,
}

pub struct TokenCache {
    local: Mutex<Local>,
    redis: Option<RedisTokens>,
    /// Held while fetching a fresh token, so concurrent cold requests in one process make one
    /// getToken call (or one wait on another replica's) and the rest find its result.
    refill: tokio::sync::Mutex<()>,
    /// Identifies this process as a lock owner; a random part per acquisition is added.
    instance: String,
    counters: Counters,
}

/// How often a degraded replica tries Redis again while it serves from memory.
const RECOVERY_PROBE_INTERVAL: Duration = Duration::from_secs(1);

impl TokenCache {
    pub(crate) fn in_process() -> Self {
        Self {
            local: Mutex::new(Local::default()),
            redis: None,
            refill: tokio::sync::Mutex::new(()),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            counters: Counters::default(),
        }
    }

    /// `timeout` bounds every Redis call. The token is sealed in Redis under a key derived
    /// from `imp_secret`.
    pub(crate) fn redis(
        connection: ConnectionManager,
        imp_key: &str,
        imp_secret: &str,
        timeout: Duration,
    ) -> Self {
        let key_hash = hex::encode(Sha256::digest(imp_key.as_bytes()));
        let key = format!("certification-service:portone-v1:token:{}", &key_hash[..32]);
        Self {
            redis: Some(RedisTokens {
                seal: TokenSeal::new(imp_secret, &key),
                connection,
                lock_key: format!("{key}:lock"),
                key,
                timeout,
                degraded: AtomicBool::new(false),
                last_probe: Mutex::new(None),
            }),
            ..Self::in_process()
        }
    }

    /// The Redis key the token lives under, when Redis is in use.
    #[cfg(test)]
    fn redis_key(&self) -> Option<&str> {
        self.redis.as_ref().map(|redis| redis.key.as_str())
    }

    /// True while Redis is failing and the in-process copy carries the load.
    pub fn is_degraded(&self) -> bool {
        self.redis
            .as_ref()
            .is_some_and(|redis| redis.degraded.load(Ordering::Relaxed))
    }

    pub fn stats(&self) -> TokenCacheStats {
        let counters = &self.counters;
        TokenCacheStats {
            local_hits: counters.local_hits.load(Ordering::Relaxed),
            redis_hits: counters.redis_hits.load(Ordering::Relaxed),
            fetches: counters.fetches.load(Ordering::Relaxed),
            redis_round_trips: counters.redis_round_trips.load(Ordering::Relaxed),
            redis_failures: counters.redis_failures.load(Ordering::Relaxed),
        }
    }

    pub(super) fn refill_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.refill
    }

    pub(super) fn count_fetch(&self) {
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        metrics::record_token_fetch();
    }

    /// The in-process copy, if still usable: no Redis round trip.
    pub(super) fn local(&self) -> Option<UsableToken> {
        let found = self.peek_local();
        if found.is_some() {
            self.counters.local_hits.fetch_add(1, Ordering::Relaxed);
            metrics::record_token_lookup("in_process", "hit");
        } else {
            metrics::record_token_lookup("in_process", "miss");
        }
        found
    }

    /// The token Redis holds, copied into memory when found. Without Redis: `Unavailable`.
    pub(super) async fn shared(&self) -> SharedToken {
        let Some(redis) = &self.redis else {
            return SharedToken::Unavailable;
        };
        let mut connection = redis.connection.clone();
        let answer = self
            .call(async move {
                redis::pipe()
                    .get(&redis.key)
                    .pttl(&redis.key)
                    .query_async::<(Option<String>, i64)>(&mut connection)
                    .await
            })
            .await;
        // A value that does not open (planted, another merchant's, damaged) is a miss: the
        // fetch that follows overwrites it.
        let opened =
            answer.map(|(raw, remaining_ms)| (raw.and_then(|raw| redis.seal.open(&raw)), remaining_ms));
        match opened {
            Some((Some(token), remaining_ms)) if remaining_ms > 0 => {
                // Bounded by the token's own expiry as Redis counts it: no clock of ours involved.
                let remaining = Duration::from_millis(remaining_ms.unsigned_abs());
                // A token PortOne refused since is a miss: the fetch that follows replaces it.
                if !self.put_local_unless_refused(&token, remaining) {
                    metrics::record_token_lookup("redis", "miss");
                    return SharedToken::Missing;
                }
                self.counters.redis_hits.fetch_add(1, Ordering::Relaxed);
                metrics::record_token_lookup("redis", "hit");
                SharedToken::Found(UsableToken { token, remaining })
            }
            Some(_) => {
                metrics::record_token_lookup("redis", "miss");
                SharedToken::Missing
            }
            None => {
                metrics::record_token_lookup("redis", "error");
                SharedToken::Unavailable
            }
        }
    }

    /// Asks for the fleet-wide lock on getToken, held at most `ttl` so a replica that dies
    /// holding it stalls the others no longer than that. A lock that could outlive `ttl` (no
    /// expiry, or more time left) is stale: it is taken over, with a warning.
    pub(super) async fn try_lock(&self, ttl: Duration) -> LockAttempt {
        let owner = format!("{}:{}", self.instance, uuid::Uuid::new_v4().simple());
        match self.take_lock(&owner, ttl).await {
            Some(LockTaken::Taken) => LockAttempt::Acquired(LockOwner(owner)),
            Some(LockTaken::BrokeStale { left_ms }) => {
                // Not rate-limited: the lock is ours now, with an expiry, so it happens once.
                tracing::warn!(
                    lock_left_ms = left_ms,
                    lock_ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                    "broke a stale portone token lock in redis (no expiry, or longer than TOKEN_LOCK_TTL)"
                );
                LockAttempt::Acquired(LockOwner(owner))
            }
            Some(LockTaken::HeldElsewhere) => LockAttempt::HeldElsewhere,
            None => LockAttempt::Unavailable,
        }
    }

    /// Releases the lock if it is still ours; an expired lock someone else took stays theirs.
    pub(super) async fn unlock(&self, owner: LockOwner) {
        if let Some(redis) = &self.redis {
            self.compare_and_delete(&redis.lock_key, &owner.0).await;
        }
    }

    /// Stores a fresh token here and, when in use, in Redis for the other replicas.
    pub(super) async fn put(&self, token: &AccessToken, valid_for: Duration) {
        if valid_for.is_zero() {
            return;
        }
        {
            let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // PortOne issued it anew: no longer the refused one.
            if local.refused == Some(fingerprint(token)) {
                local.refused = None;
            }
            local.cached = Some(CachedToken {
                token: token.clone(),
                valid_until: Instant::now() + valid_for,
            });
        }
        if let Some(redis) = &self.redis {
            let millis = u64::try_from(valid_for.as_millis()).unwrap_or(u64::MAX);
            let mut connection = redis.connection.clone();
            self.call(async move {
                redis::cmd("SET")
                    .arg(&redis.key)
                    .arg(redis.seal.seal(token))
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await;
        }
    }

    /// Forgets `token` after PortOne rejected it, here and (if still the same) in Redis.
    pub(super) async fn invalidate(&self, token: &AccessToken) {
        {
            let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            local.refused = Some(fingerprint(token));
            if local.cached.as_ref().is_some_and(|cached| &cached.token == token) {
                local.cached = None;
            }
        }
        if let Some(redis) = &self.redis {
            self.compare_and_delete(&redis.key, &redis.seal.seal(token)).await;
        }
    }

    /// While degraded, at most once a second: whether to try Redis again from a warm request.
    pub(super) fn recovery_probe_due(&self) -> bool {
        let Some(redis) = &self.redis else {
            return false;
        };
        if !redis.degraded.load(Ordering::Relaxed) {
            return false;
        }
        let mut last_probe = redis
            .last_probe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if last_probe.is_some_and(|last| now - last < RECOVERY_PROBE_INTERVAL) {
            return false;
        }
        *last_probe = Some(now);
        true
    }

    /// After an outage Redis may have come back empty: give it our in-process token unless it
    /// already holds one (`NX`), so cold replicas find it again. Success ends the degraded period.
    pub(super) async fn write_back(&self) {
        let Some(redis) = &self.redis else {
            return;
        };
        let Some(usable) = self.peek_local() else {
            return;
        };
        self.set_if_absent(&redis.key, &redis.seal.seal(&usable.token), usable.remaining)
            .await;
    }

    /// The in-process copy without counting a hit.
    fn peek_local(&self) -> Option<UsableToken> {
        let local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        local
            .cached
            .as_ref()
            .filter(|cached| cached.valid_until > now)
            .map(|cached| UsableToken {
                token: cached.token.clone(),
                remaining: cached.valid_until - now,
            })
    }

    /// Copies a token read from Redis into memory; false, storing nothing, when it is the one
    /// PortOne refused. Checked and stored under one lock, so a refusal cannot slip between.
    fn put_local_unless_refused(&self, token: &AccessToken, valid_for: Duration) -> bool {
        let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if local.refused == Some(fingerprint(token)) {
            return false;
        }
        local.cached = Some(CachedToken {
            token: token.clone(),
            valid_until: Instant::now() + valid_for,
        });
        true
    }
}

#[cfg(test)]
mod tests;
