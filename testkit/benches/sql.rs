//! Benchmarks of the shipped SQL on a private PostgreSQL cluster (no
//! PostgREST: the queries go straight to PostgreSQL).
//!
//! - `brands_select`: one user's brands among 100,000 rows in 100
//!   organizations, read under RLS as that user (`authenticated` + JWT
//!   claims) against the same read as `service_role` with an explicit
//!   `where organization_id = $1`. The target is RLS ≤ 2× the explicit
//!   filter.
//! - `record_usage`: the record RPC with batches of 1,000 events, each an
//!   AI call by a member carrying the amounts the library computed for it
//!   (tokens and cost), so each event adds to 8 counters (2 metrics × daily
//!   and monthly × the org and the user); against the baseline
//!   `baseline_plain_insert`: the RPC's own `insert … select from
//!   jsonb_to_recordset` of the same batch into a copy of `usage_events`
//!   (same columns, constraints and indexes, no triggers, no RLS), without
//!   the organization lock and the counters.
//! - `usage_snapshot`: the snapshot RPC (what `check_limit` and the usage
//!   summary read) for one metric and for every metric, on an organization
//!   with a month of history (`seed_history`), beside a primary-key read of
//!   the organization; plain medians only.
//! - entry points: `tenancy_check_limit` (as the service role and as a user
//!   JWT) and `tenancy_usage_summary`, which compute the periods and the
//!   decision in SQL, beside the snapshot the library sends for the same
//!   answer; plain medians only.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench sql
//! ```
//!
//! Besides criterion's report it prints plain medians and the ratios
//! (RLS/explicit, RPC/plain insert). Without PostgreSQL it prints `SKIPPED`
//! and exits.

use tenancy_testkit::pg;

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tenancy::{OrgId, UsageEvent};
use tokio::runtime::Runtime;
use tokio_postgres::Client;
use uuid::Uuid;

const ORGS: usize = 100;
const ROWS_PER_ORG: i64 = 1_000;
const BATCH: usize = 1_000;

const RLS_ONLY: &str = "select id, name, organization_id from public.brands";
const EXPLICIT_ORG: &str = "select * from public.organizations where id = $1";
const RLS_FILTERED: &str =
    "select id, name, organization_id from public.brands where organization_id = $1";
const EXPLICIT: &str =
    "select id, name, organization_id from public.brands where organization_id = $1";

const RECORD: &str = "select tenancy_record_usage($1)";
/// The record RPC's insert, alone, into a copy of `usage_events`.
const PLAIN_INSERT: &str = "insert into public.bench_plain_events (
       id, organization_id, user_id, provider, model, operation, input_tokens,
       cached_input_tokens, output_tokens, quantities, cost_usd, occurred_at, metadata,
       amounts, daily_start, monthly_start)
     select x.id, x.organization_id, x.user_id, x.provider, x.model, x.operation,
       x.input_tokens, x.cached_input_tokens, x.output_tokens, x.quantities, x.cost_usd,
       x.occurred_at, x.metadata, x.amounts, x.daily_start, x.monthly_start
     from jsonb_to_recordset($1) as x(
       id uuid, organization_id uuid, user_id uuid, provider text, model text, operation text,
       input_tokens bigint, cached_input_tokens bigint, output_tokens bigint, quantities jsonb,
       cost_usd numeric, occurred_at timestamptz, metadata jsonb, amounts jsonb,
       daily_start date, monthly_start date)
     on conflict (organization_id, id) do nothing";

