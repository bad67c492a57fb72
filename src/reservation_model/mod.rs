//! The reservation model (feature `test-util`): one reference model of
//! reserve, commit, release and expiry, and a [`Runner`] that drives a
//! [`Tenancy`] on any store one [`Op`] at a time and checks the store
//! against the model after every step.
//!
//! The seeded model test (many interleaved tasks, on `MemoryStore` and on
//! PostgreSQL) and the `reservations` fuzz target both feed it operations;
//! neither keeps a model of its own.
//!
//! **Unstable:** like [`store::contract`](crate::store::contract), this is
//! test support for this crate's own version; its types may change in any
//! release.
//!
//! # The organization
//!
//! [`Runner::start`] builds its own [`Tenancy`] on the given store and
//! [`FakeClock`] and creates a fresh organization in the [`Setup`]'s IANA
//! zone, with [`Setup::users`] members (user 0 is the owner) and hard
//! limits on one metric: by default org-wide daily and monthly and one
//! daily limit for user 1 ([`LimitSpec`]).
//!
//! # What is checked
//!
//! Each operation's result, as the model predicts it:
//!
//! - a reservation is granted exactly when the estimate fits under every
//!   hard limit that applies to its user (used + held + estimate ≤ the
//!   limit, in the current periods); a grant holds in the periods it was
//!   taken in, for the builder's TTL; a decision's deciding limit, its
//!   figures, headroom and reset time are the model's;
//! - a commit of a held reservation records it (`released_hold` says
//!   whether the hold was still live); a repeated commit changes nothing;
//!   a commit of a released hold, or at or after `expires_at` +
//!   [`EXPIRED_HOLD_RETENTION`](crate::EXPIRED_HOLD_RETENTION), is
//!   `NotFound` and records nothing;
//! - a release says whether the hold was live;
//! - a negative amount or one past
//!   [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT) is `InvalidInput` naming
//!   `estimate`, `actual` or `amount`, and changes nothing; no other error
//!   is expected.
//!
//! And after every step, the store itself, read directly:
//!
//! - for every limit, in the current and the previous period, the periods
//!   of every hold live during the step and of the hold the step touched:
//!   the usage is the sum of the commits whose holds were taken in that
//!   period, wherever the commit fell (the boundary rule on
//!   [`Tenancy::reserve`]); held is the sum of the live holds taken in it;
//!   and used + held ≤ the limit, plus what commits above their estimates
//!   (the excess) or after their holds expired (all of it) added to that
//!   period: the plain guarantee when there were none;
//! - the snapshot lists exactly the limits that apply;
//! - every org-wide daily and monthly counter of the metric is the
//!   model's, and each kind adds up to all the commits: nothing lost,
//!   nothing doubled; after a step that recorded usage, and at the end,
//!   every user's counters too.
//!
//! Amounts with at most six decimal places (and totals far from
//! `Decimal`'s range) keep the model exact: every figure must be equal.
//! Finer amounts make `Decimal` round sums; the model then allows a
//! relative 10⁻²⁰ and no longer predicts decisions at the edge.
//!
//! A failure is a [`Failure`]: what differed, at which step, the last
//! steps with their outcomes, and the operations so far, which replay it
//! on a fresh store.
//!
//! ```
//! use std::sync::Arc;
//!
//! use rust_decimal::Decimal;
//! use tenancy::reservation_model::{Actual, Failure, Op, Setup, run};
//! use tenancy::MemoryStore;
//! use tenancy::clock::FakeClock;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Failure> {
//! // Four users; tokens limited org-wide and to 500 a day for user 1.
//! let setup = Setup::default();
//! let ops = [
//!     Op::Reserve { user: 1, estimate: Decimal::from(400) },
//!     Op::Reserve { user: 1, estimate: Decimal::from(200) },
//!     Op::Commit { hold: 0, actual: Actual::Estimate },
//! ];
//! let clock = FakeClock::new(setup.start);
//! let coverage = run(Arc::new(MemoryStore::new()), clock, setup, ops).await?;
//! assert_eq!((coverage.grants, coverage.denials, coverage.commits), (1, 1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! The parts: [`Setup`] and [`LimitSpec`] describe the organization, [`Op`]
//! a step and [`Outcome`] what it did; [`Runner`] applies steps and checks
//! the store (`runner.rs` the operations, `checks.rs` the decisions and the
//! invariant); the model itself is plain data (`model.rs`); a run ends with
//! its [`Coverage`] or a [`Failure`].

mod checks;
mod model;
mod ops;
mod report;
mod runner;
mod setup;
mod world;

use std::sync::Arc;

use chrono::TimeDelta;

use crate::clock::FakeClock;
use crate::error::Error;
use crate::ids::{OrgId, UserId};
use crate::limits::Limit;
use crate::model::TenantContext;
use crate::store::DynStore;
use crate::tenancy::Tenancy;

pub use ops::{Actual, Mark, Op, Outcome};
pub use report::{Coverage, Failure};
pub use setup::{LimitSpec, Setup};

use model::Model;

/// Starts a run on `store`, applies `ops` in order and finishes it; its
/// coverage, or the first failure.
pub async fn run(
    store: Arc<DynStore>,
    clock: FakeClock,
    setup: Setup,
    ops: impl IntoIterator<Item = Op>,
) -> Result<Coverage, Failure> {
    let mut runner = Runner::start(store, clock, setup).await?;
    for op in ops {
        runner.apply(op).await?;
    }
    runner.finish().await
}

/// A run in progress: the tenancy, its organization, and the model.
#[derive(Debug)]
pub struct Runner {
    store: Arc<DynStore>,
    clock: FakeClock,
    tenancy: Tenancy,
    setup: Setup,
    ttl: TimeDelta,
    org: OrgId,
    users: Vec<TenantContext>,
    limits: Vec<Limit>,
    /// Whose snapshots the checks read: each user with limits of their
    /// own, or only the org-wide ones.
    readers: Vec<Option<UserId>>,
    model: Model,
    coverage: Coverage,
    ops: Vec<Op>,
    trace: Vec<String>,
}

/// What a step left for the checks after it.
#[derive(Debug, Default)]
struct Step {
    /// The hold the operation acted on.
    touched: Option<usize>,
    /// Whether usage was recorded.
    recorded: bool,
}

type Checked<T = ()> = Result<T, String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Checked {
    if ok { Ok(()) } else { Err(what()) }
}

fn failed(call: &str, e: &Error) -> String {
    format!("{call} failed ({:?}): {e}", e.kind())
}

#[cfg(test)]
mod tests;
