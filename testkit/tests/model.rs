//! A model test of the reservation invariant on `MemoryStore`.
//!
//! Many logical tasks, each a small state machine — reserve an estimate,
//! then commit at most it, release it, or let it expire; now and then commit
//! above the estimate or after the hold expired — are interleaved one step
//! at a time by a seeded scheduler, which also moves a `FakeClock` in small
//! steps and jumps to just before local midnights and month starts in a
//! non-UTC zone, so holds are taken before a boundary and committed after
//! it. The organization has three hard limits on tokens: org-wide daily and
//! monthly, and a daily one for one user.
//!
//! After every step, for every limit, in the current period and the
//! previous one: the store's usage is the model's (the sum of the commits
//! whose holds were taken in that period, wherever the commit fell), its
//! held amount is the model's (live holds taken in that period), and used +
//! held ≤ the limit, plus what commits above their estimates or after their
//! holds expired added to that period (zero when there were none: then it
//! is the plain guarantee). Every counter of the usage history, daily and
//! monthly, org-wide and per user, is the model's, and the org-wide counters
//! add up to the sum of all committed amounts: nothing lost, nothing
//! doubled. Every grant or denial is the one the model predicts.
//!
//! Deterministic for a seed; a failure names the seed and the last steps.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};
use rust_decimal::Decimal;
use tenancy::store::{CounterScope, HistoryQuery, UsageQuery};
use tenancy::{
    Clock, CommitOutcome, CurrentPeriods, DynStore, EXPIRED_HOLD_RETENTION, ErrorKind, FakeClock,
    Limit, LimitScope, MemoryStore, MetricKey, NewLimit, NewOrganization, OrgId, Period, PeriodKey,
    PlatformOperator, Reservation, ReservationId, ReserveOutcome, Role, Tenancy, TenantContext,
    UserId,
};

/// Zones the organization may be in: none is UTC, several shift for
/// daylight saving (Santiago skips midnight, Lord Howe shifts by half an
/// hour), and Chatham and Kolkata sit off the hour.
const ZONES: [&str; 6] = [
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Tokyo",
];

/// Two days before a month ends, in every zone.
const START: &str = "2026-01-29T12:00:00Z";

const RESERVATION_TTL: Duration = Duration::from_secs(30 * 60);

const USERS: usize = 4;

const STEPS: usize = 1_500;

/// The limits, in tokens.
const ORG_DAILY: i64 = 2_000;
const ORG_MONTHLY: i64 = 6_000;
const USER_DAILY: i64 = 500;

/// What a task will do with a hold it got.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Commit this much (at most the estimate).
    Commit(i64),
    /// Commit this much more than the estimate.
    CommitAbove(i64),
    Release,
    /// Drop it and let it expire.
    Abandon,
    /// Wait until it has expired, then commit the estimate.
    CommitLate,
}

#[derive(Debug)]
enum Task {
    Idle,
    Holding(Box<Reservation>, Plan),
}

/// A hold as the model sees it.
#[derive(Debug)]
struct Hold {
    user: UserId,
    amount: Decimal,
    daily: PeriodKey,
    monthly: PeriodKey,
    expires_at: DateTime<Utc>,
    /// No task will commit or release it: once expired, the model forgets it.
    abandoned: bool,
}

/// What a run went through, for the coverage assertions.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    grants: u32,
    denials: u32,
    commits: u32,
    late_commits: u32,
    /// Commits refused because the hold expired beyond the retention.
    purged_commits: u32,
    commits_above: u32,
    /// Commits of live holds on a later local day than the hold was taken.
    commits_across_midnight: u32,
    releases: u32,
    midnights: u32,
    month_ends: u32,
}

struct Seeded(TestRng);

