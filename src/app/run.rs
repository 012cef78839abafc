//! Serving: the gRPC server with health, reflection, authentication and the call layers, the
//! side ports, the background loops, and the shutdown choreography (NOT_SERVING, drain, bounded
//! wait for calls in flight).

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinHandle,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Server, server::Router},
};
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};
use tower::{
    ServiceBuilder,
    layer::util::{Identity as NoLayer, Stack},
};

use super::{
    Application, MAX_REQUEST_BYTES, SERVICE_NAME,
    background::{spawn_deletions, spawn_purge, spawn_readiness},
};
use crate::{
    config::{ServerSettings, ShutdownSettings},
    grpc::{
        Admission, Authenticator, CallSpanLayer, CertificationGrpc, DeadlineLayer, GateLayer, Permission,
        Readiness,
        proto::{self, certification_service_server::CertificationServiceServer},
    },
    service::{CertificationEraser, Deleter},
    telemetry::metrics::{self, RpcMetricsLayer},
};

impl Application {
    /// Serves until `shutdown` resolves, then stops the loops beside it and closes the database
    /// pool.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let background = self.spawn_background(&stopped);
        let side_ports = self.serve_side_ports(&stopped);
        let server = self.server_builder()?;
        let Application {
            listener,
            store,
            grpc,
            health,
            settings,
            #[cfg(feature = "sandbox")]
            sandbox,
            ready,
            tls,
            ..
        } = self;
        let stopping = Arc::new(Notify::new());
        let shutdown = drain_on(
            shutdown,
            health.clone(),
            settings.server.shutdown.clone(),
            side_ports.plain_health_stop,
            Arc::clone(&stopping),
        );
        let router = add_services(
            server,
            &settings.server,
            health,
            grpc,
            #[cfg(feature = "sandbox")]
            sandbox,
            ready,
        )?;
        let timeout = settings.server.shutdown.timeout;
        let served = match tls {
            Some((tls, _)) => {
                let incoming = tls.accept(listener);
                bounded(
                    router.serve_with_incoming_shutdown(incoming, shutdown),
                    &stopping,
                    timeout,
                )
                .await
            }
            None => {
                let incoming = accept_without_nagle(listener);
                bounded(
                    router.serve_with_incoming_shutdown(incoming, shutdown),
                    &stopping,
                    timeout,
                )
                .await
            }
        };
        let _ = stop.send(true);
        for task in background.into_iter().chain(side_ports.tasks) {
            let _ = task.await;
        }
        store.close().await;
        served
    }

    /// The connection settings and the metrics layer every service shares. TLS is not tonic's:
    /// the listener's connections arrive handshaken (`tls`), so certificates can be reloaded.
    fn server_builder(&self) -> anyhow::Result<Server<Stack<RpcMetricsLayer, NoLayer>>> {
        let server_settings = &self.settings.server;
        let connections = &server_settings.connections;
        let server = Server::builder()
            .max_connection_age(connections.max_connection_age)
            .http2_keepalive_interval(Some(connections.keepalive_interval))
            .http2_keepalive_timeout(Some(connections.keepalive_timeout))
            .max_concurrent_streams(connections.max_concurrent_streams);
        tracing::info!(
            address = %self.local_addr,
            tls = server_settings.tls.is_some(),
            mutual_tls = server_settings.mutual_tls(),
            plain_health = ?self.health_addr,
            metrics = ?self.metrics_addr,
            "serving gRPC"
        );
        Ok(server.layer(RpcMetricsLayer::new(super::known_methods())))
    }

    /// Readiness always; the purge and the deletions at PortOne where configured.
    fn spawn_background(&self, stopped: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let store = &self.store;
        let mut tasks = vec![spawn_readiness(
            store.clone(),
            self.health.clone(),
            Arc::clone(&self.ready),
            self.settings.store.migrate_on_start,
            self.settings.store.readiness_interval,
            stopped.clone(),
        )];
        if let Some(interval) = self.settings.maintenance.purge_interval {
            tasks.push(spawn_purge(
                store.clone(),
                interval,
                (
                    &self.settings.maintenance,
                    self.settings.policy.rejoin_cooldown,
                    self.settings.keys.audit_key.clone(),
                ),
                stopped.clone(),
            ));
        }
        if let Some((tls, loaded)) = &self.tls {
            tasks.push(tls.clone().spawn_reload(*loaded, stopped.clone()));
        }
        // PORTONE_DELETE_AFTER is set only where V1 is configured (config).
        if let (Some(_), Some(portone)) = (self.settings.policy.delete_after, &self.portone) {
            let eraser: Arc<dyn CertificationEraser> = Arc::new(portone.clone());
            tasks.push(spawn_deletions(
                Deleter::new(store.clone(), eraser),
                Arc::clone(&self.ready),
                stopped.clone(),
            ));
        }
        tasks
    }

    /// `/metrics` and the plain-text health port, when configured. Scrapes keep working
    /// through the drain: metrics stop with the server, plain health when the drain ends.
    fn serve_side_ports(&mut self, stopped: &watch::Receiver<bool>) -> SidePorts {
        let mut tasks = Vec::new();
        if let Some(listener) = self.metrics_listener.take() {
            let mut stopped = stopped.clone();
            let store = self.store.clone();
            tasks.push(tokio::spawn(metrics::serve(
                listener,
                Arc::new(move || store.pool_usage()),
                async move {
                    let _ = stopped.changed().await;
                },
            )));
        }
        let (plain_health_stop, mut plain_health_stopped) = watch::channel(false);
        if let Some(listener) = self.health_listener.take() {
            let service = HealthServer::new(HealthService::from_health_reporter(self.health.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES);
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(accept_without_nagle(listener), async move {
                    let _ = plain_health_stopped.changed().await;
                });
            tasks.push(tokio::spawn(async move {
                if let Err(error) = served.await {
                    tracing::warn!(%error, "plain-text health port failed");
                }
            }));
        }
        SidePorts {
            tasks,
            plain_health_stop,
        }
    }
}

