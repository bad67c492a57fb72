//! The platform operator's handle: administration of any organization.

use serde::Serialize;

use super::Tenancy;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{FeatureKey, LimitId, MetricKey, OrgId, UserId};
use chrono::NaiveDate;

use crate::limits::{Limit, NewLimit, Period, PeriodKey, UsageLine};
use crate::model::{Feature, FeatureChange, Membership, Organization, PlatformOperator, Role};
use crate::store::{
    CounterDrift, CounterScope, CounterValue, FeatureStore, LimitStore, MemberStore, MeteringStore,
    OrgQuery, OrgStore, ReconcileQuery,
};

/// The most organizations one [`Operator::organizations`] page returns.
pub const MAX_ORG_PAGE: usize = 500;

/// What the platform operator does: keep the plan catalog and put
/// organizations on plans (see [`plans`](crate::model::plan) and
/// [`create_plan_version`](Self::create_plan_version)), turn features on and
/// off and configure them, set and remove limits (overrides on top of a
/// plan), transfer ownership, and look at any organization. From [`Tenancy::operator`]; every change is logged with the
/// operator's name, and written to the audit log with it as the actor
/// ([`Operator::audit_log`] reads it).
///
/// No org role reaches these: an owner cannot grant their own organization
/// a feature or raise its limits.
#[derive(Debug, Clone, Copy)]
pub struct Operator<'a> {
    pub(super) tenancy: &'a Tenancy,
    pub(super) operator: &'a PlatformOperator,
}

impl<'a> Operator<'a> {
    pub(super) fn new(tenancy: &'a Tenancy, operator: &'a PlatformOperator) -> Self {
        Operator { tenancy, operator }
    }

    /// The operator acting.
    pub fn identity(&self) -> &PlatformOperator {
        self.operator
    }

    // ---- organizations -------------------------------------------------

