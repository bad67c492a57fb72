//! Live tests of `PgStore` against a private PostgreSQL cluster: the whole
//! store-contract suite in service mode, and isolation in user mode (the
//! same transaction-local role and claims PostgREST sets).
//!
//! Without PostgreSQL the tests print a SKIPPED line and pass, unless
//! `TENANCY_REQUIRE_LIVE` is set.

#[path = "common/responses.rs"]
mod responses;

use std::sync::Arc;

use serde_json::json;
use tenancy::migrations::SCHEMA_VERSION;
use tenancy::postgres::PgStore;
use tenancy::store::DynStore;
use tenancy::store::{
    FeatureStore, LimitStore, MemberStore, MeteringStore, OrgStore, UserDirectory,
};
use tenancy::{
    ErrorKind, FeatureChange, FeatureKey, Membership, Organization, PlatformOperator, Role,
    Tenancy, UserId,
};
use tenancy_testkit::pg::{self, Cluster};
use tenancy_testkit::unique_slug;

fn service(cluster: &Cluster) -> PgStore {
    PgStore::builder()
        .url(cluster.url(pg::DATABASE))
        .pool_size(8)
        .build()
        .expect("a PgStore")
}

/// The shared cluster, with the test fixtures.
async fn cluster() -> Option<&'static Cluster> {
    pg::shared_with_fixtures().await
}

/// The contract factory: a fresh pool per test (on that test's runtime).
async fn pg_store() -> Option<Arc<DynStore>> {
    Some(Arc::new(service(cluster().await?)))
}

tenancy::store_contract_tests!(pg_store);

/// Claims as Supabase's auth server issues them for `user`.
fn claims(user: UserId) -> serde_json::Value {
    json!({ "sub": user.to_string(), "role": "authenticated", "aud": "authenticated" })
}

async fn new_org(store: &PgStore, owner: UserId) -> Organization {
    let org = Organization {
        id: tenancy::OrgId::new_v7(),
        name: "Isolation".into(),
        slug: tenancy::Slug::parse(&unique_slug("pg-iso")).unwrap(),
        owner_user_id: Some(owner),
        timezone: chrono_tz::Tz::UTC,
        created_at: chrono::Utc::now(),
    };
    store.create_organization(&org).await.expect("create")
}

