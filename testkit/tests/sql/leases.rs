//! Budget leases in SQL: the sizing rule is the Rust one, a live lease is
//! held against every reader of the limits (the service's reserve and
//! snapshot, a member's check and snapshot, `tenancy.within_limit`), an
//! expired one against none, recording moves an amount from the lease to
//! the counter in one statement, and lease rows and functions are the
//! service role's only: no user JWT of any organization, and no anon, reads
//! or writes them.

use chrono::Duration;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tenancy::limits::lease::lease_grant;
use tenancy_testkit::pg::{Actor, Cluster, act};
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{
    Reserve, assert_denied, call_as, day, event, month, noon, put_limit, record, reserve_on,
    snapshot_on, world,
};

const LEASE: &str = "select tenancy_lease_budget(org_id => $1, lease_id => $2, user_id => $3, \
     metric => 'tokens', daily_start => $4, monthly_start => $5, now => $6, expires_at => $7, \
     spoken_for => $8::text::numeric, want => $9::text::numeric, min_grant => 0, \
     share => $10::text::numeric, purge_before => $11)";

/// `tenancy_lease_budget` for lease `id` of `user` at [`noon`], living
/// `ttl_secs`.
#[allow(clippy::too_many_arguments)]
async fn lease_on(
    db: &Client,
    org: Uuid,
    id: Uuid,
    user: Uuid,
    ttl_secs: i64,
    spoken_for: &str,
    want: &str,
    share: &str,
) -> Result<Value, Error> {
    db.query_one(
        LEASE,
        &[
            &org,
            &id,
            &user,
            &day(),
            &month(),
            &noon(),
            &(noon() + Duration::seconds(ttl_secs)),
            &spoken_for,
            &want,
            &share,
            &(noon() - Duration::days(1)),
        ],
    )
    .await
    .map(|row| row.get(0))
}

/// The org-wide monthly tokens limit's `reserved` in a snapshot.
fn reserved(snapshot: &Value) -> Decimal {
    snapshot["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["limit"]["metric"] == "tokens" && l["limit"]["scope"]["scope"] == "organization"
        })
        .map(|l| l["reserved"].as_str().unwrap().parse().unwrap())
        .expect("the org-wide tokens limit")
}

/// One table of cases through `lease_grant` in Rust and `tenancy.lease_grant`
/// in SQL: the same grant, to the last decimal.
#[tokio::test]
async fn the_sizing_rule_is_the_same_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let cases: Vec<(&str, &str, &str, Option<&str>)> = vec![
        ("1000", "1", "0.125", Some("4000")),
        ("100", "1", "0.125", Some("4000")),
        ("1000", "10", "0.125", Some("40")),
        ("1000", "1", "0.125", None),
        ("1000", "0", "1", Some("0")),
        ("1000", "0", "1", Some("-5")),
        ("10", "0", "0.333333333333", Some("1")),
        ("0", "0", "0.5", Some("100")),
        ("7.5", "7.5", "0.5", Some("15")),
        ("7.5", "7.6", "0.5", Some("15")),
        ("1e20", "1", "0.125", Some("123456789.123456789123")),
        ("0.000000000999", "0", "1", None),
        ("1e20", "2", "0.5", None),
        ("1e20", "0", "0.5", None),
    ];
    let mut checked = 0;
    for (want, min, share, headroom) in cases {
        let rust = lease_grant(d(want), d(min), d(share), headroom.map(d));
        let sql: String = db
            .query_one(
                "select tenancy.lease_grant($1::text::numeric, $2::text::numeric, \
                 $3::text::numeric, $4::text::numeric)::text",
                &[&want, &min, &share, &headroom],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            d(&sql),
            rust,
            "lease_grant({want}, {min}, {share}, {headroom:?})"
        );
        checked += 1;
    }
    assert_eq!(checked, 14);
}

