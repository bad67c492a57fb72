//! The reports page: an organization's usage by range, granularity and
//! grouping, as a chart and its table, with a CSV download.
//!
//! - `GET /orgs/{org}/reports`: for every member of the organization (403
//!   for anyone else). The range is `from` and `to` (dates in the
//!   organization's zone, `to` inclusive; this month so far by default),
//!   `granularity` is `hour`, `day` (the default) or `month`, `group` (repeated)
//!   any of `metric`, `provider`, `model`, `operation` and `user`, the
//!   filters `provider`, `model`, `operation` and `user` (a user id),
//!   `chart` the metric charted, `after` the cursor of the page before.
//!   Grouping by user, or filtering on anyone but oneself, takes an admin
//!   or owner (403 otherwise, as [`Tenancy::usage_report`] refuses it). A
//!   value that does not parse is 400 naming its field; a range of more
//!   than 1,000 buckets is 400 naming `granularity`.
//! - `GET /orgs/{org}/reports.csv`: the same report as CSV, every page of
//!   it, read a page at a time as the response is sent (the first page
//!   before it starts, so a refusal is still an error page).
//!
//! The chart covers the whole range (one bar per bucket, the largest
//! groups stacked, the rest summed as "all others"); the table shows a
//! page of rows, with a link to the next. People appear by name and email.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use rust_decimal::Decimal;

use super::{Chrome, Person, chrome, context, encode};
use crate::console::auth::{Viewer, from_hex, to_hex};
use crate::console::chart::{Bars, Series, Unit, bars, colour, number};
use crate::console::config::ConsoleConfig;
use crate::console::render::{Base, ConsoleError, page};
use crate::error::{Error, Result};
use crate::ids::{MetricKey, UserId};
use crate::limits::local_start_of_day;
use crate::model::report::{
    Granularity, GroupKey, ReportCursor, ReportDimension, ReportQuery, ReportRow, UsageFilter,
    csv_field,
};
use crate::model::{Action, TenantContext, UserProfile};
use crate::tenancy::Tenancy;

/// Rows a page of the table shows.
const PAGE_ROWS: u32 = 100;
/// Rows read per call for the chart and the CSV.
const BULK_ROWS: u32 = 1_000;
/// The most rows the chart reads; beyond, its caption says it stopped.
const CHART_MAX_ROWS: usize = 20_000;
/// The most buckets a report may span (31 days of hours, with room).
const MAX_BUCKETS: usize = 1_000;
/// The largest groups the chart draws apart; the rest are summed.
const CHART_SERIES: usize = 7;

/// This area's pages (`GET`); the router adds them.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/orgs/{org}/reports", get(reports)),
        ("/orgs/{org}/reports.csv", get(reports_csv)),
    ]
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    Vec::new()
}

// --- The query string ----------------------------------------------------

/// The query string as given: every value a string, so that what does not
/// parse is refused naming its field.
#[derive(Debug, Default, Clone)]
struct ReportForm {
    from: String,
    to: String,
    granularity: String,
    group: Vec<String>,
    chart: String,
    provider: String,
    model: String,
    operation: String,
    user: String,
    after: String,
}

impl ReportForm {
    /// The form from the query's pairs (`group` may repeat; for the other
    /// fields the last value counts; unknown names are ignored).
    fn from_pairs(pairs: Vec<(String, String)>) -> ReportForm {
        let mut form = ReportForm::default();
        for (name, value) in pairs {
            let value = value.trim().to_owned();
            match name.as_str() {
                "from" => form.from = value,
                "to" => form.to = value,
                "granularity" => form.granularity = value,
                "group" if !value.is_empty() => form.group.push(value),
                "chart" => form.chart = value,
                "provider" => form.provider = value,
                "model" => form.model = value,
                "operation" => form.operation = value,
                "user" => form.user = value,
                "after" => form.after = value,
                _ => {}
            }
        }
        form
    }

