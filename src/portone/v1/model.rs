//! PortOne V1's JSON, and its translation into the domain. Unknown fields are ignored and every
//! field the OpenAPI does not mark required is optional: PortOne adds fields and values freely,
//! and KG Inicis answers with null gender and DI and without phone and carrier.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde::{Deserialize, de::DeserializeOwned};

use crate::domain::{Carrier, Ci, Di, Gender, Identity, PersonName, Phone, Provider, ProviderCertification};
use crate::service::ProviderError;

/// `{code, message, response}`: every PortOne V1 answer. `code` 0 is success; errors may arrive
/// with HTTP 200 and a non-zero code, so both must be checked.
#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub code: i64,
    pub message: Option<String>,
    pub response: Option<T>,
}

/// PortOne's own words about a refusal, for the operator: short, on one line.
fn operator_text(message: Option<String>) -> String {
    let text: String = message
        .unwrap_or_default()
        .chars()
        .map(|character| if character.is_control() { ' ' } else { character })
        .take(200)
        .collect();
    text.trim().to_owned()
}

/// A permanent refusal, with whatever the body says about it.
fn rejected(status: StatusCode, body: &[u8]) -> ProviderError {
    let envelope: Option<Envelope<serde::de::IgnoredAny>> = serde_json::from_slice(body).ok();
    let (code, message) = match envelope {
        Some(envelope) => (Some(envelope.code), envelope.message),
        None => (None, None),
    };
    ProviderError::Rejected {
        status: status.as_u16(),
        code,
        message: operator_text(message),
    }
}

#[derive(Deserialize)]
pub(super) struct TokenGrant {
    pub access_token: String,
    /// PortOne's clock at issue, so expiry is computed without trusting ours.
    pub now: i64,
    pub expired_at: i64,
}

#[derive(Deserialize)]
pub(super) struct CertificationBody {
    imp_uid: String,
    merchant_uid: Option<String>,
    pg_provider: Option<String>,
    name: Option<String>,
    gender: Option<String>,
    birthday: Option<String>,
    foreigner: Option<bool>,
    foreigner_v2: Option<bool>,
    phone: Option<String>,
    carrier: Option<String>,
    certified: Option<bool>,
    certified_at: Option<i64>,
    unique_key: Option<String>,
    unique_in_site: Option<String>,
}

impl CertificationBody {
    pub(super) fn into_domain(self, requested: &str) -> Result<ProviderCertification, ProviderError> {
        if self.imp_uid != requested {
            return Err(ProviderError::Malformed("answer is for another imp_uid".into()));
        }
        let certified = self.certified.unwrap_or(false);
        let certified_at = match self.certified_at {
            Some(seconds) if seconds > 0 => Some(
                DateTime::<Utc>::from_timestamp(seconds, 0)
                    .ok_or_else(|| ProviderError::Malformed("certified_at out of range".into()))?,
            ),
            _ => None,
        };
        let identity = if certified {
            if certified_at.is_none() {
                return Err(ProviderError::Malformed(
                    "certified record lacks certified_at".into(),
                ));
            }
            Some(self.identity()?)
        } else {
            None
        };
        Ok(ProviderCertification {
            provider: Provider::PortoneV1,
            id: self.imp_uid,
            merchant_uid: self.merchant_uid.filter(|uid| !uid.is_empty()),
            pg_provider: self.pg_provider.unwrap_or_default(),
            certified,
            certified_at,
            identity,
        })
    }

    fn identity(&self) -> Result<Identity, ProviderError> {
        let missing = |field: &str| ProviderError::Malformed(format!("certified record lacks {field}"));
        let name = self
            .name
            .as_deref()
            .and_then(PersonName::new)
            .ok_or_else(|| missing("name"))?;
        let birthday = self.birthday.as_deref().ok_or_else(|| missing("birthday"))?;
        let birth_date = NaiveDate::parse_from_str(birthday, "%Y-%m-%d")
            .map_err(|_| ProviderError::Malformed("birthday is not YYYY-MM-DD".into()))?;
        let unique_key = self.unique_key.as_deref().ok_or_else(|| missing("unique_key"))?;
        let ci = Ci::parse(unique_key)
            .map_err(|_| ProviderError::Malformed("unique_key is not a base64 identifier".into()))?;
        let gender = match self.gender.as_deref() {
            Some("male") => Gender::Male,
            Some("female") => Gender::Female,
            // null (KG Inicis) and values PortOne may add later.
            _ => Gender::Unspecified,
        };
        // Digits only by PortOne's contract; strip anything else rather than fail the person.
        let phone = self
            .phone
            .as_deref()
            .map(|raw| raw.chars().filter(char::is_ascii_digit).collect::<String>())
            .and_then(|digits| Phone::new(&digits));
        Ok(Identity {
            name,
            gender,
            birth_date,
            carrier: phone
                .as_ref()
                .and(self.carrier.clone())
                .filter(|code| !code.is_empty())
                .map(Carrier),
            phone,
            // foreigner_v2 is null when not contracted; then the legacy flag (false) stands.
            foreigner: self.foreigner_v2.or(self.foreigner).unwrap_or(false),
            ci,
            di: self.unique_in_site.as_deref().and_then(Di::parse),
        })
    }
}

