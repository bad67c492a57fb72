//! The steps of a run ([`Op`]) and what each did ([`Outcome`]).

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::ErrorKind;
use crate::store::CommitOutcome;
#[cfg(doc)]
use crate::tenancy::Tenancy;

/// One step of a run.
///
/// Users and holds are named by index and taken modulo how many there are,
/// so every value is a valid operation: `hold` is the `hold`-th reservation
/// granted in the run (counting from 0). An operation on a hold before any
/// was granted, or on an abandoned one, is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// User `user` reserves `estimate` of the metric.
    Reserve {
        /// The user.
        user: usize,
        /// The estimate (any `Decimal`: invalid ones must be refused).
        estimate: Decimal,
    },
    /// Commits a hold.
    Commit {
        /// The hold.
        hold: usize,
        /// The amount, from its estimate or not.
        actual: Actual,
    },
    /// Releases a hold.
    Release {
        /// The hold.
        hold: usize,
    },
    /// Lets a hold expire: nobody commits or releases it from now on.
    Abandon {
        /// The hold.
        hold: usize,
    },
    /// Moves the clock forward.
    Advance {
        /// By this many seconds.
        seconds: u32,
    },
    /// Moves the clock to `offset` seconds from `mark` (before it when
    /// negative), if that is later than now; otherwise does nothing.
    Jump {
        /// The instant jumped to.
        mark: Mark,
        /// Seconds after it.
        offset: i32,
    },
    /// User `user` asks [`Tenancy::check_limit`] about `amount`.
    Check {
        /// The user.
        user: usize,
        /// The amount asked about (any `Decimal`).
        amount: Decimal,
    },
}

/// What a commit records, given its hold's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actual {
    /// `estimate × n / 255`, cut to six decimal places: at most the
    /// estimate.
    Share(u8),
    /// The estimate.
    Estimate,
    /// The estimate plus this (refused past [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT)).
    Above(Decimal),
    /// This amount, whatever the estimate (refused when negative or past
    /// [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT)).
    Amount(Decimal),
}

/// An instant an [`Op::Jump`] is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The next local midnight: when the day's usage resets.
    NextMidnight,
    /// The start of the next local month.
    NextMonth,
    /// When a hold expires (now, before any was granted).
    Expiry(usize),
}

/// What an operation did, as the model predicted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The reservation was granted as hold number `hold`.
    Granted {
        /// Its index, for later operations.
        hold: usize,
        /// When it expires.
        expires_at: DateTime<Utc>,
    },
    /// The reservation was denied.
    Denied,
    /// The commit landed (or was a repeat).
    Committed(CommitOutcome),
    /// The release happened; whether the hold was live.
    Released(bool),
    /// The call was refused with this (expected) error kind.
    Refused(ErrorKind),
    /// The check answered; whether it allowed the amount.
    Checked(bool),
    /// The hold was abandoned.
    Abandoned,
    /// The clock moved to this instant.
    Moved(DateTime<Utc>),
    /// Nothing happened (no such hold, an abandoned one, or a jump into
    /// the past).
    Skipped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Granted { hold, expires_at } => {
                write!(f, "granted #{hold}, expires {}", expires_at.to_rfc3339())
            }
            Outcome::Denied => f.write_str("denied"),
            Outcome::Committed(c) => write!(
                f,
                "committed (recorded {}, released_hold {})",
                c.recorded, c.released_hold
            ),
            Outcome::Released(live) => write!(f, "released (live {live})"),
            Outcome::Refused(kind) => write!(f, "refused: {kind:?}"),
            Outcome::Checked(allowed) => write!(f, "checked (allowed {allowed})"),
            Outcome::Abandoned => f.write_str("abandoned"),
            Outcome::Moved(to) => write!(f, "clock at {}", to.to_rfc3339()),
            Outcome::Skipped => f.write_str("skipped"),
        }
    }
}
