//! The contract of rate limits (skipped where `Backend::rate_limits` is `None`).

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __rate_limit_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
        }
    };
}
