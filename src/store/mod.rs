//! Persistence: persons, certifications and their bindings, on PostgreSQL in production and
//! SQLite embedded. This room holds the connection, migrations and error classification;
//! `identities` the queries a call makes, `housekeeping` those of the operator tasks.
//!
//! Races are decided by the database: unique constraints and conditional updates inside one
//! transaction, never a read followed by a write.

mod deletions;
mod entities;
mod fresh_bind;
mod fresh_binds;
mod housekeeping;
mod identities;
mod kept;
mod lanes;
mod lookups;
mod records;
mod sessions;
mod statement;
mod writes;

use std::{path::Path, sync::Arc, time::Duration};

use certification_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
    TransactionTrait, sqlx,
};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use deletions::{DeletionOutcome, DueDeletion};
pub use housekeeping::{Purged, SealedPerson};

use crate::secret::Secret;
pub use identities::{Recordable, Recorded, Redeemed, SeenCertification};
pub use sessions::{Claim, Claimed, NewSession, StoredSession};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed for another reason: a bug or a schema out of step.
    #[error("database failure: {0}")]
    Failure(String),
}

/// The advisory lock key migrations take on PostgreSQL: "certmigr" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x6365_7274_6d69_6772;

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// One place per pooled connection, for the statements of calls: see [`Store::place`].
    places: Arc<Semaphore>,
    acquire_timeout: Duration,
    /// Connections kept between hot statements: see [`kept`].
    kept: kept::Kept,
    /// Lookups by CI, answered together: see [`lookups`].
    lookups: lanes::Lanes<lookups::ByCi>,
    /// Verify's records on PostgreSQL, written together: see [`records`].
    records: lanes::Lanes<Recordable>,
    /// Reads of sessions on PostgreSQL, answered together: see [`lookups`].
    sessions: lanes::Lanes<lookups::BySession>,
    /// Signups' binds on PostgreSQL, written together: see [`fresh_binds`].
    fresh_binds: lanes::Lanes<fresh_binds::FreshBind>,
}

