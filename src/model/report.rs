//! Usage history as plain data: report queries and their rows, the event
//! log's reads, rollup drift, retention, and the billing export's meters,
//! batches and Stripe meter events. Nothing here does I/O.
//!
//! # Buckets and ranges
//!
//! Reports read rollups, never the event log. A rollup sums the events of
//! one hour **in the organization's time zone** (exact for half-hour and
//! quarter-hour zones: the bucket of an event in Asia/Kolkata starts at
//! `:30` UTC). A report row's `bucket_start` is the start of its hour, day
//! or month in the organization's time zone, as an instant. A report over
//! `[from, to)` counts the hours that **start** in that range: align the
//! range to the granularity (a month's report: the first instant of the
//! month in the organization's zone to the first of the next).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, UserId};
use crate::model::usage::{CostSource, MAX_LABEL_CHARS, TokenCounts};

/// The largest page a report or event read returns: 1,000 rows.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// The page size when none is given: 100 rows.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The most values one filter may list: 100.
pub const MAX_FILTER_VALUES: usize = 100;

/// The longest Stripe meter `event_name` accepted: 100 characters.
pub const MAX_EVENT_NAME_CHARS: usize = 100;

/// The longest Stripe meter event `identifier`: 100 characters (Stripe's
/// limit). Identifiers made by [`Meter::identifier`] are at most 80.
pub const MAX_IDENTIFIER_CHARS: usize = 100;

/// How far in the past Stripe accepts a meter event's `timestamp`: 35
/// days ("within the past 35 calendar days", and at most 5 minutes in the
/// future). See [`MeterEvent::timestamp`] for what the exporter sends.
pub const STRIPE_MAX_EVENT_AGE: chrono::TimeDelta = chrono::TimeDelta::days(35);

/// The safety margin the exporter keeps inside [`STRIPE_MAX_EVENT_AGE`]:
/// 1 day. No timestamp is older than 34 days (35 less this margin) at the
/// moment it is stamped: the claim stamps with the claim's time and the
/// exporter again with the send's time. The day covers the host's clock
/// running ahead of Stripe's, pacing within a batch (at most 1,000 s) and
/// a sink's own retries; it is the margin the SQL claim uses too, so a
/// batch sent right after its claim goes out as claimed.
pub const EXPORT_TIMESTAMP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// How long Stripe dedupes a meter event `identifier`: 24 hours. Stripe
/// documents that it "will enforce uniqueness within a rolling period of
/// at least 24 hours"; an identifier sent again later may be counted
/// again. The exporter refuses to resend a pending batch claimed this long
/// ago or longer unless told to ([`ExportOptions::resend_stale_batch`]).
pub const STRIPE_IDENTIFIER_DEDUPE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The oldest `timestamp` the exporter gives an event stamped at `at`:
/// `at` − ([`STRIPE_MAX_EVENT_AGE`] − [`EXPORT_TIMESTAMP_MARGIN`]), that is
/// `at` − 34 days.
pub fn oldest_event_timestamp(at: DateTime<Utc>) -> DateTime<Utc> {
    at - (STRIPE_MAX_EVENT_AGE - EXPORT_TIMESTAMP_MARGIN)
}

/// The largest export batch: 1,000 items.
pub const MAX_EXPORT_BATCH: u32 = 1_000;

/// The size of a report's time buckets, in the organization's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One row per hour.
    Hour,
    /// One row per day (midnight to midnight, local).
    Day,
    /// One row per calendar month (local).
    Month,
}

impl Granularity {
    /// `hour`, `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    /// Parses `hour`, `day` or `month`; anything else is `InvalidInput`
    /// naming `granularity`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            "month" => Ok(Granularity::Month),
            _ => Err(Error::invalid_input(
                "granularity",
                "must be hour, day or month",
            )),
        }
    }
}

/// What a report can group by (and filter on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportDimension {
    /// The metric (`tokens`, `cost_usd`, …).
    Metric,
    /// The provider (`openai`).
    Provider,
    /// The model (`gpt-4o`).
    Model,
    /// The operation (`ad_copy`).
    Operation,
    /// The user who caused the usage. Reading this breakdown takes an admin
    /// or owner (the facade enforces it).
    User,
}

impl ReportDimension {
    /// `metric`, `provider`, `model`, `operation` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportDimension::Metric => "metric",
            ReportDimension::Provider => "provider",
            ReportDimension::Model => "model",
            ReportDimension::Operation => "operation",
            ReportDimension::User => "user",
        }
    }

    /// Parses a name from [`as_str`](Self::as_str); anything else is
    /// `InvalidInput` naming `group_by`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "metric" => Ok(ReportDimension::Metric),
            "provider" => Ok(ReportDimension::Provider),
            "model" => Ok(ReportDimension::Model),
            "operation" => Ok(ReportDimension::Operation),
            "user" => Ok(ReportDimension::User),
            _ => Err(Error::invalid_input(
                "group_by",
                "must be metric, provider, model, operation or user",
            )),
        }
    }
}

/// Filters shared by reports and event reads: each non-empty list keeps
/// only the rows whose value is one of its values; an empty list keeps
/// all. An event without a provider, model or operation has the empty
/// string there; [`UsageFilter::no_user`] selects usage without a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFilter {
    /// Only these metrics (reports only; event reads refuse it).
    pub metrics: Vec<MetricKey>,
    /// Only these providers.
    pub providers: Vec<String>,
    /// Only these models.
    pub models: Vec<String>,
    /// Only these operations.
    pub operations: Vec<String>,
    /// Only these users.
    pub users: Vec<UserId>,
    /// Together with `users`, or alone: only usage without a user.
    pub no_user: bool,
}

