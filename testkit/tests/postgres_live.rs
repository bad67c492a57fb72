//! `PgStore` live behind PgBouncer in transaction mode, as services reach
//! Supabase through its pooler, and the recorder on `PgStore` under faults.
//!
//! - The whole store-contract suite through PgBouncer (shared cluster,
//!   shared PgBouncer).
//! - User mode through PgBouncer: two users' calls interleaved on a pool of
//!   two connections, multiplexed over PgBouncer's server connections; each
//!   sees only its own organization, and no claims outlive their
//!   transaction.
//! - Faults under steady recording: a `UsageRecorder` on a `Tenancy` over a
//!   service-mode `PgStore` records [`EVENTS`] events at a steady rate
//!   while PostgreSQL restarts, while every backend of the database is
//!   terminated mid-transaction several times, or while PgBouncer
//!   restarts. Afterwards the database (read directly as the superuser)
//!   holds exactly the events recorded, each once, and the counters equal
//!   their token sum. Tests that restart PostgreSQL or terminate its
//!   backends run on a private cluster, so the other tests are undisturbed.
//!
//! Without PostgreSQL or PgBouncer the tests print a SKIPPED line and
//! pass, unless `TENANCY_REQUIRE_LIVE` is set.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::json;
use tenancy::postgres::PgStore;
use tenancy::recorder::RecorderStats;
use tenancy::store::DynStore;
use tenancy::store::{FeatureStore, MemberStore, OrgStore};
use tenancy::{
    ErrorKind, FeatureChange, FeatureKey, NewOrganization, OrgId, Organization, Tenancy,
    UsageEvent, UsageRecorder, UserId,
};
use tenancy_testkit::pg::{self, Cluster};
use tenancy_testkit::pgbouncer::{self, PgBouncer};
use tenancy_testkit::unique_slug;
use tenancy_testkit::{log, spool_files};
use tokio_postgres::Client;
use uuid::Uuid;

/// Entitlement changes through `LISTEN` and polling.
#[path = "postgres_live/propagation.rs"]
mod pg_propagation;
/// Two instances on one database (shared with the `supabase` tests).
#[path = "common/propagation.rs"]
mod two_instances;

// ---- the shared components ---------------------------------------------------

/// The shared cluster with the test fixtures (users appear in `auth.users`
/// on first use, as the contract suite makes up user ids), and the shared
/// PgBouncer in front of it.
async fn shared() -> Option<(&'static Cluster, &'static PgBouncer)> {
    let cluster = tenancy_testkit::pg::shared_with_fixtures().await?;
    let bouncer = tokio::task::spawn_blocking(PgBouncer::shared)
        .await
        .expect("start PgBouncer")?;
    Some((cluster, bouncer))
}

/// A service-mode store through `bouncer`.
fn through(bouncer: &PgBouncer, pool_size: usize) -> PgStore {
    PgStore::builder()
        .url(bouncer.url(pg::DATABASE))
        .pool_size(pool_size)
        .build()
        .expect("a PgStore")
}

/// The contract factory: a fresh pool per test (on that test's runtime),
/// through PgBouncer.
async fn bounced_store() -> Option<Arc<DynStore>> {
    let (_, bouncer) = shared().await?;
    Some(Arc::new(through(bouncer, 8)))
}

tenancy::store_contract_tests!(bounced_store);

/// The harness really pools by transaction: ten clients connected at once,
/// each answering, share at most `default_pool_size` server backends (in
/// session mode each client would hold its own, and the fifth would wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_multiplexes_clients_over_a_few_server_connections() {
    let Some((cluster, _)) = shared().await else {
        return;
    };
    let bouncer = tokio::task::spawn_blocking(move || PgBouncer::start(cluster))
        .await
        .expect("start a PgBouncer")
        .expect("PgBouncer (the shared one started)");
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(pg::connect_url(&bouncer.url(pg::DATABASE)).await);
    }
    let mut backends = HashSet::new();
    for _ in 0..3 {
        for client in &clients {
            let row = tokio::time::timeout(
                Duration::from_secs(10),
                client.query_typed_one("select pg_backend_pid()", &[]),
            )
            .await
            .expect("every client is served while the others stay connected")
            .expect("query through PgBouncer");
            backends.insert(row.get::<_, i32>(0));
        }
    }
    assert!(
        !backends.is_empty() && backends.len() <= pgbouncer::DEFAULT_POOL_SIZE,
        "10 clients over {} backends: {backends:?}",
        backends.len()
    );
    assert!(
        bouncer.config().contains("pool_mode = transaction"),
        "{}",
        bouncer.config()
    );
}

