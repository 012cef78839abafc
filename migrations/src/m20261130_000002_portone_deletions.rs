//! The deletion outbox: V1 certifications to delete at PortOne once their session was redeemed
//! and PORTONE_DELETE_AFTER has passed.
//!
//! A row is due while `not_before` is set and has passed. A replica takes a due row by moving
//! `not_before` past its attempt (a lease): another replica does not see it again unless the
//! first one dies mid-attempt. A finished row keeps `finished_at` and `outcome` (and no
//! `not_before`), so a later Verify of that imp_uid can be told it was deleted, not "not found".

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PortoneDeletions::Table)
                    .if_not_exists()
                    .col(string_len(PortoneDeletions::ImpUid, 128).primary_key())
                    .col(timestamp_with_time_zone(PortoneDeletions::EnqueuedAt))
                    .col(timestamp_with_time_zone_null(PortoneDeletions::NotBefore))
                    .col(integer(PortoneDeletions::Attempts).default(0))
                    // A reason code of the last failed attempt ("unavailable", "timeout", …).
                    .col(string_len_null(PortoneDeletions::LastError, 32))
                    .col(timestamp_with_time_zone_null(PortoneDeletions::FinishedAt))
                    // "deleted" (200), "absent" (404) or "abandoned" (refused for good).
                    .col(string_len_null(PortoneDeletions::Outcome, 16))
                    .to_owned(),
            )
            .await?;
        // Replicas look for due rows by `not_before`; finished rows have none.
        manager
            .create_index(
                Index::create()
                    .name("ix_portone_deletions_not_before")
                    .table(PortoneDeletions::Table)
                    .col(PortoneDeletions::NotBefore)
                    .to_owned(),
            )
            .await?;
        // `purge` forgets finished rows by age.
        manager
            .create_index(
                Index::create()
                    .name("ix_portone_deletions_finished_at")
                    .table(PortoneDeletions::Table)
                    .col(PortoneDeletions::FinishedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PortoneDeletions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PortoneDeletions {
    Table,
    ImpUid,
    EnqueuedAt,
    NotBefore,
    Attempts,
    LastError,
    FinishedAt,
    Outcome,
}
