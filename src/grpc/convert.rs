//! Requests into commands (parsing every field at the edge) and results into responses.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::proto;
use crate::{
    domain::{
        AccountId, AgeDisclosure, CertificationRef, Ci, Disclosure, ExpectedPerson, FieldViolation, Gender,
        Holder, IdentityVerificationId, ImpUid, MerchantUid, MinAge, Provider, SessionSpec,
        VerificationPurpose,
    },
    service::{Began, DuplicateKey, Verified, VerifyCommand},
};

pub(crate) fn verify_command(request: proto::VerifyRequest) -> Result<VerifyCommand, FieldViolation> {
    let (certification, merchant_uid) = certification_and_session(
        non_empty(&request.imp_uid),
        non_empty(&request.identity_verification_id),
        &request.merchant_uid,
    )?;
    Ok(VerifyCommand {
        certification,
        account: non_empty(&request.account_id).map(AccountId::parse).transpose()?,
        merchant_uid,
        min_age: request.min_age.map(MinAge::parse).transpose()?,
    })
}

/// The certification a request names, and the session it names for it (its merchant_uid).
fn certification_and_session(
    imp_uid: Option<&str>,
    identity_verification_id: Option<&str>,
    merchant_uid: &str,
) -> Result<(CertificationRef, Option<MerchantUid>), FieldViolation> {
    // proto3 strings: empty means "not given".
    let merchant_uid = non_empty(merchant_uid).map(MerchantUid::parse).transpose()?;
    match (imp_uid, identity_verification_id) {
        (Some(_), Some(_)) => Err(FieldViolation::new(
            "identity_verification_id",
            "INVALID_IDENTITY_VERIFICATION_ID",
            "set imp_uid (PortOne V1) or identity_verification_id (PortOne V2), not both",
        )),
        (None, Some(raw)) => {
            let id = IdentityVerificationId::parse_field(raw, "identity_verification_id")?;
            // V2 has no merchant_uid: the id is the merchant's own, and a session's id.
            let session = match merchant_uid {
                Some(given) if given.as_str() != id.as_str() => {
                    return Err(FieldViolation::new(
                        "merchant_uid",
                        "INVALID_MERCHANT_UID",
                        "with identity_verification_id, leave merchant_uid empty or equal to it",
                    ));
                }
                Some(given) => given,
                None => MerchantUid::parse(id.as_str())?,
            };
            Ok((CertificationRef::portone_v2(id), Some(session)))
        }
        // Neither: today's INVALID_IMP_UID ("required"), as before V2.
        (imp_uid, None) => Ok((
            CertificationRef::portone_v1(ImpUid::parse(imp_uid.unwrap_or_default())?),
            merchant_uid,
        )),
    }
}

pub(crate) fn session_spec(request: proto::BeginVerificationRequest) -> Result<SessionSpec, FieldViolation> {
    // The getter reads an unknown number as PURPOSE_UNSPECIFIED, which is refused below.
    let purpose = match request.purpose() {
        proto::Purpose::Signup => VerificationPurpose::Signup,
        proto::Purpose::Recovery => VerificationPurpose::Recovery,
        proto::Purpose::Reverify => VerificationPurpose::Reverify,
        proto::Purpose::AgeCheck => VerificationPurpose::AgeCheck,
        proto::Purpose::Unspecified => {
            return Err(FieldViolation::new(
                "purpose",
                "INVALID_PURPOSE",
                "set one of PURPOSE_SIGNUP, PURPOSE_RECOVERY, PURPOSE_REVERIFY, PURPOSE_AGE_CHECK",
            ));
        }
    };
    let provider = match request.provider() {
        proto::Provider::Unspecified => None,
        proto::Provider::PortoneV1 => Some(Provider::PortoneV1),
        proto::Provider::PortoneV2 => Some(Provider::PortoneV2),
    };
    let expected = request.expected.clone().unwrap_or_default();
    let mut spec = SessionSpec::new(
        purpose,
        request.account_id.as_deref().map(AccountId::parse).transpose()?,
        request.min_age.map(MinAge::parse).transpose()?,
        ExpectedPerson::parse(
            expected.name.as_deref(),
            expected.birth_date.as_deref(),
            expected.phone.as_deref(),
        )?,
    )?;
    spec.provider = provider;
    Ok(spec)
}

