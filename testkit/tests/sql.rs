//! The SQL shipped in `migrations/`, tested on a private PostgreSQL cluster:
//! migrations, the RPCs (the `Store` primitives), RLS isolation between
//! organizations, the membership role rules, host-table adoption, and
//! concurrent reservations.
//!
//! Every test shares one cluster (see `tests/support/pg.rs`) and uses fresh
//! organizations and users, so tests are independent. Without PostgreSQL
//! they print `SKIPPED` and pass, unless `TENANCY_REQUIRE_LIVE` is set.

use tenancy_testkit::pg;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use pg::{Actor, Cluster, act, create_user};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

// ---- helpers ---------------------------------------------------------------

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const DAY: (i32, u32, u32) = (2026, 3, 14);
const MONTH: (i32, u32, u32) = (2026, 3, 1);

fn day() -> NaiveDate {
    date(DAY.0, DAY.1, DAY.2)
}

fn month() -> NaiveDate {
    date(MONTH.0, MONTH.1, MONTH.2)
}

fn noon() -> DateTime<Utc> {
    at("2026-03-14T12:00:00Z")
}

fn unique_slug(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Creates an organization owned by `owner` (through the service RPC).
async fn create_org(db: &Client, owner: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    db.query(
        "select id from tenancy_create_organization(name => $1, slug => $2, id => $3, owner_user_id => $4)",
        &[&"Org", &unique_slug("org"), &id, &owner],
    )
    .await
    .expect("create organization");
    id
}

async fn add_member(db: &Client, org: Uuid, user: Uuid, role: &str) {
    db.execute(
        "insert into user_organizations (organization_id, user_id, role) values ($1, $2, $3)",
        &[&org, &user, &role],
    )
    .await
    .expect("add member");
}

/// One event for the record RPC that counts exactly `amounts`
/// (`{metric: amount}`): given as its quantities, with no tokens and no
/// cost of its own (`record_counts_each_event_once` covers those).
fn event(
    org: Uuid,
    user: Option<Uuid>,
    amounts: Value,
    daily: NaiveDate,
    monthly: NaiveDate,
) -> Value {
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
        "occurred_at": noon(),
        "metadata": {"request": "r1"},
        "daily_start": daily,
        "monthly_start": monthly,
    })
}

async fn record(db: &Client, events: &Value) -> Value {
    db.query_one("select tenancy_record_usage($1)", &[events])
        .await
        .expect("record usage")
        .get(0)
}

