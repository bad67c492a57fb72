//! Extractors: the tenant context, feature gates and metered operations.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use rust_decimal::Decimal;

use crate::axum::rejection::TenantRejection;
use crate::axum::token::{Claims, TokenVerifier};
use crate::error::{Error, ErrorKind};
use crate::ids::{OrgId, UserId};
use crate::limits::{Reservation, ReserveOutcome};
use crate::model::{TenantContext, UsageEvent};
use crate::store::CommitOutcome;
use crate::tenancy::Tenancy;

/// Where a request names its organization. When the source is absent
/// from a request (no such header, no such cookie), the user's default
/// organization applies; when it is present but unreadable, empty or not a
/// UUID, the request is refused (400), never served in another org.
///
/// ```
/// use tenancy::axum::OrgSource;
/// let source = OrgSource::header("X-Tenant-Id").unwrap();
/// assert!(matches!(source, OrgSource::Header(ref name) if name == "x-tenant-id"));
/// assert!(OrgSource::header("X Tenant").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgSource {
    /// A header; `X-Org-Id` by default. [`OrgSource::header`] builds one
    /// from a name given as a string. Sent twice, it is refused (400).
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
    /// A path parameter (`/orgs/{org_id}/…`). It must be in every route
    /// the extractors run on: a route without it is a server
    /// misconfiguration (500 naming the parameter), never the default org.
    Path(String),
}

impl OrgSource {
    /// The header `name`. A name that is not a valid HTTP header name is a
    /// [`Config`](ErrorKind::Config) error.
    pub fn header(name: &str) -> crate::error::Result<OrgSource> {
        HeaderName::try_from(name)
            .map(OrgSource::Header)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("the org source {name:?} is not a valid header name"),
                )
                .with_source(e)
            })
    }
}

impl Default for OrgSource {
    fn default() -> Self {
        OrgSource::Header(HeaderName::from_static("x-org-id"))
    }
}

/// What the extractors need: the facade, the token verifier and the org
/// source. Put it in your router state and implement `FromRef` (or use it
/// as the state itself). Cloning it is cheap (a reference count).
#[derive(Debug, Clone)]
pub struct TenantAuth {
    inner: Arc<AuthInner>,
}

#[derive(Debug, Clone)]
struct AuthInner {
    tenancy: Tenancy,
    verifier: TokenVerifier,
    org_source: OrgSource,
}

impl TenantAuth {
    /// Authenticates with `verifier` and resolves contexts with `tenancy`;
    /// the org comes from the `X-Org-Id` header.
    pub fn new(tenancy: Tenancy, verifier: TokenVerifier) -> Self {
        TenantAuth {
            inner: Arc::new(AuthInner {
                tenancy,
                verifier,
                org_source: OrgSource::default(),
            }),
        }
    }

    /// Takes the org from somewhere else.
    pub fn with_org_source(mut self, source: OrgSource) -> Self {
        Arc::make_mut(&mut self.inner).org_source = source;
        self
    }

    /// The facade.
    pub fn tenancy(&self) -> &Tenancy {
        &self.inner.tenancy
    }

    /// Resolves the request's tenant context: verifies the bearer token,
    /// reads the org (or, when the request names none, falls back to the
    /// user's default org), and re-checks membership.
    pub async fn authenticate<S: Send + Sync>(
        &self,
        parts: &mut Parts,
        state: &S,
    ) -> Result<TenantContext, TenantRejection> {
        self.resolve(parts, state)
            .await
            .map(|resolved| resolved.ctx)
    }

