//! Features: partial changes in one atomic step.

use std::sync::Arc;

use serde_json::json;

use super::{at, kind, new_org, noon, shared};
use crate::error::ErrorKind;
use crate::ids::{FeatureKey, OrgId};
use crate::model::FeatureChange;
use crate::store::DynStore;

fn config(value: serde_json::Value) -> FeatureChange {
    FeatureChange::config(value).unwrap_or_else(|e| panic!("{e}"))
}

/// A change writes only the field it names and returns the row as stored;
/// a new row starts disabled with a `null` config.
pub async fn feature_changes_touch_only_the_named_field(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let key = FeatureKey::from_static("veo_avatars");
    let configured = store
        .update_feature(org.id, &key, &config(json!({"max": 3})), noon())
        .await
        .unwrap();
    assert!(!configured.enabled);
    assert_eq!(configured.config, json!({"max": 3}));
    let later = at("2026-03-04T13:00:00Z");
    let enabled = store
        .update_feature(org.id, &key, &FeatureChange::enabled(true), later)
        .await
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.config, json!({"max": 3}));
    assert_eq!(enabled.updated_at, later);
    let cleared = store
        .update_feature(org.id, &key, &config(serde_json::Value::Null), later)
        .await
        .unwrap();
    assert!(cleared.enabled && cleared.config.is_null());
    assert_eq!(store.features(org.id).await.unwrap(), vec![cleared]);

    assert!(store.delete_feature(org.id, &key).await.unwrap());
    assert!(!store.delete_feature(org.id, &key).await.unwrap());
    assert!(store.features(org.id).await.unwrap().is_empty());
    let nowhere = store
        .update_feature(OrgId::new_v7(), &key, &FeatureChange::enabled(true), noon())
        .await;
    assert_eq!(kind(nowhere), ErrorKind::NotFound);
}

/// Turning a feature on while another caller sets its config: both changes
/// land, every time (a read-then-write store loses one of them).
pub async fn concurrent_feature_changes_are_never_lost(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    for round in 0..20 {
        let key = FeatureKey::parse(&format!("race_{round}")).unwrap_or_else(|e| panic!("{e}"));
        let change = |c: FeatureChange| {
            let (store, key) = (shared(&store), key.clone());
            tokio::spawn(async move { store.update_feature(org.id, &key, &c, noon()).await })
        };
        let enable = change(FeatureChange::enabled(true));
        let configure = change(config(json!({ "round": round })));
        enable.await.unwrap().unwrap();
        configure.await.unwrap().unwrap();
        let features = store.features(org.id).await.unwrap();
        let row = features
            .iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("round {round}: no row"));
        assert!(row.enabled, "round {round}: the enable was lost");
        assert_eq!(
            row.config,
            json!({ "round": round }),
            "round {round}: the config was lost"
        );
    }
}
