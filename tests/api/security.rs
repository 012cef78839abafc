//! What the security review found, each as a test that failed before its fix: callers' methods,
//! the PortOne token in Redis, redirects, the future, the message-size limit outside the
//! service, database time-outs, and refusals that must not flood the logs.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, http::StatusCode, response::IntoResponse, routing::any};
use certification_service::{
    access::{CallerPermissions, CallerTokens},
    app::{Application, SERVICE_NAME},
    grpc::proto::{CheckDuplicateRequest, UnlinkRequest, check_duplicate_request::Key},
    sandbox::identities::{ADULT, CertificationRecord, ci_for},
};
use redis::AsyncCommands;
use tonic::Code;

use crate::{
    fleet::token_key,
    helpers::{App, as_caller, assert_status, spawn_app, test_settings, verify_request},
    processes::{RedisServer, ServiceProcess},
};

const SIGNUP: &str = "signup-token-0123456789abcdef";
const DELETION: &str = "deletion-token-0123456789abcdef";
const OPS: &str = "ops-token-0123456789abcdef0123";
const STRANGER: &str = "stranger-token-0123456789abcdef";

#[tokio::test]
async fn caller_permissions_limit_each_caller_to_its_methods() {
    let tokens = CallerTokens::parse(&format!(
        "signup={SIGNUP},deletion={DELETION},ops={OPS},stranger={STRANGER}"
    ))
    .unwrap();
    let permissions = CallerPermissions::parse("signup=Verify+CheckDuplicate,deletion=Unlink,ops=*").unwrap();
    let app = App::new()
        .adjust(|settings| {
            settings.server.caller_tokens = Some(tokens);
            settings.server.caller_permissions = Some(permissions);
        })
        .spawn()
        .await;
    let mut client = app.client.clone();
    let by_ci = || CheckDuplicateRequest {
        key: Some(Key::Ci(ci_for("permissions"))),
        ..Default::default()
    };
    let unlink = || UnlinkRequest {
        account_id: "acct-permissions".into(),
    };
    client
        .verify(as_caller(SIGNUP, verify_request(ADULT)))
        .await
        .unwrap();
    client.check_duplicate(as_caller(SIGNUP, by_ci())).await.unwrap();
    client.unlink(as_caller(DELETION, unlink())).await.unwrap();
    client.unlink(as_caller(OPS, unlink())).await.unwrap();
    client
        .verify(as_caller(OPS, verify_request(ADULT)))
        .await
        .unwrap();
    let lookups = app.sandbox.stats().certification_lookups;

    let status = assert_status(
        client.unlink(as_caller(SIGNUP, unlink())).await,
        Code::PermissionDenied,
        "METHOD_NOT_ALLOWED",
    );
    assert!(status.message().contains("Unlink"), "{status:?}");
    assert_status(
        client.verify(as_caller(DELETION, verify_request(ADULT))).await,
        Code::PermissionDenied,
        "METHOD_NOT_ALLOWED",
    );
    // A caller the permissions do not name may call nothing.
    assert_status(
        client.check_duplicate(as_caller(STRANGER, by_ci())).await,
        Code::PermissionDenied,
        "METHOD_NOT_ALLOWED",
    );
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups,
        "a refused call never reaches PortOne"
    );
}

#[tokio::test]
async fn without_caller_authentication_the_server_is_not_built_unless_allowed() {
    let (mut settings, _sandbox, _data) = test_settings(|_| {}).await;
    settings.server.allow_unauthenticated = false;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = Application::build(settings, listener)
        .await
        .err()
        .expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("CALLER_TOKENS") && message.contains("ALLOW_UNAUTHENTICATED"),
        "{message}"
    );
}

#[tokio::test]
async fn the_portone_token_in_redis_is_sealed_and_a_planted_one_is_replaced() {
    let redis = RedisServer::start();
    let app = App::new().redis(&redis.url()).spawn().await;
    app.verify(ADULT).await.unwrap();
    let key = token_key(&app.settings.portone_v1.as_ref().unwrap().imp_key);
    let mut connection = redis.connection().await;
    let stored: String = connection.get(&key).await.unwrap();
    // What Redis holds is no credential: PortOne refuses it.
    let presented = reqwest::Client::new()
        .get(format!(
            "{}/certifications/{ADULT}",
            app.settings.portone_v1.as_ref().unwrap().base_url
        ))
        .header("Authorization", &stored)
        .send()
        .await
        .unwrap();
    assert_eq!(
        presented.status(),
        StatusCode::UNAUTHORIZED,
        "Redis held a usable token"
    );

    let refused_before = app.sandbox.stats().unauthorized;
    // Someone who can write Redis plants a token of their own: it is not used, and replaced.
    let _: () = connection
        .set_ex(&key, "planted-token-of-another-merchant", 600)
        .await
        .unwrap();
    let fetched = app.sandbox.stats().get_token_calls;
    let other = App::replica_of(&app).spawn().await;
    other.verify(ADULT).await.unwrap();
    assert_eq!(
        app.sandbox.stats().get_token_calls,
        fetched + 1,
        "the planted value was a miss"
    );
    let replaced: String = connection.get(&key).await.unwrap();
    assert_ne!(replaced, "planted-token-of-another-merchant");
    assert_eq!(
        app.sandbox.stats().unauthorized,
        refused_before,
        "the planted token never reached PortOne"
    );
}

