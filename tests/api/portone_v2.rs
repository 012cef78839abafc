//! PortOne V2 identity verifications behind the same RPCs: V2 sessions (the service issues the
//! identity verification id), statuses, test channels, absent fields, no CI, one person across
//! V1 and V2, and the configuration's defaults.

use certification_service::{
    grpc::proto::{
        BeginVerificationRequest, CheckDuplicateRequest, Gender, Provider, Purpose, VerifyRequest,
        VerifyResponse, check_duplicate_request::Key,
    },
    sandbox::grpc::proto::{ChannelType, Person},
    secret::Secret,
};
use tonic::{Code, Status};

use crate::{
    certify::{CertifyRequestExt, certify, insert_certified, v2_request},
    helpers::{App, TestApp, assert_status},
    sessions::{begin, redeem, sessions_on},
};

pub async fn begin_v2(app: &TestApp, purpose: Purpose, account: Option<&str>) -> String {
    let request = BeginVerificationRequest {
        purpose: purpose.into(),
        account_id: account.map(str::to_owned),
        ..Default::default()
    };
    // No provider named: V2, because it is configured.
    let session = app
        .client
        .clone()
        .begin_verification(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.provider(), Provider::PortoneV2);
    assert!(session.merchant_uid.is_empty());
    session.identity_verification_id
}

