//! A PortOne API emulator ("the sandbox") for integration tests, `serve --sandbox` and the
//! standalone `portone-sandbox` binary.
//!
//! On one base URL it answers PortOne V1's `POST /users/getToken`, `GET /certifications/{imp_uid}`
//! and `DELETE /certifications/{imp_uid}` the way `api.iamport.kr` does (PortOne's
//! V1 API reference, developers.portone.io): the `{code, message, response}` envelope, PortOne's token reuse and
//! last-minute extension, 401 for bad credentials or tokens, 404 for unknown (or deleted)
//! certifications. A DELETE answers with the record as a GET would have shown it. It emulates two merchants
//! ([`merchants`]: each sees only its own certifications) and the main merchant's sub-merchant
//! (the `Tier` header). The built-in V1 identities are listed in [`identities`].
//!
//! It also answers PortOne V2's `GET /identity-verifications/{id}` (`Authorization: PortOne
//! <secret>`) as `api.portone.io` does; see [`v2`] for its errors and fixtures.
//!
//! Tests steer it through [`SandboxHandle`] (latency, queued faults, clock skew, token expiry,
//! extra records, request statistics); the standalone binary exposes the same controls as JSON
//! under `/__sandbox/`:
//!
//! | request | effect |
//! |---|---|
//! | `GET /__sandbox/stats` | [`SandboxStats`] as JSON |
//! | `POST /__sandbox/reset` | clears faults, latency, stats and clock skew; restores deleted certifications; keeps inserted records and tokens |
//! | `POST /__sandbox/latency` `{"millis":N}` | [`SandboxHandle::set_latency`] |
//! | `POST /__sandbox/faults` `{"endpoint":"get_certification","fault":{"kind":"status","status":503},"times":2}` | [`SandboxHandle::inject`] (`times` defaults to 1; endpoints `get_token`, `get_certification`, `delete_certification`, `get_identity_verification`, `any`) |
//! | `POST /__sandbox/tokens/expire` | [`SandboxHandle::expire_tokens`] |
//! | `POST /__sandbox/clock` `{"skew_seconds":N}` | [`SandboxHandle::set_clock_skew`] |
//! | `POST /__sandbox/certifications` (a [`CertificationRecord`], plus optional `"merchant":"other"` and `"tier":"T01"`) | [`SandboxHandle::insert_certification_as`] |
//! | `POST /__sandbox/identity-verifications` (a [`v2::IdentityVerificationRecord`], plus optional `"storeId"`) | [`SandboxHandle::insert_identity_verification`] |
//!
//! Admin requests are neither counted, recorded, delayed nor faulted.
//!
//! ## Playing the browser over gRPC
//!
//! In sandbox mode nobody completes PortOne's popup, so the gRPC port also serves
//! `certification.sandbox.v1.Sandbox/Certify` ([`grpc`], registered only by
//! `Application::with_sandbox`, which `serve --sandbox` and the tests call). It
//! makes a certification of one of the built-in [`people::Person`]s for a given `merchant_uid`
//! exist now (by the sandbox's clock, skew included, less `certified_seconds_ago`) and returns
//! its new imp_uid; `person_key` makes a distinct person with the same traits, `tier` makes it
//! the sub-merchant's. Given an `identity_verification_id` instead, it makes a V2 identity
//! verification under that id. The people are the fixtures' own ([`people`]), so `PERSON_ADULT`
//! has the CI of `imp_100000000001` and of the V2 fixture `sandbox-iv-adult`.

mod admin;
mod certify;
pub mod grpc;
pub mod identities;
pub(crate) mod merchants;
mod middleware;
pub(crate) mod people;
mod record;
mod routes;
mod server;
mod state;
#[cfg(test)]
mod tests;
pub(crate) mod v2;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{net::TcpStream, sync::watch, task::JoinHandle};

pub use self::{
    certify::UnknownTier,
    v2::{SANDBOX_STORE_ID, SANDBOX_V2_API_SECRET, SANDBOX_V2_CHANNEL_KEY},
};
use self::{
    identities::CertificationRecord,
    merchants::Owner,
    state::{QueuedFault, Shared},
};

/// The main merchant's V1 credentials: it owns the fixtures and has the foreigner contract.
pub const SANDBOX_IMP_KEY: &str = "sandbox_imp_key";
pub const SANDBOX_IMP_SECRET: &str = "sandbox_imp_secret";
/// The other merchant's V1 credentials: its own certifications, no foreigner contract.
pub const SANDBOX_OTHER_IMP_KEY: &str = "sandbox_other_imp_key";
pub const SANDBOX_OTHER_IMP_SECRET: &str = "sandbox_other_imp_secret";
/// The main merchant's sub-merchant code, sent as the V1 `Tier` header.
pub const SANDBOX_TIER: &str = "T01";

