//! The monthly review of the access records (issue 30): `audit export` hands over exactly the
//! records asked for, as JSON lines, after leaving its own chained `download` record (and prints
//! nothing when it cannot); `audit report` flags a caller whose volume departs from its usual;
//! `rekey` and `purge` each leave one record naming their actor.

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    audit::{AccessRecord, OUTCOME_OK, Work, export::Selection},
    grpc::proto::check_duplicate_request::Key,
    sandbox::identities::{ADULT, ci_for},
    store::StoreError,
};
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeZone, Utc};
use sea_orm::DbBackend;

use crate::{
    access_records::{audit_verify, execute, operator_command, pseudonym, records, rows},
    helpers::{App, TEST_INDEX_KEY, TestApp, spawn_app, test_encryption_keys},
    sessions::count,
};

/// What a command printed: its exit, stdout and stderr.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(app: &TestApp, args: &[&str]) -> Ran {
    run_with(app, args, &[])
}

/// An operator command with `env` in its environment.
fn run_with(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let output = operator_command(app)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `audit export` of `[from, to)` by `auditor.lee` for the monthly review, with `filters`
/// (and `env` in its environment): each line parsed as JSON.
fn export(
    app: &TestApp,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filters: &[&str],
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let (from, to) = (rfc3339(from), rfc3339(to));
    let mut args = vec![
        "audit",
        "export",
        "--actor",
        "auditor.lee",
        "--reason",
        "monthly-review",
        "--from",
        &from,
        "--to",
        &to,
    ];
    args.extend(filters);
    let ran = run_with(app, &args, env);
    assert!(ran.success, "{}", ran.stderr);
    // Its logs on stderr, its chain's head among them before it exits.
    assert!(
        ran.stderr.contains("access record chain head") && ran.stderr.contains(" seq=1 "),
        "{}",
        ran.stderr
    );
    let ci = ci_for("hong");
    assert!(
        !ran.stdout.contains(&ci) && !ran.stderr.contains(&ci),
        "the CI printed"
    );
    ran.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// A record as a caller other than the tests' anonymous one would leave it.
fn record(caller: &str, account: &str, at: DateTime<Utc>) -> AccessRecord {
    AccessRecord {
        at,
        caller: caller.into(),
        actor: Some("ops.kim".into()),
        peer: Some("10.0.0.9".into()),
        method: "CheckDuplicate".into(),
        purpose: None,
        work: Work::Lookup,
        account: Some(account.into()),
        person: None,
        outcome: OUTCOME_OK.into(),
        trace_id: None,
    }
}

/// The (chain, seq) of every stored record `pick` keeps, ordered as an export orders them.
async fn stored(app: &TestApp, pick: impl Fn(&AccessRecord) -> bool) -> Vec<(String, i64)> {
    let mut picked: Vec<_> = rows(app)
        .await
        .into_iter()
        .filter(|row| pick(&row.record))
        .map(|row| (row.record.at, row.chain, row.seq))
        .collect();
    picked.sort();
    picked.into_iter().map(|(_, chain, seq)| (chain, seq)).collect()
}

/// The stored records `pick` keeps, in the order of their time.
async fn records_where(app: &TestApp, pick: impl Fn(&AccessRecord) -> bool) -> Vec<AccessRecord> {
    let mut picked: Vec<_> = records(app)
        .await
        .into_iter()
        .filter(|record| pick(record))
        .collect();
    picked.sort_by_key(|record| record.at);
    picked
}

fn places(lines: &[serde_json::Value]) -> Vec<(String, i64)> {
    lines
        .iter()
        .map(|line| {
            (
                line["chain"].as_str().unwrap().to_owned(),
                line["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn audit_export_hands_over_exactly_the_records_asked_for_and_leaves_a_download_record_each() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    app.unlink("acct-2").await;
    for account in ["acct-1", "acct-3"] {
        let at = Utc::now().trunc_subsecs(6);
        app.store
            .record_access(record("support", account, at))
            .await
            .unwrap();
    }
    let from = Utc::now() - chrono::Duration::days(1);
    let to = Utc::now() + chrono::Duration::milliseconds(1);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before = stored(&app, |_| true).await;
    assert_eq!(before.len(), 5);

    let by_caller = export(&app, from, to, &["--caller", "support"], &[]);
    assert_eq!(
        places(&by_caller),
        stored(&app, |record| record.caller == "support").await
    );
    assert_eq!(by_caller.len(), 2);
    let by_account = export(&app, from, to, &["--account", "acct-1"], &[]);
    assert_eq!(
        places(&by_account),
        stored(&app, |record| record.account.as_deref() == Some("acct-1")
            && record.method != "audit export")
        .await
    );
    assert_eq!(by_account.len(), 2);
    let hong = pseudonym("hong");
    let ci = ci_for("hong");
    // The CI from the environment, where `ps` does not show it.
    let by_person = export(&app, from, to, &[], &[("AUDIT_PERSON_CI", ci.as_str())]);
    assert_eq!(
        places(&by_person),
        stored(&app, |record| record.person.as_deref() == Some(hong.as_str())
            && record.method != "audit export")
        .await
    );
    assert_eq!(
        by_person
            .iter()
            .map(|line| line["method"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Verify", "CheckDuplicate"]
    );
    let everything = export(&app, from, to, &[], &[]);
    assert_eq!(
        places(&everything),
        before,
        "ordered by time, then chain and number"
    );

    // Each line holds every column, absent ones null, its time to the microsecond in UTC.
    let line = &by_caller[0];
    let row = rows(&app)
        .await
        .into_iter()
        .find(|row| row.record.caller == "support")
        .unwrap();
    assert_eq!(
        line,
        &serde_json::json!({
            "chain": row.chain, "seq": row.seq, "at": rfc3339(row.record.at),
            "caller": "support", "actor": "ops.kim", "peer": "10.0.0.9",
            "method": "CheckDuplicate", "purpose": null, "work": "lookup", "account_id": "acct-1",
            "person": null, "outcome": "OK", "trace_id": null, "mac": row.mac,
        })
    );
    let at = line["at"].as_str().unwrap();
    assert!(
        at.ends_with('Z') && at.len() == "2026-12-07T00:00:00.000000Z".len(),
        "{at}"
    );

    // Four exports, four download records naming the actor and the filters, never the CI.
    let downloads = records_where(&app, |record| record.method == "audit export").await;
    assert_eq!(
        downloads
            .iter()
            .map(|record| (record.account.as_deref(), record.person.as_deref()))
            .collect::<Vec<_>>(),
        [
            (None, None),
            (Some("acct-1"), None),
            (None, Some(hong.as_str())),
            (None, None)
        ]
    );
    for download in &downloads {
        assert_eq!(
            (
                download.caller.as_str(),
                download.actor.as_deref(),
                download.work,
                download.outcome.as_str(),
                download.peer.as_deref()
            ),
            ("operator", Some("auditor.lee"), Work::Download, OUTCOME_OK, None)
        );
        assert_eq!(download.purpose.as_deref(), Some("monthly-review"), "the reason");
    }
    // Chained like any other: a chain per export.
    let (held, printed) = audit_verify(&app, None);
    assert!(held && printed.contains("9 records in 5 chains"), "{printed}");

    // The month's report lists them.
    let month = downloads[0].at.format("%Y-%m").to_string();
    let ran = run(&app, &["audit", "report", "--month", &month]);
    assert!(ran.success, "{}", ran.stderr);
    assert_eq!(
        ran.stdout
            .matches("by auditor.lee for monthly-review: records of ")
            .count(),
        4,
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("by auditor.lee for monthly-review: records of a person; OK"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn an_export_whose_record_cannot_be_written_prints_nothing_and_fails() {
    let app = spawn_app().await;
    app.unlink("acct-1").await;
    let (from, to) = ("2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z");
    let refuse = match app.store.backend() {
        DbBackend::Postgres => {
            execute(
                &app,
                "CREATE FUNCTION refuse_records() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'records refused'; END $$",
            )
            .await;
            "CREATE TRIGGER refuse_records BEFORE INSERT ON access_records \
             FOR EACH ROW EXECUTE FUNCTION refuse_records()"
        }
        _ => {
            "CREATE TRIGGER refuse_records BEFORE INSERT ON access_records \
             BEGIN SELECT RAISE(ABORT, 'records refused'); END"
        }
    };
    execute(&app, refuse).await;
    let ran = run(
        &app,
        &[
            "audit",
            "export",
            "--actor",
            "auditor.lee",
            "--reason",
            "investigation",
            "--from",
            from,
            "--to",
            to,
        ],
    );
    assert!(!ran.success);
    assert_eq!(ran.stdout, "", "nothing exported");
    assert!(
        ran.stderr.contains("access record was not written"),
        "{}",
        ran.stderr
    );

    // Without a usable actor or reason, nothing starts.
    let (actor, reason) = (["--actor", "auditor.lee"], ["--reason", "audit"]);
    for (refused, given) in [
        ("--actor", [&["--actor", "kim lee"][..], &reason].concat()),
        ("--actor", reason.to_vec()),
        ("--reason", [&actor[..], &["--reason", "curiosity"]].concat()),
        ("--reason", actor.to_vec()),
    ] {
        let mut args = vec!["audit", "export", "--from", from, "--to", to];
        args.extend(given);
        let ran = run(&app, &args);
        assert!(!ran.success && ran.stdout.is_empty());
        assert!(ran.stderr.contains(refused), "{refused}: {}", ran.stderr);
    }
    assert_eq!(records(&app).await.len(), 1, "no download record");
}

#[tokio::test]
async fn audit_report_flags_a_caller_whose_lookups_jump_tenfold() {
    let app = spawn_app().await;
    // August to October: ten look-ups a month by each caller, one refused; November: a
    // hundred by `signup`, `steady` as usual. And one on the first instant of December.
    let mut made = Vec::new();
    for (month, signup, steady) in [(8, 10, 10), (9, 10, 10), (10, 10, 10), (11, 100, 10)] {
        let first = Utc.with_ymd_and_hms(2026, month, 2, 3, 4, 5).unwrap();
        for (caller, count) in [("signup", signup), ("steady", steady)] {
            for n in 0..count {
                let refused = caller == "steady" && n == 0;
                made.push(AccessRecord {
                    person: Some(pseudonym("hong")),
                    outcome: if refused { "NOT_CERTIFIED" } else { OUTCOME_OK }.into(),
                    ..record(caller, &format!("acct-{n}"), first + chrono::Duration::seconds(n))
                });
            }
        }
    }
    let december = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    made.push(record("signup", "acct-december", december));
    let written = made.into_iter().map(|record| app.store.record_access(record));
    for written in futures::future::join_all(written).await {
        written.unwrap();
    }

    let ran = run(&app, &["audit", "report", "--month", "2026-11"]);
    assert!(ran.success, "{}", ran.stderr);
    let report = ran.stdout;
    for expected in [
        "Access records of 2026-11 (2026-11-01 to 2026-12-01, UTC), against the 3 months before",
        &format!(
            "  signup {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            100, 0, 0, 0, 0, 100
        ),
        &format!("  steady {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", 10, 0, 0, 0, 0, 10),
        &format!("  {:<32} {:>9}", "NOT_CERTIFIED", 1),
        "  caller signup: 100 records, 0.0% refused; usual 10.0 records, 0.0% refused: volume",
        "  actor ops.kim: 110 records, 0.9% refused; usual 20.0 records, 5.0% refused: volume",
    ] {
        assert!(report.contains(expected), "{expected:?} in\n{report}");
    }
    assert!(!report.contains("caller steady:"), "{report}");
    for personal in [pseudonym("hong"), "acct-".to_owned()] {
        assert!(!report.contains(&personal), "{personal} in\n{report}");
    }
    // A month that is not YYYY-MM is refused.
    let ran = run(&app, &["audit", "report", "--month", "2026-13"]);
    assert!(!ran.success && ran.stderr.contains("YYYY-MM"), "{}", ran.stderr);
}

#[tokio::test]
async fn rekey_and_purge_each_leave_one_record_naming_their_actor() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    let keys = test_encryption_keys();
    let rekey = |index_key: &[u8; 32], actor: &[&str]| {
        let mut command = operator_command(&app);
        command
            .arg("rekey")
            .args(actor)
            .env("CI_ENCRYPTION_KEYS", &keys)
            .env("CI_INDEX_KEY", STANDARD.encode(index_key));
        command.output().unwrap()
    };
    let done = rekey(&TEST_INDEX_KEY, &["--actor", "ops.park"]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let ran = run(&app, &["purge", "--actor", "ops.park"]);
    assert!(ran.success, "{}", ran.stderr);
    let ran = run(&app, &["purge"]);
    assert!(ran.success, "{}", ran.stderr);
    // Another index key: rekey stops, and says so in its record.
    assert!(!rekey(&[43; 32], &["--actor", "ops.park"]).status.success());

    let operated = records_where(&app, |record| record.caller == "operator").await;
    let summary: Vec<_> = operated
        .iter()
        .map(|record| {
            (
                record.method.as_str(),
                record.work,
                record.actor.as_deref(),
                record.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("rekey", Work::Change, Some("ops.park"), OUTCOME_OK),
            ("purge", Work::Deletion, Some("ops.park"), OUTCOME_OK),
            ("purge", Work::Deletion, None, OUTCOME_OK),
            ("rekey", Work::Change, Some("ops.park"), "FAILED"),
        ]
    );
    for record in &operated {
        assert!(record.peer.is_none() && record.account.is_none() && record.person.is_none());
    }

    // Without AUDIT_KEY, or with an unusable actor, neither starts: nothing done, no record.
    let total = count(&app, "SELECT count(*) FROM access_records").await;
    for command in ["rekey", "purge"] {
        let output = operator_command(&app)
            .arg(command)
            .env_remove("AUDIT_KEY")
            .env("CI_ENCRYPTION_KEYS", &keys)
            .env("CI_INDEX_KEY", STANDARD.encode(TEST_INDEX_KEY))
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--audit-key"), "{stderr}");
        let ran = run(&app, &[command, "--actor", "kim lee"]);
        assert!(!ran.success && ran.stderr.contains("--actor"), "{}", ran.stderr);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM access_records").await, total);
    let (held, printed) = audit_verify(&app, None);
    assert!(held, "{printed}");
}

/// The (chain, seq) of the records `selection` picks, read `page` at a time.
async fn read(app: &TestApp, selection: &Selection, page: u64) -> Vec<(String, i64)> {
    let mut read = Vec::new();
    app.store
        .each_access_record(selection, page, |row| -> Result<(), StoreError> {
            read.push((row.chain, row.seq));
            Ok(())
        })
        .await
        .unwrap();
    read
}

#[tokio::test]
async fn an_export_reads_page_after_page_losing_and_repeating_no_record_of_the_same_time() {
    let fleet = App::new().fleet(2).await;
    // Two chains, each with records sharing one time and then another.
    let same = Utc::now().trunc_subsecs(6);
    for replica in &fleet.replicas {
        for (n, at) in [same, same, same, same + chrono::Duration::microseconds(1)]
            .into_iter()
            .enumerate()
        {
            let account = if n == 1 { "acct-other" } else { "acct-1" };
            replica
                .store
                .record_access(record("support", account, at))
                .await
                .unwrap();
        }
    }
    let app = &fleet.replicas[0];
    let selection = Selection::between(same, same + chrono::Duration::seconds(1));
    let all = stored(app, |_| true).await;
    assert_eq!(all.len(), 8);
    for page in [1, 2, 3, 8, 100] {
        assert_eq!(read(app, &selection, page).await, all, "pages of {page}");
    }
    let of_one_account = Selection {
        account: Some("acct-1".into()),
        ..selection
    };
    assert_eq!(
        read(app, &of_one_account, 2).await,
        stored(app, |record| record.account.as_deref() == Some("acct-1")).await
    );
}
