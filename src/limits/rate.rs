//! Short-window rate limits: what they are, and GCRA, pure.
//!
//! A rate limit caps how fast a metric may be consumed: `value` per
//! [`RateWindow`] (a second, a minute or an hour), org-wide or for one
//! user, hard (deny) or soft (report only). `requests` is a metric like any
//! other ([`REQUESTS`]): every [`Tenancy::reserve`](crate::Tenancy::reserve)
//! charges it 1, whatever else it reserves, so `minute_requests` is an RPM
//! limit, `minute_tokens` a TPM limit and `hour_cost` a cost-per-hour one.
//!
//! # The algorithm: GCRA
//!
//! Each limit keeps one number, its *theoretical arrival time* (TAT, in
//! microseconds since the Unix epoch): the instant at which everything
//! admitted so far would have drained at the limit's steady rate. With `W`
//! the window and `L` the value:
//!
//! - an amount `a` costs `increment = ceil(a · W / L)` µs (the emission
//!   interval `T = W / L` per unit; a zero amount costs nothing);
//! - the *burst tolerance* is `tolerance = floor(B · W / L)` µs, for the
//!   limit's burst `B` (its value unless set otherwise);
//! - at `now`, with `tat = max(TAT, now)` (a missing or past TAT is `now`),
//!   the amount **conforms** iff `tat + increment − now ≤ tolerance`; then
//!   the new TAT is `tat + increment`. Otherwise it would conform at
//!   `tat + increment − tolerance` (`retry_after` is the time until then),
//!   or never when `increment > tolerance` (more than the burst at once).
//!
//! Spans are capped at [`MAX_SPAN_MICROS`]: an increment beyond it never
//! conforms, a tolerance beyond it is cut to it. Both roundings are in the
//! limit's favour (increments up, tolerance down), so the guarantee below
//! holds exactly, not approximately:
//!
//! **In any interval of length `D` (µs) of the `now` values decisions are
//! made at, the amounts a hard limit admits add up to at most
//! `B + D · L / W`.** At one instant that is the burst `B`; in any window of
//! length `W`, at most `L + B`; over a long run the rate is `L` per `W`.
//! There is no edge where two windows' worth pass at once, as with fixed
//! windows: the bucket drains continuously. (Proof: every admission raises
//! the TAT by its increment from at least the `now` it was decided at, and
//! leaves it at most `tolerance` past that `now`.)
//!
//! Across instances, the state lives in the store and each decision is one
//! atomic store step, so the bound holds for all instances together, in the
//! `now` values they pass. Instances whose clocks are off true time by at
//! most `δ` therefore admit at most `B + (D + 2δ) · L / W` in any real
//! interval of length `D`.
//!
//! A decision over several limits (org-wide and the user's, requests and
//! tokens) is all or nothing: if any hard limit does not conform, no limit
//! is charged. Soft limits never deny; they are charged with the rest (and
//! may run past their tolerance, which is how a page shows them over).
//!
//! The store runs this step itself, in one round trip
//! ([`RateLimitStore::acquire_rate`](crate::store::RateLimitStore::acquire_rate));
//! the functions here are the reference every backend is tested against.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};
use crate::ids::{LimitId, MetricKey, OrgId, UserId};
use crate::limits::policy::{
    LIMIT_TYPE_ALIASES, LimitMode, LimitScope, validate_amount, validate_limit_value,
};

/// The metric every [`Tenancy::reserve`](crate::Tenancy::reserve) charges
/// 1 of: what a `<window>_requests` limit counts.
pub const REQUESTS: MetricKey = MetricKey::from_static("requests");

/// The longest span GCRA works with: 10^15 µs, about 31.7 years. An
/// increment beyond it never conforms; a tolerance beyond it is cut to it.
pub const MAX_SPAN_MICROS: i64 = 1_000_000_000_000_000;