/// PortOne's documented token lifetime.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The credentials the sandbox accepts and how long its tokens live.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub imp_key: String,
    pub imp_secret: String,
    /// The second merchant's; must differ from `imp_key`, or it is never told apart.
    pub other_imp_key: String,
    pub other_imp_secret: String,
    /// The main merchant's sub-merchant (`Tier` header); `None`: it has none.
    pub tier: Option<String>,
    pub token_lifetime: Duration,
    /// V2: the secret `Authorization: PortOne <secret>` must carry.
    pub v2_api_secret: String,
    /// V2: the one store that secret may read.
    pub store_id: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            imp_key: SANDBOX_IMP_KEY.to_owned(),
            imp_secret: SANDBOX_IMP_SECRET.to_owned(),
            other_imp_key: SANDBOX_OTHER_IMP_KEY.to_owned(),
            other_imp_secret: SANDBOX_OTHER_IMP_SECRET.to_owned(),
            tier: Some(SANDBOX_TIER.to_owned()),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            v2_api_secret: SANDBOX_V2_API_SECRET.to_owned(),
            store_id: SANDBOX_STORE_ID.to_owned(),
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
            base_url: reachable_base_url(local_addr),
            config,
            state: Mutex::default(),
            stopped,
        });
        let app = routes::router(SandboxHandle {
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
        self.shared.base_url.clone()
    }

    pub fn handle(&self) -> SandboxHandle {
        SandboxHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

fn reachable_base_url(local_addr: SocketAddr) -> String {
    let reachable_ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(reachable_ip, local_addr.port()))
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

    /// Every issued token (of both merchants) expires now: lookups with it get 401 and the next
    /// getToken issues a new token.
    pub fn expire_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// The sandbox's clock (getToken `now`/`expired_at`, token validity, and the `now` the
    /// fixtures are computed from) runs this far from the real one.
    pub fn set_clock_skew(&self, skew_seconds: i64) {
        self.shared.state().clock_skew_seconds = skew_seconds;
    }

    /// Added for the main merchant (no tier), or replaced by imp_uid; it shadows a fixture with
    /// the same imp_uid, and undoes a deletion of that imp_uid.
    pub fn insert_certification(&self, record: CertificationRecord) {
        self.insert_certification_as(Owner::main(), record);
    }

    /// Like [`Self::insert_certification`], visible only to `owner`.
    pub(crate) fn insert_certification_as(&self, owner: Owner, record: CertificationRecord) {
        let mut state = self.shared.state();
        state.deleted.remove(&record.imp_uid);
        state.inserted.insert(record.imp_uid.clone(), (owner, record));
    }

    /// The sandbox's base URL, as [`Sandbox::base_url`]: where V1 and V2 are both served.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn stats(&self) -> SandboxStats {
        self.shared.state().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.shared.state().stats = SandboxStats::default();
    }

    /// What `POST /__sandbox/reset` does: faults, latency, stats and skew cleared, deleted
    /// certifications back; inserted records and the current token kept.
    fn reset(&self) {
        let mut state = self.shared.state();
        state.deleted.clear();
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
    /// V1's `DELETE /certifications/{imp_uid}`.
    DeleteCertification,
    /// V2's `GET /identity-verifications/{id}`.
    GetIdentityVerification,
    Any,
}

/// The ways PortOne, or something in front of it, has been seen to misbehave.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// That HTTP status with the envelope `{code:-1,message:"sandbox fault",response:null}`
    /// (on V2: `{"type":"SANDBOX_FAULT","message":"sandbox fault"}`).
    Status { status: u16 },
    /// HTTP 200 but `code` != 0 and `response` null (PortOne V1 does this; on V2, which has no
    /// envelope, it is a body of the wrong shape).
    ErrorInEnvelope { code: i64, message: String },
    /// 200, content-type json, truncated JSON (`{"code":0,"response":{`; on V2
    /// `{"status":"VERIFIED","id":`).
    Malformed,
    /// 200, the endpoint's answer with every field of the wrong JSON type.
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
    /// Requests to `DELETE /certifications/..`, whatever their outcome.
    pub(crate) certification_deletions: u64,
    /// Requests to V2's `GET /identity-verifications/..`, whatever their outcome.
    pub identity_verification_lookups: u64,
    /// The `Tier` header of the last certification lookup or deletion (`None`: it had none), so
    /// a client's test can see that it sends its sub-merchant code.
    pub last_tier: Option<String>,
    /// 401 answers.
    pub unauthorized: u64,
    /// `METHOD raw-path-and-query` of every request except `/__sandbox/*`, in order, with
    /// percent-encoding kept as received.
    pub requests: Vec<String>,
}
