//! Plans in SQL (`migrations/20261206001200_tenancy_plans.sql`): the
//! effective view is the Rust rule (`tenancy::limits::entitlements`) on a
//! table of cases; versions are numbered atomically and immutable; members
//! read their own organization's plan only and nobody but the service role
//! writes plans, assignments or overrides (an owner included); every
//! change bumps the version and notifies `tenancy_entitlements`; and every
//! entry point decides by the plan.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tenancy::OrgId;
use tenancy::limits::Limit;
use tenancy::limits::entitlements::{Overrides, effective};
use tenancy::limits::rate::{RateLimit, RateState};
use tenancy::model::Feature;
use tenancy::model::plan::{Entitlements, PlanAssignment, PlanVersion};
use tenancy_testkit::pg::{self, Actor, Cluster, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

use crate::support::{
    World, add_member, assert_code, assert_denied, at, call_as, create_org, day, execute_as, month,
    world,
};

/// A plan key no other test uses.
fn plan_key() -> String {
    format!("p{}", &Uuid::new_v4().simple().to_string()[..16])
}

async fn one(db: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Value {
    db.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Writes the next version of `key` with `tokens` a month (hard), feature
/// `veo` on with `{"tier": key}`, feature `beta` off, and 60 requests a
/// minute (burst 10); the version's JSON.
async fn put_plan(db: &Client, key: &str, tokens: i64, now: DateTime<Utc>) -> Value {
    let plan = json!({
        "key": key,
        "name": "Plan",
        "features": [
            {"key": "veo", "enabled": true, "config": {"tier": key}},
            {"key": "beta", "enabled": false, "config": null}
        ],
        "limits": [
            {"id": Uuid::new_v4(), "metric": "tokens", "period": "monthly",
             "value": tokens.to_string(), "mode": "hard"},
            {"id": Uuid::new_v4(), "metric": "ads_created", "period": "daily",
             "value": "5", "mode": "soft"}
        ],
        "rate_limits": [
            {"id": Uuid::new_v4(), "metric": "requests", "window": "minute",
             "value": "60", "burst": "10", "mode": "hard"}
        ]
    });
    one(
        db,
        "select tenancy_put_plan_version($1::jsonb, $2)",
        &[&plan, &now],
    )
    .await
}

/// A trial's end, and the plan version it falls to (`None`: no plan).
type Trial<'a> = (DateTime<Utc>, Option<(&'a str, i32)>);

async fn assign(
    db: &Client,
    org: Uuid,
    key: &str,
    version: i32,
    trial: Option<Trial<'_>>,
) -> Value {
    let (ends, fallback) = match trial {
        Some((ends, fallback)) => (Some(ends), fallback),
        None => (None, None),
    };
    let (fallback_key, fallback_version) = match fallback {
        Some((k, v)) => (Some(k), Some(v)),
        None => (None, None),
    };
    one(
        db,
        "select tenancy_assign_plan(org_id => $1, plan_key => $2, version => $3, \
         started_at => $4, trial_ends_at => $5, fallback_key => $6, fallback_version => $7)",
        &[
            &org,
            &key,
            &version,
            &at("2026-03-01T00:00:00Z"),
            &ends,
            &fallback_key,
            &fallback_version,
        ],
    )
    .await
}

/// The SQL view of `org` at `when`.
async fn sql_view(db: &Client, org: Uuid, when: DateTime<Utc>) -> Entitlements {
    serde_json::from_value(
        one(
            db,
            "select tenancy_entitlements(org_id => $1, at => $2)",
            &[&org, &when],
        )
        .await,
    )
    .expect("tenancy_entitlements reads into Entitlements")
}

/// The Rust rule on what SQL stores for `org`: its assignment, the plan
/// version in effect, its own rows.
async fn rust_view(db: &Client, org: Uuid, when: DateTime<Utc>) -> Entitlements {
    let assignments: Vec<PlanAssignment> =
        serde_json::from_value(one(db, "select tenancy_plan_assignment($1)", &[&org]).await)
            .unwrap();
    let assignment = assignments.into_iter().next();
    let in_effect = assignment
        .as_ref()
        .and_then(|a| tenancy::limits::entitlements::plan_in_effect(a, when).cloned());
    let plan: Option<PlanVersion> = match in_effect {
        Some(r) => {
            let versions: Vec<PlanVersion> = serde_json::from_value(
                one(
                    db,
                    "select tenancy_plan_version($1, $2)",
                    &[&r.key.as_str(), &(r.version as i32)],
                )
                .await,
            )
            .unwrap();
            versions.into_iter().next()
        }
        None => None,
    };
    let features: Vec<Feature> =
        serde_json::from_value(one(db, "select tenancy_features($1)", &[&org]).await).unwrap();
    let limits: Vec<Limit> =
        serde_json::from_value(one(db, "select tenancy_limits($1)", &[&org]).await).unwrap();
    let rates: Vec<RateState> =
        serde_json::from_value(one(db, "select tenancy_rate_limits($1)", &[&org]).await).unwrap();
    let rate_limits: Vec<RateLimit> = rates.into_iter().map(|s| s.limit).collect();
    effective(
        OrgId::from(org),
        assignment.as_ref(),
        plan.as_ref(),
        Overrides {
            features: &features,
            limits: &limits,
            rate_limits: &rate_limits,
        },
        when,
    )
}

async fn put_override_limit(
    db: &Client,
    org: Uuid,
    user: Option<Uuid>,
    value: i64,
    expires: Option<DateTime<Utc>>,
) {
    db.query(
        "select id from tenancy_put_limit(limit_id => $1, org_id => $2, metric => 'tokens', \
         period => 'monthly', limit_value => $3::bigint::numeric, user_id => $4, \
         created_at => '2026-03-02T00:00:00Z', expires_at => $5)",
        &[&Uuid::new_v4(), &org, &value, &user, &expires],
    )
    .await
    .expect("tenancy_put_limit");
}

async fn put_override_feature(
    db: &Client,
    org: Uuid,
    key: &str,
    enabled: bool,
    expires: Option<DateTime<Utc>>,
) {
    db.query(
        "select feature_key from tenancy_update_feature(org_id => $1, feature_key => $2, \
         set_config => false, updated_at => '2026-03-02T00:00:00Z', enabled => $3, \
         set_expires => true, expires_at => $4)",
        &[&org, &key, &enabled, &expires],
    )
    .await
    .expect("tenancy_update_feature");
}

async fn put_override_rate(db: &Client, org: Uuid, value: i64, expires: Option<DateTime<Utc>>) {
    one(
        db,
        "select tenancy_put_rate_limit(limit_id => $1, org_id => $2, metric => 'requests', \
         rate_window => 'minute', limit_value => $3::bigint::numeric, burst => 5, mode => 'hard', \
         created_at => '2026-03-02T00:00:00Z', expires_at => $4)",
        &[&Uuid::new_v4(), &org, &value, &expires],
    )
    .await;
}

/// The organizations of the table of cases, and its two instants.
struct Cases {
    no_plan: Uuid,
    on_plan: Uuid,
    trial_to_free: Uuid,
    trial_to_nothing: Uuid,
    free: String,
    t1: DateTime<Utc>,
    t2: DateTime<Utc>,
}

/// One organization per case family, on `db`: no plan with lapsing rows;
/// a plan with overrides (lapsing and not, org-wide and per user); a trial
/// falling to a fallback; a trial falling to nothing.
async fn cases(db: &Client) -> Cases {
    let owner = create_user(db).await;
    let user = create_user(db).await;
    let (pro, free) = (plan_key(), plan_key());
    put_plan(db, &pro, 1000, at("2026-02-01T00:00:00Z")).await;
    put_plan(db, &free, 100, at("2026-02-02T00:00:00Z")).await;
    let t1 = at("2026-03-10T00:00:00Z"); // overrides lapse
    let t2 = at("2026-03-20T00:00:00Z"); // the trial ends

    let no_plan = create_org(db, owner).await;
    put_override_limit(db, no_plan, None, 7, Some(t1)).await;
    put_override_feature(db, no_plan, "veo", true, Some(t1)).await;
    put_override_rate(db, no_plan, 3, Some(t2)).await;

    let on_plan = create_org(db, owner).await;
    add_member(db, on_plan, user, "member").await;
    assign(db, on_plan, &pro, 1, None).await;
    put_override_limit(db, on_plan, None, 5000, Some(t1)).await;
    put_override_limit(db, on_plan, Some(user), 10, None).await;
    put_override_feature(db, on_plan, "beta", true, Some(t1)).await;
    put_override_feature(db, on_plan, "veo", false, None).await;
    put_override_rate(db, on_plan, 1, Some(t1)).await;

    let trial_to_free = create_org(db, owner).await;
    assign(db, trial_to_free, &pro, 1, Some((t2, Some((&free, 1))))).await;
    put_override_limit(db, trial_to_free, None, 50, Some(t1)).await;

    let trial_to_nothing = create_org(db, owner).await;
    assign(db, trial_to_nothing, &pro, 1, Some((t2, None))).await;
    put_override_feature(db, trial_to_nothing, "other", true, None).await;
    Cases {
        no_plan,
        on_plan,
        trial_to_free,
        trial_to_nothing,
        free,
        t1,
        t2,
    }
}

/// Where the SQL view and the Rust rule disagree, at every instant around
/// each lapse and trial end (before, exactly at, after): `(case, instant)`.
async fn view_disagreements(db: &Client, c: &Cases) -> Vec<(&'static str, DateTime<Utc>)> {
    let second = Span::seconds(1);
    let instants = [
        at("2026-03-05T00:00:00Z"),
        c.t1 - second,
        c.t1,
        c.t1 + second,
        c.t2 - second,
        c.t2,
        c.t2 + second,
        at("2026-04-01T00:00:00Z"),
    ];
    let mut problems = Vec::new();
    for (name, org) in [
        ("no plan", c.no_plan),
        ("on a plan", c.on_plan),
        ("trial to free", c.trial_to_free),
        ("trial to nothing", c.trial_to_nothing),
    ] {
        for when in instants {
            let sql: Result<Entitlements, _> = serde_json::from_value(
                one(
                    db,
                    "select tenancy_entitlements(org_id => $1, at => $2)",
                    &[&org, &when],
                )
                .await,
            );
            // A view that does not even read is a disagreement too.
            if sql.ok() != Some(rust_view(db, org, when).await) {
                problems.push((name, when));
            }
        }
    }
    problems
}

/// The table of cases: the SQL view and the Rust rule agree at every
/// instant around each expiry and trial end (before, exactly at, after).
#[tokio::test]
async fn the_effective_view_is_the_rust_rule() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let c = cases(&db).await;
    assert_eq!(view_disagreements(&db, &c).await, []);
    let (t1, t2, second) = (c.t1, c.t2, Span::seconds(1));

    // Positive controls: the cases cover what they claim.
    let before = sql_view(&db, c.on_plan, t1 - second).await;
    let tokens = |e: &Entitlements| -> Vec<String> {
        e.limits
            .iter()
            .filter(|(l, _)| l.metric.as_str() == "tokens")
            .map(|(l, _)| l.value.to_string())
            .collect()
    };
    let mut both = tokens(&before);
    both.sort_unstable();
    assert_eq!(both, ["10", "5000"], "the override, and the user's row");
    assert_eq!(before.valid_until, Some(t1));
    let after = sql_view(&db, c.on_plan, t1).await;
    assert_eq!(
        tokens(&after),
        ["1000", "10"],
        "the plan, exactly at the expiry"
    );
    let trial = sql_view(&db, c.trial_to_free, t2).await;
    assert_eq!(
        trial.plan.as_ref().map(|p| p.key.as_str()),
        Some(c.free.as_str())
    );
    assert_eq!(tokens(&trial), ["100"]);
    let ended = sql_view(&db, c.trial_to_nothing, t2).await;
    assert_eq!(ended.plan, None);
    assert_eq!(ended.features.len(), 1, "only the organization's own row");
    let unknown = db
        .query_one("select tenancy_entitlements($1)", &[&Uuid::new_v4()])
        .await;
    assert_code(
        unknown,
        tokio_postgres::error::SqlState::NO_DATA_FOUND,
        "an unknown organization",
    );
}

