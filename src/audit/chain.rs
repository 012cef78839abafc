//! Chains of access records. A chain is extended by one statement at a time (the store takes
//! one from its pool for each statement that writes records), so replicas and writers never
//! serialise on one row: each has chains of its own, named at random. Its records are numbered
//! from 1, and each carries `mac = HMAC(AUDIT_KEY, content ‖ previous mac)` (32 zero bytes
//! before the first).
//!
//! A writer [`Chain::extend`]s its chain with records not yet written, and [`Chain::advance`]s
//! only once they are committed: a statement that failed leaves the chain where it was, so the
//! next records take the same numbers and no gap appears.
//!
//! [`check`] recomputes chains, finding the first record changed, inserted or removed; a tail
//! cut off after the last record is found against the heads the writers logged
//! ([`Head`], logged at intervals and at shutdown).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{AccessRecord, AuditKey};

/// The MAC before a chain's first record.
const GENESIS: [u8; 32] = [0; 32];

/// The chain a writer extends: its name, how many records it has, and the last one's MAC.
/// Not `Clone`: one writer moves it forward.
#[derive(Debug)]
pub(crate) struct Chain {
    id: String,
    seq: i64,
    head: [u8; 32],
}

/// Records sealed after a chain's head, not yet written: [`Chain::advance`] takes them back
/// once they are.
#[derive(Debug)]
pub(crate) struct Extension {
    after_seq: i64,
    head: [u8; 32],
    pub(crate) records: Vec<ChainedRecord>,
}

/// A record with its place in a chain and its MAC: a row of `access_records`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainedRecord {
    pub chain: String,
    pub seq: i64,
    pub record: AccessRecord,
    /// Hex, 64 characters.
    pub mac: String,
}

/// A chain's last record as a writer logged it: the evidence against a cut tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) chain: String,
    pub(crate) seq: i64,
    pub(crate) mac: String,
}

/// The message the writers log their heads with: `audit verify --heads` finds them by it.
pub(crate) const HEAD_LOGGED: &str = "access record chain head";

impl Head {
    /// The heads logged in `log` (JSON lines, or text lines with `chain=… seq=… mac=…`), the
    /// last of each chain.
    pub(crate) fn in_log(log: &str) -> Vec<Head> {
        let mut last: BTreeMap<String, Head> = BTreeMap::new();
        for head in log
            .lines()
            .filter(|line| line.contains(HEAD_LOGGED))
            .filter_map(Self::parse)
        {
            match last.get(&head.chain) {
                Some(known) if known.seq >= head.seq => {}
                _ => {
                    last.insert(head.chain.clone(), head);
                }
            }
        }
        last.into_values().collect()
    }

    fn parse(line: &str) -> Option<Head> {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
            let fields = value.get("fields").unwrap_or(&value);
            return Some(Head {
                chain: fields.get("chain")?.as_str()?.to_owned(),
                seq: fields.get("seq")?.as_i64()?,
                mac: fields.get("mac")?.as_str()?.to_owned(),
            });
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|token| token.strip_prefix(name)?.strip_prefix('='))
                // Terminal colours around the value, when the log went to one.
                .map(|value| value.split('\u{1b}').next().unwrap_or(value).to_owned())
        };
        Some(Head {
            chain: field("chain")?,
            seq: field("seq")?.parse().ok()?,
            mac: field("mac")?,
        })
    }
}

impl Chain {
    /// A new chain, named at random: no two writers ever extend the same one.
    pub(crate) fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            id,
            seq: 0,
            head: GENESIS,
        }
    }

    /// `records` sealed after this chain's head, in their order.
    pub(crate) fn extend(&self, key: &AuditKey, records: Vec<AccessRecord>) -> Extension {
        let mut head = self.head;
        let mut seq = self.seq;
        let records = records
            .into_iter()
            .map(|record| {
                seq += 1;
                head = key.chain_mac(&encode(&self.id, seq, &record), &head);
                ChainedRecord {
                    chain: self.id.clone(),
                    seq,
                    record,
                    mac: hex::encode(head),
                }
            })
            .collect();
        Extension {
            after_seq: self.seq,
            head,
            records,
        }
    }

    /// The chain moved past `written`, now committed. An extension of another head (which a
    /// writer never makes) leaves it where it is.
    pub(crate) fn advance(&mut self, written: Extension) {
        if written.after_seq == self.seq
            && let Some(last) = written.records.last()
        {
            self.seq = last.seq;
            self.head = written.head;
        }
    }

    /// Its last written record, if any.
    pub(crate) fn head(&self) -> Option<Head> {
        (self.seq > 0).then(|| Head {
            chain: self.id.clone(),
            seq: self.seq,
            mac: hex::encode(self.head),
        })
    }
}

