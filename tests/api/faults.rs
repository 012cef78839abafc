//! Faults on the real services, through [`FaultProxy`]: PortOne (the sandbox) failing for long
//! (the circuit), hanging at the TCP level, or cutting connections; PostgreSQL cut mid-load;
//! Redis blackholed and cut mid-load.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use certification_service::{
    app::SERVICE_NAME,
    grpc::proto::VerifyRequest,
    portone::CircuitSettings,
    sandbox::{
        Endpoint, Fault,
        identities::{ADULT, CertificationRecord},
    },
};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use crate::{
    helpers::{
        TestApp, TestDatabase, assert_status, postgres_for, redis_settings, spawn_app_on, spawn_app_with,
        test_settings,
    },
    processes::RedisServer,
    proxy::{FaultProxy, Mode},
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

/// The app with PortOne behind a proxy, and the circuit and timeouts as given.
async fn app_with_portone_behind_proxy(
    circuit: CircuitSettings,
    portone_timeout: Duration,
    max_attempts: u32,
) -> (TestApp, FaultProxy) {
    let (mut settings, sandbox, data) = test_settings(|_| {}).await;
    let proxy = FaultProxy::start(sandbox.local_addr()).await;
    settings.portone.base_url = format!("http://{}", proxy.addr());
    settings.portone.http.circuit = circuit;
    settings.portone.http.request_timeout = portone_timeout;
    settings.portone.http.max_attempts = max_attempts;
    let app = spawn_app_on(settings, sandbox, data, |_| {}, true).await;
    (app, proxy)
}

fn circuit_is_open(status: &tonic::Status) -> bool {
    let details = status.get_error_details();
    status.code() == Code::Unavailable
        && details
            .error_info()
            .is_some_and(|info| info.metadata.get("circuit").map(String::as_str) == Some("open"))
        && details.retry_info().is_some()
}

#[tokio::test]
async fn a_lasting_outage_opens_the_circuit_calls_stop_reaching_portone_and_a_probe_closes_it() {
    let app = spawn_app_with(|settings| {
        settings.portone.http.circuit = CircuitSettings {
            failure_threshold: 3,
            open_for: Duration::from_millis(600),
        };
    })
    .await;
    app.verify(ADULT).await.unwrap();
    app.sandbox
        .inject(Endpoint::GetCertification, Fault::Status { status: 503 }, 1000);

    // 3 attempts, 3 failures: the call is UNAVAILABLE and the circuit opens.
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    let lookups = app.sandbox.stats().certification_lookups;
    for _ in 0..5 {
        let status = app.verify(ADULT).await.unwrap_err();
        assert!(circuit_is_open(&status), "{status:?}");
    }
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "an open circuit sends nothing to PortOne"
    );

    // Half-open: one probe goes through; PortOne still failing opens it again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups + 1,
        "one probe only"
    );
    assert!(circuit_is_open(&app.verify(ADULT).await.unwrap_err()));

    // PortOne is back: the next probe closes the circuit and every call goes through again.
    app.sandbox.clear_faults();
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..5 {
        app.verify(ADULT).await.unwrap();
    }
    assert_eq!(app.health_of(SERVICE_NAME).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn a_blackholed_portone_opens_the_circuit_and_later_calls_fail_without_waiting() {
    let (app, proxy) = app_with_portone_behind_proxy(
        CircuitSettings {
            failure_threshold: 2,
            open_for: Duration::from_millis(800),
        },
        Duration::from_millis(400),
        2,
    )
    .await;
    app.verify(ADULT).await.unwrap();
    proxy.blackhole();

    // Two attempts of 400 ms each time out; the call fails and the circuit opens.
    let started = Instant::now();
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert!(started.elapsed() >= Duration::from_millis(800));
    // Now a call does not wait for a PortOne that does not answer.
    let started = Instant::now();
    let status = app.verify(ADULT).await.unwrap_err();
    assert!(circuit_is_open(&status), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "answered in {:?}, one attempt's timeout is 400 ms",
        started.elapsed()
    );

    proxy.pass();
    tokio::time::sleep(Duration::from_millis(900)).await;
    app.verify(ADULT).await.unwrap();
    app.verify(ADULT).await.unwrap();
}

#[tokio::test]
async fn a_blackholed_portone_is_bounded_by_the_callers_deadline_and_by_our_own_timeout() {
    let never_opens = CircuitSettings {
        failure_threshold: 0,
        open_for: Duration::from_secs(1),
    };
    let (app, proxy) = app_with_portone_behind_proxy(never_opens, Duration::from_millis(300), 2).await;
    app.verify(ADULT).await.unwrap();
    proxy.blackhole();

    let mut request = tonic::Request::new(crate::helpers::verify_request(ADULT));
    request.set_timeout(Duration::from_millis(250));
    let status = app.client.clone().verify(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // No caller deadline: two attempts of 300 ms, then UNAVAILABLE, long before REQUEST_TIMEOUT.
    let started = Instant::now();
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert!(started.elapsed() < app.settings.server.request_timeout);

    proxy.pass();
    app.verify(ADULT).await.unwrap();
}

#[tokio::test]
async fn connections_to_portone_cut_mid_call_are_retried_and_the_call_succeeds() {
    let (app, proxy) =
        app_with_portone_behind_proxy(CircuitSettings::default(), Duration::from_secs(2), 3).await;
    app.verify(ADULT).await.unwrap();
    proxy.set(Mode::Latency(Duration::from_millis(150)));
    let call = app.verify(ADULT);
    let cut = async {
        // The request is on its way; the answer is not back yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(20)).await;
        proxy.pass();
    };
    let (answer, ()) = tokio::join!(call, cut);
    answer.unwrap();
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
                        let reason = status
                            .get_error_details()
                            .error_info()
                            .map(|info| info.reason.clone())
                            .unwrap_or_default();
                        failures.lock().unwrap().push((status.code(), reason));
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
    let app = spawn_app_with(|settings| {
        settings.store.database_url = via(&database_url, proxy.addr());
        settings.store.acquire_timeout = Duration::from_millis(500);
        settings.store.readiness_interval = Duration::from_millis(100);
    })
    .await;

    let started = Instant::now();
    let load = signups_until(&app, 8, started + Duration::from_millis(3500));
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
    let (load, ()) = tokio::join!(load, faults);

    let failures = load.failures.lock().unwrap().clone();
    assert!(!failures.is_empty(), "the cut was never felt");
    for (code, reason) in &failures {
        assert!(
            *code == Code::Unavailable && reason == "STORE_UNAVAILABLE",
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
    let first = spawn_app_with(|settings| settings.redis = Some(redis_settings(&redis_url))).await;
    let second = crate::helpers::spawn_replica_of(&first, |_| {}).await;
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
