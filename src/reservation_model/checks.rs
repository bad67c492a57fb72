//! The model's checks: of a decision, and of the store after every step.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::model::{applies, close, fine, local_key, pairs, previous};
use super::{Checked, Runner, Step, ensure, failed};
use crate::ids::UserId;
use crate::limits::{
    CurrentPeriods, Limit, LimitDecision, LimitMode, LimitScope, Period, PeriodKey,
};
use crate::store::{CounterScope, HistoryQuery, UsageQuery};

impl Runner {
    // ---- decisions -----------------------------------------------------

    /// Whether `decision`, for `amount` more for `user` at `now`, is the
    /// one the model makes: allowed exactly when the amount fits under
    /// every applicable limit, decided by the limit with the least
    /// headroom (among those that deny, when one does), with that limit's
    /// figures.
    pub(super) fn check_decision(
        &self,
        decision: &LimitDecision,
        user: UserId,
        amount: Decimal,
        now: DateTime<Utc>,
    ) -> Checked {
        let exact = self.model.exact && fine(amount);
        let tolerance = if exact {
            Decimal::ZERO
        } else {
            self.model.rounding(&self.limits, amount)
        };
        let close = |a: Decimal, b: Decimal| close(a, b, tolerance);
        ensure(decision.requested == amount, || {
            format!("decided about {}", decision.requested)
        })?;
        ensure(decision.metric == self.setup.metric, || {
            format!("decided about {}", decision.metric)
        })?;
        let tz = self.setup.zone;
        let applicable: Vec<(&Limit, Figures)> = self
            .limits
            .iter()
            .filter(|l| applies(l.scope, user))
            .map(|l| (l, self.figures(l, local_key(l.period, now, tz), now)))
            .collect();
        let excess = |(limit, figures): &(&Limit, Figures)| {
            figures.used + figures.held + amount - limit.value
        };
        let most = applicable.iter().map(excess).max();
        match most {
            None => ensure(decision.allowed, || "denied with no limit".into())?,
            Some(most) if exact => ensure(decision.allowed == (most <= Decimal::ZERO), || {
                format!(
                    "allowed {} where the model passes a limit by {most}",
                    decision.allowed
                )
            })?,
            Some(most) if decision.allowed => ensure(most <= tolerance, || {
                format!("allowed where the model passes a limit by {most}")
            })?,
            Some(most) => ensure(most > -tolerance, || {
                format!("denied with {} headroom left", -most)
            })?,
        }
        let Some(deciding) = decision.decided_by else {
            return ensure(applicable.is_empty() && decision.limit.is_none(), || {
                format!("no deciding limit: {decision:?}")
            });
        };
        let found = applicable.iter().find(|(l, _)| l.id == deciding.id);
        let Some(&(limit, figures)) = found else {
            return Err(format!(
                "decided by a limit that does not apply: {decision:?}"
            ));
        };
        ensure(
            (deciding.scope, deciding.period, deciding.mode)
                == (limit.scope, limit.period, LimitMode::Hard),
            || format!("decided by {deciding:?}, which is {limit:?}"),
        )?;
        let key = local_key(limit.period, now, tz);
        let headroom = limit.value - figures.used - figures.held;
        let what = format!(
            "the deciding {} {} limit in {key}",
            limit.scope, limit.period
        );
        ensure(decision.limit == Some(limit.value), || {
            format!("{what}: {:?}, not {}", decision.limit, limit.value)
        })?;
        ensure(close(decision.used, figures.used), || {
            format!("{what}: {} used, the model {}", decision.used, figures.used)
        })?;
        ensure(close(decision.reserved, figures.held), || {
            format!(
                "{what}: {} held, the model {}",
                decision.reserved, figures.held
            )
        })?;
        let remaining = decision.remaining;
        let remains = remaining.is_some_and(|r| close(r, headroom.max(Decimal::ZERO)));
        ensure(remains, || {
            format!("{what}: {remaining:?} remaining, the model {headroom}")
        })?;
        let resets_at = key.resets_at(tz);
        ensure(
            decision.resets_at == Some(resets_at) && resets_at > now,
            || {
                format!(
                    "{what}: resets at {:?}, not {resets_at}",
                    decision.resets_at
                )
            },
        )?;
        if exact {
            // The least headroom among the limits that deny, or among all.
            let least = applicable
                .iter()
                .filter(|c| decision.allowed || excess(c) > Decimal::ZERO)
                .map(|(l, f)| l.value - f.used - f.held)
                .min();
            ensure(least == Some(headroom), || {
                format!("{what} has {headroom} headroom, another {least:?}")
            })?;
        }
        Ok(())
    }

    // ---- the invariant after every step ----------------------------------

    /// The store against the model: for every limit, in the current and
    /// previous periods and those of the holds live since `before` and the
    /// one the step touched, usage, holds and the bound; the org-wide
    /// counters, and every user's when `each_user`.
    pub(super) async fn verify(
        &self,
        before: DateTime<Utc>,
        step: &Step,
        each_user: bool,
    ) -> Checked {
        let now = self.now();
        let tz = self.setup.zone;
        let current = [Period::Daily, Period::Monthly].map(|p| local_key(p, now, tz));
        let mut keys: BTreeSet<PeriodKey> = current.into_iter().collect();
        keys.extend(current.map(previous));
        for (index, hold) in self.model.holds.iter().enumerate() {
            let live = hold.state.holds() && hold.reservation.expires_at() > before;
            if live || step.touched == Some(index) {
                keys.extend([hold.periods.daily, hold.periods.monthly]);
            }
        }
        for periods in pairs(&keys) {
            for &reader in &self.readers {
                self.verify_snapshot(periods, reader, now).await?;
            }
        }
        for period in [Period::Daily, Period::Monthly] {
            self.verify_history(CounterScope::Organization, period)
                .await?;
            if each_user {
                self.verify_history(CounterScope::EachUser, period).await?;
            }
        }
        Ok(())
    }

