//! CheckDuplicate: by CI, or by a certification through the caller's own session, recording
//! nothing (issue 29's second finding: the review's cases).

use certification_service::{
    access::{CallerPermissions, CallerTokens},
    grpc::proto::{
        BeginVerificationRequest, CheckDuplicateRequest, CheckDuplicateResponse, Provider, Purpose,
        check_duplicate_request::Key,
    },
    sandbox::{
        grpc::proto::Person,
        identities::{ADULT, CertificationRecord, NOT_CERTIFIED, ci_for},
    },
};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::{
    certify::{CertifyRequestExt, adult_birthday, insert_certified, insert_certified_at, v2_request},
    helpers::{App, TestApp, as_caller, assert_status, spawn_app},
    sessions::{begin, count, redeem, sessions_on},
};

const SIGNUP: &str = "signup-token-0123456789abcdef";
const LOOKUP: &str = "lookup-token-0123456789abcdef";
const TESTER: &str = "tester-token-0123456789abcdef";

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

/// CheckDuplicate by certification, as `token` (anonymous when `None`), through `merchant_uid`.
async fn through(
    app: &TestApp,
    token: Option<&str>,
    key: Key,
    merchant_uid: &str,
) -> Result<CheckDuplicateResponse, Status> {
    let request = CheckDuplicateRequest {
        key: Some(key),
        merchant_uid: merchant_uid.to_owned(),
    };
    let request = match token {
        Some(token) => as_caller(token, request),
        None => Request::new(request),
    };
    let answer = app.client.clone().check_duplicate(request).await?;
    Ok(answer.into_inner())
}

/// What a question leaves behind: persons, certifications, redeemed sessions.
async fn traces(app: &TestApp) -> [i64; 3] {
    [
        count(app, "SELECT count(*) FROM persons").await,
        count(app, "SELECT count(*) FROM certifications").await,
        count(
            app,
            "SELECT count(*) FROM verification_sessions WHERE redeemed_id IS NOT NULL",
        )
        .await,
    ]
}

#[tokio::test]
async fn by_certification_it_asks_portone_through_the_callers_session_and_keeps_nothing() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let first = begin(&app, Purpose::Signup, Some("acct-7")).await;
    let imp_uid = insert_certified(&app, &first.merchant_uid, "asked-person");
    assert!(redeem(&app, &first.merchant_uid, &imp_uid).await.unwrap().bound);
    let second = begin(&app, Purpose::Signup, Some("acct-8")).await;
    let again = insert_certified(&app, &second.merchant_uid, "asked-person");
    let left = traces(&app).await;
    let lookups = app.sandbox.stats().certification_lookups;

    for asked in 1..=2 {
        let holder = through(&app, None, Key::ImpUid(again.clone()), &second.merchant_uid)
            .await
            .unwrap();
        assert!(holder.duplicate && holder.bound_at.is_some());
        assert_eq!(holder.account_id, "acct-7");
        // Asked of PortOne each time: nothing of the certification was recorded to answer from.
        assert_eq!(app.sandbox.stats().certification_lookups, lookups + asked);
    }
    assert_eq!(traces(&app).await, left, "a question wrote something");
    // Nor was the session spent: its Verify still decides it.
    assert_status(
        redeem(&app, &second.merchant_uid, &again).await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );

    // A person nobody holds: not a duplicate, and still nothing stored.
    let fresh = begin(&app, Purpose::Signup, Some("acct-9")).await;
    let unheld = insert_certified(&app, &fresh.merchant_uid, "unheld-person");
    let left = traces(&app).await;
    let answer = through(&app, None, Key::ImpUid(unheld), &fresh.merchant_uid)
        .await
        .unwrap();
    assert!(!answer.duplicate && answer.account_id.is_empty() && answer.bound_at.is_none());
    assert_eq!(traces(&app).await, left);
}

