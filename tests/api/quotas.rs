//! Bounds per caller (issue 29): SESSIONS_PER_MINUTE, LOOKUPS_PER_MINUTE,
//! OPEN_SESSIONS_PER_CALLER and their CALLER_LIMITS overrides; ten look-ups per unredeemed
//! session; a fair share of MAX_IN_FLIGHT. Over a bound: RESOURCE_EXHAUSTED / CALLER_QUOTA with a
//! retry delay, before anything reaches PortOne. Counted in Redis across replicas when REDIS_URL
//! is set, in process otherwise.

use std::time::Duration;

use certification_service::{
    access::{CallerPermissions, CallerTokens},
    config::Settings,
    grpc::proto::{
        BeginVerificationRequest, CheckDuplicateRequest, Provider, Purpose, check_duplicate_request::Key,
    },
    quota::CallerLimits,
    sandbox::identities::ADULT,
};
use sea_orm::ConnectionTrait;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{
    certify::insert_certified,
    helpers::{App, TestApp, as_caller, assert_status, redis_url, verify_request},
    sessions::{begin, count, redeem, sessions_on},
};

const ALPHA: &str = "alpha-token-0123456789abcdef";
const BRAVO: &str = "bravo-token-0123456789abcdef";
const CHARLIE: &str = "charlie-token-0123456789abcdef";

/// Three callers, each allowed everything.
fn three_callers(settings: &mut Settings) {
    let tokens = format!("alpha={ALPHA},bravo={BRAVO},charlie={CHARLIE}");
    settings.server.caller_tokens = Some(CallerTokens::parse(&tokens).unwrap());
    settings.server.caller_permissions = Some(CallerPermissions::parse("*").unwrap());
}

fn v1_session() -> BeginVerificationRequest {
    BeginVerificationRequest {
        purpose: Purpose::Signup.into(),
        provider: Provider::PortoneV1.into(),
        account_id: Some(format!("acct-{}", uuid::Uuid::new_v4().simple())),
        ..Default::default()
    }
}

async fn begin_as(app: &TestApp, token: &str) -> Result<String, Status> {
    app.client
        .clone()
        .begin_verification(as_caller(token, v1_session()))
        .await
        .map(|response| response.into_inner().merchant_uid)
}

async fn verify_as(app: &TestApp, token: &str, imp_uid: &str) -> Result<(), Status> {
    app.client
        .clone()
        .verify(as_caller(token, verify_request(imp_uid)))
        .await
        .map(drop)
}

/// Asserts a CALLER_QUOTA refusal of `bound` with its retry delay, as metadata and RetryInfo.
#[track_caller]
fn assert_quota<T: std::fmt::Debug>(result: Result<T, Status>, bound: &str) {
    let status = assert_status(result, Code::ResourceExhausted, "CALLER_QUOTA");
    let details = status.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.metadata["bound"], bound, "{status:?}");
    let retry_after_ms: u64 = info.metadata["retry_after_ms"].parse().unwrap();
    let retry = details
        .retry_info()
        .expect("a RetryInfo detail")
        .retry_delay
        .unwrap();
    assert_eq!(retry.as_millis() as u64, retry_after_ms, "{status:?}");
}

#[tokio::test]
async fn a_caller_past_sessions_per_minute_is_refused_and_others_are_not() {
    let app = App::new()
        .adjust(|settings| {
            three_callers(settings);
            settings.quotas.defaults.sessions = 3;
            settings.quotas.per_caller = CallerLimits::parse("bravo=sessions:5").unwrap();
            settings.server.metrics_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        })
        .spawn()
        .await;
    for _ in 0..3 {
        begin_as(&app, ALPHA).await.unwrap();
    }
    assert_quota(begin_as(&app, ALPHA).await, "sessions");
    let refused = begin_as(&app, ALPHA).await.unwrap_err();
    let delay = refused
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(delay <= Duration::from_secs(60), "within the minute: {delay:?}");

    // CALLER_LIMITS raises bravo's bound only; charlie has the default, untouched by alpha.
    for _ in 0..5 {
        begin_as(&app, BRAVO).await.unwrap();
    }
    assert_quota(begin_as(&app, BRAVO).await, "sessions");
    for _ in 0..3 {
        begin_as(&app, CHARLIE).await.unwrap();
    }
    assert_quota(begin_as(&app, CHARLIE).await, "sessions");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM verification_sessions").await,
        11,
        "a refused session is not stored"
    );

    let url = format!("http://{}/metrics", app.metrics_addr.unwrap());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let series = "certification_caller_quota_refusals_total{caller=\"alpha\",bound=\"sessions\"}";
    assert!(text.contains(series), "{series} missing from\n{text}");
}

