//! The sandbox over real HTTP on loopback.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Endpoint, Fault, SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, Sandbox, SandboxConfig, SandboxHandle,
    identities::{self, ADULT, CertificationRecord, NO_PHONE, NOT_CERTIFIED},
};

struct Harness {
    sandbox: Sandbox,
    client: reqwest::Client,
}

async fn start() -> Harness {
    start_with(SandboxConfig::default()).await
}

async fn start_with(config: SandboxConfig) -> Harness {
    // reqwest is built without a default crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(listener, config).await.unwrap();
    let client = reqwest::Client::builder().build().unwrap();
    Harness { sandbox, client }
}

impl Harness {
    fn handle(&self) -> SandboxHandle {
        self.sandbox.handle()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    async fn get_token_with(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/users/getToken"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A successful getToken's `response` object.
    async fn token(&self) -> Value {
        let response = self
            .get_token_with(json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": SANDBOX_IMP_SECRET}))
            .await;
        let (status, body) = read(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], 0);
        assert!(body["message"].is_null());
        body["response"].clone()
    }

    async fn access_token(&self) -> String {
        self.token().await["access_token"].as_str().unwrap().to_owned()
    }

    async fn lookup(&self, imp_uid: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(&format!("/certifications/{imp_uid}")));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send().await.unwrap()
    }

    async fn lookup_ok(&self, imp_uid: &str) -> Value {
        let token = self.access_token().await;
        let (status, body) = read(self.lookup(imp_uid, Some(&token)).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], 0);
        body["response"].clone()
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"));
    (status, body)
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"].to_str().unwrap().to_owned()
}

fn envelope_error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message, "response": null})
}

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

#[tokio::test]
async fn lookups_accept_both_authorization_styles_and_refuse_bad_tokens() {
    let harness = start().await;
    let token = harness.access_token().await;
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    assert_eq!(
        harness
            .lookup(ADULT, Some(&format!("Bearer {token}")))
            .await
            .status(),
        200
    );
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    for authorization in [
        None,
        Some(unknown.to_owned()),
        Some(format!("Bearer {unknown}")),
        Some("Bearer".into()),
    ] {
        let (status, body) = read(harness.lookup(ADULT, authorization.as_deref()).await).await;
        assert_eq!((status, body), (401, envelope_error(-1, "Unauthenticated")));
    }
    assert_eq!(harness.handle().stats().unauthorized, 4);
}

#[tokio::test]
async fn an_unknown_imp_uid_is_404() {
    let harness = start().await;
    let token = harness.access_token().await;
    for imp_uid in ["imp_999999999999", "imp_1%2F2", "%FF%FE"] {
        let (status, body) = read(harness.lookup(imp_uid, Some(&token)).await).await;
        assert_eq!(
            (status, body),
            (404, envelope_error(-1, "인증결과가 존재하지 않습니다."))
        );
    }
}

#[tokio::test]
async fn fixtures_are_served_in_portone_shapes() {
    let harness = start().await;
    let adult = harness.lookup_ok(ADULT).await;
    assert_eq!(adult["name"], "홍길동");
    assert_eq!(adult["unique_key"].as_str().unwrap().len(), 88);
    assert_eq!(adult["unique_in_site"].as_str().unwrap().len(), 64);
    assert_eq!(adult["phone"], "01012345678");
    assert_eq!(adult["certified"], true);
    let certified_at = adult["certified_at"].as_i64().unwrap();
    assert!((chrono::Utc::now().timestamp() - 120 - certified_at).abs() <= 2);

    let no_phone = harness.lookup_ok(NO_PHONE).await;
    let object = no_phone.as_object().unwrap();
    assert!(!object.contains_key("phone") && !object.contains_key("carrier"));
    assert!(object["gender"].is_null() && object["unique_in_site"].is_null());

    let not_certified = harness.lookup_ok(NOT_CERTIFIED).await;
    assert_eq!(not_certified["certified"], false);
    assert!(not_certified["unique_key"].is_null() && not_certified["certified_at"].is_null());
}

#[tokio::test]
async fn fixtures_follow_the_sandbox_clock() {
    let harness = start().await;
    let token = harness.access_token().await;
    // The token was issued on the unskewed clock, and is still valid a day earlier.
    harness.handle().set_clock_skew(-86_400);
    let (status, body) = read(harness.lookup(ADULT, Some(&token)).await).await;
    assert_eq!(status, 200);
    let certified_at = body["response"]["certified_at"].as_i64().unwrap();
    assert!((chrono::Utc::now().timestamp() - 86_400 - 120 - certified_at).abs() <= 2);
}

#[tokio::test]
async fn inserted_records_are_served_and_shadow_fixtures() {
    let harness = start().await;
    let birthday = chrono::NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
    let custom =
        CertificationRecord::certified("imp_555555555555", "custom", "테스트", birthday, 1_800_000_000);
    harness.handle().insert_certification(custom.clone());
    let served: CertificationRecord =
        serde_json::from_value(harness.lookup_ok("imp_555555555555").await).unwrap();
    assert_eq!(served, custom);

    let replaced = CertificationRecord {
        name: Some("대체".into()),
        ..CertificationRecord::certified(ADULT, "other", "x", birthday, 1)
    };
    harness.handle().insert_certification(replaced);
    assert_eq!(harness.lookup_ok(ADULT).await["name"], "대체");
}

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
