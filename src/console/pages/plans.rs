//! The plan pages: the operator's catalog (create, edit as a new version,
//! migrate organizations), an organization's assignment, trial and
//! overrides, and the organization's own plan.

use std::sync::Arc;

use axum::routing::MethodRouter;

use crate::console::config::ConsoleConfig;

/// This area's pages (`GET`); the router adds them.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    Vec::new()
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    Vec::new()
}
