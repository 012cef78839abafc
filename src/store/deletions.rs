//! The deletion outbox: V1 certifications to delete at PortOne once their session was redeemed
//! (when a claim carries a due time). Enqueued by the transaction or the one statement (`batch::binds`)
//! that redeems the session, so a redemption never commits without its deletion; taken by one
//! replica at a time by moving `not_before` past the attempt (a lease that lapses if the
//! replica dies); finished rows stay until purged, so a later Verify can be told the
//! certification was deleted.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement,
    sea_query::Expr,
};

use super::{Store, StoreError, classify, entities::deletion};

/// A deletion this replica has taken: its attempt is under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDeletion {
    pub imp_uid: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// How a deletion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionOutcome {
    /// PortOne answered 200 with the deleted record.
    Deleted,
    /// PortOne answered 404: nothing left to delete.
    Absent,
    /// PortOne refused it for good (not an outage): given up, for an operator to look at.
    Abandoned,
}

impl DeletionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Absent => "absent",
            Self::Abandoned => "abandoned",
        }
    }
}

/// Takes the lease: due rows get `not_before = lease_until` and one more attempt.
const TAKE_POSTGRES: &str = "UPDATE portone_deletions SET not_before = $1, attempts = attempts + 1 \
     WHERE imp_uid IN (SELECT imp_uid FROM portone_deletions WHERE not_before <= $2 \
     ORDER BY not_before LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING imp_uid, attempts";
/// SQLite has one writer at a time: the statement itself is the lock.
const TAKE_SQLITE: &str = "UPDATE portone_deletions SET not_before = ?, attempts = attempts + 1 \
     WHERE imp_uid IN (SELECT imp_uid FROM portone_deletions WHERE not_before <= ? \
     ORDER BY not_before LIMIT ?) RETURNING imp_uid, attempts";

impl Store {
    /// Up to `limit` deletions due at `now`, leased to this replica until `lease_until`.
    #[tracing::instrument(name = "db.take_deletions", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn take_due_deletions(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDeletion>, StoreError> {
        let db = self.gate.background();
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => TAKE_POSTGRES,
            _ => TAKE_SQLITE,
        };
        let values = vec![lease_until.into(), now.into(), i64::from(limit).into()];
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let imp_uid: String = row.try_get("", "imp_uid").map_err(classify)?;
                let attempts: i32 = row.try_get("", "attempts").map_err(classify)?;
                Ok(DueDeletion {
                    imp_uid,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                })
            })
            .collect()
    }

    /// The deletion ended (deleted, absent or given up): it is not due again.
    pub(crate) async fn finish_deletion(
        &self,
        imp_uid: &str,
        outcome: DeletionOutcome,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let db = self.gate.background();
        deletion::Entity::update_many()
            .col_expr(deletion::Column::NotBefore, Expr::value(None::<DateTime<Utc>>))
            .col_expr(deletion::Column::FinishedAt, Expr::value(now))
            .col_expr(deletion::Column::Outcome, Expr::value(outcome.as_str()))
            .col_expr(deletion::Column::LastError, Expr::value(reason))
            .filter(deletion::Column::ImpUid.eq(imp_uid))
            .exec(&*db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The attempt failed for a reason worth retrying: due again at `not_before`.
    pub(crate) async fn retry_deletion(
        &self,
        imp_uid: &str,
        reason: &str,
        not_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let db = self.gate.background();
        deletion::Entity::update_many()
            .col_expr(deletion::Column::NotBefore, Expr::value(not_before))
            .col_expr(deletion::Column::LastError, Expr::value(reason))
            .filter(deletion::Column::ImpUid.eq(imp_uid))
            .filter(deletion::Column::FinishedAt.is_null())
            .exec(&*db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Deletions not finished yet, due or not.
    pub(crate) async fn pending_deletions(&self) -> Result<u64, StoreError> {
        let db = self.gate.background();
        deletion::Entity::find()
            .filter(deletion::Column::FinishedAt.is_null())
            .count(&*db)
            .await
            .map_err(classify)
    }

    /// Whether we deleted this certification at PortOne, or asked to: a PortOne 404 for it then
    /// means "deleted", not "never existed".
    #[tracing::instrument(name = "db.deletion_of", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn deleted_at_provider(&self, imp_uid: &str) -> Result<bool, StoreError> {
        let db = self.gate.place().await?;
        let row = deletion::Entity::find_by_id(imp_uid)
            .one(&*db)
            .await
            .map_err(classify)?;
        Ok(row.is_some_and(|row| {
            matches!(row.outcome.as_deref(), Some("deleted" | "absent"))
                || (row.finished_at.is_none() && row.attempts > 0)
        }))
    }

    /// Forgets deletions finished before `before`.
    pub(crate) async fn purge_deletions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let db = self.gate.background();
        let deleted = deletion::Entity::delete_many()
            .filter(deletion::Column::FinishedAt.lt(before))
            .exec(&*db)
            .await
            .map_err(classify)?;
        Ok(deleted.rows_affected)
    }
}
