//! Turning limits and their usage into a decision: pure logic, no I/O.
//!
//! Counters are sums of many events and may grow past any single amount's
//! bound, so every sum and product here saturates at `Decimal`'s range
//! (about 7.9 × 10^28) instead of overflowing: no stored figure can make a
//! decision panic.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{LimitId, MetricKey};
use crate::limits::period::{Period, PeriodKey};
use crate::limits::policy::{Limit, LimitMode, LimitScope};

/// A limit with the usage counted against it in its current period, as the
/// store read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUsage {
    /// The limit.
    pub limit: Limit,
    /// The period counted.
    pub period: PeriodKey,
    /// Usage recorded in the period.
    pub used: Decimal,
    /// Amounts held in the period: by unexpired reservations, and by live
    /// budget leases ([`LeaseStore`](crate::store::LeaseStore)).
    pub reserved: Decimal,
}

impl LimitUsage {
    /// Usage counted against the limit: `used + reserved`.
    pub fn consumed(&self) -> Decimal {
        self.used.saturating_add(self.reserved)
    }

    /// What is left before the limit: `value - used - reserved`, negative
    /// once usage has passed it.
    pub fn headroom(&self) -> Decimal {
        self.limit.value.saturating_sub(self.consumed())
    }

    /// Whether `amount` more fits under the limit.
    pub fn fits(&self, amount: Decimal) -> bool {
        self.consumed().saturating_add(amount) <= self.limit.value
    }
}

/// How close usage is to a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitLevel {
    /// Below the first alert threshold.
    Ok,
    /// At or past the first alert threshold (80 % by default), within the
    /// limit.
    Warning,
    /// Past the limit.
    Exceeded,
}

/// Which limit decided a [`LimitDecision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidingLimit {
    /// The limit's id.
    pub id: LimitId,
    /// Org-wide or per user.
    pub scope: LimitScope,
    /// Its period.
    pub period: Period,
    /// Hard or soft.
    pub mode: LimitMode,
}

/// The answer to "may this user use `requested` more of `metric` now?".
///
/// Every applicable limit — org-wide and the user's own, daily and monthly —
/// is checked; the tightest one (least headroom) decides and its figures are
/// reported. A denial is this value with `allowed == false`, not an error.
/// `level` describes usage *after* the request (`used + reserved +
/// requested`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitDecision {
    /// Whether the request fits under every hard limit.
    pub allowed: bool,
    /// The metric asked about.
    pub metric: MetricKey,
    /// The amount asked for.
    pub requested: Decimal,
    /// Usage in the deciding limit's period (zero when no limit applies).
    pub used: Decimal,
    /// Held by other reservations and by live leases in that period.
    pub reserved: Decimal,
    /// The deciding limit's value; `None` when no limit applies.
    pub limit: Option<Decimal>,
    /// `limit - used - reserved`, never below zero; `None` without a limit.
    pub remaining: Option<Decimal>,
    /// When the deciding limit's period ends; `None` without a limit.
    pub resets_at: Option<DateTime<Utc>>,
    /// How close the request would bring usage to the limit.
    pub level: LimitLevel,
    /// The limit that decided; `None` when no limit applies.
    pub decided_by: Option<DecidingLimit>,
}

impl LimitDecision {
    /// Seconds until the deciding limit resets, for a `Retry-After` header.
    pub fn retry_after_secs(&self, now: DateTime<Utc>) -> Option<u64> {
        self.resets_at
            .map(|at| u64::try_from((at - now).num_seconds().max(1)).unwrap_or(1))
    }
}

/// The level `projected` usage reaches against `value`, with the first
/// alert threshold at `warn_percent`.
pub(crate) fn level_of(projected: Decimal, value: Decimal, warn_percent: Decimal) -> LimitLevel {
    if projected > value {
        LimitLevel::Exceeded
    } else if reaches_percent(projected, value, warn_percent) {
        LimitLevel::Warning
    } else {
        LimitLevel::Ok
    }
}

/// Whether nonzero `used` is at least `percent` of `value`: the rule for
/// both a `Warning` level and a crossed alert threshold.
pub(crate) fn reaches_percent(used: Decimal, value: Decimal, percent: Decimal) -> bool {
    !used.is_zero() && used.saturating_mul(Decimal::ONE_HUNDRED) >= value.saturating_mul(percent)
}

/// The largest percentage reported: usage a million percent of its limit
/// or more reads as this.
pub const MAX_PERCENT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// `consumed` as a percentage of `value`, rounded to two places and capped
/// at [`MAX_PERCENT`]; `None` for a zero limit (no percentage exists).
pub(crate) fn percent_of(consumed: Decimal, value: Decimal) -> Option<Decimal> {
    if value.is_zero() {
        return None;
    }
    let percent = consumed
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|c| c.checked_div(value))
        .map_or(MAX_PERCENT, |p| p.min(MAX_PERCENT));
    Some(percent.round_dp(2))
}

