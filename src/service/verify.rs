//! Verify: look the certification up, check it, and (as its session's purpose says) redeem the
//! session, record and bind. Nothing about a certification is stored until it passed every
//! check, and a person under the minimum age is never bound.

use chrono::{DateTime, Timelike as _, Utc};
use tokio::time::Instant;

use super::{
    CertificationFacts, IdentityService, Recordable, ServiceError, Verified, VerifyCommand, certified_parts,
};
use crate::{
    domain::{
        AgeCheck, BindOutcome, Holder, MinAge, Provider, ProviderCertification, Session, SessionId,
        VerificationPurpose, full_age, saturating_after, today_in_seoul,
    },
    store::{Claim, Claimed, Redeemed, StoreError},
    telemetry::metrics,
};

/// A Verify's answer before it becomes [`Verified`]: whether this call redeemed the session
/// first (retries are not counted again).
struct Answer {
    verified: Verified,
    first_redemption: bool,
}

impl IdentityService {
    #[tracing::instrument(skip_all, fields(certification = %command.certification, session = command.merchant_uid.is_some()))]
    pub async fn verify(
        &self,
        command: VerifyCommand,
        caller: &str,
        deadline: Instant,
    ) -> Result<Verified, ServiceError> {
        // The database calls are boxed: the future that waits on PortOne (most of a call's life,
        // and what 1,000 calls in flight are made of) then carries no room for their state.
        let session = match Box::pin(self.session_of(&command, caller)).await {
            Ok(session) => session,
            Err(error) => {
                // Refusals of a session that exists were counted with its purpose.
                if matches!(
                    error,
                    ServiceError::SessionRequired | ServiceError::SessionNotFound
                ) {
                    metrics::session_refused(None, error.reason());
                }
                return Err(error);
            }
        };
        let purpose = session.as_ref().map(|session| session.purpose);
        let answer = self.verify_in(command, session, deadline).await;
        match (&answer, purpose) {
            (Ok(answer), Some(purpose)) if answer.first_redemption => {
                metrics::session_redeemed(purpose, answer.verified.bound);
            }
            (Err(error), Some(purpose)) if error.is_refusal() => {
                metrics::session_refused(Some(purpose), error.reason());
            }
            _ => {}
        }
        let verified = answer?.verified;
        tracing::info!(
            bound = verified.bound,
            age_satisfied = verified.age.satisfied(),
            purpose = purpose.map(VerificationPurpose::as_str),
            "certification verified"
        );
        Ok(verified)
    }

    async fn verify_in(
        &self,
        command: VerifyCommand,
        session: Option<Session>,
        deadline: Instant,
    ) -> Result<Answer, ServiceError> {
        let found = self.lookup(&command.certification, deadline).await?;
        let (identity, certified_at) = certified_parts(&found, &self.policy)?;
        let now = stored_precision(Utc::now());
        self.check_time(certified_at, now)?;
        self.check_belongs(&found, certified_at, &command, session.as_ref())?;

        let min_age = match &session {
            Some(session) => session.min_age,
            None => command.min_age,
        };
        let age = full_age(identity.birth_date, today_in_seoul(now)).ok_or(ServiceError::BornInTheFuture)?;
        let age = AgeCheck {
            age,
            min_age: min_age.map_or(self.policy.min_age, MinAge::get),
        };

        // From here on the certification is the session's: whatever the verdict, it redeems it.
        let mut verdict = Ok(());
        if let Some(session) = &session {
            let fields = session.expected.mismatches(&identity);
            if !fields.is_empty() {
                verdict = Err(ServiceError::IdentityMismatch { fields });
            }
        }
        if verdict.is_ok() && self.policy.reject_underage && !age.satisfied() {
            verdict = Err(ServiceError::Underage(age));
        }
        let account = match &session {
            Some(session) if session.binds() => session.account.clone(),
            Some(_) => None,
            None => command.account.clone(),
        };
        let ci_index = self.index_key.ci_index(&identity.ci);
        let facts = CertificationFacts {
            provider: found.provider,
            id: found.id.clone(),
            merchant_uid: found.merchant_uid.clone(),
            pg_provider: found.pg_provider.clone(),
            certified_at,
        };
        let verified = |holder_before, bound, reverified_at| Verified {
            identity: identity.clone(),
            certification: facts.clone(),
            age,
            holder_before,
            bound,
            purpose: session.as_ref().map(|session| session.purpose),
            reverified_at,
        };

        if let (Ok(()), true, Some(account)) = (&verdict, age.satisfied(), &account) {
            let claim = session
                .as_ref()
                .map(|session| claim_for(&session.id, &found, self.policy.delete_after, now));
            let redeemed = Box::pin(self.store.record_and_bind(
                Recordable::new(self, &found, &identity, ci_index.clone(), certified_at),
                account,
                self.policy.rejoin_cooldown,
                claim,
            ))
            .await?;
            return match redeemed {
                Redeemed::Bound {
                    holder_before,
                    redeemed_session,
                    ..
                } => Ok(Answer {
                    verified: verified(holder_before, true, None),
                    first_redemption: redeemed_session,
                }),
                Redeemed::SessionUsed => Err(ServiceError::SessionUsed),
                Redeemed::SessionExpired => Err(session_expired(session.as_ref())),
                Redeemed::Refused(outcome) => {
                    let refusal = refusal(outcome);
                    // Refused after every check of the certification itself: the session is spent.
                    if let Some(session) = &session {
                        let claim = claim_for(&session.id, &found, self.policy.delete_after, now);
                        Box::pin(self.redeem(&claim, None, Some(session), now)).await?;
                    }
                    Err(refusal)
                }
            };
        }

        // Nothing to bind (or not allowed to): who holds the person is read, not written.
        let Some(session) = &session else {
            verdict?;
            // Without a session, today's behaviour: a certified person who passed is recorded,
            // and the record's one statement also says who holds them.
            let holder = if age.satisfied() {
                Box::pin(self.store.record(Recordable::new(
                    self,
                    &found,
                    &identity,
                    ci_index.clone(),
                    certified_at,
                )))
                .await?
                .holder
            } else {
                Box::pin(self.store.holder_by_ci(&ci_index)).await?
            };
            return Ok(Answer {
                verified: verified(holder, false, None),
                first_redemption: false,
            });
        };
        let holder = Box::pin(self.store.holder_by_ci(&ci_index)).await?;
        if verdict.is_ok()
            && session.purpose == VerificationPurpose::Reverify
            && holder.as_ref().map(|holder| &holder.account_id) != session.account.as_ref()
        {
            verdict = Err(ServiceError::IdentityMismatch { fields: vec!["ci"] });
        }
        let claim = claim_for(&session.id, &found, self.policy.delete_after, now);
        let (holder_before, redeemed_at, first) =
            match Box::pin(self.redeem(&claim, holder.as_ref(), Some(session), now)).await? {
                None => (holder, now, true),
                Some(earlier) => (earlier.holder_before, earlier.redeemed_at, false),
            };
        verdict?;
        let reverified_at = (session.purpose == VerificationPurpose::Reverify).then_some(redeemed_at);
        Ok(Answer {
            verified: verified(holder_before, false, reverified_at),
            first_redemption: first,
        })
    }

