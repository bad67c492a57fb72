//! [`FeatureStore`]: per-organization feature rows.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::{FeatureKey, OrgId};
use crate::model::{Feature, FeatureChange};

use super::Backend;

/// Feature rows: per-organization flags with a JSON config.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names.
#[async_trait]
pub trait FeatureStore: Backend {
    /// Every feature row of an organization, by key.
    async fn features(&self, org: OrgId) -> Result<Vec<Feature>>;

    /// Applies `change` to one feature row in one atomic step (creating the
    /// row, disabled with a `null` config, if there is none), stamps it
    /// `now`, and returns the row as stored. Only the fields the change
    /// names are written, so concurrent changes of different fields both
    /// land. `NotFound` if the organization does not exist.
    async fn update_feature(
        &self,
        org: OrgId,
        key: &FeatureKey,
        change: &FeatureChange,
        now: DateTime<Utc>,
    ) -> Result<Feature>;

    /// Deletes one feature row; whether it existed.
    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool>;
}

forward_capability!(FeatureStore, feature_store_methods);
