//! `PlanStore` over SQL: the catalog tables, the assignments and the
//! effective view of `migrations/20261206001200_tenancy_plans.sql`, each
//! method one call.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::args::{Deleted, OrgArg};
use super::schema::NoArgs;
use super::{Idempotent, Sql, SqlTransport};
use crate::error::Result;
use crate::ids::{OrgId, PlanKey};
use crate::model::plan::{
    AssignPlan, Entitlements, MigratePlan, NewPlanVersion, PlanAssignment, PlanRef, PlanVersion,
};
use crate::store::EntitlementWatch;

/// Arguments of `tenancy_put_plan_version`.
#[derive(Debug, Serialize)]
struct PutPlanVersionArgs<'a> {
    plan: &'a NewPlanVersion,
    now: DateTime<Utc>,
}

/// Arguments of `tenancy_plan_versions`; `None` is left out (every plan).
#[derive(Debug, Serialize)]
struct PlanVersionsArgs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    plan_key: Option<&'a PlanKey>,
}

/// Arguments of `tenancy_plan_version`.
#[derive(Debug, Serialize)]
struct PlanVersionArgs<'a> {
    plan_key: &'a PlanKey,
    version: u32,
}

/// Arguments of `tenancy_assign_plan`; `None`s are left out.
#[derive(Debug, Serialize)]
struct AssignPlanArgs<'a> {
    org_id: OrgId,
    plan_key: &'a PlanKey,
    version: u32,
    started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trial_ends_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_key: Option<&'a PlanKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_version: Option<u32>,
}

/// Arguments of `tenancy_migrate_plan`; `None` is left out (every
/// organization on the version).
#[derive(Debug, Serialize)]
struct MigratePlanArgs<'a> {
    plan_key: &'a PlanKey,
    from_version: u32,
    to_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<OrgId>,
}

/// `{migrated}` from `tenancy_migrate_plan`.
#[derive(Debug, Deserialize)]
struct Migrated {
    migrated: u64,
}

/// Arguments of `tenancy_entitlements`.
#[derive(Debug, Serialize)]
struct EntitlementsArgs {
    org_id: OrgId,
    at: DateTime<Utc>,
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn put_plan_version(
        &self,
        plan: &NewPlanVersion,
        now: DateTime<Utc>,
    ) -> Result<PlanVersion> {
        let args = PutPlanVersionArgs { plan, now };
        // Not repeatable: a put that landed would be followed by another
        // version.
        self.rpc(
            "tenancy_put_plan_version",
            "writing a plan version",
            Idempotent::No,
            &args,
        )
        .await
    }

    pub(crate) async fn plan_versions(&self, key: Option<&PlanKey>) -> Result<Vec<PlanVersion>> {
        self.rpc(
            "tenancy_plan_versions",
            "reading plan versions",
            Idempotent::Yes,
            &PlanVersionsArgs { plan_key: key },
        )
        .await
    }

    pub(crate) async fn plan_version(&self, plan: &PlanRef) -> Result<Option<PlanVersion>> {
        let versions: Vec<PlanVersion> = self
            .rpc(
                "tenancy_plan_version",
                "reading a plan version",
                Idempotent::Yes,
                &PlanVersionArgs {
                    plan_key: &plan.key,
                    version: plan.version,
                },
            )
            .await?;
        Ok(versions.into_iter().next())
    }

    pub(crate) async fn assign_plan(&self, request: &AssignPlan) -> Result<PlanAssignment> {
        let args = AssignPlanArgs {
            org_id: request.org,
            plan_key: &request.plan.key,
            version: request.plan.version,
            started_at: request.now,
            trial_ends_at: request.trial_ends_at,
            fallback_key: request.fallback.as_ref().map(|f| &f.key),
            fallback_version: request.fallback.as_ref().map(|f| f.version),
        };
        // Repeatable: the same assignment again is the same row.
        self.rpc(
            "tenancy_assign_plan",
            "assigning a plan",
            Idempotent::Yes,
            &args,
        )
        .await
    }

    pub(crate) async fn plan_assignment(&self, org: OrgId) -> Result<Option<PlanAssignment>> {
        let assignments: Vec<PlanAssignment> = self
            .rpc(
                "tenancy_plan_assignment",
                "reading a plan assignment",
                Idempotent::Yes,
                &OrgArg { org_id: org },
            )
            .await?;
        Ok(assignments.into_iter().next())
    }

    pub(crate) async fn unassign_plan(&self, org: OrgId) -> Result<bool> {
        let deleted: Deleted = self
            .rpc(
                "tenancy_unassign_plan",
                "removing a plan assignment",
                Idempotent::No,
                &OrgArg { org_id: org },
            )
            .await?;
        Ok(deleted.deleted)
    }

