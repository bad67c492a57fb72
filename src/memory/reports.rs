//! `ReportStore` for [`MemoryStore`]: rollups kept with every record, the
//! event log's reads, exports and retention, under the one lock.
//!
//! The record hook does not know the organization's time zone, so rollups
//! are kept per quarter hour (UTC): every real time zone's offset is a
//! multiple of 15 minutes, so a quarter hour lies within one local hour of
//! any zone, and reads sum quarter hours into the organization's local
//! hours, days and months exactly.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, UserId};
use crate::limits::local_start_of_day;
use crate::model::UsageRecord;
use crate::model::report::{
    CostPage, CostQuery, CostRow, EventPage, EventQuery, ExportAck, ExportBatch, ExportClaim,
    ExportItem, Granularity, GroupKey, RecordedEvent, ReportCursor, ReportDimension, ReportPage,
    ReportQuery, ReportRow, RetentionOutcome, RollupDrift, RollupReconcileQuery,
    oldest_event_timestamp, to_units, validate_cost_query, validate_customer_id,
};
use crate::model::usage::{CostSource, TokenCounts};
use crate::store::{ReportStore, org_not_found};

use super::MemoryStore;
use super::tenant::State;

/// The labels a rollup is kept by, besides its time and metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Labels {
    user: Option<UserId>,
    provider: String,
    model: String,
    operation: String,
}

impl Labels {
    fn of(event: &RecordedEvent) -> Self {
        Labels {
            user: event.user,
            provider: event.provider.clone(),
            model: event.model.clone(),
            operation: event.operation.clone(),
        }
    }
}

/// Token classes, cost and events of one quarter hour, labels and cost
/// provenance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CostSums {
    tokens: TokenCounts,
    cost: Decimal,
    events: u64,
}

/// One organization's history.
#[derive(Debug, Default)]
struct OrgHistory {
    /// The event log, in (time, id) order.
    events: BTreeMap<(DateTime<Utc>, EventId), RecordedEvent>,
    /// Each stored event's time, for reads by id.
    times: HashMap<EventId, DateTime<Utc>>,
    /// (quarter, labels, metric) → (amount, events).
    metrics: BTreeMap<(DateTime<Utc>, Labels, MetricKey), (Decimal, u64)>,
    /// (quarter, labels, provenance) → sums.
    costs: BTreeMap<(DateTime<Utc>, Labels, Option<CostSource>), CostSums>,
}

impl OrgHistory {
    fn add(&mut self, event: RecordedEvent) {
        let quarter = quarter_of(event.occurred_at);
        let labels = Labels::of(&event);
        add_rollups(&mut self.metrics, &mut self.costs, quarter, &labels, &event);
        self.times.insert(event.id, event.occurred_at);
        self.events.insert((event.occurred_at, event.id), event);
    }
}

type MetricRollups = BTreeMap<(DateTime<Utc>, Labels, MetricKey), (Decimal, u64)>;
type CostRollups = BTreeMap<(DateTime<Utc>, Labels, Option<CostSource>), CostSums>;

fn add_rollups(
    metrics: &mut MetricRollups,
    costs: &mut CostRollups,
    quarter: DateTime<Utc>,
    labels: &Labels,
    event: &RecordedEvent,
) {
    for (metric, amount) in &event.amounts {
        let slot = metrics
            .entry((quarter, labels.clone(), metric.clone()))
            .or_default();
        slot.0 = slot.0.saturating_add(*amount);
        slot.1 += 1;
    }
    let slot = costs
        .entry((quarter, labels.clone(), event.cost_source.clone()))
        .or_default();
    slot.tokens.add(&event.tokens);
    slot.cost = slot.cost.saturating_add(event.cost_usd.unwrap_or_default());
    slot.events += 1;
}

/// One meter's export state.
#[derive(Debug, Default)]
struct MeterExport {
    /// The last batch id handed out (0: none yet).
    last_batch: u64,
    /// The batch claimed and not yet acknowledged.
    pending: Option<ExportBatch>,
    /// Per organization and local hour: the amount exported and the next
    /// sequence number.
    exported: HashMap<(OrgId, DateTime<Utc>), (Decimal, u32)>,
    /// Per organization: the units' fraction carried to its next delta.
    carried: HashMap<OrgId, Decimal>,
}

