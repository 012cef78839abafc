//! PortOne V1's JSON, and its translation into the domain. Unknown fields are ignored and every
//! field the OpenAPI does not mark required is optional: PortOne adds fields and values freely,
//! and KG Inicis answers with null gender and DI and without phone and carrier.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde::{Deserialize, de::DeserializeOwned};

use crate::{
    domain::{CertificationFacts, Ci, Di, Gender, Identity, PersonName, Provider, ProviderCertification},
    portone::answer::{malformed_json, operator_text, phone_and_carrier, provider_ci},
    service::ProviderError,
};

/// `{code, message, response}`: every PortOne V1 answer. `code` 0 is success; errors may arrive
/// with HTTP 200 and a non-zero code, so both must be checked.
#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub(crate) code: i64,
    pub(crate) message: Option<String>,
    pub(crate) response: Option<T>,
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
    pub(crate) access_token: String,
    /// PortOne's clock at issue, so expiry is computed without trusting ours.
    pub(crate) now: i64,
    pub(crate) expired_at: i64,
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
            // No usable `unique_key`: certified, but without the CI contract (KG Inicis with Kakao).
            provider_ci(Provider::PortoneV1, self.unique_key.as_deref())
                .map(|ci| self.identity(ci))
                .transpose()?
        } else {
            None
        };
        let ci_unavailable = certified && identity.is_none();
        Ok(ProviderCertification {
            facts: CertificationFacts {
                provider: Provider::PortoneV1,
                id: self.imp_uid,
                merchant_uid: self.merchant_uid.filter(|uid| !uid.is_empty()),
                pg_provider: self.pg_provider.unwrap_or_default(),
            },
            certified,
            certified_at,
            identity,
            ci_unavailable,
            // V1 has no test channels in its answer.
            test_channel: false,
        })
    }

    fn identity(&self, ci: Ci) -> Result<Identity, ProviderError> {
        let missing = |field: &str| ProviderError::Malformed(format!("certified record lacks {field}"));
        let name = self
            .name
            .as_deref()
            .and_then(PersonName::new)
            .ok_or_else(|| missing("name"))?;
        let birthday = self.birthday.as_deref().ok_or_else(|| missing("birthday"))?;
        let birth_date = NaiveDate::parse_from_str(birthday, "%Y-%m-%d")
            .map_err(|_| ProviderError::Malformed("birthday is not YYYY-MM-DD".into()))?;
        let gender = match self.gender.as_deref() {
            Some("male") => Gender::Male,
            Some("female") => Gender::Female,
            // null (KG Inicis) and values PortOne may add later.
            _ => Gender::Unspecified,
        };
        let (phone, carrier) = phone_and_carrier(self.phone.as_deref(), self.carrier.clone());
        Ok(Identity {
            name,
            gender,
            birth_date,
            carrier,
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
    let malformed = |error: serde_json::Error| malformed_json(&error);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Carrier;

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
        "unique_key":"QUJD","unique_in_site":"REVG","origin":"about:blank","added_later":{"x":1}}}"#;

    #[test]
    fn a_danal_answer_with_unknown_fields_parses() {
        let certification = parse(DANAL).unwrap();
        let identity = certification.identity.unwrap();
        assert!(certification.certified);
        assert_eq!(certification.facts.merchant_uid.as_deref(), Some("signup-8f2c"));
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
            "unique_key":"QUJD","unique_in_site":null}}"#;
        let identity = parse(json).unwrap().identity.unwrap();
        assert_eq!(identity.gender, Gender::Unspecified);
        assert!(identity.phone.is_none() && identity.carrier.is_none() && identity.di.is_none());
    }

    #[test]
    fn a_unique_key_in_another_base64_form_reads_as_the_standard_form() {
        // `QUJD+/8=` in the URL-safe alphabet without its padding.
        let other_form = DANAL.replace(r#""unique_key":"QUJD""#, r#""unique_key":"QUJD-_8""#);
        let identity = parse(&other_form).unwrap().identity.unwrap();
        assert_eq!(identity.ci.expose(), "QUJD+/8=");
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
    fn a_certified_record_without_a_usable_unique_key_has_no_ci_to_offer() {
        for without in [
            DANAL.replace(r#""unique_key":"QUJD""#, r#""unique_key":null"#),
            DANAL.replace(r#""unique_key":"QUJD","#, ""),
            DANAL.replace(r#""unique_key":"QUJD""#, r#""unique_key":"""#),
            // Not base64, or both alphabets at once: no CI that could find the person again.
            DANAL.replace(r#""unique_key":"QUJD""#, r#""unique_key":"not base64!""#),
            DANAL.replace(r#""unique_key":"QUJD""#, r#""unique_key":"QU+_""#),
        ] {
            let certification = parse(&without).unwrap();
            assert!(
                certification.certified && certification.ci_unavailable,
                "{without}"
            );
            assert!(certification.identity.is_none());
        }
    }

    #[test]
    fn broken_certified_records_are_malformed_not_panics() {
        for broken in [
            DANAL.replace(r#""birthday":"1993-07-08""#, r#""birthday":"07/08/1993""#),
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
