//! CI and DI sealed at rest (AES-256-GCM, key id per row) next to their lookup hashes, and the
//! time a person was last unlinked from an account (re-signup cooldown).
//!
//! Rows written before this migration have no ciphertext; the service fills it in the next time
//! it sees that person. SQLite alters one column per statement, hence one call per column.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            text_null(Persons::CiSealed),
            text_null(Persons::DiSealed),
            string_len_null(Persons::SealingKeyId, 32),
            timestamp_with_time_zone_null(Persons::UnboundAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Persons::Table)
                        .add_column(column.to_owned())
                        .to_owned(),
                )
                .await?;
        }
        // `rekey` walks the rows sealed under older keys.
        manager
            .create_index(
                Index::create()
                    .name("ix_persons_sealing_key_id")
                    .table(Persons::Table)
                    .col(Persons::SealingKeyId)
                    .to_owned(),
            )
            .await?;
        // `purge` walks certifications by age.
        manager
            .create_index(
                Index::create()
                    .name("ix_certifications_last_seen_at")
                    .table(Certifications::Table)
                    .col(Certifications::LastSeenAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("ix_certifications_last_seen_at").to_owned())
            .await?;
        manager
            .drop_index(Index::drop().name("ix_persons_sealing_key_id").to_owned())
            .await?;
        for column in [
            Persons::UnboundAt,
            Persons::SealingKeyId,
            Persons::DiSealed,
            Persons::CiSealed,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Persons::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Persons {
    Table,
    CiSealed,
    DiSealed,
    SealingKeyId,
    UnboundAt,
}

#[derive(DeriveIden)]
enum Certifications {
    Table,
    LastSeenAt,
}
