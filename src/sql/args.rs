//! The arguments and results of the SQL functions (the contract is
//! `migrations/README.md`, with an example of each result in
//! `migrations/examples/`).
//!
//! Most functions answer in the serde shapes of the store types; the rows
//! of `SETOF` functions, and a membership with its organization, have a
//! row type here. Optional arguments are left out when `None`, so the SQL
//! default applies: a JSON `null` argument does not reach every PostgREST
//! as SQL null.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{EventId, FeatureKey, LimitId, MetricKey, OrgId, ReservationId, UserId};
use crate::limits::{Limit, LimitMode, Period};
use crate::model::{Feature, OrgMembership, Organization, Role, UsageRecord};

/// The `select` of a limit: `limit_value` as text, so decimals stay exact
/// (PostgREST sends `numeric` as a JSON number).
pub(crate) const LIMIT_COLUMNS: &str =
    "id,organization_id,user_id,metric,period,limit_value::text,mode,created_at,expires_at";

/// The `select` of a feature row.
pub(crate) const FEATURE_COLUMNS: &str = "feature_key,enabled,config,updated_at,expires_at";

/// An `org_features` row.
#[derive(Debug, Deserialize)]
pub(crate) struct FeatureRow {
    feature_key: FeatureKey,
    enabled: bool,
    #[serde(default)]
    config: serde_json::Value,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

impl From<FeatureRow> for Feature {
    fn from(row: FeatureRow) -> Self {
        Feature {
            key: row.feature_key,
            enabled: row.enabled,
            config: row.config,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
        }
    }
}

/// Arguments of `tenancy_update_feature`: only what the change names is
/// written. `None`s are left out, so the SQL defaults (null: keep) apply.
#[derive(Debug, Serialize)]
pub(crate) struct UpdateFeatureArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) feature_key: &'a FeatureKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    /// Whether `config` is written (a `null` config is a value to write).
    pub(crate) set_config: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) config: Option<&'a serde_json::Value>,
    pub(crate) updated_at: DateTime<Utc>,
    /// Whether `expires_at` is written (a missing one then means never).
    pub(crate) set_expires: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

/// A `usage_limits` row, read with [`LIMIT_COLUMNS`].
#[derive(Debug, Deserialize)]
pub(crate) struct LimitRow {
    id: LimitId,
    organization_id: OrgId,
    user_id: Option<UserId>,
    metric: MetricKey,
    period: Period,
    limit_value: Decimal,
    mode: LimitMode,
    created_at: DateTime<Utc>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
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
            expires_at: row.expires_at,
        }
    }
}

/// Arguments of `tenancy_put_limit`. `None`s are left out, so the SQL
/// default applies (a JSON `null` argument does not reach every PostgREST
/// as null).
#[derive(Debug, Serialize)]
pub(crate) struct PutLimitArgs<'a> {
    pub(crate) limit_id: LimitId,
    pub(crate) org_id: OrgId,
    pub(crate) metric: &'a MetricKey,
    pub(crate) period: Period,
    pub(crate) limit_value: Decimal,
    pub(crate) mode: LimitMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<UserId>,
    pub(crate) created_at: DateTime<Utc>,
    /// When the row lapses; left out: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

/// Arguments of `tenancy_create_organization` (and the row of a plain
/// insert). `None`s are left out, as for [`PutLimitArgs`].
#[derive(Debug, Serialize)]
pub(crate) struct CreateOrgArgs<'a> {
    pub(crate) id: OrgId,
    pub(crate) name: &'a str,
    pub(crate) slug: &'a str,
    pub(crate) timezone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner_user_id: Option<UserId>,
    pub(crate) created_at: DateTime<Utc>,
}

/// One event of `tenancy_record_usage` (and the `event` of
/// `tenancy_commit_reservation`). Every key is always written, nulls
/// included: PostgREST refuses an array body whose objects have different
/// keys (PGRST102).
#[derive(Debug, Serialize)]
pub(crate) struct EventArg<'a> {
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
pub(crate) struct Released {
    pub(crate) released: bool,
}

/// `{claimed}` from `tenancy_claim_alert`.
#[derive(Debug, Deserialize)]
pub(crate) struct Claimed {
    pub(crate) claimed: bool,
}

/// `{deleted}` of the delete functions.
#[derive(Debug, Deserialize)]
pub(crate) struct Deleted {
    pub(crate) deleted: bool,
}

/// One `{organization, role, joined_at}` of `tenancy_memberships`.
#[derive(Debug, Deserialize)]
pub(crate) struct OrgMembershipRow {
    organization: Organization,
    role: Role,
    joined_at: DateTime<Utc>,
}

impl From<OrgMembershipRow> for OrgMembership {
    fn from(row: OrgMembershipRow) -> Self {
        OrgMembership {
            organization: row.organization,
            role: row.role,
            joined_at: row.joined_at,
        }
    }
}

/// `{org_id}`: the argument of the functions that read one organization's
/// rows.
#[derive(Debug, Serialize)]
pub(crate) struct OrgArg {
    pub(crate) org_id: OrgId,
}

/// Arguments of `tenancy_organization_by_slug`.
#[derive(Debug, Serialize)]
pub(crate) struct SlugArg<'a> {
    pub(crate) org_slug: &'a str,
}

/// Arguments of `tenancy_list_organizations`. `None`s are left out.
#[derive(Debug, Serialize)]
pub(crate) struct ListOrgsArgs<'a> {
    pub(crate) max_rows: usize,
    pub(crate) skip_rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) search: Option<&'a str>,
}

/// Arguments of `tenancy_rename_organization`.
#[derive(Debug, Serialize)]
pub(crate) struct RenameOrgArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) new_name: &'a str,
}

