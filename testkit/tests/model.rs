//! The reservation invariant under many interleaved tasks, on `MemoryStore`
//! and on PostgreSQL (`PgStore`): seeded runs of the crate's one
//! reservation model (`tenancy::reservation_model`).
//!
//! Many logical tasks, each a small state machine — reserve an estimate,
//! then commit at most it, release it, or let it expire; now and then
//! commit above the estimate or after the hold expired, or repeat a commit
//! or a release — are interleaved one step at a time by a seeded
//! scheduler, which also moves the `FakeClock` in small steps and jumps to
//! just before local midnights and month starts in a non-UTC zone, so holds
//! are taken before a boundary and committed after it. Estimates are whole
//! tokens or have up to three decimal places. The organization has three
//! hard limits on tokens: org-wide daily and monthly, and a daily one for
//! user 1.
//!
//! The scheduler only chooses operations; the model's runner applies them
//! and, after every step, checks the store against the model (usage, holds
//! and the bound per period, every counter of the history, every outcome:
//! see the module's docs). Deterministic for a seed; a failure names the
//! seed, the setup and the last steps.
//!
//! The PostgreSQL run uses the shared private cluster: without PostgreSQL
//! it prints a SKIPPED line and passes, unless `TENANCY_REQUIRE_LIVE` is
//! set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};
use rust_decimal::Decimal;
use tenancy::clock::FakeClock;
use tenancy::limits::MAX_AMOUNT;
use tenancy::limits::PeriodKey;
use tenancy::postgres::PgStore;
use tenancy::reservation_model::{
    self, Actual, Coverage, LimitSpec, Mark, Op, Outcome, Runner, Setup,
};
use tenancy::store::DynStore;
use tenancy::{MemoryStore, Period};
use tenancy_testkit::pg::{self, Cluster};

/// Zones the organization may be in: none is UTC, several shift for
/// daylight saving (Santiago skips midnight, Lord Howe shifts by half an
/// hour), and Chatham and Kolkata sit off the hour.
const ZONES: [Tz; 6] = [
    chrono_tz::America::New_York,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::America::Santiago,
    chrono_tz::Pacific::Chatham,
    chrono_tz::Asia::Tokyo,
];

/// Two days before a month ends, in every zone.
const START: &str = "2026-01-29T12:00:00Z";

const RESERVATION_TTL: Duration = Duration::from_secs(30 * 60);

const USERS: usize = 4;

/// Steps of a run on `MemoryStore`.
const STEPS: usize = 1_500;

/// Steps of a run on PostgreSQL, where every step is a few round trips
/// (about 5 ms).
const LIVE_STEPS: usize = 1_000;

/// The limits, in tokens.
const ORG_DAILY: i64 = 2_000;
const ORG_MONTHLY: i64 = 6_000;
const USER_DAILY: i64 = 500;

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

    /// Whole tokens in `lo..=hi`, or (one time in five) with three decimal
    /// places.
    fn tokens(&mut self, lo: i64, hi: i64) -> Decimal {
        if self.percent(20) {
            Decimal::new(self.between(lo * 1_000, hi * 1_000), 3)
        } else {
            Decimal::from(self.between(lo, hi))
        }
    }
}

/// What a task will do with a hold it got.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Commit at most the estimate.
    Commit(Actual),
    /// Commit this much more than the estimate.
    CommitAbove(Decimal),
    Release,
    /// Drop it and let it expire.
    Abandon,
    /// Wait until it has expired, then commit the estimate.
    CommitLate,
}

#[derive(Debug)]
enum Task {
    Idle,
    Holding {
        hold: usize,
        expires_at: DateTime<Utc>,
        plan: Plan,
    },
    /// Done with a hold, the task calls again as a retry would: a second
    /// commit (counted once, or `NotFound` after a release) or release.
    Retrying {
        hold: usize,
        commit: bool,
    },
}

/// The seeded scheduler: which task steps next and what it does.
struct Scheduler {
    rng: Seeded,
    tasks: Vec<Task>,
}

