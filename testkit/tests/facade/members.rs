//! Members and roles, contexts, the org selector and the membership cache.

use std::sync::Arc;
use std::time::Duration;

use tenancy::clock::Clock;
use tenancy::{Action, ErrorKind, NewOrganization, OrgId, OrgMembership, Role, Tenancy, UserId};

use tenancy_testkit::unique_slug;

use crate::scene::{at_once, kind, scene};

/// Admins manage members and viewers, but never grant or revoke admin or
/// owner; members manage nobody.
#[tokio::test]
async fn admins_manage_members_and_viewers_only() {
    let s = scene().await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let t = &s.tenancy;

    let newcomer = UserId::new_v7();
    t.add_member(&admin, newcomer, Role::Viewer).await.unwrap();
    t.change_role(&admin, newcomer, Role::Member).await.unwrap();
    t.remove_member(&admin, newcomer).await.unwrap();
    let denied = [
        kind(t.add_member(&admin, UserId::new_v7(), Role::Admin).await),
        kind(t.add_member(&admin, UserId::new_v7(), Role::Owner).await),
        kind(t.change_role(&admin, member.user(), Role::Owner).await),
        kind(t.change_role(&admin, s.owner, Role::Member).await),
        kind(t.remove_member(&admin, s.owner).await),
    ];
    assert!(
        denied.iter().all(|k| *k == ErrorKind::PermissionDenied),
        "{denied:?}"
    );

    assert_eq!(
        kind(t.add_member(&member, UserId::new_v7(), Role::Viewer).await),
        ErrorKind::PermissionDenied
    );
}

/// Nobody raises their own role; lowering it is fine; owners grant owner.
/// Duplicates are `AlreadyExists`, strangers `NotFound`.
#[tokio::test]
async fn nobody_raises_their_own_role_and_owners_grant_owner() {
    let s = scene().await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let t = &s.tenancy;

    assert_eq!(
        kind(t.change_role(&member, member.user(), Role::Admin).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(t.change_role(&admin, admin.user(), Role::Owner).await),
        ErrorKind::PermissionDenied
    );
    let lowered = t
        .change_role(&member, member.user(), Role::Viewer)
        .await
        .unwrap();
    assert_eq!(lowered.role, Role::Viewer);

    t.change_role(&s.owner_ctx, admin.user(), Role::Owner)
        .await
        .unwrap();
    assert_eq!(
        t.context(admin.user(), s.org).await.unwrap().role(),
        Role::Owner
    );

    assert_eq!(
        kind(
            t.add_member(&s.owner_ctx, member.user(), Role::Member)
                .await
        ),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(t.remove_member(&s.owner_ctx, UserId::new_v7()).await),
        ErrorKind::NotFound
    );
    let members = t.members(&s.owner_ctx).await.unwrap();
    assert_eq!(members.len(), 3);
}

/// An organization always keeps an owner; the last one can neither leave
/// nor be demoted, and a member may leave.
#[tokio::test]
async fn last_owner_is_kept() {
    let s = scene().await;
    let t = &s.tenancy;
    assert_eq!(
        kind(t.leave(&s.owner_ctx).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(t.change_role(&s.owner_ctx, s.owner, Role::Admin).await),
        ErrorKind::PermissionDenied
    );

    let member = s.member(Role::Member).await;
    t.leave(&member).await.unwrap();
    assert_eq!(
        kind(t.context(member.user(), s.org).await),
        ErrorKind::PermissionDenied
    );

    // With a second owner, the first may leave; then the second is the last.
    let second = UserId::new_v7();
    t.add_member(&s.owner_ctx, second, Role::Owner)
        .await
        .unwrap();
    t.leave(&s.owner_ctx).await.unwrap();
    let second_ctx = t.context(second, s.org).await.unwrap();
    assert_eq!(
        kind(t.leave(&second_ctx).await),
        ErrorKind::PermissionDenied
    );
}

/// Two owners demoting themselves at once, on two threads, many times:
/// exactly one succeeds each time, and one owner is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_demotions_keep_one_owner() {
    for round in 0..32 {
        let s = scene().await;
        let t = &s.tenancy;
        let second = UserId::new_v7();
        t.add_member(&s.owner_ctx, second, Role::Owner)
            .await
            .unwrap();
        let second_ctx = t.context(second, s.org).await.unwrap();
        let (first, other) = (t.clone(), t.clone());
        let (owner, owner_ctx, other_ctx) = (s.owner, s.owner_ctx.clone(), second_ctx.clone());
        let (a, b) = at_once(
            async move { first.change_role(&owner_ctx, owner, Role::Admin).await },
            async move { other.change_role(&other_ctx, second, Role::Admin).await },
        )
        .await;
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: exactly one demotion succeeds: {a:?} {b:?}"
        );
        // The loser is refused by the last-owner rule, not by anything else.
        let loser = a.err().or(b.err()).map(|e| e.kind());
        assert!(
            matches!(
                loser,
                Some(ErrorKind::Conflict | ErrorKind::PermissionDenied)
            ),
            "round {round}: {loser:?}"
        );
        let owners = t.members(&second_ctx).await.unwrap();
        assert_eq!(
            owners.iter().filter(|m| m.role == Role::Owner).count(),
            1,
            "round {round}"
        );
    }
}