/// What the usage history keeps beside the counters.
#[derive(Debug, Default)]
pub(super) struct ReportState {
    orgs: HashMap<OrgId, OrgHistory>,
    customers: HashMap<OrgId, String>,
    meters: HashMap<String, MeterExport>,
    /// Events before this instant were dropped by retention.
    pub(super) dropped_before: Option<DateTime<Utc>>,
}

impl ReportState {
    /// Keeps what a batch's new events add to the history: called by the
    /// record path, under the lock, after the batch is accepted, with the
    /// events that were new (never a duplicate).
    pub(super) fn record(&mut self, fresh: &[&UsageRecord]) {
        for record in fresh {
            let event = RecordedEvent::from_record(record);
            self.orgs.entry(event.org).or_default().add(event);
        }
    }
}

/// The quarter hour (UTC) containing `t`.
fn quarter_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp();
    let q = secs - secs.rem_euclid(900);
    DateTime::from_timestamp(q, 0).unwrap_or(t)
}

/// The start of the local hour containing `t` in `tz`, as an instant.
fn hour_of(t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let offset = i64::from(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let local = t.timestamp() + offset;
    let floor = local - local.rem_euclid(3600);
    DateTime::from_timestamp(floor - offset, 0).unwrap_or(t)
}

/// The start of the bucket of `granularity` containing the local hour
/// starting at `hour`.
fn bucket_of(hour: DateTime<Utc>, tz: Tz, granularity: Granularity) -> DateTime<Utc> {
    match granularity {
        Granularity::Hour => hour,
        Granularity::Day => local_start_of_day(hour.with_timezone(&tz).date_naive(), tz),
        Granularity::Month => {
            let local = hour.with_timezone(&tz).date_naive();
            let first = local.with_day(1).unwrap_or(local);
            local_start_of_day(first, tz)
        }
    }
}

fn tz_of(state: &State, org: OrgId) -> Result<Tz> {
    state
        .tenant(org)
        .map(|t| t.org.timezone)
        .ok_or_else(|| org_not_found(org))
}

/// Quarter hours whose local hour may start in `[from, to)`: a quarter
/// hour lies within an hour that starts at most 45 minutes before it, so
/// this is a superset; callers keep those whose hour is in the range.
fn quarters(from: DateTime<Utc>, to: DateTime<Utc>) -> std::ops::Range<DateTime<Utc>> {
    let lo = from.checked_sub_signed(TimeDelta::hours(1)).unwrap_or(from);
    let hi = to.checked_add_signed(TimeDelta::hours(1)).unwrap_or(to);
    lo..hi
}

fn keeps_labels(query: &ReportQuery, labels: &Labels) -> bool {
    query.filter.keeps_user(labels.user)
        && query
            .filter
            .keeps_labels(&labels.provider, &labels.model, &labels.operation)
}

fn page<K: Ord + Clone, V>(
    rows: BTreeMap<K, V>,
    after: Option<&K>,
    limit: u32,
) -> (Vec<(K, V)>, Option<K>) {
    let mut out: Vec<(K, V)> = Vec::new();
    let mut more = false;
    for (k, v) in rows {
        if after.is_some_and(|a| &k <= a) {
            continue;
        }
        if out.len() == limit as usize {
            more = true;
            break;
        }
        out.push((k, v));
    }
    let next = if more {
        out.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    (out, next)
}

fn report(state: &State, query: &ReportQuery) -> Result<ReportPage> {
    query.validate()?;
    let tz = tz_of(state, query.org)?;
    let Some(history) = state.reports.orgs.get(&query.org) else {
        return Ok(ReportPage {
            rows: Vec::new(),
            next: None,
        });
    };
    let by_metric = query.groups_by(ReportDimension::Metric);
    let mut rows: BTreeMap<(DateTime<Utc>, GroupKey), ReportRow> = BTreeMap::new();
    for ((quarter, labels, metric), (amount, events)) in history
        .metrics
        .range(range_keys(quarters(query.from, query.to)))
    {
        let hour = hour_of(*quarter, tz);
        if hour < query.from
            || hour >= query.to
            || !keeps_labels(query, labels)
            || !query.filter.keeps_metric(metric)
        {
            continue;
        }
        let bucket = bucket_of(hour, tz, query.granularity);
        let key = query.key_of(
            metric,
            &labels.provider,
            &labels.model,
            &labels.operation,
            labels.user,
        );
        let row = rows
            .entry((bucket, key.clone()))
            .or_insert_with(|| ReportRow {
                bucket_start: bucket,
                key,
                amounts: BTreeMap::new(),
                events: 0,
            });
        let total = row.amounts.entry(metric.clone()).or_default();
        *total = total.saturating_add(*amount);
        if by_metric {
            row.events += events;
        }
    }
    if !by_metric {
        for ((quarter, labels, _), sums) in history
            .costs
            .range(cost_keys(quarters(query.from, query.to)))
        {
            let hour = hour_of(*quarter, tz);
            if hour < query.from || hour >= query.to || !keeps_labels(query, labels) {
                continue;
            }
            let bucket = bucket_of(hour, tz, query.granularity);
            let key = query.key_of(
                &MetricKey::TOKENS,
                &labels.provider,
                &labels.model,
                &labels.operation,
                labels.user,
            );
            if let Some(row) = rows.get_mut(&(bucket, key)) {
                row.events += sums.events;
            }
        }
    }
    let after = query
        .after
        .as_ref()
        .map(|c| (c.bucket_start, c.key.clone()));
    let (rows, next) = page(rows, after.as_ref(), query.limit);
    Ok(ReportPage {
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        next: next.map(|(bucket_start, key)| ReportCursor { bucket_start, key }),
    })
}

type MetricKeyRange = std::ops::Range<(DateTime<Utc>, Labels, MetricKey)>;
type CostKeyRange = std::ops::Range<(DateTime<Utc>, Labels, Option<CostSource>)>;

fn min_labels() -> Labels {
    Labels {
        user: None,
        provider: String::new(),
        model: String::new(),
        operation: String::new(),
    }
}

fn range_keys(r: std::ops::Range<DateTime<Utc>>) -> MetricKeyRange {
    let low = MetricKey::from_static("a");
    (r.start, min_labels(), low.clone())..(r.end, min_labels(), low)
}

fn cost_keys(r: std::ops::Range<DateTime<Utc>>) -> CostKeyRange {
    (r.start, min_labels(), None)..(r.end, min_labels(), None)
}

fn costs(state: &State, query: &CostQuery) -> Result<CostPage> {
    validate_cost_query(query)?;
    let tz = tz_of(state, query.org)?;
    let Some(history) = state.reports.orgs.get(&query.org) else {
        return Ok(CostPage {
            rows: Vec::new(),
            next: None,
        });
    };
    let mut rows: BTreeMap<(DateTime<Utc>, GroupKey), BTreeMap<Option<CostSource>, CostSums>> =
        BTreeMap::new();
    for ((quarter, labels, source), sums) in history
        .costs
        .range(cost_keys(quarters(query.from, query.to)))
    {
        let hour = hour_of(*quarter, tz);
        if hour < query.from || hour >= query.to || !keeps_labels(query, labels) {
            continue;
        }
        let bucket = bucket_of(hour, tz, query.granularity);
        let mut key = query.key_of(
            &MetricKey::TOKENS,
            &labels.provider,
            &labels.model,
            &labels.operation,
            labels.user,
        );
        key.provider = Some(labels.provider.clone());
        key.model = Some(labels.model.clone());
        let slot = rows
            .entry((bucket, key))
            .or_default()
            .entry(source.clone())
            .or_default();
        slot.tokens.add(&sums.tokens);
        slot.cost = slot.cost.saturating_add(sums.cost);
        slot.events += sums.events;
    }
    let after = query
        .after
        .as_ref()
        .map(|c| (c.bucket_start, c.key.clone()));
    let mut out = Vec::new();
    let mut next = None;
    let mut last = None;
    for ((bucket, key), by_source) in rows {
        if after.as_ref().is_some_and(|a| &(bucket, key.clone()) <= a) {
            continue;
        }
        if out.len() >= query.limit as usize {
            next = last.take();
            break;
        }
        for (source, sums) in by_source {
            out.push(CostRow {
                bucket_start: bucket,
                key: key.clone(),
                cost_source: source,
                tokens: sums.tokens,
                cost_usd: sums.cost,
                events: sums.events,
            });
        }
        last = Some(ReportCursor {
            bucket_start: bucket,
            key,
        });
    }
    Ok(CostPage { rows: out, next })
}

fn events(state: &State, query: &EventQuery) -> Result<EventPage> {
    query.validate()?;
    let Some(history) = state.reports.orgs.get(&query.org) else {
        return Ok(EventPage {
            events: Vec::new(),
            next: None,
        });
    };
    let start = match query.after {
        Some(c) if c.occurred_at >= query.from => (c.occurred_at, c.id),
        _ => (query.from, EventId::from(uuid::Uuid::nil())),
    };
    let mut out = Vec::new();
    let mut next = None;
    for (_, event) in history.events.range(start..) {
        if event.occurred_at >= query.to {
            break;
        }
        if !query.keeps(event) {
            continue;
        }
        if out.len() == query.limit as usize {
            next = out.last().map(RecordedEvent::cursor);
            break;
        }
        out.push(event.clone());
    }
    Ok(EventPage { events: out, next })
}

/// The metric sums of the organization's hours in `[from, to)`, by local
/// hour, labels and metric: from the rollups, or from the event log.
type HourSums = BTreeMap<(DateTime<Utc>, Labels, MetricKey), (Decimal, u64)>;

fn rollup_hours(history: &OrgHistory, tz: Tz, q: &RollupReconcileQuery) -> HourSums {
    let mut sums = HourSums::new();
    for ((quarter, labels, metric), (amount, events)) in
        history.metrics.range(range_keys(quarters(q.from, q.to)))
    {
        let hour = hour_of(*quarter, tz);
        if hour < q.from || hour >= q.to {
            continue;
        }
        let slot = sums
            .entry((hour, labels.clone(), metric.clone()))
            .or_default();
        slot.0 = slot.0.saturating_add(*amount);
        slot.1 += events;
    }
    sums
}

fn log_hours(history: &OrgHistory, tz: Tz, q: &RollupReconcileQuery) -> HourSums {
    let mut sums = HourSums::new();
    let start = (
        q.from
            .checked_sub_signed(TimeDelta::hours(1))
            .unwrap_or(q.from),
        EventId::from(uuid::Uuid::nil()),
    );
    let end =
        q.to.checked_add_signed(TimeDelta::hours(1))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    for (_, event) in history.events.range(start..) {
        if event.occurred_at >= end {
            break;
        }
        let hour = hour_of(event.occurred_at, tz);
        if hour < q.from || hour >= q.to {
            continue;
        }
        for (metric, amount) in &event.amounts {
            let slot = sums
                .entry((hour, Labels::of(event), metric.clone()))
                .or_default();
            slot.0 = slot.0.saturating_add(*amount);
            slot.1 += 1;
        }
    }
    sums
}

fn drift(state: &State, query: &RollupReconcileQuery) -> Result<Vec<RollupDrift>> {
    query.validate()?;
    if let Some(cut) = state.reports.dropped_before
        && query.from < cut
    {
        return Err(Error::invalid_input(
            "from",
            format_args!(
                "{} is before {cut}: retention dropped those events",
                query.from
            ),
        ));
    }
    let Some(tenant) = state.tenant(query.org) else {
        return Ok(Vec::new());
    };
    let tz = tenant.org.timezone;
    let empty = OrgHistory::default();
    let history = state.reports.orgs.get(&query.org).unwrap_or(&empty);
    let counted = rollup_hours(history, tz, query);
    let recomputed = log_hours(history, tz, query);
    let mut keys: Vec<_> = counted.keys().chain(recomputed.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let c = counted.get(&key).copied().unwrap_or_default();
        let r = recomputed.get(&key).copied().unwrap_or_default();
        if c != r {
            let (bucket_start, labels, metric) = key;
            out.push(RollupDrift {
                bucket_start,
                user: labels.user,
                provider: labels.provider,
                model: labels.model,
                operation: labels.operation,
                metric,
                counted: c.0,
                recomputed: r.0,
                counted_events: c.1,
                recomputed_events: r.1,
            });
        }
    }
    Ok(out)
}

fn repair(state: &mut State, query: &RollupReconcileQuery) -> Result<Vec<RollupDrift>> {
    let tz = tz_of(state, query.org)?;
    let found = drift(state, query)?;
    let history = state.reports.orgs.entry(query.org).or_default();
    let in_range = |quarter: &DateTime<Utc>| {
        let hour = hour_of(*quarter, tz);
        hour >= query.from && hour < query.to
    };
    history.metrics.retain(|(q, _, _), _| !in_range(q));
    history.costs.retain(|(q, _, _), _| !in_range(q));
    let OrgHistory {
        events,
        metrics,
        costs,
        ..
    } = history;
    for event in events.values() {
        let quarter = quarter_of(event.occurred_at);
        if in_range(&quarter) {
            add_rollups(metrics, costs, quarter, &Labels::of(event), event);
        }
    }
    Ok(found)
}

/// One organization's hour not exported yet, before its units are worked
/// out.
struct Unexported<'a> {
    hour: DateTime<Utc>,
    org: OrgId,
    customer: &'a str,
    amount: Decimal,
    seq: u32,
}

/// Claims as `tenancy_export_claim` does: across every organization with a
/// billing customer, the not-yet-exported amount per organization and hour
/// ended by `up_to`, ordered by hour, then organization id, the first
/// `max_items` of them; units then worked out per organization in hour
/// order, from its carried remainder, and the items ordered by
/// organization, then hour.
fn claim(state: &mut State, claim: &ExportClaim) -> Result<Option<ExportBatch>> {
    claim.validate()?;
    let meter = &claim.meter;
    if let Some(pending) = state
        .reports
        .meters
        .get(&meter.event_name)
        .and_then(|m| m.pending.clone())
    {
        return Ok(Some(pending));
    }
    let export = state.reports.meters.get(&meter.event_name);
    let mut unexported = Vec::new();
    for (&org, customer) in &state.reports.customers {
        if state.tenant(org).is_none() {
            continue;
        }
        let tz = tz_of(state, org)?;
        let Some(history) = state.reports.orgs.get(&org) else {
            continue;
        };
        let mut hours: BTreeMap<DateTime<Utc>, Decimal> = BTreeMap::new();
        for ((quarter, _, metric), (amount, _)) in &history.metrics {
            if metric != &meter.metric {
                continue;
            }
            let hour = hour_of(*quarter, tz);
            if hour + TimeDelta::hours(1) > claim.up_to {
                continue;
            }
            let total = hours.entry(hour).or_default();
            *total = total.saturating_add(*amount);
        }
        for (hour, total) in hours {
            let (done, seq) = export
                .and_then(|e| e.exported.get(&(org, hour)).copied())
                .unwrap_or_default();
            let amount = total - done;
            if amount > Decimal::ZERO {
                unexported.push(Unexported {
                    hour,
                    org,
                    customer,
                    amount,
                    seq,
                });
            }
        }
    }
    // The oldest hours first, across organizations (ties by organization
    // id), as SQL's `order by bucket_start, organization_id limit`.
    unexported.sort_by_key(|u| (u.hour, u.org));
    unexported.truncate(claim.max_items as usize);
    unexported.sort_by_key(|u| (u.org, u.hour));
    let mut items: Vec<ExportItem> = Vec::with_capacity(unexported.len());
    let oldest_stamp = oldest_event_timestamp(claim.now);
    for u in unexported {
        let carried = match items.last() {
            Some(last) if last.org == u.org => last.carried,
            _ => export
                .and_then(|e| e.carried.get(&u.org).copied())
                .unwrap_or_default(),
        };
        let (value, carried) = to_units(u.amount, meter.unit_scale, carried)?;
        items.push(ExportItem {
            org: u.org,
            stripe_customer_id: u.customer.to_owned(),
            bucket_start: u.hour,
            seq: u.seq,
            amount: u.amount,
            value,
            carried,
            identifier: meter.identifier(u.org, u.hour, u.seq),
            timestamp: u.hour.max(oldest_stamp),
        });
    }
    if items.is_empty() {
        return Ok(None);
    }
    let export = state
        .reports
        .meters
        .entry(meter.event_name.clone())
        .or_default();
    export.last_batch += 1;
    let batch = ExportBatch {
        id: export.last_batch,
        event_name: meter.event_name.clone(),
        claimed_at: claim.now,
        items,
    };
    export.pending = Some(batch.clone());
    Ok(Some(batch))
}

fn ack(state: &mut State, ack: &ExportAck) -> Result<bool> {
    let not_claimed = || {
        Error::not_found(format!(
            "batch {} of meter {} was never claimed",
            ack.batch, ack.event_name
        ))
    };
    let export = state
        .reports
        .meters
        .get_mut(&ack.event_name)
        .ok_or_else(not_claimed)?;
    match &export.pending {
        Some(p) if p.id == ack.batch => {}
        _ if ack.batch >= 1 && ack.batch <= export.last_batch => return Ok(false),
        _ => return Err(not_claimed()),
    }
    let Some(batch) = export.pending.take() else {
        return Err(not_claimed());
    };
    for item in batch.items {
        let slot = export
            .exported
            .entry((item.org, item.bucket_start))
            .or_default();
        slot.0 = slot.0.saturating_add(item.amount);
        slot.1 = item.seq + 1;
        export.carried.insert(item.org, item.carried);
    }
    Ok(true)
}

#[async_trait]
impl ReportStore for MemoryStore {
    async fn usage_report(&self, query: &ReportQuery) -> Result<ReportPage> {
        report(&self.lock(), query)
    }

    async fn usage_costs(&self, query: &CostQuery) -> Result<CostPage> {
        costs(&self.lock(), query)
    }

    async fn usage_events(&self, query: &EventQuery) -> Result<EventPage> {
        events(&self.lock(), query)
    }

    async fn usage_event(&self, org: OrgId, id: EventId) -> Result<Option<RecordedEvent>> {
        let state = self.lock();
        let Some(history) = state.reports.orgs.get(&org) else {
            return Ok(None);
        };
        Ok(history
            .times
            .get(&id)
            .and_then(|at| history.events.get(&(*at, id)))
            .cloned())
    }

    async fn reconcile_rollups(&self, query: &RollupReconcileQuery) -> Result<Vec<RollupDrift>> {
        drift(&self.lock(), query)
    }

    async fn repair_rollups(&self, query: &RollupReconcileQuery) -> Result<Vec<RollupDrift>> {
        repair(&mut self.lock(), query)
    }

    async fn set_billing_customer(&self, org: OrgId, id: Option<&str>) -> Result<()> {
        if let Some(id) = id {
            validate_customer_id(id)?;
        }
        let mut state = self.lock();
        tz_of(&state, org)?;
        match id {
            Some(id) => state.reports.customers.insert(org, id.to_owned()),
            None => state.reports.customers.remove(&org),
        };
        Ok(())
    }

    async fn billing_customer(&self, org: OrgId) -> Result<Option<String>> {
        Ok(self.lock().reports.customers.get(&org).cloned())
    }

    async fn claim_export(&self, request: &ExportClaim) -> Result<Option<ExportBatch>> {
        claim(&mut self.lock(), request)
    }

    async fn ack_export(&self, request: &ExportAck) -> Result<bool> {
        ack(&mut self.lock(), request)
    }

    async fn drop_usage_events(&self, before: DateTime<Utc>) -> Result<RetentionOutcome> {
        let mut state = self.lock();
        let mut dropped = 0u64;
        for history in state.reports.orgs.values_mut() {
            let kept = history
                .events
                .split_off(&(before, EventId::from(uuid::Uuid::nil())));
            for (_, id) in history.events.keys() {
                history.times.remove(id);
            }
            dropped += history.events.len() as u64;
            history.events = kept;
        }
        let cut = state
            .reports
            .dropped_before
            .map_or(before, |c| c.max(before));
        state.reports.dropped_before = Some(cut);
        Ok(RetentionOutcome {
            dropped_before: before,
            events: Some(dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn hours_follow_the_zone_half_hours_included() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            hour_of(at("2026-03-04T12:10:00Z"), kolkata),
            at("2026-03-04T11:30:00Z")
        );
        assert_eq!(
            hour_of(at("2026-03-04T12:40:00Z"), kolkata),
            at("2026-03-04T12:30:00Z")
        );
        assert_eq!(
            hour_of(at("2026-03-04T12:40:00Z"), Tz::UTC),
            at("2026-03-04T12:00:00Z")
        );
        assert_eq!(
            bucket_of(at("2026-03-04T20:30:00Z"), kolkata, Granularity::Day),
            at("2026-03-04T18:30:00Z")
        );
        assert_eq!(
            bucket_of(at("2026-03-04T20:30:00Z"), kolkata, Granularity::Month),
            at("2026-02-28T18:30:00Z")
        );
        let nepal: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            hour_of(quarter_of(at("2026-03-04T12:16:00Z")), nepal),
            at("2026-03-04T12:15:00Z")
        );
    }

    /// A range that ends inside a local hour still counts the hour's
    /// quarters past its end: the hour started in the range.
    #[tokio::test]
    async fn an_hour_that_starts_in_the_range_counts_whole() {
        use crate::model::{Organization, UsageEvent};
        use crate::store::{MeteringStore, OrgStore};
        let store = MemoryStore::new();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let now = at("2026-03-05T00:10:00Z");
        let org = Organization {
            id: OrgId::new_v7(),
            name: "Kolkata".into(),
            slug: crate::ids::Slug::parse("kolkata").unwrap(),
            owner_user_id: None,
            timezone: kolkata,
            created_at: now,
        };
        store.create_organization(&org).await.unwrap();
        let record = UsageEvent::new(org.id)
            .tokens(10, 0, 0)
            .into_record(now, kolkata)
            .unwrap();
        store.record_usage(&[record]).await.unwrap();
        // The hour 23:30–00:30 UTC starts before midnight UTC.
        let q = ReportQuery::new(
            org.id,
            at("2026-03-04T00:00:00Z"),
            at("2026-03-05T00:00:00Z"),
        )
        .granularity(Granularity::Hour);
        let page = store.usage_report(&q).await.unwrap();
        assert_eq!(page.rows.len(), 1);
        assert_eq!(page.rows[0].bucket_start, at("2026-03-04T23:30:00Z"));
        let later = ReportQuery::new(
            org.id,
            at("2026-03-05T00:00:00Z"),
            at("2026-03-06T00:00:00Z"),
        );
        assert!(store.usage_report(&later).await.unwrap().rows.is_empty());
    }

    #[tokio::test]
    async fn reconciliation_finds_and_repairs_injected_drift() {
        use crate::model::{Organization, UsageEvent};
        use crate::store::{MeteringStore, OrgStore};
        let store = MemoryStore::new();
        let now = at("2026-03-04T12:00:00Z");
        let org = Organization {
            id: OrgId::new_v7(),
            name: "Drift".into(),
            slug: crate::ids::Slug::parse("drift").unwrap(),
            owner_user_id: None,
            timezone: Tz::UTC,
            created_at: now,
        };
        store.create_organization(&org).await.unwrap();
        let record = UsageEvent::new(org.id)
            .tokens(10, 0, 5)
            .into_record(now, Tz::UTC)
            .unwrap();
        store.record_usage(&[record]).await.unwrap();
        let q = RollupReconcileQuery {
            org: org.id,
            from: at("2026-03-04T00:00:00Z"),
            to: at("2026-03-05T00:00:00Z"),
        };
        assert!(store.reconcile_rollups(&q).await.unwrap().is_empty());
        {
            let mut state = store.lock();
            let history = state.reports.orgs.get_mut(&org.id).unwrap();
            for v in history.metrics.values_mut() {
                v.0 += Decimal::ONE;
            }
        }
        let found = store.reconcile_rollups(&q).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].counted, Decimal::from(16));
        assert_eq!(found[0].recomputed, Decimal::from(15));
        assert_eq!(store.repair_rollups(&q).await.unwrap(), found);
        assert!(store.reconcile_rollups(&q).await.unwrap().is_empty());
        assert!(store.repair_rollups(&q).await.unwrap().is_empty());
    }
}
