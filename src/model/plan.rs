//! Plans: tiers of features and limits kept by the operator, versioned,
//! assigned to organizations (with trials), and the *effective* view of an
//! organization's entitlements — its plan version with its own rows (the
//! overrides) on top.
//!
//! Plain data: the rules that combine them live in
//! [`limits::entitlements`](crate::limits::entitlements); the stores keep
//! them ([`PlanStore`](crate::store::PlanStore)).
//!
//! # The model
//!
//! - A **plan** (`free`, `pro`) is a list of versions. A version holds
//!   features (on or off, with a JSON config), org-wide usage limits and
//!   org-wide rate limits, and never changes: editing a plan is
//!   [`Operator::create_plan_version`](crate::Operator::create_plan_version), which writes the next version.
//! - An organization has at most one **assignment**: a plan version, when
//!   it started, and for a **trial** when it ends and the version it falls
//!   to then. The fall happens by itself at `trial_ends_at`: no job runs,
//!   every read from that instant on sees the fallback.
//! - Organizations stay on their version (grandfathered) until
//!   [`Operator::migrate_plan`](crate::Operator::migrate_plan) moves them, one or all of a version.
//! - **Overrides** are the organization's own feature, limit and rate-limit
//!   rows, set with [`Operator::update_feature`](crate::Operator::update_feature), [`Operator::set_limit`](crate::Operator::set_limit)
//!   and [`Operator::set_rate_limit`](crate::Operator::set_rate_limit) as before. They sit on top of the
//!   plan (features by key; limits by metric and period; rate limits by
//!   metric and window) and may lapse ([`NewLimit::until`](crate::NewLimit::until),
//!   [`FeatureChange::until`](crate::model::FeatureChange::until),
//!   `NewRateLimit::until`): from `expires_at` on, an override counts as
//!   absent and the plan applies again. Without a plan, the rows alone are
//!   the entitlements, as before plans existed.
//! - The **effective view** ([`Entitlements`]) is what every reader uses:
//!   `has_feature`, `feature_config`, `check_limit`, `reserve`, the usage
//!   summary, leases and rate limits.
//!
//! # Changing plan mid-period
//!
//! Usage counters are per period and no plan operation touches them. A new
//! plan's limits apply to the period's usage so far, from the next call
//! on: an upgrade admits at once what the new limit admits; a downgrade
//! below current usage denies any further hard-limited consumption of that
//! metric until the period resets. Alerts are claimed once per threshold,
//! metric, scope and period, as for any limit: an assignment, a trial, a
//! removal or a one-organization migration through the operator checks the
//! organization's org-wide thresholds right away (so a downgrade below
//! usage alerts at once, and once: a threshold already alerted in the
//! period, under the old plan, does not alert again); after a migration of
//! a whole version, each organization's next usage write checks them.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use tenancy::clock::FakeClock;
//! use tenancy::model::plan::NewPlanVersion;
//! use tenancy::{MemoryStore, NewLimit, NewOrganization, PlanKey, PlatformOperator, Tenancy, UsageEvent, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
//! let clock = FakeClock::new(Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap());
//! let tenancy = Tenancy::builder().store(MemoryStore::new()).clock(clock.clone()).build()?;
//! let operator = PlatformOperator::new("billing");
//! let ops = tenancy.operator(&operator);
//!
//! let free = ops.create_plan_version(NewPlanVersion::new(PlanKey::parse("free")?, "Free")?
//!     .limit(NewLimit::from_limit_type("monthly_tokens", 1_000.into())?)?).await?;
//! let pro = ops.create_plan_version(NewPlanVersion::new(PlanKey::parse("pro")?, "Pro")?
//!     .feature(tenancy::FeatureKey::parse("exports")?, true)?
//!     .limit(NewLimit::from_limit_type("monthly_tokens", 100_000.into())?)?).await?;
//!
//! let alice = UserId::new_v7();
//! let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
//! ops.assign_plan(org.id, free.plan.clone()).await?;
//! let ctx = tenancy.context(alice, org.id).await?;
//! tenancy.service().record_usage(UsageEvent::new(org.id).quantity(tenancy::MetricKey::TOKENS, 1_000.into())).await?;
//! assert!(!tenancy.check_limit(&ctx, "tokens", 1.into()).await?.allowed);
//! assert!(!tenancy.has_feature(&ctx, "exports").await?);
//!
//! ops.assign_plan(org.id, pro.plan.clone()).await?;
//! assert!(tenancy.check_limit(&ctx, "tokens", 1.into()).await?.allowed);
//! assert!(tenancy.has_feature(&ctx, "exports").await?);
//! assert_eq!(tenancy.plan(&ctx).await?.unwrap().plan, pro.plan);
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{FeatureKey, LimitId, MetricKey, OrgId, PlanKey};
use crate::limits::rate::{NewRateLimit, RateLimit, RateLimitType, RateWindow};
use crate::limits::{Limit, LimitMode, LimitScope, LimitType, NewLimit, Period};
use crate::model::Feature;
use crate::model::feature::FeatureChange;

