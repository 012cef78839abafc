//! The signup path on PostgreSQL in one statement: a person seen for the first time, bound to an
//! account that holds nobody, through a certification never seen, redeeming its session (if
//! any). That is the common case of a signup; [`Store::record_and_bind`](super::Store) falls back
//! to its transaction of several statements for everything else (a person seen before, a retry,
//! a conflict, a race), and this statement then has written nothing.
//!
//! Why the race guarantees still hold, the statement being atomic on its own:
//! - Exactly one redemption: the claim is the same conditional update as `claim_in`
//!   (`redeemed_id IS NULL`, not expired), decided on the session's row lock.
//! - All or nothing: the person and the certification are inserted without `ON CONFLICT`, so a
//!   concurrent insert of the same person, account or certification fails the whole statement
//!   with a unique violation, claim included; the caller then takes the long way.
//! - Nothing refused here: every refusal (conflict, cooldown) needs a row that exists, and then
//!   `fresh` is false and nothing is written.
//! - A deletion only with its redemption (PORTONE_DELETE_AFTER): the outbox row is inserted by
//!   the same statement, only when the claim redeemed and the person was bound.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, SqlErr, Statement};

use super::{StoreError, classify, identities::SeenCertification, sessions::Claim, statement::On};
use crate::domain::AccountId;

/// `true` when the statement bound the fresh person (and redeemed the session); `false` when it
/// wrote nothing and the caller must run the general path.
pub(super) async fn bind_fresh_postgres<C: ConnectionTrait>(
    on: &mut On<'_, C>,
    seen: &SeenCertification<'_>,
    account: &AccountId,
    claim: Option<&Claim<'_>>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    debug_assert!(
        claim.is_none_or(|claim| claim.provider == seen.provider && claim.certification_id == seen.id)
    );
    let mut values = super::writes::seen_values(seen, now);
    values.extend([
        account.as_str().to_owned().into(),
        claim.map(|claim| claim.session.as_str().to_owned()).into(),
        claim.is_some().into(),
        claim.and_then(|claim| claim.deletion_due).into(),
    ]);
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, BIND_FRESH, values);
    match on.query_one(statement).await {
        Ok(row) => {
            let bound: i64 = match row {
                Some(row) => row.try_get("", "bound").map_err(classify)?,
                None => 0,
            };
            Ok(bound == 1)
        }
        // Lost a race to a concurrent insert: the statement, claim included, was undone.
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(false),
        Err(error) => Err(classify(error)),
    }
}

/// $1 ci_hash, $2 di_hash, $3 ci_sealed, $4 di_sealed, $5 sealing_key_id, $6 now, $7 provider,
/// $8 provider_id, $9 certified_at, $10 account, $11 session (NULL without), $12 has a session,
/// $13 when PortOne may delete the certification (NULL: nothing to enqueue).
/// The session's recorded answer is the one a new person gets: nobody held them, now bound.
/// Whatever else a first redemption writes joins this statement as another CTE, as the PortOne
/// deletion outbox (PORTONE_DELETE_AFTER) does, written as `deletions::enqueue_in` writes it.
const BIND_FRESH: &str = "\
WITH fresh AS (
    SELECT NOT EXISTS (SELECT 1 FROM persons WHERE ci_hash = $1)
       AND NOT EXISTS (SELECT 1 FROM persons WHERE account_id = $10)
       AND NOT EXISTS (SELECT 1 FROM certifications WHERE provider = $7 AND provider_id = $8) AS ok
), claim AS (
    UPDATE verification_sessions
    SET redeemed_provider = $7, redeemed_id = $8, redeemed_at = $6,
        holder_account_id = NULL, holder_bound_at = NULL, bound = TRUE
    WHERE merchant_uid = $11 AND redeemed_id IS NULL AND expires_at > $6 AND (SELECT ok FROM fresh)
    RETURNING 1
), person AS (
    INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account_id, bound_at,
                         created_at, updated_at)
    SELECT $1, $2, $3, $4, $5, $10, $6, $6, $6
    WHERE (SELECT ok FROM fresh) AND (NOT $12 OR EXISTS (SELECT 1 FROM claim))
    RETURNING id
), certification AS (
    INSERT INTO certifications (provider, provider_id, person_id, certified_at, first_seen_at,
                                last_seen_at, consumed_by, consumed_at)
    SELECT $7, $8, id, $9, $6, $6, $10, $6 FROM person
    RETURNING id
), deletion AS (
    INSERT INTO portone_deletions (imp_uid, enqueued_at, not_before, attempts)
    SELECT $8, $6, $13, 0
    WHERE $13 IS NOT NULL AND EXISTS (SELECT 1 FROM claim) AND EXISTS (SELECT 1 FROM person)
    ON CONFLICT (imp_uid) DO NOTHING
)
SELECT count(*) AS bound FROM certification";
