//! Verify's record on PostgreSQL, in one statement for every record waiting (see
//! [`super::lane`]): the person inserted unless present, the certification upserted, and each
//! person's holder returned, in one statement and one commit. A record alone, and a signup's
//! record inside its transaction, take its single-row form, [`RECORD_ONE`].

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection, Postgres, postgres::PgArguments, query::QueryAs};

use super::{
    gate::Connection,
    lane::{Pending, Work},
    statement::{On, sqlx_error},
};
use crate::store::{
    StoreError,
    rows::{Recordable, Recorded, holder},
    writes::seal_legacy_person,
};

impl Work for Recordable {
    type Answer = Recorded;
    /// Sixteen records fit one TLS record; a statement of two waited for the server's delayed
    /// ACK, as sqlx leaves Nagle's algorithm on (BENCHMARKS.md, "The cap of 16").
    const MOST_PER_STATEMENT: usize = 16;

    async fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
    ) -> Vec<Result<Recorded, StoreError>> {
        let connection = match connection.postgres() {
            Ok(connection) => connection,
            Err(wrong) => return vec![Err(wrong); batch.len()],
        };
        let now = Utc::now();
        let found = match batch {
            [_] => Vec::new(),
            _ => {
                let records: Vec<&Recordable> = batch.iter().map(|pending| &pending.work).collect();
                run(connection, &records, now).await.unwrap_or_default()
            }
        };
        let mut answers = Vec::with_capacity(batch.len());
        for pending in batch {
            let record = &pending.work;
            let answer = match found.iter().find(|(ci_hash, _)| *ci_hash == record.ci_index.0) {
                Some((_, row)) => finish(connection, row.clone(), record).await,
                // Alone; or the batch failed (one record's fault is then its own); or its
                // snapshot missed a person inserted meanwhile: a statement of its own.
                None => record_one(connection, record, now).await,
            };
            answers.push(answer);
        }
        answers
    }
}

/// One record in the statement, inside the caller's transaction or on its own.
pub(crate) async fn record_one(
    connection: &mut PgConnection,
    record: &Recordable,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    // The statement's snapshot predates a person inserted concurrently by another call,
    // which our insert then skips: no row comes back, and the next try sees that person.
    for _ in 0..3 {
        let row: Option<PersonRow> = bind_one(sqlx::query_as(RECORD_ONE), record, now)
            .fetch_optional(&mut *connection)
            .await
            .map_err(sqlx_error)?;
        if let Some(row) = row {
            return finish(connection, row, record).await;
        }
    }
    Err(StoreError::Unavailable(
        "the person's row stayed out of sight for three tries".into(),
    ))
}

/// A person's row as [`RECORD_ONE`] returns it: id, account_id, bound_at, unsealed.
type PersonRow = (i64, Option<String>, Option<DateTime<Utc>>, bool);
/// The same after its ci_hash, as [`RECORD`] returns a row for each person.
type BatchRow = (String, i64, Option<String>, Option<DateTime<Utc>>, bool);

async fn finish(
    connection: &mut PgConnection,
    (id, account_id, bound_at, unsealed): PersonRow,
    record: &Recordable,
) -> Result<Recorded, StoreError> {
    if unsealed {
        seal_legacy_person(&mut On::held(connection), id, record).await?;
    }
    Ok(Recorded {
        person_id: id,
        holder: holder(account_id, bound_at),
    })
}

/// The records in one statement: a row for each distinct person it could see.
async fn run(
    connection: &mut PgConnection,
    records: &[&Recordable],
    now: DateTime<Utc>,
) -> Result<Vec<(String, PersonRow)>, StoreError> {
    let rows: Vec<BatchRow> = bind_records(sqlx::query_as(RECORD), records, now)
        .fetch_all(connection)
        .await
        .map_err(sqlx_error)?;
    Ok(rows
        .into_iter()
        .map(|(ci_hash, id, account_id, bound_at, unsealed)| (ci_hash, (id, account_id, bound_at, unsealed)))
        .collect())
}

/// $1 to $9 of [`RECORD_ONE`]: the values [`bind_records`] binds as arrays, for one record.
fn bind_one<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    record: &'q Recordable,
    now: DateTime<Utc>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(record.ci_index.0.as_str())
        .bind(record.di_index.as_ref().map(|index| index.0.as_str()))
        .bind(record.ci_sealed.blob.as_str())
        .bind(record.di_sealed.as_ref().map(|di| di.blob.as_str()))
        .bind(record.ci_sealed.key_id.as_str())
        .bind(now)
        .bind(record.provider.as_str())
        .bind(record.id.as_str())
        .bind(record.certified_at)
}

