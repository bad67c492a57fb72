//! Reservation operations decoded from the input, run by the crate's
//! reservation model (`tenancy::reservation_model`) on a fresh
//! `MemoryStore` under a `FakeClock`: the model checks every outcome and,
//! after every step, the store's usage, holds, bound and counters (see the
//! module's docs). This target only decodes; any disagreement panics with
//! the model's report (the step, the setup, the last steps and the
//! operations).
//!
//! The organization is in one of eight time zones (DST gaps and odd
//! offsets included), has one to four users and a hard limit from a
//! `limit_type` (daily or monthly tokens, cost, ads, images), optionally
//! with an org-wide limit of the other period and one of the last user's
//! own; reservations live 1 s, 10 min or 1 day.
//!
//! Input layout, read front to back (integers little-endian; a read past
//! the end gives zeros, and the operations stop at the end):
//!
//! ```text
//! zone u8, ttl u8, limit type u8  indexes into ZONES, TTLS, LIMIT_TYPES
//! limit value                     amount (below)
//! start u8 + u32 seconds          index into STARTS, plus up to 40 days
//! shape u8                        bits 0-1: users - 1; bit 2: an org-wide
//!                                 limit of the other period, value amount;
//!                                 bit 3: a limit of the limit type's
//!                                 period for the last user, value amount
//! operations, at most 96, each a u8 opcode mod 7:
//!   0 reserve   u8 user, amount
//!   1 commit    u8 hold, u8 kind mod 4: 0 u8 n → estimate × n/255,
//!               1 the estimate, 2 the estimate + |amount| (at most
//!               MAX_AMOUNT), 3 amount
//!   2 release   u8 hold
//!   3 advance   u8 unit mod 4 (s, min, h, days) + u16 count
//!   4 jump to   u8 kind mod 3 (next local midnight, next month, the
//!               expiry of hold u8) + i16 seconds from it, if later
//!   5 check     u8 user, amount
//!   6 abandon   u8 hold
//! amount: u8 kind mod 3: 0 u16 whole units, 1 u8 n → limit × n/64,
//!         2 decimal: u32 lo, mid, hi + u8 (bit 7 negative, scale mod 29)
//! ```
//!
//! Users and holds are indexes taken modulo how many there are (holds
//! count the grants so far; an operation on a hold before any grant is
//! skipped). Every limit value goes through `NewLimit`, whose refusals
//! must be typed; an input with a refused value stops there.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use rust_decimal::{Decimal, RoundingStrategy};
use tenancy::clock::FakeClock;
use tenancy::limits::LimitType;
use tenancy::limits::MAX_AMOUNT;
use tenancy::model::parse_timezone;
use tenancy::reservation_model::{self, Actual, LimitSpec, Mark, Op, Setup};
use tenancy::store::DynStore;
use tenancy::{MemoryStore, NewLimit, Period};
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

/// Decimal places a fraction of the limit is cut to.
const FRACTION_SCALE: u32 = 6;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// An amount: whole units, a fraction of `limit`, or any decimal.
fn amount(b: &mut Bytes, limit: Decimal) -> Decimal {
    match b.u8() % 3 {
        0 => Decimal::from(b.u16()),
        1 => (limit * Decimal::from(b.u8()) / Decimal::from(64))
            .round_dp_with_strategy(FRACTION_SCALE, RoundingStrategy::ToZero),
        _ => b.raw_decimal(),
    }
}

fn instant(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).map_or(DateTime::UNIX_EPOCH, |t| t.to_utc())
}

/// The setup the input's header describes, or `None` when a limit value
/// was (rightly) refused.
fn setup(b: &mut Bytes) -> Option<(Setup, Decimal)> {
    let zone = ZONES[b.index(ZONES.len())];
    let ttl = TTLS[b.index(TTLS.len())];
    let limit_type = LIMIT_TYPES[b.index(LIMIT_TYPES.len())];
    let value = amount(b, Decimal::from(1000));
    let start = instant(STARTS[b.index(STARTS.len())]);
    let start = start + TimeDelta::seconds(i64::from(b.u32() % (40 * 86_400)));
    let shape = b.u8();
    let users = usize::from(shape & 0b11) + 1;

    let kind = LimitType::parse(limit_type).expect("a valid limit type");
    let other = match kind.period {
        Period::Daily => Period::Monthly,
        Period::Monthly => Period::Daily,
    };
    accepted(
        "NewLimit::from_limit_type",
        NewLimit::from_limit_type(limit_type, value),
    )?;
    let mut limits = vec![LimitSpec::org(kind.period, value)];
    // Further limits, their values read as amounts of the first.
    let mut extra = |b: &mut Bytes, user: Option<usize>, period| {
        let extra = amount(b, value);
        accepted(
            "NewLimit::new",
            NewLimit::new(kind.metric.clone(), period, extra),
        )?;
        limits.push(match user {
            None => LimitSpec::org(period, extra),
            Some(user) => LimitSpec::user(user, period, extra),
        });
        Some(())
    };
    if shape & 0b100 != 0 {
        extra(b, None, other)?;
    }
    if shape & 0b1000 != 0 {
        extra(b, Some(users - 1), kind.period)?;
    }
    let setup = Setup::default()
        .with_zone(parse_timezone(zone).expect("a known zone"))
        .with_start(start)
        .with_reservation_ttl(ttl)
        .with_users(users)
        .with_metric(kind.metric)
        .with_limits(limits);
    Some((setup, value))
}

/// The operations, up to [`MAX_OPERATIONS`]; amounts that are fractions
/// of a limit are of `limit`.
fn ops(b: &mut Bytes, limit: Decimal) -> Vec<Op> {
    let mut ops = Vec::new();
    while ops.len() < MAX_OPERATIONS && !b.is_empty() {
        let op = match b.u8() % 7 {
            0 => Op::Reserve {
                user: b.u8().into(),
                estimate: amount(b, limit),
            },
            1 => {
                let hold = b.u8().into();
                let actual = match b.u8() % 4 {
                    0 => Actual::Share(b.u8()),
                    1 => Actual::Estimate,
                    2 => Actual::Above(amount(b, limit).abs().min(MAX_AMOUNT)),
                    _ => Actual::Amount(amount(b, limit)),
                };
                Op::Commit { hold, actual }
            }
            2 => Op::Release {
                hold: b.u8().into(),
            },
            3 => {
                let unit = b.u8() % 4;
                let count = u32::from(b.u16());
                let seconds = match unit {
                    0 => count % 3600,
                    1 => (count % 1440) * 60,
                    2 => (count % 240) * 3600,
                    _ => (count % 40) * 86_400,
                };
                Op::Advance { seconds }
            }
            4 => {
                let mark = match b.u8() % 3 {
                    0 => Mark::NextMidnight,
                    1 => Mark::NextMonth,
                    _ => Mark::Expiry(b.u8().into()),
                };
                Op::Jump {
                    mark,
                    offset: b.i16().into(),
                }
            }
            5 => Op::Check {
                user: b.u8().into(),
                amount: amount(b, limit),
            },
            _ => Op::Abandon {
                hold: b.u8().into(),
            },
        };
        ops.push(op);
    }
    ops
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let Some((setup, limit)) = setup(&mut b) else {
        return;
    };
    let ops = ops(&mut b, limit);
    let clock = FakeClock::new(setup.start);
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let run = reservation_model::run(store, clock, setup, ops);
    if let Err(failure) = runtime().block_on(run) {
        panic!("{failure}");
    }
});
