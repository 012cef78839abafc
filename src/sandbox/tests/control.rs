//! Controlling and observing the sandbox: request stats, unmatched routes, the `/__sandbox/`
//! admin API, and stopping it by dropping it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Harness, read, start};
use crate::sandbox::{
    Endpoint, Fault,
    identities::{self, ADULT, CertificationRecord},
};

#[tokio::test]
async fn stats_record_raw_requests_but_not_admin_ones() {
    let harness = start().await;
    let token = harness.access_token().await;
    harness.lookup("imp%5F100000000001", Some(&token)).await;
    harness
        .client
        .get(harness.url("/payments/x?page=2&q=a%20b"))
        .send()
        .await
        .unwrap();
    harness
        .client
        .get(harness.url("/__sandbox/stats"))
        .send()
        .await
        .unwrap();
    let stats = harness.handle().stats();
    assert_eq!(
        stats.requests,
        [
            "POST /users/getToken",
            "GET /certifications/imp%5F100000000001",
            "GET /payments/x?page=2&q=a%20b",
        ]
    );
    assert_eq!((stats.get_token_calls, stats.certification_lookups), (1, 1));
    harness.handle().reset_stats();
    assert!(harness.handle().stats().requests.is_empty());
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_envelope() {
    let harness = start().await;
    let (status, body) = read(
        harness
            .client
            .get(harness.url("/payments/imp_1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone(), body["response"].clone()),
        (404, json!(-1), Value::Null)
    );
    let (status, body) = read(
        harness
            .client
            .get(harness.url("/users/getToken"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (405, json!(-1)));
    assert_eq!(harness.handle().stats().get_token_calls, 0);
}

#[tokio::test]
async fn admin_endpoints_steer_the_sandbox() {
    let harness = start().await;
    let post = |path: &str, body: Value| {
        harness
            .client
            .post(harness.url(path))
            .body(body.to_string())
            .send()
    };

    let response = post(
        "/__sandbox/faults",
        json!({"endpoint": "get_certification", "fault": {"kind": "status", "status": 503}, "times": 2}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let token = harness.access_token().await;
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 503);

    let bad = post(
        "/__sandbox/faults",
        json!({"endpoint": "get_token", "fault": {"kind": "status", "status": 42}}),
    );
    assert_eq!(bad.await.unwrap().status(), 400);
    assert_eq!(
        post("/__sandbox/latency", json!({"millis": "soon"}))
            .await
            .unwrap()
            .status(),
        400
    );

    let record = CertificationRecord {
        imp_uid: "imp_424242424242".into(),
        ..identities::fixtures(chrono::Utc::now())[0].clone()
    };
    post(
        "/__sandbox/certifications",
        serde_json::to_value(&record).unwrap(),
    )
    .await
    .unwrap();
    post("/__sandbox/latency", json!({"millis": 1})).await.unwrap();
    post("/__sandbox/clock", json!({"skew_seconds": 5}))
        .await
        .unwrap();
    let (status, stats) = read(
        harness
            .client
            .get(harness.url("/__sandbox/stats"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &stats["certification_lookups"]), (200, &json!(1)));

    // Reset clears the second queued 503, latency, skew and stats, but keeps the inserted record.
    post("/__sandbox/reset", json!({})).await.unwrap();
    assert_eq!(
        harness.lookup("imp_424242424242", Some(&token)).await.status(),
        200
    );
    assert_eq!(harness.handle().stats().certification_lookups, 1);
    assert!((harness.token().await["now"].as_i64().unwrap() - chrono::Utc::now().timestamp()).abs() <= 2);

    post("/__sandbox/tokens/expire", json!({})).await.unwrap();
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 401);
}

#[tokio::test]
async fn dropping_the_sandbox_stops_it() {
    let harness = start().await;
    let token = harness.access_token().await;
    harness
        .handle()
        .inject(Endpoint::GetCertification, Fault::Hang, 1);
    let hanging = tokio::spawn({
        let request = harness
            .client
            .get(harness.url(&format!("/certifications/{ADULT}")))
            .header("Authorization", &token)
            .timeout(Duration::from_secs(5));
        async move { request.send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = harness.url("/users/getToken");
    let Harness { sandbox, client } = harness;
    drop(sandbox);
    // The hung request is released rather than left for an hour.
    let started = Instant::now();
    let _ = hanging.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // Neither new nor pooled connections reach it any more.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(client.post(&url).send().await.is_err());
}
