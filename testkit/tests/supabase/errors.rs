//! Error mapping: PostgREST codes, foreign bodies, transport failures and
//! which of them are worth retrying.

use std::sync::Arc;
use std::time::Duration;
use tenancy::store::{FeatureStore, MemberStore, MeteringStore, OrgStore};

use serde_json::json;

use tenancy::supabase::{RetryConfig, SupabaseStore, SupabaseStoreBuilder};
use tenancy::{ErrorKind, Membership, Organization, Role, Slug};
use tenancy_testkit::unique_slug;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{api, server, two_orgs};

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
    // The backend-neutral cause, as PgStore's errors carry it.
    let sql = tenancy::sql::SqlError::find(&err).expect("a SqlError in the chain");
    assert_eq!(sql.code(), "23505");
    assert!(sql.message().contains("duplicate key"), "{sql}");
    // Said once: the message names the operation, the source the cause.
    assert_eq!(err.to_string().matches("duplicate key").count(), 1, "{err}");
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
    let missing = Slug::parse(&unique_slug("missing")).unwrap();
    assert_eq!(
        t.service.organization_by_slug(&missing).await.unwrap(),
        None
    );
    let _ = server;
}

/// A REST base that is not PostgREST's (here `/rest/v1` on a server that
/// serves at its root) says what to check, not only the bare code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_rest_base_names_the_variable_to_check() {
    let Some(server) = tokio::task::spawn_blocking(server).await.unwrap() else {
        return;
    };
    let wrong = SupabaseStore::builder()
        .url(server.url())
        .service_role_key(server.service_key())
        .build()
        .unwrap();
    assert!(wrong.rest_url().ends_with("/rest/v1"));
    let err = wrong
        .organization(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("SUPABASE_REST_URL"), "{err}");
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
        .retry(
            RetryConfig::default()
                .max_retries(1)
                .delays(Duration::from_millis(1), Duration::from_millis(5)),
        )
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
    // The detail is the source's, for logs; the message is safe to show.
    assert!(err.to_string().contains("HTTP 200"), "{err}");
    assert!(err.to_string().contains("<html>maintenance"), "{err}");
    assert!(!err.message().contains("<html>"), "{err}");
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
    assert!(err.to_string().contains("{\"rows\":[1]}"), "{err}");
    assert!(!err.message().contains("rows"), "{err}");

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
    let text = err.to_string();
    assert!(
        text.contains("HTTP 418") && text.contains("short"),
        "{text}"
    );

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
    let now = chrono::Utc::now();
    let request = tenancy::store::ReserveRequest::new(
        tenancy::OrgId::new_v7(),
        tenancy::UserId::new_v7(),
        tenancy::MetricKey::TOKENS,
        rust_decimal::Decimal::TEN,
        tenancy::limits::CurrentPeriods::at(now, chrono_tz::UTC),
        now,
    );
    let err = store.reserve(&request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // ...and says so: repeating it is not safe, it may have been applied.
    assert!(!err.is_retryable(), "{err:?}");
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

/// Errors through `SupabaseStore` are responses without database detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_safe_responses() {
    let Some(server) = tokio::task::spawn_blocking(server).await.unwrap() else {
        return;
    };
    let service = super::service_store(server);
    let store: Arc<tenancy::store::DynStore> = Arc::new(service.clone());
    let tenancy = tenancy::Tenancy::builder()
        .store(service.clone())
        .build()
        .unwrap();
    let user_store = |user: tenancy::UserId| -> Arc<tenancy::store::DynStore> {
        Arc::new(
            service
                .user_client(&server.user_token(user.as_uuid()))
                .unwrap(),
        )
    };
    super::responses::errors_are_safe_responses(
        &tenancy,
        &store,
        &mut tenancy::UserId::new_v7,
        Some(&user_store),
    )
    .await;
}
