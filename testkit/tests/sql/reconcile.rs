//! Reconciliation: drift injected into `usage_counters` (a counter raised,
//! one deleted, an orphan added) is found exactly by
//! `tenancy_reconcile_usage` and undone by `tenancy_repair_usage`; a repair
//! and a record wait for each other; only the service role may call them.

use serde_json::{Value, json};
use tenancy_testkit::pg::{Actor, Cluster, act, create_user};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::support::{
    RACE_LIMIT, add_member, assert_code, assert_waits_for, backend_pid, counter, create_org, day,
    event, month, record,
};

const NIL: Uuid = Uuid::nil();

async fn reconcile(db: &Client, org: Uuid, period: &str, metric: Option<&str>) -> Value {
    let start = if period == "daily" { day() } else { month() };
    db.query_one(
        "select tenancy_reconcile_usage(org_id => $1, period => $2, period_start => $3, \
         metric => $4)",
        &[&org, &period, &start, &metric],
    )
    .await
    .unwrap()
    .get(0)
}

async fn repair(db: &Client, org: Uuid) -> Value {
    db.query_one(
        "select tenancy_repair_usage(org_id => $1, period => 'daily', period_start => $2)",
        &[&org, &day()],
    )
    .await
    .unwrap()
    .get(0)
}

/// One drift row as the functions return it.
fn drift(scope: Option<Uuid>, metric: &str, counted: &str, recomputed: &str) -> Value {
    let scope = match scope {
        None => json!({"scope": "organization"}),
        Some(user) => json!({"scope": "user", "user_id": user}),
    };
    json!({
        "scope": scope,
        "metric": metric,
        "period": {"period": "daily", "start": day()},
        "counted": counted,
        "recomputed": recomputed,
    })
}

/// An org with usage of both scopes: owner 10 tokens and 1.25 cost,
/// member 20 tokens, 5 org-wide tokens without a user.
async fn org_with_usage(db: &Client) -> (Uuid, Uuid, Uuid) {
    let (owner, member) = (create_user(db).await, create_user(db).await);
    let org = create_org(db, owner).await;
    add_member(db, org, member, "member").await;
    record(
        db,
        &json!([
            event(org, Some(owner), json!({"tokens": 10, "cost_usd": "1.25"})),
            event(org, Some(member), json!({"tokens": 20})),
            event(org, None, json!({"tokens": 5})),
        ]),
    )
    .await;
    (org, owner, member)
}

#[tokio::test]
async fn injected_drift_is_found_exactly_and_repaired() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, owner, member) = org_with_usage(&db).await;
    // Another organization's usage, untouched by what follows.
    let (other, _, _) = org_with_usage(&db).await;
    assert_eq!(
        reconcile(&db, org, "daily", None).await,
        json!([]),
        "recorded: no drift"
    );
    assert_eq!(reconcile(&db, org, "monthly", None).await, json!([]));

    // Counted 5 too many, a lost counter, an orphan counter.
    db.execute(
        "update usage_counters set used = used + 5 where organization_id = $1 \
         and scope_user_id = $2 and metric = 'tokens' and period = 'daily'",
        &[&org, &NIL],
    )
    .await
    .unwrap();
    db.execute(
        "delete from usage_counters where organization_id = $1 and scope_user_id = $2 \
         and metric = 'tokens' and period = 'daily'",
        &[&org, &member],
    )
    .await
    .unwrap();
    db.execute(
        "insert into usage_counters (organization_id, scope_user_id, metric, period, \
         period_start, used) values ($1, $2, 'ads_created', 'daily', $3, 3)",
        &[&org, &owner, &day()],
    )
    .await
    .unwrap();
    // Users by id, after the org-wide row.
    let mut users = vec![
        (owner, drift(Some(owner), "ads_created", "3", "0")),
        (member, drift(Some(member), "tokens", "0", "20")),
    ];
    users.sort_by_key(|u| u.0);
    let mut want = vec![drift(None, "tokens", "40", "35")];
    want.extend(users.into_iter().map(|u| u.1));
    let want = Value::Array(want);

    assert_eq!(reconcile(&db, org, "daily", None).await, want);
    let tokens: Vec<Value> = want
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["metric"] == "tokens")
        .cloned()
        .collect();
    assert_eq!(
        reconcile(&db, org, "daily", Some("tokens")).await,
        json!(tokens)
    );
    assert_eq!(
        reconcile(&db, org, "monthly", None).await,
        json!([]),
        "another period"
    );
    assert_eq!(
        reconcile(&db, other, "daily", None).await,
        json!([]),
        "another org"
    );

    assert_eq!(
        repair(&db, org).await,
        want,
        "the repair reports what it changed"
    );
    assert_eq!(
        reconcile(&db, org, "daily", None).await,
        json!([]),
        "nothing left"
    );
    assert_eq!(
        repair(&db, org).await,
        json!([]),
        "a second repair finds nothing"
    );
    assert_eq!(counter(&db, org, NIL, "tokens", "daily", day()).await, "35");
    assert_eq!(
        counter(&db, org, member, "tokens", "daily", day()).await,
        "20"
    );
    assert_eq!(
        counter(&db, org, owner, "ads_created", "daily", day()).await,
        "0"
    );
    assert_eq!(
        counter(&db, org, owner, "cost_usd", "daily", day()).await,
        "1.25"
    );
    assert_eq!(
        counter(&db, org, NIL, "tokens", "monthly", month()).await,
        "35"
    );
}

