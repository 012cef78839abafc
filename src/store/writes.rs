//! The statements of a transaction, on either backend (see `On`): claiming a session, recording
//! a certification on SQLite, binding a person, and enqueueing a deletion, the writes among them
//! those of `store::sql`. Each decided by the database, with conditional updates and unique
//! indexes, never a read followed by a write.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryTrait, SqlErr, Statement,
    UpdateMany,
    sea_query::{Expr, Func, Values},
};

use super::{
    StoreError,
    batch::statement::On,
    classify,
    entities::{certification, person, session},
    rows::{Claim, Claimed, Recordable, Recorded, StoredSession, holder, refusal_stored},
    sql::{
        claim_sessions, enqueue_deletions, insert_persons_unless_present, one_row, seen_one,
        upsert_certifications,
    },
};
use crate::domain::{AccountId, BindConflict, BindOutcome, Holder, SessionId};

/// The record on SQLite, inside the caller's transaction; PostgreSQL's is one statement
/// (`batch::records`), which SQLite cannot run: it has no data-modifying `WITH`.
pub(super) async fn record_sqlite(
    txn: &impl ConnectionTrait,
    record: &Recordable,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let backend = txn.get_database_backend();
    let row = || one_row(record, None, None, now);
    // A write first: on SQLite that takes the write lock up front, so two such
    // transactions queue on the busy timeout instead of deadlocking on a lock upgrade.
    txn.execute_raw(Statement::from_sql_and_values(backend, RECORD_PERSON, row()))
        .await
        .map_err(classify)?;
    let person = person::Entity::find()
        .filter(person::Column::CiHash.eq(record.ci_index.0.as_str()))
        .one(txn)
        .await
        .map_err(classify)?
        .ok_or_else(|| StoreError::Failure("person vanished inside its transaction".into()))?;
    if person.ci_sealed.is_none() {
        seal_legacy_person(&mut On::Sea(txn), person.id, record).await?;
    }
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        RECORD_CERTIFICATION,
        row(),
    ))
    .await
    .map_err(classify)?;
    Ok(Recorded {
        person_id: person.id,
        holder: holder(person.account_id, person.bound_at),
    })
}

/// [`record_sqlite`]'s writes, each a statement (parameters: [`one_row`]).
const RECORD_PERSON: &str = concat!("WITH ", seen_one!(), " ", insert_persons_unless_present!("seen"));
const RECORD_CERTIFICATION: &str = concat!(
    "WITH ",
    seen_one!(),
    ", certifying AS (SELECT seen.*, persons.id AS person_id FROM seen JOIN persons USING (ci_hash)) ",
    upsert_certifications!("certifying")
);

/// A person written before sealing existed gets sealed values once we hold them again.
pub(super) async fn seal_legacy_person<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    person_id: i64,
    record: &Recordable,
) -> Result<(), StoreError> {
    let update = person::Entity::update_many()
        .col_expr(
            person::Column::CiSealed,
            Expr::value(record.ci_sealed.blob.as_str()),
        )
        .col_expr(
            person::Column::DiSealed,
            Expr::value(record.di_sealed.as_ref().map(|di| di.blob.clone())),
        )
        .col_expr(
            person::Column::SealingKeyId,
            Expr::value(record.ci_sealed.key_id.as_str()),
        )
        .filter(person::Column::Id.eq(person_id))
        .filter(person::Column::CiSealed.is_null())
        .build(on.backend());
    on.execute(update).await.map_err(classify)?;
    Ok(())
}

/// Binds the person to `account` and marks the certification consumed by it, inside the
/// caller's transaction, decided by conditional updates and the unique index on `account_id`.
/// The caller commits only [`BindOutcome::Bound`].
pub(super) async fn bind_in<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    record: &Recordable,
    person_id: i64,
    account: &AccountId,
    rejoin_cooldown: Duration,
    now: DateTime<Utc>,
) -> Result<BindOutcome, StoreError> {
    // Consume the certification unless another account already did.
    let consume = certification::Entity::update_many()
        .col_expr(certification::Column::ConsumedBy, Expr::value(account.as_str()))
        .col_expr(
            certification::Column::ConsumedAt,
            Func::coalesce([Expr::col(certification::Column::ConsumedAt), Expr::value(now)]).into(),
        )
        .filter(certification::Column::Provider.eq(record.provider.as_str()))
        .filter(certification::Column::ProviderId.eq(record.id.as_str()))
        .filter(
            Condition::any()
                .add(certification::Column::ConsumedBy.is_null())
                .add(certification::Column::ConsumedBy.eq(account.as_str())),
        )
        .build(on.backend());
    if on.execute(consume).await.map_err(classify)? == 0 {
        return Ok(BindOutcome::Conflict(BindConflict::CertificationReused));
    }
    let cooldown = chrono::Duration::from_std(rejoin_cooldown).unwrap_or(chrono::Duration::MAX);
    let outcome = take_person(on, person_id, account, cooldown, now).await?;
    match outcome {
        // An Unlink that committed while this waited for the person's row ended the binding
        // after `now`: judged on the clock read now, the cooldown may be over.
        BindOutcome::Cooldown { until } if until <= Utc::now() => {
            take_person(on, person_id, account, cooldown, Utc::now()).await
        }
        outcome => Ok(outcome),
    }
}

