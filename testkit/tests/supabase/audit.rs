//! The audit log through PostgREST: a user JWT's direct table write is
//! recorded with that user as the actor, whatever audit headers the request
//! carries; the owner reads the trail but cannot delete or change it; the
//! facade over the service client names its actor and request id, as
//! `PgStore` does over a direct connection (in user mode, always the user);
//! the log is refused to members and to other organizations' owners.

use tenancy::model::audit::{AuditActor, AuditContext, AuditQuery, RequestId};
use tenancy::store::AuditStore;
use tenancy::{ErrorKind, Role};

use super::{two_orgs, user_client};

/// Alice (owner) re-roles Bob by PATCHing `user_organizations` with her
/// JWT, inside an audit context that claims an operator and a request id:
/// the event names Alice (the header cannot make her someone else) and
/// keeps the request id.
#[tokio::test]
async fn a_direct_write_through_postgrest_is_audited_as_the_jwts_user() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let ctx = t.ctx(t.alice, &t.acme).await;
    t.tenancy
        .add_member(&ctx, t.bob, Role::Member)
        .await
        .unwrap();
    let alice = user_client(server, &t.service, t.alice);
    let posing = AuditContext::new()
        .actor(AuditActor::operator("support"))
        .request_id(RequestId::parse("req-postgrest-1").unwrap());
    let patch = posing
        .scope(async {
            alice
                .execute(
                    alice
                        .from("user_organizations")
                        .eq("organization_id", t.acme.id.to_string())
                        .eq("user_id", t.bob.to_string())
                        .update(r#"{"role": "admin"}"#),
                )
                .await
        })
        .await;
    patch.expect("the owner re-roles bob directly");

    let query = AuditQuery::new(1)
        .unwrap()
        .org(t.acme.id)
        .action("member.updated")
        .unwrap();
    let events = t.service.audit_log(&query).await.unwrap();
    let event = &events[0];
    assert_eq!(event.actor, AuditActor::user(t.alice));
    assert_eq!(event.target.as_deref(), Some(t.bob.to_string().as_str()));
    assert_eq!(event.before.as_ref().unwrap()["role"], "member");
    assert_eq!(event.after.as_ref().unwrap()["role"], "admin");
    assert_eq!(event.request_id.as_deref(), Some("req-postgrest-1"));
}

