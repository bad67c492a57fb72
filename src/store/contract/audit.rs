//! The contract of the audit log: each change of the other capabilities
//! writes exactly one event (its actor and request id from the task's
//! `AuditContext`, the row before and after), a failed change and usage
//! write none, an organization's log never shows another's events, and
//! pages are newest first and keyset-stable.

use std::sync::Arc;

use serde_json::Value;

use super::{limit, new_org, noon, record};
use crate::ids::{FeatureKey, MetricKey, OrgId, UserId};
use crate::limits::{LimitMode, LimitScope, Period};
use crate::model::audit::{AuditActor, AuditContext, AuditEvent, AuditQuery, RequestId};
use crate::model::domain::{DomainChange, DomainName};
use crate::model::invitation::{Invitation, InvitationToken};
use crate::model::{FeatureChange, Membership, Role};
use crate::store::DynStore;

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __audit_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            each_change_writes_one_event_with_before_and_after,
            the_actor_and_request_id_come_from_the_audit_context,
            a_failed_change_and_usage_write_no_event,
            an_orgs_log_never_shows_another_orgs_events,
            audit_pages_are_newest_first_and_keyset_stable,
            the_log_filters_by_actor_action_and_time,
            a_deleted_organizations_trail_stays,
        }
    };
}

/// Every event of `org`, newest first.
async fn log_of(store: &DynStore, org: OrgId) -> Vec<AuditEvent> {
    let query = AuditQuery::new(1000).unwrap().org(org);
    store
        .audit_log(&query)
        .await
        .unwrap_or_else(|e| panic!("reading the audit log: {e}"))
}

/// `event.before` / `after`'s `field`.
fn field(row: &Option<Value>, field: &str) -> Value {
    row.as_ref().map_or(Value::Null, |r| r[field].clone())
}

fn member(org: OrgId, user: UserId, role: Role) -> Membership {
    Membership {
        user_id: user,
        organization_id: org,
        role,
        created_at: noon(),
    }
}

