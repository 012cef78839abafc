//! The queries a call makes: record what a certification showed, bind and unlink, and who
//! holds a person.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr};

use super::{
    Store, StoreError, classify,
    entities::{certification, person},
    fresh_binds::{Fresh, FreshBind},
    sessions::{Claim, Claimed},
    statement::On,
    writes::{bind_in, record_postgres, record_sqlite},
};
use crate::domain::{AccountId, BindOutcome, CertificationRef, Holder, PersonIndex, Provider, Sealed};

/// A certified certification as we record it: keyed hashes of CI and DI for lookups, and the
/// two sealed under one key for everything else (index-key rotation, export on request).
pub struct SeenCertification<'a> {
    pub provider: Provider,
    pub id: &'a str,
    pub ci_index: &'a PersonIndex,
    pub di_index: Option<&'a PersonIndex>,
    pub ci_sealed: &'a Sealed,
    pub di_sealed: Option<&'a Sealed>,
    pub certified_at: DateTime<Utc>,
}

/// A certification as the store records it: CI and DI as keyed lookup hashes and sealed under
/// the row's CI hash. Owned, so a [`SeenCertification`] can borrow it and a record can wait in
/// a lane (see [`super::records`]) without a copy.
#[derive(Clone)]
pub struct Recordable {
    pub provider: Provider,
    pub id: String,
    pub ci_index: PersonIndex,
    pub di_index: Option<PersonIndex>,
    pub ci_sealed: Sealed,
    pub di_sealed: Option<Sealed>,
    pub certified_at: DateTime<Utc>,
}

impl Recordable {
    pub fn as_seen(&self) -> SeenCertification<'_> {
        SeenCertification {
            provider: self.provider,
            id: &self.id,
            ci_index: &self.ci_index,
            di_index: self.di_index.as_ref(),
            ci_sealed: &self.ci_sealed,
            di_sealed: self.di_sealed.as_ref(),
            certified_at: self.certified_at,
        }
    }
}

/// What [`Store::record`] learned: the person's row and who held them before this call.
#[derive(Clone)]
pub struct Recorded {
    pub person_id: i64,
    pub holder: Option<Holder>,
}

/// What [`Store::record_and_bind`] decided.
#[derive(Debug)]
pub enum Redeemed {
    /// The account holds the person; `holder_before` is who held them before the first such call.
    Bound {
        holder_before: Option<Holder>,
        bound_at: DateTime<Utc>,
        /// This call redeemed the session (false for a retry, and without a session).
        redeemed_session: bool,
    },
    /// Refused: nothing was written, the session (if any) is not redeemed.
    Refused(BindOutcome),
    /// The session was redeemed by another certification first.
    SessionUsed,
    /// The session expired (or was purged) before this claim.
    SessionExpired,
}

