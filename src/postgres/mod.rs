//! [`PgStore`]: the SQL store over direct PostgreSQL connections (feature
//! `postgres`), for services that reach Supabase's database through its
//! pooler (Supavisor, port 6543, transaction mode) or directly.
//!
//! It calls the same SQL functions as
//! [`SupabaseStore`](crate::supabase::SupabaseStore), written once in the
//! `sql` module, without the HTTP hop. Made for a transaction-mode pooler:
//!
//! - every statement is unnamed (tokio-postgres `query_typed`: Parse, Bind
//!   and Execute in one round trip), so nothing depends on named prepared
//!   statements, which Supavisor's transaction mode and PgBouncer before
//!   1.21 do not carry between transactions;
//! - no session state: a service-mode call is one statement (its own
//!   transaction); a user-mode call is one transaction whose settings are
//!   transaction-local.
//!
//! Two modes, as with Supabase's two clients:
//!
//! - **service mode** ([`PgStore::connect`], [`PgStore::from_env`]): calls
//!   run as the connection's login role. On Supabase that is `postgres`,
//!   which bypasses RLS: what [`Tenancy`](crate::Tenancy) and a
//!   [`UsageRecorder`](crate::UsageRecorder) run on.
//! - **user mode** ([`PgStore::as_user`]): each call is one transaction that
//!   first sets what PostgREST sets for a verified JWT,
//!   `set_config('role', <claims.role>, true)` and
//!   `set_config('request.jwt.claims', <claims>, true)`, so row-level
//!   security, `auth.uid()` and the crate's triggers see that user. The
//!   login role must be a member of the claims' role (Supabase's
//!   `postgres` is a member of `authenticated`). [`PgStore::user_transaction`]
//!   runs the host's own SQL the same way: the direct-connection
//!   counterpart of [`ScopedTable`](crate::supabase::ScopedTable).
//!
//! TLS (rustls): required by `sslmode=require` in the URL, or used whenever
//! offered once a CA is given with
//! [`tls_root_certificate_pem`](PgStoreBuilder::tls_root_certificate_pem);
//! the server's certificate and name are always verified.
//!
//! Entitlement changes: with a
//! [`listen_url`](PgStoreBuilder::listen_url) (a direct or session-mode
//! endpoint), one extra connection `LISTEN`s for them and
//! [`watch_entitlements`](crate::store::PlanStore::watch_entitlements)
//! streams them, so every [`Tenancy`](crate::Tenancy) forgets a changed
//! plan or override as it commits; without one it returns `None` and the
//! caches poll a version counter.
//!
//! Errors: a database error's SQLSTATE maps onto an
//! [`ErrorKind`](crate::ErrorKind) in the SQL store's one map, and the
//! error's source is a [`SqlError`](crate::sql::SqlError) (SQLSTATE,
//! constraint, message). A serialization failure or deadlock is retried
//! (nothing landed); a dropped connection is retried only for calls that
//! are safe to repeat; a refused connection always.

mod call;
mod config;
mod listen;
mod migrate;
mod user;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::error::Result;
use crate::store::{Backend, LeaseStore, Principal, RateLimitStore, ReportStore};

pub use config::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_POOL_SIZE, ENV_DATABASE_LISTEN_URL, ENV_DATABASE_URL,
    ENV_SUPABASE_DB_URL, MAX_CALL_TIMEOUT, MAX_POOL_SIZE, MAX_RETRIES, PgStoreBuilder,
};
pub use deadpool_postgres;
pub use tokio_postgres;

/// The [`Store`](crate::store::Store) over direct PostgreSQL connections.
///
/// Cheap to clone: clones share the pool. See the [module docs](self).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    user: Option<Arc<user::UserClaims>>,
}

/// How connections are made: plain, or TLS through rustls.
#[derive(Clone)]
enum Connector {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

struct Inner {
    pool: Pool,
    /// Also what cancels a statement that ran past the call timeout.
    connector: Connector,
    call_timeout: Duration,
    max_retries: usize,
    /// The crate's functions in `public` with their arguments, read from
    /// `pg_proc` on first use.
    functions: Mutex<Option<Arc<HashMap<String, call::Function>>>>,
    /// The statement text of each (function, arguments given, columns).
    statements: Mutex<HashMap<String, Arc<str>>>,
    /// The `LISTEN` connection for entitlement changes, when configured
    /// ([`PgStoreBuilder::listen_url`]).
    listener: Option<listen::Listener>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.pool.status();
        f.debug_struct("PgStore")
            .field(
                "mode",
                &if self.user.is_some() {
                    "user"
                } else {
                    "service"
                },
            )
            .field("pool_size", &status.max_size)
            .field("call_timeout", &self.inner.call_timeout)
            .field("tls", &matches!(self.inner.connector, Connector::Rustls(_)))
            .field("listen", &self.inner.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// A builder: a connection URL, then [`build`](PgStoreBuilder::build).
    pub fn builder() -> PgStoreBuilder {
        PgStoreBuilder::new()
    }

    /// A service-mode store connecting to `url` (`postgres://…`) with the
    /// default pool size and timeouts. Connections are opened on first use.
    pub fn connect(url: &str) -> Result<PgStore> {
        PgStore::builder().url(url).build()
    }

    /// A service-mode store from `DATABASE_URL`, or `SUPABASE_DB_URL` when
    /// that is unset, listening for entitlement changes on
    /// `DATABASE_LISTEN_URL` when that is set (see
    /// [`PgStoreBuilder::listen_url`]). A missing or malformed URL is a
    /// [`Config`](crate::ErrorKind::Config) error naming the variable.
    pub fn from_env() -> Result<PgStore> {
        PgStoreBuilder::from_env()?.build()
    }

    /// The connection pool, for the service's own queries (as the login
    /// role). Use unnamed statements (`query_typed`) behind a
    /// transaction-mode pooler.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }
}

impl Backend for PgStore {
    fn principal(&self) -> Principal {
        if self.user.is_some() {
            Principal::User
        } else {
            Principal::Service
        }
    }

    fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        Some(self)
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }

    fn reports(&self) -> Option<&dyn ReportStore> {
        Some(self)
    }
}
