//! The usage-history migration (version 14): rollups kept with the record
//! primitive, reports in the organization's time zone, event reads under
//! RLS, the partitioned event log and its conversion, retention, rollup
//! reconciliation and the exactly-once Stripe export claim.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tenancy_testkit::pg::{self, Actor, Cluster, create_user};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::support::{
    add_member, assert_code, assert_denied, at, call_as, create_org, private_db, visible, world,
};

const NIL: Uuid = Uuid::nil();

/// An event as the library sends it to `tenancy_record_usage`: every key,
/// the token classes and provenance included; it counts `tokens` (the sum
/// of its classes) and `cost_usd` when given.
fn usage(
    org: Uuid,
    user: Option<Uuid>,
    model: &str,
    occurred_at: DateTime<Utc>,
    tokens: u64,
    cost: Option<&str>,
) -> Value {
    // Every class sums into `tokens`: input plus one cache read, one
    // cache write and one reasoning token.
    let mut amounts = serde_json::Map::new();
    amounts.insert("tokens".into(), json!((tokens + 3).to_string()));
    if let Some(cost) = cost {
        amounts.insert("cost_usd".into(), json!(cost));
    }
    let day = occurred_at.date_naive();
    json!({
        "id": Uuid::now_v7(),
        "organization_id": org,
        "user_id": user,
        "provider": "openai",
        "model": model,
        "operation": "chat",
        "input_tokens": tokens,
        "cached_input_tokens": 1,
        "cache_write_tokens": 1,
        "output_tokens": 0,
        "reasoning_tokens": 1,
        "audio_input_tokens": 0,
        "audio_output_tokens": 0,
        "image_input_tokens": 0,
        "image_output_tokens": 0,
        "quantities": {},
        "cost_usd": cost,
        "cost_source": cost.map(|_| "price_table"),
        "price_provider": cost.map(|_| "openai"),
        "price_model": cost.map(|_| model),
        "price_effective_from": cost.map(|_| "2026-01-01"),
        "price_table": cost.map(|_| "2026-03"),
        "occurred_at": occurred_at,
        "metadata": null,
        "amounts": amounts,
        "daily_start": day,
        "monthly_start": day.with_day(1).unwrap(),
    })
}

async fn record(db: &Client, events: &[Value]) -> Value {
    db.query_one("select tenancy_record_usage($1)", &[&json!(events)])
        .await
        .expect("record usage")
        .get(0)
}

async fn org_in(db: &Client, tz: &str) -> (Uuid, Uuid) {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    db.execute(
        "update organizations set timezone = $2 where id = $1",
        &[&org, &tz],
    )
    .await
    .unwrap();
    (org, owner)
}

/// The start of `at`'s hour on the clock of `tz`, as an instant.
fn hour_start(at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = at.with_timezone(&tz);
    at - Duration::seconds(i64::from(local.minute() * 60 + local.second()))
        - Duration::nanoseconds(i64::from(local.nanosecond()))
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

type RollupKey = (DateTime<Utc>, Uuid, String, String);

/// The metric rollups of `org`: (bucket, user, model, metric) -> (amount, events).
async fn rollups(db: &Client, org: Uuid) -> BTreeMap<RollupKey, (Decimal, i64)> {
    db.query(
        "select bucket_start, user_id, model, metric::text, amount::text, events \
         from usage_rollups where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            (r.get(0), r.get(1), r.get(2), r.get(3)),
            (r.get::<_, String>(4).parse().unwrap(), r.get(5)),
        )
    })
    .collect()
}

async fn report(db: &Client, org: Uuid, args: &str) -> Value {
    db.query_one(
        &format!("select tenancy_usage_report(org_id => $1, {args})"),
        &[&org],
    )
    .await
    .unwrap()
    .get(0)
}

