//! The sandbox's HTTP surface: PortOne's two endpoints, the fault/latency/stats middleware around
//! them, and the `/__sandbox/` admin routes.

use std::time::Duration;

use axum::{
    Form, Json, Router,
    body::Bytes,
    extract::{FromRequest, Path, Request, State, rejection::PathRejection},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{Endpoint, Fault, SandboxHandle, SandboxStats, identities::CertificationRecord};

const ADMIN_PREFIX: &str = "/__sandbox/";
const GET_TOKEN_PATH: &str = "/users/getToken";
const CERTIFICATIONS_PREFIX: &str = "/certifications/";

// PortOne's own messages, byte for byte: clients may show or match them.
const CREDENTIALS_REJECTED: &str = "imp_key, imp_secret 인증에 실패하였습니다.";
const UNAUTHENTICATED: &str = "Unauthenticated";
const CERTIFICATION_NOT_FOUND: &str = "인증결과가 존재하지 않습니다.";

const FAULT_MESSAGE: &str = "sandbox fault";
const MALFORMED_BODY: &str = r#"{"code":0,"response":{"#;
/// Long enough that only the client's timeout ends the wait.
const HANG_DURATION: Duration = Duration::from_secs(3600);

pub(super) fn router(sandbox: SandboxHandle) -> Router {
    Router::new()
        .route(GET_TOKEN_PATH, post(get_token))
        .route("/certifications/{imp_uid}", get(get_certification))
        .route("/__sandbox/stats", get(admin_stats))
        .route("/__sandbox/reset", post(admin_reset))
        .route("/__sandbox/latency", post(admin_latency))
        .route("/__sandbox/faults", post(admin_faults))
        .route("/__sandbox/tokens/expire", post(admin_expire_tokens))
        .route("/__sandbox/clock", post(admin_clock))
        .route("/__sandbox/certifications", post(admin_insert_certification))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A layer on the whole router, not per route, so unknown paths are counted and faulted too.
        .layer(middleware::from_fn_with_state(sandbox.clone(), observe))
        .with_state(sandbox)
}

/// PortOne's response envelope.
#[derive(Serialize)]
struct Envelope<T> {
    code: i64,
    message: Option<String>,
    response: Option<T>,
}

fn success<T: Serialize>(response: T) -> Response {
    Json(Envelope {
        code: 0,
        message: None,
        response: Some(response),
    })
    .into_response()
}

fn failure(status: StatusCode, code: i64, message: &str) -> Response {
    let envelope = Envelope::<()> {
        code,
        message: Some(message.to_owned()),
        response: None,
    };
    (status, Json(envelope)).into_response()
}

/// Counts and records the request, then applies latency and any queued fault before the handler.
async fn observe(State(sandbox): State<SandboxHandle>, request: Request, next: Next) -> Response {
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
    let (latency, fault) = {
        let mut state = sandbox.shared.state();
        state.stats.requests.push(request_line);
        match endpoint {
            Some(Endpoint::GetToken) => state.stats.get_token_calls += 1,
            Some(Endpoint::GetCertification) => state.stats.certification_lookups += 1,
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
    let imp_uid = path.strip_prefix(CERTIFICATIONS_PREFIX)?;
    let is_lookup =
        (*method == Method::GET || *method == Method::HEAD) && !imp_uid.is_empty() && !imp_uid.contains('/');
    is_lookup.then_some(Endpoint::GetCertification)
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
    match fault {
        Fault::Status { status } => failure(
            status_or(status, StatusCode::INTERNAL_SERVER_ERROR),
            -1,
            FAULT_MESSAGE,
        ),
        Fault::ErrorInEnvelope { code, message } => failure(StatusCode::OK, code, &message),
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            MALFORMED_BODY,
        )
            .into_response(),
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

/// getToken's fields; `None` when absent, which PortOne answers with 401 like a wrong value.
#[derive(Deserialize)]
struct Credentials {
    imp_key: Option<String>,
    imp_secret: Option<String>,
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    now: i64,
    expired_at: i64,
}

async fn get_token(State(sandbox): State<SandboxHandle>, request: Request) -> Response {
    let credentials = match read_credentials(request).await {
        Ok(credentials) => credentials,
        Err(problem) => return failure(StatusCode::BAD_REQUEST, -1, problem),
    };
    let config = &sandbox.shared.config;
    let accepted = credentials.imp_key.as_deref() == Some(config.imp_key.as_str())
        && credentials.imp_secret.as_deref() == Some(config.imp_secret.as_str());
    if !accepted {
        return failure(StatusCode::UNAUTHORIZED, -1, CREDENTIALS_REJECTED);
    }
    let (now, token) = {
        let mut state = sandbox.shared.state();
        let now = state.now();
        (now, state.token_for_get_token(now, config.token_lifetime))
    };
    success(TokenResponse {
        access_token: token.access_token,
        now,
        expired_at: token.expired_at,
    })
}

/// The body as JSON or form, chosen by content type like PortOne's body parser; anything else,
/// or a body that does not parse, is a client error.
async fn read_credentials(request: Request) -> Result<Credentials, &'static str> {
    let media_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media_type == "application/x-www-form-urlencoded" {
        return match Form::<Credentials>::from_request(request, &()).await {
            Ok(Form(credentials)) => Ok(credentials),
            Err(_) => Err("request body is not valid form data"),
        };
    }
    if media_type == "application/json" || media_type.ends_with("+json") {
        return match Json::<Value>::from_request(request, &()).await {
            // Valid JSON of another shape, or non-string fields, count as missing credentials.
            Ok(Json(body)) => Ok(Credentials {
                imp_key: body.get("imp_key").and_then(Value::as_str).map(str::to_owned),
                imp_secret: body.get("imp_secret").and_then(Value::as_str).map(str::to_owned),
            }),
            Err(_) => Err("request body is not valid JSON"),
        };
    }
    Err("request body must be JSON or application/x-www-form-urlencoded")
}

async fn get_certification(
    State(sandbox): State<SandboxHandle>,
    headers: HeaderMap,
    imp_uid: Result<Path<String>, PathRejection>,
) -> Response {
    let record = {
        let state = sandbox.shared.state();
        let now = state.now();
        let authenticated = presented_token(&headers).is_some_and(|token| state.token_is_valid(token, now));
        if !authenticated {
            return failure(StatusCode::UNAUTHORIZED, -1, UNAUTHENTICATED);
        }
        // An imp_uid that does not even decode cannot exist.
        imp_uid
            .ok()
            .and_then(|Path(imp_uid)| state.certification(&imp_uid))
    };
    match record {
        Some(record) => success(record),
        None => failure(StatusCode::NOT_FOUND, -1, CERTIFICATION_NOT_FOUND),
    }
}

/// `Authorization: <token>` and `Authorization: Bearer <token>` both work at PortOne.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

async fn not_found() -> Response {
    failure(StatusCode::NOT_FOUND, -1, "Not Found")
}

async fn method_not_allowed() -> Response {
    failure(StatusCode::METHOD_NOT_ALLOWED, -1, "Method Not Allowed")
}

// Admin routes. Bodies are read as JSON whatever the content type, so a bare `curl -d` works.

fn admin_ok() -> Response {
    Json(json!({"ok": true})).into_response()
}

fn admin_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"ok": false, "error": message})),
    )
        .into_response()
}

