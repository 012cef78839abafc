//! The queries of operator tasks: re-sealing under a new key, and purging what is past
//! retention.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};

use super::{
    Store, StoreError, classify,
    entities::{certification, person},
};
use crate::domain::{PersonIndex, Sealed};

/// A person's sealed CI/DI as stored, for re-encryption under a new key.
#[derive(Debug)]
pub struct SealedPerson {
    pub id: i64,
    /// The row's CI lookup hash, bound into its ciphertexts.
    pub index: PersonIndex,
    pub ci: Sealed,
    pub di: Option<Sealed>,
}

/// What `purge` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub certifications: u64,
    pub persons: u64,
}

impl Store {
    /// Up to `limit` persons sealed under a key other than `primary_key_id`, or sealed before
    /// values were bound to their row, by id after `after_id`: the next batch for `rekey`.
    pub(crate) async fn sealed_for_rekey(
        &self,
        primary_key_id: &str,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<SealedPerson>, StoreError> {
        let db = self.gate.background();
        let rows = person::Entity::find()
            .filter(person::Column::Id.gt(after_id))
            .filter(person::Column::SealingKeyId.is_not_null())
            .filter(
                Condition::any()
                    .add(person::Column::SealingKeyId.ne(primary_key_id))
                    .add(person::Column::CiSealed.not_like("r1.%")),
            )
            .order_by_asc(person::Column::Id)
            .limit(limit)
            .all(&*db)
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let key_id = row.sealing_key_id?;
                let ci = Sealed {
                    key_id: key_id.clone(),
                    blob: row.ci_sealed?,
                };
                let di = row.di_sealed.map(|blob| Sealed { key_id, blob });
                Some(SealedPerson {
                    id: row.id,
                    index: PersonIndex(row.ci_hash),
                    ci,
                    di,
                })
            })
            .collect())
    }

    /// Replaces a person's ciphertexts if its CI is still `old_ci`: a row the service re-sealed
    /// meanwhile is left alone. True when this call changed the row.
    pub(crate) async fn reseal(
        &self,
        id: i64,
        old_ci: &Sealed,
        ci: &Sealed,
        di: Option<&Sealed>,
    ) -> Result<bool, StoreError> {
        let db = self.gate.background();
        let updated = person::Entity::update_many()
            .col_expr(person::Column::CiSealed, Expr::value(ci.blob.as_str()))
            .col_expr(
                person::Column::DiSealed,
                Expr::value(di.map(|di| di.blob.clone())),
            )
            .col_expr(person::Column::SealingKeyId, Expr::value(ci.key_id.as_str()))
            .filter(person::Column::Id.eq(id))
            .filter(person::Column::SealingKeyId.eq(old_ci.key_id.as_str()))
            .filter(person::Column::CiSealed.eq(old_ci.blob.as_str()))
            .exec(&*db)
            .await
            .map_err(classify)?;
        Ok(updated.rows_affected == 1)
    }

    /// Deletes certifications last seen before `before`, then persons that no account holds,
    /// that no certification refers to any more, untouched since `before`, and out of their
    /// re-signup cooldown (unlinked before `rejoin_from`).
    pub(crate) async fn purge(
        &self,
        before: DateTime<Utc>,
        rejoin_from: DateTime<Utc>,
    ) -> Result<Purged, StoreError> {
        let db = self.gate.background();
        let certifications = certification::Entity::delete_many()
            .filter(certification::Column::LastSeenAt.lt(before))
            .exec(&*db)
            .await
            .map_err(classify)?
            .rows_affected;
        let persons = person::Entity::delete_many()
            .filter(person::Column::AccountId.is_null())
            .filter(person::Column::UpdatedAt.lt(before))
            .filter(
                Condition::any()
                    .add(person::Column::UnboundAt.is_null())
                    .add(person::Column::UnboundAt.lt(rejoin_from)),
            )
            .filter(
                person::Column::Id.not_in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(certification::Column::PersonId)
                        .from(certification::Entity)
                        .to_owned(),
                ),
            )
            .exec(&*db)
            .await
            .map_err(classify)?
            .rows_affected;
        Ok(Purged {
            certifications,
            persons,
        })
    }
}
