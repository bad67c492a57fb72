//! `MeteringStore` for [`MemoryStore`]: recording, reading and holding usage, each under the one lock.

use crate::error::{Error, Result};
use crate::ids::{EventId, UserId};
use crate::limits::{LimitScope, UsageSnapshot};
use crate::model::UsageRecord;
use crate::store::{
    CommitOutcome, CommitRequest, CounterScope, CounterValue, HistoryQuery, MeteringStore,
    RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, UsageQuery,
};
use async_trait::async_trait;

use super::MemoryStore;

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
impl MeteringStore for MemoryStore {
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
}
