//! Recording usage (what a batch counts, once, all or nothing, and its
//! race with an organization delete), usage limits' columns, the usage
//! history, and alert claims.

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tenancy::{MetricKey, OrgId, UsageEvent, UserId};
use tenancy_testkit::pg::{self, Cluster, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::support::{
    History, RACE_LIMIT, assert_code, assert_waits_for, backend_pid, claim_alert, counter,
    create_org, date, day, event, history_on, id_of, library_event, message, month, noon,
    put_limit, record, try_record, usage_rows,
};

// ---- record -----------------------------------------------------------------------

#[tokio::test]
async fn record_counts_each_event_once() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    let e1 = event(org, Some(user), json!({"tokens": 30, "cost_usd": "0.25"}));
    let e2 = event(org, None, json!({"tokens": "12", "ads_created": 1}));
    // An AI call as the library sends it: 10 + 5 + 20 tokens, a quantity
    // named `tokens` adding 1, and its cost.
    let e3 = library_event(
        UsageEvent::new(OrgId::from(org))
            .ai_call("openai", "gpt-4o", "ad_copy")
            .tokens(10, 5, 20)
            .quantity(MetricKey::TOKENS, dec!(1))
            .cost_usd(dec!(0.01)),
    );
    assert_eq!(e3["amounts"], json!({"tokens": "36", "cost_usd": "0.01"}));
    let batch = json!([e1.clone(), e2, e1.clone(), e3.clone()]);
    assert_eq!(
        record(&db, &batch).await,
        json!({"inserted": 3, "duplicates": 1})
    );
    assert_eq!(
        record(&db, &batch).await,
        json!({"inserted": 0, "duplicates": 4})
    );
    assert_eq!(
        record(&db, &json!([])).await,
        json!({"inserted": 0, "duplicates": 0})
    );
    for (period, start) in [("daily", day()), ("monthly", month())] {
        let value =
            async |scope: Uuid, metric: &str| counter(&db, org, scope, metric, period, start).await;
        assert_eq!(value(pg::NIL, "tokens").await, "78");
        assert_eq!(value(user, "tokens").await, "30");
        assert_eq!(value(pg::NIL, "cost_usd").await, "0.26");
        assert_eq!(value(user, "cost_usd").await, "0.25");
        assert_eq!(value(pg::NIL, "ads_created").await, "1");
        assert_eq!(value(user, "ads_created").await, "none");
    }
    // Three events; counters: tokens and cost_usd for the org and the user,
    // ads_created for the org, each daily and monthly.
    assert_eq!(usage_rows(&db, org).await, (3, 10));
}

#[tokio::test]
async fn record_stores_the_event_with_its_amounts_and_periods() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    let e = library_event(
        UsageEvent::new(OrgId::from(org))
            .user(UserId::from(user))
            .ai_call("openai", "gpt-4o", "ad_copy")
            .tokens(10, 5, 20)
            .quantity(MetricKey::ADS_CREATED, dec!(1))
            .cost_usd(dec!(0.01))
            .metadata(json!({"request": "r1"})),
    );
    record(&db, &json!([e])).await;
    let stored = db
        .query_one(
            "select provider, model, operation, input_tokens, cached_input_tokens, output_tokens, \
             quantities, cost_usd::text, metadata, occurred_at, amounts, daily_start, monthly_start \
             from usage_events where organization_id = $1 and id = $2",
            &[&org, &id_of(&e)],
        )
        .await
        .unwrap();
    let labels: (String, String, String) = (stored.get(0), stored.get(1), stored.get(2));
    assert_eq!(labels, ("openai".into(), "gpt-4o".into(), "ad_copy".into()));
    let tokens: (i64, i64, i64) = (stored.get(3), stored.get(4), stored.get(5));
    assert_eq!(tokens, (10, 5, 20));
    assert_eq!(stored.get::<_, Value>(6), json!({"ads_created": "1"}));
    assert_eq!(stored.get::<_, String>(7), "0.01");
    assert_eq!(stored.get::<_, Value>(8), json!({"request": "r1"}));
    assert_eq!(stored.get::<_, DateTime<Utc>>(9), noon());
    assert_eq!(
        stored.get::<_, Value>(10),
        json!({"tokens": "35", "cost_usd": "0.01", "ads_created": "1"}),
        "what the event counted, as given"
    );
    assert_eq!(stored.get::<_, NaiveDate>(11), day());
    assert_eq!(stored.get::<_, NaiveDate>(12), month());
}

