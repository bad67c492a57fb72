//! `impl Store for SupabaseStore`: one PostgREST request per method in the
//! common case.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rows::{
    Claimed, CreateOrgArgs, EventArg, FEATURE_COLUMNS, FeatureRow, LIMIT_COLUMNS, LimitRow,
    MEMBERSHIP_WITH_ORG, MembershipRow, PutLimitArgs, Released, UpdateFeatureArgs,
};
use super::{Idempotent, SupabaseStore};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::store::{
    AlertStore, Backend, CommitOutcome, CommitRequest, CounterScope, CounterValue, FeatureStore,
    HistoryQuery, LimitStore, MemberStore, MeteringStore, OrgQuery, OrgStore, Principal,
    RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, UsageQuery,
};

const ORGS: &str = "organizations";
const MEMBERS: &str = "user_organizations";
const FEATURES: &str = "org_features";
const LIMITS: &str = "usage_limits";

fn to_body(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::unexpected("cannot serialize a request body").with_source(e))
}

/// The body of an RPC call built with `json!`: top-level nulls are left
/// out, so the SQL defaults (all null) apply. Not every PostgREST passes a
/// JSON `null` argument on as SQL null (the tests' stand-in makes it an
/// empty string, which no `uuid` default survives). The typed argument
/// structs skip their `None`s the same way.
fn rpc_body(mut args: serde_json::Value) -> Result<String> {
    if let serde_json::Value::Object(map) = &mut args {
        map.retain(|_, v| !v.is_null());
    }
    to_body(&args)
}

/// Rows returned by a delete: only whether there were any matters.
#[derive(Debug, Deserialize)]
struct Deleted {}

impl SupabaseStore {
    /// The first row `request` returns, if any.
    async fn first_row<T: DeserializeOwned>(
        &self,
        what: &str,
        idempotent: Idempotent,
        request: postgrest::Builder,
    ) -> Result<Option<T>> {
        let rows: Vec<T> = self.call(what, idempotent, request).await?;
        Ok(rows.into_iter().next())
    }

    /// Whether a delete (that selects a column) removed any row. Not
    /// retried: a retry after a delete that landed would report `false`.
    async fn deleted_any(&self, what: &str, request: postgrest::Builder) -> Result<bool> {
        let rows: Vec<Deleted> = self.call(what, Idempotent::No, request).await?;
        Ok(!rows.is_empty())
    }

    /// Why a compare-and-set on a membership matched no row: the member is
    /// gone (`NotFound`) or their role changed (`Conflict`).
    async fn membership_cas_failed(&self, org: OrgId, user: UserId) -> Error {
        match self.membership(org, user).await {
            Ok(Some(m)) => Error::new(
                ErrorKind::Conflict,
                format!(
                    "user {user}'s role changed to {} meanwhile; reload and retry",
                    m.role
                ),
            ),
            Ok(None) => crate::store::not_a_member(org, user),
            Err(e) => e,
        }
    }
}

impl Backend for SupabaseStore {
    fn principal(&self) -> Principal {
        if self.is_user_client() {
            Principal::User
        } else {
            Principal::Service
        }
    }
}

#[async_trait]
impl OrgStore for SupabaseStore {
    async fn create_organization(&self, org: &Organization) -> Result<Organization> {
        let what = format!("creating organization {}", org.slug.as_str());
        let args = CreateOrgArgs {
            id: org.id,
            name: &org.name,
            slug: org.slug.as_str(),
            timezone: org.timezone.name(),
            owner_user_id: org.owner_user_id,
            created_at: org.created_at,
        };
        let request = if org.owner_user_id.is_some() {
            // The RPC inserts the organization and (by trigger) its owner in
            // one transaction.
            self.rpc("tenancy_create_organization", to_body(&args)?)
        } else {
            // No owner: a plain insert (the RPC requires one).
            self.from(ORGS).insert(to_body(&args)?)
        };
        // As stored: for a user's JWT the database assigns id and created_at.
        self.first_row(&what, Idempotent::No, request)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, format!("{what}: no row returned")))
    }

    async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        let request = self.from(ORGS).select("*").eq("id", id.to_string());
        self.first_row("reading an organization", Idempotent::Yes, request)
            .await
    }

    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>> {
        let request = self.from(ORGS).select("*").eq("slug", slug.as_str());
        self.first_row("reading an organization by slug", Idempotent::Yes, request)
            .await
    }

    async fn list_organizations(&self, query: &OrgQuery) -> Result<Vec<Organization>> {
        let args = json!({
            "search": query.search,
            "max_rows": query.limit,
            "skip_rows": query.offset,
        });
        let request = self.rpc("tenancy_list_organizations", rpc_body(args)?);
        self.call("listing organizations", Idempotent::Yes, request)
            .await
    }

    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        let request = self
            .from(ORGS)
            .eq("id", id.to_string())
            .update(to_body(&json!({ "name": name }))?);
        self.first_row("renaming an organization", Idempotent::Yes, request)
            .await?
            .ok_or_else(|| crate::store::org_not_found(id))
    }

    async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        let request = self
            .from(ORGS)
            .eq("id", id.to_string())
            .select("id")
            .delete();
        self.deleted_any("deleting an organization", request).await
    }
}

