//! Usage against limits, as a page shows it.

use chrono_tz::Tz;

use super::Tenancy;
use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::limits::{CurrentPeriods, UsageLine, usage_lines};
use crate::model::{Action, TenantContext};
use crate::store::UsageQuery;

impl Tenancy {
    /// Usage against limits for the user's page: one line per metric,
    /// period and scope (org-wide and the user's own) that has a limit or
    /// usage in the current period.
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
}
