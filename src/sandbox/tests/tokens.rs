//! getToken: token reuse, extension and expiry, credentials, and request bodies.

use std::time::Duration;

use serde_json::json;

use super::{content_type, envelope_error, read, start, start_with};
use crate::sandbox::{SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, SandboxConfig, identities::ADULT};

#[tokio::test]
async fn get_token_returns_the_same_token_while_it_is_valid() {
    let harness = start().await;
    let first = harness.token().await;
    let second = harness.token().await;
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 40);
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(first["expired_at"], second["expired_at"]);
    let now = first["now"].as_i64().unwrap();
    assert!((now - chrono::Utc::now().timestamp()).abs() <= 2);
    assert_eq!(first["expired_at"].as_i64().unwrap(), now + 1800);
    let stats = harness.handle().stats();
    assert_eq!((stats.get_token_calls, stats.tokens_issued), (2, 1));
}

#[tokio::test]
async fn get_token_accepts_a_form_encoded_body() {
    let harness = start().await;
    let response = harness
        .client
        .post(harness.url("/users/getToken"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "imp_key={SANDBOX_IMP_KEY}&imp_secret={SANDBOX_IMP_SECRET}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(content_type(&response), "application/json");
    let (status, body) = read(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["access_token"].as_str().unwrap().len(), 40);
}

#[tokio::test]
async fn get_token_in_the_last_minute_extends_the_same_token_by_five_minutes() {
    let harness = start().await;
    let first = harness.token().await;
    // 30 seconds before expiry on the sandbox's clock.
    harness.handle().set_clock_skew(1800 - 30);
    let extended = harness.token().await;
    assert_eq!(extended["access_token"], first["access_token"]);
    assert_eq!(
        extended["expired_at"].as_i64().unwrap(),
        first["expired_at"].as_i64().unwrap() + 300
    );
    assert!(extended["now"].as_i64().unwrap() >= first["now"].as_i64().unwrap() + 1770);
    // Asked again right away: no longer in the last minute, so unchanged.
    assert_eq!(harness.token().await["expired_at"], extended["expired_at"]);
    assert_eq!(harness.handle().stats().tokens_issued, 1);
}

#[tokio::test]
async fn an_expired_token_is_refused_and_get_token_issues_a_new_one() {
    let harness = start_with(SandboxConfig {
        token_lifetime: Duration::from_secs(600),
        ..SandboxConfig::default()
    })
    .await;
    let first = harness.token().await;
    let old_token = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(harness.lookup(ADULT, Some(&old_token)).await.status(), 200);
    harness.handle().set_clock_skew(601);
    let (status, body) = read(harness.lookup(ADULT, Some(&old_token)).await).await;
    assert_eq!((status, body), (401, envelope_error(-1, "Unauthenticated")));
    let second = harness.token().await;
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(
        second["expired_at"].as_i64().unwrap(),
        second["now"].as_i64().unwrap() + 600
    );
    let stats = harness.handle().stats();
    assert_eq!((stats.tokens_issued, stats.unauthorized), (2, 1));
}

#[tokio::test]
async fn expire_tokens_makes_lookups_fail_until_a_new_token_is_fetched() {
    let harness = start().await;
    let old_token = harness.access_token().await;
    harness.handle().expire_tokens();
    assert_eq!(harness.lookup(ADULT, Some(&old_token)).await.status(), 401);
    let new_token = harness.access_token().await;
    assert_ne!(new_token, old_token);
    assert_eq!(harness.lookup(ADULT, Some(&new_token)).await.status(), 200);
}

#[tokio::test]
async fn get_token_refuses_wrong_or_missing_credentials_with_401() {
    let harness = start().await;
    let rejected = envelope_error(-1, "imp_key, imp_secret 인증에 실패하였습니다.");
    for body in [
        json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": "wrong"}),
        json!({"imp_key": "wrong", "imp_secret": SANDBOX_IMP_SECRET}),
        json!({"imp_key": SANDBOX_IMP_KEY}),
        json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": 42}),
        json!([1, 2]),
    ] {
        let (status, answer) = read(harness.get_token_with(body).await).await;
        assert_eq!((status, answer), (401, rejected.clone()));
    }
    for form in [
        format!("imp_key=wrong&imp_secret={SANDBOX_IMP_SECRET}"),
        String::new(),
    ] {
        let response = harness
            .client
            .post(harness.url("/users/getToken"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(read(response).await, (401, rejected.clone()));
    }
    assert_eq!(harness.handle().stats().unauthorized, 7);
    assert_eq!(harness.handle().stats().tokens_issued, 0);
}

#[tokio::test]
async fn get_token_answers_400_to_a_body_that_is_neither_json_nor_form() {
    let harness = start().await;
    for (content_type, body) in [
        ("text/plain", "imp_key=a&imp_secret=b"),
        ("application/json", "{\"imp_key\": "),
        ("application/octet-stream", "\u{0}\u{1}"),
    ] {
        let response = harness
            .client
            .post(harness.url("/users/getToken"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = read(response).await;
        assert_eq!(status, 400);
        assert_eq!(answer["code"], -1);
        assert!(answer["response"].is_null());
    }
    let (status, _) = read(
        harness
            .client
            .post(harness.url("/users/getToken"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}
