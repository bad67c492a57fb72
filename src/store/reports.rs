//! [`ReportStore`]: usage history for billing: reports from rollups, the
//! event log's reads, exports and retention.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, the SQL store, the routing below) import none.
method_list!($ report_store_methods {
});

/// Usage history: reports from rollups kept with every record, the event
/// log's reads, exports and retention.
///
/// An optional capability, outside the [`Store`](super::Store) bundle: a
/// backend that has it returns itself from [`Backend::reports`].
#[async_trait]
pub trait ReportStore: Backend {}

forward_capability!(ReportStore, report_store_methods);

/// The answer where a store has no usage history: `Unsupported`.
pub(crate) fn unsupported() -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::Unsupported,
        "this store has no usage history (Backend::reports is None)",
    )
}

/// `impl ReportStore for DynStore` from the method list: each call goes to
/// the store's [`Backend::reports`], or is `Unsupported`.
macro_rules! routed_through_backend {
    (; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        /// Any [`Store`](super::Store) answers report calls through its
        /// [`Backend::reports`]: the capability when it has one,
        /// `Unsupported` otherwise. Wrappers that hold a
        /// [`DynStore`](super::DynStore) (fault injection) pass calls on
        /// this way.
        #[async_trait]
        impl ReportStore for super::DynStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    match self.reports() {
                        Some(reports) => reports.$name($($arg),*).await,
                        None => Err(unsupported()),
                    }
                }
            )*
        }
    };
}

report_store_methods!(routed_through_backend! {});

pub(crate) use report_store_methods;
