//! Verifying Supabase access tokens.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, decode, decode_header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock};
use crate::config::check_duration;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::UserId;

/// The default minimum time between two fetches of a JWKS URL.
const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The claims of a Supabase access token that this crate reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user id (`auth.users.id`).
    pub sub: String,
    /// The Postgres role the token acts as (`authenticated`).
    #[serde(default)]
    pub role: Option<String>,
    /// The user's email, when present.
    #[serde(default)]
    pub email: Option<String>,
    /// Supabase's `app_metadata`: set by the back end, not by the user
    /// (unlike `user_metadata`), so fit for decisions such as who is a
    /// platform operator. `null` when absent.
    #[serde(default)]
    pub app_metadata: serde_json::Value,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// The user id, parsed.
    pub fn user_id(&self) -> Result<UserId> {
        UserId::parse(&self.sub)
    }
}

/// The one claim the extractors need, parsed into a user id while the
/// payload is decoded.
#[derive(Deserialize)]
struct Subject {
    sub: UserId,
}

/// The keys of a JWKS document, turned into decoding keys once, when the
/// document is read.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, DecodingKey>,
    /// The document's only key, when it has exactly one: tokens without a
    /// `kid` are checked against it.
    sole: Option<DecodingKey>,
}

impl KeySet {
    /// Keys that cannot verify tokens (an unsupported type, bad material)
    /// are skipped with a warning rather than failing the whole document.
    fn new(set: &JwkSet) -> KeySet {
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping a JWKS key that cannot verify tokens");
                    continue;
                }
            };
            if set.keys.len() == 1 {
                keys.sole = Some(key.clone());
            }
            if let Some(kid) = &jwk.common.key_id {
                keys.by_kid.entry(kid.clone()).or_insert(key);
            }
        }
        keys
    }

    fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => self.sole.as_ref(),
        }
    }
}

impl std::fmt::Debug for KeySet {
    /// Key ids only, never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .field("sole", &self.sole.is_some())
            .finish()
    }
}

/// Where asymmetric verification keys come from.
#[derive(Debug, Clone)]
enum Jwks {
    None,
    Static(Arc<KeySet>),
    Remote(Remote),
}

/// A JWKS URL: its settings, and the cache shared by clones of the
/// verifier.
#[derive(Debug, Clone)]
struct Remote {
    url: String,
    client: reqwest::Client,
    ttl: Duration,
    min_refetch_interval: Duration,
    shared: Arc<RemoteShared>,
}

#[derive(Debug, Default)]
struct RemoteShared {
    state: RwLock<RemoteState>,
    /// Held while fetching, so that concurrent misses make one request.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct RemoteState {
    /// The last document read, and when (clock microseconds).
    keys: Option<(i64, Arc<KeySet>)>,
    /// When the last fetch was attempted, successful or not.
    last_attempt: Option<i64>,
    /// Fetches attempted so far: a waiter that sees it move knows another
    /// caller fetched while it waited.
    attempts: u64,
}

/// What a cache lookup decided.
enum Lookup {
    /// Use these keys.
    Use(Arc<KeySet>),
    /// Fetch the document; `attempts` is the count seen before waiting.
    Fetch { attempts: u64 },
}

impl RemoteState {
    fn lookup(&self, now: i64, remote: &Remote, kid: Option<&str>) -> Lookup {
        let Some((fetched_at, keys)) = &self.keys else {
            // Nothing to verify with: fetch (one request at a time).
            return Lookup::Fetch {
                attempts: self.attempts,
            };
        };
        let fresh = elapsed(now, *fetched_at) < remote.ttl;
        if fresh && keys.find(kid).is_some() {
            return Lookup::Use(Arc::clone(keys));
        }
        // Stale, or the token names a key we do not have: refetch, but at
        // most once per interval, whatever the tokens say.
        let cooling = self
            .last_attempt
            .is_some_and(|at| elapsed(now, at) < remote.min_refetch_interval);
        if cooling {
            Lookup::Use(Arc::clone(keys))
        } else {
            Lookup::Fetch {
                attempts: self.attempts,
            }
        }
    }
}

fn elapsed(now: i64, since: i64) -> Duration {
    Duration::from_micros(now.saturating_sub(since).max(0).unsigned_abs())
}

