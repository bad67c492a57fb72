//! Budget leases: local decisions on a leased slice of the budget.
//!
//! [`Tenancy::leased`] gives a [`LeasedMeter`]: the same reserve, commit
//! and release as [`Tenancy::reserve`], decided in process on a lease the
//! store granted, with the usage recorded through a
//! [`UsageRecorder`]. The rules are in [`limits::lease`](crate::limits::lease).
//!
//! The limits a lease is granted under are the organization's effective
//! ones (its plan's with its unexpired overrides on top), as the store
//! reads them at each grant. A plan change or override applies to a lease
//! from its next renewal (when it no longer fits, at a top-up, or at its
//! TTL at the latest): what a live lease already holds may still be
//! decided on. So after a downgrade below usage, at most the free part of
//! each live lease is still granted locally, then the store denies; the
//! `used + held + leased ≤ limit` guarantee holds against the limit in
//! effect when each slice was granted.
//!
//! Leases carry budgets, not rates: a request that a rate limit applies
//! to (its user and metric, or `requests`) is decided per call, by
//! [`Tenancy::reserve`], whenever it reaches the store. A rate limit set
//! while a lease is live applies from the lease's next top-up (which
//! starts once less than half of its last grant is free) or renewal, which
//! returns the lease, or when it lapses; local decisions made before that
//! return completes still use the lease. It applies after the
//! organization's cached entitlements are dropped (at once for a change
//! through the same `Tenancy`, when propagated for one made elsewhere, at
//! `feature_cache_ttl` at the latest).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::Tenancy;
use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, UserId};
use crate::limits::lease::{LEASE_METADATA_KEY, LeaseConfig, LeaseId, LeaseRequest, LocalLease};
use crate::limits::{
    CurrentPeriods, LimitDecision, MAX_AMOUNT, Reservation, ReserveOutcome, validate_amount,
};
use crate::model::{Action, TenantContext, UsageEvent};
use crate::recorder::UsageRecorder;
use crate::store::lease_capability;
use crate::sync::lock;

type Lanes = HashMap<(OrgId, UserId), Vec<Arc<Lane>>, foldhash::fast::RandomState>;

impl Tenancy {
    /// A [`LeasedMeter`] over this facade: reservations decided in process
    /// on budget leases, their usage recorded through `recorder` (which
    /// must record into this facade's store, e.g. one built with
    /// [`UsageRecorder::builder`] from this `Tenancy`).
    ///
    /// Leasing is opt-in, per handle: nothing else changes for the rest of
    /// the facade, whose per-call decisions count live leases as held.
    /// `Unsupported` when the store has no leases
    /// ([`Backend::leases`](crate::store::Backend::leases) is `None`): never a per-process limit;
    /// `InvalidInput` for bad settings.
    ///
    /// ```
    /// use rust_decimal_macros::dec;
    /// use tenancy::limits::lease::LeaseConfig;
    /// use tenancy::{MemoryStore, NewLimit, NewOrganization, PlatformOperator, Tenancy, UsageRecorder, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let alice = UserId::new_v7();
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// # let operator = PlatformOperator::new("docs");
    /// # tenancy.operator(&operator).set_limit(org.id, NewLimit::from_limit_type("daily_tokens", dec!(10000))?).await?;
    /// let ctx = tenancy.context(alice, org.id).await?;
    ///
    /// let meter = tenancy.leased(UsageRecorder::builder(tenancy.clone()).start()?, LeaseConfig::default())?;
    /// let held = meter.reserve(&ctx, "tokens", dec!(100)).await?.into_granted().expect("fits");
    /// assert!(held.is_local(), "decided on a lease");
    /// meter.commit(held, dec!(80)).await?;
    /// meter.shutdown().await?; // usage flushed, the rest of the lease returned
    /// # Ok(()) }
    /// ```
    pub fn leased(&self, recorder: UsageRecorder, config: LeaseConfig) -> Result<LeasedMeter> {
        config.validate()?;
        lease_capability(&*self.inner.store)?;
        Ok(LeasedMeter {
            inner: Arc::new(MeterInner {
                tenancy: self.clone(),
                recorder,
                config,
                lanes: RwLock::default(),
                closed: AtomicBool::new(false),
            }),
        })
    }
}

