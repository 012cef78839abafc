//! A PortOne V1 API emulator ("the sandbox") for integration tests, `serve --sandbox` and the
//! standalone `portone-sandbox` binary.
//!
//! It answers `POST /users/getToken` and `GET /certifications/{imp_uid}` the way
//! `api.iamport.kr` does (see `shared/portone-api.md`): the `{code, message, response}` envelope,
//! PortOne's token reuse and last-minute extension, 401 for bad credentials or tokens, 404 for
//! unknown certifications. The built-in identities are listed in [`identities`].
//!
//! Tests steer it through [`SandboxHandle`] (latency, queued faults, clock skew, token expiry,
//! extra records, request statistics); the standalone binary exposes the same controls as JSON
//! under `/__sandbox/`:
//!
//! | request | effect |
//! |---|---|
//! | `GET /__sandbox/stats` | [`SandboxStats`] as JSON |
//! | `POST /__sandbox/reset` | clears faults, latency, stats and clock skew; keeps inserted records and tokens |
//! | `POST /__sandbox/latency` `{"millis":N}` | [`SandboxHandle::set_latency`] |
//! | `POST /__sandbox/faults` `{"endpoint":"get_certification","fault":{"kind":"status","status":503},"times":2}` | [`SandboxHandle::inject`] (`times` defaults to 1) |
//! | `POST /__sandbox/tokens/expire` | [`SandboxHandle::expire_tokens`] |
//! | `POST /__sandbox/clock` `{"skew_seconds":N}` | [`SandboxHandle::set_clock_skew`] |
//! | `POST /__sandbox/certifications` (a [`CertificationRecord`]) | [`SandboxHandle::insert_certification`] |
//!
//! Admin requests are neither counted, recorded, delayed nor faulted.
//!
//! ## Playing the browser over gRPC
//!
//! In sandbox mode nobody completes PortOne's popup, so the gRPC port also serves
//! `certification.sandbox.v1.Sandbox/Certify` ([`grpc`], registered only by
//! [`crate::app::Application::with_sandbox`], which `serve --sandbox` and the tests call). It
//! makes a certification of one of the built-in [`people::Person`]s for a given `merchant_uid`
//! exist now (by the sandbox's clock, skew included, less `certified_seconds_ago`) and returns
//! its new imp_uid; `person_key` makes a distinct person with the same traits. The people are
//! the fixtures' own ([`people`]), so `PERSON_ADULT` has the CI of `imp_100000000001`.

mod admin;
pub mod grpc;
pub mod identities;
mod middleware;
pub mod people;
mod server;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpStream, sync::watch, task::JoinHandle};

use self::identities::CertificationRecord;

pub const SANDBOX_IMP_KEY: &str = "sandbox_imp_key";
pub const SANDBOX_IMP_SECRET: &str = "sandbox_imp_secret";
/// PortOne V2 development credentials and ids of the sandbox.
pub const SANDBOX_V2_API_SECRET: &str = "sandbox_v2_api_secret";
pub const SANDBOX_STORE_ID: &str = "store-00000000-0000-4000-8000-000000000001";
pub const SANDBOX_V2_CHANNEL_KEY: &str = "channel-key-00000000-0000-4000-8000-000000000001";

/// PortOne's documented token lifetime.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A getToken call this close to expiry extends the token instead of returning it unchanged.
const TOKEN_EXTENSION_WINDOW_SECONDS: i64 = 60;
/// How far such a call pushes the expiry.
const TOKEN_EXTENSION_SECONDS: i64 = 5 * 60;

/// The credentials the sandbox accepts and how long its tokens live.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub imp_key: String,
    pub imp_secret: String,
    pub token_lifetime: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            imp_key: SANDBOX_IMP_KEY.to_owned(),
            imp_secret: SANDBOX_IMP_SECRET.to_owned(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }
}

/// A running sandbox. Dropping it stops the server: no new connections, idle keep-alive
/// connections close, and requests held by [`Fault::Hang`] are released.
pub struct Sandbox {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    /// Never sent on: dropping it is the stop signal that [`Fault::Hang`] waits for.
    _stop: watch::Sender<()>,
}

