//! `FeatureStore` for [`MemoryStore`]: feature rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::{FeatureKey, OrgId};
use crate::model::plan::EntitlementChange;
use crate::model::{Feature, FeatureChange};
use crate::store::FeatureStore;

use super::MemoryStore;

#[async_trait]
impl FeatureStore for MemoryStore {
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
        let before = tenant.features.insert(key.clone(), feature.clone());
        state
            .audit
            .feature(org, before.as_ref(), Some(&feature), Some(now));
        state.entitlements_changed(EntitlementChange::Org(org));
        Ok(feature)
    }

    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool> {
        let mut state = self.lock();
        let Ok(tenant) = state.tenant_mut(org) else {
            return Ok(false);
        };
        let Some(removed) = tenant.features.remove(key) else {
            return Ok(false);
        };
        state.audit.feature(org, Some(&removed), None, None);
        state.entitlements_changed(EntitlementChange::Org(org));
        Ok(true)
    }
}
