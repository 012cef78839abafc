//! Loops that run beside the server: readiness (migrations, then the database's health), the
//! optional background purge, and the optional deletions at PortOne.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};
use tonic_health::{ServingStatus, server::HealthReporter};

use super::SERVICE_NAME;
use crate::{
    audit::{AccessRecord, Accessor, AuditKey, OUTCOME_OK, Subject, Work},
    config::MaintenanceSettings,
    service::Deleter,
    store::{Store, StoreError},
};

/// How often a replica looks for deletions that came due. One indexed query; a full batch
/// is followed by the next one at once.
const DELETION_POLL: Duration = Duration::from_secs(1);
/// Passes between two readings of the outbox's size for the pending gauge.
const PENDING_EVERY: u32 = 10;

/// PURGE_INTERVAL: `purge` in the background. Every replica may run it; the deletes are
/// idempotent, so several at once only repeat work.
pub(super) fn spawn_purge(
    store: Store,
    interval: Duration,
    settings: (&MaintenanceSettings, Duration, AuditKey),
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (maintenance, rejoin_cooldown, audit_key) = settings;
    let (retention, audit_retention) = (maintenance.certification_retention, maintenance.audit_retention);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = crate::maintenance::purge(&store, retention, rejoin_cooldown).await {
                tracing::warn!(%error, "background purge failed; retrying at the next interval");
            }
            if let Err(error) = purge_access_records(&store, &audit_key, audit_retention).await {
                tracing::warn!(%error, "background purge of access records failed; retrying at the next interval");
            }
        }
    })
}

/// The access records past retention, and the record of having removed some.
async fn purge_access_records(store: &Store, key: &AuditKey, retention: Duration) -> Result<(), StoreError> {
    if crate::maintenance::purge_access_records(store, key, retention).await? > 0 {
        let accessor = Accessor::service(BACKGROUND_PURGE);
        let record = AccessRecord::of(&accessor, Work::Deletion, &Subject::default(), OUTCOME_OK);
        store.record_access(record).await?;
    }
    Ok(())
}

/// The method the background purge's access record names.
const BACKGROUND_PURGE: &str = "background purge";

/// Deletions at PortOne: passes over the deletion outbox once the database is ready. Every
/// replica runs it; the store hands each due row to one of them. Stopping mid-pass loses
/// nothing: the rows taken come due again when their lease lapses.
pub(super) fn spawn_deletions(
    deleter: Deleter,
    ready: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut passes = 0u32;
        loop {
            let mut pause = DELETION_POLL;
            if ready.load(Ordering::Acquire) {
                let pass = tokio::select! {
                    pass = deleter.pass() => pass,
                    _ = stopped.changed() => return,
                };
                match pass {
                    Ok(true) => pause = Duration::ZERO,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "deletions at PortOne: a pass failed; retrying"),
                }
                if passes.is_multiple_of(PENDING_EVERY)
                    && let Err(error) = deleter.report_pending().await
                {
                    tracing::warn!(%error, "deletions at PortOne: cannot count the pending ones");
                }
                passes = passes.wrapping_add(1);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}

/// Applies migrations (when asked) once the database answers, then keeps the named service's
/// health in step with the database. "" turns SERVING once and stays: it answers "is the
/// process alive", the named service "can it serve now".
pub(super) fn spawn_readiness(
    store: Store,
    health: HealthReporter,
    accepting: Arc<AtomicBool>,
    migrate: bool,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut migrated = !migrate;
        let mut ready = false;
        loop {
            if !migrated {
                match store.migrate().await {
                    Ok(()) => {
                        tracing::info!("database migrations applied");
                        migrated = true;
                    }
                    Err(error) => tracing::warn!(%error, "migrations not applied yet"),
                }
            }
            let now_ready = migrated && store.ping().await.is_ok();
            if now_ready != ready {
                let status = if now_ready {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                if now_ready {
                    accepting.store(true, Ordering::Release);
                    tracing::info!("database answers; serving");
                    health.set_service_status("", ServingStatus::Serving).await;
                } else {
                    tracing::warn!("database unreachable; reporting NOT_SERVING");
                }
                health.set_service_status(SERVICE_NAME, status).await;
                ready = now_ready;
            }
            // Retry quickly until first ready, then poll at the configured pace.
            let pause = if ready {
                interval
            } else {
                interval.min(Duration::from_millis(250))
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}