/// Reservations decided in process on budget leases, with the same
/// guarantees as [`Tenancy::reserve`] for every hard budget limit: `used +
/// held + leased ≤ limit` at every instant, whichever instance decides.
/// A request a rate limit applies to is decided per call, rate limit
/// included; a lease taken before the rate limit was set goes back at its
/// next top-up or renewal, or when it lapses.
///
/// # How it decides
///
/// For each (organization, user, metric) it holds at most one lease. A
/// reservation that fits in the lease's free part is decided locally (a
/// lock, a comparison: no I/O). When a local decision leaves less than half
/// of the last grant free, the lease grows in the background (a *top-up*:
/// the store keeps covering all it covers and adds a fresh share of the
/// headroom; local decisions go on meanwhile). When a reservation does not
/// fit, one task renews the lease
/// ([`LeaseStore::lease_budget`](crate::store::LeaseStore::lease_budget)),
/// returning the unused part and taking a fresh slice of at most
/// [`share`](LeaseConfig::share) of the headroom left, while the others
/// wait for it. When the store grants nothing (the organization is near a
/// limit: less than `min_slice / share` left, or less than `estimate /
/// share`), the reservation is decided by the store per call, as
/// [`Tenancy::reserve`] does, for [`backoff`](LeaseConfig::backoff) before
/// the next try.
///
/// # Usage, exactly once
///
/// A local commit hands one usage event (the reservation's metric and
/// actual amount, its time the reservation's, so it counts in the lease's
/// periods; its metadata naming the lease) to the recorder, which delivers
/// it in batches, idempotently by its id. The store moves its amount from
/// the lease to the counters in the step that records it, so it is never
/// counted as both. A commit per call goes through [`Tenancy::commit`].
///
/// # Leases end
///
/// - at [`shutdown`](Self::shutdown): the recorder is flushed, then every
///   lease is returned (ended at once when everything decided on it is
///   recorded);
/// - at every renewal, which returns the unused part first;
/// - when the organization nears a limit: a top-up that finds no fresh
///   slice to grant returns the lease's unused part at once, and the
///   meter decides per call for [`backoff`](LeaseConfig::backoff) before
///   it tries to lease again (an idle instance, which tops up nothing,
///   keeps its lease until it is spent, returned or lapses);
/// - on their own [`ttl`](LeaseConfig::ttl) after the last renewal, if the
///   instance crashed or hung: an expired lease counts nothing, whether or
///   not anything deleted it. The meter stops deciding on a lease
///   [`margin`](LeaseConfig::margin) before it expires, and at the end of
///   its day.
///
/// Usage decided on a lease must reach the store before the lease expires
/// for the invariant to hold across instances: keep the recorder's flush
/// interval well under the margin (the defaults: 10 s of margin). A
/// reservation dropped without commit or release goes back to the lease at
/// once.
#[derive(Debug, Clone)]
pub struct LeasedMeter {
    inner: Arc<MeterInner>,
}

#[derive(Debug)]
struct MeterInner {
    tenancy: Tenancy,
    recorder: UsageRecorder,
    config: LeaseConfig,
    lanes: RwLock<Lanes>,
    closed: AtomicBool,
}

