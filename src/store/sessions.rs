//! Verification sessions: begun, read, redeemed once, purged after expiry. Exactly one
//! certification redeems a session: the conditional update of `redeemed_id` decides, never a
//! read followed by a write.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};

use super::{
    Store, StoreError,
    batch::{
        access::{log, settle_call, write_logged},
        lookups::BySession,
        statement::On,
    },
    classify,
    entities::session,
    retrying,
    rows::{Claim, Claimed, RecordWritten as _, StoredSession},
    writes::claim_in,
};
use crate::{
    audit::AccessRecord,
    domain::{BindOutcome, Holder, SessionId, VerificationPurpose},
};

impl Store {
    /// Stores a session just begun (no redemption yet).
    #[tracing::instrument(name = "db.begin_session", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    /// The call's `access` record (a session keeping an expected person) is written with it.
    pub(crate) async fn begin_session(
        &self,
        begun: StoredSession,
        access: Option<AccessRecord>,
    ) -> Result<(), StoreError> {
        let insert = session::Entity::insert(session::ActiveModel::from(begun));
        let Some(logged) = log(self.chains(), access)? else {
            let db = self.gate.place().await?;
            insert.exec_without_returning(&*db).await.map_err(classify)?;
            return Ok(());
        };
        let begun = async {
            let db = self.gate.place().await?;
            let txn = db.begin().await.map_err(classify)?;
            insert.exec_without_returning(&txn).await.map_err(classify)?;
            write_logged(&mut On::Sea(&txn), Some(&logged)).await?;
            txn.commit().await.map_err(classify)
        }
        .await;
        settle_call(Some(logged), &begun);
        begun
    }

    /// How many of `caller`'s sessions are open (unredeemed, unexpired at `now`), and when the
    /// first of them expires: for OPEN_SESSIONS_PER_CALLER. Counted here rather than kept as a
    /// counter, since only the database knows when a session is redeemed or expires; the index
    /// on (caller, expires_at, redeemed_id) serves it, and what it counts is bounded by
    /// SESSIONS_PER_MINUTE × VERIFICATION_SESSION_TTL (9,000 by default).
    #[tracing::instrument(name = "db.open_sessions", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn open_sessions(
        &self,
        caller: &str,
        now: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let db = self.gate.place().await?;
        let open: Option<(i64, Option<DateTime<Utc>>)> = session::Entity::find()
            .select_only()
            .column_as(session::Column::MerchantUid.count(), "count")
            .column_as(session::Column::ExpiresAt.min(), "soonest")
            .filter(session::Column::Caller.eq(caller))
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(session::Column::RedeemedId.is_null())
            .into_tuple()
            .one(&*db)
            .await
            .map_err(classify)?;
        let (count, soonest) = open.unwrap_or((0, None));
        Ok((u64::try_from(count).unwrap_or(0), soonest))
    }

    #[tracing::instrument(name = "db.session", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn session(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let row = match &self.lanes.postgres {
            // Read by every Verify under a session: reads arriving together share a statement.
            Some(postgres) => postgres.sessions.ask(BySession(id.as_str().to_owned())).await?,
            None => {
                let db = self.gate.place().await?;
                session::Entity::find_by_id(id.as_str())
                    .one(&*db)
                    .await
                    .map_err(classify)?
            }
        };
        row.map(StoredSession::try_from).transpose()
    }

    /// Redeems the session for a Verify that binds nothing (or whose bind was `refused`),
    /// recording the answer it gave (`holder_before`, the refusal) for its retries, and the
    /// call's `access` record with a first redemption (only). One statement, or a transaction
    /// with its deletion or its access record.
    #[tracing::instrument(name = "db.redeem_session", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn redeem_session(
        &self,
        claim: &Claim,
        holder_before: Option<&Holder>,
        refused: Option<&BindOutcome>,
        now: DateTime<Utc>,
        access: Option<AccessRecord>,
    ) -> Result<Claimed, StoreError> {
        let access = access.as_ref();
        retrying(move || async move {
            let db = self.gate.place().await?;
            if claim.deletion_due.is_none() && access.is_none() {
                return claim_in(&mut On::Sea(&*db), claim, Some(holder_before), refused, now).await;
            }
            // The redemption, its deletion and its record commit together, or none does.
            let logged = log(self.chains(), access.cloned())?;
            let claimed = async {
                let txn = db.begin().await.map_err(classify)?;
                let mut on = On::Sea(&txn);
                let claimed = claim_in(&mut on, claim, Some(holder_before), refused, now).await?;
                if claimed.record_written() {
                    write_logged(&mut on, logged.as_ref()).await?;
                }
                txn.commit().await.map_err(classify)?;
                Ok(claimed)
            }
            .await;
            settle_call(logged, &claimed);
            claimed
        })
        .await
    }

    /// Deletes sessions that expired before `before`; how many, by purpose, were never redeemed.
    #[tracing::instrument(name = "db.purge_sessions", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn purge_sessions(
        &self,
        before: DateTime<Utc>,
    ) -> Result<(u64, Vec<(VerificationPurpose, u64)>), StoreError> {
        let db = self.gate.background();
        let unredeemed: Vec<(String, i64)> = session::Entity::find()
            .select_only()
            .column(session::Column::Purpose)
            .column_as(session::Column::MerchantUid.count(), "count")
            .filter(session::Column::ExpiresAt.lt(before))
            .filter(session::Column::RedeemedId.is_null())
            .group_by(session::Column::Purpose)
            .into_tuple()
            .all(&*db)
            .await
            .map_err(classify)?;
        let deleted = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lt(before))
            .exec(&*db)
            .await
            .map_err(classify)?;
        let unredeemed = unredeemed
            .into_iter()
            .filter_map(|(purpose, count)| {
                Some((
                    VerificationPurpose::from_stored(&purpose)?,
                    u64::try_from(count).ok()?,
                ))
            })
            .collect();
        Ok((deleted.rows_affected, unredeemed))
    }
}
