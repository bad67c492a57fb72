//! The plan pages over real HTTP: the operator creates plans, edits one
//! into a new version (the edit form starts from the latest version, and a
//! stale edit is refused), migrates organizations; on an organization's
//! page assigns a plan, starts a trial with a fallback, sets overrides
//! that expire and removes them; members of the organization read its
//! plan page with each entry's source. Nobody else reads or posts through
//! any of these pages, not even with a valid form token of their own, and
//! every form refuses a post without a valid token. What a form changed is
//! checked through the facade.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use tenancy::model::plan::{EntitlementSource, NewPlanVersion, PlanAssignment, PlanRef};
use tenancy::{NewLimit, OrgId, PlanKey, PlatformOperator, Tenancy, UserId};

use super::{Site, site};

/// What the console says when a form's token is refused.
const BAD_TOKEN: &str = "did not come from this console";

fn tenancy(s: &Site) -> &Tenancy {
    s.demo.app.auth.tenancy()
}

fn identity() -> PlatformOperator {
    PlatformOperator::new("console-tests")
}

fn plan(key: &str, version: u32) -> PlanRef {
    PlanRef {
        key: PlanKey::parse(key).unwrap(),
        version,
    }
}

async fn assignment(s: &Site, org: OrgId) -> Option<PlanAssignment> {
    let identity = identity();
    tenancy(s).operator(&identity).plan(org).await.unwrap()
}

/// The catalog as (key, version, name) triples.
async fn catalog(s: &Site) -> Vec<(String, u32, String)> {
    let identity = identity();
    tenancy(s)
        .operator(&identity)
        .plan_versions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.plan.key.to_string(), v.plan.version, v.name))
        .collect()
}

/// Free (1 000 tokens a month) and Pro (veo_avatars, 100 000 tokens), each
/// at version 1, through the facade.
async fn seed_plans(s: &Site) {
    let identity = identity();
    let ops = tenancy(s).operator(&identity);
    let tokens = |n: i64| NewLimit::from_limit_type("monthly_tokens", n.into()).unwrap();
    let free = NewPlanVersion::new(PlanKey::parse("free").unwrap(), "Free")
        .unwrap()
        .limit(tokens(1_000))
        .unwrap();
    ops.create_plan_version(free).await.unwrap();
    let pro = NewPlanVersion::new(PlanKey::parse("pro").unwrap(), "Pro")
        .unwrap()
        .feature(tenancy::FeatureKey::parse("veo_avatars").unwrap(), true)
        .unwrap()
        .limit(tokens(100_000))
        .unwrap();
    ops.create_plan_version(pro).await.unwrap();
}

