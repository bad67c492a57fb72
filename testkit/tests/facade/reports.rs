//! Usage history through the facade: reports, the event log, repricing,
//! exports and reconciliation of rollups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tenancy::model::PriceTable;
use tenancy::model::report::{
    EventQuery, ExportFormat, ExportOptions, Granularity, Meter, MeterEvent, MeterSink,
    RecordedEvent, ReportDimension, ReportQuery, RollupReconcileQuery, UsageFilter,
};
use tenancy::model::usage::CostSource;
use tenancy::{
    ErrorKind, MetricKey, NewOrganization, Result, Role, TenantContext, UsageEvent, UsageRecorder,
    UserId,
};
use tenancy_testkit::unique_slug;

use super::scene::{Scene, kind, scene, scene_at, utc};

/// Records `event` for the scene's organization through the service.
async fn record(s: &Scene, event: UsageEvent) {
    s.tenancy
        .service()
        .record_usage(event)
        .await
        .expect("record usage");
}

fn call(s: &Scene, user: UserId, model: &str, tokens: u64, at: &str) -> UsageEvent {
    UsageEvent::new(s.org)
        .user(user)
        .ai_call("openai", model, "chat")
        .tokens(tokens, 0, 0)
        .cost_usd(Decimal::from(tokens) / dec!(1000))
        .at(utc(at))
}

fn march(s: &Scene) -> ReportQuery {
    ReportQuery::new(
        s.org,
        utc("2026-03-01T00:00:00Z"),
        utc("2026-04-01T00:00:00Z"),
    )
}

/// Members and viewers read their organization's report, but the per-user
/// breakdown only of themselves; admins and owners everyone's; the
/// operator any organization's; nobody another organization's.
#[tokio::test]
async fn members_read_the_report_admins_the_per_user_breakdown() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    let admin = s.member(Role::Admin).await;
    record(&s, call(&s, s.owner, "gpt-4o", 100, "2026-03-04T09:00:00Z")).await;
    record(
        &s,
        call(&s, member.user(), "gpt-4o", 10, "2026-03-04T09:10:00Z"),
    )
    .await;

    let whole = march(&s).granularity(Granularity::Month);
    for ctx in [&s.owner_ctx, &admin, &member, &viewer] {
        let page = s.tenancy.usage_report(ctx, &whole).await.expect("report");
        assert_eq!(page.rows.len(), 1);
        assert_eq!(page.rows[0].amounts[&MetricKey::TOKENS], dec!(110));
    }
    let by_user = whole.clone().group_by([ReportDimension::User]);
    for ctx in [&member, &viewer] {
        assert_eq!(
            kind(s.tenancy.usage_report(ctx, &by_user).await),
            ErrorKind::PermissionDenied
        );
        let others = whole.clone().filter(UsageFilter {
            users: vec![s.owner],
            ..UsageFilter::default()
        });
        assert_eq!(
            kind(s.tenancy.usage_report(ctx, &others).await),
            ErrorKind::PermissionDenied
        );
    }
    // Their own breakdown is theirs to read.
    let own = by_user.clone().filter(UsageFilter {
        users: vec![member.user()],
        ..UsageFilter::default()
    });
    let page = s.tenancy.usage_report(&member, &own).await.expect("own");
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].key.user, Some(member.user()));
    assert_eq!(page.rows[0].amounts[&MetricKey::TOKENS], dec!(10));
    for ctx in [&s.owner_ctx, &admin] {
        let page = s
            .tenancy
            .usage_report(ctx, &by_user)
            .await
            .expect("by user");
        assert_eq!(page.rows.len(), 2);
    }
    let page = s.op().usage_report(&by_user).await.expect("operator");
    assert_eq!(page.rows.len(), 2);

    // Another organization's owner cannot name this organization.
    let stranger = UserId::new_v7();
    let other = s
        .tenancy
        .create_organization(
            stranger,
            NewOrganization::new("Other", &unique_slug("other")).expect("org"),
        )
        .await
        .expect("other org");
    let stranger_ctx = s.tenancy.context(stranger, other.id).await.expect("ctx");
    assert_eq!(
        kind(s.tenancy.usage_report(&stranger_ctx, &whole).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(
            s.tenancy
                .reprice(&stranger_ctx, &whole, &PriceTable::shipped())
                .await
        ),
        ErrorKind::PermissionDenied
    );
    let theirs = s
        .tenancy
        .usage_report(
            &stranger_ctx,
            &ReportQuery::new(other.id, whole.from, whole.to),
        )
        .await
        .expect("own org");
    assert!(theirs.rows.is_empty());
}