/// Sets up brands (100 orgs × 1,000 rows); returns (a user, their org, all orgs).
async fn seed(db: &Client) -> (Uuid, Uuid, Vec<Uuid>) {
    db.batch_execute(
        "create table if not exists public.brands (
           id bigserial primary key,
           name text not null,
           description text,
           created_at timestamptz not null default now()
         )",
    )
    .await
    .unwrap();
    let mut orgs = Vec::with_capacity(ORGS);
    let mut owners = Vec::with_capacity(ORGS);
    for i in 0..ORGS {
        let owner = pg::create_user(db).await;
        let org: Uuid = db
            .query_one(
                "select id from tenancy_create_organization(name => $1, slug => $2, owner_user_id => $3)",
                &[&format!("Org {i}"), &format!("bench-org-{i}"), &owner],
            )
            .await
            .unwrap()
            .get(0);
        orgs.push(org);
        owners.push(owner);
    }
    // Rows exist before adoption in the real migration path; here they are
    // inserted with their org, after adopting the empty table.
    db.query_one("select tenancy.adopt_table('public.brands')", &[])
        .await
        .unwrap();
    db.execute(
        "insert into public.brands (name, description, organization_id)
         select 'brand ' || o.n || '-' || g, 'a brand of org ' || o.n, o.id
         from unnest($1::uuid[]) with ordinality as o(id, n)
         cross join generate_series(1, $2::bigint) g",
        &[&orgs, &ROWS_PER_ORG],
    )
    .await
    .unwrap();
    db.batch_execute("analyze public.brands; analyze public.user_organizations;")
        .await
        .unwrap();
    // The plain-insert baseline's table: `usage_events`' columns,
    // constraints and indexes (its primary key and occurred-at index).
    db.batch_execute(
        "create table public.bench_plain_events (like public.usage_events \
           including defaults including constraints including indexes);
         grant insert on public.bench_plain_events to service_role;",
    )
    .await
    .unwrap();
    let pick = ORGS / 2;
    (owners[pick], orgs[pick], orgs)
}

/// A connection acting for the whole session as `actor` (role and claims
/// set at session level), so iterations time the query alone.
async fn session(cluster: &pg::Cluster, actor: pg::Actor) -> Client {
    let client = cluster.authenticator().await;
    client
        .batch_execute(&format!("set role {}", actor.role()))
        .await
        .unwrap();
    client
        .execute(
            "select set_config('request.jwt.claims', $1, false)",
            &[&actor.claims().to_string()],
        )
        .await
        .unwrap();
    client
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn time_query(
    client: &Client,
    sql: &str,
    org: Option<Uuid>,
    runs: usize,
    expect: usize,
) -> Duration {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let rows = match org {
            Some(org) => client.query(sql, &[&org]).await.unwrap(),
            None => client.query(sql, &[]).await.unwrap(),
        };
        samples.push(start.elapsed());
        assert_eq!(rows.len(), expect);
    }
    median(samples)
}

/// What the library counts for the benchmark's AI call
/// (`UsageEvent::amounts`): `{"tokens": "1950", "cost_usd": "0.0123"}`.
fn amounts() -> Value {
    let call = UsageEvent::new(OrgId::new_v7())
        .ai_call("openai", "gpt-4o", "ad_copy")
        .tokens(1200, 300, 450)
        .cost_usd(dec!(0.0123));
    let amounts: serde_json::Map<String, Value> = call
        .amounts()
        .expect("valid amounts")
        .into_iter()
        .map(|(metric, amount)| (metric.to_string(), json!(amount)))
        .collect();
    Value::Object(amounts)
}

fn batch(orgs: &[Uuid], users: &[Uuid]) -> Value {
    let amounts = amounts();
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({
                "id": Uuid::now_v7(),
                "organization_id": orgs[i % 10],
                "user_id": users[i % users.len()],
                "provider": "openai",
                "model": "gpt-4o",
                "operation": "ad_copy",
                "input_tokens": 1200,
                "cached_input_tokens": 300,
                "output_tokens": 450,
                "quantities": {},
                "cost_usd": "0.0123",
                "occurred_at": "2026-03-14T12:00:00Z",
                "metadata": {"request": i},
                "amounts": amounts,
                "daily_start": "2026-03-14",
                "monthly_start": "2026-03-01",
            })
        })
        .collect();
    Value::Array(events)
}

