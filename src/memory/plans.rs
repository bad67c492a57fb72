//! `PlanStore` for [`MemoryStore`]: the catalog, assignments and the
//! effective view, under the one lock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ids::{OrgId, PlanKey};
use crate::model::plan::{
    AssignPlan, Entitlements, MigratePlan, NewPlanVersion, PlanAssignment, PlanRef, PlanVersion,
};
use crate::store::{EntitlementWatch, PlanStore};

use super::MemoryStore;

/// The catalog and every organization's assignment.
#[derive(Debug, Default)]
pub(super) struct PlanState {}

fn not_yet() -> Error {
    Error::new(
        crate::error::ErrorKind::Unsupported,
        "plans are not implemented on MemoryStore yet",
    )
}

#[async_trait]
impl PlanStore for MemoryStore {
    async fn put_plan_version(
        &self,
        _plan: &NewPlanVersion,
        _now: DateTime<Utc>,
    ) -> Result<PlanVersion> {
        Err(not_yet())
    }

    async fn plan_versions(&self, _key: Option<&PlanKey>) -> Result<Vec<PlanVersion>> {
        Err(not_yet())
    }

    async fn plan_version(&self, _plan: &PlanRef) -> Result<Option<PlanVersion>> {
        Err(not_yet())
    }

    async fn assign_plan(&self, _request: &AssignPlan) -> Result<PlanAssignment> {
        Err(not_yet())
    }

    async fn plan_assignment(&self, _org: OrgId) -> Result<Option<PlanAssignment>> {
        Err(not_yet())
    }

    async fn unassign_plan(&self, _org: OrgId) -> Result<bool> {
        Err(not_yet())
    }

    async fn migrate_plan(&self, _request: &MigratePlan) -> Result<u64> {
        Err(not_yet())
    }

    async fn entitlements(&self, _org: OrgId, _now: DateTime<Utc>) -> Result<Entitlements> {
        Err(not_yet())
    }

    async fn entitlements_version(&self) -> Result<i64> {
        Err(not_yet())
    }

    async fn watch_entitlements(&self) -> Result<Option<EntitlementWatch>> {
        Err(not_yet())
    }
}
