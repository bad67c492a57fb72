//! Verified domains over real HTTP: the operator records, disables and
//! removes an organization's domains; owners and admins choose who may
//! join through each, and a member or viewer cannot, not even with a valid
//! form token of their own; a user with a confirmed email at an open domain
//! joins from `/join`, and one without cannot, whatever they post; every
//! form of the area refuses a post without a valid token.

use reqwest::StatusCode;
use tenancy::model::domain::AutoJoin;
use tenancy::{OrgId, PlatformOperator, Role, Tenancy, UserId};

use super::{Site, site};

/// What the console says when a form's token is refused.
const BAD_TOKEN: &str = "did not come from this console";

fn tenancy(s: &Site) -> &Tenancy {
    s.demo.app.auth.tenancy()
}

/// The operator records `domain` for `org` with joining set to `auto_join`.
async fn open_domain(s: &Site, org: OrgId, domain: &str, auto_join: AutoJoin) {
    let identity = PlatformOperator::new("console-tests");
    let operator = tenancy(s).operator(&identity);
    operator.add_domain(org, domain, false).await.unwrap();
    let owner = tenancy(s).context(s.demo.alice, s.demo.acme).await.unwrap();
    if org == s.demo.acme {
        tenancy(s)
            .set_domain_auto_join(&owner, domain, auto_join)
            .await
            .unwrap();
    }
}

async fn acme_domains(s: &Site) -> Vec<(String, bool, AutoJoin)> {
    let identity = PlatformOperator::new("console-tests");
    tenancy(s)
        .operator(&identity)
        .domains(s.demo.acme)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.domain.to_string(), d.enabled, d.auto_join))
        .collect()
}

