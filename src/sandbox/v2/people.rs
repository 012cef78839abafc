//! The sandbox's people verifying through PortOne V2: each V2 record is built from the person's
//! V1 record ([`Person::certify`]), so CI and DI (and name, birthday, phone) are the same on both
//! APIs and a test can move a person from V1 to V2.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    IdentityVerificationRecord, RequestedCustomer, SANDBOX_V2_CHANNEL_KEY, SelectedChannel, VerifiedCustomer,
};
use crate::sandbox::{
    merchants::Merchant,
    people::{Certification, Person},
    record::CertificationRecord,
};

/// The TEST channel's key: verifications through it prove nothing about a real person.
pub(crate) const SANDBOX_V2_TEST_CHANNEL_KEY: &str = "channel-key-00000000-0000-4000-8000-000000000002";
/// The LIVE KG Inicis channel's key (a channel is one provider contract).
pub(crate) const SANDBOX_V2_INICIS_CHANNEL_KEY: &str = "channel-key-00000000-0000-4000-8000-000000000003";
/// The LIVE KCP channel's key.
pub(crate) const SANDBOX_V2_KCP_CHANNEL_KEY: &str = "channel-key-00000000-0000-4000-8000-000000000004";

/// How long the person spends in the popup: `requestedAt` is this long before `verifiedAt`.
const SECONDS_IN_POPUP: i64 = 60;

/// V2's `SelectedChannelType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ChannelType {
    #[default]
    Live,
    Test,
}

/// How a V2 answer writes the person's CI and DI. PortOne's V2 OpenAPI gives `ci` and `di` as
/// strings of no stated form (V1's `unique_key` is 88 characters of standard base64), so the
/// sandbox answers V1's form unless a test asks to see the same bytes written otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum IdentifierForm {
    /// Standard base64 with padding, as V1 answers.
    #[default]
    Standard,
    /// The same bytes in base64url without padding.
    UrlSafeUnpadded,
}

impl IdentifierForm {
    /// `standard` (standard base64 with padding) written in this form.
    fn write(self, standard: &str) -> String {
        match self {
            Self::Standard => standard.to_owned(),
            Self::UrlSafeUnpadded => standard.trim_end_matches('=').replace('+', "-").replace('/', "_"),
        }
    }
}

/// One verification's own facts, as opposed to the person's.
pub(crate) struct Verification<'a> {
    pub(crate) id: &'a str,
    /// When the person finished (or, for [`Person::NotCertified`], when the request was made).
    pub(crate) verified_at: DateTime<Utc>,
    /// CI, DI and phone derive from this instead of the person's own key.
    pub(crate) person_key: Option<&'a str>,
    pub(crate) channel: ChannelType,
    pub(crate) identifier_form: IdentifierForm,
}

impl Person {
    /// The V2 record of this person verifying: `VERIFIED`, or `READY` for
    /// [`Person::NotCertified`] (who never finished). `now` places relative birthdays.
    pub(crate) fn verify(
        self,
        verification: &Verification<'_>,
        now: DateTime<Utc>,
    ) -> IdentityVerificationRecord {
        let certified_at = verification.verified_at.timestamp();
        let v1 = self.certify(
            &Certification {
                imp_uid: verification.id,
                merchant_uid: verification.id,
                certified_at,
                person_key: verification.person_key,
                merchant: Merchant::Main,
            },
            now,
        );
        let channel = channel_for(&v1.pg_provider, verification.channel);
        let at = verification.verified_at;
        let requested_at = at
            .checked_sub_signed(TimeDelta::seconds(SECONDS_IN_POPUP))
            .unwrap_or(at);
        if !v1.certified {
            return IdentityVerificationRecord {
                status: "READY".to_owned(),
                id: verification.id.to_owned(),
                channel: Some(channel),
                requested_customer: Some(RequestedCustomer::default()),
                verified_customer: None,
                custom_data: None,
                requested_at: at,
                updated_at: at,
                status_changed_at: at,
                verified_at: None,
                pg_tx_id: None,
                pg_raw_response: None,
                failure: None,
                version: "V2".to_owned(),
            };
        }
        let pg_tx_id = v1.pg_tid.clone().unwrap_or_default();
        IdentityVerificationRecord {
            status: "VERIFIED".to_owned(),
            id: verification.id.to_owned(),
            channel: Some(channel),
            requested_customer: None,
            verified_customer: Some(verified_customer(&v1, verification.identifier_form)),
            custom_data: None,
            requested_at,
            updated_at: at,
            status_changed_at: at,
            verified_at: Some(at),
            pg_raw_response: Some(raw_response(&pg_tx_id)),
            pg_tx_id: Some(pg_tx_id),
            failure: None,
            version: "V2".to_owned(),
        }
    }
}

