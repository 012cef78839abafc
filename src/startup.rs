//! Builds the server on a listener it is handed (tests pass port 0) and runs it until a
//! shutdown future resolves; `serve` and `migrate` wire the binary to it.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};

use crate::{
    config::{DatabaseArgs, HealthArgs, PurgeArgs, RekeyArgs, ServeArgs, Settings},
    domain::SealingKeys,
    grpc::{
        Authenticator, CertificationGrpc,
        proto::{self, certification_service_server::CertificationServiceServer},
    },
    portone::{PortoneClient, TokenCache},
    sandbox::{Sandbox, SandboxConfig},
    service::IdentityService,
    store::Store,
};

/// The fully qualified name health reports readiness under.
pub const SERVICE_NAME: &str = "certification.v1.CertificationService";

/// Requests are a few short strings; anything near this is hostile.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

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
    portone: PortoneClient,
    grpc: CertificationGrpc,
    health: HealthReporter,
    settings: Settings,
}

/// rustls needs one process-wide crypto provider; ring is the only one compiled in.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Application {
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        install_crypto_provider();
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let (health_listener, health_addr) =
            bind_optional(settings.health_listen_addr, "HEALTH_LISTEN_ADDR").await?;
        let (metrics_listener, metrics_addr) =
            bind_optional(settings.metrics_listen_addr, "METRICS_LISTEN_ADDR").await?;
        crate::telemetry::metrics::handle();
        let store = Store::connect(&settings.store)
            .await
            .context("preparing the database pool")?;
        let tokens = match &settings.redis_url {
            Some(url) => TokenCache::redis(
                redis_connection(
                    url.expose(),
                    settings.redis_ca_file.as_deref(),
                    settings.redis_timeout,
                )?,
                &settings.portone.imp_key,
                settings.redis_timeout,
            ),
            None => TokenCache::in_process(),
        };
        let portone =
            PortoneClient::new(settings.portone.clone(), tokens).context("building the PortOne client")?;
        let service = IdentityService::new(
            Arc::new(portone.clone()),
            store.clone(),
            settings.ci_index_key.clone(),
            settings.sealing_keys.clone(),
            settings.policy.clone(),
        );
        let grpc = CertificationGrpc::new(
            Arc::new(service),
            settings.request_timeout,
            settings.max_in_flight,
        );

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
            grpc,
            health,
            settings,
        })
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

    /// The PortOne client, for its token cache's counters.
    pub fn portone(&self) -> PortoneClient {
        self.portone.clone()
    }

    /// Serves until `shutdown` resolves, then closes the database pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let (reflection_v1, reflection_v1alpha) = if self.settings.grpc_reflection {
            let v1 = reflection_builder()
                .build_v1()
                .context("building reflection v1")?;
            // grpcurl 1.8, Postman and grpcui still speak only v1alpha.
            let v1alpha = reflection_builder()
                .build_v1alpha()
                .context("building reflection v1alpha")?;
            (Some(v1), Some(v1alpha))
        } else {
            (None, None)
        };
        match &self.settings.caller_tokens {
            Some(tokens) => tracing::info!(
                callers = %tokens.names().collect::<Vec<_>>().join(","),
                "caller authentication on"
            ),
            None => tracing::warn!(
                "CALLER_TOKENS is not set: any client that reaches the port may call CertificationService"
            ),
        }
        let mutual_tls = self
            .settings
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_pem.is_some());
        let authenticator = Authenticator::new(self.settings.caller_tokens.clone(), mutual_tls);

        let (stop_readiness, stopped) = watch::channel(false);
        let readiness = spawn_readiness(
            self.store.clone(),
            self.health.clone(),
            self.grpc.ready_flag(),
            self.settings.migrate_on_start,
            self.settings.readiness_interval,
            stopped,
        );
        let purging = self.settings.purge_interval.map(|interval| {
            spawn_purge(
                self.store.clone(),
                interval,
                self.settings.certification_retention,
                self.settings.policy.rejoin_cooldown,
                stop_readiness.subscribe(),
            )
        });
        // Scrapes keep working through the drain; the listener stops with the server.
        let (stop_metrics, metrics_stopped) = watch::channel(false);
        let metrics = self.metrics_listener.map(|listener| {
            let mut stopped = metrics_stopped;
            tokio::spawn(crate::telemetry::metrics::serve(
                listener,
                self.store.clone(),
                async move {
                    let _ = stopped.changed().await;
                },
            ))
        });
        let (stop_plain_health, plain_health_stopped) = watch::channel(false);
        let plain_health = self.health_listener.map(|listener| {
            let service = HealthServer::new(HealthService::from_health_reporter(self.health.clone()));
            let mut stopped = plain_health_stopped;
            tokio::spawn(
                Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(accept_without_nagle(listener), async move {
                        let _ = stopped.changed().await;
                    }),
            )
        });
        let health = self.health.clone();
        let drain = self.settings.shutdown.clone();
        let stopping = Arc::new(tokio::sync::Notify::new());
        let stopping_signal = Arc::clone(&stopping);
        // SIGTERM -> NOT_SERVING at once -> keep serving for the drain delay (endpoints leave
        // the Service asynchronously) -> stop accepting and let calls in flight finish.
        let shutdown = async move {
            shutdown.await;
            tracing::info!(
                drain_delay_ms = drain.drain_delay.as_millis() as u64,
                "shutdown requested; health NOT_SERVING, draining"
            );
            health.set_service_status("", ServingStatus::NotServing).await;
            health
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
            tokio::time::sleep(drain.drain_delay).await;
            tracing::info!("drain over; no new connections, finishing calls in flight");
            let _ = stop_plain_health.send(true);
            stopping_signal.notify_one();
        };

        let connections = &self.settings.connections;
        let mut server = Server::builder()
            .layer(crate::telemetry::metrics::RpcMetricsLayer)
            .max_connection_age(connections.max_connection_age)
            .http2_keepalive_interval(Some(connections.keepalive_interval))
            .http2_keepalive_timeout(Some(connections.keepalive_timeout))
            .max_concurrent_streams(connections.max_concurrent_streams);
        if let Some(tls) = &self.settings.tls {
            let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
            if let Some(client_ca) = &tls.client_ca_pem {
                config = config.client_ca_root(Certificate::from_pem(client_ca));
            }
            server = server
                .tls_config(config)
                .context("TLS_CERT_FILE / TLS_KEY_FILE / TLS_CLIENT_CA_FILE are not usable PEM")?;
        }
        tracing::info!(
            address = %self.local_addr,
            tls = self.settings.tls.is_some(),
            mutual_tls,
            plain_health = ?self.health_addr,
            metrics = ?self.metrics_addr,
            "serving gRPC"
        );
        let served = server
            .add_service(HealthServer::new(HealthService::from_health_reporter(
                self.health.clone(),
            )))
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                CertificationServiceServer::new(self.grpc).max_decoding_message_size(MAX_REQUEST_BYTES),
                authenticator,
            ))
            .serve_with_incoming_shutdown(accept_without_nagle(self.listener), shutdown);
        // tonic waits for calls in flight without a bound of its own: SHUTDOWN_TIMEOUT is it.
        let shutdown_timeout = self.settings.shutdown.timeout;
        let served = tokio::select! {
            served = served => served,
            () = async {
                stopping.notified().await;
                tokio::time::sleep(shutdown_timeout).await;
            } => {
                tracing::warn!(
                    timeout_ms = shutdown_timeout.as_millis() as u64,
                    "calls still in flight at SHUTDOWN_TIMEOUT; stopping anyway"
                );
                Ok(())
            }
        };
        let _ = stop_readiness.send(true);
        let _ = readiness.await;
        if let Some(purging) = purging {
            let _ = purging.await;
        }
        let _ = stop_metrics.send(true);
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(plain_health) = plain_health {
            let _ = plain_health.await;
        }
        self.store.close().await;
        served.context("gRPC server failed")
    }
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

