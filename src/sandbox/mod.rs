// TEMPORARY STUB: replaced by the real sandbox.
pub mod identities;
use std::{net::SocketAddr, time::Duration};
pub const SANDBOX_IMP_KEY: &str = "sandbox_imp_key";
pub const SANDBOX_IMP_SECRET: &str = "sandbox_imp_secret";
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub imp_key: String,
    pub imp_secret: String,
    pub token_lifetime: Duration,
}
impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            imp_key: SANDBOX_IMP_KEY.into(),
            imp_secret: SANDBOX_IMP_SECRET.into(),
            token_lifetime: Duration::from_secs(1800),
        }
    }
}
pub struct Sandbox {
    addr: SocketAddr,
}
impl Sandbox {
    pub async fn start(
        listener: tokio::net::TcpListener,
        _config: SandboxConfig,
    ) -> std::io::Result<Sandbox> {
        Ok(Sandbox {
            addr: listener.local_addr()?,
        })
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn handle(&self) -> SandboxHandle {
        SandboxHandle
    }
}
#[derive(Clone)]
pub struct SandboxHandle;
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    GetToken,
    GetCertification,
    Any,
}
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    Status { status: u16 },
    ErrorInEnvelope { code: i64, message: String },
    Malformed,
    WrongTypes,
    Html { status: u16 },
    Hang,
    Delay { millis: u64 },
}
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SandboxStats {
    pub get_token_calls: u64,
    pub tokens_issued: u64,
    pub certification_lookups: u64,
    pub unauthorized: u64,
    pub requests: Vec<String>,
}
impl SandboxHandle {
    pub fn set_latency(&self, _l: Duration) {
        todo!()
    }
    pub fn inject(&self, _e: Endpoint, _f: Fault, _t: u32) {
        todo!()
    }
    pub fn clear_faults(&self) {
        todo!()
    }
    pub fn expire_tokens(&self) {
        todo!()
    }
    pub fn set_clock_skew(&self, _s: i64) {
        todo!()
    }
    pub fn insert_certification(&self, _r: identities::CertificationRecord) {
        todo!()
    }
    pub fn stats(&self) -> SandboxStats {
        todo!()
    }
    pub fn reset_stats(&self) {
        todo!()
    }
}