    /// [`authenticate`](Self::authenticate), keeping the token it verified.
    /// A [`SignedIn`] already extracted for this request is reused, not
    /// verified again.
    async fn resolve<S: Send + Sync>(
        &self,
        parts: &mut Parts,
        state: &S,
    ) -> Result<Resolved, TenantRejection> {
        let (user, token) = match parts.extensions.get::<SignedIn>() {
            Some(me) => (me.user, me.token.clone()),
            None => {
                let token = request_token(parts)?;
                let user = self.inner.verifier.verify_user(token).await.map_err(|e| {
                    tracing::debug!(error = %e, "token rejected");
                    TenantRejection::Unauthenticated
                })?;
                (user, AccessToken::new(token))
            }
        };
        let tenancy = &self.inner.tenancy;
        let ctx = match self.requested_org(parts, state).await? {
            Some(org) => tenancy
                .context(user, org)
                .await
                .map_err(TenantRejection::from_error)?,
            None => match tenancy.default_context(user).await {
                Ok(Some(ctx)) => ctx,
                Ok(None) => return Err(TenantRejection::NoOrganization),
                Err(e) => return Err(TenantRejection::from_error(e)),
            },
        };
        Ok(Resolved { ctx, token })
    }

    /// The context this `TenantAuth` already resolved for this request, or
    /// a new one. Another `TenantAuth` (a layered router with another org
    /// source or facade) resolves its own.
    async fn context<S: Send + Sync>(
        &self,
        parts: &mut Parts,
        state: &S,
    ) -> Result<Resolved, TenantRejection> {
        let cached = parts
            .extensions
            .get::<ResolvedByAuth>()
            .and_then(|cache| cache.get(&self.inner));
        if let Some(resolved) = cached {
            return Ok(resolved.clone());
        }
        let resolved = self.resolve(parts, state).await?;
        let mut cache = parts
            .extensions
            .remove::<ResolvedByAuth>()
            .unwrap_or_default();
        cache.0.push((Arc::clone(&self.inner), resolved.clone()));
        parts.extensions.insert(cache);
        Ok(resolved)
    }

    /// Verifies the request's bearer token and reads its claims; no
    /// organization is involved.
    async fn sign_in(&self, parts: &Parts) -> Result<SignedIn, TenantRejection> {
        let token = request_token(parts)?;
        let claims = self.inner.verifier.verify_async(token).await.map_err(|e| {
            tracing::debug!(error = %e, "token rejected");
            TenantRejection::Unauthenticated
        })?;
        // `verify_async` checked that `sub` is a user id.
        let user = claims
            .user_id()
            .map_err(|_| TenantRejection::Unauthenticated)?;
        Ok(SignedIn {
            user,
            claims: Arc::new(claims),
            token: AccessToken::new(token),
        })
    }

    /// The organization the request names: `None` only when the source is
    /// absent from it (no header, no cookie).
    async fn requested_org<S: Send + Sync>(
        &self,
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<OrgId>, TenantRejection> {
        match &self.inner.org_source {
            OrgSource::Header(name) => parse_org(header_value(parts, name)?),
            OrgSource::Cookie(name) => {
                parse_org(cookie_value(parts, name).map_err(|_| TenantRejection::BadOrgId)?)
            }
            OrgSource::Path(param) => {
                let params = RawPathParams::from_request_parts(parts, state)
                    .await
                    .map_err(|e| match e {
                        RawPathParamsRejection::InvalidUtf8InPathParam(_) => {
                            TenantRejection::BadOrgId
                        }
                        _ => missing_path_parameter(param),
                    })?;
                let value = params
                    .iter()
                    .find_map(|(key, value)| (key == param).then_some(value))
                    .ok_or_else(|| missing_path_parameter(param))?;
                parse_org(Some(value))
            }
        }
    }
}

fn parse_org(raw: Option<&str>) -> Result<Option<OrgId>, TenantRejection> {
    raw.map(|raw| OrgId::parse(raw).map_err(|_| TenantRejection::BadOrgId))
        .transpose()
}

/// The header's value: `None` when absent; refused when it is not text or
/// is sent more than once (which one would count?).
fn header_value<'a>(
    parts: &'a Parts,
    name: &HeaderName,
) -> Result<Option<&'a str>, TenantRejection> {
    let mut values = parts.headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TenantRejection::BadOrgId);
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| TenantRejection::BadOrgId)
}

