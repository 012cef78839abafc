//! CertificationService handlers: parse, run within the deadline, convert.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::timeout_at,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    auth::Caller,
    convert,
    deadline::deadline,
    proto::{self, certification_service_server::CertificationService},
};
use crate::{error::ServiceError, service::IdentityService};

pub struct CertificationGrpc {
    service: Arc<IdentityService>,
    /// Bounds a call whose caller set no deadline.
    default_timeout: Duration,
    /// Set once migrations are applied and the database has answered; calls before that would
    /// meet a schema that may not exist yet.
    ready: Arc<AtomicBool>,
    /// MAX_IN_FLIGHT permits: a call that finds none is refused, not queued, so the calls
    /// already admitted keep their latency and memory stays bounded.
    admission: Arc<Semaphore>,
    max_in_flight: usize,
}

impl CertificationGrpc {
    pub fn new(service: Arc<IdentityService>, default_timeout: Duration, max_in_flight: usize) -> Self {
        Self {
            service,
            default_timeout,
            ready: Arc::new(AtomicBool::new(false)),
            admission: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }

    fn admit(&self) -> Result<InFlight, ServiceError> {
        let permit =
            Arc::clone(&self.admission)
                .try_acquire_owned()
                .map_err(|_| ServiceError::Overloaded {
                    limit: self.max_in_flight,
                })?;
        crate::telemetry::metrics::call_admitted();
        Ok(InFlight { _permit: permit })
    }

    /// The flag readiness sets once the database is prepared.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    fn ensure_ready(&self) -> Result<(), ServiceError> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(ServiceError::NotReady)
        }
    }
}

/// One admitted call; dropping it (answered or cancelled) frees its place.
struct InFlight {
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::telemetry::metrics::call_finished();
    }
}

/// A span per call naming the method and the caller (never a token), so every log line of the
/// call says who asked.
fn call_span<T>(method: &'static str, request: &Request<T>) -> tracing::Span {
    let caller = request
        .extensions()
        .get::<Caller>()
        .map_or("anonymous", |caller| caller.0.as_str());
    let span = tracing::info_span!(
        "rpc",
        method = %method,
        caller = %caller,
        trace_id = tracing::field::Empty,
        otel.name = %format_args!("certification.v1.CertificationService/{method}"),
        otel.kind = "server",
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::telemetry::tracing_context::continue_trace(&span, request.metadata());
    span
}

/// Records the call's outcome on its span.
fn finish<T>(span: &tracing::Span, result: &Result<T, Status>) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    span.record("rpc.grpc.status_code", code as i64);
    if !matches!(code, tonic::Code::Ok) {
        span.record("otel.status_code", "ERROR");
    }
}

impl CertificationGrpc {
    async fn verify_call(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let _in_flight = self.admit()?;
        let deadline = deadline(request.metadata(), self.default_timeout);
        let command = convert::verify_command(request.into_inner()).map_err(ServiceError::from)?;
        self.ensure_ready()?;
        let verified = timeout_at(deadline, self.service.verify(command, deadline))
            .await
            .map_err(|_| ServiceError::DeadlineExceeded)??;
        Ok(Response::new(convert::verify_response(verified)))
    }

    async fn check_duplicate_call(
        &self,
        request: Request<proto::CheckDuplicateRequest>,
    ) -> Result<Response<proto::CheckDuplicateResponse>, Status> {
        let _in_flight = self.admit()?;
        let deadline = deadline(request.metadata(), self.default_timeout);
        let key = convert::duplicate_key(request.into_inner()).map_err(ServiceError::from)?;
        self.ensure_ready()?;
        let holder = timeout_at(deadline, self.service.check_duplicate(key, deadline))
            .await
            .map_err(|_| ServiceError::DeadlineExceeded)??;
        Ok(Response::new(convert::duplicate_status(holder.as_ref())))
    }

    async fn unlink_call(
        &self,
        request: Request<proto::UnlinkRequest>,
    ) -> Result<Response<proto::UnlinkResponse>, Status> {
        let _in_flight = self.admit()?;
        let deadline = deadline(request.metadata(), self.default_timeout);
        let account = convert::unlink_account(request.into_inner()).map_err(ServiceError::from)?;
        self.ensure_ready()?;
        let unlinked = timeout_at(deadline, self.service.unlink(&account))
            .await
            .map_err(|_| ServiceError::DeadlineExceeded)??;
        Ok(Response::new(convert::unlink_response(unlinked)))
    }
}

/// Each method: a span for the call (caller's trace continued), the call inside it, its outcome
/// recorded on it.
#[tonic::async_trait]
impl CertificationService for CertificationGrpc {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let span = call_span("Verify", &request);
        let result = self.verify_call(request).instrument(span.clone()).await;
        finish(&span, &result);
        result
    }

    async fn check_duplicate(
        &self,
        request: Request<proto::CheckDuplicateRequest>,
    ) -> Result<Response<proto::CheckDuplicateResponse>, Status> {
        let span = call_span("CheckDuplicate", &request);
        let result = self.check_duplicate_call(request).instrument(span.clone()).await;
        finish(&span, &result);
        result
    }

    async fn unlink(
        &self,
        request: Request<proto::UnlinkRequest>,
    ) -> Result<Response<proto::UnlinkResponse>, Status> {
        let span = call_span("Unlink", &request);
        let result = self.unlink_call(request).instrument(span.clone()).await;
        finish(&span, &result);
        result
    }
}
