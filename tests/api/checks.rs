//! Verify's checks: certified, fresh, ours, old enough; and what a passing Verify reports.

use std::time::Duration;

use certification_service::{
    grpc::proto::{Gender, VerifyRequest},
    sandbox::identities::{
        self, ADULT, FOREIGNER, MINOR, NO_PHONE, NOT_CERTIFIED, STALE, TURNS_19_TODAY, TURNS_19_TOMORROW,
    },
};
use tonic::Code;

use crate::helpers::{App, assert_status, spawn_app, verify_request};

#[tokio::test]
async fn verify_returns_the_verified_identity_of_an_adult() {
    let app = spawn_app().await;
    let response = app.verify(ADULT).await.unwrap().into_inner();
    let identity = response.identity.unwrap();
    assert_eq!(identity.name, "홍길동");
    assert_eq!(identity.gender(), Gender::Male);
    assert_eq!(identity.birth_date, "1990-03-15");
    assert_eq!(identity.phone.as_deref(), Some("01012345678"));
    assert_eq!(identity.carrier.as_deref(), Some("SKT"));
    assert!(!identity.foreigner);
    assert_eq!(identity.ci, identities::ci_for("hong"));
    assert_eq!(identity.ci.len(), 88);
    assert_eq!(identity.di, identities::di_for("hong"));
    let certification = response.certification.unwrap();
    assert_eq!(certification.imp_uid, ADULT);
    assert_eq!(certification.merchant_uid, "signup-0001");
    assert_eq!(certification.pg_provider, "danal");
    assert!(certification.certified_at.is_some());
    let age = response.age_check.unwrap();
    assert!(age.age >= 36 && age.min_age == 14 && age.satisfied);
    assert!(!response.duplicate.unwrap().duplicate);
    assert!(!response.bound);
}

#[tokio::test]
async fn verify_tolerates_a_provider_without_phone_gender_or_di() {
    let app = spawn_app().await;
    let response = app.verify(NO_PHONE).await.unwrap().into_inner();
    let identity = response.identity.unwrap();
    assert_eq!(identity.gender(), Gender::Unspecified);
    assert_eq!(identity.phone, None);
    assert_eq!(identity.carrier, None);
    assert_eq!(identity.di, "");
    assert_eq!(response.certification.unwrap().pg_provider, "inicis_unified");
}

#[tokio::test]
async fn verify_reports_a_foreigner() {
    let app = spawn_app().await;
    let identity = app
        .verify(FOREIGNER)
        .await
        .unwrap()
        .into_inner()
        .identity
        .unwrap();
    assert!(identity.foreigner);
    assert_eq!(identity.carrier.as_deref(), Some("LGT_MVNO"));
}

#[tokio::test]
async fn verify_fails_with_not_certified_when_the_person_did_not_finish() {
    let app = spawn_app().await;
    assert_status(
        app.verify(NOT_CERTIFIED).await,
        Code::FailedPrecondition,
        "NOT_CERTIFIED",
    );
}

#[tokio::test]
async fn verify_fails_with_certification_expired_for_an_old_certification() {
    let app = spawn_app().await;
    let status = assert_status(
        app.verify(STALE).await,
        Code::FailedPrecondition,
        "CERTIFICATION_EXPIRED",
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.error_info().unwrap().metadata["max_age_seconds"], "1800");
}

#[tokio::test]
async fn the_freshness_window_is_configurable() {
    let app = App::new()
        .adjust(|settings| settings.policy.max_certification_age = Duration::from_secs(3 * 3600))
        .spawn()
        .await;
    app.verify(STALE).await.unwrap();
}

#[tokio::test]
async fn verify_checks_merchant_uid_when_given() {
    let app = spawn_app().await;
    let matching = VerifyRequest {
        merchant_uid: "signup-0001".into(),
        ..verify_request(ADULT)
    };
    app.client.clone().verify(matching).await.unwrap();
    let other = VerifyRequest {
        merchant_uid: "signup-9999".into(),
        ..verify_request(ADULT)
    };
    assert_status(
        app.client.clone().verify(other).await,
        Code::FailedPrecondition,
        "MERCHANT_MISMATCH",
    );
}

#[tokio::test]
async fn a_minor_is_reported_not_rejected_by_default() {
    let app = spawn_app().await;
    let age = app.verify(MINOR).await.unwrap().into_inner().age_check.unwrap();
    assert_eq!((age.age, age.min_age, age.satisfied), (15, 14, true));
    let stricter = VerifyRequest {
        min_age: Some(19),
        ..verify_request(MINOR)
    };
    let age = app
        .client
        .clone()
        .verify(stricter)
        .await
        .unwrap()
        .into_inner()
        .age_check
        .unwrap();
    assert_eq!((age.age, age.min_age, age.satisfied), (15, 19, false));
}

#[tokio::test]
async fn a_minor_is_rejected_with_underage_when_configured_to_reject() {
    let app = App::new()
        .adjust(|settings| {
            settings.policy.reject_underage = true;
            settings.policy.min_age = 19;
        })
        .spawn()
        .await;
    let status = assert_status(app.verify(MINOR).await, Code::FailedPrecondition, "UNDERAGE");
    let details = tonic_types::StatusExt::get_error_details(&status);
    let info = details.error_info().unwrap();
    // The required minimum, never the person's exact age (personal data).
    assert_eq!(info.metadata["min_age"], "19");
    assert!(!info.metadata.contains_key("age"), "{info:?}");
    assert!(!status.message().contains("15"), "{}", status.message());
    // A request's own min_age overrides the configured one.
    let lenient = VerifyRequest {
        min_age: Some(14),
        ..verify_request(MINOR)
    };
    app.client.clone().verify(lenient).await.unwrap();
    // Nothing was bound while rejected.
    assert_status(
        app.bind(MINOR, "acct-minor").await.map(|_| ()),
        Code::FailedPrecondition,
        "UNDERAGE",
    );
}

#[tokio::test]
async fn age_is_exact_on_the_birthday_in_korea() {
    let app = spawn_app().await;
    for (imp_uid, age, satisfied) in [(TURNS_19_TODAY, 19, true), (TURNS_19_TOMORROW, 18, false)] {
        let request = VerifyRequest {
            min_age: Some(19),
            ..verify_request(imp_uid)
        };
        let check = app
            .client
            .clone()
            .verify(request)
            .await
            .unwrap()
            .into_inner()
            .age_check
            .unwrap();
        assert_eq!((check.age, check.satisfied), (age, satisfied), "{imp_uid}");
    }
}
