//! The PortOne V2 REST client: one lookup, authenticated by the API secret.

use std::sync::Arc;

use tokio::time::Instant;

use super::model::decode;
use crate::{
    domain::{CertificationRef, ProviderCertification},
    portone::http::{HttpSettings, ResilientHttp},
    secret::Secret,
    service::{BoxFuture, IdentityProvider, ProviderError},
};

#[derive(Clone, Debug)]
pub struct PortoneV2Settings {
    /// `https://api.portone.io`, or the sandbox. No trailing slash.
    pub(crate) base_url: String,
    /// PORTONE_V2_API_SECRET.
    pub api_secret: Secret,
    /// PORTONE_STORE_ID, sent as `storeId` (PortOne uses the secret's own store without it).
    pub(crate) store_id: Option<String>,
    /// PORTONE_V2_CHANNEL_KEY: not used here, handed to callers for the browser SDK.
    pub(crate) channel_key: Option<String>,
    /// Retries, time-outs, the circuit breaker and the connection bound, as for V1.
    pub(crate) http: HttpSettings,
}

/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct PortoneV2Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: ResilientHttp,
    settings: PortoneV2Settings,
    authorization: String,
}

impl PortoneV2Client {
    pub(crate) fn new(settings: PortoneV2Settings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                http: ResilientHttp::new(settings.http.clone(), "portone_v2", &settings.base_url)?,
                authorization: format!("PortOne {}", settings.api_secret.expose()),
                settings,
            }),
        })
    }

    #[tracing::instrument(
        name = "portone.identity_verification",
        skip_all,
        fields(otel.kind = "client", http.request.method = "GET", url.path = "/identity-verifications/{id}")
    )]
    async fn lookup_once(&self, id: &str, deadline: Instant) -> Result<ProviderCertification, ProviderError> {
        let inner = &self.inner;
        let mut url = url::Url::parse(&format!("{}/identity-verifications/", inner.settings.base_url))
            .map_err(|_| ProviderError::Unavailable("PORTONE_V2_BASE_URL is not a URL".into()))?;
        // The id is parsed ([A-Za-z0-9._-], not only dots); pushed as one segment all the same.
        url.path_segments_mut()
            .map_err(|()| ProviderError::Unavailable("PORTONE_V2_BASE_URL cannot take a path".into()))?
            .pop_if_empty()
            .push(id);
        if let Some(store_id) = &inner.settings.store_id {
            url.query_pairs_mut().append_pair("storeId", store_id);
        }
        let http = &inner.http;
        let answer = http
            .send(
                "identity_verification",
                || {
                    http.client()
                        .get(url.clone())
                        .header("Authorization", &inner.authorization)
                },
                deadline,
            )
            .await?;
        decode(answer.status, &answer.body, id)
    }
}

impl IdentityProvider for PortoneV2Client {
    fn lookup<'a>(
        &'a self,
        reference: &'a CertificationRef,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ProviderCertification, ProviderError>> {
        Box::pin(self.lookup_once(reference.id(), deadline))
    }
}
