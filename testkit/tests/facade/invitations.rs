//! Invitations through the facade: who may invite whom, tokens handed out
//! once and accepted by the right person, expiry within the configured
//! bounds, links counted, resend and revoke, and one refusal for every
//! reason.

use std::sync::Arc;
use std::time::Duration;

use tenancy::clock::FakeClock;
use tenancy::memory::MemoryUserDirectory;
use tenancy::model::invitation::{INVITATION_REFUSED, MemoryInvitationSender, NewInvitation};
use tenancy::{
    ErrorKind, MemoryStore, NewOrganization, Result, Role, Tenancy, TenantContext, UserId,
};
use tenancy_testkit::unique_slug;

const DAY: Duration = Duration::from_secs(86_400);

struct Invites {
    tenancy: Tenancy,
    clock: FakeClock,
    directory: Arc<MemoryUserDirectory>,
    sender: Arc<MemoryInvitationSender>,
    owner: TenantContext,
}

impl Invites {
    async fn new() -> Invites {
        let clock = FakeClock::at("2026-03-04T10:00:00Z");
        let directory = Arc::new(MemoryUserDirectory::new());
        let sender = Arc::new(MemoryInvitationSender::new());
        let tenancy = Tenancy::builder()
            .store(MemoryStore::new())
            .clock(clock.clone())
            .shared_user_directory(directory.clone())
            .shared_invitation_sender(sender.clone())
            .invitation_accept_url("https://app.example/invite")
            .build()
            .unwrap();
        let owner = UserId::new_v7();
        let org = tenancy
            .create_organization(
                owner,
                NewOrganization::new("Acme", &unique_slug("acme")).unwrap(),
            )
            .await
            .unwrap();
        let owner = tenancy.context(owner, org.id).await.unwrap();
        Invites {
            tenancy,
            clock,
            directory,
            sender,
            owner,
        }
    }

    /// A user with this name and email, confirmed or not.
    fn person(&self, name: &str, email: &str, confirmed: bool) -> UserId {
        let user = UserId::new_v7();
        self.directory.insert(user, Some(email), Some(name));
        self.directory.set_email_confirmed(user, confirmed);
        user
    }

    /// A member of the owner's organization with `role`, in context.
    async fn member(&self, role: Role) -> TenantContext {
        let user = UserId::new_v7();
        self.tenancy
            .add_member(&self.owner, user, role)
            .await
            .unwrap();
        self.tenancy.context(user, self.owner.org()).await.unwrap()
    }
}

/// The token in an accept URL.
fn token_of(url: &str) -> &str {
    url.split_once("token=").unwrap().1
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T>) {
    let err = result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.message(), INVITATION_REFUSED);
}

/// The owner invites Bob by email; the sender gets the accept URL; Bob,
/// with his confirmed email, accepts once and is listed by name.
#[tokio::test]
async fn an_owner_invites_by_email_and_the_invitee_joins() {
    let s = Invites::new().await;
    let bob = s.person("Bob Builder", "bob@example.com", true);
    let created = s
        .tenancy
        .create_invitation(
            &s.owner,
            NewInvitation::email("BOB@example.com", Role::Member),
        )
        .await
        .unwrap();
    assert!(created.delivered);
    assert_eq!(created.invitation.email.as_deref(), Some("bob@example.com"));
    assert_eq!(
        created.invitation.expires_at,
        created.invitation.created_at + chrono::TimeDelta::days(7)
    );
    let url = s.sender.last_url_for("bob@example.com").unwrap();
    assert_eq!(url, created.accept_url);
    assert!(url.starts_with("https://app.example/invite?token="));
    let token = token_of(&url);
    assert_eq!(token.len(), 64);
    assert!(
        !format!("{created:?}").contains(token),
        "Debug hides the token"
    );

    let accepted = s.tenancy.accept_invitation(bob, token).await.unwrap();
    assert!(accepted.joined);
    assert_eq!(
        (accepted.organization.id, accepted.role),
        (s.owner.org(), Role::Member)
    );
    let members = s.tenancy.member_profiles(&s.owner).await.unwrap();
    let named = members.iter().find(|(m, _)| m.user_id == bob).unwrap();
    assert_eq!(named.1.name.as_deref(), Some("Bob Builder"));
    assert_eq!(named.0.role, Role::Member);
    assert_refused(s.tenancy.accept_invitation(bob, token).await);
    assert!(s.tenancy.invitations(&s.owner).await.unwrap().is_empty());
}

