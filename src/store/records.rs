//! Verify's record on PostgreSQL, for many calls at once (see [`super::lanes`]). Records
//! waiting together go in one statement and one commit: the person inserted unless present,
//! the certification upserted, and each person's holder returned, as
//! [`super::writes::record_postgres`] does for one. A record alone takes that statement.

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection, Postgres, postgres::PgArguments, query::QueryAs};

use super::{
    StoreError,
    identities::{Recordable, Recorded, SeenCertification, holder},
    kept::Connection,
    lanes::{Pending, Work},
    statement::{On, sqlx_error},
    writes::{record_postgres, seal_legacy_person},
};

impl Work for Recordable {
    type Answer = Recorded;
    /// One: records arriving together share a statement and its commit.
    const LANES: usize = 1;
    /// Sixteen records are about 8 KB of values: one TLS record. sqlx leaves Nagle's algorithm
    /// on, so a statement of two TLS records waited for the server's delayed ACK: 43-58 ms for
    /// batches of 47-49 records at 50 callers, where without TLS none took over 10 ms.
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
            _ => record_many(connection, batch, now).await.unwrap_or_default(),
        };
        let mut answers = Vec::with_capacity(batch.len());
        for pending in batch {
            let seen = pending.work.as_seen();
            let row = found.iter().find(|row| row.ci_hash == seen.ci_index.0);
            let answer = match row {
                Some(row) => finish(connection, row, &seen).await,
                // Alone; or the batch failed (one record's fault is then its own); or its
                // snapshot missed a person inserted meanwhile: the one-record statement.
                None => {
                    record_postgres(
                        &mut On::<sea_orm::DatabaseConnection>::Kept(connection),
                        &seen,
                        now,
                    )
                    .await
                }
            };
            answers.push(answer);
        }
        answers
    }
}

/// ci_hash, id, account_id, bound_at, unsealed: the batch statement's columns.
type PersonColumns = (String, i64, Option<String>, Option<DateTime<Utc>>, bool);

/// A person's row as the batch statement returns it.
struct PersonRow {
    ci_hash: String,
    id: i64,
    account_id: Option<String>,
    bound_at: Option<DateTime<Utc>>,
    unsealed: bool,
}

async fn finish(
    connection: &mut PgConnection,
    row: &PersonRow,
    seen: &SeenCertification<'_>,
) -> Result<Recorded, StoreError> {
    if row.unsealed {
        seal_legacy_person(
            &mut On::<sea_orm::DatabaseConnection>::Kept(connection),
            row.id,
            seen,
        )
        .await?;
    }
    Ok(Recorded {
        person_id: row.id,
        holder: holder(row.account_id.clone(), row.bound_at),
    })
}

/// The batch in one statement: a row for each distinct person it could see.
async fn record_many(
    connection: &mut PgConnection,
    batch: &[Pending<Recordable>],
    now: DateTime<Utc>,
) -> Result<Vec<PersonRow>, StoreError> {
    let records: Vec<&Recordable> = batch.iter().map(|pending| &pending.work).collect();
    let rows: Vec<PersonColumns> = bind_records(sqlx::query_as(RECORD_MANY), &records, now)
        .fetch_all(connection)
        .await
        .map_err(sqlx_error)?;
    Ok(rows
        .into_iter()
        .map(|(ci_hash, id, account_id, bound_at, unsealed)| PersonRow {
            ci_hash,
            id,
            account_id,
            bound_at,
            unsealed,
        })
        .collect())
}

/// $1 to $9 of a batch statement over records (see [`RECORD_MANY`]), each an array in the
/// records' order, as [`super::writes::seen_values`] gives them for one.
pub(super) fn bind_records<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    records: &[&Recordable],
    now: DateTime<Utc>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    let column = |value: fn(&Recordable) -> Option<String>| -> Vec<Option<String>> {
        records.iter().map(|record| value(record)).collect()
    };
    query
        .bind(column(|seen| Some(seen.ci_index.0.clone())))
        .bind(column(|seen| seen.di_index.as_ref().map(|index| index.0.clone())))
        .bind(column(|seen| Some(seen.ci_sealed.blob.clone())))
        .bind(column(|seen| seen.di_sealed.as_ref().map(|di| di.blob.clone())))
        .bind(column(|seen| Some(seen.ci_sealed.key_id.clone())))
        .bind(now)
        .bind(column(|seen| Some(seen.provider.as_str().to_owned())))
        .bind(column(|seen| Some(seen.id.clone())))
        .bind(
            records
                .iter()
                .map(|record| record.certified_at)
                .collect::<Vec<_>>(),
        )
}

/// [`super::writes::record_postgres`]'s statement for many, as arrays in the same order: $1
/// ci_hash, $2 di_hash, $3 ci_sealed, $4 di_sealed, $5 sealing_key_id, $6 now, $7 provider,
/// $8 provider_id, $9 certified_at. A person seen twice in the batch is inserted once (its
/// second insert does nothing) and found through `inserted`, which the statement's own
/// snapshot of `persons` does not show; a certification seen twice is upserted once, as one
/// statement may not update a row twice.
const RECORD_MANY: &str = "\
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
