//! [`PlanStore`]: the plan catalog, organizations' assignments, and the
//! effective view of an organization's features and limits.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::plan::EntitlementChange;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ plan_store_methods {
    fn put_plan_version(plan: &crate::model::plan::NewPlanVersion, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::model::plan::PlanVersion>;
    fn plan_versions(key: Option<&crate::ids::PlanKey>) -> crate::error::Result<Vec<crate::model::plan::PlanVersion>>;
    fn plan_version(plan: &crate::model::plan::PlanRef) -> crate::error::Result<Option<crate::model::plan::PlanVersion>>;
    fn assign_plan(request: &crate::model::plan::AssignPlan) -> crate::error::Result<crate::model::plan::PlanAssignment>;
    fn plan_assignment(org: crate::ids::OrgId) -> crate::error::Result<Option<crate::model::plan::PlanAssignment>>;
    fn unassign_plan(org: crate::ids::OrgId) -> crate::error::Result<bool>;
    fn migrate_plan(request: &crate::model::plan::MigratePlan) -> crate::error::Result<u64>;
    fn entitlements(org: crate::ids::OrgId, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::model::plan::Entitlements>;
    fn entitlements_version() -> crate::error::Result<i64>;
    fn watch_entitlements() -> crate::error::Result<Option<crate::store::EntitlementWatch>>;
});

/// Plans: the operator's catalog of versioned plans, each organization's
/// assignment, and its effective entitlements.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own; those that name an organization touch only it.
#[async_trait]
pub trait PlanStore: Backend {
    /// Writes the next version of `plan.key` (1 for a new key), stamped
    /// `now`, and returns it. Versions are immutable.
    async fn put_plan_version(
        &self,
        plan: &crate::model::plan::NewPlanVersion,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::Result<crate::model::plan::PlanVersion>;

    /// Every version of one plan, or (`None`) of every plan, ordered by
    /// key, then version.
    async fn plan_versions(
        &self,
        key: Option<&crate::ids::PlanKey>,
    ) -> crate::error::Result<Vec<crate::model::plan::PlanVersion>>;

    /// One version, if it exists.
    async fn plan_version(
        &self,
        plan: &crate::model::plan::PlanRef,
    ) -> crate::error::Result<Option<crate::model::plan::PlanVersion>>;

    /// Replaces the organization's assignment (its only one) and returns
    /// it. `NotFound` if the organization, the plan version or the
    /// fallback version does not exist.
    async fn assign_plan(
        &self,
        request: &crate::model::plan::AssignPlan,
    ) -> crate::error::Result<crate::model::plan::PlanAssignment>;

    /// The organization's assignment, if it has one.
    async fn plan_assignment(
        &self,
        org: crate::ids::OrgId,
    ) -> crate::error::Result<Option<crate::model::plan::PlanAssignment>>;

    /// Removes the organization's assignment; whether it had one.
    async fn unassign_plan(&self, org: crate::ids::OrgId) -> crate::error::Result<bool>;

    /// Moves assignments on `request.from` to `request.to_version` of the
    /// same plan, and trials whose fallback is `request.from` to fall to
    /// `request.to_version`, keeping their start and trial end, in one
    /// atomic step; how many assignments changed (one that moves both
    /// counts once). Usage is untouched. `NotFound` if the target version
    /// does not exist.
    async fn migrate_plan(
        &self,
        request: &crate::model::plan::MigratePlan,
    ) -> crate::error::Result<u64>;

    /// The organization's effective entitlements at `now`, computed in one
    /// place per backend. `NotFound` if the organization does not exist.
    async fn entitlements(
        &self,
        org: crate::ids::OrgId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::Result<crate::model::plan::Entitlements>;

    /// A counter that grows with every change to any organization's
    /// entitlements (assignments, migrations, overrides), in the change's
    /// own step: a cheap read a cache polls. A new catalog version is no
    /// such change (each organization names its version, and versions
    /// never change), so it need not grow with one.
    async fn entitlements_version(&self) -> crate::error::Result<i64>;

    /// A stream of entitlement changes as they commit, where the backend
    /// can push them; `None` where it cannot (then poll
    /// [`entitlements_version`](Self::entitlements_version)).
    async fn watch_entitlements(
        &self,
    ) -> crate::error::Result<Option<crate::store::EntitlementWatch>>;
}

forward_capability!(PlanStore, plan_store_methods);

pub(crate) use plan_store_methods;

/// Entitlement changes pushed by a store, in commit order. A receiver that
/// falls behind misses some: it then sees [`EntitlementChange::All`].
#[derive(Debug)]
pub struct EntitlementWatch {
    changes: tokio::sync::broadcast::Receiver<EntitlementChange>,
}

impl EntitlementWatch {
    /// Watches `changes`.
    pub fn new(changes: tokio::sync::broadcast::Receiver<EntitlementChange>) -> Self {
        EntitlementWatch { changes }
    }

    /// The next change; `None` once the store stopped pushing.
    pub async fn next(&mut self) -> Option<EntitlementChange> {
        use tokio::sync::broadcast::error::RecvError;
        match self.changes.recv().await {
            Ok(change) => Some(change),
            Err(RecvError::Lagged(_)) => Some(EntitlementChange::All),
            Err(RecvError::Closed) => None,
        }
    }
}
