//! `ReportStore` over SQL: the rollups, event reads, exports and retention
//! of `migrations/20261206001300_tenancy_usage_history.sql`. One RPC per
//! method; the SQL keeps the rollups in the record's statement.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Idempotent, Sql, SqlTransport, named_field, org_missing};
use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, UserId};
use crate::model::report::{
    CostPage, CostQuery, CostRow, EventPage, EventQuery, ExportAck, ExportBatch, ExportClaim,
    ExportItem, GroupKey, RecordedEvent, ReportCursor, ReportDimension, ReportPage, ReportQuery,
    ReportRow, RetentionOutcome, RollupDrift, RollupReconcileQuery, UsageFilter,
    validate_cost_query, validate_customer_id,
};
use crate::model::usage::{CostSource, TokenCounts};

/// The reconciliation SQL's argument names, and the query fields they are.
const ROLLUP_FIELDS: &[(&str, &str)] = &[("since", "from"), ("until", "to")];

/// The users a filter keeps, as the SQL takes them: `None` for all; the
/// nil uuid stands for usage without a user (the rollups' key for it).
fn user_ids(filter: &UsageFilter) -> Option<Vec<Uuid>> {
    if filter.users.is_empty() && !filter.no_user {
        return None;
    }
    let mut ids: Vec<Uuid> = filter.users.iter().map(|u| u.as_uuid()).collect();
    if filter.no_user {
        ids.push(Uuid::nil());
    }
    Some(ids)
}

/// A list filter as the SQL takes it: `None` (every value) when empty.
fn listed(values: &[String]) -> Option<&[String]> {
    (!values.is_empty()).then_some(values)
}

/// The dimensions' names, as `tenancy_usage_report` takes them.
fn dimensions(query: &ReportQuery) -> Vec<&'static str> {
    query.group_by.iter().map(|d| d.as_str()).collect()
}

/// The cursor as the SQL compares it: the last row's bucket and keys.
fn after(cursor: Option<&ReportCursor>) -> Option<Value> {
    cursor.map(|c| {
        json!({
            "bucket_start": c.bucket_start,
            "metric": c.key.metric,
            "provider": c.key.provider,
            "model": c.key.model,
            "operation": c.key.operation,
            "user_id": c.key.user,
        })
    })
}

/// Arguments of `tenancy_usage_report` and `tenancy_usage_costs`.
#[derive(Debug, Serialize)]
struct ReportArgs<'a> {
    org_id: OrgId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    granularity: &'static str,
    group_by: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    providers: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_ids: Option<Vec<Uuid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Value>,
    max_rows: u32,
}

impl<'a> ReportArgs<'a> {
    fn new(query: &'a ReportQuery, with_metrics: bool, max_rows: u32) -> Self {
        let f = &query.filter;
        ReportArgs {
            org_id: query.org,
            since: query.from,
            until: query.to,
            granularity: query.granularity.as_str(),
            group_by: dimensions(query),
            metrics: (with_metrics && !f.metrics.is_empty())
                .then(|| f.metrics.iter().map(MetricKey::as_str).collect()),
            providers: listed(&f.providers),
            models: listed(&f.models),
            operations: listed(&f.operations),
            user_ids: user_ids(f),
            after: after(query.after.as_ref()),
            max_rows,
        }
    }
}

/// One row of `tenancy_usage_report`.
#[derive(Debug, Deserialize)]
struct ReportRowJson {
    bucket_start: DateTime<Utc>,
    metric: Option<MetricKey>,
    provider: Option<String>,
    model: Option<String>,
    operation: Option<String>,
    user_id: Option<UserId>,
    amounts: BTreeMap<MetricKey, Decimal>,
    events: u64,
}

impl ReportRowJson {
    fn into_row(self) -> ReportRow {
        ReportRow {
            bucket_start: self.bucket_start,
            key: GroupKey {
                metric: self.metric,
                provider: self.provider,
                model: self.model,
                operation: self.operation,
                user: self.user_id,
            },
            amounts: self.amounts,
            events: self.events,
        }
    }
}

/// `{rows, more}` of `tenancy_usage_costs`.
#[derive(Debug, Deserialize)]
struct CostPageJson {
    rows: Vec<CostRowJson>,
    more: bool,
}