#[tokio::test]
async fn lookups_past_the_callers_bound_are_refused_before_portone() {
    let app = App::new()
        .adjust(|settings| {
            three_callers(settings);
            settings.quotas.per_caller = CallerLimits::parse("alpha=lookups:4").unwrap();
        })
        .spawn()
        .await;
    for _ in 0..2 {
        verify_as(&app, ALPHA, ADULT).await.unwrap();
    }
    let by_certification = |token: &str| {
        let request = CheckDuplicateRequest {
            key: Some(Key::ImpUid(ADULT.to_owned())),
            ..Default::default()
        };
        let mut client = app.client.clone();
        let request = as_caller(token, request);
        async move { client.check_duplicate(request).await.map(drop) }
    };
    for _ in 0..2 {
        by_certification(ALPHA).await.unwrap();
    }
    let lookups = app.sandbox.stats().certification_lookups;
    assert_quota(verify_as(&app, ALPHA, ADULT).await, "lookups");
    assert_quota(by_certification(ALPHA).await, "lookups");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "an over-quota call never reaches PortOne"
    );
    // Another caller's look-ups are its own.
    verify_as(&app, BRAVO, ADULT).await.unwrap();
    by_certification(BRAVO).await.unwrap();
    assert_eq!(app.sandbox.stats().certification_lookups, lookups + 2);
}

#[tokio::test]
async fn the_eleventh_lookup_through_an_unredeemed_session_is_refused_without_reaching_portone() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let session = begin(&app, Purpose::Signup, Some("acct-probe")).await;
    let merchant_uid = session.merchant_uid;
    // Other flows' certifications, probed through this session: refused, never redeeming it.
    let probe = |index: usize| insert_certified(&app, &format!("other-flow-{index}"), "probed");
    for index in 0..5 {
        let result = redeem(&app, &merchant_uid, &probe(index)).await;
        assert_status(result, Code::FailedPrecondition, "MERCHANT_MISMATCH");
    }
    for index in 5..10 {
        let result = app
            .client
            .clone()
            .check_duplicate(CheckDuplicateRequest {
                key: Some(Key::ImpUid(probe(index))),
                merchant_uid: merchant_uid.clone(),
            })
            .await;
        assert_status(result, Code::FailedPrecondition, "MERCHANT_MISMATCH");
    }
    let lookups = app.sandbox.stats().certification_lookups;
    assert_status(
        redeem(&app, &merchant_uid, &probe(10)).await,
        Code::FailedPrecondition,
        "SESSION_SPENT",
    );
    // Spent: even its own certification is refused now.
    let own = insert_certified(&app, &merchant_uid, "probe-owner");
    assert_status(
        redeem(&app, &merchant_uid, &own).await,
        Code::FailedPrecondition,
        "SESSION_SPENT",
    );
    assert_eq!(app.sandbox.stats().certification_lookups, lookups);

    // A redeemed session's retries answer as the first call did, however many.
    let session = begin(&app, Purpose::Signup, Some("acct-retried")).await;
    let imp_uid = insert_certified(&app, &session.merchant_uid, "retried");
    let first = redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
    for _ in 0..12 {
        assert_eq!(
            redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap(),
            first
        );
    }
}

#[tokio::test]
async fn open_sessions_per_caller_are_bounded_until_one_is_redeemed_or_expires() {
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.quotas.defaults.open = 2;
        })
        .spawn()
        .await;
    let first = begin(&app, Purpose::Signup, Some("acct-open-1")).await;
    let second = begin(&app, Purpose::Signup, Some("acct-open-2")).await;
    let third = crate::sessions::begin_with(&app, v1_session()).await;
    assert_quota(third, "open");

    let imp_uid = insert_certified(&app, &first.merchant_uid, "open-person");
    redeem(&app, &first.merchant_uid, &imp_uid).await.unwrap();
    let third = begin(&app, Purpose::Signup, Some("acct-open-3")).await;
    assert_quota(crate::sessions::begin_with(&app, v1_session()).await, "open");

    // An expired session holds no room either.
    let expire = format!(
        "UPDATE verification_sessions SET expires_at = '2000-01-01 00:00:00+00:00' WHERE merchant_uid = '{}'",
        second.merchant_uid
    );
    app.store.connection().execute_unprepared(&expire).await.unwrap();
    begin(&app, Purpose::Signup, Some("acct-open-4")).await;
    assert_quota(crate::sessions::begin_with(&app, v1_session()).await, "open");
    drop(third);
}

