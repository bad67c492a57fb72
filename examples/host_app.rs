//! An axum host app using `tenancy`: an API whose every route needs a
//! Supabase access token (the org from the `X-Org-Id` header, or the user's
//! default), and the console mounted at `/console`.
//!
//! ```text
//! cargo run --example host_app --features axum,supabase,console,hold-tokens
//! ```
//!
//! By default it runs on `MemoryStore` with seeded demo users,
//! organizations and a month of usage, and prints clickable dev-only
//! sign-in links to the console (as an owner, a viewer, the platform
//! operator and a new user with no organization) and curl lines with
//! tokens it signed. Errors are JSON, by the error's kind (`tenancy::Error`
//! is a response with the `axum` feature): a taken slug is 409
//! `already_exists`, an invalid name 422 `invalid_input` naming the field,
//! a store outage 503, and never a database's detail. Routes:
//!
//! - `GET /orgs` — the user's organizations (403 `no_organization` for a
//!   user who has none yet);
//! - `POST /orgs` — onboarding: any signed-in user creates an
//!   organization, and becomes its owner (`{"name", "slug", "timezone"?}`);
//! - `GET /brands`, `POST /brands` — brands of the active organization;
//! - `POST /avatars` — gated by the `veo_avatars` feature;
//! - `POST /generate` — reserves tokens against the limit, records what was
//!   used (tokens and cost);
//! - `POST /jobs` — the same generation, queued: the API reserves (429
//!   when the limit would pass), seals the hold into a signed token
//!   (`Tenancy::seal`, feature `hold-tokens`) and queues it with the job
//!   (202); a worker opens the token, calls the model and commits what was
//!   used, exactly once;
//! - `/console/…` — the console (`tenancy::console`);
//! - `GET /dev/sign-in?as=<name>` — demo only: sets the access-token cookie
//!   for a seeded user and opens the console.
//!
//! It listens on 127.0.0.1, on `PORT` when set. When `SUPABASE_URL` (or
//! `SUPABASE_REST_URL`) is set it runs on `SupabaseStore` instead, from
//! `SupabaseStore::from_env()` (so `SUPABASE_SERVICE_ROLE_KEY` too) and
//! `SUPABASE_JWT_SECRET`: organizations, features and limits in the
//! project's tenancy tables, brands through the scoped `brands` table
//! (adopted with `tenancy.adopt_table`), your users' own access tokens,
//! nothing seeded. A missing variable stops it with a message naming it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenancy::axum::TenantRejection;
use tenancy::axum::{
    FeatureGate, FeatureName, Metered, MeteredOperation, SignedIn, Tenant, TenantAuth,
    TokenVerifier,
};
use tenancy::clock::Clock;
use tenancy::console::{self, ConsoleConfig, OperatorPolicy};
use tenancy::memory::MemoryUserDirectory;
use tenancy::model::invitation::NewInvitation;
use tenancy::store::UserDirectory;
use tenancy::supabase::{ENV_JWT_SECRET, ENV_REST_URL, ENV_URL, SupabaseStore};
use tenancy::{
    Action, Error, ErrorKind, HoldToken, MemoryStore, MetricKey, NewLimit, NewOrganization, OrgId,
    PlatformOperator, ReserveOutcome, Role, Tenancy, TenantContext, UsageEvent, UserId,
};
use tokio::sync::mpsc;

/// The demo's JWT secret; a real app uses `SUPABASE_JWT_SECRET`.
pub const DEMO_JWT_SECRET: &str = "demo-secret-that-is-at-least-32-characters-long";

/// Tokens an AI generation is estimated to use, reserved up front.
pub const GENERATE_ESTIMATE: i64 = 2_000;

/// The demo's secret for sealing holds, shared by the API and its worker; a
/// real app gives both the same `TENANCY_HOLD_SECRET` (32 bytes or more).
pub const DEMO_HOLD_SECRET: &str = "demo-hold-secret-that-is-at-least-32-bytes";

/// A queued generation: its hold, sealed, and what to generate. Both are
/// strings, as on a real queue.
#[derive(Debug)]
pub struct Job {
    /// The hold the API took for it, signed.
    pub hold: HoldToken,
    /// The prompt.
    pub prompt: String,
}

