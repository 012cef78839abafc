//! Prometheus metrics: one process-wide recorder, served as text at `/metrics` on
//! METRICS_LISTEN_ADDR. Labels carry methods, codes, endpoints and outcomes, never an
//! identifier of a person, a token or a caller's secret.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use ::metrics::{counter, gauge, histogram};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::domain::VerificationPurpose;

pub(crate) const RPC_REQUESTS: &str = "certification_rpc_requests_total";
pub(crate) const RPC_DURATION: &str = "certification_rpc_duration_seconds";
pub(crate) const PORTONE_DURATION: &str = "certification_portone_request_duration_seconds";
pub(crate) const TOKEN_LOOKUPS: &str = "certification_token_cache_lookups_total";
pub(crate) const TOKEN_FETCHES: &str = "certification_token_fetches_total";
pub(crate) const TOKEN_DEGRADED: &str = "certification_token_cache_degraded";
pub(crate) const PORTONE_CIRCUIT: &str = "certification_portone_circuit_state";
pub(crate) const IN_FLIGHT: &str = "certification_rpc_in_flight";
pub(crate) const DB_POOL: &str = "certification_db_pool_connections";
pub(crate) const BUILD_INFO: &str = "certification_build_info";
pub(crate) const UPSTREAM_REJECTIONS: &str = "certification_portone_rejections_total";
pub(crate) const SESSIONS_BEGUN: &str = "certification_sessions_begun_total";
pub(crate) const SESSIONS_REDEEMED: &str = "certification_sessions_redeemed_total";
pub(crate) const SESSIONS_REFUSED: &str = "certification_sessions_refused_total";
pub(crate) const SESSIONS_EXPIRED: &str = "certification_sessions_expired_total";
pub(crate) const DELETIONS_PENDING: &str = "certification_deletions_pending";
pub(crate) const DELETIONS_DONE: &str = "certification_deletions_done_total";
pub(crate) const DELETIONS_FAILED: &str = "certification_deletions_failed_total";
pub(crate) const CALLER_LOOKUPS: &str = "certification_caller_lookups_total";
pub(crate) const CALLER_QUOTA_REFUSALS: &str = "certification_caller_quota_refusals_total";
pub(crate) const QUOTA_COUNTER_FAILURES: &str = "certification_quota_counter_failures_total";
pub(crate) const ACCESS_RECORDS_WRITTEN: &str = "certification_access_records_written_total";
pub(crate) const ACCESS_RECORDS_FAILED: &str = "certification_access_records_failed_total";
pub(crate) const ACCESS_CHAIN_HEAD: &str = "certification_access_chain_head";

/// Seconds, from a warm in-process call to PortOne's slowest answers.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (tests start many servers in one process; they share
/// it). `None` if another recorder was installed first.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("the bucket list is not empty");
            let handle = builder.install_recorder().ok()?;
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .as_ref()
}

/// (connections open, of which idle) of the database pool, read at each scrape.
pub(crate) type PoolUsage = Arc<dyn Fn() -> (u32, u32) + Send + Sync>;

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    pool_usage: PoolUsage,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = Router::new()
        .route("/metrics", get(render))
        .with_state(pool_usage);
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(%error, "metrics listener stopped");
    }
}

