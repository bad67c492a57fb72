//! Rust and SQL agree on the rules both state: the period an instant falls
//! in and when a period starts and resets (`PeriodKey::containing`,
//! `starts_at` and `resets_at` against `tenancy.period_start`,
//! `tenancy.period_starts_at` and `tenancy.period_resets_at`), and what an
//! event counts (`UsageEvent::amounts` against `tenancy.event_amounts`).
//!
//! The cases come from seeded proptest strategies, the same every run, and
//! for periods also from every UTC offset change of each zone from 2000 to
//! 2037: instants around it, and the days and months on either side. Each
//! check sends its cases in one round trip (arrays through `unnest`) and
//! returns every disagreement with its inputs. The last test applies the
//! migrations with each rule drifted and sees every check report it.
//!
//! Both sides read the IANA time zone database: chrono-tz its bundled copy,
//! PostgreSQL the system's. Up to 2037 they agree wherever the two copies
//! do, so a failure names both versions: a zone whose rules changed between
//! them disagrees without either rule being wrong. Later instants are not
//! compared: chrono-tz's transitions stop at 2099, while PostgreSQL follows
//! each zone's rules on. Zone names that are also PostgreSQL time zone
//! abbreviations (`CET`, `EST`, …) have a test of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;
use std::time::Instant;

use chrono::{DateTime, Datelike as _, NaiveDate, Offset as _, TimeZone as _, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use rust_decimal::Decimal;
use tenancy::limits::{MAX_AMOUNT, PeriodKey};
use tenancy::{MetricKey, OrgId, Period, UsageEvent};
use tenancy_testkit::pg::{self, Cluster};
use tokio_postgres::Client;
use uuid::Uuid;

/// The zones compared: whole-hour, 30- and 45-minute offsets, the furthest
/// offsets (-12 and +14), northern and southern daylight saving (Lord
/// Howe's is 30 minutes, Troll's 2 hours, Dublin's negative), clocks
/// changed at midnight (Havana, Beirut, Santiago, Cairo, Gaza, Asuncion,
/// Tehran, Damascus, Amman), a skipped day (Apia, 2011-12-30) and zones
/// whose rules changed after 2000 (Sao Paulo, Mexico City, Caracas,
/// Pyongyang, Volgograd, Casablanca, Nuuk, Scoresbysund).
const ZONES: [&str; 40] = [
    "UTC",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Moscow",
    "Europe/Volgograd",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "America/Sao_Paulo",
    "America/Mexico_City",
    "America/Caracas",
    "America/Nuuk",
    "America/Scoresbysund",
    "Africa/Cairo",
    "Africa/Casablanca",
    "Asia/Beirut",
    "Asia/Gaza",
    "Asia/Amman",
    "Asia/Damascus",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Pyongyang",
    "Asia/Tokyo",
    "Australia/Eucla",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Pacific/Norfolk",
    "Antarctica/Troll",
];

/// 2000-01-01T00:00:00Z and 2038-01-01T00:00:00Z: the instants compared.
const FROM: i64 = 946_684_800;
const UNTIL: i64 = 2_145_916_800;

/// Random instants (each with the period it falls in) and random events.
const PERIOD_CASES: usize = 4_000;
const EVENT_CASES: usize = 4_000;

const PERIODS: [Period; 2] = [Period::Daily, Period::Monthly];

/// The two copies of the time zone database, for failure messages.
fn tzdata_versions() -> String {
    let system = std::fs::read_to_string("/usr/share/zoneinfo/tzdata.zi")
        .ok()
        .and_then(|zi| {
            zi.lines()
                .next()
                .and_then(|l| l.strip_prefix("# version "))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "tzdata: chrono-tz {}, system (PostgreSQL's) {system}",
        chrono_tz::IANA_TZDB_VERSION
    )
}

/// `problems`, one a line: at most 8 that start with the same word (a
/// zone) and 40 in all.
fn listed(problems: &[String]) -> String {
    let mut per_word: BTreeMap<&str, usize> = BTreeMap::new();
    let shown: Vec<&str> = problems
        .iter()
        .filter(|p| {
            let word = p.split(' ').next().unwrap_or_default();
            let n = per_word.entry(word).or_default();
            *n += 1;
            *n <= 8
        })
        .take(40)
        .map(String::as_str)
        .collect();
    let mut out = shown.join("\n");
    if problems.len() > shown.len() {
        out.push_str(&format!("\n… and {} more", problems.len() - shown.len()));
    }
    out
}

fn tz(zone: &str) -> Tz {
    zone.parse().unwrap_or_else(|e| panic!("{zone}: {e}"))
}

fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("an instant chrono represents")
}

// ---- periods ----------------------------------------------------------------------------

/// An instant whose period of kind `period` in `zone` both sides compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct At {
    zone: &'static str,
    period: Period,
    at: DateTime<Utc>,
}

