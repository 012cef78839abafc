//! Verification sessions (REQUIRE_SESSION, the default): BeginVerification issues the
//! merchant_uid, the "browser" certifies under it (the sandbox's records), and Verify redeems it
//! once, for its caller, before it expires.

use std::time::Duration;

use certification_service::{
    access::{CallerPermissions, CallerTokens},
    config::Settings,
    grpc::proto::{
        BeginVerificationRequest, BeginVerificationResponse, ExpectedPerson, Provider, Purpose,
        VerifyRequest, VerifyResponse,
    },
};
use chrono::Utc;
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{
    certify::{adult_birthday, insert_certified, insert_certified_at},
    helpers::{App, TestApp, as_caller, assert_status},
};

pub fn sessions_on(settings: &mut Settings) {
    settings.policy.require_session = true;
}

pub async fn begin(app: &TestApp, purpose: Purpose, account: Option<&str>) -> BeginVerificationResponse {
    begin_with(
        app,
        BeginVerificationRequest {
            purpose: purpose.into(),
            account_id: account.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// A V1 session unless the request names a provider: these tests certify through V1's records
/// (portone_v2.rs covers V2).
pub async fn begin_with(
    app: &TestApp,
    mut request: BeginVerificationRequest,
) -> Result<BeginVerificationResponse, Status> {
    if request.provider == 0 {
        request.provider = Provider::PortoneV1.into();
    }
    app.client
        .clone()
        .begin_verification(request)
        .await
        .map(tonic::Response::into_inner)
}

pub async fn redeem(app: &TestApp, merchant_uid: &str, imp_uid: &str) -> Result<VerifyResponse, Status> {
    app.client
        .clone()
        .verify(VerifyRequest {
            imp_uid: imp_uid.to_owned(),
            merchant_uid: merchant_uid.to_owned(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    scalar(app, sql).await
}

/// The first column of the one row `sql` selects.
pub async fn scalar<T: sea_orm::TryGetable>(app: &TestApp, sql: &str) -> T {
    let row = app
        .store
        .connection()
        .query_one_raw(Statement::from_string(app.store.backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<T>(0).unwrap()
}

#[tokio::test]
async fn a_signup_session_binds_its_account_once_and_a_retry_answers_the_same() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin(&app, Purpose::Signup, Some("acct-signup")).await;
    assert!(session.merchant_uid.starts_with("vs_") && session.merchant_uid.len() == 35);
    let expires_at = session.expires_at.unwrap().seconds;
    let in_15m = Utc::now().timestamp() + 15 * 60;
    assert!((in_15m - 5..=in_15m + 1).contains(&expires_at), "{expires_at}");

    let imp_uid = insert_certified(&app, &session.merchant_uid, "signup-person");
    let first = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    assert!(first.bound);
    assert_eq!(first.purpose(), Purpose::Signup);
    assert!(
        !first.duplicate.as_ref().unwrap().duplicate,
        "nobody held the person before"
    );

    // The signup service timed out and retries: the same answer, not "already yours".
    let retry = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    assert_eq!(retry, first);

    // Someone else's certification under the same merchant_uid cannot redeem it again.
    let other = insert_certified(&app, &session.merchant_uid, "someone-else");
    let lookups = app.sandbox.stats().certification_lookups;
    assert_status(
        redeem(&app, &session.merchant_uid, &other).await,
        Code::FailedPrecondition,
        "SESSION_USED",
    );
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "a replay never reaches PortOne"
    );
}

#[tokio::test]
async fn without_a_session_or_with_one_never_issued_verify_is_refused_before_portone() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let imp_uid = insert_certified(&app, "signup-0001", "no-session");
    let without = redeem(&app, "", &imp_uid).await;
    assert_status(without, Code::FailedPrecondition, "SESSION_REQUIRED");
    for merchant_uid in ["signup-0001", "vs_0123456789abcdef0123456789abcdef"] {
        assert_status(
            redeem(&app, merchant_uid, &imp_uid).await,
            Code::NotFound,
            "SESSION_NOT_FOUND",
        );
    }
    assert_eq!(app.sandbox.stats().certification_lookups, 0);
}

#[tokio::test]
async fn a_session_is_redeemable_only_by_the_caller_that_began_it() {
    let tokens =
        CallerTokens::parse("signup=signup-token-0123456789abcdef,other=other-token-0123456789abcdef")
            .unwrap();
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.server.caller_tokens = Some(tokens);
            settings.server.caller_permissions = Some(CallerPermissions::parse("*").unwrap());
        })
        .spawn()
        .await;
    let begin = BeginVerificationRequest {
        purpose: Purpose::Signup.into(),
        provider: Provider::PortoneV1.into(),
        account_id: Some("acct-owner".into()),
        ..Default::default()
    };
    let session = app
        .client
        .clone()
        .begin_verification(as_caller("signup-token-0123456789abcdef", begin))
        .await
        .unwrap()
        .into_inner();
    let imp_uid = insert_certified(&app, &session.merchant_uid, "owned-person");
    let verify = VerifyRequest {
        imp_uid: imp_uid.clone(),
        merchant_uid: session.merchant_uid.clone(),
        ..Default::default()
    };
    let stolen = app
        .client
        .clone()
        .verify(as_caller("other-token-0123456789abcdef", verify.clone()))
        .await;
    assert_status(stolen, Code::NotFound, "SESSION_NOT_FOUND");
    let owned = app
        .client
        .clone()
        .verify(as_caller("signup-token-0123456789abcdef", verify))
        .await
        .unwrap()
        .into_inner();
    assert!(owned.bound);
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.policy.session_ttl = Duration::from_millis(300);
        })
        .spawn()
        .await;
    let session = begin(&app, Purpose::Signup, Some("acct-late")).await;
    let imp_uid = insert_certified(&app, &session.merchant_uid, "late-person");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = redeem(&app, &session.merchant_uid, &imp_uid).await;
    assert_status(late, Code::FailedPrecondition, "SESSION_EXPIRED");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 0);
}

