//! The plan pages: the operator's catalog (create, edit as a new version,
//! migrate organizations), an organization's assignment, trial and
//! overrides, and the organization's own plan.
//!
//! - `GET /operator/plans`: every plan with its versions, a form to create
//!   a plan and one to migrate organizations between two versions of a
//!   plan (one organization, or all on the version). Operator only.
//! - `GET /operator/plans/{key}`: each version of one plan in full, and a
//!   form prefilled from the latest version that creates the next one
//!   (versions are never changed). Operator only.
//! - The operator's page of an organization (`operator.rs`) shows its
//!   assignment, trial and effective entitlements with their sources
//!   ([`org_section`]), with forms to assign a plan (or none), start a
//!   trial with a fallback, and move it to another version; its feature,
//!   limit and rate-limit rows are the overrides, set with an optional
//!   expiry.
//! - `GET /orgs/{org}/plan`: for the organization's members, its plan,
//!   version and trial, and what it includes, each entry with its source.
//!
//! Plans are written as text, one entry a line ([`parse_features`],
//! [`parse_limits`], [`parse_rate_limits`]), so the forms work without
//! JavaScript. Every form reads its body through [`CsrfForm`]; the facade
//! checks the operator handle and the role matrix again on every call.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::operator::{answer, limit_type, number, operator_post, zone_and_now};
use super::usage::local_time;
use super::{Chrome, Done, chrome, context, path_id};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::form::CsrfForm;
use crate::console::render::{Base, ConsoleError, form_refusal, page, see_other};
use crate::error::{Error, ErrorKind, Result, quoted};
use crate::ids::{FeatureKey, OrgId, PlanKey};
use crate::limits::rate::{NewRateLimit, RateLimit, RateWindow};
use crate::limits::{Limit, LimitMode, LimitScope, NewLimit};
use crate::model::plan::{
    EntitlementSource, Entitlements, MigratePlan, NewPlanVersion, PlanRef, PlanVersion,
};
use crate::model::{Feature, TenantContext};
use crate::tenancy::Operator;

/// This area's pages (`GET`); the router adds them.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/operator/plans", get(catalog)),
        ("/operator/plans/{key}", get(plan_page)),
        ("/orgs/{org}/plan", get(org_plan)),
    ]
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/operator/plans", post(put_version)),
        ("/operator/plans/migrate", post(migrate)),
        ("/operator/orgs/{org}/plan", post(assign)),
        ("/operator/orgs/{org}/plan/trial", post(start_trial)),
        (
            "/operator/orgs/{org}/features/{key}/remove",
            post(remove_feature),
        ),
    ]
}

// ---- notices ------------------------------------------------------------------

