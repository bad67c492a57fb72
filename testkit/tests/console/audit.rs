//! The audit log pages over real HTTP: an owner (and an admin) reads the
//! organization's log, with people by name, filters and a link to older
//! changes; a member and a viewer of the organization are refused (403),
//! as are another organization's owner and a user of no organization; the
//! operator reads every organization's log, and nobody else reads the
//! operator's view; a filter that does not parse is 400.

use reqwest::StatusCode;
use tenancy::{PlatformOperator, Role, Tenancy, UserId};

use super::{Site, site};

fn tenancy(s: &Site) -> &Tenancy {
    s.demo.app.auth.tenancy()
}

/// The `href` of the link marked `rel="next"`, unescaped.
fn next_link(body: &str) -> Option<String> {
    let end = body.find("\" rel=\"next\"")?;
    let start = body[..end].rfind("href=\"")? + "href=\"".len();
    Some(body[start..end].replace("&amp;", "&"))
}

#[tokio::test]
async fn an_owner_reads_the_orgs_log_with_names_and_filters() {
    let s = site().await;
    let (acme, alice, bob) = (s.demo.acme, s.demo.alice, s.demo.bob);
    let owner = tenancy(&s).context(alice, acme).await.unwrap();
    tenancy(&s)
        .change_role(&owner, bob, Role::Admin)
        .await
        .unwrap();

    let path = format!("/orgs/{acme}/audit");
    let page = s.get(alice, &path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("organization.created"), "{}", page.body);
    assert!(page.body.contains("member.updated"));
    assert!(page.body.contains("role: member → admin"), "{}", page.body);
    // People by name: Alice acted, Bob was the target.
    assert!(page.body.contains("Alice Archer"));
    assert!(page.body.contains("Bob Baker"));
    // Nothing of another organization.
    assert!(!page.body.contains("Carol Chen"), "{}", page.body);

    // Bob, an admin now, reads it too; filtered to members, no feature.
    let members = s.get(bob, &format!("{path}?action=member")).await;
    assert_eq!(members.status, StatusCode::OK, "{}", members.body);
    assert!(members.body.contains("member.updated"));
    assert!(
        !members.body.contains("feature.created"),
        "{}",
        members.body
    );
    // By actor: Alice's changes.
    let by_alice = s.get(alice, &format!("{path}?actor=user:{alice}")).await;
    assert_eq!(by_alice.status, StatusCode::OK);
    assert!(by_alice.body.contains("member.updated"));
    let by_nobody = s
        .get(alice, &format!("{path}?actor=user:{}", UserId::new_v7()))
        .await;
    assert!(
        by_nobody.body.contains("No changes match."),
        "{}",
        by_nobody.body
    );
    // A filter that does not parse says which.
    for bad in ["actor=root", "since=yesterday", "after=12", "action=DROP"] {
        let refused = s.get(alice, &format!("{path}?{bad}")).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            refused.body
        );
    }
}

#[tokio::test]
async fn members_viewers_and_other_orgs_cannot_read_an_orgs_log() {
    let s = site().await;
    let acme = s.demo.acme;
    let path = format!("/orgs/{acme}/audit");
    assert_eq!(s.get(s.demo.alice, &path).await.status, StatusCode::OK);
    for (who, user) in [
        ("bob, a member", s.demo.bob),
        ("dan, a viewer", s.demo.dan),
        ("carol, another org's owner", s.demo.carol),
        ("nina, of no organization", s.demo.nina),
    ] {
        let page = s.get(user, &path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}: {}", page.body);
        assert!(!page.body.contains("organization.created"), "{who}");
        // Refused before the filters are read: a bad one changes nothing.
        let bad = s.get(user, &format!("{path}?until=+262143-12-31")).await;
        assert_eq!(bad.status, StatusCode::FORBIDDEN, "{who}: {}", bad.body);
    }
    // A date at the end of the calendar is a 400 naming the field, not a
    // panic.
    let far = s
        .get(s.demo.alice, &format!("{path}?until=+262143-12-31"))
        .await;
    assert_eq!(far.status, StatusCode::BAD_REQUEST, "{}", far.body);
    assert!(far.body.contains("until"), "{}", far.body);
    // Carol owns Globex: her own log, not Acme's, whatever the query says.
    let globex = format!("/orgs/{}/audit?org={acme}", s.demo.globex);
    let own = s.get(s.demo.carol, &globex).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body.contains("Carol Chen"));
    assert!(!own.body.contains(&acme.to_string()), "{}", own.body);
    // The operator's view is the operator's.
    for user in [s.demo.alice, s.demo.carol] {
        let page = s.get(user, "/operator/audit").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn the_operator_reads_every_log_page_by_page() {
    let s = site().await;
    let olivia = s.demo.olivia;
    // Enough changes for more than one page.
    let identity = PlatformOperator::new("console-tests");
    for i in 0..60 {
        tenancy(&s)
            .operator(&identity)
            .enable_feature(s.demo.globex, &format!("flag_{i}"))
            .await
            .unwrap();
    }
    let page = s.get(olivia, "/operator/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Globex"));
    assert!(page.body.contains("operator console-tests"));
    // Older pages, to the end: every organization's changes.
    let mut bodies = vec![page.body.clone()];
    let mut next = next_link(&page.body);
    while let Some(link) = next {
        let path = link.strip_prefix("/console").expect("under the console");
        let older = s.get(olivia, path).await;
        assert_eq!(older.status, StatusCode::OK, "{}", older.body);
        assert!(bodies.iter().all(|b| *b != older.body), "a page repeats");
        next = next_link(&older.body);
        bodies.push(older.body);
        assert!(bodies.len() < 50, "the pages end");
    }
    assert!(bodies.len() >= 2, "60 changes fill more than a page");
    let all = bodies.concat();
    for org in ["Acme", "Globex", "Initech"] {
        assert!(all.contains(org), "{org}");
    }
    assert!(all.contains("organization.created"));

    // One organization, by id.
    let acme = s
        .get(olivia, &format!("/operator/audit?org={}", s.demo.acme))
        .await;
    assert_eq!(acme.status, StatusCode::OK);
    assert!(!acme.body.contains("flag_"), "{}", acme.body);
    let bad = s.get(olivia, "/operator/audit?org=nope").await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
}
