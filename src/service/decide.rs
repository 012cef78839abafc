//! Verify's decision, without I/O: from the certification its provider reported, the session
//! (if any), the request, the policy and the time, what the answer says and what is written.
//! `verify.rs` looks the certification up, asks this, and applies the plan.

use chrono::{DateTime, Utc};

use super::{Policy, ServiceError, VerifyCommand};
use crate::domain::{
    AccountId, AgeCheck, CertificationFacts, Holder, Identity, MinAge, ProviderCertification, Session,
    SessionId, VerificationPurpose, full_age, today_in_seoul,
};

/// What a Verify found, whatever it writes.
#[derive(Clone, Debug)]
pub(super) struct Facts {
    pub(super) identity: Identity,
    pub(super) certification: CertificationFacts,
    pub(super) certified_at: DateTime<Utc>,
    pub(super) age: AgeCheck,
}

/// What a Verify writes.
#[derive(Debug)]
pub(super) enum Write<'s> {
    /// Record the certification and bind its person to `account`, redeeming the session where
    /// there is one: by one statement, which may refuse the bind (and then spends the session).
    Bind { account: AccountId },
    /// No session, and the person passed: record them; the record says who holds them.
    Record,
    /// No session, under the minimum age: record nothing, read who holds the person.
    Read,
    /// A session that binds nothing, or whose certification was refused after it was proven the
    /// session's: read who holds the person, redeem the session, then answer `verdict`.
    Redeem {
        session: &'s Session,
        verdict: Result<(), ServiceError>,
    },
}

#[derive(Debug)]
pub(super) struct Plan<'s> {
    pub(super) facts: Facts,
    pub(super) write: Write<'s>,
}

/// Refusals before the certification is proven the session's write nothing and leave the
/// session as it was; after, every verdict redeems it.
pub(super) fn decide<'s>(
    found: &ProviderCertification,
    session: Option<&'s Session>,
    command: &VerifyCommand,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Plan<'s>, ServiceError> {
    let (identity, certified_at) = proven(found, session, command, policy, now)?;
    let min_age = match session {
        Some(session) => session.min_age,
        None => command.min_age,
    };
    let age = AgeCheck {
        age: full_age(identity.birth_date, today_in_seoul(now)).ok_or(ServiceError::BornInTheFuture)?,
        min_age: min_age.map_or(policy.min_age, MinAge::get),
    };
    let verdict = verdict(session, &identity, age, policy);
    let account = match session {
        Some(session) if session.binds() => session.account.clone(),
        Some(_) => None,
        None => command.account.clone(),
    };
    let write = match (verdict, account, session) {
        (Ok(()), Some(account), _) if age.satisfied() => Write::Bind { account },
        (verdict, _, Some(session)) => Write::Redeem { session, verdict },
        (verdict, _, None) => {
            verdict?;
            if age.satisfied() {
                Write::Record
            } else {
                Write::Read
            }
        }
    };
    Ok(Plan {
        facts: Facts {
            identity,
            certification: found.facts.clone(),
            certified_at,
            age,
        },
        write,
    })
}

/// What every answer about a certification first proves of it, in this order: made for the
/// session (or, without one, for no session of ours), finished, in time, and after the session
/// began. Its identity and time. Nothing about a certification (finished or not, when, by whom)
/// is answered before it is proven the session's: a session is no oracle on other callers'
/// certifications.
pub(super) fn proven(
    found: &ProviderCertification,
    session: Option<&Session>,
    command: &VerifyCommand,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(Identity, DateTime<Utc>), ServiceError> {
    check_belongs(found, command, session)?;
    let (identity, certified_at) = certified_parts(found, policy)?;
    check_time(policy, certified_at, now)?;
    if let Some(session) = session {
        check_after_begin(policy, certified_at, session)?;
    }
    Ok((identity, certified_at))
}

/// A session's verdict once the holder is known: PURPOSE_REVERIFY confirms only the person its
/// account holds.
pub(super) fn after_holder(
    verdict: Result<(), ServiceError>,
    session: &Session,
    holder: Option<&Holder>,
) -> Result<(), ServiceError> {
    verdict?;
    holder_confirmed(session, holder)
}

/// The reason (or OK) [`after_holder`] answers, for the record of the call, the verdict kept.
pub(super) fn after_holder_reason(
    verdict: &Result<(), ServiceError>,
    session: &Session,
    holder: Option<&Holder>,
) -> &'static str {
    match verdict {
        Err(refused) => refused.reason(),
        Ok(()) => holder_confirmed(session, holder)
            .err()
            .map_or(crate::audit::OUTCOME_OK, |refused| refused.reason()),
    }
}

