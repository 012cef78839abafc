//! Verification sessions: begun, read, redeemed once, purged after expiry. Exactly one
//! certification redeems a session: the conditional update of `redeemed_id` decides, never a
//! read followed by a write.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
    sea_query::Expr,
};

use super::{Store, StoreError, classify, deletions, entities::session, identities::holder};
use crate::domain::{
    AccountId, Holder, MinAge, Provider, Redemption, Sealed, SessionId, SessionSpec, VerificationPurpose,
};

/// A session about to be stored.
pub struct NewSession<'a> {
    pub id: &'a SessionId,
    pub provider: Provider,
    pub caller: &'a str,
    pub spec: &'a SessionSpec,
    pub expected_sealed: Option<&'a Sealed>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A session as stored; the expected person still sealed.
#[derive(Debug)]
pub struct StoredSession {
    pub id: SessionId,
    pub caller: String,
    pub purpose: VerificationPurpose,
    pub provider: Provider,
    pub account: Option<AccountId>,
    pub min_age: Option<MinAge>,
    pub expected_sealed: Option<Sealed>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub redemption: Option<Redemption>,
}

/// A certification's claim on a session.
pub struct Claim<'a> {
    pub session: &'a SessionId,
    pub provider: Provider,
    pub certification_id: &'a str,
    /// Set: the first redemption also enqueues the certification's deletion at its provider,
    /// due at this time, in the same transaction.
    pub deletion_due: Option<DateTime<Utc>>,
}

/// What a claim found.
#[derive(Debug)]
pub enum Claimed {
    /// This claim redeemed the session.
    First,
    /// The same certification redeemed it before (a retry): its recorded answer.
    Again(Redemption),
    UsedByAnother,
    Expired,
}

