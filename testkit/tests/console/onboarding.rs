//! Onboarding over real HTTP: a signed-in user with no organization
//! creates one from the start page, where the console allows it, with a
//! valid CSRF token only; the operator's flag set with the documented SQL.

use std::time::Duration;

use reqwest::StatusCode;
use tenancy::axum::TokenVerifier;
use tenancy::console::{self, ConsoleConfig};
use tenancy::{OrgMembership, Role, UserId};

use super::host_app::{DEMO_JWT_SECRET, sign_token};
use super::{Client, Page, Site, site};

const CREATE: &str = "/orgs";

/// `user`'s organizations, as the facade knows them.
async fn orgs_of(s: &Site, user: UserId) -> Vec<OrgMembership> {
    s.demo.app.auth.tenancy().orgs_for_user(user).await.unwrap()
}

/// The start page shows the create form.
fn offers_creation(page: &Page) -> bool {
    page.body.contains("Create an organization") && page.body.contains("action=\"/console/orgs\"")
}

#[tokio::test]
async fn a_user_with_no_organization_creates_one_from_the_start_page() {
    let s = site().await;
    let nina = s.demo.nina;
    assert!(orgs_of(&s, nina).await.is_empty());
    let start = s.get(nina, "").await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    assert!(offers_creation(&start), "{}", start.body);
    assert!(
        start.body.contains("You belong to no organization yet."),
        "{}",
        start.body
    );
    let csrf = start.csrf();

    // The slug left empty is made from the name; the name is kept as typed.
    let name = "Nina's <Studio>";
    let created = s
        .post(
            nina,
            CREATE,
            &[
                ("csrf", &csrf),
                ("name", name),
                ("slug", ""),
                ("timezone", "Europe/Paris"),
            ],
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let orgs = orgs_of(&s, nina).await;
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    let org = &orgs[0];
    assert_eq!(
        (
            org.organization.name.as_str(),
            org.organization.slug.as_str(),
            org.organization.timezone.name(),
            org.role,
            org.organization.owner_user_id,
        ),
        (
            name,
            "nina-s-studio",
            "Europe/Paris",
            Role::Owner,
            Some(nina)
        )
    );
    let location = created.headers["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!(
            "/console/orgs/{}/usage?done=org-created",
            org.organization.id
        )
    );

    // Where it leads: her new organization's usage page, which says so.
    let usage = s
        .get(nina, location.strip_prefix("/console").unwrap())
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    assert!(
        usage
            .body
            .contains("The organization was created, with you as its owner."),
        "{}",
        usage.body
    );
    assert!(
        usage.body.contains("Nina&#39;s &#60;Studio&#62;"),
        "the name, escaped: {}",
        usage.body
    );
    assert!(!usage.body.contains("<Studio>"), "{}", usage.body);

    // The start page lists it and offers no more; a second post with the
    // same valid token is refused and creates nothing.
    let start = s.get(nina, "").await;
    assert!(!offers_creation(&start), "{}", start.body);
    assert!(start.body.contains("nina-s-studio"), "{}", start.body);
    let again = s
        .post(
            nina,
            CREATE,
            &[("csrf", &csrf), ("name", "Second"), ("slug", "second")],
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    assert!(
        again.body.contains("already belong to an organization"),
        "{}",
        again.body
    );
    assert_eq!(orgs_of(&s, nina).await.len(), 1);
}

/// Serves `config` at `/console` on a loopback port.
async fn serve_console(config: ConsoleConfig) -> Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().nest("/console", console::router(config));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Client::new(base)
}

/// The demo's console twice: with creation left at its default (off),
/// and allowed. Both sign forms with one secret: a token one issues is
/// valid on the other, so a refusal by the first is its configuration's.
async fn consoles_off_and_on(s: &Site) -> (Client, Client) {
    let secret = "one-csrf-secret-for-both-consoles-of-this-test";
    let verifier = TokenVerifier::hs256(DEMO_JWT_SECRET).unwrap();
    let tenancy = s.demo.app.auth.tenancy().clone();
    let off = ConsoleConfig::builder(tenancy.clone(), verifier.clone())
        .csrf_secret(secret)
        .build()
        .unwrap();
    let on = ConsoleConfig::builder(tenancy, verifier)
        .csrf_secret(secret)
        .allow_first_organization(true)
        .build()
        .unwrap();
    (serve_console(off).await, serve_console(on).await)
}

