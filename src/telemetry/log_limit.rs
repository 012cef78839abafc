//! Warnings about refused calls at a bounded rate: a flood of bad calls must not flood the
//! logs (metrics keep the exact counts). Each kind of warning gets its own limiter.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// At most one line per `interval`; the lines let through say how many were held back.
pub(crate) struct LogLimit {
    interval: Duration,
    /// Milliseconds since [`epoch`] when a line was last let through, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LogLimit {
    pub(crate) const fn per(interval: Duration) -> Self {
        Self {
            interval,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_it_counts_the_rest() {
        let limit = LogLimit::per(Duration::from_millis(200));
        assert_eq!(limit.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(limit.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limit.admit(), Some(1000));
        assert_eq!(limit.admit(), None);
    }
}
