//! PortOne V2's `GET /identity-verifications/{id}`: the shape of each status, optional fields
//! absent, typed errors, inserted records, and one person on V1 and V2.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Value, json};

use super::{Harness, read, start, start_with, v2_error};
use crate::sandbox::{
    SANDBOX_STORE_ID, SANDBOX_V2_CHANNEL_KEY, SandboxConfig,
    identities::{ADULT, ci_for, di_for},
    people::Person,
    v2::{
        ChannelType, IdentifierForm, IdentityVerificationRecord, SANDBOX_OTHER_STORE_ID,
        SANDBOX_V2_TEST_CHANNEL_KEY, V2_ADULT, V2_FAILED, V2_INICIS, V2_LGU_MVNO_OTHER_GENDER,
        V2_NAME_AND_BIRTH_DATE_ONLY, V2_OTHER_STORE, V2_READY, V2_TEST_CHANNEL,
    },
};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn is_rfc3339(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| chrono::DateTime::parse_from_rfc3339(text).is_ok())
}

#[tokio::test]
async fn a_verified_adult_has_every_field_of_portones_verified_shape() {
    let harness = start().await;
    let body = harness.v2_ok(V2_ADULT).await;
    assert_eq!(
        keys(&body),
        [
            "channel",
            "id",
            "pgRawResponse",
            "pgTxId",
            "requestedAt",
            "status",
            "statusChangedAt",
            "updatedAt",
            "verifiedAt",
            "verifiedCustomer",
            "version",
        ]
    );
    assert_eq!(
        (body["status"].clone(), body["version"].clone()),
        (json!("VERIFIED"), json!("V2"))
    );
    assert_eq!(body["id"], V2_ADULT);
    for time in ["requestedAt", "updatedAt", "statusChangedAt", "verifiedAt"] {
        assert!(is_rfc3339(&body[time]), "{time}: {}", body[time]);
    }
    let verified_at = chrono::DateTime::parse_from_rfc3339(body["verifiedAt"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now().timestamp() - 120 - verified_at.timestamp()).abs() <= 2);
    assert!(body["pgTxId"].is_string() && body["pgRawResponse"].is_string());
    assert_eq!(
        body["channel"],
        json!({"type": "LIVE", "id": "channel-id-sandbox-live", "key": SANDBOX_V2_CHANNEL_KEY,
               "name": "sandbox danal (LIVE)", "pgProvider": "DANAL", "pgMerchantId": "sandbox_danal"})
    );
    assert_eq!(
        body["verifiedCustomer"],
        json!({"name": "홍길동", "operator": "SKT", "phoneNumber": "01012345678",
               "birthDate": "1990-03-15", "gender": "MALE", "isForeigner": false,
               "ci": ci_for("hong"), "di": di_for("hong")})
    );
    // It reads back as the record type, field for field.
    let record: IdentityVerificationRecord = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(serde_json::to_value(&record).unwrap(), body);
}

#[tokio::test]
async fn ready_and_failed_have_their_own_fields_and_no_verified_ones() {
    let harness = start().await;
    let ready = harness.v2_ok(V2_READY).await;
    assert_eq!(ready["status"], "READY");
    assert_eq!(
        keys(&ready),
        [
            "channel",
            "id",
            "requestedAt",
            "requestedCustomer",
            "status",
            "statusChangedAt",
            "updatedAt",
            "version"
        ]
    );
    assert_eq!(ready["requestedCustomer"], json!({}));

    let failed = harness.v2_ok(V2_FAILED).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        keys(&failed),
        [
            "channel",
            "failure",
            "id",
            "requestedAt",
            "requestedCustomer",
            "status",
            "statusChangedAt",
            "updatedAt",
            "version",
        ]
    );
    assert_eq!(keys(&failed["failure"]), ["pgCode", "pgMessage", "reason"]);
}

