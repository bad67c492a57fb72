//! The effective view of an organization's entitlements, as one pure rule:
//! its plan version (the assignment's, or the fallback once a trial ended)
//! with its unexpired overrides on top.
//!
//! The rule, at an instant `now`:
//!
//! - **The plan in effect** is the assignment's version; once
//!   `trial_ends_at <= now`, its `fallback` (or no plan, without one).
//!   Nothing runs when a trial ends: the instant asked about decides.
//! - **An override** is one of the organization's own rows (feature,
//!   limit, rate limit). A row whose `expires_at <= now` counts as absent.
//! - **Matching**: an unexpired row replaces the plan's entry with the same
//!   feature key; the same org-wide (metric, period) for a limit; the same
//!   org-wide (metric, window) for a rate limit. Per-user rows are added as
//!   they are (a plan holds org-wide entries only).
//! - **A plan entry** becomes a row of the organization: a limit
//!   `Limit { id: the PlanLimit's id, scope: Organization, created_at: the
//!   version's created_at, expires_at: None, .. }`, a feature `Feature {
//!   updated_at: the version's created_at, expires_at: None, .. }`, a rate
//!   limit likewise.
//! - **Order**: features by key; limits and rate limits by `created_at`,
//!   then id (the order [`LimitStore::limits`](crate::store::LimitStore)
//!   promises).
//! - **`valid_until`**: the earliest `expires_at` of an unexpired row, or
//!   the trial's end, after `now`: the first instant the view changes by
//!   itself.
//!
//! Without an assignment the rows alone are the entitlements, as before
//! plans existed. The SQL backends state the same rule once
//! (`tenancy.effective_features`, `tenancy.effective_limits`,
//! `tenancy.effective_rate_limits`), and one table of cases runs against
//! both.

use chrono::{DateTime, Utc};

use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::rate::RateLimit;
use crate::limits::{Limit, LimitScope};
use crate::model::Feature;
use crate::model::plan::{
    Entitlement, EntitlementSource, EntitlementValue, Entitlements, Explanation, PlanAssignment,
    PlanFeature, PlanLimit, PlanRateLimit, PlanRef, PlanVersion,
};

/// Whether a row with this expiry still counts at `now`.
pub fn unexpired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// The plan version in effect for `assignment` at `now`: its own, or its
/// fallback once `trial_ends_at <= now` (`None` without a fallback).
pub fn plan_in_effect(assignment: &PlanAssignment, now: DateTime<Utc>) -> Option<&PlanRef> {
    match assignment.trial_ends_at {
        Some(ends) if ends <= now => assignment.fallback.as_ref(),
        _ => Some(&assignment.plan),
    }
}

/// Whether `assignment` is in its trial at `now`.
fn in_trial(assignment: &PlanAssignment, now: DateTime<Utc>) -> bool {
    assignment.trial_ends_at.is_some_and(|ends| ends > now)
}

fn override_source(expires_at: Option<DateTime<Utc>>) -> EntitlementSource {
    EntitlementSource::Override { expires_at }
}

fn plan_source(plan: &PlanVersion) -> EntitlementSource {
    EntitlementSource::Plan {
        plan: plan.plan.clone(),
    }
}

/// A plan's feature as the organization's row.
pub fn plan_feature(plan: &PlanVersion, feature: &PlanFeature) -> Feature {
    Feature {
        key: feature.key.clone(),
        enabled: feature.enabled,
        config: feature.config.clone(),
        updated_at: plan.created_at,
        expires_at: None,
    }
}

/// A plan's limit as the organization's org-wide limit.
pub fn plan_limit(org: OrgId, plan: &PlanVersion, limit: &PlanLimit) -> Limit {
    Limit {
        id: limit.id,
        org,
        scope: LimitScope::Organization,
        metric: limit.metric.clone(),
        period: limit.period,
        value: limit.value,
        mode: limit.mode,
        created_at: plan.created_at,
        expires_at: None,
    }
}

