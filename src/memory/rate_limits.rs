//! `RateLimitStore` for [`MemoryStore`]: the limits and their TATs, under
//! the store's one lock, so each decision is atomic.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{LimitId, OrgId};
use crate::limits::entitlements;
use crate::limits::rate::{self, RateLimit, RateRequest, RateResult, RateState};
use crate::model::plan::EntitlementChange;
use crate::store::{RateLimitStore, org_not_found};

use super::MemoryStore;
use super::audit::time;
use super::tenant::State;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct RateLimitState {
    /// Each organization's limits, ordered by creation time, then id.
    limits: HashMap<OrgId, Vec<RateLimit>>,
    /// Each limit's TAT (µs since the Unix epoch), by organization and
    /// limit id: an organization's own row's id, or its plan entry's (one
    /// plan entry, shared by every organization on the version, has one
    /// state per organization).
    tats: HashMap<(OrgId, LimitId), i64>,
    /// Calls of this capability's methods, for tests that count round trips.
    calls: u64,
}

impl RateLimitState {
    fn states(&self, limits: impl Iterator<Item = RateLimit>) -> Vec<RateState> {
        limits
            .map(|limit| RateState {
                tat: self.tats.get(&(limit.org, limit.id)).copied(),
                limit,
            })
            .collect()
    }

    /// The organization's own rows (expired ones included).
    pub(super) fn rows(&self, org: OrgId) -> &[RateLimit] {
        self.limits.get(&org).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(feature = "test-util")]
impl MemoryStore {
    /// How many calls of its [`RateLimitStore`] methods this store has
    /// answered (feature `test-util`): what a test counts round trips by.
    pub fn rate_limit_calls(&self) -> u64 {
        self.lock().rate_limits.calls
    }
}

/// The audit event of a change to one rate limit: the row as the SQL
/// trigger writes it (`usage_rate_limits`' column names).
fn audit_rate_limit(state: &mut State, before: Option<&RateLimit>, after: Option<&RateLimit>) {
    let row = |l: &RateLimit| {
        serde_json::json!({
            "id": l.id,
            "organization_id": l.org,
            "user_id": l.scope.user(),
            "metric": l.metric.as_str(),
            "rate_window": l.window.as_str(),
            "limit_value": l.value,
            "burst": l.burst,
            "mode": l.mode.as_str(),
            "created_at": time(l.created_at),
            "expires_at": l.expires_at.map(time),
        })
    };
    let Some(limit) = after.or(before) else {
        return;
    };
    state.audit.write(
        limit.org,
        "rate_limit",
        limit.id.to_string(),
        before.map(row),
        after.map(row),
        Some(limit.created_at),
    );
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn rate_limit_states(&self, org: OrgId) -> Result<Vec<RateState>> {
        let mut state = self.lock();
        state.rate_limits.calls += 1;
        if state.tenant(org).is_none() {
            return Ok(Vec::new());
        }
        let rates = &state.rate_limits;
        let limits = rates.limits.get(&org).into_iter().flatten().cloned();
        Ok(rates.states(limits))
    }

    async fn put_rate_limit(&self, limit: &RateLimit) -> Result<RateLimit> {
        let mut state = self.lock();
        state.rate_limits.calls += 1;
        if state.tenant(limit.org).is_none() {
            return Err(org_not_found(limit.org));
        }
        let limits = state.rate_limits.limits.entry(limit.org).or_default();
        let same_slot = |l: &&mut RateLimit| {
            l.scope == limit.scope && l.metric == limit.metric && l.window == limit.window
        };
        let (before, after) = if let Some(existing) = limits.iter_mut().find(same_slot) {
            let before = existing.clone();
            existing.value = limit.value;
            existing.burst = limit.burst;
            existing.mode = limit.mode;
            existing.expires_at = limit.expires_at;
            (Some(before), existing.clone())
        } else {
            let key = |l: &RateLimit| (l.created_at, l.id);
            let at = limits.partition_point(|l| key(l) < key(limit));
            limits.insert(at, limit.clone());
            (None, limit.clone())
        };
        audit_rate_limit(&mut state, before.as_ref(), Some(&after));
        state.entitlements_changed(EntitlementChange::Org(limit.org));
        Ok(after)
    }

    async fn delete_rate_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let mut state = self.lock();
        state.rate_limits.calls += 1;
        let rates = &mut state.rate_limits;
        let Some(limits) = rates.limits.get_mut(&org) else {
            return Ok(false);
        };
        let Some(at) = limits.iter().position(|l| l.id == id) else {
            return Ok(false);
        };
        let removed = limits.remove(at);
        rates.tats.remove(&(org, id));
        audit_rate_limit(&mut state, Some(&removed), None);
        state.entitlements_changed(EntitlementChange::Org(org));
        Ok(true)
    }

    async fn acquire_rate(&self, request: &RateRequest) -> Result<RateResult> {
        let mut state = self.lock();
        state.rate_limits.calls += 1;
        let state = &mut *state;
        let Some(tenant) = state.tenants.get(&request.org) else {
            return Ok(RateResult {
                granted: true,
                limits: Vec::new(),
            });
        };
        let rates = &mut state.rate_limits;
        // The effective rate limits: the plan's, with unexpired rows on top.
        let mut applicable: Vec<RateLimit> = entitlements::effective_rate_limits(
            request.org,
            tenant.plan_at(request.now),
            rates.rows(request.org),
            request.now,
        )
        .into_iter()
        .map(|(l, _)| l)
        .filter(|l| request.applies(l))
        .collect();
        applicable.sort_by_key(|l| l.id);
        let limits = rates.states(applicable.into_iter());
        let (granted, tats) = rate::apply(request, &limits);
        for (s, tat) in limits.iter().zip(tats) {
            if let Some(tat) = tat {
                rates.tats.insert((request.org, s.limit.id), tat);
            }
        }
        Ok(RateResult { granted, limits })
    }
}