/// A counter's value as text, "none" when absent.
async fn counter(
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
async fn usage_rows(db: &Client, org: Uuid) -> (i64, i64) {
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

struct Reserve {
    org: Uuid,
    user: Uuid,
    metric: &'static str,
    amount: i64,
    daily: NaiveDate,
    monthly: NaiveDate,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Reserve {
    fn new(org: Uuid, user: Uuid, amount: i64) -> Self {
        Reserve {
            org,
            user,
            metric: "tokens",
            amount,
            daily: day(),
            monthly: month(),
            now: noon(),
            expires_at: noon() + Duration::minutes(5),
        }
    }
}

const RESERVE_SQL: &str = "select tenancy_reserve(org_id => $1, user_id => $2, metric => $3, \
     amount => $4::bigint::numeric, daily_start => $5, monthly_start => $6, now => $7, \
     expires_at => $8, reservation_id => $9)";

async fn reserve_on(
    db: &impl tokio_postgres::GenericClient,
    r: &Reserve,
    id: Uuid,
) -> Result<Value, Error> {
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
        ],
    )
    .await
    .map(|row| row.get(0))
}

async fn reserve(db: &Client, r: &Reserve) -> (Uuid, Value) {
    let id = Uuid::now_v7();
    (id, reserve_on(db, r, id).await.expect("reserve"))
}

const SNAPSHOT_SQL: &str = "select tenancy_usage_snapshot(org_id => $1, daily_start => $2, \
     monthly_start => $3, now => $4, user_id => $5, metric => $6)";

/// The usage snapshot of `org` for today and this month, at noon.
async fn snapshot_on(
    db: &impl tokio_postgres::GenericClient,
    org: Uuid,
    user: Option<Uuid>,
    metric: Option<&str>,
) -> Result<Value, Error> {
    db.query_one(
        SNAPSHOT_SQL,
        &[&org, &day(), &month(), &noon(), &user, &metric],
    )
    .await
    .map(|row| row.get(0))
}

async fn put_limit(
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

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, Error>, code: SqlState, what: &str) {
    match &result {
        Err(e) if e.code() == Some(&code) => {}
        other => panic!("{what}: expected SQLSTATE {}, got {other:?}", code.code()),
    }
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    assert_code(result, SqlState::INSUFFICIENT_PRIVILEGE, what);
}

/// Rows of `table` for `org` that `actor` can see.
async fn visible(conn: &mut Client, actor: Actor, table: &str, org: Uuid) -> Result<i64, Error> {
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

const TENANT_TABLES: [&str; 8] = [
    "organizations",
    "user_organizations",
    "org_features",
    "usage_limits",
    "usage_events",
    "usage_counters",
    "usage_reservations",
    "usage_alerts",
];

/// The RPCs a user JWT may call; every other function in `public` is for
/// service_role only.
const USER_RPCS: [&str; 2] = ["tenancy_create_organization", "tenancy_usage_snapshot"];

/// RLS on every table of `public`; who may execute the functions of
/// `public` (the bootstrap grants every new one to anon and authenticated,
/// as Supabase does, so only the migrations' revokes protect them); anon
/// executes nothing in `tenancy` and holds no privilege on a tenancy table; no security definer function in
/// `public`, and every one in `tenancy` pins its search_path.
async fn assert_catalog(db: &Client) {
    let no_rls: Vec<String> = db
        .query(
            "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity \
             order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        no_rls.is_empty(),
        "tables without RLS in public: {no_rls:?}"
    );
    let tables: i64 = db
        .query_one(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public' and c.relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        tables >= 8,
        "the catalog check must see the tenancy tables ({tables})"
    );

    // Who may execute each function of public.
    let functions: Vec<(String, bool, bool, bool)> = db
        .query(
            "select p.proname::text, has_function_privilege('anon', p.oid, 'execute'), \
             has_function_privilege('authenticated', p.oid, 'execute'), \
             has_function_privilege('service_role', p.oid, 'execute') \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'public' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let rpcs: Vec<&str> = functions
        .iter()
        .map(|f| f.0.as_str())
        .filter(|name| name.starts_with("tenancy_"))
        .collect();
    assert_eq!(rpcs.len(), 8, "the check must see every RPC: {functions:?}");
    let for_anon: Vec<&str> = functions
        .iter()
        .filter(|f| f.1)
        .map(|f| f.0.as_str())
        .collect();
    assert!(
        for_anon.is_empty(),
        "functions in public anon may execute: {for_anon:?}"
    );
    let for_users: Vec<&str> = functions
        .iter()
        .filter(|f| f.2)
        .map(|f| f.0.as_str())
        .collect();
    assert_eq!(
        for_users, USER_RPCS,
        "functions in public authenticated may execute"
    );
    let not_for_service: Vec<&str> = functions
        .iter()
        .filter(|f| !f.3)
        .map(|f| f.0.as_str())
        .collect();
    assert!(
        not_for_service.is_empty(),
        "functions in public service_role may not execute: {not_for_service:?}"
    );

    // Nor any function of tenancy: PostgreSQL grants execute on each new
    // function to PUBLIC, and only the migrations' revokes take it back.
    let helpers: Vec<(String, bool, bool)> = db
        .query(
            "select p.proname::text, has_function_privilege('anon', p.oid, 'execute'), \
             has_function_privilege('authenticated', p.oid, 'execute') \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'tenancy' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let helpers_for_anon: Vec<&str> = helpers
        .iter()
        .filter(|h| h.1)
        .map(|h| h.0.as_str())
        .collect();
    assert!(
        helpers_for_anon.is_empty(),
        "functions in tenancy anon may execute: {helpers_for_anon:?}"
    );
    assert!(
        helpers.iter().any(|h| h.0 == "is_member" && h.2),
        "positive control: the same query finds what authenticated may execute: {helpers:?}"
    );

    // anon holds no privilege on any tenancy table.
    for table in TENANT_TABLES {
        let anon: bool = db
            .query_one(
                "select has_table_privilege('anon', $1, \
                 'select, insert, update, delete, truncate, references, trigger')",
                &[&format!("public.{table}")],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!anon, "anon holds a privilege on {table}");
    }

    // Security definer functions, by schema, and whether each pins its
    // search_path to ''.
    let definers: Vec<(String, String, bool)> = db
        .query(
            "select n.nspname::text, p.proname::text, \
             coalesce(p.proconfig @> array['search_path=\"\"'], false) \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname in ('public', 'tenancy') and p.prosecdef order by 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let in_public: Vec<&str> = definers
        .iter()
        .filter(|d| d.0 == "public")
        .map(|d| d.1.as_str())
        .collect();
    assert!(
        in_public.is_empty(),
        "security definer functions in public: {in_public:?}"
    );
    assert!(
        definers
            .iter()
            .any(|d| d.0 == "tenancy" && d.1 == "is_member"),
        "positive control: the same query finds the definers in tenancy: {definers:?}"
    );
    let loose: Vec<&str> = definers
        .iter()
        .filter(|d| !d.2)
        .map(|d| d.1.as_str())
        .collect();
    assert!(
        loose.is_empty(),
        "security definer functions without search_path = '': {loose:?}"
    );
}

// ---- migrations and catalog -----------------------------------------------------

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_reapply_cleanly() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("fresh_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    pg::apply_all(&db).await.expect("first application");
    pg::apply_all(&db).await.expect("second application");
    // Each file on its own, again, in order: every one is re-runnable.
    for (file, sql) in pg::migrations() {
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("re-apply {file}: {e}"));
    }
    let policies: i64 = db
        .query_one(
            "select count(*) from pg_policies where schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(policies, 14, "policies are replaced, not duplicated");
    assert_catalog(&db).await;

    // Truncating organizations (its own database: it empties the table)
    // takes the usage log along, which no foreign key or row trigger does.
    let org: Uuid = db
        .query_one(
            "insert into organizations (name, slug) values ('Gone', 'gone') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    record(
        &db,
        &json!([event(org, None, json!({"tokens": 1}), day(), month())]),
    )
    .await;
    db.batch_execute("truncate organizations cascade")
        .await
        .unwrap();
    let events: i64 = db
        .query_one("select count(*) from usage_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0, "truncating organizations empties the usage log");
}

#[tokio::test]
async fn catalog_rls_on_every_public_table_and_no_definer_in_public() {
    let Some(pg) = Cluster::shared() else { return };
    assert_catalog(&pg.superuser().await).await;
}

// ---- adopting a host table --------------------------------------------------------

#[tokio::test]
async fn brands_backfill_into_default_and_rls_scopes_them() {
    let Some(pg) = Cluster::shared() else { return };
    // Its own database: adopting adds a table to public.
    let name = format!("brands_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    pg::apply_all(&db).await.unwrap();
    db.batch_execute(
        "create table public.brands (id bigserial primary key, name text not null, created_at timestamptz default now());
         insert into public.brands (name) values ('Acme Soap'), ('Acme Rope'), ('Acme Anvils');",
    )
    .await
    .unwrap();

    let default_org: Option<Uuid> = db
        .query_one("select tenancy.adopt_table('public.brands')", &[])
        .await
        .unwrap()
        .get(0);
    let default_org = default_org.expect("a default org was needed");
    // Twice is harmless and needs no org any more.
    let again: Option<Uuid> = db
        .query_one(
            "select tenancy.adopt_table('public.brands', 'Default')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, None);

    let row = db
        .query_one(
            "select o.name, o.slug, (select count(*) from brands b where b.organization_id = o.id), \
             (select count(*) from brands where organization_id is null) \
             from organizations o where o.id = $1",
            &[&default_org],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Default");
    assert_eq!(row.get::<_, String>(1), "default");
    assert_eq!(row.get::<_, i64>(2), 3);
    assert_eq!(row.get::<_, i64>(3), 0);
    let shape = db
        .query_one(
            "select a.attnotnull, c.relrowsecurity, \
             exists (select 1 from pg_index i where i.indrelid = c.oid and i.indkey[0] = a.attnum), \
             (select count(*) from pg_policy p where p.polrelid = c.oid) \
             from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = 'organization_id' \
             where c.oid = 'public.brands'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert!(shape.get::<_, bool>(0), "organization_id is not null");
    assert!(shape.get::<_, bool>(1), "RLS enabled");
    assert!(shape.get::<_, bool>(2), "organization_id indexed");
    assert_eq!(shape.get::<_, i64>(3), 4, "four standard policies, once");

    // Users: an owner of the default org (added later by the operator), a
    // member and a viewer of it, and the owner of another org.
    let owner = create_user(&db).await;
    let member = create_user(&db).await;
    let viewer = create_user(&db).await;
    let other = create_user(&db).await;
    add_member(&db, default_org, owner, "owner").await;
    add_member(&db, default_org, member, "member").await;
    add_member(&db, default_org, viewer, "viewer").await;
    let other_org = create_org(&db, other).await;
    db.execute(
        "insert into brands (name, organization_id) values ('Other Co', $1)",
        &[&other_org],
    )
    .await
    .unwrap();

    let mut conn = pg::connect_url(&pg.authenticator_url(&name)).await;
    let count = async |conn: &mut Client, who: Uuid| -> i64 {
        act(conn, Actor::User(who), async |tx| {
            Ok(tx
                .query_one("select count(*) from brands", &[])
                .await?
                .get(0))
        })
        .await
        .unwrap()
    };
    // Positive control: members and viewers see their org's brands, only those.
    assert_eq!(count(&mut conn, member).await, 3);
    assert_eq!(count(&mut conn, viewer).await, 3);
    assert_eq!(count(&mut conn, other).await, 1);
    assert_eq!(
        count(&mut conn, create_user(&db).await).await,
        0,
        "a stranger sees nothing"
    );
    let anon = act(&mut conn, Actor::Anon, async |tx| {
        Ok(tx
            .query_one("select count(*) from brands", &[])
            .await?
            .get::<_, i64>(0))
    })
    .await;
    assert_eq!(anon.unwrap(), 0, "anon sees no brand");

    // A member writes in its org...
    let wrote = act(&mut conn, Actor::User(member), async |tx| {
        tx.execute(
            "insert into brands (name, organization_id) values ('New', $1)",
            &[&default_org],
        )
        .await?;
        tx.execute(
            "update brands set name = name || '!' where organization_id = $1",
            &[&default_org],
        )
        .await
    })
    .await;
    assert_eq!(wrote.unwrap(), 4);
    // ...but not into another org (IDOR), nor move a row there.
    let idor = act(&mut conn, Actor::User(member), async |tx| {
        tx.execute(
            "insert into brands (name, organization_id) values ('Planted', $1)",
            &[&other_org],
        )
        .await
    })
    .await;
    assert_denied(idor, "member inserting a brand into another org");
    let moved = act(&mut conn, Actor::User(member), async |tx| {
        tx.execute(
            "update brands set organization_id = $1 where organization_id = $2",
            &[&other_org, &default_org],
        )
        .await
    })
    .await;
    assert_denied(moved, "member moving brands into another org");
    // A member of both organizations passes RLS on both sides of a move, so
    // only the tenancy_keep_organization_id trigger stands in its way (and
    // in service_role's, which bypasses RLS).
    let both = create_user(&db).await;
    add_member(&db, default_org, both, "member").await;
    add_member(&db, other_org, both, "member").await;
    let renamed = act(&mut conn, Actor::User(both), async |tx| {
        tx.execute(
            "update brands set name = name where organization_id = any ($1)",
            &[&vec![default_org, other_org]],
        )
        .await
    })
    .await;
    assert_eq!(
        renamed.unwrap(),
        5,
        "positive control: it writes rows of both organizations"
    );
    let brand: i64 = db
        .query_one(
            "select min(id) from brands where organization_id = $1",
            &[&default_org],
        )
        .await
        .unwrap()
        .get(0);
    let brand_row = async || -> Value {
        db.query_one(
            "select to_jsonb(b) from brands b where b.id = $1",
            &[&brand],
        )
        .await
        .unwrap()
        .get(0)
    };
    let before = brand_row().await;
    let move_brand = "update brands set organization_id = $1 where id = $2";
    for actor in [Actor::User(both), Actor::Service] {
        let res = act(&mut conn, actor, async |tx| {
            tx.execute(move_brand, &[&other_org, &brand]).await
        })
        .await;
        let message = res
            .as_ref()
            .err()
            .and_then(Error::as_db_error)
            .map(|e| e.message().to_owned());
        assert_denied(res, &format!("{actor:?} moving a brand between its orgs"));
        assert_eq!(
            message.as_deref(),
            Some("a row of brands cannot move to another organization"),
            "{actor:?}: refused by the trigger"
        );
        assert_eq!(brand_row().await, before, "the brand did not move");
    }
    let touched = act(&mut conn, Actor::User(member), async |tx| {
        tx.execute(
            "delete from brands where organization_id = $1",
            &[&other_org],
        )
        .await
    })
    .await;
    assert_eq!(touched.unwrap(), 0, "another org's brands are out of reach");
    // A viewer reads only.
    let viewer_insert = act(&mut conn, Actor::User(viewer), async |tx| {
        tx.execute(
            "insert into brands (name, organization_id) values ('V', $1)",
            &[&default_org],
        )
        .await
    })
    .await;
    assert_denied(viewer_insert, "viewer inserting a brand");
    let viewer_update = act(&mut conn, Actor::User(viewer), async |tx| {
        tx.execute("update brands set name = 'V'", &[]).await
    })
    .await;
    assert_eq!(viewer_update.unwrap(), 0, "a viewer updates nothing");
    let viewer_delete = act(&mut conn, Actor::User(viewer), async |tx| {
        tx.execute("delete from brands", &[]).await
    })
    .await;
    assert_eq!(viewer_delete.unwrap(), 0, "a viewer deletes nothing");
    assert_eq!(count(&mut conn, viewer).await, 4);

    assert_catalog(&db).await;

    // Deleting an organization takes its brands with it.
    db.execute("delete from organizations where id = $1", &[&other_org])
        .await
        .unwrap();
    let left: i64 = db
        .query_one("select count(*) from brands", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 4);
}

// ---- usage_limits columns -----------------------------------------------------

#[tokio::test]
async fn usage_limits_accept_the_plans_columns_and_derive_the_rest() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    db.execute(
        "insert into usage_limits (organization_id, user_id, limit_type, limit_value, period) values \
         ($1, null, 'monthly_tokens', 1000000, 'monthly'), ($1, null, 'monthly_cost', 50, 'monthly'), \
         ($1, $2, 'daily_ads', 5, 'daily'), ($1, null, 'daily_images', 10, 'daily')",
        &[&org, &owner],
    )
    .await
    .unwrap();
    let rows = db
        .query(
            "select limit_type, metric, mode from usage_limits where organization_id = $1 order by limit_type",
            &[&org],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want = [
        ("daily_ads", "ads_created", "hard"),
        ("daily_images", "images", "hard"),
        ("monthly_cost", "cost_usd", "hard"),
        ("monthly_tokens", "tokens", "hard"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
            .to_vec()
    );
    // One limit per slot; inconsistent or invalid rows are refused.
    let insert = "insert into usage_limits (organization_id, limit_type, limit_value, period) \
                  values ($1, $2, $3::bigint::numeric, $4)";
    for (limit_type, value, period, code) in [
        ("monthly_tokens", 1, "monthly", SqlState::UNIQUE_VIOLATION), // slot taken
        ("monthly_x", 1, "daily", SqlState::CHECK_VIOLATION),         // period mismatch
        ("weekly_tokens", 1, "daily", SqlState::CHECK_VIOLATION),     // unknown prefix
        ("daily_y", -1, "daily", SqlState::CHECK_VIOLATION),          // negative
    ] {
        let res = db
            .execute(insert, &[&org, &limit_type, &i64::from(value), &period])
            .await;
        assert_code(res, code, &format!("{limit_type} {value} {period}"));
    }

    // put_limit replaces value and mode in place, keeping id and created_at.
    let before = db
        .query_one(
            "select id, created_at from usage_limits where organization_id = $1 and metric = 'tokens'",
            &[&org],
        )
        .await
        .unwrap();
    let row = db
        .query_one(
            "select id, created_at, limit_value::text, mode, limit_type from tenancy_put_limit(\
             limit_id => $1, org_id => $2, metric => 'tokens', period => 'monthly', limit_value => 2000, mode => 'soft')",
            &[&Uuid::now_v7(), &org],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), before.get::<_, Uuid>(0));
    assert_eq!(
        row.get::<_, DateTime<Utc>>(1),
        before.get::<_, DateTime<Utc>>(1)
    );
    assert_eq!(row.get::<_, String>(2), "2000");
    assert_eq!(row.get::<_, String>(3), "soft");
    assert_eq!(row.get::<_, String>(4), "monthly_tokens");
    let missing = db
        .query(
            "select * from tenancy_put_limit(limit_id => $1, org_id => $1, metric => 'tokens', period => 'daily', limit_value => 1)",
            &[&Uuid::now_v7()],
        )
        .await;
    assert_code(missing, SqlState::NO_DATA_FOUND, "limit for a missing org");
}

// ---- organizations ------------------------------------------------------------

#[tokio::test]
async fn creating_an_organization_makes_its_creator_owner() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let alice = create_user(&db).await;
    let bob = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let slug = unique_slug("acme");
    let org: Uuid = act(&mut conn, Actor::User(alice), async |tx| {
        Ok(tx
            .query_one(
                "select id from tenancy_create_organization(name => ' Acme ', slug => $1, timezone => 'Asia/Tokyo')",
                &[&slug],
            )
            .await?
            .get(0))
    })
    .await
    .expect("a user creates its own organization");
    let row = db
        .query_one(
            "select o.name, o.timezone, o.owner_user_id, m.role from organizations o \
             join user_organizations m on m.organization_id = o.id where o.id = $1",
            &[&org],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Acme");
    assert_eq!(row.get::<_, String>(1), "Asia/Tokyo");
    assert_eq!(row.get::<_, Uuid>(2), alice);
    assert_eq!(row.get::<_, String>(3), "owner");

    // A user cannot choose the new organization's id.
    let wanted = Uuid::now_v7();
    let chosen: Uuid = act(&mut conn, Actor::User(alice), async |tx| {
        Ok(tx
            .query_one(
                "select id from tenancy_create_organization(name => 'Mine', slug => $1, id => $2)",
                &[&unique_slug("mine"), &wanted],
            )
            .await?
            .get(0))
    })
    .await
    .expect("a user creates another organization");
    assert_ne!(chosen, wanted, "the id a user asked for is ignored");
    // Nor by inserting the row itself (no `returning`: the owner row comes
    // from an after-insert trigger, so the select policy would refuse the
    // returned row), and its created_at is the insert's time.
    let direct_slug = unique_slug("direct");
    let long_ago = at("2001-01-01T00:00:00Z");
    let inserted = act(&mut conn, Actor::User(alice), async |tx| {
        tx.execute(
            "insert into organizations (id, name, slug, owner_user_id, created_at) \
             values ($1, 'Direct', $2, $3, $4)",
            &[&wanted, &direct_slug, &alice, &long_ago],
        )
        .await
    })
    .await;
    assert_eq!(inserted.unwrap(), 1, "a user inserts its own organization");
    let stored = db
        .query_one(
            "select id, created_at, (select count(*) from organizations where id = $2) \
             from organizations where slug = $1",
            &[&direct_slug, &wanted],
        )
        .await
        .unwrap();
    assert_ne!(
        stored.get::<_, Uuid>(0),
        wanted,
        "the id a user inserts is replaced"
    );
    assert_ne!(
        stored.get::<_, DateTime<Utc>>(1),
        long_ago,
        "the created_at a user inserts is replaced"
    );
    assert_eq!(
        stored.get::<_, i64>(2),
        0,
        "no organization has the chosen id"
    );
    // Positive control: service_role keeps the id and created_at it gives.
    let kept = act(&mut conn, Actor::Service, async |tx| {
        tx.query_one(
            "insert into organizations (id, name, slug, owner_user_id, created_at) \
             values ($1, 'Kept', $2, $3, $4) returning id, created_at",
            &[&wanted, &unique_slug("kept"), &alice, &long_ago],
        )
        .await
    })
    .await
    .unwrap();
    assert_eq!(kept.get::<_, Uuid>(0), wanted);
    assert_eq!(kept.get::<_, DateTime<Utc>>(1), long_ago);

    let taken = act(&mut conn, Actor::User(bob), async |tx| {
        tx.query(
            "select * from tenancy_create_organization(name => 'X', slug => $1)",
            &[&slug],
        )
        .await
    })
    .await;
    assert_code(taken, SqlState::UNIQUE_VIOLATION, "taken slug");
    let long = "a".repeat(64);
    for bad in ["Acme", "-acme", "acme--x", "acme-", long.as_str()] {
        let res = act(&mut conn, Actor::User(bob), async |tx| {
            tx.query(
                "select * from tenancy_create_organization(name => 'X', slug => $1)",
                &[&bad],
            )
            .await
        })
        .await;
        assert_code(res, SqlState::CHECK_VIOLATION, &format!("slug {bad:?}"));
    }
    let bad_tz = act(&mut conn, Actor::User(bob), async |tx| {
        tx.query(
            "select * from tenancy_create_organization(name => 'X', slug => $1, timezone => 'Mars/Olympus')",
            &[&unique_slug("tz")],
        )
        .await
    })
    .await;
    assert_code(bad_tz, SqlState::CHECK_VIOLATION, "unknown time zone");
    // A user creates organizations for itself only, directly or by RPC.
    let for_alice = act(&mut conn, Actor::User(bob), async |tx| {
        tx.query(
            "select * from tenancy_create_organization(name => 'X', slug => $1, owner_user_id => $2)",
            &[&unique_slug("x"), &alice],
        )
        .await
    })
    .await;
    assert_denied(for_alice, "creating an org owned by someone else (RPC)");
    let direct = act(&mut conn, Actor::User(bob), async |tx| {
        tx.execute(
            "insert into organizations (name, slug, owner_user_id) values ('X', $1, $2)",
            &[&unique_slug("x"), &alice],
        )
        .await
    })
    .await;
    assert_denied(direct, "inserting an org owned by someone else");
    let anon = act(&mut conn, Actor::Anon, async |tx| {
        tx.query(
            "select * from tenancy_create_organization(name => 'X', slug => $1)",
            &[&unique_slug("x")],
        )
        .await
    })
    .await;
    assert_denied(anon, "anon creating an org");

    // Deleting the organization cascades, last owner and usage log included
    // (usage_events has no foreign key; a delete trigger does it).
    record(
        &db,
        &json!([event(
            org,
            Some(alice),
            json!({"tokens": "30"}),
            day(),
            month()
        )]),
    )
    .await;
    let deleted = act(&mut conn, Actor::User(alice), async |tx| {
        tx.execute("delete from organizations where id = $1", &[&org])
            .await
    })
    .await;
    assert_eq!(deleted.unwrap(), 1);
    let left: i64 = db
        .query_one(
            "select count(*) from user_organizations where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(
        usage_rows(&db, org).await,
        (0, 0),
        "the organization's usage events and counters go with it"
    );
}

// ---- the isolation matrix ---------------------------------------------------------

/// Two organizations with a row in every table each.
struct World {
    org_a: Uuid,
    org_b: Uuid,
    owner_a: Uuid,
    admin_a: Uuid,
    member_a: Uuid,
    viewer_a: Uuid,
    owner_b: Uuid,
}

async fn world(db: &Client) -> World {
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
    for (org, user) in [(org_a, member_a), (org_b, owner_b)] {
        db.execute(
            "insert into org_features (organization_id, feature_key, enabled, config) values ($1, 'veo_avatars', true, '{\"quota\": 3}')",
            &[&org],
        )
        .await
        .unwrap();
        put_limit(db, org, None, "tokens", "monthly", 1_000_000, "hard").await;
        record(
            db,
            &json!([event(
                org,
                Some(user),
                json!({"tokens": 30}),
                day(),
                month()
            )]),
        )
        .await;
        let (_, res) = reserve(db, &Reserve::new(org, user, 100)).await;
        assert_eq!(res["granted"], true);
        let claimed: Value = db
            .query_one(
                "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'monthly', \
                 period_start => $2, threshold_percent => 80, fired_at => now())",
                &[&org, &month()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(claimed["claimed"], true);
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

#[tokio::test]
async fn members_read_their_org_and_nothing_of_another() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for table in TENANT_TABLES {
        for user in [w.owner_a, w.member_a, w.viewer_a] {
            let own = visible(&mut conn, Actor::User(user), table, w.org_a)
                .await
                .unwrap();
            assert!(
                own > 0,
                "positive control: {table} rows of the user's own org are visible"
            );
            let other = visible(&mut conn, Actor::User(user), table, w.org_b)
                .await
                .unwrap();
            assert_eq!(other, 0, "{table}: another org's rows must be invisible");
        }
        let b = visible(&mut conn, Actor::User(w.owner_b), table, w.org_b)
            .await
            .unwrap();
        assert!(b > 0, "positive control for org B in {table}");
        let a = visible(&mut conn, Actor::User(w.owner_b), table, w.org_a)
            .await
            .unwrap();
        assert_eq!(a, 0, "{table}: org A is invisible to org B's owner");
        // Whole-table reads see only the user's own orgs, too.
        let sql = format!("select count(*) from public.{table}");
        let all = act(&mut conn, Actor::User(w.owner_b), async |tx| {
            Ok(tx.query_one(&sql, &[]).await?.get::<_, i64>(0))
        })
        .await
        .unwrap();
        assert_eq!(
            all, b,
            "{table}: an unfiltered read returns only org B's rows"
        );
    }
    let stranger = create_user(&db).await;
    for table in TENANT_TABLES {
        assert_eq!(
            visible(&mut conn, Actor::User(stranger), table, w.org_a)
                .await
                .unwrap(),
            0
        );
    }
}

#[tokio::test]
async fn anon_reads_and_calls_nothing() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for table in TENANT_TABLES {
        assert_denied(
            visible(&mut conn, Actor::Anon, table, w.org_a).await,
            &format!("anon reading {table}"),
        );
    }
    let snapshot = act(&mut conn, Actor::Anon, async |tx| {
        snapshot_on(tx, w.org_a, None, None).await
    })
    .await;
    assert_denied(snapshot, "anon calling the snapshot RPC");
    let rec = act(&mut conn, Actor::Anon, async |tx| {
        tx.query_one("select tenancy_record_usage('[]')", &[]).await
    })
    .await;
    assert_denied(rec, "anon calling the record RPC");
}

#[tokio::test]
async fn writes_naming_another_org_are_refused() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let newcomer = create_user(&db).await;
    let mut conn = pg.authenticator().await;

    // IDOR: org A's owner adds someone to org B.
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(
            "insert into user_organizations (organization_id, user_id, role) values ($1, $2, 'member')",
            &[&w.org_b, &newcomer],
        )
        .await
    })
    .await;
    assert_denied(res, "owner of A adding a member to B");
    // IDOR: a member of A changes or removes memberships in B.
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(
            "update user_organizations set role = 'viewer' where organization_id = $1",
            &[&w.org_b],
        )
        .await
    })
    .await;
    assert_eq!(res.unwrap(), 0, "B's memberships are out of reach");
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(
            "delete from user_organizations where organization_id = $1",
            &[&w.org_b],
        )
        .await
    })
    .await;
    assert_eq!(res.unwrap(), 0);
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(
            "update organizations set name = 'pwned' where id = $1",
            &[&w.org_b],
        )
        .await
    })
    .await;
    assert_eq!(res.unwrap(), 0, "B's organization row is out of reach");
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute("delete from organizations where id = $1", &[&w.org_b])
            .await
    })
    .await;
    assert_eq!(res.unwrap(), 0);

    // Usage tables are written only through the service RPCs, for any org.
    for (table, sql) in [
        (
            "org_features",
            "insert into org_features (organization_id, feature_key, enabled) values ($1, 'x', true)",
        ),
        (
            "usage_limits",
            "insert into usage_limits (organization_id, limit_type, limit_value, period) values ($1, 'daily_x', 1, 'daily')",
        ),
        (
            "usage_counters",
            "insert into usage_counters (organization_id, scope_user_id, metric, period, period_start, used) values ($1, gen_random_uuid(), 'x', 'daily', current_date, 1)",
        ),
        (
            "usage_alerts",
            "insert into usage_alerts (organization_id, scope_user_id, metric, period, period_start, threshold_percent) values ($1, gen_random_uuid(), 'x', 'daily', current_date, 80)",
        ),
        (
            "usage_reservations",
            "insert into usage_reservations (organization_id, id, user_id, metric, amount, daily_start, monthly_start, expires_at) values ($1, gen_random_uuid(), gen_random_uuid(), 'x', 1, current_date, current_date, now())",
        ),
    ] {
        for org in [w.org_a, w.org_b] {
            let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
                tx.execute(sql, &[&org]).await
            })
            .await;
            assert_denied(res, &format!("owner inserting into {table}"));
        }
    }
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(
            "insert into usage_events (id, organization_id, occurred_at, daily_start, monthly_start) values (gen_random_uuid(), $1, now(), current_date, current_date)",
            &[&w.org_b],
        )
        .await
    })
    .await;
    assert_denied(res, "inserting a usage event directly");

    // RPC arguments naming another org or another user.
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        snapshot_on(tx, w.org_b, None, None).await
    })
    .await;
    assert_denied(res, "snapshot of another org");
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        snapshot_on(tx, w.org_a, Some(w.owner_a), None).await
    })
    .await;
    assert_denied(res, "snapshot of another user");
    let own = act(&mut conn, Actor::User(w.member_a), async |tx| {
        snapshot_on(tx, w.org_a, Some(w.member_a), None).await
    })
    .await
    .expect("positive control: own org, own user");
    assert_eq!(own["limits"].as_array().unwrap().len(), 1);
    assert_eq!(own["counters"].as_array().unwrap().len(), 4, "{own}");

    // The writer RPCs are not granted to user JWTs at all.
    let r = Reserve::new(w.org_a, w.member_a, 1);
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        reserve_on(tx, &r, Uuid::now_v7()).await
    })
    .await;
    assert_denied(res, "a user calling reserve");
    let batch = json!([event(
        w.org_b,
        Some(w.member_a),
        json!({"tokens": 1}),
        day(),
        month()
    )]);
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        tx.query_one("select tenancy_record_usage($1)", &[&batch])
            .await
    })
    .await;
    assert_denied(res, "a user calling record");
    for sql in [
        "select tenancy_release_reservation(org_id => $1, reservation_id => gen_random_uuid())",
        "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'daily', period_start => current_date, threshold_percent => 80, fired_at => now())",
        "select tenancy_commit_reservation(org_id => $1, reservation_id => gen_random_uuid(), event => '{}')",
        "select * from tenancy_put_limit(limit_id => gen_random_uuid(), org_id => $1, metric => 'tokens', period => 'daily', limit_value => 1)",
    ] {
        let res = act(&mut conn, Actor::User(w.owner_b), async |tx| {
            tx.query(sql, &[&w.org_b]).await
        })
        .await;
        assert_denied(res, sql);
    }
}