/// The bytes a record's MAC covers: every field, each length-prefixed (absent ones marked), so
/// no two records encode alike.
fn encode(chain: &str, seq: i64, record: &AccessRecord) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    let mut field = |value: Option<&[u8]>| match value {
        None => bytes.push(0),
        Some(value) => {
            bytes.push(1);
            bytes.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
            bytes.extend_from_slice(value);
        }
    };
    field(Some(chain.as_bytes()));
    field(Some(&seq.to_be_bytes()));
    field(Some(&record.at.timestamp_micros().to_be_bytes()));
    for text in [
        Some(record.caller.as_str()),
        record.actor.as_deref(),
        record.peer.as_deref(),
        Some(record.method.as_str()),
        record.purpose.as_deref(),
        Some(record.work.as_str()),
        record.account.as_deref(),
        record.person.as_deref(),
        Some(record.outcome.as_str()),
        record.trace_id.as_deref(),
    ] {
        field(text.map(str::as_bytes));
    }
    bytes
}

/// What [`check`] found wrong first, in a chain's order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("chain {chain}: record {seq} was changed (its MAC does not match its content)")]
    Changed { chain: String, seq: i64 },
    #[error("chain {chain}: record {seq} was inserted (the chain runs on past it)")]
    Inserted { chain: String, seq: i64 },
    #[error("chain {chain}: record {seq}, its last, does not match its MAC (changed or added)")]
    LastForged { chain: String, seq: i64 },
    #[error("chain {chain}: records {from} to {to} were removed")]
    Removed { chain: String, from: i64, to: i64 },
    #[error("chain {chain}: cut after record {found}; its writer logged record {logged}")]
    Truncated { chain: String, found: i64, logged: i64 },
    #[error("chain {chain}: record {seq} differs from the head its writer logged")]
    HeadMismatch { chain: String, seq: i64 },
    #[error("chain {chain}: the purge anchor at record {seq} is not one the purge made")]
    ForgedAnchor { chain: String, seq: i64 },
}

/// What [`check`] read: chains and records, and the span of time they cover.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) chains: usize,
    pub(crate) records: u64,
    pub(crate) first: Option<DateTime<Utc>>,
    pub(crate) last: Option<DateTime<Utc>>,
}

/// One chain's records in order, as read for a check.
#[derive(Clone, Debug)]
pub struct ChainRows {
    pub chain: String,
    /// What `rows[0]` follows when it is not the chain's first. None with `rows[0].seq > 1`:
    /// the record before it is gone.
    pub anchor: Option<Anchor>,
    pub rows: Vec<ChainedRecord>,
}

/// What the first record read of a chain follows.
#[derive(Clone, Debug)]
pub enum Anchor {
    /// The record before it, stored (a check over a range starting inside the chain).
    Record { seq: i64, mac: String },
    /// Where the retention purge left the chain.
    Purged(PurgeAnchor),
}

/// The last record of a chain the retention purge removed: its seq and MAC, with a MAC of its
/// own, so no anchor can be made up to hide records removed otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeAnchor {
    pub chain: String,
    pub seq: i64,
    pub mac: String,
    /// The purge removed the chain's records before this time (and those between them).
    pub purged_before: DateTime<Utc>,
    pub anchor_mac: String,
}

impl PurgeAnchor {
    pub(crate) fn new(
        key: &AuditKey,
        chain: String,
        seq: i64,
        mac: String,
        purged_before: DateTime<Utc>,
    ) -> Self {
        let mut anchor = Self {
            chain,
            seq,
            mac,
            purged_before,
            anchor_mac: String::new(),
        };
        anchor.anchor_mac = anchor.expected_mac(key);
        anchor
    }

