//! Reservations: check-and-reserve against every applicable limit, commit
//! and release (each verifying the hold), the snapshot, expiry and purging,
//! period keys, and 64 connections racing for one limit.

use chrono::Duration;
use serde_json::{Value, json};
use tenancy_testkit::pg::{self, Actor, Cluster, act, create_user};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::support::{
    Reserve, add_member, assert_code, assert_denied, at, commit_on, counter, create_org, date, day,
    event, hold_event, holds, month, noon, put_limit, record, release_on, reserve, reserve_on,
    snapshot_on, usage_rows,
};

/// Alice owns the org, bob is a member. Limits: 1000 tokens a month
/// org-wide, 300 a day for bob, 50 a day for alice, a soft 1 USD a month;
/// 400 tokens used org-wide.
#[derive(Debug, Clone, Copy)]
struct Scene {
    org: Uuid,
    alice: Uuid,
    bob: Uuid,
}

async fn scene(db: &Client) -> Scene {
    let alice = create_user(db).await;
    let bob = create_user(db).await;
    let org = create_org(db, alice).await;
    add_member(db, org, bob, "member").await;
    put_limit(db, org, None, "tokens", "monthly", 1000, "hard").await;
    put_limit(db, org, Some(bob), "tokens", "daily", 300, "hard").await;
    put_limit(db, org, Some(alice), "tokens", "daily", 50, "hard").await;
    put_limit(db, org, None, "cost_usd", "monthly", 1, "soft").await;
    record(db, &json!([event(org, None, json!({"tokens": 400}))])).await;
    Scene { org, alice, bob }
}

#[tokio::test]
async fn reserve_reads_the_org_wide_and_the_users_own_limits() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    // Bob: org-wide monthly (400 used) and his own daily (0 used) apply.
    let (_, res) = reserve(&db, &Reserve::new(s.org, s.bob, 250)).await;
    assert_eq!(res["granted"], true, "{res}");
    let limits = res["limits"].as_array().unwrap();
    assert_eq!(
        limits.len(),
        2,
        "org-wide and bob's own, not alice's: {res}"
    );
    assert_eq!(
        limits[0]["limit"]["scope"],
        json!({"scope": "organization"})
    );
    assert_eq!(limits[0]["limit"]["value"], "1000");
    assert_eq!(
        limits[0]["period"],
        json!({"period": "monthly", "start": "2026-03-01"})
    );
    assert_eq!(limits[0]["used"], "400");
    assert_eq!(limits[0]["reserved"], "0", "excludes this request");
    assert_eq!(
        limits[1]["limit"]["scope"],
        json!({"scope": "user", "user_id": s.bob})
    );
    assert_eq!(
        limits[1]["period"],
        json!({"period": "daily", "start": "2026-03-14"})
    );
    // Bob's own daily limit now has 250 held: 60 more does not fit (300).
    let (denied, res) = reserve(&db, &Reserve::new(s.org, s.bob, 60)).await;
    assert_eq!(res["granted"], false, "{res}");
    assert_eq!(res["limits"][1]["reserved"], "250");
    // Alice's daily limit is 50; the org-wide one counts bob's hold.
    let (_, res) = reserve(&db, &Reserve::new(s.org, s.alice, 40)).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(res["limits"][0]["reserved"], "250");
    assert_eq!(
        res["limits"][1]["reserved"], "0",
        "bob's hold is not alice's"
    );
    assert_eq!(
        holds(&db, s.org).await,
        2,
        "the denied request held nothing"
    );
    let denied_hold = release_on(&db, s.org, s.bob, denied, noon()).await.unwrap();
    assert_eq!(denied_hold, json!({"released": false}));
}

#[tokio::test]
async fn soft_limits_never_deny_and_no_limit_grants_anything() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    let mut cost = Reserve::new(s.org, s.bob, 5);
    cost.metric = "cost_usd";
    let (_, res) = reserve(&db, &cost).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(res["limits"][0]["limit"]["mode"], "soft");
    let mut free = Reserve::new(s.org, s.bob, 1_000_000);
    free.metric = "images";
    let (_, res) = reserve(&db, &free).await;
    assert_eq!(res, json!({"granted": true, "limits": []}));
    let res = reserve_on(&db, &Reserve::new(Uuid::new_v4(), s.bob, 1), Uuid::now_v7()).await;
    assert_code(res, SqlState::NO_DATA_FOUND, "reserving in an unknown org");
    let mut negative = Reserve::new(s.org, s.bob, -1);
    negative.metric = "images";
    let res = reserve_on(&db, &negative, Uuid::now_v7()).await;
    assert_code(res, SqlState::INVALID_PARAMETER_VALUE, "a negative amount");
}

