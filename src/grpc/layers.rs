//! What the transport decides before a CertificationService handler runs, as tower layers that
//! `app` composes around the generated server, outermost first: the call's span, permission
//! (CALLER_PERMISSIONS), admission (MAX_IN_FLIGHT), the deadline, readiness. A refused call is
//! answered at once and costs no handler; a handler sees only calls it must answer, and reads
//! who called and by when from the request's extensions.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, timeout_at},
};
use tonic::{Status, server::NamedService};
use tracing::Instrument;

use super::{SERVICE, deadline::deadline, status::Refusal};
use crate::access::{Caller, CallerPermissions, Method, Rpc};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The caller of an unauthenticated server (ALLOW_UNAUTHENTICATED): one caller for sessions.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// The instant a call must be answered by, set by [`DeadlineLayer`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallDeadline(pub(crate) Instant);

/// The CertificationService method a request names, if it names one.
fn method_of<B>(request: &http::Request<B>) -> Option<Method> {
    let path = request.uri().path().strip_prefix('/')?;
    let method = path.strip_prefix(SERVICE)?.strip_prefix('/')?;
    Method::from_name(method)
}

pub(crate) fn caller_of<B>(request: &http::Request<B>) -> &str {
    request
        .extensions()
        .get::<Caller>()
        .map_or(ANONYMOUS, |caller| caller.0.as_str())
}

/// One check a call must pass before it goes on; `Pass` is held until the call is answered.
pub(crate) trait Gate: Clone + Send + Sync + 'static {
    type Pass: Send + 'static;
    fn check<B>(&self, request: &http::Request<B>) -> Result<Self::Pass, Status>;
}

/// A [`Gate`] as a tower layer.
#[derive(Clone, Debug)]
pub(crate) struct GateLayer<G>(G);

impl<G> GateLayer<G> {
    pub(crate) fn new(gate: G) -> Self {
        Self(gate)
    }
}

impl<S, G: Clone> tower::Layer<S> for GateLayer<G> {
    type Service = Gated<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Gated<S, G> {
    inner: S,
    gate: G,
}

impl<S: NamedService, G> NamedService for Gated<S, G> {
    const NAME: &'static str = S::NAME;
}

impl<S, G, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for Gated<S, G>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    G: Gate,
    RequestBody: http_body::Body + Send + Unpin + 'static,
    RequestBody::Data: Send,
    RequestBody::Error: Send,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        match self.gate.check(&request) {
            Err(status) => Box::pin(async move {
                drain(request.into_body()).await;
                Ok(status.into_http())
            }),
            Ok(pass) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = answer.await;
                    drop(pass);
                    response
                })
            }
        }
    }
}

/// Reads what the client sends of a refused call's request (up to the request limit) before the
/// refusal is answered. Answered while the client still sends, HTTP/2 ends the stream under it,
/// and the client sees a reset (UNKNOWN or CANCELLED) instead of the refusal.
async fn drain<B>(mut body: B)
where
    B: http_body::Body + Unpin,
{
    use bytes::Buf as _;
    use http_body_util::BodyExt as _;

    let mut read = 0;
    while read < super::MAX_REQUEST_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.remaining()),
            _ => return,
        }
    }
}

/// CALLER_PERMISSIONS, first: a refused call costs nothing. None (no caller authentication)
/// lets every call through.
#[derive(Clone, Debug)]
pub(crate) struct Permission {
    permissions: Option<Arc<CallerPermissions>>,
    /// None: CertificationService, each call by its method; set: every call of the guarded
    /// service is this one (the sandbox's service has one RPC).
    only: Option<Rpc>,
}

impl Permission {
    pub(crate) fn new(permissions: Option<Arc<CallerPermissions>>) -> Self {
        Self {
            permissions,
            only: None,
        }
    }

    /// For a service whose every call is `rpc` (the sandbox's).
    #[cfg(feature = "sandbox")]
    pub(crate) fn only(permissions: Option<Arc<CallerPermissions>>, rpc: Rpc) -> Self {
        Self {
            permissions,
            only: Some(rpc),
        }
    }
}

