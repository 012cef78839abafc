//! The schema of certification-service, one set of migrations for PostgreSQL and SQLite.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_persons_and_certifications;
mod m20261124_000001_sealed_identities_and_unlink;
mod m20261130_000001_verification_sessions;
mod m20261130_000002_portone_deletions;
mod m20261207_000001_session_refusals;
mod m20261208_000001_open_sessions_by_caller;
mod m20261209_000001_access_records;
mod m20261209_000002_access_record_anchors;

/// Every migration, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_persons_and_certifications::Migration),
            Box::new(m20261124_000001_sealed_identities_and_unlink::Migration),
            Box::new(m20261130_000001_verification_sessions::Migration),
            Box::new(m20261130_000002_portone_deletions::Migration),
            Box::new(m20261207_000001_session_refusals::Migration),
            Box::new(m20261208_000001_open_sessions_by_caller::Migration),
            Box::new(m20261209_000001_access_records::Migration),
            Box::new(m20261209_000002_access_record_anchors::Migration),
        ]
    }
}
