//! Plans through the facade: the operator's catalog and assignments (on
//! [`Operator`](super::Operator)), and what a member reads: the
//! organization's plan, its effective entitlements and `explain`.
//!
//! The model, the mid-period rules and an example are in
//! [`model::plan`](crate::model::plan).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::alerts::AlertCheck;
use super::{Operator, Tenancy};
use crate::error::{Error, Result};
use crate::ids::{OrgId, PlanKey};
use crate::limits::CurrentPeriods;
use crate::limits::entitlements::{explain, for_user};
use crate::model::plan::{
    AssignPlan, Entitlement, Entitlements, Explanation, MigratePlan, NewPlanVersion,
    PlanAssignment, PlanRef, PlanVersion,
};
use crate::model::{Action, TenantContext};
use crate::store::PlanStore;

impl Tenancy {
    /// The active organization's plan assignment (plan version, start,
    /// trial end and fallback), if it has one. Any role may read it; a
    /// context is for one organization, so nobody reads another
    /// organization's plan through it.
    pub async fn plan(&self, ctx: &TenantContext) -> Result<Option<PlanAssignment>> {
        ctx.require(Action::ViewOrganization)?;
        self.inner.store.plan_assignment(ctx.org()).await
    }

    /// The active organization's effective entitlements now, read fresh
    /// from the store: its plan version's features and limits with its
    /// unexpired overrides on top, each with its source. Per-user limits
    /// and rate limits are those of the context's user only, and
    /// `valid_until` is taken over the rows shown, never another user's
    /// override's expiry. Any role may read them.
    pub async fn entitlements(&self, ctx: &TenantContext) -> Result<Entitlements> {
        ctx.require(Action::ViewOrganization)?;
        let now = self.now();
        let entitlements = self.inner.store.entitlements(ctx.org(), now).await?;
        Ok(for_user(entitlements, ctx.user(), now))
    }

    /// Where the active organization's `what` comes from now: its effective
    /// value with its source — the plan version, an override (with when it
    /// lapses), or the default (`value` and `source` `None`: a feature off,
    /// no limit) — and the plan version in effect and trial end, if any.
    /// Any role may ask. Limits and rate limits are the org-wide ones.
    ///
    /// ```
    /// use tenancy::model::plan::{Entitlement, EntitlementSource, NewPlanVersion};
    /// use tenancy::{FeatureKey, MemoryStore, NewOrganization, PlanKey, PlatformOperator, Tenancy, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let operator = PlatformOperator::new("billing");
    /// let ops = tenancy.operator(&operator);
    /// let exports = FeatureKey::parse("exports")?;
    /// let pro = ops.create_plan_version(
    ///     NewPlanVersion::new(PlanKey::parse("pro")?, "Pro")?.feature(exports.clone(), true)?,
    /// ).await?;
    /// let alice = UserId::new_v7();
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// ops.assign_plan(org.id, pro.plan.clone()).await?;
    ///
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// let why = tenancy.explain(&ctx, Entitlement::Feature { key: exports }).await?;
    /// assert_eq!(why.source, Some(EntitlementSource::Plan { plan: pro.plan.clone() }));
    ///
    /// let audit = tenancy.explain(&ctx, Entitlement::Feature { key: FeatureKey::parse("audit")? }).await?;
    /// assert!(audit.is_default() && audit.value.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn explain(&self, ctx: &TenantContext, what: Entitlement) -> Result<Explanation> {
        ctx.require(Action::ViewOrganization)?;
        let now = self.now();
        let entitlements = self.inner.store.entitlements(ctx.org(), now).await?;
        Ok(explain(&entitlements, &what, now))
    }

    /// Queues a check of `org`'s org-wide alert thresholds in its current
    /// periods: after an entitlement change, so a new limit already below
    /// usage alerts at once (once per limit and period, as every alert).
    async fn check_thresholds_after_change(&self, org: OrgId) {
        if !self.inner.alerts.enabled() {
            return;
        }
        let tz = match self.cached_org(org).await {
            Ok(organization) => organization.timezone,
            Err(error) => {
                tracing::warn!(%error, %org, "no threshold check after a plan change");
                return;
            }
        };
        let check = AlertCheck {
            org,
            user: None,
            periods: CurrentPeriods::at(self.now(), tz),
        };
        self.inner.alerts.enqueue(HashMap::from([(check, tz)]));
    }
}