#[tokio::test]
async fn optional_customer_fields_are_absent_not_null() {
    let harness = start().await;
    let minimal = harness.v2_ok(V2_NAME_AND_BIRTH_DATE_ONLY).await;
    assert_eq!(
        minimal["verifiedCustomer"],
        json!({"name": "한지민", "birthDate": "1993-09-09"})
    );

    let other = harness.v2_ok(V2_LGU_MVNO_OTHER_GENDER).await;
    let customer = &other["verifiedCustomer"];
    assert_eq!(
        (customer["operator"].clone(), customer["gender"].clone()),
        (json!("LGU_MVNO"), json!("OTHER"))
    );
    assert_eq!(customer["isForeigner"], true);

    let test_channel = harness.v2_ok(V2_TEST_CHANNEL).await;
    assert_eq!(test_channel["channel"]["type"], "TEST");
    assert_eq!(test_channel["channel"]["key"], SANDBOX_V2_TEST_CHANNEL_KEY);

    let inicis = harness.v2_ok(V2_INICIS).await;
    assert_eq!(inicis["channel"]["pgProvider"], "INICIS_UNIFIED");
    // KG Inicis (V2's OpenAPI): phone, gender and foreigner status always; operator and DI never.
    assert_eq!(
        keys(&inicis["verifiedCustomer"]),
        ["birthDate", "ci", "gender", "isForeigner", "name", "phoneNumber"]
    );
    assert!(inicis["pgTxId"].as_str().unwrap().starts_with("INISA_"));
}

#[tokio::test]
async fn one_person_is_the_same_on_v1_and_v2() {
    let harness = start().await;
    let v1 = harness.lookup_ok(ADULT).await;
    let v2 = harness.v2_ok(V2_ADULT).await;
    let customer = &v2["verifiedCustomer"];
    assert_eq!(customer["ci"], v1["unique_key"]);
    assert_eq!(customer["di"], v1["unique_in_site"]);
    assert_eq!(customer["name"], v1["name"]);
    assert_eq!(customer["birthDate"], v1["birthday"]);
    assert_eq!(customer["phoneNumber"], v1["phone"]);
}

#[tokio::test]
async fn errors_are_typed_401_400_403_404() {
    let harness = start().await;
    for authorization in [
        None,
        Some("PortOne wrong"),
        Some("PortOne"),
        Some("Bearer sandbox_v2_api_secret"),
        Some("sandbox_v2_api_secret"),
    ] {
        let (status, body) = read(harness.v2_get(V2_ADULT, authorization).await).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert!(v2_error("UNAUTHORIZED")(&body), "{body}");
    }
    // The scheme is case-insensitive.
    let lowercase = harness
        .v2_get(V2_ADULT, Some("portone sandbox_v2_api_secret"))
        .await;
    assert_eq!(lowercase.status(), 200);

    let too_long = "i".repeat(201);
    for path in ["", too_long.as_str(), "%FF%FE"] {
        let (status, body) = harness.v2_lookup(path).await;
        assert_eq!(status, 400, "{path}");
        assert!(v2_error("INVALID_REQUEST")(&body), "{body}");
    }
    assert_eq!(harness.v2_lookup(&"i".repeat(200)).await.0, 404);

    let (status, body) = harness
        .v2_lookup(&format!("{V2_ADULT}?storeId={SANDBOX_OTHER_STORE_ID}"))
        .await;
    assert_eq!(status, 403);
    assert!(v2_error("FORBIDDEN")(&body), "{body}");
    let (status, _) = harness
        .v2_lookup(&format!("{V2_ADULT}?storeId={SANDBOX_STORE_ID}"))
        .await;
    assert_eq!(status, 200);

    for id in ["no-such-verification", V2_OTHER_STORE, ADULT] {
        let (status, body) = harness.v2_lookup(id).await;
        assert_eq!(status, 404, "{id}");
        assert!(v2_error("IDENTITY_VERIFICATION_NOT_FOUND")(&body), "{body}");
    }
    let stats = harness.handle().stats();
    assert_eq!(stats.identity_verification_lookups, 15);
    assert_eq!((stats.certification_lookups, stats.unauthorized), (0, 5));
}

#[tokio::test]
async fn the_configured_secret_and_store_are_the_ones_accepted() {
    let config = SandboxConfig {
        v2_api_secret: "another-secret".to_owned(),
        store_id: "store-custom".to_owned(),
        ..SandboxConfig::default()
    };
    let harness = start_with(config).await;
    assert_eq!(harness.v2_lookup(V2_ADULT).await.0, 401);
    let custom = |query: &str| {
        let harness: &Harness = &harness;
        let path = format!("{V2_ADULT}{query}");
        async move {
            harness
                .v2_get(&path, Some("PortOne another-secret"))
                .await
                .status()
        }
    };
    assert_eq!(custom("?storeId=store-custom").await, 200);
    assert_eq!(custom(&format!("?storeId={SANDBOX_STORE_ID}")).await, 403);
}

