//! The binary itself: what `serve` refuses, and `migrate`.

use std::process::Command;

fn service() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certification-service"));
    // Nothing from the developer's or CI's environment may satisfy the checks under test.
    for variable in [
        "PORTONE_IMP_KEY",
        "PORTONE_IMP_SECRET",
        "CI_INDEX_KEY",
        "CI_ENCRYPTION_KEYS",
        "CALLER_TOKENS",
        "CALLER_TOKENS_FILE",
        "CALLER_PERMISSIONS",
        "ALLOW_UNAUTHENTICATED",
        "GRPC_REFLECTION",
        "TLS_CLIENT_CA_FILE",
        "REJOIN_COOLDOWN",
        "CERTIFICATION_RETENTION",
        "CERTIFICATION_MAX_AGE",
        "DATABASE_URL",
        "REDIS_URL",
        "RUST_LOG",
        "SANDBOX_ALLOW_EXTERNAL",
        "SANDBOX_LISTEN_ADDR",
    ] {
        command.env_remove(variable);
    }
    command
}

#[test]
fn serve_without_credentials_or_sandbox_refuses_and_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = service()
        .args(["serve", "--grpc-listen-addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PORTONE_IMP_KEY") && stderr.contains("--sandbox"),
        "{stderr}"
    );
}

/// Runs `serve` with these variables, expects a refusal, and returns everything it printed. A
/// `serve` that starts instead is stopped and fails the test, rather than hanging it.
fn refused_serve(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = service()
        .args([
            "serve",
            "--grpc-listen-addr",
            "127.0.0.1:0",
            "--metrics-listen-addr",
            "off",
        ])
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "serve started instead of refusing:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `serve --sandbox` (fixed keys, no authentication, Sandbox/Certify minting identities) beside
/// production settings: it used to start on them. It refuses, naming each setting and no value.
#[test]
fn serve_with_the_sandbox_refuses_production_settings_and_names_them_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = service()
        .args(["serve", "--sandbox", "--grpc-listen-addr", "127.0.0.1:0"])
        .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            "postgres://service:db-password-value@127.0.0.1:9/certification",
        )
        .env("REDIS_URL", "redis://:redis-password-value@127.0.0.1:9")
        .env("PORTONE_IMP_KEY", "production-imp-key")
        .env("PORTONE_IMP_SECRET", "very-secret-value")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = KillOnPanic(child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve --sandbox is running beside production settings"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for setting in [
        "DATABASE_URL",
        "REDIS_URL",
        "PORTONE_IMP_KEY",
        "PORTONE_IMP_SECRET",
    ] {
        assert!(
            everything.contains(&format!("--sandbox refuses {setting} (")),
            "{setting}: {everything}"
        );
    }
    assert!(everything.contains("SANDBOX_ALLOW_EXTERNAL=true"), "{everything}");
    for value in [
        "db-password-value",
        "redis-password-value",
        "production-imp-key",
        "very-secret-value",
    ] {
        assert!(!everything.contains(value), "{value}: {everything}");
    }
}

#[test]
fn serve_without_an_index_key_refuses_and_never_prints_the_secret() {
    let everything = refused_serve(&[
        ("PORTONE_IMP_KEY", "key"),
        ("PORTONE_IMP_SECRET", "very-secret-value"),
    ]);
    assert!(everything.contains("CI_INDEX_KEY"), "{everything}");
    assert!(!everything.contains("very-secret-value"), "{everything}");
}

#[test]
fn serve_without_encryption_keys_refuses_and_never_prints_the_index_key() {
    let index_key = "c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE=";
    let everything = refused_serve(&[
        ("PORTONE_IMP_KEY", "key"),
        ("PORTONE_IMP_SECRET", "very-secret-value"),
        ("CI_INDEX_KEY", index_key),
    ]);
    assert!(everything.contains("CI_ENCRYPTION_KEYS"), "{everything}");
    assert!(!everything.contains(index_key), "{everything}");
}

/// Every key set, so what is refused is what the test is about.
const KEYS: [(&str, &str); 5] = [
    ("PORTONE_IMP_KEY", "key"),
    ("PORTONE_IMP_SECRET", "very-secret-value"),
    ("CI_INDEX_KEY", "c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE="),
    (
        "CI_ENCRYPTION_KEYS",
        "k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
    ),
    ("AUDIT_KEY", "c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI="),
];