/// Each change — an organization created (with its owner) and renamed, a
/// member added, re-roled and removed, a feature created, changed and
/// deleted, a limit set, replaced and removed — writes exactly one event,
/// with the target and the row before and after.
pub async fn each_change_writes_one_event_with_before_and_after(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let bob = UserId::new_v7();
    store
        .add_member(&member(org.id, bob, Role::Viewer))
        .await
        .unwrap();
    store
        .set_member_role(org.id, bob, Role::Viewer, Role::Member)
        .await
        .unwrap();
    store
        .remove_member(org.id, bob, Role::Member)
        .await
        .unwrap();
    let sso = FeatureKey::parse("sso").unwrap();
    store
        .update_feature(org.id, &sso, &FeatureChange::enabled(true), noon())
        .await
        .unwrap();
    store
        .update_feature(org.id, &sso, &FeatureChange::enabled(false), noon())
        .await
        .unwrap();
    assert!(store.delete_feature(org.id, &sso).await.unwrap());
    let tokens = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Monthly,
        1000,
    );
    let stored = store.put_limit(&tokens).await.unwrap();
    let mut raised = tokens.clone();
    raised.id = crate::ids::LimitId::new_v7();
    raised.value = 2000.into();
    raised.mode = LimitMode::Soft;
    store.put_limit(&raised).await.unwrap();
    assert!(store.delete_limit(org.id, stored.id).await.unwrap());
    store.rename_organization(org.id, "Renamed").await.unwrap();

    let log = log_of(&*store, org.id).await;
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "organization.created",
            "member.created",
            "member.created",
            "member.updated",
            "member.deleted",
            "feature.created",
            "feature.updated",
            "feature.deleted",
            "limit.created",
            "limit.updated",
            "limit.deleted",
            "organization.updated",
        ]
    );
    let by = |i: usize| &log[log.len() - 1 - i];
    assert!(log.iter().all(|e| e.organization_id == org.id));
    // The organization and its owner.
    assert_eq!(by(0).target.as_deref(), Some(org.id.to_string().as_str()));
    assert_eq!(by(0).before, None);
    assert_eq!(field(&by(0).after, "slug"), org.slug.as_str());
    assert_eq!(by(1).target.as_deref(), Some(owner.to_string().as_str()));
    assert_eq!(field(&by(1).after, "role"), "owner");
    // bob: added, re-roled, removed.
    for i in 2..=4 {
        assert_eq!(by(i).target.as_deref(), Some(bob.to_string().as_str()));
    }
    assert_eq!(field(&by(2).after, "role"), "viewer");
    assert_eq!(field(&by(3).before, "role"), "viewer");
    assert_eq!(field(&by(3).after, "role"), "member");
    assert_eq!(field(&by(4).before, "role"), "member");
    assert_eq!(by(4).after, None);
    // The feature.
    assert_eq!(by(5).target.as_deref(), Some("sso"));
    assert_eq!(field(&by(5).after, "enabled"), true);
    assert_eq!(field(&by(6).before, "enabled"), true);
    assert_eq!(field(&by(6).after, "enabled"), false);
    assert_eq!(field(&by(7).before, "enabled"), false);
    assert_eq!(by(7).after, None);
    // The limit keeps its id across the replacement.
    let limit_id = stored.id.to_string();
    for i in 8..=10 {
        assert_eq!(by(i).target.as_deref(), Some(limit_id.as_str()));
    }
    assert_eq!(field(&by(9).before, "mode"), "hard");
    assert_eq!(field(&by(9).after, "mode"), "soft");
    assert_eq!(field(&by(9).after, "metric"), "tokens");
    // The rename.
    assert_eq!(field(&by(11).before, "name"), "Contract");
    assert_eq!(field(&by(11).after, "name"), "Renamed");
    // Without an audit context, the service acted.
    assert!(
        log.iter()
            .all(|e| matches!(e.actor, AuditActor::Service { .. }))
    );
}

/// The actor and request id of an event are those of the `AuditContext`
/// its change ran in: a user, an operator by name, with a request id.
pub async fn the_actor_and_request_id_come_from_the_audit_context(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let bob = UserId::new_v7();
    let as_owner = AuditContext::new()
        .actor(AuditActor::user(owner))
        .request_id(RequestId::parse("req-contract-1").unwrap());
    as_owner
        .scope(store.add_member(&member(org.id, bob, Role::Member)))
        .await
        .unwrap();
    let as_operator = AuditContext::new().actor(AuditActor::operator("Zoë support"));
    as_operator
        .scope(store.update_feature(
            org.id,
            &FeatureKey::parse("sso").unwrap(),
            &FeatureChange::enabled(true),
            noon(),
        ))
        .await
        .unwrap();

    let log = log_of(&*store, org.id).await;
    assert_eq!(log[0].action, "feature.created");
    assert_eq!(log[0].actor, AuditActor::operator("Zoë support"));
    assert_eq!(log[0].request_id, None);
    assert_eq!(log[1].action, "member.created");
    assert_eq!(log[1].actor, AuditActor::user(owner));
    assert_eq!(log[1].request_id.as_deref(), Some("req-contract-1"));
}

/// A change the store refuses writes no event, nor does recording usage
/// or holding it.
pub async fn a_failed_change_and_usage_write_no_event(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let before = log_of(&*store, org.id).await;
    assert_eq!(before.len(), 2, "{before:?}");
    // Refused: a stale compare-and-set, a duplicate member, the last owner.
    assert!(
        store
            .set_member_role(org.id, owner, Role::Admin, Role::Member)
            .await
            .is_err()
    );
    assert!(
        store
            .add_member(&member(org.id, owner, Role::Viewer))
            .await
            .is_err()
    );
    assert!(
        store
            .remove_member(org.id, owner, Role::Owner)
            .await
            .is_err()
    );
    // Nothing to delete.
    let sso = FeatureKey::parse("sso").unwrap();
    assert!(!store.delete_feature(org.id, &sso).await.unwrap());
    // Usage.
    store
        .record_usage(&[record(&org, Some(owner), &[(MetricKey::TOKENS, 5)], noon())])
        .await
        .unwrap();
    store
        .reserve(&super::hold(&org, owner, 5, noon(), 60))
        .await
        .unwrap();
    assert_eq!(log_of(&*store, org.id).await, before);
}

