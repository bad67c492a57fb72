//! The console in a real browser, on the demo app: one test per scenario
//! of `testkit/browser/console_*.mjs`, each on its own freshly seeded
//! site. The scenarios click through the pages with JavaScript off, check
//! what each page shows against the seeds, check every page they visit
//! with axe-core (no violation of any impact) and save a full-page
//! screenshot of it as `console-<name>.png` in the screenshot directory.
//! Here, around them, the server's side: what a form changed is checked
//! through the facade, not taken from the page.

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use tenancy::limits::{LimitLevel, LimitMode, LimitScope};
use tenancy::model::domain::AutoJoin;
use tenancy::{AuditActor, AuditQuery, Period, PlatformOperator, Role, UsageLine};
use tenancy_testkit::browser::{Browser, ScenarioOutput, scenario_path};

use super::host_app::DEMO_IMAGES;
use super::{Site, site};

/// One browser at a time: the tests of this binary run in parallel, and
/// two Chromiums with axe-core on a small machine make each other's
/// timeouts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs scenario `file` against `site`, prints what it said, and checks
/// that it audited and photographed exactly the pages `shots` names (each
/// `console-<name>.png`, a full page 1280 px wide). Every browser test of
/// this binary runs through here, so only one Chromium runs at a time.
pub(super) async fn run(
    browser: &Browser,
    site: &Site,
    file: &str,
    shots: &[&str],
) -> ScenarioOutput {
    let out = {
        let _turn = ONE_BROWSER.lock().await;
        browser
            .run_scenario(&scenario_path(file), &site.base)
            .await
            .unwrap()
    };
    println!(
        "{}\n{}\n(elapsed {:?})",
        out.stdout, out.stderr, out.elapsed
    );
    let audits = out
        .stdout
        .matches("no serious or critical violations")
        .count();
    assert_eq!(audits, shots.len(), "pages audited:\n{}", out.stdout);
    assert!(!out.stdout.contains("accessibility note"), "{}", out.stdout);
    for name in shots {
        let path = browser.screenshot_dir().join(format!("console-{name}.png"));
        assert!(
            out.stdout
                .contains(&format!("screenshot: {}", path.display())),
            "{name} not saved:\n{}",
            out.stdout
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (width, height) = png_size(&bytes);
        assert_eq!(width, 1280, "{name}.png width");
        assert!(height >= 720, "{name}.png height {height}");
    }
    out
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test]
async fn an_owner_switches_organizations_and_makes_a_member_an_admin() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let (acme, alice, bob, dan) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.dan);
    let tenancy = s.demo.app.auth.tenancy();
    assert_eq!(
        tenancy.context(bob, acme).await.unwrap().role(),
        Role::Member
    );

    let shots = [
        "owner-organizations",
        "owner-globex-usage",
        "owner-acme-usage",
        "owner-acme-members",
        "owner-acme-members-role-changed",
    ];
    let out = run(&browser, &s, "console_owner.mjs", &shots).await;

    // The row the browser changed was bob's, and the server agrees.
    assert!(
        out.stdout.contains("the member: Bob Baker\n"),
        "{}",
        out.stdout
    );
    assert_eq!(
        tenancy.context(bob, acme).await.unwrap().role(),
        Role::Admin
    );
    assert_eq!(
        tenancy.context(alice, acme).await.unwrap().role(),
        Role::Owner
    );
    assert_eq!(
        tenancy.context(dan, acme).await.unwrap().role(),
        Role::Viewer
    );
}

#[tokio::test]
async fn a_viewer_sees_usage_and_limits_but_no_member_controls() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let shots = [
        "viewer-organizations",
        "viewer-acme-usage",
        "viewer-acme-members",
    ];
    run(&browser, &s, "console_viewer.mjs", &shots).await;

    let tenancy = s.demo.app.auth.tenancy();
    let ctx = tenancy.context(s.demo.alice, s.demo.acme).await.unwrap();
    let roles: Vec<(tenancy::UserId, Role)> = tenancy
        .members(&ctx)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        roles,
        [
            (s.demo.alice, Role::Owner),
            (s.demo.bob, Role::Member),
            (s.demo.dan, Role::Viewer),
        ]
    );
}

