//! The quickstart's story against a real Supabase project.
//!
//! Needs the migrations applied to the project (`supabase db push` with
//! `migrations/`), and from the environment: `SUPABASE_URL` (or
//! `SUPABASE_REST_URL`, the REST base of a self-hosted PostgREST),
//! `SUPABASE_SERVICE_ROLE_KEY`, `SUPABASE_ANON_KEY`, `SUPABASE_JWT_SECRET`,
//! plus `TENANCY_ALICE` and `TENANCY_BOB`: the ids of two existing
//! Supabase Auth users.
//!
//! ```sh
//! cargo run --example supabase --features supabase,axum
//! ```

use std::process::ExitCode;
use tenancy::store::MemberStore;

use rust_decimal_macros::dec;
use tenancy::supabase::{
    ENV_ANON_KEY, ENV_JWT_SECRET, ENV_REST_URL, ENV_SERVICE_ROLE_KEY, ENV_URL, SupabaseStore,
};
use tenancy::{
    Action, NewLimit, NewOrganization, PlatformOperator, ReserveOutcome, Role, Tenancy, UserId,
};

/// The variables the example needs besides the project URL.
const VARS: [&str; 5] = [
    ENV_SERVICE_ROLE_KEY,
    ENV_ANON_KEY,
    ENV_JWT_SECRET,
    "TENANCY_ALICE",
    "TENANCY_BOB",
];

fn is_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// What is missing from the environment, as the message should name it.
fn missing_vars() -> Vec<String> {
    let mut missing = Vec::new();
    if !is_set(ENV_URL) && !is_set(ENV_REST_URL) {
        missing.push(format!("{ENV_URL} (or {ENV_REST_URL})"));
    }
    missing.extend(VARS.into_iter().filter(|v| !is_set(v)).map(str::to_owned));
    missing
}

#[tokio::main]
async fn main() -> ExitCode {
    let missing = missing_vars();
    if !missing.is_empty() {
        eprintln!(
            "examples/supabase: set {} (a Supabase project with tenancy's migrations applied, \
             and two Supabase Auth user ids for TENANCY_ALICE and TENANCY_BOB)",
            missing.join(", ")
        );
        return ExitCode::from(2);
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("examples/supabase: {e}");
            ExitCode::FAILURE
        }
    }
}

fn user(var: &str) -> tenancy::Result<UserId> {
    let raw = std::env::var(var).unwrap_or_default();
    UserId::parse(raw.trim())
}

/// Signs a user access token, as Supabase Auth would issue on sign-in.
fn access_token(user: UserId) -> String {
    let secret = std::env::var(ENV_JWT_SECRET).unwrap_or_default();
    let claims = serde_json::json!({
        "sub": user.to_string(),
        "role": "authenticated",
        "aud": "authenticated",
        "exp": chrono::Utc::now().timestamp() + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a JWT")
}

async fn run() -> tenancy::Result<()> {
    // The URL from SUPABASE_REST_URL when set, else SUPABASE_URL.
    let store = SupabaseStore::from_env()?;
    let tenancy = Tenancy::builder().store(store.clone()).build()?;
    let operator = PlatformOperator::new("examples/supabase");
    let (alice, bob) = (user("TENANCY_ALICE")?, user("TENANCY_BOB")?);

    // Alice creates an organization and invites Bob as a member.
    let slug = format!("acme-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let acme = tenancy
        .create_organization(alice, NewOrganization::new("Acme", &slug)?)
        .await?;
    println!("created {} ({})", acme.slug.as_str(), acme.id);
    let as_alice = tenancy.context(alice, acme.id).await?;
    tenancy.add_member(&as_alice, bob, Role::Member).await?;

    // Bob may write data but not manage members.
    let as_bob = tenancy.context(bob, acme.id).await?;
    assert!(as_bob.can(Action::WriteData));
    assert!(!as_bob.can(Action::ManageMembers));

    // Features are off until the operator turns them on.
    assert!(!tenancy.has_feature(&as_bob, "veo_avatars").await?);
    let admin = tenancy.operator(&operator);
    admin.enable_feature(acme.id, "veo_avatars").await?;
    assert!(tenancy.has_feature(&as_bob, "veo_avatars").await?);
    println!("veo_avatars enabled for {}", acme.slug.as_str());

    // Limits are checked and held before expensive work.
    admin
        .set_limit(
            acme.id,
            NewLimit::from_limit_type("monthly_tokens", dec!(1000))?,
        )
        .await?;
    let ReserveOutcome::Granted(hold) = tenancy.reserve(&as_bob, "tokens", dec!(800)).await? else {
        panic!("800 of 1000 fits");
    };
    assert!(
        !tenancy
            .check_limit(&as_bob, "tokens", dec!(300))
            .await?
            .allowed
    );
    tenancy.commit(&hold, dec!(650)).await?;
    let decision = tenancy.check_limit(&as_bob, "tokens", dec!(300)).await?;
    println!(
        "after 650 tokens: 300 more allowed = {}, remaining {:?}",
        decision.allowed, decision.remaining
    );

    // Bob's own client (anon key + his token): RLS shows him only his orgs.
    let as_bob_client = store.user_client(&access_token(bob))?;
    let visible = as_bob_client.memberships_of_user(bob).await?;
    println!("Bob's user client sees {} organization(s)", visible.len());

    // Clean up.
    tenancy.delete_organization(&as_alice).await?;
    println!("deleted {}", acme.slug.as_str());
    Ok(())
}
