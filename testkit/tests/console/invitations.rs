//! Invitations in the console, over real HTTP and in a real browser: an
//! owner invites by email and the invitee joins, by name; a viewer has no
//! invite form and a forged post is refused; a used-up link is refused
//! like an unknown one, naming no organization; resend and revoke; every
//! invitation form refuses a bad CSRF token.

use reqwest::StatusCode;
use tenancy::model::invitation::INVITATION_REFUSED;
use tenancy::{Role, UserId};
use tenancy_testkit::browser::Browser;

use super::{Page, Site, site};

/// The invitation link a "created" or "resent" page shows once, without
/// the console's mount point.
fn invite_path(page: &Page) -> String {
    let marker = "id=\"invite-url\" class=\"wide\" size=\"100\" readonly value=\"";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no invitation link:\n{}", page.body))
        + marker.len();
    let end = page.body[start..].find('"').unwrap() + start;
    let url = page.body[start..end].replace("&amp;", "&");
    url.strip_prefix("/console").unwrap().to_owned()
}

/// The token in an invitation path.
fn token_of(path: &str) -> String {
    path.split_once("token=").unwrap().1.to_owned()
}

/// `user` creates an invitation in `org` with `fields` through the form.
async fn invite(s: &Site, user: UserId, org: tenancy::OrgId, fields: &[(&str, &str)]) -> Page {
    let csrf = s.get(user, &format!("/orgs/{org}/members")).await.csrf();
    let mut form = fields.to_vec();
    form.push(("csrf", &csrf));
    s.post(user, &format!("/orgs/{org}/invitations"), &form, &[])
        .await
}

