//! Daily and monthly periods, calendar-aligned in an organization's time
//! zone.
//!
//! A period is named by its kind and the local date it starts on
//! ([`PeriodKey`]). Usage counts into the period its event time falls in, and
//! a new period simply has a new key, so nothing ever needs resetting.
//!
//! Every function here is total: instants are read within the years 1 to
//! 9999 (an instant outside them is treated as the nearest end), so no
//! input makes a period computation panic. Event times are refused long
//! before they get near either end.

use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};

/// How long a limit's window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar day in the organization's time zone.
    Daily,
    /// A calendar month in the organization's time zone.
    Monthly,
}

impl Period {
    /// `"daily"` or `"monthly"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
        }
    }

    /// Parses `"daily"` or `"monthly"`; anything else is `InvalidInput`
    /// naming `period`.
    pub fn parse(input: &str) -> Result<Period> {
        match input {
            "daily" => Ok(Period::Daily),
            "monthly" => Ok(Period::Monthly),
            _ => Err(Error::invalid_input(
                "period",
                format_args!("{} is not a period; use daily or monthly", quoted(input)),
            )),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One concrete period: its kind and the local date it starts on (always the
/// first of the month for monthly periods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeriodKey {
    /// Daily or monthly.
    pub period: Period,
    /// The local date the period starts on.
    pub start: NaiveDate,
}

/// `instant`, moved into the years 1 to 9999 if it lies outside them.
fn supported(instant: DateTime<Utc>) -> DateTime<Utc> {
    // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
    const EARLIEST: i64 = -62_135_596_800;
    const LATEST: i64 = 253_402_300_799;
    let secs = instant.timestamp().clamp(EARLIEST, LATEST);
    if secs == instant.timestamp() {
        instant
    } else {
        DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }
}

impl PeriodKey {
    /// The period of kind `period` that `instant` falls in, in `tz`.
    ///
    /// ```
    /// use chrono::{NaiveDate, TimeZone, Utc};
    /// use tenancy::Period;
    /// use tenancy::limits::PeriodKey;
    ///
    /// // 20:00 UTC on 31 January is already 1 February in Tokyo.
    /// let instant = Utc.with_ymd_and_hms(2026, 1, 31, 20, 0, 0).unwrap();
    /// let key = PeriodKey::containing(Period::Monthly, instant, chrono_tz::Asia::Tokyo);
    /// assert_eq!(key.start, NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
    /// ```
    pub fn containing(period: Period, instant: DateTime<Utc>, tz: Tz) -> PeriodKey {
        let local_date = supported(instant).with_timezone(&tz).date_naive();
        let start = match period {
            Period::Daily => local_date,
            Period::Monthly => local_date.with_day(1).unwrap_or(local_date),
        };
        PeriodKey { period, start }
    }

    /// The period right after this one.
    pub fn next(&self) -> PeriodKey {
        let start = match self.period {
            Period::Daily => self.start.succ_opt().unwrap_or(NaiveDate::MAX),
            Period::Monthly => {
                let (year, month) = if self.start.month() == 12 {
                    (self.start.year() + 1, 1)
                } else {
                    (self.start.year(), self.start.month() + 1)
                };
                NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MAX)
            }
        };
        PeriodKey {
            period: self.period,
            start,
        }
    }

    /// The instant the period starts: the first instant whose local date in
    /// `tz` is its first day or later. That is local midnight; where
    /// midnight happens twice, the earlier; where a clock change skips
    /// midnight, the end of the gap (the first second whose local time is
    /// midnight or later). A day a zone skips entirely (Pacific/Apia,
    /// 2011-12-30) starts and ends at the same instant.
    pub fn starts_at(&self, tz: Tz) -> DateTime<Utc> {
        local_start_of_day(self.start, tz)
    }

    /// The instant the period ends and the next one starts: when its usage
    /// resets.
    pub fn resets_at(&self, tz: Tz) -> DateTime<Utc> {
        self.next().starts_at(tz)
    }
}

impl fmt::Display for PeriodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.period, self.start)
    }
}

/// The daily and monthly periods an instant falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CurrentPeriods {
    /// The day.
    pub daily: PeriodKey,
    /// The month.
    pub monthly: PeriodKey,
}

impl CurrentPeriods {
    /// The periods `instant` falls in, in `tz`.
    pub fn at(instant: DateTime<Utc>, tz: Tz) -> CurrentPeriods {
        CurrentPeriods {
            daily: PeriodKey::containing(Period::Daily, instant, tz),
            monthly: PeriodKey::containing(Period::Monthly, instant, tz),
        }
    }

    /// The key for one kind of period.
    pub fn key(&self, period: Period) -> PeriodKey {
        match period {
            Period::Daily => self.daily,
            Period::Monthly => self.monthly,
        }
    }
}

