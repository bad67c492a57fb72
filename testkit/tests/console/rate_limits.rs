//! Rate limits in the console over real HTTP: the operator sets, changes
//! and removes them on the organization's page (with a CSRF token, and
//! nobody else may); the usage page shows each member the limits that
//! apply to them, with the current window's use and when it frees, and
//! nothing of another organization's.

use reqwest::StatusCode;
use rust_decimal::Decimal;
use tenancy::PlatformOperator;
use tenancy::limits::rate::NewRateLimit;

use super::{Page, site};

/// Removes the demo's rate limits of `org` (Acme has one), so a test
/// starts from none.
async fn without_rate_limits(s: &super::Site, org: tenancy::OrgId) {
    let tenancy = s.demo.app.auth.tenancy();
    let operator = PlatformOperator::new("console-tests");
    let op = tenancy.operator(&operator);
    for state in op.rate_limits(org).await.unwrap() {
        op.remove_rate_limit(org, state.limit.id).await.unwrap();
    }
}

/// The rate-limit section of a page (up to the next section).
fn rates_section(page: &Page) -> &str {
    page.body
        .split("heading\">Rate limits</h2>")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_else(|| panic!("no rate-limit section:\n{}", page.body))
}

#[tokio::test]
async fn the_operator_sets_changes_and_removes_rate_limits() {
    let s = site().await;
    let (acme, olivia, alice) = (s.demo.acme, s.demo.olivia, s.demo.alice);
    without_rate_limits(&s, acme).await;
    let page = s.get(olivia, &format!("/operator/orgs/{acme}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        rates_section(&page).contains("No rate limits"),
        "{}",
        rates_section(&page)
    );
    let csrf = page.csrf();
    let path = format!("/operator/orgs/{acme}/rate-limits");

    // A window that is not one is shown back; nothing is set.
    let bad = s
        .post(
            olivia,
            &path,
            &[
                ("csrf", &csrf),
                ("limit_type", "daily_requests"),
                ("value", "5"),
                ("mode", "hard"),
            ],
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("second_, minute_ or hour_"),
        "{}",
        bad.body
    );
    let bad_burst = s
        .post(
            olivia,
            &path,
            &[
                ("csrf", &csrf),
                ("limit_type", "minute_requests"),
                ("value", "5"),
                ("burst", "0"),
                ("mode", "hard"),
            ],
            &[],
        )
        .await;
    assert_eq!(
        bad_burst.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_burst.body
    );
    assert!(bad_burst.body.contains("burst"), "{}", bad_burst.body);

    let done = s
        .post(
            olivia,
            &path,
            &[
                ("csrf", &csrf),
                ("limit_type", "minute_requests"),
                ("value", "2"),
                ("burst", ""),
                ("mode", "hard"),
                ("user", ""),
            ],
            &[],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let tenancy = s.demo.app.auth.tenancy();
    let operator = PlatformOperator::new("console-tests");
    let set = tenancy.operator(&operator).rate_limits(acme).await.unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(
        (set[0].limit.value, set[0].limit.burst),
        (Decimal::from(2), Decimal::from(2))
    );

    // Two requests use the whole burst: the page shows it in use, freeing later.
    let ctx = tenancy.context(alice, acme).await.unwrap();
    for _ in 0..2 {
        let held = tenancy.reserve(&ctx, "tokens", Decimal::ONE).await.unwrap();
        assert!(held.decision().allowed);
    }
    let page = s.get(olivia, &format!("/operator/orgs/{acme}")).await;
    let section = rates_section(&page);
    assert!(section.contains("minute_requests"), "{section}");
    assert!(section.contains("in 60.0 s"), "{section}");

    // Make it soft, through the row's own form; then remove it.
    let soft = s
        .post(
            olivia,
            &path,
            &[
                ("csrf", &csrf),
                ("limit_type", "minute_requests"),
                ("value", "2"),
                ("burst", "2"),
                ("mode", "soft"),
                ("user", ""),
            ],
            &[],
        )
        .await;
    assert_eq!(soft.status, StatusCode::SEE_OTHER, "{}", soft.body);
    let set = tenancy.operator(&operator).rate_limits(acme).await.unwrap();
    assert_eq!(set[0].limit.mode, tenancy::limits::LimitMode::Soft);
    let id = set[0].limit.id;
    let remove = format!("/operator/orgs/{acme}/rate-limits/{id}/remove");
    let other_org = format!("/operator/orgs/{}/rate-limits/{id}/remove", s.demo.globex);
    let wrong = s.post(olivia, &other_org, &[("csrf", &csrf)], &[]).await;
    assert_eq!(
        wrong.status,
        StatusCode::NOT_FOUND,
        "another organization's id"
    );
    let removed = s.post(olivia, &remove, &[("csrf", &csrf)], &[]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(
        tenancy
            .operator(&operator)
            .rate_limits(acme)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Only the operator, with a valid CSRF token: an org's owner and a bare
/// post are refused, and nothing is set.
#[tokio::test]
async fn only_the_operator_sets_rate_limits() {
    let s = site().await;
    let (acme, olivia, alice) = (s.demo.acme, s.demo.olivia, s.demo.alice);
    without_rate_limits(&s, acme).await;
    let path = format!("/operator/orgs/{acme}/rate-limits");
    let alices = s.get(alice, &format!("/orgs/{acme}/members")).await.csrf();
    for (user, csrf) in [(alice, alices.as_str()), (olivia, ""), (olivia, "garbage")] {
        let fields = [
            ("csrf", csrf),
            ("limit_type", "second_requests"),
            ("value", "1"),
            ("mode", "hard"),
        ];
        let page = s.post(user, &path, &fields, &[]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{user}: {}", page.body);
    }
    let operator = PlatformOperator::new("console-tests");
    let tenancy = s.demo.app.auth.tenancy();
    assert!(
        tenancy
            .operator(&operator)
            .rate_limits(acme)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Each member sees the org-wide limits and their own, with the window's
/// use; another member's and another organization's stay off the page.
#[tokio::test]
async fn the_usage_page_shows_the_viewers_rate_limits() {
    let s = site().await;
    let (acme, globex, alice, bob, carol) = (
        s.demo.acme,
        s.demo.globex,
        s.demo.alice,
        s.demo.bob,
        s.demo.carol,
    );
    let tenancy = s.demo.app.auth.tenancy();
    let operator = PlatformOperator::new("console-tests");
    let op = tenancy.operator(&operator);
    let rpm = NewRateLimit::from_limit_type("minute_requests", Decimal::from(10)).unwrap();
    op.set_rate_limit(acme, rpm).await.unwrap();
    let bobs = NewRateLimit::from_limit_type("hour_tokens", Decimal::from(5000))
        .unwrap()
        .for_user(bob);
    op.set_rate_limit(acme, bobs).await.unwrap();
    let theirs = NewRateLimit::from_limit_type("second_cost", Decimal::from(1)).unwrap();
    op.set_rate_limit(globex, theirs).await.unwrap();

    let ctx = tenancy.context(alice, acme).await.unwrap();
    for _ in 0..5 {
        assert!(
            tenancy
                .reserve(&ctx, "tokens", Decimal::ONE)
                .await
                .unwrap()
                .decision()
                .allowed
        );
    }

    let alices = s.get(alice, &format!("/orgs/{acme}/usage")).await;
    assert_eq!(alices.status, StatusCode::OK, "{}", alices.body);
    let section = rates_section(&alices);
    assert!(section.contains("minute_requests"), "{section}");
    assert!(
        !section.contains("hour_tokens"),
        "bob's own limit is not alice's: {section}"
    );
    assert!(!section.contains("second_cost_usd"), "globex's: {section}");
    // Five of ten a minute: five in use, five available, free in 30 s.
    assert!(
        section.contains("<td class=\"number\">5 requests</td>"),
        "{section}"
    );
    assert!(section.contains("in 30.0 s"), "{section}");

    let bobs_page = s.get(bob, &format!("/orgs/{acme}/usage")).await;
    let section = rates_section(&bobs_page);
    assert!(
        section.contains("hour_tokens") && section.contains("you"),
        "{section}"
    );

    let carols = s.get(carol, &format!("/orgs/{globex}/usage")).await;
    let section = rates_section(&carols);
    assert!(section.contains("second_cost_usd"), "{section}");
    assert!(!section.contains("minute_requests"), "acme's: {section}");
    let outsider = s.get(carol, &format!("/orgs/{acme}/usage")).await;
    assert_eq!(
        outsider.status,
        StatusCode::FORBIDDEN,
        "carol is no member of acme"
    );
}
