//! Full age (만 나이) as Korean law counts it, from the date of birth as of a date in Korea.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};

/// Korea Standard Time. Korea has kept UTC+9 without daylight saving since 1988, so a fixed
/// offset is exact for "today in Asia/Seoul" and spares us a time zone database.
fn korea_standard_time() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("UTC+9 is a valid offset")
}

/// The calendar date in Asia/Seoul at `now`.
pub(crate) fn today_in_seoul(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&korea_standard_time()).date_naive()
}

/// Full years from `birth` to `today`, or `None` when `birth` is after `today`.
///
/// A year is completed on the birthday itself. Someone born on 29 February completes a year on
/// 1 March in common years (Civil Act art. 160(3): a period whose last month lacks the day ends
/// on that month's last day, so the new year of age starts the day after, 1 March).
pub(crate) fn full_age(birth: NaiveDate, today: NaiveDate) -> Option<u32> {
    if birth > today {
        return None;
    }
    let years = today.year() - birth.year();
    let anniversary_this_year = NaiveDate::from_ymd_opt(today.year(), birth.month(), birth.day())
        .or_else(|| NaiveDate::from_ymd_opt(today.year(), 3, 1))?;
    let completed = if today >= anniversary_this_year {
        years
    } else {
        years - 1
    };
    u32::try_from(completed).ok()
}

/// The age policy applied to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AgeCheck {
    pub(crate) age: u32,
    pub(crate) min_age: u32,
}

impl AgeCheck {
    pub(crate) fn satisfied(&self) -> bool {
        self.age >= self.min_age
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    #[test]
    fn a_year_is_completed_on_the_birthday_not_before() {
        assert_eq!(full_age(date(2007, 11, 23), date(2026, 11, 22)), Some(18));
        assert_eq!(full_age(date(2007, 11, 23), date(2026, 11, 23)), Some(19));
        assert_eq!(full_age(date(2007, 11, 23), date(2026, 11, 24)), Some(19));
        assert_eq!(full_age(date(2007, 12, 31), date(2026, 1, 1)), Some(18));
    }

    #[test]
    fn born_today_is_zero_and_born_tomorrow_is_none() {
        assert_eq!(full_age(date(2026, 11, 23), date(2026, 11, 23)), Some(0));
        assert_eq!(full_age(date(2026, 11, 24), date(2026, 11, 23)), None);
    }

    #[test]
    fn leap_day_birthdays_complete_a_year_on_march_first_in_common_years() {
        let born = date(2004, 2, 29);
        assert_eq!(full_age(born, date(2023, 2, 28)), Some(18));
        assert_eq!(full_age(born, date(2023, 3, 1)), Some(19));
        assert_eq!(full_age(born, date(2024, 2, 28)), Some(19));
        assert_eq!(full_age(born, date(2024, 2, 29)), Some(20));
        assert_eq!(full_age(born, date(2025, 2, 28)), Some(20));
        assert_eq!(full_age(born, date(2025, 3, 1)), Some(21));
    }

    #[test]
    fn today_is_the_korean_date_even_while_utc_is_still_yesterday() {
        // 2026-11-22 15:30 UTC is 2026-11-23 00:30 in Seoul: the birthday has begun there.
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 15, 30, 0).unwrap();
        let today = today_in_seoul(now);
        assert_eq!(today, date(2026, 11, 23));
        assert_eq!(full_age(date(2007, 11, 23), today), Some(19));
        // One hour earlier it is still the 22nd in Seoul: the day before the birthday.
        let before = Utc.with_ymd_and_hms(2026, 11, 22, 14, 59, 59).unwrap();
        assert_eq!(full_age(date(2007, 11, 23), today_in_seoul(before)), Some(18));
    }

    #[test]
    fn satisfied_is_inclusive_of_the_minimum() {
        assert!(AgeCheck { age: 19, min_age: 19 }.satisfied());
        assert!(!AgeCheck { age: 18, min_age: 19 }.satisfied());
    }
}
