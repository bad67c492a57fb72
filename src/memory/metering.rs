//! `MeteringStore` for [`MemoryStore`]: recording, reading and holding usage, each under the one lock.

use crate::error::{Error, Result};
use crate::ids::{EventId, UserId};
use crate::limits::{LimitMode, LimitScope, UsageSnapshot};
use crate::model::UsageRecord;
use crate::store::{
    CommitOutcome, CommitRequest, CounterDrift, CounterScope, CounterValue, HistoryQuery,
    MeteringStore, ReconcileQuery, RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult,
    UsageQuery,
};
use async_trait::async_trait;

use super::MemoryStore;
use super::leases::lease_of;
use super::tenant::{Hold, State};

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

/// Records a batch and, in the same step under the lock, counts what its
/// new events decided on a lease consumed from that lease.
fn record_and_consume(state: &mut State, batch: &[&UsageRecord]) -> Result<RecordOutcome> {
    let leased = batch.iter().any(|r| lease_of(r).is_some());
    if !leased {
        return state.record(batch);
    }
    let consumption = state
        .leases
        .consumption(batch, |org, id| state.events.contains(&(org, id)));
    let outcome = state.record(batch)?;
    state.leases.consume(consumption);
    Ok(outcome)
}

#[async_trait]
impl MeteringStore for MemoryStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome> {
        let batch: Vec<&UsageRecord> = batch.iter().collect();
        let mut state = self.lock();
        record_and_consume(&mut state, &batch)
    }

    async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot> {
        let state = self.lock();
        let Some(tenant) = state.tenant(query.org) else {
            return Ok(UsageSnapshot::default());
        };
        let metric = query.metric.as_ref();
        let mut limits = tenant.applicable_limits(query.user, metric, &query.periods, query.now);
        state.leases.add_to(query.org, &mut limits, query.now);
        let mut counters = tenant.counters_in(query.user, metric, &query.periods, query.now);
        for c in &mut counters {
            let leased = state
                .leases
                .leased(query.org, c.scope, &c.metric, c.period, query.now, None);
            c.reserved = c.reserved.saturating_add(leased);
        }
        Ok(UsageSnapshot { limits, counters })
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
        let state = &mut *state;
        let tenant = state
            .tenants
            .get_mut(&request.org)
            .ok_or_else(|| crate::store::org_not_found(request.org))?;
        if !state.leases.has_any(request.org) {
            let (granted, limits) = tenant.reserve(request);
            return Ok(ReserveResult { granted, limits });
        }
        // Check-and-reserve under the lock, live leases counted as held.
        tenant
            .holds
            .retain(|_, h| h.expires_at > request.purge_before);
        let mut limits = tenant.applicable_limits(
            Some(request.user),
            Some(&request.metric),
            &request.periods,
            request.now,
        );
        state.leases.add_to(request.org, &mut limits, request.now);
        let granted = limits
            .iter()
            .all(|u| u.limit.mode == LimitMode::Soft || u.fits(request.amount));
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
        let recorded = record_and_consume(&mut state, &[&usage])?.inserted == 1;
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

    async fn reconcile_usage(&self, query: &ReconcileQuery) -> Result<Vec<CounterDrift>> {
        let state = self.lock();
        Ok(state
            .tenant(query.org)
            .map(|t| t.drift(query.period, query.metric.as_ref()))
            .unwrap_or_default())
    }

    async fn repair_usage(&self, query: &ReconcileQuery) -> Result<Vec<CounterDrift>> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(query.org)?;
        let drift = tenant.drift(query.period, query.metric.as_ref());
        for d in &drift {
            let key = super::tenant::CounterKey {
                user: d.scope.user(),
                metric: d.metric.clone(),
                period: d.period,
            };
            tenant.counters.insert(key, d.recomputed);
        }
        Ok(drift)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;

    use super::super::tenant::CounterKey;
    use super::*;
    use crate::ids::{MetricKey, OrgId};
    use crate::limits::CurrentPeriods;
    use crate::model::{Organization, UsageEvent};
    use crate::store::{CounterDrift, OrgStore};

    /// Drift injected into the counters: the check lists exactly it, the
    /// repair restores what the log says, and a second check is empty.
    #[tokio::test]
    async fn injected_drift_is_found_and_repaired() {
        let store = MemoryStore::new();
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).unwrap();
        let (owner, member) = (UserId::new_v7(), UserId::new_v7());
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
        let event = |user: Option<UserId>, tokens: i64| {
            let mut e = UsageEvent::new(org.id).quantity(MetricKey::TOKENS, Decimal::from(tokens));
            e.user = user;
            e.into_record(now, org.timezone).unwrap()
        };
        store
            .record_usage(&[
                event(Some(owner), 10),
                event(Some(member), 20),
                event(None, 5),
            ])
            .await
            .unwrap();
        let day = CurrentPeriods::at(now, org.timezone).daily;
        let key = |user: Option<UserId>, metric: MetricKey| CounterKey {
            user,
            metric,
            period: day,
        };
        {
            let mut state = store.lock();
            let counters = &mut state.tenant_mut(org.id).unwrap().counters;
            // Counted 5 too many, a counter lost, an orphan counter.
            *counters.get_mut(&key(None, MetricKey::TOKENS)).unwrap() += Decimal::from(5);
            counters.remove(&key(Some(member), MetricKey::TOKENS));
            counters.insert(key(Some(owner), MetricKey::COST_USD), Decimal::from(3));
        }
        let drift = |scope, metric, counted: i64, recomputed: i64| CounterDrift {
            scope,
            metric,
            period: day,
            counted: Decimal::from(counted),
            recomputed: Decimal::from(recomputed),
        };
        let mut want = vec![
            drift(LimitScope::Organization, MetricKey::TOKENS, 40, 35),
            drift(LimitScope::User(owner), MetricKey::COST_USD, 3, 0),
            drift(LimitScope::User(member), MetricKey::TOKENS, 0, 20),
        ];
        want[1..].sort_by_key(|d| d.scope);
        let query = ReconcileQuery::new(org.id, day);
        assert_eq!(store.reconcile_usage(&query).await.unwrap(), want);
        let tokens = query.clone().with_metric(Some(MetricKey::TOKENS));
        let only_tokens: Vec<CounterDrift> = want
            .iter()
            .filter(|d| d.metric == MetricKey::TOKENS)
            .cloned()
            .collect();
        assert_eq!(store.reconcile_usage(&tokens).await.unwrap(), only_tokens);
        // Another period is untouched.
        let month = ReconcileQuery::new(org.id, CurrentPeriods::at(now, org.timezone).monthly);
        assert_eq!(store.reconcile_usage(&month).await.unwrap(), []);

        assert_eq!(store.repair_usage(&query).await.unwrap(), want);
        assert_eq!(store.reconcile_usage(&query).await.unwrap(), []);
        let state = store.lock();
        let counters = &state.tenant(org.id).unwrap().counters;
        assert_eq!(counters[&key(None, MetricKey::TOKENS)], Decimal::from(35));
        assert_eq!(
            counters[&key(Some(member), MetricKey::TOKENS)],
            Decimal::from(20)
        );
        assert_eq!(
            counters[&key(Some(owner), MetricKey::COST_USD)],
            Decimal::ZERO
        );
    }
}
