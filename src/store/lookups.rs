//! Who holds a person, for many calls at once. The lookup by CI is the hottest read
//! (CheckDuplicate), and on its own each one is a statement, a connection from the pool and
//! sqlx's ping on releasing it: several times the work of the index probe it asks for. Lookups
//! that arrive while others run wait in a queue, and the next statement answers all of them
//! (`ci_hash = ANY($1)`), on a connection the lane keeps while lookups keep coming. One caller
//! alone still gets a statement of its own at once.
//!
//! A lookup reads committed rows in a statement that starts after the lookup was asked, so an
//! answer never predates a bind that completed before the question.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

use super::{
    StoreError,
    identities::holder,
    kept::{Connection, Kept},
    place,
    statement::sqlx_error,
};
use crate::domain::{Holder, PersonIndex};

/// Statements in flight at once for lookups. One: lookups arriving together then share a
/// statement, and its connection is kept busy. Measured with 16 callers (BENCHMARKS.md), two
/// lanes answered 3.3 lookups per statement instead of 4.7, and about 10% fewer per second.
const LANES: usize = 1;
/// The most lookups one statement answers.
const MOST_PER_STATEMENT: usize = 64;
/// The longest a lane keeps one connection, however busy it is.
const HOLD_AT_MOST: Duration = Duration::from_secs(1);
/// Lookups waiting for a lane; callers beyond it wait to enqueue (callers are already bounded
/// by MAX_IN_FLIGHT).
const QUEUE: usize = 1024;

type Answer = Result<Option<Holder>, StoreError>;

struct Pending {
    ci_hash: String,
    reply: oneshot::Sender<Answer>,
}

/// The queue of lookups. Its lanes end when the last [`super::Store`] clone is dropped.
#[derive(Clone)]
pub(super) struct HolderLookups {
    queue: mpsc::Sender<Pending>,
}

impl HolderLookups {
    /// Starts the lanes on the current runtime. A lane holds a place at the database (see
    /// `Store::place`) while it holds a connection, as a call's own statement would.
    pub(super) fn start(kept: &Kept, places: &Arc<Semaphore>, acquire_timeout: Duration) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..LANES {
            tokio::spawn(lane(
                Arc::clone(&waiting),
                kept.clone(),
                Arc::clone(places),
                acquire_timeout,
            ));
        }
        Self { queue }
    }

    pub(super) async fn holder(&self, ci_index: &PersonIndex) -> Answer {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            ci_hash: ci_index.0.clone(),
            reply,
        };
        // Either fails only when the lanes are gone: the runtime is shutting down.
        let gone = || StoreError::Unavailable("the store is shutting down".into());
        self.queue.send(pending).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Takes whatever lookups are waiting (at least one), answers them with one statement, and
/// repeats on the same connection while more are waiting, so a busy lane pays nothing
/// between statements.
async fn lane(
    waiting: Arc<Mutex<mpsc::Receiver<Pending>>>,
    kept: Kept,
    places: Arc<Semaphore>,
    acquire_timeout: Duration,
) {
    let mut batch = Vec::with_capacity(MOST_PER_STATEMENT);
    loop {
        // The lock is held only while this lane waits for work, so lookups go to an idle lane
        // while there is one and pile up for the next free lane while there is none.
        if waiting
            .lock()
            .await
            .recv_many(&mut batch, MOST_PER_STATEMENT)
            .await
            == 0
        {
            return;
        }
        let _place = match place(&places, acquire_timeout).await {
            Ok(place) => place,
            Err(error) => {
                answer(&mut batch, &Err(error));
                continue;
            }
        };
        let mut lent = match kept.take().await {
            Ok(lent) => lent,
            Err(error) => {
                answer(&mut batch, &Err(error));
                continue;
            }
        };
        let held_since = Instant::now();
        loop {
            // A caller that gave up (its deadline passed) needs no answer.
            batch.retain(|pending| !pending.reply.is_closed());
            if !batch.is_empty() {
                let answers = holders(&mut lent.connection, &batch).await;
                answer(&mut batch, &answers);
                if answers.is_err() {
                    // Dropped: back to the pool, whose ping on release closes it if broken.
                    break;
                }
            }
            // Given back now and then, so other statements get their turn at it.
            if held_since.elapsed() >= HOLD_AT_MOST {
                lent.keep();
                break;
            }
            // Lookups already waiting are this connection's; none, or another lane idle to
            // take them, and it goes back.
            let Ok(mut queue) = waiting.try_lock() else {
                lent.keep();
                break;
            };
            while batch.len() < MOST_PER_STATEMENT
                && let Ok(pending) = queue.try_recv()
            {
                batch.push(pending);
            }
            if batch.is_empty() {
                lent.keep();
                break;
            }
        }
    }
}

/// Every pending lookup answered, and the batch emptied.
fn answer(batch: &mut Vec<Pending>, answers: &Result<HashMap<String, Option<Holder>>, StoreError>) {
    for pending in batch.drain(..) {
        let answer = match answers {
            Ok(holders) => Ok(holders.get(&pending.ci_hash).cloned().flatten()),
            Err(error) => Err(error.clone()),
        };
        // The caller may have gone since: nothing to tell it.
        let _ = pending.reply.send(answer);
    }
}

/// The holder of each person found (absent: never seen), by CI hash, in one statement.
async fn holders(
    connection: &mut Connection,
    batch: &[Pending],
) -> Result<HashMap<String, Option<Holder>>, StoreError> {
    let keys: Vec<&str> = batch.iter().map(|pending| pending.ci_hash.as_str()).collect();
    // Only the columns the answer needs: not the sealed blobs.
    let rows: Vec<(String, Option<String>, Option<DateTime<Utc>>)> = match connection {
        Connection::Postgres(connection) => {
            sqlx::query_as("SELECT ci_hash, account_id, bound_at FROM persons WHERE ci_hash = ANY($1)")
                .bind(&keys)
                .fetch_all(&mut **connection)
                .await
        }
        Connection::Sqlite(connection) => {
            // One statement for any number of keys: the keys as one JSON array.
            let keys =
                serde_json::to_string(&keys).map_err(|error| StoreError::Failure(error.to_string()))?;
            sqlx::query_as(
                "SELECT ci_hash, account_id, bound_at FROM persons \
                 WHERE ci_hash IN (SELECT value FROM json_each(?1))",
            )
            .bind(keys)
            .fetch_all(&mut **connection)
            .await
        }
    }
    .map_err(sqlx_error)?;
    Ok(rows
        .into_iter()
        .map(|(ci_hash, account_id, bound_at)| (ci_hash, holder(account_id, bound_at)))
        .collect())
}
