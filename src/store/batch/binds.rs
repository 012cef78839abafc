//! The signup on PostgreSQL in one statement, for every signup waiting (see [`super::lane`]):
//! a person seen for the first time, bound to an account that holds nobody, through a
//! certification never seen, redeeming its session (if any). That is the common case of a
//! signup; `Store::record_and_bind` falls back to its transaction for everything else (a person
//! seen before, a retry, a conflict, a race), and this statement then has written nothing for
//! that bind. A bind alone takes the same statement with arrays of one.
//!
//! Why the race guarantees still hold, the statement being atomic on its own:
//! - Exactly one redemption: the claim is the same conditional update as the transaction's
//!   (`redeemed_id IS NULL`, not expired), decided on the session's row lock.
//! - All or nothing: the person is inserted without `ON CONFLICT`, so a concurrent insert of the
//!   same person or account fails the whole statement with a unique violation, claim included;
//!   every bind of it then takes a statement of its own, and a bind that fails alone takes the
//!   long way. (A certification is one person's: a concurrent insert of it comes with its
//!   person's, which fails first.)
//! - Each bind decided on its own rows: binds of one statement share no person, account,
//!   certification or session (any that does waits for a statement of its own after it).
//! - Nothing refused here: every refusal (conflict, cooldown) needs a row that exists, and then
//!   the bind is not fresh and nothing is written for it.
//! - A deletion only with its redemption (when the claim carries one): the outbox row is inserted by
//!   the same statement, only when the claim redeemed and the person was bound.
//!
//! The statement never waits long on a lock: a bind whose rows another transaction holds is racing
//! it, so it is not fresh, and while the lane's statement waits every signup queued behind it
//! waits too (one held session row once held unrelated signups for seconds). Past
//! [`LOCK_WAIT`] the statement is undone and each of its binds takes a statement of its own; the
//! one that still waits takes the long way, whose transaction waits on its own connection for as
//! long as `DATABASE_LOCK_TIMEOUT` allows.

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};
use sea_orm::{
    DbErr, RuntimeErr, SqlErr,
    sqlx::{self, Connection as _, PgConnection},
};

use super::{
    access::{Chains, Logged, log, records_json, settle_where, write_logged},
    gate::Connection,
    lane::{Pending, Work},
    records::bind_rows,
    statement::{On, query_error, sqlx_error},
};
use crate::{
    audit::AccessRecord,
    domain::AccountId,
    store::{
        StoreError, classify,
        rows::{Claim, Recordable},
        sql::{
            claim_sessions, enqueue_deletions, insert_persons, log_records, seen_arrays,
            upsert_certifications,
        },
    },
};

/// The longest the statement waits for a lock before it gives its binds up to the long way
/// (PostgreSQL's `lock_timeout` syntax).
const LOCK_WAIT: &str = "50ms";

/// A signup's bind as it waits in the lane.
#[derive(Clone)]
pub(crate) struct FreshBind {
    pub(crate) recordable: Recordable,
    pub(crate) account: AccountId,
    /// The claim of the record's certification on its session, if any.
    pub(crate) claim: Option<Claim>,
    /// The call's access record (its outcome OK), written with the bind and only with it.
    pub(crate) access: Option<AccessRecord>,
}

/// What the statement did with one bind.
#[derive(Clone)]
pub(crate) enum Fresh {
    /// Bound (and its session redeemed) at this time.
    Bound(DateTime<Utc>),
    /// Not a fresh person for a fresh account, or a race lost: nothing was written, and the
    /// caller takes the general path with its bind, given back.
    Not(Box<FreshBind>),
}

impl Work for FreshBind {
    type Answer = Fresh;
    /// Sixteen binds fit one TLS record, as for records (BENCHMARKS.md, "The cap of 16").
    const MOST_PER_STATEMENT: usize = 16;

