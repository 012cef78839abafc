//! Two merchants and a sub-merchant: each sees only its own certifications, and the `Tier`
//! header selects the sub-merchant's.

use serde_json::json;

use super::{envelope_error, start, start_with};
use crate::sandbox::{
    SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET, SANDBOX_TIER, SandboxConfig,
    certify::UnknownTier,
    identities::{
        ADULT, CertificationRecord, FOREIGNER, OTHER_MERCHANT_ADULT, OTHER_MERCHANT_FOREIGNER, TIER_ADULT,
        ci_for, di_for,
    },
    merchants::Owner,
    people::Person,
};

const NOT_FOUND: &str = "인증결과가 존재하지 않습니다.";

#[tokio::test]
async fn each_merchant_sees_only_its_own_certifications() {
    let harness = start().await;
    let main = harness.access_token().await;
    let other = harness
        .access_token_of(SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET)
        .await;
    assert_ne!(main, other);
    assert_eq!(harness.handle().stats().tokens_issued, 2);
    // Asking again returns each merchant's same token.
    assert_eq!(harness.access_token().await, main);

    for (token, imp_uid) in [(&main, OTHER_MERCHANT_ADULT), (&other, ADULT)] {
        let (status, body) = harness.lookup_with_tier(imp_uid, token, None).await;
        assert_eq!((status, body), (404, envelope_error(-1, NOT_FOUND)), "{imp_uid}");
    }
    let (status, body) = harness.lookup_with_tier(OTHER_MERCHANT_ADULT, &other, None).await;
    assert_eq!(status, 200);
    let record = &body["response"];
    // The same person as ADULT (same CI) at another site (another DI), without the contract.
    assert_eq!(record["unique_key"], ci_for("hong"));
    assert_ne!(record["unique_in_site"], json!(di_for("hong")));
    assert_eq!(record["unique_in_site"].as_str().unwrap().len(), 64);
    assert_eq!(
        (record["foreigner"].clone(), record["foreigner_v2"].clone()),
        (json!(false), json!(null))
    );

    let (_, body) = harness
        .lookup_with_tier(OTHER_MERCHANT_FOREIGNER, &other, None)
        .await;
    assert_eq!(body["response"]["foreigner_v2"], json!(null));
    assert_eq!(body["response"]["foreigner"], false);
    // The main merchant, with the contract, keeps true/true.
    let (_, body) = harness.lookup_with_tier(FOREIGNER, &main, None).await;
    assert_eq!(
        (
            body["response"]["foreigner"].clone(),
            body["response"]["foreigner_v2"].clone()
        ),
        (json!(true), json!(true))
    );
}

#[tokio::test]
async fn certifications_made_for_the_other_merchant_are_its_own() {
    let harness = start().await;
    let handle = harness.handle();
    let imp_uid = handle
        .certify_as(Owner::other_merchant(), Person::Foreigner, "other-order", None, 0)
        .unwrap();
    let main = harness.access_token().await;
    let other = harness
        .access_token_of(SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET)
        .await;
    assert_eq!(harness.lookup_with_tier(&imp_uid, &main, None).await.0, 404);
    let (status, body) = harness.lookup_with_tier(&imp_uid, &other, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["foreigner_v2"], json!(null));

    // The admin route takes the owner too.
    let record = CertificationRecord::certified(
        "imp_777777777777",
        "x",
        "관리자",
        crate::sandbox::record::date(1999, 1, 1),
        1,
    );
    let mut body = serde_json::to_value(&record).unwrap();
    body["merchant"] = json!("other");
    let response = harness
        .client
        .post(harness.url("/__sandbox/certifications"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        harness.lookup_with_tier("imp_777777777777", &main, None).await.0,
        404
    );
    assert_eq!(
        harness.lookup_with_tier("imp_777777777777", &other, None).await.0,
        200
    );
}

#[tokio::test]
async fn tier_records_need_their_tier_header_and_a_tier_header_sees_only_them() {
    let harness = start().await;
    let handle = harness.handle();
    let token = harness.access_token().await;
    let made = handle
        .certify_as(Owner::tier(SANDBOX_TIER), Person::Adult, "tier-order", None, 0)
        .unwrap();
    for imp_uid in [TIER_ADULT, made.as_str()] {
        assert_eq!(
            harness.lookup_with_tier(imp_uid, &token, None).await.0,
            404,
            "{imp_uid}"
        );
        assert_eq!(
            harness.lookup_with_tier(imp_uid, &token, Some("T02")).await.0,
            404
        );
        let (status, body) = harness
            .lookup_with_tier(imp_uid, &token, Some(SANDBOX_TIER))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["response"]["unique_key"], ci_for("hong"));
    }
    assert_eq!(handle.stats().last_tier.as_deref(), Some(SANDBOX_TIER));
    // A record without a tier is not visible with a Tier header.
    assert_eq!(
        harness
            .lookup_with_tier(ADULT, &token, Some(SANDBOX_TIER))
            .await
            .0,
        404
    );
    assert_eq!(harness.lookup_with_tier(ADULT, &token, None).await.0, 200);
    assert_eq!(handle.stats().last_tier, None);
    // The other merchant has no sub-merchant.
    let other = harness
        .access_token_of(SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET)
        .await;
    assert_eq!(
        harness
            .lookup_with_tier(TIER_ADULT, &other, Some(SANDBOX_TIER))
            .await
            .0,
        404
    );
    // Only the configured tier can own certifications.
    assert_eq!(
        handle.certify_as(Owner::tier("T02"), Person::Adult, "m", None, 0),
        Err(UnknownTier)
    );
}

#[tokio::test]
async fn a_sandbox_without_a_tier_serves_no_tier_fixture() {
    let harness = start_with(SandboxConfig {
        tier: None,
        ..SandboxConfig::default()
    })
    .await;
    let token = harness.access_token().await;
    assert_eq!(
        harness
            .lookup_with_tier(TIER_ADULT, &token, Some(SANDBOX_TIER))
            .await
            .0,
        404
    );
    assert_eq!(
        harness
            .handle()
            .certify_as(Owner::tier(SANDBOX_TIER), Person::Adult, "m", None, 0),
        Err(UnknownTier)
    );
}