impl UsageFilter {
    /// Whether it filters nothing.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
            && self.providers.is_empty()
            && self.models.is_empty()
            && self.operations.is_empty()
            && self.users.is_empty()
            && !self.no_user
    }

    /// Whether the user filter keeps `user`.
    pub fn keeps_user(&self, user: Option<UserId>) -> bool {
        if self.users.is_empty() && !self.no_user {
            return true;
        }
        match user {
            Some(u) => self.users.contains(&u),
            None => self.no_user,
        }
    }

    /// Whether the label filters keep this provider, model and operation.
    pub fn keeps_labels(&self, provider: &str, model: &str, operation: &str) -> bool {
        let keeps = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        keeps(&self.providers, provider)
            && keeps(&self.models, model)
            && keeps(&self.operations, operation)
    }

    /// Whether the metric filter keeps `metric`.
    pub fn keeps_metric(&self, metric: &MetricKey) -> bool {
        self.metrics.is_empty() || self.metrics.contains(metric)
    }

    /// Checks sizes and labels: at most [`MAX_FILTER_VALUES`] per list, each
    /// label at most [`MAX_LABEL_CHARS`] characters without NUL; otherwise
    /// `InvalidInput` naming `filter`.
    pub fn validate(&self) -> Result<()> {
        let lens = [
            ("metrics", self.metrics.len()),
            ("providers", self.providers.len()),
            ("models", self.models.len()),
            ("operations", self.operations.len()),
            ("users", self.users.len()),
        ];
        for (what, len) in lens {
            if len > MAX_FILTER_VALUES {
                return Err(Error::invalid_input(
                    "filter",
                    format_args!("{what}: {len} values; at most {MAX_FILTER_VALUES}"),
                ));
            }
        }
        for label in self
            .providers
            .iter()
            .chain(&self.models)
            .chain(&self.operations)
        {
            if label.chars().count() > MAX_LABEL_CHARS || label.contains('\0') {
                return Err(Error::invalid_input(
                    "filter",
                    format_args!(
                        "a label must be at most {MAX_LABEL_CHARS} characters without NUL"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The grouped dimensions of a report row: `Some` for each dimension the
/// query groups by (a `user` of `None` under a user grouping is usage
/// without a user), `None` for the others. Rows are ordered by bucket,
/// then these fields in declaration order (`None` first; strings byte by
/// byte, as SQL's `collate "C"`; users by their UUID bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// The metric, when grouped by metric.
    pub metric: Option<MetricKey>,
    /// The provider, when grouped by provider.
    pub provider: Option<String>,
    /// The model, when grouped by model.
    pub model: Option<String>,
    /// The operation, when grouped by operation.
    pub operation: Option<String>,
    /// The user, when grouped by user (`None`: usage without a user).
    pub user: Option<UserId>,
}

/// Where a page ends: the next page starts strictly after this row's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReportCursor {
    /// The last row's bucket start.
    pub bucket_start: DateTime<Utc>,
    /// The last row's group key.
    pub key: GroupKey,
}

/// A report over an organization's usage, from rollups.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use tenancy::OrgId;
/// use tenancy::model::report::{Granularity, ReportDimension, ReportQuery};
/// let org = OrgId::new_v7();
/// let november = ReportQuery::new(
///     org,
///     Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
///     Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
/// )
/// .granularity(Granularity::Month)
/// .group_by([ReportDimension::Provider, ReportDimension::Model]);
/// assert!(november.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportQuery {
    /// The organization.
    pub org: OrgId,
    /// Hours starting at or after this instant count.
    pub from: DateTime<Utc>,
    /// Hours starting before this instant count.
    pub to: DateTime<Utc>,
    /// The bucket size, in the organization's time zone.
    pub granularity: Granularity,
    /// The dimensions rows are grouped by (none: one row per bucket).
    pub group_by: BTreeSet<ReportDimension>,
    /// Which usage counts.
    pub filter: UsageFilter,
    /// Rows strictly after this key (keyset pagination); from the start if
    /// `None`.
    pub after: Option<ReportCursor>,
    /// At most this many rows: 1 to [`MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl ReportQuery {
    /// A daily report of `org` over `[from, to)`, ungrouped, unfiltered,
    /// [`DEFAULT_PAGE_SIZE`] rows a page.
    pub fn new(org: OrgId, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        ReportQuery {
            org,
            from,
            to,
            granularity: Granularity::Day,
            group_by: BTreeSet::new(),
            filter: UsageFilter::default(),
            after: None,
            limit: DEFAULT_PAGE_SIZE,
        }
    }

    /// Sets the granularity.
    pub fn granularity(mut self, granularity: Granularity) -> Self {
        self.granularity = granularity;
        self
    }

    /// Groups by these dimensions (added to any already set).
    pub fn group_by(mut self, dims: impl IntoIterator<Item = ReportDimension>) -> Self {
        self.group_by.extend(dims);
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: UsageFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after `cursor` (a page's [`ReportPage::next`]).
    pub fn after(mut self, cursor: Option<ReportCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// Whether rows are grouped by `dim`.
    pub fn groups_by(&self, dim: ReportDimension) -> bool {
        self.group_by.contains(&dim)
    }

    /// Whether this query shows usage per member to `user`: it groups by
    /// user or filters on users, and its filter is not exactly `user`
    /// alone (`users == [user]` without [`UsageFilter::no_user`]).
    /// Reading such a query takes
    /// [`ViewMemberUsage`](crate::model::Action::ViewMemberUsage).
    pub fn reads_other_members(&self, user: UserId) -> bool {
        let per_user = self.groups_by(ReportDimension::User) || !self.filter.users.is_empty();
        let only_self = self.filter.users == [user] && !self.filter.no_user;
        per_user && !only_self
    }

    /// Checks the query: `from` before `to` (`InvalidInput` naming `to`),
    /// a limit of 1 to [`MAX_PAGE_SIZE`] (naming `limit`), the filter
    /// ([`UsageFilter::validate`]).
    pub fn validate(&self) -> Result<()> {
        check_range(self.from, self.to)?;
        check_limit(self.limit)?;
        self.filter.validate()
    }

    /// The group key of usage with these values under this query's
    /// grouping.
    pub fn key_of(
        &self,
        metric: &MetricKey,
        provider: &str,
        model: &str,
        operation: &str,
        user: Option<UserId>,
    ) -> GroupKey {
        use ReportDimension as D;
        GroupKey {
            metric: self.groups_by(D::Metric).then(|| metric.clone()),
            provider: self.groups_by(D::Provider).then(|| provider.to_owned()),
            model: self.groups_by(D::Model).then(|| model.to_owned()),
            operation: self.groups_by(D::Operation).then(|| operation.to_owned()),
            user: if self.groups_by(D::User) { user } else { None },
        }
    }
}

fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    if from >= to {
        return Err(Error::invalid_input(
            "to",
            format_args!("{to} is not after from ({from})"),
        ));
    }
    Ok(())
}

fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(Error::invalid_input(
            "limit",
            format_args!("{limit} is outside 1..={MAX_PAGE_SIZE}"),
        ));
    }
    Ok(())
}

/// One row of a report: the sums of one bucket and group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The bucket's start (hour, day or month in the organization's time
    /// zone), as an instant.
    pub bucket_start: DateTime<Utc>,
    /// The grouped dimensions.
    pub key: GroupKey,
    /// The sum of each metric (only those the filter keeps, never zero
    /// entries for metrics without usage).
    pub amounts: BTreeMap<MetricKey, Decimal>,
    /// Grouped by metric: the events that counted towards the row's metric.
    /// Otherwise: the events of the bucket and group (the metric filter does
    /// not narrow this count).
    pub events: u64,
}

impl ReportRow {
    /// The `cost_usd` amount: its entry in [`amounts`](ReportRow::amounts),
    /// 0 when there is none (no cost, or the filter leaves it out).
    pub fn cost_usd(&self) -> Decimal {
        self.amounts
            .get(&MetricKey::COST_USD)
            .copied()
            .unwrap_or_default()
    }

    /// This row's cursor.
    pub fn cursor(&self) -> ReportCursor {
        ReportCursor {
            bucket_start: self.bucket_start,
            key: self.key.clone(),
        }
    }
}

/// A page of a report, in row order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportPage {
    /// The rows.
    pub rows: Vec<ReportRow>,
    /// The cursor of the next page; `None` when this is the last.
    pub next: Option<ReportCursor>,
}

/// Where an event page ends: the next starts strictly after this event in
/// (`occurred_at`, `id`) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventCursor {
    /// The last event's time.
    pub occurred_at: DateTime<Utc>,
    /// The last event's id.
    pub id: EventId,
}