/// Every row of `table` for `org`, as the service role reads them.
async fn rows_as_service(conn: &mut Client, table: &str, org: Uuid) -> Value {
    let sql = format!(
        "select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]') \
         from public.{table} t where organization_id = $1"
    );
    act(conn, Actor::Service, async |tx| {
        Ok(tx.query_one(&sql, &[&org]).await?.get::<_, Value>(0))
    })
    .await
    .unwrap()
}

/// The usage tables are written only through the service RPCs: an owner's
/// JWT may not update, delete or truncate their rows (42501, no table
/// privilege), in its own organization or another, and every row stays as
/// it was.
#[tokio::test]
async fn users_cannot_update_or_delete_usage_rows() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for (table, set) in [
        ("usage_events", "cost_usd = 0, quantities = '{}'"),
        ("usage_counters", "used = 0"),
        ("usage_reservations", "amount = 1e12"),
        ("usage_alerts", "threshold_percent = 1"),
    ] {
        let mut before = Vec::new();
        for (org, owner) in [(w.org_a, w.owner_a), (w.org_b, w.owner_b)] {
            let rows = rows_as_service(&mut conn, table, org).await;
            let n = rows.as_array().unwrap().len();
            assert!(n > 0, "positive control: {table} has rows to attack");
            assert_eq!(
                visible(&mut conn, Actor::User(owner), table, org)
                    .await
                    .unwrap(),
                n as i64,
                "positive control: the org's own owner sees its {table} rows"
            );
            before.push(rows);
        }
        for (org, whose) in [(w.org_a, "its own org"), (w.org_b, "another org")] {
            for sql in [
                format!("update public.{table} set {set} where organization_id = $1"),
                format!("delete from public.{table} where organization_id = $1"),
            ] {
                let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
                    tx.execute(&sql, &[&org]).await
                })
                .await;
                assert_denied(res, &format!("owner of A, {whose}: {sql}"));
            }
        }
        // RLS does not apply to truncate: the privilege alone must refuse it.
        let sql = format!("truncate public.{table}");
        let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
            tx.batch_execute(&sql).await
        })
        .await;
        assert_denied(res, &sql);
        for ((org, owner), rows) in [(w.org_a, w.owner_a), (w.org_b, w.owner_b)]
            .into_iter()
            .zip(before)
        {
            let n = rows.as_array().unwrap().len() as i64;
            assert_eq!(
                rows_as_service(&mut conn, table, org).await,
                rows,
                "{table} rows are unchanged"
            );
            assert_eq!(
                visible(&mut conn, Actor::User(owner), table, org)
                    .await
                    .unwrap(),
                n,
                "{table}: the owner still sees its rows"
            );
        }
    }
}

