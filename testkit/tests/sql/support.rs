//! What the SQL tests share: fixed dates, organizations and users, calls of
//! the RPCs by name, SQLSTATE assertions, reads as an actor, the two-org
//! [`World`], lock-wait probes and the JSON [`shape`] of a response.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};
use tenancy::UsageEvent;
use tenancy_testkit::pg::{self, Actor, Cluster, act, create_user};
use tenancy_testkit::unique_slug;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Error, GenericClient};
use uuid::Uuid;

// ---- dates -----------------------------------------------------------------

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The day most tests run on, 2026-03-14.
pub fn day() -> NaiveDate {
    date(2026, 3, 14)
}

/// Its month, starting 2026-03-01.
pub fn month() -> NaiveDate {
    date(2026, 3, 1)
}

/// Noon of [`day`], UTC: most tests' `now`.
pub fn noon() -> DateTime<Utc> {
    at("2026-03-14T12:00:00Z")
}

// ---- organizations and members ---------------------------------------------

/// Creates an organization owned by `owner` (through the service RPC).
pub async fn create_org(db: &Client, owner: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    db.query(
        "select id from tenancy_create_organization(name => $1, slug => $2, id => $3, owner_user_id => $4)",
        &[&"Org", &unique_slug("org"), &id, &owner],
    )
    .await
    .expect("create organization");
    id
}

pub async fn add_member(db: &Client, org: Uuid, user: Uuid, role: &str) {
    db.execute(
        "insert into user_organizations (organization_id, user_id, role) values ($1, $2, $3)",
        &[&org, &user, &role],
    )
    .await
    .expect("add member");
}