/// `user` opens the accept page of `path`, then accepts through its form.
async fn accept(s: &Site, user: UserId, path: &str) -> Page {
    let page = s.get(user, path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    s.post(
        user,
        "/invitations/join",
        &[("csrf", &csrf), ("token", &token_of(path))],
        &[],
    )
    .await
}

#[tokio::test]
async fn an_owner_invites_by_email_and_the_invitee_joins_by_name() {
    let s = site().await;
    let (acme, alice, frank) = (s.demo.acme, s.demo.alice, s.demo.frank);
    let members = s.get(alice, &format!("/orgs/{acme}/members")).await;
    assert!(
        members.body.contains("Invite people to Acme"),
        "{}",
        members.body
    );
    let created = invite(
        &s,
        alice,
        acme,
        &[
            ("kind", "email"),
            ("email", "Frank@Example.com"),
            ("role", "member"),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert!(
        created.body.contains("frank@example.com as member"),
        "{}",
        created.body
    );
    let path = invite_path(&created);
    assert!(path.starts_with("/invitations/accept?token="), "{path}");
    // Shown once: the members page lists the invitation, not its link.
    let members = s.get(alice, &format!("/orgs/{acme}/members")).await;
    assert!(members.body.contains("frank@example.com"));
    assert!(!members.body.contains(&token_of(&path)));

    // The accept page names no organization before it is accepted.
    let page = s.get(frank, &path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Acme"), "{}", page.body);
    assert!(page.body.contains("Frank Fischer"));
    let joined = accept(&s, frank, &path).await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    assert_eq!(
        joined.headers["location"],
        format!("/console/orgs/{acme}/members?done=joined")
    );
    let tenancy = s.demo.app.auth.tenancy();
    assert_eq!(
        tenancy.context(frank, acme).await.unwrap().role(),
        Role::Member
    );
    let listed = s.get(alice, &format!("/orgs/{acme}/members")).await;
    assert!(
        listed.body.contains("<strong>Frank Fischer</strong>"),
        "{}",
        listed.body
    );

    // Used: refused, with the one message.
    let again = accept(&s, frank, &path).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.body.contains(INVITATION_REFUSED), "{}", again.body);
}

#[tokio::test]
async fn a_viewer_has_no_invite_form_and_a_forged_post_is_refused() {
    let s = site().await;
    let (acme, alice, dan) = (s.demo.acme, s.demo.alice, s.demo.dan);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    let before = tenancy.invitations(&owner).await.unwrap();
    let page = s.get(dan, &format!("/orgs/{acme}/members")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Invite people"), "{}", page.body);
    assert!(!page.body.contains("/invitations\""), "{}", page.body);
    assert!(!page.body.contains("Pending invitations"));
    // With his own valid form token, the server still says no.
    let forged = invite(&s, dan, acme, &[("kind", "link"), ("role", "viewer")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let csrf = page.csrf();
    let seeded = before[0].id;
    for action in ["revoke", "resend"] {
        let post = s
            .post(
                dan,
                &format!("/orgs/{acme}/invitations/{seeded}/{action}"),
                &[("csrf", &csrf)],
                &[],
            )
            .await;
        assert_eq!(post.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(tenancy.invitations(&owner).await.unwrap(), before);
    // An admin invites members but not admins.
    let bob = s.demo.bob;
    tenancy.change_role(&owner, bob, Role::Admin).await.unwrap();
    let as_admin = invite(&s, bob, acme, &[("kind", "link"), ("role", "admin")]).await;
    assert_eq!(as_admin.status, StatusCode::FORBIDDEN, "{}", as_admin.body);
    let page = s.get(bob, &format!("/orgs/{acme}/members")).await;
    let picker = page.body.split("id=\"invite-link-role\"").nth(1).unwrap();
    let picker = &picker[..picker.find("</select>").unwrap()];
    assert!(
        !picker.contains("\"admin\"") && picker.contains("\"viewer\""),
        "{picker}"
    );
}

#[tokio::test]
async fn a_used_up_link_is_refused_like_an_unknown_one() {
    let s = site().await;
    let (acme, alice, nina, erin) = (s.demo.acme, s.demo.alice, s.demo.nina, s.demo.erin);
    let created = invite(
        &s,
        alice,
        acme,
        &[("kind", "link"), ("role", "viewer"), ("max_uses", "1")],
    )
    .await;
    let path = invite_path(&created);
    let joined = accept(&s, nina, &path).await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    let used_up = accept(&s, erin, &path).await;
    let unknown = accept(&s, erin, "/invitations/accept?token=0000").await;
    for page in [&used_up, &unknown] {
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        assert!(page.body.contains(INVITATION_REFUSED), "{}", page.body);
        assert!(!page.body.contains("Acme"), "{}", page.body);
        assert!(!page.body.contains(&acme.to_string()));
    }
    let tenancy = s.demo.app.auth.tenancy();
    assert!(tenancy.context(erin, acme).await.is_err());
    assert_eq!(
        tenancy.context(nina, acme).await.unwrap().role(),
        Role::Viewer
    );
    // A member opening a link keeps their role.
    let created = invite(&s, alice, acme, &[("kind", "link"), ("role", "viewer")]).await;
    let mine = accept(&s, s.demo.bob, &invite_path(&created)).await;
    assert_eq!(
        mine.headers["location"],
        format!("/console/orgs/{acme}/members?done=already-member")
    );
    assert_eq!(
        tenancy.context(s.demo.bob, acme).await.unwrap().role(),
        Role::Member
    );
}

#[tokio::test]
async fn resend_gives_a_new_link_and_revoke_stops_it() {
    let s = site().await;
    let (acme, alice, frank) = (s.demo.acme, s.demo.alice, s.demo.frank);
    let created = invite(
        &s,
        alice,
        acme,
        &[
            ("kind", "email"),
            ("email", "frank@example.com"),
            ("role", "viewer"),
        ],
    )
    .await;
    let old = invite_path(&created);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    let id = tenancy
        .invitations(&owner)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.email.as_deref() == Some("frank@example.com"))
        .unwrap()
        .id;
    let csrf = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let resent = s
        .post(
            alice,
            &format!("/orgs/{acme}/invitations/{id}/resend"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.body);
    assert!(resent.body.contains("Invitation resent"));
    let new = invite_path(&resent);
    assert_ne!(new, old);
    assert_eq!(accept(&s, frank, &old).await.status, StatusCode::NOT_FOUND);
    let revoked = s
        .post(
            alice,
            &format!("/orgs/{acme}/invitations/{id}/revoke"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(
        revoked.headers["location"],
        format!("/console/orgs/{acme}/members?done=invitation-revoked")
    );
    assert_eq!(accept(&s, frank, &new).await.status, StatusCode::NOT_FOUND);
    assert!(tenancy.context(frank, acme).await.is_err());
}

/// Each invitation form, posted with a bad token or from another site, is
/// 403 and creates or changes nothing.
#[tokio::test]
async fn every_invitation_form_refuses_a_bad_token() {
    let s = site().await;
    let (acme, alice, frank) = (s.demo.acme, s.demo.alice, s.demo.frank);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    let before = tenancy.invitations(&owner).await.unwrap();
    let seeded = before[0].id;
    let mine = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let routes = tenancy::console::post_routes();
    for route in [
        "/orgs/{org}/invitations",
        "/orgs/{org}/invitations/{id}/revoke",
        "/orgs/{org}/invitations/{id}/resend",
        "/invitations/join",
    ] {
        assert!(routes.contains(&route), "{route} is a form route");
        let path = route
            .replace("{org}", &acme.to_string())
            .replace("{id}", &seeded.to_string());
        let fields = [("kind", "link"), ("role", "owner"), ("token", "x")];
        for token in ["", "garbage"] {
            let mut form = fields.to_vec();
            form.push(("csrf", token));
            let page = s.post(alice, &path, &form, &[]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        }
        let mut form = fields.to_vec();
        form.push(("csrf", &mine));
        let cross = s
            .post(alice, &path, &form, &[("origin", "https://evil.example")])
            .await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(tenancy.invitations(&owner).await.unwrap(), before);
    assert!(tenancy.context(frank, acme).await.is_err());

    // Positive control: with her own token each post passes the check.
    for (path, expected) in [
        (
            format!("/orgs/{acme}/invitations/{seeded}/resend"),
            StatusCode::OK,
        ),
        (
            format!("/orgs/{acme}/invitations/{seeded}/revoke"),
            StatusCode::SEE_OTHER,
        ),
        (format!("/orgs/{acme}/invitations"), StatusCode::OK),
        ("/invitations/join".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let form = [
            ("kind", "link"),
            ("role", "owner"),
            ("token", "x"),
            ("csrf", &mine),
        ];
        let page = s.post(alice, &path, &form, &[]).await;
        assert_eq!(page.status, expected, "{path}: {}", page.body);
    }
}

/// Acme's invitations, as its owner lists them.
async fn acme_invitations(s: &Site) -> Vec<tenancy::model::invitation::Invitation> {
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(s.demo.alice, s.demo.acme).await.unwrap();
    tenancy.invitations(&owner).await.unwrap()
}

/// The id of Acme's pending invitation for `email`.
async fn invitation_for(s: &Site, email: &str) -> tenancy::model::invitation::InvitationId {
    acme_invitations(s)
        .await
        .into_iter()
        .find(|i| i.email.as_deref() == Some(email))
        .unwrap_or_else(|| panic!("an invitation for {email}"))
        .id
}

/// An admin lists the organization's invitations, an owner's admin
/// invitation included, but may not revoke or resend one she could not have
/// created (only owners invite admins): her page offers no button for it,
/// her forged posts are 403 and leave it as it was, and its link still
/// admits its invitee as an admin. She still manages the viewer link.
#[tokio::test]
async fn an_admin_cannot_revoke_or_resend_an_owners_admin_invitation() {
    let s = site().await;
    let (acme, alice, bob, frank) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.frank);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    tenancy.change_role(&owner, bob, Role::Admin).await.unwrap();
    let created = invite(
        &s,
        alice,
        acme,
        &[
            ("kind", "email"),
            ("email", "frank@example.com"),
            ("role", "admin"),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let link = invite_path(&created);
    let id = invitation_for(&s, "frank@example.com").await;
    let before = acme_invitations(&s).await;
    let seeded = before.iter().find(|i| i.is_link()).unwrap().id;

    let page = s.get(bob, &format!("/orgs/{acme}/members")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("frank@example.com"), "{}", page.body);
    for action in ["revoke", "resend"] {
        let theirs = format!("/orgs/{acme}/invitations/{id}/{action}");
        let mine = format!("/orgs/{acme}/invitations/{seeded}/{action}");
        assert!(!page.body.contains(&theirs), "no {action} button for it");
        assert!(page.body.contains(&mine), "a {action} button for the link");
    }
    let csrf = page.csrf();
    for action in ["revoke", "resend"] {
        let post = s
            .post(
                bob,
                &format!("/orgs/{acme}/invitations/{id}/{action}"),
                &[("csrf", &csrf)],
                &[],
            )
            .await;
        assert_eq!(
            post.status,
            StatusCode::FORBIDDEN,
            "{action}: {}",
            post.body
        );
        assert!(!post.body.contains("invite-url"), "{action}: no new link");
    }
    assert_eq!(acme_invitations(&s).await, before);
    // The same posts for the viewer link pass: the refusal is the rule.
    let resent = s
        .post(
            bob,
            &format!("/orgs/{acme}/invitations/{seeded}/resend"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.body);
    // Neither revoked nor rotated: the link Alice was shown still works.
    let joined = accept(&s, frank, &link).await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    assert_eq!(
        tenancy.context(frank, acme).await.unwrap().role(),
        Role::Admin
    );
}

/// Carol owns Globex. Naming Acme's id or an Acme invitation's id on her
/// own organization's pages reaches nothing of Acme: her members page
/// lists Globex's invitations only; revoking an Acme invitation through
/// Globex finds none there, resending is 404; the same posts under Acme's
/// own path are 403 (she is no member); an invitation she creates with
/// Acme's id in the form is Globex's. Acme's invitations are unchanged and
/// Frank's link still admits him.
#[tokio::test]
async fn another_orgs_owner_cannot_reach_acmes_invitations() {
    let s = site().await;
    let (acme, globex, alice, carol, frank) = (
        s.demo.acme,
        s.demo.globex,
        s.demo.alice,
        s.demo.carol,
        s.demo.frank,
    );
    let tenancy = s.demo.app.auth.tenancy();
    let created = invite(
        &s,
        alice,
        acme,
        &[
            ("kind", "email"),
            ("email", "frank@example.com"),
            ("role", "member"),
        ],
    )
    .await;
    let link = invite_path(&created);
    let before = acme_invitations(&s).await;
    assert_eq!(before.len(), 2, "the seeded link and Frank's");
    let carols = tenancy.context(carol, globex).await.unwrap();
    let globex_before = tenancy.invitations(&carols).await.unwrap();

    let acme_page = s.get(carol, &format!("/orgs/{acme}/members")).await;
    assert_eq!(acme_page.status, StatusCode::FORBIDDEN);
    assert!(!acme_page.body.contains("frank@example.com"));
    let own = s
        .get(carol, &format!("/orgs/{globex}/members?org={acme}"))
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert!(own.body.contains("Pending invitations"), "{}", own.body);
    assert!(!own.body.contains("frank@example.com"), "{}", own.body);
    for i in &before {
        assert!(!own.body.contains(&i.id.to_string()), "{}", own.body);
    }
    let csrf = own.csrf();
    let acme_id = acme.to_string();
    let form = [
        ("csrf", csrf.as_str()),
        ("org", acme_id.as_str()),
        ("organization_id", acme_id.as_str()),
    ];
    for i in &before {
        let id = i.id;
        let revoke = s
            .post(
                carol,
                &format!("/orgs/{globex}/invitations/{id}/revoke"),
                &form,
                &[],
            )
            .await;
        assert_eq!(revoke.status, StatusCode::SEE_OTHER, "{}", revoke.body);
        assert_eq!(
            revoke.headers["location"],
            format!("/console/orgs/{globex}/members?done=invitation-gone")
        );
        let resend = s
            .post(
                carol,
                &format!("/orgs/{globex}/invitations/{id}/resend"),
                &form,
                &[],
            )
            .await;
        assert_eq!(resend.status, StatusCode::NOT_FOUND, "{}", resend.body);
        assert!(!resend.body.contains("invite-url"));
        for action in ["revoke", "resend"] {
            let direct = s
                .post(
                    carol,
                    &format!("/orgs/{acme}/invitations/{id}/{action}"),
                    &form,
                    &[],
                )
                .await;
            assert_eq!(
                direct.status,
                StatusCode::FORBIDDEN,
                "{action}: {}",
                direct.body
            );
            assert!(!direct.body.contains("invite-url"));
        }
    }
    let mut fields = vec![("kind", "link"), ("role", "viewer")];
    fields.extend(form);
    let made = s
        .post(carol, &format!("/orgs/{globex}/invitations"), &fields, &[])
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let globex_after = tenancy.invitations(&carols).await.unwrap();
    assert_eq!(globex_after.len(), globex_before.len() + 1);
    assert!(globex_after.iter().all(|i| i.org == globex));

    assert_eq!(acme_invitations(&s).await, before);
    let joined = accept(&s, frank, &link).await;
    assert_eq!(
        joined.headers["location"],
        format!("/console/orgs/{acme}/members?done=joined")
    );
}

/// Frank's email invitation, opened by Erin and by Nina (each signed in
/// with another confirmed email, Nina's at the same domain), is refused
/// exactly as a bad token is (the same 404 page, naming no organization);
/// it stays pending, unused, and admits Frank afterwards.
#[tokio::test]
async fn an_email_invitation_opened_by_another_account_is_refused_like_a_bad_token() {
    let s = site().await;
    let (acme, alice, erin, nina, frank) = (
        s.demo.acme,
        s.demo.alice,
        s.demo.erin,
        s.demo.nina,
        s.demo.frank,
    );
    let created = invite(
        &s,
        alice,
        acme,
        &[
            ("kind", "email"),
            ("email", "frank@example.com"),
            ("role", "member"),
        ],
    )
    .await;
    let link = invite_path(&created);
    let before = acme_invitations(&s).await;
    let id = invitation_for(&s, "frank@example.com").await;
    let tenancy = s.demo.app.auth.tenancy();
    for someone in [erin, nina] {
        let wrong = accept(&s, someone, &link).await;
        let bad = accept(&s, someone, "/invitations/accept?token=0000").await;
        assert_eq!(wrong.status, StatusCode::NOT_FOUND, "{}", wrong.body);
        assert_eq!(wrong.status, bad.status);
        assert_eq!(wrong.body, bad.body, "the same refusal page");
        assert!(wrong.body.contains(INVITATION_REFUSED), "{}", wrong.body);
        assert!(!wrong.body.contains("Acme"), "{}", wrong.body);
        assert!(!wrong.body.contains(&acme.to_string()));
        assert!(tenancy.context(someone, acme).await.is_err());
    }
    let after = acme_invitations(&s).await;
    assert_eq!(after, before);
    let pending = after.iter().find(|i| i.id == id).unwrap();
    assert_eq!((pending.uses, pending.revoked_at), (0, None));

    let joined = accept(&s, frank, &link).await;
    assert_eq!(
        joined.headers["location"],
        format!("/console/orgs/{acme}/members?done=joined")
    );
    assert_eq!(
        tenancy.context(frank, acme).await.unwrap().role(),
        Role::Member
    );
}

// ---- in a real browser ----------------------------------------------------------

/// Alice invites frank@example.com, Frank signs in and accepts, and Acme's
/// members list him by name; Dan (a viewer) sees no invite form and his
/// forged post is refused; a one-use link Nina used is refused to Erin.
#[tokio::test]
async fn invitations_in_a_browser() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let shots = [
        "invite-form",
        "invite-created",
        "invite-accept",
        "invite-joined",
        "invite-viewer-members",
        "invite-link-created",
        "invite-used-up",
    ];
    let out = super::browser::run(&browser, &s, "console_invitations.mjs", &shots).await;
    assert!(out.stdout.contains("forged invite: 403"), "{}", out.stdout);
    let tenancy = s.demo.app.auth.tenancy();
    let acme = s.demo.acme;
    assert_eq!(
        tenancy.context(s.demo.frank, acme).await.unwrap().role(),
        Role::Member
    );
    assert_eq!(
        tenancy.context(s.demo.nina, acme).await.unwrap().role(),
        Role::Viewer
    );
    assert!(tenancy.context(s.demo.erin, acme).await.is_err());
    assert!(tenancy.context(s.demo.dan, acme).await.unwrap().role() == Role::Viewer);
}