/// A small deterministic generator (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn rollups_equal_the_event_log_after_random_batches_with_duplicates() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let tz: Tz = "Asia/Kolkata".parse().unwrap();
    let (org, owner) = org_in(&db, "Asia/Kolkata").await;
    let member = create_user(&db).await;
    add_member(&db, org, member, "member").await;
    let users = [Some(owner), Some(member), None];
    let models = ["gpt-4o", "gpt-4o-mini", "claude"];
    let base = at("2026-03-10T00:00:00Z");
    let mut rng = Lcg(19);
    let mut sent: Vec<Value> = Vec::new();
    let mut unique: BTreeMap<Uuid, Value> = BTreeMap::new();
    let mut inserted = 0;
    for _ in 0..25 {
        let mut batch = Vec::new();
        for _ in 0..(1 + rng.next(30)) {
            let e = if !sent.is_empty() && rng.next(10) < 3 {
                // A retry of an event sent before, or earlier in this batch.
                sent[rng.next(sent.len() as u64) as usize].clone()
            } else {
                let cost = match rng.next(3) {
                    0 => None,
                    1 => Some("0.015"),
                    _ => Some("0.0004"),
                };
                usage(
                    org,
                    users[rng.next(3) as usize],
                    models[rng.next(3) as usize],
                    base + Duration::seconds(rng.next(4 * 86_400) as i64),
                    rng.next(5000),
                    cost,
                )
            };
            sent.push(e.clone());
            batch.push(e);
        }
        let new = batch
            .iter()
            .filter(|e| !unique.contains_key(&crate::support::id_of(e)))
            .map(crate::support::id_of)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as i64;
        for e in &batch {
            unique
                .entry(crate::support::id_of(e))
                .or_insert_with(|| e.clone());
        }
        let out = record(&db, &batch).await;
        assert_eq!(out["inserted"], json!(new), "only new events are inserted");
        inserted += new;
    }
    assert_eq!(inserted as usize, unique.len());

    // What the rollups must hold, computed here from the unique events.
    let mut want: BTreeMap<RollupKey, (Decimal, i64)> = BTreeMap::new();
    for e in unique.values() {
        let at: DateTime<Utc> = serde_json::from_value(e["occurred_at"].clone()).unwrap();
        let user: Uuid = e["user_id"].as_str().map_or(NIL, |u| u.parse().unwrap());
        for (metric, amount) in e["amounts"].as_object().unwrap() {
            let key = (
                hour_start(at, tz),
                user,
                e["model"].as_str().unwrap().to_owned(),
                metric.clone(),
            );
            let slot = want.entry(key).or_insert((Decimal::ZERO, 0));
            slot.0 += dec(amount);
            slot.1 += 1;
        }
    }
    let got = rollups(&db, org).await;
    assert!(!got.is_empty());
    assert_eq!(got, want, "rollups = the events, each once, in IST hours");
    for key in got.keys() {
        assert_eq!(key.0.minute(), 30, "an IST hour starts at :30 UTC: {key:?}");
    }

    // The same through SQL, and reconciliation agrees: no drift.
    let sums: i64 = db
        .query_one(
            "select count(*) from usage_events where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sums, inserted);
    let drift: Value = db
        .query_one(
            "select tenancy_reconcile_rollups($1, '2026-03-09', '2026-03-16')",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(drift, json!([]));
    // Token rollups count every event once.
    let token_events: i64 = db
        .query_one(
            "select sum(events)::bigint from usage_token_rollups where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(token_events, inserted);
}

#[tokio::test]
async fn reports_follow_a_half_hour_time_zone() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, owner) = org_in(&db, "Asia/Kolkata").await;
    // 23:59 and 00:01 in Kolkata: two local days, one UTC day.
    record(
        &db,
        &[
            usage(
                org,
                Some(owner),
                "a",
                at("2026-03-13T18:29:00Z"),
                100,
                Some("0.5"),
            ),
            usage(org, Some(owner), "b", at("2026-03-13T18:31:00Z"), 200, None),
            usage(org, None, "b", at("2026-03-13T19:10:00Z"), 300, None),
        ],
    )
    .await;
    let days = report(
        &db,
        org,
        "since => '2026-03-01T00:00:00+05:30', until => '2026-04-01T00:00:00+05:30', \
         granularity => 'day'",
    )
    .await;
    assert_eq!(
        days,
        json!([
            {"bucket_start": "2026-03-12T18:30:00+00:00", "metric": null, "provider": null,
             "model": null, "operation": null, "user_id": null, "events": 1,
             "amounts": {"tokens": "103", "cost_usd": "0.5"}},
            {"bucket_start": "2026-03-13T18:30:00+00:00", "metric": null, "provider": null,
             "model": null, "operation": null, "user_id": null, "events": 2,
             "amounts": {"tokens": "506"}},
        ])
    );
    let hours = report(
        &db,
        org,
        "since => '2026-03-13T00:00:00Z', until => '2026-03-14T00:00:00Z', \
         granularity => 'hour', group_by => '{model,user}', metrics => '{tokens}'",
    )
    .await;
    let starts: Vec<(&str, &str, Value)> = hours
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["bucket_start"].as_str().unwrap(),
                r["model"].as_str().unwrap(),
                r["user_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        starts,
        vec![
            ("2026-03-13T17:30:00+00:00", "a", json!(owner)),
            ("2026-03-13T18:30:00+00:00", "b", Value::Null),
            ("2026-03-13T18:30:00+00:00", "b", json!(owner)),
        ],
        "hours at :30 UTC; usage without a user first"
    );
    let month = report(
        &db,
        org,
        "since => '2026-03-01T00:00:00+05:30', until => '2026-04-01T00:00:00+05:30', \
         granularity => 'month', group_by => '{metric}'",
    )
    .await;
    assert_eq!(month[0]["bucket_start"], "2026-02-28T18:30:00+00:00");
    assert_eq!(month[0]["metric"], "cost_usd");
    assert_eq!(month[1]["amounts"], json!({"tokens": "609"}));
    assert_eq!(month[1]["events"], 3);

    // A range that is not whole local days reads the hours: the bucket of
    // 18:29 UTC starts at 17:30, before the range.
    let partial = report(
        &db,
        org,
        "since => '2026-03-13T18:00:00Z', until => '2026-04-01T00:00:00+05:30', \
         granularity => 'day'",
    )
    .await;
    assert_eq!(partial.as_array().unwrap().len(), 1, "{partial}");
    assert_eq!(partial[0]["bucket_start"], "2026-03-13T18:30:00+00:00");
    assert_eq!(partial[0]["amounts"], json!({"tokens": "506"}));

    // Keyset pages: one row, then the rest after it.
    let first = report(
        &db,
        org,
        "since => '2026-03-13T00:00:00Z', until => '2026-03-14T00:00:00Z', \
         granularity => 'hour', group_by => '{model,user}', metrics => '{tokens}', max_rows => 1",
    )
    .await;
    assert_eq!(first.as_array().unwrap().len(), 1);
    let rest: Value = db
        .query_one(
            "select tenancy_usage_report(org_id => $1, since => '2026-03-13T00:00:00Z', \
             until => '2026-03-14T00:00:00Z', granularity => 'hour', group_by => '{model,user}', \
             metrics => '{tokens}', after => $2)",
            &[&org, &first[0]],
        )
        .await
        .unwrap()
        .get(0);
    let mut pages = first.as_array().unwrap().clone();
    pages.extend(rest.as_array().unwrap().iter().cloned());
    assert_eq!(Value::Array(pages), hours, "two pages = one");

    // Bad arguments name themselves.
    let bad = db
        .query_one(
            "select tenancy_usage_report(org_id => $1, since => '2026-03-13', \
             until => '2026-03-14', granularity => 'week')",
            &[&org],
        )
        .await;
    assert_code(bad, SqlState::INVALID_PARAMETER_VALUE, "a week");
}

