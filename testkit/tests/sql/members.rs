//! Organizations, memberships and features: creating an organization (and
//! its owner), the membership role rules as user JWTs meet them, deleting,
//! listing organizations, and updating a feature.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tenancy_testkit::pg::{Actor, Cluster, act, create_user};
use tenancy_testkit::unique_slug;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{
    TENANT_TABLES, assert_code, assert_denied, assert_waits_for, at, backend_pid, execute_as, noon,
    role_of, snapshot_on, usage_rows, visible, world,
};

const SET_ROLE: &str =
    "update user_organizations set role = $3 where organization_id = $1 and user_id = $2";
const INSERT: &str =
    "insert into user_organizations (organization_id, user_id, role) values ($1, $2, $3)";
const REMOVE: &str = "delete from user_organizations where organization_id = $1 and user_id = $2";

/// `tenancy_create_organization` as `actor`, returning the new row's id.
async fn create_as(
    conn: &mut Client,
    actor: Actor,
    args: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Uuid, Error> {
    let sql = format!("select id from tenancy_create_organization({args})");
    act(conn, actor, async |tx| {
        Ok(tx.query_one(&sql, params).await?.get(0))
    })
    .await
}

// ---- creating organizations ---------------------------------------------------------

#[tokio::test]
async fn a_user_creates_an_organization_and_becomes_its_owner() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let alice = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let args = "name => ' Acme ', slug => $1, timezone => 'Asia/Tokyo'";
    let org = create_as(&mut conn, Actor::User(alice), args, &[&unique_slug("acme")])
        .await
        .expect("a user creates its own organization");
    let row = db
        .query_one(
            "select o.name, o.timezone, o.owner_user_id, m.role from organizations o \
             join user_organizations m on m.organization_id = o.id where o.id = $1",
            &[&org],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Acme");
    assert_eq!(row.get::<_, String>(1), "Asia/Tokyo");
    assert_eq!(row.get::<_, Uuid>(2), alice);
    assert_eq!(row.get::<_, String>(3), "owner");
}

#[tokio::test]
async fn a_user_cannot_choose_a_new_organizations_id() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let alice = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let wanted = Uuid::now_v7();
    let args = "name => 'Mine', slug => $1, id => $2";
    let chosen = create_as(
        &mut conn,
        Actor::User(alice),
        args,
        &[&unique_slug("mine"), &wanted],
    )
    .await
    .expect("a user creates an organization");
    assert_ne!(chosen, wanted, "the id a user asked for is ignored");
    // Nor by inserting the row itself (no `returning`: the owner row comes
    // from an after-insert trigger, so the select policy would refuse the
    // returned row), and its created_at is the insert's time.
    let direct_slug = unique_slug("direct");
    let long_ago = at("2001-01-01T00:00:00Z");
    let insert = "insert into organizations (id, name, slug, owner_user_id, created_at) \
                  values ($1, 'Direct', $2, $3, $4)";
    let inserted = execute_as(
        &mut conn,
        Actor::User(alice),
        insert,
        &[&wanted, &direct_slug, &alice, &long_ago],
    )
    .await;
    assert_eq!(inserted.unwrap(), 1, "a user inserts its own organization");
    let stored = db
        .query_one(
            "select id, created_at, (select count(*) from organizations where id = $2) \
             from organizations where slug = $1",
            &[&direct_slug, &wanted],
        )
        .await
        .unwrap();
    assert_ne!(
        stored.get::<_, Uuid>(0),
        wanted,
        "the id a user inserts is replaced"
    );
    assert_ne!(
        stored.get::<_, DateTime<Utc>>(1),
        long_ago,
        "the created_at a user inserts is replaced"
    );
    assert_eq!(
        stored.get::<_, i64>(2),
        0,
        "no organization has the chosen id"
    );
    // Positive control: service_role keeps the id and created_at it gives.
    let kept = act(&mut conn, Actor::Service, async |tx| {
        tx.query_one(
            "insert into organizations (id, name, slug, owner_user_id, created_at) \
             values ($1, 'Kept', $2, $3, $4) returning id, created_at",
            &[&wanted, &unique_slug("kept"), &alice, &long_ago],
        )
        .await
    })
    .await
    .unwrap();
    assert_eq!(kept.get::<_, Uuid>(0), wanted);
    assert_eq!(kept.get::<_, DateTime<Utc>>(1), long_ago);
}

