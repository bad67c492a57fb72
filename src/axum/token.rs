//! Verifying Supabase access tokens.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::UserId;

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
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// The user id, parsed.
    pub fn user_id(&self) -> Result<UserId> {
        UserId::parse(&self.sub)
    }
}

/// A JWKS document and when it was fetched.
type FetchedKeys = (Instant, Arc<JwkSet>);

/// Where asymmetric verification keys come from.
#[derive(Debug, Clone)]
enum Jwks {
    None,
    Static(Arc<JwkSet>),
    Remote {
        url: String,
        client: reqwest::Client,
        ttl: Duration,
        cached: Arc<RwLock<Option<FetchedKeys>>>,
    },
}

/// Verifies Supabase access tokens: HS256 with the project's JWT secret,
/// and RS256/ES256 with keys from a JWKS document (given as JSON, or
/// fetched from a URL and cached). Checks expiry with a leeway and the
/// audience (`authenticated` by default).
///
/// ```
/// use tenancy::axum::TokenVerifier;
/// let verifier = TokenVerifier::hs256("super-secret-jwt-token-with-at-least-32-characters");
/// assert!(verifier.verify("not.a.token").is_err());
/// ```
#[derive(Clone)]
pub struct TokenVerifier {
    secret: Option<Arc<DecodingKey>>,
    jwks: Jwks,
    audience: String,
    leeway: Duration,
}

impl TokenVerifier {
    /// Verifies HS256 tokens signed with the project's JWT secret
    /// (`SUPABASE_JWT_SECRET`).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        TokenVerifier {
            secret: Some(Arc::new(DecodingKey::from_secret(secret.as_ref()))),
            jwks: Jwks::None,
            audience: "authenticated".into(),
            leeway: Duration::from_secs(30),
        }
    }

    /// Verifies RS256/ES256 tokens with the keys of a JWKS document.
    /// Malformed JSON is `Config`.
    pub fn jwks_json(json: &str) -> Result<Self> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| {
            Error::new(ErrorKind::Config, "the JWKS document does not parse").with_source(e)
        })?;
        Ok(TokenVerifier {
            secret: None,
            jwks: Jwks::Static(Arc::new(set)),
            audience: "authenticated".into(),
            leeway: Duration::from_secs(30),
        })
    }

    /// Verifies RS256/ES256 tokens with keys fetched from `url`
    /// (`{SUPABASE_URL}/auth/v1/.well-known/jwks.json`), cached for `ttl`
    /// and refetched early when a token names an unknown key.
    pub fn jwks_url(url: impl Into<String>, client: reqwest::Client, ttl: Duration) -> Self {
        TokenVerifier {
            secret: None,
            jwks: Jwks::Remote {
                url: url.into(),
                client,
                ttl,
                cached: Arc::new(RwLock::new(None)),
            },
            audience: "authenticated".into(),
            leeway: Duration::from_secs(30),
        }
    }

    /// Also accepts HS256 tokens signed with `secret` (projects migrating
    /// from the shared secret to asymmetric keys accept both).
    pub fn with_hs256_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Arc::new(DecodingKey::from_secret(secret.as_ref())));
        self
    }

    /// The audience required in `aud`. Default `authenticated`.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock skew tolerated on `exp`. Default 30 s.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&self.audience]);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation
    }

    /// Verifies a token with a key already at hand. Every failure is
    /// `Unauthenticated`; the message says why, for logs, not for clients.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        self.verify_with(token, None)
    }

    /// Verifies a token, fetching the JWKS document first when needed.
    pub async fn verify_async(&self, token: &str) -> Result<Claims> {
        let header = decode_header(token).map_err(unauthenticated)?;
        if header.alg == Algorithm::HS256 {
            return self.verify_with(token, None);
        }
        let set = match &self.jwks {
            Jwks::Remote { .. } => Some(self.remote_keys(header.kid.as_deref()).await?),
            _ => None,
        };
        self.verify_with(token, set.as_deref())
    }

    fn verify_with(&self, token: &str, fetched: Option<&JwkSet>) -> Result<Claims> {
        let header = decode_header(token).map_err(unauthenticated)?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_deref().cloned().ok_or_else(|| {
                Error::new(ErrorKind::Unauthenticated, "HS256 tokens are not accepted")
            })?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let set = match (&self.jwks, fetched) {
                    (_, Some(set)) => set,
                    (Jwks::Static(set), None) => set.as_ref(),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::Unauthenticated,
                            "asymmetric tokens need a JWKS (use verify_async for a JWKS URL)",
                        ));
                    }
                };
                let jwk = match header.kid.as_deref() {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "unknown signing key"))?;
                DecodingKey::from_jwk(jwk).map_err(unauthenticated)?
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!("algorithm {other:?} is not accepted"),
                ));
            }
        };
        let data =
            decode::<Claims>(token, &key, &self.validation(header.alg)).map_err(unauthenticated)?;
        data.claims.user_id().map_err(|e| {
            Error::new(
                ErrorKind::Unauthenticated,
                "the token's sub is not a user id",
            )
            .with_source(e)
        })?;
        Ok(data.claims)
    }

    async fn remote_keys(&self, kid: Option<&str>) -> Result<Arc<JwkSet>> {
        let Jwks::Remote {
            url,
            client,
            ttl,
            cached,
        } = &self.jwks
        else {
            return Err(Error::new(ErrorKind::Config, "no JWKS URL configured"));
        };
        if let Some((fetched_at, set)) = cached.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let known = kid.is_none_or(|k| set.find(k).is_some());
            if known && fetched_at.elapsed() < *ttl {
                return Ok(Arc::clone(set));
            }
        }
        let response = client.get(url).send().await.map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot fetch the JWKS document").with_source(e)
        })?;
        let set: JwkSet = response.json().await.map_err(|e| {
            Error::new(ErrorKind::Unavailable, "the JWKS document does not parse").with_source(e)
        })?;
        let set = Arc::new(set);
        *cached.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), Arc::clone(&set)));
        Ok(set)
    }
}

impl std::fmt::Debug for TokenVerifier {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.secret.is_some())
            .field("jwks", &self.jwks)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

fn unauthenticated(e: jsonwebtoken::errors::Error) -> Error {
    Error::new(ErrorKind::Unauthenticated, format!("invalid token: {e}")).with_source(e)
}