/// A read of an organization's event log, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// The organization.
    pub org: OrgId,
    /// Events at or after this instant.
    pub from: DateTime<Utc>,
    /// Events before this instant.
    pub to: DateTime<Utc>,
    /// Which events (its `metrics` must be empty: `InvalidInput` naming
    /// `filter`).
    pub filter: UsageFilter,
    /// Events strictly after this one; from the start if `None`.
    pub after: Option<EventCursor>,
    /// At most this many: 1 to [`MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl EventQuery {
    /// Every event of `org` in `[from, to)`, [`DEFAULT_PAGE_SIZE`] a page.
    pub fn new(org: OrgId, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        EventQuery {
            org,
            from,
            to,
            filter: UsageFilter::default(),
            after: None,
            limit: DEFAULT_PAGE_SIZE,
        }
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: UsageFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after `cursor`.
    pub fn after(mut self, cursor: Option<EventCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// Checks the query as [`ReportQuery::validate`] does, and that the
    /// filter names no metric.
    pub fn validate(&self) -> Result<()> {
        check_range(self.from, self.to)?;
        check_limit(self.limit)?;
        self.filter.validate()?;
        if !self.filter.metrics.is_empty() {
            return Err(Error::invalid_input(
                "filter",
                "event reads filter by provider, model, operation and user, not metric",
            ));
        }
        Ok(())
    }

    /// Whether `event` is in the range, after the cursor and kept by the
    /// filter.
    pub fn keeps(&self, event: &RecordedEvent) -> bool {
        event.org == self.org
            && event.occurred_at >= self.from
            && event.occurred_at < self.to
            && self.after.is_none_or(|c| event.cursor() > c)
            && self.filter.keeps_user(event.user)
            && self
                .filter
                .keeps_labels(&event.provider, &event.model, &event.operation)
    }
}

/// An event as stored: every field of the recorded event, its token
/// classes, what it counted, and its cost with provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Its id.
    pub id: EventId,
    /// The organization.
    pub org: OrgId,
    /// The user, if any.
    pub user: Option<UserId>,
    /// The provider (empty when none).
    pub provider: String,
    /// The model (empty when none).
    pub model: String,
    /// The operation (empty when none).
    pub operation: String,
    /// Tokens by class.
    pub tokens: TokenCounts,
    /// Other metrics and their amounts, as given.
    pub quantities: BTreeMap<MetricKey, Decimal>,
    /// The cost in US dollars, if known.
    pub cost_usd: Option<Decimal>,
    /// Where the cost came from.
    pub cost_source: Option<CostSource>,
    /// What it counted towards: each metric and amount.
    pub amounts: BTreeMap<MetricKey, Decimal>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Its metadata.
    pub metadata: serde_json::Value,
}

