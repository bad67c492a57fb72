//! The console's usage page, rendered in-process through its router, beside
//! the same organization's usage summary as bare JSON, measured in the
//! same run. Target: the page at most 5 ms (median).
//!
//! The organization, on `MemoryStore` with the clock on the last day of a
//! month (in Europe/Berlin): 8 members, 5 metrics (tokens, cost_usd,
//! images, video_seconds, api_calls), 10 limits (org-wide daily and
//! monthly ones, and a member's own), and all 30 days of the month
//! recorded, 3 to 6 calls a member a day: 1 080 events. The page
//! is seen by the owner, so it has everything: 10 limited lines among its
//! 20, 5 daily charts with their tables, the top members of each metric,
//! the org selector.
//!
//! - `usage_summary_json` (the baseline): `Tenancy::usage_summary` for a
//!   context at hand, serialised with `serde_json`;
//! - `usage_summary_json_route`: the same behind an axum route with the
//!   `Tenant` extractor (token verification and the context), through the
//!   router with `oneshot`, as a host's JSON API would serve it;
//! - `usage_page`: `GET /console/orgs/{org}/usage` through the console's
//!   router (token, context, the summary, the month's history, the top
//!   members, the features, the selector, the charts, the template), the
//!   body read to the end.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench console
//! ```

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, body};
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tenancy::axum::{Tenant, TenantAuth, TokenVerifier};
use tenancy::clock::FakeClock;
use tenancy::console::{self, ConsoleConfig};
use tenancy::{
    MemoryStore, MetricKey, NewLimit, NewOrganization, OrgId, Period, PlatformOperator, Role,
    Tenancy, TenantContext, UsageEvent, UsageLine, UserId,
};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const SECRET: &str = "bench-secret-that-is-at-least-32-characters-long";
/// The last day of November in Berlin, in the evening: a full month.
const NOW: &str = "2026-11-30T19:00:00Z";
const MEMBERS: usize = 8;
const DAYS: i64 = 30;

struct Org {
    tenancy: Tenancy,
    verifier: TokenVerifier,
    ctx: TenantContext,
    org: OrgId,
    token: String,
}