/// One row of `tenancy_usage_costs`: token sums as decimal strings.
#[derive(Debug, Deserialize)]
struct CostRowJson {
    bucket_start: DateTime<Utc>,
    provider: String,
    model: String,
    operation: Option<String>,
    user_id: Option<UserId>,
    cost_source: Option<String>,
    price_provider: Option<String>,
    price_model: Option<String>,
    price_effective_from: Option<NaiveDate>,
    price_table: Option<String>,
    input_tokens: Decimal,
    cached_input_tokens: Decimal,
    cache_write_tokens: Decimal,
    output_tokens: Decimal,
    reasoning_tokens: Decimal,
    audio_input_tokens: Decimal,
    audio_output_tokens: Decimal,
    image_input_tokens: Decimal,
    image_output_tokens: Decimal,
    cost_usd: Decimal,
    events: u64,
}

/// A token sum as a `u64`, saturating.
fn count(sum: Decimal) -> u64 {
    u64::try_from(sum).unwrap_or(u64::MAX)
}

/// The provenance columns as a [`CostSource`].
fn cost_source(
    kind: Option<&str>,
    provider: Option<String>,
    model: Option<String>,
    effective_from: Option<NaiveDate>,
    table: Option<String>,
    what: &str,
) -> Result<Option<CostSource>> {
    match (kind, effective_from) {
        (None, _) => Ok(None),
        (Some("provider"), _) => Ok(Some(CostSource::Provider)),
        (Some("price_table"), Some(effective_from)) => Ok(Some(CostSource::PriceTable {
            provider: provider.unwrap_or_default(),
            model: model.unwrap_or_default(),
            effective_from,
            table: table.unwrap_or_default(),
        })),
        (Some(kind), _) => Err(Error::unexpected(format!(
            "{what}: a cost source {kind:?} without its price"
        ))),
    }
}

impl CostRowJson {
    fn into_row(self, query: &CostQuery) -> Result<CostRow> {
        let cost_source = cost_source(
            self.cost_source.as_deref(),
            self.price_provider,
            self.price_model,
            self.price_effective_from,
            self.price_table,
            "reading token rollups",
        )?;
        Ok(CostRow {
            bucket_start: self.bucket_start,
            key: GroupKey {
                metric: None,
                provider: Some(self.provider),
                model: Some(self.model),
                operation: self.operation,
                user: if query.groups_by(ReportDimension::User) {
                    self.user_id
                } else {
                    None
                },
            },
            cost_source,
            tokens: TokenCounts {
                input: count(self.input_tokens),
                cached_input: count(self.cached_input_tokens),
                cache_write: count(self.cache_write_tokens),
                output: count(self.output_tokens),
                reasoning: count(self.reasoning_tokens),
                audio_input: count(self.audio_input_tokens),
                audio_output: count(self.audio_output_tokens),
                image_input: count(self.image_input_tokens),
                image_output: count(self.image_output_tokens),
            },
            cost_usd: self.cost_usd,
            events: self.events,
        })
    }
}

/// Arguments of `tenancy_usage_events`.
#[derive(Debug, Serialize)]
struct EventsArgs<'a> {
    org_id: OrgId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_ids: Option<Vec<Uuid>>,
    no_user: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    providers: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_id: Option<EventId>,
    max_rows: u32,
}

/// One event as `tenancy.usage_event_json` writes it.
#[derive(Debug, Deserialize)]
struct EventJson {
    id: EventId,
    organization_id: OrgId,
    user_id: Option<UserId>,
    provider: String,
    model: String,
    operation: String,
    input_tokens: u64,
    cached_input_tokens: u64,
    cache_write_tokens: u64,
    output_tokens: u64,
    reasoning_tokens: u64,
    audio_input_tokens: u64,
    audio_output_tokens: u64,
    image_input_tokens: u64,
    image_output_tokens: u64,
    quantities: BTreeMap<MetricKey, Decimal>,
    cost_usd: Option<Decimal>,
    cost_source: Option<String>,
    price_provider: Option<String>,
    price_model: Option<String>,
    price_effective_from: Option<NaiveDate>,
    price_table: Option<String>,
    occurred_at: DateTime<Utc>,
    metadata: Option<Value>,
    amounts: BTreeMap<MetricKey, Decimal>,
}