/// The V1 record's person in V2's words.
/// What V2 sends by provider, as its OpenAPI (`IdentityVerificationVerifiedCustomer`) documents:
/// Danal always sends gender, CI and DI, and phone, operator and foreigner status only under a
/// separate contract (here: when the person's V1 record has them); KG Inicis always sends phone,
/// gender and foreigner status, CI except through Kakao, and never operator or DI.
fn verified_customer(v1: &CertificationRecord, form: IdentifierForm) -> VerifiedCustomer {
    let inicis = v1.pg_provider.starts_with("inicis");
    let gender = v1.gender.as_deref().map(str::to_ascii_uppercase);
    let ci = v1.unique_key.as_deref().map(|ci| form.write(ci));
    if inicis {
        return VerifiedCustomer {
            id: None,
            name: v1.name.clone().unwrap_or_default(),
            operator: None,
            // V1's Inicis record has no phone or gender; V2 always has them: derived, stable.
            phone_number: Some(v1.phone.clone().unwrap_or_else(|| derived_phone(v1))),
            birth_date: v1.birthday.clone(),
            gender: Some(gender.unwrap_or_else(|| derived_gender(v1))),
            is_foreigner: Some(v1.foreigner_v2.unwrap_or(v1.foreigner)),
            ci,
            di: None,
        };
    }
    VerifiedCustomer {
        id: None,
        name: v1.name.clone().unwrap_or_default(),
        operator: v1.carrier.as_deref().map(operator_of),
        phone_number: v1.phone.clone(),
        birth_date: v1.birthday.clone(),
        gender,
        // The main merchant has the foreigner contract; without it V1 sends null, V2 nothing.
        is_foreigner: v1.foreigner_v2,
        ci,
        di: v1.unique_in_site.as_deref().map(|di| form.write(di)),
    }
}

/// A stable mobile number for a person whose V1 record has none (from their CI, or name).
fn derived_phone(v1: &CertificationRecord) -> String {
    let seed = v1
        .unique_key
        .as_deref()
        .or(v1.name.as_deref())
        .unwrap_or_default();
    let number = seed.bytes().fold(7_u32, |acc, byte| {
        acc.wrapping_mul(31).wrapping_add(u32::from(byte))
    });
    format!("010{:08}", number % 100_000_000)
}

/// A stable gender for a person whose V1 record has none.
fn derived_gender(v1: &CertificationRecord) -> String {
    let seed = v1
        .unique_key
        .as_deref()
        .or(v1.name.as_deref())
        .unwrap_or_default();
    if seed.len().is_multiple_of(2) {
        "MALE"
    } else {
        "FEMALE"
    }
    .to_owned()
}

/// V1 calls LG U+ `LGT`, V2 `LGU`; the other carriers keep their names.
fn operator_of(carrier: &str) -> String {
    match carrier {
        "LGT" => "LGU".to_owned(),
        "LGT_MVNO" => "LGU_MVNO".to_owned(),
        other => other.to_owned(),
    }
}

/// The store's channel for the provider (V1's `danal` is V2's `DANAL`, and so on).
pub(super) fn channel_for(v1_provider: &str, channel_type: ChannelType) -> SelectedChannel {
    let pg_provider = v1_provider.to_ascii_uppercase();
    let (type_name, key, suffix) = match (channel_type, pg_provider.as_str()) {
        (ChannelType::Test, _) => ("TEST", SANDBOX_V2_TEST_CHANNEL_KEY, "test"),
        (ChannelType::Live, "INICIS_UNIFIED") => ("LIVE", SANDBOX_V2_INICIS_CHANNEL_KEY, "inicis"),
        (ChannelType::Live, "KCP_V2") => ("LIVE", SANDBOX_V2_KCP_CHANNEL_KEY, "kcp"),
        (ChannelType::Live, _) => ("LIVE", SANDBOX_V2_CHANNEL_KEY, "live"),
    };
    SelectedChannel {
        channel_type: type_name.to_owned(),
        id: Some(format!("channel-id-sandbox-{suffix}")),
        key: Some(key.to_owned()),
        name: Some(format!(
            "sandbox {} ({type_name})",
            pg_provider.to_ascii_lowercase()
        )),
        pg_merchant_id: format!("sandbox_{}", pg_provider.to_ascii_lowercase()),
        pg_provider,
    }
}

/// The provider's raw answer, as a string. Ours, loosely shaped like Danal's result fields: no
/// source shows what PortOne passes through.
fn raw_response(pg_tx_id: &str) -> String {
    serde_json::json!({"RETURNCODE": "0000", "RETURNMSG": "No Error", "TID": pg_tx_id}).to_string()
}
