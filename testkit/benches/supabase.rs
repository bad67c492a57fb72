//! `SupabaseStore` against the live PostgREST stand-in (private cluster,
//! loopback): `check_limit` and `reserve` medians beside a plain PostgREST
//! `GET` by primary key, as ratios, with each call's round trips counted
//! through the testkit's [`FaultProxy`] (passing through); and the
//! record-batch RPC's median per 1,000-event batch, in events per second.
//!
//! Everything runs against an organization with history
//! ([`OrgHistory::default`]: 10 members, 7 limits, 30 days of usage, 3 000
//! events, seeded through the store before anything is timed); the calls
//! are the owner's, to whom three token limits apply.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench supabase
//! ```
//!
//! Starts its own private PostgreSQL cluster and the stand-in in front of
//! it; skips (with a line) when either is missing. With criterion's
//! `--test` (`cargo bench -p tenancy-testkit --bench supabase -- --test`)
//! each measurement runs once, to check the bench end to end.

use tenancy::store::MeteringStore;
use tenancy_testkit::fault_proxy::FaultProxy;
use tenancy_testkit::postgrest as postgrest_server;
use tenancy_testkit::seed::OrgHistory;

use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal_macros::dec;
use tenancy::supabase::SupabaseStore;
use tenancy::{OrgId, ReserveOutcome, Tenancy, TenantContext, UsageEvent};

const RUNS: usize = 300;
const WARMUP: usize = 30;
const BATCH: usize = 1_000;
const BATCHES: usize = 10;

/// How many of each measurement to take: the full counts, or one of each
/// under criterion's `--test`.
#[derive(Debug, Clone, Copy)]
struct Counts {
    warmup: usize,
    runs: usize,
    batches: usize,
}

impl Counts {
    fn from_args() -> Counts {
        if std::env::args().any(|a| a == "--test") {
            Counts {
                warmup: 0,
                runs: 1,
                batches: 1,
            }
        } else {
            Counts {
                warmup: WARMUP,
                runs: RUNS,
                batches: BATCHES,
            }
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn store_at(server: &postgrest_server::Server, url: &str) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(url)
        .service_role_key(server.service_key())
        .build()
        .expect("store")
}

/// The seeded organization on `store`, and the owner's context.
async fn scene(store: SupabaseStore) -> (Tenancy, TenantContext) {
    let tenancy = Tenancy::builder().store(store).build().unwrap();
    let slug = tenancy_testkit::unique_slug("bench");
    let seeded = OrgHistory::default()
        .seed(&tenancy, &slug, Utc::now())
        .await
        .unwrap();
    (tenancy, seeded.owner_ctx)
}

/// The requests `f` sent through `proxy`.
async fn round_trips<F: std::future::Future>(proxy: &FaultProxy, f: F) -> u64 {
    let before = proxy.stats().requests;
    f.await;
    proxy.stats().requests - before
}

async fn run(counts: Counts) {
    let Some(server) = tokio::task::spawn_blocking(postgrest_server::Server::shared)
        .await
        .unwrap()
    else {
        return;
    };
    let store = store_at(server, server.url());
    let (tenancy, ctx) = scene(store.clone()).await;
    let org: OrgId = ctx.org();

    // Round trips: the same organization through a second `Tenancy` whose
    // store goes through the proxy.
    let proxy = FaultProxy::start(server.url()).await;
    let proxied = Tenancy::builder()
        .store(store_at(server, &proxy.url()))
        .build()
        .unwrap();
    let proxied_ctx = proxied.context(ctx.user(), org).await.unwrap();
    let mut decision = None;
    let check = round_trips(&proxy, async {
        decision = Some(
            proxied
                .check_limit(&proxied_ctx, "tokens", dec!(1))
                .await
                .unwrap(),
        );
    })
    .await;
    let decision = decision.unwrap();
    assert!(
        decision.allowed && decision.used > dec!(0),
        "the seeded history counts and leaves room: {decision:?}"
    );
    let mut hold = None;
    let reserve = round_trips(&proxy, async {
        let ReserveOutcome::Granted(granted) = proxied
            .reserve(&proxied_ctx, "tokens", dec!(1))
            .await
            .unwrap()
        else {
            panic!("granted")
        };
        hold = Some(granted);
    })
    .await;
    proxied.release(&hold.unwrap()).await.unwrap();
    println!("round trips: check_limit {check}, reserve {reserve}");
    assert_eq!((check, reserve), (1, 1), "each must be one round trip");

    // Timings, direct, interleaved so that drift hits all three alike.
    let get = || {
        store.fetch::<Vec<serde_json::Value>>(
            store
                .from("organizations")
                .select("*")
                .eq("id", org.to_string()),
        )
    };
    let (mut t_get, mut t_check, mut t_reserve) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..counts.warmup + counts.runs {
        let a = Instant::now();
        get().await.unwrap();
        let b = Instant::now();
        tenancy.check_limit(&ctx, "tokens", dec!(1)).await.unwrap();
        let c = Instant::now();
        let outcome = tenancy.reserve(&ctx, "tokens", dec!(1)).await.unwrap();
        let d = Instant::now();
        if let ReserveOutcome::Granted(hold) = outcome {
            tenancy.release(&hold).await.unwrap();
        }
        if i >= counts.warmup {
            t_get.push(b - a);
            t_check.push(c - b);
            t_reserve.push(d - c);
        }
    }
    let (g, c, r) = (median(t_get), median(t_check), median(t_reserve));
    let runs = counts.runs;
    println!("GET organizations by primary key: median {g:?} ({runs} runs)");
    println!(
        "check_limit: median {c:?} = {:.2}x the GET",
        c.as_secs_f64() / g.as_secs_f64()
    );
    println!(
        "reserve:     median {r:?} = {:.2}x the GET",
        r.as_secs_f64() / g.as_secs_f64()
    );

    // Record batches of 1,000 events, in the organization's time zone.
    let user = ctx.user();
    let tz = ctx.organization().timezone;
    let mut samples = Vec::with_capacity(counts.batches);
    for _ in 0..counts.batches {
        let now = Utc::now();
        let batch: Vec<_> = (0..BATCH)
            .map(|i| {
                UsageEvent::new(org)
                    .user(user)
                    .ai_call("openai", "gpt-4o", "bench")
                    .tokens(100 + i as u64, 0, 50)
                    .cost_usd(dec!(0.0012))
                    .into_record(now, tz)
                    .unwrap()
            })
            .collect();
        let started = Instant::now();
        let outcome = store.record_usage(&batch).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(outcome.inserted, BATCH);
    }
    let batches = samples.len();
    let per_batch = median(samples);
    println!(
        "record batch of {BATCH}: median {per_batch:?} = {:.0} events/s ({batches} batches)",
        BATCH as f64 / per_batch.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then there is nothing to run quickly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counts = Counts::from_args();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(counts));
}
