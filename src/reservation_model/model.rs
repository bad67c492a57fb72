//! The model: every hold granted and the usage committed, as plain data,
//! and the rules for amounts and periods it predicts with.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::ids::UserId;
use crate::limits::{
    CurrentPeriods, Limit, LimitScope, MAX_AMOUNT, Period, PeriodKey, Reservation,
};

/// Decimal places up to which the model's sums are exact.
pub(super) const EXACT_SCALE: u32 = 6;

/// How far from each other the store's and the model's figures may be once
/// an amount was finer than [`EXACT_SCALE`], relative to the largest amount
/// or limit: 10⁻²⁰.
const ROUNDING: Decimal = Decimal::from_parts(1, 0, 0, false, 20);

/// The largest sum of amounts for which six-place figures still fit
/// `Decimal`'s 28 digits: 10²².
const EXACT_TOTAL: Decimal = Decimal::from_parts(0xB240_0000, 0x19E0_C9BA, 0x21E, false, 0);

/// Where a granted hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldState {
    /// Held until committed, released or expired.
    Open,
    /// Held until it expires; nobody touches it again.
    Abandoned,
    /// Committed: its usage is recorded.
    Committed,
    /// Released, or refused for good once past the retention.
    Released,
}

impl HoldState {
    /// Whether a hold in this state counts until it expires.
    pub(super) fn holds(self) -> bool {
        matches!(self, HoldState::Open | HoldState::Abandoned)
    }
}

/// A granted reservation as the model sees it.
#[derive(Debug)]
pub(super) struct Hold {
    pub(super) reservation: Reservation,
    pub(super) user: UserId,
    pub(super) estimate: Decimal,
    /// The periods it was taken in, computed here from the local date.
    pub(super) periods: CurrentPeriods,
    pub(super) state: HoldState,
}

/// What the store should hold: every grant, and the committed usage.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) holds: Vec<Hold>,
    /// Committed usage by scope (org-wide and each user) and period.
    pub(super) used: BTreeMap<(LimitScope, PeriodKey), Decimal>,
    /// By how much commits above their estimates or after their holds
    /// expired may have taken each period past its limits.
    pub(super) allowance: BTreeMap<(LimitScope, PeriodKey), Decimal>,
    /// All committed usage.
    pub(super) committed: Decimal,
    /// Every amount so far had at most [`EXACT_SCALE`] places, and all of
    /// them add up to at most [`EXACT_TOTAL`].
    pub(super) exact: bool,
    /// The largest amount so far.
    magnitude: Decimal,
    /// All amounts so far, added up.
    total: Decimal,
}

impl Model {
    pub(super) fn new() -> Self {
        Model {
            holds: Vec::new(),
            used: BTreeMap::new(),
            allowance: BTreeMap::new(),
            committed: Decimal::ZERO,
            exact: true,
            magnitude: Decimal::ZERO,
            total: Decimal::ZERO,
        }
    }

    /// Takes note of a valid amount the store will add up.
    pub(super) fn note(&mut self, amount: Decimal) {
        self.magnitude = self.magnitude.max(amount);
        self.total = self.total.saturating_add(amount);
        if !fine(amount) || self.total > EXACT_TOTAL {
            self.exact = false;
        }
    }

    /// How far the store's sums may be from the model's.
    pub(super) fn tolerance(&self, limits: &[Limit]) -> Decimal {
        if self.exact {
            Decimal::ZERO
        } else {
            self.rounding(limits, Decimal::ZERO)
        }
    }

    /// The rounding allowance for figures involving `amount`.
    pub(super) fn rounding(&self, limits: &[Limit], amount: Decimal) -> Decimal {
        let largest = limits.iter().map(|l| l.value).max().unwrap_or_default();
        self.magnitude.max(largest).max(amount.abs()) * ROUNDING
    }

    pub(super) fn get(
        &self,
        map: &BTreeMap<(LimitScope, PeriodKey), Decimal>,
        scope: LimitScope,
        key: PeriodKey,
    ) -> Decimal {
        map.get(&(scope, key)).copied().unwrap_or_default()
    }

    /// Held in `key` at `now` under a limit of `scope`.
    pub(super) fn held(&self, scope: LimitScope, key: PeriodKey, now: DateTime<Utc>) -> Decimal {
        self.holds
            .iter()
            .filter(|h| h.state.holds() && h.reservation.expires_at() > now)
            .filter(|h| {
                applies(scope, h.user) && (h.periods.daily == key || h.periods.monthly == key)
            })
            .map(|h| h.estimate)
            .sum()
    }

