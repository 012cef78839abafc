//! Access records, in chains: see `certification_migrations`' `access_records` and
//! `crate::audit::chain`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub chain: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub at: DateTimeUtc,
    pub caller: String,
    pub actor: Option<String>,
    pub peer: Option<String>,
    pub method: String,
    pub purpose: Option<String>,
    pub work: String,
    pub account_id: Option<String>,
    pub person: Option<String>,
    pub outcome: String,
    pub trace_id: Option<String>,
    pub mac: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
