//! PortOne V1: the REST client, its token cache and the shape of its answers.
//!
//! The rest of the service sees only [`CertificationProvider`], so PortOne V2 identity
//! verifications can arrive as one more implementation rather than a reshaped service.

mod circuit;
mod client;
mod model;
mod token;

use std::{future::Future, pin::Pin};

use tokio::time::Instant;

pub use circuit::CircuitSettings;
pub use client::{PortoneClient, PortoneSettings};
pub use token::{AccessToken, TokenCache, TokenCacheStats};

use crate::domain::{ImpUid, ProviderCertification};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Looks a certification up at an identity provider, within the caller's deadline.
pub trait CertificationProvider: Send + Sync {
    fn lookup<'a>(
        &'a self,
        imp_uid: &'a ImpUid,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ProviderCertification, PortoneError>>;
}

/// What can go wrong talking to PortOne, classified once here. Messages never carry a body,
/// a token or personal data: PortOne's answers may contain all three.
#[derive(Debug, thiserror::Error)]
pub enum PortoneError {
    #[error("certification not found at portone")]
    NotFound,
    #[error("portone unavailable: {0}")]
    Unavailable(String),
    #[error("portone rejected our credentials (PORTONE_IMP_KEY / PORTONE_IMP_SECRET)")]
    CredentialsRejected,
    #[error("portone answered with a body we cannot use: {0}")]
    Malformed(String),
    #[error("the caller's deadline passed before portone answered")]
    DeadlineExceeded,
    /// Recent attempts all failed: not trying again before `retry_after`.
    #[error("portone is failing; not calling it for another {}ms", retry_after.as_millis())]
    CircuitOpen { retry_after: std::time::Duration },
}
