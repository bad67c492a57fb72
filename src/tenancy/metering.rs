//! Recording usage and enforcing limits: the [`Tenancy`] methods that join
//! the pure rules in [`limits`](crate::limits) to the store's atomic
//! primitives.
//!
//! The guarantees and who may consume are on [`Tenancy::reserve`], where
//! the rendered documentation shows them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::Tenancy;
use super::alerts::AlertCheck;
use super::rate_limits::limit_decision_of;
use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, ReservationId, UserId};
use crate::limits::rate::{RateAction, RateDecision, RateDenial};
use crate::limits::{
    CurrentPeriods, Limit, LimitDecision, Reservation, ReserveOutcome, decide, validate_amount,
};
use crate::model::{Action, TenantContext, UsageEvent, UsageRecord};
use crate::store::{
    CommitOutcome, CommitRequest, MeteringStore, PlanStore, RecordOutcome, ReleaseRequest,
    ReserveRequest, UsageQuery,
};

/// How long after it expired a hold is still recognised by a commit: 7
/// days. A commit at or after `expires_at + 7 days` is `NotFound` and
/// records nothing, whether or not the store has purged the hold yet.
pub const EXPIRED_HOLD_RETENTION: TimeDelta = TimeDelta::days(7);

/// An organization's effective limits, cached with its features, for
/// deciding which alert checks a write needs.
#[derive(Debug, Default)]
pub(super) struct OrgLimits {
    limits: Vec<Limit>,
}

impl OrgLimits {
    pub(super) fn new(limits: Vec<Limit>) -> Self {
        OrgLimits { limits }
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Whether `record` counts towards an org-wide limit (`None`) or one of
    /// its user's own (`Some(user)`).
    fn touched_by(&self, record: &UsageRecord, user: Option<UserId>) -> bool {
        self.limits
            .iter()
            .any(|l| l.scope.user() == user && record.amounts.iter().any(|(m, _)| m == &l.metric))
    }
}

/// A batch validated and resolved by [`Tenancy::prepare_usage`], ready for
/// [`Tenancy::write_usage`].
#[derive(Debug)]
pub(crate) struct PreparedUsage {
    records: Vec<UsageRecord>,
    orgs: HashMap<OrgId, (Tz, Arc<OrgLimits>)>,
}

impl Tenancy {
    // ---- limits a user sees ----------------------------------------------

    /// The effective limits of the active organization that apply to the
    /// user: org-wide ones (its plan's, with its unexpired overrides on
    /// top) and their own, read fresh from the store. A limit from the plan
    /// carries the plan entry's id and no expiry.
    pub async fn limits(&self, ctx: &TenantContext) -> Result<Vec<Limit>> {
        ctx.require(Action::ViewUsage)?;
        let now = self.now();
        let entitlements = self.inner.store.entitlements(ctx.org(), now).await?;
        let shown = crate::limits::entitlements::for_user(entitlements, ctx.user(), now);
        Ok(shown.limits.into_iter().map(|(l, _)| l).collect())
    }

    // ---- recording (workers) ---------------------------------------------

    /// [`Service::record_usage_batch`](super::Service::record_usage_batch).
    pub(super) async fn record_usage_batch(
        &self,
        events: Vec<UsageEvent>,
    ) -> Result<RecordOutcome> {
        let prepared = self.prepare_usage(events, true).await?;
        self.write_usage(&prepared).await
    }

    /// The first half of [`record_usage_batch`](Self::record_usage_batch):
    /// validates the events and resolves them into store records in their
    /// organizations' time zones. `check_time` is false for events whose
    /// time was checked when they were accepted (a recorder delivering
    /// after an outage). The recorder prepares a batch once and retries only
    /// [`write_usage`](Self::write_usage).
    pub(crate) async fn prepare_usage(
        &self,
        events: impl IntoIterator<Item = UsageEvent>,
        check_time: bool,
    ) -> Result<PreparedUsage> {
        let now = self.now();
        let events = events.into_iter();
        let mut records = Vec::with_capacity(events.size_hint().0);
        // One lookup per organization, not per event.
        let mut orgs: HashMap<OrgId, (Tz, Arc<OrgLimits>)> = HashMap::new();
        for event in events {
            let tz = match orgs.get(&event.org) {
                Some((tz, _)) => *tz,
                None => {
                    let tz = self.cached_org(event.org).await?.timezone;
                    let limits = self.org_limits(event.org).await?;
                    orgs.insert(event.org, (tz, limits));
                    tz
                }
            };
            let record = if check_time {
                event.into_record(now, tz)?
            } else {
                event.into_record_accepted(now, tz)?
            };
            records.push(record);
        }
        Ok(PreparedUsage { records, orgs })
    }

