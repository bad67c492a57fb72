//! The embedded store's state: everything one organization owns, and the
//! dedupe set of recorded events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{EventId, FeatureKey, MetricKey, OrgId, ReservationId, Slug, UserId};
use crate::limits::{
    AlertKey, CounterUsage, CurrentPeriods, Limit, LimitMode, LimitScope, LimitUsage, PeriodKey,
};
use crate::model::{Feature, Membership, OrgMembership, Organization, Role, UsageRecord};
use crate::store::{RecordOutcome, ReserveRequest, not_a_member, org_not_found};

/// Hash maps and sets keyed by ids and names, hashed with foldhash: the
/// store's every call hashes several keys, and std's SipHash was the
/// largest part of a `reserve` + `commit` in a profile. foldhash's seed is
/// random per process.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::quality::RandomState>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CounterKey {
    pub(super) user: Option<UserId>,
    pub(super) metric: MetricKey,
    pub(super) period: PeriodKey,
}

#[derive(Debug, Clone)]
pub(super) struct Hold {
    pub(super) user: UserId,
    pub(super) metric: MetricKey,
    pub(super) amount: Decimal,
    pub(super) periods: CurrentPeriods,
    pub(super) expires_at: DateTime<Utc>,
}

/// What a recorded event counted: enough to recompute the counters.
#[derive(Debug, Clone)]
pub(super) struct LoggedEvent {
    pub(super) user: Option<UserId>,
    pub(super) amounts: Vec<(MetricKey, Decimal)>,
    pub(super) periods: CurrentPeriods,
}

/// Everything one organization owns.
#[derive(Debug)]
pub(super) struct Tenant {
    pub(super) org: Organization,
    pub(super) members: BTreeMap<UserId, Membership>,
    pub(super) features: BTreeMap<FeatureKey, Feature>,
    pub(super) limits: Vec<Limit>,
    pub(super) counters: HashMap<CounterKey, Decimal>,
    /// Holds until committed, released or purged; expired ones stay (and
    /// stop counting) so that a late commit is still recognised.
    pub(super) holds: HashMap<ReservationId, Hold>,
    pub(super) alerts: HashSet<AlertKey>,
    /// The event log: what every recorded event counted, in order.
    pub(super) log: Vec<LoggedEvent>,
    /// Its plan assignment, with the versions it names.
    pub(super) plan: Option<super::plans::TenantPlan>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tenants: HashMap<OrgId, Tenant>,
    pub(super) slugs: HashMap<Slug, OrgId>,
    pub(super) orgs_of_user: HashMap<UserId, BTreeSet<OrgId>>,
    /// Every event ever recorded, by organization and id: the dedupe set.
    pub(super) events: HashSet<(OrgId, EventId)>,
    pub(super) invitations: super::invitations::InvitationState,
    pub(super) domains: super::domains::DomainState,
    pub(super) audit: super::audit::AuditState,
    pub(super) rate_limits: super::rate_limits::RateLimitState,
    pub(super) leases: super::leases::LeaseState,
    pub(super) reports: super::reports::ReportState,
    pub(super) plans: super::plans::PlanState,
}

impl State {
    pub(super) fn tenant(&self, org: OrgId) -> Option<&Tenant> {
        self.tenants.get(&org)
    }

    pub(super) fn tenant_mut(&mut self, org: OrgId) -> Result<&mut Tenant> {
        self.tenants.get_mut(&org).ok_or_else(|| org_not_found(org))
    }

    pub(super) fn org_membership(&self, org: OrgId, user: UserId) -> Option<OrgMembership> {
        let tenant = self.tenant(org)?;
        let m = tenant.members.get(&user)?;
        Some(OrgMembership {
            organization: tenant.org.clone(),
            role: m.role,
            joined_at: m.created_at,
        })
    }