#[tokio::test]
async fn creating_an_organization_is_refused_unless_the_console_allows_it() {
    let s = site().await;
    let nina = s.demo.nina;
    let (off, on) = consoles_off_and_on(&s).await;

    let start = off.get(nina, "").await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    assert!(!offers_creation(&start), "{}", start.body);
    assert!(
        start
            .body
            .contains("Ask an organization's owner to add you."),
        "{}",
        start.body
    );

    let csrf = on.get(nina, "").await.csrf();
    let form = [("csrf", csrf.as_str()), ("name", "Nina"), ("slug", "nina")];
    let refused = off.post(nina, CREATE, &form, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("This console does not create organizations."),
        "{}",
        refused.body
    );
    assert!(orgs_of(&s, nina).await.is_empty(), "nothing was created");

    // The positive control: the same token, where creation is allowed.
    let created = on.post(nina, CREATE, &form, &[]).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(orgs_of(&s, nina).await.len(), 1);
}

#[tokio::test]
async fn creating_an_organization_needs_a_valid_csrf_token_from_this_site() {
    let s = site().await;
    let (nina, alice) = (s.demo.nina, s.demo.alice);
    let mine = s.get(nina, "").await.csrf();
    let (expiry, tag) = mine.split_once('.').unwrap();
    let tampered = format!("{}.{tag}", expiry.parse::<i64>().unwrap() + 1);
    let alices = s
        .get(alice, &format!("/orgs/{}/members", s.demo.acme))
        .await
        .csrf();
    let fields = [("name", "Nina"), ("slug", "nina")];
    for csrf in [
        None,
        Some(""),
        Some("garbage"),
        Some(&alices),
        Some(&tampered),
    ] {
        let mut form = fields.to_vec();
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf));
        }
        let page = s.post(nina, CREATE, &form, &[]).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{csrf:?}: {}",
            page.body
        );
    }
    let empty = s.post(nina, CREATE, &[], &[]).await;
    assert_eq!(empty.status, StatusCode::FORBIDDEN, "no fields at all");

    // Her own valid token, from another site: refused all the same.
    let mut form = fields.to_vec();
    form.push(("csrf", &mine));
    let cross = s
        .post(nina, CREATE, &form, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.body);
    let origin = s
        .post(nina, CREATE, &form, &[("origin", "https://evil.example")])
        .await;
    assert_eq!(origin.status, StatusCode::FORBIDDEN, "{}", origin.body);

    // Signed out: 401, whatever the form.
    let anonymous = s
        .http
        .post(format!("{}/console{CREATE}", s.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Expired: the token of a page opened more than 12 hours ago.
    s.clock.advance(Duration::from_secs(12 * 3600 + 60));
    let expired = s.post(nina, CREATE, &form, &[]).await;
    assert_eq!(expired.status, StatusCode::FORBIDDEN, "{}", expired.body);
    assert!(orgs_of(&s, nina).await.is_empty(), "nothing was created");

    // The positive control: a fresh token.
    let fresh = s.get(nina, "").await.csrf();
    let mut form = fields.to_vec();
    form.push(("csrf", &fresh));
    let created = s.post(nina, CREATE, &form, &[]).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(orgs_of(&s, nina).await.len(), 1);
}

#[tokio::test]
async fn a_refused_form_comes_back_with_why_and_what_was_typed() {
    let s = site().await;
    let nina = s.demo.nina;
    let csrf = s.get(nina, "").await.csrf();
    let post = |name: &'static str, slug: &'static str, zone: &'static str| {
        let csrf = csrf.clone();
        let s = &s;
        async move {
            let form = [
                ("csrf", csrf.as_str()),
                ("name", name),
                ("slug", slug),
                ("timezone", zone),
            ];
            s.post(nina, CREATE, &form, &[]).await
        }
    };

    let taken = post("Acme again", "acme", "UTC").await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert!(taken.body.contains("role=\"alert\""), "{}", taken.body);
    assert!(taken.body.contains("is taken"), "{}", taken.body);
    assert!(
        taken.body.contains("value=\"Acme again\""),
        "what she typed is kept: {}",
        taken.body
    );
    assert!(offers_creation(&taken));

    let zone = post("Nina", "nina", "Mars/Olympus").await;
    assert_eq!(zone.status, StatusCode::BAD_REQUEST, "{}", zone.body);
    assert!(zone.body.contains("timezone"), "{}", zone.body);
    assert!(
        zone.body.contains("value=\"Mars/Olympus\""),
        "{}",
        zone.body
    );

    let script = post("<script>alert(1)</script>", "Not A Slug", "").await;
    assert_eq!(script.status, StatusCode::BAD_REQUEST, "{}", script.body);
    assert!(script.body.contains("slug"), "{}", script.body);
    assert!(
        !script.body.contains("<script>"),
        "escaped: {}",
        script.body
    );
    assert!(script.body.contains("&#60;script&#62;"), "{}", script.body);

    let nameless = post("  ", "", "").await;
    assert_eq!(
        nameless.status,
        StatusCode::BAD_REQUEST,
        "{}",
        nameless.body
    );
    assert!(nameless.body.contains("name"), "{}", nameless.body);

    assert!(orgs_of(&s, nina).await.is_empty(), "nothing was created");
    assert_eq!(
        orgs_of(&s, s.demo.alice).await.len(),
        3,
        "Acme is still alice's"
    );
}

