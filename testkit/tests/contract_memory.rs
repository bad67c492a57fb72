//! The store-contract suite against the embedded [`MemoryStore`].

use std::sync::Arc;

use tenancy::MemoryStore;
use tenancy::store::DynStore;

async fn memory_store() -> Option<Arc<DynStore>> {
    Some(Arc::new(MemoryStore::new()))
}

tenancy::store_contract_tests!(memory_store);