/// The notice of a plan form's redirect to the operator's page of an
/// organization; anything else shows nothing (the text never comes from
/// the request).
pub(super) fn org_notice(done: &Done) -> Option<String> {
    let text = match done.done.as_deref()? {
        "plan-assigned" => "The plan was assigned.",
        "plan-removed" => "The organization is on no plan now.",
        "plan-unassigned" => "The organization had no plan.",
        "trial" => "The trial started.",
        "migrated" => "The organization moved to the other version.",
        "not-migrated" => "The organization was not on that version: nothing moved.",
        "feature-removed" => "The feature override was removed: the plan applies again.",
        "feature-unknown" => "There was no such feature override.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// The `done` and `moved` query parameters of the catalog's redirects.
#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct CatalogDone {
    done: Option<String>,
    moved: Option<String>,
    version: Option<String>,
}

impl CatalogDone {
    fn notice(&self) -> Option<String> {
        let number = |raw: &Option<String>| raw.as_deref().and_then(|n| n.parse::<u64>().ok());
        Some(match self.done.as_deref()? {
            "plan-created" => "The plan was created: version 1.".to_owned(),
            "version-created" => match number(&self.version) {
                Some(v) => format!(
                    "Version {v} was created. Organizations stay on theirs until you migrate them."
                ),
                None => "The version was created.".to_owned(),
            },
            "migrated" => match number(&self.moved) {
                Some(1) => "1 organization moved.".to_owned(),
                Some(n) => format!("{n} organizations moved."),
                None => "The organizations moved.".to_owned(),
            },
            _ => return None,
        })
    }
}

// ---- plans as text ------------------------------------------------------------

/// The lines of a textarea that say something: trimmed, without blank
/// lines and `#` comments, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// `error` with the textarea `field` and line `n` in front of its message.
fn on_line(field: &'static str, n: usize, error: Error) -> Error {
    Error::invalid_input(field, format_args!("line {n}: {}", error.message()))
}

/// Features as the form writes them, one a line: `key` (on), `key off`,
/// or `key {"json": "config"}` (on, with that configuration). Added to
/// `plan` in order; a bad line is `InvalidInput` naming `features` and
/// the line.
pub(in crate::console) fn parse_features(
    mut plan: NewPlanVersion,
    text: &str,
) -> Result<NewPlanVersion> {
    for (n, line) in lines(text) {
        let (key, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(k, r)| (k, r.trim()));
        let added = FeatureKey::parse(key).and_then(|key| match rest {
            "" | "on" => plan.clone().feature(key, true),
            "off" => plan.clone().feature(key, false),
            json => match serde_json::from_str::<serde_json::Value>(json) {
                Ok(config) => plan.clone().feature_config(key, config),
                Err(e) => Err(Error::invalid_input(
                    "config",
                    format_args!("{} is neither on, off nor JSON ({e})", quoted(json)),
                )),
            },
        });
        plan = added.map_err(|e| on_line("features", n, e))?;
    }
    Ok(plan)
}

/// A limit's `hard` or `soft`, where a line may end with it.
fn split_mode(line: &str) -> Result<(&str, LimitMode)> {
    match line.rsplit_once(char::is_whitespace) {
        Some((rest, word)) if word == "hard" || word == "soft" => {
            Ok((rest.trim(), LimitMode::parse(word)?))
        }
        _ => Ok((line, LimitMode::Hard)),
    }
}

/// Usage limits as the form writes them, one a line: `monthly_tokens
/// 100000`, optionally followed by `hard` (the default) or `soft`. A bad
/// line is `InvalidInput` naming `limits` and the line.
pub(in crate::console) fn parse_limits(
    mut plan: NewPlanVersion,
    text: &str,
) -> Result<NewPlanVersion> {
    for (n, line) in lines(text) {
        let added = split_mode(line).and_then(|(rest, mode)| {
            let mut words = rest.split_whitespace();
            let (Some(limit_type), Some(value), None) = (words.next(), words.next(), words.next())
            else {
                return Err(Error::invalid_input(
                    "limits",
                    format_args!("{} is not `<limit type> <value> [hard|soft]`", quoted(line)),
                ));
            };
            let limit =
                NewLimit::from_limit_type(limit_type, number("limit_value", value)?)?.mode(mode);
            plan.clone().limit(limit)
        });
        plan = added.map_err(|e| on_line("limits", n, e))?;
    }
    Ok(plan)
}

/// Rate limits as the form writes them, one a line: `minute_requests 600`,
/// optionally `burst 900` (the default: the value), then `hard` (the
/// default) or `soft`. A bad line is `InvalidInput` naming `rate_limits`
/// and the line.
pub(in crate::console) fn parse_rate_limits(
    mut plan: NewPlanVersion,
    text: &str,
) -> Result<NewPlanVersion> {
    for (n, line) in lines(text) {
        let added = split_mode(line).and_then(|(rest, mode)| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (limit_type, value, burst) = match words.as_slice() {
                [t, v] => (*t, *v, None),
                [t, v, "burst", b] => (*t, *v, Some(*b)),
                _ => {
                    return Err(Error::invalid_input(
                        "rate_limits",
                        format_args!(
                            "{} is not `<limit type> <value> [burst <burst>] [hard|soft]`",
                            quoted(line)
                        ),
                    ));
                }
            };
            let mut limit =
                NewRateLimit::from_limit_type(limit_type, number("limit_value", value)?)?
                    .mode(mode);
            if let Some(burst) = burst {
                limit = limit.burst(number("burst", burst)?)?;
            }
            plan.clone().rate_limit(limit)
        });
        plan = added.map_err(|e| on_line("rate_limits", n, e))?;
    }
    Ok(plan)
}

/// A plan version as the form's three textareas, the text the parsers
/// read back into the same entries.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(in crate::console) struct PlanText {
    features: String,
    limits: String,
    rate_limits: String,
}

impl PlanText {
    fn of(version: &PlanVersion) -> PlanText {
        let features = version
            .features
            .iter()
            .map(|f| match (f.enabled, f.config.is_null()) {
                (false, _) => format!("{} off\n", f.key),
                (true, true) => format!("{}\n", f.key),
                (true, false) => format!("{} {}\n", f.key, f.config),
            })
            .collect();
        let limits = version
            .limits
            .iter()
            .map(|l| {
                format!(
                    "{} {} {}\n",
                    l.limit_type(),
                    l.value.normalize(),
                    l.mode.as_str()
                )
            })
            .collect();
        let rate_limits = version
            .rate_limits
            .iter()
            .map(|r| {
                format!(
                    "{} {} burst {} {}\n",
                    r.limit_type(),
                    r.value.normalize(),
                    r.burst.normalize(),
                    r.mode.as_str()
                )
            })
            .collect();
        PlanText {
            features,
            limits,
            rate_limits,
        }
    }