/// The table of cases sees a drifted rule: a feature row that still counts
/// at the instant it lapses, and a trial that ends an instant late.
#[tokio::test]
async fn the_cases_see_a_drifted_effective_rule() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("plans_drift_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    db.batch_execute(&pg::bootstrap_sql()).await.unwrap();
    let drifts = [
        (
            "where f.organization_id = p_org and (f.expires_at is null or f.expires_at > p_at)",
            "where f.organization_id = p_org and (f.expires_at is null or f.expires_at >= p_at)",
        ),
        (
            "a.trial_ends_at <= p_at\n             then a.fallback_key else",
            "a.trial_ends_at < p_at\n             then a.fallback_key else",
        ),
    ];
    for (file, mut sql) in pg::migrations() {
        if file == "20261206001200_tenancy_plans.sql" {
            for (from, to) in drifts {
                assert_eq!(sql.matches(from).count(), 1, "{file} says {from:?} once");
                sql = sql.replace(from, to);
            }
        }
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let c = cases(&db).await;
    let problems = view_disagreements(&db, &c).await;
    assert!(problems.contains(&("no plan", c.t1)), "{problems:?}");
    assert!(problems.contains(&("trial to free", c.t2)), "{problems:?}");
    assert!(
        !problems.contains(&("trial to free", c.t2 + Span::seconds(1))),
        "{problems:?}"
    );
}

/// Concurrent puts of one key get versions 1..n, each once; nobody, the
/// service role included, changes or deletes a version.
#[tokio::test]
async fn versions_are_numbered_atomically_and_immutable() {
    let Some(pg) = Cluster::shared() else { return };
    let key = plan_key();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let db = pg.superuser().await;
            let v = put_plan(&db, &key, 10, at("2026-03-01T00:00:00Z")).await;
            v["plan"]["version"].as_i64().unwrap()
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());

    let db = pg.superuser().await;
    let listed = one(&db, "select tenancy_plan_versions($1)", &[&key]).await;
    assert_eq!(listed.as_array().unwrap().len(), 8);
    let fresh: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["limits"][0]["id"])
        .collect();
    let mut ids = fresh.clone();
    ids.dedup();
    assert_eq!(ids.len(), 8, "limit ids are fresh per version");

    let mut conn = pg.authenticator().await;
    for sql in [
        "update public.plan_limits set limit_value = 1 where plan_key = $1",
        "delete from public.plan_features where plan_key = $1",
        "update public.plan_versions set name = 'x' where plan_key = $1",
        "delete from public.plan_versions where plan_key = $1",
    ] {
        assert_denied(
            execute_as(&mut conn, Actor::Service, sql, &[&key]).await,
            sql,
        );
    }
    // A plan entry id given twice gets a fresh one the second time.
    let first = one(&db, "select tenancy_plan_version($1, 1)", &[&key]).await;
    let again = json!({"key": key, "name": "Again", "limits": [
        {"id": first[0]["limits"][0]["id"], "metric": "tokens", "period": "daily", "value": "1"}]});
    let put = one(
        &db,
        "select tenancy_put_plan_version($1::jsonb, now())",
        &[&again],
    )
    .await;
    assert_ne!(put["limits"][0]["id"], first[0]["limits"][0]["id"]);
    assert_eq!(put["plan"]["version"], 9);
}