    fn expected_mac(&self, key: &AuditKey) -> String {
        let mut content = b"purge anchor\0".to_vec();
        for part in [self.chain.as_bytes(), self.mac.as_bytes()] {
            content.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            content.extend_from_slice(part);
        }
        content.extend_from_slice(&self.seq.to_be_bytes());
        content.extend_from_slice(&self.purged_before.timestamp_micros().to_be_bytes());
        hex::encode(key.chain_mac(&content, &GENESIS))
    }

    fn holds(&self, key: &AuditKey) -> bool {
        self.anchor_mac == self.expected_mac(key)
    }
}

/// Recomputes each chain's MACs, and holds the logged `heads` against what is stored: the
/// first problem found, or what was checked. A head of a chain with no record read (outside
/// the range checked) says nothing.
pub(crate) fn check(
    key: &AuditKey,
    chains: impl IntoIterator<Item = ChainRows>,
    heads: &[Head],
) -> Result<Checked, Problem> {
    let mut logged: BTreeMap<&str, Vec<&Head>> = BTreeMap::new();
    for head in heads {
        logged.entry(head.chain.as_str()).or_default().push(head);
    }
    let mut checked = Checked::default();
    for chain in chains {
        let Some(last) = check_chain(key, &chain)? else {
            continue;
        };
        for head in logged.get(chain.chain.as_str()).into_iter().flatten() {
            if last < head.seq {
                return Err(Problem::Truncated {
                    chain: chain.chain.clone(),
                    found: last,
                    logged: head.seq,
                });
            }
            let row = chain.rows.iter().find(|row| row.seq == head.seq);
            if row.is_some_and(|row| row.mac != head.mac) {
                return Err(Problem::HeadMismatch {
                    chain: chain.chain.clone(),
                    seq: head.seq,
                });
            }
        }
        checked.chains += 1;
        checked.records += chain.rows.len() as u64;
        for at in chain.rows.iter().map(|row| row.record.at) {
            checked.first = Some(checked.first.map_or(at, |first| first.min(at)));
            checked.last = Some(checked.last.map_or(at, |last| last.max(at)));
        }
    }
    Ok(checked)
}

/// One chain: the seq of its last record when every record holds.
fn check_chain(key: &AuditKey, chain: &ChainRows) -> Result<Option<i64>, Problem> {
    let name = || chain.chain.clone();
    let Some(first) = chain.rows.first() else {
        return Ok(None);
    };
    let (mut seq, mut previous) = match (&chain.anchor, first.seq) {
        (_, 1) => (0, GENESIS),
        (Some(Anchor::Record { seq, mac }), _) => (*seq, decode_mac(mac).unwrap_or(GENESIS)),
        (Some(Anchor::Purged(anchor)), _) if anchor.holds(key) => {
            (anchor.seq, decode_mac(&anchor.mac).unwrap_or(GENESIS))
        }
        (Some(Anchor::Purged(anchor)), _) => {
            return Err(Problem::ForgedAnchor {
                chain: name(),
                seq: anchor.seq,
            });
        }
        (None, seq) => {
            return Err(Problem::Removed {
                chain: name(),
                from: 1,
                to: seq - 1,
            });
        }
    };
    let mac_of = |row: &ChainedRecord, seq: i64, previous: &[u8; 32]| {
        key.chain_mac(&encode(&chain.chain, seq, &row.record), previous)
    };
    for (index, row) in chain.rows.iter().enumerate() {
        if row.seq > seq + 1 {
            return Err(Problem::Removed {
                chain: name(),
                from: seq + 1,
                to: row.seq - 1,
            });
        }
        let expected = mac_of(row, row.seq, &previous);
        if decode_mac(&row.mac) == Some(expected) {
            seq = row.seq;
            previous = expected;
            continue;
        }
        // Changed in place, the next record still follows its stored MAC; inserted (the
        // records after it renumbered), the next one follows the record before it.
        let seq = row.seq;
        let Some(next) = chain.rows.get(index + 1) else {
            return Err(Problem::LastForged { chain: name(), seq });
        };
        let follows =
            |number: i64, after: &[u8; 32]| decode_mac(&next.mac) == Some(mac_of(next, number, after));
        let stored = decode_mac(&row.mac).unwrap_or(GENESIS);
        return Err(if follows(next.seq, &stored) {
            Problem::Changed { chain: name(), seq }
        } else if follows(next.seq - 1, &previous) {
            Problem::Inserted { chain: name(), seq }
        } else {
            Problem::Changed { chain: name(), seq }
        });
    }
    Ok(Some(seq))
}

