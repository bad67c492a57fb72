//! A sequence of reservation operations on one organization with one hard
//! limit, under a `FakeClock`, checked against a model after every step.
//!
//! Operations: reserve an amount, commit reservation i (at most its
//! estimate, exactly it, above it, or any amount), release reservation i,
//! advance the clock (seconds to weeks), jump to just around the next local
//! midnight, month start or a hold's expiry, and check the limit. The
//! organization is in one of a few time zones (DST gaps and odd offsets
//! included), so days and months end at local midnights.
//!
//! After every step, for every period of the limit's kind that a hold was
//! taken in, plus the current and the previous one, the store's figures
//! (`usage_snapshot` for the limit, `usage_history` for every org-wide
//! daily and monthly counter of its metric) must match the model: usage is the sum of the commits whose holds were taken
//! in that period (a committed reservation counts in the periods it was
//! reserved in, wherever the commit falls), held is the sum of the live
//! holds taken in it, and used + held ≤ the limit. Where commits above
//! their estimates or after their holds expired landed, the bound grows by
//! what they added (a live hold's excess over its estimate, all of a late
//! commit); with none, it is the plain guarantee. Every outcome
//! is checked too: grants and denials against the model's headroom, commit
//! and release results against each hold's state, and every error is
//! `InvalidInput` naming the amount's field or, for a hold released or
//! purged, `NotFound`. With amounts of at most 6 decimal places the model
//! is exact; with finer ones `Decimal` rounds sums, and the model allows a
//! relative 10⁻²⁰.
//!
//! One tenancy per reservation TTL (1 s, 10 min, 1 day), all on one
//! `MemoryStore` and one `FakeClock`, built once per process on a
//! current-thread runtime. Every input gets a fresh organization, deleted
//! at the end.
//!
//! Input layout, read front to back (integers little-endian; a read past
//! the end gives zeros, and the operations stop at the end):
//!
//! ```text
//! zone u8, ttl u8, limit type u8  indexes into ZONES, TTLS, LIMIT_TYPES
//! limit value                     amount (below)
//! start u8 + u32 seconds          index into STARTS, plus up to 40 days
//! operations, at most 96, each a u8 opcode mod 6:
//!   0 reserve   amount
//!   1 commit    u8 reservation index, u8 kind mod 4: 0 u8 n → estimate ×
//!               n/255, 1 the estimate, 2 the estimate + amount, 3 amount
//!   2 release   u8 reservation index
//!   3 advance   u8 unit mod 4 (s, min, h, days) + u16 count
//!   4 jump to   u8 kind mod 3 (next local midnight, next month, the
//!               expiry of reservation u8) + i16 seconds from it, if later
//!   5 check     amount
//! amount: u8 kind mod 3: 0 u16 whole units, 1 u8 n → limit × n/64,
//!         2 decimal: u32 lo, mid, hi + u8 (bit 7 negative, scale mod 29)
//! ```

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use rust_decimal::{Decimal, RoundingStrategy};
use tenancy::limits::MAX_AMOUNT;
use tenancy::store::{CounterScope, HistoryQuery, UsageQuery};
use tenancy::{
    Clock, CommitOutcome, CurrentPeriods, DynStore, EXPIRED_HOLD_RETENTION, ErrorKind, FakeClock,
    Limit, MemoryStore, NewLimit, NewOrganization, Organization, Period, PeriodKey,
    PlatformOperator, Reservation, ReserveOutcome, Tenancy, TenantContext, UserId,
};
use tenancy_fuzz::{Bytes, accepted};

const ZONES: [&str; 8] = [
    "UTC",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Europe/London",
];

const TTLS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(600),
    Duration::from_secs(24 * 3600),
];

const LIMIT_TYPES: [&str; 6] = [
    "daily_tokens",
    "monthly_tokens",
    "daily_cost",
    "monthly_ads",
    "daily_images",
    "monthly_cost_usd",
];

/// Start instants near interesting boundaries: a month end, New York's
/// spring-forward, Santiago's midnight gap, Lord Howe's half-hour shift, a
/// year end, a leap day.
const STARTS: [&str; 6] = [
    "2026-01-31T12:00:00Z",
    "2026-03-07T12:00:00Z",
    "2025-09-06T12:00:00Z",
    "2026-10-03T12:00:00Z",
    "2026-12-31T12:00:00Z",
    "2028-02-28T12:00:00Z",
];