#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// May carry a password: a [`Secret`].
    pub database_url: Secret,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` and `lock_timeout` on every pooled connection: a call
    /// that was cancelled cannot leave its connection waiting on a lock.
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    /// Apply pending migrations before serving.
    pub migrate_on_start: bool,
    /// How often readiness re-checks the database.
    pub readiness_interval: Duration,
}

/// See [`Store::connect`]: under load no connection is idle this long, so none is pinged.
const PING_IF_IDLE_FOR: Duration = Duration::from_millis(250);

impl Store {
    /// Prepares the pool without touching the database, so the server can start and report
    /// NOT_SERVING until the database answers.
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
        let url = settings.database_url.expose();
        if let Some(path) = sqlite_file(url)
            && let Some(parent) = Path::new(path).parent().filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Failure(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let millis = |duration: Duration| duration.as_millis().to_string();
        let (statement_timeout, lock_timeout) =
            (millis(settings.statement_timeout), millis(settings.lock_timeout));
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(settings.max_connections)
            .min_connections(0)
            .connect_timeout(settings.acquire_timeout)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy(true)
            // sqlx pings a connection when it is released; pinging it again when it is taken
            // would add a round trip to every statement. Only a connection left idle long enough
            // to have sat through an outage is pinged before use, so it is found dead before a
            // caller's statement meets it.
            .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
            // Statements carry bound values, and bound values here are personal data.
            .sqlx_logging(false)
            .map_sqlx_postgres_opts(move |postgres| {
                postgres.options([
                    ("statement_timeout", statement_timeout.as_str()),
                    ("lock_timeout", lock_timeout.as_str()),
                ])
            })
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .create_if_missing(true)
                    .foreign_keys(true)
                    // WAL lets readers run beside the one writer; the busy timeout makes
                    // concurrent writers queue instead of failing with SQLITE_BUSY.
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
            });
        // The pool is lazy, so only the URL itself can fail here, and the driver's message may
        // quote it, password included: name the setting, never the value.
        let db = Database::connect(options).await.map_err(|_| {
            StoreError::Failure(
                "DATABASE_URL is not a usable database URL (scheme://user:password@host:port/database)"
                    .into(),
            )
        })?;
        let places = Arc::new(Semaphore::new(settings.max_connections.max(1) as usize));
        let kept = kept::Kept::new(&db);
        Ok(Self {
            lookups: lanes::Lanes::start(&kept, &places, settings.acquire_timeout),
            records: lanes::Lanes::start(&kept, &places, settings.acquire_timeout),
            sessions: lanes::Lanes::start(&kept, &places, settings.acquire_timeout),
            fresh_binds: lanes::Lanes::start(&kept, &places, settings.acquire_timeout),
            kept,
            db,
            places,
            acquire_timeout: settings.acquire_timeout,
        })
    }

    /// A place at the database for a call's statements, taken before they are built and held
    /// until they are answered. sea-orm builds a statement's future (about 12 KB, most of it the
    /// pool's wait for a connection) before it waits; with calls queued on the pool those
    /// futures were a third of the peak heap at 1,000 Verify calls in flight. Waiting here
    /// holds a few bytes instead, for no longer than the pool would have waited. A holder runs
    /// one statement or transaction at a time, so places never exceed connections.
    ///
    /// This place is for statements through sea-orm's pool; see [`kept::Kept::cold`].
    async fn place(&self) -> Result<(SemaphorePermit<'_>, kept::Cold), StoreError> {
        let place = place(&self.places, self.acquire_timeout).await?;
        Ok((place, self.kept.cold()))
    }

    /// The pool, for a statement of its own that takes no place (housekeeping, readiness):
    /// while the returned guard lives, kept connections make way for it ([`kept::Kept::cold`]).
    fn background(&self) -> Background<'_> {
        Background {
            db: &self.db,
            _cold: self.kept.cold(),
        }
    }

    fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// (connections open, of which idle), for the pool gauge.
    pub fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        // Kept connections wait for the next statement as the pool's idle ones do.
        let idle = idle.saturating_add(self.kept.idle_count());
        (size, u32::try_from(idle).unwrap_or(u32::MAX))
    }

    /// OpenTelemetry's `db.system` name of the backend.
    pub(super) fn system(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Postgres => "postgresql",
            DbBackend::Sqlite => "sqlite",
            _ => "other_sql",
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Applies pending migrations. On PostgreSQL under a transaction-scoped advisory lock, so
    /// replicas starting together, a Helm hook and a manual `migrate` never race on DDL; the
    /// lock goes with the transaction, even if the process dies holding it. SQLite's write lock
    /// already serialises writers.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Migrator::up(&self.db, None).await.map_err(classify);
        }
        let txn = self.db.begin().await.map_err(classify)?;
        // A migration may rightly run long (an index on a large table), and replicas wait
        // here for one another: the pool's call-sized time-outs do not apply to it.
        txn.execute_unprepared("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            .await
            .map_err(classify)?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
            .await
            .map_err(classify)?;
        Migrator::up(&txn, None).await.map_err(classify)?;
        txn.commit().await.map_err(classify)
    }

    /// Readiness: the database answers. Also hands back to the pool the connections kept
    /// idle for a while, so a quiet service holds none out of it.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.kept.sweep();
        let db = self.background();
        db.ping().await.map_err(classify)
    }

    pub async fn close(self) {
        // The pool waits for every connection out of it before it closes.
        self.kept.release_all();
        if let Err(error) = self.db.close().await {
            tracing::warn!(%error, "closing the database pool failed");
        }
    }

    /// Runs raw SQL: for tests and benchmarks that inspect the tables directly.
    #[cfg(any(test, feature = "test-support"))]
    pub fn connection(&self) -> &impl ConnectionTrait {
        &self.db
    }
}

/// See [`Store::background`].
struct Background<'a> {
    db: &'a DatabaseConnection,
    _cold: kept::Cold,
}

impl std::ops::Deref for Background<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.db
    }
}

/// See [`Store::place`]: waits no longer than the pool would for a connection.
async fn place(places: &Semaphore, acquire_timeout: Duration) -> Result<SemaphorePermit<'_>, StoreError> {
    if let Ok(place) = places.try_acquire() {
        return Ok(place);
    }
    match tokio::time::timeout(acquire_timeout, places.acquire()).await {
        Ok(Ok(place)) => Ok(place),
        _ => Err(StoreError::Unavailable(
            "no database connection came free in time".into(),
        )),
    }
}

/// The file behind a `sqlite:` URL, so its directory can be created on first start.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Sorts database errors into "try again later" and "something is wrong". Messages from the
/// driver name constraints and columns, never bound values.
fn classify(error: DbErr) -> StoreError {
    let unavailable = match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => matches!(
            inner.as_ref(),
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
        ),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Failure(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite://data/cs.db?mode=rwc"), Some("data/cs.db"));
        assert_eq!(sqlite_file("sqlite:cs.db"), Some("cs.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://root@localhost/test"), None);
    }
}
