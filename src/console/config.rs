//! What a console needs: the facade, how to verify who is signed in, who
//! is a platform operator, and the secret its forms are signed with.

use std::fmt;
use std::sync::Arc;

use crate::axum::{Claims, TokenVerifier};
use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::PlatformOperator;
use crate::tenancy::Tenancy;

/// The shortest CSRF secret accepted, in bytes.
pub const MIN_CSRF_SECRET_BYTES: usize = 32;

type Decide = dyn Fn(&Claims) -> Option<PlatformOperator> + Send + Sync;

/// Who, among signed-in users, is the platform operator: the host's
/// decision. Nobody is, by default.
///
/// ```
/// use tenancy::console::OperatorPolicy;
/// # let alice = tenancy::UserId::new_v7();
/// let by_id = OperatorPolicy::user_ids([alice]);
/// let by_claim = OperatorPolicy::app_metadata_flag("tenancy_operator");
/// ```
#[derive(Clone)]
pub struct OperatorPolicy {
    decide: Arc<Decide>,
    describe: String,
}

impl OperatorPolicy {
    /// Nobody is an operator. The default.
    pub fn nobody() -> Self {
        OperatorPolicy::custom("nobody", |_| None)
    }

    /// These users are operators.
    pub fn user_ids(users: impl IntoIterator<Item = UserId>) -> Self {
        let users: Vec<UserId> = users.into_iter().collect();
        let describe = format!("{} listed users", users.len());
        OperatorPolicy::custom(describe, move |claims| {
            let user = claims.user_id().ok()?;
            users
                .contains(&user)
                .then(|| PlatformOperator::new(format!("console:{user}")))
        })
    }

    /// Users whose token's `app_metadata.<key>` is `true` are operators.
    /// Supabase's `app_metadata` is set by the back end (the service role),
    /// never by the user, unlike `user_metadata`.
    pub fn app_metadata_flag(key: impl Into<String>) -> Self {
        let key = key.into();
        let describe = format!("app_metadata.{key} = true");
        OperatorPolicy::custom(describe, move |claims| {
            let flagged = claims.app_metadata.get(&key) == Some(&serde_json::Value::Bool(true));
            flagged.then(|| PlatformOperator::new(format!("console:{}", claims.sub)))
        })
    }

    /// Any rule: `decide` returns the operator identity to act as, or
    /// `None`. `describe` says what the rule is, for logs and `Debug`.
    pub fn custom(
        describe: impl Into<String>,
        decide: impl Fn(&Claims) -> Option<PlatformOperator> + Send + Sync + 'static,
    ) -> Self {
        OperatorPolicy {
            decide: Arc::new(decide),
            describe: describe.into(),
        }
    }

    pub(super) fn operator_for(&self, claims: &Claims) -> Option<PlatformOperator> {
        (self.decide)(claims)
    }
}

impl Default for OperatorPolicy {
    fn default() -> Self {
        OperatorPolicy::nobody()
    }
}

impl fmt::Debug for OperatorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OperatorPolicy")
            .field(&self.describe)
            .finish()
    }
}

/// A console's settings, from [`ConsoleConfig::builder`]; give it to
/// [`router`](super::router).
#[derive(Clone)]
pub struct ConsoleConfig {
    pub(super) tenancy: Tenancy,
    pub(super) verifier: TokenVerifier,
    pub(super) operators: OperatorPolicy,
    pub(super) token_cookie: String,
    pub(super) csrf_secret: Arc<ring::hmac::Key>,
}

impl fmt::Debug for ConsoleConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("verifier", &self.verifier)
            .field("operators", &self.operators)
            .field("token_cookie", &self.token_cookie)
            .finish_non_exhaustive()
    }
}

impl ConsoleConfig {
    /// A builder for a console over `tenancy` that signs people in with
    /// `verifier`, exactly as the axum integration does.
    pub fn builder(tenancy: Tenancy, verifier: TokenVerifier) -> ConsoleConfigBuilder {
        ConsoleConfigBuilder {
            tenancy,
            verifier,
            operators: OperatorPolicy::nobody(),
            token_cookie: "sb-access-token".into(),
            csrf_secret: None,
        }
    }
}

/// Configures a [`ConsoleConfig`]; [`build`](Self::build) checks it.
#[must_use = "a builder does nothing until build()"]
pub struct ConsoleConfigBuilder {
    tenancy: Tenancy,
    verifier: TokenVerifier,
    operators: OperatorPolicy,
    token_cookie: String,
    csrf_secret: Option<Vec<u8>>,
}

impl fmt::Debug for ConsoleConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfigBuilder")
            .field("operators", &self.operators)
            .field("token_cookie", &self.token_cookie)
            .field("csrf_secret", &self.csrf_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl ConsoleConfigBuilder {
    /// Who is the platform operator. Default [`OperatorPolicy::nobody`].
    pub fn operators(mut self, policy: OperatorPolicy) -> Self {
        self.operators = policy;
        self
    }

    /// The cookie that carries the Supabase access token when a request has
    /// no `Authorization: Bearer` header (browsers following links and
    /// posting forms). Default `sb-access-token`.
    pub fn token_cookie(mut self, name: impl Into<String>) -> Self {
        self.token_cookie = name.into();
        self
    }

    /// The secret that signs the CSRF tokens of every form, at least
    /// [`MIN_CSRF_SECRET_BYTES`] long. Give every instance behind one
    /// domain the same secret; by default each console makes a random one,
    /// so a form opened on one instance cannot be posted to another (or
    /// after a restart).
    pub fn csrf_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.csrf_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Checks the settings. `Config` for a CSRF secret that is too short or
    /// a token cookie name that is not a valid cookie name.
    pub fn build(self) -> Result<ConsoleConfig> {
        let cookie_ok = !self.token_cookie.is_empty()
            && self
                .token_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !cookie_ok {
            return Err(Error::config(format!(
                "token_cookie {:?} is not a cookie name (letters, digits, '-', '_', '.')",
                self.token_cookie
            )));
        }
        let key = match self.csrf_secret {
            Some(secret) if secret.len() < MIN_CSRF_SECRET_BYTES => {
                return Err(Error::config(format!(
                    "the CSRF secret is {} bytes; it must be at least {MIN_CSRF_SECRET_BYTES}",
                    secret.len()
                )));
            }
            Some(secret) => ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            None => {
                ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                    .map_err(|_| Error::config("no system randomness for the CSRF secret"))?
            }
        };
        Ok(ConsoleConfig {
            tenancy: self.tenancy,
            verifier: self.verifier,
            operators: self.operators,
            token_cookie: self.token_cookie,
            csrf_secret: Arc::new(key),
        })
    }
}