#[tokio::test]
async fn organization_slugs_and_time_zones_are_checked() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (alice, bob) = (create_user(&db).await, create_user(&db).await);
    let mut conn = pg.authenticator().await;
    let slug = unique_slug("acme");
    let args = "name => 'X', slug => $1";
    create_as(&mut conn, Actor::User(alice), args, &[&slug])
        .await
        .expect("positive control: a free, valid slug");
    let taken = create_as(&mut conn, Actor::User(bob), args, &[&slug]).await;
    assert_code(taken, SqlState::UNIQUE_VIOLATION, "taken slug");
    let long = "a".repeat(64);
    for bad in ["Acme", "-acme", "acme--x", "acme-", long.as_str()] {
        let res = create_as(&mut conn, Actor::User(bob), args, &[&bad]).await;
        assert_code(res, SqlState::CHECK_VIOLATION, &format!("slug {bad:?}"));
    }
    let bad_tz = create_as(
        &mut conn,
        Actor::User(bob),
        "name => 'X', slug => $1, timezone => 'Mars/Olympus'",
        &[&unique_slug("tz")],
    )
    .await;
    assert_code(bad_tz, SqlState::CHECK_VIOLATION, "unknown time zone");
}

#[tokio::test]
async fn users_create_organizations_for_themselves_only() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let (alice, bob) = (create_user(&db).await, create_user(&db).await);
    let mut conn = pg.authenticator().await;
    let for_alice = create_as(
        &mut conn,
        Actor::User(bob),
        "name => 'X', slug => $1, owner_user_id => $2",
        &[&unique_slug("x"), &alice],
    )
    .await;
    assert_denied(for_alice, "creating an org owned by someone else (RPC)");
    let direct = execute_as(
        &mut conn,
        Actor::User(bob),
        "insert into organizations (name, slug, owner_user_id) values ('X', $1, $2)",
        &[&unique_slug("x"), &alice],
    )
    .await;
    assert_denied(direct, "inserting an org owned by someone else");
    let args = "name => 'X', slug => $1";
    let anon = create_as(&mut conn, Actor::Anon, args, &[&unique_slug("x")]).await;
    assert_denied(anon, "anon creating an org");
    let service = create_as(&mut conn, Actor::Service, args, &[&unique_slug("x")]).await;
    assert_code(
        service,
        SqlState::INVALID_PARAMETER_VALUE,
        "service_role names no owner",
    );
    let own = create_as(
        &mut conn,
        Actor::User(bob),
        "name => 'X', slug => $1, owner_user_id => $2",
        &[&unique_slug("x"), &bob],
    )
    .await;
    assert!(
        own.is_ok(),
        "positive control: naming itself is fine: {own:?}"
    );
}

/// The owner deletes the organization; memberships (last owner included)
/// and the usage log go with it (usage_events has no foreign key; a delete
/// trigger does it).
#[tokio::test]
async fn deleting_an_organization_takes_its_rows_with_it() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    assert!(usage_rows(&db, w.org_a).await.0 > 0, "positive control");
    let delete = "delete from organizations where id = $1";
    let res = execute_as(&mut conn, Actor::User(w.admin_a), delete, &[&w.org_a]).await;
    assert_eq!(res.unwrap(), 0, "an admin deletes nothing");
    let res = execute_as(&mut conn, Actor::User(w.owner_a), delete, &[&w.org_a]).await;
    assert_eq!(res.unwrap(), 1);
    for table in TENANT_TABLES {
        let left = visible(&mut conn, Actor::Service, table, w.org_a).await;
        assert_eq!(left.unwrap(), 0, "{table} rows of the deleted org");
    }
    assert_eq!(usage_rows(&db, w.org_b).await.0, 1, "org B keeps its usage");
}

// ---- membership rules ---------------------------------------------------------------

#[tokio::test]
async fn nobody_raises_their_own_role() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for (user, to) in [
        (w.member_a, "admin"),
        (w.viewer_a, "member"),
        (w.admin_a, "owner"),
    ] {
        let res = execute_as(
            &mut conn,
            Actor::User(user),
            SET_ROLE,
            &[&w.org_a, &user, &to],
        )
        .await;
        assert_denied(res, &format!("raising one's own role to {to}"));
    }
    assert_eq!(
        role_of(&db, w.org_a, w.member_a).await.as_deref(),
        Some("member")
    );
    assert_eq!(
        role_of(&db, w.org_a, w.admin_a).await.as_deref(),
        Some("admin")
    );
    // Positive control: lowering it is fine.
    let res = execute_as(
        &mut conn,
        Actor::User(w.member_a),
        SET_ROLE,
        &[&w.org_a, &w.member_a, &"viewer"],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
}

