//! The platform operator's pages: the organizations nearest their limits,
//! a searchable list of organizations, and one organization's plan (its
//! section is [`plans::org_section`](super::plans)), features, limits and
//! owners, with forms to change them. The organization's own feature,
//! limit and rate-limit rows are the overrides on top of its plan: each
//! form takes an optional expiry, and the tables show it. Every handler
//! first asks the operator policy: anyone else gets 403.

use std::str::FromStr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::plans::expiry_text;
use super::usage::{RateRow, level_names, local_time, rate_row};
use super::{Chrome, Done, chrome, path_id};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::form::CsrfForm;
use crate::console::render::{Base, ConsoleError, form_refusal, page, see_other};
use crate::error::{Error, quoted};
use crate::ids::{LimitId, MetricKey, OrgId, UserId};
use crate::limits::rate::NewRateLimit;
use crate::limits::{LimitMode, LimitType, NewLimit, Period, UsageLine};
use crate::model::{FeatureChange, Organization, Role};
use crate::tenancy::Operator;

/// How many organizations the overview scans for the nearest to a limit.
const OVERVIEW_SCAN: usize = 200;
/// How many it lists.
const OVERVIEW_ROWS: usize = 10;
/// How many a search page lists.
const SEARCH_ROWS: usize = 50;

/// An organization and its tightest limit, for the operator's lists.
struct OrgRow {
    name: String,
    slug: String,
    href: String,
    limit: String,
    percent: String,
    level: &'static str,
    level_text: &'static str,
    resets_at: String,
    /// For sorting: the tightest line's percentage.
    score: Decimal,
}

/// How many organizations' usage a list reads at once.
const ROWS_AT_ONCE: usize = 8;

/// The rows of `orgs`, in order, their usage read [`ROWS_AT_ONCE`] at a
/// time: a list page waits for the slowest of a few reads, not their sum.
async fn org_rows(
    operator: &Operator<'_>,
    base: &Base,
    orgs: &[Organization],
) -> Result<Vec<OrgRow>, ConsoleError> {
    let mut rows = Vec::with_capacity(orgs.len());
    for chunk in orgs.chunks(ROWS_AT_ONCE) {
        let reads: Vec<_> = chunk
            .iter()
            .map(|org| org_row(operator, base, org))
            .collect();
        rows.extend(futures_util::future::try_join_all(reads).await?);
    }
    Ok(rows)
}

async fn org_row(
    operator: &Operator<'_>,
    base: &Base,
    org: &Organization,
) -> Result<OrgRow, ConsoleError> {
    let lines = operator.usage_summary_of(org).await?;
    let tightest: Option<&UsageLine> = lines
        .iter()
        .filter(|l| l.percent.is_some())
        .max_by(|a, b| a.percent.cmp(&b.percent));
    let (level, level_text) = tightest.map_or(("ok", ""), |l| level_names(l.level));
    Ok(OrgRow {
        name: org.name.clone(),
        slug: org.slug.to_string(),
        href: base.at(&format!("/operator/orgs/{}", org.id)),
        limit: tightest.map_or_else(String::new, |l| limit_type(l.metric.clone(), l.period)),
        percent: tightest
            .and_then(|l| l.percent)
            .map_or_else(String::new, |p| format!("{} %", p.normalize())),
        level,
        level_text,
        resets_at: tightest.map_or_else(String::new, |l| local_time(l.resets_at, org.timezone)),
        score: tightest
            .and_then(|l| l.percent)
            .unwrap_or(Decimal::NEGATIVE_ONE),
    })
}

#[derive(Template)]
#[template(path = "console/operator_overview.html")]
struct Overview {
    chrome: Chrome,
    scanned: usize,
    rows: Vec<OrgRow>,
}

/// `GET /operator`: the organizations nearest their limits.
pub(in crate::console) async fn overview(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
) -> Result<Response, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let orgs = operator.organizations(None, OVERVIEW_SCAN, 0).await?;
    let mut rows = org_rows(&operator, &base, &orgs).await?;
    rows.retain(|r| r.score >= Decimal::ZERO);
    rows.sort_by_key(|r| std::cmp::Reverse(r.score));
    rows.truncate(OVERVIEW_ROWS);
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        "Nearest their limits",
        None,
        "overview",
        None,
    )
    .await?;
    Ok(page(&Overview {
        chrome,
        scanned: orgs.len(),
        rows,
    }))
}

