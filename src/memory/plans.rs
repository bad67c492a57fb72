//! `PlanStore` for [`MemoryStore`]: the catalog, assignments and the
//! effective view, under the one lock.
//!
//! Each organization's assignment lives on its [`Tenant`](super::tenant)
//! (with the versions it names: versions are immutable, so an `Arc` is
//! shared), so that the store's own reads of limits compute the effective
//! view without a lookup, and deleting the organization drops it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::ids::{LimitId, OrgId, PlanKey};
use crate::limits::entitlements::{self, Overrides};
use crate::model::plan::{
    AssignPlan, EntitlementChange, Entitlements, MigratePlan, NewPlanVersion, PlanAssignment,
    PlanRef, PlanVersion,
};
use crate::store::{EntitlementWatch, PlanStore, org_not_found};

use super::MemoryStore;
use super::audit::time;
use super::tenant::State;

/// How many changes a watcher may fall behind before it sees
/// [`EntitlementChange::All`].
const WATCH_CAPACITY: usize = 1024;

/// The catalog, the entitlements version and the watchers.
#[derive(Debug)]
pub(super) struct PlanState {
    /// Every version of every plan, by key, in version order (version `n`
    /// at index `n - 1`).
    catalog: BTreeMap<PlanKey, Vec<Arc<PlanVersion>>>,
    /// Grows with every change to any organization's entitlements.
    version: i64,
    /// Where changes are pushed.
    changes: broadcast::Sender<EntitlementChange>,
    /// Calls of `entitlements`, for tests that count round trips.
    calls: u64,
}

impl Default for PlanState {
    fn default() -> Self {
        PlanState {
            catalog: BTreeMap::new(),
            version: 0,
            changes: broadcast::channel(WATCH_CAPACITY).0,
            calls: 0,
        }
    }
}

impl PlanState {
    fn get(&self, plan: &PlanRef) -> Option<&Arc<PlanVersion>> {
        let index = usize::try_from(plan.version).ok()?.checked_sub(1)?;
        self.catalog.get(&plan.key)?.get(index)
    }
}

#[cfg(feature = "test-util")]
impl MemoryStore {
    /// How many calls of [`PlanStore::entitlements`] this store has
    /// answered (feature `test-util`): what a test counts the loads of the
    /// effective view by.
    pub fn entitlement_calls(&self) -> u64 {
        self.lock().plans.calls
    }
}

/// An organization's assignment, with the versions it names.
#[derive(Debug, Clone)]
pub(super) struct TenantPlan {
    pub(super) assignment: PlanAssignment,
    version: Arc<PlanVersion>,
    fallback: Option<Arc<PlanVersion>>,
}

impl TenantPlan {
    /// The plan version in effect at `now` (the fallback once the trial
    /// ended; `None` then without one).
    pub(super) fn at(&self, now: DateTime<Utc>) -> Option<&PlanVersion> {
        match entitlements::plan_in_effect(&self.assignment, now) {
            Some(p) if *p == self.assignment.plan => Some(&self.version),
            Some(_) => self.fallback.as_deref(),
            None => None,
        }
    }
}

impl State {
    /// Records a change to entitlements: bumps the version and tells the
    /// watchers. Call it in the same locked section as the change.
    pub(super) fn entitlements_changed(&mut self, change: EntitlementChange) {
        self.plans.version += 1;
        // No receiver is not an error: nobody watches.
        let _ = self.plans.changes.send(change);
    }

    /// The effective view of `org` at `now`.
    pub(super) fn entitlements(&self, org: OrgId, now: DateTime<Utc>) -> Result<Entitlements> {
        let tenant = self.tenant(org).ok_or_else(|| org_not_found(org))?;
        let plan = tenant.plan.as_ref();
        let features: Vec<_> = tenant.features.values().cloned().collect();
        let rate_limits = self.rate_limits.rows(org);
        Ok(entitlements::effective(
            org,
            plan.map(|p| &p.assignment),
            plan.and_then(|p| p.at(now)),
            Overrides {
                features: &features,
                limits: &tenant.limits,
                rate_limits,
            },
            now,
        ))
    }

