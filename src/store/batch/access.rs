//! The access-record writer: one task per store, owning one chain (see `crate::audit::chain`).
//! Records waiting while a statement runs go into the next one, so a busy service writes many
//! records a statement, and the chain is only ever extended by this task: its order is the
//! order of the statements, and no other writer of this process or another replica waits on it.
//!
//! A statement that failed leaves the chain where it was. One whose outcome is unknown (the
//! connection was lost on the way) may have committed: the writer starts a new chain then, so
//! the old one ends where it did, whichever it was.

use std::time::Duration;

use sea_orm::{DbBackend, EntityTrait, QueryTrait, Statement};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::{gate::Gate, statement::On};
use crate::{
    audit::{
        AccessRecord, AuditKey,
        chain::{Chain, ChainedRecord, HEAD_LOGGED},
    },
    store::{StoreError, access::active_model, classify, entities::access_record},
    telemetry::{log_limit::LogLimit, metrics},
};

/// The most records one statement writes (14 columns each: well within both databases' limits
/// on bound parameters).
const MOST_PER_STATEMENT: usize = 128;
/// Records waiting for the writer; callers beyond it wait to enqueue.
const QUEUE: usize = 4096;

static NOT_WRITTEN: LogLimit = LogLimit::per(Duration::from_secs(1));

/// What a call asks the writer: to write its record, or whether records can be written now
/// (before a call reaches PortOne or writes, so a call whose record would fail does nothing).
// A probe is the rarer job and lives in the queue a moment: boxing records would cost every
// call an allocation to save queue slots.
#[allow(clippy::large_enum_variant)]
enum Job {
    Record(AccessRecord),
    Probe,
}

pub(crate) struct Pending {
    job: Job,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue of the writer. The writer ends (logging its chain's head) when the last clone is
/// dropped.
#[derive(Clone)]
pub(crate) struct AccessWriter {
    queue: mpsc::Sender<Pending>,
    /// Closed when the writer has ended: [`AccessWriter::finish`] waits for it.
    ended: watch::Receiver<()>,
}

impl AccessWriter {
    /// Starts the writer on the current runtime; it logs its chain's head every `head_every`
    /// while records are written, and when it ends.
    pub(crate) fn start(gate: &Gate, key: AuditKey, head_every: Duration) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let (end, ended) = watch::channel(());
        let gate = gate.clone();
        tokio::spawn(async move {
            writer(waiting, gate, key, head_every).await;
            drop(end);
        });
        Self { queue, ended }
    }

    /// Lets go of the writer; the last handle waits for it to end, its head logged, so a
    /// command that exits next does not cut the log short of its chain.
    pub(crate) async fn finish(self) {
        let Self { queue, mut ended } = self;
        let last = queue.strong_count() == 1;
        drop(queue);
        if last {
            // Err once the writer's task has dropped its end.
            while ended.changed().await.is_ok() {}
        }
    }

    /// Writes `record`: Ok once it is committed.
    pub(crate) async fn write(&self, record: AccessRecord) -> Result<(), StoreError> {
        self.ask(Job::Record(record)).await
    }

    /// Ok when a record could be written now: the next statement of the writer, begun after
    /// this was asked, wrote records or, alone, probed the table as an insert would.
    pub(crate) async fn probe(&self) -> Result<(), StoreError> {
        self.ask(Job::Probe).await
    }

    async fn ask(&self, job: Job) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable("the access-record writer is shutting down".into());
        self.queue
            .send(Pending { job, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn writer(mut waiting: mpsc::Receiver<Pending>, gate: Gate, key: AuditKey, head_every: Duration) {
    let mut chain = Chain::start();
    let mut logged = 0;
    let mut next_log = Instant::now() + head_every;
    let mut batch = Vec::with_capacity(MOST_PER_STATEMENT);
    loop {
        let received = tokio::select! {
            received = waiting.recv_many(&mut batch, MOST_PER_STATEMENT) => received,
            () = tokio::time::sleep_until(next_log) => {
                log_head(&chain, &mut logged);
                next_log = Instant::now() + head_every;
                continue;
            }
        };
        if received == 0 {
            log_head(&chain, &mut logged);
            return;
        }
        let records: Vec<AccessRecord> = batch
            .iter()
            .filter_map(|pending| match &pending.job {
                Job::Record(record) => Some(record.clone()),
                Job::Probe => None,
            })
            .collect();
        let written = if records.is_empty() {
            probe(&gate).await
        } else {
            let count = records.len();
            let extension = chain.extend(&key, records);
            let written = insert(&gate, &extension.records).await;
            match &written {
                Ok(()) => {
                    metrics::access_records_written(count);
                    chain.advance(extension);
                }
                Err(error) => {
                    metrics::access_records_failed(count);
                    if let Some(suppressed) = NOT_WRITTEN.admit() {
                        tracing::error!(
                            %error,
                            records = count,
                            suppressed,
                            "access records not written; their calls were refused"
                        );
                    }
                    if matches!(error, StoreError::Unavailable(_)) {
                        log_head(&chain, &mut logged);
                        chain = Chain::start();
                        logged = 0;
                    }
                }
            }
            written
        };
        for pending in batch.drain(..) {
            let _ = pending.reply.send(written.clone());
        }
    }
}

/// Logs the chain's head when it moved since last logged: a cut tail is found against it.
fn log_head(chain: &Chain, logged: &mut i64) {
    let Some(head) = chain.head() else {
        return;
    };
    if head.seq != *logged {
        metrics::access_chain_head(head.seq);
        tracing::info!(chain = %head.chain, seq = head.seq, mac = %head.mac, "{HEAD_LOGGED}");
        *logged = head.seq;
    }
}

/// An insert of no row: it needs what an insert needs (the INSERT grant, the table's lock
/// within the lock timeout, the table itself) and writes nothing; no SELECT grant either.
const PROBE: &str = "INSERT INTO access_records (chain) SELECT NULL WHERE 1 = 0";

async fn probe(gate: &Gate) -> Result<(), StoreError> {
    run(gate, Statement::from_string(gate.backend(), PROBE)).await
}

async fn insert(gate: &Gate, records: &[ChainedRecord]) -> Result<(), StoreError> {
    let statement =
        access_record::Entity::insert_many(records.iter().map(active_model)).build(gate.backend());
    run(gate, statement).await
}

async fn run(gate: &Gate, statement: Statement) -> Result<(), StoreError> {
    match gate.backend() {
        DbBackend::Postgres => {
            let mut held = gate.hold().await?;
            On::held(held.postgres()?)
                .execute(statement)
                .await
                .map_err(classify)?;
            held.keep();
        }
        _ => {
            let db = gate.place().await?;
            On::Sea(&*db).execute(statement).await.map_err(classify)?;
        }
    }
    Ok(())
}