/// A live lease counts wherever the limits are read, for the service and
/// for a member: reserve, the snapshot, the member's check and snapshot,
/// `within_limit`; an expired one counts nowhere; a record that names it
/// moves the amount to the counter in the same statement.
#[tokio::test]
async fn a_live_lease_is_held_against_every_reader_and_an_expired_one_against_none() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    // Org A: a monthly limit of 1 000 000, 120 used, 400 held (world).
    let used_and_held: Decimal = reserved(&snapshot_on(&db, w.org_a, None, None).await.unwrap());
    assert_eq!(used_and_held, Decimal::from(400));
    let lease = Uuid::now_v7();
    let grant = lease_on(&db, w.org_a, lease, w.member_a, 30, "0", "500000", "1")
        .await
        .unwrap();
    assert_eq!(grant["free"], "500000");
    assert_eq!(grant["granted"], "500000");
    let service_view = reserved(&snapshot_on(&db, w.org_a, None, None).await.unwrap());
    assert_eq!(service_view, Decimal::from(500_400));
    // Reserve sees it: 499 480 fits (1 000 000 − 120 − 500 400), one more does not.
    let too_much = reserve_on(
        &db,
        &Reserve::new(w.org_a, w.owner_a, 499_481),
        Uuid::now_v7(),
    )
    .await
    .unwrap();
    assert_eq!(too_much["granted"], false);
    // A member sees the lease as held (a sum, not the row).
    let mut conn = pg.authenticator().await;
    let member_snapshot = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        "select tenancy_usage_snapshot(org_id => $1, daily_start => $2, monthly_start => $3, \
         now => $4, user_id => $5)",
        &[&w.org_a, &day(), &month(), &noon(), &w.owner_a],
    )
    .await
    .unwrap();
    assert_eq!(reserved(&member_snapshot), Decimal::from(500_400));
    let check = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 499481)",
        &[&w.org_a],
    )
    .await;
    // The entry point decides on the real clock: its month may not be the
    // fixture's, so only the call's success is checked, as a member.
    assert!(check.is_ok(), "{check:?}");

    // Recording 2 000 on the lease: used +2 000, leased −2 000, at once.
    let mut spent = event(w.org_a, Some(w.member_a), json!({"tokens": 2000}));
    spent["metadata"] = json!({"tenancy_lease": lease.to_string()});
    record(&db, &json!([spent.clone()])).await;
    record(&db, &json!([spent])).await; // a duplicate: nothing more
    let after = snapshot_on(&db, w.org_a, None, None).await.unwrap();
    assert_eq!(reserved(&after), Decimal::from(498_400));
    let lease_row: (String, String) = {
        let row = db
            .query_one(
                "select granted::text, consumed::text from usage_leases where id = $1",
                &[&lease],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(lease_row, ("500000".to_owned(), "2000".to_owned()));
    // Metadata that names no lease, or garbage, is recorded as before.
    let mut odd = event(w.org_a, Some(w.member_a), json!({"tokens": 1}));
    odd["metadata"] = json!({"tenancy_lease": "not a uuid"});
    record(&db, &json!([odd])).await;

    // Expired (ttl 0 from a later renewal): counts nowhere, unpurged.
    lease_on(&db, w.org_a, lease, w.member_a, 0, "2000", "0", "1")
        .await
        .unwrap();
    let rows: i64 = db
        .query_one("select count(*) from usage_leases where id = $1", &[&lease])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "still there");
    let expired = snapshot_on(&db, w.org_a, None, None).await.unwrap();
    assert_eq!(reserved(&expired), Decimal::from(400));
}

