//! The PortOne V1 REST client: getToken, certification lookups, bounded retries.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rand::Rng;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, sleep_until, timeout};

use super::{
    AccessToken, BoxFuture, CertificationProvider, PortoneError, TokenCache,
    circuit::{CircuitBreaker, CircuitSettings},
    model::{CertificationBody, Envelope, TokenGrant},
    token::{LockAttempt, SharedToken, UsableToken},
};
use crate::{
    config::Secret,
    domain::{ImpUid, ProviderCertification},
    telemetry::metrics,
};

#[derive(Clone, Debug)]
pub struct PortoneSettings {
    /// `https://api.iamport.kr`, or the sandbox. No trailing slash.
    pub base_url: String,
    pub imp_key: String,
    pub imp_secret: Secret,
    /// One HTTP attempt's limit; the caller's deadline may cut it shorter.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts for one idempotent call (getToken, lookup) on 5xx, timeouts, connection errors.
    pub max_attempts: u32,
    /// A token is used until this long before PortOne's expiry, so none expires in flight.
    pub token_margin: Duration,
    /// A token with less usable time than this is refreshed in the background. PortOne extends
    /// a token only when asked in its last minute, so `token_margin + token_refresh_ahead`
    /// must stay under 60 s or the refresh gets the same expiry back.
    pub token_refresh_ahead: Duration,
    /// How long the fleet-wide getToken lock is held at most: a replica that dies holding it
    /// delays the others by no more than this.
    pub token_lock_ttl: Duration,
    /// When to stop calling a PortOne that keeps failing, and for how long.
    pub circuit: CircuitSettings,
    /// Requests to PortOne in flight at once (so connections open at once); further ones wait
    /// for a place within their deadline. Each HTTP/1 connection holds its own buffers: at
    /// 1,000 calls in flight, unbounded connections were a fifth of the peak (80 → 64 MiB).
    pub max_connections: usize,
}

/// PortOne answers are small; a larger body is a fault, not something to buffer.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Replicas waiting for another's getToken poll Redis at this pace, doubling up to the cap.
const LOCK_POLL_START: Duration = Duration::from_millis(10);
const LOCK_POLL_CAP: Duration = Duration::from_millis(25);
/// A refresh ahead that did not extend the token (clock differences) is retried this much later.
const REFRESH_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Cheap to clone: background refreshes hold a clone of the same client.
#[derive(Clone)]
pub struct PortoneClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    settings: PortoneSettings,
    tokens: TokenCache,
    circuit: CircuitBreaker,
    connections: tokio::sync::Semaphore,
    /// One refresh ahead at a time in this process.
    refreshing: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
}

/// How one HTTP exchange ended, before it becomes a [`PortoneError`].
enum Exchange {
    Answered(StatusCode, Vec<u8>),
    /// Worth another attempt: connection error, timeout, 5xx, 429.
    Transient(String),
}

impl Exchange {
    /// A short, bounded label for metrics.
    fn outcome(&self) -> &'static str {
        match self {
            Exchange::Answered(StatusCode::OK, _) => "ok",
            Exchange::Answered(StatusCode::UNAUTHORIZED, _) => "unauthorized",
            Exchange::Answered(StatusCode::NOT_FOUND, _) => "not_found",
            Exchange::Answered(_, _) => "http_other",
            Exchange::Transient(failure) if failure.starts_with("http 5") => "http_5xx",
            Exchange::Transient(failure) if failure.starts_with("http 429") => "http_429",
            Exchange::Transient(failure) if failure.contains("time") => "timeout",
            Exchange::Transient(failure) if failure.starts_with("connection") => "connection",
            Exchange::Transient(_) => "transport",
        }
    }
}

/// Why one lookup failed: PortOne refusing the token is the one case a fresh token handles.
enum LookupFailure {
    Unauthorized,
    Failed(PortoneError),
}

