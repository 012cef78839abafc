//! PortOne V2's `IdentityVerification` object (the answer of
//! `GET /identity-verifications/{identityVerificationId}`), field for field as in PortOne's
//! OpenAPI: `ReadyIdentityVerification`, `VerifiedIdentityVerification` and
//! `FailedIdentityVerification` share one flat struct, told apart by `status`.
//!
//! Optional fields are left out of the JSON when `None` (PortOne omits them; it never sends
//! `null`). Enumerations are strings, not Rust enums, so a test can insert a value PortOne may add
//! tomorrow and check that its client copes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One identity verification. Which fields each `status` has:
///
/// | status | required | optional |
/// |---|---|---|
/// | `READY` | `requestedCustomer` | `channel`, `customData`, `pgTxId` |
/// | `VERIFIED` | `verifiedCustomer`, `verifiedAt`, `pgTxId`, `pgRawResponse` | `channel`, `customData` |
/// | `FAILED` | `requestedCustomer`, `failure` | `channel`, `customData`, `pgTxId` |
///
/// and every status has `status`, `id`, `requestedAt`, `updatedAt`, `statusChangedAt`,
/// `version`. The sandbox serves what it is given: a test may break these rules on purpose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentityVerificationRecord {
    /// `READY`, `VERIFIED` or `FAILED`.
    pub(crate) status: String,
    /// Chosen by the merchant.
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) channel: Option<SelectedChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) requested_customer: Option<RequestedCustomer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verified_customer: Option<VerifiedCustomer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) custom_data: Option<String>,
    pub(crate) requested_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) status_changed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verified_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pg_tx_id: Option<String>,
    /// The provider's answer as a string (PortOne passes it through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pg_raw_response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<Failure>,
    /// `V2` for verifications made through V2 (`V1` exists for V1-era ones).
    pub(crate) version: String,
}

/// `SelectedChannel`: the channel (provider contract) the verification went through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SelectedChannel {
    /// `LIVE` or `TEST`: a TEST channel's verification proves nothing about a real person.
    #[serde(rename = "type")]
    pub(crate) channel_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// `DANAL`, `INICIS_UNIFIED`, `KCP_V2`, … (PortOne's `PgProvider`).
    pub(crate) pg_provider: String,
    pub(crate) pg_merchant_id: String,
}

/// `IdentityVerificationVerifiedCustomer`: only `name` is always there; the rest depends on the
/// provider and the merchant's contracts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifiedCustomer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    /// `SKT`, `KT`, `LGU`, `SKT_MVNO`, `KT_MVNO`, `LGU_MVNO` (V1's `LGT` is V2's `LGU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) operator: Option<String>,
    /// Digits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phone_number: Option<String>,
    /// `yyyy-MM-dd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) birth_date: Option<String>,
    /// `MALE`, `FEMALE` or `OTHER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_foreigner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ci: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) di: Option<String>,
}

/// `IdentityVerificationRequestedCustomer`: what the merchant passed when it started; all optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestedCustomer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) birth_year: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) birth_month: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) birth_day: Option<String>,
}

/// `IdentityVerificationFailure`: all optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pg_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pg_message: Option<String>,
}