/// The first cookie named `name`: `None` when there is none; refused when
/// its value is not UTF-8. Read as bytes, so that another cookie's odd
/// bytes in the same header cannot hide this one.
/// The value of cookie `name`, trimmed; an error if it is not UTF-8.
pub(crate) fn cookie_value<'a>(
    parts: &'a Parts,
    name: &str,
) -> Result<Option<&'a str>, std::str::Utf8Error> {
    let pairs = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'));
    for pair in pairs {
        let pair = pair.trim_ascii();
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if &pair[..eq] == name.as_bytes() {
            return std::str::from_utf8(pair[eq + 1..].trim_ascii()).map(Some);
        }
    }
    Ok(None)
}

fn missing_path_parameter(param: &str) -> TenantRejection {
    let message = format!(
        "the route has no path parameter `{param}`, where OrgSource::Path says the organization is"
    );
    tracing::error!("{message}");
    TenantRejection::Misconfigured(message)
}

/// A request with more than one `Authorization` header: which one would
/// count? A proxy that checked the other would disagree about the caller.
#[derive(Debug)]
pub(crate) struct DoubledAuthorization;

/// The token of the `Authorization: Bearer` header: `None` when there is no
/// such header (or another scheme); refused when the header is sent twice.
pub(crate) fn bearer_token(parts: &Parts) -> Result<Option<&str>, DoubledAuthorization> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DoubledAuthorization);
    }
    Ok(value.to_str().ok().and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }))
}

/// The request's bearer token, or the rejection: 401 without one, 400 when
/// `Authorization` is sent twice.
fn request_token(parts: &Parts) -> Result<&str, TenantRejection> {
    bearer_token(parts)
        .map_err(|_| TenantRejection::DoubledAuthorization)?
        .filter(|token| !token.is_empty())
        .ok_or(TenantRejection::Unauthenticated)
}

/// An access token that passed the [`TokenVerifier`]: the request's
/// `Authorization: Bearer` token, as sent. What [`Tenant`] and
/// [`SignedIn`] hand over for a client acting as the user
/// (`SupabaseStore::user_client`). Only the extractors make one. Its
/// `Debug` never prints it, and it has no `Display`, so that it does not
/// end up in a log by accident.
#[derive(Clone)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    fn new(token: &str) -> Self {
        AccessToken(Arc::from(token))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for AccessToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// What the extractors share within one request: the context and the
/// token it was resolved from.
#[derive(Debug, Clone)]
struct Resolved {
    ctx: TenantContext,
    token: AccessToken,
}

/// The contexts resolved in one request, each with the [`TenantAuth`]
/// that resolved it, told apart by identity: a clone shares its
/// original's, and a changed one (`with_org_source` on a shared
/// `TenantAuth`) has its own. Holding the `Arc` keeps an address from
/// being reused by another `TenantAuth` within the request. Private, so
/// nothing else can put one there.
#[derive(Debug, Clone, Default)]
struct ResolvedByAuth(Vec<(Arc<AuthInner>, Resolved)>);

impl ResolvedByAuth {
    fn get(&self, auth: &Arc<AuthInner>) -> Option<&Resolved> {
        self.0
            .iter()
            .find(|(by, _)| Arc::ptr_eq(by, auth))
            .map(|(_, resolved)| resolved)
    }
}

/// The request's [`TenantContext`]: a verified user in an organization they
/// belong to, and the access token that proved who they are. Resolved once
/// per request and [`TenantAuth`] and shared with the other extractors
/// that use the same `TenantAuth` (a clone counts as the same).
///
/// Take the context with `Tenant(ctx, _)`, and the token too where the
/// handler needs it, for example for a client that acts as the user
/// under row-level security:
///
/// ```no_run
/// # #[cfg(feature = "supabase")]
/// # async fn brands(store: tenancy::supabase::SupabaseStore, tenant: tenancy::axum::Tenant) -> tenancy::Result<()> {
/// let tenancy::axum::Tenant(ctx, token) = tenant;
/// let as_user = store.user_client(token.as_str())?;
/// let brands = as_user.table(&ctx, "brands");
/// # Ok(()) }
/// ```
///
/// A user who belongs to no organization is refused (403
/// `no_organization`); [`SignedIn`] is the extractor for them.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantContext, pub AccessToken);