    /// The version these lines describe, as plan `key` named `name`.
    fn parse(&self, key: PlanKey, name: &str) -> Result<NewPlanVersion> {
        let plan = NewPlanVersion::new(key, name.trim())?;
        let plan = parse_features(plan, &self.features)?;
        let plan = parse_limits(plan, &self.limits)?;
        parse_rate_limits(plan, &self.rate_limits)
    }
}

/// One entry of a version, as the pages list them.
struct EntryRow {
    kind: &'static str,
    entry: String,
    value: String,
}

fn version_rows(version: &PlanVersion) -> Vec<EntryRow> {
    let features = version.features.iter().map(|f| EntryRow {
        kind: "feature",
        entry: f.key.to_string(),
        value: feature_value(f.enabled, &f.config),
    });
    let limits = version.limits.iter().map(|l| EntryRow {
        kind: "limit",
        entry: l.limit_type().to_string(),
        value: format!("{} {}", l.value.normalize(), l.mode.as_str()),
    });
    let rates = version.rate_limits.iter().map(|r| EntryRow {
        kind: "rate limit",
        entry: r.limit_type().to_string(),
        value: rate_value(r.value, r.window, r.burst, r.mode),
    });
    features.chain(limits).chain(rates).collect()
}

/// A rate limit's value as the pages show it: `60 per minute, burst 60,
/// hard`.
fn rate_value(value: Decimal, window: RateWindow, burst: Decimal, mode: LimitMode) -> String {
    format!(
        "{} per {}, burst {}, {}",
        value.normalize(),
        window.as_str(),
        burst.normalize(),
        mode.as_str()
    )
}

fn feature_value(enabled: bool, config: &serde_json::Value) -> String {
    match (enabled, config.is_null()) {
        (false, _) => "off".to_owned(),
        (true, true) => "on".to_owned(),
        (true, false) => format!("on, {config}"),
    }
}

/// `pro v2`.
fn plan_name(plan: &PlanRef) -> String {
    format!("{} v{}", plan.key, plan.version)
}

/// `pro@2`, as the plan pickers post it.
fn plan_value(plan: &PlanRef) -> String {
    format!("{}@{}", plan.key, plan.version)
}

/// A plan picker's value (`pro@2`); empty is `None` (no plan).
fn parse_plan(field: &'static str, input: &str) -> Result<Option<PlanRef>> {
    let input = input.trim();
    if input.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::invalid_input(
            field,
            format_args!("{} is not a plan version (`pro@2`)", quoted(input)),
        )
    };
    let (key, version) = input.split_once('@').ok_or_else(bad)?;
    let version = version
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(bad)?;
    Ok(Some(PlanRef {
        key: PlanKey::parse(key)?,
        version,
    }))
}

/// A version number from a form field, or `InvalidInput` naming `field`.
fn parse_version(field: &'static str, input: &str) -> Result<u32> {
    input
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            Error::invalid_input(
                field,
                format_args!("{} is not a version number (1, 2, …)", quoted(input)),
            )
        })
}

/// An instant from a date field, in the organization's zone `tz`:
/// `2026-12-01` (its start), `2026-12-01T08:30` or RFC 3339. Empty is
/// `None`; anything else, or an instant not after `now`, is `InvalidInput`
/// naming `field`.
pub(in crate::console) fn parse_instant(
    field: &'static str,
    input: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let input = input.trim();
    if input.is_empty() {
        return Ok(None);
    }
    let local = |naive: NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|at| at.with_timezone(&Utc))
    };
    let at = DateTime::parse_from_rfc3339(input)
        .ok()
        .map(|at| at.with_timezone(&Utc))
        .or_else(|| {
            ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(input, f).ok())
                .and_then(local)
        })
        .or_else(|| {
            NaiveDate::parse_from_str(input, "%Y-%m-%d")
                .ok()
                .and_then(|d| local(d.and_hms_opt(0, 0, 0)?))
        })
        .ok_or_else(|| {
            Error::invalid_input(
                field,
                format_args!(
                    "{} is not a date (2026-12-01) in {}",
                    quoted(input),
                    tz.name()
                ),
            )
        })?;
    if at <= now {
        return Err(Error::invalid_input(
            field,
            format_args!("{} is not in the future", local_time(at, tz)),
        ));
    }
    Ok(Some(at))
}

/// Where an effective entry comes from, as the pages say it.
fn source_text(source: &EntitlementSource, tz: Tz) -> String {
    match source {
        EntitlementSource::Plan { plan } => format!("plan {}", plan_name(plan)),
        EntitlementSource::Override { expires_at: None } => "override".to_owned(),
        EntitlementSource::Override {
            expires_at: Some(at),
        } => format!("override until {}", local_time(*at, tz)),
    }
}

