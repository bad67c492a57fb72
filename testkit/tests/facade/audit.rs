//! The facade's audit, on `MemoryStore`.