#[tokio::test]
async fn a_certification_older_than_its_session_or_made_for_another_cannot_redeem_it() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin(&app, Purpose::Signup, Some("acct-old")).await;
    // Certified five minutes ago under this merchant_uid (guessed in advance, say).
    let older = insert_certified_at(&app, &session.merchant_uid, "old-person", adult_birthday(), 300);
    let result = redeem(&app, &session.merchant_uid, &older).await;
    assert_status(result, Code::FailedPrecondition, "CERTIFIED_BEFORE_SESSION");
    let elsewhere = insert_certified(&app, "victim-session", "victim");
    let result = redeem(&app, &session.merchant_uid, &elsewhere).await;
    assert_status(result, Code::FailedPrecondition, "MERCHANT_MISMATCH");
    // Neither spent the session: the real certification still redeems it.
    let real = insert_certified(&app, &session.merchant_uid, "real-person");
    assert!(redeem(&app, &session.merchant_uid, &real).await.unwrap().bound);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 1);
}

#[tokio::test]
async fn fifty_concurrent_redemptions_by_fifty_people_have_exactly_one_winner() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin(&app, Purpose::Signup, Some("acct-race")).await;
    let imp_uids: Vec<String> = (0..50)
        .map(|index| insert_certified(&app, &session.merchant_uid, &format!("racer-{index}")))
        .collect();
    let results = futures::future::join_all(
        imp_uids
            .iter()
            .map(|imp_uid| redeem(&app, &session.merchant_uid, imp_uid)),
    )
    .await;
    let winners = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    // Each loser is refused: SESSION_USED, or SESSION_SPENT once ten racers reached PortOne
    // through the unredeemed session (quota::SESSION_LOOKUPS).
    for result in results.into_iter().filter(Result::is_err) {
        let status = result.unwrap_err();
        let reason = status.get_error_details().error_info().unwrap().reason.clone();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            ["SESSION_USED", "SESSION_SPENT"].contains(&reason.as_str()),
            "{status:?}"
        );
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM persons").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM persons WHERE account_id = 'acct-race'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_session_decides_the_account_and_the_minimum_age() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin_with(
        &app,
        BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-mine".into()),
            min_age: Some(19),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let imp_uid = insert_certified(&app, &session.merchant_uid, "mine");
    let mut request = VerifyRequest {
        imp_uid: imp_uid.clone(),
        merchant_uid: session.merchant_uid.clone(),
        account_id: "acct-someone-else".into(),
        ..Default::default()
    };
    let other_account = app.client.clone().verify(request.clone()).await;
    let status = assert_status(other_account, Code::InvalidArgument, "SESSION_MISMATCH");
    assert_eq!(
        status.get_error_details().bad_request().unwrap().field_violations[0].field,
        "account_id"
    );
    request.account_id.clear();
    request.min_age = Some(14);
    let other_age = app.client.clone().verify(request.clone()).await;
    assert_status(other_age, Code::InvalidArgument, "SESSION_MISMATCH");
    request.min_age = Some(19);
    let answer = app.client.clone().verify(request).await.unwrap().into_inner();
    assert_eq!(answer.age_check.unwrap().min_age, 19);
    assert!(answer.bound);
}

