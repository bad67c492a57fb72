//! One usage event built from the input, recorded on both paths against a
//! `MemoryStore` under a `FakeClock`: directly (`Service::record_usage`) and
//! through a `UsageRecorder` (`record`, then `flush`, bounded by a timeout).
//!
//! Asserts, besides no panic and typed refusals (`InvalidInput` naming a
//! field): `validate` accepts only events whose `amounts` succeed; the two
//! paths accept the same events (a recorder with prices may also refuse a
//! computed cost, naming `cost_usd`, and never accepts what the direct path
//! refuses); an accepted event is counted exactly once, org-wide and for its
//! user, daily and monthly, in the periods of its time, as the store reads
//! the counters back; the same id recorded again counts once; an event
//! `record` accepted is stored by `flush` (`sent` grows by one, `failed`
//! does not).
//!
//! The tenancy, its clock and two recorders (one without prices, one with
//! `PriceTable::shipped()`) are built once per process on a current-thread
//! runtime. Every input gets a fresh organization, deleted at the end, so
//! the counters it checks hold only its own events.
//!
//! Input layout, read front to back (integers little-endian; a read past
//! the end gives zeros, so every input decodes):
//!
//! ```text
//! flags u8       bit 0 the event has a user; bit 1 it has its own id (and
//!                then bit 2: the direct path sends it twice); bit 3 the
//!                recorder with prices; bit 4 the org gets limits (alert
//!                checks run); bit 5 provider and model are a priced pair
//! zone u8        index into ZONES
//! clock          u8 kind: 0 START, 1 i64 seconds, 2 chrono's first
//!                instant, 3 its last
//! occurred_at    u8 kind: 0 none, 1 i64 seconds + u32 nanos, 2 i32 seconds
//!                + u32 nanos from now, 3 u8 index into the window's edges
//! labels         provider and model labels, or with bit 5 a u8 index
//!                into PRICED; then the operation label. A label is u8
//!                kind: 0 text, 1 u32 char × u16 count (mod 10 000),
//!                2 text NUL text
//! tokens         u64 input, u64 cached input, u64 output
//! cost           u8 (odd: present), decimal
//! quantities     u8 count (at most 4) × (metric, decimal); a metric is
//!                u8 kind: 0 u8 index into KNOWN_METRICS, 1 text
//! metadata       JSON: u8 tag 0 null, 1 bool, 2 i64, 3 f64 bits, 4 text,
//!                5 array, 6 object (u8 length ≤ 4, nested ≤ 3 deep),
//!                7 u32 char × u16 count
//! text           u16 length + bytes (lossy UTF-8)
//! decimal        u8 kind: 0 u32 lo, mid, hi + u8 (bit 7 negative, scale
//!                mod 29), 1 i64 mantissa + u8 scale mod 29, 2 u8 index
//!                into the edge values
//! ```

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use tenancy::clock::{Clock, FakeClock};
use tenancy::limits::MAX_AMOUNT;
use tenancy::limits::{CurrentPeriods, LimitScope, PeriodKey};
use tenancy::model::PriceTable;
use tenancy::model::{MAX_EVENT_AGE, MAX_EVENT_LEAD};
use tenancy::store::{MeteringStore, OrgStore, UsageQuery};
use tenancy::{
    EventId, MemoryStore, MetricKey, NewLimit, NewOrganization, OrgId, Organization,
    PlatformOperator, RecordOutcome, Tenancy, UsageEvent, UsageRecorder, UserId,
};
use tenancy_fuzz::{Bytes, accepted};

/// Where the clock stands unless the input moves it: a minute before a
/// month ends in UTC, so that the window around it spans two months.
const START: &str = "2026-03-31T23:59:00Z";

/// How long `flush` may take before the target calls it hung. The memory
/// store answers at once; this only catches a flush that never returns.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

const ZONES: [&str; 8] = [
    "UTC",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/New_York",
    "Europe/Dublin",
];

/// Provider/model pairs `PriceTable::shipped()` prices.
const PRICED: [(&str, &str); 4] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.5-pro"),
];

const KNOWN_METRICS: [&str; 4] = ["tokens", "cost_usd", "ads_created", "images"];

