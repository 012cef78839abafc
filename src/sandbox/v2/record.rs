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
pub struct IdentityVerificationRecord {
    /// `READY`, `VERIFIED` or `FAILED`.
    pub status: String,
    /// Chosen by the merchant.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<SelectedChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_customer: Option<RequestedCustomer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_customer: Option<VerifiedCustomer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status_changed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_tx_id: Option<String>,
    /// The provider's answer as a string (PortOne passes it through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_raw_response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// `V2` for verifications made through V2 (`V1` exists for V1-era ones).
    pub version: String,
}

/// `SelectedChannel`: the channel (provider contract) the verification went through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedChannel {
    /// `LIVE` or `TEST`: a TEST channel's verification proves nothing about a real person.
    #[serde(rename = "type")]
    pub channel_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `DANAL`, `INICIS_UNIFIED`, `KCP_V2`, … (PortOne's `PgProvider`).
    pub pg_provider: String,
    pub pg_merchant_id: String,
}

/// `IdentityVerificationVerifiedCustomer`: only `name` is always there; the rest depends on the
/// provider and the merchant's contracts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedCustomer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// `SKT`, `KT`, `LGU`, `SKT_MVNO`, `KT_MVNO`, `LGU_MVNO` (V1's `LGT` is V2's `LGU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Digits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// `yyyy-MM-dd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// `MALE`, `FEMALE` or `OTHER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_foreigner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub di: Option<String>,
}

/// `IdentityVerificationRequestedCustomer`: what the merchant passed when it started; all optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedCustomer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_year: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_month: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_day: Option<String>,
}

/// `IdentityVerificationFailure`: all optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_message: Option<String>,
}