#[tokio::test]
async fn viewers_and_members_manage_nobody() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let someone = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let viewer = Actor::User(w.viewer_a);
    let res = execute_as(&mut conn, viewer, INSERT, &[&w.org_a, &someone, &"viewer"]).await;
    assert_denied(res, "a viewer adding a member");
    let res = execute_as(
        &mut conn,
        viewer,
        SET_ROLE,
        &[&w.org_a, &w.member_a, &"viewer"],
    )
    .await;
    assert_eq!(res.unwrap(), 0, "a viewer re-roles nobody");
    let rename = "update organizations set name = 'V' where id = $1";
    let res = execute_as(&mut conn, viewer, rename, &[&w.org_a]).await;
    assert_eq!(res.unwrap(), 0, "a viewer renames nothing");
    let member = Actor::User(w.member_a);
    let res = execute_as(&mut conn, member, INSERT, &[&w.org_a, &someone, &"viewer"]).await;
    assert_denied(res, "a member adding a member");
    let res = execute_as(&mut conn, member, REMOVE, &[&w.org_a, &w.viewer_a]).await;
    assert_eq!(res.unwrap(), 0, "a member removes nobody");
    assert_eq!(
        role_of(&db, w.org_a, w.member_a).await.as_deref(),
        Some("member")
    );
    assert_eq!(
        role_of(&db, w.org_a, w.viewer_a).await.as_deref(),
        Some("viewer")
    );
}

#[tokio::test]
async fn nobody_adds_themselves() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let someone = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    for role in ["owner", "viewer"] {
        let res = execute_as(
            &mut conn,
            Actor::User(someone),
            INSERT,
            &[&w.org_a, &someone, &role],
        )
        .await;
        assert_denied(res, &format!("a stranger inserting itself as {role}"));
    }
    assert_eq!(role_of(&db, w.org_a, someone).await, None);
}

#[tokio::test]
async fn admins_manage_members_and_viewers_only() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let someone = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let admin = Actor::User(w.admin_a);
    for (sql, target, role, what) in [
        (SET_ROLE, w.member_a, "owner", "granting owner"),
        (INSERT, someone, "owner", "adding an owner"),
        (INSERT, someone, "admin", "adding an admin"),
        (SET_ROLE, w.owner_a, "member", "demoting an owner"),
    ] {
        let res = execute_as(&mut conn, admin, sql, &[&w.org_a, &target, &role]).await;
        assert_denied(res, &format!("an admin {what}"));
    }
    let res = execute_as(&mut conn, admin, REMOVE, &[&w.org_a, &w.owner_a]).await;
    assert_denied(res, "an admin removing an owner");
    // Positive controls: an admin manages members and viewers...
    let res = act(&mut conn, admin, async |tx| {
        tx.execute(INSERT, &[&w.org_a, &someone, &"viewer"]).await?;
        tx.execute(SET_ROLE, &[&w.org_a, &someone, &"member"]).await
    })
    .await;
    assert_eq!(res.unwrap(), 1);
    assert_eq!(
        role_of(&db, w.org_a, someone).await.as_deref(),
        Some("member")
    );
    // ...and anyone lowers their own role.
    let res = execute_as(
        &mut conn,
        Actor::User(someone),
        SET_ROLE,
        &[&w.org_a, &someone, &"viewer"],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
    let res = execute_as(&mut conn, admin, REMOVE, &[&w.org_a, &someone]).await;
    assert_eq!(res.unwrap(), 1, "an admin removes a viewer");
}

#[tokio::test]
async fn owners_grant_and_revoke_owner() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let owner = Actor::User(w.owner_a);
    let res = execute_as(
        &mut conn,
        owner,
        SET_ROLE,
        &[&w.org_a, &w.admin_a, &"owner"],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
    assert_eq!(
        role_of(&db, w.org_a, w.admin_a).await.as_deref(),
        Some("owner")
    );
    let res = execute_as(
        &mut conn,
        owner,
        SET_ROLE,
        &[&w.org_a, &w.admin_a, &"admin"],
    )
    .await;
    assert_eq!(
        res.unwrap(),
        1,
        "an owner demotes another owner while one remains"
    );
    let res = execute_as(&mut conn, owner, REMOVE, &[&w.org_a, &w.admin_a]).await;
    assert_eq!(res.unwrap(), 1, "an owner removes an admin");
    assert_eq!(role_of(&db, w.org_a, w.admin_a).await, None);
}

