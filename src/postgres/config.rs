//! [`PgStoreBuilder`]: the URL, the pool and the timeouts.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::listen::Listener;
use super::{Connector, Inner, PgStore};
use crate::config::{check_count, check_duration};
use crate::error::{Error, Result};

/// The variable [`PgStore::from_env`] reads first.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// The variable [`PgStore::from_env`] reads when `DATABASE_URL` is unset.
pub const ENV_SUPABASE_DB_URL: &str = "SUPABASE_DB_URL";
/// The variable [`PgStore::from_env`] reads for the
/// [`listen_url`](PgStoreBuilder::listen_url), when set and not blank.
pub const ENV_DATABASE_LISTEN_URL: &str = "DATABASE_LISTEN_URL";
/// Connections in the pool unless set.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long one attempt of a call may take, waiting for a connection
/// included, unless set.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections a pool may open.
pub const MAX_POOL_SIZE: usize = 1_000;
/// The longest call timeout.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(3_600);
/// The most retries of one call.
pub const MAX_RETRIES: usize = 20;

/// Builds a [`PgStore`]. Every setting is checked by [`build`](Self::build).
#[derive(Clone, Default)]
pub struct PgStoreBuilder {
    url: Option<String>,
    source: Option<&'static str>,
    pool_size: Option<usize>,
    call_timeout: Option<Duration>,
    max_retries: Option<usize>,
    root_certificates: Vec<Vec<u8>>,
    listen_url: Option<String>,
    listen_source: Option<&'static str>,
}

impl std::fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the password.
        f.debug_struct("PgStoreBuilder")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("call_timeout", &self.call_timeout)
            .field("max_retries", &self.max_retries)
            .field("root_certificates", &self.root_certificates.len())
            .field(
                "listen_url",
                &self.listen_url.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl PgStoreBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        PgStoreBuilder::default()
    }

    /// A builder with the URL from `DATABASE_URL`, or `SUPABASE_DB_URL`,
    /// and the [`listen_url`](Self::listen_url) from `DATABASE_LISTEN_URL`
    /// when that is set and not blank. `Config` if neither URL is set.
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through
    /// `lookup` (for tests and configuration layers).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let listen_url = lookup(ENV_DATABASE_LISTEN_URL).filter(|url| !url.trim().is_empty());
        for name in [ENV_DATABASE_URL, ENV_SUPABASE_DB_URL] {
            if let Some(url) = lookup(name)
                && !url.trim().is_empty()
            {
                return Ok(PgStoreBuilder {
                    url: Some(url),
                    source: Some(name),
                    listen_source: listen_url.as_ref().map(|_| ENV_DATABASE_LISTEN_URL),
                    listen_url,
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
    /// [`DEFAULT_POOL_SIZE`]); 1 to [`MAX_POOL_SIZE`].
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// How long one attempt of a call may take, waiting for a connection
    /// included (default [`DEFAULT_CALL_TIMEOUT`]); 1 ms to
    /// [`MAX_CALL_TIMEOUT`]. An
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
    /// (default 3, at most [`MAX_RETRIES`]): always when nothing was sent (a refused connection) or
    /// nothing landed (a serialization failure or deadlock); after a
    /// dropped connection or a timeout only for calls that are idempotent
    /// (recording, committing, reads). Backoff from 20 ms to 1 s.
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Also trusts the CA certificates in `pem` for TLS (Supabase's
    /// database CA, or your own), beside Mozilla's roots; and uses TLS
    /// whenever the server offers it (`sslmode=prefer`, the URL's default),
    /// verifying the server's certificate and name.
    ///
    /// TLS is used when the URL says `sslmode=require` (then it is
    /// required) or when a certificate was given here; `sslmode=disable`
    /// turns it off. A server whose certificate does not verify is an
    /// `Unavailable` error, never a silent plain connection.
    pub fn tls_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.root_certificates.push(pem.as_ref().to_vec());
        self
    }

    /// A second URL, for one connection that `LISTEN`s for entitlement
    /// changes, so that every [`Tenancy`](crate::Tenancy) on this store
    /// forgets a changed plan, assignment or override as soon as it commits
    /// (see [`TenancyBuilder::entitlement_poll`](crate::TenancyBuilder::entitlement_poll)
    /// for the bound). Without it, the caches poll a version counter
    /// instead.
    ///
    /// It must reach PostgreSQL directly or through a **session-mode**
    /// pooler: a transaction-mode pooler (Supavisor on port 6543, PgBouncer
    /// with `pool_mode = transaction`) does not carry `LISTEN`. On Supabase
    /// that is the direct connection (`db.<project>.supabase.co:5432`) or
    /// the pooler's session mode (port 5432), with the same login as
    /// [`url`](Self::url). The store opens **one** connection (per store,
    /// shared by its clones), on the first watch, and keeps it: count it
    /// per instance against the endpoint's connection limit. It sends a
    /// round trip every 15 s to notice a dead connection, and opens a lost
    /// one again with backoff (100 ms doubling to 30 s); on every
    /// (re)connection the caches forget everything, since the
    /// notifications sent meanwhile were lost. TLS settings are those of
    /// this builder, read from this URL's `sslmode`.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self.listen_source = None;
        self
    }

    /// The store. No connection is opened yet. `Config` naming what is
    /// wrong: a missing or malformed URL (or listen URL), or one naming no
    /// host, a pool size, timeout or retry
    /// count out of range, or a certificate that is not PEM.
    pub fn build(self) -> Result<PgStore> {
        let name = self.source.unwrap_or("url");
        let url = self
            .url
            .ok_or_else(|| Error::config("PgStore needs a connection URL (`url`)"))?;
        let config = parse_url(name, &url)?;
        let pool_size = self.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        check_count("pool_size", pool_size, 1, MAX_POOL_SIZE)?;
        // Bounded: a deadline is now + the timeout, which must not overflow.
        let call_timeout = self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT);
        check_duration(
            "call_timeout",
            call_timeout,
            Duration::from_millis(1),
            MAX_CALL_TIMEOUT,
        )?;
        let max_retries = self.max_retries.unwrap_or(3);
        check_count("max_retries", max_retries, 0, MAX_RETRIES)?;
        let connector = connector(config.get_ssl_mode(), &self.root_certificates)?;
        let listener = match &self.listen_url {
            None => None,
            Some(url) => {
                let name = self.listen_source.unwrap_or("listen_url");
                let listen = parse_url(name, url)?;
                let tls = self::connector(listen.get_ssl_mode(), &self.root_certificates)?;
                Some(Listener::new(listen, tls, call_timeout))
            }
        };
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &connector {
            Connector::Plain => Manager::from_config(config, NoTls, manager_config),
            Connector::Rustls(tls) => Manager::from_config(config, tls.clone(), manager_config),
        };
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
                max_retries,
                connector,
                functions: std::sync::Mutex::default(),
                statements: std::sync::Mutex::default(),
                listener,
            }),
            user: None,
        })
    }
}