fn parse_admin_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|error| admin_error(&error.to_string()))
}

async fn admin_stats(State(sandbox): State<SandboxHandle>) -> Json<SandboxStats> {
    Json(sandbox.stats())
}

async fn admin_reset(State(sandbox): State<SandboxHandle>) -> Response {
    sandbox.reset();
    admin_ok()
}

#[derive(Deserialize)]
struct LatencyRequest {
    millis: u64,
}

async fn admin_latency(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
    match parse_admin_body::<LatencyRequest>(&body) {
        Ok(request) => {
            sandbox.set_latency(Duration::from_millis(request.millis));
            admin_ok()
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct FaultRequest {
    endpoint: Endpoint,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

async fn admin_faults(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
    let request = match parse_admin_body::<FaultRequest>(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Fault::Status { status } | Fault::Html { status } = request.fault
        && StatusCode::from_u16(status).is_err()
    {
        return admin_error("status must be between 100 and 999");
    }
    sandbox.inject(request.endpoint, request.fault, request.times);
    admin_ok()
}

async fn admin_expire_tokens(State(sandbox): State<SandboxHandle>) -> Response {
    sandbox.expire_tokens();
    admin_ok()
}

#[derive(Deserialize)]
struct ClockRequest {
    skew_seconds: i64,
}

async fn admin_clock(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
    match parse_admin_body::<ClockRequest>(&body) {
        Ok(request) => {
            sandbox.set_clock_skew(request.skew_seconds);
            admin_ok()
        }
        Err(response) => response,
    }
}

async fn admin_insert_certification(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
    match parse_admin_body::<CertificationRecord>(&body) {
        Ok(record) => {
            sandbox.insert_certification(record);
            admin_ok()
        }
        Err(response) => response,
    }
}