/// Not by leaving, not by demotion, not even for service_role.
#[tokio::test]
async fn the_last_owner_stays() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    for actor in [Actor::User(w.owner_a), Actor::Service] {
        let res = execute_as(&mut conn, actor, REMOVE, &[&w.org_a, &w.owner_a]).await;
        assert_denied(res, &format!("{actor:?} removing the last owner"));
        for to in ["admin", "member"] {
            let res = execute_as(&mut conn, actor, SET_ROLE, &[&w.org_a, &w.owner_a, &to]).await;
            assert_denied(res, &format!("{actor:?} demoting the last owner to {to}"));
        }
    }
    assert_eq!(
        role_of(&db, w.org_a, w.owner_a).await.as_deref(),
        Some("owner")
    );
    // Positive control: with a second owner, the first may leave.
    let owner = Actor::User(w.owner_a);
    let res = execute_as(
        &mut conn,
        owner,
        SET_ROLE,
        &[&w.org_a, &w.admin_a, &"owner"],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
    let res = execute_as(&mut conn, owner, REMOVE, &[&w.org_a, &w.owner_a]).await;
    assert_eq!(res.unwrap(), 1);
}

#[tokio::test]
async fn memberships_never_move() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let move_org = "update user_organizations set organization_id = $1 \
                    where organization_id = $2 and user_id = $3";
    let move_user = "update user_organizations set user_id = $1 \
                     where organization_id = $2 and user_id = $3";
    // Users are stopped by column privileges, service_role by the trigger.
    for actor in [Actor::User(w.owner_a), Actor::Service] {
        let res = execute_as(
            &mut conn,
            actor,
            move_org,
            &[&w.org_b, &w.org_a, &w.member_a],
        )
        .await;
        assert_denied(
            res,
            &format!("{actor:?} moving a membership to another org"),
        );
        let res = execute_as(
            &mut conn,
            actor,
            move_user,
            &[&w.owner_b, &w.org_a, &w.member_a],
        )
        .await;
        assert_denied(
            res,
            &format!("{actor:?} moving a membership to another user"),
        );
    }
    assert_eq!(
        role_of(&db, w.org_a, w.member_a).await.as_deref(),
        Some("member")
    );
    let members_of_b: Vec<(Uuid, String)> = db
        .query(
            "select user_id, role from user_organizations where organization_id = $1",
            &[&w.org_b],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        members_of_b,
        [(w.owner_b, "owner".to_owned())],
        "org B keeps exactly its own membership"
    );
}

#[tokio::test]
async fn a_removed_member_reads_nothing() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let before = visible(&mut conn, Actor::User(w.member_a), "usage_events", w.org_a).await;
    assert_eq!(before.unwrap(), 1, "positive control: its own event");
    let res = execute_as(
        &mut conn,
        Actor::User(w.owner_a),
        REMOVE,
        &[&w.org_a, &w.member_a],
    )
    .await;
    assert_eq!(res.unwrap(), 1);
    for table in TENANT_TABLES {
        let n = visible(&mut conn, Actor::User(w.member_a), table, w.org_a).await;
        assert_eq!(n.unwrap(), 0, "a removed member still sees {table}");
    }
    let res = act(&mut conn, Actor::User(w.member_a), async |tx| {
        snapshot_on(tx, w.org_a, None, None).await
    })
    .await;
    assert_denied(res, "a removed member reading usage");
}

// ---- listing organizations -------------------------------------------------------------