#[tokio::test]
async fn org_owners_cannot_grant_features_or_raise_limits() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for sql in [
        "insert into org_features (organization_id, feature_key, enabled) values ($1, 'exports.csv', true)",
        "update org_features set enabled = true, config = '{\"quota\": 999}' where organization_id = $1",
        "delete from org_features where organization_id = $1",
        "insert into usage_limits (organization_id, limit_type, limit_value, period) values ($1, 'daily_ads', 1000, 'daily')",
        "update usage_limits set limit_value = 1e12 where organization_id = $1",
        "delete from usage_limits where organization_id = $1",
    ] {
        let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
            tx.execute(sql, &[&w.org_a]).await
        })
        .await;
        assert_denied(res, sql);
    }
    let value: String = db
        .query_one(
            "select limit_value::text from usage_limits where organization_id = $1",
            &[&w.org_a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(value, "1000000", "the limit is unchanged");
    // Positive control: service_role manages them.
    let res = act(&mut conn, Actor::Service, async |tx| {
        tx.execute(
            "update org_features set enabled = false where organization_id = $1",
            &[&w.org_a],
        )
        .await
    })
    .await;
    assert_eq!(res.unwrap(), 1);
}

/// `select tenancy.<helper>($1, $2)` as `actor`.
async fn ask(conn: &mut Client, actor: Actor, helper: &str, org: Uuid, arg: &str) -> bool {
    let sql = format!("select tenancy.{helper}($1, $2)");
    act(conn, actor, async |tx| {
        Ok(tx.query_one(&sql, &[&org, &arg]).await?.get(0))
    })
    .await
    .unwrap()
}

/// The helpers host policies and checks call answer for the acting user:
/// `has_feature` sees only what RLS on org_features lets it see, `has_role`
/// reads the user's own membership.
#[tokio::test]
async fn has_feature_and_has_role_answer_for_the_acting_user() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    // Both orgs have veo_avatars enabled; org A also has a disabled one.
    db.execute(
        "insert into org_features (organization_id, feature_key, enabled) values ($1, 'beta', false)",
        &[&w.org_a],
    )
    .await
    .unwrap();
    let mut conn = pg.authenticator().await;
    for (actor, org, key, want) in [
        (Actor::User(w.owner_a), w.org_a, "veo_avatars", true),
        (Actor::User(w.owner_a), w.org_b, "veo_avatars", false), // not its org
        (Actor::Service, w.org_b, "veo_avatars", true),          // control
        (Actor::User(w.owner_a), w.org_a, "beta", false),        // disabled
        (Actor::User(w.owner_a), w.org_a, "exports.csv", false), // absent
    ] {
        let got = ask(&mut conn, actor, "has_feature", org, key).await;
        assert_eq!(got, want, "has_feature({org}, {key}) as {actor:?}");
    }
    for (actor, org, min_role, want) in [
        (Actor::User(w.admin_a), w.org_a, "admin", true),
        (Actor::User(w.owner_a), w.org_a, "admin", true), // owner ranks above
        (Actor::User(w.member_a), w.org_a, "admin", false),
        (Actor::User(w.member_a), w.org_a, "member", true),
        (Actor::User(w.owner_a), w.org_b, "viewer", false), // not its org
        (Actor::User(w.owner_b), w.org_b, "viewer", true),  // control
    ] {
        let got = ask(&mut conn, actor, "has_role", org, min_role).await;
        assert_eq!(got, want, "has_role({org}, {min_role}) as {actor:?}");
    }
}

