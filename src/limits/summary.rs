//! Usage as a store reads it — limits with their usage, and counters — and
//! the usage-vs-limits lines made from it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::MetricKey;
use crate::limits::decision::{LimitLevel, LimitUsage, level_of, percent_of};
use crate::limits::period::{Period, PeriodKey};
use crate::limits::policy::{LimitMode, LimitScope};

/// Usage counted in one counter for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterUsage {
    /// Org-wide or one user.
    pub scope: LimitScope,
    /// The metric.
    pub metric: MetricKey,
    /// The period.
    pub period: PeriodKey,
    /// Recorded usage.
    pub used: Decimal,
    /// Held by unexpired reservations and live budget leases.
    pub reserved: Decimal,
}

/// A read of limits and counters for one organization (and optionally one
/// user) in the current periods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSnapshot {
    /// Applicable limits (org-wide, plus the user's when a user was given),
    /// each with its usage.
    pub limits: Vec<LimitUsage>,
    /// Every non-empty counter in scope, limited or not.
    pub counters: Vec<CounterUsage>,
}

/// One line of a usage-vs-limits page: a metric over a period, for the
/// organization or the user, with its limit if one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLine {
    /// The metric.
    pub metric: MetricKey,
    /// Daily or monthly.
    pub period: Period,
    /// Org-wide or the user's own.
    pub scope: LimitScope,
    /// Recorded usage in the current period.
    pub used: Decimal,
    /// Held by unexpired reservations.
    pub reserved: Decimal,
    /// The limit, if one is set.
    pub limit: Option<Decimal>,
    /// Hard or soft, if a limit is set.
    pub mode: Option<LimitMode>,
    /// `limit - used - reserved`, never below zero.
    pub remaining: Option<Decimal>,
    /// `(used + reserved) / limit` in percent, rounded to two places and
    /// capped at [`MAX_PERCENT`](crate::limits::MAX_PERCENT); `None` without
    /// a limit or for a limit of zero.
    pub percent: Option<Decimal>,
    /// Where usage stands against the limit.
    pub level: LimitLevel,
    /// When the current period ends.
    pub resets_at: DateTime<Utc>,
}

impl UsageLine {
    fn limited(u: &LimitUsage, tz: Tz, warn_percent: Decimal) -> UsageLine {
        let value = u.limit.value;
        UsageLine {
            metric: u.limit.metric.clone(),
            period: u.limit.period,
            scope: u.limit.scope,
            used: u.used,
            reserved: u.reserved,
            limit: Some(value),
            mode: Some(u.limit.mode),
            remaining: Some(u.headroom().max(Decimal::ZERO)),
            percent: percent_of(u.consumed(), value),
            level: level_of(u.consumed(), value, warn_percent),
            resets_at: u.period.resets_at(tz),
        }
    }

    fn unlimited(c: CounterUsage, tz: Tz) -> UsageLine {
        UsageLine {
            resets_at: c.period.resets_at(tz),
            metric: c.metric,
            period: c.period.period,
            scope: c.scope,
            used: c.used,
            reserved: c.reserved,
            limit: None,
            mode: None,
            remaining: None,
            percent: None,
            level: LimitLevel::Ok,
        }
    }
}

/// The usage-vs-limits lines of a snapshot: one per limit, then one per
/// counter no limit covers, sorted by metric, period and scope.
pub(crate) fn usage_lines(
    snapshot: UsageSnapshot,
    tz: Tz,
    warn_percent: Decimal,
) -> Vec<UsageLine> {
    let mut lines: Vec<UsageLine> = snapshot
        .limits
        .iter()
        .map(|u| UsageLine::limited(u, tz, warn_percent))
        .collect();
    for counter in snapshot.counters {
        let limited = lines.iter().any(|l| {
            l.metric == counter.metric
                && l.period == counter.period.period
                && l.scope == counter.scope
        });
        if !limited {
            lines.push(UsageLine::unlimited(counter, tz));
        }
    }
    lines.sort_by(|a, b| (&a.metric, a.period, a.scope).cmp(&(&b.metric, b.period, b.scope)));
    lines
}
