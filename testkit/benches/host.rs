//! Per-request overhead of the axum integration: token verification, the
//! tenant context and a feature check (warm caches), against the same
//! handler without them, all driven through the router in-process.
//!
//! - `token_context_feature_check`: the request names its org in
//!   `X-Org-Id`, so the context is `context(user, org)`, one membership
//!   read;
//! - `token_default_org_feature_check`: no `X-Org-Id`, so the context is
//!   the user's default org, a read of all their memberships.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench host
//! ```

#[path = "../../examples/host_app.rs"]
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
    let bearer = format!("Bearer {token}");
    let org = demo.acme.to_string();
    let request = |path: &str, org: Option<&str>| {
        let mut request = Request::get(path).header("authorization", &bearer);
        if let Some(org) = org {
            request = request.header("x-org-id", org);
        }
        request.body(Body::empty()).unwrap()
    };
    // Warm the caches and check every case answers 200.
    for (path, org) in [("/plain", None), ("/gated", Some(&*org)), ("/gated", None)] {
        let response = rt
            .block_on(router.clone().oneshot(request(path, org)))
            .unwrap();
        assert_eq!(response.status(), 200, "{path} {org:?}");
    }
    let mut group = c.benchmark_group("host");
    let cases = [
        ("baseline_handler_without_tenancy", "/plain", None),
        ("token_context_feature_check", "/gated", Some(&*org)),
        ("token_default_org_feature_check", "/gated", None),
    ];
    for (name, path, org) in cases {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                black_box(router.clone().oneshot(request(path, org)).await.unwrap())
            })
        });
    }
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