/// The retry advice (docs/api.md, Retries): a Verify whose answer was lost, its session expired
/// since; CheckDuplicate through that session says whether the signup completed, from our own
/// record of its certification, without PortOne. A session not redeemed stays expired.
#[tokio::test]
async fn a_redeemed_session_answers_after_it_expired_from_our_record_and_others_do_not() {
    let ttl = Duration::from_secs(1);
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.policy.session_ttl = ttl;
        })
        .spawn()
        .await;
    let signup = begin(&app, Purpose::Signup, Some("acct-lost-answer")).await;
    let imp_uid = insert_certified(&app, &signup.merchant_uid, "lost-answer");
    assert!(redeem(&app, &signup.merchant_uid, &imp_uid).await.unwrap().bound);
    let unredeemed = begin(&app, Purpose::Signup, Some("acct-never")).await;
    let never = insert_certified(&app, &unredeemed.merchant_uid, "never-redeemed");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let lookups = app.sandbox.stats().certification_lookups;

    let done = through(&app, None, Key::ImpUid(imp_uid.clone()), &signup.merchant_uid)
        .await
        .unwrap();
    assert_eq!(done.account_id, "acct-lost-answer");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "asked PortOne"
    );
    assert_status(
        redeem(&app, &signup.merchant_uid, &imp_uid).await,
        Code::FailedPrecondition,
        "SESSION_EXPIRED",
    );
    assert_status(
        through(&app, None, Key::ImpUid(never), &unredeemed.merchant_uid).await,
        Code::FailedPrecondition,
        "SESSION_EXPIRED",
    );
    // Another certification of the same person under the redeemed session: not the one that
    // redeemed it, so the session is as expired for it as for a Verify.
    let other = insert_certified(&app, &signup.merchant_uid, "lost-answer");
    assert_status(
        through(&app, None, Key::ImpUid(other), &signup.merchant_uid).await,
        Code::FailedPrecondition,
        "SESSION_EXPIRED",
    );
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "asked PortOne"
    );
}

/// The review's first case: a caller allowed only CheckDuplicate, given another caller's signup
/// imp_uid (and its merchant_uid) or V2 session id, learns nothing, and PortOne is not asked.
#[tokio::test]
async fn another_callers_certification_or_v2_session_id_answers_nothing() {
    let tokens = CallerTokens::parse(&format!("signup={SIGNUP},lookup={LOOKUP},tester={TESTER}")).unwrap();
    let permissions = CallerPermissions::parse(
        "signup=BeginVerification+Verify+CheckDuplicate,lookup=CheckDuplicate,tester=Sandbox/Certify",
    )
    .unwrap();
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.server.caller_tokens = Some(tokens);
            settings.server.caller_permissions = Some(permissions);
        })
        .spawn()
        .await;
    let begin_as_signup = |provider: Provider| {
        let request = BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            provider: provider.into(),
            account_id: Some("acct-victim".into()),
            ..Default::default()
        };
        let mut client = app.client.clone();
        async move {
            client
                .begin_verification(as_caller(SIGNUP, request))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let v1 = begin_as_signup(Provider::PortoneV1).await;
    let imp_uid = insert_certified(&app, &v1.merchant_uid, "victim-person");
    let v2 = begin_as_signup(Provider::PortoneV2)
        .await
        .identity_verification_id;
    let browser = v2_request(&v2, Person::Adult).person_key("victim-person");
    app.sandbox_client()
        .certify(as_caller(TESTER, browser))
        .await
        .unwrap();
    let lookups = app.sandbox.stats().certification_lookups;

    let bare = through(&app, Some(LOOKUP), Key::ImpUid(imp_uid.clone()), "").await;
    assert_status(bare, Code::FailedPrecondition, "SESSION_REQUIRED");
    let borrowed = through(&app, Some(LOOKUP), Key::ImpUid(imp_uid.clone()), &v1.merchant_uid).await;
    assert_status(borrowed, Code::NotFound, "SESSION_NOT_FOUND");
    let by_v2_id = through(&app, Some(LOOKUP), Key::IdentityVerificationId(v2.clone()), "").await;
    assert_status(by_v2_id, Code::NotFound, "SESSION_NOT_FOUND");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "PortOne was asked"
    );

    // The session's own caller may ask, through either provider.
    let own = through(&app, Some(SIGNUP), Key::ImpUid(imp_uid), &v1.merchant_uid).await;
    assert!(!own.unwrap().duplicate);
    let own = through(&app, Some(SIGNUP), Key::IdentityVerificationId(v2), "").await;
    assert!(!own.unwrap().duplicate);
}