/// Our services plus google.rpc's error details, so grpcurl prints an error's ErrorInfo and
/// BadRequest decoded instead of as raw bytes.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// PURGE_INTERVAL: `purge` in the background. Every replica may run it; the deletes are
/// idempotent, so several at once only repeat work.
fn spawn_purge(
    store: Store,
    interval: Duration,
    retention: Duration,
    rejoin_cooldown: Duration,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = crate::maintenance::purge(&store, retention, rejoin_cooldown).await {
                tracing::warn!(%error, "background purge failed; retrying at the next interval");
            }
        }
    })
}

/// Applies migrations (when asked) once the database answers, then keeps the named service's
/// health in step with the database. "" turns SERVING once and stays: it answers "is the
/// process alive", the named service "can it serve now".
fn spawn_readiness(
    store: Store,
    health: HealthReporter,
    accepting: Arc<AtomicBool>,
    migrate: bool,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut migrated = !migrate;
        let mut ready = false;
        loop {
            if !migrated {
                match store.migrate().await {
                    Ok(()) => {
                        tracing::info!("database migrations applied");
                        migrated = true;
                    }
                    Err(error) => tracing::warn!(%error, "migrations not applied yet"),
                }
            }
            let now_ready = migrated && store.ping().await.is_ok();
            if now_ready != ready {
                let status = if now_ready {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                if now_ready {
                    accepting.store(true, Ordering::Release);
                    tracing::info!("database answers; serving");
                    health.set_service_status("", ServingStatus::Serving).await;
                } else {
                    tracing::warn!("database unreachable; reporting NOT_SERVING");
                }
                health.set_service_status(SERVICE_NAME, status).await;
                ready = now_ready;
            }
            // Retry quickly until first ready, then poll at the configured pace.
            let pause = if ready {
                interval
            } else {
                interval.min(Duration::from_millis(250))
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}

/// tonic's own `tcp_nodelay` does not apply to `serve_with_incoming`; without it a small answer
/// can sit ~40 ms waiting for the client's delayed ACK.
fn accept_without_nagle(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            // Only latency is at stake: a socket that refuses the option still serves.
            let _ = stream.set_nodelay(true);
        })
    })
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