/// How long a rate limit's window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateWindow {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl RateWindow {
    /// `"second"`, `"minute"` or `"hour"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateWindow::Second => "second",
            RateWindow::Minute => "minute",
            RateWindow::Hour => "hour",
        }
    }

    /// Parses `"second"`, `"minute"` or `"hour"`; else `InvalidInput`
    /// naming `window`.
    pub fn parse(input: &str) -> Result<RateWindow> {
        match input {
            "second" => Ok(RateWindow::Second),
            "minute" => Ok(RateWindow::Minute),
            "hour" => Ok(RateWindow::Hour),
            _ => Err(Error::invalid_input(
                "window",
                format_args!(
                    "{} is not a rate window; use second, minute or hour",
                    quoted(input)
                ),
            )),
        }
    }

    /// Its length in microseconds.
    pub fn micros(self) -> i64 {
        match self {
            RateWindow::Second => 1_000_000,
            RateWindow::Minute => 60_000_000,
            RateWindow::Hour => 3_600_000_000,
        }
    }

    /// Its length.
    pub fn duration(self) -> TimeDelta {
        TimeDelta::microseconds(self.micros())
    }
}

impl fmt::Display for RateWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric and a window: what a rate limit's `limit_type` string names,
/// `<second|minute|hour>_<metric>`, with the same short metric names as
/// the budget limits ([`LIMIT_TYPE_ALIASES`]).
///
/// ```
/// use tenancy::limits::rate::{RateLimitType, RateWindow};
/// let rpm = RateLimitType::parse("minute_requests")?;
/// assert_eq!((rpm.metric.as_str(), rpm.window), ("requests", RateWindow::Minute));
/// assert_eq!(RateLimitType::parse("hour_cost")?.to_string(), "hour_cost_usd");
/// assert!(RateLimitType::parse("daily_tokens").is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitType {
    /// The metric limited.
    pub metric: MetricKey,
    /// The window its value is per.
    pub window: RateWindow,
}

impl RateLimitType {
    /// Parses a rate `limit_type`; an unknown window or invalid metric is
    /// `InvalidInput` naming `limit_type`.
    pub fn parse(input: &str) -> Result<RateLimitType> {
        let bad = |why: &dyn fmt::Display| {
            Error::invalid_input("limit_type", format_args!("{}: {why}", quoted(input)))
        };
        let (window, metric) = input
            .split_once('_')
            .ok_or_else(|| bad(&"is not <second|minute|hour>_<metric>"))?;
        let window = RateWindow::parse(window)
            .map_err(|_| bad(&"must start with second_, minute_ or hour_"))?;
        let metric = match LIMIT_TYPE_ALIASES.into_iter().find(|(s, _)| *s == metric) {
            Some((_, metric)) => metric,
            None => MetricKey::parse(metric).map_err(|e| bad(&e.message()))?,
        };
        Ok(RateLimitType { metric, window })
    }
}

impl fmt::Display for RateLimitType {
    /// The canonical `<window>_<metric>` form (`minute_tokens`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.window, self.metric)
    }
}

/// A rate limit: at most `value` of `metric` per `window` (with bursts up
/// to `burst` at once), for an organization or one of its users. At most
/// one exists per (org, scope, metric, window); setting another replaces
/// it, keeping its id, creation time and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Its id.
    pub id: LimitId,
    /// The organization.
    pub org: OrgId,
    /// Org-wide (all its users together) or one user.
    pub scope: LimitScope,
    /// The metric limited ([`REQUESTS`] for request rates).
    pub metric: MetricKey,
    /// The window `value` is per.
    pub window: RateWindow,
    /// The steady rate: this much per window. Zero admits nothing above
    /// zero.
    pub value: Decimal,
    /// The most admitted at one instant; above zero.
    pub burst: Decimal,
    /// Hard (deny) or soft (report only).
    pub mode: LimitMode,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When it lapses and the organization's plan (or no rate limit,
    /// without one) applies again; `None`: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl RateLimit {
    /// Its `limit_type` (`minute_requests`).
    pub fn limit_type(&self) -> RateLimitType {
        RateLimitType {
            metric: self.metric.clone(),
            window: self.window,
        }
    }

    /// Whether it applies to `user`'s requests: org-wide, or theirs.
    pub fn applies_to(&self, user: UserId) -> bool {
        self.scope.applies_to(user)
    }

    /// The GCRA cost of `amount`, in µs; `None` when it can never conform
    /// (a zero limit, or beyond [`MAX_SPAN_MICROS`]).
    pub fn increment_micros(&self, amount: Decimal) -> Option<i64> {
        if amount <= Decimal::ZERO {
            return Some(0);
        }
        if self.value.is_zero() {
            return None;
        }
        let micros = amount.checked_mul(Decimal::from(self.window.micros()))?;
        let (quotient, exact) = div_rem(micros, self.value)?;
        let ceil = if exact { quotient } else { quotient + 1 };
        (ceil <= MAX_SPAN_MICROS).then_some(ceil)
    }

    /// The burst tolerance, in µs: `floor(burst · W / value)`, at most
    /// [`MAX_SPAN_MICROS`]; zero for a zero limit.
    pub fn tolerance_micros(&self) -> i64 {
        if self.value.is_zero() {
            return 0;
        }
        let Some(micros) = self.burst.checked_mul(Decimal::from(self.window.micros())) else {
            return MAX_SPAN_MICROS;
        };
        match div_rem(micros, self.value) {
            Some((quotient, _)) => quotient.min(MAX_SPAN_MICROS),
            None => MAX_SPAN_MICROS,
        }
    }
}