/// The owner reads her organization's events through PostgREST, and
/// neither DELETE nor PATCH of them gets through: the trail is the same
/// afterwards.
#[tokio::test]
async fn the_owner_cannot_erase_her_trail_through_postgrest() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let ctx = t.ctx(t.alice, &t.acme).await;
    t.tenancy
        .rename_organization(&ctx, "Acme Renamed")
        .await
        .unwrap();
    let alice = user_client(server, &t.service, t.alice);
    let org = t.acme.id.to_string();
    let read = || {
        alice
            .from("audit_events")
            .eq("organization_id", org.clone())
            .order("id")
    };
    let trail: serde_json::Value = alice.fetch(read()).await.unwrap();
    let count = trail.as_array().unwrap().len();
    assert!(count >= 3, "created, owner added, renamed: {trail}");

    let delete = alice
        .execute(
            alice
                .from("audit_events")
                .eq("organization_id", org.clone())
                .delete(),
        )
        .await;
    assert_eq!(
        delete.expect_err("DELETE refused").kind(),
        ErrorKind::PermissionDenied
    );
    let patch = alice
        .execute(
            alice
                .from("audit_events")
                .eq("organization_id", org.clone())
                .update(r#"{"action": "nothing.happened"}"#),
        )
        .await;
    assert_eq!(
        patch.expect_err("PATCH refused").kind(),
        ErrorKind::PermissionDenied
    );
    let insert = alice
        .execute(alice.from("audit_events").insert(format!(
            r#"{{"organization_id": "{org}", "actor_kind": "service", "action": "organization.updated"}}"#
        )))
        .await;
    assert_eq!(
        insert.expect_err("POST refused").kind(),
        ErrorKind::PermissionDenied
    );
    // The retention function is not hers either.
    let prune = alice
        .execute(alice.rpc("tenancy_prune_audit_log", r#"{"older_than": "30 days"}"#))
        .await;
    assert_eq!(
        prune.expect_err("pruning refused").kind(),
        ErrorKind::PermissionDenied
    );
    let after: serde_json::Value = alice.fetch(read()).await.unwrap();
    assert_eq!(after, trail);
}

/// The facade over the service client sends who acts and the request id:
/// a member added by Alice inside `with_request_id` names both; an
/// operator's change names the operator.
#[tokio::test]
async fn the_facade_names_its_actor_and_request_id_over_postgrest() {
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    let ctx = t.ctx(t.alice, &t.acme).await;
    let request = RequestId::parse("req-facade-7").unwrap();
    tenancy::Tenancy::with_request_id(request, t.tenancy.add_member(&ctx, t.bob, Role::Viewer))
        .await
        .unwrap();
    let operator = tenancy::PlatformOperator::new("Zoë");
    t.tenancy
        .operator(&operator)
        .enable_feature(t.acme.id, "sso")
        .await
        .unwrap();

    let page = t
        .tenancy
        .audit_log(&ctx, AuditQuery::new(2).unwrap())
        .await
        .unwrap();
    assert_eq!(page.events[0].action, "feature.created");
    assert_eq!(page.events[0].actor, AuditActor::operator("Zoë"));
    assert_eq!(page.events[1].action, "member.created");
    assert_eq!(page.events[1].actor, AuditActor::user(t.alice));
    assert_eq!(page.events[1].request_id.as_deref(), Some("req-facade-7"));
    assert!(page.next.is_some());
}

/// Through a user client, the log of one's own organization needs admin;
/// another organization's is refused to its non-member, and every
/// organization's to any user.
#[tokio::test]
async fn user_clients_read_only_the_logs_they_administer() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let ctx = t.ctx(t.alice, &t.acme).await;
    let carol = tenancy::UserId::new_v7();
    t.tenancy
        .add_member(&ctx, carol, Role::Member)
        .await
        .unwrap();
    let alice = user_client(server, &t.service, t.alice);
    let bob = user_client(server, &t.service, t.bob);
    let carol = user_client(server, &t.service, carol);
    let acme = AuditQuery::new(50).unwrap().org(t.acme.id);
    let own = alice.audit_log(&acme).await.unwrap();
    assert!(own.iter().all(|e| e.organization_id == t.acme.id));
    assert!(own.len() >= 3);
    for (who, client) in [("bob of globex", &bob), ("carol, a member", &carol)] {
        let err = client.audit_log(&acme).await.expect_err(who);
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{who}: {err}");
    }
    let everyone = AuditQuery::new(50).unwrap();
    let err = alice.audit_log(&everyone).await.expect_err("every org");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// `PgStore` in user mode (the same cluster, a direct connection): a
/// user's change through the store is recorded with the user as the actor,
/// whatever audit context names, and keeps the context's request id; the
/// service mode names the context's actor.
#[tokio::test]
async fn pg_store_user_mode_records_the_user_and_the_request_id() {
    use tenancy::postgres::PgStore;
    use tenancy::store::MemberStore;
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    let Some(cluster) = tenancy_testkit::pg::shared_with_fixtures().await else {
        return;
    };
    let service = PgStore::builder()
        .url(cluster.url(tenancy_testkit::pg::DATABASE))
        .pool_size(1)
        .build()
        .unwrap();
    let ctx = t.ctx(t.alice, &t.acme).await;
    t.tenancy
        .add_member(&ctx, t.bob, Role::Viewer)
        .await
        .unwrap();
    let claims = serde_json::json!({
        "sub": t.alice.to_string(), "role": "authenticated", "aud": "authenticated"
    });
    let as_alice = service.as_user(&claims).unwrap();
    AuditContext::new()
        .actor(AuditActor::operator("posing"))
        .request_id(RequestId::parse("req-pg-user").unwrap())
        .scope(as_alice.set_member_role(t.acme.id, t.bob, Role::Viewer, Role::Member))
        .await
        .unwrap();
    AuditContext::new()
        .actor(AuditActor::operator("pg-ops"))
        .scope(service.set_member_role(t.acme.id, t.bob, Role::Member, Role::Viewer))
        .await
        .unwrap();

    let query = AuditQuery::new(2)
        .unwrap()
        .org(t.acme.id)
        .action("member.updated")
        .unwrap();
    let events = service.audit_log(&query).await.unwrap();
    assert_eq!(events[0].actor, AuditActor::operator("pg-ops"));
    assert_eq!(events[0].after.as_ref().unwrap()["role"], "viewer");
    assert_eq!(events[1].actor, AuditActor::user(t.alice));
    assert_eq!(events[1].after.as_ref().unwrap()["role"], "member");
    assert_eq!(events[1].request_id.as_deref(), Some("req-pg-user"));
}
