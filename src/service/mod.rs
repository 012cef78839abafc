//! The use cases: verify a certification (and bind its person), and check for a duplicate.
//! Transport-free: the gRPC layer parses requests into commands and maps results back.
//! Provider-free too: certifications are looked up through [`Providers`].

mod provider;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::{
    domain::{
        AccountId, AgeCheck, BindOutcome, CertificationRef, Ci, CiIndexKey, Holder, Identity, MerchantUid,
        MinAge, ProviderCertification, Purpose, SealingKeys, full_age, today_in_seoul,
    },
    error::ServiceError,
    store::{Recorded, SeenCertification, Store},
};

pub use provider::{BoxFuture, IdentityProvider, ProviderError, Providers};

/// The checks every Verify applies.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Minimum full age, unless a request overrides it.
    pub min_age: u32,
    /// Fail the call with UNDERAGE instead of only reporting `satisfied: false`.
    pub reject_underage: bool,
    /// How old `certified_at` may be: a certification is proof of a moment, not a standing fact.
    pub max_certification_age: Duration,
    /// How long after Unlink the person may not be bound to a new account (0: at once).
    pub rejoin_cooldown: Duration,
    /// How far a certification's time may be ahead of our clock (PortOne's clock and ours).
    pub clock_skew: Duration,
}

/// A parsed Verify request.
#[derive(Debug)]
pub struct VerifyCommand {
    pub certification: CertificationRef,
    pub account: Option<AccountId>,
    pub merchant_uid: Option<MerchantUid>,
    pub min_age: Option<MinAge>,
}

/// Which person CheckDuplicate asks about.
#[derive(Debug)]
pub enum DuplicateKey {
    Certification(CertificationRef),
    Ci(Ci),
}

/// The certification's own facts, as reported back to the caller.
#[derive(Clone, Debug)]
pub struct CertificationFacts {
    /// The provider's id of the certification (an imp_uid for PortOne V1).
    pub id: String,
    pub merchant_uid: Option<String>,
    pub pg_provider: String,
    pub certified_at: DateTime<Utc>,
}

/// A Verify that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub identity: Identity,
    pub certification: CertificationFacts,
    pub age: AgeCheck,
    /// Who held the person before this call.
    pub holder_before: Option<Holder>,
    /// Whether the requested account holds the person after this call.
    pub bound: bool,
}

pub struct IdentityService {
    providers: Providers,
    store: Store,
    index_key: CiIndexKey,
    sealing: SealingKeys,
    policy: Policy,
}

impl IdentityService {
    pub fn new(
        providers: Providers,
        store: Store,
        index_key: CiIndexKey,
        sealing: SealingKeys,
        policy: Policy,
    ) -> Self {
        Self {
            providers,
            store,
            index_key,
            sealing,
            policy,
        }
    }

