//! The sandbox's test identities: certification records shaped like PortOne V1's
//! `GET /certifications/{imp_uid}` answers.
//!
//! Dates are computed from the `now` handed to [`fixtures`] (the sandbox passes its own, possibly
//! skewed, clock), in Asia/Seoul (UTC+9, no DST), so that "15 years old" or "turns 19 today" stays
//! true on any day. Unless stated, a certified fixture was certified two minutes before `now`, has
//! `merchant_uid` `signup-<last 4 digits>`, origin `https://example.com/signup`, a `pg_tid`, and a
//! CI/DI derived from its own person key ([`ci_for`], [`di_for`]). Each fixture is one of the
//! [`Person`]s certifying, so `Sandbox/Certify` hands out the very same people.
//!
//! | imp_uid | constant | name | what it is for |
//! |---|---|---|---|
//! | `imp_100000000001` | [`ADULT`] | 홍길동 | the happy path: certified adult (born 1990-03-15), danal, male, phone `01012345678`, SKT |
//! | `imp_100000000002` | [`ADULT_SECOND_CERTIFICATION`] | 홍길동 | the same person as `ADULT` (same CI and DI) certified again a minute ago: one person, two certifications |
//! | `imp_100000000003` | [`MINOR`] | 김민준 | a 15-year-old (KT): the age policy must refuse |
//! | `imp_100000000004` | [`NOT_CERTIFIED`] | (null) | a record whose person never finished: `certified: false`, personal fields null, no phone/carrier keys |
//! | `imp_100000000005` | [`STALE`] | 이서연 | certified 2 hours ago: the recency check must refuse |
//! | `imp_100000000006` | [`FOREIGNER`] | SMITH JOHN | `foreigner` and `foreigner_v2` true, carrier `LGT_MVNO` |
//! | `imp_100000000007` | [`TURNS_19_TODAY`] | 박지우 | 19th birthday today in KST: the age boundary, inside |
//! | `imp_100000000008` | [`TURNS_19_TOMORROW`] | 최예준 | 19th birthday tomorrow in KST (18 today): the age boundary, outside |
//! | `imp_100000000009` | [`LEAP_DAY`] | 정하윤 | born 2004-02-29: leap-day age arithmetic |
//! | `imp_100000000010` | [`NO_PHONE`] | 강서준 | `inicis_unified`: no `phone`/`carrier` keys at all, `gender`, `unique_in_site` and `foreigner_v2` null |

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::people::{Certification, Person};

pub const ADULT: &str = "imp_100000000001";
pub const ADULT_SECOND_CERTIFICATION: &str = "imp_100000000002";
pub const MINOR: &str = "imp_100000000003";
pub const NOT_CERTIFIED: &str = "imp_100000000004";
pub const STALE: &str = "imp_100000000005";
pub const FOREIGNER: &str = "imp_100000000006";
pub const TURNS_19_TODAY: &str = "imp_100000000007";
pub const TURNS_19_TOMORROW: &str = "imp_100000000008";
pub const LEAP_DAY: &str = "imp_100000000009";
pub const NO_PHONE: &str = "imp_100000000010";

/// Asia/Seoul is UTC+9 all year: PortOne's `birth` and Korean ages are reckoned there.
const KST_OFFSET_SECONDS: i64 = 9 * 3600;

pub(super) const ORIGIN: &str = "https://example.com/signup";

/// One `response` object of `GET /certifications/{imp_uid}`, field for field.
///
/// `phone` and `carrier` are left out of the JSON entirely when `None`, as PortOne does for
/// merchants not approved for them; every other `None` is sent as `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificationRecord {
    pub imp_uid: String,
    pub merchant_uid: Option<String>,
    pub pg_tid: Option<String>,
    pub pg_provider: String,
    pub name: Option<String>,
    /// `male` / `female`; null for `inicis_unified`.
    pub gender: Option<String>,
    /// `YYYY-MM-DD`: the source of truth for age.
    pub birthday: Option<String>,
    /// Deprecated by PortOne but still sent: unix seconds of 00:00 KST of the birthday.
    pub birth: Option<i64>,
    pub foreigner: bool,
    pub foreigner_v2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub carrier: Option<String>,
    pub certified: bool,
    pub certified_at: Option<i64>,
    /// The CI.
    pub unique_key: Option<String>,
    /// The DI.
    pub unique_in_site: Option<String>,
    pub origin: Option<String>,
}

