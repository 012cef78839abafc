//! Where a statement built by sea-orm runs: through sea-orm (the pool, or its transaction) or
//! on a PostgreSQL connection held through the gate (a kept one, or a transaction on it). The
//! same `Statement` either way, so a write runs on both from one text.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, QueryResult, RuntimeErr,
    Statement,
    sea_query::Values,
    sqlx::{self, PgConnection},
};
use sea_query_sqlx::SqlxValues;

use crate::store::{StoreError, classify};

pub(crate) enum On<'a, C> {
    Sea(&'a C),
    Held(&'a mut PgConnection),
}

impl<'a> On<'a, DatabaseConnection> {
    /// A held PostgreSQL connection (or a transaction on it).
    pub(crate) fn held(connection: &'a mut PgConnection) -> Self {
        Self::Held(connection)
    }
}

impl<C: ConnectionTrait> On<'_, C> {
    pub(crate) fn backend(&self) -> DbBackend {
        match self {
            Self::Sea(db) => db.get_database_backend(),
            Self::Held(_) => DbBackend::Postgres,
        }
    }

    pub(crate) async fn query_one(&mut self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Self::Sea(db) => db.query_one_raw(statement).await,
            Self::Held(connection) => Ok(bound(statement)
                .fetch_optional(&mut **connection)
                .await
                .map_err(query_error)?
                .map(QueryResult::from)),
        }
    }

    /// The one row of `statement` as a model, if any.
    pub(crate) async fn find<M: FromQueryResult>(
        &mut self,
        statement: Statement,
    ) -> Result<Option<M>, StoreError> {
        match self.query_one(statement).await.map_err(classify)? {
            Some(row) => M::from_query_result(&row, "").map(Some).map_err(classify),
            None => Ok(None),
        }
    }

    /// Rows affected.
    pub(crate) async fn execute(&mut self, statement: Statement) -> Result<u64, DbErr> {
        match self {
            Self::Sea(db) => Ok(db.execute_raw(statement).await?.rows_affected()),
            Self::Held(connection) => Ok(bound(statement)
                .execute(&mut **connection)
                .await
                .map_err(query_error)?
                .rows_affected()),
        }
    }
}

/// The statement as sea-orm itself hands it to sqlx (prepared, and cached per connection).
fn bound(statement: Statement) -> sqlx::query::Query<'static, sqlx::Postgres, SqlxValues> {
    let values = statement.values.unwrap_or_else(|| Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), SqlxValues(values))
}

/// The error sea-orm would have returned, so one `classify` and `sql_err` serve both.
pub(crate) fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
}

/// sqlx's errors sorted as sea-orm's are, by the one `classify`.
pub(crate) fn sqlx_error(error: sqlx::Error) -> StoreError {
    classify(query_error(error))
}