impl RecordedEvent {
    /// The event as stored from its record.
    pub fn from_record(record: &crate::model::UsageRecord) -> Self {
        let e = &record.event;
        RecordedEvent {
            id: record.id,
            org: e.org,
            user: e.user,
            provider: e.provider.clone(),
            model: e.model.clone(),
            operation: e.operation.clone(),
            tokens: e.tokens_by_class(),
            quantities: e.quantities.clone(),
            cost_usd: e.cost_usd,
            cost_source: e.cost_source.clone(),
            amounts: record
                .amounts
                .iter()
                .map(|(m, a)| (m.clone(), *a))
                .collect(),
            occurred_at: record.occurred_at,
            metadata: e.metadata.clone(),
        }
    }

    /// This event's cursor.
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            occurred_at: self.occurred_at,
            id: self.id,
        }
    }
}

/// A page of events, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// The events.
    pub events: Vec<RecordedEvent>,
    /// The cursor of the next page; `None` when this is the last.
    pub next: Option<EventCursor>,
}

/// A query for the token rollups repricing reads: by bucket, provider,
/// model and cost provenance (and, when grouped, operation and user).
/// Its `group_by` may hold only `operation` and `user`, and its filter no
/// metric (`InvalidInput` naming `group_by` / `filter`).
pub type CostQuery = ReportQuery;

/// Validates a [`CostQuery`].
pub fn validate_cost_query(query: &CostQuery) -> Result<()> {
    query.validate()?;
    if query
        .group_by
        .iter()
        .any(|d| !matches!(d, ReportDimension::Operation | ReportDimension::User))
    {
        return Err(Error::invalid_input(
            "group_by",
            "token rows group by operation and user only (provider and model always)",
        ));
    }
    if !query.filter.metrics.is_empty() {
        return Err(Error::invalid_input(
            "filter",
            "token rows are not filtered by metric",
        ));
    }
    Ok(())
}

/// The token classes and cost of one bucket, provider, model and price
/// provenance: what repricing needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// The bucket's start.
    pub bucket_start: DateTime<Utc>,
    /// Provider and model always; operation and user when grouped.
    pub key: GroupKey,
    /// How the cost was set (`None`: events without a cost).
    pub cost_source: Option<CostSource>,
    /// Token sums by class (saturating).
    pub tokens: TokenCounts,
    /// The sum of the events' `cost_usd` (0 for events without one).
    pub cost_usd: Decimal,
    /// How many events.
    pub events: u64,
}

/// A page of cost rows, ordered by bucket, key, then provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostPage {
    /// The rows.
    pub rows: Vec<CostRow>,
    /// Rows of the last bucket and key may continue on the next page: the
    /// cursor is the last row's bucket and key; `None` when this is the
    /// last page.
    pub next: Option<ReportCursor>,
}

/// Reconciliation of rollups: an organization's hours in `[from, to)`
/// recomputed from the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupReconcileQuery {
    /// The organization.
    pub org: OrgId,
    /// Hours starting at or after this.
    pub from: DateTime<Utc>,
    /// Hours starting before this.
    pub to: DateTime<Utc>,
}

impl RollupReconcileQuery {
    /// Checks the query: `from` before `to` (`InvalidInput` naming `to`).
    pub fn validate(&self) -> Result<()> {
        check_range(self.from, self.to)
    }
}

/// One rollup (hour, user, provider, model, operation, metric) whose
/// stored sums differ from the event log's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RollupDrift {
    /// The hour's start.
    pub bucket_start: DateTime<Utc>,
    /// The user (`None`: usage without one).
    pub user: Option<UserId>,
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The operation.
    pub operation: String,
    /// The metric.
    pub metric: MetricKey,
    /// The rollup's amount (0 when missing).
    pub counted: Decimal,
    /// The events' sum.
    pub recomputed: Decimal,
    /// The rollup's event count (0 when missing).
    pub counted_events: u64,
    /// How many events the log has for it.
    pub recomputed_events: u64,
}

/// What retention dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionOutcome {
    /// Every event before this instant is gone from the event log: the
    /// cutoff asked for, or (on a partitioned log) the start of the month
    /// (UTC) that contains it, which is never after the cutoff.
    pub dropped_before: DateTime<Utc>,
    /// How many events were dropped, where the backend counts them.
    pub events: Option<u64>,
}

/// A Stripe billing meter this crate exports one metric to.
///
/// `unit_scale` turns an amount into Stripe's whole units: `value =
/// amount × unit_scale`, rounded down, the fraction carried per
/// organization and meter to the next export (never rounded twice, never
/// lost). Cost in cents: `Meter::new("api_cost_cents", COST_USD, 100)`;
/// tokens in thousands: scale `0.001`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    /// Stripe's meter `event_name`: 1 to 100 characters, ASCII letters,
    /// digits, `_`, `-`, `.` or `:`.
    pub event_name: String,
    /// The metric exported.
    pub metric: MetricKey,
    /// Units per amount; more than 0.
    pub unit_scale: Decimal,
}

impl Meter {
    /// A meter, validated ([`validate`](Self::validate)).
    pub fn new(
        event_name: impl Into<String>,
        metric: MetricKey,
        unit_scale: Decimal,
    ) -> Result<Self> {
        let meter = Meter {
            event_name: event_name.into(),
            metric,
            unit_scale,
        };
        meter.validate()?;
        Ok(meter)
    }

