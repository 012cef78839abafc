//! What a session's purpose and expected person decide, that a minor is never bound (with and
//! without sessions), and that a refused certification leaves nothing behind.

use certification_service::{
    grpc::proto::{
        BeginVerificationRequest, ExpectedPerson, Purpose, VerifyRequest, check_duplicate_request::Key,
    },
    sandbox::identities::{MINOR, ci_for},
};
use chrono::{Datelike, Utc};
use tonic::Code;
use tonic_types::StatusExt;
use unicode_normalization::UnicodeNormalization as _;

use crate::{
    certify::{insert_certified, insert_certified_at},
    helpers::{App, assert_status},
    sessions::{begin, begin_with, count, redeem, sessions_on},
};

#[tokio::test]
async fn recovery_says_who_holds_the_person_and_binds_nothing() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let signup = begin(&app, Purpose::Signup, Some("acct-holder")).await;
    let imp_uid = insert_certified(&app, &signup.merchant_uid, "recovering");
    redeem(&app, &signup.merchant_uid, &imp_uid).await.unwrap();

    let recovery = begin(&app, Purpose::Recovery, None).await;
    let imp_uid = insert_certified(&app, &recovery.merchant_uid, "recovering");
    let answer = redeem(&app, &recovery.merchant_uid, &imp_uid).await.unwrap();
    assert_eq!(answer.purpose(), Purpose::Recovery);
    assert!(!answer.bound);
    let duplicate = answer.duplicate.unwrap();
    assert!(duplicate.duplicate);
    assert_eq!(duplicate.account_id, "acct-holder");

    // A person nobody holds: answered, and nothing about them stored.
    let recovery = begin(&app, Purpose::Recovery, None).await;
    let stranger = insert_certified(&app, &recovery.merchant_uid, "stranger");
    let answer = redeem(&app, &recovery.merchant_uid, &stranger).await.unwrap();
    assert!(!answer.duplicate.unwrap().duplicate);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 1);
}

#[tokio::test]
async fn reverify_confirms_the_accounts_own_person_only() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let signup = begin(&app, Purpose::Signup, Some("acct-re")).await;
    let imp_uid = insert_certified(&app, &signup.merchant_uid, "owner");
    redeem(&app, &signup.merchant_uid, &imp_uid).await.unwrap();

    let reverify = begin(&app, Purpose::Reverify, Some("acct-re")).await;
    let imp_uid = insert_certified(&app, &reverify.merchant_uid, "owner");
    let answer = redeem(&app, &reverify.merchant_uid, &imp_uid).await.unwrap();
    assert_eq!(answer.purpose(), Purpose::Reverify);
    assert!(!answer.bound);
    let reverified_at = answer.reverified_at.unwrap().seconds;
    assert!((Utc::now().timestamp() - reverified_at).abs() < 10);
    let retry = redeem(&app, &reverify.merchant_uid, &imp_uid).await.unwrap();
    assert_eq!(retry.reverified_at, answer.reverified_at);

    let impostor = begin(&app, Purpose::Reverify, Some("acct-re")).await;
    let imp_uid = insert_certified(&app, &impostor.merchant_uid, "impostor");
    let status = assert_status(
        redeem(&app, &impostor.merchant_uid, &imp_uid).await,
        Code::FailedPrecondition,
        "IDENTITY_MISMATCH",
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().metadata["fields"],
        "ci"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM persons").await,
        1,
        "the impostor left nothing"
    );
}

#[tokio::test]
async fn an_age_check_reports_the_age_decision_and_binds_nothing() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin_with(
        &app,
        BeginVerificationRequest {
            purpose: Purpose::AgeCheck.into(),
            min_age: Some(19),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let imp_uid = insert_certified(&app, &session.merchant_uid, "of-age");
    let answer = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    let age = answer.age_check.unwrap();
    // The decision; the exact age is withheld (permissions.rs).
    assert!(age.satisfied && age.min_age == 19 && age.age == 0);
    assert!(!answer.bound);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 0);
}