#[tokio::test]
async fn membership_role_rules_hold_in_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let set_role =
        "update user_organizations set role = $3 where organization_id = $1 and user_id = $2";
    let insert =
        "insert into user_organizations (organization_id, user_id, role) values ($1, $2, $3)";
    let remove = "delete from user_organizations where organization_id = $1 and user_id = $2";
    let role_of = async |user: Uuid| -> Option<String> {
        db.query_opt(
            "select role from user_organizations where organization_id = $1 and user_id = $2",
            &[&w.org_a, &user],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
    };

    // Nobody raises their own role.
    for (user, to) in [
        (w.member_a, "admin"),
        (w.viewer_a, "member"),
        (w.admin_a, "owner"),
    ] {
        let res = act(&mut conn, Actor::User(user), async |tx| {
            tx.execute(set_role, &[&w.org_a, &user, &to]).await
        })
        .await;
        assert_denied(res, &format!("raising one's own role to {to}"));
    }
    assert_eq!(role_of(w.member_a).await.as_deref(), Some("member"));

    // A viewer writes nothing: no membership change, no rename.
    let someone = create_user(&db).await;
    let res = act(&mut conn, Actor::User(w.viewer_a), async |tx| {
        tx.execute(insert, &[&w.org_a, &someone, &"viewer"]).await
    })
    .await;
    assert_denied(res, "a viewer adding a member");
    let res = act(&mut conn, Actor::User(w.viewer_a), async |tx| {
        tx.execute(set_role, &[&w.org_a, &w.member_a, &"viewer"])
            .await
    })
    .await;
    assert_eq!(res.unwrap(), 0, "a viewer re-roles nobody");
    let res = act(&mut conn, Actor::User(w.viewer_a), async |tx| {
        tx.execute(
            "update organizations set name = 'V' where id = $1",
            &[&w.org_a],
        )
        .await
    })
    .await;
    assert_eq!(res.unwrap(), 0, "a viewer renames nothing");
    // A member manages nobody either.
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        tx.execute(insert, &[&w.org_a, &someone, &"viewer"]).await
    })
    .await;
    assert_denied(res, "a member adding a member");

    // Inserting yourself is refused, even for a stranger naming the org.
    let res = act(&mut conn, Actor::User(someone), async |tx| {
        tx.execute(insert, &[&w.org_a, &someone, &"owner"]).await
    })
    .await;
    assert_denied(res, "a stranger inserting itself");

    // An admin does not grant owner or admin, nor touch owners.
    let res = act(&mut conn, Actor::User(w.admin_a), async |tx| {
        tx.execute(set_role, &[&w.org_a, &w.member_a, &"owner"])
            .await
    })
    .await;
    assert_denied(res, "an admin granting owner");
    let res = act(&mut conn, Actor::User(w.admin_a), async |tx| {
        tx.execute(insert, &[&w.org_a, &someone, &"owner"]).await
    })
    .await;
    assert_denied(res, "an admin adding an owner");
    let res = act(&mut conn, Actor::User(w.admin_a), async |tx| {
        tx.execute(insert, &[&w.org_a, &someone, &"admin"]).await
    })
    .await;
    assert_denied(res, "an admin adding an admin");
    let res = act(&mut conn, Actor::User(w.admin_a), async |tx| {
        tx.execute(remove, &[&w.org_a, &w.owner_a]).await
    })
    .await;
    assert_denied(res, "an admin removing an owner");
    // Positive controls: an admin manages members and viewers...
    let res = act(&mut conn, Actor::User(w.admin_a), async |tx| {
        tx.execute(insert, &[&w.org_a, &someone, &"viewer"]).await?;
        tx.execute(set_role, &[&w.org_a, &someone, &"member"]).await
    })
    .await;
    assert_eq!(res.unwrap(), 1);
    assert_eq!(role_of(someone).await.as_deref(), Some("member"));
    // ...anyone lowers their own role...
    let res = act(&mut conn, Actor::User(someone), async |tx| {
        tx.execute(set_role, &[&w.org_a, &someone, &"viewer"]).await
    })
    .await;
    assert_eq!(res.unwrap(), 1);
    // ...and an owner grants owner.
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(set_role, &[&w.org_a, &w.admin_a, &"owner"])
            .await
    })
    .await;
    assert_eq!(res.unwrap(), 1);
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(set_role, &[&w.org_a, &w.admin_a, &"admin"])
            .await
    })
    .await;
    assert_eq!(
        res.unwrap(),
        1,
        "an owner demotes another owner while one remains"
    );

    // The last owner stays: not by leaving, not by demotion, not even for
    // service_role.
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(remove, &[&w.org_a, &w.owner_a]).await
    })
    .await;
    assert_denied(res, "the last owner leaving");
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(set_role, &[&w.org_a, &w.owner_a, &"admin"])
            .await
    })
    .await;
    assert_denied(res, "the last owner demoting itself");
    let res = act(&mut conn, Actor::Service, async |tx| {
        tx.execute(remove, &[&w.org_a, &w.owner_a]).await
    })
    .await;
    assert_denied(res, "service_role removing the last owner");
    let res = act(&mut conn, Actor::Service, async |tx| {
        tx.execute(set_role, &[&w.org_a, &w.owner_a, &"member"])
            .await
    })
    .await;
    assert_denied(res, "service_role demoting the last owner");
    assert_eq!(role_of(w.owner_a).await.as_deref(), Some("owner"));
    // Memberships do not move between orgs or users.
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(
            "update user_organizations set organization_id = $1 where organization_id = $2 and user_id = $3",
            &[&w.org_b, &w.org_a, &w.member_a],
        )
        .await
    })
    .await;
    assert_denied(res, "a user moving a membership");
    // The trigger refuses it for the service role too (users are already
    // stopped by column privileges).
    let res = act(&mut conn, Actor::Service, async |tx| {
        tx.execute(
            "update user_organizations set organization_id = $1 where organization_id = $2 and user_id = $3",
            &[&w.org_b, &w.org_a, &w.member_a],
        )
        .await
    })
    .await;
    assert_denied(res, "service_role moving a membership");
    assert_eq!(role_of(w.member_a).await.as_deref(), Some("member"));
    let members_of_b: Vec<(Uuid, String)> = db
        .query(
            "select user_id, role from user_organizations where organization_id = $1",
            &[&w.org_b],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        members_of_b,
        [(w.owner_b, "owner".to_owned())],
        "org B keeps exactly its own membership"
    );

    // A removed member reads nothing any more.
    let res = act(&mut conn, Actor::User(w.owner_a), async |tx| {
        tx.execute(remove, &[&w.org_a, &w.member_a]).await
    })
    .await;
    assert_eq!(res.unwrap(), 1);
    for table in TENANT_TABLES {
        let n = visible(&mut conn, Actor::User(w.member_a), table, w.org_a)
            .await
            .unwrap();
        assert_eq!(n, 0, "a removed member still sees {table}");
    }
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        snapshot_on(tx, w.org_a, None, None).await
    })
    .await;
    assert_denied(res, "a removed member reading usage");
}

