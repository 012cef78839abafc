//! The access-record chains of this process and their writer. A chain is extended by one
//! writer at a time: [`Chains::log`] takes one (a new one, named at random, when every chain is
//! in use) for a statement or transaction, and the [`Logged`] records it sealed give it back
//! when their statement's fate is known. So the lanes and transactions that write a call's
//! record with the call's own writes, and the writer task below, never wait on one another's
//! chain, and no replica waits on another's.
//!
//! The writer task writes the records no statement of the call carried (refusals, outages,
//! operator commands), many a statement, and answers the probe before a call reaches PortOne.
//!
//! A statement that failed leaves its chain where it was. One whose outcome is unknown (the
//! connection was lost on the way, or its caller let go of it) may have committed: its chain
//! is given up then, ending where it did, whichever that was.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, QueryTrait, Statement};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::{gate::Gate, statement::On};
use crate::{
    audit::{
        AccessRecord, AuditKey,
        chain::{Chain, ChainedRecord, Extension, HEAD_LOGGED},
    },
    store::{RecordWritten, StoreError, classify, entities::access_record},
    telemetry::{log_limit::LogLimit, metrics},
};

/// The chains of this process: those not in use, and the key that seals their records.
pub(crate) struct Chains {
    key: AuditKey,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    chains: Vec<Kept>,
    /// The process is ending: a chain given back logs its head at once.
    ended: bool,
}

/// A chain, and the number of its record last logged.
struct Kept {
    chain: Chain,
    logged: i64,
}

/// Records sealed on a chain taken for them, not yet known to be written. Settle them with
/// their statement's result; dropped unsettled, their statement's fate is unknown and the
/// chain is given up.
pub(crate) struct Logged {
    chains: Arc<Chains>,
    /// Taken back when settled.
    sealed: Option<(Kept, Extension)>,
}

impl Chains {
    pub(crate) fn new(key: AuditKey) -> Arc<Self> {
        Arc::new(Self {
            key,
            idle: Mutex::new(Idle::default()),
        })
    }

    /// `records` sealed on a chain of their own until settled; `None` without records.
    pub(crate) fn log(self: &Arc<Self>, records: Vec<AccessRecord>) -> Option<Logged> {
        if records.is_empty() {
            return None;
        }
        let kept = self.idle().chains.pop().unwrap_or_else(|| Kept {
            chain: Chain::start(),
            logged: 0,
        });
        let extension = kept.chain.extend(&self.key, records);
        Some(Logged {
            chains: Arc::clone(self),
            sealed: Some((kept, extension)),
        })
    }

    /// Logs the head of each chain not in use that moved since it was last logged.
    pub(crate) fn log_heads(&self) {
        for kept in &mut self.idle().chains {
            kept.log_head();
        }
    }

    /// The process is ending: every head logged now, and any chain given back later at once.
    pub(crate) fn end(&self) {
        let mut idle = self.idle();
        idle.ended = true;
        for kept in &mut idle.chains {
            kept.log_head();
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, mut kept: Kept) {
        let mut idle = self.idle();
        if idle.ended {
            kept.log_head();
        }
        idle.chains.push(kept);
    }
}

impl Kept {
    /// Logs the chain's head when it moved since last logged: a cut tail is found against it.
    fn log_head(&mut self) {
        let Some(head) = self.chain.head() else {
            return;
        };
        if head.seq != self.logged {
            metrics::access_chain_head(head.seq);
            tracing::info!(chain = %head.chain, seq = head.seq, mac = %head.mac, "{HEAD_LOGGED}");
            self.logged = head.seq;
        }
    }
}

impl Logged {
    /// The rows to insert.
    pub(crate) fn records(&self) -> &[ChainedRecord] {
        self.sealed
            .as_ref()
            .map_or(&[], |(_, extension)| &extension.records)
    }

