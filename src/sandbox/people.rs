//! The sandbox's people, each defined once: the V1 fixtures (`identities::fixtures`),
//! the V2 fixtures (`v2::fixtures`) and `Sandbox/Certify` (`SandboxHandle::certify`)
//! all build their records from [`Person`], so one person has one CI on both APIs.

use chrono::{DateTime, Days, NaiveDate, Utc};

use super::{
    merchants::Merchant,
    record::{CertificationRecord, ORIGIN, date, di_in_site, inicis_tid_for, today_in_seoul, years_before},
};

/// Where KG Inicis's popup runs: it reports no page of the merchant's.
const INICIS_ORIGIN: &str = "about:blank";

/// Who certifies. Each person has a name, birthday, provider and carrier of their own, and an
/// own key from which their CI, DI and phone derive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Person {
    /// 홍길동, born 1990-03-15, danal, male, phone `01012345678`, SKT.
    Adult,
    /// 김민준, 15 years and 100 days old, KT.
    Minor,
    /// 이서연, born 1985-11-02, female, LGT (the fixture STALE, certified 2 hours ago).
    Stale,
    /// SMITH JOHN, `foreigner` and `foreigner_v2` true, LGT_MVNO.
    Foreigner,
    /// 박지우, female, 19th birthday today in KST, KT_MVNO.
    Turns19Today,
    /// 최예준, 19th birthday tomorrow in KST, SKT_MVNO.
    Turns19Tomorrow,
    /// 정하윤, born 2004-02-29, female.
    LeapDay,
    /// 윤도윤, danal, for a merchant not approved for the phone: no phone/carrier keys.
    NoPhone,
    /// 강서준, `inicis_unified`: gender, DI and `foreigner_v2` null, no phone/carrier keys,
    /// `pg_tid` `INISA_…`, origin `about:blank` (the fixture NO_PHONE).
    Inicis,
    /// 한지민, KG Inicis with Kakao without the CI contract: like [`Person::Inicis`] and
    /// `unique_key` null too.
    NoCi,
    /// Never finished: `certified` false, every personal field null.
    NotCertified,
    /// 오영자, born 1948-06-25, female, danal, KT: `birth` is negative (before 1970).
    BornBefore1970,
    /// 서지호, through `kcp_v2`, male, LGT.
    Kcp,
}

/// One certification's own facts, as opposed to the person's.
pub(crate) struct Certification<'a> {
    pub(crate) imp_uid: &'a str,
    pub(crate) merchant_uid: &'a str,
    /// Unix seconds; ignored for [`Person::NotCertified`].
    pub(crate) certified_at: i64,
    /// CI, DI and phone derive from this instead of the person's own key.
    pub(crate) person_key: Option<&'a str>,
    /// Whose certification it is: the DI is per merchant site, and only [`Merchant::Main`] has
    /// the foreigner contract.
    pub(crate) merchant: Merchant,
}