    /// What the form asks for, dates read in `tz`, `today` the default end.
    fn resolve(&self, tz: Tz, today: NaiveDate) -> Result<Resolved> {
        let day = |raw: &str, field: &'static str, default: NaiveDate| {
            if raw.is_empty() {
                return Ok(default);
            }
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map_err(|_| Error::invalid_input(field, "must be a date, YYYY-MM-DD"))
        };
        let first = today.with_day(1).unwrap_or(today);
        let from_day = day(&self.from, "from", first)?;
        let to_day = day(&self.to, "to", today)?;
        if to_day < from_day {
            return Err(Error::invalid_input(
                "to",
                format_args!("{to_day} is before from ({from_day})"),
            ));
        }
        let granularity = if self.granularity.is_empty() {
            Granularity::Day
        } else {
            Granularity::parse(&self.granularity)?
        };
        let mut group_by = BTreeSet::new();
        for g in &self.group {
            group_by.insert(ReportDimension::parse(g)?);
        }
        let from = local_start_of_day(from_day, tz);
        let end = to_day
            .succ_opt()
            .ok_or_else(|| Error::invalid_input("to", "is too far ahead"))?;
        let to = local_start_of_day(end, tz);
        let buckets = buckets(from, to, granularity, tz)?;
        let label = |raw: &str| -> Vec<String> {
            if raw.is_empty() {
                Vec::new()
            } else {
                vec![raw.to_owned()]
            }
        };
        let users = if self.user.is_empty() {
            Vec::new()
        } else {
            vec![
                UserId::parse(&self.user)
                    .map_err(|_| Error::invalid_input("user", "must be a user id"))?,
            ]
        };
        let filter = UsageFilter {
            providers: label(&self.provider),
            models: label(&self.model),
            operations: label(&self.operation),
            users,
            ..UsageFilter::default()
        };
        filter.validate()?;
        let chart = if self.chart.is_empty() {
            None
        } else {
            Some(
                MetricKey::parse(&self.chart)
                    .map_err(|_| Error::invalid_input("chart", "must be a metric key"))?,
            )
        };
        let after = if self.after.is_empty() {
            None
        } else {
            Some(parse_cursor(&self.after)?)
        };
        Ok(Resolved {
            from_day,
            to_day,
            from,
            to,
            granularity,
            group_by,
            filter,
            chart,
            after,
            buckets,
        })
    }

    /// This form's query string, with `after` in place of its own.
    fn query_string(&self, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("from", &self.from),
            ("to", &self.to),
            ("granularity", &self.granularity),
        ];
        pairs.extend(self.group.iter().map(|g| ("group", g.as_str())));
        pairs.extend([
            ("provider", self.provider.as_str()),
            ("model", &self.model),
            ("operation", &self.operation),
            ("user", &self.user),
            ("chart", &self.chart),
        ]);
        if let Some(after) = after {
            pairs.push(("after", after));
        }
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// A parsed [`ReportForm`].
#[derive(Debug, Clone)]
struct Resolved {
    from_day: NaiveDate,
    to_day: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
    group_by: BTreeSet<ReportDimension>,
    filter: UsageFilter,
    chart: Option<MetricKey>,
    after: Option<ReportCursor>,
    /// Every bucket's start, in order.
    buckets: Vec<DateTime<Utc>>,
}

impl Resolved {
    /// The report query of `ctx`'s organization, `limit` rows after `after`.
    fn query(&self, ctx: &TenantContext, after: Option<ReportCursor>, limit: u32) -> ReportQuery {
        ReportQuery::new(ctx.org(), self.from, self.to)
            .granularity(self.granularity)
            .group_by(self.group_by.iter().copied())
            .filter(self.filter.clone())
            .after(after)
            .limit(limit)
    }
}

/// The start of every bucket of `[from, to)` at `granularity` in `tz`: the
/// hours starting in it, or the days or months (local) it touches, each
/// starting where the stores start it ([`local_start_of_day`]: local
/// midnight, or the end of a clock change that skips it). More than
/// [`MAX_BUCKETS`] is `InvalidInput` naming `granularity`.
fn buckets(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
    tz: Tz,
) -> Result<Vec<DateTime<Utc>>> {
    let too_many = |n: usize| {
        Error::invalid_input(
            "granularity",
            format_args!(
                "the range holds {n} or more {}s; at most {MAX_BUCKETS}: \
                 choose a coarser granularity or a shorter range",
                granularity.as_str()
            ),
        )
    };
    let mut out = Vec::new();
    match granularity {
        Granularity::Hour => {
            let mut at = from;
            while at < to {
                if out.len() == MAX_BUCKETS {
                    return Err(too_many(MAX_BUCKETS + 1));
                }
                out.push(at);
                at += TimeDelta::hours(1);
            }
        }
        Granularity::Day | Granularity::Month => {
            let local = from.with_timezone(&tz).date_naive();
            let mut day = match granularity {
                Granularity::Month => local.with_day(1).unwrap_or(local),
                _ => local,
            };
            loop {
                let start = local_start_of_day(day, tz);
                if start >= to {
                    break;
                }
                // A day a zone skips whole starts where the next one does:
                // one bucket for both, as the stores have.
                if out.last() != Some(&start) {
                    if out.len() == MAX_BUCKETS {
                        return Err(too_many(MAX_BUCKETS + 1));
                    }
                    out.push(start);
                }
                let next = match granularity {
                    Granularity::Month => day.checked_add_months(Months::new(1)),
                    _ => day.succ_opt(),
                };
                match next {
                    Some(next) => day = next,
                    None => break,
                }
            }
        }
    }
    Ok(out)
}