/// A plan's rate limit as the organization's org-wide rate limit.
pub fn plan_rate_limit(org: OrgId, plan: &PlanVersion, limit: &PlanRateLimit) -> RateLimit {
    RateLimit {
        id: limit.id,
        org,
        scope: LimitScope::Organization,
        metric: limit.metric.clone(),
        window: limit.window,
        value: limit.value,
        burst: limit.burst,
        mode: limit.mode,
        created_at: plan.created_at,
        expires_at: None,
    }
}

/// The effective features: unexpired rows, and the plan's features no
/// unexpired row replaces; by key.
pub fn effective_features<'a>(
    plan: Option<&PlanVersion>,
    rows: impl IntoIterator<Item = &'a Feature>,
    now: DateTime<Utc>,
) -> Vec<(Feature, EntitlementSource)> {
    let mut out: Vec<(Feature, EntitlementSource)> = rows
        .into_iter()
        .filter(|f| unexpired(f.expires_at, now))
        .map(|f| (f.clone(), override_source(f.expires_at)))
        .collect();
    if let Some(plan) = plan {
        for pf in &plan.features {
            if !out.iter().any(|(f, _)| f.key == pf.key) {
                out.push((plan_feature(plan, pf), plan_source(plan)));
            }
        }
    }
    out.sort_by(|(a, _), (b, _)| a.key.cmp(&b.key));
    out
}

/// The effective usage limits of `org`: unexpired rows (org-wide and per
/// user), and the plan's limits no unexpired org-wide row on the same
/// (metric, period) replaces; by `created_at`, then id.
pub fn effective_limits<'a>(
    org: OrgId,
    plan: Option<&PlanVersion>,
    rows: impl IntoIterator<Item = &'a Limit>,
    now: DateTime<Utc>,
) -> Vec<(Limit, EntitlementSource)> {
    effective_limits_of(org, plan, rows, now, None)
}

/// [`effective_limits`] of one metric only (`None`: all): what a decision
/// on that metric reads, without building the plan's other limits.
pub(crate) fn effective_limits_of<'a>(
    org: OrgId,
    plan: Option<&PlanVersion>,
    rows: impl IntoIterator<Item = &'a Limit>,
    now: DateTime<Utc>,
    metric: Option<&MetricKey>,
) -> Vec<(Limit, EntitlementSource)> {
    let of_metric = |m: &MetricKey| metric.is_none_or(|wanted| wanted == m);
    let mut out: Vec<(Limit, EntitlementSource)> = rows
        .into_iter()
        .filter(|l| of_metric(&l.metric) && unexpired(l.expires_at, now))
        .map(|l| (l.clone(), override_source(l.expires_at)))
        .collect();
    if let Some(plan) = plan {
        for pl in plan.limits.iter().filter(|pl| of_metric(&pl.metric)) {
            let replaced = out.iter().any(|(l, _)| {
                l.scope == LimitScope::Organization
                    && l.metric == pl.metric
                    && l.period == pl.period
            });
            if !replaced {
                out.push((plan_limit(org, plan, pl), plan_source(plan)));
            }
        }
    }
    out.sort_by_key(|(l, _)| (l.created_at, l.id));
    out
}

/// The effective rate limits of `org`: unexpired rows (org-wide and per
/// user), and the plan's rate limits no unexpired org-wide row on the same
/// (metric, window) replaces; by `created_at`, then id.
pub fn effective_rate_limits<'a>(
    org: OrgId,
    plan: Option<&PlanVersion>,
    rows: impl IntoIterator<Item = &'a RateLimit>,
    now: DateTime<Utc>,
) -> Vec<(RateLimit, EntitlementSource)> {
    let mut out: Vec<(RateLimit, EntitlementSource)> = rows
        .into_iter()
        .filter(|l| unexpired(l.expires_at, now))
        .map(|l| (l.clone(), override_source(l.expires_at)))
        .collect();
    if let Some(plan) = plan {
        for pr in &plan.rate_limits {
            let replaced = out.iter().any(|(l, _)| {
                l.scope == LimitScope::Organization
                    && l.metric == pr.metric
                    && l.window == pr.window
            });
            if !replaced {
                out.push((plan_rate_limit(org, plan, pr), plan_source(plan)));
            }
        }
    }
    out.sort_by_key(|(l, _)| (l.created_at, l.id));
    out
}

