//! The migrations after the baseline: the store functions (one per store
//! primitive that was a table request), the schema version, the guard
//! against a host table of the same name, the metric domain, and upgrading
//! a database built from the baseline alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tenancy::limits::LimitScope;
use tenancy::{Feature, Limit, Membership, Organization, Role};
use tenancy_testkit::pg::{self, Actor, Cluster, act, create_user};
use tenancy_testkit::unique_slug;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::catalog::assert_catalog;
use crate::support::{
    Reserve, TENANT_TABLES, add_member, assert_code, assert_denied, at, call_as, claim_alert,
    commit_on, create_org, event, hold_event, message, noon, put_limit, record, reserve,
    snapshot_on, world,
};

/// The schema version after every migration: the baseline is 1, each later
/// file one more.
const SCHEMA_VERSION: i32 = 14;

const ORGANIZATION: &str = "select tenancy_organization(org_id => $1)";
const BY_SLUG: &str = "select tenancy_organization_by_slug(org_slug => $1)";
const RENAME: &str = "select tenancy_rename_organization(org_id => $1, new_name => $2)";
const DELETE_ORG: &str = "select tenancy_delete_organization(org_id => $1)";
const MEMBERSHIPS: &str = "select tenancy_memberships(user_id => $1, org_id => $2)";
const MEMBERS: &str = "select tenancy_members(org_id => $1)";
const ADD: &str = "select tenancy_add_member(org_id => $1, user_id => $2, member_role => $3, \
                   created_at => $4)";
const SET_ROLE: &str = "select tenancy_set_member_role(org_id => $1, user_id => $2, \
                        expected_role => $3, new_role => $4)";
const REMOVE: &str =
    "select tenancy_remove_member(org_id => $1, user_id => $2, expected_role => $3)";
const FEATURES: &str = "select tenancy_features(org_id => $1)";
const DELETE_FEATURE: &str = "select tenancy_delete_feature(org_id => $1, feature_key => $2)";
const LIMITS: &str = "select tenancy_limits(org_id => $1)";
const DELETE_LIMIT: &str = "select tenancy_delete_limit(org_id => $1, limit_id => $2)";
const UNOWNED: &str = "select id, owner_user_id, created_at from \
    tenancy_create_unowned_organization(name => $1, slug => $2, id => $3, created_at => $4)";

/// The metric columns, all of type `tenancy.metric_key`.
const METRIC_COLUMNS: [&str; 4] = [
    "usage_limits",
    "usage_counters",
    "usage_reservations",
    "usage_alerts",
];

/// The jsonb `sql` returns, as the superuser.
async fn read(db: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Value {
    db.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The organization's row as JSON, the superuser's read.
async fn org_row(db: &Client, org: Uuid) -> Value {
    read(
        db,
        "select coalesce((select to_jsonb(o) from organizations o where o.id = $1), 'null')",
        &[&org],
    )
    .await
}

/// The membership's row as JSON, `null` when there is none.
async fn membership_row(db: &Client, org: Uuid, user: Uuid) -> Value {
    read(
        db,
        "select coalesce((select to_jsonb(m) from user_organizations m \
         where m.organization_id = $1 and m.user_id = $2), 'null')",
        &[&org, &user],
    )
    .await
}

async fn slug_of(db: &Client, org: Uuid) -> String {
    db.query_one("select slug from organizations where id = $1", &[&org])
        .await
        .unwrap()
        .get(0)
}

/// Every row of every tenancy table for `org`, as the superuser reads them.
async fn org_rows(db: &Client, org: Uuid) -> BTreeMap<&'static str, Value> {
    let mut rows = BTreeMap::new();
    for table in TENANT_TABLES {
        let column = if table == "organizations" {
            "id"
        } else {
            "organization_id"
        };
        let sql = format!(
            "select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]') \
             from public.{table} t where {column} = $1"
        );
        rows.insert(table, read(db, &sql, &[&org]).await);
    }
    rows
}

/// The object keys of `value`, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[track_caller]
fn assert_message<T: std::fmt::Debug>(result: &Result<T, Error>, want: &str) {
    assert_eq!(message(result).as_deref(), Some(want), "{result:?}");
}

// ---- organizations -------------------------------------------------------------

#[tokio::test]
async fn organization_functions_read_rename_and_delete_for_service_role() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let slug = slug_of(&db, org).await;
    let svc = Actor::Service;

    let found = call_as(&mut conn, svc, ORGANIZATION, &[&org])
        .await
        .unwrap();
    assert_eq!(found, json!([org_row(&db, org).await]));
    let typed: Vec<Organization> = serde_json::from_value(found).expect("[Organization]");
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].slug.as_str(), slug);
    assert_eq!(
        typed[0].owner_user_id.map(|u| u.to_string()),
        Some(owner.to_string())
    );
    let by_slug = call_as(&mut conn, svc, BY_SLUG, &[&slug]).await.unwrap();
    assert_eq!(by_slug, json!([org_row(&db, org).await]));
    let nobody = Uuid::new_v4();
    assert_eq!(
        call_as(&mut conn, svc, ORGANIZATION, &[&nobody])
            .await
            .unwrap(),
        json!([])
    );
    let unknown_slug = unique_slug("none");
    assert_eq!(
        call_as(&mut conn, svc, BY_SLUG, &[&unknown_slug])
            .await
            .unwrap(),
        json!([])
    );

    let renamed = call_as(&mut conn, svc, RENAME, &[&org, &"  Renamed Labs "])
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Renamed Labs", "the name is trimmed");
    assert_eq!(
        renamed,
        org_row(&db, org).await,
        "the organization as stored"
    );
    serde_json::from_value::<Organization>(renamed).expect("an Organization");
    let missing = call_as(&mut conn, svc, RENAME, &[&nobody, &"X"]).await;
    assert_message(&missing, &format!("organization {nobody} not found"));
    assert_code(
        missing,
        SqlState::NO_DATA_FOUND,
        "renaming an unknown organization",
    );
    let empty = call_as(&mut conn, svc, RENAME, &[&org, &"  "]).await;
    assert_code(empty, SqlState::CHECK_VIOLATION, "an empty name");

    let deleted = call_as(&mut conn, svc, DELETE_ORG, &[&org]).await.unwrap();
    assert_eq!(deleted, json!({"deleted": true}));
    assert_eq!(org_row(&db, org).await, Value::Null);
    assert_eq!(
        membership_row(&db, org, owner).await,
        Value::Null,
        "its owner row went with it"
    );
    let again = call_as(&mut conn, svc, DELETE_ORG, &[&org]).await.unwrap();
    assert_eq!(again, json!({"deleted": false}));
}

