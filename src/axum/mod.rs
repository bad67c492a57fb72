//! Host integration for axum (feature `axum`): turn a Supabase access token
//! into a [`TenantContext`](crate::TenantContext) in a few lines.
//!
//! - [`TokenVerifier`] checks the token: HS256 with the project's JWT
//!   secret, or RS256/ES256 with a JWKS document (JSON, or a URL cached and
//!   fetched at most once per interval, one request for concurrent misses);
//!   expiry with a leeway; audience `authenticated`. `alg: none`, bad
//!   signatures, expired and malformed tokens are all a 401 whose body
//!   leaks nothing.
//! - [`TenantAuth`] holds the verifier, the facade and where the org comes
//!   from ([`OrgSource`]: the `X-Org-Id` header by default, a cookie, or a
//!   path parameter). A request that names no org (no such header or
//!   cookie) gets the user's default org; one whose header or cookie is
//!   unreadable, empty or not a UUID gets 400, and a route without the
//!   configured path parameter 500 — never the default org. Membership is
//!   always re-checked: a non-member gets 403.
//! - Extractors: [`Tenant`] (the context, and the access token it was
//!   resolved from), [`FeatureGate<F>`] (403 when the feature is off),
//!   [`Metered<M>`] (reserves before the handler, commits what the handler
//!   reports, releases otherwise; a denial is 429 with `Retry-After` and a
//!   JSON body), and [`SignedIn`] (a verified user with no organization
//!   context: onboarding, such as creating the first organization).
//!
//! ```
//! use axum::extract::FromRef;
//! use axum::routing::get;
//! use tenancy::axum::{SignedIn, Tenant, TenantAuth};
//!
//! #[derive(Clone)]
//! struct App { auth: TenantAuth }
//! impl FromRef<App> for TenantAuth { fn from_ref(app: &App) -> Self { app.auth.clone() } }
//!
//! async fn me(Tenant(ctx, _): Tenant) -> String { format!("{} in {}", ctx.user(), ctx.org()) }
//! async fn hello(me: SignedIn) -> String { format!("{} may create an org", me.user()) }
//!
//! let routes: axum::Router<App> = axum::Router::new()
//!     .route("/me", get(me))
//!     .route("/hello", get(hello));
//! ```

mod extract;
mod rejection;
mod token;

pub use extract::{
    Abandoned, AccessToken, FeatureGate, FeatureName, Metered, MeteredOperation, OrgSource,
    SignedIn, Tenant, TenantAuth, UsageMeter,
};
#[cfg(feature = "console")]
pub(crate) use extract::{bearer_token, cookie_value};
pub use rejection::TenantRejection;
pub use token::{Claims, MIN_HS256_SECRET_BYTES, TokenVerifier, TokenVerifierBuilder};
