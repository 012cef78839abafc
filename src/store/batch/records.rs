//! Verify's record on PostgreSQL, in one statement for every record waiting (see
//! [`super::lane`]): the person inserted unless present, the certification upserted, and each
//! person's holder returned, in one statement and one commit. A record alone, and a signup's
//! record inside its transaction, take its single-row form, [`RECORD_ONE`]. Both run the writes
//! of `store::sql`.

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection, Postgres, postgres::PgArguments, query::QueryAs};
use sea_query_sqlx::SqlxValues;

use super::{
    access::{Chains, Logged, log, records_json},
    gate::Connection,
    lane::{Pending, Work},
    statement::{On, sqlx_error},
};
use crate::{
    audit::AccessRecord,
    domain::AccountId,
    store::{
        StoreError,
        rows::{Claim, Recordable, Recorded, holder},
        sql::{
            insert_persons_unless_present, log_records, one_row, seen_arrays, seen_one, upsert_certifications,
        },
        writes::seal_legacy_person,
    },
};

/// A Verify's record as it waits in the lane, with the call's access record (if it keeps one),
/// written by the same statement.
pub(crate) struct Record {
    pub(crate) recordable: Recordable,
    pub(crate) access: Option<AccessRecord>,
}

impl Work for Record {
    type Answer = Recorded;
    /// Sixteen records fit one TLS record; a statement of two waited for the server's delayed
    /// ACK, as sqlx leaves Nagle's algorithm on (BENCHMARKS.md, "The cap of 16").
    const MOST_PER_STATEMENT: usize = 16;

    async fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
        chains: Option<&Arc<Chains>>,
    ) -> Vec<Result<Recorded, StoreError>> {
        let connection = match connection.postgres() {
            Ok(connection) => connection,
            Err(wrong) => return vec![Err(wrong); batch.len()],
        };
        let now = Utc::now();
        let found = match batch {
            [_] => Vec::new(),
            _ => together(connection, batch, chains, now).await.unwrap_or_default(),
        };
        let mut answers = Vec::with_capacity(batch.len());
        for pending in batch {
            let Record { recordable, access } = &pending.work;
            let answer = match found.iter().find(|row| row.0 == recordable.ci_index.0) {
                Some(row) => finish(connection, row.clone(), recordable).await,
                // Alone; or the batch failed (one record's fault is then its own); or its
                // snapshot missed a person inserted meanwhile: a statement of its own.
                None => match log(chains, access.clone()) {
                    Ok(logged) => record_one(connection, recordable, logged, now).await,
                    Err(error) => Err(error),
                },
            };
            answers.push(answer);
        }
        answers
    }
}

/// The batch in one statement with its access records: every person's row, or (when one was
/// out of its snapshot, and the records with it) nothing written.
async fn together(
    connection: &mut PgConnection,
    batch: &[Pending<Record>],
    chains: Option<&Arc<Chains>>,
    now: DateTime<Utc>,
) -> Result<Vec<PersonRow>, StoreError> {
    let logged = log(
        chains,
        batch.iter().filter_map(|pending| pending.work.access.clone()),
    )?;
    let records: Vec<&Recordable> = batch.iter().map(|pending| &pending.work.recordable).collect();
    let found = run(connection, &records, logged.as_ref(), now).await;
    if let Some(logged) = logged {
        logged.settle(&found);
    }
    found
}

/// One record in the statement, inside the caller's transaction (its access record then
/// written by the transaction) or on its own, with `logged`.
pub(crate) async fn record_one(
    connection: &mut PgConnection,
    record: &Recordable,
    logged: Option<Logged>,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    // The statement's snapshot predates a person inserted concurrently by another call,
    // which our insert then skips: no row comes back (nor is its access record written), and
    // the next try sees that person.
    let json = logged.as_ref().map(|logged| records_json(logged.records()));
    for _ in 0..3 {
        let mut values = one_row(record, None, None, now);
        if let Some(json) = &json {
            values
                .0
                .extend([json.as_str().into(), 1_i64.into(), false.into()]);
        }
        let row: Result<Option<PersonRow>, StoreError> = sqlx::query_as_with(
            sqlx::AssertSqlSafe(if json.is_some() {
                RECORD_ONE_LOGGED
            } else {
                RECORD_ONE
            }),
            SqlxValues(values),
        )
        .fetch_optional(&mut *connection)
        .await
        .map_err(sqlx_error);
        match row {
            Ok(None) => {}
            Ok(Some(row)) => {
                if let Some(logged) = logged {
                    logged.written();
                }
                return finish(connection, row, record).await;
            }
            Err(error) => {
                if let Some(logged) = logged {
                    logged.settle::<()>(&Err(error.clone()));
                }
                return Err(error);
            }
        }
    }
    if let Some(logged) = logged {
        logged.unwritten();
    }
    Err(StoreError::Unavailable(
        "the person's row stayed out of sight for three tries".into(),
    ))
}

/// A person's row as the record statements return it: ci_hash, id, account_id, bound_at,
/// unsealed.
type PersonRow = (String, i64, Option<String>, Option<DateTime<Utc>>, bool);