impl Tenant {
    /// The tenant context.
    pub fn context(&self) -> &TenantContext {
        &self.0
    }

    /// The access token the request was authenticated with: the bearer
    /// token the verifier accepted, as sent.
    pub fn access_token(&self) -> &str {
        self.1.as_str()
    }
}

impl<S> FromRequestParts<S> for Tenant
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Resolved { ctx, token } = TenantAuth::from_ref(state).context(parts, state).await?;
        Ok(Tenant(ctx, token))
    }
}

/// A signed-in user, with or without an organization: the extractor for
/// what comes before one, such as creating the first organization. It
/// verifies the bearer token exactly as [`Tenant`] does, with the same
/// rejections (401 without a valid token, 400 with two `Authorization`
/// headers), and reads no organization, so it never answers 403
/// `no_organization`.
///
/// ```
/// use tenancy::NewOrganization;
/// use tenancy::axum::{SignedIn, TenantAuth};
///
/// async fn create_org(
///     axum::extract::State(auth): axum::extract::State<TenantAuth>,
///     me: SignedIn,
/// ) -> Result<String, tenancy::Error> {
///     // The creator becomes the owner; a taken slug is a 409.
///     let new = NewOrganization::new("Acme", "acme")?;
///     let org = auth.tenancy().create_organization(me.user(), new).await?;
///     Ok(org.id.to_string())
/// }
/// let app: axum::Router<TenantAuth> =
///     axum::Router::new().route("/orgs", axum::routing::post(create_org));
/// ```
#[derive(Clone)]
pub struct SignedIn {
    user: UserId,
    claims: Arc<Claims>,
    token: AccessToken,
}

impl SignedIn {
    /// The user: the token's `sub`.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The token's verified claims (email, `app_metadata`, expiry).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The access token, as the request sent it and the verifier accepted
    /// it.
    pub fn access_token(&self) -> &str {
        self.token.as_str()
    }
}

impl std::fmt::Debug for SignedIn {
    /// The user, never the token or the other claims.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for SignedIn
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(me) = parts.extensions.get::<SignedIn>() {
            return Ok(me.clone());
        }
        let me = TenantAuth::from_ref(state).sign_in(parts).await?;
        parts.extensions.insert(me.clone());
        Ok(me)
    }
}

/// The shared start of the guards: the state's [`TenantAuth`] and the
/// request's context with its token.
async fn auth_and_context<S>(
    parts: &mut Parts,
    state: &S,
) -> Result<(TenantAuth, Resolved), TenantRejection>
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
{
    let auth = TenantAuth::from_ref(state);
    let resolved = auth.context(parts, state).await?;
    Ok((auth, resolved))
}

/// A feature, named at the type level for [`FeatureGate`].
///
/// ```
/// struct VeoAvatars;
/// impl tenancy::axum::FeatureName for VeoAvatars {
///     const KEY: &'static str = "veo_avatars";
/// }
/// ```
pub trait FeatureName: Send + Sync + 'static {
    /// The feature key.
    const KEY: &'static str;
}

/// Refuses the request with 403 unless the organization has feature `F`.
#[derive(Debug)]
pub struct FeatureGate<F>(Resolved, PhantomData<F>);

impl<F> FeatureGate<F> {
    /// The tenant context.
    pub fn context(&self) -> &TenantContext {
        &self.0.ctx
    }

    /// The access token the request was authenticated with, as
    /// [`Tenant::access_token`].
    pub fn access_token(&self) -> &str {
        self.0.token.as_str()
    }
}

