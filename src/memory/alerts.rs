//! `AlertStore` for [`MemoryStore`]: alert claims: a set of keys per organization.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::limits::AlertKey;
use crate::store::{AlertStore, org_not_found};

use super::MemoryStore;

#[async_trait]
impl AlertStore for MemoryStore {
    async fn claim_alert(&self, key: &AlertKey, _fired_at: DateTime<Utc>) -> Result<bool> {
        let mut state = self.lock();
        let tenant = state
            .tenant_mut(key.org)
            .map_err(|_| org_not_found(key.org))?;
        Ok(tenant.alerts.insert(key.clone()))
    }
}