impl Sandbox {
    /// Serves on the given listener in a spawned task (tests bind 127.0.0.1:0).
    pub async fn start(listener: tokio::net::TcpListener, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(());
        let shared = Arc::new(Shared {
            config,
            state: Mutex::default(),
            stopped,
        });
        let app = server::router(SandboxHandle {
            shared: Arc::clone(&shared),
        });
        let server = tokio::spawn(async move {
            // Small answers must not wait for delayed ACKs (Nagle), or latency is off by ~40 ms.
            let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut TcpStream| {
                let _ = stream.set_nodelay(true);
            });
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "portone sandbox stopped serving");
            }
        });
        Ok(Sandbox {
            local_addr,
            shared,
            server,
            _stop: stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://HOST:PORT` without a trailing slash; a wildcard bind is reached over loopback.
    pub fn base_url(&self) -> String {
        let reachable_ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(reachable_ip, self.local_addr.port()))
    }

    pub fn handle(&self) -> SandboxHandle {
        SandboxHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Dropping axum's serve future also tells its connection tasks to shut down gracefully,
        // so pooled client connections cannot keep talking to a "stopped" sandbox.
        self.server.abort();
    }
}

/// Steers a running sandbox. Cheap to clone; every method takes effect on the next request.
#[derive(Clone)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
}

impl SandboxHandle {
    /// Every request waits this long before answering (admin requests excepted).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state().latency = latency;
    }

    /// The next `times` requests to `endpoint` get `fault`. Injections queue: each request takes
    /// the oldest injection that matches it, so several stack in order. [`Endpoint::Any`] matches
    /// every non-admin request, unknown paths included.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        if times == 0 {
            return;
        }
        self.shared.state().faults.push_back(QueuedFault {
            endpoint,
            fault,
            remaining: times,
        });
    }

    /// Drops queued faults and latency.
    pub fn clear_faults(&self) {
        let mut state = self.shared.state();
        state.faults.clear();
        state.latency = Duration::ZERO;
    }

    /// Every issued token expires now: lookups with it get 401 and the next getToken issues a
    /// new token.
    pub fn expire_tokens(&self) {
        self.shared.state().token = None;
    }

    /// The sandbox's clock (getToken `now`/`expired_at`, token validity, and the `now` the
    /// fixtures are computed from) runs this far from the real one.
    pub fn set_clock_skew(&self, skew_seconds: i64) {
        self.shared.state().clock_skew_seconds = skew_seconds;
    }

    /// Added, or replaced by imp_uid; it shadows a fixture with the same imp_uid.
    pub fn insert_certification(&self, record: CertificationRecord) {
        self.shared
            .state()
            .inserted
            .insert(record.imp_uid.clone(), record);
    }

    pub fn stats(&self) -> SandboxStats {
        self.shared.state().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.shared.state().stats = SandboxStats::default();
    }

    /// What `POST /__sandbox/reset` does: faults, latency, stats and skew cleared; inserted records
    /// and the current token kept.
    fn reset(&self) {
        let mut state = self.shared.state();
        state.faults.clear();
        state.latency = Duration::ZERO;
        state.stats = SandboxStats::default();
        state.clock_skew_seconds = 0;
    }
}

/// Which emulated endpoint a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    GetToken,
    GetCertification,
    Any,
}

/// The ways PortOne, or something in front of it, has been seen to misbehave.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// That HTTP status with the envelope `{code:-1,message:"sandbox fault",response:null}`.
    Status { status: u16 },
    /// HTTP 200 but `code` != 0 and `response` null (PortOne does this).
    ErrorInEnvelope { code: i64, message: String },
    /// 200, content-type json, body `{"code":0,"response":{` (truncated JSON).
    Malformed,
    /// 200, an envelope with `code` 0 whose response fields have the wrong JSON types.
    WrongTypes,
    /// That status with a text/html body, as a load balancer sends.
    Html { status: u16 },
    /// Never answers (an hour, or until the sandbox is dropped); the client's timeout must cut it.
    Hang,
    /// This one request answers normally after this extra delay.
    Delay { millis: u64 },
}

