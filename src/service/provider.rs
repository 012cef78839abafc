//! The seam between the use cases and the identity providers: what the service asks of one
//! (look a certification up by reference, within a deadline; delete it once used, where the
//! provider can) and how one may fail, in words that name no provider. Each provider implements
//! [`IdentityProvider`] (PortOne V1 also [`CertificationEraser`]) and translates its own failures
//! into [`ProviderError`].

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::domain::{CertificationRef, ImpUid, Provider, ProviderCertification};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Looks a certification up at an identity provider, within the caller's deadline.
pub trait IdentityProvider: Send + Sync {
    fn lookup<'a>(
        &'a self,
        reference: &'a CertificationRef,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ProviderCertification, ProviderError>>;
}

/// Deletes a certification at its provider, so the provider keeps no copy of the person once we
/// have stored what we need. PortOne V1 only: V2 has no delete endpoint, hence the V1 id.
pub trait CertificationEraser: Send + Sync {
    /// Idempotent: deleting what is already gone is [`Erased::Absent`], not an error, so a retry
    /// after a lost answer (or PortOne's 500 after it did delete) ends as done.
    fn delete<'a>(
        &'a self,
        imp_uid: &'a ImpUid,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Erased, ProviderError>>;
}

/// How a deletion ended; both mean the provider holds no such certification now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Erased {
    /// It existed and this call deleted it.
    Deleted,
    /// There was none to delete (never existed, deleted before, or another merchant's).
    Absent,
}

/// What can go wrong asking a provider, classified by the provider's client. Messages never
/// carry a body, a token or personal data: providers' answers may contain all three.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("certification not found at the identity provider")]
    NotFound,
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    #[error("the identity provider rejected our credentials")]
    CredentialsRejected,
    /// A permanent refusal (HTTP 200 with an error code, 3xx, 400, 403, …): retrying the same
    /// request cannot help. `message` is the provider's own text, for the operator's log only.
    #[error("the identity provider refused the request (http {status}{})", code.map(|code| format!(", code {code}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("the identity provider answered with a body we cannot use: {0}")]
    Malformed(String),
    #[error("the caller's deadline passed before the identity provider answered")]
    DeadlineExceeded,
    /// The deadline passed while another replica held the fleet-wide lock on the provider's
    /// access token (in Redis): the wait was on Redis and that replica, not on the provider.
    #[error(
        "the caller's deadline passed waiting for the access token another replica is fetching (its lock in Redis)"
    )]
    SharedTokenWait,
    /// Recent attempts all failed: not trying again before `retry_after`.
    #[error("the identity provider is failing; not calling it for another {}ms", retry_after.as_millis())]
    CircuitOpen { retry_after: Duration },
    /// A reference for a provider this service was not configured with.
    #[error("no identity provider {} is configured", .0.as_str())]
    NotConfigured(Provider),
}

/// The configured providers, by [`Provider`].
#[derive(Clone, Default)]
pub struct Providers {
    by_provider: HashMap<Provider, Arc<dyn IdentityProvider>>,
}

impl Providers {
    pub(crate) fn with(mut self, provider: Provider, client: Arc<dyn IdentityProvider>) -> Self {
        self.by_provider.insert(provider, client);
        self
    }

    pub(crate) fn has(&self, provider: Provider) -> bool {
        self.by_provider.contains_key(&provider)
    }

    pub(crate) async fn lookup(
        &self,
        reference: &CertificationRef,
        deadline: Instant,
    ) -> Result<ProviderCertification, ProviderError> {
        let provider = self
            .by_provider
            .get(&reference.provider())
            .ok_or(ProviderError::NotConfigured(reference.provider()))?;
        provider.lookup(reference, deadline).await
    }
}
