//! The deletion outbox, keyed by the V1 imp_uid to delete at PortOne.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "portone_deletions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub imp_uid: String,
    pub enqueued_at: DateTimeUtc,
    pub not_before: Option<DateTimeUtc>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTimeUtc>,
    pub outcome: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