    /// The account no longer holds its person. Idempotent: `None` when it held nobody.
    #[tracing::instrument(skip_all)]
    pub async fn unlink(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, ServiceError> {
        let unlinked = self.store.unlink(account).await?;
        tracing::info!(existed = unlinked.is_some(), "account unlinked");
        Ok(unlinked)
    }

    #[tracing::instrument(skip_all, fields(certification = %command.certification, binds = command.account.is_some()))]
    pub async fn verify(&self, command: VerifyCommand, deadline: Instant) -> Result<Verified, ServiceError> {
        let found = self.providers.lookup(&command.certification, deadline).await?;
        let (identity, certified_at) = certified_parts(&found)?;
        let recorded = self.record(&found, &identity, certified_at).await?;

        let now = Utc::now();
        let max_age = self.policy.max_certification_age;
        let clock_skew = self.policy.clock_skew;
        // A negative age is not "fresh": beyond the clock skew it is refused outright.
        let latest = chrono::TimeDelta::from_std(clock_skew)
            .ok()
            .and_then(|skew| now.checked_add_signed(skew))
            .unwrap_or(now);
        if certified_at > latest {
            return Err(ServiceError::CertifiedInFuture {
                certified_at,
                clock_skew,
            });
        }
        let age_of_certification = (now - certified_at).to_std().unwrap_or_default();
        if age_of_certification > max_age {
            return Err(ServiceError::CertificationExpired {
                certified_at,
                max_age,
            });
        }
        if let Some(expected) = &command.merchant_uid
            && found.merchant_uid.as_deref() != Some(expected.as_str())
        {
            return Err(ServiceError::MerchantMismatch);
        }
        let age = full_age(identity.birth_date, today_in_seoul(now)).ok_or(ServiceError::BornInTheFuture)?;
        let age_check = AgeCheck {
            age,
            min_age: command.min_age.map_or(self.policy.min_age, MinAge::get),
        };
        if self.policy.reject_underage && !age_check.satisfied() {
            return Err(ServiceError::Underage(age_check));
        }

        let bound = match &command.account {
            None => false,
            Some(account) => match self
                .store
                .bind(
                    found.provider,
                    &found.id,
                    recorded.person_id,
                    account,
                    self.policy.rejoin_cooldown,
                )
                .await?
            {
                BindOutcome::Bound { .. } => true,
                BindOutcome::Conflict(conflict) => return Err(ServiceError::Conflict(conflict)),
                BindOutcome::Cooldown { until } => return Err(ServiceError::RejoinCooldown { until }),
            },
        };
        tracing::info!(
            bound,
            age_satisfied = age_check.satisfied(),
            "certification verified"
        );
        Ok(Verified {
            certification: CertificationFacts {
                id: found.id,
                merchant_uid: found.merchant_uid,
                pg_provider: found.pg_provider,
                certified_at,
            },
            identity,
            age: age_check,
            holder_before: recorded.holder,
            bound,
        })
    }

    /// Who holds the person, if anyone. By certification, our own record answers when we have
    /// seen it; otherwise its provider does (and we record what it says). No freshness or
    /// merchant check here: the question is about the person, not about this signup.
    #[tracing::instrument(skip_all, fields(by = key_kind(&key)))]
    pub async fn check_duplicate(
        &self,
        key: DuplicateKey,
        deadline: Instant,
    ) -> Result<Option<Holder>, ServiceError> {
        match key {
            DuplicateKey::Ci(ci) => Ok(self.store.holder_by_ci(&self.index_key.ci_index(&ci)).await?),
            DuplicateKey::Certification(reference) => {
                if let Some(holder) = self.store.holder_by_certification(&reference).await? {
                    return Ok(holder);
                }
                let found = self.providers.lookup(&reference, deadline).await?;
                let (identity, certified_at) = certified_parts(&found)?;
                Ok(self.record(&found, &identity, certified_at).await?.holder)
            }
        }
    }

    async fn record(
        &self,
        found: &ProviderCertification,
        identity: &Identity,
        certified_at: DateTime<Utc>,
    ) -> Result<Recorded, ServiceError> {
        let ci_index = self.index_key.ci_index(&identity.ci);
        let di_index = identity.di.as_ref().map(|di| self.index_key.di_index(di));
        let ci_sealed = self.sealing.seal(Purpose::Ci, &ci_index, identity.ci.expose());
        let di_sealed = identity
            .di
            .as_ref()
            .map(|di| self.sealing.seal(Purpose::Di, &ci_index, di.expose()));
        Ok(self
            .store
            .record(SeenCertification {
                provider: found.provider,
                id: &found.id,
                ci_index: &ci_index,
                di_index: di_index.as_ref(),
                ci_sealed: &ci_sealed,
                di_sealed: di_sealed.as_ref(),
                certified_at,
            })
            .await?)
    }
}

/// The identity and time of a certified certification; NOT_CERTIFIED otherwise.
fn certified_parts(found: &ProviderCertification) -> Result<(Identity, DateTime<Utc>), ServiceError> {
    match (&found.identity, found.certified_at) {
        (Some(identity), Some(certified_at)) if found.certified => Ok((identity.clone(), certified_at)),
        _ => Err(ServiceError::NotCertified),
    }
}

fn key_kind(key: &DuplicateKey) -> &'static str {
    match key {
        DuplicateKey::Certification(_) => "certification",
        DuplicateKey::Ci(_) => "ci",
    }
}
