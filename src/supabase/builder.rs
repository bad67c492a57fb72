//! Configuring a [`SupabaseStore`]: URL, keys, HTTP client, timeouts,
//! retries.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};

use super::{Inner, SupabaseStore};
use crate::config::check_duration;
use crate::error::{Error, ErrorKind, Result};

/// The environment variable holding the project URL.
pub const ENV_URL: &str = "SUPABASE_URL";
/// The environment variable overriding the REST base (`{SUPABASE_URL}/rest/v1`
/// by default), for self-hosted PostgREST served elsewhere.
pub const ENV_REST_URL: &str = "SUPABASE_REST_URL";
/// The environment variable holding the service-role key.
pub const ENV_SERVICE_ROLE_KEY: &str = "SUPABASE_SERVICE_ROLE_KEY";
/// The environment variable holding the anon key.
pub const ENV_ANON_KEY: &str = "SUPABASE_ANON_KEY";
/// The environment variable holding the JWT secret (read by tools that mint
/// tokens, such as the examples; the store itself never verifies JWTs —
/// PostgREST does).
pub const ENV_JWT_SECRET: &str = "SUPABASE_JWT_SECRET";

/// How idempotent calls are retried after connection errors, timeouts and
/// 5xx responses: exponential backoff with jitter.
///
/// Calls that are not idempotent (reserve, release, claiming an alert,
/// creating rows) are retried only when the request never reached the
/// server.
///
/// ```
/// use std::time::Duration;
/// use tenancy::supabase::RetryConfig;
/// let retry = RetryConfig::default()
///     .max_retries(5)
///     .delays(Duration::from_millis(20), Duration::from_secs(1));
/// assert_eq!(retry.max_retries, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: usize,
    /// The first delay.
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

crate::config::retry_policy!(RetryConfig, "retry");

impl Default for RetryConfig {
    /// 3 retries, 50 ms doubling up to 2 s.
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Builds a [`SupabaseStore`]. Obtain one with [`SupabaseStore::builder`]
/// or [`SupabaseStoreBuilder::from_env`].
///
/// ```
/// use tenancy::supabase::SupabaseStore;
///
/// let store = SupabaseStore::builder()
///     .url("https://abcd.supabase.co")
///     .service_role_key("service-role-jwt")
///     .build()?;
/// assert_eq!(store.rest_url(), "https://abcd.supabase.co/rest/v1");
///
/// let err = SupabaseStore::builder().url("not a url").service_role_key("k").build().unwrap_err();
/// assert_eq!(err.kind(), tenancy::ErrorKind::Config);
/// assert!(err.message().contains("SUPABASE_URL"));
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct SupabaseStoreBuilder {
    url: Option<String>,
    rest_url: Option<String>,
    service_role_key: Option<String>,
    anon_key: Option<String>,
    access_token: Option<String>,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: RetryConfig,
}

impl std::fmt::Debug for SupabaseStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and tokens are secrets: show only whether they are set.
        f.debug_struct("SupabaseStoreBuilder")
            .field("url", &self.url)
            .field("rest_url", &self.rest_url)
            .field("service_role_key", &self.service_role_key.is_some())
            .field("anon_key", &self.anon_key.is_some())
            .field("access_token", &self.access_token.is_some())
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The default timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The default timeout for establishing a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

impl SupabaseStoreBuilder {
    /// A builder with nothing set.
    pub fn new() -> Self {
        SupabaseStoreBuilder::default()
    }

    /// A builder reading `SUPABASE_URL` (or `SUPABASE_REST_URL`, the REST
    /// base itself, which wins when both are set: for a self-hosted
    /// PostgREST served at its root), `SUPABASE_SERVICE_ROLE_KEY` and
    /// `SUPABASE_ANON_KEY` from the process environment. Call
    /// [`build`](Self::build) to validate.
    pub fn from_env() -> Self {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through
    /// `lookup` (for tests and configuration layers).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Self {
        SupabaseStoreBuilder {
            url: lookup(ENV_URL),
            rest_url: lookup(ENV_REST_URL),
            service_role_key: lookup(ENV_SERVICE_ROLE_KEY),
            anon_key: lookup(ENV_ANON_KEY),
            ..SupabaseStoreBuilder::default()
        }
    }

    /// The project URL (`SUPABASE_URL`, `https://<ref>.supabase.co`). The
    /// REST base is `{url}/rest/v1` unless [`rest_url`](Self::rest_url) is
    /// set.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The PostgREST base URL itself, overriding `{url}/rest/v1` (for a
    /// PostgREST served at its root).
    pub fn rest_url(mut self, rest_url: impl Into<String>) -> Self {
        self.rest_url = Some(rest_url.into());
        self
    }

    /// The service-role key (`SUPABASE_SERVICE_ROLE_KEY`): the service
    /// client, which bypasses RLS. For workers and back ends only.
    pub fn service_role_key(mut self, key: impl Into<String>) -> Self {
        self.service_role_key = Some(key.into());
        self
    }

    /// The anon key (`SUPABASE_ANON_KEY`), sent as `apikey` by user clients.
    pub fn anon_key(mut self, key: impl Into<String>) -> Self {
        self.anon_key = Some(key.into());
        self
    }