/// One lease and what was decided on it.
#[derive(Debug)]
struct Lane {
    id: LeaseId,
    org: OrgId,
    user: UserId,
    metric: MetricKey,
    periods: CurrentPeriods,
    /// When its day starts and ends: no local decision after; its events
    /// are dated within.
    day_starts: DateTime<Utc>,
    day_ends: DateTime<Utc>,
    state: Mutex<LaneState>,
    /// Held by the one task renewing the lease.
    renewal: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct LaneState {
    local: LocalLease,
    /// When the lease lapses at the store.
    expires_at: DateTime<Utc>,
    /// Decide per call until then (the store granted nothing).
    per_call_until: DateTime<Utc>,
    /// Below this much free, a local decision starts a top-up in the
    /// background (half the last grant).
    low_water: Decimal,
    /// A top-up is in flight.
    topping_up: bool,
}

impl Lane {
    /// The time of an event decided at `at` (coarse microseconds), within
    /// the lease's day, so it counts in the lease's periods.
    fn event_time(&self, at: i64) -> DateTime<Utc> {
        let last = self.day_ends - chrono::TimeDelta::microseconds(1);
        DateTime::<Utc>::from_timestamp_micros(at)
            .unwrap_or(self.day_starts)
            .clamp(self.day_starts, last)
    }
}

/// The answer of [`LeasedMeter::reserve`].
#[derive(Debug)]
#[must_use]
pub enum LeasedOutcome {
    /// The estimate is held, on a lease or by the store.
    Granted(LeasedReservation),
    /// Some hard limit would be passed (the store decided): nothing is held.
    Denied(LimitDecision),
}

impl LeasedOutcome {
    /// The reservation, if granted.
    pub fn into_granted(self) -> Option<LeasedReservation> {
        match self {
            LeasedOutcome::Granted(r) => Some(r),
            LeasedOutcome::Denied(_) => None,
        }
    }
}

/// An amount held by a [`LeasedMeter`]: on a lease (decided locally) or by
/// the store (decided per call). Commit or release it with the meter that
/// made it; dropped, a local one goes back to its lease at once, a
/// per-call one lapses as a [`Reservation`] does.
#[derive(Debug)]
#[must_use = "commit or release it; a dropped reservation decided nothing"]
pub struct LeasedReservation {
    held: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Local {
        lane: Arc<Lane>,
        estimate: Decimal,
        /// When it was decided, in microseconds since the Unix epoch.
        at: i64,
    },
    Store(Box<Reservation>),
}

impl LeasedReservation {
    /// Whether it was decided locally, on a lease.
    pub fn is_local(&self) -> bool {
        matches!(self.held, Some(Held::Local { .. }))
    }

    /// The amount held.
    pub fn amount(&self) -> Decimal {
        match &self.held {
            Some(Held::Local { estimate, .. }) => *estimate,
            Some(Held::Store(r)) => r.amount(),
            None => Decimal::ZERO,
        }
    }

    /// The metric held.
    pub fn metric(&self) -> Option<&MetricKey> {
        match &self.held {
            Some(Held::Local { lane, .. }) => Some(&lane.metric),
            Some(Held::Store(r)) => Some(r.metric()),
            None => None,
        }
    }
}

impl Drop for LeasedReservation {
    fn drop(&mut self) {
        if let Some(Held::Local { lane, estimate, .. }) = self.held.take() {
            lock(&lane.state).local.give_back(estimate);
        }
    }
}

/// What [`LeasedMeter::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseShutdown {
    /// Leases returned to the store.
    pub returned: usize,
    /// Whether every usage event decided on them was recorded first (if
    /// not, the leases keep covering what was decided until they expire).
    pub flushed: bool,
}

impl LeasedMeter {
    /// The settings it runs with.
    pub fn config(&self) -> &LeaseConfig {
        &self.inner.config
    }

    /// Holds `estimate` of `metric` for the context's user: on the lease
    /// when it fits, renewing the lease when it does not, per call when the
    /// store grants no lease (see the [type docs](Self)). Needs a role that
    /// may [`ConsumeUsage`](Action::ConsumeUsage). A denial is
    /// [`LeasedOutcome::Denied`], decided by the store.
    pub async fn reserve(
        &self,
        ctx: &TenantContext,
        metric: &str,
        estimate: Decimal,
    ) -> Result<LeasedOutcome> {
        if let Some(held) = self.reserve_local(ctx, metric, estimate)? {
            return Ok(LeasedOutcome::Granted(held));
        }
        let inner = &self.inner;
        let metric_key = MetricKey::parse(metric)?;
        let now = inner.tenancy.now();
        // A rate limit charged per request cannot be decided on a lease:
        // such requests go to the store call by call, rate limit included.
        let rate_limited = inner
            .tenancy
            .applying_rate_limit(ctx.org(), ctx.user(), &metric_key)
            .await?
            .is_some();
        if !rate_limited && !inner.closed.load(Ordering::Acquire) {
            let lane = self.lane_for(ctx, &metric_key, now).await?;
            if lock(&lane.state).per_call_until <= now {
                let _renewing = lane.renewal.lock().await;
                let now = inner.tenancy.now();
                if let Some(held) = self.take(&lane, estimate, now.timestamp_micros()) {
                    return Ok(LeasedOutcome::Granted(held));
                }
                if lock(&lane.state).per_call_until <= now {
                    self.renew(&lane, estimate, now).await?;
                    if let Some(held) = self.take(&lane, estimate, now.timestamp_micros()) {
                        return Ok(LeasedOutcome::Granted(held));
                    }
                }
            }
        }
        match inner.tenancy.reserve(ctx, metric, estimate).await? {
            ReserveOutcome::Granted(r) => Ok(LeasedOutcome::Granted(LeasedReservation {
                held: Some(Held::Store(Box::new(r))),
            })),
            ReserveOutcome::Denied(d) => Ok(LeasedOutcome::Denied(d)),
        }
    }