#[tokio::test]
async fn the_expected_person_matches_after_normalisation_and_a_mismatch_names_only_fields() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let expect = |name: &str, phone: &str| ExpectedPerson {
        name: Some(name.to_owned()),
        birth_date: Some("1990-03-15".to_owned()),
        phone: Some(phone.to_owned()),
    };
    // Decomposed Hangul (NFD) with stray spaces, and a phone with dashes: the same person.
    let decomposed: String = " 홍길동  ".nfd().collect();
    let session = begin_with(
        &app,
        BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-expected".into()),
            expected: Some(expect(&decomposed, "010-1234-5678")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let imp_uid = insert_certified(&app, &session.merchant_uid, "expected");
    assert!(redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap().bound);

    let session = begin_with(
        &app,
        BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-mismatch".into()),
            expected: Some(expect("김철수", "010-9999-0000")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let imp_uid = insert_certified(&app, &session.merchant_uid, "mismatched");
    let status = assert_status(
        redeem(&app, &session.merchant_uid, &imp_uid).await,
        Code::FailedPrecondition,
        "IDENTITY_MISMATCH",
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().metadata["fields"],
        "name,phone"
    );
    let printed = format!("{status:?}");
    for personal in ["김철수", "홍길동", "0109999", "01012345678"] {
        assert!(!printed.contains(personal), "{printed}");
    }
    // Refused: no sealed CI of the mismatched person, and the session is spent.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 1);
    let again = insert_certified(&app, &session.merchant_uid, "another");
    assert_status(
        redeem(&app, &session.merchant_uid, &again).await,
        Code::FailedPrecondition,
        "SESSION_USED",
    );
    // The expected person is stored sealed, never in the clear.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM verification_sessions WHERE expected_sealed LIKE '%김철수%' OR expected_sealed LIKE '%0109999%'").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM verification_sessions WHERE expected_sealed IS NOT NULL"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_minor_is_never_bound_in_a_session_and_nothing_is_stored() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin_with(
        &app,
        BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-minor".into()),
            min_age: Some(19),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let today = Utc::now().date_naive();
    let fifteen = today.with_year(today.year() - 15).unwrap_or(today) - chrono::Days::new(100);
    let imp_uid = insert_certified_at(&app, &session.merchant_uid, "minor-person", fifteen, 0);
    let answer = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    assert!(!answer.age_check.unwrap().satisfied);
    assert!(!answer.bound);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 0);
    let check = app
        .check_duplicate(Key::Ci(ci_for("minor-person")))
        .await
        .unwrap();
    assert!(!check.duplicate);
}

#[tokio::test]
async fn without_sessions_a_minor_is_still_never_bound_and_session_certifications_stay_theirs() {
    let app = App::new()
        .adjust(|settings| settings.policy.require_session = false)
        .spawn()
        .await;
    let request = VerifyRequest {
        imp_uid: MINOR.into(),
        account_id: "acct-minor".into(),
        min_age: Some(19),
        ..Default::default()
    };
    let answer = app.client.clone().verify(request).await.unwrap().into_inner();
    assert!(!answer.age_check.unwrap().satisfied);
    assert!(!answer.bound);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 0);

    // A certification made for a session redeems only through it, whatever REQUIRE_SESSION says.
    let session = begin(&app, Purpose::Signup, Some("acct-victim")).await;
    let imp_uid = insert_certified(&app, &session.merchant_uid, "victim");
    let hijack = VerifyRequest {
        imp_uid: imp_uid.clone(),
        account_id: "acct-attacker".into(),
        ..Default::default()
    };
    let result = app.client.clone().verify(hijack).await;
    assert_status(result, Code::FailedPrecondition, "SESSION_REQUIRED");
    assert!(redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap().bound);
}

#[tokio::test]
async fn sessions_are_counted_by_purpose_and_reason() {
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.server.metrics_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        })
        .spawn()
        .await;
    let session = begin(&app, Purpose::AgeCheck, None).await;
    let imp_uid = insert_certified(&app, &session.merchant_uid, "counted");
    redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    let other = insert_certified(&app, &session.merchant_uid, "counted-again");
    assert!(redeem(&app, &session.merchant_uid, &other).await.is_err());
    assert!(redeem(&app, "", &other).await.is_err());

    let url = format!("http://{}/metrics", app.metrics_addr.unwrap());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for series in [
        "certification_sessions_begun_total{purpose=\"age_check\"}",
        "certification_sessions_redeemed_total{purpose=\"age_check\",bound=\"false\"}",
        "certification_sessions_refused_total{purpose=\"age_check\",reason=\"SESSION_USED\"}",
        "certification_sessions_refused_total{purpose=\"unknown\",reason=\"SESSION_REQUIRED\"}",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    assert!(!text.contains(&session.merchant_uid));
}