/// Lease rows and the lease functions are the service role's: a user JWT
/// of the lease's organization (owner included), of another organization,
/// and anon can neither read, write nor call them.
#[tokio::test]
async fn lease_rows_and_functions_are_the_service_roles_only() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    put_limit(&db, w.org_a, None, "tokens", "daily", 10_000, "hard").await;
    let lease = Uuid::now_v7();
    lease_on(&db, w.org_a, lease, w.owner_a, 30, "0", "100", "1")
        .await
        .unwrap();
    let mut conn = pg.authenticator().await;
    // The service role reads and calls.
    let seen = act(&mut conn, Actor::Service, async |tx| {
        Ok(tx
            .query_one(
                "select count(*) from public.usage_leases where organization_id = $1",
                &[&w.org_a],
            )
            .await?
            .get::<_, i64>(0))
    })
    .await
    .unwrap();
    assert_eq!(seen, 1, "positive control");
    for actor in [
        Actor::User(w.owner_a),
        Actor::User(w.member_a),
        Actor::User(w.owner_b),
        Actor::Anon,
    ] {
        let who = format!("{actor:?}");
        assert_denied(
            act(&mut conn, actor, async |tx| {
                Ok(tx
                    .query_one("select count(*) from public.usage_leases", &[])
                    .await?
                    .get::<_, i64>(0))
            })
            .await,
            &format!("{who} reading leases"),
        );
        for write in [
            "update public.usage_leases set granted = 0",
            "delete from public.usage_leases",
        ] {
            assert_denied(
                act(&mut conn, actor, async |tx| tx.execute(write, &[]).await).await,
                &format!("{who}: {write}"),
            );
        }
        assert_denied(
            act(&mut conn, actor, async |tx| {
                tx.execute(
                    "insert into public.usage_leases (organization_id, id, user_id, metric, \
                     daily_start, monthly_start, granted, expires_at) \
                     values ($1, $2, $3, 'tokens', $4, $5, 1, $6)",
                    &[
                        &w.org_a,
                        &Uuid::now_v7(),
                        &w.owner_a,
                        &day(),
                        &month(),
                        &noon(),
                    ],
                )
                .await
            })
            .await,
            &format!("{who} inserting a lease"),
        );
        let expires = noon() + Duration::seconds(30);
        let since = noon() - Duration::days(1);
        assert_denied(
            act(&mut conn, actor, async |tx| {
                tx.query_one(
                    LEASE,
                    &[
                        &w.org_a,
                        &Uuid::now_v7(),
                        &w.owner_a,
                        &day(),
                        &month(),
                        &noon(),
                        &expires,
                        &"0",
                        &"100",
                        &"1",
                        &since,
                    ],
                )
                .await
                .map(|_| ())
            })
            .await,
            &format!("{who} leasing"),
        );
        assert_denied(
            act(&mut conn, actor, async |tx| {
                tx.query_one("select tenancy.lease_grant(1, 0, 1, 1)", &[])
                    .await
                    .map(|_| ())
            })
            .await,
            &format!("{who} calling tenancy.lease_grant"),
        );
    }
    // Nothing a user tried changed the lease.
    let granted: String = db
        .query_one(
            "select granted::text from usage_leases where id = $1",
            &[&lease],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(granted, "100");
}

/// Bad arguments are refused by name (22023), an unknown organization is
/// P0002, and a lease id reused for another user is 40001.
#[tokio::test]
async fn bad_lease_requests_are_refused() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    for (spoken, want, share, starts) in [
        ("-1", "1", "1", "spoken_for"),
        ("0", "-1", "1", "want"),
        ("0", "1", "0", "share"),
        ("0", "1", "1.5", "share"),
        ("0", "NaN", "1", "want"),
        ("0", "1000000000000000001", "1", "want"),
        ("1e19", "1", "1", "spoken_for"),
    ] {
        let result = lease_on(
            &db,
            w.org_a,
            Uuid::now_v7(),
            w.owner_a,
            30,
            spoken,
            want,
            share,
        )
        .await;
        let message = crate::support::message(&result).unwrap_or_default();
        crate::support::assert_code(
            result,
            tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE,
            starts,
        );
        assert!(message.starts_with(starts), "{message}");
    }
    // A metric that is not a metric key, for a new lease id and a used one.
    let used = Uuid::now_v7();
    lease_on(&db, w.org_a, used, w.owner_a, 30, "0", "1", "1")
        .await
        .unwrap();
    for id in [Uuid::now_v7(), used] {
        let result = db
            .query_one(
                &LEASE.replace("'tokens'", "'Not A Metric'"),
                &[
                    &w.org_a,
                    &id,
                    &w.owner_a,
                    &day(),
                    &month(),
                    &noon(),
                    &(noon() + Duration::seconds(30)),
                    &"0",
                    &"1",
                    &"1",
                    &(noon() - Duration::days(1)),
                ],
            )
            .await;
        let message = crate::support::message(&result).unwrap_or_default();
        crate::support::assert_code(
            result,
            tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE,
            "metric",
        );
        assert!(message.starts_with("metric:"), "{message}");
    }
    crate::support::assert_code(
        lease_on(
            &db,
            Uuid::now_v7(),
            Uuid::now_v7(),
            w.owner_a,
            30,
            "0",
            "1",
            "1",
        )
        .await,
        tokio_postgres::error::SqlState::NO_DATA_FOUND,
        "an unknown organization",
    );
    let lease = Uuid::now_v7();
    lease_on(&db, w.org_a, lease, w.owner_a, 30, "0", "1", "1")
        .await
        .unwrap();
    crate::support::assert_code(
        lease_on(&db, w.org_a, lease, w.member_a, 30, "0", "1", "1").await,
        tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
        "a lease id of another user",
    );
}

