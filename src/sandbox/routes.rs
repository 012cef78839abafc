//! The sandbox's HTTP surface: V1's endpoints ([`super::server`]), V2's ([`super::v2`]), the
//! `/__sandbox/` admin routes ([`super::admin`]), and the fault/latency/stats middleware around
//! them all ([`super::middleware`]).

use axum::{
    Router, middleware,
    routing::{get, post},
};

use super::{
    SandboxHandle, admin,
    middleware::observe,
    server::{
        GET_TOKEN_PATH, delete_certification, get_certification, get_token, method_not_allowed, not_found,
    },
    v2,
};

pub(super) fn router(sandbox: SandboxHandle) -> Router {
    Router::new()
        .route(GET_TOKEN_PATH, post(get_token))
        .route(
            "/certifications/{imp_uid}",
            get(get_certification).delete(delete_certification),
        )
        .route("/identity-verifications/{id}", get(v2::get_identity_verification))
        .route(
            v2::IDENTITY_VERIFICATIONS_PREFIX,
            get(v2::get_identity_verification_without_id),
        )
        .route("/__sandbox/stats", get(admin::stats))
        .route("/__sandbox/reset", post(admin::reset))
        .route("/__sandbox/latency", post(admin::latency))
        .route("/__sandbox/faults", post(admin::faults))
        .route("/__sandbox/tokens/expire", post(admin::expire_tokens))
        .route("/__sandbox/clock", post(admin::clock))
        .route("/__sandbox/certifications", post(admin::insert_certification))
        .route(
            "/__sandbox/identity-verifications",
            post(admin::insert_identity_verification),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A layer on the whole router, not per route, so unknown paths are counted and faulted too.
        .layer(middleware::from_fn_with_state(sandbox.clone(), observe))
        .with_state(sandbox)
}
