//! PortOne V2 in the sandbox: `GET /identity-verifications/{identityVerificationId}` on the same
//! base URL as V1, answered as `api.portone.io` does (PortOne's OpenAPI for V2, operation
//! `getIdentityVerification`).
//!
//! - Auth: `Authorization: PortOne <SandboxConfig::v2_api_secret>` ([`SANDBOX_V2_API_SECRET`]).
//! - Optional query `storeId`: must be [`SandboxConfig::store_id`] ([`SANDBOX_STORE_ID`]).
//! - 200: the [`IdentityVerificationRecord`] as JSON; optional fields absent, never `null`.
//! - Errors `{"type": …, "message": …}` (PortOne's `GetIdentityVerificationError`), checked in this
//!   order: no or wrong secret → 401 `UNAUTHORIZED`; an id that is empty, longer than 200
//!   characters or not UTF-8, or a query that does not parse → 400 `INVALID_REQUEST`; a `storeId`
//!   other than the configured one → 403 `FORBIDDEN`; an unknown id, or another store's → 404
//!   `IDENTITY_VERIFICATION_NOT_FOUND`.
//!
//! Fixtures (as of the sandbox's clock, skew included; verified ones finished two minutes before
//! now, requested a minute before that; in the configured store unless stated; the person's CI
//! and DI are their V1 ones):
//!
//! | id | constant | status | what it is for |
//! |---|---|---|---|
//! | `sandbox-iv-adult` | [`V2_ADULT`] | VERIFIED | 홍길동 (V1's `PERSON_ADULT`, `imp_100000000001`: same CI/DI), LIVE channel [`SANDBOX_V2_CHANNEL_KEY`], `DANAL`, operator `SKT`, phone `01012345678`, born 1990-03-15, `MALE`, `isForeigner` false |
//! | `sandbox-iv-ready` | [`V2_READY`] | READY | never finished: `requestedCustomer` `{}`, no `verifiedCustomer`, `verifiedAt`, `pgTxId` |
//! | `sandbox-iv-failed` | [`V2_FAILED`] | FAILED | `failure` with `reason`, `pgCode`, `pgMessage` (texts ours) |
//! | `sandbox-iv-test-channel` | [`V2_TEST_CHANNEL`] | VERIFIED | the adult again, on a `TEST` channel ([`SANDBOX_V2_TEST_CHANNEL_KEY`]) |
//! | `sandbox-iv-name-birth-date-only` | [`V2_NAME_AND_BIRTH_DATE_ONLY`] | VERIFIED | 한지민 with only `name` and `birthDate` (1993-09-09): no gender, phone, operator, isForeigner, CI or DI |
//! | `sandbox-iv-lgu-mvno-other-gender` | [`V2_LGU_MVNO_OTHER_GENDER`] | VERIFIED | SMITH JOHN (V1's foreigner): operator `LGU_MVNO`, gender `OTHER` (which V1 cannot express), `isForeigner` true |
//! | `sandbox-iv-minor` | [`V2_MINOR`] | VERIFIED | 김민준, 15 years old, operator `KT` |
//! | `sandbox-iv-inicis` | [`V2_INICIS`] | VERIFIED | 강서준 through `INICIS_UNIFIED` ([`SANDBOX_V2_INICIS_CHANNEL_KEY`]): as KG Inicis answers through V2 (its OpenAPI): phone, gender and isForeigner always, operator and DI never |
//! | `sandbox-iv-other-store` | [`V2_OTHER_STORE`] | VERIFIED | the adult in [`SANDBOX_OTHER_STORE_ID`]: always 404 |

mod fixtures;
mod people;
mod record;
mod server;

use chrono::{DateTime, Utc};

#[cfg(test)]
pub(crate) use self::people::SANDBOX_V2_TEST_CHANNEL_KEY;
pub(super) use self::server::{
    IDENTITY_VERIFICATIONS_PREFIX, get_identity_verification, get_identity_verification_without_id,
    v2_status_fault_body, v2_wrong_types_body,
};
pub(crate) use self::{
    people::{ChannelType, IdentifierForm, Verification},
    record::{Failure, IdentityVerificationRecord, RequestedCustomer, SelectedChannel, VerifiedCustomer},
};
#[cfg(doc)]
use super::SandboxConfig;
use super::{SandboxHandle, people::Person};