    /// The local decision alone: `Some` when `estimate` fits in the free
    /// part of a live lease this meter holds for the context's user and
    /// `metric`, `None` otherwise (no lease yet, spent, about to expire):
    /// no I/O, never waits. [`reserve`](Self::reserve) starts with it.
    /// `PermissionDenied` / `InvalidInput` as `reserve`.
    #[inline]
    pub fn reserve_local(
        &self,
        ctx: &TenantContext,
        metric: &str,
        estimate: Decimal,
    ) -> Result<Option<LeasedReservation>> {
        ctx.require(Action::ConsumeUsage)?;
        if estimate.is_sign_negative() || estimate > MAX_AMOUNT {
            validate_amount("estimate", estimate)?;
        }
        let Some(lane) = self.find(ctx.org(), ctx.user(), metric) else {
            return Ok(None);
        };
        Ok(self.take(
            &lane,
            estimate,
            self.inner.tenancy.inner.clock.coarse_unix_micros(),
        ))
    }

    /// Records `actual` of the reserved metric and ends the reservation;
    /// the event id the usage is recorded under. Locally: one event handed
    /// to the recorder (recorded once, in the lease's periods), the lease's
    /// free part adjusted by `estimate − actual` (`actual` may exceed the
    /// estimate: it is recorded in full). Per call: [`Tenancy::commit`].
    /// If the recorder refuses the event, nothing is recorded, the
    /// reservation goes back to the lease, and the error says why.
    pub async fn commit(
        &self,
        mut reservation: LeasedReservation,
        actual: Decimal,
    ) -> Result<EventId> {
        let actual = validate_amount("actual", actual)?;
        match reservation.held.take() {
            Some(Held::Local { lane, estimate, at }) => {
                let event = UsageEvent::new(lane.org)
                    .user(lane.user)
                    .quantity(lane.metric.clone(), actual)
                    .at(lane.event_time(at))
                    .metadata(serde_json::json!({ LEASE_METADATA_KEY: lane.id.to_string() }));
                match self.inner.recorder.record(event) {
                    Ok(id) => {
                        lock(&lane.state).local.commit(estimate, actual);
                        Ok(id)
                    }
                    Err(e) => {
                        lock(&lane.state).local.give_back(estimate);
                        Err(e)
                    }
                }
            }
            Some(Held::Store(r)) => {
                self.inner.tenancy.commit(&r, actual).await?;
                Ok(EventId::from(r.id()))
            }
            None => Err(Error::invalid_input("reservation", "already settled")),
        }
    }

    /// Ends the reservation without recording anything; whether it was
    /// still held (a per-call hold may have expired).
    pub async fn release(&self, mut reservation: LeasedReservation) -> Result<bool> {
        match reservation.held.take() {
            Some(Held::Local { lane, estimate, .. }) => {
                lock(&lane.state).local.give_back(estimate);
                Ok(true)
            }
            Some(Held::Store(r)) => self.inner.tenancy.release(&r).await,
            None => Ok(false),
        }
    }

