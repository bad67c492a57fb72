//! The store-contract suite against the embedded [`MemoryStore`].

#[path = "common/responses.rs"]
mod responses;

use std::sync::Arc;

use tenancy::MemoryStore;
use tenancy::store::DynStore;

async fn memory_store() -> Option<Arc<DynStore>> {
    Some(Arc::new(MemoryStore::new()))
}

tenancy::store_contract_tests!(memory_store);

/// Errors through `MemoryStore` are responses in the caller's terms, as
/// through the SQL stores.
#[tokio::test]
async fn errors_are_safe_responses() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let tenancy = tenancy::Tenancy::builder()
        .store(store.clone())
        .build()
        .unwrap();
    responses::errors_are_safe_responses(&tenancy, &store, &mut tenancy::UserId::new_v7, None)
        .await;
}