/// Admins and owners read every event; members and viewers their own
/// (narrowed, never another user's by filter or by id); another
/// organization reads none of them.
#[tokio::test]
async fn event_reads_follow_the_per_user_rule() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    let admin = s.member(Role::Admin).await;
    record(&s, call(&s, s.owner, "gpt-4o", 100, "2026-03-04T09:00:00Z")).await;
    record(
        &s,
        call(&s, member.user(), "gpt-4o", 10, "2026-03-04T09:10:00Z"),
    )
    .await;
    let range = EventQuery::new(
        s.org,
        utc("2026-03-04T00:00:00Z"),
        utc("2026-03-05T00:00:00Z"),
    );

    let all = s.tenancy.usage_events(&admin, &range).await.expect("admin");
    assert_eq!(all.events.len(), 2);
    let owners = all
        .events
        .iter()
        .find(|e| e.user == Some(s.owner))
        .expect("the owner's event")
        .id;
    let mine = s
        .tenancy
        .usage_events(&member, &range)
        .await
        .expect("member");
    assert_eq!(mine.events.len(), 1);
    assert_eq!(mine.events[0].user, Some(member.user()));
    let snoop = range.clone().filter(UsageFilter {
        users: vec![s.owner],
        ..UsageFilter::default()
    });
    assert_eq!(
        kind(s.tenancy.usage_events(&member, &snoop).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        s.tenancy.usage_event(&member, owners).await.ok(),
        Some(None)
    );
    assert!(
        s.tenancy
            .usage_event(&s.owner_ctx, owners)
            .await
            .expect("owner")
            .is_some()
    );

    let stranger = UserId::new_v7();
    let other = s
        .tenancy
        .create_organization(
            stranger,
            NewOrganization::new("Other", &unique_slug("other")).expect("org"),
        )
        .await
        .expect("other org");
    let stranger_ctx: TenantContext = s.tenancy.context(stranger, other.id).await.expect("ctx");
    assert_eq!(
        kind(s.tenancy.usage_events(&stranger_ctx, &range).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        s.tenancy.usage_event(&stranger_ctx, owners).await.ok(),
        Some(None)
    );
    assert_eq!(
        s.op()
            .usage_events(&range)
            .await
            .expect("operator")
            .events
            .len(),
        2
    );
}

/// A month's invoice breakdown by model, in the organization's time zone,
/// with costs from the shipped price table (marked with the price that set
/// them) unless the provider reported one (which wins, and is marked).
#[tokio::test]
async fn a_months_invoice_breakdown_by_model() {
    let s = scene_at("Europe/Paris", "2026-03-31T20:00:00Z").await;
    let recorder = UsageRecorder::builder(s.tenancy.clone())
        .prices(PriceTable::shipped())
        .start()
        .expect("recorder");
    let gpt = |at: &str, input, cached, output| {
        UsageEvent::new(s.org)
            .user(s.owner)
            .ai_call("openai", "gpt-4o", "ad_copy")
            .tokens(input, cached, output)
            .at(utc(at))
    };
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per million.
    let computed = recorder
        .record(gpt("2026-03-02T09:00:00Z", 1_000_000, 0, 0))
        .expect("record");
    recorder
        .record(gpt("2026-03-20T09:00:00Z", 0, 1_000_000, 100_000))
        .expect("record");
    let reported = recorder
        .record(gpt("2026-03-21T09:00:00Z", 10, 0, 10).cost_usd(dec!(7)))
        .expect("record");
    // Claude with reasoning and a cache write: $3.75 + $15 per million.
    recorder
        .record(
            UsageEvent::new(s.org)
                .ai_call("anthropic", "claude-sonnet-4", "plan")
                .cache_write_tokens(1_000_000)
                .reasoning_tokens(1_000_000)
                .at(utc("2026-03-10T12:00:00Z")),
        )
        .expect("record");
    // 23:30 UTC on February 28th is March 1st in Paris: in the month.
    recorder
        .record(gpt("2026-02-28T23:30:00Z", 2_000_000, 0, 0))
        .expect("record");
    recorder.flush().await.expect("flush");

    // March in Paris.
    let month = ReportQuery::new(
        s.org,
        utc("2026-02-28T23:00:00Z"),
        utc("2026-03-31T22:00:00Z"),
    )
    .granularity(Granularity::Month)
    .group_by([ReportDimension::Provider, ReportDimension::Model]);
    let page = s
        .tenancy
        .usage_report(&s.owner_ctx, &month)
        .await
        .expect("report");
    let invoice: Vec<_> = page
        .rows
        .iter()
        .map(|r| {
            (
                r.bucket_start,
                r.key.model.clone().unwrap_or_default(),
                r.amounts[&MetricKey::TOKENS],
                r.cost_usd(),
                r.events,
            )
        })
        .collect();
    assert_eq!(
        invoice,
        [
            (
                utc("2026-02-28T23:00:00Z"),
                "claude-sonnet-4".to_owned(),
                dec!(2_000_000),
                dec!(18.75),
                1
            ),
            (
                utc("2026-02-28T23:00:00Z"),
                "gpt-4o".to_owned(),
                dec!(4_100_020),
                // 2.50 + (1.25 + 1.00) + 7 (reported) + 5.00
                dec!(16.75),
                4
            ),
        ]
    );

    let priced = s
        .tenancy
        .usage_event(&s.owner_ctx, computed)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(priced.cost_usd, Some(dec!(2.5)));
    assert_eq!(
        priced.cost_source,
        Some(CostSource::PriceTable {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            effective_from: "2024-10-01".parse().expect("date"),
            table: "tenancy-default@2026-11-01".into(),
        })
    );
    let provider = s
        .tenancy
        .usage_event(&s.owner_ctx, reported)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(provider.cost_usd, Some(dec!(7)));
    assert_eq!(provider.cost_source, Some(CostSource::Provider));
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// An hour of a model is repriced as a whole, whatever priced its events:
/// one event with a token class the table has no rate for (audio, here,
/// with a provider-reported cost) leaves the hour unpriced, its text-only
/// event (priced by the shipped table) included.
#[tokio::test]
async fn reprice_prices_an_hour_as_a_whole() {
    let s = scene().await;
    let recorder = UsageRecorder::builder(s.tenancy.clone())
        .prices(PriceTable::shipped())
        .start()
        .expect("recorder");
    recorder
        .record(
            UsageEvent::new(s.org)
                .ai_call("openai", "gpt-4o", "chat")
                .tokens(1_000_000, 0, 0)
                .at(utc("2026-03-02T09:10:00Z")),
        )
        .expect("record");
    recorder
        .record(
            UsageEvent::new(s.org)
                .ai_call("openai", "gpt-4o", "voice")
                .audio_tokens(1_000, 0)
                .cost_usd(dec!(0.5))
                .at(utc("2026-03-02T09:20:00Z")),
        )
        .expect("record");
    // And a text-only hour, which the table prices.
    recorder
        .record(
            UsageEvent::new(s.org)
                .ai_call("openai", "gpt-4o", "chat")
                .tokens(1_000_000, 0, 0)
                .at(utc("2026-03-02T11:00:00Z")),
        )
        .expect("record");
    recorder.flush().await.expect("flush");
    let text_only = PriceTable::from_json(
        r#"{"name": "text-only", "as_of": "2026-03-01", "prices": [
          {"provider": "openai", "model": "gpt-4o", "effective_from": "2026-03-01",
           "input_per_million": "1.00", "cached_input_per_million": "0.50", "output_per_million": "4"}
        ]}"#,
    )
    .expect("table");
    let report = s
        .tenancy
        .reprice(&s.owner_ctx, &march(&s), &text_only)
        .await
        .expect("reprice");
    assert_eq!(report.lines.len(), 1, "{report:?}");
    let line = &report.lines[0];
    assert_eq!(line.events, 3);
    assert_eq!(line.unpriced_events, 2, "the 09:00 hour, both events");
    assert_eq!(line.repriced_usd, dec!(1.00), "the 11:00 hour alone");
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// Repricing a range under another table is a dry run per model: the
/// recorded cost beside the new one, models the table cannot price
/// counted, nothing written.
#[tokio::test]
async fn reprice_compares_recorded_with_another_table() {
    let s = scene().await;
    let recorder = UsageRecorder::builder(s.tenancy.clone())
        .prices(PriceTable::shipped())
        .start()
        .expect("recorder");
    for (model, at) in [
        ("gpt-4o", "2026-03-02T09:00:00Z"),
        ("gpt-4o", "2026-03-03T09:00:00Z"),
        ("gpt-4o-mini", "2026-03-03T10:00:00Z"),
    ] {
        recorder
            .record(
                UsageEvent::new(s.org)
                    .ai_call("openai", model, "chat")
                    .tokens(1_000_000, 0, 0)
                    .at(utc(at)),
            )
            .expect("record");
    }
    recorder.flush().await.expect("flush");
    let cheaper = PriceTable::from_json(
        r#"{"name": "cheaper", "as_of": "2026-03-01", "prices": [
          {"provider": "openai", "model": "gpt-4o", "effective_from": "2026-03-03",
           "input_per_million": "1.00", "cached_input_per_million": "0.50", "output_per_million": "4"}
        ]}"#,
    )
    .expect("table");
    let before = s
        .tenancy
        .usage_report(&s.owner_ctx, &march(&s))
        .await
        .expect("report");
    let report = s
        .tenancy
        .reprice(&s.member(Role::Member).await, &march(&s), &cheaper)
        .await
        .expect("reprice");
    assert_eq!(report.table, "cheaper@2026-03-01");
    let lines: Vec<_> = report
        .lines
        .iter()
        .map(|l| {
            (
                l.model.as_str(),
                l.events,
                l.recorded_usd,
                l.repriced_usd,
                l.unpriced_events,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            // March 2nd has no price in the new table (it starts on the 3rd).
            ("gpt-4o", 2, dec!(5.00), dec!(1.00), 1),
            ("gpt-4o-mini", 1, dec!(0.15), dec!(0), 1),
        ]
    );
    assert_eq!(report.recorded_usd, dec!(5.15));
    assert_eq!(report.repriced_usd, dec!(1.00));
    let after = s
        .tenancy
        .usage_report(&s.owner_ctx, &march(&s))
        .await
        .expect("report");
    assert_eq!(before, after, "a dry run writes nothing");
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// A sink that behaves as Stripe does: it dedupes by identifier, and
/// fails once, on its `fail_at`-th call.
#[derive(Default)]
struct StripeLike {
    calls: Mutex<u32>,
    fail_at: Option<u32>,
    received: Mutex<Vec<MeterEvent>>,
    counted: Mutex<HashMap<String, MeterEvent>>,
}

#[async_trait]
impl MeterSink for StripeLike {
    async fn send(&self, event: &MeterEvent) -> Result<()> {
        let call = {
            let mut calls = self.calls.lock().expect("lock");
            *calls += 1;
            *calls
        };
        if Some(call) == self.fail_at {
            return Err(tenancy::Error::new(
                ErrorKind::Unavailable,
                "stripe is down",
            ));
        }
        self.received.lock().expect("lock").push(event.clone());
        let mut counted = self.counted.lock().expect("lock");
        if let Some(first) = counted.get(&event.identifier) {
            assert_eq!(first, event, "a redelivery is the same event");
        } else {
            counted.insert(event.identifier.clone(), event.clone());
        }
        Ok(())
    }
}

impl StripeLike {
    /// What Stripe counts per customer: each identifier once.
    fn totals(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for e in self.counted.lock().expect("lock").values() {
            *totals
                .entry(e.payload.stripe_customer_id.clone())
                .or_default() += e.payload.value.parse::<u64>().expect("a whole number");
        }
        totals
    }
}

/// The export loop: a sink that fails mid-batch stops the run; the next
/// run delivers the same batch again (same identifiers, which Stripe
/// dedupes) and the rest; in the end every unit is counted once, none is
/// missing, and late usage becomes a new delta.
#[tokio::test]
async fn the_export_loop_resumes_after_a_sink_failure() {
    let s = scene().await;
    s.op()
        .set_billing_customer(s.org, Some("cus_acme"))
        .await
        .expect("map");
    assert_eq!(
        s.op()
            .billing_customer(s.org)
            .await
            .expect("read")
            .as_deref(),
        Some("cus_acme")
    );
    // Cost in cents: $0.015 an hour for six hours.
    for hour in 0..6 {
        let at = utc("2026-03-04T00:10:00Z") + TimeDelta::hours(hour);
        record(
            &s,
            UsageEvent::new(s.org)
                .ai_call("openai", "gpt-4o", "chat")
                .cost_usd(dec!(0.015))
                .at(at),
        )
        .await;
    }
    let meter = Meter::new("api_cost_cents", MetricKey::COST_USD, dec!(100)).expect("meter");
    let options = ExportOptions {
        batch_size: 4,
        ..ExportOptions::default()
    };
    let sink = StripeLike {
        fail_at: Some(3),
        ..StripeLike::default()
    };
    let err = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect_err("the sink fails on its third call");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let first_try: Vec<String> = sink
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|e| e.identifier.clone())
        .collect();
    assert_eq!(first_try.len(), 2);

    let run = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect("resume");
    assert_eq!(run.batches, 2);
    assert_eq!(run.items, 6);
    let received = sink.received.lock().expect("lock").clone();
    // The first batch again from its start: its first two were sent twice.
    assert_eq!(received[2].identifier, first_try[0]);
    assert_eq!(received[3].identifier, first_try[1]);
    // 6 × 1.5 cents = 9 cents, each counted once.
    assert_eq!(sink.totals(), BTreeMap::from([("cus_acme".to_owned(), 9)]));
    let again = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect("nothing left");
    assert_eq!(again.batches, 0);

    // Late usage in an exported hour: a new delta, a new identifier.
    record(
        &s,
        UsageEvent::new(s.org)
            .cost_usd(dec!(0.02))
            .at(utc("2026-03-04T00:40:00Z")),
    )
    .await;
    let late = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect("late");
    assert_eq!((late.batches, late.items, late.events_sent), (1, 1, 1));
    assert_eq!(sink.totals(), BTreeMap::from([("cus_acme".to_owned(), 11)]));
    let counted = sink.counted.lock().expect("lock").len();
    assert_eq!(counted, 7);
    for e in sink.counted.lock().expect("lock").values() {
        assert_eq!(e.event_name, "api_cost_cents");
        assert!(e.identifier.len() <= 100);
    }
}