#[tokio::test]
async fn commit_records_once_and_drops_the_hold() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    let (hold, _) = reserve(&db, &Reserve::new(s.org, s.bob, 250)).await;
    let usage = hold_event(s.org, s.bob, hold, json!({"tokens": 200}));
    let out = commit_on(&db, s.org, s.bob, hold, &usage, noon()).await;
    assert_eq!(
        out.unwrap(),
        json!({"released_hold": true, "recorded": true})
    );
    assert_eq!(holds(&db, s.org).await, 0);
    let out = commit_on(&db, s.org, s.bob, hold, &usage, noon()).await;
    assert_eq!(
        out.unwrap(),
        json!({"released_hold": false, "recorded": false}),
        "a retried commit is harmless"
    );
    assert_eq!(
        counter(&db, s.org, s.bob, "tokens", "daily", day()).await,
        "200"
    );
    assert_eq!(
        counter(&db, s.org, pg::NIL, "tokens", "monthly", month()).await,
        "600"
    );
    assert_eq!(
        usage_rows(&db, s.org).await,
        (2, 4),
        "one event more, counted once"
    );
}

/// The usage counts in the hold's periods, whatever the event says.
#[tokio::test]
async fn commit_counts_in_the_holds_periods() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    let (hold, _) = reserve(&db, &Reserve::new(s.org, s.bob, 10)).await;
    let mut usage = hold_event(s.org, s.bob, hold, json!({"tokens": 7}));
    usage["daily_start"] = json!(date(2026, 4, 2));
    usage["monthly_start"] = json!(date(2026, 4, 1));
    let out = commit_on(&db, s.org, s.bob, hold, &usage, noon()).await;
    assert_eq!(
        out.unwrap(),
        json!({"released_hold": true, "recorded": true})
    );
    for scope in [pg::NIL, s.bob] {
        let daily = counter(&db, s.org, scope, "tokens", "daily", date(2026, 4, 2)).await;
        assert_eq!(daily, "none", "not in the event's day");
        let monthly = counter(&db, s.org, scope, "tokens", "monthly", date(2026, 4, 1)).await;
        assert_eq!(monthly, "none", "not in the event's month");
    }
    assert_eq!(
        counter(&db, s.org, s.bob, "tokens", "daily", day()).await,
        "7"
    );
    assert_eq!(
        counter(&db, s.org, s.bob, "tokens", "monthly", month()).await,
        "7"
    );
    let stored: (chrono::NaiveDate, chrono::NaiveDate) = db
        .query_one(
            "select daily_start, monthly_start from usage_events where organization_id = $1 and id = $2",
            &[&s.org, &hold],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(stored, (day(), month()), "the log says where it counted");
}

#[tokio::test]
async fn commit_refuses_what_is_not_the_reservations() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    let before = usage_rows(&db, s.org).await;
    // An unknown hold with no event recorded: P0002, nothing recorded.
    let unknown = Uuid::now_v7();
    let usage = hold_event(s.org, s.bob, unknown, json!({"tokens": 1}));
    let res = commit_on(&db, s.org, s.bob, unknown, &usage, noon()).await;
    assert_code(res, SqlState::NO_DATA_FOUND, "committing an unknown hold");
    // Bob's hold, committed for alice: 42501.
    let (hold, _) = reserve(&db, &Reserve::new(s.org, s.bob, 10)).await;
    let as_alice = hold_event(s.org, s.alice, hold, json!({"tokens": 1}));
    let res = commit_on(&db, s.org, s.alice, hold, &as_alice, noon()).await;
    assert_denied(res, "committing another user's hold");
    // An event that is not the reservation's: 22023.
    let good = hold_event(s.org, s.bob, hold, json!({"tokens": 1}));
    for (key, value) in [
        ("organization_id", json!(Uuid::new_v4())),
        ("id", json!(Uuid::now_v7())),
        ("user_id", json!(s.alice)),
        ("user_id", Value::Null),
    ] {
        let mut bad = good.clone();
        bad[key] = value;
        let res = commit_on(&db, s.org, s.bob, hold, &bad, noon()).await;
        assert_code(
            res,
            SqlState::INVALID_PARAMETER_VALUE,
            &format!("an event with another {key}"),
        );
    }
    assert_eq!(usage_rows(&db, s.org).await, before, "nothing was recorded");
    assert_eq!(holds(&db, s.org).await, 1, "the hold stays");
    // Positive control: the reservation's own event commits.
    let out = commit_on(&db, s.org, s.bob, hold, &good, noon()).await;
    assert_eq!(
        out.unwrap(),
        json!({"released_hold": true, "recorded": true})
    );
}

