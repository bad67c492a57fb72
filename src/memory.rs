//! The embedded store: everything in process memory behind one lock.
//!
//! For examples, tests, and single-process apps. Every method takes the
//! lock once, so each is atomic and concurrent reservations never
//! overshoot. Nothing is persisted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::context::Role;
use crate::error::{Error, ErrorKind, Result};
use crate::features::Feature;
use crate::ids::{EventId, FeatureKey, LimitId, MetricKey, OrgId, ReservationId, Slug, UserId};
use crate::limits::{AlertKey, CurrentPeriods, Limit, LimitScope, LimitUsage, PeriodKey};
use crate::org::{Membership, OrgMembership, Organization};
use crate::store::{
    CommitOutcome, CounterUsage, RecordOutcome, ReserveRequest, ReserveResult, Store, UsageQuery,
    UsageSnapshot, org_not_found,
};
use crate::usage::UsageRecord;

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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CounterKey {
    user: Option<UserId>,
    metric: MetricKey,
    period: PeriodKey,
}

#[derive(Debug, Clone)]
struct Hold {
    user: UserId,
    metric: MetricKey,
    amount: Decimal,
    periods: CurrentPeriods,
    expires_at: DateTime<Utc>,
}

/// Everything one organization owns.
#[derive(Debug, Default)]
struct Tenant {
    org: Option<Organization>,
    members: BTreeMap<UserId, Membership>,
    features: BTreeMap<FeatureKey, Feature>,
    limits: Vec<Limit>,
    counters: HashMap<CounterKey, Decimal>,
    holds: HashMap<ReservationId, Hold>,
    alerts: HashSet<AlertKey>,
}

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<OrgId, Tenant>,
    slugs: HashMap<Slug, OrgId>,
    orgs_of_user: HashMap<UserId, BTreeSet<OrgId>>,
    /// Every event ever recorded, by organization and id: the dedupe set.
    events: HashSet<(OrgId, EventId)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied write:
        // every method validates before it mutates.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn tenant(&self, org: OrgId) -> Option<&Tenant> {
        self.tenants.get(&org).filter(|t| t.org.is_some())
    }

    fn tenant_mut(&mut self, org: OrgId) -> Result<&mut Tenant> {
        self.tenants
            .get_mut(&org)
            .filter(|t| t.org.is_some())
            .ok_or_else(|| org_not_found(org))
    }

    fn org_membership(&self, org: OrgId, user: UserId) -> Option<OrgMembership> {
        let tenant = self.tenant(org)?;
        let m = tenant.members.get(&user)?;
        Some(OrgMembership {
            organization: tenant.org.clone()?,
            role: m.role,
            joined_at: m.created_at,
        })
    }

    /// Applies a batch of records, all or nothing; returns how many were new.
    fn record(&mut self, batch: &[&UsageRecord]) -> Result<RecordOutcome> {
        let mut fresh: HashSet<(OrgId, EventId)> = HashSet::new();
        let mut staged: HashMap<(OrgId, CounterKey), Decimal> = HashMap::new();
        let mut outcome = RecordOutcome::default();
        for record in batch {
            let key = (record.org(), record.id);
            if self.events.contains(&key) || !fresh.insert(key) {
                outcome.duplicates += 1;
                continue;
            }
            outcome.inserted += 1;
            let org = record.org();
            let tenant = self.tenant(org).ok_or_else(|| org_not_found(org))?;
            // Org-wide (`None`) always; the user's own when there is one.
            let scopes = [Some(None), record.user().map(Some)];
            for (metric, amount) in &record.amounts {
                for user in scopes.iter().flatten() {
                    for period in [record.periods.daily, record.periods.monthly] {
                        let key = CounterKey {
                            user: *user,
                            metric: metric.clone(),
                            period,
                        };
                        let current = match staged.get(&(org, key.clone())) {
                            Some(v) => *v,
                            None => tenant.counters.get(&key).copied().unwrap_or_default(),
                        };
                        let next = current.checked_add(*amount).ok_or_else(|| {
                            Error::invalid_input("amount", format!("counter {metric} overflows"))
                        })?;
                        staged.insert((org, key), next);
                    }
                }
            }
        }
        self.events.extend(fresh);
        for ((org, key), value) in staged {
            if let Some(tenant) = self.tenants.get_mut(&org) {
                tenant.counters.insert(key, value);
            }
        }
        Ok(outcome)
    }
}

