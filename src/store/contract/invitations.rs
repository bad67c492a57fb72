//! The contract of invitations: stored by hash, listed while pending,
//! revoked and rotated by compare-and-set, accepted atomically and counted
//! exactly under concurrency, every refusal alike.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::{kind, new_org, noon, shared};
use crate::error::{Error, ErrorKind};
use crate::ids::{OrgId, UserId};
use crate::model::invitation::{
    AcceptInvitation, INVITATION_REFUSED, Invitation, InvitationToken, TokenHash,
};
use crate::model::{Membership, Role};
use crate::store::DynStore;

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __invitation_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            invitations_are_stored_by_hash_and_listed_while_pending,
            an_email_invitation_needs_its_email_and_is_used_once,
            every_refusal_is_the_same_error,
            a_member_accepting_keeps_their_role_and_uses_nothing,
            rotating_replaces_the_token,
            concurrent_accepts_never_exceed_max_uses,
            an_organizations_invitations_go_with_it,
        }
    };
}

fn days(n: i64) -> DateTime<Utc> {
    noon() + TimeDelta::days(n)
}

fn invitation(org: OrgId, email: Option<&str>, role: Role, max_uses: u32) -> Invitation {
    Invitation::new(org, email, role, max_uses, days(7), noon(), None)
        .unwrap_or_else(|e| panic!("an invitation: {e}"))
}

/// Creates `invitation` with a fresh token; returns the stored one and
/// the token's hash.
async fn create(store: &DynStore, invitation: &Invitation) -> (Invitation, TokenHash) {
    let hash = InvitationToken::generate().unwrap().hash();
    let stored = store
        .create_invitation(invitation, &hash)
        .await
        .unwrap_or_else(|e| panic!("create an invitation: {e}"));
    (stored, hash)
}

fn accept(
    hash: TokenHash,
    user: UserId,
    email: Option<&str>,
    at: DateTime<Utc>,
) -> AcceptInvitation {
    AcceptInvitation::new(hash, user, email.map(str::to_owned), at)
}

fn refused<T: std::fmt::Debug>(result: crate::error::Result<T>) -> Error {
    let err = result.expect_err("expected a refusal");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.message(), INVITATION_REFUSED);
    err
}

/// What the store answers is the invitation, without its token; the
/// pending list holds an organization's own pending ones, oldest first; an
/// unknown organization takes none, and a hash is taken once.
pub async fn invitations_are_stored_by_hash_and_listed_while_pending(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let (other, _) = new_org(&*store).await;
    let mut by_email = invitation(org.id, Some("Ada@Example.com"), Role::Member, 1);
    by_email.created_by = Some(owner);
    let (stored, hash) = create(&*store, &by_email).await;
    assert_eq!(stored.email.as_deref(), Some("ada@example.com"));
    assert_eq!((stored.uses, stored.revoked_at), (0, None));
    assert_eq!(stored.created_by, Some(owner));
    assert_eq!(stored.expires_at, days(7));
    let mut link = invitation(org.id, None, Role::Viewer, 5);
    link.created_at = noon() + TimeDelta::seconds(1);
    let (link, _) = create(&*store, &link).await;

    let pending = store.pending_invitations(org.id, noon()).await.unwrap();
    assert_eq!(
        pending.iter().map(|i| i.id).collect::<Vec<_>>(),
        [stored.id, link.id]
    );
    assert_eq!(pending[1].max_uses, 5);
    assert!(
        store
            .pending_invitations(other.id, noon())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .pending_invitations(org.id, days(8))
            .await
            .unwrap()
            .is_empty()
    );

    let again = invitation(other.id, None, Role::Member, 1);
    assert_eq!(
        kind(store.create_invitation(&again, &hash).await),
        ErrorKind::AlreadyExists
    );
    let nowhere = invitation(OrgId::new_v7(), None, Role::Member, 1);
    let fresh = InvitationToken::generate().unwrap().hash();
    assert_eq!(
        kind(store.create_invitation(&nowhere, &fresh).await),
        ErrorKind::NotFound
    );
}

/// An email invitation is accepted by a user whose email matches, case
/// aside, once; the user joins with its role.
pub async fn an_email_invitation_needs_its_email_and_is_used_once(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let (inv, hash) = create(
        &*store,
        &invitation(org.id, Some("bob@example.com"), Role::Admin, 1),
    )
    .await;
    let (bob, eve) = (UserId::new_v7(), UserId::new_v7());
    refused(
        store
            .accept_invitation(&accept(hash, eve, Some("eve@example.com"), noon()))
            .await,
    );
    refused(
        store
            .accept_invitation(&accept(hash, eve, None, noon()))
            .await,
    );
    let accepted = store
        .accept_invitation(&accept(hash, bob, Some(" BOB@example.COM"), noon()))
        .await
        .unwrap();
    assert!(accepted.joined);
    assert_eq!(
        accepted.membership,
        Membership {
            user_id: bob,
            organization_id: org.id,
            role: Role::Admin,
            created_at: noon(),
        }
    );
    let member = store.membership(org.id, bob).await.unwrap().unwrap();
    assert_eq!(member.role, Role::Admin);
    assert!(store.membership(org.id, eve).await.unwrap().is_none());
    // Used: gone from the list, and refused to anyone, Bob included.
    assert!(
        !store
            .pending_invitations(org.id, noon())
            .await
            .unwrap()
            .iter()
            .any(|i| i.id == inv.id)
    );
    let carol = UserId::new_v7();
    refused(
        store
            .accept_invitation(&accept(hash, carol, Some("bob@example.com"), noon()))
            .await,
    );
}

