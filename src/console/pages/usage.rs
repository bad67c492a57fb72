//! Usage against limits: each line with its bar and reset time in the
//! organization's zone (the lines with a limit first, then the metrics
//! without one), every amount with its unit, the rate limits with their current window's use
//! and the time until it frees, a daily chart of the month per metric, and the top
//! members by name and email (for the roles that may see other members'
//! usage).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{Chrome, Done, chrome, context, short_id};
use crate::console::auth::Viewer;
use crate::console::chart::{Unit, amount, daily_bars, month_days};
use crate::console::config::ConsoleConfig;
use crate::console::render::{Base, ConsoleError, page};
use crate::error::Result;
use crate::ids::UserId;
use crate::limits::rate::RateState;
use crate::limits::{CurrentPeriods, LimitLevel, LimitScope, Period, UsageLine};
use crate::model::{Action, TenantContext, UserProfile};
use crate::tenancy::Tenancy;

/// How many members a top list shows.
const TOP_USERS: usize = 5;

/// A usage line as the table shows it.
/// Amounts are written with their unit ([`amount`]).
pub(in crate::console) struct LineRow {
    metric: String,
    period: &'static str,
    scope: &'static str,
    used: String,
    reserved: String,
    limit: Option<String>,
    mode: &'static str,
    remaining: Option<String>,
    percent: String,
    level: &'static str,
    level_text: &'static str,
    bar_width: u32,
    resets_at: String,
}

pub(in crate::console) struct ChartBlock {
    metric: String,
    caption: String,
    svg: String,
    /// Each day so far and its amount with its unit.
    days: Vec<(NaiveDate, String)>,
}

pub(in crate::console) struct TopBlock {
    metric: String,
    users: Vec<TopUser>,
}

/// One member of a top list: their name and email where the user
/// directory gives them, else the short id.
pub(in crate::console) struct TopUser {
    name: Option<String>,
    email: Option<String>,
    short: String,
    used: String,
}

/// A rate limit as the pages show it: its current window's use and when
/// it frees.
pub(in crate::console) struct RateRow {
    pub(in crate::console) limit_type: String,
    pub(in crate::console) scope: String,
    /// The rate per window, as a form takes it back (a bare number).
    pub(in crate::console) value: Decimal,
    pub(in crate::console) window: &'static str,
    /// The burst, as a form takes it back (a bare number).
    pub(in crate::console) burst: Decimal,
    /// The rate with its unit, per window: `600 requests per minute`.
    pub(in crate::console) rate_shown: String,
    /// The burst with its unit.
    pub(in crate::console) burst_shown: String,
    pub(in crate::console) mode: &'static str,
    /// What is still draining from the window ([`RateState::used_at`]),
    /// with its unit.
    pub(in crate::console) used: String,
    /// What would be admitted at once now, with its unit.
    pub(in crate::console) remaining: String,
    pub(in crate::console) level: &'static str,
    pub(in crate::console) level_text: &'static str,
    pub(in crate::console) bar_width: u32,
    /// "free now", or how long until everything admitted has drained.
    pub(in crate::console) frees: String,
}

