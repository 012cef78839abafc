//! Injected faults and latency: each fault kind, how injections queue, and clearing them.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{content_type, envelope_error, read, start};
use crate::sandbox::{
    Endpoint, Fault, SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET,
    identities::{ADULT, CertificationRecord},
};

#[tokio::test]
async fn status_faults_apply_the_given_number_of_times_in_order() {
    let harness = start().await;
    let token = harness.access_token().await;
    let handle = harness.handle();
    handle.inject(Endpoint::GetCertification, Fault::Status { status: 503 }, 2);
    handle.inject(
        Endpoint::GetCertification,
        Fault::ErrorInEnvelope {
            code: 1,
            message: "일시적인 오류".into(),
        },
        1,
    );
    // A getToken in between takes none of them.
    harness.token().await;
    for _ in 0..2 {
        let (status, body) = read(harness.lookup(ADULT, Some(&token)).await).await;
        assert_eq!((status, body), (503, envelope_error(-1, "sandbox fault")));
    }
    let (status, body) = read(harness.lookup(ADULT, Some(&token)).await).await;
    assert_eq!((status, body), (200, envelope_error(1, "일시적인 오류")));
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    assert_eq!(handle.stats().certification_lookups, 4);
}

#[tokio::test]
async fn any_faults_hit_get_token_and_count_401s() {
    let harness = start().await;
    harness
        .handle()
        .inject(Endpoint::Any, Fault::Status { status: 401 }, 1);
    let response = harness
        .get_token_with(json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": SANDBOX_IMP_SECRET}))
        .await;
    assert_eq!(read(response).await, (401, envelope_error(-1, "sandbox fault")));
    let stats = harness.handle().stats();
    assert_eq!(
        (stats.get_token_calls, stats.tokens_issued, stats.unauthorized),
        (1, 0, 1)
    );
    harness.token().await;
}

#[tokio::test]
async fn malformed_fault_sends_truncated_json() {
    let harness = start().await;
    let token = harness.access_token().await;
    harness
        .handle()
        .inject(Endpoint::GetCertification, Fault::Malformed, 1);
    let response = harness.lookup(ADULT, Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"code":0,"response":{"#);
}

#[tokio::test]
async fn wrong_types_fault_sends_mistyped_fields() {
    let harness = start().await;
    let token = harness.access_token().await;
    let handle = harness.handle();
    handle.inject(Endpoint::GetCertification, Fault::WrongTypes, 1);
    let (status, body) = read(harness.lookup(ADULT, Some(&token)).await).await;
    assert_eq!((status, &body["code"]), (200, &json!(0)));
    assert_eq!(body["response"]["certified"], "yes");
    assert_eq!(body["response"]["certified_at"], "soon");
    assert!(serde_json::from_value::<CertificationRecord>(body["response"].clone()).is_err());

    handle.inject(Endpoint::GetToken, Fault::WrongTypes, 1);
    let response = harness
        .get_token_with(json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": SANDBOX_IMP_SECRET}))
        .await;
    let (_, body) = read(response).await;
    assert!(body["response"]["access_token"].is_number());
    assert!(body["response"]["expired_at"].is_string());
}

#[tokio::test]
async fn html_fault_sends_a_load_balancer_page() {
    let harness = start().await;
    harness
        .handle()
        .inject(Endpoint::GetToken, Fault::Html { status: 502 }, 1);
    let response = harness.get_token_with(json!({})).await;
    assert_eq!(response.status(), 502);
    assert!(content_type(&response).starts_with("text/html"));
    let text = response.text().await.unwrap();
    assert!(text.contains("<title>502 Bad Gateway</title>"), "{text}");
}

#[tokio::test]
async fn hang_fault_is_cut_by_the_client_timeout() {
    let harness = start().await;
    let token = harness.access_token().await;
    harness
        .handle()
        .inject(Endpoint::GetCertification, Fault::Hang, 1);
    let started = Instant::now();
    let error = harness
        .client
        .get(harness.url(&format!("/certifications/{ADULT}")))
        .header("Authorization", &token)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Only that one request hangs.
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn delay_fault_and_latency_slow_answers_down() {
    let harness = start().await;
    let token = harness.access_token().await;
    let handle = harness.handle();
    handle.inject(Endpoint::GetCertification, Fault::Delay { millis: 250 }, 1);
    let started = Instant::now();
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(250));

    handle.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    handle.inject(Endpoint::Any, Fault::Status { status: 500 }, 5);
    handle.clear_faults();
    let started = Instant::now();
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(200));
}
