//! Access records: written by the store's writer (`batch::access`), read back in chains for
//! `audit verify`. Rows and [`ChainedRecord`]s convert here, both ways.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    Store, StoreError,
    batch::access::AccessWriter,
    classify,
    entities::access_record::{self, Column},
};
use crate::audit::{
    AccessRecord, AuditKey, Work,
    chain::{ChainRows, ChainedRecord},
};

impl Store {
    /// This store writes access records, chained under `key`, logging its chain's head every
    /// `head_every`.
    pub(crate) fn with_access_records(mut self, key: AuditKey, head_every: Duration) -> Self {
        self.access = Some(AccessWriter::start(&self.gate, key, head_every));
        self
    }

    /// Writes `record`, committed when this returns Ok.
    pub(crate) async fn record_access(&self, record: AccessRecord) -> Result<(), StoreError> {
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
                    Some((row.seq, row.mac))
                }
                _ => None,
            };
            chains.push(ChainRows { chain, anchor, rows });
        }
        Ok(chains)
    }
}

/// A row back into its record: its `work` must be one this service writes.
fn chained(row: access_record::Model) -> Result<ChainedRecord, StoreError> {
    let work = Work::parse(&row.work).ok_or_else(|| {
        StoreError::Failure(format!(
            "access record {}/{} names no known work",
            row.chain, row.seq
        ))
    })?;
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

/// A chained record into its row.
pub(super) fn active_model(chained: &ChainedRecord) -> access_record::ActiveModel {
    let record = &chained.record;
    access_record::ActiveModel {
        chain: Set(chained.chain.clone()),
        seq: Set(chained.seq),
        at: Set(record.at),
        caller: Set(record.caller.clone()),
        actor: Set(record.actor.clone()),
        peer: Set(record.peer.clone()),
        method: Set(record.method.clone()),
        purpose: Set(record.purpose.clone()),
        work: Set(record.work.as_str().to_owned()),
        account_id: Set(record.account.clone()),
        person: Set(record.person.clone()),
        outcome: Set(record.outcome.clone()),
        trace_id: Set(record.trace_id.clone()),
        mac: Set(chained.mac.clone()),
    }
}