#[tokio::test]
async fn unowned_organizations_are_created_by_service_role_only() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let (id, slug, created) = (
        Uuid::new_v4(),
        unique_slug("default"),
        at("2026-01-02T03:04:05Z"),
    );
    let row = act(&mut conn, Actor::Service, async |tx| {
        tx.query_one(UNOWNED, &[&" Default ", &slug, &id, &created])
            .await
    })
    .await
    .expect("service_role creates an organization without an owner");
    assert_eq!(row.get::<_, Uuid>(0), id, "keeps the id given");
    assert_eq!(row.get::<_, Option<Uuid>>(1), None, "no owner");
    assert_eq!(
        row.get::<_, DateTime<Utc>>(2),
        created,
        "keeps the created_at given"
    );
    let stored = org_row(&db, id).await;
    assert_eq!(
        (stored["name"].as_str(), stored["timezone"].as_str()),
        (Some("Default"), Some("UTC"))
    );
    let members: i64 = db
        .query_one(
            "select count(*) from user_organizations where organization_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 0, "nobody is its member");
    let taken = act(&mut conn, Actor::Service, async |tx| {
        tx.query_one(UNOWNED, &[&"Again", &slug, &Uuid::new_v4(), &created])
            .await
    })
    .await;
    assert_code(taken, SqlState::UNIQUE_VIOLATION, "a taken slug");
    let user = create_user(&db).await;
    for actor in [Actor::User(user), Actor::Anon] {
        let res = act(&mut conn, actor, async |tx| {
            tx.query_one(
                UNOWNED,
                &[&"Mine", &unique_slug("mine"), &Uuid::new_v4(), &created],
            )
            .await
        })
        .await;
        assert_denied(res, &format!("{actor:?} creating an unowned organization"));
    }
}

// ---- memberships ------------------------------------------------------------------

