//! Recording usage and enforcing limits: the [`Tenancy`] methods that join
//! the pure logic in [`limits`](crate::limits) to the store's atomic
//! primitives.
//!
//! # Guarantees
//!
//! - Recording is idempotent by event id: the same event twice counts once.
//! - A reservation is checked against every applicable hard limit and
//!   written in one atomic store step, so concurrent callers never
//!   overshoot.
//! - [`commit`](Tenancy::commit) records the *actual* amount. If it is above
//!   the estimate, the whole actual amount is recorded and may take usage
//!   past the limit: the work was done and is billed. Reserve generous
//!   estimates where overshoot matters.
//! - Alerts fire after the write, once per threshold and period, and a
//!   failing [`AlertSink`](crate::AlertSink) never fails the write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::context::{Action, PlatformOperator, TenantContext};
use crate::error::{Error, Result};
use crate::ids::{LimitId, MetricKey, OrgId, ReservationId, UserId};
use crate::limits::{
    AlertKey, CurrentPeriods, Limit, LimitAlert, LimitDecision, NewLimit, Reservation,
    ReserveOutcome, UsageLine, decide, level_of, validate_amount,
};
use crate::store::{CommitOutcome, RecordOutcome, ReserveRequest, UsageQuery};
use crate::tenancy::Tenancy;
use crate::usage::{UsageEvent, UsageRecord};

/// Organizations' metering, as loaded for one write.
type OrgMeterings = std::collections::HashMap<OrgId, Arc<OrgMetering>>;

/// A batch validated and resolved by [`Tenancy::prepare_usage`], ready for
/// [`Tenancy::write_usage`].
#[derive(Debug)]
pub(crate) struct PreparedUsage {
    records: Vec<UsageRecord>,
    meterings: OrgMeterings,
}

/// What metering needs to know about an organization, cached like features.
#[derive(Debug)]
pub(crate) struct OrgMetering {
    timezone: Tz,
    limits: Vec<Limit>,
}

impl OrgMetering {
    /// Whether `record` counts towards an org-wide limit (`None`) or one of
    /// its user's own (`Some(user)`).
    fn touches_limit(&self, record: &UsageRecord, user: Option<UserId>) -> bool {
        self.limits
            .iter()
            .any(|l| l.scope.user() == user && record.amounts.iter().any(|(m, _)| m == &l.metric))
    }
}

impl Tenancy {
    // ---- limits: operator administration --------------------------------

    /// Sets a limit for `org`, replacing any with the same scope, metric and
    /// period. Platform operators only: no org role may raise its own
    /// limits.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewLimit, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// # let alice = UserId::new_v7();
    /// # let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let operator = PlatformOperator::new("billing");
    /// let limit = NewLimit::from_limit_type("monthly_tokens", 1_000_000.into())?;
    /// tenancy.set_limit(&operator, org.id, limit).await?;
    ///
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// let decision = tenancy.check_limit(&ctx, "tokens", 2_000_000.into()).await?;
    /// assert!(!decision.allowed);
    /// # Ok(()) }
    /// ```
    pub async fn set_limit(
        &self,
        op: &PlatformOperator,
        org: OrgId,
        limit: NewLimit,
    ) -> Result<Limit> {
        let limit = Limit {
            id: LimitId::new_v7(),
            org,
            scope: limit.scope,
            metric: limit.metric,
            period: limit.period,
            value: limit.value,
            mode: limit.mode,
            created_at: self.now(),
        };
        let result = self.inner.store.put_limit(&limit).await;
        self.inner.metering.invalidate(&org);
        let stored = result?;
        tracing::info!(operator = op.name(), %org, metric = %stored.metric, period = %stored.period,
            value = %stored.value, scope = %stored.scope, "limit set");
        Ok(stored)
    }

    /// Removes a limit from `org`; whether it existed. Platform operators
    /// only.
    pub async fn remove_limit(
        &self,
        op: &PlatformOperator,
        org: OrgId,
        id: LimitId,
    ) -> Result<bool> {
        let result = self.inner.store.delete_limit(org, id).await;
        self.inner.metering.invalidate(&org);
        tracing::info!(operator = op.name(), %org, limit = %id, "limit removed");
        result
    }

    /// Every limit of `org`, for operator tools.
    pub async fn limits_of(&self, _op: &PlatformOperator, org: OrgId) -> Result<Vec<Limit>> {
        self.inner.store.limits(org).await
    }