impl Scheduler {
    /// The next operation and the task it is for (`None` for the clock),
    /// or nothing this step (a task waiting for its hold to expire).
    fn next(&mut self, runner: &Runner) -> Option<(Op, Option<usize>)> {
        if self.rng.percent(15) {
            return Some((self.clock_op(runner), None));
        }
        let index = self.rng.below(self.tasks.len() as u64) as usize;
        let user = index % USERS;
        let op = match &self.tasks[index] {
            Task::Idle if self.rng.percent(10) => Op::Check {
                user,
                amount: self.rng.tokens(0, 400),
            },
            Task::Idle => Op::Reserve {
                user,
                estimate: self.rng.tokens(1, 300),
            },
            &Task::Holding {
                expires_at,
                plan: Plan::CommitLate,
                ..
            } if expires_at > runner.now() => return None,
            &Task::Holding { hold, plan, .. } => match plan {
                Plan::Commit(actual) => Op::Commit { hold, actual },
                Plan::CommitAbove(extra) => Op::Commit {
                    hold,
                    actual: Actual::Above(extra),
                },
                Plan::CommitLate => Op::Commit {
                    hold,
                    actual: Actual::Estimate,
                },
                Plan::Release => Op::Release { hold },
                Plan::Abandon => Op::Abandon { hold },
            },
            &Task::Retrying { hold, commit: true } => Op::Commit {
                hold,
                actual: Actual::Estimate,
            },
            &Task::Retrying { hold, .. } => Op::Release { hold },
        };
        Some((op, Some(index)))
    }

    /// Moves the clock: mostly seconds or minutes, sometimes to just
    /// before the next local midnight or month start, sometimes hours.
    fn clock_op(&mut self, runner: &Runner) -> Op {
        let now = runner.now();
        let tz = runner.setup().zone;
        let before = |rng: &mut Seeded, mark: Mark, period: Period| {
            let offset = rng.between(0, 180);
            let at = PeriodKey::containing(period, now, tz).resets_at(tz);
            if at - TimeDelta::seconds(offset) > now {
                Op::Jump {
                    mark,
                    offset: -(offset as i32),
                }
            } else {
                Op::Advance { seconds: 1 }
            }
        };
        let seconds = |rng: &mut Seeded, lo, hi| Op::Advance {
            seconds: rng.between(lo, hi) as u32,
        };
        match self.rng.below(100) {
            0..60 => seconds(&mut self.rng, 1, 30),
            60..80 => seconds(&mut self.rng, 31, 300),
            80..92 => before(&mut self.rng, Mark::NextMidnight, Period::Daily),
            92..96 => before(&mut self.rng, Mark::NextMonth, Period::Monthly),
            _ => seconds(&mut self.rng, 1_800, 6 * 3_600),
        }
    }

    /// What task `index` does next, after `op` came out as `outcome`.
    fn update(&mut self, index: usize, op: &Op, outcome: &Outcome) {
        self.tasks[index] = match (op, outcome) {
            (Op::Reserve { estimate, .. }, &Outcome::Granted { hold, expires_at }) => {
                let plan = self.plan(*estimate);
                Task::Holding {
                    hold,
                    expires_at,
                    plan,
                }
            }
            (Op::Commit { hold, .. } | Op::Release { hold }, _)
                if matches!(self.tasks[index], Task::Holding { .. }) && self.rng.percent(5) =>
            {
                Task::Retrying {
                    hold: *hold,
                    commit: self.rng.percent(50),
                }
            }
            _ => Task::Idle,
        };
    }

    fn plan(&mut self, estimate: Decimal) -> Plan {
        match self.rng.below(100) {
            0..30 => {
                let whole = estimate.trunc().try_into().unwrap_or(0);
                Plan::Commit(Actual::Amount(Decimal::from(self.rng.between(0, whole))))
            }
            30..60 => Plan::Commit(Actual::Share(self.rng.below(256) as u8)),
            60..75 => Plan::Release,
            75..90 => Plan::Abandon,
            90..95 => Plan::CommitAbove(self.rng.tokens(1, 100)),
            _ => Plan::CommitLate,
        }
    }
}

/// The setup for `seed`: its zone, a random time of the first day.
fn setup(seed: u64, rng: &mut Seeded) -> Setup {
    let start = DateTime::parse_from_rfc3339(START)
        .expect("the start")
        .to_utc();
    Setup::default()
        .with_zone(ZONES[(seed % ZONES.len() as u64) as usize])
        .with_start(start + TimeDelta::seconds(rng.between(0, 86_399)))
        .with_reservation_ttl(RESERVATION_TTL)
        .with_users(USERS)
        .with_limits([
            LimitSpec::org(Period::Daily, Decimal::from(ORG_DAILY)),
            LimitSpec::org(Period::Monthly, Decimal::from(ORG_MONTHLY)),
            LimitSpec::user(1, Period::Daily, Decimal::from(USER_DAILY)),
        ])
}

