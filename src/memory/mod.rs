//! The embedded store: everything in process memory behind one lock.
//!
//! For examples, tests, and single-process apps. Every method takes the
//! lock once, so each is atomic and concurrent reservations never
//! overshoot. Nothing is persisted.

mod tenant;

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{EventId, FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, LimitScope, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::store::{
    CommitOutcome, CommitRequest, CounterScope, CounterValue, HistoryQuery, OrgQuery, Principal,
    RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, Store, UsageQuery, org_not_found,
};
use tenant::{State, Tenant};

/// The embedded, in-memory [`Store`].
///
/// ```
/// use tenancy::{MemoryStore, Tenancy};
/// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

fn already_exists(message: String) -> Error {
    Error::new(ErrorKind::AlreadyExists, message)
}

/// The checks every commit makes before looking at the hold.
fn check_commit_request(request: &CommitRequest) -> Result<()> {
    let usage = &request.usage;
    if usage.org() != request.org {
        return Err(Error::invalid_input(
            "org_id",
            "the usage record belongs to another organization than the reservation",
        ));
    }
    if usage.id != EventId::from(request.id) {
        return Err(Error::invalid_input(
            "event_id",
            "a committed usage record has the reservation's id",
        ));
    }
    if usage.user() != Some(request.user) {
        return Err(Error::invalid_input(
            "user_id",
            "the usage record's user is not the reservation's",
        ));
    }
    Ok(())
}

fn foreign_hold(request_user: UserId, id: impl std::fmt::Display) -> Error {
    Error::permission_denied(format!(
        "reservation {id} was not made for user {request_user}"
    ))
}

#[async_trait]
impl Store for MemoryStore {
    fn principal(&self) -> Principal {
        Principal::Service
    }

    async fn create_organization(&self, org: &Organization) -> Result<Organization> {
        let mut state = self.lock();
        if state.slugs.contains_key(&org.slug) {
            return Err(already_exists(format!(
                "slug {:?} is taken",
                org.slug.as_str()
            )));
        }
        if state.tenants.contains_key(&org.id) {
            return Err(already_exists(format!("organization {} exists", org.id)));
        }
        let mut tenant = Tenant::new(org.clone());
        if let Some(owner) = org.owner_user_id {
            let membership = Membership {
                user_id: owner,
                organization_id: org.id,
                role: Role::Owner,
                created_at: org.created_at,
            };
            tenant.members.insert(owner, membership);
            state.orgs_of_user.entry(owner).or_default().insert(org.id);
        }
        state.slugs.insert(org.slug.clone(), org.id);
        state.tenants.insert(org.id, tenant);
        Ok(org.clone())
    }

    async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        Ok(self.lock().tenant(id).map(|t| t.org.clone()))
    }

    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>> {
        let state = self.lock();
        let org = state.slugs.get(slug).and_then(|id| state.tenant(*id));
        Ok(org.map(|t| t.org.clone()))
    }

    async fn list_organizations(&self, query: &OrgQuery) -> Result<Vec<Organization>> {
        let state = self.lock();
        let needle = query.search.as_deref().map(str::to_ascii_lowercase);
        let mut orgs: Vec<&Organization> = state
            .tenants
            .values()
            .map(|t| &t.org)
            .filter(|o| {
                needle.as_deref().is_none_or(|n| {
                    o.name.to_ascii_lowercase().contains(n) || o.slug.as_str().contains(n)
                })
            })
            .collect();
        orgs.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        Ok(orgs
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(id)?;
        tenant.org.name = name.to_owned();
        Ok(tenant.org.clone())
    }

    async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        let mut state = self.lock();
        let Some(tenant) = state.tenants.remove(&id) else {
            return Ok(false);
        };
        state.slugs.remove(&tenant.org.slug);
        for user in tenant.members.keys() {
            if let Some(orgs) = state.orgs_of_user.get_mut(user) {
                orgs.remove(&id);
            }
        }
        state.events.retain(|(org, _)| *org != id);
        Ok(true)
    }

    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>> {
        Ok(self.lock().org_membership(org, user))
    }

    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        let state = self.lock();
        let orgs = state.orgs_of_user.get(&user).into_iter().flatten();
        Ok(orgs
            .filter_map(|org| state.org_membership(*org, user))
            .collect())
    }

    async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        let state = self.lock();
        Ok(state
            .tenant(org)
            .map(|t| t.members.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn add_member(&self, membership: &Membership) -> Result<()> {
        let mut state = self.lock();
        let org = membership.organization_id;
        let tenant = state.tenant_mut(org)?;
        if tenant.members.contains_key(&membership.user_id) {
            return Err(already_exists(format!(
                "user {} is already a member of {org}",
                membership.user_id
            )));
        }
        tenant
            .members
            .insert(membership.user_id, membership.clone());
        state
            .orgs_of_user
            .entry(membership.user_id)
            .or_default()
            .insert(org);
        Ok(())
    }

    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(org)?;
        tenant.check_change(user, expected, Some(role))?;
        let member = tenant
            .members
            .get_mut(&user)
            .ok_or_else(|| crate::store::not_a_member(org, user))?;
        member.role = role;
        Ok(member.clone())
    }

    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(org)?;
        tenant.check_change(user, expected, None)?;
        tenant.members.remove(&user);
        if let Some(orgs) = state.orgs_of_user.get_mut(&user) {
            orgs.remove(&org);
        }
        Ok(())
    }

    async fn features(&self, org: OrgId) -> Result<Vec<Feature>> {
        let state = self.lock();
        Ok(state
            .tenant(org)
            .map(|t| t.features.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn update_feature(
        &self,
        org: OrgId,
        key: &FeatureKey,
        change: &FeatureChange,
        now: DateTime<Utc>,
    ) -> Result<Feature> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(org)?;
        let feature = change.apply(key, tenant.features.get(key), now);
        tenant.features.insert(key.clone(), feature.clone());
        Ok(feature)
    }

    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool> {
        let mut state = self.lock();
        Ok(state
            .tenant_mut(org)
            .is_ok_and(|t| t.features.remove(key).is_some()))
    }

    async fn limits(&self, org: OrgId) -> Result<Vec<Limit>> {
        let state = self.lock();
        Ok(state
            .tenant(org)
            .map(|t| t.limits.clone())
            .unwrap_or_default())
    }

    async fn put_limit(&self, limit: &Limit) -> Result<Limit> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(limit.org)?;
        let same_slot = |l: &&mut Limit| {
            l.scope == limit.scope && l.metric == limit.metric && l.period == limit.period
        };
        if let Some(existing) = tenant.limits.iter_mut().find(same_slot) {
            existing.value = limit.value;
            existing.mode = limit.mode;
            return Ok(existing.clone());
        }
        // Kept in the order limits() promises: creation time, then id.
        let key = |l: &Limit| (l.created_at, l.id);
        let at = tenant.limits.partition_point(|l| key(l) < key(limit));
        tenant.limits.insert(at, limit.clone());
        Ok(limit.clone())
    }

    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let mut state = self.lock();
        let Ok(tenant) = state.tenant_mut(org) else {
            return Ok(false);
        };
        let before = tenant.limits.len();
        tenant.limits.retain(|l| l.id != id);
        Ok(tenant.limits.len() < before)
    }

    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome> {
        let batch: Vec<&UsageRecord> = batch.iter().collect();
        self.lock().record(&batch)
    }

    async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot> {
        let state = self.lock();
        let Some(tenant) = state.tenant(query.org) else {
            return Ok(UsageSnapshot::default());
        };
        let metric = query.metric.as_ref();
        Ok(UsageSnapshot {
            limits: tenant.applicable_limits(query.user, metric, &query.periods, query.now),
            counters: tenant.counters_in(query.user, metric, &query.periods, query.now),
        })
    }

    async fn usage_history(&self, query: &HistoryQuery) -> Result<Vec<CounterValue>> {
        let state = self.lock();
        let Some(tenant) = state.tenant(query.org) else {
            return Ok(Vec::new());
        };
        let in_scope = |user: Option<UserId>| match query.scope {
            CounterScope::Organization => user.is_none(),
            CounterScope::User(u) => user == Some(u),
            CounterScope::EachUser => user.is_some(),
        };
        let mut values: Vec<CounterValue> = tenant
            .counters
            .iter()
            .filter(|(k, _)| in_scope(k.user) && k.period.period == query.period)
            .filter(|(k, _)| (query.from..=query.to).contains(&k.period.start))
            .filter(|(k, _)| query.metric.as_ref().is_none_or(|m| m == &k.metric))
            .map(|(k, used)| CounterValue {
                scope: LimitScope::from(k.user),
                metric: k.metric.clone(),
                period: k.period,
                used: *used,
            })
            .collect();
        values.sort_by(|a, b| {
            (a.period.start, &a.metric, a.scope).cmp(&(b.period.start, &b.metric, b.scope))
        });
        Ok(values)
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveResult> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(request.org)?;
        let (granted, limits) = tenant.reserve(request);
        Ok(ReserveResult { granted, limits })
    }

    async fn commit_reservation(&self, request: &CommitRequest) -> Result<CommitOutcome> {
        check_commit_request(request)?;
        let mut state = self.lock();
        let (org, id) = (request.org, request.id);
        let tenant = state.tenant_mut(org)?;
        let Some(hold) = tenant.holds.get(&id) else {
            if state.events.contains(&(org, EventId::from(id))) {
                return Ok(CommitOutcome {
                    released_hold: false,
                    recorded: false,
                });
            }
            return Err(Error::not_found(format!(
                "no reservation {id} in organization {org}: it was never made, was \
                 released, or expired long ago; nothing was recorded"
            )));
        };
        if hold.user != request.user {
            return Err(foreign_hold(request.user, id));
        }
        let live = hold.expires_at > request.now;
        // Counted in the periods the hold was taken in.
        let usage = UsageRecord {
            periods: hold.periods,
            ..request.usage.clone()
        };
        // Record first: if it fails, the hold stays and nothing changed.
        let recorded = state.record(&[&usage])?.inserted == 1;
        state.tenant_mut(org)?.holds.remove(&id);
        Ok(CommitOutcome {
            released_hold: live,
            recorded,
        })
    }

    async fn release_reservation(&self, request: &ReleaseRequest) -> Result<bool> {
        let mut state = self.lock();
        let Ok(tenant) = state.tenant_mut(request.org) else {
            return Ok(false);
        };
        match tenant.holds.get(&request.id) {
            None => Ok(false),
            Some(hold) if hold.user != request.user => Err(foreign_hold(request.user, request.id)),
            Some(hold) => {
                let live = hold.expires_at > request.now;
                tenant.holds.remove(&request.id);
                Ok(live)
            }
        }
    }

    async fn claim_alert(&self, key: &AlertKey, _fired_at: DateTime<Utc>) -> Result<bool> {
        let mut state = self.lock();
        let tenant = state
            .tenant_mut(key.org)
            .map_err(|_| org_not_found(key.org))?;
        Ok(tenant.alerts.insert(key.clone()))
    }
}
