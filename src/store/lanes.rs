//! Lanes: one connection answering many calls with one statement. A hot statement on its own
//! costs a round trip, a connection and wake-ups on both sides, several times the work of the
//! rows it touches. Calls that arrive while a lane's statement runs wait in a queue, and its
//! next statement answers all of them, on a connection the lane keeps while calls keep coming.
//! One caller alone still gets a statement of its own at once.
//!
//! Each call's statement starts after the call was asked, so an answer never predates a write
//! that completed before the question.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

use super::{
    StoreError,
    kept::{Connection, Kept},
    place,
};

/// The longest a lane keeps one connection, however busy it is.
const HOLD_AT_MOST: Duration = Duration::from_secs(1);
/// Calls waiting for a lane; callers beyond it wait to enqueue (callers are already bounded
/// by MAX_IN_FLIGHT).
const QUEUE: usize = 1024;

/// What one kind of lane does with the calls it took.
pub(super) trait Work: Send + Sized + 'static {
    type Answer: Clone + Send + 'static;
    /// Statements in flight at once for this work.
    const LANES: usize;
    /// The most calls one statement answers.
    const MOST_PER_STATEMENT: usize;

    /// An answer for each call of `batch`, in its order. Any error sends the connection back to
    /// the pool, whose ping on release closes it if it is broken.
    fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
    ) -> impl Future<Output = Vec<Result<Self::Answer, StoreError>>> + Send;
}

pub(super) struct Pending<W: Work> {
    pub(super) work: W,
    reply: oneshot::Sender<Result<W::Answer, StoreError>>,
}

/// The queue of one kind of work. Its lanes end when the last [`super::Store`] clone is dropped.
pub(super) struct Lanes<W: Work> {
    queue: mpsc::Sender<Pending<W>>,
}

impl<W: Work> Clone for Lanes<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W: Work> Lanes<W> {
    /// Starts the lanes on the current runtime. A lane holds a place at the database (see
    /// `Store::place`) while it holds a connection, as a call's own statement would.
    pub(super) fn start(kept: &Kept, places: &Arc<Semaphore>, acquire_timeout: Duration) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..W::LANES {
            tokio::spawn(lane(
                Arc::clone(&waiting),
                kept.clone(),
                Arc::clone(places),
                acquire_timeout,
            ));
        }
        Self { queue }
    }

    pub(super) async fn ask(&self, work: W) -> Result<W::Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Either fails only when the lanes are gone: the runtime is shutting down.
        let gone = || StoreError::Unavailable("the store is shutting down".into());
        self.queue
            .send(Pending { work, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Takes whatever calls are waiting (at least one), answers them with one statement, and
/// repeats on the same connection while more are waiting, so a busy lane pays nothing
/// between statements.
async fn lane<W: Work>(
    waiting: Arc<Mutex<mpsc::Receiver<Pending<W>>>>,
    kept: Kept,
    places: Arc<Semaphore>,
    acquire_timeout: Duration,
) {
    let mut batch = Vec::with_capacity(W::MOST_PER_STATEMENT);
    loop {
        // The lock is held only while this lane waits for work, so calls go to an idle lane
        // while there is one and pile up for the next free lane while there is none.
        if waiting
            .lock()
            .await
            .recv_many(&mut batch, W::MOST_PER_STATEMENT)
            .await
            == 0
        {
            return;
        }
        let _place = match place(&places, acquire_timeout).await {
            Ok(place) => place,
            Err(error) => {
                fail(&mut batch, &error);
                continue;
            }
        };
        let mut lent = match kept.take().await {
            Ok(lent) => lent,
            Err(error) => {
                fail(&mut batch, &error);
                continue;
            }
        };
        let held_since = Instant::now();
        loop {
            // A caller that gave up (its deadline passed) needs no answer.
            batch.retain(|pending| !pending.reply.is_closed());
            if !batch.is_empty() {
                let answers = W::serve(&mut lent.connection, &batch).await;
                let sound = answers.len() == batch.len() && answers.iter().all(Result::is_ok);
                let mut answers = answers.into_iter();
                for pending in batch.drain(..) {
                    let answer = answers
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Failure("a lane left a call unanswered".into())));
                    // The caller may have gone since: nothing to tell it.
                    let _ = pending.reply.send(answer);
                }
                if !sound {
                    // Dropped: back to the pool, whose ping on release closes it if broken.
                    break;
                }
            }
            // Given back now and then, so other statements get their turn at it.
            if held_since.elapsed() >= HOLD_AT_MOST {
                lent.keep();
                break;
            }
            // Calls already waiting are this connection's; none, or another lane idle to
            // take them, and it goes back.
            let Ok(mut queue) = waiting.try_lock() else {
                lent.keep();
                break;
            };
            while batch.len() < W::MOST_PER_STATEMENT
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

/// Every call in the batch told `error`, and the batch emptied.
fn fail<W: Work>(batch: &mut Vec<Pending<W>>, error: &StoreError) {
    for pending in batch.drain(..) {
        let _ = pending.reply.send(Err(error.clone()));
    }
}