    /// The second half of [`record_usage_batch`](Self::record_usage_batch):
    /// one store call, then the alert checks are queued. Safe to repeat: the
    /// store counts each event id once.
    pub(crate) async fn write_usage(&self, prepared: &PreparedUsage) -> Result<RecordOutcome> {
        let outcome = self.inner.store.record_usage(&prepared.records).await?;
        if outcome.inserted > 0 {
            self.queue_alert_checks(&prepared.records, &prepared.orgs);
        }
        Ok(outcome)
    }

    // ---- checking and reserving ------------------------------------------

    /// Whether `amount` more of `metric` fits under every effective limit
    /// (plan and overrides) that applies to the user now. Nothing is held;
    /// use [`reserve`](Self::reserve) before expensive work.
    ///
    /// Rate limits are checked first, charging nothing (see
    /// [`check_rate`](Self::check_rate)): when one would refuse a
    /// [`reserve`](Self::reserve) of the same amount now, the answer is
    /// that denial (see `reserve`), without reading the budget.
    pub async fn check_limit(
        &self,
        ctx: &TenantContext,
        metric: &str,
        amount: Decimal,
    ) -> Result<LimitDecision> {
        ctx.require(Action::ViewUsage)?;
        let metric = MetricKey::parse(metric)?;
        let amount = validate_amount("amount", amount)?;
        let now = self.now();
        let tz = ctx.organization().timezone;
        let rate = self
            .decide_rate(ctx, &metric, amount, RateAction::Check, now)
            .await?;
        if let Some(denial) = rate.as_ref().map(refusal).transpose()?.flatten() {
            #[cfg(feature = "metrics")]
            self.inner.store.limit_decisions().count(
                crate::metrics::DecisionBy::CheckLimit,
                &metric,
                false,
            );
            return Ok(limit_decision_of(denial));
        }
        let snapshot = self
            .inner
            .store
            .usage_snapshot(&UsageQuery {
                org: ctx.org(),
                user: Some(ctx.user()),
                metric: Some(metric.clone()),
                periods: CurrentPeriods::at(now, tz),
                now,
            })
            .await?;
        let decision = decide(
            &metric,
            amount,
            &snapshot.limits,
            tz,
            self.warning_percent(),
        );
        #[cfg(feature = "metrics")]
        self.inner.store.limit_decisions().count(
            crate::metrics::DecisionBy::CheckLimit,
            &metric,
            decision.allowed,
        );
        Ok(decision)
    }

