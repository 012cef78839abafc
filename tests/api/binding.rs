//! Binding a person to an account: one person per account, one account per person, each
//! certification used once, idempotent retries, and races decided by the database.

use std::collections::HashMap;

use certification_service::sandbox::identities::{
    ADULT, ADULT_SECOND_CERTIFICATION, CertificationRecord, FOREIGNER,
};
use chrono::{NaiveDate, Utc};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::helpers::{TestApp, assert_status, spawn_app};

#[tokio::test]
async fn verify_with_an_account_binds_a_new_person() {
    let app = spawn_app().await;
    let response = app.bind(ADULT, "acct-1").await.unwrap();
    assert!(response.bound);
    assert!(
        !response.duplicate.unwrap().duplicate,
        "nobody held the person before this call"
    );
    let again = app.verify(ADULT).await.unwrap().into_inner();
    let duplicate = again.duplicate.unwrap();
    assert!(duplicate.duplicate);
    assert_eq!(duplicate.account_id, "acct-1");
    assert!(duplicate.bound_at.is_some());
}

#[tokio::test]
async fn binding_the_same_account_again_is_idempotent() {
    let app = spawn_app().await;
    let first = app.bind(ADULT, "acct-1").await.unwrap();
    let retry = app.bind(ADULT, "acct-1").await.unwrap();
    assert!(first.bound && retry.bound);
    let holder = retry.duplicate.unwrap();
    assert_eq!(holder.account_id, "acct-1");
    // A second certification of the same person, for the same account, is fine too.
    assert!(
        app.bind(ADULT_SECOND_CERTIFICATION, "acct-1")
            .await
            .unwrap()
            .bound
    );
}

#[tokio::test]
async fn verify_returns_already_exists_when_person_is_bound_to_another_account() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    assert_status(
        app.bind(ADULT_SECOND_CERTIFICATION, "acct-2").await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );
}

#[tokio::test]
async fn a_certification_consumed_by_one_account_cannot_serve_another() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    assert_status(
        app.bind(ADULT, "acct-2").await,
        Code::AlreadyExists,
        "CERTIFICATION_REUSED",
    );
}

#[tokio::test]
async fn an_account_holding_one_person_cannot_take_another() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    assert_status(
        app.bind(FOREIGNER, "acct-1").await,
        Code::AlreadyExists,
        "ACCOUNT_HAS_IDENTITY",
    );
    // The refused bind left nothing behind: FOREIGNER is still free for another account.
    assert!(app.bind(FOREIGNER, "acct-2").await.unwrap().bound);
}

/// 50 certifications of one person, so the race is on the person, not on one certification.
fn certifications_of_one_person(app: &TestApp, count: usize) -> Vec<String> {
    let born = NaiveDate::from_ymd_opt(1991, 1, 1).unwrap();
    (0..count)
        .map(|index| {
            let imp_uid = format!("imp_5000000{index:05}");
            app.sandbox.insert_certification(CertificationRecord::certified(
                &imp_uid,
                "racer",
                "경쟁자",
                born,
                Utc::now().timestamp() - 30,
            ));
            imp_uid
        })
        .collect()
}

