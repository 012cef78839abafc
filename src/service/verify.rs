//! Verify: look the certification up, check it, and (as its session's purpose says) redeem the
//! session, record and bind. Nothing about a certification is stored until it passed every
//! check, and a person under the minimum age is never bound.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{
    IdentityService, Metered, Recordable, ServiceError, SessionUse, Verified, VerifyCommand,
    decide::{Facts, Plan, Write, after_holder, after_holder_reason, decide},
};
use crate::{
    audit::{OUTCOME_OK, Subject, Work},
    domain::{
        AccountId, BindOutcome, Holder, PersonIndex, Provider, ProviderCertification, Session, SessionId,
        VerificationPurpose, saturating_after,
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

/// A certification that passed every check, on its way to its write.
struct Checked<'s> {
    found: ProviderCertification,
    facts: Facts,
    ci_index: PersonIndex,
    session: Option<&'s Session>,
    now: DateTime<Utc>,
}

impl Checked<'_> {
    fn recordable(&self, service: &IdentityService) -> Recordable {
        let facts = &self.facts;
        Recordable::new(
            service,
            &self.found,
            &facts.identity,
            self.ci_index.clone(),
            facts.certified_at,
        )
    }

    fn answer(
        &self,
        holder_before: Option<Holder>,
        bound: bool,
        reverified_at: Option<DateTime<Utc>>,
        first_redemption: bool,
    ) -> Answer {
        let facts = &self.facts;
        Answer {
            verified: Verified {
                identity: facts.identity.clone(),
                certification: facts.certification.clone(),
                certified_at: facts.certified_at,
                age: facts.age,
                holder_before,
                bound,
                purpose: self.session.map(|session| session.purpose),
                reverified_at,
            },
            first_redemption,
        }
    }
}

