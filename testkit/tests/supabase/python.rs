//! The official Python client (supabase-py's `postgrest` package) calling
//! the SQL entry points through the stand-in: the Python example
//! (`examples/python/tenancy_pages.py`) agrees with the Rust API on the same
//! organization, and the entry points refuse what a caller may not do.
//!
//! Without Python and the client (`scripts/install-python`) the tests print
//! a SKIPPED line and pass, unless `TENANCY_REQUIRE_LIVE` is set.

use std::collections::HashMap;

use chrono::{DateTime, Timelike as _, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy::limits::LimitScope;
use tenancy::{
    LimitDecision, MetricKey, NewLimit, NewOrganization, OrgMembership, Organization, Period,
    PlatformOperator, Role, Tenancy, TenantContext, UsageEvent, UsageLine, UserId,
};
use tenancy_testkit::postgrest::Server;
use tenancy_testkit::python::{Python, PythonOutput, example_dir, example_path};
use tenancy_testkit::unique_slug;

use super::{server, service_store};

/// A fixed-offset zone in which it is now between 12:00 and 13:00, so that
/// the nearest period boundary (local midnight, daily and monthly) is 11
/// hours away and the Python and Rust calls of a test read the same
/// periods. `Etc/GMT-N` is N hours ahead of UTC.
fn noon_zone(now: DateTime<Utc>) -> String {
    let ahead = (12 + 24 - now.hour() as i32) % 24;
    match if ahead > 14 { ahead - 24 } else { ahead } {
        0 => "Etc/GMT".to_owned(),
        hours if hours > 0 => format!("Etc/GMT-{hours}"),
        hours => format!("Etc/GMT+{}", -hours),
    }
}

/// An organization (`acme`) with limits, a feature, usage and members of
/// every role, and another one (`globex`) of another user.
struct Scene {
    server: &'static Server,
    tenancy: Tenancy,
    acme: Organization,
    globex: Organization,
    owner: UserId,
    member: UserId,
    viewer: UserId,
    outsider: UserId,
}

/// The config of Acme's `veo_avatars` feature.
fn feature_config() -> Value {
    json!({"max_seconds": 30, "voices": ["alloy", "echo"]})
}

async fn scene() -> Option<(Python, Scene)> {
    let python = Python::find()?;
    let server = tokio::task::spawn_blocking(server).await.expect("start")?;
    let tenancy = Tenancy::builder()
        .store(service_store(server))
        .build()
        .expect("tenancy");
    let (owner, member, viewer, outsider) = (
        UserId::new_v7(),
        UserId::new_v7(),
        UserId::new_v7(),
        UserId::new_v7(),
    );
    let zone = noon_zone(Utc::now());
    let acme = tenancy
        .create_organization(
            owner,
            NewOrganization::new("Acme", &unique_slug("acme"))
                .and_then(|n| n.timezone(&zone))
                .unwrap(),
        )
        .await
        .expect("acme");
    let globex = tenancy
        .create_organization(
            outsider,
            NewOrganization::new("Globex", &unique_slug("globex")).unwrap(),
        )
        .await
        .expect("globex");
    let as_owner = tenancy.context(owner, acme.id).await.expect("owner");
    tenancy
        .add_member(&as_owner, member, Role::Member)
        .await
        .expect("member");
    tenancy
        .add_member(&as_owner, viewer, Role::Viewer)
        .await
        .expect("viewer");
    // The member's own workspace, joined later: their org selector has two
    // entries, Acme first.
    tenancy
        .create_organization(
            member,
            NewOrganization::new("Sandbox", &unique_slug("sandbox")).unwrap(),
        )
        .await
        .expect("sandbox");

    let operator = PlatformOperator::new("python-tests");
    let admin = tenancy.operator(&operator);
    let metric = |m: &str| MetricKey::parse(m).unwrap();
    for limit in [
        NewLimit::new(metric("ads_created"), Period::Daily, dec!(5)).unwrap(),
        NewLimit::new(metric("tokens"), Period::Monthly, dec!(100000)).unwrap(),
        NewLimit::new(metric("tokens"), Period::Daily, dec!(3000))
            .unwrap()
            .for_user(member)
            .soft(),
    ] {
        admin.set_limit(acme.id, limit).await.expect("limit");
    }
    admin
        .set_feature_config(acme.id, "veo_avatars", feature_config())
        .await
        .expect("feature config");
    admin
        .enable_feature(acme.id, "veo_avatars")
        .await
        .expect("feature");
    let service = tenancy.service();
    service
        .record_usage(
            UsageEvent::new(acme.id)
                .user(owner)
                .quantity(metric("ads_created"), dec!(2)),
        )
        .await
        .expect("owner's ads");
    service
        .record_usage(UsageEvent::new(acme.id).user(member).tokens(200, 0, 50))
        .await
        .expect("member's tokens");
    let scene = Scene {
        server,
        tenancy,
        acme,
        globex,
        owner,
        member,
        viewer,
        outsider,
    };
    Some((python, scene))
}

impl Scene {
    /// The variables the example reads, for `user` in Acme.
    fn env(&self, user: UserId) -> Vec<(&'static str, String)> {
        vec![
            ("SUPABASE_REST_URL", self.server.url().to_owned()),
            ("SUPABASE_ANON_KEY", self.server.anon_key()),
            ("SUPABASE_SERVICE_ROLE_KEY", self.server.service_key()),
            (
                "TENANCY_ACCESS_TOKEN",
                self.server.user_token(user.as_uuid()),
            ),
            ("TENANCY_USER_ID", user.to_string()),
            ("TENANCY_ORG_ID", self.acme.id.to_string()),
            ("OTHER_ORG_ID", self.globex.id.to_string()),
            ("OWNER_ID", self.owner.to_string()),
        ]
    }

    async fn ctx(&self, user: UserId) -> TenantContext {
        self.tenancy
            .context(user, self.acme.id)
            .await
            .expect("context")
    }

    /// Runs the example as a script, as `user`; it must succeed.
    async fn run_example(&self, python: &Python, user: UserId) -> PythonOutput {
        let env = self.env(user);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = python
            .run_script(&example_path("tenancy_pages.py"), &env)
            .await
            .expect("start python3");
        out.assert_success();
        out
    }

    /// Runs `code` (after [`PRELUDE`]) as `user`; it must succeed.
    async fn run_code(&self, python: &Python, user: UserId, code: &str) -> PythonOutput {
        let env = self.env(user);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = python
            .clone()
            .with_import_dir(example_dir())
            .run_code(&format!("{PRELUDE}\n{code}"), &env)
            .await
            .expect("start python3");
        out.assert_success();
        out
    }
}

/// What the inline scripts share: the example imported, a client for the
/// user, and `refusal`, the SQLSTATE a call was refused with.
const PRELUDE: &str = r#"
import json
import os
import uuid
from decimal import Decimal

import tenancy_pages as tp

config = tp.Config.from_env()
client = tp.user_client(config, os.environ["TENANCY_ACCESS_TOKEN"])
service = tp.service_client(config)
org = os.environ["TENANCY_ORG_ID"]
other_org = os.environ["OTHER_ORG_ID"]
me = os.environ["TENANCY_USER_ID"]


def refusal(call):
    """The SQLSTATE `call` was refused with; None when it succeeded."""
    try:
        call()
    except tp.TenancyError as error:
        return error.code
    return None
"#;

// ---- the Python answers, typed so that decimals compare by value and
// ---- times as instants

#[derive(Debug, PartialEq, Deserialize)]
struct PyOrganization {
    id: String,
    name: String,
    slug: String,
    owner_user_id: Option<String>,
    timezone: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct PyMembership {
    organization: PyOrganization,
    role: String,
    joined_at: DateTime<Utc>,
}

impl From<&OrgMembership> for PyMembership {
    fn from(m: &OrgMembership) -> Self {
        let org = &m.organization;
        PyMembership {
            organization: PyOrganization {
                id: org.id.to_string(),
                name: org.name.clone(),
                slug: org.slug.to_string(),
                owner_user_id: org.owner_user_id.map(|u| u.to_string()),
                timezone: org.timezone.name().to_owned(),
                created_at: org.created_at,
            },
            role: m.role.as_str().to_owned(),
            joined_at: m.joined_at,
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
struct PyFeature {
    key: String,
    enabled: bool,
    config: Value,
}

#[derive(Debug, PartialEq, Deserialize)]
struct PyDecidingLimit {
    id: String,
    user_id: Option<String>,
    period: String,
    mode: String,
}

#[derive(Debug, PartialEq, Deserialize)]
struct PyDecision {
    allowed: bool,
    metric: String,
    requested: Decimal,
    used: Decimal,
    reserved: Decimal,
    limit: Option<Decimal>,
    remaining: Option<Decimal>,
    resets_at: Option<DateTime<Utc>>,
    level: String,
    decided_by: Option<PyDecidingLimit>,
}

/// A unit enum's serde name (`"warning"`, `"hard"`).
fn name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("a unit variant")
}

fn scope_user(scope: LimitScope) -> Option<String> {
    scope.user().map(|u| u.to_string())
}

impl From<&LimitDecision> for PyDecision {
    fn from(d: &LimitDecision) -> Self {
        PyDecision {
            allowed: d.allowed,
            metric: d.metric.to_string(),
            requested: d.requested,
            used: d.used,
            reserved: d.reserved,
            limit: d.limit,
            remaining: d.remaining,
            resets_at: d.resets_at,
            level: name(d.level),
            decided_by: d.decided_by.map(|l| PyDecidingLimit {
                id: l.id.to_string(),
                user_id: scope_user(l.scope),
                period: l.period.as_str().to_owned(),
                mode: l.mode.as_str().to_owned(),
            }),
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
struct PyUsageLine {
    metric: String,
    period: String,
    user_id: Option<String>,
    used: Decimal,
    reserved: Decimal,
    limit: Option<Decimal>,
    mode: Option<String>,
    remaining: Option<Decimal>,
    percent: Option<Decimal>,
    level: String,
    resets_at: DateTime<Utc>,
}

impl From<&UsageLine> for PyUsageLine {
    fn from(l: &UsageLine) -> Self {
        PyUsageLine {
            metric: l.metric.to_string(),
            period: l.period.as_str().to_owned(),
            user_id: scope_user(l.scope),
            used: l.used,
            reserved: l.reserved,
            limit: l.limit,
            mode: l.mode.map(|m| m.as_str().to_owned()),
            remaining: l.remaining,
            percent: l.percent,
            level: name(l.level),
            resets_at: l.resets_at,
        }
    }
}

#[derive(Debug, Deserialize)]
struct PyReservation {
    granted: bool,
    reservation_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    decision: PyDecision,
}

/// The example's steps, by name.
fn steps(out: &PythonOutput) -> HashMap<String, Value> {
    let mut steps = HashMap::new();
    for line in out.json_lines() {
        let step = line["step"].as_str().expect("a step name").to_owned();
        assert!(
            steps.insert(step.clone(), line["result"].clone()).is_none(),
            "step {step} twice:\n{out}"
        );
    }
    steps
}

fn step<T: DeserializeOwned>(steps: &HashMap<String, Value>, name: &str) -> T {
    let value = steps
        .get(name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"));
    T::deserialize(value).unwrap_or_else(|e| panic!("step {name}: {e}: {value}"))
}

fn line<'a>(
    lines: &'a [PyUsageLine],
    metric: &str,
    period: &str,
    user: Option<UserId>,
) -> &'a PyUsageLine {
    let user = user.map(|u| u.to_string());
    lines
        .iter()
        .find(|l| l.metric == metric && l.period == period && l.user_id == user)
        .unwrap_or_else(|| panic!("no {period} {metric} line for {user:?} in {lines:#?}"))
}

// ---- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_agrees_with_the_rust_api() {
    let Some((python, s)) = scene().await else {
        return;
    };
    let member = s.ctx(s.member).await;
    let before = s
        .tenancy
        .check_limit(&member, "ads_created", dec!(1))
        .await
        .unwrap();

    let out = s.run_example(&python, s.member).await;
    let steps = steps(&out);

    // The org selector: the same organizations, in the same order.
    let orgs: Vec<PyMembership> = step(&steps, "organizations");
    let rust_orgs = s.tenancy.orgs_for_user(s.member).await.unwrap();
    assert_eq!(orgs.len(), 2, "{orgs:#?}");
    assert_eq!(
        orgs,
        rust_orgs.iter().map(PyMembership::from).collect::<Vec<_>>()
    );
    assert_eq!(orgs[0].organization.id, s.acme.id.to_string());
    assert_eq!(orgs[0].role, "member");

    // The feature, with its config.
    let feature: PyFeature = step(&steps, "feature");
    assert!(s.tenancy.has_feature(&member, "veo_avatars").await.unwrap());
    let config: Option<Value> = s
        .tenancy
        .feature_config(&member, "veo_avatars")
        .await
        .unwrap();
    assert_eq!(
        feature,
        PyFeature {
            key: "veo_avatars".to_owned(),
            enabled: true,
            config: config.expect("a config"),
        }
    );
    assert_eq!(feature.config, feature_config());

    // The check before anything was used: 2 of 5 ads.
    let check_before: PyDecision = step(&steps, "check_before");
    assert_eq!(check_before, PyDecision::from(&before));
    assert!(check_before.allowed);
    assert_eq!(check_before.used, dec!(2));

    // Reserved 2000 tokens, committed 1500; the failed call's hold was
    // released.
    let reserved: PyReservation = step(&steps, "reserved");
    assert!(reserved.granted, "{reserved:?}");
    assert!(reserved.reservation_id.is_some());
    assert!(reserved.expires_at.is_some_and(|at| at > Utc::now()));
    assert_eq!(reserved.decision.requested, dec!(2000));
    assert_eq!(
        steps["committed"],
        json!({"released_hold": true, "recorded": true})
    );
    assert_eq!(steps["released"], json!({"released": true}));
    let recorded = &steps["recorded"];
    assert_eq!(
        (
            recorded["inserted"].as_u64(),
            recorded["duplicates"].as_u64()
        ),
        (Some(1), Some(0))
    );

    // The usage page, after all of it: what the Rust API reads, line by
    // line.
    let summary: Vec<PyUsageLine> = step(&steps, "summary");
    let rust_summary = s.tenancy.usage_summary(&member).await.unwrap();
    assert_eq!(
        summary,
        rust_summary
            .iter()
            .map(PyUsageLine::from)
            .collect::<Vec<_>>()
    );
    // 250 seeded, 1500 committed, 500 recorded by the back end; 3 ads.
    let tokens = line(&summary, "tokens", "monthly", None);
    assert_eq!((tokens.used, tokens.reserved), (dec!(2250), dec!(0)));
    assert_eq!(tokens.limit, Some(dec!(100000)));
    let own = line(&summary, "tokens", "daily", Some(s.member));
    assert_eq!((own.used, own.mode.as_deref()), (dec!(2250), Some("soft")));
    assert_eq!(own.percent, Some(dec!(75)));
    assert_eq!(own.level, "ok");
    assert_eq!(line(&summary, "ads_created", "daily", None).used, dec!(3));

    let check_after: PyDecision = step(&steps, "check_after");
    let after = s
        .tenancy
        .check_limit(&member, "ads_created", dec!(1))
        .await
        .unwrap();
    assert_eq!(check_after, PyDecision::from(&after));
    assert_eq!(
        (check_after.used, check_after.remaining),
        (dec!(3), Some(dec!(2)))
    );
    assert_eq!(check_after.level, "warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_meters_usage_from_python_and_the_service_key_records() {
    let Some((python, s)) = scene().await else {
        return;
    };
    let out = s
        .run_code(
            &python,
            s.member,
            r#"
decision = tp.check_limit(client, org, "tokens", 1000)
assert decision.allowed and decision.requested == 1000, decision

# Reserve, commit; a retried commit records nothing more.
hold = tp.reserve(client, org, "tokens", 1000)
assert hold.granted and hold.decision.allowed, hold
assert tp.commit(client, org, hold.reservation_id, Decimal("800.5")) == tp.CommitOutcome(True, True)
assert tp.commit(client, org, hold.reservation_id, Decimal("800.5")) == tp.CommitOutcome(False, False)

# Reserve, release; a second release finds nothing.
hold = tp.reserve(client, org, "tokens", 400)
held = {(l.metric, l.period, l.user_id): l for l in tp.usage_summary(client, org)}
assert held[("tokens", "monthly", None)].reserved == 400, held
assert tp.release(client, org, hold.reservation_id) is True
assert tp.release(client, org, hold.reservation_id) is False

# More than the monthly limit: a denial is a value from reserve, and
# LimitExceeded from metered (the block never runs).
denied = tp.reserve(client, org, "tokens", 10**6)
assert not denied.granted and denied.reservation_id is None, denied
assert not denied.decision.allowed and denied.decision.level == "exceeded", denied
try:
    with tp.metered(client, org, "tokens", 10**6):
        raise AssertionError("the block ran")
except tp.LimitExceeded as error:
    assert error.decision.limit == 100000, error.decision

# The service key records for the member, once per event id.
event = dict(user_id=me, event_id=str(uuid.uuid4()), input_tokens=100,
             quantities={"ads_created": 1})
first = tp.record_event(service, org, **event)
again = tp.record_event(service, org, **event)
assert (first.inserted, first.duplicates) == (1, 0), first
assert (again.inserted, again.duplicates, again.ids) == (0, 1, first.ids), again

lines = {(l.metric, l.period, l.user_id): l for l in tp.usage_summary(client, org)}
orgs = tp.my_organizations(client)
print(json.dumps({
    "monthly_tokens": str(lines[("tokens", "monthly", None)].used),
    "monthly_reserved": str(lines[("tokens", "monthly", None)].reserved),
    "daily_ads": str(lines[("ads_created", "daily", None)].used),
    "orgs": [(m.organization.id, m.role) for m in orgs],
}))
"#,
        )
        .await;
    let result = &out.json_lines()[0];
    // 250 seeded + 800.5 committed + 100 recorded (once).
    let used = |key: &str| -> Decimal { result[key].as_str().unwrap().parse().unwrap() };
    assert_eq!(used("monthly_tokens"), dec!(1150.5), "{out}");
    assert_eq!(used("monthly_reserved"), dec!(0), "{out}");
    assert_eq!(used("daily_ads"), dec!(3), "{out}");
    assert_eq!(result["orgs"][0], json!([s.acme.id.to_string(), "member"]));
    assert_eq!(result["orgs"].as_array().map(Vec::len), Some(2));

    // The Rust API sees the same usage.
    let lines = s
        .tenancy
        .usage_summary(&s.ctx(s.member).await)
        .await
        .unwrap();
    let monthly = lines
        .iter()
        .find(|l| {
            l.metric.as_str() == "tokens" && l.period == Period::Monthly && l.scope.user().is_none()
        })
        .expect("monthly tokens");
    assert_eq!(monthly.used, dec!(1150.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_from_python_but_may_not_consume() {
    let Some((python, s)) = scene().await else {
        return;
    };
    let out = s
        .run_code(
            &python,
            s.viewer,
            r#"
print(json.dumps({
    "check": tp.check_limit(client, org, "ads_created", 1).allowed,
    "summary": len(tp.usage_summary(client, org)),
    "feature": tp.feature(client, org, "veo_avatars").enabled,
    "reserve": refusal(lambda: tp.reserve(client, org, "tokens", 10)),
    "record": refusal(lambda: tp.record_event(client, org, input_tokens=10)),
}))
"#,
        )
        .await;
    let viewer_lines = s
        .tenancy
        .usage_summary(&s.ctx(s.viewer).await)
        .await
        .unwrap();
    assert!(!viewer_lines.is_empty());
    assert_eq!(
        out.json_lines()[0],
        json!({
            "check": true,
            "summary": viewer_lines.len(),
            "feature": true,
            "reserve": "42501",
            "record": "42501",
        }),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_callers_are_refused_another_organization_and_another_user() {
    let Some((python, s)) = scene().await else {
        return;
    };
    // Globex's owner, in Acme.
    let out = s
        .run_code(
            &python,
            s.outsider,
            r#"
print(json.dumps({
    "check": refusal(lambda: tp.check_limit(client, org, "ads_created", 1)),
    "summary": refusal(lambda: tp.usage_summary(client, org)),
    "feature": refusal(lambda: tp.feature(client, org, "veo_avatars")),
    "reserve": refusal(lambda: tp.reserve(client, org, "tokens", 1)),
    "own_check": refusal(lambda: tp.check_limit(client, other_org, "tokens")),
    "orgs": [m.organization.id for m in tp.my_organizations(client)],
}))
"#,
        )
        .await;
    assert_eq!(
        out.json_lines()[0],
        json!({
            "check": "42501",
            "summary": "42501",
            "feature": "42501",
            "reserve": "42501",
            "own_check": null,
            "orgs": [s.globex.id.to_string()],
        }),
        "{out}"
    );

    // Acme's member, in Globex, and for Acme's owner.
    let out = s
        .run_code(
            &python,
            s.member,
            r#"
owner = os.environ["OWNER_ID"]
print(json.dumps({
    "other_summary": refusal(lambda: tp.usage_summary(client, other_org)),
    "other_check": refusal(lambda: tp.check_limit(client, other_org, "tokens")),
    "for_owner_check": refusal(lambda: tp.check_limit(client, org, "tokens", user_id=owner)),
    "for_owner_orgs": refusal(lambda: tp.my_organizations(client, user_id=owner)),
    "own_summary": refusal(lambda: tp.usage_summary(client, org, user_id=me)),
}))
"#,
        )
        .await;
    assert_eq!(
        out.json_lines()[0],
        json!({
            "other_summary": "42501",
            "other_check": "42501",
            "for_owner_check": "42501",
            "for_owner_orgs": "42501",
            "own_summary": null,
        }),
        "{out}"
    );
}
