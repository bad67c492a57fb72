//! Row-level security and privileges: what user JWTs and anon read and
//! write across organizations, per-user usage rows, the helpers policies
//! call, and host tables adopted with `tenancy.adopt_table`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tenancy::{Action, Role};
use tenancy_testkit::pg::{self, Actor, Cluster, NIL, act, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{
    History, Reserve, TENANT_TABLES, add_member, assert_denied, claim_alert, create_org, event,
    execute_as, history_on, put_limit, record, reserve, reserve_on, snapshot_on, visible, world,
};

// ---- isolation between organizations -------------------------------------------------

#[tokio::test]
async fn members_read_their_org_and_nothing_of_another() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for table in TENANT_TABLES {
        for user in [w.owner_a, w.member_a, w.viewer_a] {
            let own = visible(&mut conn, Actor::User(user), table, w.org_a)
                .await
                .unwrap();
            assert!(
                own > 0,
                "positive control: {table} rows of the user's own org are visible"
            );
            let other = visible(&mut conn, Actor::User(user), table, w.org_b)
                .await
                .unwrap();
            assert_eq!(other, 0, "{table}: another org's rows must be invisible");
        }
        let b = visible(&mut conn, Actor::User(w.owner_b), table, w.org_b)
            .await
            .unwrap();
        assert!(b > 0, "positive control for org B in {table}");
        let a = visible(&mut conn, Actor::User(w.owner_b), table, w.org_a)
            .await
            .unwrap();
        assert_eq!(a, 0, "{table}: org A is invisible to org B's owner");
        // Whole-table reads see only the user's own orgs, too.
        let sql = format!("select count(*) from public.{table}");
        let all = act(&mut conn, Actor::User(w.owner_b), async |tx| {
            Ok(tx.query_one(&sql, &[]).await?.get::<_, i64>(0))
        })
        .await
        .unwrap();
        assert_eq!(
            all, b,
            "{table}: an unfiltered read returns only org B's rows"
        );
    }
    let stranger = create_user(&db).await;
    for table in TENANT_TABLES {
        let n = visible(&mut conn, Actor::User(stranger), table, w.org_a).await;
        assert_eq!(n.unwrap(), 0, "a stranger sees no {table} row");
    }
}

#[tokio::test]
async fn anon_reads_and_calls_nothing() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for table in TENANT_TABLES {
        assert_denied(
            visible(&mut conn, Actor::Anon, table, w.org_a).await,
            &format!("anon reading {table}"),
        );
    }
    let snapshot = act(&mut conn, Actor::Anon, async |tx| {
        snapshot_on(tx, w.org_a, None, None).await
    })
    .await;
    assert_denied(snapshot, "anon calling the snapshot RPC");
    let history = act(&mut conn, Actor::Anon, async |tx| {
        history_on(tx, History::march(w.org_a, "organization", None)).await
    })
    .await;
    assert_denied(history, "anon calling the history RPC");
    let rec = act(&mut conn, Actor::Anon, async |tx| {
        tx.query_one("select tenancy_record_usage('[]')", &[]).await
    })
    .await;
    assert_denied(rec, "anon calling the record RPC");
}