/// A user of one organization, through user mode, reads nothing of
/// another and changes nothing in it; a viewer cannot manage members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_mode_keeps_organizations_apart() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let service = service(cluster);
    let db = cluster.superuser().await;
    let (alice, bob, viewer) = (
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
    );
    let acme = new_org(&service, alice).await;
    let globex = new_org(&service, bob).await;
    service
        .add_member(&Membership {
            user_id: viewer,
            organization_id: acme.id,
            role: Role::Viewer,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let key = FeatureKey::parse("exports").unwrap();
    service
        .update_feature(
            globex.id,
            &key,
            &FeatureChange::enabled(true),
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    let as_alice = service.as_user(&claims(alice)).unwrap();
    assert!(as_alice.organization(acme.id).await.unwrap().is_some());
    assert_eq!(as_alice.organization(globex.id).await.unwrap(), None);
    assert_eq!(as_alice.membership(globex.id, bob).await.unwrap(), None);
    assert!(as_alice.members(globex.id).await.unwrap().is_empty());
    assert!(as_alice.features(globex.id).await.unwrap().is_empty());
    assert!(as_alice.limits(globex.id).await.unwrap().is_empty());
    let memberships = as_alice.memberships_of_user(alice).await.unwrap();
    assert_eq!(
        memberships
            .iter()
            .map(|m| m.organization.id)
            .collect::<Vec<_>>(),
        [acme.id]
    );
    let rename = as_alice.rename_organization(globex.id, "Mine").await;
    assert_eq!(rename.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!as_alice.delete_organization(globex.id).await.unwrap());
    let join = as_alice
        .add_member(&Membership {
            user_id: alice,
            organization_id: globex.id,
            role: Role::Owner,
            created_at: chrono::Utc::now(),
        })
        .await;
    assert!(join.is_err(), "joined another organization: {join:?}");
    assert_eq!(
        service.organization(globex.id).await.unwrap().unwrap().name,
        "Isolation"
    );
    assert_eq!(service.members(globex.id).await.unwrap().len(), 1);

    // A viewer cannot add members to its own organization.
    let as_viewer = service.as_user(&claims(viewer)).unwrap();
    let added = as_viewer
        .add_member(&Membership {
            user_id: bob,
            organization_id: acme.id,
            role: Role::Member,
            created_at: chrono::Utc::now(),
        })
        .await;
    assert_eq!(added.unwrap_err().kind(), ErrorKind::PermissionDenied);
    // Nor record usage: user mode has no execute on the record function.
    let record = as_viewer
        .record_usage(&[tenancy::UsageEvent::new(acme.id)
            .tokens(1, 0, 0)
            .into_record(chrono::Utc::now(), acme.timezone)
            .unwrap()])
        .await;
    assert_eq!(record.unwrap_err().kind(), ErrorKind::PermissionDenied);
}

/// The directory over SQL: a member learns the names and emails of its
/// organization's members through the facade, in user mode; the store
/// itself answers a user JWT only about users it shares an organization
/// with, and the service role about anyone; more than 1000 ids is
/// `InvalidInput` before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_with_names_from_auth_users_and_strangers_stay_hidden() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let service = service(cluster);
    let db = cluster.superuser().await;
    let (alice, bob, carol) = (
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
    );
    db.execute(
        "update auth.users set raw_user_meta_data = '{\"full_name\": \"Alice Archer\"}' where id = $1",
        &[&alice.as_uuid()],
    )
    .await
    .unwrap();
    let acme = new_org(&service, alice).await;
    let _globex = new_org(&service, carol).await;
    service
        .add_member(&Membership {
            user_id: bob,
            organization_id: acme.id,
            role: Role::Viewer,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let email = |user: UserId| Some(format!("{user}@example.test"));

    // Bob, a viewer, through the facade in user mode.
    let as_bob = service.as_user(&claims(bob)).unwrap();
    let t = Tenancy::builder()
        .store(as_bob.clone())
        .user_directory(as_bob.clone())
        .build()
        .unwrap();
    let ctx = t.context(bob, acme.id).await.unwrap();
    let mut members: Vec<(UserId, Option<String>, Option<String>)> = t
        .member_profiles(&ctx)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, p)| (m.user_id, p.name, p.email))
        .collect();
    members.sort();
    let mut want = vec![
        (alice, Some("Alice Archer".to_owned()), email(alice)),
        (bob, None, email(bob)),
    ];
    want.sort();
    assert_eq!(members, want);

    // The store itself: Bob learns nothing of Carol; the service role does.
    let stranger = UserId::new_v7();
    let seen: Vec<UserId> = as_bob
        .profiles(&[alice, carol, stranger])
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    assert_eq!(seen, [alice]);
    let carols = service.profiles(&[carol, stranger]).await.unwrap();
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0].email, email(carol));

    let many: Vec<UserId> = (0..=1000).map(|_| UserId::new_v7()).collect();
    let err = service.profiles(&many).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// Ownership transfer through SQL. In user mode, an owner's transfer goes
