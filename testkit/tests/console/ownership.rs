//! Roles and ownership over real HTTP: the role picker starts at each
//! member's current role, and submitting it changes nothing; an owner
//! hands ownership to another member; the operator transfers it from the
//! organization's page. Only those allowed, with a valid CSRF token.

use reqwest::StatusCode;
use tenancy::{OrgId, Role, UserId};

use super::{Page, Site, site};

/// The last eight hex digits of a user id, as the members table shows it.
fn short_id(user: UserId) -> String {
    let simple = user.as_uuid().simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

/// `user`'s row of a members page.
fn row_of(page: &Page, user: UserId) -> &str {
    page.body
        .split("<tr>")
        .find(|row| row.contains(&format!("({user})")))
        .unwrap_or_else(|| panic!("no row for {user}:\n{}", page.body))
}

/// The options of a row's role picker, each with whether it is selected;
/// empty without a picker.
fn picker(row: &str) -> Vec<(String, bool)> {
    row.split("<option value=\"")
        .skip(1)
        .map(|option| {
            let (value, rest) = option.split_once('"').unwrap();
            let tag = &rest[..rest.find('>').unwrap()];
            (value.to_owned(), tag.contains("selected"))
        })
        .collect()
}

/// `user`'s role in `org`, `None` if not a member.
async fn role_of(s: &Site, user: UserId, org: OrgId) -> Option<Role> {
    s.demo
        .app
        .auth
        .tenancy()
        .context(user, org)
        .await
        .ok()
        .map(|ctx| ctx.role())
}

/// Acme's members and their roles, sorted.
async fn acme_roles(s: &Site) -> Vec<(UserId, Role)> {
    let tenancy = s.demo.app.auth.tenancy();
    let ctx = tenancy.context(s.demo.alice, s.demo.acme).await.unwrap();
    let mut all: Vec<_> = tenancy
        .members(&ctx)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn the_role_picker_starts_at_each_members_current_role() {
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let page = s.get(alice, &format!("/orgs/{acme}/members")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let all = |selected: &str| {
        ["owner", "admin", "member", "viewer"]
            .map(|r| (r.to_owned(), r == selected))
            .to_vec()
    };
    // The owner may set any role on the others, and lower her own.
    assert_eq!(picker(row_of(&page, alice)), all("owner"));
    assert_eq!(picker(row_of(&page, bob)), all("member"));
    assert_eq!(picker(row_of(&page, dan)), all("viewer"));

    // An admin's picker: the current role and what an admin may grant.
    let owner = s
        .demo
        .app
        .auth
        .tenancy()
        .context(alice, acme)
        .await
        .unwrap();
    s.demo
        .app
        .auth
        .tenancy()
        .change_role(&owner, bob, Role::Admin)
        .await
        .unwrap();
    let page = s.get(bob, &format!("/orgs/{acme}/members")).await;
    let admins = |pairs: &[(&str, bool)]| {
        pairs
            .iter()
            .map(|(r, sel)| ((*r).to_owned(), *sel))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        picker(row_of(&page, dan)),
        admins(&[("member", false), ("viewer", true)])
    );
    assert_eq!(
        picker(row_of(&page, bob)),
        admins(&[("admin", true), ("member", false), ("viewer", false)]),
        "his own: lowering only"
    );
    assert_eq!(picker(row_of(&page, alice)), [], "no picker for the owner");
    // A viewer has no picker on any row.
    let page = s.get(dan, &format!("/orgs/{acme}/members")).await;
    for user in [alice, bob, dan] {
        assert_eq!(picker(row_of(&page, user)), [], "{user}");
    }
}

#[tokio::test]
async fn posting_the_current_role_changes_nothing_and_says_so() {
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let csrf = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let path = format!("/orgs/{acme}/members/{bob}/role");
    let kept = s
        .post(alice, &path, &[("role", "member"), ("csrf", &csrf)], &[])
        .await;
    assert_eq!(kept.status, StatusCode::SEE_OTHER, "{}", kept.body);
    assert_eq!(
        kept.headers["location"],
        format!("/console/orgs/{acme}/members?done=role-unchanged")
    );
    let page = s
        .get(alice, &format!("/orgs/{acme}/members?done=role-unchanged"))
        .await;
    assert!(
        page.body
            .contains("The role was not changed: the member has it already."),
        "{}",
        page.body
    );
    assert_eq!(role_of(&s, bob, acme).await, Some(Role::Member));
    // Her own current role too.
    let own = s
        .post(
            alice,
            &format!("/orgs/{acme}/members/{alice}/role"),
            &[("role", "owner"), ("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(own.status, StatusCode::SEE_OTHER, "{}", own.body);
    assert!(
        own.headers["location"]
            .to_str()
            .unwrap()
            .ends_with("done=role-unchanged")
    );
    // The role rules still apply first: a viewer posting Bob's current role
    // is refused, not told it changed nothing.
    let dans = s.get(dan, &format!("/orgs/{acme}/members")).await.csrf();
    let refused = s
        .post(dan, &path, &[("role", "member"), ("csrf", &dans)], &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // A real change still says it changed.
    let changed = s
        .post(alice, &path, &[("role", "viewer"), ("csrf", &csrf)], &[])
        .await;
    assert_eq!(
        changed.headers["location"],
        format!("/console/orgs/{acme}/members?done=role")
    );
    assert_eq!(role_of(&s, bob, acme).await, Some(Role::Viewer));
}

#[tokio::test]
async fn an_owner_makes_a_member_owner_and_becomes_admin() {
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let page = s.get(alice, &format!("/orgs/{acme}/members")).await;
    let action = |user: UserId| format!("action=\"/console/orgs/{acme}/members/{user}/owner\"");
    for user in [bob, dan] {
        let row = row_of(&page, user);
        assert!(row.contains("Make owner"), "{row}");
        assert!(row.contains(&action(user)), "{row}");
        assert!(row.contains(&short_id(user)), "{row}");
    }
    assert!(!row_of(&page, alice).contains("Make owner"), "not her own");
    assert!(page.body.contains("you an admin"), "says what it does");

    let made = s
        .post(
            alice,
            &format!("/orgs/{acme}/members/{bob}/owner"),
            &[("csrf", &page.csrf())],
            &[],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(
        made.headers["location"],
        format!("/console/orgs/{acme}/members?done=owner")
    );
    assert_eq!(role_of(&s, bob, acme).await, Some(Role::Owner));
    assert_eq!(role_of(&s, alice, acme).await, Some(Role::Admin));
    let after = s
        .get(alice, &format!("/orgs/{acme}/members?done=owner"))
        .await;
    assert!(
        after.body.contains("you are now an admin"),
        "{}",
        after.body
    );
    assert!(!after.body.contains("Make owner"), "an admin hands nothing");
    // The new owner sees the action on the others' rows, not on his own.
    let bobs = s.get(bob, &format!("/orgs/{acme}/members")).await;
    assert!(row_of(&bobs, alice).contains("Make owner"));
    assert!(!row_of(&bobs, bob).contains("Make owner"));
}

#[tokio::test]
async fn an_admin_a_member_or_a_viewer_cannot_make_anyone_owner() {
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    let admin = UserId::new_v7();
    tenancy
        .add_member(&owner, admin, Role::Admin)
        .await
        .unwrap();
    let before = acme_roles(&s).await;
    // (who, their role): bob is a member, dan a viewer.
    for user in [admin, bob, dan] {
        let page = s.get(user, &format!("/orgs/{acme}/members")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("Make owner"), "{}", page.body);
        let csrf = page.csrf();
        for target in [user, admin, bob, dan] {
            let path = format!("/orgs/{acme}/members/{target}/owner");
            let refused = s.post(user, &path, &[("csrf", &csrf)], &[]).await;
            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "{user} -> {target}: {}",
                refused.body
            );
        }
    }
    assert_eq!(acme_roles(&s).await, before);
    assert_eq!(role_of(&s, alice, acme).await, Some(Role::Owner));
}

#[tokio::test]
async fn a_forged_ownership_post_is_refused_and_changes_nothing() {
    let s = site().await;
    let (acme, alice, bob, dan, olivia) = (
        s.demo.acme,
        s.demo.alice,
        s.demo.bob,
        s.demo.dan,
        s.demo.olivia,
    );
    let before = acme_roles(&s).await;
    let dans = s.get(dan, &format!("/orgs/{acme}/members")).await.csrf();
    let alices = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let make_owner = format!("/orgs/{acme}/members/{bob}/owner");
    let transfer = format!("/operator/orgs/{acme}/owner");
    let bobs_id = bob.to_string();
    for (user, path, fields) in [
        (alice, &make_owner, vec![]),
        (olivia, &transfer, vec![("user", bobs_id.as_str())]),
    ] {
        for token in [None, Some(""), Some("garbage"), Some(dans.as_str())] {
            let mut form = fields.clone();
            form.extend(token.map(|t| ("csrf", t)));
            let page = s.post(user, path, &form, &[]).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{path} {token:?}: {}",
                page.body
            );
        }
    }
    // From another site, even with her own token.
    for headers in [
        [("origin", "https://evil.example")],
        [("sec-fetch-site", "cross-site")],
    ] {
        let page = s
            .post(alice, &make_owner, &[("csrf", &alices)], &headers)
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert_eq!(acme_roles(&s).await, before);
    // The positive control: her own token, from her own page.
    let done = s.post(alice, &make_owner, &[("csrf", &alices)], &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(role_of(&s, bob, acme).await, Some(Role::Owner));
}

#[tokio::test]
async fn the_operator_transfers_ownership_from_the_org_page() {
    let s = site().await;
    let (acme, alice, bob, nina, olivia) = (
        s.demo.acme,
        s.demo.alice,
        s.demo.bob,
        s.demo.nina,
        s.demo.olivia,
    );
    let page = s.get(olivia, &format!("/operator/orgs/{acme}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Transfer ownership"), "{}", page.body);
    let owners = page
        .body
        .split("id=\"owners-heading\"")
        .nth(1)
        .expect("the owners section");
    assert!(owners.contains(&alice.to_string()), "{owners}");
    assert!(!owners.contains(&bob.to_string()), "{owners}");
    let csrf = page.csrf();
    let path = format!("/operator/orgs/{acme}/owner");

    // Not a user id: shown back on the page, nothing changes.
    let bad = s
        .post(
            olivia,
            &path,
            &[("csrf", &csrf), ("user", "not-a-user")],
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("is not a UUID"), "{}", bad.body);
    assert!(bad.body.contains("Transfer ownership"), "the page again");
    assert_eq!(role_of(&s, alice, acme).await, Some(Role::Owner));

    let bobs = bob.to_string();
    let done = s
        .post(olivia, &path, &[("csrf", &csrf), ("user", &bobs)], &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.headers["location"],
        format!("/console/operator/orgs/{acme}?done=ownership")
    );
    assert_eq!(role_of(&s, bob, acme).await, Some(Role::Owner));
    assert_eq!(role_of(&s, alice, acme).await, Some(Role::Admin));
    let after = s
        .get(olivia, &format!("/operator/orgs/{acme}?done=ownership"))
        .await;
    assert!(
        after.body.contains("Ownership was transferred."),
        "{}",
        after.body
    );

    // To someone outside the organization: added as its owner.
    let ninas = nina.to_string();
    let added = s
        .post(olivia, &path, &[("csrf", &csrf), ("user", &ninas)], &[])
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(role_of(&s, nina, acme).await, Some(Role::Owner));
    assert_eq!(role_of(&s, bob, acme).await, Some(Role::Admin));
}

#[tokio::test]
async fn only_the_operator_transfers_ownership_from_the_operator_page() {
    let s = site().await;
    let (acme, initech, alice, bob, carol) = (
        s.demo.acme,
        s.demo.initech,
        s.demo.alice,
        s.demo.bob,
        s.demo.carol,
    );
    let before = acme_roles(&s).await;
    let bobs = bob.to_string();
    // Acme's owner, one of its members, an outsider: each with a valid
    // form token of their own.
    for (user, home) in [(alice, acme), (bob, acme), (carol, initech)] {
        let csrf = s.get(user, &format!("/orgs/{home}/members")).await.csrf();
        let page = s
            .post(
                user,
                &format!("/operator/orgs/{acme}/owner"),
                &[("csrf", &csrf), ("user", &bobs)],
                &[],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{user}: {}", page.body);
        assert!(
            page.body.contains("for the platform operator"),
            "{}",
            page.body
        );
    }
    assert_eq!(acme_roles(&s).await, before);
}