#[tokio::test]
async fn the_operator_finds_an_organization_and_turns_a_feature_on_for_it() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let (initech, erin) = (s.demo.initech, s.demo.erin);
    let tenancy = s.demo.app.auth.tenancy();
    let operator = PlatformOperator::new("console-browser-test");
    let admin = tenancy.operator(&operator);
    // The scenario starts from the feature switched off.
    admin.disable_feature(initech, "brand_kits").await.unwrap();
    let ctx = tenancy.context(erin, initech).await.unwrap();
    assert!(!tenancy.has_feature(&ctx, "brand_kits").await.unwrap());

    let shots = [
        "operator-member-usage-before",
        "operator-start",
        "operator-overview",
        "operator-search-initech",
        "operator-initech-feature-off",
        "operator-initech-feature-on",
        "operator-member-usage-after",
    ];
    run(&browser, &s, "console_operator.mjs", &shots).await;

    assert!(tenancy.has_feature(&ctx, "brand_kits").await.unwrap());
    let features: Vec<(String, bool)> = admin
        .features(initech)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.key.to_string(), f.enabled))
        .collect();
    assert_eq!(features, [("brand_kits".to_owned(), true)]);
    // Nothing else was touched.
    let acme = tenancy.context(s.demo.alice, s.demo.acme).await.unwrap();
    assert!(tenancy.has_feature(&acme, "veo_avatars").await.unwrap());
}

/// `n` (whole) of a counted unit as the console writes amounts:
/// `315,184 tokens`, `1 image`.
fn counted(n: Decimal, one: &str, many: &str) -> String {
    let digits = n.normalize().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    format!("{out} {}", if n == Decimal::ONE { one } else { many })
}

/// A usage line as the scenario prints it: the cells of its row, amounts
/// with their unit.
fn printed(line: &UsageLine) -> String {
    let unit = |n: Decimal| match line.metric.as_str() {
        "tokens" => counted(n, "token", "tokens"),
        "images" => counted(n, "image", "images"),
        other => panic!("no unit for {other}"),
    };
    let limit = unit(line.limit.expect("a line with a limit"));
    let mode = line.mode.map_or("", LimitMode::as_str);
    let remaining = unit(line.remaining.expect("a limit leaves a remainder"));
    let percent = line.percent.expect("a limit has a percentage").normalize();
    let level = match line.level {
        LimitLevel::Ok => "OK",
        LimitLevel::Warning => "Warning",
        LimitLevel::Exceeded => "Exceeded",
    };
    let resets = line
        .resets_at
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%d %H:%M Asia/Tokyo");
    format!(
        "{} line: {} | {} | organization | {} | {} | {limit} {mode} | {remaining} | {level} {percent} % | {resets}\n",
        line.metric,
        line.metric,
        line.period,
        unit(line.used),
        unit(line.reserved),
    )
}

