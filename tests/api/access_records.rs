//! Access records (issue 30): one per call on personal data, with its fields, whatever the
//! outcome; none holding personal data in the clear; chains `audit verify` recomputes, finding
//! a changed, inserted or removed record and a cut tail; a call whose record cannot be written
//! fails ACCESS_RECORD_UNAVAILABLE; replicas writing at once keep chains that hold.

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::secret::Secret;
use certification_service::{
    audit::{AccessRecord, AuditKey, OUTCOME_OK, Work, chain::ChainedRecord},
    domain::Ci,
    grpc::proto::{
        BeginVerificationRequest, ExpectedPerson, Purpose, VerifyRequest, check_duplicate_request::Key,
    },
    sandbox::identities::{ADULT, FOREIGNER, NOT_CERTIFIED, ci_for, di_for},
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Request};

use crate::{
    helpers::{App, TEST_AUDIT_KEY, TestApp, assert_status, postgres_url, spawn_app, verify_request},
    sessions::count,
};

/// Every row stored, in chain order.
pub async fn rows(app: &TestApp) -> Vec<ChainedRecord> {
    let chains = app.store.access_chains(None, None).await.unwrap();
    chains.into_iter().flat_map(|chain| chain.rows).collect()
}

/// Every record stored, in chain order.
pub async fn records(app: &TestApp) -> Vec<AccessRecord> {
    rows(app).await.into_iter().map(|row| row.record).collect()
}

pub fn pseudonym(person: &str) -> String {
    let key = AuditKey::from_base64(&STANDARD.encode(TEST_AUDIT_KEY)).unwrap();
    key.person(&Ci::parse(&ci_for(person)).unwrap())
}

