//! Fixed-window counters: in this process, or in Redis shared by every replica, chosen like the
//! token cache chooses (REDIS_URL set or not). A counter answers its new count and how long its
//! window has left; `None` when Redis did not answer, which the quotas treat as "let it through".

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::telemetry::{log_limit::LogLimit, metrics};

/// INCR and, for a window just started (or a key left without expiry, which would otherwise
/// count for ever), PEXPIRE: one round trip. Answers `{count, ms left}`.
const COUNT: &str = r#"
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"#;

/// [`COUNT`] with its SHA-1 computed once: each call sends EVALSHA, and the script only after a
/// NOSCRIPT.
static COUNT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(COUNT));

/// Redis failures of the quota counters, at most one warning a second.
static REDIS_DOWN: LogLimit = LogLimit::per(Duration::from_secs(1));

/// Windows kept in process between sweeps of the ended ones.
const SWEEP_EVERY: usize = 4096;

pub(crate) enum Counters {
    /// One replica: the counts of this process.
    InProcess(Mutex<Local>),
    /// Every replica: the counts in Redis, each call cut at `timeout`.
    Redis {
        connection: ConnectionManager,
        timeout: Duration,
    },
}

#[derive(Default)]
pub(crate) struct Local {
    /// Per key: when its window ends, and its count.
    windows: HashMap<String, (Instant, u64)>,
    inserted: usize,
}

impl Counters {
    pub(crate) fn in_process() -> Self {
        Self::InProcess(Mutex::new(Local::default()))
    }

    pub(crate) fn redis(connection: ConnectionManager, timeout: Duration) -> Self {
        Self::Redis { connection, timeout }
    }

    /// Adds one to `key`'s window (of length `window` when it starts now): its count and time
    /// left, or `None` if Redis did not answer in time.
    pub(crate) async fn count(&self, key: &str, window: Duration) -> Option<(u64, Duration)> {
        match self {
            Self::InProcess(local) => Some(local.lock().expect("no panic holds it").count(key, window)),
            Self::Redis { connection, timeout } => {
                let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
                let mut connection = connection.clone();
                let mut invocation = COUNT_SCRIPT.key(key);
                invocation.arg(millis);
                let call = invocation.invoke_async::<(u64, u64)>(&mut connection);
                let failure = match tokio::time::timeout(*timeout, call).await {
                    Ok(Ok((count, left))) => return Some((count, Duration::from_millis(left))),
                    Ok(Err(error)) => format!("{:?}", error.kind()),
                    Err(_) => "timed out".to_owned(),
                };
                metrics::quota_counter_unavailable();
                if let Some(suppressed) = REDIS_DOWN.admit() {
                    tracing::warn!(
                        failure = %failure,
                        suppressed,
                        "redis unavailable for the caller quotas; calls are let through uncounted"
                    );
                }
                None
            }
        }
    }
}

impl Local {
    fn count(&mut self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        if self.inserted >= SWEEP_EVERY {
            self.windows.retain(|_, (ends, _)| *ends > now);
            self.inserted = 0;
        }
        let entry = match self.windows.get_mut(key) {
            Some(entry) => entry,
            None => {
                self.inserted += 1;
                self.windows.entry(key.to_owned()).or_insert((now, 0))
            }
        };
        if entry.0 <= now {
            *entry = (now + window, 0);
        }
        entry.1 += 1;
        (entry.1, entry.0.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_counts_until_it_ends_then_starts_again() {
        let counters = Counters::in_process();
        let hour = Duration::from_secs(3600);
        assert_eq!(counters.count("a", hour).await, Some((1, hour)));
        let (count, left) = counters.count("a", hour).await.unwrap();
        assert_eq!(count, 2);
        assert!(left <= hour);
        assert_eq!(counters.count("b", hour).await, Some((1, hour)));
        let millisecond = Duration::from_millis(1);
        assert_eq!(counters.count("c", millisecond).await.unwrap().0, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            counters.count("c", millisecond).await.unwrap().0,
            1,
            "a new window"
        );
    }
}