fn decode_mac(mac: &str) -> Option<[u8; 32]> {
    hex::decode(mac).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;
    use crate::audit::{OUTCOME_OK, Work};

    fn key() -> AuditKey {
        AuditKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    fn record(n: usize) -> AccessRecord {
        AccessRecord {
            at: crate::domain::stored_precision(Utc::now()),
            caller: "signup".into(),
            actor: n.is_multiple_of(2).then(|| "ops.kim".to_owned()),
            peer: Some("10.0.0.7".into()),
            method: "Verify".into(),
            purpose: Some("SIGNUP".into()),
            work: Work::Lookup,
            account: Some(format!("acct-{n}")),
            person: Some(format!("{n:064x}")),
            outcome: OUTCOME_OK.into(),
            trace_id: None,
        }
    }

    /// A chain of `n` records written in two statements, and its logged head.
    fn written(n: usize) -> (ChainRows, Head) {
        let key = key();
        let mut chain = Chain::start();
        let mut rows = Vec::new();
        for part in [(0..n / 2), (n / 2..n)] {
            let extension = chain.extend(&key, part.map(record).collect());
            rows.extend(extension.records.clone());
            chain.advance(extension);
        }
        let head = chain.head().unwrap();
        let rows = ChainRows {
            chain: rows[0].chain.clone(),
            anchor: None,
            rows,
        };
        (rows, head)
    }

    #[test]
    fn a_written_chain_holds_and_ends_at_its_logged_head() {
        let (rows, head) = written(6);
        assert_eq!(head.seq, 6);
        assert_eq!(
            rows.rows.iter().map(|row| row.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        let checked = check(&key(), [rows], &[head]).unwrap();
        assert_eq!((checked.chains, checked.records), (1, 6));
    }

    #[test]
    fn an_extension_not_written_leaves_no_gap() {
        let key = key();
        let mut chain = Chain::start();
        let lost = chain.extend(&key, vec![record(0), record(1)]);
        drop(lost);
        let written = chain.extend(&key, vec![record(2)]);
        assert_eq!(written.records[0].seq, 1);
        let rows = written.records.clone();
        chain.advance(written);
        assert_eq!(chain.head().unwrap().seq, 1);
        let rows = ChainRows {
            chain: rows[0].chain.clone(),
            anchor: None,
            rows,
        };
        check(&key, [rows], &[]).unwrap();
    }

    #[test]
    fn a_changed_record_is_found() {
        let (mut rows, _) = written(6);
        rows.rows[2].record.outcome = "UNDERAGE".into();
        let chain = rows.chain.clone();
        assert_eq!(
            check(&key(), [rows], &[]),
            Err(Problem::Changed { chain, seq: 3 })
        );
    }

    #[test]
    fn an_inserted_record_is_found() {
        let (mut rows, _) = written(6);
        let chain = rows.chain.clone();
        let mut forged = rows.rows[1].clone();
        forged.record.account = Some("someone-else".into());
        rows.rows.insert(2, forged);
        for (index, row) in rows.rows.iter_mut().enumerate() {
            row.seq = index as i64 + 1;
        }
        assert_eq!(
            check(&key(), [rows], &[]),
            Err(Problem::Inserted { chain, seq: 3 })
        );
    }

    #[test]
    fn removed_records_are_found_in_the_middle_and_at_the_start() {
        let (rows, _) = written(6);
        let chain = rows.chain.clone();
        let mut middle = rows.clone();
        middle.rows.remove(3);
        assert_eq!(
            check(&key(), [middle], &[]),
            Err(Problem::Removed {
                chain: chain.clone(),
                from: 4,
                to: 4
            })
        );
        let mut start = rows;
        start.rows.drain(..2);
        assert_eq!(
            check(&key(), [start], &[]),
            Err(Problem::Removed {
                chain,
                from: 1,
                to: 2
            })
        );
    }

    #[test]
    fn a_cut_tail_is_found_against_the_logged_head() {
        let (mut rows, head) = written(6);
        let chain = rows.chain.clone();
        rows.rows.truncate(4);
        check(&key(), [rows.clone()], &[]).expect("alone, a cut chain still holds");
        assert_eq!(
            check(&key(), [rows], &[head]),
            Err(Problem::Truncated {
                chain,
                found: 4,
                logged: 6
            })
        );
    }

    #[test]
    fn a_forged_last_record_and_a_forged_head_are_found() {
        let (mut rows, head) = written(6);
        let chain = rows.chain.clone();
        let mut appended = rows.clone();
        let mut extra = appended.rows[5].clone();
        extra.seq = 7;
        appended.rows.push(extra);
        assert_eq!(
            check(&key(), [appended], &[]),
            Err(Problem::LastForged {
                chain: chain.clone(),
                seq: 7
            })
        );
        let mut other = head.clone();
        other.mac = "00".repeat(32);
        assert_eq!(
            check(&key(), [rows.clone()], &[other]),
            Err(Problem::HeadMismatch {
                chain: chain.clone(),
                seq: 6
            })
        );
        rows.rows[5].record.caller = "another".into();
        assert_eq!(
            check(&key(), [rows], &[head]),
            Err(Problem::LastForged { chain, seq: 6 })
        );
    }

    #[test]
    fn a_check_may_start_inside_a_chain_from_its_anchor() {
        let (rows, head) = written(6);
        let anchor = Anchor::Record {
            seq: rows.rows[2].seq,
            mac: rows.rows[2].mac.clone(),
        };
        let later = ChainRows {
            chain: rows.chain.clone(),
            anchor: Some(anchor),
            rows: rows.rows[3..].to_vec(),
        };
        assert_eq!(check(&key(), [later], &[head]).unwrap().records, 3);
    }

    #[test]
    fn a_purged_start_holds_with_its_anchor_and_not_with_a_made_up_one() {
        let (rows, head) = written(6);
        let chain = rows.chain.clone();
        let purged = |anchor: PurgeAnchor| ChainRows {
            chain: chain.clone(),
            anchor: Some(Anchor::Purged(anchor)),
            rows: rows.rows[2..].to_vec(),
        };
        let made = PurgeAnchor::new(&key(), chain.clone(), 2, rows.rows[1].mac.clone(), Utc::now());
        assert_eq!(check(&key(), [purged(made.clone())], &[head]).unwrap().records, 4);
        let mut made_up = made.clone();
        made_up.anchor_mac = "00".repeat(32);
        assert_eq!(
            check(&key(), [purged(made_up)], &[]),
            Err(Problem::ForgedAnchor {
                chain: chain.clone(),
                seq: 2
            })
        );
        // An anchor for one place does not vouch for another.
        let mut moved = made;
        moved.seq = 1;
        assert!(check(&key(), [purged(moved)], &[]).is_err());
    }

    #[test]
    fn heads_are_read_from_json_and_text_logs_the_last_of_each_chain() {
        let log = format!(
            "{}\n{}\n{}\nunrelated line seq=9\n",
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"access record chain head","chain":"aa","seq":3,"mac":"m3"}}"#,
            "2026-12-07T00:00:00Z  INFO access record chain head chain=aa seq=5 mac=m5",
            "2026-12-07T00:00:01Z  INFO access record chain head chain=bb seq=2 mac=m2",
        );
        let heads = Head::in_log(&log);
        assert_eq!(
            heads,
            [
                Head {
                    chain: "aa".into(),
                    seq: 5,
                    mac: "m5".into()
                },
                Head {
                    chain: "bb".into(),
                    seq: 2,
                    mac: "m2".into()
                },
            ]
        );
    }

    #[test]
    fn another_key_finds_every_record_forged() {
        let (rows, _) = written(2);
        let other = AuditKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(check(&other, [rows], &[]).is_err());
    }
}
