//! Identity data at rest: sealed CI/DI, nothing personal in the clear, key rotation, unlinking
//! (회원 탈퇴) with its re-signup cooldown, and purging past retention.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    domain::{PersonIndex, Purpose, Sealed, SealingKeys},
    grpc::proto::{UnlinkRequest, VerifyResponse},
    maintenance,
    sandbox::identities::{ADULT, ADULT_SECOND_CERTIFICATION, FOREIGNER, NO_PHONE},
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::helpers::{App, TestApp, assert_status, postgres_url, spawn_app};

/// Every personal value a Verify answered with.
fn personal_values(responses: &[VerifyResponse]) -> Vec<String> {
    let mut values = Vec::new();
    for response in responses {
        let identity = response.identity.as_ref().unwrap();
        values.push(identity.name.clone());
        values.push(identity.ci.clone());
        values.extend(identity.phone.clone());
        if !identity.di.is_empty() {
            values.push(identity.di.clone());
        }
    }
    assert!(values.len() >= 9, "the fixtures carry names, phones, CIs and DIs");
    values
}

/// The whole database as text: `pg_dump` for PostgreSQL; for SQLite the database file and its
/// write-ahead log byte for byte, which is everything a copied disk would show.
async fn dump(app: &TestApp) -> String {
    let url = app.settings.store.database_url.expose();
    if postgres_url().is_some() {
        let output = std::process::Command::new("pg_dump")
            .args(["--data-only", "--inserts", url])
            .output()
            .expect("pg_dump (PostgreSQL's client tools) must be installed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return String::from_utf8(output.stdout).unwrap();
    }
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    String::from_utf8_lossy(&bytes).into_owned()
}

pub async fn verify_and_bind(app: &TestApp, imp_uid: &str, account: &str) -> VerifyResponse {
    app.bind(imp_uid, account).await.unwrap()
}

#[tokio::test]
async fn a_database_dump_after_traffic_holds_no_ci_di_name_or_phone_in_the_clear() {
    let app = spawn_app().await;
    let responses = vec![
        verify_and_bind(&app, ADULT, "acct-dump-1").await,
        verify_and_bind(&app, FOREIGNER, "acct-dump-2").await,
        app.verify(NO_PHONE).await.unwrap().into_inner(),
    ];
    let dumped = dump(&app).await;
    assert!(dumped.contains("acct-dump-1"), "the dump holds the data we wrote");
    for value in personal_values(&responses) {
        assert!(
            !dumped.contains(&value),
            "a personal value in the clear in the dump"
        );
        // Nor the base64 CI's raw bytes, in case a driver stored it decoded.
        if let Ok(raw) = STANDARD.decode(&value) {
            assert!(!dumped.as_bytes().windows(raw.len()).any(|window| window == raw));
        }
    }
}

#[tokio::test]
async fn stored_ci_and_di_open_with_the_key_and_name_their_key_id() {
    let app = spawn_app().await;
    let response = verify_and_bind(&app, ADULT, "acct-sealed").await;
    let identity = response.identity.unwrap();
    let rows = sealed_rows(&app).await;
    assert_eq!(rows.len(), 1);
    let (key_id, index, ci, di) = &rows[0];
    assert_eq!(key_id, "test-k1");
    let keys = &app.settings.keys.sealing_keys;
    assert_eq!(keys.open(Purpose::Ci, index, ci).unwrap(), identity.ci);
    assert_eq!(
        keys.open(Purpose::Di, index, di.as_ref().unwrap()).unwrap(),
        identity.di
    );
}

/// (key id, CI lookup hash, CI, DI) of every person, in id order.
pub async fn sealed_rows(app: &TestApp) -> Vec<(String, PersonIndex, Sealed, Option<Sealed>)> {
    let connection = app.store.connection();
    let rows = connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT sealing_key_id, ci_hash, ci_sealed, di_sealed FROM persons ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let key_id: String = row.try_get("", "sealing_key_id").unwrap();
            let index = PersonIndex(row.try_get("", "ci_hash").unwrap());
            let ci: String = row.try_get("", "ci_sealed").unwrap();
            let di: Option<String> = row.try_get("", "di_sealed").unwrap();
            let sealed = |blob| Sealed {
                key_id: key_id.clone(),
                blob,
            };
            (key_id.clone(), index, sealed(ci), di.map(sealed))
        })
        .collect()
}