/// Hours still open, or that ended within `settle_secs`, wait.
#[tokio::test]
async fn the_exporter_waits_for_hours_to_settle() {
    let s = scene().await; // 10:00 UTC
    s.op()
        .set_billing_customer(s.org, Some("cus_acme"))
        .await
        .expect("map");
    record(
        &s,
        UsageEvent::new(s.org)
            .quantity(MetricKey::ADS_CREATED, dec!(3))
            .at(utc("2026-03-04T09:58:00Z")),
    )
    .await;
    let meter = Meter::new("ads", MetricKey::ADS_CREATED, dec!(1)).expect("meter");
    let sink = StripeLike::default();
    let options = ExportOptions::default();
    let run = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect("run");
    assert_eq!(run.batches, 0, "the hour ended less than five minutes ago");
    s.clock.advance(Duration::from_secs(300));
    let run = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect("run");
    assert_eq!(run.events_sent, 1);
    assert_eq!(sink.totals(), BTreeMap::from([("cus_acme".to_owned(), 3)]));
    let bad = ExportOptions {
        calls_per_second: 1001,
        ..ExportOptions::default()
    };
    assert_eq!(
        kind(s.op().export_meter(&meter, &sink, &bad).await),
        ErrorKind::InvalidInput
    );
}

/// CSV and NDJSON of a report and of the event log hold every row, page
/// after page, and read back as written; a member's event export holds
/// only their own events.
#[tokio::test]
async fn csv_and_ndjson_exports_hold_every_row() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    for i in 0..7 {
        let user = if i % 2 == 0 { s.owner } else { member.user() };
        let mut event = call(
            &s,
            user,
            ["gpt-4o", "o3, \"mini\""][i % 2],
            100 + i as u64,
            "2026-03-04T08:00:00Z",
        );
        event.occurred_at = Some(utc("2026-03-04T08:00:00Z") + TimeDelta::minutes(i as i64 * 17));
        record(&s, event).await;
    }
    let query = march(&s)
        .granularity(Granularity::Hour)
        .group_by([ReportDimension::Model, ReportDimension::Metric])
        .limit(2);
    let mut csv = Vec::new();
    let rows = s
        .tenancy
        .write_report(&s.owner_ctx, &query, ExportFormat::Csv, &mut csv)
        .await
        .expect("csv");
    let whole = s
        .tenancy
        .usage_report(&s.owner_ctx, &query.clone().limit(1000))
        .await
        .expect("report");
    assert_eq!(rows as usize, whole.rows.len());
    let csv = String::from_utf8(csv).expect("utf-8");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("bucket_start,metric,provider,model,operation,user,amount,events")
    );
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), whole.rows.len(), "one line per row and metric");
    assert!(
        body.contains(&"2026-03-04T08:00:00Z,tokens,,gpt-4o,,,202,2"),
        "{csv}"
    );
    assert!(
        body.iter().any(|l| l.contains(",\"o3, \"\"mini\"\"\",")),
        "labels are quoted: {csv}"
    );

    let mut ndjson = Vec::new();
    let n = s
        .tenancy
        .write_report(&s.owner_ctx, &query, ExportFormat::Ndjson, &mut ndjson)
        .await
        .expect("ndjson");
    let parsed: Vec<tenancy::model::report::ReportRow> = String::from_utf8(ndjson)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a row"))
        .collect();
    assert_eq!(n as usize, parsed.len());
    assert_eq!(parsed, whole.rows);

    let events = EventQuery::new(
        s.org,
        utc("2026-03-04T00:00:00Z"),
        utc("2026-03-05T00:00:00Z"),
    )
    .limit(3);
    let mut out = Vec::new();
    let n = s
        .tenancy
        .write_events(&s.owner_ctx, &events, ExportFormat::Ndjson, &mut out)
        .await
        .expect("events");
    assert_eq!(n, 7);
    let read: Vec<RecordedEvent> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    assert_eq!(read.len(), 7);
    assert!(read.windows(2).all(|w| w[0].cursor() < w[1].cursor()));

    let mut out = Vec::new();
    let n = s
        .tenancy
        .write_events(&member, &events, ExportFormat::Csv, &mut out)
        .await
        .expect("member's events");
    assert_eq!(n, 3);
    let csv = String::from_utf8(out).expect("utf-8");
    assert_eq!(csv.lines().count(), 4);
    assert!(
        csv.lines()
            .next()
            .expect("header")
            .starts_with("id,occurred_at,user,")
    );
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) == Some(member.user().to_string().as_str()))
    );
}

