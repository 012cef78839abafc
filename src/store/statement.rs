//! Where one PostgreSQL statement runs: through sea-orm (the pool, or the caller's transaction)
//! or on a connection the store keeps (see [`super::kept`]). The same `Statement` either way,
//! so a hot statement and its transactional twin are one text.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, QueryResult, RuntimeErr, Statement,
    sea_query::Values,
    sqlx::{self, PgConnection},
};
use sea_query_sqlx::SqlxValues;

use super::{StoreError, classify};

pub(super) enum On<'a, C> {
    Sea(&'a C),
    Kept(&'a mut PgConnection),
}

impl<C: ConnectionTrait> On<'_, C> {
    pub(super) fn backend(&self) -> DbBackend {
        match self {
            Self::Sea(db) => db.get_database_backend(),
            Self::Kept(_) => DbBackend::Postgres,
        }
    }

    pub(super) async fn query_one(&mut self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Self::Sea(db) => db.query_one_raw(statement).await,
            Self::Kept(connection) => Ok(bound(statement)
                .fetch_optional(&mut **connection)
                .await
                .map_err(query_error)?
                .map(QueryResult::from)),
        }
    }

    /// Rows affected.
    pub(super) async fn execute(&mut self, statement: Statement) -> Result<u64, DbErr> {
        match self {
            Self::Sea(db) => Ok(db.execute_raw(statement).await?.rows_affected()),
            Self::Kept(connection) => Ok(bound(statement)
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

/// The error sea-orm would have returned, so one [`super::classify`] and `sql_err` serve both.
fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
}

/// sqlx's errors sorted as sea-orm's are, by the one [`super::classify`].
pub(super) fn sqlx_error(error: sqlx::Error) -> StoreError {
    classify(query_error(error))
}
