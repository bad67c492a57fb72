//! The contract of budget leases (skipped where `Backend::leases` is `None`).

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __lease_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
        }
    };
}
