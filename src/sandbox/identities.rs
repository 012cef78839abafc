//! The sandbox's test identities: certification records shaped like PortOne V1's
//! `GET /certifications/{imp_uid}` answers.
//!
//! Dates are computed from the `now` handed to [`fixtures`] (the sandbox passes its own, possibly
//! skewed, clock), in Asia/Seoul (UTC+9, no DST), so that "15 years old" or "turns 19 today" stays
//! true on any day. Unless stated, a certified fixture was certified two minutes before `now`, has
//! `merchant_uid` `signup-<last 4 digits>`, origin `https://example.com/signup`, a `pg_tid`, and a
//! CI/DI derived from its own person key ([`ci_for`], [`di_for`]: a CI is 88 base64 characters,
//! 64 bytes; a DI 64 characters ending in `=`, 47 bytes). Each fixture is one of the [`Person`]s
//! certifying, so `Sandbox/Certify` hands out the very same people.
//!
//! Fixtures belong to the main merchant ([`SANDBOX_IMP_KEY`](super::SANDBOX_IMP_KEY)), which has
//! the foreigner contract, unless the table says otherwise: the other merchant's
//! ([`SANDBOX_OTHER_IMP_KEY`](super::SANDBOX_OTHER_IMP_KEY)) are visible only to its token and
//! have `foreigner` false, `foreigner_v2` null and that site's DIs; the tier fixture only with the
//! header `Tier: <SandboxConfig::tier>` (`T01` by default) on a main-merchant token.
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
//! | `imp_100000000010` | [`NO_PHONE`] | 강서준 | `inicis_unified`: no `phone`/`carrier` keys at all, `gender`, `unique_in_site` and `foreigner_v2` null, `pg_tid` `INISA_…`, origin `about:blank` |
//! | `imp_100000000011` | [`NO_CI`] | 한지민 | KG Inicis with Kakao, no CI contract: like `NO_PHONE` and `unique_key` null too |
//! | `imp_100000000012` | [`BORN_BEFORE_1970`] | 오영자 | born 1948-06-25 (female, KT): `birth` negative |
//! | `imp_100000000013` | [`KCP`] | 서지호 | `pg_provider` `kcp_v2`, born 1991-12-24, male, LGT |
//! | `imp_100000000014` | [`OTHER_MERCHANT_ADULT`] | 홍길동 | **the other merchant's**: `ADULT`'s person (same CI, that site's DI), `foreigner_v2` null |
//! | `imp_100000000015` | [`OTHER_MERCHANT_FOREIGNER`] | SMITH JOHN | **the other merchant's**: a foreigner whom a merchant without the contract sees as `foreigner` false, `foreigner_v2` null |
//! | `imp_100000000016` | [`TIER_ADULT`] | 홍길동 | **the main merchant's sub-merchant's** (`Tier` header required): `ADULT`'s person |

use chrono::{DateTime, Utc};

pub use super::record::{CertificationRecord, ci_for, di_for, di_in_site};
use super::{
    merchants::Merchant,
    people::{Certification, Person},
};

pub const ADULT: &str = "imp_100000000001";
pub const ADULT_SECOND_CERTIFICATION: &str = "imp_100000000002";
pub const MINOR: &str = "imp_100000000003";
pub const NOT_CERTIFIED: &str = "imp_100000000004";
pub const STALE: &str = "imp_100000000005";
pub const FOREIGNER: &str = "imp_100000000006";
pub const TURNS_19_TODAY: &str = "imp_100000000007";
pub const TURNS_19_TOMORROW: &str = "imp_100000000008";
pub(crate) const LEAP_DAY: &str = "imp_100000000009";
pub const NO_PHONE: &str = "imp_100000000010";
pub(crate) const NO_CI: &str = "imp_100000000011";
pub(crate) const BORN_BEFORE_1970: &str = "imp_100000000012";
pub(crate) const KCP: &str = "imp_100000000013";
pub(crate) const OTHER_MERCHANT_ADULT: &str = "imp_100000000014";
pub(crate) const OTHER_MERCHANT_FOREIGNER: &str = "imp_100000000015";
pub(crate) const TIER_ADULT: &str = "imp_100000000016";

/// A fixture with the defaults the table promises: merchant_uid `signup-<last 4 digits>`.
fn fixture(
    person: Person,
    imp_uid: &str,
    certified_at: i64,
    merchant: Merchant,
    now: DateTime<Utc>,
) -> CertificationRecord {
    let suffix = imp_uid.get(imp_uid.len().saturating_sub(4)..).unwrap_or(imp_uid);
    let certification = Certification {
        imp_uid,
        merchant_uid: &format!("signup-{suffix}"),
        certified_at,
        person_key: None,
        merchant,
    };
    person.certify(&certification, now)
}

fn minutes_before(now: DateTime<Utc>, minutes: i64) -> i64 {
    now.timestamp().saturating_sub(minutes * 60)
}

/// The main merchant's own fixtures (no tier) as of `now`: birthdays and certified_at are
/// computed relative to now (dates in Asia/Seoul, UTC+9, no DST) so the table stays true on any
/// day.
pub(crate) fn fixtures(now: DateTime<Utc>) -> Vec<CertificationRecord> {
    let ago = |minutes| minutes_before(now, minutes);
    let main = |person, imp_uid, certified_at| fixture(person, imp_uid, certified_at, Merchant::Main, now);
    vec![
        main(Person::Adult, ADULT, ago(2)),
        main(Person::Adult, ADULT_SECOND_CERTIFICATION, ago(1)),
        main(Person::Minor, MINOR, ago(2)),
        main(Person::NotCertified, NOT_CERTIFIED, ago(2)),
        main(Person::Stale, STALE, ago(120)),
        main(Person::Foreigner, FOREIGNER, ago(2)),
        main(Person::Turns19Today, TURNS_19_TODAY, ago(2)),
        main(Person::Turns19Tomorrow, TURNS_19_TOMORROW, ago(2)),
        main(Person::LeapDay, LEAP_DAY, ago(2)),
        main(Person::Inicis, NO_PHONE, ago(2)),
        main(Person::NoCi, NO_CI, ago(2)),
        main(Person::BornBefore1970, BORN_BEFORE_1970, ago(2)),
        main(Person::Kcp, KCP, ago(2)),
    ]
}

/// The other merchant's fixtures as of `now`.
pub(crate) fn other_merchant_fixtures(now: DateTime<Utc>) -> Vec<CertificationRecord> {
    let other = |person, imp_uid| fixture(person, imp_uid, minutes_before(now, 2), Merchant::Other, now);
    vec![
        other(Person::Adult, OTHER_MERCHANT_ADULT),
        other(Person::Foreigner, OTHER_MERCHANT_FOREIGNER),
    ]
}

/// The main merchant's sub-merchant's fixtures as of `now` (whichever tier code is configured).
pub(crate) fn tier_fixtures(now: DateTime<Utc>) -> Vec<CertificationRecord> {
    vec![fixture(
        Person::Adult,
        TIER_ADULT,
        minutes_before(now, 2),
        Merchant::Main,
        now,
    )]
}