/// The longest plan display name, in characters.
pub const MAX_PLAN_NAME_CHARS: usize = 100;

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

impl PlanLimit {
    /// Its `limit_type` (`monthly_tokens`).
    pub fn limit_type(&self) -> LimitType {
        LimitType {
            metric: self.metric.clone(),
            period: self.period,
        }
    }
}

impl PlanRateLimit {
    /// Its `limit_type` (`minute_requests`).
    pub fn limit_type(&self) -> RateLimitType {
        RateLimitType {
            metric: self.metric.clone(),
            window: self.window,
        }
    }
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
    /// More than one organization changed, or changes may have been
    /// missed: forget all. (A new catalog version changes no organization's
    /// view, so it is no change.)
    All,
}

/// A new version of a plan, as the operator writes it: the store gives it
/// the next version number of its key (1 for a new plan) and never changes
/// it afterwards. It serializes as the SQL function
/// `tenancy_put_plan_version` takes it (`key`, `name`, `features`,
/// `limits`, `rate_limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl NewPlanVersion {
    /// A new version of plan `key` named `name`, with nothing in it yet.
    /// A name that is empty, longer than [`MAX_PLAN_NAME_CHARS`]
    /// characters or contains a NUL is `InvalidInput` naming `name`.
    pub fn new(key: PlanKey, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let chars = name.chars().count();
        if chars == 0 {
            return Err(Error::invalid_input("name", "must not be empty"));
        }
        if chars > MAX_PLAN_NAME_CHARS {
            return Err(Error::invalid_input(
                "name",
                format_args!("{chars} characters; the limit is {MAX_PLAN_NAME_CHARS}"),
            ));
        }
        if name.contains('\0') {
            return Err(Error::invalid_input(
                "name",
                "must not contain a NUL character",
            ));
        }
        Ok(NewPlanVersion {
            key,
            name,
            features: Vec::new(),
            limits: Vec::new(),
            rate_limits: Vec::new(),
        })
    }

    /// Includes feature `key`, on (`true`) or off, with a `null` config. A
    /// key already included is `InvalidInput` naming `feature_key`.
    pub fn feature(self, key: FeatureKey, enabled: bool) -> Result<Self> {
        self.with_feature(PlanFeature {
            key,
            enabled,
            config: serde_json::Value::Null,
        })
    }

    /// Includes feature `key`, on, with `config`, checked as
    /// [`FeatureChange::config`] checks it (`InvalidInput` naming
    /// `config`). A key already included is `InvalidInput` naming
    /// `feature_key`.
    pub fn feature_config(self, key: FeatureKey, config: serde_json::Value) -> Result<Self> {
        FeatureChange::config(config.clone())?;
        self.with_feature(PlanFeature {
            key,
            enabled: true,
            config,
        })
    }

    fn with_feature(mut self, feature: PlanFeature) -> Result<Self> {
        if self.features.iter().any(|f| f.key == feature.key) {
            return Err(Error::invalid_input(
                "feature_key",
                format_args!("{} is already in the plan", feature.key),
            ));
        }
        self.features.push(feature);
        Ok(self)
    }

    /// Includes an org-wide usage limit. A per-user limit is `InvalidInput`
    /// naming `user_id` (plans hold org-wide limits; a user's own limit is
    /// an override), one with an expiry `InvalidInput` naming `expires_at`,
    /// and a second limit on the same metric and period `InvalidInput`
    /// naming `limit_type`.
    pub fn limit(mut self, limit: NewLimit) -> Result<Self> {
        check_plan_entry(limit.scope, limit.expires_at)?;
        let entry = PlanLimit {
            id: LimitId::new_v7(),
            metric: limit.metric,
            period: limit.period,
            value: limit.value,
            mode: limit.mode,
        };
        let kind = entry.limit_type();
        if self.limits.iter().any(|l| l.limit_type() == kind) {
            return Err(Error::invalid_input(
                "limit_type",
                format_args!("{kind} is already in the plan"),
            ));
        }
        self.limits.push(entry);
        Ok(self)
    }

    /// Includes an org-wide rate limit; refused as [`limit`](Self::limit)
    /// refuses (a second one on the same metric and window is
    /// `InvalidInput` naming `limit_type`).
    pub fn rate_limit(mut self, limit: NewRateLimit) -> Result<Self> {
        check_plan_entry(limit.scope, limit.expires_at)?;
        let id = LimitId::new_v7();
        let full = limit.into_limit(id, OrgId::from(uuid::Uuid::nil()), DateTime::UNIX_EPOCH);
        let entry = PlanRateLimit {
            id,
            metric: full.metric,
            window: full.window,
            value: full.value,
            burst: full.burst,
            mode: full.mode,
        };
        let kind = entry.limit_type();
        if self.rate_limits.iter().any(|l| l.limit_type() == kind) {
            return Err(Error::invalid_input(
                "limit_type",
                format_args!("{kind} is already in the plan"),
            ));
        }
        self.rate_limits.push(entry);
        Ok(self)
    }
}

