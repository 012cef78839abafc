//! Verification sessions, keyed by the merchant_uid the service issued.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "verification_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merchant_uid: String,
    pub caller: String,
    pub purpose: String,
    pub provider: String,
    pub account_id: Option<String>,
    pub min_age: Option<i32>,
    pub expected_sealed: Option<String>,
    pub sealing_key_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub redeemed_provider: Option<String>,
    pub redeemed_id: Option<String>,
    pub redeemed_at: Option<DateTimeUtc>,
    pub holder_account_id: Option<String>,
    pub holder_bound_at: Option<DateTimeUtc>,
    pub bound: bool,
    pub refusal: Option<String>,
    pub refused_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