/// The operator reconciles rollups with the log (none drift on a healthy
/// store) and retention keeps reports answering for dropped months.
#[tokio::test]
async fn the_operator_reconciles_and_retention_keeps_reports() {
    let s = scene().await;
    record(&s, call(&s, s.owner, "gpt-4o", 100, "2026-03-04T09:00:00Z")).await;
    let check = RollupReconcileQuery {
        org: s.org,
        from: utc("2026-03-04T00:00:00Z"),
        to: utc("2026-03-05T00:00:00Z"),
    };
    assert!(
        s.op()
            .reconcile_rollups(&check)
            .await
            .expect("reconcile")
            .is_empty()
    );
    assert!(
        s.op()
            .repair_rollups(&check)
            .await
            .expect("repair")
            .is_empty()
    );
    assert_eq!(
        kind(
            s.op()
                .drop_usage_events_older_than(TimeDelta::days(7))
                .await
        ),
        ErrorKind::InvalidInput
    );
    s.clock.advance(Duration::from_secs(40 * 24 * 3600));
    let dropped = s
        .op()
        .drop_usage_events_older_than(TimeDelta::days(31))
        .await
        .expect("retention");
    assert_eq!(dropped.events, Some(1));
    let page = s
        .tenancy
        .usage_report(&s.owner_ctx, &march(&s))
        .await
        .expect("report");
    assert_eq!(page.rows[0].amounts[&MetricKey::TOKENS], dec!(100));
    let events = s
        .tenancy
        .usage_events(
            &s.owner_ctx,
            &EventQuery::new(
                s.org,
                utc("2026-03-01T00:00:00Z"),
                utc("2026-04-01T00:00:00Z"),
            ),
        )
        .await
        .expect("events");
    assert!(events.events.is_empty());
    assert_eq!(
        kind(s.op().reconcile_rollups(&check).await),
        ErrorKind::InvalidInput,
        "the log no longer holds those events"
    );
}