#[tokio::test]
async fn fifty_concurrent_binds_of_one_person_to_fifty_accounts_bind_exactly_one() {
    let app = spawn_app().await;
    let imp_uids = certifications_of_one_person(&app, 50);
    let attempts = imp_uids.iter().enumerate().map(|(index, imp_uid)| {
        let app = &app;
        async move { app.bind(imp_uid, &format!("acct-{index}")).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for result in &results {
        let key = match result {
            Ok(response) if response.bound => "BOUND".to_owned(),
            Ok(response) => panic!("unbound OK: {response:?}"),
            Err(status) => format!(
                "{:?}/{}",
                status.code(),
                tonic_types::StatusExt::get_error_details(status)
                    .error_info()
                    .map(|info| info.reason.clone())
                    .unwrap_or_default()
            ),
        };
        *outcomes.entry(key).or_default() += 1;
    }
    assert_eq!(outcomes.get("BOUND"), Some(&1), "{outcomes:?}");
    assert_eq!(
        outcomes.get("AlreadyExists/ALREADY_REGISTERED"),
        Some(&49),
        "{outcomes:?}"
    );
    let winner = results.iter().position(|result| result.is_ok()).unwrap();
    let holders = app
        .store
        .connection()
        .query_all_raw(Statement::from_string(
            app.store.backend(),
            "SELECT account_id FROM persons WHERE account_id IS NOT NULL",
        ))
        .await
        .unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(
        holders[0].try_get::<String>("", "account_id").unwrap(),
        format!("acct-{winner}")
    );
}

#[tokio::test]
async fn fifty_concurrent_binds_of_one_certification_bind_exactly_one() {
    let app = spawn_app().await;
    let attempts = (0..50).map(|index| {
        let app = &app;
        async move { app.bind(ADULT, &format!("acct-{index}")).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1);
    for failure in results.into_iter().filter(Result::is_err) {
        assert_status(failure, Code::AlreadyExists, "CERTIFICATION_REUSED");
    }
}

#[tokio::test]
async fn concurrent_binds_of_one_account_to_different_people_bind_exactly_one() {
    let app = spawn_app().await;
    let born = NaiveDate::from_ymd_opt(1992, 2, 2).unwrap();
    let imp_uids: Vec<String> = (0..20)
        .map(|index| {
            let imp_uid = format!("imp_6000000{index:05}");
            app.sandbox.insert_certification(CertificationRecord::certified(
                &imp_uid,
                &format!("person-{index}"),
                "계정경쟁",
                born,
                Utc::now().timestamp() - 30,
            ));
            imp_uid
        })
        .collect();
    let attempts = imp_uids.iter().map(|imp_uid| {
        let app = &app;
        async move { app.bind(imp_uid, "acct-shared").await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1);
    for failure in results.into_iter().filter(Result::is_err) {
        assert_status(failure, Code::AlreadyExists, "ACCOUNT_HAS_IDENTITY");
    }
}

#[tokio::test]
async fn what_is_stored_holds_no_ci_di_name_or_phone_in_the_clear() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-1").await.unwrap();
    app.verify(ADULT_SECOND_CERTIFICATION).await.unwrap();
    let backend = app.store.backend();
    let db = app.store.connection();
    let persons = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT ci_hash, di_hash, account_id FROM persons",
        ))
        .await
        .unwrap();
    assert_eq!(
        persons.len(),
        1,
        "two certifications of one person make one person"
    );
    let ci_hash: String = persons[0].try_get("", "ci_hash").unwrap();
    assert_eq!(ci_hash.len(), 64);
    let ci = certification_service::sandbox::identities::ci_for("hong");
    let di = certification_service::sandbox::identities::di_for("hong");
    assert_ne!(ci_hash, ci);
    let certifications = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT provider, provider_id, consumed_by FROM certifications ORDER BY provider_id",
        ))
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = certifications
        .iter()
        .map(|row| {
            (
                row.try_get("", "provider").unwrap(),
                row.try_get("", "provider_id").unwrap(),
                row.try_get("", "consumed_by").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("portone_v1".into(), ADULT.into(), Some("acct-1".into())),
            ("portone_v1".into(), ADULT_SECOND_CERTIFICATION.into(), None),
        ]
    );
    // Seen again: last_seen_at moves, first_seen_at stays.
    app.verify(ADULT_SECOND_CERTIFICATION).await.unwrap();
    let seen = db
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT first_seen_at, last_seen_at FROM certifications WHERE provider_id = '{ADULT_SECOND_CERTIFICATION}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    let first: chrono::DateTime<Utc> = seen.try_get("", "first_seen_at").unwrap();
    let last: chrono::DateTime<Utc> = seen.try_get("", "last_seen_at").unwrap();
    assert!(last > first, "{first} {last}");
    // Every text column of both tables, concatenated: none of the personal values appear.
    let everything = format!("{persons:?}{certifications:?}");
    for secret in [ci.as_str(), di.as_str(), "홍길동", "01012345678"] {
        assert!(!everything.contains(secret), "{secret} stored in the clear");
    }
}