struct SidePorts {
    tasks: Vec<JoinHandle<()>>,
    /// Ends the plain-text health port when the drain ends.
    plain_health_stop: watch::Sender<bool>,
}

/// The server until it stops; past SHUTDOWN_TIMEOUT after the drain began, calls still in
/// flight are abandoned (tonic's own wait has no bound).
async fn bounded<E: std::error::Error + Send + Sync + 'static>(
    served: impl Future<Output = Result<(), E>>,
    stopping: &Notify,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        served = served => served.context("gRPC server failed"),
        () = async {
            stopping.notified().await;
            tokio::time::sleep(timeout).await;
        } => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "calls still in flight at SHUTDOWN_TIMEOUT; stopping anyway"
            );
            Ok(())
        }
    }
}

/// SIGTERM → NOT_SERVING at once → keep serving for the drain delay (endpoints leave the
/// Service asynchronously) → stop accepting and let calls in flight finish.
async fn drain_on(
    shutdown: impl Future<Output = ()> + Send,
    health: HealthReporter,
    drain: ShutdownSettings,
    plain_health_stop: watch::Sender<bool>,
    stopping: Arc<Notify>,
) {
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
    let _ = plain_health_stop.send(true);
    stopping.notify_one();
}

/// Health, reflection, CertificationService behind authentication and the call layers, and in
/// sandbox mode the sandbox's service behind the same authentication.
fn add_services<L>(
    mut server: Server<L>,
    settings: &ServerSettings,
    health: HealthReporter,
    grpc: CertificationGrpc,
    #[cfg(feature = "sandbox")] sandbox: Option<crate::sandbox::SandboxHandle>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<Router<L>>
where
    L: Clone,
{
    let authenticator = authenticator(settings);
    let permissions = settings.caller_permissions.clone().map(Arc::new);
    let certification = ServiceBuilder::new()
        .layer(CallSpanLayer)
        .layer(GateLayer::new(Permission::new(permissions.clone())))
        .layer(GateLayer::new(Admission::new(
            settings.max_in_flight,
            settings.known_callers(),
        )))
        .layer(DeadlineLayer::new(settings.request_timeout))
        .layer(GateLayer::new(Readiness::new(ready)))
        .service(CertificationServiceServer::new(grpc).max_decoding_message_size(MAX_REQUEST_BYTES));
    #[cfg(feature = "sandbox")]
    let with_sandbox = sandbox.is_some();
    #[cfg(not(feature = "sandbox"))]
    let with_sandbox = false;
    #[cfg(feature = "sandbox")]
    let sandbox_service = sandbox.map(|handle| {
        use crate::{
            access::Rpc,
            sandbox::grpc::{SERVICE, SandboxGrpc, proto::sandbox_server::SandboxServer},
        };
        tracing::warn!("sandbox mode: serving {SERVICE} on the gRPC port");
        // It mints identities: a caller needs `Sandbox/Certify` in CALLER_PERMISSIONS.
        let guarded = ServiceBuilder::new()
            .layer(GateLayer::new(Permission::only(permissions, Rpc::SandboxCertify)))
            .service(
                SandboxServer::new(SandboxGrpc::new(handle)).max_decoding_message_size(MAX_REQUEST_BYTES),
            );
        InterceptedService::new(guarded, authenticator.clone())
    });
    let (reflection_v1, reflection_v1alpha) = if settings.grpc_reflection {
        // The same message-size limit as the service: reflection answers anyone who reaches the
        // port, and a megabyte request is no reason to buffer one.
        let v1 = reflection_builder(with_sandbox)
            .build_v1()
            .context("building reflection v1")?
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        // grpcurl 1.8, Postman and grpcui still speak only v1alpha.
        let v1alpha = reflection_builder(with_sandbox)
            .build_v1alpha()
            .context("building reflection v1alpha")?
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        (Some(v1), Some(v1alpha))
    } else {
        (None, None)
    };
    let router = server
        .add_service(
            HealthServer::new(HealthService::from_health_reporter(health))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(InterceptedService::new(certification, authenticator));
    #[cfg(feature = "sandbox")]
    let router = router.add_optional_service(sandbox_service);
    Ok(router)
}

/// CALLER_TOKENS and/or mTLS, logged once at start (the names, never the tokens).
fn authenticator(settings: &ServerSettings) -> Authenticator {
    let caller_san = settings
        .tls
        .as_ref()
        .filter(|tls| tls.client_ca_file.is_some())
        .map(|tls| tls.caller_san.clone());
    let mutual_tls = caller_san.is_some();
    match &settings.caller_tokens {
        Some(tokens) => tracing::info!(
            callers = %tokens.names().collect::<Vec<_>>().join(","),
            mutual_tls,
            "caller authentication on"
        ),
        None if mutual_tls => tracing::info!("caller authentication on: client certificates"),
        None => tracing::warn!(
            "ALLOW_UNAUTHENTICATED: any client that reaches the port may call CertificationService"
        ),
    }
    Authenticator::new(settings.caller_tokens.clone(), caller_san)
}

/// Our services plus google.rpc's error details, so grpcurl prints an error's ErrorInfo and
/// BadRequest decoded instead of as raw bytes. The sandbox's service only when it is served:
/// reflection lists every service of every set it holds.
fn reflection_builder(with_sandbox: bool) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
    #[cfg(feature = "sandbox")]
    if with_sandbox {
        return builder
            .register_encoded_file_descriptor_set(crate::sandbox::grpc::proto::FILE_DESCRIPTOR_SET);
    }
    #[cfg(not(feature = "sandbox"))]
    debug_assert!(!with_sandbox, "a build without the sandbox serves none");
    builder
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
