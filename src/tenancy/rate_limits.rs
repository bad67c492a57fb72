//! Short-window rate limits: setting them (the operator) and deciding
//! against them ([`Tenancy::check_limit`], [`Tenancy::reserve`],
//! [`Tenancy::check_rate`]).
//!
//! The algorithm and its exact guarantee are on
//! [`limits::rate`](crate::limits::rate). Here: which charges a call
//! makes, and how a backend without the capability answers.
//!
//! - Every [`reserve`](Tenancy::reserve) charges 1 of
//!   [`REQUESTS`](crate::limits::rate::REQUESTS) and its estimate of its
//!   metric (only the estimate, when the metric is `requests` itself), to
//!   every rate limit of the organization that applies to the user
//!   (org-wide, or theirs). A [`commit`](Tenancy::commit) of a different
//!   actual amount changes nothing: rate limits are charged when the work
//!   is admitted.
//! - [`check_limit`](Tenancy::check_limit) and
//!   [`check_rate`](Tenancy::check_rate) make the same decision without
//!   charging anything.
//! - The rate limits applied are the organization's *effective* ones: its
//!   plan's, with its unexpired overrides on top (matched by metric and
//!   window), plus per-user overrides. A plan's rate limit keeps its state
//!   under the plan entry's id, so moving to another plan version starts
//!   its limits with no state.
//! - A decision is one store call
//!   ([`RateLimitStore::acquire_rate`]); a backend without rate limits
//!   ([`Backend::rate_limits`] is `None`) has none to apply, and setting
//!   one there is `Unsupported`. A store acting as a user (a user JWT)
//!   may not decide them: when a rate limit applies to the call, the call
//!   is `Unsupported`, naming the limit, rather than skipping it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{Operator, Tenancy};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{LimitId, MetricKey, OrgId, UserId};
use crate::limits::rate::{
    NewRateLimit, REQUESTS, RateAction, RateDecision, RateDenial, RateLimit, RateRequest, RateState,
};
use crate::limits::{LimitDecision, LimitLevel, validate_amount};
use crate::model::{Action, TenantContext};
use crate::store::{Backend, Principal, RateLimitStore};

impl Tenancy {
    /// The effective rate limits that apply to the user in the active
    /// organization (org-wide ones — its plan's, with its unexpired
    /// overrides on top — and their own), for a usage page. An override's
    /// comes with its state; a plan's has none here (`tat` is `None`:
    /// [`check_rate`](Self::check_rate) reads it). Empty on a backend
    /// without rate limits. A store acting as a user reads no state.
    pub async fn rate_limits(&self, ctx: &TenantContext) -> Result<Vec<RateState>> {
        ctx.require(Action::ViewUsage)?;
        let Some(store) = self.inner.store.rate_limits() else {
            return Ok(Vec::new());
        };
        let entitlements = self.inner.store.fresh_entitlements(ctx.org()).await?;
        let states = store.rate_limit_states(ctx.org()).await?;
        let tat = |id: LimitId| states.iter().find(|s| s.limit.id == id).and_then(|s| s.tat);
        Ok(entitlements
            .rate_limits
            .into_iter()
            .map(|(limit, _)| limit)
            .filter(|limit| limit.applies_to(ctx.user()))
            .map(|limit| RateState {
                tat: tat(limit.id),
                limit,
            })
            .collect())
    }

    /// Whether a request for `amount` of `metric` would pass the rate
    /// limits that apply to the user now, charging nothing: the rate half
    /// of [`check_limit`](Self::check_limit), with every limit's state.
    pub async fn check_rate(
        &self,
        ctx: &TenantContext,
        metric: &str,
        amount: Decimal,
    ) -> Result<RateDecision> {
        ctx.require(Action::ViewUsage)?;
        let metric = MetricKey::parse(metric)?;
        let amount = validate_amount("amount", amount)?;
        let decision = self
            .decide_rate(ctx, &metric, amount, RateAction::Check, self.now())
            .await?;
        Ok(decision.unwrap_or(RateDecision {
            allowed: true,
            limits: Vec::new(),
            denial: None,
        }))
    }

    /// The rate decision for a request of `amount` of `metric` by the
    /// context's user at `now`: `None` when the backend has no rate limits
    /// (or, acting as a user, none applies).
    pub(super) async fn decide_rate(
        &self,
        ctx: &TenantContext,
        metric: &MetricKey,
        amount: Decimal,
        action: RateAction,
        now: DateTime<Utc>,
    ) -> Result<Option<RateDecision>> {
        let Some(store) = self.inner.store.rate_limits() else {
            return Ok(None);
        };
        let Some(applying) = self
            .applying_rate_limit(ctx.org(), ctx.user(), metric)
            .await?
        else {
            return Ok(None);
        };
        if store.principal() == Principal::User {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the rate limit {} ({}) applies, and a store acting as a user \
                     cannot decide rate limits; use the service role",
                    applying.limit_type(),
                    applying.scope
                ),
            ));
        }
        let request = RateRequest {
            org: ctx.org(),
            user: ctx.user(),
            charges: charges(metric, amount),
            now,
            action,
        };
        let result = store.acquire_rate(&request).await?;
        Ok(Some(RateDecision::explain(&request, result)))
    }

    /// An effective rate limit (plan or override) a request of `metric` by
    /// `user` in `org` would be charged against (a request charges one
    /// request and its own metric), from the organization's cached
    /// entitlements: no store call, no allocation, for an organization
    /// without one. `None` on a store without rate limits.
    pub(super) async fn applying_rate_limit(
        &self,
        org: OrgId,
        user: UserId,
        metric: &MetricKey,
    ) -> Result<Option<RateLimit>> {
        let configured = self.store().cached_rate_limits(org).await?;
        Ok(configured
            .iter()
            .find(|limit| {
                limit.applies_to(user) && (limit.metric == REQUESTS || &limit.metric == metric)
            })
            .cloned())
    }

    /// Gives back what an admitted [`decide_rate`](Self::decide_rate) took,
    /// after the budget refused the same request. A failure is logged, not
    /// returned: the charge drains on its own within the window.
    pub(super) async fn refund_rate(
        &self,
        ctx: &TenantContext,
        metric: &MetricKey,
        amount: Decimal,
    ) {
        let Some(store) = self.inner.store.rate_limits() else {
            return;
        };
        let request = RateRequest {
            org: ctx.org(),
            user: ctx.user(),
            charges: charges(metric, amount),
            now: self.now(),
            action: RateAction::Refund,
        };
        if let Err(error) = store.acquire_rate(&request).await {
            tracing::warn!(%error, org = %ctx.org(), "a rate charge was not refunded; it drains on its own");
        }
    }
}