/// An email invitation refuses an unconfirmed email, another person's, and
/// anyone when no directory can tell: all with the one error, which names
/// no organization.
#[tokio::test]
async fn an_email_invitation_needs_the_confirmed_matching_email() {
    let s = Invites::new().await;
    let unconfirmed = s.person("Bob", "bob@example.com", false);
    let eve = s.person("Eve", "eve@example.com", true);
    let created = s
        .tenancy
        .create_invitation(
            &s.owner,
            NewInvitation::email("bob@example.com", Role::Viewer),
        )
        .await
        .unwrap();
    let token = created.token.expose();
    for user in [unconfirmed, eve, UserId::new_v7()] {
        let err = s.tenancy.accept_invitation(user, token).await.unwrap_err();
        assert_eq!(err.message(), INVITATION_REFUSED);
        assert!(!err.message().contains("Acme"));
        assert!(!err.message().contains(&s.owner.org().to_string()));
    }
    assert_refused(s.tenancy.accept_invitation(eve, "").await);
    assert_refused(s.tenancy.accept_invitation(eve, "not a token").await);
    s.directory.set_email_confirmed(unconfirmed, true);
    assert!(
        s.tenancy
            .accept_invitation(unconfirmed, token)
            .await
            .unwrap()
            .joined
    );

    // Without a directory nobody's email is known.
    let bare = Tenancy::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let owner = UserId::new_v7();
    let org = bare
        .create_organization(
            owner,
            NewOrganization::new("Bare", &unique_slug("bare")).unwrap(),
        )
        .await
        .unwrap();
    let ctx = bare.context(owner, org.id).await.unwrap();
    let invite = bare
        .create_invitation(&ctx, NewInvitation::email("x@example.com", Role::Member))
        .await
        .unwrap();
    assert_refused(
        bare.accept_invitation(UserId::new_v7(), invite.token.expose())
            .await,
    );
}