/// The review's second case: an AGE_CHECK session's certification stays unstored, asked or not;
/// an age gate does not learn the holder through CheckDuplicate either.
#[tokio::test]
async fn an_age_check_session_answers_no_holder_and_its_certification_stays_unstored() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let signup = begin(&app, Purpose::Signup, Some("acct-held")).await;
    let imp_uid = insert_certified(&app, &signup.merchant_uid, "gated-person");
    assert!(redeem(&app, &signup.merchant_uid, &imp_uid).await.unwrap().bound);
    let left = traces(&app).await;

    let gate = begin(&app, Purpose::AgeCheck, None).await;
    let gated = insert_certified(&app, &gate.merchant_uid, "gated-person");
    let lookups = app.sandbox.stats().certification_lookups;
    let status = assert_status(
        through(&app, None, Key::ImpUid(gated.clone()), &gate.merchant_uid).await,
        Code::PermissionDenied,
        "PURPOSE_NOT_ALLOWED",
    );
    let info = status.get_error_details().error_info().unwrap().clone();
    assert_eq!(info.metadata["purpose"], "PURPOSE_AGE_CHECK");
    assert_eq!(app.sandbox.stats().certification_lookups, lookups);
    assert!(
        redeem(&app, &gate.merchant_uid, &gated)
            .await
            .unwrap()
            .age_check
            .unwrap()
            .satisfied
    );
    // Asked again after its redemption: still no holder, and the age check stored nothing.
    assert_status(
        through(&app, None, Key::ImpUid(gated), &gate.merchant_uid).await,
        Code::PermissionDenied,
        "PURPOSE_NOT_ALLOWED",
    );
    let [persons, certifications, redeemed] = traces(&app).await;
    assert_eq!(
        [persons, certifications, redeemed],
        [left[0], left[1], left[2] + 1]
    );
}

/// The review's third case: an old certification of an unrelated flow is neither answered nor
/// recorded, with sessions or without.
#[tokio::test]
async fn an_old_certification_of_another_flow_is_refused_and_not_recorded() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin(&app, Purpose::Signup, Some("acct-asker")).await;
    let eighty_days = 80 * 24 * 3600;
    let unrelated = insert_certified_at(
        &app,
        "order-20260918-0001",
        "old-person",
        adult_birthday(),
        eighty_days,
    );
    let own_but_old = insert_certified_at(
        &app,
        &session.merchant_uid,
        "old-person",
        adult_birthday(),
        eighty_days,
    );
    assert_status(
        through(&app, None, Key::ImpUid(unrelated.clone()), "").await,
        Code::FailedPrecondition,
        "SESSION_REQUIRED",
    );
    assert_status(
        through(&app, None, Key::ImpUid(unrelated), &session.merchant_uid).await,
        Code::FailedPrecondition,
        "MERCHANT_MISMATCH",
    );
    // Made for the session, yet 80 days old.
    assert_status(
        through(&app, None, Key::ImpUid(own_but_old), &session.merchant_uid).await,
        Code::FailedPrecondition,
        "CERTIFICATION_EXPIRED",
    );
    assert_eq!(traces(&app).await, [0, 0, 0]);

    // Without REQUIRE_SESSION: a certification of no session of ours, checked as a sessionless
    // Verify checks it, and still not recorded.
    let legacy = App::new().spawn().await;
    let old = insert_certified_at(
        &legacy,
        "order-20260918-0002",
        "old-person",
        adult_birthday(),
        eighty_days,
    );
    assert_status(
        through(&legacy, None, Key::ImpUid(old), "").await,
        Code::FailedPrecondition,
        "CERTIFICATION_EXPIRED",
    );
    assert_status(
        legacy.check_duplicate(Key::ImpUid(NOT_CERTIFIED.into())).await,
        Code::FailedPrecondition,
        "NOT_CERTIFIED",
    );
    assert_status(
        legacy
            .check_duplicate(Key::ImpUid("imp_999999999999".into()))
            .await,
        Code::NotFound,
        "CERTIFICATION_NOT_FOUND",
    );
    let fresh = legacy.check_duplicate(Key::ImpUid(ADULT.into())).await.unwrap();
    assert!(!fresh.duplicate);
    assert_eq!(traces(&legacy).await, [0, 0, 0]);
}

#[tokio::test]
async fn check_duplicate_refuses_a_missing_key_or_a_malformed_one() {
    let app = spawn_app().await;
    let status = assert_status(
        app.client
            .clone()
            .check_duplicate(certification_service::grpc::proto::CheckDuplicateRequest::default())
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
    let by_ci_through_a_session = through(&app, None, Key::Ci(ci_for("hong")), "vs_1").await;
    assert_status(
        by_ci_through_a_session,
        Code::InvalidArgument,
        "INVALID_MERCHANT_UID",
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
