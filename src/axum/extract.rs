//! Extractors: the tenant context, feature gates and metered operations.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use rust_decimal::Decimal;

use crate::axum::rejection::TenantRejection;
use crate::axum::token::TokenVerifier;
use crate::error::{Error, ErrorKind};
use crate::ids::OrgId;
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
        let token = bearer_token(parts)
            .map_err(|_| TenantRejection::DoubledAuthorization)?
            .ok_or(TenantRejection::Unauthenticated)?;
        let user = self.inner.verifier.verify_user(token).await.map_err(|e| {
            tracing::debug!(error = %e, "token rejected");
            TenantRejection::Unauthenticated
        })?;
        let tenancy = &self.inner.tenancy;
        match self.requested_org(parts, state).await? {
            Some(org) => tenancy
                .context(user, org)
                .await
                .map_err(TenantRejection::from_error),
            None => match tenancy.default_context(user).await {
                Ok(Some(ctx)) => Ok(ctx),
                Ok(None) => Err(TenantRejection::NoOrganization),
                Err(e) => Err(TenantRejection::from_error(e)),
            },
        }
    }

    /// The context already resolved for this request, or a new one.
    async fn context<S: Send + Sync>(
        &self,
        parts: &mut Parts,
        state: &S,
    ) -> Result<TenantContext, TenantRejection> {
        if let Some(ctx) = parts.extensions.get::<TenantContext>() {
            return Ok(ctx.clone());
        }
        let ctx = self.authenticate(parts, state).await?;
        parts.extensions.insert(ctx.clone());
        Ok(ctx)
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

/// The request's [`TenantContext`]: a verified user in an organization they
/// belong to. Resolved once per request and shared with the other
/// extractors.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantContext);

impl<S> FromRequestParts<S> for Tenant
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ctx) = parts.extensions.get::<TenantContext>() {
            return Ok(Tenant(ctx.clone()));
        }
        let ctx = TenantAuth::from_ref(state).context(parts, state).await?;
        Ok(Tenant(ctx))
    }
}

/// The shared start of the guards: the state's [`TenantAuth`] and the
/// request's context.
async fn auth_and_context<S>(
    parts: &mut Parts,
    state: &S,
) -> Result<(TenantAuth, TenantContext), TenantRejection>
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
{
    let auth = TenantAuth::from_ref(state);
    let ctx = auth.context(parts, state).await?;
    Ok((auth, ctx))
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
pub struct FeatureGate<F>(TenantContext, PhantomData<F>);

impl<F> FeatureGate<F> {
    /// The tenant context.
    pub fn context(&self) -> &TenantContext {
        &self.0
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
        let (auth, ctx) = auth_and_context(parts, state).await?;
        match auth.tenancy().has_feature(&ctx, F::KEY).await {
            Ok(true) => Ok(FeatureGate(ctx, PhantomData)),
            Ok(false) => Err(TenantRejection::FeatureDisabled(F::KEY)),
            Err(e) => Err(TenantRejection::from_guard_error(
                e,
                format!("FeatureName::KEY {:?}", F::KEY),
            )),
        }
    }
}

/// A metered operation, named at the type level for [`Metered`]: the
/// metric it consumes and the amount to reserve up front.
pub trait MeteredOperation: Send + Sync + 'static {
    /// The metric (`tokens`).
    const METRIC: &'static str;
    /// The estimate reserved before the handler runs.
    fn estimate() -> Decimal;
}

/// Reserves `M::estimate()` of `M::METRIC` before the handler runs, or
/// refuses with 429 (`Retry-After` and a JSON body with used, limit and
/// resets_at). The handler reports the actual amount with
/// [`commit`](Metered::commit); if it returns without committing (an error
/// path), the hold is released.
#[derive(Debug)]
pub struct Metered<M> {
    ctx: TenantContext,
    tenancy: Tenancy,
    /// Always `Some` until a commit takes it or `Drop` releases it.
    reservation: Option<Reservation>,
    _operation: PhantomData<M>,
}

impl<M> Metered<M> {
    /// The tenant context.
    pub fn context(&self) -> &TenantContext {
        &self.ctx
    }

    /// The reservation held for this request.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
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
        if let Some(reservation) = self.reservation.take() {
            let tenancy = self.tenancy.clone();
            // Released in the background: the handler has already answered.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = tenancy.release(&reservation).await {
                        tracing::warn!(error = %e, "releasing an uncommitted reservation failed; it will expire");
                    }
                });
            }
        }
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
        let (auth, ctx) = auth_and_context(parts, state).await?;
        match auth.tenancy().reserve(&ctx, M::METRIC, M::estimate()).await {
            Ok(ReserveOutcome::Granted(reservation)) => Ok(Metered {
                ctx,
                tenancy: auth.tenancy().clone(),
                reservation: Some(reservation),
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