/// A cursor as the next-page link carries it: its JSON, hex-encoded.
fn cursor_text(cursor: &ReportCursor) -> String {
    to_hex(&serde_json::to_vec(cursor).unwrap_or_default())
}

/// The cursor of [`cursor_text`] (at most 4,096 characters); anything else
/// is `InvalidInput` naming `after`.
fn parse_cursor(raw: &str) -> Result<ReportCursor> {
    (raw.len() <= 4_096)
        .then(|| from_hex(raw))
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| Error::invalid_input("after", "is not a page of this report"))
}

// --- Reading ---------------------------------------------------------------

/// Refuses a report per member, or about another member, to those who
/// may not see other members' usage (as the API does), before anything is
/// read.
fn check_per_user(
    ctx: &TenantContext,
    resolved: &Resolved,
) -> std::result::Result<(), ConsoleError> {
    // The API's rule: a member may narrow the report to themselves alone.
    if resolved.query(ctx, None, 1).reads_other_members(ctx.user())
        && !ctx.can(Action::ViewMemberUsage)
    {
        return Err(ConsoleError::forbidden(
            "Usage per member is for the organization's owners and admins: \
             group and filter by something other than user.",
        ));
    }
    Ok(())
}

/// Names and emails of the users of `rows`, from the user directory.
async fn people(
    tenancy: &Tenancy,
    ctx: &TenantContext,
    users: impl IntoIterator<Item = UserId>,
) -> Result<HashMap<UserId, UserProfile>> {
    let ids: Vec<UserId> = users
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(tenancy
        .profiles(ctx, &ids)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p))
        .collect())
}

fn users_of<'a>(rows: impl IntoIterator<Item = &'a ReportRow>) -> Vec<UserId> {
    rows.into_iter().filter_map(|r| r.key.user).collect()
}

/// A group's label in the legend: its values joined, people by name.
fn group_label(
    key: &GroupKey,
    group_by: &BTreeSet<ReportDimension>,
    people: &HashMap<UserId, UserProfile>,
) -> String {
    let mut parts = Vec::new();
    let blank = |s: &str| {
        if s.is_empty() {
            "(none)".to_owned()
        } else {
            s.to_owned()
        }
    };
    for dim in group_by {
        parts.push(match dim {
            ReportDimension::Metric => key
                .metric
                .as_ref()
                .map_or_else(String::new, |m| m.to_string()),
            ReportDimension::Provider => blank(key.provider.as_deref().unwrap_or("")),
            ReportDimension::Model => blank(key.model.as_deref().unwrap_or("")),
            ReportDimension::Operation => blank(key.operation.as_deref().unwrap_or("")),
            ReportDimension::User => match key.user {
                Some(user) => Person::of(user, people.get(&user)).text(),
                None => "no member".to_owned(),
            },
        });
    }
    if parts.is_empty() {
        "all usage".to_owned()
    } else {
        parts.join(" · ")
    }
}

// --- The page --------------------------------------------------------------

/// One row of the table.
pub(in crate::console) struct TableRow {
    bucket: String,
    /// The grouped values, in the header's order; `person` for the user.
    groups: Vec<Cell>,
    /// Each metric column's amount with its unit ("—" when none).
    amounts: Vec<String>,
    events: String,
}

/// A grouped value: text, or a person.
pub(in crate::console) struct Cell {
    text: String,
    person: Option<Person>,
}

/// A series in the legend.
pub(in crate::console) struct Legend {
    name: String,
    colour: String,
}

/// A select's option.
pub(in crate::console) struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/reports.html")]
pub(in crate::console) struct ReportsPage {
    chrome: Chrome,
    org_name: String,
    timezone: String,
    action: String,
    from: String,
    to: String,
    granularities: Vec<Choice>,
    /// The grouping checkboxes: (value, label, checked).
    groups: Vec<Choice>,
    provider: String,
    model: String,
    operation: String,
    /// The member filter, for owners and admins.
    users: Option<Vec<Choice>>,
    /// The metrics the chart may show.
    chart_metrics: Vec<Choice>,
    /// The chart, when there is usage.
    chart: Option<ChartView>,
    group_headers: Vec<String>,
    metric_headers: Vec<String>,
    rows: Vec<TableRow>,
    first_href: Option<String>,
    next_href: Option<String>,
    csv_href: String,
}

