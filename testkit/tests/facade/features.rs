//! Feature access: off until the operator enables it, per organization,
//! with typed config, through a cache bounded by its TTL.

use std::time::Duration;

use serde::Deserialize;
use tenancy::clock::Clock;
use tenancy::{ErrorKind, FeatureChange, FeatureKey, OrgId};

use crate::scene::{kind, scene};

#[derive(Debug, Deserialize, PartialEq)]
struct AvatarConfig {
    max_seconds: u32,
    voices: Vec<String>,
}

/// Features are off until enabled, and a config alone does not enable one;
/// once on, the config decodes into the caller's type (or is a `Config`
/// error when it does not).
#[tokio::test]
async fn features_are_off_until_enabled_and_typed() {
    let s = scene().await;
    let t = &s.tenancy;
    let ctx = &s.owner_ctx;
    assert!(!t.has_feature(ctx, "veo_avatars").await.unwrap());
    assert_eq!(
        t.feature_config::<AvatarConfig>(ctx, "veo_avatars")
            .await
            .unwrap(),
        None
    );

    s.op()
        .set_feature_config(
            s.org,
            "veo_avatars",
            serde_json::json!({"max_seconds": 30, "voices": ["ava"]}),
        )
        .await
        .unwrap();
    assert!(
        !t.has_feature(ctx, "veo_avatars").await.unwrap(),
        "config alone does not enable"
    );
    s.op().enable_feature(s.org, "veo_avatars").await.unwrap();
    assert!(
        t.has_feature(ctx, "veo_avatars").await.unwrap(),
        "visible at once"
    );
    const VEO_AVATARS: FeatureKey = FeatureKey::from_static("veo_avatars");
    assert!(
        t.has_feature(ctx, VEO_AVATARS).await.unwrap(),
        "by constant"
    );
    let config = t
        .feature_config::<AvatarConfig>(ctx, "veo_avatars")
        .await
        .unwrap();
    assert_eq!(
        config,
        Some(AvatarConfig {
            max_seconds: 30,
            voices: vec!["ava".into()]
        })
    );
    let wrong = t
        .feature_config::<Vec<u8>>(ctx, "veo_avatars")
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Config);
}

/// Disabling keeps the row (off), removing deletes it; a bad key is
/// `InvalidInput` naming `feature_key`, an unknown org `NotFound`.
#[tokio::test]
async fn features_are_disabled_removed_and_checked() {
    let s = scene().await;
    let t = &s.tenancy;
    let ctx = &s.owner_ctx;
    s.op().enable_feature(s.org, "veo_avatars").await.unwrap();
    s.op().disable_feature(s.org, "veo_avatars").await.unwrap();
    assert!(!t.has_feature(ctx, "veo_avatars").await.unwrap());
    let rows = t.features(ctx).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].enabled);
    assert!(s.op().remove_feature(s.org, "veo_avatars").await.unwrap());
    assert!(!s.op().remove_feature(s.org, "veo_avatars").await.unwrap());
    assert!(t.features(ctx).await.unwrap().is_empty());

    let err = t.has_feature(ctx, "Bad Key").await.unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("feature_key"))
    );
    assert_eq!(
        kind(s.op().enable_feature(OrgId::new_v7(), "veo_avatars").await),
        ErrorKind::NotFound
    );
}

/// A change made behind the cache's back (another instance) is seen within
/// the TTL, and not before.
#[tokio::test]
async fn feature_cache_is_bounded_by_ttl() {
    let s = scene().await;
    let ctx = &s.owner_ctx;
    assert!(!s.tenancy.has_feature(ctx, "exports").await.unwrap());
    let key = FeatureKey::parse("exports").unwrap();
    s.store
        .update_feature(s.org, &key, &FeatureChange::enabled(true), s.clock.now())
        .await
        .unwrap();
    assert!(
        !s.tenancy.has_feature(ctx, "exports").await.unwrap(),
        "still cached"
    );
    s.clock.advance(Duration::from_secs(31));
    assert!(
        s.tenancy.has_feature(ctx, "exports").await.unwrap(),
        "TTL passed"
    );
}