    /// Atomically checks every applicable limit and, if `estimate` fits
    /// under all hard ones, holds it until [`commit`](Self::commit),
    /// [`release`](Self::release) or expiry (the builder's
    /// `reservation_ttl`). A denial is [`ReserveOutcome::Denied`]. Needs a
    /// role that may [`ConsumeUsage`](Action::ConsumeUsage).
    ///
    /// # Guarantees
    ///
    /// - Recording is idempotent by event id: the same event twice counts once.
    /// - A reservation is checked against every applicable hard limit and
    ///   written in one atomic store step, so concurrent callers never
    ///   overshoot.
    /// - **Periods of a commit.** A committed reservation counts in the periods
    ///   its hold was taken in, wherever the commit falls: a hold taken at
    ///   23:59:59 and committed at 00:00:01 counts in the day (and month) that
    ///   ended. So at no instant do committed plus held amounts in any period
    ///   exceed a hard limit, when every commit is at most its estimate and
    ///   lands before its hold expires. For billing, usage from a reservation
    ///   belongs to the period the operation started in; the event's
    ///   `occurred_at` still says when it was committed.
    /// - [`commit`](Tenancy::commit) records the *actual* amount. If it is above
    ///   the estimate, the whole actual amount is recorded and may take usage
    ///   past the limit: the work was done and is billed. Reserve generous
    ///   estimates where overshoot matters. The same holds for a commit after
    ///   the hold expired (its budget may have gone to others meanwhile);
    ///   [`CommitOutcome::released_hold`] is false then. A hold is recognised
    ///   for [`EXPIRED_HOLD_RETENTION`] after it expired; a commit at or
    ///   after `expires_at` + 7 days records nothing and is `NotFound`.
    /// - Usage recorded directly ([`record_usage`](super::Service::record_usage),
    ///   the recorder) counts in the periods its event time falls in.
    /// - A hold can be committed or released only for the organization and
    ///   user it was made for: the store checks, before recording anything.
    /// - **Rate limits** ([`limits::rate`](crate::limits::rate)) are decided
    ///   first, in one atomic store step that charges 1 request and the
    ///   estimate to every applicable rate limit, or nothing. A rate denial
    ///   is [`ReserveOutcome::Denied`] with a decision whose `metric`,
    ///   `limit`, `used` and `remaining` are the rate limit's, whose
    ///   `resets_at` is the instant the same request would be admitted
    ///   (`None`: never, it is more than the limit's burst), and whose
    ///   `decided_by` is `None`; the budget is not read and nothing is
    ///   held. When the rate limits admit the call and the budget refuses
    ///   it, the rate charge is given back (best effort: if that fails, it
    ///   drains on its own within the window). A call that fails after the
    ///   rate charge keeps it. A commit does not change the rate charge.
    ///   The SQL entry points (`tenancy_reserve_usage`, …) apply budget
    ///   limits only.
    /// - Alerts are checked after the write, on a background task, once per
    ///   threshold and period; a slow or failing
    ///   [`AlertSink`](crate::alerts::AlertSink) never slows or fails the write.
    /// - **Plans.** The limits checked are the organization's effective ones:
    ///   its plan version's, with its unexpired overrides on top (see
    ///   [`plans`](crate::model::plan)). They apply to the period's usage so
    ///   far, from the next call after a change: an upgrade admits at once
    ///   what the new limit admits; a downgrade below the period's usage
    ///   denies every further hard-limited reserve of that metric until the
    ///   period resets (usage is never reset by a plan change). A lapsed
    ///   override or an ended trial is never applied past its instant, even
    ///   from a warm cache.
    ///
    /// # Who may consume
    ///
    /// Reserving (and recording an activity through a context) needs a role
    /// that may [`ConsumeUsage`](Action::ConsumeUsage): viewers may not.
    /// Checking a limit and reading usage need
    /// [`ViewUsage`](Action::ViewUsage). A context made before its member was
    /// removed may still finish the request it serves (see
    /// [`TenantContext`](crate::TenantContext)).
    pub async fn reserve(
        &self,
        ctx: &TenantContext,
        metric: &str,
        estimate: Decimal,
    ) -> Result<ReserveOutcome> {
        ctx.require(Action::ConsumeUsage)?;
        let metric = MetricKey::parse(metric)?;
        let amount = validate_amount("estimate", estimate)?;
        let now = self.now();
        let tz = ctx.organization().timezone;
        let request = ReserveRequest {
            id: ReservationId::new_v7(),
            org: ctx.org(),
            user: ctx.user(),
            metric: metric.clone(),
            amount,
            periods: CurrentPeriods::at(now, tz),
            now,
            expires_at: later(now, self.inner.reservation_ttl)?,
            purge_before: retention_cutoff(now),
        };
        // Rate limits first: a rate denial touches no budget. A budget
        // denial gives the rate charge back.
        let rate = self
            .decide_rate(ctx, &metric, amount, RateAction::Acquire, now)
            .await?;
        if let Some(denial) = rate.as_ref().map(refusal).transpose()?.flatten() {
            #[cfg(feature = "metrics")]
            self.inner.store.limit_decisions().count(
                crate::metrics::DecisionBy::Reserve,
                &metric,
                false,
            );
            return Ok(ReserveOutcome::Denied(limit_decision_of(denial)));
        }
        let result = self.inner.store.reserve(&request).await?;
        if !result.granted && rate.is_some_and(|r| !r.limits.is_empty()) {
            self.refund_rate(ctx, &metric, amount).await;
        }
        let mut decision = decide(&metric, amount, &result.limits, tz, self.warning_percent());
        // The store's atomic answer is the truth; the decision explains it.
        decision.allowed = result.granted;
        #[cfg(feature = "metrics")]
        self.inner.store.limit_decisions().count(
            crate::metrics::DecisionBy::Reserve,
            &metric,
            result.granted,
        );
        if !result.granted {
            return Ok(ReserveOutcome::Denied(decision));
        }
        Ok(ReserveOutcome::Granted(Reservation::new(
            request.id,
            request.org,
            request.user,
            tz,
            request.periods,
            request.expires_at,
            decision,
        )))
    }

    /// Records `actual` of the reserved metric and drops the hold, in one
    /// atomic step, counted in the periods the hold was taken in (see the
    /// guarantees on [`reserve`](Self::reserve)). `actual` may exceed the estimate; it is
    /// recorded in full. Retrying a commit counts once.
    pub async fn commit(
        &self,
        reservation: &Reservation,
        actual: Decimal,
    ) -> Result<CommitOutcome> {
        let actual = validate_amount("actual", actual)?;
        let event = UsageEvent::new(reservation.org())
            .user(reservation.user())
            .quantity(reservation.metric().clone(), actual);
        self.commit_event(reservation, event).await
    }