fn holder_confirmed(session: &Session, holder: Option<&Holder>) -> Result<(), ServiceError> {
    let holds = holder.map(|holder| &holder.account_id) == session.account.as_ref();
    if session.purpose == VerificationPurpose::Reverify && !holds {
        return Err(ServiceError::IdentityMismatch { fields: vec!["ci"] });
    }
    Ok(())
}

/// The person expected by the session, then the minimum age where the policy refuses below it.
fn verdict(
    session: Option<&Session>,
    identity: &Identity,
    age: AgeCheck,
    policy: &Policy,
) -> Result<(), ServiceError> {
    if let Some(session) = session {
        let fields = session.expected.mismatches(identity);
        if !fields.is_empty() {
            return Err(ServiceError::IdentityMismatch { fields });
        }
    }
    if policy.reject_underage && !age.satisfied() {
        return Err(ServiceError::Underage(age));
    }
    Ok(())
}

/// The identity and time of a certified certification: NOT_CERTIFIED when the person did not
/// finish, TEST_CHANNEL for a test channel (unless allowed), CI_UNAVAILABLE without a CI.
fn certified_parts(
    found: &ProviderCertification,
    policy: &Policy,
) -> Result<(Identity, DateTime<Utc>), ServiceError> {
    if !found.certified {
        return Err(ServiceError::NotCertified);
    }
    if found.test_channel && !policy.allow_test_channel {
        return Err(ServiceError::TestChannel);
    }
    if found.ci_unavailable {
        return Err(ServiceError::CiUnavailable);
    }
    match (&found.identity, found.certified_at) {
        (Some(identity), Some(certified_at)) => Ok((identity.clone(), certified_at)),
        _ => Err(ServiceError::NotCertified),
    }
}

/// Certified no later than now plus the clock skew, and no longer ago than allowed.
fn check_time(policy: &Policy, certified_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ServiceError> {
    let clock_skew = policy.clock_skew;
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
    let max_age = policy.max_certification_age;
    if (now - certified_at).to_std().unwrap_or_default() > max_age {
        return Err(ServiceError::CertificationExpired {
            certified_at,
            max_age,
        });
    }
    Ok(())
}

/// The certification was made for this session (or, without one, for this merchant_uid).
fn check_belongs(
    found: &ProviderCertification,
    command: &VerifyCommand,
    session: Option<&Session>,
) -> Result<(), ServiceError> {
    let certified_for = found.facts.merchant_uid.as_deref();
    match session {
        Some(session) => {
            if certified_for != Some(session.id.as_str()) {
                return Err(ServiceError::MerchantMismatch);
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

/// Certified after the session began (less the clock skew): not a certification made earlier
/// under a merchant_uid guessed ahead.
fn check_after_begin(
    policy: &Policy,
    certified_at: DateTime<Utc>,
    session: &Session,
) -> Result<(), ServiceError> {
    let skew = chrono::TimeDelta::from_std(policy.clock_skew).unwrap_or_default();
    let earliest = session
        .created_at
        .checked_sub_signed(skew)
        .unwrap_or(session.created_at);
    if certified_at < earliest {
        return Err(ServiceError::CertifiedBeforeSession);
    }
    Ok(())
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