#[tokio::test]
async fn arguments_are_checked() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, _, _) = org_with_usage(&db).await;
    for (period, metric, what) in [
        (Some("weekly"), None, "a period other than daily or monthly"),
        (None, None, "no period"),
        (
            Some("daily"),
            Some("Bad Metric"),
            "a metric that is no metric key",
        ),
    ] {
        for rpc in ["tenancy_reconcile_usage", "tenancy_repair_usage"] {
            let sql = format!(
                "select {rpc}(org_id => $1, period => $2, period_start => $3, metric => $4)"
            );
            let result = db.query_one(&sql, &[&org, &period, &day(), &metric]).await;
            assert_code(
                result,
                SqlState::INVALID_PARAMETER_VALUE,
                &format!("{rpc}: {what}"),
            );
        }
    }
    let ghost = Uuid::now_v7();
    assert_eq!(reconcile(&db, ghost, "daily", None).await, json!([]));
    let result = db
        .query_one(
            "select tenancy_repair_usage(org_id => $1, period => 'daily', period_start => $2)",
            &[&ghost, &day()],
        )
        .await;
    assert_code(
        result,
        SqlState::NO_DATA_FOUND,
        "repairing an unknown organization",
    );
}

/// A user JWT (even the organization's owner) and anon get 42501; the
/// service role reconciles and repairs.
#[tokio::test]
async fn only_the_service_role_reconciles() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, owner, _) = org_with_usage(&db).await;
    let mut conn = pg.authenticator().await;
    for rpc in ["tenancy_reconcile_usage", "tenancy_repair_usage"] {
        let sql = format!("select {rpc}(org_id => $1, period => 'daily', period_start => $2)");
        for actor in [Actor::User(owner), Actor::Anon] {
            let result: Result<Value, _> = act(&mut conn, actor, async |tx| {
                Ok(tx.query_one(&sql, &[&org, &day()]).await?.get(0))
            })
            .await;
            assert_code(
                result,
                SqlState::INSUFFICIENT_PRIVILEGE,
                &format!("{rpc} as {actor:?}"),
            );
        }
        let served: Value = act(&mut conn, Actor::Service, async |tx| {
            Ok(tx.query_one(&sql, &[&org, &day()]).await?.get(0))
        })
        .await
        .unwrap_or_else(|e| panic!("{rpc} as the service role: {e}"));
        assert_eq!(served, json!([]));
    }
}

/// A repair waits for a record in progress and then counts its event; a
/// record that starts during a repair waits for it and then adds to the
/// repaired counter. Nothing is lost or counted twice.
#[tokio::test]
async fn a_repair_and_a_record_wait_for_each_other() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, _, _) = org_with_usage(&db).await;
    let raise = "update usage_counters set used = used + 5 where organization_id = $1 \
                 and scope_user_id = $2 and metric = 'tokens' and period = 'daily'";
    db.execute(raise, &[&org, &NIL]).await.unwrap();
    let (a, b) = (pg.superuser().await, pg.superuser().await);
    let (a_pid, b_pid) = (backend_pid(&a).await, backend_pid(&b).await);

    // A record in progress: the repair waits, then sees its 7 tokens.
    a.batch_execute("begin").await.unwrap();
    record(&a, &json!([event(org, None, json!({"tokens": 7}))])).await;
    let sql = "select tenancy_repair_usage(org_id => $1, period => 'daily', period_start => $2)";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&org, &day()];
    let mut repairing = std::pin::pin!(b.query_one(sql, &params));
    assert_waits_for(&mut repairing, &db, b_pid, a_pid, "the repair").await;
    a.batch_execute("commit").await.unwrap();
    let repaired: Value = tokio::time::timeout(RACE_LIMIT, repairing)
        .await
        .expect("the repair finishes once the record commits")
        .unwrap()
        .get(0);
    assert_eq!(repaired, json!([drift(None, "tokens", "47", "42")]));
    assert_eq!(counter(&db, org, NIL, "tokens", "daily", day()).await, "42");

    // A repair in progress: the record waits, then adds to the repaired value.
    db.execute(raise, &[&org, &NIL]).await.unwrap();
    a.batch_execute("begin").await.unwrap();
    let repaired: Value = a.query_one(sql, &params).await.unwrap().get(0);
    assert_eq!(repaired, json!([drift(None, "tokens", "47", "42")]));
    let events = json!([event(org, None, json!({"tokens": 1}))]);
    let record_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&events];
    let mut recording =
        std::pin::pin!(b.query_one("select tenancy_record_usage($1)", &record_params));
    assert_waits_for(&mut recording, &db, b_pid, a_pid, "the record").await;
    a.batch_execute("commit").await.unwrap();
    tokio::time::timeout(RACE_LIMIT, recording)
        .await
        .expect("the record finishes once the repair commits")
        .unwrap();
    assert_eq!(counter(&db, org, NIL, "tokens", "daily", day()).await, "43");
    assert_eq!(reconcile(&db, org, "daily", None).await, json!([]));
}