impl Tenant {
    /// Checks that `user` is a member whose role is still `expected`, and
    /// that moving them to `after` (`None`: removing them) keeps an owner.
    fn check_change(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        after: Option<Role>,
    ) -> Result<()> {
        let member = self
            .members
            .get(&user)
            .ok_or_else(|| crate::store::not_a_member(org, user))?;
        check_expected(member, expected)?;
        let owners = self
            .members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count();
        if member.role == Role::Owner && after != Some(Role::Owner) && owners == 1 {
            return Err(last_owner(org));
        }
        Ok(())
    }

    fn used(&self, user: Option<UserId>, metric: &MetricKey, period: PeriodKey) -> Decimal {
        let key = CounterKey {
            user,
            metric: metric.clone(),
            period,
        };
        self.counters.get(&key).copied().unwrap_or_default()
    }

    /// The amount held by unexpired reservations that count towards `scope`.
    fn reserved(
        &self,
        scope: LimitScope,
        metric: &MetricKey,
        period: PeriodKey,
        now: DateTime<Utc>,
    ) -> Decimal {
        self.holds
            .values()
            .filter(|h| h.expires_at > now && &h.metric == metric)
            .filter(|h| h.periods.key(period.period) == period)
            .filter(|h| scope.user().is_none_or(|u| u == h.user))
            .map(|h| h.amount)
            .sum()
    }