/// `(floor(x / y), whether y divides x)` for positive `x` and `y`, exactly;
/// `None` when the quotient is beyond [`MAX_SPAN_MICROS`].
fn div_rem(x: Decimal, y: Decimal) -> Option<(i64, bool)> {
    let rem = x.checked_rem(y)?;
    let whole = x.checked_sub(rem)?.checked_div(y)?.round();
    let quotient = i64::try_from(whole).ok()?;
    (quotient <= MAX_SPAN_MICROS).then_some((quotient, rem.is_zero()))
}

/// The answer of one GCRA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conformance {
    /// It conforms; the limit's TAT becomes `tat`.
    Conforms {
        /// The new TAT, µs since the Unix epoch.
        tat: i64,
    },
    /// It does not conform now; it would at `at` (µs since the epoch),
    /// later than `now`.
    Wait {
        /// When it would conform.
        at: i64,
    },
    /// It never conforms: more than the burst at once, or a zero limit.
    Never,
}

/// One GCRA step at `now` for a cost of `increment` (`None`: never) with
/// `tolerance`, from the stored TAT (`None`: no state). All in µs.
///
/// ```
/// use tenancy::limits::rate::{Conformance, gcra};
/// // 2 per second, burst 2: T = 500 ms, tolerance 1 s.
/// let (t, tol) = (500_000, 1_000_000);
/// assert_eq!(gcra(None, 0, Some(t), tol), Conformance::Conforms { tat: 500_000 });
/// assert_eq!(gcra(Some(500_000), 0, Some(t), tol), Conformance::Conforms { tat: 1_000_000 });
/// assert_eq!(gcra(Some(1_000_000), 0, Some(t), tol), Conformance::Wait { at: 500_000 });
/// assert_eq!(gcra(None, 0, Some(1_500_000), tol), Conformance::Never);
/// ```
pub fn gcra(tat: Option<i64>, now: i64, increment: Option<i64>, tolerance: i64) -> Conformance {
    let Some(increment) = increment else {
        return Conformance::Never;
    };
    if increment > tolerance {
        return Conformance::Never;
    }
    let start = tat.map_or(now, |tat| tat.max(now));
    let next = start.saturating_add(increment);
    if next.saturating_sub(now) <= tolerance {
        Conformance::Conforms { tat: next }
    } else {
        Conformance::Wait {
            at: next - tolerance,
        }
    }
}

/// What a refund leaves: `max(tat − increment, now)`, or `None` when
/// nothing is left to refund (no state, or an increment that never
/// conforms).
pub fn refunded(tat: Option<i64>, now: i64, increment: Option<i64>) -> Option<i64> {
    let (tat, increment) = (tat?, increment?);
    Some(tat.saturating_sub(increment).max(now))
}