impl PortoneClient {
    pub fn new(settings: PortoneSettings, tokens: TokenCache) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("certification-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                circuit: CircuitBreaker::new(settings.circuit.clone()),
                connections: tokio::sync::Semaphore::new(settings.max_connections.max(1)),
                settings,
                tokens,
                refreshing: AtomicBool::new(false),
                last_refresh: Mutex::new(None),
            }),
        })
    }

    pub fn token_cache(&self) -> &TokenCache {
        &self.inner.tokens
    }

    /// A valid access token: from memory, from Redis, or fetched once for the whole fleet (one
    /// replica holds the lock and calls getToken, the others wait for its token in Redis).
    pub async fn access_token(&self, deadline: Instant) -> Result<AccessToken, PortoneError> {
        let tokens = &self.inner.tokens;
        if let Some(usable) = tokens.local() {
            self.after_hit(&usable);
            return Ok(usable.token);
        }
        let _refilling = tokio::time::timeout_at(deadline, tokens.refill_lock().lock())
            .await
            .map_err(|_| PortoneError::DeadlineExceeded)?;
        if let Some(usable) = tokens.local() {
            return Ok(usable.token);
        }
        let mut poll = LOCK_POLL_START;
        loop {
            match tokens.shared().await {
                SharedToken::Found(usable) => {
                    self.after_hit(&usable);
                    return Ok(usable.token);
                }
                // No Redis, or Redis failing: this process's single flight is all there is.
                SharedToken::Unavailable => return self.fetch_and_store(deadline).await,
                SharedToken::Missing => {}
            }
            match tokens.try_lock(self.inner.settings.token_lock_ttl).await {
                LockAttempt::Acquired(owner) => {
                    // The previous holder stores its token before releasing: look once more.
                    let result = match tokens.shared().await {
                        SharedToken::Found(usable) => Ok(usable.token),
                        _ => self.fetch_and_store(deadline).await,
                    };
                    tokens.unlock(owner).await;
                    return result;
                }
                LockAttempt::Unavailable => return self.fetch_and_store(deadline).await,
                LockAttempt::HeldElsewhere => {}
            }
            let wake = Instant::now() + poll;
            if wake >= deadline {
                return Err(PortoneError::DeadlineExceeded);
            }
            sleep_until(wake).await;
            poll = (poll * 2).min(LOCK_POLL_CAP);
        }
    }

    /// Housekeeping a cache hit may start in the background: refresh ahead of expiry, and
    /// giving Redis our token back after an outage.
    fn after_hit(&self, usable: &UsableToken) {
        let inner = &self.inner;
        if usable.remaining < inner.settings.token_refresh_ahead && self.claim_refresh() {
            let client = self.clone();
            tokio::spawn(async move {
                client.refresh_ahead().await;
                client.inner.refreshing.store(false, Ordering::Release);
            });
        }
        if inner.tokens.recovery_probe_due() {
            let client = self.clone();
            tokio::spawn(async move { client.inner.tokens.write_back().await });
        }
    }

    /// True for the one caller that may start a refresh now.
    fn claim_refresh(&self) -> bool {
        let inner = &self.inner;
        let mut last = inner
            .last_refresh
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now - at < REFRESH_RETRY_INTERVAL) {
            return false;
        }
        if inner.refreshing.swap(true, Ordering::AcqRel) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Asks PortOne for the token in its last minute, which extends it, so no request waits
    /// on getToken at the turn of a token. One replica does it: the one that gets the lock.
    async fn refresh_ahead(&self) {
        let inner = &self.inner;
        let tokens = &inner.tokens;
        let deadline = Instant::now() + inner.settings.token_lock_ttl;
        if let SharedToken::Found(usable) = tokens.shared().await
            && usable.remaining >= inner.settings.token_refresh_ahead
        {
            // Another replica refreshed already; its token is now our in-process copy too.
            return;
        }
        let refreshed = match tokens.try_lock(inner.settings.token_lock_ttl).await {
            LockAttempt::HeldElsewhere => return,
            LockAttempt::Acquired(owner) => {
                let refreshed = self.fetch_and_store(deadline).await;
                tokens.unlock(owner).await;
                refreshed
            }
            LockAttempt::Unavailable => self.fetch_and_store(deadline).await,
        };
        match refreshed {
            Ok(_) => {
                let usable_for = tokens.local().map(|usable| usable.remaining.as_secs());
                tracing::debug!(usable_for_seconds = ?usable_for, "portone token refreshed ahead of expiry");
            }
            Err(error) => tracing::warn!(%error, "refreshing the portone token ahead of expiry failed"),
        }
    }

    /// getToken, then the token into both cache levels for its usable lifetime.
    async fn fetch_and_store(&self, deadline: Instant) -> Result<AccessToken, PortoneError> {
        let inner = &self.inner;
        inner.tokens.count_fetch();
        let grant = self.fetch_token(deadline).await?;
        let token = AccessToken::new(grant.access_token);
        // Lifetime by PortOne's own clock (`expired_at - now`), never ours.
        let lifetime = Duration::from_secs(grant.expired_at.saturating_sub(grant.now).max(0).unsigned_abs());
        inner
            .tokens
            .put(&token, lifetime.saturating_sub(inner.settings.token_margin))
            .await;
        Ok(token)
    }

    #[tracing::instrument(
        name = "portone.get_token",
        skip_all,
        fields(otel.kind = "client", http.request.method = "POST", url.path = "/users/getToken")
    )]
    async fn fetch_token(&self, deadline: Instant) -> Result<TokenGrant, PortoneError> {
        let url = format!("{}/users/getToken", self.inner.settings.base_url);
        let body = serde_json::json!({
            "imp_key": self.inner.settings.imp_key,
            "imp_secret": self.inner.settings.imp_secret.expose(),
        });
        let (status, bytes) = self
            .send_with_retries("get_token", || self.inner.http.post(&url).json(&body), deadline)
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            tracing::error!(
                "portone refused getToken: PORTONE_IMP_KEY / PORTONE_IMP_SECRET are wrong or revoked"
            );
            return Err(PortoneError::CredentialsRejected);
        }
        decode(status, &bytes)
    }

    #[tracing::instrument(
        name = "portone.certification",
        skip_all,
        fields(otel.kind = "client", http.request.method = "GET", url.path = "/certifications/{imp_uid}")
    )]
    async fn lookup_once(
        &self,
        imp_uid: &ImpUid,
        token: &AccessToken,
        deadline: Instant,
    ) -> Result<ProviderCertification, LookupFailure> {
        // ImpUid admits only "imp_" and digits: nothing in it can change the path.
        let url = format!(
            "{}/certifications/{}",
            self.inner.settings.base_url,
            imp_uid.as_str()
        );
        let exchange = self
            .send_with_retries(
                "certification",
                || self.inner.http.get(&url).header("Authorization", token.expose()),
                deadline,
            )
            .await;
        let (status, bytes) = exchange.map_err(LookupFailure::Failed)?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(LookupFailure::Unauthorized);
        }
        decode::<CertificationBody>(status, &bytes)
            .and_then(|body| body.into_domain(imp_uid.as_str()))
            .map_err(LookupFailure::Failed)
    }

    /// Sends an idempotent request, retrying transient failures with jittered exponential
    /// backoff, never past the caller's deadline.
    async fn send_with_retries(
        &self,
        endpoint: &'static str,
        request: impl Fn() -> RequestBuilder,
        deadline: Instant,
    ) -> Result<(StatusCode, Vec<u8>), PortoneError> {
        let mut last_failure = String::new();
        for attempt in 1..=self.inner.settings.max_attempts.max(1) {
            let now = Instant::now();
            if now >= deadline {
                return Err(PortoneError::DeadlineExceeded);
            }
            if let Err(retry_after) = self.inner.circuit.admit() {
                metrics::record_portone_attempt(endpoint, "circuit_open", now.into_std());
                return Err(PortoneError::CircuitOpen { retry_after });
            }
            let Ok(Ok(connection)) =
                tokio::time::timeout_at(deadline, self.inner.connections.acquire()).await
            else {
                metrics::record_portone_attempt(endpoint, "deadline", now.into_std());
                return Err(PortoneError::DeadlineExceeded);
            };
            let now = Instant::now();
            let attempt_limit = self
                .inner
                .settings
                .request_timeout
                .min(deadline.saturating_duration_since(now));
            // The caller's trace goes on to PortOne (W3C traceparent).
            let outgoing = crate::telemetry::tracing_context::outgoing_headers()
                .into_iter()
                .fold(request(), |builder, (name, value)| builder.header(name, value));
            let exchange = match timeout(attempt_limit, exchange(outgoing)).await {
                Ok(exchange) => exchange,
                Err(_) if Instant::now() >= deadline => {
                    // The caller's deadline, not PortOne's failure: the circuit learns nothing.
                    metrics::record_portone_attempt(endpoint, "deadline", now.into_std());
                    return Err(PortoneError::DeadlineExceeded);
                }
                Err(_) => Exchange::Transient("timed out".into()),
            };
            // Not held through the backoff: another call may use the place meanwhile.
            drop(connection);
            metrics::record_portone_attempt(endpoint, exchange.outcome(), now.into_std());
            match exchange {
                Exchange::Answered(status, body) => {
                    self.inner.circuit.succeeded();
                    return Ok((status, body));
                }
                Exchange::Transient(failure) => {
                    self.inner.circuit.failed();
                    tracing::warn!(attempt, failure = %failure, "portone call failed");
                    last_failure = failure;
                }
            }
            if attempt < self.inner.settings.max_attempts {
                let backoff = Duration::from_millis(100 * 2u64.pow(attempt - 1));
                let jittered = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
                let wake = Instant::now() + jittered;
                if wake >= deadline {
                    return Err(PortoneError::DeadlineExceeded);
                }
                sleep_until(wake).await;
            }
        }
        Err(PortoneError::Unavailable(last_failure))
    }
}

