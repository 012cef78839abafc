//! `audit report`: the monthly review of the access records (the article asks for one at least
//! every month). What was done, by whom; what was refused and why; the callers and actors whose
//! volume or refusal rate departs from their own usual; and the exports made. Pure: it is handed
//! counts and export records, so each rule is tested on numbers, and it prints no pseudonym or
//! account, only counts.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use super::{AccessRecord, OUTCOME_OK, Work};

/// How many months before the reviewed one make a caller's or an actor's usual.
pub(crate) const HISTORY_MONTHS: usize = 3;
/// A volume at least this many times the usual departs from it.
const VOLUME_FACTOR: u128 = 3;
/// With no record in the months before, this many records in the month depart from nothing.
const NEW_VOLUME: u64 = 100;
/// A refusal rate this many percentage points above the usual departs from it.
const REFUSAL_RISE_POINTS: i128 = 20;

/// A calendar month, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Month {
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Month {
    /// `YYYY-MM`, nothing else.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let invalid = || format!("not a month as YYYY-MM (e.g. 2026-11): {raw:?}");
        let digits = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
        let (year, month) = raw.split_once('-').ok_or_else(invalid)?;
        if !digits(year, 4) || !digits(month, 2) {
            return Err(invalid());
        }
        let month = Self {
            year: year.parse().map_err(|_| invalid())?,
            month: month.parse().map_err(|_| invalid())?,
        };
        if !(1..=12).contains(&month.month) {
            return Err(invalid());
        }
        Ok(month)
    }

    /// Its first instant.
    pub(crate) fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("the first of a month in 0000-9999 is a time")
    }

    /// The first instant of the next month.
    pub(crate) fn end(self) -> DateTime<Utc> {
        let next = match self.month {
            12 => Self {
                year: self.year + 1,
                month: 1,
            },
            month => Self {
                month: month + 1,
                ..self
            },
        };
        next.start()
    }

    /// The month before.
    pub(crate) fn before(self) -> Self {
        match self.month {
            1 => Self {
                year: self.year - 1,
                month: 12,
            },
            month => Self {
                month: month - 1,
                ..self
            },
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// How many records one caller, actor, kind of work and outcome have in a span: what the store
/// counts for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) caller: String,
    pub(crate) actor: Option<String>,
    pub(crate) work: Work,
    pub(crate) outcome: String,
    pub(crate) records: u64,
}

/// Whose usual a month is held against: each caller, and each actor (across callers).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Party {
    Caller(String),
    Actor(String),
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Caller(name) => write!(f, "caller {name}"),
            Self::Actor(name) => write!(f, "actor {name}"),
        }
    }
}

/// Records and, of them, refusals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Volume {
    records: u64,
    refused: u64,
}

/// How a month departs from a party's usual.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    /// At least [`VOLUME_FACTOR`] times the mean of the months before.
    Volume,
    /// At least [`NEW_VOLUME`] records and none in the months before.
    New,
    /// A refusal rate at least [`REFUSAL_RISE_POINTS`] points above the months before's.
    Refusals,
}

/// A party whose month departs from its usual.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Departure {
    party: Party,
    month: Volume,
    /// Summed over the months before.
    before: Volume,
    flags: Vec<Flag>,
}

/// The monthly review, printed for a human reviewer by its `Display`.
#[derive(Clone, Debug)]
pub(crate) struct Review {
    month: Month,
    history_months: usize,
    /// Records per caller, by kind of work in [`Work::ALL`]'s order.
    per_caller: BTreeMap<String, [u64; Work::ALL.len()]>,
    /// Records refused, by reason.
    refusals: BTreeMap<String, u64>,
    departures: Vec<Departure>,
    /// The records the exports of the month left.
    exports: Vec<AccessRecord>,
}

