//! The example host app over real HTTP on loopback, driven by reqwest, with
//! tokens signed in the test.

#[path = "../../examples/host_app.rs"]
mod host_app;
use tenancy_testkit::postgrest as postgrest_server;
use tenancy_testkit::unique_slug;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenancy::{PlatformOperator, UserId};

/// A client of one served router.
struct Client {
    base: String,
    http: reqwest::Client,
}

/// The demo app, served.
struct Server {
    client: Client,
    demo: host_app::Demo,
}

impl std::ops::Deref for Server {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Server {
    /// Tokens used and held in `org` this month, as `user` sees them.
    async fn tokens_in(
        &self,
        user: UserId,
        org: tenancy::OrgId,
    ) -> (rust_decimal::Decimal, rust_decimal::Decimal) {
        let tenancy = self.demo.app.auth.tenancy();
        let ctx = tenancy.context(user, org).await.unwrap();
        let decision = tenancy.check_limit(&ctx, "tokens", 0.into()).await.unwrap();
        (decision.used, decision.reserved)
    }
}

/// A 500 `misconfigured` whose message names `names`.
async fn assert_misconfigured(response: reqwest::Response, path: &str, names: &str) {
    assert_eq!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "{path}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "misconfigured", "{path}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(names), "{path}: {message}");
}

async fn server() -> Server {
    let demo = host_app::demo().await.unwrap();
    let base = serve(host_app::router(demo.app.clone())).await;
    Server {
        client: Client {
            base,
            http: reqwest::Client::new(),
        },
        demo,
    }
}

/// Serves `router` on a loopback port; returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