    /// Their statement committed them: the chain moves past them.
    pub(crate) fn written(mut self) {
        if let Some((mut kept, extension)) = self.sealed.take() {
            metrics::access_records_written(extension.records.len());
            kept.chain.advance(extension);
            self.chains.give_back(kept);
        }
    }

    /// Their statement was undone, or never ran: the chain stays where it was.
    pub(crate) fn unwritten(mut self) {
        if let Some((kept, _)) = self.sealed.take() {
            self.chains.give_back(kept);
        }
    }

    /// Settled by their statement's result: written when Ok; given up when its outcome is
    /// unknown (the database went away during it); unwritten otherwise.
    pub(crate) fn settle<T>(self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.written(),
            Err(StoreError::Unavailable(_)) => drop(self),
            Err(_) => self.unwritten(),
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // Unsettled: the statement may have committed. The chain ends here; its head as far
        // as known is logged, so a later check starts from it.
        if let Some((mut kept, _)) = self.sealed.take() {
            kept.log_head();
        }
    }
}

/// The most records one statement of the writer writes (14 columns each: well within both
/// databases' limits on bound parameters).
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

/// The queue of the writer, and the chains of this process. The writer ends (the heads of
/// every chain logged) when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct AccessWriter {
    queue: mpsc::Sender<Pending>,
    chains: Arc<Chains>,
    /// Closed when the writer has ended: [`AccessWriter::finish`] waits for it.
    ended: watch::Receiver<()>,
}

