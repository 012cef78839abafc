//! Operator tasks that run beside the service: re-encrypting stored identities under a new key,
//! and purging what is past retention. Both are safe while replicas serve: every write is
//! conditional on the row being as it was read.

use std::time::Duration;

use chrono::Utc;

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
    pub raced: u64,
}

/// Re-seals every person still under an older key with the first key of `keys`, `batch_size`
/// rows at a time. Stopping at any point loses nothing: the next run picks up what is left.
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
            .sealed_under_other_keys(&primary, after_id, batch_size.max(1))
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
            let ci = keys.open(Purpose::Ci, &row.ci).map_err(sealing)?;
            let di = row
                .di
                .as_ref()
                .map(|di| keys.open(Purpose::Di, di))
                .transpose()
                .map_err(sealing)?;
            let ci_sealed = keys.seal(Purpose::Ci, &ci);
            let di_sealed = di.map(|di| keys.seal(Purpose::Di, &di));
            if store
                .reseal(row.id, &row.ci.key_id, &ci_sealed, di_sealed.as_ref())
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

/// Deletes certification records last seen longer than `retention` ago, then the persons left
/// with no account, no certification and no running re-signup cooldown.
pub async fn purge(
    store: &Store,
    retention: Duration,
    rejoin_cooldown: Duration,
) -> Result<Purged, StoreError> {
    let now = Utc::now();
    let before = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let rejoin_from = now - chrono::Duration::from_std(rejoin_cooldown).unwrap_or(chrono::Duration::MAX);
    let purged = store.purge(before, rejoin_from).await?;
    tracing::info!(
        certifications = purged.certifications,
        persons = purged.persons,
        "purged records past retention"
    );
    Ok(purged)
}
