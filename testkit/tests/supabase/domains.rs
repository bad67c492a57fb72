//! Verified-domain auto-join live, through the PostgREST stand-in: a user
//! JWT lists and joins an organization through its confirmed email, a user
//! at another domain is refused, `org_domains` shows its rows to owners
//! only; and the facade over the service client joins through the same
//! SQL, the user directory telling it whose email is confirmed.

use serde_json::{Value, json};
use tenancy::model::domain::AutoJoin;
use tenancy::supabase::SupabaseStore;
use tenancy::{ErrorKind, PlatformOperator, Role, Tenancy, UserId};
use tenancy_testkit::pg::Cluster;
use uuid::Uuid;

use super::{two_orgs, user_client};

/// A new user of `auth.users` at `domain`, its email confirmed or not.
async fn user_at(domain: &str, confirmed: bool) -> UserId {
    let db = Cluster::shared().expect("the cluster").superuser().await;
    // Supabase's auth.users has the column; the bootstrap's may not.
    for attempt in 0..10 {
        match db
            .batch_execute(
                "alter table auth.users add column if not exists email_confirmed_at timestamptz",
            )
            .await
        {
            Ok(()) => break,
            Err(e) if attempt < 9 => {
                eprintln!("adding auth.users.email_confirmed_at, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let id = Uuid::now_v7();
    db.execute(
        "insert into auth.users (id, email, email_confirmed_at) \
         values ($1, $2, case when $3 then now() end)",
        &[&id, &format!("{}@{domain}", id.simple()), &confirmed],
    )
    .await
    .expect("insert auth.users");
    UserId::from(id)
}

async fn rpc(client: &SupabaseStore, function: &str, args: Value) -> tenancy::Result<Value> {
    client.fetch(client.rpc(function, args.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_jwt_joins_through_its_confirmed_email() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let domain = format!("d{}.example", &Uuid::new_v4().simple().to_string()[..12]);
    let operator = PlatformOperator::new("live-tests");
    t.tenancy
        .operator(&operator)
        .add_domain(t.acme.id, &domain, false)
        .await
        .unwrap();
    let alice = t.ctx(t.alice, &t.acme).await;
    t.tenancy
        .set_domain_auto_join(&alice, &domain, AutoJoin::Member)
        .await
        .unwrap();

    let carol = user_at(&domain, true).await;
    let as_carol = user_client(server, &t.service, carol);
    let listed = rpc(&as_carol, "tenancy_joinable_organizations", json!({}))
        .await
        .unwrap();
    assert_eq!(
        listed[0]["organization"]["id"],
        json!(t.acme.id.to_string())
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A user acting for another is refused.
    let e = rpc(
        &as_carol,
        "tenancy_join_organization",
        json!({"org_id": t.acme.id, "user_id": t.bob}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    let joined = rpc(
        &as_carol,
        "tenancy_join_organization",
        json!({"org_id": t.acme.id}),
    )
    .await
    .unwrap();
    assert_eq!(joined["joined"], json!(true));
    assert_eq!(joined["membership"]["role"], json!("member"));
    let ctx = t.tenancy.context(carol, t.acme.id).await.unwrap();
    assert_eq!(ctx.role(), Role::Member);

    // A member reads no domains; the owner reads Acme's, not Globex's.
    let rows: Vec<Value> = as_carol
        .fetch(as_carol.from("org_domains").select("*"))
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let as_alice = user_client(server, &t.service, t.alice);
    let rows: Vec<Value> = as_alice
        .fetch(as_alice.from("org_domains").select("*"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let as_bob = user_client(server, &t.service, t.bob);
    let rows: Vec<Value> = as_bob
        .fetch(as_bob.from("org_domains").select("*"))
        .await
        .unwrap();
    assert!(rows.is_empty(), "another org's owner: {rows:?}");

    // Bob's email is at another domain, and an unconfirmed one joins
    // nothing.
    let e = rpc(
        &as_bob,
        "tenancy_join_organization",
        json!({"org_id": t.acme.id}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let unconfirmed = user_at(&domain, false).await;
    let as_unconfirmed = user_client(server, &t.service, unconfirmed);
    assert_eq!(
        rpc(&as_unconfirmed, "tenancy_joinable_organizations", json!({}))
            .await
            .unwrap(),
        json!([])
    );
    let e = rpc(
        &as_unconfirmed,
        "tenancy_join_organization",
        json!({"org_id": t.acme.id}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(t.tenancy.context(unconfirmed, t.acme.id).await.is_err());
}

/// The facade over the service client, with the same client as its user
/// directory: the selector and joining work end to end on SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_joins_through_the_sql_store_and_directory() {
    let Some((_server, t)) = two_orgs().await else {
        return;
    };
    let tenancy = Tenancy::builder()
        .store(t.service.clone())
        .user_directory(t.service.clone())
        .build()
        .unwrap();
    let domain = format!("d{}.example", &Uuid::new_v4().simple().to_string()[..12]);
    let operator = PlatformOperator::new("live-tests");
    tenancy
        .operator(&operator)
        .add_domain(t.globex.id, &domain, true)
        .await
        .unwrap();
    let bob = tenancy.context(t.bob, t.globex.id).await.unwrap();
    tenancy
        .set_domain_auto_join(&bob, &domain, AutoJoin::Viewer)
        .await
        .unwrap();

    let dave = user_at(&format!("eu.{domain}"), true).await;
    let joinable = tenancy.orgs_joinable_by(dave).await.unwrap();
    assert_eq!(joinable.len(), 1);
    assert_eq!(
        (joinable[0].organization.id, joinable[0].role),
        (t.globex.id, Role::Viewer)
    );
    let joined = tenancy.join_organization(dave, t.globex.id).await.unwrap();
    assert!(joined.joined);
    assert_eq!(joined.membership.role, Role::Viewer);
    assert!(
        !tenancy
            .join_organization(dave, t.globex.id)
            .await
            .unwrap()
            .joined
    );

    let erin = user_at(&format!("{domain}.evil.io"), true).await;
    assert!(tenancy.orgs_joinable_by(erin).await.unwrap().is_empty());
    assert_eq!(
        tenancy
            .join_organization(erin, t.globex.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
}

/// A user client reaches verified domains through the store only where an
/// owner may: its own organization's list; every store primitive of the
/// operator and the service, and another organization's list and join
/// setting, are refused, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_client_reaches_domains_only_as_its_role_allows() {
    use tenancy::model::domain::{DomainChange, DomainName};
    use tenancy::store::DomainStore;
    use tenancy_testkit::isolation::denied;

    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let operator = PlatformOperator::new("live-tests");
    let domain = format!("d{}.example", &Uuid::new_v4().simple().to_string()[..12]);
    for org in [t.acme.id, t.globex.id] {
        t.tenancy
            .operator(&operator)
            .add_domain(org, &domain, false)
            .await
            .unwrap();
    }
    let name = DomainName::parse(&domain).unwrap();
    let now = chrono::Utc::now();
    let as_alice = user_client(server, &t.service, t.alice);

    // Her own organization's list, as its owner.
    assert_eq!(as_alice.domains(t.acme.id).await.unwrap().len(), 1);
    let own = as_alice
        .set_auto_join(t.acme.id, &name, AutoJoin::Viewer, now)
        .await
        .unwrap();
    assert_eq!(own.auto_join, AutoJoin::Viewer);

    denied(as_alice.domains(t.globex.id).await, "another org's domains");
    denied(
        as_alice
            .set_auto_join(t.globex.id, &name, AutoJoin::Member, now)
            .await,
        "another org's join setting",
    );
    denied(
        as_alice
            .put_domain(t.acme.id, &name, &DomainChange::enabled(false), now)
            .await,
        "recording a domain",
    );
    denied(
        as_alice.remove_domain(t.globex.id, &name).await,
        "removing a domain",
    );
    denied(
        as_alice
            .joinable_organizations(t.alice, &format!("x@{domain}"))
            .await,
        "the joinable list for any email",
    );
    denied(
        as_alice
            .join_by_domain(t.globex.id, t.alice, &format!("x@{domain}"), now)
            .await,
        "joining with an email of its choosing",
    );

    let globex = t.service.domains(t.globex.id).await.unwrap();
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0].auto_join, AutoJoin::Off, "unchanged");
    assert!(globex[0].enabled);
    assert!(t.tenancy.context(t.alice, t.globex.id).await.is_err());
}
