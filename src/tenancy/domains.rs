//! Verified domains and joining an organization through one.