impl Person {
    /// The key the person's CI, DI and phone derive from.
    pub(crate) fn own_key(self) -> &'static str {
        match self {
            Person::Adult => "hong",
            Person::Minor => "kim-minjun",
            Person::Stale => "lee-seoyeon",
            Person::Foreigner => "smith-john",
            Person::Turns19Today => "park-jiwoo",
            Person::Turns19Tomorrow => "choi-yejun",
            Person::LeapDay => "jung-hayoon",
            Person::NoPhone => "yoon-doyun",
            Person::Inicis => "kang-seojun",
            Person::NoCi => "han-jimin",
            Person::NotCertified => "not-certified",
            Person::BornBefore1970 => "oh-youngja",
            Person::Kcp => "seo-jiho",
        }
    }

    /// The record of this person completing `certification`, with ages relative to `now`
    /// (the sandbox's clock) in Asia/Seoul.
    pub(crate) fn certify(
        self,
        certification: &Certification<'_>,
        now: DateTime<Utc>,
    ) -> CertificationRecord {
        let record = self.certify_for_main_merchant(certification, now);
        let key = certification.person_key.unwrap_or(self.own_key());
        match certification.merchant.di_site() {
            None => record,
            // Without the foreigner contract PortOne sends `false` and `null`; the DI is the
            // other site's.
            Some(site) => CertificationRecord {
                foreigner: false,
                foreigner_v2: None,
                unique_in_site: record.unique_in_site.as_ref().map(|_| di_in_site(key, site)),
                ..record
            },
        }
    }

    fn certify_for_main_merchant(
        self,
        certification: &Certification<'_>,
        now: DateTime<Utc>,
    ) -> CertificationRecord {
        let today = today_in_seoul(now);
        let key = certification.person_key.unwrap_or(self.own_key());
        let certified = |name: &str, birthday: NaiveDate| CertificationRecord {
            merchant_uid: Some(certification.merchant_uid.to_owned()),
            ..CertificationRecord::certified(
                certification.imp_uid,
                key,
                name,
                birthday,
                certification.certified_at,
            )
        };
        // What inicis_unified sends a merchant without the phone contract.
        let inicis = |record: CertificationRecord| CertificationRecord {
            pg_provider: "inicis_unified".to_owned(),
            pg_tid: Some(inicis_tid_for(certification.imp_uid, certification.certified_at)),
            origin: Some(INICIS_ORIGIN.to_owned()),
            gender: None,
            foreigner_v2: None,
            phone: None,
            carrier: None,
            unique_in_site: None,
            ..record
        };
        match self {
            Person::Adult => {
                let record = certified("홍길동", date(1990, 3, 15));
                // The documented number is the built-in adult's; another key is another phone.
                let phone = match certification.person_key {
                    None => Some("01012345678".to_owned()),
                    Some(_) => record.phone.clone(),
                };
                CertificationRecord { phone, ..record }
            }
            Person::Minor => {
                let birthday = years_before(today, 15)
                    .checked_sub_days(Days::new(100))
                    .unwrap_or(NaiveDate::MIN);
                CertificationRecord {
                    carrier: Some("KT".to_owned()),
                    ..certified("김민준", birthday)
                }
            }
            Person::Stale => CertificationRecord {
                gender: Some("female".to_owned()),
                carrier: Some("LGT".to_owned()),
                ..certified("이서연", date(1985, 11, 2))
            },
            Person::Foreigner => CertificationRecord {
                foreigner: true,
                foreigner_v2: Some(true),
                carrier: Some("LGT_MVNO".to_owned()),
                ..certified("SMITH JOHN", date(1988, 8, 8))
            },
            Person::Turns19Today => CertificationRecord {
                gender: Some("female".to_owned()),
                carrier: Some("KT_MVNO".to_owned()),
                ..certified("박지우", years_before(today, 19))
            },
            Person::Turns19Tomorrow => {
                let tomorrow = today.checked_add_days(Days::new(1)).unwrap_or(today);
                CertificationRecord {
                    carrier: Some("SKT_MVNO".to_owned()),
                    ..certified("최예준", years_before(tomorrow, 19))
                }
            }
            Person::LeapDay => CertificationRecord {
                gender: Some("female".to_owned()),
                ..certified("정하윤", date(2004, 2, 29))
            },
            Person::NoPhone => CertificationRecord {
                phone: None,
                carrier: None,
                ..certified("윤도윤", date(1992, 7, 21))
            },
            Person::Inicis => inicis(certified("강서준", date(1995, 5, 5))),
            Person::NoCi => CertificationRecord {
                unique_key: None,
                ..inicis(certified("한지민", date(1993, 9, 9)))
            },
            Person::BornBefore1970 => CertificationRecord {
                gender: Some("female".to_owned()),
                carrier: Some("KT".to_owned()),
                ..certified("오영자", date(1948, 6, 25))
            },
            Person::Kcp => CertificationRecord {
                pg_provider: "kcp_v2".to_owned(),
                carrier: Some("LGT".to_owned()),
                ..certified("서지호", date(1991, 12, 24))
            },
            Person::NotCertified => CertificationRecord {
                imp_uid: certification.imp_uid.to_owned(),
                merchant_uid: Some(certification.merchant_uid.to_owned()),
                pg_tid: None,
                pg_provider: "danal".to_owned(),
                name: None,
                gender: None,
                birthday: None,
                birth: None,
                foreigner: false,
                foreigner_v2: None,
                phone: None,
                carrier: None,
                certified: false,
                certified_at: None,
                unique_key: None,
                unique_in_site: None,
                origin: Some(ORIGIN.to_owned()),
            },
        }
    }
}