/// Reading one organization's log shows its events only, however many
/// another organization has.
pub async fn an_orgs_log_never_shows_another_orgs_events(store: Arc<DynStore>) {
    let (a, _) = new_org(&*store).await;
    let (b, _) = new_org(&*store).await;
    for _ in 0..3 {
        store
            .add_member(&member(b.id, UserId::new_v7(), Role::Viewer))
            .await
            .unwrap();
    }
    let log_a = log_of(&*store, a.id).await;
    assert_eq!(log_a.len(), 2);
    assert!(log_a.iter().all(|e| e.organization_id == a.id));
    let log_b = log_of(&*store, b.id).await;
    assert_eq!(log_b.len(), 5);
    assert!(log_b.iter().all(|e| e.organization_id == b.id));
    // Filters and cursors do not reach across either.
    let query = AuditQuery::new(10)
        .unwrap()
        .org(a.id)
        .action("member")
        .unwrap()
        .after(log_b[0].cursor());
    let page = store.audit_log(&query).await.unwrap();
    assert!(page.iter().all(|e| e.organization_id == a.id), "{page:?}");
}

/// Pages are newest first (time, then id, descending), follow on from
/// each other's last event without overlap or gap, and an event written
/// between two page reads does not shift the later pages.
pub async fn audit_pages_are_newest_first_and_keyset_stable(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    for _ in 0..7 {
        store
            .add_member(&member(org.id, UserId::new_v7(), Role::Viewer))
            .await
            .unwrap();
    }
    let all = log_of(&*store, org.id).await;
    assert_eq!(all.len(), 9);
    assert!(
        all.windows(2).all(|w| w[0].cursor() > w[1].cursor()),
        "newest first: {all:?}"
    );
    let mut paged = Vec::new();
    let mut query = AuditQuery::new(4).unwrap().org(org.id);
    loop {
        let page = store.audit_log(&query).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        query = query.after(last.cursor());
        paged.extend(page);
        if paged.len() == 4 {
            // A change between pages: newer than every page, so in none.
            store
                .add_member(&member(org.id, UserId::new_v7(), Role::Viewer))
                .await
                .unwrap();
        }
    }
    assert_eq!(paged, all);
}

