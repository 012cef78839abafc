//! The PortOne V1 REST client: getToken and certification lookups, on the shared HTTP layer.
//! Deletions are in `erase.rs`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::{RequestBuilder, StatusCode, Url};
use tokio::time::{Instant, sleep_until};

use super::{
    AccessToken, TokenCache,
    model::{CertificationBody, TokenGrant, decode},
    token::{LockAttempt, SharedToken, UsableToken},
};
use crate::{
    domain::{CertificationRef, ProviderCertification},
    portone::http::{HttpSettings, ResilientHttp},
    secret::Secret,
    service::{BoxFuture, IdentityProvider, ProviderError},
};

#[derive(Clone, Debug)]
pub struct PortoneSettings {
    /// `https://api.iamport.kr`, or the sandbox. No trailing slash.
    pub base_url: String,
    pub imp_key: String,
    pub imp_secret: Secret,
    /// A token is used until this long before PortOne's expiry, so none expires in flight.
    pub(crate) token_margin: Duration,
    /// A token with less usable time than this is refreshed in the background. PortOne extends
    /// a token only when asked in its last minute, so `token_margin + token_refresh_ahead`
    /// must stay under 60 s or the refresh gets the same expiry back.
    pub(crate) token_refresh_ahead: Duration,
    /// How long the fleet-wide getToken lock is held at most: a replica that dies holding it
    /// delays the others by no more than this.
    pub(crate) token_lock_ttl: Duration,
    /// PORTONE_TIER: a sub-merchant's 3-character code, sent as `Tier` on lookups.
    pub tier: Option<String>,
    /// Retries, time-outs, the circuit breaker and the connection bound.
    pub http: HttpSettings,
}

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
    http: ResilientHttp,
    settings: PortoneSettings,
    /// `{base_url}/certifications/`, parsed once: a lookup appends its imp_uid instead of
    /// parsing a whole URL (host and all) per request.
    certifications: Option<Url>,
    tokens: TokenCache,
    /// One refresh ahead at a time in this process.
    refreshing: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
}

/// Why one call with a token failed: PortOne refusing the token is the one case a fresh token
/// handles.
pub(super) enum CallFailure {
    Unauthorized,
    Failed(ProviderError),
}

impl PortoneClient {
    pub(crate) fn new(settings: PortoneSettings, tokens: TokenCache) -> Result<Self, reqwest::Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                http: ResilientHttp::new(settings.http.clone(), "portone_v1", &settings.base_url)?,
                certifications: Url::parse(&format!("{}/certifications/", settings.base_url)).ok(),
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

    /// The token, and the sub-merchant's `Tier` header when one is configured: what every call
    /// about a certification carries.
    pub(super) fn authorized(&self, request: RequestBuilder, token: &AccessToken) -> RequestBuilder {
        let request = request.header("Authorization", token.expose());
        match &self.inner.settings.tier {
            Some(tier) => request.header("Tier", tier),
            None => request,
        }
    }