/// The role of `user` in `org`, as the superuser reads it.
pub async fn role_of(db: &Client, org: Uuid, user: Uuid) -> Option<String> {
    db.query_opt(
        "select role from user_organizations where organization_id = $1 and user_id = $2",
        &[&org, &user],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

// ---- usage -------------------------------------------------------------------

/// One event for the record RPC that counts exactly `amounts`
/// (`{metric: amount}`) in [`day`] and [`month`]: what the library sends for
/// an event with only these quantities (no tokens, no cost of its own).
pub fn event(org: Uuid, user: Option<Uuid>, amounts: Value) -> Value {
    json!({
        "id": Uuid::now_v7(),
        "organization_id": org,
        "user_id": user,
        "provider": "openai",
        "model": "gpt-4o",
        "operation": "ad_copy",
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "quantities": amounts,
        "cost_usd": null,
        "occurred_at": noon(),
        "metadata": {"request": "r1"},
        "amounts": amounts,
        "daily_start": day(),
        "monthly_start": month(),
    })
}

/// `e` as the library sends it to the record RPC, accepted at [`noon`] in
/// a UTC organization: its amounts are what `UsageEvent::amounts` computed,
/// its periods those `occurred_at` falls in.
pub fn library_event(e: UsageEvent) -> Value {
    let r = e
        .into_record(noon(), chrono_tz::UTC)
        .expect("a valid event");
    let amounts: serde_json::Map<String, Value> = r
        .amounts
        .iter()
        .map(|(metric, amount)| (metric.to_string(), json!(amount)))
        .collect();
    json!({
        "id": r.id,
        "organization_id": r.event.org,
        "user_id": r.event.user,
        "provider": r.event.provider,
        "model": r.event.model,
        "operation": r.event.operation,
        "input_tokens": r.event.input_tokens,
        "cached_input_tokens": r.event.cached_input_tokens,
        "output_tokens": r.event.output_tokens,
        "quantities": r.event.quantities,
        "cost_usd": r.event.cost_usd,
        "occurred_at": r.occurred_at,
        "metadata": r.event.metadata,
        "amounts": amounts,
        "daily_start": r.periods.daily.start,
        "monthly_start": r.periods.monthly.start,
    })
}

/// An event's id.
pub fn id_of(event: &Value) -> Uuid {
    event["id"].as_str().unwrap().parse().unwrap()
}

pub async fn record(db: &impl GenericClient, events: &Value) -> Value {
    db.query_one("select tenancy_record_usage($1)", &[events])
        .await
        .expect("record usage")
        .get(0)
}

pub async fn try_record(db: &Client, events: &Value) -> Result<Value, Error> {
    db.query_one("select tenancy_record_usage($1)", &[events])
        .await
        .map(|row| row.get(0))
}

/// A counter's value as text, "none" when absent.
pub async fn counter(
    db: &Client,
    org: Uuid,
    scope: Uuid,
    metric: &str,
    period: &str,
    start: NaiveDate,
) -> String {
    db.query_opt(
        "select used::text from usage_counters where organization_id = $1 and scope_user_id = $2 \
         and metric = $3 and period = $4 and period_start = $5",
        &[&org, &scope, &metric, &period, &start],
    )
    .await
    .unwrap()
    .map_or_else(|| "none".to_owned(), |r| r.get(0))
}

/// (usage_events, usage_counters) rows of `org` that `db` sees.
pub async fn usage_rows(db: &impl GenericClient, org: Uuid) -> (i64, i64) {
    let row = db
        .query_one(
            "select (select count(*) from usage_events where organization_id = $1), \
             (select count(*) from usage_counters where organization_id = $1)",
            &[&org],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The holds of `org`.
pub async fn holds(db: &Client, org: Uuid) -> i64 {
    db.query_one(
        "select count(*) from usage_reservations where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap()
    .get(0)
}

pub async fn put_limit(
    db: &Client,
    org: Uuid,
    user: Option<Uuid>,
    metric: &str,
    period: &str,
    value: i64,
    mode: &str,
) {
    db.query(
        "select id from tenancy_put_limit(limit_id => $1, org_id => $2, metric => $3, period => $4, \
         limit_value => $5::bigint::numeric, mode => $6, user_id => $7)",
        &[&Uuid::now_v7(), &org, &metric, &period, &value, &mode, &user],
    )
    .await
    .expect("put limit");
}

pub async fn claim_alert(db: &Client, org: Uuid, user: Option<Uuid>, percent: i32) -> Value {
    db.query_one(
        "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'monthly', \
         period_start => $2, threshold_percent => $3, fired_at => now(), user_id => $4)",
        &[&org, &month(), &percent, &user],
    )
    .await
    .unwrap()
    .get(0)
}

// ---- reservations --------------------------------------------------------------

/// The arguments of `tenancy_reserve`, with this file's defaults.
#[derive(Debug, Clone)]
pub struct Reserve {
    pub org: Uuid,
    pub user: Uuid,
    pub metric: &'static str,
    pub amount: i64,
    pub daily: NaiveDate,
    pub monthly: NaiveDate,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub purge_before: DateTime<Utc>,
}

impl Reserve {
    /// `amount` tokens today, at noon, for five minutes; holds that expired
    /// a week before are purged.
    pub fn new(org: Uuid, user: Uuid, amount: i64) -> Self {
        Reserve {
            org,
            user,
            metric: "tokens",
            amount,
            daily: day(),
            monthly: month(),
            now: noon(),
            expires_at: noon() + Duration::minutes(5),
            purge_before: noon() - Duration::days(7),
        }
    }
}

const RESERVE_SQL: &str = "select tenancy_reserve(org_id => $1, user_id => $2, metric => $3, \
     amount => $4::bigint::numeric, daily_start => $5, monthly_start => $6, now => $7, \
     expires_at => $8, reservation_id => $9, purge_before => $10)";

pub async fn reserve_on(db: &impl GenericClient, r: &Reserve, id: Uuid) -> Result<Value, Error> {
    db.query_one(
        RESERVE_SQL,
        &[
            &r.org,
            &r.user,
            &r.metric,
            &r.amount,
            &r.daily,
            &r.monthly,
            &r.now,
            &r.expires_at,
            &id,
            &r.purge_before,
        ],
    )
    .await
    .map(|row| row.get(0))
}

pub async fn reserve(db: &Client, r: &Reserve) -> (Uuid, Value) {
    let id = Uuid::now_v7();
    (id, reserve_on(db, r, id).await.expect("reserve"))
}

/// The event committing hold `hold` of `user`: its id is the hold's.
pub fn hold_event(org: Uuid, user: Uuid, hold: Uuid, amounts: Value) -> Value {
    let mut e = event(org, Some(user), amounts);
    e["id"] = json!(hold);
    e
}

pub async fn commit_on(
    db: &impl GenericClient,
    org: Uuid,
    user: Uuid,
    hold: Uuid,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Value, Error> {
    db.query_one(
        "select tenancy_commit_reservation(org_id => $1, user_id => $2, reservation_id => $3, \
         event => $4, now => $5)",
        &[&org, &user, &hold, event, &now],
    )
    .await
    .map(|row| row.get(0))
}

pub async fn release_on(
    db: &impl GenericClient,
    org: Uuid,
    user: Uuid,
    hold: Uuid,
    now: DateTime<Utc>,
) -> Result<Value, Error> {
    db.query_one(
        "select tenancy_release_reservation(org_id => $1, user_id => $2, reservation_id => $3, \
         now => $4)",
        &[&org, &user, &hold, &now],
    )
    .await
    .map(|row| row.get(0))
}

// ---- readers -------------------------------------------------------------------

/// The usage snapshot of `org` for today and this month, at noon.
pub async fn snapshot_on(
    db: &impl GenericClient,
    org: Uuid,
    user: Option<Uuid>,
    metric: Option<&str>,
) -> Result<Value, Error> {
    db.query_one(
        "select tenancy_usage_snapshot(org_id => $1, daily_start => $2, monthly_start => $3, \
         now => $4, user_id => $5, metric => $6)",
        &[&org, &day(), &month(), &noon(), &user, &metric],
    )
    .await
    .map(|row| row.get(0))
}

/// The arguments of `tenancy_usage_history`.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub org: Uuid,
    pub scope: &'a str,
    pub user: Option<Uuid>,
    pub period: &'a str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub metric: Option<&'a str>,
}

impl<'a> History<'a> {
    /// The daily counters of `scope` in March 2026, every metric.
    pub fn march(org: Uuid, scope: &'a str, user: Option<Uuid>) -> Self {
        History {
            org,
            scope,
            user,
            period: "daily",
            from: month(),
            to: date(2026, 3, 31),
            metric: None,
        }
    }
}

pub async fn history_on(db: &impl GenericClient, h: History<'_>) -> Result<Value, Error> {
    db.query_one(
        "select tenancy_usage_history(org_id => $1, scope => $2, period => $3, from_start => $4, \
         to_start => $5, user_id => $6, metric => $7)",
        &[
            &h.org, &h.scope, &h.period, &h.from, &h.to, &h.user, &h.metric,
        ],
    )
    .await
    .map(|row| row.get(0))
}

// ---- assertions ------------------------------------------------------------------

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Error>, code: SqlState, what: &str) {
    match &result {
        Err(e) if e.code() == Some(&code) => {}
        other => panic!("{what}: expected SQLSTATE {}, got {other:?}", code.code()),
    }
}

#[track_caller]
pub fn assert_denied<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    assert_code(result, SqlState::INSUFFICIENT_PRIVILEGE, what);
}

/// The message of a database error, if `result` is one.
pub fn message<T>(result: &Result<T, Error>) -> Option<String> {
    result
        .as_ref()
        .err()
        .and_then(Error::as_db_error)
        .map(|e| e.message().to_owned())
}

// ---- reads as an actor -------------------------------------------------------------

/// The jsonb `sql` returns, called as `actor` in one transaction (a
/// PostgREST request).
pub async fn call_as(
    conn: &mut Client,
    actor: Actor,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Value, Error> {
    act(conn, actor, async |tx| {
        Ok(tx.query_one(sql, params).await?.get::<_, Value>(0))
    })
    .await
}

/// Every tenancy table.
pub const TENANT_TABLES: [&str; 8] = [
    "organizations",
    "user_organizations",
    "org_features",
    "usage_limits",
    "usage_events",
    "usage_counters",
    "usage_reservations",
    "usage_alerts",
];

/// Rows of `table` for `org` that `actor` can see.
pub async fn visible(
    conn: &mut Client,
    actor: Actor,
    table: &str,
    org: Uuid,
) -> Result<i64, Error> {
    let column = if table == "organizations" {
        "id"
    } else {
        "organization_id"
    };
    let sql = format!("select count(*) from public.{table} where {column} = $1");
    act(conn, actor, async |tx| {
        Ok(tx.query_one(&sql, &[&org]).await?.get::<_, i64>(0))
    })
    .await
}

/// `sql` with `params`, run as `actor`: the rows it changed.
pub async fn execute_as(
    conn: &mut Client,
    actor: Actor,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, Error> {
    act(conn, actor, async |tx| tx.execute(sql, params).await).await
}

// ---- two organizations with a row in every table ------------------------------------

/// Org A with an owner, an admin, a member and a viewer; org B with an
/// owner. Each org has a feature, an org-wide limit and an org-wide alert,
/// and each of its users an event (30 tokens) and a hold (100 tokens), so
/// every user sees rows of its own org in every table.
#[derive(Debug, Clone, Copy)]
pub struct World {
    pub org_a: Uuid,
    pub org_b: Uuid,
    pub owner_a: Uuid,
    pub admin_a: Uuid,
    pub member_a: Uuid,
    pub viewer_a: Uuid,
    pub owner_b: Uuid,
}

pub async fn world(db: &Client) -> World {
    let owner_a = create_user(db).await;
    let admin_a = create_user(db).await;
    let member_a = create_user(db).await;
    let viewer_a = create_user(db).await;
    let owner_b = create_user(db).await;
    let org_a = create_org(db, owner_a).await;
    let org_b = create_org(db, owner_b).await;
    add_member(db, org_a, admin_a, "admin").await;
    add_member(db, org_a, member_a, "member").await;
    add_member(db, org_a, viewer_a, "viewer").await;
    let users_a = vec![owner_a, admin_a, member_a, viewer_a];
    for (org, users) in [(org_a, users_a), (org_b, vec![owner_b])] {
        db.execute(
            "insert into org_features (organization_id, feature_key, enabled, config) \
             values ($1, 'veo_avatars', true, '{\"quota\": 3}')",
            &[&org],
        )
        .await
        .unwrap();
        put_limit(db, org, None, "tokens", "monthly", 1_000_000, "hard").await;
        for user in users {
            record(db, &json!([event(org, Some(user), json!({"tokens": 30}))])).await;
            let (_, res) = reserve(db, &Reserve::new(org, user, 100)).await;
            assert_eq!(res["granted"], true);
        }
        assert_eq!(claim_alert(db, org, None, 80).await["claimed"], true);
    }
    World {
        org_a,
        org_b,
        owner_a,
        admin_a,
        member_a,
        viewer_a,
        owner_b,
    }
}

// ---- lock waits ----------------------------------------------------------------------

/// How long a racing statement may take before a test calls it a hang.
pub const RACE_LIMIT: StdDuration = StdDuration::from_secs(10);

pub async fn backend_pid(db: &Client) -> i32 {
    db.query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Returns once backend `waiter` waits for a lock held by backend `holder`.
async fn blocked_by(monitor: &Client, waiter: i32, holder: i32) {
    loop {
        let blocked: bool = monitor
            .query_one(
                "select $2 = any (pg_blocking_pids($1))",
                &[&waiter, &holder],
            )
            .await
            .unwrap()
            .get(0);
        if blocked {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

/// Proves `statement` (running on backend `waiter`) waits for backend
/// `holder`'s open transaction: it does not finish before `holder` shows as
/// blocking it. Leaves `statement` pending.
pub async fn assert_waits_for<F>(
    statement: &mut Pin<&mut F>,
    monitor: &Client,
    waiter: i32,
    holder: i32,
    what: &str,
) where
    F: Future,
    F::Output: std::fmt::Debug,
{
    tokio::time::timeout(RACE_LIMIT, async {
        tokio::select! {
            res = statement.as_mut() => panic!("{what} ran past an open transaction: {res:?}"),
            () = blocked_by(monitor, waiter, holder) => {}
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} never showed as waiting"));
}

// ---- response shapes --------------------------------------------------------------------

/// A JSON value's shape: every object with its keys (all the way down),
/// every scalar replaced by its JSON type, every array by the distinct
/// shapes of its elements, sorted. A scope (`LimitScope`, adjacently
/// tagged) is one enum with two shapes: either of them is `"scope"`, so
/// that an array holding only org-wide rows has the shape of one holding
/// both; any other object with a string `scope` keeps its own shape.
pub fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) if is_scope(map) => json!("scope"),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(key, v)| (key.clone(), shape(v))).collect())
        }
        Value::Array(items) => {
            let mut shapes: Vec<Value> = items.iter().map(shape).collect();
            shapes.sort_by_cached_key(Value::to_string);
            shapes.dedup();
            Value::Array(shapes)
        }
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// `{"scope": "organization"}` or `{"scope": "user", "user_id": <string>}`.
fn is_scope(map: &serde_json::Map<String, Value>) -> bool {
    match map.get("scope").and_then(Value::as_str) {
        Some("organization") => map.len() == 1,
        Some("user") => map.len() == 2 && map.get("user_id").is_some_and(Value::is_string),
        _ => false,
    }
}

/// The response example `migrations/examples/<rpc>.json`.
pub fn example(rpc: &str) -> Value {
    let path = pg::migrations_dir().join(format!("examples/{rpc}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The names of the RPCs with a response example.
pub fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pg::migrations_dir().join("examples"))
        .expect("read migrations/examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn shape_keeps_keys_and_types_and_sets_of_element_shapes() {
    let org = json!({"scope": "organization"});
    let user = json!({"scope": "user", "user_id": "u"});
    let a = json!({"n": 1, "s": "x", "l": [{"scope": org}, {"scope": user}, {"scope": org}]});
    let b = json!({"s": "y", "n": 2, "l": [{"scope": user}]});
    assert_eq!(
        shape(&a),
        shape(&b),
        "order, values and scope variants do not matter"
    );
    let renamed = json!({"n": 1, "s": "x", "l": [{"scope": {"scope": "user", "user": "u"}}]});
    assert_ne!(shape(&a), shape(&renamed), "a renamed key in a scope does");
    let retagged = json!({"n": 1, "s": "x", "l": [{"scope": {"scope": "org"}}]});
    assert_ne!(shape(&a), shape(&retagged), "an unknown scope tag does");
    let retyped = json!({"n": "1", "s": "x", "l": [{"scope": org}]});
    assert_ne!(shape(&a), shape(&retyped), "a number sent as a string does");
    let extra = json!({"n": 1, "s": "x", "l": [{"scope": org, "x": true}]});
    assert_ne!(shape(&a), shape(&extra), "an extra key in an element does");
}

/// A database of its own on the shared cluster, every migration applied,
/// and its name: for a test that must not see other tests' changes (or
/// let them see its own), e.g. of database-wide state.
pub async fn private_db_named(pg: &Cluster, what: &str) -> (Client, String) {
    let name = format!("{what}_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    pg::apply_all(&db).await.expect("migrations");
    (db, name)
}

/// [`private_db_named`], without the name.
pub async fn private_db(pg: &Cluster, what: &str) -> Client {
    private_db_named(pg, what).await.0
}
