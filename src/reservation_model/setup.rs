//! The organization a run creates: [`Setup`] and its [`LimitSpec`]s.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::ids::MetricKey;
use crate::limits::Period;

/// The organization a run creates, and the tenancy it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Setup {
    /// The organization's time zone: where days and months end.
    pub zone: Tz,
    /// Where the run's clock starts.
    pub start: DateTime<Utc>,
    /// The tenancy's reservation TTL.
    pub reservation_ttl: Duration,
    /// How many users reserve (at least 1): the owner (user 0) and members.
    pub users: usize,
    /// The metric reserved, and every limit's.
    pub metric: MetricKey,
    /// The organization's hard limits on the metric.
    pub limits: Vec<LimitSpec>,
}

impl Default for Setup {
    /// New York, from noon UTC two days before January ends, a 30-minute
    /// TTL, four users, tokens limited to 2 000 a day and 6 000 a month
    /// org-wide and to 500 a day for user 1.
    fn default() -> Self {
        Setup {
            zone: chrono_tz::America::New_York,
            start: DateTime::from_timestamp(1_769_688_000, 0).unwrap_or_default(),
            reservation_ttl: Duration::from_secs(30 * 60),
            users: 4,
            metric: MetricKey::TOKENS,
            limits: vec![
                LimitSpec::org(Period::Daily, Decimal::from(2_000)),
                LimitSpec::org(Period::Monthly, Decimal::from(6_000)),
                LimitSpec::user(1, Period::Daily, Decimal::from(500)),
            ],
        }
    }
}

impl Setup {
    /// In the time zone `zone`.
    pub fn with_zone(mut self, zone: Tz) -> Self {
        self.zone = zone;
        self
    }

    /// Starting at `start`.
    pub fn with_start(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }

    /// With the reservation TTL `ttl`.
    pub fn with_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// With `users` users.
    pub fn with_users(mut self, users: usize) -> Self {
        self.users = users;
        self
    }

    /// Reserving `metric`.
    pub fn with_metric(mut self, metric: MetricKey) -> Self {
        self.metric = metric;
        self
    }

    /// With these limits instead.
    pub fn with_limits(mut self, limits: impl IntoIterator<Item = LimitSpec>) -> Self {
        self.limits = limits.into_iter().collect();
        self
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {}, TTL {:?}, {} users, {} limited",
            self.zone,
            self.start.to_rfc3339(),
            self.reservation_ttl,
            self.users,
            self.metric
        )?;
        let mut sep = " ";
        for limit in &self.limits {
            write!(f, "{sep}{limit}")?;
            sep = ", ";
        }
        if self.limits.is_empty() {
            f.write_str(" by nothing")?;
        }
        Ok(())
    }
}

/// A hard limit of the run's organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitSpec {
    /// Whose: `None` org-wide, else the index of a user.
    pub user: Option<usize>,
    /// Daily or monthly.
    pub period: Period,
    /// The cap.
    pub value: Decimal,
}

impl LimitSpec {
    /// An org-wide limit.
    pub fn org(period: Period, value: Decimal) -> Self {
        LimitSpec {
            user: None,
            period,
            value,
        }
    }

    /// A limit of user `user` (an index below [`Setup::users`]).
    pub fn user(user: usize, period: Period, value: Decimal) -> Self {
        LimitSpec {
            user: Some(user),
            period,
            value,
        }
    }
}

impl fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.user {
            None => write!(f, "{} {} org-wide", self.value, self.period),
            Some(user) => write!(f, "{} {} for user {user}", self.value, self.period),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_setup_starts_two_days_before_a_month_ends() {
        let setup = Setup::default();
        assert_eq!(setup.start.to_rfc3339(), "2026-01-29T12:00:00+00:00");
        assert_eq!(
            setup.to_string(),
            "America/New_York from 2026-01-29T12:00:00+00:00, \
            TTL 1800s, 4 users, tokens limited 2000 daily org-wide, 6000 monthly org-wide, \
            500 daily for user 1"
        );
    }
}