/// The SQL counts the amounts it is given and derives nothing from the
/// token columns, the cost or the quantities.
#[tokio::test]
async fn record_counts_the_given_amounts_and_nothing_else() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    let mut e = event(org, Some(user), json!({"tokens": 3}));
    e["input_tokens"] = json!(1000);
    e["cost_usd"] = json!("5");
    e["quantities"] = json!({"images": 2});
    assert_eq!(record(&db, &json!([e])).await["inserted"], 1);
    for (period, start) in [("daily", day()), ("monthly", month())] {
        for scope in [pg::NIL, user] {
            assert_eq!(counter(&db, org, scope, "tokens", period, start).await, "3");
            assert_eq!(
                counter(&db, org, scope, "cost_usd", period, start).await,
                "none"
            );
            assert_eq!(
                counter(&db, org, scope, "images", period, start).await,
                "none"
            );
        }
    }
    assert_eq!(usage_rows(&db, org).await, (1, 4));

    // Without `amounts`, an event is stored and counts nothing.
    let mut bare = event(org, Some(user), json!({}));
    bare.as_object_mut().unwrap().remove("amounts");
    bare["input_tokens"] = json!(1000);
    bare["quantities"] = json!({"tokens": 7});
    assert_eq!(record(&db, &json!([bare])).await["inserted"], 1);
    assert_eq!(usage_rows(&db, org).await, (2, 4), "no new counter");
    assert_eq!(
        counter(&db, org, pg::NIL, "tokens", "daily", day()).await,
        "3"
    );
    let stored: Value = db
        .query_one(
            "select amounts from usage_events where organization_id = $1 and id = $2",
            &[&org, &id_of(&bare)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, json!({}));
}

#[tokio::test]
async fn a_bad_batch_changes_nothing() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    record(&db, &json!([event(org, Some(user), json!({"tokens": 5}))])).await;
    let good = || event(org, Some(user), json!({"tokens": 5}));
    let no_org = json!({"id": Uuid::now_v7(), "occurred_at": noon(), "amounts": {},
        "daily_start": day(), "monthly_start": month()});
    let cases = [
        (
            json!([good(), event(org, Some(user), json!({"tokens": -1}))]),
            SqlState::INVALID_PARAMETER_VALUE,
            "a negative amount",
        ),
        (
            json!([good(), event(org, None, json!({"images": "NaN"}))]),
            SqlState::INVALID_PARAMETER_VALUE,
            "a NaN amount",
        ),
        (
            json!([good(), event(org, None, json!({"images": "Infinity"}))]),
            SqlState::INVALID_PARAMETER_VALUE,
            "an infinite amount",
        ),
        (
            json!([good(), event(org, None, json!({"Bad Metric": 1}))]),
            SqlState::CHECK_VIOLATION,
            "a metric breaking the rule",
        ),
        (
            json!([good(), event(Uuid::new_v4(), None, json!({"tokens": 5}))]),
            SqlState::NO_DATA_FOUND,
            "an unknown organization",
        ),
        (
            json!([good(), no_org]),
            SqlState::INVALID_PARAMETER_VALUE,
            "no organization_id",
        ),
        (
            json!({"events": [good()]}),
            SqlState::INVALID_PARAMETER_VALUE,
            "not an array",
        ),
    ];
    for (batch, code, what) in cases {
        assert_code(try_record(&db, &batch).await, code, what);
    }
    assert_eq!(
        usage_rows(&db, org).await,
        (1, 4),
        "all of each batch or none"
    );
    assert_eq!(
        counter(&db, org, pg::NIL, "tokens", "daily", day()).await,
        "5"
    );
}

