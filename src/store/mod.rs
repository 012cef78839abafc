//! Persistence: persons, certifications and their bindings, on PostgreSQL in production and
//! SQLite embedded. This room holds the connection, migrations and error classification;
//! `identities` and `sessions` the queries a call makes, `deletions` the outbox of deletions at
//! PortOne, `housekeeping` the queries of operator tasks, `writes` the statements of their
//! transactions, `rows` the shapes they share, `sql` each write of a certification's rows
//! (written once, run by the batch statements and the transactions alike). The fast paths, and the gate every statement
//! reaches its connection through, are in `batch`.
//!
//! Races are decided by the database: unique constraints and conditional updates inside one
//! transaction (or one statement), never a read followed by a write.
//!
//! Which path each operation takes (lane: calls waiting answered by one statement on a kept
//! connection; place: a statement through sea-orm's pool, holding a place; held: a transaction
//! on a kept connection, holding a place; background: the pool, without a place):
//!
//! | operation                      | PostgreSQL                                   | SQLite                     |
//! |--------------------------------|----------------------------------------------|----------------------------|
//! | `record`                       | lane `records`                               | place, transaction         |
//! | `record_and_bind`, fresh       | lane `binds` (several with records: a transaction) | place, transaction   |
//! | `record_and_bind`, otherwise   | held, transaction (record: the lane's statement) | place, transaction     |
//! | `holder_by_ci`                 | lane `lookups`                               | lane `lookups`; with a record, place, transaction |
//! | `session`                      | lane `sessions`                              | place, one statement       |
//! | `redeem_session`               | place, one statement; a transaction with its deletion | the same          |
//! | `begin_session`, `unlink`, `deleted_at_provider` | place, one statement       | the same                   |
//! | `holder_by_certification`      | place, two statements                        | the same                   |
//! | `record_access`                | the access-record writer: one task, one statement for the records waiting, on a held connection | the same, through a place |
//!
//! A call's access record rides the first four with the call's writes (`batch::access`: a chain
//! taken from the process's pool for each statement that writes records).
//! | `access_chains` (`audit verify`), `each_access_record` (`audit export`, pages by time), `access_tallies` (`audit report`) | background | the same |
//! | outbox, housekeeping, `ping`, `migrate` | background                          | the same                   |

mod access;
mod batch;
mod deletions;
mod entities;
mod housekeeping;
mod identities;
mod rows;
mod sessions;
mod sql;
mod writes;

use std::{path::Path, time::Duration};

use certification_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DbBackend, DbErr, RuntimeErr, TransactionTrait, sqlx,
};

use batch::{Lanes, access::AccessWriter, gate::Gate};
pub use deletions::{DeletionOutcome, DueDeletion};
pub(crate) use housekeeping::Rewrite;
pub use housekeeping::{Collision, Purged, SealedPerson};
pub use rows::{Claim, Claimed, RecordWritten, Recordable, Recorded, Redeemed, StoredSession};

/// The statement that records what a Verify alone saw, on PostgreSQL (`$1`-`$12`, see
/// `sql.rs`): the load benchmark runs it, paced as Verify is, for the floor under a
/// 1-caller Verify.
pub const RECORD_STATEMENT: &str = batch::records::RECORD_ONE;

use crate::{audit::AuditKey, secret::Secret};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database undid a statement for a concurrent one (a deadlock, a serialization failure,
    /// a lock wait past its time-out) after the store's own retries: retrying the call helps.
    #[error("database contention: {0}")]
    Contention(String),
    /// A query failed for another reason: a bug or a schema out of step.
    #[error("database failure: {0}")]
    Failure(String),
}

/// How often a transaction undone by contention is run in all, and the pause before each rerun
/// (a jittered fraction of it), so two transactions that deadlocked do not meet again in step.
const CONTENTION_PAUSES: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(40)];

/// Runs `attempt` again while the database undoes it for contention ([`StoreError::Contention`]):
/// each attempt is a whole transaction (or statement), so a rerun starts clean.
async fn retrying<T, F, Attempt>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Attempt,
    Attempt: Future<Output = Result<T, StoreError>>,
{
    for pause in CONTENTION_PAUSES {
        match attempt().await {
            Err(StoreError::Contention(_)) => {
                let jitter = rand::random_range(0.5..1.0);
                tokio::time::sleep(pause.mul_f64(jitter)).await;
            }
            done => return done,
        }
    }
    attempt().await
}