/// A period in `zone` whose start and reset both sides compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    zone: &'static str,
    key: PeriodKey,
}

impl At {
    fn rust(self) -> PeriodKey {
        PeriodKey::containing(self.period, self.at, tz(self.zone))
    }
}

/// The period cases: the instants and the periods they fall in, deduplicated.
#[derive(Debug, Default)]
struct PeriodCases {
    instants: BTreeSet<At>,
    keys: BTreeSet<Key>,
}

impl PeriodCases {
    fn add_instant(&mut self, zone: &'static str, secs: i64) {
        for period in PERIODS {
            let at = At {
                zone,
                period,
                at: instant(secs),
            };
            self.instants.insert(at);
            self.keys.insert(Key {
                zone,
                key: at.rust(),
            });
        }
    }

    /// `day` and its month in `zone`, and the instants a second either side
    /// of the day's start.
    fn add_day(&mut self, zone: &'static str, day: NaiveDate) {
        let daily = PeriodKey {
            period: Period::Daily,
            start: day,
        };
        let monthly = PeriodKey {
            period: Period::Monthly,
            start: day.with_day(1).expect("the first of a month"),
        };
        self.keys.insert(Key { zone, key: daily });
        self.keys.insert(Key { zone, key: monthly });
        let starts = daily.starts_at(tz(zone)).timestamp();
        for secs in [starts - 1, starts, starts + 1] {
            self.add_instant(zone, secs);
        }
    }
}

/// `tz`'s UTC offset at `secs`, in seconds.
fn offset_at(tz: Tz, secs: i64) -> i32 {
    tz.offset_from_utc_datetime(&instant(secs).naive_utc())
        .fix()
        .local_minus_utc()
}

