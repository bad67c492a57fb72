//! Per-organization feature access: the rows of `org_features`.
//!
//! A feature is off unless a row enables it. Reads go through a per-org
//! cache (bounded size, configurable TTL); a change made through the same
//! [`Tenancy`] invalidates it at once, and a change made
//! elsewhere (another instance, SQL) is seen within the TTL.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{Action, PlatformOperator, TenantContext};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{FeatureKey, OrgId};
use crate::tenancy::Tenancy;

/// One row of `org_features`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The feature's key.
    pub key: FeatureKey,
    /// Whether it is on.
    pub enabled: bool,
    /// Its configuration; `null` when none is set.
    pub config: serde_json::Value,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// An organization's features as loaded into the cache, by key.
///
/// Keys are hashed with foldhash: this lookup is on the hot path of every
/// `has_feature`, keys are short, and the map's contents come from the
/// operator, not from requests, so HashDoS resistance buys nothing here.
#[derive(Debug, Default)]
pub(crate) struct OrgFeatures {
    by_key: HashMap<FeatureKey, Feature, foldhash::fast::RandomState>,
}

impl OrgFeatures {
    pub(crate) fn new(features: Vec<Feature>) -> Self {
        OrgFeatures {
            by_key: features.into_iter().map(|f| (f.key.clone(), f)).collect(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Feature> {
        self.by_key.get(key)
    }

    pub(crate) fn is_enabled(&self, key: &str) -> bool {
        self.get(key).is_some_and(|f| f.enabled)
    }
}

impl Tenancy {
    /// Whether the active organization has `key` enabled. Unknown and
    /// disabled features are `false`; an invalid key is `InvalidInput`.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let alice = UserId::new_v7();
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// assert!(!tenancy.has_feature(&ctx, "veo_avatars").await?);
    ///
    /// let operator = PlatformOperator::new("admin-cli");
    /// tenancy.enable_feature(&operator, org.id, "veo_avatars").await?;
    /// assert!(tenancy.has_feature(&ctx, "veo_avatars").await?);
    /// # Ok(()) }
    /// ```
    pub async fn has_feature(&self, ctx: &TenantContext, key: &str) -> Result<bool> {
        let key = FeatureKey::validate(key)?;
        // The cached path stays synchronous: no nested future on a hit.
        if let Some(hit) = self.inner.features.get(&ctx.org(), self.cache_now()) {
            return Ok(hit.is_enabled(key));
        }
        Ok(self.org_features(ctx.org()).await?.is_enabled(key))
    }

    /// The configuration of `key` for the active organization, decoded into
    /// `T`; `None` when the feature is unknown or disabled. A config that
    /// does not decode into `T` is a `Config` error naming the feature.
    pub async fn feature_config<T: DeserializeOwned>(
        &self,
        ctx: &TenantContext,
        key: &str,
    ) -> Result<Option<T>> {
        let key = FeatureKey::parse(key)?;
        let features = self.org_features(ctx.org()).await?;
        let Some(feature) = features.get(key.as_str()).filter(|f| f.enabled) else {
            return Ok(None);
        };
        T::deserialize(&feature.config).map(Some).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "feature {key}'s config does not decode into {}",
                    std::any::type_name::<T>()
                ),
            )
            .with_source(e)
        })
    }

    /// Every feature row of the active organization, enabled or not.
    pub async fn features(&self, ctx: &TenantContext) -> Result<Vec<Feature>> {
        ctx.require(Action::ViewOrganization)?;
        self.inner.store.features(ctx.org()).await
    }

    /// Turns `key` on for `org`, keeping its config.
    pub async fn enable_feature(&self, op: &PlatformOperator, org: OrgId, key: &str) -> Result<()> {
        self.update_feature(op, org, key, |f| f.enabled = true)
            .await
    }

    /// Turns `key` off for `org`, keeping its config.
    pub async fn disable_feature(
        &self,
        op: &PlatformOperator,
        org: OrgId,
        key: &str,
    ) -> Result<()> {
        self.update_feature(op, org, key, |f| f.enabled = false)
            .await
    }

    /// Sets `key`'s config for `org`, keeping whether it is enabled (a new
    /// row starts disabled).
    pub async fn set_feature_config(
        &self,
        op: &PlatformOperator,
        org: OrgId,
        key: &str,
        config: impl Serialize,
    ) -> Result<()> {
        let config = serde_json::to_value(config).map_err(|e| {
            Error::invalid_input("config", "does not serialize to JSON").with_source(e)
        })?;
        self.update_feature(op, org, key, |f| f.config = config)
            .await
    }

    /// Deletes `key`'s row for `org`; whether it existed.
    pub async fn remove_feature(
        &self,
        op: &PlatformOperator,
        org: OrgId,
        key: &str,
    ) -> Result<bool> {
        let key = FeatureKey::parse(key)?;
        let removed = self.inner.store.delete_feature(org, &key).await;
        self.inner.features.invalidate(&org);
        tracing::info!(operator = op.name(), %org, %key, removed = ?removed.as_ref().ok(), "feature removed");
        removed
    }

    /// Every feature row of `org`, for operator tools.
    pub async fn features_of(&self, _op: &PlatformOperator, org: OrgId) -> Result<Vec<Feature>> {
        self.inner.store.features(org).await
    }

    async fn update_feature(
        &self,
        op: &PlatformOperator,
        org: OrgId,
        key: &str,
        change: impl FnOnce(&mut Feature),
    ) -> Result<()> {
        let key = FeatureKey::parse(key)?;
        let existing = self.inner.store.features(org).await?;
        let mut feature = existing
            .into_iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| Feature {
                key: key.clone(),
                enabled: false,
                config: serde_json::Value::Null,
                updated_at: self.now(),
            });
        change(&mut feature);
        feature.updated_at = self.now();
        let result = self.inner.store.put_feature(org, &feature).await;
        // Invalidate even on error: the write may have landed.
        self.inner.features.invalidate(&org);
        result?;
        tracing::info!(operator = op.name(), %org, %key, enabled = feature.enabled, "feature changed");
        Ok(())
    }

    /// The organization's features, from the cache when fresh.
    async fn org_features(&self, org: OrgId) -> Result<Arc<OrgFeatures>> {
        let load = async {
            let features = self.inner.store.features(org).await?;
            Ok(Arc::new(OrgFeatures::new(features)))
        };
        self.inner
            .features
            .get_or_load(org, self.cache_now(), load)
            .await
    }
}