    /// Applies a batch of records, all or nothing; returns how many were
    /// new. Every check happens before anything changes.
    pub(super) fn record(&mut self, batch: &[&UsageRecord]) -> Result<RecordOutcome> {
        let mut fresh: HashSet<(OrgId, EventId)> = HashSet::default();
        let mut staged: HashMap<(OrgId, CounterKey), Decimal> = HashMap::default();
        let mut outcome = RecordOutcome::default();
        let mut logged: Vec<(OrgId, LoggedEvent)> = Vec::new();
        let mut new_records: Vec<&UsageRecord> = Vec::new();
        for record in batch {
            let org = record.org();
            let tenant = self.tenant(org).ok_or_else(|| org_not_found(org))?;
            let key = (org, record.id);
            if self.events.contains(&key) || !fresh.insert(key) {
                outcome.duplicates += 1;
                continue;
            }
            // A new event older than what retention dropped would bring a
            // dropped month back; an old duplicate is harmless.
            if let Some(cut) = self.reports.dropped_before
                && record.occurred_at < cut
            {
                return Err(Error::invalid_input(
                    "occurred_at",
                    format_args!(
                        "{} is before {cut}, where retention dropped the event log",
                        record.occurred_at
                    ),
                ));
            }
            outcome.inserted += 1;
            new_records.push(record);
            logged.push((
                org,
                LoggedEvent {
                    user: record.user(),
                    amounts: record
                        .amounts
                        .iter()
                        .map(|(m, a)| (m.clone(), *a))
                        .collect(),
                    periods: record.periods,
                },
            ));
            // Org-wide (`None`) always; the user's own when there is one.
            let scopes = [Some(None), record.user().map(Some)];
            for (metric, amount) in &record.amounts {
                if amount.is_sign_negative() && !amount.is_zero() {
                    return Err(Error::invalid_input(
                        "amount",
                        "amounts must be zero or more",
                    ));
                }
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
                            Error::invalid_input(
                                "amount",
                                format_args!("counter {metric} overflows"),
                            )
                        })?;
                        staged.insert((org, key), next);
                    }
                }
            }
        }
        self.events.extend(fresh);
        self.reports.record(&new_records);
        for (org, event) in logged {
            if let Some(tenant) = self.tenants.get_mut(&org) {
                tenant.log.push(event);
            }
        }
        for ((org, key), value) in staged {
            if let Some(tenant) = self.tenants.get_mut(&org) {
                tenant.counters.insert(key, value);
            }
        }
        Ok(outcome)
    }
}

impl Tenant {
    pub(super) fn new(org: Organization) -> Self {
        Tenant {
            org,
            members: BTreeMap::new(),
            features: BTreeMap::new(),
            limits: Vec::new(),
            counters: HashMap::default(),
            holds: HashMap::default(),
            alerts: HashSet::default(),
            log: Vec::new(),
            plan: None,
        }
    }

