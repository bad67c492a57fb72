//! [`SupabaseStore`]: the production backend, PostgREST through the
//! [`postgrest`] crate (feature `supabase`).
//!
//! The SQL store over PostgREST: every store primitive is one call of an
//! SQL function shipped in `migrations/` (`POST /rpc/<function>`), so each
//! store method is exactly one round trip in the common case. The same
//! functions serve [`PgStore`](crate::postgres::PgStore) over a direct
//! connection; the Rust side of each is written once, in the `sql` module.
//!
//! Two kinds of client, as in Supabase:
//!
//! - the **service client** ([`SupabaseStore::builder`] with the
//!   service-role key, or [`SupabaseStore::from_env`]): bypasses RLS, for
//!   workers and back ends — what [`Tenancy`](crate::Tenancy) runs on;
//! - a **user client** (the anon key plus the user's access token, see
//!   [`SupabaseStore::user_client`]): every request runs as that user and
//!   row-level security decides what it may read and write. Raw builders
//!   from [`SupabaseStore::from`] carry the same identity.
//!
//! Errors: PostgREST's `{code, message, details, hint}` and the HTTP status
//! are mapped onto [`ErrorKind`] in one place; the raw response is kept as
//! the error's source, an [`ApiError`]. Whether an error is retryable is
//! decided here, where it is known whether the call may have been applied:
//! a call that is not safe to repeat (reserve, release, claiming an alert,
//! creating rows) and may have landed is not retryable, whatever its kind.
//!
//! Org filters for your own tables are in [`scope`]: [`ForOrg`] and
//! [`ScopedTable`].
//!
//! ```no_run
//! use tenancy::supabase::SupabaseStore;
//! use tenancy::Tenancy;
//!
//! # fn main() -> tenancy::Result<()> {
//! // SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY from the environment.
//! let store = SupabaseStore::from_env()?;
//! let tenancy = Tenancy::builder().store(store).build()?;
//! # Ok(()) }
//! ```

mod builder;
mod error;
pub mod scope;
mod store;

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, ENV_ANON_KEY, ENV_JWT_SECRET, ENV_REST_URL,
    ENV_SERVICE_ROLE_KEY, ENV_URL, RetryConfig, SupabaseStoreBuilder,
};
pub use error::ApiError;
pub use scope::{DEFAULT_ORG_COLUMN, ForOrg, ScopedTable};

use crate::error::{Error, ErrorKind, Result};
use crate::sql::Idempotent;
use error::Failure;

/// The [`Store`](crate::store::Store) over a Supabase project's PostgREST API.
///
/// Cheap to clone: clones share the HTTP client and its connection pool.
#[derive(Clone)]
pub struct SupabaseStore {
    inner: Arc<Inner>,
}

struct Inner {
    rest_url: String,
    /// `apikey` and `Authorization`, marked sensitive.
    headers: HeaderMap,
    http: reqwest::Client,
    timeout: Duration,
    retry: RetryConfig,
    anon_key: Option<String>,
    user_client: bool,
}