    /// Flushes the recorder, then returns every lease: what was decided on
    /// it stays covered, the rest goes back at once, and a lease whose
    /// usage is all recorded ends now. Afterwards every reservation is
    /// decided per call. Reservations still held locally keep their part of
    /// their lease covered until it expires.
    pub async fn shutdown(&self) -> Result<LeaseShutdown> {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        let flushed = inner.recorder.flush().await.is_ok();
        let lanes: Vec<Arc<Lane>> = read(&inner.lanes).values().flatten().cloned().collect();
        let mut returned = 0;
        let mut first_error = None;
        for lane in lanes {
            let _renewing = lane.renewal.lock().await;
            match self.give_back_lease(&lane, flushed).await {
                Ok(true) => returned += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        write(&inner.lanes).clear();
        match first_error {
            Some(e) => Err(e),
            None => Ok(LeaseShutdown { returned, flushed }),
        }
    }

    // ---- internals -------------------------------------------------------

    /// The lane of (org, user, metric), if any.
    #[inline]
    fn find(&self, org: OrgId, user: UserId, metric: &str) -> Option<Arc<Lane>> {
        let lanes = read(&self.inner.lanes);
        lanes
            .get(&(org, user))?
            .iter()
            .find(|l| l.metric.as_str() == metric)
            .cloned()
    }

    /// The lane for the context's user and `metric` in the current day:
    /// the one there is, or a new one (the previous day's returned).
    async fn lane_for(
        &self,
        ctx: &TenantContext,
        metric: &MetricKey,
        now: DateTime<Utc>,
    ) -> Result<Arc<Lane>> {
        let (org, user) = (ctx.org(), ctx.user());
        if let Some(lane) = self.find(org, user, metric.as_str())
            && now < lane.day_ends
        {
            return Ok(lane);
        }
        let tz = ctx.organization().timezone;
        let periods = CurrentPeriods::at(now, tz);
        let fresh = Arc::new(Lane {
            id: LeaseId::new_v7(),
            org,
            user,
            metric: metric.clone(),
            periods,
            day_starts: periods.daily.starts_at(tz),
            day_ends: periods.daily.resets_at(tz),
            state: Mutex::new(LaneState {
                local: LocalLease::empty(),
                expires_at: DateTime::<Utc>::MIN_UTC,
                per_call_until: DateTime::<Utc>::MIN_UTC,
                low_water: Decimal::ZERO,
                topping_up: false,
            }),
            renewal: tokio::sync::Mutex::new(()),
        });
        let (lane, stale) = {
            let mut lanes = write(&self.inner.lanes);
            let list = lanes.entry((org, user)).or_default();
            match list.iter_mut().find(|l| &l.metric == metric) {
                // Another task replaced it meanwhile.
                Some(slot) if now < slot.day_ends => (Arc::clone(slot), None),
                Some(slot) => (
                    Arc::clone(&fresh),
                    Some(std::mem::replace(slot, Arc::clone(&fresh))),
                ),
                None => {
                    list.push(Arc::clone(&fresh));
                    (fresh, None)
                }
            }
        };
        if let Some(stale) = stale {
            let _renewing = stale.renewal.lock().await;
            // Best effort: it lapses on its own otherwise.
            let _ = self.give_back_lease(&stale, false).await;
        }
        Ok(lane)
    }

    /// Asks the store to cover what was decided on the lane and a fresh
    /// slice for `estimate`; the caller holds the lane's renewal lock.
    async fn renew(&self, lane: &Lane, estimate: Decimal, now: DateTime<Utc>) -> Result<()> {
        let config = &self.inner.config;
        let expires_at = now
            .checked_add_signed(config.ttl)
            .ok_or_else(|| Error::config(format!("the clock reads {now}: too late to lease")))?;
        let spoken_for = {
            let mut state = lock(&lane.state);
            state.local.renewing = true;
            state.local.spoken_for()
        };
        let request = LeaseRequest::new(
            lane.id,
            lane.org,
            lane.user,
            lane.metric.clone(),
            lane.periods,
            now,
            expires_at,
            spoken_for,
            config.want(estimate),
        )
        .with_min(config.min(estimate))
        .with_share(config.share);
        let answer = self.lease_store_call(&request).await;
        let mut state = lock(&lane.state);
        match answer {
            Ok(grant) => {
                let valid_until = (expires_at - config.margin).min(lane.day_ends);
                state.local.renewed(&grant, valid_until);
                state.expires_at = grant.expires_at;
                state.low_water = grant.free / Decimal::TWO;
                if grant.free.is_zero() {
                    state.per_call_until = now + config.backoff;
                }
                Ok(())
            }
            Err(e) => {
                // Unknown whether it landed: decide nothing more on it
                // until a renewal succeeds (the store may hold more than
                // needed until it expires: the safe side).
                state.local.renewing = false;
                state.local.valid_until = i64::MIN;
                Err(e)
            }
        }
    }

    /// Returns the lane's lease: covers only what was decided on it, and
    /// ends it now when `recorded` says all of that is in the store.
    /// Whether there was a lease to return. The caller holds the renewal
    /// lock.
    async fn give_back_lease(&self, lane: &Lane, recorded: bool) -> Result<bool> {
        let now = self.inner.tenancy.now();
        let (spoken_for, expires_at, held) = {
            let mut state = lock(&lane.state);
            if state.expires_at <= now {
                state.local.valid_until = i64::MIN;
                return Ok(false);
            }
            state.local.renewing = true;
            (
                state.local.spoken_for(),
                state.expires_at,
                state.local.held(),
            )
        };
        let ends = if recorded && held.is_zero() {
            now
        } else {
            expires_at
        };
        let request = LeaseRequest::new(
            lane.id,
            lane.org,
            lane.user,
            lane.metric.clone(),
            lane.periods,
            now,
            ends,
            spoken_for,
            Decimal::ZERO,
        );
        let answer = self.lease_store_call(&request).await;
        let mut state = lock(&lane.state);
        state.local.renewing = false;
        state.local.valid_until = i64::MIN;
        let grant = answer?;
        state.local.cover(grant.granted);
        state.expires_at = grant.expires_at;
        Ok(true)
    }

    async fn lease_store_call(
        &self,
        request: &LeaseRequest,
    ) -> Result<crate::limits::lease::LeaseGrant> {
        lease_capability(&*self.inner.tenancy.inner.store)?
            .lease_budget(request)
            .await
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LeasedMeter {
    /// Takes `estimate` from the lane's lease if it fits; past the low
    /// water mark, starts a top-up in the background (once at a time), so
    /// the lease grows before it runs dry and nobody waits for it.
    #[inline]
    fn take(&self, lane: &Arc<Lane>, estimate: Decimal, now: i64) -> Option<LeasedReservation> {
        let (taken, top_up) = {
            let mut state = lock(&lane.state);
            let taken = state.local.try_take(estimate, now);
            let top_up = taken && state.local.free < state.low_water && !state.topping_up;
            if top_up {
                state.topping_up = true;
            }
            (taken, top_up)
        };
        if top_up {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(top_up_lease(self.clone(), Arc::clone(lane)));
                }
                Err(_) => lock(&lane.state).topping_up = false,
            }
        }
        taken.then(|| LeasedReservation {
            held: Some(Held::Local {
                lane: Arc::clone(lane),
                estimate,
                at: now,
            }),
        })
    }
}

/// Grows the lane's lease without returning what it covers: the store
/// keeps covering everything the lease covers now (so local decisions go
/// on meanwhile) and adds a fresh share of the headroom. Skipped while a
/// renewal is in flight; a failure is left to the next renewal.
async fn top_up_lease(meter: LeasedMeter, lane: Arc<Lane>) {
    let inner = &meter.inner;
    let Ok(_renewing) = lane.renewal.try_lock() else {
        lock(&lane.state).topping_up = false;
        return;
    };
    let now = inner.tenancy.now();
    let config = &inner.config;
    let expires_at = match now.checked_add_signed(config.ttl) {
        Some(at) if !inner.closed.load(Ordering::Acquire) => at,
        _ => {
            lock(&lane.state).topping_up = false;
            return;
        }
    };
    // A rate limit set meanwhile: the lease goes back and the meter decides
    // per call, where the rate limit is decided.
    let rate_limited = inner
        .tenancy
        .applying_rate_limit(lane.org, lane.user, &lane.metric)
        .await
        .is_ok_and(|limit| limit.is_some());
    if rate_limited {
        lock(&lane.state).topping_up = false;
        let _ = meter.give_back_lease(&lane, false).await;
        return;
    }
    let covered = lock(&lane.state).local.granted;
    let request = LeaseRequest::new(
        lane.id,
        lane.org,
        lane.user,
        lane.metric.clone(),
        lane.periods,
        now,
        expires_at,
        covered,
        config.want(config.min_slice),
    )
    .with_min(config.min_slice)
    .with_share(config.share);
    let answer = meter.lease_store_call(&request).await;
    let near_limit = {
        let mut state = lock(&lane.state);
        state.topping_up = false;
        let Ok(grant) = answer else { return };
        let valid_until = (expires_at - config.margin).min(lane.day_ends);
        state.local.cover(grant.granted);
        state.local.valid_until = valid_until.timestamp_micros();
        state.expires_at = grant.expires_at;
        state.low_water = grant.free / Decimal::TWO;
        if grant.free.is_zero() {
            state.per_call_until = now + config.backoff;
        }
        grant.free.is_zero()
    };
    // Nothing fresh fits: the organization is near a limit. The unused
    // part goes back, so the last of the budget is decided per call by
    // the store, for every instance alike. A failure leaves it to lapse.
    if near_limit {
        let _ = meter.give_back_lease(&lane, false).await;
    }
}

impl super::Operator<'_> {
    /// The leases of `org` in `period` (one metric, or all) whose
    /// `consumed` disagrees with the usage events recorded under them,
    /// ordered by lease id: every lease the store keeps for the
    /// organization, live or expired, whose period of `period`'s kind is
    /// `period` ([`LeaseStore::reconcile_leases`](crate::store::LeaseStore::reconcile_leases)
    /// has the exact rule). A live lease holds `granted − consumed`: a
    /// drifting lease holds too much or too little. Reads only; empty when
    /// all agree. `NotFound` if the organization does not exist,
    /// `InvalidInput` for a bad metric key, `Unsupported` when the store
    /// has no leases ([`Backend::leases`](crate::store::Backend::leases) is `None`).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use tenancy::clock::FakeClock;
    /// use tenancy::limits::PeriodKey;
    /// use tenancy::{MemoryStore, NewOrganization, Period, PlatformOperator, Tenancy, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .clock(FakeClock::new(now))
    ///     .build()?;
    /// let acme = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
    /// let operator = PlatformOperator::new("ops");
    /// let today = PeriodKey::containing(Period::Daily, now, acme.timezone);
    /// // No lease has drifted: nothing to repair.
    /// assert!(tenancy.operator(&operator).reconcile_leases(acme.id, today, None).await?.is_empty());
    /// assert!(tenancy.operator(&operator).repair_leases(acme.id, today, None).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn reconcile_leases(
        &self,
        org: OrgId,
        period: crate::limits::PeriodKey,
        metric: Option<&str>,
    ) -> Result<Vec<crate::limits::lease::LeaseDrift>> {
        let query = self.reconcile_query(org, period, metric).await?;
        let drift = match lease_capability(&*self.tenancy.inner.store) {
            Ok(leases) => leases.reconcile_leases(&query).await,
            Err(e) => Err(e),
        };
        tracing::info!(operator = self.operator.name(), %org, %period, ?metric,
            drifting = ?drift.as_ref().ok().map(Vec::len), "leases reconciled");
        drift
    }

