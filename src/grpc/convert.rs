//! Requests into commands (parsing every field at the edge) and results into responses.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::proto;
use crate::{
    domain::{AccountId, Ci, FieldViolation, Gender, ImpUid, MerchantUid, MinAge},
    service::{DuplicateKey, Verified, VerifyCommand},
    store::Holder,
};

pub fn verify_command(request: proto::VerifyRequest) -> Result<VerifyCommand, FieldViolation> {
    Ok(VerifyCommand {
        imp_uid: ImpUid::parse(&request.imp_uid)?,
        // proto3 strings: empty means "not given".
        account: non_empty(&request.account_id).map(AccountId::parse).transpose()?,
        merchant_uid: non_empty(&request.merchant_uid)
            .map(MerchantUid::parse)
            .transpose()?,
        min_age: request.min_age.map(MinAge::parse).transpose()?,
    })
}

pub fn unlink_account(request: proto::UnlinkRequest) -> Result<AccountId, FieldViolation> {
    AccountId::parse(&request.account_id)
}

pub fn unlink_response(unlinked_at: Option<DateTime<Utc>>) -> proto::UnlinkResponse {
    proto::UnlinkResponse {
        unlinked: unlinked_at.is_some(),
        unlinked_at: unlinked_at.map(timestamp),
    }
}

pub fn duplicate_key(request: proto::CheckDuplicateRequest) -> Result<DuplicateKey, FieldViolation> {
    match request.key {
        Some(proto::check_duplicate_request::Key::ImpUid(raw)) => {
            Ok(DuplicateKey::ImpUid(ImpUid::parse(&raw)?))
        }
        Some(proto::check_duplicate_request::Key::Ci(raw)) => Ok(DuplicateKey::Ci(Ci::parse(&raw)?)),
        None => Err(FieldViolation::new(
            "key",
            "MISSING_KEY",
            "set exactly one of imp_uid or ci",
        )),
    }
}

pub fn verify_response(verified: Verified) -> proto::VerifyResponse {
    let identity = verified.identity;
    let gender = match identity.gender {
        Gender::Unspecified => proto::Gender::Unspecified,
        Gender::Male => proto::Gender::Male,
        Gender::Female => proto::Gender::Female,
    };
    let duplicate = duplicate_status(verified.holder_before.as_ref());
    proto::VerifyResponse {
        identity: Some(proto::Identity {
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
            imp_uid: verified.certification.imp_uid,
            merchant_uid: verified.certification.merchant_uid.unwrap_or_default(),
            pg_provider: verified.certification.pg_provider,
            certified_at: Some(timestamp(verified.certification.certified_at)),
        }),
        age_check: Some(proto::AgeCheck {
            age: verified.age.age,
            min_age: verified.age.min_age,
            satisfied: verified.age.satisfied(),
        }),
        duplicate: Some(proto::DuplicateStatus {
            duplicate: duplicate.duplicate,
            account_id: duplicate.account_id,
            bound_at: duplicate.bound_at,
        }),
        bound: verified.bound,
    }
}

pub fn duplicate_status(holder: Option<&Holder>) -> proto::CheckDuplicateResponse {
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