/// Checks the HTTP status and the envelope's `code`, then decodes `response`.
pub(super) fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ProviderError> {
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(ProviderError::NotFound),
        StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ProviderError::Malformed("answer larger than 1 MiB".into()));
        }
        // Redirects are never followed (they would carry the request elsewhere), and a 4xx
        // other than 401/404 will not change on a retry: both are PortOne refusing us.
        refused if refused.is_redirection() || refused.is_client_error() => {
            return Err(rejected(refused, body));
        }
        other => {
            return Err(ProviderError::Unavailable(format!(
                "unexpected http {}",
                other.as_u16()
            )));
        }
    }
    let malformed = |error: serde_json::Error| {
        ProviderError::Malformed(format!(
            "{} at line {} column {}",
            classify(&error),
            error.line(),
            error.column()
        ))
    };
    // The code first: an error envelope is an error whatever shape its `response` has.
    let head: Envelope<serde::de::IgnoredAny> = serde_json::from_slice(body).map_err(malformed)?;
    if head.code != 0 {
        return Err(rejected(status, body));
    }
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(malformed)?;
    envelope
        .response
        .ok_or_else(|| ProviderError::Malformed("code 0 without a response".into()))
}

/// serde_json's messages can quote the input; keep only the category.
fn classify(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "invalid json",
        serde_json::error::Category::Data => "unexpected json shape",
        serde_json::error::Category::Eof => "truncated json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ProviderCertification, ProviderError> {
        let envelope: Envelope<CertificationBody> =
            serde_json::from_str(json).map_err(|error| ProviderError::Malformed(error.to_string()))?;
        envelope
            .response
            .expect("response")
            .into_domain("imp_123456789012")
    }

    const DANAL: &str = r#"{"code":0,"message":null,"response":{"imp_uid":"imp_123456789012",
        "merchant_uid":"signup-8f2c","pg_tid":"x","pg_provider":"danal","name":"홍길동","gender":"male",
        "birthday":"1993-07-08","birth":742057200,"foreigner":false,"foreigner_v2":null,
        "phone":"01012345678","carrier":"SKT","certified":true,"certified_at":1795459469,
        "unique_key":"QUJD==","unique_in_site":"REVG","origin":"about:blank","added_later":{"x":1}}}"#;

    #[test]
    fn a_danal_answer_with_unknown_fields_parses() {
        let certification = parse(DANAL).unwrap();
        let identity = certification.identity.unwrap();
        assert!(certification.certified);
        assert_eq!(certification.merchant_uid.as_deref(), Some("signup-8f2c"));
        assert_eq!(identity.gender, Gender::Male);
        assert_eq!(identity.phone.unwrap().expose(), "01012345678");
        assert_eq!(identity.carrier, Some(Carrier("SKT".into())));
        assert_eq!(identity.di.unwrap().expose(), "REVG");
    }

    #[test]
    fn an_inicis_answer_with_nulls_and_no_phone_parses() {
        let json = r#"{"code":0,"message":null,"response":{"imp_uid":"imp_123456789012",
            "pg_provider":"inicis_unified","name":"강서준","gender":null,"birthday":"1995-05-05",
            "foreigner":false,"foreigner_v2":null,"certified":true,"certified_at":1795459469,
            "unique_key":"QUJD==","unique_in_site":null}}"#;
        let identity = parse(json).unwrap().identity.unwrap();
        assert_eq!(identity.gender, Gender::Unspecified);
        assert!(identity.phone.is_none() && identity.carrier.is_none() && identity.di.is_none());
    }

    #[test]
    fn an_uncertified_record_needs_no_identity_fields() {
        let json = r#"{"code":0,"message":null,"response":{"imp_uid":"imp_123456789012",
            "pg_provider":"danal","foreigner":false,"certified":false,"certified_at":0,
            "name":null,"unique_key":null}}"#;
        let certification = parse(json).unwrap();
        assert!(!certification.certified && certification.identity.is_none());
    }

    #[test]
    fn broken_certified_records_are_malformed_not_panics() {
        for broken in [
            DANAL.replace(r#""birthday":"1993-07-08""#, r#""birthday":"07/08/1993""#),
            DANAL.replace(r#""unique_key":"QUJD==""#, r#""unique_key":null"#),
            DANAL.replace(r#""name":"홍길동""#, r#""name":"  ""#),
            DANAL.replace(r#""certified_at":1795459469"#, r#""certified_at":0"#),
            DANAL.replace(r#""certified":true"#, r#""certified":"yes""#),
            DANAL.replace(
                r#""imp_uid":"imp_123456789012""#,
                r#""imp_uid":"imp_999999999999""#,
            ),
            DANAL.replace(
                r#""certified_at":1795459469"#,
                r#""certified_at":99999999999999999"#,
            ),
        ] {
            assert!(
                matches!(parse(&broken), Err(ProviderError::Malformed(_))),
                "{broken}"
            );
        }
    }
}

/// The PortOne answer parser (status, envelope, record) against generated bodies: arbitrary
/// bytes, arbitrary JSON, and real answers with one field replaced by any JSON value. It never
/// panics, whatever it accepts is internally consistent, and its error messages never quote
/// the body (bodies carry names, phone numbers and CIs).
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

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
                prop_assert_eq!(found.id.as_str(), IMP_UID);
                if found.certified {
                    prop_assert!(found.identity.is_some() && found.certified_at.is_some());
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
}