/// Plain medians of the three reads and their ratios, and the plan under
/// RLS, printed for BENCHMARKS.md.
async fn print_select_medians(as_user: &Client, as_service: &Client, org: Uuid) {
    let rows = ROWS_PER_ORG as usize;
    for _ in 0..20 {
        time_query(as_user, RLS_ONLY, None, 1, rows).await;
        time_query(as_service, EXPLICIT, Some(org), 1, rows).await;
    }
    let rls = time_query(as_user, RLS_ONLY, None, 200, rows).await;
    let rls_filtered = time_query(as_user, RLS_FILTERED, Some(org), 200, rows).await;
    let explicit = time_query(as_service, EXPLICIT, Some(org), 200, rows).await;
    println!(
        "brands_select (1 user, {} rows of {} in {ORGS} orgs): median RLS {:?}, RLS + filter {:?}, \
         service_role + explicit filter {:?}; ratio RLS/explicit {:.2}x, (RLS + filter)/explicit {:.2}x",
        rows,
        rows * ORGS,
        rls,
        rls_filtered,
        explicit,
        rls.as_secs_f64() / explicit.as_secs_f64(),
        rls_filtered.as_secs_f64() / explicit.as_secs_f64(),
    );
    let plan: Vec<String> = as_user
        .query(&format!("explain {RLS_ONLY}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("plan under RLS:\n  {}", plan.join("\n  "));
}

/// Gives `org` a month of history: nine more members, counters for 4
/// metrics × (org-wide + 10 members) × 30 days and 2 months, 7 limits of
/// different metrics, periods and modes (one the owner's own), and 5 live
/// holds. Returns the owner.
async fn seed_history(db: &Client, org: Uuid) -> Uuid {
    let owner: Uuid = db
        .query_one(
            "select owner_user_id from organizations where id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    for _ in 0..9 {
        let member = pg::create_user(db).await;
        db.execute(
            "insert into user_organizations (organization_id, user_id, role) values ($1, $2, 'member')",
            &[&org, &member],
        )
        .await
        .unwrap();
    }
    db.execute(
        "with scopes as (
           select '00000000-0000-0000-0000-000000000000'::uuid as scope
           union all select user_id from user_organizations where organization_id = $1),
         periods as (
           select 'daily' as period, (current_date - d) as start from generate_series(0, 29) d
           union all select 'monthly', date_trunc('month', current_date)::date
           union all select 'monthly', (date_trunc('month', current_date) - interval '1 month')::date)
         insert into usage_counters (organization_id, scope_user_id, metric, period, period_start, used)
         select $1, s.scope, m, p.period, p.start, 100
         from scopes s, periods p, unnest(array['tokens', 'cost_usd', 'images', 'api_calls']) m",
        &[&org],
    )
    .await
    .unwrap();
    db.execute(
        "select count(*) from (
           select tenancy_put_limit(limit_id => gen_random_uuid(), org_id => $1, metric => x.metric,
             period => x.period, limit_value => 1000000000, mode => x.mode,
             user_id => case when x.own then $2::uuid end)
           from (values ('tokens', 'monthly', 'hard', false), ('tokens', 'daily', 'hard', false),
                        ('tokens', 'monthly', 'hard', true), ('cost_usd', 'monthly', 'hard', false),
                        ('cost_usd', 'daily', 'soft', false), ('images', 'monthly', 'hard', false),
                        ('api_calls', 'daily', 'hard', false)) x (metric, period, mode, own)) t",
        &[&org, &owner],
    )
    .await
    .unwrap();
    db.execute(
        "insert into usage_reservations
           (organization_id, id, user_id, metric, amount, daily_start, monthly_start, expires_at)
         select $1, gen_random_uuid(), $2, 'tokens', 10, current_date,
           date_trunc('month', current_date)::date, now() + interval '1 hour'
         from generate_series(1, 5)",
        &[&org, &owner],
    )
    .await
    .unwrap();
    db.batch_execute("analyze usage_counters; analyze usage_limits; analyze usage_reservations;")
        .await
        .unwrap();
    owner
}

const SNAPSHOT: &str = "select tenancy_usage_snapshot(org_id => $1, \
     daily_start => current_date, monthly_start => date_trunc('month', current_date)::date, \
     now => now(), user_id => $2, metric => $3)";

