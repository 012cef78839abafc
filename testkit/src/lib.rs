//! What the integration tests, the benchmarks and the load generator share: free ports, waiting
//! for SERVING, the settings every test starts from, and servers of a test's own (Redis,
//! PostgreSQL) that it may kill and restart.

mod postgres;
mod redis_server;
mod settings;

use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;

pub use postgres::{PostgresServer, TestDatabase};
pub use redis_server::{RedisServer, RedisTls};
pub use settings::{TEST_AUDIT_KEY, TEST_INDEX_KEY, test_encryption_keys, test_settings};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Waits until the gRPC health at `address` (host:port) reports CertificationService SERVING
/// (migrations applied, database answering), checking every `poll`, for at most `limit`.
pub async fn wait_for_serving(address: &str, limit: Duration, poll: Duration) -> Result<(), String> {
    wait_for_health(
        address,
        certification_service::app::SERVICE_NAME,
        ServingStatus::Serving,
        limit,
        poll,
    )
    .await
}

/// Waits until the gRPC health at `address` (host:port) reports `service` as `wanted`, checking
/// every `poll`, for at most `limit`.
pub async fn wait_for_health(
    address: &str,
    service: &str,
    wanted: ServingStatus,
    limit: Duration,
    poll: Duration,
) -> Result<(), String> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .map_err(|error| format!("{address}: {error}"))?
        .connect_lazy();
    let mut health = HealthClient::new(channel);
    let give_up = Instant::now() + limit;
    loop {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        if let Ok(answer) = health.check(request).await
            && answer.into_inner().status() == wanted
        {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(format!("{address}: {service:?} not {wanted:?} within {limit:?}"));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Says that a test did not run what it is about, where a reader sees it: straight to the
/// process's stderr, which the test harness does not capture.
pub fn report_skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