impl Seeded {
    fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(
                &(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes(),
            );
        }
        Seeded(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

struct World {
    tenancy: Tenancy,
    store: std::sync::Arc<DynStore>,
    clock: FakeClock,
    tz: Tz,
    org: OrgId,
    users: Vec<TenantContext>,
    limits: Vec<Limit>,
    metric: MetricKey,
    ttl: TimeDelta,
}

struct Model {
    holds: HashMap<ReservationId, Hold>,
    /// Committed tokens by scope and period.
    used: BTreeMap<(LimitScope, PeriodKey), Decimal>,
    /// By how much commits above their estimates or after their holds
    /// expired may have taken a period past its limits.
    allowance: BTreeMap<(LimitScope, PeriodKey), Decimal>,
    committed: Decimal,
}

struct Run {
    seed: u64,
    world: World,
    model: Model,
    tasks: Vec<Task>,
    rng: Seeded,
    coverage: Coverage,
    trace: Vec<String>,
}

type Checked<T = ()> = Result<T, String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Checked {
    if ok { Ok(()) } else { Err(what()) }
}

fn dec(n: i64) -> Decimal {
    Decimal::from(n)
}

fn local_key(period: Period, at: DateTime<Utc>, tz: Tz) -> PeriodKey {
    let date = at.with_timezone(&tz).date_naive();
    let start = match period {
        Period::Daily => date,
        Period::Monthly => date.with_day(1).unwrap_or(date),
    };
    PeriodKey { period, start }
}

fn previous(key: PeriodKey) -> PeriodKey {
    let before = key.start.pred_opt().unwrap_or(NaiveDate::MIN);
    let start = match key.period {
        Period::Daily => before,
        Period::Monthly => before.with_day(1).unwrap_or(before),
    };
    PeriodKey { start, ..key }
}

fn applies(scope: LimitScope, user: UserId) -> bool {
    scope.user().is_none_or(|u| u == user)
}

impl Model {
    fn get(
        map: &BTreeMap<(LimitScope, PeriodKey), Decimal>,
        scope: LimitScope,
        key: PeriodKey,
    ) -> Decimal {
        map.get(&(scope, key)).copied().unwrap_or_default()
    }

    fn held(&self, scope: LimitScope, key: PeriodKey, now: DateTime<Utc>) -> Decimal {
        self.holds
            .values()
            .filter(|h| h.expires_at > now && applies(scope, h.user))
            .filter(|h| h.daily == key || h.monthly == key)
            .map(|h| h.amount)
            .sum()
    }

    /// Records a commit of `actual` for `hold`, counted in its periods;
    /// `overshoot` is what it may add past the limits there.
    fn commit(&mut self, hold: &Hold, actual: Decimal, overshoot: Decimal) {
        for scope in [LimitScope::Organization, LimitScope::User(hold.user)] {
            for key in [hold.daily, hold.monthly] {
                *self.used.entry((scope, key)).or_default() += actual;
                *self.allowance.entry((scope, key)).or_default() += overshoot;
            }
        }
        self.committed += actual;
    }
}

impl Run {
    fn now(&self) -> DateTime<Utc> {
        self.world.clock.now()
    }

    fn note(&mut self, step: usize, what: String) {
        let now = self.now().with_timezone(&self.world.tz);
        self.trace.push(format!(
            "{step:4} {} {what}",
            now.format("%Y-%m-%d %H:%M:%S %Z")
        ));
    }

    fn failure(&self, step: usize, what: &str) -> String {
        let mut out = format!(
            "seed {} ({}), step {step}: {what}\nlast steps:\n",
            self.seed, self.world.tz
        );
        for line in &self.trace[self.trace.len().saturating_sub(30)..] {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    /// Whether `amount` more fits every limit that applies to `user` now,
    /// by the model.
    fn fits(&self, user: UserId, amount: Decimal) -> bool {
        let now = self.now();
        self.world
            .limits
            .iter()
            .filter(|l| applies(l.scope, user))
            .all(|l| {
                let key = local_key(l.period, now, self.world.tz);
                let used = Model::get(&self.model.used, l.scope, key);
                used + self.model.held(l.scope, key, now) + amount <= l.value
            })
    }

    async fn step_clock(&mut self, step: usize) {
        let now = self.now();
        let tz = self.world.tz;
        let roll = self.rng.below(100);
        let target = match roll {
            0..60 => now + TimeDelta::seconds(self.rng.between(1, 30)),
            60..80 => now + TimeDelta::seconds(self.rng.between(31, 300)),
            80..92 => {
                let midnight = PeriodKey::containing(Period::Daily, now, tz).resets_at(tz);
                midnight - TimeDelta::seconds(self.rng.between(0, 180))
            }
            92..96 => {
                let month = PeriodKey::containing(Period::Monthly, now, tz).resets_at(tz);
                month - TimeDelta::seconds(self.rng.between(0, 180))
            }
            _ => now + TimeDelta::seconds(self.rng.between(1_800, 6 * 3_600)),
        };
        let target = target.max(now + TimeDelta::seconds(1));
        let (day, month) = (
            local_key(Period::Daily, now, tz),
            local_key(Period::Monthly, now, tz),
        );
        self.world.clock.set(target);
        self.model
            .holds
            .retain(|_, h| !h.abandoned || h.expires_at > target);
        if local_key(Period::Daily, target, tz) != day {
            self.coverage.midnights += 1;
        }
        if local_key(Period::Monthly, target, tz) != month {
            self.coverage.month_ends += 1;
        }
        self.note(step, format!("clock +{}s", (target - now).num_seconds()));
    }

    async fn step_task(&mut self, step: usize, index: usize) -> Checked {
        let user_index = index % USERS;
        let ctx = self.world.users[user_index].clone();
        let now = self.now();
        let task = std::mem::replace(&mut self.tasks[index], Task::Idle);
        match task {
            Task::Idle if self.rng.percent(10) => {
                let amount = dec(self.rng.between(0, 400));
                let metric = self.world.metric.as_str();
                let decision = self.world.tenancy.check_limit(&ctx, metric, amount).await;
                let decision =
                    decision.map_err(|e| self.failure(step, &format!("check_limit: {e}")))?;
                let expected = self.fits(ctx.user(), amount);
                self.note(
                    step,
                    format!("task {index} checks {amount}: {}", decision.allowed),
                );
                ensure(decision.allowed == expected, || {
                    self.failure(
                        step,
                        &format!("check_limit({amount}) {decision:?}, the model says {expected}"),
                    )
                })?;
            }
            Task::Idle => {
                let estimate = dec(self.rng.between(1, 300));
                let fits = self.fits(ctx.user(), estimate);
                let outcome = self
                    .world
                    .tenancy
                    .reserve(&ctx, self.world.metric.as_str(), estimate)
                    .await;
                let outcome = outcome.map_err(|e| self.failure(step, &format!("reserve: {e}")))?;
                match outcome {
                    ReserveOutcome::Granted(hold) => {
                        self.coverage.grants += 1;
                        self.note(
                            step,
                            format!("task {index} (user {user_index}) holds {estimate}"),
                        );
                        ensure(fits, || {
                            self.failure(
                                step,
                                &format!("granted {estimate} the model has no room for"),
                            )
                        })?;
                        let tz = self.world.tz;
                        let (daily, monthly) = (
                            local_key(Period::Daily, now, tz),
                            local_key(Period::Monthly, now, tz),
                        );
                        ensure(hold.periods() == CurrentPeriods { daily, monthly }, || {
                            self.failure(
                                step,
                                &format!("a hold taken now holds in {:?}", hold.periods()),
                            )
                        })?;
                        ensure(hold.expires_at() == now + self.world.ttl, || {
                            self.failure(step, &format!("a hold expiring at {}", hold.expires_at()))
                        })?;
                        let model_hold = Hold {
                            user: ctx.user(),
                            amount: hold.amount(),
                            daily,
                            monthly,
                            expires_at: hold.expires_at(),
                            abandoned: false,
                        };
                        self.model.holds.insert(hold.id(), model_hold);
                        let plan = match self.rng.below(100) {
                            0..60 => {
                                Plan::Commit(self.rng.between(0, estimate.try_into().unwrap_or(0)))
                            }
                            60..75 => Plan::Release,
                            75..90 => Plan::Abandon,
                            90..95 => Plan::CommitAbove(self.rng.between(1, 100)),
                            _ => Plan::CommitLate,
                        };
                        self.tasks[index] = Task::Holding(Box::new(hold), plan);
                    }
                    ReserveOutcome::Denied(decision) => {
                        self.coverage.denials += 1;
                        self.note(
                            step,
                            format!("task {index} (user {user_index}) denied {estimate}"),
                        );
                        ensure(!fits && !decision.allowed, || {
                            self.failure(
                                step,
                                &format!("denied {estimate} the model has room for: {decision:?}"),
                            )
                        })?;
                    }
                }
            }
            Task::Holding(hold, Plan::Abandon) => {
                self.note(step, format!("task {index} abandons its {}", hold.amount()));
                if let Some(held) = self.model.holds.get_mut(&hold.id()) {
                    held.abandoned = true;
                }
            }
            Task::Holding(hold, Plan::CommitLate) if hold.expires_at() > now => {
                self.tasks[index] = Task::Holding(hold, Plan::CommitLate);
            }
            Task::Holding(hold, Plan::Release) => {
                let result = self.world.tenancy.release(&hold).await;
                let released = result.map_err(|e| self.failure(step, &format!("release: {e}")))?;
                let live = hold.expires_at() > now;
                self.note(
                    step,
                    format!("task {index} releases {}: {released}", hold.amount()),
                );
                ensure(released == live, || {
                    self.failure(step, &format!("release said {released}, live {live}"))
                })?;
                self.model.holds.remove(&hold.id());
                self.coverage.releases += 1;
            }
            Task::Holding(hold, plan) => {
                let actual = match plan {
                    Plan::Commit(actual) => dec(actual),
                    Plan::CommitAbove(extra) => hold.amount() + dec(extra),
                    _ => hold.amount(),
                };
                self.commit(step, index, &hold, actual).await?;
            }
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        step: usize,
        index: usize,
        hold: &Reservation,
        actual: Decimal,
    ) -> Checked {
        let now = self.now();
        let live = hold.expires_at() > now;
        let purgeable = hold.expires_at() <= now - EXPIRED_HOLD_RETENTION;
        let result = self.world.tenancy.commit(hold, actual).await;
        self.note(
            step,
            format!(
                "task {index} commits {actual} of {} (live {live}): {result:?}",
                hold.amount()
            ),
        );
        let model_hold = self.model.holds.remove(&hold.id());
        let model_hold =
            model_hold.ok_or_else(|| self.failure(step, "a task commits a hold the model lost"))?;
        // Past the retention the commit records nothing and is `NotFound`,
        // whether or not the store purged the hold yet.
        match result {
            Err(e) if purgeable && e.kind() == ErrorKind::NotFound => {
                self.coverage.purged_commits += 1;
                return Ok(());
            }
            Err(e) => return Err(self.failure(step, &format!("commit: {e}"))),
            Ok(outcome) if purgeable => {
                return Err(self.failure(
                    step,
                    &format!(
                        "commit {outcome:?} at or after expires_at + {} days, expected NotFound",
                        EXPIRED_HOLD_RETENTION.num_days()
                    ),
                ));
            }
            Ok(outcome) => {
                let expected = CommitOutcome {
                    released_hold: live,
                    recorded: true,
                };
                ensure(outcome == expected, || {
                    self.failure(step, &format!("commit {outcome:?}, expected {expected:?}"))
                })?;
            }
        }
        // A live hold stops counting and its actual amount starts: only
        // the excess over the estimate is new. An expired hold counted
        // nothing any more: all of it is new.
        let overshoot = if live {
            (actual - hold.amount()).max(Decimal::ZERO)
        } else {
            actual
        };
        self.model.commit(&model_hold, actual, overshoot);
        self.coverage.commits += 1;
        if !live {
            self.coverage.late_commits += 1;
        } else if actual > hold.amount() {
            self.coverage.commits_above += 1;
        } else if local_key(Period::Daily, now, self.world.tz) != model_hold.daily {
            self.coverage.commits_across_midnight += 1;
        }
        Ok(())
    }

    /// The invariants, after every step; the per-user history too when
    /// `users` (after a commit, the only step that writes counters, and at
    /// the end).
    async fn verify(&self, step: usize, users: bool) -> Checked {
        let now = self.now();
        let tz = self.world.tz;
        // One read per pair of periods serves all three limits: the user
        // with a limit of their own sees the org-wide ones too.
        let current = CurrentPeriods {
            daily: local_key(Period::Daily, now, tz),
            monthly: local_key(Period::Monthly, now, tz),
        };
        let before = CurrentPeriods {
            daily: previous(current.daily),
            monthly: previous(current.monthly),
        };
        for periods in [current, before] {
            let query = UsageQuery::new(self.world.org, periods, now)
                .with_user(Some(self.world.users[1].user()))
                .with_metric(Some(self.world.metric.clone()));
            let snapshot = self.world.store.usage_snapshot(&query).await;
            let snapshot =
                snapshot.map_err(|e| self.failure(step, &format!("usage_snapshot: {e}")))?;
            for limit in &self.world.limits {
                let key = periods.key(limit.period);
                let usage = snapshot.limits.iter().find(|u| u.limit.id == limit.id);
                let usage = usage
                    .ok_or_else(|| self.failure(step, &format!("{key}: the store lost a limit")))?;
                let what = format!("{} {} limit in {key}", limit.scope, limit.period);
                let used = Model::get(&self.model.used, limit.scope, key);
                let held = self.model.held(limit.scope, key, now);
                let allowance = Model::get(&self.model.allowance, limit.scope, key);
                ensure(usage.period == key, || {
                    self.failure(step, &format!("{what}: read {}", usage.period))
                })?;
                ensure(usage.used == used, || {
                    self.failure(
                        step,
                        &format!(
                            "{what}: the store has {} used, the model {used}",
                            usage.used
                        ),
                    )
                })?;
                ensure(usage.reserved == held, || {
                    self.failure(
                        step,
                        &format!(
                            "{what}: the store has {} held, the model {held}",
                            usage.reserved
                        ),
                    )
                })?;
                ensure(
                    usage.used + usage.reserved <= limit.value + allowance,
                    || {
                        self.failure(
                        step,
                        &format!(
                            "{what}: {used} used + {held} held passes {} (overshoot allowed: {allowance})",
                            limit.value
                        ),
                    )
                    },
                )?;
            }
        }
        for period in [Period::Daily, Period::Monthly] {
            let scopes: &[CounterScope] = if users {
                &[CounterScope::Organization, CounterScope::EachUser]
            } else {
                &[CounterScope::Organization]
            };
            for &scope in scopes {
                let query = HistoryQuery::new(
                    self.world.org,
                    scope,
                    period,
                    NaiveDate::MIN,
                    NaiveDate::MAX,
                )
                .with_metric(Some(self.world.metric.clone()));
                let history = self.world.store.usage_history(&query).await;
                let history =
                    history.map_err(|e| self.failure(step, &format!("usage_history: {e}")))?;
                let stored: BTreeMap<(LimitScope, PeriodKey), Decimal> = history
                    .into_iter()
                    .filter(|c| !c.used.is_zero())
                    .map(|c| ((c.scope, c.period), c.used))
                    .collect();
                let org_wide = scope == CounterScope::Organization;
                let modelled: BTreeMap<(LimitScope, PeriodKey), Decimal> = self
                    .model
                    .used
                    .iter()
                    .filter(|((_, k), v)| k.period == period && !v.is_zero())
                    .filter(|((s, _), _)| (*s == LimitScope::Organization) == org_wide)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                ensure(stored == modelled, || {
                    self.failure(
                        step,
                        &format!("{period} {scope:?} counters {stored:?}, the model {modelled:?}"),
                    )
                })?;
                if org_wide {
                    let total: Decimal = stored.values().sum();
                    ensure(total == self.model.committed, || {
                        self.failure(
                            step,
                            &format!(
                                "{period} counters add up to {total}, commits to {}",
                                self.model.committed
                            ),
                        )
                    })?;
                }
            }
        }
        Ok(())
    }
}

async fn world(seed: u64) -> World {
    let clock = FakeClock::at(START);
    let store: std::sync::Arc<DynStore> = std::sync::Arc::new(MemoryStore::new());
    let tenancy = Tenancy::builder()
        .shared_store(std::sync::Arc::clone(&store))
        .clock(clock.clone())
        .reservation_ttl(RESERVATION_TTL)
        .build()
        .expect("a valid tenancy");
    let zone = ZONES[(seed % ZONES.len() as u64) as usize];
    let owner = UserId::new_v7();
    let new = NewOrganization::new("Model", "model")
        .and_then(|o| o.timezone(zone))
        .expect("an organization");
    let org = tenancy
        .create_organization(owner, new)
        .await
        .expect("create the organization")
        .id;
    let mut users = vec![
        tenancy
            .context(owner, org)
            .await
            .expect("the owner's context"),
    ];
    let as_owner = users[0].clone();
    for _ in 1..USERS {
        let user = UserId::new_v7();
        tenancy
            .add_member(&as_owner, user, Role::Member)
            .await
            .expect("add a member");
        users.push(
            tenancy
                .context(user, org)
                .await
                .expect("a member's context"),
        );
    }
    let metric = MetricKey::TOKENS;
    let operator = PlatformOperator::new("model-test");
    let op = tenancy.operator(&operator);
    let new_limits = [
        NewLimit::new(metric.clone(), Period::Daily, dec(ORG_DAILY)),
        NewLimit::new(metric.clone(), Period::Monthly, dec(ORG_MONTHLY)),
        NewLimit::new(metric.clone(), Period::Daily, dec(USER_DAILY))
            .map(|l| l.for_user(users[1].user())),
    ];
    let mut limits = Vec::new();
    for new in new_limits {
        limits.push(
            op.set_limit(org, new.expect("a limit"))
                .await
                .expect("set a limit"),
        );
    }
    World {
        tenancy,
        store,
        clock,
        tz: zone.parse().expect("a time zone"),
        org,
        users,
        limits,
        metric,
        ttl: TimeDelta::from_std(RESERVATION_TTL).expect("a TTL"),
    }
}

/// Runs one seed with `tasks` tasks; the coverage, or what failed.
fn run(seed: u64, tasks: usize) -> Checked<Coverage> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut run = Run {
            seed,
            world: world(seed).await,
            model: Model {
                holds: HashMap::new(),
                used: BTreeMap::new(),
                allowance: BTreeMap::new(),
                committed: Decimal::ZERO,
            },
            tasks: (0..tasks).map(|_| Task::Idle).collect(),
            rng: Seeded::new(seed),
            coverage: Coverage::default(),
            trace: Vec::new(),
        };
        // Start at a random time of the first day.
        let offset = TimeDelta::seconds(run.rng.between(0, 86_399));
        run.world.clock.set(run.now() + offset);
        run.verify(0, true).await?;
        for step in 1..=STEPS {
            let commits = run.coverage.commits;
            if run.rng.percent(15) {
                run.step_clock(step).await;
            } else {
                let index = run.rng.below(tasks as u64) as usize;
                run.step_task(step, index).await?;
            }
            let wrote = run.coverage.commits != commits;
            run.verify(step, wrote || step == STEPS).await?;
        }
        Ok(run.coverage)
    })
}

/// Fixed seeds and task counts, each run to the end; together they must
/// have crossed every kind of boundary the invariant is about.
#[test]
fn reservations_keep_the_invariant_for_fixed_seeds() {
    let mut total = Coverage::default();
    for (seed, tasks) in [
        (1, 16),
        (2, 24),
        (3, 32),
        (4, 48),
        (5, 64),
        (6, 32),
        (42, 40),
        (0x5eed, 20),
    ] {
        let coverage = run(seed, tasks).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(
            coverage.month_ends >= 1,
            "seed {seed} crossed no month end: {coverage:?}"
        );
        assert!(
            coverage.midnights >= 5,
            "seed {seed} crossed few midnights: {coverage:?}"
        );
        assert!(
            coverage.grants >= 50 && coverage.commits >= 20,
            "seed {seed}: {coverage:?}"
        );
        total.denials += coverage.denials;
        total.late_commits += coverage.late_commits;
        total.purged_commits += coverage.purged_commits;
        total.commits_above += coverage.commits_above;
        total.commits_across_midnight += coverage.commits_across_midnight;
        total.releases += coverage.releases;
    }
    assert!(
        total.denials > 0,
        "no reservation was ever denied: {total:?}"
    );
    assert!(
        total.late_commits > 0,
        "no commit came after its hold expired: {total:?}"
    );
    assert!(
        total.purged_commits > 0,
        "no commit came after its hold's retention ended: {total:?}"
    );
    assert!(
        total.commits_above > 0,
        "no commit exceeded its estimate: {total:?}"
    );
    assert!(
        total.commits_across_midnight > 0,
        "no live hold was committed after midnight: {total:?}"
    );
    assert!(total.releases > 0, "nothing was released: {total:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn reservations_keep_the_invariant_for_any_seed(seed in any::<u64>(), tasks in 16usize..=64) {
        if let Err(failure) = run(seed, tasks) {
            prop_assert!(false, "{}", failure);
        }
    }
}