fn with_keys<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    KEYS.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn serve_without_caller_authentication_refuses_unless_allowed_in_so_many_words() {
    let everything = refused_serve(&with_keys(&[]));
    assert!(
        everything.contains("CALLER_TOKENS") && everything.contains("ALLOW_UNAUTHENTICATED"),
        "{everything}"
    );
    // Blank is not "unset": a CALLER_TOKENS of spaces is a mistake, said as one.
    let blank = refused_serve(&with_keys(&[("CALLER_TOKENS", "   ")]));
    assert!(blank.contains("CALLER_TOKENS holds no entry"), "{blank}");
    let garbled = refused_serve(&with_keys(&[("CALLER_TOKENS", "signup")]));
    assert!(garbled.contains("CALLER_TOKENS entry 1"), "{garbled}");
}

#[test]
fn serve_with_authenticated_callers_and_no_caller_permissions_refuses_and_names_the_choice() {
    let tokens = ("CALLER_TOKENS", "signup=signup-token-0123456789abcdef");
    let everything = refused_serve(&with_keys(&[tokens]));
    assert!(
        everything.contains("CALLER_PERMISSIONS missing") && everything.contains("CALLER_PERMISSIONS=*"),
        "{everything}"
    );
    // mTLS names callers too (the CA file is read first: a missing one is its own problem).
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("any.pem");
    std::fs::write(&pem, "not read as PEM at start").unwrap();
    let pem = pem.display().to_string();
    let mutual = refused_serve(&with_keys(&[
        ("TLS_CERT_FILE", &pem),
        ("TLS_KEY_FILE", &pem),
        ("TLS_CLIENT_CA_FILE", &pem),
    ]));
    assert!(mutual.contains("CALLER_PERMISSIONS missing"), "{mutual}");
}

#[test]
fn serve_refuses_unknown_callers_comments_unusable_and_guessable_tokens() {
    let token = "signup-token-0123456789abcdef";
    let cases: [(&str, &str, &str); 5] = [
        (
            "signup=signup-token-0123456789abcdef",
            "signup=BeginVerification+Verify,singup=Unlink",
            "names the caller \"singup\", which CALLER_TOKENS does not",
        ),
        (
            "signup=signup-token-0123456789abcdef,#old=old-token-0123456789abcdef",
            "signup=*",
            "CALLER_TOKENS entry 2 starts with `#`",
        ),
        (
            "signup=signup-token-0123456789abcdéf",
            "signup=*",
            "CALLER_TOKENS entry 1: the token must be printable ASCII",
        ),
        (
            "signup=abababababababababababababababab",
            "signup=*",
            "CALLER_TOKENS entry 1: the token is guessable",
        ),
        (
            "signup=0000000000000000000000000000000000000001",
            "signup=*",
            "CALLER_TOKENS entry 1: the token is guessable",
        ),
    ];
    for (tokens, permissions, expected) in cases {
        let everything = refused_serve(&with_keys(&[
            ("CALLER_TOKENS", tokens),
            ("CALLER_PERMISSIONS", permissions),
        ]));
        assert!(
            everything.contains(expected),
            "{tokens}, {permissions}:\n{everything}"
        );
        assert!(!everything.contains(token), "a token printed:\n{everything}");
    }
}

#[test]
fn every_problem_is_reported_at_once_in_one_line_each_and_only_once() {
    let everything = refused_serve(&[
        ("REJOIN_COOLDOWN", "270000y"),
        ("CERTIFICATION_RETENTION", "10m"),
        ("CALLER_PERMISSIONS", "signup=Verify+Delete"),
    ]);
    for setting in [
        "PORTONE_IMP_KEY",
        "CI_INDEX_KEY",
        "CI_ENCRYPTION_KEYS",
        "REJOIN_COOLDOWN",
        "CERTIFICATION_RETENTION must be at least CERTIFICATION_MAX_AGE",
        "CALLER_PERMISSIONS entry 1",
    ] {
        assert_eq!(
            everything.matches(setting).count(),
            1,
            "{setting} in:\n{everything}"
        );
    }
}

#[test]
fn a_database_url_that_does_not_parse_is_never_printed() {
    let everything = refused_serve(&with_keys(&[
        ("ALLOW_UNAUTHENTICATED", "true"),
        ("DATABASE_URL", "postgres://service:hunter2-password@[broken/db"),
    ]));
    assert!(everything.contains("DATABASE_URL"), "{everything}");
    assert!(!everything.contains("hunter2"), "{everything}");
}

#[test]
fn plain_http_to_portone_is_refused_except_to_this_machine() {
    let everything = refused_serve(&with_keys(&[
        ("ALLOW_UNAUTHENTICATED", "true"),
        ("PORTONE_BASE_URL", "http://api.iamport.kr"),
    ]));
    assert!(
        everything.contains("PORTONE_BASE_URL must be https://"),
        "{everything}"
    );
}