#[tokio::test]
async fn the_operator_creates_a_plan_edits_it_into_a_new_version_and_migrates() {
    let s = site().await;
    let (acme, olivia) = (s.demo.acme, s.demo.olivia);
    let empty = s.get(olivia, "/operator/plans").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains("No plans yet"), "{}", empty.body);
    let csrf = empty.csrf();

    let created = s
        .post(
            olivia,
            "/operator/plans",
            &[
                ("csrf", &csrf),
                ("key", "pro"),
                ("name", "Pro"),
                ("features", "veo_avatars\nbrand_kits {\"max\": 3}\n"),
                ("limits", "monthly_tokens 100000\n"),
                ("rate_limits", "minute_requests 600 burst 900 soft"),
            ],
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(
        created.headers["location"],
        "/console/operator/plans?done=plan-created"
    );
    assert_eq!(catalog(&s).await, [("pro".to_owned(), 1, "Pro".to_owned())]);
    let listed = s.get(olivia, "/operator/plans?done=plan-created").await;
    assert!(
        listed.body.contains("The plan was created: version 1."),
        "{}",
        listed.body
    );
    assert!(
        listed.body.contains("/console/operator/plans/pro"),
        "{}",
        listed.body
    );

    // The same key again, and a bad line: the form again, saying why,
    // with what was typed; nothing created.
    let again = s
        .post(
            olivia,
            "/operator/plans",
            &[("csrf", &csrf), ("key", "pro"), ("name", "Pro again")],
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains("plan pro exists"), "{}", again.body);
    assert!(again.body.contains("Pro again"), "{}", again.body);
    let bad = s
        .post(
            olivia,
            "/operator/plans",
            &[
                ("csrf", &csrf),
                ("key", "team"),
                ("name", "Team"),
                ("limits", "monthly_tokens 10\nmonthly_tokens lots"),
            ],
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("limits: line 2"), "{}", bad.body);
    assert!(bad.body.contains("monthly_tokens lots"), "{}", bad.body);
    assert_eq!(catalog(&s).await.len(), 1);

    // The edit form starts from the latest version, as text.
    let page = s.get(olivia, "/operator/plans/pro").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Create version 2"), "{}", page.body);
    assert!(
        page.body
            .contains("veo_avatars\nbrand_kits {&quot;max&quot;:3}\n</textarea>")
            || page
                .body
                .contains("veo_avatars\nbrand_kits {&#34;max&#34;:3}\n</textarea>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("monthly_tokens 100000 hard\n</textarea>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("minute_requests 600 burst 900 soft\n</textarea>"),
        "{}",
        page.body
    );
    let edit = [
        ("csrf", csrf.as_str()),
        ("key", "pro"),
        ("based_on", "1"),
        ("name", "Pro"),
        ("features", "veo_avatars\nbrand_kits {\"max\": 5}"),
        ("limits", "monthly_tokens 200000"),
    ];
    let edited = s.post(olivia, "/operator/plans", &edit, &[]).await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    assert_eq!(
        edited.headers["location"],
        "/console/operator/plans/pro?done=version-created&version=2"
    );
    // The same edit again started from version 1: refused, nothing created.
    let stale = s.post(olivia, "/operator/plans", &edit, &[]).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert!(stale.body.contains("created meanwhile"), "{}", stale.body);
    assert_eq!(
        catalog(&s).await,
        [
            ("pro".to_owned(), 1, "Pro".to_owned()),
            ("pro".to_owned(), 2, "Pro".to_owned())
        ]
    );
    let identity = identity();
    let ops = tenancy(&s).operator(&identity);
    let v1 = ops.plan_version(&plan("pro", 1)).await.unwrap().unwrap();
    assert_eq!(
        v1.limits[0].value,
        100_000.into(),
        "version 1 never changes"
    );
    let v2 = ops.plan_version(&plan("pro", 2)).await.unwrap().unwrap();
    assert_eq!(v2.limits[0].value, 200_000.into());
    assert!(v2.rate_limits.is_empty());

    // Acme and Initech on version 1; migrating all of version 1 moves both,
    // and says how many.
    for org in [acme, s.demo.initech] {
        ops.assign_plan(org, plan("pro", 1)).await.unwrap();
    }
    let migrated = s
        .post(
            olivia,
            "/operator/plans/migrate",
            &[
                ("csrf", &csrf),
                ("key", "pro"),
                ("from_version", "1"),
                ("to_version", "2"),
                ("org", ""),
            ],
            &[],
        )
        .await;
    assert_eq!(migrated.status, StatusCode::SEE_OTHER, "{}", migrated.body);
    assert_eq!(
        migrated.headers["location"],
        "/console/operator/plans?done=migrated&moved=2"
    );
    for org in [acme, s.demo.initech] {
        assert_eq!(assignment(&s, org).await.unwrap().plan, plan("pro", 2));
    }
    let notice = s.get(olivia, "/operator/plans?done=migrated&moved=2").await;
    assert!(
        notice.body.contains("2 organizations moved."),
        "{}",
        notice.body
    );
    // A version that does not exist: the catalog again, saying why.
    let missing = s
        .post(
            olivia,
            "/operator/plans/migrate",
            &[
                ("csrf", &csrf),
                ("key", "pro"),
                ("from_version", "2"),
                ("to_version", "9"),
            ],
            &[],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_eq!(assignment(&s, acme).await.unwrap().plan, plan("pro", 2));
}

#[tokio::test]
async fn the_operator_assigns_a_trial_and_expiring_overrides_on_an_organizations_page() {
    let s = site().await;
    let (acme, olivia, alice) = (s.demo.acme, s.demo.olivia, s.demo.alice);
    seed_plans(&s).await;
    let path = format!("/operator/orgs/{acme}");
    let page = s.get(olivia, &path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No plan: only the organization"));
    assert!(
        page.body.contains("<option value=\"pro@1\">"),
        "{}",
        page.body
    );
    let csrf = page.csrf();

    let assigned = s
        .post(
            olivia,
            &format!("{path}/plan"),
            &[("csrf", &csrf), ("plan", "free@1")],
            &[],
        )
        .await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.body);
    assert_eq!(
        assigned.headers["location"],
        format!("/console{path}?done=plan-assigned")
    );
    assert_eq!(assignment(&s, acme).await.unwrap().plan, plan("free", 1));
    let page = s.get(olivia, &format!("{path}?done=plan-assigned")).await;
    assert!(
        page.body.contains("The plan was assigned."),
        "{}",
        page.body
    );
    assert!(page.body.contains("On free v1 since"), "{}", page.body);
    // Acme's own token limit (10 000) overrides Free's 1 000.
    assert!(
        page.body.contains("<td>10000 hard</td><td>override</td>"),
        "{}",
        page.body
    );

    // A version that does not exist, and a trial ending in the past: the
    // page again, saying why; nothing changed.
    for (route, form) in [
        ("/plan", vec![("plan", "pro@7")]),
        (
            "/plan/trial",
            vec![("plan", "pro@1"), ("ends", "2026-11-01"), ("fallback", "")],
        ),
        ("/plan", vec![("plan", "Pro")]),
    ] {
        let mut form = form;
        form.push(("csrf", &csrf));
        let refused = s.post(olivia, &format!("{path}{route}"), &form, &[]).await;
        assert!(
            refused.status == StatusCode::NOT_FOUND || refused.status == StatusCode::BAD_REQUEST,
            "{route}: {} {}",
            refused.status,
            refused.body
        );
        assert!(refused.body.contains("role=\"alert\""), "{}", refused.body);
    }
    assert_eq!(assignment(&s, acme).await.unwrap().plan, plan("free", 1));

    // A trial of Pro until 1 December (UTC, Acme's zone), then Free.
    let trial = s
        .post(
            olivia,
            &format!("{path}/plan/trial"),
            &[
                ("csrf", &csrf),
                ("plan", "pro@1"),
                ("ends", "2026-12-01"),
                ("fallback", "free@1"),
            ],
            &[],
        )
        .await;
    assert_eq!(trial.status, StatusCode::SEE_OTHER, "{}", trial.body);
    let now = assignment(&s, acme).await.unwrap();
    let december: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        (now.plan, now.trial_ends_at, now.fallback),
        (plan("pro", 1), Some(december), Some(plan("free", 1)))
    );
    let page = s.get(olivia, &path).await;
    assert!(
        page.body
            .contains("A trial, until 2026-12-01 00:00 UTC; then free v1."),
        "{}",
        page.body
    );

    // Overrides that lapse on 1 December: 20 % more tokens, exports on.
    let limit = s
        .post(
            olivia,
            &format!("{path}/limits"),
            &[
                ("csrf", &csrf),
                ("limit_type", "monthly_tokens"),
                ("value", "120000"),
                ("mode", "hard"),
                ("user", ""),
                ("expires", "2026-12-01"),
            ],
            &[],
        )
        .await;
    assert_eq!(limit.status, StatusCode::SEE_OTHER, "{}", limit.body);
    let feature = s
        .post(
            olivia,
            &format!("{path}/features"),
            &[
                ("csrf", &csrf),
                ("key", "exports"),
                ("enabled", "true"),
                ("expires", "2026-12-01"),
            ],
            &[],
        )
        .await;
    assert_eq!(feature.status, StatusCode::SEE_OTHER, "{}", feature.body);
    let identity = identity();
    let ops = tenancy(&s).operator(&identity);
    let tokens = ops.limits(acme).await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(
        (tokens[0].value, tokens[0].expires_at),
        (120_000.into(), Some(december))
    );
    let view = ops.entitlements(acme).await.unwrap();
    let exports = view
        .features
        .iter()
        .find(|(f, _)| f.key.as_str() == "exports")
        .expect("exports in effect");
    assert_eq!(
        exports.1,
        EntitlementSource::Override {
            expires_at: Some(december)
        }
    );
    let veo = view
        .features
        .iter()
        .find(|(f, _)| f.key.as_str() == "veo_avatars")
        .expect("veo_avatars in effect");
    assert!(veo.0.enabled);

    let page = s.get(olivia, &path).await;
    assert!(
        page.body
            .contains("<td>120000 hard</td><td>override until 2026-12-01 00:00 UTC</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<td>2026-12-01 00:00 UTC</td>"),
        "the expiry in the overrides' tables: {}",
        page.body
    );
    // A past expiry is refused.
    let past = s
        .post(
            olivia,
            &format!("{path}/features"),
            &[
                ("csrf", &csrf),
                ("key", "exports"),
                ("expires", "2026-01-01"),
            ],
            &[],
        )
        .await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST, "{}", past.body);
    assert!(past.body.contains("expires_at"), "{}", past.body);

    // Removing the feature override: the plan applies again.
    let removed = s
        .post(
            olivia,
            &format!("{path}/features/veo_avatars/remove"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert_eq!(
        removed.headers["location"],
        format!("/console{path}?done=feature-removed")
    );
    let keys: Vec<String> = ops
        .features(acme)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.key.to_string())
        .collect();
    assert_eq!(keys, ["exports"]);
    let ctx = tenancy(&s).context(alice, acme).await.unwrap();
    assert!(
        tenancy(&s).has_feature(&ctx, "veo_avatars").await.unwrap(),
        "from the plan"
    );

    // The member's page says the same.
    let member = s.get(alice, &format!("/orgs/{acme}/plan")).await;
    assert_eq!(member.status, StatusCode::OK, "{}", member.body);
    for text in [
        "On pro v1 since",
        "A trial, until 2026-12-01 00:00 UTC; then free v1.",
        "<td>on</td><td>override until 2026-12-01 00:00 UTC</td>",
        "<td>on</td><td>plan pro v1</td>",
    ] {
        assert!(member.body.contains(text), "{text}: {}", member.body);
    }

    // Moving this organization to another version, then no plan.
    let v2 = NewPlanVersion::new(PlanKey::parse("pro").unwrap(), "Pro").unwrap();
    ops.create_plan_version(v2).await.unwrap();
    let page = s.get(olivia, &path).await;
    assert!(
        page.body.contains("Migrate this organization"),
        "{}",
        page.body
    );
    let moved = s
        .post(
            olivia,
            "/operator/plans/migrate",
            &[
                ("csrf", &csrf),
                ("key", "pro"),
                ("from_version", "1"),
                ("to_version", "2"),
                ("org", &acme.to_string()),
            ],
            &[],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert_eq!(
        moved.headers["location"],
        format!("/console{path}?done=migrated")
    );
    assert_eq!(assignment(&s, acme).await.unwrap().plan, plan("pro", 2));
    let none = s
        .post(
            olivia,
            &format!("{path}/plan"),
            &[("csrf", &csrf), ("plan", "")],
            &[],
        )
        .await;
    assert_eq!(
        none.headers["location"],
        format!("/console{path}?done=plan-removed")
    );
    assert_eq!(assignment(&s, acme).await, None);
}

#[tokio::test]
async fn every_member_reads_the_plan_page_and_nobody_else() {
    let s = site().await;
    let (acme, alice, bob, dan, carol) = (
        s.demo.acme,
        s.demo.alice,
        s.demo.bob,
        s.demo.dan,
        s.demo.carol,
    );
    seed_plans(&s).await;
    let identity = identity();
    tenancy(&s)
        .operator(&identity)
        .assign_plan(acme, plan("pro", 1))
        .await
        .unwrap();
    let path = format!("/orgs/{acme}/plan");
    for user in [alice, bob, dan] {
        let page = s.get(user, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("On pro v1 since"), "{}", page.body);
        assert!(
            page.body.contains("<td>on</td><td>override</td>"),
            "Acme's own veo_avatars row: {}",
            page.body
        );
        assert!(
            page.body.contains("aria-current=\"page\">Plan</a>"),
            "{}",
            page.body
        );
        assert!(
            page.body
                .contains(&format!("href=\"/console/orgs/{acme}/reports\"")),
            "{}",
            page.body
        );
    }
    // Carol owns Globex and Initech, not Acme; Nina belongs nowhere.
    for user in [carol, s.demo.nina] {
        let page = s.get(user, &path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(!page.body.contains("pro v1"), "{}", page.body);
    }
    // Her own organization's page shows her own, with no plan.
    let globex = s.get(carol, &format!("/orgs/{}/plan", s.demo.globex)).await;
    assert_eq!(globex.status, StatusCode::OK, "{}", globex.body);
    assert!(globex.body.contains("No plan"), "{}", globex.body);
    assert!(!globex.body.contains("pro v1"), "{}", globex.body);
}

/// Every route of the area, as the router declares it.
fn plan_routes(acme: OrgId) -> Vec<String> {
    let routes: Vec<String> = tenancy::console::post_routes()
        .into_iter()
        .filter(|r| {
            r.starts_with("/operator/plans")
                || r.contains("/plan")
                || r.ends_with("/remove") && r.contains("/features/")
        })
        .map(|r| {
            r.replace("{org}", &acme.to_string())
                .replace("{key}", "veo_avatars")
        })
        .collect();
    assert_eq!(routes.len(), 5, "{routes:?}");
    routes
}

/// The fields that would change something through any of the area's forms.
fn fields(acme: OrgId) -> Vec<(&'static str, String)> {
    [
        ("key", "pro"),
        ("name", "Pro"),
        ("limits", "monthly_tokens 5"),
        ("plan", "pro@1"),
        ("ends", "2026-12-01"),
        ("fallback", "free@1"),
        ("from_version", "1"),
        ("to_version", "2"),
        ("based_on", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .chain([("org", acme.to_string())])
    .collect()
}

/// What the area's forms could change: the catalog, Acme's assignment and
/// its feature rows.
async fn state(s: &Site) -> (Vec<(String, u32, String)>, Option<PlanAssignment>, usize) {
    let identity = identity();
    let features = tenancy(s)
        .operator(&identity)
        .features(s.demo.acme)
        .await
        .unwrap()
        .len();
    (catalog(s).await, assignment(s, s.demo.acme).await, features)
}

#[tokio::test]
async fn only_the_operator_opens_the_catalog_or_posts_to_plan_forms() {
    let s = site().await;
    let (acme, alice, bob, carol) = (s.demo.acme, s.demo.alice, s.demo.bob, s.demo.carol);
    seed_plans(&s).await;
    let pro2 = NewPlanVersion::new(PlanKey::parse("pro").unwrap(), "Pro").unwrap();
    let identity = identity();
    let ops = tenancy(&s).operator(&identity);
    ops.create_plan_version(pro2).await.unwrap();
    ops.assign_plan(acme, plan("pro", 1)).await.unwrap();
    let before = state(&s).await;
    for user in [alice, bob, carol] {
        for path in [
            "/operator/plans".to_owned(),
            "/operator/plans/pro".to_owned(),
        ] {
            let page = s.get(user, &path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
            assert!(!page.body.contains("Create version"), "{}", page.body);
        }
        // A valid token of their own does not help.
        let own = s.get(user, "").await.csrf();
        for route in plan_routes(acme) {
            let mut form = fields(acme);
            form.push(("csrf", own.clone()));
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = s.post(user, &route, &form, &[]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{route}: {}", page.body);
            assert!(
                page.body.contains("for the platform operator"),
                "{route}: {}",
                page.body
            );
        }
    }
    assert_eq!(state(&s).await, before, "nothing changed");
    // The operator's positive control.
    let catalog = s.get(s.demo.olivia, "/operator/plans").await;
    assert_eq!(catalog.status, StatusCode::OK);
    assert!(
        catalog.body.contains("/console/operator/plans/pro"),
        "{}",
        catalog.body
    );
}

#[tokio::test]
async fn every_plan_form_refuses_a_bad_token_and_changes_nothing() {
    let s = site().await;
    let (acme, olivia) = (s.demo.acme, s.demo.olivia);
    seed_plans(&s).await;
    let before = state(&s).await;
    let theirs: UserId = s.demo.alice;
    let alices = s.get(theirs, "").await.csrf();
    for route in plan_routes(acme) {
        for token in [None, Some(""), Some("garbage"), Some(alices.as_str())] {
            let mut form = fields(acme);
            if let Some(token) = token {
                form.push(("csrf", token.to_owned()));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = s.post(olivia, &route, &form, &[]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{route} {token:?}");
            assert!(page.body.contains(BAD_TOKEN), "{route}: {}", page.body);
        }
    }
    assert_eq!(state(&s).await, before, "nothing changed");

    // With her own token, each passes the check and does its work.
    let mine = s.get(olivia, "/operator/plans").await.csrf();
    for route in plan_routes(acme) {
        let mut form = fields(acme);
        form.push(("csrf", mine.clone()));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = s.post(olivia, &route, &form, &[]).await;
        assert!(!page.body.contains(BAD_TOKEN), "{route}: {}", page.body);
    }
    assert_ne!(state(&s).await, before, "the forms changed something");
}