#[tokio::test]
async fn inserted_and_certified_verifications_are_served_in_their_store() {
    let harness = start().await;
    let handle = harness.handle();
    let mut record: IdentityVerificationRecord =
        serde_json::from_value(harness.v2_ok(V2_ADULT).await).unwrap();
    record.id = "inserted-1".to_owned();
    record.status = "SOMETHING_NEW".to_owned();
    handle.insert_identity_verification(record.clone());
    assert_eq!(harness.v2_ok("inserted-1").await["status"], "SOMETHING_NEW");
    record.id = "elsewhere-1".to_owned();
    handle.insert_identity_verification_in_store(SANDBOX_OTHER_STORE_ID, record);
    assert_eq!(harness.v2_lookup("elsewhere-1").await.0, 404);

    handle.set_clock_skew(-90);
    handle
        .certify_identity_verification(
            Person::Adult,
            "order-iv-1",
            Some("v2-person"),
            30,
            ChannelType::Live,
            IdentifierForm::Standard,
        )
        .unwrap();
    let body = harness.v2_ok("order-iv-1").await;
    assert_eq!(body["verifiedCustomer"]["ci"], ci_for("v2-person"));
    let verified_at = chrono::DateTime::parse_from_rfc3339(body["verifiedAt"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now().timestamp() - 120 - verified_at.timestamp()).abs() <= 2);
    // An id succeeds only once; a READY one may still complete.
    assert!(
        handle
            .certify_identity_verification(
                Person::Adult,
                "order-iv-1",
                None,
                0,
                ChannelType::Live,
                IdentifierForm::Standard
            )
            .is_err()
    );
    handle
        .certify_identity_verification(
            Person::NotCertified,
            "order-iv-2",
            None,
            0,
            ChannelType::Test,
            IdentifierForm::Standard,
        )
        .unwrap();
    assert_eq!(harness.v2_ok("order-iv-2").await["status"], "READY");
    handle
        .certify_identity_verification(
            Person::NoCi,
            "order-iv-2",
            None,
            0,
            ChannelType::Test,
            IdentifierForm::Standard,
        )
        .unwrap();
    let no_ci = harness.v2_ok("order-iv-2").await;
    assert_eq!(no_ci["status"], "VERIFIED");
    assert!(no_ci["verifiedCustomer"].get("ci").is_none());
}

#[tokio::test]
async fn a_verification_may_write_ci_and_di_in_base64url_without_padding() {
    let harness = start().await;
    harness
        .handle()
        .certify_identity_verification(
            Person::Adult,
            "iv-url-safe",
            Some("url-safe"),
            0,
            ChannelType::Live,
            IdentifierForm::UrlSafeUnpadded,
        )
        .unwrap();
    let customer = harness.v2_ok("iv-url-safe").await["verifiedCustomer"].clone();
    let url_safe = |standard: String| URL_SAFE_NO_PAD.encode(STANDARD.decode(standard).unwrap());
    assert_eq!(customer["ci"], url_safe(ci_for("url-safe")));
    assert_eq!(customer["di"], url_safe(di_for("url-safe")));
    assert_ne!(customer["ci"], ci_for("url-safe"));
}

#[tokio::test]
async fn the_admin_route_inserts_verifications() {
    let harness = start().await;
    let mut body = harness.v2_ok(V2_READY).await;
    body["id"] = json!("admin-iv");
    let response = harness
        .client
        .post(harness.url("/__sandbox/identity-verifications"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(harness.v2_ok("admin-iv").await["status"], "READY");
    body["id"] = json!("admin-iv-elsewhere");
    body["storeId"] = json!(SANDBOX_OTHER_STORE_ID);
    let url = harness.url("/__sandbox/identity-verifications");
    let response = harness
        .client
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(harness.v2_lookup("admin-iv-elsewhere").await.0, 404);
    // Not counted as lookups.
    assert_eq!(harness.handle().stats().identity_verification_lookups, 3);
}