#[tokio::test]
async fn another_org_and_a_lower_role_read_nothing_of_others() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let w = world(&db).await;
    let orgless = usage(
        w.org_a,
        None,
        "m",
        at("2026-03-14T12:00:00Z"),
        7,
        Some("0.1"),
    );
    record(&db, &[orgless]).await;
    let events_as = async |conn: &mut Client, actor: Actor| {
        call_as(
            conn,
            actor,
            "select tenancy_usage_events(org_id => $1)",
            &[&w.org_a],
        )
        .await
    };
    // Admins and owners: every event; members and viewers: their own and
    // those without a user.
    for (who, n) in [
        (w.owner_a, 5),
        (w.admin_a, 5),
        (w.member_a, 2),
        (w.viewer_a, 2),
    ] {
        let events = events_as(&mut conn, Actor::User(who)).await.unwrap();
        let events = events.as_array().unwrap();
        assert_eq!(events.len(), n, "{who}");
        if n == 2 {
            for e in events {
                assert!(
                    e["user_id"].is_null() || e["user_id"] == json!(who),
                    "{who} reads only its own: {e}"
                );
            }
        }
    }
    assert_denied(
        events_as(&mut conn, Actor::User(w.owner_b)).await,
        "another org",
    );
    assert_denied(events_as(&mut conn, Actor::Anon).await, "anon");

    // One event by id: the owner's, read by the member: nothing.
    let owners: Uuid = db
        .query_one(
            "select id from usage_events where organization_id = $1 and user_id = $2",
            &[&w.org_a, &w.owner_a],
        )
        .await
        .unwrap()
        .get(0);
    let one = "select tenancy_usage_event(org_id => $1, event_id => $2)";
    assert_eq!(
        call_as(
            &mut conn,
            Actor::User(w.member_a),
            one,
            &[&w.org_a, &owners]
        )
        .await
        .unwrap(),
        json!([])
    );
    assert_eq!(
        call_as(&mut conn, Actor::User(w.admin_a), one, &[&w.org_a, &owners])
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_denied(
        call_as(&mut conn, Actor::User(w.owner_b), one, &[&w.org_a, &owners]).await,
        "another org's event",
    );

    // Reports: totals for any member; per user only admins, or oneself.
    let range = "since => '2026-03-01', until => '2026-04-01', granularity => 'month'";
    let by_user =
        format!("select tenancy_usage_report(org_id => $1, {range}, group_by => '{{user}}')");
    let own = format!(
        "select tenancy_usage_report(org_id => $1, {range}, group_by => '{{user}}', user_ids => array[$2::uuid])"
    );
    let totals = format!("select tenancy_usage_report(org_id => $1, {range})");
    assert_denied(
        call_as(&mut conn, Actor::User(w.member_a), &by_user, &[&w.org_a]).await,
        "a member per user",
    );
    assert_denied(
        call_as(
            &mut conn,
            Actor::User(w.viewer_a),
            &own,
            &[&w.org_a, &w.owner_a],
        )
        .await,
        "a viewer reading the owner's",
    );
    let mine = call_as(
        &mut conn,
        Actor::User(w.member_a),
        &own,
        &[&w.org_a, &w.member_a],
    )
    .await
    .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["user_id"], json!(w.member_a));
    let all = call_as(&mut conn, Actor::User(w.admin_a), &by_user, &[&w.org_a])
        .await
        .unwrap();
    let mut users: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["user_id"].clone())
        .collect();
    users.sort_by_key(Value::to_string);
    let mut expected: Vec<Value> = [w.owner_a, w.admin_a, w.member_a, w.viewer_a]
        .iter()
        .map(|u| json!(u))
        .chain([Value::Null])
        .collect();
    expected.sort_by_key(Value::to_string);
    assert_eq!(
        users, expected,
        "every member's row and the org-wide one: {all}"
    );
    let org_totals = call_as(&mut conn, Actor::User(w.viewer_a), &totals, &[&w.org_a])
        .await
        .unwrap();
    assert_eq!(org_totals.as_array().unwrap().len(), 1);
    for sql in [&by_user, &totals] {
        assert_denied(
            call_as(&mut conn, Actor::User(w.owner_b), sql, &[&w.org_a]).await,
            "another org's report",
        );
    }
    let costs =
        format!("select tenancy_usage_costs(org_id => $1, {range}, group_by => '{{user}}')");
    assert_denied(
        call_as(&mut conn, Actor::User(w.member_a), &costs, &[&w.org_a]).await,
        "a member's token rows per user",
    );
    assert_denied(
        call_as(&mut conn, Actor::User(w.owner_b), &costs, &[&w.org_a]).await,
        "another org's token rows",
    );

    // The rollup tables under the same rule.
    for table in [
        "usage_rollups",
        "usage_token_rollups",
        "usage_rollups_periods",
    ] {
        let total = visible(&mut conn, Actor::Service, table, w.org_a)
            .await
            .unwrap();
        let own: i64 = db
            .query_one(
                &format!(
                    "select count(*) from {table} where organization_id = $1 \
                     and user_id in ($2, '00000000-0000-0000-0000-000000000000')"
                ),
                &[&w.org_a, &w.member_a],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            own < total,
            "positive control: others' rows exist in {table}"
        );
        assert_eq!(
            visible(&mut conn, Actor::User(w.admin_a), table, w.org_a)
                .await
                .unwrap(),
            total
        );
        assert_eq!(
            visible(&mut conn, Actor::User(w.member_a), table, w.org_a)
                .await
                .unwrap(),
            own
        );
        assert_eq!(
            visible(&mut conn, Actor::User(w.owner_b), table, w.org_a)
                .await
                .unwrap(),
            0
        );
        assert_denied(
            visible(&mut conn, Actor::Anon, table, w.org_a).await,
            "anon",
        );
    }
    // Service-only tables and functions: an owner's JWT gets 42501.
    let owner = Actor::User(w.owner_a);
    for sql in [
        "select count(*)::int::text::jsonb from public.billing_customers",
        "select count(*)::int::text::jsonb from public.usage_export_batches",
        "select count(*)::int::text::jsonb from public.usage_export_marks",
        "select count(*)::int::text::jsonb from public.usage_export_remainders",
        "select count(*)::int::text::jsonb from public.usage_export_meters",
        "select count(*)::int::text::jsonb from tenancy.usage_event_ids",
        "select count(*)::int::text::jsonb from tenancy.usage_events_2026_03",
        "select tenancy_reconcile_rollups($1, '2026-03-01', '2026-04-01')",
        "select tenancy_repair_rollups($1, '2026-03-01', '2026-04-01')",
        "select tenancy_set_billing_customer(org_id => $1, stripe_customer_id => 'cus_x')",
        "select tenancy_billing_customer($1)",
        "select tenancy_export_claim('m', 'tokens', 1, now(), now(), 10) where $1::uuid is not null",
        "select tenancy_export_ack('m', 1, now()) where $1::uuid is not null",
        "select tenancy_drop_usage_events('2000-01-01') where $1::uuid is not null",
        "select tenancy_create_usage_partitions(now(), 1) where $1::uuid is not null",
    ] {
        let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] =
            if sql.contains("$1") { &[&w.org_a] } else { &[] };
        assert_denied(call_as(&mut conn, owner, sql, params).await, sql);
    }
}