// ---------------------------------------------------------------------------
// Export timestamps at send time and Stripe's identifier dedupe window.

/// A sink that accepts `budget` more events, then fails until the budget
/// is raised (`None`: always up), and keeps every event it received.
#[derive(Default)]
struct Outage {
    budget: Mutex<Option<u32>>,
    received: Mutex<Vec<MeterEvent>>,
}

#[async_trait]
impl MeterSink for Outage {
    async fn send(&self, event: &MeterEvent) -> Result<()> {
        let mut budget = self.budget.lock().expect("lock");
        match budget.as_mut() {
            Some(0) => {
                return Err(tenancy::Error::new(
                    ErrorKind::Unavailable,
                    "stripe is down",
                ));
            }
            Some(n) => *n -= 1,
            None => {}
        }
        self.received.lock().expect("lock").push(event.clone());
        Ok(())
    }
}

impl Outage {
    fn down_after(events: u32) -> Self {
        Outage {
            budget: Mutex::new(Some(events)),
            ..Outage::default()
        }
    }

    fn up(&self) {
        *self.budget.lock().expect("lock") = None;
    }

    fn received(&self) -> Vec<MeterEvent> {
        self.received.lock().expect("lock").clone()
    }
}

/// Three hours of ads for the scene's organization (3, 5 and 7, from
/// 06:00 UTC on the scene's day), mapped to `cus_acme`, and their meter.
async fn three_hours_of_ads(s: &Scene) -> Meter {
    s.op()
        .set_billing_customer(s.org, Some("cus_acme"))
        .await
        .expect("map");
    for (hour, ads) in [(6, 3), (7, 5), (8, 7)] {
        record(
            s,
            UsageEvent::new(s.org)
                .quantity(MetricKey::ADS_CREATED, Decimal::from(ads))
                .at(utc("2026-03-04T00:10:00Z") + TimeDelta::hours(hour)),
        )
        .await;
    }
    Meter::new("ads", MetricKey::ADS_CREATED, dec!(1)).expect("meter")
}