/// A malformed plan entry is 22023 naming it (`limits[1].period`), for
/// each field, before anything is written; two entries sharing an id get
/// distinct ids; two entries in one slot are 23505.
#[tokio::test]
async fn a_malformed_plan_is_refused_naming_the_field() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let key = plan_key();
    let limit = json!({"metric": "tokens", "period": "daily", "value": "5"});
    let rate = json!({"metric": "requests", "window": "minute", "value": 60, "burst": "10"});
    let with = |base: &Value, field: &str, value: Value| {
        let mut entry = base.clone();
        entry[field] = value;
        entry
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"features": {}}), "features: must be an array"),
        (json!({"limits": "x"}), "limits: must be an array"),
        (json!({"features": [1]}), "features[0]: must be an object"),
        (
            json!({"features": [{"key": "Bad key", "enabled": true}]}),
            "features[0].key:",
        ),
        (json!({"features": [{"enabled": true}]}), "features[0].key:"),
        (
            json!({"features": [{"key": "veo", "enabled": "yes"}]}),
            "features[0].enabled:",
        ),
        (
            json!({"limits": [limit, with(&limit, "id", json!("nope"))]}),
            "limits[1].id:",
        ),
        (
            json!({"limits": [with(&limit, "metric", json!("Tokens"))]}),
            "limits[0].metric:",
        ),
        (
            json!({"limits": [with(&limit, "period", json!("weekly"))]}),
            "limits[0].period:",
        ),
        (
            json!({"limits": [with(&limit, "value", json!("5x"))]}),
            "limits[0].value:",
        ),
        (
            json!({"limits": [with(&limit, "value", json!(-1))]}),
            "limits[0].value:",
        ),
        (
            json!({"limits": [with(&limit, "value", json!("1e19"))]}),
            "limits[0].value:",
        ),
        (
            json!({"limits": [with(&limit, "value", json!(true))]}),
            "limits[0].value:",
        ),
        (
            json!({"limits": [with(&limit, "mode", json!("strict"))]}),
            "limits[0].mode:",
        ),
        (
            json!({"rate_limits": [with(&rate, "window", json!("day"))]}),
            "rate_limits[0].window:",
        ),
        (
            json!({"rate_limits": [with(&rate, "burst", json!(0))]}),
            "rate_limits[0].burst:",
        ),
        (
            json!({"rate_limits": [with(&rate, "burst", Value::Null)]}),
            "rate_limits[0].burst:",
        ),
        (
            json!({"rate_limits": [with(&rate, "value", Value::Null)]}),
            "rate_limits[0].value:",
        ),
    ];
    for (entries, expected) in cases {
        let mut plan = json!({"key": key, "name": "Bad"});
        for (k, v) in entries.as_object().unwrap() {
            plan[k] = v.clone();
        }
        let result = db
            .query_one(
                "select tenancy_put_plan_version($1::jsonb, now())",
                &[&plan],
            )
            .await;
        let message = crate::support::message(&result).unwrap_or_default();
        assert_code(result, SqlState::INVALID_PARAMETER_VALUE, expected);
        assert!(message.starts_with(expected), "{expected}: {message}");
    }
    let none = one(&db, "select tenancy_plan_versions($1)", &[&key]).await;
    assert_eq!(none, json!([]), "nothing was written");

    // Both number forms are values; one id twice gets two ids.
    let id = Uuid::new_v4();
    let plan = json!({"key": key, "name": "Good", "limits": [
        with(&with(&limit, "id", json!(id)), "value", json!(5)),
        with(&with(&limit, "id", json!(id)), "period", json!("monthly"))],
        "rate_limits": [rate]});
    let put = one(
        &db,
        "select tenancy_put_plan_version($1::jsonb, now())",
        &[&plan],
    )
    .await;
    assert_eq!(put["limits"][0]["id"], json!(id));
    assert_ne!(
        put["limits"][1]["id"],
        json!(id),
        "the second use of an id is fresh"
    );
    assert_eq!(put["rate_limits"][0]["value"], "60");

    let slot = json!({"key": key, "name": "Twice", "limits": [limit, limit]});
    assert_code(
        db.query_one(
            "select tenancy_put_plan_version($1::jsonb, now())",
            &[&slot],
        )
        .await,
        SqlState::UNIQUE_VIOLATION,
        "two limits in one slot",
    );
}

