//! Feature access for people in an organization.
//!
//! Every read here is of the organization's *effective* features: its plan
//! version's (the trial's fallback once a trial ended) with its own
//! unexpired rows, the overrides, on top (see [`plans`](super::plans)). A
//! feature in neither is off. Reads go through a per-org cache (bounded
//! size, configurable TTL), which is used no later than the view's own
//! `valid_until` (an override lapsing, a trial ending), so a warm cache
//! never serves a lapsed override or an ended trial (to within the
//! clock's coarse reading, a few milliseconds). A change made through the
//! same [`Tenancy`] invalidates it at once (the cache is a store wrapper
//! that drops what its own writes change: features, limits, rate limits,
//! plan versions, assignments), and a change made elsewhere (another
//! instance, SQL) is seen once propagated, or within the TTL at the
//! latest. Operators change features through [`Operator`](crate::Operator).

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Tenancy;
use super::cache::CachedEntitlements;
use crate::error::{Error, Result};
use crate::ids::{AsFeatureKey, FeatureKey, OrgId};
use crate::model::{Action, Feature, TenantContext};

/// An organization's features as loaded into the cache, by key.
///
/// Keys are hashed with foldhash: this lookup is on the hot path of every
/// `has_feature`, keys are short, and the map's contents come from the
/// operator, not from requests, so HashDoS resistance buys nothing here.
#[derive(Debug, Default)]
pub(super) struct OrgFeatures {
    by_key: HashMap<FeatureKey, Feature, foldhash::fast::RandomState>,
}

impl OrgFeatures {
    pub(super) fn new(features: Vec<Feature>) -> Self {
        OrgFeatures {
            by_key: features.into_iter().map(|f| (f.key.clone(), f)).collect(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&Feature> {
        self.by_key.get(key)
    }

    fn is_enabled(&self, key: &str) -> bool {
        self.get(key).is_some_and(|f| f.enabled)
    }
}

impl Tenancy {
    /// Whether the active organization has `key` enabled in its effective
    /// view (plan and overrides). Unknown and disabled features are `false`; an invalid key is `InvalidInput`. A
    /// [`FeatureKey`] constant skips the key check.
    ///
    /// ```
    /// # use tenancy::{FeatureKey, MemoryStore, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// const VEO_AVATARS: FeatureKey = FeatureKey::from_static("veo_avatars");
    ///
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let alice = UserId::new_v7();
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// assert!(!tenancy.has_feature(&ctx, VEO_AVATARS).await?);
    ///
    /// let operator = PlatformOperator::new("admin-cli");
    /// tenancy.operator(&operator).enable_feature(org.id, "veo_avatars").await?;
    /// assert!(tenancy.has_feature(&ctx, "veo_avatars").await?);
    /// # Ok(()) }
    /// ```
    pub async fn has_feature(&self, ctx: &TenantContext, key: impl AsFeatureKey) -> Result<bool> {
        let key = key.feature_key()?;
        // The cached path stays synchronous and reads the entry in place: no
        // nested future and no reference count on a hit.
        let hit = self
            .inner
            .store
            .with_cached_features(ctx.org(), |features| features.is_enabled(key));
        match hit {
            Some(enabled) => Ok(enabled),
            None => Ok(self
                .org_entitlements(ctx.org())
                .await?
                .features
                .is_enabled(key)),
        }
    }

    /// The configuration of `key` for the active organization, decoded into
    /// `T`; `None` when the feature is unknown or disabled. A config that
    /// does not decode into `T` is a `Config` error naming the feature.
    pub async fn feature_config<T: DeserializeOwned>(
        &self,
        ctx: &TenantContext,
        key: impl AsFeatureKey,
    ) -> Result<Option<T>> {
        let key = key.feature_key()?;
        let entitlements = self.org_entitlements(ctx.org()).await?;
        let Some(feature) = entitlements.features.get(key).filter(|f| f.enabled) else {
            return Ok(None);
        };
        T::deserialize(&feature.config).map(Some).map_err(|e| {
            Error::config(format!(
                "feature {key}'s config does not decode into {}",
                std::any::type_name::<T>()
            ))
            .with_source(e)
        })
    }

    /// The active organization's effective features, enabled or not: its
    /// plan's with its unexpired overrides on top, by key, read fresh from
    /// the store. Any role may read them.
    pub async fn features(&self, ctx: &TenantContext) -> Result<Vec<Feature>> {
        ctx.require(Action::ViewOrganization)?;
        let entitlements = self.inner.store.fresh_entitlements(ctx.org()).await?;
        Ok(entitlements.features.into_iter().map(|(f, _)| f).collect())
    }

    /// The organization's effective entitlements, from the cache when
    /// fresh.
    async fn org_entitlements(&self, org: OrgId) -> Result<Arc<CachedEntitlements>> {
        self.inner.store.cached_entitlements(org).await
    }
}