fn check_plan_entry(scope: LimitScope, expires_at: Option<DateTime<Utc>>) -> Result<()> {
    if scope != LimitScope::Organization {
        return Err(Error::invalid_input(
            "user_id",
            "a plan holds org-wide limits only; set a user's limit as an override",
        ));
    }
    if expires_at.is_some() {
        return Err(Error::invalid_input(
            "expires_at",
            "a plan's limits do not expire; set an expiring override instead",
        ));
    }
    Ok(())
}

impl AssignPlan {
    /// Puts `org` on `plan` from `now`, with no trial.
    pub fn new(org: OrgId, plan: PlanRef, now: DateTime<Utc>) -> Self {
        AssignPlan {
            org,
            plan,
            trial_ends_at: None,
            fallback: None,
            now,
        }
    }

    /// Makes it a trial ending at `ends_at`, after which the organization
    /// is on `fallback` (`None`: on no plan).
    pub fn trial(mut self, ends_at: DateTime<Utc>, fallback: impl Into<Option<PlanRef>>) -> Self {
        self.trial_ends_at = Some(ends_at);
        self.fallback = fallback.into();
        self
    }
}

impl MigratePlan {
    /// Moves every organization on `from` to version `to_version` of the
    /// same plan.
    pub fn new(from: PlanRef, to_version: u32) -> Self {
        MigratePlan {
            from,
            to_version,
            org: None,
        }
    }

    /// Moves only `org` (if it is on `from`).
    pub fn org(mut self, org: OrgId) -> Self {
        self.org = Some(org);
        self
    }

    /// The version moved to.
    pub fn to(&self) -> PlanRef {
        PlanRef {
            key: self.from.key.clone(),
            version: self.to_version,
        }
    }
}

/// What to explain: one feature, one org-wide usage limit, or one org-wide
/// rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entitlement {
    /// A feature, by key.
    Feature {
        /// The feature.
        key: FeatureKey,
    },
    /// The org-wide usage limit on a metric over a period.
    Limit {
        /// The metric.
        metric: MetricKey,
        /// The period.
        period: Period,
    },
    /// The org-wide rate limit on a metric per window.
    RateLimit {
        /// The metric.
        metric: MetricKey,
        /// The window.
        window: RateWindow,
    },
}

/// An effective value, as [`Explanation`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntitlementValue {
    /// A feature's state.
    Feature {
        /// Whether it is on.
        enabled: bool,
        /// Its configuration; `null` when none.
        config: serde_json::Value,
    },
    /// A usage limit.
    Limit {
        /// Its id (the plan entry's, or the override row's).
        id: LimitId,
        /// The cap.
        value: Decimal,
        /// Hard or soft.
        mode: LimitMode,
    },
    /// A rate limit.
    RateLimit {
        /// Its id (the plan entry's, or the override row's).
        id: LimitId,
        /// The steady rate per window.
        value: Decimal,
        /// The most admitted at one instant.
        burst: Decimal,
        /// Hard or soft.
        mode: LimitMode,
    },
}

