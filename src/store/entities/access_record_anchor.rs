//! Where the retention purge left a chain of access records: see `certification_migrations`'
//! `access_record_anchors`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_record_anchors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub chain: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub mac: String,
    pub purged_before: DateTimeUtc,
    pub anchor_mac: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
