//! Starting and finishing a run, and applying each operation as the model
//! predicts it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::model::{Hold, HoldState, Model, local_key, share, valid};
use super::world::World;
use super::{Actual, Checked, Coverage, Failure, Mark, Op, Outcome, Runner, Setup, Step};
use super::{ensure, failed};
use crate::clock::{Clock, FakeClock};
use crate::error::{Error, ErrorKind};
use crate::ids::UserId;
use crate::limits::{CurrentPeriods, Period, PeriodKey, ReserveOutcome};
use crate::model::TenantContext;
use crate::store::{CommitOutcome, DynStore};
use crate::tenancy::EXPIRED_HOLD_RETENTION;
#[cfg(doc)]
use crate::tenancy::Tenancy;

impl Runner {
    /// Sets the clock to the setup's start, builds a [`Tenancy`] on
    /// `store` and `clock`, creates the organization with its users and
    /// limits, and checks the empty store.
    pub async fn start(
        store: Arc<DynStore>,
        clock: FakeClock,
        setup: Setup,
    ) -> Result<Runner, Failure> {
        let setup_failure = |message: String| Failure {
            step: 0,
            message,
            setup: setup.to_string(),
            trace: Vec::new(),
            ops: Vec::new(),
        };
        clock.set(setup.start);
        let world = World::create(Arc::clone(&store), clock.clone(), &setup).await;
        let world = world.map_err(setup_failure)?;
        let mut model = Model::new();
        for limit in &world.limits {
            model.note(limit.value);
        }
        let mut readers: Vec<Option<UserId>> = world
            .limits
            .iter()
            .filter_map(|l| l.scope.user())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(Some)
            .collect();
        if readers.is_empty() {
            readers.push(None);
        }
        let runner = Runner {
            store,
            clock,
            tenancy: world.tenancy,
            ttl: world.ttl,
            org: world.org,
            users: world.users,
            limits: world.limits,
            readers,
            model,
            coverage: Coverage::default(),
            ops: Vec::new(),
            trace: Vec::new(),
            setup,
        };
        let checked = runner.verify(runner.now(), &Step::default(), true).await;
        checked.map_err(|message| runner.failure(message))?;
        Ok(runner)
    }