const MAX_OPERATIONS: usize = 96;

/// Decimal places up to which the model's sums are exact.
const EXACT_SCALE: u32 = 6;

struct World {
    runtime: tokio::runtime::Runtime,
    clock: FakeClock,
    store: Arc<DynStore>,
    /// One per entry of `TTLS`.
    tenancies: Vec<Tenancy>,
    owner: UserId,
    operator: PlatformOperator,
    orgs: AtomicU64,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
        let clock = FakeClock::at(STARTS[0]);
        let store: Arc<DynStore> = Arc::new(MemoryStore::new());
        let tenancies = TTLS
            .iter()
            .map(|ttl| {
                Tenancy::builder()
                    .shared_store(Arc::clone(&store))
                    .clock(clock.clone())
                    .reservation_ttl(*ttl)
                    .build()
                    .expect("a valid tenancy")
            })
            .collect();
        World {
            runtime,
            clock,
            store,
            tenancies,
            owner: UserId::new_v7(),
            operator: PlatformOperator::new("fuzz-reservations"),
            orgs: AtomicU64::new(0),
        }
    })
}

/// An amount: whole units, a fraction of `limit`, or any decimal.
fn amount(b: &mut Bytes, limit: Decimal) -> Decimal {
    match b.u8() % 3 {
        0 => Decimal::from(b.u16()),
        1 => fraction(limit, b.u8(), 64),
        _ => b.raw_decimal(),
    }
}

/// `value × n / d`, cut to [`EXACT_SCALE`] places towards zero: never more
/// than `value × n / d`.
fn fraction(value: Decimal, n: u8, d: u8) -> Decimal {
    (value * Decimal::from(n) / Decimal::from(d))
        .round_dp_with_strategy(EXACT_SCALE, RoundingStrategy::ToZero)
}

/// Whether the facade accepts `amount`: zero or more, at most `MAX_AMOUNT`.
fn valid(amount: Decimal) -> bool {
    (amount.is_zero() || amount.is_sign_positive()) && amount <= MAX_AMOUNT
}

fn instant(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).map_or(DateTime::UNIX_EPOCH, |t| t.to_utc())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Committed,
    Released,
}

#[derive(Debug)]
struct Hold {
    reservation: Reservation,
    estimate: Decimal,
    /// The periods it was taken in, computed here from the local date.
    daily: PeriodKey,
    monthly: PeriodKey,
    state: State,
    /// A reservation since the hold expired more than the retention ago:
    /// the store may have purged it.
    maybe_purged: bool,
}

struct Model<'a> {
    world: &'a World,
    tenancy: &'a Tenancy,
    org: Organization,
    ctx: TenantContext,
    limit: Limit,
    ttl: TimeDelta,
    holds: Vec<Hold>,
    /// Committed usage of the limit's metric, by period (daily and monthly).
    used: BTreeMap<PeriodKey, Decimal>,
    /// By how much commits above their estimates, or after their holds
    /// expired, may have taken each period past the limit: the excess over
    /// the estimate of a live hold, all of a late commit.
    allowance: BTreeMap<PeriodKey, Decimal>,
    /// Every amount so far has at most `EXACT_SCALE` places.
    exact: bool,
    /// The largest amount so far, for the rounding allowance.
    magnitude: Decimal,
    trace: Vec<String>,
}