/// The review of `month` (`tallies`) against the months before it (`history`, one set of
/// tallies each), with the records of the exports made in it.
pub(crate) fn review(
    month: Month,
    tallies: &[Tally],
    history: &[Vec<Tally>],
    exports: Vec<AccessRecord>,
) -> Review {
    let mut per_caller: BTreeMap<String, [u64; Work::ALL.len()]> = BTreeMap::new();
    let mut refusals = BTreeMap::new();
    for tally in tallies {
        let column = Work::ALL
            .iter()
            .position(|work| *work == tally.work)
            .unwrap_or_default();
        per_caller.entry(tally.caller.clone()).or_default()[column] += tally.records;
        if tally.outcome != OUTCOME_OK {
            *refusals.entry(tally.outcome.clone()).or_default() += tally.records;
        }
    }
    let mut before = BTreeMap::<Party, Volume>::new();
    for (party, volume) in history.iter().flat_map(|month| volumes(month)) {
        let summed = before.entry(party).or_default();
        summed.records += volume.records;
        summed.refused += volume.refused;
    }
    let months = history.len().max(1) as u64;
    let departures = volumes(tallies)
        .into_iter()
        .filter_map(|(party, month)| {
            let before = before.get(&party).copied().unwrap_or_default();
            let flags = departs(month, before, months);
            (!flags.is_empty()).then_some(Departure {
                party,
                month,
                before,
                flags,
            })
        })
        .collect();
    Review {
        month,
        history_months: history.len(),
        per_caller,
        refusals,
        departures,
        exports,
    }
}

/// Each caller's and each named actor's records and refusals.
fn volumes(tallies: &[Tally]) -> BTreeMap<Party, Volume> {
    let mut volumes = BTreeMap::<Party, Volume>::new();
    for tally in tallies {
        let refused = if tally.outcome == OUTCOME_OK {
            0
        } else {
            tally.records
        };
        let actor = tally.actor.clone().map(Party::Actor);
        for party in [Some(Party::Caller(tally.caller.clone())), actor]
            .into_iter()
            .flatten()
        {
            let volume = volumes.entry(party).or_default();
            volume.records += tally.records;
            volume.refused += refused;
        }
    }
    volumes
}

/// How `month` departs from `before` (summed over `months`), in integers so a threshold met
/// exactly is met.
fn departs(month: Volume, before: Volume, months: u64) -> Vec<Flag> {
    if before.records == 0 {
        return if month.records >= NEW_VOLUME {
            vec![Flag::New]
        } else {
            Vec::new()
        };
    }
    let mut flags = Vec::new();
    // records ≥ FACTOR × (before / months)
    if u128::from(month.records) * u128::from(months) >= VOLUME_FACTOR * u128::from(before.records) {
        flags.push(Flag::Volume);
    }
    // refused / records − refused before / records before ≥ POINTS / 100
    let (records, refused) = (i128::from(month.records), i128::from(month.refused));
    let (records_before, refused_before) = (i128::from(before.records), i128::from(before.refused));
    let rise = 100 * (refused * records_before - refused_before * records);
    if records > 0 && rise >= REFUSAL_RISE_POINTS * records * records_before {
        flags.push(Flag::Refusals);
    }
    flags
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl fmt::Display for Review {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.month.start(), self.month.end());
        writeln!(
            f,
            "Access records of {} ({} to {}, UTC), against the {} months before",
            self.month,
            from.format("%Y-%m-%d"),
            to.format("%Y-%m-%d"),
            self.history_months
        )?;
        self.write_per_caller(f)?;
        self.write_refusals(f)?;
        self.write_departures(f)?;
        self.write_exports(f)
    }
}