// ---- user mode through PgBouncer ---------------------------------------------

/// Claims as Supabase's auth server issues them for `user`.
fn claims(user: UserId) -> serde_json::Value {
    json!({ "sub": user.to_string(), "role": "authenticated", "aud": "authenticated" })
}

async fn new_org(store: &PgStore, owner: UserId) -> Organization {
    let org = Organization {
        id: OrgId::new_v7(),
        name: "Isolation".into(),
        slug: tenancy::Slug::parse(&unique_slug("pgb-iso")).unwrap(),
        owner_user_id: Some(owner),
        timezone: chrono_tz::Tz::UTC,
        created_at: chrono::Utc::now(),
    };
    store.create_organization(&org).await.expect("create")
}

/// What one user transaction saw, read inside it.
#[derive(Debug)]
struct Seen {
    backend: i32,
    role: String,
    sub: Option<String>,
    orgs: Vec<Uuid>,
}

/// Calls as `me` (user mode), `rounds` times: the transaction's own view
/// (role, claims, the organizations RLS lets it read) and the store's
/// calls. Panics on anything of `theirs`; returns the server backends its
/// transactions ran on.
async fn act_as(store: PgStore, me: UserId, mine: OrgId, theirs: OrgId, rounds: usize) -> Vec<i32> {
    let mut backends = Vec::new();
    for round in 0..rounds {
        let seen = store
            .user_transaction(async |tx| {
                let row = tx
                    .query_typed_one(
                        "select pg_backend_pid(), current_user::text, \
                         current_setting('request.jwt.claims', true)::jsonb ->> 'sub', \
                         array(select id from public.organizations order by id)",
                        &[],
                    )
                    .await
                    .expect("read inside the user transaction");
                Ok(Seen {
                    backend: row.get(0),
                    role: row.get(1),
                    sub: row.get(2),
                    orgs: row.get(3),
                })
            })
            .await
            .expect("a user transaction");
        assert_eq!(seen.role, "authenticated", "round {round}: {seen:?}");
        assert_eq!(seen.sub, Some(me.to_string()), "round {round}: {seen:?}");
        assert_eq!(seen.orgs, [mine.as_uuid()], "round {round}: {seen:?}");
        backends.push(seen.backend);

        let memberships = store.memberships_of_user(me).await.expect("memberships");
        let orgs: Vec<OrgId> = memberships.iter().map(|m| m.organization.id).collect();
        assert_eq!(orgs, [mine], "round {round}");
        assert_eq!(
            store.organization(theirs).await.expect("organization"),
            None,
            "round {round}"
        );
        assert!(
            store.features(theirs).await.expect("features").is_empty(),
            "round {round}"
        );
    }
    backends
}

/// Service-mode statements on the same pool, between the users'
/// transactions, run as the login role with no claims left behind.
async fn probe_service(store: PgStore, rounds: usize) -> Vec<i32> {
    let mut backends = Vec::new();
    for round in 0..rounds {
        let client = store.pool().get().await.expect("a pooled connection");
        let row = client
            .query_typed_one(
                "select pg_backend_pid(), current_user::text, \
                 coalesce(current_setting('request.jwt.claims', true), '')",
                &[],
            )
            .await
            .expect("a service-mode statement");
        let (role, claims): (String, String) = (row.get(1), row.get(2));
        assert_eq!(
            (role.as_str(), claims.as_str()),
            ("postgres", ""),
            "round {round}: a user's role or claims outlived its transaction"
        );
        backends.push(row.get(0));
    }
    backends
}