impl Model<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.world.clock.now()
    }

    fn key(&self, period: Period, at: DateTime<Utc>) -> PeriodKey {
        let local = at.with_timezone(&self.org.timezone).date_naive();
        let start = match period {
            Period::Daily => local,
            Period::Monthly => local.with_day(1).unwrap_or(local),
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

    fn note(&mut self, amount: Decimal) {
        if amount.normalize().scale() > EXACT_SCALE {
            self.exact = false;
        }
        self.magnitude = self.magnitude.max(amount.abs());
    }

    /// How far the store's sums may be from the model's.
    fn tolerance(&self) -> Decimal {
        if self.exact {
            Decimal::ZERO
        } else {
            self.magnitude.max(self.limit.value) * Decimal::new(1, 20)
        }
    }

    fn close(&self, a: Decimal, b: Decimal) -> bool {
        (a - b).abs() <= self.tolerance()
    }

    fn held(&self, key: PeriodKey, now: DateTime<Utc>) -> Decimal {
        self.holds
            .iter()
            .filter(|h| h.state == State::Open && h.reservation.expires_at() > now)
            .filter(|h| [h.daily, h.monthly].contains(&key))
            .map(|h| h.estimate)
            .sum()
    }

    fn used(&self, key: PeriodKey) -> Decimal {
        self.used.get(&key).copied().unwrap_or_default()
    }

    /// By how much `amount` more would pass the limit now, by the model:
    /// it fits when this is zero or less.
    fn excess(&self, amount: Decimal) -> Decimal {
        let key = self.key(self.limit.period, self.now());
        self.used(key) + self.held(key, self.now()) + amount - self.limit.value
    }

    #[track_caller]
    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let start = self.trace.len().saturating_sub(40);
            panic!(
                "{}\nlimit {} {} of {} ({}), exact {}\nsteps:\n  {}\nholds: {:#?}\nused: {:?}\nallowance: {:?}",
                what(),
                self.limit.period,
                self.limit.metric,
                self.limit.value,
                self.org.timezone,
                self.exact,
                self.trace[start..].join("\n  "),
                self.holds,
                self.used,
                self.allowance
            );
        }
    }

    async fn reserve(&mut self, amount: Decimal) {
        let now = self.now();
        self.trace.push(format!("{now} reserve {amount}"));
        let result = self
            .tenancy
            .reserve(&self.ctx, self.limit.metric.as_str(), amount)
            .await;
        if !valid(amount) {
            let refused = result.as_ref().err().map(|e| (e.kind(), e.field()));
            let expected = Some((ErrorKind::InvalidInput, Some("estimate")));
            self.check(refused == expected, || {
                format!("reserve({amount}): {result:?}")
            });
            return;
        }
        self.note(amount);
        // The store may purge holds that expired more than the retention
        // ago whenever it reserves.
        let purge_before = now - EXPIRED_HOLD_RETENTION;
        for hold in &mut self.holds {
            if hold.reservation.expires_at() <= purge_before {
                hold.maybe_purged = true;
            }
        }
        let outcome = result.unwrap_or_else(|e| panic!("reserve({amount}) failed: {e:?}"));
        let excess = self.excess(amount);
        let tolerance = self.tolerance();
        match outcome {
            ReserveOutcome::Granted(reservation) => {
                self.check(excess <= tolerance, || {
                    format!("granted {amount} with {excess} too little headroom")
                });
                let (daily, monthly) =
                    (self.key(Period::Daily, now), self.key(Period::Monthly, now));
                let expected = CurrentPeriods { daily, monthly };
                self.check(reservation.periods() == expected, || {
                    format!("a hold taken at {now} holds in {:?}", reservation.periods())
                });
                self.check(reservation.amount() == amount, || {
                    format!("held {} of {amount}", reservation.amount())
                });
                self.check(reservation.expires_at() == now + self.ttl, || {
                    format!("expires at {}", reservation.expires_at())
                });
                self.check(reservation.decision().allowed, || {
                    "granted, not allowed".into()
                });
                self.holds.push(Hold {
                    estimate: reservation.amount(),
                    reservation,
                    daily,
                    monthly,
                    state: State::Open,
                    maybe_purged: false,
                });
            }
            ReserveOutcome::Denied(decision) => {
                self.check(!self.exact || excess > Decimal::ZERO, || {
                    format!(
                        "denied {amount} with {} headroom left: {decision:?}",
                        -excess
                    )
                });
                self.check(!decision.allowed, || {
                    format!("denied but allowed: {decision:?}")
                });
                self.check(decision.limit == Some(self.limit.value), || {
                    format!("denied by another limit: {decision:?}")
                });
            }
        }
    }

    async fn commit(&mut self, index: usize, actual: Decimal) {
        let now = self.now();
        let hold = &self.holds[index];
        self.trace.push(format!(
            "{now} commit #{index} ({} held, {:?}, expires {}) with {actual}",
            hold.estimate,
            hold.state,
            hold.reservation.expires_at()
        ));
        let result = self.tenancy.commit(&hold.reservation, actual).await;
        if !valid(actual) {
            let refused = result.as_ref().err().map(|e| (e.kind(), e.field()));
            let expected = Some((ErrorKind::InvalidInput, Some("actual")));
            self.check(refused == expected, || {
                format!("commit({actual}): {result:?}")
            });
            return;
        }
        self.note(actual);
        let hold = &self.holds[index];
        let live = hold.reservation.expires_at() > now;
        let purgeable =
            hold.maybe_purged || hold.reservation.expires_at() <= now - EXPIRED_HOLD_RETENTION;
        let recorded = CommitOutcome {
            released_hold: live,
            recorded: true,
        };
        let repeated = CommitOutcome {
            released_hold: false,
            recorded: false,
        };
        let not_found = result
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::NotFound);
        let (state, daily, monthly, estimate) =
            (hold.state, hold.daily, hold.monthly, hold.estimate);
        match state {
            // Recognised until the retention ends, whatever its state.
            _ if purgeable => {
                self.check(not_found, || {
                    format!("commit at or past the retention: {result:?}, expected NotFound")
                });
                if state == State::Open {
                    self.holds[index].state = State::Released;
                }
            }
            State::Open => {
                self.check(result.as_ref().ok() == Some(&recorded), || {
                    format!("commit of an open hold: {result:?}, expected {recorded:?}")
                });
                // A live hold stops counting as its actual amount starts:
                // only the excess is new. An expired one counted nothing.
                let overshoot = if live {
                    (actual - estimate).max(Decimal::ZERO)
                } else {
                    actual
                };
                for key in [daily, monthly] {
                    *self.used.entry(key).or_default() += actual;
                    *self.allowance.entry(key).or_default() += overshoot;
                }
                self.holds[index].state = State::Committed;
            }
            State::Committed => {
                self.check(result.as_ref().ok() == Some(&repeated), || {
                    format!("a repeated commit: {result:?}")
                });
            }
            State::Released => {
                self.check(not_found, || {
                    format!("commit of a released hold: {result:?}")
                });
            }
        }
    }

    async fn release(&mut self, index: usize) {
        let now = self.now();
        let hold = &self.holds[index];
        self.trace
            .push(format!("{now} release #{index} ({:?})", hold.state));
        let result = self.tenancy.release(&hold.reservation).await;
        let live =
            hold.state == State::Open && !hold.maybe_purged && hold.reservation.expires_at() > now;
        self.check(result.as_ref().ok() == Some(&live), || {
            format!("release: {result:?}, expected Ok({live})")
        });
        if hold.state == State::Open {
            self.holds[index].state = State::Released;
        }
    }

    async fn check_limit(&mut self, amount: Decimal) {
        let now = self.now();
        self.trace.push(format!("{now} check {amount}"));
        let result = self
            .tenancy
            .check_limit(&self.ctx, self.limit.metric.as_str(), amount)
            .await;
        if !valid(amount) {
            let refused = result.as_ref().err().map(|e| (e.kind(), e.field()));
            let expected = Some((ErrorKind::InvalidInput, Some("amount")));
            self.check(refused == expected, || {
                format!("check_limit({amount}): {result:?}")
            });
            return;
        }
        let decision = result.unwrap_or_else(|e| panic!("check_limit({amount}) failed: {e:?}"));
        let key = self.key(self.limit.period, now);
        self.check(decision.limit == Some(self.limit.value), || {
            format!("{decision:?}")
        });
        self.check(self.close(decision.used, self.used(key)), || {
            format!(
                "check_limit says {} used, the model {}",
                decision.used,
                self.used(key)
            )
        });
        self.check(self.close(decision.reserved, self.held(key, now)), || {
            format!(
                "check_limit says {} held, the model {}",
                decision.reserved,
                self.held(key, now)
            )
        });
        let excess = self.excess(amount);
        if self.exact {
            self.check(decision.allowed == (excess <= Decimal::ZERO), || {
                format!(
                    "check_limit({amount}) allowed {} with excess {excess}",
                    decision.allowed
                )
            });
        }
        let resets = decision.resets_at.is_some_and(|at| at > now);
        self.check(resets, || {
            format!("resets at {:?}, now {now}", decision.resets_at)
        });
    }

    /// The invariant, after every step: the store's usage and holds per
    /// period are the model's, and within the limit where no commit above
    /// its estimate or after its expiry landed.
    async fn verify(&self) {
        let now = self.now();
        let kind = self.limit.period;
        let current = self.key(kind, now);
        let mut keys: BTreeSet<PeriodKey> = [current, Self::previous(current)].into();
        keys.extend(self.holds.iter().map(|h| {
            if kind == Period::Daily {
                h.daily
            } else {
                h.monthly
            }
        }));
        for key in keys {
            let periods = match kind {
                Period::Daily => CurrentPeriods {
                    daily: key,
                    monthly: PeriodKey {
                        period: Period::Monthly,
                        start: key.start.with_day(1).unwrap_or(key.start),
                    },
                },
                Period::Monthly => CurrentPeriods {
                    daily: PeriodKey {
                        period: Period::Daily,
                        start: key.start,
                    },
                    monthly: key,
                },
            };
            let query = UsageQuery::new(self.org.id, periods, now)
                .with_user(Some(self.ctx.user()))
                .with_metric(Some(self.limit.metric.clone()));
            let snapshot = self.world.store.usage_snapshot(&query).await;
            let snapshot = snapshot.unwrap_or_else(|e| panic!("usage_snapshot: {e:?}"));
            let [usage] = snapshot.limits.as_slice() else {
                panic!("one limit applies, the store lists {:?}", snapshot.limits);
            };
            self.check(usage.period == key, || {
                format!("{key} read as {}", usage.period)
            });
            self.check(self.close(usage.used, self.used(key)), || {
                format!(
                    "{key}: the store has {} used, the model {}",
                    usage.used,
                    self.used(key)
                )
            });
            self.check(self.close(usage.reserved, self.held(key, now)), || {
                format!(
                    "{key}: the store has {} held, the model {}",
                    usage.reserved,
                    self.held(key, now)
                )
            });
            let allowance = self.allowance.get(&key).copied().unwrap_or_default();
            let bound = self.limit.value + allowance + self.tolerance();
            self.check(usage.used + usage.reserved <= bound, || {
                format!(
                    "{key}: {} used + {} held passes the limit {} plus the {allowance} that \
                     commits above their estimates or after their expiry added",
                    usage.used, usage.reserved, self.limit.value
                )
            });
        }
        // Every counter of the metric, both kinds: nothing lost, nothing
        // doubled, each commit in the periods of its hold.
        for period in [Period::Daily, Period::Monthly] {
            let query = HistoryQuery::new(
                self.org.id,
                CounterScope::Organization,
                period,
                NaiveDate::MIN,
                NaiveDate::MAX,
            )
            .with_metric(Some(self.limit.metric.clone()));
            let history = self.world.store.usage_history(&query).await;
            let history = history.unwrap_or_else(|e| panic!("usage_history: {e:?}"));
            let stored: BTreeMap<PeriodKey, Decimal> = history
                .into_iter()
                .filter(|c| !c.used.is_zero())
                .map(|c| (c.period, c.used))
                .collect();
            let modelled: BTreeMap<PeriodKey, Decimal> = self
                .used
                .iter()
                .filter(|(k, v)| k.period == period && !v.is_zero())
                .map(|(k, v)| (*k, *v))
                .collect();
            let same = stored.len() == modelled.len()
                && stored
                    .iter()
                    .zip(&modelled)
                    .all(|((a, x), (b, y))| a == b && self.close(*x, *y));
            self.check(same, || {
                format!("{period} counters {stored:?}, the model {modelled:?}")
            });
        }
    }

    async fn jump(&mut self, b: &mut Bytes<'_>) {
        let now = self.now();
        let tz = self.org.timezone;
        let base = match b.u8() % 3 {
            0 => PeriodKey::containing(Period::Daily, now, tz).resets_at(tz),
            1 => PeriodKey::containing(Period::Monthly, now, tz).resets_at(tz),
            _ if self.holds.is_empty() => now,
            _ => {
                let index = b.index(self.holds.len());
                self.holds[index].reservation.expires_at()
            }
        };
        let target = base + TimeDelta::seconds(b.i16().into());
        if target > now {
            self.trace.push(format!("{now} jump to {target}"));
            self.world.clock.set(target);
        }
    }

    fn advance(&mut self, b: &mut Bytes<'_>) {
        let unit = b.u8() % 4;
        let count = u64::from(b.u16());
        let seconds = match unit {
            0 => count % 3600,
            1 => (count % 1440) * 60,
            2 => (count % 240) * 3600,
            _ => (count % 40) * 86_400,
        };
        self.trace
            .push(format!("{} advance {seconds} s", self.now()));
        self.world.clock.advance(Duration::from_secs(seconds));
    }
}

