//! The audit log in SQL: triggers, immutability, retention and who reads it.