impl Store {
    /// Records a certified certification and its person (created on first sight), and returns
    /// who held the person before this call.
    #[tracing::instrument(name = "db.record", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn record(&self, recordable: Recordable) -> Result<Recorded, StoreError> {
        if self.is_postgres() {
            return self.records.ask(recordable).await;
        }
        let now = Utc::now();
        let _place = self.place().await?;
        let txn = self.db.begin().await.map_err(classify)?;
        let recorded = record_sqlite(&txn, &recordable.as_seen(), now).await?;
        txn.commit().await.map_err(classify)?;
        Ok(recorded)
    }

    /// Redeems the session (when there is one), records the certification and binds its person
    /// to `account`, in one transaction: either all of it happens or, refused, none of it.
    #[tracing::instrument(name = "db.record_and_bind", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn record_and_bind(
        &self,
        recordable: Recordable,
        account: &AccountId,
        rejoin_cooldown: Duration,
        claim: Option<&Claim<'_>>,
    ) -> Result<Redeemed, StoreError> {
        debug_assert!(claim.is_none_or(|claim| {
            claim.provider == recordable.provider && claim.certification_id == recordable.id
        }));
        // A new person for a new account: one statement instead of a transaction of six, its
        // deletion at the provider enqueued by the same statement, and signups
        // arriving together in one statement (see [`super::fresh_binds`]).
        let recordable = if self.is_postgres() {
            let bind = FreshBind {
                recordable,
                account: account.clone(),
                session: claim.map(|claim| (claim.session.clone(), claim.deletion_due)),
            };
            match self.fresh_binds.ask(bind).await? {
                Fresh::Bound(bound_at) => {
                    return Ok(Redeemed::Bound {
                        holder_before: None,
                        bound_at,
                        redeemed_session: claim.is_some(),
                    });
                }
                Fresh::Not(recordable) => *recordable,
            }
        } else {
            recordable
        };
        let seen = recordable.as_seen();
        let now = Utc::now();
        let _place = self.place().await?;
        let txn = self.db.begin().await.map_err(classify)?;
        // The claim first: it is a write (SQLite takes its write lock up front), and on
        // PostgreSQL concurrent redemptions of one session queue on its row right here.
        let earlier = match claim {
            None => None,
            Some(claim) => match super::sessions::claim_in(&txn, claim, None, now).await? {
                Claimed::First => None,
                Claimed::Again(redemption) => Some(redemption),
                Claimed::UsedByAnother => return Ok(Redeemed::SessionUsed),
                Claimed::Expired => return Ok(Redeemed::SessionExpired),
            },
        };
        let recorded = if self.is_postgres() {
            record_postgres(&mut On::Sea(&txn), &seen, now).await?
        } else {
            record_sqlite(&txn, &seen, now).await?
        };
        let outcome = bind_in(
            &txn,
            seen.provider,
            seen.id,
            recorded.person_id,
            account,
            rejoin_cooldown,
            now,
        )
        .await?;
        let BindOutcome::Bound { bound_at } = outcome else {
            txn.rollback().await.map_err(classify)?;
            return Ok(Redeemed::Refused(outcome));
        };
        let redeemed_session = claim.is_some() && earlier.is_none();
        let holder_before = match (claim, earlier) {
            (_, Some(earlier)) => earlier.holder_before,
            (Some(claim), None) => {
                super::sessions::record_outcome(&txn, claim.session, recorded.holder.as_ref(), true).await?;
                recorded.holder
            }
            (None, None) => recorded.holder,
        };
        txn.commit().await.map_err(classify)?;
        Ok(Redeemed::Bound {
            holder_before,
            bound_at,
            redeemed_session,
        })
    }

    /// The account no longer holds its person (회원 탈퇴). `Some(time)` when a binding existed.
    #[tracing::instrument(name = "db.unlink", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn unlink(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let _place = self.place().await?;
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
            .exec(&self.db)
            .await
            .map_err(classify)?;
        Ok((unlinked.rows_affected > 0).then_some(now))
    }

    /// Who holds the person with this CI index, if anyone: asked together with whoever else is
    /// asking (see [`super::lookups`]).
    #[tracing::instrument(name = "db.holder_by_ci", skip_all, fields(otel.kind = "client", db.system = %self.system()))]
    pub async fn holder_by_ci(&self, ci_index: &PersonIndex) -> Result<Option<Holder>, StoreError> {
        self.lookups.ask(super::lookups::ByCi(ci_index.0.clone())).await
    }

    /// `None` when we have never seen this certification; otherwise who holds its person.
    #[tracing::instrument(
        name = "db.holder_by_certification",
        skip_all,
        fields(otel.kind = "client", db.system = %self.system())
    )]
    pub async fn holder_by_certification(
        &self,
        reference: &CertificationRef,
    ) -> Result<Option<Option<Holder>>, StoreError> {
        let _place = self.place().await?;
        let Some(seen) = certification::Entity::find()
            .filter(certification::Column::Provider.eq(reference.provider().as_str()))
            .filter(certification::Column::ProviderId.eq(reference.id()))
            .one(&self.db)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        let person = person::Entity::find_by_id(seen.person_id)
            .one(&self.db)
            .await
            .map_err(classify)?;
        Ok(Some(person.as_ref().and_then(holder_of)))
    }
}

pub(super) fn holder_of(person: &person::Model) -> Option<Holder> {
    holder(person.account_id.clone(), person.bound_at)
}

/// A person's holder from its two columns: both set, or nobody.
pub(super) fn holder(account_id: Option<String>, bound_at: Option<DateTime<Utc>>) -> Option<Holder> {
    match (account_id, bound_at) {
        (Some(account_id), Some(bound_at)) => Some(Holder {
            account_id: AccountId::from_trusted(account_id),
            bound_at,
        }),
        _ => None,
    }
}
