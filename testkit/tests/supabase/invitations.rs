//! Invitations through PostgREST with user JWTs: an owner invites and
//! lists through its user client, another organization's owner reads and
//! changes none of it, no user reads a token hash (the owner's own
//! included), and a new user joins with a link through its own client.

use serde_json::Value;
use tenancy::model::invitation::{INVITATION_REFUSED, NewInvitation};
use tenancy::{ErrorKind, Role, Tenancy, UserId};

use super::{two_orgs, user_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_clients_invite_list_and_accept_within_their_rights() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let on = |user: UserId| {
        Tenancy::builder()
            .store(user_client(server, &t.service, user))
            .build()
            .unwrap()
    };
    let (alice, bob) = (on(t.alice), on(t.bob));
    let as_alice = alice.context(t.alice, t.acme.id).await.unwrap();
    let link = alice
        .create_invitation(&as_alice, NewInvitation::link(Role::Member, 1))
        .await
        .unwrap();
    assert_eq!(link.invitation.created_by, Some(t.alice));
    let listed = alice.invitations(&as_alice).await.unwrap();
    assert_eq!(listed.len(), 1);

    // Bob, owner of Globex, sees and changes nothing of Acme's.
    let bob_store = user_client(server, &t.service, t.bob);
    let rows: Vec<Value> = bob_store
        .fetch(
            bob_store
                .from("org_invitations")
                .select("id,organization_id"),
        )
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let as_bob = bob.context(t.bob, t.globex.id).await.unwrap();
    assert!(bob.invitations(&as_bob).await.unwrap().is_empty());
    assert!(
        !bob.revoke_invitation(&as_bob, link.invitation.id)
            .await
            .unwrap()
    );

    // Alice reads her org's invitations, never a token hash.
    let alice_store = user_client(server, &t.service, t.alice);
    let rows: Vec<Value> = alice_store
        .fetch(alice_store.from("org_invitations").select("id,role,uses"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let hash: tenancy::Result<Vec<Value>> = alice_store
        .fetch(alice_store.from("org_invitations").select("token_hash"))
        .await;
    assert_eq!(hash.unwrap_err().kind(), ErrorKind::PermissionDenied);

    // A new user joins with the link, once; the next is refused.
    let carol = UserId::new_v7();
    let joined = on(carol)
        .accept_invitation(carol, link.token.expose())
        .await
        .unwrap();
    assert!(joined.joined);
    assert_eq!(
        (joined.organization.id, joined.role),
        (t.acme.id, Role::Member)
    );
    let dave = UserId::new_v7();
    let refused = on(dave)
        .accept_invitation(dave, link.token.expose())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound);
    assert_eq!(refused.message(), INVITATION_REFUSED);
}