    /// Checks the event name (`InvalidInput` naming `event_name`) and the
    /// scale (naming `unit_scale`).
    pub fn validate(&self) -> Result<()> {
        let name = &self.event_name;
        if name.is_empty()
            || name.len() > MAX_EVENT_NAME_CHARS
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        {
            return Err(Error::invalid_input(
                "event_name",
                format_args!(
                    "1 to {MAX_EVENT_NAME_CHARS} ASCII letters, digits, '_', '-', '.' or ':'"
                ),
            ));
        }
        if self.unit_scale <= Decimal::ZERO {
            return Err(Error::invalid_input("unit_scale", "must be more than 0"));
        }
        Ok(())
    }

    /// The deterministic Stripe `identifier` of the `seq`-th delta (0, 1, …)
    /// exported for `org`'s hour `bucket_start` on this meter: the
    /// organization, the bucket (Unix seconds), the sequence number and 16
    /// hex digits of SHA-256 of the event name; at most 80 characters. The
    /// same delta always gets the same identifier (Stripe dedupes a
    /// redelivery); a later delta of the same hour a new one.
    pub fn identifier(&self, org: OrgId, bucket_start: DateTime<Utc>, seq: u32) -> String {
        let digest = Sha256::digest(self.event_name.as_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{seq}-{hash}",
            org.as_uuid().simple(),
            bucket_start.timestamp()
        )
    }
}

/// A Stripe meter event, exactly as Stripe's `POST /v1/billing/meter_events`
/// documents it (`event_name`, `payload[stripe_customer_id]`,
/// `payload[value]`, `identifier`, `timestamp`). Serializes to that JSON
/// shape; [`form`](Self::form) gives the form-encoded pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterEvent {
    /// The meter's event name.
    pub event_name: String,
    /// The customer and value.
    pub payload: MeterPayload,
    /// A unique identifier (at most 100 characters): Stripe dedupes by it,
    /// within "a rolling period of at least 24 hours"
    /// ([`STRIPE_IDENTIFIER_DEDUPE_WINDOW`]). The same item always sends the
    /// same identifier.
    pub identifier: String,
    /// Unix seconds. Stripe takes a timestamp within the past 35 calendar
    /// days and at most 5 minutes ahead. The exporter sends
    /// [`ExportItem::timestamp_at`] the instant of the send: the item's
    /// [`timestamp`](ExportItem::timestamp) (the hour's start) or, when that
    /// is more than 34 days before the send, the send's time minus 34 days.
    /// It is the only field that may differ between two sends of one item.
    pub timestamp: i64,
}

/// A meter event's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterPayload {
    /// The Stripe customer (`cus_…`).
    pub stripe_customer_id: String,
    /// A whole number of units, as a string (Stripe's form encoding).
    pub value: String,
}

impl MeterEvent {
    /// The form-encoded parameters Stripe's API takes, in order.
    pub fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("event_name", self.event_name.clone()),
            (
                "payload[stripe_customer_id]",
                self.payload.stripe_customer_id.clone(),
            ),
            ("payload[value]", self.payload.value.clone()),
            ("identifier", self.identifier.clone()),
            ("timestamp", self.timestamp.to_string()),
        ]
    }
}

/// The longest Stripe customer id accepted: 255 characters.
pub const MAX_CUSTOMER_ID_CHARS: usize = 255;

/// Checks a Stripe customer id: 1 to 255 ASCII letters, digits or `_`
/// (`cus_NffrFeUfNV2Hib`); otherwise `InvalidInput` naming
/// `stripe_customer_id`.
pub fn validate_customer_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_CUSTOMER_ID_CHARS
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(Error::invalid_input(
            "stripe_customer_id",
            format_args!("1 to {MAX_CUSTOMER_ID_CHARS} ASCII letters, digits or '_'"),
        ));
    }
    Ok(())
}

/// A request to claim the next export batch of one meter.
///
/// If the meter has a batch claimed and not yet acknowledged, the claim
/// returns that batch again, unchanged (same id, items and identifiers): a
/// crash between claim and ack redelivers it and Stripe dedupes. Otherwise
/// it claims, across every organization with a billing customer, the
/// not-yet-exported amount of the meter's metric per organization and hour
/// whose hour ended at or before `up_to`, oldest hour first, at most
/// `max_items` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportClaim {
    /// The meter.
    pub meter: Meter,
    /// Only hours that ended at or before this instant (hours still open
    /// are exported later, as they fill).
    pub up_to: DateTime<Utc>,
    /// At most this many items: 1 to [`MAX_EXPORT_BATCH`].
    pub max_items: u32,
    /// The claim's time: stamps the batch and bounds timestamps.
    pub now: DateTime<Utc>,
}

impl ExportClaim {
    /// Checks the meter, `max_items` (naming `max_items`) and that `up_to`
    /// is not after `now` (naming `up_to`).
    pub fn validate(&self) -> Result<()> {
        self.meter.validate()?;
        if self.max_items == 0 || self.max_items > MAX_EXPORT_BATCH {
            return Err(Error::invalid_input(
                "max_items",
                format_args!("{} is outside 1..={MAX_EXPORT_BATCH}", self.max_items),
            ));
        }
        if self.up_to > self.now {
            return Err(Error::invalid_input("up_to", "is after now"));
        }
        Ok(())
    }
}

