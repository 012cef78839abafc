//! One natural person, found by a keyed hash of their CI; never the CI itself.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "persons")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub ci_hash: String,
    pub di_hash: Option<String>,
    /// Unique: an account holds at most one person.
    #[sea_orm(unique)]
    pub account_id: Option<String>,
    pub bound_at: Option<DateTimeUtc>,
    /// AES-256-GCM of the CI and DI (base64 nonce ‖ ciphertext), under `sealing_key_id`. Null
    /// only for rows written before sealing existed, until the person is seen again.
    pub ci_sealed: Option<String>,
    pub di_sealed: Option<String>,
    pub sealing_key_id: Option<String>,
    /// When the person was last unlinked from an account: the re-signup cooldown counts from it.
    pub unbound_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