/// Admins invite members and viewers, owners anyone, members and viewers
/// nobody; only admins and owners list; the rules hold for resend and
/// revoke too.
#[tokio::test]
async fn the_role_rules_decide_who_invites_whom() {
    let s = Invites::new().await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    for role in Role::ALL {
        let by_admin = s
            .tenancy
            .create_invitation(&admin, NewInvitation::link(role, 1))
            .await;
        assert_eq!(
            by_admin.is_ok(),
            role <= Role::Member,
            "admin inviting {role}"
        );
        if let Err(e) = by_admin {
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        }
        for low in [&member, &viewer] {
            let err = s
                .tenancy
                .create_invitation(low, NewInvitation::link(role, 1))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        }
        assert!(
            s.tenancy
                .create_invitation(&s.owner, NewInvitation::link(role, 1))
                .await
                .is_ok()
        );
    }
    for low in [&member, &viewer] {
        assert_eq!(
            s.tenancy.invitations(low).await.unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
    }
    let pending = s.tenancy.invitations(&admin).await.unwrap();
    assert_eq!(pending.len(), 6);
    let owners_admin_invite = pending.iter().find(|i| i.role == Role::Admin).unwrap().id;
    assert_eq!(
        s.tenancy
            .resend_invitation(&admin, owners_admin_invite)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        s.tenancy
            .revoke_invitation(&admin, owners_admin_invite)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    assert!(
        s.tenancy
            .revoke_invitation(&s.owner, owners_admin_invite)
            .await
            .unwrap()
    );
}

/// Another organization's owner sees none of these invitations and can
/// neither revoke nor resend them.
#[tokio::test]
async fn invitations_stay_in_their_organization() {
    let s = Invites::new().await;
    let created = s
        .tenancy
        .create_invitation(&s.owner, NewInvitation::link(Role::Member, 3))
        .await
        .unwrap();
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
    assert!(s.tenancy.invitations(&theirs).await.unwrap().is_empty());
    let id = created.invitation.id;
    assert!(!s.tenancy.revoke_invitation(&theirs, id).await.unwrap());
    assert_eq!(
        s.tenancy
            .resend_invitation(&theirs, id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.tenancy.invitations(&s.owner).await.unwrap().len(), 1);
}

/// Expiry: 7 days by default, another lifetime within the bounds, refused
/// outside them; an expired invitation is refused like any other.
#[tokio::test]
async fn invitations_expire_within_the_configured_bounds() {
    let s = Invites::new().await;
    let user = UserId::new_v7();
    let week = s
        .tenancy
        .create_invitation(&s.owner, NewInvitation::link(Role::Member, 5))
        .await
        .unwrap();
    let short = s
        .tenancy
        .create_invitation(
            &s.owner,
            NewInvitation::link(Role::Member, 5).expires_in(2 * DAY),
        )
        .await
        .unwrap();
    for outside in [Duration::from_secs(60), 31 * DAY] {
        let err = s
            .tenancy
            .create_invitation(
                &s.owner,
                NewInvitation::link(Role::Member, 5).expires_in(outside),
            )
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("expires_in"));
    }
    s.clock.advance(2 * DAY);
    assert_refused(
        s.tenancy
            .accept_invitation(user, short.token.expose())
            .await,
    );
    s.clock.advance(5 * DAY - Duration::from_secs(1));
    assert!(
        s.tenancy
            .accept_invitation(user, week.token.expose())
            .await
            .unwrap()
            .joined
    );
    s.clock.advance(Duration::from_secs(1));
    assert_refused(
        s.tenancy
            .accept_invitation(UserId::new_v7(), week.token.expose())
            .await,
    );

    for (builder, setting) in [
        (
            Tenancy::builder().invitation_expiry(40 * DAY),
            "invitation_expiry",
        ),
        (
            Tenancy::builder().invitation_expiry_bounds(Duration::from_secs(1), DAY),
            "invitation_expiry_bounds",
        ),
        (
            Tenancy::builder().invitation_expiry_bounds(DAY, 100 * DAY),
            "invitation_expiry_bounds",
        ),
        (
            Tenancy::builder().invitation_accept_url("has space"),
            "invitation_accept_url",
        ),
    ] {
        let err = builder.store(MemoryStore::new()).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(setting), "{err}");
    }
}

/// A link is used up to `max_uses` times by anyone signed in; a member
/// accepting keeps their role and uses nothing.
#[tokio::test]
async fn a_link_counts_its_uses() {
    let s = Invites::new().await;
    let created = s
        .tenancy
        .create_invitation(&s.owner, NewInvitation::link(Role::Viewer, 2))
        .await
        .unwrap();
    assert!(!created.delivered, "a link is not sent");
    assert!(s.sender.sent().is_empty());
    let token = created.token.expose();
    let mine = s
        .tenancy
        .accept_invitation(s.owner.user(), token)
        .await
        .unwrap();
    assert!(!mine.joined);
    assert_eq!(mine.role, Role::Owner);
    for _ in 0..2 {
        assert!(
            s.tenancy
                .accept_invitation(UserId::new_v7(), token)
                .await
                .unwrap()
                .joined
        );
    }
    assert_refused(s.tenancy.accept_invitation(UserId::new_v7(), token).await);
    assert_eq!(s.tenancy.members(&s.owner).await.unwrap().len(), 3);
}

/// Resending rotates the token (the old one stops working) and sends the
/// new URL; revoking stops the token at once.
#[tokio::test]
async fn resend_rotates_and_revoke_stops() {
    let s = Invites::new().await;
    let bob = s.person("Bob", "bob@example.com", true);
    let created = s
        .tenancy
        .create_invitation(
            &s.owner,
            NewInvitation::email("bob@example.com", Role::Member),
        )
        .await
        .unwrap();
    s.clock.advance(DAY);
    let resent = s
        .tenancy
        .resend_invitation(&s.owner, created.invitation.id)
        .await
        .unwrap();
    assert_ne!(resent.token, created.token);
    assert_eq!(
        resent.invitation.expires_at,
        created.invitation.expires_at + chrono::TimeDelta::days(1)
    );
    assert_eq!(s.sender.sent().len(), 2);
    assert_eq!(
        s.sender.last_url_for("bob@example.com").unwrap(),
        resent.accept_url
    );
    assert_refused(
        s.tenancy
            .accept_invitation(bob, created.token.expose())
            .await,
    );

    assert!(
        s.tenancy
            .revoke_invitation(&s.owner, created.invitation.id)
            .await
            .unwrap()
    );
    assert_refused(
        s.tenancy
            .accept_invitation(bob, resent.token.expose())
            .await,
    );
    assert!(s.tenancy.invitations(&s.owner).await.unwrap().is_empty());
    assert_eq!(
        s.tenancy
            .resend_invitation(&s.owner, created.invitation.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// The README's invitations example, as written there.
#[tokio::test]
async fn the_readme_flow() -> tenancy::Result<()> {
    let (ada, bob) = (UserId::new_v7(), UserId::new_v7());
    let directory = Arc::new(MemoryUserDirectory::new());
    directory.insert(bob, Some("bob@example.com"), Some("Bob"));
    directory.set_email_confirmed(bob, true);
    let outbox = Arc::new(MemoryInvitationSender::new());
    let tenancy = Tenancy::builder()
        .store(MemoryStore::new())
        .shared_user_directory(directory)
        .shared_invitation_sender(outbox.clone())
        .invitation_accept_url("https://app.example.com/invite")
        .build()?;
    let acme = tenancy
        .create_organization(ada, NewOrganization::new("Acme", "acme")?)
        .await?;
    let as_ada = tenancy.context(ada, acme.id).await?;

    let invite = tenancy
        .create_invitation(
            &as_ada,
            NewInvitation::email("bob@example.com", Role::Member),
        )
        .await?;
    assert_eq!(
        outbox.last_url_for("bob@example.com").as_deref(),
        Some(invite.accept_url.as_str())
    );
    let joined = tenancy
        .accept_invitation(bob, invite.token.expose())
        .await?;
    assert_eq!(
        (joined.organization.id, joined.role),
        (acme.id, Role::Member)
    );

    let link = tenancy
        .create_invitation(
            &as_ada,
            NewInvitation::link(Role::Viewer, 25).expires_in(Duration::from_secs(3 * 86_400)),
        )
        .await?;
    assert_eq!(tenancy.invitations(&as_ada).await?.len(), 1);
    let again = tenancy
        .resend_invitation(&as_ada, link.invitation.id)
        .await?;
    assert!(
        tenancy
            .accept_invitation(bob, link.token.expose())
            .await
            .is_err()
    );
    assert!(
        tenancy
            .revoke_invitation(&as_ada, again.invitation.id)
            .await?
    );
    Ok(())
}

/// Creating, accepting and revoking invitations are audit events naming
/// who acted, with the token hash in no event.
#[tokio::test]
async fn invitations_and_their_acceptance_are_audited() {
    use tenancy::model::audit::{AuditActor, AuditQuery};
    let s = Invites::new().await;
    let bob = s.person("Bob", "bob@example.com", true);
    let invite = s
        .tenancy
        .create_invitation(
            &s.owner,
            NewInvitation::email("bob@example.com", Role::Member),
        )
        .await
        .unwrap();
    s.tenancy
        .accept_invitation(bob, invite.token.expose())
        .await
        .unwrap();
    let link = s
        .tenancy
        .create_invitation(&s.owner, NewInvitation::link(Role::Viewer, 3))
        .await
        .unwrap();
    assert!(
        s.tenancy
            .revoke_invitation(&s.owner, link.invitation.id)
            .await
            .unwrap()
    );

    let page = s
        .tenancy
        .audit_log(&s.owner, AuditQuery::new(50).unwrap())
        .await
        .unwrap();
    let seen: Vec<(String, Option<UserId>)> = page
        .events
        .iter()
        // Leave out the organization's creation (and its owner's membership).
        .filter(|e| e.action.starts_with("invitation") || e.actor.user_id() == Some(bob))
        .map(|e| (e.action.clone(), e.actor.user_id()))
        .collect();
    let owner = Some(s.owner.user());
    assert_eq!(
        seen,
        [
            ("invitation.updated".to_owned(), owner),
            ("invitation.created".to_owned(), owner),
            ("invitation.updated".to_owned(), Some(bob)),
            ("member.created".to_owned(), Some(bob)),
            ("invitation.created".to_owned(), owner),
        ],
        "newest first: the link revoked, the link created, bob's acceptance (a use, his membership), the email invitation"
    );
    for event in &page.events {
        for row in [&event.before, &event.after].into_iter().flatten() {
            assert!(row.get("token_hash").is_none(), "{event:?}");
        }
    }
    let by_bob = s
        .tenancy
        .audit_log(
            &s.owner,
            AuditQuery::new(50).unwrap().actor(AuditActor::user(bob)),
        )
        .await
        .unwrap();
    assert_eq!(by_bob.events.len(), 2, "{:?}", by_bob.events);
}