/// through the membership trigger (owners grant owner; the caller steps
/// down once another owner exists); an admin's is refused by the facade
/// and, making the same role changes at the store, by the trigger. While a
/// user is an organization's last owner, deleting their account is
/// refused with 42501; after the operator's transfer it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_transfers_through_sql_and_a_non_owners_is_refused() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let service = service(cluster);
    let db = cluster.superuser().await;
    let (alice, bob_uuid, carol, dave) = (
        UserId::from(pg::create_user(&db).await),
        pg::create_user(&db).await,
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
    );
    let bob = UserId::from(bob_uuid);
    let acme = new_org(&service, alice).await;
    for (user, role) in [(bob, Role::Member), (carol, Role::Admin)] {
        service
            .add_member(&Membership {
                user_id: user,
                organization_id: acme.id,
                role,
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
    let roles = async || {
        let mut all: Vec<_> = service
            .members(acme.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        all.sort();
        all
    };
    let sorted = |mut all: Vec<(UserId, Role)>| {
        all.sort();
        all
    };
    let as_user = |user: UserId| service.as_user(&claims(user)).unwrap();
    let tenancy_as = |user: UserId| Tenancy::builder().store(as_user(user)).build().unwrap();

    // An admin: refused by the facade, and by the trigger when making the
    // transfer's role changes at the store herself.
    let before = roles().await;
    let as_carol = tenancy_as(carol);
    let ctx = as_carol.context(carol, acme.id).await.unwrap();
    assert_eq!(ctx.role(), Role::Admin);
    let err = as_carol.transfer_ownership(&ctx, bob).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let carols = as_user(carol);
    for (user, from) in [(bob, Role::Member), (carol, Role::Admin)] {
        let err = carols
            .set_member_role(acme.id, user, from, Role::Owner)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    }
    assert_eq!(roles().await, before);

    // The owner hands it to Bob, through SQL as herself.
    let as_alice = tenancy_as(alice);
    let ctx = as_alice.context(alice, acme.id).await.unwrap();
    let owner = as_alice.transfer_ownership(&ctx, bob).await.unwrap();
    assert_eq!((owner.user_id, owner.role), (bob, Role::Owner));
    assert_eq!(
        roles().await,
        sorted(vec![
            (alice, Role::Admin),
            (bob, Role::Owner),
            (carol, Role::Admin)
        ])
    );
    let again = as_alice.transfer_ownership(&ctx, bob).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::PermissionDenied, "{again}");

    // Bob is the last owner: his account cannot be deleted.
    let delete = "delete from auth.users where id = $1";
    let refused = db.execute(delete, &[&bob_uuid]).await.unwrap_err();
    let cause = refused.as_db_error().expect("a database error");
    assert_eq!(cause.code().code(), "42501", "{cause}");
    assert!(
        cause.message().contains("must keep at least one owner"),
        "{cause}"
    );

    // The operator hands it to Dave, who is no member yet; then Bob's
    // account goes, with his membership.
    let tenancy = Tenancy::builder().store(service.clone()).build().unwrap();
    let support = PlatformOperator::new("support");
    let owner = tenancy
        .operator(&support)
        .transfer_ownership(acme.id, dave)
        .await
        .unwrap();
    assert_eq!((owner.user_id, owner.role), (dave, Role::Owner));
    assert_eq!(
        service
            .membership(acme.id, bob)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Admin
    );
    assert_eq!(db.execute(delete, &[&bob_uuid]).await.unwrap(), 1);
    assert_eq!(
        roles().await,
        sorted(vec![
            (alice, Role::Admin),
            (carol, Role::Admin),
            (dave, Role::Owner)
        ])
    );
}

/// Claims without a user id or a role are refused before any call.
#[test]
fn user_mode_needs_a_sub_and_a_role() {
    let store = PgStore::connect("host=127.0.0.1 port=1 user=nobody").unwrap();
    for bad in [
        json!("not an object"),
        json!({ "role": "authenticated" }),
        json!({ "sub": "not-a-uuid", "role": "authenticated" }),
        json!({ "sub": UserId::new_v7().to_string() }),
    ] {
        let err = store.as_user(&bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
    }
    assert!(store.as_user(&claims(UserId::new_v7())).unwrap().is_user());
}

/// A bad URL or setting is a Config error, never a panic.
#[test]
fn bad_configuration_is_a_config_error() {
    for err in [
        PgStore::connect("postgres://[::1").unwrap_err(),
        PgStore::builder()
            .url("host=127.0.0.1")
            .pool_size(0)
            .build()
            .unwrap_err(),
        PgStore::builder()
            .url("host=127.0.0.1")
            .call_timeout(std::time::Duration::ZERO)
            .build()
            .unwrap_err(),
        // A deadline past the end of time would panic later.
        PgStore::builder()
            .url("host=127.0.0.1")
            .call_timeout(std::time::Duration::MAX)
            .build()
            .unwrap_err(),
        PgStore::builder()
            .url("host=127.0.0.1")
            .pool_size(usize::MAX)
            .build()
            .unwrap_err(),
        PgStore::builder()
            .url("host=127.0.0.1")
            .max_retries(usize::MAX)
            .build()
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    }
}

/// A store on a new database of the shared cluster holding only the
/// Supabase bootstrap (roles, `auth`), and a superuser connection to it.
async fn fresh_database(cluster: &Cluster) -> (PgStore, tokio_postgres::Client) {
    let name = format!("fresh_{}", uuid::Uuid::new_v4().simple());
    let db = cluster.create_database(&name).await;
    db.batch_execute(&pg::bootstrap_sql())
        .await
        .expect("bootstrap");
    let store = PgStore::builder()
        .url(cluster.url(&name))
        .pool_size(4)
        .build()
        .unwrap();
    (store, db)
}

/// `migrate` on an empty database applies everything; two instances
/// migrating at once both succeed; a second run applies nothing; the
/// version check passes only after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_what_is_missing_once() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let (store, db) = fresh_database(cluster).await;
    let err = store.check_schema().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("this crate needs"), "{err}");

    let other = store.clone();
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    let mut before = [a.unwrap(), b.unwrap()];
    before.sort_unstable();
    assert_eq!(
        before,
        [0, SCHEMA_VERSION],
        "one applied, the other found it done"
    );
    store.check_schema().await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), SCHEMA_VERSION);
    let versions: i64 = db
        .query_one("select count(*) from tenancy.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(SCHEMA_VERSION));
}

