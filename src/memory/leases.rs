//! `LeaseStore` for [`MemoryStore`]: leases beside the tenants, under the one lock.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::lease::{
    LEASE_METADATA_KEY, LeaseDrift, LeaseGrant, LeaseId, LeaseRequest, lease_grant,
};
use crate::limits::{CurrentPeriods, LimitMode, LimitScope, LimitUsage, PeriodKey};
use crate::model::UsageRecord;
use crate::store::{LeaseStore, ReconcileQuery};

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
    /// The sum of the lease's metric over the events recorded under it
    /// (its organization's and user's, by id the first time): what the
    /// event log says it consumed, kept apart from `consumed`, which
    /// reconciliation compares with it.
    pub(super) recorded: Decimal,
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
                row.recorded = row.recorded.saturating_add(amount);
            }
        }
    }

    /// The leases of `query` whose `consumed` disagrees with the events
    /// recorded under them, ordered by id.
    fn drift(&self, query: &ReconcileQuery) -> Vec<LeaseDrift> {
        let Some(leases) = self.by_org.get(&query.org) else {
            return Vec::new();
        };
        let mut drift: Vec<LeaseDrift> = leases
            .iter()
            .filter(|(_, l)| l.periods.key(query.period.period) == query.period)
            .filter(|(_, l)| query.metric.as_ref().is_none_or(|m| m == &l.metric))
            .filter_map(|(id, l)| {
                let recomputed = l.recorded;
                (recomputed != l.consumed).then(|| LeaseDrift {
                    lease: *id,
                    user: l.user,
                    metric: l.metric.clone(),
                    consumed: l.consumed,
                    recomputed,
                })
            })
            .collect();
        drift.sort_by_key(|d| d.lease);
        drift
    }
}