struct World {
    runtime: tokio::runtime::Runtime,
    clock: FakeClock,
    store: std::sync::Arc<MemoryStore>,
    tenancy: Tenancy,
    plain: UsageRecorder,
    priced: UsageRecorder,
    prices: PriceTable,
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
        let clock = FakeClock::at(START);
        let store = std::sync::Arc::new(MemoryStore::new());
        let tenancy = Tenancy::builder()
            .shared_store(store.clone())
            .clock(clock.clone())
            .build()
            .expect("a valid tenancy");
        let prices = PriceTable::shipped();
        let (plain, priced) = runtime.block_on(async {
            let plain = UsageRecorder::builder(tenancy.clone()).start();
            let priced = UsageRecorder::builder(tenancy.clone())
                .prices(prices.clone())
                .start();
            (
                plain.expect("a recorder"),
                priced.expect("a priced recorder"),
            )
        });
        World {
            runtime,
            clock,
            store,
            tenancy,
            plain,
            priced,
            prices,
            owner: UserId::new_v7(),
            operator: PlatformOperator::new("fuzz-usage-events"),
            orgs: AtomicU64::new(0),
        }
    })
}

/// A label repeated: a `u32` char (U+10FFFF when not one) × a `u16` count
/// (mod 10 000).
fn repeated(b: &mut Bytes) -> String {
    let ch = char::from_u32(b.u32()).unwrap_or('\u{10FFFF}');
    std::iter::repeat_n(ch, usize::from(b.u16()) % 10_000).collect()
}

/// A decimal: raw parts, an `i64` mantissa at a scale mod 29, or an edge
/// value.
fn decimal(b: &mut Bytes) -> Decimal {
    match b.u8() % 3 {
        0 => b.raw_decimal(),
        1 => {
            let mantissa = b.i64();
            let scale = u32::from(b.u8()) % 29;
            Decimal::try_from_i128_with_scale(mantissa.into(), scale).unwrap_or_default()
        }
        _ => {
            let edges = edge_amounts();
            edges[b.index(edges.len())]
        }
    }
}

/// Amounts at and around the bounds validation must police.
fn edge_amounts() -> [Decimal; 11] {
    [
        Decimal::ZERO,
        Decimal::from_parts(0, 0, 0, true, 0),
        Decimal::ONE,
        Decimal::NEGATIVE_ONE,
        MAX_AMOUNT,
        MAX_AMOUNT + Decimal::new(1, 10),
        MAX_AMOUNT - Decimal::new(1, 10),
        Decimal::MAX,
        Decimal::MIN,
        Decimal::new(1, 28),
        Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, false, 28),
    ]
}