// ---- record and an organization delete --------------------------------------------------

/// A delete waits for an open record (usage_events has no foreign key; the
/// record locks the organization's row) and then takes its events and
/// counters along. Without amounts no counter is written, so no foreign
/// key check locks the organization: only record's own lock holds the
/// delete back.
#[tokio::test]
async fn a_delete_waits_for_an_open_record_and_takes_its_events() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (a, b) = (pg.superuser().await, pg.superuser().await);
    let (a_pid, b_pid) = (backend_pid(&a).await, backend_pid(&b).await);
    let user = create_user(&db).await;
    for (amounts, counters) in [(json!({"tokens": 7}), 4), (json!({}), 0)] {
        let x = create_org(&db, user).await;
        a.batch_execute("begin").await.unwrap();
        let batch = json!([event(x, Some(user), amounts.clone())]);
        assert_eq!(
            record(&a, &batch).await,
            json!({"inserted": 1, "duplicates": 0})
        );
        assert_eq!(usage_rows(&a, x).await, (1, counters), "{amounts}");
        let params: [&(dyn ToSql + Sync); 1] = [&x];
        let mut delete =
            std::pin::pin!(b.execute("delete from organizations where id = $1", &params));
        let what = format!("the delete after a record of {amounts}");
        assert_waits_for(&mut delete, &db, b_pid, a_pid, &what).await;
        a.batch_execute("commit").await.unwrap();
        let deleted = tokio::time::timeout(RACE_LIMIT, delete)
            .await
            .expect("the delete finishes once the record commits");
        assert_eq!(deleted.unwrap(), 1);
        assert_eq!(
            usage_rows(&db, x).await,
            (0, 0),
            "the committed batch went with its organization ({amounts})"
        );
    }
}

/// A record waits for an open delete of one of its organizations and then
/// fails whole (P0002), storing nothing for any organization.
#[tokio::test]
async fn a_record_waits_for_an_open_delete_and_fails_whole() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (a, b) = (pg.superuser().await, pg.superuser().await);
    let (a_pid, b_pid) = (backend_pid(&a).await, backend_pid(&b).await);
    let user = create_user(&db).await;
    let (y, z) = (create_org(&db, user).await, create_org(&db, user).await);
    record(&db, &json!([event(y, Some(user), json!({"tokens": 5}))])).await;
    b.batch_execute("begin").await.unwrap();
    let deleted = b
        .execute("delete from organizations where id = $1", &[&y])
        .await;
    assert_eq!(deleted.unwrap(), 1);
    let batch = json!([
        event(z, Some(user), json!({"tokens": 3})),
        event(y, Some(user), json!({"tokens": 3})),
    ]);
    let params: [&(dyn ToSql + Sync); 1] = [&batch];
    let mut rec = std::pin::pin!(a.query_one("select tenancy_record_usage($1)", &params));
    assert_waits_for(&mut rec, &db, a_pid, b_pid, "the record after a delete").await;
    b.batch_execute("commit").await.unwrap();
    let res = tokio::time::timeout(RACE_LIMIT, rec)
        .await
        .expect("the record finishes once the delete commits");
    assert_eq!(
        message(&res),
        Some(format!("organization {y} does not exist")),
        "the error names the deleted organization"
    );
    assert_code(
        res,
        SqlState::NO_DATA_FOUND,
        "recording for an organization deleted meanwhile",
    );
    assert_eq!(usage_rows(&db, y).await, (0, 0));
    assert_eq!(
        usage_rows(&db, z).await,
        (0, 0),
        "all of the batch or none: nothing for the live organization either"
    );
    // Positive control: z itself records fine.
    let batch = json!([event(z, Some(user), json!({"tokens": 3}))]);
    assert_eq!(
        record(&a, &batch).await,
        json!({"inserted": 1, "duplicates": 0})
    );
    assert_eq!(usage_rows(&db, z).await, (1, 4));
}