    /// Sets the `consumed` of every lease that
    /// [`reconcile_leases`](Self::reconcile_leases) finds drifting to what
    /// its events sum to, in one atomic step, and returns the drift it
    /// corrected (empty: nothing to repair); the leases' `granted` and
    /// expiry stay. Recording in the organization waits while the repair
    /// runs, and a repair waits for the records in progress, so no
    /// consumption is lost or counted twice. Every corrected lease is
    /// logged. `NotFound` if the organization does not exist,
    /// `Unsupported` when the store has no leases.
    pub async fn repair_leases(
        &self,
        org: OrgId,
        period: crate::limits::PeriodKey,
        metric: Option<&str>,
    ) -> Result<Vec<crate::limits::lease::LeaseDrift>> {
        let query = self.reconcile_query(org, period, metric).await?;
        let repaired = match lease_capability(&*self.tenancy.inner.store) {
            Ok(leases) => leases.repair_leases(&query).await,
            Err(e) => Err(e),
        };
        match &repaired {
            Ok(drift) => {
                for d in drift {
                    tracing::warn!(operator = self.operator.name(), %org, %period,
                        lease = %d.lease, user = %d.user, metric = %d.metric,
                        consumed = %d.consumed, recomputed = %d.recomputed,
                        "lease consumption repaired");
                }
                tracing::info!(operator = self.operator.name(), %org, %period, ?metric,
                    repaired = drift.len(), "leases repaired");
            }
            Err(e) => tracing::warn!(operator = self.operator.name(), %org, %period, ?metric,
                error = %e, "lease repair failed"),
        }
        repaired
    }
}
