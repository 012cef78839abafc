//! `certification.sandbox.v1.Sandbox/Certify`: the sandbox plays the browser, then Verify sees
//! the certification it made.

use std::collections::HashSet;

use certification_service::{
    access::{CallerPermissions, CallerTokens},
    grpc::proto::{Gender, VerifyRequest},
    sandbox::{
        grpc::proto::{CertifyRequest, Person},
        identities::{ci_for, di_for},
    },
};
use tonic::{Code, Request, metadata::MetadataValue};

use crate::{
    certify::{CertifyRequestExt, certify, v1_request, v2_request},
    helpers::{App, assert_status, spawn_app},
    sessions::redeem,
};

#[tokio::test]
async fn certify_makes_an_adult_that_verify_accepts_for_that_merchant_uid() {
    let app = spawn_app().await;
    let imp_uid = certify(&app, v1_request("order-1", Person::Adult)).await.unwrap();
    let response = redeem(&app, "order-1", &imp_uid).await.unwrap();
    let identity = response.identity.unwrap();
    assert_eq!(identity.name, "홍길동");
    assert_eq!(identity.birth_date, "1990-03-15");
    assert_eq!(identity.gender(), Gender::Male);
    assert_eq!(identity.phone.as_deref(), Some("01012345678"));
    assert_eq!(identity.carrier.as_deref(), Some("SKT"));
    assert_eq!(identity.ci, ci_for("hong"), "the fixture adult's CI");
    assert_eq!(identity.di, di_for("hong"));
    let certification = response.certification.unwrap();
    assert_eq!(certification.imp_uid, imp_uid);
    assert_eq!(certification.merchant_uid, "order-1");
    assert_eq!(certification.pg_provider, "danal");
    assert!(response.age_check.unwrap().satisfied);
    // Certified for order-1, so another merchant_uid is refused.
    assert_status(
        redeem(&app, "order-2", &imp_uid).await,
        Code::FailedPrecondition,
        "MERCHANT_MISMATCH",
    );
}

#[tokio::test]
async fn the_adult_certified_twice_is_the_same_person_under_a_new_imp_uid() {
    let app = spawn_app().await;
    let first = certify(&app, v1_request("signup-a", Person::Adult))
        .await
        .unwrap();
    let second = certify(&app, v1_request("signup-b", Person::Adult))
        .await
        .unwrap();
    assert_ne!(first, second);
    assert!(app.bind(&first, "acct-first").await.unwrap().bound);
    let again = redeem(&app, "signup-b", &second).await.unwrap();
    assert_eq!(again.identity.unwrap().ci, ci_for("hong"));
    let duplicate = again.duplicate.unwrap();
    assert!(duplicate.duplicate);
    assert_eq!(duplicate.account_id, "acct-first");
}

