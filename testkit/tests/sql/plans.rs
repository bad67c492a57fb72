//! The plans migration: the catalog and its RLS, assignments, overrides
//! with expiry, the effective view every SQL entry point reads, and the
//! change notifications.