impl EventJson {
    fn into_event(self) -> Result<RecordedEvent> {
        let cost_source = cost_source(
            self.cost_source.as_deref(),
            self.price_provider,
            self.price_model,
            self.price_effective_from,
            self.price_table,
            "reading usage events",
        )?;
        Ok(RecordedEvent {
            id: self.id,
            org: self.organization_id,
            user: self.user_id,
            provider: self.provider,
            model: self.model,
            operation: self.operation,
            tokens: TokenCounts {
                input: self.input_tokens,
                cached_input: self.cached_input_tokens,
                cache_write: self.cache_write_tokens,
                output: self.output_tokens,
                reasoning: self.reasoning_tokens,
                audio_input: self.audio_input_tokens,
                audio_output: self.audio_output_tokens,
                image_input: self.image_input_tokens,
                image_output: self.image_output_tokens,
            },
            quantities: self.quantities,
            cost_usd: self.cost_usd,
            cost_source,
            amounts: self.amounts,
            occurred_at: self.occurred_at,
            metadata: self.metadata.unwrap_or(Value::Null),
        })
    }
}

/// Arguments of `tenancy_reconcile_rollups` and `tenancy_repair_rollups`.
#[derive(Debug, Serialize)]
struct RollupArgs {
    org_id: OrgId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl From<&RollupReconcileQuery> for RollupArgs {
    fn from(query: &RollupReconcileQuery) -> Self {
        RollupArgs {
            org_id: query.org,
            since: query.from,
            until: query.to,
        }
    }
}

/// One drifting rollup as `tenancy.rollup_drift_json` writes it.
#[derive(Debug, Deserialize)]
struct DriftJson {
    bucket_start: DateTime<Utc>,
    user_id: Option<UserId>,
    provider: String,
    model: String,
    operation: String,
    metric: MetricKey,
    counted: Decimal,
    recomputed: Decimal,
    counted_events: u64,
    recomputed_events: u64,
}

impl From<DriftJson> for RollupDrift {
    fn from(d: DriftJson) -> Self {
        RollupDrift {
            bucket_start: d.bucket_start,
            user: d.user_id,
            provider: d.provider,
            model: d.model,
            operation: d.operation,
            metric: d.metric,
            counted: d.counted,
            recomputed: d.recomputed,
            counted_events: d.counted_events,
            recomputed_events: d.recomputed_events,
        }
    }
}

/// Arguments of `tenancy_set_billing_customer`.
#[derive(Debug, Serialize)]
struct BillingCustomerArgs<'a> {
    org_id: OrgId,
    #[serde(skip_serializing_if = "Option::is_none")]
    stripe_customer_id: Option<&'a str>,
}

/// Arguments of `tenancy_billing_customer`.
#[derive(Debug, Serialize)]
struct OrgArgs {
    org_id: OrgId,
}

/// Arguments of `tenancy_usage_event`.
#[derive(Debug, Serialize)]
struct EventArgs {
    org_id: OrgId,
    event_id: EventId,
}

/// Arguments of `tenancy_export_claim`.
#[derive(Debug, Serialize)]
struct ClaimArgs<'a> {
    meter: &'a str,
    metric: &'a str,
    unit_scale: Decimal,
    up_to: DateTime<Utc>,
    now: DateTime<Utc>,
    max_items: u32,
}

/// A batch as `tenancy.export_batch_json` writes it.
#[derive(Debug, Deserialize)]
struct BatchJson {
    id: u64,
    event_name: String,
    claimed_at: DateTime<Utc>,
    items: Vec<ItemJson>,
}

/// One item of a batch (`value` a decimal string of a whole number).
#[derive(Debug, Deserialize)]
struct ItemJson {
    org: OrgId,
    stripe_customer_id: String,
    bucket_start: DateTime<Utc>,
    seq: u32,
    amount: Decimal,
    value: Decimal,
    carried: Decimal,
    timestamp: DateTime<Utc>,
}

