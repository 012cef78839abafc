//! A circuit breaker in front of PortOne. After `failure_threshold` consecutive failed attempts
//! (connection errors, timeouts, 5xx, 429) calls fail at once for `open_for`, instead of each
//! spending its retries and its caller's deadline on an outage; then one probe goes through
//! (half-open), and its outcome closes the circuit or opens it for another `open_for`.
//!
//! Any answer from PortOne (a 404 or a 401 too) counts as a success: the circuit is about
//! PortOne being reachable, not about what it says.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::telemetry::metrics;

#[derive(Clone, Debug)]
pub struct CircuitSettings {
    /// Consecutive failed attempts that open the circuit; 0 never opens it.
    pub failure_threshold: u32,
    /// How long an open circuit refuses before letting a probe through.
    pub open_for: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out since then; another is let through if it has not come back in `open_for`
    /// (its caller may have gone away).
    HalfOpen {
        probe_since: Instant,
    },
}

pub(crate) struct CircuitBreaker {
    settings: CircuitSettings,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub(crate) fn new(settings: CircuitSettings) -> Self {
        metrics::set_portone_circuit(0.0);
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Ok: send the attempt. Err: the circuit is open; PortOne may be tried again after this.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= until => {
                tracing::info!("portone circuit half-open: one probe goes through");
                metrics::set_portone_circuit(0.5);
                *state = State::HalfOpen { probe_since: now };
                Ok(())
            }
            State::Open { until } => Err(until - now),
            State::HalfOpen { probe_since } => {
                let retry_at = probe_since + self.settings.open_for;
                if now >= retry_at {
                    *state = State::HalfOpen { probe_since: now };
                    Ok(())
                } else {
                    Err(retry_at - now)
                }
            }
        }
    }

    /// PortOne answered.
    pub(crate) fn succeeded(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!("portone answered again; circuit closed");
            metrics::set_portone_circuit(0.0);
        }
        *state = State::Closed { failures: 0 };
    }

    /// An attempt failed the way an outage fails.
    pub(crate) fn failed(&self) {
        if self.settings.failure_threshold == 0 {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        let open = match *state {
            State::Closed { failures } if failures + 1 >= self.settings.failure_threshold => true,
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen { .. } => true,
            // An attempt admitted before the circuit opened: it is open already.
            State::Open { .. } => false,
        };
        if open {
            tracing::warn!(
                open_for_ms = self.settings.open_for.as_millis() as u64,
                "portone failing; circuit open: calls fail at once until a probe succeeds"
            );
            metrics::set_portone_circuit(1.0);
            *state = State::Open {
                until: now + self.settings.open_for,
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_for_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(CircuitSettings {
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_for_ms),
        })
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures_only() {
        let circuit = breaker(3, 10_000);
        circuit.failed();
        circuit.failed();
        circuit.succeeded();
        circuit.failed();
        circuit.failed();
        assert!(circuit.admit().is_ok(), "a success in between resets the count");
        circuit.failed();
        let retry_after = circuit.admit().unwrap_err();
        assert!(retry_after <= Duration::from_secs(10) && retry_after > Duration::from_secs(9));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let circuit = breaker(1, 30);
        circuit.failed();
        assert!(circuit.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuit.admit().is_ok(), "the probe");
        assert!(circuit.admit().is_err(), "only one probe at a time");
        circuit.failed();
        assert!(circuit.admit().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuit.admit().is_ok());
        circuit.succeeded();
        assert!(
            circuit.admit().is_ok() && circuit.admit().is_ok(),
            "closed: everyone goes"
        );
    }

    #[test]
    fn a_probe_that_never_returns_is_replaced_after_open_for() {
        let circuit = breaker(1, 30);
        circuit.failed();
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuit.admit().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuit.admit().is_ok(), "the first probe's caller went away");
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let circuit = breaker(0, 30);
        for _ in 0..100 {
            circuit.failed();
        }
        assert!(circuit.admit().is_ok());
    }
}
