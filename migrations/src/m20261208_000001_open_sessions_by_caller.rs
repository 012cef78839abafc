//! OPEN_SESSIONS_PER_CALLER counts a caller's unredeemed, unexpired sessions at every
//! BeginVerification: an index by caller and expiry (with the redemption, so the count can be
//! answered from the index alone) keeps that a range scan of the caller's open sessions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_verification_sessions_caller_open";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(VerificationSessions::Table)
                    .col(VerificationSessions::Caller)
                    .col(VerificationSessions::ExpiresAt)
                    .col(VerificationSessions::RedeemedId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(VerificationSessions::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum VerificationSessions {
    Table,
    Caller,
    ExpiresAt,
    RedeemedId,
}
