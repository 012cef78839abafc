//! PortOne V1's certification record and the derivations every sandbox person shares: CI, DI,
//! phone, `birth`, `pg_tid`, and the Asia/Seoul date arithmetic the fixtures rely on.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// Asia/Seoul is UTC+9 all year: PortOne's `birth` and Korean ages are reckoned there.
const KST_OFFSET_SECONDS: i64 = 9 * 3600;

pub(super) const ORIGIN: &str = "https://example.com/signup";

/// One `response` object of `GET /certifications/{imp_uid}`, field for field.
///
/// `phone` and `carrier` are left out of the JSON entirely when `None`, as PortOne does for
/// merchants not approved for them; every other `None` is sent as `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificationRecord {
    pub(crate) imp_uid: String,
    pub merchant_uid: Option<String>,
    pub(crate) pg_tid: Option<String>,
    pub(crate) pg_provider: String,
    pub(crate) name: Option<String>,
    /// `male` / `female`; null for `inicis_unified`.
    pub(crate) gender: Option<String>,
    /// `YYYY-MM-DD`: the source of truth for age.
    pub(crate) birthday: Option<String>,
    /// Deprecated by PortOne but still sent: unix seconds of 00:00 KST of the birthday.
    pub(crate) birth: Option<i64>,
    pub(crate) foreigner: bool,
    pub(crate) foreigner_v2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) carrier: Option<String>,
    pub(crate) certified: bool,
    pub(crate) certified_at: Option<i64>,
    /// The CI.
    pub(crate) unique_key: Option<String>,
    /// The DI.
    pub(crate) unique_in_site: Option<String>,
    pub(crate) origin: Option<String>,
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

/// The sandbox DI of a person at the default merchant's site: 47 bytes, so 64 base64 characters
/// ending in one `=`, the shape of a real DI (PortOne's `unique_in_site` is at most 64).
pub fn di_for(person_key: &str) -> String {
    di_digest(&format!("portone-sandbox/di/{person_key}"))
}

/// The DI of a person at another merchant's site: a DI is per site, so the same person (same CI)
/// has a different DI at each merchant.
pub fn di_in_site(person_key: &str, site: &str) -> String {
    di_digest(&format!("portone-sandbox/di/{site}/{person_key}"))
}

/// Bytes a real DI carries: 64 base64 characters with one `=` of padding.
const DI_BYTES: usize = 47;

fn di_digest(input: &str) -> String {
    let digest = Sha384::digest(input);
    STANDARD.encode(digest.get(..DI_BYTES).unwrap_or_default())
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
pub(super) fn birth_for(birthday: NaiveDate) -> i64 {
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

/// Shaped like KG Inicis's: `INISA_`, the KST time of certification, digits of the imp_uid.
pub(super) fn inicis_tid_for(imp_uid: &str, certified_at: i64) -> String {
    format!("INISA_{}", pg_tid_for(imp_uid, certified_at))
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