pub async fn verify_v2(app: &TestApp, id: &str) -> Result<VerifyResponse, Status> {
    let request = VerifyRequest {
        identity_verification_id: id.to_owned(),
        ..Default::default()
    };
    app.client
        .clone()
        .verify(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_v2_signup_session_hands_out_the_browsers_ids_and_binds_once() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let request = BeginVerificationRequest {
        purpose: Purpose::Signup.into(),
        account_id: Some("acct-v2".into()),
        ..Default::default()
    };
    let session = app
        .client
        .clone()
        .begin_verification(request)
        .await
        .unwrap()
        .into_inner();
    let id = session.identity_verification_id.clone();
    assert!(id.starts_with("vs_") && id.len() == 35, "{id}");
    assert_eq!(session.store_id, certification_service::sandbox::SANDBOX_STORE_ID);
    assert_eq!(
        session.channel_key,
        certification_service::sandbox::SANDBOX_V2_CHANNEL_KEY
    );

    certify(&app, v2_request(&id, Person::Adult).person_key("v2-signup"))
        .await
        .unwrap();
    let answer = verify_v2(&app, &id).await.unwrap();
    assert!(answer.bound);
    let certification = answer.certification.clone().unwrap();
    assert_eq!(certification.provider(), Provider::PortoneV2);
    assert_eq!(certification.id, id);
    assert!(certification.imp_uid.is_empty());
    assert_eq!(answer.identity.as_ref().unwrap().birth_date, "1990-03-15");
    // A retry answers the same; the id is the session, so nothing else can redeem it.
    assert_eq!(verify_v2(&app, &id).await.unwrap(), answer);
    let stats = app.sandbox.stats();
    assert!(stats.identity_verification_lookups >= 2, "{stats:?}");
}

#[tokio::test]
async fn one_person_is_one_person_across_v1_and_v2() {
    let app = App::new().adjust(sessions_on).spawn().await;
    // Bound through V1 ...
    let v1 = begin(&app, Purpose::Signup, Some("acct-moved")).await;
    let imp_uid = insert_certified(&app, &v1.merchant_uid, "moving-person");
    assert!(redeem(&app, &v1.merchant_uid, &imp_uid).await.unwrap().bound);
    // ... and back through V2 for another account: the same CI, so the same person.
    let id = begin_v2(&app, Purpose::Signup, Some("acct-second")).await;
    certify(&app, v2_request(&id, Person::Adult).person_key("moving-person"))
        .await
        .unwrap();
    assert_status(
        verify_v2(&app, &id).await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );

    let recovery = begin_v2(&app, Purpose::Recovery, None).await;
    certify(
        &app,
        v2_request(&recovery, Person::Adult).person_key("moving-person"),
    )
    .await
    .unwrap();
    let answer = verify_v2(&app, &recovery).await.unwrap();
    assert_eq!(answer.duplicate.unwrap().account_id, "acct-moved");
    // Asked again through each session: the same holder.
    let through_sessions = [
        (Key::ImpUid(imp_uid), v1.merchant_uid),
        (Key::IdentityVerificationId(recovery), String::new()),
    ];
    for (key, merchant_uid) in through_sessions {
        let holder = app
            .client
            .clone()
            .check_duplicate(CheckDuplicateRequest {
                key: Some(key),
                merchant_uid,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(holder.account_id, "acct-moved");
    }
}

#[tokio::test]
async fn unfinished_test_channel_and_ci_less_verifications_are_refused_for_what_they_are() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let cases = [
        (Person::NotCertified, ChannelType::Live, "NOT_CERTIFIED"),
        (Person::Adult, ChannelType::Test, "TEST_CHANNEL"),
        (Person::NoCi, ChannelType::Live, "CI_UNAVAILABLE"),
    ];
    for (person, channel, reason) in cases {
        let id = begin_v2(&app, Purpose::Signup, Some("acct-refused")).await;
        certify(
            &app,
            v2_request(&id, person).person_key(reason).on_channel(channel),
        )
        .await
        .unwrap();
        assert_status(verify_v2(&app, &id).await, Code::FailedPrecondition, reason);
    }
    let persons = crate::sessions::count(&app, "SELECT COUNT(*) FROM persons").await;
    assert_eq!(persons, 0, "nothing stored about a refused verification");
}

#[tokio::test]
async fn test_channels_pass_when_allowed_and_absent_fields_stay_absent() {
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.policy.allow_test_channel = true;
        })
        .spawn()
        .await;
    // A signup without an account: it answers the identity (an age check would not) and binds
    // nothing.
    let id = begin_v2(&app, Purpose::Signup, None).await;
    certify(
        &app,
        v2_request(&id, Person::Inicis)
            .person_key("v2-inicis")
            .on_channel(ChannelType::Test),
    )
    .await
    .unwrap();
    // KG Inicis through V2 (its OpenAPI): phone and gender always, operator and DI never.
    let identity = verify_v2(&app, &id).await.unwrap().identity.unwrap();
    assert_ne!(identity.gender(), Gender::Unspecified);
    assert!(identity.phone.is_some());
    assert!(
        identity.di.is_empty() && identity.carrier.is_none(),
        "{identity:?}"
    );

    // Danal without the phone contract: no phone, no carrier, and nothing invented.
    let id = begin_v2(&app, Purpose::Signup, None).await;
    certify(&app, v2_request(&id, Person::NoPhone).person_key("v2-no-phone"))
        .await
        .unwrap();
    let identity = verify_v2(&app, &id).await.unwrap().identity.unwrap();
    assert!(identity.phone.is_none() && identity.carrier.is_none());
    assert!(!identity.di.is_empty() && identity.gender() != Gender::Unspecified);
}

#[tokio::test]
async fn unknown_ids_wrong_secrets_and_mixed_keys_get_their_own_answers() {
    let app = App::new()
        .adjust(|settings| settings.policy.require_session = false)
        .spawn()
        .await;
    assert_status(
        verify_v2(&app, "no-such-verification").await,
        Code::NotFound,
        "CERTIFICATION_NOT_FOUND",
    );
    let both = VerifyRequest {
        imp_uid: "imp_100000000001".into(),
        identity_verification_id: "iv-1".into(),
        ..Default::default()
    };
    let result = app.client.clone().verify(both).await;
    assert_status(result, Code::InvalidArgument, "INVALID_IDENTITY_VERIFICATION_ID");
    assert_status(
        verify_v2(&app, "../users").await,
        Code::InvalidArgument,
        "INVALID_IDENTITY_VERIFICATION_ID",
    );

    let wrong = App::new()
        .adjust(|settings| {
            settings.policy.require_session = false;
            settings.portone_v2.as_mut().unwrap().api_secret = Secret::new("not-the-secret");
        })
        .spawn()
        .await;
    assert_status(
        verify_v2(&wrong, "anything").await,
        Code::Unavailable,
        "UPSTREAM_AUTH_FAILED",
    );
}

