//! The queries of operator tasks: re-sealing under a new key, and purging what is past
//! retention.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, sea_query::Expr,
};

use super::{
    Store, StoreError, classify,
    entities::{certification, person},
};
use crate::domain::{PersonIndex, Sealed};

/// A person's lookup hashes and sealed CI/DI: as stored, for `rekey` to read, and as `rekey`
/// writes them back.
#[derive(Debug)]
pub struct SealedPerson {
    pub id: i64,
    /// The row's CI lookup hash, bound into its ciphertexts.
    pub index: PersonIndex,
    pub di_index: Option<PersonIndex>,
    pub ci: Sealed,
    pub di: Option<Sealed>,
}

/// What became of a `rekey` write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rewrite {
    Written,
    /// Another writer changed the row's ciphertext between our read and our write.
    Raced,
    /// Another row already holds the CI lookup hash the row was to take: one person stored twice.
    Collides(Collision),
}

/// Two rows of one person: `person_id` could not take the lookup hash `other_person_id` holds.
/// Row ids and whether each holds an account: nothing that names the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collision {
    pub person_id: i64,
    pub holds_account: bool,
    pub other_person_id: i64,
    pub other_holds_account: bool,
}

/// What `purge` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub certifications: u64,
    pub persons: u64,
}

impl Store {
    /// Up to `limit` persons with sealed values, by id after `after_id`: the next batch for
    /// `rekey`. Every such row, whatever its key: only its opened CI tells whether its lookup
    /// hash is the canonical one.
    pub(crate) async fn sealed_persons(
        &self,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<SealedPerson>, StoreError> {
        let db = self.gate.background();
        let rows = person::Entity::find()
            .filter(person::Column::Id.gt(after_id))
            .filter(person::Column::SealingKeyId.is_not_null())
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
                    di_index: row.di_hash.map(PersonIndex),
                    ci,
                    di,
                })
            })
            .collect())
    }

    /// Replaces a person's lookup hashes and ciphertexts with `new`'s if its CI is still sealed
    /// as `old` read it: a row the service re-sealed meanwhile is left alone. The unique index on
    /// `ci_hash` decides whether another row is already the person `new` names.
    pub(crate) async fn rewrite_person(
        &self,
        old: &SealedPerson,
        new: &SealedPerson,
    ) -> Result<Rewrite, StoreError> {
        let db = self.gate.background();
        let updated = person::Entity::update_many()
            .col_expr(person::Column::CiHash, Expr::value(new.index.0.as_str()))
            .col_expr(
                person::Column::DiHash,
                Expr::value(new.di_index.as_ref().map(|index| index.0.clone())),
            )
            .col_expr(person::Column::CiSealed, Expr::value(new.ci.blob.as_str()))
            .col_expr(
                person::Column::DiSealed,
                Expr::value(new.di.as_ref().map(|di| di.blob.clone())),
            )
            .col_expr(person::Column::SealingKeyId, Expr::value(new.ci.key_id.as_str()))
            .filter(person::Column::Id.eq(old.id))
            .filter(person::Column::SealingKeyId.eq(old.ci.key_id.as_str()))
            .filter(person::Column::CiSealed.eq(old.ci.blob.as_str()))
            .exec(&*db)
            .await;
        match updated {
            Ok(updated) if updated.rows_affected == 1 => Ok(Rewrite::Written),
            Ok(_) => Ok(Rewrite::Raced),
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                self.collision(old.id, &new.index).await
            }
            Err(error) => Err(classify(error)),
        }
    }

    /// The row `id` and the row holding `index`, after `id` could not take `index`.
    async fn collision(&self, id: i64, index: &PersonIndex) -> Result<Rewrite, StoreError> {
        let db = self.gate.background();
        let rows = person::Entity::find()
            .filter(
                Condition::any()
                    .add(person::Column::Id.eq(id))
                    .add(person::Column::CiHash.eq(index.0.as_str())),
            )
            .all(&*db)
            .await
            .map_err(classify)?;
        let row = rows.iter().find(|row| row.id == id);
        let other = rows.iter().find(|row| row.id != id);
        Ok(match (row, other) {
            (Some(row), Some(other)) => Rewrite::Collides(Collision {
                person_id: row.id,
                holds_account: row.account_id.is_some(),
                other_person_id: other.id,
                other_holds_account: other.account_id.is_some(),
            }),
            // One of them was purged since: the next run sees how things stand.
            _ => Rewrite::Raced,
        })
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
