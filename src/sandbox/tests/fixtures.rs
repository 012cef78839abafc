//! The V1 fixtures and the record derivations: CI/DI shapes, `birth`, relative birthdays, and the
//! fixtures the table in `identities` promises.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};

use crate::sandbox::{
    identities::*,
    record::{birth_for, date},
};

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn find(records: &[CertificationRecord], imp_uid: &str) -> CertificationRecord {
    records.iter().find(|r| r.imp_uid == imp_uid).cloned().unwrap()
}

#[test]
fn ci_is_88_base64_chars_of_64_bytes_and_di_64_chars_of_47_bytes() {
    let ci = ci_for("hong");
    assert_eq!(ci.len(), 88);
    assert!(ci.ends_with("=="));
    assert_eq!(STANDARD.decode(&ci).unwrap().len(), 64);
    let di = di_for("hong");
    assert_eq!(di.len(), 64);
    assert!(di.ends_with('=') && !di.ends_with("=="), "{di}");
    assert_eq!(STANDARD.decode(&di).unwrap().len(), 47);
    // A DI is per site: the other merchant's differs, in the same shape.
    let elsewhere = di_in_site("hong", "other-merchant");
    assert_ne!(elsewhere, di);
    assert_eq!(STANDARD.decode(&elsewhere).unwrap().len(), 47);
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
    let now = Utc::now();
    let records = fixtures(now);
    assert_eq!(records.len(), 13);
    let mut uids: Vec<_> = records
        .iter()
        .chain(&other_merchant_fixtures(now))
        .chain(&tier_fixtures(now))
        .map(|r| r.imp_uid.clone())
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 16);
    assert_eq!(uids.last().map(String::as_str), Some(TIER_ADULT));
    let mut cis: Vec<_> = records.iter().filter_map(|r| r.unique_key.clone()).collect();
    cis.sort();
    cis.dedup();
    // Twelve certified records, one without CI, two of the rest the same person.
    assert_eq!(cis.len(), 10);
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
    assert_eq!(object["origin"], "about:blank");
    let pg_tid = object["pg_tid"].as_str().unwrap();
    let digits = pg_tid.strip_prefix("INISA_").unwrap();
    assert!(
        digits.len() == 24 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{pg_tid}"
    );
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

#[test]
fn the_new_fixtures_have_the_shapes_the_table_promises() {
    let now = Utc::now();
    let records = fixtures(now);
    let no_ci = find(&records, NO_CI);
    assert!(no_ci.certified && no_ci.unique_key.is_none() && no_ci.unique_in_site.is_none());
    assert_eq!(no_ci.pg_provider, "inicis_unified");
    assert_eq!(no_ci.name.as_deref(), Some("한지민"));

    let elder = find(&records, BORN_BEFORE_1970);
    assert_eq!(elder.birthday.as_deref(), Some("1948-06-25"));
    assert!(elder.birth.unwrap() < 0);
    assert_eq!(elder.birth, Some(birth_for(date(1948, 6, 25))));

    let kcp = find(&records, KCP);
    assert_eq!(kcp.pg_provider, "kcp_v2");
    assert_eq!(kcp.carrier.as_deref(), Some("LGT"));
    assert_eq!(kcp.unique_key, Some(ci_for("seo-jiho")));

    // The other merchant has no foreigner contract: false and null, even for a foreigner.
    let others = other_merchant_fixtures(now);
    let adult = find(&others, OTHER_MERCHANT_ADULT);
    assert_eq!(adult.unique_key, Some(ci_for("hong")));
    assert_eq!(adult.unique_in_site, Some(di_in_site("hong", "other-merchant")));
    assert_eq!((adult.foreigner, adult.foreigner_v2), (false, None));
    let foreigner = find(&others, OTHER_MERCHANT_FOREIGNER);
    assert_eq!((foreigner.foreigner, foreigner.foreigner_v2), (false, None));
    let json = serde_json::to_value(&foreigner).unwrap();
    assert!(json["foreigner_v2"].is_null());
    // The main merchant's foreigner keeps today's true/true.
    let main_foreigner = find(&records, FOREIGNER);
    assert_eq!(
        (main_foreigner.foreigner, main_foreigner.foreigner_v2),
        (true, Some(true))
    );

    let tier = find(&tier_fixtures(now), TIER_ADULT);
    assert_eq!(tier.unique_key, Some(ci_for("hong")));
}