impl<S, F> FromRequestParts<S> for FeatureGate<F>
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
    F: FeatureName,
{
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (auth, resolved) = auth_and_context(parts, state).await?;
        match auth.tenancy().has_feature(&resolved.ctx, F::KEY).await {
            Ok(true) => Ok(FeatureGate(resolved, PhantomData)),
            Ok(false) => Err(TenantRejection::FeatureDisabled(F::KEY)),
            Err(e) => Err(TenantRejection::from_guard_error(
                e,
                format!("FeatureName::KEY {:?}", F::KEY),
            )),
        }
    }
}

/// A metered operation, named at the type level for [`Metered`]: the
/// metric it consumes, the amount to reserve up front, and what happens to
/// the hold when the request is abandoned.
pub trait MeteredOperation: Send + Sync + 'static {
    /// The metric (`tokens`).
    const METRIC: &'static str;
    /// What a [`Metered`] dropped before its hold was committed does: the
    /// handler returned early, or the client hung up while a response that
    /// owns it was streaming. [`Abandoned::CommitReported`] unless the
    /// operation says otherwise.
    const ABANDONED: Abandoned = Abandoned::CommitReported;
    /// The estimate reserved before the handler runs.
    fn estimate() -> Decimal;
}

/// What an abandoned [`Metered`] does with its hold: the work it paid for
/// may have been done (a provider bills a stream cut short for what it
/// produced), so dropping a hold silently would lose real cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// Commit what was [reported](Metered::report) so far; release the hold
    /// when nothing was (an error before any work: nothing is recorded).
    CommitReported,
    /// Commit the whole estimate, reported or not: for work billed in full
    /// once it starts.
    CommitEstimate,
    /// Release the hold: record nothing.
    Release,
}

/// Reserves `M::estimate()` of `M::METRIC` before the handler runs, or
/// refuses with 429 (`Retry-After` and a JSON body with used, limit and
/// resets_at). The handler records the actual amount with
/// [`commit`](Metered::commit) or [`commit_event`](Metered::commit_event).
///
/// Work that produces usage as it goes (a streamed completion) reports it
/// with [`report`](Metered::report) (or through a [`UsageMeter`]) and
/// moves the `Metered` into the response stream, which commits the total
/// at its end with [`commit_reported`](Metered::commit_reported). If the
/// `Metered` is dropped first — the handler returned early, or the client
/// hung up and the server dropped the stream — [`M::ABANDONED`](MeteredOperation::ABANDONED)
/// decides, in the background: by default what was reported is committed
/// (and the hold released when nothing was).
#[derive(Debug)]
pub struct Metered<M> {
    ctx: TenantContext,
    token: AccessToken,
    tenancy: Tenancy,
    /// Always `Some` until a commit takes it or `Drop` settles it.
    reservation: Option<Reservation>,
    meter: UsageMeter,
    /// `M::ABANDONED`, kept so that `Drop` needs no bound on `M`.
    abandoned: Abandoned,
    _operation: PhantomData<M>,
}

/// A handle on what a [`Metered`] request has used so far, for code that
/// cannot hold the `Metered` itself (a stream's chunks, a callback).
/// Clones share one total.
#[derive(Debug, Clone, Default)]
pub struct UsageMeter(Arc<std::sync::Mutex<Decimal>>);

impl UsageMeter {
    /// Adds `amount` of the operation's metric to what was used. A
    /// negative amount, or one past [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT),
    /// is `InvalidInput` naming `amount` and changes nothing; the total
    /// saturates at `MAX_AMOUNT`.
    pub fn report(&self, amount: Decimal) -> crate::error::Result<()> {
        let amount = crate::limits::validate_amount("amount", amount)?;
        let mut total = crate::sync::lock(&self.0);
        *total = total.saturating_add(amount).min(crate::limits::MAX_AMOUNT);
        Ok(())
    }

    /// What was reported so far.
    pub fn reported(&self) -> Decimal {
        *crate::sync::lock(&self.0)
    }
}

