//! The sandbox's mutable state, shared by the server task and every [`SandboxHandle`]: tokens,
//! queued faults, clock skew, inserted and deleted records, and statistics.
//!
//! [`SandboxHandle`]: super::SandboxHandle

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{
    Endpoint, Fault, SandboxConfig, SandboxStats, identities,
    merchants::{Merchant, Owner},
    record::CertificationRecord,
    v2::IdentityVerificationRecord,
};

/// A getToken call this close to expiry extends the token instead of returning it unchanged.
const TOKEN_EXTENSION_WINDOW_SECONDS: i64 = 60;
/// How far such a call pushes the expiry.
const TOKEN_EXTENSION_SECONDS: i64 = 5 * 60;

/// What the server task and every handle share.
pub(super) struct Shared {
    /// `http://HOST:PORT`, for handles (tests reach V2 over HTTP through them).
    pub(super) base_url: String,
    pub(super) config: SandboxConfig,
    /// A std mutex: it is never held across an await, and handle methods must stay sync.
    pub(super) state: Mutex<State>,
    /// Resolves (as an error) once the [`super::Sandbox`] is dropped.
    pub(super) stopped: watch::Receiver<()>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) latency: Duration,
    pub(super) faults: VecDeque<QueuedFault>,
    pub(super) clock_skew_seconds: i64,
    /// One live token per merchant: a token is replaced only after it expired, so a merchant's
    /// older tokens are all invalid.
    pub(super) tokens: HashMap<Merchant, IssuedToken>,
    /// V1 records by imp_uid (unique across merchants, as at PortOne), with their owner.
    pub(super) inserted: HashMap<String, (Owner, CertificationRecord)>,
    /// V1 imp_uids deleted by `DELETE /certifications/{imp_uid}`, fixtures and inserted alike.
    /// A set beside the records rather than a removal, so a reset can bring fixtures back and
    /// `certify` never reissues a deleted imp_uid.
    pub(super) deleted: HashSet<String>,
    /// V2 records by id, with the store they belong to.
    pub(super) identity_verifications: HashMap<String, (String, IdentityVerificationRecord)>,
    pub(super) stats: SandboxStats,
}

impl State {
    /// The sandbox's clock, in unix seconds.
    pub(super) fn now(&self) -> i64 {
        Utc::now().timestamp().saturating_add(self.clock_skew_seconds)
    }

    /// The sandbox's clock as a date-time, for the fixtures; real time if the skew is absurd.
    pub(super) fn now_datetime(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.now(), 0).unwrap_or_else(Utc::now)
    }

    /// Takes one use of the oldest queued fault that applies to a request to `endpoint`
    /// (`None`: a path that is no emulated endpoint).
    pub(super) fn take_fault(&mut self, endpoint: Option<Endpoint>) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|queued| queued.endpoint == Endpoint::Any || Some(queued.endpoint) == endpoint)?;
        let queued = self.faults.get_mut(index)?;
        queued.remaining = queued.remaining.saturating_sub(1);
        if queued.remaining == 0 {
            return self.faults.remove(index).map(|queued| queued.fault);
        }
        Some(queued.fault.clone())
    }

    /// PortOne's token rules, per merchant: reuse while valid, extend in the last minute, new
    /// after expiry.
    pub(super) fn token_for_get_token(
        &mut self,
        merchant: Merchant,
        now: i64,
        lifetime: Duration,
    ) -> IssuedToken {
        match self.tokens.get_mut(&merchant) {
            Some(token) if now < token.expired_at => {
                if token.expired_at - now <= TOKEN_EXTENSION_WINDOW_SECONDS {
                    token.expired_at = token.expired_at.saturating_add(TOKEN_EXTENSION_SECONDS);
                }
                token.clone()
            }
            _ => {
                let lifetime_seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
                let token = IssuedToken {
                    access_token: new_access_token(),
                    expired_at: now.saturating_add(lifetime_seconds),
                };
                self.tokens.insert(merchant, token.clone());
                self.stats.tokens_issued += 1;
                token
            }
        }
    }

    /// The merchant whose valid token `presented` is.
    pub(super) fn merchant_of_token(&self, presented: &str, now: i64) -> Option<Merchant> {
        self.tokens
            .iter()
            .find(|(_, token)| token.access_token == presented && now < token.expired_at)
            .map(|(merchant, _)| *merchant)
    }

    /// The record `imp_uid` if `owner` may see it: inserted records first, then the fixtures as
    /// of the sandbox's clock. `configured_tier` is the main merchant's sub-merchant.
    pub(super) fn certification(
        &self,
        imp_uid: &str,
        owner: &Owner,
        configured_tier: Option<&str>,
    ) -> Option<CertificationRecord> {
        if self.deleted.contains(imp_uid) {
            return None;
        }
        if let Some((record_owner, record)) = self.inserted.get(imp_uid) {
            return (record_owner == owner).then(|| record.clone());
        }
        let now = self.now_datetime();
        let fixtures = match (owner.merchant, owner.tier.as_deref()) {
            (Merchant::Main, None) => identities::fixtures(now),
            (Merchant::Other, None) => identities::other_merchant_fixtures(now),
            (Merchant::Main, Some(tier)) if Some(tier) == configured_tier => identities::tier_fixtures(now),
            // The other merchant has no sub-merchants, and unknown tiers own nothing.
            _ => Vec::new(),
        };
        fixtures.into_iter().find(|record| record.imp_uid == imp_uid)
    }

    /// Deletes the record `imp_uid` if `owner` may see it, returning it as a lookup would have.
    pub(super) fn delete_certification(
        &mut self,
        imp_uid: &str,
        owner: &Owner,
        configured_tier: Option<&str>,
    ) -> Option<CertificationRecord> {
        let record = self.certification(imp_uid, owner, configured_tier)?;
        self.deleted.insert(imp_uid.to_owned());
        Some(record)
    }
}

pub(super) struct QueuedFault {
    pub(super) endpoint: Endpoint,
    pub(super) fault: Fault,
    pub(super) remaining: u32,
}

#[derive(Clone)]
pub(super) struct IssuedToken {
    pub(super) access_token: String,
    pub(super) expired_at: i64,
}

/// 40 lowercase hex characters, like PortOne's tokens.
fn new_access_token() -> String {
    let bytes: [u8; 20] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
