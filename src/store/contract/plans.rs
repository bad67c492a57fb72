//! The contract of plans: the catalog's versions are immutable and
//! numbered in order, an organization has exactly one assignment, trials
//! fall to their fallback at their end, overrides sit on top of the plan
//! until they lapse, and the effective view is the same on every backend.

use std::sync::Arc;

use crate::store::DynStore;

#[doc(hidden)]
#[macro_export]
macro_rules! __plan_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            the_catalog_starts_empty,
        }
    };
}

/// A new store's catalog has no plans.
pub async fn the_catalog_starts_empty(store: Arc<DynStore>) {
    assert!(store.plan_versions(None).await.unwrap().is_empty());
}
