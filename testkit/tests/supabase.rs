//! Live tests of `SupabaseStore` against a private PostgreSQL cluster and
//! the PostgREST stand-in: the whole conformance suite on the service
//! client, user-client isolation, scoped tables, and error mapping.
//!
//! Without PostgreSQL or the stand-in the tests print a SKIPPED line and
//! pass, unless `TENANCY_REQUIRE_LIVE` is set.

use tenancy_testkit::postgrest as postgrest_server;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tenancy::scope::ForOrg as _;
use tenancy::supabase::{ApiError, RetryConfig, SupabaseStore, SupabaseStoreBuilder};
use tenancy::{
    DynStore, ErrorKind, FeatureKey, Membership, NewOrganization, Organization, Role, Slug, Store,
    Tenancy, TenantContext, UserId,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use postgrest_server::Server;

fn server() -> Option<&'static Server> {
    Server::shared()
}

fn service_store(server: &Server) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(server.url())
        .service_role_key(server.service_key())
        .anon_key(server.anon_key())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("service store")
}

/// The conformance factory: a fresh client (its own connection pool, on
/// this test's runtime) per test.
async fn supabase_store() -> Option<Arc<DynStore>> {
    let server = tokio::task::spawn_blocking(server).await.expect("start")?;
    Some(Arc::new(service_store(server)))
}

tenancy::conformance_tests!(supabase_store);

// ---- helpers ---------------------------------------------------------------

fn slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Two orgs, each with its own owner, created through the service client.
struct TwoOrgs {
    service: SupabaseStore,
    tenancy: Tenancy,
    alice: UserId,
    bob: UserId,
    acme: Organization,
    globex: Organization,
}

async fn two_orgs() -> Option<(&'static Server, TwoOrgs)> {
    let server = tokio::task::spawn_blocking(server).await.expect("start")?;
    let service = service_store(server);
    let tenancy = Tenancy::builder()
        .store(service.clone())
        .build()
        .expect("tenancy");
    let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
    let acme = tenancy
        .create_organization(alice, NewOrganization::new("Acme", &slug("acme")).unwrap())
        .await
        .expect("acme");
    let globex = tenancy
        .create_organization(
            bob,
            NewOrganization::new("Globex", &slug("globex")).unwrap(),
        )
        .await
        .expect("globex");
    Some((
        server,
        TwoOrgs {
            service,
            tenancy,
            alice,
            bob,
            acme,
            globex,
        },
    ))
}

fn user_client(server: &Server, service: &SupabaseStore, user: UserId) -> SupabaseStore {
    service
        .user_client(&server.user_token(user.as_uuid()))
        .expect("user client")
}

fn api(err: &tenancy::Error) -> &ApiError {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<ApiError>())
        .unwrap_or_else(|| panic!("no ApiError source in {err:?}"))
}

#[derive(Debug, Deserialize, PartialEq)]
struct Brand {
    id: i64,
    name: String,
    organization_id: String,
}

