//! The only way to a connection. A call's statements hold a place at the database, taken before
//! they are built and held until they are answered: sea-orm builds a statement's future (most of
//! it the pool's wait for a connection) before it waits, and with calls queued on the pool those
//! futures were a large share of the peak heap with many calls in flight (the benchmark log: "A
//! place at the database before a statement is built"). Waiting for a place holds a few bytes
//! instead, for no longer than the pool would have waited. A holder runs one statement or
//! transaction at a time, so places never exceed connections.
//!
//! The guards make that rule a type: [`Place`] (sea-orm's pool) and [`Held`] (a connection kept
//! between hot statements) each hold a place and are the only values that reach a connection;
//! [`Background`] reaches the pool without one, for operator tasks and readiness.

mod kept;

use std::{sync::Arc, time::Duration};

use sea_orm::{
    DatabaseConnection, DbBackend,
    sqlx::{Connection as _, PgConnection, Postgres, Sqlite, pool::PoolConnection},
};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::statement::sqlx_error;
use crate::store::{PING_IF_IDLE_FOR, StoreError};

/// The pool, its places and its kept connections. Cheap to clone: each lane holds one.
#[derive(Clone)]
pub(crate) struct Gate {
    db: DatabaseConnection,
    /// One place per pooled connection, for the statements of calls.
    places: Arc<Semaphore>,
    acquire_timeout: Duration,
    kept: kept::Kept,
}

impl Gate {
    pub(crate) fn new(db: DatabaseConnection, max_connections: u32, acquire_timeout: Duration) -> Self {
        Self {
            kept: kept::Kept::new(&db),
            places: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
            acquire_timeout,
            db,
        }
    }

    /// A place for a call's statements through sea-orm's pool. While it lives, kept
    /// connections make way for the pool's statement ([`kept::Kept::cold`]).
    pub(crate) async fn place(&self) -> Result<Place<'_>, StoreError> {
        let place = self.wait_for_place().await?;
        Ok(Place {
            _place: place,
            pool: self.background(),
        })
    }

    /// A place and a connection of its own: a kept one, else one from the pool.
    pub(crate) async fn hold(&self) -> Result<Held<'_>, StoreError> {
        let place = self.wait_for_place().await?;
        let lent = self.kept.take().await?;
        Ok(Held { _place: place, lent })
    }

    /// The pool, for a statement of its own that takes no place (housekeeping, readiness,
    /// migrations): while the guard lives, kept connections make way for it.
    pub(crate) fn background(&self) -> Background<'_> {
        Background {
            db: &self.db,
            _cold: self.kept.cold(),
        }
    }

    pub(crate) fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// (connections open, of which idle), for the pool gauge.
    pub(crate) fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = match self.backend() {
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

    /// Connections kept idle for a while go back to the pool, so a quiet service holds none
    /// out of it.
    pub(crate) fn sweep(&self) {
        self.kept.sweep();
    }

    pub(crate) async fn close(self) {
        // The pool waits for every connection out of it before it closes.
        self.kept.release_all();
        if let Err(error) = self.db.close().await {
            tracing::warn!(%error, "closing the database pool failed");
        }
    }

    /// The pool itself: for tests and benchmarks that inspect the tables directly.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn unguarded(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Waits no longer than the pool would for a connection.
    async fn wait_for_place(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        if let Ok(place) = self.places.try_acquire() {
            return Ok(place);
        }
        match tokio::time::timeout(self.acquire_timeout, self.places.acquire()).await {
            Ok(Ok(place)) => Ok(place),
            _ => Err(StoreError::Unavailable(
                "no database connection came free in time".into(),
            )),
        }
    }
}

/// A place at the database and sea-orm's pool behind it: see [`Gate::place`].
pub(crate) struct Place<'a> {
    _place: SemaphorePermit<'a>,
    pool: Background<'a>,
}

impl std::ops::Deref for Place<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.pool
    }
}

/// The pool without a place: see [`Gate::background`].
pub(crate) struct Background<'a> {
    db: &'a DatabaseConnection,
    _cold: kept::Cold,
}

impl std::ops::Deref for Background<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.db
    }
}

/// A place and a connection held for it: see [`Gate::hold`]. [`Held::keep`] once its
/// statements answered; dropped otherwise (an error, a cancelled call), the connection goes
/// back to the pool, whose ping on release closes it if it is broken or mid-statement.
pub(crate) struct Held<'a> {
    _place: SemaphorePermit<'a>,
    lent: kept::Lent,
}

impl Held<'_> {
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.lent.connection
    }

    /// The PostgreSQL connection a PostgreSQL statement needs.
    pub(crate) fn postgres(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.connection().postgres()
    }

    /// Its statements answered: the connection is fit for the next one, and the place is free.
    pub(crate) fn keep(self) {
        self.lent.keep();
    }
}

/// A pooled connection, of either backend.
pub(crate) enum Connection {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Connection {
    async fn acquire(db: &DatabaseConnection) -> Result<Self, StoreError> {
        Ok(match db.get_database_backend() {
            DbBackend::Postgres => Self::Postgres(
                db.get_postgres_connection_pool()
                    .acquire()
                    .await
                    .map_err(sqlx_error)?,
            ),
            _ => Self::Sqlite(
                db.get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(sqlx_error)?,
            ),
        })
    }

    /// The PostgreSQL connection a PostgreSQL statement needs.
    pub(crate) fn postgres(&mut self) -> Result<&mut PgConnection, StoreError> {
        match self {
            Self::Postgres(connection) => Ok(connection),
            Self::Sqlite(_) => Err(StoreError::Failure(
                "a PostgreSQL statement on a SQLite connection".into(),
            )),
        }
    }

    async fn ping(&mut self) -> bool {
        match self {
            Self::Postgres(connection) => connection.ping().await.is_ok(),
            Self::Sqlite(connection) => connection.ping().await.is_ok(),
        }
    }
}
