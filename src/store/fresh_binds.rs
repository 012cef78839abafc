//! The signup's one statement ([`super::fresh_bind`]) for many calls at once (see
//! [`super::lanes`]). Binds waiting together go in one statement and one commit; a bind alone
//! takes the one-bind statement.
//!
//! The guarantees of the one-bind statement hold for each bind of a batch:
//! - Binds of a batch share no person, account, certification or session (any that does waits
//!   for the one-bind statement after the batch), so each is decided on its own rows.
//! - The batch is all or nothing like the one-bind statement: a concurrent insert of any row it
//!   inserts fails the whole statement with a unique violation, and every bind of the batch then
//!   takes the one-bind statement, which decides its own race. Any other failure does the same,
//!   so one bind's fault stays its own.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection};

use super::{
    StoreError,
    fresh_bind::bind_fresh_postgres,
    identities::Recordable,
    kept::Connection,
    lanes::{Pending, Work},
    records::bind_records,
    sessions::Claim,
    statement::{On, sqlx_error},
};
use crate::domain::{AccountId, SessionId};

/// A signup's bind as it waits in the lane: owned.
pub(super) struct FreshBind {
    pub(super) recordable: Recordable,
    pub(super) account: AccountId,
    /// The session it redeems, if any, and when its deletion at the provider is due.
    pub(super) session: Option<(SessionId, Option<DateTime<Utc>>)>,
}

/// What the statement did with one bind.
#[derive(Clone)]
pub(super) enum Fresh {
    /// Bound (and its session redeemed) at this time.
    Bound(DateTime<Utc>),
    /// Not a fresh person for a fresh account, or a race lost: nothing was written, and the
    /// caller takes the general path with its record, given back.
    Not(Box<Recordable>),
}

impl FreshBind {
    fn claim(&self) -> Option<Claim<'_>> {
        self.session.as_ref().map(|(session, deletion_due)| Claim {
            session,
            provider: self.recordable.provider,
            certification_id: &self.recordable.id,
            deletion_due: *deletion_due,
        })
    }
}

impl Work for FreshBind {
    type Answer = Fresh;
    /// One, as for records: binds arriving together share a statement and its commit.
    const LANES: usize = 1;
    /// Sixteen binds are about 9 KB of values: one TLS record (see [`super::records`]).
    const MOST_PER_STATEMENT: usize = 16;

    async fn serve(connection: &mut Connection, batch: &[Pending<Self>]) -> Vec<Result<Fresh, StoreError>> {
        let connection = match connection.postgres() {
            Ok(connection) => connection,
            Err(wrong) => return vec![Err(wrong); batch.len()],
        };
        let now = Utc::now();
        let together = together(batch);
        let bound = if together.iter().filter(|together| **together).count() > 1 {
            bind_many(connection, batch, &together, now).await.ok()
        } else {
            None
        };
        let mut answers = Vec::with_capacity(batch.len());
        for (position, pending) in batch.iter().enumerate() {
            let answer = match &bound {
                Some(bound) if together[position] => Ok(if bound.contains(&position) {
                    Fresh::Bound(now)
                } else {
                    Fresh::Not(Box::new(pending.work.recordable.clone()))
                }),
                // Alone; or sharing a row with an earlier bind of the batch; or the batch
                // failed: the one-bind statement.
                _ => bind_one(connection, &pending.work, now).await,
            };
            answers.push(answer);
        }
        answers
    }
}

async fn bind_one(
    connection: &mut PgConnection,
    bind: &FreshBind,
    now: DateTime<Utc>,
) -> Result<Fresh, StoreError> {
    let seen = bind.recordable.as_seen();
    let mut on = On::<sea_orm::DatabaseConnection>::Kept(connection);
    Ok(
        if bind_fresh_postgres(&mut on, &seen, &bind.account, bind.claim().as_ref(), now).await? {
            Fresh::Bound(now)
        } else {
            Fresh::Not(Box::new(bind.recordable.clone()))
        },
    )
}

/// Which binds may go in the batch statement: each that shares no person, account,
/// certification or session with an earlier one that does.
fn together(batch: &[Pending<FreshBind>]) -> Vec<bool> {
    let mut persons = HashSet::new();
    let mut accounts = HashSet::new();
    let mut certifications = HashSet::new();
    let mut sessions = HashSet::new();
    batch
        .iter()
        .map(|pending| {
            let bind = &pending.work;
            let session = bind.session.as_ref().map(|(session, _)| session);
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

/// The batch's binds (those `together`) in one statement: the positions of those bound.
async fn bind_many(
    connection: &mut PgConnection,
    batch: &[Pending<FreshBind>],
    together: &[bool],
    now: DateTime<Utc>,
) -> Result<HashSet<usize>, StoreError> {
    let binds: Vec<(usize, &FreshBind)> = batch
        .iter()
        .enumerate()
        .filter(|(position, _)| together[*position])
        .map(|(position, pending)| (position, &pending.work))
        .collect();
    let column = |value: fn(&FreshBind) -> Option<String>| -> Vec<Option<String>> {
        binds.iter().map(|(_, bind)| value(bind)).collect()
    };
    let positions: Vec<i64> = binds
        .iter()
        .map(|(position, _)| i64::try_from(*position).unwrap_or(i64::MAX))
        .collect();
    let records: Vec<&Recordable> = binds.iter().map(|(_, bind)| &bind.recordable).collect();
    let rows: Vec<(i64,)> = bind_records(sqlx::query_as(BIND_FRESH_MANY), &records, now)
        .bind(column(|bind| Some(bind.account.as_str().to_owned())))
        .bind(column(|bind| {
            bind.session
                .as_ref()
                .map(|(session, _)| session.as_str().to_owned())
        }))
        .bind(
            binds
                .iter()
                .map(|(_, bind)| bind.claim().and_then(|claim| claim.deletion_due))
                .collect::<Vec<_>>(),
        )
        .bind(positions)
        .fetch_all(connection)
        .await
        .map_err(sqlx_error)?;
    Ok(rows
        .into_iter()
        .filter_map(|(position,)| usize::try_from(position).ok())
        .collect())
}

/// [`super::fresh_bind`]'s statement for many, as arrays in the same order: $1 ci_hash, $2
/// di_hash, $3 ci_sealed, $4 di_sealed, $5 sealing_key_id, $6 now, $7 provider, $8 provider_id,
/// $9 certified_at, $10 account, $11 session (NULL without), $12 when PortOne may delete the
/// certification (NULL: nothing to enqueue), $13 the bind's position in the batch. Returns the
/// positions bound. Each row is decided as the one-bind statement decides it; the binds share
/// no row (see [`together`]), so no row's insert depends on another's.
const BIND_FRESH_MANY: &str = "\
WITH seen AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[],
                         $9::timestamptz[], $10::text[], $11::text[], $12::timestamptz[], $13::int8[])
        AS seen (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, provider, provider_id,
                 certified_at, account, session, not_before, position)
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
    RETURNING fresh.position
), person AS (
    INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account_id, bound_at,
                         created_at, updated_at)
    SELECT ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account, $6, $6, $6 FROM fresh
    WHERE fresh.session IS NULL OR fresh.position IN (SELECT position FROM claim)
    ORDER BY position
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
    WHERE fresh.not_before IS NOT NULL AND fresh.position IN (SELECT position FROM claim)
    ON CONFLICT (imp_uid) DO NOTHING
)
SELECT fresh.position FROM fresh
JOIN person USING (ci_hash)
JOIN certification ON certification.person_id = person.id";
