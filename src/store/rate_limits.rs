//! [`RateLimitStore`]: short-window rate limits: their configuration, and
//! the GCRA state changed by one atomic step.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{LimitId, OrgId};
use crate::limits::rate::{RateLimit, RateRequest, RateResult, RateState};

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ rate_limit_store_methods {
    fn rate_limit_states(org: crate::ids::OrgId) -> crate::error::Result<Vec<crate::limits::rate::RateState>>;
    fn put_rate_limit(limit: &crate::limits::rate::RateLimit) -> crate::error::Result<crate::limits::rate::RateLimit>;
    fn delete_rate_limit(org: crate::ids::OrgId, id: crate::ids::LimitId) -> crate::error::Result<bool>;
    fn acquire_rate(request: &crate::limits::rate::RateRequest) -> crate::error::Result<crate::limits::rate::RateResult>;
});

/// Short-window rate limits: their configuration, and the GCRA state
/// changed by one atomic step ([`acquire_rate`](Self::acquire_rate)).
///
/// An optional capability, outside the [`Store`](super::Store) bundle: a
/// backend that has it returns itself from [`Backend::rate_limits`]. The
/// algorithm is [`limits::rate`](crate::limits::rate); a backend runs its
/// step, [`rate::apply`](crate::limits::rate::apply), on the stored state
/// atomically, and the contract suite checks it gives the same answers.
#[async_trait]
pub trait RateLimitStore: Backend {
    /// Every rate limit of `org` (every scope) with its stored TAT, ordered
    /// by creation time, then id. Empty for an unknown organization.
    async fn rate_limit_states(&self, org: OrgId) -> Result<Vec<RateState>>;

    /// Sets a rate limit. One with the same organization, scope, metric and
    /// window is replaced in place: its value, burst, mode and expiry change, its
    /// id, creation time and state stay (the returned limit says so).
    /// `NotFound` if the organization does not exist.
    async fn put_rate_limit(&self, limit: &RateLimit) -> Result<RateLimit>;

    /// Deletes a rate limit of `org` and its state; whether it existed.
    async fn delete_rate_limit(&self, org: OrgId, id: LimitId) -> Result<bool>;

    /// One rate decision in one atomic step: reads every rate limit of
    /// `request.org` that applies to `request.user` (org-wide or theirs)
    /// on a charged metric, with its TAT, and applies
    /// [`rate::apply`](crate::limits::rate::apply): a `Check` writes
    /// nothing; an `Acquire` writes the new TATs only if every hard limit
    /// conforms (all or nothing); a `Refund` lowers them. Concurrent calls
    /// are serialised per limit, so they admit exactly what the algorithm
    /// allows in some order of their `now` values. Returns the limits with
    /// their TAT *before* the call, ordered by id. No applicable limit:
    /// granted, with none. An unknown organization has none.
    async fn acquire_rate(&self, request: &RateRequest) -> Result<RateResult>;
}

forward_capability!(RateLimitStore, rate_limit_store_methods);

/// A bundle's rate limits, through [`Backend::rate_limits`]: what the
/// backend has, or `Unsupported` for every call when it has none. This is
/// what a wrapper holding an `Arc<DynStore>` (fault injection) passes its
/// calls through.
#[async_trait]
impl RateLimitStore for super::DynStore {
    async fn rate_limit_states(&self, org: OrgId) -> Result<Vec<RateState>> {
        capability(self)?.rate_limit_states(org).await
    }

    async fn put_rate_limit(&self, limit: &RateLimit) -> Result<RateLimit> {
        capability(self)?.put_rate_limit(limit).await
    }

    async fn delete_rate_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        capability(self)?.delete_rate_limit(org, id).await
    }

    async fn acquire_rate(&self, request: &RateRequest) -> Result<RateResult> {
        capability(self)?.acquire_rate(request).await
    }
}

/// `store`'s rate limits, or `Unsupported`.
pub(crate) fn capability(store: &super::DynStore) -> Result<&dyn RateLimitStore> {
    store.rate_limits().ok_or_else(|| {
        crate::error::Error::new(
            crate::error::ErrorKind::Unsupported,
            "this store has no rate limits (Backend::rate_limits is None)",
        )
    })
}

pub(crate) use rate_limit_store_methods;
