//! `spawn_app()`: the real server on port 0 with its own sandbox and its own database (a fresh
//! SQLite file, or a fresh PostgreSQL database when DATABASE_URL points at PostgreSQL), and
//! Redis when REDIS_URL is set.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use certification_service::{
    app::{Application, SERVICE_NAME, install_crypto_provider},
    config::{RedisSettings, Settings},
    grpc::proto::{
        CheckDuplicateRequest, VerifyRequest, certification_service_client::CertificationServiceClient,
        check_duplicate_request::Key,
    },
    portone::v1::{PortoneClient, TokenCacheStats},
    sandbox::{Sandbox, SandboxConfig, SandboxHandle, grpc::proto::sandbox_client::SandboxClient},
    secret::Secret,
    store::Store,
};
pub use certification_testkit::{TEST_INDEX_KEY, TestDatabase, test_encryption_keys};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// Where a test's data lives; dropped (file or database) when the last server using it is.
pub enum TestData {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

/// Redis settings as the tests use them, for a Redis at `url`.
pub fn redis_settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: Secret::new(url),
        timeout: Duration::from_millis(250),
        ca_file: None,
    }
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
    /// PortOne V1's client, where V1 is configured.
    pub portone: Option<PortoneClient>,
    pub settings: Settings,
    _sandbox: Arc<Sandbox>,
    _data: Arc<TestData>,
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

/// A PostgreSQL server for a test that needs one whatever backend the run uses: the one
/// DATABASE_URL names, or a private one started for this test (kept alive by the returned
/// guard). `None`, reported as skipped, on a machine without PostgreSQL's binaries.
pub fn postgres_for(test: &str) -> Option<(String, Option<certification_testkit::PostgresServer>)> {
    if let Some(admin_url) = postgres_url() {
        return Some((admin_url, None));
    }
    match certification_testkit::PostgresServer::start() {
        Ok(server) => Some((server.admin_url(), Some(server))),
        Err(why) => {
            certification_testkit::report_skipped(test, &why);
            None
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
    let (settings, sandbox, data) = test_settings(|_| {}).await;
    spawn_app_on(settings, sandbox, data, adjust, true).await
}

/// Like [`spawn_app_with`] but returns without waiting for SERVING.
pub async fn spawn_app_unready(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (settings, sandbox, data) = test_settings(|_| {}).await;
    spawn_app_on(settings, sandbox, data, adjust, false).await
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
    let (mut settings, sandbox, data) = test_settings(adjust_sandbox).await;
    settings.redis = redis_url.map(redis_settings);
    let sandbox = Arc::new(sandbox);
    let data = Arc::new(data);
    let mut apps = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        apps.push(spawn_app_on(settings.clone(), sandbox.clone(), data.clone(), &adjust, true).await);
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
        app._data.clone(),
        adjust,
        true,
    )
    .await
}

/// The settings every test starts from. The sandbox gets a unique key per test: the Redis
/// token key is namespaced by it, so tests never share a token.
pub async fn test_settings(adjust_sandbox: impl FnOnce(&mut SandboxConfig)) -> (Settings, Sandbox, TestData) {
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
    let data = match postgres_url() {
        Some(admin_url) => TestData::Postgres(TestDatabase::create(&admin_url).await),
        None => TestData::Sqlite(tempfile::tempdir().unwrap()),
    };
    let database_url = match &data {
        TestData::Postgres(database) => database.url().to_owned(),
        TestData::Sqlite(dir) => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
    };
    let mut settings = certification_testkit::test_settings(
        &database_url,
        &sandbox.base_url(),
        &sandbox_config.imp_key,
        &sandbox_config.imp_secret,
    );
    settings.redis = redis_url().as_deref().map(redis_settings);
    (settings, sandbox, data)
}

/// Like [`spawn_app`] but as production runs: without `Application::with_sandbox`, so the gRPC
/// port does not serve `certification.sandbox.v1.Sandbox`.
pub async fn spawn_app_without_sandbox_service() -> TestApp {
    let (settings, sandbox, data) = test_settings(|_| {}).await;
    spawn_app_serving(settings, sandbox.into(), data.into(), |_| {}, true, false).await
}

/// The server as `serve --sandbox` runs it: the Sandbox service registered over this test's own
/// sandbox.
pub async fn spawn_app_on(
    settings: Settings,
    sandbox: impl Into<Arc<Sandbox>>,
    data: impl Into<Arc<TestData>>,
    adjust: impl FnOnce(&mut Settings),
    wait_ready: bool,
) -> TestApp {
    spawn_app_serving(settings, sandbox.into(), data.into(), adjust, wait_ready, true).await
}

async fn spawn_app_serving(
    mut settings: Settings,
    sandbox: Arc<Sandbox>,
    data: Arc<TestData>,
    adjust: impl FnOnce(&mut Settings),
    wait_ready: bool,
    serve_sandbox: bool,
) -> TestApp {
    adjust(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut application = Application::build(settings.clone(), listener).await.unwrap();
    if serve_sandbox {
        application = application.with_sandbox(sandbox.handle());
    }
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
        _data: data,
        shutdown: Some(shutdown),
        server: Some(server),
    };
    if wait_ready {
        app.wait_for_health(SERVICE_NAME, ServingStatus::Serving).await;
    }
    app
}

impl TestApp {
    /// A client of `certification.sandbox.v1.Sandbox` on the server's address.
    pub fn sandbox_client(&self) -> SandboxClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy();
        SandboxClient::new(channel)
    }

    fn v1(&self) -> &PortoneClient {
        self.portone.as_ref().expect("this test's server has PortOne V1")
    }

    pub fn token_stats(&self) -> TokenCacheStats {
        self.v1().token_cache().stats()
    }

    pub fn token_cache_degraded(&self) -> bool {
        self.v1().token_cache().is_degraded()
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