#[tokio::test]
async fn a_session_redeems_only_through_its_own_provider_and_an_unconfigured_one_is_refused() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let v1 = begin(&app, Purpose::Signup, Some("acct-p")).await;
    let result = verify_v2(&app, &v1.merchant_uid).await;
    assert_status(result, Code::InvalidArgument, "SESSION_MISMATCH");

    let v1_only = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.portone_v2 = None;
        })
        .spawn()
        .await;
    let request = BeginVerificationRequest {
        purpose: Purpose::Signup.into(),
        provider: Provider::PortoneV2.into(),
        ..Default::default()
    };
    let refused = v1_only.client.clone().begin_verification(request).await;
    assert_status(refused, Code::FailedPrecondition, "PROVIDER_NOT_CONFIGURED");
    let default = v1_only
        .client
        .clone()
        .begin_verification(BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.provider(), Provider::PortoneV1);
    assert!(!default.merchant_uid.is_empty() && default.identity_verification_id.is_empty());
}

#[tokio::test]
async fn a_sub_merchants_lookups_carry_its_tier() {
    let app = App::new()
        .adjust(|settings| {
            settings.policy.require_session = false;
            settings.portone_v1.as_mut().unwrap().tier = Some("T01".into());
        })
        .spawn()
        .await;
    let _ = app
        .verify(certification_service::sandbox::identities::ADULT)
        .await;
    assert_eq!(app.sandbox.stats().last_tier.as_deref(), Some("T01"));
}

#[tokio::test]
async fn a_v2_only_merchant_builds_no_v1_client_and_signs_up_through_v2() {
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.portone_v1 = None;
        })
        .spawn()
        .await;
    assert!(app.portone.is_none(), "no V1 client without V1 settings");
    let id = begin_v2(&app, Purpose::Signup, Some("acct-v2-only")).await;
    certify(&app, v2_request(&id, Person::Adult).person_key("v2-only"))
        .await
        .unwrap();
    assert!(verify_v2(&app, &id).await.unwrap().bound);

    let v1 = BeginVerificationRequest {
        purpose: Purpose::Signup.into(),
        provider: Provider::PortoneV1.into(),
        ..Default::default()
    };
    let refused = app.client.clone().begin_verification(v1).await;
    assert_status(refused, Code::FailedPrecondition, "PROVIDER_NOT_CONFIGURED");
    let stats = app.sandbox.stats();
    assert_eq!(
        (stats.get_token_calls, stats.certification_lookups),
        (0, 0),
        "{stats:?}"
    );
}

/// A V2 session id is the identity verification id the browser holds: a bearer value like V1's
/// merchant_uid, so the logs show its first characters only, as they do a V1 session's.
#[tokio::test]
async fn v2_session_ids_are_cut_in_the_logs_like_v1_ones() {
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/logs.db?mode=rwc", data.path().display());
    let service = crate::processes::ServiceProcess::start_with(
        &["--sandbox"],
        &[("DATABASE_URL", &database_url), ("REQUIRE_SESSION", "true")],
    );
    service.wait_serving().await;
    let mut client = service.client();
    let mut sandbox =
        certification_service::sandbox::grpc::proto::sandbox_client::SandboxClient::new(service.channel());
    let session = client
        .begin_verification(BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-logged".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = session.identity_verification_id;
    sandbox
        .certify(v2_request(&id, Person::Adult).person_key("v2-logged"))
        .await
        .unwrap();
    let answer = client
        .verify(VerifyRequest {
            identity_verification_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.bound);

    let logs = service.wait_for_log("certification verified").await;
    assert!(logs.contains("certification verified"), "{logs}");
    assert!(
        !logs.contains(&id),
        "the whole V2 session id is in the logs:\n{logs}"
    );
    assert!(
        logs.contains(&format!("portone_v2:{}…", &id[..7])),
        "the verification is still named, cut:\n{logs}"
    );
}
