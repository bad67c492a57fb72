//! The operator's handle: feature changes return the stored row, and a
//! paged, searchable list of organizations, and any organization's
//! usage history.

use std::time::Duration;

use serde_json::json;
use tenancy::clock::Clock;
use tenancy::{
    ErrorKind, FeatureChange, MAX_ORG_PAGE, NewOrganization, OrgId, Period, UsageEvent, UserId,
};

use crate::scene::{dec, kind, scene, scene_on, utc};

/// Every feature change returns the row as stored: only the fields it
/// names change, stamped with the tenancy's clock.
#[tokio::test]
async fn feature_changes_return_the_stored_row() {
    let s = scene().await;
    let configured = s
        .op()
        .set_feature_config(s.org, "veo_avatars", json!({"max_seconds": 30}))
        .await
        .unwrap();
    assert_eq!(configured.key.as_str(), "veo_avatars");
    assert!(!configured.enabled, "a new row starts disabled");
    assert_eq!(configured.config, json!({"max_seconds": 30}));
    assert_eq!(configured.updated_at, utc(crate::scene::START));

    s.clock.advance(Duration::from_secs(5));
    let enabled = s.op().enable_feature(s.org, "veo_avatars").await.unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.config, json!({"max_seconds": 30}), "config kept");
    assert_eq!(enabled.updated_at, s.clock.now());

    let change = FeatureChange {
        enabled: Some(false),
        config: Some(json!({"max_seconds": 10})),
        ..FeatureChange::default()
    };
    let both = s
        .op()
        .update_feature(s.org, "veo_avatars", change)
        .await
        .unwrap();
    assert_eq!(
        (both.enabled, both.config.clone()),
        (false, json!({"max_seconds": 10}))
    );
    let disabled = s.op().disable_feature(s.org, "veo_avatars").await.unwrap();
    assert_eq!(disabled.config, json!({"max_seconds": 10}));
    assert_eq!(s.op().features(s.org).await.unwrap(), vec![disabled]);
    assert!(
        !s.tenancy
            .has_feature(&s.owner_ctx, "veo_avatars")
            .await
            .unwrap()
    );
}

/// Organizations by name, a page at a time, optionally searched by name or
/// slug ignoring case; a page larger than `MAX_ORG_PAGE` or a search with
/// a NUL is `InvalidInput`.
#[tokio::test]
async fn organizations_are_listed_by_name_in_pages() {
    let s = scene().await;
    for (name, slug) in [
        ("Globex", "globex"),
        ("Initech", "initech"),
        ("Beta Labs", "acme-beta"),
    ] {
        s.tenancy
            .create_organization(UserId::new_v7(), NewOrganization::new(name, slug).unwrap())
            .await
            .unwrap();
    }
    let names = |orgs: Vec<tenancy::Organization>| -> Vec<String> {
        orgs.into_iter().map(|o| o.name).collect()
    };
    let all = s.op().organizations(None, 10, 0).await.unwrap();
    assert_eq!(names(all), ["Acme", "Beta Labs", "Globex", "Initech"]);
    let page = s.op().organizations(None, 2, 1).await.unwrap();
    assert_eq!(names(page), ["Beta Labs", "Globex"]);
    let found = s.op().organizations(Some(" ACME "), 10, 0).await.unwrap();
    assert_eq!(names(found), ["Acme", "Beta Labs"], "by name or slug");
    assert!(
        s.op()
            .organizations(Some("nobody"), 10, 0)
            .await
            .unwrap()
            .is_empty()
    );

    let too_many = s.op().organizations(None, MAX_ORG_PAGE + 1, 0).await;
    assert_eq!(too_many.unwrap_err().field(), Some("limit"));
    let nul = s.op().organizations(Some("ac\0me"), 10, 0).await;
    assert_eq!(nul.unwrap_err().field(), Some("search"));
}

/// The operator reads any organization's usage history, its own org-wide
/// counters only; an organization that does not exist is `NotFound`.
#[tokio::test]
async fn the_operator_reads_an_organizations_history() {
    let s = scene().await;
    let other = scene_on(std::sync::Arc::clone(&s.store)).await;
    s.tenancy
        .service()
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(40, 0, 0))
        .await
        .unwrap();
    let month = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    let op = s.op();
    let history = |org| op.usage_history(org, Some("tokens"), Period::Monthly, month, month);
    let used: Vec<_> = history(s.org)
        .await
        .unwrap()
        .iter()
        .map(|v| v.used)
        .collect();
    assert_eq!(used, [dec(40)]);
    assert!(
        history(other.org).await.unwrap().is_empty(),
        "another org's"
    );
    assert_eq!(kind(history(OrgId::new_v7()).await), ErrorKind::NotFound);
}