/// A reverification session for `account` that keeps an expected person.
fn keeping_a_person(account: &str) -> BeginVerificationRequest {
    BeginVerificationRequest {
        purpose: Purpose::Reverify.into(),
        account_id: Some(account.into()),
        expected: Some(ExpectedPerson {
            name: Some("홍길동".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_actor<T>(actor: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-actor", actor.parse().unwrap());
    request
}

#[tokio::test]
async fn each_call_on_personal_data_leaves_one_record_with_its_fields() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let bind = VerifyRequest {
        account_id: "acct-1".into(),
        ..verify_request(ADULT)
    };
    client.verify(with_actor("ops.kim@corp", bind)).await.unwrap();
    assert_status(
        app.verify(NOT_CERTIFIED).await,
        Code::FailedPrecondition,
        "NOT_CERTIFIED",
    );
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    app.unlink("acct-1").await;
    // A session without an expected person keeps nothing personal: no record.
    client
        .begin_verification(BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .begin_verification(keeping_a_person("acct-3"))
        .await
        .unwrap();
    let refused = client
        .check_duplicate(with_actor("kim lee", Default::default()))
        .await;
    assert_status(refused, Code::InvalidArgument, "INVALID_ACTOR");

    let records = records(&app).await;
    let hong = pseudonym("hong");
    let summary: Vec<_> = records
        .iter()
        .map(|record| {
            (
                record.method.as_str(),
                record.work,
                record.outcome.as_str(),
                record.account.as_deref(),
                record.person.as_deref(),
                record.purpose.as_deref(),
                record.actor.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "Verify",
                Work::Entry,
                OUTCOME_OK,
                Some("acct-1"),
                Some(hong.as_str()),
                None,
                Some("ops.kim@corp")
            ),
            ("Verify", Work::Lookup, "NOT_CERTIFIED", None, None, None, None),
            (
                "CheckDuplicate",
                Work::Lookup,
                OUTCOME_OK,
                None,
                Some(hong.as_str()),
                None,
                None
            ),
            (
                "Unlink",
                Work::Deletion,
                OUTCOME_OK,
                Some("acct-1"),
                None,
                None,
                None
            ),
            (
                "BeginVerification",
                Work::Entry,
                OUTCOME_OK,
                Some("acct-3"),
                None,
                Some("reverify"),
                None
            ),
            (
                "CheckDuplicate",
                Work::Lookup,
                "INVALID_ACTOR",
                None,
                None,
                None,
                None
            ),
        ]
    );
    for record in &records {
        assert_eq!(record.caller, "anonymous");
        assert_eq!(record.peer.as_deref(), Some("127.0.0.1"));
        assert!(record.at <= chrono::Utc::now());
    }
}

#[tokio::test]
async fn no_record_holds_personal_data_in_the_clear() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    // Every column of every row, as read back.
    let chains = app.store.access_chains(None, None).await.unwrap();
    assert_eq!(chains.iter().map(|chain| chain.rows.len()).sum::<usize>(), 2);
    let dump = format!("{chains:?}");
    for personal in [
        "홍길동".to_owned(),
        "01012345678".to_owned(),
        "1990-03-15".to_owned(),
        "19900315".to_owned(),
        ci_for("hong"),
        di_for("hong"),
        ADULT.to_owned(),
    ] {
        assert!(!dump.contains(&personal), "{personal} in the records");
    }
    assert!(
        dump.contains(&pseudonym("hong")),
        "the pseudonym names the person"
    );
}

/// The service binary as an operator runs it on the app's database: with its AUDIT_KEY, and
/// logging at `info` whatever the run's RUST_LOG.
pub fn operator_command(app: &TestApp) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_certification-service"));
    command
        .env("DATABASE_URL", app.settings.store.database_url.expose())
        .env("AUDIT_KEY", STANDARD.encode(TEST_AUDIT_KEY))
        .env("RUST_LOG", "info");
    command
}

/// `audit verify` over the app's database, with `heads` as a log file: (success, output).
pub fn audit_verify(app: &TestApp, heads: Option<&str>) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = operator_command(app);
    command.args(["audit", "verify"]);
    if let Some(heads) = heads {
        let path = dir.path().join("service.log");
        std::fs::write(&path, heads).unwrap();
        command.arg("--heads").arg(&path);
    }
    let output = command.output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

async fn execute_many(app: &TestApp, sql: &str) {
    app.store.connection().execute_unprepared(sql).await.unwrap();
}

pub async fn execute(app: &TestApp, sql: &str) {
    app.store
        .connection()
        .execute_raw(Statement::from_string(app.store.backend(), sql))
        .await
        .unwrap();
}

#[tokio::test]
async fn audit_verify_finds_a_changed_inserted_or_removed_record_and_a_cut_tail() {
    let app = spawn_app().await;
    for account in ["a-1", "a-2", "a-3", "a-4", "a-5"] {
        app.unlink(account).await;
    }
    let (held, printed) = audit_verify(&app, None);
    assert!(held, "{printed}");
    assert!(printed.contains("5 records in "), "{printed}");

    // Changed: the third record says another account.
    execute(&app, "UPDATE access_records SET account_id = 'a-9' WHERE seq = 3").await;
    let (held, printed) = audit_verify(&app, None);
    assert!(!held && printed.contains("record 3 was changed"), "{printed}");
    execute(&app, "UPDATE access_records SET account_id = 'a-3' WHERE seq = 3").await;
    assert!(audit_verify(&app, None).0);

    // Removed: the second record gone.
    let copy = "INSERT INTO access_records SELECT * FROM access_records_kept";
    execute(
        &app,
        "CREATE TABLE access_records_kept AS SELECT * FROM access_records",
    )
    .await;
    execute(&app, "DELETE FROM access_records WHERE seq = 2").await;
    let (held, printed) = audit_verify(&app, None);
    assert!(
        !held && printed.contains("records 2 to 2 were removed"),
        "{printed}"
    );

    execute(&app, "DELETE FROM access_records").await;
    execute(&app, copy).await;
    assert!(audit_verify(&app, None).0);

    // Inserted: a forged record after the last, its MAC copied.
    execute(
        &app,
        "INSERT INTO access_records SELECT chain, 6, at, caller, actor, peer, method, purpose, work, \
         'a-forged', person, outcome, trace_id, mac FROM access_records WHERE seq = 5",
    )
    .await;
    let (held, printed) = audit_verify(&app, None);
    assert!(
        !held && printed.contains("record 6, its last, does not match"),
        "{printed}"
    );
    execute(&app, "DELETE FROM access_records WHERE seq = 6").await;
    assert!(audit_verify(&app, None).0);

    // Cut: the last two records gone, which the chain alone cannot show; its logged head can.
    let chain: String = crate::sessions::scalar(&app, "SELECT chain FROM access_records WHERE seq = 5").await;
    let mac: String = crate::sessions::scalar(&app, "SELECT mac FROM access_records WHERE seq = 5").await;
    let log = format!("2026-12-07T00:00:00Z  INFO access record chain head chain={chain} seq=5 mac={mac}\n");
    assert!(audit_verify(&app, Some(&log)).0);
    execute(&app, "DELETE FROM access_records WHERE seq > 3").await;
    assert!(audit_verify(&app, None).0, "a cut tail leaves a chain that holds");
    let (held, printed) = audit_verify(&app, Some(&log));
    assert!(!held && printed.contains("cut after record 3"), "{printed}");
    execute(&app, "DROP TABLE access_records_kept").await;
}

/// What the refused calls must not have done: asked PortOne, bound, unlinked (acct-0 still
/// holds its person), kept a session.
async fn nothing_done(app: &TestApp, lookups_before: u64) {
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups_before,
        "PortOne was asked"
    );
    let bound = "SELECT count(*) FROM persons WHERE account_id IS NOT NULL";
    assert_eq!(count(app, bound).await, 1, "acct-0 alone holds a person");
    assert_eq!(count(app, "SELECT count(*) FROM verification_sessions").await, 0);
}

/// Every call on personal data while records cannot be written: each refused
/// ACCESS_RECORD_UNAVAILABLE.
async fn refused_calls(app: &TestApp) {
    let refused = app.bind(ADULT, "acct-1").await;
    assert_status(refused, Code::Unavailable, "ACCESS_RECORD_UNAVAILABLE");
    let refused = app.check_duplicate(Key::Ci(ci_for("hong"))).await;
    assert_status(refused, Code::Unavailable, "ACCESS_RECORD_UNAVAILABLE");
    let unlink = app
        .client
        .clone()
        .unlink(certification_service::grpc::proto::UnlinkRequest {
            account_id: "acct-0".into(),
        })
        .await;
    assert_status(unlink, Code::Unavailable, "ACCESS_RECORD_UNAVAILABLE");
    let begun = app
        .client
        .clone()
        .begin_verification(keeping_a_person("acct-0"))
        .await;
    assert_status(begun, Code::Unavailable, "ACCESS_RECORD_UNAVAILABLE");
}

#[tokio::test]
async fn a_call_whose_record_cannot_be_written_does_nothing_and_answers_unavailable() {
    let app = spawn_app().await;
    app.bind(FOREIGNER, "acct-0").await.unwrap();
    let lookups = app.sandbox.stats().certification_lookups;
    execute(&app, "ALTER TABLE access_records RENAME TO access_records_away").await;
    refused_calls(&app).await;
    nothing_done(&app, lookups).await;
    execute(&app, "ALTER TABLE access_records_away RENAME TO access_records").await;
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    // The failed statements left no gap: the chains hold.
    assert_eq!(count(&app, "SELECT count(*) FROM access_records").await, 2);
    let (held, printed) = audit_verify(&app, None);
    assert!(held && printed.contains("2 records in "), "{printed}");
}

#[tokio::test]
async fn replicas_writing_at_once_keep_chains_that_hold() {
    let fleet = App::new().fleet(2).await;
    let calls = (0..40).map(|index| {
        let replica = &fleet.replicas[index % 2];
        async move { replica.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap() }
    });
    futures::future::join_all(calls).await;
    let app = &fleet.replicas[0];
    let chains = app.store.access_chains(None, None).await.unwrap();
    assert!(chains.len() >= 2, "chains of their own for each replica");
    assert_eq!(chains.iter().map(|chain| chain.rows.len()).sum::<usize>(), 40);
    let (held, printed) = audit_verify(app, None);
    assert!(held && printed.contains("40 records in"), "{printed}");
}

/// Makes every insert of a record with the outcome OK fail: the probe before a call (an insert
/// of no row) still passes, so the call reaches the statement of its writes.
async fn refuse_ok_records(app: &TestApp) {
    let trigger = if postgres_url().is_some() {
        "CREATE FUNCTION refuse_ok_record() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse_ok BEFORE INSERT ON access_records FOR EACH ROW \
         WHEN (NEW.outcome = 'OK') EXECUTE FUNCTION refuse_ok_record();"
    } else {
        "CREATE TRIGGER refuse_ok BEFORE INSERT ON access_records WHEN NEW.outcome = 'OK' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
    };
    execute_many(app, trigger).await;
}

/// A call's record is written by the statement (or transaction) of the call's own writes: when
/// it fails, the writes are undone with it (a signup's bind, a Verify's record), nothing is
/// answered OK, and each call is recorded once, by its failure.
#[tokio::test]
async fn a_record_that_fails_undoes_the_writes_of_its_call() {
    let app = spawn_app().await;
    app.bind(FOREIGNER, "acct-0").await.unwrap();
    let bound_before = "SELECT count(*) FROM persons WHERE account_id = 'acct-0'";
    let recovery = crate::sessions::begin(&app, Purpose::Recovery, None).await;
    let recovered = crate::certify::insert_certified(&app, &recovery.merchant_uid, "recovering");
    refuse_ok_records(&app).await;
    assert!(app.bind(ADULT, "acct-1").await.is_err(), "a bind answered");
    assert!(app.verify(ADULT).await.is_err(), "a Verify answered");
    let checked = app.check_duplicate(Key::Ci(ci_for("hong"))).await;
    assert!(checked.is_err(), "a CheckDuplicate answered");
    let unlink = certification_service::grpc::proto::UnlinkRequest {
        account_id: "acct-0".into(),
    };
    assert!(
        app.client.clone().unlink(unlink).await.is_err(),
        "an Unlink answered"
    );
    let begun = app
        .client
        .clone()
        .begin_verification(keeping_a_person("acct-0"))
        .await;
    assert!(begun.is_err(), "a session keeping a person was begun");
    let redeemed = crate::sessions::redeem(&app, &recovery.merchant_uid, &recovered).await;
    assert!(redeemed.is_err(), "a session was redeemed");
    // Nothing of theirs is left: the one person bound before, still bound; one session, not
    // redeemed.
    assert_eq!(count(&app, "SELECT count(*) FROM persons").await, 1);
    assert_eq!(count(&app, bound_before).await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM certifications").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM verification_sessions").await, 1);
    let redeemed = "SELECT count(*) FROM verification_sessions WHERE redeemed_id IS NOT NULL";
    assert_eq!(count(&app, redeemed).await, 0);
    // An outage's record does not hold its answer back: wait for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(&app, "SELECT count(*) FROM access_records").await < 7 {
        assert!(
            std::time::Instant::now() < deadline,
            "the failures were not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut outcomes: Vec<(String, String)> = records(&app)
        .await
        .into_iter()
        .map(|record| (record.method, record.outcome))
        .filter(|(_, outcome)| outcome != OUTCOME_OK)
        .collect();
    outcomes.sort();
    let failed = |method: &str| (method.to_owned(), "STORE_FAILURE".to_owned());
    assert_eq!(
        outcomes,
        [
            failed("BeginVerification"),
            failed("CheckDuplicate"),
            failed("Unlink"),
            failed("Verify"),
            failed("Verify"),
            failed("Verify")
        ]
    );

    let drop = if postgres_url().is_some() {
        "DROP TRIGGER refuse_ok ON access_records"
    } else {
        "DROP TRIGGER refuse_ok"
    };
    execute(&app, drop).await;
    app.bind(ADULT, "acct-1").await.unwrap();
    let bound = records(&app).await;
    assert_eq!(bound.len(), 8);
    assert!(
        bound
            .iter()
            .any(|record| record.outcome == OUTCOME_OK && record.work == Work::Entry)
    );
    let (held, printed) = audit_verify(&app, None);
    assert!(held, "{printed}");
}

/// PostgreSQL: the server's role needs nothing on `access_records` but INSERT (the grants
/// docs/access-records.md gives); with INSERT revoked, every call on personal data is refused
/// before it does anything.
#[tokio::test]
async fn on_postgres_insert_alone_suffices_and_revoking_it_refuses_every_call() {
    if postgres_url().is_none() {
        return; // SQLite has no grants: the renamed table stands for it.
    }
    let app = spawn_app().await;
    let role = format!("cs_app_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let database_url = app.settings.store.database_url.expose().to_owned();
    let database = database_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    execute_many(
        &app,
        &format!(
            "CREATE ROLE {role} LOGIN; \
             GRANT CONNECT ON DATABASE \"{database}\" TO {role}; \
             GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE \
               ON persons, certifications, verification_sessions, portone_deletions TO {role}; \
             GRANT USAGE, SELECT ON SEQUENCE persons_id_seq, certifications_id_seq TO {role}; \
             GRANT INSERT ON access_records TO {role}"
        ),
    )
    .await;
    let as_role = database_url.replacen("://root@", &format!("://{role}@"), 1);
    assert_ne!(as_role, database_url, "the tests' PostgreSQL URL names root");
    let served = App::replica_of(&app)
        .adjust(|settings| {
            settings.store.database_url = Secret::new(&as_role);
            settings.store.migrate_on_start = false;
        })
        .spawn()
        .await;
    served.bind(FOREIGNER, "acct-0").await.unwrap();
    served.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    assert_eq!(count(&app, "SELECT count(*) FROM access_records").await, 2);

    execute(&app, &format!("REVOKE INSERT ON access_records FROM {role}")).await;
    let lookups = app.sandbox.stats().certification_lookups;
    refused_calls(&served).await;
    nothing_done(&app, lookups).await;
    served.stop().await;
    execute_many(&app, &format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
}

/// PostgreSQL: `access_records` locked by someone else past DATABASE_LOCK_TIMEOUT: refused,
/// nothing done; once the lock goes, served again.
#[tokio::test]
async fn on_postgres_a_locked_record_table_refuses_calls_within_the_lock_timeout() {
    if postgres_url().is_none() {
        return;
    }
    let app = App::new()
        .adjust(|settings| settings.store.lock_timeout = std::time::Duration::from_millis(300))
        .spawn()
        .await;
    app.bind(FOREIGNER, "acct-0").await.unwrap();
    let lookups = app.sandbox.stats().certification_lookups;
    let locker = sea_orm::Database::connect(app.settings.store.database_url.expose())
        .await
        .unwrap();
    let lock = sea_orm::TransactionTrait::begin(&locker).await.unwrap();
    lock.execute_unprepared("LOCK TABLE access_records IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    refused_calls(&app).await;
    lock.rollback().await.unwrap();
    nothing_done(&app, lookups).await;
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    // The refused calls' own records may land once the lock is gone, on the chain of whichever
    // writer took them: every chain holds either way.
    let (held, printed) = audit_verify(&app, None);
    assert!(held && printed.contains("access records hold"), "{printed}");
    let mut in_time = records(&app).await;
    in_time.sort_by_key(|record| record.at);
    let outcomes: Vec<String> = in_time.into_iter().map(|record| record.outcome).collect();
    assert_eq!(outcomes.first().map(String::as_str), Some(OUTCOME_OK));
    assert_eq!(outcomes.last().map(String::as_str), Some(OUTCOME_OK));
    assert!(
        outcomes[1..outcomes.len() - 1]
            .iter()
            .all(|outcome| outcome == "ACCESS_RECORD_UNAVAILABLE"),
        "{outcomes:?}"
    );
}

/// A record of `days` ago, as a Verify would leave it.
fn record_of_days_ago(days: i64, account: &str) -> AccessRecord {
    AccessRecord {
        at: chrono::Utc::now() - chrono::Duration::days(days),
        caller: "signup".into(),
        actor: None,
        peer: Some("10.0.0.7".into()),
        method: "Verify".into(),
        purpose: Some("signup".into()),
        work: Work::Entry,
        account: Some(account.into()),
        person: Some(pseudonym("hong")),
        outcome: OUTCOME_OK.into(),
        trace_id: None,
    }
}

#[tokio::test]
async fn the_retention_purge_removes_whole_days_past_it_and_the_chains_still_verify() {
    let app = App::new()
        .adjust(|settings| settings.maintenance.purge_interval = Some(std::time::Duration::from_secs(2)))
        .spawn()
        .await;
    for (days, account) in [
        (800, "old-1"),
        (800, "old-2"),
        (740, "old-3"),
        (729, "kept-1"),
        (100, "kept-2"),
    ] {
        app.store
            .record_access(record_of_days_ago(days, account))
            .await
            .unwrap();
    }
    app.unlink("kept-3").await;
    // The background purge (PURGE_INTERVAL) runs, removes, and records that it did.
    let purged = "SELECT count(*) FROM access_records WHERE method = 'background purge'";
    let waited = std::time::Instant::now();
    while count(&app, purged).await == 0 {
        assert!(
            waited.elapsed().as_secs() < 15,
            "no background purge of access records"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept: Vec<(Option<String>, String, String)> = records(&app)
        .await
        .into_iter()
        .map(|record| (record.account, record.method, record.caller))
        .collect();
    assert_eq!(
        kept,
        [
            (Some("kept-1".into()), "Verify".into(), "signup".into()),
            (Some("kept-2".into()), "Verify".into(), "signup".into()),
            (Some("kept-3".into()), "Unlink".into(), "anonymous".into()),
            (None, "background purge".into(), "certification-service".into()),
        ],
        "what is within retention stays, and the purge left its own record"
    );
    let (held, printed) = audit_verify(&app, None);
    assert!(held && printed.contains("4 records in "), "{printed}");
    // Nothing more is past retention: the next purges remove nothing and record nothing.
    let key = AuditKey::from_base64(&STANDARD.encode(TEST_AUDIT_KEY)).unwrap();
    let two_years = std::time::Duration::from_secs(730 * 86_400);
    let again = certification_service::maintenance::purge_access_records(&app.store, &key, two_years);
    assert_eq!(again.await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(count(&app, "SELECT count(*) FROM access_records").await, 4);

    // Without its anchor the chain's start looks removed; with a made-up anchor, forged.
    execute(
        &app,
        "CREATE TABLE anchors_kept AS SELECT * FROM access_record_anchors",
    )
    .await;
    execute(&app, "DELETE FROM access_record_anchors").await;
    let (held, printed) = audit_verify(&app, None);
    assert!(
        !held && printed.contains("records 1 to 3 were removed"),
        "{printed}"
    );
    execute(
        &app,
        "INSERT INTO access_record_anchors SELECT * FROM anchors_kept",
    )
    .await;
    execute(&app, "UPDATE access_record_anchors SET anchor_mac = mac").await;
    let (held, printed) = audit_verify(&app, None);
    assert!(
        !held && printed.contains("is not one the purge made"),
        "{printed}"
    );
    execute(&app, "DROP TABLE anchors_kept").await;
}

/// docs/compliance.md names the tests that show each control: every one must exist.
#[test]
fn the_compliance_table_names_tests_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/compliance.md")).unwrap();
    let named: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.contains("::") && !name.contains(' '))
        .collect();
    assert!(named.len() > 20, "{named:?}");
    assert!(named.contains(&"access_records::no_record_holds_personal_data_in_the_clear"));
    for name in named {
        let (module, test) = name.rsplit_once("::").unwrap();
        let file = match module {
            "config::tests" => root.join("src/config/tests.rs"),
            module => root.join(format!("tests/api/{module}.rs")),
        };
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            source.contains(&format!("fn {test}(")),
            "{name}: no such test in {}",
            file.display()
        );
    }
}