#[tokio::test]
async fn a_new_first_key_seals_new_rows_old_rows_stay_readable_and_rekey_moves_them() {
    let app = spawn_app().await;
    let first = verify_and_bind(&app, ADULT, "acct-rotate-1").await;
    let second_key = format!("test-k2:{}", STANDARD.encode([10u8; 32]));
    let rotated_spec = format!("{second_key},test-k1:{}", STANDARD.encode([9u8; 32]));
    let rotated = SealingKeys::parse(&rotated_spec).unwrap();
    let replica = App::replica_of(&app)
        .adjust(|settings| settings.keys.sealing_keys = rotated.clone())
        .spawn()
        .await;

    let later = replica.bind(FOREIGNER, "acct-rotate-2").await.unwrap();
    let key_ids: Vec<String> = sealed_rows(&app).await.into_iter().map(|row| row.0).collect();
    assert_eq!(key_ids, ["test-k1", "test-k2"]);
    // The old row is still found and still held.
    assert_status(
        replica.bind(ADULT_SECOND_CERTIFICATION, "acct-rotate-3").await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );

    let report = maintenance::rekey(&app.store, &rotated, &app.settings.keys.ci_index_key, 1)
        .await
        .unwrap();
    assert_eq!(report.resealed, 1);
    let only_new = SealingKeys::parse(&second_key).unwrap();
    let rows = sealed_rows(&app).await;
    assert!(rows.iter().all(|row| row.0 == "test-k2"));
    let opened: Vec<String> = rows
        .iter()
        .map(|row| only_new.open(Purpose::Ci, &row.1, &row.2).unwrap())
        .collect();
    assert_eq!(
        opened,
        [first.identity.unwrap().ci, later.identity.unwrap().ci],
        "every row opens with the new key alone"
    );
    // Resumable and idempotent: a second run finds nothing left.
    assert_eq!(
        maintenance::rekey(&app.store, &rotated, &app.settings.keys.ci_index_key, 1)
            .await
            .unwrap()
            .resealed,
        0
    );
}

#[tokio::test]
async fn rekey_refuses_rows_under_a_key_it_does_not_have() {
    let app = spawn_app().await;
    verify_and_bind(&app, ADULT, "acct-lost-key").await;
    let unrelated = SealingKeys::parse(&format!("other:{}", STANDARD.encode([11u8; 32]))).unwrap();
    let error = maintenance::rekey(&app.store, &unrelated, &app.settings.keys.ci_index_key, 10)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("test-k1"), "{error}");
}

#[tokio::test]
async fn after_unlink_the_person_binds_to_a_new_account_and_unlink_is_idempotent() {
    let app = spawn_app().await;
    verify_and_bind(&app, ADULT, "acct-leaving").await;
    let first = app.unlink("acct-leaving").await;
    assert!(first.unlinked && first.unlinked_at.is_some());
    let again = app.unlink("acct-leaving").await;
    assert!(!again.unlinked && again.unlinked_at.is_none());
    assert!(!app.unlink("acct-never-bound").await.unlinked);

    let rejoined = app
        .bind(ADULT_SECOND_CERTIFICATION, "acct-rejoined")
        .await
        .unwrap();
    assert!(rejoined.bound);
    // The certification used by the first account stays used by it.
    assert_status(
        app.bind(ADULT, "acct-third").await,
        Code::AlreadyExists,
        "CERTIFICATION_REUSED",
    );
}

