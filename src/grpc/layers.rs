//! What the transport decides before a CertificationService handler runs, as tower layers that
//! `app` composes around the generated server, outermost first: the call's span, permission
//! (CALLER_PERMISSIONS), admission (MAX_IN_FLIGHT), the deadline, readiness. A refused call is
//! answered at once and costs no handler; a handler sees only calls it must answer, and reads
//! who called and by when from the request's extensions.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex,
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
use crate::{
    access::{Caller, CallerPermissions, Method, Rpc},
    quota::{Bound, QuotaExceeded},
};

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
/// admitted keep their latency and memory stays bounded. And a fair share of it per caller: once
/// more than half of the places are in use, a caller holding its equal share already is refused
/// (CALLER_QUOTA, bound `in_flight`), so one caller's flood never fills the bound for the others.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    places: Arc<Semaphore>,
    limit: usize,
    /// None when the server has one caller only (ALLOW_UNAUTHENTICATED, one name in
    /// CALLER_TOKENS): then it may use every place.
    fair: Option<Arc<FairShare>>,
}

/// A refused caller may try again this soon: calls in flight finish in milliseconds to seconds.
const FAIR_SHARE_RETRY: Duration = Duration::from_millis(250);

/// The calls each caller holds in flight.
#[derive(Debug)]
struct FairShare {
    /// Callers with a call in flight, and how many. A std mutex: held for a map update, never
    /// across an await.
    holding: Mutex<HashMap<String, usize>>,
    /// How many callers the server knows (CALLER_TOKENS' names); None under mTLS, where any
    /// certificate from the CA names one.
    known_callers: Option<usize>,
}

impl FairShare {
    /// The places `caller` may hold while more than half are in use: an equal share among the
    /// callers in flight, itself included, and one more while a known caller is not in flight
    /// (so a newcomer finds a place). A caller alone on a server of one caller takes them all.
    fn share(&self, holding: &HashMap<String, usize>, caller: &str, limit: usize) -> usize {
        let callers = holding.len() + usize::from(!holding.contains_key(caller));
        let room_for_another = self.known_callers.is_none_or(|known| known > callers);
        (limit / (callers + usize::from(room_for_another))).max(1)
    }
}

impl Admission {
    /// `known_callers`: how many callers may call (None: unknown, as under mTLS).
    pub(crate) fn new(limit: usize, known_callers: Option<usize>) -> Self {
        let fair = (known_callers != Some(1)).then(|| {
            Arc::new(FairShare {
                holding: Mutex::new(HashMap::new()),
                known_callers,
            })
        });
        Self {
            places: Arc::new(Semaphore::new(limit)),
            limit,
            fair,
        }
    }
}

/// One admitted call; dropping it (answered or cancelled) frees its place and its share.
pub(crate) struct InFlight {
    _place: OwnedSemaphorePermit,
    share: Option<(Arc<FairShare>, String)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((fair, caller)) = &self.share {
            let mut holding = fair.holding.lock().expect("no panic holds it");
            if let Some(count) = holding.get_mut(caller) {
                *count -= 1;
                if *count == 0 {
                    holding.remove(caller);
                }
            }
        }
        crate::telemetry::metrics::call_finished();
    }
}

impl Gate for Admission {
    type Pass = InFlight;

    fn check<B>(&self, request: &http::Request<B>) -> Result<InFlight, Status> {
        let Some(fair) = &self.fair else {
            let place = Arc::clone(&self.places)
                .try_acquire_owned()
                .map_err(|_| Refusal::Overloaded { limit: self.limit })?;
            crate::telemetry::metrics::call_admitted();
            return Ok(InFlight {
                _place: place,
                share: None,
            });
        };
        let caller = caller_of(request);
        // Held from the check to the count, so two calls of one caller cannot both pass it.
        let mut holding = fair.holding.lock().expect("no panic holds it");
        let in_use = self.limit - self.places.available_permits();
        let mine = holding.get(caller).copied().unwrap_or(0);
        if in_use * 2 > self.limit {
            let share = fair.share(&holding, caller, self.limit);
            if mine >= share {
                let exceeded = QuotaExceeded::refuse(caller, Bound::InFlight, FAIR_SHARE_RETRY);
                return Err(Refusal::FairShare { share, exceeded }.into());
            }
        }
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded { limit: self.limit })?;
        *holding.entry(caller.to_owned()).or_insert(0) += 1;
        drop(holding);
        crate::telemetry::metrics::call_admitted();
        Ok(InFlight {
            _place: place,
            share: Some((Arc::clone(fair), caller.to_owned())),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request_of(caller: &str) -> http::Request<()> {
        let mut request = http::Request::new(());
        request.extensions_mut().insert(Caller(caller.to_owned()));
        request
    }

    #[test]
    fn past_half_a_caller_holding_its_share_is_refused_and_another_is_admitted() {
        let admission = Admission::new(8, Some(2));
        let mut alpha = Vec::new();
        while let Ok(pass) = admission.check(&request_of("alpha")) {
            alpha.push(pass);
        }
        // Half, and one more before "more than half" is in use.
        assert_eq!(alpha.len(), 5);
        let bravo = admission
            .check(&request_of("bravo"))
            .expect("room for another caller");
        drop(alpha.pop());
        assert!(
            admission.check(&request_of("alpha")).is_err(),
            "alpha holds its share"
        );
        drop(bravo);
    }

    #[test]
    fn a_server_of_one_caller_lets_it_use_every_place() {
        let admission = Admission::new(8, Some(1));
        let held: Vec<_> = (0..8)
            .map(|_| admission.check(&request_of(ANONYMOUS)).unwrap())
            .collect();
        assert!(admission.check(&request_of(ANONYMOUS)).is_err());
        drop(held);
        assert!(admission.check(&request_of(ANONYMOUS)).is_ok());
    }

    #[test]
    fn places_and_shares_come_back_when_calls_end() {
        let admission = Admission::new(4, None);
        let held: Vec<_> = (0..3)
            .map(|_| admission.check(&request_of("alpha")).unwrap())
            .collect();
        drop(held);
        let fair = admission.fair.as_ref().unwrap();
        assert!(fair.holding.lock().unwrap().is_empty());
    }
}
