//! Access records (issue 30): one per call on personal data, with its fields, whatever the
//! outcome; none holding personal data in the clear; chains `audit verify` recomputes, finding
//! a changed, inserted or removed record and a cut tail; a call whose record cannot be written
//! fails ACCESS_RECORD_UNAVAILABLE; replicas writing at once keep chains that hold.

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    audit::{AccessRecord, AuditKey, OUTCOME_OK, Work, chain::ChainedRecord},
    domain::Ci,
    grpc::proto::{
        BeginVerificationRequest, ExpectedPerson, Purpose, VerifyRequest, check_duplicate_request::Key,
    },
    sandbox::identities::{ADULT, NOT_CERTIFIED, ci_for, di_for},
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Request};

use crate::{
    helpers::{App, TEST_AUDIT_KEY, TestApp, assert_status, spawn_app, verify_request},
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
        .begin_verification(BeginVerificationRequest {
            purpose: Purpose::Reverify.into(),
            account_id: Some("acct-3".into()),
            expected: Some(ExpectedPerson {
                name: Some("홍길동".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
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
    assert!(printed.contains("5 records in 1 chains"), "{printed}");

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

#[tokio::test]
async fn a_call_whose_record_cannot_be_written_answers_access_record_unavailable() {
    let app = spawn_app().await;
    app.unlink("acct-0").await;
    execute(&app, "ALTER TABLE access_records RENAME TO access_records_away").await;
    let refused = app.bind(ADULT, "acct-1").await;
    assert_status(refused, Code::Unavailable, "ACCESS_RECORD_UNAVAILABLE");
    let refused = app.check_duplicate(Key::Ci(ci_for("hong"))).await;
    assert_status(refused, Code::Unavailable, "ACCESS_RECORD_UNAVAILABLE");
    execute(&app, "ALTER TABLE access_records_away RENAME TO access_records").await;
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    // The failed statements left no gap: the chain runs 1, 2.
    assert_eq!(count(&app, "SELECT count(*) FROM access_records").await, 2);
    let (held, printed) = audit_verify(&app, None);
    assert!(held && printed.contains("2 records in 1 chains"), "{printed}");
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
    assert_eq!(chains.len(), 2, "a chain per replica");
    assert!(chains.iter().all(|chain| chain.rows.len() == 20));
    let (held, printed) = audit_verify(app, None);
    assert!(held && printed.contains("40 records in 2 chains"), "{printed}");
}