#[tokio::test]
async fn membership_functions_read_and_change_members_for_service_role() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let svc = Actor::Service;
    let (owner, other_owner, user) = (
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    );
    let org = create_org(&db, owner).await;
    let other = create_org(&db, other_owner).await;
    let joined = at("2026-03-02T09:00:00.123456Z");

    let added = call_as(&mut conn, svc, ADD, &[&org, &user, &"viewer", &joined])
        .await
        .unwrap();
    assert_eq!(added, membership_row(&db, org, user).await);
    let typed: Membership = serde_json::from_value(added).expect("a Membership");
    assert_eq!((typed.role, typed.created_at), (Role::Viewer, joined));
    let no_time: Option<DateTime<Utc>> = None;
    call_as(&mut conn, svc, ADD, &[&other, &user, &"member", &no_time])
        .await
        .expect("created_at defaults to now");

    let again = call_as(&mut conn, svc, ADD, &[&org, &user, &"member", &joined]).await;
    assert_code(again, SqlState::UNIQUE_VIOLATION, "already a member");
    let nowhere = Uuid::new_v4();
    let unknown_org = call_as(&mut conn, svc, ADD, &[&nowhere, &user, &"member", &joined]).await;
    assert_message(&unknown_org, &format!("organization {nowhere} not found"));
    assert_code(
        unknown_org,
        SqlState::NO_DATA_FOUND,
        "an unknown organization",
    );
    let stranger = Uuid::new_v4();
    let unknown_user = call_as(&mut conn, svc, ADD, &[&org, &stranger, &"member", &joined]).await;
    assert_code(
        unknown_user,
        SqlState::FOREIGN_KEY_VIOLATION,
        "an unknown user",
    );
    let bad_role = call_as(
        &mut conn,
        svc,
        ADD,
        &[&org, &create_user(&db).await, &"boss", &joined],
    )
    .await;
    assert_code(bad_role, SqlState::CHECK_VIOLATION, "an unknown role");

    // members: by user id, each a Membership.
    let members = call_as(&mut conn, svc, MEMBERS, &[&org]).await.unwrap();
    let mut want = vec![
        membership_row(&db, org, owner).await,
        membership_row(&db, org, user).await,
    ];
    want.sort_by_key(|m| m["user_id"].as_str().unwrap().to_owned());
    assert_eq!(members, json!(want));
    serde_json::from_value::<Vec<Membership>>(members).expect("[Membership]");
    assert_eq!(
        call_as(&mut conn, svc, MEMBERS, &[&nowhere]).await.unwrap(),
        json!([])
    );

    // memberships: the user's, by organization id, {organization, role, joined_at}.
    let all_orgs: Option<Uuid> = None;
    let memberships = call_as(&mut conn, svc, MEMBERSHIPS, &[&user, &all_orgs])
        .await
        .unwrap();
    let mut orgs = vec![(org, "viewer"), (other, "member")];
    orgs.sort();
    let list = memberships.as_array().expect("an array");
    assert_eq!(list.len(), 2, "{memberships}");
    for (entry, (id, role)) in list.iter().zip(&orgs) {
        assert_eq!(keys(entry), ["joined_at", "organization", "role"]);
        assert_eq!(entry["organization"], org_row(&db, *id).await);
        serde_json::from_value::<Organization>(entry["organization"].clone())
            .expect("an Organization");
        assert_eq!(entry["role"], *role);
        assert_eq!(
            entry["joined_at"],
            membership_row(&db, *id, user).await["created_at"]
        );
    }
    let one = call_as(&mut conn, svc, MEMBERSHIPS, &[&user, &Some(org)])
        .await
        .unwrap();
    assert_eq!(
        one,
        json!([list
            .iter()
            .find(|e| e["organization"]["id"] == json!(org))
            .unwrap()])
    );
    let none = call_as(&mut conn, svc, MEMBERSHIPS, &[&stranger, &all_orgs])
        .await
        .unwrap();
    assert_eq!(none, json!([]));

    // set_member_role: compare-and-set.
    let changed = call_as(
        &mut conn,
        svc,
        SET_ROLE,
        &[&org, &user, &"viewer", &"admin"],
    )
    .await
    .unwrap();
    assert_eq!(changed, membership_row(&db, org, user).await);
    assert_eq!(changed["role"], "admin");
    serde_json::from_value::<Membership>(changed).expect("a Membership");
    let stale = call_as(
        &mut conn,
        svc,
        SET_ROLE,
        &[&org, &user, &"viewer", &"member"],
    )
    .await;
    assert_message(
        &stale,
        &format!("user {user}'s role changed to admin meanwhile; reload and retry"),
    );
    assert_code(
        stale,
        SqlState::T_R_SERIALIZATION_FAILURE,
        "a stale expected role",
    );
    let not_member = call_as(
        &mut conn,
        svc,
        SET_ROLE,
        &[&org, &stranger, &"viewer", &"member"],
    )
    .await;
    assert_message(
        &not_member,
        &format!("user {stranger} is not a member of organization {org}"),
    );
    assert_code(not_member, SqlState::NO_DATA_FOUND, "not a member");
    let last_owner = call_as(
        &mut conn,
        svc,
        SET_ROLE,
        &[&org, &owner, &"owner", &"admin"],
    )
    .await;
    assert_denied(last_owner, "demoting the last owner");

    // remove_member: compare-and-set too.
    let stale = call_as(&mut conn, svc, REMOVE, &[&org, &user, &"viewer"]).await;
    assert_message(
        &stale,
        &format!("user {user}'s role changed to admin meanwhile; reload and retry"),
    );
    assert_code(
        stale,
        SqlState::T_R_SERIALIZATION_FAILURE,
        "removing with a stale role",
    );
    let last_owner = call_as(&mut conn, svc, REMOVE, &[&org, &owner, &"owner"]).await;
    assert_denied(last_owner, "removing the last owner");
    let removed = call_as(&mut conn, svc, REMOVE, &[&org, &user, &"admin"])
        .await
        .unwrap();
    assert_eq!(removed, json!({"removed": true}));
    assert_eq!(membership_row(&db, org, user).await, Value::Null);
    let gone = call_as(&mut conn, svc, REMOVE, &[&org, &user, &"admin"]).await;
    assert_code(gone, SqlState::NO_DATA_FOUND, "removing a member twice");
    assert_eq!(
        membership_row(&db, org, owner).await["role"],
        "owner",
        "the last owner stays"
    );
}

// ---- features and limits -------------------------------------------------------------