/// The instants in [`FROM`, `UNTIL`) at which `tz`'s UTC offset changes
/// (the first second of the new offset), by chrono-tz: offsets sampled every
/// 3 hours, each change bisected to the second.
fn offset_changes(tz: Tz) -> Vec<i64> {
    const STEP: i64 = 3 * 60 * 60;
    let mut changes = Vec::new();
    let mut t = FROM;
    while t < UNTIL {
        let next = (t + STEP).min(UNTIL);
        let old = offset_at(tz, t);
        if old != offset_at(tz, next) {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == old {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            changes.push(hi);
        }
        t = next;
    }
    changes
}

/// For every offset change of each of `zones`: instants a second, half an
/// hour and an hour either side of it; the local days from the one before
/// it to the one after it (a day it skips included) and one more on either
/// side, with their months; and instants a second either side of each of
/// those days' start.
fn around_changes(zones: &[&'static str]) -> (PeriodCases, usize) {
    let mut cases = PeriodCases::default();
    let mut changes = 0;
    for &zone in zones {
        let tz = tz(zone);
        for change in offset_changes(tz) {
            changes += 1;
            for delta in [-3601, -3600, -1801, -1, 0, 1, 1799, 3599, 3600] {
                cases.add_instant(zone, change + delta);
            }
            let before = instant(change - 1).with_timezone(&tz).date_naive();
            let after = instant(change).with_timezone(&tz).date_naive();
            let first = before.min(after).pred_opt().expect("a day before");
            let last = before.max(after).succ_opt().expect("a day after");
            for day in first.iter_days().take_while(|d| *d <= last) {
                cases.add_day(zone, day);
            }
        }
    }
    (cases, changes)
}

/// `n` instants in [`FROM`, `UNTIL`) in random zones, from a seeded
/// strategy, and the periods they fall in.
fn random_instants(n: usize) -> PeriodCases {
    let strategy = (0..ZONES.len(), FROM..UNTIL);
    let mut runner = TestRunner::deterministic();
    let mut cases = PeriodCases::default();
    for _ in 0..n {
        let (zone, secs) = strategy.new_tree(&mut runner).expect("a case").current();
        cases.add_instant(ZONES[zone], secs);
    }
    cases
}

/// Where `tenancy.period_start` and `PeriodKey::containing` disagree, one
/// line per case.
async fn start_disagreements(db: &Client, cases: &BTreeSet<At>) -> Vec<String> {
    let zones: Vec<&str> = cases.iter().map(|c| c.zone).collect();
    let periods: Vec<&str> = cases.iter().map(|c| c.period.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = cases.iter().map(|c| c.at).collect();
    let rows = db
        .query(
            "select tenancy.period_start(u.p, u.t, u.z) \
             from unnest($1::text[], $2::text[], $3::timestamptz[]) with ordinality u (z, p, t, n) \
             order by u.n",
            &[&zones, &periods, &ats],
        )
        .await
        .expect("tenancy.period_start");
    assert_eq!(rows.len(), cases.len());
    cases
        .iter()
        .zip(rows)
        .filter_map(|(c, row)| {
            let sql: Option<NaiveDate> = row.get(0);
            let rust = c.rust().start;
            (sql != Some(rust)).then(|| {
                format!(
                    "{} {} period of {}: starts {rust} in Rust, {sql:?} in SQL",
                    c.zone,
                    c.period,
                    c.at.to_rfc3339()
                )
            })
        })
        .collect()
}

/// Where `tenancy.period_starts_at`/`period_resets_at` and
/// `PeriodKey::starts_at`/`resets_at` disagree, one line per case.
async fn bounds_disagreements(db: &Client, cases: &BTreeSet<Key>) -> Vec<String> {
    let zones: Vec<&str> = cases.iter().map(|c| c.zone).collect();
    let periods: Vec<&str> = cases.iter().map(|c| c.key.period.as_str()).collect();
    let starts: Vec<NaiveDate> = cases.iter().map(|c| c.key.start).collect();
    let rows = db
        .query(
            "select tenancy.period_starts_at(u.p, u.s, u.z), tenancy.period_resets_at(u.p, u.s, u.z) \
             from unnest($1::text[], $2::text[], $3::date[]) with ordinality u (z, p, s, n) \
             order by u.n",
            &[&zones, &periods, &starts],
        )
        .await
        .expect("tenancy.period_starts_at and period_resets_at");
    assert_eq!(rows.len(), cases.len());
    cases
        .iter()
        .zip(rows)
        .filter_map(|(c, row)| {
            let sql: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
            let tz = tz(c.zone);
            let rust = (c.key.starts_at(tz), c.key.resets_at(tz));
            (sql != (Some(rust.0), Some(rust.1))).then(|| {
                format!(
                    "{} {}: (starts_at, resets_at) ({}, {}) in Rust, ({:?}, {:?}) in SQL",
                    c.zone,
                    c.key,
                    rust.0.to_rfc3339(),
                    rust.1.to_rfc3339(),
                    sql.0.map(|t| t.to_rfc3339()),
                    sql.1.map(|t| t.to_rfc3339()),
                )
            })
        })
        .collect()
}

async fn period_disagreements(db: &Client, cases: &PeriodCases) -> Vec<String> {
    let mut problems = start_disagreements(db, &cases.instants).await;
    problems.extend(bounds_disagreements(db, &cases.keys).await);
    problems
}

#[tokio::test]
async fn periods_agree_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let started = Instant::now();
    let (mut cases, changes) = around_changes(&ZONES);
    let random = random_instants(PERIOD_CASES);
    cases.instants.extend(random.instants);
    cases.keys.extend(random.keys);
    // Every zone with daylight saving changes offsets in these 38 years.
    assert!(changes > 1_500, "{changes} offset changes");
    let problems = period_disagreements(&db, &cases).await;
    assert!(
        problems.is_empty(),
        "{} disagreements ({}):\n{}",
        problems.len(),
        tzdata_versions(),
        listed(&problems)
    );
    println!(
        "periods: {} instants and {} periods ({changes} offset changes, {PERIOD_CASES} random \
         instants) agree in {:?}",
        cases.instants.len(),
        cases.keys.len(),
        started.elapsed()
    );
}

/// Zone names that PostgreSQL also knows as time zone abbreviations
/// (`pg_timezone_abbrevs`): `AT TIME ZONE` reads an abbreviation first, as
/// a fixed offset, so these agree only where the zone has no daylight
/// saving.
#[tokio::test]
async fn zones_named_like_abbreviations_agree_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let abbreviations: BTreeSet<String> = db
        .query("select upper(abbrev) from pg_timezone_abbrevs", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let zones: Vec<&'static str> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter(|name| abbreviations.contains(&name.to_uppercase()))
        .collect();
    assert!(zones.contains(&"UTC"), "{zones:?}");
    let (cases, _) = around_changes(&zones);
    let problems = period_disagreements(&db, &cases).await;
    let named: BTreeSet<&str> = problems
        .iter()
        .filter_map(|p| p.split_once(' ').map(|(zone, _)| zone))
        .collect();
    assert!(
        problems.is_empty(),
        "{} disagreements in {named:?} of {zones:?} (PostgreSQL reads these names as \
         abbreviations, fixed offsets; chrono-tz as zones):\n{}",
        problems.len(),
        listed(&problems)
    );
}

// ---- amounts ----------------------------------------------------------------------------

/// How an amount is written in the event's JSON.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// `"1.50"`, as the library serializes a `Decimal`.
    Text,
    /// `1.50`.
    Number,
    /// `1.50e0`.
    Exponent,
    /// `"1.50e0"`.
    ExponentText,
}

impl Form {
    fn write(self, amount: Decimal) -> String {
        match self {
            Form::Text => format!("\"{amount}\""),
            Form::Number => amount.to_string(),
            Form::Exponent => format!("{amount:e}"),
            Form::ExponentText => format!("\"{amount:e}\""),
        }
    }
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Text),
        Just(Form::Number),
        Just(Form::Exponent),
        Just(Form::ExponentText),
    ]
}