impl CertificationProvider for PortoneClient {
    fn lookup<'a>(
        &'a self,
        imp_uid: &'a ImpUid,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ProviderCertification, PortoneError>> {
        Box::pin(async move {
            let token = self.access_token(deadline).await?;
            match self.lookup_once(imp_uid, &token, deadline).await {
                Ok(found) => return Ok(found),
                Err(LookupFailure::Failed(error)) => return Err(error),
                // Expired or revoked under us (early expiry, another replica's refresh):
                // drop it and try once with a fresh one; the caller never sees this.
                Err(LookupFailure::Unauthorized) => self.inner.tokens.invalidate(&token).await,
            }
            let fresh = self.access_token(deadline).await?;
            match self.lookup_once(imp_uid, &fresh, deadline).await {
                Ok(found) => Ok(found),
                Err(LookupFailure::Failed(error)) => Err(error),
                Err(LookupFailure::Unauthorized) => {
                    self.inner.tokens.invalidate(&fresh).await;
                    tracing::error!(
                        "portone rejected a freshly issued access token; check PORTONE_IMP_KEY / PORTONE_IMP_SECRET"
                    );
                    Err(PortoneError::CredentialsRejected)
                }
            }
        })
    }
}

async fn exchange(request: RequestBuilder) -> Exchange {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Exchange::Transient(describe(&error)),
    };
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Exchange::Transient(format!("http {}", status.as_u16()));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Exchange::Answered(StatusCode::PAYLOAD_TOO_LARGE, Vec::new());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Exchange::Answered(status, body),
            Err(error) => return Exchange::Transient(describe(&error)),
        }
    }
}

