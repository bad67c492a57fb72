//! Usage history on PostgreSQL (migration 14), on a private cluster:
//!
//! - `report_month`: a month's report for one organization with 1,000,000
//!   events (20 users, 2 providers, 8 models, 3 operations, tokens and
//!   cost), read from the rollups by `tenancy_usage_report` (monthly, by
//!   model; daily, by provider and model; monthly, by user), beside the same
//!   `SUM … GROUP BY` over `usage_events`. Target: ≤ 20 ms; the ratio is
//!   printed.
//! - `ingest`: `tenancy_record_usage` with batches of 1,000 events, with
//!   the rollup trigger beside the same batches with it disabled (the
//!   migration's trigger `usage_events_roll_up`, in this scratch database
//!   only), interleaved so both see the same table sizes.
//! - `partitions`: one-event records and `tenancy_reserve` on a database
//!   whose event log has 12 monthly partitions (each with 20,000 events)
//!   beside one with a single partition.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench reports
//! ```
//!
//! Prints plain medians (and ratios). Without PostgreSQL it prints
//! `SKIPPED` and exits.

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use serde_json::{Value, json};
use tenancy_testkit::pg;
use tokio::runtime::Runtime;
use tokio_postgres::Client;
use uuid::Uuid;

const EVENTS: usize = 1_000_000;
const BATCH: usize = 1_000;
const USERS: usize = 20;
const MODELS: [(&str, &str); 8] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o3"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4"),
    ("anthropic", "claude-haiku-4"),
    ("anthropic", "claude-opus-4"),
    ("anthropic", "claude-3-5-haiku"),
];
const OPERATIONS: [&str; 3] = ["chat", "ad_copy", "summary"];

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One event as the library sends it: tokens by class and a cost priced by
/// a table, counting `tokens` and `cost_usd`.
fn event(org: Uuid, user: Uuid, at: DateTime<Utc>, rng: &mut Lcg) -> Value {
    let (provider, model) = MODELS[rng.next(MODELS.len() as u64) as usize];
    let input = 200 + rng.next(4000);
    let output = 50 + rng.next(800);
    let cost = format!("0.{:06}", 100 + rng.next(90_000));
    json!({
        "id": Uuid::now_v7(),
        "organization_id": org,
        "user_id": user,
        "provider": provider,
        "model": model,
        "operation": OPERATIONS[rng.next(3) as usize],
        "input_tokens": input,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": output,
        "reasoning_tokens": 0,
        "audio_input_tokens": 0,
        "audio_output_tokens": 0,
        "image_input_tokens": 0,
        "image_output_tokens": 0,
        "quantities": {},
        "cost_usd": cost,
        "cost_source": "price_table",
        "price_provider": provider,
        "price_model": model,
        "price_effective_from": "2026-01-01",
        "price_table": "2026-11",
        "occurred_at": at,
        "metadata": null,
        "amounts": {"tokens": (input + output).to_string(), "cost_usd": cost},
        "daily_start": at.date_naive(),
        "monthly_start": at.date_naive().with_day(1).unwrap(),
    })
}

use chrono::Datelike;

async fn database(cluster: &pg::Cluster, name: &str) -> Client {
    let db = cluster.create_database(name).await;
    pg::apply_all(&db).await.expect("migrations");
    db
}

async fn org(db: &Client, tz: &str) -> (Uuid, Vec<Uuid>) {
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(pg::create_user(db).await);
    }
    let org = Uuid::new_v4();
    db.execute(
        "select tenancy_create_organization(name => 'Bench', slug => $1, id => $2, \
         owner_user_id => $3, timezone => $4)",
        &[&format!("bench-{}", org.simple()), &org, &users[0], &tz],
    )
    .await
    .unwrap();
    for u in &users[1..] {
        db.execute(
            "insert into user_organizations (organization_id, user_id, role) values ($1, $2, 'member')",
            &[&org, u],
        )
        .await
        .unwrap();
    }
    (org, users)
}

/// `n` events spread over `[from, from + span)`, in batches, through the
/// record RPC; the median batch time.
async fn fill(
    db: &Client,
    org: Uuid,
    users: &[Uuid],
    from: DateTime<Utc>,
    span: Span,
    n: usize,
    seed: u64,
) -> Duration {
    let mut rng = Lcg(seed);
    let mut samples = Vec::new();
    let secs = span.num_seconds() as u64;
    for _ in 0..n.div_ceil(BATCH) {
        let batch: Vec<Value> = (0..BATCH.min(n))
            .map(|_| {
                let at = from + Span::seconds(rng.next(secs) as i64);
                let user = users[rng.next(users.len() as u64) as usize];
                event(org, user, at, &mut rng)
            })
            .collect();
        let start = Instant::now();
        db.query_one("select tenancy_record_usage($1)", &[&json!(batch)])
            .await
            .unwrap();
        samples.push(start.elapsed());
    }
    median(samples)
}