// ---- usage RPCs -------------------------------------------------------------

#[tokio::test]
async fn record_counts_each_event_once() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    let e1 = event(
        org,
        Some(user),
        json!({"tokens": 30, "cost_usd": "0.25"}),
        day(),
        month(),
    );
    let e2 = event(
        org,
        None,
        json!({"tokens": "12", "ads_created": 1}),
        day(),
        month(),
    );
    // An AI call: its own tokens (10 + 5 + 20) and cost count, and a
    // quantity named `tokens` adds to them.
    let mut e3 = event(org, None, json!({"tokens": 1}), day(), month());
    e3["input_tokens"] = json!(10);
    e3["cached_input_tokens"] = json!(5);
    e3["output_tokens"] = json!(20);
    e3["cost_usd"] = json!("0.01");
    let batch = json!([e1.clone(), e2, e1.clone(), e3.clone()]);
    assert_eq!(
        record(&db, &batch).await,
        json!({"inserted": 3, "duplicates": 1})
    );
    assert_eq!(
        record(&db, &batch).await,
        json!({"inserted": 0, "duplicates": 4})
    );
    assert_eq!(
        record(&db, &json!([])).await,
        json!({"inserted": 0, "duplicates": 0})
    );

    for period in ["daily", "monthly"] {
        let start = if period == "daily" { day() } else { month() };
        assert_eq!(
            counter(&db, org, pg::NIL, "tokens", period, start).await,
            "78"
        );
        assert_eq!(counter(&db, org, user, "tokens", period, start).await, "30");
        assert_eq!(
            counter(&db, org, pg::NIL, "cost_usd", period, start).await,
            "0.26"
        );
        assert_eq!(
            counter(&db, org, pg::NIL, "ads_created", period, start).await,
            "1"
        );
        assert_eq!(
            counter(&db, org, user, "ads_created", period, start).await,
            "none"
        );
    }
    // Three events; counters: tokens and cost_usd for the org and the user,
    // ads_created for the org, each daily and monthly.
    assert_eq!(usage_rows(&db, org).await, (3, 10));
    let stored = db
        .query_one(
            "select provider, model, operation, input_tokens, output_tokens, cost_usd::text, metadata, occurred_at \
             from usage_events where id = $1",
            &[&e3["id"].as_str().unwrap().parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, String>(0), "openai");
    assert_eq!(stored.get::<_, String>(1), "gpt-4o");
    assert_eq!(stored.get::<_, String>(2), "ad_copy");
    assert_eq!(stored.get::<_, i64>(3), 10);
    assert_eq!(stored.get::<_, i64>(4), 20);
    assert_eq!(stored.get::<_, String>(5), "0.01");
    assert_eq!(stored.get::<_, Value>(6), json!({"request": "r1"}));
    assert_eq!(stored.get::<_, DateTime<Utc>>(7), noon());

    // A bad batch changes nothing: all or none.
    let bad = json!([
        event(org, Some(user), json!({"tokens": 5}), day(), month()),
        event(org, Some(user), json!({"tokens": -1}), day(), month()),
    ]);
    let res = db
        .query_one("select tenancy_record_usage($1)", &[&bad])
        .await;
    assert_code(res, SqlState::INVALID_PARAMETER_VALUE, "negative amount");
    let missing_org = json!([
        event(org, Some(user), json!({"tokens": 5}), day(), month()),
        event(Uuid::new_v4(), None, json!({"tokens": 5}), day(), month()),
    ]);
    let res = db
        .query_one("select tenancy_record_usage($1)", &[&missing_org])
        .await;
    assert_code(res, SqlState::NO_DATA_FOUND, "unknown organization");
    let no_org = json!([{"id": Uuid::now_v7(), "occurred_at": noon(),
        "daily_start": day(), "monthly_start": month()}]);
    let res = db
        .query_one("select tenancy_record_usage($1)", &[&no_org])
        .await;
    assert_code(res, SqlState::INVALID_PARAMETER_VALUE, "no organization_id");
    for nan in [json!("NaN"), json!("Infinity")] {
        let res = db
            .query_one(
                "select tenancy_record_usage($1)",
                &[&json!([event(
                    org,
                    None,
                    json!({ "images": nan }),
                    day(),
                    month()
                )])],
            )
            .await;
        assert_code(
            res,
            SqlState::INVALID_PARAMETER_VALUE,
            "a NaN or infinite amount",
        );
    }
    assert_eq!(
        counter(&db, org, pg::NIL, "tokens", "daily", day()).await,
        "78"
    );
}

