//! The browser's part, two ways:
//! - through `certification.sandbox.v1.Sandbox/Certify` on the server's port, as a caller's
//!   front end would: [`certify`] with a [`v1_request`] (merchant_uid) or a [`v2_request`]
//!   (identity_verification_id), and a person key or a test channel where the test needs one;
//! - straight into the sandbox's records, for any person key, birthday and age:
//!   [`insert_certified`] and [`insert_certified_at`].

use std::sync::atomic::{AtomicU64, Ordering};

use certification_service::sandbox::{
    grpc::proto::{CertifyRequest, ChannelType, IdentifierForm, Person},
    identities::CertificationRecord,
};
use chrono::{NaiveDate, Utc};
use tonic::Status;

use crate::helpers::TestApp;

/// A PortOne V1 certification of `person` for `merchant_uid`.
pub fn v1_request(merchant_uid: &str, person: Person) -> CertifyRequest {
    CertifyRequest {
        merchant_uid: merchant_uid.to_owned(),
        person: person as i32,
        ..CertifyRequest::default()
    }
}

/// A PortOne V2 identity verification of `person` under `id`, on a LIVE channel.
pub fn v2_request(id: &str, person: Person) -> CertifyRequest {
    CertifyRequest {
        identity_verification_id: id.to_owned(),
        person: person as i32,
        ..CertifyRequest::default()
    }
}

/// What a test changes in a [`CertifyRequest`] most often.
pub trait CertifyRequestExt {
    /// Another person with `person`'s traits: its own CI and DI, from `key`.
    fn person_key(self, key: &str) -> Self;
    fn on_channel(self, channel: ChannelType) -> Self;
    /// V2: the answer writes CI and DI in `form`.
    fn written_as(self, form: IdentifierForm) -> Self;
}

impl CertifyRequestExt for CertifyRequest {
    fn person_key(self, key: &str) -> Self {
        Self {
            person_key: Some(key.to_owned()),
            ..self
        }
    }

    fn on_channel(self, channel: ChannelType) -> Self {
        Self {
            channel: channel as i32,
            ..self
        }
    }

    fn written_as(self, form: IdentifierForm) -> Self {
        Self {
            identifier_form: form as i32,
            ..self
        }
    }
}

/// Certifies through `Sandbox/Certify` and returns what Verify takes: the new imp_uid (V1) or the
/// identity verification id (V2). Checks that the answer names what was asked for.
pub async fn certify(app: &TestApp, request: CertifyRequest) -> Result<String, Status> {
    let merchant_uid = request.merchant_uid.clone();
    let id = request.identity_verification_id.clone();
    let response = app.sandbox_client().certify(request).await?.into_inner();
    if !id.is_empty() {
        assert_eq!(response.identity_verification_id, id);
        assert_eq!(
            (response.imp_uid.as_str(), response.merchant_uid.as_str()),
            ("", "")
        );
        return Ok(id);
    }
    assert_eq!(response.merchant_uid, merchant_uid);
    let imp_uid = response.imp_uid;
    let digits = imp_uid.strip_prefix("imp_").expect("imp_ prefix");
    assert!(
        digits.len() == 12 && digits.bytes().all(|byte| byte.is_ascii_digit()),
        "{imp_uid}"
    );
    assert!(
        !imp_uid.starts_with("imp_1000000000"),
        "a fixture's imp_uid: {imp_uid}"
    );
    Ok(imp_uid)
}

/// A new imp_uid per certification, never one of the fixtures'.
fn new_imp_uid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = 300_000_000_000 + u64::from(std::process::id() % 1000) * 1_000_000;
    format!("imp_{}", base + NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn adult_birthday() -> NaiveDate {
    NaiveDate::from_ymd_opt(1990, 3, 15).unwrap()
}

/// `person_key`, an adult, certified now for `merchant_uid`, in the sandbox's records; returns
/// the imp_uid.
pub fn insert_certified(app: &TestApp, merchant_uid: &str, person_key: &str) -> String {
    insert_certified_at(app, merchant_uid, person_key, adult_birthday(), 0)
}

/// `person_key`, born on `birthday`, certified `seconds_ago` for `merchant_uid`, in the sandbox's
/// records; returns the imp_uid.
pub fn insert_certified_at(
    app: &TestApp,
    merchant_uid: &str,
    person_key: &str,
    birthday: NaiveDate,
    seconds_ago: i64,
) -> String {
    let imp_uid = new_imp_uid();
    let certified_at = Utc::now().timestamp() - seconds_ago;
    let mut record = CertificationRecord::certified(&imp_uid, person_key, "홍길동", birthday, certified_at);
    record.merchant_uid = Some(merchant_uid.to_owned());
    record.phone = Some("01012345678".to_owned());
    app.sandbox.insert_certification(record);
    imp_uid
}