#[tokio::test]
async fn memberships_and_organizations_of_another_org_are_out_of_reach() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let newcomer = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let owner_a = Actor::User(w.owner_a);
    // IDOR: org A's owner adds someone to org B...
    let res = execute_as(
        &mut conn,
        owner_a,
        "insert into user_organizations (organization_id, user_id, role) values ($1, $2, 'member')",
        &[&w.org_b, &newcomer],
    )
    .await;
    assert_denied(res, "owner of A adding a member to B");
    // ...changes or removes memberships in B, renames or deletes B.
    for (sql, what) in [
        (
            "update user_organizations set role = 'viewer' where organization_id = $1",
            "B's memberships are out of reach",
        ),
        (
            "delete from user_organizations where organization_id = $1",
            "B's memberships stay",
        ),
        (
            "update organizations set name = 'pwned' where id = $1",
            "B's organization row is out of reach",
        ),
        ("delete from organizations where id = $1", "B stays"),
    ] {
        let res = execute_as(&mut conn, owner_a, sql, &[&w.org_b]).await;
        assert_eq!(res.unwrap(), 0, "{what}");
    }
    // Positive control: the same owner renames its own organization.
    let res = execute_as(
        &mut conn,
        owner_a,
        "update organizations set name = 'Renamed' where id = $1",
        &[&w.org_a],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
    let b: (String, i64) = db
        .query_one(
            "select name, (select count(*) from user_organizations where organization_id = $1) \
             from organizations where id = $1",
            &[&w.org_b],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(b, ("Org".to_owned(), 1), "org B is as it was");
}

#[tokio::test]
async fn usage_tables_refuse_direct_inserts() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    // Written only through the service RPCs, for any org.
    for (table, sql) in [
        (
            "org_features",
            "insert into org_features (organization_id, feature_key, enabled) values ($1, 'x', true)",
        ),
        (
            "usage_limits",
            "insert into usage_limits (organization_id, limit_type, limit_value, period) values ($1, 'daily_x', 1, 'daily')",
        ),
        (
            "usage_counters",
            "insert into usage_counters (organization_id, scope_user_id, metric, period, period_start, used) values ($1, gen_random_uuid(), 'x', 'daily', current_date, 1)",
        ),
        (
            "usage_alerts",
            "insert into usage_alerts (organization_id, scope_user_id, metric, period, period_start, threshold_percent) values ($1, gen_random_uuid(), 'x', 'daily', current_date, 80)",
        ),
        (
            "usage_reservations",
            "insert into usage_reservations (organization_id, id, user_id, metric, amount, daily_start, monthly_start, expires_at) values ($1, gen_random_uuid(), gen_random_uuid(), 'x', 1, current_date, current_date, now())",
        ),
        (
            "usage_events",
            "insert into usage_events (id, organization_id, occurred_at, daily_start, monthly_start) values (gen_random_uuid(), $1, now(), current_date, current_date)",
        ),
    ] {
        for org in [w.org_a, w.org_b] {
            let res = execute_as(&mut conn, Actor::User(w.owner_a), sql, &[&org]).await;
            assert_denied(res, &format!("owner inserting into {table}"));
        }
        // Positive control: the statement itself is fine for service_role.
        let res = execute_as(&mut conn, Actor::Service, sql, &[&w.org_a]).await;
        assert_eq!(res.unwrap(), 1, "service_role inserts into {table}");
    }
}

#[tokio::test]
async fn rpc_arguments_naming_another_org_or_user_are_refused() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let member = Actor::User(w.member_a);
    let res = act(&mut conn, member, async |tx| {
        snapshot_on(tx, w.org_b, None, None).await
    })
    .await;
    assert_denied(res, "snapshot of another org");
    let res = act(&mut conn, member, async |tx| {
        snapshot_on(tx, w.org_a, Some(w.owner_a), None).await
    })
    .await;
    assert_denied(res, "snapshot of another user");
    let own = act(&mut conn, member, async |tx| {
        snapshot_on(tx, w.org_a, Some(w.member_a), None).await
    })
    .await
    .expect("positive control: own org, own user");
    assert_eq!(own["limits"].as_array().unwrap().len(), 1);
    assert_eq!(own["counters"].as_array().unwrap().len(), 4, "{own}");

    for (h, what) in [
        (
            History::march(w.org_b, "organization", None),
            "another org's history",
        ),
        (
            History::march(w.org_a, "each_user", None),
            "every member's history",
        ),
        (
            History::march(w.org_a, "user", Some(w.owner_a)),
            "another member's history",
        ),
    ] {
        let res = act(&mut conn, member, async |tx| history_on(tx, h).await).await;
        assert_denied(res, &format!("a member reading {what}"));
    }
    let own = act(&mut conn, member, async |tx| {
        history_on(tx, History::march(w.org_a, "user", Some(w.member_a))).await
    })
    .await
    .expect("positive control: a member reads its own history");
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");
    let all = act(&mut conn, Actor::User(w.admin_a), async |tx| {
        history_on(tx, History::march(w.org_a, "each_user", None)).await
    })
    .await
    .expect("positive control: an admin reads every member's history");
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
}