/// One claimed delta: the amount of one organization's hour not exported
/// before, in whole units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportItem {
    /// The organization.
    pub org: OrgId,
    /// Its Stripe customer.
    pub stripe_customer_id: String,
    /// The hour's start.
    pub bucket_start: DateTime<Utc>,
    /// 0 for the hour's first delta, then 1, 2, … for late usage.
    pub seq: u32,
    /// The metric's amount this delta covers.
    pub amount: Decimal,
    /// Whole units: ⌊amount × unit_scale + carried⌋.
    pub value: u64,
    /// What is carried to the organization's next delta on this meter
    /// after this one, in units, in `[0, 1)`.
    pub carried: Decimal,
    /// Stripe's `identifier` ([`Meter::identifier`]).
    pub identifier: String,
    /// The timestamp as claimed: the hour's start, or the claim's `now`
    /// minus 34 days when the hour is older than that. Stored with the
    /// batch and never changed. What is sent is
    /// [`timestamp_at`](Self::timestamp_at) the send's time, which moves it
    /// forward when the batch is sent (again) more than 34 days after it:
    /// a batch claimed on day 0 and resent on day 40 carries day 6.
    pub timestamp: DateTime<Utc>,
}

impl ExportItem {
    /// The `timestamp` to send at `sent_at`: [`timestamp`](Self::timestamp),
    /// or [`oldest_event_timestamp`]`(sent_at)` (`sent_at` − 34 days) when
    /// that is later, so Stripe's 35-day bound holds with a day to spare
    /// however late the batch is sent. The usage then lands in Stripe at
    /// that later instant (it was older than Stripe takes).
    pub fn timestamp_at(&self, sent_at: DateTime<Utc>) -> DateTime<Utc> {
        self.timestamp.max(oldest_event_timestamp(sent_at))
    }

    /// The Stripe meter event of this item for `event_name`, sent at
    /// `sent_at`: identifier and value as claimed, timestamp
    /// [`timestamp_at`](Self::timestamp_at)`(sent_at)`. `None` for an item
    /// below one unit, which only carries its remainder.
    pub fn meter_event(&self, event_name: &str, sent_at: DateTime<Utc>) -> Option<MeterEvent> {
        (self.value > 0).then(|| MeterEvent {
            event_name: event_name.to_owned(),
            payload: MeterPayload {
                stripe_customer_id: self.stripe_customer_id.clone(),
                value: self.value.to_string(),
            },
            identifier: self.identifier.clone(),
            timestamp: self.timestamp_at(sent_at).timestamp(),
        })
    }
}

/// A claimed batch of one meter, delivered through a sink, then
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBatch {
    /// The batch's id (a counter per meter, from 1).
    pub id: u64,
    /// The meter's event name.
    pub event_name: String,
    /// When it was first claimed.
    pub claimed_at: DateTime<Utc>,
    /// Its items, ordered by organization, then hour, then sequence number.
    pub items: Vec<ExportItem>,
}

impl ExportBatch {
    /// The Stripe meter events to deliver at `sent_at`: one per item with a
    /// value of 1 or more (an item below one unit only carries its
    /// remainder), as [`ExportItem::meter_event`] makes them. The exporter
    /// stamps each event with the clock's time when it sends that event.
    pub fn meter_events(&self, sent_at: DateTime<Utc>) -> Vec<MeterEvent> {
        self.items
            .iter()
            .filter_map(|i| i.meter_event(&self.event_name, sent_at))
            .collect()
    }

    /// Whether, at `now`, the batch was claimed [`STRIPE_IDENTIFIER_DEDUPE_WINDOW`]
    /// (24 hours) ago or longer: some of its events may have reached Stripe
    /// that long ago, and Stripe may no longer dedupe their identifiers.
    pub fn is_past_dedupe_window(&self, now: DateTime<Utc>) -> bool {
        now - self.claimed_at >= STRIPE_IDENTIFIER_DEDUPE_WINDOW
    }
}

/// Acknowledges a delivered batch: its amounts become exported and its
/// remainders carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportAck {
    /// The meter's event name.
    pub event_name: String,
    /// The batch id.
    pub batch: u64,
    /// When delivery finished.
    pub now: DateTime<Utc>,
}

/// The units and remainder of a delta: `⌊amount × scale + carried⌋` and
/// the fraction left, computed exactly in `Decimal`.
pub fn to_units(amount: Decimal, unit_scale: Decimal, carried: Decimal) -> Result<(u64, Decimal)> {
    let total = amount
        .checked_mul(unit_scale)
        .and_then(|v| v.checked_add(carried))
        .ok_or_else(|| Error::invalid_input("unit_scale", "amount × scale overflows"))?;
    let whole = total.floor();
    let value = u64::try_from(whole)
        .map_err(|_| Error::invalid_input("unit_scale", "a value does not fit in 64 bits"))?;
    Ok((value, (total - whole).normalize()))
}

/// The file format of a streamed export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// CSV with a header line, quoted as RFC 4180 says but with lines ending
    /// in `\n` (not `\r\n`); text fields that a spreadsheet
    /// would run as a formula (starting with `=`, `+`, `-`, `@`, tab or
    /// carriage return) get a leading `'`.
    Csv,
    /// One JSON object per line (the row's or event's serde form).
    Ndjson,
}

/// A text field of an [`ExportFormat::Csv`] file: with a leading `'` when
/// a spreadsheet would run it as a formula (it starts with `=`, `+`, `-`,
/// `@`, tab or carriage return), then [`csv_quote`]d. The console's report
/// CSV writes its fields with it too.
pub(crate) fn csv_field(value: &str) -> String {
    let guarded = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    };
    csv_quote(&guarded)
}

