//! Per-request overhead of the axum integration: token verification, the
//! tenant context and a feature check (warm caches), against the same
//! handler without them, both driven through the router in-process.
//!
//! ```text
//! cargo bench --bench host --features axum
//! ```

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../examples/host_app.rs"]
mod host_app;

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tenancy::axum::FeatureGate;
use tower::ServiceExt;

async fn plain() -> &'static str {
    "ok"
}

async fn gated(_gate: FeatureGate<host_app::VeoAvatars>) -> &'static str {
    "ok"
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let demo = rt.block_on(host_app::demo()).unwrap();
    let token = host_app::sign_token(demo.alice);
    let router: Router = Router::new()
        .route("/plain", get(plain))
        .route("/gated", get(gated))
        .with_state(demo.app.clone());
    let request = |path: &str| {
        Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // Warm the caches and check both routes answer 200.
    for path in ["/plain", "/gated"] {
        let response = rt.block_on(router.clone().oneshot(request(path))).unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let mut group = c.benchmark_group("host");
    group.bench_function("baseline_handler_without_tenancy", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(router.clone().oneshot(request("/plain")).await.unwrap()) })
    });
    group.bench_function("token_context_feature_check", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(router.clone().oneshot(request("/gated")).await.unwrap()) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = overhead
}
criterion_main!(benches);
