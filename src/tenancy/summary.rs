//! Usage as pages and reports show it: against limits, over time, and by
//! member.

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::Tenancy;
use crate::error::{Error, Result};
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::{CurrentPeriods, Period, PeriodKey, UsageLine, usage_lines};
use crate::model::{Action, TenantContext};
use crate::store::MeteringStore;
use crate::store::{CounterScope, CounterValue, HistoryQuery, UsageQuery};

/// The longest span a history read covers: 400 periods (a little over a
/// year of days).
pub const MAX_HISTORY_PERIODS: i64 = 400;

/// One member's usage of a metric in a period, for a top-users list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberUsage {
    /// The member.
    pub user: UserId,
    /// Their recorded usage in the period.
    pub used: Decimal,
}

/// Checks a history span: `from` not after `to`, and at most
/// [`MAX_HISTORY_PERIODS`] periods; `InvalidInput` naming `to` otherwise.
fn check_span(period: Period, from: NaiveDate, to: NaiveDate) -> Result<()> {
    let month_number = |d: NaiveDate| i64::from(d.year()) * 12 + i64::from(d.month0());
    let periods = match period {
        Period::Daily => (to - from).num_days() + 1,
        Period::Monthly => month_number(to) - month_number(from) + 1,
    };
    if from > to || periods > MAX_HISTORY_PERIODS {
        return Err(Error::invalid_input(
            "to",
            format_args!(
                "{from}..={to} must run forwards and span at most {MAX_HISTORY_PERIODS} periods"
            ),
        ));
    }
    Ok(())
}

impl Tenancy {
    /// Usage against limits for the user's page: one line per metric,
    /// period and scope (org-wide and the user's own) that has a limit or
    /// usage in the current period. The limits are the effective ones: the
    /// organization's plan's, with its unexpired overrides on top (where
    /// each comes from: [`explain`](Self::explain)). After a plan change,
    /// the period's usage so far is shown against the new limits.
    pub async fn usage_summary(&self, ctx: &TenantContext) -> Result<Vec<UsageLine>> {
        ctx.require(Action::ViewUsage)?;
        let tz = ctx.organization().timezone;
        self.summary_lines(ctx.org(), Some(ctx.user()), tz).await
    }

    /// The lines of `org` (org-wide, plus `user`'s own) in the current
    /// periods of `tz`.
    pub(super) async fn summary_lines(
        &self,
        org: OrgId,
        user: Option<UserId>,
        tz: Tz,
    ) -> Result<Vec<UsageLine>> {
        let now = self.now();
        let query = UsageQuery {
            org,
            user,
            metric: None,
            periods: CurrentPeriods::at(now, tz),
            now,
        };
        let snapshot = self.inner.store.usage_snapshot(&query).await?;
        Ok(usage_lines(snapshot, tz, self.warning_percent()))
    }

    /// The organization-wide usage of each metric (or just `metric`) per
    /// period, for periods starting from `from` to `to` (both included, at
    /// most [`MAX_HISTORY_PERIODS`]): what a chart of the month draws. Needs
    /// [`ViewUsage`](Action::ViewUsage). Periods without usage are absent.
    pub async fn usage_history(
        &self,
        ctx: &TenantContext,
        metric: Option<&str>,
        period: Period,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CounterValue>> {
        ctx.require(Action::ViewUsage)?;
        self.history(
            ctx.org(),
            CounterScope::Organization,
            metric,
            period,
            from,
            to,
        )
        .await
    }

    /// The members who used the most of `metric` in the current `period`,
    /// most first, at most `limit` of them. Needs
    /// [`ViewMemberUsage`](Action::ViewMemberUsage) (admins and owners):
    /// other members' usage is not every member's to see.
    pub async fn top_users(
        &self,
        ctx: &TenantContext,
        metric: &str,
        period: Period,
        limit: usize,
    ) -> Result<Vec<MemberUsage>> {
        ctx.require(Action::ViewMemberUsage)?;
        let key = PeriodKey::containing(period, self.now(), ctx.organization().timezone);
        let values = self
            .history(
                ctx.org(),
                CounterScope::EachUser,
                Some(metric),
                period,
                key.start,
                key.start,
            )
            .await?;
        let mut members: Vec<MemberUsage> = values
            .into_iter()
            .filter_map(|v| {
                v.scope
                    .user()
                    .map(|user| MemberUsage { user, used: v.used })
            })
            .collect();
        members.sort_by(|a, b| b.used.cmp(&a.used).then(a.user.cmp(&b.user)));
        members.truncate(limit);
        Ok(members)
    }

    pub(super) async fn history(
        &self,
        org: OrgId,
        scope: CounterScope,
        metric: Option<&str>,
        period: Period,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CounterValue>> {
        check_span(period, from, to)?;
        let metric = metric.map(MetricKey::parse).transpose()?;
        let query = HistoryQuery {
            org,
            scope,
            metric,
            period,
            from,
            to,
        };
        self.inner.store.usage_history(&query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_span_counts_whole_periods_up_to_the_maximum() {
        // 400 days, and 400 months (January 2000 to April 2033).
        assert!(check_span(Period::Daily, date(2026, 1, 1), date(2027, 2, 4)).is_ok());
        assert!(check_span(Period::Daily, date(2026, 1, 1), date(2027, 2, 5)).is_err());
        assert!(check_span(Period::Monthly, date(2000, 1, 1), date(2033, 4, 1)).is_ok());
        assert!(check_span(Period::Monthly, date(2000, 1, 1), date(2033, 5, 1)).is_err());
        assert!(check_span(Period::Monthly, date(2026, 3, 1), date(2026, 3, 1)).is_ok());
        let backwards = check_span(Period::Daily, date(2026, 3, 2), date(2026, 3, 1));
        assert_eq!(
            backwards.unwrap_err().kind(),
            crate::error::ErrorKind::InvalidInput
        );
    }
}