    /// Redeems the session for a Verify that binds nothing: `None` for the first redemption,
    /// the earlier one for a retry; SESSION_USED or SESSION_EXPIRED when it was lost.
    async fn redeem(
        &self,
        claim: &Claim,
        holder_before: Option<&Holder>,
        session: Option<&Session>,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::domain::Redemption>, ServiceError> {
        match self.store.redeem_session(claim, holder_before, now).await? {
            Claimed::First => Ok(None),
            Claimed::Again(earlier) => Ok(Some(earlier)),
            Claimed::UsedByAnother => Err(ServiceError::SessionUsed),
            Claimed::Expired => Err(session_expired(session)),
        }
    }

    /// Certified no later than now plus the clock skew, and no longer ago than allowed.
    fn check_time(&self, certified_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let clock_skew = self.policy.clock_skew;
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
        let max_age = self.policy.max_certification_age;
        if (now - certified_at).to_std().unwrap_or_default() > max_age {
            return Err(ServiceError::CertificationExpired {
                certified_at,
                max_age,
            });
        }
        Ok(())
    }

    /// The certification was made for this session (or, without one, for this merchant_uid),
    /// after the session began.
    fn check_belongs(
        &self,
        found: &ProviderCertification,
        certified_at: DateTime<Utc>,
        command: &VerifyCommand,
        session: Option<&Session>,
    ) -> Result<(), ServiceError> {
        let certified_for = found.merchant_uid.as_deref();
        match session {
            Some(session) => {
                if certified_for != Some(session.id.as_str()) {
                    return Err(ServiceError::MerchantMismatch);
                }
                let skew = chrono::TimeDelta::from_std(self.policy.clock_skew).unwrap_or_default();
                let earliest = session
                    .created_at
                    .checked_sub_signed(skew)
                    .unwrap_or(session.created_at);
                if certified_at < earliest {
                    return Err(ServiceError::CertifiedBeforeSession);
                }
            }
            None => {
                if let Some(expected) = &command.merchant_uid
                    && certified_for != Some(expected.as_str())
                {
                    return Err(ServiceError::MerchantMismatch);
                }
                // A certification made for a session is redeemed through that session only.
                if certified_for.and_then(SessionId::recognise).is_some() {
                    return Err(ServiceError::SessionRequired);
                }
            }
        }
        Ok(())
    }
}

/// The certification's claim on its session. Its first redemption also enqueues the deletion at
/// PortOne (PORTONE_DELETE_AFTER) where there is one: V1 only, V2 has no such call.
fn claim_for(
    session: &SessionId,
    found: &ProviderCertification,
    delete_after: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Claim {
    let deletion_due = delete_after
        .filter(|_| found.provider == Provider::PortoneV1)
        .map(|after| saturating_after(now, after));
    Claim {
        session: session.clone(),
        provider: found.provider,
        certification_id: found.id.clone(),
        deletion_due,
    }
}

fn session_expired(session: Option<&Session>) -> ServiceError {
    ServiceError::SessionExpired {
        expires_at: session.map_or_else(Utc::now, |session| session.expires_at),
    }
}

fn refusal(outcome: BindOutcome) -> ServiceError {
    match outcome {
        BindOutcome::Conflict(conflict) => ServiceError::Conflict(conflict),
        BindOutcome::Cooldown { until } => ServiceError::RejoinCooldown { until },
        BindOutcome::Bound { .. } => {
            ServiceError::Store(StoreError::Failure("a bind refused as bound".into()))
        }
    }
}

/// A time as the database keeps it (PostgreSQL: microseconds), so the first answer carries the
/// same `reverified_at` as the retries that read it back.
pub(super) fn stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000).unwrap_or(at)
}