/// Members (viewer and up) read their organization's assignment, the plan
/// versions it names and its effective view; a member of another
/// organization reads none of it; nobody but the service role writes a
/// plan, an assignment or an override — the organization's owner
/// included; anon reads and writes nothing.
#[tokio::test]
async fn members_read_their_plan_only_and_only_the_service_writes() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w: World = world(&db).await;
    let (pa, pb) = (plan_key(), plan_key());
    put_plan(&db, &pa, 1000, at("2026-02-01T00:00:00Z")).await;
    put_plan(&db, &pb, 2000, at("2026-02-01T00:00:00Z")).await;
    assign(&db, w.org_a, &pa, 1, None).await;
    assign(&db, w.org_b, &pb, 1, None).await;
    put_override_limit(&db, w.org_a, Some(w.member_a), 3, None).await;
    put_override_limit(&db, w.org_a, Some(w.admin_a), 4, None).await;
    let mut conn = pg.authenticator().await;

    for user in [w.owner_a, w.admin_a, w.member_a, w.viewer_a] {
        let me = Actor::User(user);
        let mine = call_as(
            &mut conn,
            me,
            "select tenancy_plan_assignment($1)",
            &[&w.org_a],
        )
        .await
        .unwrap();
        assert_eq!(mine[0]["plan"]["key"], pa.as_str(), "{user} reads its plan");
        let theirs = call_as(
            &mut conn,
            me,
            "select tenancy_plan_assignment($1)",
            &[&w.org_b],
        )
        .await
        .unwrap();
        assert_eq!(
            theirs,
            json!([]),
            "{user} reads no other organization's plan"
        );
        let versions = call_as(&mut conn, me, "select tenancy_plan_versions()", &[])
            .await
            .unwrap();
        let keys: Vec<&str> = versions
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["plan"]["key"].as_str().unwrap())
            .filter(|k| *k == pa || *k == pb)
            .collect();
        assert_eq!(
            keys,
            [pa.as_str()],
            "{user} reads its own plan's versions only"
        );
        let other = call_as(&mut conn, me, "select tenancy_plan_version($1, 1)", &[&pb])
            .await
            .unwrap();
        assert_eq!(other, json!([]));
        for table in [
            "plans",
            "plan_versions",
            "plan_features",
            "plan_limits",
            "plan_rate_limits",
        ] {
            let sql = format!("select to_jsonb(count(*)) from public.{table} where plan_key = $1");
            let n = call_as(&mut conn, me, &sql, &[&pb]).await.unwrap();
            assert_eq!(n, json!(0), "{user} reads {table} of another plan");
            let n = call_as(&mut conn, me, &sql, &[&pa]).await.unwrap();
            assert_ne!(
                n,
                json!(0),
                "positive control: {user} reads {table} of its plan"
            );
        }
        let view = call_as(
            &mut conn,
            me,
            "select tenancy_entitlements($1)",
            &[&w.org_a],
        )
        .await
        .unwrap();
        assert_eq!(view["plan"]["key"], pa.as_str());
        let per_user: Vec<&Value> = view["limits"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|pair| pair[0]["scope"].get("user_id"))
            .collect();
        let sees_all = user == w.owner_a || user == w.admin_a;
        assert_eq!(
            per_user.len(),
            if sees_all {
                2
            } else {
                usize::from(user == w.member_a)
            },
            "{user}: the per-user rows RLS shows it"
        );
        assert_denied(
            call_as(
                &mut conn,
                me,
                "select tenancy_entitlements($1)",
                &[&w.org_b],
            )
            .await,
            "another organization's entitlements",
        );
    }
    assert_denied(
        call_as(
            &mut conn,
            Actor::User(w.owner_b),
            "select tenancy_entitlements($1)",
            &[&w.org_a],
        )
        .await,
        "owner of B reads A",
    );

    // Writes: the owner of the organization, and every lower role, is refused.
    let org = w.org_a;
    let writes: Vec<(&str, String)> = vec![
        (
            "assign",
            format!("select tenancy_assign_plan('{org}', '{pb}', 1, now())"),
        ),
        ("unassign", format!("select tenancy_unassign_plan('{org}')")),
        (
            "migrate",
            format!("select tenancy_migrate_plan('{pa}', 1, 1, '{org}')"),
        ),
        (
            "put version",
            format!(
                "select tenancy_put_plan_version('{{\"key\": \"{pa}\", \"name\": \"X\"}}', now())"
            ),
        ),
        (
            "put limit",
            format!(
                "select to_jsonb(count(*)) from tenancy_put_limit(gen_random_uuid(), '{org}', \
                 'tokens', 'monthly', 1e9)"
            ),
        ),
        (
            "update feature",
            format!(
                "select to_jsonb(count(*)) from tenancy_update_feature('{org}', 'veo', false, \
                 now(), true)"
            ),
        ),
        (
            "put rate limit",
            format!(
                "select tenancy_put_rate_limit(gen_random_uuid(), '{org}', 'requests', \
                 'minute', 1e9, 1e9, 'hard', now())"
            ),
        ),
        (
            "version",
            "select to_jsonb(tenancy_entitlements_version())".to_owned(),
        ),
        (
            "insert assignment",
            format!(
                "insert into public.org_plans (organization_id, plan_key, version, started_at) \
                 values ('{org}', '{pb}', 1, now()) returning to_jsonb(1)"
            ),
        ),
        (
            "insert version",
            format!(
                "insert into public.plan_versions (plan_key, version, name, created_at) \
                 values ('{pa}', 99, 'x', now()) returning to_jsonb(1)"
            ),
        ),
        (
            "insert override",
            format!(
                "insert into public.org_features (organization_id, feature_key, enabled) \
                 values ('{org}', 'veo', true) returning to_jsonb(1)"
            ),
        ),
    ];
    for user in [w.owner_a, w.admin_a, w.member_a, w.viewer_a, w.owner_b] {
        for (what, sql) in &writes {
            assert_denied(
                call_as(&mut conn, Actor::User(user), sql, &[]).await,
                &format!("{user}: {what}"),
            );
        }
        for sql in [
            "update public.org_plans set version = 1 where organization_id = $1",
            "delete from public.org_plans where organization_id = $1",
        ] {
            assert_denied(
                execute_as(&mut conn, Actor::User(user), sql, &[&org]).await,
                sql,
            );
        }
    }
    for (what, sql) in &writes {
        assert_denied(
            call_as(&mut conn, Actor::Anon, sql, &[]).await,
            &format!("anon: {what}"),
        );
    }
    for sql in [
        "select tenancy_plan_assignment($1)",
        "select tenancy_entitlements($1)",
    ] {
        assert_denied(call_as(&mut conn, Actor::Anon, sql, &[&org]).await, sql);
    }
    let still = one(&db, "select tenancy_plan_assignment($1)", &[&org]).await;
    assert_eq!(still[0]["plan"]["key"], pa.as_str(), "nothing changed");
}

