//! Entitlement changes reach every `Tenancy` on the database: `PgStore`'s
//! `LISTEN` connection (direct to the server) while calls go through
//! PgBouncer in transaction mode, and the polling fallback without it.
//!
//! - The listen connection streams `tenancy_entitlements` notifications
//!   as changes (an organization's id, or `*` for all), announces `All`
//!   when it (re)connects, and reconnects after its backend is terminated.
//! - Two instances, the writer's and the reader's calls through PgBouncer,
//!   the reader also listening directly: 50 override toggles, each honoured
//!   by the reader's cached `has_feature`; the distribution is printed and
//!   its p95 must be within 250 ms. A plan assigned, a limit overridden and
//!   a version created and migrated are honoured too.
//! - Without a listen URL the reader polls the version counter: each
//!   change within the poll interval plus a round trip.

use std::time::{Duration, Instant};

use tenancy::model::plan::EntitlementChange;
use tenancy::postgres::PgStore;
use tenancy::store::PlanStore;
use tenancy::{OrgId, Tenancy};
use tenancy_testkit::{log, pg, unique_slug};
use tokio_postgres::types::Type;

use super::shared;
use crate::two_instances::{self as propagation, Latencies};

/// The bound stated for `PgStore` with a listen connection.
const PUSH_P95: Duration = Duration::from_millis(250);

/// How many changes the distribution is measured over.
const ROUNDS: usize = 50;

/// A service-mode store through PgBouncer, listening directly on the
/// cluster when `listen` is given.
fn store(bouncer_url: &str, listen: Option<&str>) -> PgStore {
    let mut builder = PgStore::builder().url(bouncer_url).pool_size(4);
    if let Some(listen) = listen {
        builder = builder.listen_url(listen);
    }
    builder.build().expect("a PgStore")
}

async fn next(watch: &mut tenancy::store::EntitlementWatch, what: &str) -> EntitlementChange {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no change within 10 s"))
        .unwrap_or_else(|| panic!("{what}: the stream ended"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_connection_streams_changes_and_reconnects() {
    let Some((cluster, bouncer)) = shared().await else {
        return;
    };
    let without = store(&bouncer.url(pg::DATABASE), None);
    assert!(without.watch_entitlements().await.unwrap().is_none());

    // Notifications are per database, and the other tests change plans on
    // the shared one: this test listens on an empty database of its own.
    // Its own application name, to find its backend below.
    let database = unique_slug("propagation_stream").replace('-', "_");
    let admin = cluster.create_database(&database).await;
    let listen_url = format!(
        "{} application_name=propagation-test-{}",
        cluster.url(&database),
        std::process::id()
    );
    let store = store(&bouncer.url(pg::DATABASE), Some(&listen_url));
    assert!(format!("{store:?}").contains("listen: true"));
    let mut watch = store.watch_entitlements().await.unwrap().expect("a stream");
    // Listening: whatever changed before is unknown.
    assert_eq!(next(&mut watch, "connected").await, EntitlementChange::All);

    let notify = async |payload: &str| {
        admin
            .query_typed(
                "select pg_notify('tenancy_entitlements', $1)",
                &[(&payload, Type::TEXT)],
            )
            .await
            .expect("notify");
    };
    let org = OrgId::new_v7();
    notify(&org.to_string()).await;
    assert_eq!(
        next(&mut watch, "one org").await,
        EntitlementChange::Org(org)
    );
    notify("*").await;
    assert_eq!(next(&mut watch, "all").await, EntitlementChange::All);
    // Another channel is not ours.
    admin
        .batch_execute("select pg_notify('something_else', 'x')")
        .await
        .unwrap();
    notify(&org.to_string()).await;
    assert_eq!(
        next(&mut watch, "after another channel").await,
        EntitlementChange::Org(org)
    );

    // The backend killed: the store connects again and says `All`.
    let killed: i64 = admin
        .query_typed_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = $1",
            &[(
                &format!("propagation-test-{}", std::process::id()),
                Type::TEXT,
            )],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "exactly one listen connection");
    assert_eq!(
        next(&mut watch, "reconnected").await,
        EntitlementChange::All
    );
    notify(&org.to_string()).await;
    assert_eq!(
        next(&mut watch, "after reconnecting").await,
        EntitlementChange::Org(org)
    );

    // A second watcher shares the one connection.
    let mut second = store.watch_entitlements().await.unwrap().expect("a stream");
    notify("*").await;
    assert_eq!(
        next(&mut second, "second watcher").await,
        EntitlementChange::All
    );
    let connections: i64 = admin
        .query_typed_one(
            "select count(*) from pg_stat_activity where application_name = $1",
            &[(
                &format!("propagation-test-{}", std::process::id()),
                Type::TEXT,
            )],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(connections, 1);

    // The last clone dropped: the connection closes, the streams end.
    drop(store);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while watch.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the store");
}

/// The listen URL is checked at build: `Config` naming it.
#[test]
fn a_bad_listen_url_is_a_config_error_naming_it() {
    for url in ["", "postgres://[::1", "port=5432"] {
        let err = PgStore::builder()
            .url("postgres://u:p@127.0.0.1:5432/db")
            .listen_url(url)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), tenancy::ErrorKind::Config, "{url:?}");
        assert!(err.message().contains("listen_url"), "{url:?}: {err}");
    }
}

/// The main URL is checked the same way at build: one naming no host is
/// `Config` naming it, not a failure at the first connect.
#[test]
fn a_main_url_without_a_host_is_a_config_error_naming_it() {
    for url in ["", "port=5432", "postgres:///db"] {
        let err = PgStore::builder().url(url).build().unwrap_err();
        assert_eq!(err.kind(), tenancy::ErrorKind::Config, "{url:?}");
        assert!(
            err.message().starts_with("url names no host"),
            "{url:?}: {err}"
        );
    }
}

/// `from_env` reads the listen URL from `DATABASE_LISTEN_URL` when it is
/// set and not blank, and names that variable when it is malformed.
#[test]
fn from_env_reads_the_listen_url() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    const URL: &str = "postgres://u:p@127.0.0.1:5432/db";
    let store = |pairs| {
        tenancy::postgres::PgStoreBuilder::from_env_with(env(pairs))
            .and_then(|b| b.build())
            .map(|s| format!("{s:?}"))
    };
    let listening = store(&[("DATABASE_URL", URL), ("DATABASE_LISTEN_URL", URL)]).unwrap();
    assert!(listening.contains("listen: true"), "{listening}");
    for pairs in [
        &[("DATABASE_URL", URL)][..],
        &[("DATABASE_URL", URL), ("DATABASE_LISTEN_URL", "  ")][..],
        &[("SUPABASE_DB_URL", URL)][..],
    ] {
        let plain = store(pairs).unwrap();
        assert!(plain.contains("listen: false"), "{pairs:?}: {plain}");
    }
    let err = store(&[("DATABASE_URL", URL), ("DATABASE_LISTEN_URL", "port=5432")]).unwrap_err();
    assert_eq!(err.kind(), tenancy::ErrorKind::Config);
    assert!(err.message().contains("DATABASE_LISTEN_URL"), "{err}");
    let err = store(&[("DATABASE_LISTEN_URL", URL)]).unwrap_err();
    assert_eq!(err.kind(), tenancy::ErrorKind::Config);
    assert!(err.message().contains("DATABASE_URL"), "{err}");
}

