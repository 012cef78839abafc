//! Operator tasks that run beside the service: re-encrypting stored identities under a new key
//! (and re-indexing them by their canonical CI), and purging what is past retention. Both are
//! safe while replicas serve: every write is conditional on the row being as it was read.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    audit::AuditKey,
    domain::{Ci, CiIndexKey, Di, Purpose, SealingError, SealingKeys},
    store::{Collision, Purged, Rewrite, SealedPerson, Store, StoreError},
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
    /// The row's lookup hash is not the HMAC of its own CI under the key given: re-indexing
    /// with it would make every person unfindable.
    #[error(
        "person {person_id}: its lookup hash was not made with this CI_INDEX_KEY (the wrong key?); stopped before rewriting it"
    )]
    WrongIndexKey { person_id: i64 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Rows this run rewrote: now sealed under the first key, bound to the row, and (unless
    /// listed below) found by the hash of their canonical CI.
    pub resealed: u64,
    /// Of those, rows whose lookup hashes changed: written before CI/DI were canonicalised, from
    /// a CI in another base64 form.
    pub rehashed: u64,
    /// Rows another writer re-sealed between our read and our write.
    pub(crate) raced: u64,
    /// Rows whose canonical CI another row already holds: one person stored twice. Left under
    /// their old hash (re-sealed in place) for the operator to decide.
    pub collisions: Vec<Collision>,
    /// Rows whose stored CI or DI is not base64, so has no canonical form: left under their old
    /// hash (re-sealed in place).
    pub undecodable: Vec<i64>,
}

impl RekeyReport {
    /// Whether every row is now sealed under the first key and found by its canonical CI.
    pub fn is_complete(&self) -> bool {
        self.collisions.is_empty() && self.undecodable.is_empty()
    }
}

/// Rewrites every person whose row is not as this release writes it: sealed under another key
/// than the first of `keys`, sealed before values were bound to their row, or found by a hash of
/// its CI/DI as received rather than of their canonical form (releases before CI/DI were
/// canonicalised). `batch_size` rows at a time; every row is read, only those that differ are
/// written. Stopping at any point loses nothing: the next run picks up what is left. Two rows
/// of one person are never merged: see [`RekeyReport::collisions`].
pub async fn rekey(
    store: &Store,
    keys: &SealingKeys,
    index_key: &CiIndexKey,
    batch_size: u64,
) -> Result<RekeyReport, MaintenanceError> {
    let mut report = RekeyReport::default();
    let mut after_id = 0;
    loop {
        let batch = store.sealed_persons(after_id, batch_size.max(1)).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after_id = last.id;
        for row in &batch {
            rekey_person(store, keys, index_key, row, &mut report).await?;
        }
        tracing::info!(
            resealed = report.resealed,
            rehashed = report.rehashed,
            collisions = report.collisions.len(),
            up_to_person = after_id,
            key_id = keys.primary_id(),
            "rekey batch done"
        );
    }
    Ok(report)
}

/// One row of [`rekey`]: opened, canonicalised, rewritten if it differs, counted in `report`.
async fn rekey_person(
    store: &Store,
    keys: &SealingKeys,
    index_key: &CiIndexKey,
    row: &SealedPerson,
    report: &mut RekeyReport,
) -> Result<(), MaintenanceError> {
    let (ci, di) = open_person(keys, index_key, row)?;
    match canonical_person(keys, index_key, row.id, &ci, di.as_deref()) {
        Some(new)
            if new.index == row.index && new.di_index == row.di_index && !needs_resealing(keys, row) =>
        {
            return Ok(());
        }
        Some(new) => match store.rewrite_person(row, &new).await? {
            Rewrite::Written => {
                report.resealed += 1;
                report.rehashed += u64::from(new.index != row.index || new.di_index != row.di_index);
                return Ok(());
            }
            Rewrite::Raced => {
                report.raced += 1;
                return Ok(());
            }
            Rewrite::Collides(collision) => {
                tracing::warn!(
                    person_id = collision.person_id,
                    holds_account = collision.holds_account,
                    other_person_id = collision.other_person_id,
                    other_holds_account = collision.other_holds_account,
                    "rekey: two rows are one person; left for the operator"
                );
                report.collisions.push(collision);
            }
        },
        None => {
            tracing::warn!(
                person_id = row.id,
                "rekey: the stored ci or di is not base64; left under its old hash"
            );
            report.undecodable.push(row.id);
        }
    }
    // Not moved to a canonical hash: still sealed under the first key, bound to its own row.
    if needs_resealing(keys, row) {
        let in_place = SealedPerson {
            id: row.id,
            index: row.index.clone(),
            di_index: row.di_index.clone(),
            ci: keys.seal(Purpose::Ci, &row.index, &ci),
            di: di.map(|di| keys.seal(Purpose::Di, &row.index, &di)),
        };
        match store.rewrite_person(row, &in_place).await? {
            Rewrite::Written => report.resealed += 1,
            Rewrite::Raced | Rewrite::Collides(_) => report.raced += 1,
        }
    }
    Ok(())
}

/// A row's CI and DI as stored, once its hash is known to be that of its CI under `index_key`.
fn open_person(
    keys: &SealingKeys,
    index_key: &CiIndexKey,
    row: &SealedPerson,
) -> Result<(String, Option<String>), MaintenanceError> {
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
    // Every row's hash is of the CI text it seals, canonical or not: anything else is a key
    // that would move every person out of reach.
    if index_key.ci_index_as_received(&ci) != row.index {
        return Err(MaintenanceError::WrongIndexKey { person_id: row.id });
    }
    Ok((ci, di))
}

/// The row as this release writes it: hashed and sealed in the canonical form under the first
/// key; `None` when the CI or DI has no canonical form.
fn canonical_person(
    keys: &SealingKeys,
    index_key: &CiIndexKey,
    id: i64,
    ci: &str,
    di: Option<&str>,
) -> Option<SealedPerson> {
    let ci = Ci::parse(ci).ok()?;
    let di = match di {
        Some(di) => Some(Di::parse(di)?),
        None => None,
    };
    let index = index_key.ci_index(&ci);
    Some(SealedPerson {
        id,
        di_index: di.as_ref().map(|di| index_key.di_index(di)),
        ci: keys.seal(Purpose::Ci, &index, ci.expose()),
        di: di.map(|di| keys.seal(Purpose::Di, &index, di.expose())),
        index,
    })
}

/// Sealed under another key than the first, or before values were bound to their row.
fn needs_resealing(keys: &SealingKeys, row: &SealedPerson) -> bool {
    row.ci.key_id != keys.primary_id() || !row.ci.is_row_bound()
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
    let ago = |period: Duration| back_from(now, period);
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

/// Access records past `retention`, in whole days (UTC): every chain up to its last record
/// before the first day kept, leaving an anchor so the rest still verifies. The records removed;
/// whoever purged records that it did.
pub async fn purge_access_records(
    store: &Store,
    key: &AuditKey,
    retention: Duration,
) -> Result<u64, StoreError> {
    let first_kept = back_from(Utc::now(), retention)
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let removed = store.purge_access_records(key, first_kept).await?;
    if removed > 0 {
        tracing::info!(removed, before = %first_kept, "purged access records past AUDIT_RETENTION");
    }
    Ok(removed)
}

/// `period` before `now`. Checked: a period longer than the calendar reaches back means "from
/// the beginning".
fn back_from(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(period)
        .ok()
        .and_then(|period| now.checked_sub_signed(period))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