/// A reqwest error without its URL: the URL is harmless today, but errors travel far.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "body interrupted"
    } else {
        "request failed"
    };
    kind.to_string()
}

/// Checks the HTTP status and the envelope's `code`, then decodes `response`.
fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, PortoneError> {
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(PortoneError::NotFound),
        StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(PortoneError::Malformed("answer larger than 1 MiB".into()));
        }
        other => {
            return Err(PortoneError::Unavailable(format!(
                "unexpected http {}",
                other.as_u16()
            )));
        }
    }
    let malformed = |error: serde_json::Error| {
        PortoneError::Malformed(format!(
            "{} at line {} column {}",
            classify(&error),
            error.line(),
            error.column()
        ))
    };
    // The code first: an error envelope is an error whatever shape its `response` has.
    let head: Envelope<serde::de::IgnoredAny> = serde_json::from_slice(body).map_err(malformed)?;
    if head.code != 0 {
        return Err(PortoneError::Unavailable(format!(
            "portone answered code {}",
            head.code
        )));
    }
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(malformed)?;
    envelope
        .response
        .ok_or_else(|| PortoneError::Malformed("code 0 without a response".into()))
}

/// serde_json's messages can quote the input; keep only the category.
fn classify(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "invalid json",
        serde_json::error::Category::Data => "unexpected json shape",
        serde_json::error::Category::Eof => "truncated json",
    }
}