/// What a request for `amount` of `metric` charges: one request, and the
/// amount of its metric.
fn charges(metric: &MetricKey, amount: Decimal) -> Vec<(MetricKey, Decimal)> {
    if metric == &REQUESTS {
        vec![(REQUESTS, amount)]
    } else {
        vec![(REQUESTS, Decimal::ONE), (metric.clone(), amount)]
    }
}

/// A rate denial as the [`LimitDecision`] `check_limit` and `reserve`
/// answer with: `allowed` false, the denying limit's metric, value, usage
/// and what it would admit at once, `resets_at` the instant the same
/// request would be admitted (`None`: never, it is more than the burst),
/// `level` exceeded, and `decided_by` `None` (it names budget limits
/// only). [`Tenancy::check_rate`] tells the whole story.
pub(super) fn limit_decision_of(denial: &RateDenial) -> LimitDecision {
    LimitDecision {
        allowed: false,
        metric: denial.limit.metric.clone(),
        requested: denial.requested,
        used: denial.used,
        reserved: Decimal::ZERO,
        limit: Some(denial.limit.value),
        remaining: Some(denial.remaining),
        resets_at: denial.retry_at,
        level: LimitLevel::Exceeded,
        decided_by: None,
    }
}

impl Operator<'_> {
    /// Every rate-limit row of `org` (every scope) with its state: its own
    /// rows, the overrides, lapsed ones included (the effective ones are in
    /// [`entitlements`](Self::entitlements)). Empty on a backend without
    /// rate limits.
    pub async fn rate_limits(&self, org: OrgId) -> Result<Vec<RateState>> {
        match self.tenancy.inner.store.rate_limits() {
            Some(store) => store.rate_limit_states(org).await,
            None => Ok(Vec::new()),
        }
    }

    /// Sets a rate limit for `org`, replacing any with the same scope,
    /// metric and window (its id, creation time and state stay). On an
    /// organization with a plan it is an override of the plan's rate limit
    /// on the same metric and window; with `NewRateLimit::until` it lapses
    /// then, and the plan's applies again. Audited.
    /// `Unsupported` on a backend without rate limits; `NotFound` for an
    /// unknown organization.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # use tenancy::limits::rate::NewRateLimit;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// # let alice = UserId::new_v7();
    /// # let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let operator = PlatformOperator::new("billing");
    /// let rpm = NewRateLimit::from_limit_type("minute_requests", 2.into())?;
    /// tenancy.operator(&operator).set_rate_limit(org.id, rpm).await?;
    ///
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// for _ in 0..2 {
    ///     let held = tenancy.reserve(&ctx, "tokens", 10.into()).await?;
    ///     assert!(held.decision().allowed);
    /// }
    /// let third = tenancy.reserve(&ctx, "tokens", 10.into()).await?;
    /// assert!(!third.decision().allowed);
    /// assert_eq!(third.decision().metric.as_str(), "requests");
    /// # Ok(()) }
    /// ```
    pub async fn set_rate_limit(&self, org: OrgId, limit: NewRateLimit) -> Result<RateLimit> {
        let store = self.rate_store()?;
        let limit = limit.into_limit(LimitId::new_v7(), org, self.tenancy.now());
        let stored = self.audited(store.put_rate_limit(&limit)).await?;
        tracing::info!(operator = self.operator.name(), %org, limit_type = %stored.limit_type(),
            value = %stored.value, burst = %stored.burst, scope = %stored.scope, "rate limit set");
        Ok(stored)
    }

    /// Removes a rate limit (and its state) from `org`; whether it existed.
    /// `Unsupported` on a backend without rate limits.
    pub async fn remove_rate_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let removed = self
            .audited(self.rate_store()?.delete_rate_limit(org, id))
            .await;
        tracing::info!(operator = self.operator.name(), %org, limit = %id,
            removed = ?removed.as_ref().ok(), "rate limit removed");
        removed
    }

    /// Whether the store has rate limits ([`Backend::rate_limits`]).
    pub fn rate_limits_supported(&self) -> bool {
        self.tenancy.inner.store.rate_limits().is_some()
    }

    fn rate_store(&self) -> Result<&dyn RateLimitStore> {
        self.tenancy.inner.store.rate_limits().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "this store has no rate limits (Backend::rate_limits is None)",
            )
        })
    }
}