/// Two users interleaved on a pool of two connections behind PgBouncer:
/// their transactions share server backends (checked), and each sees only
/// its own organization in every one; service statements between them see
/// no claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_claims_stay_in_their_transaction_behind_pgbouncer() {
    const ROUNDS: usize = 120;
    let Some((cluster, bouncer)) = shared().await else {
        return;
    };
    let service = through(bouncer, 2);
    let db = cluster.superuser().await;
    let alice = UserId::from(pg::create_user(&db).await);
    let bob = UserId::from(pg::create_user(&db).await);
    let acme = new_org(&service, alice).await;
    let globex = new_org(&service, bob).await;
    for org in [&acme, &globex] {
        service
            .update_feature(
                org.id,
                &FeatureKey::parse("exports").unwrap(),
                &FeatureChange::enabled(true),
                chrono::Utc::now(),
            )
            .await
            .expect("a feature");
    }
    let as_alice = service.as_user(&claims(alice)).unwrap();
    let as_bob = service.as_user(&claims(bob)).unwrap();

    // The short isolation check, through the pooler.
    assert!(as_alice.organization(acme.id).await.unwrap().is_some());
    assert_eq!(as_alice.features(acme.id).await.unwrap().len(), 1);
    let rename = as_alice.rename_organization(globex.id, "Mine").await;
    assert_eq!(rename.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        service.organization(globex.id).await.unwrap().unwrap().name,
        "Isolation"
    );

    let (alice_backends, bob_backends, service_backends) = tokio::join!(
        tokio::spawn(act_as(as_alice, alice, acme.id, globex.id, ROUNDS)),
        tokio::spawn(act_as(as_bob, bob, globex.id, acme.id, ROUNDS)),
        tokio::spawn(probe_service(service.clone(), ROUNDS)),
    );
    let alice_backends: HashSet<i32> = alice_backends.expect("alice").into_iter().collect();
    let bob_backends: HashSet<i32> = bob_backends.expect("bob").into_iter().collect();
    let service_backends: HashSet<i32> = service_backends.expect("service").into_iter().collect();
    let shared_backends: Vec<_> = alice_backends.intersection(&bob_backends).collect();
    log(format!(
        "user mode behind PgBouncer: alice on backends {alice_backends:?}, bob on \
         {bob_backends:?}, service statements on {service_backends:?}"
    ));
    assert!(
        !shared_backends.is_empty(),
        "the two users' transactions never shared a server backend, so this proved \
         nothing: alice {alice_backends:?}, bob {bob_backends:?}"
    );
}

// ---- faults under steady recording ---------------------------------------------

/// Events each fault test records.
const EVENTS: u64 = 4_000;
/// Events recorded every 10 ms: 400 a second, so recording spans 10 s.
const PER_TICK: u64 = 4;
/// When the fault starts, after recording started.
const FAULT_AFTER: Duration = Duration::from_secs(2);
/// How long an outage lasts.
const OUTAGE: Duration = Duration::from_secs(4);

/// One organization and a user, and a `Tenancy` over a service-mode
/// `PgStore` at `url`: what the recorder uses.
struct Rig {
    tenancy: Tenancy,
    org: OrgId,
    user: UserId,
}

async fn rig(url: &str, admin: &Client) -> Rig {
    // Short calls and few store-level retries, so an outage shows in the
    // recorder (its retries and its spool) rather than inside one call.
    let store = PgStore::builder()
        .url(url)
        .pool_size(4)
        .call_timeout(Duration::from_secs(2))
        .max_retries(2)
        .build()
        .expect("a PgStore");
    let tenancy = Tenancy::builder().store(store).build().expect("tenancy");
    let owner = UserId::from(pg::create_user(admin).await);
    let org = tenancy
        .create_organization(
            owner,
            NewOrganization::new("Faults", &unique_slug("pg-fault")).unwrap(),
        )
        .await
        .expect("create the org");
    Rig {
        tenancy,
        org: org.id,
        user: owner,
    }
}

/// Small batches, a small memory buffer that spills to the spool after
/// half a second of outage, quick retries.
fn start_recorder(rig: &Rig, spool: &Path) -> UsageRecorder {
    UsageRecorder::builder(rig.tenancy.clone())
        .batch_size(100)
        .max_in_flight(2)
        .max_buffered_events(200)
        .flush_interval(Duration::from_millis(50))
        .retry_delays(Duration::from_millis(20), Duration::from_millis(500))
        .spool_dir(spool)
        .start()
        .expect("start the recorder")
}

/// What was recorded: every id `record` returned, and the token sum.
#[derive(Debug, Default)]
struct Recorded {
    ids: HashSet<Uuid>,
    tokens: u64,
}