/// Arguments of `tenancy_export_ack`.
#[derive(Debug, Serialize)]
struct AckArgs<'a> {
    meter: &'a str,
    batch_id: u64,
    at: DateTime<Utc>,
}

/// `{acked}` of `tenancy_export_ack`.
#[derive(Debug, Deserialize)]
struct Acked {
    acked: bool,
}

/// Arguments of `tenancy_drop_usage_events`.
#[derive(Debug, Serialize)]
struct DropArgs {
    before: DateTime<Utc>,
}

/// `{dropped_before, events}` of `tenancy_drop_usage_events`.
#[derive(Debug, Deserialize)]
struct Dropped {
    dropped_before: DateTime<Utc>,
    events: u64,
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn usage_report(&self, query: &ReportQuery) -> Result<ReportPage> {
        query.validate()?;
        let limit = query.limit as usize;
        // One row more than the page: whether another page follows.
        let args = ReportArgs::new(query, true, query.limit + 1);
        let rows: Vec<ReportRowJson> = self
            .rpc(
                "tenancy_usage_report",
                "reading a usage report",
                Idempotent::Yes,
                &args,
            )
            .await
            .map_err(org_missing(query.org))?;
        let mut rows: Vec<ReportRow> = rows.into_iter().map(ReportRowJson::into_row).collect();
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(ReportRow::cursor)
        } else {
            None
        };
        Ok(ReportPage { rows, next })
    }

    pub(crate) async fn usage_costs(&self, query: &CostQuery) -> Result<CostPage> {
        validate_cost_query(query)?;
        let args = ReportArgs::new(query, false, query.limit);
        let page: CostPageJson = self
            .rpc(
                "tenancy_usage_costs",
                "reading token rollups",
                Idempotent::Yes,
                &args,
            )
            .await
            .map_err(org_missing(query.org))?;
        let rows = page
            .rows
            .into_iter()
            .map(|r| r.into_row(query))
            .collect::<Result<Vec<_>>>()?;
        let next = if page.more {
            rows.last().map(|r| ReportCursor {
                bucket_start: r.bucket_start,
                key: r.key.clone(),
            })
        } else {
            None
        };
        Ok(CostPage { rows, next })
    }

    pub(crate) async fn usage_events(&self, query: &EventQuery) -> Result<EventPage> {
        query.validate()?;
        let f = &query.filter;
        let limit = query.limit as usize;
        let args = EventsArgs {
            org_id: query.org,
            since: query.from,
            until: query.to,
            user_ids: (!f.users.is_empty()).then(|| f.users.iter().map(|u| u.as_uuid()).collect()),
            no_user: f.no_user,
            providers: listed(&f.providers),
            models: listed(&f.models),
            operations: listed(&f.operations),
            after_at: query.after.map(|c| c.occurred_at),
            after_id: query.after.map(|c| c.id),
            max_rows: query.limit + 1,
        };
        let events: Vec<EventJson> = self
            .rpc(
                "tenancy_usage_events",
                "reading usage events",
                Idempotent::Yes,
                &args,
            )
            .await?;
        let mut events = events
            .into_iter()
            .map(EventJson::into_event)
            .collect::<Result<Vec<_>>>()?;
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(RecordedEvent::cursor)
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    pub(crate) async fn usage_event(
        &self,
        org: OrgId,
        id: EventId,
    ) -> Result<Option<RecordedEvent>> {
        let events: Vec<EventJson> = self
            .rpc(
                "tenancy_usage_event",
                "reading a usage event",
                Idempotent::Yes,
                &EventArgs {
                    org_id: org,
                    event_id: id,
                },
            )
            .await?;
        events
            .into_iter()
            .next()
            .map(EventJson::into_event)
            .transpose()
    }

    pub(crate) async fn reconcile_rollups(
        &self,
        query: &RollupReconcileQuery,
    ) -> Result<Vec<RollupDrift>> {
        query.validate()?;
        let drift: Vec<DriftJson> = self
            .rpc(
                "tenancy_reconcile_rollups",
                "reconciling usage rollups",
                Idempotent::Yes,
                &RollupArgs::from(query),
            )
            .await
            .map_err(named_field(ROLLUP_FIELDS))?;
        Ok(drift.into_iter().map(RollupDrift::from).collect())
    }

    pub(crate) async fn repair_rollups(
        &self,
        query: &RollupReconcileQuery,
    ) -> Result<Vec<RollupDrift>> {
        query.validate()?;
        // Idempotent: a retry after a repair that landed finds no drift.
        let drift: Vec<DriftJson> = self
            .rpc(
                "tenancy_repair_rollups",
                "repairing usage rollups",
                Idempotent::Yes,
                &RollupArgs::from(query),
            )
            .await
            .map_err(named_field(ROLLUP_FIELDS))
            .map_err(org_missing(query.org))?;
        Ok(drift.into_iter().map(RollupDrift::from).collect())
    }

    pub(crate) async fn set_billing_customer(
        &self,
        org: OrgId,
        stripe_customer_id: Option<&str>,
    ) -> Result<()> {
        if let Some(id) = stripe_customer_id {
            validate_customer_id(id)?;
        }
        let _: Value = self
            .rpc(
                "tenancy_set_billing_customer",
                "mapping a billing customer",
                Idempotent::Yes,
                &BillingCustomerArgs {
                    org_id: org,
                    stripe_customer_id,
                },
            )
            .await
            .map_err(org_missing(org))?;
        Ok(())
    }

    pub(crate) async fn billing_customer(&self, org: OrgId) -> Result<Option<String>> {
        let ids: Vec<String> = self
            .rpc(
                "tenancy_billing_customer",
                "reading a billing customer",
                Idempotent::Yes,
                &OrgArgs { org_id: org },
            )
            .await?;
        Ok(ids.into_iter().next())
    }

    pub(crate) async fn claim_export(&self, claim: &ExportClaim) -> Result<Option<ExportBatch>> {
        claim.validate()?;
        let meter = &claim.meter;
        // Idempotent: a retry after a claim that landed gets the same
        // (unacknowledged) batch back.
        let batches: Vec<BatchJson> = self
            .rpc(
                "tenancy_export_claim",
                "claiming an export batch",
                Idempotent::Yes,
                &ClaimArgs {
                    meter: &meter.event_name,
                    metric: meter.metric.as_str(),
                    unit_scale: meter.unit_scale,
                    up_to: claim.up_to,
                    now: claim.now,
                    max_items: claim.max_items,
                },
            )
            .await?;
        let Some(batch) = batches.into_iter().next() else {
            return Ok(None);
        };
        let items = batch
            .items
            .into_iter()
            .map(|i| {
                let value = u64::try_from(i.value).map_err(|_| {
                    Error::unexpected(format!(
                        "claiming an export batch: the value {} is not a whole number of units",
                        i.value
                    ))
                })?;
                Ok(ExportItem {
                    identifier: meter.identifier(i.org, i.bucket_start, i.seq),
                    org: i.org,
                    stripe_customer_id: i.stripe_customer_id,
                    bucket_start: i.bucket_start,
                    seq: i.seq,
                    amount: i.amount,
                    value,
                    carried: i.carried,
                    timestamp: i.timestamp,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ExportBatch {
            id: batch.id,
            event_name: batch.event_name,
            claimed_at: batch.claimed_at,
            items,
        }))
    }

    pub(crate) async fn ack_export(&self, ack: &ExportAck) -> Result<bool> {
        // A retry after an ack that landed answers false: still exported once.
        let acked: Acked = self
            .rpc(
                "tenancy_export_ack",
                "acknowledging an export batch",
                Idempotent::Yes,
                &AckArgs {
                    meter: &ack.event_name,
                    batch_id: ack.batch,
                    at: ack.now,
                },
            )
            .await?;
        Ok(acked.acked)
    }

    pub(crate) async fn drop_usage_events(
        &self,
        before: DateTime<Utc>,
    ) -> Result<RetentionOutcome> {
        // Idempotent: a retry drops nothing more.
        let dropped: Dropped = self
            .rpc(
                "tenancy_drop_usage_events",
                "dropping old usage events",
                Idempotent::Yes,
                &DropArgs { before },
            )
            .await?;
        Ok(RetentionOutcome {
            dropped_before: dropped.dropped_before,
            events: Some(dropped.events),
        })
    }
}
