//! Ownership transfer: an owner hands it to another member, the operator
//! hands it to anyone; what happens when the second step fails.

use std::sync::Arc;
use std::time::Duration;

use tenancy::faults::{DemotionFault, FaultyStore};
use tenancy::{ErrorKind, MemoryStore, OrgId, Role, Tenancy, UserId};

use crate::scene::{Scene, kind, scene, scene_on};

/// Every member's role in the scene's organization, by user id.
async fn roles(s: &Scene) -> Vec<(UserId, Role)> {
    let mut all: Vec<_> = s
        .op()
        .members(s.org)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    all.sort();
    all
}

async fn role_of(s: &Scene, user: UserId) -> Option<Role> {
    roles(s)
        .await
        .into_iter()
        .find(|(u, _)| *u == user)
        .map(|(_, r)| r)
}

/// An owner hands ownership to a member: the member is the owner, the
/// former owner an admin, who can neither transfer again nor take it back;
/// the new owner can hand it back.
#[tokio::test]
async fn an_owner_hands_ownership_to_a_member_and_becomes_admin() {
    let s = scene().await;
    let bob = s.member(Role::Member).await;
    let t = &s.tenancy;

    let owner = t
        .transfer_ownership(&s.owner_ctx, bob.user())
        .await
        .unwrap();
    assert_eq!(
        (owner.user_id, owner.organization_id, owner.role),
        (bob.user(), s.org, Role::Owner)
    );
    assert_eq!(owner.created_at, bob.checked_at(), "bob's joining time");
    assert_eq!(role_of(&s, bob.user()).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));

    // The former owner's new context is an admin's: nothing more to hand.
    let former = t.context(s.owner, s.org).await.unwrap();
    assert_eq!(former.role(), Role::Admin);
    assert_eq!(
        kind(t.transfer_ownership(&former, bob.user()).await),
        ErrorKind::PermissionDenied
    );
    let bob = t.context(bob.user(), s.org).await.unwrap();
    t.transfer_ownership(&bob, s.owner).await.unwrap();
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Owner));
    assert_eq!(role_of(&s, bob.user()).await, Some(Role::Admin));
}

/// Admins, members and viewers cannot transfer ownership, nor can an owner
/// to themselves or to someone outside the organization; nothing changes.
#[tokio::test]
async fn only_an_owner_transfers_and_only_to_another_member() {
    let s = scene().await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    let t = &s.tenancy;
    let before = roles(&s).await;

    for ctx in [&admin, &member, &viewer] {
        for to in [admin.user(), member.user(), viewer.user(), ctx.user()] {
            let err = t.transfer_ownership(ctx, to).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        }
    }
    let own = t
        .transfer_ownership(&s.owner_ctx, s.owner)
        .await
        .unwrap_err();
    assert_eq!(own.kind(), ErrorKind::InvalidInput, "{own}");
    assert!(own.message().contains("to"), "{own}");
    let stranger = UserId::new_v7();
    let err = t
        .transfer_ownership(&s.owner_ctx, stranger)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("is not a member"), "{err}");
    assert_eq!(roles(&s).await, before);
    assert_eq!(role_of(&s, stranger).await, None, "not added");
}

