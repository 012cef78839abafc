//! PORTONE_DELETE_AFTER: a redeemed session's V1 certification is deleted at PortOne once the
//! delay has passed, from a durable outbox: after a restart, through PortOne's 500s, by one
//! replica only; and a Verify of it afterwards learns CERTIFICATION_DELETED.

use std::time::{Duration, Instant};

use certification_service::{
    config::Settings,
    domain::ImpUid,
    grpc::proto::{ExpectedPerson, Purpose, check_duplicate_request::Key},
    sandbox::{Endpoint, Fault, identities::ci_for},
    service::{CertificationEraser as _, Erased},
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::{
    certify::insert_certified,
    helpers::{App, TestApp, assert_status},
    metrics::{parse, value},
    sessions::{begin, begin_with, count, redeem, sessions_on},
};

pub(crate) fn deleting_after(delay: Duration) -> impl Fn(&mut Settings) {
    move |settings: &mut Settings| {
        sessions_on(settings);
        settings.policy.delete_after = Some(delay);
    }
}

/// The DELETE requests PortOne (the sandbox) received for `imp_uid`.
fn deletes_of(app: &TestApp, imp_uid: &str) -> usize {
    let request = format!("DELETE /certifications/{imp_uid}");
    app.sandbox
        .stats()
        .requests
        .iter()
        .filter(|seen| **seen == request)
        .count()
}

/// The outbox row of `imp_uid`: (outcome, attempts, seconds from enqueued to finished).
async fn outbox_row(app: &TestApp, imp_uid: &str) -> Option<(Option<String>, i32, Option<f64>)> {
    let row = app
        .store
        .connection()
        .query_one_raw(Statement::from_sql_and_values(
            app.store.backend(),
            match app.store.backend() {
                sea_orm::DbBackend::Postgres => {
                    "SELECT outcome, attempts, enqueued_at, finished_at FROM portone_deletions WHERE imp_uid = $1"
                }
                _ => "SELECT outcome, attempts, enqueued_at, finished_at FROM portone_deletions WHERE imp_uid = ?",
            },
            [imp_uid.into()],
        ))
        .await
        .unwrap()?;
    let enqueued: chrono::DateTime<chrono::Utc> = row.try_get("", "enqueued_at").unwrap();
    let finished: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "finished_at").unwrap();
    Some((
        row.try_get("", "outcome").unwrap(),
        row.try_get("", "attempts").unwrap(),
        finished.map(|finished| (finished - enqueued).as_seconds_f64()),
    ))
}

/// Waits until the outbox finished `imp_uid`; its outcome.
async fn finished(app: &TestApp, imp_uid: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some((Some(outcome), _, _)) = outbox_row(app, imp_uid).await {
            return outcome;
        }
        assert!(
            started.elapsed() < within,
            "{imp_uid} not deleted within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A SIGNUP session of `account`, certified and redeemed: its imp_uid and merchant_uid.
pub(crate) async fn redeemed_signup(app: &TestApp, account: &str, person: &str) -> (String, String) {
    let session = begin(app, Purpose::Signup, Some(account)).await;
    let imp_uid = insert_certified(app, &session.merchant_uid, person);
    let answer = redeem(app, &session.merchant_uid, &imp_uid).await.unwrap();
    assert!(answer.bound);
    (imp_uid, session.merchant_uid)
}

#[tokio::test]
async fn the_certification_is_deleted_after_the_delay_not_before_and_a_retry_then_learns_it() {
    let delay = Duration::from_secs(2);
    let app = App::new().adjust(deleting_after(delay)).spawn().await;
    let (imp_uid, merchant_uid) = redeemed_signup(&app, "acct-del-1", "del-person-1").await;
    let redeemed = Instant::now();

    // Within the delay the caller's retry still works, and PortOne has not been asked.
    let retry = redeem(&app, &merchant_uid, &imp_uid).await.unwrap();
    assert!(retry.bound);
    tokio::time::sleep(
        delay
            .saturating_sub(Duration::from_millis(400))
            .saturating_sub(redeemed.elapsed()),
    )
    .await;
    assert_eq!(deletes_of(&app, &imp_uid), 0, "deleted before the delay");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM portone_deletions WHERE finished_at IS NULL"
        )
        .await,
        1
    );

    assert_eq!(finished(&app, &imp_uid, Duration::from_secs(10)).await, "deleted");
    assert_eq!(deletes_of(&app, &imp_uid), 1);
    let (_, attempts, took) = outbox_row(&app, &imp_uid).await.unwrap();
    assert_eq!(attempts, 1);
    assert!(
        took.unwrap() >= delay.as_secs_f64(),
        "deleted {took:?}s after the redemption"
    );

    // PortOne has forgotten it; we have not.
    let status = assert_status(
        redeem(&app, &merchant_uid, &imp_uid).await,
        Code::FailedPrecondition,
        "CERTIFICATION_DELETED",
    );
    assert!(!status.message().contains("del-person-1"));
    // The person stays bound: our own record, not PortOne's copy, answers who holds them.
    let holder = app
        .check_duplicate(Key::Ci(ci_for("del-person-1")))
        .await
        .unwrap();
    assert!(holder.duplicate);
}