pub(crate) fn begin_response(began: Began) -> proto::BeginVerificationResponse {
    let id = began.merchant_uid.as_str().to_owned();
    let (merchant_uid, identity_verification_id) = match began.provider {
        Provider::PortoneV1 => (id, String::new()),
        Provider::PortoneV2 => (String::new(), id),
    };
    proto::BeginVerificationResponse {
        merchant_uid,
        expires_at: Some(timestamp(began.expires_at)),
        identity_verification_id,
        store_id: began.store_id.unwrap_or_default(),
        channel_key: began.channel_key.unwrap_or_default(),
        provider: provider(began.provider).into(),
    }
}

fn provider(provider: Provider) -> proto::Provider {
    match provider {
        Provider::PortoneV1 => proto::Provider::PortoneV1,
        Provider::PortoneV2 => proto::Provider::PortoneV2,
    }
}

fn purpose(purpose: Option<VerificationPurpose>) -> proto::Purpose {
    match purpose {
        None => proto::Purpose::Unspecified,
        Some(VerificationPurpose::Signup) => proto::Purpose::Signup,
        Some(VerificationPurpose::Recovery) => proto::Purpose::Recovery,
        Some(VerificationPurpose::Reverify) => proto::Purpose::Reverify,
        Some(VerificationPurpose::AgeCheck) => proto::Purpose::AgeCheck,
    }
}

pub(crate) fn unlink_account(request: proto::UnlinkRequest) -> Result<AccountId, FieldViolation> {
    AccountId::parse(&request.account_id)
}

pub(crate) fn unlink_response(unlinked_at: Option<DateTime<Utc>>) -> proto::UnlinkResponse {
    proto::UnlinkResponse {
        unlinked: unlinked_at.is_some(),
        unlinked_at: unlinked_at.map(timestamp),
    }
}

pub(crate) fn duplicate_key(request: proto::CheckDuplicateRequest) -> Result<DuplicateKey, FieldViolation> {
    use proto::check_duplicate_request::Key;
    let by_certification = |imp_uid, identity_verification_id| {
        let (certification, merchant_uid) =
            certification_and_session(imp_uid, identity_verification_id, &request.merchant_uid)?;
        Ok(DuplicateKey::Certification(VerifyCommand {
            certification,
            account: None,
            merchant_uid,
            min_age: None,
        }))
    };
    match &request.key {
        Some(Key::ImpUid(raw)) => by_certification(Some(raw.as_str()), None),
        Some(Key::IdentityVerificationId(raw)) => by_certification(None, Some(raw.as_str())),
        Some(Key::Ci(_)) if !request.merchant_uid.is_empty() => Err(FieldViolation::new(
            "merchant_uid",
            "INVALID_MERCHANT_UID",
            "with ci, leave merchant_uid empty: a CI names the person, not a session",
        )),
        Some(Key::Ci(raw)) => Ok(DuplicateKey::Ci(Ci::parse(raw)?)),
        None => Err(FieldViolation::new(
            "key",
            "MISSING_KEY",
            "set exactly one of imp_uid, identity_verification_id or ci",
        )),
    }
}

