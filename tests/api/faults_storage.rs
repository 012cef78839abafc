//! Faults on the stores, through [`FaultProxy`]: PostgreSQL cut mid-load (nothing acknowledged is
//! lost), and Redis blackholed and cut mid-load (callers never notice).

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use certification_service::{
    app::SERVICE_NAME,
    grpc::proto::{CheckDuplicateRequest, VerifyRequest, check_duplicate_request::Key},
    sandbox::identities::{ADULT, CertificationRecord, ci_for},
    secret::Secret,
};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use crate::{
    helpers::{App, TestApp, TestDatabase, postgres_for},
    processes::RedisServer,
    proxy::FaultProxy,
};

/// `host:port` of a `scheme://[user@]host:port/...` URL.
fn url_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    host_port.parse().unwrap()
}

/// The same URL with its host:port replaced.
fn via(url: &str, proxy: SocketAddr) -> String {
    url.replacen(&url_addr(url).to_string(), &proxy.to_string(), 1)
}

/// Verify + bind calls from `callers` loops, each signup its own certification and account.
/// Returns the accounts answered OK and the failure codes seen.
struct SignupLoad {
    acknowledged: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<(Code, String)>>>,
}

async fn signups_until(app: &TestApp, callers: usize, stop_at: Instant) -> SignupLoad {
    let load = SignupLoad {
        acknowledged: Arc::default(),
        failures: Arc::default(),
    };
    let now = chrono::Utc::now().timestamp();
    let birthday = chrono::NaiveDate::from_ymd_opt(1990, 5, 5).unwrap();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (client, sandbox) = (app.client.clone(), app.sandbox.clone());
        let (acknowledged, failures) = (Arc::clone(&load.acknowledged), Arc::clone(&load.failures));
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                n += 1;
                let imp_uid = format!("imp_8{caller:03}{n:08}");
                let account = format!("acct-{caller}-{n}");
                sandbox.insert_certification(CertificationRecord::certified(
                    &imp_uid,
                    &format!("cut-{caller}-{n}"),
                    "장애",
                    birthday,
                    now,
                ));
                let mut request = tonic::Request::new(VerifyRequest {
                    imp_uid,
                    account_id: account.clone(),
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(3));
                match client.clone().verify(request).await {
                    Ok(answer) => {
                        assert!(answer.into_inner().bound);
                        acknowledged.lock().unwrap().push(account);
                    }
                    Err(status) => {
                        failures.lock().unwrap().push((status.code(), reason_of(&status)));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    load
}

/// CheckDuplicate by CI from `callers` loops until `stop_at`: the failures' codes and reasons,
/// and how many answered.
async fn lookups_until(app: &TestApp, callers: usize, stop_at: Instant) -> (usize, Vec<(Code, String)>) {
    let lookups = (0..callers).map(|caller| {
        let client = app.client.clone();
        async move {
            let (mut answered, mut failures) = (0, Vec::new());
            while Instant::now() < stop_at {
                let key = Key::Ci(ci_for(&format!("cut-{caller}-1")));
                let mut request = tonic::Request::new(CheckDuplicateRequest {
                    key: Some(key),
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(3));
                match client.clone().check_duplicate(request).await {
                    Ok(_) => answered += 1,
                    Err(status) => failures.push((status.code(), reason_of(&status))),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answered, failures)
        }
    });
    futures::future::join_all(lookups).await.into_iter().fold(
        (0, Vec::new()),
        |(answered, mut failures), (more, seen)| {
            failures.extend(seen);
            (answered + more, failures)
        },
    )
}

fn reason_of(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn postgres_cut_mid_load_is_unavailable_then_recovers_and_loses_nothing_acknowledged() {
    // A network hop to cut: PostgreSQL, whatever backend this run uses.
    let Some((admin_url, _server)) =
        postgres_for("postgres_cut_mid_load_is_unavailable_then_recovers_and_loses_nothing_acknowledged")
    else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let database_url = database.url().to_owned();
    let proxy = FaultProxy::start(url_addr(&database_url)).await;
    let app = App::new()
        .adjust(|settings| {
            settings.store.database_url = Secret::new(via(&database_url, proxy.addr()));
            settings.store.acquire_timeout = Duration::from_millis(500);
            settings.store.readiness_interval = Duration::from_millis(100);
        })
        .spawn()
        .await;

    let started = Instant::now();
    let load = signups_until(&app, 8, started + Duration::from_millis(3500));
    // Lookups by CI share statements (src/store/batch/lookups.rs): a cut fails them the same way.
    let lookups = lookups_until(&app, 4, started + Duration::from_millis(3500));
    let faults = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        proxy.cut();
        // While it is gone the service says so.
        app.wait_for_health(SERVICE_NAME, ServingStatus::NotServing).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.pass();
        // Back without a restart.
        app.wait_for_health(SERVICE_NAME, ServingStatus::Serving).await;
    };
    let (load, (answered, lookup_failures), ()) = tokio::join!(load, lookups, faults);
    assert!(
        answered > 0 && !lookup_failures.is_empty(),
        "lookups never felt the cut"
    );
    // A call whose own statements passed before the cut may find its access record cut off.
    let cut = |code: &Code, reason: &str| {
        *code == Code::Unavailable && ["STORE_UNAVAILABLE", "ACCESS_RECORD_UNAVAILABLE"].contains(&reason)
    };
    for (code, reason) in &lookup_failures {
        assert!(
            cut(code, reason),
            "a lookup on a cut database is UNAVAILABLE/STORE_UNAVAILABLE, got {code:?} {reason}"
        );
    }

    let failures = load.failures.lock().unwrap().clone();
    assert!(!failures.is_empty(), "the cut was never felt");
    for (code, reason) in &failures {
        assert!(
            cut(code, reason),
            "a cut database is UNAVAILABLE/STORE_UNAVAILABLE, got {code:?} {reason}"
        );
    }
    let acknowledged = load.acknowledged.lock().unwrap().clone();
    eprintln!(
        "signups: {} acknowledged, {} refused while the database was cut",
        acknowledged.len(),
        failures.len()
    );
    assert!(
        acknowledged.len() > 20,
        "too few signups to tell: {}",
        acknowledged.len()
    );
    // Calls after the recovery succeed.
    let after = signups_until(&app, 2, Instant::now() + Duration::from_millis(300)).await;
    assert!(after.failures.lock().unwrap().is_empty());
    let (answered, lookup_failures) =
        lookups_until(&app, 2, Instant::now() + Duration::from_millis(100)).await;
    assert!(
        answered > 0 && lookup_failures.is_empty(),
        "lookups after the recovery: {lookup_failures:?}"
    );
    acknowledged_bindings_are_stored(&database_url, &acknowledged).await;
    let acknowledged_after = after.acknowledged.lock().unwrap().clone();
    assert!(!acknowledged_after.is_empty());
    acknowledged_bindings_are_stored(&database_url, &acknowledged_after).await;
}

/// Every account answered OK holds its person in the database, read directly (not through the
/// proxy or the service).
async fn acknowledged_bindings_are_stored(database_url: &str, accounts: &[String]) {
    let db = Database::connect(database_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT account_id FROM persons WHERE account_id IS NOT NULL",
        ))
        .await
        .unwrap();
    let stored: HashSet<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "account_id").unwrap())
        .collect();
    let missing: Vec<&String> = accounts
        .iter()
        .filter(|account| !stored.contains(*account))
        .collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    db.close().await.unwrap();
}

#[tokio::test]
async fn redis_blackholed_then_cut_mid_load_goes_unnoticed_by_callers() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(url_addr(&redis.url())).await;
    let redis_url = via(&redis.url(), proxy.addr());
    let first = App::new().redis(&redis_url).spawn().await;
    let second = App::replica_of(&first).spawn().await;
    first.verify(ADULT).await.unwrap();
    second.verify(ADULT).await.unwrap();

    let stop_at = Instant::now() + Duration::from_millis(3000);
    let callers = |app: &TestApp| {
        (0..8)
            .map(|_| {
                let client = app.client.clone();
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    let mut calls = 0;
                    while Instant::now() < stop_at {
                        calls += 1;
                        if let Err(status) =
                            client.clone().verify(crate::helpers::verify_request(ADULT)).await
                        {
                            failures.push(status);
                        }
                    }
                    (calls, failures)
                })
            })
            .collect::<Vec<_>>()
    };
    let mut tasks = callers(&first);
    tasks.extend(callers(&second));
    let sandbox = first.sandbox.clone();
    // Redis goes silent, and while it is, PortOne expires the token: every replica must get a
    // new one without the lock, the shared copy or the compare-and-delete Redis would give.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.blackhole();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sandbox.expire_tokens();
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sandbox.expire_tokens();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.pass();

    let mut total = 0;
    for task in tasks {
        let (calls, failures) = task.await.unwrap();
        total += calls;
        assert!(failures.is_empty(), "a caller noticed: {failures:?}");
    }
    assert!(total > 100, "{total} calls");
    for app in [&first, &second] {
        assert_eq!(app.health_of(SERVICE_NAME).await.unwrap(), ServingStatus::Serving);
    }
    assert!(
        sandbox.stats().tokens_issued >= 3,
        "the token was replaced twice during the outage"
    );
}