    async fn serve(
        connection: &mut Connection,
        batch: &[Pending<Self>],
        chains: Option<&Arc<Chains>>,
    ) -> Vec<Result<Fresh, StoreError>> {
        let connection = match connection.postgres() {
            Ok(connection) => connection,
            Err(wrong) => return vec![Err(wrong); batch.len()],
        };
        let now = Utc::now();
        let together = together(batch);
        let binds: Vec<&FreshBind> = batch
            .iter()
            .zip(&together)
            .filter(|(_, together)| **together)
            .map(|(pending, _)| &pending.work)
            .collect();
        let bound = match binds.len() {
            0 | 1 => None,
            _ => all(connection, &binds, chains, now).await,
        };
        let mut answers = Vec::with_capacity(batch.len());
        let mut position = 0;
        for (pending, together) in batch.iter().zip(together) {
            let answer = match &bound {
                Some(bound) if together => {
                    position += 1;
                    Ok(fresh(bound.contains(&(position - 1)), &pending.work, now))
                }
                // Alone; or sharing a row with an earlier bind of the batch; or the batch
                // failed: a statement of its own.
                _ => bind_one(connection, &pending.work, chains, now).await,
            };
            answers.push(answer);
        }
        answers
    }
}

fn fresh(bound: bool, bind: &FreshBind, now: DateTime<Utc>) -> Fresh {
    if bound {
        Fresh::Bound(now)
    } else {
        Fresh::Not(Box::new(bind.clone()))
    }
}

/// The binds in one statement; with access records, in a transaction that writes the records
/// of those bound after it (a statement cannot: which are bound is known only once it ran).
/// `None`: the statement failed, and each takes a statement of its own.
async fn all(
    connection: &mut PgConnection,
    binds: &[&FreshBind],
    chains: Option<&Arc<Chains>>,
    now: DateTime<Utc>,
) -> Option<HashSet<usize>> {
    if binds.iter().all(|bind| bind.access.is_none()) {
        return run(connection, binds, None, now).await.ok();
    }
    let mut txn = connection.begin().await.ok()?;
    let bound = run(&mut txn, binds, None, now).await.ok()?;
    let records = binds
        .iter()
        .enumerate()
        .filter(|(position, _)| bound.contains(position))
        .filter_map(|(_, bind)| bind.access.clone());
    let logged = log(chains, records).ok()?;
    let committed = async {
        write_logged(&mut On::held(&mut txn), logged.as_ref()).await?;
        txn.commit().await.map_err(sqlx_error)
    }
    .await;
    if let Some(logged) = logged {
        logged.settle(&committed);
    }
    committed.ok().map(|()| bound)
}

/// One bind in the statement, with its access record where it is bound. A unique violation is
/// a race lost to a concurrent insert, and a lock wait past [`LOCK_WAIT`] a race still running:
/// either way the statement, claim included, was undone, and the caller takes the long way.
async fn bind_one(
    connection: &mut PgConnection,
    bind: &FreshBind,
    chains: Option<&Arc<Chains>>,
    now: DateTime<Utc>,
) -> Result<Fresh, StoreError> {
    let logged = log(chains, bind.access.clone())?;
    let bound = run(connection, &[bind], logged.as_ref(), now).await;
    let settled = bound.as_ref().map_err(|error| classify(error.clone()));
    settle_where(logged, &settled, |bound| bound.contains(&0));
    match bound {
        Ok(bound) => Ok(fresh(bound.contains(&0), bind, now)),
        Err(error) => {
            let lock_waited = match &error {
                DbErr::Query(RuntimeErr::SqlxError(inner)) => inner
                    .as_database_error()
                    .and_then(|error| error.code())
                    .is_some_and(|code| code == LOCK_NOT_AVAILABLE),
                _ => false,
            };
            if lock_waited || matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                Ok(fresh(false, bind, now))
            } else {
                Err(classify(error))
            }
        }
    }
}

/// PostgreSQL's SQLSTATE for a lock wait past `lock_timeout` ([`LOCK_WAIT`] here).
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Which binds may go in one statement: each that shares no person, account, certification or
/// session with an earlier one that does.
fn together(batch: &[Pending<FreshBind>]) -> Vec<bool> {
    let mut persons = HashSet::new();
    let mut accounts = HashSet::new();
    let mut certifications = HashSet::new();
    let mut sessions = HashSet::new();
    batch
        .iter()
        .map(|pending| {
            let bind = &pending.work;
            let session = bind.claim.as_ref().map(|claim| &claim.session);
            let certification = (bind.recordable.provider, bind.recordable.id.as_str());
            let apart = !persons.contains(&bind.recordable.ci_index)
                && !accounts.contains(&bind.account)
                && !certifications.contains(&certification)
                && session.is_none_or(|session| !sessions.contains(session));
            if apart {
                persons.insert(&bind.recordable.ci_index);
                accounts.insert(&bind.account);
                certifications.insert(certification);
                sessions.extend(session);
            }
            apart
        })
        .collect()
}