/// The chart with its caption, legend and text alternative.
pub(in crate::console) struct ChartView {
    caption: String,
    svg: String,
    /// The series' names and colours; empty when the report is not
    /// grouped (one series, "all usage").
    legend: Vec<Legend>,
    /// A note when the chart stopped before the end of the range.
    truncated: Option<String>,
    /// The numbers behind it: a bucket's label, each series' amount.
    series_names: Vec<String>,
    numbers: Vec<(String, Vec<String>)>,
}

/// A bucket as the table writes it, in `tz`.
fn bucket_text(at: DateTime<Utc>, granularity: Granularity, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    match granularity {
        Granularity::Hour => local.format("%Y-%m-%d %H:%M").to_string(),
        Granularity::Day => local.format("%Y-%m-%d").to_string(),
        Granularity::Month => local.format("%Y-%m").to_string(),
    }
}

/// A bucket as the chart's axis writes it, in `tz`.
fn bucket_tick(at: DateTime<Utc>, granularity: Granularity, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    match granularity {
        Granularity::Hour => local.format("%b %-d %H:%M").to_string(),
        Granularity::Day => local.format("%b %-d").to_string(),
        Granularity::Month => local.format("%b %Y").to_string(),
    }
}

/// Metrics in display order: `cost_usd` first, then by key.
fn metric_order(metrics: impl IntoIterator<Item = MetricKey>) -> Vec<MetricKey> {
    let mut all: Vec<MetricKey> = metrics
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    all.sort_by_key(|m| (m.as_str() != "cost_usd", m.to_string()));
    all
}

/// The chart of `rows` (the whole range): `metric` per bucket, the largest
/// groups apart.
fn chart_view(
    rows: &[ReportRow],
    truncated: bool,
    resolved: &Resolved,
    metric: &MetricKey,
    tz: Tz,
    people: &HashMap<UserId, UserProfile>,
) -> ChartView {
    let unit = Unit::of(metric.as_str());
    let buckets = &resolved.buckets;
    let slot = |at: DateTime<Utc>| buckets.partition_point(|b| *b <= at).checked_sub(1);
    // Each group's values per bucket, and its total.
    let mut groups: BTreeMap<GroupKey, Vec<Decimal>> = BTreeMap::new();
    for row in rows {
        let Some(amount) = row.amounts.get(metric) else {
            continue;
        };
        let Some(i) = slot(row.bucket_start) else {
            continue;
        };
        let values = groups
            .entry(row.key.clone())
            .or_insert_with(|| vec![Decimal::ZERO; buckets.len()]);
        values[i] = values[i].saturating_add(*amount);
    }
    let mut ranked: Vec<(GroupKey, Vec<Decimal>)> = groups.into_iter().collect();
    // Largest total first: each group's total is summed once.
    ranked.sort_by_cached_key(|(key, values)| {
        let total = values
            .iter()
            .fold(Decimal::ZERO, |sum, v| sum.saturating_add(*v));
        (std::cmp::Reverse(total), key.clone())
    });
    let mut series: Vec<Series> = Vec::new();
    let mut others = vec![Decimal::ZERO; buckets.len()];
    let mut any_other = false;
    for (n, (key, values)) in ranked.into_iter().enumerate() {
        if n < CHART_SERIES {
            series.push(Series {
                name: group_label(&key, &resolved.group_by, people),
                values,
            });
        } else {
            any_other = true;
            for (o, v) in others.iter_mut().zip(values) {
                *o = o.saturating_add(v);
            }
        }
    }
    if any_other {
        series.push(Series {
            name: "all others".to_owned(),
            values: others,
        });
    }
    let total: Decimal = series.iter().flat_map(|s| s.values.iter()).copied().sum();
    let per = resolved.granularity.as_str();
    let caption = format!(
        "{metric} per {per}, {} to {}: {} in all",
        resolved.from_day,
        resolved.to_day,
        unit.format(total)
    );
    let ticks: Vec<String> = buckets
        .iter()
        .map(|b| bucket_tick(*b, resolved.granularity, tz))
        .collect();
    let x_title = format!("{} ({})", capitalized(per), tz.name());
    let svg = bars(&Bars {
        label: &caption,
        x_title: &x_title,
        buckets: &ticks,
        unit: &unit,
        series: &series,
    });
    let numbers = buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| series.iter().any(|s| !s.values[*i].is_zero()))
        .map(|(i, b)| {
            (
                bucket_text(*b, resolved.granularity, tz),
                series.iter().map(|s| unit.format(s.values[i])).collect(),
            )
        })
        .collect();
    ChartView {
        caption,
        svg,
        legend: series
            .iter()
            .filter(|_| !resolved.group_by.is_empty())
            .enumerate()
            .map(|(i, s)| Legend {
                name: s.name.clone(),
                colour: colour(i),
            })
            .collect(),
        truncated: truncated.then(|| {
            format!("The chart shows the first {CHART_MAX_ROWS} rows of the report; narrow the range for the rest.")
        }),
        series_names: series.iter().map(|s| s.name.clone()).collect(),
        numbers,
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Every row of the report (for the chart), up to [`CHART_MAX_ROWS`], and
/// whether it stopped there.
async fn all_rows(
    tenancy: &Tenancy,
    ctx: &TenantContext,
    resolved: &Resolved,
) -> Result<(Vec<ReportRow>, bool)> {
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page = tenancy
            .usage_report(ctx, &resolved.query(ctx, after, BULK_ROWS))
            .await?;
        rows.extend(page.rows);
        match page.next {
            Some(next) if rows.len() < CHART_MAX_ROWS => after = Some(next),
            Some(_) => return Ok((rows, true)),
            None => return Ok((rows, false)),
        }
    }
}