/// The first instant whose local date in `tz` is `date` or later.
///
/// - Local midnight, where it happens once.
/// - The earlier one, where it happens twice (clocks turned back across
///   midnight).
/// - Where a clock change skips midnight (a gap: Havana and Santiago spring
///   forward from 24:00 to 01:00; Apia skipped all of 2011-12-30), the end
///   of the gap: the first instant, to the second, whose local date-time is
///   midnight or later ([`end_of_gap`]).
///
/// `tenancy.day_starts_at` in SQL is the same rule, and a property test
/// (`testkit/tests/sql/agreement.rs`) keeps the two equal.
pub(crate) fn local_start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        LocalResult::None => end_of_gap(midnight, tz),
    }
}

/// The first whole second whose local date-time in `tz` is `local` or
/// later, for a `local` no instant has: bisected between `local` read as
/// UTC minus 26 hours and plus 26 hours. Every UTC offset is well under 26
/// hours, so the local time is earlier than `local` at the low end and
/// later at the high end; zones change offsets on whole seconds, so the
/// second found is the exact end of the gap. Seconds outside chrono's range
/// count as before (below it) or after (above it) `local`, so this never
/// panics.
fn end_of_gap(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    const WINDOW: i64 = 26 * 60 * 60;
    let target = local.and_utc().timestamp();
    let reached = |secs: i64| match DateTime::from_timestamp(secs, 0) {
        Some(t) => {
            let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
            secs + i64::from(offset.local_minus_utc()) >= target
        }
        None => secs > 0,
    };
    let (mut lo, mut hi) = (target - WINDOW, target + WINDOW);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reached(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or(if hi > 0 {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::MIN_UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Tz};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn new_york_day_across_spring_forward() {
        // 8 March 2026: clocks go from 02:00 EST to 03:00 EDT; the day is 23h.
        let key = PeriodKey::containing(
            Period::Daily,
            utc("2026-03-08T12:00:00Z"),
            America::New_York,
        );
        assert_eq!(
            key.starts_at(America::New_York),
            utc("2026-03-08T05:00:00Z")
        );
        assert_eq!(
            key.resets_at(America::New_York),
            utc("2026-03-09T04:00:00Z")
        );
    }

    #[test]
    fn new_york_month_across_fall_back() {
        let key = PeriodKey::containing(
            Period::Monthly,
            utc("2026-11-15T12:00:00Z"),
            America::New_York,
        );
        assert_eq!(
            key.starts_at(America::New_York),
            utc("2026-11-01T04:00:00Z")
        );
        assert_eq!(
            key.resets_at(America::New_York),
            utc("2026-12-01T05:00:00Z")
        );
    }

    #[test]
    fn tokyo_month_end() {
        let before =
            PeriodKey::containing(Period::Monthly, utc("2026-01-31T14:59:59Z"), Asia::Tokyo);
        let after =
            PeriodKey::containing(Period::Monthly, utc("2026-01-31T15:00:00Z"), Asia::Tokyo);
        assert_eq!(before.start.to_string(), "2026-01-01");
        assert_eq!(after.start.to_string(), "2026-02-01");
        assert_eq!(before.resets_at(Asia::Tokyo), utc("2026-01-31T15:00:00Z"));
        assert_eq!(before.next(), after);
    }

    #[test]
    fn midnight_in_a_gap_starts_at_the_gap_end() {
        // Santiago springs forward at 24:00 on the first Saturday of
        // September: 7 September 2025 has no 00:00, the day starts at 01:00.
        let tz: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 9, 7).unwrap();
        let start = local_start_of_day(day, tz);
        assert_eq!(
            start.with_timezone(&tz).format("%H:%M").to_string(),
            "01:00"
        );
    }

    /// The day `date` in the zone named `zone`: when it starts and when it
    /// resets.
    fn day_bounds(zone: &str, date: &str) -> (DateTime<Utc>, DateTime<Utc>) {
        let tz: Tz = zone.parse().unwrap();
        let key = PeriodKey {
            period: Period::Daily,
            start: date.parse().unwrap(),
        };
        (key.starts_at(tz), key.resets_at(tz))
    }

    #[test]
    fn a_skipped_day_starts_and_ends_at_the_gap_end() {
        // Apia jumped from 2011-12-29T23:59:59-10:00 to
        // 2011-12-31T00:00:00+14:00 at 10:00 UTC: 30 December never began.
        let (starts, resets) = day_bounds("Pacific/Apia", "2011-12-30");
        assert_eq!(starts, utc("2011-12-30T10:00:00Z"));
        assert_eq!(resets, utc("2011-12-30T10:00:00Z"));
        let (_, resets) = day_bounds("Pacific/Apia", "2011-12-29");
        assert_eq!(resets, utc("2011-12-30T10:00:00Z"));
        let tz: Tz = "Pacific/Apia".parse().unwrap();
        let after = PeriodKey::containing(Period::Daily, utc("2011-12-30T10:00:00Z"), tz);
        assert_eq!(after.start.to_string(), "2011-12-31");
    }

    #[test]
    fn gaps_at_midnight_start_the_day_at_their_end() {
        for (zone, date, start, reset) in [
            // Santiago: 2022-09-11T00:00-04:00 became 01:00-03:00.
            (
                "America/Santiago",
                "2022-09-11",
                "2022-09-11T04:00:00Z",
                "2022-09-12T03:00:00Z",
            ),
            // Havana: 2022-03-13T00:00 CST became 01:00 CDT.
            (
                "America/Havana",
                "2022-03-13",
                "2022-03-13T05:00:00Z",
                "2022-03-14T04:00:00Z",
            ),
            // Beirut: 2022-03-27T00:00+02:00 became 01:00+03:00.
            (
                "Asia/Beirut",
                "2022-03-27",
                "2022-03-26T22:00:00Z",
                "2022-03-27T21:00:00Z",
            ),
        ] {
            assert_eq!(
                day_bounds(zone, date),
                (utc(start), utc(reset)),
                "{zone} {date}"
            );
        }
    }

    #[test]
    fn clocks_turned_back_at_midnight() {
        // Santiago, 2022-04-03T00:00-03:00 became 2022-04-02T23:00-04:00:
        // midnight of 3 April happens once, at -04:00, and 2 April has 25
        // hours.
        assert_eq!(
            day_bounds("America/Santiago", "2022-04-02"),
            (utc("2022-04-02T03:00:00Z"), utc("2022-04-03T04:00:00Z"))
        );
        assert_eq!(
            day_bounds("America/Santiago", "2022-04-03").0,
            utc("2022-04-03T04:00:00Z")
        );
        // Beirut, 2022-10-30T00:00+03:00 became 2022-10-29T23:00+02:00.
        assert_eq!(
            day_bounds("Asia/Beirut", "2022-10-29"),
            (utc("2022-10-28T21:00:00Z"), utc("2022-10-29T22:00:00Z"))
        );
    }

    #[test]
    fn a_midnight_that_happens_twice_starts_the_day_at_the_first() {
        // Havana, 2022-11-06T01:00 CDT became 00:00 CST: midnight came at
        // 04:00 UTC and again at 05:00 UTC; the day has 25 hours.
        assert_eq!(
            day_bounds("America/Havana", "2022-11-06"),
            (utc("2022-11-06T04:00:00Z"), utc("2022-11-07T05:00:00Z"))
        );
        let tz: Tz = "America/Havana".parse().unwrap();
        let between = PeriodKey::containing(Period::Daily, utc("2022-11-06T04:30:00Z"), tz);
        assert_eq!(between.start.to_string(), "2022-11-06");
    }

    #[test]
    fn half_hour_daylight_saving() {
        // Lord Howe moves by 30 minutes, at 02:00: 2 October 2022 has 23.5
        // hours, 3 April 2022 has 24.5.
        assert_eq!(
            day_bounds("Australia/Lord_Howe", "2022-10-02"),
            (utc("2022-10-01T13:30:00Z"), utc("2022-10-02T13:00:00Z"))
        );
        assert_eq!(
            day_bounds("Australia/Lord_Howe", "2022-04-03"),
            (utc("2022-04-02T13:00:00Z"), utc("2022-04-03T13:30:00Z"))
        );
    }

    #[test]
    fn far_dates_do_not_panic() {
        for tz in [Tz::UTC, Asia::Tokyo, America::Santiago, Tz::Pacific__Apia] {
            for start in [NaiveDate::MIN, NaiveDate::MAX] {
                for period in [Period::Daily, Period::Monthly] {
                    let key = PeriodKey { period, start };
                    assert!(key.resets_at(tz) >= key.starts_at(tz));
                }
            }
            let gap = NaiveDate::MAX.and_time(NaiveTime::MIN);
            let _ = end_of_gap(gap, tz);
            let _ = end_of_gap(NaiveDate::MIN.and_time(NaiveTime::MIN), tz);
        }
    }

    #[test]
    fn december_rolls_into_january() {
        let key = PeriodKey {
            period: Period::Monthly,
            start: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        };
        assert_eq!(key.next().start.to_string(), "2027-01-01");
    }

    #[test]
    fn the_ends_of_time_do_not_panic() {
        for tz in [Tz::UTC, Asia::Tokyo, America::New_York] {
            for instant in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
                let periods = CurrentPeriods::at(instant, tz);
                assert!(periods.daily.resets_at(tz) > periods.daily.starts_at(tz));
            }
        }
    }

    #[test]
    fn unknown_period_names_the_field() {
        assert_eq!(Period::parse("weekly").unwrap_err().field(), Some("period"));
    }
}
