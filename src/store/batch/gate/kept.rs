//! Connections the gate keeps between hot statements. sqlx pings every connection that goes
//! back to its pool, from a task it spawns: a round trip to the database, with its wake-ups on
//! both sides, for each statement, about as much as a Verify's own statement. A connection held
//! through the gate (the lanes' statements, and PostgreSQL's transaction of a signup) comes from
//! here and, once it answered, goes back here: under load it goes straight to the next
//! statement, as it would inside one long checkout from the pool.
//!
//! The pool's rules still apply, a little later: a connection goes back to the pool (and
//! through its ping) after an error, when its statement was cancelled halfway, once it has
//! been out for [`OUT_AT_MOST`] (the pool then applies its lifetime rules), when it sits idle
//! here for [`PING_IF_IDLE_FOR`], while a statement of the pool's own runs (see
//! [`Kept::cold`]), and when the store closes. A kept connection idle for that long is pinged
//! before use, as the pool would ping it.
//!
//! Kept connections stay checked out of the pool, so they count against its size: the database
//! never sees more connections than `DATABASE_MAX_CONNECTIONS`.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{DatabaseConnection, DbBackend};

use super::{Connection, PING_IF_IDLE_FOR};
use crate::store::StoreError;

/// The longest a connection stays out of the pool, however busy.
const OUT_AT_MOST: Duration = Duration::from_secs(1);

struct Idle {
    connection: Connection,
    out_since: Instant,
    idle_since: Instant,
}

#[derive(Default)]
struct Idles {
    list: Vec<Idle>,
    /// Set once the store closes: nothing is kept any more.
    closed: bool,
}

#[derive(Clone)]
pub(super) struct Kept(Arc<Inner>);

struct Inner {
    db: DatabaseConnection,
    /// Most recently used last: the next statement takes the warmest.
    idle: Mutex<Idles>,
    /// Statements of the pool's own running now: see [`Kept::cold`].
    cold: AtomicUsize,
}

impl Kept {
    pub(super) fn new(db: &DatabaseConnection) -> Self {
        Self(Arc::new(Inner {
            db: db.clone(),
            idle: Mutex::new(Idles::default()),
            cold: AtomicUsize::new(0),
        }))
    }

    /// A connection for one statement (or a run of them): a kept one, else one from the pool.
    /// Only the gate calls it, holding a place, so this never takes more connections than the
    /// pool has.
    pub(super) async fn take(&self) -> Result<Lent, StoreError> {
        while let Some(idle) = self.pop() {
            let mut connection = idle.connection;
            // Idle long enough to have sat through an outage: checked before a caller's
            // statement meets it. A dead one goes to the pool, which closes it.
            if idle.idle_since.elapsed() < PING_IF_IDLE_FOR || connection.ping().await {
                return Ok(self.lend(connection, idle.out_since));
            }
        }
        let connection = Connection::acquire(&self.0.db).await?;
        Ok(self.lend(connection, Instant::now()))
    }

    fn lend(&self, connection: Connection, out_since: Instant) -> Lent {
        Lent {
            kept: self.clone(),
            connection,
            out_since,
        }
    }

    fn pop(&self) -> Option<Idle> {
        self.idle().list.pop()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idles> {
        // The list stays consistent whatever panicked while holding it: pushes and pops only.
        self.0.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a statement of the pool's own (sea-orm's: transactions, the colder queries) until
    /// the guard drops. Meanwhile connections go back to the pool instead of being kept, and
    /// one kept idle is handed back at once if the pool has none idle, so such a statement
    /// never waits for connections held here.
    pub(super) fn cold(&self) -> Cold {
        self.0.cold.fetch_add(1, Ordering::SeqCst);
        let pool_idle = match self.0.db.get_database_backend() {
            DbBackend::Postgres => self.0.db.get_postgres_connection_pool().num_idle(),
            _ => self.0.db.get_sqlite_connection_pool().num_idle(),
        };
        if pool_idle == 0 {
            drop(self.pop());
        }
        Cold(self.clone())
    }

    /// Connections idle here for a while go back to the pool: run now and then (readiness),
    /// so a quiet service holds nothing out of the pool.
    pub(super) fn sweep(&self) {
        let stale: Vec<Idle> = {
            let mut idle = self.idle();
            let list = &mut idle.list;
            let fresh = list
                .iter()
                .position(|kept| kept.idle_since.elapsed() < PING_IF_IDLE_FOR)
                .unwrap_or(list.len());
            list.drain(..fresh).collect()
        };
        drop(stale);
    }

    /// Everything kept back to the pool: before the pool closes, which waits for them.
    pub(super) fn release_all(&self) {
        let all = {
            let mut idle = self.idle();
            idle.closed = true;
            std::mem::take(&mut idle.list)
        };
        drop(all);
    }

    /// Connections kept idle here, for the pool gauge.
    pub(super) fn idle_count(&self) -> usize {
        self.idle().list.len()
    }

    fn keep(&self, connection: Connection, out_since: Instant) {
        if self.0.cold.load(Ordering::SeqCst) > 0 || out_since.elapsed() >= OUT_AT_MOST {
            return;
        }
        let now = Instant::now();
        let stale = {
            let mut idle = self.idle();
            if idle.closed {
                return;
            }
            idle.list.push(Idle {
                connection,
                out_since,
                idle_since: now,
            });
            // The least recently used, if it has not been needed for a while, goes back: the
            // list shrinks as the load does.
            (idle.list[0].idle_since + PING_IF_IDLE_FOR <= now).then(|| idle.list.remove(0))
        };
        // Dropped outside the lock: back to the pool.
        drop(stale);
    }
}

/// See [`Kept::cold`].
pub(super) struct Cold(Kept);

impl Drop for Cold {
    fn drop(&mut self) {
        self.0.0.cold.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection out for a statement. [`Lent::keep`] after its statement answered; dropped
/// otherwise (an error, a cancelled call), it goes back to the pool, whose ping on release
/// closes it if it is broken or mid-statement.
pub(super) struct Lent {
    kept: Kept,
    pub(super) connection: Connection,
    out_since: Instant,
}

impl Lent {
    /// The statement answered: the connection is fit for the next one.
    pub(super) fn keep(self) {
        let Self {
            kept,
            connection,
            out_since,
        } = self;
        kept.keep(connection, out_since);
    }
}