const DIMENSIONS: [(ReportDimension, &str); 5] = [
    (ReportDimension::Metric, "Metric"),
    (ReportDimension::Provider, "Provider"),
    (ReportDimension::Model, "Model"),
    (ReportDimension::Operation, "Operation"),
    (ReportDimension::User, "Member"),
];

/// `GET /orgs/{org}/reports`.
async fn reports(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> std::result::Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let tenancy = &config.tenancy;
    let tz = ctx.organization().timezone;
    let today = tenancy.now().with_timezone(&tz).date_naive();
    let form = ReportForm::from_pairs(pairs);
    let resolved = form.resolve(tz, today)?;
    check_per_user(&ctx, &resolved)?;
    let admin = ctx.can(Action::ViewMemberUsage);

    let table = tenancy
        .usage_report(
            &ctx,
            &resolved.query(&ctx, resolved.after.clone(), PAGE_ROWS),
        )
        .await?;
    let (all, truncated) = all_rows(tenancy, &ctx, &resolved).await?;
    let members = if admin {
        Some(tenancy.members(&ctx).await?)
    } else {
        None
    };
    let people = people(
        tenancy,
        &ctx,
        users_of(&table.rows)
            .into_iter()
            .chain(users_of(&all))
            .chain(members.iter().flatten().map(|m| m.user_id)),
    )
    .await?;

    // The chart: the metric asked for, else cost, else tokens, else any.
    let metrics = metric_order(all.iter().flat_map(|r| r.amounts.keys().cloned()));
    let charted = resolved
        .chart
        .clone()
        .filter(|m| metrics.contains(m))
        .or_else(|| {
            ["cost_usd", "tokens"]
                .iter()
                .find_map(|k| metrics.iter().find(|m| m.as_str() == *k).cloned())
        })
        .or_else(|| metrics.first().cloned());
    let chart = charted
        .as_ref()
        .map(|m| chart_view(&all, truncated, &resolved, m, tz, &people));

    // The table's columns: the groups, then each metric of the page.
    let grouped: Vec<(ReportDimension, &str)> = DIMENSIONS
        .into_iter()
        .filter(|(d, _)| resolved.group_by.contains(d))
        .collect();
    let page_metrics = metric_order(table.rows.iter().flat_map(|r| r.amounts.keys().cloned()));
    let rows = table
        .rows
        .iter()
        .map(|r| TableRow {
            bucket: bucket_text(r.bucket_start, resolved.granularity, tz),
            groups: grouped
                .iter()
                .map(|(d, _)| cell(&r.key, *d, &people))
                .collect(),
            amounts: page_metrics
                .iter()
                .map(|m| {
                    r.amounts
                        .get(m)
                        .map_or_else(|| "—".to_owned(), |a| Unit::of(m.as_str()).format(*a))
                })
                .collect(),
            events: number(Decimal::from(r.events)),
        })
        .collect();

    let path = base.at(&format!("/orgs/{}/reports", ctx.org()));
    let csv_path = base.at(&format!("/orgs/{}/reports.csv", ctx.org()));
    let mut csv_form = form.clone();
    csv_form.after.clear();
    let csv_query = csv_form.query_string(None);
    let first_query = csv_query.clone();
    let name = ctx.organization().name.clone();
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        format!("Reports of {name}"),
        Some(&ctx),
        "reports",
        None,
    )
    .await?;
    let view = ReportsPage {
        chrome,
        org_name: name,
        timezone: tz.name().to_owned(),
        action: path.clone(),
        from: resolved.from_day.to_string(),
        to: resolved.to_day.to_string(),
        granularities: [Granularity::Hour, Granularity::Day, Granularity::Month]
            .into_iter()
            .map(|g| Choice {
                value: g.as_str().to_owned(),
                label: capitalized(g.as_str()),
                selected: g == resolved.granularity,
            })
            .collect(),
        groups: DIMENSIONS
            .into_iter()
            .filter(|(d, _)| *d != ReportDimension::User || admin)
            .map(|(d, label)| Choice {
                value: d.as_str().to_owned(),
                label: label.to_owned(),
                selected: resolved.group_by.contains(&d),
            })
            .collect(),
        provider: form.provider.clone(),
        model: form.model.clone(),
        operation: form.operation.clone(),
        users: members.map(|members| {
            members
                .iter()
                .map(|m| Choice {
                    value: m.user_id.to_string(),
                    label: Person::of(m.user_id, people.get(&m.user_id)).text(),
                    selected: resolved.filter.users.contains(&m.user_id),
                })
                .collect()
        }),
        chart_metrics: metrics
            .iter()
            .map(|m| Choice {
                value: m.to_string(),
                label: m.to_string(),
                selected: Some(m) == charted.as_ref(),
            })
            .collect(),
        chart,
        group_headers: grouped.iter().map(|(_, h)| (*h).to_owned()).collect(),
        metric_headers: page_metrics.iter().map(|m| m.to_string()).collect(),
        rows,
        first_href: resolved
            .after
            .is_some()
            .then(|| format!("{path}?{first_query}")),
        next_href: table
            .next
            .as_ref()
            .map(|c| format!("{path}?{}", form.query_string(Some(&cursor_text(c))))),
        csv_href: if csv_query.is_empty() {
            csv_path
        } else {
            format!("{csv_path}?{csv_query}")
        },
    };
    Ok(page(&view))
}