impl CertificationRecord {
    /// A certified danal record for a person identified by `person_key` (CI/DI derived from it),
    /// born `birthday`, certified at `certified_at` (unix s), with phone 010xxxxxxxx and carrier SKT,
    /// merchant_uid Some(format!("merchant-{imp_uid}")).
    ///
    /// The rest is what a danal merchant without extra contracts typically sees: gender `male`,
    /// `foreigner`/`foreigner_v2` false, origin `https://example.com/signup`. Fields are public:
    /// change what a test needs.
    pub fn certified(
        imp_uid: &str,
        person_key: &str,
        name: &str,
        birthday: NaiveDate,
        certified_at: i64,
    ) -> Self {
        Self {
            imp_uid: imp_uid.to_owned(),
            merchant_uid: Some(format!("merchant-{imp_uid}")),
            pg_tid: Some(pg_tid_for(imp_uid, certified_at)),
            pg_provider: "danal".to_owned(),
            name: Some(name.to_owned()),
            gender: Some("male".to_owned()),
            birthday: Some(birthday.format("%Y-%m-%d").to_string()),
            birth: Some(birth_for(birthday)),
            foreigner: false,
            foreigner_v2: Some(false),
            phone: Some(phone_for(person_key)),
            carrier: Some("SKT".to_owned()),
            certified: true,
            certified_at: Some(certified_at),
            unique_key: Some(ci_for(person_key)),
            unique_in_site: Some(di_for(person_key)),
            origin: Some(ORIGIN.to_owned()),
        }
    }
}

/// The sandbox CI of a person: base64 of SHA-512, so 64 bytes and 88 characters like a real CI.
pub fn ci_for(person_key: &str) -> String {
    STANDARD.encode(Sha512::digest(format!("portone-sandbox/ci/{person_key}")))
}

/// The sandbox DI of a person: base64 of SHA-384, 48 bytes and 64 characters like danal's DI.
pub fn di_for(person_key: &str) -> String {
    STANDARD.encode(Sha384::digest(format!("portone-sandbox/di/{person_key}")))
}

/// A stable, plausible mobile number per person, so that fixtures never share one by accident.
pub(super) fn phone_for(person_key: &str) -> String {
    let digest = Sha256::digest(format!("portone-sandbox/phone/{person_key}"));
    let number = digest
        .iter()
        .take(4)
        .fold(0_u32, |acc, byte| (acc << 8) | u32::from(*byte));
    format!("010{:08}", number % 100_000_000)
}

/// Unix seconds of 00:00 KST on `birthday`: what PortOne sends as `birth`.
fn birth_for(birthday: NaiveDate) -> i64 {
    birthday.and_time(NaiveTime::MIN).and_utc().timestamp() - KST_OFFSET_SECONDS
}

/// Shaped like danal's: the KST time of certification followed by digits of the imp_uid.
pub(super) fn pg_tid_for(imp_uid: &str, certified_at: i64) -> String {
    let stamp = DateTime::from_timestamp(certified_at.saturating_add(KST_OFFSET_SECONDS), 0)
        .map(|kst| kst.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default();
    let digits: String = imp_uid.chars().filter(char::is_ascii_digit).collect();
    let tail = digits.get(digits.len().saturating_sub(10)..).unwrap_or_default();
    format!("{stamp}{tail:0>10}")
}

/// Evaluated at compile time, so a typo in a fixture date fails the build rather than a request.
pub(super) const fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid fixture date"),
    }
}

/// The calendar date in Seoul at `now`.
pub(super) fn today_in_seoul(now: DateTime<Utc>) -> NaiveDate {
    let naive = now.naive_utc();
    naive
        .checked_add_signed(TimeDelta::seconds(KST_OFFSET_SECONDS))
        .unwrap_or(naive)
        .date()
}