    pub(crate) async fn migrate_plan(&self, request: &MigratePlan) -> Result<u64> {
        let args = MigratePlanArgs {
            plan_key: &request.from.key,
            from_version: request.from.version,
            to_version: request.to_version,
            org_id: request.org,
        };
        // Not repeatable: a migration that landed moves nothing the second
        // time and would answer 0.
        let migrated: Migrated = self
            .rpc(
                "tenancy_migrate_plan",
                "migrating a plan",
                Idempotent::No,
                &args,
            )
            .await?;
        Ok(migrated.migrated)
    }

    pub(crate) async fn entitlements(
        &self,
        org: OrgId,
        now: DateTime<Utc>,
    ) -> Result<Entitlements> {
        self.rpc(
            "tenancy_entitlements",
            "reading entitlements",
            Idempotent::Yes,
            &EntitlementsArgs {
                org_id: org,
                at: now,
            },
        )
        .await
    }

    pub(crate) async fn entitlements_version(&self) -> Result<i64> {
        self.rpc(
            "tenancy_entitlements_version",
            "reading the entitlements version",
            Idempotent::Yes,
            &NoArgs {},
        )
        .await
    }

    pub(crate) async fn watch_entitlements(&self) -> Result<Option<EntitlementWatch>> {
        self.0.watch_entitlements().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response of `tenancy_entitlements`, as PostgreSQL returns it.
    const ENTITLEMENTS_EXAMPLE: &str = r#"{
  "org": "aaaaaaaa-1111-1111-1111-111111111111",
  "plan": {"key": "pro", "version": 1},
  "assignment": {
    "org": "aaaaaaaa-1111-1111-1111-111111111111",
    "plan": {"key": "pro", "version": 1},
    "fallback": null,
    "started_at": "2026-03-01T00:00:00+00:00",
    "trial_ends_at": null
  },
  "features": [
    [{"key": "veo", "config": {"q": 3}, "enabled": true, "expires_at": null,
      "updated_at": "2026-03-01T00:00:00+00:00"},
     {"kind": "plan", "plan": {"key": "pro", "version": 1}}]
  ],
  "limits": [
    [{"id": "b4c9fa43-9cff-4c7a-922a-af0b0d0b1069", "org": "aaaaaaaa-1111-1111-1111-111111111111",
      "mode": "hard", "scope": {"scope": "organization"}, "value": "5", "metric": "tokens",
      "period": "monthly", "created_at": "2026-03-06T22:26:14.743405+00:00",
      "expires_at": "2026-03-20T00:00:00+00:00", "limit_type": "monthly_tokens"},
     {"kind": "override", "expires_at": "2026-03-20T00:00:00+00:00"}]
  ],
  "rate_limits": [
    [{"id": "0192f0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f7", "org": "aaaaaaaa-1111-1111-1111-111111111111",
      "mode": "hard", "burst": "10", "scope": {"scope": "organization"}, "value": "60",
      "metric": "requests", "window": "minute", "created_at": "2026-03-01T00:00:00+00:00",
      "expires_at": null},
     {"kind": "plan", "plan": {"key": "pro", "version": 1}}]
  ],
  "valid_until": "2026-03-20T00:00:00+00:00"
}"#;

    /// A response of `tenancy_put_plan_version`.
    const PLAN_VERSION_EXAMPLE: &str = r#"{
  "name": "Pro",
  "plan": {"key": "pro", "version": 1},
  "limits": [{"id": "0192f0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f6", "mode": "hard", "value": "1000",
              "metric": "tokens", "period": "monthly"}],
  "features": [{"key": "veo", "config": {"q": 3}, "enabled": true},
               {"key": "x", "config": null, "enabled": false}],
  "created_at": "2026-03-01T00:00:00+00:00",
  "rate_limits": [{"id": "0192f0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f7", "mode": "hard", "burst": "10",
                   "value": "60", "metric": "requests", "window": "minute"}]
}"#;

    #[test]
    fn plan_examples_read_into_their_types() {
        let e: Entitlements = serde_json::from_str(ENTITLEMENTS_EXAMPLE).unwrap();
        assert_eq!(e.plan.as_ref().unwrap().version, 1);
        assert_eq!(e.features.len(), 1);
        assert!(e.limits[0].0.expires_at.is_some());
        assert!(e.valid_until.is_some());
        let v: PlanVersion = serde_json::from_str(PLAN_VERSION_EXAMPLE).unwrap();
        assert_eq!(v.features.len(), 2);
        assert!(v.features[1].config.is_null());
        assert_eq!(v.rate_limits[0].burst, rust_decimal::Decimal::TEN);
    }

    /// The argument names are the SQL function's parameters.
    #[test]
    fn put_arguments_are_named_as_in_sql() {
        let plan = NewPlanVersion::new(PlanKey::from_static("pro"), "Pro").unwrap();
        let args = PutPlanVersionArgs {
            plan: &plan,
            now: DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&args).unwrap();
        assert_eq!(
            json["plan"],
            serde_json::json!({"key": "pro", "name": "Pro", "features": [], "limits": [],
                               "rate_limits": []})
        );
        assert!(json.get("now").is_some());
    }
}