/// The operator setup the docs give for `OperatorPolicy::app_metadata_flag`:
/// the SQL sets the flag Supabase Auth copies into the token's
/// `app_metadata`, keeping the other keys; a token issued before it does
/// not carry the flag (the user signs in again); removing it ends the
/// access with the next token.
#[tokio::test]
async fn the_operator_flag_set_with_the_documented_sql_opens_the_operator_pages() {
    use tenancy::console::OperatorPolicy;
    use tenancy_testkit::pg::{Cluster, bootstrap_sql};

    let Some(cluster) = tokio::task::spawn_blocking(Cluster::shared).await.unwrap() else {
        return; // SKIPPED: printed by the harness
    };
    let db = format!("operator_setup_{}", UserId::new_v7().as_uuid().simple());
    let client = cluster.create_database(&db).await;
    client.batch_execute(&bootstrap_sql()).await.unwrap();
    // Supabase's auth.users has this column; the test bootstrap has only
    // what the crate reads.
    client
        .batch_execute("alter table auth.users add column if not exists raw_app_meta_data jsonb")
        .await
        .unwrap();
    let (ops, plain) = (UserId::new_v7(), UserId::new_v7());
    client
        .execute(
            "insert into auth.users (id, email, raw_app_meta_data) values \
             ($1, 'ops@example.com', '{\"provider\": \"email\", \"providers\": [\"email\"]}'), \
             ($2, 'o''brien@example.com', null)",
            &[&ops.as_uuid(), &plain.as_uuid()],
        )
        .await
        .unwrap();
    // What Supabase Auth puts in the `app_metadata` claim of a new token.
    let token_for = |user: UserId| {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "select coalesce(raw_app_meta_data, '{}'::jsonb) from auth.users where id = $1",
                    &[&user.as_uuid()],
                )
                .await
                .unwrap();
            let app_metadata: serde_json::Value = row.get(0);
            let claims = serde_json::json!({
                "sub": user.to_string(), "aud": "authenticated", "role": "authenticated",
                "exp": chrono::Utc::now().timestamp() + 3600, "app_metadata": app_metadata,
            });
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(DEMO_JWT_SECRET.as_bytes()),
            )
            .unwrap()
        }
    };

    let s = site().await;
    let config = ConsoleConfig::builder(
        s.demo.app.auth.tenancy().clone(),
        TokenVerifier::hs256(DEMO_JWT_SECRET).unwrap(),
    )
    .operators(OperatorPolicy::app_metadata_flag("tenancy_operator"))
    .build()
    .unwrap();
    let console = serve_console(config).await;
    let operator_page = |token: String| {
        let request = console
            .http
            .get(format!("{}/console/operator", console.base))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };

    let before = token_for(ops).await;
    assert_eq!(operator_page(before.clone()).await, StatusCode::FORBIDDEN);
    for email in ["ops@example.com", "o'brien@example.com"] {
        let updated = client
            .execute(
                &super::admin::operator_sql(email, super::admin::OPERATOR_KEY, true).unwrap(),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(updated, 1, "{email}");
    }
    let row = client
        .query_one(
            "select raw_app_meta_data from auth.users where id = $1",
            &[&ops.as_uuid()],
        )
        .await
        .unwrap();
    let kept: serde_json::Value = row.get(0);
    assert_eq!(
        kept,
        serde_json::json!({"provider": "email", "providers": ["email"], "tenancy_operator": true}),
        "Auth's own keys are kept"
    );
    assert_eq!(
        operator_page(before).await,
        StatusCode::FORBIDDEN,
        "a token issued before carries no flag: sign in again"
    );
    for user in [ops, plain] {
        assert_eq!(operator_page(token_for(user).await).await, StatusCode::OK);
    }
    // Revoked: the next token has no flag.
    let revoked = client
        .execute(
            &super::admin::operator_sql("ops@example.com", super::admin::OPERATOR_KEY, false)
                .unwrap(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    assert_eq!(
        operator_page(token_for(ops).await).await,
        StatusCode::FORBIDDEN
    );
    // The other user's token is unaffected, and a user the policy never
    // heard of (signed by the demo, no app_metadata) is no operator.
    assert_eq!(operator_page(token_for(plain).await).await, StatusCode::OK);
    assert_eq!(
        operator_page(sign_token(s.demo.olivia)).await,
        StatusCode::FORBIDDEN
    );
}
