//! `PgStore` over a direct connection, beside `SupabaseStore` through the
//! PostgREST stand-in, on one private PostgreSQL cluster (loopback, same
//! host):
//!
//! 1. **Round trips.** `check_limit` and `reserve` medians on an
//!    organization with a month of history (10 members, 7 limits, 10 500
//!    events over 30 days, seeded before anything is timed), each beside a
//!    primary-key `select` of the organization on the same pool, as a
//!    ratio; the same two calls through `SupabaseStore` beside a PostgREST
//!    `GET` by primary key. Interleaved, so drift hits every figure alike.
//! 2. **Ingest.** One `UsageRecorder` on `PgStore` (default config, and
//!    batches of 2 000 with 8 in flight), beside one on `SupabaseStore` and
//!    a naive writer on `PgStore` that sends one `record_usage` per event;
//!    events per second, from the first `record` to the end of `flush`,
//!    with the CPU each event costs split between this process and
//!    PostgreSQL (read from `/proc`).
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench postgres
//! ```
//!
//! Starts its own private cluster and the stand-in; skips (with a line)
//! when either is missing. With criterion's `--test` every measurement
//! runs once, to check the bench end to end.

use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal_macros::dec;
use tenancy::limits::AlertThresholds;
use tenancy::postgres::PgStore;
use tenancy::postgres::tokio_postgres::types::Type;
use tenancy::supabase::SupabaseStore;
use tenancy::{OrgId, ReserveOutcome, Tenancy, TenantContext, UsageEvent, UserId};
use tenancy_testkit::cpu;
use tenancy_testkit::pg::{Cluster, DATABASE};
use tenancy_testkit::postgrest::Server;
use tenancy_testkit::seed::OrgHistory;

/// How many of each measurement to take: the full counts, or one of each
/// under criterion's `--test`.
#[derive(Debug, Clone, Copy)]
struct Counts {
    warmup: usize,
    runs: usize,
    recorder_events: usize,
    supabase_events: usize,
    naive_events: usize,
    repeats: usize,
}