#[tokio::test]
async fn feature_and_limit_functions_read_and_delete_for_service_role() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let svc = Actor::Service;
    let owner = create_user(&db).await;
    let member = create_user(&db).await;
    let org = create_org(&db, owner).await;
    add_member(&db, org, member, "member").await;

    // Byte order: '-' < '.' < '_' < letters (a linguistic collation would
    // ignore the punctuation).
    for (key, config) in [
        ("abc", None),
        ("ab_c", Some(json!({"quota": 3}))),
        ("ab.c", None),
        ("ab-c", Some(json!([1, 2]))),
    ] {
        db.execute(
            "select tenancy_update_feature(org_id => $1, feature_key => $2, set_config => true, \
             updated_at => '2026-03-03T10:00:00Z', enabled => $3, config => $4)",
            &[&org, &key, &config.is_some(), &config],
        )
        .await
        .unwrap();
    }
    let features = call_as(&mut conn, svc, FEATURES, &[&org]).await.unwrap();
    let typed: Vec<Feature> = serde_json::from_value(features.clone()).expect("[Feature]");
    let order: Vec<&str> = typed.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(order, ["ab-c", "ab.c", "ab_c", "abc"]);
    assert_eq!(
        keys(&features[0]),
        ["config", "enabled", "expires_at", "key", "updated_at"]
    );
    assert_eq!(features[1]["config"], Value::Null, "no config is JSON null");
    assert_eq!(
        (&features[2]["config"], &features[2]["enabled"]),
        (&json!({"quota": 3}), &json!(true))
    );
    assert_eq!(typed[0].updated_at, at("2026-03-03T10:00:00Z"));
    assert_eq!(
        call_as(&mut conn, svc, DELETE_FEATURE, &[&org, &"ab.c"])
            .await
            .unwrap(),
        json!({"deleted": true})
    );
    assert_eq!(
        call_as(&mut conn, svc, DELETE_FEATURE, &[&org, &"ab.c"])
            .await
            .unwrap(),
        json!({"deleted": false})
    );
    let left = call_as(&mut conn, svc, FEATURES, &[&org]).await.unwrap();
    assert_eq!(left.as_array().unwrap().len(), 3);

    // Limits: by created_at, then id; every scope; the value as a string.
    let (early, late) = (
        at("2026-03-01T09:00:00Z"),
        at("2026-03-02T09:00:00.123456Z"),
    );
    let mut ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    ids[1..].sort();
    for (id, user, metric, period, value, created) in [
        (ids[0], None, "tokens", "monthly", "1000", late),
        (ids[2], Some(member), "tokens", "daily", "50.5", early),
        (ids[1], None, "cost_usd", "monthly", "0.25", early),
    ] {
        db.execute(
            "select tenancy_put_limit(limit_id => $1, org_id => $2, metric => $3, period => $4, \
             limit_value => $5::text::numeric, user_id => $6, created_at => $7)",
            &[&id, &org, &metric, &period, &value, &user, &created],
        )
        .await
        .unwrap();
    }
    let limits = call_as(&mut conn, svc, LIMITS, &[&org]).await.unwrap();
    let typed: Vec<Limit> = serde_json::from_value(limits.clone()).expect("[Limit]");
    let order: Vec<String> = typed.iter().map(|l| l.id.to_string()).collect();
    assert_eq!(order, [ids[1], ids[2], ids[0]].map(|u| u.to_string()));
    assert_eq!(limits[1]["value"], "50.5", "the value as a string");
    assert_eq!(
        limits[1]["scope"],
        json!({"scope": "user", "user_id": member})
    );
    assert_eq!(
        typed[1].scope.user().map(|u| u.to_string()),
        Some(member.to_string())
    );
    assert_eq!(typed[0].scope, LimitScope::Organization);
    assert_eq!(limits[1]["limit_type"], "daily_tokens");
    assert_eq!(typed[2].created_at, late);
    assert_eq!(
        keys(&limits[0]),
        [
            "created_at",
            "expires_at",
            "id",
            "limit_type",
            "metric",
            "mode",
            "org",
            "period",
            "scope",
            "value"
        ]
    );
    assert_eq!(
        call_as(&mut conn, svc, LIMITS, &[&Uuid::new_v4()])
            .await
            .unwrap(),
        json!([])
    );
    assert_eq!(
        call_as(&mut conn, svc, DELETE_LIMIT, &[&org, &ids[2]])
            .await
            .unwrap(),
        json!({"deleted": true})
    );
    assert_eq!(
        call_as(&mut conn, svc, DELETE_LIMIT, &[&org, &ids[2]])
            .await
            .unwrap(),
        json!({"deleted": false})
    );
    let left = call_as(&mut conn, svc, LIMITS, &[&org]).await.unwrap();
    assert_eq!(left.as_array().unwrap().len(), 2);
}

/// Feature keys come back in byte order on a database whose default
/// collation is linguistic (there, `ab_c` sorts before `ab-c`).
#[tokio::test]
async fn features_are_in_byte_order_under_a_linguistic_collation() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("icu_{}", Uuid::new_v4().simple());
    let admin = pg::connect_url(&pg.url("postgres")).await;
    admin
        .batch_execute(&format!(
            "create database \"{name}\" template template0 locale_provider icu icu_locale 'en'"
        ))
        .await
        .unwrap();
    let db = pg::connect_url(&pg.url(&name)).await;
    pg::apply_all(&db).await.unwrap();
    let keys = ["abc", "ab_c", "ab.c", "ab-c"];
    let linguistic: Vec<String> = db
        .query(
            "select k from unnest($1::text[]) k order by k",
            &[&&keys[..]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_ne!(
        linguistic,
        ["ab-c", "ab.c", "ab_c", "abc"],
        "positive control: the database's own order is not byte order"
    );
    let org = create_org(&db, create_user(&db).await).await;
    for key in keys {
        db.execute(
            "select tenancy_update_feature(org_id => $1, feature_key => $2, set_config => false, \
             updated_at => now(), enabled => true)",
            &[&org, &key],
        )
        .await
        .unwrap();
    }
    let features = read(&db, FEATURES, &[&org]).await;
    let order: Vec<&str> = features
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["ab-c", "ab.c", "ab_c", "abc"]);
}

// ---- user JWTs -----------------------------------------------------------------------

