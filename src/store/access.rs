//! Access records: written by the store's writer (`batch::access`), read back in chains for
//! `audit verify`, by time for `audit export`, and counted for `audit report`. Rows and
//! [`ChainedRecord`]s convert here, both ways.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{
    Store, StoreError,
    batch::access::{AccessWriter, Chains},
    classify,
    entities::{
        access_record::{self, Column},
        access_record_anchor,
    },
};
use crate::audit::{
    AccessRecord, AuditKey, Work,
    chain::{Anchor, ChainRows, ChainedRecord, PurgeAnchor},
    export::Selection,
    report::Tally,
};

impl Store {
    /// The chains of this store's records, where it writes them.
    pub(super) fn chains(&self) -> Option<&Arc<Chains>> {
        self.access.as_ref().map(AccessWriter::chains)
    }

    /// Writes `record`, committed when this returns Ok.
    pub async fn record_access(&self, record: AccessRecord) -> Result<(), StoreError> {
        match &self.access {
            Some(writer) => writer.write(record).await,
            None => Err(StoreError::Failure("this store writes no access records".into())),
        }
    }

    /// Ok when an access record could be written now: checked before a call reaches PortOne or
    /// writes, so a call whose record would fail does nothing at all.
    pub(crate) async fn access_writable(&self) -> Result<(), StoreError> {
        match &self.access {
            Some(writer) => writer.probe().await,
            None => Err(StoreError::Failure("this store writes no access records".into())),
        }
    }

