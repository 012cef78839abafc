//! Certification lookups: authorization, unknown imp_uids, the fixtures and inserted records.

use super::{envelope_error, read, start};
use crate::sandbox::identities::{ADULT, CertificationRecord, NO_PHONE, NOT_CERTIFIED};

#[tokio::test]
async fn lookups_accept_both_authorization_styles_and_refuse_bad_tokens() {
    let harness = start().await;
    let token = harness.access_token().await;
    assert_eq!(harness.lookup(ADULT, Some(&token)).await.status(), 200);
    assert_eq!(
        harness
            .lookup(ADULT, Some(&format!("Bearer {token}")))
            .await
            .status(),
        200
    );
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    for authorization in [
        None,
        Some(unknown.to_owned()),
        Some(format!("Bearer {unknown}")),
        Some("Bearer".into()),
    ] {
        let (status, body) = read(harness.lookup(ADULT, authorization.as_deref()).await).await;
        assert_eq!((status, body), (401, envelope_error(-1, "Unauthenticated")));
    }
    assert_eq!(harness.handle().stats().unauthorized, 4);
}

#[tokio::test]
async fn an_unknown_imp_uid_is_404() {
    let harness = start().await;
    let token = harness.access_token().await;
    for imp_uid in ["imp_999999999999", "imp_1%2F2", "%FF%FE"] {
        let (status, body) = read(harness.lookup(imp_uid, Some(&token)).await).await;
        assert_eq!(
            (status, body),
            (404, envelope_error(-1, "인증결과가 존재하지 않습니다."))
        );
    }
}

#[tokio::test]
async fn fixtures_are_served_in_portone_shapes() {
    let harness = start().await;
    let adult = harness.lookup_ok(ADULT).await;
    assert_eq!(adult["name"], "홍길동");
    assert_eq!(adult["unique_key"].as_str().unwrap().len(), 88);
    assert_eq!(adult["unique_in_site"].as_str().unwrap().len(), 64);
    assert_eq!(adult["phone"], "01012345678");
    assert_eq!(adult["certified"], true);
    let certified_at = adult["certified_at"].as_i64().unwrap();
    assert!((chrono::Utc::now().timestamp() - 120 - certified_at).abs() <= 2);

    let no_phone = harness.lookup_ok(NO_PHONE).await;
    let object = no_phone.as_object().unwrap();
    assert!(!object.contains_key("phone") && !object.contains_key("carrier"));
    assert!(object["gender"].is_null() && object["unique_in_site"].is_null());

    let not_certified = harness.lookup_ok(NOT_CERTIFIED).await;
    assert_eq!(not_certified["certified"], false);
    assert!(not_certified["unique_key"].is_null() && not_certified["certified_at"].is_null());
}

#[tokio::test]
async fn fixtures_follow_the_sandbox_clock() {
    let harness = start().await;
    let token = harness.access_token().await;
    // The token was issued on the unskewed clock, and is still valid a day earlier.
    harness.handle().set_clock_skew(-86_400);
    let (status, body) = read(harness.lookup(ADULT, Some(&token)).await).await;
    assert_eq!(status, 200);
    let certified_at = body["response"]["certified_at"].as_i64().unwrap();
    assert!((chrono::Utc::now().timestamp() - 86_400 - 120 - certified_at).abs() <= 2);
}

#[tokio::test]
async fn inserted_records_are_served_and_shadow_fixtures() {
    let harness = start().await;
    let birthday = chrono::NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
    let custom =
        CertificationRecord::certified("imp_555555555555", "custom", "테스트", birthday, 1_800_000_000);
    harness.handle().insert_certification(custom.clone());
    let served: CertificationRecord =
        serde_json::from_value(harness.lookup_ok("imp_555555555555").await).unwrap();
    assert_eq!(served, custom);

    let replaced = CertificationRecord {
        name: Some("대체".into()),
        ..CertificationRecord::certified(ADULT, "other", "x", birthday, 1)
    };
    harness.handle().insert_certification(replaced);
    assert_eq!(harness.lookup_ok(ADULT).await["name"], "대체");
}
