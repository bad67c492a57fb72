//! The audit log through the facade: every change names its actor (the
//! context's user, the operator by name) and the clock's time, and the
//! request id of `with_request_id`; owners and admins read their
//! organization's log in keyset pages, members, viewers and other
//! organizations cannot; the operator reads every organization's, a
//! deleted one's included.

use std::time::Duration;

use tenancy::clock::Clock as _;
use tenancy::model::audit::{AuditActor, AuditCursor, AuditQuery, RequestId};
use tenancy::{ErrorKind, NewLimit, NewOrganization, Role, Tenancy, UserId};
use tenancy_testkit::unique_slug;

use crate::scene::{kind, scene};

fn q(limit: usize) -> AuditQuery {
    AuditQuery::new(limit).expect("a valid page size")
}

/// Each change through the facade is one event naming who made it, at the
/// time the facade's clock read.
#[tokio::test]
async fn every_change_names_its_actor_and_the_clocks_time() {
    let s = scene().await;
    let bob = UserId::new_v7();
    let start = s.clock.now();
    s.tenancy
        .add_member(&s.owner_ctx, bob, Role::Viewer)
        .await
        .unwrap();
    s.clock.advance(Duration::from_secs(60));
    s.tenancy
        .change_role(&s.owner_ctx, bob, Role::Admin)
        .await
        .unwrap();
    s.clock.advance(Duration::from_secs(60));
    s.op().enable_feature(s.org, "sso").await.unwrap();
    s.op()
        .set_limit(
            s.org,
            NewLimit::from_limit_type("monthly_tokens", 1000.into()).unwrap(),
        )
        .await
        .unwrap();
    let bob_ctx = s.tenancy.context(bob, s.org).await.unwrap();
    s.tenancy
        .rename_organization(&bob_ctx, "Acme Two")
        .await
        .unwrap();
    s.tenancy.leave(&bob_ctx).await.unwrap();

    let page = s.tenancy.audit_log(&s.owner_ctx, q(50)).await.unwrap();
    let got: Vec<(&str, AuditActor)> = page
        .events
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.actor.clone()))
        .collect();
    let (owner, bob_actor) = (AuditActor::user(s.owner), AuditActor::user(bob));
    let operator = AuditActor::operator(s.operator.name());
    assert_eq!(
        got,
        [
            ("organization.created", owner.clone()),
            ("member.created", owner.clone()),
            ("member.created", owner.clone()),
            ("member.updated", owner.clone()),
            ("feature.created", operator.clone()),
            ("limit.created", operator),
            ("organization.updated", bob_actor.clone()),
            ("member.deleted", bob_actor),
        ]
    );
    let times: Vec<_> = page.events.iter().rev().map(|e| e.at - start).collect();
    let minutes: Vec<i64> = times.iter().map(|t| t.num_minutes()).collect();
    assert_eq!(minutes, [0, 0, 0, 1, 2, 2, 2, 2]);
    assert!(page.next.is_none());
    let updated = &page.events[4];
    assert_eq!(updated.before.as_ref().unwrap()["role"], "viewer");
    assert_eq!(updated.after.as_ref().unwrap()["role"], "admin");
}

/// A change that writes nothing (the role a member already has) and a
/// refused change write no event.
#[tokio::test]
async fn refused_and_no_op_changes_write_no_event() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    let before = s.tenancy.audit_log(&s.owner_ctx, q(50)).await.unwrap();
    s.tenancy
        .change_role(&s.owner_ctx, member.user(), Role::Member)
        .await
        .unwrap();
    assert_eq!(
        kind(s.tenancy.rename_organization(&member, "Mine").await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(s.tenancy.leave(&s.owner_ctx).await),
        ErrorKind::PermissionDenied
    );
    let after = s.tenancy.audit_log(&s.owner_ctx, q(50)).await.unwrap();
    assert_eq!(after, before);
}

/// `with_request_id` puts its id on the events of the changes inside it,
/// and on no other.
#[tokio::test]
async fn a_request_id_reaches_the_events_inside_its_scope_only() {
    let s = scene().await;
    let request = RequestId::parse("req-123").unwrap();
    let (bob, carol) = (UserId::new_v7(), UserId::new_v7());
    Tenancy::with_request_id(request, async {
        s.tenancy
            .add_member(&s.owner_ctx, bob, Role::Member)
            .await
            .unwrap();
        s.op().enable_feature(s.org, "sso").await.unwrap();
    })
    .await;
    s.tenancy
        .add_member(&s.owner_ctx, carol, Role::Member)
        .await
        .unwrap();
    let events = s
        .tenancy
        .audit_log(&s.owner_ctx, q(3))
        .await
        .unwrap()
        .events;
    let ids: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.request_id.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            ("member.created", None),
            ("feature.created", Some("req-123")),
            ("member.created", Some("req-123")),
        ]
    );
    assert_eq!(events[0].target, Some(carol.to_string()));
    assert_eq!(
        RequestId::parse("has space").unwrap_err().field(),
        Some("request_id")
    );
}