/// Per-user RLS hides other members' holds from a member, but the org-wide
/// amounts of its snapshot count them: it is the snapshot service_role
/// reads for the same arguments, and no other org's holds are in it.
#[tokio::test]
async fn a_members_snapshot_counts_every_members_holds_org_wide() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for user in [w.owner_a, w.admin_a, w.member_a, w.viewer_a] {
        for for_user in [None, Some(user)] {
            let theirs = act(&mut conn, Actor::User(user), async |tx| {
                snapshot_on(tx, w.org_a, for_user, None).await
            })
            .await
            .expect("a member's own snapshot");
            let service = act(&mut conn, Actor::Service, async |tx| {
                snapshot_on(tx, w.org_a, for_user, None).await
            })
            .await
            .unwrap();
            assert_eq!(theirs, service, "user {user}, for {for_user:?}");
        }
        let own = act(&mut conn, Actor::User(user), async |tx| {
            snapshot_on(tx, w.org_a, Some(user), None).await
        })
        .await
        .unwrap();
        // Four members with 30 tokens used and a 100-token hold each.
        let org_wide = &own["limits"][0];
        assert_eq!(
            (&org_wide["used"], &org_wide["reserved"]),
            (&json!("120"), &json!("400")),
            "{own}"
        );
        let reserved: Vec<(&str, &str)> = own["counters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["scope"]["scope"].as_str().unwrap(),
                    c["reserved"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            reserved,
            [
                ("organization", "400"),
                ("user", "100"),
                ("organization", "400"),
                ("user", "100")
            ],
            "{own}"
        );
    }
}

#[tokio::test]
async fn writer_rpcs_are_not_granted_to_users() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let r = Reserve::new(w.org_a, w.member_a, 1);
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        reserve_on(tx, &r, Uuid::now_v7()).await
    })
    .await;
    assert_denied(res, "a user calling reserve");
    let batch = json!([event(w.org_b, Some(w.member_a), json!({"tokens": 1}))]);
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        tx.query_one("select tenancy_record_usage($1)", &[&batch])
            .await
    })
    .await;
    assert_denied(res, "a user calling record");
    // Each call with what it gives service_role: rows, or the SQLSTATE of
    // its own input check (the commit's event is empty).
    for (sql, for_service) in [
        (
            "select tenancy_release_reservation(org_id => $1, user_id => $2, reservation_id => gen_random_uuid(), now => now())",
            Ok(1),
        ),
        (
            "select tenancy_commit_reservation(org_id => $1, user_id => $2, reservation_id => gen_random_uuid(), event => '{}', now => now())",
            Err(SqlState::INVALID_PARAMETER_VALUE),
        ),
        (
            "select tenancy_claim_alert(org_id => $1, metric => 'tokens', period => 'daily', period_start => current_date, threshold_percent => 80, fired_at => now(), user_id => $2)",
            Ok(1),
        ),
        (
            "select * from tenancy_put_limit(limit_id => gen_random_uuid(), org_id => $1, metric => 'tokens', period => 'daily', limit_value => 1, user_id => $2)",
            Ok(1),
        ),
        (
            "select * from tenancy_update_feature(org_id => $1, feature_key => 'x', set_config => true, updated_at => now(), config => jsonb_build_object('by', $2::uuid))",
            Ok(1),
        ),
        (
            "select * from tenancy_list_organizations(max_rows => 10, search => (select slug from organizations where id = $1)) where owner_user_id = $2",
            Ok(1),
        ),
    ] {
        let res = act(&mut conn, Actor::User(w.owner_b), async |tx| {
            tx.query(sql, &[&w.org_b, &w.owner_b]).await
        })
        .await;
        assert_denied(res, sql);
        // Positive control: the same call works for service_role.
        let res = act(&mut conn, Actor::Service, async |tx| {
            tx.query(sql, &[&w.org_b, &w.owner_b]).await
        })
        .await;
        let got = res.map(|rows| rows.len()).map_err(|e| e.code().cloned());
        assert_eq!(got, for_service.map_err(Some), "service_role calling {sql}");
    }
}