impl std::fmt::Debug for SupabaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseStore")
            .field("rest_url", &self.inner.rest_url)
            .field(
                "client",
                &if self.inner.user_client {
                    "user"
                } else {
                    "service"
                },
            )
            .field("timeout", &self.inner.timeout)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl SupabaseStore {
    /// A builder: set the URL and a key, then [`build`](SupabaseStoreBuilder::build).
    pub fn builder() -> SupabaseStoreBuilder {
        SupabaseStoreBuilder::new()
    }

    /// The service client from `SUPABASE_URL` (or `SUPABASE_REST_URL`) and
    /// `SUPABASE_SERVICE_ROLE_KEY` (and `SUPABASE_ANON_KEY`, kept for
    /// [`user_client`](Self::user_client)). A missing or malformed variable
    /// is a [`Config`](ErrorKind::Config) error naming it.
    pub fn from_env() -> Result<SupabaseStore> {
        let builder = SupabaseStoreBuilder::from_env();
        if std::env::var(ENV_SERVICE_ROLE_KEY).map_or(true, |v| v.trim().is_empty()) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{ENV_SERVICE_ROLE_KEY} is not set: the service client needs it"),
            ));
        }
        builder.build()
    }

    /// A user client for the holder of `access_token` (their session
    /// JWT): same REST URL and HTTP client, the anon key as `apikey`, the
    /// token as bearer. RLS applies to everything it does. `Config` if no
    /// anon key was configured; `InvalidInput` for an empty token (which
    /// would otherwise make an anon client).
    pub fn user_client(&self, access_token: &str) -> Result<SupabaseStore> {
        if access_token.trim().is_empty() {
            return Err(Error::invalid_input("access_token", "empty"));
        }
        let anon = self.inner.anon_key.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{ENV_ANON_KEY} is not set: user clients need the anon key"),
            )
        })?;
        SupabaseStore::builder()
            .rest_url(self.inner.rest_url.clone())
            .anon_key(anon)
            .access_token(access_token)
            .http_client(self.inner.http.clone())
            .timeout(self.inner.timeout)
            .retry(self.inner.retry)
            .build()
    }

    /// Refuses a database whose tenancy schema version is not the one this
    /// crate needs ([`SCHEMA_VERSION`](crate::migrations::SCHEMA_VERSION)):
    /// a [`Config`](ErrorKind::Config) error naming both versions and the
    /// migration files to apply. Call it once at start-up.
    pub async fn check_schema(&self) -> Result<()> {
        crate::sql::Sql(self).check_schema().await
    }

    /// The PostgREST base URL requests go to.
    pub fn rest_url(&self) -> &str {
        &self.inner.rest_url
    }

    /// Whether this is a user client (RLS applies) rather than the service
    /// client.
    pub fn is_user_client(&self) -> bool {
        self.inner.user_client
    }

    /// A raw query builder for `table`, carrying this client's identity
    /// and HTTP client. Pair it with [`ForOrg`] to scope it to a tenant, or
    /// use [`table`](SupabaseStore::table).
    ///
    /// Inside an [`AuditContext`](crate::model::audit::AuditContext) scope
    /// (such as [`Tenancy::with_request_id`](crate::Tenancy::with_request_id)),
    /// it carries the context's `x-tenancy-actor` and `x-tenancy-request-id`
    /// headers, so the audit events of a write name them (the actor only
    /// for the service client: a user JWT's events name its user).
    pub fn from(&self, table: &str) -> postgrest::Builder {
        postgrest::Builder::new(
            format!("{}/{}", self.inner.rest_url, table),
            None,
            self.request_headers(),
            self.inner.http.clone(),
        )
    }

    /// A raw builder calling the SQL function `function` with the JSON
    /// object `params`; audit headers as [`from`](Self::from)'s.
    pub fn rpc(&self, function: &str, params: impl Into<String>) -> postgrest::Builder {
        postgrest::Builder::new(
            format!("{}/rpc/{}", self.inner.rest_url, function),
            None,
            self.request_headers(),
            self.inner.http.clone(),
        )
        .rpc(params)
    }

    /// The client's headers, and the task's audit context's.
    fn request_headers(&self) -> HeaderMap {
        let mut headers = self.inner.headers.clone();
        for (name, value) in crate::model::audit::AuditContext::current().headers() {
            // Both are ASCII by construction (the actor's JSON escapes the
            // rest, a RequestId is visible ASCII).
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        headers
    }

    /// Sends `request` (retrying as configured) and returns the status and
    /// body of a successful response; failures are mapped onto kinds.
    pub async fn execute(&self, request: postgrest::Builder) -> Result<(u16, Vec<u8>)> {
        let (status, body) = self
            .send("PostgREST request", Idempotent::No, request)
            .await?;
        Ok((status.as_u16(), body))
    }

    /// Sends `request` and decodes a successful response's JSON body into
    /// `T`. A body that does not decode is [`Unexpected`](ErrorKind::Unexpected),
    /// carrying the status and an excerpt.
    pub async fn fetch<T: DeserializeOwned>(&self, request: postgrest::Builder) -> Result<T> {
        self.call("PostgREST request", Idempotent::No, request)
            .await
    }

    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| error::from_transport(e, what))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| error::from_transport(e, what))?;
        if !status.is_success() {
            return Err(error::from_status(status, &body, what));
        }
        // Without a copy when the body arrived in one piece.
        Ok((status, body.into()))
    }

    /// One call with retries. The request is built once; each attempt sends
    /// a clone of it, which shares the body's bytes.
    pub(crate) async fn send(
        &self,
        what: &str,
        idempotent: Idempotent,
        request: postgrest::Builder,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let request = request.build().timeout(self.inner.timeout);
        let attempt = || async {
            // Only a streaming body cannot be cloned, and ours are strings.
            let request = request.try_clone().ok_or_else(|| Failure {
                error: Error::config(format!("{what}: a streaming request body")),
                retry: error::Retry::Never,
            })?;
            self.send_once(request, what).await
        };
        attempt
            .retry(self.inner.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retryable(idempotent == Idempotent::Yes))
            .notify(|f: &Failure, delay| {
                tracing::debug!(error = %f.error, ?delay, "retrying a PostgREST call");
            })
            .await
            .map_err(|f| f.into_error(idempotent == Idempotent::Yes))
    }

    /// One call with retries, decoding the JSON body.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        idempotent: Idempotent,
        request: postgrest::Builder,
    ) -> Result<T> {
        let (status, body) = self.send(what, idempotent, request).await?;
        serde_json::from_slice(&body).map_err(|e| error::unexpected_body(status, &body, what, e))
    }
}
