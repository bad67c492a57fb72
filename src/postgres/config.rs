//! [`PgStoreBuilder`]: the URL, the pool and the timeouts.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{Inner, PgStore};
use crate::error::{Error, Result};

/// The variable [`PgStore::from_env`] reads first.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// The variable [`PgStore::from_env`] reads when `DATABASE_URL` is unset.
pub const ENV_SUPABASE_DB_URL: &str = "SUPABASE_DB_URL";
/// Connections in the pool unless set.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long one attempt of a call may take, waiting for a connection
/// included, unless set.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`PgStore`]. Every setting is checked by [`build`](Self::build).
#[derive(Clone, Default)]
pub struct PgStoreBuilder {
    url: Option<String>,
    source: Option<&'static str>,
    pool_size: Option<usize>,
    call_timeout: Option<Duration>,
    max_retries: Option<usize>,
}

impl std::fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the password.
        f.debug_struct("PgStoreBuilder")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("call_timeout", &self.call_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl PgStoreBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        PgStoreBuilder::default()
    }

    /// A builder with the URL from `DATABASE_URL`, or `SUPABASE_DB_URL`.
    /// `Config` if neither is set.
    pub fn from_env() -> Result<Self> {
        for name in [ENV_DATABASE_URL, ENV_SUPABASE_DB_URL] {
            if let Ok(url) = std::env::var(name)
                && !url.trim().is_empty()
            {
                return Ok(PgStoreBuilder {
                    url: Some(url),
                    source: Some(name),
                    ..PgStoreBuilder::default()
                });
            }
        }
        Err(Error::config(format!(
            "neither {ENV_DATABASE_URL} nor {ENV_SUPABASE_DB_URL} is set: PgStore needs a \
             postgres:// URL (Supabase's pooler: port 6543)"
        )))
    }

    /// The connection URL, `postgres://user:password@host:port/db`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self.source = None;
        self
    }

    /// The most connections the pool opens (default
    /// [`DEFAULT_POOL_SIZE`]); at least 1.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// How long one attempt of a call may take, waiting for a connection
    /// included (default [`DEFAULT_CALL_TIMEOUT`]); more than zero. An
    /// attempt past it is abandoned: its statement is cancelled and its
    /// connection discarded; the call is then retried where that is safe
    /// (see [`max_retries`](Self::max_retries)), else fails with
    /// `Unavailable`. A call can so take up to `max_retries + 1` attempts
    /// plus the backoff between them.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// How many times a failed call is repeated where that is safe
    /// (default 3): always when nothing was sent (a refused connection) or
    /// nothing landed (a serialization failure or deadlock); after a
    /// dropped connection or a timeout only for calls that are idempotent
    /// (recording, committing, reads). Backoff from 20 ms to 1 s.
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// The store. No connection is opened yet. `Config` for a missing or
    /// malformed URL, a zero pool size or timeout.
    pub fn build(self) -> Result<PgStore> {
        let name = self.source.unwrap_or("url");
        let url = self
            .url
            .ok_or_else(|| Error::config("PgStore needs a connection URL (`url`)"))?;
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::config(format!("{name} is not a valid PostgreSQL connection URL")).with_source(e)
        })?;
        let pool_size = self.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if pool_size == 0 {
            return Err(Error::config("pool_size: at least 1"));
        }
        let call_timeout = self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT);
        if call_timeout.is_zero() {
            return Err(Error::config("call_timeout: more than zero"));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(call_timeout))
            .create_timeout(Some(call_timeout))
            .build()
            .map_err(|e| Error::config("cannot build the connection pool").with_source(e))?;
        Ok(PgStore {
            inner: std::sync::Arc::new(Inner {
                pool,
                call_timeout,
                max_retries: self.max_retries.unwrap_or(3),
                functions: std::sync::Mutex::default(),
                statements: std::sync::Mutex::default(),
            }),
            user: None,
        })
    }
}
