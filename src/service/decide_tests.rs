//! Verify's decision, case by case: what is refused before the certification is proven the
//! session's, what redeems the session, what binds, records or only reads.

use std::time::Duration;

use chrono::{NaiveDate, TimeDelta};

use super::*;
use crate::domain::{
    Carrier, CertificationFacts, CertificationRef, Ci, ExpectedPerson, Gender, ImpUid, MerchantUid,
    PersonName, Phone, Provider,
};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T03:00:00Z")
        .unwrap()
        .to_utc()
}

fn policy() -> Policy {
    Policy {
        min_age: 14,
        reject_underage: false,
        max_certification_age: Duration::from_secs(30 * 60),
        rejoin_cooldown: Duration::ZERO,
        clock_skew: Duration::from_secs(60),
        require_session: true,
        session_ttl: Duration::from_secs(15 * 60),
        allow_test_channel: false,
        delete_after: None,
    }
}

/// Born 1990-03-15 unless said otherwise.
fn found(merchant_uid: &str, born: (i32, u32, u32)) -> ProviderCertification {
    ProviderCertification {
        facts: CertificationFacts {
            provider: Provider::PortoneV1,
            id: "imp_123456789012".into(),
            merchant_uid: Some(merchant_uid.into()),
            pg_provider: "danal".into(),
        },
        certified: true,
        certified_at: Some(now() - TimeDelta::minutes(2)),
        identity: Some(Identity {
            name: PersonName::new("홍길동").unwrap(),
            gender: Gender::Male,
            birth_date: NaiveDate::from_ymd_opt(born.0, born.1, born.2).unwrap(),
            phone: Phone::new("01012345678"),
            carrier: Some(Carrier("SKT".into())),
            foreigner: false,
            ci: Ci::parse("Q0lDSUNJ").unwrap(),
            di: None,
        }),
        ci_unavailable: false,
        test_channel: false,
    }
}

const ADULT: (i32, u32, u32) = (1990, 3, 15);
const CHILD: (i32, u32, u32) = (2016, 1, 1);

fn session(purpose: VerificationPurpose, account: Option<&str>) -> Session {
    Session {
        id: SessionId::generate(),
        purpose,
        account: account.map(|account| AccountId::parse(account).unwrap()),
        min_age: None,
        expected: ExpectedPerson::default(),
        created_at: now() - TimeDelta::minutes(5),
        expires_at: now() + TimeDelta::minutes(10),
    }
}

fn command(merchant_uid: Option<&str>, account: Option<&str>) -> VerifyCommand {
    VerifyCommand {
        certification: CertificationRef::portone_v1(ImpUid::parse("imp_123456789012").unwrap()),
        account: account.map(|account| AccountId::parse(account).unwrap()),
        merchant_uid: merchant_uid.map(|raw| MerchantUid::parse(raw).unwrap()),
        min_age: None,
    }
}

/// The decision on `session`'s own certification of a person born `born`.
fn decide_for<'s>(
    session: &'s Session,
    born: (i32, u32, u32),
    policy: &Policy,
) -> Result<Plan<'s>, ServiceError> {
    decide(
        &found(session.id.as_str(), born),
        Some(session),
        &command(None, None),
        policy,
        now(),
    )
}

fn reason(result: Result<Plan<'_>, ServiceError>) -> &'static str {
    result.expect_err("a refusal").reason()
}

/// The refusal `session` decides for an adult certified for `merchant_uid`, changed by `mutate`.
fn refusal_of(session: &Session, merchant_uid: &str, mutate: fn(&mut ProviderCertification)) -> &'static str {
    let mut certification = found(merchant_uid, ADULT);
    mutate(&mut certification);
    reason(decide(
        &certification,
        Some(session),
        &command(None, None),
        &policy(),
        now(),
    ))
}

#[test]
fn a_signup_session_of_an_adult_binds_its_account() {
    let session = session(VerificationPurpose::Signup, Some("acct-1"));
    let plan = decide_for(&session, ADULT, &policy()).unwrap();
    assert!(matches!(plan.write, Write::Bind { account } if account.as_str() == "acct-1"));
    assert!(plan.facts.age.satisfied());
    assert_eq!(plan.facts.certified_at, now() - TimeDelta::minutes(2));
}

#[test]
fn refusals_before_the_certification_is_the_sessions_write_nothing() {
    let session = session(VerificationPurpose::Signup, Some("acct-1"));
    let for_session = |mutate| refusal_of(&session, session.id.as_str(), mutate);
    assert_eq!((for_session(|found| found.certified = false)), "NOT_CERTIFIED");
    assert_eq!((for_session(|found| found.test_channel = true)), "TEST_CHANNEL");
    assert_eq!(
        (for_session(|found| found.ci_unavailable = true)),
        "CI_UNAVAILABLE"
    );
    assert_eq!(
        (for_session(|found| found.certified_at = Some(now() - TimeDelta::hours(1)))),
        "CERTIFICATION_EXPIRED"
    );
    assert_eq!(
        (for_session(|found| found.certified_at = Some(now() + TimeDelta::minutes(5)))),
        "CERTIFIED_IN_FUTURE"
    );
    assert_eq!(
        (for_session(|found| found.certified_at = Some(now() - TimeDelta::minutes(7)))),
        "CERTIFIED_BEFORE_SESSION"
    );
    assert_eq!(
        (for_session(|found| found.facts.merchant_uid = Some("another".into()))),
        "MERCHANT_MISMATCH"
    );
    assert_eq!(
        (for_session(|found| {
            let identity = found.identity.as_mut().unwrap();
            identity.birth_date = NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
        })),
        "UPSTREAM_MALFORMED"
    );
}

