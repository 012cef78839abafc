//! `spawn_app()`: the real server on port 0 with its own sandbox and its own database (a fresh
//! SQLite file, or a fresh PostgreSQL database when DATABASE_URL points at PostgreSQL), and
//! Redis when REDIS_URL is set. Anything else through [`App`]: adjusted settings, replicas,
//! fleets, a server not yet ready or without the Sandbox service.

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
pub use certification_testkit::{TEST_AUDIT_KEY, TEST_INDEX_KEY, TestDatabase, test_encryption_keys};
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
fn redis_settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: Secret::new(url),
        timeout: Duration::from_millis(250),
        ca_file: None,
    }
}

/// How long a server may take to report a health status, and how often the tests ask.
pub const READY_WITHIN: Duration = Duration::from_secs(30);
pub const READY_POLL: Duration = Duration::from_millis(25);

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

/// The server with everything as the tests' settings have it, SERVING: `App::new().spawn()`.
pub async fn spawn_app() -> TestApp {
    App::new().spawn().await
}

/// What to start, and how: `App::new()` (or [`App::replica_of`], [`App::on`]), then options,
/// then [`App::spawn`] for one server or [`App::fleet`] for replicas.
///
/// ```ignore
/// let app = App::new().adjust(sessions_on).spawn().await;
/// let next = App::replica_of(&app).adjust(|settings| settings.keys = rotated).spawn().await;
/// let fleet = App::new().redis(&redis.url()).fleet(3).await;
/// ```
#[must_use = "an App starts nothing until spawned"]
pub struct App<'a> {
    /// What it runs on, for a replica or [`App::on`]; `None`: a sandbox and a database of its own.
    parts: Option<Box<Parts>>,
    adjust_sandbox: Option<Adjust<'a, SandboxConfig>>,
    adjust: Vec<Adjust<'a, Settings>>,
    start: Start,
}

type Adjust<'a, T> = Box<dyn FnOnce(&mut T) + 'a>;

/// The settings of a server and what it runs on.
#[derive(Clone)]
struct Parts {
    settings: Settings,
    sandbox: Arc<Sandbox>,
    data: Arc<TestData>,
}

/// How [`App`] starts each server once the settings are final.
struct Start {
    wait_ready: bool,
    serve_sandbox: bool,
}