/// Every row of `table` for `org`, as the service role reads them.
async fn rows_as_service(conn: &mut Client, table: &str, org: Uuid) -> Value {
    let sql = format!(
        "select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]') \
         from public.{table} t where organization_id = $1"
    );
    act(conn, Actor::Service, async |tx| {
        Ok(tx.query_one(&sql, &[&org]).await?.get::<_, Value>(0))
    })
    .await
    .unwrap()
}

/// An owner's JWT may not update, delete or truncate rows of `table`
/// (42501, no table privilege), in its own org or another; every row stays.
async fn assert_untouchable(conn: &mut Client, w: &crate::support::World, table: &str, set: &str) {
    let orgs = [(w.org_a, w.owner_a), (w.org_b, w.owner_b)];
    let mut before = Vec::new();
    for (org, owner) in orgs {
        let rows = rows_as_service(conn, table, org).await;
        let n = rows.as_array().unwrap().len();
        assert!(n > 0, "positive control: {table} has rows to attack");
        let seen = visible(conn, Actor::User(owner), table, org).await;
        assert_eq!(seen.unwrap(), n as i64, "the owner sees its {table} rows");
        before.push(rows);
    }
    for (org, whose) in [(w.org_a, "its own org"), (w.org_b, "another org")] {
        for sql in [
            format!("update public.{table} set {set} where organization_id = $1"),
            format!("delete from public.{table} where organization_id = $1"),
        ] {
            let res = execute_as(conn, Actor::User(w.owner_a), &sql, &[&org]).await;
            assert_denied(res, &format!("owner of A, {whose}: {sql}"));
        }
    }
    // RLS does not apply to truncate: the privilege alone must refuse it.
    let sql = format!("truncate public.{table}");
    let res = act(conn, Actor::User(w.owner_a), async |tx| {
        tx.batch_execute(&sql).await
    })
    .await;
    assert_denied(res, &sql);
    for ((org, owner), rows) in orgs.into_iter().zip(before) {
        let n = rows.as_array().unwrap().len() as i64;
        let after = rows_as_service(conn, table, org).await;
        assert_eq!(after, rows, "{table} rows are unchanged");
        let seen = visible(conn, Actor::User(owner), table, org).await;
        assert_eq!(seen.unwrap(), n, "{table}: the owner still sees its rows");
    }
}

/// The usage tables are written only through the service RPCs.
#[tokio::test]
async fn users_cannot_update_or_delete_usage_rows() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for (table, set) in [
        (
            "usage_events",
            "cost_usd = 0, quantities = '{}', amounts = '{}'",
        ),
        ("usage_counters", "used = 0"),
        ("usage_reservations", "amount = 1e12"),
        ("usage_alerts", "threshold_percent = 1"),
    ] {
        assert_untouchable(&mut conn, &w, table, set).await;
    }
}