#[tokio::test]
async fn unlink_refuses_a_malformed_account_id() {
    let app = spawn_app().await;
    let result = app
        .client
        .clone()
        .unlink(UnlinkRequest {
            account_id: "bad account".into(),
        })
        .await;
    assert_status(result, Code::InvalidArgument, "INVALID_ACCOUNT_ID");
}

#[tokio::test]
async fn a_rejoin_within_the_cooldown_is_refused_with_its_end_and_allowed_after() {
    let app = App::new()
        .adjust(|settings| settings.policy.rejoin_cooldown = Duration::from_secs(2))
        .spawn()
        .await;
    verify_and_bind(&app, ADULT, "acct-cooldown-1").await;
    app.unlink("acct-cooldown-1").await;

    let refused = assert_status(
        app.bind(ADULT_SECOND_CERTIFICATION, "acct-cooldown-2").await,
        Code::FailedPrecondition,
        "REJOIN_COOLDOWN",
    );
    let details = tonic_types::StatusExt::get_error_details(&refused);
    let until = details
        .error_info()
        .unwrap()
        .metadata
        .get("until")
        .unwrap()
        .clone();
    let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    let left = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::zero() && left <= chrono::Duration::seconds(2),
        "{left}"
    );

    tokio::time::sleep(left.to_std().unwrap() + Duration::from_millis(100)).await;
    // The refused attempt consumed nothing: the same certification binds now.
    assert!(
        app.bind(ADULT_SECOND_CERTIFICATION, "acct-cooldown-2")
            .await
            .unwrap()
            .bound
    );
}

#[tokio::test]
async fn purge_removes_old_certifications_and_unheld_persons_but_keeps_bindings() {
    let app = spawn_app().await;
    verify_and_bind(&app, ADULT, "acct-kept").await;
    app.verify(FOREIGNER).await.unwrap();
    verify_and_bind(&app, NO_PHONE, "acct-gone").await;
    app.unlink("acct-gone").await;

    // A long retention removes nothing.
    let none = maintenance::purge(&app.store, Duration::from_secs(3600), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((none.certifications, none.persons), (0, 0));
    // Retention zero: every certification is past it; of the persons, only the bound one stays.
    let purged = maintenance::purge(&app.store, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(purged.certifications, 3);
    assert_eq!(purged.persons, 2);
    assert_eq!(sealed_rows(&app).await.len(), 1);
    // The binding holds: its person is still a duplicate.
    assert_status(
        app.bind(ADULT_SECOND_CERTIFICATION, "acct-other").await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );
}

#[tokio::test]
async fn purge_interval_runs_the_purge_in_the_background() {
    let app = App::new()
        .adjust(|settings| {
            settings.maintenance.purge_interval = Some(Duration::from_millis(100));
            settings.maintenance.certification_retention = Duration::ZERO;
        })
        .spawn()
        .await;
    app.verify(FOREIGNER).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sealed_rows(&app).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background purge never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_person_stored_before_sealing_is_sealed_when_seen_again() {
    let app = spawn_app().await;
    let answer = verify_and_bind(&app, ADULT, "acct-legacy").await;
    let connection = app.store.connection();
    // As a row written before the sealing migration looks.
    connection
        .execute_unprepared("UPDATE persons SET ci_sealed = NULL, di_sealed = NULL, sealing_key_id = NULL")
        .await
        .unwrap();
    let again = app.verify(ADULT_SECOND_CERTIFICATION).await.unwrap().into_inner();
    assert_eq!(again.duplicate.unwrap().account_id, "acct-legacy");
    let rows = sealed_rows(&app).await;
    assert_eq!(rows.len(), 1);
    let (key_id, index, ci, di) = &rows[0];
    assert_eq!(key_id, "test-k1");
    let keys = &app.settings.keys.sealing_keys;
    let identity = answer.identity.unwrap();
    assert_eq!(keys.open(Purpose::Ci, index, ci).unwrap(), identity.ci);
    assert_eq!(
        keys.open(Purpose::Di, index, di.as_ref().unwrap()).unwrap(),
        identity.di
    );
}