async fn finish(
    connection: &mut PgConnection,
    (_, id, account_id, bound_at, unsealed): PersonRow,
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

/// The records in one statement: a row for each distinct person it could see. With `logged`,
/// their access records too, and then a row for each or nothing written at all.
async fn run(
    connection: &mut PgConnection,
    records: &[&Recordable],
    logged: Option<&Logged>,
    now: DateTime<Utc>,
) -> Result<Vec<PersonRow>, StoreError> {
    let rows: Vec<(&Recordable, Option<&AccountId>, Option<&Claim>)> =
        records.iter().map(|record| (*record, None, None)).collect();
    let Some(logged) = logged else {
        return bind_rows(sqlx::query_as(RECORD), &rows, now)
            .fetch_all(connection)
            .await
            .map_err(sqlx_error);
    };
    let persons = records
        .iter()
        .map(|record| &record.ci_index)
        .collect::<HashSet<_>>()
        .len();
    bind_rows(sqlx::query_as(RECORD_LOGGED), &rows, now)
        .bind(records_json(logged.records()))
        .bind(i64::try_from(persons).unwrap_or(i64::MAX))
        .bind(true)
        .fetch_all(connection)
        .await
        .map_err(sqlx_error)
}

/// The parameters of [`seen_arrays!`] for certifications, each an array in their order: each
/// a record, the account it binds (if any) and its claim on a session (if any).
pub(super) fn bind_rows<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    rows: &[(&'q Recordable, Option<&'q AccountId>, Option<&'q Claim>)],
    now: DateTime<Utc>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    debug_assert!(rows.iter().all(|(record, _, _)| record.sealed_under_one_key()));
    let text = |value: fn(&'q Recordable) -> Option<&'q str>| -> Vec<Option<&'q str>> {
        rows.iter().map(|(record, _, _)| value(record)).collect()
    };
    query
        .bind(text(|record| Some(&record.ci_index.0)))
        .bind(text(|record| {
            record.di_index.as_ref().map(|index| index.0.as_str())
        }))
        .bind(text(|record| Some(&record.ci_sealed.blob)))
        .bind(text(|record| {
            record.di_sealed.as_ref().map(|di| di.blob.as_str())
        }))
        .bind(text(|record| Some(&record.ci_sealed.key_id)))
        .bind(now)
        .bind(text(|record| Some(record.provider.as_str())))
        .bind(text(|record| Some(&record.id)))
        .bind(
            rows.iter()
                .map(|(record, _, _)| record.certified_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, account, _)| account.map(AccountId::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, _, claim)| claim.map(|claim| claim.session.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, _, claim)| claim.and_then(|claim| claim.deletion_due))
                .collect::<Vec<_>>(),
        )
}

/// The record: each person inserted unless present, each certification upserted, and a row for
/// each person (see [`PersonRow`]). A person seen twice is inserted once (its second insert does
/// nothing) and found through `inserted`, which the statement's own snapshot of `persons` does
/// not show; `$known` picks the persons present before (by `$1`, a scalar or an array: the
/// general `IN (SELECT ci_hash FROM seen)` cost a lone record a fifth more server time).
macro_rules! record_from_seen {
    ($known:literal) => {
        record_from_seen!($known, "")
    };
    ($known:literal, $logged:expr) => {
        concat!(
            ", inserted AS (",
            insert_persons_unless_present!("seen"),
            " RETURNING ci_hash, id, account_id, bound_at, ci_sealed IS NULL AS unsealed
), person AS (
    SELECT ci_hash, id, account_id, bound_at, unsealed FROM inserted
    UNION ALL
    SELECT ci_hash, id, account_id, bound_at, ci_sealed IS NULL FROM persons WHERE ",
            $known,
            "
), certifying AS (
    SELECT seen.*, person.id AS person_id FROM seen JOIN person USING (ci_hash)
), certification AS (",
            upsert_certifications!("certifying"),
            ")",
            $logged,
            "
SELECT ci_hash, id, account_id, bound_at, unsealed FROM person"
        )
    };
}

/// The records waiting, as arrays.
const RECORD: &str = concat!(
    "WITH ",
    seen_arrays!(),
    record_from_seen!("ci_hash = ANY($1) AND ci_hash NOT IN (SELECT ci_hash FROM inserted)")
);

/// The access records of a record statement ($13), written with a row for each of its $14
/// persons; otherwise none, and when $15 the statement fails.
macro_rules! with_persons {
    () => {
        concat!(", ", log_records!("$13", "person", "$14", "$15"))
    };
}

/// [`RECORD`] with the calls' access records ($13, a JSON array), written only with a row for
/// each of its $14 persons: otherwise the statement fails ($15, true), undoing it all.
const RECORD_LOGGED: &str = concat!(
    "WITH ",
    seen_arrays!(),
    record_from_seen!(
        "ci_hash = ANY($1) AND ci_hash NOT IN (SELECT ci_hash FROM inserted)",
        with_persons!()
    )
);

/// A record alone (at 1 caller, most of them), a record the batch's snapshot missed, and a
/// signup's record inside its transaction: the same writes from scalar parameters, as arrays
/// of one cost the Verify rate at 50 callers (BENCHMARKS.md, "A record alone").
pub(crate) const RECORD_ONE: &str = concat!(
    "WITH ",
    seen_one!(),
    record_from_seen!("ci_hash = $1 AND NOT EXISTS (SELECT 1 FROM inserted)")
);

/// [`RECORD_ONE`] with the call's access record ($13), written with the person's row ($14 = 1,
/// $15 false): a statement that skipped the person writes neither.
const RECORD_ONE_LOGGED: &str = concat!(
    "WITH ",
    seen_one!(),
    record_from_seen!(
        "ci_hash = $1 AND NOT EXISTS (SELECT 1 FROM inserted)",
        with_persons!()
    )
);