#[tokio::test]
async fn injected_rollup_drift_is_found_and_repaired() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, owner) = org_in(&db, "UTC").await;
    record(
        &db,
        &[
            usage(
                org,
                Some(owner),
                "a",
                at("2026-03-14T10:10:00Z"),
                10,
                Some("1.25"),
            ),
            usage(org, Some(owner), "a", at("2026-03-14T10:20:00Z"), 20, None),
            usage(org, None, "b", at("2026-03-14T11:20:00Z"), 5, None),
        ],
    )
    .await;
    let range = "'2026-03-14T00:00:00Z', '2026-03-15T00:00:00Z'";
    let reconcile = format!("select tenancy_reconcile_rollups($1, {range})");
    let before = report(
        &db,
        org,
        "since => '2026-03-14', until => '2026-03-15', granularity => 'day'",
    )
    .await;
    assert_eq!(
        db.query_one(&reconcile, &[&org])
            .await
            .unwrap()
            .get::<_, Value>(0),
        json!([])
    );

    db.batch_execute(&format!(
        "update usage_rollups set amount = amount + 5 where organization_id = '{org}' and metric = 'tokens' and model = 'a'; \
         delete from usage_rollups where organization_id = '{org}' and model = 'b'; \
         insert into usage_rollups values ('{org}', '2026-03-14T12:00:00Z', '{NIL}', 'x', 'y', 'z', 'ads', 3, 1);"
    ))
    .await
    .unwrap();
    // The period rollups are derived: corrupted too, the repair rebuilds them.
    db.execute(
        "update usage_rollups_periods set amount = amount + 100 where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap();
    let drift: Value = db.query_one(&reconcile, &[&org]).await.unwrap().get(0);
    let got: Vec<(String, String, String, String)> = drift
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["bucket_start"].as_str().unwrap().to_owned(),
                d["metric"].as_str().unwrap().to_owned(),
                d["counted"].as_str().unwrap().to_owned(),
                d["recomputed"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "2026-03-14T10:00:00+00:00".into(),
                "tokens".into(),
                "41".into(),
                "36".into()
            ),
            (
                "2026-03-14T11:00:00+00:00".into(),
                "tokens".into(),
                "0".into(),
                "8".into()
            ),
            (
                "2026-03-14T12:00:00+00:00".into(),
                "ads".into(),
                "3".into(),
                "0".into()
            ),
        ],
        "exactly the injected drift"
    );
    let repaired: Value = db
        .query_one(
            &format!("select tenancy_repair_rollups($1, {range})"),
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(repaired, drift, "the repair reports what it corrected");
    assert_eq!(
        db.query_one(&reconcile, &[&org])
            .await
            .unwrap()
            .get::<_, Value>(0),
        json!([])
    );
    assert_eq!(
        report(
            &db,
            org,
            "since => '2026-03-14', until => '2026-03-15', granularity => 'day'"
        )
        .await,
        before
    );
    let missing = db
        .query_one(
            &format!("select tenancy_repair_rollups($1, {range})"),
            &[&Uuid::new_v4()],
        )
        .await;
    assert_code(missing, SqlState::NO_DATA_FOUND, "an unknown organization");
}

