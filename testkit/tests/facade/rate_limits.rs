//! The facade's rate limits, on `MemoryStore`.
