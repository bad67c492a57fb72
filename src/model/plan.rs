//! Plans: tiers of features and limits kept by the operator, versioned,
//! assigned to organizations (with trials), and the *effective* view of an
//! organization's entitlements — its plan version with its own rows (the
//! overrides) on top.
//!
//! Plain data: the rules that combine them live in
//! [`limits::entitlements`](crate::limits::entitlements); the stores keep
//! them ([`PlanStore`](crate::store::PlanStore)).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{FeatureKey, LimitId, MetricKey, OrgId, PlanKey};
use crate::limits::rate::{RateLimit, RateWindow};
use crate::limits::{Limit, LimitMode, Period};
use crate::model::Feature;

/// One version of one plan: `pro` version 3.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlanRef {
    /// The plan's key.
    pub key: PlanKey,
    /// Its version, from 1.
    pub version: u32,
}

/// A feature a plan version includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFeature {
    /// The feature.
    pub key: FeatureKey,
    /// Whether the plan turns it on.
    pub enabled: bool,
    /// Its configuration; `null` when none.
    pub config: serde_json::Value,
}

/// An org-wide usage limit a plan version includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimit {
    /// Its id, stable for the version: the id an organization's effective
    /// limit carries when it comes from this entry.
    pub id: LimitId,
    /// The metric capped.
    pub metric: MetricKey,
    /// The period counted over.
    pub period: Period,
    /// The cap.
    pub value: Decimal,
    /// Hard or soft.
    pub mode: LimitMode,
}

/// An org-wide rate limit a plan version includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRateLimit {
    /// Its id, stable for the version (as [`PlanLimit::id`]).
    pub id: LimitId,
    /// The metric limited.
    pub metric: MetricKey,
    /// The window `value` is per.
    pub window: RateWindow,
    /// The steady rate.
    pub value: Decimal,
    /// The most admitted at one instant.
    pub burst: Decimal,
    /// Hard or soft.
    pub mode: LimitMode,
}

/// One immutable version of a plan, as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanVersion {
    /// The plan and version.
    pub plan: PlanRef,
    /// The plan's display name (`Pro`).
    pub name: String,
    /// The features it includes, by key.
    pub features: Vec<PlanFeature>,
    /// Its usage limits.
    pub limits: Vec<PlanLimit>,
    /// Its rate limits.
    pub rate_limits: Vec<PlanRateLimit>,
    /// When this version was created.
    pub created_at: DateTime<Utc>,
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntitlementSource {
    /// The organization's plan version.
    Plan {
        /// The version it came from.
        plan: PlanRef,
    },
    /// The organization's own row, on top of its plan.
    Override {
        /// When it lapses (`None`: never).
        expires_at: Option<DateTime<Utc>>,
    },
}

/// An organization's effective features and limits at one instant: its
/// plan version (after any trial ended) with its unexpired overrides on
/// top. A feature or limit in none of them is off, or absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entitlements {
    /// The organization.
    pub org: OrgId,
    /// Its plan assignment, if it has one.
    pub assignment: Option<PlanAssignment>,
    /// The plan version in effect: the assignment's, or its fallback once
    /// the trial ended; `None` without an assignment (or a trial that
    /// ended with no fallback).
    pub plan: Option<PlanRef>,
    /// Effective features, by key, with their sources.
    pub features: Vec<(Feature, EntitlementSource)>,
    /// Effective usage limits (org-wide and per user), with their sources.
    pub limits: Vec<(Limit, EntitlementSource)>,
    /// Effective rate limits, with their sources.
    pub rate_limits: Vec<(RateLimit, EntitlementSource)>,
    /// The first instant after the one asked about at which this view
    /// changes by itself (an override lapses, a trial ends); `None` if it
    /// never does. A cache keeps it no later than this.
    pub valid_until: Option<DateTime<Utc>>,
}

/// An organization's plan: exactly one current assignment per organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAssignment {
    /// The organization.
    pub org: OrgId,
    /// The plan version assigned.
    pub plan: PlanRef,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When its trial ends, for a trial.
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The plan version the organization falls to when the trial ends.
    pub fallback: Option<PlanRef>,
}

/// A change to the entitlements of one organization or of all of them, as
/// the stores announce it to every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntitlementChange {
    /// One organization's assignment or overrides changed.
    Org(OrgId),
    /// The catalog changed, or more than one organization did: forget all.
    All,
}

/// A new version of a plan, as the operator writes it: the store gives it
/// the next version number of its key (1 for a new plan) and never changes
/// it afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlanVersion {
    pub(crate) key: PlanKey,
    pub(crate) name: String,
    pub(crate) features: Vec<PlanFeature>,
    pub(crate) limits: Vec<PlanLimit>,
    pub(crate) rate_limits: Vec<PlanRateLimit>,
}

impl NewPlanVersion {
    /// The plan's key.
    pub fn key(&self) -> &PlanKey {
        &self.key
    }

    /// Its display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The features it includes.
    pub fn features(&self) -> &[PlanFeature] {
        &self.features
    }

    /// Its usage limits.
    pub fn limits(&self) -> &[PlanLimit] {
        &self.limits
    }

    /// Its rate limits.
    pub fn rate_limits(&self) -> &[PlanRateLimit] {
        &self.rate_limits
    }
}

/// Puts an organization on a plan version: the store replaces its current
/// assignment, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssignPlan {
    /// The organization.
    pub org: OrgId,
    /// The plan version.
    pub plan: PlanRef,
    /// The end of a trial, for a trial.
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The plan version to fall to when the trial ends.
    pub fallback: Option<PlanRef>,
    /// The moment of the change: the assignment's start.
    pub now: DateTime<Utc>,
}

/// Moves organizations from one version of a plan to another version of
/// the same plan: one organization, or every organization on `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigratePlan {
    /// The version they are on.
    pub from: PlanRef,
    /// The version of the same plan they move to.
    pub to_version: u32,
    /// One organization, or (`None`) all of `from`'s.
    pub org: Option<OrgId>,
}
