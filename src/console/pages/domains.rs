//! Verified domains: the operator's list per organization, the org's join setting, and joining.

use std::sync::Arc;

use axum::routing::MethodRouter;

use crate::console::config::ConsoleConfig;

/// This area's pages (`GET`), added to the console's router.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    Vec::new()
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    Vec::new()
}
