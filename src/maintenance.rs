//! Operator tasks that run beside the service: re-encrypting stored identities under a new key,
//! and purging what is past retention. Both are safe while replicas serve: every write is
//! conditional on the row being as it was read.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    domain::{Purpose, SealingError, SealingKeys},
    store::{Purged, Store, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("person {person_id}: {source}")]
    Sealing {
        person_id: i64,
        #[source]
        source: SealingError,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Rows now sealed under the first key by this run.
    pub resealed: u64,
    /// Rows another writer re-sealed between our read and our write.
    pub(crate) raced: u64,
}

/// Re-seals every person still under an older key, or sealed before values were bound to their
/// row, with the first key of `keys`, bound to the row, `batch_size` rows at a time. Stopping at any point loses nothing: the next run picks up what is left.
pub async fn rekey(
    store: &Store,
    keys: &SealingKeys,
    batch_size: u64,
) -> Result<RekeyReport, MaintenanceError> {
    let primary = keys.primary_id().to_owned();
    let mut report = RekeyReport::default();
    let mut after_id = 0;
    loop {
        let batch = store
            .sealed_for_rekey(&primary, after_id, batch_size.max(1))
            .await?;
        let Some(last) = batch.last() else {
            break;
        };
        after_id = last.id;
        for row in &batch {
            let sealing = |source| MaintenanceError::Sealing {
                person_id: row.id,
                source,
            };
            let ci = keys.open(Purpose::Ci, &row.index, &row.ci).map_err(sealing)?;
            let di = row
                .di
                .as_ref()
                .map(|di| keys.open(Purpose::Di, &row.index, di))
                .transpose()
                .map_err(sealing)?;
            let ci_sealed = keys.seal(Purpose::Ci, &row.index, &ci);
            let di_sealed = di.map(|di| keys.seal(Purpose::Di, &row.index, &di));
            if store
                .reseal(row.id, &row.ci, &ci_sealed, di_sealed.as_ref())
                .await?
            {
                report.resealed += 1;
            } else {
                report.raced += 1;
            }
        }
        tracing::info!(
            resealed = report.resealed,
            up_to_person = after_id,
            key_id = %primary,
            "rekey batch done"
        );
    }
    Ok(report)
}

/// A late Verify of a session expired this recently still learns SESSION_EXPIRED, not
/// SESSION_NOT_FOUND.
const EXPIRED_SESSION_GRACE: Duration = Duration::from_secs(3600);

/// Deletes certification records last seen longer than `retention` ago, then the persons left
/// with no account, no certification and no running re-signup cooldown, the verification
/// sessions expired over an hour ago, and deletions at PortOne finished longer than `retention`
/// ago (until then a Verify of such a certification learns CERTIFICATION_DELETED).
pub async fn purge(
    store: &Store,
    retention: Duration,
    rejoin_cooldown: Duration,
) -> Result<Purged, StoreError> {
    let now = Utc::now();
    // Checked: a period longer than the calendar reaches back means "from the beginning".
    let ago = |period: Duration| {
        chrono::Duration::from_std(period)
            .ok()
            .and_then(|period| now.checked_sub_signed(period))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let (before, rejoin_from) = (ago(retention), ago(rejoin_cooldown));
    let purged = store.purge(before, rejoin_from).await?;
    let (sessions, unredeemed) = store.purge_sessions(ago(EXPIRED_SESSION_GRACE)).await?;
    let deletions = store.purge_deletions(before).await?;
    for (purpose, count) in unredeemed {
        crate::telemetry::metrics::sessions_expired(purpose, count);
    }
    tracing::info!(
        certifications = purged.certifications,
        persons = purged.persons,
        sessions,
        deletions,
        "purged records past retention"
    );
    Ok(purged)
}