#[derive(Template)]
#[template(path = "console/operator_orgs.html")]
struct OrgList {
    chrome: Chrome,
    action: String,
    query: String,
    /// What the table shows: all organizations, the matches, or which of
    /// them on a page of many.
    heading: String,
    rows: Vec<OrgRow>,
    /// The previous and next page's numbers, where there is one.
    previous: Option<u32>,
    next: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(in crate::console) struct Search {
    q: Option<String>,
    page: Option<String>,
}

/// What a page of the organization list is headed: `All organizations`
/// only when the one page holds them all.
fn list_heading(query: &str, page: u32, shown: usize, more: bool) -> String {
    let what = if query.is_empty() {
        "Organizations".to_owned()
    } else {
        format!("Matching “{query}”")
    };
    if page == 1 && !more {
        return if query.is_empty() {
            "All organizations".to_owned()
        } else {
            what
        };
    }
    let first = (page as usize - 1)
        .saturating_mul(SEARCH_ROWS)
        .saturating_add(1);
    match shown.checked_sub(1) {
        Some(last) => format!("{what} {first}–{}", first.saturating_add(last)),
        None => format!("{what}: none from {first}"),
    }
}

/// `GET /operator/orgs?q=&page=`: organizations by name or slug, with
/// their tightest limit, [`SEARCH_ROWS`] a page (`page` from 1; anything
/// else is the first).
pub(in crate::console) async fn organizations(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Query(search): Query<Search>,
) -> Result<Response, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let query = search.q.unwrap_or_default();
    let page_number = search
        .page
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let offset = (page_number as usize - 1).saturating_mul(SEARCH_ROWS);
    let mut orgs = operator
        .organizations(Some(&query), SEARCH_ROWS + 1, offset)
        .await?;
    let more = orgs.len() > SEARCH_ROWS;
    orgs.truncate(SEARCH_ROWS);
    let rows = org_rows(&operator, &base, &orgs).await?;
    let chrome = chrome(&config, &viewer, &base, "Organizations", None, "orgs", None).await?;
    Ok(page(&OrgList {
        chrome,
        action: base.at("/operator/orgs"),
        heading: list_heading(query.trim(), page_number, rows.len(), more),
        query,
        rows,
        previous: page_number.checked_sub(1).filter(|p| *p >= 1),
        next: more.then(|| page_number.saturating_add(1)),
    }))
}

struct FeatureRow {
    key: String,
    enabled: bool,
    config: String,
    updated_at: String,
    /// When the row lapses (`never`).
    expires: String,
    toggle_action: String,
    config_action: String,
    remove_action: String,
}

/// A rate limit on the operator's page: the shared row, and what its
/// forms post.
struct OperatorRateRow {
    row: RateRow,
    user: String,
    other_mode: &'static str,
    /// When the row lapses (`never`), and the same as the forms post it
    /// back (RFC 3339; empty: never).
    expires: String,
    expires_value: String,
    remove_action: String,
}

struct LimitRow {
    limit_type: String,
    scope: String,
    user: String,
    value: Decimal,
    mode: &'static str,
    other_mode: &'static str,
    usage: String,
    expires: String,
    expires_value: String,
    remove_action: String,
}

#[derive(Template)]
#[template(path = "console/operator_org.html")]
struct OrgPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    org_slug: String,
    timezone: String,
    error: Option<String>,
    features: Vec<FeatureRow>,
    limits: Vec<LimitRow>,
    /// The rate limits, with their windows' use.
    rate_limits: Vec<OperatorRateRow>,
    /// Whether the store has rate limits (else the section says so).
    rates_supported: bool,
    set_rate_limit_action: String,
    /// The owners' user ids.
    owners: Vec<String>,
    add_feature_action: String,
    set_limit_action: String,
    owner_action: String,
    /// The organization's plan, trial and effective entitlements.
    plan: super::plans::OrgSection,
    csrf: String,
}