    /// Applies one operation, then checks the store against the model.
    pub async fn apply(&mut self, op: Op) -> Result<Outcome, Failure> {
        self.ops.push(op.clone());
        let before = self.now();
        let mut step = Step::default();
        let result = match &op {
            Op::Reserve { user, estimate } => self.reserve(*user, *estimate).await,
            Op::Commit { hold, actual } => self.commit(*hold, *actual, &mut step).await,
            Op::Release { hold } => self.release(*hold, &mut step).await,
            Op::Abandon { hold } => Ok(self.abandon(*hold)),
            Op::Advance { seconds } => {
                let by = TimeDelta::seconds(i64::from(*seconds));
                Ok(self.move_clock(before.checked_add_signed(by)))
            }
            Op::Jump { mark, offset } => Ok(self.jump(*mark, *offset)),
            Op::Check { user, amount } => self.check(*user, *amount).await,
        };
        let local = before.with_timezone(&self.setup.zone);
        let at = format!("{:4} {}", self.ops.len(), local.format("%F %T %Z"));
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(message) => {
                self.trace.push(format!("{at} {op:?} FAILED"));
                return Err(self.failure(message));
            }
        };
        self.trace.push(format!("{at} {op:?} → {outcome}"));
        self.coverage.steps += 1;
        if outcome == Outcome::Skipped {
            self.coverage.skipped += 1;
        }
        let checked = self.verify(before, &step, step.recorded).await;
        checked.map_err(|message| self.failure(message))?;
        Ok(outcome)
    }

    /// Checks everything once more, every user's counters included,
    /// waits for the tenancy's alert checks, and deletes the organization;
    /// the run's coverage.
    pub async fn finish(self) -> Result<Coverage, Failure> {
        let checked = self.verify(self.now(), &Step::default(), true).await;
        checked.map_err(|message| self.failure(message))?;
        self.tenancy.flush_alerts().await;
        match self.store.delete_organization(self.org).await {
            Ok(true) => Ok(self.coverage),
            Ok(false) => Err(self.failure("the organization was gone at the end".into())),
            Err(e) => Err(self.failure(failed("delete_organization", &e))),
        }
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The run's setup.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// What the run went through so far.
    pub fn coverage(&self) -> Coverage {
        self.coverage
    }

    /// The operations applied so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    fn failure(&self, message: String) -> Failure {
        Failure {
            step: self.ops.len(),
            message,
            setup: self.setup.to_string(),
            trace: self.trace.clone(),
            ops: self.ops.clone(),
        }
    }

    fn user(&self, index: usize) -> TenantContext {
        self.users[index % self.users.len()].clone()
    }

    /// The index of the hold `index` names, unless there is none.
    fn hold_index(&self, index: usize) -> Option<usize> {
        let count = self.model.holds.len();
        (count > 0).then(|| index % count)
    }

    // ---- operations ----------------------------------------------------

    async fn reserve(&mut self, user: usize, estimate: Decimal) -> Checked<Outcome> {
        let ctx = self.user(user);
        let now = self.now();
        let result = self
            .tenancy
            .reserve(&ctx, self.setup.metric.as_str(), estimate)
            .await;
        if !valid(estimate) {
            return self.refused(result, "reserve", estimate, "estimate");
        }
        self.model.note(estimate);
        let outcome = result.map_err(|e| failed(&format!("reserve({estimate})"), &e))?;
        let decision = outcome.decision().clone();
        let granted = matches!(outcome, ReserveOutcome::Granted(_));
        ensure(decision.allowed == granted, || {
            format!("reserve({estimate}) {outcome:?}: the decision says otherwise")
        })?;
        self.check_decision(&decision, ctx.user(), estimate, now)
            .map_err(|e| format!("reserve({estimate}): {e}"))?;
        let ReserveOutcome::Granted(reservation) = outcome else {
            self.coverage.denials += 1;
            return Ok(Outcome::Denied);
        };
        let periods = CurrentPeriods {
            daily: local_key(Period::Daily, now, self.setup.zone),
            monthly: local_key(Period::Monthly, now, self.setup.zone),
        };
        ensure(reservation.periods() == periods, || {
            format!(
                "a hold taken at {now} holds in {:?}, not {periods:?}",
                reservation.periods()
            )
        })?;
        ensure(reservation.amount() == estimate, || {
            format!("holds {} of {estimate}", reservation.amount())
        })?;
        ensure(reservation.user() == ctx.user(), || {
            "a hold for another user".into()
        })?;
        ensure(reservation.expires_at() == now + self.ttl, || {
            format!(
                "a hold taken at {now} expires at {}",
                reservation.expires_at()
            )
        })?;
        let expires_at = reservation.expires_at();
        self.model.holds.push(Hold {
            reservation,
            user: ctx.user(),
            estimate,
            periods,
            state: HoldState::Open,
        });
        self.coverage.grants += 1;
        Ok(Outcome::Granted {
            hold: self.model.holds.len() - 1,
            expires_at,
        })
    }

    async fn commit(&mut self, hold: usize, actual: Actual, step: &mut Step) -> Checked<Outcome> {
        let Some(index) = self.hold_index(hold) else {
            return Ok(Outcome::Skipped);
        };
        let held = &self.model.holds[index];
        if held.state == HoldState::Abandoned {
            return Ok(Outcome::Skipped);
        }
        step.touched = Some(index);
        let (state, estimate) = (held.state, held.estimate);
        let reservation = held.reservation.clone();
        let amount = match actual {
            Actual::Share(n) => share(estimate, n),
            Actual::Estimate => estimate,
            Actual::Above(extra) => estimate.saturating_add(extra),
            Actual::Amount(amount) => amount,
        };
        let now = self.now();
        let result = self.tenancy.commit(&reservation, amount).await;
        if !valid(amount) {
            return self.refused(result, "commit", amount, "actual");
        }
        self.model.note(amount);
        let expires_at = reservation.expires_at();
        let live = expires_at > now;
        let what = format!("commit({amount}) of #{index} ({state:?}, expires {expires_at})");
        // Past the retention a commit records nothing and is NotFound,
        // whether or not the store purged the hold yet.
        let cutoff = now.checked_sub_signed(EXPIRED_HOLD_RETENTION);
        if expires_at <= cutoff.unwrap_or(DateTime::<Utc>::MIN_UTC) {
            expect_not_found(&result, &what)?;
            if state == HoldState::Open {
                self.model.holds[index].state = HoldState::Released;
            }
            self.coverage.purged_commits += 1;
            return Ok(Outcome::Refused(ErrorKind::NotFound));
        }
        match state {
            HoldState::Open => {
                let expected = CommitOutcome {
                    released_hold: live,
                    recorded: true,
                };
                expect_ok(&result, &expected, &what)?;
                // A live hold stops counting as its actual amount starts:
                // only the excess over the estimate is new. An expired hold
                // counted nothing any more: all of it is new.
                let overshoot = if live {
                    (amount - estimate).max(Decimal::ZERO)
                } else {
                    amount
                };
                let hold = &mut self.model.holds[index];
                hold.state = HoldState::Committed;
                let (user, periods) = (hold.user, hold.periods);
                self.model.record(user, periods, amount, overshoot);
                step.recorded = true;
                self.coverage.commits += 1;
                if !live {
                    self.coverage.late_commits += 1;
                } else if amount > estimate {
                    self.coverage.commits_above += 1;
                } else if local_key(Period::Daily, now, self.setup.zone) != periods.daily {
                    self.coverage.commits_across_midnight += 1;
                }
                Ok(Outcome::Committed(expected))
            }
            HoldState::Committed => {
                let repeated = CommitOutcome {
                    released_hold: false,
                    recorded: false,
                };
                expect_ok(&result, &repeated, &what)?;
                self.coverage.repeated_commits += 1;
                Ok(Outcome::Committed(repeated))
            }
            HoldState::Released | HoldState::Abandoned => {
                expect_not_found(&result, &what)?;
                self.coverage.commits_of_released += 1;
                Ok(Outcome::Refused(ErrorKind::NotFound))
            }
        }
    }

    async fn release(&mut self, hold: usize, step: &mut Step) -> Checked<Outcome> {
        let Some(index) = self.hold_index(hold) else {
            return Ok(Outcome::Skipped);
        };
        let held = &self.model.holds[index];
        if held.state == HoldState::Abandoned {
            return Ok(Outcome::Skipped);
        }
        step.touched = Some(index);
        let (state, expires_at) = (held.state, held.reservation.expires_at());
        let now = self.now();
        let result = self.tenancy.release(&held.reservation).await;
        let live = state == HoldState::Open && expires_at > now;
        let what = format!("release of #{index} ({state:?}, expires {expires_at})");
        expect_ok(&result, &live, &what)?;
        if state == HoldState::Open {
            self.model.holds[index].state = HoldState::Released;
        }
        if live {
            self.coverage.releases += 1;
        } else {
            self.coverage.stale_releases += 1;
        }
        Ok(Outcome::Released(live))
    }

    fn abandon(&mut self, hold: usize) -> Outcome {
        let Some(index) = self.hold_index(hold) else {
            return Outcome::Skipped;
        };
        let held = &mut self.model.holds[index];
        if held.state != HoldState::Open {
            return Outcome::Skipped;
        }
        held.state = HoldState::Abandoned;
        self.coverage.abandoned += 1;
        Outcome::Abandoned
    }

    fn jump(&mut self, mark: Mark, offset: i32) -> Outcome {
        let now = self.now();
        let tz = self.setup.zone;
        let base = match mark {
            Mark::NextMidnight => PeriodKey::containing(Period::Daily, now, tz).resets_at(tz),
            Mark::NextMonth => PeriodKey::containing(Period::Monthly, now, tz).resets_at(tz),
            Mark::Expiry(hold) => match self.hold_index(hold) {
                Some(index) => self.model.holds[index].reservation.expires_at(),
                None => now,
            },
        };
        self.move_clock(base.checked_add_signed(TimeDelta::seconds(i64::from(offset))))
    }

    /// Moves the clock to `target` if that is later than now (and exists).
    fn move_clock(&mut self, target: Option<DateTime<Utc>>) -> Outcome {
        let now = self.now();
        let Some(target) = target.filter(|t| *t > now) else {
            return Outcome::Skipped;
        };
        let tz = self.setup.zone;
        if local_key(Period::Daily, target, tz) != local_key(Period::Daily, now, tz) {
            self.coverage.midnights += 1;
        }
        if local_key(Period::Monthly, target, tz) != local_key(Period::Monthly, now, tz) {
            self.coverage.month_ends += 1;
        }
        self.clock.set(target);
        Outcome::Moved(target)
    }

    async fn check(&mut self, user: usize, amount: Decimal) -> Checked<Outcome> {
        let ctx = self.user(user);
        let now = self.now();
        let result = self
            .tenancy
            .check_limit(&ctx, self.setup.metric.as_str(), amount)
            .await;
        if !valid(amount) {
            return self.refused(result, "check_limit", amount, "amount");
        }
        let decision = result.map_err(|e| failed(&format!("check_limit({amount})"), &e))?;
        self.check_decision(&decision, ctx.user(), amount, now)
            .map_err(|e| format!("check_limit({amount}): {e}"))?;
        self.coverage.checks += 1;
        Ok(Outcome::Checked(decision.allowed))
    }

    /// An invalid amount must be `InvalidInput` naming `field`.
    fn refused<T: fmt::Debug>(
        &mut self,
        result: crate::error::Result<T>,
        call: &str,
        amount: Decimal,
        field: &str,
    ) -> Checked<Outcome> {
        let refusal = result.as_ref().err().map(|e| (e.kind(), e.field()));
        ensure(
            refusal == Some((ErrorKind::InvalidInput, Some(field))),
            || format!("{call}({amount}): {result:?}, expected InvalidInput naming {field}"),
        )?;
        self.coverage.invalid_amounts += 1;
        Ok(Outcome::Refused(ErrorKind::InvalidInput))
    }
}

fn expect_ok<T: PartialEq + fmt::Debug>(
    result: &crate::error::Result<T>,
    expected: &T,
    what: &str,
) -> Checked {
    ensure(result.as_ref().ok() == Some(expected), || {
        format!("{what}: {result:?}, expected Ok({expected:?})")
    })
}

fn expect_not_found<T: fmt::Debug>(result: &crate::error::Result<T>, what: &str) -> Checked {
    let kind = result.as_ref().err().map(Error::kind);
    ensure(kind == Some(ErrorKind::NotFound), || {
        format!("{what}: {result:?}, expected NotFound")
    })
}
