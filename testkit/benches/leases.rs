//! Budget leases: the hot organization, and a local decision beside
//! governor's GCRA.
//!
//! 1. **Hot organization.** 64 tasks over 4 `Tenancy` instances (16 each,
//!    each instance with its own store client, recorder and
//!    `LeasedMeter`) spend one organization's daily token limit 1 at a
//!    time (reserve + commit) until denied, through `PgStore` and through
//!    `SupabaseStore` (the PostgREST stand-in), on one private cluster.
//!    Beside it, today's per-call path (`Tenancy::reserve` + `commit`)
//!    with the same tasks and instances. Pairs per second, from the first
//!    reserve to the last denial; after the meters shut down (recorders
//!    flushed, leases returned), the store's counter is read back: it must
//!    equal the pairs committed and not pass the limit (zero overshoot).
//! 2. **Local decision.** `LeasedMeter::reserve_local` on a live lease
//!    (over `MemoryStore`, `PgStore` and `SupabaseStore`: the decision
//!    never touches the store), beside `governor`'s keyed GCRA check
//!    (`RateLimiter::keyed`, `check_key`) in the same run: mean (timed in
//!    batches of 1 000) and p50/p99 (each call timed alone, so these
//!    include one `Instant` pair, about 20-40 ns).
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench leases
//! ```
//!
//! Starts its own private cluster and the stand-in; the SQL rows are
//! skipped (with a line) when either is missing. With criterion's `--test`
//! every measurement is small, to check the bench end to end.

use std::hash::BuildHasherDefault;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use rust_decimal::Decimal;
use tenancy::limits::AlertThresholds;
use tenancy::limits::lease::LeaseConfig;
use tenancy::postgres::PgStore;
use tenancy::store::DynStore;
use tenancy::supabase::SupabaseStore;
use tenancy::{
    MemoryStore, NewLimit, NewOrganization, OrgId, PlatformOperator, ReserveOutcome, Tenancy,
    TenantContext, UsageRecorder, UserId,
};
use tenancy_testkit::pg::{Cluster, DATABASE};
use tenancy_testkit::postgrest::Server;

const INSTANCES: usize = 4;
const TASKS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Counts {
    /// The daily limit the leased run spends.
    leased_limit: i64,
    /// The daily limit the per-call run spends.
    per_call_limit: i64,
    /// Local decisions timed.
    decisions: usize,
}

impl Counts {
    fn from_args() -> Counts {
        if std::env::args().any(|a| a == "--test") {
            Counts {
                leased_limit: 2_000,
                per_call_limit: 200,
                decisions: 10_000,
            }
        } else {
            Counts {
                leased_limit: 60_000,
                per_call_limit: 3_000,
                decisions: 2_000_000,
            }
        }
    }
}

/// A tenancy on `store` with alerts off.
fn quiet(store: Arc<DynStore>) -> Tenancy {
    Tenancy::builder()
        .shared_store(store)
        .alert_thresholds(AlertThresholds::new([]).expect("no thresholds"))
        .build()
        .expect("tenancy")
}

/// A new organization with a daily token limit of `limit`, on `tenancy`.
/// On a cluster the owner is a user of `auth.users` first.
async fn hot_org(tenancy: &Tenancy, limit: i64, cluster: Option<&Cluster>) -> (OrgId, UserId) {
    let owner = match cluster {
        Some(cluster) => {
            UserId::from(tenancy_testkit::pg::create_user(&cluster.superuser().await).await)
        }
        None => UserId::new_v7(),
    };
    let org = tenancy
        .create_organization(
            owner,
            NewOrganization::new("Hot", &tenancy_testkit::unique_slug("hot")).unwrap(),
        )
        .await
        .expect("org");
    tenancy
        .operator(&PlatformOperator::new("bench"))
        .set_limit(
            org.id,
            NewLimit::from_limit_type("daily_tokens", Decimal::from(limit)).unwrap(),
        )
        .await
        .expect("limit");
    (org.id, owner)
}

/// The store's org-wide daily (used, reserved) of tokens.
async fn counted(tenancy: &Tenancy, ctx: &TenantContext) -> (Decimal, Decimal) {
    let d = tenancy
        .check_limit(ctx, "tokens", Decimal::ZERO)
        .await
        .expect("check");
    (d.used, d.reserved)
}

struct Run {
    pairs: u64,
    elapsed: Duration,
    used: Decimal,
    reserved: Decimal,
    limit: i64,
    local: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.pairs as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {:.0} pairs/s ({} pairs in {:.2} s, {} local); store counter {} of {} \
             (reserved {}), overshoot {}",
            self.rate(),
            self.pairs,
            self.elapsed.as_secs_f64(),
            self.local,
            self.used,
            self.limit,
            self.reserved,
            (self.used - Decimal::from(self.limit)).max(Decimal::ZERO)
        )
    }
}

