//! Claiming alerts over SQL.

use chrono::{DateTime, Utc};

use super::args::{ClaimAlertArgs, Claimed};
use super::{Idempotent, Sql, SqlTransport, org_missing};
use crate::error::Result;
use crate::limits::AlertKey;

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn claim_alert(
        &self,
        key: &AlertKey,
        fired_at: DateTime<Utc>,
    ) -> Result<bool> {
        let args = ClaimAlertArgs {
            org_id: key.org,
            metric: &key.metric,
            period: key.period.period,
            period_start: key.period.start,
            threshold_percent: key.threshold_percent,
            fired_at,
            user_id: key.scope.user(),
        };
        // Not retried after an ambiguous failure: a retry would read its
        // own first claim as someone else's.
        let claimed: Claimed = self
            .rpc(
                "tenancy_claim_alert",
                "claiming an alert",
                Idempotent::No,
                &args,
            )
            .await
            .map_err(org_missing(key.org))?;
        Ok(claimed.claimed)
    }
}
