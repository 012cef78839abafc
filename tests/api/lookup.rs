//! PortOne lookups: status and envelope checks, retries, timeouts and deadlines.

use std::time::{Duration, Instant};

use certification_service::sandbox::{Endpoint, Fault, identities::ADULT};
use tonic::Code;

use crate::helpers::{App, assert_status, spawn_app, verify_request};

#[tokio::test]
async fn an_unknown_imp_uid_is_not_found() {
    let app = spawn_app().await;
    assert_status(
        app.verify("imp_999999999999").await,
        Code::NotFound,
        "CERTIFICATION_NOT_FOUND",
    );
}

#[tokio::test]
async fn brief_portone_5xx_are_absorbed_by_retries() {
    let app = spawn_app().await;
    app.sandbox
        .inject(Endpoint::GetCertification, Fault::Status { status: 503 }, 1);
    app.sandbox
        .inject(Endpoint::GetCertification, Fault::Html { status: 502 }, 1);
    app.verify(ADULT).await.unwrap();
    assert_eq!(app.sandbox.stats().certification_lookups, 3);
}

#[tokio::test]
async fn a_lasting_portone_outage_is_unavailable_after_bounded_retries() {
    let app = spawn_app().await;
    app.sandbox
        .inject(Endpoint::GetCertification, Fault::Status { status: 500 }, 10);
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        3,
        "max_attempts bounds the retries"
    );
}

#[tokio::test]
async fn an_error_inside_an_http_200_envelope_is_not_mistaken_for_success() {
    let app = spawn_app().await;
    app.sandbox.inject(
        Endpoint::GetCertification,
        Fault::ErrorInEnvelope {
            code: -1,
            message: "오류".into(),
        },
        1,
    );
    // A refusal, not an outage: callers must not retry it forever.
    let status = assert_status(
        app.verify(ADULT).await,
        Code::FailedPrecondition,
        "UPSTREAM_REJECTED",
    );
    assert!(
        !status.message().contains("오류"),
        "PortOne's text is for the operator's log only"
    );
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        1,
        "a definite answer is not retried"
    );
}

#[tokio::test]
async fn permanent_http_refusals_are_upstream_rejected_not_retry_later() {
    let app = spawn_app().await;
    for status in [400, 403, 405, 422] {
        app.sandbox
            .inject(Endpoint::GetCertification, Fault::Status { status }, 1);
        assert_status(
            app.verify(ADULT).await,
            Code::FailedPrecondition,
            "UPSTREAM_REJECTED",
        );
    }
    // Each was answered once: nothing to retry in a refusal.
    assert_eq!(app.sandbox.stats().certification_lookups, 4);
}

#[tokio::test]
async fn unusable_portone_bodies_are_upstream_malformed_and_the_service_stays_healthy() {
    let app = spawn_app().await;
    for fault in [Fault::Malformed, Fault::WrongTypes, Fault::Html { status: 200 }] {
        app.sandbox.inject(Endpoint::GetCertification, fault.clone(), 1);
        assert_status(app.verify(ADULT).await, Code::Internal, "UPSTREAM_MALFORMED");
    }
    app.verify(ADULT).await.unwrap();
}

#[tokio::test]
async fn a_garbled_token_answer_is_upstream_malformed() {
    let app = spawn_app().await;
    app.sandbox.inject(Endpoint::GetToken, Fault::Malformed, 1);
    assert_status(app.verify(ADULT).await, Code::Internal, "UPSTREAM_MALFORMED");
    app.verify(ADULT).await.unwrap();
}

#[tokio::test]
async fn wrong_portone_credentials_are_unavailable_with_auth_failed() {
    let app = App::new()
        .adjust(|settings| {
            settings.portone_v1.as_mut().unwrap().imp_secret =
                certification_service::secret::Secret::new("wrong-secret");
        })
        .spawn()
        .await;
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_AUTH_FAILED");
    assert_eq!(app.sandbox.stats().certification_lookups, 0);
}

#[tokio::test]
async fn a_lookup_still_unauthorized_with_a_fresh_token_is_unavailable() {
    let app = spawn_app().await;
    app.sandbox
        .inject(Endpoint::GetCertification, Fault::Status { status: 401 }, 2);
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_AUTH_FAILED");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        2,
        "exactly one retry with a fresh token"
    );
    app.verify(ADULT).await.unwrap();
}

#[tokio::test]
async fn a_hanging_portone_is_cut_by_the_callers_deadline() {
    let app = spawn_app().await;
    app.sandbox.inject(Endpoint::GetCertification, Fault::Hang, 10);
    let mut request = tonic::Request::new(verify_request(ADULT));
    request.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let status = app.client.clone().verify(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hanging_portone_is_cut_by_our_own_timeout_without_a_caller_deadline() {
    let app = App::new()
        .adjust(|settings| {
            settings.portone_v1.as_mut().unwrap().http.request_timeout = Duration::from_millis(200);
            settings.portone_v1.as_mut().unwrap().http.max_attempts = 2;
        })
        .spawn()
        .await;
    // The token first, so the hang hits the lookup.
    app.verify(ADULT).await.unwrap();
    app.sandbox.inject(Endpoint::GetCertification, Fault::Hang, 10);
    let started = Instant::now();
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn latency_at_portone_is_waited_for_within_the_deadline() {
    let app = spawn_app().await;
    app.sandbox.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    app.verify(ADULT).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "getToken and lookup each wait"
    );
}

#[tokio::test]
async fn a_portone_that_refuses_connections_is_unavailable_after_retries() {
    // Bind and drop: nothing listens on this port any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let app = App::new()
        .adjust(|settings| settings.portone_v1.as_mut().unwrap().base_url = format!("http://{closed}"))
        .spawn()
        .await;
    assert_status(app.verify(ADULT).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
}
