//! The facade's leases, on `MemoryStore`.