/// `state` at `now`, for a page in `tz`; `you` names a per-user scope
/// ("you" on the user's own page, the user id on the operator's).
pub(in crate::console) fn rate_row(
    state: &RateState,
    now: DateTime<Utc>,
    tz: Tz,
    you: bool,
) -> RateRow {
    let limit = &state.limit;
    let used = state.used_at(now);
    let percent = if limit.burst.is_zero() {
        Decimal::ZERO
    } else {
        // A burst near Decimal::MAX would overflow the product.
        used.checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|hundredfold| hundredfold.checked_div(limit.burst))
            .unwrap_or(Decimal::ONE_HUNDRED)
    };
    let level = if used >= limit.burst {
        LimitLevel::Exceeded
    } else if percent >= Decimal::from(80) {
        LimitLevel::Warning
    } else {
        LimitLevel::Ok
    };
    let (level, level_text) = level_names(level);
    let unit = Unit::of(limit.metric.as_str());
    let frees_at = state.frees_at(now);
    let frees = if frees_at <= now {
        "free now".to_owned()
    } else {
        let wait = (frees_at - now).num_milliseconds();
        format!(
            "in {}.{} s ({})",
            wait / 1000,
            (wait % 1000) / 100,
            frees_at.with_timezone(&tz).format("%H:%M:%S")
        )
    };
    RateRow {
        limit_type: limit.limit_type().to_string(),
        scope: match limit.scope {
            LimitScope::Organization => "organization".to_owned(),
            LimitScope::User(_) if you => "you".to_owned(),
            LimitScope::User(user) => user.to_string(),
        },
        value: limit.value.normalize(),
        window: limit.window.as_str(),
        burst: limit.burst.normalize(),
        rate_shown: format!("{} per {}", unit.format(limit.value), limit.window.as_str()),
        burst_shown: unit.format(limit.burst),
        mode: limit.mode.as_str(),
        used: unit.format(used),
        remaining: unit.format(state.remaining_at(now)),
        level,
        level_text,
        bar_width: percent.round().to_u32().unwrap_or(100).min(100),
        frees,
    }
}

#[derive(Template)]
#[template(path = "console/usage.html")]
pub(in crate::console) struct UsagePage {
    chrome: Chrome,
    org_name: String,
    timezone: String,
    lines: Vec<LineRow>,
    /// The rate limits that apply to the viewer, with their windows' use.
    rates: Vec<RateRow>,
    charts: Vec<ChartBlock>,
    top_users: Option<Vec<TopBlock>>,
    /// The features turned on for the organization.
    features: Vec<String>,
}

/// `instant` in `tz`, to the minute, with the zone's name.
pub(in crate::console) fn local_time(instant: DateTime<Utc>, tz: Tz) -> String {
    format!(
        "{} {}",
        instant.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name()
    )
}

/// The level's CSS class and its words.
pub(in crate::console) fn level_names(level: LimitLevel) -> (&'static str, &'static str) {
    match level {
        LimitLevel::Ok => ("ok", "OK"),
        LimitLevel::Warning => ("warning", "Warning"),
        LimitLevel::Exceeded => ("exceeded", "Exceeded"),
    }
}

pub(in crate::console) fn line_row(line: &UsageLine, tz: Tz) -> LineRow {
    let (level, level_text) = level_names(line.level);
    let unit = Unit::of(line.metric.as_str());
    let percent = line.percent.unwrap_or_default();
    let width = percent.round().to_u32().unwrap_or(100).min(100);
    LineRow {
        metric: line.metric.to_string(),
        period: line.period.as_str(),
        scope: match line.scope {
            LimitScope::Organization => "organization",
            LimitScope::User(_) => "you",
        },
        used: unit.format(line.used),
        reserved: unit.format(line.reserved),
        limit: line.limit.map(|l| unit.format(l)),
        mode: line.mode.map_or("", |m| m.as_str()),
        remaining: line.remaining.map(|r| unit.format(r)),
        percent: line
            .percent
            .map_or_else(String::new, |p| format!("{} %", p.normalize())),
        level,
        level_text,
        bar_width: width,
        resets_at: local_time(line.resets_at, tz),
    }
}

