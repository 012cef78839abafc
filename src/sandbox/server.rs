//! PortOne V1's response envelope and V1's endpoints (getToken, the certification lookup and its
//! deletion). The routes are in `routes.rs`.

use axum::{
    Form, Json,
    extract::{FromRequest, Path, Request, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    SandboxHandle,
    identities::CertificationRecord,
    merchants::{Merchant, Owner},
    state::State as SandboxState,
};

pub(super) const GET_TOKEN_PATH: &str = "/users/getToken";
pub(super) const CERTIFICATIONS_PREFIX: &str = "/certifications/";

// Ours, not PortOne's: PortOne's V1 API reference and OpenAPI give only the 401 ("imp_key,
// imp_secret 인증에 실패한 경우" describes the case, not the message). Clients must not match it.
const CREDENTIALS_REJECTED: &str = "imp_key, imp_secret 인증에 실패하였습니다.";
// Ours, not PortOne's: no source gives the message of a lookup's 401.
const UNAUTHENTICATED: &str = "Unauthenticated";
// PortOne's, byte for byte (its answer to an unknown certification): clients may show it.
const CERTIFICATION_NOT_FOUND: &str = "인증결과가 존재하지 않습니다.";
/// V1's sub-merchant header: `Tier: <3-character code>`.
pub(super) const TIER_HEADER: &str = "tier";

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

pub(super) fn failure(status: StatusCode, code: i64, message: &str) -> Response {
    let envelope = Envelope::<()> {
        code,
        message: Some(message.to_owned()),
        response: None,
    };
    (status, Json(envelope)).into_response()
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

pub(super) async fn get_token(State(sandbox): State<SandboxHandle>, request: Request) -> Response {
    let credentials = match read_credentials(request).await {
        Ok(credentials) => credentials,
        Err(problem) => return failure(StatusCode::BAD_REQUEST, -1, problem),
    };
    let config = &sandbox.shared.config;
    let presented = (credentials.imp_key.as_deref(), credentials.imp_secret.as_deref());
    let merchant = if presented == (Some(config.imp_key.as_str()), Some(config.imp_secret.as_str())) {
        Merchant::Main
    } else if presented
        == (
            Some(config.other_imp_key.as_str()),
            Some(config.other_imp_secret.as_str()),
        )
    {
        Merchant::Other
    } else {
        return failure(StatusCode::UNAUTHORIZED, -1, CREDENTIALS_REJECTED);
    };
    let (now, token) = {
        let mut state = sandbox.shared.state();
        let now = state.now();
        (
            now,
            state.token_for_get_token(merchant, now, config.token_lifetime),
        )
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

pub(super) async fn get_certification(
    State(sandbox): State<SandboxHandle>,
    headers: HeaderMap,
    imp_uid: Result<Path<String>, PathRejection>,
) -> Response {
    let configured_tier = sandbox.shared.config.tier.as_deref();
    let record = {
        let state = sandbox.shared.state();
        let owner = match requester(&state, &headers) {
            Ok(owner) => owner,
            Err(unauthenticated) => return unauthenticated,
        };
        decoded(imp_uid).and_then(|imp_uid| state.certification(&imp_uid, &owner, configured_tier))
    };
    certification_answer(record)
}

/// Answers with the record as the lookup would have shown it; afterwards both answer 404.
pub(super) async fn delete_certification(
    State(sandbox): State<SandboxHandle>,
    headers: HeaderMap,
    imp_uid: Result<Path<String>, PathRejection>,
) -> Response {
    let configured_tier = sandbox.shared.config.tier.as_deref();
    let record = {
        let mut state = sandbox.shared.state();
        let owner = match requester(&state, &headers) {
            Ok(owner) => owner,
            Err(unauthenticated) => return unauthenticated,
        };
        decoded(imp_uid).and_then(|imp_uid| state.delete_certification(&imp_uid, &owner, configured_tier))
    };
    certification_answer(record)
}

/// Whose certifications the request may see; without a valid token, the 401 to answer.
fn requester(state: &SandboxState, headers: &HeaderMap) -> Result<Owner, Response> {
    let merchant = presented_token(headers)
        .and_then(|token| state.merchant_of_token(token, state.now()))
        .ok_or_else(|| failure(StatusCode::UNAUTHORIZED, -1, UNAUTHENTICATED))?;
    // A sub-merchant's certifications need its Tier header, and a Tier header sees only them:
    // another merchant's, another tier's or the main merchant's own are all "not found".
    Ok(Owner {
        merchant,
        tier: presented_tier(headers).map(str::to_owned),
    })
}

/// An imp_uid that does not even decode names no certification.
fn decoded(imp_uid: Result<Path<String>, PathRejection>) -> Option<String> {
    imp_uid.ok().map(|Path(imp_uid)| imp_uid)
}

fn certification_answer(record: Option<CertificationRecord>) -> Response {
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

/// The `Tier` header's code, if the request carries one (an unreadable value counts as a code
/// that owns nothing).
pub(super) fn presented_tier(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(TIER_HEADER)?;
    Some(value.to_str().map_or("\u{fffd}", str::trim))
}

pub(super) async fn not_found() -> Response {
    failure(StatusCode::NOT_FOUND, -1, "Not Found")
}

pub(super) async fn method_not_allowed() -> Response {
    failure(StatusCode::METHOD_NOT_ALLOWED, -1, "Method Not Allowed")
}
