//! The V2 handler and PortOne V2's error shape `{"type", "message"}`.
//!
//! The `type` values are PortOne's (its OpenAPI's `GetIdentityVerificationError`); every
//! `message` here is ours: no source shows PortOne's texts, and clients must not match them.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::MAX_IDENTITY_VERIFICATION_ID_CHARS;
use crate::sandbox::SandboxHandle;

pub(in crate::sandbox) const IDENTITY_VERIFICATIONS_PREFIX: &str = "/identity-verifications/";

/// The V2 auth scheme: `Authorization: PortOne <API secret>`.
const AUTH_SCHEME: &str = "PortOne";

fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, Json(json!({"type": error_type, "message": message}))).into_response()
}

type StoreQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `GET /identity-verifications/{id}`.
pub(in crate::sandbox) async fn get_identity_verification(
    State(sandbox): State<SandboxHandle>,
    headers: HeaderMap,
    query: StoreQuery,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    // A path that does not decode (bad percent-encoding, not UTF-8) is a malformed request.
    answer(&sandbox, &headers, query, id.map(|Path(id)| id).ok())
}

/// `GET /identity-verifications/`: the empty id, which the route above cannot match.
pub(in crate::sandbox) async fn get_identity_verification_without_id(
    State(sandbox): State<SandboxHandle>,
    headers: HeaderMap,
    query: StoreQuery,
) -> Response {
    answer(&sandbox, &headers, query, Some(String::new()))
}

fn answer(sandbox: &SandboxHandle, headers: &HeaderMap, query: StoreQuery, id: Option<String>) -> Response {
    let config = &sandbox.shared.config;
    if presented_secret(headers) != Some(config.v2_api_secret.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "invalid or missing API secret",
        );
    }
    let Some(id) = id else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "identityVerificationId does not decode",
        );
    };
    if id.is_empty() || id.chars().count() > MAX_IDENTITY_VERIFICATION_ID_CHARS {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "identityVerificationId must be 1 to 200 characters",
        );
    }
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "the query string does not parse",
        );
    };
    if query
        .get("storeId")
        .is_some_and(|store_id| *store_id != config.store_id)
    {
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the API secret has no access to this store",
        );
    }
    let record = sandbox
        .shared
        .state()
        .identity_verification(&id, &config.store_id);
    match record {
        Some(record) => Json(record).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "IDENTITY_VERIFICATION_NOT_FOUND",
            "identity verification not found",
        ),
    }
}

/// The secret of `Authorization: PortOne <secret>`; the scheme is case-insensitive, as HTTP
/// auth schemes are.
fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, secret) = value.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case(AUTH_SCHEME) && !secret.is_empty()).then_some(secret)
}

/// An injected status fault's body on the V2 endpoint: V2's error object, with a type of ours.
pub(in crate::sandbox) fn v2_status_fault_body() -> Value {
    json!({"type": "SANDBOX_FAULT", "message": "sandbox fault"})
}

/// An injected wrong-types fault's body on the V2 endpoint: a verification whose fields all have
/// the wrong JSON types.
pub(in crate::sandbox) fn v2_wrong_types_body() -> Value {
    json!({
        "status": 1, "id": false, "channel": "LIVE", "verifiedCustomer": {"name": 7, "ci": []},
        "requestedAt": 1_700_000_000, "updatedAt": true, "statusChangedAt": null,
        "verifiedAt": [], "pgTxId": 0, "pgRawResponse": {}, "version": 2
    })
}