/// Where one entitlement of an organization comes from, at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// What was asked about.
    pub entitlement: Entitlement,
    /// The effective value; `None`: the default (a feature off, no limit).
    pub value: Option<EntitlementValue>,
    /// Where `value` comes from: the plan version (and which) or an
    /// override (and when it lapses); `None` with the default.
    pub source: Option<EntitlementSource>,
    /// The plan version in effect (after any trial ended), if any.
    pub plan: Option<PlanRef>,
    /// When the current trial ends, during a trial.
    pub trial_ends_at: Option<DateTime<Utc>>,
}

impl Explanation {
    /// Whether the value is the default: no plan entry and no override.
    pub fn is_default(&self) -> bool {
        self.source.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn pro() -> NewPlanVersion {
        NewPlanVersion::new(PlanKey::parse("pro").unwrap(), "Pro").unwrap()
    }

    fn field<T: std::fmt::Debug>(result: Result<T>) -> Option<&'static str> {
        result.unwrap_err().field()
    }

    #[test]
    fn names_are_one_to_a_hundred_characters_without_nul() {
        let key = PlanKey::parse("pro").unwrap();
        assert_eq!(field(NewPlanVersion::new(key.clone(), "")), Some("name"));
        assert_eq!(
            field(NewPlanVersion::new(key.clone(), "a\0b")),
            Some("name")
        );
        assert!(NewPlanVersion::new(key.clone(), "é".repeat(100)).is_ok());
        assert_eq!(
            field(NewPlanVersion::new(key, "x".repeat(101))),
            Some("name")
        );
    }

    #[test]
    fn entries_are_checked_and_never_duplicated() {
        let veo = FeatureKey::from_static("veo");
        let plan = pro().feature(veo.clone(), true).unwrap();
        assert_eq!(
            field(plan.clone().feature(veo.clone(), false)),
            Some("feature_key")
        );
        assert_eq!(
            field(plan.clone().feature_config(veo.clone(), json!({}))),
            Some("feature_key")
        );
        assert_eq!(
            field(pro().feature_config(veo, json!({"a": "\u{0}"}))),
            Some("config")
        );

        let tokens = || NewLimit::new(MetricKey::TOKENS, Period::Monthly, dec!(10)).unwrap();
        let plan = plan.limit(tokens()).unwrap();
        assert_eq!(
            field(plan.clone().limit(tokens().soft())),
            Some("limit_type")
        );
        let daily = NewLimit::new(MetricKey::TOKENS, Period::Daily, dec!(1)).unwrap();
        let plan = plan.limit(daily).unwrap();
        assert_eq!(plan.limits().len(), 2);
        let user = crate::ids::UserId::new_v7();
        assert_eq!(field(pro().limit(tokens().for_user(user))), Some("user_id"));
        assert_eq!(
            field(pro().limit(tokens().until(DateTime::UNIX_EPOCH))),
            Some("expires_at")
        );

        let rate = || {
            NewRateLimit::new(
                MetricKey::from_static("requests"),
                RateWindow::Minute,
                dec!(5),
            )
            .unwrap()
        };
        let plan = plan.rate_limit(rate()).unwrap();
        assert_eq!(plan.rate_limits()[0].burst, dec!(5));
        assert_eq!(field(plan.clone().rate_limit(rate())), Some("limit_type"));
        assert_eq!(
            field(pro().rate_limit(rate().for_user(user))),
            Some("user_id")
        );
        assert_eq!(plan.features().len(), 1);
        assert_eq!(plan.name(), "Pro");
        assert_eq!(plan.key().as_str(), "pro");
    }

    #[test]
    fn assignments_and_migrations_build() {
        let org = OrgId::new_v7();
        let plan = PlanRef {
            key: PlanKey::parse("pro").unwrap(),
            version: 2,
        };
        let free = PlanRef {
            key: PlanKey::parse("free").unwrap(),
            version: 1,
        };
        let at = DateTime::UNIX_EPOCH;
        let a = AssignPlan::new(org, plan.clone(), at).trial(at, free.clone());
        assert_eq!((a.trial_ends_at, a.fallback), (Some(at), Some(free)));
        let m = MigratePlan::new(plan, 3).org(org);
        assert_eq!(m.org, Some(org));
        assert_eq!(m.to().version, 3);
    }
}
