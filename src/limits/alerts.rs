//! Alerts when usage approaches or passes a limit: what identifies one,
//! what it says, and which thresholds fire.
//!
//! Each threshold fires once per (organization, scope, metric, period,
//! threshold). The store records which have fired, so many
//! [`Tenancy`](crate::Tenancy) instances sharing one store still send each
//! alert once. Delivery is the facade's job ([`AlertSink`](crate::alerts::AlertSink)).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::decision::reaches_percent;

use crate::error::{Error, Result};
use crate::ids::{LimitId, MetricKey, OrgId};
use crate::limits::period::PeriodKey;
use crate::limits::policy::{LimitMode, LimitScope};

/// What identifies one alert for deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    /// The organization.
    pub org: OrgId,
    /// Org-wide or one user.
    pub scope: LimitScope,
    /// The metric.
    pub metric: MetricKey,
    /// The period the usage fell in.
    pub period: PeriodKey,
    /// The threshold crossed, in percent of the limit.
    pub threshold_percent: u32,
}

/// An alert: usage crossed a threshold of a limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitAlert {
    /// Which alert this is (also its dedupe key).
    pub key: AlertKey,
    /// The limit crossed.
    pub limit_id: LimitId,
    /// Its value.
    pub limit: Decimal,
    /// Hard or soft.
    pub mode: LimitMode,
    /// Usage recorded in the period when the alert fired.
    pub used: Decimal,
    /// When the period ends.
    pub resets_at: DateTime<Utc>,
    /// When the alert fired.
    pub fired_at: DateTime<Utc>,
}

/// Alert thresholds in percent of a limit, ascending. Default 80, 90, 100.
///
/// ```
/// use tenancy::limits::AlertThresholds;
/// assert_eq!(AlertThresholds::default().percents(), &[80, 90, 100]);
/// assert!(AlertThresholds::new([50, 100]).is_ok());
/// assert!(AlertThresholds::new([0]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertThresholds(Vec<u32>);

impl AlertThresholds {
    /// Thresholds from 1 to 1000 percent; duplicates are dropped and the
    /// rest sorted. An empty list turns alerts off.
    pub fn new(percents: impl IntoIterator<Item = u32>) -> Result<Self> {
        let mut percents: Vec<u32> = percents.into_iter().collect();
        if let Some(bad) = percents.iter().find(|p| !(1..=1000).contains(*p)) {
            return Err(Error::invalid_input(
                "alert_thresholds",
                format_args!("{bad} % is outside 1..=1000"),
            ));
        }
        percents.sort_unstable();
        percents.dedup();
        Ok(AlertThresholds(percents))
    }

    /// The thresholds, ascending.
    pub fn percents(&self) -> &[u32] {
        &self.0
    }

    /// The lowest threshold, where a [`LimitLevel`](crate::limits::LimitLevel)
    /// becomes `Warning`; 100 when there are none.
    pub fn warning_percent(&self) -> Decimal {
        Decimal::from(self.0.first().copied().unwrap_or(100))
    }

    /// The thresholds `used` has reached against `limit`.
    pub(crate) fn crossed(&self, used: Decimal, limit: Decimal) -> impl Iterator<Item = u32> + '_ {
        self.0
            .iter()
            .copied()
            .filter(move |&p| reaches_percent(used, limit, Decimal::from(p)))
    }
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds(vec![80, 90, 100])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn crossed_thresholds() {
        let t = AlertThresholds::default();
        assert_eq!(t.crossed(dec!(79), dec!(100)).count(), 0);
        assert_eq!(t.crossed(dec!(80), dec!(100)).collect::<Vec<_>>(), vec![80]);
        assert_eq!(
            t.crossed(dec!(150), dec!(100)).collect::<Vec<_>>(),
            vec![80, 90, 100]
        );
        // A zero limit is crossed by any usage, and not by none.
        assert_eq!(t.crossed(dec!(1), dec!(0)).count(), 3);
        assert_eq!(t.crossed(dec!(0), dec!(0)).count(), 0);
    }

    #[test]
    fn thresholds_validate_and_sort() {
        assert_eq!(
            AlertThresholds::new([100, 50, 50]).unwrap().percents(),
            &[50, 100]
        );
        assert_eq!(
            AlertThresholds::new([1001]).unwrap_err().field(),
            Some("alert_thresholds")
        );
    }
}
