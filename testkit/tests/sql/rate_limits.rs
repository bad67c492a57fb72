//! Rate limits in SQL: the configuration is readable by members the way
//! budget limits are (org-wide rows and their own; admins all), writable by
//! nobody but the service role; the GCRA state and the decision function
//! are out of every user JWT's reach; and several `PgStore` instances on
//! one database admit no more than the limit together.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tenancy::alerts::MemoryAlertSink;
use tenancy::clock::FakeClock;
use tenancy::limits::rate::NewRateLimit;
use tenancy::postgres::PgStore;
use tenancy::store::DynStore;
use tenancy::{NewOrganization, PlatformOperator, ReserveOutcome, Tenancy, UserId};
use tenancy_testkit::pg::{self, Actor, Cluster, act, create_user};
use tenancy_testkit::unique_slug;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::{add_member, assert_denied, create_org};

/// Inserts a rate limit as the superuser; its id.
async fn rate_limit(db: &Client, org: Uuid, user: Option<Uuid>, window: &str) -> Uuid {
    db.query_one(
        "insert into usage_rate_limits (organization_id, user_id, metric, rate_window, limit_value, burst)
         values ($1, $2, 'requests', $3, 10, 10) returning id",
        &[&org, &user, &window],
    )
    .await
    .expect("insert a rate limit")
    .get(0)
}