    /// The limits of the active organization that apply to the user:
    /// org-wide ones and their own.
    pub async fn limits(&self, ctx: &TenantContext) -> Result<Vec<Limit>> {
        ctx.require(Action::ViewUsage)?;
        let limits = self.inner.store.limits(ctx.org()).await?;
        Ok(limits
            .into_iter()
            .filter(|l| l.scope.user().is_none_or(|u| u == ctx.user()))
            .collect())
    }

    // ---- recording -----------------------------------------------------

    /// Records one usage event: validates it, fills in its id and time,
    /// and adds its amounts to every applicable counter atomically. The
    /// same event id twice counts once.
    pub async fn record_usage(&self, event: UsageEvent) -> Result<RecordOutcome> {
        self.record_usage_batch(vec![event]).await
    }

    /// Records a batch of usage events in one store call, all or nothing.
    /// Every event is validated before anything is written.
    pub async fn record_usage_batch(&self, events: Vec<UsageEvent>) -> Result<RecordOutcome> {
        let prepared = self.prepare_usage(events).await?;
        self.write_usage(&prepared).await
    }

    /// The first half of [`record_usage_batch`](Self::record_usage_batch):
    /// validates the events and resolves them into store records in their
    /// organizations' time zones. The recorder prepares a batch once and
    /// retries only [`write_usage`](Self::write_usage).
    pub(crate) async fn prepare_usage(
        &self,
        events: impl IntoIterator<Item = UsageEvent>,
    ) -> Result<PreparedUsage> {
        let now = self.now();
        let events = events.into_iter();
        let mut records = Vec::with_capacity(events.size_hint().0);
        // One lookup per organization, not per event: with the cache off
        // each lookup is two store reads.
        let mut meterings = OrgMeterings::new();
        for event in events {
            let metering = match meterings.get(&event.org) {
                Some(m) => Arc::clone(m),
                None => {
                    let m = self.metering(event.org).await?;
                    meterings.insert(event.org, Arc::clone(&m));
                    m
                }
            };
            records.push(event.into_record(now, metering.timezone)?);
        }
        Ok(PreparedUsage { records, meterings })
    }

    /// The second half of [`record_usage_batch`](Self::record_usage_batch):
    /// one store call, then the alert check. Safe to repeat: the store
    /// counts each event id once.
    pub(crate) async fn write_usage(&self, prepared: &PreparedUsage) -> Result<RecordOutcome> {
        let outcome = self.inner.store.record_usage(&prepared.records).await?;
        if outcome.inserted > 0 {
            self.raise_alerts(&prepared.records, &prepared.meterings, self.now())
                .await;
        }
        Ok(outcome)
    }

    // ---- checking and reserving ----------------------------------------

    /// Whether `amount` more of `metric` fits under every limit that applies
    /// to the user now. Nothing is held; use [`reserve`](Self::reserve)
    /// before expensive work.
    pub async fn check_limit(
        &self,
        ctx: &TenantContext,
        metric: &str,
        amount: Decimal,
    ) -> Result<LimitDecision> {
        let metric = MetricKey::parse(metric)?;
        let amount = validate_amount("amount", amount)?;
        let now = self.now();
        let tz = ctx.organization().timezone;
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
        Ok(decide(
            &metric,
            amount,
            &snapshot.limits,
            tz,
            self.warning_percent(),
        ))
    }

