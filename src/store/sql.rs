//! Each write of a certification's rows, written once: the person inserted, the certification
//! upserted, the session claimed, the deletion enqueued. Each is a string literal (a macro, so
//! `concat!` can build statements from it) over a relation the caller names, with no parameter
//! of its own: the relation brings every value, the time included. So the batch statements
//! (`batch::records`, `batch::binds`) and the transaction's statements (`writes`) run the same
//! text on PostgreSQL and SQLite, and differ only in where their rows come from.
//!
//! The rows of a certification, as [`seen_one!`] and [`seen_arrays!`] give them: ci_hash,
//! di_hash, ci_sealed, di_sealed, sealing_key_id, provider, provider_id, certified_at, account
//! (NULL: record only), session (NULL: none to claim), not_before (NULL: no deletion), n (the
//! row's order, from 1), at (now). Their parameters, one per value (an array of them for
//! [`seen_arrays!`]): $1 ci_hash, $2 di_hash, $3 ci_sealed, $4 di_sealed, $5 sealing_key_id,
//! $6 now, $7 provider, $8 provider_id, $9 certified_at, $10 account, $11 session,
//! $12 not_before; bound by `rows::one_row` or `batch::records::bind_rows`.

/// One certification's rows, from scalar parameters (both backends). Not materialized: read
/// where it is used, it cost a lone record on PostgreSQL no more server time than the values
/// written in place (materialized, a tenth more).
macro_rules! seen_one {
    () => {
        "seen (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, provider, provider_id, \
         certified_at, account, session, not_before, n, at) AS NOT MATERIALIZED (\
         VALUES ($1, $2, $3, $4, $5, $7, $8, $9, $10, $11, $12, 1, $6))"
    };
}

/// Many certifications' rows, from arrays in their order (PostgreSQL). A certification given
/// twice (two calls recording it at once) is one row, its first: one statement may not update
/// a row twice.
macro_rules! seen_arrays {
    () => {
        "seen AS (\
         SELECT DISTINCT ON (provider, provider_id) unnested.*, $6::timestamptz AS at \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[], \
         $9::timestamptz[], $10::text[], $11::text[], $12::timestamptz[]) WITH ORDINALITY AS unnested \
         (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, provider, provider_id, certified_at, \
         account, session, not_before, n) \
         ORDER BY provider, provider_id, n)"
    };
}

/// Inserts the persons of `$rows` (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id,
/// account, at, n), bound to `account` when it is set, in the rows' order. No conflict clause:
/// see [`insert_persons_unless_present!`].
macro_rules! insert_persons {
    ($rows:literal) => {
        concat!(
            "INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account_id, \
             bound_at, created_at, updated_at) \
             SELECT ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, account, \
             CASE WHEN account IS NULL THEN NULL ELSE at END, at, at FROM ",
            $rows,
            " WHERE true ORDER BY n"
        )
    };
}

/// [`insert_persons!`], skipping a person already present (a record: the person may be known).
/// (`WHERE true` in the insert keeps SQLite from reading `ON` as a join's.)
macro_rules! insert_persons_unless_present {
    ($rows:literal) => {
        concat!(
            $crate::store::sql::insert_persons!($rows),
            " ON CONFLICT (ci_hash) DO NOTHING"
        )
    };
}

/// Upserts the certifications of `$rows` (provider, provider_id, person_id, certified_at,
/// account, at; each certification once): inserted (consumed by `account` when it is set), or
/// seen again.
macro_rules! upsert_certifications {
    ($rows:literal) => {
        concat!(
            "INSERT INTO certifications (provider, provider_id, person_id, certified_at, first_seen_at, \
             last_seen_at, consumed_by, consumed_at) \
             SELECT provider, provider_id, person_id, certified_at, at, at, account, \
             CASE WHEN account IS NULL THEN NULL ELSE at END FROM ",
            $rows,
            " WHERE true \
             ON CONFLICT (provider, provider_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at"
        )
    };
}