/// A CSV field as is, quoted when it holds a comma, quote or line break
/// (quotes doubled), as RFC 4180 says.
pub(crate) fn csv_quote(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Where the billing exporter delivers Stripe meter events: the host's
/// Stripe client (`POST /v1/billing/meter_events`). The crate never calls
/// Stripe itself.
///
/// The exporter calls [`send`](Self::send) for one event at a time, never
/// concurrently, so there is never more than one call in flight for any
/// customer and meter (Stripe allows one), and paces calls to the
/// configured rate (at most Stripe's 1,000 calls per second in live mode).
/// A redelivered event has the same `identifier`, which Stripe dedupes
/// within 24 hours ([`STRIPE_IDENTIFIER_DEDUPE_WINDOW`]): a sink should
/// treat Stripe's "duplicate identifier" answer as success.
#[async_trait::async_trait]
pub trait MeterSink: Send + Sync {
    /// Delivers one meter event. An error stops the run; the batch stays
    /// claimed and the next run delivers all of it again.
    async fn send(&self, event: &MeterEvent) -> Result<()>;
}

/// Stripe's documented rate limit for meter events in live mode: 1,000
/// calls per second.
pub const STRIPE_MAX_CALLS_PER_SECOND: u32 = 1_000;

/// How one export run behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportOptions {
    /// Items per claimed batch: 1 to [`MAX_EXPORT_BATCH`]; default 100.
    pub batch_size: u32,
    /// Stop after this many batches (`None`: until nothing is left).
    pub max_batches: Option<u32>,
    /// Calls to the sink per second at most: 1 to
    /// [`STRIPE_MAX_CALLS_PER_SECOND`]; default 100, a tenth of Stripe's
    /// live limit, leaving room for the host's other calls.
    pub calls_per_second: u32,
    /// Export only hours that ended at least this many seconds ago
    /// (default 300): usage recorded late still exports, as a later
    /// delta, but waiting a little makes that rarer.
    pub settle_secs: u32,
    /// The id of a pending batch claimed 24 hours ago or longer
    /// ([`ExportBatch::is_past_dedupe_window`]) to send again anyway
    /// (default `None`). Without it the exporter refuses such a batch
    /// (`Conflict`, naming it), since Stripe may count again an event it
    /// received more than 24 hours before. Set it once you checked in
    /// Stripe that none of the batch's events was counted (a sink that
    /// failed on its first event, say). Naming the batch keeps the check
    /// for every later batch.
    #[serde(default)]
    pub resend_stale_batch: Option<u64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch_size: 100,
            max_batches: None,
            calls_per_second: 100,
            settle_secs: 300,
            resend_stale_batch: None,
        }
    }
}

impl ExportOptions {
    /// Checks the bounds; `InvalidInput` naming `batch_size` or
    /// `calls_per_second`.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.batch_size > MAX_EXPORT_BATCH {
            return Err(Error::invalid_input(
                "batch_size",
                format_args!("{} is outside 1..={MAX_EXPORT_BATCH}", self.batch_size),
            ));
        }
        if self.calls_per_second == 0 || self.calls_per_second > STRIPE_MAX_CALLS_PER_SECOND {
            return Err(Error::invalid_input(
                "calls_per_second",
                format_args!(
                    "{} is outside 1..={STRIPE_MAX_CALLS_PER_SECOND}",
                    self.calls_per_second
                ),
            ));
        }
        Ok(())
    }
}

/// What one export run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRun {
    /// Batches delivered and acknowledged.
    pub batches: u64,
    /// Items acknowledged (those below one unit included).
    pub items: u64,
    /// Meter events sent (redeliveries of a batch claimed before included).
    pub events_sent: u64,
}

/// One model's cost over a range: as recorded, and under another price
/// table ([`Tenancy::reprice`](crate::Tenancy::reprice)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepriceLine {
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// How many events.
    pub events: u64,
    /// Their tokens by class.
    pub tokens: TokenCounts,
    /// The cost recorded (events without a cost count 0).
    pub recorded_usd: Decimal,
    /// The cost under the table. Tokens are priced per hour of this
    /// provider and model (summed over users and operations, as the token
    /// rollups keep them): each hour's token classes at the price in
    /// effect at the hour's start. An hour the table cannot price adds 0.
    pub repriced_usd: Decimal,
    /// The events of the hours the table could not price: no price for
    /// the model at the hour's start, or no rate for a token class the
    /// hour has (audio or image, say). The hour is priced as a whole, so
    /// one such event leaves every event of that model in that hour here.
    /// An hour without tokens (events of cost or other quantities only)
    /// adds nothing to `repriced_usd` and is not counted here.
    pub unpriced_events: u64,
}