// ---- reconciliation ------------------------------------------------------------

/// `tenancy_reconcile_leases` (or `tenancy_repair_leases`) of `org` in its
/// `period` containing [`day`], as the superuser.
async fn lease_drift_on(
    db: &Client,
    rpc: &str,
    org: Uuid,
    period: &str,
    metric: Option<&str>,
) -> Result<Value, Error> {
    let start = if period == "daily" { day() } else { month() };
    db.query_one(
        &format!("select {rpc}(org_id => $1, period => $2, period_start => $3, metric => $4)"),
        &[&org, &period, &start, &metric],
    )
    .await
    .map(|row| row.get(0))
}

/// A lease's `consumed`, as stored.
async fn consumed(db: &Client, lease: Uuid) -> String {
    db.query_one(
        "select consumed::text from usage_leases where id = $1",
        &[&lease],
    )
    .await
    .unwrap()
    .get(0)
}

/// An event of `tokens` by `user` whose metadata names `lease` as written.
fn on_lease(org: Uuid, user: Uuid, lease: &str, tokens: i64) -> Value {
    let mut e = event(org, Some(user), json!({ "tokens": tokens }));
    e["metadata"] = json!({ "tenancy_lease": lease });
    e
}

/// Drift injected into `usage_leases.consumed` as the superuser (one lease
/// too low, one too high, one in another organization): reconciliation
/// finds exactly those of the organization and period asked for, with the
/// stored and recomputed values; the repair restores them, and what the
/// leases hold with them; a second reconcile and a retried repair are
/// empty; the other organization's drift is untouched.
#[tokio::test]
async fn injected_lease_drift_is_found_and_repaired() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let (low, high, theirs) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    lease_on(&db, w.org_a, low, w.member_a, 30, "0", "1000", "1")
        .await
        .unwrap();
    lease_on(&db, w.org_a, high, w.owner_a, 30, "0", "500", "1")
        .await
        .unwrap();
    lease_on(&db, w.org_b, theirs, w.owner_b, 30, "0", "100", "1")
        .await
        .unwrap();
    // What the trigger counts, and what it does not: another user's event
    // naming a lease, a duplicate. The id in capitals counts (a uuid).
    let spent = on_lease(w.org_a, w.member_a, &low.to_string(), 200);
    record(
        &db,
        &json!([
            spent.clone(),
            on_lease(w.org_a, w.owner_a, &low.to_string(), 50),
            on_lease(w.org_a, w.owner_a, &high.to_string(), 80),
            on_lease(w.org_a, w.owner_a, &high.to_string().to_uppercase(), 20),
            on_lease(w.org_b, w.owner_b, &theirs.to_string(), 40),
        ]),
    )
    .await;
    record(&db, &json!([spent])).await;
    assert_eq!(consumed(&db, low).await, "200");
    assert_eq!(consumed(&db, high).await, "100");
    for period in ["daily", "monthly"] {
        for rpc in ["tenancy_reconcile_leases", "tenancy_repair_leases"] {
            let none = lease_drift_on(&db, rpc, w.org_a, period, None)
                .await
                .unwrap();
            assert_eq!(none, json!([]), "{rpc} {period} before any drift");
        }
    }
    // World: 400 held; the leases hold 1000 − 200 and 500 − 100.
    let held = async || reserved(&snapshot_on(&db, w.org_a, None, None).await.unwrap());
    assert_eq!(held().await, Decimal::from(400 + 800 + 400));

    let inject = "update public.usage_leases set consumed = $2::text::numeric where id = $1";
    db.execute(inject, &[&low, &"50"]).await.unwrap();
    db.execute(inject, &[&high, &"300"]).await.unwrap();
    db.execute(inject, &[&theirs, &"0"]).await.unwrap();
    // Over-held by 150, under-held by 200.
    assert_eq!(held().await, Decimal::from(400 + 950 + 200));

    let drift = |lease: Uuid, user: Uuid, consumed: &str, recomputed: &str| {
        json!({
            "lease": lease,
            "user": user,
            "metric": "tokens",
            "consumed": consumed,
            "recomputed": recomputed,
        })
    };
    let mut want = vec![
        (low, drift(low, w.member_a, "50", "200")),
        (high, drift(high, w.owner_a, "300", "100")),
    ];
    want.sort_by_key(|(id, _)| *id);
    let want = Value::Array(want.into_iter().map(|(_, d)| d).collect());
    for period in ["daily", "monthly"] {
        let found = lease_drift_on(&db, "tenancy_reconcile_leases", w.org_a, period, None)
            .await
            .unwrap();
        assert_eq!(found, want, "{period}");
        // The Rust type reads it.
        let typed: Vec<tenancy::limits::lease::LeaseDrift> = serde_json::from_value(found).unwrap();
        assert_eq!(typed.len(), 2);
    }
    let tokens = lease_drift_on(
        &db,
        "tenancy_reconcile_leases",
        w.org_a,
        "daily",
        Some("tokens"),
    )
    .await
    .unwrap();
    assert_eq!(tokens, want);
    let cost = lease_drift_on(
        &db,
        "tenancy_reconcile_leases",
        w.org_a,
        "daily",
        Some("cost_usd"),
    )
    .await
    .unwrap();
    assert_eq!(cost, json!([]));
    // Another day: these leases are not of it.
    let tomorrow: Value = db
        .query_one(
            "select tenancy_reconcile_leases(org_id => $1, period => 'daily', \
             period_start => $2)",
            &[&w.org_a, &(day() + Duration::days(1))],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tomorrow, json!([]));

    let repaired = lease_drift_on(&db, "tenancy_repair_leases", w.org_a, "daily", None)
        .await
        .unwrap();
    assert_eq!(repaired, want);
    assert_eq!(consumed(&db, low).await, "200");
    assert_eq!(consumed(&db, high).await, "100");
    assert_eq!(held().await, Decimal::from(400 + 800 + 400));
    for period in ["daily", "monthly"] {
        for rpc in ["tenancy_reconcile_leases", "tenancy_repair_leases"] {
            let none = lease_drift_on(&db, rpc, w.org_a, period, None)
                .await
                .unwrap();
            assert_eq!(none, json!([]), "{rpc} {period} after the repair");
        }
    }
    // A renewal starts from the repaired value.
    let renewed = lease_on(&db, w.org_a, high, w.owner_a, 30, "0", "0", "1")
        .await
        .unwrap();
    assert_eq!(renewed["consumed"], "100");
    // The other organization's drift is its own, still there.
    let other = lease_drift_on(&db, "tenancy_reconcile_leases", w.org_b, "daily", None)
        .await
        .unwrap();
    assert_eq!(other, json!([drift(theirs, w.owner_b, "0", "40")]));
}