/// Takes the person for `account` if nobody holds them and their last binding ended at least
/// `cooldown` before `now`. The unique index on account_id refuses an account that already
/// holds someone else, even against a concurrent bind.
async fn take_person<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    person_id: i64,
    account: &AccountId,
    cooldown: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<BindOutcome, StoreError> {
    let rejoin_from = now
        .checked_sub_signed(cooldown)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let take = person::Entity::update_many()
        .col_expr(person::Column::AccountId, Expr::value(account.as_str()))
        .col_expr(person::Column::BoundAt, Expr::value(now))
        .col_expr(person::Column::UpdatedAt, Expr::value(now))
        .filter(person::Column::Id.eq(person_id))
        .filter(person::Column::AccountId.is_null())
        .filter(
            Condition::any()
                .add(person::Column::UnboundAt.is_null())
                .add(person::Column::UnboundAt.lte(rejoin_from)),
        )
        .build(on.backend());
    match on.execute(take).await {
        Ok(1) => return Ok(BindOutcome::Bound { bound_at: now }),
        Ok(_) => {}
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Ok(BindOutcome::Conflict(BindConflict::AccountHasIdentity));
        }
        Err(error) => return Err(classify(error)),
    }

    // Somebody holds the person: this same account (a retry) or another one.
    let find = person::Entity::find_by_id(person_id).build(on.backend());
    let person: person::Model = on
        .find(find)
        .await?
        .ok_or_else(|| StoreError::Failure("person vanished inside its transaction".into()))?;
    Ok(match holder(person.account_id, person.bound_at) {
        Some(holder) if &holder.account_id == account => BindOutcome::Bound {
            bound_at: holder.bound_at,
        },
        Some(_) => BindOutcome::Conflict(BindConflict::AlreadyRegistered),
        // Unheld, so the cooldown stopped the claim.
        None => BindOutcome::Cooldown {
            until: person
                .unbound_at
                .and_then(|unbound_at| unbound_at.checked_add_signed(cooldown))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        },
    })
}

/// Claims the session for a certification, unless another redeemed it first or it expired.
/// With `holder_before` (a Verify that binds nothing, or whose bind was `refused`) the answer
/// is recorded in the same statement; a binding Verify records it with [`record_outcome`] once
/// its bind succeeded.
pub(super) async fn claim_in<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    claim: &Claim,
    holder_before: Option<Option<&Holder>>,
    refused: Option<&BindOutcome>,
    now: DateTime<Utc>,
) -> Result<Claimed, StoreError> {
    let holder = holder_before.flatten();
    let (refusal, refused_until) = refusal_stored(refused);
    let values = Values(vec![
        claim.session.as_str().into(),
        claim.provider.as_str().into(),
        claim.certification_id.as_str().into(),
        holder.map(|holder| holder.account_id.as_str().to_owned()).into(),
        holder.map(|holder| holder.bound_at).into(),
        false.into(),
        refusal.map(str::to_owned).into(),
        refused_until.into(),
        now.into(),
    ]);
    let update = Statement::from_sql_and_values(on.backend(), CLAIM, values);
    if on.execute(update).await.map_err(classify)? == 1 {
        if let Some(not_before) = claim.deletion_due {
            let values = Values(vec![
                claim.certification_id.as_str().into(),
                not_before.into(),
                now.into(),
            ]);
            let enqueue = Statement::from_sql_and_values(on.backend(), ENQUEUE, values);
            on.execute(enqueue).await.map_err(classify)?;
        }
        return Ok(Claimed::First);
    }
    // Lost: to ourselves (a concurrent retry), to another certification, or to the clock.
    let find = session::Entity::find_by_id(claim.session.as_str()).build(on.backend());
    let Some(row) = on.find::<session::Model>(find).await? else {
        return Ok(Claimed::Expired);
    };
    match StoredSession::try_from(row)?.redemption {
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

/// [`claim_in`]'s claim: $1 session, $2 provider, $3 certification, $4 and $5 the holder
/// before, $6 bound, $7 and $8 the refusal, $9 now.
const CLAIM: &str = concat!(
    "WITH claiming (session, provider, provider_id, holder_account_id, holder_bound_at, bound, \
     refusal, refused_until, at) AS (VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)) ",
    claim_sessions!("claiming")
);

/// The deletion a V1 claim enqueues in its transaction: $1 imp_uid, $2 not_before, $3 now.
const ENQUEUE: &str = concat!(
    "WITH deleting (provider_id, not_before, at) AS (VALUES ($1, $2, $3)) ",
    enqueue_deletions!("deleting")
);

/// The answer of the binding Verify that redeemed the session, for its retries.
pub(super) async fn record_outcome<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    id: &SessionId,
    holder_before: Option<&Holder>,
    bound: bool,
) -> Result<(), StoreError> {
    let update = answered(session::Entity::update_many(), holder_before)
        .col_expr(session::Column::Bound, Expr::value(bound))
        .filter(session::Column::MerchantUid.eq(id.as_str()))
        .build(on.backend());
    on.execute(update).await.map_err(classify)?;
    Ok(())
}

/// The session's recorded answer: who held the person before its redemption.
fn answered(
    update: UpdateMany<session::Entity>,
    holder_before: Option<&Holder>,
) -> UpdateMany<session::Entity> {
    update
        .col_expr(
            session::Column::HolderAccountId,
            Expr::value(holder_before.map(|holder| holder.account_id.as_str().to_owned())),
        )
        .col_expr(
            session::Column::HolderBoundAt,
            Expr::value(holder_before.map(|holder| holder.bound_at)),
        )
}