/// `released_hold` is whether the hold was live at `now`; a late commit
/// still records (the hold is kept until purged, so it is recognised).
#[tokio::test]
async fn a_late_commit_records_but_releases_no_live_hold() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    let mut r = Reserve::new(s.org, s.bob, 10);
    r.expires_at = noon() + Duration::minutes(1);
    for now in [noon() + Duration::minutes(1), noon() + Duration::minutes(2)] {
        let (hold, _) = reserve(&db, &r).await;
        let usage = hold_event(s.org, s.bob, hold, json!({"tokens": 5}));
        let out = commit_on(&db, s.org, s.bob, hold, &usage, now).await;
        assert_eq!(
            out.unwrap(),
            json!({"released_hold": false, "recorded": true}),
            "at {now}"
        );
    }
    assert_eq!(
        counter(&db, s.org, s.bob, "tokens", "daily", day()).await,
        "10"
    );
    // Positive control: a second before expiry, it was live.
    let (hold, _) = reserve(&db, &r).await;
    let usage = hold_event(s.org, s.bob, hold, json!({"tokens": 5}));
    let out = commit_on(
        &db,
        s.org,
        s.bob,
        hold,
        &usage,
        r.expires_at - Duration::seconds(1),
    )
    .await;
    assert_eq!(
        out.unwrap(),
        json!({"released_hold": true, "recorded": true})
    );
}

#[tokio::test]
async fn release_reports_whether_the_hold_was_live() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    let mut r = Reserve::new(s.org, s.bob, 10);
    let (hold, _) = reserve(&db, &r).await;
    let res = release_on(&db, s.org, s.alice, hold, noon()).await;
    assert_denied(res, "releasing another user's hold");
    assert_eq!(holds(&db, s.org).await, 1, "the hold stays");
    let out = release_on(&db, s.org, s.bob, hold, noon()).await;
    assert_eq!(out.unwrap(), json!({"released": true}));
    let out = release_on(&db, s.org, s.bob, hold, noon()).await;
    assert_eq!(out.unwrap(), json!({"released": false}), "already gone");
    r.expires_at = noon() + Duration::minutes(1);
    let (expired, _) = reserve(&db, &r).await;
    let out = release_on(&db, s.org, s.bob, expired, r.expires_at).await;
    assert_eq!(out.unwrap(), json!({"released": false}), "expired at now");
    assert_eq!(holds(&db, s.org).await, 0, "and dropped all the same");
    let out = release_on(&db, s.org, s.bob, Uuid::now_v7(), noon()).await;
    assert_eq!(out.unwrap(), json!({"released": false}), "unknown");
    assert_eq!(
        usage_rows(&db, s.org).await,
        (1, 2),
        "a release records nothing"
    );
}

/// (period, scope) of each counter in a snapshot.
fn counter_scopes(snap: &Value) -> Vec<(String, String, String)> {
    snap["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap().to_owned();
            (
                text(&c["metric"]),
                text(&c["period"]["period"]),
                text(&c["scope"]["scope"]),
            )
        })
        .collect()
}

