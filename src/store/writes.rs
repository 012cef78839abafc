//! The statements a record and a bind run inside the caller's transaction: recording a
//! certification and its person (one statement on PostgreSQL), and binding the person.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryTrait, SqlErr,
    Statement,
    sea_query::{Expr, Func, OnConflict},
};

use super::{
    StoreError, classify,
    entities::{certification, person},
    identities::{Recorded, SeenCertification, holder, holder_of},
    statement::On,
};
use crate::domain::{AccountId, BindConflict, BindOutcome, Provider};

/// [`Store::record`] on SQLite, inside the caller's transaction.
pub(super) async fn record_sqlite(
    txn: &impl ConnectionTrait,
    seen: &SeenCertification<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    // A write first: on SQLite that takes the write lock up front, so two such
    // transactions queue on the busy timeout instead of deadlocking on a lock upgrade.
    debug_assert!(seen.di_sealed.is_none_or(|di| di.key_id == seen.ci_sealed.key_id));
    let inserted = person::Entity::insert(person::ActiveModel {
        ci_hash: Set(seen.ci_index.0.clone()),
        di_hash: Set(seen.di_index.map(|index| index.0.clone())),
        account_id: Set(None),
        bound_at: Set(None),
        ci_sealed: Set(Some(seen.ci_sealed.blob.clone())),
        di_sealed: Set(seen.di_sealed.map(|di| di.blob.clone())),
        sealing_key_id: Set(Some(seen.ci_sealed.key_id.clone())),
        unbound_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(OnConflict::column(person::Column::CiHash).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await;
    match inserted {
        Ok(_) | Err(DbErr::RecordNotInserted) => {}
        Err(error) => return Err(classify(error)),
    }
    let person = person::Entity::find()
        .filter(person::Column::CiHash.eq(seen.ci_index.0.as_str()))
        .one(txn)
        .await
        .map_err(classify)?
        .ok_or_else(|| StoreError::Failure("person vanished inside its transaction".into()))?;
    if person.ci_sealed.is_none() {
        seal_legacy_person(&mut On::Sea(txn), person.id, seen).await?;
    }
    let upserted = certification::Entity::insert(certification::ActiveModel {
        provider: Set(seen.provider.as_str().to_owned()),
        provider_id: Set(seen.id.to_owned()),
        person_id: Set(person.id),
        certified_at: Set(seen.certified_at),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
        consumed_by: Set(None),
        consumed_at: Set(None),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([certification::Column::Provider, certification::Column::ProviderId])
            .update_column(certification::Column::LastSeenAt)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await;
    match upserted {
        Ok(_) | Err(DbErr::RecordNotInserted) => {}
        Err(error) => return Err(classify(error)),
    }
    Ok(Recorded {
        person_id: person.id,
        holder: holder_of(&person),
    })
}

/// A seen certification as the PostgreSQL statements bind it: $1 ci_hash, $2 di_hash,
/// $3 ci_sealed, $4 di_sealed, $5 sealing_key_id, $6 now, $7 provider, $8 provider_id,
/// $9 certified_at. Shared by `record_postgres` and the one-statement signup.
pub(super) fn seen_values(seen: &SeenCertification<'_>, now: DateTime<Utc>) -> Vec<sea_orm::Value> {
    debug_assert!(seen.di_sealed.is_none_or(|di| di.key_id == seen.ci_sealed.key_id));
    vec![
        seen.ci_index.0.clone().into(),
        seen.di_index.map(|index| index.0.clone()).into(),
        seen.ci_sealed.blob.clone().into(),
        seen.di_sealed.map(|di| di.blob.clone()).into(),
        seen.ci_sealed.key_id.clone().into(),
        now.into(),
        seen.provider.as_str().to_owned().into(),
        seen.id.to_owned().into(),
        seen.certified_at.into(),
    ]
}

/// [`Store::record`] on PostgreSQL: one statement, so one round trip instead of five; under
/// load that is most of the database's share of a Verify. Same effect as the SQLite path: the
/// person inserted unless present, the certification upserted, and the person's holder returned.
pub(super) async fn record_postgres<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    seen: &SeenCertification<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let values = seen_values(seen, now);
    // The statement's snapshot predates a person inserted concurrently by another call,
    // which our insert then skips: no row comes back, and the next try sees that person.
    for _ in 0..3 {
        let row = on
            .query_one(Statement::from_sql_and_values(
                DbBackend::Postgres,
                RECORD_POSTGRES,
                values.clone(),
            ))
            .await
            .map_err(classify)?;
        let Some(row) = row else { continue };
        let person_id: i64 = row.try_get("", "id").map_err(classify)?;
        let account_id: Option<String> = row.try_get("", "account_id").map_err(classify)?;
        let bound_at: Option<DateTime<Utc>> = row.try_get("", "bound_at").map_err(classify)?;
        let unsealed: bool = row.try_get("", "unsealed").map_err(classify)?;
        if unsealed {
            seal_legacy_person(on, person_id, seen).await?;
        }
        return Ok(Recorded {
            person_id,
            holder: holder(account_id, bound_at),
        });
    }
    Err(StoreError::Unavailable(
        "the person's row stayed out of sight for three tries".into(),
    ))
}

/// Binds the person to `account` and marks the certification consumed by it, inside the
/// caller's transaction, decided by conditional updates and the unique index on `account_id`.
/// The caller commits only [`BindOutcome::Bound`].
pub(super) async fn bind_in(
    txn: &impl ConnectionTrait,
    provider: Provider,
    certification_id: &str,
    person_id: i64,
    account: &AccountId,
    rejoin_cooldown: Duration,
    now: DateTime<Utc>,
) -> Result<BindOutcome, StoreError> {
    let cooldown = chrono::Duration::from_std(rejoin_cooldown).unwrap_or(chrono::Duration::MAX);
    let rejoin_from = now
        .checked_sub_signed(cooldown)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);

    // Consume the certification unless another account already did.
    let consumed = certification::Entity::update_many()
        .col_expr(certification::Column::ConsumedBy, Expr::value(account.as_str()))
        .col_expr(
            certification::Column::ConsumedAt,
            Func::coalesce([Expr::col(certification::Column::ConsumedAt), Expr::value(now)]).into(),
        )
        .filter(certification::Column::Provider.eq(provider.as_str()))
        .filter(certification::Column::ProviderId.eq(certification_id))
        .filter(
            Condition::any()
                .add(certification::Column::ConsumedBy.is_null())
                .add(certification::Column::ConsumedBy.eq(account.as_str())),
        )
        .exec(txn)
        .await
        .map_err(classify)?;
    if consumed.rows_affected == 0 {
        return Ok(BindOutcome::Conflict(BindConflict::CertificationReused));
    }

    // Take the person if nobody holds them. The unique index on account_id refuses an
    // account that already holds someone else, even against a concurrent bind.
    let claimed = person::Entity::update_many()
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
        .exec(txn)
        .await;
    let claimed = match claimed {
        Ok(result) => result,
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Ok(BindOutcome::Conflict(BindConflict::AccountHasIdentity));
        }
        Err(error) => return Err(classify(error)),
    };
    if claimed.rows_affected == 1 {
        return Ok(BindOutcome::Bound { bound_at: now });
    }

    // Somebody holds the person: this same account (a retry) or another one.
    let person = person::Entity::find_by_id(person_id)
        .one(txn)
        .await
        .map_err(classify)?
        .ok_or_else(|| StoreError::Failure("person vanished inside its transaction".into()))?;
    Ok(match holder_of(&person) {
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

/// A person written before sealing existed gets sealed values once we hold them again.
pub(super) async fn seal_legacy_person<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    person_id: i64,
    seen: &SeenCertification<'_>,
) -> Result<(), StoreError> {
    let update = person::Entity::update_many()
        .col_expr(
            person::Column::CiSealed,
            Expr::value(seen.ci_sealed.blob.as_str()),
        )
        .col_expr(
            person::Column::DiSealed,
            Expr::value(seen.di_sealed.map(|di| di.blob.clone())),
        )
        .col_expr(
            person::Column::SealingKeyId,
            Expr::value(seen.ci_sealed.key_id.as_str()),
        )
        .filter(person::Column::Id.eq(person_id))
        .filter(person::Column::CiSealed.is_null())
        .build(on.backend());
    on.execute(update).await.map_err(classify)?;
    Ok(())
}

/// [`Store::record`] in one PostgreSQL statement. $1 ci_hash, $2 di_hash, $3 ci_sealed,
/// $4 di_sealed, $5 sealing_key_id, $6 now, $7 provider, $8 provider_id, $9 certified_at.
const RECORD_POSTGRES: &str = "\
WITH inserted AS (
    INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT (ci_hash) DO NOTHING
    RETURNING id, account_id, bound_at, ci_sealed IS NULL AS unsealed
), person AS (
    SELECT id, account_id, bound_at, unsealed FROM inserted
    UNION ALL
    SELECT id, account_id, bound_at, ci_sealed IS NULL FROM persons
    WHERE ci_hash = $1 AND NOT EXISTS (SELECT 1 FROM inserted)
), certification AS (
    INSERT INTO certifications (provider, provider_id, person_id, certified_at, first_seen_at, last_seen_at)
    SELECT $7, $8, id, $9, $6, $6 FROM person
    ON CONFLICT (provider, provider_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
)
SELECT id, account_id, bound_at, unsealed FROM person";