/// Decides a request for `requested` of `metric` against the applicable
/// limits (already filtered to that metric and to the user's scope).
pub(crate) fn decide(
    metric: &MetricKey,
    requested: Decimal,
    applicable: &[LimitUsage],
    tz: Tz,
    warn_percent: Decimal,
) -> LimitDecision {
    let denies = |u: &LimitUsage| u.limit.mode == LimitMode::Hard && !u.fits(requested);
    let allowed = !applicable.iter().any(denies);
    // Among the limits that deny (or, if none does, all of them), the one
    // with the least headroom decides. Ties go to hard limits, then to the
    // shorter period, so the decision is stable.
    let deciding = applicable
        .iter()
        .filter(|u| allowed || denies(u))
        .min_by(|a, b| {
            a.headroom()
                .cmp(&b.headroom())
                .then((a.limit.mode == LimitMode::Soft).cmp(&(b.limit.mode == LimitMode::Soft)))
                .then(a.limit.period.cmp(&b.limit.period))
        });
    match deciding {
        None => LimitDecision {
            allowed: true,
            metric: metric.clone(),
            requested,
            used: Decimal::ZERO,
            reserved: Decimal::ZERO,
            limit: None,
            remaining: None,
            resets_at: None,
            level: LimitLevel::Ok,
            decided_by: None,
        },
        Some(u) => LimitDecision {
            allowed,
            metric: metric.clone(),
            requested,
            used: u.used,
            reserved: u.reserved,
            limit: Some(u.limit.value),
            remaining: Some(u.headroom().max(Decimal::ZERO)),
            resets_at: Some(u.period.resets_at(tz)),
            level: level_of(
                u.consumed().saturating_add(requested),
                u.limit.value,
                warn_percent,
            ),
            decided_by: Some(DecidingLimit {
                id: u.limit.id,
                scope: u.limit.scope,
                period: u.limit.period,
                mode: u.limit.mode,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, UserId};
    use chrono::NaiveDate;
    use rust_decimal_macros::dec;

    fn usage(
        scope: LimitScope,
        period: Period,
        value: Decimal,
        used: Decimal,
        mode: LimitMode,
    ) -> LimitUsage {
        LimitUsage {
            limit: Limit {
                id: LimitId::new_v7(),
                org: OrgId::new_v7(),
                scope,
                metric: MetricKey::TOKENS,
                period,
                value,
                mode,
                created_at: DateTime::UNIX_EPOCH,
                expires_at: None,
            },
            period: PeriodKey {
                period,
                start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            },
            used,
            reserved: Decimal::ZERO,
        }
    }

    #[test]
    fn huge_counters_and_tiny_limits_do_not_panic() {
        assert_eq!(
            percent_of(Decimal::MAX, Decimal::new(1, 28)),
            Some(MAX_PERCENT)
        );
        assert_eq!(percent_of(dec!(50), dec!(200)), Some(dec!(25)));
        assert_eq!(percent_of(dec!(1), Decimal::ZERO), None);
        let u = usage(
            LimitScope::Organization,
            Period::Daily,
            dec!(10),
            Decimal::MAX,
            LimitMode::Hard,
        );
        assert!(!u.fits(Decimal::MAX));
        assert!(u.headroom() < Decimal::ZERO);
        let d = decide(&MetricKey::TOKENS, Decimal::MAX, &[u], Tz::UTC, dec!(80));
        assert_eq!(d.level, LimitLevel::Exceeded);
    }

    #[test]
    fn no_limits_allows() {
        let d = decide(&MetricKey::TOKENS, dec!(5), &[], Tz::UTC, dec!(80));
        assert!(d.allowed);
        assert_eq!(d.limit, None);
        assert_eq!(d.level, LimitLevel::Ok);
    }

    #[test]
    fn tightest_limit_wins() {
        let user = LimitScope::User(UserId::new_v7());
        let limits = [
            usage(
                LimitScope::Organization,
                Period::Monthly,
                dec!(1000),
                dec!(100),
                LimitMode::Hard,
            ),
            usage(user, Period::Daily, dec!(50), dec!(45), LimitMode::Hard),
        ];
        let d = decide(&MetricKey::TOKENS, dec!(10), &limits, Tz::UTC, dec!(80));
        assert!(!d.allowed);
        assert_eq!(d.limit, Some(dec!(50)));
        assert_eq!(d.remaining, Some(dec!(5)));
        assert_eq!(d.decided_by.unwrap().scope, user);
        assert_eq!(d.level, LimitLevel::Exceeded);

        let d = decide(&MetricKey::TOKENS, dec!(1), &limits, Tz::UTC, dec!(80));
        assert!(d.allowed);
        assert_eq!(d.level, LimitLevel::Warning);
        assert_eq!(d.limit, Some(dec!(50)));
    }

    #[test]
    fn soft_limits_allow_but_report_exceeded() {
        let limits = [usage(
            LimitScope::Organization,
            Period::Daily,
            dec!(10),
            dec!(10),
            LimitMode::Soft,
        )];
        let d = decide(&MetricKey::TOKENS, dec!(1), &limits, Tz::UTC, dec!(80));
        assert!(d.allowed);
        assert_eq!(d.level, LimitLevel::Exceeded);
        assert_eq!(d.remaining, Some(dec!(0)));
    }

    #[test]
    fn a_denying_hard_limit_beats_a_tighter_soft_one() {
        let limits = [
            usage(
                LimitScope::Organization,
                Period::Daily,
                dec!(10),
                dec!(100),
                LimitMode::Soft,
            ),
            usage(
                LimitScope::Organization,
                Period::Monthly,
                dec!(100),
                dec!(95),
                LimitMode::Hard,
            ),
        ];
        let d = decide(&MetricKey::TOKENS, dec!(10), &limits, Tz::UTC, dec!(80));
        assert!(!d.allowed);
        assert_eq!(d.decided_by.unwrap().mode, LimitMode::Hard);
    }
}