async fn time_json(db: &Client, sql: &str, org: Uuid, runs: usize) -> (Duration, Value) {
    let mut samples = Vec::new();
    let mut last = Value::Null;
    for _ in 0..runs {
        let start = Instant::now();
        last = db.query_one(sql, &[&org]).await.unwrap().get(0);
        samples.push(start.elapsed());
    }
    (median(samples), last)
}

async fn time_rows(db: &Client, sql: &str, org: Uuid, runs: usize) -> (Duration, usize) {
    let mut samples = Vec::new();
    let mut n = 0;
    for _ in 0..runs {
        let start = Instant::now();
        n = db.query(sql, &[&org]).await.unwrap().len();
        samples.push(start.elapsed());
    }
    (median(samples), n)
}

async fn report_month(cluster: &pg::Cluster) {
    let db = database(cluster, "bench_reports").await;
    let (org, users) = org(&db, "Europe/Berlin").await;
    let november = Utc.with_ymd_and_hms(2026, 10, 31, 23, 0, 0).unwrap(); // Nov 1, 00:00 Berlin
    let start = Instant::now();
    let batch = fill(&db, org, &users, november, Span::days(30), EVENTS, 7).await;
    println!(
        "seeded {EVENTS} events in {:.1} s (median batch of {BATCH}: {:.1} ms)",
        start.elapsed().as_secs_f64(),
        ms(batch)
    );
    db.batch_execute("vacuum analyze").await.unwrap();
    let rollup_rows: i64 = db
        .query_one(
            "select count(*) from usage_rollups where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    println!("rollup rows for the month: {rollup_rows}");

    let range = "since => '2026-11-01T00:00:00+01:00', until => '2026-12-01T00:00:00+01:00'";
    let reports = [
        (
            "month by model",
            format!(
                "select tenancy_usage_report(org_id => $1, {range}, granularity => 'month', group_by => '{{model}}')"
            ),
            "select model, sum((amounts ->> 'tokens')::numeric), sum((amounts ->> 'cost_usd')::numeric) \
             from usage_events where organization_id = $1 \
             and occurred_at >= '2026-11-01T00:00:00+01:00' and occurred_at < '2026-12-01T00:00:00+01:00' \
             group by model",
        ),
        (
            "day by provider, model",
            format!(
                "select tenancy_usage_report(org_id => $1, {range}, granularity => 'day', group_by => '{{provider,model}}')"
            ),
            "select date_trunc('day', occurred_at at time zone 'Europe/Berlin'), provider, model, \
             sum((amounts ->> 'tokens')::numeric), sum((amounts ->> 'cost_usd')::numeric) \
             from usage_events where organization_id = $1 \
             and occurred_at >= '2026-11-01T00:00:00+01:00' and occurred_at < '2026-12-01T00:00:00+01:00' \
             group by 1, 2, 3",
        ),
        (
            "month by user",
            format!(
                "select tenancy_usage_report(org_id => $1, {range}, granularity => 'month', group_by => '{{user}}')"
            ),
            "select user_id, sum((amounts ->> 'tokens')::numeric), sum((amounts ->> 'cost_usd')::numeric) \
             from usage_events where organization_id = $1 \
             and occurred_at >= '2026-11-01T00:00:00+01:00' and occurred_at < '2026-12-01T00:00:00+01:00' \
             group by user_id",
        ),
    ];
    for (name, rpc, scan) in reports {
        let (fast, rows) = time_json(&db, &rpc, org, 30).await;
        let (slow, scanned) = time_rows(&db, scan, org, 5).await;
        assert_eq!(rows.as_array().unwrap().len(), scanned, "{name}: same rows");
        println!(
            "report {name}: rollups {:.2} ms, SUM over usage_events {:.1} ms, ratio {:.0}x ({scanned} rows)",
            ms(fast),
            ms(slow),
            slow.as_secs_f64() / fast.as_secs_f64()
        );
    }
    let (costs, _) = time_json(
        &db,
        &format!("select tenancy_usage_costs(org_id => $1, {range}, granularity => 'month')"),
        org,
        30,
    )
    .await;
    println!("token rows for repricing (month): {:.2} ms", ms(costs));
}

async fn ingest(cluster: &pg::Cluster) {
    let db = database(cluster, "bench_ingest").await;
    let (org, users) = org(&db, "UTC").await;
    let from = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    // Warm up both paths.
    fill(&db, org, &users, from, Span::days(5), 20 * BATCH, 1).await;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..30u64 {
        db.batch_execute("alter table usage_events enable trigger usage_events_roll_up")
            .await
            .unwrap();
        with.push(fill(&db, org, &users, from, Span::days(5), BATCH, 100 + round).await);
        db.batch_execute("alter table usage_events disable trigger usage_events_roll_up")
            .await
            .unwrap();
        without.push(fill(&db, org, &users, from, Span::days(5), BATCH, 200 + round).await);
    }
    db.batch_execute("alter table usage_events enable trigger usage_events_roll_up")
        .await
        .unwrap();
    let (with, without) = (median(with), median(without));
    println!(
        "ingest, batches of {BATCH}: with rollups {:.1} ms ({:.0} events/s), without {:.1} ms ({:.0} events/s): +{:.0}%",
        ms(with),
        BATCH as f64 / with.as_secs_f64(),
        ms(without),
        BATCH as f64 / without.as_secs_f64(),
        (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
    );
}

/// Medians of a one-event record and of a reserve, on `db`.
async fn record_and_reserve(db: &Client, org: Uuid, users: &[Uuid]) -> (Duration, Duration) {
    db.execute(
        "insert into usage_limits (organization_id, limit_type, limit_value) values ($1, 'monthly_tokens', 1000000000000)",
        &[&org],
    )
    .await
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
    let mut rng = Lcg(5);
    let (mut records, mut reserves) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let user = users[i % users.len()];
        let e = event(org, user, now, &mut rng);
        let start = Instant::now();
        db.query_one("select tenancy_record_usage($1)", &[&json!([e])])
            .await
            .unwrap();
        records.push(start.elapsed());
        let start = Instant::now();
        db.query_one(
            "select tenancy_reserve(org_id => $1, user_id => $2, metric => 'tokens', amount => 100, \
             daily_start => '2026-12-06', monthly_start => '2026-12-01', now => $3, \
             expires_at => $4, reservation_id => $5, purge_before => $6)",
            &[&org, &user, &now, &(now + Span::minutes(10)), &Uuid::new_v4(), &(now - Span::days(7))],
        )
        .await
        .unwrap();
        reserves.push(start.elapsed());
    }
    (
        median(records[50..].to_vec()),
        median(reserves[50..].to_vec()),
    )
}

async fn partitions(cluster: &pg::Cluster) {
    let one = database(cluster, "bench_parts_one").await;
    // Only December's partition (the migration made the months around the
    // clock's; empty).
    one.batch_execute(
        "do $$ declare p record; begin \
           perform tenancy.create_usage_partition('2026-12-15T00:00:00Z'); \
           for p in select * from tenancy.usage_partitions() where name <> 'usage_events_2026_12' loop \
             execute format('drop table tenancy.%I', p.name); \
           end loop; end $$",
    )
    .await
    .unwrap();
    let (org1, users1) = org(&one, "UTC").await;
    fill(
        &one,
        org1,
        &users1,
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        Span::days(5),
        20 * BATCH,
        3,
    )
    .await;

    let twelve = database(cluster, "bench_parts_twelve").await;
    twelve
        .batch_execute(
            "select tenancy_create_usage_partitions('2026-01-01T00:00:00Z', 12); \
             do $$ declare p record; begin \
               for p in select * from tenancy.usage_partitions() where from_at >= '2027-01-01' loop \
                 execute format('drop table tenancy.%I', p.name); \
               end loop; end $$",
        )
        .await
        .unwrap();
    let (org12, users12) = org(&twelve, "UTC").await;
    for month in 1..=12u32 {
        let from = Utc.with_ymd_and_hms(2026, month, 1, 0, 0, 0).unwrap();
        fill(
            &twelve,
            org12,
            &users12,
            from,
            Span::days(27),
            20 * BATCH,
            u64::from(month),
        )
        .await;
    }
    for db in [&one, &twelve] {
        db.batch_execute("vacuum analyze").await.unwrap();
    }
    let count = async |db: &Client| -> i64 {
        db.query_one("select count(*) from tenancy.usage_partitions()", &[])
            .await
            .unwrap()
            .get(0)
    };
    let (n1, n12) = (count(&one).await, count(&twelve).await);
    let (rec1, res1) = record_and_reserve(&one, org1, &users1).await;
    let (rec12, res12) = record_and_reserve(&twelve, org12, &users12).await;
    println!(
        "partitions {n1} vs {n12}: record (1 event) {:.3} ms vs {:.3} ms ({:+.0}%), reserve {:.3} ms vs {:.3} ms ({:+.0}%)",
        ms(rec1),
        ms(rec12),
        (rec12.as_secs_f64() / rec1.as_secs_f64() - 1.0) * 100.0,
        ms(res1),
        ms(res12),
        (res12.as_secs_f64() / res1.as_secs_f64() - 1.0) * 100.0
    );
}

fn main() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
        let wants = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
        if wants("partitions") {
            partitions(&cluster).await;
        }
        if wants("ingest") {
            ingest(&cluster).await;
        }
        if wants("report_month") {
            report_month(&cluster).await;
        }
    });
    drop(rt);
    drop(cluster);
}