/// Runs `seed` with `tasks` tasks for `steps` steps on `store`; the
/// coverage, or what failed.
async fn run(
    store: Arc<DynStore>,
    seed: u64,
    tasks: usize,
    steps: usize,
) -> Result<Coverage, String> {
    let mut rng = Seeded::new(seed);
    let setup = setup(seed, &mut rng);
    let clock = FakeClock::new(setup.start);
    let failed = |f| format!("seed {seed} with {tasks} tasks failed at {f}");
    let mut runner = Runner::start(store, clock, setup).await.map_err(failed)?;
    let mut scheduler = Scheduler {
        rng,
        tasks: (0..tasks).map(|_| Task::Idle).collect(),
    };
    for _ in 0..steps {
        let Some((op, task)) = scheduler.next(&runner) else {
            continue;
        };
        let outcome = runner.apply(op.clone()).await.map_err(failed)?;
        if let Some(task) = task {
            scheduler.update(task, &op, &outcome);
        }
    }
    runner.finish().await.map_err(failed)
}

/// Runs `seed` on a fresh `MemoryStore`, on a current-thread runtime.
fn run_in_memory(seed: u64, tasks: usize) -> Result<Coverage, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(run(Arc::new(MemoryStore::new()), seed, tasks, STEPS))
}

/// Every kind of event the invariant is about happened at least once.
fn assert_covered(total: &Coverage) {
    let kinds = [
        ("reservation denied", total.denials),
        ("limit check", total.checks),
        ("commit after its hold expired", total.late_commits),
        ("commit after the retention ended", total.purged_commits),
        ("commit above the estimate", total.commits_above),
        (
            "live hold committed after midnight",
            total.commits_across_midnight,
        ),
        ("repeated commit", total.repeated_commits),
        ("commit of a released hold", total.commits_of_released),
        ("release", total.releases),
        ("release of a hold no longer live", total.stale_releases),
        ("abandoned hold", total.abandoned),
    ];
    for (kind, count) in kinds {
        assert!(count > 0, "no {kind} in any run: {total:?}");
    }
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
        let coverage = run_in_memory(seed, tasks).unwrap_or_else(|failure| panic!("{failure}"));
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
        total += coverage;
    }
    eprintln!("all fixed seeds on MemoryStore: {total:?}");
    assert_covered(&total);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn reservations_keep_the_invariant_for_any_seed(seed in any::<u64>(), tasks in 16usize..=64) {
        if let Err(failure) = run_in_memory(seed, tasks) {
            prop_assert!(false, "{}", failure);
        }
    }
}

/// The shared cluster, with the test fixtures (users appear in
/// `auth.users` on first use, as the runner makes up user ids).
async fn cluster() -> Option<&'static Cluster> {
    tenancy_testkit::pg::shared_with_fixtures().await
}

/// The same model, seeds and scheduler on `PgStore`: the SQL
/// check-and-reserve, commit and release, with the clock's `now` passed
/// to every call. Fewer seeds and steps, to stay within half a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_keep_the_invariant_on_postgres() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let store = PgStore::builder()
        .url(cluster.url(pg::DATABASE))
        .pool_size(4)
        .build()
        .expect("a PgStore");
    let store: Arc<DynStore> = Arc::new(store);
    let mut total = Coverage::default();
    // New York, Santiago and Lord Howe (on a half-hour summer offset).
    for (seed, tasks) in [(0, 24), (3, 32), (2, 40)] {
        let started = Instant::now();
        let coverage = run(Arc::clone(&store), seed, tasks, LIVE_STEPS).await;
        let coverage = coverage.unwrap_or_else(|failure| panic!("on PostgreSQL: {failure}"));
        eprintln!(
            "seed {seed}: {} steps on PostgreSQL in {:.1} s",
            coverage.steps,
            started.elapsed().as_secs_f64()
        );
        assert!(
            coverage.grants >= 30 && coverage.commits >= 10 && coverage.midnights >= 2,
            "seed {seed}: {coverage:?}"
        );
        total += coverage;
    }
    eprintln!("all seeds on PostgreSQL: {total:?}");
    assert!(total.month_ends >= 1, "no month end: {total:?}");
    assert_covered(&total);
    run_edges(|| Arc::clone(&store)).await;
}