fn sign(user: UserId) -> String {
    let exp = Utc::now().timestamp() + 24 * 3600;
    let claims = serde_json::json!({
        "sub": user.to_string(), "aud": "authenticated", "role": "authenticated", "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn metric(name: &str) -> MetricKey {
    MetricKey::parse(name).unwrap()
}

/// A member's calls on one day: AI calls (tokens and cost), and now and
/// then images, video seconds and API calls; amounts vary by member and day.
fn day_of(org: OrgId, user: UserId, member: usize, day: i64, at: DateTime<Utc>) -> Vec<UsageEvent> {
    let m = member as i64;
    let calls = 3 + (m + day) % 4;
    let mut events = Vec::new();
    for call in 0..calls {
        let input = 800 + 37 * day as u64 + 113 * member as u64 + 61 * call as u64;
        let mut event = UsageEvent::new(org)
            .user(user)
            .ai_call("openai", "gpt-4o", "ad_copy")
            .tokens(input, input / 5, input / 3)
            .cost_usd(Decimal::new(input as i64 * 3, 6))
            .at(at - TimeDelta::minutes(17 * call));
        event = match (m + call + day) % 3 {
            0 => event.quantity(metric("images"), Decimal::from(1 + (m + day) % 3)),
            1 => event.quantity(
                metric("video_seconds"),
                Decimal::from(5 + (call * 7 + day) % 20),
            ),
            _ => event.quantity(metric("api_calls"), Decimal::from(10 + (m * 3 + day) % 15)),
        };
        events.push(event);
    }
    events
}

async fn seed() -> Org {
    let clock = FakeClock::at(NOW);
    let now = tenancy::clock::Clock::now(&clock);
    let tenancy = Tenancy::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .build()
        .unwrap();
    let users: Vec<UserId> = (0..MEMBERS).map(|_| UserId::new_v7()).collect();
    let new = NewOrganization::new("Umbrella", "umbrella")
        .unwrap()
        .timezone("Europe/Berlin")
        .unwrap();
    let org = tenancy.create_organization(users[0], new).await.unwrap().id;
    let owner = tenancy.context(users[0], org).await.unwrap();
    for (i, user) in users.iter().enumerate().skip(1) {
        let role = [Role::Admin, Role::Member, Role::Member, Role::Viewer][i % 4];
        tenancy.add_member(&owner, *user, role).await.unwrap();
    }
    let operator = PlatformOperator::new("bench");
    let admin = tenancy.operator(&operator);
    for key in ["brand_kits", "veo_avatars", "exports"] {
        admin.enable_feature(org, key).await.unwrap();
    }
    let limit = |name: &str, period, value: i64| {
        NewLimit::new(metric(name), period, Decimal::from(value)).unwrap()
    };
    let limits = [
        limit("tokens", Period::Monthly, 2_000_000),
        limit("tokens", Period::Daily, 80_000),
        limit("cost_usd", Period::Monthly, 500),
        limit("cost_usd", Period::Daily, 25).soft(),
        limit("images", Period::Monthly, 400),
        limit("images", Period::Daily, 30),
        limit("video_seconds", Period::Monthly, 3_000),
        limit("api_calls", Period::Monthly, 8_000),
        limit("api_calls", Period::Daily, 400),
        limit("tokens", Period::Monthly, 400_000).for_user(users[0]),
    ];
    for limit in limits {
        admin.set_limit(org, limit).await.unwrap();
    }
    let mut events = Vec::new();
    for day in 0..DAYS {
        let at = now - TimeDelta::days(DAYS - 1 - day);
        for (member, user) in users.iter().enumerate() {
            events.extend(day_of(org, *user, member, day, at));
        }
    }
    for chunk in events.chunks(500) {
        tenancy
            .service()
            .record_usage_batch(chunk.to_vec())
            .await
            .unwrap();
    }
    let verifier = TokenVerifier::hs256(SECRET).unwrap();
    Org {
        token: sign(users[0]),
        ctx: owner,
        tenancy,
        verifier,
        org,
    }
}

async fn summary_json(
    Tenant(ctx, _): Tenant,
    State(auth): State<TenantAuth>,
) -> Json<Vec<UsageLine>> {
    Json(auth.tenancy().usage_summary(&ctx).await.unwrap())
}

async fn body_of(router: &Router, request: Request<Body>) -> (u16, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

fn usage_page(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let org = rt.block_on(seed());
    let config = ConsoleConfig::builder(org.tenancy.clone(), org.verifier.clone())
        .build()
        .unwrap();
    let console = Router::new().nest("/console", console::router(config));
    let api = Router::new()
        .route("/usage", get(summary_json))
        .with_state(TenantAuth::new(org.tenancy.clone(), org.verifier.clone()));
    let bearer = format!("Bearer {}", org.token);
    let page_path = format!("/console/orgs/{}/usage", org.org);
    let org_id = org.org.to_string();
    let page_request = || {
        Request::get(&page_path)
            .header("authorization", &bearer)
            .body(Body::empty())
            .unwrap()
    };
    let api_request = || {
        Request::get("/usage")
            .header("authorization", &bearer)
            .header("x-org-id", &org_id)
            .body(Body::empty())
            .unwrap()
    };

    // What is measured, checked once: the page has what it should, and the
    // route answers the same lines as the facade.
    let lines = rt.block_on(org.tenancy.usage_summary(&org.ctx)).unwrap();
    let limited = lines.iter().filter(|l| l.limit.is_some()).count();
    assert_eq!(limited, 10, "{lines:#?}");
    let json = serde_json::to_vec(&lines).unwrap();
    let (status, body) = rt.block_on(body_of(&api, api_request()));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, json);
    let (status, page) = rt.block_on(body_of(&console, page_request()));
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.matches("<figure>").count(), 5, "daily charts");
    assert_eq!(page.matches("<svg role=\"img\"").count(), 5);
    for day in 1..=DAYS {
        assert!(
            page.contains(&format!("<td>2026-11-{day:02}</td>")),
            "day {day}"
        );
    }
    assert!(page.contains("Top members this month"));
    println!(
        "usage page: {} bytes, {} usage lines ({limited} with a limit); summary JSON: {} bytes",
        page.len(),
        lines.len(),
        json.len()
    );

    let mut group = c.benchmark_group("console");
    group.bench_function("usage_summary_json", |b| {
        b.to_async(&rt).iter(|| async {
            let lines = org.tenancy.usage_summary(&org.ctx).await.unwrap();
            black_box(serde_json::to_vec(&lines).unwrap())
        })
    });
    group.bench_function("usage_summary_json_route", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(body_of(&api, api_request()).await) })
    });
    group.bench_function("usage_page", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(body_of(&console, page_request()).await) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = usage_page
}
criterion_main!(benches);