/// The rate limits of `org` `actor` reads through the table, by id.
async fn rows_as(
    conn: &mut Client,
    actor: Actor,
    org: Uuid,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    act(conn, actor, async |tx| {
        let rows = tx
            .query(
                "select id from usage_rate_limits where organization_id = $1 order by id",
                &[&org],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

/// Who reads which rate limits, and that nobody but the service role
/// writes them, reads the state or decides.
#[tokio::test]
async fn users_read_their_rate_limits_and_nothing_else() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let [owner, member, viewer, stranger] = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    let org = create_org(&db, owner).await;
    add_member(&db, org, member, "member").await;
    add_member(&db, org, viewer, "viewer").await;
    let other = create_org(&db, stranger).await;
    let org_wide = rate_limit(&db, org, None, "minute").await;
    let members = rate_limit(&db, org, Some(member), "minute").await;
    let viewers = rate_limit(&db, org, Some(viewer), "second").await;
    let theirs = rate_limit(&db, other, None, "hour").await;
    db.execute(
        "insert into tenancy.usage_rate_state (organization_id, rate_limit_id, tat_us) values ($1, $2, 42)",
        &[&org, &org_wide],
    )
    .await
    .unwrap();
    let mut conn = pg.authenticator().await;

    let mut all = vec![org_wide, members, viewers];
    all.sort();
    assert_eq!(
        rows_as(&mut conn, Actor::User(owner), org).await.unwrap(),
        all
    );
    let mut own = vec![org_wide, members];
    own.sort();
    assert_eq!(
        rows_as(&mut conn, Actor::User(member), org).await.unwrap(),
        own
    );
    let mut own = vec![org_wide, viewers];
    own.sort();
    assert_eq!(
        rows_as(&mut conn, Actor::User(viewer), org).await.unwrap(),
        own
    );
    assert!(
        rows_as(&mut conn, Actor::User(stranger), org)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        rows_as(&mut conn, Actor::User(stranger), other)
            .await
            .unwrap(),
        [theirs]
    );
    assert_denied(
        rows_as(&mut conn, Actor::Anon, org).await,
        "anon reads no rate limits",
    );

    // The function shows users the same rows, never the state.
    let listed = act(&mut conn, Actor::User(member), async |tx| {
        let v: Value = tx
            .query_one("select tenancy_rate_limits($1)", &[&org])
            .await?
            .get(0);
        Ok(v)
    })
    .await
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s["tat"].is_null()), "{listed:?}");
    let service = act(&mut conn, Actor::Service, async |tx| {
        let v: Value = tx
            .query_one("select tenancy_rate_limits($1)", &[&org])
            .await?
            .get(0);
        Ok(v)
    })
    .await
    .unwrap();
    assert!(
        service
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tat"] == json!(42))
    );

    for actor in [
        Actor::User(owner),
        Actor::User(member),
        Actor::User(stranger),
        Actor::Anon,
    ] {
        let state = act(&mut conn, actor, async |tx| {
            tx.query("select tat_us from tenancy.usage_rate_state", &[])
                .await
        })
        .await;
        assert_denied(state, "the state is the service role's");
        let write = act(&mut conn, actor, async |tx| {
            tx.execute(
                "insert into usage_rate_limits (organization_id, metric, rate_window, limit_value, burst)
                 values ($1, 'requests', 'hour', 1000000, 1000000)",
                &[&org],
            )
            .await
        })
        .await;
        assert_denied(write, "only the service role writes rate limits");
        let raise = act(&mut conn, actor, async |tx| {
            tx.execute(
                "update usage_rate_limits set limit_value = 1000000 where organization_id = $1",
                &[&org],
            )
            .await
        })
        .await;
        assert_denied(raise, "nor changes them");
        let decide = act(&mut conn, actor, async |tx| {
            tx.query_one(
                "select tenancy_acquire_rate(org_id => $1, user_id => $2, charges => '[[\"requests\", \"1\"]]'::jsonb, now_us => 0, action => 'refund')",
                &[&org, &member],
            )
            .await
        })
        .await;
        assert_denied(decide, "users do not decide or refund");
        let put = act(&mut conn, actor, async |tx| {
            tx.query_one(
                "select tenancy_delete_rate_limit($1, $2)",
                &[&org, &org_wide],
            )
            .await
        })
        .await;
        assert_denied(put, "nor delete through the function");
    }
    let kept: i64 = db
        .query_one(
            "select count(*) from usage_rate_limits where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 3);

    // Deleting a limit takes its state; deleting the organization, both.
    db.execute("delete from usage_rate_limits where id = $1", &[&org_wide])
        .await
        .unwrap();
    let states: i64 = db
        .query_one(
            "select count(*) from tenancy.usage_rate_state where organization_id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(states, 0);
}

/// Bad arguments to the decision are 22023, naming them.
#[tokio::test]
async fn the_decision_refuses_bad_arguments() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let bad_action = db
        .query_one(
            "select tenancy_acquire_rate(org_id => $1, user_id => $2, charges => '[]'::jsonb, now_us => 0, action => 'grab')",
            &[&org, &owner],
        )
        .await;
    crate::support::assert_code(
        bad_action,
        tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE,
        "action",
    );
    let not_an_array = db
        .query_one(
            "select tenancy_acquire_rate(org_id => $1, user_id => $2, charges => '{}'::jsonb, now_us => 0, action => 'check')",
            &[&org, &owner],
        )
        .await;
    crate::support::assert_code(
        not_an_array,
        tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE,
        "charges",
    );
}

/// 2, 4 and 8 `PgStore` instances (each its own pool) under as many
/// `Tenancy` instances, 4 tasks each, at one instant: exactly the burst
/// passes; 20 s later, exactly 20 s of the rate more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_store_instances_admit_the_limit_together() {
    // Not `shared_with_fixtures`: its triggers would make up users for
    // this binary's other tests, which expect unknown users refused.
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.superuser().await;
    for instances in [2usize, 4, 8] {
        let clock = FakeClock::at("2026-03-04T12:00:00Z");
        let tenancies: Vec<Tenancy> = (0..instances)
            .map(|_| {
                let store: Arc<DynStore> = Arc::new(
                    PgStore::builder()
                        .url(cluster.url(pg::DATABASE))
                        .pool_size(4)
                        .build()
                        .expect("a PgStore"),
                );
                Tenancy::builder()
                    .shared_store(store)
                    .clock(clock.clone())
                    .shared_alert_sink(Arc::new(MemoryAlertSink::new()))
                    .build()
                    .expect("a tenancy")
            })
            .collect();
        let owner = UserId::from(create_user(&db).await);
        let new = NewOrganization::new("Rated", &unique_slug("rated")).unwrap();
        let org = tenancies[0]
            .create_organization(owner, new)
            .await
            .unwrap()
            .id;
        let operator = PlatformOperator::new("sql-tests");
        let rpm = NewRateLimit::from_limit_type("minute_requests", Decimal::from(30)).unwrap();
        tenancies[0]
            .operator(&operator)
            .set_rate_limit(org, rpm)
            .await
            .unwrap();
        let round = || {
            let tasks: Vec<_> = tenancies
                .iter()
                .flat_map(|t| (0..4).map(move |_| t.clone()))
                .map(|t| {
                    tokio::spawn(async move {
                        let ctx = t.context(owner, org).await.unwrap();
                        let mut admitted = 0;
                        for _ in 0..(64 / instances) {
                            let outcome = t.reserve(&ctx, "tokens", Decimal::ONE).await.unwrap();
                            admitted += usize::from(matches!(outcome, ReserveOutcome::Granted(_)));
                        }
                        admitted
                    })
                })
                .collect::<Vec<_>>();
            async move {
                let mut total = 0;
                for task in tasks {
                    total += task.await.unwrap();
                }
                total
            }
        };
        assert_eq!(round().await, 30, "{instances} instances at one instant");
        clock.advance(Duration::from_secs(20));
        assert_eq!(round().await, 10, "{instances} instances 20 s later");
    }
}

/// The grants of this migration, exactly as migrations/README.md
/// documents them: (anon, authenticated, service_role) may execute.
#[tokio::test]
async fn grants_are_exactly_as_documented() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let functions = [
        (
            "public.tenancy_acquire_rate(uuid, uuid, jsonb, bigint, text)",
            (false, false, true),
        ),
        ("public.tenancy_rate_limits(uuid)", (false, true, true)),
        (
            "public.tenancy_put_rate_limit(uuid, uuid, text, text, numeric, numeric, text, timestamptz, uuid, timestamptz)",
            (false, false, true),
        ),
        (
            "public.tenancy_delete_rate_limit(uuid, uuid)",
            (false, false, true),
        ),
        (
            "tenancy.rate_limit_json(public.usage_rate_limits)",
            (false, true, true),
        ),
        ("tenancy.rate_window_us(text)", (false, false, true)),
        (
            "tenancy.rate_increment(numeric, bigint, numeric)",
            (false, false, true),
        ),
        (
            "tenancy.rate_tolerance(numeric, bigint, numeric)",
            (false, false, true),
        ),
    ];
    for (function, want) in functions {
        let row = db
            .query_one(
                "select has_function_privilege('anon', $1::text::regprocedure, 'execute'), \
                 has_function_privilege('authenticated', $1::text::regprocedure, 'execute'), \
                 has_function_privilege('service_role', $1::text::regprocedure, 'execute')",
                &[&function],
            )
            .await
            .unwrap();
        let got: (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(got, want, "{function}");
    }
    let tables = [
        ("public.usage_rate_limits", "select", (false, true, true)),
        (
            "public.usage_rate_limits",
            "insert, update, delete",
            (false, false, true),
        ),
        ("tenancy.usage_rate_state", "select", (false, false, true)),
        (
            "tenancy.usage_rate_state",
            "insert, update, delete",
            (false, false, true),
        ),
    ];
    for (table, privileges, want) in tables {
        let row = db
            .query_one(
                "select has_table_privilege('anon', $1::text, $2::text), \
                 has_table_privilege('authenticated', $1::text, $2::text), \
                 has_table_privilege('service_role', $1::text, $2::text)",
                &[&table, &privileges],
            )
            .await
            .unwrap();
        let got: (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(got, want, "{table}: {privileges}");
    }
    let rls: Vec<bool> = db
        .query(
            "select relrowsecurity from pg_class where oid in \
             ('public.usage_rate_limits'::regclass, 'tenancy.usage_rate_state'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rls, [true, true], "RLS on both tables");
}
