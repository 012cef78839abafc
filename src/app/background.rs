//! Loops that run beside the server: readiness (migrations, then the database's health) and
//! the optional background purge.

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
use crate::store::Store;

/// PURGE_INTERVAL: `purge` in the background. Every replica may run it; the deletes are
/// idempotent, so several at once only repeat work.
pub(super) fn spawn_purge(
    store: Store,
    interval: Duration,
    retention: Duration,
    rejoin_cooldown: Duration,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = crate::maintenance::purge(&store, retention, rejoin_cooldown).await {
                tracing::warn!(%error, "background purge failed; retrying at the next interval");
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
