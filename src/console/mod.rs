//! The console (feature `console`): web pages for an organization's people
//! and for the platform operator, as an axum [`Router`] to mount at any
//! prefix.
//!
//! ```no_run
//! # use tenancy::{MemoryStore, Tenancy};
//! # use tenancy::axum::TokenVerifier;
//! use tenancy::console::{self, ConsoleConfig, OperatorPolicy};
//! # fn main() -> tenancy::Result<()> {
//! # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
//! # let verifier = TokenVerifier::hs256("a-secret-of-at-least-thirty-two-bytes!")?;
//! let config = ConsoleConfig::builder(tenancy, verifier)
//!     .operators(OperatorPolicy::app_metadata_flag("tenancy_operator"))
//!     .build()?;
//! let app: axum::Router = axum::Router::new().nest("/tenancy", console::router(config));
//! # Ok(()) }
//! ```
//!
//! # Pages
//!
//! For people in an organization, each through a
//! [`TenantContext`](crate::TenantContext) the store confirms (a URL
//! naming another organization is 403):
//!
//! - `GET /` — the user's organizations, at the mount point itself
//!   (`/tenancy` above: axum's `nest` does not match `/tenancy/`, so a
//!   host that wants it adds a redirect); `GET /fragments/org-selector` —
//!   the org selector alone, for the host's own sidebar ([`org_selector`]
//!   renders the same in-process);
//! - `POST /orgs` — a user who belongs to no organization creates one and
//!   becomes its owner, from a form on the start page; only where the
//!   host allows it
//!   ([`allow_first_organization`](ConsoleConfigBuilder::allow_first_organization),
//!   off by default);
//! - `GET /orgs/{org}/members` — members with their roles; forms to change
//!   a role (the picker starts at the member's current role), hand
//!   ownership to another member (owners), remove a member, and leave,
//!   shown only where the role rules allow them (and checked again on
//!   every post);
//! - `GET /orgs/{org}/usage` — each limit's usage, holds and remaining, a
//!   bar coloured by level and the reset time in the organization's time
//!   zone; a daily chart of the month per metric, with its numbers as a
//!   table; the top members per metric, for admins and owners.
//! - `GET /orgs/{org}/plan` — the organization's plan, version and trial
//!   end, and what it includes: each feature, limit and rate limit in
//!   effect with its source (the plan version, or an override and when
//!   it lapses); anything not listed is the default (off, unlimited).
//!
//! For the platform operator (whom [`OperatorPolicy`] names; nobody by
//! default; anyone else gets 403):
//!
//! - `GET /operator` — the organizations nearest their limits;
//! - `GET /operator/orgs?q=&page=` — organizations by name or slug, with
//!   their tightest limit, 50 a page;
//! - `GET /operator/orgs/{org}` — features (toggle; edit the JSON
//!   configuration, refused with where the JSON broke), limits (set,
//!   change mode, remove), and its owners, with a form to transfer
//!   ownership to a user id
//!   ([`Operator::transfer_ownership`](crate::Operator::transfer_ownership)).
//!   The same page shows the organization's plan (assign one or none,
//!   start a trial with a fallback, move it to another version of its
//!   plan) and its effective entitlements with their sources; its own
//!   feature, limit and rate-limit rows are the overrides, each set with
//!   an optional expiry;
//! - `GET /operator/plans` — the plan catalog: every plan with its
//!   versions, a form to create a plan, and one to migrate organizations
//!   from one version to another (one organization, or all on it);
//! - `GET /operator/plans/{key}` — each version of a plan in full, and
//!   the edit form, prefilled from the latest version, which creates
//!   the next version (versions never change).
//!
//! # Identity and security
//!
//! - A request is signed in with a Supabase access token in
//!   `Authorization: Bearer` (as the axum integration reads it) or, for the
//!   console only, in a cookie (`sb-access-token` by default), checked by
//!   the [`TokenVerifier`](crate::axum::TokenVerifier).
//! - Every form carries a CSRF token (HMAC-SHA256 of the user and an expiry
//!   12 hours ahead, with the console's secret); a post without a valid one
//!   is 403 before anything changes. Posts from another site (by
//!   `Sec-Fetch-Site` or `Origin`) are refused too.
//! - Every page is server-rendered through auto-escaping templates
//!   (askama), works without JavaScript and runs none: the
//!   Content-Security-Policy allows no script at all, the console's own
//!   stylesheet, and forms to itself only; pages are never framed, never
//!   cached, and render no token or secret.
//! - Every action goes through the facade, which checks the same role
//!   matrix as the API (and the operator handle for operator pages).

