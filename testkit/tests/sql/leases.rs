//! Budget leases in SQL: the invariant, expiry and the crashed instance.
