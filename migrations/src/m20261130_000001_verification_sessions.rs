//! Verification sessions: the `merchant_uid` the service issues for one verification, who began
//! it and for what, and (once redeemed) which certification redeemed it with what answer.
//!
//! The primary key is the merchant_uid itself: the unique index is what makes a session exist
//! once, and the conditional update of `redeemed_id` is what lets exactly one certification
//! redeem it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VerificationSessions::Table)
                    .if_not_exists()
                    .col(string_len(VerificationSessions::MerchantUid, 64).primary_key())
                    .col(string_len(VerificationSessions::Caller, 128))
                    .col(string_len(VerificationSessions::Purpose, 16))
                    // "portone_v1" or "portone_v2": the API the browser certifies with.
                    .col(string_len(VerificationSessions::Provider, 32))
                    .col(string_len_null(VerificationSessions::AccountId, 128))
                    .col(integer_null(VerificationSessions::MinAge))
                    // The expected person, sealed like CI (AES-256-GCM under CI_ENCRYPTION_KEYS).
                    .col(text_null(VerificationSessions::ExpectedSealed))
                    .col(string_len_null(VerificationSessions::SealingKeyId, 32))
                    .col(timestamp_with_time_zone(VerificationSessions::CreatedAt))
                    .col(timestamp_with_time_zone(VerificationSessions::ExpiresAt))
                    .col(string_len_null(VerificationSessions::RedeemedProvider, 32))
                    .col(string_len_null(VerificationSessions::RedeemedId, 128))
                    .col(timestamp_with_time_zone_null(VerificationSessions::RedeemedAt))
                    // Who held the person before the redemption and whether it bound: a retry
                    // answers as the first call did.
                    .col(string_len_null(VerificationSessions::HolderAccountId, 128))
                    .col(timestamp_with_time_zone_null(VerificationSessions::HolderBoundAt))
                    .col(boolean(VerificationSessions::Bound).default(false))
                    .to_owned(),
            )
            .await?;
        // `purge` walks sessions by expiry.
        manager
            .create_index(
                Index::create()
                    .name("ix_verification_sessions_expires_at")
                    .table(VerificationSessions::Table)
                    .col(VerificationSessions::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(VerificationSessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum VerificationSessions {
    Table,
    MerchantUid,
    Caller,
    Purpose,
    Provider,
    AccountId,
    MinAge,
    ExpectedSealed,
    SealingKeyId,
    CreatedAt,
    ExpiresAt,
    RedeemedProvider,
    RedeemedId,
    RedeemedAt,
    HolderAccountId,
    HolderBoundAt,
    Bound,
}