impl Counts {
    fn from_args() -> Counts {
        if std::env::args().any(|a| a == "--test") {
            Counts {
                warmup: 0,
                runs: 1,
                recorder_events: 2_000,
                supabase_events: 1_000,
                naive_events: 20,
                repeats: 1,
            }
        } else {
            Counts {
                warmup: 50,
                runs: 500,
                recorder_events: 200_000,
                supabase_events: 20_000,
                naive_events: 2_000,
                repeats: 3,
            }
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// A tenancy on `store` with alerts off, as a worker that only records.
fn quiet(store: impl tenancy::store::Store) -> Tenancy {
    Tenancy::builder()
        .store(store)
        .alert_thresholds(AlertThresholds::new([]).expect("no thresholds"))
        .build()
        .expect("tenancy")
}

fn supabase(server: &Server) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(server.url())
        .service_role_key(server.service_key())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("store")
}

fn event(org: OrgId, user: UserId, i: usize) -> UsageEvent {
    UsageEvent::new(org)
        .user(user)
        .ai_call("openai", "gpt-4o", "ingest")
        .tokens(100 + (i % 1_000) as u64, 0, 50)
        .cost_usd(dec!(0.0012))
}

async fn round_trips(counts: Counts, cluster: &Cluster, server: &Server) {
    let pg = PgStore::builder()
        .url(cluster.url(DATABASE))
        .pool_size(4)
        .build()
        .expect("PgStore");
    let tenancy = Tenancy::builder().store(pg.clone()).build().unwrap();
    let history = OrgHistory {
        events_per_member_day: 35,
        ..OrgHistory::default()
    };
    let seeded = history
        .seed(
            &tenancy,
            &tenancy_testkit::unique_slug("pgbench"),
            Utc::now(),
        )
        .await
        .expect("seed");
    assert!(seeded.events >= 10_000, "a month of history");
    let ctx: TenantContext = seeded.owner_ctx;
    let org = uuid::Uuid::from(ctx.org());
    let rest = Tenancy::builder().store(supabase(server)).build().unwrap();
    let rest_ctx = rest.context(ctx.user(), ctx.org()).await.unwrap();
    let rest_store = supabase(server);

    let decision = tenancy.check_limit(&ctx, "tokens", dec!(1)).await.unwrap();
    assert!(
        decision.allowed && decision.used > dec!(0),
        "the history counts and leaves room: {decision:?}"
    );

    let pk = "select * from public.organizations where id = $1";
    // First without any hold taken or released in the organization: the
    // snapshot's sums of live holds then find no dead ones to step over.
    let (mut quiet_pk, mut quiet_check) = (Vec::new(), Vec::new());
    for i in 0..counts.warmup + counts.runs {
        let a = Instant::now();
        let client = pg.pool().get().await.unwrap();
        client.query_typed(pk, &[(&org, Type::UUID)]).await.unwrap();
        drop(client);
        let b = Instant::now();
        tenancy.check_limit(&ctx, "tokens", dec!(1)).await.unwrap();
        let c = Instant::now();
        if i >= counts.warmup {
            quiet_pk.push(b - a);
            quiet_check.push(c - b);
        }
    }
    let (quiet_pk, quiet_check) = (median(quiet_pk), median(quiet_check));

    let mut t = [const { Vec::new() }; 6];
    for i in 0..counts.warmup + counts.runs {
        let a = Instant::now();
        let client = pg.pool().get().await.unwrap();
        let rows = client.query_typed(pk, &[(&org, Type::UUID)]).await.unwrap();
        drop(client);
        assert_eq!(rows.len(), 1);
        let b = Instant::now();
        tenancy.check_limit(&ctx, "tokens", dec!(1)).await.unwrap();
        let c = Instant::now();
        let held = tenancy.reserve(&ctx, "tokens", dec!(1)).await.unwrap();
        let d = Instant::now();
        let rows: Vec<serde_json::Value> = rest_store
            .fetch(
                rest_store
                    .from("organizations")
                    .select("*")
                    .eq("id", org.to_string()),
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let e = Instant::now();
        rest.check_limit(&rest_ctx, "tokens", dec!(1))
            .await
            .unwrap();
        let f = Instant::now();
        let rest_held = rest.reserve(&rest_ctx, "tokens", dec!(1)).await.unwrap();
        let g = Instant::now();
        for (facade, outcome) in [(&tenancy, held), (&rest, rest_held)] {
            let ReserveOutcome::Granted(hold) = outcome else {
                panic!("the seeded limits leave room");
            };
            facade.release(&hold).await.unwrap();
        }
        if i >= counts.warmup {
            for (samples, took) in t.iter_mut().zip([b - a, c - b, d - c, e - d, f - e, g - f]) {
                samples.push(took);
            }
        }
    }
    let [pk, check, reserve, get, rest_check, rest_reserve] = t.map(median);
    println!();
    println!(
        "== round trips: an org with {} events over 30 days, median of {} interleaved runs ==",
        seeded.events, counts.runs
    );
    println!(
        "PgStore  before any hold: select {quiet_pk:?}, check_limit {quiet_check:?} = {:.2}x",
        ratio(quiet_check, quiet_pk)
    );
    println!("then interleaved with reserve and release:");
    println!("PgStore  primary-key select (same pool): {pk:?}");
    println!(
        "PgStore  check_limit: {check:?} = {:.2}x the select",
        ratio(check, pk)
    );
    println!(
        "PgStore  reserve:     {reserve:?} = {:.2}x the select",
        ratio(reserve, pk)
    );
    println!("Supabase GET by primary key:             {get:?}");
    println!(
        "Supabase check_limit: {rest_check:?} = {:.2}x the GET, {:.2}x PgStore's",
        ratio(rest_check, get),
        ratio(rest_check, check)
    );
    println!(
        "Supabase reserve:     {rest_reserve:?} = {:.2}x the GET, {:.2}x PgStore's",
        ratio(rest_reserve, get),
        ratio(rest_reserve, reserve)
    );
}

/// CPU seconds used so far by this process and by PostgreSQL.
fn cpu() -> (f64, f64) {
    (cpu::process_seconds(None), cpu::postgres_seconds())
}

/// `events` through one recorder, record to flush; every event stored once.
async fn run_recorder(
    tenancy: &Tenancy,
    events: usize,
    batch_size: usize,
    in_flight: usize,
) -> Duration {
    let owner = UserId::new_v7();
    let org = tenancy
        .create_organization(
            owner,
            tenancy::NewOrganization::new("Ingest", &tenancy_testkit::unique_slug("ingest"))
                .unwrap(),
        )
        .await
        .unwrap()
        .id;
    let recorder = tenancy
        .service()
        .recorder()
        .batch_size(batch_size)
        .max_in_flight(in_flight)
        .max_buffered_events(events)
        .start()
        .expect("recorder");
    let started = Instant::now();
    for i in 0..events {
        recorder.record(event(org, owner, i)).expect("record");
        if i % 5_000 == 4_999 {
            tokio::task::yield_now().await;
        }
    }
    recorder.flush().await.expect("flush");
    let elapsed = started.elapsed();
    let report = recorder.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.stats.sent, events as u64, "every event stored once");
    elapsed
}

/// One `record_usage` call per event, one after the other.
async fn run_naive(tenancy: &Tenancy, events: usize) -> Duration {
    let owner = UserId::new_v7();
    let org = tenancy
        .create_organization(
            owner,
            tenancy::NewOrganization::new("Naive", &tenancy_testkit::unique_slug("naive")).unwrap(),
        )
        .await
        .unwrap()
        .id;
    let started = Instant::now();
    for i in 0..events {
        let outcome = tenancy
            .service()
            .record_usage(event(org, owner, i))
            .await
            .unwrap();
        assert_eq!(outcome.inserted, 1);
    }
    started.elapsed()
}

/// The median rate of `repeats` runs, and the CPU per event over all of
/// them (this process, PostgreSQL), in µs.
async fn measure<F, Fut>(repeats: usize, events: usize, mut run: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let before = cpu();
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        times.push(run().await);
    }
    let after = cpu();
    let total = (repeats * events) as f64;
    let rate = events as f64 / median(times).as_secs_f64();
    (
        rate,
        (after.0 - before.0) * 1e6 / total,
        (after.1 - before.1) * 1e6 / total,
    )
}

async fn ingest(counts: Counts, cluster: &Cluster, server: &Server) {
    let pg = PgStore::builder()
        .url(cluster.url(DATABASE))
        .pool_size(8)
        .build()
        .expect("PgStore");
    let on_pg = quiet(pg);
    let on_rest = quiet(supabase(server));
    let n = counts.recorder_events;
    println!();
    println!(
        "== ingest: one recorder, record to flush, median of {} ==",
        counts.repeats
    );
    let rows: [(&str, usize, (f64, f64, f64)); 4] = [
        (
            "PgStore,  UsageRecorder default (batch 500, 4 in flight)",
            n,
            measure(counts.repeats, n, || run_recorder(&on_pg, n, 500, 4)).await,
        ),
        (
            "PgStore,  UsageRecorder batch 2 000, 8 in flight",
            n,
            measure(counts.repeats, n, || run_recorder(&on_pg, n, 2_000, 8)).await,
        ),
        (
            "Supabase, UsageRecorder default",
            counts.supabase_events,
            measure(counts.repeats, counts.supabase_events, || {
                run_recorder(&on_rest, counts.supabase_events, 500, 4)
            })
            .await,
        ),
        (
            "PgStore,  naive: one record_usage per event",
            counts.naive_events,
            measure(counts.repeats, counts.naive_events, || {
                run_naive(&on_pg, counts.naive_events)
            })
            .await,
        ),
    ];
    let naive = rows[3].2.0;
    for (name, events, (rate, client, postgres)) in rows {
        println!(
            "{name}: {rate:.0} events/s ({:.1}x naive; {events} events); CPU per event: \
             client {client:.1} µs, PostgreSQL {postgres:.1} µs (Supabase rows: the stand-in's \
             CPU is not in either)",
            rate / naive
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then there is nothing to run quickly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counts = Counts::from_args();
    let Some(server) = Server::shared() else {
        return;
    };
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(round_trips(counts, cluster, server));
    rt.block_on(ingest(counts, cluster, server));
}
