//! The user directory: `tenancy_user_profiles` shows a user JWT the email
//! and name of itself and of the users it shares an organization with, and
//! nobody else's (a user of another organization, a removed member, a user
//! of no organization), without telling it whether they exist; the service
//! role sees everyone; the ids a call takes are capped.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tenancy_testkit::pg::{Actor, Cluster, act, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{add_member, assert_code, assert_denied, create_org};

const PROFILES: &str = "select tenancy_user_profiles(user_ids => $1)";

/// `tenancy_user_profiles(users)` as `actor`.
async fn profiles_as(conn: &mut Client, actor: Actor, users: &[Uuid]) -> Result<Value, Error> {
    let users = users.to_vec();
    act(conn, actor, async |tx| {
        Ok(tx.query_one(PROFILES, &[&users]).await?.get(0))
    })
    .await
}

/// The emails of an answer, by user id.
fn emails(answer: &Value) -> BTreeMap<Uuid, Value> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap().parse().unwrap(),
                p["email"].clone(),
            )
        })
        .collect()
}

async fn email_of(db: &Client, user: Uuid) -> Value {
    let email: String = db
        .query_one("select email from auth.users where id = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    json!(email)
}

/// Who sees whose email: org A holds alice (owner) and bob (member), and
/// held dave until he was removed; org B holds carol; erin belongs to
/// nothing.
#[tokio::test]
async fn nobody_learns_the_email_of_a_user_they_share_no_organization_with() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let [alice, bob, carol, dave, erin] = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    let org_a = create_org(&db, alice).await;
    add_member(&db, org_a, bob, "member").await;
    add_member(&db, org_a, dave, "viewer").await;
    let org_b = create_org(&db, carol).await;
    assert_ne!(org_a, org_b);
    let stranger = Uuid::new_v4(); // no such user
    let everyone = [alice, bob, carol, dave, erin, stranger];
    let mut conn = pg.authenticator().await;

    // Positive control: while dave is a member, alice sees him.
    let seen = profiles_as(&mut conn, Actor::User(alice), &everyone)
        .await
        .unwrap();
    assert!(emails(&seen).contains_key(&dave), "{seen}");
    db.execute(
        "delete from user_organizations where organization_id = $1 and user_id = $2",
        &[&org_a, &dave],
    )
    .await
    .unwrap();

    let mut mail = BTreeMap::new();
    for user in [alice, bob, carol, dave, erin] {
        mail.insert(user, email_of(&db, user).await);
    }
    let only = |users: &[Uuid]| -> BTreeMap<Uuid, Value> {
        users.iter().map(|u| (*u, mail[u].clone())).collect()
    };
    for (viewer, sees) in [
        (alice, vec![alice, bob]),
        (bob, vec![alice, bob]),
        (carol, vec![carol]),
        (dave, vec![dave]),
        (erin, vec![erin]),
    ] {
        let answer = profiles_as(&mut conn, Actor::User(viewer), &everyone)
            .await
            .unwrap_or_else(|e| panic!("{viewer}: {e}"));
        assert_eq!(emails(&answer), only(&sees), "what {viewer} learns");
    }
    // A stranger's id and another organization's user answer alike: absent.
    let about_carol = profiles_as(&mut conn, Actor::User(bob), &[carol])
        .await
        .unwrap();
    let about_nobody = profiles_as(&mut conn, Actor::User(bob), &[stranger])
        .await
        .unwrap();
    assert_eq!(about_carol, json!([]));
    assert_eq!(about_nobody, about_carol);

    // The service role sees every user that exists.
    let all = profiles_as(&mut conn, Actor::Service, &everyone)
        .await
        .unwrap();
    assert_eq!(emails(&all), only(&[alice, bob, carol, dave, erin]));

    // Anon calls nothing; a user reads neither auth.users nor the
    // unchecked function.
    assert_denied(
        profiles_as(&mut conn, Actor::Anon, &[alice]).await,
        "anon reading profiles",
    );
    assert_denied(
        act(&mut conn, Actor::User(bob), async |tx| {
            Ok(tx.query("select email from auth.users", &[]).await?.len())
        })
        .await,
        "a user reading auth.users",
    );
    assert_denied(
        act(&mut conn, Actor::User(bob), async |tx| {
            let carol = vec![carol];
            let row = tx
                .query_one("select tenancy.user_profiles_for($1, null)", &[&carol])
                .await?;
            Ok(row.get::<_, Value>(0))
        })
        .await,
        "a user calling the unchecked path",
    );
}

#[tokio::test]
async fn names_come_from_the_sign_up_metadata() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let users = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    let org = create_org(&db, users[0]).await;
    for u in &users[1..] {
        add_member(&db, org, *u, "member").await;
    }
    let metadata = [
        json!({"name": " Ada Lovelace "}),
        json!({"full_name": "Bob Babbage", "name": ""}),
        json!({"name": 42}),
        json!({}),
    ];
    for (user, meta) in users.iter().zip(&metadata) {
        db.execute(
            "update auth.users set raw_user_meta_data = $2 where id = $1",
            &[user, meta],
        )
        .await
        .unwrap();
    }
    db.execute(
        "update auth.users set email = ' ' where id = $1",
        &[&users[3]],
    )
    .await
    .unwrap();
    let mut conn = pg.authenticator().await;
    let answer = profiles_as(&mut conn, Actor::User(users[3]), &users)
        .await
        .unwrap();
    let names: BTreeMap<Uuid, (Value, Value)> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap().parse().unwrap(),
                (p["name"].clone(), p["email"].clone()),
            )
        })
        .collect();
    assert_eq!(names[&users[0]].0, json!("Ada Lovelace"));
    assert_eq!(names[&users[1]].0, json!("Bob Babbage"));
    assert_eq!(names[&users[2]].0, Value::Null, "a name that is no string");
    assert_eq!(names[&users[3]], (Value::Null, Value::Null), "blank email");
    assert!(names[&users[0]].1.is_string());
}

#[tokio::test]
async fn a_call_takes_at_most_a_thousand_ids() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let user = create_user(&db).await;
    let mut conn = pg.authenticator().await;
    let mut ids: Vec<Uuid> = (0..999).map(|_| Uuid::new_v4()).collect();
    ids.push(user);
    for actor in [Actor::Service, Actor::User(user)] {
        let answer = profiles_as(&mut conn, actor, &ids).await.unwrap();
        assert_eq!(emails(&answer).len(), 1, "{actor:?}: a thousand ids");
        let mut more = ids.clone();
        more.push(Uuid::new_v4());
        assert_code(
            profiles_as(&mut conn, actor, &more).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "1001 ids",
        );
    }
    let null = act(&mut conn, Actor::Service, async |tx| {
        Ok(tx
            .query_one("select tenancy_user_profiles(user_ids => null)", &[])
            .await?
            .get::<_, Value>(0))
    })
    .await;
    assert_code(null, SqlState::INVALID_PARAMETER_VALUE, "null ids");
}