/// A grouped value of `key` for `dim`.
fn cell(key: &GroupKey, dim: ReportDimension, people: &HashMap<UserId, UserProfile>) -> Cell {
    let text = |s: Option<&str>| Cell {
        text: match s {
            Some("") | None => "(none)".to_owned(),
            Some(s) => s.to_owned(),
        },
        person: None,
    };
    match dim {
        ReportDimension::Metric => text(key.metric.as_ref().map(|m| m.as_str())),
        ReportDimension::Provider => text(key.provider.as_deref()),
        ReportDimension::Model => text(key.model.as_deref()),
        ReportDimension::Operation => text(key.operation.as_deref()),
        ReportDimension::User => match key.user {
            Some(user) => Cell {
                text: String::new(),
                person: Some(Person::of(user, people.get(&user))),
            },
            None => Cell {
                text: "no member".to_owned(),
                person: None,
            },
        },
    }
}

// --- CSV ---------------------------------------------------------------------

/// The CSV's header: the columns of the API's report CSV
/// ([`Tenancy::write_report`]: one line per row and metric), then three
/// for the people reading it: the bucket in the organization's zone, the
/// user's name and email.
const CSV_HEADER: &str = "bucket_start,metric,provider,model,operation,user,amount,events,bucket,user_name,user_email\r\n";

