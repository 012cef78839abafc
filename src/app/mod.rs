//! The server: wired from [`Settings`] on a listener it is handed (tests pass port 0)
//! ([`Application::build`]), then run until a shutdown future resolves (`run`), with its
//! background loops beside it (`background`).

mod background;
mod run;
mod tls;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    access::Method,
    config::Settings,
    domain::Provider,
    grpc::CertificationGrpc,
    portone::{
        v1::{PortoneClient, TokenCache},
        v2::PortoneV2Client,
    },
    quota::{Counters, Quotas},
    service::{BrowserSetup, IdentityService, Providers},
    store::Store,
};

use crate::grpc::MAX_REQUEST_BYTES;

/// The fully qualified name health reports readiness under.
pub const SERVICE_NAME: &str = crate::grpc::SERVICE;

/// The server, bound and wired, not yet serving.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The plain-text health port, when configured.
    health_listener: Option<TcpListener>,
    health_addr: Option<SocketAddr>,
    metrics_listener: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    store: Store,
    /// PortOne V1's client, where V1 is configured: the deletions at PortOne use it too.
    portone: Option<PortoneClient>,
    grpc: CertificationGrpc,
    health: HealthReporter,
    settings: Settings,
    /// Set in sandbox mode only: then the gRPC port also serves `certification.sandbox.v1.Sandbox`.
    #[cfg(feature = "sandbox")]
    sandbox: Option<crate::sandbox::SandboxHandle>,
    /// Set by readiness once migrations are applied and the database answers; calls wait for it.
    ready: Arc<AtomicBool>,
    /// The gRPC port's TLS when configured, and what it was loaded from (for the reloads).
    tls: Option<(tls::ServerTls, tls::Loaded)>,
}