/// What the sandbox has seen since start or the last reset.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SandboxStats {
    /// Requests to getToken, whatever their outcome.
    pub get_token_calls: u64,
    /// Distinct new tokens minted.
    pub tokens_issued: u64,
    /// Requests to `GET /certifications/..`, whatever their outcome.
    pub certification_lookups: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// `METHOD raw-path-and-query` of every request except `/__sandbox/*`, in order, with
    /// percent-encoding kept as received.
    pub requests: Vec<String>,
}

/// What the server task and every handle share.
struct Shared {
    config: SandboxConfig,
    /// A std mutex: it is never held across an await, and handle methods must stay sync.
    state: Mutex<State>,
    /// Resolves (as an error) once the [`Sandbox`] is dropped.
    stopped: watch::Receiver<()>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    latency: Duration,
    faults: VecDeque<QueuedFault>,
    clock_skew_seconds: i64,
    /// The one live token: only the configured imp_key can get one, and a token is replaced
    /// only after it expired, so older tokens are all invalid.
    token: Option<IssuedToken>,
    inserted: HashMap<String, CertificationRecord>,
    stats: SandboxStats,
}

impl State {
    /// The sandbox's clock, in unix seconds.
    fn now(&self) -> i64 {
        Utc::now().timestamp().saturating_add(self.clock_skew_seconds)
    }

    /// The sandbox's clock as a date-time, for the fixtures; real time if the skew is absurd.
    fn now_datetime(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.now(), 0).unwrap_or_else(Utc::now)
    }

    /// Takes one use of the oldest queued fault that applies to a request to `endpoint`
    /// (`None`: a path that is neither emulated endpoint).
    fn take_fault(&mut self, endpoint: Option<Endpoint>) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|queued| queued.endpoint == Endpoint::Any || Some(queued.endpoint) == endpoint)?;
        let queued = self.faults.get_mut(index)?;
        queued.remaining = queued.remaining.saturating_sub(1);
        if queued.remaining == 0 {
            return self.faults.remove(index).map(|queued| queued.fault);
        }
        Some(queued.fault.clone())
    }

    /// PortOne's token rules: reuse while valid, extend in the last minute, new after expiry.
    fn token_for_get_token(&mut self, now: i64, lifetime: Duration) -> IssuedToken {
        match &mut self.token {
            Some(token) if now < token.expired_at => {
                if token.expired_at - now <= TOKEN_EXTENSION_WINDOW_SECONDS {
                    token.expired_at = token.expired_at.saturating_add(TOKEN_EXTENSION_SECONDS);
                }
                token.clone()
            }
            _ => {
                let lifetime_seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
                let token = IssuedToken {
                    access_token: new_access_token(),
                    expired_at: now.saturating_add(lifetime_seconds),
                };
                self.token = Some(token.clone());
                self.stats.tokens_issued += 1;
                token
            }
        }
    }

    fn token_is_valid(&self, presented: &str, now: i64) -> bool {
        self.token
            .as_ref()
            .is_some_and(|token| token.access_token == presented && now < token.expired_at)
    }

    /// Inserted records first, then the fixtures as of the sandbox's clock.
    fn certification(&self, imp_uid: &str) -> Option<CertificationRecord> {
        if let Some(record) = self.inserted.get(imp_uid) {
            return Some(record.clone());
        }
        identities::fixtures(self.now_datetime())
            .into_iter()
            .find(|record| record.imp_uid == imp_uid)
    }
}

struct QueuedFault {
    endpoint: Endpoint,
    fault: Fault,
    remaining: u32,
}

#[derive(Clone)]
struct IssuedToken {
    access_token: String,
    expired_at: i64,
}

/// 40 lowercase hex characters, like PortOne's tokens.
fn new_access_token() -> String {
    let bytes: [u8; 20] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