/// When an override lapses, as the operator's tables say it.
pub(super) fn expiry_text(expires_at: Option<DateTime<Utc>>, tz: Tz) -> String {
    expires_at.map_or_else(|| "never".to_owned(), |at| local_time(at, tz))
}

/// One effective entry with its source.
pub(in crate::console) struct EffectiveRow {
    pub(super) kind: &'static str,
    pub(super) entry: String,
    pub(super) scope: String,
    pub(super) value: String,
    pub(super) source: String,
}

/// The effective entries of `view`, features first; `user` names a
/// per-user limit (the viewer's own is "you").
fn effective_rows(
    view: &Entitlements,
    tz: Tz,
    user: &dyn Fn(LimitScope) -> String,
) -> Vec<EffectiveRow> {
    let features = view
        .features
        .iter()
        .map(|(f, source): &(Feature, EntitlementSource)| EffectiveRow {
            kind: "feature",
            entry: f.key.to_string(),
            scope: "organization".to_owned(),
            value: feature_value(f.enabled, &f.config),
            source: source_text(source, tz),
        });
    let limits = view
        .limits
        .iter()
        .map(|(l, source): &(Limit, EntitlementSource)| EffectiveRow {
            kind: "limit",
            entry: limit_type(l.metric.clone(), l.period),
            scope: user(l.scope),
            value: format!("{} {}", l.value.normalize(), l.mode.as_str()),
            source: source_text(source, tz),
        });
    let rates =
        view.rate_limits.iter().map(
            |(r, source): &(RateLimit, EntitlementSource)| EffectiveRow {
                kind: "rate limit",
                entry: r.limit_type().to_string(),
                scope: user(r.scope),
                value: rate_value(r.value, r.window, r.burst, r.mode),
                source: source_text(source, tz),
            },
        );
    features.chain(limits).chain(rates).collect()
}

/// What an organization's plan is, in sentences.
fn plan_summary(view: &Entitlements, tz: Tz, now: DateTime<Utc>) -> Vec<String> {
    let Some(a) = &view.assignment else {
        return vec!["No plan: only the organization's own rows (the overrides) apply.".to_owned()];
    };
    let mut lines = vec![format!(
        "On {} since {}.",
        plan_name(&a.plan),
        local_time(a.started_at, tz)
    )];
    if let Some(ends) = a.trial_ends_at {
        let then = a
            .fallback
            .as_ref()
            .map_or_else(|| "no plan".to_owned(), plan_name);
        lines.push(if ends > now {
            format!("A trial, until {}; then {then}.", local_time(ends, tz))
        } else {
            format!("The trial ended {}: on {then} now.", local_time(ends, tz))
        });
    }
    lines
}

// ---- the catalog --------------------------------------------------------------

/// One plan of the catalog: its latest version and how many there are.
struct CatalogRow {
    key: String,
    name: String,
    href: String,
    versions: String,
    features: String,
    limits: String,
}

/// What the create and edit forms show: the posted values again after a
/// refusal, else a blank plan or the latest version.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct PlanForm {
    key: String,
    name: String,
    /// The version an edit started from (empty: a new plan).
    based_on: String,
    #[serde(flatten)]
    text: PlanText,
}

#[derive(Template)]
#[template(path = "console/plans.html")]
struct Catalog {
    chrome: Chrome,
    error: Option<String>,
    plans: Vec<CatalogRow>,
    draft: PlanForm,
    migrate: MigrateForm,
    create_action: String,
    migrate_action: String,
    csrf: String,
}

/// All versions of every plan, by key, each key's versions in order.
fn by_key(versions: Vec<PlanVersion>) -> BTreeMap<PlanKey, Vec<PlanVersion>> {
    let mut plans: BTreeMap<PlanKey, Vec<PlanVersion>> = BTreeMap::new();
    for v in versions {
        plans.entry(v.plan.key.clone()).or_default().push(v);
    }
    for versions in plans.values_mut() {
        versions.sort_by_key(|v| v.plan.version);
    }
    plans
}

