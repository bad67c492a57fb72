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