/// `url` (the builder's `name` for it) as a connection configuration.
/// `Config` naming it when it does not parse, or names no host.
fn parse_url(name: &str, url: &str) -> Result<tokio_postgres::Config> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        Error::config(format!("{name} is not a valid PostgreSQL connection URL")).with_source(e)
    })?;
    if config.get_hosts().is_empty() {
        return Err(Error::config(format!(
            "{name} names no host: it needs postgres://user:password@host:port/db"
        )));
    }
    Ok(config)
}

/// Plain connections unless TLS is required by the URL or configured with
/// a certificate (and not disabled by the URL).
fn connector(mode: SslMode, root_certificates: &[Vec<u8>]) -> Result<Connector> {
    let wanted = match mode {
        SslMode::Disable => false,
        SslMode::Require => true,
        _ => !root_certificates.is_empty(),
    };
    if !wanted {
        return Ok(Connector::Plain);
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in root_certificates {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                Error::config("tls_root_certificate_pem: not a PEM certificate").with_source(e)
            })?;
            roots.add(cert).map_err(|e| {
                Error::config("tls_root_certificate_pem: not a usable CA certificate")
                    .with_source(e)
            })?;
            found = true;
        }
        if !found {
            return Err(Error::config(
                "tls_root_certificate_pem: no certificate in the PEM",
            ));
        }
    }
    // ring, already in the tree through jsonwebtoken: rustls deprecates its
    // provider for lacking post-quantum key exchange, which only the
    // aws-lc-rs provider has, at the price of a C and CMake build for every
    // user of this feature.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("TLS: no usable protocol version").with_source(e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(MakeRustlsConnect::new(config)))
}