#[async_trait]
impl MemberStore for SupabaseStore {
    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>> {
        let request = self
            .from(MEMBERS)
            .select(MEMBERSHIP_WITH_ORG)
            .eq("organization_id", org.to_string())
            .eq("user_id", user.to_string());
        let row: Option<MembershipRow> = self
            .first_row("reading a membership", Idempotent::Yes, request)
            .await?;
        Ok(row.map(OrgMembership::from))
    }

    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        let request = self
            .from(MEMBERS)
            .select(MEMBERSHIP_WITH_ORG)
            .eq("user_id", user.to_string())
            .order("organization_id");
        let rows: Vec<MembershipRow> = self
            .call("reading a user's memberships", Idempotent::Yes, request)
            .await?;
        Ok(rows.into_iter().map(OrgMembership::from).collect())
    }

    async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        let request = self
            .from(MEMBERS)
            .select("organization_id,user_id,role,created_at")
            .eq("organization_id", org.to_string())
            .order("user_id");
        self.call("reading members", Idempotent::Yes, request).await
    }

    async fn add_member(&self, membership: &Membership) -> Result<()> {
        let request = self.from(MEMBERS).insert(to_body(membership)?);
        let _: Vec<Membership> = self
            .call("adding a member", Idempotent::No, request)
            .await?;
        Ok(())
    }

    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        // Compare-and-set: the filter on the expected role makes the update
        // match nothing if the role changed; the last-owner rule is a
        // trigger (42501 → PermissionDenied).
        let request = self
            .from(MEMBERS)
            .eq("organization_id", org.to_string())
            .eq("user_id", user.to_string())
            .eq("role", expected.as_str())
            .update(to_body(&json!({ "role": role }))?);
        let changed = self
            .first_row("changing a member's role", Idempotent::No, request)
            .await?;
        match changed {
            Some(m) => Ok(m),
            None => Err(self.membership_cas_failed(org, user).await),
        }
    }

    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()> {
        let request = self
            .from(MEMBERS)
            .eq("organization_id", org.to_string())
            .eq("user_id", user.to_string())
            .eq("role", expected.as_str())
            .select("user_id")
            .delete();
        if !self.deleted_any("removing a member", request).await? {
            return Err(self.membership_cas_failed(org, user).await);
        }
        Ok(())
    }
}

#[async_trait]
impl FeatureStore for SupabaseStore {
    async fn features(&self, org: OrgId) -> Result<Vec<Feature>> {
        let request = self
            .from(FEATURES)
            .select("feature_key,enabled,config,updated_at")
            .eq("organization_id", org.to_string())
            .order("feature_key");
        let rows: Vec<FeatureRow> = self
            .call("reading features", Idempotent::Yes, request)
            .await?;
        Ok(rows.into_iter().map(Feature::from).collect())
    }

    async fn update_feature(
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
            // A `null` config is sent as no argument (SQL null): a JSON
            // null argument does not reach every PostgREST as null.
            config: change.config.as_ref().filter(|c| !c.is_null()),
            updated_at: now,
        };
        // One statement: only the named fields change, so a concurrent
        // change of the other field is kept.
        let request = self
            .rpc("tenancy_update_feature", to_body(&args)?)
            .select(FEATURE_COLUMNS);
        let row: Option<FeatureRow> = self
            .first_row("changing a feature", Idempotent::Yes, request)
            .await?;
        row.map(Feature::from)
            .ok_or_else(|| Error::unexpected("tenancy_update_feature returned no row"))
    }

    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool> {
        let request = self
            .from(FEATURES)
            .eq("organization_id", org.to_string())
            .eq("feature_key", key.as_str())
            .select("feature_key")
            .delete();
        self.deleted_any("deleting a feature", request).await
    }
}

#[async_trait]
impl LimitStore for SupabaseStore {
    async fn limits(&self, org: OrgId) -> Result<Vec<Limit>> {
        let request = self
            .from(LIMITS)
            .select(LIMIT_COLUMNS)
            .eq("organization_id", org.to_string())
            .order("created_at,id");
        let rows: Vec<LimitRow> = self
            .call("reading limits", Idempotent::Yes, request)
            .await?;
        Ok(rows.into_iter().map(Limit::from).collect())
    }

