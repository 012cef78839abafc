//! The queries a call makes: record what a certification showed, bind and unlink, and who
//! holds a person.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
    sqlx::Connection as _,
};

use super::{
    Store, StoreError,
    batch::{
        access::{Logged, log, settle_call, write_logged},
        binds::{Fresh, FreshBind},
        lookups::ByCi,
        records::{Record, record_one},
        statement::{On, sqlx_error},
    },
    classify,
    entities::{certification, person},
    retrying,
    rows::{Claim, Claimed, RecordWritten as _, Recordable, Recorded, Redeemed, holder},
    writes::{bind_in, claim_in, record_outcome, record_sqlite},
};
use crate::{
    audit::AccessRecord,
    domain::{AccountId, BindOutcome, CertificationRef, Holder, PersonIndex},
};

impl Store {
    /// Records a certified certification and its person (created on first sight), and returns
    /// who held the person before this call.
    #[tracing::instrument(name = "db.record", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn record(
        &self,
        recordable: Recordable,
        access: Option<AccessRecord>,
    ) -> Result<Recorded, StoreError> {
        if let Some(postgres) = &self.lanes.postgres {
            return postgres.records.ask(Record { recordable, access }).await;
        }
        let logged = log(self.chains(), access)?;
        let recorded = async {
            let now = Utc::now();
            let db = self.gate.place().await?;
            let txn = db.begin().await.map_err(classify)?;
            let recorded = record_sqlite(&txn, &recordable, now).await?;
            write_logged(&mut On::Sea(&txn), logged.as_ref()).await?;
            txn.commit().await.map_err(classify)?;
            Ok(recorded)
        }
        .await;
        settle_call(logged, &recorded);
        recorded
    }

    /// Redeems the session (when there is one), records the certification and binds its person
    /// to `account`, in one transaction: either all of it happens or, refused, none of it. The
    /// call's `access` record (its outcome OK) is written with a bind, and only with one.
    #[tracing::instrument(name = "db.record_and_bind", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn record_and_bind(
        &self,
        recordable: Recordable,
        account: &AccountId,
        rejoin_cooldown: Duration,
        claim: Option<Claim>,
        access: Option<AccessRecord>,
    ) -> Result<Redeemed, StoreError> {
        let redeems_session = claim.is_some();
        let bind = FreshBind {
            recordable,
            account: account.clone(),
            claim,
            access,
        };
        let bind = match &self.lanes.postgres {
            Some(postgres) => match postgres.binds.ask(bind).await? {
                Fresh::Bound(bound_at) => {
                    return Ok(Redeemed::Bound {
                        holder_before: None,
                        bound_at,
                        redeemed_session: redeems_session,
                    });
                }
                Fresh::Not(bind) => bind,
            },
            None => Box::new(bind),
        };
        let bind = &*bind;
        retrying(move || async move {
            let logged = log(self.chains(), bind.access.clone())?;
            let redeemed = if self.lanes.postgres.is_some() {
                self.bind_held(bind, rejoin_cooldown, logged.as_ref()).await
            } else {
                self.bind_placed(bind, rejoin_cooldown, logged.as_ref()).await
            };
            settle_call(logged, &redeemed);
            redeemed
        })
        .await
    }

    /// One bind in a transaction of its own on a held PostgreSQL connection, `logged` written
    /// when it binds. A lock wait past DATABASE_LOCK_TIMEOUT is contention: undone, and run
    /// again by the caller.
    async fn bind_held(
        &self,
        bind: &FreshBind,
        rejoin_cooldown: Duration,
        logged: Option<&Logged>,
    ) -> Result<Redeemed, StoreError> {
        let mut held = self.gate.hold().await?;
        let mut txn = held.postgres()?.begin().await.map_err(sqlx_error)?;
        let redeemed = bind_in_transaction(&mut On::held(&mut txn), bind, rejoin_cooldown, logged).await?;
        if redeemed.record_written() {
            txn.commit().await.map_err(sqlx_error)?;
        } else {
            txn.rollback().await.map_err(sqlx_error)?;
        }
        held.keep();
        Ok(redeemed)
    }

    /// [`Store::bind_held`] through SeaORM (SQLite).
    async fn bind_placed(
        &self,
        bind: &FreshBind,
        rejoin_cooldown: Duration,
        logged: Option<&Logged>,
    ) -> Result<Redeemed, StoreError> {
        let db = self.gate.place().await?;
        let txn = db.begin().await.map_err(classify)?;
        let redeemed = bind_in_transaction(&mut On::Sea(&txn), bind, rejoin_cooldown, logged).await?;
        if redeemed.record_written() {
            txn.commit().await.map_err(classify)?;
        } else {
            txn.rollback().await.map_err(classify)?;
        }
        Ok(redeemed)
    }

    /// The account no longer holds its person (회원 탈퇴). `Some(time)` when a binding existed;
    /// the call's `access` record is written with the unlink, and only with one.
    #[tracing::instrument(name = "db.unlink", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn unlink(
        &self,
        account: &AccountId,
        access: Option<AccessRecord>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        retrying(|| async {
            let logged = log(self.chains(), access.clone())?;
            let unlinked = self.unlink_once(account, logged.as_ref()).await;
            settle_call(logged, &unlinked);
            unlinked
        })
        .await
    }

    async fn unlink_once(
        &self,
        account: &AccountId,
        logged: Option<&Logged>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let db = self.gate.place().await?;
        let txn = db.begin().await.map_err(classify)?;
        let now = Utc::now();
        let unlinked = person::Entity::update_many()
            .col_expr(person::Column::AccountId, Expr::value(Option::<String>::None))
            .col_expr(
                person::Column::BoundAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(person::Column::UnboundAt, Expr::value(now))
            .col_expr(person::Column::UpdatedAt, Expr::value(now))
            .filter(person::Column::AccountId.eq(account.as_str()))
            .exec(&txn)
            .await
            .map_err(classify)?;
        if unlinked.rows_affected == 0 {
            txn.rollback().await.map_err(classify)?;
            return Ok(None);
        }
        write_logged(&mut On::Sea(&txn), logged).await?;
        txn.commit().await.map_err(classify)?;
        Ok(Some(now))
    }

    /// Who holds the person with this CI index, if anyone: asked together with whoever else is
    /// asking (see `batch::lookups`). The call's `access` record, if any, is committed with the
    /// answer: in the lane's statement on PostgreSQL, in a transaction of its own on SQLite.
    #[tracing::instrument(name = "db.holder_by_ci", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub(crate) async fn holder_by_ci(
        &self,
        ci_index: &PersonIndex,
        access: Option<AccessRecord>,
    ) -> Result<Option<Holder>, StoreError> {
        if access.is_none() || self.lanes.postgres.is_some() {
            return self
                .lanes
                .lookups
                .ask(ByCi {
                    ci_hash: ci_index.0.clone(),
                    access,
                })
                .await;
        }
        let logged = log(self.chains(), access)?;
        let holder = async {
            let db = self.gate.place().await?;
            let txn = db.begin().await.map_err(classify)?;
            // The write first: it takes SQLite's write lock up front, so two such
            // transactions queue on the busy timeout instead of deadlocking on an upgrade.
            write_logged(&mut On::Sea(&txn), logged.as_ref()).await?;
            let person = person::Entity::find()
                .filter(person::Column::CiHash.eq(ci_index.0.as_str()))
                .one(&txn)
                .await
                .map_err(classify)?;
            txn.commit().await.map_err(classify)?;
            Ok(person.and_then(|person| holder(person.account_id, person.bound_at)))
        }
        .await;
        settle_call(logged, &holder);
        holder
    }

    /// `None` when we have never seen this certification; otherwise who holds its person.
    #[tracing::instrument(
        name = "db.holder_by_certification",
        skip_all,
        fields(otel.kind = "client", db.system = %self.system())
    )]
    pub(crate) async fn holder_by_certification(
        &self,
        reference: &CertificationRef,
    ) -> Result<Option<Option<Holder>>, StoreError> {
        let db = self.gate.place().await?;
        let Some(seen) = certification::Entity::find()
            .filter(certification::Column::Provider.eq(reference.provider().as_str()))
            .filter(certification::Column::ProviderId.eq(reference.id()))
            .one(&*db)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        let person = person::Entity::find_by_id(seen.person_id)
            .one(&*db)
            .await
            .map_err(classify)?;
        Ok(Some(
            person.and_then(|person| holder(person.account_id, person.bound_at)),
        ))
    }
}

