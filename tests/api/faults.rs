//! Faults on PortOne (the sandbox), directly or through [`FaultProxy`]: failing for long (the
//! circuit), hanging at the TCP level, or cutting connections. The stores' faults are in
//! `faults_storage.rs`.

use std::time::{Duration, Instant};

use certification_service::{
    app::SERVICE_NAME,
    portone::CircuitSettings,
    sandbox::{Endpoint, Fault, identities::ADULT},
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use crate::{
    helpers::{App, TestApp, assert_status, test_settings},
    proxy::{FaultProxy, Mode},
};

/// The app with PortOne behind a proxy, and the circuit and timeouts as given.
async fn app_with_portone_behind_proxy(
    circuit: CircuitSettings,
    portone_timeout: Duration,
    max_attempts: u32,
) -> (TestApp, FaultProxy) {
    let (mut settings, sandbox, data) = test_settings(|_| {}).await;
    let proxy = FaultProxy::start(sandbox.local_addr()).await;
    settings.portone_v1.as_mut().unwrap().base_url = format!("http://{}", proxy.addr());
    settings.portone_v1.as_mut().unwrap().http.circuit = circuit;
    settings.portone_v1.as_mut().unwrap().http.request_timeout = portone_timeout;
    settings.portone_v1.as_mut().unwrap().http.max_attempts = max_attempts;
    let app = App::on(settings, sandbox, data).spawn().await;
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
    let app = App::new()
        .adjust(|settings| {
            settings.portone_v1.as_mut().unwrap().http.circuit = CircuitSettings {
                failure_threshold: 3,
                open_for: Duration::from_millis(600),
            };
        })
        .spawn()
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
    // The server's DEADLINE_EXCEEDED and the client's own timer (CANCELLED, "Timeout expired")
    // fall due at the same instant; on a loaded machine either may be first. Either way the
    // call ended at the caller's deadline, not after the blackholed attempts.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );

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