/// The log filters by actor (a user, an operator, any service), by action
/// (exact, or every action of an entity) and by time (since inclusive,
/// until exclusive).
pub async fn the_log_filters_by_actor_action_and_time(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let bob = UserId::new_v7();
    AuditContext::new()
        .actor(AuditActor::user(owner))
        .scope(store.add_member(&member(org.id, bob, Role::Viewer)))
        .await
        .unwrap();
    AuditContext::new()
        .actor(AuditActor::operator("ops"))
        .scope(store.update_feature(
            org.id,
            &FeatureKey::parse("sso").unwrap(),
            &FeatureChange::enabled(true),
            noon(),
        ))
        .await
        .unwrap();
    AuditContext::new()
        .actor(AuditActor::user(owner))
        .scope(store.set_member_role(org.id, bob, Role::Viewer, Role::Member))
        .await
        .unwrap();
    let all = log_of(&*store, org.id).await;
    assert_eq!(all.len(), 5);
    let read = async |query: AuditQuery| -> Vec<String> {
        let events = store.audit_log(&query.org(org.id)).await.unwrap();
        events.into_iter().rev().map(|e| e.action).collect()
    };
    let q = || AuditQuery::new(100).unwrap();
    assert_eq!(
        read(q().actor(AuditActor::user(owner))).await,
        ["member.created", "member.updated"]
    );
    assert_eq!(
        read(q().actor(AuditActor::operator("ops"))).await,
        ["feature.created"]
    );
    assert_eq!(
        read(q().actor(AuditActor::operator("other"))).await,
        [""; 0]
    );
    assert_eq!(
        read(q().actor(AuditActor::service())).await,
        ["organization.created", "member.created"]
    );
    assert_eq!(
        read(q().action("member").unwrap()).await,
        ["member.created", "member.created", "member.updated"]
    );
    assert_eq!(
        read(q().action("member.updated").unwrap()).await,
        ["member.updated"]
    );
    assert_eq!(read(q().action("mem").unwrap()).await, [""; 0]);
    // Time: since the feature's event (inclusive), until the last (exclusive).
    let feature = &all[1];
    let last = &all[0];
    let since = read(q().between(Some(feature.at), None).unwrap()).await;
    assert!(since.contains(&"feature.created".to_owned()), "{since:?}");
    assert!(!since.contains(&"organization.created".to_owned()) || feature.at == all[4].at);
    if last.at > feature.at {
        let until = read(q().between(Some(feature.at), Some(last.at)).unwrap()).await;
        assert_eq!(until, ["feature.created"]);
    }
    let before_all = read(q().between(None, Some(all[4].at)).unwrap()).await;
    assert_eq!(before_all, [""; 0]);
}

/// Deleting an organization writes the deletion of each of its rows and
/// of the organization, and its trail stays readable.
pub async fn a_deleted_organizations_trail_stays(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    store
        .update_feature(
            org.id,
            &FeatureKey::parse("sso").unwrap(),
            &FeatureChange::enabled(true),
            noon(),
        )
        .await
        .unwrap();
    let invitation = Invitation::new(
        org.id,
        None,
        Role::Member,
        3,
        noon() + chrono::TimeDelta::days(1),
        noon(),
        Some(owner),
    )
    .unwrap();
    let token = InvitationToken::generate().unwrap();
    store
        .create_invitation(&invitation, &token.hash())
        .await
        .unwrap();
    let domain = DomainName::parse("trail.example").unwrap();
    store
        .put_domain(org.id, &domain, &DomainChange::default(), noon())
        .await
        .unwrap();
    assert!(store.delete_organization(org.id).await.unwrap());
    let log = log_of(&*store, org.id).await;
    let mut deleted: Vec<(&str, Option<&str>)> = log
        .iter()
        .filter(|e| e.action.ends_with(".deleted"))
        .map(|e| (e.action.as_str(), e.target.as_deref()))
        .collect();
    deleted.sort();
    let (org_id, owner_id) = (org.id.to_string(), owner.to_string());
    let invitation_id = invitation.id.to_string();
    assert_eq!(
        deleted,
        [
            ("domain.deleted", Some("trail.example")),
            ("feature.deleted", Some("sso")),
            ("invitation.deleted", Some(invitation_id.as_str())),
            ("member.deleted", Some(owner_id.as_str())),
            ("organization.deleted", Some(org_id.as_str())),
        ]
    );
    assert_eq!(log.len(), 10, "{log:?}");
    // An invitation's rows never carry its token's hash (as good as the
    // token to a user who could accept by hash).
    let invitation_rows = log
        .iter()
        .filter(|e| e.action.starts_with("invitation."))
        .flat_map(|e| [&e.before, &e.after])
        .flatten();
    let mut seen = 0;
    for row in invitation_rows {
        assert!(row.get("token_hash").is_none(), "{row}");
        assert_eq!(row["id"], invitation_id.as_str(), "{row}");
        seen += 1;
    }
    assert_eq!(seen, 2, "the invitation created, then deleted");
}
