//! Memberships: adding, compare-and-set changes, and the last owner.

use std::sync::Arc;

use super::{kind, new_org, noon, shared};
use crate::error::ErrorKind;
use crate::ids::{OrgId, UserId};
use crate::model::{Membership, Role};
use crate::store::DynStore;

async fn add(store: &DynStore, org: OrgId, role: Role) -> UserId {
    let user = UserId::new_v7();
    let membership = Membership {
        user_id: user,
        organization_id: org,
        role,
        created_at: noon(),
    };
    store
        .add_member(&membership)
        .await
        .unwrap_or_else(|e| panic!("add a {role}: {e}"));
    user
}

async fn role_of(store: &DynStore, org: OrgId, user: UserId) -> Option<Role> {
    store.membership(org, user).await.unwrap().map(|m| m.role)
}

/// A user is a member once; an organization that does not exist takes no
/// members.
pub async fn adding_a_member_twice_is_already_exists(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let user = add(&*store, org.id, Role::Member).await;
    let again = Membership {
        user_id: user,
        organization_id: org.id,
        role: Role::Admin,
        created_at: noon(),
    };
    assert_eq!(
        kind(store.add_member(&again).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(role_of(&*store, org.id, user).await, Some(Role::Member));
    let nowhere = Membership {
        organization_id: OrgId::new_v7(),
        ..again
    };
    assert_eq!(kind(store.add_member(&nowhere).await), ErrorKind::NotFound);
}

/// A role change names the role it expects: a stale one is `Conflict` and
/// changes nothing; a user who is not a member is `NotFound`.
pub async fn set_member_role_is_compare_and_set(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let user = add(&*store, org.id, Role::Viewer).await;
    let changed = store
        .set_member_role(org.id, user, Role::Viewer, Role::Member)
        .await
        .unwrap();
    assert_eq!((changed.user_id, changed.role), (user, Role::Member));
    let stale = store
        .set_member_role(org.id, user, Role::Viewer, Role::Admin)
        .await;
    assert_eq!(kind(stale), ErrorKind::Conflict);
    assert_eq!(role_of(&*store, org.id, user).await, Some(Role::Member));
    let stranger = store
        .set_member_role(org.id, UserId::new_v7(), Role::Viewer, Role::Member)
        .await;
    assert_eq!(kind(stranger), ErrorKind::NotFound);
}

/// A removal names the role it expects, like a change.
pub async fn remove_member_is_compare_and_set(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let user = add(&*store, org.id, Role::Member).await;
    assert_eq!(
        kind(store.remove_member(org.id, user, Role::Viewer).await),
        ErrorKind::Conflict
    );
    assert_eq!(role_of(&*store, org.id, user).await, Some(Role::Member));
    store
        .remove_member(org.id, user, Role::Member)
        .await
        .unwrap();
    assert_eq!(role_of(&*store, org.id, user).await, None);
    assert_eq!(
        kind(store.remove_member(org.id, user, Role::Member).await),
        ErrorKind::NotFound
    );
}

/// The only owner can be neither demoted nor removed; with a second owner
/// either is fine.
pub async fn the_last_owner_is_kept(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let demote = store
        .set_member_role(org.id, owner, Role::Owner, Role::Admin)
        .await;
    assert_eq!(kind(demote), ErrorKind::PermissionDenied);
    let remove = store.remove_member(org.id, owner, Role::Owner).await;
    assert_eq!(kind(remove), ErrorKind::PermissionDenied);
    assert_eq!(role_of(&*store, org.id, owner).await, Some(Role::Owner));

    let second = add(&*store, org.id, Role::Owner).await;
    store
        .set_member_role(org.id, owner, Role::Owner, Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        kind(store.remove_member(org.id, second, Role::Owner).await),
        ErrorKind::PermissionDenied
    );
}

/// Two owners demoting each other at the same moment: at most one wins, so
/// the organization keeps an owner. Run many times to meet the race.
pub async fn owners_demoting_each_other_at_once_keep_one(store: Arc<DynStore>) {
    for _ in 0..10 {
        let (org, first) = new_org(&*store).await;
        let second = add(&*store, org.id, Role::Owner).await;
        let demote = |user| {
            let store = shared(&store);
            tokio::spawn(async move {
                store
                    .set_member_role(org.id, user, Role::Owner, Role::Member)
                    .await
                    .is_ok()
            })
        };
        let (a, b) = (demote(first), demote(second));
        let won = [a.await.unwrap(), b.await.unwrap()];
        assert!(!won.iter().all(|w| *w), "both owners were demoted");
        let owners = store
            .members(org.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.role == Role::Owner)
            .count();
        assert_eq!(owners, 2 - won.iter().filter(|w| **w).count());
        assert!(owners >= 1);
    }
}