/// Records [`EVENTS`] events of 1 to 1,000 tokens, [`PER_TICK`] every
/// 10 ms, on a task of its own.
fn record_steadily(
    recorder: &UsageRecorder,
    org: OrgId,
    user: UserId,
) -> tokio::task::JoinHandle<Recorded> {
    let recorder = recorder.clone();
    tokio::spawn(async move {
        let mut recorded = Recorded::default();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0..EVENTS {
            if i % PER_TICK == 0 {
                tick.tick().await;
            }
            let tokens = i % 1_000 + 1;
            let event = UsageEvent::new(org)
                .user(user)
                .ai_call("openai", "gpt-4o", "pg_fault_test")
                .tokens(tokens, 0, 0);
            let id = recorder.record(event).expect("record");
            assert!(
                recorded.ids.insert(id.as_uuid()),
                "record returned {id:?} twice"
            );
            recorded.tokens += tokens;
        }
        recorded
    })
}

/// Records steadily while `fault` runs (given the recorder, to read its
/// stats), then flushes and shuts the recorder down; returns what was
/// recorded and the final stats. Bounded: recording within 60 s, the flush
/// within 60 s.
async fn record_through(
    rig: &Rig,
    what: &str,
    fault: impl AsyncFnOnce(UsageRecorder),
) -> (Recorded, RecorderStats) {
    let spool = tempfile::tempdir().expect("a spool directory");
    let recorder = start_recorder(rig, spool.path());
    let started = Instant::now();
    let recording = record_steadily(&recorder, rig.org, rig.user);
    fault(recorder.clone()).await;
    let recorded = tokio::time::timeout(Duration::from_secs(60), recording)
        .await
        .unwrap_or_else(|_| panic!("{what}: recording did not finish in 60 s"))
        .expect("the recording task");
    let recorded_in = started.elapsed();
    let flush_started = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), recorder.flush())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: flush did not finish in 60 s: {:?}",
                recorder.stats()
            )
        })
        .unwrap_or_else(|e| panic!("{what}: flush: {e}; {:?}", recorder.stats()));
    let stats = recorder.stats();
    let flushed_in = flush_started.elapsed();
    let report = recorder.shutdown(Duration::from_secs(10)).await;
    assert!(
        report.undelivered.is_empty(),
        "{what}: undelivered after shutdown: {}",
        report.undelivered.len()
    );
    assert_eq!(
        spool_files(spool.path()),
        Vec::<String>::new(),
        "{what}: the spool was drained"
    );
    log(format!(
        "{what}: {} events recorded in {recorded_in:.1?}, the flush after it took {:.1?}; \
         {stats:?}",
        recorded.ids.len(),
        flushed_in
    ));
    assert_eq!(recorded.ids.len() as u64, EVENTS, "{what}");
    assert_eq!(stats.failed, 0, "{what}: {stats:?}");
    assert_eq!(
        stats.sent + stats.duplicates,
        EVENTS,
        "{what}: every event stored once, as new or as already there: {stats:?}"
    );
    (recorded, stats)
}

/// Asserts the database holds exactly `recorded` for the rig's org: the
/// same ids, each once, the same token sum in the log, and that sum in
/// every tokens counter (org-wide and the user's, daily and monthly).
async fn assert_exact(db: &Client, rig: &Rig, recorded: &Recorded, what: &str) {
    let rows = db
        .query(
            "select id, input_tokens from public.usage_events where organization_id = $1",
            &[&rig.org.as_uuid()],
        )
        .await
        .expect("read usage_events");
    let ids: HashSet<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let lost = recorded.ids.difference(&ids).count();
    let unknown = ids.difference(&recorded.ids).count();
    assert_eq!(
        (rows.len(), lost, unknown),
        (recorded.ids.len(), 0, 0),
        "{what}: stored rows / recorded ids missing / stored ids never recorded"
    );
    let logged: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    assert_eq!(
        logged, recorded.tokens as i64,
        "{what}: token sum in usage_events"
    );
    let counters: BTreeMap<(Uuid, String), Decimal> = db
        .query(
            "select scope_user_id, period, sum(used)::text from public.usage_counters \
             where organization_id = $1 and metric = 'tokens' group by 1, 2",
            &[&rig.org.as_uuid()],
        )
        .await
        .expect("read usage_counters")
        .iter()
        .map(|r| {
            let used: String = r.get(2);
            ((r.get(0), r.get(1)), used.parse().expect("a decimal"))
        })
        .collect();
    let sum = Decimal::from(recorded.tokens);
    let expected: BTreeMap<(Uuid, String), Decimal> = [pg::NIL, rig.user.as_uuid()]
        .into_iter()
        .flat_map(|scope| ["daily", "monthly"].map(|p| ((scope, p.to_owned()), sum)))
        .collect();
    assert_eq!(counters, expected, "{what}: tokens counters");
}