#[tokio::test]
async fn a_session_begun_before_a_restart_is_redeemed_by_another_replica() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let replica = App::replica_of(&app).spawn().await;
    let session = begin(&app, Purpose::Signup, Some("acct-restart")).await;
    let imp_uid = insert_certified(&app, &session.merchant_uid, "restart-person");
    app.stop().await;
    let answer = redeem(&replica, &session.merchant_uid, &imp_uid).await.unwrap();
    assert!(answer.bound);
}

#[tokio::test]
async fn malformed_sessions_are_invalid_arguments() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let cases = [
        (BeginVerificationRequest::default(), "INVALID_PURPOSE"),
        (
            BeginVerificationRequest {
                purpose: 99,
                ..Default::default()
            },
            "INVALID_PURPOSE",
        ),
        (
            BeginVerificationRequest {
                purpose: Purpose::Reverify.into(),
                ..Default::default()
            },
            "MISSING_ACCOUNT_ID",
        ),
        (
            BeginVerificationRequest {
                purpose: Purpose::Recovery.into(),
                account_id: Some("acct-1".into()),
                ..Default::default()
            },
            "INVALID_ACCOUNT_ID",
        ),
        (
            BeginVerificationRequest {
                purpose: Purpose::Signup.into(),
                account_id: Some("bad account".into()),
                ..Default::default()
            },
            "INVALID_ACCOUNT_ID",
        ),
        (
            BeginVerificationRequest {
                purpose: Purpose::Signup.into(),
                min_age: Some(151),
                ..Default::default()
            },
            "INVALID_MIN_AGE",
        ),
        (
            BeginVerificationRequest {
                purpose: Purpose::Signup.into(),
                expected: Some(ExpectedPerson {
                    phone: Some("call me".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "INVALID_PHONE",
        ),
        (
            BeginVerificationRequest {
                purpose: Purpose::Signup.into(),
                expected: Some(ExpectedPerson {
                    birth_date: Some("15/03/1990".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "INVALID_BIRTH_DATE",
        ),
    ];
    for (request, reason) in cases {
        assert_status(begin_with(&app, request).await, Code::InvalidArgument, reason);
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM verification_sessions").await, 0);
}

/// Issue 29, finding 5: a signup refused because another account holds the person spends its
/// session with that refusal; once the holder leaves, the same Verify retried still answers the
/// refusal, never a bind.
#[tokio::test]
async fn a_refused_signup_retried_after_the_holder_left_answers_its_refusal() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let held = begin(&app, Purpose::Signup, Some("acct-first-holder")).await;
    let first = insert_certified(&app, &held.merchant_uid, "refused-person");
    assert!(redeem(&app, &held.merchant_uid, &first).await.unwrap().bound);

    let session = begin(&app, Purpose::Signup, Some("acct-second-try")).await;
    let second = insert_certified(&app, &session.merchant_uid, "refused-person");
    assert_status(
        redeem(&app, &session.merchant_uid, &second).await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );
    assert!(app.unlink("acct-first-holder").await.unlinked);

    assert_status(
        redeem(&app, &session.merchant_uid, &second).await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM persons WHERE account_id IS NOT NULL").await,
        0,
        "the retry bound nobody"
    );
}

/// A retry of a Verify that binds nothing answers as the first call did, though the holder it
/// was decided on has left since: the REVERIFY passed, so its retry passes.
#[tokio::test]
async fn a_reverify_retried_after_the_holder_left_answers_as_it_did() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let signup = begin(&app, Purpose::Signup, Some("acct-reverified")).await;
    let bound = insert_certified(&app, &signup.merchant_uid, "reverified-person");
    assert!(redeem(&app, &signup.merchant_uid, &bound).await.unwrap().bound);

    let session = begin(&app, Purpose::Reverify, Some("acct-reverified")).await;
    let imp_uid = insert_certified(&app, &session.merchant_uid, "reverified-person");
    let first = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    assert!(first.reverified_at.is_some());
    app.unlink("acct-reverified").await;
    let retry = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    assert_eq!(retry, first);
}