    /// `{base_url}/certifications/{imp_uid}`: what a lookup reads and a deletion deletes. An
    /// imp_uid is "imp_" and digits; pushed as one segment all the same.
    pub(super) fn certification_url(&self, imp_uid: &str) -> Result<Url, ProviderError> {
        let mut url = self
            .inner
            .certifications
            .clone()
            .ok_or_else(|| ProviderError::Unavailable("PORTONE_BASE_URL is not a URL".into()))?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::Unavailable("PORTONE_BASE_URL cannot take a path".into()))?
            .pop_if_empty()
            .push(imp_uid);
        Ok(url)
    }

    pub(super) fn http(&self) -> &ResilientHttp {
        &self.inner.http
    }

    /// Runs `call` with a valid token. If PortOne refuses it (expired or revoked under us: early
    /// expiry, another replica's refresh), drops it and runs `call` once more with a fresh one;
    /// the caller never sees that first 401.
    pub(super) async fn with_token<T, Call>(
        &self,
        deadline: Instant,
        call: impl Fn(AccessToken) -> Call,
    ) -> Result<T, ProviderError>
    where
        // An owned token, not a borrowed one: a closure returning a future that borrows its
        // argument is not provably `Send` for every lifetime, which `BoxFuture` needs.
        Call: Future<Output = Result<T, CallFailure>>,
    {
        let token = self.access_token(deadline).await?;
        match call(token.clone()).await {
            Ok(done) => return Ok(done),
            Err(CallFailure::Failed(error)) => return Err(error),
            Err(CallFailure::Unauthorized) => self.inner.tokens.invalidate(&token).await,
        }
        let fresh = self.access_token(deadline).await?;
        match call(fresh.clone()).await {
            Ok(done) => Ok(done),
            Err(CallFailure::Failed(error)) => Err(error),
            Err(CallFailure::Unauthorized) => {
                self.inner.tokens.invalidate(&fresh).await;
                tracing::error!(
                    "portone rejected a freshly issued access token; check PORTONE_IMP_KEY / PORTONE_IMP_SECRET"
                );
                Err(ProviderError::CredentialsRejected)
            }
        }
    }

    /// A valid access token: from memory, from Redis, or fetched once for the whole fleet (one
    /// replica holds the lock and calls getToken, the others wait for its token in Redis).
    pub(crate) async fn access_token(&self, deadline: Instant) -> Result<AccessToken, ProviderError> {
        let tokens = &self.inner.tokens;
        if let Some(usable) = tokens.local() {
            self.after_hit(&usable);
            return Ok(usable.token);
        }
        let _refilling = tokio::time::timeout_at(deadline, tokens.refill_lock().lock())
            .await
            .map_err(|_| ProviderError::DeadlineExceeded)?;
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
                // Waiting on a live lock in Redis, not on PortOne: the answer says so.
                return Err(ProviderError::SharedTokenWait);
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
    async fn fetch_and_store(&self, deadline: Instant) -> Result<AccessToken, ProviderError> {
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
    async fn fetch_token(&self, deadline: Instant) -> Result<TokenGrant, ProviderError> {
        let url = format!("{}/users/getToken", self.inner.settings.base_url);
        let body = serde_json::json!({
            "imp_key": self.inner.settings.imp_key,
            "imp_secret": self.inner.settings.imp_secret.expose(),
        });
        let http = &self.inner.http;
        let answer = http
            .send("get_token", || http.client().post(&url).json(&body), deadline)
            .await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            tracing::error!(
                "portone refused getToken: PORTONE_IMP_KEY / PORTONE_IMP_SECRET are wrong or revoked"
            );
            return Err(ProviderError::CredentialsRejected);
        }
        decode(answer.status, &answer.body)
    }

    #[tracing::instrument(
        name = "portone.certification",
        skip_all,
        fields(otel.kind = "client", http.request.method = "GET", url.path = "/certifications/{imp_uid}")
    )]
    async fn lookup_once(
        &self,
        imp_uid: &str,
        token: &AccessToken,
        deadline: Instant,
    ) -> Result<ProviderCertification, CallFailure> {
        let url = self.certification_url(imp_uid).map_err(CallFailure::Failed)?;
        let http = &self.inner.http;
        let answer = http
            .send(
                "certification",
                || self.authorized(http.client().get(url.clone()), token),
                deadline,
            )
            .await
            .map_err(|error| CallFailure::Failed(error.into()))?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(CallFailure::Unauthorized);
        }
        decode::<CertificationBody>(answer.status, &answer.body)
            .and_then(|body| body.into_domain(imp_uid))
            .map_err(CallFailure::Failed)
    }
}

impl IdentityProvider for PortoneClient {
    fn lookup<'a>(
        &'a self,
        reference: &'a CertificationRef,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ProviderCertification, ProviderError>> {
        Box::pin(async move {
            let imp_uid = reference.id();
            self.with_token(deadline, |token| async move {
                self.lookup_once(imp_uid, &token, deadline).await
            })
            .await
        })
    }
}
