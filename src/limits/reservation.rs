//! Reservations (hold an estimate, then commit the actual amount) and the
//! usage-vs-limits summary.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{MetricKey, OrgId, ReservationId, UserId};
use crate::limits::decision::{LimitDecision, LimitLevel};
use crate::limits::period::{CurrentPeriods, Period};
use crate::limits::policy::{LimitMode, LimitScope};

/// An amount held against every applicable limit until it is committed,
/// released, or expires.
///
/// Pass it to [`Tenancy::commit`](crate::Tenancy::commit) with the actual
/// amount once the expensive operation is done, or to
/// [`Tenancy::release`](crate::Tenancy::release) if it failed. A reservation
/// that is dropped stops counting when it expires; no background job is
/// needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use = "commit or release a reservation; a dropped one holds budget until it expires"]
pub struct Reservation {
    /// Its id; the committed usage event gets the same id.
    pub id: ReservationId,
    /// The organization.
    pub org: OrgId,
    /// The user it was made for.
    pub user: UserId,
    /// The metric held.
    pub metric: MetricKey,
    /// The amount held.
    pub amount: Decimal,
    /// The periods it counts in.
    pub periods: CurrentPeriods,
    /// When the hold lapses if neither committed nor released.
    pub expires_at: DateTime<Utc>,
    /// The decision that granted it.
    pub decision: LimitDecision,
}

/// The result of [`Tenancy::reserve`](crate::Tenancy::reserve): a held
/// reservation, or the denial that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ReserveOutcome {
    /// The estimate fits under every hard limit and is now held.
    Granted(Reservation),
    /// Some hard limit would be passed; nothing is held.
    Denied(LimitDecision),
}

impl ReserveOutcome {
    /// The decision, granted or not.
    pub fn decision(&self) -> &LimitDecision {
        match self {
            ReserveOutcome::Granted(r) => &r.decision,
            ReserveOutcome::Denied(d) => d,
        }
    }

    /// The reservation, if granted.
    pub fn granted(self) -> Option<Reservation> {
        match self {
            ReserveOutcome::Granted(r) => Some(r),
            ReserveOutcome::Denied(_) => None,
        }
    }
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
    /// `(used + reserved) / limit` in percent, rounded to two places.
    pub percent: Option<Decimal>,
    /// Where usage stands against the limit.
    pub level: LimitLevel,
    /// When the current period ends.
    pub resets_at: DateTime<Utc>,
}
