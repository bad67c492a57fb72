//! The facade's domains, on `MemoryStore`.
