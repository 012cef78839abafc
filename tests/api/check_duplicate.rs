//! CheckDuplicate: by CI, or by imp_uid from our records or from PortOne.

use certification_service::{
    grpc::proto::check_duplicate_request::Key,
    sandbox::identities::{
        ADULT, ADULT_SECOND_CERTIFICATION, CertificationRecord, NOT_CERTIFIED, STALE, ci_for,
    },
};
use chrono::{NaiveDate, Utc};
use tonic::Code;

use crate::helpers::{assert_status, spawn_app};

#[tokio::test]
async fn check_duplicate_by_ci_answers_before_and_after_a_bind() {
    let app = spawn_app().await;
    let before = app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    assert!(!before.duplicate && before.account_id.is_empty() && before.bound_at.is_none());
    app.bind(ADULT, "acct-7").await.unwrap();
    let after = app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();
    assert!(after.duplicate);
    assert_eq!(after.account_id, "acct-7");
    assert!(after.bound_at.is_some());
    let stranger = app.check_duplicate(Key::Ci(ci_for("nobody"))).await.unwrap();
    assert!(!stranger.duplicate);
}

#[tokio::test]
async fn check_duplicate_by_imp_uid_uses_our_records_then_portone() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-7").await.unwrap();
    let lookups_after_bind = app.sandbox.stats().certification_lookups;

    // Seen before: answered from our records, PortOne not asked.
    let seen = app.check_duplicate(Key::ImpUid(ADULT.into())).await.unwrap();
    assert_eq!(seen.account_id, "acct-7");
    assert_eq!(app.sandbox.stats().certification_lookups, lookups_after_bind);

    // Never seen: PortOne is asked, and the same person is found held.
    let unseen = app
        .check_duplicate(Key::ImpUid(ADULT_SECOND_CERTIFICATION.into()))
        .await
        .unwrap();
    assert!(unseen.duplicate);
    assert_eq!(unseen.account_id, "acct-7");
    assert_eq!(app.sandbox.stats().certification_lookups, lookups_after_bind + 1);

    // Now recorded: the next question costs PortOne nothing.
    app.check_duplicate(Key::ImpUid(ADULT_SECOND_CERTIFICATION.into()))
        .await
        .unwrap();
    assert_eq!(app.sandbox.stats().certification_lookups, lookups_after_bind + 1);
}

#[tokio::test]
async fn check_duplicate_by_imp_uid_needs_no_fresh_certification_but_a_certified_one() {
    let app = spawn_app().await;
    let stale = app.check_duplicate(Key::ImpUid(STALE.into())).await.unwrap();
    assert!(!stale.duplicate);
    assert_status(
        app.check_duplicate(Key::ImpUid(NOT_CERTIFIED.into())).await,
        Code::FailedPrecondition,
        "NOT_CERTIFIED",
    );
    assert_status(
        app.check_duplicate(Key::ImpUid("imp_999999999999".into())).await,
        Code::NotFound,
        "CERTIFICATION_NOT_FOUND",
    );
}

#[tokio::test]
async fn check_duplicate_refuses_a_missing_key_or_a_malformed_one() {
    let app = spawn_app().await;
    let status = assert_status(
        app.client
            .clone()
            .check_duplicate(certification_service::grpc::proto::CheckDuplicateRequest { key: None })
            .await,
        Code::InvalidArgument,
        "MISSING_KEY",
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.bad_request().unwrap().field_violations[0].field, "key");
    assert_status(
        app.check_duplicate(Key::Ci("not a CI!".into())).await,
        Code::InvalidArgument,
        "INVALID_CI",
    );
    assert_status(
        app.check_duplicate(Key::Ci(String::new())).await,
        Code::InvalidArgument,
        "INVALID_CI",
    );
    assert_status(
        app.check_duplicate(Key::ImpUid("imp_1/../x".into())).await,
        Code::InvalidArgument,
        "INVALID_IMP_UID",
    );
    assert!(
        app.sandbox.stats().requests.is_empty(),
        "bad input reached PortOne"
    );
}

/// Lookups that arrive together are answered by one statement (src/store/batch/lookups.rs): each
/// caller must still get its own person's answer, whether that person is bound, seen but free,
/// or never seen, and however many callers ask about the same person.
#[tokio::test]
async fn concurrent_lookups_by_ci_each_answer_for_their_own_person() {
    let app = spawn_app().await;
    let born = NaiveDate::from_ymd_opt(1990, 5, 5).unwrap();
    let persons = 30;
    for index in 0..persons {
        let imp_uid = format!("imp_6000000{index:05}");
        let certified_at = Utc::now().timestamp() - 30;
        let record =
            CertificationRecord::certified(&imp_uid, &format!("crowd-{index}"), "군중", born, certified_at);
        app.sandbox.insert_certification(record);
        match index % 3 {
            0 => assert!(
                app.bind(&imp_uid, &format!("acct-crowd-{index}"))
                    .await
                    .unwrap()
                    .bound
            ),
            1 => assert!(
                !app.verify(&imp_uid)
                    .await
                    .unwrap()
                    .into_inner()
                    .duplicate
                    .unwrap()
                    .duplicate
            ),
            _ => {} // never seen
        }
    }
    let lookups = (0..600).map(|n| {
        let (app, index) = (&app, n % persons);
        async move {
            (
                index,
                app.check_duplicate(Key::Ci(ci_for(&format!("crowd-{index}"))))
                    .await,
            )
        }
    });
    for (index, answer) in futures::future::join_all(lookups).await {
        let answer = answer.unwrap();
        if index % 3 == 0 {
            assert!(answer.duplicate, "person {index} is bound");
            assert_eq!(answer.account_id, format!("acct-crowd-{index}"));
            assert!(answer.bound_at.is_some());
        } else {
            assert!(!answer.duplicate, "person {index} is free");
            assert!(answer.account_id.is_empty() && answer.bound_at.is_none());
        }
    }
}
