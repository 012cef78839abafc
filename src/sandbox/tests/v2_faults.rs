//! Faults, latency and clock skew on V2's endpoint.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{read, start};
use crate::sandbox::{Endpoint, Fault, SANDBOX_V2_API_SECRET, identities::ADULT, v2::V2_ADULT};

#[tokio::test]
async fn faults_on_the_v2_endpoint_take_v2_shapes_and_spare_v1() {
    let harness = start().await;
    let handle = harness.handle();
    let token = harness.access_token().await;
    handle.inject(
        Endpoint::GetIdentityVerification,
        Fault::Status { status: 503 },
        1,
    );
    handle.inject(Endpoint::GetIdentityVerification, Fault::WrongTypes, 1);
    handle.inject(Endpoint::GetIdentityVerification, Fault::Malformed, 1);
    // A V1 lookup in between takes none of them.
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    let (status, body) = harness.v2_lookup(V2_ADULT).await;
    assert_eq!(
        (status, body),
        (503, json!({"type": "SANDBOX_FAULT", "message": "sandbox fault"}))
    );
    let (status, body) = harness.v2_lookup(V2_ADULT).await;
    assert_eq!(
        (status, body["status"].clone(), body["version"].clone()),
        (200, json!(1), json!(2))
    );
    let authorization = format!("PortOne {SANDBOX_V2_API_SECRET}");
    let malformed = harness.v2_get(V2_ADULT, Some(&authorization)).await;
    assert_eq!(malformed.text().await.unwrap(), r#"{"status":"VERIFIED","id":"#);
    assert_eq!(harness.v2_lookup(V2_ADULT).await.0, 200);
    assert_eq!(handle.stats().identity_verification_lookups, 4);
    assert_eq!(handle.stats().certification_lookups, 1);
}

#[tokio::test]
async fn the_admin_json_names_the_v2_endpoint_and_latency_and_any_apply() {
    let harness = start().await;
    let response = harness
        .client
        .post(harness.url("/__sandbox/faults"))
        .body(r#"{"endpoint":"get_identity_verification","fault":{"kind":"html","status":502}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let authorization = format!("PortOne {SANDBOX_V2_API_SECRET}");
    let page = harness.v2_get(V2_ADULT, Some(&authorization)).await;
    assert_eq!(page.status(), 502);
    assert!(page.text().await.unwrap().contains("nginx"));

    harness
        .handle()
        .inject(Endpoint::Any, Fault::Status { status: 500 }, 1);
    assert_eq!(harness.v2_lookup(V2_ADULT).await.0, 500);

    harness.handle().set_latency(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(harness.v2_lookup(V2_ADULT).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn clock_skew_moves_v2_times() {
    let harness = start().await;
    harness.handle().set_clock_skew(-86_400);
    let (status, body) = read(
        harness
            .v2_get(V2_ADULT, Some(&format!("PortOne {SANDBOX_V2_API_SECRET}")))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    for time in ["verifiedAt", "updatedAt", "requestedAt"] {
        let at = chrono::DateTime::parse_from_rfc3339(body[time].as_str().unwrap()).unwrap();
        let expected = chrono::Utc::now().timestamp() - 86_400 - 120;
        assert!((at.timestamp() - expected).abs() <= 62, "{time}: {at}");
    }
}
