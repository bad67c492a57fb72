//! `LeaseStore` for [`MemoryStore`]: leases beside the tenants, under the one lock.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::lease::{LEASE_METADATA_KEY, LeaseGrant, LeaseId, LeaseRequest, lease_grant};
use crate::limits::{CurrentPeriods, LimitMode, LimitScope, LimitUsage, PeriodKey};
use crate::model::UsageRecord;
use crate::store::LeaseStore;

use super::MemoryStore;

/// One lease, as the store keeps it.
#[derive(Debug, Clone)]
pub(super) struct LeaseRow {
    pub(super) user: UserId,
    pub(super) metric: MetricKey,
    pub(super) periods: CurrentPeriods,
    pub(super) granted: Decimal,
    pub(super) consumed: Decimal,
    pub(super) expires_at: DateTime<Utc>,
}

impl LeaseRow {
    fn outstanding(&self) -> Decimal {
        (self.granted - self.consumed).max(Decimal::ZERO)
    }
}

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct LeaseState {
    /// Every organization's leases, live or expired (until purged).
    by_org: HashMap<OrgId, HashMap<LeaseId, LeaseRow>>,
}

impl LeaseState {
    /// Whether the organization has leases (live or not yet purged).
    pub(super) fn has_any(&self, org: OrgId) -> bool {
        self.by_org.get(&org).is_some_and(|l| !l.is_empty())
    }

    /// What live leases hold against a limit of `scope` on `metric` in
    /// `period`, except lease `except`.
    pub(super) fn leased(
        &self,
        org: OrgId,
        scope: LimitScope,
        metric: &MetricKey,
        period: PeriodKey,
        now: DateTime<Utc>,
        except: Option<LeaseId>,
    ) -> Decimal {
        let Some(leases) = self.by_org.get(&org) else {
            return Decimal::ZERO;
        };
        leases
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(_, l)| l)
            .filter(|l| l.expires_at > now && &l.metric == metric)
            .filter(|l| l.periods.key(period.period) == period)
            .filter(|l| scope.user().is_none_or(|u| u == l.user))
            .fold(Decimal::ZERO, |sum, l| sum.saturating_add(l.outstanding()))
    }

    /// Adds what live leases hold to each limit's `reserved`.
    pub(super) fn add_to(&self, org: OrgId, limits: &mut [LimitUsage], now: DateTime<Utc>) {
        if !self.by_org.contains_key(&org) {
            return;
        }
        for u in limits {
            let leased = self.leased(org, u.limit.scope, &u.limit.metric, u.period, now, None);
            u.reserved = u.reserved.saturating_add(leased);
        }
    }

    /// The leases that the new events of `batch` were decided on, with what
    /// they consume: call before recording, with the set of recorded ids.
    pub(super) fn consumption(
        &self,
        batch: &[&UsageRecord],
        recorded: impl Fn(OrgId, crate::ids::EventId) -> bool,
    ) -> Vec<(OrgId, LeaseId, Decimal)> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for record in batch {
            let Some(lease) = lease_of(record) else {
                continue;
            };
            let org = record.org();
            if recorded(org, record.id) || !seen.insert((org, record.id)) {
                continue;
            }
            let Some(row) = self.by_org.get(&org).and_then(|l| l.get(&lease)) else {
                continue;
            };
            if record.user() != Some(row.user) {
                continue;
            }
            let amount = record
                .amounts
                .iter()
                .filter(|(m, _)| m == &row.metric)
                .fold(Decimal::ZERO, |sum, (_, a)| sum.saturating_add(*a));
            if !amount.is_zero() {
                out.push((org, lease, amount));
            }
        }
        out
    }

    /// Counts recorded amounts as consumed from their leases.
    pub(super) fn consume(&mut self, consumption: Vec<(OrgId, LeaseId, Decimal)>) {
        for (org, lease, amount) in consumption {
            if let Some(row) = self.by_org.get_mut(&org).and_then(|l| l.get_mut(&lease)) {
                row.consumed = row.consumed.saturating_add(amount);
            }
        }
    }
}

/// The lease an event's metadata names, if any.
pub(super) fn lease_of(record: &UsageRecord) -> Option<LeaseId> {
    let value = record.event.metadata.get(LEASE_METADATA_KEY)?;
    value
        .as_str()?
        .parse::<uuid::Uuid>()
        .ok()
        .map(LeaseId::from)
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn lease_budget(&self, request: &LeaseRequest) -> Result<LeaseGrant> {
        request.validate()?;
        let mut state = self.lock();
        let state = &mut *state;
        let org = request.org;
        let tenant = state
            .tenants
            .get_mut(&org)
            .ok_or_else(|| crate::store::org_not_found(org))?;
        // Holds purge on reserve; leases purge here.
        let leases = state.leases.by_org.entry(org).or_default();
        leases.retain(|_, l| l.expires_at > request.purge_before);
        let consumed = match leases.get(&request.id) {
            Some(row)
                if row.user != request.user
                    || row.metric != request.metric
                    || row.periods != request.periods =>
            {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "lease {} in organization {org} is for another user, metric or period",
                        request.id
                    ),
                ));
            }
            Some(row) => row.consumed,
            None => Decimal::ZERO,
        };
        let base = request.spoken_for.max(consumed);
        let own = base - consumed;
        let mut limits = tenant.applicable_limits(
            Some(request.user),
            Some(&request.metric),
            &request.periods,
            request.now,
        );
        for u in &mut limits {
            let others = state.leases.leased(
                org,
                u.limit.scope,
                &u.limit.metric,
                u.period,
                request.now,
                Some(request.id),
            );
            u.reserved = u.reserved.saturating_add(others).saturating_add(own);
        }
        let headroom = limits
            .iter()
            .filter(|u| u.limit.mode == LimitMode::Hard)
            .map(LimitUsage::headroom)
            .min();
        let free = lease_grant(request.want, request.min, request.share, headroom);
        let row = LeaseRow {
            user: request.user,
            metric: request.metric.clone(),
            periods: request.periods,
            granted: base + free,
            consumed,
            expires_at: request.expires_at,
        };
        let grant = LeaseGrant {
            free,
            granted: row.granted,
            consumed,
            headroom: headroom.map(|h| h - free),
            expires_at: row.expires_at,
        };
        state
            .leases
            .by_org
            .entry(org)
            .or_default()
            .insert(request.id, row);
        Ok(grant)
    }
}