fn token(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(user: UserId, exp_from_now: i64, aud: &str) -> Value {
    json!({"sub": user.to_string(), "aud": aud, "role": "authenticated",
           "exp": chrono::Utc::now().timestamp() + exp_from_now})
}

impl Client {
    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        org: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(org) = org {
            request = request.header("X-Org-Id", org);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(
        &self,
        path: &str,
        token: &str,
        org: Option<String>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body);
        if let Some(org) = org {
            request = request.header("X-Org-Id", org);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn tokens_are_verified() {
    let s = server().await;
    let alice = s.demo.alice;
    let secret = host_app::DEMO_JWT_SECRET;
    let (status, _) = s
        .get(
            "/brands",
            Some(&token(claims(alice, 3600, "authenticated"), secret)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let none = {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(claims(alice, 3600, "authenticated").to_string());
        format!("{header}.{payload}.")
    };
    let refused = [
        (
            "expired",
            token(claims(alice, -3600, "authenticated"), secret),
        ),
        (
            "bad signature",
            token(
                claims(alice, 3600, "authenticated"),
                "another-secret-of-at-least-32-chars!!",
            ),
        ),
        ("alg none", none),
        ("wrong audience", token(claims(alice, 3600, "anon"), secret)),
        ("malformed", "not-a-jwt".to_owned()),
        (
            "sub not a user id",
            token(
                json!({"sub": "admin", "aud": "authenticated",
                       "exp": chrono::Utc::now().timestamp() + 3600}),
                secret,
            ),
        ),
        (
            "no sub",
            token(
                json!({"aud": "authenticated", "exp": chrono::Utc::now().timestamp() + 3600}),
                secret,
            ),
        ),
    ];
    for (what, bad) in refused {
        let (status, body) = s.get("/brands", Some(&bad), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            body,
            json!({"error": "unauthenticated", "message": "a valid access token is required"}),
            "{what}: no details leak"
        );
    }
    let (status, _) = s.get("/orgs", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
}

/// `nbf` is enforced with the leeway, only `role: authenticated` is taken,
/// and a request with two `Authorization` headers is refused: each of these
/// was served before.
#[tokio::test]
async fn not_before_role_and_one_authorization_header_are_checked() {
    let s = server().await;
    let alice = s.demo.alice;
    let secret = host_app::DEMO_JWT_SECRET;
    let now = chrono::Utc::now().timestamp();
    let with = |extra: Value| {
        let mut claims = claims(alice, 3600, "authenticated");
        for (key, value) in extra.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        token(claims, secret)
    };
    // Positive controls: an `nbf` past, or ahead within the 30 s leeway.
    for ok in [json!({"nbf": now - 60}), json!({"nbf": now + 10})] {
        let (status, _) = s.get("/brands", Some(&with(ok.clone())), None).await;
        assert_eq!(status, StatusCode::OK, "{ok}");
    }
    let refused = [
        ("nbf an hour ahead", json!({"nbf": now + 3600})),
        ("role anon", json!({"role": "anon"})),
        ("role service_role", json!({"role": "service_role"})),
        ("no role", json!({"role": null})),
    ];
    for (what, extra) in refused {
        let (status, body) = s.get("/brands", Some(&with(extra)), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            body,
            json!({"error": "unauthenticated", "message": "a valid access token is required"}),
            "{what}: no details leak"
        );
    }

    // Two Authorization headers, of two users or the same one twice.
    let bob = host_app::sign_token(s.demo.bob);
    let alices = host_app::sign_token(alice);
    for second in [&bob, &alices] {
        let response = s
            .http
            .get(format!("{}/brands", s.base))
            .header("Authorization", format!("Bearer {alices}"))
            .header("Authorization", format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], json!("doubled_authorization"));
    }
}

#[tokio::test]
async fn the_org_is_rechecked_and_can_be_switched() {
    let s = server().await;
    let alice = host_app::sign_token(s.demo.alice);
    let bob = host_app::sign_token(s.demo.bob);

    // Bob is not in Globex, whatever he claims.
    let (status, body) = s
        .get("/brands", Some(&bob), Some(s.demo.globex.to_string()))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_a_member"))
    );
    let (status, _) = s
        .get("/brands", Some(&bob), Some("not-a-uuid".into()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Alice's default is Acme (joined first); she switches to Globex.
    let created = s
        .post("/brands", &alice, None, json!({"name": "Bolt"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let (_, acme_brands) = s.get("/brands", Some(&alice), None).await;
    assert_eq!(acme_brands, json!([{"id": 1, "name": "Bolt"}]));
    let (status, globex_brands) = s
        .get("/brands", Some(&alice), Some(s.demo.globex.to_string()))
        .await;
    assert_eq!((status, globex_brands), (StatusCode::OK, json!([])));
    // She is only a viewer there.
    let refused = s
        .post(
            "/brands",
            &alice,
            Some(s.demo.globex.to_string()),
            json!({"name": "X"}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (_, orgs) = s
        .get("/orgs", Some(&alice), Some(s.demo.globex.to_string()))
        .await;
    assert_eq!(orgs["active"], json!(s.demo.globex.to_string()));
    let ids: Vec<&str> = orgs["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{orgs}");
    for org in [s.demo.acme, s.demo.globex, s.demo.initech] {
        assert!(ids.contains(&org.to_string().as_str()), "{org} in {orgs}");
    }
}

#[tokio::test]
async fn features_gate_routes() {
    let s = server().await;
    let alice = host_app::sign_token(s.demo.alice);
    let on = s.post("/avatars", &alice, None, json!({})).await;
    assert_eq!(on.status(), StatusCode::OK);
    let off = s
        .post(
            "/avatars",
            &alice,
            Some(s.demo.globex.to_string()),
            json!({}),
        )
        .await;
    assert_eq!(off.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        off.json::<Value>().await.unwrap(),
        json!({"error": "feature_disabled", "message": "the feature veo_avatars is off",
               "feature": "veo_avatars"})
    );

    let operator = PlatformOperator::new("test");
    s.demo
        .app
        .auth
        .tenancy()
        .operator(&operator)
        .enable_feature(s.demo.globex, "veo_avatars")
        .await
        .unwrap();
    let now_on = s
        .post(
            "/avatars",
            &alice,
            Some(s.demo.globex.to_string()),
            json!({}),
        )
        .await;
    assert_eq!(now_on.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_limit_hit_is_429_with_retry_after_and_figures() {
    let s = server().await;
    let bob = host_app::sign_token(s.demo.bob);
    let mut granted = 0;
    let denied = loop {
        let response = s
            .post("/generate", &bob, None, json!({"prompt": "summer sale"}))
            .await;
        if response.status() != StatusCode::OK {
            break response;
        }
        granted += 1;
        assert!(granted < 100);
    };
    // Each generation reserves 2000 and uses 1511: six fit in 10 000.
    assert_eq!(granted, 6);
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = denied.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 31 * 24 * 3600);
    let body: Value = denied.json().await.unwrap();
    let resets_at = body["resets_at"].as_str().unwrap().to_owned();
    assert_eq!(
        body,
        json!({"error": "limit_exceeded", "message": "the tokens limit would be exceeded",
               "metric": "tokens", "requested": "2000", "used": "9066", "reserved": "0",
               "limit": "10000", "remaining": "934", "resets_at": resets_at})
    );
}

/// A queued generation: the API reserves and answers 202, the worker
/// commits through the sealed hold what the model used; once the holds
/// of queued jobs fill the limit, the API answers 429 before queueing.
#[tokio::test]
async fn queued_jobs_commit_through_travelling_holds() {
    let s = server().await;
    let bob = host_app::sign_token(s.demo.bob);
    let mut accepted = 0;
    let denied = loop {
        let response = s
            .post("/jobs", &bob, None, json!({"prompt": "winter"}))
            .await;
        if response.status() != StatusCode::ACCEPTED {
            break response;
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["reserved"], 2000);
        accepted += 1;
        assert!(accepted < 100);
    };
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(denied.headers().contains_key("retry-after"));
    // Each job uses 1506 tokens (500 + the prompt, and 1000 out).
    let want = rust_decimal::Decimal::from(accepted * 1506);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (used, reserved) = s.tokens_in(s.demo.bob, s.demo.acme).await;
        if used == want && reserved.is_zero() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker committed {used} of {want}, {reserved} still held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        want <= 10_000.into(),
        "queued holds never overshoot: {want}"
    );
}

#[tokio::test]
async fn concurrent_requests_never_overshoot() {
    let s = server().await;
    let bob = host_app::sign_token(s.demo.bob);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url, bob) = (s.http.clone(), format!("{}/generate", s.base), bob.clone());
        tasks.spawn(async move {
            http.post(url)
                .bearer_auth(bob)
                .json(&json!({"prompt": "p"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let mut ok = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    // Denied requests hold nothing and granted ones commit before they
    // answer: the figures are final once every response is in.
    let (used, _) = s.tokens_in(s.demo.bob, s.demo.acme).await;
    assert!(used <= 10_000.into(), "used {used}");
    assert_eq!(used, (ok * 1_501).into(), "{ok} generations of 1501 tokens");
    // 2000-token holds: 5 fit at once, 6 once commits free the unused 499s,
    // never a 7th (6 × 1501 + 2000 > 10 000).
    assert!((5..=6).contains(&ok), "got {ok}");
}

fn es256_token(user: UserId, kid: &str) -> String {
    es256_token_with(user, Some(kid))
}

fn es256_token_with(user: UserId, kid: Option<&str>) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key =
        jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("../fixtures/es256_test_key.pem"))
            .unwrap();
    jsonwebtoken::encode(&header, &claims(user, 3600, "authenticated"), &key).unwrap()
}

const TEST_JWKS: &str = include_str!("../fixtures/es256_test_jwks.json");

#[tokio::test]
async fn asymmetric_tokens_verify_against_a_jwks() {
    use tenancy::ErrorKind;
    use tenancy::axum::TokenVerifier;

    let user = UserId::new_v7();
    let verifier = TokenVerifier::builder()
        .jwks_json(TEST_JWKS)
        .build()
        .unwrap();
    let claims = verifier.verify(&es256_token(user, "test-es256")).unwrap();
    assert_eq!(claims.user_id().unwrap(), user);
    let unknown_kid = verifier
        .verify(&es256_token(user, "rotated-away"))
        .unwrap_err();
    assert_eq!(unknown_kid.kind(), ErrorKind::Unauthenticated);
    let hs256 = host_app::sign_token(user);
    assert_eq!(
        verifier.verify(&hs256).unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
    assert_eq!(
        TokenVerifier::builder()
            .jwks_json("{")
            .build()
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
    // A document with one key also verifies tokens that name no key.
    let claims = verifier.verify(&es256_token_with(user, None)).unwrap();
    assert_eq!(claims.user_id().unwrap(), user);
    // A key that cannot verify anything is skipped, not fatal; with two
    // keys, a token must say which.
    let mut two: Value = serde_json::from_str(TEST_JWKS).unwrap();
    two["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "RSA", "n": "!!!", "e": "AQAB", "kid": "broken"}));
    let two = TokenVerifier::builder()
        .jwks_json(two.to_string())
        .build()
        .unwrap();
    let claims = two.verify(&es256_token(user, "test-es256")).unwrap();
    assert_eq!(claims.user_id().unwrap(), user);
    for (what, token) in [
        ("broken key", es256_token(user, "broken")),
        ("no kid among two keys", es256_token_with(user, None)),
    ] {
        assert_eq!(
            two.verify(&token).unwrap_err().kind(),
            ErrorKind::Unauthenticated,
            "{what}"
        );
    }
}

/// A JWKS server for tests: serves `document` (a 500 when `None`) after a
/// short delay, so that concurrent misses overlap, and counts requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: &str) -> JwksServer {
        let document = Arc::new(Mutex::new(Some(document.to_owned())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counter) = (document.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match body {
                        Some(body) => {
                            ([("content-type", "application/json")], body).into_response()
                        }
                        None => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
        let base = serve(router).await;
        JwksServer {
            url: format!("{base}/jwks.json"),
            document,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn serve(&self, document: Option<String>) {
        *self.document.lock().unwrap() = document;
    }
}

/// Verifies `n` tokens naming `kid` at once, through clones of `verifier`.
async fn verify_at_once(
    verifier: &tenancy::axum::TokenVerifier,
    user: UserId,
    kid: &str,
    n: usize,
) -> Vec<tenancy::Result<UserId>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (verifier, token) = (verifier.clone(), es256_token(user, kid));
        tasks.spawn(async move {
            verifier
                .verify_async(&token)
                .await
                .and_then(|c| c.user_id())
        });
    }
    tasks.join_all().await
}

/// The user a token naming `kid` verifies as, or why it does not.
async fn verified_as(
    verifier: &tenancy::axum::TokenVerifier,
    user: UserId,
    kid: &str,
) -> tenancy::Result<UserId> {
    verifier
        .verify_async(&es256_token(user, kid))
        .await
        .and_then(|c| c.user_id())
}

#[tokio::test]
async fn a_jwks_url_is_fetched_at_most_once_per_interval_whatever_the_tokens_say() {
    use tenancy::ErrorKind;
    use tenancy::axum::TokenVerifier;
    use tenancy::clock::FakeClock;

    let user = UserId::new_v7();
    let jwks = JwksServer::start(TEST_JWKS).await;
    let clock = FakeClock::at("2026-01-01T00:00:00Z");
    let remote = TokenVerifier::builder()
        .jwks_url(&jwks.url)
        .http_client(reqwest::Client::new())
        .jwks_ttl(Duration::from_secs(600))
        .min_refetch_interval(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let refused = |result: tenancy::Result<UserId>| result.unwrap_err().kind();

    // A cold cache: eight tokens at once share one fetch.
    for result in verify_at_once(&remote, user, "test-es256", 8).await {
        assert_eq!(result.unwrap(), user);
    }
    assert_eq!(jwks.fetches(), 1, "concurrent misses share one fetch");
    for _ in 0..3 {
        assert_eq!(
            verified_as(&remote, user, "test-es256").await.unwrap(),
            user
        );
    }
    assert_eq!(jwks.fetches(), 1, "cached");

    // Forged tokens naming random keys cost nothing within the interval.
    for kid in ["rotated-in", "forged-1", "forged-2"] {
        let kind = refused(verified_as(&remote, user, kid).await);
        assert_eq!(kind, ErrorKind::Unauthenticated, "{kid}");
    }
    for result in verify_at_once(&remote, user, "forged-3", 8).await {
        assert_eq!(refused(result), ErrorKind::Unauthenticated);
    }
    assert_eq!(jwks.fetches(), 1, "no refetch within the interval");

    // The project rotates its key: not seen before the interval is up...
    jwks.serve(Some(TEST_JWKS.replace("test-es256", "rotated-in")));
    clock.advance(Duration::from_secs(59));
    let kind = refused(verified_as(&remote, user, "rotated-in").await);
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert_eq!(jwks.fetches(), 1, "still within the interval");
    // ...picked up after it, by one fetch for eight tokens at once.
    clock.advance(Duration::from_secs(2));
    for result in verify_at_once(&remote, user, "rotated-in", 8).await {
        assert_eq!(result.unwrap(), user);
    }
    assert_eq!(jwks.fetches(), 2, "the rotated key is fetched once");
    let kind = refused(verified_as(&remote, user, "test-es256").await);
    assert_eq!(kind, ErrorKind::Unauthenticated, "the old key is gone");
    let kind = refused(verified_as(&remote, user, "forged-4").await);
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert_eq!(jwks.fetches(), 2, "a new interval began with that fetch");

    // The TTL runs out while the server fails: the cached keys still
    // verify, and the failure is not retried within the interval.
    jwks.serve(None);
    clock.advance(Duration::from_secs(601));
    for _ in 0..2 {
        assert_eq!(
            verified_as(&remote, user, "rotated-in").await.unwrap(),
            user
        );
    }
    assert_eq!(jwks.fetches(), 3, "one failed refresh");
    jwks.serve(Some(TEST_JWKS.to_owned()));
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        verified_as(&remote, user, "test-es256").await.unwrap(),
        user
    );
    assert_eq!(jwks.fetches(), 4, "refreshed once the interval is up");
}

#[tokio::test]
async fn a_jwks_url_that_never_answered_is_retried_one_request_at_a_time() {
    use tenancy::ErrorKind;
    use tenancy::axum::TokenVerifier;

    let user = UserId::new_v7();
    let jwks = JwksServer::start(TEST_JWKS).await;
    jwks.serve(None);
    let remote = TokenVerifier::builder()
        .jwks_url(&jwks.url)
        .http_client(reqwest::Client::new())
        .jwks_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    for result in verify_at_once(&remote, user, "test-es256", 8).await {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
    }
    assert_eq!(jwks.fetches(), 1, "waiters take the failed fetch's answer");
    // Nothing cached yet: the next token tries again (no cooldown to wait
    // out before the first keys), and once the server answers, it verifies.
    jwks.serve(Some(TEST_JWKS.to_owned()));
    let claims = remote
        .verify_async(&es256_token(user, "test-es256"))
        .await
        .unwrap();
    assert_eq!(claims.user_id().unwrap(), user);
    assert_eq!(jwks.fetches(), 2);
}

/// A router answering `route` with the org its `Tenant` extractor found,
/// the org taken from `source`; served on loopback.
async fn whoami(demo: &host_app::Demo, source: tenancy::axum::OrgSource, route: &str) -> String {
    use axum::extract::FromRef;
    use tenancy::axum::{Tenant, TenantAuth};

    #[derive(Clone)]
    struct State(TenantAuth);
    impl FromRef<State> for TenantAuth {
        fn from_ref(state: &State) -> TenantAuth {
            state.0.clone()
        }
    }
    async fn org_of(Tenant(ctx, _): Tenant) -> String {
        ctx.org().to_string()
    }
    let auth = demo.app.auth.clone().with_org_source(source);
    serve(
        axum::Router::new()
            .route(route, axum::routing::get(org_of))
            .with_state(State(auth)),
    )
    .await
}

/// A 403 `not_a_member`.
async fn assert_not_a_member(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
    let body = response.json::<Value>().await.unwrap();
    assert_eq!(body["error"], "not_a_member", "{what}");
}

#[tokio::test]
async fn the_org_can_come_from_a_path_parameter() {
    let demo = host_app::demo().await.unwrap();
    let source = tenancy::axum::OrgSource::Path("org_id".into());
    let base = whoami(&demo, source, "/orgs/{org_id}/whoami").await;
    let http = reqwest::Client::new();
    let get = |org: tenancy::OrgId, user: tenancy::UserId| {
        http.get(format!("{base}/orgs/{org}/whoami"))
            .bearer_auth(host_app::sign_token(user))
            .send()
    };
    let response = get(demo.globex, demo.alice).await.unwrap();
    assert_eq!(response.text().await.unwrap(), demo.globex.to_string());
    let stranger = get(tenancy::OrgId::new_v7(), demo.alice).await.unwrap();
    assert_eq!(stranger.status(), StatusCode::FORBIDDEN);
    // Bob is in Acme only: Globex is a real org, but not his.
    assert_not_a_member(get(demo.globex, demo.bob).await.unwrap(), "bob").await;
}

#[tokio::test]
async fn the_org_can_come_from_a_cookie() {
    let demo = host_app::demo().await.unwrap();
    let source = tenancy::axum::OrgSource::Cookie("org".into());
    let base = whoami(&demo, source, "/whoami").await;
    let http = reqwest::Client::new();
    let get = |cookie: Option<String>, user: tenancy::UserId| {
        let request = http
            .get(format!("{base}/whoami"))
            .bearer_auth(host_app::sign_token(user));
        match cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
        .send()
    };
    let globex = format!("theme=dark; org={}", demo.globex);
    let response = get(Some(globex.clone()), demo.alice).await.unwrap();
    assert_eq!(response.text().await.unwrap(), demo.globex.to_string());
    let default = get(None, demo.alice).await.unwrap();
    let text = default.text().await.unwrap();
    assert_eq!(text, demo.acme.to_string(), "no cookie: the default org");
    assert_not_a_member(get(Some(globex), demo.bob).await.unwrap(), "bob").await;
}

/// The app of `demo` with its org taken from `source`.
fn app_with(demo: &host_app::Demo, source: tenancy::axum::OrgSource) -> host_app::App {
    host_app::App {
        auth: demo.app.auth.clone().with_org_source(source),
        ..demo.app.clone()
    }
}

#[tokio::test]
async fn a_path_parameter_missing_from_the_route_is_a_500_not_the_default_org() {
    use axum::routing::post;
    use tenancy::axum::OrgSource;

    let s = server().await;
    let bob = host_app::sign_token(s.demo.bob);
    let by_path = app_with(&s.demo, OrgSource::Path("org_id".into()));
    let base = serve(
        axum::Router::new()
            // The parameter is named `id`, not `org_id`.
            .route("/orgs/{id}/brands", post(host_app::create_brand))
            // No parameter at all.
            .route("/brands", post(host_app::create_brand))
            .route("/right/{org_id}/brands", post(host_app::create_brand))
            .with_state(by_path),
    )
    .await;
    for path in [format!("/orgs/{}/brands", s.demo.globex), "/brands".into()] {
        // Bob is in Acme only: a fallback to his default org would write there.
        let response = s
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(&bob)
            .json(&json!({"name": "Leak"}))
            .send()
            .await
            .unwrap();
        assert_misconfigured(response, &path, "`org_id`").await;
    }
    let (_, acme_brands) = s.get("/brands", Some(&bob), None).await;
    assert_eq!(acme_brands, json!([]), "nothing was written into Acme");

    // The same handler under the parameter it names works.
    let right = s
        .http
        .post(format!("{base}/right/{}/brands", s.demo.acme))
        .bearer_auth(&bob)
        .json(&json!({"name": "Bolt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::CREATED);
    let wrong_org = s
        .http
        .post(format!("{base}/right/{}/brands", s.demo.globex))
        .bearer_auth(&bob)
        .json(&json!({"name": "Leak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_org.status(), StatusCode::FORBIDDEN);
    let (_, acme_brands) = s.get("/brands", Some(&bob), None).await;
    assert_eq!(acme_brands, json!([{"id": 1, "name": "Bolt"}]));
}

#[tokio::test]
async fn an_unreadable_org_header_or_cookie_is_a_400_not_the_default_org() {
    use reqwest::header::HeaderValue;
    use tenancy::axum::OrgSource;

    let s = server().await;
    let bob = host_app::sign_token(s.demo.bob);
    let bad_header: Vec<(&str, Vec<HeaderValue>)> = vec![
        (
            "not UTF-8",
            vec![HeaderValue::from_bytes(b"\xff\xfeacme").unwrap()],
        ),
        ("empty", vec![HeaderValue::from_static("")]),
        ("blank", vec![HeaderValue::from_static("   ")]),
        (
            "sent twice",
            vec![
                HeaderValue::from_str(&s.demo.acme.to_string()).unwrap(),
                HeaderValue::from_str(&s.demo.globex.to_string()).unwrap(),
            ],
        ),
    ];
    for (what, values) in bad_header {
        let mut request = s
            .http
            .post(format!("{}/brands", s.base))
            .bearer_auth(&bob)
            .json(&json!({"name": "Leak"}));
        for value in values {
            request = request.header("x-org-id", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "bad_org_id",
            "{what}"
        );
    }
    let (_, acme_brands) = s.get("/brands", Some(&bob), None).await;
    assert_eq!(acme_brands, json!([]), "nothing was written into Acme");

    let cookie_base = serve(host_app::router(app_with(
        &s.demo,
        OrgSource::Cookie("org".into()),
    )))
    .await;
    let with_cookie = |cookie: &[u8]| {
        s.http
            .post(format!("{cookie_base}/brands"))
            .bearer_auth(&bob)
            .header("cookie", HeaderValue::from_bytes(cookie).unwrap())
            .json(&json!({"name": "Leak"}))
            .send()
    };
    let response = with_cookie(b"org=\xff\xfe").await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "cookie not UTF-8"
    );
    let response = with_cookie(b"org=").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "empty cookie");
    // Another cookie's odd bytes do not hide the org cookie.
    let odd_neighbour = format!("theme=caf\u{e9}; org={}", s.demo.globex);
    let response = with_cookie(&odd_neighbour.into_bytes()).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "Globex, where Bob is no member, not Acme"
    );
    let (_, acme_brands) = s.get("/brands", Some(&bob), None).await;
    assert_eq!(acme_brands, json!([]), "nothing was written into Acme");
}

#[tokio::test]
async fn an_org_header_is_named_once_and_an_invalid_name_is_a_config_error() {
    use tenancy::ErrorKind;
    use tenancy::axum::OrgSource;

    let s = server().await;
    for bad in ["X Org", "", "x-org\n", "x-örg"] {
        assert_eq!(
            OrgSource::header(bad).unwrap_err().kind(),
            ErrorKind::Config,
            "{bad:?}"
        );
    }
    let source = OrgSource::header("X-Tenant").unwrap();
    let base = serve(host_app::router(app_with(&s.demo, source))).await;
    let alice = host_app::sign_token(s.demo.alice);
    let orgs = |header: &'static str| {
        s.http
            .get(format!("{base}/orgs"))
            .bearer_auth(&alice)
            .header(header, s.demo.globex.to_string())
            .send()
    };
    let body: Value = orgs("x-tenant").await.unwrap().json().await.unwrap();
    assert_eq!(body["active"], json!(s.demo.globex.to_string()));
    let body: Value = orgs("x-org-id").await.unwrap().json().await.unwrap();
    assert_eq!(
        body["active"],
        json!(s.demo.acme.to_string()),
        "X-Org-Id is not the source any more: the default org"
    );
}

#[tokio::test]
async fn guarded_routes_refuse_an_org_the_user_is_not_in_and_record_nothing_there() {
    let s = server().await;
    let bob = host_app::sign_token(s.demo.bob);
    let tenancy = s.demo.app.auth.tenancy();
    let operator = PlatformOperator::new("test");
    // Globex gets the feature and a limit, so that only membership can refuse.
    let admin = tenancy.operator(&operator);
    admin
        .enable_feature(s.demo.globex, "veo_avatars")
        .await
        .unwrap();
    admin
        .set_limit(
            s.demo.globex,
            tenancy::NewLimit::from_limit_type("monthly_tokens", 10_000.into()).unwrap(),
        )
        .await
        .unwrap();

    // One route per guard: metered, feature-gated, plain tenant; each with
    // a body its handler would accept.
    for (path, body) in [
        ("/generate", json!({"prompt": "p"})),
        ("/avatars", json!({"prompt": "p"})),
        ("/brands", json!({"name": "Bolt"})),
    ] {
        let response = s
            .post(path, &bob, Some(s.demo.globex.to_string()), body)
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "not_a_member",
            "{path}"
        );
    }

    // Alice, a viewer in Globex, sees its usage: the limit line only, with
    // nothing used or held.
    let globex = tenancy.context(s.demo.alice, s.demo.globex).await.unwrap();
    let lines = tenancy.usage_summary(&globex).await.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (lines[0].metric.as_str(), lines[0].used, lines[0].reserved),
        ("tokens", 0.into(), 0.into())
    );
    assert_eq!(
        s.tokens_in(s.demo.alice, s.demo.globex).await,
        (0.into(), 0.into())
    );
    let alice = host_app::sign_token(s.demo.alice);
    let (status, brands) = s
        .get("/brands", Some(&alice), Some(s.demo.globex.to_string()))
        .await;
    assert_eq!((status, brands), (StatusCode::OK, json!([])));

    // The same request in his own org goes through and is recorded.
    let response = s
        .post(
            "/generate",
            &bob,
            Some(s.demo.acme.to_string()),
            json!({"prompt": "p"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(s.tokens_in(s.demo.bob, s.demo.acme).await.0, 1_501.into());
}

#[tokio::test]
async fn a_guard_with_an_invalid_constant_is_a_500_not_a_bad_org_id() {
    use axum::routing::post;
    use rust_decimal::Decimal;
    use tenancy::axum::{FeatureGate, FeatureName, Metered, MeteredOperation};

    struct BadKey;
    impl FeatureName for BadKey {
        const KEY: &'static str = "Veo Avatars";
    }
    struct BadMetric;
    impl MeteredOperation for BadMetric {
        const METRIC: &'static str = "Tokens!";
        fn estimate() -> Decimal {
            Decimal::ONE
        }
    }
    struct NegativeEstimate;
    impl MeteredOperation for NegativeEstimate {
        const METRIC: &'static str = "tokens";
        fn estimate() -> Decimal {
            -Decimal::ONE
        }
    }
    async fn gated(_: FeatureGate<BadKey>) -> &'static str {
        "ran"
    }
    async fn metered(_: Metered<BadMetric>) -> &'static str {
        "ran"
    }
    async fn negative(_: Metered<NegativeEstimate>) -> &'static str {
        "ran"
    }

    let s = server().await;
    let base = serve(
        axum::Router::new()
            .route("/gated", post(gated))
            .route("/metered", post(metered))
            .route("/negative", post(negative))
            .with_state(s.demo.app.clone()),
    )
    .await;
    let bob = host_app::sign_token(s.demo.bob);
    for (path, names) in [
        ("/gated", "\"Veo Avatars\""),
        ("/metered", "\"Tokens!\""),
        ("/negative", "estimate"),
    ] {
        let response = s
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(&bob)
            .header("x-org-id", s.demo.acme.to_string())
            .send()
            .await
            .unwrap();
        assert_misconfigured(response, path, names).await;
    }
    assert_eq!(
        s.tokens_in(s.demo.bob, s.demo.acme).await,
        (0.into(), 0.into())
    );
}

#[tokio::test]
async fn on_supabase_brands_live_in_the_scoped_table() {
    use tenancy::NewOrganization;
    use tenancy::supabase::SupabaseStore;

    let Some(server) = tokio::task::spawn_blocking(postgrest_server::Server::shared)
        .await
        .unwrap()
    else {
        return; // SKIPPED: printed by the harness
    };
    let store = SupabaseStore::builder()
        .rest_url(server.url())
        .service_role_key(server.service_key())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // The app checks its users' tokens with its own secret here; on a
    // project that is the project's JWT secret.
    let app = host_app::on_supabase(store, host_app::DEMO_JWT_SECRET).unwrap();
    let tenancy = app.auth.tenancy().clone();
    let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
    let acme = tenancy
        .create_organization(
            alice,
            NewOrganization::new("Acme", &unique_slug("acme")).unwrap(),
        )
        .await
        .unwrap()
        .id;
    tenancy
        .create_organization(
            bob,
            NewOrganization::new("Globex", &unique_slug("globex")).unwrap(),
        )
        .await
        .unwrap();
    let s = Client {
        base: serve(host_app::router(app)).await,
        http: reqwest::Client::new(),
    };
    let (alice, bob) = (host_app::sign_token(alice), host_app::sign_token(bob));

    let created = s
        .post("/brands", &alice, None, json!({"name": "Bolt"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let brand: Value = created.json().await.unwrap();
    assert_eq!(brand["name"], "Bolt");
    let (status, brands) = s.get("/brands", Some(&alice), None).await;
    assert_eq!((status, brands), (StatusCode::OK, json!([brand])));
    let (status, brands) = s.get("/brands", Some(&bob), None).await;
    assert_eq!(
        (status, brands),
        (StatusCode::OK, json!([])),
        "Bob's own org has none"
    );
    let (status, body) = s.get("/brands", Some(&bob), Some(acme.to_string())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_a_member"))
    );

    // Onboarding on the SQL store: a new user creates an organization;
    // a taken slug is a 409 that says so, and nothing of the database's.
    let nina = UserId::new_v7();
    let nina_token = host_app::sign_token(nina);
    let slug = unique_slug("nina");
    let created = s
        .post(
            "/orgs",
            &nina_token,
            None,
            json!({"name": "Nina", "slug": slug}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let org: Value = created.json().await.unwrap();
    assert_eq!(
        (&org["slug"], &org["role"]),
        (&json!(slug), &json!("owner"))
    );
    let (status, orgs) = s.get("/orgs", Some(&nina_token), None).await;
    assert_eq!((status, &orgs["active"]), (StatusCode::OK, &org["id"]));
    let taken = s
        .post(
            "/orgs",
            &bob,
            None,
            json!({"name": "Nina's twin", "slug": slug}),
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let text = taken.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({"error": "already_exists", "message": format!("slug \"{slug}\" is taken")})
    );
    for detail in ["23505", "duplicate key", "constraint", "organizations_slug"] {
        assert!(!text.contains(detail), "{detail} leaked: {text}");
    }
}

/// An error response: its status, `error` code and `field`.
async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body)
}

/// Onboarding: a signed-in user with no organization creates one through
/// `POST /orgs` (with `SignedIn`) and then works in it through `Tenant`.
#[tokio::test]
async fn a_new_user_creates_an_organization_and_then_works_in_it() {
    let s = server().await;
    let nina = host_app::sign_token(s.demo.nina);
    let tenancy = s.demo.app.auth.tenancy();

    let (status, body) = s.get("/orgs", Some(&nina), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_organization")),
        "Tenant refuses her: she has no organization"
    );

    // Signed out, or with a bad token: 401, as for every route.
    let anonymous = s
        .http
        .post(format!("{}/orgs", s.base))
        .json(&json!({"name": "Nina", "slug": "nina"}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(anonymous).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthenticated", "message": "a valid access token is required"})
        )
    );
    let expired = token(
        claims(s.demo.nina, -3600, "authenticated"),
        host_app::DEMO_JWT_SECRET,
    );
    let (status, _) = error_of(
        s.post(
            "/orgs",
            &expired,
            None,
            json!({"name": "Nina", "slug": "nina"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad input: a 4xx naming what is wrong, and nothing created.
    let bad = [
        (json!({"name": "", "slug": "nina"}), "name"),
        (json!({"name": "Nina", "slug": "Nina Studio"}), "slug"),
        (json!({"name": "Nina"}), "slug"),
        (
            json!({"name": "Nina", "slug": "nina", "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (json!("nina-studio"), "body"),
    ];
    for (request, field) in bad {
        let (status, body) = error_of(s.post("/orgs", &nina, None, request.clone()).await).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{request}: {body}"
        );
        assert_eq!(
            (body["error"].as_str(), body["field"].as_str()),
            (Some("invalid_input"), Some(field)),
            "{request}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{request}: {message}");
    }
    let not_json = s
        .http
        .post(format!("{}/orgs", s.base))
        .bearer_auth(&nina)
        .header("content-type", "application/json")
        .body("{name: nina")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(not_json).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("body")),
        "{body}"
    );
    let (status, body) = error_of(
        s.post(
            "/orgs",
            &nina,
            None,
            json!({"name": "Acme too", "slug": "acme"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body,
        json!({"error": "already_exists", "message": "slug \"acme\" is taken"})
    );
    assert!(tenancy.orgs_for_user(s.demo.nina).await.unwrap().is_empty());

    // Created: she is its owner, and it is her default.
    let created = s
        .post(
            "/orgs",
            &nina,
            None,
            json!({"name": "Nina Studio", "slug": "nina-studio", "timezone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let org: Value = created.json().await.unwrap();
    let id = org["id"].as_str().unwrap().to_owned();
    assert_eq!(
        org,
        json!({"id": id, "slug": "nina-studio", "name": "Nina Studio",
               "timezone": "Europe/Paris", "role": "owner"})
    );
    let (status, orgs) = s.get("/orgs", Some(&nina), None).await;
    assert_eq!(status, StatusCode::OK, "{orgs}");
    assert_eq!(orgs["active"], json!(id));
    assert_eq!(orgs["orgs"].as_array().unwrap().len(), 1);
    assert_eq!(orgs["orgs"][0]["role"], "owner");
    let brand = s
        .post("/brands", &nina, None, json!({"name": "Bolt"}))
        .await;
    assert_eq!(brand.status(), StatusCode::CREATED);
    let ctx = tenancy
        .context(s.demo.nina, tenancy::OrgId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(ctx.role(), tenancy::Role::Owner);

    // A user who has organizations may create another through the API.
    let alice = host_app::sign_token(s.demo.alice);
    let another = s
        .post(
            "/orgs",
            &alice,
            None,
            json!({"name": "Side", "slug": "side-project"}),
        )
        .await;
    assert_eq!(another.status(), StatusCode::CREATED);
    assert_eq!(tenancy.orgs_for_user(s.demo.alice).await.unwrap().len(), 4);
}

/// `SignedIn` and `Tenant` hand over exactly the token the verifier
/// accepted, with `SignedIn`'s claims; `SignedIn` refuses as `Tenant` does,
/// and the two share one verification in a handler that takes both.
#[tokio::test]
async fn signed_in_and_tenant_expose_the_verified_token() {
    use axum::routing::get;
    use tenancy::axum::{SignedIn, Tenant};

    async fn me(me: SignedIn) -> axum::Json<Value> {
        axum::Json(json!({
            "user": me.user(), "email": me.claims().email,
            "app_metadata": me.claims().app_metadata, "token": me.access_token(),
            "debug": format!("{me:?}"),
        }))
    }
    async fn both(me: SignedIn, tenant: Tenant) -> axum::Json<Value> {
        axum::Json(json!({
            "same_user": me.user() == tenant.context().user(),
            "org": tenant.context().org(),
            "token": tenant.access_token(),
            "same_token": me.access_token() == tenant.access_token(),
            "debug": format!("{tenant:?}"),
        }))
    }
    let demo = host_app::demo().await.unwrap();
    let base = serve(
        axum::Router::new()
            .route("/me", get(me))
            .route("/both", get(both))
            .with_state(demo.app.clone()),
    )
    .await;
    let http = reqwest::Client::new();
    let mut with_email = claims(demo.nina, 3600, "authenticated");
    with_email["email"] = json!("nina@example.com");
    with_email["app_metadata"] = json!({"provider": "email"});
    let nina = token(with_email, host_app::DEMO_JWT_SECRET);
    let response = http
        .get(format!("{base}/me"))
        .header("authorization", format!("bearer   {nina} "))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "no organization needed");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"], json!(demo.nina));
    assert_eq!(body["email"], "nina@example.com");
    assert_eq!(body["app_metadata"], json!({"provider": "email"}));
    assert_eq!(body["token"], json!(nina), "the token as verified");
    let debug = body["debug"].as_str().unwrap();
    assert!(
        !debug.contains(&nina[..20]),
        "Debug shows no token: {debug}"
    );

    let alice = host_app::sign_token(demo.alice);
    let response = http
        .get(format!("{base}/both"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            &body["same_user"],
            &body["org"],
            &body["token"],
            &body["same_token"]
        ),
        (&json!(true), &json!(demo.acme), &json!(alice), &json!(true))
    );
    let debug = body["debug"].as_str().unwrap();
    assert!(
        !debug.contains(&alice[..20]),
        "Debug shows no token: {debug}"
    );

    // SignedIn's refusals are Tenant's.
    let refused = [
        ("no token", None, None),
        ("not bearer", Some(format!("Basic {alice}")), None),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                token(
                    claims(demo.nina, -3600, "authenticated"),
                    host_app::DEMO_JWT_SECRET
                )
            )),
            None,
        ),
        (
            "twice",
            Some(format!("Bearer {alice}")),
            Some(format!("Bearer {alice}")),
        ),
    ];
    for (what, first, second) in refused {
        let mut request = http.get(format!("{base}/me"));
        for value in [first, second].into_iter().flatten() {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let expected = if what == "twice" {
            (StatusCode::BAD_REQUEST, "doubled_authorization")
        } else {
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            expected,
            "{what}"
        );
    }
}

/// A rejection says, outside a response too, the status and the code its
/// response carries, and is a `std::error::Error` a handler can pass on.
#[tokio::test]
async fn rejections_name_their_status_and_code() {
    use tenancy::axum::TenantRejection;

    let cases = [
        (
            TenantRejection::Unauthenticated,
            401,
            "unauthenticated",
            "a valid access token is required",
        ),
        (
            TenantRejection::BadOrgId,
            400,
            "bad_org_id",
            "the organization id is not a UUID",
        ),
        (
            TenantRejection::NotAMember,
            403,
            "not_a_member",
            "you are not a member of this organization",
        ),
        (
            TenantRejection::FeatureDisabled("veo_avatars"),
            403,
            "feature_disabled",
            "the feature veo_avatars is off",
        ),
        (
            TenantRejection::Unavailable,
            503,
            "unavailable",
            "try again shortly",
        ),
        (
            TenantRejection::Misconfigured("no `org_id`".into()),
            500,
            "misconfigured",
            "no `org_id`",
        ),
    ];
    for (rejection, status, code, message) in cases {
        assert_eq!(
            (rejection.status().as_u16(), rejection.code()),
            (status, code)
        );
        let expected = format!("{status}: {code}: {message}");
        assert_eq!(rejection.to_string(), expected);
        let as_error: &dyn std::error::Error = &rejection;
        assert_eq!(as_error.to_string(), expected);

        let response = rejection.into_response();
        assert_eq!(response.status().as_u16(), status);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (&body["error"], &body["message"]),
            (&json!(code), &json!(message))
        );
    }
    let denied = TenantRejection::from_error(tenancy::Error::permission_denied("not in it"));
    assert_eq!(denied.code(), "not_a_member");
}

// ---- abandoned requests ---------------------------------------------------------------

mod abandoned {
    use std::time::Duration;

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::FromRef;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use rust_decimal::Decimal;
    use tenancy::axum::{Abandoned, Metered, MeteredOperation, TenantAuth, TokenVerifier};
    use tenancy::limits::NewLimit;
    use tenancy::{
        MemoryStore, MetricKey, NewOrganization, OrgId, Period, PlatformOperator, Tenancy, UserId,
    };
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

    /// A streamed completion: ten chunks, 100 tokens each, reported as
    /// each is produced; the stream commits what it reported at its end.
    struct Chat;
    impl MeteredOperation for Chat {
        const METRIC: &'static str = "tokens";
        fn estimate() -> Decimal {
            Decimal::from(1_000)
        }
    }

    /// The same, billed in full once started.
    struct Render;
    impl MeteredOperation for Render {
        const METRIC: &'static str = "tokens";
        const ABANDONED: Abandoned = Abandoned::CommitEstimate;
        fn estimate() -> Decimal {
            Decimal::from(1_000)
        }
    }

    /// Nothing recorded when abandoned.
    struct Preview;
    impl MeteredOperation for Preview {
        const METRIC: &'static str = "tokens";
        const ABANDONED: Abandoned = Abandoned::Release;
        fn estimate() -> Decimal {
            Decimal::from(1_000)
        }
    }

    #[derive(Clone)]
    struct App(TenantAuth);
    impl FromRef<App> for TenantAuth {
        fn from_ref(app: &App) -> TenantAuth {
            app.0.clone()
        }
    }

    async fn stream<M: MeteredOperation>(metered: Metered<M>) -> Response {
        let meter = metered.meter();
        let chunks = futures_util::stream::unfold((0, Some(metered)), move |(i, metered)| {
            let meter = meter.clone();
            async move {
                if i == 10 {
                    if let Some(metered) = metered {
                        metered.commit_reported().await.expect("commit at the end");
                    }
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
                meter.report(Decimal::from(100)).unwrap();
                let chunk = Bytes::from(format!("chunk {i}\n"));
                Some((Ok::<_, std::io::Error>(chunk), (i + 1, metered)))
            }
        });
        Body::from_stream(chunks).into_response()
    }

    /// Reports 250 tokens, then fails before answering.
    async fn fail_after_work<M: MeteredOperation>(metered: Metered<M>) -> Response {
        metered.report(Decimal::from(250)).unwrap();
        (axum::http::StatusCode::BAD_GATEWAY, "the provider failed").into_response()
    }

    struct Setup {
        tenancy: Tenancy,
        org: OrgId,
        user: UserId,
        base: String,
    }

    async fn setup() -> Setup {
        let tenancy = Tenancy::builder()
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let user = UserId::new_v7();
        let org = tenancy
            .create_organization(user, NewOrganization::new("Chat", "chat").unwrap())
            .await
            .unwrap()
            .id;
        let admin = PlatformOperator::new("test");
        let limit = NewLimit::new(MetricKey::TOKENS, Period::Monthly, Decimal::from(100_000));
        tenancy
            .operator(&admin)
            .set_limit(org, limit.unwrap())
            .await
            .unwrap();
        let auth = TenantAuth::new(tenancy.clone(), TokenVerifier::hs256(SECRET).unwrap());
        let router = Router::new()
            .route("/chat", get(stream::<Chat>))
            .route("/render", get(stream::<Render>))
            .route("/chat-fails", get(fail_after_work::<Chat>))
            .route("/render-fails", get(fail_after_work::<Render>))
            .route("/preview-fails", get(fail_after_work::<Preview>))
            .with_state(App(auth));
        let base = super::serve(router).await;
        Setup {
            tenancy,
            org,
            user,
            base,
        }
    }

    impl Setup {
        fn bearer(&self) -> String {
            super::token(super::claims(self.user, 600, "authenticated"), SECRET)
        }

        /// Tokens used and held, once nothing is held any more.
        async fn settled(&self) -> Decimal {
            let ctx = self.tenancy.context(self.user, self.org).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let d = self
                    .tenancy
                    .check_limit(&ctx, "tokens", Decimal::ZERO)
                    .await
                    .unwrap();
                if d.reserved.is_zero() {
                    return d.used;
                }
                assert!(tokio::time::Instant::now() < deadline, "still held: {d:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// GETs `path` over a raw connection, reads until `chunks` chunks
        /// arrived, and hangs up.
        async fn hang_up_after(&self, path: &str, chunks: usize) {
            let addr = self.base.trim_start_matches("http://");
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
                self.bearer()
            );
            conn.write_all(request.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            let last = format!("chunk {}\n", chunks - 1);
            while !String::from_utf8_lossy(&seen).contains(&last) {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the server closed first: {}",
                    String::from_utf8_lossy(&seen)
                );
                seen.extend_from_slice(&buf[..n]);
            }
            drop(conn);
        }
    }

    /// A client that hangs up mid-stream is billed for what was streamed,
    /// not released; one that reads it all is billed for all of it.
    #[tokio::test]
    async fn a_stream_cut_short_is_billed_for_what_it_produced() {
        let s = setup().await;
        s.hang_up_after("/chat", 3).await;
        let used = s.settled().await;
        assert!(
            used >= Decimal::from(300) && used < Decimal::from(1_000),
            "billed for the chunks produced before the hang-up, not released: {used}"
        );
        let body = reqwest::Client::new()
            .get(format!("{}/chat", s.base))
            .bearer_auth(s.bearer())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body.lines().count(), 10);
        assert_eq!(s.settled().await, used + Decimal::from(1_000));
    }

    /// Each policy, for a handler that reported 250 tokens and failed:
    /// commit what was reported (the default), commit the estimate, or
    /// release; and a stream billed in full once started.
    #[tokio::test]
    async fn each_policy_settles_an_abandoned_hold_its_way() {
        let s = setup().await;
        let get = async |path: &str| {
            reqwest::Client::new()
                .get(format!("{}{path}", s.base))
                .bearer_auth(s.bearer())
                .send()
                .await
                .unwrap()
                .status()
        };
        assert_eq!(get("/chat-fails").await, 502);
        assert_eq!(s.settled().await, Decimal::from(250), "what was reported");
        assert_eq!(get("/render-fails").await, 502);
        assert_eq!(s.settled().await, Decimal::from(1_250), "the estimate");
        assert_eq!(get("/preview-fails").await, 502);
        assert_eq!(s.settled().await, Decimal::from(1_250), "released: nothing");
        s.hang_up_after("/render", 2).await;
        assert_eq!(
            s.settled().await,
            Decimal::from(2_250),
            "the estimate, cut short"
        );
    }
}
