//! The facade's invitations, on `MemoryStore`.
