//! The contract of usage history: reports from rollups agree across
//! backends (granularities in the organization's time zone, half-hour
//! zones included, grouping, filters, keyset pages), the event log reads
//! back what was recorded, a duplicate adds nothing, rollups agree with the
//! log, the billing export is exactly once across a crash with remainders
//! carried, and retention keeps reports.
//!
//! Every test uses its own organizations, metrics and meters: SQL backends
//! share one database, and exports and retention span organizations.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::{at, kind, new_org, new_org_in};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::model::report::{
    EventQuery, ExportAck, ExportClaim, Granularity, Meter, ReportDimension, ReportQuery,
    ReportRow, RollupReconcileQuery, UsageFilter,
};
use crate::model::usage::CostSource;
use crate::model::{Organization, UsageEvent, UsageRecord};
use crate::store::{DynStore, ReportStore};

/// A decimal literal (the crate's own tests have `rust_decimal_macros`; the
/// published suite does not).
macro_rules! dec {
    ($x:literal) => {
        Decimal::from_str_exact(stringify!($x)).unwrap_or_else(|e| panic!("{e}"))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __report_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            reports_bucket_in_the_org_zone,
            an_hour_counts_where_it_starts,
            reports_group_and_filter,
            report_pages_are_keyset,
            a_duplicate_event_adds_nothing_to_rollups,
            event_reads_page_filter_and_keep_every_field,
            cost_rows_keep_token_classes_and_provenance,
            report_queries_are_checked,
            rollups_agree_with_the_log,
            export_is_exactly_once_across_a_crash,
            export_batches_are_bounded_and_skip_unmapped_orgs,
            export_batches_take_the_oldest_hours_across_orgs,
            billing_customers_map_per_org,
            retention_drops_events_and_keeps_reports,
        }
    };
}

/// A metric no other test uses.
fn unique_metric() -> MetricKey {
    let id = uuid::Uuid::new_v4().simple().to_string();
    MetricKey::parse(&format!("m_{}", &id[..16])).unwrap_or_else(|e| panic!("{e}"))
}

/// An AI call of `org` at `when`, recorded as the core makes it (accepted
/// at its own time).
fn call(
    org: &Organization,
    user: Option<UserId>,
    (provider, model, operation): (&str, &str, &str),
    tokens: u64,
    cost: Decimal,
    when: DateTime<Utc>,
) -> UsageRecord {
    let mut event = UsageEvent::new(org.id)
        .ai_call(provider, model, operation)
        .tokens(tokens, 0, 0)
        .cost_usd(cost)
        .at(when);
    event.user = user;
    event
        .into_record(when, org.timezone)
        .unwrap_or_else(|e| panic!("a valid record: {e}"))
}

/// `amount` of `metric` for `org` at `when`.
fn quantity(
    org: &Organization,
    metric: &MetricKey,
    amount: Decimal,
    when: DateTime<Utc>,
) -> UsageRecord {
    UsageEvent::new(org.id)
        .quantity(metric.clone(), amount)
        .at(when)
        .into_record(when, org.timezone)
        .unwrap_or_else(|e| panic!("a valid record: {e}"))
}

async fn record(store: &DynStore, batch: &[UsageRecord]) {
    store
        .record_usage(batch)
        .await
        .unwrap_or_else(|e| panic!("record: {e}"));
}

/// Every row of a report, page after page of `limit`.
async fn all_rows(store: &DynStore, query: ReportQuery, limit: u32) -> Vec<ReportRow> {
    let mut query = query.limit(limit);
    let mut rows = Vec::new();
    loop {
        let page = store
            .usage_report(&query)
            .await
            .unwrap_or_else(|e| panic!("report: {e}"));
        assert!(page.rows.len() <= limit as usize);
        rows.extend(page.rows);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return rows,
        }
    }
}

