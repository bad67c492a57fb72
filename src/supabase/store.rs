//! `SupabaseStore` as the SQL store's transport: each primitive is one
//! `POST /rpc/<function>`.

use async_trait::async_trait;

use super::SupabaseStore;
use crate::error::{Error, Result};
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::sql::{SqlCall, SqlTransport, sql_capability_impl, sql_store_impls};
use crate::store::{
    Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue, HistoryQuery, LeaseStore,
    OrgQuery, Principal, RateLimitStore, ReconcileQuery, RecordOutcome, ReleaseRequest,
    ReportStore, ReserveRequest, ReserveResult, UsageQuery,
};
use chrono::{DateTime, Utc};

impl Backend for SupabaseStore {
    fn principal(&self) -> Principal {
        if self.is_user_client() {
            Principal::User
        } else {
            Principal::Service
        }
    }

    fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        Some(self)
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }

    fn reports(&self) -> Option<&dyn ReportStore> {
        Some(self)
    }
}

#[async_trait]
impl SqlTransport for SupabaseStore {
    async fn call(&self, call: SqlCall<'_>) -> Result<Vec<u8>> {
        let mut request = self.rpc(call.function, call.args);
        if let Some(columns) = call.columns {
            request = request.select(columns);
        }
        let (_, body) = self.send(call.what, call.idempotent, request).await?;
        Ok(body)
    }

    fn undecodable(
        &self,
        _function: &str,
        what: &str,
        body: &[u8],
        source: serde_json::Error,
    ) -> Error {
        // An RPC answers 200 when it succeeds.
        super::error::unexpected_body(reqwest::StatusCode::OK, body, what, source)
    }

    /// PostgREST pushes nothing: the caches poll the version counter.
    async fn watch_entitlements(&self) -> Result<Option<crate::store::EntitlementWatch>> {
        Ok(None)
    }
}

sql_store_impls!(SupabaseStore);
