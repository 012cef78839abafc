//! `DELETE /certifications/{imp_uid}`: PortOne V1 forgets a certification once we have stored
//! what we need from it.

use reqwest::StatusCode;
use serde::de::IgnoredAny;
use tokio::time::Instant;

use super::{
    AccessToken, PortoneClient,
    client::CallFailure,
    model::{Envelope, decode},
};
use crate::{
    domain::ImpUid,
    portone::answer::operator_text,
    service::{BoxFuture, CertificationEraser, Erased, ProviderError},
};

impl PortoneClient {
    #[tracing::instrument(
        name = "portone.delete_certification",
        skip_all,
        fields(otel.kind = "client", http.request.method = "DELETE", url.path = "/certifications/{imp_uid}")
    )]
    async fn delete_once(
        &self,
        imp_uid: &ImpUid,
        token: &AccessToken,
        deadline: Instant,
    ) -> Result<Erased, CallFailure> {
        let url = self
            .certification_url(imp_uid.as_str())
            .map_err(CallFailure::Failed)?;
        let http = self.http();
        // Retrying a DELETE is safe: one that did delete before failing answers 404 next time.
        let answer = http
            .send(
                "delete_certification",
                || self.authorized(http.client().delete(url.clone()), token),
                deadline,
            )
            .await
            .map_err(|error| CallFailure::Failed(error.into()))?;
        match answer.status {
            StatusCode::UNAUTHORIZED => Err(CallFailure::Unauthorized),
            StatusCode::NOT_FOUND => absent(&answer.body).map_err(CallFailure::Failed),
            // The deleted record is personal data we do not need: only the envelope is read.
            status => decode::<IgnoredAny>(status, &answer.body)
                .map(|_| Erased::Deleted)
                .map_err(CallFailure::Failed),
        }
    }
}

/// A 404 means "nothing to delete" only in PortOne's envelope (`code` -1). Any other 404 (a
/// proxy's page, a wrong base URL) says nothing about the record, and taking it for done would
/// leave the person's data at PortOne.
fn absent(body: &[u8]) -> Result<Erased, ProviderError> {
    match serde_json::from_slice::<Envelope<IgnoredAny>>(body) {
        Ok(envelope) if envelope.code != 0 => Ok(Erased::Absent),
        Ok(envelope) => Err(refused_404(Some(envelope.code), envelope.message)),
        Err(_) => Err(refused_404(None, None)),
    }
}

fn refused_404(code: Option<i64>, message: Option<String>) -> ProviderError {
    ProviderError::Rejected {
        status: StatusCode::NOT_FOUND.as_u16(),
        code,
        message: operator_text(message),
    }
}

impl CertificationEraser for PortoneClient {
    fn delete<'a>(
        &'a self,
        imp_uid: &'a ImpUid,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Erased, ProviderError>> {
        Box::pin(async move {
            self.with_token(deadline, |token| async move {
                self.delete_once(imp_uid, &token, deadline).await
            })
            .await
        })
    }
}
