//! A signup session whose bind was refused keeps the refusal with its redemption, so a retry of
//! the same Verify answers it again instead of binding (the person's holder may have left since).
//! `refusal` is the conflict ("already_registered", "certification_reused",
//! "account_has_identity") or "cooldown", with `refused_until` the cooldown's end.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite adds no more in one ALTER.
        manager
            .alter_table(
                Table::alter()
                    .table(VerificationSessions::Table)
                    .add_column(string_len_null(VerificationSessions::Refusal, 32))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(VerificationSessions::Table)
                    .add_column(timestamp_with_time_zone_null(VerificationSessions::RefusedUntil))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [VerificationSessions::RefusedUntil, VerificationSessions::Refusal] {
            manager
                .alter_table(
                    Table::alter()
                        .table(VerificationSessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum VerificationSessions {
    Table,
    Refusal,
    RefusedUntil,
}