    /// Hands `each` the records `selection` picks, ordered by time, then chain and number,
    /// reading `page` at a time (each page starts after the last one handed): a year of
    /// records never sits in memory at once. Stops at the first error `each` returns.
    pub async fn each_access_record<E: From<StoreError>>(
        &self,
        selection: &Selection,
        page: u64,
        mut each: impl FnMut(ChainedRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let page = page.max(1);
        let equal = |column: Column, value: &Option<String>| value.as_deref().map(|value| column.eq(value));
        let selected = Condition::all()
            .add(Column::At.gte(selection.from))
            .add(Column::At.lt(selection.to))
            .add_option(equal(Column::Caller, &selection.caller))
            .add_option(equal(Column::AccountId, &selection.account))
            .add_option(equal(Column::Person, &selection.person))
            .add_option(equal(Column::Method, &selection.method));
        let db = self.gate.background();
        let mut after: Option<(DateTime<Utc>, String, i64)> = None;
        loop {
            let mut query = access_record::Entity::find().filter(selected.clone());
            if let Some((at, chain, seq)) = after.take() {
                let same_at = || Condition::all().add(Column::At.eq(at));
                query = query.filter(
                    Condition::any()
                        .add(Column::At.gt(at))
                        .add(same_at().add(Column::Chain.gt(chain.as_str())))
                        .add(
                            same_at()
                                .add(Column::Chain.eq(chain.as_str()))
                                .add(Column::Seq.gt(seq)),
                        ),
                );
            }
            let rows = query
                .order_by_asc(Column::At)
                .order_by_asc(Column::Chain)
                .order_by_asc(Column::Seq)
                .limit(page)
                .all(&*db)
                .await
                .map_err(classify)?;
            let full = rows.len() as u64 == page;
            for row in rows {
                let record = chained(row)?;
                after = Some((record.record.at, record.chain.clone(), record.seq));
                each(record)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// How many records each caller, actor, kind of work and outcome have in `[from, to)`.
    pub(crate) async fn access_tallies(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Tally>, StoreError> {
        let db = self.gate.background();
        let counted: Vec<(String, Option<String>, String, String, i64)> = access_record::Entity::find()
            .select_only()
            .column(Column::Caller)
            .column(Column::Actor)
            .column(Column::Work)
            .column(Column::Outcome)
            .column_as(Column::Seq.count(), "records")
            .filter(Column::At.gte(from))
            .filter(Column::At.lt(to))
            .group_by(Column::Caller)
            .group_by(Column::Actor)
            .group_by(Column::Work)
            .group_by(Column::Outcome)
            .into_tuple()
            .all(&*db)
            .await
            .map_err(classify)?;
        counted
            .into_iter()
            .map(|(caller, actor, work, outcome, records)| {
                Ok(Tally {
                    work: known_work(&work, || format!("an access record of {caller}"))?,
                    caller,
                    actor,
                    outcome,
                    records: u64::try_from(records).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The chains with a record in `[from, to)`, each from its first such record to its last
    /// (the records between included whatever their time: a chain's order is its numbers),
    /// with the record before them as the anchor.
    pub async fn access_chains(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<ChainRows>, StoreError> {
        let db = self.gate.background();
        let mut spans = access_record::Entity::find()
            .select_only()
            .column(Column::Chain)
            .column_as(Column::Seq.min(), "first")
            .column_as(Column::Seq.max(), "last")
            .group_by(Column::Chain)
            .order_by_asc(Column::Chain);
        if let Some(from) = from {
            spans = spans.filter(Column::At.gte(from));
        }
        if let Some(to) = to {
            spans = spans.filter(Column::At.lt(to));
        }
        let spans: Vec<(String, i64, i64)> = spans.into_tuple().all(&*db).await.map_err(classify)?;
        let mut chains = Vec::with_capacity(spans.len());
        for (chain, first, last) in spans {
            let mut rows = access_record::Entity::find()
                .filter(Column::Chain.eq(chain.as_str()))
                .filter(Column::Seq.between(first - 1, last))
                .order_by_asc(Column::Seq)
                .all(&*db)
                .await
                .map_err(classify)?
                .into_iter()
                .map(chained)
                .collect::<Result<Vec<_>, _>>()?;
            let anchor = match rows.first() {
                Some(row) if row.seq == first - 1 => {
                    let row = rows.remove(0);
                    Some(Anchor::Record {
                        seq: row.seq,
                        mac: row.mac,
                    })
                }
                // The records before were purged, or removed otherwise: the purge's anchor, if
                // any, says which.
                _ if first > 1 => access_record_anchor::Entity::find_by_id((chain.clone(), first - 1))
                    .one(&*db)
                    .await
                    .map_err(classify)?
                    .map(|anchor| {
                        Anchor::Purged(PurgeAnchor {
                            chain: anchor.chain,
                            seq: anchor.seq,
                            mac: anchor.mac,
                            purged_before: anchor.purged_before,
                            anchor_mac: anchor.anchor_mac,
                        })
                    }),
                _ => None,
            };
            chains.push(ChainRows { chain, anchor, rows });
        }
        Ok(chains)
    }
}

impl Store {
    /// Removes every chain's records up to its last one before `before`, each chain in one
    /// transaction with the anchor where it now starts (older anchors of the chain go). The
    /// records removed. Replicas purging at once only repeat work.
    pub(crate) async fn purge_access_records(
        &self,
        key: &AuditKey,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let db = self.gate.background();
        let spans: Vec<(String, i64)> = access_record::Entity::find()
            .select_only()
            .column(Column::Chain)
            .column_as(Column::Seq.max(), "last")
            .filter(Column::At.lt(before))
            .group_by(Column::Chain)
            .into_tuple()
            .all(&*db)
            .await
            .map_err(classify)?;
        let mut removed = 0;
        for (chain, last) in spans {
            let txn = db.begin().await.map_err(classify)?;
            let Some(row) = access_record::Entity::find_by_id((chain.clone(), last))
                .one(&txn)
                .await
                .map_err(classify)?
            else {
                continue; // Another replica purged it meanwhile.
            };
            let anchor = PurgeAnchor::new(key, chain.clone(), last, row.mac, before);
            access_record_anchor::Entity::delete_many()
                .filter(access_record_anchor::Column::Chain.eq(chain.as_str()))
                .filter(access_record_anchor::Column::Seq.lt(last))
                .exec(&txn)
                .await
                .map_err(classify)?;
            access_record_anchor::Entity::insert(access_record_anchor::ActiveModel {
                chain: Set(anchor.chain),
                seq: Set(anchor.seq),
                mac: Set(anchor.mac),
                purged_before: Set(anchor.purged_before),
                anchor_mac: Set(anchor.anchor_mac),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(&txn)
            .await
            .map_err(classify)?;
            removed += access_record::Entity::delete_many()
                .filter(Column::Chain.eq(chain.as_str()))
                .filter(Column::Seq.lte(last))
                .exec(&txn)
                .await
                .map_err(classify)?
                .rows_affected;
            txn.commit().await.map_err(classify)?;
        }
        Ok(removed)
    }
}

/// A stored `work`: one this service writes, or a failure naming `whose` records hold it.
fn known_work(work: &str, whose: impl FnOnce() -> String) -> Result<Work, StoreError> {
    Work::parse(work).ok_or_else(|| StoreError::Failure(format!("{} names no known work", whose())))
}

/// A row back into its record: its `work` must be one this service writes.
fn chained(row: access_record::Model) -> Result<ChainedRecord, StoreError> {
    let work = known_work(&row.work, || format!("access record {}/{}", row.chain, row.seq))?;
    Ok(ChainedRecord {
        chain: row.chain,
        seq: row.seq,
        record: AccessRecord {
            at: row.at,
            caller: row.caller,
            actor: row.actor,
            peer: row.peer,
            method: row.method,
            purpose: row.purpose,
            work,
            account: row.account_id,
            person: row.person,
            outcome: row.outcome,
            trace_id: row.trace_id,
        },
        mac: row.mac,
    })
}
