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
/// How a Supabase user becomes the operator depends on the policy:
///
/// | policy | to make a user the operator | takes effect |
/// |---|---|---|
/// | [`nobody`](Self::nobody) | impossible: the console has no operator | — |
/// | [`user_ids`](Self::user_ids) | add their id (`select id from auth.users where email = '…'`) to the host's configuration | when the host builds its [`ConsoleConfig`] again (a restart); no new token |
/// | [`app_metadata_flag`](Self::app_metadata_flag) | set the flag in their `raw_app_meta_data` (SQL or the Auth admin API, see there) | when they get a new access token: they sign in again |
/// | [`custom`](Self::custom) | whatever the rule reads from the verified [`Claims`] | as the rule says |
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

    /// These users are operators: their ids (`auth.users.id`, shown in
    /// the Supabase dashboard under Authentication → Users), typically
    /// read from the host's configuration. A change applies when the host
    /// builds its [`ConsoleConfig`] again, whatever the users' tokens say.
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
    ///
    /// # Making a user the operator
    ///
    /// Supabase Auth copies a user's `auth.users.raw_app_meta_data` into
    /// the `app_metadata` claim of every access token it issues. Set the
    /// flag there, as the project's `postgres` role (the dashboard's SQL
    /// editor, or `psql` with the database's connection string), keeping
    /// what Auth keeps there (`provider`, `providers`):
    ///
    /// ```sql
    /// update auth.users
    ///    set raw_app_meta_data = coalesce(raw_app_meta_data, '{}'::jsonb) || '{"tenancy_operator": true}'
    ///  where email = 'ops@example.com';
    /// ```
    ///
    /// Or with the service-role key, through the Auth admin API, which
    /// merges the keys it is given:
    /// `supabase.auth.admin.updateUserById(id, { app_metadata: { tenancy_operator: true } })`
    /// in supabase-js, or `PUT {SUPABASE_URL}/auth/v1/admin/users/{id}`
    /// with `{"app_metadata": {"tenancy_operator": true}}`, which is what
    /// `cargo run --example admin --features supabase -- make-operator ops@example.com`
    /// does.
    ///
    /// Tokens already issued keep the claims they were issued with: the
    /// user signs in again (or their client refreshes the session) to get
    /// a token with the flag. Removing it (`raw_app_meta_data -
    /// 'tenancy_operator'`, or `null` through the admin API) likewise ends
    /// the operator's access only when their current token expires (an
    /// hour by default). For a revocation that takes effect at once, use
    /// [`user_ids`](Self::user_ids), or a [`custom`](Self::custom) rule
    /// that asks the host's own records.
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
    pub(super) allow_first_organization: bool,
}

impl fmt::Debug for ConsoleConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("verifier", &self.verifier)
            .field("operators", &self.operators)
            .field("token_cookie", &self.token_cookie)
            .field("allow_first_organization", &self.allow_first_organization)
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
            allow_first_organization: false,
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
    allow_first_organization: bool,
}

impl fmt::Debug for ConsoleConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfigBuilder")
            .field("operators", &self.operators)
            .field("token_cookie", &self.token_cookie)
            .field("csrf_secret", &self.csrf_secret.is_some())
            .field("allow_first_organization", &self.allow_first_organization)
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

    /// Lets a signed-in user who belongs to no organization create one from
    /// the start page, and become its owner. Off by default.
    ///
    /// Off, because every user who can sign in to the Supabase project
    /// could then make a tenant: with open sign-ups that is anyone on the
    /// internet, and a new organization has no limits until the operator
    /// sets some. Turn it on when that is what the product wants (a
    /// self-serve SaaS, with limits that the host sets on creation or
    /// plans that bound usage); leave it off when organizations come from
    /// the host's own onboarding, an invitation or the operator.
    ///
    /// On, the start page of a user with no organization shows a form
    /// (name, an optional slug made from the name when empty, a time
    /// zone), protected by the same CSRF token as every console form. The
    /// server checks on each post that creation is allowed and that the
    /// user still belongs to no organization (403 otherwise), so a user
    /// makes their first organization here and any other through the
    /// host.
    pub fn allow_first_organization(mut self, allow: bool) -> Self {
        self.allow_first_organization = allow;
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
            allow_first_organization: self.allow_first_organization,
        })
    }
}
