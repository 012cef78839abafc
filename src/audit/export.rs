//! `audit export`: the records a reviewer or a data subject's request selects, as JSON lines,
//! one object per record with every column (absent ones `null`), so what is handed over can be
//! checked against the chains it came from.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::chain::ChainedRecord;

/// The method of an export's own record (work `download`): the monthly report lists them.
pub(crate) const EXPORT_METHOD: &str = "audit export";

/// Why records are taken out (`--reason`), kept as the export's own record's `purpose`: the
/// monthly review checks each download's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportReason {
    /// The monthly review of the records.
    MonthlyReview,
    /// A data subject asked who accessed their data.
    SubjectRequest,
    /// An incident or a complaint is being investigated.
    Investigation,
    /// An auditor (ISMS-P, the regulator) asked for them.
    Audit,
}

impl ExportReason {
    pub(crate) const ALL: [Self; 4] = [
        Self::MonthlyReview,
        Self::SubjectRequest,
        Self::Investigation,
        Self::Audit,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::MonthlyReview => "monthly-review",
            Self::SubjectRequest => "subject-request",
            Self::Investigation => "investigation",
            Self::Audit => "audit",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == raw)
    }
}

/// Which records an export (or the report's list of exports) reads: those in `[from, to)`
/// matching every filter given.
#[derive(Clone, Debug)]
pub struct Selection {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub caller: Option<String>,
    pub account: Option<String>,
    /// A person's pseudonym ([`super::AuditKey::person`]), never their CI.
    pub person: Option<String>,
    pub method: Option<String>,
}

impl Selection {
    /// Every record in `[from, to)`.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            from,
            to,
            caller: None,
            account: None,
            person: None,
            method: None,
        }
    }
}

/// One exported line: the row as stored, its time in RFC 3339 to the microsecond, in UTC.
#[derive(Serialize)]
struct Line<'a> {
    chain: &'a str,
    seq: i64,
    at: String,
    caller: &'a str,
    actor: Option<&'a str>,
    peer: Option<&'a str>,
    method: &'a str,
    purpose: Option<&'a str>,
    work: &'static str,
    account_id: Option<&'a str>,
    person: Option<&'a str>,
    outcome: &'a str,
    trace_id: Option<&'a str>,
    mac: &'a str,
}

/// `chained` as one JSON object, without its line break.
pub(crate) fn json_line(chained: &ChainedRecord) -> String {
    serde_json::to_string(&Line::of(chained)).expect("a line of strings and numbers always serialises")
}

/// `records` as one JSON array of their rows (what the store's statements insert from).
pub(crate) fn json_rows(records: &[ChainedRecord]) -> String {
    let rows: Vec<Line<'_>> = records.iter().map(Line::of).collect();
    serde_json::to_string(&rows).expect("rows of strings and numbers always serialise")
}

impl<'a> Line<'a> {
    fn of(chained: &'a ChainedRecord) -> Self {
        let record = &chained.record;
        Line {
            chain: &chained.chain,
            seq: chained.seq,
            at: record.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            caller: &record.caller,
            actor: record.actor.as_deref(),
            peer: record.peer.as_deref(),
            method: &record.method,
            purpose: record.purpose.as_deref(),
            work: record.work.as_str(),
            account_id: record.account.as_deref(),
            person: record.person.as_deref(),
            outcome: &record.outcome,
            trace_id: record.trace_id.as_deref(),
            mac: &chained.mac,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AccessRecord, OUTCOME_OK, Work};

    #[test]
    fn a_line_holds_every_column_absent_ones_null_and_its_time_to_the_microsecond_in_utc() {
        let chained = ChainedRecord {
            chain: "c1".into(),
            seq: 7,
            record: AccessRecord {
                at: DateTime::parse_from_rfc3339("2026-11-03T10:20:30.000400+09:00")
                    .unwrap()
                    .with_timezone(&Utc),
                caller: "signup".into(),
                actor: None,
                peer: Some("10.0.0.7".into()),
                method: "Verify".into(),
                purpose: Some("signup".into()),
                work: Work::Lookup,
                account: Some("acct-1".into()),
                person: None,
                outcome: OUTCOME_OK.into(),
                trace_id: None,
            },
            mac: "ab".repeat(32),
        };
        let line: serde_json::Value = serde_json::from_str(&json_line(&chained)).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "chain": "c1", "seq": 7, "at": "2026-11-03T01:20:30.000400Z", "caller": "signup",
                "actor": null, "peer": "10.0.0.7", "method": "Verify", "purpose": "signup",
                "work": "lookup", "account_id": "acct-1", "person": null, "outcome": "OK",
                "trace_id": null, "mac": "ab".repeat(32),
            })
        );
    }
}
