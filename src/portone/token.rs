//! The PortOne access token cache: in-process, or in Redis shared by every replica with an
//! in-process copy in front. Redis is an optimisation, never a dependency: any Redis failure is
//! a cache miss, answered by PortOne and the in-process copy.

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{AsyncCommands, aio::ConnectionManager};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

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

struct CachedToken {
    token: AccessToken,
    valid_until: Instant,
}

struct RedisTokens {
    connection: ConnectionManager,
    /// Namespaced by a hash of imp_key: two merchants' tokens never mix, and the key name
    /// carries no secret.
    key: String,
    /// Set while Redis fails, so an outage is logged once, not once per request.
    degraded: AtomicBool,
}

pub struct TokenCache {
    local: Mutex<Option<CachedToken>>,
    redis: Option<RedisTokens>,
    /// Held while fetching a fresh token, so concurrent cold requests in one process make one
    /// getToken call and the rest find its result.
    refill: tokio::sync::Mutex<()>,
}

/// Deletes the shared token only if it is still the one that was rejected, so a late 401 for
/// an old token never throws away the fresh token another replica just stored.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

impl TokenCache {
    pub fn in_process() -> Self {
        Self {
            local: Mutex::new(None),
            redis: None,
            refill: tokio::sync::Mutex::new(()),
        }
    }

    pub fn redis(connection: ConnectionManager, imp_key: &str) -> Self {
        let key_hash = hex::encode(Sha256::digest(imp_key.as_bytes()));
        Self {
            redis: Some(RedisTokens {
                connection,
                key: format!("certification-service:portone-v1:token:{}", &key_hash[..32]),
                degraded: AtomicBool::new(false),
            }),
            ..Self::in_process()
        }
    }

    /// The Redis key the token lives under, when Redis is in use.
    pub fn redis_key(&self) -> Option<&str> {
        self.redis.as_ref().map(|redis| redis.key.as_str())
    }

    pub(super) fn refill_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.refill
    }

    /// A token still valid by its own expiry (less our margin), from memory or Redis.
    pub(super) async fn get(&self) -> Option<AccessToken> {
        if let Some(token) = self.get_local() {
            return Some(token);
        }
        let redis = self.redis.as_ref()?;
        let mut connection = redis.connection.clone();
        let answer: redis::RedisResult<(Option<String>, i64)> = redis::pipe()
            .get(&redis.key)
            .pttl(&redis.key)
            .query_async(&mut connection)
            .await;
        match self.note_redis(answer) {
            Some((Some(raw), remaining_ms)) if remaining_ms > 0 => {
                let token = AccessToken::new(raw);
                // Bounded by the token's own expiry as Redis counts it: no clock of ours involved.
                self.put_local(&token, Duration::from_millis(remaining_ms.unsigned_abs()));
                Some(token)
            }
            _ => None,
        }
    }

    pub(super) async fn put(&self, token: &AccessToken, valid_for: Duration) {
        if valid_for.is_zero() {
            return;
        }
        self.put_local(token, valid_for);
        if let Some(redis) = &self.redis {
            let mut connection = redis.connection.clone();
            let millis = u64::try_from(valid_for.as_millis()).unwrap_or(u64::MAX);
            let stored: redis::RedisResult<()> = connection.pset_ex(&redis.key, token.expose(), millis).await;
            self.note_redis(stored);
        }
    }

    /// Forgets `token` after PortOne rejected it, here and (if still the same) in Redis.
    pub(super) async fn invalidate(&self, token: &AccessToken) {
        {
            let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if local.as_ref().is_some_and(|cached| &cached.token == token) {
                *local = None;
            }
        }
        if let Some(redis) = &self.redis {
            let mut connection = redis.connection.clone();
            let deleted: redis::RedisResult<i64> = redis::Script::new(COMPARE_AND_DELETE)
                .key(&redis.key)
                .arg(token.expose())
                .invoke_async(&mut connection)
                .await;
            self.note_redis(deleted);
        }
    }

    fn get_local(&self) -> Option<AccessToken> {
        let local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        local
            .as_ref()
            .filter(|cached| cached.valid_until > Instant::now())
            .map(|cached| cached.token.clone())
    }

    fn put_local(&self, token: &AccessToken, valid_for: Duration) {
        let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *local = Some(CachedToken {
            token: token.clone(),
            valid_until: Instant::now() + valid_for,
        });
    }

    /// Turns a Redis failure into a miss, logging the start and end of an outage once each.
    fn note_redis<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
        let redis = self.redis.as_ref()?;
        match result {
            Ok(value) => {
                if redis.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again; the shared token cache is back in use");
                }
                Some(value)
            }
            Err(error) => {
                if !redis.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error_kind = ?error.kind(),
                        "redis unavailable; token cache degraded to in-process"
                    );
                }
                None
            }
        }
    }
}