impl<M> Metered<M> {
    /// The tenant context.
    pub fn context(&self) -> &TenantContext {
        &self.ctx
    }

    /// The access token the request was authenticated with, as
    /// [`Tenant::access_token`].
    pub fn access_token(&self) -> &str {
        self.token.as_str()
    }

    /// The reservation held for this request.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }

    /// Adds `amount` of the operation's metric to what this request used
    /// ([`UsageMeter::report`]).
    pub fn report(&self, amount: Decimal) -> crate::error::Result<()> {
        self.meter.report(amount)
    }

    /// A handle that reports into this request's total.
    pub fn meter(&self) -> UsageMeter {
        self.meter.clone()
    }

    /// Records what was [reported](Self::report) and drops the hold.
    pub async fn commit_reported(self) -> crate::error::Result<CommitOutcome> {
        let reported = self.meter.reported();
        self.commit(reported).await
    }

    /// Records the actual amount and drops the hold.
    pub async fn commit(self, actual: Decimal) -> crate::error::Result<CommitOutcome> {
        let (tenancy, reservation) = self.into_hold()?;
        tenancy.commit(&reservation, actual).await
    }

    /// Records a full usage event (tokens, cost, model) and drops the hold.
    pub async fn commit_event(self, event: UsageEvent) -> crate::error::Result<CommitOutcome> {
        let (tenancy, reservation) = self.into_hold()?;
        tenancy.commit_event(&reservation, event).await
    }

    /// Takes the hold out, so that dropping `self` releases nothing.
    fn into_hold(mut self) -> crate::error::Result<(Tenancy, Reservation)> {
        // Always there: only a commit takes it, and a commit consumes `self`.
        let reservation = self
            .reservation
            .take()
            .ok_or_else(|| Error::unexpected("this request's reservation is already settled"))?;
        Ok((self.tenancy.clone(), reservation))
    }
}

impl<M> Drop for Metered<M> {
    fn drop(&mut self) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let commit = match self.abandoned {
            Abandoned::CommitReported => Some(self.meter.reported()).filter(|r| !r.is_zero()),
            Abandoned::CommitEstimate => Some(reservation.amount()),
            Abandoned::Release => None,
        };
        let tenancy = self.tenancy.clone();
        // Settled in the background: the handler has already answered, or
        // the client is gone.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                reservation = %reservation.id(),
                "an abandoned reservation outside a tokio runtime is left to expire"
            );
            return;
        };
        runtime.spawn(async move {
            let settled = match commit {
                Some(amount) => tenancy.commit(&reservation, amount).await.map(drop),
                None => tenancy.release(&reservation).await.map(drop),
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, reservation = %reservation.id(), "settling an abandoned reservation failed; it will expire");
            }
        });
    }
}