// ---- usage_limits ------------------------------------------------------------------------

#[tokio::test]
async fn usage_limits_accept_the_plans_columns_and_derive_the_rest() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    db.execute(
        "insert into usage_limits (organization_id, user_id, limit_type, limit_value, period) values \
         ($1, null, 'monthly_tokens', 1000000, 'monthly'), ($1, null, 'monthly_cost', 50, 'monthly'), \
         ($1, $2, 'daily_ads', 5, 'daily'), ($1, null, 'daily_images', 10, 'daily')",
        &[&org, &owner],
    )
    .await
    .unwrap();
    let got: Vec<(String, String, String)> = db
        .query(
            "select limit_type, metric, mode from usage_limits where organization_id = $1 order by limit_type",
            &[&org],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want = [
        ("daily_ads", "ads_created", "hard"),
        ("daily_images", "images", "hard"),
        ("monthly_cost", "cost_usd", "hard"),
        ("monthly_tokens", "tokens", "hard"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(got, want);
    // One limit per slot; inconsistent or invalid rows are refused.
    let insert = "insert into usage_limits (organization_id, limit_type, limit_value, period) \
                  values ($1, $2, $3::bigint::numeric, $4)";
    for (limit_type, value, period, code) in [
        ("monthly_tokens", 1, "monthly", SqlState::UNIQUE_VIOLATION), // slot taken
        ("monthly_x", 1, "daily", SqlState::CHECK_VIOLATION),         // period mismatch
        ("weekly_tokens", 1, "daily", SqlState::CHECK_VIOLATION),     // unknown prefix
        ("daily_y", -1, "daily", SqlState::CHECK_VIOLATION),          // negative
    ] {
        let res = db
            .execute(insert, &[&org, &limit_type, &i64::from(value), &period])
            .await;
        assert_code(res, code, &format!("{limit_type} {value} {period}"));
    }
}

#[tokio::test]
async fn put_limit_replaces_its_slot_in_place() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let org = create_org(&db, create_user(&db).await).await;
    put_limit(&db, org, None, "tokens", "monthly", 1000, "hard").await;
    let before = db
        .query_one(
            "select id, created_at from usage_limits where organization_id = $1 and metric = 'tokens'",
            &[&org],
        )
        .await
        .unwrap();
    let row = db
        .query_one(
            "select id, created_at, limit_value::text, mode, limit_type from tenancy_put_limit(\
             limit_id => $1, org_id => $2, metric => 'tokens', period => 'monthly', limit_value => 2000, mode => 'soft')",
            &[&Uuid::now_v7(), &org],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), before.get::<_, Uuid>(0));
    assert_eq!(
        row.get::<_, DateTime<Utc>>(1),
        before.get::<_, DateTime<Utc>>(1)
    );
    assert_eq!(row.get::<_, String>(2), "2000");
    assert_eq!(row.get::<_, String>(3), "soft");
    assert_eq!(row.get::<_, String>(4), "monthly_tokens");
    let count: i64 = db
        .query_one(
            "select count(*) from usage_limits where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "replaced, not added");
    let missing = db
        .query(
            "select * from tenancy_put_limit(limit_id => $1, org_id => $1, metric => 'tokens', period => 'daily', limit_value => 1)",
            &[&Uuid::now_v7()],
        )
        .await;
    assert_code(missing, SqlState::NO_DATA_FOUND, "limit for a missing org");
}

// ---- history ---------------------------------------------------------------------------------

/// (scope user or "org", metric, period start, used) of a history response.
fn history_rows(value: &Value) -> Vec<(String, String, String, String)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let scope = c["scope"]["user_id"].as_str().unwrap_or("org").to_owned();
            let text = |v: &Value| v.as_str().unwrap().to_owned();
            (
                scope,
                text(&c["metric"]),
                text(&c["period"]["start"]),
                text(&c["used"]),
            )
        })
        .collect()
}

