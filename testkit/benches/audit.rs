//! What the audit triggers add to a membership change and a feature change.
//!
//! `PgStore` on a private PostgreSQL cluster (loopback), one run, three
//! ways for each change:
//!
//! - **without triggers**: the same database with the `audit_log` triggers
//!   of `user_organizations` and `org_features` disabled
//!   (`alter table … disable trigger`), no audit context: the change alone;
//! - **triggers**: the triggers on, no audit context: what a direct write
//!   (a worker, the SQL editor) pays;
//! - **triggers + actor**: the triggers on, inside an `AuditContext` naming
//!   an operator and a request id, as the facade calls the store: the
//!   context's `request.headers` set in the call's transaction (one more
//!   statement, and a transaction round the call).
//!
//! The membership change is `set_member_role` flipping a member between
//! member and viewer; the feature change is `update_feature` flipping one
//! feature on and off. Both are compare-and-set store calls of one round
//! trip each.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench audit
//! ```
//!
//! Starts its own private cluster; skips (with a line) without PostgreSQL.
//! `cargo test --benches` runs nothing here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use tenancy::model::audit::{AuditActor, AuditContext, RequestId};
use tenancy::postgres::PgStore;
use tenancy::store::{FeatureStore, MemberStore};
use tenancy::{
    FeatureChange, FeatureKey, Membership, NewOrganization, OrgId, Role, Tenancy, UserId,
};
use tenancy_testkit::pg::{self, DATABASE};
use tokio_postgres::Client;

/// The store, the organization and member the changes flip, and the
/// superuser connection that turns the triggers on and off.
struct Bench {
    store: PgStore,
    org: OrgId,
    member: UserId,
    feature: FeatureKey,
    admin: Client,
    /// Whether the member is a member now (else a viewer).
    is_member: AtomicBool,
    /// Whether the feature is on now.
    enabled: AtomicBool,
}

impl Bench {
    async fn setup() -> Option<Bench> {
        let cluster = pg::shared_with_fixtures().await?;
        let store = PgStore::builder()
            .url(cluster.url(DATABASE))
            .pool_size(2)
            .build()
            .expect("PgStore");
        let tenancy = Tenancy::builder().store(store.clone()).build().unwrap();
        let owner = UserId::new_v7();
        let org = tenancy
            .create_organization(
                owner,
                NewOrganization::new("Audit bench", &tenancy_testkit::unique_slug("audit"))
                    .unwrap(),
            )
            .await
            .expect("an organization")
            .id;
        let member = UserId::new_v7();
        store
            .add_member(&Membership {
                user_id: member,
                organization_id: org,
                role: Role::Member,
                created_at: Utc::now(),
            })
            .await
            .expect("a member");
        Some(Bench {
            store,
            org,
            member,
            feature: FeatureKey::parse("bench_flag").unwrap(),
            admin: cluster.superuser().await,
            is_member: AtomicBool::new(true),
            enabled: AtomicBool::new(false),
        })
    }

    async fn set_triggers(&self, on: bool) {
        let verb = if on { "enable" } else { "disable" };
        self.admin
            .batch_execute(&format!(
                "alter table public.user_organizations {verb} trigger audit_log; \
                 alter table public.org_features {verb} trigger audit_log;"
            ))
            .await
            .expect("switch the audit triggers");
    }

    /// Flips the member between member and viewer (the iterations run one
    /// after another, so the state is the last call's).
    async fn membership_change(&self) {
        let is_member = self.is_member.load(Ordering::Relaxed);
        let (from, to) = if is_member {
            (Role::Member, Role::Viewer)
        } else {
            (Role::Viewer, Role::Member)
        };
        self.store
            .set_member_role(self.org, self.member, from, to)
            .await
            .expect("a role change");
        self.is_member.store(!is_member, Ordering::Relaxed);
    }

    /// Turns the feature on or off, whichever it is not.
    async fn feature_change(&self) {
        let enable = !self.enabled.load(Ordering::Relaxed);
        let change = FeatureChange::enabled(enable);
        self.store
            .update_feature(self.org, &self.feature, &change, Utc::now())
            .await
            .expect("a feature change");
        self.enabled.store(enable, Ordering::Relaxed);
    }
}

fn context() -> AuditContext {
    AuditContext::new()
        .actor(AuditActor::operator("bench"))
        .request_id(RequestId::parse("req-bench").unwrap())
}

fn audit(c: &mut Criterion) {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(bench) = rt.block_on(Bench::setup()) else {
        return;
    };
    let bench = Arc::new(bench);
    let mut group = c.benchmark_group("audit");
    for (name, triggers, with_context) in [
        ("without triggers", false, false),
        ("triggers", true, false),
        ("triggers + actor", true, true),
    ] {
        rt.block_on(bench.set_triggers(triggers));
        let b0 = Arc::clone(&bench);
        group.bench_function(format!("membership change/{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let bench = Arc::clone(&b0);
                async move {
                    if with_context {
                        context().scope(bench.membership_change()).await;
                    } else {
                        bench.membership_change().await;
                    }
                }
            });
        });
        let b1 = Arc::clone(&bench);
        group.bench_function(format!("feature change/{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let bench = Arc::clone(&b1);
                async move {
                    if with_context {
                        context().scope(bench.feature_change()).await;
                    } else {
                        bench.feature_change().await;
                    }
                }
            });
        });
    }
    rt.block_on(bench.set_triggers(true));
    group.finish();
    rt.block_on(interleaved(&bench));
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The three ways again, interleaved in blocks of 50 changes for 20 rounds,
/// so that drift on a shared machine hits each alike: medians, and the
/// added time and ratio beside the change without triggers.
async fn interleaved(bench: &Bench) {
    const ROUNDS: usize = 20;
    const BLOCK: usize = 50;
    let mut samples: [[Vec<Duration>; 3]; 2] = Default::default();
    for _ in 0..ROUNDS {
        for (way, (triggers, with_context)) in [(false, false), (true, false), (true, true)]
            .into_iter()
            .enumerate()
        {
            bench.set_triggers(triggers).await;
            for _ in 0..BLOCK {
                for (change, samples) in samples.iter_mut().enumerate() {
                    let start = Instant::now();
                    match (change, with_context) {
                        (0, false) => bench.membership_change().await,
                        (0, true) => context().scope(bench.membership_change()).await,
                        (_, false) => bench.feature_change().await,
                        (_, true) => context().scope(bench.feature_change()).await,
                    }
                    samples[way].push(start.elapsed());
                }
            }
        }
    }
    bench.set_triggers(true).await;
    println!("\naudit, interleaved ({ROUNDS} rounds of {BLOCK} per way), medians:");
    for (name, ways) in ["membership change", "feature change"].iter().zip(samples) {
        let [off, on, actor] = ways.map(median);
        let added = |d: Duration| d.as_secs_f64() * 1e6 - off.as_secs_f64() * 1e6;
        println!(
            "  {name}: without triggers {off:?}; triggers {on:?} (+{:.0} µs, x{:.2}); \
             triggers + actor {actor:?} (+{:.0} µs, x{:.2})",
            added(on),
            on.as_secs_f64() / off.as_secs_f64(),
            added(actor),
            actor.as_secs_f64() / off.as_secs_f64(),
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = audit
}
criterion_main!(benches);