/// Hours, days and months in Asia/Kolkata (UTC+05:30): an event at 23:50
/// local and one at 00:10 local the next day fall in different days and
/// hours that start at `:30` UTC; a month report has one row.
pub async fn reports_bucket_in_the_org_zone(store: Arc<DynStore>) {
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap_or_else(|e| panic!("{e}"));
    let (org, _) = new_org_in(&store, kolkata).await;
    let labels = ("openai", "gpt-4o", "chat");
    record(
        &store,
        &[
            call(
                &org,
                None,
                labels,
                100,
                dec!(0.10),
                at("2026-03-04T05:00:00Z"),
            ),
            call(
                &org,
                None,
                labels,
                200,
                dec!(0.20),
                at("2026-03-04T18:20:00Z"),
            ),
            call(
                &org,
                None,
                labels,
                400,
                dec!(0.40),
                at("2026-03-04T18:40:00Z"),
            ),
        ],
    )
    .await;
    // March in Kolkata.
    let march = ReportQuery::new(
        org.id,
        at("2026-02-28T18:30:00Z"),
        at("2026-03-31T18:30:00Z"),
    );
    let days = all_rows(&store, march.clone().granularity(Granularity::Day), 100).await;
    let by_day: Vec<_> = days
        .iter()
        .map(|r| {
            (
                r.bucket_start,
                r.amounts[&MetricKey::TOKENS],
                r.cost_usd(),
                r.events,
            )
        })
        .collect();
    assert_eq!(
        by_day,
        [
            (at("2026-03-03T18:30:00Z"), dec!(300), dec!(0.30), 2),
            (at("2026-03-04T18:30:00Z"), dec!(400), dec!(0.40), 1),
        ]
    );
    let hours = all_rows(&store, march.clone().granularity(Granularity::Hour), 100).await;
    let starts: Vec<_> = hours.iter().map(|r| r.bucket_start).collect();
    assert_eq!(
        starts,
        [
            at("2026-03-04T04:30:00Z"),
            at("2026-03-04T17:30:00Z"),
            at("2026-03-04T18:30:00Z"),
        ]
    );
    let months = all_rows(&store, march.granularity(Granularity::Month), 100).await;
    assert_eq!(months.len(), 1);
    assert_eq!(months[0].bucket_start, at("2026-02-28T18:30:00Z"));
    assert_eq!(months[0].amounts[&MetricKey::TOKENS], dec!(700));
    assert_eq!(months[0].amounts[&MetricKey::COST_USD], dec!(0.70));
    assert_eq!(months[0].events, 3);
    // Hours that start outside the range do not count.
    let late = ReportQuery::new(
        org.id,
        at("2026-03-04T18:30:00Z"),
        at("2026-03-04T19:30:00Z"),
    );
    let rows = all_rows(&store, late, 100).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].amounts[&MetricKey::TOKENS], dec!(400));
}

/// A range that is not aligned to the organization's hours counts the
/// hours that start in it, whole: in Asia/Kolkata the hour 23:30–00:30 UTC
/// belongs to a range ending at midnight UTC, its 00:10 event included.
pub async fn an_hour_counts_where_it_starts(store: Arc<DynStore>) {
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap_or_else(|e| panic!("{e}"));
    let (org, _) = new_org_in(&store, kolkata).await;
    record(
        &store,
        &[call(
            &org,
            None,
            ("p", "m", "o"),
            10,
            dec!(0.1),
            at("2026-03-05T00:10:00Z"),
        )],
    )
    .await;
    let day = ReportQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    )
    .granularity(Granularity::Hour);
    let rows = all_rows(&store, day, 10).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bucket_start, at("2026-03-04T23:30:00Z"));
    assert_eq!(rows[0].amounts[&MetricKey::TOKENS], dec!(10));
    let next = ReportQuery::new(
        org.id,
        at("2026-03-05T00:00:00Z"),
        at("2026-03-06T00:00:00Z"),
    );
    assert!(all_rows(&store, next, 10).await.is_empty());
}

/// Grouping by model and user sums each group; filters keep only what they
/// name; grouping by metric counts events per metric.
pub async fn reports_group_and_filter(store: Arc<DynStore>) {
    let (org, owner) = new_org(&store).await;
    let other = UserId::new_v7();
    let when = at("2026-03-04T10:00:00Z");
    record(
        &store,
        &[
            call(
                &org,
                Some(owner),
                ("openai", "gpt-4o", "ad_copy"),
                10,
                dec!(1),
                when,
            ),
            call(
                &org,
                Some(owner),
                ("openai", "gpt-4o", "ad_copy"),
                20,
                dec!(2),
                when,
            ),
            call(
                &org,
                Some(other),
                ("openai", "gpt-4o-mini", "chat"),
                40,
                dec!(4),
                when,
            ),
            call(
                &org,
                None,
                ("anthropic", "claude-sonnet-4", "chat"),
                80,
                dec!(8),
                when,
            ),
        ],
    )
    .await;
    let day = ReportQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    );
    let rows = all_rows(
        &store,
        day.clone()
            .group_by([ReportDimension::Model, ReportDimension::User]),
        100,
    )
    .await;
    let got: BTreeMap<_, _> = rows
        .iter()
        .map(|r| {
            (
                (r.key.model.clone().unwrap_or_default(), r.key.user),
                (r.amounts[&MetricKey::TOKENS], r.cost_usd(), r.events),
            )
        })
        .collect();
    let want: BTreeMap<_, _> = [
        (("gpt-4o".to_owned(), Some(owner)), (dec!(30), dec!(3), 2)),
        (
            ("gpt-4o-mini".to_owned(), Some(other)),
            (dec!(40), dec!(4), 1),
        ),
        (("claude-sonnet-4".to_owned(), None), (dec!(80), dec!(8), 1)),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    for row in &rows {
        assert_eq!(row.key.provider, None, "not grouped by provider");
        assert_eq!(row.key.metric, None, "not grouped by metric");
    }

    let filtered = day
        .clone()
        .group_by([ReportDimension::Provider])
        .filter(UsageFilter {
            providers: vec!["openai".into()],
            metrics: vec![MetricKey::TOKENS],
            ..UsageFilter::default()
        });
    let rows = all_rows(&store, filtered, 100).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key.provider.as_deref(), Some("openai"));
    assert_eq!(
        rows[0].amounts,
        BTreeMap::from([(MetricKey::TOKENS, dec!(70))])
    );
    assert_eq!(rows[0].cost_usd(), dec!(0), "cost_usd is filtered out");
    assert_eq!(rows[0].events, 3);

    let no_user = day.clone().filter(UsageFilter {
        no_user: true,
        ..UsageFilter::default()
    });
    let rows = all_rows(&store, no_user, 100).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].amounts[&MetricKey::TOKENS], dec!(80));

    let by_metric = all_rows(&store, day.group_by([ReportDimension::Metric]), 100).await;
    let got: Vec<_> = by_metric
        .iter()
        .map(|r| (r.key.metric.clone(), r.amounts.len(), r.events))
        .collect();
    assert_eq!(
        got,
        [
            (Some(MetricKey::COST_USD), 1, 4),
            (Some(MetricKey::TOKENS), 1, 4),
        ]
    );
}