/// The organization's own rows, as [`effective`] reads them.
#[derive(Debug, Clone, Copy)]
pub struct Overrides<'a> {
    /// Its feature rows.
    pub features: &'a [Feature],
    /// Its usage-limit rows.
    pub limits: &'a [Limit],
    /// Its rate-limit rows.
    pub rate_limits: &'a [RateLimit],
}

/// The effective entitlements of `org` at `now`: `assignment` (if any),
/// the plan version [`plan_in_effect`] names (`plan`, which the caller
/// looked up; `None` if there is none), and `rows` on top, by the rule in
/// the [module documentation](self).
pub fn effective(
    org: OrgId,
    assignment: Option<&PlanAssignment>,
    plan: Option<&PlanVersion>,
    rows: Overrides<'_>,
    now: DateTime<Utc>,
) -> Entitlements {
    let mut entitlements = Entitlements {
        org,
        assignment: assignment.cloned(),
        plan: plan.map(|p| p.plan.clone()),
        features: effective_features(plan, rows.features, now),
        limits: effective_limits(org, plan, rows.limits, now),
        rate_limits: effective_rate_limits(org, plan, rows.rate_limits, now),
        valid_until: None,
    };
    entitlements.valid_until = valid_until(&entitlements, now);
    entitlements
}

/// The first instant `entitlements` (computed at `now`) changes by itself:
/// the earliest expiry, after `now`, of a row it shows, or its trial's end.
/// Every unexpired row shows (only plan entries are ever replaced), so this
/// is the same over the view as over the rows it came from.
fn valid_until(entitlements: &Entitlements, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let expiries = entitlements
        .features
        .iter()
        .map(|(f, _)| f.expires_at)
        .chain(entitlements.limits.iter().map(|(l, _)| l.expires_at))
        .chain(entitlements.rate_limits.iter().map(|(l, _)| l.expires_at))
        .chain(entitlements.assignment.as_ref().map(|a| a.trial_ends_at));
    expiries.flatten().filter(|at| *at > now).min()
}

/// `entitlements` (computed at `now`) as `user` is shown them: the
/// per-user limits and rate limits of other users dropped, and
/// `valid_until` taken over the rows that remain, so it is the first
/// instant this view changes, never another user's override's expiry.
pub fn for_user(mut entitlements: Entitlements, user: UserId, now: DateTime<Utc>) -> Entitlements {
    entitlements
        .limits
        .retain(|(l, _)| l.scope.applies_to(user));
    entitlements
        .rate_limits
        .retain(|(l, _)| l.scope.applies_to(user));
    entitlements.valid_until = valid_until(&entitlements, now);
    entitlements
}

