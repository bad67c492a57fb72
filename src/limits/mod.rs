//! Usage limits: periods, policies, decisions, reservations and alerts.
//!
//! Everything here is pure logic; the atomic parts (check-and-reserve,
//! counters) are [`Store`](crate::Store) primitives, and
//! [`Tenancy`](crate::Tenancy) ties the two together.

mod alerts;
mod decision;
mod period;
mod policy;
mod reservation;

pub use alerts::{AlertKey, AlertSink, AlertThresholds, LimitAlert, LogAlertSink, MemoryAlertSink};
pub use decision::{DecidingLimit, LimitDecision, LimitLevel, LimitUsage};
pub use period::{CurrentPeriods, Period, PeriodKey};
pub use policy::{Limit, LimitMode, LimitScope, LimitType, MAX_AMOUNT, NewLimit};
pub use reservation::{Reservation, ReserveOutcome, UsageLine};

pub(crate) use decision::{decide, level_of};
pub(crate) use policy::validate_amount;