#[tokio::test]
async fn the_usage_page_shows_the_limits_of_the_month_in_the_organizations_zone() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let shots = [
        "usage-initech",
        "usage-initech-numbers",
        "usage-initech-dark",
    ];
    let out = run(&browser, &s, "console_usage.mjs", &shots).await;

    // What the page showed is what the facade says, and the facade says
    // what the seeds imply.
    let tenancy = s.demo.app.auth.tenancy();
    let ctx = tenancy.context(s.demo.carol, s.demo.initech).await.unwrap();
    let lines = tenancy.usage_summary(&ctx).await.unwrap();
    let monthly = |metric: &str| {
        lines
            .iter()
            .find(|l| {
                l.metric.as_str() == metric
                    && l.period == Period::Monthly
                    && l.scope == LimitScope::Organization
            })
            .unwrap_or_else(|| panic!("no monthly {metric} line in {lines:?}"))
    };
    let images = monthly("images");
    let (limit, used) = DEMO_IMAGES;
    assert_eq!(images.used, Decimal::from(used));
    assert_eq!(images.limit, Some(Decimal::from(limit)));
    assert_eq!(images.percent, Some(Decimal::from(92)));
    assert_eq!(images.level, LimitLevel::Warning);
    // Midnight on 1 December in Tokyo (UTC+9).
    let reset = Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap();
    assert_eq!(images.resets_at, reset);
    let tokens = monthly("tokens");
    assert_eq!(tokens.level, LimitLevel::Ok);
    assert_eq!(tokens.resets_at, reset);
    for line in [images, tokens] {
        let row = printed(line);
        assert!(out.stdout.contains(&row), "{row}not in:\n{}", out.stdout);
    }
    assert!(
        out.stdout
            .contains("images line: images | monthly | organization | 46 images | 0 images | 50 images hard | 4 images | Warning 92 % | 2026-12-01 00:00 Asia/Tokyo\n"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_new_user_creates_her_organization_from_the_start_page() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let nina = s.demo.nina;
    let tenancy = s.demo.app.auth.tenancy();
    assert!(tenancy.orgs_for_user(nina).await.unwrap().is_empty());

    let shots = [
        "onboarding-start",
        "onboarding-slug-taken",
        "onboarding-created",
    ];
    let out = run(&browser, &s, "console_onboarding.mjs", &shots).await;

    // One organization, hers, made from what the second form said; the
    // first (a taken slug) created nothing and left Acme alone.
    let orgs = tenancy.orgs_for_user(nina).await.unwrap();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    let org = &orgs[0];
    assert_eq!(
        (
            org.organization.name.as_str(),
            org.organization.slug.as_str(),
            org.organization.timezone.name(),
            org.role,
        ),
        ("Nina Studio", "nina-studio", "Europe/Paris", Role::Owner)
    );
    assert!(
        out.stdout
            .contains(&format!("her organization: {}\n", org.organization.id)),
        "{}",
        out.stdout
    );
    let acme = tenancy.context(s.demo.alice, s.demo.acme).await.unwrap();
    assert_eq!(acme.organization().slug.as_str(), "acme");
    assert_eq!(acme.role(), Role::Owner);
}

#[tokio::test]
async fn an_owner_reads_her_role_change_in_the_audit_log_and_so_does_the_operator() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let (acme, alice, bob) = (s.demo.acme, s.demo.alice, s.demo.bob);
    let tenancy = s.demo.app.auth.tenancy();
    let owner = tenancy.context(alice, acme).await.unwrap();
    let role_changes = || async {
        let log = tenancy
            .audit_log(&owner, AuditQuery::new(50).unwrap())
            .await
            .unwrap();
        log.events
            .into_iter()
            .filter(|e| e.action == "member.updated")
            .collect::<Vec<_>>()
    };
    assert!(role_changes().await.is_empty());

    let shots = [
        "audit-acme",
        "audit-acme-by-alice",
        "audit-operator",
        "audit-operator-acme",
    ];
    let out = run(&browser, &s, "console_audit.mjs", &shots).await;

    // What the pages showed is the one change the browser made: alice's,
    // to bob, member to admin.
    assert!(
        out.stdout.contains(
            "acme's change: Alice Archer alice@acme.example | member.updated \
             | Bob Baker bob@acme.example | role: member → admin\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("operator's organizations: Acme, Globex, Initech\n"),
        "{}",
        out.stdout
    );
    assert_eq!(
        tenancy.context(bob, acme).await.unwrap().role(),
        Role::Admin
    );
    let changes = role_changes().await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    let change = &changes[0];
    assert_eq!(change.actor, AuditActor::User { user_id: alice });
    assert_eq!(change.target, Some(bob.to_string()));
    assert_eq!(change.organization_id, acme);
}

#[tokio::test]
async fn an_owner_opens_a_verified_domain_to_viewers_and_a_colleague_joins() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let (acme, frank) = (s.demo.acme, s.demo.frank);
    let tenancy = s.demo.app.auth.tenancy();
    let identity = PlatformOperator::new("browser-tests");
    let operator = tenancy.operator(&identity);
    operator
        .add_domain(acme, "acme.example", false)
        .await
        .unwrap();
    // Frank, a member of nothing, signed up with a confirmed email at
    // Acme's domain.
    s.demo
        .directory
        .insert(frank, Some("frank@acme.example"), Some("Frank Fischer"));
    assert!(s.demo.directory.set_email_confirmed(frank, true));
    assert!(tenancy.orgs_for_user(frank).await.unwrap().is_empty());

    let shots = [
        "domains-acme",
        "domains-acme-viewers",
        "domains-join",
        "domains-joined",
    ];
    let out = run(&browser, &s, "console_domains.mjs", &shots).await;

    assert!(
        out.stdout.contains(&format!("he joined: {acme}\n")),
        "{}",
        out.stdout
    );
    let domains: Vec<(String, bool, AutoJoin)> = operator
        .domains(acme)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.domain.to_string(), d.enabled, d.auto_join))
        .collect();
    assert_eq!(
        domains,
        [("acme.example".to_owned(), true, AutoJoin::Viewer)]
    );
    let orgs = tenancy.orgs_for_user(frank).await.unwrap();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_eq!(
        (orgs[0].organization.id, orgs[0].role),
        (acme, Role::Viewer)
    );
    // Alice is still the owner, and nobody else joined.
    let owner = tenancy.context(s.demo.alice, acme).await.unwrap();
    assert_eq!(owner.role(), Role::Owner);
    assert_eq!(tenancy.members(&owner).await.unwrap().len(), 4);
}