/// The PortOne answer parser (status, envelope, record) against generated bodies: arbitrary
/// bytes, arbitrary JSON, and real answers with one field replaced by any JSON value. It never
/// panics, whatever it accepts is internally consistent, and its error messages never quote
/// the body (bodies carry names, phone numbers and CIs).
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const IMP_UID: &str = "imp_123456789012";
    const NAME: &str = "홍길동";
    const CI: &str = "Q0lfc2VjcmV0X3ZhbHVlX29mX2FfcGVyc29u";

    fn real_answer() -> Value {
        json!({"code": 0, "message": null, "response": {
            "imp_uid": IMP_UID, "merchant_uid": "signup-1", "pg_tid": "t", "pg_provider": "danal",
            "name": NAME, "gender": "male", "birthday": "1990-03-15", "birth": 637426800,
            "foreigner": false, "foreigner_v2": null, "phone": "01012345678", "carrier": "SKT",
            "certified": true, "certified_at": 1795459469, "unique_key": CI,
            "unique_in_site": "REVG", "origin": "https://example.com"}})
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            Just(Value::String(String::new())),
            Just(Value::String("1990-02-30".into())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    const FIELDS: &[&str] = &[
        "imp_uid",
        "merchant_uid",
        "pg_provider",
        "name",
        "gender",
        "birthday",
        "foreigner",
        "foreigner_v2",
        "phone",
        "carrier",
        "certified",
        "certified_at",
        "unique_key",
        "unique_in_site",
    ];

    fn parse(status: StatusCode, body: &[u8]) -> Result<ProviderCertification, PortoneError> {
        decode::<CertificationBody>(status, body).and_then(|body| body.into_domain(IMP_UID))
    }

    fn check(result: &Result<ProviderCertification, PortoneError>) -> Result<(), TestCaseError> {
        match result {
            Ok(found) => {
                prop_assert_eq!(found.id.as_str(), IMP_UID);
                if found.certified {
                    prop_assert!(found.identity.is_some() && found.certified_at.is_some());
                } else {
                    prop_assert!(found.identity.is_none());
                }
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.contains(NAME) && !message.contains(CI), "{}", message);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_under_any_status_are_an_error_or_a_consistent_answer(
            status in prop::sample::select(vec![200u16, 201, 204, 301, 400, 401, 403, 404, 413, 418, 500]),
            body in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            check(&parse(StatusCode::from_u16(status).unwrap(), &body))?;
        }

        #[test]
        fn arbitrary_json_is_an_error_or_a_consistent_answer(value in json_value()) {
            check(&parse(StatusCode::OK, value.to_string().as_bytes()))?;
        }

        #[test]
        fn a_real_answer_with_one_field_replaced_or_removed_is_handled(
            field in prop::sample::select(FIELDS),
            replacement in prop::option::of(json_value()),
            code in prop_oneof![Just(0i64), any::<i64>()],
        ) {
            let mut answer = real_answer();
            answer["code"] = json!(code);
            let record = answer["response"].as_object_mut().unwrap();
            match replacement {
                Some(value) => { record.insert(field.to_owned(), value); }
                None => { record.remove(field); }
            }
            let result = parse(StatusCode::OK, answer.to_string().as_bytes());
            check(&result)?;
            if code != 0 {
                prop_assert!(matches!(result, Err(PortoneError::Unavailable(_))), "{result:?}");
            }
        }

        #[test]
        fn truncations_of_a_real_answer_are_errors(cut in 0usize..600) {
            let body = real_answer().to_string();
            let cut = cut.min(body.len().saturating_sub(1));
            let truncated = &body.as_bytes()[..cut];
            let result = parse(StatusCode::OK, truncated);
            prop_assert!(matches!(result, Err(PortoneError::Malformed(_))), "{result:?}");
            check(&result)?;
        }
    }
}