/// The V2 API secret the sandbox accepts by default.
pub const SANDBOX_V2_API_SECRET: &str = "sandbox_v2_api_secret";
/// The store that secret reads.
pub const SANDBOX_STORE_ID: &str = "store-00000000-0000-4000-8000-000000000001";
/// A store the secret cannot read: its verifications are 404.
pub(crate) const SANDBOX_OTHER_STORE_ID: &str = "store-00000000-0000-4000-8000-000000000002";
/// The LIVE Danal channel's key, the one the fixtures' adult verified through.
pub const SANDBOX_V2_CHANNEL_KEY: &str = "channel-key-00000000-0000-4000-8000-000000000001";

pub(crate) const V2_ADULT: &str = "sandbox-iv-adult";
pub(crate) const V2_READY: &str = "sandbox-iv-ready";
pub(crate) const V2_FAILED: &str = "sandbox-iv-failed";
pub(crate) const V2_TEST_CHANNEL: &str = "sandbox-iv-test-channel";
pub(crate) const V2_NAME_AND_BIRTH_DATE_ONLY: &str = "sandbox-iv-name-birth-date-only";
pub(crate) const V2_LGU_MVNO_OTHER_GENDER: &str = "sandbox-iv-lgu-mvno-other-gender";
pub(crate) const V2_MINOR: &str = "sandbox-iv-minor";
pub(crate) const V2_INICIS: &str = "sandbox-iv-inicis";
pub(crate) const V2_OTHER_STORE: &str = "sandbox-iv-other-store";

/// PortOne's limit on an identity verification id, in characters (ours: PortOne's OpenAPI gives
/// none; 200 is the bound this sandbox promises its callers).
pub(crate) const MAX_IDENTITY_VERIFICATION_ID_CHARS: usize = 200;

/// `id` already names a VERIFIED verification: PortOne lets an id succeed only once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AlreadyVerified;

impl SandboxHandle {
    /// Added to the configured store, or replaced by id; it shadows a fixture with the same id.
    pub(crate) fn insert_identity_verification(&self, record: IdentityVerificationRecord) {
        let store_id = self.shared.config.store_id.clone();
        self.insert_identity_verification_in_store(&store_id, record);
    }

    /// Like [`Self::insert_identity_verification`], in `store_id` (another store's is 404).
    pub(crate) fn insert_identity_verification_in_store(
        &self,
        store_id: &str,
        record: IdentityVerificationRecord,
    ) {
        self.shared
            .state()
            .identity_verifications
            .insert(record.id.clone(), (store_id.to_owned(), record));
    }

    /// What a browser finishing PortOne V2's popup does: `person` verifies under `id` (chosen by
    /// the merchant), `seconds_ago` before the sandbox's now, in the configured store; the answer
    /// writes CI and DI in `identifier_form`.
    pub(crate) fn certify_identity_verification(
        &self,
        person: Person,
        id: &str,
        person_key: Option<&str>,
        seconds_ago: u32,
        channel: ChannelType,
        identifier_form: IdentifierForm,
    ) -> Result<(), AlreadyVerified> {
        let store_id = self.shared.config.store_id.clone();
        let mut state = self.shared.state();
        let now = state.now_datetime();
        if state
            .identity_verification(id, &store_id)
            .is_some_and(|record| record.status == "VERIFIED")
        {
            return Err(AlreadyVerified);
        }
        let verified_at =
            DateTime::<Utc>::from_timestamp(now.timestamp().saturating_sub(i64::from(seconds_ago)), 0)
                .unwrap_or(now);
        let verification = Verification {
            id,
            verified_at,
            person_key,
            channel,
            identifier_form,
        };
        let record = person.verify(&verification, now);
        state
            .identity_verifications
            .insert(id.to_owned(), (store_id, record));
        Ok(())
    }
}