/// To another owner: only the caller steps down.
#[tokio::test]
async fn to_another_owner_only_the_caller_steps_down() {
    let s = scene().await;
    let second = s.member(Role::Owner).await;
    let owner = s
        .tenancy
        .transfer_ownership(&s.owner_ctx, second.user())
        .await
        .unwrap();
    assert_eq!(owner.role, Role::Owner);
    assert_eq!(role_of(&s, second.user()).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
}

/// A context confirmed while its user was an owner does not hand out
/// ownership once another owner has demoted them: the store's word counts.
#[tokio::test]
async fn a_stale_owners_context_cannot_transfer() {
    let s = scene().await;
    let second = s.member(Role::Owner).await;
    let member = s.member(Role::Member).await;
    let t = &s.tenancy;
    t.change_role(&second, s.owner, Role::Admin).await.unwrap();
    assert_eq!(s.owner_ctx.role(), Role::Owner, "the context is stale");
    let err = t
        .transfer_ownership(&s.owner_ctx, member.user())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(role_of(&s, member.user()).await, Some(Role::Member));
}

/// Through a membership cache, the transfer takes effect at once for both
/// users of the instance that made it.
#[tokio::test]
async fn a_cached_tenancy_sees_the_transfer_at_once() {
    let s = scene().await;
    let bob = s.member(Role::Member).await.user();
    let cached = Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .clock(s.clock.clone())
        .membership_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let owner = cached.context(s.owner, s.org).await.unwrap();
    assert_eq!(
        cached.context(bob, s.org).await.unwrap().role(),
        Role::Member
    );
    cached.transfer_ownership(&owner, bob).await.unwrap();
    assert_eq!(
        cached.context(bob, s.org).await.unwrap().role(),
        Role::Owner
    );
    assert_eq!(
        cached.context(s.owner, s.org).await.unwrap().role(),
        Role::Admin
    );
}

// ---- the second step failing ---------------------------------------------

/// A scene on a [`FaultyStore`] over `MemoryStore`.
async fn faulty_scene() -> (Scene, Arc<FaultyStore>) {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = scene_on(faulty.clone()).await;
    (s, faulty)
}

/// The caller's demotion fails: the error comes back, both are owners
/// (the organization never lacked one), and the same call again finishes
/// the transfer.
#[tokio::test]
async fn a_failed_demotion_leaves_two_owners_and_a_retry_finishes() {
    let (s, faulty) = faulty_scene().await;
    let bob = s.member(Role::Member).await.user();
    faulty.fault_next_demotion(s.owner, DemotionFault::Fail);
    let err = s
        .tenancy
        .transfer_ownership(&s.owner_ctx, bob)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(role_of(&s, bob).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Owner), "two owners");

    let owner = s
        .tenancy
        .transfer_ownership(&s.owner_ctx, bob)
        .await
        .unwrap();
    assert_eq!((owner.user_id, owner.role), (bob, Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
}

/// The demotion landed but its answer was lost: the retry is refused (the
/// caller is no owner now) and changes nothing.
#[tokio::test]
async fn a_retry_after_a_demotion_that_landed_is_refused_and_harmless() {
    let (s, faulty) = faulty_scene().await;
    let bob = s.member(Role::Member).await.user();
    faulty.fault_next_demotion(s.owner, DemotionFault::LandThenFail);
    let err = s.tenancy.transfer_ownership(&s.owner_ctx, bob).await;
    assert_eq!(kind(err), ErrorKind::Unavailable);
    let after = roles(&s).await;
    assert_eq!(role_of(&s, bob).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
    let retry = s.tenancy.transfer_ownership(&s.owner_ctx, bob).await;
    assert_eq!(kind(retry), ErrorKind::PermissionDenied);
    assert_eq!(roles(&s).await, after);
}

/// The caller's role changed between the two steps (the new owner demoted
/// them): `Conflict`, and the organization keeps its new owner.
#[tokio::test]
async fn a_role_changed_between_the_steps_is_a_conflict() {
    let (s, faulty) = faulty_scene().await;
    let bob = s.member(Role::Member).await.user();
    faulty.fault_next_demotion(s.owner, DemotionFault::ChangedMeanwhile(Role::Member));
    let err = s.tenancy.transfer_ownership(&s.owner_ctx, bob).await;
    assert_eq!(kind(err), ErrorKind::Conflict);
    assert_eq!(role_of(&s, bob).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Member));
}

// ---- the operator -----------------------------------------------------------

/// The operator makes a member the owner; every other owner, however many,
/// becomes an admin; the other roles stay.
#[tokio::test]
async fn the_operator_makes_a_member_the_only_owner() {
    let s = scene().await;
    let second = s.member(Role::Owner).await.user();
    let admin = s.member(Role::Admin).await.user();
    let viewer = s.member(Role::Viewer).await.user();
    let heir = s.member(Role::Member).await.user();

    let owner = s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!((owner.user_id, owner.role), (heir, Role::Owner));
    let mut expected = vec![
        (s.owner, Role::Admin),
        (second, Role::Admin),
        (admin, Role::Admin),
        (viewer, Role::Viewer),
        (heir, Role::Owner),
    ];
    expected.sort();
    assert_eq!(roles(&s).await, expected);

    // Again: nothing left to do, nothing changes.
    s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!(roles(&s).await, expected);
}

/// Someone outside the organization is added as its owner, at the
/// operator's time; an organization that does not exist is `NotFound`.
#[tokio::test]
async fn the_operator_adds_an_outsider_as_owner() {
    let s = scene().await;
    let outsider = UserId::new_v7();
    let owner = s.op().transfer_ownership(s.org, outsider).await.unwrap();
    assert_eq!(
        owner.created_at,
        s.owner_ctx.checked_at(),
        "the clock's now"
    );
    let ctx = s.tenancy.context(outsider, s.org).await.unwrap();
    assert_eq!(ctx.role(), Role::Owner);
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));

    let nowhere = s.op().transfer_ownership(OrgId::new_v7(), outsider).await;
    assert_eq!(kind(nowhere), ErrorKind::NotFound);
}

/// An operator's transfer that fails half-way leaves the new owner in
/// place and finishes when called again.
#[tokio::test]
async fn the_operators_transfer_finishes_when_called_again() {
    let (s, faulty) = faulty_scene().await;
    let heir = s.member(Role::Viewer).await.user();
    faulty.fault_next_demotion(s.owner, DemotionFault::Fail);
    let err = s.op().transfer_ownership(s.org, heir).await;
    assert_eq!(kind(err), ErrorKind::Unavailable);
    assert_eq!(role_of(&s, heir).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Owner));
    s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!(role_of(&s, heir).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
}

/// An owner whose role changed meanwhile is passed over, not an error:
/// they are no owner either way.
#[tokio::test]
async fn the_operator_passes_over_an_owner_changed_meanwhile() {
    let (s, faulty) = faulty_scene().await;
    let heir = s.member(Role::Member).await.user();
    faulty.fault_next_demotion(s.owner, DemotionFault::ChangedMeanwhile(Role::Viewer));
    s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!(role_of(&s, heir).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Viewer));
}
