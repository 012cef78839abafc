//! `spawn_app()`: the real server on port 0 with its own sandbox and its own database (a fresh
//! SQLite file, or a fresh PostgreSQL database when DATABASE_URL points at PostgreSQL), and
//! Redis when REDIS_URL is set.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    config::{Secret, Settings},
    domain::{CiIndexKey, SealingKeys},
    grpc::proto::{
        CheckDuplicateRequest, VerifyRequest, certification_service_client::CertificationServiceClient,
        check_duplicate_request::Key,
    },
    portone::{CircuitSettings, PortoneClient, PortoneSettings, TokenCacheStats},
    sandbox::{Sandbox, SandboxConfig, SandboxHandle},
    service::Policy,
    startup::{Application, SERVICE_NAME, install_crypto_provider},
    store::{Store, StoreSettings},
};
use sea_orm::{ConnectionTrait, Database};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

pub const TEST_INDEX_KEY: [u8; 32] = [42; 32];

/// CI_ENCRYPTION_KEYS of the tests: one key, id `test-k1`.
pub fn test_encryption_keys() -> String {
    format!("test-k1:{}", STANDARD.encode([9u8; 32]))
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The plain-text health port, when the settings ask for one.
    pub health_addr: Option<SocketAddr>,
    /// `/metrics`, when the settings ask for it.
    pub metrics_addr: Option<SocketAddr>,
    pub client: CertificationServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    pub sandbox: SandboxHandle,
    pub store: Store,
    pub portone: PortoneClient,
    pub settings: Settings,
    _sandbox: Arc<Sandbox>,
    _sqlite_dir: Option<Arc<tempfile::TempDir>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Which backends this run uses, from the environment `.ci/run` sets.
pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

pub fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty())
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts everything; `adjust` may change the settings before the server is built.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (settings, sandbox, sqlite_dir) = test_settings(|_| {}).await;
    spawn_app_on(settings, sandbox, sqlite_dir, adjust, true).await
}

/// Like [`spawn_app_with`] but returns without waiting for SERVING.
pub async fn spawn_app_unready(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (settings, sandbox, sqlite_dir) = test_settings(|_| {}).await;
    spawn_app_on(settings, sandbox, sqlite_dir, adjust, false).await
}

/// Replicas of the service as production runs them: one PortOne (sandbox), one database, and
/// the Redis at `redis_url` shared by all (or none).
pub struct Fleet {
    pub replicas: Vec<TestApp>,
    pub sandbox: SandboxHandle,
}

pub async fn spawn_fleet(
    replicas: usize,
    redis_url: Option<&str>,
    adjust_sandbox: impl FnOnce(&mut SandboxConfig),
    adjust: impl Fn(&mut Settings),
) -> Fleet {
    let (mut settings, sandbox, sqlite_dir) = test_settings(adjust_sandbox).await;
    settings.redis_url = redis_url.map(Secret::new);
    let sandbox = Arc::new(sandbox);
    let sqlite_dir = sqlite_dir.map(Arc::new);
    let mut apps = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        apps.push(
            spawn_app_on(
                settings.clone(),
                sandbox.clone(),
                sqlite_dir.clone(),
                &adjust,
                true,
            )
            .await,
        );
    }
    Fleet {
        sandbox: sandbox.handle(),
        replicas: apps,
    }
}

impl Fleet {
    /// `count` Verify calls at once, spread round-robin over the replicas.
    pub async fn verify_burst(&self, count: usize, imp_uid: &str) -> Vec<Result<(), Status>> {
        let calls = (0..count).map(|index| {
            let replica = &self.replicas[index % self.replicas.len()];
            async move { replica.verify(imp_uid).await.map(drop) }
        });
        futures::future::join_all(calls).await
    }
}

/// Another server on the same sandbox and database as `app`, with adjusted settings (a rolling
/// deployment with new keys, say).
pub async fn spawn_replica_of(app: &TestApp, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(
        app.settings.clone(),
        app._sandbox.clone(),
        app._sqlite_dir.clone(),
        adjust,
        true,
    )
    .await
}