impl IdentityService {
    #[tracing::instrument(skip_all, fields(certification = %command.certification, session = command.merchant_uid.is_some()))]
    pub(crate) async fn verify(
        &self,
        command: VerifyCommand,
        caller: &str,
        deadline: Instant,
        subject: &Subject,
    ) -> Result<Verified, ServiceError> {
        if let Some(account) = &command.account {
            subject.account(account.as_str());
        }
        // The database calls are boxed: the future that waits on PortOne (most of a call's life,
        // and what 1,000 calls in flight are made of) then carries no room for their state.
        let admitted = match Box::pin(self.admitted(&command, caller, SessionUse::Redeem, subject)).await {
            Ok(admitted) => admitted,
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
        let (session, redeemed) =
            admitted.map_or((None, false), |(session, redeemed)| (Some(session), redeemed));
        let purpose = session.as_ref().map(|session| session.purpose);
        let metered = Metered {
            caller,
            unredeemed: session.as_ref().filter(|_| !redeemed),
            subject,
        };
        let answer = self.verify_in(command, session.as_ref(), metered, deadline).await;
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
        if verified.bound {
            subject.did(Work::Entry);
        }
        tracing::info!(
            bound = verified.bound,
            age_satisfied = verified.age.satisfied(),
            purpose = purpose.map(VerificationPurpose::as_str),
            "certification verified"
        );
        Ok(verified)
    }

    /// Looks the certification up, decides ([`decide`]), and applies the plan. `metered`: a
    /// session this certification redeemed already (a retry) is not spent by its look-up.
    async fn verify_in(
        &self,
        command: VerifyCommand,
        session: Option<&Session>,
        metered: Metered<'_>,
        deadline: Instant,
    ) -> Result<Answer, ServiceError> {
        let subject = metered.subject;
        let found = self.lookup(&command.certification, metered, deadline).await?;
        let now = crate::domain::stored_precision(Utc::now());
        let Plan { facts, write } = decide(&found, session, &command, &self.policy, now)?;
        let checked = Checked {
            ci_index: self.index_key.ci_index(&facts.identity.ci),
            found,
            facts,
            session,
            now,
        };
        // The database calls are boxed: see `verify`.
        match write {
            Write::Bind { account } => Box::pin(self.bind_checked(&checked, account, subject)).await,
            Write::Record => Box::pin(self.record_checked(&checked, subject)).await,
            Write::Read => {
                let holder = Box::pin(self.store.holder_by_ci(&checked.ci_index, None)).await?;
                Ok(checked.answer(holder, false, None, false))
            }
            Write::Redeem { session, verdict } => {
                Box::pin(self.redeem_checked(&checked, session, verdict, subject)).await
            }
        }
    }

    /// Records the certification and binds its person to `account`, redeeming the session
    /// where there is one.
    async fn bind_checked(
        &self,
        checked: &Checked<'_>,
        account: AccountId,
        subject: &Subject,
    ) -> Result<Answer, ServiceError> {
        let Checked {
            found, session, now, ..
        } = checked;
        let claim = session.map(|session| claim_for(&session.id, found, self.policy.delete_after, *now));
        let (store, recordable, cooldown) = (
            self.store.clone(),
            checked.recordable(self),
            self.policy.rejoin_cooldown,
        );
        let redeemed = self
            .riding(subject, Some(Work::Entry), OUTCOME_OK, move |access| async move {
                store
                    .record_and_bind(recordable, &account, cooldown, claim, access)
                    .await
            })
            .await?;
        let (holder_before, first) = self.bound(redeemed, *session, found, *now, subject).await?;
        Ok(checked.answer(holder_before, true, None, first))
    }

    /// Records the certification (no session): the record says who holds the person.
    async fn record_checked(&self, checked: &Checked<'_>, subject: &Subject) -> Result<Answer, ServiceError> {
        let (store, recordable) = (self.store.clone(), checked.recordable(self));
        let recorded = self
            .riding(subject, None, OUTCOME_OK, move |access| async move {
                store.record(recordable, access).await
            })
            .await?;
        Ok(checked.answer(recorded.holder, false, None, false))
    }

    /// Redeems a session that binds nothing, then answers `verdict`, decided on the holder the
    /// first redemption saw: a retry answers as it did.
    async fn redeem_checked(
        &self,
        checked: &Checked<'_>,
        session: &Session,
        verdict: Result<(), ServiceError>,
        subject: &Subject,
    ) -> Result<Answer, ServiceError> {
        let now = checked.now;
        let holder = self.store.holder_by_ci(&checked.ci_index, None).await?;
        let claim = claim_for(&session.id, &checked.found, self.policy.delete_after, now);
        // A first redemption answers on the holder seen now: its record, with that answer,
        // commits with it.
        let answer = after_holder_reason(&verdict, session, holder.as_ref());
        let first_answer = (subject, answer);
        let (holder_before, redeemed_at, first) = match self
            .redeem(&claim, holder.as_ref(), None, Some(session), now, first_answer)
            .await?
        {
            None => (holder, now, true),
            Some(earlier) => (earlier.holder_before, earlier.redeemed_at, false),
        };
        after_holder(verdict, session, holder_before.as_ref())?;
        let reverified_at = (session.purpose == VerificationPurpose::Reverify).then_some(redeemed_at);
        Ok(checked.answer(holder_before, false, reverified_at, first))
    }

    /// A bind's outcome: who held the person before, and whether this call redeemed the session
    /// first. A refused bind spends its session: the certification was the session's.
    async fn bound(
        &self,
        redeemed: Redeemed,
        session: Option<&Session>,
        found: &ProviderCertification,
        now: DateTime<Utc>,
        subject: &Subject,
    ) -> Result<(Option<Holder>, bool), ServiceError> {
        match redeemed {
            Redeemed::Bound {
                holder_before,
                redeemed_session,
                ..
            } => Ok((holder_before, redeemed_session)),
            Redeemed::SessionUsed => Err(ServiceError::SessionUsed),
            Redeemed::SessionExpired => Err(session_expired(session)),
            Redeemed::Refused(outcome) => {
                let Some(session) = session else {
                    return Err(refusal(outcome));
                };
                // The refusal is kept with the redemption: a retry answers it again, even once
                // the holder has left. A concurrent retry that redeemed first decided it.
                let claim = claim_for(&session.id, found, self.policy.delete_after, now);
                let answer = (subject, refusal(outcome.clone()).reason());
                let earlier =
                    Box::pin(self.redeem(&claim, None, Some(&outcome), Some(session), now, answer)).await?;
                Err(refusal(
                    earlier.and_then(|earlier| earlier.refused).unwrap_or(outcome),
                ))
            }
        }
    }

    /// Redeems the session for a Verify that binds nothing: `None` for the first redemption,
    /// the earlier one for a retry; SESSION_USED or SESSION_EXPIRED when it was lost. The first
    /// redemption commits the call's record, with the outcome `answer` says it answers.
    async fn redeem(
        &self,
        claim: &Claim,
        holder_before: Option<&Holder>,
        refused: Option<&BindOutcome>,
        session: Option<&Session>,
        now: DateTime<Utc>,
        (subject, answer): (&Subject, &str),
    ) -> Result<Option<crate::domain::Redemption>, ServiceError> {
        let store = self.store.clone();
        let (claim, holder_before, refused) = (claim.clone(), holder_before.cloned(), refused.cloned());
        let claimed = self
            .riding(subject, None, answer, move |access| async move {
                store
                    .redeem_session(&claim, holder_before.as_ref(), refused.as_ref(), now, access)
                    .await
            })
            .await?;
        match claimed {
            Claimed::First => Ok(None),
            Claimed::Again(earlier) => Ok(Some(earlier)),
            Claimed::UsedByAnother => Err(ServiceError::SessionUsed),
            Claimed::Expired => Err(session_expired(session)),
        }
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
        .filter(|_| found.facts.provider == Provider::PortoneV1)
        .map(|after| saturating_after(now, after));
    Claim {
        session: session.clone(),
        provider: found.facts.provider,
        certification_id: found.facts.id.clone(),
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