/// A database whose schema is newer than the crate's is refused, by the
/// check and by `migrate`, which changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let (store, db) = fresh_database(cluster).await;
    store.migrate().await.unwrap();
    db.batch_execute(
        "insert into tenancy.schema_migrations (version, name) values (999, 'from the future')",
    )
    .await
    .unwrap();
    for err in [
        store.check_schema().await.unwrap_err(),
        store.migrate().await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("upgrade the tenancy crate"), "{err}");
    }
}

/// The upgrade path: a database built by the baseline alone, with data
/// written through the baseline's functions, is reported stale, upgraded by
/// `migrate`, keeps its data, and then works through every primitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_database_with_data_upgrades() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let (store, db) = fresh_database(cluster).await;
    for migration in tenancy::migrations::MIGRATIONS
        .iter()
        .filter(|m| m.version == 1)
    {
        db.batch_execute(migration.sql).await.expect(migration.file);
    }
    let owner = pg::create_user(&db).await;
    let org: uuid::Uuid = db
        .query_one(
            "select id from public.tenancy_create_organization(name => 'Old', slug => $1, \
             owner_user_id => $2)",
            &[&unique_slug("old"), &owner],
        )
        .await
        .unwrap()
        .get(0);
    db.batch_execute(&format!(
        "select public.tenancy_put_limit(limit_id => gen_random_uuid(), org_id => '{org}', \
           metric => 'tokens', period => 'monthly', limit_value => 1000); \
         select public.tenancy_record_usage('[{{\"id\": \"{event}\", \"organization_id\": \"{org}\", \
           \"occurred_at\": \"2026-03-04T12:00:00Z\", \"amounts\": {{\"tokens\": 250}}, \
           \"daily_start\": \"2026-03-04\", \"monthly_start\": \"2026-03-01\"}}]'::jsonb);",
        event = uuid::Uuid::now_v7(),
    ))
    .await
    .unwrap();

    let stale = store.check_schema().await.unwrap_err();
    assert!(stale.message().contains("1 or older"), "{stale}");
    assert_eq!(store.migrate().await.unwrap(), 1);
    store.check_schema().await.unwrap();

    let org = tenancy::OrgId::from(org);
    let kept = store.organization(org).await.unwrap().expect("kept");
    assert_eq!(kept.name, "Old");
    assert_eq!(store.members(org).await.unwrap().len(), 1);
    let limits = store.limits(org).await.unwrap();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].value, rust_decimal::Decimal::from(1000));
    let periods = tenancy::limits::CurrentPeriods::at(
        "2026-03-04T12:00:00Z".parse().unwrap(),
        chrono_tz::Tz::UTC,
    );
    let snapshot = store
        .usage_snapshot(&tenancy::store::UsageQuery::new(
            org,
            periods,
            "2026-03-04T12:00:00Z".parse().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(snapshot.limits[0].used, rust_decimal::Decimal::from(250));
}

/// The host's own SQL in user mode: row-level security filters an adopted
/// table (`brands`) by the user's organizations, and a write to another
/// organization is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_transactions_see_only_their_organizations_rows() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let service = service(cluster);
    let db = cluster.superuser().await;
    let (alice, bob) = (
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
    );
    let acme = new_org(&service, alice).await;
    let globex = new_org(&service, bob).await;
    let as_alice = service.as_user(&claims(alice)).unwrap();
    let as_bob = service.as_user(&claims(bob)).unwrap();
    let acme_id = uuid::Uuid::from(acme.id);
    let globex_id = uuid::Uuid::from(globex.id);

    as_alice
        .user_transaction(async |tx| {
            tx.execute(
                "insert into public.brands (name, organization_id) values ('Acme brand', $1)",
                &[&acme_id],
            )
            .await
            .map_err(|e| tenancy::Error::unexpected("insert").with_source(e))
        })
        .await
        .unwrap();
    let foreign = as_alice
        .user_transaction(async |tx| {
            tx.execute(
                "insert into public.brands (name, organization_id) values ('Sneaky', $1)",
                &[&globex_id],
            )
            .await
            .map_err(|e| tenancy::Error::unexpected("insert").with_source(e))
        })
        .await;
    assert!(foreign.is_err(), "alice wrote into globex");

    let seen = |store: PgStore| async move {
        store
            .user_transaction(async |tx| {
                let rows = tx
                    .query("select organization_id from public.brands", &[])
                    .await
                    .map_err(|e| tenancy::Error::unexpected("select").with_source(e))?;
                Ok(rows
                    .iter()
                    .map(|r| r.get::<_, uuid::Uuid>(0))
                    .collect::<Vec<_>>())
            })
            .await
            .unwrap()
    };
    let alice_sees = seen(as_alice).await;
    assert!(alice_sees.contains(&acme_id));
    assert!(
        alice_sees.iter().all(|org| *org == acme_id),
        "{alice_sees:?}"
    );
    assert!(!seen(as_bob).await.contains(&acme_id));

    let refused = service.user_transaction(async |_| Ok(())).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::PermissionDenied);
}

