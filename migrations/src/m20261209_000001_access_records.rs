//! Access records (접속기록): one row per access to personal data, in chains. A row's `mac` is
//! an HMAC under AUDIT_KEY over its content and the previous row of its chain, so a changed,
//! inserted or removed row breaks its chain. Each writer extends a chain of its own, so
//! replicas never wait on one another's rows. The service only inserts here (and purges whole
//! days past AUDIT_RETENTION): its role needs no UPDATE.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccessRecords::Table)
                    .if_not_exists()
                    .col(string_len(AccessRecords::Chain, 32))
                    .col(big_integer(AccessRecords::Seq))
                    .col(timestamp_with_time_zone(AccessRecords::At))
                    .col(string_len(AccessRecords::Caller, 64))
                    .col(string_len_null(AccessRecords::Actor, 64))
                    .col(string_len_null(AccessRecords::Peer, 64))
                    .col(string_len(AccessRecords::Method, 32))
                    .col(string_len_null(AccessRecords::Purpose, 32))
                    .col(string_len(AccessRecords::Work, 16))
                    .col(string_len_null(AccessRecords::AccountId, 128))
                    .col(string_len_null(AccessRecords::Person, 64))
                    .col(string_len(AccessRecords::Outcome, 64))
                    .col(string_len_null(AccessRecords::TraceId, 32))
                    .col(string_len(AccessRecords::Mac, 64))
                    .primary_key(Index::create().col(AccessRecords::Chain).col(AccessRecords::Seq))
                    .to_owned(),
            )
            .await?;
        // Export, review and the retention purge select by time; a data subject's request by
        // person or account.
        for (name, column) in [
            ("ix_access_records_at", AccessRecords::At),
            ("ix_access_records_person", AccessRecords::Person),
            ("ix_access_records_account_id", AccessRecords::AccountId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AccessRecords::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccessRecords::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AccessRecords {
    Table,
    Chain,
    Seq,
    At,
    Caller,
    Actor,
    Peer,
    Method,
    Purpose,
    Work,
    AccountId,
    Person,
    Outcome,
    TraceId,
    Mac,
}