/// An event and the JSON `tenancy.event_amounts` reads for it.
#[derive(Debug, Clone)]
struct EventCase {
    event: UsageEvent,
    json: String,
}

/// A token count: zero, small, near a third, half or all of `MAX_AMOUNT`
/// (so sums land either side of it), near `u64::MAX`, or any.
fn token_count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        0..1_000_000u64,
        333_333_333_333_333_330..333_333_333_333_333_340u64,
        499_999_999_999_999_995..500_000_000_000_000_005u64,
        999_999_999_999_999_995..1_000_000_000_000_000_005u64,
        u64::MAX - 3..=u64::MAX,
        any::<u64>(),
    ]
}

/// Input, cached input and output tokens: mostly none or a few, else any
/// mix of [`token_count`]s, or a split of a total within 2 of
/// `MAX_AMOUNT`.
fn tokens() -> impl Strategy<Value = [u64; 3]> {
    const MAX: u64 = 1_000_000_000_000_000_000;
    prop_oneof![
        6 => proptest::array::uniform3(prop_oneof![Just(0), 0..1_000_000u64]),
        3 => proptest::array::uniform3(token_count()),
        1 => (MAX - 2..=MAX + 2, any::<u64>(), any::<u64>()).prop_map(|(total, a, b)| {
            let a = a % (total + 1);
            let b = b % (total - a + 1);
            [a, b, total - a - b]
        }),
    ]
}