async fn catalog_page(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    notice: Option<String>,
    error: Option<String>,
    draft: PlanForm,
    migrate: MigrateForm,
) -> std::result::Result<Catalog, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let plans = by_key(operator.plan_versions(None).await?)
        .into_iter()
        .filter_map(|(key, versions)| {
            let latest = versions.last()?;
            Some(CatalogRow {
                href: base.at(&format!("/operator/plans/{key}")),
                key: key.to_string(),
                name: latest.name.clone(),
                versions: versions
                    .iter()
                    .map(|v| v.plan.version.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                features: latest
                    .features
                    .iter()
                    .map(|f| {
                        if f.enabled {
                            f.key.to_string()
                        } else {
                            format!("{} off", f.key)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                limits: latest
                    .limits
                    .iter()
                    .map(|l| format!("{} {}", l.limit_type(), l.value.normalize()))
                    .chain(
                        latest
                            .rate_limits
                            .iter()
                            .map(|r| format!("{} {}", r.limit_type(), r.value.normalize())),
                    )
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect();
    let chrome = chrome(config, viewer, base, "Plans", None, "plans", notice).await?;
    Ok(Catalog {
        chrome,
        error,
        plans,
        draft,
        migrate,
        create_action: base.at("/operator/plans"),
        migrate_action: base.at("/operator/plans/migrate"),
        csrf: viewer.csrf.clone(),
    })
}

/// `GET /operator/plans`.
async fn catalog(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Query(done): Query<CatalogDone>,
) -> std::result::Result<Response, ConsoleError> {
    viewer.operator()?;
    let data = catalog_page(
        &config,
        &viewer,
        &base,
        done.notice(),
        None,
        PlanForm::default(),
        MigrateForm::default(),
    )
    .await?;
    Ok(page(&data))
}

// ---- one plan -----------------------------------------------------------------

/// One version of a plan, in full.
struct VersionBlock {
    version: u32,
    name: String,
    created_at: String,
    rows: Vec<EntryRow>,
}

#[derive(Template)]
#[template(path = "console/plan.html")]
struct PlanPage {
    chrome: Chrome,
    error: Option<String>,
    key: String,
    name: String,
    latest: u32,
    next: u32,
    /// Newest first.
    versions: Vec<VersionBlock>,
    draft: PlanForm,
    edit_action: String,
    migrate_action: String,
    catalog_href: String,
    csrf: String,
}

async fn plan_page_data(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    key: &str,
    notice: Option<String>,
    error: Option<String>,
    draft: Option<PlanForm>,
) -> std::result::Result<PlanPage, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let key: PlanKey = path_id(key)?;
    let mut versions = operator.plan_versions(Some(&key)).await?;
    versions.sort_by_key(|v| v.plan.version);
    let latest = versions.last().ok_or_else(ConsoleError::not_found)?;
    let draft = draft.unwrap_or_else(|| PlanForm {
        key: key.to_string(),
        name: latest.name.clone(),
        based_on: latest.plan.version.to_string(),
        text: PlanText::of(latest),
    });
    let chrome = chrome(
        config,
        viewer,
        base,
        format!("Plan {key}"),
        None,
        "plans",
        notice,
    )
    .await?;
    Ok(PlanPage {
        chrome,
        error,
        key: key.to_string(),
        name: latest.name.clone(),
        latest: latest.plan.version,
        next: latest.plan.version.saturating_add(1),
        versions: versions
            .iter()
            .rev()
            .map(|v| VersionBlock {
                version: v.plan.version,
                name: v.name.clone(),
                created_at: local_time(v.created_at, Tz::UTC),
                rows: version_rows(v),
            })
            .collect(),
        draft,
        edit_action: base.at("/operator/plans"),
        migrate_action: base.at("/operator/plans/migrate"),
        catalog_href: base.at("/operator/plans"),
        csrf: viewer.csrf.clone(),
    })
}

/// `GET /operator/plans/{key}`.
async fn plan_page(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(key): Path<String>,
    Query(done): Query<CatalogDone>,
) -> std::result::Result<Response, ConsoleError> {
    viewer.operator()?;
    let data = plan_page_data(&config, &viewer, &base, &key, done.notice(), None, None).await?;
    Ok(page(&data))
}

/// `POST /operator/plans`: a new plan (`based_on` empty; a key that
/// exists is refused) or, from the edit form, the next version of `key`
/// (refused if another version was created since the one it started from).
/// Either way a new immutable version; nobody moves to it.
async fn put_version(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> std::result::Result<Response, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let created = create_version(&operator, &form).await;
    match created {
        Ok(version) if version.plan.version == 1 => {
            Ok(see_other(&base.at("/operator/plans?done=plan-created")))
        }
        Ok(version) => Ok(see_other(&base.at(&format!(
            "/operator/plans/{}?done=version-created&version={}",
            version.plan.key, version.plan.version
        )))),
        Err(e) => {
            let (status, message) = form_refusal(e)?;
            let mut response = if form.based_on.trim().is_empty() {
                page(
                    &catalog_page(
                        &config,
                        &viewer,
                        &base,
                        None,
                        Some(message),
                        form,
                        MigrateForm::default(),
                    )
                    .await?,
                )
            } else {
                let key = form.key.clone();
                page(
                    &plan_page_data(
                        &config,
                        &viewer,
                        &base,
                        &key,
                        None,
                        Some(message),
                        Some(form),
                    )
                    .await?,
                )
            };
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

async fn create_version(operator: &Operator<'_>, form: &PlanForm) -> Result<PlanVersion> {
    let key = PlanKey::parse(form.key.trim())?;
    let plan = form.text.parse(key.clone(), &form.name)?;
    let latest = operator
        .plan_versions(Some(&key))
        .await?
        .into_iter()
        .map(|v| v.plan.version)
        .max();
    let based_on = form.based_on.trim();
    match (based_on.is_empty(), latest) {
        (true, Some(_)) => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("plan {key} exists: edit it to create its next version"),
            ));
        }
        (false, None) => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("there is no plan {key} to edit"),
            ));
        }
        (false, Some(latest)) if parse_version("based_on", based_on)? != latest => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "version {latest} of {key} was created meanwhile: reload the page to edit it"
                ),
            ));
        }
        _ => {}
    }
    operator.create_plan_version(plan).await
}

