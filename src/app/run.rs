//! Serving: the gRPC server with health, reflection and authentication, the side ports, and
//! the shutdown choreography (NOT_SERVING, drain, bounded wait for calls in flight).

use std::sync::Arc;

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tonic_health::{ServingStatus, pb::health_server::HealthServer, server::HealthService};

use super::{
    Application, MAX_REQUEST_BYTES, SERVICE_NAME,
    background::{spawn_deletions, spawn_purge, spawn_readiness},
};
use crate::{
    grpc::{
        Authenticator, known_methods,
        proto::{self, certification_service_server::CertificationServiceServer},
    },
    sandbox::{
        self,
        grpc::{SandboxGrpc, proto::sandbox_server::SandboxServer},
    },
    service::{CertificationEraser, Deleter},
    telemetry::metrics::{self, RpcMetricsLayer},
};

impl Application {
    /// Serves until `shutdown` resolves, then closes the database pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let with_sandbox = self.sandbox.is_some();
        let (reflection_v1, reflection_v1alpha) = if self.settings.server.grpc_reflection {
            // The same message-size limit as the service: reflection answers anyone who reaches
            // the port, and a megabyte request is no reason to buffer one.
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
        let mutual_tls = self.settings.server.mutual_tls();
        match &self.settings.server.caller_tokens {
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
        let authenticator = Authenticator::new(self.settings.server.caller_tokens.clone(), mutual_tls);
        let sandbox_service = self.sandbox.map(|handle| {
            tracing::warn!(
                "sandbox mode: serving {} on the gRPC port",
                sandbox::grpc::SERVICE
            );
            InterceptedService::new(
                SandboxServer::new(SandboxGrpc::new(handle)).max_decoding_message_size(MAX_REQUEST_BYTES),
                authenticator.clone(),
            )
        });

        let (stop_readiness, stopped) = watch::channel(false);
        let readiness = spawn_readiness(
            self.store.clone(),
            self.health.clone(),
            self.grpc.ready_flag(),
            self.settings.store.migrate_on_start,
            self.settings.store.readiness_interval,
            stopped,
        );
        let purging = self.settings.maintenance.purge_interval.map(|interval| {
            spawn_purge(
                self.store.clone(),
                interval,
                self.settings.maintenance.certification_retention,
                self.settings.policy.rejoin_cooldown,
                stop_readiness.subscribe(),
            )
        });
        let deleting = self
            .settings
            .policy
            .delete_after
            .filter(|_| self.settings.portone.enabled)
            .map(|_| {
                let eraser: Arc<dyn CertificationEraser> = Arc::new(self.portone.clone());
                spawn_deletions(
                    Deleter::new(self.store.clone(), eraser),
                    self.grpc.ready_flag(),
                    stop_readiness.subscribe(),
                )
            });
        // Scrapes keep working through the drain; the listener stops with the server.
        let (stop_metrics, metrics_stopped) = watch::channel(false);
        let metrics = self.metrics_listener.map(|listener| {
            let mut stopped = metrics_stopped;
            let store = self.store.clone();
            tokio::spawn(metrics::serve(
                listener,
                Arc::new(move || store.pool_usage()),
                async move {
                    let _ = stopped.changed().await;
                },
            ))
        });
        let (stop_plain_health, plain_health_stopped) = watch::channel(false);
        let plain_health = self.health_listener.map(|listener| {
            let service = HealthServer::new(HealthService::from_health_reporter(self.health.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES);
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
        let drain = self.settings.server.shutdown.clone();
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

        let connections = &self.settings.server.connections;
        let mut server = Server::builder()
            .layer(RpcMetricsLayer::new(known_methods()))
            .max_connection_age(connections.max_connection_age)
            .http2_keepalive_interval(Some(connections.keepalive_interval))
            .http2_keepalive_timeout(Some(connections.keepalive_timeout))
            .max_concurrent_streams(connections.max_concurrent_streams);
        if let Some(tls) = &self.settings.server.tls {
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
            tls = self.settings.server.tls.is_some(),
            mutual_tls,
            plain_health = ?self.health_addr,
            metrics = ?self.metrics_addr,
            "serving gRPC"
        );
        let served = server
            .add_service(
                HealthServer::new(HealthService::from_health_reporter(self.health.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                CertificationServiceServer::new(self.grpc).max_decoding_message_size(MAX_REQUEST_BYTES),
                authenticator,
            ))
            .add_optional_service(sandbox_service)
            .serve_with_incoming_shutdown(accept_without_nagle(self.listener), shutdown);
        // tonic waits for calls in flight without a bound of its own: SHUTDOWN_TIMEOUT is it.
        let shutdown_timeout = self.settings.server.shutdown.timeout;
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
        if let Some(deleting) = deleting {
            let _ = deleting.await;
        }
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

/// Our services plus google.rpc's error details, so grpcurl prints an error's ErrorInfo and
/// BadRequest decoded instead of as raw bytes. The sandbox's service only when it is served:
/// reflection lists every service of every set it holds.
fn reflection_builder(with_sandbox: bool) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
    if with_sandbox {
        builder.register_encoded_file_descriptor_set(sandbox::grpc::proto::FILE_DESCRIPTOR_SET)
    } else {
        builder
    }
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
