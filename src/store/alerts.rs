//! [`AlertStore`]: claiming alerts once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::limits::AlertKey;

use super::Backend;

/// Alert claims: each threshold fires once, across every instance.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names.
#[async_trait]
pub trait AlertStore: Backend {
    /// Records that the alert `key` fired. True the first time for a key,
    /// false ever after: exactly one caller wins, however many race.
    async fn claim_alert(&self, key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool>;
}

forward_capability!(AlertStore, alert_store_methods);
