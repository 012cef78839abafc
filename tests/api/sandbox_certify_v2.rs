//! `Sandbox/Certify` beyond V1's main merchant: a PortOne V2 identity verification, read back from
//! the sandbox over HTTP to see exactly what PortOne's V2 would answer (portone_v2.rs has the
//! service Verify V2), and the sub-merchant's tier.

use certification_service::sandbox::{
    SANDBOX_STORE_ID, SANDBOX_TIER, SANDBOX_V2_API_SECRET, SANDBOX_V2_CHANNEL_KEY,
    grpc::proto::{CertifyRequest, ChannelType, Person},
    identities::{ci_for, di_for},
};
use tonic::Code;

use crate::{
    certify::{CertifyRequestExt, certify, v1_request, v2_request},
    helpers::{App, TestApp, assert_status, spawn_app},
    sessions::redeem,
};

/// Certifies through `Sandbox/Certify` and reads the verification back from the sandbox's V2
/// over HTTP, as PortOne would answer it.
async fn certify_and_read(app: &TestApp, request: CertifyRequest) -> serde_json::Value {
    let id = certify(app, request).await.unwrap();
    let url = format!(
        "{}/identity-verifications/{id}?storeId={SANDBOX_STORE_ID}",
        app.sandbox.base_url()
    );
    let answer = reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("PortOne {SANDBOX_V2_API_SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

#[tokio::test]
async fn certify_with_an_identity_verification_id_makes_a_v2_verification_of_the_same_person() {
    let app = spawn_app().await;
    let body = certify_and_read(&app, v2_request("iv-signup-1", Person::Adult)).await;
    assert_eq!(body["status"], "VERIFIED");
    assert_eq!(body["id"], "iv-signup-1");
    assert_eq!(body["version"], "V2");
    assert_eq!(body["channel"]["type"], "LIVE");
    assert_eq!(body["channel"]["key"], SANDBOX_V2_CHANNEL_KEY);
    let customer = &body["verifiedCustomer"];
    assert_eq!(customer["name"], "홍길동");
    assert_eq!(customer["birthDate"], "1990-03-15");
    assert_eq!(customer["gender"], "MALE");
    assert_eq!(customer["ci"], ci_for("hong"), "the V1 adult's CI");
    assert_eq!(customer["di"], di_for("hong"));

    let test_channel = v2_request("iv-test-1", Person::Inicis).on_channel(ChannelType::Test);
    let body = certify_and_read(&app, test_channel).await;
    assert_eq!(body["channel"]["type"], "TEST");
    assert_eq!(body["channel"]["pgProvider"], "INICIS_UNIFIED");
    let customer = body["verifiedCustomer"].as_object().unwrap();
    // KG Inicis through V2: never operator or DI; phone and gender always.
    for absent in ["operator", "di"] {
        assert!(!customer.contains_key(absent), "{absent}");
    }
    for present in ["gender", "phoneNumber", "isForeigner"] {
        assert!(customer.contains_key(present), "{present}");
    }

    let no_ci = certify_and_read(&app, v2_request("iv-no-ci", Person::NoCi)).await;
    assert!(no_ci["verifiedCustomer"].get("ci").is_none());
    let ready = certify_and_read(&app, v2_request("iv-ready", Person::NotCertified)).await;
    assert_eq!(ready["status"], "READY");

    // An id succeeds once; both ids at once, or a tier on V2, are refused.
    let refused = [
        v2_request("iv-signup-1", Person::Adult),
        CertifyRequest {
            merchant_uid: "m-both".to_owned(),
            ..v2_request("iv-both", Person::Adult)
        },
        CertifyRequest {
            tier: Some("T01".to_owned()),
            ..v2_request("iv-tier", Person::Adult)
        },
    ];
    for request in refused {
        assert_status(
            app.sandbox_client().certify(request).await,
            Code::InvalidArgument,
            "INVALID_IDENTITY_VERIFICATION_ID",
        );
    }
}

#[tokio::test]
async fn certify_with_the_sandboxs_tier_makes_a_certification_only_that_tier_sees() {
    let request = || CertifyRequest {
        tier: Some(SANDBOX_TIER.to_owned()),
        ..v1_request("m-tier", Person::Adult)
    };
    // A service configured as the sub-merchant sends its Tier header and finds it ...
    let sub_merchant = App::new()
        .adjust(|settings| settings.portone_v1.as_mut().unwrap().tier = Some(SANDBOX_TIER.into()))
        .spawn()
        .await;
    let imp_uid = certify(&sub_merchant, request()).await.unwrap();
    let identity = redeem(&sub_merchant, "m-tier", &imp_uid)
        .await
        .unwrap()
        .identity
        .unwrap();
    assert_eq!(identity.ci, ci_for("hong"));
    assert_eq!(
        sub_merchant.sandbox.stats().last_tier.as_deref(),
        Some(SANDBOX_TIER)
    );

    // ... the main merchant, without the header, does not.
    let main_merchant = spawn_app().await;
    let imp_uid = certify(&main_merchant, request()).await.unwrap();
    assert_status(
        redeem(&main_merchant, "m-tier", &imp_uid).await,
        Code::NotFound,
        "CERTIFICATION_NOT_FOUND",
    );
    assert_eq!(main_merchant.sandbox.stats().last_tier, None);
}