    /// A page of organizations ordered by name (byte order), then id,
    /// skipping `offset`; with `search` (trimmed; empty means none, at most
    /// 200 characters), only those whose name or slug contains it, ignoring
    /// the case of ASCII letters. `limit` is at most [`MAX_ORG_PAGE`].
    pub async fn organizations(
        &self,
        search: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Organization>> {
        if limit > MAX_ORG_PAGE {
            return Err(Error::invalid_input(
                "limit",
                format_args!("{limit} is more than {MAX_ORG_PAGE} organizations a page"),
            ));
        }
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        if search.is_some_and(|s| s.chars().count() > 200 || s.contains('\0')) {
            return Err(Error::invalid_input(
                "search",
                "must be at most 200 characters without NUL",
            ));
        }
        let query = OrgQuery {
            search: search.map(str::to_owned),
            limit,
            offset,
        };
        self.tenancy.inner.store.list_organizations(&query).await
    }

    /// The organization-wide usage lines of any organization (support,
    /// admin tools). `NotFound` if it does not exist.
    pub async fn usage_summary(&self, org: OrgId) -> Result<Vec<UsageLine>> {
        let tz = self.tenancy.cached_org(org).await?.timezone;
        self.tenancy.summary_lines(org, None, tz).await
    }

    /// [`usage_summary`](Self::usage_summary) of an organization already in
    /// hand (a listing's row), without reading it again.
    #[cfg(feature = "console")]
    pub(crate) async fn usage_summary_of(&self, org: &Organization) -> Result<Vec<UsageLine>> {
        self.tenancy.summary_lines(org.id, None, org.timezone).await
    }

    /// The organization-wide usage history of any organization, as
    /// [`Tenancy::usage_history`] reads it for a member. `NotFound` if it
    /// does not exist.
    pub async fn usage_history(
        &self,
        org: OrgId,
        metric: Option<&str>,
        period: Period,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CounterValue>> {
        self.tenancy.cached_org(org).await?;
        self.tenancy
            .history(org, CounterScope::Organization, metric, period, from, to)
            .await
    }

    // ---- members ---------------------------------------------------------

    /// The members of any organization, by user id (empty if it does not
    /// exist).
    pub async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        self.tenancy.inner.store.members(org).await
    }

    /// Makes `to` the owner of `org`: `to` becomes an owner (added as one
    /// if not a member) and every other owner becomes an admin. Returns
    /// `to`'s membership. No org role is needed, and none is checked: this
    /// is for support and account deletion, such as before deleting a user
    /// who is an organization's last owner, which the database refuses
    /// (see the README).
    ///
    /// `NotFound` if `org` does not exist (or, on the SQL stores, `to` is
    /// no user in `auth.users`).
    ///
    /// `to` is made an owner first and the others are demoted after, one
    /// compare-and-set each, so the organization has an owner at every
    /// instant. An owner whose role changed, or who left, meanwhile is
    /// passed over: they are no owner either way. If a step fails, its
    /// error is returned, `to` is an owner and some of the others may still
    /// be; calling again finishes the transfer (it is idempotent).
    /// Logged with the operator's name and the demoted owners.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewOrganization, PlatformOperator, Role, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let (leaving, successor) = (UserId::new_v7(), UserId::new_v7());
    /// let org = tenancy.create_organization(leaving, NewOrganization::new("Acme", "acme")?).await?;
    ///
    /// let operator = PlatformOperator::new("support");
    /// tenancy.operator(&operator).transfer_ownership(org.id, successor).await?;
    /// assert_eq!(tenancy.context(successor, org.id).await?.role(), Role::Owner);
    /// assert_eq!(tenancy.context(leaving, org.id).await?.role(), Role::Admin);
    /// # Ok(()) }
    /// ```
    pub async fn transfer_ownership(&self, org: OrgId, to: UserId) -> Result<Membership> {
        let transferred = self.audited(self.make_sole_owner(org, to)).await;
        match &transferred {
            Ok((_, demoted)) => tracing::info!(operator = self.operator.name(), %org,
                owner = %to, ?demoted, "ownership transferred"),
            Err(e) => tracing::warn!(operator = self.operator.name(), %org, owner = %to,
                error = %e, "ownership transfer failed"),
        }
        transferred.map(|(owner, _)| owner)
    }

    /// [`transfer_ownership`](Self::transfer_ownership)'s steps: `to`'s
    /// membership as owner and the owners demoted.
    async fn make_sole_owner(&self, org: OrgId, to: UserId) -> Result<(Membership, Vec<UserId>)> {
        let store = &self.tenancy.inner.store;
        let owner = match store.membership(org, to).await? {
            Some(m) if m.role == Role::Owner => Membership {
                user_id: to,
                organization_id: org,
                role: Role::Owner,
                created_at: m.joined_at,
            },
            Some(m) => store.set_member_role(org, to, m.role, Role::Owner).await?,
            None => {
                let owner = Membership {
                    user_id: to,
                    organization_id: org,
                    role: Role::Owner,
                    created_at: self.tenancy.now(),
                };
                store.add_member(&owner).await?;
                owner
            }
        };
        let mut demoted = Vec::new();
        for member in store.members(org).await? {
            if member.role != Role::Owner || member.user_id == to {
                continue;
            }
            match store
                .set_member_role(org, member.user_id, Role::Owner, Role::Admin)
                .await
            {
                Ok(_) => demoted.push(member.user_id),
                Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((owner, demoted))
    }

    // ---- features ------------------------------------------------------

    /// Every feature row of `org`: its own rows (the overrides, lapsed ones
    /// included), not its plan's; the effective features are in
    /// [`entitlements`](Self::entitlements).
    pub async fn features(&self, org: OrgId) -> Result<Vec<Feature>> {
        self.tenancy.inner.store.features(org).await
    }

    /// Turns `key` on for `org`, keeping its config.
    pub async fn enable_feature(&self, org: OrgId, key: &str) -> Result<Feature> {
        self.update_feature(org, key, FeatureChange::enabled(true))
            .await
    }

    /// Turns `key` off for `org`, keeping its config.
    pub async fn disable_feature(&self, org: OrgId, key: &str) -> Result<Feature> {
        self.update_feature(org, key, FeatureChange::enabled(false))
            .await
    }

    /// Sets `key`'s config for `org`, keeping whether it is enabled (a new
    /// row starts disabled). A config that does not serialize, is over
    /// [`MAX_FEATURE_CONFIG_BYTES`](crate::model::MAX_FEATURE_CONFIG_BYTES)
    /// or holds a NUL is `InvalidInput` naming `config`.
    pub async fn set_feature_config(
        &self,
        org: OrgId,
        key: &str,
        config: impl Serialize,
    ) -> Result<Feature> {
        let config = serde_json::to_value(config).map_err(|e| {
            Error::invalid_input("config", "does not serialize to JSON").with_source(e)
        })?;
        let change = FeatureChange {
            config: Some(config),
            ..FeatureChange::default()
        };
        // update_feature checks the config.
        self.update_feature(org, key, change).await
    }

    /// Applies `change` to `key` of `org` in one atomic store step: a
    /// concurrent change of another field is never lost. On an organization
    /// with a plan the row is an override of the plan's feature; with
    /// [`FeatureChange::until`] it lapses then, and the plan's (or off)
    /// applies again.
    pub async fn update_feature(
        &self,
        org: OrgId,
        key: &str,
        change: FeatureChange,
    ) -> Result<Feature> {
        let key = FeatureKey::parse(key)?;
        change.check()?;
        let now = self.tenancy.now();
        let update = self
            .tenancy
            .inner
            .store
            .update_feature(org, &key, &change, now);
        let stored = self.audited(update).await;
        // Even on error: the write may have landed.
        let stored = stored?;
        tracing::info!(operator = self.operator.name(), %org, %key, enabled = stored.enabled,
            "feature changed");
        Ok(stored)
    }

    /// Deletes `key`'s row for `org`; whether it existed.
    pub async fn remove_feature(&self, org: OrgId, key: &str) -> Result<bool> {
        let key = FeatureKey::parse(key)?;
        let delete = self.tenancy.inner.store.delete_feature(org, &key);
        let removed = self.audited(delete).await;
        tracing::info!(operator = self.operator.name(), %org, %key,
            removed = ?removed.as_ref().ok(), "feature removed");
        removed
    }

    // ---- limits ----------------------------------------------------------

    /// Every limit row of `org`: its own rows (the overrides, lapsed ones
    /// included), not its plan's; the effective limits are in
    /// [`entitlements`](Self::entitlements).
    pub async fn limits(&self, org: OrgId) -> Result<Vec<Limit>> {
        self.tenancy.inner.store.limits(org).await
    }

    /// Sets a limit for `org`, replacing any with the same scope, metric and
    /// period (its id and creation time stay). On an organization with a
    /// plan an org-wide limit is an override of the plan's limit on the same
    /// metric and period, raising or lowering it; with
    /// [`NewLimit::until`] it lapses then, and the plan's applies again
    /// ("20 % more tokens this month"). A per-user limit is added to the
    /// plan's. Audited.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewLimit, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// # let alice = UserId::new_v7();
    /// # let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let operator = PlatformOperator::new("billing");
    /// let limit = NewLimit::from_limit_type("monthly_tokens", 1_000_000.into())?;
    /// tenancy.operator(&operator).set_limit(org.id, limit).await?;
    ///
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// let decision = tenancy.check_limit(&ctx, "tokens", 2_000_000.into()).await?;
    /// assert!(!decision.allowed);
    /// # Ok(()) }
    /// ```
    pub async fn set_limit(&self, org: OrgId, limit: NewLimit) -> Result<Limit> {
        let limit = Limit {
            id: LimitId::new_v7(),
            org,
            scope: limit.scope,
            metric: limit.metric,
            period: limit.period,
            value: limit.value,
            mode: limit.mode,
            created_at: self.tenancy.now(),
            expires_at: limit.expires_at,
        };
        let put = self.tenancy.inner.store.put_limit(&limit);
        let stored = self.audited(put).await;
        let stored = stored?;
        tracing::info!(operator = self.operator.name(), %org, metric = %stored.metric,
            period = %stored.period, value = %stored.value, scope = %stored.scope, "limit set");
        Ok(stored)
    }

    /// Removes a limit from `org`; whether it existed.
    pub async fn remove_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let delete = self.tenancy.inner.store.delete_limit(org, id);
        let removed = self.audited(delete).await;
        tracing::info!(operator = self.operator.name(), %org, limit = %id,
            removed = ?removed.as_ref().ok(), "limit removed");
        removed
    }

    // ---- reconciliation --------------------------------------------------

    /// The counters of `org` in `period` (one metric, or all) that disagree
    /// with its event log: each counter's recorded usage against the sum of
    /// the amounts of the events counted in that period (org-wide: every
    /// event; a user's: that user's). Empty when they all agree. Reads
    /// only; holds are read live and never drift. `NotFound` if the
    /// organization does not exist.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use tenancy::clock::FakeClock;
    /// use tenancy::limits::PeriodKey;
    /// use tenancy::{MemoryStore, NewOrganization, Period, PlatformOperator, Tenancy, UsageEvent, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .clock(FakeClock::new(now))
    ///     .build()?;
    /// let acme = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
    /// tenancy.service().record_usage(UsageEvent::new(acme.id).tokens(1_200, 0, 300)).await?;
    ///
    /// let operator = PlatformOperator::new("ops");
    /// let today = PeriodKey::containing(Period::Daily, now, acme.timezone);
    /// // The counters agree with the events: no drift, nothing to repair.
    /// assert!(tenancy.operator(&operator).reconcile_usage(acme.id, today, None).await?.is_empty());
    /// assert!(tenancy.operator(&operator).repair_usage(acme.id, today, None).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn reconcile_usage(
        &self,
        org: OrgId,
        period: PeriodKey,
        metric: Option<&str>,
    ) -> Result<Vec<CounterDrift>> {
        let query = self.reconcile_query(org, period, metric).await?;
        let drift = self.tenancy.inner.store.reconcile_usage(&query).await;
        tracing::info!(operator = self.operator.name(), %org, %period, ?metric,
            drifting = ?drift.as_ref().ok().map(Vec::len), "usage reconciled");
        drift
    }

    /// Sets every counter of `org` in `period` (one metric, or all) that
    /// [`reconcile_usage`](Self::reconcile_usage) finds drifting to what the
    /// event log sums to, in one atomic step, and returns the drift it
    /// corrected (empty: nothing to repair). Recording in the organization
    /// waits while the repair runs, and a repair waits for the records in
    /// progress, so nothing recorded concurrently is lost or counted twice.
    /// Every corrected counter is logged. `NotFound` if the organization
    /// does not exist.
    pub async fn repair_usage(
        &self,
        org: OrgId,
        period: PeriodKey,
        metric: Option<&str>,
    ) -> Result<Vec<CounterDrift>> {
        let query = self.reconcile_query(org, period, metric).await?;
        let repaired = self.tenancy.inner.store.repair_usage(&query).await;
        match &repaired {
            Ok(drift) => {
                for d in drift {
                    tracing::warn!(operator = self.operator.name(), %org, %period,
                        scope = %d.scope, metric = %d.metric, counted = %d.counted,
                        recomputed = %d.recomputed, "usage counter repaired");
                }
                tracing::info!(operator = self.operator.name(), %org, %period, ?metric,
                    repaired = drift.len(), "usage repaired");
            }
            Err(e) => tracing::warn!(operator = self.operator.name(), %org, %period, ?metric,
                error = %e, "usage repair failed"),
        }
        repaired
    }

    pub(super) async fn reconcile_query(
        &self,
        org: OrgId,
        period: PeriodKey,
        metric: Option<&str>,
    ) -> Result<ReconcileQuery> {
        let metric = metric.map(MetricKey::parse).transpose()?;
        self.tenancy.cached_org(org).await?;
        Ok(ReconcileQuery::new(org, period).with_metric(metric))
    }
}