/// The month's daily charts of the organization, one per metric, their
/// days in `tz`.
async fn charts(
    tenancy: &Tenancy,
    ctx: &TenantContext,
    periods: CurrentPeriods,
    tz: Tz,
) -> Result<Vec<ChartBlock>> {
    let (month, today) = (periods.monthly.start, periods.daily.start);
    let history = tenancy
        .usage_history(ctx, None, Period::Daily, month, today)
        .await?;
    let mut by_metric: BTreeMap<String, Vec<(NaiveDate, Decimal)>> = BTreeMap::new();
    for value in history {
        by_metric
            .entry(value.metric.to_string())
            .or_default()
            .push((value.period.start, value.used.normalize()));
    }
    let blocks = by_metric
        .into_iter()
        .map(|(metric, days)| {
            let unit = Unit::of(&metric);
            let total: Decimal = days.iter().map(|(_, u)| *u).sum();
            let so_far = month_days(month, today, &days);
            let caption = format!(
                "{metric} per day in {}: {} in all",
                month.format("%B %Y"),
                unit.format(total)
            );
            ChartBlock {
                svg: daily_bars(month, &so_far, &unit, tz.name(), &caption),
                caption,
                days: so_far
                    .into_iter()
                    .map(|(date, used)| (date, unit.format(used)))
                    .collect(),
                metric,
            }
        })
        .collect();
    Ok(blocks)
}

/// The top members of each metric with a limit or usage this month.
async fn top_users(
    tenancy: &Tenancy,
    ctx: &TenantContext,
    lines: &[UsageLine],
) -> Result<Vec<TopBlock>> {
    // Each metric once, by key.
    let metrics: BTreeSet<String> = lines.iter().map(|l| l.metric.to_string()).collect();
    let mut tops = Vec::new();
    for metric in metrics {
        let users = tenancy
            .top_users(ctx, &metric, Period::Monthly, TOP_USERS)
            .await?;
        if !users.is_empty() {
            tops.push((metric, users));
        }
    }
    // Every listed member's name and email in one lookup.
    let ids: Vec<UserId> = tops
        .iter()
        .flat_map(|(_, users)| users.iter().map(|u| u.user))
        .collect();
    let profiles: HashMap<UserId, UserProfile> = tenancy
        .profiles(ctx, &ids)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p))
        .collect();
    Ok(tops
        .into_iter()
        .map(|(metric, users)| {
            let users = users
                .into_iter()
                .map(|u| {
                    let profile = profiles.get(&u.user);
                    TopUser {
                        name: profile.and_then(|p| p.name.clone()),
                        email: profile.and_then(|p| p.email.clone()),
                        short: short_id(u.user),
                        used: amount(&metric, u.used),
                    }
                })
                .collect();
            TopBlock { metric, users }
        })
        .collect())
}

/// The usage page of `ctx`'s organization at `now`: the data, built
/// without the chrome, so a bench can time it beside the bare summary.
pub(in crate::console) async fn usage_page(
    tenancy: &Tenancy,
    ctx: &TenantContext,
    chrome: Chrome,
    now: DateTime<Utc>,
) -> Result<UsagePage> {
    let tz = ctx.organization().timezone;
    let mut lines = tenancy.usage_summary(ctx).await?;
    // The lines with a limit first, then the metrics without one, each
    // group in the summary's order.
    lines.sort_by_key(|l| l.limit.is_none());
    let rates = tenancy
        .rate_limits(ctx)
        .await?
        .iter()
        .map(|s| rate_row(s, now, tz, true))
        .collect();
    let periods = CurrentPeriods::at(now, tz);
    let top = if ctx.can(Action::ViewMemberUsage) {
        Some(top_users(tenancy, ctx, &lines).await?)
    } else {
        None
    };
    let features = tenancy
        .features(ctx)
        .await?
        .into_iter()
        .filter(|f| f.enabled)
        .map(|f| f.key.to_string())
        .collect();
    Ok(UsagePage {
        chrome,
        features,
        org_name: ctx.organization().name.clone(),
        timezone: tz.name().to_owned(),
        lines: lines.iter().map(|l| line_row(l, tz)).collect(),
        rates,
        charts: charts(tenancy, ctx, periods, tz).await?,
        top_users: top,
    })
}

/// `GET /orgs/{org}/usage`.
pub(in crate::console) async fn usage(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> std::result::Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        "Usage and limits",
        Some(&ctx),
        "usage",
        done.notice(),
    )
    .await?;
    let data = usage_page(&config.tenancy, &ctx, chrome, config.tenancy.now()).await?;
    Ok(page(&data))
}