impl AccessWriter {
    /// Starts the writer on the current runtime; it logs the heads of the chains every
    /// `head_every`, and when it ends.
    pub(crate) fn start(gate: &Gate, key: AuditKey, head_every: Duration) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let (end, ended) = watch::channel(());
        let chains = Chains::new(key);
        let gate = gate.clone();
        let writing = Arc::clone(&chains);
        tokio::spawn(async move {
            writer(waiting, gate, &writing, head_every).await;
            writing.end();
            drop(end);
        });
        Self { queue, chains, ended }
    }

    /// The chains, for the statements that write a call's record with its own writes.
    pub(crate) fn chains(&self) -> &Arc<Chains> {
        &self.chains
    }

    /// Lets go of the writer; the last handle waits for it to end, the heads logged, so a
    /// command that exits next does not cut the log short of its chains.
    pub(crate) async fn finish(self) {
        let Self { queue, mut ended, .. } = self;
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

async fn writer(
    mut waiting: mpsc::Receiver<Pending>,
    gate: Gate,
    chains: &Arc<Chains>,
    head_every: Duration,
) {
    let mut next_log = Instant::now() + head_every;
    let mut batch = Vec::with_capacity(MOST_PER_STATEMENT);
    loop {
        let received = tokio::select! {
            received = waiting.recv_many(&mut batch, MOST_PER_STATEMENT) => received,
            () = tokio::time::sleep_until(next_log) => {
                chains.log_heads();
                next_log = Instant::now() + head_every;
                continue;
            }
        };
        if received == 0 {
            return;
        }
        let records: Vec<AccessRecord> = batch
            .iter()
            .filter_map(|pending| match &pending.job {
                Job::Record(record) => Some(record.clone()),
                Job::Probe => None,
            })
            .collect();
        let written = match chains.log(records) {
            None => probe(&gate).await,
            Some(logged) => {
                let count = logged.records().len();
                let written = insert(&gate, logged.records()).await;
                logged.settle(&written);
                if let Err(error) = &written {
                    metrics::access_records_failed(count);
                    if let Some(suppressed) = NOT_WRITTEN.admit() {
                        tracing::error!(
                            %error,
                            records = count,
                            suppressed,
                            "access records not written; their calls were refused"
                        );
                    }
                }
                written
            }
        };
        for pending in batch.drain(..) {
            let _ = pending.reply.send(written.clone());
        }
    }
}

/// An insert of no row: it needs what an insert needs (the INSERT grant, the table's lock
/// within the lock timeout, the table itself) and writes nothing; no SELECT grant either.
const PROBE: &str = "INSERT INTO access_records (chain) SELECT NULL WHERE 1 = 0";

async fn probe(gate: &Gate) -> Result<(), StoreError> {
    run(gate, Statement::from_string(gate.backend(), PROBE)).await
}

/// The insert of `records`, on either backend: run in a call's transaction (through [`On`]) or
/// by the writer.
pub(crate) fn insert_statement(backend: DbBackend, records: &[ChainedRecord]) -> Statement {
    access_record::Entity::insert_many(records.iter().map(active_model)).build(backend)
}

async fn insert(gate: &Gate, records: &[ChainedRecord]) -> Result<(), StoreError> {
    run(gate, insert_statement(gate.backend(), records)).await
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

/// `records` as [`log_records!`](crate::store::sql::log_records) takes them: a JSON array of
/// `access_records` rows, the export's lines.
pub(in crate::store) fn records_json(records: &[ChainedRecord]) -> String {
    crate::audit::export::json_rows(records)
}

/// Seals `records` (a call's, to be written with its own writes) on a chain of this store's:
/// `None` without records; a failure when this store writes none, so none is dropped.
pub(in crate::store) fn log(
    chains: Option<&Arc<Chains>>,
    records: impl IntoIterator<Item = AccessRecord>,
) -> Result<Option<Logged>, StoreError> {
    let records: Vec<AccessRecord> = records.into_iter().collect();
    match chains {
        Some(chains) => Ok(chains.log(records)),
        None if records.is_empty() => Ok(None),
        None => Err(StoreError::Failure("this store writes no access records".into())),
    }
}

/// Writes `logged`'s records in the transaction `on` runs, before it commits.
pub(in crate::store) async fn write_logged<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    logged: Option<&Logged>,
) -> Result<(), StoreError> {
    if let Some(logged) = logged {
        let insert = insert_statement(on.backend(), logged.records());
        on.execute(insert).await.map_err(classify)?;
    }
    Ok(())
}

/// `logged` settled by its statement's result: written when Ok and `wrote` says the
/// statement wrote it (one that writes a call's record only with the call's write); see
/// [`Logged::settle`] otherwise.
pub(in crate::store) fn settle_where<T>(
    logged: Option<Logged>,
    result: &Result<T, StoreError>,
    wrote: impl FnOnce(&T) -> bool,
) {
    match (logged, result) {
        (Some(logged), Ok(value)) if !wrote(value) => logged.unwritten(),
        (Some(logged), result) => logged.settle(result),
        (None, _) => {}
    }
}

/// `logged` settled by the result of a statement that wrote it whenever it committed.
pub(in crate::store) fn settle<T>(logged: Option<Logged>, result: &Result<T, StoreError>) {
    settle_where(logged, result, |_| true);
}

/// `logged`, a call's record, settled by the result of the store call it rode.
pub(in crate::store) fn settle_call<T: RecordWritten>(
    logged: Option<Logged>,
    result: &Result<T, StoreError>,
) {
    settle_where(logged, result, T::record_written);
}

/// A chained record into its row.
fn active_model(chained: &ChainedRecord) -> access_record::ActiveModel {
    let record = &chained.record;
    access_record::ActiveModel {
        chain: Set(chained.chain.clone()),
        seq: Set(chained.seq),
        at: Set(record.at),
        caller: Set(record.caller.clone()),
        actor: Set(record.actor.clone()),
        peer: Set(record.peer.clone()),
        method: Set(record.method.clone()),
        purpose: Set(record.purpose.clone()),
        work: Set(record.work.as_str().to_owned()),
        account_id: Set(record.account.clone()),
        person: Set(record.person.clone()),
        outcome: Set(record.outcome.clone()),
        trace_id: Set(record.trace_id.clone()),
        mac: Set(chained.mac.clone()),
    }
}