/// A database error keeps its SQLSTATE, constraint and message in a
/// `SqlError` source, and prints the cause once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_carry_their_sqlstate_and_constraint() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let service = service(cluster);
    let db = cluster.superuser().await;
    let owner = UserId::from(pg::create_user(&db).await);
    let org = new_org(&service, owner).await;
    let again = Organization {
        id: tenancy::OrgId::new_v7(),
        ..org.clone()
    };
    let err = service.create_organization(&again).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(!err.is_retryable());
    let sql = tenancy::sql::SqlError::find(&err).expect("a SqlError in the chain");
    assert_eq!(sql.code(), "23505");
    assert_eq!(sql.constraint(), Some("organizations_slug_key"));
    assert_eq!(err.to_string().matches("duplicate key").count(), 1, "{err}");
}

/// A login the server refuses is permanent and says why; a server that is
/// not there is temporary, and even a store's first call is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_map_by_cause() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let org = tenancy::OrgId::new_v7();
    let wrong_password = PgStore::connect(&format!(
        "host=127.0.0.1 port={} user=postgres password=wrong dbname={}",
        cluster.port(),
        pg::DATABASE
    ))
    .unwrap();
    let err = wrong_password.organization(org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(tenancy::sql::SqlError::find(&err).unwrap().code(), "28P01");

    let no_database = PgStore::connect(&cluster.url("no_such_database")).unwrap();
    let err = no_database.organization(org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(!err.is_retryable(), "{err}");

    let nobody_home = PgStore::builder()
        .url("host=127.0.0.1 port=1 user=postgres dbname=tenancy")
        .max_retries(2)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = nobody_home.organization(org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(20),
        "retried with backoff before giving up: {:?}",
        started.elapsed()
    );
}

/// TLS: required by the URL and verified against the CA given; refused
/// without it; used whenever a CA is given and the server offers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_used() {
    let Some(cluster) = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("start")
    else {
        return;
    };
    let ca = cluster.enable_tls().await;
    let url = cluster.url(pg::DATABASE);
    let in_use = |store: PgStore| async move {
        let client = store.pool().get().await.expect("a TLS connection");
        client
            .query_one(
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    };

    let required = PgStore::builder()
        .url(format!("{url} sslmode=require"))
        .tls_root_certificate_pem(&ca)
        .build()
        .unwrap();
    assert!(in_use(required.clone()).await);
    required
        .check_schema()
        .await
        .expect("the store works over TLS");

    let preferred = PgStore::builder()
        .url(url.clone())
        .tls_root_certificate_pem(&ca)
        .build()
        .unwrap();
    assert!(in_use(preferred).await, "a CA given: TLS when offered");
    assert!(
        !in_use(PgStore::connect(&url).unwrap()).await,
        "none asked for"
    );

    let unverified = PgStore::builder()
        .url(format!("{url} sslmode=require"))
        .max_retries(0)
        .build()
        .unwrap();
    let err = unverified
        .organization(tenancy::OrgId::new_v7())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let not_pem = PgStore::builder()
        .url(url)
        .tls_root_certificate_pem("not a certificate")
        .build()
        .unwrap_err();
    assert_eq!(not_pem.kind(), ErrorKind::Config, "{not_pem}");
}

/// The isolation matrix of `SupabaseStore`'s user client
/// (`tests/supabase/isolation.rs`), through `PgStore` in user mode: two
/// organizations, each with a feature, a limit and usage, and a user of
/// one who can read or change nothing of the other's, nor change features,
/// limits or usage of her own; a viewer who cannot read members' usage;
/// the operator's and workers' functions refused; the anon role refused.
mod user_mode_matrix {
    use super::*;
    use chrono::Utc;
    use tenancy::store::CounterScope;
    use tenancy::{NewLimit, OrgId, PlatformOperator, UsageEvent};
    use tenancy_testkit::isolation::{self, denied, history_of};

    struct TwoOrgs {
        service: PgStore,
        alice: UserId,
        bob: UserId,
        acme: Organization,
        globex: Organization,
    }

    async fn two_orgs() -> Option<TwoOrgs> {
        let cluster = cluster().await?;
        let service = super::service(cluster);
        let db = cluster.superuser().await;
        let alice = UserId::from(pg::create_user(&db).await);
        let bob = UserId::from(pg::create_user(&db).await);
        let acme = new_org(&service, alice).await;
        let globex = new_org(&service, bob).await;
        let tenancy = tenancy::Tenancy::builder()
            .store(service.clone())
            .build()
            .unwrap();
        let operator = PlatformOperator::new("test");
        for org in [acme.id, globex.id] {
            let admin = tenancy.operator(&operator);
            admin.enable_feature(org, "beta").await.unwrap();
            let limit = NewLimit::from_limit_type("monthly_tokens", 100.into()).unwrap();
            admin.set_limit(org, limit).await.unwrap();
            tenancy
                .service()
                .record_usage(UsageEvent::new(org).user(alice).tokens(5, 0, 0))
                .await
                .unwrap();
        }
        Some(TwoOrgs {
            service,
            alice,
            bob,
            acme,
            globex,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_its_own_org_and_nothing_of_another() {
        let Some(t) = two_orgs().await else { return };
        let as_alice = t.service.as_user(&claims(t.alice)).unwrap();
        isolation::reads_own_and_nothing_of_another(&as_alice, &t.acme, &t.globex, t.bob).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cannot_change_features_limits_or_usage() {
        let Some(t) = two_orgs().await else { return };
        let as_alice = t.service.as_user(&claims(t.alice)).unwrap();
        isolation::changes_nothing(&as_alice, &t.service, t.alice, [&t.acme, &t.globex]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_cannot_read_members_usage() {
        let Some(t) = two_orgs().await else { return };
        let db = cluster().await.unwrap().superuser().await;
        let viewer = UserId::from(pg::create_user(&db).await);
        t.service
            .add_member(&Membership {
                user_id: viewer,
                organization_id: t.acme.id,
                role: Role::Viewer,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        let as_alice = t.service.as_user(&claims(t.alice)).unwrap();
        as_alice
            .usage_history(&history_of(t.acme.id, CounterScope::EachUser))
            .await
            .expect("an owner sees her members' usage");
        let as_viewer = t.service.as_user(&claims(viewer)).unwrap();
        denied(
            as_viewer
                .usage_history(&history_of(t.acme.id, CounterScope::EachUser))
                .await,
            "a viewer reading members' usage",
        );
        as_viewer
            .usage_history(&history_of(t.acme.id, CounterScope::Organization))
            .await
            .expect("a viewer sees the org-wide usage");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_created_organization_comes_back_as_stored() {
        let Some(t) = two_orgs().await else { return };
        let db = cluster().await.unwrap().superuser().await;
        let carol = UserId::from(pg::create_user(&db).await);
        let as_carol = t.service.as_user(&claims(carol)).unwrap();
        let wanted = Organization {
            id: OrgId::new_v7(),
            name: "Initech".into(),
            slug: tenancy::Slug::parse(&unique_slug("initech")).unwrap(),
            owner_user_id: Some(carol),
            timezone: chrono_tz::Tz::UTC,
            created_at: Utc::now(),
        };
        let created = as_carol.create_organization(&wanted).await.unwrap();
        assert_ne!(
            created.id, wanted.id,
            "the database assigns a user's org id"
        );
        let stored = t.service.organization_by_slug(&created.slug).await.unwrap();
        assert_eq!(Some(&created), stored.as_ref());
        let own = as_carol
            .membership(created.id, carol)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(own.role, Role::Owner);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_anon_role_reads_nothing() {
        let Some(t) = two_orgs().await else { return };
        let anon = t
            .service
            .as_user(&json!({ "sub": t.alice.to_string(), "role": "anon" }))
            .unwrap();
        denied(anon.organization(t.acme.id).await, "anon reading an org");
        denied(anon.features(t.acme.id).await, "anon reading features");
    }
}

/// Errors through `PgStore` are responses without database detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_safe_responses() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let pg = service(cluster);
    let store: Arc<DynStore> = Arc::new(pg.clone());
    let tenancy = tenancy::Tenancy::builder()
        .store(pg.clone())
        .build()
        .unwrap();
    let user_store =
        |user: UserId| -> Arc<DynStore> { Arc::new(pg.as_user(&claims(user)).unwrap()) };
    responses::errors_are_safe_responses(&tenancy, &store, &mut UserId::new_v7, Some(&user_store))
        .await;
}

/// Drift injected in SQL is found by the operator's reconciliation through
/// `PgStore` and repaired; a user's store may not reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_finds_and_repairs_injected_drift() {
    use chrono::TimeZone as _;
    use rust_decimal::Decimal;
    use tenancy::limits::{LimitScope, Period, PeriodKey};
    use tenancy::store::{CounterDrift, ReconcileQuery};

    let Some(cluster) = cluster().await else {
        return;
    };
    let service = service(cluster);
    let db = cluster.superuser().await;
    let (alice, bob) = (
        UserId::from(pg::create_user(&db).await),
        UserId::from(pg::create_user(&db).await),
    );
    let acme = new_org(&service, alice).await;
    let now = chrono::Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).unwrap();
    let tenancy = Tenancy::builder()
        .store(service.clone())
        .clock(tenancy::clock::FakeClock::new(now))
        .build()
        .unwrap();
    let recorded = tenancy
        .service()
        .record_usage_batch(vec![
            tenancy::UsageEvent::new(acme.id)
                .user(alice)
                .tokens(60, 0, 40),
            tenancy::UsageEvent::new(acme.id)
                .user(bob)
                .tokens(20, 0, 10),
        ])
        .await
        .unwrap();
    assert_eq!(recorded.inserted, 2);
    let ops = PlatformOperator::new("reconciler");
    let operator = tenancy.operator(&ops);
    let today = PeriodKey::containing(Period::Daily, now, acme.timezone);
    assert_eq!(
        operator
            .reconcile_usage(acme.id, today, None)
            .await
            .unwrap(),
        []
    );

    let org: uuid::Uuid = acme.id.into();
    db.execute(
        "update usage_counters set used = used + 5 where organization_id = $1 \
         and scope_user_id = $2 and metric = 'tokens' and period = 'daily'",
        &[&org, &uuid::Uuid::from(bob)],
    )
    .await
    .unwrap();
    let want = vec![CounterDrift {
        scope: LimitScope::User(bob),
        metric: tenancy::MetricKey::TOKENS,
        period: today,
        counted: Decimal::from(35),
        recomputed: Decimal::from(30),
    }];
    assert_eq!(
        operator
            .reconcile_usage(acme.id, today, None)
            .await
            .unwrap(),
        want
    );
    assert_eq!(
        operator
            .reconcile_usage(acme.id, today, Some("tokens"))
            .await
            .unwrap(),
        want
    );
    let bad = operator
        .reconcile_usage(acme.id, today, Some("Bad Metric"))
        .await;
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidInput);

    // A user JWT may not: 42501, PermissionDenied.
    let as_alice = service.as_user(&claims(alice)).unwrap();
    let query = ReconcileQuery::new(acme.id, today);
    for refused in [
        as_alice.reconcile_usage(&query).await,
        as_alice.repair_usage(&query).await,
    ] {
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::PermissionDenied);
    }

    assert_eq!(
        operator.repair_usage(acme.id, today, None).await.unwrap(),
        want
    );
    assert_eq!(
        operator
            .reconcile_usage(acme.id, today, None)
            .await
            .unwrap(),
        []
    );
    let used: String = db
        .query_one(
            "select used::text from usage_counters where organization_id = $1 \
             and scope_user_id = $2 and metric = 'tokens' and period = 'daily'",
            &[&org, &uuid::Uuid::from(bob)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(used, "30");
    let ghost = operator
        .repair_usage(tenancy::OrgId::new_v7(), today, None)
        .await;
    assert_eq!(ghost.unwrap_err().kind(), ErrorKind::NotFound);
}