/// A dry run of another price table over a range: per model, recorded
/// beside repriced cost. Writes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepriceReport {
    /// The table's label.
    pub table: String,
    /// The range's start.
    pub from: DateTime<Utc>,
    /// The range's end.
    pub to: DateTime<Utc>,
    /// One line per provider and model, ordered by provider, then model.
    pub lines: Vec<RepriceLine>,
    /// The sum of `recorded_usd`.
    pub recorded_usd: Decimal,
    /// The sum of `repriced_usd`.
    pub repriced_usd: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn units_carry_their_remainder() {
        let (v, r) = to_units(dec!(0.015), dec!(100), dec!(0)).unwrap();
        assert_eq!((v, r), (1, dec!(0.5)));
        let (v, r) = to_units(dec!(0.015), dec!(100), r).unwrap();
        assert_eq!((v, r), (2, dec!(0)));
    }

    #[test]
    fn identifiers_are_short_and_stable() {
        let m = Meter::new("x".repeat(100), MetricKey::TOKENS, dec!(1)).unwrap();
        let org = OrgId::new_v7();
        let at = Utc::now();
        let id = m.identifier(org, at, 4_000_000_000);
        assert!(id.len() <= 80, "{id}");
        assert_eq!(id, m.identifier(org, at, 4_000_000_000));
        assert_ne!(id, m.identifier(org, at, 1));
    }

    #[test]
    fn timestamps_are_stamped_at_send_time() {
        let hour = DateTime::parse_from_rfc3339("2026-03-04T06:00:00Z")
            .unwrap()
            .to_utc();
        let org = OrgId::new_v7();
        let item = ExportItem {
            org,
            stripe_customer_id: "cus_1".into(),
            bucket_start: hour,
            seq: 0,
            amount: dec!(2),
            value: 2,
            carried: dec!(0),
            identifier: "id".into(),
            timestamp: hour,
        };
        let batch = ExportBatch {
            id: 7,
            event_name: "m".into(),
            claimed_at: hour + chrono::TimeDelta::hours(4),
            items: vec![
                item.clone(),
                ExportItem {
                    value: 0,
                    ..item.clone()
                },
            ],
        };
        // Sent at once: the hour's start.
        let soon = batch.claimed_at;
        assert_eq!(batch.meter_events(soon)[0].timestamp, hour.timestamp());
        // Sent 40 days on: 34 days before the send; all else unchanged.
        let late = soon + chrono::TimeDelta::days(40);
        let events = batch.meter_events(late);
        assert_eq!(events.len(), 1, "an item below one unit sends nothing");
        assert_eq!(
            events[0].timestamp,
            (late - chrono::TimeDelta::days(34)).timestamp()
        );
        assert_eq!(
            (
                events[0].identifier.as_str(),
                events[0].payload.value.as_str()
            ),
            ("id", "2")
        );
        assert!(!batch.is_past_dedupe_window(soon + chrono::TimeDelta::hours(23)));
        assert!(batch.is_past_dedupe_window(soon + chrono::TimeDelta::hours(24)));
    }

    #[test]
    fn bad_queries_name_the_field() {
        let now = Utc::now();
        let q = ReportQuery::new(OrgId::new_v7(), now, now);
        assert_eq!(q.validate().unwrap_err().field(), Some("to"));
        let q = ReportQuery::new(OrgId::new_v7(), now, now + chrono::TimeDelta::hours(1));
        assert_eq!(
            q.clone().limit(0).validate().unwrap_err().field(),
            Some("limit")
        );
        assert_eq!(
            q.clone().limit(1001).validate().unwrap_err().field(),
            Some("limit")
        );
        assert!(Meter::new("", MetricKey::TOKENS, dec!(1)).is_err());
        assert_eq!(
            Meter::new("m", MetricKey::TOKENS, dec!(0))
                .unwrap_err()
                .field(),
            Some("unit_scale")
        );
        assert!(validate_customer_id("cus_123").is_ok());
        assert!(validate_customer_id("cus 1").is_err());
        let backwards = RollupReconcileQuery {
            org: OrgId::new_v7(),
            from: now,
            to: now - chrono::TimeDelta::hours(1),
        };
        assert_eq!(backwards.validate().unwrap_err().field(), Some("to"));
        let empty = RollupReconcileQuery {
            to: now,
            ..backwards.clone()
        };
        assert_eq!(empty.validate().unwrap_err().field(), Some("to"));
        let hour = RollupReconcileQuery {
            to: now + chrono::TimeDelta::hours(1),
            ..backwards
        };
        assert!(hour.validate().is_ok());
    }

    #[test]
    fn only_a_filter_on_oneself_alone_keeps_a_breakdown_by_user_ones_own() {
        let now = Utc::now();
        let (me, other) = (UserId::new_v7(), UserId::new_v7());
        let q = ReportQuery::new(OrgId::new_v7(), now, now + chrono::TimeDelta::hours(1));
        let only = |users: Vec<UserId>, no_user: bool| UsageFilter {
            users,
            no_user,
            ..UsageFilter::default()
        };
        // Not per user at all: by model, or usage without a user.
        assert!(!q.reads_other_members(me));
        let by_model = q.clone().group_by([ReportDimension::Model]);
        assert!(!by_model.reads_other_members(me));
        assert!(!q.clone().filter(only(vec![], true)).reads_other_members(me));
        // Per user: grouped, or filtered on anyone but exactly oneself.
        let by_user = q.clone().group_by([ReportDimension::User]);
        assert!(by_user.reads_other_members(me));
        assert!(
            q.clone()
                .filter(only(vec![other], false))
                .reads_other_members(me)
        );
        assert!(
            q.clone()
                .filter(only(vec![me, other], false))
                .reads_other_members(me)
        );
        assert!(
            q.clone()
                .filter(only(vec![me], true))
                .reads_other_members(me)
        );
        // Exactly oneself: one's own, grouped by user or not.
        assert!(
            !q.clone()
                .filter(only(vec![me], false))
                .reads_other_members(me)
        );
        assert!(
            !by_user
                .clone()
                .filter(only(vec![me], false))
                .reads_other_members(me)
        );
        assert!(
            by_user
                .filter(only(vec![me], false))
                .reads_other_members(other)
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("gpt-4o"), "gpt-4o");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
        assert_eq!(csv_quote("-1,2"), "\"-1,2\"");
    }

    #[test]
    fn a_rows_cost_is_its_cost_usd_amount() {
        let mut row = ReportRow {
            bucket_start: Utc::now(),
            key: GroupKey::default(),
            amounts: BTreeMap::from([(MetricKey::TOKENS, dec!(12))]),
            events: 1,
        };
        assert_eq!(row.cost_usd(), Decimal::ZERO);
        row.amounts.insert(MetricKey::COST_USD, dec!(0.25));
        assert_eq!(row.cost_usd(), dec!(0.25));
    }
}
