//! Deletions at PortOne: deleting redeemed V1 certifications at PortOne, from the outbox their
//! redemptions filled. Every replica runs passes; the store hands each due row to one of them.
//! Outages (5xx, time-outs, an open circuit) are retried with growing pauses for as long as it
//! takes; a permanent refusal is retried a few times, then given up and logged for an operator.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use rand::Rng as _;
use tokio::time::Instant;

use super::{CertificationEraser, Erased, ProviderError};
use crate::{
    domain::{ImpUid, saturating_after},
    store::{DeletionOutcome, DueDeletion, Store, StoreError},
    telemetry::metrics,
};

/// Rows one pass takes; their DELETEs run concurrently.
const BATCH: u32 = 32;
/// One attempt's deadline (the HTTP layer's own retries included).
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a taken row stays away from other replicas: well past an attempt, so only a replica
/// that died mid-attempt lets it lapse.
const LEASE: Duration = Duration::from_secs(120);
/// Pause after the first failed attempt; doubled after each further one, up to `LAST_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(600);
/// Attempts before a permanent refusal (not an outage) is given up.
const REFUSALS_BEFORE_GIVING_UP: u32 = 5;

#[derive(Clone)]
pub(crate) struct Deleter {
    store: Store,
    eraser: Arc<dyn CertificationEraser>,
}

impl Deleter {
    pub(crate) fn new(store: Store, eraser: Arc<dyn CertificationEraser>) -> Self {
        Self { store, eraser }
    }

    /// Takes the deletions due now and attempts each once; `true` when the batch was full, so
    /// more may be due right now. What each attempt did is counted in the metrics.
    pub(crate) async fn pass(&self) -> Result<bool, StoreError> {
        let now = Utc::now();
        let due = self
            .store
            .take_due_deletions(now, saturating_after(now, LEASE), BATCH)
            .await?;
        let full = due.len() >= BATCH as usize;
        if due.is_empty() {
            return Ok(false);
        }
        let deadline = Instant::now() + ATTEMPT_DEADLINE;
        let mut attempts = tokio::task::JoinSet::new();
        for (index, row) in due.iter().enumerate() {
            let eraser = Arc::clone(&self.eraser);
            // Only a parsed imp_uid reaches a URL; the outbox holds nothing else, but a row is
            // input all the same.
            let imp_uid = ImpUid::parse(&row.imp_uid);
            attempts.spawn(async move {
                let answer = match imp_uid {
                    Ok(imp_uid) => eraser.delete(&imp_uid, deadline).await,
                    // Never sent: a refusal, given up after the usual attempts.
                    Err(_) => Err(ProviderError::Rejected {
                        status: 0,
                        code: None,
                        message: "the outbox holds something that is not an imp_uid".into(),
                    }),
                };
                (index, answer)
            });
        }
        let mut answers = Vec::with_capacity(due.len());
        while let Some(answer) = attempts.join_next().await {
            // A panicked attempt leaves its row leased: it comes due again when the lease lapses.
            if let Ok(answer) = answer {
                answers.push(answer);
            }
        }
        let mut first_error = None;
        for (index, answer) in answers {
            let row = &due[index];
            let settled = self.settle(row, answer).await;
            if let Err(error) = settled {
                // The row's lease lapses and another pass repeats it: a repeated DELETE finds 404.
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(full), Err)
    }

    /// Reports the outbox's size to the pending gauge.
    pub(crate) async fn report_pending(&self) -> Result<(), StoreError> {
        metrics::set_deletions_pending(self.store.pending_deletions().await?);
        Ok(())
    }

    async fn settle(
        &self,
        row: &DueDeletion,
        answer: Result<Erased, ProviderError>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let error = match answer {
            Ok(erased) => {
                let outcome = match erased {
                    Erased::Deleted => DeletionOutcome::Deleted,
                    Erased::Absent => DeletionOutcome::Absent,
                };
                self.store
                    .finish_deletion(&row.imp_uid, outcome, None, now)
                    .await?;
                metrics::deletion_done(outcome.as_str());
                tracing::info!(imp_uid = %row.imp_uid, outcome = outcome.as_str(), "certification deleted at PortOne");
                return Ok(());
            }
            Err(error) => error,
        };
        let (reason, outage) = classify(&error);
        if !outage && row.attempts >= REFUSALS_BEFORE_GIVING_UP {
            self.store
                .finish_deletion(&row.imp_uid, DeletionOutcome::Abandoned, Some(reason), now)
                .await?;
            metrics::deletion_failed(reason, false);
            tracing::error!(imp_uid = %row.imp_uid, attempts = row.attempts, reason, %error, "deleting a certification at PortOne refused; given up");
            return Ok(());
        }
        let mut pause = backoff(row.attempts);
        if let ProviderError::CircuitOpen { retry_after } = &error {
            pause = pause.max(*retry_after);
        }
        self.store
            .retry_deletion(&row.imp_uid, reason, saturating_after(now, pause))
            .await?;
        metrics::deletion_failed(reason, true);
        tracing::warn!(imp_uid = %row.imp_uid, attempts = row.attempts, reason, retry_in_ms = pause.as_millis() as u64, %error, "deleting a certification at PortOne failed; will retry");
        Ok(())
    }
}

/// A metric label for the failure, and whether it is an outage (retried for as long as it
/// takes) rather than a refusal.
fn classify(error: &ProviderError) -> (&'static str, bool) {
    match error {
        ProviderError::Unavailable(_) => ("unavailable", true),
        ProviderError::DeadlineExceeded | ProviderError::SharedTokenWait => ("timeout", true),
        ProviderError::CircuitOpen { .. } => ("circuit_open", true),
        // Fixed by an operator, not by giving up on the person's data.
        ProviderError::CredentialsRejected => ("credentials_rejected", true),
        // A garbled answer to a DELETE: the retry finds the record, or a 404.
        ProviderError::Malformed(_) => ("malformed", true),
        ProviderError::NotFound => ("not_found", false),
        ProviderError::Rejected { .. } => ("rejected", false),
        ProviderError::NotConfigured(_) => ("not_configured", false),
    }
}

/// The pause after `attempts` failed attempts: doubling from `FIRST_RETRY` to `LAST_RETRY`,
/// less up to a fifth at random so replicas retrying together drift apart.
fn backoff(attempts: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1 << attempts.saturating_sub(1).min(20));
    let pause = doubled.min(LAST_RETRY);
    let jitter = rand::rng().random_range(0.0..0.2);
    pause.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_less_jitter() {
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (40, 600)] {
            let pause = backoff(attempts);
            let full = Duration::from_secs(full);
            assert!(
                pause <= full && pause >= full.mul_f64(0.8),
                "{attempts}: {pause:?}"
            );
        }
    }

    #[test]
    fn outages_are_retried_and_refusals_are_not() {
        assert!(classify(&ProviderError::Unavailable("503".into())).1);
        assert!(classify(&ProviderError::DeadlineExceeded).1);
        assert!(classify(&ProviderError::CredentialsRejected).1);
        let refused = ProviderError::Rejected {
            status: 400,
            code: Some(-1),
            message: String::new(),
        };
        assert_eq!(classify(&refused), ("rejected", false));
    }
}