    /// Like [`commit`](Self::commit), recording a full event (tokens, cost,
    /// model) instead of a bare amount. The event gets the reservation's id
    /// and user (one it names must be those), and its organization must be
    /// the reservation's; otherwise `InvalidInput` and nothing is recorded.
    pub async fn commit_event(
        &self,
        reservation: &Reservation,
        event: UsageEvent,
    ) -> Result<CommitOutcome> {
        let id = EventId::from(reservation.id());
        if event.org != reservation.org() {
            return Err(Error::invalid_input(
                "org_id",
                format_args!(
                    "the event's organization {} is not the reservation's {}",
                    event.org,
                    reservation.org()
                ),
            ));
        }
        if event.user.is_some_and(|u| u != reservation.user()) {
            return Err(Error::invalid_input(
                "user_id",
                "the event's user is not the reservation's",
            ));
        }
        if event.id.is_some_and(|e| e != id) {
            return Err(Error::invalid_input(
                "event_id",
                "a committed event has the reservation's id",
            ));
        }
        let now = self.now();
        // Exact on every backend, whether or not the store purged the hold yet.
        if reservation.expires_at() <= retention_cutoff(now) {
            return Err(Error::not_found(format!(
                "reservation {} expired at {}, {} days or more ago; nothing was recorded",
                reservation.id(),
                reservation.expires_at(),
                EXPIRED_HOLD_RETENTION.num_days()
            )));
        }
        event.check_time(now)?;
        let record = event
            .id(id)
            .user(reservation.user())
            .into_record_counted_in(now, |_| reservation.periods())?;
        let request = CommitRequest {
            org: reservation.org(),
            user: reservation.user(),
            id: reservation.id(),
            usage: record,
            now,
        };
        // Read before the commit: once it has landed, a failed read would
        // report an error for recorded usage, and the retry (which records
        // nothing) would skip the alert check.
        let limits = self.org_limits(reservation.org()).await?;
        let outcome = self.inner.store.commit_reservation(&request).await?;
        if outcome.recorded {
            let orgs = HashMap::from([(reservation.org(), (reservation.timezone(), limits))]);
            self.queue_alert_checks(std::slice::from_ref(&request.usage), &orgs);
        }
        Ok(outcome)
    }

    /// Drops the hold without recording anything; whether it was still
    /// live (neither expired, committed nor released).
    pub async fn release(&self, reservation: &Reservation) -> Result<bool> {
        let request = ReleaseRequest {
            org: reservation.org(),
            user: reservation.user(),
            id: reservation.id(),
            now: self.now(),
        };
        self.inner.store.release_reservation(&request).await
    }

    // ---- internals -------------------------------------------------------

    pub(super) fn warning_percent(&self) -> Decimal {
        self.inner.alerts.warning_percent()
    }

    /// The organization's limits, from the cache when fresh; none, without
    /// a read, when alerts are off (they are only read to pick alert
    /// checks).
    async fn org_limits(&self, org: OrgId) -> Result<Arc<OrgLimits>> {
        if !self.inner.alerts.enabled() {
            return Ok(Arc::default());
        }
        self.inner.store.cached_limits(org).await
    }

    /// Queues the threshold checks newly recorded usage may need: one per
    /// (org, periods) for org-wide limits, and one per user only for users
    /// with limits of their own, so a batch from a thousand users of an org
    /// with one org-wide limit costs one check.
    fn queue_alert_checks(
        &self,
        records: &[UsageRecord],
        orgs: &HashMap<OrgId, (Tz, Arc<OrgLimits>)>,
    ) {
        if !self.inner.alerts.enabled() {
            return;
        }
        let mut checks = HashMap::new();
        for record in records {
            let Some((tz, limits)) = orgs.get(&record.org()) else {
                continue;
            };
            let check = |user| AlertCheck {
                org: record.org(),
                user,
                periods: record.periods,
            };
            if limits.touched_by(record, None) {
                checks.insert(check(None), *tz);
            }
            if let Some(user) = record.user()
                && limits.touched_by(record, Some(user))
            {
                checks.insert(check(Some(user)), *tz);
            }
        }
        self.inner.alerts.enqueue(checks);
    }
}

/// The denial of a refused rate decision, `None` for an admitted one; a
/// refusal without a denial is the store's error, not an admission.
fn refusal(decision: &RateDecision) -> Result<Option<&RateDenial>> {
    match (decision.allowed, &decision.denial) {
        (true, _) => Ok(None),
        (false, Some(denial)) => Ok(Some(denial)),
        (false, None) => Err(Error::unexpected(
            "the store refused a rate decision without naming a hard rate limit that applies",
        )),
    }
}

/// Holds that expired at or before this instant are past
/// [`EXPIRED_HOLD_RETENTION`]: a reserve may purge them, a commit of one is
/// `NotFound`.
fn retention_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_signed(EXPIRED_HOLD_RETENTION)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `now + ttl`, or a `Config` error if the clock is so late that it
/// overflows.
fn later(now: DateTime<Utc>, ttl: TimeDelta) -> Result<DateTime<Utc>> {
    now.checked_add_signed(ttl).ok_or_else(|| {
        Error::config(format!(
            "the clock reads {now}: too late to add the reservation TTL"
        ))
    })
}
