//! `PlanStore` over SQL: the catalog tables and the effective view of
//! `migrations/20261206001200_tenancy_plans.sql`.

use chrono::{DateTime, Utc};

use super::{Sql, SqlTransport};
use crate::error::{Error, Result};
use crate::ids::{OrgId, PlanKey};
use crate::model::plan::{
    AssignPlan, Entitlements, MigratePlan, NewPlanVersion, PlanAssignment, PlanRef, PlanVersion,
};
use crate::store::EntitlementWatch;

fn not_yet() -> Error {
    Error::new(
        crate::error::ErrorKind::Unsupported,
        "plans are not implemented on the SQL store yet",
    )
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn put_plan_version(
        &self,
        _plan: &NewPlanVersion,
        _now: DateTime<Utc>,
    ) -> Result<PlanVersion> {
        Err(not_yet())
    }

    pub(crate) async fn plan_versions(&self, _key: Option<&PlanKey>) -> Result<Vec<PlanVersion>> {
        Err(not_yet())
    }

    pub(crate) async fn plan_version(&self, _plan: &PlanRef) -> Result<Option<PlanVersion>> {
        Err(not_yet())
    }

    pub(crate) async fn assign_plan(&self, _request: &AssignPlan) -> Result<PlanAssignment> {
        Err(not_yet())
    }

    pub(crate) async fn plan_assignment(&self, _org: OrgId) -> Result<Option<PlanAssignment>> {
        Err(not_yet())
    }

    pub(crate) async fn unassign_plan(&self, _org: OrgId) -> Result<bool> {
        Err(not_yet())
    }

    pub(crate) async fn migrate_plan(&self, _request: &MigratePlan) -> Result<u64> {
        Err(not_yet())
    }

    pub(crate) async fn entitlements(
        &self,
        _org: OrgId,
        _now: DateTime<Utc>,
    ) -> Result<Entitlements> {
        Err(not_yet())
    }

    pub(crate) async fn entitlements_version(&self) -> Result<i64> {
        Err(not_yet())
    }

    pub(crate) async fn watch_entitlements(&self) -> Result<Option<EntitlementWatch>> {
        Err(not_yet())
    }
}