/// Two instances, the writer on PgBouncer, the reader on PgBouncer and
/// listening directly: 50 changes, p95 within 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_listening_instance_within_250_ms() {
    let Some((cluster, bouncer)) = shared().await else {
        return;
    };
    let pooled = bouncer.url(pg::DATABASE);
    let writer = Tenancy::builder()
        .store(store(&pooled, None))
        .build()
        .unwrap();
    // Polling would take up to an hour: what the reader sees, it was told.
    let reader = Tenancy::builder()
        .store(store(&pooled, Some(&cluster.url(pg::DATABASE))))
        .entitlement_poll(Duration::from_secs(3600))
        .build()
        .unwrap();
    let ctx = propagation::org_on_both(&writer, &reader, &unique_slug("listen")).await;
    // Let the listen connection come up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let toggles = propagation::feature_toggles(
        &writer,
        &reader,
        &ctx,
        ROUNDS,
        Duration::ZERO,
        Duration::from_secs(5),
    )
    .await;
    log(format!(
        "PgStore + LISTEN, override toggles through PgBouncer: {}",
        toggles.summary()
    ));
    assert!(
        toggles.percentile(95.0) <= PUSH_P95,
        "p95 above {PUSH_P95:?}: {}",
        toggles.summary()
    );

    let plan = unique_slug("pro");
    for (what, took) in
        propagation::plan_changes(&writer, &reader, &ctx, &plan, Duration::from_secs(5)).await
    {
        log(format!("PgStore + LISTEN, {what}: {took:?}"));
        assert!(took <= PUSH_P95 * 2, "{what}: {took:?}");
    }
}

/// Without a listen URL: polling every 200 ms, each change within the
/// interval plus a round trip (asserted with slack for a loaded machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_polling_instance_within_the_interval() {
    let Some((_, bouncer)) = shared().await else {
        return;
    };
    let pooled = bouncer.url(pg::DATABASE);
    let poll = Duration::from_millis(200);
    let writer = Tenancy::builder()
        .store(store(&pooled, None))
        .build()
        .unwrap();
    let reader = Tenancy::builder()
        .store(store(&pooled, None))
        .entitlement_poll(poll)
        .build()
        .unwrap();
    let ctx = propagation::org_on_both(&writer, &reader, &unique_slug("poll")).await;
    let started = Instant::now();
    let toggles: Latencies =
        propagation::feature_toggles(&writer, &reader, &ctx, 20, poll, Duration::from_secs(5))
            .await;
    log(format!(
        "PgStore polling every {poll:?} through PgBouncer: {} ({:?} in all)",
        toggles.summary(),
        started.elapsed()
    ));
    assert!(
        toggles.max() <= poll + Duration::from_millis(300),
        "{}",
        toggles.summary()
    );
}

/// The store contract's watcher test on a `PgStore` listening directly on
/// the shared database (calls through PgBouncer): an assignment and an
/// override are each pushed as that organization's own change. Other
/// tests' notifications on the same database interleave; the test skips
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_watcher_test_passes_on_a_listening_store() {
    let Some((cluster, bouncer)) = shared().await else {
        return;
    };
    let store = store(&bouncer.url(pg::DATABASE), Some(&cluster.url(pg::DATABASE)));
    tenancy::store::contract::watchers_hear_of_changes(std::sync::Arc::new(store)).await;
}