/// The validations of the accepted algorithms, built when the audience or
/// leeway is set rather than per token.
#[derive(Debug, Clone)]
struct Validations {
    hs256: Validation,
    rs256: Validation,
    es256: Validation,
}

impl Validations {
    fn new(audience: &str, leeway: Duration) -> Self {
        let build = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.set_audience(&[audience]);
            validation.leeway = leeway.as_secs();
            validation.validate_exp = true;
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            validation
        };
        Validations {
            hs256: build(Algorithm::HS256),
            rs256: build(Algorithm::RS256),
            es256: build(Algorithm::ES256),
        }
    }
}

/// The shortest HS256 secret accepted, in bytes: Supabase's JWT secrets
/// are at least 32 characters, and a shorter one is guessable.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Verifies Supabase access tokens: HS256 with the project's JWT secret,
/// and RS256/ES256 with keys from a JWKS document (given as JSON, or
/// fetched from a URL and cached). Checks expiry with a leeway and the
/// audience (`authenticated` by default). Built with
/// [`TokenVerifier::builder`], or [`TokenVerifier::hs256`] for the common
/// case.
///
/// ```
/// use tenancy::axum::TokenVerifier;
/// let verifier = TokenVerifier::hs256("super-secret-jwt-token-with-at-least-32-characters")?;
/// assert!(verifier.verify("not.a.token").is_err());
/// assert!(TokenVerifier::hs256("short").is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Clone)]
pub struct TokenVerifier {
    secret: Option<Arc<DecodingKey>>,
    jwks: Jwks,
    audience: String,
    leeway: Duration,
    validations: Arc<Validations>,
    clock: Arc<dyn Clock>,
}

