//! Usage limits: periods, policies, decisions, reservations, summaries and
//! alert thresholds.
//!
//! Everything here is pure logic and plain data; the atomic parts
//! (check-and-reserve, counters) are [`Store`](crate::store::Store) primitives, and
//! [`Tenancy`](crate::Tenancy) ties the two together.

mod alerts;
mod decision;
pub mod entitlements;
pub mod lease;
mod period;
mod policy;
pub mod rate;
mod reservation;
mod summary;

pub use alerts::{AlertKey, AlertThresholds, LimitAlert};
pub use decision::{DecidingLimit, LimitDecision, LimitLevel, LimitUsage, MAX_PERCENT};
pub(crate) use period::local_start_of_day;
pub use period::{CurrentPeriods, Period, PeriodKey};
pub use policy::{
    LIMIT_TYPE_ALIASES, Limit, LimitMode, LimitScope, LimitType, MAX_AMOUNT, MIN_NONZERO_LIMIT,
    NewLimit,
};
pub use reservation::{Reservation, ReserveOutcome};
pub use summary::{CounterUsage, UsageLine, UsageSnapshot};

pub(crate) use decision::decide;
pub(crate) use policy::validate_amount;
pub(crate) use summary::usage_lines;