async fn org_page(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    org: OrgId,
    notice: Option<String>,
    error: Option<String>,
) -> Result<OrgPage, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let organization = config
        .tenancy
        .service()
        .organization(org)
        .await?
        .ok_or_else(ConsoleError::not_found)?;
    let at = |path: &str| base.at(&format!("/operator/orgs/{org}{path}"));
    let tz = organization.timezone;
    let features = operator
        .features(org)
        .await?
        .into_iter()
        .map(|f| FeatureRow {
            toggle_action: at(&format!("/features/{}/toggle", f.key)),
            config_action: at(&format!("/features/{}/config", f.key)),
            remove_action: at(&format!("/features/{}/remove", f.key)),
            expires: expiry_text(f.expires_at, tz),
            key: f.key.to_string(),
            enabled: f.enabled,
            config: if f.config.is_null() {
                String::new()
            } else {
                serde_json::to_string_pretty(&f.config).unwrap_or_default()
            },
            updated_at: local_time(f.updated_at, organization.timezone),
        })
        .collect();
    let lines = operator.usage_summary_of(&organization).await?;
    let limits = operator
        .limits(org)
        .await?
        .into_iter()
        .map(|l| {
            let usage = lines
                .iter()
                .find(|u| u.metric == l.metric && u.period == l.period && u.scope == l.scope)
                .and_then(|u| u.percent)
                .map_or_else(|| "—".to_owned(), |p| format!("{} %", p.normalize()));
            LimitRow {
                limit_type: limit_type(l.metric.clone(), l.period),
                scope: l.scope.to_string(),
                user: l.scope.user().map(|u| u.to_string()).unwrap_or_default(),
                value: l.value.normalize(),
                mode: l.mode.as_str(),
                other_mode: match l.mode {
                    LimitMode::Hard => "soft",
                    LimitMode::Soft => "hard",
                },
                usage,
                expires: expiry_text(l.expires_at, tz),
                expires_value: expiry_value(l.expires_at),
                remove_action: at(&format!("/limits/{}/remove", l.id)),
            }
        })
        .collect();
    let now = config.tenancy.now();
    let rates_supported = operator.rate_limits_supported();
    let rate_limits = operator
        .rate_limits(org)
        .await?
        .iter()
        .map(|state| OperatorRateRow {
            row: rate_row(state, now, organization.timezone, false),
            user: state
                .limit
                .scope
                .user()
                .map(|u| u.to_string())
                .unwrap_or_default(),
            other_mode: match state.limit.mode {
                LimitMode::Hard => "soft",
                LimitMode::Soft => "hard",
            },
            expires: expiry_text(state.limit.expires_at, tz),
            expires_value: expiry_value(state.limit.expires_at),
            remove_action: at(&format!("/rate-limits/{}/remove", state.limit.id)),
        })
        .collect();
    let owners = operator
        .members(org)
        .await?
        .into_iter()
        .filter(|m| m.role == Role::Owner)
        .map(|m| m.user_id.to_string())
        .collect();
    let plan = super::plans::org_section(&operator, base, org, tz, now).await?;
    let chrome = chrome(
        config,
        viewer,
        base,
        organization.name.clone(),
        None,
        "orgs",
        notice,
    )
    .await?;
    Ok(OrgPage {
        chrome,
        org_id: org.to_string(),
        org_name: organization.name.clone(),
        org_slug: organization.slug.to_string(),
        timezone: organization.timezone.name().to_owned(),
        error,
        features,
        limits,
        rate_limits,
        rates_supported,
        set_rate_limit_action: at("/rate-limits"),
        owners,
        add_feature_action: at("/features"),
        set_limit_action: at("/limits"),
        owner_action: at("/owner"),
        plan,
        csrf: viewer.csrf.clone(),
    })
}

/// An expiry as a form posts it back: RFC 3339, empty for never.
fn expiry_value(expires_at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    expires_at.map_or_else(String::new, |at| at.to_rfc3339())
}

/// The plan's `limit_type` string of a metric and period (`monthly_tokens`).
pub(super) fn limit_type(metric: MetricKey, period: Period) -> String {
    LimitType { metric, period }.to_string()
}

/// `GET /operator/orgs/{org}`.
pub(in crate::console) async fn organization(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let notice = done.notice().or_else(|| super::plans::org_notice(&done));
    let data = org_page(
        &config,
        &viewer,
        &base,
        path_id::<OrgId>(&org)?,
        notice,
        None,
    )
    .await?;
    Ok(page(&data))
}

/// The organization's page again with `error` at the top, answered with
/// the error's status: a form the operator can correct. An error they
/// cannot act on is the error page ([`form_refusal`]).
async fn refused(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    org: OrgId,
    error: Error,
) -> Result<Response, ConsoleError> {
    let (status, message) = form_refusal(error)?;
    let data = org_page(config, viewer, base, org, None, Some(message)).await?;
    let mut response = page(&data);
    *response.status_mut() = status;
    Ok(response)
}

/// What every operator form checks first (after its CSRF token, which
/// [`CsrfForm`] checked), in this order: the organization's id (404), the
/// operator policy (403).
pub(super) fn operator_post<'a>(
    config: &'a ConsoleConfig,
    viewer: &'a Viewer,
    org: &str,
) -> Result<(OrgId, Operator<'a>), ConsoleError> {
    let org: OrgId = path_id(org)?;
    Ok((org, config.tenancy.operator(viewer.operator()?)))
}

