//! The resilient HTTP layer every PortOne API shares: bounded retries with jittered backoff,
//! the circuit breaker, a bound on requests in flight, a cap on answer bodies, the caller's
//! trace carried on (W3C traceparent) and a metric per attempt. It speaks HTTP, not PortOne:
//! each API builds its requests and decodes the answers itself.

use std::time::Duration;

use rand::Rng;
use reqwest::{RequestBuilder, StatusCode};
use tokio::time::{Instant, sleep_until, timeout};

use super::circuit::{CircuitBreaker, CircuitSettings};
use crate::{service::ProviderError, telemetry::metrics};

/// PortOne answers are small; a larger body is a fault, not something to buffer.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

/// A base URL we may send credentials to: `https://`, or plain `http://` to this machine only
/// (the sandbox, a local proxy). Anything else would put the secret on the network in clear.
pub(crate) fn check_base_url(base_url: &str) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(base_url).map_err(|_| "is not a URL")?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("must be https:// (plain http:// only to 127.0.0.1, ::1 or localhost)")
            }
        }
        _ => Err("must be an https:// URL"),
    }
}

/// True for an `http://` base URL: one [`check_base_url`] lets through only to this machine.
fn is_plain_http(base_url: &str) -> bool {
    reqwest::Url::parse(base_url).is_ok_and(|url| url.scheme() == "http")
}

#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// One HTTP attempt's limit; the caller's deadline may cut it shorter.
    pub request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Attempts for one idempotent call on 5xx, 429, timeouts and connection errors.
    pub max_attempts: u32,
    /// When to stop calling an API that keeps failing, and for how long.
    pub circuit: CircuitSettings,
    /// Requests in flight at once (so connections open at once); further ones wait for a
    /// place within their deadline. Each HTTP/1 connection holds its own buffers: at 1,000
    /// calls in flight, unbounded connections were a fifth of the peak (80 → 64 MiB).
    pub(crate) max_connections: usize,
}

/// A complete answer: any status that is not worth another attempt, with its body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
}

/// An attempt that failed in a way another attempt may not: worth a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Transient {
    #[error("http {0}")]
    ServerError(u16),
    #[error("http 429")]
    TooManyRequests,
    #[error("timed out")]
    Timeout,
    #[error("connection failed")]
    Connection,
    #[error("body interrupted")]
    BodyInterrupted,
    #[error("request failed")]
    Request,
}

impl Transient {
    /// A short, bounded label for metrics.
    fn outcome(self) -> &'static str {
        match self {
            Transient::ServerError(_) => "http_5xx",
            Transient::TooManyRequests => "http_429",
            Transient::Timeout => "timeout",
            Transient::Connection => "connection",
            Transient::BodyInterrupted | Transient::Request => "transport",
        }
    }

    /// A reqwest error by kind, never by its message (which carries the URL).
    fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Transient::Timeout
        } else if error.is_connect() {
            Transient::Connection
        } else if error.is_body() || error.is_decode() {
            Transient::BodyInterrupted
        } else {
            Transient::Request
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("the caller's deadline passed")]
    DeadlineExceeded,
    #[error("circuit open for another {}ms", retry_after.as_millis())]
    CircuitOpen { retry_after: Duration },
    /// Every attempt failed; the last failure.
    #[error("{0}")]
    Exhausted(Transient),
    #[error("answer larger than 1 MiB")]
    TooLarge,
}

impl From<HttpError> for ProviderError {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::DeadlineExceeded => ProviderError::DeadlineExceeded,
            HttpError::CircuitOpen { retry_after } => ProviderError::CircuitOpen { retry_after },
            HttpError::Exhausted(last) => ProviderError::Unavailable(last.to_string()),
            HttpError::TooLarge => ProviderError::Malformed(error.to_string()),
        }
    }
}

/// How one attempt ended.
enum Exchange {
    Answered(Answer),
    TooLarge,
    Transient(Transient),
}

impl Exchange {
    fn outcome(&self) -> &'static str {
        match self {
            Exchange::Answered(answer) => match answer.status {
                StatusCode::OK => "ok",
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::NOT_FOUND => "not_found",
                _ => "http_other",
            },
            Exchange::TooLarge => "http_other",
            Exchange::Transient(failure) => failure.outcome(),
        }
    }
}

pub(crate) struct ResilientHttp {
    /// `portone_v1` or `portone_v2`: the metric label of every attempt.
    provider: &'static str,
    client: reqwest::Client,
    settings: HttpSettings,
    circuit: CircuitBreaker,
    connections: tokio::sync::Semaphore,
}