/// Walking a report in pages of 1, 2 and 3 rows gives exactly the rows of
/// one big page, in order, each once.
pub async fn report_pages_are_keyset(store: Arc<DynStore>) {
    let (org, owner) = new_org(&store).await;
    let mut batch = Vec::new();
    for (i, model) in ["a", "b", "c", "d"].iter().enumerate() {
        for hour in 0..3 {
            let when = at("2026-03-04T00:10:00Z") + chrono::TimeDelta::hours(hour);
            let user = (i % 2 == 0).then_some(owner);
            batch.push(call(
                &org,
                user,
                ("p", model, "op"),
                1 + i as u64,
                dec!(0.5),
                when,
            ));
        }
    }
    record(&store, &batch).await;
    let query = ReportQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    )
    .granularity(Granularity::Hour)
    .group_by([
        ReportDimension::Model,
        ReportDimension::User,
        ReportDimension::Metric,
    ]);
    let whole = all_rows(&store, query.clone(), 1000).await;
    assert_eq!(whole.len(), 4 * 3 * 2);
    let mut sorted = whole.clone();
    sorted.sort_by_key(ReportRow::cursor);
    assert_eq!(sorted, whole, "rows come in cursor order");
    for limit in [1, 2, 3] {
        assert_eq!(
            all_rows(&store, query.clone(), limit).await,
            whole,
            "pages of {limit}"
        );
    }
}

/// Recording the same event twice (in one batch and in two) counts it once
/// in reports, event reads and rollups.
pub async fn a_duplicate_event_adds_nothing_to_rollups(store: Arc<DynStore>) {
    let (org, _) = new_org(&store).await;
    let when = at("2026-03-04T10:00:00Z");
    let once = call(&org, None, ("openai", "gpt-4o", "chat"), 100, dec!(1), when);
    record(&store, &[once.clone(), once.clone()]).await;
    record(&store, std::slice::from_ref(&once)).await;
    let day = ReportQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    );
    let rows = all_rows(&store, day, 100).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].amounts[&MetricKey::TOKENS], dec!(100));
    assert_eq!(rows[0].events, 1);
    let events = store
        .usage_events(&EventQuery::new(
            org.id,
            at("2026-03-04T00:00:00Z"),
            at("2026-03-05T00:00:00Z"),
        ))
        .await
        .unwrap_or_else(|e| panic!("events: {e}"));
    assert_eq!(events.events.len(), 1);
    let check = RollupReconcileQuery {
        org: org.id,
        from: at("2026-03-04T00:00:00Z"),
        to: at("2026-03-05T00:00:00Z"),
    };
    assert_eq!(store.reconcile_rollups(&check).await.ok(), Some(Vec::new()));
}

