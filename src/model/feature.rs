//! Per-organization features: the rows of `org_features`, and a partial
//! change to one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::FeatureKey;
use crate::model::json::{refuse_nul, serialized_len};

/// Largest feature configuration accepted, as serialized JSON: 64 KiB.
pub const MAX_FEATURE_CONFIG_BYTES: usize = 64 * 1024;

/// One row of `org_features`. A feature without a row is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The feature's key.
    pub key: FeatureKey,
    /// Whether it is on.
    pub enabled: bool,
    /// Its configuration; `null` when none is set.
    pub config: serde_json::Value,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// When this row lapses and the organization's plan (or off, without
    /// one) applies again; `None`: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A change to one feature row, applied atomically by the store: only what
/// is `Some` changes, so concurrent changes to `enabled` and `config` never
/// undo each other. A row that does not exist yet starts disabled, with a
/// `null` config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureChange {
    /// Turn the feature on or off.
    pub enabled: Option<bool>,
    /// Replace the configuration.
    pub config: Option<serde_json::Value>,
    /// Set (`Some(Some(at))`) or clear (`Some(None)`) when the row lapses.
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl FeatureChange {
    /// Turns the feature on (`true`) or off, keeping its config.
    pub fn enabled(enabled: bool) -> Self {
        FeatureChange {
            enabled: Some(enabled),
            ..FeatureChange::default()
        }
    }

    /// Replaces the config, keeping whether the feature is on. The config is
    /// checked: at most [`MAX_FEATURE_CONFIG_BYTES`] serialized, and no NUL
    /// character anywhere (PostgreSQL cannot store one); otherwise
    /// `InvalidInput` naming `config`.
    pub fn config(config: serde_json::Value) -> Result<Self> {
        let change = FeatureChange {
            config: Some(config),
            ..FeatureChange::default()
        };
        change.check()?;
        Ok(change)
    }

    /// Sets when the row lapses (`Some(at)`: from `at` on it counts as
    /// absent and the organization's plan, or off, applies again) or
    /// (`None`) makes it permanent.
    pub fn until(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Checks the config as [`config`](Self::config) does, for a change
    /// built from its public fields.
    pub(crate) fn check(&self) -> Result<()> {
        let Some(config) = &self.config else {
            return Ok(());
        };
        refuse_nul("config", config)?;
        let size = serialized_len(config);
        if size > MAX_FEATURE_CONFIG_BYTES {
            return Err(Error::invalid_input(
                "config",
                format_args!("{size} bytes serialized; the limit is {MAX_FEATURE_CONFIG_BYTES}"),
            ));
        }
        Ok(())
    }

    /// The row after this change, from the row before it (`None`: no row).
    /// A row that lapsed by `now` (`expires_at <= now`) counts as absent:
    /// the change starts from a disabled row with a `null` config and no
    /// expiry.
    pub fn apply(&self, key: &FeatureKey, before: Option<&Feature>, now: DateTime<Utc>) -> Feature {
        let before = before.filter(|f| f.expires_at.is_none_or(|at| at > now));
        Feature {
            key: key.clone(),
            enabled: self
                .enabled
                .unwrap_or_else(|| before.is_some_and(|f| f.enabled)),
            config: match (&self.config, before) {
                (Some(config), _) => config.clone(),
                (None, Some(f)) => f.config.clone(),
                (None, None) => serde_json::Value::Null,
            },
            updated_at: now,
            expires_at: match self.expires_at {
                Some(expires_at) => expires_at,
                None => before.and_then(|f| f.expires_at),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let key = FeatureKey::from_static("veo");
        let now = DateTime::UNIX_EPOCH;
        let on = FeatureChange::enabled(true).apply(&key, None, now);
        assert!(on.enabled && on.config.is_null());
        let configured =
            FeatureChange::config(json!({"max": 3}))
                .unwrap()
                .apply(&key, Some(&on), now);
        assert!(configured.enabled);
        assert_eq!(configured.config, json!({"max": 3}));
        let off = FeatureChange::enabled(false).apply(&key, Some(&configured), now);
        assert_eq!(off.config, json!({"max": 3}));
    }

    #[test]
    fn a_lapsed_row_counts_as_absent_and_until_sets_or_clears_the_expiry() {
        let key = FeatureKey::from_static("veo");
        let t0 = DateTime::UNIX_EPOCH;
        let t1 = t0 + chrono::TimeDelta::seconds(10);
        let row = FeatureChange::config(json!({"max": 3}))
            .unwrap()
            .until(Some(t1))
            .apply(&key, None, t0);
        assert_eq!(row.expires_at, Some(t1));
        let kept = FeatureChange::enabled(true).apply(&key, Some(&row), t0);
        assert_eq!(
            (kept.expires_at, kept.config.clone()),
            (Some(t1), json!({"max": 3}))
        );
        let fresh = FeatureChange::enabled(true).apply(&key, Some(&row), t1);
        assert!(fresh.enabled);
        assert_eq!((fresh.expires_at, fresh.config), (None, json!(null)));
        let permanent = FeatureChange::enabled(true)
            .until(None)
            .apply(&key, Some(&row), t0);
        assert_eq!(permanent.expires_at, None);
    }

    #[test]
    fn configs_with_nul_or_too_large_are_refused() {
        assert_eq!(
            FeatureChange::config(json!({"a": "\u{0}"}))
                .unwrap_err()
                .field(),
            Some("config")
        );
        let big = json!("x".repeat(MAX_FEATURE_CONFIG_BYTES));
        assert_eq!(
            FeatureChange::config(big).unwrap_err().field(),
            Some("config")
        );
    }
}
