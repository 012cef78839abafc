//! [`SandboxHandle::certify`]: a person finishing PortOne V1's popup, for the main merchant, the
//! other merchant, or the main merchant's sub-merchant.

use super::{
    SandboxHandle,
    merchants::{Merchant, Owner},
    people::{Certification, Person},
};

/// The lowest imp_uid number [`SandboxHandle::certify`] issues: every fixture's starts with 1.
const FIRST_ISSUED_IMP_UID: u64 = 200_000_000_000;

/// The owner's tier is not the sandbox's configured sub-merchant (or the other merchant's, which
/// has none).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownTier;

impl SandboxHandle {
    /// What a browser finishing PortOne's popup does: a new certification of `person` for
    /// `merchant_uid` at the main merchant, completed `seconds_ago` before the sandbox's now.
    /// Returns its imp_uid.
    #[cfg(test)]
    pub(crate) fn certify(
        &self,
        person: Person,
        merchant_uid: &str,
        person_key: Option<&str>,
        seconds_ago: u32,
    ) -> String {
        // The main merchant without a tier is always known: this never falls back.
        self.certify_as(Owner::main(), person, merchant_uid, person_key, seconds_ago)
            .unwrap_or_default()
    }

    /// Like [`Self::certify`], for `owner`: the other merchant, or the main merchant's configured
    /// sub-merchant ([`super::SandboxConfig::tier`]).
    pub(crate) fn certify_as(
        &self,
        owner: Owner,
        person: Person,
        merchant_uid: &str,
        person_key: Option<&str>,
        seconds_ago: u32,
    ) -> Result<String, UnknownTier> {
        if owner.tier.is_some() && (owner.merchant != Merchant::Main || owner.tier != self.shared.config.tier)
        {
            return Err(UnknownTier);
        }
        let mut state = self.shared.state();
        let now = state.now_datetime();
        // Random rather than counted: a restarted `serve --sandbox` on the same database must not
        // hand out an imp_uid its store has already seen.
        let imp_uid = loop {
            let digits = rand::random_range(FIRST_ISSUED_IMP_UID..1_000_000_000_000);
            let candidate = format!("imp_{digits}");
            if !state.inserted.contains_key(&candidate) {
                break candidate;
            }
        };
        let certification = Certification {
            imp_uid: &imp_uid,
            merchant_uid,
            certified_at: now.timestamp().saturating_sub(i64::from(seconds_ago)),
            person_key,
            merchant: owner.merchant,
        };
        let record = person.certify(&certification, now);
        state.inserted.insert(imp_uid.clone(), (owner, record));
        Ok(imp_uid)
    }
}