#[tokio::test]
async fn every_redemption_is_deleted_bound_or_not_accepted_or_refused_and_nothing_else() {
    let app = App::new().adjust(deleting_after(Duration::ZERO)).spawn().await;
    // AGE_CHECK: binds nothing, stores nothing about the person.
    let age = begin(&app, Purpose::AgeCheck, None).await;
    let age_uid = insert_certified(&app, &age.merchant_uid, "del-age");
    redeem(&app, &age.merchant_uid, &age_uid).await.unwrap();
    // Refused after the lookup (not the expected person): the session is spent, so deleted too.
    let expected = begin_with(
        &app,
        certification_service::grpc::proto::BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some("acct-del-mismatch".into()),
            expected: Some(ExpectedPerson {
                name: Some("다른사람".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let refused_uid = insert_certified(&app, &expected.merchant_uid, "del-mismatch");
    assert_status(
        redeem(&app, &expected.merchant_uid, &refused_uid).await,
        Code::FailedPrecondition,
        "IDENTITY_MISMATCH",
    );
    // Refused by the bind (the person holds another account): rolled back, yet spent and deleted.
    let (bound_uid, _) = redeemed_signup(&app, "acct-del-first", "del-twice").await;
    let second = begin(&app, Purpose::Signup, Some("acct-del-second")).await;
    let conflict_uid = insert_certified(&app, &second.merchant_uid, "del-twice");
    assert_status(
        redeem(&app, &second.merchant_uid, &conflict_uid).await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );
    // Refused before the session was spent (made for another session): not ours to delete.
    let other = begin(&app, Purpose::Signup, Some("acct-del-other")).await;
    let foreign_uid = insert_certified(&app, "vs_00000000000000000000000000000000", "del-foreign");
    assert_status(
        redeem(&app, &other.merchant_uid, &foreign_uid).await,
        Code::FailedPrecondition,
        "MERCHANT_MISMATCH",
    );

    assert_eq!(finished(&app, &age_uid, Duration::from_secs(10)).await, "deleted");
    assert_eq!(
        finished(&app, &refused_uid, Duration::from_secs(10)).await,
        "deleted"
    );
    for uid in [&bound_uid, &conflict_uid] {
        assert_eq!(finished(&app, uid, Duration::from_secs(10)).await, "deleted");
    }
    assert!(outbox_row(&app, &foreign_uid).await.is_none());
    assert_eq!(deletes_of(&app, &foreign_uid), 0);

    // Nothing of the AGE_CHECK person is stored, yet we know the certification existed.
    let age_person = app.check_duplicate(Key::Ci(ci_for("del-age"))).await.unwrap();
    assert!(!age_person.duplicate);
    assert_status(
        redeem(&app, &age.merchant_uid, &age_uid).await,
        Code::FailedPrecondition,
        "CERTIFICATION_DELETED",
    );
    // A certification we never knew stays NOT_FOUND.
    assert_status(
        redeem(&app, &other.merchant_uid, "imp_999999999999").await,
        Code::NotFound,
        "CERTIFICATION_NOT_FOUND",
    );
}

#[tokio::test]
async fn unset_means_never() {
    let app = App::new().adjust(sessions_on).spawn().await;
    assert_eq!(app.settings.policy.delete_after, None);
    let (imp_uid, _) = redeemed_signup(&app, "acct-del-never", "del-never").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM portone_deletions").await, 0);
    assert_eq!(deletes_of(&app, &imp_uid), 0);
}

#[tokio::test]
async fn a_deletion_due_after_a_restart_is_done_by_the_next_process() {
    let delay = Duration::from_secs(2);
    let app = App::new().adjust(deleting_after(delay)).spawn().await;
    let (imp_uid, _) = redeemed_signup(&app, "acct-del-restart", "del-restart").await;
    let mut app = app;
    app.request_stop();
    app.stopped().await.unwrap();
    assert_eq!(deletes_of(&app, &imp_uid), 0);

    let next = App::replica_of(&app).spawn().await;
    assert_eq!(
        finished(&next, &imp_uid, Duration::from_secs(10)).await,
        "deleted"
    );
    assert_eq!(deletes_of(&next, &imp_uid), 1);
}

#[tokio::test]
async fn portone_failing_with_500_is_retried_until_it_deletes() {
    let app = App::new()
        .adjust(|settings| {
            deleting_after(Duration::ZERO)(settings);
            settings.server.metrics_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        })
        .spawn()
        .await;
    // Every HTTP attempt of the first try (the shared layer retries too), then one more.
    let failing = app.settings.portone_v1.as_ref().unwrap().http.max_attempts + 1;
    app.sandbox.inject(
        Endpoint::DeleteCertification,
        Fault::Status { status: 500 },
        failing,
    );
    let (imp_uid, _) = redeemed_signup(&app, "acct-del-500", "del-500").await;

    assert_eq!(finished(&app, &imp_uid, Duration::from_secs(15)).await, "deleted");
    let (_, attempts, _) = outbox_row(&app, &imp_uid).await.unwrap();
    assert!(attempts >= 2, "attempts {attempts}");
    assert_eq!(deletes_of(&app, &imp_uid), failing as usize + 1);

    // The recorder is the process's: other tests add to it, never take away.
    let url = format!("http://{}/metrics", app.metrics_addr.unwrap());
    let samples = parse(&reqwest::get(url).await.unwrap().text().await.unwrap());
    let failed = value(
        &samples,
        "certification_deletions_failed_total",
        &[("reason", "unavailable"), ("retrying", "true")],
    );
    assert!(failed.unwrap_or(0.0) >= 1.0, "{failed:?}");
    let done = value(
        &samples,
        "certification_deletions_done_total",
        &[("outcome", "deleted")],
    );
    assert!(done.unwrap_or(0.0) >= 1.0, "{done:?}");
    assert!(value(&samples, "certification_deletions_pending", &[]).is_some());
}

#[tokio::test]
async fn a_404_from_portone_counts_as_done() {
    let app = App::new()
        .adjust(deleting_after(Duration::from_secs(1)))
        .spawn()
        .await;
    let (imp_uid, _) = redeemed_signup(&app, "acct-del-404", "del-404").await;
    // Someone (the merchant's console, another tool) deleted it first.
    let deleted = app
        .portone
        .as_ref()
        .unwrap()
        .delete(&ImpUid::parse(&imp_uid).unwrap(), deadline())
        .await
        .unwrap();
    assert_eq!(deleted, Erased::Deleted);

    assert_eq!(finished(&app, &imp_uid, Duration::from_secs(10)).await, "absent");
    assert_eq!(deletes_of(&app, &imp_uid), 2);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM portone_deletions WHERE finished_at IS NULL"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn two_replicas_make_one_delete_per_certification() {
    let fleet = App::new()
        .adjust(deleting_after(Duration::from_secs(1)))
        .fleet(2)
        .await;
    let mut redeemed = Vec::new();
    for index in 0..12 {
        let replica = &fleet.replicas[index % 2];
        let (imp_uid, _) = redeemed_signup(
            replica,
            &format!("acct-del-fleet-{index}"),
            &format!("del-fleet-{index}"),
        )
        .await;
        redeemed.push(imp_uid);
    }
    for imp_uid in &redeemed {
        assert_eq!(
            finished(&fleet.replicas[0], imp_uid, Duration::from_secs(15)).await,
            "deleted"
        );
    }
    // Give a second taker every chance to repeat one before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for imp_uid in &redeemed {
        assert_eq!(deletes_of(&fleet.replicas[0], imp_uid), 1, "{imp_uid}");
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn concurrent_takers_never_take_the_same_deletion() {
    // Due in an hour: the service's own loop leaves them alone; the takers below look ahead.
    let app = App::new()
        .adjust(deleting_after(Duration::from_secs(3600)))
        .spawn()
        .await;
    let mut queued = Vec::new();
    for _ in 0..60 {
        let session = begin(&app, Purpose::AgeCheck, None).await;
        let imp_uid = insert_certified(&app, &session.merchant_uid, "del-taker");
        redeem(&app, &session.merchant_uid, &imp_uid).await.unwrap();
        queued.push(imp_uid);
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let takers = (0..8).map(|_| {
        let store = app.store.clone();
        tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let batch = store
                    .take_due_deletions(later, later + chrono::Duration::minutes(2), 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(batch.into_iter().map(|due| due.imp_uid));
            }
        })
    });
    let mut taken: Vec<String> = futures::future::join_all(takers)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    taken.sort();
    queued.sort();
    assert_eq!(taken, queued, "every deletion taken exactly once");
}
