//! Audit events: who changed what, before and after.