/// Events read back with every field (token classes, quantities, cost and
/// its provenance, metadata), in (time, id) order, page by page, filtered;
/// one by id, but never another organization's.
pub async fn event_reads_page_filter_and_keep_every_field(store: Arc<DynStore>) {
    let (org, owner) = new_org(&store).await;
    let (stranger, _) = new_org(&store).await;
    let base = at("2026-03-04T10:00:00Z");
    let source = CostSource::PriceTable {
        provider: "openai".into(),
        model: "o3".into(),
        effective_from: "2025-06-10".parse().unwrap_or_else(|e| panic!("{e}")),
        table: "tenancy-default@2026-11-01".into(),
    };
    let mut rich = UsageEvent::new(org.id)
        .user(owner)
        .ai_call("openai", "o3", "plan")
        .tokens(1000, 200, 300)
        .cache_write_tokens(50)
        .reasoning_tokens(700)
        .audio_tokens(1, 2)
        .image_tokens(3, 4)
        .quantity(MetricKey::ADS_CREATED, dec!(2))
        .metadata(serde_json::json!({"request": "r-1"}))
        .at(base);
    rich.cost_usd = Some(dec!(0.0123));
    rich.cost_source = Some(source.clone());
    let rich = rich
        .into_record(base, org.timezone)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut batch = vec![rich.clone()];
    for i in 1..=5 {
        let user = (i % 2 == 0).then_some(owner);
        batch.push(call(
            &org,
            user,
            ("anthropic", "claude-sonnet-4", "chat"),
            i,
            dec!(0.01),
            base + chrono::TimeDelta::minutes(i as i64),
        ));
    }
    record(&store, &batch).await;
    record(
        &store,
        &[call(&stranger, None, ("p", "m", "o"), 1, dec!(1), base)],
    )
    .await;

    let stored = store
        .usage_event(org.id, rich.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the event is stored"));
    assert_eq!(stored.tokens, rich.event.tokens_by_class());
    assert_eq!(stored.tokens.reasoning, 700);
    assert_eq!(
        stored.tokens.total(),
        1000 + 200 + 300 + 50 + 700 + 1 + 2 + 3 + 4
    );
    assert_eq!(stored.cost_usd, Some(dec!(0.0123)));
    assert_eq!(stored.cost_source, Some(source));
    assert_eq!(stored.user, Some(owner));
    assert_eq!(stored.quantities[&MetricKey::ADS_CREATED], dec!(2));
    assert_eq!(stored.amounts[&MetricKey::TOKENS], Decimal::from(2260));
    assert_eq!(stored.metadata, serde_json::json!({"request": "r-1"}));
    assert_eq!(stored.occurred_at, base);
    assert_eq!(
        store.usage_event(stranger.id, rich.id).await.ok(),
        Some(None),
        "another organization's event is not found"
    );

    let range = EventQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    );
    let mut all = Vec::new();
    let mut query = range.clone().limit(2);
    loop {
        let page = store
            .usage_events(&query)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.events.len() <= 2);
        all.extend(page.events);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].cursor() < w[1].cursor()));
    assert!(all.iter().all(|e| e.org == org.id));

    let mine = store
        .usage_events(&range.clone().filter(UsageFilter {
            users: vec![owner],
            ..UsageFilter::default()
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mine.events.len(), 3);
    assert!(mine.events.iter().all(|e| e.user == Some(owner)));
    let claude = store
        .usage_events(&range.filter(UsageFilter {
            models: vec!["claude-sonnet-4".into()],
            no_user: true,
            ..UsageFilter::default()
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claude.events.len(), 3);
}

/// Cost rows group by provider and model and keep provenances apart, with
/// each token class summed.
pub async fn cost_rows_keep_token_classes_and_provenance(store: Arc<DynStore>) {
    let (org, _) = new_org(&store).await;
    let when = at("2026-03-04T10:00:00Z");
    let priced = |cached: u64, source: Option<CostSource>| {
        let mut e = UsageEvent::new(org.id)
            .ai_call("google", "gemini-2.5-flash", "chat")
            .tokens(100, cached, 10)
            .reasoning_tokens(5)
            .at(when);
        e.cost_usd = source.as_ref().map(|_| dec!(0.25));
        e.cost_source = source;
        e.into_record(when, org.timezone)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let table = CostSource::PriceTable {
        provider: "google".into(),
        model: "gemini-2.5-flash".into(),
        effective_from: "2025-06-17".parse().unwrap_or_else(|e| panic!("{e}")),
        table: "t1".into(),
    };
    record(
        &store,
        &[
            priced(1000, Some(table.clone())),
            priced(3000, Some(table.clone())),
            priced(7, Some(CostSource::Provider)),
            priced(0, None),
        ],
    )
    .await;
    let query = ReportQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    );
    let page = store
        .usage_costs(&query)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.next, None);
    let got: Vec<_> = page
        .rows
        .iter()
        .map(|r| {
            (
                r.cost_source.clone(),
                r.tokens.cached_input,
                r.tokens.reasoning,
                r.cost_usd,
                r.events,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (None, 0, 5, dec!(0), 1),
            (Some(CostSource::Provider), 7, 5, dec!(0.25), 1),
            (Some(table), 4000, 10, dec!(0.50), 2),
        ]
    );
    for row in &page.rows {
        assert_eq!(row.key.provider.as_deref(), Some("google"));
        assert_eq!(row.key.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(row.tokens.input, 100 * row.events);
    }
    let bad = query.group_by([ReportDimension::Metric]);
    assert_eq!(kind(store.usage_costs(&bad).await), ErrorKind::InvalidInput);
}

/// Bad queries are `InvalidInput` (a backwards reconciliation range too,
/// naming `to`); an unknown organization's report is `NotFound`.
pub async fn report_queries_are_checked(store: Arc<DynStore>) {
    let (org, _) = new_org(&store).await;
    let day = ReportQuery::new(
        org.id,
        at("2026-03-04T00:00:00Z"),
        at("2026-03-05T00:00:00Z"),
    );
    assert_eq!(
        kind(store.usage_report(&day.clone().limit(0)).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(store.usage_report(&day.clone().limit(1001)).await),
        ErrorKind::InvalidInput
    );
    let backwards = ReportQuery::new(org.id, day.to, day.from);
    assert_eq!(
        kind(store.usage_report(&backwards).await),
        ErrorKind::InvalidInput
    );
    let unknown = ReportQuery::new(OrgId::new_v7(), day.from, day.to);
    assert_eq!(
        kind(store.usage_report(&unknown).await),
        ErrorKind::NotFound
    );
    let events = EventQuery::new(org.id, day.from, day.to).filter(UsageFilter {
        metrics: vec![MetricKey::TOKENS],
        ..UsageFilter::default()
    });
    assert_eq!(
        kind(store.usage_events(&events).await),
        ErrorKind::InvalidInput
    );
    let empty = store
        .usage_report(&day)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.rows.is_empty() && empty.next.is_none());
    // Reconciling a backwards range is refused naming `to`, as reports are.
    let backwards_hours = RollupReconcileQuery {
        org: org.id,
        from: day.to,
        to: day.from,
    };
    for refused in [
        store.reconcile_rollups(&backwards_hours).await,
        store.repair_rollups(&backwards_hours).await,
    ] {
        match refused {
            Err(e) => assert_eq!((e.kind(), e.field()), (ErrorKind::InvalidInput, Some("to"))),
            Ok(drift) => panic!("a backwards range was reconciled: {drift:?}"),
        }
    }
}

/// After records, duplicates and a repair, rollups agree with the log; a
/// repair with nothing to fix returns nothing.
pub async fn rollups_agree_with_the_log(store: Arc<DynStore>) {
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap_or_else(|e| panic!("{e}"));
    let (org, owner) = new_org_in(&store, kolkata).await;
    let mut batch = Vec::new();
    for i in 0..6 {
        let when = at("2026-03-04T17:50:00Z") + chrono::TimeDelta::minutes(13 * i);
        batch.push(call(
            &org,
            Some(owner),
            ("p", "m", "op"),
            10,
            dec!(0.1),
            when,
        ));
    }
    record(&store, &batch).await;
    record(&store, &batch[..2]).await;
    let query = RollupReconcileQuery {
        org: org.id,
        from: at("2026-03-03T18:30:00Z"),
        to: at("2026-03-05T18:30:00Z"),
    };
    assert_eq!(store.reconcile_rollups(&query).await.ok(), Some(Vec::new()));
    assert_eq!(store.repair_rollups(&query).await.ok(), Some(Vec::new()));
    let rows = all_rows(&store, ReportQuery::new(org.id, query.from, query.to), 100).await;
    let tokens: Decimal = rows.iter().map(|r| r.amounts[&MetricKey::TOKENS]).sum();
    assert_eq!(tokens, dec!(60));
    assert_eq!(
        store
            .reconcile_rollups(&RollupReconcileQuery {
                org: OrgId::new_v7(),
                ..query.clone()
            })
            .await
            .ok(),
        Some(Vec::new())
    );
    assert_eq!(
        kind(
            store
                .repair_rollups(&RollupReconcileQuery {
                    org: OrgId::new_v7(),
                    ..query
                })
                .await
        ),
        ErrorKind::NotFound
    );
}

/// Claim, crash before the ack, claim again: the same batch with the same
/// identifiers. After the ack nothing is left; a late event in an exported
/// hour is a new delta with a new identifier. Units are whole, remainders
/// carried: what was exported plus what is carried is exactly the usage.
pub async fn export_is_exactly_once_across_a_crash(store: Arc<DynStore>) {
    let metric = unique_metric();
    let meter = Meter::new(
        format!("contract_{}", metric.as_str()),
        metric.clone(),
        dec!(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (a, _) = new_org(&store).await;
    let (b, _) = new_org(&store).await;
    store
        .set_billing_customer(a.id, Some("cus_A"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .set_billing_customer(b.id, Some("cus_B"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    record(
        &store,
        &[
            quantity(&a, &metric, dec!(1.5), at("2026-03-04T10:05:00Z")),
            quantity(&a, &metric, dec!(2.7), at("2026-03-04T11:05:00Z")),
            quantity(&b, &metric, dec!(0.4), at("2026-03-04T10:30:00Z")),
            // Still open at `up_to`: exported later.
            quantity(&a, &metric, dec!(9), at("2026-03-04T12:10:00Z")),
        ],
    )
    .await;
    let now = at("2026-03-04T12:30:00Z");
    let claim = ExportClaim {
        meter: meter.clone(),
        up_to: at("2026-03-04T12:00:00Z"),
        max_items: 100,
        now,
    };
    let first = store
        .claim_export(&claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a batch"));
    let mut items: Vec<_> = first
        .items
        .iter()
        .map(|i| (i.org, i.bucket_start, i.seq, i.amount, i.value, i.carried))
        .collect();
    items.sort();
    let mut want = vec![
        (a.id, at("2026-03-04T10:00:00Z"), 0, dec!(1.5), 1, dec!(0.5)),
        (a.id, at("2026-03-04T11:00:00Z"), 0, dec!(2.7), 3, dec!(0.2)),
        (b.id, at("2026-03-04T10:00:00Z"), 0, dec!(0.4), 0, dec!(0.4)),
    ];
    want.sort();
    assert_eq!(items, want);
    let events = first.meter_events(now);
    assert_eq!(events.len(), 2, "an item below one unit sends nothing");
    for e in &events {
        assert_eq!(e.event_name, meter.event_name);
        assert!(e.identifier.len() <= 100);
        assert_eq!(e.payload.stripe_customer_id, "cus_A");
    }
    // The process dies before the ack: the next claim is the same batch.
    let again = store
        .claim_export(&claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.as_ref(), Some(&first));
    let ack = ExportAck {
        event_name: meter.event_name.clone(),
        batch: first.id,
        now,
    };
    assert_eq!(store.ack_export(&ack).await.ok(), Some(true));
    assert_eq!(
        store.ack_export(&ack).await.ok(),
        Some(false),
        "a retried ack"
    );
    assert_eq!(store.claim_export(&claim).await.ok(), Some(None));
    let never = ExportAck {
        batch: first.id + 100,
        ..ack.clone()
    };
    assert_eq!(kind(store.ack_export(&never).await), ErrorKind::NotFound);

    // A late event in an exported hour: a new delta, a new identifier.
    record(
        &store,
        &[quantity(&a, &metric, dec!(0.9), at("2026-03-04T10:50:00Z"))],
    )
    .await;
    let late = store
        .claim_export(&claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a batch"));
    assert!(late.id > first.id);
    assert_eq!(late.items.len(), 1);
    let item = &late.items[0];
    assert_eq!(
        (
            item.org,
            item.bucket_start,
            item.seq,
            item.amount,
            item.value,
            item.carried
        ),
        (a.id, at("2026-03-04T10:00:00Z"), 1, dec!(0.9), 1, dec!(0.1))
    );
    assert!(events.iter().all(|e| e.identifier != item.identifier));
    assert_eq!(
        item.identifier,
        meter.identifier(a.id, item.bucket_start, 1)
    );
    assert_eq!(
        store
            .ack_export(&ExportAck {
                batch: late.id,
                ..ack.clone()
            })
            .await
            .ok(),
        Some(true)
    );
    // Exported units plus the carried remainder are exactly the usage.
    let units: u64 = first
        .items
        .iter()
        .chain(&late.items)
        .filter(|i| i.org == a.id)
        .map(|i| i.value)
        .sum();
    assert_eq!(
        Decimal::from(units) + dec!(0.1),
        dec!(1.5) + dec!(2.7) + dec!(0.9)
    );

    // The open hour, once it ends.
    let later = ExportClaim {
        up_to: at("2026-03-04T13:00:00Z"),
        now: at("2026-03-04T13:00:00Z"),
        ..claim
    };
    let last = store
        .claim_export(&later)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a batch"));
    assert_eq!(last.items.len(), 1);
    assert_eq!(last.items[0].value, 9);
}

/// Batches hold at most `max_items`; walking them with acks exports every
/// hour once; organizations without a billing customer are not exported.
pub async fn export_batches_are_bounded_and_skip_unmapped_orgs(store: Arc<DynStore>) {
    let metric = unique_metric();
    let meter = Meter::new(
        format!("contract_{}", metric.as_str()),
        metric.clone(),
        dec!(100),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (mapped, _) = new_org(&store).await;
    let (unmapped, _) = new_org(&store).await;
    store
        .set_billing_customer(mapped.id, Some("cus_mapped"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut batch = Vec::new();
    for hour in 0..5 {
        let when = at("2026-03-04T00:20:00Z") + chrono::TimeDelta::hours(hour);
        batch.push(quantity(&mapped, &metric, dec!(0.013), when));
        batch.push(quantity(&unmapped, &metric, dec!(1), when));
    }
    record(&store, &batch).await;
    let claim = ExportClaim {
        meter: meter.clone(),
        up_to: at("2026-03-05T00:00:00Z"),
        max_items: 2,
        now: at("2026-03-05T00:00:00Z"),
    };
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    while let Some(batch) = store
        .claim_export(&claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        assert!(sizes.len() < 10, "the claims never end");
        sizes.push(batch.items.len());
        assert!(batch.items.iter().all(|i| i.org == mapped.id));
        seen.extend(batch.items.iter().map(|i| (i.bucket_start, i.value)));
        store
            .ack_export(&ExportAck {
                event_name: meter.event_name.clone(),
                batch: batch.id,
                now: claim.now,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(sizes, [2, 2, 1], "five hours, two at a time");
    // 1.3 cents an hour: 1.3, 1.6, 1.9, 2.2, 1.5 with what is carried.
    let values: Vec<u64> = seen.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [1, 1, 1, 2, 1]);
    let hours: std::collections::BTreeSet<_> = seen.iter().map(|(h, _)| *h).collect();
    assert_eq!(hours.len(), 5, "each hour once");
}

/// A batch takes the oldest not-yet-exported hours across every
/// organization, ties by organization id, at most `max_items`; its items
/// are ordered by organization, then hour; remainders carry across
/// batches. Every backend fills batches in exactly this order, and after
/// the last one every hour was exported once.
pub async fn export_batches_take_the_oldest_hours_across_orgs(store: Arc<DynStore>) {
    let metric = unique_metric();
    let meter = Meter::new(
        format!("contract_{}", metric.as_str()),
        metric.clone(),
        dec!(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (x, _) = new_org(&store).await;
    let (y, _) = new_org(&store).await;
    // `a` sorts before `b` by id, as both SQL and Rust compare UUIDs.
    let (a, b) = if x.id < y.id { (x, y) } else { (y, x) };
    for (org, customer) in [(&a, "cus_a"), (&b, "cus_b")] {
        store
            .set_billing_customer(org.id, Some(customer))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let hour = |h: i64| at("2026-03-04T00:00:00Z") + chrono::TimeDelta::hours(h);
    let minutes = chrono::TimeDelta::minutes(10);
    // a: hours 0, 2, 3; b: hours 0, 1, 3 (two ties, at 0 and 3).
    record(
        &store,
        &[
            quantity(&b, &metric, dec!(10), hour(0) + minutes),
            quantity(&a, &metric, dec!(1.5), hour(0) + minutes),
            quantity(&b, &metric, dec!(20), hour(1) + minutes),
            quantity(&a, &metric, dec!(1.5), hour(2) + minutes),
            quantity(&a, &metric, dec!(0.25), hour(3) + minutes),
            quantity(&b, &metric, dec!(30), hour(3) + minutes),
        ],
    )
    .await;
    let claim = ExportClaim {
        meter: meter.clone(),
        up_to: at("2026-03-05T00:00:00Z"),
        max_items: 2,
        now: at("2026-03-05T00:00:00Z"),
    };
    let mut batches = Vec::new();
    while let Some(batch) = store
        .claim_export(&claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        assert!(batches.len() < 10, "the claims never end");
        batches.push(
            batch
                .items
                .iter()
                .map(|i| (i.org, i.bucket_start, i.value, i.carried))
                .collect::<Vec<_>>(),
        );
        store
            .ack_export(&ExportAck {
                event_name: meter.event_name.clone(),
                batch: batch.id,
                now: claim.now,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        batches,
        [
            // Hour 0 of both.
            vec![(a.id, hour(0), 1, dec!(0.5)), (b.id, hour(0), 10, dec!(0)),],
            // b's hour 1, then a's hour 2 (listed by organization), a's
            // remainder carried from the first batch.
            vec![(a.id, hour(2), 2, dec!(0)), (b.id, hour(1), 20, dec!(0)),],
            // Hour 3 of both; a's is below one unit and only carries.
            vec![(a.id, hour(3), 0, dec!(0.25)), (b.id, hour(3), 30, dec!(0)),],
        ]
    );
    let mut exported: Vec<(OrgId, DateTime<Utc>)> = batches
        .iter()
        .flatten()
        .map(|(org, hour, _, _)| (*org, *hour))
        .collect();
    exported.sort();
    let mut every = vec![
        (a.id, hour(0)),
        (a.id, hour(2)),
        (a.id, hour(3)),
        (b.id, hour(0)),
        (b.id, hour(1)),
        (b.id, hour(3)),
    ];
    every.sort();
    assert_eq!(exported, every, "every hour exported exactly once");
}

/// The Stripe customer mapping is per organization, checked, and removable.
pub async fn billing_customers_map_per_org(store: Arc<DynStore>) {
    let (org, _) = new_org(&store).await;
    let (other, _) = new_org(&store).await;
    assert_eq!(store.billing_customer(org.id).await.ok(), Some(None));
    store
        .set_billing_customer(org.id, Some("cus_123"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.billing_customer(org.id).await.ok(),
        Some(Some("cus_123".to_owned()))
    );
    assert_eq!(store.billing_customer(other.id).await.ok(), Some(None));
    assert_eq!(
        kind(
            store
                .set_billing_customer(org.id, Some("cus 1; drop"))
                .await
        ),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(
            store
                .set_billing_customer(OrgId::new_v7(), Some("cus_1"))
                .await
        ),
        ErrorKind::NotFound
    );
    store
        .set_billing_customer(org.id, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.billing_customer(org.id).await.ok(), Some(None));
}

/// Retention drops old events (reads no longer find them) and keeps the
/// rollups: the dropped month still reports; later events are untouched.
/// (It runs in 2001 so that the cutoff touches no other test's events.)
pub async fn retention_drops_events_and_keeps_reports(store: Arc<DynStore>) {
    let (org, _) = new_org(&store).await;
    let old = call(
        &org,
        None,
        ("p", "m", "o"),
        100,
        dec!(1),
        at("2001-01-10T10:00:00Z"),
    );
    let kept = call(
        &org,
        None,
        ("p", "m", "o"),
        7,
        dec!(1),
        at("2001-02-10T10:00:00Z"),
    );
    record(&store, &[old.clone(), kept.clone()]).await;
    let outcome = store
        .drop_usage_events(at("2001-02-01T00:00:00Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The start of the UTC month holding the cutoff: here the cutoff.
    assert_eq!(outcome.dropped_before, at("2001-02-01T00:00:00Z"));
    assert_eq!(store.usage_event(org.id, old.id).await.ok(), Some(None));
    assert!(
        store
            .usage_event(org.id, kept.id)
            .await
            .ok()
            .flatten()
            .is_some()
    );
    let january = ReportQuery::new(
        org.id,
        at("2001-01-01T00:00:00Z"),
        at("2001-02-01T00:00:00Z"),
    )
    .granularity(Granularity::Month);
    let rows = all_rows(&store, january, 10).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].amounts[&MetricKey::TOKENS], dec!(100));
    let events = store
        .usage_events(&EventQuery::new(
            org.id,
            at("2001-01-01T00:00:00Z"),
            at("2001-03-01T00:00:00Z"),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = events.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [kept.id]);
    // Recording a dropped event again counts nothing.
    record(&store, &[old]).await;
    let rows = all_rows(
        &store,
        ReportQuery::new(
            org.id,
            at("2001-01-01T00:00:00Z"),
            at("2001-02-01T00:00:00Z"),
        ),
        10,
    )
    .await;
    assert_eq!(rows[0].amounts[&MetricKey::TOKENS], dec!(100));
    // A new event from before the cutoff would bring the dropped month
    // back: the batch is refused whole, naming `occurred_at`.
    let late = call(
        &org,
        None,
        ("p", "m", "o"),
        5,
        dec!(1),
        at("2001-01-20T10:00:00Z"),
    );
    let fresh = call(
        &org,
        None,
        ("p", "m", "o"),
        3,
        dec!(1),
        at("2001-02-11T10:00:00Z"),
    );
    let refused = store
        .record_usage(&[fresh.clone(), late.clone()])
        .await
        .expect_err("an event before the retention cutoff");
    assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
    assert_eq!(refused.field(), Some("occurred_at"), "{refused}");
    for id in [late.id, fresh.id] {
        assert_eq!(store.usage_event(org.id, id).await.ok(), Some(None));
    }
    // Rollups before the cutoff cannot be recomputed: naming `from`.
    let before_cut = RollupReconcileQuery {
        org: org.id,
        from: at("2001-01-01T00:00:00Z"),
        to: at("2001-03-01T00:00:00Z"),
    };
    for result in [
        store.reconcile_rollups(&before_cut).await,
        store.repair_rollups(&before_cut).await,
    ] {
        let err = result.expect_err("a range before the retention cutoff");
        assert_eq!(err.field(), Some("from"), "{err}");
    }
    record(&store, std::slice::from_ref(&fresh)).await;
    assert!(
        store
            .usage_event(org.id, fresh.id)
            .await
            .ok()
            .flatten()
            .is_some()
    );
}