/// 64 tasks over 4 instances spend the limit through leased meters.
async fn hot_leased(stores: &[Arc<DynStore>], limit: i64, cluster: Option<&Cluster>) -> Run {
    let instances: Vec<Tenancy> = stores.iter().cloned().map(quiet).collect();
    let (org, owner) = hot_org(&instances[0], limit, cluster).await;
    let mut meters = Vec::new();
    let mut contexts = Vec::new();
    for tenancy in &instances {
        let recorder = UsageRecorder::builder(tenancy.clone())
            .flush_interval(Duration::from_millis(200))
            .batch_size(1_000)
            .start()
            .expect("recorder");
        meters.push(
            tenancy
                .leased(recorder, LeaseConfig::default())
                .expect("meter"),
        );
        contexts.push(tenancy.context(owner, org).await.expect("ctx"));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let meter = meters[t % INSTANCES].clone();
        let ctx = contexts[t % INSTANCES].clone();
        tasks.push(tokio::spawn(async move {
            let (mut pairs, mut local) = (0u64, 0u64);
            loop {
                let outcome = meter
                    .reserve(&ctx, "tokens", Decimal::ONE)
                    .await
                    .expect("reserve");
                let Some(held) = outcome.into_granted() else {
                    break;
                };
                local += u64::from(held.is_local());
                meter.commit(held, Decimal::ONE).await.expect("commit");
                pairs += 1;
            }
            (pairs, local)
        }));
    }
    let (mut pairs, mut local) = (0, 0);
    for task in tasks {
        let (p, l) = task.await.expect("task");
        pairs += p;
        local += l;
    }
    let elapsed = start.elapsed();
    for meter in &meters {
        let report = meter.shutdown().await.expect("shutdown");
        assert!(report.flushed, "every event recorded");
    }
    let (used, reserved) = counted(&instances[0], &contexts[0]).await;
    Run {
        pairs,
        elapsed,
        used,
        reserved,
        limit,
        local,
    }
}

