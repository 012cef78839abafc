//! Persons (one per CI, keyed by a keyed hash) and every certification we have seen.
//!
//! Uniqueness lives here, not in application code: `persons.ci_hash` makes one person per CI,
//! `persons.account_id` makes an account hold one person, and `(provider, provider_id)` makes one
//! row per certification, so concurrent binds are decided by the database.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Persons::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Persons::Id))
                    // HMAC-SHA-256 of the CI, hex: the CI itself is never stored in the clear.
                    .col(string_len_uniq(Persons::CiHash, 64))
                    .col(string_len_null(Persons::DiHash, 64))
                    .col(string_len_null(Persons::AccountId, 128).unique_key())
                    .col(timestamp_with_time_zone_null(Persons::BoundAt))
                    .col(timestamp_with_time_zone(Persons::CreatedAt))
                    .col(timestamp_with_time_zone(Persons::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Certifications::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Certifications::Id))
                    // "portone_v1" today; V2 identity verifications add a provider, not a table.
                    .col(string_len(Certifications::Provider, 32))
                    .col(string_len(Certifications::ProviderId, 128))
                    .col(big_integer(Certifications::PersonId))
                    .col(timestamp_with_time_zone(Certifications::CertifiedAt))
                    .col(timestamp_with_time_zone(Certifications::FirstSeenAt))
                    .col(timestamp_with_time_zone(Certifications::LastSeenAt))
                    .col(string_len_null(Certifications::ConsumedBy, 128))
                    .col(timestamp_with_time_zone_null(Certifications::ConsumedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_certifications_person")
                            .from(Certifications::Table, Certifications::PersonId)
                            .to(Persons::Table, Persons::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_certifications_provider_id")
                    .table(Certifications::Table)
                    .col(Certifications::Provider)
                    .col(Certifications::ProviderId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_certifications_person")
                    .table(Certifications::Table)
                    .col(Certifications::PersonId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Certifications::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Persons::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Persons {
    Table,
    Id,
    CiHash,
    DiHash,
    AccountId,
    BoundAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Certifications {
    Table,
    Id,
    Provider,
    ProviderId,
    PersonId,
    CertifiedAt,
    FirstSeenAt,
    LastSeenAt,
    ConsumedBy,
    ConsumedAt,
}