/// µs since the Unix epoch of `at`, as the store keeps TATs.
pub fn micros_of(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The instant `micros` µs after the Unix epoch (clamped to chrono's range).
pub fn instant_of(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A rate limit to set. Built from a metric and window or a `limit_type`.
///
/// ```
/// use rust_decimal_macros::dec;
/// use tenancy::limits::rate::{NewRateLimit, RateWindow, REQUESTS};
/// let rpm = NewRateLimit::new(REQUESTS, RateWindow::Minute, dec!(600))?;
/// let tpm = NewRateLimit::from_limit_type("minute_tokens", dec!(100000))?.burst(dec!(20000))?;
/// assert!(NewRateLimit::from_limit_type("second_requests", dec!(5))?.burst(dec!(0)).is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRateLimit {
    pub(crate) scope: LimitScope,
    pub(crate) metric: MetricKey,
    pub(crate) window: RateWindow,
    pub(crate) value: Decimal,
    pub(crate) burst: Option<Decimal>,
    pub(crate) mode: LimitMode,
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

impl NewRateLimit {
    /// A hard, org-wide limit of `value` of `metric` per `window`, with a
    /// burst of `value`. A negative value, one above
    /// [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT), or one above zero but
    /// below [`MIN_NONZERO_LIMIT`](crate::limits::MIN_NONZERO_LIMIT) is
    /// `InvalidInput` naming `limit_value`.
    pub fn new(metric: MetricKey, window: RateWindow, value: Decimal) -> Result<Self> {
        Ok(NewRateLimit {
            scope: LimitScope::Organization,
            metric,
            window,
            value: validate_limit_value(value)?,
            burst: None,
            mode: LimitMode::Hard,
            expires_at: None,
        })
    }

    /// From a rate `limit_type` string (`minute_requests`) and a value.
    pub fn from_limit_type(limit_type: &str, value: Decimal) -> Result<Self> {
        let RateLimitType { metric, window } = RateLimitType::parse(limit_type)?;
        NewRateLimit::new(metric, window, value)
    }

    /// The most admitted at one instant (default: the value). Zero or less,
    /// or above [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT), is
    /// `InvalidInput` naming `burst`.
    pub fn burst(mut self, burst: Decimal) -> Result<Self> {
        let burst = validate_amount("burst", burst)?;
        if burst.is_zero() {
            return Err(Error::invalid_input("burst", "must be above zero"));
        }
        self.burst = Some(burst);
        Ok(self)
    }

    /// Applies the limit to one user instead of the whole organization.
    pub fn for_user(mut self, user: UserId) -> Self {
        self.scope = LimitScope::User(user);
        self
    }

    /// Makes it soft: never denies, only reports.
    pub fn soft(mut self) -> Self {
        self.mode = LimitMode::Soft;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: LimitMode) -> Self {
        self.mode = mode;
        self
    }

    /// Makes it an override that lapses at `at`: from then on it counts as
    /// absent and the organization's plan (or no rate limit) applies
    /// again.
    pub fn until(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The limit, with its id, organization and creation time. A zero limit
    /// gets a burst of one millionth (it admits nothing above zero anyway).
    pub(crate) fn into_limit(self, id: LimitId, org: OrgId, now: DateTime<Utc>) -> RateLimit {
        let burst = self.burst.unwrap_or(if self.value.is_zero() {
            MIN_BURST
        } else {
            self.value
        });
        RateLimit {
            id,
            org,
            scope: self.scope,
            metric: self.metric,
            window: self.window,
            value: self.value,
            burst,
            mode: self.mode,
            created_at: now,
            expires_at: self.expires_at,
        }
    }
}

/// The burst a zero limit gets: 0.000001.
const MIN_BURST: Decimal = Decimal::from_parts(1, 0, 0, false, 6);

/// What to do with a [`RateRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateAction {
    /// Decide without changing anything (a peek).
    Check,
    /// Decide, and charge every applicable limit if every hard one
    /// conforms (all or nothing).
    Acquire,
    /// Give back what an `Acquire` of the same charges took: each
    /// applicable limit's TAT becomes `max(TAT − increment, now)`. Always
    /// granted.
    Refund,
}

/// One atomic rate decision for one user's request: charge `amount` of
/// each metric to every rate limit of `org` that applies to `user`
/// (org-wide or theirs) on that metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateRequest {
    /// The organization.
    pub org: OrgId,
    /// Whose request it is.
    pub user: UserId,
    /// The amount per metric (a metric named twice counts the sum).
    pub charges: Vec<(MetricKey, Decimal)>,
    /// The instant of the decision.
    pub now: DateTime<Utc>,
    /// Peek, acquire or refund.
    pub action: RateAction,
}

impl RateRequest {
    /// The amount charged to `metric` (zero if it is not charged).
    pub fn amount_of(&self, metric: &MetricKey) -> Decimal {
        self.charges
            .iter()
            .filter(|(m, _)| m == metric)
            .fold(Decimal::ZERO, |sum, (_, a)| sum.saturating_add(*a))
    }

    /// Whether `limit` applies to this request.
    pub fn applies(&self, limit: &RateLimit) -> bool {
        limit.org == self.org
            && limit.applies_to(self.user)
            && self.charges.iter().any(|(m, _)| m == &limit.metric)
    }
}

/// A rate limit with its state: the TAT the store holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateState {
    /// The limit.
    pub limit: RateLimit,
    /// Its TAT (µs since the Unix epoch), `None` without state.
    pub tat: Option<i64>,
}

impl RateState {
    /// The usage the state stands for at `now`: what is still draining,
    /// `(TAT − now) · value / W`, rounded to 6 places; zero once drained.
    pub fn used_at(&self, now: DateTime<Utc>) -> Decimal {
        let busy = self.busy_micros(now);
        if busy == 0 {
            return Decimal::ZERO;
        }
        (Decimal::from(busy).saturating_mul(self.limit.value)
            / Decimal::from(self.limit.window.micros()))
        .round_dp(6)
    }

    /// What more may be admitted at once at `now`: `burst − used`, at
    /// least zero.
    pub fn remaining_at(&self, now: DateTime<Utc>) -> Decimal {
        (self.limit.burst - self.used_at(now)).max(Decimal::ZERO)
    }

    /// When everything admitted so far has drained (the TAT); `now` when
    /// it already has.
    /// A TAT past the calendar's end (soft limits are charged without
    /// bound) is the calendar's end.
    pub fn frees_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_add_signed(TimeDelta::microseconds(self.busy_micros(now)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn busy_micros(&self, now: DateTime<Utc>) -> i64 {
        self.tat
            .map_or(0, |tat| tat.saturating_sub(micros_of(now)).max(0))
    }

    /// The GCRA step for `amount` at `now` against this state.
    pub fn step(&self, amount: Decimal, now: DateTime<Utc>) -> Conformance {
        gcra(
            self.tat,
            micros_of(now),
            self.limit.increment_micros(amount),
            self.limit.tolerance_micros(),
        )
    }
}

/// The store's answer to a [`RateRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateResult {
    /// Whether every applicable hard limit conformed (always true for a
    /// refund). For an `Acquire`, whether the charges were made.
    pub granted: bool,
    /// Every applicable limit with its state *before* the request,
    /// ordered by id.
    pub limits: Vec<RateState>,
}

/// Applies `request` to the applicable limits' states (`limits`, each with
/// its TAT), as every store must: returns whether it is granted and the
/// TAT each limit gets (`None`: unchanged). The reference the store
/// contract checks backends against.
pub fn apply(request: &RateRequest, limits: &[RateState]) -> (bool, Vec<Option<i64>>) {
    let now = micros_of(request.now);
    let steps: Vec<(Conformance, Option<i64>)> = limits
        .iter()
        .map(|s| {
            let inc = s.limit.increment_micros(request.amount_of(&s.limit.metric));
            (gcra(s.tat, now, inc, s.limit.tolerance_micros()), inc)
        })
        .collect();
    match request.action {
        RateAction::Refund => {
            let tats = limits
                .iter()
                .zip(&steps)
                .map(|(s, (_, inc))| refunded(s.tat, now, *inc))
                .collect();
            (true, tats)
        }
        RateAction::Check | RateAction::Acquire => {
            let granted = limits.iter().zip(&steps).all(|(s, (c, _))| {
                s.limit.mode == LimitMode::Soft || matches!(c, Conformance::Conforms { .. })
            });
            if !granted || request.action == RateAction::Check {
                return (granted, vec![None; limits.len()]);
            }
            let tats = limits
                .iter()
                .zip(&steps)
                .map(|(s, (c, inc))| match c {
                    Conformance::Conforms { tat } => Some(*tat),
                    // A soft limit past its tolerance is charged anyway.
                    _ => inc.map(|inc| s.tat.unwrap_or(now).max(now).saturating_add(inc)),
                })
                .collect();
            (true, tats)
        }
    }
}

/// Why a request was refused by a rate limit: the value a denial carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateDenial {
    /// The hard limit that refused (the one that frees last, when several
    /// do).
    pub limit: RateLimit,
    /// The amount of its metric that was asked for.
    pub requested: Decimal,
    /// Its usage at the decision (see [`RateState::used_at`]).
    pub used: Decimal,
    /// What it would admit at once then.
    pub remaining: Decimal,
    /// When the same request would be admitted, if nothing else is;
    /// `None` when it never would (more than the burst at once).
    pub retry_at: Option<DateTime<Utc>>,
}

impl RateDenial {
    /// The time from `now` until [`retry_at`](Self::retry_at).
    pub fn retry_after(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.retry_at.map(|at| (at - now).max(TimeDelta::zero()))
    }
}

/// The decision a request's rate limits make, explained from the store's
/// states (before the request) and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateDecision {
    /// Whether every applicable hard limit admitted it.
    pub allowed: bool,
    /// The limits that applied, with their state before the request.
    pub limits: Vec<RateState>,
    /// Why it was refused: `Some` exactly when not allowed (and the store
    /// named a hard limit that applied).
    pub denial: Option<RateDenial>,
}