#[test]
fn migrate_creates_the_schema_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("nested/dir/cs.db");
    let url = format!("sqlite://{}?mode=rwc", database.display());
    // The second run finds nothing pending: a no-op, not an error.
    for run in ["first", "second"] {
        let output = service()
            .args(["migrate", "--database-url", &url])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{run}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(database.exists());
    }
}

/// README's run command, for real: `serve --sandbox` on the embedded defaults answers Verify,
/// then SIGTERM stops it with exit code 0.
#[test]
fn serve_with_the_sandbox_answers_verify_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let mut child = service()
        .args(["serve", "--sandbox", "--grpc-listen-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
        .env("SHUTDOWN_DRAIN_DELAY", "200ms")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = KillOnPanic(child.id());
    // The server logs the address it bound: the only way to learn port 0's choice. A reader
    // thread forwards every line, so a missing line fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines_receiver) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });
    let mut logged = Vec::new();
    let address = loop {
        let line = lines_receiver
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| {
                let _ = child.kill();
                format!("no \"serving gRPC\" line; logged: {logged:?}")
            })
            .unwrap();
        let found = line
            .contains("serving gRPC")
            .then(|| {
                line.split("address=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            })
            .flatten();
        logged.push(line);
        if let Some(address) = found {
            break address;
        }
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let request = tonic_health::pb::HealthCheckRequest {
                service: certification_service::app::SERVICE_NAME.into(),
            };
            if let Ok(response) = health.check(request).await
                && response.into_inner().status == 1
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never SERVING");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut client =
            certification_service::grpc::proto::certification_service_client::CertificationServiceClient::new(
                channel.clone(),
            );
        // REQUIRE_SESSION is on under --sandbox too: an imp_uid alone opens nothing.
        let alone = client
            .verify(crate::helpers::verify_request(
                certification_service::sandbox::identities::ADULT,
            ))
            .await;
        crate::helpers::assert_status(alone, tonic::Code::FailedPrecondition, "SESSION_REQUIRED");
        // The README's walk-through: begin, the sandbox plays the browser, Verify redeems.
        use certification_service::{
            grpc::proto::{BeginVerificationRequest, Purpose},
            sandbox::grpc::proto::{CertifyRequest, Person, sandbox_client::SandboxClient},
        };
        let session = client
            .begin_verification(BeginVerificationRequest {
                purpose: Purpose::Signup.into(),
                provider: certification_service::grpc::proto::Provider::PortoneV1.into(),
                account_id: Some("user-1001".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let certified = SandboxClient::new(channel)
            .certify(CertifyRequest {
                merchant_uid: session.merchant_uid.clone(),
                person: Person::Adult as i32,
                ..CertifyRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        let request = certification_service::grpc::proto::VerifyRequest {
            merchant_uid: session.merchant_uid,
            ..crate::helpers::verify_request(&certified.imp_uid)
        };
        let answer = client.verify(request).await.unwrap().into_inner();
        assert!(answer.age_check.unwrap().satisfied);
        assert!(answer.bound);
    });
    assert!(
        dir.path().join("data/certification-service.db").exists(),
        "the SQLite default under ./data"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stop_deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > stop_deadline {
            let _ = child.kill();
            panic!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    logged.extend(lines_receiver.try_iter());
    let logged = logged.join("\n");
    for personal in [
        "홍길동",
        "01012345678",
        &certification_service::sandbox::identities::ci_for("hong"),
    ] {
        assert!(!logged.contains(personal), "personal data in the logs");
    }
}

#[tokio::test]
async fn the_health_subcommand_exits_zero_only_when_serving() {
    let app = crate::helpers::spawn_app().await;
    let serving = health_command(app.addr.to_string(), certification_service::app::SERVICE_NAME).await;
    assert!(serving.status.success(), "{serving:?}");
    assert!(String::from_utf8_lossy(&serving.stdout).contains("SERVING"));
    let unknown = health_command(app.addr.to_string(), "no.such.Service").await;
    assert!(!unknown.status.success());
    let nobody = format!("127.0.0.1:{}", crate::processes::free_port());
    assert!(!health_command(nobody, "").await.status.success());
}

/// `certification-service health`, run off the test's runtime so the in-process server answers.
async fn health_command(address: String, service_name: &str) -> std::process::Output {
    let service_name = service_name.to_owned();
    tokio::task::spawn_blocking(move || {
        service()
            .args(["health", "--addr", &address, "--service", &service_name])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Kills the server if the test fails before stopping it, so no server outlives a failed test
/// (holding the test's output pipe open).
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}
