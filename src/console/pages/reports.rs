//! The reports page: an organization's usage by range, granularity and
//! grouping, as a chart and its table, with a CSV download.

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