/// Unknown, expired, revoked and used-up invitations, and another
/// organization's revoke, are all refused with the one error; revoking is
/// for pending invitations of the organization named.
pub async fn every_refusal_is_the_same_error(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let (other, _) = new_org(&*store).await;
    let user = UserId::new_v7();
    let unknown = InvitationToken::generate().unwrap().hash();
    let a = refused(
        store
            .accept_invitation(&accept(unknown, user, None, noon()))
            .await,
    );

    let (_, expiring) = create(&*store, &invitation(org.id, None, Role::Member, 3)).await;
    let b = refused(
        store
            .accept_invitation(&accept(expiring, user, None, days(7)))
            .await,
    );

    let (revoking, revoked_hash) =
        create(&*store, &invitation(org.id, None, Role::Member, 3)).await;
    assert!(
        !store
            .revoke_invitation(other.id, revoking.id, noon())
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_invitation(org.id, revoking.id, noon())
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_invitation(org.id, revoking.id, noon())
            .await
            .unwrap()
    );
    let c = refused(
        store
            .accept_invitation(&accept(revoked_hash, user, None, noon()))
            .await,
    );

    let (_, once) = create(&*store, &invitation(org.id, None, Role::Viewer, 1)).await;
    store
        .accept_invitation(&accept(once, user, None, noon()))
        .await
        .unwrap();
    let d = refused(
        store
            .accept_invitation(&accept(once, UserId::new_v7(), None, noon()))
            .await,
    );

    for err in [&b, &c, &d] {
        assert_eq!((err.kind(), err.message()), (a.kind(), a.message()));
    }
    assert!(!a.message().contains(&org.id.to_string()));
}

/// A member accepting keeps their role, and the invitation keeps its use.
pub async fn a_member_accepting_keeps_their_role_and_uses_nothing(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let (inv, hash) = create(&*store, &invitation(org.id, None, Role::Viewer, 1)).await;
    let accepted = store
        .accept_invitation(&accept(hash, owner, None, noon()))
        .await
        .unwrap();
    assert!(!accepted.joined);
    assert_eq!(accepted.membership.role, Role::Owner);
    let pending = store.pending_invitations(org.id, noon()).await.unwrap();
    let still = pending
        .iter()
        .find(|i| i.id == inv.id)
        .expect("still pending");
    assert_eq!(still.uses, 0);
    let newcomer = UserId::new_v7();
    let joined = store
        .accept_invitation(&accept(hash, newcomer, None, noon()))
        .await
        .unwrap();
    assert!(joined.joined);
    assert_eq!(joined.membership.role, Role::Viewer);
}

/// Rotating gives a pending invitation a new token and expiry: the old
/// token stops working. A revoked invitation, or another organization's,
/// is not rotated.
pub async fn rotating_replaces_the_token(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let (other, _) = new_org(&*store).await;
    let (inv, old) = create(&*store, &invitation(org.id, None, Role::Member, 2)).await;
    let new = InvitationToken::generate().unwrap().hash();
    assert!(
        store
            .rotate_invitation(other.id, inv.id, &new, days(9), noon())
            .await
            .unwrap()
            .is_none()
    );
    let rotated = store
        .rotate_invitation(org.id, inv.id, &new, days(9), noon())
        .await
        .unwrap()
        .expect("rotated");
    assert_eq!((rotated.id, rotated.expires_at), (inv.id, days(9)));
    let user = UserId::new_v7();
    refused(
        store
            .accept_invitation(&accept(old, user, None, noon()))
            .await,
    );
    // Valid past the old expiry.
    assert!(
        store
            .accept_invitation(&accept(new, user, None, days(8)))
            .await
            .unwrap()
            .joined
    );

    assert!(
        store
            .revoke_invitation(org.id, inv.id, noon())
            .await
            .unwrap()
    );
    let newer = InvitationToken::generate().unwrap().hash();
    assert!(
        store
            .rotate_invitation(org.id, inv.id, &newer, days(9), noon())
            .await
            .unwrap()
            .is_none()
    );
}

/// Of many users racing to accept a link with `max_uses` left, exactly
/// `max_uses` join.
pub async fn concurrent_accepts_never_exceed_max_uses(store: Arc<DynStore>) {
    for max_uses in [1, 3] {
        let (org, _) = new_org(&*store).await;
        let (inv, hash) = create(&*store, &invitation(org.id, None, Role::Member, max_uses)).await;
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let store = shared(&store);
            tasks.push(tokio::spawn(async move {
                store
                    .accept_invitation(&accept(hash, UserId::new_v7(), None, noon()))
                    .await
            }));
        }
        let mut joined = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(a) => {
                    assert!(a.joined);
                    joined += 1;
                }
                Err(e) => assert_eq!(e.message(), INVITATION_REFUSED, "{e}"),
            }
        }
        assert_eq!(joined, max_uses, "max_uses {max_uses}");
        assert_eq!(
            store.members(org.id).await.unwrap().len(),
            1 + max_uses as usize
        );
        assert!(
            !store
                .pending_invitations(org.id, noon())
                .await
                .unwrap()
                .iter()
                .any(|i| i.id == inv.id)
        );
    }
}

/// Deleting an organization takes its invitations along: none is listed
/// or accepted afterwards.
pub async fn an_organizations_invitations_go_with_it(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let (_, hash) = create(&*store, &invitation(org.id, None, Role::Member, 3)).await;
    assert!(store.delete_organization(org.id).await.unwrap());
    assert!(
        store
            .pending_invitations(org.id, noon())
            .await
            .unwrap()
            .is_empty()
    );
    refused(
        store
            .accept_invitation(&accept(hash, UserId::new_v7(), None, noon()))
            .await,
    );
}
