//! The V2 fixtures listed in [`super`]'s table, built from the sandbox's people.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    ChannelType, Failure, IdentifierForm, IdentityVerificationRecord, RequestedCustomer,
    SANDBOX_OTHER_STORE_ID, V2_ADULT, V2_FAILED, V2_INICIS, V2_LGU_MVNO_OTHER_GENDER, V2_MINOR,
    V2_NAME_AND_BIRTH_DATE_ONLY, V2_OTHER_STORE, V2_READY, V2_TEST_CHANNEL, Verification, VerifiedCustomer,
    people::channel_for,
};
use crate::sandbox::{people::Person, state::State};

/// The fixtures as of `now`, each with the store it belongs to (`None`: the configured one).
pub(crate) fn fixtures(now: DateTime<Utc>) -> Vec<(Option<&'static str>, IdentityVerificationRecord)> {
    let two_minutes_ago = now.checked_sub_signed(TimeDelta::minutes(2)).unwrap_or(now);
    let verify = |person: Person, id: &str, channel: ChannelType| {
        let verification = Verification {
            id,
            verified_at: two_minutes_ago,
            person_key: None,
            channel,
            identifier_form: IdentifierForm::Standard,
        };
        person.verify(&verification, now)
    };
    let name_and_birth_date_only = {
        let record = verify(Person::NoCi, V2_NAME_AND_BIRTH_DATE_ONLY, ChannelType::Live);
        let customer = record.verified_customer.clone().unwrap_or_default();
        IdentityVerificationRecord {
            verified_customer: Some(VerifiedCustomer {
                name: customer.name,
                birth_date: customer.birth_date,
                ..VerifiedCustomer::default()
            }),
            ..record
        }
    };
    let other_gender = {
        let record = verify(Person::Foreigner, V2_LGU_MVNO_OTHER_GENDER, ChannelType::Live);
        let customer = record.verified_customer.clone().unwrap_or_default();
        IdentityVerificationRecord {
            verified_customer: Some(VerifiedCustomer {
                gender: Some("OTHER".to_owned()),
                ..customer
            }),
            ..record
        }
    };
    vec![
        (None, verify(Person::Adult, V2_ADULT, ChannelType::Live)),
        (None, verify(Person::NotCertified, V2_READY, ChannelType::Live)),
        (None, failed(V2_FAILED, two_minutes_ago)),
        (None, verify(Person::Adult, V2_TEST_CHANNEL, ChannelType::Test)),
        (None, name_and_birth_date_only),
        (None, other_gender),
        (None, verify(Person::Minor, V2_MINOR, ChannelType::Live)),
        (None, verify(Person::Inicis, V2_INICIS, ChannelType::Live)),
        (
            Some(SANDBOX_OTHER_STORE_ID),
            verify(Person::Adult, V2_OTHER_STORE, ChannelType::Live),
        ),
    ]
}

/// A verification the provider refused. The failure texts are ours: no source shows PortOne's or
/// Danal's.
fn failed(id: &str, at: DateTime<Utc>) -> IdentityVerificationRecord {
    let requested_at = at.checked_sub_signed(TimeDelta::minutes(1)).unwrap_or(at);
    IdentityVerificationRecord {
        status: "FAILED".to_owned(),
        id: id.to_owned(),
        channel: Some(channel_for("danal", ChannelType::Live)),
        requested_customer: Some(RequestedCustomer::default()),
        verified_customer: None,
        custom_data: None,
        requested_at,
        updated_at: at,
        status_changed_at: at,
        verified_at: None,
        pg_tx_id: None,
        pg_raw_response: None,
        failure: Some(Failure {
            reason: Some("sandbox: the person could not be verified".to_owned()),
            pg_code: Some("SANDBOX_FAILED".to_owned()),
            pg_message: Some("sandbox: verification failed at the provider".to_owned()),
        }),
        version: "V2".to_owned(),
    }
}

impl State {
    /// The verification `id` if it is in `store_id`: inserted records first, then the fixtures as
    /// of the sandbox's clock (`store_id` is the configured store, which owns the fixtures).
    pub(in crate::sandbox) fn identity_verification(
        &self,
        id: &str,
        store_id: &str,
    ) -> Option<IdentityVerificationRecord> {
        if let Some((record_store, record)) = self.identity_verifications.get(id) {
            return (record_store == store_id).then(|| record.clone());
        }
        fixtures(self.now_datetime())
            .into_iter()
            .find(|(store, record)| record.id == id && store.is_none_or(|store| store == store_id))
            .map(|(_, record)| record)
    }
}