/// The answer, as much of it as the session's purpose discloses ([`VerificationPurpose::disclosure`]).
pub(crate) fn verify_response(verified: Verified) -> proto::VerifyResponse {
    let disclosure = verified
        .purpose
        .map_or(Disclosure::EVERYTHING, VerificationPurpose::disclosure);
    let identity = verified.identity;
    let gender = match identity.gender {
        Gender::Unspecified => proto::Gender::Unspecified,
        Gender::Male => proto::Gender::Male,
        Gender::Female => proto::Gender::Female,
        Gender::Other => proto::Gender::Other,
    };
    let duplicate = duplicate_status(verified.holder_before.as_ref());
    let age_check = match disclosure.age {
        AgeDisclosure::None => None,
        AgeDisclosure::Decision => Some(proto::AgeCheck {
            age: 0,
            min_age: verified.age.min_age,
            satisfied: verified.age.satisfied(),
        }),
        AgeDisclosure::Full => Some(proto::AgeCheck {
            age: verified.age.age,
            min_age: verified.age.min_age,
            satisfied: verified.age.satisfied(),
        }),
    };
    proto::VerifyResponse {
        identity: disclosure.identity.then(|| proto::Identity {
            name: identity.name.expose().to_owned(),
            gender: gender.into(),
            birth_date: identity.birth_date.format("%Y-%m-%d").to_string(),
            phone: identity.phone.map(|phone| phone.expose().to_owned()),
            carrier: identity.carrier.map(|carrier| carrier.0),
            foreigner: identity.foreigner,
            ci: identity.ci.expose().to_owned(),
            di: identity.di.map(|di| di.expose().to_owned()).unwrap_or_default(),
        }),
        certification: Some(proto::Certification {
            imp_uid: if verified.certification.provider == Provider::PortoneV1 {
                verified.certification.id.clone()
            } else {
                String::new()
            },
            provider: provider(verified.certification.provider).into(),
            id: verified.certification.id,
            merchant_uid: verified.certification.merchant_uid.unwrap_or_default(),
            pg_provider: verified.certification.pg_provider,
            certified_at: Some(timestamp(verified.certified_at)),
        }),
        age_check,
        duplicate: disclosure.holder.then_some(proto::DuplicateStatus {
            duplicate: duplicate.duplicate,
            account_id: duplicate.account_id,
            bound_at: duplicate.bound_at,
        }),
        bound: verified.bound,
        purpose: purpose(verified.purpose).into(),
        reverified_at: verified.reverified_at.map(timestamp),
    }
}

pub(crate) fn duplicate_status(holder: Option<&Holder>) -> proto::CheckDuplicateResponse {
    match holder {
        Some(holder) => proto::CheckDuplicateResponse {
            duplicate: true,
            account_id: holder.account_id.as_str().to_owned(),
            bound_at: Some(timestamp(holder.bound_at)),
        },
        None => proto::CheckDuplicateResponse::default(),
    }
}