/// Bad arguments are 22023 by name, repairing an unknown organization is
/// P0002 (reconciling it finds nothing); a user JWT of the organization
/// (owner included), of another one, and anon get 42501 from both
/// functions and the drift query, and change nothing.
#[tokio::test]
async fn only_the_service_role_reconciles_leases() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let lease = Uuid::now_v7();
    lease_on(&db, w.org_a, lease, w.owner_a, 30, "0", "100", "1")
        .await
        .unwrap();
    record(
        &db,
        &json!([on_lease(w.org_a, w.owner_a, &lease.to_string(), 10)]),
    )
    .await;
    db.execute(
        "update public.usage_leases set consumed = 3 where id = $1",
        &[&lease],
    )
    .await
    .unwrap();
    for rpc in ["tenancy_reconcile_leases", "tenancy_repair_leases"] {
        for (period, metric, starts) in [
            (Some("weekly"), None, "period"),
            (None, None, "period"),
            (Some("daily"), Some("Bad Metric"), "metric"),
        ] {
            let sql = format!(
                "select {rpc}(org_id => $1, period => $2, period_start => $3, metric => $4)"
            );
            let result = db
                .query_one(&sql, &[&w.org_a, &period, &day(), &metric])
                .await;
            let message = crate::support::message(&result).unwrap_or_default();
            crate::support::assert_code(
                result,
                tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE,
                &format!("{rpc}: {starts}"),
            );
            assert!(message.starts_with(starts), "{message}");
        }
    }
    let ghost = Uuid::now_v7();
    let nothing = lease_drift_on(&db, "tenancy_reconcile_leases", ghost, "daily", None)
        .await
        .unwrap();
    assert_eq!(nothing, json!([]));
    crate::support::assert_code(
        lease_drift_on(&db, "tenancy_repair_leases", ghost, "daily", None).await,
        tokio_postgres::error::SqlState::NO_DATA_FOUND,
        "repairing an unknown organization",
    );

    let mut conn = pg.authenticator().await;
    let calls = [
        "select tenancy_reconcile_leases(org_id => $1, period => 'daily', period_start => $2)",
        "select tenancy_repair_leases(org_id => $1, period => 'daily', period_start => $2)",
        "select to_jsonb(array_agg(d)) from tenancy.lease_drift($1, 'daily', $2, null) d",
    ];
    for actor in [
        Actor::User(w.owner_a),
        Actor::User(w.member_a),
        Actor::User(w.owner_b),
        Actor::Anon,
    ] {
        for sql in calls {
            crate::support::assert_code(
                call_as(&mut conn, actor, sql, &[&w.org_a, &day()]).await,
                tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
                &format!("{actor:?}: {sql}"),
            );
        }
    }
    assert_eq!(consumed(&db, lease).await, "3", "no user repaired it");
    // The service role reconciles and repairs.
    let found = call_as(&mut conn, Actor::Service, calls[0], &[&w.org_a, &day()])
        .await
        .unwrap();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let repaired = call_as(&mut conn, Actor::Service, calls[1], &[&w.org_a, &day()])
        .await
        .unwrap();
    assert_eq!(repaired, found);
    assert_eq!(consumed(&db, lease).await, "10");
}

