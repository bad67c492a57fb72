//! An axum host app using `tenancy`: every route needs a Supabase access
//! token; the org comes from the `X-Org-Id` header (or the user's default).
//!
//! ```text
//! cargo run --example host_app --features axum
//! ```
//!
//! It runs on `MemoryStore` with two seeded demo users and prints curl lines
//! with tokens it signed for them. Routes:
//!
//! - `GET /orgs` — the user's organizations;
//! - `GET /brands`, `POST /brands` — brands of the active organization;
//! - `POST /avatars` — gated by the `veo_avatars` feature;
//! - `POST /generate` — reserves tokens against the limit, records what was
//!   used (tokens and cost).
//!
//! It listens on 127.0.0.1, on `PORT` when set. With `SUPABASE_URL`,
//! `SUPABASE_SERVICE_ROLE_KEY` and `SUPABASE_JWT_SECRET` set it runs on
//! `SupabaseStore` instead (brands through the scoped `brands` table, real
//! users' tokens, nothing seeded).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenancy::axum::{
    FeatureGate, FeatureName, Metered, MeteredOperation, Tenant, TenantAuth, TokenVerifier,
};
use tenancy::supabase::SupabaseStore;
use tenancy::{
    Action, MemoryStore, NewLimit, NewOrganization, OrgId, PlatformOperator, Role, Tenancy,
    TenantContext, UsageEvent, UserId,
};

/// The demo's JWT secret; a real app uses `SUPABASE_JWT_SECRET`.
pub const DEMO_JWT_SECRET: &str = "demo-secret-that-is-at-least-32-characters-long";

/// Tokens an AI generation is estimated to use, reserved up front.
pub const GENERATE_ESTIMATE: i64 = 2_000;

/// A brand, the host's own org-owned table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Brand {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// The app's state: the tenant extractor's needs and the brands table.
#[derive(Debug, Clone)]
pub struct App {
    /// Token verification and tenant resolution.
    pub auth: TenantAuth,
    /// The host's brands table.
    pub brands: Brands,
}

/// Where brands live: in memory for the demo, or the `brands` table on
/// Supabase, always scoped to the request's organization.
#[derive(Debug, Clone)]
pub enum Brands {
    /// In memory, by organization.
    Memory(Arc<Mutex<HashMap<OrgId, Vec<Brand>>>>),
    /// `public.brands`, adopted with `tenancy.adopt_table`.
    Supabase(SupabaseStore),
}

impl Brands {
    async fn list(&self, ctx: &TenantContext) -> tenancy::Result<Vec<Brand>> {
        match self {
            Brands::Memory(map) => Ok(map
                .lock()
                .unwrap()
                .get(&ctx.org())
                .cloned()
                .unwrap_or_default()),
            Brands::Supabase(store) => store.table(ctx, "brands").list("id,name").await,
        }
    }

    async fn create(&self, ctx: &TenantContext, name: &str) -> tenancy::Result<Brand> {
        match self {
            Brands::Memory(map) => {
                let mut map = map.lock().unwrap();
                let list = map.entry(ctx.org()).or_default();
                let brand = Brand {
                    id: list.len() as u64 + 1,
                    name: name.to_owned(),
                };
                list.push(brand.clone());
                Ok(brand)
            }
            Brands::Supabase(store) => {
                let rows: Vec<Brand> = store
                    .table(ctx, "brands")
                    .insert(&[json!({ "name": name })])
                    .await?;
                rows.into_iter().next().ok_or_else(|| {
                    tenancy::Error::new(tenancy::ErrorKind::Unexpected, "insert returned no row")
                })
            }
        }
    }
}

impl FromRef<App> for TenantAuth {
    fn from_ref(app: &App) -> TenantAuth {
        app.auth.clone()
    }
}

/// The `veo_avatars` feature.
#[derive(Debug)]
pub struct VeoAvatars;
impl FeatureName for VeoAvatars {
    const KEY: &'static str = "veo_avatars";
}

/// An AI generation: consumes `tokens`.
#[derive(Debug)]
pub struct Generate;
impl MeteredOperation for Generate {
    const METRIC: &'static str = "tokens";
    fn estimate() -> Decimal {
        Decimal::from(GENERATE_ESTIMATE)
    }
}

/// The router.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/orgs", get(list_orgs))
        .route("/brands", get(list_brands).post(create_brand))
        .route("/avatars", post(render_avatar))
        .route("/generate", post(generate))
        .with_state(app)
}

async fn list_orgs(State(app): State<App>, Tenant(ctx): Tenant) -> Result<Json<Value>, StatusCode> {
    let orgs = app
        .auth
        .tenancy()
        .orgs_for_user(ctx.user())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let orgs: Vec<Value> = orgs
        .iter()
        .map(|m| json!({"id": m.organization.id, "slug": m.organization.slug, "name": m.organization.name, "role": m.role}))
        .collect();
    Ok(Json(json!({"active": ctx.org(), "orgs": orgs})))
}