/// `rows` as CSV lines ([`CSV_HEADER`]): one per row and metric, the
/// grouped values filled in (others empty), people with their name and
/// email; every field written as the API's CSV writes text ([`csv_field`]).
fn csv_lines(
    rows: &[ReportRow],
    granularity: Granularity,
    tz: Tz,
    people: &HashMap<UserId, UserProfile>,
) -> String {
    let mut out = String::new();
    for row in rows {
        let key = &row.key;
        let (user_id, user_name, user_email) = match key.user {
            Some(user) => {
                let profile = people.get(&user);
                (
                    user.to_string(),
                    profile.and_then(|p| p.name.clone()).unwrap_or_default(),
                    profile.and_then(|p| p.email.clone()).unwrap_or_default(),
                )
            }
            None => Default::default(),
        };
        for (metric, amount) in &row.amounts {
            let fields = [
                row.bucket_start
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                metric.to_string(),
                key.provider.clone().unwrap_or_default(),
                key.model.clone().unwrap_or_default(),
                key.operation.clone().unwrap_or_default(),
                user_id.clone(),
                amount.normalize().to_string(),
                row.events.to_string(),
                bucket_text(row.bucket_start, granularity, tz),
                user_name.clone(),
                user_email.clone(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

/// `GET /orgs/{org}/reports.csv`: the whole report, read a page at a time
/// while it is sent.
async fn reports_csv(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    Path(org): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> std::result::Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let tz = ctx.organization().timezone;
    let today = config.tenancy.now().with_timezone(&tz).date_naive();
    let form = ReportForm::from_pairs(pairs);
    let resolved = form.resolve(tz, today)?;
    check_per_user(&ctx, &resolved)?;
    // The first page is read before the response starts, so a refusal is
    // still an error page, not a broken download.
    let first = config
        .tenancy
        .usage_report(&ctx, &resolved.query(&ctx, None, BULK_ROWS))
        .await?;
    let people_first = people(&config.tenancy, &ctx, users_of(&first.rows)).await?;
    let head = format!(
        "{CSV_HEADER}{}",
        csv_lines(&first.rows, resolved.granularity, tz, &people_first)
    );
    let file = format!(
        "attachment; filename=\"usage-{}-{}-{}.csv\"",
        ctx.org(),
        resolved.from_day,
        resolved.to_day
    );
    let tenancy = config.tenancy.clone();
    let rest = futures_util::stream::try_unfold(first.next, move |after| {
        let (tenancy, ctx, resolved) = (tenancy.clone(), ctx.clone(), resolved.clone());
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let page = tenancy
                .usage_report(&ctx, &resolved.query(&ctx, Some(after), BULK_ROWS))
                .await?;
            let people = people(&tenancy, &ctx, users_of(&page.rows)).await?;
            let text = csv_lines(&page.rows, resolved.granularity, tz, &people);
            Ok::<_, Error>(Some((text, page.next)))
        }
    });
    let stream = futures_util::stream::once(async move { Ok::<_, Error>(head) }).chain(rest);
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&file) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> ReportForm {
        ReportForm::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    #[test]
    fn the_default_is_this_month_so_far_by_day() {
        let r = form(&[]).resolve(Tz::Asia__Tokyo, today()).unwrap();
        assert_eq!(r.granularity, Granularity::Day);
        assert_eq!(r.from.to_rfc3339(), "2026-10-31T15:00:00+00:00");
        assert_eq!(r.to.to_rfc3339(), "2026-11-24T15:00:00+00:00");
        assert_eq!(r.buckets.len(), 24);
        assert!(r.group_by.is_empty() && r.filter.is_empty());
    }

    #[test]
    fn what_does_not_parse_names_its_field() {
        let field =
            |pairs: &[(&str, &str)]| form(pairs).resolve(Tz::UTC, today()).unwrap_err().field();
        assert_eq!(field(&[("from", "yesterday")]), Some("from"));
        assert_eq!(field(&[("to", "2026-13-01")]), Some("to"));
        assert_eq!(
            field(&[("from", "2026-11-05"), ("to", "2026-11-04")]),
            Some("to")
        );
        assert_eq!(field(&[("granularity", "week")]), Some("granularity"));
        assert_eq!(field(&[("group", "colour")]), Some("group_by"));
        assert_eq!(field(&[("user", "bob")]), Some("user"));
        assert_eq!(field(&[("after", "zz")]), Some("after"));
        assert_eq!(field(&[("chart", "Not A Metric!")]), Some("chart"));
        // 45 days of hours is more than a chart's worth of buckets.
        assert_eq!(
            field(&[
                ("granularity", "hour"),
                ("from", "2026-10-01"),
                ("to", "2026-11-14")
            ]),
            Some("granularity")
        );
    }

    #[test]
    fn months_start_on_the_first_and_hours_follow_the_zone() {
        let r = form(&[
            ("granularity", "month"),
            ("from", "2026-09-15"),
            ("to", "2026-11-02"),
        ])
        .resolve(Tz::Asia__Kolkata, today())
        .unwrap();
        let starts: Vec<String> = r.buckets.iter().map(|b| b.to_rfc3339()).collect();
        assert_eq!(
            starts,
            [
                "2026-08-31T18:30:00+00:00",
                "2026-09-30T18:30:00+00:00",
                "2026-10-31T18:30:00+00:00"
            ]
        );
        let r = form(&[
            ("granularity", "hour"),
            ("from", "2026-11-02"),
            ("to", "2026-11-02"),
        ])
        .resolve(Tz::Asia__Kolkata, today())
        .unwrap();
        assert_eq!(r.buckets.len(), 24);
        assert_eq!(r.buckets[1].to_rfc3339(), "2026-11-01T19:30:00+00:00");
    }

    #[test]
    fn a_day_whose_midnight_a_clock_change_skips_starts_at_the_end_of_the_gap() {
        // Santiago skips 2026-09-06 00:00 (04:00Z: 23:59:59 -04 → 01:00 -03);
        // the stores start that day's bucket at the end of the gap.
        let september = form(&[("from", "2026-09-01"), ("to", "2026-09-30")])
            .resolve(Tz::America__Santiago, today())
            .unwrap();
        let starts: Vec<String> = september.buckets.iter().map(|b| b.to_rfc3339()).collect();
        assert_eq!(starts.len(), 30);
        assert_eq!(
            starts[4..7],
            [
                "2026-09-05T04:00:00+00:00",
                "2026-09-06T04:00:00+00:00",
                "2026-09-07T03:00:00+00:00"
            ]
        );
        assert_eq!(september.to.to_rfc3339(), "2026-10-01T03:00:00+00:00");
        // The range may start or end on that day, and the default month
        // holds it.
        let sixth = form(&[("from", "2026-09-06"), ("to", "2026-09-06")])
            .resolve(Tz::America__Santiago, today())
            .unwrap();
        assert_eq!(sixth.from.to_rfc3339(), "2026-09-06T04:00:00+00:00");
        assert_eq!(sixth.to.to_rfc3339(), "2026-09-07T03:00:00+00:00");
        assert_eq!(sixth.buckets, [sixth.from]);
        // On 5 September the default range ends where the 6th starts.
        let fifth = form(&[])
            .resolve(
                Tz::America__Santiago,
                NaiveDate::from_ymd_opt(2026, 9, 5).unwrap(),
            )
            .unwrap();
        assert_eq!(fifth.to.to_rfc3339(), "2026-09-06T04:00:00+00:00");
        let so_far = form(&[])
            .resolve(
                Tz::America__Santiago,
                NaiveDate::from_ymd_opt(2026, 9, 10).unwrap(),
            )
            .unwrap();
        assert_eq!(so_far.buckets.len(), 10);
        let months = form(&[
            ("granularity", "month"),
            ("from", "2026-08-01"),
            ("to", "2026-09-30"),
        ])
        .resolve(Tz::America__Santiago, today())
        .unwrap();
        assert_eq!(months.buckets.len(), 2);
    }

    #[test]
    fn a_day_a_zone_skips_whole_is_no_bucket_of_its_own() {
        // Apia went from 2011-12-29 to 2011-12-31: the 30th starts and
        // ends at the same instant.
        let r = form(&[("from", "2011-12-29"), ("to", "2011-12-31")])
            .resolve(Tz::Pacific__Apia, today())
            .unwrap();
        assert_eq!(r.buckets.len(), 2);
        assert!(r.buckets[0] < r.buckets[1]);
    }

    #[test]
    fn a_cursor_that_is_not_one_is_refused_naming_after() {
        let field = |after: &str| parse_cursor(after).unwrap_err().field();
        assert_eq!(field("abc"), Some("after"));
        assert_eq!(field("7b7d"), Some("after")); // `{}`: no cursor
        assert_eq!(field("éé"), Some("after"));
        assert_eq!(field(&"7b".repeat(2_049)), Some("after"));
    }

    #[test]
    fn grouping_repeats_and_the_next_link_keeps_the_form() {
        let f = form(&[
            ("group", "model"),
            ("group", "user"),
            ("provider", "open ai&co"),
            ("granularity", "day"),
        ]);
        let r = f.resolve(Tz::UTC, today()).unwrap();
        assert!(r.group_by.contains(&ReportDimension::User));
        assert_eq!(r.filter.providers, ["open ai&co"]);
        let cursor = ReportCursor {
            bucket_start: r.from,
            key: GroupKey {
                model: Some("gpt-4o".into()),
                ..GroupKey::default()
            },
        };
        let text = cursor_text(&cursor);
        assert_eq!(parse_cursor(&text).unwrap(), cursor);
        assert_eq!(
            f.query_string(Some(&text)),
            format!("granularity=day&group=model&group=user&provider=open%20ai%26co&after={text}")
        );
    }
}
