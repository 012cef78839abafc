//! Caller authentication: bearer tokens from CALLER_TOKENS on every CertificationService call;
//! health stays open for the kubelet.

use certification_service::{
    access::{CallerPermissions, CallerTokens},
    app::SERVICE_NAME,
    config::Settings,
    grpc::proto::{CheckDuplicateRequest, UnlinkRequest, check_duplicate_request::Key},
    sandbox::identities::{ADULT, ci_for},
};
use tonic::{Code, Request, metadata::MetadataValue};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{App, assert_status, verify_request};

const SIGNUP_TOKEN: &str = "signup-token-0123456789abcdef";
const RECOVERY_TOKEN: &str = "recovery-token-0123456789abcdef";

/// CALLER_TOKENS with a signup and a recovery caller.
fn authenticated(settings: &mut Settings) {
    let tokens = format!("signup={SIGNUP_TOKEN},recovery={RECOVERY_TOKEN}");
    settings.server.caller_tokens = Some(CallerTokens::parse(&tokens).unwrap());
    settings.server.caller_permissions = Some(CallerPermissions::parse("*").unwrap());
}

fn with_authorization<T>(message: T, value: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = value {
        request
            .metadata_mut()
            .insert("authorization", MetadataValue::try_from(value).unwrap());
    }
    request
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated_and_never_reaches_portone() {
    let app = App::new().adjust(authenticated).spawn().await;
    let result = app
        .client
        .clone()
        .verify(with_authorization(verify_request(ADULT), None))
        .await;
    assert_status(result, Code::Unauthenticated, "UNAUTHENTICATED");
    assert_eq!(app.sandbox.stats().get_token_calls, 0);
    assert_eq!(app.sandbox.stats().certification_lookups, 0);
}

#[tokio::test]
async fn a_wrong_or_malformed_token_is_unauthenticated_on_every_method() {
    let app = App::new().adjust(authenticated).spawn().await;
    let mut client = app.client.clone();
    for presented in [
        "Bearer signup-token-0123456789abcdeX",
        "Bearer ",
        SIGNUP_TOKEN,
        "Basic c2lnbnVwOnRva2Vu",
        "Bearer signup-token-0123456789abcdef extra",
    ] {
        let verify = client
            .verify(with_authorization(verify_request(ADULT), Some(presented)))
            .await;
        assert_status(verify, Code::Unauthenticated, "UNAUTHENTICATED");
    }
    let wrong = Some("Bearer not-a-configured-token-at-all");
    let check = CheckDuplicateRequest {
        key: Some(Key::Ci(ci_for("hong"))),
        ..Default::default()
    };
    assert_status(
        client.check_duplicate(with_authorization(check, wrong)).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let unlink = UnlinkRequest {
        account_id: "acct-1".into(),
    };
    assert_status(
        client.unlink(with_authorization(unlink, wrong)).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert_eq!(app.sandbox.stats().certification_lookups, 0);
}

#[tokio::test]
async fn each_configured_token_is_accepted_and_health_needs_none() {
    let app = App::new().adjust(authenticated).spawn().await;
    let mut client = app.client.clone();
    for token in [SIGNUP_TOKEN, RECOVERY_TOKEN] {
        let bearer = format!("Bearer {token}");
        client
            .verify(with_authorization(verify_request(ADULT), Some(&bearer)))
            .await
            .unwrap();
    }
    // The scheme is case-insensitive, as HTTP says.
    let lower = format!("bearer {SIGNUP_TOKEN}");
    let check = CheckDuplicateRequest {
        key: Some(Key::Ci(ci_for("hong"))),
        ..Default::default()
    };
    client
        .check_duplicate(with_authorization(check, Some(&lower)))
        .await
        .unwrap();
    assert_eq!(app.health_of(SERVICE_NAME).await.unwrap(), ServingStatus::Serving);
    assert_eq!(app.health_of("").await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn the_callers_name_is_logged_and_its_token_never() {
    let tokens = format!("signup={SIGNUP_TOKEN}");
    let setup = crate::fleet::process_beside_fleet(&[
        ("RUST_LOG", "debug"),
        ("CALLER_TOKENS", &tokens),
        ("CALLER_PERMISSIONS", "*"),
    ])
    .await;
    let service = &setup.service;
    service.wait_serving().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.address))
        .unwrap()
        .connect_lazy();
    let mut client =
        certification_service::grpc::proto::certification_service_client::CertificationServiceClient::new(
            channel,
        );
    let bearer = format!("Bearer {SIGNUP_TOKEN}");
    client
        .verify(with_authorization(verify_request(ADULT), Some(&bearer)))
        .await
        .unwrap();
    let refused = client
        .verify(with_authorization(
            verify_request(ADULT),
            Some("Bearer wrong-token-0123456789"),
        ))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);

    let logs = service.wait_for_log("call refused: no valid caller token").await;
    assert!(logs.contains("caller=signup"), "{logs}");
    assert!(logs.contains("call refused: no valid caller token"), "{logs}");
    assert!(!logs.contains(SIGNUP_TOKEN), "a caller token in the logs");
    assert!(
        !logs.contains("wrong-token-0123456789"),
        "a presented token in the logs"
    );
}