/// A brand, the host's own org-owned table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Brand {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// The app's state: the tenant extractor's needs, the brands table, the
/// console, and (demo only) who may be signed in by name.
#[derive(Debug, Clone)]
pub struct App {
    /// Token verification and tenant resolution.
    pub auth: TenantAuth,
    /// The host's brands table.
    pub brands: Brands,
    /// The console, mounted at `/console`.
    pub console: ConsoleConfig,
    /// Demo only: the seeded users `GET /dev/sign-in?as=<name>` signs in.
    pub dev_users: Option<Arc<HashMap<&'static str, UserId>>>,
    /// The queue to the generation worker ([`start_worker`]); in-process
    /// here, a durable queue in a real app.
    pub jobs: mpsc::UnboundedSender<Job>,
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

/// The router: the API, the console at `/console`, and in the demo the
/// dev sign-in.
pub fn router(app: App) -> Router {
    let console = console::router(app.console.clone());
    let mut routes = Router::new()
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/brands", get(list_brands).post(create_brand))
        .route("/avatars", post(render_avatar))
        .route("/generate", post(generate))
        .route("/jobs", post(enqueue_generation));
    if app.dev_users.is_some() {
        routes = routes.route("/dev/sign-in", get(dev_sign_in));
    }
    // axum's `nest` serves the console's own `/` at `/console` exactly;
    // the trailing-slash form people type is sent there.
    routes
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .with_state(app)
        .nest("/console", console)
}

#[derive(Debug, Deserialize)]
struct SignInAs {
    #[serde(rename = "as")]
    name: String,
}

/// Demo only: signs in a seeded user by name, by setting the cookie the
/// console reads the access token from, and opens the console. A real host
/// signs users in with Supabase Auth, which sets the session itself.
async fn dev_sign_in(State(app): State<App>, Query(who): Query<SignInAs>) -> Response {
    let Some(user) = app
        .dev_users
        .as_ref()
        .and_then(|u| u.get(who.name.as_str()))
    else {
        return (StatusCode::NOT_FOUND, "no such demo user").into_response();
    };
    let cookie = format!(
        "sb-access-token={}; Path=/; HttpOnly; SameSite=Strict",
        sign_token(*user)
    );
    let mut response = Redirect::to("/console").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A JSON body, or why it is not one (malformed, missing, not JSON) as an
/// `invalid_input` error naming the body, like every other bad input.
fn body<T>(json: Result<Json<T>, JsonRejection>) -> tenancy::Result<T> {
    json.map(|Json(value)| value)
        .map_err(|rejection| Error::invalid_input("body", rejection.body_text()))
}

/// `GET /orgs`: the user's organizations and the active one.
async fn list_orgs(State(app): State<App>, Tenant(ctx, _): Tenant) -> tenancy::Result<Json<Value>> {
    let orgs = app.auth.tenancy().orgs_for_user(ctx.user()).await?;
    let orgs: Vec<Value> = orgs
        .iter()
        .map(|m| json!({"id": m.organization.id, "slug": m.organization.slug, "name": m.organization.name, "role": m.role}))
        .collect();
    Ok(Json(json!({"active": ctx.org(), "orgs": orgs})))
}

/// The body of `POST /orgs`. Missing fields are empty, so that they fail
/// validation with a message naming them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewOrg {
    name: String,
    slug: String,
    /// An IANA time zone; UTC when absent.
    timezone: Option<String>,
}

/// `POST /orgs`: onboarding. A signed-in user, with or without an
/// organization, creates one and becomes its owner (201). Then `Tenant`
/// finds it: it is their default if it is their first.
pub async fn create_org(
    State(app): State<App>,
    me: SignedIn,
    new: Result<Json<NewOrg>, JsonRejection>,
) -> tenancy::Result<(StatusCode, Json<Value>)> {
    let new = body(new)?;
    let mut org = NewOrganization::new(&new.name, &new.slug)?;
    if let Some(zone) = &new.timezone {
        org = org.timezone(zone)?;
    }
    let org = app
        .auth
        .tenancy()
        .create_organization(me.user(), org)
        .await?;
    let created = json!({"id": org.id, "slug": org.slug, "name": org.name,
                         "timezone": org.timezone.name(), "role": Role::Owner});
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /brands`: the active organization's brands.
pub async fn list_brands(
    State(app): State<App>,
    Tenant(ctx, _): Tenant,
) -> tenancy::Result<Json<Vec<Brand>>> {
    app.brands.list(&ctx).await.map(Json)
}

/// The body of `POST /brands`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewBrand {
    name: String,
}

/// `POST /brands`: a brand in the active organization (members and up).
pub async fn create_brand(
    State(app): State<App>,
    Tenant(ctx, _): Tenant,
    new: Result<Json<NewBrand>, JsonRejection>,
) -> tenancy::Result<(StatusCode, Json<Brand>)> {
    ctx.require(Action::WriteData)?;
    let new = body(new)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid_input(
            "name",
            "a brand's name is 1 to 100 characters",
        ));
    }
    let brand = app.brands.create(&ctx, name).await?;
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
    request: Result<Json<GenerateRequest>, JsonRejection>,
) -> tenancy::Result<Json<Value>> {
    // A bad body drops `metered`, which releases the hold.
    let request = body(request)?;
    let ctx = metered.context().clone();
    let event = call_model(ctx.org(), &request.prompt).user(ctx.user());
    let tokens = event.total_tokens();
    let cost = event.cost_usd;
    metered.commit_event(event).await?;
    Ok(Json(json!({"tokens": tokens, "cost_usd": cost})))
}

/// Stand-in for the model call: usage grows with the prompt; priced at
/// $2.50 / $10 per million input / output tokens.
fn call_model(org: OrgId, prompt: &str) -> UsageEvent {
    let input = 500 + prompt.len() as u64;
    let output = 1_000;
    let cost = Decimal::new((input * 25 + output * 100) as i64, 7);
    UsageEvent::new(org)
        .ai_call("openai", "gpt-4o", "generate")
        .tokens(input, 0, output)
        .cost_usd(cost)
}

/// `POST /jobs`: reserves the estimate now, where a denial can still be a
/// 429, and queues the job with its hold sealed; the worker commits.
async fn enqueue_generation(
    State(app): State<App>,
    Tenant(ctx, _): Tenant,
    request: Result<Json<GenerateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), TenantRejection> {
    let request = body(request)?;
    let tenancy = app.auth.tenancy();
    let hold = match tenancy
        .reserve(&ctx, Generate::METRIC, Generate::estimate())
        .await?
    {
        ReserveOutcome::Granted(hold) => hold,
        ReserveOutcome::Denied(decision) => {
            return Err(TenantRejection::LimitExceeded(Box::new(decision)));
        }
    };
    let job = Job {
        hold: tenancy.seal(&hold)?,
        prompt: request.prompt,
    };
    if app.jobs.send(job).is_err() {
        tenancy.release(&hold).await?;
        return Err(Error::new(ErrorKind::Unavailable, "the generation worker has stopped").into());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job": hold.id(), "reserved": GENERATE_ESTIMATE})),
    ))
}

/// Starts the generation worker on `tenancy` (built with the API's hold
/// secret) and returns its queue. Each job's hold is opened (a token this
/// app did not seal is refused, recording nothing), the model is called,
/// and what it used is committed: once, however often a job is delivered.
pub fn start_worker(tenancy: Tenancy) -> mpsc::UnboundedSender<Job> {
    let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            if let Err(e) = run_job(&tenancy, job).await {
                eprintln!("host_app worker: {e}");
            }
        }
    });
    jobs
}

async fn run_job(tenancy: &Tenancy, job: Job) -> tenancy::Result<()> {
    let hold = tenancy.open(&job.hold)?;
    tenancy
        .commit_event(&hold, call_model(hold.org(), &job.prompt))
        .await?;
    Ok(())
}

/// The seeded demo world.
#[derive(Debug)]
pub struct Demo {
    /// The app state.
    pub app: App,
    /// Owner of Acme, viewer in Globex and Initech.
    pub alice: UserId,
    /// Member of Acme.
    pub bob: UserId,
    /// Owner of Globex and Initech.
    pub carol: UserId,
    /// Viewer in Acme.
    pub dan: UserId,
    /// Member of Initech.
    pub erin: UserId,
    /// The platform operator (a member of nothing).
    pub olivia: UserId,
    /// A new user: signed in, a member of nothing yet (onboarding).
    pub nina: UserId,
    /// A new user with a confirmed email, a member of nothing: whom the
    /// invitation scenarios invite (`frank@example.com`).
    pub frank: UserId,
    /// Who the users are: names and emails, as a sign-up stores them.
    pub directory: Arc<MemoryUserDirectory>,
    /// Acme: `veo_avatars` on, a monthly limit of 10 000 tokens, no usage
    /// yet: the API's playground.
    pub acme: OrgId,
    /// Globex: no features, no limits.
    pub globex: OrgId,
    /// Initech, in Asia/Tokyo: the console's showcase. A month of token
    /// usage under a monthly limit of 1 000 000 tokens, and 46 of its 50
    /// images this month (92 %: a warning).
    pub initech: OrgId,
}

/// Initech's monthly image limit and what is used of it: 92 %.
pub const DEMO_IMAGES: (i64, i64) = (50, 46);

/// Builds the demo on `MemoryStore`, on the system clock.
pub async fn demo() -> tenancy::Result<Demo> {
    demo_with(tenancy::clock::SystemClock).await
}

/// Builds the demo on `MemoryStore` with `clock`: Initech's month of usage
/// ends at its `now`.
pub async fn demo_with<C: Clock + Clone>(clock: C) -> tenancy::Result<Demo> {
    let now = clock.now();
    let [alice, bob, carol, dan, erin, olivia, nina, frank] = [(); 8].map(|_| UserId::new_v7());
    // Who the users are, as a sign-up would have stored it: dan gave no
    // name, so pages show his email.
    let directory = Arc::new(MemoryUserDirectory::new());
    for (user, email, name) in [
        (alice, "alice@acme.example", Some("Alice Archer")),
        (bob, "bob@acme.example", Some("Bob Baker")),
        (carol, "carol@globex.example", Some("Carol Chen")),
        (dan, "dan@acme.example", None),
        (erin, "erin@initech.example", Some("Erin Endo")),
        (olivia, "olivia@platform.example", Some("Olivia Ops")),
        (nina, "nina@example.com", Some("Nina Novak")),
        (frank, "frank@example.com", Some("Frank Fischer")),
    ] {
        directory.insert(user, Some(email), name);
        // Signed up and confirmed: an email invitation matches only a
        // confirmed email.
        directory.set_email_confirmed(user, true);
    }
    let tenancy = Tenancy::builder()
        .store(MemoryStore::new())
        .shared_user_directory(Arc::clone(&directory) as Arc<dyn UserDirectory>)
        .clock(clock)
        .hold_secret("demo", DEMO_HOLD_SECRET)
        // Where invite links point: the console's accept page. Delivery is
        // the default LogInvitationSender: the link appears in the log.
        .invitation_accept_url("/console/invitations/accept")
        .build()?;
    let new = |name, slug| NewOrganization::new(name, slug);
    let acme = tenancy
        .create_organization(alice, new("Acme", "acme")?)
        .await?
        .id;
    let globex = tenancy
        .create_organization(carol, new("Globex", "globex")?)
        .await?
        .id;
    let initech = new("Initech", "initech")?.timezone("Asia/Tokyo")?;
    let initech = tenancy.create_organization(carol, initech).await?.id;
    let members = [
        (alice, acme, bob, Role::Member),
        (alice, acme, dan, Role::Viewer),
        (carol, globex, alice, Role::Viewer),
        (carol, initech, erin, Role::Member),
        (carol, initech, alice, Role::Viewer),
    ];
    for (owner, org, user, role) in members {
        let ctx = tenancy.context(owner, org).await?;
        tenancy.add_member(&ctx, user, role).await?;
    }
    let operator = PlatformOperator::new("host_app");
    let admin = tenancy.operator(&operator);
    admin.enable_feature(acme, "veo_avatars").await?;
    let limit = |kind, value: i64| NewLimit::from_limit_type(kind, Decimal::from(value));
    admin
        .set_limit(acme, limit("monthly_tokens", 10_000)?)
        .await?;
    let per_minute = tenancy::limits::rate::NewRateLimit::from_limit_type;
    admin
        .set_rate_limit(acme, per_minute("minute_requests", Decimal::from(600))?)
        .await?;
    admin.enable_feature(initech, "brand_kits").await?;
    admin
        .set_limit(initech, limit("monthly_tokens", 1_000_000)?)
        .await?;
    admin
        .set_limit(initech, limit("monthly_images", DEMO_IMAGES.0)?)
        .await?;
    seed_month(&tenancy, initech, &[carol, erin], now).await?;
    // A pending invitation: a link for up to 5 viewers of Acme.
    let as_alice = tenancy.context(alice, acme).await?;
    tenancy
        .create_invitation(&as_alice, NewInvitation::link(Role::Viewer, 5))
        .await?;
    let verifier = TokenVerifier::hs256(DEMO_JWT_SECRET)?;
    let console = ConsoleConfig::builder(tenancy.clone(), verifier.clone())
        .operators(OperatorPolicy::user_ids([olivia]))
        .allow_first_organization(true)
        .build()?;
    let names = [
        ("alice", alice),
        ("bob", bob),
        ("carol", carol),
        ("dan", dan),
    ];
    let users = HashMap::from_iter(names.into_iter().chain([
        ("erin", erin),
        ("olivia", olivia),
        ("nina", nina),
        ("frank", frank),
    ]));
    let app = App {
        jobs: start_worker(tenancy.clone()),
        auth: TenantAuth::new(tenancy, verifier),
        brands: Brands::Memory(Arc::default()),
        console,
        dev_users: Some(Arc::new(users)),
    };
    Ok(Demo {
        app,
        alice,
        bob,
        carol,
        dan,
        erin,
        olivia,
        nina,
        frank,
        directory,
        acme,
        globex,
        initech,
    })
}

/// Records a month of AI calls for `users` of `org`: a few calls a day
/// for the 30 days up to `now`, and this month's images.
async fn seed_month(
    tenancy: &Tenancy,
    org: OrgId,
    users: &[UserId],
    now: DateTime<Utc>,
) -> tenancy::Result<()> {
    let mut events = Vec::new();
    for day in 0..30u32 {
        let at = now - TimeDelta::days(i64::from(29 - day)) - TimeDelta::minutes(1);
        for (i, user) in users.iter().enumerate() {
            let input = 1_500 + u64::from(day) * 170 + 900 * i as u64;
            let event = UsageEvent::new(org)
                .user(*user)
                .ai_call("openai", "gpt-4o", "ad_copy")
                .tokens(input, 0, input / 3)
                .cost_usd(Decimal::new(i64::try_from(input).unwrap_or(0), 6))
                .at(at);
            events.push(event);
        }
    }
    let images = UsageEvent::new(org)
        .user(users[0])
        .ai_call("openai", "gpt-image-1", "avatar")
        .quantity(MetricKey::parse("images")?, Decimal::from(DEMO_IMAGES.1))
        .at(now);
    events.push(images);
    tenancy.service().record_usage_batch(events).await?;
    Ok(())
}

/// The app on a Supabase project: the facade and the `brands` table on
/// `store`, access tokens checked with the project's JWT secret. Nothing is
/// seeded.
pub fn on_supabase(store: SupabaseStore, jwt_secret: &str) -> tenancy::Result<App> {
    // The worker runs in this process: a secret of its own will do. Workers
    // elsewhere share the API's, from the environment.
    let hold_secret = std::env::var("TENANCY_HOLD_SECRET").unwrap_or_else(|_| {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    });
    // Names and emails from auth.users, through the same store: the
    // facade asks only about members of the caller's organization.
    let tenancy = Tenancy::builder()
        .store(store.clone())
        .user_directory(store.clone())
        .hold_secret("host-app", &hold_secret)
        .invitation_accept_url("/console/invitations/accept")
        .build()?;
    let verifier = TokenVerifier::hs256(jwt_secret)?;
    // Operators are users whose app_metadata says so (set it with the
    // service role or as `postgres`, e.g. `examples/admin.rs make-operator`;
    // users cannot set their own app_metadata). Users with no organization
    // create their first from the console's start page, as through
    // `POST /orgs`.
    let console = ConsoleConfig::builder(tenancy.clone(), verifier.clone())
        .operators(OperatorPolicy::app_metadata_flag("tenancy_operator"))
        .allow_first_organization(true)
        .build()?;
    Ok(App {
        jobs: start_worker(tenancy.clone()),
        auth: TenantAuth::new(tenancy, verifier),
        brands: Brands::Supabase(store),
        console,
        dev_users: None,
    })
}

/// [`on_supabase`] from the environment, or `None` when neither
/// `SUPABASE_URL` nor `SUPABASE_REST_URL` is set (the in-memory demo).
pub fn supabase_from_env() -> Option<tenancy::Result<App>> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set(ENV_URL) && !set(ENV_REST_URL) {
        return None;
    }
    let store = match SupabaseStore::from_env() {
        Ok(store) => store,
        Err(e) => return Some(Err(e)),
    };
    let Some(secret) = std::env::var(ENV_JWT_SECRET)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Some(Err(Error::new(
            ErrorKind::Config,
            format!("{ENV_JWT_SECRET} is not set: the app checks its users' access tokens with it"),
        )));
    };
    Some(on_supabase(store, secret.trim()))
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

// The example's entry point. The test and the bench that include this file
// as a module never call it; allowing it keeps everything it reaches alive
// there too, so that they need no blanket allow.
#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("host_app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let app = match supabase_from_env() {
        Some(app) => {
            let app = app?;
            println!("host_app on Supabase, listening on http://{addr}\n");
            println!("# your organizations, with a signed-in user's access token");
            println!("curl -s http://{addr}/orgs -H 'Authorization: Bearer <access token>'\n");
            app
        }
        None => {
            let demo = demo().await?;
            print_demo(&demo, addr);
            demo.app
        }
    };
    axum::serve(listener, router(app)).await?;
    Ok(())
}

fn print_demo(demo: &Demo, addr: std::net::SocketAddr) {
    println!("host_app on MemoryStore, listening on http://{addr}\n");
    println!("# the console, signed in (demo only) as");
    for (name, user, who) in [
        ("alice", demo.alice, "owner of Acme, viewer elsewhere"),
        ("dan", demo.dan, "viewer in Acme"),
        ("carol", demo.carol, "owner of Globex and Initech"),
        ("erin", demo.erin, "member of Initech"),
        ("olivia", demo.olivia, "the platform operator"),
        ("nina", demo.nina, "new: creates her organization"),
        ("frank", demo.frank, "new: invite frank@example.com"),
    ] {
        let email = demo
            .directory
            .get(user)
            .and_then(|p| p.email)
            .unwrap_or_default();
        println!(
            "#   {name:<7} {who:<32} http://{addr}/dev/sign-in?as={name}   ({email}, user {user})"
        );
    }
    println!(
        "# then Initech's usage, a month of it: http://{addr}/console/orgs/{}/usage\n",
        demo.initech
    );
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
    println!("# bob queues a generation: 202 now, a worker commits what the model used");
    println!(
        "curl -s -X POST http://{addr}/jobs -H 'Authorization: Bearer {bob}' -H 'content-type: application/json' -d '{{\"prompt\":\"a winter ad\"}}'\n"
    );
    let nina = sign_token(demo.nina);
    println!("# nina belongs to no organization (403 no_organization), then creates one");
    println!("curl -s http://{addr}/orgs -H 'Authorization: Bearer {nina}'");
    println!(
        "curl -s http://{addr}/orgs -H 'Authorization: Bearer {nina}' -H 'content-type: application/json' -d '{{\"name\":\"Nina Studio\",\"slug\":\"nina-studio\"}}'\n"
    );
    println!("# no token: 401");
    println!("curl -si http://{addr}/brands\n");
}
