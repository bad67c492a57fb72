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
        // The later migrations' answers read into rows private to their
        // modules (`sql::audit`, `sql::reports`, ...) or into flags: their
        // keys, all the way down where they are objects.
        for (name, example) in [
            (
                "tenancy_delete_rate_limit",
                include_str!("../../migrations/examples/tenancy_delete_rate_limit.json"),
            ),
            (
                "tenancy_unassign_plan",
                include_str!("../../migrations/examples/tenancy_unassign_plan.json"),
            ),
        ] {
            let _: Deleted = reads(name, example);
        }
        fn keys(value: &serde_json::Value) -> Vec<&str> {
            let mut keys: Vec<&str> = value
                .as_object()
                .unwrap_or_else(|| panic!("an object: {value}"))
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            keys
        }
        let event_keys = [
            "amounts",
            "audio_input_tokens",
            "audio_output_tokens",
            "cache_write_tokens",
            "cached_input_tokens",
            "cost_source",
            "cost_usd",
            "daily_start",
            "id",
            "image_input_tokens",
            "image_output_tokens",
            "input_tokens",
            "metadata",
            "model",
            "monthly_start",
            "occurred_at",
            "operation",
            "organization_id",
            "output_tokens",
            "price_effective_from",
            "price_model",
            "price_provider",
            "price_table",
            "provider",
            "quantities",
            "reasoning_tokens",
            "recorded_at",
            "user_id",
        ];
        let drift_keys = [
            "bucket_start",
            "counted",
            "counted_events",
            "metric",
            "model",
            "operation",
            "provider",
            "recomputed",
            "recomputed_events",
            "user_id",
        ];
        let objects: [(&str, &str, &[&str]); 14] = [
            (
                "tenancy_revoke_invitation",
                include_str!("../../migrations/examples/tenancy_revoke_invitation.json"),
                &["revoked"],
            ),
            (
                "tenancy_remove_domain",
                include_str!("../../migrations/examples/tenancy_remove_domain.json"),
                &["removed"],
            ),
            (
                "tenancy_migrate_plan",
                include_str!("../../migrations/examples/tenancy_migrate_plan.json"),
                &["migrated"],
            ),
            (
                "tenancy_export_ack",
                include_str!("../../migrations/examples/tenancy_export_ack.json"),
                &["acked"],
            ),
            (
                "tenancy_set_billing_customer",
                include_str!("../../migrations/examples/tenancy_set_billing_customer.json"),
                &["organization_id", "stripe_customer_id"],
            ),
            (
                "tenancy_drop_usage_events",
                include_str!("../../migrations/examples/tenancy_drop_usage_events.json"),
                &["dropped_before", "events", "partitions"],
            ),
            (
                "tenancy_create_usage_partitions",
                include_str!("../../migrations/examples/tenancy_create_usage_partitions.json"),
                &["created"],
            ),
            (
                "tenancy_prune_audit_log",
                include_str!("../../migrations/examples/tenancy_prune_audit_log.json"),
                &["cutoff", "deleted"],
            ),
            (
                "tenancy_audit_log",
                include_str!("../../migrations/examples/tenancy_audit_log.json"),
                &[
                    "action",
                    "actor_kind",
                    "actor_name",
                    "actor_user_id",
                    "after",
                    "at",
                    "before",
                    "id",
                    "organization_id",
                    "request_id",
                    "target",
                ],
            ),
            (
                "tenancy_usage_report",
                include_str!("../../migrations/examples/tenancy_usage_report.json"),
                &[
                    "amounts",
                    "bucket_start",
                    "events",
                    "metric",
                    "model",
                    "operation",
                    "provider",
                    "user_id",
                ],
            ),
            (
                "tenancy_usage_events",
                include_str!("../../migrations/examples/tenancy_usage_events.json"),
                &event_keys,
            ),
            (
                "tenancy_usage_event",
                include_str!("../../migrations/examples/tenancy_usage_event.json"),
                &event_keys,
            ),
            (
                "tenancy_reconcile_rollups",
                include_str!("../../migrations/examples/tenancy_reconcile_rollups.json"),
                &drift_keys,
            ),
            (
                "tenancy_repair_rollups",
                include_str!("../../migrations/examples/tenancy_repair_rollups.json"),
                &drift_keys,
            ),
        ];
        for (name, example, want) in objects {
            let value: serde_json::Value = reads(name, example);
            // A list of rows: each row's keys.
            let rows = match value.as_array() {
                Some(rows) => rows.clone(),
                None => vec![value],
            };
            assert!(!rows.is_empty(), "{name}: no rows");
            for row in &rows {
                assert_eq!(keys(row), want, "{name}");
            }
        }
        let costs: serde_json::Value = reads(
            "tenancy_usage_costs",
            include_str!("../../migrations/examples/tenancy_usage_costs.json"),
        );
        assert_eq!(keys(&costs), ["more", "rows"]);
        assert_eq!(
            keys(&costs["rows"][0]),
            [
                "audio_input_tokens",
                "audio_output_tokens",
                "bucket_start",
                "cache_write_tokens",
                "cached_input_tokens",
                "cost_source",
                "cost_usd",
                "events",
                "image_input_tokens",
                "image_output_tokens",
                "input_tokens",
                "model",
                "operation",
                "output_tokens",
                "price_effective_from",
                "price_model",
                "price_provider",
                "price_table",
                "provider",
                "reasoning_tokens",
                "user_id",
            ]
        );
        let claimed: serde_json::Value = reads(
            "tenancy_export_claim",
            include_str!("../../migrations/examples/tenancy_export_claim.json"),
        );
        assert_eq!(
            keys(&claimed[0]),
            ["claimed_at", "event_name", "id", "items"]
        );
        assert_eq!(
            keys(&claimed[0]["items"][0]),
            [
                "amount",
                "bucket_start",
                "carried",
                "org",
                "seq",
                "stripe_customer_id",
                "timestamp",
                "value",
            ]
        );

        // And through the store itself: each private row type reads its
        // example and becomes the store's answer (a transport that answers
        // every call with the example of its function), its optional fields
        // filled where the example's are.
        use crate::ids::{EventId, LimitId, MetricKey, PlanKey};
        use crate::model::domain::DomainName;
        use crate::model::invitation::InvitationId;
        use crate::model::plan::{MigratePlan, PlanRef};
        use crate::model::report::{
            EventQuery, ExportAck, ExportClaim, Granularity, Meter, ReportDimension, ReportQuery,
            RollupReconcileQuery,
        };
        use crate::store::{LeaseStore, Principal, RateLimitStore, ReportStore};

        #[derive(Debug)]
        struct Replay;

        impl crate::store::Backend for Replay {
            fn principal(&self) -> Principal {
                Principal::Service
            }
            fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
                None
            }
            fn leases(&self) -> Option<&dyn LeaseStore> {
                None
            }
            fn reports(&self) -> Option<&dyn ReportStore> {
                None
            }
        }

        #[async_trait::async_trait]
        impl super::super::SqlTransport for Replay {
            async fn call(&self, call: super::super::SqlCall<'_>) -> crate::error::Result<Vec<u8>> {
                let example = match call.function {
                    "tenancy_audit_log" => {
                        include_str!("../../migrations/examples/tenancy_audit_log.json")
                    }
                    "tenancy_usage_report" => {
                        include_str!("../../migrations/examples/tenancy_usage_report.json")
                    }
                    "tenancy_usage_costs" => {
                        include_str!("../../migrations/examples/tenancy_usage_costs.json")
                    }
                    "tenancy_usage_events" => {
                        include_str!("../../migrations/examples/tenancy_usage_events.json")
                    }
                    "tenancy_usage_event" => {
                        include_str!("../../migrations/examples/tenancy_usage_event.json")
                    }
                    "tenancy_reconcile_rollups" => {
                        include_str!("../../migrations/examples/tenancy_reconcile_rollups.json")
                    }
                    "tenancy_repair_rollups" => {
                        include_str!("../../migrations/examples/tenancy_repair_rollups.json")
                    }
                    "tenancy_export_claim" => {
                        include_str!("../../migrations/examples/tenancy_export_claim.json")
                    }
                    "tenancy_export_ack" => {
                        include_str!("../../migrations/examples/tenancy_export_ack.json")
                    }
                    "tenancy_drop_usage_events" => {
                        include_str!("../../migrations/examples/tenancy_drop_usage_events.json")
                    }
                    "tenancy_billing_customer" => {
                        include_str!("../../migrations/examples/tenancy_billing_customer.json")
                    }
                    "tenancy_remove_domain" => {
                        include_str!("../../migrations/examples/tenancy_remove_domain.json")
                    }
                    "tenancy_revoke_invitation" => {
                        include_str!("../../migrations/examples/tenancy_revoke_invitation.json")
                    }
                    "tenancy_migrate_plan" => {
                        include_str!("../../migrations/examples/tenancy_migrate_plan.json")
                    }
                    "tenancy_delete_rate_limit" => {
                        include_str!("../../migrations/examples/tenancy_delete_rate_limit.json")
                    }
                    "tenancy_unassign_plan" => {
                        include_str!("../../migrations/examples/tenancy_unassign_plan.json")
                    }
                    other => panic!("no example of {other} here"),
                };
                Ok(example.as_bytes().to_vec())
            }

            fn undecodable(
                &self,
                function: &str,
                _what: &str,
                _body: &[u8],
                source: serde_json::Error,
            ) -> crate::error::Error {
                panic!("{function} does not read its example: {source}")
            }

            async fn watch_entitlements(
                &self,
            ) -> crate::error::Result<Option<crate::store::EntitlementWatch>> {
                Ok(None)
            }
        }

        let sql = super::super::Sql(&Replay);
        let org = OrgId::new_v7();
        let (from, to) = (
            "2001-02-03T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "2001-02-04T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let audit = crate::model::audit::AuditQuery::new(2).unwrap().org(org);
            let events = sql.audit_log(&audit).await.unwrap();
            assert_eq!(events.len(), 2);
            assert!(events[0].target.is_some() && events[0].before.is_some());
            assert!(events[0].after.is_some());

            let report = ReportQuery::new(org, from, to)
                .granularity(Granularity::Hour)
                .group_by([ReportDimension::User, ReportDimension::Metric])
                .limit(2);
            let page = sql.usage_report(&report).await.unwrap();
            assert_eq!(page.rows.len(), 2);
            assert!(page.rows[0].key.metric.is_some() && page.rows[0].key.user.is_some());
            assert!(!page.rows[0].amounts.is_empty());

            let costs = ReportQuery::new(org, from, to)
                .granularity(Granularity::Hour)
                .group_by([ReportDimension::User, ReportDimension::Operation])
                .limit(1);
            let page = sql.usage_costs(&costs).await.unwrap();
            let row = &page.rows[0];
            assert!(row.key.user.is_some() && row.key.operation.is_some());
            assert!(row.cost_source.is_some() && page.next.is_some());

            let listed = sql
                .usage_events(&EventQuery::new(org, from, to).limit(2))
                .await
                .unwrap();
            let event = &listed.events[0];
            assert!(event.user.is_some() && event.cost_usd.is_some());
            assert!(event.cost_source.is_some() && !event.metadata.is_null());
            let one = sql.usage_event(org, EventId::new_v7()).await.unwrap();
            assert_eq!(one.as_ref(), Some(event));

            let range = RollupReconcileQuery { org, from, to };
            for drift in [
                sql.reconcile_rollups(&range).await.unwrap(),
                sql.repair_rollups(&range).await.unwrap(),
            ] {
                assert!(drift[0].user.is_some() && drift[0].counted != drift[0].recomputed);
            }

            let claim = ExportClaim {
                meter: Meter::new("cost_cents", MetricKey::COST_USD, Decimal::ONE_HUNDRED).unwrap(),
                up_to: from,
                max_items: 1000,
                now: to,
            };
            let batch = sql.claim_export(&claim).await.unwrap().unwrap();
            assert_eq!(batch.items.len(), 1);
            let ack = ExportAck {
                event_name: batch.event_name.clone(),
                batch: batch.id,
                now: to,
            };
            assert!(sql.ack_export(&ack).await.unwrap());
            let dropped = sql.drop_usage_events(to).await.unwrap();
            assert!(dropped.events.is_some());
            assert!(sql.billing_customer(org).await.unwrap().is_some());

            let domain = DomainName::parse("example.com").unwrap();
            assert!(sql.remove_domain(org, &domain).await.unwrap());
            assert!(
                sql.revoke_invitation(org, InvitationId::new_v7(), to)
                    .await
                    .unwrap()
            );
            let plan = PlanRef {
                key: PlanKey::parse("pro").unwrap(),
                version: 1,
            };
            let migrate = MigratePlan::new(plan, 2).org(org);
            assert_eq!(sql.migrate_plan(&migrate).await.unwrap(), 1);
            assert!(sql.delete_rate_limit(org, LimitId::new_v7()).await.unwrap());
            assert!(sql.unassign_plan(org).await.unwrap());
        });
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