impl Operator<'_> {
    /// Writes the next version of `plan`'s key (version 1 for a new key)
    /// and returns it, stamped now. Versions never change afterwards: no
    /// organization moves to the new one until
    /// [`migrate_plan`](Self::migrate_plan) (or an assignment) puts it
    /// there. Audited.
    ///
    /// ```
    /// use tenancy::model::plan::NewPlanVersion;
    /// use tenancy::{MemoryStore, NewLimit, PlanKey, PlatformOperator, Tenancy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let operator = PlatformOperator::new("billing");
    /// let ops = tenancy.operator(&operator);
    /// let pro = PlanKey::parse("pro")?;
    /// let tokens = |n: u32| NewLimit::from_limit_type("monthly_tokens", n.into());
    /// let v1 = ops.create_plan_version(NewPlanVersion::new(pro.clone(), "Pro")?.limit(tokens(100_000)?)?).await?;
    /// let v2 = ops.create_plan_version(NewPlanVersion::new(pro.clone(), "Pro")?.limit(tokens(200_000)?)?).await?;
    /// assert_eq!((v1.plan.version, v2.plan.version), (1, 2));
    /// assert_eq!(ops.plan_versions(Some(&pro)).await?.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn create_plan_version(&self, plan: NewPlanVersion) -> Result<PlanVersion> {
        let now = self.tenancy.now();
        let put = self.tenancy.inner.store.put_plan_version(&plan, now);
        let stored = self.audited(put).await?;
        tracing::info!(operator = self.operator.name(), plan = %stored.plan.key,
            version = stored.plan.version, "plan version created");
        Ok(stored)
    }

    /// Every version of plan `key`, or (`None`) of every plan, ordered by
    /// key, then version.
    pub async fn plan_versions(&self, key: Option<&PlanKey>) -> Result<Vec<PlanVersion>> {
        self.tenancy.inner.store.plan_versions(key).await
    }

    /// One plan version, if it exists.
    pub async fn plan_version(&self, plan: &PlanRef) -> Result<Option<PlanVersion>> {
        self.tenancy.inner.store.plan_version(plan).await
    }

    /// `org`'s plan assignment, if it has one.
    pub async fn plan(&self, org: OrgId) -> Result<Option<PlanAssignment>> {
        self.tenancy.inner.store.plan_assignment(org).await
    }

    /// Puts `org` on `plan` from now, with no trial, replacing its current
    /// assignment. Usage so far in the period counts against the new
    /// limits from the next call on (see [Changing plan
    /// mid-period](crate::model::plan#changing-plan-mid-period)); this instance's caches
    /// see it at once. `NotFound` if the organization or the version does
    /// not exist. Audited.
    pub async fn assign_plan(&self, org: OrgId, plan: PlanRef) -> Result<PlanAssignment> {
        let request = AssignPlan::new(org, plan, self.tenancy.now());
        self.assign(request).await
    }

    /// Puts `org` on `plan` from now until `ends_at`, then on `fallback`
    /// (`None`: on no plan), with no job run: every read from `ends_at` on
    /// sees the fallback, cached or not. `InvalidInput` naming
    /// `trial_ends_at` if `ends_at` is not after now; `NotFound` if the
    /// organization or either version does not exist. Audited.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chrono::{TimeDelta, TimeZone, Utc};
    /// use tenancy::clock::{Clock, FakeClock};
    /// use tenancy::model::plan::NewPlanVersion;
    /// use tenancy::{FeatureKey, MemoryStore, NewOrganization, PlanKey, PlatformOperator, Tenancy, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let clock = FakeClock::new(Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap());
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).clock(clock.clone()).build()?;
    /// let operator = PlatformOperator::new("billing");
    /// let ops = tenancy.operator(&operator);
    /// let exports = FeatureKey::parse("exports")?;
    /// let free = ops.create_plan_version(NewPlanVersion::new(PlanKey::parse("free")?, "Free")?).await?;
    /// let pro = ops.create_plan_version(
    ///     NewPlanVersion::new(PlanKey::parse("pro")?, "Pro")?.feature(exports.clone(), true)?,
    /// ).await?;
    /// let alice = UserId::new_v7();
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let ends = clock.now() + TimeDelta::days(14);
    /// ops.start_trial(org.id, pro.plan.clone(), ends, free.plan.clone()).await?;
    ///
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// assert!(tenancy.has_feature(&ctx, &exports).await?);
    /// clock.advance(Duration::from_secs(14 * 24 * 3600));
    /// assert!(!tenancy.has_feature(&ctx, &exports).await?, "on free from the trial's end");
    /// # Ok(()) }
    /// ```
    pub async fn start_trial(
        &self,
        org: OrgId,
        plan: PlanRef,
        ends_at: DateTime<Utc>,
        fallback: impl Into<Option<PlanRef>>,
    ) -> Result<PlanAssignment> {
        let now = self.tenancy.now();
        if ends_at <= now {
            return Err(Error::invalid_input(
                "trial_ends_at",
                format_args!("{ends_at} is not after now ({now})"),
            ));
        }
        let request = AssignPlan::new(org, plan, now).trial(ends_at, fallback);
        self.assign(request).await
    }

    async fn assign(&self, request: AssignPlan) -> Result<PlanAssignment> {
        let org = request.org;
        let assigned = self
            .audited(self.tenancy.inner.store.assign_plan(&request))
            .await;
        // Even on error: the write may have landed.
        self.tenancy.check_thresholds_after_change(org).await;
        let assigned = assigned?;
        tracing::info!(operator = self.operator.name(), %org, plan = %assigned.plan.key,
            version = assigned.plan.version, trial_ends_at = ?assigned.trial_ends_at,
            "plan assigned");
        Ok(assigned)
    }

    /// Moves organizations on `request.from` to another version of the
    /// same plan — one organization ([`MigratePlan::org`]) or all of them —
    /// in one atomic step, keeping their start and trial end; a trial whose
    /// fallback is `request.from` falls to the new version instead, so no
    /// organization lands on the old version later. Returns how many
    /// assignments changed. Usage is untouched; the new version's limits apply to
    /// the period's usage so far from the next call on. `NotFound` if the
    /// target version does not exist. Audited.
    pub async fn migrate_plan(&self, request: MigratePlan) -> Result<u64> {
        let moved = self
            .audited(self.tenancy.inner.store.migrate_plan(&request))
            .await;
        if let Some(org) = request.org {
            self.tenancy.check_thresholds_after_change(org).await;
        }
        tracing::info!(operator = self.operator.name(), from = %request.from.key,
            from_version = request.from.version, to_version = request.to_version,
            org = ?request.org, moved = ?moved.as_ref().ok(), "plan migrated");
        moved
    }

    /// Removes `org`'s plan assignment: from now on its own unexpired rows
    /// alone are its entitlements. Whether it had one. Audited.
    pub async fn remove_plan(&self, org: OrgId) -> Result<bool> {
        let removed = self
            .audited(self.tenancy.inner.store.unassign_plan(org))
            .await;
        self.tenancy.check_thresholds_after_change(org).await;
        tracing::info!(operator = self.operator.name(), %org,
            removed = ?removed.as_ref().ok(), "plan removed");
        removed
    }

    /// `org`'s effective entitlements now (every scope), read fresh from
    /// the store. `NotFound` for an unknown organization.
    pub async fn entitlements(&self, org: OrgId) -> Result<Entitlements> {
        self.tenancy.inner.store.fresh_entitlements(org).await
    }

    /// Where `org`'s `what` comes from now, as
    /// [`Tenancy::explain`](crate::Tenancy::explain) says it for a member.
    /// `NotFound` for an unknown organization.
    pub async fn explain(&self, org: OrgId, what: Entitlement) -> Result<Explanation> {
        let now = self.tenancy.now();
        let entitlements = self.tenancy.inner.store.entitlements(org, now).await?;
        Ok(explain(&entitlements, &what, now))
    }
}
