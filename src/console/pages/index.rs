//! The start page (the user's organizations) and the embeddable org
//! selector.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, OrgEntry, chrome_with, org_entries, selector_html};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::render::{Base, ConsoleError, html_response, page};
use crate::ids::OrgId;

#[derive(Template)]
#[template(path = "console/index.html")]
struct Index {
    chrome: Chrome,
    orgs: Vec<OrgEntry>,
}

/// `GET /`: the user's organizations, their default first.
pub(in crate::console) async fn index(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
) -> Result<Response, ConsoleError> {
    let orgs = config.tenancy.orgs_for_user(viewer.user).await?;
    let chrome = chrome_with(&orgs, &viewer, &base, "Your organizations", None, "", None)?;
    let orgs = org_entries(&orgs, &base, None);
    Ok(page(&Index { chrome, orgs }))
}

#[derive(Debug, Deserialize)]
pub(in crate::console) struct Current {
    current: Option<String>,
}

/// `GET /fragments/org-selector?current=<org id>`: the org selector alone,
/// to embed in the host's own layout (it carries no stylesheet; style the
/// `.org-selector` classes, or link the console's).
pub(in crate::console) async fn selector_fragment(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Query(current): Query<Current>,
) -> Result<Response, ConsoleError> {
    let current = current
        .current
        .as_deref()
        .and_then(|c| OrgId::parse(c).ok());
    let html = selector_html(&config.tenancy, viewer.user, &base, current).await?;
    Ok(html_response(StatusCode::OK, html))
}
