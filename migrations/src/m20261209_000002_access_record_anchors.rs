//! Where the retention purge left each chain of access records: the last record it removed
//! (its seq and MAC), so the first record kept still verifies against it. Each anchor carries
//! its own MAC under AUDIT_KEY: an anchor cannot be made up to hide records removed otherwise.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccessRecordAnchors::Table)
                    .if_not_exists()
                    .col(string_len(AccessRecordAnchors::Chain, 32))
                    .col(big_integer(AccessRecordAnchors::Seq))
                    .col(string_len(AccessRecordAnchors::Mac, 64))
                    .col(timestamp_with_time_zone(AccessRecordAnchors::PurgedBefore))
                    .col(string_len(AccessRecordAnchors::AnchorMac, 64))
                    .primary_key(
                        Index::create()
                            .col(AccessRecordAnchors::Chain)
                            .col(AccessRecordAnchors::Seq),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccessRecordAnchors::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AccessRecordAnchors {
    Table,
    Chain,
    Seq,
    Mac,
    PurgedBefore,
    AnchorMac,
}