impl Review {
    /// Records per caller and kind of work, with totals.
    fn write_per_caller(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nRecords per caller and kind of work")?;
        if self.per_caller.is_empty() {
            writeln!(f, "  none")?;
        } else {
            let width = self.per_caller.keys().map(|caller| caller.chars().count()).max();
            let width = width.unwrap_or_default().max("caller".len());
            let row = |f: &mut fmt::Formatter<'_>, name: &str, counts: &[u64]| {
                write!(f, "  {name:<width$}")?;
                for count in counts {
                    write!(f, " {count:>9}")?;
                }
                writeln!(f, " {:>9}", counts.iter().sum::<u64>())
            };
            write!(f, "  {:<width$}", "caller")?;
            for work in Work::ALL {
                write!(f, " {:>9}", work.as_str())?;
            }
            writeln!(f, " {:>9}", "total")?;
            let mut totals = [0; Work::ALL.len()];
            for (caller, counts) in &self.per_caller {
                row(f, caller, counts)?;
                for (total, count) in totals.iter_mut().zip(counts) {
                    *total += count;
                }
            }
            row(f, "total", &totals)?;
        }
        Ok(())
    }

    /// Refusals by reason.
    fn write_refusals(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nRefusals by reason")?;
        if self.refusals.is_empty() {
            writeln!(f, "  none")?;
        }
        for (reason, count) in &self.refusals {
            writeln!(f, "  {reason:<32} {count:>9}")?;
        }
        Ok(())
    }

    /// The callers and actors departing from their usual, and why.
    fn write_departures(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "\nDepartures from the usual (the mean of the {} months before)\n  \
             flagged: volume ≥ {VOLUME_FACTOR}× the usual; new, ≥ {NEW_VOLUME} records with none \
             before; refusals, a rate ≥ {REFUSAL_RISE_POINTS} points above the usual",
            self.history_months
        )?;
        if self.departures.is_empty() {
            writeln!(f, "  none")?;
        }
        let months = self.history_months.max(1) as f64;
        for departure in &self.departures {
            let (month, before) = (departure.month, departure.before);
            write!(
                f,
                "  {}: {} records, {:.1}% refused; usual {:.1} records, {:.1}% refused:",
                departure.party,
                month.records,
                percent(month.refused, month.records),
                before.records as f64 / months,
                percent(before.refused, before.records),
            )?;
            let flags: Vec<&str> = departure
                .flags
                .iter()
                .map(|flag| match flag {
                    Flag::Volume => "volume",
                    Flag::New => "new",
                    Flag::Refusals => "refusals",
                })
                .collect();
            writeln!(f, " {}", flags.join(", "))?;
        }
        Ok(())
    }

    /// The exports made, for their reasons to be checked.
    fn write_exports(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nExports (check each one's reason)")?;
        if self.exports.is_empty() {
            writeln!(f, "  none")?;
        }
        for export in &self.exports {
            let filters: Vec<&str> = [
                export.account.as_ref().map(|_| "an account"),
                export.person.as_ref().map(|_| "a person"),
            ]
            .into_iter()
            .flatten()
            .collect();
            let filters = if filters.is_empty() {
                "any person".to_owned()
            } else {
                filters.join(" and ")
            };
            writeln!(
                f,
                "  {} by {} for {}: records of {filters}; {}",
                export.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                export.actor.as_deref().unwrap_or("(no actor)"),
                export.purpose.as_deref().unwrap_or("(no reason)"),
                export.outcome,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(caller: &str, actor: Option<&str>, outcome: &str, records: u64) -> Tally {
        Tally {
            caller: caller.into(),
            actor: actor.map(Into::into),
            work: Work::Lookup,
            outcome: outcome.into(),
            records,
        }
    }

    fn month() -> Month {
        Month::parse("2026-11").unwrap()
    }

    /// Three months of the same tallies.
    fn usual(tallies: Vec<Tally>) -> Vec<Vec<Tally>> {
        vec![tallies; HISTORY_MONTHS]
    }

    fn flags(review: &Review) -> Vec<(Party, Vec<Flag>)> {
        review
            .departures
            .iter()
            .map(|departure| (departure.party.clone(), departure.flags.clone()))
            .collect()
    }

    #[test]
    fn a_caller_whose_lookups_jump_tenfold_is_flagged_and_a_steady_one_is_not() {
        let history = usual(vec![
            tally("signup", None, OUTCOME_OK, 10),
            tally("steady", None, OUTCOME_OK, 10),
        ]);
        let now = [
            tally("signup", None, OUTCOME_OK, 100),
            tally("steady", None, OUTCOME_OK, 12),
        ];
        let review = review(month(), &now, &history, Vec::new());
        assert_eq!(
            flags(&review),
            [(Party::Caller("signup".into()), vec![Flag::Volume])]
        );
        let printed = review.to_string();
        assert!(
            printed.contains(
                "caller signup: 100 records, 0.0% refused; usual 10.0 records, 0.0% refused: volume"
            ),
            "{printed}"
        );
    }

    #[test]
    fn volume_departs_at_three_times_the_mean_of_the_months_before() {
        // 10, 0 and 20 before: a mean of 10.
        let history = vec![
            vec![tally("a", None, OUTCOME_OK, 10)],
            Vec::new(),
            vec![tally("a", None, OUTCOME_OK, 20)],
        ];
        let at = |records| {
            flags(&review(
                month(),
                &[tally("a", None, OUTCOME_OK, records)],
                &history,
                vec![],
            ))
        };
        assert_eq!(at(30), [(Party::Caller("a".into()), vec![Flag::Volume])]);
        assert_eq!(at(29), []);
    }

    #[test]
    fn without_history_a_hundred_records_depart() {
        let at = |records| {
            flags(&review(
                month(),
                &[tally("new", None, OUTCOME_OK, records)],
                &usual(vec![]),
                vec![],
            ))
        };
        assert_eq!(at(100), [(Party::Caller("new".into()), vec![Flag::New])]);
        assert_eq!(at(99), []);
    }

    #[test]
    fn a_refusal_rate_twenty_points_up_departs() {
        // 10% refused before.
        let history = usual(vec![
            tally("a", None, OUTCOME_OK, 90),
            tally("a", None, "NOT_CERTIFIED", 10),
        ]);
        let at = |refused| {
            let now = [
                tally("a", None, OUTCOME_OK, 100 - refused),
                tally("a", None, "NOT_CERTIFIED", refused),
            ];
            flags(&review(month(), &now, &history, vec![]))
        };
        assert_eq!(at(30), [(Party::Caller("a".into()), vec![Flag::Refusals])]);
        assert_eq!(at(29), []);
    }

    #[test]
    fn actors_are_held_against_their_own_usual_across_callers() {
        let history = usual(vec![
            tally("tool", Some("ops.kim"), OUTCOME_OK, 5),
            tally("tool", Some("ops.lee"), OUTCOME_OK, 50),
            tally("tool", None, OUTCOME_OK, 45),
        ]);
        // The caller's volume is as usual; one of its actors' is not.
        let now = [
            tally("tool", Some("ops.kim"), OUTCOME_OK, 10),
            tally("other", Some("ops.kim"), "UNDERAGE", 10),
            tally("tool", Some("ops.lee"), OUTCOME_OK, 40),
            tally("tool", None, OUTCOME_OK, 45),
        ];
        assert_eq!(
            flags(&review(month(), &now, &history, vec![])),
            [(Party::Actor("ops.kim".into()), vec![Flag::Volume, Flag::Refusals])]
        );
    }

    #[test]
    fn the_printed_review_counts_and_lists_exports_without_a_pseudonym_or_an_account() {
        let now = [
            Tally {
                work: Work::Entry,
                ..tally("signup", None, OUTCOME_OK, 7)
            },
            tally("signup", None, "NOT_CERTIFIED", 2),
            tally("support", Some("ops.kim"), OUTCOME_OK, 3),
        ];
        let export = AccessRecord {
            at: Utc.with_ymd_and_hms(2026, 11, 3, 1, 2, 3).unwrap(),
            caller: "operator".into(),
            actor: Some("auditor.lee".into()),
            peer: None,
            method: super::super::export::EXPORT_METHOD.into(),
            purpose: Some("subject-request".into()),
            work: Work::Download,
            account: Some("acct-of-someone".into()),
            person: Some("ab".repeat(32)),
            outcome: OUTCOME_OK.into(),
            trace_id: None,
        };
        let printed = review(month(), &now, &usual(vec![]), vec![export]).to_string();
        for expected in [
            "Access records of 2026-11 (2026-11-01 to 2026-12-01, UTC), against the 3 months before",
            "  caller     lookup     entry    change  deletion  download     total",
            "  signup          2         7         0         0         0         9",
            "  support         3         0         0         0         0         3",
            "  total           5         7         0         0         0        12",
            "  NOT_CERTIFIED                            2",
            "  2026-11-03T01:02:03Z by auditor.lee for subject-request: records of an account and a person; OK",
        ] {
            assert!(printed.contains(expected), "{expected:?} in\n{printed}");
        }
        assert!(!printed.contains("acct-of-someone") && !printed.contains(&"ab".repeat(32)));
    }

    #[test]
    fn months_are_yyyy_mm_and_span_their_days_in_utc() {
        let january = Month::parse("2027-01").unwrap();
        assert_eq!(january.before().to_string(), "2026-12");
        assert_eq!(january.before().end(), january.start());
        assert_eq!(january.start().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(
            Month::parse("2026-12").unwrap().end().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        for bad in [
            "2026-1",
            "2026-13",
            "2026-00",
            "26-11",
            "2026-11-01",
            "2026/11",
            "",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad:?}");
        }
    }
}