/// The binds in one statement: the positions (in `binds`) of those bound. With `logged` (one
/// bind's), its access record too, written only with its bind.
async fn run(
    connection: &mut PgConnection,
    binds: &[&FreshBind],
    logged: Option<&Logged>,
    now: DateTime<Utc>,
) -> Result<HashSet<usize>, DbErr> {
    debug_assert!(binds.iter().all(|bind| bind.claim.as_ref().is_none_or(|claim| {
        claim.provider == bind.recordable.provider && claim.certification_id == bind.recordable.id
    })));
    let rows: Vec<(&Recordable, Option<&AccountId>, Option<&Claim>)> = binds
        .iter()
        .map(|bind| (&bind.recordable, Some(&bind.account), bind.claim.as_ref()))
        .collect();
    let rows: Vec<(i64,)> = match logged {
        None => bind_rows(sqlx::query_as(BIND_FRESH), &rows, now)
            .bind(LOCK_WAIT)
            .fetch_all(connection)
            .await
            .map_err(query_error)?,
        Some(logged) => bind_rows(sqlx::query_as(BIND_FRESH_LOGGED), &rows, now)
            .bind(LOCK_WAIT)
            .bind(records_json(logged.records()))
            .bind(1_i64)
            .bind(false)
            .fetch_all(connection)
            .await
            .map_err(query_error)?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|(n,)| usize::try_from(n - 1).ok())
        .collect())
}

/// The binds waiting, as arrays (see `store::sql`), each with its account and, if any, its
/// session and when PortOne may delete the certification (NULL: nothing to enqueue). Returns the
/// ordinal (from 1) of each bind bound. The binds share no row (see [`together`]), so no row's
/// insert depends on another's. $13 is the statement's `lock_timeout` ([`LOCK_WAIT`]): set for
/// this statement alone (its implicit transaction), before its first row reaches a write, since
/// every write takes its rows from `fresh`.
macro_rules! bind_fresh {
    ($logged:expr) => {
        concat!(
            "WITH ",
            seen_arrays!(),
            ", fresh AS (
    SELECT * FROM seen
    WHERE (SELECT set_config('lock_timeout', $13, true)) IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM persons WHERE persons.ci_hash = seen.ci_hash)
      AND NOT EXISTS (SELECT 1 FROM persons WHERE persons.account_id = seen.account)
      AND NOT EXISTS (SELECT 1 FROM certifications
                      WHERE certifications.provider = seen.provider AND certifications.provider_id = seen.provider_id)
), claiming AS (
    SELECT *, NULL::text AS holder_account_id, NULL::timestamptz AS holder_bound_at, TRUE AS bound,
           NULL::text AS refusal, NULL::timestamptz AS refused_until FROM fresh
), claim AS (",
            claim_sessions!("claiming"),
            " RETURNING claiming.n
), binding AS (
    SELECT * FROM fresh WHERE session IS NULL OR n IN (SELECT n FROM claim)
), person AS (",
            insert_persons!("binding"),
            " RETURNING id, ci_hash
), certifying AS (
    SELECT binding.*, person.id AS person_id FROM binding JOIN person USING (ci_hash)
), certification AS (",
            upsert_certifications!("certifying"),
            " RETURNING person_id
), deleting AS (
    SELECT * FROM binding WHERE not_before IS NOT NULL AND n IN (SELECT n FROM claim)
), deletion AS (",
            enqueue_deletions!("deleting"),
            "), bound AS (
    SELECT fresh.n FROM fresh
    JOIN person USING (ci_hash)
    JOIN certification ON certification.person_id = person.id
)",
            $logged,
            "
SELECT n FROM bound"
        )
    };
}

const BIND_FRESH: &str = bind_fresh!("");

/// [`BIND_FRESH`] for one bind with its access record ($14), written only when it is bound
/// ($15 = 1, $16 false).
const BIND_FRESH_LOGGED: &str = bind_fresh!(concat!(", ", log_records!("$14", "bound", "$15", "$16")));