/// Members and viewers are refused the log; admins read it; another
/// organization's owner reads only their own, whatever org the query names.
#[tokio::test]
async fn only_owners_and_admins_read_their_organizations_log() {
    let s = scene().await;
    for role in [Role::Member, Role::Viewer] {
        let ctx = s.member(role).await;
        assert_eq!(
            kind(s.tenancy.audit_log(&ctx, q(10)).await),
            ErrorKind::PermissionDenied,
            "{role}"
        );
    }
    let admin = s.member(Role::Admin).await;
    let read = s.tenancy.audit_log(&admin, q(100)).await.unwrap();
    assert!(read.events.iter().all(|e| e.organization_id == s.org));
    assert_eq!(read.events.len(), 5, "{:?}", read.events);

    let stranger = UserId::new_v7();
    let other = s
        .tenancy
        .create_organization(
            stranger,
            NewOrganization::new("Globex", &unique_slug("globex")).unwrap(),
        )
        .await
        .unwrap();
    let theirs = s.tenancy.context(stranger, other.id).await.unwrap();
    let aimed = s
        .tenancy
        .audit_log(&theirs, q(100).org(s.org))
        .await
        .unwrap();
    assert_eq!(aimed.events.len(), 2);
    assert!(aimed.events.iter().all(|e| e.organization_id == other.id));
}

/// Pages of 3 follow `next` to the end: newest first, no overlap, no gap,
/// the last page without `next`; a change between pages is in none of the
/// later ones.
#[tokio::test]
async fn pages_follow_next_to_the_end() {
    let s = scene().await;
    for _ in 0..7 {
        s.member(Role::Viewer).await;
    }
    let all = s.tenancy.audit_log(&s.owner_ctx, q(100)).await.unwrap();
    assert_eq!(all.events.len(), 9);
    let mut seen = Vec::new();
    let mut query = q(3);
    loop {
        let page = s
            .tenancy
            .audit_log(&s.owner_ctx, query.clone())
            .await
            .unwrap();
        seen.extend(page.events);
        if seen.len() == 3 {
            s.member(Role::Viewer).await;
        }
        match page.next {
            Some(next) => query = q(3).after(next),
            None => break,
        }
    }
    assert_eq!(seen, all.events);
    // A cursor travels as text.
    let cursor = all.events[4].cursor();
    assert_eq!(cursor.to_string().parse::<AuditCursor>().unwrap(), cursor);
    assert_eq!(kind(AuditQuery::new(0)), ErrorKind::InvalidInput);
    assert_eq!(kind(AuditQuery::new(1001)), ErrorKind::InvalidInput);
}

/// The operator reads every organization's log, filtered by actor, and a
/// deleted organization's trail (the owner's deletion last).
#[tokio::test]
async fn the_operator_reads_every_log_a_deleted_organizations_too() {
    let s = scene().await;
    let other_owner = UserId::new_v7();
    let other = s
        .tenancy
        .create_organization(
            other_owner,
            NewOrganization::new("Globex", &unique_slug("globex")).unwrap(),
        )
        .await
        .unwrap();
    s.op().transfer_ownership(other.id, s.owner).await.unwrap();
    s.tenancy.delete_organization(&s.owner_ctx).await.unwrap();

    let all = s.op().audit_log(q(100)).await.unwrap();
    let orgs: std::collections::BTreeSet<_> =
        all.events.iter().map(|e| e.organization_id).collect();
    assert_eq!(orgs, [s.org, other.id].into_iter().collect());
    let deleted = s.op().audit_log(q(1).org(s.org)).await.unwrap();
    assert_eq!(deleted.events[0].action, "organization.deleted");
    assert_eq!(deleted.events[0].actor, AuditActor::user(s.owner));
    // The transfer: the new owner added, the old one demoted, by the operator.
    let by_operator = s
        .op()
        .audit_log(q(10).actor(AuditActor::operator(s.operator.name())))
        .await
        .unwrap();
    let changes: Vec<(String, Option<String>)> = by_operator
        .events
        .iter()
        .rev()
        .map(|e| {
            (
                e.action.clone(),
                e.after
                    .as_ref()
                    .map(|a| a["role"].as_str().unwrap().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("member.created".to_owned(), Some("owner".to_owned())),
            ("member.updated".to_owned(), Some("admin".to_owned())),
        ]
    );
}

/// The README's example, as written there.
#[tokio::test]
async fn the_readme_example() -> tenancy::Result<()> {
    use tenancy::{MemoryStore, PlatformOperator};
    let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
    let org = tenancy
        .create_organization(alice, NewOrganization::new("Acme", "acme")?)
        .await?;
    let ctx = tenancy.context(alice, org.id).await?;
    tenancy.add_member(&ctx, bob, Role::Member).await?;

    Tenancy::with_request_id(RequestId::parse("req-7f3a")?, async {
        tenancy.change_role(&ctx, bob, Role::Admin).await
    })
    .await?;

    let page = tenancy
        .audit_log(&ctx, AuditQuery::new(50)?.action("member")?)
        .await?;
    assert_eq!(page.events[0].action, "member.updated");
    assert_eq!(page.events[0].request_id.as_deref(), Some("req-7f3a"));
    assert_eq!(page.events[0].after.as_ref().unwrap()["role"], "admin");

    let ops = PlatformOperator::new("support");
    let all = tenancy
        .operator(&ops)
        .audit_log(AuditQuery::new(50)?)
        .await?;
    assert_eq!(all.events.len(), 4);
    Ok(())
}
