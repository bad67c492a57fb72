//! The console's security over real HTTP: the permission matrix on the
//! server, CSRF, escaping, isolation between organizations, and the
//! headers every page carries.

use std::time::Duration;

use reqwest::StatusCode;
use tenancy::{NewOrganization, OrgId, PlatformOperator, Role, UserId};

use super::{Page, site};

/// The console's Content-Security-Policy, exactly: no script source at all.
const POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The last eight hex digits of a user id, as the members table shows it.
fn short_id(user: UserId) -> String {
    let simple = user.as_uuid().simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

/// `user`'s role in `org`.
async fn role_of(s: &super::Site, user: UserId, org: OrgId) -> Role {
    s.demo
        .app
        .auth
        .tenancy()
        .context(user, org)
        .await
        .unwrap()
        .role()
}

#[tokio::test]
async fn a_viewer_sees_usage_but_no_member_controls_and_a_forged_post_is_refused() {
    let s = site().await;
    let (acme, dan, bob) = (s.demo.acme, s.demo.dan, s.demo.bob);
    let usage = s.get(dan, &format!("/orgs/{acme}/usage")).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    assert!(usage.body.contains("monthly"), "{}", usage.body);
    let members = s.get(dan, &format!("/orgs/{acme}/members")).await;
    assert_eq!(members.status, StatusCode::OK);
    assert!(!members.body.contains("Change role"), "{}", members.body);
    assert!(!members.body.contains("Remove "), "{}", members.body);
    assert!(members.body.contains("Leave Acme"), "a viewer may leave");
    // With the viewer's own valid token, the server still says no.
    let csrf = members.csrf();
    let path = format!("/orgs/{acme}/members/{bob}/role");
    let forged = s
        .post(dan, &path, &[("csrf", &csrf), ("role", "viewer")], &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let removal = s
        .post(
            dan,
            &format!("/orgs/{acme}/members/{bob}/remove"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(removal.status, StatusCode::FORBIDDEN);
    let tenancy = s.demo.app.auth.tenancy();
    let ctx = tenancy.context(bob, acme).await.unwrap();
    assert_eq!(ctx.role(), Role::Member, "bob's role is unchanged");
}

/// A member leaves its organization and lands on the start page; a user
/// who is not a member of it cannot leave it, even with a valid form token
/// of its own.
#[tokio::test]
async fn a_member_leaves_and_a_stranger_cannot_leave_for_it() {
    let s = site().await;
    let (acme, dan, carol) = (s.demo.acme, s.demo.dan, s.demo.carol);
    let initech = s.demo.initech;
    let carols = s
        .get(carol, &format!("/orgs/{initech}/members"))
        .await
        .csrf();
    let stranger = s
        .post(
            carol,
            &format!("/orgs/{acme}/leave"),
            &[("csrf", &carols)],
            &[],
        )
        .await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN, "{}", stranger.body);
    let dans = s.get(dan, &format!("/orgs/{acme}/members")).await.csrf();
    let left = s
        .post(dan, &format!("/orgs/{acme}/leave"), &[("csrf", &dans)], &[])
        .await;
    assert_eq!(left.status, StatusCode::SEE_OTHER, "{}", left.body);
    assert_eq!(left.headers["location"], "/console");
    let start = s.get(dan, "").await;
    assert_eq!(
        start.status,
        StatusCode::OK,
        "the start page is where it sent him"
    );
    let tenancy = s.demo.app.auth.tenancy();
    assert!(tenancy.context(dan, acme).await.is_err(), "dan is gone");
    assert!(tenancy.context(s.demo.alice, acme).await.is_ok());
}

#[tokio::test]
async fn only_the_operator_opens_operator_pages() {
    let s = site().await;
    let acme = s.demo.acme;
    for user in [s.demo.bob, s.demo.alice, s.demo.carol] {
        for path in [
            "/operator".to_owned(),
            "/operator/orgs".to_owned(),
            format!("/operator/orgs/{acme}"),
        ] {
            let page = s.get(user, &path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        }
    }
    // Not even with a valid form token of their own.
    let csrf = s
        .get(s.demo.alice, &format!("/orgs/{acme}/members"))
        .await
        .csrf();
    let toggle = format!("/operator/orgs/{acme}/features/exports/toggle");
    let post = s
        .post(
            s.demo.alice,
            &toggle,
            &[("csrf", &csrf), ("enabled", "true")],
            &[],
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    let overview = s.get(s.demo.olivia, "/operator").await;
    assert_eq!(
        overview.status,
        StatusCode::OK,
        "the operator's positive control"
    );
    assert!(overview.body.contains("Initech"), "{}", overview.body);
}

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing() {
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let path = format!("/orgs/{acme}/members/{bob}/role");
    let someone_elses = s.get(dan, &format!("/orgs/{acme}/members")).await.csrf();
    let mine = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let (expiry, tag) = mine.split_once('.').unwrap();
    let tampered = format!("{}.{tag}", expiry.parse::<i64>().unwrap() + 1);
    for form in [
        vec![("role", "admin")],
        vec![("role", "admin"), ("csrf", "")],
        vec![("role", "admin"), ("csrf", "garbage")],
        vec![("role", "admin"), ("csrf", someone_elses.as_str())],
        vec![("role", "admin"), ("csrf", tampered.as_str())],
    ] {
        let page = s.post(alice, &path, &form, &[]).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{form:?}: {}",
            page.body
        );
    }
    // A form with no fields at all, and no form: refused before decoding
    // anything, and still with the console's headers.
    let empty = s.post(alice, &path, &[], &[]).await;
    assert_eq!(empty.status, StatusCode::FORBIDDEN);
    let json = s
        .http
        .post(format!("{}/console{path}", s.base))
        .header("cookie", super::Site::cookie(alice))
        .json(&serde_json::json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(json.headers().contains_key("content-security-policy"));
    let get = s.get(alice, &path).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers["x-frame-options"], "DENY");
    let tenancy = s.demo.app.auth.tenancy();
    assert_eq!(
        tenancy.context(bob, acme).await.unwrap().role(),
        Role::Member
    );
    // The positive control: her own token works.
    let done = s
        .post(alice, &path, &[("role", "admin"), ("csrf", &mine)], &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        tenancy.context(bob, acme).await.unwrap().role(),
        Role::Admin
    );
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let s = site().await;
    let (acme, alice, bob) = (s.demo.acme, s.demo.alice, s.demo.bob);
    let csrf = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let path = format!("/orgs/{acme}/members/{bob}/role");
    let form = [("role", "viewer"), ("csrf", csrf.as_str())];
    for headers in [
        [("origin", "https://evil.example")],
        [("sec-fetch-site", "cross-site")],
    ] {
        let page = s.post(alice, &path, &form, &headers).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    let tenancy = s.demo.app.auth.tenancy();
    assert_eq!(
        tenancy.context(bob, acme).await.unwrap().role(),
        Role::Member
    );
}

#[tokio::test]
async fn an_org_named_like_a_script_renders_inert() {
    let s = site().await;
    let tenancy = s.demo.app.auth.tenancy();
    let evil = NewOrganization::new("<script>alert(1)</script>", "evil-org").unwrap();
    let org = tenancy
        .create_organization(s.demo.alice, evil)
        .await
        .unwrap()
        .id;
    for path in [
        "".to_owned(),
        format!("/orgs/{org}/usage"),
        format!("/orgs/{org}/members"),
        "/fragments/org-selector".to_owned(),
    ] {
        let page = s.get(s.demo.alice, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<script"), "{path}: {}", page.body);
        assert!(
            shows_escaped(&page.body, "<script>alert(1)</script>"),
            "{path}: {}",
            page.body
        );
    }
    let page = s
        .get(
            s.demo.olivia,
            &format!("/operator/orgs?q={}", "%3Cscript%3E"),
        )
        .await;
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(
        shows_escaped(&page.body, "<script>"),
        "the search term and the name, escaped"
    );
}

/// Whether `body` shows `text` with its angle brackets escaped, as a named
/// or a numeric character reference.
fn shows_escaped(body: &str, text: &str) -> bool {
    let named = text.replace('<', "&lt;").replace('>', "&gt;");
    let numeric = text.replace('<', "&#60;").replace('>', "&#62;");
    body.contains(&named) || body.contains(&numeric)
}

#[tokio::test]
async fn another_orgs_pages_cannot_be_opened_by_editing_the_url() {
    let s = site().await;
    let (acme, carol, alice) = (s.demo.acme, s.demo.carol, s.demo.alice);
    // What only Acme's pages show: the people in it, its limit of 10 000
    // tokens. The owner's view of the same pages is the positive control.
    for (path, only_acme) in [
        (format!("/orgs/{acme}/usage"), "10,000 tokens"),
        (format!("/orgs/{acme}/members"), "Bob Baker"),
    ] {
        let owners = s.get(alice, &path).await;
        assert_eq!(owners.status, StatusCode::OK, "{path}");
        assert!(owners.body.contains(only_acme), "{path}: {}", owners.body);
        let page = s.get(carol, &path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            page.body.contains("not a member of this organization"),
            "{path}: {}",
            page.body
        );
        assert!(
            !page.body.contains(only_acme) && !page.body.contains("People in Acme"),
            "nothing of Acme is shown: {}",
            page.body
        );
    }
    // With a form token of her own, still nothing happens in Acme.
    let csrf = s
        .get(carol, &format!("/orgs/{}/members", s.demo.initech))
        .await
        .csrf();
    let path = format!("/orgs/{acme}/members/{alice}/remove");
    let page = s.post(carol, &path, &[("csrf", &csrf)], &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let tenancy = s.demo.app.auth.tenancy();
    assert!(tenancy.context(alice, acme).await.is_ok());
    let bogus = s.get(carol, "/orgs/not-an-id/usage").await;
    assert_eq!(bogus.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_page_carries_a_strict_policy_and_no_token() {
    let s = site().await;
    let token = super::host_app::sign_token(s.demo.carol);
    let initech = s.demo.initech;
    for path in [
        "".to_owned(),
        format!("/orgs/{initech}/usage"),
        format!("/orgs/{initech}/members"),
    ] {
        let page = s.get(s.demo.carol, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(page.headers["content-security-policy"], POLICY, "{path}");
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
        assert_eq!(page.headers["referrer-policy"], "same-origin");
        assert_eq!(page.headers["cache-control"], "no-store");
        assert!(!page.body.contains("<script"), "{path}");
        // No token, nor any part of one, in the page.
        let signature = token.rsplit('.').next().unwrap();
        assert!(!page.body.contains(signature), "{path}");
    }
    let unsigned = s
        .http
        .get(format!("{}/console", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // The host's redirect from the trailing-slash form of the mount point.
    let slash = s
        .http
        .get(format!("{}/console/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(slash.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(slash.headers()["location"], "/console");
}

#[tokio::test]
async fn the_operator_changes_features_and_limits_and_bad_json_is_explained() {
    let s = site().await;
    let (olivia, org) = (s.demo.olivia, s.demo.initech);
    let page = s.get(olivia, &format!("/operator/orgs/{org}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    let at = |path: &str| format!("/operator/orgs/{org}{path}");
    let added = s
        .post(
            olivia,
            &at("/features"),
            &[("csrf", &csrf), ("key", "exports")],
            &[],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let bad = s
        .post(
            olivia,
            &at("/features/exports/config"),
            &[("csrf", &csrf), ("config", "{\"max\": ")],
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not JSON"), "{}", bad.body);
    let good = s
        .post(
            olivia,
            &at("/features/exports/config"),
            &[("csrf", &csrf), ("config", "{\"max\": 3}")],
            &[],
        )
        .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.body);
    let limit = [
        ("csrf", csrf.as_str()),
        ("limit_type", "daily_tokens"),
        ("value", "500"),
        ("mode", "soft"),
        ("user", ""),
    ];
    assert_eq!(
        s.post(olivia, &at("/limits"), &limit, &[]).await.status,
        StatusCode::SEE_OTHER
    );
    let tenancy = s.demo.app.auth.tenancy();
    let ctx = tenancy.context(s.demo.carol, org).await.unwrap();
    let config: Option<serde_json::Value> = tenancy.feature_config(&ctx, "exports").await.unwrap();
    assert_eq!(config, Some(serde_json::json!({"max": 3})));
    let limits = tenancy.limits(&ctx).await.unwrap();
    assert!(
        limits
            .iter()
            .any(|l| l.metric.as_str() == "tokens" && l.value == 500.into())
    );
    let refused = [
        ("csrf", csrf.as_str()),
        ("limit_type", "weekly_tokens"),
        ("value", "1"),
        ("mode", "hard"),
        ("user", ""),
    ];
    let page = s.post(olivia, &at("/limits"), &refused, &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("limit_type"), "{}", page.body);
}

#[tokio::test]
async fn the_selector_fragment_lists_the_users_orgs_and_marks_the_current_one() {
    let s = site().await;
    let page = s
        .get(
            s.demo.alice,
            &format!("/fragments/org-selector?current={}", s.demo.acme),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.starts_with("<nav class=\"org-selector\""),
        "{}",
        page.body
    );
    for name in ["Acme", "Globex", "Initech"] {
        assert!(page.body.contains(name), "{name}");
    }
    assert_eq!(page.body.matches("aria-current=\"true\"").count(), 1);
    let html =
        tenancy::console::org_selector(s.demo.app.auth.tenancy(), s.demo.dan, "/console", None)
            .await
            .unwrap();
    assert!(html.contains("Acme") && !html.contains("Initech"), "{html}");
}

#[tokio::test]
async fn a_form_token_expires_after_twelve_hours_by_the_facades_clock() {
    let s = site().await;
    let (acme, alice, bob) = (s.demo.acme, s.demo.alice, s.demo.bob);
    let path = format!("/orgs/{acme}/members/{bob}/role");
    let members = format!("/orgs/{acme}/members");
    let old = s.get(alice, &members).await.csrf();
    s.clock.advance(Duration::from_secs(12 * 3600 - 60));
    let fresh_enough = s
        .post(alice, &path, &[("role", "admin"), ("csrf", &old)], &[])
        .await;
    assert_eq!(fresh_enough.status, StatusCode::SEE_OTHER, "a minute left");
    assert_eq!(role_of(&s, bob, acme).await, Role::Admin);
    s.clock.advance(Duration::from_secs(61));
    let expired = s
        .post(alice, &path, &[("role", "viewer"), ("csrf", &old)], &[])
        .await;
    assert_eq!(expired.status, StatusCode::FORBIDDEN, "{}", expired.body);
    assert!(expired.body.contains("has expired"), "{}", expired.body);
    assert_eq!(role_of(&s, bob, acme).await, Role::Admin, "unchanged");
    // A page opened now carries a token valid from now.
    let renewed = s.get(alice, &members).await.csrf();
    assert_ne!(renewed, old);
    let done = s
        .post(alice, &path, &[("role", "viewer"), ("csrf", &renewed)], &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(role_of(&s, bob, acme).await, Role::Viewer);
}

#[tokio::test]
async fn redirects_the_stylesheet_and_errors_carry_the_headers_once() {
    let s = site().await;
    let (acme, alice, bob) = (s.demo.acme, s.demo.alice, s.demo.bob);
    let members = s.get(alice, &format!("/orgs/{acme}/members")).await;
    let marker = "rel=\"stylesheet\" href=\"";
    let start = members.body.find(marker).expect("a stylesheet link") + marker.len();
    let end = members.body[start..].find('"').unwrap() + start;
    let href = &members.body[start..end];
    let css = s
        .http
        .get(format!("{}{href}", s.base))
        .send()
        .await
        .unwrap();
    let css = super::Site::read(css).await;
    assert_eq!(css.status, StatusCode::OK, "{href}");
    assert_eq!(
        css.headers["cache-control"], "public, max-age=31536000, immutable",
        "the stylesheet keeps its own caching"
    );
    let redirect = s
        .post(
            alice,
            &format!("/orgs/{acme}/members/{bob}/role"),
            &[("role", "admin"), ("csrf", &members.csrf())],
            &[],
        )
        .await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER, "{}", redirect.body);
    let missing = s.get(alice, "/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for (what, page) in [("css", &css), ("303", &redirect), ("404", &missing)] {
        assert_headers_once(what, page);
    }
    assert_eq!(redirect.headers["cache-control"], "no-store");
    assert_eq!(missing.headers["cache-control"], "no-store");
}

/// Each security header, exactly once, with the console's value.
fn assert_headers_once(what: &str, page: &Page) {
    for (name, value) in [
        ("content-security-policy", POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        let values: Vec<_> = page.headers.get_all(name).iter().collect();
        assert_eq!(values, [value], "{what}: {name}");
    }
    assert_eq!(
        page.headers.get_all("cache-control").iter().count(),
        1,
        "{what}"
    );
}

#[tokio::test]
async fn a_non_operators_posts_to_operator_forms_are_refused_and_change_nothing() {
    let s = site().await;
    let (acme, alice) = (s.demo.acme, s.demo.alice);
    let tenancy = s.demo.app.auth.tenancy();
    let identity = PlatformOperator::new("test");
    let operator = tenancy.operator(&identity);
    let limit = operator.limits(acme).await.unwrap();
    let limit_id = limit.first().expect("Acme's token limit").id;
    let features = operator.features(acme).await.unwrap();
    // Alice owns Acme and has a valid form token of her own.
    let csrf = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    let at = |path: &str| format!("/operator/orgs/{acme}{path}");
    let posts = [
        (at("/features"), vec![("key", "exports")]),
        (
            at("/features/veo_avatars/config"),
            vec![("config", "{\"max\": 1}")],
        ),
        (
            at("/limits"),
            vec![
                ("limit_type", "monthly_tokens"),
                ("value", "99999999"),
                ("mode", "soft"),
                ("user", ""),
            ],
        ),
        (at(&format!("/limits/{limit_id}/remove")), vec![]),
    ];
    for (path, mut form) in posts {
        form.push(("csrf", &csrf));
        let page = s.post(alice, &path, &form, &[]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(
            page.body.contains("for the platform operator"),
            "{path}: {}",
            page.body
        );
    }
    assert_eq!(operator.limits(acme).await.unwrap(), limit);
    assert_eq!(operator.features(acme).await.unwrap(), features);
}

/// What the console says when a form's token is refused, and when a form
/// comes from another site.
const BAD_TOKEN: &str = "did not come from this console";
const CROSS_SITE: &str = "Forms are accepted only from this console";

/// The route (as the router declares it, `/orgs/{org}/leave`) that the
/// console path `path` (`/orgs/0192…/leave`) is an instance of, if any.
fn route_of<'a>(routes: &[&'a str], path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.split('/').collect();
    routes.iter().copied().find(|route| {
        let pattern: Vec<&str> = route.split('/').collect();
        pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}')))
    })
}

/// The actions of the `method="post"` forms on a page, without the mount
/// point.
fn post_actions(body: &str) -> Vec<String> {
    body.split("<form")
        .skip(1)
        .filter_map(|form| {
            let tag = &form[..form.find('>')?];
            if !tag.contains("method=\"post\"") {
                return None;
            }
            let start = tag.find("action=\"")? + "action=\"".len();
            let action = &tag[start..start + tag[start..].find('"')?];
            Some(action.strip_prefix("/console")?.to_owned())
        })
        .collect()
}

/// Every route that takes a form, as the console's router declares them
/// (not a list of this test's), refuses a post whose token is missing,
/// empty, garbage, tampered with, expired, another user's or given twice,
/// or that comes from another site, from a user who could otherwise make
/// the change; nothing changes. With the poster's own token, the same post
/// passes the check. The forms the pages render, to owner, viewer,
/// operator and a user in no organization, are exactly those routes.
#[tokio::test]
async fn every_form_refuses_a_bad_token_and_changes_nothing() {
    let s = site().await;
    let (acme, alice, bob, dan, nina, olivia) = (
        s.demo.acme,
        s.demo.alice,
        s.demo.bob,
        s.demo.dan,
        s.demo.nina,
        s.demo.olivia,
    );
    let routes = tenancy::console::post_routes();
    assert!(routes.len() >= 11, "{routes:?}");
    let tenancy = s.demo.app.auth.tenancy();
    let identity = PlatformOperator::new("test");
    let operator = tenancy.operator(&identity);
    let limit_id = operator.limits(acme).await.unwrap()[0].id;

    // Data for the domain pages' forms: Acme has a verified domain, and
    // Nina's confirmed email is at a domain open to Initech's viewers, so
    // `/join` offers her Initech.
    operator
        .add_domain(acme, "acme.example", false)
        .await
        .unwrap();
    operator
        .add_domain(s.demo.initech, "example.com", false)
        .await
        .unwrap();
    let carol_initech = tenancy.context(s.demo.carol, s.demo.initech).await.unwrap();
    tenancy
        .set_domain_auto_join(
            &carol_initech,
            "example.com",
            tenancy::model::domain::AutoJoin::Viewer,
        )
        .await
        .unwrap();
    s.demo.directory.set_email_confirmed(nina, true);

    // The pages' forms and the router's routes are the same set.
    let pages = [
        (alice, format!("/orgs/{acme}/members")),
        (dan, format!("/orgs/{acme}/members")),
        (olivia, format!("/operator/orgs/{acme}")),
        (nina, String::new()),
        (olivia, format!("/operator/orgs/{acme}/domains")),
        (olivia, "/operator/plans".to_owned()),
        (alice, format!("/orgs/{acme}/domains")),
        (nina, "/join".to_owned()),
    ];
    let mut rendered = Vec::new();
    for (user, path) in &pages {
        let page = s.get(*user, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        for action in post_actions(&page.body) {
            let route = route_of(&routes, &action)
                .unwrap_or_else(|| panic!("{action} (on {path}) is no form route"));
            rendered.push(route);
        }
    }
    for route in &routes {
        assert!(rendered.contains(route), "no page renders {route}");
    }

    // Who could make each change, and where.
    let poster = |route: &str| match route {
        "/orgs" => nina,
        _ if route.starts_with("/operator/") => olivia,
        _ => alice,
    };
    let fill = |route: &str| {
        let path = route
            .replace("{org}", &acme.to_string())
            .replace("{user}", &bob.to_string())
            .replace("{key}", "veo_avatars")
            .replace("{id}", &limit_id.to_string());
        assert!(!path.contains('{'), "a placeholder to fill: {route}");
        path
    };
    // One set of fields that would change something through any form
    // (a form ignores the fields it does not have).
    let bob_id = bob.to_string();
    let fields = [
        ("role", "admin"),
        ("user", bob_id.as_str()),
        ("key", "exports"),
        ("enabled", "false"),
        ("config", "{\"max\": 1}"),
        ("limit_type", "monthly_tokens"),
        ("value", "1"),
        ("mode", "soft"),
        ("name", "Nina's"),
        ("slug", "ninas"),
        ("timezone", "UTC"),
    ];
    let state = async || {
        let mut members: Vec<_> = operator
            .members(acme)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        members.sort();
        (
            members,
            operator.features(acme).await.unwrap(),
            operator.limits(acme).await.unwrap(),
            tenancy.orgs_for_user(nina).await.unwrap().len(),
        )
    };
    let before = state().await;

    // A user's token, from the start page (every page's sidebar has a
    // form): the positive control below may take a user out of Acme.
    let token = async |user: UserId| {
        let path = match user {
            u if u == olivia => format!("/operator/orgs/{acme}"),
            _ => String::new(),
        };
        s.get(user, &path).await.csrf()
    };
    let mut expired = Vec::new();
    for user in [alice, olivia, nina] {
        expired.push((user, token(user).await));
    }
    s.clock.advance(Duration::from_secs(12 * 3600 + 60));
    let dans = token(dan).await;

    for route in &routes {
        let (user, path) = (poster(route), fill(route));
        let mine = token(user).await;
        let old = &expired.iter().find(|(u, _)| *u == user).unwrap().1;
        let (expiry, tag) = mine.split_once('.').unwrap();
        let tampered = format!("{}.{tag}", expiry.parse::<i64>().unwrap() + 1);
        let bad: [&[&str]; 7] = [
            &[],
            &[""],
            &["garbage"],
            &[&tampered],
            &[old.as_str()],
            &[&dans],
            &[&mine, &mine],
        ];
        for tokens in bad {
            let mut form = fields.to_vec();
            form.extend(tokens.iter().map(|t| ("csrf", *t)));
            let page = s.post(user, &path, &form, &[]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {tokens:?}");
            assert!(page.body.contains(BAD_TOKEN), "{path}: {}", page.body);
        }
        for header in [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ] {
            let mut form = fields.to_vec();
            form.push(("csrf", &mine));
            let page = s.post(user, &path, &form, &[header]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {header:?}");
            assert!(page.body.contains(CROSS_SITE), "{path}: {}", page.body);
        }
    }
    assert_eq!(state().await, before, "nothing changed");

    // Positive control: with the poster's own token, every post passes
    // the check (what it then does is the role rules' business: handing
    // ownership away first leaves Alice unable to remove the new owner).
    for route in &routes {
        let (user, path) = (poster(route), fill(route));
        let mut form = fields.to_vec();
        let mine = token(user).await;
        form.push(("csrf", &mine));
        let page = s.post(user, &path, &form, &[]).await;
        assert!(
            !page.body.contains(BAD_TOKEN) && !page.body.contains(CROSS_SITE),
            "{path}: {} {}",
            page.status,
            page.body
        );
    }
    let after = state().await;
    assert_ne!(after.0, before.0, "the members changed");
    assert_ne!(after.1, before.1, "the features changed");
    assert_ne!(after.2, before.2, "the limits changed");
    assert_eq!(after.3, 1, "Nina created her organization");
}

#[tokio::test]
async fn the_operator_removes_a_limit_once() {
    let s = site().await;
    let (olivia, initech) = (s.demo.olivia, s.demo.initech);
    let tenancy = s.demo.app.auth.tenancy();
    let identity = PlatformOperator::new("test");
    let operator = tenancy.operator(&identity);
    let images = operator
        .limits(initech)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.metric.as_str() == "images")
        .expect("Initech's image limit");
    let page = s.get(olivia, &format!("/operator/orgs/{initech}")).await;
    let remove = format!("/operator/orgs/{initech}/limits/{}/remove", images.id);
    assert!(page.body.contains(&remove), "{}", page.body);
    let csrf = page.csrf();
    let done = s.post(olivia, &remove, &[("csrf", &csrf)], &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.headers["location"],
        format!("/console/operator/orgs/{initech}?done=limit-removed")
    );
    let left = operator.limits(initech).await.unwrap();
    assert!(left.iter().all(|l| l.id != images.id), "{left:?}");
    assert_eq!(left.len(), 1, "the token limit stays: {left:?}");
    let again = s.post(olivia, &remove, &[("csrf", &csrf)], &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
}

#[tokio::test]
async fn nobody_changes_a_role_in_an_org_through_another_org_they_manage() {
    let s = site().await;
    let (acme, globex, initech) = (s.demo.acme, s.demo.globex, s.demo.initech);
    let (alice, bob, carol) = (s.demo.alice, s.demo.bob, s.demo.carol);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    tenancy.change_role(&owner, bob, Role::Admin).await.unwrap();
    // Alice owns Acme and is a viewer in Globex and Initech; Bob is an
    // admin of Acme and in nothing else; neither may touch Carol, who owns
    // Globex and Initech. Through Acme, Carol is no member (404); through
    // her own organizations, they are not allowed (403).
    for (user, org, status) in [
        (alice, acme, StatusCode::NOT_FOUND),
        (bob, acme, StatusCode::NOT_FOUND),
        (alice, initech, StatusCode::FORBIDDEN),
        (alice, globex, StatusCode::FORBIDDEN),
        (bob, initech, StatusCode::FORBIDDEN),
    ] {
        let csrf = s.get(user, &format!("/orgs/{acme}/members")).await.csrf();
        for (action, form) in [
            ("role", vec![("role", "viewer"), ("csrf", csrf.as_str())]),
            ("remove", vec![("csrf", csrf.as_str())]),
        ] {
            let path = format!("/orgs/{org}/members/{carol}/{action}");
            let page = s.post(user, &path, &form, &[]).await;
            assert_eq!(page.status, status, "{path}: {}", page.body);
        }
    }
    assert_eq!(role_of(&s, carol, initech).await, Role::Owner);
    assert_eq!(role_of(&s, carol, globex).await, Role::Owner);
    assert!(
        tenancy.context(carol, acme).await.is_err(),
        "not added to Acme"
    );
}

#[tokio::test]
async fn an_admin_cannot_forge_a_promotion_to_owner_or_admin() {
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    tenancy.change_role(&owner, bob, Role::Admin).await.unwrap();
    let members = s.get(bob, &format!("/orgs/{acme}/members")).await;
    assert_eq!(members.status, StatusCode::OK);
    assert!(
        members.body.contains("Change role"),
        "an admin manages viewers"
    );
    assert!(
        !members.body.contains("<option value=\"owner\">"),
        "owner is never offered to an admin: {}",
        members.body
    );
    let csrf = members.csrf();
    for (target, role) in [
        (dan, "owner"),
        (bob, "owner"),
        (dan, "admin"),
        (alice, "viewer"),
    ] {
        let path = format!("/orgs/{acme}/members/{target}/role");
        let page = s
            .post(bob, &path, &[("role", role), ("csrf", &csrf)], &[])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{role}: {}", page.body);
    }
    assert_eq!(role_of(&s, dan, acme).await, Role::Viewer);
    assert_eq!(role_of(&s, bob, acme).await, Role::Admin);
    assert_eq!(role_of(&s, alice, acme).await, Role::Owner);
    // The positive control: what an admin may do.
    let page = s
        .post(
            bob,
            &format!("/orgs/{acme}/members/{dan}/role"),
            &[("role", "member"), ("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(role_of(&s, dan, acme).await, Role::Member);
}

#[tokio::test]
async fn the_top_members_are_rendered_for_owners_only_not_hidden() {
    let s = site().await;
    let (initech, carol, erin, alice) = (s.demo.initech, s.demo.carol, s.demo.erin, s.demo.alice);
    let path = format!("/orgs/{initech}/usage");
    let owners = s.get(carol, &path).await;
    assert_eq!(owners.status, StatusCode::OK);
    assert!(owners.body.contains("Top members this month"));
    // By name and email, never a bare id.
    assert!(
        owners.body.contains("Erin Endo") && owners.body.contains("erin@initech.example"),
        "{}",
        owners.body
    );
    assert!(!owners.body.contains(&short_id(erin)), "{}", owners.body);
    // A viewer and a member get the page without the section: not in the
    // HTML at all, so no stylesheet or inspector shows it.
    for user in [alice, erin] {
        let page = s.get(user, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("monthly"), "{}", page.body);
        assert!(!page.body.contains("Top members"), "{}", page.body);
        assert!(!page.body.contains("top-heading"), "{}", page.body);
        assert!(!page.body.contains(&short_id(carol)), "{}", page.body);
        assert!(!page.body.contains("Carol Chen"), "{}", page.body);
    }
}

#[tokio::test]
async fn a_members_joined_date_is_the_organizations_day() {
    let s = site().await;
    let (initech, carol) = (s.demo.initech, s.demo.carol);
    let tenancy = s.demo.app.auth.tenancy();
    // 20:00 UTC on the 24th is 05:00 on the 25th in Tokyo.
    s.clock
        .set("2026-11-24T20:00:00Z".parse().expect("an RFC 3339 instant"));
    let newcomer = UserId::new_v7();
    let owner = tenancy.context(carol, initech).await.unwrap();
    tenancy
        .add_member(&owner, newcomer, Role::Member)
        .await
        .unwrap();
    let page = s.get(carol, &format!("/orgs/{initech}/members")).await;
    assert!(page.body.contains("Joined (Asia/Tokyo)"), "{}", page.body);
    let row = page
        .body
        .split("<tr>")
        .find(|row| row.contains(&short_id(newcomer)))
        .expect("the newcomer's row");
    assert!(row.contains("2026-11-25"), "{row}");
    // Unknown to the directory: the short id stands in for a name.
    assert!(
        row.contains(&format!("<code>{}</code>", short_id(newcomer))),
        "{row}"
    );
}

/// Members are shown by name and email, escaped like everything else; a
/// member without a name by email; the remove button names them too.
#[tokio::test]
async fn members_are_shown_by_name_and_email_escaped() {
    let s = site().await;
    let (acme, alice, dan) = (s.demo.acme, s.demo.alice, s.demo.dan);
    let tenancy = s.demo.app.auth.tenancy();
    let newcomer = UserId::new_v7();
    s.demo.directory.insert(
        newcomer,
        Some("eve@example.com"),
        Some("<script>alert(1)</script> Eve & Co"),
    );
    let owner = tenancy.context(alice, acme).await.unwrap();
    tenancy
        .add_member(&owner, newcomer, Role::Viewer)
        .await
        .unwrap();
    let page = s.get(alice, &format!("/orgs/{acme}/members")).await;
    assert_eq!(page.status, StatusCode::OK);
    let row_of = |user: UserId| {
        page.body
            .split("<tr>")
            .find(|row| row.contains(&format!("/members/{user}/")))
            .unwrap_or_else(|| panic!("{user}'s row: {}", page.body))
    };
    let bob = row_of(s.demo.bob);
    assert!(bob.contains("<strong>Bob Baker</strong>"), "{bob}");
    assert!(bob.contains("bob@acme.example"), "{bob}");
    assert!(bob.contains("Remove Bob Baker"), "{bob}");
    assert!(!bob.contains("<code>"), "no bare id beside a name: {bob}");
    let dans = row_of(dan);
    assert!(dans.contains("dan@acme.example"), "{dans}");
    assert!(dans.contains("Remove dan@acme.example"), "{dans}");
    let eve = row_of(newcomer);
    assert!(
        eve.contains("&#60;script&#62;alert(1)&#60;/script&#62; Eve &#38; Co"),
        "escaped: {eve}"
    );
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
}

/// The console takes one user per request: two `Authorization` headers, or
/// a header and a session cookie of different users, are refused (400),
/// and nothing about either user is shown; the same user twice over a
/// header and the cookie, or the header alone, is served.
#[tokio::test]
async fn a_request_naming_two_users_is_refused() {
    let s = site().await;
    let (alice, bob) = (s.demo.alice, s.demo.bob);
    let bearer = |user| format!("Bearer {}", super::host_app::sign_token(user));
    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = s.http.get(format!("{}/console", s.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { super::Site::read(request.send().await.unwrap()).await }
    };

    let ok = get(vec![("authorization", bearer(alice))]).await;
    assert_eq!(ok.status, StatusCode::OK, "the header alone");
    assert!(ok.body.contains("Acme"), "her organizations: {}", ok.body);
    let ok = get(vec![
        ("authorization", bearer(alice)),
        ("cookie", super::Site::cookie(alice)),
    ])
    .await;
    assert_eq!(ok.status, StatusCode::OK, "one user, header and cookie");

    let refused = [
        vec![
            ("authorization", bearer(alice)),
            ("authorization", bearer(bob)),
        ],
        vec![
            ("authorization", bearer(alice)),
            ("authorization", bearer(alice)),
        ],
        vec![
            ("authorization", bearer(alice)),
            ("cookie", super::Site::cookie(bob)),
        ],
    ];
    for headers in refused {
        let page = get(headers).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(page.body.contains("more than one user"), "{}", page.body);
        assert!(
            !page.body.contains("Acme"),
            "nothing of either user's: {}",
            page.body
        );
    }
}