    /// Records a commit of `amount` by `user`, counted in `periods` (its
    /// hold's); `overshoot` is what it may add past the limits there.
    pub(super) fn record(
        &mut self,
        user: UserId,
        periods: CurrentPeriods,
        amount: Decimal,
        overshoot: Decimal,
    ) {
        for scope in [LimitScope::Organization, LimitScope::User(user)] {
            for key in [periods.daily, periods.monthly] {
                *self.used.entry((scope, key)).or_default() += amount;
                *self.allowance.entry((scope, key)).or_default() += overshoot;
            }
        }
        self.committed += amount;
    }
}

// ---- amounts and periods -----------------------------------------------------

/// Whether the facade accepts `amount`: zero or more, at most
/// [`MAX_AMOUNT`].
pub(super) fn valid(amount: Decimal) -> bool {
    (amount.is_zero() || amount.is_sign_positive()) && amount <= MAX_AMOUNT
}

/// Whether `a` and `b` are at most `tolerance` apart.
pub(super) fn close(a: Decimal, b: Decimal, tolerance: Decimal) -> bool {
    a.checked_sub(b).is_some_and(|d| d.abs() <= tolerance)
}

/// Whether `amount` has at most [`EXACT_SCALE`] places.
pub(super) fn fine(amount: Decimal) -> bool {
    amount.normalize().scale() <= EXACT_SCALE
}

/// `estimate × n / 255`, cut to [`EXACT_SCALE`] places towards zero: never
/// more than the estimate.
pub(super) fn share(estimate: Decimal, n: u8) -> Decimal {
    let scaled = estimate.saturating_mul(Decimal::from(n)) / Decimal::from(255);
    scaled
        .round_dp_with_strategy(EXACT_SCALE, RoundingStrategy::ToZero)
        .min(estimate)
}

/// Whether a limit of `scope` counts `user`'s usage.
pub(super) fn applies(scope: LimitScope, user: UserId) -> bool {
    scope.user().is_none_or(|u| u == user)
}

/// The period of kind `period` that `at` falls in, by its local date in
/// `tz`: computed here, not by the crate.
pub(super) fn local_key(period: Period, at: DateTime<Utc>, tz: Tz) -> PeriodKey {
    let date = at.with_timezone(&tz).date_naive();
    let start = match period {
        Period::Daily => date,
        Period::Monthly => date.with_day(1).unwrap_or(date),
    };
    PeriodKey { period, start }
}

/// The period before `key`.
pub(super) fn previous(key: PeriodKey) -> PeriodKey {
    let before = key.start.pred_opt().unwrap_or(NaiveDate::MIN);
    let start = match key.period {
        Period::Daily => before,
        Period::Monthly => before.with_day(1).unwrap_or(before),
    };
    PeriodKey { start, ..key }
}

/// Snapshot queries that together read every key in `keys`: a snapshot
/// reads one daily and one monthly period.
pub(super) fn pairs(keys: &BTreeSet<PeriodKey>) -> Vec<CurrentPeriods> {
    let daily: Vec<PeriodKey> = keys
        .iter()
        .filter(|k| k.period == Period::Daily)
        .copied()
        .collect();
    let monthly: Vec<PeriodKey> = keys
        .iter()
        .filter(|k| k.period == Period::Monthly)
        .copied()
        .collect();
    let (Some(&last_day), Some(&last_month)) = (daily.last(), monthly.last()) else {
        return Vec::new();
    };
    (0..daily.len().max(monthly.len()))
        .map(|i| CurrentPeriods {
            daily: daily.get(i).copied().unwrap_or(last_day),
            monthly: monthly.get(i).copied().unwrap_or(last_month),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_total_is_ten_to_the_22() {
        let ten = Decimal::from(10);
        assert_eq!(EXACT_TOTAL, (0..22).fold(Decimal::ONE, |p, _| p * ten));
    }

    #[test]
    fn a_share_is_at_most_the_estimate() {
        assert_eq!(share(Decimal::from(255), 1), Decimal::ONE);
        assert_eq!(share(Decimal::ONE, 255), Decimal::ONE);
        assert_eq!(share(MAX_AMOUNT, 255), MAX_AMOUNT);
        assert_eq!(share(Decimal::ONE, 128), Decimal::new(501_960, 6));
    }

    #[test]
    fn pairs_read_every_key() {
        let day = |d| PeriodKey {
            period: Period::Daily,
            start: NaiveDate::from_ymd_opt(2026, 1, d).unwrap(),
        };
        let month = PeriodKey {
            period: Period::Monthly,
            start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        };
        let keys = BTreeSet::from([day(3), day(4), day(5), month]);
        let read: BTreeSet<PeriodKey> = pairs(&keys)
            .into_iter()
            .flat_map(|p| [p.daily, p.monthly])
            .collect();
        assert_eq!(read, keys);
    }
}