    fn applicable_limits(
        &self,
        user: Option<UserId>,
        metric: Option<&MetricKey>,
        periods: &CurrentPeriods,
        now: DateTime<Utc>,
    ) -> Vec<LimitUsage> {
        self.limits
            .iter()
            .filter(|l| metric.is_none_or(|m| m == &l.metric))
            .filter(|l| {
                l.scope == LimitScope::Organization || l.scope.user() == user && user.is_some()
            })
            .map(|l| {
                let period = periods.key(l.period);
                LimitUsage {
                    limit: l.clone(),
                    period,
                    used: self.used(l.scope.user(), &l.metric, period),
                    reserved: self.reserved(l.scope, &l.metric, period, now),
                }
            })
            .collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_organization(&self, org: &Organization) -> Result<Organization> {
        let mut state = self.lock();
        if state.slugs.contains_key(&org.slug) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("slug {:?} is taken", org.slug.as_str()),
            ));
        }
        if state.tenants.contains_key(&org.id) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("organization {} exists", org.id),
            ));
        }
        let mut members = BTreeMap::new();
        if let Some(owner) = org.owner_user_id {
            let membership = Membership {
                user_id: owner,
                organization_id: org.id,
                role: Role::Owner,
                created_at: org.created_at,
            };
            members.insert(owner, membership);
            state.orgs_of_user.entry(owner).or_default().insert(org.id);
        }
        state.slugs.insert(org.slug.clone(), org.id);
        state.tenants.insert(
            org.id,
            Tenant {
                org: Some(org.clone()),
                members,
                ..Tenant::default()
            },
        );
        Ok(org.clone())
    }

    async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        Ok(self.lock().tenant(id).and_then(|t| t.org.clone()))
    }

    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>> {
        let state = self.lock();
        let org = state.slugs.get(slug).and_then(|id| state.tenant(*id));
        Ok(org.and_then(|t| t.org.clone()))
    }

    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(id)?;
        let org = tenant.org.as_mut().ok_or_else(|| org_not_found(id))?;
        org.name = name.to_owned();
        Ok(org.clone())
    }

    async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        let mut state = self.lock();
        let Some(tenant) = state.tenants.remove(&id) else {
            return Ok(false);
        };
        if let Some(org) = &tenant.org {
            state.slugs.remove(&org.slug);
        }
        for user in tenant.members.keys() {
            if let Some(orgs) = state.orgs_of_user.get_mut(user) {
                orgs.remove(&id);
            }
        }
        Ok(tenant.org.is_some())
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
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("user {} is already a member of {org}", membership.user_id),
            ));
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
        tenant.check_change(org, user, expected, Some(role))?;
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
        tenant.check_change(org, user, expected, None)?;
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

    async fn put_feature(&self, org: OrgId, feature: &Feature) -> Result<()> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(org)?;
        tenant.features.insert(feature.key.clone(), feature.clone());
        Ok(())
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
        tenant.limits.push(limit.clone());
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
        let limits =
            tenant.applicable_limits(query.user, query.metric.as_ref(), &query.periods, query.now);
        let current = [query.periods.daily, query.periods.monthly];
        let mut counters: Vec<CounterUsage> = tenant
            .counters
            .iter()
            .filter(|(k, _)| k.user.is_none() || k.user == query.user)
            .filter(|(k, _)| query.metric.as_ref().is_none_or(|m| m == &k.metric))
            .filter(|(k, _)| current.contains(&k.period))
            .map(|(k, used)| {
                let scope = LimitScope::from(k.user);
                CounterUsage {
                    scope,
                    metric: k.metric.clone(),
                    period: k.period,
                    used: *used,
                    reserved: tenant.reserved(scope, &k.metric, k.period, query.now),
                }
            })
            .collect();
        counters
            .sort_by(|a, b| (&a.metric, a.period, a.scope).cmp(&(&b.metric, b.period, b.scope)));
        Ok(UsageSnapshot { limits, counters })
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveResult> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(request.org)?;
        // Expired holds no longer count; drop them while we hold the lock.
        tenant.holds.retain(|_, h| h.expires_at > request.now);
        let limits = tenant.applicable_limits(
            Some(request.user),
            Some(&request.metric),
            &request.periods,
            request.now,
        );
        let granted = limits
            .iter()
            .all(|u| u.limit.mode == crate::LimitMode::Soft || u.fits(request.amount));
        if granted {
            tenant.holds.insert(
                request.id,
                Hold {
                    user: request.user,
                    metric: request.metric.clone(),
                    amount: request.amount,
                    periods: request.periods,
                    expires_at: request.expires_at,
                },
            );
        }
        Ok(ReserveResult { granted, limits })
    }

    async fn commit_reservation(
        &self,
        org: OrgId,
        id: ReservationId,
        usage: &UsageRecord,
    ) -> Result<CommitOutcome> {
        let mut state = self.lock();
        if usage.org() != org {
            return Err(Error::invalid_input(
                "org_id",
                "the usage record belongs to another organization than the reservation",
            ));
        }
        // Record first: if it fails, the hold stays and nothing changed.
        let recorded = state.record(&[usage])?.inserted == 1;
        let released_hold = state.tenant_mut(org)?.holds.remove(&id).is_some();
        Ok(CommitOutcome {
            released_hold,
            recorded,
        })
    }

    async fn release_reservation(&self, org: OrgId, id: ReservationId) -> Result<bool> {
        let mut state = self.lock();
        Ok(state
            .tenant_mut(org)
            .is_ok_and(|t| t.holds.remove(&id).is_some()))
    }

    async fn claim_alert(&self, key: &AlertKey, _fired_at: DateTime<Utc>) -> Result<bool> {
        let mut state = self.lock();
        Ok(state.tenant_mut(key.org)?.alerts.insert(key.clone()))
    }
}

fn check_expected(member: &Membership, expected: Role) -> Result<()> {
    if member.role == expected {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "user {}'s role changed to {} meanwhile; reload and retry",
                member.user_id, member.role
            ),
        ))
    }
}

fn last_owner(org: OrgId) -> Error {
    Error::permission_denied(format!("organization {org} must keep at least one owner"))
}