#[tokio::test]
async fn snapshot_reads_the_limits_and_counters_in_scope() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    record(
        &db,
        &json!([event(s.org, Some(s.bob), json!({"tokens": 200}))]),
    )
    .await;
    let (_, res) = reserve(&db, &Reserve::new(s.org, s.alice, 40)).await;
    assert_eq!(res["granted"], true);
    // Org-wide limits, bob's own, and the counters in scope.
    let snap = snapshot_on(&db, s.org, Some(s.bob), Some("tokens"))
        .await
        .unwrap();
    assert_eq!(snap["limits"].as_array().unwrap().len(), 2, "{snap}");
    assert_eq!(snap["limits"][0]["used"], "600");
    assert_eq!(snap["limits"][0]["reserved"], "40", "alice's hold");
    assert_eq!(snap["limits"][1]["used"], "200");
    let t = |m: &str, p: &str, s: &str| (m.to_owned(), p.to_owned(), s.to_owned());
    assert_eq!(
        counter_scopes(&snap),
        [
            t("tokens", "daily", "organization"),
            t("tokens", "daily", "user"),
            t("tokens", "monthly", "organization"),
            t("tokens", "monthly", "user")
        ]
    );
    assert_eq!(snap["counters"][1]["used"], "200");
    assert_eq!(snap["counters"][0]["reserved"], "40");
    assert_eq!(snap["counters"][1]["reserved"], "0");
    // Without a user: org-wide only; an unknown org is empty.
    let snap = snapshot_on(&db, s.org, None, None).await.unwrap();
    assert_eq!(
        snap["limits"].as_array().unwrap().len(),
        2,
        "org-wide tokens and cost: {snap}"
    );
    assert_eq!(
        counter_scopes(&snap),
        [
            t("tokens", "daily", "organization"),
            t("tokens", "monthly", "organization")
        ],
        "the org-wide counters only: {snap}"
    );
    // The nil user names nobody: the same as no user, nothing twice.
    let nil = snapshot_on(&db, s.org, Some(pg::NIL), None).await.unwrap();
    assert_eq!(nil, snap);
    let snap = snapshot_on(&db, Uuid::new_v4(), None, None).await.unwrap();
    assert_eq!(snap, json!({"limits": [], "counters": []}));
}

/// An expired hold stops counting at once but stays until a reserve's
/// `purge_before` reaches its expiry, so that a late commit is recognised.
#[tokio::test]
async fn expired_holds_stop_counting_and_stay_until_purged() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    put_limit(&db, org, None, "tokens", "daily", 100, "hard").await;
    let expiry = noon() + Duration::minutes(1);
    let mut r = Reserve::new(org, user, 100);
    r.expires_at = expiry;
    let (first, res) = reserve(&db, &r).await;
    assert_eq!(res["granted"], true);
    // Still held at noon + 30 s...
    let mut later = Reserve::new(org, user, 1);
    later.now = noon() + Duration::seconds(30);
    let (_, res) = reserve(&db, &later).await;
    assert_eq!(res["granted"], false);
    assert_eq!(res["limits"][0]["reserved"], "100");
    // ...expired at exactly expires_at, and kept: it expired after purge_before.
    (later.now, later.amount, later.purge_before) = (expiry, 100, noon());
    later.expires_at = expiry + Duration::minutes(5);
    let (_, res) = reserve(&db, &later).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(res["limits"][0]["reserved"], "0");
    assert_eq!(holds(&db, org).await, 2, "the expired hold is kept");
    let mut purge = Reserve::new(org, user, 1);
    (purge.now, purge.purge_before) =
        (expiry + Duration::minutes(1), expiry - Duration::seconds(1));
    let (_, res) = reserve(&db, &purge).await;
    assert_eq!(res["granted"], false, "the second hold is live: {res}");
    assert_eq!(holds(&db, org).await, 2, "expired after purge_before: kept");
    purge.purge_before = expiry;
    reserve(&db, &purge).await;
    assert_eq!(holds(&db, org).await, 1, "expired at purge_before: deleted");
    let usage = hold_event(org, user, first, json!({"tokens": 1}));
    let res = commit_on(&db, org, user, first, &usage, purge.now).await;
    assert_code(res, SqlState::NO_DATA_FOUND, "a commit after the purge");
    assert_eq!(usage_rows(&db, org).await, (0, 0), "nothing recorded");
}

