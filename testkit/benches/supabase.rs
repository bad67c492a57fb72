//! `SupabaseStore` against the live PostgREST stand-in (private cluster,
//! loopback): `check_limit` and `reserve` medians beside a plain PostgREST
//! `GET` by primary key, as ratios, with each call's round trips counted
//! through a proxy; and the record-batch RPC's events per second with
//! 1,000-event batches.
//!
//! `cargo bench --all-features --bench supabase`. Skips (with a line) when
//! PostgreSQL or the stand-in is missing.

use tenancy_testkit::postgrest as postgrest_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal_macros::dec;
use tenancy::supabase::SupabaseStore;
use tenancy::{
    NewLimit, NewOrganization, OrgId, PlatformOperator, ReserveOutcome, Store, Tenancy,
    TenantContext, UsageEvent, UserId,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const RUNS: usize = 300;
const WARMUP: usize = 30;
const BATCH: usize = 1_000;
const BATCHES: usize = 10;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A TCP proxy in front of `upstream` counting HTTP requests (one
/// `host:` header each).
async fn counting_proxy(upstream: String, requests: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let requests = Arc::clone(&requests);
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        requests.fetch_add(text.matches("\r\nhost: ").count(), Ordering::SeqCst);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("http://{addr}")
}

fn store_at(server: &postgrest_server::Server, url: &str) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(url)
        .service_role_key(server.service_key())
        .build()
        .expect("store")
}

async fn scene(store: SupabaseStore) -> (Tenancy, TenantContext) {
    let tenancy = Tenancy::builder().store(store).build().unwrap();
    let owner = UserId::new_v7();
    let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let org = tenancy
        .create_organization(owner, NewOrganization::new("Bench", &slug).unwrap())
        .await
        .unwrap();
    tenancy
        .operator(&PlatformOperator::new("bench"))
        .set_limit(
            org.id,
            NewLimit::from_limit_type("monthly_tokens", dec!(1000000000000)).unwrap(),
        )
        .await
        .unwrap();
    let ctx = tenancy.context(owner, org.id).await.unwrap();
    (tenancy, ctx)
}

async fn round_trips<F: std::future::Future>(counter: &AtomicUsize, f: F) -> usize {
    let before = counter.load(Ordering::SeqCst);
    f.await;
    counter.load(Ordering::SeqCst) - before
}

async fn run() {
    let Some(server) = tokio::task::spawn_blocking(postgrest_server::Server::shared)
        .await
        .unwrap()
    else {
        return;
    };
    let requests = Arc::new(AtomicUsize::new(0));
    let upstream = server.url().trim_start_matches("http://").to_owned();
    let proxied = counting_proxy(upstream, Arc::clone(&requests)).await;

    // Round trips, through the counting proxy.
    let (tenancy, ctx) = scene(store_at(server, &proxied)).await;
    let check = round_trips(&requests, async {
        tenancy.check_limit(&ctx, "tokens", dec!(1)).await.unwrap();
    })
    .await;
    let reserve = round_trips(&requests, async {
        let ReserveOutcome::Granted(_) = tenancy.reserve(&ctx, "tokens", dec!(1)).await.unwrap()
        else {
            panic!("granted")
        };
    })
    .await;
    println!("round trips: check_limit {check}, reserve {reserve}");
    assert_eq!((check, reserve), (1, 1), "each must be one round trip");

    // Timings, direct.
    let store = store_at(server, server.url());
    let (tenancy, ctx) = scene(store.clone()).await;
    let org: OrgId = ctx.org();
    let get = || {
        store.fetch::<Vec<serde_json::Value>>(
            store
                .from("organizations")
                .select("*")
                .eq("id", org.to_string()),
        )
    };
    let (mut t_get, mut t_check, mut t_reserve) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..WARMUP + RUNS {
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
        if i >= WARMUP {
            t_get.push(b - a);
            t_check.push(c - b);
            t_reserve.push(d - c);
        }
    }
    let (g, c, r) = (median(t_get), median(t_check), median(t_reserve));
    println!("GET organizations by primary key: median {g:?} ({RUNS} runs)");
    println!(
        "check_limit: median {c:?} = {:.2}x the GET",
        c.as_secs_f64() / g.as_secs_f64()
    );
    println!(
        "reserve:     median {r:?} = {:.2}x the GET",
        r.as_secs_f64() / g.as_secs_f64()
    );

    // Record batches of 1,000 events.
    let now = Utc::now();
    let user = ctx.user();
    let mut elapsed = Duration::ZERO;
    for _ in 0..BATCHES {
        let batch: Vec<_> = (0..BATCH)
            .map(|i| {
                UsageEvent::new(org)
                    .user(user)
                    .ai_call("openai", "gpt-4o", "bench")
                    .tokens(100 + i as u64, 0, 50)
                    .cost_usd(dec!(0.0012))
                    .into_record(now, chrono_tz::UTC)
                    .unwrap()
            })
            .collect();
        let started = Instant::now();
        let outcome = store.record_usage(&batch).await.unwrap();
        elapsed += started.elapsed();
        assert_eq!(outcome.inserted, BATCH);
    }
    let per_batch = elapsed / BATCHES as u32;
    println!(
        "record batch of {BATCH}: mean {per_batch:?} = {:.0} events/s ({BATCHES} batches)",
        (BATCH * BATCHES) as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then there is nothing to run quickly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