/// How long a racing statement may take before the test calls it a hang.
const RACE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn backend_pid(db: &Client) -> i32 {
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
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Proves `statement` (running on backend `waiter`) waits for backend
/// `holder`'s open transaction: it does not finish before `holder` shows as
/// blocking it. Leaves `statement` pending.
async fn assert_waits_for<F>(
    statement: &mut std::pin::Pin<&mut F>,
    monitor: &Client,
    waiter: i32,
    holder: i32,
    what: &str,
) where
    F: std::future::Future,
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

/// Record and an organization delete serialize on the organization's row
/// (usage_events has no foreign key): a delete waits for an open record and
/// then takes its events and counters along; a record waits for an open
/// delete and then fails whole (P0002), storing nothing for any org.
#[tokio::test]
async fn record_and_an_organization_delete_serialize() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (a, b) = (pg.superuser().await, pg.superuser().await);
    let (a_pid, b_pid) = (backend_pid(&a).await, backend_pid(&b).await);
    let user = create_user(&db).await;
    let delete_org = "delete from organizations where id = $1";

    // a. Record first. Without amounts no counter is written, so no foreign
    // key check locks the organization: only record's own lock holds the
    // delete back.
    for (amounts, counters) in [(json!({"tokens": 7}), 4), (json!({}), 0)] {
        let x = create_org(&db, user).await;
        a.batch_execute("begin").await.unwrap();
        let batch = json!([event(x, Some(user), amounts.clone(), day(), month())]);
        assert_eq!(
            record(&a, &batch).await,
            json!({"inserted": 1, "duplicates": 0})
        );
        assert_eq!(usage_rows(&a, x).await, (1, counters), "{amounts}");
        let params: [&(dyn ToSql + Sync); 1] = [&x];
        let mut delete = std::pin::pin!(b.execute(delete_org, &params));
        let what = format!("the delete after a record of {amounts}");
        assert_waits_for(&mut delete, &db, b_pid, a_pid, &what).await;
        a.batch_execute("commit").await.unwrap();
        let deleted = tokio::time::timeout(RACE_LIMIT, delete)
            .await
            .expect("the delete finishes once the record commits");
        assert_eq!(deleted.unwrap(), 1);
        assert_eq!(
            usage_rows(&db, x).await,
            (0, 0),
            "the committed batch went with its organization ({amounts})"
        );
    }

    // b. Delete first; the batch also names a live organization, z.
    let y = create_org(&db, user).await;
    let z = create_org(&db, user).await;
    record(
        &db,
        &json!([event(y, Some(user), json!({"tokens": 5}), day(), month())]),
    )
    .await;
    b.batch_execute("begin").await.unwrap();
    assert_eq!(b.execute(delete_org, &[&y]).await.unwrap(), 1);
    let batch = json!([
        event(z, Some(user), json!({"tokens": 3}), day(), month()),
        event(y, Some(user), json!({"tokens": 3}), day(), month()),
    ]);
    let params: [&(dyn ToSql + Sync); 1] = [&batch];
    let mut rec = std::pin::pin!(a.query_one("select tenancy_record_usage($1)", &params));
    assert_waits_for(&mut rec, &db, a_pid, b_pid, "the record after a delete").await;
    b.batch_execute("commit").await.unwrap();
    let res = tokio::time::timeout(RACE_LIMIT, rec)
        .await
        .expect("the record finishes once the delete commits");
    let message = res
        .as_ref()
        .err()
        .and_then(Error::as_db_error)
        .map(|e| e.message().to_owned());
    assert_code(
        res,
        SqlState::NO_DATA_FOUND,
        "recording for an organization deleted meanwhile",
    );
    assert_eq!(
        message,
        Some(format!("organization {y} does not exist")),
        "the error names the deleted organization"
    );
    assert_eq!(usage_rows(&db, y).await, (0, 0));
    assert_eq!(
        usage_rows(&db, z).await,
        (0, 0),
        "all of the batch or none: nothing for the live organization either"
    );
    // Positive control: z itself records fine.
    let batch = json!([event(z, Some(user), json!({"tokens": 3}), day(), month())]);
    assert_eq!(
        record(&a, &batch).await,
        json!({"inserted": 1, "duplicates": 0})
    );
    assert_eq!(usage_rows(&db, z).await, (1, 4));
}

