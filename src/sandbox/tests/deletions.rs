//! `DELETE /certifications/{imp_uid}`: the record once, then 404 to everyone; the lookup's owner
//! rules; faults, latency and stats as for any endpoint; a reset brings deleted records back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{envelope_error, read, start};
use crate::sandbox::{
    Endpoint, Fault, SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET, SANDBOX_TIER,
    identities::{ADULT, ADULT_SECOND_CERTIFICATION, CertificationRecord, OTHER_MERCHANT_ADULT, TIER_ADULT},
    merchants::Owner,
    people::Person,
};

const NOT_FOUND: &str = "인증결과가 존재하지 않습니다.";

/// Asserts that `body`, a delete's answer, is the success envelope of `looked_up`, the record a
/// lookup returned a moment earlier. A fixture is certified minutes before the sandbox's clock, so
/// a second may tick between the two calls: only the clock-made fields (`certified_at` and the
/// `pg_tid` made from it) may differ, and only forward, by a few seconds.
fn assert_answers_with(body: Value, looked_up: &Value) {
    let clock_made = |record: &Value| {
        let mut rest = record.clone();
        let fields = rest.as_object_mut().expect("a record is an object");
        fields.remove("pg_tid");
        let certified_at = fields.remove("certified_at").and_then(|at| at.as_i64());
        (certified_at.expect("a fixture has certified_at"), rest)
    };
    let (code, message) = (body["code"].clone(), body["message"].clone());
    assert_eq!((code, message), (json!(0), Value::Null), "{body}");
    let (deleted_at, deleted) = clock_made(&body["response"]);
    let (looked_up_at, looked_up) = clock_made(looked_up);
    assert_eq!(deleted, looked_up);
    assert!(
        (0..=5).contains(&(deleted_at - looked_up_at)),
        "{deleted_at} vs {looked_up_at}"
    );
}

#[tokio::test]
async fn a_deleted_certification_answers_with_its_record_then_404_to_get_and_delete() {
    let harness = start().await;
    let token = harness.access_token().await;
    let record = harness.lookup_ok(ADULT).await;

    let (status, body) = harness.delete(ADULT, Some(&token), None).await;
    assert_eq!(status, 200);
    assert_answers_with(body, &record);

    let (status, body) = read(harness.lookup(ADULT, Some(&token)).await).await;
    assert_eq!((status, body), (404, envelope_error(-1, NOT_FOUND)));
    let (status, body) = harness.delete(ADULT, Some(&token), None).await;
    assert_eq!((status, body), (404, envelope_error(-1, NOT_FOUND)));
    // Only that record is gone.
    harness.lookup_ok(ADULT_SECOND_CERTIFICATION).await;

    let stats = harness.handle().stats();
    assert_eq!(
        (stats.certification_deletions, stats.certification_lookups),
        (2, 3)
    );
    let deletes: Vec<&String> = stats
        .requests
        .iter()
        .filter(|line| line.starts_with("DELETE "))
        .collect();
    assert_eq!(deletes, [&format!("DELETE /certifications/{ADULT}"); 2]);
}