/// Every committed change to an assignment or an override bumps the
/// version in its transaction and notifies `tenancy_entitlements` with the
/// organization's id, or `*` for statements over several organizations; a
/// rolled-back change does neither. (A new catalog version changes no
/// organization's view, so it does neither either.)
#[tokio::test]
async fn changes_bump_the_version_and_notify() {
    let Some(pg) = Cluster::shared() else { return };
    // A database of its own: the counter and the channel are database-wide,
    // so only here are exact counts and silences meaningful.
    let (db, name) = crate::support::private_db_named(pg, "bumps").await;
    let (listener, mut connection) = tokio_postgres::connect(&pg.url(&name), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message
                && n.channel() == "tenancy_entitlements"
            {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute("listen tenancy_entitlements")
        .await
        .unwrap();
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let other = create_org(&db, owner).await;
    let key = plan_key();
    let version = async || -> i64 {
        db.query_one("select tenancy_entitlements_version()", &[])
            .await
            .unwrap()
            .get(0)
    };
    let mut next = async || -> String {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a notification within 5 s")
            .expect("the listener runs")
    };

    // A new catalog version changes no organization's view.
    let v0 = version().await;
    put_plan(&db, &key, 10, at("2026-03-01T00:00:00Z")).await;
    assert_eq!(version().await, v0, "a catalog write bumps nothing");
    let org_text = org.to_string();
    assign(&db, org, &key, 1, None).await;
    assert_eq!(next().await, org_text, "the catalog write notified nothing");
    assert_eq!(version().await, v0 + 1);
    put_override_feature(&db, org, "veo", true, None).await;
    assert_eq!(next().await, org_text);
    put_override_limit(&db, org, None, 1, None).await;
    assert_eq!(next().await, org_text);
    put_override_rate(&db, org, 1, None).await;
    assert_eq!(next().await, org_text);
    assert_eq!(version().await, v0 + 4, "each override write bumps it once");
    // A statement over two organizations: one bump, `*`.
    db.execute(
        "insert into org_features (organization_id, feature_key, enabled) values ($1, 'a', true), ($2, 'a', true)",
        &[&org, &other],
    )
    .await
    .unwrap();
    assert_eq!(next().await, "*");
    let before = version().await;
    assert_eq!(before, v0 + 5);
    // Rolled back, and a statement that changed nothing: no bump, no
    // notification (the next one heard is the unassignment's).
    db.batch_execute(&format!(
        "begin; delete from org_plans where organization_id = '{org}'; rollback;"
    ))
    .await
    .unwrap();
    db.execute(
        "delete from org_plans where organization_id = $1",
        &[&Uuid::new_v4()],
    )
    .await
    .unwrap();
    assert_eq!(version().await, before, "rolled back or no row: no bump");
    let unassigned = one(&db, "select tenancy_unassign_plan($1)", &[&org]).await;
    assert_eq!(unassigned["deleted"], true);
    assert_eq!(next().await, org_text, "nothing was notified in between");
    assert_eq!(version().await, before + 1);
}

/// check_limit, reserve_usage, usage_summary, feature, within_limit,
/// has_feature, acquire_rate and lease_budget decide by the organization's
/// plan, and by an override on top of it while it lasts.
#[tokio::test]
async fn every_entry_point_honours_the_plan() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let member = create_user(&db).await;
    let org = create_org(&db, owner).await;
    add_member(&db, org, member, "member").await;
    let key = plan_key();
    let plan = put_plan(&db, &key, 100, at("2026-02-01T00:00:00Z")).await;
    let plan_limit = plan["limits"][0]["id"].clone();
    assign(&db, org, &key, 1, None).await;
    let mut conn = pg.authenticator().await;

    let check = one(
        &db,
        "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 150)",
        &[&org],
    )
    .await;
    assert_eq!(check["allowed"], false, "{check}");
    assert_eq!(check["decided_by"]["id"], plan_limit);
    let as_member = call_as(
        &mut conn,
        Actor::User(member),
        "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 50)",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(as_member["allowed"], true);
    assert_eq!(as_member["limit"], "100");
    let reserve = call_as(
        &mut conn,
        Actor::User(member),
        "select tenancy_reserve_usage(org_id => $1, metric => 'tokens', estimate => 150)",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(reserve["granted"], false, "{reserve}");
    let summary = one(&db, "select tenancy_usage_summary($1)", &[&org]).await;
    let limits: Vec<&str> = summary
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["limit"].as_str())
        .collect();
    assert!(limits.contains(&"100"), "{summary}");
    let feature = call_as(
        &mut conn,
        Actor::User(member),
        "select tenancy_feature($1, 'veo')",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(
        feature,
        json!({"key": "veo", "enabled": true, "config": {"tier": key}})
    );
    let has = call_as(
        &mut conn,
        Actor::User(member),
        "select to_jsonb(tenancy.has_feature($1, 'veo'))",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(has, json!(true));
    let within = call_as(
        &mut conn,
        Actor::User(member),
        "select to_jsonb(tenancy.within_limit($1, 'tokens', 101))",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(within, json!(false));

    // Rate: 60 a minute, burst 10: the 11th request at one instant is denied.
    let now_us = at("2026-03-14T12:00:00Z").timestamp_micros();
    let acquire = "select tenancy_acquire_rate($1, $2, '[[\"requests\", 1]]', $3, 'acquire')";
    for i in 0..10 {
        let r = one(&db, acquire, &[&org, &member, &now_us]).await;
        assert_eq!(r["granted"], true, "request {i}: {r}");
    }
    let r = one(&db, acquire, &[&org, &member, &now_us]).await;
    assert_eq!(r["granted"], false, "{r}");
    assert_eq!(r["limits"][0]["limit"]["id"], plan["rate_limits"][0]["id"]);

    // Leases: the plan's limit bounds the headroom.
    let lease = one(
        &db,
        "select tenancy_lease_budget(org_id => $1, lease_id => $2, user_id => $3, \
         metric => 'tokens', daily_start => $4, monthly_start => $5, now => now(), \
         expires_at => now() + interval '1 minute', spoken_for => 0, want => 1000, \
         min_grant => 0, share => 1, purge_before => now() - interval '1 day')",
        &[&org, &Uuid::new_v4(), &member, &day(), &month()],
    )
    .await;
    assert_eq!(lease["free"], "100", "{lease}");
    db.execute(
        "delete from usage_leases where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap();

    // An override raises the limit until it lapses.
    put_override_limit(
        &db,
        org,
        None,
        1000,
        Some(chrono::Utc::now() + Span::hours(1)),
    )
    .await;
    let raised = one(
        &db,
        "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 150)",
        &[&org],
    )
    .await;
    assert_eq!(raised["allowed"], true, "{raised}");
    put_override_limit(
        &db,
        org,
        None,
        1000,
        Some(chrono::Utc::now() - Span::hours(1)),
    )
    .await;
    let lapsed = one(
        &db,
        "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 150)",
        &[&org],
    )
    .await;
    assert_eq!(
        lapsed["allowed"], false,
        "a lapsed override is absent: {lapsed}"
    );
    put_override_feature(&db, org, "veo", false, None).await;
    let off = one(&db, "select tenancy_feature($1, 'veo')", &[&org]).await;
    assert_eq!(off["enabled"], false);
}

/// A rate limit's state goes with its row; an organization's assignment
/// and state go with the organization; assignment changes and new
/// versions are audited.
#[tokio::test]
async fn state_follows_its_owner_and_changes_are_audited() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let key = plan_key();
    put_plan(&db, &key, 100, at("2026-02-01T00:00:00Z")).await;
    assign(&db, org, &key, 1, None).await;
    db.execute(
        "insert into usage_rate_limits (organization_id, user_id, metric, rate_window, limit_value, burst) \
         values ($1, $2, 'requests', 'second', 5, 5)",
        &[&org, &owner],
    )
    .await
    .unwrap();
    let now_us = at("2026-03-14T12:00:00Z").timestamp_micros();
    let r = one(
        &db,
        "select tenancy_acquire_rate($1, $2, '[[\"requests\", 1]]', $3, 'acquire')",
        &[&org, &owner, &now_us],
    )
    .await;
    assert_eq!(r["granted"], true);
    let states = "select count(*) from tenancy.usage_rate_state where organization_id = $1";
    let count = async |sql: &str| -> i64 { db.query_one(sql, &[&org]).await.unwrap().get(0) };
    assert_eq!(
        count(states).await,
        2,
        "the user's row's and the plan entry's"
    );
    db.execute(
        "delete from usage_rate_limits where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(count(states).await, 1, "the row's state went with it");

    let audit = one(
        &db,
        "select coalesce(jsonb_agg(action order by id), '[]') from audit_events \
         where organization_id = $1 and action like 'plan.%'",
        &[&org],
    )
    .await;
    assert_eq!(audit, json!(["plan.created"]));
    let catalog = one(
        &db,
        "select jsonb_agg(jsonb_build_object('action', action, 'after', after)) from audit_events \
         where organization_id = '00000000-0000-0000-0000-000000000000' and target = $1",
        &[&format!("{key}:1")],
    )
    .await;
    assert_eq!(catalog[0]["action"], "plan_version.created");
    assert_eq!(catalog[0]["after"]["limits"][0]["value"], "100");

    db.execute("delete from organizations where id = $1", &[&org])
        .await
        .unwrap();
    assert_eq!(count(states).await, 0);
    assert_eq!(
        count("select count(*) from org_plans where organization_id = $1").await,
        0
    );
}

/// A member's view lapses only when something it is shown lapses: another
/// member's per-user override expiry stays out of its `valid_until`, while
/// an admin's view (which shows that row) carries it.
#[tokio::test]
async fn valid_until_covers_only_the_rows_a_member_is_shown() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w: World = world(&db).await;
    let hidden = at("2027-03-03T00:00:00Z");
    put_override_limit(&db, w.org_a, Some(w.member_a), 3, Some(hidden)).await;
    let mut conn = pg.authenticator().await;
    let sql = "select tenancy_entitlements(org_id => $1, at => '2026-03-02T12:00:00Z')";
    let mut views = Vec::new();
    for user in [w.viewer_a, w.admin_a, w.member_a] {
        views.push(
            call_as(&mut conn, Actor::User(user), sql, &[&w.org_a])
                .await
                .unwrap(),
        );
    }
    let [viewer, admin, member] = <[Value; 3]>::try_from(views).unwrap();
    assert_eq!(viewer["valid_until"], Value::Null, "{viewer}");
    assert_eq!(
        admin["valid_until"].as_str().map(at),
        Some(hidden),
        "{admin}"
    );
    assert_eq!(
        member["valid_until"].as_str().map(at),
        Some(hidden),
        "its own override: {member}"
    );
}