/// The settings every test starts from. The sandbox gets a unique key per test: the Redis
/// token key is namespaced by it, so tests never share a token.
pub async fn test_settings(
    adjust_sandbox: impl FnOnce(&mut SandboxConfig),
) -> (Settings, Sandbox, Option<tempfile::TempDir>) {
    install_crypto_provider();
    let mut sandbox_config = SandboxConfig {
        imp_key: format!("test_key_{}", uuid::Uuid::new_v4().simple()),
        ..SandboxConfig::default()
    };
    adjust_sandbox(&mut sandbox_config);
    let sandbox_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(sandbox_listener, sandbox_config.clone())
        .await
        .unwrap();
    let (database_url, sqlite_dir) = match postgres_url() {
        Some(admin_url) => (fresh_postgres_database(&admin_url).await, None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
            (url, Some(dir))
        }
    };
    let settings = Settings {
        grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_listen_addr: None,
        store: StoreSettings {
            database_url,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        },
        redis_url: redis_url().map(Secret::new),
        redis_timeout: Duration::from_millis(250),
        redis_ca_file: None,
        portone: PortoneSettings {
            base_url: sandbox.base_url(),
            imp_key: sandbox_config.imp_key,
            imp_secret: Secret::new(sandbox_config.imp_secret),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            max_attempts: 3,
            token_margin: certification_service::config::TOKEN_MARGIN,
            token_refresh_ahead: certification_service::config::TOKEN_REFRESH_AHEAD,
            token_lock_ttl: Duration::from_secs(3),
            circuit: CircuitSettings::default(),
            max_connections: 128,
        },
        ci_index_key: CiIndexKey::from_base64(&STANDARD.encode(TEST_INDEX_KEY)).unwrap(),
        sealing_keys: SealingKeys::parse(&test_encryption_keys()).unwrap(),
        caller_tokens: None,
        grpc_reflection: true,
        tls: None,
        health_listen_addr: None,
        shutdown: certification_service::config::ShutdownSettings {
            drain_delay: Duration::ZERO,
            timeout: Duration::from_secs(5),
        },
        connections: certification_service::config::ConnectionSettings::default(),
        purge_interval: None,
        certification_retention: Duration::from_secs(90 * 24 * 3600),
        policy: Policy {
            min_age: 14,
            reject_underage: false,
            max_certification_age: Duration::from_secs(30 * 60),
            rejoin_cooldown: Duration::ZERO,
        },
        request_timeout: Duration::from_secs(10),
        max_in_flight: 1024,
        migrate_on_start: true,
        readiness_interval: Duration::from_millis(200),
    };
    (settings, sandbox, sqlite_dir)
}

pub async fn spawn_app_on(
    mut settings: Settings,
    sandbox: impl Into<Arc<Sandbox>>,
    sqlite_dir: Option<impl Into<Arc<tempfile::TempDir>>>,
    adjust: impl FnOnce(&mut Settings),
    wait_ready: bool,
) -> TestApp {
    adjust(&mut settings);
    let sandbox = sandbox.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let application = Application::build(settings.clone(), listener).await.unwrap();
    let addr = application.local_addr();
    let health_addr = application.health_addr();
    let metrics_addr = application.metrics_addr();
    let store = application.store();
    let portone = application.portone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let app = TestApp {
        addr,
        health_addr,
        metrics_addr,
        client: CertificationServiceClient::new(channel.clone()),
        health: HealthClient::new(channel),
        sandbox: sandbox.handle(),
        store,
        portone,
        settings,
        _sandbox: sandbox,
        _sqlite_dir: sqlite_dir.map(Into::into),
        shutdown: Some(shutdown),
        server: Some(server),
    };
    if wait_ready {
        app.wait_for_health(SERVICE_NAME, ServingStatus::Serving).await;
    }
    app
}

/// A database of its own for one test, created next to the one DATABASE_URL names.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(admin_url)
        .await
        .expect("DATABASE_URL must reach PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _database)| server);
    format!("{server}/{name}{query}")
}

impl TestApp {
    pub fn token_stats(&self) -> TokenCacheStats {
        self.portone.token_cache().stats()
    }

    pub fn token_cache_degraded(&self) -> bool {
        self.portone.token_cache().is_degraded()
    }

    pub async fn verify(
        &self,
        imp_uid: &str,
    ) -> Result<tonic::Response<certification_service::grpc::proto::VerifyResponse>, Status> {
        self.client.clone().verify(verify_request(imp_uid)).await
    }

    pub async fn bind(
        &self,
        imp_uid: &str,
        account: &str,
    ) -> Result<certification_service::grpc::proto::VerifyResponse, Status> {
        let request = VerifyRequest {
            account_id: account.to_owned(),
            ..verify_request(imp_uid)
        };
        self.client
            .clone()
            .verify(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn check_duplicate(
        &self,
        key: Key,
    ) -> Result<certification_service::grpc::proto::CheckDuplicateResponse, Status> {
        self.client
            .clone()
            .check_duplicate(CheckDuplicateRequest { key: Some(key) })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn health_of(&self, service: &str) -> Result<ServingStatus, Status> {
        let response = self
            .health
            .clone()
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        Ok(response.into_inner().status())
    }

    pub async fn wait_for_health(&self, service: &str, wanted: ServingStatus) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.health_of(service).await.ok() == Some(wanted) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service:?} never reached {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends the shutdown signal (SIGTERM, in the binary) and returns at once.
    pub fn request_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits for the server to return after [`TestApp::request_stop`].
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) => server.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

pub fn verify_request(imp_uid: &str) -> VerifyRequest {
    VerifyRequest {
        imp_uid: imp_uid.to_owned(),
        ..VerifyRequest::default()
    }
}

/// Asserts the gRPC code and the ErrorInfo reason of a failed call.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) -> Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "certification.v1");
    status
}