fn non_empty(raw: &str) -> Option<&str> {
    (!raw.is_empty()).then_some(raw)
}

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Every request field parser against generated input: hostile strings, any Unicode, and
/// near-misses of valid values. Whatever comes in, parsing answers (never panics), and what it
/// accepts has exactly the shape the rest of the service relies on.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::grpc::proto::{
        CheckDuplicateRequest, UnlinkRequest, VerifyRequest, check_duplicate_request::Key,
    };

    /// Any string, strings built from URL-ish and Unicode-digit pieces, and valid values with
    /// one character inserted somewhere.
    fn field() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("imp_".to_owned()),
            "[0-9]{1,12}",
            Just("..".to_owned()),
            Just("/".to_owned()),
            Just("%2F".to_owned()),
            Just("?".to_owned()),
            Just("#".to_owned()),
            Just("\0".to_owned()),
            Just("١٢٣".to_owned()),
            Just("１２".to_owned()),
            Just(" ".to_owned()),
            "[a-zA-Z0-9+/=_.:@-]{1,20}",
            any::<String>(),
        ];
        let inserted = (
            "imp_[0-9]{12}|[a-z0-9@.-]{1,40}|[A-Za-z0-9+/]{86}==",
            any::<char>(),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(valid, extra, at): (String, char, prop::sample::Index)| {
                let mut chars: Vec<char> = valid.chars().collect();
                chars.insert(at.index(chars.len() + 1), extra);
                chars.into_iter().collect()
            });
        prop_oneof![
            any::<String>(),
            prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat()),
            inserted,
            "imp_[0-9]{0,24}",
        ]
    }

    fn is_imp_uid(raw: &str) -> bool {
        raw.strip_prefix("imp_").is_some_and(|digits| {
            (8..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        })
    }

    fn is_account_id(raw: &str) -> bool {
        (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn verify_requests_are_accepted_only_in_the_documented_shapes(
            imp_uid in field(),
            account_id in field(),
            merchant_uid in field(),
            min_age in prop::option::of(any::<u32>()),
        ) {
            let request = VerifyRequest {
                imp_uid: imp_uid.clone(),
                account_id: account_id.clone(),
                merchant_uid: merchant_uid.clone(),
                min_age,
                identity_verification_id: String::new(),
            };
            match verify_command(request) {
                Ok(command) => {
                    prop_assert!(is_imp_uid(command.certification.id()));
                    prop_assert_eq!(command.certification.id(), imp_uid.as_str());
                    match command.account {
                        Some(account) => prop_assert!(is_account_id(account.as_str())),
                        None => prop_assert!(account_id.is_empty()),
                    }
                    if let Some(merchant) = command.merchant_uid {
                        prop_assert!(merchant.as_str().len() <= 256);
                        prop_assert!(!merchant.as_str().chars().any(char::is_control));
                    }
                    prop_assert!(command.min_age.is_none_or(|age| age.get() <= 150));
                }
                Err(violation) => {
                    prop_assert!(["imp_uid", "account_id", "merchant_uid", "min_age"].contains(&violation.field));
                    prop_assert!(violation.reason.starts_with("INVALID_"));
                }
            }
        }

        #[test]
        fn identity_verification_ids_are_one_safe_path_segment(raw in field(), merchant_uid in field()) {
            let request = VerifyRequest {
                identity_verification_id: raw.clone(),
                merchant_uid: merchant_uid.clone(),
                ..VerifyRequest::default()
            };
            match verify_command(request) {
                Ok(command) => {
                    let id = command.certification.id();
                    prop_assert_eq!(id, raw.as_str());
                    prop_assert!((1..=128).contains(&id.len()));
                    prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
                    prop_assert!(id != "." && id != "..");
                    // The session is the id itself.
                    prop_assert_eq!(command.merchant_uid.as_ref().map(MerchantUid::as_str), Some(id));
                }
                Err(violation) => prop_assert!(
                    ["identity_verification_id", "merchant_uid", "imp_uid"].contains(&violation.field),
                    "{violation:?}"
                ),
            }
        }

        #[test]
        fn check_duplicate_keys_are_accepted_only_in_the_documented_shapes(
            raw in field(),
            by_ci in any::<bool>(),
            merchant_uid in prop_oneof![Just(String::new()), field()],
        ) {
            let key = if by_ci { Key::Ci(raw.clone()) } else { Key::ImpUid(raw.clone()) };
            let request = CheckDuplicateRequest { key: Some(key), merchant_uid: merchant_uid.clone() };
            match duplicate_key(request) {
                Ok(DuplicateKey::Certification(command)) => {
                    prop_assert!(!by_ci && is_imp_uid(command.certification.id()));
                    // The session named travels with the certification; nothing else does.
                    prop_assert_eq!(
                        command.merchant_uid.as_ref().map(MerchantUid::as_str),
                        (!merchant_uid.is_empty()).then_some(merchant_uid.as_str())
                    );
                    prop_assert!(command.account.is_none() && command.min_age.is_none());
                }
                Ok(DuplicateKey::Ci(_)) => prop_assert!(
                    by_ci
                        && merchant_uid.is_empty()
                        && (1..=256).contains(&raw.len())
                        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
                ),
                Err(violation) => prop_assert!(
                    ["INVALID_CI", "INVALID_IMP_UID", "INVALID_MERCHANT_UID"].contains(&violation.reason),
                    "{violation:?}"
                ),
            }
        }

        #[test]
        fn unlink_accounts_are_accepted_only_in_the_documented_shape(raw in field()) {
            match unlink_account(UnlinkRequest { account_id: raw.clone() }) {
                Ok(account) => prop_assert!(is_account_id(account.as_str()) && account.as_str() == raw),
                Err(violation) => prop_assert_eq!(violation.reason, "INVALID_ACCOUNT_ID"),
            }
        }
    }
}
