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

/// The claims the extractors need: the user, parsed into a user id while
/// the payload is decoded, and the role, checked like [`Claims::role`].
#[derive(Deserialize)]
struct Subject {
    sub: UserId,
    #[serde(default)]
    role: Option<String>,
}

/// A decoded payload whose `role` the verifier checks.
trait HasRole {
    fn role(&self) -> Option<&str>;
}

impl HasRole for Claims {
    fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }
}

impl HasRole for Subject {
    fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }
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
    fn new(audience: &str, issuer: Option<&str>, leeway: Duration) -> Self {
        let build = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.set_audience(&[audience]);
            validation.leeway = leeway.as_secs();
            validation.validate_exp = true;
            // RFC 7519 §4.1.5: not before `nbf`, with the same leeway.
            validation.validate_nbf = true;
            match issuer {
                Some(issuer) => {
                    validation.set_issuer(&[issuer]);
                    validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
                }
                None => validation.set_required_spec_claims(&["exp", "sub", "aud"]),
            }
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

/// Verifies Supabase access tokens. Built with [`TokenVerifier::builder`],
/// or [`TokenVerifier::hs256`] for the common case. A token is accepted
/// only when every check passes; any failure is `Unauthenticated`:
///
/// - **`alg`**: HS256 with the project's JWT secret, or RS256/ES256 with a
///   key of the JWKS document (given as JSON, or fetched from a URL and
///   cached, chosen by `kid`); `none` and every other algorithm are
///   refused. It fetches nothing but the configured JWKS URL: `jku` and
///   `x5u` are ignored, and an unknown `kid` refetches that URL at most
///   once per `min_refetch_interval`.
/// - **`exp`** (required): not past, with the leeway (default 30 s).
/// - **`nbf`** (when present): not in the future, with the same leeway.
/// - **`aud`** (required): the audience (default `authenticated`).
/// - **`role`** (required): one of the accepted roles, by default only
///   `authenticated`; [`accept_role`](TokenVerifierBuilder::accept_role)
///   adds others (such as `service_role`, for the operator).
/// - **`sub`** (required): for the extractors and the console, a user id.
/// - **`iss`**: only when [`issuer`](TokenVerifierBuilder::issuer) is set
///   (Supabase's is `{SUPABASE_URL}/auth/v1`); then required and equal.
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
    roles: Arc<[String]>,
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
    issuer: Option<String>,
    extra_roles: Vec<String>,
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
            .field("issuer", &self.issuer)
            .field("extra_roles", &self.extra_roles)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenVerifierBuilder {
    /// Also accepts tokens whose `role` claim is `role`, beside
    /// `authenticated` (always accepted). For example `service_role`, to
    /// let the back end's service tokens act as a platform operator in the
    /// console. Every token still needs a user id as `sub` wherever a user
    /// is needed.
    pub fn accept_role(mut self, role: impl Into<String>) -> Self {
        self.extra_roles.push(role.into());
        self
    }

    /// Requires the `iss` claim to be `issuer`: Supabase's is the project's
    /// auth URL, `{SUPABASE_URL}/auth/v1`. Cheap protection against tokens
    /// of another project that shares the secret. Not checked unless set.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

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
        if self.issuer.as_deref().is_some_and(|i| i.trim().is_empty()) {
            return Err(config("the issuer must not be empty".into()));
        }
        if self.extra_roles.iter().any(|r| r.trim().is_empty()) {
            return Err(config("an accepted role must not be empty".into()));
        }
        let mut roles = vec!["authenticated".to_owned()];
        roles.extend(self.extra_roles);
        Ok(TokenVerifier {
            secret,
            jwks,
            validations: Arc::new(Validations::new(&audience, self.issuer.as_deref(), leeway)),
            audience,
            roles: roles.into(),
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

    async fn decode_async<T: DeserializeOwned + HasRole>(&self, token: &str) -> Result<T> {
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

    fn decode<T: DeserializeOwned + HasRole>(
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
        let claims = decode::<T>(token, key, validation)
            .map(|data| data.claims)
            .map_err(unauthenticated)?;
        match claims.role() {
            Some(role) if self.roles.iter().any(|r| r == role) => Ok(claims),
            Some(role) => Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("the token's role {role:?} is not accepted"),
            )),
            None => Err(Error::new(
                ErrorKind::Unauthenticated,
                "the token has no role",
            )),
        }
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
            .field("roles", &self.roles)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

fn unauthenticated(e: jsonwebtoken::errors::Error) -> Error {
    Error::new(ErrorKind::Unauthenticated, format!("invalid token: {e}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn claims(role: &str) -> serde_json::Value {
        serde_json::json!({
            "sub": UserId::new_v7().to_string(),
            "aud": "authenticated",
            "role": role,
            "exp": chrono::Utc::now().timestamp() + 3600,
        })
    }

    #[test]
    fn only_authenticated_unless_another_role_is_accepted() {
        let strict = TokenVerifier::hs256(SECRET).unwrap();
        assert!(strict.verify(&sign(claims("authenticated"))).is_ok());
        let err = strict.verify(&sign(claims("service_role"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(err.message().contains("service_role"), "{err}");

        let operators = TokenVerifier::builder()
            .hs256_secret(SECRET)
            .accept_role("service_role")
            .build()
            .unwrap();
        assert!(operators.verify(&sign(claims("service_role"))).is_ok());
        assert!(operators.verify(&sign(claims("authenticated"))).is_ok());
        assert!(operators.verify(&sign(claims("anon"))).is_err());

        let empty = TokenVerifier::builder()
            .hs256_secret(SECRET)
            .accept_role(" ")
            .build()
            .unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::Config);
    }

    #[test]
    fn the_issuer_is_checked_only_when_set() {
        let issuer = "https://abc.supabase.co/auth/v1";
        let mut ours = claims("authenticated");
        ours["iss"] = issuer.into();
        let mut theirs = claims("authenticated");
        theirs["iss"] = "https://xyz.supabase.co/auth/v1".into();
        let none = claims("authenticated");

        let any = TokenVerifier::hs256(SECRET).unwrap();
        for token in [&ours, &theirs, &none] {
            assert!(any.verify(&sign(token.clone())).is_ok());
        }
        let pinned = TokenVerifier::builder()
            .hs256_secret(SECRET)
            .issuer(issuer)
            .build()
            .unwrap();
        assert!(pinned.verify(&sign(ours)).is_ok());
        assert!(pinned.verify(&sign(theirs)).is_err(), "another project");
        assert!(pinned.verify(&sign(none)).is_err(), "no iss");
    }

    #[test]
    fn not_before_is_checked_with_the_leeway() {
        let verifier = TokenVerifier::builder()
            .hs256_secret(SECRET)
            .leeway(Duration::from_secs(30))
            .build()
            .unwrap();
        let now = chrono::Utc::now().timestamp();
        let with_nbf = |nbf: i64| {
            let mut c = claims("authenticated");
            c["nbf"] = nbf.into();
            sign(c)
        };
        assert!(verifier.verify(&with_nbf(now - 60)).is_ok());
        assert!(
            verifier.verify(&with_nbf(now + 10)).is_ok(),
            "within the leeway"
        );
        assert!(verifier.verify(&with_nbf(now + 120)).is_err());
    }
}