/// rustls needs one process-wide crypto provider; ring is the only one compiled in.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Application {
    /// Wires the server on `listener`. The process's rustls crypto provider must be installed
    /// first ([`install_crypto_provider`]).
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        // Fail closed: no caller authentication only when asked for in so many words.
        anyhow::ensure!(
            settings.server.authentication_decided(),
            "no caller authentication: set CALLER_TOKENS (or CALLER_TOKENS_FILE) or TLS_CLIENT_CA_FILE, or ALLOW_UNAUTHENTICATED=true to let anyone who reaches the port call"
        );
        anyhow::ensure!(
            settings.server.permissions_decided(),
            "{}",
            crate::config::ConfigError::PermissionsUndecided
        );
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let tls = match &settings.server.tls {
            Some(tls) => Some(
                tls::ServerTls::load(tls)
                    .await
                    .context("TLS_CERT_FILE / TLS_KEY_FILE / TLS_CLIENT_CA_FILE do not load")?,
            ),
            None => None,
        };
        let (health_listener, health_addr) =
            bind_optional(settings.server.health_listen_addr, "HEALTH_LISTEN_ADDR").await?;
        let (metrics_listener, metrics_addr) =
            bind_optional(settings.server.metrics_listen_addr, "METRICS_LISTEN_ADDR").await?;
        crate::telemetry::metrics::handle();
        let store = Store::recording(
            &settings.store,
            settings.keys.audit_key.clone(),
            settings.maintenance.audit_head_interval,
        )
        .await
        .context("preparing the database pool")?;
        // One connection (multiplexed) for the token cache and the quota counters.
        let redis = match &settings.redis {
            Some(redis) => Some((
                redis_connection(redis.url.expose(), redis.ca_file.as_deref(), redis.timeout)?,
                redis.timeout,
            )),
            None => None,
        };
        let (providers, portone, browser) = providers(&settings, redis.clone())?;
        // Counted where the token is shared: in Redis for the fleet, else in this process.
        let counters = match redis {
            Some((connection, timeout)) => Counters::redis(connection, timeout),
            None => Counters::in_process(),
        };
        let service = IdentityService::new(
            providers,
            store.clone(),
            settings.keys.ci_index_key.clone(),
            settings.keys.sealing_keys.clone(),
            settings.policy.clone(),
            Quotas::new(settings.quotas.clone(), counters),
            settings.keys.audit_key.clone(),
        )
        .with_browser(browser);
        let health = HealthReporter::new();
        // tonic-health starts "" as SERVING; nothing is ready until the database answers.
        health.set_service_status("", ServingStatus::NotServing).await;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        Ok(Self {
            listener,
            local_addr,
            health_listener,
            health_addr,
            metrics_listener,
            metrics_addr,
            store,
            portone,
            grpc: CertificationGrpc::new(
                Arc::new(service),
                settings.server.caller_permissions.clone().map(Arc::new),
            ),
            health,
            settings,
            #[cfg(feature = "sandbox")]
            sandbox: None,
            ready: Arc::new(AtomicBool::new(false)),
            tls,
        })
    }

    /// Sandbox mode: serve `certification.sandbox.v1.Sandbox` over this sandbox, behind the same
    /// authentication as CertificationService, and list it in reflection.
    #[cfg(feature = "sandbox")]
    pub fn with_sandbox(self, handle: crate::sandbox::SandboxHandle) -> Self {
        Self {
            sandbox: Some(handle),
            ..self
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served, when METRICS_LISTEN_ADDR is not `off`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The plain-text health address, when HEALTH_LISTEN_ADDR is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The PortOne V1 client, where V1 is configured: for its token cache's counters.
    pub fn portone(&self) -> Option<PortoneClient> {
        self.portone.clone()
    }
}

/// The identity providers configured, the PortOne V1 client among them, and what V2 hands the
/// browser.
fn providers(
    settings: &Settings,
    redis: Option<(redis::aio::ConnectionManager, Duration)>,
) -> anyhow::Result<(Providers, Option<PortoneClient>, BrowserSetup)> {
    let mut providers = Providers::default();
    let portone = match &settings.portone_v1 {
        Some(v1) => {
            let tokens = match redis {
                Some((connection, timeout)) => {
                    TokenCache::redis(connection, &v1.imp_key, v1.imp_secret.expose(), timeout)
                }
                None => TokenCache::in_process(),
            };
            let client = PortoneClient::new(v1.clone(), tokens).context("building the PortOne client")?;
            providers = providers.with(Provider::PortoneV1, Arc::new(client.clone()));
            Some(client)
        }
        None => None,
    };
    let mut browser = BrowserSetup::default();
    if let Some(v2) = &settings.portone_v2 {
        let client = PortoneV2Client::new(v2.clone()).context("building the PortOne V2 client")?;
        providers = providers.with(Provider::PortoneV2, Arc::new(client));
        browser = BrowserSetup {
            store_id: v2.store_id.clone(),
            channel_key: v2.channel_key.clone(),
        };
    }
    Ok((providers, portone, browser))
}

/// Every service and method served on the gRPC port, for bounded metric labels.
fn known_methods() -> Vec<(&'static str, Vec<&'static str>)> {
    #[cfg_attr(not(feature = "sandbox"), allow(unused_mut))]
    let mut known = vec![
        (
            crate::grpc::SERVICE,
            Method::ALL.iter().map(|method| method.as_str()).collect(),
        ),
        ("grpc.health.v1.Health", vec!["Check", "Watch"]),
        (
            "grpc.reflection.v1.ServerReflection",
            vec!["ServerReflectionInfo"],
        ),
        (
            "grpc.reflection.v1alpha.ServerReflection",
            vec!["ServerReflectionInfo"],
        ),
    ];
    // Served only in sandbox mode; listed in every build that has it, since the list is fixed
    // at build time.
    #[cfg(feature = "sandbox")]
    known.push((crate::sandbox::grpc::SERVICE, vec!["Certify"]));
    known
}

/// Binds an optional side port (health, metrics) and reads back the address it got.
async fn bind_optional(
    address: Option<SocketAddr>,
    variable: &str,
) -> anyhow::Result<(Option<TcpListener>, Option<SocketAddr>)> {
    let Some(address) = address else {
        return Ok((None, None));
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {variable} {address}"))?;
    let bound = listener.local_addr().context("reading a bound address")?;
    Ok((Some(listener), Some(bound)))
}

/// A lazy, self-reconnecting Redis connection with bounded timeouts: a slow or absent Redis
/// costs a request at most these, then the in-process cache answers.
fn redis_connection(
    url: &str,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = match ca_file {
        Some(path) => {
            let root_cert =
                std::fs::read(path).with_context(|| format!("reading REDIS_CA_FILE {}", path.display()))?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            redis::Client::build_with_tls(url, certificates)
        }
        None => redis::Client::open(url),
    }
    .context("REDIS_URL is not a valid redis:// or rediss:// URL (or REDIS_CA_FILE is not a PEM CA)")?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
        .context("preparing the Redis connection")
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::known_methods;

    #[cfg(feature = "sandbox")]
    #[test]
    fn the_sandbox_service_is_known_with_every_rpc_of_its_proto() {
        let descriptors =
            FileDescriptorSet::decode(crate::sandbox::grpc::proto::FILE_DESCRIPTOR_SET).unwrap();
        let in_proto: Vec<(String, Vec<String>)> = descriptors
            .file
            .iter()
            .flat_map(|file| {
                file.service.iter().map(|service| {
                    (
                        format!("{}.{}", file.package(), service.name()),
                        service
                            .method
                            .iter()
                            .map(|method| method.name().to_owned())
                            .collect(),
                    )
                })
            })
            .collect();
        let known: Vec<(String, Vec<String>)> = known_methods()
            .into_iter()
            .filter(|(service, _)| service.starts_with("certification.sandbox."))
            .map(|(service, methods)| {
                (
                    service.to_owned(),
                    methods.into_iter().map(str::to_owned).collect(),
                )
            })
            .collect();
        assert_eq!(in_proto, known);
    }
}