/// Arguments of `tenancy_memberships`: one user's, in one organization or
/// in all of them.
#[derive(Debug, Serialize)]
pub(crate) struct MembershipsArgs {
    pub(crate) user_id: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) org_id: Option<OrgId>,
}

/// Arguments of `tenancy_add_member`.
#[derive(Debug, Serialize)]
pub(crate) struct AddMemberArgs {
    pub(crate) org_id: OrgId,
    pub(crate) user_id: UserId,
    pub(crate) member_role: Role,
    pub(crate) created_at: DateTime<Utc>,
}

/// Arguments of `tenancy_set_member_role` (with `new_role`) and
/// `tenancy_remove_member` (without).
#[derive(Debug, Serialize)]
pub(crate) struct MemberCasArgs {
    pub(crate) org_id: OrgId,
    pub(crate) user_id: UserId,
    pub(crate) expected_role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) new_role: Option<Role>,
}

/// Arguments of `tenancy_delete_feature`.
#[derive(Debug, Serialize)]
pub(crate) struct FeatureKeyArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) feature_key: &'a FeatureKey,
}

/// Arguments of `tenancy_delete_limit`.
#[derive(Debug, Serialize)]
pub(crate) struct LimitIdArgs {
    pub(crate) org_id: OrgId,
    pub(crate) limit_id: LimitId,
}

/// Arguments of `tenancy_usage_snapshot`. `None`s are left out.
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) daily_start: NaiveDate,
    pub(crate) monthly_start: NaiveDate,
    pub(crate) now: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metric: Option<&'a MetricKey>,
}

/// Arguments of `tenancy_usage_history`. `None`s are left out.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metric: Option<&'a MetricKey>,
    pub(crate) period: Period,
    pub(crate) from_start: NaiveDate,
    pub(crate) to_start: NaiveDate,
}

/// Arguments of `tenancy_reconcile_usage` and `tenancy_repair_usage`.
/// `None`s are left out.
#[derive(Debug, Serialize)]
pub(crate) struct ReconcileArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) period: Period,
    pub(crate) period_start: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metric: Option<&'a MetricKey>,
}

/// Arguments of `tenancy_reserve`.
#[derive(Debug, Serialize)]
pub(crate) struct ReserveArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) user_id: UserId,
    pub(crate) metric: &'a MetricKey,
    pub(crate) amount: Decimal,
    pub(crate) daily_start: NaiveDate,
    pub(crate) monthly_start: NaiveDate,
    pub(crate) now: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) reservation_id: ReservationId,
    pub(crate) purge_before: DateTime<Utc>,
}

/// Arguments of `tenancy_release_reservation`.
#[derive(Debug, Serialize)]
pub(crate) struct ReleaseArgs {
    pub(crate) org_id: OrgId,
    pub(crate) user_id: UserId,
    pub(crate) reservation_id: ReservationId,
    pub(crate) now: DateTime<Utc>,
}

/// Arguments of `tenancy_claim_alert`. `None`s are left out.
#[derive(Debug, Serialize)]
pub(crate) struct ClaimAlertArgs<'a> {
    pub(crate) org_id: OrgId,
    pub(crate) metric: &'a MetricKey,
    pub(crate) period: Period,
    pub(crate) period_start: NaiveDate,
    pub(crate) threshold_percent: u32,
    pub(crate) fired_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<UserId>,
}

#[cfg(test)]
mod tests {
    //! The examples in `migrations/examples/` whose Rust side is a row type
    //! of this module (the store types' own are checked in `store::types`),
    //! and that every example is checked somewhere.

    use super::*;

    fn reads<T: serde::de::DeserializeOwned>(name: &str, example: &str) -> T {
        serde_json::from_str(example).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn row_examples_read_into_their_types() {
        let memberships: Vec<OrgMembershipRow> = reads(
            "tenancy_memberships",
            include_str!("../../migrations/examples/tenancy_memberships.json"),
        );
        assert!(!memberships.is_empty());
        let organizations: Vec<OrgMembershipRow> = reads(
            "tenancy_user_organizations",
            include_str!("../../migrations/examples/tenancy_user_organizations.json"),
        );
        assert!(!organizations.is_empty());
        for (name, example) in [
            (
                "tenancy_delete_organization",
                include_str!("../../migrations/examples/tenancy_delete_organization.json"),
            ),
            (
                "tenancy_delete_feature",
                include_str!("../../migrations/examples/tenancy_delete_feature.json"),
            ),
            (
                "tenancy_delete_limit",
                include_str!("../../migrations/examples/tenancy_delete_limit.json"),
            ),
        ] {
            let _: Deleted = reads(name, example);
        }
        let _: Released = reads(
            "tenancy_release_reservation",
            include_str!("../../migrations/examples/tenancy_release_reservation.json"),
        );
        let _: Claimed = reads(
            "tenancy_claim_alert",
            include_str!("../../migrations/examples/tenancy_claim_alert.json"),
        );
        let removed: serde_json::Value = reads(
            "tenancy_remove_member",
            include_str!("../../migrations/examples/tenancy_remove_member.json"),
        );
        assert_eq!(removed, serde_json::json!({"removed": true}));
        let version: serde_json::Value = reads(
            "tenancy_schema_version",
            include_str!("../../migrations/examples/tenancy_schema_version.json"),
        );
        assert_eq!(
            version["version"],
            serde_json::json!(crate::migrations::SCHEMA_VERSION)
        );
    }

    /// Every example is read by a test: here or in `store::types`.
    #[test]
    fn every_example_is_checked() {
        let checked = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/args.rs"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/types.rs"),
        ]
        .map(|path| std::fs::read_to_string(path).unwrap())
        .concat();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/examples");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                assert!(
                    checked.contains(&format!("examples/{name}")),
                    "{name} is not checked by any test"
                );
            }
        }
    }
}