/// An amount: mostly small, else zero (negative zero too), negative, near
/// `MAX_AMOUNT` or half of it at any scale, far beyond it, or any `Decimal`.
fn amount() -> impl Strategy<Value = Decimal> {
    let scale = 0u32..=28;
    let near = |base: Decimal| {
        (-3i64..=3, 0u32..=28)
            .prop_map(move |(k, s)| base.checked_add(Decimal::new(k, s)).unwrap_or(base))
    };
    let half = MAX_AMOUNT / Decimal::TWO;
    prop_oneof![
        2 => Just(Decimal::ZERO),
        1 => scale.clone().prop_map(|s| Decimal::from_parts(0, 0, 0, true, s)),
        6 => (0i64..1_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
        1 => (-1_000_000i64..0, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
        2 => near(MAX_AMOUNT),
        2 => near(half),
        1 => (any::<i64>(), scale.clone()).prop_map(|(m, s)| Decimal::new(m, s)),
        1 => (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), scale)
            .prop_map(|(lo, mid, hi, neg, s)| Decimal::from_parts(lo, mid, hi, neg, s)),
        1 => prop_oneof![Just(Decimal::MAX), Just(Decimal::MIN)],
    ]
}

/// A metric: `tokens` and `cost_usd` (which add to the event's own), a few
/// common ones, or any valid key.
fn metric() -> impl Strategy<Value = MetricKey> {
    prop_oneof![
        Just("tokens".to_owned()),
        Just("cost_usd".to_owned()),
        Just("ads_created".to_owned()),
        Just("images".to_owned()),
        "[a-z][a-z0-9_]{0,62}",
    ]
    .prop_map(|m| MetricKey::parse(&m).expect("a metric key"))
}

/// The event and its JSON. Absent amounts are written in each way SQL
/// reads as absent: token counts of zero left out, `null` or `0`; no cost
/// left out or `null`; no quantities left out, `null` or `{}`.
fn event_case(
    tokens: [u64; 3],
    cost: Option<(Decimal, Form)>,
    quantities: BTreeMap<MetricKey, (Decimal, Form)>,
    absent: u8,
) -> EventCase {
    let mut event =
        UsageEvent::new(OrgId::from(Uuid::nil())).tokens(tokens[0], tokens[1], tokens[2]);
    event.cost_usd = cost.map(|(c, _)| c);
    event.quantities = quantities
        .iter()
        .map(|(m, (a, _))| (m.clone(), *a))
        .collect();
    let mut fields = vec![r#""provider": "openai", "model": "gpt-4o""#.to_owned()];
    let names = ["input_tokens", "cached_input_tokens", "output_tokens"];
    for (name, count) in names.into_iter().zip(tokens) {
        match (count, absent % 3) {
            (0, 0) => {}
            (0, 1) => fields.push(format!(r#""{name}": null"#)),
            _ => fields.push(format!(r#""{name}": {count}"#)),
        }
    }
    match cost {
        Some((c, form)) => fields.push(format!(r#""cost_usd": {}"#, form.write(c))),
        None if absent / 3 % 2 == 1 => fields.push(r#""cost_usd": null"#.to_owned()),
        None => {}
    }
    if quantities.is_empty() {
        match absent / 6 % 3 {
            1 => fields.push(r#""quantities": null"#.to_owned()),
            2 => fields.push(r#""quantities": {}"#.to_owned()),
            _ => {}
        }
    } else {
        let entries: Vec<String> = quantities
            .iter()
            .map(|(m, (a, form))| format!(r#""{m}": {}"#, form.write(*a)))
            .collect();
        fields.push(format!(r#""quantities": {{{}}}"#, entries.join(", ")));
    }
    EventCase {
        event,
        json: format!("{{{}}}", fields.join(", ")),
    }
}

fn event_cases(n: usize) -> Vec<EventCase> {
    let strategy = (
        tokens(),
        prop::option::weighted(0.6, (amount(), form())),
        prop::collection::btree_map(metric(), (amount(), form()), 0..4),
        any::<u8>(),
    )
        .prop_map(|(tokens, cost, quantities, absent)| {
            event_case(tokens, cost, quantities, absent)
        });
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect()
}

/// What an event counts, or the field it is refused for.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// `{metric: amount}`, amounts compared by value.
    Counts(BTreeMap<String, Decimal>),
    /// `InvalidInput` in Rust, SQLSTATE 22023 in SQL, naming this field.
    Refused(String),
    /// Anything else SQL answers: an error of another SQLSTATE, or an
    /// amount that is not a string holding a number.
    Other(String),
}

impl Outcome {
    fn rust(event: &UsageEvent) -> Outcome {
        match event.amounts() {
            Ok(amounts) => Outcome::Counts(
                amounts
                    .into_iter()
                    .map(|(m, a)| (m.to_string(), a))
                    .collect(),
            ),
            Err(e) => Outcome::Refused(e.field().unwrap_or("(no field)").to_owned()),
        }
    }
}

/// `tenancy.event_amounts` with its error caught, for a connection's own
/// session: (amounts, SQLSTATE, message).
const TRY_EVENT_AMOUNTS: &str = "\
create function pg_temp.try_event_amounts(event jsonb, out amounts jsonb, out code text, out message text)
language plpgsql as $$
begin
  amounts := tenancy.event_amounts(event);
exception when others then
  code := sqlstate;
  message := sqlerrm;
end
$$";

/// What `tenancy.event_amounts` answers for each JSON event, in order.
async fn sql_outcomes(db: &Client, events: &[&str]) -> Vec<Outcome> {
    db.batch_execute(TRY_EVENT_AMOUNTS)
        .await
        .expect("pg_temp.try_event_amounts");
    let rows = db
        .query(
            "select r.amounts, r.code, r.message \
             from unnest($1::text[]) with ordinality u (e, n), \
             lateral pg_temp.try_event_amounts(u.e::jsonb) r \
             order by u.n",
            &[&events],
        )
        .await
        .expect("tenancy.event_amounts");
    db.batch_execute("drop function pg_temp.try_event_amounts")
        .await
        .unwrap();
    assert_eq!(rows.len(), events.len());
    rows.iter()
        .map(|row| {
            let amounts: Option<serde_json::Value> = row.get(0);
            let code: Option<String> = row.get(1);
            let message: Option<String> = row.get(2);
            match (amounts, code) {
                (Some(serde_json::Value::Object(amounts)), None) => amounts
                    .iter()
                    .map(|(m, a)| {
                        a.as_str()
                            .and_then(|a| Decimal::from_str(a).ok())
                            .map(|a| (m.clone(), a))
                            .ok_or_else(|| {
                                Outcome::Other(format!("{m}: {a} is not a string amount"))
                            })
                    })
                    .collect::<Result<BTreeMap<_, _>, _>>()
                    .map_or_else(|other| other, Outcome::Counts),
                (_, Some(code)) if code == "22023" => {
                    let message = message.unwrap_or_default();
                    match message.split_once(": ") {
                        Some((field, _)) => Outcome::Refused(field.to_owned()),
                        None => Outcome::Other(format!("22023 naming no field: {message}")),
                    }
                }
                (amounts, code) => Outcome::Other(format!("{amounts:?}, {code:?}: {message:?}")),
            }
        })
        .collect()
}

/// Where `tenancy.event_amounts` and `UsageEvent::amounts` disagree, one
/// line per case, and how many cases each Rust outcome had (`counts` or the
/// field refused).
async fn amount_disagreements(
    db: &Client,
    cases: &[EventCase],
) -> (Vec<String>, BTreeMap<String, usize>) {
    let events: Vec<&str> = cases.iter().map(|c| c.json.as_str()).collect();
    let sql = sql_outcomes(db, &events).await;
    let mut seen = BTreeMap::new();
    let mut problems = Vec::new();
    for (case, sql) in cases.iter().zip(sql) {
        let rust = Outcome::rust(&case.event);
        let kind = match &rust {
            Outcome::Refused(field) => field.clone(),
            _ => "counts".to_owned(),
        };
        *seen.entry(kind).or_default() += 1;
        if rust != sql {
            problems.push(format!("{}: Rust {rust:?}, SQL {sql:?}", case.json));
        }
    }
    (problems, seen)
}

/// Events only JSON can hold, and the field SQL refuses each for: the
/// checks of what Rust's types rule out.
const JSON_ONLY: [(&str, &str); 12] = [
    (r#"{"input_tokens": "5"}"#, "input_tokens"),
    (r#"{"cached_input_tokens": 1.5}"#, "cached_input_tokens"),
    (r#"{"output_tokens": -1}"#, "output_tokens"),
    (
        r#"{"output_tokens": 18446744073709551616}"#,
        "output_tokens",
    ),
    (r#"{"cost_usd": "NaN"}"#, "cost_usd"),
    (r#"{"cost_usd": "Infinity"}"#, "cost_usd"),
    (r#"{"cost_usd": "1.2.3"}"#, "cost_usd"),
    (r#"{"cost_usd": true}"#, "cost_usd"),
    (r#"{"quantities": [1]}"#, "quantities"),
    (r#"{"quantities": {"Ads": 1}}"#, "quantities"),
    (r#"{"quantities": {"ads": null}}"#, "quantity"),
    (r#"{"quantities": {"ads": "-Infinity"}}"#, "quantity"),
];

#[tokio::test]
async fn amounts_agree_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let started = Instant::now();
    let cases = event_cases(EVENT_CASES);
    let (problems, seen) = amount_disagreements(&db, &cases).await;
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        listed(&problems)
    );
    for kind in ["counts", "tokens", "cost_usd", "quantity"] {
        assert!(
            seen.get(kind).is_some_and(|&n| n >= 50),
            "at least 50 cases where Rust's answer is {kind}: {seen:?}"
        );
    }
    println!(
        "amounts: {EVENT_CASES} events agree in {:?}: {seen:?}",
        started.elapsed()
    );

    let events: Vec<&str> = JSON_ONLY.iter().map(|(json, _)| *json).collect();
    let outcomes = sql_outcomes(&db, &events).await;
    for ((json, field), outcome) in JSON_ONLY.iter().zip(outcomes) {
        assert_eq!(outcome, Outcome::Refused((*field).to_owned()), "{json}");
    }
}

// ---- drift ------------------------------------------------------------------------------

/// One rule of each check drifted: (text, replacement), each found once in
/// the latest migration that defines it.
const DRIFTS: [(&str, &str); 3] = [
    // a month read in UTC, not in the zone
    (
        "period_start.at at time zone tenancy.iana_zone(period_start.tz))::date\n  end",
        "period_start.at at time zone 'UTC')::date\n  end",
    ),
    // the later of a midnight that happens twice
    (
        "(v_best is null or v_candidate < v_best)",
        "(v_best is null or v_candidate > v_best)",
    ),
    // zero tokens counted
    ("if v_tokens > 0 then", "if v_tokens >= 0 then"),
];

#[tokio::test]
async fn every_agreement_check_sees_drifted_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("drift_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    db.batch_execute(&pg::bootstrap_sql()).await.unwrap();
    let mut files = pg::migrations();
    for (from, to) in DRIFTS {
        // The latest definition wins: drift the last file that says it.
        let (file, sql) = files
            .iter_mut()
            .rev()
            .find(|(_, sql)| sql.contains(from))
            .unwrap_or_else(|| panic!("no migration says {from:?}"));
        assert_eq!(sql.matches(from).count(), 1, "{file} says {from:?} once");
        *sql = sql.replace(from, to);
    }
    for (file, sql) in files {
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }

    let (mut cases, _) = around_changes(&["America/Havana", "Asia/Tokyo"]);
    let random = random_instants(1_000);
    cases.instants.extend(random.instants);
    cases.keys.extend(random.keys);
    let problems = period_disagreements(&db, &cases).await;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(" monthly period of ") && !p.starts_with("UTC ")),
        "months read in UTC: {problems:#?}"
    );
    // Havana turns clocks back from 01:00 to 00:00 in November.
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("America/Havana daily:2022-11-06: (starts_at, resets_at)")),
        "the later midnight: {problems:#?}"
    );

    let cases = event_cases(200);
    let (problems, _) = amount_disagreements(&db, &cases).await;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(r#"SQL Counts({"#) && p.contains(r#""tokens": 0"#)),
        "zero tokens: {problems:#?}"
    );
}