#[tokio::test]
async fn a_redirecting_portone_never_receives_or_forwards_the_secret() {
    // The "redirect target" records every request it gets.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = received.clone();
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}", target.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().fallback(any(move |body: String| {
            let recorder = recorder.clone();
            async move {
                recorder.lock().unwrap().push(body);
                StatusCode::OK
            }
        }));
        axum::serve(target, app).await.unwrap();
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_url = format!("http://{}", redirector.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().fallback(any(move || {
            let location = format!("{target_url}/users/getToken");
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response() }
        }));
        axum::serve(redirector, app).await.unwrap();
    });
    let app = App::new()
        .adjust(|settings| settings.portone_v1.as_mut().unwrap().base_url = redirector_url)
        .spawn()
        .await;
    assert_status(
        app.verify(ADULT).await,
        Code::FailedPrecondition,
        "UPSTREAM_REJECTED",
    );
    assert!(received.lock().unwrap().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn a_certification_from_the_future_is_refused_beyond_the_clock_skew() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let birthday = chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
    for (imp_uid, ahead) in [("imp_300000000001", 600), ("imp_300000000002", 30)] {
        app.sandbox.insert_certification(CertificationRecord::certified(
            imp_uid,
            imp_uid,
            "홍길동",
            birthday,
            now + ahead,
        ));
    }
    let status = assert_status(
        app.verify("imp_300000000001").await,
        Code::FailedPrecondition,
        "CERTIFIED_IN_FUTURE",
    );
    assert!(!status.message().contains("홍길동"));
    // Within CLOCK_SKEW (60 s in the tests): clocks differ a little, that is all.
    app.verify("imp_300000000002").await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_refuse_oversized_requests_like_the_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let app = spawn_app().await;
    let huge = "x".repeat(1 << 20);
    let status = app
        .health
        .clone()
        .check(HealthCheckRequest {
            service: huge.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect_lazy();
    let request = ServerReflectionRequest {
        host: huge,
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let answer = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await;
    // Refused, the stream ends without an answer (tonic-reflection ends it on a decode error)
    // or with OUT_OF_RANGE; before the limit, the request was read and answered.
    let answered = match answer {
        Err(status) => {
            assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
            false
        }
        Ok(stream) => match stream.into_inner().message().await {
            Ok(answer) => answer.is_some(),
            Err(status) => {
                assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
                false
            }
        },
    };
    assert!(!answered, "a 1 MiB reflection request was read and answered");
    assert_eq!(
        app.health_of(SERVICE_NAME).await.unwrap(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test]
async fn pooled_postgres_connections_carry_statement_and_lock_timeouts() {
    use sea_orm::{ConnectionTrait, Statement};
    // PostgreSQL whatever the run's backend: SQLite has no such settings.
    let Some((admin_url, _server)) =
        crate::helpers::postgres_for("pooled_postgres_connections_carry_statement_and_lock_timeouts")
    else {
        return;
    };
    let database = crate::helpers::TestDatabase::create(&admin_url).await;
    let app = App::new()
        .adjust(|settings| {
            settings.store.database_url = certification_service::secret::Secret::new(database.url());
        })
        .spawn()
        .await;
    let connection = app.store.connection();
    for (setting, expected) in [("statement_timeout", "10s"), ("lock_timeout", "3s")] {
        let row = connection
            .query_one_raw(Statement::from_string(
                connection.get_database_backend(),
                format!("SHOW {setting}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let value: String = row.try_get("", setting).unwrap();
        assert_eq!(value, expected, "{setting}");
    }
}

#[tokio::test]
async fn a_flood_of_refused_calls_logs_a_few_lines_not_one_each() {
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/flood.db?mode=rwc", data.path().display());
    let service = ServiceProcess::start(&[
        ("CALLER_TOKENS", &format!("signup={SIGNUP}")),
        ("CALLER_PERMISSIONS", "*"),
        ("ALLOW_UNAUTHENTICATED", "false"),
        ("DATABASE_URL", &database_url),
        ("PORTONE_IMP_KEY", "key"),
        ("PORTONE_IMP_SECRET", "secret"),
        ("PORTONE_BASE_URL", "http://127.0.0.1:9"),
        ("CI_INDEX_KEY", "c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE="),
        (
            "CI_ENCRYPTION_KEYS",
            "k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
        ),
        ("AUDIT_KEY", "c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI="),
    ]);
    service.wait_serving().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.address))
        .unwrap()
        .connect_lazy();
    let client =
        certification_service::grpc::proto::certification_service_client::CertificationServiceClient::new(
            channel,
        );
    let calls = (0..300).map(|_| {
        let mut client = client.clone();
        async move { client.verify(as_caller(STRANGER, verify_request(ADULT))).await }
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap_err().code(), Code::Unauthenticated);
    }
    let logs = service.wait_for_log("no valid caller token").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = service.logs().matches("no valid caller token").count();
    assert!(
        (1..=5).contains(&lines),
        "{lines} warning lines for 300 refusals:\n{logs}"
    );
}

/// A listening "proxy" that records every byte it receives and answers each connection 502:
/// what a proxy from the environment would learn.
struct RecordingProxy {
    url: String,
    received: Arc<Mutex<Vec<u8>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let recorder = received.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 16 * 1024];
                    // Whatever arrives until the client pauses: a request's head and body.
                    while let Ok(Ok(read)) =
                        tokio::time::timeout(Duration::from_millis(300), connection.read(&mut buffer)).await
                    {
                        if read == 0 {
                            break;
                        }
                        recorder.lock().unwrap().extend_from_slice(&buffer[..read]);
                    }
                    let _ = connection
                        .write_all(
                            b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Self {
            url,
            received,
            accepting,
        }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// reqwest honours HTTP_PROXY/ALL_PROXY and exempts no loopback address: with the sandbox's
/// loopback `http://` base URL, getToken's body (imp_secret) and V2's `Authorization` went to
/// the proxy in clear. Plain http:// is reached directly; https:// still goes through the proxy,
/// as a CONNECT tunnel it cannot read.
#[tokio::test]
async fn a_proxy_from_the_environment_never_receives_the_portone_secrets() {
    use certification_service::{
        grpc::proto::VerifyRequest,
        sandbox::{Sandbox, SandboxConfig},
    };

    let imp_secret = "proxy-test-imp-secret-7f3a9c";
    let v2_secret = "proxy-test-v2-secret-2b8e41";
    let sandbox = Sandbox::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SandboxConfig {
            imp_secret: imp_secret.into(),
            v2_api_secret: v2_secret.into(),
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let proxy = RecordingProxy::start().await;
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/proxy.db?mode=rwc", data.path().display());
    let base_url = sandbox.base_url();
    let env = |v2_base_url: &str| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .into_iter()
        .map(|name| (name.to_owned(), proxy.url.clone()))
        .collect();
        env.extend(
            [
                ("PORTONE_BASE_URL", base_url.as_str()),
                ("PORTONE_IMP_KEY", certification_service::sandbox::SANDBOX_IMP_KEY),
                ("PORTONE_IMP_SECRET", imp_secret),
                ("PORTONE_V2_BASE_URL", v2_base_url),
                ("PORTONE_V2_API_SECRET", v2_secret),
                ("PORTONE_MAX_ATTEMPTS", "1"),
                ("DATABASE_URL", database_url.as_str()),
                ("CI_INDEX_KEY", "c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE="),
                (
                    "CI_ENCRYPTION_KEYS",
                    "k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
                ),
                ("AUDIT_KEY", "c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI="),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        env
    };
    let start = |env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        ServiceProcess::start(&env)
    };

    // Both APIs on the loopback sandbox: answered directly, the proxy hears nothing.
    let service = start(&env(&base_url));
    service.wait_serving().await;
    let mut calls = service.client();
    calls.verify(verify_request(ADULT)).await.unwrap();
    calls
        .verify(VerifyRequest {
            identity_verification_id: "sandbox-iv-adult".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let heard = proxy.received();
    assert!(!heard.contains(imp_secret), "the proxy read imp_secret:\n{heard}");
    assert!(
        !heard.contains(v2_secret),
        "the proxy read the V2 secret:\n{heard}"
    );
    assert!(heard.is_empty(), "the proxy heard:\n{heard}");
    drop(service);

    // V2 over https: through the proxy still, as a tunnel; the secret is not in what it reads.
    let service = start(&env("https://portone-v2.invalid"));
    service.wait_serving().await;
    let tunnelled = service
        .client()
        .verify(VerifyRequest {
            identity_verification_id: "sandbox-iv-adult".into(),
            ..Default::default()
        })
        .await;
    assert!(tunnelled.is_err(), "no PortOne behind the recording proxy");
    let heard = proxy.received();
    assert!(
        heard.starts_with("CONNECT portone-v2.invalid:443"),
        "https:// keeps the proxy:\n{heard}"
    );
    assert!(
        !heard.contains(v2_secret),
        "the proxy read the V2 secret:\n{heard}"
    );
}
