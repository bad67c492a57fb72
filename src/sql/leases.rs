//! `LeaseStore` over SQL: `tenancy_lease_budget`, one call per lease step;
//! `tenancy_reconcile_leases` and `tenancy_repair_leases`.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::args::ReconcileArgs;
use super::{Idempotent, Sql, SqlTransport, org_missing};
use crate::error::Result;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::lease::{LeaseDrift, LeaseGrant, LeaseId, LeaseRequest};
use crate::store::ReconcileQuery;

/// Arguments of `tenancy_lease_budget`.
#[derive(Debug, Serialize)]
struct LeaseArgs<'a> {
    org_id: OrgId,
    lease_id: LeaseId,
    user_id: UserId,
    metric: &'a MetricKey,
    daily_start: NaiveDate,
    monthly_start: NaiveDate,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    spoken_for: Decimal,
    want: Decimal,
    min_grant: Decimal,
    share: Decimal,
    purge_before: DateTime<Utc>,
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn lease_budget(&self, request: &LeaseRequest) -> Result<LeaseGrant> {
        request.validate()?;
        let args = LeaseArgs {
            org_id: request.org,
            lease_id: request.id,
            user_id: request.user,
            metric: &request.metric,
            daily_start: request.periods.daily.start,
            monthly_start: request.periods.monthly.start,
            now: request.now,
            expires_at: request.expires_at,
            spoken_for: request.spoken_for,
            want: request.want,
            min_grant: request.min,
            share: request.share,
            purge_before: request.purge_before,
        };
        // Idempotent: the same request again returns what the lease covered
        // beyond `spoken_for` and grants afresh against the same headroom.
        self.rpc(
            "tenancy_lease_budget",
            "leasing budget",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(org_missing(request.org))
    }

    pub(crate) async fn reconcile_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>> {
        self.rpc(
            "tenancy_reconcile_leases",
            "reconciling leases",
            Idempotent::Yes,
            &ReconcileArgs::from(query),
        )
        .await
    }

    pub(crate) async fn repair_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>> {
        // Idempotent: a retry after a repair that landed finds no drift
        // left and reports none.
        self.rpc(
            "tenancy_repair_leases",
            "repairing leases",
            Idempotent::Yes,
            &ReconcileArgs::from(query),
        )
        .await
        .map_err(org_missing(query.org))
    }
}