/// Scripted runs at the edges of amounts, on one org-wide daily limit:
/// near `MAX_AMOUNT` and past it, 28 decimal places (where the model
/// allows for rounding), both in one counter, a zero limit, negative
/// amounts.
fn edge_runs() -> Vec<(&'static str, Setup, Vec<Op>)> {
    let d = |s: &str| Decimal::from_str_exact(s).expect("a decimal");
    let max = MAX_AMOUNT;
    let limited = |value| {
        Setup::default()
            .with_users(2)
            .with_limits([LimitSpec::org(Period::Daily, value)])
    };
    let reserve = |user, estimate| Op::Reserve { user, estimate };
    let commit = |hold, actual| Op::Commit { hold, actual };
    let check = |user, amount| Op::Check { user, amount };
    vec![
        (
            "large",
            limited(max),
            vec![
                reserve(0, d("999999999999999999.5")),
                reserve(1, d("0.5")),
                reserve(1, d("0.000001")),
                check(0, d("0.000001")),
                commit(0, Actual::Estimate),
                commit(1, Actual::Above(d("0.25"))),
                check(1, Decimal::ZERO),
                reserve(1, max),
                reserve(1, max + Decimal::ONE),
                commit(0, Actual::Above(Decimal::ONE)),
                commit(2, Actual::Amount(max + Decimal::ONE)),
                commit(2, Actual::Amount(max)),
                check(0, -Decimal::ONE),
                reserve(0, -d("0.000001")),
            ],
        ),
        (
            "fine",
            limited(Decimal::ONE),
            vec![
                reserve(0, d("0.1234567890123456789012345678")),
                reserve(1, d("0.0000000000000000000000000001")),
                commit(0, Actual::Estimate),
                commit(1, Actual::Share(255)),
                reserve(1, d("0.8765432109876543210987654321")),
                check(0, d("0.0000000000000000000000000001")),
                commit(2, Actual::Share(1)),
            ],
        ),
        (
            "fine and large in one counter",
            limited(max),
            vec![
                reserve(0, d("0.1234567890123456789012345678")),
                reserve(1, d("100000000000000000")),
                commit(0, Actual::Estimate),
                commit(1, Actual::Estimate),
                check(0, Decimal::ONE),
            ],
        ),
        (
            "zero limit",
            limited(Decimal::ZERO),
            vec![
                reserve(0, Decimal::ZERO),
                reserve(1, d("0.000001")),
                check(1, Decimal::ZERO),
                commit(0, Actual::Amount(d("0.5"))),
                reserve(0, Decimal::ZERO),
                check(0, Decimal::ZERO),
            ],
        ),
    ]
}

/// Runs the edge cases on `store`; their coverage added up.
async fn run_edges(store: impl Fn() -> Arc<DynStore>) -> Coverage {
    let mut total = Coverage::default();
    for (name, setup, ops) in edge_runs() {
        let clock = FakeClock::new(setup.start);
        let coverage = reservation_model::run(store(), clock, setup, ops).await;
        total += coverage.unwrap_or_else(|failure| panic!("{name}: {failure}"));
    }
    assert!(
        total.grants >= 8 && total.denials >= 3 && total.invalid_amounts >= 5,
        "{total:?}"
    );
    total
}

#[tokio::test]
async fn edge_amounts_keep_the_invariant() {
    run_edges(|| Arc::new(MemoryStore::new())).await;
}

/// The checks can fail on PostgreSQL too: in a database of its own, a
/// trigger makes every counter that grows grow by one token more, as a
/// drifting SQL function would; the run must stop at the first commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifting_sql_store_is_caught() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let name = format!("model_drift_{}", uuid::Uuid::new_v4().simple());
    let db = cluster.create_database(&name).await;
    pg::apply_all(&db).await.expect("bootstrap and migrations");
    db.batch_execute(tenancy_testkit::postgrest::TEST_FIXTURES_SQL)
        .await
        .expect("test fixtures");
    db.batch_execute(
        "create function public.model_drift() returns trigger language plpgsql as $$
         begin
           if new.used > old.used then new.used := new.used + 1; end if;
           return new;
         end $$;
         create trigger model_drift before update on public.usage_counters
           for each row execute function public.model_drift();",
    )
    .await
    .expect("the drifting trigger");
    let store = PgStore::builder()
        .url(cluster.url(&name))
        .build()
        .expect("a PgStore");
    let setup = Setup::default();
    let ops = [
        Op::Reserve {
            user: 0,
            estimate: Decimal::from(10),
        },
        Op::Reserve {
            user: 1,
            estimate: Decimal::from(10),
        },
        Op::Commit {
            hold: 0,
            actual: Actual::Estimate,
        },
        Op::Commit {
            hold: 1,
            actual: Actual::Estimate,
        },
    ];
    let clock = FakeClock::new(setup.start);
    let run = reservation_model::run(Arc::new(store), clock, setup, ops).await;
    let failure = run.expect_err("the drift is found");
    assert_eq!(failure.step(), 4, "{failure}");
    assert!(
        failure
            .message()
            .contains("the store has 21 used, the model 20"),
        "{failure}"
    );
}
