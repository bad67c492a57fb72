//! Feature rows over SQL.

use chrono::{DateTime, Utc};

use super::args::{
    Deleted, FEATURE_COLUMNS, FeatureKeyArgs, FeatureRow, OrgArg, UpdateFeatureArgs,
};
use super::{Idempotent, Sql, SqlTransport, org_missing};
use crate::error::{Error, Result};
use crate::ids::{FeatureKey, OrgId};
use crate::model::{Feature, FeatureChange};

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn features(&self, org: OrgId) -> Result<Vec<Feature>> {
        self.rpc(
            "tenancy_features",
            "reading features",
            Idempotent::Yes,
            &OrgArg { org_id: org },
        )
        .await
    }

    pub(crate) async fn update_feature(
        &self,
        org: OrgId,
        key: &FeatureKey,
        change: &FeatureChange,
        now: DateTime<Utc>,
    ) -> Result<Feature> {
        let args = UpdateFeatureArgs {
            org_id: org,
            feature_key: key,
            enabled: change.enabled,
            set_config: change.config.is_some(),
            // A `null` config is sent as no argument (SQL null).
            config: change.config.as_ref().filter(|c| !c.is_null()),
            updated_at: now,
            set_expires: change.expires_at.is_some(),
            expires_at: change.expires_at.flatten(),
        };
        // One statement: only the named fields change, so a concurrent
        // change of the other field is kept.
        let rows: Vec<FeatureRow> = self
            .rpc_rows(
                "tenancy_update_feature",
                Some(FEATURE_COLUMNS),
                "changing a feature",
                Idempotent::Yes,
                &args,
            )
            .await
            .map_err(org_missing(org))?;
        rows.into_iter()
            .next()
            .map(Feature::from)
            .ok_or_else(|| Error::unexpected("tenancy_update_feature returned no row"))
    }

    pub(crate) async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool> {
        let args = FeatureKeyArgs {
            org_id: org,
            feature_key: key,
        };
        let deleted: Deleted = self
            .rpc(
                "tenancy_delete_feature",
                "deleting a feature",
                Idempotent::No,
                &args,
            )
            .await?;
        Ok(deleted.deleted)
    }
}
