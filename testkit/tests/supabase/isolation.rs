//! A user client (a user's JWT, RLS on) cannot read or write another
//! organization through any method or raw builder.

use chrono::Utc;
use serde_json::{Value, json};
use tenancy::store::{MemberStore, OrgStore};
use tenancy::{
    ErrorKind, Membership, NewLimit, NewOrganization, OrgId, PlatformOperator, Role, Tenancy,
    UsageEvent, UserId,
};

use tenancy_testkit::{isolation, unique_slug};

use super::{Brand, TwoOrgs, api, two_orgs, user_client};

/// Both orgs get a feature, a limit and usage, so "nothing of Bob's" below
/// is a refusal, not an empty table.
async fn seed_both(t: &TwoOrgs) {
    let operator = PlatformOperator::new("test");
    for org in [t.acme.id, t.globex.id] {
        let admin = t.tenancy.operator(&operator);
        admin.enable_feature(org, "beta").await.unwrap();
        let limit = NewLimit::from_limit_type("monthly_tokens", 100.into()).unwrap();
        admin.set_limit(org, limit).await.unwrap();
        t.tenancy
            .service()
            .record_usage(UsageEvent::new(org).tokens(5, 0, 0))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_client_reads_its_own_org_and_nothing_of_another() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    seed_both(&t).await;
    let as_alice = user_client(server, &t.service, t.alice);
    assert!(as_alice.is_user_client());
    isolation::reads_own_and_nothing_of_another(&as_alice, &t.acme, &t.globex, t.bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_builders_of_a_user_client_see_only_its_own_rows() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    seed_both(&t).await;
    let as_alice = user_client(server, &t.service, t.alice);
    let all: Vec<Value> = as_alice
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
        "usage_counters",
    ] {
        let column = if table == "organizations" {
            "id"
        } else {
            "organization_id"
        };
        let query = |store: &tenancy::supabase::SupabaseStore, org: OrgId| {
            store.from(table).select("*").eq(column, org.to_string())
        };
        let own: Vec<Value> = as_alice.fetch(query(&as_alice, t.acme.id)).await.unwrap();
        assert!(!own.is_empty(), "{table}: her own rows");
        let rows: Vec<Value> = as_alice.fetch(query(&as_alice, t.globex.id)).await.unwrap();
        assert!(rows.is_empty(), "{table}: {rows:?}");
        let service_sees: Vec<Value> = t
            .service
            .fetch(query(&t.service, t.globex.id))
            .await
            .unwrap();
        assert!(!service_sees.is_empty(), "{table}: Bob's rows exist");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_rpcs_refuse_another_org_and_other_members_usage() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    seed_both(&t).await;
    let as_alice = user_client(server, &t.service, t.alice);
    let call = |function: &str, args: Value| {
        as_alice.fetch::<Value>(as_alice.rpc(function, args.to_string()))
    };
    let snapshot = |org: OrgId| {
        json!({"org_id": org, "daily_start": "2026-03-04", "monthly_start": "2026-03-01",
               "now": "2026-03-04T10:00:00Z"})
    };
    call("tenancy_usage_snapshot", snapshot(t.acme.id))
        .await
        .unwrap();
    let err = call("tenancy_usage_snapshot", snapshot(t.globex.id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let history = |org: OrgId, scope: &str| {
        json!({"org_id": org, "scope": scope, "period": "daily",
               "from_start": "2000-01-01", "to_start": "2100-01-01"})
    };
    let own = call("tenancy_usage_history", history(t.acme.id, "organization"))
        .await
        .unwrap();
    assert!(!own.as_array().unwrap().is_empty(), "{own}");
    let err = call(
        "tenancy_usage_history",
        history(t.globex.id, "organization"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // Alice owns Acme, so she sees its members' usage; her viewer does not.
    call("tenancy_usage_history", history(t.acme.id, "each_user"))
        .await
        .unwrap();
    let viewer = UserId::new_v7();
    let alice_ctx = t.ctx(t.alice, &t.acme).await;
    t.tenancy
        .add_member(&alice_ctx, viewer, Role::Viewer)
        .await
        .unwrap();
    let as_viewer = user_client(server, &t.service, viewer);
    let body = history(t.acme.id, "each_user").to_string();
    let err = as_viewer
        .fetch::<Value>(as_viewer.rpc("tenancy_usage_history", body))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // The operator's and the workers' RPCs are not a user's to call, even
    // for her own org.
    let now = "2026-03-04T10:00:00Z";
    let refused = [
        ("tenancy_list_organizations", json!({"max_rows": 10})),
        (
            "tenancy_update_feature",
            json!({"org_id": t.acme.id, "feature_key": "beta",
            "set_config": false, "updated_at": now, "enabled": true}),
        ),
        (
            "tenancy_reserve",
            json!({"org_id": t.acme.id, "user_id": t.alice, "metric": "tokens",
            "amount": 1, "daily_start": "2026-03-04", "monthly_start": "2026-03-01", "now": now,
            "expires_at": now, "reservation_id": uuid::Uuid::new_v4(), "purge_before": now}),
        ),
    ];
    for (function, args) in refused {
        let err = call(function, args).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{function}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_client_cannot_join_rename_or_delete_another_org() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let as_alice = user_client(server, &t.service, t.alice);
    let join = Membership {
        user_id: t.alice,
        organization_id: t.globex.id,
        role: Role::Owner,
        created_at: Utc::now(),
    };
    let err = as_alice.add_member(&join).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let rename = as_alice
        .from("organizations")
        .eq("id", t.globex.id.to_string())
        .update(json!({"name": "Pwned"}).to_string());
    let renamed: Vec<Value> = as_alice.fetch(rename).await.unwrap();
    assert!(renamed.is_empty());
    let err = as_alice
        .rename_organization(t.globex.id, "Pwned")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!as_alice.delete_organization(t.globex.id).await.unwrap());
    let err = as_alice
        .set_member_role(t.globex.id, t.bob, Role::Owner, Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "as if Bob were not a member: {err}"
    );
    let err = as_alice
        .remove_member(t.globex.id, t.bob, Role::Owner)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let globex = t.service.organization(t.globex.id).await.unwrap().unwrap();
    assert_eq!(globex.name, "Globex");
    let members: Vec<(UserId, Role)> = t
        .service
        .members(t.globex.id)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(members, [(t.bob, Role::Owner)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_client_cannot_change_features_limits_or_usage() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    seed_both(&t).await;
    let as_alice = user_client(server, &t.service, t.alice);
    isolation::changes_nothing(&as_alice, &t.service, t.alice, [&t.acme, &t.globex]).await;
    let brand = json!([{"name": "Trojan", "organization_id": t.globex.id.to_string()}]);
    let err = as_alice
        .fetch::<Vec<Brand>>(as_alice.from("brands").insert(brand.to_string()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
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
    let new = NewOrganization::new("Initech", &unique_slug("initech")).unwrap();
    let created = as_carol.create_organization(carol, new).await.unwrap();
    let stored = t.service.organization_by_slug(&created.slug).await.unwrap();
    assert_eq!(Some(&created), stored.as_ref());
    let ctx = as_carol.context(carol, created.id).await.unwrap();
    assert_eq!(ctx.role(), Role::Owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anon_key_alone_reads_nothing() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let anon = tenancy::supabase::SupabaseStore::builder()
        .rest_url(server.url())
        .anon_key(server.anon_key())
        .build()
        .unwrap();
    let err = anon.organization(t.acme.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(api(&err).code(), Some("42501"));
}

/// The user directory through PostgREST: a member's user client names its
/// organization's members (email, and the name from the sign-up metadata)
/// and learns nothing of another organization's user; the service client
/// names anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_client_names_its_co_members_and_nobody_else() {
    use tenancy::store::UserDirectory;
    use tenancy_testkit::pg::{Cluster, create_user};

    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let db = Cluster::shared().expect("the cluster").superuser().await;
    let (ada, carol) = (
        UserId::from(create_user(&db).await),
        UserId::from(create_user(&db).await),
    );
    db.execute(
        "update auth.users set raw_user_meta_data = '{\"name\": \"Ada Lovelace\"}' where id = $1",
        &[&ada.as_uuid()],
    )
    .await
    .unwrap();
    let owner = t.ctx(t.alice, &t.acme).await;
    t.tenancy
        .add_member(&owner, ada, Role::Member)
        .await
        .unwrap();
    let bobs = t.ctx(t.bob, &t.globex).await;
    t.tenancy
        .add_member(&bobs, carol, Role::Member)
        .await
        .unwrap();

    let as_ada = user_client(server, &t.service, ada);
    let tenancy = Tenancy::builder()
        .store(as_ada.clone())
        .user_directory(as_ada.clone())
        .build()
        .unwrap();
    let ctx = tenancy.context(ada, t.acme.id).await.unwrap();
    let members = tenancy.member_profiles(&ctx).await.unwrap();
    let ada_profile = members
        .iter()
        .find(|(m, _)| m.user_id == ada)
        .map(|(_, p)| p.clone())
        .expect("ada is a member");
    assert_eq!(ada_profile.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(ada_profile.email, Some(format!("{ada}@example.test")));

    let seen = as_ada.profiles(&[ada, carol]).await.unwrap();
    let ids: Vec<UserId> = seen.iter().map(|p| p.user_id).collect();
    assert_eq!(ids, [ada], "carol shares no organization with ada");
    let by_service = t.service.profiles(&[carol]).await.unwrap();
    assert_eq!(by_service.len(), 1);
    assert_eq!(by_service[0].email, Some(format!("{carol}@example.test")));
}
