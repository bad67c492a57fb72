//! Invitations in SQL: creating, accepting, RLS and the token hashes.