/// A context exists only for members; removal and switching re-check it.
#[tokio::test]
async fn context_requires_membership() {
    let s = scene().await;
    let t = &s.tenancy;
    let stranger = UserId::new_v7();
    assert_eq!(
        kind(t.context(stranger, s.org).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(t.context(s.owner, OrgId::new_v7()).await),
        ErrorKind::PermissionDenied
    );
    let err = t
        .context_from_strs("not-a-uuid", &s.org.to_string())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("user_id"));

    let member = s.member(Role::Member).await;
    assert!(member.can(Action::WriteData));
    t.remove_member(&s.owner_ctx, member.user()).await.unwrap();
    assert_eq!(
        kind(t.context(member.user(), s.org).await),
        ErrorKind::PermissionDenied
    );

    // Switching re-checks membership in the target org.
    let other = t
        .create_organization(
            stranger,
            NewOrganization::new("Other", &unique_slug("other")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        kind(t.switch_org(&s.owner_ctx, other.id).await),
        ErrorKind::PermissionDenied
    );
    let as_stranger = t.context(stranger, other.id).await.unwrap();
    t.add_member(&as_stranger, s.owner, Role::Viewer)
        .await
        .unwrap();
    let switched = t.switch_org(&s.owner_ctx, other.id).await.unwrap();
    assert_eq!((switched.org(), switched.role()), (other.id, Role::Viewer));
}

/// The org selector lists every org with its role, default first.
#[tokio::test]
async fn org_selector_and_default_org() {
    let s = scene().await;
    let t = &s.tenancy;
    assert!(t.default_context(UserId::new_v7()).await.unwrap().is_none());

    s.clock.advance(Duration::from_secs(60));
    let later = t
        .create_organization(
            s.owner,
            NewOrganization::new("Later", &unique_slug("later")).unwrap(),
        )
        .await
        .unwrap();
    let orgs = t.orgs_for_user(s.owner).await.unwrap();
    let listed: Vec<(OrgId, Role)> = orgs
        .iter()
        .map(|m: &OrgMembership| (m.organization.id, m.role))
        .collect();
    assert_eq!(listed, vec![(s.org, Role::Owner), (later.id, Role::Owner)]);
    let default = t.default_context(s.owner).await.unwrap().expect("has orgs");
    assert_eq!(default.org(), s.org, "the first-joined org is the default");
}

/// With a membership cache, a confirmation is reused for the TTL (and
/// `checked_at` says when it was made); a removal through the same
/// instance takes effect at once, one through another instance within the
/// TTL.
#[tokio::test]
async fn membership_cache_keeps_a_confirmation_for_its_ttl() {
    let s = scene().await;
    let cached = Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .clock(s.clock.clone())
        .membership_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let confirmed = s.clock.now();
    let kept = s.member(Role::Member).await.user();
    let removed_here = s.member(Role::Member).await.user();
    for user in [kept, removed_here] {
        let ctx = cached.context(user, s.org).await.unwrap();
        assert_eq!(ctx.checked_at(), confirmed);
    }

    s.clock.advance(Duration::from_secs(30));
    let ctx = cached.context(kept, s.org).await.unwrap();
    assert_eq!(ctx.checked_at(), confirmed, "reused, not asked again");
    // Removed through another instance: still admitted within the TTL.
    s.tenancy.remove_member(&s.owner_ctx, kept).await.unwrap();
    assert!(cached.context(kept, s.org).await.is_ok());
    // Removed through this one: refused at once.
    let owner = cached.context(s.owner, s.org).await.unwrap();
    cached.remove_member(&owner, removed_here).await.unwrap();
    let err = cached.context(removed_here, s.org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);

    s.clock.advance(Duration::from_secs(31));
    let err = cached.context(kept, s.org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "past the TTL");
}