    async fn verify_snapshot(
        &self,
        periods: CurrentPeriods,
        reader: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Checked {
        let query = UsageQuery::new(self.org, periods, now)
            .with_user(reader)
            .with_metric(Some(self.setup.metric.clone()));
        let snapshot = self.store.usage_snapshot(&query).await;
        let snapshot = snapshot.map_err(|e| failed("usage_snapshot", &e))?;
        let listed: BTreeSet<_> = snapshot.limits.iter().map(|u| u.limit.id).collect();
        let expected: BTreeSet<_> = self
            .limits
            .iter()
            .filter(|l| l.scope.user().is_none_or(|u| Some(u) == reader))
            .map(|l| l.id)
            .collect();
        ensure(
            listed == expected && listed.len() == snapshot.limits.len(),
            || format!("a snapshot for {reader:?} lists {:?}", snapshot.limits),
        )?;
        let tolerance = self.model.tolerance(&self.limits);
        let close = |a: Decimal, b: Decimal| close(a, b, tolerance);
        for usage in &snapshot.limits {
            let Some(limit) = self.limits.iter().find(|l| l.id == usage.limit.id) else {
                continue;
            };
            let key = periods.key(limit.period);
            let what = format!("{} {} limit in {key}", limit.scope, limit.period);
            ensure(usage.period == key, || {
                format!("{what}: read {}", usage.period)
            })?;
            ensure(usage.limit.value == limit.value, || {
                format!("{what}: the store says its value is {}", usage.limit.value)
            })?;
            let Figures { used, held } = self.figures(limit, key, now);
            ensure(close(usage.used, used), || {
                format!(
                    "{what}: the store has {} used, the model {used}",
                    usage.used
                )
            })?;
            ensure(close(usage.reserved, held), || {
                format!(
                    "{what}: the store has {} held, the model {held}",
                    usage.reserved
                )
            })?;
            let allowance = self.model.get(&self.model.allowance, limit.scope, key);
            let bound = limit.value + allowance + tolerance;
            ensure(usage.used.saturating_add(usage.reserved) <= bound, || {
                format!(
                    "{what}: {} used + {} held pass the limit {} plus the {allowance} that \
                     commits above their estimates or after their holds expired added",
                    usage.used, usage.reserved, limit.value
                )
            })?;
        }
        Ok(())
    }

    async fn verify_history(&self, scope: CounterScope, period: Period) -> Checked {
        // The years periods are computed in (any instant is read within
        // them): every counter there can be.
        let (first, last) = (
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX),
        );
        let query = HistoryQuery::new(self.org, scope, period, first, last)
            .with_metric(Some(self.setup.metric.clone()));
        let history = self.store.usage_history(&query).await;
        let history = history.map_err(|e| failed("usage_history", &e))?;
        let org_wide = scope == CounterScope::Organization;
        let users: BTreeSet<UserId> = self.users.iter().map(|c| c.user()).collect();
        let mut stored = BTreeMap::new();
        for counter in history {
            let ours = match counter.scope {
                LimitScope::Organization => org_wide,
                LimitScope::User(user) => !org_wide && users.contains(&user),
            };
            ensure(
                ours && counter.metric == self.setup.metric && counter.period.period == period,
                || format!("{scope:?} {period} history has {counter:?}"),
            )?;
            let again = stored.insert((counter.scope, counter.period), counter.used);
            ensure(again.is_none(), || {
                format!("{scope:?} {period} history has two counters like {counter:?}")
            })?;
        }
        let modelled: BTreeMap<_, _> = self
            .model
            .used
            .iter()
            .filter(|((s, k), _)| {
                k.period == period && (*s == LimitScope::Organization) == org_wide
            })
            .map(|(k, v)| (*k, *v))
            .collect();
        let tolerance = self.model.tolerance(&self.limits);
        let differ = stored.keys().chain(modelled.keys()).any(|key| {
            let a = stored.get(key).copied().unwrap_or_default();
            let b = modelled.get(key).copied().unwrap_or_default();
            !close(a, b, tolerance)
        });
        ensure(!differ, || {
            format!("{scope:?} {period} counters {stored:?}, the model {modelled:?}")
        })?;
        if org_wide {
            let total = stored
                .values()
                .fold(Decimal::ZERO, |sum, used| sum.saturating_add(*used));
            ensure(close(total, self.model.committed, tolerance), || {
                format!(
                    "{period} counters add up to {total}, the commits to {}",
                    self.model.committed
                )
            })?;
        }
        Ok(())
    }

    /// The model's figures for `limit` in `key`.
    fn figures(&self, limit: &Limit, key: PeriodKey, now: DateTime<Utc>) -> Figures {
        Figures {
            used: self.model.get(&self.model.used, limit.scope, key),
            held: self.model.held(limit.scope, key, now),
        }
    }
}

/// Used and held, by the model, for one limit in one period.
#[derive(Debug, Clone, Copy)]
struct Figures {
    used: Decimal,
    held: Decimal,
}