fn clamp_instant(seconds: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, nanos % 1_000_000_000).unwrap_or(if seconds < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn clock_time(b: &mut Bytes) -> DateTime<Utc> {
    match b.u8() % 4 {
        0 => DateTime::parse_from_rfc3339(START).map_or(DateTime::UNIX_EPOCH, |t| t.to_utc()),
        1 => clamp_instant(b.i64(), 0),
        2 => DateTime::<Utc>::MIN_UTC,
        _ => DateTime::<Utc>::MAX_UTC,
    }
}

fn event_time(b: &mut Bytes, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = |delta: TimeDelta| now.checked_add_signed(delta).unwrap_or(now);
    let nanosecond = TimeDelta::nanoseconds(1);
    match b.u8() % 4 {
        0 => None,
        1 => Some(clamp_instant(b.i64(), b.u32())),
        2 => {
            let seconds = TimeDelta::seconds(b.i32().into());
            let nanos = TimeDelta::nanoseconds((b.u32() % 1_000_000_000).into());
            Some(offset(seconds + nanos))
        }
        _ => {
            let edges = [
                DateTime::<Utc>::MIN_UTC,
                DateTime::<Utc>::MAX_UTC,
                offset(-MAX_EVENT_AGE),
                offset(-MAX_EVENT_AGE - nanosecond),
                offset(MAX_EVENT_LEAD),
                offset(MAX_EVENT_LEAD + nanosecond),
                DateTime::UNIX_EPOCH,
                now,
            ];
            Some(edges[b.index(edges.len())])
        }
    }
}

fn label(b: &mut Bytes) -> String {
    match b.u8() % 3 {
        0 => b.text(),
        1 => repeated(b),
        _ => {
            let (before, after) = (b.text(), b.text());
            format!("{before}\0{after}")
        }
    }
}

fn metric(b: &mut Bytes) -> Option<MetricKey> {
    let name = match b.u8() % 2 {
        0 => KNOWN_METRICS[b.index(KNOWN_METRICS.len())].to_owned(),
        _ => b.text(),
    };
    accepted("MetricKey::parse", MetricKey::parse(&name))
}

fn json(b: &mut Bytes, depth: u8) -> serde_json::Value {
    use serde_json::Value;
    match b.u8() % 8 {
        1 => Value::Bool(b.u8() & 1 == 1),
        2 => Value::from(b.i64()),
        3 => {
            serde_json::Number::from_f64(f64::from_bits(b.u64())).map_or(Value::Null, Value::Number)
        }
        4 => Value::String(b.text()),
        5 if depth > 0 => {
            let len = b.u8() % 5;
            Value::Array((0..len).map(|_| json(b, depth - 1)).collect())
        }
        6 if depth > 0 => {
            let len = b.u8() % 5;
            Value::Object((0..len).map(|_| (b.text(), json(b, depth - 1))).collect())
        }
        7 => Value::String(repeated(b)),
        _ => Value::Null,
    }
}

struct Input {
    user: Option<UserId>,
    own_id: bool,
    send_twice: bool,
    priced: bool,
    limits: bool,
    zone: &'static str,
    now: DateTime<Utc>,
    event: UsageEvent,
}

/// Decodes the input; the clock is set on the way, since event times may
/// be relative to it.
fn decode(data: &[u8], world: &World) -> Input {
    let mut b = Bytes::new(data);
    let flags = b.u8();
    let zone = ZONES[b.index(ZONES.len())];
    world.clock.set(clock_time(&mut b));
    let now = world.clock.now();
    let user = (flags & 1 != 0).then(UserId::new_v7);
    let mut event = UsageEvent::new(OrgId::new_v7());
    event.occurred_at = event_time(&mut b, now);
    if flags & 0x20 != 0 {
        let (provider, model) = PRICED[b.index(PRICED.len())];
        event.provider = provider.to_owned();
        event.model = model.to_owned();
    } else {
        event.provider = label(&mut b);
        event.model = label(&mut b);
    }
    event.operation = label(&mut b);
    event = event.tokens(b.u64(), b.u64(), b.u64());
    if b.u8() & 1 == 1 {
        event = event.cost_usd(decimal(&mut b));
    }
    for _ in 0..(b.u8() % 5) {
        let metric = metric(&mut b);
        let amount = decimal(&mut b);
        if let Some(metric) = metric {
            event = event.quantity(metric, amount);
        }
    }
    event.metadata = json(&mut b, 3);
    if let Some(user) = user {
        event = event.user(user);
    }
    Input {
        user,
        own_id: flags & 2 != 0,
        send_twice: flags & 4 != 0,
        priced: flags & 8 != 0,
        limits: flags & 0x10 != 0,
        zone,
        now,
        event,
    }
}

/// Counters by scope, metric and period; zero counters left out (a store
/// may or may not keep them).
type Counters = BTreeMap<(LimitScope, MetricKey, PeriodKey), Decimal>;

/// Adds `amounts` to `counters` the way a store counts a record: org-wide
/// and for the user, daily and monthly, in `periods`.
fn count(
    counters: &mut Counters,
    amounts: &[(MetricKey, Decimal)],
    user: Option<UserId>,
    periods: CurrentPeriods,
) {
    let scopes = std::iter::once(LimitScope::Organization).chain(user.map(LimitScope::User));
    for scope in scopes {
        for (metric, amount) in amounts {
            for period in [periods.daily, periods.monthly] {
                let counter = counters.entry((scope, metric.clone(), period)).or_default();
                *counter = counter
                    .checked_add(*amount)
                    .expect("two events' amounts cannot overflow a counter");
            }
        }
    }
}

async fn assert_counted(
    world: &World,
    org: &Organization,
    user: Option<UserId>,
    periods: CurrentPeriods,
    expected: &Counters,
    after: &str,
) {
    let query = UsageQuery::new(org.id, periods, world.clock.now()).with_user(user);
    let snapshot = world
        .store
        .usage_snapshot(&query)
        .await
        .expect("a memory store reads its counters");
    let stored: Counters = snapshot
        .counters
        .into_iter()
        .filter(|c| !c.used.is_zero())
        .map(|c| ((c.scope, c.metric, c.period), c.used))
        .collect();
    let expected: Counters = expected
        .iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(stored, expected, "counters after {after}");
}

/// The event as the recorder stores it: its cost filled in from the price
/// table when it has none, tokens and a model; `Err` when that cost is out
/// of range (the recorder refuses the event, naming `cost_usd`).
fn as_priced(
    world: &World,
    mut event: UsageEvent,
    at: DateTime<Utc>,
) -> tenancy::Result<UsageEvent> {
    if event.cost_usd.is_some() || event.total_tokens() == 0 || event.model.is_empty() {
        return Ok(event);
    }
    let cost = world.prices.cost(
        &event.provider,
        &event.model,
        at,
        event.input_tokens,
        event.cached_input_tokens,
        event.output_tokens,
    )?;
    event.cost_usd = Some(cost.unwrap_or_default());
    // The computed cost adds to a `cost_usd` quantity: their sum must be an
    // amount too.
    event.amounts()?;
    Ok(event)
}

async fn run(world: &World, input: Input) {
    let n = world.orgs.fetch_add(1, Ordering::Relaxed);
    let new = NewOrganization::new("Fuzz", &format!("fuzz-{n}"))
        .and_then(|o| o.timezone(input.zone))
        .expect("a valid organization");
    let org = world
        .tenancy
        .create_organization(world.owner, new)
        .await
        .expect("a memory store creates an organization");
    let operator = world.tenancy.operator(&world.operator);
    if input.limits {
        for (limit_type, value, soft) in [("monthly_tokens", 1000, true), ("daily_cost", 1, false)]
        {
            let limit =
                NewLimit::from_limit_type(limit_type, Decimal::from(value)).expect("a limit");
            let limit = if soft { limit.soft() } else { limit };
            operator
                .set_limit(org.id, limit)
                .await
                .expect("set a limit");
        }
    }
    let event = UsageEvent {
        org: org.id,
        ..input.event
    };
    let now = input.now;
    let at = event.occurred_at.unwrap_or(now);
    let periods = CurrentPeriods::at(at, org.timezone);
    let with_id = |event: &UsageEvent| {
        let event = event.clone();
        if input.own_id {
            event.id(EventId::new_v7())
        } else {
            event
        }
    };

    let valid = accepted("UsageEvent::validate", event.validate()).is_some();
    let amounts = accepted("UsageEvent::amounts", event.amounts());
    assert!(
        !valid || amounts.is_some(),
        "validate accepted what amounts refuses: {event:?}"
    );

    // The direct path.
    let mut expected = Counters::new();
    let direct_event = with_id(&event);
    let direct = world
        .tenancy
        .service()
        .record_usage(direct_event.clone())
        .await;
    let direct = accepted("Tenancy::record_usage", direct);
    if let Some(outcome) = direct {
        assert!(
            valid,
            "record_usage accepted what validate refuses: {event:?}"
        );
        let fresh = RecordOutcome {
            inserted: 1,
            duplicates: 0,
        };
        assert_eq!(outcome, fresh, "a fresh event counts once");
        let amounts = amounts.as_deref().unwrap_or_default();
        count(&mut expected, amounts, input.user, periods);
        assert_counted(world, &org, input.user, periods, &expected, "record_usage").await;
        if input.own_id && input.send_twice {
            let again = world.tenancy.service().record_usage(direct_event).await;
            let again = again.expect("an event accepted once is accepted again");
            let duplicate = RecordOutcome {
                inserted: 0,
                duplicates: 1,
            };
            assert_eq!(again, duplicate, "the same id twice counts once");
            assert_counted(world, &org, input.user, periods, &expected, "a repeat").await;
        }
    }

    // The recorder path.
    let recorder = if input.priced {
        &world.priced
    } else {
        &world.plain
    };
    let recorder_event = with_id(&event);
    let before = recorder.stats();
    let recorded = recorder.record(recorder_event.clone());
    let stored = if input.priced {
        as_priced(world, recorder_event.clone(), at)
    } else {
        Ok(recorder_event.clone())
    };
    match &recorded {
        Err(err) if direct.is_some() => {
            let priced_out = input.priced && err.field() == Some("cost_usd") && stored.is_err();
            assert!(
                priced_out,
                "the recorder refused what record_usage accepted: {err:?} for {event:?}"
            );
        }
        Ok(_) if direct.is_none() => {
            panic!("the recorder accepted what record_usage refused: {event:?}")
        }
        _ => {}
    }
    if let Some(id) = accepted("UsageRecorder::record", recorded) {
        if let Some(own) = recorder_event.id {
            assert_eq!(id, own, "record returns the event's own id");
        }
        let flushed = tokio::time::timeout(FLUSH_BOUND, recorder.flush()).await;
        flushed
            .expect("flush returns once the memory store has the event")
            .expect("flush succeeds on a memory store");
        let after = recorder.stats();
        let stored = stored.expect("the recorder accepted the event, so its cost is in range");
        assert_eq!(
            after.failed,
            before.failed,
            "an event record accepted was not stored (failed for good); delivering it: {:?}; \
             the event: {stored:?}",
            stored.amounts().err()
        );
        assert_eq!(
            after.sent,
            before.sent + 1,
            "flush returned before the event was stored"
        );
        let amounts = stored.amounts().expect("a stored event has amounts");
        count(&mut expected, &amounts, input.user, periods);
        assert_counted(world, &org, input.user, periods, &expected, "the recorder").await;
    }

    // The operator's page over whatever was counted, and the alert checks
    // the writes queued; neither may fail.
    operator
        .usage_summary(org.id)
        .await
        .expect("a usage summary");
    world.tenancy.flush_alerts().await;
    let deleted = world.store.delete_organization(org.id).await;
    assert!(
        deleted.expect("delete the organization"),
        "the organization existed"
    );
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let input = decode(data, world);
    world.runtime.block_on(run(world, input));
});
