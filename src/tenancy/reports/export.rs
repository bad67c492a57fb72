//! Streamed CSV and NDJSON of reports and of the event log: page by page
//! into a writer, never the whole range in memory.
//!
//! # CSV columns
//!
//! A report is written long: one line per row and metric,
//! `bucket_start,metric,provider,model,operation,user,amount,events`
//! (dimensions the query does not group by are empty; `events` is the
//! row's, repeated on each of its metric lines when not grouped by
//! metric). The event log: `id,occurred_at,user,provider,model,operation`,
//! the nine token classes (`input_tokens` … `image_output_tokens`),
//! `cost_usd,cost_source,price_provider,price_model,price_effective_from,
//! price_table,quantities,metadata` (the last two as JSON).

use std::io::Write;

use super::{check_user_breakdown, scope_event_query};
use crate::error::{Error, ErrorKind, Result};
use crate::model::TenantContext;
use crate::model::report::{
    EventQuery, ExportFormat, RecordedEvent, ReportQuery, ReportRow, csv_field, csv_quote,
};
use crate::model::usage::CostSource;
use crate::store::ReportStore;
use crate::tenancy::{Operator, Tenancy};

/// The report CSV's header line.
const REPORT_HEADER: &str = "bucket_start,metric,provider,model,operation,user,amount,events";

/// The event CSV's header line.
const EVENT_HEADER: &str = "id,occurred_at,user,provider,model,operation,input_tokens,\
cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,audio_input_tokens,\
audio_output_tokens,image_input_tokens,image_output_tokens,cost_usd,cost_source,price_provider,\
price_model,price_effective_from,price_table,quantities,metadata";

fn io_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Unavailable, "writing the export failed").with_source(e)
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn report_lines(row: &ReportRow, out: &mut impl Write) -> std::io::Result<()> {
    for (metric, amount) in &row.amounts {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            row.bucket_start
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            metric,
            opt(row.key.provider.as_deref().map(csv_field)),
            opt(row.key.model.as_deref().map(csv_field)),
            opt(row.key.operation.as_deref().map(csv_field)),
            opt(row.key.user),
            amount.normalize(),
            row.events
        )?;
    }
    Ok(())
}

fn event_line(e: &RecordedEvent, out: &mut impl Write) -> std::io::Result<()> {
    let (source, p_provider, p_model, p_from, p_table) = match &e.cost_source {
        None => (
            "",
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ),
        Some(CostSource::Provider) => (
            "provider",
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ),
        Some(CostSource::PriceTable {
            provider,
            model,
            effective_from,
            table,
        }) => (
            "price_table",
            csv_field(provider),
            csv_field(model),
            effective_from.to_string(),
            csv_field(table),
        ),
    };
    let t = &e.tokens;
    let json = |v: &serde_json::Value| csv_quote(&v.to_string());
    let quantities = serde_json::to_value(&e.quantities).unwrap_or_default();
    writeln!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        e.id,
        e.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        opt(e.user),
        csv_field(&e.provider),
        csv_field(&e.model),
        csv_field(&e.operation),
        t.input,
        t.cached_input,
        t.cache_write,
        t.output,
        t.reasoning,
        t.audio_input,
        t.audio_output,
        t.image_input,
        t.image_output,
        opt(e.cost_usd.map(|c| c.normalize())),
        source,
        p_provider,
        p_model,
        p_from,
        p_table,
        json(&quantities),
        json(&e.metadata),
    )
}

fn ndjson<T: serde::Serialize>(value: &T, out: &mut impl Write) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(|e| {
        Error::new(ErrorKind::Unavailable, "writing the export failed").with_source(e)
    })?;
    out.write_all(b"\n").map_err(io_error)
}

/// Writes every page of `query` (from its cursor on, `query.limit` rows a
/// page); how many rows.
async fn report_to<W: Write + Send>(
    store: &dyn ReportStore,
    query: &ReportQuery,
    format: ExportFormat,
    out: &mut W,
) -> Result<u64> {
    let mut query = query.clone();
    let mut rows = 0u64;
    if format == ExportFormat::Csv {
        writeln!(out, "{REPORT_HEADER}").map_err(io_error)?;
    }
    loop {
        let page = store.usage_report(&query).await?;
        for row in &page.rows {
            match format {
                ExportFormat::Csv => report_lines(row, out).map_err(io_error)?,
                ExportFormat::Ndjson => ndjson(row, out)?,
            }
            rows += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    out.flush().map_err(io_error)?;
    Ok(rows)
}

/// Writes every page of events of `query`; how many events.
async fn events_to<W: Write + Send>(
    store: &dyn ReportStore,
    query: &EventQuery,
    format: ExportFormat,
    out: &mut W,
) -> Result<u64> {
    let mut query = query.clone();
    let mut count = 0u64;
    if format == ExportFormat::Csv {
        writeln!(out, "{EVENT_HEADER}").map_err(io_error)?;
    }
    loop {
        let page = store.usage_events(&query).await?;
        for event in &page.events {
            match format {
                ExportFormat::Csv => event_line(event, out).map_err(io_error)?,
                ExportFormat::Ndjson => ndjson(event, out)?,
            }
            count += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    out.flush().map_err(io_error)?;
    Ok(count)
}

impl Tenancy {
    /// Streams a report of the context's organization into `out`, page by
    /// page (`query.limit` rows each), as CSV or NDJSON (the module docs
    /// give the columns); returns how many report rows were written. The
    /// rules of [`usage_report`](Tenancy::usage_report) apply. A failed
    /// write is `Unavailable`; what was written stays written.
    pub async fn write_report<W: Write + Send>(
        &self,
        ctx: &TenantContext,
        query: &ReportQuery,
        format: ExportFormat,
        out: &mut W,
    ) -> Result<u64> {
        check_user_breakdown(ctx, query)?;
        query.validate()?;
        report_to(self.history_store()?, query, format, out).await
    }

    /// Streams the context's organization's events in `query` into `out`,
    /// page by page, as CSV or NDJSON; returns how many events were
    /// written. The rules of [`usage_events`](Tenancy::usage_events)
    /// apply (members and viewers get their own events).
    pub async fn write_events<W: Write + Send>(
        &self,
        ctx: &TenantContext,
        query: &EventQuery,
        format: ExportFormat,
        out: &mut W,
    ) -> Result<u64> {
        let query = scope_event_query(ctx, query)?;
        query.validate()?;
        events_to(self.history_store()?, &query, format, out).await
    }
}

impl Operator<'_> {
    /// [`Tenancy::write_report`] for any organization.
    pub async fn write_report<W: Write + Send>(
        &self,
        query: &ReportQuery,
        format: ExportFormat,
        out: &mut W,
    ) -> Result<u64> {
        query.validate()?;
        report_to(self.history_store()?, query, format, out).await
    }

    /// [`Tenancy::write_events`] for any organization, every user's events.
    pub async fn write_events<W: Write + Send>(
        &self,
        query: &EventQuery,
        format: ExportFormat,
        out: &mut W,
    ) -> Result<u64> {
        query.validate()?;
        events_to(self.history_store()?, query, format, out).await
    }
}