impl RateDecision {
    /// Explains the store's `result` for `request`.
    pub fn explain(request: &RateRequest, result: RateResult) -> RateDecision {
        let denial = if result.granted {
            None
        } else {
            // The store's answer is the truth: a refusal always carries a
            // denial, even if the states it returned would not explain it.
            denial_of(request, &result.limits).or_else(|| unexplained(request, &result.limits))
        };
        RateDecision {
            allowed: result.granted,
            limits: result.limits,
            denial,
        }
    }
}

/// A refusal the returned states do not explain: the first hard limit,
/// with no time to retry at.
fn unexplained(request: &RateRequest, limits: &[RateState]) -> Option<RateDenial> {
    let s = limits.iter().find(|s| s.limit.mode == LimitMode::Hard)?;
    Some(RateDenial {
        limit: s.limit.clone(),
        requested: request.amount_of(&s.limit.metric),
        used: s.used_at(request.now),
        remaining: s.remaining_at(request.now),
        retry_at: None,
    })
}

/// The denying hard limit that frees last (a never-conforming one first).
fn denial_of(request: &RateRequest, limits: &[RateState]) -> Option<RateDenial> {
    let now = request.now;
    limits
        .iter()
        .filter(|s| s.limit.mode == LimitMode::Hard)
        .filter_map(|s| {
            let amount = request.amount_of(&s.limit.metric);
            let retry_at = match s.step(amount, now) {
                Conformance::Conforms { .. } => return None,
                Conformance::Wait { at } => Some(instant_of(at)),
                Conformance::Never => None,
            };
            Some(RateDenial {
                limit: s.limit.clone(),
                requested: amount,
                used: s.used_at(now),
                remaining: s.remaining_at(now),
                retry_at,
            })
        })
        .max_by_key(|d| d.retry_at.map_or(DateTime::<Utc>::MAX_UTC, |at| at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn limit(value: Decimal, burst: Decimal, window: RateWindow) -> RateLimit {
        RateLimit {
            id: LimitId::new_v7(),
            org: OrgId::new_v7(),
            scope: LimitScope::Organization,
            metric: REQUESTS,
            window,
            value,
            burst,
            mode: LimitMode::Hard,
            created_at: DateTime::UNIX_EPOCH,
            expires_at: None,
        }
    }

    #[test]
    fn limit_types_parse_and_print() {
        let t = RateLimitType::parse("second_tokens").unwrap();
        assert_eq!(
            (t.metric, t.window),
            (MetricKey::TOKENS, RateWindow::Second)
        );
        assert_eq!(
            RateLimitType::parse("hour_cost").unwrap().metric,
            MetricKey::COST_USD
        );
        for bad in [
            "requests",
            "daily_tokens",
            "minute_",
            "minute_Tokens",
            "week_x",
        ] {
            let err = RateLimitType::parse(bad).unwrap_err();
            assert_eq!(err.field(), Some("limit_type"), "{bad}");
        }
    }

    #[test]
    fn increments_round_up_and_tolerances_down() {
        let l = limit(dec!(7), dec!(7), RateWindow::Second);
        // 1/7 s = 142857.142… µs
        assert_eq!(l.increment_micros(dec!(1)), Some(142_858));
        assert_eq!(l.tolerance_micros(), 1_000_000);
        assert_eq!(l.increment_micros(dec!(7)), Some(1_000_000));
        assert_eq!(l.increment_micros(dec!(0)), Some(0));
        let zero = limit(dec!(0), MIN_BURST, RateWindow::Hour);
        assert_eq!(zero.increment_micros(dec!(1)), None);
        assert_eq!(zero.increment_micros(dec!(0)), Some(0));
        let tiny = limit(dec!(0.000001), dec!(1000000000000000000), RateWindow::Hour);
        assert_eq!(tiny.increment_micros(dec!(1000000000000000000)), None);
        assert_eq!(tiny.tolerance_micros(), MAX_SPAN_MICROS);
    }

    /// At one instant exactly the burst is admitted; then one more per
    /// emission interval; never more than B + D·L/W in any interval.
    #[test]
    fn admits_the_burst_then_the_steady_rate() {
        let l = limit(dec!(10), dec!(10), RateWindow::Second);
        let state = |tat| RateState {
            limit: l.clone(),
            tat,
        };
        let mut tat = None;
        let mut admitted = 0;
        for _ in 0..25 {
            if let Conformance::Conforms { tat: t } = state(tat).step(dec!(1), instant_of(0)) {
                tat = Some(t);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10);
        assert_eq!(
            state(tat).step(dec!(1), instant_of(0)),
            Conformance::Wait { at: 100_000 }
        );
        // A brute-force check of the bound over a second of requests every 10 ms.
        let mut tat = None;
        let mut times = Vec::new();
        for t in (0..3_000_000).step_by(10_000) {
            for _ in 0..5 {
                if let Conformance::Conforms { tat: next } = state(tat).step(dec!(1), instant_of(t))
                {
                    tat = Some(next);
                    times.push(t);
                }
            }
        }
        for (i, start) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|t| **t < start + 1_000_000)
                .count();
            assert!(in_window <= 20, "{in_window} in a second from {start}");
        }
        assert_eq!(
            times.len(),
            10 + 29,
            "the burst, then one per 100 ms for 2.9 s"
        );
    }

    #[test]
    fn acquire_is_all_or_nothing_and_soft_limits_never_deny() {
        let org = OrgId::new_v7();
        let user = UserId::new_v7();
        let mut hard = limit(dec!(1), dec!(1), RateWindow::Minute);
        hard.org = org;
        let mut soft = limit(dec!(1), dec!(1), RateWindow::Second);
        soft.org = org;
        soft.mode = LimitMode::Soft;
        let request = |action| RateRequest {
            org,
            user,
            charges: vec![(REQUESTS, dec!(1))],
            now: instant_of(0),
            action,
        };
        let fresh = [
            RateState {
                limit: hard.clone(),
                tat: None,
            },
            RateState {
                limit: soft.clone(),
                tat: Some(5_000_000),
            },
        ];
        let (granted, tats) = apply(&request(RateAction::Acquire), &fresh);
        assert!(granted, "the soft limit is over, and does not deny");
        assert_eq!(tats, [Some(60_000_000), Some(6_000_000)]);
        let (granted, tats) = apply(&request(RateAction::Check), &fresh);
        assert!(granted);
        assert_eq!(tats, [None, None], "a check changes nothing");
        let busy = [
            RateState {
                limit: hard.clone(),
                tat: Some(60_000_000),
            },
            RateState {
                limit: soft.clone(),
                tat: None,
            },
        ];
        let (granted, tats) = apply(&request(RateAction::Acquire), &busy);
        assert!(!granted);
        assert_eq!(tats, [None, None], "nothing is charged on a denial");
        let decision = RateDecision::explain(
            &request(RateAction::Acquire),
            RateResult {
                granted,
                limits: busy.to_vec(),
            },
        );
        let denial = decision.denial.unwrap();
        assert_eq!(denial.limit.id, hard.id);
        assert_eq!(denial.retry_at, Some(instant_of(60_000_000)));
        assert_eq!(
            denial.retry_after(instant_of(0)),
            Some(TimeDelta::seconds(60))
        );
        let (_, tats) = apply(&request(RateAction::Refund), &busy);
        assert_eq!(tats, [Some(0), None]);
    }

    #[test]
    fn usage_and_freeing() {
        let l = limit(dec!(60), dec!(60), RateWindow::Minute);
        let s = RateState {
            limit: l,
            tat: Some(30_000_000),
        };
        assert_eq!(s.used_at(instant_of(0)), dec!(30));
        assert_eq!(s.remaining_at(instant_of(0)), dec!(30));
        assert_eq!(s.frees_at(instant_of(0)), instant_of(30_000_000));
        assert_eq!(s.used_at(instant_of(40_000_000)), dec!(0));
    }
}