/// The same through today's per-call path.
async fn hot_per_call(stores: &[Arc<DynStore>], limit: i64, cluster: Option<&Cluster>) -> Run {
    let instances: Vec<Tenancy> = stores.iter().cloned().map(quiet).collect();
    let (org, owner) = hot_org(&instances[0], limit, cluster).await;
    let mut contexts = Vec::new();
    for tenancy in &instances {
        contexts.push(tenancy.context(owner, org).await.expect("ctx"));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let tenancy = instances[t % INSTANCES].clone();
        let ctx = contexts[t % INSTANCES].clone();
        tasks.push(tokio::spawn(async move {
            let mut pairs = 0u64;
            while let ReserveOutcome::Granted(r) = tenancy
                .reserve(&ctx, "tokens", Decimal::ONE)
                .await
                .expect("reserve")
            {
                tenancy.commit(&r, Decimal::ONE).await.expect("commit");
                pairs += 1;
            }
            pairs
        }));
    }
    let mut pairs = 0;
    for task in tasks {
        pairs += task.await.expect("task");
    }
    let elapsed = start.elapsed();
    let (used, reserved) = counted(&instances[0], &contexts[0]).await;
    Run {
        pairs,
        elapsed,
        used,
        reserved,
        limit,
        local: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Timing {
    mean_ns: f64,
    p50: Duration,
    p99: Duration,
}

/// Mean over batches of 1 000 calls; p50 and p99 of each call timed alone.
fn time(n: usize, mut call: impl FnMut()) -> Timing {
    for _ in 0..n / 10 {
        call();
    }
    let batches = (n / 1_000).max(1);
    let start = Instant::now();
    for _ in 0..batches * 1_000 {
        call();
    }
    let mean_ns = start.elapsed().as_nanos() as f64 / (batches * 1_000) as f64;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    Timing {
        mean_ns,
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
    }
}

/// A meter on `store` holding a live lease on a huge budget for one user,
/// its decisions timed beside governor's.
async fn local_decisions(
    name: &str,
    store: Arc<DynStore>,
    counts: Counts,
    cluster: Option<&Cluster>,
) {
    let tenancy = quiet(store);
    let (org, owner) = hot_org(&tenancy, 1_000_000_000_000, cluster).await;
    let ctx = tenancy.context(owner, org).await.expect("ctx");
    let recorder = UsageRecorder::builder(tenancy.clone())
        .start()
        .expect("recorder");
    let meter = tenancy
        .leased(
            recorder,
            LeaseConfig::default().with_ttl(
                chrono::TimeDelta::minutes(10),
                chrono::TimeDelta::seconds(10),
            ),
        )
        .expect("meter");
    let held = meter
        .reserve(&ctx, "tokens", Decimal::ONE)
        .await
        .expect("reserve")
        .into_granted()
        .expect("granted");
    assert!(held.is_local());
    drop(held);
    let one = Decimal::ONE;
    let decision = time(counts.decisions, || {
        let held = meter.reserve_local(&ctx, "tokens", one).expect("ok");
        std::mem::forget(std::hint::black_box(held));
    });
    let with_release = time(counts.decisions, || {
        let held = meter.reserve_local(&ctx, "tokens", one).expect("ok");
        drop(std::hint::black_box(held));
    });
    // governor's keyed GCRA: one key per (org, user), as the lease is.
    let quota = Quota::per_second(NonZeroU32::new(u32::MAX).expect("nonzero"));
    let limiter = RateLimiter::hashmap_with_hasher(
        quota,
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default(),
    );
    let key = (ctx.org(), ctx.user());
    let _ = limiter.check_key(&key);
    let gcra = time(counts.decisions, || {
        let _ = std::hint::black_box(limiter.check_key(std::hint::black_box(&key)));
    });
    let dashmap = RateLimiter::keyed(quota);
    let _ = dashmap.check_key(&key);
    let gcra_dash = time(counts.decisions, || {
        let _ = std::hint::black_box(dashmap.check_key(std::hint::black_box(&key)));
    });
    println!(
        "{name}: local decision (reserve_local) mean {:.1} ns, p50 {} ns, p99 {} ns; \
         with its release {:.1} ns (p99 {} ns)",
        decision.mean_ns,
        decision.p50.as_nanos(),
        decision.p99.as_nanos(),
        with_release.mean_ns,
        with_release.p99.as_nanos(),
    );
    println!(
        "{name}: governor keyed check (RateLimiter::keyed, DashMap) mean {:.1} ns, p99 {} ns; \
         (hashmap store) mean {:.1} ns, p99 {} ns; lease decision / keyed GCRA = {:.2}x",
        gcra_dash.mean_ns,
        gcra_dash.p99.as_nanos(),
        gcra.mean_ns,
        gcra.p99.as_nanos(),
        decision.mean_ns / gcra_dash.mean_ns,
    );
    meter.shutdown().await.expect("shutdown");
}

fn pg(cluster: &Cluster) -> Arc<DynStore> {
    Arc::new(
        PgStore::builder()
            .url(cluster.url(DATABASE))
            .pool_size(8)
            .build()
            .expect("PgStore"),
    )
}

fn supabase(server: &Server) -> Arc<DynStore> {
    Arc::new(
        SupabaseStore::builder()
            .rest_url(server.url())
            .service_role_key(server.service_key())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("store"),
    )
}

async fn hot(
    name: &str,
    make: impl Fn() -> Arc<DynStore>,
    counts: Counts,
    cluster: Option<&Cluster>,
) {
    let stores: Vec<Arc<DynStore>> = (0..INSTANCES).map(|_| make()).collect();
    let per_call = hot_per_call(&stores, counts.per_call_limit, cluster).await;
    println!("{}", per_call.line(&format!("{name} per call")));
    let leased = hot_leased(&stores, counts.leased_limit, cluster).await;
    println!("{}", leased.line(&format!("{name} leased")));
    println!(
        "{name}: leased / per call = {:.1}x",
        leased.rate() / per_call.rate()
    );
    for run in [&per_call, &leased] {
        assert_eq!(run.used, Decimal::from(run.pairs), "each pair counted once");
        assert!(run.used <= Decimal::from(run.limit), "overshoot");
        assert_eq!(run.reserved, Decimal::ZERO, "nothing left held");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counts = Counts::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(local_decisions(
        "MemoryStore",
        Arc::new(MemoryStore::new()),
        counts,
        None,
    ));
    rt.block_on(hot(
        "MemoryStore",
        {
            let shared: Arc<DynStore> = Arc::new(MemoryStore::new());
            move || Arc::clone(&shared)
        },
        counts,
        None,
    ));
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    rt.block_on(local_decisions(
        "PgStore",
        pg(cluster),
        counts,
        Some(cluster),
    ));
    rt.block_on(hot("PgStore", || pg(cluster), counts, Some(cluster)));
    let Some(server) = Server::shared() else {
        return;
    };
    rt.block_on(local_decisions(
        "SupabaseStore",
        supabase(server),
        counts,
        Some(cluster),
    ));
    rt.block_on(hot(
        "SupabaseStore",
        || supabase(server),
        counts,
        Some(cluster),
    ));
}