#[tokio::test]
async fn another_orgs_user_reads_nothing_and_changes_nothing_through_the_functions() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let stranger = create_user(&db).await;
    let newcomer = create_user(&db).await;
    let slug_a = slug_of(&db, w.org_a).await;
    let limit_a: Uuid = db
        .query_one(
            "select id from usage_limits where organization_id = $1",
            &[&w.org_a],
        )
        .await
        .unwrap()
        .get(0);
    let all_orgs: Option<Uuid> = None;
    let only_a = Some(w.org_a);
    let at_noon = Some(noon());
    let before = org_rows(&db, w.org_a).await;

    for outsider in [w.owner_b, stranger] {
        let actor = Actor::User(outsider);
        let reads: [(&str, Vec<&(dyn ToSql + Sync)>); 7] = [
            (ORGANIZATION, vec![&w.org_a]),
            (BY_SLUG, vec![&slug_a]),
            (MEMBERSHIPS, vec![&w.owner_a, &all_orgs]),
            (MEMBERSHIPS, vec![&w.member_a, &only_a]),
            (MEMBERS, vec![&w.org_a]),
            (FEATURES, vec![&w.org_a]),
            (LIMITS, vec![&w.org_a]),
        ];
        for (sql, params) in reads {
            let got = call_as(&mut conn, actor, sql, &params).await.unwrap();
            assert_eq!(got, json!([]), "{outsider}: {sql}");
        }
        let deleted = call_as(&mut conn, actor, DELETE_ORG, &[&w.org_a])
            .await
            .unwrap();
        assert_eq!(deleted, json!({"deleted": false}), "deleting org A");
        // Adding to another organization is refused as a direct insert is.
        let res = call_as(
            &mut conn,
            actor,
            ADD,
            &[&w.org_a, &newcomer, &"owner", &at_noon],
        )
        .await;
        assert_denied(res, "adding a member to another org");
        let not_found: [(&str, Vec<&(dyn ToSql + Sync)>); 3] = [
            (RENAME, vec![&w.org_a, &"pwned"]),
            (SET_ROLE, vec![&w.org_a, &w.member_a, &"member", &"viewer"]),
            (REMOVE, vec![&w.org_a, &w.member_a, &"member"]),
        ];
        for (sql, params) in not_found {
            let res = call_as(&mut conn, actor, sql, &params).await;
            assert_code(res, SqlState::NO_DATA_FOUND, sql);
        }
        // No user JWT deletes features or limits, in any organization.
        let res = call_as(
            &mut conn,
            actor,
            DELETE_FEATURE,
            &[&w.org_a, &"veo_avatars"],
        )
        .await;
        assert_denied(res, "deleting another org's feature");
        let res = call_as(&mut conn, actor, DELETE_LIMIT, &[&w.org_a, &limit_a]).await;
        assert_denied(res, "deleting another org's limit");
    }
    assert_eq!(org_rows(&db, w.org_a).await, before, "org A is as it was");

    // Positive control: org B's owner reads org B through each of them.
    let b = Actor::User(w.owner_b);
    let slug_b = slug_of(&db, w.org_b).await;
    let reads: [(&str, Vec<&(dyn ToSql + Sync)>); 6] = [
        (ORGANIZATION, vec![&w.org_b]),
        (BY_SLUG, vec![&slug_b]),
        (MEMBERSHIPS, vec![&w.owner_b, &all_orgs]),
        (MEMBERS, vec![&w.org_b]),
        (FEATURES, vec![&w.org_b]),
        (LIMITS, vec![&w.org_b]),
    ];
    for (sql, params) in reads {
        let got = call_as(&mut conn, b, sql, &params).await.unwrap();
        assert_eq!(
            got.as_array().map(Vec::len),
            Some(1),
            "org B's owner: {sql}: {got}"
        );
    }
    let anon = call_as(&mut conn, Actor::Anon, ORGANIZATION, &[&w.org_b]).await;
    assert_denied(anon, "anon reading an organization");
}