    /// Atomically checks every applicable limit and, if `estimate` fits
    /// under all hard ones, holds it until [`commit`](Self::commit),
    /// [`release`](Self::release) or expiry (the builder's
    /// `reservation_ttl`). A denial is [`ReserveOutcome::Denied`]. Needs a
    /// role that may [`ConsumeUsage`](Action::ConsumeUsage).
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
            expires_at: now + to_delta(self.inner.reservation_ttl),
        };
        let result = self.inner.store.reserve(&request).await?;
        let mut decision = decide(&metric, amount, &result.limits, tz, self.warning_percent());
        // The store's atomic answer is the truth; the decision explains it.
        decision.allowed = result.granted;
        if !result.granted {
            return Ok(ReserveOutcome::Denied(decision));
        }
        Ok(ReserveOutcome::Granted(Reservation {
            id: request.id,
            org: request.org,
            user: request.user,
            metric,
            amount,
            periods: request.periods,
            expires_at: request.expires_at,
            decision,
        }))
    }

    /// Records `actual` of the reserved metric and drops the hold, in one
    /// atomic step. `actual` may exceed the estimate; it is recorded in
    /// full (see the [module docs](crate::metering)). Retrying a commit
    /// counts once.
    pub async fn commit(
        &self,
        reservation: &Reservation,
        actual: Decimal,
    ) -> Result<CommitOutcome> {
        let actual = validate_amount("actual", actual)?;
        let event = UsageEvent::new(reservation.org)
            .user(reservation.user)
            .quantity(reservation.metric.clone(), actual);
        self.commit_event(reservation, event).await
    }

    /// Like [`commit`](Self::commit), recording a full event (tokens, cost,
    /// model) instead of a bare amount. The event gets the reservation's id;
    /// its org must be the reservation's.
    pub async fn commit_event(
        &self,
        reservation: &Reservation,
        event: UsageEvent,
    ) -> Result<CommitOutcome> {
        if event.org != reservation.org {
            return Err(Error::invalid_input(
                "org_id",
                format!(
                    "the event's organization {} is not the reservation's {}",
                    event.org, reservation.org
                ),
            ));
        }
        let now = self.now();
        let metering = self.metering(reservation.org).await?;
        let record = event
            .id(reservation.id.into())
            .into_record(now, metering.timezone)?;
        let outcome = self
            .inner
            .store
            .commit_reservation(reservation.org, reservation.id, &record)
            .await?;
        if outcome.recorded {
            let meterings = OrgMeterings::from([(reservation.org, metering)]);
            self.raise_alerts(std::slice::from_ref(&record), &meterings, now)
                .await;
        }
        Ok(outcome)
    }

    /// Drops the hold without recording anything; whether it was still
    /// there.
    pub async fn release(&self, reservation: &Reservation) -> Result<bool> {
        self.inner
            .store
            .release_reservation(reservation.org, reservation.id)
            .await
    }

    // ---- summary -------------------------------------------------------

    /// Usage against limits for the user's page: one line per metric,
    /// period and scope (org-wide and the user's own) that has a limit or
    /// usage in the current period.
    pub async fn usage_summary(&self, ctx: &TenantContext) -> Result<Vec<UsageLine>> {
        ctx.require(Action::ViewUsage)?;
        let tz = ctx.organization().timezone;
        self.summary_lines(ctx.org(), Some(ctx.user()), tz).await
    }

    /// The organization-wide lines of [`usage_summary`](Self::usage_summary)
    /// for any organization, for platform operators (admin tools, support).
    pub async fn usage_summary_of(
        &self,
        _op: &PlatformOperator,
        org: OrgId,
    ) -> Result<Vec<UsageLine>> {
        let tz = self.metering(org).await?.timezone;
        self.summary_lines(org, None, tz).await
    }

    async fn summary_lines(
        &self,
        org: OrgId,
        user: Option<UserId>,
        tz: Tz,
    ) -> Result<Vec<UsageLine>> {
        let now = self.now();
        let snapshot = self
            .inner
            .store
            .usage_snapshot(&UsageQuery {
                org,
                user,
                metric: None,
                periods: CurrentPeriods::at(now, tz),
                now,
            })
            .await?;
        let warn = self.warning_percent();
        let mut lines: Vec<UsageLine> = snapshot
            .limits
            .iter()
            .map(|u| {
                let value = u.limit.value;
                let consumed = u.used + u.reserved;
                UsageLine {
                    metric: u.limit.metric.clone(),
                    period: u.limit.period,
                    scope: u.limit.scope,
                    used: u.used,
                    reserved: u.reserved,
                    limit: Some(value),
                    mode: Some(u.limit.mode),
                    remaining: Some(u.headroom().max(Decimal::ZERO)),
                    percent: (!value.is_zero())
                        .then(|| (consumed * Decimal::ONE_HUNDRED / value).round_dp(2)),
                    level: level_of(consumed, value, warn),
                    resets_at: u.period.resets_at(tz),
                }
            })
            .collect();
        for counter in snapshot.counters {
            let limited = lines.iter().any(|l| {
                l.metric == counter.metric
                    && l.period == counter.period.period
                    && l.scope == counter.scope
            });
            if !limited {
                lines.push(UsageLine {
                    metric: counter.metric,
                    period: counter.period.period,
                    scope: counter.scope,
                    used: counter.used,
                    reserved: counter.reserved,
                    limit: None,
                    mode: None,
                    remaining: None,
                    percent: None,
                    level: crate::LimitLevel::Ok,
                    resets_at: counter.period.resets_at(tz),
                });
            }
        }
        lines.sort_by(|a, b| (&a.metric, a.period, a.scope).cmp(&(&b.metric, b.period, b.scope)));
        Ok(lines)
    }

    // ---- internals -----------------------------------------------------

    fn warning_percent(&self) -> Decimal {
        self.inner.alert_thresholds.warning_percent()
    }

    /// The organization's time zone and limits, from the cache when fresh.
    /// `NotFound` if the organization does not exist.
    pub(crate) async fn metering(&self, org: OrgId) -> Result<Arc<OrgMetering>> {
        let load = async {
            let organization = self
                .inner
                .store
                .organization(org)
                .await?
                .ok_or_else(|| crate::store::org_not_found(org))?;
            let limits = self.inner.store.limits(org).await?;
            Ok(Arc::new(OrgMetering {
                timezone: organization.timezone,
                limits,
            }))
        };
        self.inner
            .metering
            .get_or_load(org, self.cache_now(), load)
            .await
    }

    /// Fires the alerts that newly recorded usage may have crossed. Never
    /// fails: the usage is already stored, so problems are logged.
    /// `meterings` holds every organization of `records`, as loaded for
    /// the write.
    async fn raise_alerts(
        &self,
        records: &[UsageRecord],
        meterings: &OrgMeterings,
        now: DateTime<Utc>,
    ) {
        if self.inner.alert_thresholds.percents().is_empty() {
            return;
        }
        // One snapshot per (org, periods) for the org-wide limits, and one
        // per user only for users with limits of their own: a batch from a
        // thousand users of an org with one org-wide limit reads it once.
        let mut groups: BTreeSet<(OrgId, Option<UserId>, CurrentPeriods)> = BTreeSet::new();
        for record in records {
            let Some(metering) = meterings.get(&record.org()) else {
                continue;
            };
            if metering.touches_limit(record, None) {
                groups.insert((record.org(), None, record.periods));
            }
            if let Some(user) = record.user()
                && metering.touches_limit(record, Some(user))
            {
                groups.insert((record.org(), Some(user), record.periods));
            }
        }
        for (org, user, periods) in groups {
            let tz = meterings[&org].timezone;
            if let Err(e) = self.raise_alerts_for(org, user, periods, tz, now).await {
                tracing::error!(%org, error = %e, "alert check failed; usage was recorded");
            }
        }
    }

    /// Fires the alerts of `org`'s org-wide limits (`user` `None`) or of
    /// `user`'s own limits.
    async fn raise_alerts_for(
        &self,
        org: OrgId,
        user: Option<UserId>,
        periods: CurrentPeriods,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let query = UsageQuery {
            org,
            user,
            metric: None,
            periods,
            now,
        };
        let snapshot = self.inner.store.usage_snapshot(&query).await?;
        // A user's snapshot includes the org-wide limits, which their own
        // group checks.
        let own = snapshot
            .limits
            .iter()
            .filter(|u| u.limit.scope.user() == user);
        for usage in own {
            let crossed: Vec<u32> = self
                .inner
                .alert_thresholds
                .crossed(usage.used, usage.limit.value)
                .collect();
            for threshold_percent in crossed {
                let key = AlertKey {
                    org,
                    scope: usage.limit.scope,
                    metric: usage.limit.metric.clone(),
                    period: usage.period,
                    threshold_percent,
                };
                if !self.inner.store.claim_alert(&key, now).await? {
                    continue;
                }
                let alert = LimitAlert {
                    key,
                    limit_id: usage.limit.id,
                    limit: usage.limit.value,
                    mode: usage.limit.mode,
                    used: usage.used,
                    resets_at: usage.period.resets_at(tz),
                    fired_at: now,
                };
                self.deliver(&alert).await;
            }
        }
        Ok(())
    }

    /// Delivers one alert, retrying with backoff; logs if every try fails.
    async fn deliver(&self, alert: &LimitAlert) {
        let attempts = self.inner.alert_delivery_attempts;
        for attempt in 1..=attempts {
            match self.inner.alert_sink.deliver(alert).await {
                Ok(()) => return,
                Err(e) if attempt == attempts => {
                    tracing::error!(org = %alert.key.org, metric = %alert.key.metric,
                        threshold_percent = alert.key.threshold_percent, error = %e,
                        "alert delivery failed; giving up");
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "alert delivery failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
                }
            }
        }
    }
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