/// Plain medians of the usage snapshot (what `check_limit` and the usage
/// summary read) on an organization with a month of history, for one
/// metric and for every metric, interleaved with a primary-key read of the
/// organization on the same connection; prepared statements, so each is
/// one round trip.
async fn print_snapshot_medians(as_service: &Client, org: Uuid, owner: Uuid) {
    let snapshot = as_service.prepare(SNAPSHOT).await.unwrap();
    let by_key = as_service.prepare(EXPLICIT_ORG).await.unwrap();
    let (mut t_key, mut t_one, mut t_every) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..550 {
        let a = Instant::now();
        as_service.query_one(&by_key, &[&org]).await.unwrap();
        let b = Instant::now();
        let one = as_service
            .query_one(&snapshot, &[&org, &owner, &Some("tokens")])
            .await
            .unwrap();
        let c = Instant::now();
        let every = as_service
            .query_one(&snapshot, &[&org, &owner, &None::<&str>])
            .await
            .unwrap();
        let d = Instant::now();
        if i == 0 {
            let len = |row: &tokio_postgres::Row, key: &str| {
                row.get::<_, Value>(0)[key].as_array().map(Vec::len)
            };
            assert_eq!(
                (len(&one, "limits"), len(&every, "limits")),
                (Some(3), Some(7))
            );
            assert_eq!(
                (len(&one, "counters"), len(&every, "counters")),
                (Some(4), Some(16))
            );
            let reserved = one.get::<_, Value>(0)["limits"][0]["reserved"].clone();
            assert_eq!(reserved, "50", "the five live holds count");
        }
        if i >= 50 {
            t_key.push(b - a);
            t_one.push(c - b);
            t_every.push(d - c);
        }
    }
    let (key, one, every) = (median(t_key), median(t_one), median(t_every));
    println!(
        "usage_snapshot (org with a month of history: 11 scopes x 4 metrics x 32 periods of counters, \
         7 limits, 5 holds; 500 interleaved runs): median one metric {one:?} = {:.2}x, every metric \
         {every:?} = {:.2}x the primary-key read of the organization ({key:?})",
        one.as_secs_f64() / key.as_secs_f64(),
        every.as_secs_f64() / key.as_secs_f64(),
    );
}

const CHECK_ENTRY: &str =
    "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 1, user_id => $2)";
const CHECK_AS_USER: &str =
    "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 1)";
const SUMMARY_ENTRY: &str = "select tenancy_usage_summary(org_id => $1, user_id => $2)";

/// Plain medians of the SQL entry points for callers that are not the
/// library, beside the snapshot the library sends for the same answer (it
/// computes the periods, and decides, in Rust): `tenancy_check_limit` as
/// the service role and as a user JWT (its checked, security definer
/// path), and `tenancy_usage_summary`, on the organization with a month of
/// history; interleaved, one connection each.
async fn print_entry_point_medians(as_service: &Client, as_owner: &Client, org: Uuid, owner: Uuid) {
    let snapshot = as_service.prepare(SNAPSHOT).await.unwrap();
    let check = as_service.prepare(CHECK_ENTRY).await.unwrap();
    let summary = as_service.prepare(SUMMARY_ENTRY).await.unwrap();
    let check_as_user = as_owner.prepare(CHECK_AS_USER).await.unwrap();
    let mut t = [const { Vec::new() }; 5];
    for i in 0..550 {
        let marks = [
            Instant::now(),
            {
                as_service
                    .query_one(&snapshot, &[&org, &owner, &Some("tokens")])
                    .await
                    .unwrap();
                Instant::now()
            },
            {
                as_service.query_one(&check, &[&org, &owner]).await.unwrap();
                Instant::now()
            },
            {
                as_owner.query_one(&check_as_user, &[&org]).await.unwrap();
                Instant::now()
            },
            {
                as_service
                    .query_one(&snapshot, &[&org, &owner, &None::<&str>])
                    .await
                    .unwrap();
                Instant::now()
            },
            {
                as_service
                    .query_one(&summary, &[&org, &owner])
                    .await
                    .unwrap();
                Instant::now()
            },
        ];
        if i >= 50 {
            for (k, samples) in t.iter_mut().enumerate() {
                samples.push(marks[k + 1] - marks[k]);
            }
        }
    }
    let [snap_one, check, check_user, snap_every, summary] = t.map(median);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "entry points (the same org; 500 interleaved runs): tenancy_check_limit as the service role \
         {check:?} = {:.2}x, as a user JWT {check_user:?} = {:.2}x the snapshot of one metric the \
         library sends ({snap_one:?}); tenancy_usage_summary {summary:?} = {:.2}x the snapshot of \
         every metric ({snap_every:?})",
        ratio(check, snap_one),
        ratio(check_user, snap_one),
        ratio(summary, snap_every),
    );
}