#[tokio::test]
async fn viewers_and_members_neither_manage_members_nor_rename_or_delete_the_org() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let newcomer = create_user(&db).await;
    let at_noon = Some(noon());
    let before = org_rows(&db, w.org_a).await;

    for user in [w.viewer_a, w.member_a] {
        let actor = Actor::User(user);
        // They read the organization and its rows.
        for sql in [ORGANIZATION, MEMBERS, FEATURES, LIMITS] {
            let got = call_as(&mut conn, actor, sql, &[&w.org_a]).await.unwrap();
            assert!(!got.as_array().unwrap().is_empty(), "{user}: {sql}");
        }
        let other = if user == w.viewer_a {
            w.member_a
        } else {
            w.viewer_a
        };
        let other_role = if user == w.viewer_a {
            "member"
        } else {
            "viewer"
        };
        let denied: [(&str, Vec<&(dyn ToSql + Sync)>); 6] = [
            (ADD, vec![&w.org_a, &newcomer, &"viewer", &at_noon]),
            (SET_ROLE, vec![&w.org_a, &other, &other_role, &"viewer"]),
            (REMOVE, vec![&w.org_a, &other, &other_role]),
            (RENAME, vec![&w.org_a, &"pwned"]),
            (DELETE_ORG, vec![&w.org_a]),
            (DELETE_FEATURE, vec![&w.org_a, &"veo_avatars"]),
        ];
        for (sql, params) in denied {
            let res = call_as(&mut conn, actor, sql, &params).await;
            assert_denied(res, &format!("{user}: {sql}"));
        }
        // Nobody raises their own role.
        let own_role = if user == w.viewer_a {
            "viewer"
        } else {
            "member"
        };
        let res = call_as(
            &mut conn,
            actor,
            SET_ROLE,
            &[&w.org_a, &user, &own_role, &"admin"],
        )
        .await;
        assert_denied(res, "raising one's own role");
    }
    assert_eq!(org_rows(&db, w.org_a).await, before, "org A is as it was");

    // The admin renames and manages members and viewers, by compare-and-set.
    let admin = Actor::User(w.admin_a);
    let renamed = call_as(&mut conn, admin, RENAME, &[&w.org_a, &"Renamed"])
        .await
        .unwrap();
    assert_eq!(renamed, org_row(&db, w.org_a).await);
    let added = call_as(
        &mut conn,
        admin,
        ADD,
        &[&w.org_a, &newcomer, &"viewer", &at_noon],
    )
    .await
    .unwrap();
    assert_eq!(added, membership_row(&db, w.org_a, newcomer).await);
    let stale = call_as(
        &mut conn,
        admin,
        SET_ROLE,
        &[&w.org_a, &newcomer, &"member", &"viewer"],
    )
    .await;
    assert_message(
        &stale,
        &format!("user {newcomer}'s role changed to viewer meanwhile; reload and retry"),
    );
    assert_code(
        stale,
        SqlState::T_R_SERIALIZATION_FAILURE,
        "the admin's stale role",
    );
    let promoted = call_as(
        &mut conn,
        admin,
        SET_ROLE,
        &[&w.org_a, &newcomer, &"viewer", &"member"],
    )
    .await
    .unwrap();
    assert_eq!(promoted["role"], "member");
    let to_admin = call_as(
        &mut conn,
        admin,
        SET_ROLE,
        &[&w.org_a, &newcomer, &"member", &"admin"],
    )
    .await;
    assert_denied(to_admin, "an admin granting admin");
    let deleted = call_as(&mut conn, admin, DELETE_ORG, &[&w.org_a]).await;
    assert_denied(deleted, "an admin deleting the organization");
    let removed = call_as(&mut conn, admin, REMOVE, &[&w.org_a, &newcomer, &"member"])
        .await
        .unwrap();
    assert_eq!(removed, json!({"removed": true}));
    // A viewer leaves; the owner deletes the organization.
    let left = call_as(
        &mut conn,
        Actor::User(w.viewer_a),
        REMOVE,
        &[&w.org_a, &w.viewer_a, &"viewer"],
    )
    .await
    .unwrap();
    assert_eq!(left, json!({"removed": true}));
    let owner = Actor::User(w.owner_a);
    let deleted = call_as(&mut conn, owner, DELETE_ORG, &[&w.org_a])
        .await
        .unwrap();
    assert_eq!(deleted, json!({"deleted": true}));
    assert_eq!(org_row(&db, w.org_a).await, Value::Null);
    assert_eq!(
        org_rows(&db, w.org_b).await["organizations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// ---- the schema version ----------------------------------------------------------------

#[tokio::test]
async fn the_schema_version_is_the_last_files_and_anon_cannot_read_it() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let sql = "select tenancy_schema_version()";
    let versions: Vec<i32> = (1..=SCHEMA_VERSION).collect();
    let want = json!({"version": SCHEMA_VERSION, "versions": versions});
    let user = create_user(&db).await;
    for actor in [Actor::Service, Actor::User(user)] {
        assert_eq!(
            call_as(&mut conn, actor, sql, &[]).await.unwrap(),
            want,
            "{actor:?}"
        );
    }
    assert_denied(
        call_as(&mut conn, Actor::Anon, sql, &[]).await,
        "anon reading the version",
    );
    let direct = "select to_jsonb(array_agg(version)) from tenancy.schema_migrations";
    assert_denied(
        call_as(&mut conn, Actor::User(user), direct, &[]).await,
        "a user reading the table",
    );
    assert_eq!(
        call_as(&mut conn, Actor::Service, direct, &[])
            .await
            .unwrap(),
        json!(versions),
        "service_role reads the table"
    );
    // Each file after the baseline records its version, named after it, in
    // file order.
    let later: Vec<String> = pg::migrations()
        .into_iter()
        .map(|(file, _)| file.trim_end_matches(".sql").to_owned())
        .filter(|file| !file.starts_with("20260301"))
        .collect();
    let recorded: Vec<String> = db
        .query(
            "select name from tenancy.schema_migrations where version > 1 order by version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded, later);
    assert_eq!(later.len() + 1, usize::try_from(SCHEMA_VERSION).unwrap());
}

// ---- a host table of the same name -----------------------------------------------------------

#[tokio::test]
async fn a_host_organizations_table_stops_the_baseline_with_what_to_do() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("host_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    db.batch_execute(&pg::bootstrap_sql()).await.unwrap();
    db.batch_execute(
        "create table public.organizations (id uuid primary key, title text); \
         insert into public.organizations values (gen_random_uuid(), 'Host row');",
    )
    .await
    .unwrap();
    let (first, sql) = pg::migrations().into_iter().next().unwrap();
    assert_eq!(first, "20260301000100_tenancy_tables.sql");
    let res = db.batch_execute(&sql).await;
    assert_message(
        &res,
        "tenancy cannot create its tables: public.organizations exists without the columns \
         name, slug, owner_user_id, timezone, created_at. Rename the application's own table \
         (alter table public.<name> rename to app_<name>), then apply the migrations again",
    );
    assert_code(res, SqlState::DUPLICATE_TABLE, "a host organizations table");
    let schema: Option<String> = db
        .query_one("select to_regnamespace('tenancy')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, None, "nothing was created");

    // Renamed as the message says, the migrations apply and the host's row stays.
    db.batch_execute("alter table public.organizations rename to app_organizations")
        .await
        .unwrap();
    pg::apply_all(&db).await.expect("the migrations apply");
    let host: String = db
        .query_one("select title from public.app_organizations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(host, "Host row");
    // Complete tables pass: every file applies again.
    pg::apply_all(&db)
        .await
        .expect("a re-apply passes the guard");
}

// ---- the metric domain ----------------------------------------------------------------------

#[tokio::test]
async fn the_metric_domain_refuses_a_bad_metric_on_every_column() {
    let Some(pg) = Cluster::shared() else { return };
    let mut db = pg.superuser().await;
    let org = create_org(&db, create_user(&db).await).await;
    for table in METRIC_COLUMNS {
        let (type_name, own_checks): (String, i64) = db
            .query_one(
                "select format_type(a.atttypid, a.atttypmod), \
                 (select count(*) from pg_constraint c where c.conrelid = a.attrelid \
                  and c.contype = 'c' and a.attnum = any (c.conkey)) \
                 from pg_attribute a \
                 where a.attrelid = ('public.' || $1)::regclass and a.attname = 'metric'",
                &[&table],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(type_name, "tenancy.metric_key", "{table}.metric");
        assert_eq!(own_checks, 0, "{table}.metric has no check of its own");
    }
    let inserts = [
        "insert into usage_limits (organization_id, metric, period, limit_value) \
         values ($1, '{m}', 'daily', 1)",
        "insert into usage_counters (organization_id, scope_user_id, metric, period, period_start, used) \
         values ($1, gen_random_uuid(), '{m}', 'daily', current_date, 1)",
        "insert into usage_reservations (organization_id, id, user_id, metric, amount, daily_start, \
         monthly_start, expires_at) values ($1, gen_random_uuid(), gen_random_uuid(), '{m}', 1, \
         current_date, current_date, now())",
        "insert into usage_alerts (organization_id, scope_user_id, metric, period, period_start, \
         threshold_percent) values ($1, gen_random_uuid(), '{m}', 'daily', current_date, 80)",
    ];
    for (table, insert) in METRIC_COLUMNS.into_iter().zip(inserts) {
        assert!(insert.contains(table));
        for bad in ["Tokens", "1tokens", "cost-usd", "a.b", ""] {
            let res = db.execute(&insert.replace("{m}", bad), &[&org]).await;
            let why = message(&res).unwrap_or_default();
            assert!(why.contains("tenancy.metric_key"), "{table} {bad:?}: {why}");
            assert_code(res, SqlState::CHECK_VIOLATION, &format!("{table} {bad:?}"));
        }
        // Positive control: the same statement with a good metric.
        let tx = db.transaction().await.unwrap();
        tx.execute(&insert.replace("{m}", "ads_created"), &[&org])
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        tx.rollback().await.unwrap();
    }
    // And through the RPCs that write them.
    let user = create_user(&db).await;
    for (what, sql) in [
        (
            "put_limit",
            "select tenancy_put_limit(limit_id => gen_random_uuid(), org_id => $1, \
             metric => 'Bad', period => 'daily', limit_value => 1, user_id => $2)",
        ),
        (
            "reserve",
            "select tenancy_reserve(org_id => $1, user_id => $2, metric => 'Bad', amount => 1, \
             daily_start => current_date, monthly_start => current_date, now => now(), \
             expires_at => now() + interval '1 minute', reservation_id => gen_random_uuid(), \
             purge_before => now())",
        ),
        (
            "claim_alert",
            "select tenancy_claim_alert(org_id => $1, metric => 'Bad', period => 'daily', \
             period_start => current_date, threshold_percent => 80, fired_at => now(), \
             user_id => $2)",
        ),
    ] {
        let res = db.query(sql, &[&org, &user]).await;
        assert_code(res, SqlState::CHECK_VIOLATION, what);
    }
    let bad_event = json!([event(org, Some(user), json!({"Bad": 1}))]);
    let res = db
        .query_one("select tenancy_record_usage($1)", &[&bad_event])
        .await;
    assert_code(res, SqlState::CHECK_VIOLATION, "record");
}

// ---- upgrading a baseline database ------------------------------------------------------------

/// A role like Supabase's `postgres`: not a superuser, bypasses RLS.
const MIGRATOR: &str = "tenancy_test_migrator";

/// Every row of every tenancy table, by table.
async fn all_rows(db: &Client) -> BTreeMap<&'static str, Value> {
    let mut rows = BTreeMap::new();
    for table in TENANT_TABLES {
        let sql = format!(
            "select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]') from public.{table} t"
        );
        rows.insert(table, read(db, &sql, &[]).await);
    }
    rows
}

/// Applies `files` as [`MIGRATOR`], each in one transaction.
async fn apply_as_migrator(db: &Client, files: &[(String, String)]) {
    db.batch_execute(&format!("set role {MIGRATOR}"))
        .await
        .unwrap();
    for (file, sql) in files {
        db.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{file} as {MIGRATOR}: {e}"));
    }
    db.batch_execute("reset role").await.unwrap();
}

#[tokio::test]
async fn a_baseline_database_with_data_upgrades_to_the_current_version() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("upgrade_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    db.batch_execute(&pg::bootstrap_sql()).await.unwrap();
    // The migrations' owner: not a superuser, with Supabase's default
    // privileges for what it creates in `public`.
    db.batch_execute(&format!(
        "do $$ begin \
           if not exists (select 1 from pg_roles where rolname = '{MIGRATOR}') then \
             create role {MIGRATOR} nologin nosuperuser bypassrls; \
           end if; \
         end $$; \
         alter database \"{name}\" owner to {MIGRATOR}; \
         grant usage on schema auth to {MIGRATOR}; \
         grant select, references on auth.users to {MIGRATOR}; \
         alter default privileges for role {MIGRATOR} in schema public \
           grant all on tables to anon, authenticated, service_role; \
         alter default privileges for role {MIGRATOR} in schema public \
           grant all on functions to anon, authenticated, service_role;"
    ))
    .await
    .unwrap();
    let super_user: bool = db
        .query_one(
            &format!("select rolsuper from pg_roles where rolname = '{MIGRATOR}'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!super_user);
    let (baseline, later): (Vec<_>, Vec<_>) = pg::migrations()
        .into_iter()
        .partition(|(file, _)| file.starts_with("20260301"));
    assert_eq!(baseline.len(), 6, "the baseline: {baseline:?}");
    assert!(!later.is_empty());
    apply_as_migrator(&db, &baseline).await;
    let has_version: Option<String> = db
        .query_one(
            "select to_regproc('public.tenancy_schema_version')::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(has_version, None, "positive control: the baseline alone");

    // Data, through the baseline's RPCs: an org with two members, a feature,
    // an org-wide and a per-user limit, recorded usage, a hold, an alert.
    let (owner, member) = (create_user(&db).await, create_user(&db).await);
    let org = create_org(&db, owner).await;
    add_member(&db, org, member, "member").await;
    db.execute(
        "select tenancy_update_feature(org_id => $1, feature_key => 'veo_avatars', \
         set_config => true, updated_at => now(), enabled => true, config => '{\"quota\": 3}')",
        &[&org],
    )
    .await
    .unwrap();
    put_limit(&db, org, None, "tokens", "monthly", 1000, "hard").await;
    put_limit(&db, org, Some(member), "tokens", "daily", 500, "soft").await;
    let recorded = record(
        &db,
        &json!([event(
            org,
            Some(member),
            json!({"tokens": 120, "cost_usd": "1.25"})
        )]),
    )
    .await;
    assert_eq!(recorded["inserted"], 1);
    let (hold, reserved) = reserve(&db, &Reserve::new(org, member, 30)).await;
    assert_eq!(reserved["granted"], true);
    assert_eq!(claim_alert(&db, org, None, 80).await["claimed"], true);
    let rows_before = all_rows(&db).await;
    let snapshot_before = snapshot_on(&db, org, Some(member), None).await.unwrap();

    apply_as_migrator(&db, &later).await;

    // Every row intact; version 5 adds one column, `user_settles`, false
    // for the holds that were there (the server's to settle).
    let mut rows_after = all_rows(&db).await;
    let holds = rows_after.get_mut("usage_reservations").unwrap();
    for hold in holds.as_array_mut().unwrap() {
        let added = hold.as_object_mut().unwrap().remove("user_settles");
        assert_eq!(added, Some(json!(false)), "{hold}");
    }
    // Version 13 adds `expires_at` (null: never lapses) to features and
    // limits.
    for table in ["org_features", "usage_limits"] {
        for row in rows_after.get_mut(table).unwrap().as_array_mut().unwrap() {
            let added = row.as_object_mut().unwrap().remove("expires_at");
            assert_eq!(added, Some(json!(null)), "{row}");
        }
    }
    // Version 14 adds the other token classes (0) and the cost's
    // provenance (null) to events.
    for row in rows_after
        .get_mut("usage_events")
        .unwrap()
        .as_array_mut()
        .unwrap()
    {
        let row = row.as_object_mut().unwrap();
        for class in [
            "cache_write_tokens",
            "reasoning_tokens",
            "audio_input_tokens",
            "audio_output_tokens",
            "image_input_tokens",
            "image_output_tokens",
        ] {
            assert_eq!(row.remove(class), Some(json!(0)), "{class}");
        }
        for provenance in [
            "cost_source",
            "price_provider",
            "price_model",
            "price_effective_from",
            "price_table",
        ] {
            assert_eq!(row.remove(provenance), Some(json!(null)), "{provenance}");
        }
    }
    assert_eq!(rows_after, rows_before, "every row is intact");
    let versions: Vec<i32> = (1..=SCHEMA_VERSION).collect();
    assert_eq!(
        read(&db, "select tenancy_schema_version()", &[]).await,
        json!({"version": SCHEMA_VERSION, "versions": versions})
    );
    let snapshot = snapshot_on(&db, org, Some(member), None).await.unwrap();
    // Version 13 adds the limits' `expires_at` (null: never lapses).
    let mut as_before = snapshot.clone();
    for usage in as_before["limits"].as_array_mut().unwrap() {
        let added = usage["limit"].as_object_mut().unwrap().remove("expires_at");
        assert_eq!(added, Some(json!(null)), "{usage}");
    }
    assert_eq!(
        as_before, snapshot_before,
        "the same snapshot, used and reserved included"
    );
    // The new functions read the data.
    let mut conn = pg::connect_url(&pg.authenticator_url(&name)).await;
    let limits = call_as(&mut conn, Actor::Service, LIMITS, &[&org])
        .await
        .unwrap();
    let from_snapshot: Vec<Value> = snapshot["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["limit"].clone())
        .collect();
    assert_eq!(
        limits,
        json!(from_snapshot),
        "the limits, as the snapshot has them"
    );
    assert_eq!(from_snapshot.len(), 2);
    let members = call_as(&mut conn, Actor::User(member), MEMBERS, &[&org])
        .await
        .unwrap();
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
    let features = call_as(&mut conn, Actor::User(member), FEATURES, &[&org])
        .await
        .unwrap();
    assert_eq!(features[0]["config"], json!({"quota": 3}));
    let no_org: Option<Uuid> = None;
    let memberships = call_as(
        &mut conn,
        Actor::User(member),
        MEMBERSHIPS,
        &[&member, &no_org],
    )
    .await
    .unwrap();
    assert_eq!(memberships[0]["organization"]["id"], json!(org));
    assert_eq!(memberships[0]["role"], "member");
    // The hold taken before the upgrade commits after it.
    let usage = hold_event(org, member, hold, json!({"tokens": 20}));
    let committed = commit_on(&db, org, member, hold, &usage, noon())
        .await
        .unwrap();
    assert_eq!(committed, json!({"released_hold": true, "recorded": true}));
    let metric_types: Vec<String> = db
        .query(
            "select format_type(atttypid, atttypmod) from pg_attribute \
             where attname = 'metric' and attrelid = any (array['public.usage_limits', \
             'public.usage_counters', 'public.usage_reservations', 'public.usage_alerts']::regclass[])",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(metric_types, ["tenancy.metric_key"; 4]);
    assert_catalog(&db).await;
}