fn day(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

/// A batch claimed, the sink failing mid-batch, the clock moved 40 days:
/// the exporter refuses to resend silently (Stripe dedupes identifiers for
/// 24 hours only); told to resend that batch, it sends the same
/// identifiers and values, stamped within Stripe's 35 days of the send
/// (34 days back), not with the hours of 40 days ago.
#[tokio::test]
async fn a_batch_resent_40_days_later_is_stamped_at_send_time() {
    let s = scene().await; // 2026-03-04T10:00Z
    let meter = three_hours_of_ads(&s).await;
    let sink = Outage::down_after(1);
    let claimed_at = tenancy::clock::Clock::now(&s.clock);
    let err = s
        .op()
        .export_meter(&meter, &sink, &ExportOptions::default())
        .await
        .expect_err("stripe goes down after one event");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let first = sink.received();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].timestamp,
        utc("2026-03-04T06:00:00Z").timestamp(),
        "sent at once: the hour's start"
    );

    s.clock.advance(day(40));
    let send_time = tenancy::clock::Clock::now(&s.clock);
    sink.up();
    let refused = s
        .op()
        .export_meter(&meter, &sink, &ExportOptions::default())
        .await
        .expect_err("claimed 40 days ago: past Stripe's dedupe window");
    assert_eq!(refused.kind(), ErrorKind::Conflict);
    assert!(!refused.is_retryable());
    assert!(
        refused.message().starts_with("batch 1 of meter ads "),
        "{}",
        refused.message()
    );
    assert_eq!(sink.received().len(), 1, "nothing sent");

    let resend = ExportOptions {
        resend_stale_batch: Some(1),
        ..ExportOptions::default()
    };
    let run = s
        .op()
        .export_meter(&meter, &sink, &resend)
        .await
        .expect("resend the batch named");
    assert_eq!((run.batches, run.items, run.events_sent), (1, 3, 3));
    let sent = sink.received();
    let resent = &sent[1..];
    let hours = [
        "2026-03-04T06:00:00Z",
        "2026-03-04T07:00:00Z",
        "2026-03-04T08:00:00Z",
    ];
    for ((event, hour), value) in resent.iter().zip(hours).zip(["3", "5", "7"]) {
        assert_eq!(event.identifier, meter.identifier(s.org, utc(hour), 0));
        assert_eq!(event.payload.value, value);
        assert_eq!(event.payload.stripe_customer_id, "cus_acme");
        // Within Stripe's 35 days of the send, a day to spare, not ahead.
        let stamped = event.timestamp;
        assert_eq!(stamped, (send_time - TimeDelta::days(34)).timestamp());
        assert!(stamped > (send_time - TimeDelta::days(35)).timestamp());
        assert!(stamped <= send_time.timestamp());
        assert!(stamped > utc(hour).timestamp() && stamped > claimed_at.timestamp());
    }
    // The event sent before the outage: same identifier and value, only
    // the timestamp moved.
    assert_eq!(resent[0].identifier, first[0].identifier);
    assert_eq!(resent[0].payload, first[0].payload);
    assert_ne!(resent[0].timestamp, first[0].timestamp);
    let again = s
        .op()
        .export_meter(&meter, &sink, &resend)
        .await
        .expect("nothing left");
    assert_eq!(again.batches, 0);
}