/// The advisory lock key migrations take on PostgreSQL: "certmigr" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x6365_7274_6d69_6772;

#[derive(Clone)]
pub struct Store {
    /// The only way to a connection.
    gate: Gate,
    /// The lanes the backend runs.
    lanes: Lanes,
    /// The access-record writer, where this store writes them.
    access: Option<AccessWriter>,
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
    /// NOT_SERVING until the database answers. This store writes no access records.
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
        Self::open(settings, None).await
    }

    /// As [`Store::connect`], writing access records chained under `key`, and logging the head
    /// of each chain every `head_every`.
    pub(crate) async fn recording(
        settings: &StoreSettings,
        key: AuditKey,
        head_every: Duration,
    ) -> Result<Self, StoreError> {
        Self::open(settings, Some((key, head_every))).await
    }

    async fn open(
        settings: &StoreSettings,
        recording: Option<(AuditKey, Duration)>,
    ) -> Result<Self, StoreError> {
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
        let gate = Gate::new(db, settings.max_connections, settings.acquire_timeout);
        let access = recording.map(|(key, head_every)| AccessWriter::start(&gate, key, head_every));
        // The lanes write the records of the calls they answer, on chains of their own.
        Ok(Self {
            lanes: Lanes::start(&gate, access.as_ref().map(AccessWriter::chains)),
            gate,
            access,
        })
    }

    /// OpenTelemetry's `db.system` name of the backend.
    fn system(&self) -> &'static str {
        match self.gate.backend() {
            DbBackend::Postgres => "postgresql",
            DbBackend::Sqlite => "sqlite",
            _ => "other_sql",
        }
    }

    /// (connections open, of which idle), for the pool gauge.
    pub(crate) fn pool_usage(&self) -> (u32, u32) {
        self.gate.pool_usage()
    }

    #[cfg(any(test, feature = "test-support"))]
    pub fn backend(&self) -> DbBackend {
        self.gate.backend()
    }

    /// Applies pending migrations. On PostgreSQL under a transaction-scoped advisory lock, so
    /// replicas starting together, a Helm hook and a manual `migrate` never race on DDL; the
    /// lock goes with the transaction, even if the process dies holding it. SQLite's write lock
    /// already serialises writers.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let db = self.gate.background();
        if db.get_database_backend() != DbBackend::Postgres {
            return Migrator::up(&*db, None).await.map_err(classify);
        }
        let txn = db.begin().await.map_err(classify)?;
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
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.gate.sweep();
        let db = self.gate.background();
        db.ping().await.map_err(classify)
    }

    pub async fn close(self) {
        if let Some(access) = self.access {
            access.finish().await;
        }
        self.gate.close().await;
    }

    /// Runs raw SQL: for tests and benchmarks that inspect the tables directly.
    #[cfg(any(test, feature = "test-support"))]
    pub fn connection(&self) -> &impl ConnectionTrait {
        self.gate.unguarded()
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
    let sqlx_error = match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return StoreError::Unavailable(error.to_string()),
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            inner.as_ref()
        }
        _ => return StoreError::Failure(error.to_string()),
    };
    let code = sqlx_error
        .as_database_error()
        .and_then(|database| database.code());
    match (sqlx_error, code.as_deref()) {
        (
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_),
            _,
        ) => StoreError::Unavailable(error.to_string()),
        (_, Some(code)) if contention(code) => StoreError::Contention(error.to_string()),
        (_, Some(code)) if server_going(code) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Failure(error.to_string()),
    }
}

/// SQLSTATEs of a statement undone for a concurrent one: serialization failure, deadlock, lock
/// not available (a lock wait past `lock_timeout`); and SQLite's busy and locked (its extended
/// codes too).
fn contention(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "5" | "6" | "261" | "262" | "517"
    )
}

/// SQLSTATEs of a server ending the connection (shutdown, crash, not yet accepting) and of the
/// connection exceptions (class 08): the database is away, not wrong.
fn server_going(code: &str) -> bool {
    matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
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