/// Configures a [`TokenVerifier`]: at least one key source (an HS256
/// secret, a JWKS document, or a JWKS URL), then [`build`](Self::build),
/// which checks every setting.
///
/// ```
/// use std::time::Duration;
/// use tenancy::axum::TokenVerifier;
///
/// let verifier = TokenVerifier::builder()
///     .jwks_url("https://abcd.supabase.co/auth/v1/.well-known/jwks.json")
///     .jwks_ttl(Duration::from_secs(600))
///     .hs256_secret("a-legacy-secret-of-at-least-32-characters")
///     .leeway(Duration::from_secs(10))
///     .build()?;
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until build()"]
pub struct TokenVerifierBuilder {
    secret: Option<Vec<u8>>,
    jwks_json: Option<String>,
    jwks_url: Option<String>,
    http_client: Option<reqwest::Client>,
    jwks_ttl: Option<Duration>,
    min_refetch_interval: Option<Duration>,
    audience: Option<String>,
    leeway: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for TokenVerifierBuilder {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifierBuilder")
            .field("hs256", &self.secret.is_some())
            .field("jwks_json", &self.jwks_json.is_some())
            .field("jwks_url", &self.jwks_url)
            .field("jwks_ttl", &self.jwks_ttl)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenVerifierBuilder {
    /// Accepts HS256 tokens signed with the project's JWT secret
    /// (`SUPABASE_JWT_SECRET`), at least [`MIN_HS256_SECRET_BYTES`] long.
    /// With a JWKS as well, both are accepted (projects migrating from the
    /// shared secret to asymmetric keys).
    pub fn hs256_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Accepts RS256/ES256 tokens signed by the keys of this JWKS document.
    /// Keys that cannot verify tokens are skipped with a warning.
    pub fn jwks_json(mut self, json: impl Into<String>) -> Self {
        self.jwks_json = Some(json.into());
        self
    }

    /// Accepts RS256/ES256 tokens signed by keys fetched from `url`
    /// (`{SUPABASE_URL}/auth/v1/.well-known/jwks.json`), cached for
    /// [`jwks_ttl`](Self::jwks_ttl) and refetched early when a token names
    /// an unknown key.
    ///
    /// Whatever the tokens say, the URL is fetched at most once per
    /// [minimum refetch interval](Self::min_refetch_interval) (60 s by
    /// default) once keys are cached, and concurrent misses share one
    /// request: a flood of forged tokens naming random keys costs one fetch
    /// a minute. Until the first fetch succeeds, each miss tries again, one
    /// request at a time. A failed refresh keeps the keys already cached.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// The HTTP client that fetches the JWKS URL; a new one by default.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// How long fetched JWKS keys are used before they are fetched again.
    /// Default 10 minutes; 1 second to 1 day.
    pub fn jwks_ttl(mut self, ttl: Duration) -> Self {
        self.jwks_ttl = Some(ttl);
        self
    }

    /// For a JWKS URL: the minimum time between two fetches once keys are
    /// cached, for unknown keys and expired caches alike (a TTL shorter than
    /// this is stretched to it). Default 60 s; at most 1 hour.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = Some(interval);
        self
    }

    /// The audience required in `aud`. Default `authenticated`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock skew tolerated on `exp`. Default 30 s; at most 10 minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// The clock the JWKS cache reads for its TTL and refetch interval;
    /// [`SystemClock`] by default. Token expiry is always checked against
    /// the system time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the settings and builds the verifier. `Config` naming what is
    /// wrong: no key source, both a JWKS document and a URL, a secret that
    /// is too short, a JWKS document that does not parse, an empty
    /// audience, or a duration out of range.
    pub fn build(self) -> Result<TokenVerifier> {
        let config = |message: String| Error::new(ErrorKind::Config, message);
        let secret = match self.secret {
            Some(s) if s.len() < MIN_HS256_SECRET_BYTES => {
                return Err(config(format!(
                    "the HS256 secret is {} bytes; it must be at least {MIN_HS256_SECRET_BYTES}",
                    s.len()
                )));
            }
            Some(s) => Some(Arc::new(DecodingKey::from_secret(&s))),
            None => None,
        };
        let leeway = self.leeway.unwrap_or(Duration::from_secs(30));
        check_duration("leeway", leeway, Duration::ZERO, Duration::from_secs(600))?;
        let ttl = self.jwks_ttl.unwrap_or(Duration::from_secs(600));
        check_duration(
            "jwks_ttl",
            ttl,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?;
        let refetch = self
            .min_refetch_interval
            .unwrap_or(DEFAULT_MIN_REFETCH_INTERVAL);
        check_duration(
            "min_refetch_interval",
            refetch,
            Duration::ZERO,
            Duration::from_secs(3600),
        )?;
        let jwks = match (self.jwks_json, self.jwks_url) {
            (Some(_), Some(_)) => {
                return Err(config(
                    "a TokenVerifier takes a JWKS document or a JWKS URL, not both".into(),
                ));
            }
            (Some(json), None) => {
                let set: JwkSet = serde_json::from_str(&json).map_err(|e| {
                    config("the JWKS document does not parse".into()).with_source(e)
                })?;
                Jwks::Static(Arc::new(KeySet::new(&set)))
            }
            (None, Some(url)) => Jwks::Remote(Remote {
                url,
                client: self.http_client.unwrap_or_default(),
                ttl,
                min_refetch_interval: refetch,
                shared: Arc::default(),
            }),
            (None, None) => Jwks::None,
        };
        if secret.is_none() && matches!(jwks, Jwks::None) {
            return Err(config(
                "a TokenVerifier needs a key source: hs256_secret, jwks_json or jwks_url".into(),
            ));
        }
        let audience = self.audience.unwrap_or_else(|| "authenticated".into());
        if audience.trim().is_empty() {
            return Err(config("the audience must not be empty".into()));
        }
        Ok(TokenVerifier {
            secret,
            jwks,
            validations: Arc::new(Validations::new(&audience, leeway)),
            audience,
            leeway,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}

impl TokenVerifier {
    /// A builder with nothing set.
    pub fn builder() -> TokenVerifierBuilder {
        TokenVerifierBuilder::default()
    }

    /// A verifier of HS256 tokens signed with the project's JWT secret
    /// (`SUPABASE_JWT_SECRET`); the defaults otherwise. `Config` if the
    /// secret is shorter than [`MIN_HS256_SECRET_BYTES`].
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self> {
        TokenVerifier::builder().hs256_secret(secret).build()
    }

    /// Verifies a token with a key already at hand. Every failure is
    /// `Unauthenticated`; the message says why, for logs, not for clients.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let header = decode_header(token).map_err(unauthenticated)?;
        let keys = match &self.jwks {
            Jwks::Static(keys) => Some(keys.as_ref()),
            _ => None,
        };
        checked(self.decode(token, &header, keys)?)
    }

    /// Verifies a token, fetching the JWKS document first when needed.
    pub async fn verify_async(&self, token: &str) -> Result<Claims> {
        checked(self.decode_async(token).await?)
    }

    /// Verifies a token and returns its user, the `sub` claim parsed once
    /// while the payload is decoded.
    pub(crate) async fn verify_user(&self, token: &str) -> Result<UserId> {
        self.decode_async::<Subject>(token).await.map(|s| s.sub)
    }

    async fn decode_async<T: DeserializeOwned>(&self, token: &str) -> Result<T> {
        let header = decode_header(token).map_err(unauthenticated)?;
        let asymmetric = matches!(header.alg, Algorithm::RS256 | Algorithm::ES256);
        let fetched;
        let keys = match &self.jwks {
            Jwks::Static(keys) => Some(keys.as_ref()),
            Jwks::Remote(remote) if asymmetric => {
                fetched = self.remote_keys(remote, header.kid.as_deref()).await?;
                Some(fetched.as_ref())
            }
            _ => None,
        };
        self.decode(token, &header, keys)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        token: &str,
        header: &Header,
        keys: Option<&KeySet>,
    ) -> Result<T> {
        let (key, validation) = match header.alg {
            Algorithm::HS256 => (
                self.secret.as_deref().ok_or_else(|| {
                    Error::new(ErrorKind::Unauthenticated, "HS256 tokens are not accepted")
                })?,
                &self.validations.hs256,
            ),
            Algorithm::RS256 | Algorithm::ES256 => {
                let keys = keys.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unauthenticated,
                        "asymmetric tokens need a JWKS (use verify_async for a JWKS URL)",
                    )
                })?;
                let key = keys
                    .find(header.kid.as_deref())
                    .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "unknown signing key"))?;
                let validation = if header.alg == Algorithm::RS256 {
                    &self.validations.rs256
                } else {
                    &self.validations.es256
                };
                (key, validation)
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!("algorithm {other:?} is not accepted"),
                ));
            }
        };
        decode::<T>(token, key, validation)
            .map(|data| data.claims)
            .map_err(unauthenticated)
    }

    async fn remote_keys(&self, remote: &Remote, kid: Option<&str>) -> Result<Arc<KeySet>> {
        let shared = &remote.shared;
        let lookup = shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(self.clock.coarse_unix_micros(), remote, kid);
        let seen = match lookup {
            Lookup::Use(keys) => return Ok(keys),
            Lookup::Fetch { attempts } => attempts,
        };
        let _fetching = shared.fetching.lock().await;
        {
            let state = shared.state.read().unwrap_or_else(|e| e.into_inner());
            if state.attempts != seen {
                // Another caller fetched while we waited: take its result.
                return match &state.keys {
                    Some((_, keys)) => Ok(Arc::clone(keys)),
                    None => Err(Error::new(
                        ErrorKind::Unavailable,
                        "the JWKS document could not be fetched",
                    )),
                };
            }
        }
        let fetched = fetch_jwks(&remote.client, &remote.url).await;
        let now = self.clock.coarse_unix_micros();
        let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
        state.attempts += 1;
        state.last_attempt = Some(now);
        match (fetched, &state.keys) {
            (Ok(keys), _) => {
                let keys = Arc::new(keys);
                state.keys = Some((now, Arc::clone(&keys)));
                Ok(keys)
            }
            (Err(e), Some((_, cached))) => {
                tracing::warn!(error = %e, "refreshing the JWKS failed; keeping the cached keys");
                Ok(Arc::clone(cached))
            }
            (Err(e), None) => Err(e),
        }
    }
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<KeySet> {
    let response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot fetch the JWKS document").with_source(e)
        })?;
    let set: JwkSet = response.json().await.map_err(|e| {
        Error::new(ErrorKind::Unavailable, "the JWKS document does not parse").with_source(e)
    })?;
    Ok(KeySet::new(&set))
}

/// The public claims, once their `sub` is known to be a user id.
fn checked(claims: Claims) -> Result<Claims> {
    claims.user_id().map_err(|e| {
        Error::new(
            ErrorKind::Unauthenticated,
            "the token's sub is not a user id",
        )
        .with_source(e)
    })?;
    Ok(claims)
}

impl std::fmt::Debug for TokenVerifier {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.secret.is_some())
            .field("jwks", &self.jwks)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

fn unauthenticated(e: jsonwebtoken::errors::Error) -> Error {
    Error::new(ErrorKind::Unauthenticated, format!("invalid token: {e}")).with_source(e)
}
