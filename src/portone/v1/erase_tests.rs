//! The V1 client's deletions against the sandbox over loopback HTTP.

use std::time::Duration;

use tokio::time::Instant;

use super::{PortoneClient, PortoneSettings, TokenCache};
use crate::{
    domain::ImpUid,
    portone::{CircuitSettings, HttpSettings},
    sandbox::{
        Endpoint, Fault, SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, SANDBOX_TIER, Sandbox, SandboxConfig,
        identities::{ADULT, ADULT_SECOND_CERTIFICATION, OTHER_MERCHANT_ADULT, TIER_ADULT},
    },
    secret::Secret,
    service::{CertificationEraser, Erased, ProviderError},
};

const MAX_ATTEMPTS: u32 = 3;

async fn sandbox() -> Sandbox {
    // reqwest is built without a default crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Sandbox::start(listener, SandboxConfig::default()).await.unwrap()
}

fn client(sandbox: &Sandbox, tier: Option<&str>) -> PortoneClient {
    let settings = PortoneSettings {
        base_url: sandbox.base_url(),
        imp_key: SANDBOX_IMP_KEY.to_owned(),
        imp_secret: Secret::new(SANDBOX_IMP_SECRET),
        token_margin: Duration::from_secs(30),
        token_refresh_ahead: Duration::from_secs(20),
        token_lock_ttl: Duration::from_secs(5),
        tier: tier.map(str::to_owned),
        http: HttpSettings {
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            max_attempts: MAX_ATTEMPTS,
            circuit: CircuitSettings {
                failure_threshold: 0,
                open_for: Duration::from_secs(1),
            },
            max_connections: 4,
        },
    };
    PortoneClient::new(settings, TokenCache::in_process()).unwrap()
}

async fn delete(client: &PortoneClient, imp_uid: &str) -> Result<Erased, ProviderError> {
    let imp_uid = ImpUid::parse(imp_uid).unwrap();
    client
        .delete(&imp_uid, Instant::now() + Duration::from_secs(5))
        .await
}

#[tokio::test]
async fn a_certification_is_deleted_once_then_reported_absent() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Deleted);
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Absent);
    // Another merchant's is none of ours to delete: PortOne says it is not there.
    assert_eq!(
        delete(&client, OTHER_MERCHANT_ADULT).await.unwrap(),
        Erased::Absent
    );
    let stats = sandbox.handle().stats();
    assert_eq!(
        (stats.certification_deletions, stats.certification_lookups),
        (3, 0)
    );
    assert_eq!(stats.last_tier, None);
}

#[tokio::test]
async fn a_sub_merchant_client_sends_its_tier() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, Some(SANDBOX_TIER));
    assert_eq!(delete(&client, TIER_ADULT).await.unwrap(), Erased::Deleted);
    assert_eq!(sandbox.handle().stats().last_tier.as_deref(), Some(SANDBOX_TIER));
    // The main merchant's own are not the sub-merchant's.
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Absent);
}

#[tokio::test]
async fn a_500_is_retried_and_the_retry_deletes() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    let handle = sandbox.handle();
    handle.inject(Endpoint::DeleteCertification, Fault::Status { status: 500 }, 1);
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Deleted);
    assert_eq!(handle.stats().certification_deletions, 2);
}

#[tokio::test]
async fn a_delete_that_keeps_failing_is_unavailable() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    let handle = sandbox.handle();
    handle.inject(
        Endpoint::DeleteCertification,
        Fault::Status { status: 500 },
        MAX_ATTEMPTS,
    );
    let error = delete(&client, ADULT).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Unavailable(last) if last == "http 500"),
        "{error:?}"
    );
    assert_eq!(handle.stats().certification_deletions, u64::from(MAX_ATTEMPTS));
    // Nothing was deleted: the next call does it.
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Deleted);
}

#[tokio::test]
async fn an_expired_token_is_replaced_and_the_delete_goes_through() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    let handle = sandbox.handle();
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Deleted);
    handle.expire_tokens();
    assert_eq!(
        delete(&client, ADULT_SECOND_CERTIFICATION).await.unwrap(),
        Erased::Deleted
    );
    let stats = handle.stats();
    assert_eq!(
        (
            stats.unauthorized,
            stats.tokens_issued,
            stats.certification_deletions
        ),
        (1, 2, 3)
    );
}

#[tokio::test]
async fn a_fresh_token_refused_too_is_credentials_rejected() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    sandbox
        .handle()
        .inject(Endpoint::DeleteCertification, Fault::Status { status: 401 }, 2);
    let error = delete(&client, ADULT).await.unwrap_err();
    assert!(matches!(error, ProviderError::CredentialsRejected), "{error:?}");
    let stats = sandbox.handle().stats();
    assert_eq!((stats.certification_deletions, stats.tokens_issued), (2, 1));
}

#[tokio::test]
async fn refusals_and_broken_answers_are_not_taken_for_done() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    let handle = sandbox.handle();
    let cases = [
        Fault::ErrorInEnvelope {
            code: 1,
            message: "삭제할 수 없습니다".into(),
        },
        // A proxy's 404 page says nothing about the record.
        Fault::Html { status: 404 },
        Fault::Status { status: 403 },
        Fault::Malformed,
    ];
    for fault in cases {
        handle.inject(Endpoint::DeleteCertification, fault.clone(), 1);
        let error = delete(&client, ADULT).await.unwrap_err();
        let expected = match fault {
            Fault::ErrorInEnvelope { .. } => {
                matches!(&error, ProviderError::Rejected { status: 200, code: Some(1), message } if message == "삭제할 수 없습니다")
            }
            Fault::Html { .. } => matches!(
                error,
                ProviderError::Rejected {
                    status: 404,
                    code: None,
                    ..
                }
            ),
            Fault::Status { .. } => matches!(
                error,
                ProviderError::Rejected {
                    status: 403,
                    code: Some(-1),
                    ..
                }
            ),
            _ => matches!(error, ProviderError::Malformed(_)),
        };
        assert!(expected, "{fault:?}: {error:?}");
    }
    // None of them deleted it.
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Deleted);
}

#[tokio::test]
async fn a_hanging_delete_ends_at_the_callers_deadline() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, None);
    // A token first, so the deadline is spent on the hanging DELETE alone.
    assert_eq!(delete(&client, ADULT).await.unwrap(), Erased::Deleted);
    sandbox
        .handle()
        .inject(Endpoint::DeleteCertification, Fault::Hang, 1);
    let imp_uid = ImpUid::parse(ADULT_SECOND_CERTIFICATION).unwrap();
    let started = Instant::now();
    let error = client
        .delete(&imp_uid, Instant::now() + Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::DeadlineExceeded), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