/// The names `tenancy_list_organizations` returns.
async fn list(db: &Client, max: i32, skip: i32, search: &str) -> Vec<String> {
    db.query(
        "select name from tenancy_list_organizations(max_rows => $1, skip_rows => $2, search => $3)",
        &[&max, &skip, &search],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn organizations_list_by_name_and_search_literally() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let t = &Uuid::new_v4().simple().to_string()[..12];
    let names = [
        format!("Zeta {t}"),
        format!("alpha {t}"),
        format!("Beta {t}"),
        format!("Beta {t}"),
        format!("Sale 50%_off {t}"),
        format!("Sale 50xyzoff {t}"),
        format!("Ärger {t}"),
    ];
    let mut rows: Vec<(String, Uuid)> = Vec::new();
    for name in names.iter().cloned().chain(["Hidden".to_owned()]) {
        let id = Uuid::new_v4();
        let slug = if name == "Hidden" {
            format!("{t}-slug-only")
        } else {
            unique_slug("list")
        };
        db.query(
            "select from tenancy_create_organization(name => $1, slug => $2, id => $3, owner_user_id => $4)",
            &[&name, &slug, &id, &owner],
        )
        .await
        .unwrap();
        rows.push((name, id));
    }
    // By name in byte order (capitals, then lowercase, then non-ASCII),
    // then by id; the slug matches too; ASCII case is ignored.
    rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let ids: Vec<Uuid> = db
        .query(
            "select id from tenancy_list_organizations(max_rows => 100, search => $1)",
            &[&t.to_uppercase()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let sorted: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(list(&db, 2, 1, t).await, sorted[1..3], "a page");
    assert_eq!(
        list(&db, 100, 8, t).await,
        Vec::<String>::new(),
        "past the end"
    );
    // `%` and `_` are literal; only ASCII letters fold.
    assert_eq!(
        list(&db, 100, 0, &format!("50%_OFF {t}")).await,
        [names[4].clone()]
    );
    assert_eq!(
        list(&db, 100, 0, &format!("ÄRGER {t}")).await,
        [names[6].clone()]
    );
    assert_eq!(
        list(&db, 100, 0, &format!("ärger {t}")).await,
        Vec::<String>::new()
    );
}

// ---- features ------------------------------------------------------------------------------

const UPDATE_FEATURE: &str = "select enabled, config, updated_at from tenancy_update_feature(\
     org_id => $1, feature_key => $2, set_config => $3, updated_at => $4, enabled => $5, \
     config => $6)";

/// A feature change: `enabled` and `config` when given (`set_config`).
async fn update_feature(
    db: &Client,
    org: Uuid,
    enabled: Option<bool>,
    config: Option<Option<Value>>,
    at: DateTime<Utc>,
) -> Result<(bool, Option<Value>, DateTime<Utc>), Error> {
    let set_config = config.is_some();
    let config = config.flatten();
    db.query_one(
        UPDATE_FEATURE,
        &[&org, &"veo_avatars", &set_config, &at, &enabled, &config],
    )
    .await
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test]
async fn feature_updates_write_only_what_they_name() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let org = crate::support::create_org(&db, create_user(&db).await).await;
    let t = |minutes| noon() + Duration::minutes(minutes);
    let quota = json!({"quota": 3});
    // A new row starts disabled with a null config, and takes what is given.
    let row = update_feature(&db, org, None, Some(Some(quota.clone())), t(1)).await;
    assert_eq!(row.unwrap(), (false, Some(quota.clone()), t(1)));
    let row = update_feature(&db, org, Some(true), None, t(2)).await;
    assert_eq!(
        row.unwrap(),
        (true, Some(quota.clone()), t(2)),
        "config kept"
    );
    let row = update_feature(&db, org, None, Some(None), t(3)).await;
    assert_eq!(
        row.unwrap(),
        (true, None, t(3)),
        "set_config without config: SQL null"
    );
    let row = update_feature(&db, org, Some(false), None, t(4)).await;
    assert_eq!(row.unwrap(), (false, None, t(4)));
    let stored: (bool, Option<Value>, DateTime<Utc>) = db
        .query_one(
            "select enabled, config, updated_at from org_features where organization_id = $1",
            &[&org],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(
        stored,
        (false, None, t(4)),
        "what the RPC returned is stored"
    );
    let missing = update_feature(&db, Uuid::new_v4(), Some(true), None, t(5)).await;
    assert_code(
        missing,
        SqlState::FOREIGN_KEY_VIOLATION,
        "a missing organization",
    );
    let bad = db
        .query_one(
            UPDATE_FEATURE,
            &[&org, &"Bad Key", &false, &t(5), &Some(true), &None::<Value>],
        )
        .await;
    assert_code(
        bad,
        SqlState::CHECK_VIOLATION,
        "a key breaking FeatureKey::PATTERN",
    );
}

/// Two concurrent calls changing different fields both land: the second
/// waits for the first's row lock, then updates the row it committed.
#[tokio::test]
async fn concurrent_feature_updates_of_different_fields_both_land() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let org = crate::support::create_org(&db, create_user(&db).await).await;
    update_feature(&db, org, Some(false), Some(None), noon())
        .await
        .unwrap();
    let (a, b) = (pg.superuser().await, pg.superuser().await);
    let (a_pid, b_pid) = (backend_pid(&a).await, backend_pid(&b).await);
    a.batch_execute("begin").await.unwrap();
    update_feature(&a, org, Some(true), None, noon())
        .await
        .unwrap();
    let quota = Some(json!({"quota": 9}));
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&org, &"veo_avatars", &true, &noon(), &None::<bool>, &quota];
    let mut config = std::pin::pin!(b.query_one(UPDATE_FEATURE, &params));
    assert_waits_for(&mut config, &db, b_pid, a_pid, "the config update").await;
    a.batch_execute("commit").await.unwrap();
    let row = tokio::time::timeout(crate::support::RACE_LIMIT, config)
        .await
        .expect("the config update finishes once the first commits")
        .unwrap();
    assert!(row.get::<_, bool>(0), "the first call's enabled stays");
    assert_eq!(
        row.get::<_, Option<Value>>(1),
        quota,
        "the second call's config lands"
    );
}