/// Claims each session of `$rows` (session, provider, provider_id, holder_account_id,
/// holder_bound_at, bound, refusal, refused_until, at) for its certification, with the answer
/// known so far, unless it is redeemed or expired: the one conditional update that decides which
/// certification redeems a session.
macro_rules! claim_sessions {
    ($rows:literal) => {
        concat!(
            "UPDATE verification_sessions SET redeemed_provider = ",
            $rows,
            ".provider, redeemed_id = ",
            $rows,
            ".provider_id, redeemed_at = ",
            $rows,
            ".at, holder_account_id = ",
            $rows,
            ".holder_account_id, holder_bound_at = ",
            $rows,
            ".holder_bound_at, bound = ",
            $rows,
            ".bound, refusal = ",
            $rows,
            ".refusal, refused_until = ",
            $rows,
            ".refused_until FROM ",
            $rows,
            " WHERE verification_sessions.merchant_uid = ",
            $rows,
            ".session AND verification_sessions.redeemed_id IS NULL \
             AND verification_sessions.expires_at > ",
            $rows,
            ".at"
        )
    };
}

/// Enqueues the deletion at PortOne of each certification of `$rows` (provider_id, not_before,
/// at). A certification already queued keeps its row: a retry does not postpone it.
macro_rules! enqueue_deletions {
    ($rows:literal) => {
        concat!(
            "INSERT INTO portone_deletions (imp_uid, enqueued_at, not_before, attempts) \
             SELECT provider_id, at, not_before, 0 FROM ",
            $rows,
            " WHERE true ON CONFLICT (imp_uid) DO NOTHING"
        )
    };
}

/// Inserts the access records of `$json` (PostgreSQL; a JSON array of `access_records` rows,
/// see `access::records_json`) in the statement of the writes they record. With a condition:
/// all of them when `$rows` has `$count` rows, otherwise none, and then when `$all` the whole
/// statement fails (a division by zero), its writes undone with them. A call's writes never
/// commit without its record, and a chain, whose records one statement writes, keeps no gap.
macro_rules! log_records {
    (@insert $json:literal) => {
        concat!(
            "logged AS (INSERT INTO access_records SELECT * FROM \
             json_populate_recordset(NULL::access_records, ",
            $json,
            "::json)"
        )
    };
    ($json:literal) => {
        concat!(log_records!(@insert $json), ")")
    };
    ($json:literal, $rows:literal, $count:literal, $all:literal) => {
        concat!(
            log_records!(@insert $json),
            " WHERE CASE WHEN (SELECT count(*) FROM ",
            $rows,
            ") = ",
            $count,
            "::bigint THEN TRUE WHEN ",
            $all,
            "::boolean THEN (SELECT count(*) FROM ",
            $rows,
            ") / 0 > 0 ELSE FALSE END)"
        )
    };
}

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Values;

use super::rows::{Claim, Recordable};
use crate::domain::AccountId;

pub(super) use {
    claim_sessions, enqueue_deletions, insert_persons, insert_persons_unless_present, log_records,
    seen_arrays, seen_one, upsert_certifications,
};

/// The parameters of [`seen_one!`] for one certification: its record, the account it binds (if
/// any) and its claim on a session (if any).
pub(super) fn one_row(
    record: &Recordable,
    account: Option<&AccountId>,
    claim: Option<&Claim>,
    now: DateTime<Utc>,
) -> Values {
    debug_assert!(record.sealed_under_one_key());
    Values(vec![
        record.ci_index.0.as_str().into(),
        record.di_index.as_ref().map(|index| index.0.clone()).into(),
        record.ci_sealed.blob.as_str().into(),
        record.di_sealed.as_ref().map(|di| di.blob.clone()).into(),
        record.ci_sealed.key_id.as_str().into(),
        now.into(),
        record.provider.as_str().into(),
        record.id.as_str().into(),
        record.certified_at.into(),
        account.map(|account| account.as_str().to_owned()).into(),
        claim.map(|claim| claim.session.as_str().to_owned()).into(),
        claim.and_then(|claim| claim.deletion_due).into(),
    ])
}