/// What every operator form answers: back to the organization's page
/// with the `done` notice (303), or the page again with why it was
/// refused.
pub(super) async fn answer<T>(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    org: OrgId,
    done: &str,
    result: crate::error::Result<T>,
) -> Result<Response, ConsoleError> {
    match result {
        Ok(_) => Ok(see_other(
            &base.at(&format!("/operator/orgs/{org}?done={done}")),
        )),
        Err(e) => refused(config, viewer, base, org, e).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct ToggleForm {
    enabled: String,
}

/// `POST /operator/orgs/{org}/features/{key}/toggle`.
pub(in crate::console) async fn toggle_feature(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, key)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ToggleForm>,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let enabled = form.enabled == "true";
    let changed = operator
        .update_feature(org, &key, FeatureChange::enabled(enabled))
        .await;
    answer(&config, &viewer, &base, org, "feature", changed).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct ConfigForm {
    config: String,
}

/// `POST /operator/orgs/{org}/features/{key}/config`: the textarea's JSON
/// (empty: no configuration). Bad JSON is shown back with where it broke.
pub(in crate::console) async fn set_feature_config(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, key)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ConfigForm>,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let text = form.config.trim();
    let parsed = if text.is_empty() {
        Ok(serde_json::Value::Null)
    } else {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            Error::invalid_input(
                "config",
                format_args!("{}'s configuration is not JSON: {e}", quoted(&key)),
            )
        })
    };
    let saved = match parsed.and_then(FeatureChange::config) {
        Ok(change) => operator.update_feature(org, &key, change).await,
        Err(e) => Err(e),
    };
    answer(&config, &viewer, &base, org, "config", saved).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct NewFeatureForm {
    key: String,
    /// `false` (or `off`) turns it off; anything else on.
    enabled: String,
    /// When the row lapses (a date in the organization's zone); empty:
    /// never.
    expires: String,
}

/// The organization's time zone and the facade's now, for an expiry or a
/// trial's end.
pub(super) async fn zone_and_now(
    config: &ConsoleConfig,
    org: OrgId,
) -> crate::error::Result<(chrono_tz::Tz, chrono::DateTime<chrono::Utc>)> {
    let organization = config
        .tenancy
        .service()
        .organization(org)
        .await?
        .ok_or_else(|| Error::not_found("no such organization"))?;
    Ok((organization.timezone, config.tenancy.now()))
}

/// The `expires` field of an override form: `None` for never.
async fn expiry(
    config: &ConsoleConfig,
    org: OrgId,
    input: &str,
) -> crate::error::Result<Option<chrono::DateTime<chrono::Utc>>> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    let (tz, now) = zone_and_now(config, org).await?;
    super::plans::parse_instant("expires_at", input, tz, now)
}

