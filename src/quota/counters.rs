//! Fixed-window counters: in this process, or in Redis shared by every replica, chosen like the
//! token cache chooses (REDIS_URL set or not). A counter answers its new count and how long its
//! window has left; `None` when Redis did not answer, which the quotas treat as "let it through".
//!
//! A caller's per-minute bounds are taken from Redis in leases ([`Counters::take`]): one round trip
//! per lease rather than per call. A lease is counted in Redis when it is taken, so the fleet
//! never passes a bound; what a replica leased and did not use when the window ends is lost, at
//! most one lease ([`LEASE_SHARE`] of the bound) per replica and caller.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::telemetry::{log_limit::LogLimit, metrics};

/// INCRBY and, for a window just started (or a key left without expiry, which would otherwise
/// count for ever), PEXPIRE: one round trip. Answers `{count, ms left}`.
const COUNT: &str = r#"
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
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

/// A lease is this fraction of the bound (at least one): 1%, so a lease left unused costs a
/// caller little, and a bound of 1,200 a minute takes a round trip per 12 calls.
const LEASE_SHARE: u64 = 100;

/// Windows kept in process between sweeps of the ended ones.
const SWEEP_EVERY: usize = 4096;

pub(crate) enum Counters {
    /// One replica: the counts of this process.
    InProcess(Mutex<Local>),
    /// Every replica: the counts in Redis, each call cut at `timeout`, and this replica's leases.
    Redis {
        connection: ConnectionManager,
        timeout: Duration,
        leases: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Lease>>>>,
    },
}

/// What is left of a lease this replica took, until its window ends. Behind an async mutex per
/// key: the calls that find it empty wait for one of them to take the next lease, rather than
/// each taking one (fifty calls arriving at once would otherwise lease fifty times their need).
pub(crate) struct Lease {
    ends: Instant,
    left: u64,
    /// The fleet's count reached the bound: refused until `ends` without asking Redis again.
    exhausted: bool,
}

/// After Redis failed to answer, a caller's calls go through uncounted for this long without
/// asking it again, so a dead Redis is not asked once per call, one call at a time.
const UNCOUNTED_AFTER_FAILURE: Duration = Duration::from_secs(1);

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
        Self::Redis {
            connection,
            timeout,
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// One from `key`'s window (of length `window` when it starts now) of `limit`: `Err` with
    /// the time left in the window when the limit is reached. With Redis, from this replica's
    /// lease, or from a new one; a Redis that does not answer lets it through.
    pub(crate) async fn take(&self, key: &str, limit: u64, window: Duration) -> Result<(), Duration> {
        let Self::Redis { leases, .. } = self else {
            return match self.count(key, window, 1).await {
                Some((count, left)) if count > limit => Err(left),
                _ => Ok(()),
            };
        };
        let slot = {
            let mut leases = lock(leases);
            match leases.get(key) {
                Some(slot) => Arc::clone(slot),
                None => Arc::clone(leases.entry(key.to_owned()).or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(Lease {
                        ends: Instant::now(),
                        left: 0,
                        exhausted: false,
                    }))
                })),
            }
        };
        let mut lease = slot.lock().await;
        let now = Instant::now();
        if lease.ends > now {
            if lease.left > 0 {
                lease.left -= 1;
                return Ok(());
            }
            if lease.exhausted {
                return Err(lease.ends - now);
            }
        }
        let size = (limit / LEASE_SHARE).max(1);
        let Some((count, left)) = self.count(key, window, size).await else {
            *lease = Lease {
                ends: Instant::now() + UNCOUNTED_AFTER_FAILURE,
                left: u64::MAX,
                exhausted: false,
            };
            return Ok(());
        };
        // Of this lease, what fits under the limit: the count before it was `count - size`.
        let granted = limit.saturating_sub(count.saturating_sub(size)).min(size);
        *lease = Lease {
            ends: Instant::now() + left,
            left: granted.saturating_sub(1),
            exhausted: granted == 0,
        };
        if granted == 0 { Err(left) } else { Ok(()) }
    }

    /// Adds `by` to `key`'s window (of length `window` when it starts now): its count and time
    /// left, or `None` if Redis did not answer in time.
    pub(crate) async fn count(&self, key: &str, window: Duration, by: u64) -> Option<(u64, Duration)> {
        match self {
            Self::InProcess(local) => Some(lock(local).count(key, window, by)),
            Self::Redis {
                connection, timeout, ..
            } => {
                let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
                let mut connection = connection.clone();
                let mut invocation = COUNT_SCRIPT.key(key);
                invocation.arg(millis).arg(by);
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

/// A std mutex: held for a map update, never across an await; what it guards stays consistent
/// whatever panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Local {
    fn count(&mut self, key: &str, window: Duration, by: u64) -> (u64, Duration) {
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
        entry.1 += by;
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
        assert_eq!(counters.count("a", hour, 1).await, Some((1, hour)));
        let (count, left) = counters.count("a", hour, 1).await.unwrap();
        assert_eq!(count, 2);
        assert!(left <= hour);
        assert_eq!(counters.count("b", hour, 1).await, Some((1, hour)));
        let millisecond = Duration::from_millis(1);
        assert_eq!(counters.count("c", millisecond, 1).await.unwrap().0, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            counters.count("c", millisecond, 1).await.unwrap().0,
            1,
            "a new window"
        );
    }

    /// Two replicas sharing Redis, each taking leases, grant the bound exactly between them:
    /// never more, and nothing lost while the leases' window lasts.
    #[tokio::test]
    async fn replicas_leasing_from_redis_grant_exactly_the_bound() {
        let Ok(url) = std::env::var("REDIS_URL") else {
            return;
        };
        let replica = || async {
            let client = redis::Client::open(url.as_str()).unwrap();
            Counters::redis(
                client.get_connection_manager().await.unwrap(),
                Duration::from_secs(5),
            )
        };
        let (one, two) = (replica().await, replica().await);
        let key = format!("certification-service:quota-test:{}", std::process::id());
        let (limit, hour) = (250, Duration::from_secs(3600));
        let mut granted = 0;
        let mut refused = [false, false];
        while !(refused[0] && refused[1]) {
            for (index, counters) in [&one, &two].into_iter().enumerate() {
                match counters.take(&key, limit, hour).await {
                    Ok(()) => granted += 1,
                    Err(left) => {
                        assert!(left <= hour);
                        refused[index] = true;
                    }
                }
            }
            assert!(granted <= limit, "granted past the bound");
        }
        assert_eq!(granted, limit);
    }

    /// Fifty calls arriving at once on a replica take the leases they need between them, not
    /// one each: with a bound of 1,200 (leases of 12), Redis counts 60.
    #[tokio::test]
    async fn calls_arriving_together_share_one_lease_at_a_time() {
        let Ok(url) = std::env::var("REDIS_URL") else {
            return;
        };
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_connection_manager().await.unwrap();
        let counters = Counters::redis(connection.clone(), Duration::from_secs(5));
        let key = format!("certification-service:quota-test-together:{}", std::process::id());
        let hour = Duration::from_secs(3600);
        let calls = (0..50).map(|_| counters.take(&key, 1200, hour));
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(Result::is_ok));
        let counted: u64 = redis::AsyncCommands::get(&mut connection, &key).await.unwrap();
        let _: () = redis::AsyncCommands::del(&mut connection, &key).await.unwrap();
        assert_eq!(counted, 60);
    }
}