/// The general path of a bind, inside the caller's transaction, which it commits only for
/// [`Redeemed::Bound`]: `logged`, the call's record, is written only then. The claim first: it is a write (SQLite takes its write lock up front),
/// and on PostgreSQL concurrent redemptions of one session queue on its row right here.
async fn bind_in_transaction<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    bind: &FreshBind,
    rejoin_cooldown: Duration,
    logged: Option<&Logged>,
) -> Result<Redeemed, StoreError> {
    let FreshBind {
        recordable,
        account,
        claim,
        ..
    } = bind;
    let claim = claim.as_ref();
    let now = Utc::now();
    let earlier = match claim {
        None => None,
        Some(claim) => match claim_in(on, claim, None, None, now).await? {
            Claimed::First => None,
            Claimed::Again(redemption) => {
                // A retry of a refused signup answers its refusal, whatever changed since.
                if let Some(refused) = redemption.refused {
                    return Ok(Redeemed::Refused(refused));
                }
                Some(redemption)
            }
            Claimed::UsedByAnother => return Ok(Redeemed::SessionUsed),
            Claimed::Expired => return Ok(Redeemed::SessionExpired),
        },
    };
    let recorded = match on {
        On::Held(connection) => record_one(connection, recordable, None, now).await?,
        On::Sea(txn) => record_sqlite(*txn, recordable, now).await?,
    };
    let outcome = bind_in(on, recordable, recorded.person_id, account, rejoin_cooldown, now).await?;
    let BindOutcome::Bound { bound_at } = outcome else {
        return Ok(Redeemed::Refused(outcome));
    };
    let redeemed_session = claim.is_some() && earlier.is_none();
    let holder_before = match (claim, earlier) {
        (_, Some(earlier)) => earlier.holder_before,
        (Some(claim), None) => {
            record_outcome(on, &claim.session, recorded.holder.as_ref(), true).await?;
            recorded.holder
        }
        (None, None) => recorded.holder,
    };
    write_logged(on, logged).await?;
    Ok(Redeemed::Bound {
        holder_before,
        bound_at,
        redeemed_session,
    })
}