    /// Checks that `user` is a member whose role is still `expected`, and
    /// that moving them to `after` (`None`: removing them) keeps an owner.
    pub(super) fn check_change(
        &self,
        user: UserId,
        expected: Role,
        after: Option<Role>,
    ) -> Result<()> {
        let org = self.org.id;
        let member = self
            .members
            .get(&user)
            .ok_or_else(|| not_a_member(org, user))?;
        if member.role != expected {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "user {user}'s role changed to {} meanwhile; reload and retry",
                    member.role
                ),
            ));
        }
        let owners = self
            .members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count();
        if member.role == Role::Owner && after != Some(Role::Owner) && owners == 1 {
            return Err(Error::permission_denied(format!(
                "organization {org} must keep at least one owner"
            )));
        }
        Ok(())
    }

    pub(super) fn used(
        &self,
        user: Option<UserId>,
        metric: &MetricKey,
        period: PeriodKey,
    ) -> Decimal {
        let key = CounterKey {
            user,
            metric: metric.clone(),
            period,
        };
        self.counters.get(&key).copied().unwrap_or_default()
    }

    /// The amount held by unexpired reservations that count towards `scope`.
    pub(super) fn reserved(
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
            .fold(Decimal::ZERO, |sum, h| sum.saturating_add(h.amount))
    }

    /// The plan version in effect at `now`, if any.
    pub(super) fn plan_at(&self, now: DateTime<Utc>) -> Option<&crate::model::plan::PlanVersion> {
        self.plan.as_ref().and_then(|p| p.at(now))
    }

    /// The effective limits at `now` (plan and unexpired rows, by the rule
    /// of [`entitlements`](crate::limits::entitlements)) that apply to
    /// `user` (org-wide, and theirs) on `metric` (or every metric), with
    /// their usage.
    pub(super) fn applicable_limits(
        &self,
        user: Option<UserId>,
        metric: Option<&MetricKey>,
        periods: &CurrentPeriods,
        now: DateTime<Utc>,
    ) -> Vec<LimitUsage> {
        let wanted = |l: &Limit| {
            metric.is_none_or(|m| m == &l.metric)
                && (l.scope == LimitScope::Organization || l.scope.user() == user && user.is_some())
        };
        let plan = self.plan_at(now);
        let effective = if plan.is_none() && self.limits.iter().all(|l| l.expires_at.is_none()) {
            // No plan and nothing lapses: the rows are the view.
            self.limits.iter().filter(|l| wanted(l)).cloned().collect()
        } else {
            crate::limits::entitlements::effective_limits_of(
                self.org.id,
                plan,
                self.limits.iter().filter(|l| wanted(l)),
                now,
                metric,
            )
            .into_iter()
            // The plan's entries are org-wide and of `metric` already.
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
        };
        effective
            .into_iter()
            .map(|l| {
                let period = periods.key(l.period);
                LimitUsage {
                    used: self.used(l.scope.user(), &l.metric, period),
                    reserved: self.reserved(l.scope, &l.metric, period, now),
                    period,
                    limit: l,
                }
            })
            .collect()
    }

    pub(super) fn counters_in(
        &self,
        user: Option<UserId>,
        metric: Option<&MetricKey>,
        periods: &CurrentPeriods,
        now: DateTime<Utc>,
    ) -> Vec<CounterUsage> {
        let current = [periods.daily, periods.monthly];
        let mut counters: Vec<CounterUsage> = self
            .counters
            .iter()
            .filter(|(k, _)| k.user.is_none() || k.user == user)
            .filter(|(k, _)| metric.is_none_or(|m| m == &k.metric))
            .filter(|(k, _)| current.contains(&k.period))
            .map(|(k, used)| {
                let scope = LimitScope::from(k.user);
                CounterUsage {
                    scope,
                    metric: k.metric.clone(),
                    period: k.period,
                    used: *used,
                    reserved: self.reserved(scope, &k.metric, k.period, now),
                }
            })
            .collect();
        counters
            .sort_by(|a, b| (&a.metric, a.period, a.scope).cmp(&(&b.metric, b.period, b.scope)));
        counters
    }

    /// Check-and-reserve under the store's lock.
    pub(super) fn reserve(&mut self, request: &ReserveRequest) -> (bool, Vec<LimitUsage>) {
        self.holds
            .retain(|_, h| h.expires_at > request.purge_before);
        let limits = self.applicable_limits(
            Some(request.user),
            Some(&request.metric),
            &request.periods,
            request.now,
        );
        let granted = limits
            .iter()
            .all(|u| u.limit.mode == LimitMode::Soft || u.fits(request.amount));
        if granted {
            self.holds.insert(
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
        (granted, limits)
    }
}

impl Tenant {
    /// The counters of `period` (one metric or all) that disagree with the
    /// event log, ordered by scope, then metric.
    pub(super) fn drift(
        &self,
        period: PeriodKey,
        metric: Option<&MetricKey>,
    ) -> Vec<crate::store::CounterDrift> {
        let wanted = |m: &MetricKey| metric.is_none_or(|w| w == m);
        let mut recomputed: BTreeMap<(LimitScope, MetricKey), Decimal> = BTreeMap::new();
        for event in &self.log {
            let counted_in = match period.period {
                crate::limits::Period::Daily => event.periods.daily,
                crate::limits::Period::Monthly => event.periods.monthly,
            };
            if counted_in != period {
                continue;
            }
            let scopes = [
                Some(LimitScope::Organization),
                event.user.map(LimitScope::User),
            ];
            for (m, amount) in event.amounts.iter().filter(|(m, _)| wanted(m)) {
                for scope in scopes.iter().flatten() {
                    *recomputed.entry((*scope, m.clone())).or_default() += *amount;
                }
            }
        }
        let mut all: BTreeMap<(LimitScope, MetricKey), (Decimal, Decimal)> = recomputed
            .into_iter()
            .map(|(k, sum)| (k, (Decimal::ZERO, sum)))
            .collect();
        for (key, used) in &self.counters {
            if key.period == period && wanted(&key.metric) {
                all.entry((LimitScope::from(key.user), key.metric.clone()))
                    .or_insert((Decimal::ZERO, Decimal::ZERO))
                    .0 = *used;
            }
        }
        all.into_iter()
            .filter(|(_, (counted, recomputed))| counted != recomputed)
            .map(
                |((scope, metric), (counted, recomputed))| crate::store::CounterDrift {
                    scope,
                    metric,
                    period,
                    counted,
                    recomputed,
                },
            )
            .collect()
    }
}