/// A private cluster (started off the runtime: it blocks).
async fn private_cluster() -> Option<Arc<Cluster>> {
    tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("start a private cluster")
        .map(Arc::new)
}

/// A private PgBouncer in front of `cluster`.
async fn private_bouncer(cluster: &Arc<Cluster>) -> Option<Arc<PgBouncer>> {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || PgBouncer::start(&cluster))
        .await
        .expect("start a private PgBouncer")
        .map(Arc::new)
}

/// Runs blocking `f` (a process to stop or start) off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking step")
}

/// Which way the recorder's store reaches PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Straight to the server.
    Direct,
    /// Through a PgBouncer in transaction mode.
    Bouncer,
}

/// A private cluster, with a PgBouncer in front for [`Route::Bouncer`],
/// and the URL the recorder's store uses.
struct Private {
    cluster: Arc<Cluster>,
    bouncer: Option<Arc<PgBouncer>>,
    url: String,
}

async fn private(route: Route) -> Option<Private> {
    let cluster = private_cluster().await?;
    let (bouncer, url) = match route {
        Route::Direct => (None, cluster.url(pg::DATABASE)),
        Route::Bouncer => {
            let bouncer = private_bouncer(&cluster).await?;
            let url = bouncer.url(pg::DATABASE);
            (Some(bouncer), url)
        }
    };
    Some(Private {
        cluster,
        bouncer,
        url,
    })
}