/// `years` calendar years before `date`; chrono clamps Feb 29 to Feb 28 in a common year.
/// Fails only within `years` of chrono's minimum date, long before any real clock.
pub(super) fn years_before(date: NaiveDate, years: u32) -> NaiveDate {
    date.checked_sub_months(Months::new(12 * years))
        .unwrap_or(NaiveDate::MIN)
}

/// The built-in identities as of `now`: birthdays and certified_at are computed relative to now
/// (dates in Asia/Seoul, UTC+9, no DST) so the table stays true on any day.
pub fn fixtures(now: DateTime<Utc>) -> Vec<CertificationRecord> {
    let now_s = now.timestamp();
    let minutes_ago = |minutes: i64| now_s.saturating_sub(minutes * 60);
    // A fixture with the defaults the table promises: merchant_uid `signup-<last 4 digits>`.
    let fixture = |person: Person, imp_uid: &str, certified_at: i64| {
        let suffix = imp_uid.get(imp_uid.len().saturating_sub(4)..).unwrap_or(imp_uid);
        let certification = Certification {
            imp_uid,
            merchant_uid: &format!("signup-{suffix}"),
            certified_at,
            person_key: None,
        };
        person.certify(&certification, now)
    };
    vec![
        fixture(Person::Adult, ADULT, minutes_ago(2)),
        fixture(Person::Adult, ADULT_SECOND_CERTIFICATION, minutes_ago(1)),
        fixture(Person::Minor, MINOR, minutes_ago(2)),
        fixture(Person::NotCertified, NOT_CERTIFIED, minutes_ago(2)),
        fixture(Person::Stale, STALE, minutes_ago(120)),
        fixture(Person::Foreigner, FOREIGNER, minutes_ago(2)),
        fixture(Person::Turns19Today, TURNS_19_TODAY, minutes_ago(2)),
        fixture(Person::Turns19Tomorrow, TURNS_19_TOMORROW, minutes_ago(2)),
        fixture(Person::LeapDay, LEAP_DAY, minutes_ago(2)),
        fixture(Person::Inicis, NO_PHONE, minutes_ago(2)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    fn find(records: &[CertificationRecord], imp_uid: &str) -> CertificationRecord {
        records.iter().find(|r| r.imp_uid == imp_uid).cloned().unwrap()
    }

    #[test]
    fn ci_is_88_base64_chars_ending_in_padding_and_di_is_64() {
        let ci = ci_for("hong");
        assert_eq!(ci.len(), 88);
        assert!(ci.ends_with("=="));
        assert_eq!(STANDARD.decode(&ci).unwrap().len(), 64);
        assert_eq!(di_for("hong").len(), 64);
        assert_eq!(ci, ci_for("hong"));
        assert_ne!(ci, ci_for("kim-minjun"));
    }

    #[test]
    fn birth_is_midnight_kst_and_negative_before_1970() {
        assert_eq!(birth_for(date(1970, 1, 1)), -32_400);
        assert_eq!(birth_for(date(1969, 12, 31)), -32_400 - 86_400);
        // The example in PortOne's docs: 1993-07-08 -> 742057200.
        assert_eq!(birth_for(date(1993, 7, 8)), 742_057_200);
    }

    #[test]
    fn fixtures_have_distinct_uids_and_persons_except_the_second_adult() {
        let records = fixtures(Utc::now());
        assert_eq!(records.len(), 10);
        let mut uids: Vec<_> = records.iter().map(|r| r.imp_uid.clone()).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 10);
        let mut cis: Vec<_> = records.iter().filter_map(|r| r.unique_key.clone()).collect();
        cis.sort();
        cis.dedup();
        // Nine certified records, two of which are the same person.
        assert_eq!(cis.len(), 8);
        let adult = find(&records, ADULT);
        let again = find(&records, ADULT_SECOND_CERTIFICATION);
        assert_eq!(adult.unique_key, again.unique_key);
        assert_eq!(adult.unique_in_site, again.unique_in_site);
        assert_eq!(again.merchant_uid.as_deref(), Some("signup-0002"));
    }

    #[test]
    fn adult_matches_the_documented_values() {
        let now = at("2026-11-23T12:00:00Z");
        let adult = find(&fixtures(now), ADULT);
        assert_eq!(adult.name.as_deref(), Some("홍길동"));
        assert_eq!(adult.birthday.as_deref(), Some("1990-03-15"));
        assert_eq!(adult.birth, Some(birth_for(date(1990, 3, 15))));
        assert_eq!(adult.phone.as_deref(), Some("01012345678"));
        assert_eq!(adult.carrier.as_deref(), Some("SKT"));
        assert_eq!(adult.merchant_uid.as_deref(), Some("signup-0001"));
        assert_eq!(adult.certified_at, Some(now.timestamp() - 120));
        assert_eq!(adult.unique_key, Some(ci_for("hong")));
        assert_eq!(adult.foreigner_v2, Some(false));
        assert_eq!(adult.pg_tid.as_deref(), Some("202611232058000000000001"));
    }

    #[test]
    fn relative_birthdays_follow_the_seoul_date() {
        // 15:30 UTC on Mar 1 is already Mar 2 in Seoul.
        let records = fixtures(at("2026-03-01T15:30:00Z"));
        assert_eq!(
            find(&records, TURNS_19_TODAY).birthday.as_deref(),
            Some("2007-03-02")
        );
        assert_eq!(
            find(&records, TURNS_19_TOMORROW).birthday.as_deref(),
            Some("2007-03-03")
        );
        // 15 years and 100 days before 2026-03-02.
        assert_eq!(find(&records, MINOR).birthday.as_deref(), Some("2010-11-22"));
    }

    #[test]
    fn turning_19_on_a_leap_day_clamps_to_feb_28() {
        let records = fixtures(at("2028-02-29T03:00:00Z"));
        assert_eq!(
            find(&records, TURNS_19_TODAY).birthday.as_deref(),
            Some("2009-02-28")
        );
        assert_eq!(
            find(&records, TURNS_19_TOMORROW).birthday.as_deref(),
            Some("2009-03-01")
        );
    }

    #[test]
    fn no_phone_serializes_without_phone_and_carrier_keys() {
        let record = find(&fixtures(Utc::now()), NO_PHONE);
        let json = serde_json::to_value(&record).unwrap();
        let object = json.as_object().unwrap();
        assert!(!object.contains_key("phone"));
        assert!(!object.contains_key("carrier"));
        assert!(object["gender"].is_null());
        assert!(object["unique_in_site"].is_null());
        assert!(object["foreigner_v2"].is_null());
        assert_eq!(object["pg_provider"], "inicis_unified");
        // And it reads back the same.
        assert_eq!(
            serde_json::from_value::<CertificationRecord>(json).unwrap(),
            record
        );
    }

    #[test]
    fn not_certified_has_only_the_bookkeeping_fields() {
        let record = find(&fixtures(Utc::now()), NOT_CERTIFIED);
        assert!(!record.certified);
        assert_eq!(record.pg_provider, "danal");
        assert!(record.name.is_none() && record.gender.is_none() && record.birthday.is_none());
        assert!(record.birth.is_none() && record.certified_at.is_none());
        assert!(record.unique_key.is_none() && record.unique_in_site.is_none());
        assert!(record.phone.is_none() && record.carrier.is_none());
    }

    #[test]
    fn certified_builder_follows_its_contract() {
        let record =
            CertificationRecord::certified("imp_123", "someone", "테스트", date(2000, 1, 2), 1_800_000_000);
        assert_eq!(record.merchant_uid.as_deref(), Some("merchant-imp_123"));
        assert_eq!(record.pg_provider, "danal");
        assert_eq!(record.carrier.as_deref(), Some("SKT"));
        let phone = record.phone.unwrap();
        assert!(phone.starts_with("010") && phone.len() == 11 && phone.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(record.unique_key, Some(ci_for("someone")));
        assert_eq!(record.unique_in_site, Some(di_for("someone")));
        assert!(record.certified);
    }
}