/// `serve`: the sandbox first when asked, then settings, listener and server until a signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    install_crypto_provider();
    let sandbox = if args.sandbox {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the sandbox")?;
        let sandbox = Sandbox::start(listener, SandboxConfig::default()).await?;
        tracing::warn!(
            portone_base_url = %sandbox.base_url(),
            "--sandbox: answering with the built-in PortOne sandbox; development only"
        );
        Some(sandbox)
    } else {
        None
    };
    let settings = args.into_settings(sandbox.as_ref().map(Sandbox::base_url))?;
    let listener = TcpListener::bind(settings.grpc_listen_addr)
        .await
        .with_context(|| format!("binding {}", settings.grpc_listen_addr))?;
    let application = Application::build(settings, listener).await?;
    application.run_until_stopped(shutdown_signal()).await
}

/// `migrate`: apply pending migrations and exit.
pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    install_crypto_provider();
    let store = Store::connect(&args.store_settings()).await?;
    store.migrate().await.context("applying migrations")?;
    tracing::info!("migrations applied");
    store.close().await;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// `rekey`: re-encrypt stored CI/DI under the first CI_ENCRYPTION_KEYS key.
pub async fn rekey(args: RekeyArgs) -> anyhow::Result<()> {
    install_crypto_provider();
    let keys = SealingKeys::parse(&args.ci_encryption_keys)?;
    let store = Store::connect(&args.database.store_settings()).await?;
    let report = crate::maintenance::rekey(&store, &keys, args.batch_size).await;
    store.close().await;
    let report = report?;
    tracing::info!(
        resealed = report.resealed,
        raced = report.raced,
        key_id = keys.primary_id(),
        "rekey finished: every row is sealed under the first key"
    );
    Ok(())
}

/// `purge`: delete what is past retention.
pub async fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    install_crypto_provider();
    let store = Store::connect(&args.database.store_settings()).await?;
    let purged = crate::maintenance::purge(
        &store,
        args.retention.certification_retention,
        args.retention.rejoin_cooldown,
    )
    .await;
    store.close().await;
    purged?;
    Ok(())
}

/// `health`: one gRPC health check; Ok only when the answer is SERVING.
pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", args.addr))
        .context("--addr must be host:port")?
        .connect_timeout(args.timeout)
        .timeout(args.timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.addr))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .with_context(|| format!("health check of {:?}", args.service))?
        .into_inner();
    let status = answer.status();
    println!("{:?}: {}", args.service, status.as_str_name());
    anyhow::ensure!(
        status == tonic_health::pb::health_check_response::ServingStatus::Serving,
        "not serving"
    );
    Ok(())
}
