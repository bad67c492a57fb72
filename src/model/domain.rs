//! Verified email domains, and who may join an organization through one.
