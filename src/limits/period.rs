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

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
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

    /// The instant the period starts: local midnight of its first day, or
    /// the first instant after it where a daylight-saving gap skips
    /// midnight.
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

/// The first instant of `date` in `tz`. Midnight is usually it; on a day
/// whose midnight falls in a daylight-saving gap (clocks jump from 23:59 to
/// 01:00 in some zones) it is the end of the gap, and where midnight happens
/// twice it is the earlier one.
fn local_start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Gaps are at most a few hours; step forward minute by minute until the
    // local time exists.
    for minutes in 0..=(6 * 60) {
        let Some(local) = midnight.checked_add_signed(Duration::minutes(minutes)) else {
            break;
        };
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    // Unreachable for real zones; fall back to reading midnight as UTC.
    Utc.from_utc_datetime(&midnight)
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
