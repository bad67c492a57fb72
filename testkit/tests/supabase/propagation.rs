//! Entitlement changes through PostgREST: `SupabaseStore` pushes nothing,
//! so each `Tenancy` polls `tenancy_entitlements_version()`. Two instances
//! on the stand-in: with the default interval (1 s) every change made
//! through one is honoured by the other within the stated bound, 5 s
//! (the interval plus one round trip, with room for a loaded machine);
//! the distribution is printed.

use std::time::Duration;

use tenancy::Tenancy;
use tenancy::store::PlanStore;
use tenancy_testkit::{log, unique_slug};

use super::{server, service_store};

/// The two-instance scenario every backend's live tests share.
#[path = "../common/propagation.rs"]
mod scenario;

/// The bound stated for polling with the default interval.
const POLL_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_another_instance_by_polling_within_5_s() {
    let Some(server) = tokio::task::spawn_blocking(server).await.expect("start") else {
        return;
    };
    let store = service_store(server);
    assert!(store.watch_entitlements().await.unwrap().is_none());
    let before = store.entitlements_version().await.unwrap();

    // The default interval: what a service gets without configuring it.
    let writer = Tenancy::builder()
        .store(service_store(server))
        .build()
        .unwrap();
    let reader = Tenancy::builder()
        .store(service_store(server))
        .build()
        .unwrap();
    let ctx = scenario::org_on_both(&writer, &reader, &unique_slug("poll")).await;

    let toggles = scenario::feature_toggles(
        &writer,
        &reader,
        &ctx,
        20,
        Duration::from_secs(1),
        POLL_BOUND,
    )
    .await;
    log(format!(
        "SupabaseStore polling every 1 s (default): {}",
        toggles.summary()
    ));
    assert!(toggles.max() <= POLL_BOUND, "{}", toggles.summary());
    // The counter moved with the changes.
    assert!(store.entitlements_version().await.unwrap() >= before + 20);

    let plan = unique_slug("pro");
    for (what, took) in scenario::plan_changes(&writer, &reader, &ctx, &plan, POLL_BOUND).await {
        log(format!("SupabaseStore polling, {what}: {took:?}"));
        assert!(took <= POLL_BOUND, "{what}: {took:?}");
    }
}