// ---- user-client isolation ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_client_cannot_read_another_orgs_rows() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let as_alice = user_client(server, &t.service, t.alice);
    assert!(as_alice.is_user_client());

    // Positive control: her own org is visible.
    assert_eq!(
        as_alice
            .organization(t.acme.id)
            .await
            .unwrap()
            .map(|o| o.id),
        Some(t.acme.id)
    );
    assert_eq!(as_alice.members(t.acme.id).await.unwrap().len(), 1);
    // Both orgs get a feature, a limit and usage, so "nothing of Bob's"
    // below is a refusal, not an empty table.
    let operator = tenancy::PlatformOperator::new("test");
    for org in [t.acme.id, t.globex.id] {
        t.tenancy
            .enable_feature(&operator, org, "beta")
            .await
            .unwrap();
        let limit = tenancy::NewLimit::from_limit_type("monthly_tokens", 100.into()).unwrap();
        t.tenancy.set_limit(&operator, org, limit).await.unwrap();
        t.tenancy
            .record_usage(tenancy::UsageEvent::new(org).tokens(5, 0, 0))
            .await
            .unwrap();
    }
    // Bob's org, its members and features: nothing.
    assert_eq!(as_alice.organization(t.globex.id).await.unwrap(), None);
    assert_eq!(
        as_alice.organization_by_slug(&t.globex.slug).await.unwrap(),
        None
    );
    assert!(as_alice.members(t.globex.id).await.unwrap().is_empty());
    assert!(as_alice.features(t.globex.id).await.unwrap().is_empty());
    assert_eq!(as_alice.membership(t.globex.id, t.bob).await.unwrap(), None);

    // Even through raw builders, unfiltered or filtered on Bob's org.
    let all: Vec<serde_json::Value> = as_alice
        .fetch(as_alice.from("user_organizations").select("*"))
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["organization_id"], json!(t.acme.id.to_string()));
    for table in [
        "organizations",
        "org_features",
        "usage_limits",
        "usage_events",
    ] {
        let column = if table == "organizations" {
            "id"
        } else {
            "organization_id"
        };
        let read = |org: tenancy::OrgId| {
            as_alice.fetch::<Vec<serde_json::Value>>(
                as_alice.from(table).select("*").eq(column, org.to_string()),
            )
        };
        let own = read(t.acme.id).await.unwrap();
        assert!(!own.is_empty(), "{table}: Alice reads her own org's rows");
        let rows = read(t.globex.id).await.unwrap();
        assert!(rows.is_empty(), "{table}: {rows:?}");
        let service_sees: Vec<serde_json::Value> = t
            .service
            .fetch(
                t.service
                    .from(table)
                    .select("*")
                    .eq(column, t.globex.id.to_string()),
            )
            .await
            .unwrap();
        assert!(!service_sees.is_empty(), "{table}: Bob's rows exist");
    }
    // The usage RPC refuses another org outright.
    let err = as_alice
        .fetch::<serde_json::Value>(
            as_alice.rpc(
                "tenancy_usage_snapshot",
                json!({"org_id": t.globex.id, "daily_start": "2026-03-04",
                   "monthly_start": "2026-03-01", "now": "2026-03-04T10:00:00Z"})
                .to_string(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_client_cannot_write_another_orgs_rows() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let as_alice = user_client(server, &t.service, t.alice);
    // Bob's org has a feature and a limit for Alice to try to delete.
    let operator = tenancy::PlatformOperator::new("test");
    t.tenancy
        .enable_feature(&operator, t.globex.id, "sso")
        .await
        .unwrap();
    let limit = t
        .tenancy
        .set_limit(
            &operator,
            t.globex.id,
            tenancy::NewLimit::from_limit_type("monthly_tokens", 1000.into()).unwrap(),
        )
        .await
        .unwrap();

    // Joining Bob's org (IDOR on memberships): refused.
    let err = as_alice
        .add_member(&Membership {
            user_id: t.alice,
            organization_id: t.globex.id,
            role: Role::Owner,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // Renaming Bob's org through a raw builder: zero rows, name unchanged.
    let renamed: Vec<serde_json::Value> = as_alice
        .fetch(
            as_alice
                .from("organizations")
                .eq("id", t.globex.id.to_string())
                .update(json!({"name": "Pwned"}).to_string()),
        )
        .await
        .unwrap();
    assert!(renamed.is_empty());
    let err = as_alice
        .rename_organization(t.globex.id, "Pwned")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // Deleting it: nothing deleted. Its feature and limit: users may not
    // delete features or limits at all.
    assert!(!as_alice.delete_organization(t.globex.id).await.unwrap());
    let sso = FeatureKey::parse("sso").unwrap();
    let err = as_alice
        .delete_feature(t.globex.id, &sso)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = as_alice
        .delete_limit(t.globex.id, limit.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // Demoting or removing Bob: as if he were not a member at all.
    let err = as_alice
        .set_member_role(t.globex.id, t.bob, Role::Owner, Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = as_alice
        .remove_member(t.globex.id, t.bob, Role::Owner)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // Bob's memberships are not Alice's to read.
    assert!(
        as_alice
            .memberships_of_user(t.bob)
            .await
            .unwrap()
            .is_empty()
    );
    // Writing its features or recording usage against it: refused.
    let feature = tenancy::Feature {
        key: FeatureKey::parse("beta").unwrap(),
        enabled: true,
        config: serde_json::Value::Null,
        updated_at: chrono::Utc::now(),
    };
    let err = as_alice
        .put_feature(t.globex.id, &feature)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let event = tenancy::UsageEvent::new(t.globex.id)
        .tokens(1, 0, 0)
        .into_record(chrono::Utc::now(), chrono_tz::UTC)
        .unwrap();
    let err = as_alice.record_usage(&[event]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // Inserting a brand into Bob's org with a raw builder: RLS refuses.
    let err = as_alice
        .fetch::<Vec<Brand>>(as_alice.from("brands").insert(
            json!([{"name": "Trojan", "organization_id": t.globex.id.to_string()}]).to_string(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    // Nothing changed, seen through the service client.
    let globex = t.service.organization(t.globex.id).await.unwrap().unwrap();
    assert_eq!(globex.name, "Globex");
    let features = t.service.features(t.globex.id).await.unwrap();
    assert_eq!(
        features.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(),
        ["sso"]
    );
    assert_eq!(t.service.limits(t.globex.id).await.unwrap(), [limit]);
    let members = t.service.members(t.globex.id).await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user_id, m.role))
            .collect::<Vec<_>>(),
        [(t.bob, Role::Owner)]
    );
}

/// Through a user's JWT the database assigns a new organization's id and
/// creation time; `create_organization` returns the organization as
/// stored, so the id a caller gets back is the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_organization_comes_back_as_stored() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let carol = UserId::new_v7();
    let as_carol = Tenancy::builder()
        .store(user_client(server, &t.service, carol))
        .build()
        .unwrap();
    let new = NewOrganization::new("Initech", &slug("initech")).unwrap();
    let created = as_carol.create_organization(carol, new).await.unwrap();
    let stored = t
        .service
        .organization_by_slug(&created.slug)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(created, stored);
    let ctx = as_carol.context(carol, created.id).await.unwrap();
    assert_eq!(ctx.role(), Role::Owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anon_key_alone_reads_nothing() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let anon = SupabaseStore::builder()
        .rest_url(server.url())
        .anon_key(server.anon_key())
        .build()
        .unwrap();
    let err = anon.organization(t.acme.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(api(&err).code(), Some("42501"));
}

// ---- scoped tables -------------------------------------------------------------

async fn ctx_of(t: &TwoOrgs, user: UserId, org: &Organization) -> TenantContext {
    t.tenancy.context(user, org.id).await.expect("context")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_table_filters_stamps_and_refuses_other_orgs() {
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    let alice_ctx = ctx_of(&t, t.alice, &t.acme).await;
    let bob_ctx = ctx_of(&t, t.bob, &t.globex).await;
    // On the service client, where only the scope protects the tenants.
    let acme_brands = t.service.table(&alice_ctx, "brands");
    let globex_brands = t.service.table(&bob_ctx, "brands");

    let inserted: Vec<Brand> = acme_brands
        .insert(&[json!({"name": "Soap"}), json!({"name": "Rope"})])
        .await
        .unwrap();
    assert_eq!(inserted.len(), 2);
    assert!(
        inserted
            .iter()
            .all(|b| b.organization_id == t.acme.id.to_string())
    );
    let _: Vec<Brand> = globex_brands
        .insert(&[json!({"name": "Widgets", "organization_id": null})])
        .await
        .unwrap();

    // Reads see only their org, with or without more filters.
    let acme: Vec<Brand> = acme_brands.list("*").await.unwrap();
    assert_eq!(acme.len(), 2);
    let soap: Vec<Brand> = acme_brands
        .fetch("*", |q| q.eq("name", "Soap"))
        .await
        .unwrap();
    assert_eq!(soap.len(), 1);
    let widgets_from_acme: Vec<Brand> = acme_brands
        .fetch("*", |q| q.eq("name", "Widgets"))
        .await
        .unwrap();
    assert!(widgets_from_acme.is_empty());
    // A refinement that starts over from an unscoped builder is still
    // scoped: the tenant filter is applied after it.
    let restarted: Vec<Brand> = acme_brands
        .fetch("*", |_| t.service.from("brands").select("*"))
        .await
        .unwrap();
    assert!(
        restarted.iter().all(|b| b.name != "Widgets"),
        "{restarted:?}"
    );
    assert_eq!(restarted.len(), 2);
    let stolen: Vec<Brand> = acme_brands
        .update(|_| t.service.from("brands"), &json!({"name": "Pwned"}))
        .await
        .unwrap();
    assert!(stolen.iter().all(|b| b.name == "Pwned") && stolen.len() == 2);
    let _: Vec<Brand> = acme_brands
        .update(|q| q.eq("name", "Pwned"), &json!({"name": "Soap"}))
        .await
        .unwrap();

    // An upsert colliding with another org's row (same id) is refused by
    // the database, on the service client too, and the row is unchanged.
    let widgets: Vec<serde_json::Value> = globex_brands.list("id,name").await.unwrap();
    let widgets_id = widgets[0]["id"].clone();
    let takeover = acme_brands
        .upsert::<_, Brand>(&[json!({"id": widgets_id, "name": "Mine now"})], "id")
        .await
        .unwrap_err();
    assert_eq!(takeover.kind(), ErrorKind::PermissionDenied, "{takeover}");
    let globex: Vec<Brand> = globex_brands.list("*").await.unwrap();
    assert_eq!(globex[0].name, "Widgets");

    // A row naming another org is refused before any request: the server
    // below is unreachable, so a sent request would be Unavailable.
    let offline = SupabaseStore::builder()
        .rest_url("http://127.0.0.1:9")
        .service_role_key("k")
        .retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        })
        .build()
        .unwrap();
    let offline_brands = offline.table(&alice_ctx, "brands");
    let stranger = json!({"name": "Trojan", "organization_id": t.globex.id.to_string()});
    let err = offline_brands
        .insert::<_, Brand>(std::slice::from_ref(&stranger))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = offline_brands
        .upsert::<_, Brand>(std::slice::from_ref(&stranger), "id")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = offline_brands
        .update::<_, Brand>(
            |q| q.eq("name", "Soap"),
            &json!({"organization_id": t.globex.id.to_string()}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // …and the same refusal live sends nothing either.
    let err = acme_brands
        .insert::<_, Brand>(&[stranger])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let globex: Vec<Brand> = globex_brands.list("*").await.unwrap();
    assert_eq!(globex.len(), 1);

    // The raw filter, on the service client (RLS would hide other orgs'
    // rows on a user client, so only the filter is tested here), while
    // both orgs have rows.
    let names = |rows: Vec<Brand>| {
        let mut names: Vec<String> = rows.into_iter().map(|b| b.name).collect();
        names.sort();
        names
    };
    let bobs: Vec<Brand> = t
        .service
        .fetch(t.service.from("brands").select("*").for_org(&bob_ctx))
        .await
        .unwrap();
    assert_eq!(names(bobs), ["Widgets"]);
    let alices: Vec<Brand> = t
        .service
        .fetch(
            t.service
                .from("brands")
                .select("*")
                .for_org_column("organization_id", &alice_ctx),
        )
        .await
        .unwrap();
    // Both of Acme's rows are named Soap since the rename round trip above.
    assert_eq!(names(alices), ["Soap", "Soap"]);

    // Updates and deletes are filtered: Acme's scope cannot touch Widgets.
    let touched: Vec<Brand> = acme_brands
        .update(|q| q.eq("name", "Widgets"), &json!({"name": "Pwned"}))
        .await
        .unwrap();
    assert!(touched.is_empty());
    let deleted: Vec<Brand> = acme_brands.delete(|q| q).await.unwrap();
    assert_eq!(deleted.len(), 2);
    let globex: Vec<Brand> = globex_brands.list("*").await.unwrap();
    assert_eq!(globex[0].name, "Widgets");

    // A configurable column, on the service client so only the scope
    // keeps Acme out.
    let custom = t.service.table(&bob_ctx, "organizations").org_column("id");
    assert_eq!(custom.column(), "id");
    let orgs: Vec<serde_json::Value> = custom.list("id,name").await.unwrap();
    assert_eq!(
        orgs,
        vec![json!({"id": t.globex.id.to_string(), "name": "Globex"})]
    );
}

// ---- error mapping -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_expired_jwts_are_unauthenticated() {
    let Some(server) = tokio::task::spawn_blocking(server).await.unwrap() else {
        return;
    };
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"role": "service_role", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    let expired = server.jwt(json!({"role": "service_role", "exp": 1_000_000}));
    for (token, code) in [
        (forged.as_str(), "PGRST301"),
        ("not-a-jwt", "PGRST301"),
        (expired.as_str(), "PGRST303"),
    ] {
        let store = SupabaseStore::builder()
            .rest_url(server.url())
            .service_role_key(token)
            .build()
            .unwrap();
        let err = store
            .organization(tenancy::OrgId::new_v7())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert_eq!(api(&err).code(), Some(code), "{err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violation_and_unknown_rpc_are_mapped() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    // A taken slug.
    let again = Organization {
        id: tenancy::OrgId::new_v7(),
        slug: t.acme.slug.clone(),
        ..t.acme.clone()
    };
    let err = t.service.create_organization(&again).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(api(&err).code(), Some("23505"));
    // An existing member added again.
    let err = t
        .service
        .add_member(&Membership {
            user_id: t.alice,
            organization_id: t.acme.id,
            role: Role::Member,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    // An unknown RPC: the migrations are missing → Config.
    let err = t
        .service
        .fetch::<serde_json::Value>(t.service.rpc("tenancy_does_not_exist", "{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(api(&err).code(), Some("PGRST202"));
    // An unknown table too.
    let err = t
        .service
        .fetch::<serde_json::Value>(t.service.from("no_such_table").select("*"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    // A slug lookup for a missing org is a value, not an error.
    let missing = Slug::parse(&slug("missing")).unwrap();
    assert_eq!(
        t.service.organization_by_slug(&missing).await.unwrap(),
        None
    );
    let _ = server;
}

/// Serves `response` verbatim to every connection.
async fn canned_server(response: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn store_at(url: &str) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(url)
        .service_role_key("key")
        .retry(RetryConfig {
            max_retries: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn non_json_and_unexpected_bodies_are_unexpected() {
    let html = canned_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 27\r\nConnection: close\r\n\r\n<html>maintenance...</html>",
    )
    .await;
    let err = store_at(&html)
        .organization(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unexpected, "{err}");
    assert!(err.message().contains("HTTP 200"), "{err}");
    assert!(err.message().contains("<html>maintenance"), "{err}");
    assert_eq!(api(&err).status(), 200);
    assert_eq!(
        api(&err).body_excerpt(),
        Some("<html>maintenance...</html>")
    );

    // Valid JSON of the wrong shape.
    let wrong = canned_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"rows\":[1]}",
    )
    .await;
    let err = store_at(&wrong)
        .members(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unexpected, "{err}");
    assert!(err.message().contains("{\"rows\":[1]}"), "{err}");

    // An error status with a foreign body.
    let teapot = canned_server(
        "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 5\r\nConnection: close\r\n\r\nshort",
    )
    .await;
    let err = store_at(&teapot)
        .features(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unexpected, "{err}");
    assert!(err.message().contains("HTTP 418") && err.message().contains("short"));

    // A 503 is transient.
    let down = canned_server(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
    )
    .await;
    let err = store_at(&down)
        .features(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn connection_refused_is_unavailable_and_retryable() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = store_at(&format!("http://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let err = store
        .organization(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(err.message().contains("cannot connect"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retries_idempotent_calls_until_the_server_answers() {
    // First connection: 503; later ones: an empty JSON array.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            let _ = socket.read(&mut buf).await;
            let response: &[u8] = if n == 0 {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"
            };
            let _ = socket.write_all(response).await;
            let _ = socket.shutdown().await;
        }
    });
    let store = store_at(&url);
    assert!(
        store
            .features(tenancy::OrgId::new_v7())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    // A non-idempotent call (reserve) is not retried after a 503.
    hits.store(0, std::sync::atomic::Ordering::SeqCst);
    let err = store
        .fetch::<serde_json::Value>(store.rpc("tenancy_reserve", "{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn malformed_url_and_missing_keys_are_config_errors_naming_the_variable() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let err = SupabaseStoreBuilder::from_env_with(env(&[
        ("SUPABASE_URL", "htp:/broken"),
        ("SUPABASE_SERVICE_ROLE_KEY", "k"),
    ]))
    .build()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("SUPABASE_URL"), "{err}");
    let err =
        SupabaseStoreBuilder::from_env_with(env(&[("SUPABASE_URL", "https://x.supabase.co")]))
            .build()
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("SUPABASE_SERVICE_ROLE_KEY"), "{err}");
    let err = SupabaseStoreBuilder::from_env_with(env(&[("SUPABASE_SERVICE_ROLE_KEY", "k")]))
        .build()
        .unwrap_err();
    assert!(err.message().contains("SUPABASE_URL"), "{err}");
    // A service client without an anon key cannot make user clients.
    let store = SupabaseStore::builder()
        .url("https://x.supabase.co")
        .service_role_key("k")
        .build()
        .unwrap();
    let err = store.user_client("token").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("SUPABASE_ANON_KEY"), "{err}");
}
