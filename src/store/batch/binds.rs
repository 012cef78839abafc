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
//! - All or nothing: the person and the certification are inserted without `ON CONFLICT`, so a
//!   concurrent insert of the same person, account or certification fails the whole statement
//!   with a unique violation, claim included; every bind of it then takes a statement of its
//!   own, and a bind that fails alone takes the long way.
//! - Each bind decided on its own rows: binds of one statement share no person, account,
//!   certification or session (any that does waits for a statement of its own after it).
//! - Nothing refused here: every refusal (conflict, cooldown) needs a row that exists, and then
//!   the bind is not fresh and nothing is written for it.
//! - A deletion only with its redemption (when the claim carries one): the outbox row is inserted by
//!   the same statement, only when the claim redeemed and the person was bound.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    SqlErr,
    sqlx::{self, PgConnection},
};

use super::{
    gate::Connection,
    lane::{Pending, Work},
    records::bind_records,
    statement::query_error,
};
use crate::{
    domain::AccountId,
    store::{
        StoreError,
        rows::{Claim, Recordable},
    },
};

/// A signup's bind as it waits in the lane.
#[derive(Clone)]
pub(crate) struct FreshBind {
    pub(crate) recordable: Recordable,
    pub(crate) account: AccountId,
    /// The claim of the record's certification on its session, if any.
    pub(crate) claim: Option<Claim>,
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

    async fn serve(connection: &mut Connection, batch: &[Pending<Self>]) -> Vec<Result<Fresh, StoreError>> {
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
            _ => run(connection, &binds, now).await.ok(),
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
                _ => bind_one(connection, &pending.work, now).await,
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

/// One bind in the statement. A unique violation is a race lost to a concurrent insert: the
/// statement, claim included, was undone, and the caller takes the long way.
async fn bind_one(
    connection: &mut PgConnection,
    bind: &FreshBind,
    now: DateTime<Utc>,
) -> Result<Fresh, StoreError> {
    match run(connection, &[bind], now).await {
        Ok(bound) => Ok(fresh(bound.contains(&0), bind, now)),
        Err(error) => {
            let error = query_error(error);
            if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                Ok(fresh(false, bind, now))
            } else {
                Err(crate::store::classify(error))
            }
        }
    }
}

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

/// The binds in one statement: the positions (in `binds`) of those bound.
async fn run(
    connection: &mut PgConnection,
    binds: &[&FreshBind],
    now: DateTime<Utc>,
) -> Result<HashSet<usize>, sqlx::Error> {
    debug_assert!(binds.iter().all(|bind| bind.claim.as_ref().is_none_or(|claim| {
        claim.provider == bind.recordable.provider && claim.certification_id == bind.recordable.id
    })));
    let records: Vec<&Recordable> = binds.iter().map(|bind| &bind.recordable).collect();
    let rows: Vec<(i64,)> = bind_records(sqlx::query_as(BIND_FRESH), &records, now)
        .bind(binds.iter().map(|bind| bind.account.as_str()).collect::<Vec<_>>())
        .bind(
            binds
                .iter()
                .map(|bind| bind.claim.as_ref().map(|claim| claim.session.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            binds
                .iter()
                .map(|bind| bind.claim.as_ref().and_then(|claim| claim.deletion_due))
                .collect::<Vec<_>>(),
        )
        .fetch_all(connection)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(n,)| usize::try_from(n - 1).ok())
        .collect())
}

/// Arrays in the binds' order: $1 to $9 as for a record (see `records::RECORD`), $10 account,
/// $11 session (NULL without), $12 when PortOne may delete the certification (NULL: nothing to
/// enqueue). Returns the ordinal (from 1) of each bind bound. The binds share no row (see
/// [`together`]), so no row's insert depends on another's.
const BIND_FRESH: &str = "\
WITH seen AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[],
                         $9::timestamptz[], $10::text[], $11::text[], $12::timestamptz[])
        WITH ORDINALITY AS seen (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, provider, provider_id,
                                 certified_at, account, session, not_before, n)
), fresh AS (
    SELECT * FROM seen
    WHERE NOT EXISTS (SELECT 1 FROM persons WHERE persons.ci_hash = seen.ci_hash)
      AND NOT EXISTS (SELECT 1 FROM persons WHERE persons.account_id = seen.account)
      AND NOT EXISTS (SELECT 1 FROM certifications
                      WHERE certifications.provider = seen.provider AND certifications.provider_id = seen.provider_id)
), claim AS (
    UPDATE verification_sessions
    SET redeemed_provider = fresh.provider, redeemed_id = fresh.provider_id, redeemed_at = $6,
        holder_account_id = NULL, holder_bound_at = NULL, bound = TRUE
    FROM fresh
    WHERE verification_sessions.merchant_uid = fresh.session
      AND verification_sessions.redeemed_id IS NULL AND verification_sessions.expires_at > $6
    RETURNING fresh.n
), person AS (
    INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account_id, bound_at,
                         created_at, updated_at)
    SELECT ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account, $6, $6, $6 FROM fresh
    WHERE fresh.session IS NULL OR fresh.n IN (SELECT n FROM claim)
    ORDER BY n
    RETURNING id, ci_hash
), certification AS (
    INSERT INTO certifications (provider, provider_id, person_id, certified_at, first_seen_at,
                                last_seen_at, consumed_by, consumed_at)
    SELECT fresh.provider, fresh.provider_id, person.id, fresh.certified_at, $6, $6, fresh.account, $6
    FROM fresh JOIN person USING (ci_hash)
    RETURNING person_id
), deletion AS (
    INSERT INTO portone_deletions (imp_uid, enqueued_at, not_before, attempts)
    SELECT fresh.provider_id, $6, fresh.not_before, 0
    FROM fresh JOIN person USING (ci_hash)
    WHERE fresh.not_before IS NOT NULL AND fresh.n IN (SELECT n FROM claim)
    ON CONFLICT (imp_uid) DO NOTHING
)
SELECT fresh.n FROM fresh
JOIN person USING (ci_hash)
JOIN certification ON certification.person_id = person.id";