/// The lease an event's metadata names, if any: a string in the
/// hyphenated form, either case, as the SQL trigger reads it (its pattern
/// `^[0-9a-fA-F]{8}-…-[0-9a-fA-F]{12}$`); the braced, URN and simple forms
/// that `Uuid` would also parse name no lease there, nor here.
pub(super) fn lease_of(record: &UsageRecord) -> Option<LeaseId> {
    let text = record.event.metadata.get(LEASE_METADATA_KEY)?.as_str()?;
    // 36 characters parse only as the hyphenated form.
    if text.len() != 36 {
        return None;
    }
    text.parse::<uuid::Uuid>().ok().map(LeaseId::from)
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
        let (consumed, recorded) = match leases.get_mut(&request.id) {
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
            Some(row) => (row.consumed, row.recorded),
            None => (Decimal::ZERO, Decimal::ZERO),
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
            recorded,
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

    async fn reconcile_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>> {
        Ok(self.lock().leases.drift(query))
    }

    /// Under the one lock, which every record takes too.
    async fn repair_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>> {
        let mut state = self.lock();
        state.tenant_mut(query.org)?;
        let drift = state.leases.drift(query);
        if let Some(leases) = state.leases.by_org.get_mut(&query.org) {
            for d in &drift {
                if let Some(row) = leases.get_mut(&d.lease) {
                    row.consumed = d.recomputed;
                }
            }
        }
        Ok(drift)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone, Utc};
    use rust_decimal::Decimal;

    use super::*;
    use crate::ids::{MetricKey, OrgId};
    use crate::limits::LimitScope;
    use crate::limits::lease::LeaseDrift;
    use crate::model::{Organization, UsageEvent};
    use crate::store::{MeteringStore, OrgStore, UsageQuery};

    fn dec(n: i64) -> Decimal {
        Decimal::from(n)
    }

    /// Drift injected into leases' `consumed`: the check lists exactly the
    /// leases of the period asked for, with what they say and what their
    /// events sum to; the repair restores it (and what they hold), and a
    /// second check and a retried repair find nothing.
    #[tokio::test]
    async fn injected_lease_drift_is_found_and_repaired() {
        let store = MemoryStore::new();
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).unwrap();
        let owner = UserId::new_v7();
        let org = store
            .create_organization(&Organization {
                id: OrgId::new_v7(),
                name: "Acme".into(),
                slug: crate::ids::Slug::parse("acme").unwrap(),
                owner_user_id: Some(owner),
                timezone: chrono_tz::Tz::UTC,
                created_at: now,
            })
            .await
            .unwrap();
        let today = CurrentPeriods::at(now, org.timezone);
        let yesterday = CurrentPeriods::at(now - TimeDelta::days(1), org.timezone);
        let lease = |id, periods, want: i64| {
            LeaseRequest::new(
                id,
                org.id,
                owner,
                MetricKey::TOKENS,
                periods,
                now,
                now + TimeDelta::seconds(30),
                Decimal::ZERO,
                dec(want),
            )
        };
        let (a, b, old) = (LeaseId::new_v7(), LeaseId::new_v7(), LeaseId::new_v7());
        store.lease_budget(&lease(a, today, 400)).await.unwrap();
        store.lease_budget(&lease(b, today, 100)).await.unwrap();
        store
            .lease_budget(&lease(old, yesterday, 60))
            .await
            .unwrap();
        let on = |id: LeaseId, tokens: i64| {
            let mut e = UsageEvent::new(org.id).quantity(MetricKey::TOKENS, dec(tokens));
            e.user = Some(owner);
            e.metadata = serde_json::json!({ LEASE_METADATA_KEY: id.to_string() });
            e.into_record(now, org.timezone).unwrap()
        };
        store
            .record_usage(&[on(a, 150), on(b, 30), on(old, 10)])
            .await
            .unwrap();
        let reserved = || async {
            let query = UsageQuery::new(org.id, today, now);
            let snapshot = store.usage_snapshot(&query).await.unwrap();
            snapshot
                .counters
                .iter()
                .find(|c| c.scope == LimitScope::Organization && c.period == today.daily)
                .map(|c| c.reserved)
                .unwrap()
        };
        assert_eq!(reserved().await, dec(250 + 70));
        {
            let mut state = store.lock();
            let leases = state.leases.by_org.get_mut(&org.id).unwrap();
            // Too low (over-holds), too high (under-holds), and yesterday's.
            leases.get_mut(&a).unwrap().consumed = dec(100);
            leases.get_mut(&b).unwrap().consumed = dec(90);
            leases.get_mut(&old).unwrap().consumed = dec(0);
        }
        assert_eq!(reserved().await, dec(300 + 10));
        let drift = |lease, consumed: i64, recomputed: i64| LeaseDrift {
            lease,
            user: owner,
            metric: MetricKey::TOKENS,
            consumed: dec(consumed),
            recomputed: dec(recomputed),
        };
        let mut want = vec![drift(a, 100, 150), drift(b, 90, 30)];
        want.sort_by_key(|d| d.lease);
        let day = ReconcileQuery::new(org.id, today.daily);
        assert_eq!(store.reconcile_leases(&day).await.unwrap(), want);
        let tokens = day.clone().with_metric(Some(MetricKey::TOKENS));
        assert_eq!(store.reconcile_leases(&tokens).await.unwrap(), want);
        let cost = day.clone().with_metric(Some(MetricKey::COST_USD));
        assert_eq!(store.reconcile_leases(&cost).await.unwrap(), []);
        // The month has all three.
        let month = ReconcileQuery::new(org.id, today.monthly);
        let mut all = vec![drift(a, 100, 150), drift(b, 90, 30), drift(old, 0, 10)];
        all.sort_by_key(|d| d.lease);
        assert_eq!(store.reconcile_leases(&month).await.unwrap(), all);

        assert_eq!(store.repair_leases(&day).await.unwrap(), want);
        assert_eq!(store.reconcile_leases(&day).await.unwrap(), []);
        assert_eq!(store.repair_leases(&day).await.unwrap(), []);
        assert_eq!(reserved().await, dec(250 + 70));
        assert_eq!(
            store.reconcile_leases(&month).await.unwrap(),
            [drift(old, 0, 10)]
        );
        // A renewal after the repair starts from the repaired value.
        let renewed = store.lease_budget(&lease(a, today, 0)).await.unwrap();
        assert_eq!(renewed.consumed, dec(150));
    }

    /// The forms of a lease id in metadata that name it, as in SQL: the
    /// hyphenated one in either case; not the braced, URN or simple ones.
    #[test]
    fn only_the_hyphenated_form_names_a_lease() {
        let id = LeaseId::new_v7();
        let uuid = uuid::Uuid::parse_str(&id.to_string()).unwrap();
        let named = |text: String| {
            let mut r = UsageEvent::new(OrgId::new_v7())
                .into_record(Utc::now(), chrono_tz::Tz::UTC)
                .unwrap();
            r.event.metadata = serde_json::json!({ LEASE_METADATA_KEY: text });
            lease_of(&r)
        };
        assert_eq!(named(id.to_string()), Some(id));
        assert_eq!(named(id.to_string().to_uppercase()), Some(id));
        for other in [
            uuid.braced().to_string(),
            uuid.urn().to_string(),
            uuid.simple().to_string(),
        ] {
            assert_eq!(named(other.clone()), None, "{other}");
        }
    }
}