async fn run(world: &World, data: &[u8]) {
    let mut b = Bytes::new(data);
    let zone = ZONES[b.index(ZONES.len())];
    let ttl_index = b.index(TTLS.len());
    let tenancy = &world.tenancies[ttl_index];
    let limit_type = LIMIT_TYPES[b.index(LIMIT_TYPES.len())];
    let value = amount(&mut b, Decimal::from(1000));
    let start = instant(STARTS[b.index(STARTS.len())]);
    let offset = TimeDelta::seconds(i64::from(b.u32() % (40 * 86_400)));
    world.clock.set(start + offset);

    let Some(new_limit) = accepted(
        "NewLimit::from_limit_type",
        NewLimit::from_limit_type(limit_type, value),
    ) else {
        return;
    };
    let n = world.orgs.fetch_add(1, Ordering::Relaxed);
    let new = NewOrganization::new("Fuzz", &format!("fuzz-{n}"))
        .and_then(|o| o.timezone(zone))
        .expect("a valid organization");
    let org = tenancy
        .create_organization(world.owner, new)
        .await
        .expect("a memory store creates an organization");
    let ctx = tenancy
        .context(world.owner, org.id)
        .await
        .expect("the owner's context");
    let limit = tenancy
        .operator(&world.operator)
        .set_limit(org.id, new_limit)
        .await
        .expect("set the limit");
    let ttl = TimeDelta::from_std(TTLS[ttl_index]).expect("a TTL in range");
    let mut model = Model {
        world,
        tenancy,
        org,
        ctx,
        ttl,
        holds: Vec::new(),
        used: BTreeMap::new(),
        allowance: BTreeMap::new(),
        exact: true,
        magnitude: Decimal::ZERO,
        trace: vec![format!(
            "{zone}, TTL {:?}, {limit_type} {value}",
            TTLS[ttl_index]
        )],
        limit,
    };
    model.note(model.limit.value);
    model.verify().await;

    for _ in 0..MAX_OPERATIONS {
        if b.is_empty() {
            break;
        }
        let limit = model.limit.value;
        match b.u8() % 6 {
            0 => model.reserve(amount(&mut b, limit)).await,
            1 => {
                let index = b.u8();
                let kind = b.u8() % 4;
                let fraction_of = b.u8();
                if model.holds.is_empty() {
                    continue;
                }
                let index = usize::from(index) % model.holds.len();
                let estimate = model.holds[index].estimate;
                let actual = match kind {
                    0 => fraction(estimate, fraction_of, 255).min(estimate),
                    1 => estimate,
                    2 => estimate + amount(&mut b, limit).abs().min(MAX_AMOUNT),
                    _ => amount(&mut b, limit),
                };
                model.commit(index, actual).await;
            }
            2 => {
                let index = b.u8();
                if model.holds.is_empty() {
                    continue;
                }
                model.release(usize::from(index) % model.holds.len()).await;
            }
            3 => model.advance(&mut b),
            4 => model.jump(&mut b).await,
            _ => model.check_limit(amount(&mut b, limit)).await,
        }
        model.verify().await;
    }

    let deleted = world.store.delete_organization(model.org.id).await;
    assert!(
        deleted.expect("delete the organization"),
        "the organization existed"
    );
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    world.runtime.block_on(run(world, data));
});