/// A lease repair waits for a record in progress and then counts its
/// event; a record that starts during a repair waits for it and then adds
/// to the repaired value. No consumption is lost or counted twice.
#[tokio::test]
async fn a_lease_repair_and_a_record_wait_for_each_other() {
    use crate::support::{RACE_LIMIT, assert_waits_for, backend_pid};
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let lease = Uuid::now_v7();
    lease_on(&db, w.org_a, lease, w.owner_a, 30, "0", "1000", "1")
        .await
        .unwrap();
    record(
        &db,
        &json!([on_lease(w.org_a, w.owner_a, &lease.to_string(), 40)]),
    )
    .await;
    let inject = "update public.usage_leases set consumed = 0 where id = $1";
    db.execute(inject, &[&lease]).await.unwrap();
    let (a, b) = (pg.superuser().await, pg.superuser().await);
    let (a_pid, b_pid) = (backend_pid(&a).await, backend_pid(&b).await);
    let sql = "select tenancy_repair_leases(org_id => $1, period => 'daily', period_start => $2)";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&w.org_a, &day()];
    let drift = |consumed: &str, recomputed: &str| {
        json!([{
            "lease": lease,
            "user": w.owner_a,
            "metric": "tokens",
            "consumed": consumed,
            "recomputed": recomputed,
        }])
    };

    // A record in progress: the repair waits, then sees its 7 tokens.
    a.batch_execute("begin").await.unwrap();
    record(
        &a,
        &json!([on_lease(w.org_a, w.owner_a, &lease.to_string(), 7)]),
    )
    .await;
    let mut repairing = std::pin::pin!(b.query_one(sql, &params));
    assert_waits_for(&mut repairing, &db, b_pid, a_pid, "the repair").await;
    a.batch_execute("commit").await.unwrap();
    let repaired: Value = tokio::time::timeout(RACE_LIMIT, repairing)
        .await
        .expect("the repair finishes once the record commits")
        .unwrap()
        .get(0);
    // The record added 7 to the drifted 0; the events sum to 47.
    assert_eq!(repaired, drift("7", "47"));
    assert_eq!(consumed(&db, lease).await, "47");

    // A repair in progress: the record waits, then adds to the repaired value.
    db.execute(inject, &[&lease]).await.unwrap();
    a.batch_execute("begin").await.unwrap();
    let repaired: Value = a.query_one(sql, &params).await.unwrap().get(0);
    assert_eq!(repaired, drift("0", "47"));
    let events = json!([on_lease(w.org_a, w.owner_a, &lease.to_string(), 1)]);
    let record_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&events];
    let mut recording =
        std::pin::pin!(b.query_one("select tenancy_record_usage($1)", &record_params));
    assert_waits_for(&mut recording, &db, b_pid, a_pid, "the record").await;
    a.batch_execute("commit").await.unwrap();
    tokio::time::timeout(RACE_LIMIT, recording)
        .await
        .expect("the record finishes once the repair commits")
        .unwrap();
    assert_eq!(consumed(&db, lease).await, "48");
    let none = lease_drift_on(&db, "tenancy_reconcile_leases", w.org_a, "daily", None)
        .await
        .unwrap();
    assert_eq!(none, json!([]));
}
