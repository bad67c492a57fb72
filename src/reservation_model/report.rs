//! What a run reports: its [`Coverage`], or a [`Failure`].

use std::fmt;

use super::ops::Op;
#[cfg(doc)]
use super::run;

/// Steps a [`Failure`] shows with their outcomes.
const TRACE_SHOWN: usize = 40;

/// A [`Failure`] lists every operation when the run had at most this many.
const OPS_SHOWN: usize = 120;

/// What a run went through, for coverage assertions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Coverage {
    /// Operations applied.
    pub steps: u32,
    /// Reservations granted.
    pub grants: u32,
    /// Reservations denied.
    pub denials: u32,
    /// Limit checks answered.
    pub checks: u32,
    /// Commits that recorded usage.
    pub commits: u32,
    /// Of those, commits after the hold expired.
    pub late_commits: u32,
    /// Of those, commits of live holds above their estimates.
    pub commits_above: u32,
    /// Of those, commits (at most the estimate) of live holds on a later
    /// local day than the hold was taken.
    pub commits_across_midnight: u32,
    /// Commits refused because the hold expired past the retention.
    pub purged_commits: u32,
    /// Commits of holds already committed: counted once.
    pub repeated_commits: u32,
    /// Commits of released holds: `NotFound`.
    pub commits_of_released: u32,
    /// Releases of live holds.
    pub releases: u32,
    /// Releases of holds no longer live.
    pub stale_releases: u32,
    /// Holds abandoned.
    pub abandoned: u32,
    /// Amounts refused as invalid.
    pub invalid_amounts: u32,
    /// Clock moves that crossed a local midnight.
    pub midnights: u32,
    /// Clock moves that crossed a local month start.
    pub month_ends: u32,
    /// Operations skipped.
    pub skipped: u32,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, other: Coverage) {
        let Coverage {
            steps,
            grants,
            denials,
            checks,
            commits,
            late_commits,
            commits_above,
            commits_across_midnight,
            purged_commits,
            repeated_commits,
            commits_of_released,
            releases,
            stale_releases,
            abandoned,
            invalid_amounts,
            midnights,
            month_ends,
            skipped,
        } = other;
        self.steps += steps;
        self.grants += grants;
        self.denials += denials;
        self.checks += checks;
        self.commits += commits;
        self.late_commits += late_commits;
        self.commits_above += commits_above;
        self.commits_across_midnight += commits_across_midnight;
        self.purged_commits += purged_commits;
        self.repeated_commits += repeated_commits;
        self.commits_of_released += commits_of_released;
        self.releases += releases;
        self.stale_releases += stale_releases;
        self.abandoned += abandoned;
        self.invalid_amounts += invalid_amounts;
        self.midnights += midnights;
        self.month_ends += month_ends;
        self.skipped += skipped;
    }
}

/// A run that went wrong: the store (or the facade) disagreed with the
/// model, or a call failed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub(super) step: usize,
    pub(super) message: String,
    /// The [`Setup`](super::Setup), described.
    pub(super) setup: String,
    /// Each step with its outcome.
    pub(super) trace: Vec<String>,
    pub(super) ops: Vec<Op>,
}

impl Failure {
    /// The step it happened at (1 for the first operation, 0 while
    /// setting up).
    pub fn step(&self) -> usize {
        self.step
    }

    /// What differed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Every operation applied, the failing one last: [`run`] with these
    /// on a fresh store with the same [`Setup`](super::Setup) replays the run.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "step {}: {}", self.step, self.message)?;
        writeln!(f, "setup: {}", self.setup)?;
        let shown = self.trace.len().saturating_sub(TRACE_SHOWN);
        writeln!(f, "last steps ({} before them):", shown)?;
        for line in &self.trace[shown..] {
            writeln!(f, "  {line}")?;
        }
        if self.ops.len() <= OPS_SHOWN {
            write!(f, "ops: {:?}", self.ops)
        } else {
            write!(f, "{} ops in all (Failure::ops)", self.ops.len())
        }
    }
}

impl std::error::Error for Failure {}
