//! `LimitStore` for [`MemoryStore`]: limits, kept in the order `limits()` promises.

use crate::error::Result;
use crate::ids::{LimitId, OrgId};
use crate::limits::Limit;
use crate::model::plan::EntitlementChange;
use crate::store::LimitStore;
use async_trait::async_trait;

use super::MemoryStore;

#[async_trait]
impl LimitStore for MemoryStore {
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
            let before = existing.clone();
            existing.value = limit.value;
            existing.mode = limit.mode;
            existing.expires_at = limit.expires_at;
            let after = existing.clone();
            state
                .audit
                .limit(Some(&before), Some(&after), Some(limit.created_at));
            state.entitlements_changed(EntitlementChange::Org(limit.org));
            return Ok(after);
        }
        // Kept in the order limits() promises: creation time, then id.
        let key = |l: &Limit| (l.created_at, l.id);
        let at = tenant.limits.partition_point(|l| key(l) < key(limit));
        tenant.limits.insert(at, limit.clone());
        state.audit.limit(None, Some(limit), Some(limit.created_at));
        state.entitlements_changed(EntitlementChange::Org(limit.org));
        Ok(limit.clone())
    }

    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let mut state = self.lock();
        let Ok(tenant) = state.tenant_mut(org) else {
            return Ok(false);
        };
        let Some(at) = tenant.limits.iter().position(|l| l.id == id) else {
            return Ok(false);
        };
        let removed = tenant.limits.remove(at);
        state.audit.limit(Some(&removed), None, None);
        state.entitlements_changed(EntitlementChange::Org(org));
        Ok(true)
    }
}
