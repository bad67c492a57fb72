//! Row and argument shapes: what PostgREST sends back for the tables, and
//! the JSON bodies of the writes and RPCs (the RPC contract is
//! `migrations/README.md`).
//!
//! `organizations` and `user_organizations` rows have exactly the serde
//! shapes of [`Organization`] and [`Membership`]; the RPCs answer in the
//! serde shapes of the store types. Only features and limits need a row
//! type of their own.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{EventId, FeatureKey, LimitId, MetricKey, OrgId, UserId};
use crate::limits::{Limit, LimitMode, Period};
use crate::model::{Feature, OrgMembership, Organization, Role, UsageRecord};

/// The `select` of a membership joined with its organization.
pub(super) const MEMBERSHIP_WITH_ORG: &str = "role,created_at,organizations(*)";

/// The `select` of a limit: `limit_value` as text, so decimals stay exact
/// (PostgREST sends `numeric` as a JSON number).
pub(super) const LIMIT_COLUMNS: &str =
    "id,organization_id,user_id,metric,period,limit_value::text,mode,created_at";

/// A `user_organizations` row with its organization embedded.
#[derive(Debug, Deserialize)]
pub(super) struct MembershipRow {
    role: Role,
    created_at: DateTime<Utc>,
    organizations: Organization,
}

impl From<MembershipRow> for OrgMembership {
    fn from(row: MembershipRow) -> Self {
        OrgMembership {
            organization: row.organizations,
            role: row.role,
            joined_at: row.created_at,
        }
    }
}

/// The `select` of a feature row.
pub(super) const FEATURE_COLUMNS: &str = "feature_key,enabled,config,updated_at";

/// An `org_features` row.
#[derive(Debug, Deserialize)]
pub(super) struct FeatureRow {
    feature_key: FeatureKey,
    enabled: bool,
    #[serde(default)]
    config: serde_json::Value,
    updated_at: DateTime<Utc>,
}

impl From<FeatureRow> for Feature {
    fn from(row: FeatureRow) -> Self {
        Feature {
            key: row.feature_key,
            enabled: row.enabled,
            config: row.config,
            updated_at: row.updated_at,
        }
    }
}

/// Arguments of `tenancy_update_feature`: only what the change names is
/// written. `None`s are left out, so the SQL defaults (null: keep) apply.
#[derive(Debug, Serialize)]
pub(super) struct UpdateFeatureArgs<'a> {
    pub(super) org_id: OrgId,
    pub(super) feature_key: &'a FeatureKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) enabled: Option<bool>,
    /// Whether `config` is written (a `null` config is a value to write).
    pub(super) set_config: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) config: Option<&'a serde_json::Value>,
    pub(super) updated_at: DateTime<Utc>,
}

/// A `usage_limits` row, read with [`LIMIT_COLUMNS`].
#[derive(Debug, Deserialize)]
pub(super) struct LimitRow {
    id: LimitId,
    organization_id: OrgId,
    user_id: Option<UserId>,
    metric: MetricKey,
    period: Period,
    limit_value: Decimal,
    mode: LimitMode,
    created_at: DateTime<Utc>,
}

impl From<LimitRow> for Limit {
    fn from(row: LimitRow) -> Self {
        Limit {
            id: row.id,
            org: row.organization_id,
            scope: row.user_id.into(),
            metric: row.metric,
            period: row.period,
            value: row.limit_value,
            mode: row.mode,
            created_at: row.created_at,
        }
    }
}

/// Arguments of `tenancy_put_limit`. `None`s are left out, so the SQL
/// default applies (a JSON `null` argument does not reach every PostgREST
/// as null).
#[derive(Debug, Serialize)]
pub(super) struct PutLimitArgs<'a> {
    pub(super) limit_id: LimitId,
    pub(super) org_id: OrgId,
    pub(super) metric: &'a MetricKey,
    pub(super) period: Period,
    pub(super) limit_value: Decimal,
    pub(super) mode: LimitMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_id: Option<UserId>,
    pub(super) created_at: DateTime<Utc>,
}

/// Arguments of `tenancy_create_organization` (and the row of a plain
/// insert). `None`s are left out, as for [`PutLimitArgs`].
#[derive(Debug, Serialize)]
pub(super) struct CreateOrgArgs<'a> {
    pub(super) id: OrgId,
    pub(super) name: &'a str,
    pub(super) slug: &'a str,
    pub(super) timezone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) owner_user_id: Option<UserId>,
    pub(super) created_at: DateTime<Utc>,
}

/// One event of `tenancy_record_usage` (and the `event` of
/// `tenancy_commit_reservation`). Every key is always written, nulls
/// included: PostgREST refuses an array body whose objects have different
/// keys (PGRST102).
#[derive(Debug, Serialize)]
pub(super) struct EventArg<'a> {
    id: EventId,
    organization_id: OrgId,
    user_id: Option<UserId>,
    provider: &'a str,
    model: &'a str,
    operation: &'a str,
    input_tokens: u64,
    cached_input_tokens: u64,
    output_tokens: u64,
    quantities: &'a BTreeMap<MetricKey, Decimal>,
    cost_usd: Option<Decimal>,
    occurred_at: DateTime<Utc>,
    metadata: &'a serde_json::Value,
    /// What the event counts, as the core computed it: the store adds these
    /// to the counters and derives nothing itself.
    amounts: BTreeMap<&'a str, Decimal>,
    daily_start: NaiveDate,
    monthly_start: NaiveDate,
}

impl<'a> From<&'a UsageRecord> for EventArg<'a> {
    fn from(r: &'a UsageRecord) -> Self {
        let e = &r.event;
        EventArg {
            id: r.id,
            organization_id: e.org,
            user_id: e.user,
            provider: &e.provider,
            model: &e.model,
            operation: &e.operation,
            input_tokens: e.input_tokens,
            cached_input_tokens: e.cached_input_tokens,
            output_tokens: e.output_tokens,
            quantities: &e.quantities,
            cost_usd: e.cost_usd,
            occurred_at: r.occurred_at,
            metadata: &e.metadata,
            amounts: r.amounts.iter().map(|(m, a)| (m.as_str(), *a)).collect(),
            daily_start: r.periods.daily.start,
            monthly_start: r.periods.monthly.start,
        }
    }
}

/// `{released}` from `tenancy_release_reservation`.
#[derive(Debug, Deserialize)]
pub(super) struct Released {
    pub(super) released: bool,
}

/// `{claimed}` from `tenancy_claim_alert`.
#[derive(Debug, Deserialize)]
pub(super) struct Claimed {
    pub(super) claimed: bool,
}