#[tokio::test]
async fn usage_history_reads_counters_by_scope_period_and_range() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (u1, u2) = (create_user(&db).await, create_user(&db).await);
    let (u1, u2) = if u1 < u2 { (u1, u2) } else { (u2, u1) };
    let org = create_org(&db, u1).await;
    let on = |user: Option<Uuid>, amounts: Value, d: NaiveDate| {
        let mut e = event(org, user, amounts);
        e["daily_start"] = json!(d);
        e["monthly_start"] = json!(d.with_day(1).unwrap());
        e
    };
    record(
        &db,
        &json!([
            on(Some(u2), json!({"tokens": 2}), date(2026, 3, 5)),
            on(
                Some(u1),
                json!({"tokens": 1, "cost_usd": "0.5"}),
                date(2026, 3, 2)
            ),
            on(None, json!({"tokens": 10}), date(2026, 3, 31)),
            on(Some(u1), json!({"tokens": 100}), date(2026, 4, 1)), // after the range
        ]),
    )
    .await;
    let (s1, s2) = (u1.to_string(), u2.to_string());
    let row = |s: &str, m: &str, d: &str, u: &str| {
        (s.to_owned(), m.to_owned(), d.to_owned(), u.to_owned())
    };
    let read = async |h| history_rows(&history_on(&db, h).await.unwrap());
    assert_eq!(
        read(History::march(org, "organization", None)).await,
        [
            row("org", "cost_usd", "2026-03-02", "0.5"),
            row("org", "tokens", "2026-03-02", "1"),
            row("org", "tokens", "2026-03-05", "2"),
            row("org", "tokens", "2026-03-31", "10"),
        ]
    );
    assert_eq!(
        read(History::march(org, "user", Some(u1))).await,
        [
            row(&s1, "cost_usd", "2026-03-02", "0.5"),
            row(&s1, "tokens", "2026-03-02", "1")
        ]
    );
    let mut monthly = History::march(org, "each_user", None);
    (monthly.period, monthly.metric, monthly.to) = ("monthly", Some("tokens"), date(2026, 4, 1));
    assert_eq!(
        read(monthly).await,
        [
            row(&s1, "tokens", "2026-03-01", "1"),
            row(&s2, "tokens", "2026-03-01", "2"),
            row(&s1, "tokens", "2026-04-01", "100"),
        ]
    );
    let unknown = history_on(&db, History::march(Uuid::new_v4(), "organization", None)).await;
    assert_eq!(
        unknown.unwrap(),
        json!([]),
        "an unknown organization is empty"
    );
    for (scope, user) in [("user", None), ("each_user", Some(u1)), ("everyone", None)] {
        let res = history_on(&db, History::march(org, scope, user)).await;
        assert_code(
            res,
            SqlState::INVALID_PARAMETER_VALUE,
            &format!("scope {scope} {user:?}"),
        );
    }
}

// ---- alerts ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_is_claimed_once_however_many_race() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        tasks.push(tokio::spawn(async move {
            let conn = pg.superuser().await;
            claim_alert(&conn, org, Some(user), 90).await["claimed"] == true
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += u32::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    // Another threshold, scope or period is another alert.
    let out = claim_alert(&db, org, None, 90).await;
    assert_eq!(
        out["claimed"], true,
        "the org-wide scope is a different key"
    );
    let out = claim_alert(&db, org, Some(user), 80).await;
    assert_eq!(out["claimed"], true, "another threshold is a different key");
    let res = db
        .query_one(
            "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'monthly', \
             period_start => $2, threshold_percent => 90, fired_at => now())",
            &[&Uuid::new_v4(), &month()],
        )
        .await;
    assert_code(res, SqlState::NO_DATA_FOUND, "unknown organization");
}