impl Default for App<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> App<'a> {
    /// A server with a sandbox and a database of its own.
    pub fn new() -> Self {
        Self {
            parts: None,
            adjust_sandbox: None,
            adjust: Vec::new(),
            start: Start {
                wait_ready: true,
                serve_sandbox: true,
            },
        }
    }

    /// Another server on the same sandbox and database as `app`, starting from its settings (a
    /// rolling deployment with new keys, say).
    pub fn replica_of(app: &TestApp) -> Self {
        Self::with_parts(Parts {
            settings: app.settings.clone(),
            sandbox: app._sandbox.clone(),
            data: app._data.clone(),
        })
    }

    /// A server on parts from [`test_settings`] (settings that needed the sandbox's address, say).
    pub fn on(settings: Settings, sandbox: Sandbox, data: TestData) -> Self {
        Self::with_parts(Parts {
            settings,
            sandbox: Arc::new(sandbox),
            data: Arc::new(data),
        })
    }

    fn with_parts(parts: Parts) -> Self {
        Self {
            parts: Some(Box::new(parts)),
            ..Self::new()
        }
    }

    /// Changes the sandbox's configuration before it starts: only for a sandbox of its own.
    pub fn sandbox(mut self, adjust: impl FnOnce(&mut SandboxConfig) + 'a) -> Self {
        assert!(self.parts.is_none(), "only App::new() starts a sandbox");
        self.adjust_sandbox = Some(Box::new(adjust));
        self
    }

    /// Changes the settings before the server is built; adjustments apply in order.
    pub fn adjust(mut self, adjust: impl FnOnce(&mut Settings) + 'a) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    /// The Redis at `url` rather than the run's (REDIS_URL, or none).
    pub fn redis(self, url: &str) -> Self {
        let redis = redis_settings(url);
        self.adjust(move |settings| settings.redis = Some(redis))
    }

    /// Returns without waiting for SERVING.
    pub fn unready(mut self) -> Self {
        self.start.wait_ready = false;
        self
    }

    /// As production runs: without `Application::with_sandbox`, so the gRPC port does not serve
    /// `certification.sandbox.v1.Sandbox`.
    pub fn without_sandbox_service(mut self) -> Self {
        self.start.serve_sandbox = false;
        self
    }

    /// One server, SERVING (on the plain health port where there is one) unless
    /// [`App::unready`].
    pub async fn spawn(self) -> TestApp {
        let (parts, start) = self.finish().await;
        start.start(parts).await
    }

    /// `replicas` servers as production runs them, with the same settings: see [`Fleet`].
    pub async fn fleet(self, replicas: usize) -> Fleet {
        let (parts, start) = self.finish().await;
        let mut apps = Vec::with_capacity(replicas);
        for _ in 0..replicas {
            apps.push(start.start(parts.clone()).await);
        }
        Fleet {
            sandbox: parts.sandbox.handle(),
            replicas: apps,
        }
    }

    /// The settings, adjusted, and what they run on.
    async fn finish(self) -> (Parts, Start) {
        let mut parts = match self.parts {
            Some(parts) => *parts,
            None => {
                let adjust_sandbox = self.adjust_sandbox.unwrap_or_else(|| Box::new(|_| {}));
                let (settings, sandbox, data) = test_settings(adjust_sandbox).await;
                Parts {
                    settings,
                    sandbox: Arc::new(sandbox),
                    data: Arc::new(data),
                }
            }
        };
        for adjust in self.adjust {
            adjust(&mut parts.settings);
        }
        (parts, self.start)
    }
}

impl Start {
    async fn start(&self, parts: Parts) -> TestApp {
        let Parts {
            settings,
            sandbox,
            data,
        } = parts;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut application = Application::build(settings.clone(), listener).await.unwrap();
        if self.serve_sandbox {
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
        if self.wait_ready {
            app.wait_for_health(SERVICE_NAME, ServingStatus::Serving).await;
        }
        app
    }
}

/// What [`App::fleet`] starts: replicas sharing one PortOne (sandbox), one database, and one
/// Redis (or none).
pub struct Fleet {
    pub replicas: Vec<TestApp>,
    pub sandbox: SandboxHandle,
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
    // Tests share one Redis: each server (and its replicas) counts its callers' quotas apart.
    settings.quotas.namespace = format!("test-quota:{}", uuid::Uuid::new_v4().simple());
    // The load and race tests are one caller at rates past the per-minute defaults; the quota
    // tests (quotas.rs) set their own bounds.
    settings.quotas.defaults.sessions = 1_000_000_000;
    settings.quotas.defaults.lookups = 1_000_000_000;
    (settings, sandbox, data)
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

    /// Unlinks `account` (회원 탈퇴), which must succeed.
    pub async fn unlink(&self, account: &str) -> certification_service::grpc::proto::UnlinkResponse {
        self.client
            .clone()
            .unlink(certification_service::grpc::proto::UnlinkRequest {
                account_id: account.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
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
            .check_duplicate(CheckDuplicateRequest {
                key: Some(key),
                ..Default::default()
            })
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

    /// Waits until health reports `service` as `wanted`: on the plain health port where there is
    /// one (the gRPC port may want a client certificate), else on the gRPC port.
    pub async fn wait_for_health(&self, service: &str, wanted: ServingStatus) {
        let address = self.health_addr.unwrap_or(self.addr).to_string();
        certification_testkit::wait_for_health(&address, service, wanted, READY_WITHIN, READY_POLL)
            .await
            .unwrap();
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

/// `message` as the caller holding `token`.
pub fn as_caller<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).unwrap();
    request.metadata_mut().insert("authorization", value);
    request
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