async fn render(State(pool_usage): State<PoolUsage>) -> impl IntoResponse {
    let (size, idle) = pool_usage();
    gauge!(DB_POOL, "state" => "idle").set(idle as f64);
    gauge!(DB_POOL, "state" => "in_use").set(size.saturating_sub(idle) as f64);
    let body = handle().map_or_else(String::new, |handle| {
        handle.run_upkeep();
        handle.render()
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// One PortOne HTTP attempt: `provider` `portone_v1` or `portone_v2`, `endpoint` `get_token`,
/// `certification` (V1) or `identity_verification` (V2).
pub(crate) fn record_portone_attempt(
    provider: &'static str,
    endpoint: &'static str,
    outcome: &'static str,
    started: Instant,
) {
    histogram!(PORTONE_DURATION, "provider" => provider, "endpoint" => endpoint, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

/// A token cache lookup: `level` is `in_process` or `redis`, `result` `hit`, `miss` or `error`.
pub(crate) fn record_token_lookup(level: &'static str, result: &'static str) {
    counter!(TOKEN_LOOKUPS, "level" => level, "result" => result).increment(1);
}

/// A permanent refusal from PortOne (HTTP 200 with an error code, 3xx, 4xx), by HTTP status.
pub(crate) fn record_upstream_rejection(status: u16) {
    counter!(UPSTREAM_REJECTIONS, "http_status" => status.to_string()).increment(1);
}

/// A verification session begun, by purpose.
pub(crate) fn session_begun(purpose: VerificationPurpose) {
    counter!(SESSIONS_BEGUN, "purpose" => purpose.as_str()).increment(1);
}

/// A session redeemed by its first certification (retries are not counted again); `bound`
/// says whether it bound an account.
pub(crate) fn session_redeemed(purpose: VerificationPurpose, bound: bool) {
    counter!(SESSIONS_REDEEMED, "purpose" => purpose.as_str(), "bound" => if bound { "true" } else { "false" })
        .increment(1);
}

/// A Verify a session refused, by the session's purpose (`unknown` when no session was found)
/// and the refusal's reason (SESSION_USED, SESSION_EXPIRED, IDENTITY_MISMATCH, ...).
pub(crate) fn session_refused(purpose: Option<VerificationPurpose>, reason: &'static str) {
    let purpose = purpose.map_or("unknown", VerificationPurpose::as_str);
    counter!(SESSIONS_REFUSED, "purpose" => purpose, "reason" => reason).increment(1);
}

/// Sessions that expired without being redeemed, counted when purged.
pub(crate) fn sessions_expired(purpose: VerificationPurpose, count: u64) {
    counter!(SESSIONS_EXPIRED, "purpose" => purpose.as_str()).increment(count);
}

/// Deletions at PortOne not finished yet (the shared outbox: every replica reports the same).
pub(crate) fn set_deletions_pending(count: u64) {
    gauge!(DELETIONS_PENDING).set(count as f64);
}

/// A deletion at PortOne finished: `outcome` `deleted` (200) or `absent` (404).
pub(crate) fn deletion_done(outcome: &'static str) {
    counter!(DELETIONS_DONE, "outcome" => outcome).increment(1);
}

/// A deletion attempt failed (`reason`: `unavailable`, `timeout`, `rejected`, …); `retrying`
/// false when it was given up.
pub(crate) fn deletion_failed(reason: &'static str, retrying: bool) {
    counter!(DELETIONS_FAILED, "reason" => reason, "retrying" => if retrying { "true" } else { "false" })
        .increment(1);
}

/// A PortOne look-up a caller's Verify or CheckDuplicate asked for (refused by its quota or
/// not). Caller names are the operator's (CALLER_TOKENS, certificate names from our CA): a
/// bounded set, and no person's data.
pub(crate) fn caller_lookup(caller: &str) {
    counter!(CALLER_LOOKUPS, "caller" => caller.to_owned()).increment(1);
}

/// A call refused for a caller's bound: `sessions`, `lookups`, `open` or `in_flight`.
pub(crate) fn caller_quota_refused(caller: &str, bound: &'static str) {
    counter!(CALLER_QUOTA_REFUSALS, "caller" => caller.to_owned(), "bound" => bound).increment(1);
}

/// A quota counter Redis did not answer in time: the call was let through uncounted.
pub(crate) fn quota_counter_unavailable() {
    counter!(QUOTA_COUNTER_FAILURES).increment(1);
}

/// Access records committed.
pub(crate) fn access_records_written(count: usize) {
    counter!(ACCESS_RECORDS_WRITTEN).increment(count as u64);
}

/// Access records that could not be written: their calls failed ACCESS_RECORD_UNAVAILABLE.
pub(crate) fn access_records_failed(count: usize) {
    counter!(ACCESS_RECORDS_FAILED).increment(count as u64);
}

/// The number of the last record of this process's chain, as last logged.
pub(crate) fn access_chain_head(seq: i64) {
    gauge!(ACCESS_CHAIN_HEAD).set(seq as f64);
}

pub(crate) fn record_token_fetch() {
    counter!(TOKEN_FETCHES).increment(1);
}

/// Calls admitted and not yet answered, against MAX_IN_FLIGHT.
pub(crate) fn call_admitted() {
    gauge!(IN_FLIGHT).increment(1.0);
}

pub(crate) fn call_finished() {
    gauge!(IN_FLIGHT).decrement(1.0);
}

/// 0 closed, 0.5 half-open, 1 open.
pub(crate) fn set_portone_circuit(state: f64) {
    gauge!(PORTONE_CIRCUIT).set(state);
}

pub(crate) fn set_token_cache_degraded(degraded: bool) {
    gauge!(TOKEN_DEGRADED).set(if degraded { 1.0 } else { 0.0 });
}

/// Services and their methods by name, as the gRPC layer lists them.
pub(crate) type KnownMethods = Arc<Vec<(&'static str, Vec<&'static str>)>>;

/// Counts and times every gRPC call by service, method and status code: one layer for every
/// service, so no handler repeats it and refusals before a handler (authentication) count too.
/// Only `known` services and methods become labels.
#[derive(Clone, Debug)]
pub(crate) struct RpcMetricsLayer {
    known: KnownMethods,
}

impl RpcMetricsLayer {
    pub(crate) fn new(known: Vec<(&'static str, Vec<&'static str>)>) -> Self {
        Self {
            known: Arc::new(known),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            known: Arc::clone(&self.known),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RpcMetrics<S> {
    inner: S,
    known: KnownMethods,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let (service, method) = service_and_method(&self.known, request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            let code = match &response {
                Ok(response) => code_name(answered_code(response.headers())),
                Err(_) => "UNKNOWN",
            };
            counter!(RPC_REQUESTS, "service" => service, "method" => method, "code" => code).increment(1);
            histogram!(RPC_DURATION, "service" => service, "method" => method, "code" => code)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// Known services and methods by name; anything else is one label, so a scanner cannot
/// create unbounded series.
fn service_and_method(
    known: &[(&'static str, Vec<&'static str>)],
    path: &str,
) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    known
        .iter()
        .find(|(known, _)| *known == service)
        .and_then(|(known, methods)| {
            methods
                .iter()
                .find(|name| **name == method)
                .map(|name| (*known, *name))
        })
        .unwrap_or(("unknown", "unknown"))
}

/// The status code of a gRPC answer: a unary success carries grpc-status in the trailers (so
/// none in the headers), an error in the headers.
pub(crate) fn answered_code(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        let known = vec![
            ("certification.v1.CertificationService", vec!["Verify"]),
            ("grpc.health.v1.Health", vec!["Check"]),
        ];
        let service_and_method = |path| service_and_method(&known, path);
        assert_eq!(
            service_and_method("/certification.v1.CertificationService/Verify"),
            ("certification.v1.CertificationService", "Verify")
        );
        assert_eq!(
            service_and_method("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(service_and_method("/evil/../x"), ("unknown", "unknown"));
        assert_eq!(
            service_and_method("/certification.v1.CertificationService/Nope"),
            ("unknown", "unknown")
        );
        assert_eq!(code_name(tonic::Code::from_i32(16)), "UNAUTHENTICATED");
    }
}