impl Store {
    #[tracing::instrument(name = "db.begin_session", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn begin_session(&self, new: NewSession<'_>) -> Result<(), StoreError> {
        let _place = self.place().await?;
        session::Entity::insert(session::ActiveModel {
            merchant_uid: Set(new.id.as_str().to_owned()),
            caller: Set(new.caller.to_owned()),
            purpose: Set(new.spec.purpose.as_str().to_owned()),
            provider: Set(new.provider.as_str().to_owned()),
            account_id: Set(new
                .spec
                .account
                .as_ref()
                .map(|account| account.as_str().to_owned())),
            min_age: Set(new
                .spec
                .min_age
                .map(|age| i32::try_from(age.get()).unwrap_or(i32::MAX))),
            expected_sealed: Set(new.expected_sealed.map(|sealed| sealed.blob.clone())),
            sealing_key_id: Set(new.expected_sealed.map(|sealed| sealed.key_id.clone())),
            created_at: Set(new.created_at),
            expires_at: Set(new.expires_at),
            redeemed_provider: Set(None),
            redeemed_id: Set(None),
            redeemed_at: Set(None),
            holder_account_id: Set(None),
            holder_bound_at: Set(None),
            bound: Set(false),
        })
        .exec_without_returning(&self.db)
        .await
        .map_err(classify)?;
        Ok(())
    }

    #[tracing::instrument(name = "db.session", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn session(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let find = session::Entity::find_by_id(id.as_str());
        if !self.is_postgres() {
            let _place = self.place().await?;
            return find
                .one(&self.db)
                .await
                .map_err(classify)?
                .map(stored)
                .transpose();
        }
        // Read by every Verify under a session: reads arriving together share a statement
        // (see [`super::lookups`]).
        self.sessions
            .ask(super::lookups::BySession(id.as_str().to_owned()))
            .await?
            .map(stored)
            .transpose()
    }

    /// Redeems the session for a Verify that binds nothing, recording the answer it gave
    /// (`holder_before`) for its retries. One statement.
    #[tracing::instrument(name = "db.redeem_session", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn redeem_session(
        &self,
        claim: &Claim<'_>,
        holder_before: Option<&Holder>,
        now: DateTime<Utc>,
    ) -> Result<Claimed, StoreError> {
        let _place = self.place().await?;
        if claim.deletion_due.is_none() {
            return claim_in(&self.db, claim, Some(holder_before), now).await;
        }
        // The redemption and its deletion commit together, or neither does.
        let txn = self.db.begin().await.map_err(classify)?;
        let claimed = claim_in(&txn, claim, Some(holder_before), now).await?;
        txn.commit().await.map_err(classify)?;
        Ok(claimed)
    }

    /// Deletes sessions that expired before `before`; how many, by purpose, were never redeemed.
    #[tracing::instrument(name = "db.purge_sessions", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn purge_sessions(
        &self,
        before: DateTime<Utc>,
    ) -> Result<(u64, Vec<(VerificationPurpose, u64)>), StoreError> {
        let db = self.background();
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

/// Claims the session for a certification, unless another redeemed it first or it expired.
/// With `holder_before` (a Verify that binds nothing) the answer is recorded in the same
/// statement; a binding Verify records it with [`record_outcome`] once its bind succeeded.
pub(super) async fn claim_in(
    db: &impl ConnectionTrait,
    claim: &Claim<'_>,
    holder_before: Option<Option<&Holder>>,
    now: DateTime<Utc>,
) -> Result<Claimed, StoreError> {
    let mut update = session::Entity::update_many()
        .col_expr(
            session::Column::RedeemedProvider,
            Expr::value(claim.provider.as_str()),
        )
        .col_expr(session::Column::RedeemedId, Expr::value(claim.certification_id))
        .col_expr(session::Column::RedeemedAt, Expr::value(now));
    if let Some(holder) = holder_before {
        update = update
            .col_expr(
                session::Column::HolderAccountId,
                Expr::value(holder.map(|holder| holder.account_id.as_str().to_owned())),
            )
            .col_expr(
                session::Column::HolderBoundAt,
                Expr::value(holder.map(|holder| holder.bound_at)),
            );
    }
    let claimed = update
        .filter(session::Column::MerchantUid.eq(claim.session.as_str()))
        .filter(session::Column::RedeemedId.is_null())
        .filter(session::Column::ExpiresAt.gt(now))
        .exec(db)
        .await
        .map_err(classify)?;
    if claimed.rows_affected == 1 {
        if let Some(not_before) = claim.deletion_due {
            deletions::enqueue_in(db, claim.certification_id, now, not_before).await?;
        }
        return Ok(Claimed::First);
    }
    // Lost: to ourselves (a concurrent retry), to another certification, or to the clock.
    let row = session::Entity::find_by_id(claim.session.as_str())
        .one(db)
        .await
        .map_err(classify)?;
    let Some(row) = row else {
        return Ok(Claimed::Expired);
    };
    match stored(row)?.redemption {
        Some(redemption)
            if redemption.provider == claim.provider
                && redemption.certification_id == claim.certification_id =>
        {
            Ok(Claimed::Again(redemption))
        }
        Some(_) => Ok(Claimed::UsedByAnother),
        None => Ok(Claimed::Expired),
    }
}

/// The answer of the binding Verify that redeemed the session, for its retries.
pub(super) async fn record_outcome(
    db: &impl ConnectionTrait,
    id: &SessionId,
    holder_before: Option<&Holder>,
    bound: bool,
) -> Result<(), StoreError> {
    session::Entity::update_many()
        .col_expr(
            session::Column::HolderAccountId,
            Expr::value(holder_before.map(|holder| holder.account_id.as_str().to_owned())),
        )
        .col_expr(
            session::Column::HolderBoundAt,
            Expr::value(holder_before.map(|holder| holder.bound_at)),
        )
        .col_expr(session::Column::Bound, Expr::value(bound))
        .filter(session::Column::MerchantUid.eq(id.as_str()))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

fn stored(row: session::Model) -> Result<StoredSession, StoreError> {
    let corrupt = |what: &str| StoreError::Failure(format!("verification session with an unreadable {what}"));
    let id = SessionId::recognise(&row.merchant_uid).ok_or_else(|| corrupt("id"))?;
    let purpose = VerificationPurpose::from_stored(&row.purpose).ok_or_else(|| corrupt("purpose"))?;
    let min_age = row
        .min_age
        .map(|age| u32::try_from(age).ok().and_then(|age| MinAge::parse(age).ok()))
        .map(|age| age.ok_or_else(|| corrupt("min_age")))
        .transpose()?;
    let expected_sealed = match (row.expected_sealed, row.sealing_key_id) {
        (Some(blob), Some(key_id)) => Some(Sealed { key_id, blob }),
        (None, _) => None,
        (Some(_), None) => return Err(corrupt("sealing key id")),
    };
    let redemption = match (row.redeemed_provider, row.redeemed_id, row.redeemed_at) {
        (Some(provider), Some(certification_id), Some(redeemed_at)) => Some(Redemption {
            provider: Provider::from_stored(&provider).ok_or_else(|| corrupt("provider"))?,
            certification_id,
            redeemed_at,
            holder_before: holder(row.holder_account_id, row.holder_bound_at),
        }),
        _ => None,
    };
    Ok(StoredSession {
        id,
        caller: row.caller,
        purpose,
        provider: Provider::from_stored(&row.provider).ok_or_else(|| corrupt("provider"))?,
        account: row.account_id.map(AccountId::from_trusted),
        min_age,
        expected_sealed,
        created_at: row.created_at,
        expires_at: row.expires_at,
        redemption,
    })
}
