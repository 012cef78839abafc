//! The `/__sandbox/` admin routes: JSON equivalents of the [`SandboxHandle`] methods, for the
//! standalone binary. Bodies are read as JSON whatever the content type, so a bare `curl -d` works.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    Endpoint, Fault, SandboxHandle, SandboxStats,
    identities::CertificationRecord,
    merchants::{Merchant, Owner},
    v2::IdentityVerificationRecord,
};

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

pub(super) async fn stats(State(sandbox): State<SandboxHandle>) -> Json<SandboxStats> {
    Json(sandbox.stats())
}

pub(super) async fn reset(State(sandbox): State<SandboxHandle>) -> Response {
    sandbox.reset();
    admin_ok()
}

#[derive(Deserialize)]
struct LatencyRequest {
    millis: u64,
}

pub(super) async fn latency(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
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

pub(super) async fn faults(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
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

pub(super) async fn expire_tokens(State(sandbox): State<SandboxHandle>) -> Response {
    sandbox.expire_tokens();
    admin_ok()
}

#[derive(Deserialize)]
struct ClockRequest {
    skew_seconds: i64,
}

pub(super) async fn clock(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
    match parse_admin_body::<ClockRequest>(&body) {
        Ok(request) => {
            sandbox.set_clock_skew(request.skew_seconds);
            admin_ok()
        }
        Err(response) => response,
    }
}

/// A record plus whose it is: `"merchant"` (`main`, the default, or `other`) and `"tier"`.
#[derive(Deserialize)]
struct CertificationInsert {
    #[serde(flatten)]
    record: CertificationRecord,
    #[serde(default)]
    merchant: Merchant,
    #[serde(default)]
    tier: Option<String>,
}

pub(super) async fn insert_certification(State(sandbox): State<SandboxHandle>, body: Bytes) -> Response {
    match parse_admin_body::<CertificationInsert>(&body) {
        Ok(insert) => {
            let owner = Owner {
                merchant: insert.merchant,
                tier: insert.tier,
            };
            sandbox.insert_certification_as(owner, insert.record);
            admin_ok()
        }
        Err(response) => response,
    }
}

/// A V2 record plus, optionally, the store it is in (`"storeId"`; the configured one by default).
#[derive(Deserialize)]
struct IdentityVerificationInsert {
    #[serde(flatten)]
    record: IdentityVerificationRecord,
    #[serde(default, rename = "storeId")]
    store_id: Option<String>,
}

pub(super) async fn insert_identity_verification(
    State(sandbox): State<SandboxHandle>,
    body: Bytes,
) -> Response {
    match parse_admin_body::<IdentityVerificationInsert>(&body) {
        Ok(IdentityVerificationInsert {
            record,
            store_id: Some(store_id),
        }) => {
            sandbox.insert_identity_verification_in_store(&store_id, record);
            admin_ok()
        }
        Ok(IdentityVerificationInsert {
            record,
            store_id: None,
        }) => {
            sandbox.insert_identity_verification(record);
            admin_ok()
        }
        Err(response) => response,
    }
}