#[test]
fn a_refusal_after_it_is_the_sessions_redeems_the_session_and_binds_nothing() {
    let mut expecting = session(VerificationPurpose::Signup, Some("acct-1"));
    expecting.expected.name = Some("김철수".into());
    let plan = decide_for(&expecting, ADULT, &policy()).unwrap();
    let Write::Redeem { verdict, .. } = plan.write else {
        panic!("{:?}", plan.write)
    };
    assert_eq!(verdict.unwrap_err().reason(), "IDENTITY_MISMATCH");

    let rejecting = Policy {
        reject_underage: true,
        ..policy()
    };
    let child = session(VerificationPurpose::Signup, Some("acct-1"));
    let plan = decide_for(&child, CHILD, &rejecting).unwrap();
    assert!(matches!(
        plan.write,
        Write::Redeem {
            verdict: Err(ServiceError::Underage(_)),
            ..
        }
    ));
}

#[test]
fn an_underage_signup_is_reported_and_never_bound() {
    let session = session(VerificationPurpose::Signup, Some("acct-1"));
    let plan = decide_for(&session, CHILD, &policy()).unwrap();
    assert!(matches!(plan.write, Write::Redeem { verdict: Ok(()), .. }));
    assert!(!plan.facts.age.satisfied());
}

#[test]
fn purposes_that_bind_nothing_redeem_and_reverify_needs_the_accounts_person() {
    for purpose in [VerificationPurpose::AgeCheck, VerificationPurpose::Recovery] {
        let session = session(purpose, None);
        let plan = decide_for(&session, ADULT, &policy()).unwrap();
        assert!(
            matches!(plan.write, Write::Redeem { verdict: Ok(()), .. }),
            "{purpose:?}"
        );
        assert!(after_holder(Ok(()), &session, None).is_ok());
    }
    let reverify = session(VerificationPurpose::Reverify, Some("acct-1"));
    let holder = |account: &str| Holder {
        account_id: AccountId::parse(account).unwrap(),
        bound_at: now(),
    };
    assert!(after_holder(Ok(()), &reverify, Some(&holder("acct-1"))).is_ok());
    let other = after_holder(Ok(()), &reverify, Some(&holder("acct-2")));
    assert_eq!(other.unwrap_err().reason(), "IDENTITY_MISMATCH");
    assert_eq!(
        after_holder(Ok(()), &reverify, None).unwrap_err().reason(),
        "IDENTITY_MISMATCH"
    );
}

#[test]
fn without_a_session_a_passing_person_is_recorded_or_bound_and_a_session_certification_refused() {
    let plain = |account, born| {
        decide(
            &found("order-7", born),
            None,
            &command(Some("order-7"), account),
            &policy(),
            now(),
        )
    };
    assert!(matches!(plain(None, ADULT).unwrap().write, Write::Record));
    assert!(matches!(plain(None, CHILD).unwrap().write, Write::Read));
    assert!(matches!(
        plain(Some("acct-9"), ADULT).unwrap().write,
        Write::Bind { .. }
    ));
    assert!(matches!(plain(Some("acct-9"), CHILD).unwrap().write, Write::Read));

    let mismatch = decide(
        &found("order-7", ADULT),
        None,
        &command(Some("order-8"), None),
        &policy(),
        now(),
    );
    assert_eq!(reason(mismatch), "MERCHANT_MISMATCH");
    let session_made = found(SessionId::generate().as_str(), ADULT);
    assert_eq!(
        reason(decide(
            &session_made,
            None,
            &command(None, None),
            &policy(),
            now()
        )),
        "SESSION_REQUIRED"
    );
    let rejecting = Policy {
        reject_underage: true,
        ..policy()
    };
    let child = decide(
        &found("order-7", CHILD),
        None,
        &command(None, None),
        &rejecting,
        now(),
    );
    assert_eq!(reason(child), "UNDERAGE");
}

/// Issue 29, finding 4: a certification made for another merchant_uid says nothing else about
/// itself through this session: not whether it was finished, nor when it was made.
#[test]
fn a_certification_of_another_session_is_refused_before_any_fact_of_it() {
    let session = session(VerificationPurpose::AgeCheck, None);
    let other = |mutate| refusal_of(&session, "vs_0123456789abcdef0123456789abcdef", mutate);
    assert_eq!(
        other(|found| found.certified_at = Some(now() - TimeDelta::days(80))),
        "MERCHANT_MISMATCH"
    );
    assert_eq!(other(|found| found.certified = false), "MERCHANT_MISMATCH");
    assert_eq!(other(|found| found.test_channel = true), "MERCHANT_MISMATCH");
    assert_eq!(
        other(|found| found.certified_at = Some(now() + TimeDelta::hours(1))),
        "MERCHANT_MISMATCH"
    );
}
