//! PortOne V2's JSON (PortOne's V2 OpenAPI, `IdentityVerification` and its errors) and its
//! translation into the domain. Unknown fields are ignored, every field the OpenAPI does not mark
//! required is optional, and an absent one is reported absent, never invented.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::{
    domain::{CertificationFacts, Ci, Di, Gender, Identity, PersonName, Provider, ProviderCertification},
    portone::answer::{malformed_json, operator_text, phone_and_carrier, provider_ci},
    service::ProviderError,
};

/// `IdentityVerification`: one of three shapes by `status`. A status PortOne adds later is read
/// as not verified.
#[derive(Deserialize)]
#[serde(tag = "status")]
enum IdentityVerification {
    #[serde(rename = "VERIFIED")]
    Verified(Verified),
    #[serde(rename = "READY")]
    Ready(Unverified),
    #[serde(rename = "FAILED")]
    Failed(Unverified),
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    id: String,
    channel: Option<Channel>,
    verified_customer: VerifiedCustomer,
    verified_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Unverified {
    id: String,
    channel: Option<Channel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Channel {
    #[serde(rename = "type")]
    kind: Option<String>,
    pg_provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifiedCustomer {
    name: String,
    operator: Option<String>,
    phone_number: Option<String>,
    birth_date: Option<String>,
    gender: Option<String>,
    is_foreigner: Option<bool>,
    ci: Option<String>,
    di: Option<String>,
}

/// Every V2 error: `{type, message}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

/// Checks the HTTP status and the error's `type`, then decodes the verification `requested`.
pub(super) fn decode(
    status: StatusCode,
    body: &[u8],
    requested: &str,
) -> Result<ProviderCertification, ProviderError> {
    if status != StatusCode::OK {
        return Err(refusal(status, body));
    }
    let verification: IdentityVerification =
        serde_json::from_slice(body).map_err(|error| malformed_json(&error))?;
    let (id, channel) = match &verification {
        IdentityVerification::Verified(verified) => (verified.id.as_str(), verified.channel.as_ref()),
        IdentityVerification::Ready(other) | IdentityVerification::Failed(other) => {
            (other.id.as_str(), other.channel.as_ref())
        }
        IdentityVerification::Unknown => (requested, None),
    };
    if id != requested {
        return Err(ProviderError::Malformed(
            "answer is for another identity verification".into(),
        ));
    }
    let pg_provider = channel
        .and_then(|channel| channel.pg_provider.as_deref())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let test_channel = channel.and_then(|channel| channel.kind.as_deref()) == Some("TEST");
    let mut found = ProviderCertification {
        facts: CertificationFacts {
            provider: Provider::PortoneV2,
            id: requested.to_owned(),
            // The id is the merchant's own (this service's, for its sessions): V1's merchant_uid.
            merchant_uid: Some(requested.to_owned()),
            pg_provider,
        },
        certified: false,
        certified_at: None,
        identity: None,
        ci_unavailable: false,
        test_channel,
    };
    if let IdentityVerification::Verified(verified) = verification {
        let customer = verified.verified_customer;
        found.certified = true;
        found.certified_at = Some(verified.verified_at);
        let ci = provider_ci(Provider::PortoneV2, customer.ci.as_deref());
        found.ci_unavailable = ci.is_none();
        if let Some(ci) = ci {
            found.identity = Some(identity(customer, ci)?);
        }
    }
    Ok(found)
}

fn identity(customer: VerifiedCustomer, ci: Ci) -> Result<Identity, ProviderError> {
    let name = PersonName::new(&customer.name)
        .ok_or_else(|| ProviderError::Malformed("verified customer with an empty name".into()))?;
    let birth_date = customer
        .birth_date
        .as_deref()
        .ok_or_else(|| ProviderError::Malformed("verified customer lacks birthDate".into()))
        .and_then(|raw| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map_err(|_| ProviderError::Malformed("birthDate is not yyyy-MM-dd".into()))
        })?;
    let gender = match customer.gender.as_deref() {
        Some("MALE") => Gender::Male,
        Some("FEMALE") => Gender::Female,
        Some("OTHER") => Gender::Other,
        // Absent, and values PortOne may add later.
        _ => Gender::Unspecified,
    };
    let (phone, carrier) = phone_and_carrier(
        customer.phone_number.as_deref(),
        customer.operator.as_deref().map(carrier_code),
    );
    Ok(Identity {
        name,
        gender,
        birth_date,
        carrier,
        phone,
        foreigner: customer.is_foreigner.unwrap_or(false),
        ci,
        di: customer.di.as_deref().and_then(Di::parse),
    })
}

/// V2's operators in V1's carrier codes, so callers see one vocabulary: LG U+ is `LGT` there.
fn carrier_code(operator: &str) -> String {
    match operator {
        "LGU" => "LGT".to_owned(),
        "LGU_MVNO" => "LGT_MVNO".to_owned(),
        other => other.to_owned(),
    }
}

/// A non-200 answer in provider-neutral terms; the error's `type` is kept for the operator.
fn refusal(status: StatusCode, body: &[u8]) -> ProviderError {
    let error: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let kind = error.as_ref().and_then(|error| error.kind.clone());
    match (status, kind.as_deref()) {
        (StatusCode::NOT_FOUND, Some("IDENTITY_VERIFICATION_NOT_FOUND")) => ProviderError::NotFound,
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
            tracing::error!(
                http_status = status.as_u16(),
                error_type = kind.as_deref().unwrap_or("none"),
                "portone v2 refused us: PORTONE_V2_API_SECRET (or PORTONE_STORE_ID) is wrong or revoked"
            );
            ProviderError::CredentialsRejected
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => ProviderError::Malformed("answer larger than 1 MiB".into()),
        (refused, _) if refused.is_redirection() || refused.is_client_error() => {
            let message = operator_text(error.and_then(|error| error.message));
            ProviderError::Rejected {
                status: refused.as_u16(),
                code: None,
                message: format!("{}: {message}", kind.as_deref().unwrap_or("no error type")),
            }
        }
        (other, _) => ProviderError::Unavailable(format!("unexpected http {}", other.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI: &str =
        "mY0U/SUKorC20m8mhAFoqfAR0afwTHSBUInZScKI2k2LcVTW98txUkjffgHG3DyvD2nQUQCAL/Ikk8itvMH6EA==";

    fn verified(customer: &str, channel_type: &str) -> String {
        format!(
            r#"{{"status":"VERIFIED","id":"iv-1","channel":{{"type":"{channel_type}","pgProvider":"DANAL","pgMerchantId":"m"}},
            "verifiedCustomer":{customer},"requestedAt":"2026-11-30T01:00:00Z","updatedAt":"2026-11-30T01:00:05Z",
            "statusChangedAt":"2026-11-30T01:00:05Z","verifiedAt":"2026-11-30T01:00:05.123Z","pgTxId":"t",
            "pgRawResponse":"{{}}","version":"V2","addedLater":1}}"#
        )
    }

    #[test]
    fn a_full_verified_customer_reads_in_v1_vocabulary() {
        let customer = format!(
            r#"{{"name":"홍길동","operator":"LGU_MVNO","phoneNumber":"01012345678","birthDate":"1990-03-15",
            "gender":"OTHER","isForeigner":true,"ci":"{CI}","di":"REVG"}}"#
        );
        let found = decode(StatusCode::OK, verified(&customer, "LIVE").as_bytes(), "iv-1").unwrap();
        assert!(found.certified && !found.test_channel && !found.ci_unavailable);
        assert_eq!(found.facts.pg_provider, "danal");
        assert_eq!(found.facts.merchant_uid.as_deref(), Some("iv-1"));
        assert_eq!(found.certified_at.unwrap().timestamp_subsec_millis(), 123);
        let identity = found.identity.unwrap();
        assert_eq!(identity.gender, Gender::Other);
        assert_eq!(identity.carrier.unwrap().0, "LGT_MVNO");
        assert!(identity.foreigner && identity.di.is_some());
    }

    #[test]
    fn absent_optional_fields_stay_absent_and_no_ci_is_said_so() {
        let minimal = format!(r#"{{"name":"홍길동","birthDate":"1990-03-15","ci":"{CI}"}}"#);
        let identity = decode(StatusCode::OK, verified(&minimal, "LIVE").as_bytes(), "iv-1")
            .unwrap()
            .identity
            .unwrap();
        assert_eq!(identity.gender, Gender::Unspecified);
        assert!(identity.phone.is_none() && identity.carrier.is_none() && identity.di.is_none());
        assert!(!identity.foreigner);
        let without_ci = r#"{"name":"홍길동","birthDate":"1990-03-15"}"#;
        let found = decode(StatusCode::OK, verified(without_ci, "TEST").as_bytes(), "iv-1").unwrap();
        assert!(found.certified && found.ci_unavailable && found.test_channel && found.identity.is_none());
    }

    #[test]
    fn a_ci_that_is_not_base64_is_no_ci_and_another_form_reads_as_the_standard_one() {
        for unusable in ["", "not base64!", "QU+_"] {
            let customer = format!(r#"{{"name":"홍길동","birthDate":"1990-03-15","ci":"{unusable}"}}"#);
            let found = decode(StatusCode::OK, verified(&customer, "LIVE").as_bytes(), "iv-1").unwrap();
            assert!(
                found.certified && found.ci_unavailable && found.identity.is_none(),
                "{unusable}"
            );
        }
        let url_safe_unpadded = CI.replace('+', "-").replace('/', "_").replace('=', "");
        let customer =
            format!(r#"{{"name":"홍길동","birthDate":"1990-03-15","ci":"{url_safe_unpadded}","di":"REVG"}}"#);
        let found = decode(StatusCode::OK, verified(&customer, "LIVE").as_bytes(), "iv-1").unwrap();
        assert_eq!(found.identity.unwrap().ci.expose(), CI);
    }

    #[test]
    fn ready_failed_and_unknown_statuses_are_not_verified() {
        for status in ["READY", "FAILED", "SOMETHING_NEW"] {
            let json =
                format!(r#"{{"status":"{status}","id":"iv-1","requestedCustomer":{{}},"version":"V2"}}"#);
            let found = decode(StatusCode::OK, json.as_bytes(), "iv-1").unwrap();
            assert!(!found.certified && found.identity.is_none(), "{status}");
        }
    }

    #[test]
    fn typed_errors_map_to_provider_errors() {
        let body = |kind: &str| format!(r#"{{"type":"{kind}","message":"m"}}"#);
        let decode_error = |status: u16, kind: &str| {
            decode(
                StatusCode::from_u16(status).unwrap(),
                body(kind).as_bytes(),
                "iv-1",
            )
            .unwrap_err()
        };
        assert!(matches!(
            decode_error(404, "IDENTITY_VERIFICATION_NOT_FOUND"),
            ProviderError::NotFound
        ));
        assert!(matches!(
            decode_error(401, "UNAUTHORIZED"),
            ProviderError::CredentialsRejected
        ));
        assert!(matches!(
            decode_error(403, "FORBIDDEN"),
            ProviderError::CredentialsRejected
        ));
        match decode_error(400, "SOMETHING_NEW") {
            ProviderError::Rejected {
                status: 400, message, ..
            } => assert!(message.starts_with("SOMETHING_NEW")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_error(404, "NOT_A_KNOWN_TYPE"),
            ProviderError::Rejected { status: 404, .. }
        ));
        assert!(matches!(decode_error(503, "X"), ProviderError::Unavailable(_)));
    }

    #[test]
    fn broken_answers_are_malformed() {
        for broken in [
            verified(r#"{"name":"홍길동","ci":"QUJD"}"#, "LIVE"),
            verified(
                r#"{"name":"홍길동","birthDate":"15/03/1990","ci":"QUJD"}"#,
                "LIVE",
            ),
            verified(r#"{"name":" ","birthDate":"1990-03-15","ci":"QUJD"}"#, "LIVE"),
            verified(r#"{"birthDate":"1990-03-15","ci":"QUJD"}"#, "LIVE"),
            verified(
                r#"{"name":"홍길동","birthDate":"1990-03-15","ci":"QUJD"}"#,
                "LIVE",
            )
            .replace("iv-1", "iv-2"),
            "not json".to_owned(),
        ] {
            assert!(
                matches!(
                    decode(StatusCode::OK, broken.as_bytes(), "iv-1"),
                    Err(ProviderError::Malformed(_))
                ),
                "{broken}"
            );
        }
    }
}