impl ResilientHttp {
    /// `base_url` is the API's, already checked by [`check_base_url`]: it decides whether a
    /// proxy from the environment may carry the requests.
    pub(crate) fn new(
        settings: HttpSettings,
        provider: &'static str,
        base_url: &str,
    ) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            // A redirect would carry the request (getToken's body holds the secret) to a host
            // nobody configured: a 3xx is an answer, never followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("certification-service/", env!("CARGO_PKG_VERSION")));
        // Plain http:// is for this machine only, and reqwest sends it through HTTP_PROXY or
        // ALL_PROXY all the same (it exempts no loopback address): the proxy would read
        // getToken's body and V2's Authorization in clear. Such a base URL is reached directly;
        // https:// through a proxy is a tunnel the proxy cannot read, and keeps the proxy.
        let builder = if is_plain_http(base_url) {
            builder.no_proxy()
        } else {
            builder
        };
        let client = builder.build()?;
        Ok(Self {
            provider,
            client,
            circuit: CircuitBreaker::new(settings.circuit.clone()),
            connections: tokio::sync::Semaphore::new(settings.max_connections.max(1)),
            settings,
        })
    }

    /// The underlying client, to build requests with.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends an idempotent request, retrying transient failures with jittered exponential
    /// backoff, never past the caller's deadline. `endpoint` labels the metric.
    pub(crate) async fn send(
        &self,
        endpoint: &'static str,
        request: impl Fn() -> RequestBuilder,
        deadline: Instant,
    ) -> Result<Answer, HttpError> {
        let max_attempts = self.settings.max_attempts.max(1);
        let mut last_failure = Transient::Request;
        for attempt in 1..=max_attempts {
            let now = Instant::now();
            if now >= deadline {
                return Err(HttpError::DeadlineExceeded);
            }
            if let Err(retry_after) = self.circuit.admit() {
                metrics::record_portone_attempt(self.provider, endpoint, "circuit_open", now.into_std());
                return Err(HttpError::CircuitOpen { retry_after });
            }
            let Ok(Ok(connection)) = tokio::time::timeout_at(deadline, self.connections.acquire()).await
            else {
                metrics::record_portone_attempt(self.provider, endpoint, "deadline", now.into_std());
                return Err(HttpError::DeadlineExceeded);
            };
            let now = Instant::now();
            let attempt_limit = self
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
                    metrics::record_portone_attempt(self.provider, endpoint, "deadline", now.into_std());
                    return Err(HttpError::DeadlineExceeded);
                }
                Err(_) => Exchange::Transient(Transient::Timeout),
            };
            // Not held through the backoff: another call may use the place meanwhile.
            drop(connection);
            metrics::record_portone_attempt(self.provider, endpoint, exchange.outcome(), now.into_std());
            match exchange {
                Exchange::Answered(answer) => {
                    self.circuit.succeeded();
                    return Ok(answer);
                }
                Exchange::TooLarge => {
                    self.circuit.succeeded();
                    return Err(HttpError::TooLarge);
                }
                Exchange::Transient(failure) => {
                    self.circuit.failed();
                    tracing::warn!(attempt, %failure, "portone call failed");
                    last_failure = failure;
                }
            }
            if attempt < max_attempts {
                let backoff = Duration::from_millis(100 * 2u64.pow(attempt - 1));
                let jittered = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
                let wake = Instant::now() + jittered;
                if wake >= deadline {
                    return Err(HttpError::DeadlineExceeded);
                }
                sleep_until(wake).await;
            }
        }
        Err(HttpError::Exhausted(last_failure))
    }
}

async fn exchange(request: RequestBuilder) -> Exchange {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Exchange::Transient(Transient::of(&error)),
    };
    let status = response.status();
    if status.is_server_error() {
        return Exchange::Transient(Transient::ServerError(status.as_u16()));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Exchange::Transient(Transient::TooManyRequests);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Exchange::TooLarge;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Exchange::Answered(Answer { status, body }),
            Err(error) => return Exchange::Transient(Transient::of(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_base_url;

    #[test]
    fn credentials_go_over_https_or_to_this_machine_only() {
        for fine in [
            "https://api.iamport.kr",
            "https://api.portone.io",
            "http://127.0.0.1:8900",
            "http://127.5.0.1",
            "http://[::1]:8900",
            "http://localhost:8900",
        ] {
            assert_eq!(check_base_url(fine), Ok(()), "{fine}");
        }
        for refused in [
            "http://api.iamport.kr",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "api.iamport.kr",
            "",
        ] {
            assert!(check_base_url(refused).is_err(), "{refused}");
        }
    }
}