impl<S, M> FromRequestParts<S> for Metered<M>
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
    M: MeteredOperation,
{
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (auth, Resolved { ctx, token }) = auth_and_context(parts, state).await?;
        match auth.tenancy().reserve(&ctx, M::METRIC, M::estimate()).await {
            Ok(ReserveOutcome::Granted(reservation)) => Ok(Metered {
                ctx,
                token,
                tenancy: auth.tenancy().clone(),
                reservation: Some(reservation),
                meter: UsageMeter::default(),
                abandoned: M::ABANDONED,
                _operation: PhantomData,
            }),
            Ok(ReserveOutcome::Denied(decision)) => {
                Err(TenantRejection::LimitExceeded(Box::new(decision)))
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(TenantRejection::Forbidden),
            Err(e) => Err(TenantRejection::from_guard_error(
                e,
                format!("MeteredOperation::METRIC {:?}", M::METRIC),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::model::NewOrganization;

    const JWT_SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

    fn bearer(user: UserId) -> String {
        let claims = serde_json::json!({
            "sub": user.to_string(),
            "aud": "authenticated",
            "role": "authenticated",
            "exp": chrono::Utc::now().timestamp() + 3600,
        });
        let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        format!("Bearer {token}")
    }

    /// The org of the request's [`Tenant`], extracted with `auth` as the
    /// router state.
    async fn org_of(parts: &mut Parts, auth: &TenantAuth) -> OrgId {
        let tenant = Tenant::from_request_parts(parts, auth).await.unwrap();
        tenant.context().org()
    }

    /// Two layered routers' `TenantAuth`s with different org sources, in
    /// one request: each resolves the org its own source names, and each
    /// reuses what it resolved (a clone counts as the same).
    #[tokio::test]
    async fn each_tenant_auth_resolves_its_own_org_in_one_request() {
        let tenancy = Tenancy::builder()
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let user = UserId::new_v7();
        let first = NewOrganization::new("First", "first").unwrap();
        let second = NewOrganization::new("Second", "second").unwrap();
        let first = tenancy.create_organization(user, first).await.unwrap().id;
        let second = tenancy.create_organization(user, second).await.unwrap().id;
        let verifier = TokenVerifier::hs256(JWT_SECRET).unwrap();
        let outer = TenantAuth::new(tenancy, verifier);
        let inner = outer
            .clone()
            .with_org_source(OrgSource::header("x-inner-org").unwrap());

        let (mut parts, ()) = Request::builder()
            .header(header::AUTHORIZATION, bearer(user))
            .header("x-org-id", first.to_string())
            .header("x-inner-org", second.to_string())
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(org_of(&mut parts, &outer).await, first);
        assert_eq!(org_of(&mut parts, &inner).await, second);
        assert_eq!(org_of(&mut parts, &outer.clone()).await, first);
        assert_eq!(org_of(&mut parts, &inner).await, second);
        let cache = parts.extensions.get::<ResolvedByAuth>().unwrap();
        assert_eq!(cache.0.len(), 2, "one context per TenantAuth");
    }

    struct Generate;
    impl MeteredOperation for Generate {
        const METRIC: &'static str = "tokens";
        fn estimate() -> Decimal {
            Decimal::from(100)
        }
    }

    /// A request past an RPM limit is a 429 whose `Retry-After` is the
    /// seconds until the limit admits it again, rounded up, and it holds
    /// nothing.
    #[tokio::test]
    async fn metered_past_a_rate_limit_is_429_with_retry_after() {
        let tenancy = Tenancy::builder()
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let user = UserId::new_v7();
        let org = NewOrganization::new("Rated", "rated").unwrap();
        let org = tenancy.create_organization(user, org).await.unwrap().id;
        let operator = crate::model::PlatformOperator::new("axum-tests");
        let rpm = crate::limits::rate::NewRateLimit::from_limit_type("minute_requests", 1.into())
            .unwrap();
        tenancy
            .operator(&operator)
            .set_rate_limit(org, rpm)
            .await
            .unwrap();
        let budget =
            crate::limits::NewLimit::from_limit_type("monthly_tokens", 1000.into()).unwrap();
        tenancy
            .operator(&operator)
            .set_limit(org, budget)
            .await
            .unwrap();
        let auth = TenantAuth::new(tenancy.clone(), TokenVerifier::hs256(JWT_SECRET).unwrap());
        let request = || {
            Request::builder()
                .header(header::AUTHORIZATION, bearer(user))
                .header("x-org-id", org.to_string())
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let first = Metered::<Generate>::from_request_parts(&mut request(), &auth).await;
        let first = first.unwrap();
        let rejection = Metered::<Generate>::from_request_parts(&mut request(), &auth)
            .await
            .err()
            .unwrap();
        let response = axum::response::IntoResponse::into_response(rejection);
        assert_eq!(response.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = response.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((59..=60).contains(&secs), "Retry-After: {secs}");
        let ctx = tenancy.context(user, org).await.unwrap();
        let lines = tenancy.usage_summary(&ctx).await.unwrap();
        assert!(
            lines.iter().all(|l| l.reserved <= Decimal::from(100)),
            "one hold only"
        );
        drop(first);
    }
}