impl Gate for Permission {
    type Pass = ();

    fn check<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        let rpc = self.only.or_else(|| method_of(request).map(Rpc::Certification));
        let (Some(permissions), Some(rpc)) = (&self.permissions, rpc) else {
            return Ok(());
        };
        let caller = request
            .extensions()
            .get::<Caller>()
            .map(|caller| caller.0.as_str());
        if permissions.allows(caller, rpc) {
            Ok(())
        } else {
            Err(Refusal::MethodNotAllowed { rpc }.into())
        }
    }
}

/// MAX_IN_FLIGHT: a call that finds no place is refused, not queued, so the calls already
/// admitted keep their latency and memory stays bounded.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    places: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            places: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// One admitted call; dropping it (answered or cancelled) frees its place.
pub(crate) struct InFlight {
    _place: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::telemetry::metrics::call_finished();
    }
}

impl Gate for Admission {
    type Pass = InFlight;

    fn check<B>(&self, _request: &http::Request<B>) -> Result<InFlight, Status> {
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded { limit: self.limit })?;
        crate::telemetry::metrics::call_admitted();
        Ok(InFlight { _place: place })
    }
}

/// Set once migrations are applied and the database has answered; calls before that would meet
/// a schema that may not exist yet.
#[derive(Clone, Debug)]
pub(crate) struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub(crate) fn new(ready: Arc<AtomicBool>) -> Self {
        Self(ready)
    }
}

impl Gate for Readiness {
    type Pass = ();

    fn check<B>(&self, _request: &http::Request<B>) -> Result<(), Status> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Refusal::NotReady.into())
        }
    }
}

/// The caller's deadline (`grpc-timeout`) or REQUEST_TIMEOUT, whichever comes first: set on the
/// request for the use case, and enforced around the handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeadlineLayer {
    default: Duration,
}

impl DeadlineLayer {
    pub(crate) fn new(default: Duration) -> Self {
        Self { default }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline {
            inner,
            default: self.default,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct WithDeadline<S> {
    inner: S,
    default: Duration,
}

impl<S: NamedService> NamedService for WithDeadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for WithDeadline<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let by = deadline(request.headers(), self.default);
        request.extensions_mut().insert(CallDeadline(by));
        let answer = self.inner.call(request);
        Box::pin(async move {
            match timeout_at(by, answer).await {
                Ok(response) => response,
                Err(_) => Ok(Status::from(Refusal::DeadlineExceeded).into_http()),
            }
        })
    }
}

/// A span per call naming the method and the caller (never a token), so every log line of the
/// call (the layers' refusals included) says who asked; it records the call's status code.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CallSpanLayer;

impl<S> tower::Layer<S> for CallSpanLayer {
    type Service = CallSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CallSpan<S> {
    inner: S,
}

impl<S: NamedService> NamedService for CallSpan<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for CallSpan<S>
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
        let Some(method) = method_of(&request) else {
            return Box::pin(self.inner.call(request));
        };
        let span = tracing::info_span!(
            "rpc",
            method = %method.as_str(),
            caller = %caller_of(&request),
            trace_id = tracing::field::Empty,
            otel.name = %format_args!("{SERVICE}/{}", method.as_str()),
            otel.kind = "server",
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        crate::telemetry::tracing_context::continue_trace(&span, request.headers());
        // The layers inside refuse synchronously: their log lines belong to this span too.
        let answer = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Box::pin(
            async move {
                let response = answer.await;
                if let Ok(response) = &response {
                    finish(&recorded, response.headers());
                }
                response
            }
            .instrument(span),
        )
    }
}

/// Records the call's outcome on its span.
fn finish(span: &tracing::Span, headers: &http::HeaderMap) {
    let code = crate::telemetry::metrics::answered_code(headers);
    span.record("rpc.grpc.status_code", code as i64);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}