#[tokio::test]
async fn periods_roll_over_by_key() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    put_limit(&db, org, None, "tokens", "daily", 100, "hard").await;
    put_limit(&db, org, None, "tokens", "monthly", 250, "hard").await;
    record(
        &db,
        &json!([event(org, Some(user), json!({"tokens": 100}))]),
    )
    .await;
    let (_, res) = reserve(&db, &Reserve::new(org, user, 1)).await;
    assert_eq!(res["granted"], false, "the day is spent");
    // The next day: a fresh daily counter, the same month.
    let mut r = Reserve::new(org, user, 100);
    r.daily = date(2026, 3, 15);
    r.now = at("2026-03-15T09:00:00Z");
    r.expires_at = r.now + Duration::days(30);
    let (_, res) = reserve(&db, &r).await;
    assert_eq!(res["granted"], true, "{res}");
    let by_period = |res: &Value, period: &str| -> Value {
        res["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["period"]["period"] == period)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_period(&res, "daily")["used"], "0");
    assert_eq!(by_period(&res, "daily")["period"]["start"], "2026-03-15");
    assert_eq!(by_period(&res, "monthly")["used"], "100");
    // The hold counts in its own day and month only: the month is now full.
    let mut more = Reserve::new(org, user, 60);
    more.daily = date(2026, 3, 16);
    more.now = at("2026-03-16T09:00:00Z");
    let (_, res) = reserve(&db, &more).await;
    assert_eq!(
        res["granted"], false,
        "monthly: 100 used + 100 held + 60 > 250: {res}"
    );
    assert_eq!(
        by_period(&res, "daily")["reserved"],
        "0",
        "the 15th's hold is not the 16th's"
    );
    // A new month starts from zero.
    let mut april = Reserve::new(org, user, 100);
    april.daily = date(2026, 4, 1);
    april.monthly = date(2026, 4, 1);
    april.now = at("2026-04-01T00:00:00Z");
    let (_, res) = reserve(&db, &april).await;
    assert_eq!(res["granted"], true, "{res}");
    assert_eq!(by_period(&res, "monthly")["used"], "0");
    assert_eq!(by_period(&res, "monthly")["reserved"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_connections_never_overshoot_a_hard_limit() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let org = create_org(&db, user).await;
    // 200 used + 100 grants of 10 = the limit of 1200; 64 × 3 × 10 = 1920 asked.
    put_limit(&db, org, None, "tokens", "monthly", 1200, "hard").await;
    record(
        &db,
        &json!([event(org, Some(user), json!({"tokens": 200}))]),
    )
    .await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pg.authenticator().await;
            barrier.wait().await;
            let mut granted = 0u32;
            for _ in 0..3 {
                let r = Reserve::new(org, user, 10);
                let res = act(&mut conn, Actor::Service, async |tx| {
                    reserve_on(tx, &r, Uuid::now_v7()).await
                })
                .await
                .expect("reserve as service_role");
                if res["granted"] == true {
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(
        granted, 100,
        "exactly the grants of 10 that fit in 1000 of headroom (more is an overshoot)"
    );
    let held: String = db
        .query_one(
            "select sum(amount)::text from usage_reservations where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, "1000");
}

/// `tenancy_reserve` refuses NaN and Infinity as it refuses a negative
/// amount (22023), as the record RPC does: a NaN hold would make
/// `reserved` NaN, denying every hard-limited reserve of the metric until
/// it expired.
#[tokio::test]
async fn reserve_refuses_nan_and_infinite_amounts() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let s = scene(&db).await;
    for amount in ["NaN", "Infinity"] {
        let res = db
            .query_one(
                "select tenancy_reserve(org_id => $1, user_id => $2, metric => 'images', \
                 amount => $3::text::numeric, daily_start => $4, monthly_start => $5, \
                 now => $6::timestamptz, expires_at => $6::timestamptz + interval '5 minutes', \
                 reservation_id => gen_random_uuid(), purge_before => $6::timestamptz - interval '7 days')",
                &[&s.org, &s.bob, &amount, &day(), &month(), &noon()],
            )
            .await
            .map(|row| row.get::<_, Value>(0));
        assert_code(
            res,
            SqlState::INVALID_PARAMETER_VALUE,
            &format!("amount {amount}"),
        );
    }
    assert_eq!(holds(&db, s.org).await, 0, "no hold of NaN or Infinity");
}