/// With REDIS_URL the bounds are the fleet's: two replicas share one count. Without it (SQLite,
/// in-process counters) each replica counts its own: a deployment of one replica.
#[tokio::test]
async fn the_bounds_are_the_fleets_across_replicas_sharing_redis() {
    let fleet = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.quotas.defaults.sessions = 5;
        })
        .fleet(2)
        .await;
    let [one, two] = &fleet.replicas[..] else {
        unreachable!("two replicas")
    };
    let shared = redis_url().is_some();
    let session = begin(one, Purpose::Signup, Some("acct-fleet")).await;
    for replica in [two, one, two, one] {
        begin(replica, Purpose::Signup, None).await;
    }
    let sixth = crate::sessions::begin_with(two, v1_session()).await;
    if shared {
        assert_quota(sixth, "sessions");
    } else {
        sixth.unwrap();
    }

    // A session's ten look-ups are counted across replicas too.
    for index in 0..10 {
        let replica = [one, two][index % 2];
        let other = insert_certified(replica, &format!("fleet-other-{index}"), "fleet-probed");
        let result = redeem(replica, &session.merchant_uid, &other).await;
        assert_status(result, Code::FailedPrecondition, "MERCHANT_MISMATCH");
    }
    let eleventh = insert_certified(one, "fleet-other-10", "fleet-probed");
    let result = redeem(one, &session.merchant_uid, &eleventh).await;
    if shared {
        assert_status(result, Code::FailedPrecondition, "SESSION_SPENT");
    } else {
        // This replica has seen six of them.
        assert_status(result, Code::FailedPrecondition, "MERCHANT_MISMATCH");
    }
}

/// One caller's flood holds no more than its share of MAX_IN_FLIGHT: another caller's calls are
/// still admitted and answered.
#[tokio::test]
async fn a_callers_flood_leaves_room_in_flight_for_another_caller() {
    let app = App::new()
        .adjust(|settings| {
            three_callers(settings);
            settings.server.max_in_flight = 8;
        })
        .spawn()
        .await;
    verify_as(&app, BRAVO, ADULT).await.unwrap();
    let before = app.sandbox.stats().certification_lookups;
    app.sandbox.set_latency(Duration::from_millis(1500));
    let flood = futures::future::join_all((0..20).map(|_| verify_as(&app, ALPHA, ADULT)));
    let other = async {
        // Once the flood's admitted calls wait on PortOne, the bound is as full as it gets.
        while app.sandbox.stats().certification_lookups < before + 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        verify_as(&app, BRAVO, ADULT).await
    };
    let (flood, other) = tokio::join!(flood, other);
    other.expect("another caller is answered during the flood");
    let admitted = flood.iter().filter(|answer| answer.is_ok()).count();
    assert!(
        (4..=5).contains(&admitted),
        "alpha holds about half of MAX_IN_FLIGHT: {admitted}"
    );
    for answer in flood.into_iter().filter(Result::is_err) {
        assert_quota(answer, "in_flight");
    }
    app.sandbox.set_latency(Duration::ZERO);
}

/// The quotas protect us; they are not a door: with Redis unreachable every call goes through,
/// uncounted (a rate-limited warning and `certification_quota_counter_failures_total` say so).
#[tokio::test]
async fn an_unreachable_redis_lets_calls_through_uncounted() {
    let app = App::new()
        .redis("redis://127.0.0.1:1")
        .adjust(|settings| {
            sessions_on(settings);
            settings.quotas.defaults.sessions = 1;
            settings.quotas.defaults.lookups = 1;
        })
        .spawn()
        .await;
    for index in 0..3 {
        let session = begin(&app, Purpose::Signup, Some(&format!("acct-open-door-{index}"))).await;
        let imp_uid = insert_certified(&app, &session.merchant_uid, &format!("open-door-{index}"));
        assert!(redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap().bound);
    }
}