#[tokio::test]
async fn org_owners_cannot_grant_features_or_raise_limits() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for sql in [
        "insert into org_features (organization_id, feature_key, enabled) values ($1, 'exports.csv', true)",
        "update org_features set enabled = true, config = '{\"quota\": 999}' where organization_id = $1",
        "delete from org_features where organization_id = $1",
        "insert into usage_limits (organization_id, limit_type, limit_value, period) values ($1, 'daily_ads', 1000, 'daily')",
        "update usage_limits set limit_value = 1e12 where organization_id = $1",
        "delete from usage_limits where organization_id = $1",
    ] {
        let res = execute_as(&mut conn, Actor::User(w.owner_a), sql, &[&w.org_a]).await;
        assert_denied(res, sql);
    }
    let value: String = db
        .query_one(
            "select limit_value::text from usage_limits where organization_id = $1",
            &[&w.org_a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(value, "1000000", "the limit is unchanged");
    // Positive control: service_role manages them.
    let res = execute_as(
        &mut conn,
        Actor::Service,
        "update org_features set enabled = false where organization_id = $1",
        &[&w.org_a],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
}

/// `select tenancy.<helper>($1, $2)` as `actor`.
async fn ask(conn: &mut Client, actor: Actor, helper: &str, org: Uuid, arg: &str) -> bool {
    let sql = format!("select tenancy.{helper}($1, $2)");
    act(conn, actor, async |tx| {
        Ok(tx.query_one(&sql, &[&org, &arg]).await?.get(0))
    })
    .await
    .unwrap()
}

/// The helpers host policies and checks call answer for the acting user:
/// `has_feature` sees only what RLS on org_features lets it see, `has_role`
/// reads the user's own membership.
#[tokio::test]
async fn has_feature_and_has_role_answer_for_the_acting_user() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    // Both orgs have veo_avatars enabled; org A also has a disabled one.
    db.execute(
        "insert into org_features (organization_id, feature_key, enabled) values ($1, 'beta', false)",
        &[&w.org_a],
    )
    .await
    .unwrap();
    let mut conn = pg.authenticator().await;
    for (actor, org, key, want) in [
        (Actor::User(w.owner_a), w.org_a, "veo_avatars", true),
        (Actor::User(w.owner_a), w.org_b, "veo_avatars", false), // not its org
        (Actor::Service, w.org_b, "veo_avatars", true),          // control
        (Actor::User(w.owner_a), w.org_a, "beta", false),        // disabled
        (Actor::User(w.owner_a), w.org_a, "exports.csv", false), // absent
    ] {
        let got = ask(&mut conn, actor, "has_feature", org, key).await;
        assert_eq!(got, want, "has_feature({org}, {key}) as {actor:?}");
    }
    for (actor, org, min_role, want) in [
        (Actor::User(w.admin_a), w.org_a, "admin", true),
        (Actor::User(w.owner_a), w.org_a, "admin", true), // owner ranks above
        (Actor::User(w.member_a), w.org_a, "admin", false),
        (Actor::User(w.member_a), w.org_a, "member", true),
        (Actor::User(w.owner_a), w.org_b, "viewer", false), // not its org
        (Actor::User(w.owner_b), w.org_b, "viewer", true),  // control
    ] {
        let got = ask(&mut conn, actor, "has_role", org, min_role).await;
        assert_eq!(got, want, "has_role({org}, {min_role}) as {actor:?}");
    }
}

// ---- per-user usage rows ---------------------------------------------------------------

/// The per-user usage tables and the column naming their user (null or the
/// nil uuid: org-wide).
const PER_USER_TABLES: [(&str, &str); 5] = [
    ("usage_limits", "user_id"),
    ("usage_events", "user_id"),
    ("usage_counters", "scope_user_id"),
    ("usage_reservations", "user_id"),
    ("usage_alerts", "scope_user_id"),
];

/// Org A, whose owner, admin, member and viewer (each also with rows of
/// their own in every per-user table, beside org-wide ones), and org B.
#[derive(Debug)]
struct PerUser {
    org_a: Uuid,
    org_b: Uuid,
    /// Org A's people and their roles.
    people: Vec<(Uuid, Role)>,
    owner_b: Uuid,
    names: BTreeMap<Uuid, String>,
}

impl PerUser {
    async fn new(db: &Client) -> PerUser {
        let owner_b = create_user(db).await;
        let org_b = create_org(db, owner_b).await;
        let mut people = Vec::new();
        let mut names = BTreeMap::from([(NIL, "org-wide".to_owned())]);
        let owner = create_user(db).await;
        let org_a = create_org(db, owner).await;
        for role in Role::ALL {
            let user = if role == Role::Owner {
                owner
            } else {
                create_user(db).await
            };
            if role != Role::Owner {
                add_member(db, org_a, user, role.as_str()).await;
            }
            people.push((user, role));
            names.insert(user, role.as_str().to_owned());
        }
        for (org, users) in [
            (org_a, people.iter().map(|p| p.0).collect()),
            (org_b, vec![owner_b]),
        ] {
            put_limit(db, org, None, "tokens", "monthly", 1_000_000, "hard").await;
            record(db, &json!([event(org, None, json!({"tokens": 1}))])).await;
            claim_alert(db, org, None, 50).await;
            for user in users {
                put_limit(db, org, Some(user), "tokens", "daily", 1000, "hard").await;
                record(db, &json!([event(org, Some(user), json!({"tokens": 2}))])).await;
                let (_, res) = reserve(db, &Reserve::new(org, user, 3)).await;
                assert_eq!(res["granted"], true, "{res}");
                claim_alert(db, org, Some(user), 50).await;
            }
        }
        PerUser {
            org_a,
            org_b,
            people,
            owner_b,
            names,
        }
    }

    fn named(&self, set: &BTreeSet<Uuid>) -> Vec<&str> {
        set.iter()
            .map(|id| self.names.get(id).map_or("someone else", String::as_str))
            .collect()
    }
}

/// Whose rows of `table` in `org` `actor` sees: the user column's values,
/// with org-wide rows as the nil uuid.
async fn whose(
    conn: &mut Client,
    actor: Actor,
    (table, column): (&str, &str),
    org: Uuid,
) -> Result<BTreeSet<Uuid>, Error> {
    let sql = format!(
        "select distinct coalesce({column}, $2) from public.{table} where organization_id = $1"
    );
    act(conn, actor, async |tx| {
        let rows = tx.query(&sql, &[&org, &NIL]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

/// Where per-user usage rows are visible otherwise than the Rust rule says:
/// a member of any role sees the org-wide rows and its own, and those whose
/// role may `ViewMemberUsage` (admins, owners) every row of their org;
/// nobody sees another org's, anon nothing. Empty when they agree.
pub async fn per_user_disagreements(db: &Client, conn: &mut Client) -> Vec<String> {
    let s = PerUser::new(db).await;
    let mut problems = Vec::new();
    for table in PER_USER_TABLES {
        let all = whose(conn, Actor::Service, table, s.org_a).await.unwrap();
        let everyone: BTreeSet<Uuid> = s.people.iter().map(|p| p.0).collect();
        assert!(
            everyone.is_subset(&all),
            "positive control: {table:?} has rows of every member"
        );
        for &(user, role) in &s.people {
            let want: BTreeSet<Uuid> = all
                .iter()
                .copied()
                .filter(|w| *w == NIL || *w == user || role.can(Action::ViewMemberUsage))
                .collect();
            let seen = whose(conn, Actor::User(user), table, s.org_a)
                .await
                .unwrap();
            if seen != want {
                problems.push(format!(
                    "{}: the {role} sees the rows of {:?}, not {:?}",
                    table.0,
                    s.named(&seen),
                    s.named(&want)
                ));
            }
        }
        let outsiders = [
            (Actor::User(s.owner_b), s.org_a, "org B's owner, org A"),
            (Actor::User(s.people[0].0), s.org_b, "org A's owner, org B"),
            (
                Actor::User(create_user(db).await),
                s.org_a,
                "a stranger, org A",
            ),
        ];
        for (actor, org, who) in outsiders {
            let seen = whose(conn, actor, table, org).await.unwrap();
            if !seen.is_empty() {
                problems.push(format!(
                    "{}: {who}: sees {} owners' rows",
                    table.0,
                    seen.len()
                ));
            }
        }
        match whose(conn, Actor::Anon, table, s.org_a).await {
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
            other => problems.push(format!("{}: anon reads: {other:?}", table.0)),
        }
    }
    problems
}

#[tokio::test]
async fn per_user_usage_rows_are_for_their_user_and_admins() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let problems = per_user_disagreements(&db, &mut conn).await;
    assert!(problems.is_empty(), "{problems:#?}");

    // A few answers by hand, so that the rule and the SQL cannot be wrong
    // the same way: a member sees the org-wide events and its own, an
    // admin all five kinds of owner.
    let s = PerUser::new(&db).await;
    let (member, admin) = (s.people[2].0, s.people[1].0);
    let events = ("usage_events", "user_id");
    let seen = whose(&mut conn, Actor::User(member), events, s.org_a).await;
    assert_eq!(seen.unwrap(), BTreeSet::from([NIL, member]));
    let seen = whose(&mut conn, Actor::User(admin), events, s.org_a).await;
    assert_eq!(seen.unwrap().len(), 5, "org-wide and four members");
    let holds = ("usage_reservations", "user_id");
    let seen = whose(&mut conn, Actor::User(member), holds, s.org_a).await;
    assert_eq!(
        seen.unwrap(),
        BTreeSet::from([member]),
        "holds are never org-wide"
    );
}

// ---- adopting a host table ---------------------------------------------------------------

/// Its own database (adopting adds a table to public) with `brands`
/// adopted: three brands backfilled into "Default", whose owner (added
/// afterwards by the operator), member and viewer are users; another org
/// with one brand of its own.
#[derive(Debug)]
struct Brands {
    name: String,
    db: Client,
    default_org: Uuid,
    other_org: Uuid,
    member: Uuid,
    viewer: Uuid,
    other: Uuid,
}

async fn brands(pg: &Cluster) -> Brands {
    let name = format!("brands_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    pg::apply_all(&db).await.unwrap();
    db.batch_execute(
        "create table public.brands (id bigserial primary key, name text not null, created_at timestamptz default now());
         insert into public.brands (name) values ('Acme Soap'), ('Acme Rope'), ('Acme Anvils');",
    )
    .await
    .unwrap();
    let default_org: Option<Uuid> = db
        .query_one("select tenancy.adopt_table('public.brands')", &[])
        .await
        .unwrap()
        .get(0);
    let default_org = default_org.expect("a default org was needed");
    let [owner, member, viewer, other] = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    add_member(&db, default_org, owner, "owner").await;
    add_member(&db, default_org, member, "member").await;
    add_member(&db, default_org, viewer, "viewer").await;
    let other_org = create_org(&db, other).await;
    db.execute(
        "insert into brands (name, organization_id) values ('Other Co', $1)",
        &[&other_org],
    )
    .await
    .unwrap();
    Brands {
        name,
        db,
        default_org,
        other_org,
        member,
        viewer,
        other,
    }
}

/// The brands `actor` sees.
async fn brand_count(conn: &mut Client, actor: Actor) -> i64 {
    act(conn, actor, async |tx| {
        Ok(tx
            .query_one("select count(*) from brands", &[])
            .await?
            .get(0))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn adopting_brands_backfills_default_and_turns_on_rls() {
    let Some(pg) = Cluster::shared() else { return };
    let b = brands(pg).await;
    let db = &b.db;
    // Twice is harmless and needs no org any more.
    let again: Option<Uuid> = db
        .query_one(
            "select tenancy.adopt_table('public.brands', 'Default')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, None);
    let row = db
        .query_one(
            "select o.name, o.slug, (select count(*) from brands b where b.organization_id = o.id), \
             (select count(*) from brands where organization_id is null) \
             from organizations o where o.id = $1",
            &[&b.default_org],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Default");
    assert_eq!(row.get::<_, String>(1), "default");
    assert_eq!(row.get::<_, i64>(2), 3);
    assert_eq!(row.get::<_, i64>(3), 0);
    let shape = db
        .query_one(
            "select a.attnotnull, c.relrowsecurity, \
             exists (select 1 from pg_index i where i.indrelid = c.oid and i.indkey[0] = a.attnum), \
             (select count(*) from pg_policy p where p.polrelid = c.oid) \
             from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = 'organization_id' \
             where c.oid = 'public.brands'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert!(shape.get::<_, bool>(0), "organization_id is not null");
    assert!(shape.get::<_, bool>(1), "RLS enabled");
    assert!(shape.get::<_, bool>(2), "organization_id indexed");
    assert_eq!(shape.get::<_, i64>(3), 4, "four standard policies, once");
    crate::catalog::assert_catalog(db).await;

    // Deleting an organization takes its brands with it.
    db.execute("delete from organizations where id = $1", &[&b.other_org])
        .await
        .unwrap();
    let left: i64 = db
        .query_one("select count(*) from brands", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 3);
}

#[tokio::test]
async fn adopted_rows_are_read_and_written_in_their_org_only() {
    let Some(pg) = Cluster::shared() else { return };
    let b = brands(pg).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(&b.name)).await;
    // Positive control: members and viewers see their org's brands, only those.
    assert_eq!(brand_count(&mut conn, Actor::User(b.member)).await, 3);
    assert_eq!(brand_count(&mut conn, Actor::User(b.viewer)).await, 3);
    assert_eq!(brand_count(&mut conn, Actor::User(b.other)).await, 1);
    let stranger = Actor::User(create_user(&b.db).await);
    assert_eq!(
        brand_count(&mut conn, stranger).await,
        0,
        "a stranger sees nothing"
    );
    assert_eq!(
        brand_count(&mut conn, Actor::Anon).await,
        0,
        "anon sees no brand"
    );

    // A member writes in its org...
    let member = Actor::User(b.member);
    let wrote = act(&mut conn, member, async |tx| {
        tx.execute(
            "insert into brands (name, organization_id) values ('New', $1)",
            &[&b.default_org],
        )
        .await?;
        tx.execute(
            "update brands set name = name || '!' where organization_id = $1",
            &[&b.default_org],
        )
        .await
    })
    .await;
    assert_eq!(wrote.unwrap(), 4);
    // ...but not into another org (IDOR), nor move a row there, nor
    // touch another org's rows.
    let insert = "insert into brands (name, organization_id) values ('Planted', $1)";
    let res = execute_as(&mut conn, member, insert, &[&b.other_org]).await;
    assert_denied(res, "member inserting a brand into another org");
    let moved = "update brands set organization_id = $1 where organization_id = $2";
    let res = execute_as(&mut conn, member, moved, &[&b.other_org, &b.default_org]).await;
    assert_denied(res, "member moving brands into another org");
    let delete = "delete from brands where organization_id = $1";
    let res = execute_as(&mut conn, member, delete, &[&b.other_org]).await;
    assert_eq!(res.unwrap(), 0, "another org's brands are out of reach");

    // A viewer reads only.
    let viewer = Actor::User(b.viewer);
    let insert = "insert into brands (name, organization_id) values ('V', $1)";
    let res = execute_as(&mut conn, viewer, insert, &[&b.default_org]).await;
    assert_denied(res, "viewer inserting a brand");
    let res = execute_as(&mut conn, viewer, "update brands set name = 'V'", &[]).await;
    assert_eq!(res.unwrap(), 0, "a viewer updates nothing");
    let res = execute_as(&mut conn, viewer, "delete from brands", &[]).await;
    assert_eq!(res.unwrap(), 0, "a viewer deletes nothing");
    assert_eq!(brand_count(&mut conn, viewer).await, 4);
    assert_eq!(brand_count(&mut conn, Actor::User(b.other)).await, 1);
}

/// A member of both organizations passes RLS on both sides of a move, so
/// only the keep_organization_id trigger stands in its way (and in
/// service_role's, which bypasses RLS).
#[tokio::test]
async fn adopted_rows_never_move_between_orgs() {
    let Some(pg) = Cluster::shared() else { return };
    let b = brands(pg).await;
    let db = &b.db;
    let mut conn = pg::connect_url(&pg.authenticator_url(&b.name)).await;
    let both = create_user(db).await;
    add_member(db, b.default_org, both, "member").await;
    add_member(db, b.other_org, both, "member").await;
    let renamed = execute_as(
        &mut conn,
        Actor::User(both),
        "update brands set name = name where organization_id = any ($1)",
        &[&vec![b.default_org, b.other_org]],
    )
    .await;
    assert_eq!(
        renamed.unwrap(),
        4,
        "positive control: it writes rows of both organizations"
    );
    let brand: i64 = db
        .query_one(
            "select min(id) from brands where organization_id = $1",
            &[&b.default_org],
        )
        .await
        .unwrap()
        .get(0);
    let brand_row = async || -> Value {
        db.query_one(
            "select to_jsonb(b) from brands b where b.id = $1",
            &[&brand],
        )
        .await
        .unwrap()
        .get(0)
    };
    let before = brand_row().await;
    let move_brand = "update brands set organization_id = $1 where id = $2";
    for actor in [Actor::User(both), Actor::Service] {
        let res = execute_as(&mut conn, actor, move_brand, &[&b.other_org, &brand]).await;
        assert_eq!(
            crate::support::message(&res).as_deref(),
            Some("a row of brands cannot move to another organization"),
            "{actor:?}: refused by the trigger"
        );
        assert_denied(res, &format!("{actor:?} moving a brand between its orgs"));
        assert_eq!(brand_row().await, before, "the brand did not move");
    }
}