/// `tenancy_export_claim` for `meter` (cost in cents), up to `up_to`.
async fn claim(db: &Client, meter: &str, up_to: &str) -> Value {
    db.query_one(
        "select tenancy_export_claim($1, 'cost_usd', 100, $2::text::timestamptz, $2::text::timestamptz, 1000)",
        &[&meter, &up_to],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn the_export_claim_is_exactly_once_across_a_crash() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (org, owner) = org_in(&db, "UTC").await;
    let meter = format!("cost_cents_{}", Uuid::new_v4().simple());
    db.execute(
        "select tenancy_set_billing_customer(org_id => $1, stripe_customer_id => 'cus_TEST_1')",
        &[&org],
    )
    .await
    .unwrap();
    record(
        &db,
        &[
            usage(
                org,
                Some(owner),
                "a",
                at("2026-03-14T10:10:00Z"),
                1,
                Some("0.015"),
            ),
            usage(org, None, "a", at("2026-03-14T10:50:00Z"), 1, Some("0.015")),
            usage(
                org,
                Some(owner),
                "a",
                at("2026-03-14T11:05:00Z"),
                1,
                Some("0.004"),
            ),
            // Still open at the claim: not exported yet.
            usage(
                org,
                Some(owner),
                "a",
                at("2026-03-14T12:05:00Z"),
                1,
                Some("1"),
            ),
        ],
    )
    .await;
    let up_to = "2026-03-14T12:30:00Z";
    let first = claim(&db, &meter, up_to).await;
    let items = first[0]["items"].as_array().unwrap();
    let mine: Vec<(&str, &str, &str, i64)> = items
        .iter()
        .filter(|i| i["org"] == json!(org))
        .map(|i| {
            (
                i["amount"].as_str().unwrap(),
                i["value"].as_str().unwrap(),
                i["carried"].as_str().unwrap(),
                i["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        vec![("0.03", "3", "0", 0), ("0.004", "0", "0.4", 0)],
        "whole cents, the fraction carried"
    );
    assert_eq!(first[0]["id"], 1);

    // A crash before the ack: the same batch again, from another
    // connection too, and concurrently.
    let other = pg.superuser().await;
    let (a, b) = tokio::join!(claim(&db, &meter, up_to), claim(&other, &meter, up_to));
    assert_eq!(a, first, "redelivered unchanged");
    assert_eq!(b, first);
    let ack = "select tenancy_export_ack($1, 1, now())";
    assert_eq!(
        db.query_one(ack, &[&meter])
            .await
            .unwrap()
            .get::<_, Value>(0),
        json!({"acked": true})
    );
    assert_eq!(
        db.query_one(ack, &[&meter])
            .await
            .unwrap()
            .get::<_, Value>(0),
        json!({"acked": false})
    );
    assert_code(
        db.query_one("select tenancy_export_ack($1, 9, now())", &[&meter])
            .await,
        SqlState::NO_DATA_FOUND,
        "a batch never claimed",
    );
    let after_ack = claim(&db, &meter, up_to).await;
    assert!(
        after_ack.as_array().unwrap().iter().all(|b| b["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["org"] != json!(org))),
        "nothing of it twice: {after_ack}"
    );
    if let Some(b) = after_ack.as_array().unwrap().first() {
        db.execute(
            "select tenancy_export_ack($1, $2, now())",
            &[&meter, &b["id"].as_i64()],
        )
        .await
        .unwrap();
    }

    // A late event in an exported hour: a new delta (seq 1), carrying on.
    record(
        &db,
        &[usage(
            org,
            None,
            "a",
            at("2026-03-14T10:59:00Z"),
            1,
            Some("0.007"),
        )],
    )
    .await;
    let late = claim(&db, &meter, up_to).await;
    let item = late[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["org"] == json!(org))
        .unwrap()
        .clone();
    assert_eq!(
        (
            &item["amount"],
            &item["value"],
            &item["carried"],
            &item["seq"]
        ),
        (&json!("0.007"), &json!("1"), &json!("0.1"), &json!(1))
    );
    db.execute(
        "select tenancy_export_ack($1, $2, now())",
        &[&meter, &late[0]["id"].as_i64()],
    )
    .await
    .unwrap();
    // Everything exported once: 4 cents of 4.1, 0.1 carried.
    let exported: String = db
        .query_one(
            "select sum(exported)::text from usage_export_marks where meter = $1 and organization_id = $2",
            &[&meter, &org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        exported.parse::<Decimal>().unwrap(),
        "0.041".parse().unwrap()
    );
}

#[tokio::test]
async fn a_month_dropped_from_the_log_still_reports() {
    let Some(pg) = Cluster::shared() else { return };
    let db = private_db(pg, "retention").await;
    let (org, owner) = org_in(&db, "UTC").await;
    let january = usage(
        org,
        Some(owner),
        "a",
        at("2026-01-10T10:00:00Z"),
        10,
        Some("0.5"),
    );
    record(
        &db,
        &[
            january.clone(),
            usage(org, None, "a", at("2026-01-31T23:59:59Z"), 20, None),
            usage(org, Some(owner), "a", at("2026-02-03T10:00:00Z"), 30, None),
        ],
    )
    .await;
    let range = "since => '2026-01-01', until => '2026-03-01', granularity => 'month', group_by => '{metric}'";
    let before = report(&db, org, range).await;
    assert_eq!(before.as_array().unwrap().len(), 3, "{before}");

    let dropped: Value = db
        .query_one(
            "select tenancy_drop_usage_events('2026-02-15T00:00:00Z')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dropped["dropped_before"], "2026-02-01T00:00:00+00:00");
    assert_eq!(dropped["events"], 2);
    assert_eq!(dropped["partitions"], json!(["usage_events_2026_01"]));

    assert_eq!(report(&db, org, range).await, before, "rollups stay");
    let events: Value = db
        .query_one(
            "select tenancy_usage_events(org_id => $1, since => '2026-01-01', until => '2026-03-01')",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events.as_array().unwrap().len(), 1, "February's event only");
    // A retry of a dropped event still counts once.
    assert_eq!(record(&db, &[january]).await["duplicates"], 1);
    assert_eq!(report(&db, org, range).await, before);
    assert_code(
        db.query_one(
            "select tenancy_reconcile_rollups($1, '2026-01-01', '2026-03-01')",
            &[&org],
        )
        .await,
        SqlState::INVALID_PARAMETER_VALUE,
        "reconciling a dropped month",
    );
    let february: Value = db
        .query_one(
            "select tenancy_reconcile_rollups($1, '2026-02-01', '2026-03-01')",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(february, json!([]));
}

#[tokio::test]
async fn the_conversion_keeps_every_row_and_the_migration_reapplies_cleanly() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg
        .create_database(&format!("partition_{}", Uuid::new_v4().simple()))
        .await;
    db.batch_execute(&pg::bootstrap_sql()).await.unwrap();
    let files = pg::migrations();
    let (before14, from14): (Vec<_>, Vec<_>) = files
        .iter()
        .cloned()
        .partition(|(name, _)| name.as_str() < "20261206001300");
    assert!(!from14.is_empty());
    for (_, sql) in &before14 {
        db.batch_execute(sql).await.unwrap();
    }
    // Version 13's event log, with rows in two months (its record function
    // takes the old keys only).
    let (org, owner) = org_in(&db, "Asia/Kolkata").await;
    let old = |at: &str, tokens: i64| {
        json!({"id": Uuid::now_v7(), "organization_id": org, "user_id": owner,
               "provider": "p", "model": "m", "operation": "o", "input_tokens": tokens,
               "cached_input_tokens": 0, "output_tokens": 0, "quantities": {}, "cost_usd": null,
               "occurred_at": at, "metadata": null, "amounts": {"tokens": tokens.to_string()},
               "daily_start": "2026-02-01", "monthly_start": "2026-02-01"})
    };
    let rows = json!([
        old("2026-02-10T10:00:00Z", 5),
        old("2026-02-10T10:40:00Z", 6),
        old("2026-03-01T00:10:00Z", 7)
    ]);
    db.query_one("select tenancy_record_usage($1)", &[&rows])
        .await
        .unwrap();
    let snapshot = "select string_agg(format('%s %s %s %s', organization_id, id, occurred_at, amounts), ',' order by id) from usage_events";
    let kept: String = db.query_one(snapshot, &[]).await.unwrap().get(0);

    for (name, sql) in &from14 {
        db.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let relkind: i8 = db
        .query_one(
            "select relkind::\"char\" from pg_class where oid = 'public.usage_events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(relkind as u8, b'p', "partitioned");
    assert_eq!(
        db.query_one(snapshot, &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        kept,
        "every row kept"
    );
    let rolled = rollups(&db, org).await;
    assert_eq!(
        rolled.values().map(|v| v.0).sum::<Decimal>(),
        Decimal::from(18),
        "rollups built from the old rows"
    );
    assert_eq!(
        rolled.keys().next().unwrap().0,
        at("2026-02-10T09:30:00Z"),
        "in the organization's hours"
    );
    let checks: (bool, bool, bool, i64, i64) = {
        let r = db
            .query_one(
                "select has_table_privilege('authenticated', 'public.usage_events', 'select'), \
                 has_table_privilege('authenticated', 'public.usage_events', 'insert'), \
                 has_table_privilege('anon', 'public.usage_events', 'select'), \
                 (select count(*) from pg_trigger where tgrelid = 'public.usage_events'::regclass and not tgisinternal), \
                 (select count(*) from pg_policy where polrelid = 'public.usage_events'::regclass)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
    };
    assert_eq!(
        checks,
        (true, false, false, 2, 1),
        "grants, both triggers, the policy"
    );

    // Every file again: nothing changes, nothing counts twice.
    for (name, sql) in &files {
        db.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("again {name}: {e}"));
    }
    assert_eq!(
        db.query_one(snapshot, &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        kept
    );
    assert_eq!(rollups(&db, org).await, rolled);
    // A retry of an old event is a duplicate; a new one in a month with no
    // partition creates it.
    assert_eq!(
        db.query_one("select tenancy_record_usage($1)", &[&json!([rows[0]])])
            .await
            .unwrap()
            .get::<_, Value>(0)["duplicates"],
        1
    );
    let future = usage(org, None, "m", at("2031-07-04T00:00:00Z"), 1, None);
    assert_eq!(record(&db, &[future]).await["inserted"], 1);
    let made: bool = db
        .query_one(
            "select to_regclass('tenancy.usage_events_2031_07') is not null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(made, "the record path made the month's partition");
}

#[tokio::test]
async fn partitions_ahead_are_made_once() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let first: Value = db
        .query_one(
            "select tenancy_create_usage_partitions('2040-01-15T00:00:00Z', 3)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let again: Value = db
        .query_one(
            "select tenancy_create_usage_partitions('2040-01-15T00:00:00Z', 3)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(first["created"].as_array().unwrap().len() <= 3, "{first}");
    assert_eq!(again, json!({"created": []}));
    let bounds: (DateTime<Utc>, DateTime<Utc>) = {
        let r = db
            .query_one(
                "select from_at, to_at from tenancy.usage_partitions() where name = 'usage_events_2040_02'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        bounds,
        (
            Utc.with_ymd_and_hms(2040, 2, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2040, 3, 1, 0, 0, 0).unwrap()
        )
    );
}

/// Every token rollup row of `org`, as JSON, in key order.
async fn token_rollups(db: &Client, org: Uuid) -> Value {
    db.query_one(
        "select coalesce(jsonb_agg(to_jsonb(t) order by t.bucket_start, t.user_id, t.provider, \
         t.model, t.operation, t.cost_source), '[]') from usage_token_rollups t \
         where t.organization_id = $1",
        &[&org],
    )
    .await
    .unwrap()
    .get(0)
}

/// The token rollup rows of `org` whose bucket starts at `bucket`.
fn rows_at(rows: &Value, bucket: &str) -> Vec<Value> {
    let bucket = at(bucket);
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            DateTime::parse_from_rfc3339(r["bucket_start"].as_str().unwrap()).unwrap() == bucket
        })
        .cloned()
        .collect()
}

/// A JSON number (a `numeric` column of `to_jsonb`) as a decimal.
fn number(v: &Value) -> Decimal {
    v.to_string().parse().unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// A drift entry's bucket, user, model, metric, amounts (counted,
/// recomputed) and events (counted, recomputed).
type Drift = (
    String,
    Option<Uuid>,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

/// The fields of each drift entry that say what drifted and by how much.
fn drift_summary(drift: &Value) -> Vec<Drift> {
    drift
        .as_array()
        .unwrap_or_else(|| panic!("a drift list: {drift}"))
        .iter()
        .map(|d| {
            (
                d["bucket_start"].as_str().unwrap().to_owned(),
                d["user_id"].as_str().map(|u| u.parse().unwrap()),
                d["model"].as_str().unwrap().to_owned(),
                d["metric"].as_str().unwrap().to_owned(),
                d["counted"].as_str().unwrap().to_owned(),
                d["recomputed"].as_str().unwrap().to_owned(),
                d["counted_events"].as_i64().unwrap(),
                d["recomputed_events"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Drift in the metric rollups (an event count alone, a cost amount) and in
/// the token rollups (a token class and the cost raised, a row deleted, a
/// row with no events), injected with SQL into `[since, until)`, beside
/// drift just outside it (the hour before `since`, the hour starting at
/// `until`) and the same drift in another organization:
/// - a user JWT, the organization's own owner's or another organization's,
///   gets 42501 from both functions, and its repair changed nothing;
/// - `tenancy_reconcile_rollups` (as `service_role`) reports exactly the
///   metric drift in the range: not the hours outside it, not the token
///   rollups (it compares metric rollups only);
/// - `tenancy_repair_rollups` returns that drift and restores every rollup
///   in the range (token rows included) to what was recorded, leaving the
///   hours outside the range and the other organization as they were; a
///   second reconcile and a second repair report nothing;
/// - the day and hour reports and the costs read the recorded sums again.
#[tokio::test]
async fn rollup_repair_restores_metric_and_token_rollups_in_its_range_only() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let (org, owner) = org_in(&db, "UTC").await;
    let (other, other_owner) = org_in(&db, "UTC").await;
    let in_range = |org: Uuid, owner: Uuid| {
        [
            usage(
                org,
                Some(owner),
                "a",
                at("2026-03-14T10:10:00Z"),
                10,
                Some("1.25"),
            ),
            usage(org, Some(owner), "a", at("2026-03-14T10:20:00Z"), 20, None),
            usage(org, None, "b", at("2026-03-14T11:20:00Z"), 5, Some("0.5")),
        ]
    };
    record(&db, &in_range(org, owner)).await;
    record(&db, &in_range(other, other_owner)).await;
    record(
        &db,
        &[
            usage(org, Some(owner), "a", at("2026-03-13T23:30:00Z"), 4, None),
            usage(org, Some(owner), "a", at("2026-03-15T00:00:00Z"), 6, None),
        ],
    )
    .await;

    let since_until = "'2026-03-14T00:00:00Z', '2026-03-15T00:00:00Z'";
    let reconcile = format!("select tenancy_reconcile_rollups($1, {since_until})");
    let repair = format!("select tenancy_repair_rollups($1, {since_until})");
    let day = "since => '2026-03-14', until => '2026-03-15', granularity => 'day', \
               group_by => '{model}'";
    let hour = "since => '2026-03-14', until => '2026-03-15', granularity => 'hour', \
                group_by => '{user,model}'";
    let costs = |org: Uuid| {
        let db = &db;
        async move {
            db.query_one(
                "select tenancy_usage_costs(org_id => $1, since => '2026-03-14', \
                 until => '2026-03-15', granularity => 'hour', group_by => '{user}')",
                &[&org],
            )
            .await
            .unwrap()
            .get::<_, Value>(0)
        }
    };
    let metric_truth = rollups(&db, org).await;
    let token_truth = token_rollups(&db, org).await;
    let (day_truth, hour_truth, costs_truth) = (
        report(&db, org, day).await,
        report(&db, org, hour).await,
        costs(org).await,
    );
    assert_eq!(rows_at(&token_truth, "2026-03-14T10:00:00Z").len(), 2);
    assert_eq!(rows_at(&token_truth, "2026-03-14T11:00:00Z").len(), 1);

    let bucket =
        |org: Uuid, at: &str| format!("organization_id = '{org}' and bucket_start = '{at}'");
    for o in [org, other] {
        db.batch_execute(&format!(
            "update usage_rollups set events = events + 2 \
               where {} and model = 'a' and metric = 'tokens'; \
             update usage_rollups set amount = amount + 0.25 \
               where {} and model = 'b' and metric = 'cost_usd'; \
             update usage_token_rollups set input_tokens = input_tokens + 1000, \
               cost_usd = cost_usd + 9 where {} and model = 'a' and cost_source = 'price_table'; \
             delete from usage_token_rollups where {}; \
             insert into usage_token_rollups (organization_id, bucket_start, user_id, provider, \
               model, operation, cost_source, price_provider, price_model, \
               price_effective_from, price_table, output_tokens, events) \
               values ('{o}', '2026-03-14T12:00:00Z', '{NIL}', 'x', 'ghost', 'y', '', '', '', \
               '-infinity', '', 77, 1);",
            bucket(o, "2026-03-14T10:00:00Z"),
            bucket(o, "2026-03-14T11:00:00Z"),
            bucket(o, "2026-03-14T10:00:00Z"),
            bucket(o, "2026-03-14T11:00:00Z"),
        ))
        .await
        .unwrap();
    }
    // The day's period rollups too: the repair rebuilds them from the hours.
    db.execute(
        "update usage_rollups_periods set amount = amount + 100 \
         where organization_id = $1 and period = 'day' and start = '2026-03-14'",
        &[&org],
    )
    .await
    .unwrap();
    for outside in ["2026-03-13T23:00:00Z", "2026-03-15T00:00:00Z"] {
        db.batch_execute(&format!(
            "update usage_rollups set amount = amount + 1 where {0} and metric = 'tokens'; \
             update usage_token_rollups set output_tokens = output_tokens + 1 where {0};",
            bucket(org, outside),
        ))
        .await
        .unwrap();
    }
    let injected = vec![
        (
            "2026-03-14T10:00:00+00:00".to_owned(),
            Some(owner),
            "a".to_owned(),
            "tokens".to_owned(),
            "36".to_owned(),
            "36".to_owned(),
            4,
            2,
        ),
        (
            "2026-03-14T11:00:00+00:00".to_owned(),
            None,
            "b".to_owned(),
            "cost_usd".to_owned(),
            "0.75".to_owned(),
            "0.5".to_owned(),
            1,
            1,
        ),
    ];
    let other_injected: Vec<_> = injected
        .iter()
        .cloned()
        .map(|mut d| {
            if d.1 == Some(owner) {
                d.1 = Some(other_owner);
            }
            d
        })
        .collect();

    // Every read shows the drift.
    assert_ne!(report(&db, org, day).await, day_truth);
    assert_ne!(report(&db, org, hour).await, hour_truth);
    assert_ne!(costs(org).await, costs_truth);

    // A user JWT can neither look nor repair: its own org's owner, nor
    // another org's owner.
    for (actor, target) in [(owner, org), (other_owner, org), (owner, other)] {
        for sql in [&reconcile, &repair] {
            assert_denied(
                call_as(&mut conn, Actor::User(actor), sql, &[&target]).await,
                &format!("{sql} by {actor} for {target}"),
            );
        }
    }
    let drift = call_as(&mut conn, Actor::Service, &reconcile, &[&org])
        .await
        .unwrap();
    assert_eq!(
        drift_summary(&drift),
        injected,
        "exactly the drift in range: {drift}"
    );
    assert_eq!(
        drift_summary(
            &call_as(&mut conn, Actor::Service, &reconcile, &[&other])
                .await
                .unwrap()
        ),
        other_injected
    );
    let whole = "select tenancy_reconcile_rollups($1, '2026-03-13', '2026-03-16')";
    let buckets: Vec<_> = drift_summary(&db.query_one(whole, &[&org]).await.unwrap().get(0))
        .into_iter()
        .map(|d| (d.0, d.4, d.5))
        .collect();
    assert_eq!(
        buckets,
        [
            (
                "2026-03-13T23:00:00+00:00".to_owned(),
                "8".to_owned(),
                "7".to_owned()
            ),
            (
                "2026-03-14T10:00:00+00:00".to_owned(),
                "36".to_owned(),
                "36".to_owned()
            ),
            (
                "2026-03-14T11:00:00+00:00".to_owned(),
                "0.75".to_owned(),
                "0.5".to_owned()
            ),
            (
                "2026-03-15T00:00:00+00:00".to_owned(),
                "10".to_owned(),
                "9".to_owned()
            ),
        ],
        "the drift outside the range is there to be left alone"
    );

    let repaired = call_as(&mut conn, Actor::Service, &repair, &[&org])
        .await
        .unwrap();
    assert_eq!(repaired, drift, "the repair returns what it corrected");
    assert_eq!(
        call_as(&mut conn, Actor::Service, &reconcile, &[&org])
            .await
            .unwrap(),
        json!([])
    );
    assert_eq!(
        call_as(&mut conn, Actor::Service, &repair, &[&org])
            .await
            .unwrap(),
        json!([]),
        "a second repair finds nothing"
    );

    // In range: the truth, token rows included; outside: still drifted.
    let metric_now = rollups(&db, org).await;
    let mut metric_expected = metric_truth.clone();
    for (key, value) in metric_expected.iter_mut() {
        let b = key.0.to_rfc3339();
        if (b.starts_with("2026-03-13T23") || b.starts_with("2026-03-15T00")) && key.3 == "tokens" {
            value.0 += Decimal::ONE;
        }
    }
    assert_eq!(metric_now, metric_expected);
    let tokens_now = token_rollups(&db, org).await;
    for inside in [
        "2026-03-14T10:00:00Z",
        "2026-03-14T11:00:00Z",
        "2026-03-14T12:00:00Z",
    ] {
        assert_eq!(
            rows_at(&tokens_now, inside),
            rows_at(&token_truth, inside),
            "the token rollups of {inside}"
        );
    }
    for outside in ["2026-03-13T23:00:00Z", "2026-03-15T00:00:00Z"] {
        let now = rows_at(&tokens_now, outside);
        let truth = rows_at(&token_truth, outside);
        assert_eq!(now.len(), 1, "{outside}");
        assert_eq!(
            number(&now[0]["output_tokens"]),
            number(&truth[0]["output_tokens"]) + Decimal::ONE,
            "{outside} is outside the range: left as it was"
        );
    }
    assert_eq!(report(&db, org, day).await, day_truth);
    assert_eq!(report(&db, org, hour).await, hour_truth);
    assert_eq!(costs(org).await, costs_truth);

    // The other organization's drift is untouched.
    assert_eq!(
        drift_summary(
            &call_as(&mut conn, Actor::Service, &reconcile, &[&other])
                .await
                .unwrap()
        ),
        other_injected
    );
    assert_ne!(
        token_rollups(&db, other).await,
        json!([]),
        "the other organization has token rollups"
    );
    let others = token_rollups(&db, other).await;
    assert_eq!(
        rows_at(&others, "2026-03-14T11:00:00Z"),
        Vec::<Value>::new()
    );
    assert_eq!(rows_at(&others, "2026-03-14T12:00:00Z").len(), 1);
}

/// A negative, null or non-numeric amount refuses the whole batch with
/// `22023`, also on an organization whose counters it would take below
/// zero (where the counters' check used to answer `23514` first).
#[tokio::test]
async fn a_bad_amount_is_22023_before_anything_is_written() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    for bad in [
        json!("-1"),
        json!(-1),
        Value::Null,
        json!("NaN"),
        json!("ten"),
        json!(true),
    ] {
        let good = crate::support::event(org, Some(owner), json!({"tokens": "5"}));
        let event = crate::support::event(org, None, json!({"tokens": bad}));
        let result = db
            .query_one("select tenancy_record_usage($1)", &[&json!([good, event])])
            .await;
        let said = crate::support::message(&result).unwrap_or_default();
        assert_code(result, SqlState::INVALID_PARAMETER_VALUE, &format!("{bad}"));
        assert!(
            said.contains("amounts must be zero or more"),
            "{bad}: {said}"
        );
    }
}