#[tokio::test]
async fn the_operator_records_disables_and_removes_a_domain() {
    let s = site().await;
    let (acme, olivia, alice) = (s.demo.acme, s.demo.olivia, s.demo.alice);
    let path = format!("/operator/orgs/{acme}/domains");
    let empty = s.get(olivia, &path).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(
        empty.body.contains("No verified domains."),
        "{}",
        empty.body
    );
    let csrf = empty.csrf();

    let added = s
        .post(
            olivia,
            &format!("{path}/add"),
            &[
                ("csrf", &csrf),
                ("domain", " Acme.Example "),
                ("include_subdomains", "on"),
            ],
            &[],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(
        added.headers["location"],
        format!("/console{path}?done=domain-added")
    );
    assert_eq!(
        acme_domains(&s).await,
        [("acme.example".to_owned(), true, AutoJoin::Off)]
    );
    let listed = s.get(olivia, &format!("{path}?done=domain-added")).await;
    assert!(
        listed.body.contains("The domain was recorded."),
        "{}",
        listed.body
    );
    assert!(
        listed.body.contains("Disable acme.example"),
        "{}",
        listed.body
    );
    // "not included" contains "included": match the whole cell.
    assert!(listed.body.contains("<td>included</td>"), "{}", listed.body);
    assert!(!listed.body.contains("not included"), "{}", listed.body);

    // Bad input is the page again, saying why, and records nothing.
    let refused = s
        .post(
            olivia,
            &format!("{path}/add"),
            &[("csrf", &csrf), ("domain", "ada@acme.example")],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.body.contains("contains an @"), "{}", refused.body);
    assert_eq!(acme_domains(&s).await.len(), 1);

    let disabled = s
        .post(
            olivia,
            &format!("{path}/enabled"),
            &[
                ("csrf", &csrf),
                ("domain", "acme.example"),
                ("enabled", "false"),
            ],
            &[],
        )
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{}", disabled.body);
    assert_eq!(
        acme_domains(&s).await,
        [("acme.example".to_owned(), false, AutoJoin::Off)]
    );
    let listed = s.get(olivia, &path).await;
    assert!(
        listed.body.contains("Enable acme.example"),
        "{}",
        listed.body
    );

    // Anyone else: 403, even with a valid token of their own.
    let alices = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    assert_eq!(s.get(alice, &path).await.status, StatusCode::FORBIDDEN);
    for action in ["remove", "add", "enabled"] {
        let forged = s
            .post(
                alice,
                &format!("{path}/{action}"),
                &[
                    ("csrf", &alices),
                    ("domain", "acme.example"),
                    ("enabled", "true"),
                ],
                &[],
            )
            .await;
        assert_eq!(
            forged.status,
            StatusCode::FORBIDDEN,
            "{action}: {}",
            forged.body
        );
    }
    assert_eq!(
        acme_domains(&s).await,
        [("acme.example".to_owned(), false, AutoJoin::Off)]
    );

    let removed = s
        .post(
            olivia,
            &format!("{path}/remove"),
            &[("csrf", &csrf), ("domain", "acme.example")],
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(acme_domains(&s).await.is_empty());
}

#[tokio::test]
async fn owners_and_admins_choose_who_joins_and_a_viewer_cannot() {
    let s = site().await;
    let (acme, alice, bob, carol, dan) = (
        s.demo.acme,
        s.demo.alice,
        s.demo.bob,
        s.demo.carol,
        s.demo.dan,
    );
    open_domain(&s, acme, "acme.example", AutoJoin::Off).await;
    let path = format!("/orgs/{acme}/domains");

    let page = s.get(alice, &path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Save for acme.example"), "{}", page.body);
    // The state cell (every row's picker also offers this label).
    assert!(
        page.body.contains("<td>nobody joins on their own</td>"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let saved = s
        .post(
            alice,
            &format!("{path}/auto-join"),
            &[
                ("csrf", &csrf),
                ("domain", "acme.example"),
                ("auto_join", "member"),
            ],
            &[],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(
        acme_domains(&s).await,
        [("acme.example".to_owned(), true, AutoJoin::Member)]
    );
    let page = s.get(alice, &format!("{path}?done=auto-join")).await;
    assert!(page.body.contains("The join setting was saved."));
    assert!(
        page.body.contains("<option value=\"member\" selected>"),
        "the picker starts at the current choice: {}",
        page.body
    );

    // Above member is not a choice: the page again, saying why.
    let above = s
        .post(
            alice,
            &format!("{path}/auto-join"),
            &[
                ("csrf", &csrf),
                ("domain", "acme.example"),
                ("auto_join", "admin"),
            ],
            &[],
        )
        .await;
    assert_eq!(above.status, StatusCode::BAD_REQUEST, "{}", above.body);

    // A member, a viewer and a stranger: no page, and a forged post with
    // their own valid token is refused and changes nothing.
    for user in [bob, dan, carol] {
        assert_eq!(s.get(user, &path).await.status, StatusCode::FORBIDDEN);
        let own = match user {
            u if u == carol => format!("/orgs/{}/members", s.demo.globex),
            _ => format!("/orgs/{acme}/members"),
        };
        let token = s.get(user, &own).await.csrf();
        let forged = s
            .post(
                user,
                &format!("{path}/auto-join"),
                &[
                    ("csrf", &token),
                    ("domain", "acme.example"),
                    ("auto_join", "viewer"),
                ],
                &[],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    }
    assert_eq!(
        acme_domains(&s).await,
        [("acme.example".to_owned(), true, AutoJoin::Member)]
    );
}

#[tokio::test]
async fn a_confirmed_email_joins_from_the_join_page_and_nobody_else_can() {
    let s = site().await;
    let (acme, nina, erin) = (s.demo.acme, s.demo.nina, s.demo.erin);
    // nina@example.com and erin@initech.example; Acme opens example.com.
    open_domain(&s, acme, "example.com", AutoJoin::Viewer).await;

    // Unconfirmed: nothing to join, and a post is refused.
    s.demo.directory.set_email_confirmed(nina, false);
    let none = s.get(nina, "/join").await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.body);
    assert!(
        none.body
            .contains("No organization is open to your email address."),
        "{}",
        none.body
    );
    let ninas = s.get(nina, "").await.csrf();
    let early = s
        .post(nina, &format!("/join/{acme}"), &[("csrf", &ninas)], &[])
        .await;
    assert_eq!(early.status, StatusCode::FORBIDDEN, "{}", early.body);
    assert!(tenancy(&s).context(nina, acme).await.is_err());

    s.demo.directory.set_email_confirmed(nina, true);
    let open = s.get(nina, "/join").await;
    assert!(open.body.contains("Join Acme"), "{}", open.body);
    assert!(open.body.contains("example.com"), "{}", open.body);
    let bad = s
        .post(nina, &format!("/join/{acme}"), &[("csrf", "garbage")], &[])
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    assert!(bad.body.contains(BAD_TOKEN), "{}", bad.body);
    assert!(tenancy(&s).context(nina, acme).await.is_err());

    let joined = s
        .post(
            nina,
            &format!("/join/{acme}"),
            &[("csrf", &open.csrf())],
            &[],
        )
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    assert_eq!(
        joined.headers["location"],
        format!("/console/orgs/{acme}/usage")
    );
    assert_eq!(
        tenancy(&s).context(nina, acme).await.unwrap().role(),
        Role::Viewer
    );
    let after = s.get(nina, "/join").await;
    assert!(!after.body.contains("Join Acme"), "{}", after.body);

    // Erin, confirmed but at initech.example, cannot join by posting.
    s.demo.directory.set_email_confirmed(erin, true);
    let erins = s
        .get(erin, &format!("/orgs/{}/members", s.demo.initech))
        .await
        .csrf();
    let forged = s
        .post(erin, &format!("/join/{acme}"), &[("csrf", &erins)], &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert!(tenancy(&s).context(erin, acme).await.is_err());
}

/// Every form of this area, posted by the user who could use it, is
/// refused without a valid token, and changes nothing.
#[tokio::test]
async fn every_domain_form_refuses_a_bad_token() {
    let s = site().await;
    let (acme, alice, olivia, nina) = (s.demo.acme, s.demo.alice, s.demo.olivia, s.demo.nina);
    open_domain(&s, acme, "example.com", AutoJoin::Off).await;
    s.demo.directory.set_email_confirmed(nina, true);
    let before = acme_domains(&s).await;
    let posts: [(UserId, String); 5] = [
        (olivia, format!("/operator/orgs/{acme}/domains/add")),
        (olivia, format!("/operator/orgs/{acme}/domains/enabled")),
        (olivia, format!("/operator/orgs/{acme}/domains/remove")),
        (alice, format!("/orgs/{acme}/domains/auto-join")),
        (nina, format!("/join/{acme}")),
    ];
    let routes = tenancy::console::post_routes();
    for (user, path) in &posts {
        assert!(
            routes
                .iter()
                .any(|r| { r.replace("{org}", &acme.to_string()) == *path }),
            "{path} is a form route of the router"
        );
        for token in [None, Some(""), Some("garbage")] {
            let mut form = vec![
                ("domain", "example.com"),
                ("enabled", "false"),
                ("auto_join", "member"),
            ];
            if let Some(token) = token {
                form.push(("csrf", token));
            }
            let page = s.post(*user, path, &form, &[]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {token:?}");
            assert!(page.body.contains(BAD_TOKEN), "{path}: {}", page.body);
        }
    }
    assert_eq!(acme_domains(&s).await, before, "nothing changed");
    assert!(tenancy(&s).context(nina, acme).await.is_err());
}

/// Another organization's owner cannot change Acme's join setting by
/// naming Acme's domain in a post to her own organization (the domain is a
/// form field, not part of the path), nor by posting to Acme's.
#[tokio::test]
async fn another_orgs_owner_cannot_open_acmes_domain() {
    let s = site().await;
    let (acme, globex, carol) = (s.demo.acme, s.demo.globex, s.demo.carol);
    open_domain(&s, acme, "acme.example", AutoJoin::Off).await;
    let csrf = s
        .get(carol, &format!("/orgs/{globex}/domains"))
        .await
        .csrf();
    let fields = [
        ("csrf", csrf.as_str()),
        ("domain", "acme.example"),
        ("auto_join", "member"),
    ];
    let own = s
        .post(
            carol,
            &format!("/orgs/{globex}/domains/auto-join"),
            &fields,
            &[],
        )
        .await;
    assert_eq!(own.status, StatusCode::NOT_FOUND, "{}", own.body);
    let acmes = s
        .post(
            carol,
            &format!("/orgs/{acme}/domains/auto-join"),
            &fields,
            &[],
        )
        .await;
    assert_eq!(acmes.status, StatusCode::FORBIDDEN, "{}", acmes.body);
    assert_eq!(
        acme_domains(&s).await,
        [("acme.example".to_owned(), true, AutoJoin::Off)]
    );
}