/// $1 to $9 of a statement over records (see [`RECORD`]), each an array in the records' order.
pub(super) fn bind_records<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    records: &[&'q Recordable],
    now: DateTime<Utc>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    debug_assert!(records.iter().all(|record| {
        record
            .di_sealed
            .as_ref()
            .is_none_or(|di| di.key_id == record.ci_sealed.key_id)
    }));
    let column = |value: fn(&'q Recordable) -> Option<&'q str>| -> Vec<Option<&'q str>> {
        records.iter().map(|record| value(record)).collect()
    };
    query
        .bind(column(|record| Some(&record.ci_index.0)))
        .bind(column(|record| {
            record.di_index.as_ref().map(|index| index.0.as_str())
        }))
        .bind(column(|record| Some(&record.ci_sealed.blob)))
        .bind(column(|record| {
            record.di_sealed.as_ref().map(|di| di.blob.as_str())
        }))
        .bind(column(|record| Some(&record.ci_sealed.key_id)))
        .bind(now)
        .bind(column(|record| Some(record.provider.as_str())))
        .bind(column(|record| Some(&record.id)))
        .bind(
            records
                .iter()
                .map(|record| record.certified_at)
                .collect::<Vec<_>>(),
        )
}

/// Arrays in the records' order: $1 ci_hash, $2 di_hash, $3 ci_sealed, $4 di_sealed,
/// $5 sealing_key_id, $6 now, $7 provider, $8 provider_id, $9 certified_at. A person seen twice
/// is inserted once (its second insert does nothing) and found through `inserted`, which the
/// statement's own snapshot of `persons` does not show; a certification seen twice is upserted
/// once, as one statement may not update a row twice.
const RECORD: &str = "\
WITH seen AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[], $9::timestamptz[])
        WITH ORDINALITY AS seen (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, provider, provider_id, certified_at, n)
), inserted AS (
    INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, created_at, updated_at)
    SELECT ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, $6, $6 FROM seen ORDER BY n
    ON CONFLICT (ci_hash) DO NOTHING
    RETURNING ci_hash, id, account_id, bound_at, ci_sealed IS NULL AS unsealed
), person AS (
    SELECT ci_hash, id, account_id, bound_at, unsealed FROM inserted
    UNION ALL
    SELECT ci_hash, id, account_id, bound_at, ci_sealed IS NULL FROM persons
    WHERE ci_hash = ANY($1) AND ci_hash NOT IN (SELECT ci_hash FROM inserted)
), certification AS (
    INSERT INTO certifications (provider, provider_id, person_id, certified_at, first_seen_at, last_seen_at)
    SELECT DISTINCT ON (seen.provider, seen.provider_id) seen.provider, seen.provider_id, person.id, seen.certified_at, $6, $6
    FROM seen JOIN person USING (ci_hash)
    ORDER BY seen.provider, seen.provider_id, seen.n
    ON CONFLICT (provider, provider_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
)
SELECT ci_hash, id, account_id, bound_at, unsealed FROM person";

/// The writes of [`RECORD`] for one record: a record alone (at 1 caller, most of them) and a
/// record the batch's snapshot missed. As arrays of one, [`RECORD`] cost PostgreSQL about half
/// again as much, and the Verify rate at 50 callers fell from 0.89-0.93 to 0.82 of the direct
/// GET (BENCHMARKS.md, "A record alone"): the one place a write is written twice, on purpose.
/// $1 ci_hash, $2 di_hash, $3 ci_sealed, $4 di_sealed, $5 sealing_key_id, $6 now, $7 provider,
/// $8 provider_id, $9 certified_at.
pub(crate) const RECORD_ONE: &str = "\
WITH inserted AS (
    INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT (ci_hash) DO NOTHING
    RETURNING id, account_id, bound_at, ci_sealed IS NULL AS unsealed
), person AS (
    SELECT id, account_id, bound_at, unsealed FROM inserted
    UNION ALL
    SELECT id, account_id, bound_at, ci_sealed IS NULL FROM persons
    WHERE ci_hash = $1 AND NOT EXISTS (SELECT 1 FROM inserted)
), certification AS (
    INSERT INTO certifications (provider, provider_id, person_id, certified_at, first_seen_at, last_seen_at)
    SELECT $7, $8, id, $9, $6, $6 FROM person
    ON CONFLICT (provider, provider_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
)
SELECT id, account_id, bound_at, unsealed FROM person";