/// (a) PostgreSQL restarts (`pg_ctl stop -m fast`, down for [`OUTAGE`],
/// started again on the same port) while the recorder records steadily.
async fn postgres_restart(route: Route) {
    let what = format!("PostgreSQL restart ({route:?})");
    let Some(env) = private(route).await else {
        return;
    };
    let admin = env.cluster.superuser().await;
    let rig = rig(&env.url, &admin).await;
    drop(admin); // the restart ends it
    let mut during = RecorderStats::default();
    let (recorded, stats) = record_through(&rig, &what, async |recorder| {
        tokio::time::sleep(FAULT_AFTER).await;
        let cluster = Arc::clone(&env.cluster);
        blocking(move || cluster.stop_server()).await;
        tokio::time::sleep(OUTAGE).await;
        during = recorder.stats();
        let cluster = Arc::clone(&env.cluster);
        blocking(move || cluster.start_server_again()).await;
    })
    .await;
    log(format!("{what}: at the end of the outage {during:?}"));
    let db = env.cluster.superuser().await;
    assert_exact(&db, &rig, &recorded, &what).await;
    assert!(
        during.retried > 0 && during.spooled > 0,
        "{what}: the outage was retried and spilled to the spool: {during:?}"
    );
    assert!(
        stats.replayed > 0,
        "{what}: the spool was replayed after the outage: {stats:?}"
    );
    if let Some(bouncer) = &env.bouncer {
        // PgBouncer, not the store, was the one facing the dead server.
        let log = bouncer.log();
        assert!(
            log.contains("closing because: connect failed"),
            "{what}: PgBouncer tried to reach the stopped server:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_behind_pgbouncer_loses_and_doubles_nothing() {
    postgres_restart(Route::Bouncer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_a_direct_pool_loses_and_doubles_nothing() {
    postgres_restart(Route::Direct).await;
}

/// Terminates every client backend of the test database but `admin`'s
/// own, once one of them is running the record function (polled every
/// 2 ms for up to 2 s; then all of them regardless). Returns (backends
/// that were running the record function, backends terminated).
async fn terminate_backends(admin: &Client) -> (i64, i64) {
    const KILL: &str = "with targets as materialized (
          select pid, state = 'active' and query like '%tenancy\\_record\\_usage%' as busy
          from pg_catalog.pg_stat_activity
          where datname = current_database() and pid <> pg_catalog.pg_backend_pid()
            and backend_type = 'client backend'
        ),
        go as (select coalesce(bool_or(busy), false) or $1 as go from targets)
        select count(*) filter (where t.busy and killed), count(*) filter (where killed)
        from targets t cross join go,
          lateral (select go.go and pg_catalog.pg_terminate_backend(t.pid) as killed) k";
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let regardless = Instant::now() >= deadline;
        let row = admin
            .query_one(KILL, &[&regardless])
            .await
            .expect("terminate backends");
        let (busy, killed): (i64, i64) = (row.get(0), row.get(1));
        if killed > 0 || regardless {
            return (busy, killed);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// (b) Every backend of the database terminated (`pg_terminate_backend`),
/// catching a record call mid-transaction where it can, `ROUNDS` times
/// during steady recording.
async fn backends_terminated(route: Route) {
    const ROUNDS: usize = 6;
    let what = format!("backends terminated ({route:?})");
    let Some(env) = private(route).await else {
        return;
    };
    let admin = env.cluster.superuser().await;
    let rig = rig(&env.url, &admin).await;
    let mut rounds = Vec::new();
    let (recorded, _) = record_through(&rig, &what, async |_| {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for _ in 0..ROUNDS {
            rounds.push(terminate_backends(&admin).await);
            tokio::time::sleep(Duration::from_millis(1_000)).await;
        }
    })
    .await;
    let busy: i64 = rounds.iter().map(|(busy, _)| busy).sum();
    let killed: i64 = rounds.iter().map(|(_, killed)| killed).sum();
    log(format!(
        "{what}: (mid-record, terminated) per round {rounds:?}: {busy} record calls \
         cut mid-transaction, {killed} backends terminated"
    ));
    assert_exact(&admin, &rig, &recorded, &what).await;
    assert!(
        killed >= ROUNDS as i64,
        "{what}: every round terminated something: {rounds:?}"
    );
    assert!(
        busy >= 1,
        "{what}: at least one record call was cut mid-transaction: {rounds:?}"
    );
    let pg_log = env.cluster.log();
    assert!(
        pg_log.contains("terminating connection due to administrator command"),
        "{what}: PostgreSQL logged the terminations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_terminated_behind_pgbouncer_lose_and_double_nothing() {
    backends_terminated(Route::Bouncer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_terminated_under_a_direct_pool_lose_and_double_nothing() {
    backends_terminated(Route::Direct).await;
}

/// (c) PgBouncer restarts (SIGTERM, an immediate shutdown in 1.18; down
/// for [`OUTAGE`]; started again on the same port) while the recorder
/// records steadily. A private PgBouncer in front of the shared cluster:
/// the cluster itself is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgbouncer_restart_loses_and_doubles_nothing() {
    let what = "PgBouncer restart";
    let Some((cluster, _)) = shared().await else {
        return;
    };
    let bouncer = tokio::task::spawn_blocking(move || PgBouncer::start(cluster))
        .await
        .expect("start a private PgBouncer")
        .map(Arc::new)
        .expect("PgBouncer (the shared one started)");
    let admin = cluster.superuser().await;
    let rig = rig(&bouncer.url(pg::DATABASE), &admin).await;
    let first_pid = bouncer.pid();
    let mut during = RecorderStats::default();
    let (recorded, stats) = record_through(&rig, what, async |recorder| {
        tokio::time::sleep(FAULT_AFTER).await;
        let b = Arc::clone(&bouncer);
        blocking(move || b.stop()).await;
        tokio::time::sleep(OUTAGE).await;
        during = recorder.stats();
        let b = Arc::clone(&bouncer);
        blocking(move || b.start_again()).await;
    })
    .await;
    log(format!("{what}: at the end of the outage {during:?}"));
    assert_ne!(bouncer.pid(), first_pid, "{what}: a new process");
    assert_exact(&admin, &rig, &recorded, what).await;
    assert!(
        during.retried > 0 && during.spooled > 0,
        "{what}: the outage was retried and spilled to the spool: {during:?}"
    );
    assert!(
        stats.replayed > 0,
        "{what}: the spool was replayed after the outage: {stats:?}"
    );
}