mod assets;
mod auth;
mod chart;
mod config;
mod form;
mod pages;
mod render;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, get, post};

pub use config::{ConsoleConfig, ConsoleConfigBuilder, MIN_CSRF_SECRET_BYTES, OperatorPolicy};

use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::tenancy::Tenancy;

/// The console's routes, to mount with `Router::nest` at any prefix. The
/// router has a fallback (its 404 page): `merge` it at the root only into a
/// router without one (axum panics on two), and it then answers the host's
/// unknown paths too.
pub fn router(config: ConsoleConfig) -> Router {
    use pages::{index, members, operator, usage};
    let pages = Router::new()
        .route("/", get(index::index))
        .route("/fragments/org-selector", get(index::selector_fragment))
        .route("/assets/{name}", get(assets::asset))
        .route("/orgs/{org}/usage", get(usage::usage))
        .route("/orgs/{org}/members", get(members::list))
        .route("/operator", get(operator::overview))
        .route("/operator/orgs", get(operator::organizations))
        .route("/operator/orgs/{org}", get(operator::organization));
    let area_pages = [
        pages::invitations::pages(),
        pages::domains::pages(),
        pages::audit::pages(),
        pages::plans::pages(),
        pages::reports::pages(),
    ];
    area_pages
        .into_iter()
        .flatten()
        .chain(form_routes())
        .fold(pages, |router, (path, handler)| router.route(path, handler))
        .fallback(|| async { render::ConsoleError::not_found() })
        // On every response, axum's own rejections (405, 415) included.
        .layer(axum::middleware::map_response(secure))
        .with_state(Arc::new(config))
}

/// Every form's route, and nothing else posts: the router adds these, and
/// the security test posts to each of them (`post_routes`). Each handler
/// reads its form through `CsrfForm`, which checks the token.
fn form_routes() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    use pages::{index, members, operator};
    let areas = [
        pages::invitations::forms(),
        pages::domains::forms(),
        pages::audit::forms(),
        pages::plans::forms(),
        pages::reports::forms(),
    ];
    let core = vec![
        ("/orgs", post(index::create_organization)),
        (
            "/orgs/{org}/members/{user}/role",
            post(members::change_role),
        ),
        (
            "/orgs/{org}/members/{user}/owner",
            post(members::make_owner),
        ),
        ("/orgs/{org}/members/{user}/remove", post(members::remove)),
        ("/orgs/{org}/leave", post(members::leave)),
        ("/operator/orgs/{org}/features", post(operator::add_feature)),
        (
            "/operator/orgs/{org}/features/{key}/toggle",
            post(operator::toggle_feature),
        ),
        (
            "/operator/orgs/{org}/features/{key}/config",
            post(operator::set_feature_config),
        ),
        ("/operator/orgs/{org}/limits", post(operator::set_limit)),
        (
            "/operator/orgs/{org}/owner",
            post(operator::transfer_ownership),
        ),
        (
            "/operator/orgs/{org}/limits/{id}/remove",
            post(operator::remove_limit),
        ),
        (
            "/operator/orgs/{org}/rate-limits",
            post(operator::set_rate_limit),
        ),
        (
            "/operator/orgs/{org}/rate-limits/{id}/remove",
            post(operator::remove_rate_limit),
        ),
    ];
    core.into_iter()
        .chain(areas.into_iter().flatten())
        .collect()
}

/// The paths of every route that takes a form (`POST`), as the router
/// declares them (`/orgs/{org}/leave`), for tests that post to each one.
#[doc(hidden)]
#[cfg(feature = "test-util")]
pub fn post_routes() -> Vec<&'static str> {
    form_routes().into_iter().map(|(path, _)| path).collect()
}

async fn secure(mut response: axum::response::Response) -> axum::response::Response {
    render::security_headers(response.headers_mut());
    response
}

/// The org selector of `user` as an HTML fragment, for the host's own
/// layout: each organization links to its usage page under `mount` (where
/// the console is nested, such as `/tenancy`), `current` marked with
/// `aria-current="true"`. Names are escaped.
pub async fn org_selector(
    tenancy: &Tenancy,
    user: UserId,
    mount: &str,
    current: Option<OrgId>,
) -> Result<String> {
    let base = render::Base(mount.trim_end_matches('/').to_owned());
    pages::selector_html(tenancy, user, &base, current)
        .await
        .map_err(|_| crate::error::Error::unexpected("the org selector did not render"))
}