/// `GET /brands`: the active organization's brands.
pub async fn list_brands(
    State(app): State<App>,
    Tenant(ctx): Tenant,
) -> Result<Json<Vec<Brand>>, StatusCode> {
    app.brands
        .list(&ctx)
        .await
        .map(Json)
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

/// The body of `POST /brands`.
#[derive(Debug, Deserialize)]
pub struct NewBrand {
    name: String,
}

/// `POST /brands`: a brand in the active organization (members and up).
pub async fn create_brand(
    State(app): State<App>,
    Tenant(ctx): Tenant,
    Json(new): Json<NewBrand>,
) -> Result<(StatusCode, Json<Brand>), (StatusCode, Json<Value>)> {
    if !ctx.can(Action::WriteData) {
        return Err((StatusCode::FORBIDDEN, Json(json!({"error": "forbidden"}))));
    }
    let name = new.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "invalid_input", "field": "name"})),
        ));
    }
    let brand = app.brands.create(&ctx, name).await.map_err(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "unavailable"})),
        )
    })?;
    Ok((StatusCode::CREATED, Json(brand)))
}

async fn render_avatar(gate: FeatureGate<VeoAvatars>) -> Json<Value> {
    Json(json!({"status": "rendering", "org": gate.context().org()}))
}

#[derive(Deserialize)]
struct GenerateRequest {
    prompt: String,
}

async fn generate(
    metered: Metered<Generate>,
    Json(request): Json<GenerateRequest>,
) -> Result<Json<Value>, StatusCode> {
    // Stand-in for the model call: usage grows with the prompt.
    let input = 500 + request.prompt.len() as u64;
    let output = 1_000;
    let cost = Decimal::new((input * 25 + output * 100) as i64, 7); // $2.50 / $10 per M
    let ctx = metered.context().clone();
    let event = UsageEvent::new(ctx.org())
        .user(ctx.user())
        .ai_call("openai", "gpt-4o", "generate")
        .tokens(input, 0, output)
        .cost_usd(cost);
    metered
        .commit_event(event)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(json!({"tokens": input + output, "cost_usd": cost})))
}

/// The seeded demo world.
#[derive(Debug)]
pub struct Demo {
    /// The app state.
    pub app: App,
    /// Owner of Acme, viewer in Globex.
    pub alice: UserId,
    /// Member of Acme.
    pub bob: UserId,
    /// Acme: has `veo_avatars`, a monthly limit of 10 000 tokens.
    pub acme: OrgId,
    /// Globex: no features.
    pub globex: OrgId,
}

/// Builds the demo on `MemoryStore`.
pub async fn demo() -> tenancy::Result<Demo> {
    let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    let operator = PlatformOperator::new("host_app");
    let (alice, bob, carol) = (UserId::new_v7(), UserId::new_v7(), UserId::new_v7());
    let acme = tenancy
        .create_organization(alice, NewOrganization::new("Acme", "acme")?)
        .await?
        .id;
    let globex = tenancy
        .create_organization(carol, NewOrganization::new("Globex", "globex")?)
        .await?
        .id;
    tenancy
        .add_member(&tenancy.context(alice, acme).await?, bob, Role::Member)
        .await?;
    tenancy
        .add_member(&tenancy.context(carol, globex).await?, alice, Role::Viewer)
        .await?;
    tenancy
        .enable_feature(&operator, acme, "veo_avatars")
        .await?;
    tenancy
        .set_limit(
            &operator,
            acme,
            NewLimit::from_limit_type("monthly_tokens", Decimal::from(10_000))?,
        )
        .await?;
    let auth = TenantAuth::new(tenancy, TokenVerifier::hs256(DEMO_JWT_SECRET));
    Ok(Demo {
        app: App {
            auth,
            brands: Brands::Memory(Arc::default()),
        },
        alice,
        bob,
        acme,
        globex,
    })
}

/// Signs a Supabase-style access token for `user`, valid for an hour.
pub fn sign_token(user: UserId) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = json!({"sub": user.to_string(), "aud": "authenticated", "role": "authenticated", "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEMO_JWT_SECRET.as_bytes()),
    )
    .expect("HS256 signing does not fail")
}

#[allow(dead_code)] // used when built as the example, not when included by tests
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = demo().await?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("host_app listening on http://{addr}\n");
    let (alice, bob) = (sign_token(demo.alice), sign_token(demo.bob));
    println!("# alice's organizations (owner of Acme, viewer in Globex)");
    println!("curl -s http://{addr}/orgs -H 'Authorization: Bearer {alice}'\n");
    println!("# bob creates a brand in Acme, his default org");
    println!(
        "curl -s http://{addr}/brands -H 'Authorization: Bearer {bob}' -H 'content-type: application/json' -d '{{\"name\":\"Bolt\"}}'\n"
    );
    println!("# alice switches to Globex: no veo_avatars there (403)");
    println!(
        "curl -s -X POST http://{addr}/avatars -H 'Authorization: Bearer {alice}' -H 'X-Org-Id: {}'\n",
        demo.globex
    );
    println!("# bob generates (reserves 2000 tokens of Acme's 10000/month; 429 once spent)");
    println!(
        "curl -s -X POST http://{addr}/generate -H 'Authorization: Bearer {bob}' -H 'content-type: application/json' -d '{{\"prompt\":\"a summer ad\"}}'\n"
    );
    println!("# no token: 401");
    println!("curl -si http://{addr}/brands\n");
    axum::serve(listener, router(demo.app)).await?;
    Ok(())
}
