//! Who holds a person, for many calls at once (see [`super::lane`]). The lookup by CI is the
//! hottest read (CheckDuplicate), and on its own each one is a statement, a connection from
//! the pool and sqlx's ping on releasing it: several times the work of the index probe it asks
//! for. Lookups waiting together are answered by one statement (`ci_hash = ANY($1)`). The read
//! of a session, which every Verify under a session makes first, is answered the same way.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use sea_orm::{FromQueryResult, QueryResult, sqlx};

use super::{
    access::{Chains, Logged, log, records_json, settle},
    gate::Connection,
    lane::{Pending, Work},
    statement::sqlx_error,
};
use crate::{
    audit::AccessRecord,
    domain::Holder,
    store::{StoreError, classify, entities::session, rows::holder, sql::log_records},
};

/// One lookup: the person's CI hash, and the access record of the call that asks, if it
/// keeps one (PostgreSQL: SQLite writes it in a transaction of its own, off the lane).
pub(crate) struct ByCi {
    pub(crate) ci_hash: String,
    pub(crate) access: Option<AccessRecord>,
}

impl Work for ByCi {
    type Answer = Option<Holder>;
    const MOST_PER_STATEMENT: usize = 64;

    async fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
        chains: Option<&Arc<Chains>>,
    ) -> Vec<Result<Option<Holder>, StoreError>> {
        let holders = match log(
            chains,
            batch.iter().filter_map(|pending| pending.work.access.clone()),
        ) {
            Ok(logged) => {
                let holders = holders(connection, batch, logged.as_ref()).await;
                settle(logged, &holders);
                holders
            }
            Err(error) => Err(error),
        };
        match holders {
            Ok(holders) => batch
                .iter()
                .map(|pending| Ok(holders.get(&pending.work.ci_hash).cloned().flatten()))
                .collect(),
            Err(error) => vec![Err(error); batch.len()],
        }
    }
}

/// The lookup by CI hashes ($1).
macro_rules! holders {
    () => {
        "SELECT ci_hash, account_id, bound_at FROM persons WHERE ci_hash = ANY($1)"
    };
}
const HOLDERS: &str = holders!();
/// [`HOLDERS`] committing the askers' access records ($2) with the answer.
const HOLDERS_LOGGED: &str = concat!("WITH ", log_records!("$2"), " ", holders!());

/// The holder of each person found (absent: never seen), by CI hash, in one statement, which
/// writes `logged` too.
async fn holders(
    connection: &mut Connection,
    batch: &[Pending<ByCi>],
    logged: Option<&Logged>,
) -> Result<HashMap<String, Option<Holder>>, StoreError> {
    let keys: Vec<&str> = batch
        .iter()
        .map(|pending| pending.work.ci_hash.as_str())
        .collect();
    // Only the columns the answer needs: not the sealed blobs.
    let rows: Vec<(String, Option<String>, Option<DateTime<Utc>>)> = match connection {
        Connection::Postgres(connection) => match logged {
            None => {
                sqlx::query_as(HOLDERS)
                    .bind(&keys)
                    .fetch_all(&mut **connection)
                    .await
            }
            Some(logged) => {
                sqlx::query_as(HOLDERS_LOGGED)
                    .bind(&keys)
                    .bind(records_json(logged.records()))
                    .fetch_all(&mut **connection)
                    .await
            }
        },
        Connection::Sqlite(_) if logged.is_some() => {
            return Err(StoreError::Failure(
                "SQLite writes a lookup's access record off the lane".into(),
            ));
        }
        Connection::Sqlite(connection) => {
            // One statement for any number of keys: the keys as one JSON array.
            let keys =
                serde_json::to_string(&keys).map_err(|error| StoreError::Failure(error.to_string()))?;
            sqlx::query_as(
                "SELECT ci_hash, account_id, bound_at FROM persons \
                 WHERE ci_hash IN (SELECT value FROM json_each(?1))",
            )
            .bind(keys)
            .fetch_all(&mut **connection)
            .await
        }
    }
    .map_err(sqlx_error)?;
    Ok(rows
        .into_iter()
        .map(|(ci_hash, account_id, bound_at)| (ci_hash, holder(account_id, bound_at)))
        .collect())
}

/// One read of a session: its merchant_uid. PostgreSQL only (SQLite reads through the pool).
pub(crate) struct BySession(pub(crate) String);

impl Work for BySession {
    type Answer = Option<session::Model>;
    const MOST_PER_STATEMENT: usize = 64;

    async fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
        _: Option<&Arc<Chains>>,
    ) -> Vec<Result<Option<session::Model>, StoreError>> {
        match sessions(connection, batch).await {
            Ok(sessions) => batch
                .iter()
                .map(|pending| Ok(sessions.get(&pending.work.0).cloned()))
                .collect(),
            Err(error) => vec![Err(error); batch.len()],
        }
    }
}

/// Each session found, by merchant_uid, in one statement.
async fn sessions(
    connection: &mut Connection,
    batch: &[Pending<BySession>],
) -> Result<HashMap<String, session::Model>, StoreError> {
    let connection = connection.postgres()?;
    let keys: Vec<&str> = batch.iter().map(|pending| pending.work.0.as_str()).collect();
    let rows = sqlx::query("SELECT * FROM verification_sessions WHERE merchant_uid = ANY($1)")
        .bind(&keys)
        .fetch_all(connection)
        .await
        .map_err(sqlx_error)?;
    rows.into_iter()
        .map(|row| {
            let model = session::Model::from_query_result(&QueryResult::from(row), "").map_err(classify)?;
            Ok((model.merchant_uid.clone(), model))
        })
        .collect()
}
