//! Closed-loop measurement: per-phase latency histograms ([`Measured`]), the generic
//! [`closed_loop`] driver every scenario runs on, and the table's header and row formatting.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

/// The table's columns and their widths, as [`Measured::row`] prints them.
const COLUMNS: [(&str, usize); 9] = [
    ("scenario", 34),
    ("conc", 5),
    ("calls", 8),
    ("errors", 8),
    ("calls/s", 9),
    ("p50 ms", 8),
    ("p90 ms", 8),
    ("p99 ms", 8),
    ("max ms", 8),
];

pub(crate) fn header() -> String {
    let mut line = format!("{:<width$}", COLUMNS[0].0, width = COLUMNS[0].1);
    for (name, width) in &COLUMNS[1..] {
        line.push_str(&format!(" {name:>width$}"));
    }
    line.push_str("  notes");
    line
}

/// What one phase of closed-loop load measured.
pub(crate) struct Measured {
    histogram: Histogram<u64>,
    /// Latency of the calls that failed.
    failed: Histogram<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) elapsed: Duration,
}

/// Microseconds from 1 µs to 10 minutes, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// How long a caller whose call failed waits before its next one.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

impl Measured {
    pub(crate) fn new() -> Self {
        Self {
            histogram: new_histogram(),
            failed: new_histogram(),
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Adds another phase of the same scenario.
    pub(crate) fn merge(&mut self, other: Measured) {
        self.histogram.add(other.histogram).expect("same bounds");
        self.failed.add(other.failed).expect("same bounds");
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.elapsed += other.elapsed;
    }

    pub(crate) fn ok(&self) -> u64 {
        self.histogram.len()
    }

    pub(crate) fn calls(&self) -> u64 {
        self.ok() + self.errors.values().sum::<u64>()
    }

    /// Successful calls per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64()
    }

    /// Median latency of the successful calls, in milliseconds.
    pub(crate) fn p50_ms(&self) -> f64 {
        self.histogram.value_at_quantile(0.5) as f64 / 1000.0
    }

    pub(crate) fn row(&self, label: &str, concurrency: usize, notes: &str) -> String {
        let ms = |quantile: f64| self.histogram.value_at_quantile(quantile) as f64 / 1000.0;
        let errors = self.errors.values().sum::<u64>();
        let mut notes = notes.to_owned();
        if errors > 0 {
            let by_code: Vec<String> = self
                .errors
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect();
            notes = format!(
                "{notes}; errors: {} answered in p50 {:.1} ms, p99 {:.1} ms",
                by_code.join(" "),
                self.failed.value_at_quantile(0.5) as f64 / 1000.0,
                self.failed.value_at_quantile(0.99) as f64 / 1000.0
            );
        }
        format!(
            "{label:<34} {concurrency:>5} {:>8} {errors:>8} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}",
            self.calls(),
            self.ok() as f64 / self.elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.histogram.max() as f64 / 1000.0,
            notes.trim()
        )
    }
}

/// Runs `call` from one caller per entry of `callers` (its client) for `duration`, each caller
/// starting its next call when the last one is answered; returns once every call in flight has
/// been answered. A failed call is counted under the label it returns.
pub(crate) async fn closed_loop<C, F, Fut>(callers: &[C], duration: Duration, call: F) -> Measured
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    run_loop(callers, Limit::Time(duration), call).await
}

/// Like [`closed_loop`], but for exactly `calls` calls (numbered 0..calls), however long they
/// take: for scenarios that consume a pool made beforehand, such as signup sessions.
pub(crate) async fn closed_loop_count<C, F, Fut>(callers: &[C], calls: u64, call: F) -> Measured
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    run_loop(callers, Limit::Calls(calls), call).await
}

enum Limit {
    Time(Duration),
    Calls(u64),
}

async fn run_loop<C, F, Fut>(callers: &[C], limit: Limit, call: F) -> Measured
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let sequence = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let max_calls = match limit {
        Limit::Time(_) => u64::MAX,
        Limit::Calls(calls) => calls,
    };
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(callers.len());
    for client in callers {
        let client = client.clone();
        let (sequence, stop, call) = (Arc::clone(&sequence), Arc::clone(&stop), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::new();
            while !stop.load(Ordering::Relaxed) {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                if n >= max_calls {
                    break;
                }
                let sent = Instant::now();
                match call(client.clone(), n).await {
                    Ok(()) => measured
                        .histogram
                        .saturating_record(sent.elapsed().as_micros() as u64),
                    Err(label) => {
                        measured
                            .failed
                            .saturating_record(sent.elapsed().as_micros() as u64);
                        *measured.errors.entry(label).or_default() += 1;
                        // A refused caller backs off a little, as a real one would, instead of
                        // spinning on the CPU the admitted calls need.
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            measured
        }));
    }
    if let Limit::Time(duration) = limit {
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut measured = Measured::new();
    for task in tasks {
        measured.merge(task.await.expect("a caller panicked"));
    }
    measured.elapsed = started.elapsed();
    measured
}