// ---- migrating ----------------------------------------------------------------

/// Moves organizations between two versions of one plan.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct MigrateForm {
    key: String,
    from_version: String,
    to_version: String,
    /// One organization's id; empty: every organization on the version.
    org: String,
}

impl MigrateForm {
    fn request(&self) -> Result<MigratePlan> {
        let key = PlanKey::parse(self.key.trim())?;
        let from = parse_version("from_version", &self.from_version)?;
        let to = parse_version("to_version", &self.to_version)?;
        if from == to {
            return Err(Error::invalid_input(
                "to_version",
                "is the version they are on already",
            ));
        }
        let request = MigratePlan::new(PlanRef { key, version: from }, to);
        let org = self.org.trim();
        Ok(if org.is_empty() {
            request
        } else {
            request.org(OrgId::parse(org)?)
        })
    }
}

/// `POST /operator/plans/migrate`: one organization (back to its page) or
/// every organization on a version (back to the catalog, saying how many
/// moved). Usage is untouched.
async fn migrate(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    CsrfForm(form): CsrfForm<MigrateForm>,
) -> std::result::Result<Response, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let (moved, one) = match form.request() {
        Ok(request) => {
            let one = request.org;
            (operator.migrate_plan(request).await, one)
        }
        Err(e) => (Err(e), None),
    };
    match (moved, one) {
        (Ok(moved), Some(org)) => {
            let done = if moved == 0 {
                "not-migrated"
            } else {
                "migrated"
            };
            Ok(see_other(
                &base.at(&format!("/operator/orgs/{org}?done={done}")),
            ))
        }
        (Ok(moved), None) => Ok(see_other(
            &base.at(&format!("/operator/plans?done=migrated&moved={moved}")),
        )),
        (Err(e), _) => {
            let (status, message) = form_refusal(e)?;
            let data = catalog_page(
                &config,
                &viewer,
                &base,
                None,
                Some(message),
                PlanForm::default(),
                form,
            )
            .await?;
            let mut response = page(&data);
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

// ---- an organization, on the operator's page ------------------------------------

/// A choice of a plan picker.
pub(in crate::console) struct PlanOption {
    pub(super) value: String,
    pub(super) label: String,
    pub(super) selected: bool,
}

/// Another version of the organization's plan it can move to.
pub(in crate::console) struct MoveOption {
    pub(super) version: u32,
    pub(super) label: String,
}

/// The plan section of the operator's page of an organization.
pub(in crate::console) struct OrgSection {
    pub(super) summary: Vec<String>,
    /// Its current plan's key and version, for the move form.
    pub(super) current_key: String,
    pub(super) current_version: u32,
    /// The other versions of its plan; empty: no move form.
    pub(super) moves: Vec<MoveOption>,
    /// Every version in the catalog, for the assign and trial forms.
    pub(super) options: Vec<PlanOption>,
    /// The same, none selected, for the trial's fallback.
    pub(super) fallback_options: Vec<PlanOption>,
    pub(super) effective: Vec<EffectiveRow>,
    pub(super) assign_action: String,
    pub(super) trial_action: String,
    pub(super) migrate_action: String,
    pub(super) catalog_href: String,
}

/// The plan section of `org`'s operator page.
pub(in crate::console) async fn org_section(
    operator: &Operator<'_>,
    base: &Base,
    org: OrgId,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<OrgSection> {
    let view = operator.entitlements(org).await?;
    let catalog = by_key(operator.plan_versions(None).await?);
    let current = view.assignment.as_ref().map(|a| a.plan.clone());
    let option = |v: &PlanVersion, selected: bool| PlanOption {
        value: plan_value(&v.plan),
        label: format!("{} ({})", plan_name(&v.plan), v.name),
        selected,
    };
    let all = || catalog.values().flatten();
    let options = all()
        .map(|v| option(v, current.as_ref() == Some(&v.plan)))
        .collect();
    let fallback_options = all().map(|v| option(v, false)).collect();
    let moves = current
        .as_ref()
        .and_then(|c| catalog.get(&c.key).map(|vs| (c, vs)))
        .map(|(c, versions)| {
            versions
                .iter()
                .filter(|v| v.plan.version != c.version)
                .map(|v| MoveOption {
                    version: v.plan.version,
                    label: format!("{} ({})", plan_name(&v.plan), v.name),
                })
                .collect()
        })
        .unwrap_or_default();
    let user = |scope: LimitScope| match scope.user() {
        Some(user) => format!("user {user}"),
        None => "organization".to_owned(),
    };
    Ok(OrgSection {
        summary: plan_summary(&view, tz, now),
        current_key: current
            .as_ref()
            .map(|c| c.key.to_string())
            .unwrap_or_default(),
        current_version: current.as_ref().map_or(0, |c| c.version),
        moves,
        options,
        fallback_options,
        effective: effective_rows(&view, tz, &user),
        assign_action: base.at(&format!("/operator/orgs/{org}/plan")),
        trial_action: base.at(&format!("/operator/orgs/{org}/plan/trial")),
        migrate_action: base.at("/operator/plans/migrate"),
        catalog_href: base.at("/operator/plans"),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct AssignForm {
    /// `pro@2`; empty: no plan (the assignment is removed).
    plan: String,
}

/// `POST /operator/orgs/{org}/plan`: puts the organization on a plan
/// version (no trial), or on none.
async fn assign(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<AssignForm>,
) -> std::result::Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    match parse_plan("plan", &form.plan) {
        Ok(Some(plan)) => {
            let assigned = operator.assign_plan(org, plan).await;
            answer(&config, &viewer, &base, org, "plan-assigned", assigned).await
        }
        Ok(None) => {
            let removed = operator.remove_plan(org).await;
            let done = match removed {
                Ok(false) => "plan-unassigned",
                _ => "plan-removed",
            };
            answer(&config, &viewer, &base, org, done, removed).await
        }
        Err(e) => answer::<()>(&config, &viewer, &base, org, "", Err(e)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct TrialForm {
    plan: String,
    /// A date (the start of that day in the organization's zone) or an
    /// instant.
    ends: String,
    /// `free@1`; empty: no plan after the trial.
    fallback: String,
}

/// `POST /operator/orgs/{org}/plan/trial`: a trial of a plan version until
/// `ends`, then `fallback` (or no plan), with no job run.
async fn start_trial(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<TrialForm>,
) -> std::result::Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let started = async {
        let (tz, now) = zone_and_now(&config, org).await?;
        let plan = parse_plan("plan", &form.plan)?
            .ok_or_else(|| Error::invalid_input("plan", "choose the plan of the trial"))?;
        let ends = parse_instant("trial_ends_at", &form.ends, tz, now)?
            .ok_or_else(|| Error::invalid_input("trial_ends_at", "choose when the trial ends"))?;
        let fallback = parse_plan("fallback", &form.fallback)?;
        operator.start_trial(org, plan, ends, fallback).await
    }
    .await;
    answer(&config, &viewer, &base, org, "trial", started).await
}

/// `POST /operator/orgs/{org}/features/{key}/remove`: deletes the
/// organization's own row of the feature (its override): the plan's
/// entry, or off, applies again.
async fn remove_feature(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, key)): Path<(String, String)>,
    _checked: CsrfForm,
) -> std::result::Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let removed = operator.remove_feature(org, &key).await;
    let done = match removed {
        Ok(false) => "feature-unknown",
        _ => "feature-removed",
    };
    answer(&config, &viewer, &base, org, done, removed).await
}

// ---- the organization's own page ------------------------------------------------

#[derive(Template)]
#[template(path = "console/plan_org.html")]
struct OrgPlan {
    chrome: Chrome,
    org_name: String,
    summary: Vec<String>,
    effective: Vec<EffectiveRow>,
}

/// `GET /orgs/{org}/plan`: the organization's plan and what it includes,
/// for its members (403 for anyone else).
async fn org_plan(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
) -> std::result::Result<Response, ConsoleError> {
    let ctx: TenantContext = context(&config, &viewer, &org).await?;
    let view = config.tenancy.entitlements(&ctx).await?;
    let tz = ctx.organization().timezone;
    // The view holds the viewer's own per-user rows only.
    let user = |scope: LimitScope| scope.user().map_or("organization", |_| "you").to_owned();
    let summary = if view.assignment.is_none() {
        vec!["No plan: the platform operator set what the organization gets.".to_owned()]
    } else {
        plan_summary(&view, tz, config.tenancy.now())
    };
    let chrome = chrome(&config, &viewer, &base, "Plan", Some(&ctx), "plan", None).await?;
    Ok(page(&OrgPlan {
        chrome,
        org_name: ctx.organization().name.clone(),
        summary,
        effective: effective_rows(&view, tz, &user),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> NewPlanVersion {
        NewPlanVersion::new(PlanKey::parse("pro").unwrap(), "Pro").unwrap()
    }

    #[test]
    fn a_plan_reads_back_from_the_text_it_is_shown_as() {
        let text = PlanText {
            features: "veo_avatars\n# a comment\n\nexports off\nbrand_kits {\"max\": 3}\n"
                .to_owned(),
            limits: "monthly_tokens 100000\ndaily_images 50 soft\n".to_owned(),
            rate_limits: "minute_requests 600 burst 900 soft\nsecond_requests 10\n".to_owned(),
        };
        let plan = text.parse(PlanKey::parse("pro").unwrap(), " Pro ").unwrap();
        assert_eq!(plan.name(), "Pro");
        let version = PlanVersion {
            plan: PlanRef {
                key: PlanKey::parse("pro").unwrap(),
                version: 1,
            },
            name: "Pro".to_owned(),
            features: plan.features().to_vec(),
            limits: plan.limits().to_vec(),
            rate_limits: plan.rate_limits().to_vec(),
            created_at: DateTime::UNIX_EPOCH,
        };
        let shown = PlanText::of(&version);
        assert_eq!(
            shown.features,
            "veo_avatars\nexports off\nbrand_kits {\"max\":3}\n"
        );
        assert_eq!(
            shown.limits,
            "monthly_tokens 100000 hard\ndaily_images 50 soft\n"
        );
        assert_eq!(
            shown.rate_limits,
            "minute_requests 600 burst 900 soft\nsecond_requests 10 burst 10 hard\n"
        );
        let again = shown.parse(PlanKey::parse("pro").unwrap(), "Pro").unwrap();
        assert_eq!(again.features(), plan.features());
        let strip = |p: &NewPlanVersion| {
            p.limits()
                .iter()
                .map(|l| (l.metric.clone(), l.period, l.value, l.mode))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&again), strip(&plan));
    }

    #[test]
    fn a_bad_line_names_its_field_and_line() {
        let cases = [
            ("veo\nBad Key", "", "", "features", "line 2"),
            ("veo {not json", "", "", "features", "line 1"),
            ("", "monthly_tokens", "", "limits", "line 1"),
            ("", "monthly_tokens lots", "", "limits", "line 1"),
            (
                "",
                "monthly_tokens 5\nmonthly_tokens 6",
                "",
                "limits",
                "line 2",
            ),
            ("", "", "minute_requests 5 burst", "rate_limits", "line 1"),
            ("", "", "fortnight_requests 5", "rate_limits", "line 1"),
        ];
        for (features, limits, rates, field, line) in cases {
            let text = PlanText {
                features: features.to_owned(),
                limits: limits.to_owned(),
                rate_limits: rates.to_owned(),
            };
            let e = text
                .parse(PlanKey::parse("pro").unwrap(), "Pro")
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(e.message().contains(line), "{e}");
        }
        assert!(parse_features(blank(), "").unwrap().features().is_empty());
    }

    #[test]
    fn plan_pickers_post_key_at_version() {
        let pro = parse_plan("plan", " pro@2 ").unwrap().unwrap();
        assert_eq!(plan_value(&pro), "pro@2");
        assert_eq!(parse_plan("plan", "").unwrap(), None);
        for bad in ["pro", "pro@0", "pro@x", "Pro@1", "@1"] {
            let e = parse_plan("plan", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn a_date_is_the_start_of_that_day_in_the_organizations_zone() {
        let now: DateTime<Utc> = "2026-11-24T03:00:00Z".parse().unwrap();
        let tokyo = chrono_tz::Asia::Tokyo;
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_instant("expires_at", "2026-12-01", tokyo, now).unwrap(),
            Some(at("2026-11-30T15:00:00Z"))
        );
        assert_eq!(
            parse_instant("expires_at", "2026-12-01T08:30", Tz::UTC, now).unwrap(),
            Some(at("2026-12-01T08:30:00Z"))
        );
        assert_eq!(
            parse_instant("expires_at", "2026-12-01T00:00:00+01:00", Tz::UTC, now).unwrap(),
            Some(at("2026-11-30T23:00:00Z"))
        );
        assert_eq!(
            parse_instant("expires_at", " ", Tz::UTC, now).unwrap(),
            None
        );
        for bad in ["tomorrow", "2026-11-24", "2026-13-01"] {
            let e = parse_instant("expires_at", bad, Tz::UTC, now).unwrap_err();
            assert_eq!(e.field(), Some("expires_at"), "{bad}: {e}");
        }
    }
}
