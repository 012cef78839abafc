//! `SandboxHandle::certify`, what `Sandbox/Certify` does: a new record PortOne's lookup serves.

use super::start;
use crate::sandbox::{
    identities::{ADULT, NO_PHONE, ci_for, di_for},
    people::Person,
};

#[tokio::test]
async fn a_certified_adult_is_the_fixture_adult_under_a_new_imp_uid_and_merchant_uid() {
    let harness = start().await;
    harness.handle().set_clock_skew(-90);
    let imp_uid = harness.handle().certify(Person::Adult, "order-7", None, 0);
    assert!(imp_uid.starts_with("imp_") && imp_uid.len() == 16, "{imp_uid}");
    assert!(!imp_uid.starts_with("imp_1"), "{imp_uid}");
    let record = harness.lookup_ok(&imp_uid).await;
    let fixture = harness.lookup_ok(ADULT).await;
    for same in [
        "name",
        "birthday",
        "birth",
        "gender",
        "phone",
        "carrier",
        "unique_key",
        "unique_in_site",
    ] {
        assert_eq!(record[same], fixture[same], "{same}");
    }
    assert_eq!(record["merchant_uid"], "order-7");
    // Certified now by the sandbox's clock, 90 s behind the real one.
    let certified_at = record["certified_at"].as_i64().unwrap();
    let expected = chrono::Utc::now().timestamp() - 90;
    assert!(
        (certified_at - expected).abs() <= 2,
        "{certified_at} vs {expected}"
    );
    let pg_tid = record["pg_tid"].as_str().unwrap();
    assert_eq!(pg_tid.len(), 24);
    assert!(pg_tid.ends_with(&imp_uid[imp_uid.len() - 10..]));
}

#[tokio::test]
async fn a_person_key_is_another_person_with_the_same_traits_and_each_call_a_new_imp_uid() {
    let harness = start().await;
    let handle = harness.handle();
    let first = handle.certify(Person::Minor, "m", Some("tester-1"), 60);
    let second = handle.certify(Person::Minor, "m", Some("tester-1"), 60);
    assert_ne!(first, second);
    let record = harness.lookup_ok(&first).await;
    assert_eq!(record["unique_key"], ci_for("tester-1"));
    assert_eq!(record["unique_in_site"], di_for("tester-1"));
    assert_eq!(record["carrier"], "KT");
    assert_eq!(record["name"], "김민준");
}

#[tokio::test]
async fn the_shapes_without_phone_ci_or_certification_are_served_as_portone_sends_them() {
    let harness = start().await;
    let handle = harness.handle();
    let no_phone = harness
        .lookup_ok(&handle.certify(Person::NoPhone, "m", None, 0))
        .await;
    assert!(no_phone.get("phone").is_none() && no_phone.get("carrier").is_none());
    assert_eq!(no_phone["pg_provider"], "danal");
    assert!(no_phone["unique_key"].is_string() && no_phone["gender"].is_string());

    // The Inicis person is the NO_PHONE fixture, key for key.
    let inicis = harness
        .lookup_ok(&handle.certify(Person::Inicis, "m", None, 0))
        .await;
    let fixture = harness.lookup_ok(NO_PHONE).await;
    let keys = |value: &serde_json::Value| {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&inicis), keys(&fixture));
    assert_eq!(inicis["unique_key"], fixture["unique_key"]);

    let no_ci = harness
        .lookup_ok(&handle.certify(Person::NoCi, "m", None, 0))
        .await;
    assert!(no_ci["unique_key"].is_null() && no_ci["certified"] == true);

    let abandoned = harness
        .lookup_ok(&handle.certify(Person::NotCertified, "m-4", None, 0))
        .await;
    assert_eq!(abandoned["certified"], false);
    assert!(abandoned["name"].is_null() && abandoned["certified_at"].is_null());
    assert_eq!(abandoned["merchant_uid"], "m-4");
}