    async fn put_limit(&self, limit: &Limit) -> Result<Limit> {
        let args = PutLimitArgs {
            limit_id: limit.id,
            org_id: limit.org,
            metric: &limit.metric,
            period: limit.period,
            limit_value: limit.value,
            mode: limit.mode,
            user_id: limit.scope.user(),
            created_at: limit.created_at,
        };
        let request = self
            .rpc("tenancy_put_limit", to_body(&args)?)
            .select(LIMIT_COLUMNS);
        let row: Option<LimitRow> = self
            .first_row("setting a limit", Idempotent::Yes, request)
            .await?;
        row.map(Limit::from)
            .ok_or_else(|| Error::unexpected("tenancy_put_limit returned no row"))
    }

    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let request = self
            .from(LIMITS)
            .eq("organization_id", org.to_string())
            .eq("id", id.to_string())
            .select("id")
            .delete();
        self.deleted_any("deleting a limit", request).await
    }
}

#[async_trait]
impl MeteringStore for SupabaseStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome> {
        if batch.is_empty() {
            return Ok(RecordOutcome::default());
        }
        // The function's one argument is unnamed, so the body is the events
        // array itself, passed on as it is. Serialized straight to the body:
        // a batch is large enough that an intermediate `Value` costs.
        let events: Vec<EventArg<'_>> = batch.iter().map(EventArg::from).collect();
        let request = self.rpc("tenancy_record_usage", to_body(&events)?);
        // Idempotent by event id: safe to retry after any transient failure.
        self.call("recording usage", Idempotent::Yes, request).await
    }

    async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot> {
        let args = json!({
            "org_id": query.org,
            "daily_start": query.periods.daily.start,
            "monthly_start": query.periods.monthly.start,
            "now": query.now,
            "user_id": query.user,
            "metric": query.metric,
        });
        let request = self.rpc("tenancy_usage_snapshot", rpc_body(args)?);
        self.call("reading usage", Idempotent::Yes, request).await
    }

    async fn usage_history(&self, query: &HistoryQuery) -> Result<Vec<CounterValue>> {
        let (scope, user) = match query.scope {
            CounterScope::Organization => ("organization", None),
            CounterScope::User(user) => ("user", Some(user)),
            CounterScope::EachUser => ("each_user", None),
        };
        let args = json!({
            "org_id": query.org,
            "scope": scope,
            "user_id": user,
            "metric": query.metric,
            "period": query.period,
            "from_start": query.from,
            "to_start": query.to,
        });
        let request = self.rpc("tenancy_usage_history", rpc_body(args)?);
        self.call("reading usage history", Idempotent::Yes, request)
            .await
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveResult> {
        let args = json!({
            "org_id": request.org,
            "user_id": request.user,
            "metric": request.metric,
            "amount": request.amount,
            "daily_start": request.periods.daily.start,
            "monthly_start": request.periods.monthly.start,
            "now": request.now,
            "expires_at": request.expires_at,
            "reservation_id": request.id,
            "purge_before": request.purge_before,
        });
        // Not idempotent: a retried grant would count its own first hold.
        let call = self.rpc("tenancy_reserve", rpc_body(args)?);
        self.call("reserving", Idempotent::No, call).await
    }

    async fn commit_reservation(&self, request: &CommitRequest) -> Result<CommitOutcome> {
        let args = json!({
            "org_id": request.org,
            "user_id": request.user,
            "reservation_id": request.id,
            "event": EventArg::from(&request.usage),
            "now": request.now,
        });
        let call = self.rpc("tenancy_commit_reservation", rpc_body(args)?);
        // Retrying a commit is harmless: the event id dedupes, and a retry
        // after the hold was dropped finds the event recorded.
        self.call("committing a reservation", Idempotent::Yes, call)
            .await
    }

    async fn release_reservation(&self, request: &ReleaseRequest) -> Result<bool> {
        let args = json!({
            "org_id": request.org,
            "user_id": request.user,
            "reservation_id": request.id,
            "now": request.now,
        });
        let call = self.rpc("tenancy_release_reservation", rpc_body(args)?);
        // Not retried after an ambiguous failure: a retry would report a
        // hold it had just released as gone.
        let released: Released = self
            .call("releasing a reservation", Idempotent::No, call)
            .await?;
        Ok(released.released)
    }
}

#[async_trait]
impl AlertStore for SupabaseStore {
    async fn claim_alert(&self, key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool> {
        let args = json!({
            "org_id": key.org,
            "metric": key.metric,
            "period": key.period.period,
            "period_start": key.period.start,
            "threshold_percent": key.threshold_percent,
            "fired_at": fired_at,
            "user_id": key.scope.user(),
        });
        let request = self.rpc("tenancy_claim_alert", rpc_body(args)?);
        // Not retried after an ambiguous failure: a retry would read its
        // own first claim as someone else's.
        let claimed: Claimed = self
            .call("claiming an alert", Idempotent::No, request)
            .await?;
        Ok(claimed.claimed)
    }
}
