//! Graceful shutdown: NOT_SERVING at once, serving through the drain, calls in flight finish,
//! and a bound on how long they may take.

use std::time::Duration;

use certification_service::{
    app::SERVICE_NAME,
    grpc::proto::check_duplicate_request::Key,
    sandbox::{
        Endpoint, Fault,
        identities::{ADULT, ci_for},
    },
};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::App;

#[tokio::test]
async fn a_verify_in_flight_across_shutdown_completes_while_health_reads_not_serving() {
    let mut app = App::new()
        .adjust(|settings| {
            settings.server.shutdown.drain_delay = Duration::from_millis(600);
            settings.server.shutdown.timeout = Duration::from_secs(10);
        })
        .spawn()
        .await;
    app.verify(ADULT).await.unwrap();
    app.sandbox.set_latency(Duration::from_millis(900));
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move {
        let mut client = client;
        client.verify(crate::helpers::verify_request(ADULT)).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.request_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Draining: health already says go away, yet calls are still answered.
    assert_eq!(
        app.health_of(SERVICE_NAME).await.unwrap(),
        ServingStatus::NotServing
    );
    assert_eq!(app.health_of("").await.unwrap(), ServingStatus::NotServing);
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();

    let answered = in_flight.await.unwrap();
    assert!(answered.is_ok(), "the call in flight failed: {answered:?}");
    tokio::time::timeout(Duration::from_secs(15), app.stopped())
        .await
        .expect("the server stopped")
        .unwrap();
}

#[tokio::test]
async fn calls_hanging_past_the_shutdown_timeout_do_not_keep_the_server_up() {
    let mut app = App::new()
        .adjust(|settings| {
            settings.server.shutdown.drain_delay = Duration::ZERO;
            settings.server.shutdown.timeout = Duration::from_millis(300);
            settings.server.request_timeout = Duration::from_secs(60);
            settings.portone_v1.as_mut().unwrap().http.request_timeout = Duration::from_secs(60);
        })
        .spawn()
        .await;
    app.sandbox.inject(Endpoint::GetCertification, Fault::Hang, 1);
    let client = app.client.clone();
    let hanging = tokio::spawn(async move {
        let mut client = client;
        client.verify(crate::helpers::verify_request(ADULT)).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.request_stop();
    // Bounded by SHUTDOWN_TIMEOUT, not by the hanging call's 60 s.
    tokio::time::timeout(Duration::from_secs(10), app.stopped())
        .await
        .expect("the server stopped despite the hanging call")
        .unwrap();
    // In the binary the process exits here, taking the connection with it.
    hanging.abort();
}