#[tokio::test]
async fn reserve_commit_release_and_snapshot() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let alice = create_user(&db).await;
    let bob = create_user(&db).await;
    let org = create_org(&db, alice).await;
    add_member(&db, org, bob, "member").await;
    put_limit(&db, org, None, "tokens", "monthly", 1000, "hard").await;
    put_limit(&db, org, Some(bob), "tokens", "daily", 300, "hard").await;
    put_limit(&db, org, Some(alice), "tokens", "daily", 50, "hard").await; // not bob's
    put_limit(&db, org, None, "cost_usd", "monthly", 1, "soft").await;
    record(
        &db,
        &json!([event(org, None, json!({"tokens": 400}), day(), month())]),
    )
    .await;

    // Bob: org-wide monthly (400 used) and his own daily (0 used) apply.
    let (hold, res) = reserve(&db, &Reserve::new(org, bob, 250)).await;
    assert_eq!(res["granted"], true, "{res}");
    let limits = res["limits"].as_array().unwrap();
    assert_eq!(
        limits.len(),
        2,
        "org-wide and bob's own, not alice's: {res}"
    );
    assert_eq!(
        limits[0]["limit"]["scope"],
        json!({"scope": "organization"})
    );
    assert_eq!(limits[0]["limit"]["value"], "1000");
    assert_eq!(
        limits[0]["period"],
        json!({"period": "monthly", "start": "2026-03-01"})
    );
    assert_eq!(limits[0]["used"], "400");
    assert_eq!(limits[0]["reserved"], "0", "excludes this request");
    assert_eq!(
        limits[1]["limit"]["scope"],
        json!({"scope": "user", "user_id": bob})
    );
    assert_eq!(
        limits[1]["period"],
        json!({"period": "daily", "start": "2026-03-14"})
    );
    // Bob's own daily limit now has 250 held: 60 more does not fit (300).
    let (_, res) = reserve(&db, &Reserve::new(org, bob, 60)).await;
    assert_eq!(res["granted"], false, "{res}");
    assert_eq!(res["limits"][1]["reserved"], "250");
    // Alice's daily limit is 50; the org-wide one counts bob's hold.
    let (_, res) = reserve(&db, &Reserve::new(org, alice, 40)).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(res["limits"][0]["reserved"], "250");
    assert_eq!(
        res["limits"][1]["reserved"], "0",
        "bob's hold is not alice's"
    );
    // A soft limit never denies.
    let mut cost = Reserve::new(org, bob, 5);
    cost.metric = "cost_usd";
    let (_, res) = reserve(&db, &cost).await;
    assert_eq!(res["granted"], true, "{res}");
    // No limit at all: granted, nothing to report.
    let mut free = Reserve::new(org, bob, 1_000_000);
    free.metric = "images";
    let (_, res) = reserve(&db, &free).await;
    assert_eq!(res, json!({"granted": true, "limits": []}));

    // Commit: the hold goes, the usage counts, once.
    let usage = event(org, Some(bob), json!({"tokens": 200}), day(), month());
    let commit =
        "select tenancy_commit_reservation(org_id => $1, reservation_id => $2, event => $3)";
    let out: Value = db
        .query_one(commit, &[&org, &hold, &usage])
        .await
        .unwrap()
        .get(0);
    assert_eq!(out, json!({"released_hold": true, "recorded": true}));
    let out: Value = db
        .query_one(commit, &[&org, &hold, &usage])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        out,
        json!({"released_hold": false, "recorded": false}),
        "a retried commit is harmless"
    );
    assert_eq!(
        counter(&db, org, bob, "tokens", "daily", day()).await,
        "200"
    );
    assert_eq!(
        counter(&db, org, pg::NIL, "tokens", "monthly", month()).await,
        "600"
    );
    let foreign = event(
        Uuid::new_v4(),
        Some(bob),
        json!({"tokens": 1}),
        day(),
        month(),
    );
    let res = db.query_one(commit, &[&org, &hold, &foreign]).await;
    assert_code(
        res,
        SqlState::INVALID_PARAMETER_VALUE,
        "committing another org's event",
    );

    // Release: whether it was there.
    let (hold, res) = reserve(&db, &Reserve::new(org, bob, 10)).await;
    assert_eq!(res["granted"], true);
    let release = "select tenancy_release_reservation(org_id => $1, reservation_id => $2)";
    let out: Value = db.query_one(release, &[&org, &hold]).await.unwrap().get(0);
    assert_eq!(out, json!({"released": true}));
    let out: Value = db.query_one(release, &[&org, &hold]).await.unwrap().get(0);
    assert_eq!(out, json!({"released": false}));

    // Snapshot: org-wide limits, bob's own, and the counters in scope.
    let snap = snapshot_on(&db, org, Some(bob), Some("tokens"))
        .await
        .unwrap();
    assert_eq!(snap["limits"].as_array().unwrap().len(), 2, "{snap}");
    assert_eq!(snap["limits"][0]["used"], "600");
    assert_eq!(snap["limits"][0]["reserved"], "40", "alice's hold");
    let counters = snap["counters"].as_array().unwrap();
    let scopes: Vec<(&str, &str)> = counters
        .iter()
        .map(|c| {
            (
                c["period"]["period"].as_str().unwrap(),
                c["scope"]["scope"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        [
            ("daily", "organization"),
            ("daily", "user"),
            ("monthly", "organization"),
            ("monthly", "user")
        ]
    );
    assert_eq!(counters[1]["used"], "200");
    assert_eq!(counters[0]["reserved"], "40");
    assert_eq!(counters[1]["reserved"], "0");
    // Without a user: org-wide only; an unknown org is empty.
    let snap = snapshot_on(&db, org, None, None).await.unwrap();
    assert_eq!(
        snap["limits"].as_array().unwrap().len(),
        2,
        "org-wide tokens and cost: {snap}"
    );
    let counters: Vec<(&str, &str, &str)> = snap["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["metric"].as_str().unwrap(),
                c["period"]["period"].as_str().unwrap(),
                c["scope"]["scope"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counters,
        [
            ("tokens", "daily", "organization"),
            ("tokens", "monthly", "organization")
        ],
        "the org-wide counters only: {snap}"
    );
    let snap = snapshot_on(&db, Uuid::new_v4(), None, None).await.unwrap();
    assert_eq!(snap, json!({"limits": [], "counters": []}));
    let res = reserve_on(&db, &Reserve::new(Uuid::new_v4(), bob, 1), Uuid::now_v7()).await;
    assert_code(res, SqlState::NO_DATA_FOUND, "reserving in an unknown org");
}

#[tokio::test]
async fn expired_holds_do_not_count() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    put_limit(&db, org, None, "tokens", "daily", 100, "hard").await;
    let mut r = Reserve::new(org, user, 100);
    r.expires_at = noon() + Duration::minutes(1);
    let (_, res) = reserve(&db, &r).await;
    assert_eq!(res["granted"], true);
    // Still held at noon + 30 s...
    let mut later = Reserve::new(org, user, 1);
    later.now = noon() + Duration::seconds(30);
    let (_, res) = reserve(&db, &later).await;
    assert_eq!(res["granted"], false);
    assert_eq!(res["limits"][0]["reserved"], "100");
    // ...expired at exactly expires_at, and dropped on the way.
    later.now = noon() + Duration::minutes(1);
    later.amount = 100;
    let (_, res) = reserve(&db, &later).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(res["limits"][0]["reserved"], "0");
    let holds: i64 = db
        .query_one(
            "select count(*) from usage_reservations where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holds, 1, "the expired hold was deleted");
}

#[tokio::test]
async fn periods_roll_over_by_key() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    put_limit(&db, org, None, "tokens", "daily", 100, "hard").await;
    put_limit(&db, org, None, "tokens", "monthly", 250, "hard").await;
    record(
        &db,
        &json!([event(
            org,
            Some(user),
            json!({"tokens": 100}),
            day(),
            month()
        )]),
    )
    .await;
    let (_, res) = reserve(&db, &Reserve::new(org, user, 1)).await;
    assert_eq!(res["granted"], false, "the day is spent");

    // The next day: a fresh daily counter, the same month.
    let next_day = date(2026, 3, 15);
    let mut r = Reserve::new(org, user, 100);
    r.daily = next_day;
    r.now = at("2026-03-15T09:00:00Z");
    r.expires_at = r.now + Duration::days(30);
    let (_, res) = reserve(&db, &r).await;
    assert_eq!(res["granted"], true, "{res}");
    let by_period = |res: &Value, period: &str| -> Value {
        res["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["period"]["period"] == period)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_period(&res, "daily")["used"], "0");
    assert_eq!(by_period(&res, "daily")["period"]["start"], "2026-03-15");
    assert_eq!(by_period(&res, "monthly")["used"], "100");
    // The hold counts in its own day and month only: the month is now full.
    let mut more = Reserve::new(org, user, 60);
    more.daily = date(2026, 3, 16);
    more.now = at("2026-03-16T09:00:00Z");
    let (_, res) = reserve(&db, &more).await;
    assert_eq!(
        res["granted"], false,
        "monthly: 100 used + 100 held + 60 > 250: {res}"
    );
    assert_eq!(
        by_period(&res, "daily")["reserved"],
        "0",
        "the 15th's hold is not the 16th's"
    );
    // A new month starts from zero.
    let mut april = Reserve::new(org, user, 100);
    april.daily = date(2026, 4, 1);
    april.monthly = date(2026, 4, 1);
    april.now = at("2026-04-01T00:00:00Z");
    let (_, res) = reserve(&db, &april).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(by_period(&res, "monthly")["used"], "0");
    assert_eq!(by_period(&res, "monthly")["reserved"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_connections_never_overshoot_a_hard_limit() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    // 200 used + 100 grants of 10 = the limit of 1200; 64 × 3 × 10 = 1920 asked.
    put_limit(&db, org, None, "tokens", "monthly", 1200, "hard").await;
    record(
        &db,
        &json!([event(
            org,
            Some(user),
            json!({"tokens": 200}),
            day(),
            month()
        )]),
    )
    .await;

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pg.authenticator().await;
            barrier.wait().await;
            let mut granted = 0u32;
            for _ in 0..3 {
                let r = Reserve::new(org, user, 10);
                let res = act(&mut conn, Actor::Service, async |tx| {
                    reserve_on(tx, &r, Uuid::now_v7()).await
                })
                .await
                .expect("reserve as service_role");
                if res["granted"] == true {
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(
        granted, 100,
        "exactly the grants of 10 that fit in 1000 of headroom (more is an overshoot)"
    );
    let held: String = db
        .query_one(
            "select sum(amount)::text from usage_reservations where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_is_claimed_once_however_many_race() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        tasks.push(tokio::spawn(async move {
            let conn = pg.superuser().await;
            let out: Value = conn
                .query_one(
                    "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'monthly', \
                     period_start => $2, threshold_percent => 90, fired_at => now(), user_id => $3)",
                    &[&org, &month(), &user],
                )
                .await
                .unwrap()
                .get(0);
            out["claimed"] == true
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += u32::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    // Another threshold, scope or period is another alert.
    let out: Value = db
        .query_one(
            "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'monthly', \
             period_start => $2, threshold_percent => 90, fired_at => now())",
            &[&org, &month()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        out["claimed"], true,
        "the org-wide scope is a different key"
    );
    let res = db
        .query_one(
            "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'monthly', \
             period_start => $2, threshold_percent => 90, fired_at => now())",
            &[&Uuid::new_v4(), &month()],
        )
        .await;
    assert_code(res, SqlState::NO_DATA_FOUND, "unknown organization");
}