#[tokio::test]
async fn the_operator_builds_plans_assigns_them_and_a_member_reads_hers() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let (acme, initech) = (s.demo.acme, s.demo.initech);
    let tenancy = s.demo.app.auth.tenancy();
    let identity = PlatformOperator::new("browser-tests");
    let operator = tenancy.operator(&identity);
    assert!(operator.plan_versions(None).await.unwrap().is_empty());

    let shots = [
        "plans-catalog",
        "plans-acme-free",
        "plans-acme-override",
        "plans-initech-trial",
        "plans-pro-v2",
        "plans-migrated",
        "plans-member-initech",
    ];
    let out = run(&browser, &s, "console_plans.mjs", &shots).await;

    // What the pages showed is what the server holds: the catalog, both
    // assignments and Acme's lapsing override.
    let pro = |version| tenancy::model::plan::PlanRef {
        key: tenancy::PlanKey::parse("pro").unwrap(),
        version,
    };
    let free = tenancy::model::plan::PlanRef {
        key: tenancy::PlanKey::parse("free").unwrap(),
        version: 1,
    };
    let catalog: Vec<_> = operator
        .plan_versions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.plan, v.limits.iter().map(|l| l.value).collect::<Vec<_>>()))
        .collect();
    assert_eq!(
        catalog,
        [
            (free.clone(), vec![Decimal::from(1_000)]),
            (pro(1), vec![Decimal::from(100_000)]),
            (pro(2), vec![Decimal::from(200_000)]),
        ]
    );
    let december = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let acmes = operator.plan(acme).await.unwrap().expect("Acme's plan");
    assert_eq!((acmes.plan, acmes.trial_ends_at), (free.clone(), None));
    let tokens = operator.limits(acme).await.unwrap();
    assert_eq!(
        tokens
            .iter()
            .map(|l| (l.value, l.expires_at))
            .collect::<Vec<_>>(),
        [(Decimal::from(12_000), Some(december))]
    );
    assert!(
        out.stdout.contains(
            "acme's tokens: limit | monthly_tokens | organization | 12000 hard \
             | override until 2026-12-01 00:00 UTC\n"
        ),
        "{}",
        out.stdout
    );
    // Midnight on 8 December in Tokyo.
    let trial_end = Utc.with_ymd_and_hms(2026, 12, 7, 15, 0, 0).unwrap();
    let initechs = operator
        .plan(initech)
        .await
        .unwrap()
        .expect("Initech's plan");
    assert_eq!(
        (initechs.plan, initechs.trial_ends_at, initechs.fallback),
        (pro(2), Some(trial_end), Some(free))
    );
    assert!(
        out.stdout.contains("migrated: 1 organization moved.\n"),
        "{}",
        out.stdout
    );
    // And erin, during the trial, gets what the page said.
    let ctx = tenancy.context(s.demo.erin, initech).await.unwrap();
    assert!(tenancy.has_feature(&ctx, "exports").await.unwrap());
}

#[tokio::test]
async fn a_member_reads_reports_by_month_and_model_and_downloads_the_csv() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let s = site().await;
    let shots = ["reports-initech", "reports-initech-by-model"];
    let out = run(&browser, &s, "console_reports.mjs", &shots).await;

    // What the page and the CSV showed is what the facade reports for
    // erin: November in Tokyo so far, by month and model.
    let tenancy = s.demo.app.auth.tenancy();
    let ctx = tenancy.context(s.demo.erin, s.demo.initech).await.unwrap();
    let from = Utc.with_ymd_and_hms(2026, 10, 31, 15, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap();
    let query = tenancy::model::report::ReportQuery::new(s.demo.initech, from, to)
        .granularity(tenancy::model::report::Granularity::Month)
        .group_by([tenancy::model::report::ReportDimension::Model]);
    let page = tenancy.usage_report(&ctx, &query).await.unwrap();
    let gpt = page
        .rows
        .iter()
        .find(|r| r.key.model.as_deref() == Some("gpt-4o"))
        .expect("the seeds' gpt-4o calls");
    let tokens = gpt
        .amounts
        .iter()
        .find(|(m, _)| m.as_str() == "tokens")
        .map(|(_, a)| a.normalize())
        .unwrap();
    assert!(
        out.stdout
            .contains(&format!("csv gpt-4o tokens: 2026-11 {tokens}\n")),
        "{}",
        out.stdout
    );
    // The row ends with its events, the facade's count.
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("gpt-4o row: 2026-11 | gpt-4o | "))
        .unwrap_or_else(|| panic!("no gpt-4o row in {}", out.stdout));
    assert!(row.ends_with(&format!(" | {}", gpt.events)), "{row}");
}
