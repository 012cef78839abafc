//! A lane: one connection answering many calls with one statement. A hot statement on its own
//! costs a round trip, a connection and wake-ups on both sides, several times the work of the
//! rows it touches. Calls that arrive while the lane's statement runs wait in its queue, and its
//! next statement answers all of them, on a connection it keeps while calls keep coming. One
//! caller alone still gets a statement of its own at once. One lane per kind of work: a second
//! one split the calls waiting without answering more of them (BENCHMARKS.md, "Lanes").
//!
//! Each call's statement starts after the call was asked, so an answer never predates a write
//! that completed before the question.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    access::Chains,
    gate::{Connection, Gate},
};
use crate::store::StoreError;

/// The longest the lane keeps one connection, however busy it is.
const HOLD_AT_MOST: Duration = Duration::from_secs(1);
/// Calls waiting for the lane; callers beyond it wait to enqueue (callers are already bounded
/// by MAX_IN_FLIGHT).
const QUEUE: usize = 1024;

/// What one kind of lane does with the calls it took.
pub(crate) trait Work: Send + Sized + 'static {
    type Answer: Clone + Send + 'static;
    /// The most calls one statement answers.
    const MOST_PER_STATEMENT: usize;

    /// An answer for each call of `batch`, in its order, the calls' access records written on
    /// `chains` with them. Any error sends the connection back to the pool, whose ping on
    /// release closes it if it is broken.
    fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
        chains: Option<&Arc<Chains>>,
    ) -> impl Future<Output = Vec<Result<Self::Answer, StoreError>>> + Send;
}

pub(crate) struct Pending<W: Work> {
    pub(crate) work: W,
    reply: oneshot::Sender<Result<W::Answer, StoreError>>,
}

/// The queue of one kind of work. Its lane ends when the last clone is dropped.
pub(crate) struct Lane<W: Work> {
    queue: mpsc::Sender<Pending<W>>,
}

impl<W: Work> Clone for Lane<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W: Work> Lane<W> {
    /// Starts the lane on the current runtime. It reaches its connection through the gate, so
    /// it holds a place at the database while it holds a connection, as a call's own statement
    /// would.
    pub(crate) fn start(gate: &Gate, chains: Option<&Arc<Chains>>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(lane(waiting, gate.clone(), chains.cloned()));
        Self { queue }
    }

    pub(crate) async fn ask(&self, work: W) -> Result<W::Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Either fails only when the lane is gone: the runtime is shutting down.
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
async fn lane<W: Work>(mut waiting: mpsc::Receiver<Pending<W>>, gate: Gate, chains: Option<Arc<Chains>>) {
    let mut batch = Vec::with_capacity(W::MOST_PER_STATEMENT);
    loop {
        if waiting.recv_many(&mut batch, W::MOST_PER_STATEMENT).await == 0 {
            return;
        }
        let mut held = match gate.hold().await {
            Ok(held) => held,
            Err(error) => {
                fail(&mut batch, &error);
                continue;
            }
        };
        let held_since = Instant::now();
        loop {
            // A caller that gave up (its deadline passed) needs no answer.
            batch.retain(|pending| !pending.reply.is_closed());
            if !batch.is_empty() && !answer(&mut batch, held.connection(), chains.as_ref()).await {
                // Dropped: back to the pool, whose ping on release closes it if broken.
                break;
            }
            // Given back now and then, so other statements get their turn at it.
            if held_since.elapsed() >= HOLD_AT_MOST {
                held.keep();
                break;
            }
            // Calls already waiting are this connection's; none, and it goes back.
            while batch.len() < W::MOST_PER_STATEMENT
                && let Ok(pending) = waiting.try_recv()
            {
                batch.push(pending);
            }
            if batch.is_empty() {
                held.keep();
                break;
            }
        }
    }
}

/// Serves the batch and tells each caller its answer, emptying the batch: `false` when the
/// connection is not fit for the next statement.
async fn answer<W: Work>(
    batch: &mut Vec<Pending<W>>,
    connection: &mut Connection,
    chains: Option<&Arc<Chains>>,
) -> bool {
    let answers = W::serve(connection, batch, chains).await;
    let sound = answers.len() == batch.len() && answers.iter().all(Result::is_ok);
    let mut answers = answers.into_iter();
    for pending in batch.drain(..) {
        let answer = answers
            .next()
            .unwrap_or_else(|| Err(StoreError::Failure("a lane left a call unanswered".into())));
        // The caller may have gone since: nothing to tell it.
        let _ = pending.reply.send(answer);
    }
    sound
}

/// Every call in the batch told `error`, and the batch emptied.
fn fail<W: Work>(batch: &mut Vec<Pending<W>>, error: &StoreError) {
    for pending in batch.drain(..) {
        let _ = pending.reply.send(Err(error.clone()));
    }
}
