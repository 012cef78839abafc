//! Who owns a certification at the emulated PortOne V1: one of two merchants (each with its own
//! imp_key/imp_secret and its own records), and optionally one of the main merchant's
//! sub-merchants, selected per request with the `Tier` header.

use serde::{Deserialize, Serialize};

/// The two merchant accounts the sandbox emulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Merchant {
    /// `SandboxConfig::imp_key`: owns the built-in fixtures and has the foreigner-detection
    /// contract (`foreigner_v2` true or false).
    #[default]
    Main,
    /// `SandboxConfig::other_imp_key`: a merchant without the foreigner contract (`foreigner`
    /// false, `foreigner_v2` null) and another site (other DIs for the same people).
    Other,
}

impl Merchant {
    /// The DI site of the merchant; `None` is the main merchant's, which [`super::di_for`] gives.
    pub(super) fn di_site(self) -> Option<&'static str> {
        match self {
            Merchant::Main => None,
            Merchant::Other => Some("other-merchant"),
        }
    }
}

/// The account a certification belongs to: it is visible only to a token of `merchant`, and only
/// with a `Tier` header equal to `tier` (no header when `tier` is `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) struct Owner {
    pub(crate) merchant: Merchant,
    pub(crate) tier: Option<String>,
}

impl Owner {
    /// The main merchant itself, no sub-merchant: what the fixtures and plain inserts belong to.
    pub(crate) fn main() -> Self {
        Self::default()
    }

    #[cfg(test)]
    pub(crate) fn other_merchant() -> Self {
        Self {
            merchant: Merchant::Other,
            tier: None,
        }
    }

    /// The main merchant's sub-merchant `tier`.
    pub(crate) fn tier(tier: &str) -> Self {
        Self {
            merchant: Merchant::Main,
            tier: Some(tier.to_owned()),
        }
    }
}