    fn resolve(&self, plan: &PlanRef, field: &'static str) -> Result<Arc<PlanVersion>> {
        self.plans.get(plan).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "{field}: {} version {} not found",
                plan.key, plan.version
            ))
        })
    }
}

/// An `org_plans` row, as the SQL audit trigger writes it.
fn assignment_row(a: &PlanAssignment) -> Value {
    json!({
        "organization_id": a.org,
        "plan_key": a.plan.key.as_str(),
        "version": a.plan.version,
        "started_at": time(a.started_at),
        "trial_ends_at": a.trial_ends_at.map(time),
        "fallback_key": a.fallback.as_ref().map(|f| f.key.as_str()),
        "fallback_version": a.fallback.as_ref().map(|f| f.version),
    })
}

/// The audit event of a change to one organization's assignment (entity
/// `plan`, target the plan key, as the SQL trigger on `org_plans`).
fn audit_assignment(
    state: &mut State,
    before: Option<&PlanAssignment>,
    after: Option<&PlanAssignment>,
    at: Option<DateTime<Utc>>,
) {
    let Some(a) = after.or(before) else { return };
    state.audit.write(
        a.org,
        "plan",
        a.plan.key.to_string(),
        before.map(assignment_row),
        after.map(assignment_row),
        at,
    );
}

/// What deleting an organization does to its plan, as the SQL cascade on
/// `org_plans` does: the assignment goes, an audit event says so, and
/// watchers hear of it.
pub(super) fn delete_organization(state: &mut State, tenant: &super::tenant::Tenant) {
    if let Some(plan) = &tenant.plan {
        audit_assignment(state, Some(&plan.assignment), None, None);
    }
    state.entitlements_changed(EntitlementChange::Org(tenant.org.id));
}

/// The nil organization id, under which catalog events are written (the
/// catalog belongs to no organization).
fn catalog_org() -> OrgId {
    OrgId::from(uuid::Uuid::nil())
}

#[async_trait]
impl PlanStore for MemoryStore {
    async fn put_plan_version(
        &self,
        plan: &NewPlanVersion,
        now: DateTime<Utc>,
    ) -> Result<PlanVersion> {
        let mut state = self.lock();
        let versions = state.plans.catalog.entry(plan.key.clone()).or_default();
        let number = u32::try_from(versions.len() + 1)
            .map_err(|_| Error::invalid_input("plan_key", "too many versions"))?;
        // Entry ids are fresh per version, even for the same request twice.
        let mut limits = plan.limits.clone();
        limits.iter_mut().for_each(|l| l.id = LimitId::new_v7());
        let mut rate_limits = plan.rate_limits.clone();
        rate_limits
            .iter_mut()
            .for_each(|l| l.id = LimitId::new_v7());
        let version = PlanVersion {
            plan: PlanRef {
                key: plan.key.clone(),
                version: number,
            },
            name: plan.name.clone(),
            features: plan.features.clone(),
            limits,
            rate_limits,
            created_at: now,
        };
        versions.push(Arc::new(version.clone()));
        let mut after = serde_json::to_value(&version).unwrap_or(Value::Null);
        after["created_at"] = Value::String(time(now));
        state.audit.write(
            catalog_org(),
            "plan_version",
            format!("{}:{}", version.plan.key, number),
            None,
            Some(after),
            Some(now),
        );
        // No change notice: a new version changes no organization's view
        // (each names its version, and versions never change).
        Ok(version)
    }

    async fn plan_versions(&self, key: Option<&PlanKey>) -> Result<Vec<PlanVersion>> {
        let state = self.lock();
        let catalog = &state.plans.catalog;
        let versions = match key {
            Some(key) => catalog.get(key).into_iter().flatten().collect::<Vec<_>>(),
            None => catalog.values().flatten().collect(),
        };
        Ok(versions.into_iter().map(|v| (**v).clone()).collect())
    }

