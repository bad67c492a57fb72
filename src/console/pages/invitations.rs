//! Invitations: the invite form, pending invitations (revoke, resend), and the accept page an invite link opens.

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