    /// A user's access token (their session JWT). With the anon key this
    /// makes a user client: PostgREST runs every request as that user and
    /// RLS applies.
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// The HTTP client to use (shares its connection pool). The store
    /// still applies its own per-request [`timeout`](Self::timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The timeout of one request, response body included (default 15 s;
    /// 1 ms to 10 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The connection timeout of the client this builder creates (default
    /// 5 s; 1 ms to 10 minutes); ignored with an injected
    /// [`http_client`](Self::http_client).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How idempotent calls are retried.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Validates the configuration. A missing or malformed URL or key is a
    /// [`Config`](ErrorKind::Config) error naming the variable; a timeout
    /// or retry setting out of range, one naming the setting.
    pub fn build(self) -> Result<SupabaseStore> {
        let longest = Duration::from_secs(600);
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        check_duration("timeout", timeout, Duration::from_millis(1), longest)?;
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        check_duration(
            "connect_timeout",
            connect_timeout,
            Duration::from_millis(1),
            longest,
        )?;
        self.retry.validate()?;
        let rest_url = match non_empty(self.rest_url) {
            Some(rest) => parse_base(&rest, "the REST URL (rest_url / SUPABASE_REST_URL)")?,
            None => {
                let url = non_empty(self.url).ok_or_else(|| {
                    config(format!(
                        "{ENV_URL} is not set: the Supabase project URL is required \
                         (or {ENV_REST_URL}, the PostgREST base URL itself)"
                    ))
                })?;
                format!("{}/rest/v1", parse_base(&url, ENV_URL)?)
            }
        };
        let service_role_key = non_empty(self.service_role_key);
        let anon_key = non_empty(self.anon_key);
        let access_token = non_empty(self.access_token);
        let (apikey, apikey_var) = match (&service_role_key, &anon_key) {
            (Some(key), _) => (key.clone(), ENV_SERVICE_ROLE_KEY),
            (None, Some(key)) => (key.clone(), ENV_ANON_KEY),
            (None, None) => {
                return Err(config(format!(
                    "{ENV_SERVICE_ROLE_KEY} is not set: a service client needs the \
                     service-role key (a user client needs {ENV_ANON_KEY} and an access token)"
                )));
            }
        };
        if service_role_key.is_none() && access_token.is_none() {
            tracing::debug!("SupabaseStore built with the anon key only: requests run as anon");
        }
        let bearer = access_token.clone().unwrap_or_else(|| apikey.clone());
        let mut headers = HeaderMap::new();
        headers.insert("apikey", header_value(&apikey, apikey_var)?);
        headers.insert(
            reqwest::header::AUTHORIZATION,
            header_value(&format!("Bearer {bearer}"), "the access token")?,
        );
        let http = match self.http {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(connect_timeout)
                .build()
                .map_err(|e| config("cannot build the HTTP client".to_owned()).with_source(e))?,
        };
        Ok(SupabaseStore {
            inner: Arc::new(Inner {
                rest_url,
                headers,
                http,
                timeout,
                retry: self.retry,
                anon_key,
                user_client: service_role_key.is_none() || access_token.is_some(),
            }),
        })
    }
}

/// Checks an http(s) base URL and returns it without a trailing slash.
fn parse_base(raw: &str, var: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(raw).map_err(|e| {
        config(format!("{var} is malformed: {raw:?} is not a URL ({e})")).with_source(e)
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(config(format!(
            "{var} is malformed: {raw:?} must be an http(s) URL with a host"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(config(format!(
            "{var} is malformed: {raw:?} must not have a query or fragment"
        )));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

fn header_value(value: &str, var: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|e| {
        config(format!("{var} is malformed: not a valid header value")).with_source(e)
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn env_names_the_missing_or_malformed_variable() {
        let err = SupabaseStoreBuilder::from_env_with(vars(&[(ENV_SERVICE_ROLE_KEY, "k")]))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(ENV_URL), "{err}");

        let err = SupabaseStoreBuilder::from_env_with(vars(&[(ENV_URL, "https://x.supabase.co")]))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(ENV_SERVICE_ROLE_KEY), "{err}");

        for bad in [
            "x.supabase.co",
            "ftp://x.supabase.co",
            "https://",
            "https://x.co/?a=1",
        ] {
            let err = SupabaseStoreBuilder::from_env_with(vars(&[
                (ENV_URL, bad),
                (ENV_SERVICE_ROLE_KEY, "k"),
            ]))
            .build()
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
            assert!(err.message().contains(ENV_URL), "{err}");
        }

        let err = SupabaseStoreBuilder::from_env_with(vars(&[
            (ENV_URL, "https://x.supabase.co"),
            (ENV_SERVICE_ROLE_KEY, "bad\nkey"),
        ]))
        .build()
        .unwrap_err();
        assert!(err.message().contains(ENV_SERVICE_ROLE_KEY), "{err}");
    }

    #[test]
    fn rest_base_defaults_to_rest_v1_and_can_be_overridden() {
        let store = SupabaseStore::builder()
            .url("https://x.supabase.co/")
            .service_role_key("k")
            .build()
            .unwrap();
        assert_eq!(store.rest_url(), "https://x.supabase.co/rest/v1");
        let self_hosted = SupabaseStoreBuilder::from_env_with(|name| match name {
            ENV_REST_URL => Some("http://127.0.0.1:3000".to_owned()),
            ENV_SERVICE_ROLE_KEY => Some("key".to_owned()),
            _ => None,
        })
        .build()
        .unwrap();
        assert_eq!(self_hosted.rest_url(), "http://127.0.0.1:3000");
        let store = SupabaseStore::builder()
            .rest_url("http://127.0.0.1:3000/")
            .anon_key("anon")
            .access_token("secret-token-xyz")
            .build()
            .unwrap();
        assert_eq!(store.rest_url(), "http://127.0.0.1:3000");
        assert!(!format!("{store:?}").contains("secret-token-xyz"));
    }

    #[test]
    fn a_user_client_needs_a_token() {
        let service = SupabaseStore::builder()
            .rest_url("http://127.0.0.1:3000")
            .service_role_key("k")
            .anon_key("anon")
            .build()
            .unwrap();
        assert!(service.user_client("t").unwrap().is_user_client());
        let err = service.user_client(" ").unwrap_err();
        assert_eq!(err.field(), Some("access_token"));
    }
}
