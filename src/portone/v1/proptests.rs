//! The PortOne answer parser (status, envelope, record) against generated bodies: arbitrary
//! bytes, arbitrary JSON, and real answers with one field replaced by any JSON value. It never
//! panics, whatever it accepts is internally consistent, and its error messages never quote
//! the body (bodies carry names, phone numbers and CIs).

use proptest::prelude::*;
use serde_json::{Value, json};

use reqwest::StatusCode;

use super::model::*;
use crate::{domain::ProviderCertification, service::ProviderError};

const IMP_UID: &str = "imp_123456789012";
const NAME: &str = "홍길동";
const CI: &str = "Q0lfc2VjcmV0X3ZhbHVlX29mX2FfcGVyc29u";

fn real_answer() -> Value {
    json!({"code": 0, "message": null, "response": {
        "imp_uid": IMP_UID, "merchant_uid": "signup-1", "pg_tid": "t", "pg_provider": "danal",
        "name": NAME, "gender": "male", "birthday": "1990-03-15", "birth": 637426800,
        "foreigner": false, "foreigner_v2": null, "phone": "01012345678", "carrier": "SKT",
        "certified": true, "certified_at": 1795459469, "unique_key": CI,
        "unique_in_site": "REVG", "origin": "https://example.com"}})
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        Just(Value::String(String::new())),
        Just(Value::String("1990-02-30".into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "imp_uid",
    "merchant_uid",
    "pg_provider",
    "name",
    "gender",
    "birthday",
    "foreigner",
    "foreigner_v2",
    "phone",
    "carrier",
    "certified",
    "certified_at",
    "unique_key",
    "unique_in_site",
];

fn parse(status: StatusCode, body: &[u8]) -> Result<ProviderCertification, ProviderError> {
    decode::<CertificationBody>(status, body).and_then(|body| body.into_domain(IMP_UID))
}

fn check(result: &Result<ProviderCertification, ProviderError>) -> Result<(), TestCaseError> {
    match result {
        Ok(found) => {
            prop_assert_eq!(found.facts.id.as_str(), IMP_UID);
            if found.certified {
                // Certified: a time, and an identity unless PortOne sent no CI (said so).
                prop_assert!(found.certified_at.is_some());
                prop_assert!(found.identity.is_some() != found.ci_unavailable);
            } else {
                prop_assert!(found.identity.is_none());
            }
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(!message.contains(NAME) && !message.contains(CI), "{}", message);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_under_any_status_are_an_error_or_a_consistent_answer(
        status in prop::sample::select(vec![200u16, 201, 204, 301, 400, 401, 403, 404, 413, 418, 500]),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check(&parse(StatusCode::from_u16(status).unwrap(), &body))?;
    }

    #[test]
    fn arbitrary_json_is_an_error_or_a_consistent_answer(value in json_value()) {
        check(&parse(StatusCode::OK, value.to_string().as_bytes()))?;
    }

    #[test]
    fn a_real_answer_with_one_field_replaced_or_removed_is_handled(
        field in prop::sample::select(FIELDS),
        replacement in prop::option::of(json_value()),
        code in prop_oneof![Just(0i64), any::<i64>()],
    ) {
        let mut answer = real_answer();
        answer["code"] = json!(code);
        let record = answer["response"].as_object_mut().unwrap();
        match replacement {
            Some(value) => { record.insert(field.to_owned(), value); }
            None => { record.remove(field); }
        }
        let result = parse(StatusCode::OK, answer.to_string().as_bytes());
        check(&result)?;
        if code != 0 {
            prop_assert!(matches!(result, Err(ProviderError::Rejected { .. })), "{result:?}");
        }
    }

    #[test]
    fn truncations_of_a_real_answer_are_errors(cut in 0usize..600) {
        let body = real_answer().to_string();
        let cut = cut.min(body.len().saturating_sub(1));
        let truncated = &body.as_bytes()[..cut];
        let result = parse(StatusCode::OK, truncated);
        prop_assert!(matches!(result, Err(ProviderError::Malformed(_))), "{result:?}");
        check(&result)?;
    }
}
