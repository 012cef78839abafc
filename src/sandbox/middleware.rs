//! The middleware around every non-admin request: counts and records it, then applies the
//! configured latency and any queued [`Fault`] before the handler runs.

use std::time::Duration;

use axum::{
    Json,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Endpoint, Fault, SandboxHandle,
    server::{CERTIFICATIONS_PREFIX, GET_TOKEN_PATH, failure, presented_tier},
    v2::{IDENTITY_VERIFICATIONS_PREFIX, v2_status_fault_body, v2_wrong_types_body},
};

const ADMIN_PREFIX: &str = "/__sandbox/";

const FAULT_MESSAGE: &str = "sandbox fault";
const MALFORMED_BODY: &str = r#"{"code":0,"response":{"#;
/// V2 answers have no envelope: its truncated JSON is a truncated verification.
const MALFORMED_V2_BODY: &str = r#"{"status":"VERIFIED","id":"#;
/// Long enough that only the client's timeout ends the wait.
const HANG_DURATION: Duration = Duration::from_secs(3600);

/// Counts and records the request, then applies latency and any queued fault before the handler.
pub(super) async fn observe(State(sandbox): State<SandboxHandle>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with(ADMIN_PREFIX) {
        return next.run(request).await;
    }
    let endpoint = classify(request.method(), &path);
    let request_line = format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map_or(path.as_str(), |raw| raw.as_str())
    );
    let tier = presented_tier(request.headers()).map(str::to_owned);
    let (latency, fault) = {
        let mut state = sandbox.shared.state();
        state.stats.requests.push(request_line);
        match endpoint {
            Some(Endpoint::GetToken) => state.stats.get_token_calls += 1,
            Some(Endpoint::GetCertification) => {
                state.stats.certification_lookups += 1;
                state.stats.last_tier = tier;
            }
            Some(Endpoint::DeleteCertification) => {
                state.stats.certification_deletions += 1;
                state.stats.last_tier = tier;
            }
            Some(Endpoint::GetIdentityVerification) => state.stats.identity_verification_lookups += 1,
            Some(Endpoint::Any) | None => {}
        }
        (state.latency, state.take_fault(endpoint))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault_kind = fault.as_ref().map(fault_kind);
    let method = request.method().clone();
    let response = match fault {
        None => next.run(request).await,
        Some(fault) => answer_with_fault(&sandbox, fault, endpoint, request, next).await,
    };
    if response.status() == StatusCode::UNAUTHORIZED {
        sandbox.shared.state().stats.unauthorized += 1;
    }
    // The path only: a query string could carry a token.
    tracing::debug!(%method, %path, status = response.status().as_u16(), fault = fault_kind, "portone sandbox answered");
    response
}

/// Which emulated endpoint a request is for, judged like the router judges it.
fn classify(method: &Method, path: &str) -> Option<Endpoint> {
    if path == GET_TOKEN_PATH {
        return (*method == Method::POST).then_some(Endpoint::GetToken);
    }
    let is_get = *method == Method::GET || *method == Method::HEAD;
    // V2 routes the empty id too (to answer it 400), so it counts as a lookup.
    if let Some(id) = path.strip_prefix(IDENTITY_VERIFICATIONS_PREFIX) {
        return (is_get && !id.contains('/')).then_some(Endpoint::GetIdentityVerification);
    }
    let imp_uid = path.strip_prefix(CERTIFICATIONS_PREFIX)?;
    if imp_uid.is_empty() || imp_uid.contains('/') {
        return None;
    }
    if is_get {
        Some(Endpoint::GetCertification)
    } else {
        (*method == Method::DELETE).then_some(Endpoint::DeleteCertification)
    }
}

fn fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::Status { .. } => "status",
        Fault::ErrorInEnvelope { .. } => "error_in_envelope",
        Fault::Malformed => "malformed",
        Fault::WrongTypes => "wrong_types",
        Fault::Html { .. } => "html",
        Fault::Hang => "hang",
        Fault::Delay { .. } => "delay",
    }
}

async fn answer_with_fault(
    sandbox: &SandboxHandle,
    fault: Fault,
    endpoint: Option<Endpoint>,
    request: Request,
    next: Next,
) -> Response {
    let v2 = endpoint == Some(Endpoint::GetIdentityVerification);
    match fault {
        Fault::Status { status } => {
            let status = status_or(status, StatusCode::INTERNAL_SERVER_ERROR);
            if v2 {
                return (status, Json(v2_status_fault_body())).into_response();
            }
            failure(status, -1, FAULT_MESSAGE)
        }
        // V2 has no envelope: there this is a V1-shaped body a V2 client must reject.
        Fault::ErrorInEnvelope { code, message } => failure(StatusCode::OK, code, &message),
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            if v2 { MALFORMED_V2_BODY } else { MALFORMED_BODY },
        )
            .into_response(),
        Fault::WrongTypes if v2 => Json(v2_wrong_types_body()).into_response(),
        Fault::WrongTypes => Json(wrong_types_envelope(endpoint)).into_response(),
        Fault::Html { status } => html_error_page(status_or(status, StatusCode::BAD_GATEWAY)),
        Fault::Hang => {
            let mut stopped = sandbox.shared.stopped.clone();
            tokio::select! {
                () = tokio::time::sleep(HANG_DURATION) => {}
                // Err once the Sandbox is dropped: let the connection close instead of lingering.
                _ = stopped.changed() => {}
            }
            failure(StatusCode::SERVICE_UNAVAILABLE, -1, "sandbox stopped")
        }
        Fault::Delay { millis } => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            next.run(request).await
        }
    }
}

/// An out-of-range status (admin input is checked; `inject` is not) falls back to `fallback`.
fn status_or(status: u16, fallback: StatusCode) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(fallback)
}

/// A success envelope whose fields all have the wrong JSON type, shaped like the endpoint's answer.
fn wrong_types_envelope(endpoint: Option<Endpoint>) -> Value {
    let response = if endpoint == Some(Endpoint::GetToken) {
        json!({"access_token": 12345, "now": "now", "expired_at": "later"})
    } else {
        json!({
            "imp_uid": 100000000001_u64, "merchant_uid": false, "pg_tid": [], "pg_provider": 0,
            "name": {"family": "홍"}, "gender": 1, "birthday": 19900315, "birth": "19900315",
            "foreigner": "no", "foreigner_v2": "no", "phone": 1012345678, "carrier": [],
            "certified": "yes", "certified_at": "soon", "unique_key": 88, "unique_in_site": true,
            "origin": 404
        })
    };
    json!({"code": 0, "message": null, "response": response})
}

/// What nginx in front of an API sends when the upstream fails.
fn html_error_page(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
         <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}