#[tokio::test]
async fn only_the_owner_with_its_tier_may_delete_a_certification() {
    let harness = start().await;
    let main = harness.access_token().await;
    let other = harness
        .access_token_of(SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET)
        .await;
    for (token, tier, imp_uid) in [
        (&other, None, ADULT),
        (&main, None, OTHER_MERCHANT_ADULT),
        (&main, None, TIER_ADULT),
        (&main, Some(SANDBOX_TIER), ADULT),
        (&main, Some("T99"), TIER_ADULT),
        (&other, Some(SANDBOX_TIER), TIER_ADULT),
    ] {
        let (status, body) = harness.delete(imp_uid, Some(token), tier).await;
        assert_eq!(
            (status, body),
            (404, envelope_error(-1, NOT_FOUND)),
            "{imp_uid} {tier:?}"
        );
    }
    // None of those refusals deleted anything.
    harness.lookup_ok(ADULT).await;
    let (status, _) = harness.lookup_with_tier(OTHER_MERCHANT_ADULT, &other, None).await;
    assert_eq!(status, 200);
    let (status, record) = harness
        .lookup_with_tier(TIER_ADULT, &main, Some(SANDBOX_TIER))
        .await;
    assert_eq!(status, 200);

    let (status, body) = harness.delete(TIER_ADULT, Some(&main), Some(SANDBOX_TIER)).await;
    assert_eq!(status, 200);
    assert_answers_with(body, &record["response"]);
    assert_eq!(harness.handle().stats().last_tier.as_deref(), Some(SANDBOX_TIER));
    let (status, _) = harness
        .lookup_with_tier(TIER_ADULT, &main, Some(SANDBOX_TIER))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deleting_without_a_valid_token_is_401_and_deletes_nothing() {
    let harness = start().await;
    let expired = harness.access_token().await;
    harness.handle().expire_tokens();
    for authorization in [None, Some("not-a-token"), Some(expired.as_str())] {
        let (status, body) = harness.delete(ADULT, authorization, None).await;
        assert_eq!(
            (status, body),
            (401, envelope_error(-1, "Unauthenticated")),
            "{authorization:?}"
        );
    }
    let stats = harness.handle().stats();
    assert_eq!((stats.unauthorized, stats.certification_deletions), (3, 3));
    harness.lookup_ok(ADULT).await;
}

#[tokio::test]
async fn injected_delete_faults_spare_lookups_and_the_retry_deletes() {
    let harness = start().await;
    let token = harness.access_token().await;
    // As a test against the standalone binary would: through the admin route.
    let response = harness
        .client
        .post(harness.url("/__sandbox/faults"))
        .body(
            json!({"endpoint": "delete_certification", "fault": {"kind": "status", "status": 500}, "times": 2})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let record = harness.lookup_ok(ADULT).await;
    for _ in 0..2 {
        let (status, body) = harness.delete(ADULT, Some(&token), None).await;
        assert_eq!((status, body), (500, envelope_error(-1, "sandbox fault")));
        // A faulted delete never reached the record.
        harness.lookup_ok(ADULT).await;
    }
    let (status, body) = harness.delete(ADULT, Some(&token), None).await;
    assert_eq!(status, 200);
    assert_answers_with(body, &record);
    assert_eq!(harness.handle().stats().certification_deletions, 3);

    // Endpoint::Any reaches deletes too, and so does latency.
    harness
        .handle()
        .inject(Endpoint::Any, Fault::Status { status: 503 }, 1);
    let (status, _) = harness.delete(ADULT, Some(&token), None).await;
    assert_eq!(status, 503);
    harness.handle().set_latency(Duration::from_millis(150));
    let started = Instant::now();
    let (status, _) = harness.delete(ADULT, Some(&token), None).await;
    assert_eq!(status, 404);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn certify_made_and_inserted_records_can_be_deleted_and_reset_restores_every_deletion() {
    let harness = start().await;
    let handle = harness.handle();
    let token = harness.access_token().await;
    let certified = handle.certify(Person::Adult, "order-1", None, 0);
    let tier_certified = handle
        .certify_as(Owner::tier(SANDBOX_TIER), Person::Adult, "order-2", None, 0)
        .unwrap();
    let inserted = CertificationRecord {
        imp_uid: "imp_424242424242".into(),
        ..crate::sandbox::identities::fixtures(chrono::Utc::now())[0].clone()
    };
    handle.insert_certification(inserted.clone());

    for (imp_uid, tier) in [
        (ADULT, None),
        (certified.as_str(), None),
        (tier_certified.as_str(), Some(SANDBOX_TIER)),
        (inserted.imp_uid.as_str(), None),
    ] {
        let (status, body) = harness.delete(imp_uid, Some(&token), tier).await;
        assert_eq!((status, &body["response"]["imp_uid"]), (200, &json!(imp_uid)));
        let (status, _) = harness.lookup_with_tier(imp_uid, &token, tier).await;
        assert_eq!(status, 404, "{imp_uid}");
    }
    // Inserting again makes a record exist again, as a new certification would.
    handle.insert_certification(inserted.clone());
    harness.lookup_ok(&inserted.imp_uid).await;
    harness.delete(&inserted.imp_uid, Some(&token), None).await;

    let reset = harness
        .client
        .post(harness.url("/__sandbox/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(handle.stats().certification_deletions, 0);
    for (imp_uid, tier) in [
        (ADULT, None),
        (certified.as_str(), None),
        (tier_certified.as_str(), Some(SANDBOX_TIER)),
        (inserted.imp_uid.as_str(), None),
    ] {
        let (status, body) = harness.lookup_with_tier(imp_uid, &token, tier).await;
        assert_eq!((status, &body["response"]["imp_uid"]), (200, &json!(imp_uid)));
    }
}