/// Users for the record batches: the owners of the first 10 orgs.
async fn record_users(admin: &Client, orgs: &[Uuid]) -> Vec<Uuid> {
    admin
        .query(
            "select user_id from user_organizations where organization_id = any($1) order by user_id",
            &[&orgs[..10].to_vec()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The medians of 10 record batches and of 10 plain inserts of the same
/// batches, interleaved, and their ratio, printed; checks they counted.
async fn print_record_median(admin: &Client, as_service: &Client, orgs: &[Uuid], users: &[Uuid]) {
    let (mut plain, mut record) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let events = batch(orgs, users);
        let start = Instant::now();
        let inserted = as_service.execute(PLAIN_INSERT, &[&events]).await.unwrap();
        plain.push(start.elapsed());
        assert_eq!(inserted, BATCH as u64);

        let events = batch(orgs, users);
        let start = Instant::now();
        let out: Value = as_service
            .query_one(RECORD, &[&events])
            .await
            .unwrap()
            .get(0);
        record.push(start.elapsed());
        assert_eq!(out["inserted"], BATCH);
    }
    // The batches counted their amounts: 10 × 1,000 × 1,950 tokens.
    let counted: String = admin
        .query_one(
            "select coalesce(sum(used), 0)::text from usage_counters \
             where scope_user_id = $1 and metric = 'tokens' and period = 'daily' \
             and organization_id = any($2)",
            &[&pg::NIL, &orgs[..10].to_vec()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, (10 * BATCH * 1950).to_string());
    // Each event added to 8 counters: tokens and cost_usd, daily and
    // monthly, the org's and its user's. Event i is org i % 10's and user
    // i % 10's, so 10 orgs with one user each: 10 × (4 + 4) counters.
    assert_eq!(users.len(), 10);
    let counters: i64 = admin
        .query_one(
            "select count(*) from usage_counters where organization_id = any($1)",
            &[&orgs[..10].to_vec()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counters, 10 * 8);
    let (p, m) = (median(plain), median(record));
    println!(
        "record_usage: median {:?} per batch of {BATCH} events = {:.0} events/s; \
         baseline plain insert of the same batch: median {:?}; ratio {:.2}x",
        m,
        BATCH as f64 / m.as_secs_f64(),
        p,
        m.as_secs_f64() / p.as_secs_f64(),
    );
}

/// What the criterion groups run against.
struct Subjects {
    org: Uuid,
    orgs: Vec<Uuid>,
    users: Vec<Uuid>,
    as_user: Client,
    as_service: Client,
}

fn run_criterion(rt: &Runtime, s: &Subjects) {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("brands_select");
        group.throughput(Throughput::Elements(ROWS_PER_ORG as u64));
        group.bench_function("rls_as_user", |b| {
            b.to_async(rt)
                .iter(|| async { s.as_user.query(RLS_ONLY, &[]).await.unwrap().len() })
        });
        group.bench_function("rls_as_user_with_filter", |b| {
            b.to_async(rt).iter(|| async {
                s.as_user
                    .query(RLS_FILTERED, &[&s.org])
                    .await
                    .unwrap()
                    .len()
            })
        });
        group.bench_function("service_role_explicit_filter", |b| {
            b.to_async(rt)
                .iter(|| async { s.as_service.query(EXPLICIT, &[&s.org]).await.unwrap().len() })
        });
        group.finish();
    }
    {
        let mut group = c.benchmark_group("record_usage");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("baseline_plain_insert_1000", |b| {
            b.to_async(rt).iter_batched(
                || batch(&s.orgs, &s.users),
                |events| {
                    let client = &s.as_service;
                    async move { client.execute(PLAIN_INSERT, &[&events]).await.unwrap() }
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("batch_of_1000", |b| {
            b.to_async(rt).iter_batched(
                || batch(&s.orgs, &s.users),
                |events| {
                    let client = &s.as_service;
                    async move { client.query_one(RECORD, &[&events]).await.unwrap() }
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
    c.final_summary();
}

fn main() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let subjects = rt.block_on(async {
        let admin = cluster.superuser().await;
        let (user, org, orgs) = seed(&admin).await;
        let as_user = session(&cluster, pg::Actor::User(user)).await;
        let as_service = session(&cluster, pg::Actor::Service).await;
        print_select_medians(&as_user, &as_service, org).await;
        let owner = seed_history(&admin, org).await;
        print_snapshot_medians(&as_service, org, owner).await;
        let as_owner = session(&cluster, pg::Actor::User(owner)).await;
        print_entry_point_medians(&as_service, &as_owner, org, owner).await;
        let users = record_users(&admin, &orgs).await;
        print_record_median(&admin, &as_service, &orgs, &users).await;
        Subjects {
            org,
            orgs,
            users,
            as_user,
            as_service,
        }
    });
    run_criterion(&rt, &subjects);
    drop(subjects);
    drop(rt);
    drop(cluster);
}