/// `POST /operator/orgs/{org}/features`: sets a feature's row (its
/// override): on (or off, with `enabled=false`), lapsing at `expires`
/// (empty: never), keeping its config.
pub(in crate::console) async fn add_feature(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<NewFeatureForm>,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let enabled = !matches!(form.enabled.trim(), "false" | "off");
    let set = match expiry(&config, org, &form.expires).await {
        Ok(until) => {
            let change = FeatureChange::enabled(enabled).until(until);
            operator.update_feature(org, form.key.trim(), change).await
        }
        Err(e) => Err(e),
    };
    answer(&config, &viewer, &base, org, "feature", set).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct LimitForm {
    limit_type: String,
    value: String,
    mode: String,
    user: String,
    /// When it lapses (a date in the organization's zone, or RFC 3339);
    /// empty: never.
    expires: String,
}

fn new_limit(form: &LimitForm) -> crate::error::Result<NewLimit> {
    let value = Decimal::from_str(form.value.trim()).map_err(|_| {
        Error::invalid_input(
            "limit_value",
            format_args!("{} is not a number", quoted(&form.value)),
        )
    })?;
    let limit = NewLimit::from_limit_type(form.limit_type.trim(), value)?
        .mode(LimitMode::parse(&form.mode)?);
    let user = form.user.trim();
    Ok(if user.is_empty() {
        limit
    } else {
        limit.for_user(UserId::parse(user)?)
    })
}

/// `POST /operator/orgs/{org}/limits`: sets (or changes the mode of) a
/// limit.
pub(in crate::console) async fn set_limit(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<LimitForm>,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let limit = match new_limit(&form) {
        Ok(limit) => expiry(&config, org, &form.expires)
            .await
            .map(|until| match until {
                Some(at) => limit.until(at),
                None => limit,
            }),
        Err(e) => Err(e),
    };
    let set = match limit {
        Ok(limit) => operator.set_limit(org, limit).await,
        Err(e) => Err(e),
    };
    answer(&config, &viewer, &base, org, "limit", set).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct RateLimitForm {
    limit_type: String,
    value: String,
    /// Empty: the value.
    burst: String,
    mode: String,
    user: String,
    /// When it lapses; empty: never.
    expires: String,
}

/// A number from a form field, or `InvalidInput` naming `field`.
pub(super) fn number(field: &'static str, input: &str) -> crate::error::Result<Decimal> {
    Decimal::from_str(input.trim())
        .map_err(|_| Error::invalid_input(field, format_args!("{} is not a number", quoted(input))))
}

fn new_rate_limit(form: &RateLimitForm) -> crate::error::Result<NewRateLimit> {
    let value = number("limit_value", &form.value)?;
    let mut limit = NewRateLimit::from_limit_type(form.limit_type.trim(), value)?
        .mode(LimitMode::parse(&form.mode)?);
    if !form.burst.trim().is_empty() {
        limit = limit.burst(number("burst", &form.burst)?)?;
    }
    let user = form.user.trim();
    Ok(if user.is_empty() {
        limit
    } else {
        limit.for_user(UserId::parse(user)?)
    })
}

/// `POST /operator/orgs/{org}/rate-limits`: sets (or changes) a rate
/// limit.
pub(in crate::console) async fn set_rate_limit(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<RateLimitForm>,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let limit = match new_rate_limit(&form) {
        Ok(limit) => expiry(&config, org, &form.expires)
            .await
            .map(|until| match until {
                Some(at) => limit.until(at),
                None => limit,
            }),
        Err(e) => Err(e),
    };
    let set = match limit {
        Ok(limit) => operator.set_rate_limit(org, limit).await,
        Err(e) => Err(e),
    };
    answer(&config, &viewer, &base, org, "limit", set).await
}

/// `POST /operator/orgs/{org}/rate-limits/{id}/remove`.
pub(in crate::console) async fn remove_rate_limit(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, id)): Path<(String, String)>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let id: LimitId = path_id(&id)?;
    if !operator.remove_rate_limit(org, id).await? {
        return Ok(ConsoleError::not_found().into_response());
    }
    Ok(see_other(
        &base.at(&format!("/operator/orgs/{org}?done=limit-removed")),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct OwnerForm {
    user: String,
}

/// `POST /operator/orgs/{org}/owner`: the user becomes the owner (added if
/// not a member) and every other owner an admin. A user id that is not
/// one is shown back.
pub(in crate::console) async fn transfer_ownership(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<OwnerForm>,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let transferred = match UserId::parse(form.user.trim()) {
        Ok(to) => operator.transfer_ownership(org, to).await,
        Err(e) => Err(e),
    };
    answer(&config, &viewer, &base, org, "ownership", transferred).await
}

/// `POST /operator/orgs/{org}/limits/{id}/remove`.
pub(in crate::console) async fn remove_limit(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, id)): Path<(String, String)>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let (org, operator) = operator_post(&config, &viewer, &org)?;
    let id: LimitId = path_id(&id)?;
    if !operator.remove_limit(org, id).await? {
        return Ok(ConsoleError::not_found().into_response());
    }
    Ok(see_other(
        &base.at(&format!("/operator/orgs/{org}?done=limit-removed")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_says_all_only_when_one_page_holds_them_all() {
        assert_eq!(list_heading("", 1, 3, false), "All organizations");
        assert_eq!(list_heading("", 1, 50, true), "Organizations 1–50");
        assert_eq!(list_heading("", 2, 7, false), "Organizations 51–57");
        assert_eq!(list_heading("ini", 1, 1, false), "Matching “ini”");
        assert_eq!(list_heading("ini", 3, 50, true), "Matching “ini” 101–150");
        assert_eq!(
            list_heading("", 9, 0, false),
            "Organizations: none from 401"
        );
        let last = list_heading("", u32::MAX, 1, false);
        assert!(last.starts_with("Organizations "), "{last}");
    }

    #[test]
    fn limit_types_read_as_the_plan_writes_them() {
        assert_eq!(
            limit_type(MetricKey::COST_USD, Period::Monthly),
            "monthly_cost_usd"
        );
    }
}
