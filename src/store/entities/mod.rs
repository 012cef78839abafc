//! SeaORM entities for the tables `certification-migrations` creates.

pub mod access_record;
pub mod access_record_anchor;
pub mod certification;
pub mod deletion;
pub mod person;
pub mod session;