/// A pending batch is resent as claimed within Stripe's dedupe window;
/// past it the run refuses until the operator acknowledges the batch
/// (Stripe had every event), and the next run exports only later usage.
#[tokio::test]
async fn a_stale_batch_waits_for_the_operator() {
    let s = scene().await; // 2026-03-04T10:00Z
    let meter = three_hours_of_ads(&s).await;
    let sink = Outage::down_after(1);
    let options = ExportOptions {
        batch_size: 2,
        ..ExportOptions::default()
    };
    s.op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect_err("down after one event");

    // 23 hours later: within the window, resent as claimed.
    s.clock.advance(Duration::from_secs(23 * 3600));
    *sink.budget.lock().expect("lock") = Some(2);
    s.op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect_err("batch 1 resent (two events), batch 2 fails");
    let sent = sink.received();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1], sent[0], "the same event, timestamp included");
    assert_eq!(sent[2].timestamp, utc("2026-03-04T07:00:00Z").timestamp());

    // Batch 2, claimed 23 hours after the start, is 24 hours old a day on.
    s.clock.advance(day(1));
    sink.up();
    let refused = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect_err("past the window");
    assert_eq!(refused.kind(), ErrorKind::Conflict);
    assert!(
        refused.message().starts_with("batch 2 "),
        "{}",
        refused.message()
    );
    // Refused again, however often the job runs.
    assert_eq!(
        kind(s.op().export_meter(&meter, &sink, &options).await),
        ErrorKind::Conflict
    );
    assert_eq!(sink.received().len(), 3);

    // The operator finds hour 8's event missing in Stripe, sends it with
    // their own client, and acknowledges the batch.
    assert_eq!(s.op().acknowledge_export(&meter, 2).await.ok(), Some(true));
    assert_eq!(s.op().acknowledge_export(&meter, 2).await.ok(), Some(false));
    assert_eq!(
        kind(s.op().acknowledge_export(&meter, 9).await),
        ErrorKind::NotFound
    );
    record(
        &s,
        UsageEvent::new(s.org)
            .quantity(MetricKey::ADS_CREATED, dec!(4))
            .at(utc("2026-03-05T12:10:00Z")),
    )
    .await;
    let run = s
        .op()
        .export_meter(&meter, &sink, &options)
        .await
        .expect("later usage");
    assert_eq!((run.batches, run.items, run.events_sent), (1, 1, 1));
    let last = sink.received().pop().expect("an event");
    assert_eq!(
        (last.identifier, last.payload.value),
        (
            meter.identifier(s.org, utc("2026-03-05T12:00:00Z"), 0),
            "4".to_owned()
        )
    );
}

