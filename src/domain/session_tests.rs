//! The session rules: ids, normalised comparison, refusals by field, purposes' accounts.

use super::*;
use crate::domain::{Carrier, Ci, Gender, PersonName, Phone};

fn identity(name: &str, phone: Option<&str>) -> Identity {
    Identity {
        name: PersonName::new(name).unwrap(),
        gender: Gender::Male,
        birth_date: NaiveDate::from_ymd_opt(1990, 3, 15).unwrap(),
        phone: phone.and_then(Phone::new),
        carrier: Some(Carrier("SKT".into())),
        foreigner: false,
        ci: Ci::parse("Q0lDSUNJ").unwrap(),
        di: None,
    }
}

#[test]
fn session_ids_are_128_random_bits_in_a_recognisable_shape() {
    let first = SessionId::generate();
    let second = SessionId::generate();
    assert_ne!(first, second);
    assert_eq!(first.as_str().len(), 35);
    assert_eq!(SessionId::recognise(first.as_str()), Some(first.clone()));
    for raw in [
        "vs_",
        "signup-0001",
        "vs_0123",
        &format!("{}A", &first.as_str()[..34]),
    ] {
        assert!(SessionId::recognise(raw).is_none(), "{raw}");
    }
    assert!(!format!("{first:?}").contains(&first.as_str()[7..]));
}

#[test]
fn names_match_after_nfc_and_whitespace_normalisation() {
    // "홍길동" decomposed into jamo (NFD) with stray whitespace.
    let decomposed: String = "홍길동".nfd().collect();
    let expected = ExpectedPerson::parse(Some(&format!("  {decomposed} ")), None, None).unwrap();
    assert!(expected.mismatches(&identity("홍길동", None)).is_empty());
    let spaced = ExpectedPerson::parse(Some("SMITH \t JOHN"), None, None).unwrap();
    assert!(spaced.mismatches(&identity("SMITH JOHN", None)).is_empty());
    assert_eq!(spaced.mismatches(&identity("SMITH JANE", None)), ["name"]);
}

#[test]
fn phones_match_by_digits_and_an_absent_phone_never_matches() {
    let expected = ExpectedPerson::parse(None, Some("1990-03-15"), Some("010-1234-5678")).unwrap();
    assert!(
        expected
            .mismatches(&identity("홍길동", Some("01012345678")))
            .is_empty()
    );
    assert_eq!(
        expected.mismatches(&identity("홍길동", Some("01099998888"))),
        ["phone"]
    );
    assert_eq!(expected.mismatches(&identity("홍길동", None)), ["phone"]);
    let all = ExpectedPerson::parse(Some("김철수"), Some("1991-03-15"), Some("01000000000")).unwrap();
    assert_eq!(
        all.mismatches(&identity("홍길동", Some("01012345678"))),
        ["name", "birth_date", "phone"]
    );
}

#[test]
fn malformed_expectations_are_refused_by_field() {
    let reason = |result: Result<ExpectedPerson, FieldViolation>| result.unwrap_err().reason;
    assert_eq!(
        reason(ExpectedPerson::parse(Some("  "), None, None)),
        "INVALID_NAME"
    );
    assert_eq!(
        reason(ExpectedPerson::parse(Some("a\u{7}b"), None, None)),
        "INVALID_NAME"
    );
    assert_eq!(
        reason(ExpectedPerson::parse(None, Some("1990-3-15"), None)),
        "INVALID_BIRTH_DATE"
    );
    assert_eq!(
        reason(ExpectedPerson::parse(None, Some("1990-02-30"), None)),
        "INVALID_BIRTH_DATE"
    );
    assert_eq!(
        reason(ExpectedPerson::parse(None, None, Some("010-12"))),
        "INVALID_PHONE"
    );
    assert_eq!(
        reason(ExpectedPerson::parse(None, None, Some("010x12345678"))),
        "INVALID_PHONE"
    );
    assert!(
        format!("{:?}", ExpectedPerson::parse(Some("홍길동"), None, None).unwrap()).contains("name: true")
    );
}

#[test]
fn each_purpose_takes_only_the_accounts_it_can_use() {
    let account = || Some(AccountId::parse("acct-1").unwrap());
    let spec = |purpose, account| SessionSpec::new(purpose, account, None, ExpectedPerson::default());
    assert!(spec(VerificationPurpose::Signup, account()).is_ok());
    assert!(spec(VerificationPurpose::Signup, None).is_ok());
    assert!(spec(VerificationPurpose::Reverify, account()).is_ok());
    assert_eq!(
        spec(VerificationPurpose::Reverify, None).unwrap_err().reason,
        "MISSING_ACCOUNT_ID"
    );
    assert_eq!(
        spec(VerificationPurpose::Recovery, account()).unwrap_err().reason,
        "INVALID_ACCOUNT_ID"
    );
    assert_eq!(
        spec(VerificationPurpose::AgeCheck, account()).unwrap_err().reason,
        "INVALID_ACCOUNT_ID"
    );
}
