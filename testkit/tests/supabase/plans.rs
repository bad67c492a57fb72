//! Plans through PostgREST: a user JWT reads its own organization's plan
//! and effective view (`tenancy_entitlements`), read-only, from Rust (the
//! user client) and from Python (supabase-py's `postgrest` package), and
//! nothing of another organization's.

use chrono::Utc;
use rust_decimal_macros::dec;
use serde_json::Value;
use tenancy::model::plan::{AssignPlan, NewPlanVersion, PlanRef};
use tenancy::store::PlanStore as _;
use tenancy::{MetricKey, NewLimit, Period, PlanKey};
use tenancy_testkit::isolation::denied;
use tenancy_testkit::python::{Python, example_dir};

use super::{two_orgs, user_client};

/// A plan key no other test uses.
fn plan_key() -> PlanKey {
    PlanKey::parse(&format!(
        "sb{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap()
}

#[tokio::test]
async fn members_read_their_own_entitlements_only() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let key = plan_key();
    let now = Utc::now();
    let plan = NewPlanVersion::new(key.clone(), "Pro")
        .and_then(|p| p.feature(tenancy::FeatureKey::parse("veo").unwrap(), true))
        .and_then(|p| {
            p.limit(NewLimit::new(
                MetricKey::TOKENS,
                Period::Monthly,
                dec!(500),
            )?)
        })
        .unwrap();
    let version = t.service.put_plan_version(&plan, now).await.unwrap();
    assert_eq!(version.plan.version, 1);
    let on_pro = PlanRef {
        key: key.clone(),
        version: 1,
    };
    t.service
        .assign_plan(&AssignPlan::new(t.acme.id, on_pro.clone(), now))
        .await
        .unwrap();

    // Rust, through the user client.
    let as_alice = user_client(server, &t.service, t.alice);
    let view = as_alice.entitlements(t.acme.id, now).await.unwrap();
    assert_eq!(view.plan.as_ref(), Some(&on_pro));
    assert_eq!(view.limits[0].0.value, dec!(500));
    assert_eq!(
        as_alice
            .plan_assignment(t.acme.id)
            .await
            .unwrap()
            .map(|a| a.plan),
        Some(on_pro.clone())
    );
    assert_eq!(as_alice.plan_versions(Some(&key)).await.unwrap().len(), 1);
    let as_bob = user_client(server, &t.service, t.bob);
    denied(
        as_bob.entitlements(t.acme.id, now).await,
        "bob reads acme's entitlements",
    );
    assert_eq!(as_bob.plan_assignment(t.acme.id).await.unwrap(), None);
    assert!(as_bob.plan_versions(Some(&key)).await.unwrap().is_empty());
    denied(
        as_alice
            .assign_plan(&AssignPlan::new(t.acme.id, on_pro.clone(), now))
            .await,
        "the owner reassigns its own plan",
    );

    // Python, with Alice's JWT.
    let Some(python) = Python::find() else {
        return;
    };
    let token = server.user_token(t.alice.as_uuid());
    let (acme, globex) = (t.acme.id.to_string(), t.globex.id.to_string());
    let anon = server.anon_key();
    let env = [
        ("SUPABASE_REST_URL", server.url()),
        ("SUPABASE_ANON_KEY", anon.as_str()),
        ("TENANCY_ACCESS_TOKEN", token.as_str()),
        ("TENANCY_ORG_ID", acme.as_str()),
        ("OTHER_ORG_ID", globex.as_str()),
        ("PLAN_KEY", key.as_str()),
    ];
    let out = python
        .with_import_dir(example_dir())
        .run_code(PYTHON, &env)
        .await
        .expect("start python3");
    out.assert_success();
    let lines = out.json_lines();
    let seen: &Value = &lines[0];
    assert_eq!(seen["plan"]["key"], key.as_str(), "{seen}");
    assert_eq!(seen["refused_other"], "42501", "{seen}");
    assert_eq!(seen["refused_assign"], "42501", "{seen}");
}

const PYTHON: &str = r#"
import json
import os

import tenancy_pages as tp

config = tp.Config.from_env()
client = tp.user_client(config, os.environ["TENANCY_ACCESS_TOKEN"])
org = os.environ["TENANCY_ORG_ID"]


def refusal(call):
    try:
        call()
    except tp.TenancyError as error:
        return error.code
    return None


view = tp._rpc(client, "tenancy_entitlements", {"org_id": org})
assert view["org"] == org, view
assert [f[0]["key"] for f in view["features"]] == ["veo"], view
other = refusal(lambda: tp._rpc(client, "tenancy_entitlements", {"org_id": os.environ["OTHER_ORG_ID"]}))
assign = refusal(lambda: tp._rpc(client, "tenancy_assign_plan", {
    "org_id": org, "plan_key": os.environ["PLAN_KEY"], "version": 1,
    "started_at": "2026-03-01T00:00:00Z"}))
print(json.dumps({"plan": view["plan"], "refused_other": other, "refused_assign": assign}))
"#;