/// The exports refuse what the reads refuse, and a refusal writes nothing
/// (not even the CSV header): another organization's context naming this
/// organization, a member's or viewer's report grouped by user, their
/// events filtered to another user.
#[tokio::test]
async fn exports_refuse_other_orgs_and_members_and_write_nothing() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    record(&s, call(&s, s.owner, "gpt-4o", 100, "2026-03-04T09:00:00Z")).await;
    record(
        &s,
        call(&s, member.user(), "gpt-4o", 10, "2026-03-04T09:10:00Z"),
    )
    .await;
    let report = march(&s);
    let events = EventQuery::new(report.org, report.from, report.to);
    let stranger = UserId::new_v7();
    let other = s
        .tenancy
        .create_organization(
            stranger,
            NewOrganization::new("Other", &unique_slug("other")).expect("org"),
        )
        .await
        .expect("other org");
    let stranger_ctx = s.tenancy.context(stranger, other.id).await.expect("ctx");
    let by_user = report.clone().group_by([ReportDimension::User]);
    let owners_events = events.clone().filter(UsageFilter {
        users: vec![s.owner],
        ..UsageFilter::default()
    });
    let mut refusals: Vec<(
        &str,
        &TenantContext,
        Option<&ReportQuery>,
        Option<&EventQuery>,
    )> = vec![
        ("another org's report", &stranger_ctx, Some(&report), None),
        ("another org's events", &stranger_ctx, None, Some(&events)),
    ];
    for ctx in [&member, &viewer] {
        refusals.push(("a report by user", ctx, Some(&by_user), None));
        refusals.push(("another user's events", ctx, None, Some(&owners_events)));
    }
    for (what, ctx, report, events) in refusals {
        for format in [ExportFormat::Csv, ExportFormat::Ndjson] {
            let mut out = Vec::new();
            let refused = match (report, events) {
                (Some(q), _) => s.tenancy.write_report(ctx, q, format, &mut out).await,
                (_, Some(q)) => s.tenancy.write_events(ctx, q, format, &mut out).await,
                (None, None) => unreachable!("each refusal names a query"),
            };
            assert_eq!(
                kind(refused),
                ErrorKind::PermissionDenied,
                "{what} ({format:?}, {:?})",
                ctx.role()
            );
            assert!(
                out.is_empty(),
                "{what} ({format:?}) wrote {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    // The same member exports their own events, and the org-wide report.
    let mut out = Vec::new();
    let n = s
        .tenancy
        .write_events(&member, &events, ExportFormat::Csv, &mut out)
        .await
        .expect("own events");
    assert_eq!(n, 1);
    let mut out = Vec::new();
    let n = s
        .tenancy
        .write_report(&member, &report, ExportFormat::Csv, &mut out)
        .await
        .expect("org-wide report");
    assert_eq!(n, 1);
}

/// Repricing ignores the query's grouping: a member's reprice grouped by
/// user is the org-wide one (not refused), while a filter on another user
/// still takes an admin, and a metric filter is refused naming `filter`.
#[tokio::test]
async fn reprice_ignores_grouping_and_keeps_the_per_user_rule() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    record(&s, call(&s, s.owner, "gpt-4o", 100, "2026-03-04T09:00:00Z")).await;
    record(
        &s,
        call(&s, member.user(), "gpt-4o", 10, "2026-03-04T09:10:00Z"),
    )
    .await;
    let table = PriceTable::shipped();
    let whole = s
        .tenancy
        .reprice(&s.owner_ctx, &march(&s), &table)
        .await
        .expect("owner's reprice");
    assert_eq!(whole.recorded_usd, dec!(0.11));
    let by_user = march(&s).group_by([ReportDimension::User]);
    let grouped = s
        .tenancy
        .reprice(&member, &by_user, &table)
        .await
        .expect("a member's reprice grouped by user");
    assert_eq!(grouped, whole, "grouping is ignored");
    let others = march(&s).filter(UsageFilter {
        users: vec![s.owner],
        ..UsageFilter::default()
    });
    assert_eq!(
        kind(s.tenancy.reprice(&member, &others, &table).await),
        ErrorKind::PermissionDenied
    );
    let own = march(&s).filter(UsageFilter {
        users: vec![member.user()],
        ..UsageFilter::default()
    });
    let mine = s
        .tenancy
        .reprice(&member, &own, &table)
        .await
        .expect("own reprice");
    assert_eq!(mine.recorded_usd, dec!(0.01));
    let by_metric = march(&s).filter(UsageFilter {
        metrics: vec![MetricKey::TOKENS],
        ..UsageFilter::default()
    });
    let refused = s
        .tenancy
        .reprice(&s.owner_ctx, &by_metric, &table)
        .await
        .expect_err("a metric filter");
    assert_eq!(
        (refused.kind(), refused.field()),
        (ErrorKind::InvalidInput, Some("filter"))
    );
}