/// Where `what` comes from in `entitlements` (computed at `now`): its
/// effective value and source, or the default (a feature off, no limit)
/// when neither the plan nor an override names it. Only org-wide limits
/// are explained.
pub fn explain(entitlements: &Entitlements, what: &Entitlement, now: DateTime<Utc>) -> Explanation {
    let found: Option<(EntitlementValue, EntitlementSource)> = match what {
        Entitlement::Feature { key } => entitlements
            .features
            .iter()
            .find(|(f, _)| &f.key == key)
            .map(|(f, source)| {
                (
                    EntitlementValue::Feature {
                        enabled: f.enabled,
                        config: f.config.clone(),
                    },
                    source.clone(),
                )
            }),
        Entitlement::Limit { metric, period } => entitlements
            .limits
            .iter()
            .find(|(l, _)| {
                l.scope == LimitScope::Organization && &l.metric == metric && l.period == *period
            })
            .map(|(l, source)| {
                (
                    EntitlementValue::Limit {
                        id: l.id,
                        value: l.value,
                        mode: l.mode,
                    },
                    source.clone(),
                )
            }),
        Entitlement::RateLimit { metric, window } => entitlements
            .rate_limits
            .iter()
            .find(|(l, _)| {
                l.scope == LimitScope::Organization && &l.metric == metric && l.window == *window
            })
            .map(|(l, source)| {
                (
                    EntitlementValue::RateLimit {
                        id: l.id,
                        value: l.value,
                        burst: l.burst,
                        mode: l.mode,
                    },
                    source.clone(),
                )
            }),
    };
    let (value, source) = found.unzip();
    Explanation {
        entitlement: what.clone(),
        value,
        source,
        plan: entitlements.plan.clone(),
        trial_ends_at: entitlements
            .assignment
            .as_ref()
            .filter(|a| in_trial(a, now))
            .and_then(|a| a.trial_ends_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FeatureKey, LimitId, MetricKey, PlanKey, UserId};
    use crate::limits::rate::RateWindow;
    use crate::limits::{LimitMode, Period};
    use chrono::TimeDelta;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds)
    }

    fn plan_ref(key: &str, version: u32) -> PlanRef {
        PlanRef {
            key: PlanKey::parse(key).unwrap(),
            version,
        }
    }

    fn version(key: &str, n: u32, tokens: Decimal) -> PlanVersion {
        PlanVersion {
            plan: plan_ref(key, n),
            name: key.to_owned(),
            features: vec![PlanFeature {
                key: FeatureKey::from_static("veo"),
                enabled: true,
                config: json!({"max": n}),
            }],
            limits: vec![PlanLimit {
                id: LimitId::new_v7(),
                metric: MetricKey::TOKENS,
                period: Period::Monthly,
                value: tokens,
                mode: LimitMode::Hard,
            }],
            rate_limits: vec![PlanRateLimit {
                id: LimitId::new_v7(),
                metric: MetricKey::from_static("requests"),
                window: RateWindow::Minute,
                value: dec!(10),
                burst: dec!(10),
                mode: LimitMode::Hard,
            }],
            created_at: at(1),
        }
    }

    fn row(org: OrgId, scope: LimitScope, value: Decimal, expires: Option<i64>) -> Limit {
        Limit {
            id: LimitId::new_v7(),
            org,
            scope,
            metric: MetricKey::TOKENS,
            period: Period::Monthly,
            value,
            mode: LimitMode::Hard,
            created_at: at(2),
            expires_at: expires.map(at),
        }
    }

    fn none() -> Overrides<'static> {
        Overrides {
            features: &[],
            limits: &[],
            rate_limits: &[],
        }
    }

    fn trial(org: OrgId, ends: i64, fallback: Option<PlanRef>) -> PlanAssignment {
        PlanAssignment {
            org,
            plan: plan_ref("pro", 1),
            started_at: at(0),
            trial_ends_at: Some(at(ends)),
            fallback,
        }
    }

    #[test]
    fn a_trial_falls_to_its_fallback_exactly_at_its_end() {
        let org = OrgId::new_v7();
        let a = trial(org, 100, Some(plan_ref("free", 2)));
        assert_eq!(plan_in_effect(&a, at(99)), Some(&plan_ref("pro", 1)));
        assert_eq!(plan_in_effect(&a, at(100)), Some(&plan_ref("free", 2)));
        let without = trial(org, 100, None);
        assert_eq!(plan_in_effect(&without, at(100)), None);

        let pro = version("pro", 1, dec!(1000));
        let before = effective(org, Some(&a), Some(&pro), none(), at(99));
        assert_eq!(before.valid_until, Some(at(100)));
        let e = explain(
            &before,
            &Entitlement::Feature {
                key: FeatureKey::from_static("veo"),
            },
            at(99),
        );
        assert_eq!(e.trial_ends_at, Some(at(100)));
        let free = version("free", 2, dec!(10));
        let after = effective(org, Some(&a), Some(&free), none(), at(100));
        assert_eq!(after.plan, Some(plan_ref("free", 2)));
        assert_eq!(after.valid_until, None);
        assert_eq!(after.limits[0].0.value, dec!(10));
        let e = explain(
            &after,
            &Entitlement::Feature {
                key: FeatureKey::from_static("veo"),
            },
            at(100),
        );
        assert_eq!(e.trial_ends_at, None);
    }

    #[test]
    fn an_override_replaces_the_plan_limit_until_it_expires_exactly_at_its_end() {
        let org = OrgId::new_v7();
        let pro = version("pro", 1, dec!(1000));
        let a = PlanAssignment {
            org,
            plan: pro.plan.clone(),
            started_at: at(0),
            trial_ends_at: None,
            fallback: None,
        };
        let rows = [row(org, LimitScope::Organization, dec!(1200), Some(50))];
        let rows = Overrides {
            limits: &rows,
            ..none()
        };
        let during = effective(org, Some(&a), Some(&pro), rows, at(49));
        assert_eq!(during.limits.len(), 1);
        assert_eq!(during.limits[0].0.value, dec!(1200));
        assert_eq!(
            during.limits[0].1,
            EntitlementSource::Override {
                expires_at: Some(at(50))
            }
        );
        assert_eq!(during.valid_until, Some(at(50)));

        let lapsed = effective(org, Some(&a), Some(&pro), rows, at(50));
        assert_eq!(lapsed.limits.len(), 1);
        let (limit, source) = &lapsed.limits[0];
        assert_eq!(limit.value, dec!(1000));
        assert_eq!(limit.id, pro.limits[0].id);
        assert_eq!(limit.created_at, pro.created_at);
        assert_eq!(
            source,
            &EntitlementSource::Plan {
                plan: pro.plan.clone()
            }
        );
        assert_eq!(lapsed.valid_until, None);
        let e = explain(
            &lapsed,
            &Entitlement::Limit {
                metric: MetricKey::TOKENS,
                period: Period::Monthly,
            },
            at(50),
        );
        assert_eq!(e.source, Some(source.clone()));
        assert_eq!(
            e.value,
            Some(EntitlementValue::Limit {
                id: pro.limits[0].id,
                value: dec!(1000),
                mode: LimitMode::Hard
            })
        );
    }

    #[test]
    fn per_user_rows_are_kept_beside_the_plan_limit() {
        let org = OrgId::new_v7();
        let pro = version("pro", 1, dec!(1000));
        let user = UserId::new_v7();
        let rows = [row(org, LimitScope::User(user), dec!(5), None)];
        let e = effective(
            org,
            None,
            Some(&pro),
            Overrides {
                limits: &rows,
                ..none()
            },
            at(10),
        );
        assert_eq!(e.limits.len(), 2);
        assert_eq!(e.limits[0].0.scope, LimitScope::Organization);
        assert_eq!(e.limits[0].0.value, dec!(1000));
        assert_eq!(e.limits[1].0.scope, LimitScope::User(user));
        // The user's own limit is not the org-wide one explain reports.
        let x = explain(
            &e,
            &Entitlement::Limit {
                metric: MetricKey::TOKENS,
                period: Period::Monthly,
            },
            at(10),
        );
        assert!(matches!(x.source, Some(EntitlementSource::Plan { .. })));
    }

    #[test]
    fn without_a_plan_the_rows_alone_count_and_expired_ones_are_absent() {
        let org = OrgId::new_v7();
        let features = [
            Feature {
                key: FeatureKey::from_static("b"),
                enabled: true,
                config: json!(null),
                updated_at: at(0),
                expires_at: Some(at(20)),
            },
            Feature {
                key: FeatureKey::from_static("a"),
                enabled: false,
                config: json!(null),
                updated_at: at(0),
                expires_at: None,
            },
        ];
        let e = effective(
            org,
            None,
            None,
            Overrides {
                features: &features,
                ..none()
            },
            at(20),
        );
        assert_eq!(e.plan, None);
        assert_eq!(e.features.len(), 1);
        assert_eq!(e.features[0].0.key.as_str(), "a");
        let early = effective(
            org,
            None,
            None,
            Overrides {
                features: &features,
                ..none()
            },
            at(5),
        );
        assert_eq!(
            early
                .features
                .iter()
                .map(|(f, _)| f.key.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(early.valid_until, Some(at(20)));
        let x = explain(
            &early,
            &Entitlement::Feature {
                key: FeatureKey::from_static("zzz"),
            },
            at(5),
        );
        assert!(x.is_default() && x.value.is_none() && x.plan.is_none());
    }

    #[test]
    fn valid_until_is_the_earliest_future_expiry_or_trial_end() {
        let org = OrgId::new_v7();
        let pro = version("pro", 1, dec!(1000));
        let a = trial(org, 300, None);
        let limits = [
            row(org, LimitScope::Organization, dec!(1), Some(10)),
            row(org, LimitScope::User(UserId::new_v7()), dec!(1), Some(200)),
        ];
        let rates = [RateLimit {
            id: LimitId::new_v7(),
            org,
            scope: LimitScope::Organization,
            metric: MetricKey::from_static("requests"),
            window: RateWindow::Minute,
            value: dec!(1),
            burst: dec!(1),
            mode: LimitMode::Soft,
            created_at: at(0),
            expires_at: Some(at(150)),
        }];
        let rows = Overrides {
            features: &[],
            limits: &limits,
            rate_limits: &rates,
        };
        let e = |now| effective(org, Some(&a), Some(&pro), rows, at(now)).valid_until;
        assert_eq!(e(0), Some(at(10)));
        assert_eq!(e(10), Some(at(150)));
        assert_eq!(e(150), Some(at(200)));
        assert_eq!(e(200), Some(at(300)));
        assert_eq!(e(300), None);
        // The override rate limit replaces the plan's while it lasts.
        let during = effective(org, Some(&a), Some(&pro), rows, at(100));
        assert_eq!(during.rate_limits.len(), 1);
        assert_eq!(during.rate_limits[0].0.mode, LimitMode::Soft);
        let after = effective(org, Some(&a), Some(&pro), rows, at(150));
        assert_eq!(after.rate_limits[0].0.id, pro.rate_limits[0].id);
    }

    #[test]
    fn a_user_is_shown_their_own_rows_and_their_expiries_only() {
        let org = OrgId::new_v7();
        let (mine, theirs) = (UserId::new_v7(), UserId::new_v7());
        let pro = version("pro", 1, dec!(1000));
        let a = PlanAssignment {
            trial_ends_at: None,
            ..trial(org, 0, None)
        };
        let limits = [
            row(org, LimitScope::User(mine), dec!(5), Some(20)),
            row(org, LimitScope::User(theirs), dec!(6), Some(10)),
        ];
        let rows = Overrides {
            features: &[],
            limits: &limits,
            rate_limits: &[],
        };
        let all = effective(org, Some(&a), Some(&pro), rows, at(5));
        assert_eq!(all.valid_until, Some(at(10)));
        let shown = |user| for_user(all.clone(), user, at(5));
        let own = shown(mine);
        assert_eq!(own.valid_until, Some(at(20)));
        assert_eq!(own.limits.len(), 2, "the plan's and their own");
        assert!(own.limits.iter().all(|(l, _)| l.scope.applies_to(mine)));
        let other = shown(UserId::new_v7());
        assert_eq!(other.valid_until, None);
        assert_eq!(other.limits.len(), 1);
        assert_eq!(other.limits[0].0.id, pro.limits[0].id);
        assert_eq!(other.rate_limits.len(), 1, "org-wide rows stay");
    }
}