    async fn plan_version(&self, plan: &PlanRef) -> Result<Option<PlanVersion>> {
        let state = self.lock();
        Ok(state.plans.get(plan).map(|v| (**v).clone()))
    }

    async fn assign_plan(&self, request: &AssignPlan) -> Result<PlanAssignment> {
        let mut state = self.lock();
        let org = request.org;
        if state.tenant(org).is_none() {
            return Err(org_not_found(org));
        }
        let version = state.resolve(&request.plan, "plan")?;
        let fallback = match &request.fallback {
            Some(fallback) => Some(state.resolve(fallback, "fallback")?),
            None => None,
        };
        let assignment = PlanAssignment {
            org,
            plan: request.plan.clone(),
            started_at: request.now,
            trial_ends_at: request.trial_ends_at,
            fallback: request.fallback.clone(),
        };
        let tenant = state.tenant_mut(org)?;
        let before = tenant.plan.replace(TenantPlan {
            assignment: assignment.clone(),
            version,
            fallback,
        });
        let before = before.map(|p| p.assignment);
        audit_assignment(
            &mut state,
            before.as_ref(),
            Some(&assignment),
            Some(request.now),
        );
        state.entitlements_changed(EntitlementChange::Org(org));
        Ok(assignment)
    }

    async fn plan_assignment(&self, org: OrgId) -> Result<Option<PlanAssignment>> {
        let state = self.lock();
        Ok(state
            .tenant(org)
            .and_then(|t| t.plan.as_ref())
            .map(|p| p.assignment.clone()))
    }

    async fn unassign_plan(&self, org: OrgId) -> Result<bool> {
        let mut state = self.lock();
        let Ok(tenant) = state.tenant_mut(org) else {
            return Ok(false);
        };
        let Some(removed) = tenant.plan.take() else {
            return Ok(false);
        };
        audit_assignment(&mut state, Some(&removed.assignment), None, None);
        state.entitlements_changed(EntitlementChange::Org(org));
        Ok(true)
    }

    async fn migrate_plan(&self, request: &MigratePlan) -> Result<u64> {
        let mut state = self.lock();
        let to = request.to();
        let target = state.resolve(&to, "to_version")?;
        let mut moved: Vec<(PlanAssignment, PlanAssignment)> = Vec::new();
        for (org, tenant) in state.tenants.iter_mut() {
            if request.org.is_some_and(|o| o != *org) {
                continue;
            }
            let Some(plan) = tenant.plan.as_mut() else {
                continue;
            };
            let before = plan.assignment.clone();
            // The plan, and a trial's fallback, on the version both move.
            if plan.assignment.plan == request.from {
                plan.assignment.plan = to.clone();
                plan.version = Arc::clone(&target);
            }
            if plan.assignment.fallback.as_ref() == Some(&request.from) {
                plan.assignment.fallback = Some(to.clone());
                plan.fallback = Some(Arc::clone(&target));
            }
            if plan.assignment != before {
                moved.push((before, plan.assignment.clone()));
            }
        }
        moved.sort_by_key(|(a, _)| a.org);
        for (before, after) in &moved {
            audit_assignment(&mut state, Some(before), Some(after), None);
        }
        // As the SQL trigger: one organization moved is announced as it,
        // whichever request moved it.
        match moved.as_slice() {
            [] => {}
            [(only, _)] => state.entitlements_changed(EntitlementChange::Org(only.org)),
            _ => state.entitlements_changed(EntitlementChange::All),
        }
        Ok(moved.len() as u64)
    }

    async fn entitlements(&self, org: OrgId, now: DateTime<Utc>) -> Result<Entitlements> {
        let mut state = self.lock();
        state.plans.calls += 1;
        state.entitlements(org, now)
    }

    async fn entitlements_version(&self) -> Result<i64> {
        Ok(self.lock().plans.version)
    }

    async fn watch_entitlements(&self) -> Result<Option<EntitlementWatch>> {
        let state = self.lock();
        Ok(Some(EntitlementWatch::new(state.plans.changes.subscribe())))
    }
}