#[tokio::test]
async fn each_person_verifies_with_the_traits_the_proto_promises() {
    let app = spawn_app().await;

    let minor = certify(&app, v1_request("m-minor", Person::Minor)).await.unwrap();
    let response = redeem(&app, "m-minor", &minor).await.unwrap();
    assert_eq!(response.identity.unwrap().carrier.as_deref(), Some("KT"));
    assert_eq!(response.age_check.unwrap().age, 15);

    let foreigner = certify(&app, v1_request("m-foreigner", Person::Foreigner))
        .await
        .unwrap();
    let identity = redeem(&app, "m-foreigner", &foreigner)
        .await
        .unwrap()
        .identity
        .unwrap();
    assert!(identity.foreigner);
    assert_eq!(identity.ci, ci_for("smith-john"));

    let no_phone = certify(&app, v1_request("m-no-phone", Person::NoPhone))
        .await
        .unwrap();
    let response = redeem(&app, "m-no-phone", &no_phone).await.unwrap();
    let identity = response.identity.unwrap();
    assert_eq!(identity.gender(), Gender::Male);
    assert_eq!((identity.phone, identity.carrier), (None, None));
    assert!(!identity.di.is_empty());
    assert_eq!(response.certification.unwrap().pg_provider, "danal");

    let inicis = certify(&app, v1_request("m-inicis", Person::Inicis))
        .await
        .unwrap();
    let response = redeem(&app, "m-inicis", &inicis).await.unwrap();
    let identity = response.identity.unwrap();
    assert_eq!(identity.gender(), Gender::Unspecified);
    assert_eq!(identity.di, "");
    assert_eq!(identity.phone, None);
    assert_eq!(response.certification.unwrap().pg_provider, "inicis_unified");

    for (person, age, satisfied) in [
        (Person::Turns19Today, 19, true),
        (Person::Turns19Tomorrow, 18, false),
    ] {
        let imp_uid = certify(&app, v1_request("m-birthday", person)).await.unwrap();
        let request = VerifyRequest {
            imp_uid,
            merchant_uid: "m-birthday".to_owned(),
            min_age: Some(19),
            ..VerifyRequest::default()
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
        assert_eq!((check.age, check.satisfied), (age, satisfied), "{person:?}");
    }
}

#[tokio::test]
async fn a_certification_without_ci_is_ci_unavailable() {
    let app = spawn_app().await;
    let imp_uid = certify(&app, v1_request("m-no-ci", Person::NoCi)).await.unwrap();
    let status = assert_status(
        redeem(&app, "m-no-ci", &imp_uid).await,
        Code::FailedPrecondition,
        "CI_UNAVAILABLE",
    );
    assert!(status.message().contains("contract"), "{status:?}");
}

#[tokio::test]
async fn a_person_who_never_finished_is_not_certified() {
    let app = spawn_app().await;
    let imp_uid = certify(&app, v1_request("m-abandoned", Person::NotCertified))
        .await
        .unwrap();
    assert_status(
        redeem(&app, "m-abandoned", &imp_uid).await,
        Code::FailedPrecondition,
        "NOT_CERTIFIED",
    );
}

#[tokio::test]
async fn person_keys_make_fifty_distinct_adults_with_the_adults_traits() {
    let app = spawn_app().await;
    let mut cis = HashSet::new();
    for index in 0..50 {
        let person_key = format!("load-test.user_{index}");
        let request = v1_request("m-keys", Person::Adult).person_key(&person_key);
        let imp_uid = certify(&app, request).await.unwrap();
        let identity = redeem(&app, "m-keys", &imp_uid).await.unwrap().identity.unwrap();
        assert_eq!(identity.name, "홍길동");
        assert_eq!(identity.ci, ci_for(&person_key));
        assert_eq!(identity.di, di_for(&person_key));
        assert_ne!(identity.phone.as_deref(), Some("01012345678"));
        cis.insert(identity.ci);
    }
    assert_eq!(cis.len(), 50);
    assert!(!cis.contains(&ci_for("hong")));
}

#[tokio::test]
async fn certified_seconds_ago_counts_back_from_the_sandboxs_clock() {
    let app = spawn_app().await;
    // The sandbox's clock runs 30 s ahead: certified_at follows it, not the server's.
    app.sandbox.set_clock_skew(30);
    let request = CertifyRequest {
        certified_seconds_ago: Some(600),
        ..v1_request("m-earlier", Person::Adult)
    };
    let imp_uid = certify(&app, request).await.unwrap();
    let certified_at = redeem(&app, "m-earlier", &imp_uid)
        .await
        .unwrap()
        .certification
        .unwrap()
        .certified_at
        .unwrap()
        .seconds;
    let expected = chrono::Utc::now().timestamp() + 30 - 600;
    assert!(
        (certified_at - expected).abs() <= 5,
        "{certified_at} vs {expected}"
    );

    // Older than the 30 minutes the test settings allow.
    let request = CertifyRequest {
        certified_seconds_ago: Some(3_600),
        ..v1_request("m-stale", Person::Adult)
    };
    let imp_uid = certify(&app, request).await.unwrap();
    assert_status(
        redeem(&app, "m-stale", &imp_uid).await,
        Code::FailedPrecondition,
        "CERTIFICATION_EXPIRED",
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (v1_request("", Person::Adult), "INVALID_MERCHANT_UID"),
        (
            v1_request(&"m".repeat(257), Person::Adult),
            "INVALID_MERCHANT_UID",
        ),
        (v1_request("a\tb", Person::Adult), "INVALID_MERCHANT_UID"),
        (v1_request("m-1", Person::Unspecified), "INVALID_PERSON"),
        (
            CertifyRequest {
                person: 42,
                ..v1_request("m-1", Person::Adult)
            },
            "INVALID_PERSON",
        ),
        (
            CertifyRequest {
                person_key: Some("has space".to_owned()),
                ..v1_request("m-1", Person::Adult)
            },
            "INVALID_PERSON_KEY",
        ),
        (
            CertifyRequest {
                person_key: Some(String::new()),
                ..v1_request("m-1", Person::Adult)
            },
            "INVALID_PERSON_KEY",
        ),
        (
            CertifyRequest {
                certified_seconds_ago: Some(86_401),
                ..v1_request("m-1", Person::Adult)
            },
            "INVALID_CERTIFIED_SECONDS_AGO",
        ),
        (
            CertifyRequest {
                tier: Some("T1".to_owned()),
                ..v1_request("m-1", Person::Adult)
            },
            "INVALID_TIER",
        ),
        // Well-formed, but not the sandbox's sub-merchant.
        (
            CertifyRequest {
                tier: Some("T99".to_owned()),
                ..v1_request("m-1", Person::Adult)
            },
            "INVALID_TIER",
        ),
        (
            CertifyRequest {
                channel: 7,
                ..v2_request("iv-1", Person::Adult)
            },
            "INVALID_CHANNEL",
        ),
    ];
    for (request, reason) in cases {
        assert_status(
            app.sandbox_client().certify(request).await,
            Code::InvalidArgument,
            reason,
        );
    }
}

#[tokio::test]
async fn the_sandbox_service_needs_a_caller_token_like_certification_service() {
    let token = "signup-token-0123456789abcdef";
    let tokens = CallerTokens::parse(&format!("signup={token}")).unwrap();
    let app = App::new()
        .adjust(|settings| {
            settings.server.caller_tokens = Some(tokens);
            settings.server.caller_permissions = Some(CallerPermissions::parse("*").unwrap());
        })
        .spawn()
        .await;
    let without_token = app
        .sandbox_client()
        .certify(v1_request("m-auth", Person::Adult))
        .await;
    assert_status(without_token, Code::Unauthenticated, "UNAUTHENTICATED");

    let mut request = Request::new(v1_request("m-auth", Person::Adult));
    let bearer = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
    request.metadata_mut().insert("authorization", bearer);
    let response = app.sandbox_client().certify(request).await.unwrap();
    assert_eq!(response.into_inner().merchant_uid, "m-auth");
}
