//! Invitations in SQL: `public.org_invitations` and its functions.
//!
//! - who may invite whom: one table of cases against `Role::check_invite`
//!   and what a user JWT's `tenancy_create_invitation` (and
//!   `tenancy.may_invite`) allows; with the SQL rule drifted in a scratch
//!   database, the same check reports it;
//! - RLS: admins and owners read their organization's invitations, nobody
//!   else any, and no user JWT reads a token hash, an admin's included;
//! - accepting with `tenancy_accept_invitation(token)`: the user's
//!   confirmed email from `auth.users`, once, every refusal alike;
//! - revoking and resending (rotating) as users, within the same rules;
//! - the directory's `email_confirmed`.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use tenancy::Role;
use tenancy::model::invitation::{INVITATION_REFUSED, InvitationToken};
use tenancy_testkit::pg::{Actor, Cluster, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{
    add_member, assert_code, assert_denied, call_as, create_org, execute_as, message, role_of,
};

/// Sets `user`'s email, confirmed or not.
async fn set_email(db: &Client, user: Uuid, email: &str, confirmed: bool) {
    db.execute(
        "update auth.users set email = $2, email_confirmed_at = case when $3 then now() end where id = $1",
        &[&user, &email, &confirmed],
    )
    .await
    .unwrap();
}

/// An invitation as the library sends it, expiring in a week.
fn invitation(org: Uuid, email: Option<&str>, role: &str, max_uses: i32) -> Value {
    let now = Utc::now();
    json!({
        "id": Uuid::now_v7(),
        "organization_id": org,
        "email": email,
        "role": role,
        "max_uses": max_uses,
        "uses": 0,
        "expires_at": now + Duration::days(7),
        "created_at": now,
        "created_by": null,
        "revoked_at": null,
    })
}

/// `tenancy_create_invitation` as `actor`; the token it was created with.
async fn create_as(
    conn: &mut Client,
    actor: Actor,
    invitation: &Value,
) -> (Result<Value, Error>, InvitationToken) {
    let token = InvitationToken::generate().unwrap();
    let hash = token.hash().to_hex();
    let result = call_as(
        conn,
        actor,
        "select tenancy_create_invitation(invitation => $1, token_hash => $2)",
        &[invitation, &hash],
    )
    .await;
    (result, token)
}

async fn accept_as(conn: &mut Client, actor: Actor, token: &str) -> Result<Value, Error> {
    call_as(
        conn,
        actor,
        "select tenancy_accept_invitation(token => $1)",
        &[&token],
    )
    .await
}

/// The one refusal: P0002 with the one message.
#[track_caller]
fn assert_refused(result: Result<Value, Error>, what: &str) {
    assert_eq!(
        message(&result).as_deref(),
        Some(INVITATION_REFUSED),
        "{what}"
    );
    assert_code(result, SqlState::NO_DATA_FOUND, what);
}

/// Where the Rust rule and the SQL disagree, on `db` (a superuser) and
/// `conn` (for acting as users): every actor role (and an outsider)
/// inviting every role as a user JWT, and `tenancy.may_invite` for every
/// pair of role names.
async fn invite_disagreements(db: &Client, conn: &mut Client) -> Vec<String> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let outsider = create_user(db).await;
    let mut actors = vec![(Some(Role::Owner), owner), (None, outsider)];
    for role in [Role::Admin, Role::Member, Role::Viewer] {
        let user = create_user(db).await;
        add_member(db, org, user, role.as_str()).await;
        actors.push((Some(role), user));
    }
    let mut disagreements = Vec::new();
    for (actor_role, actor) in actors {
        for invited in Role::ALL {
            let rust = actor_role.is_some_and(|r| r.check_invite(invited).is_ok());
            let (result, _) = create_as(
                conn,
                Actor::User(actor),
                &invitation(org, None, invited.as_str(), 2),
            )
            .await;
            if let Err(e) = &result {
                assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
            }
            if rust != result.is_ok() {
                disagreements.push(format!("{actor_role:?} inviting {invited}: rust {rust}"));
            }
            if let Some(actor_role) = actor_role {
                let sql: bool = db
                    .query_one(
                        "select tenancy.may_invite($1, $2)",
                        &[&actor_role.as_str(), &invited.as_str()],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if sql != actor_role.check_invite(invited).is_ok() {
                    disagreements.push(format!("may_invite({actor_role}, {invited})"));
                }
            }
        }
    }
    let created_by: i64 = db
        .query_one(
            "select count(*) from org_invitations where organization_id = $1 and created_by = $2",
            &[&org, &owner],
        )
        .await
        .unwrap()
        .get(0);
    if created_by != 4 {
        disagreements.push(format!("the owner created {created_by} invitations, not 4"));
    }
    disagreements
}

/// Every actor role (and an outsider) inviting every role, in Rust and as
/// a user JWT, and `tenancy.may_invite` for every pair of role names, agree.
#[tokio::test]
async fn the_invite_rules_agree_with_rust() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let disagreements = invite_disagreements(&db, &mut conn).await;
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

/// With the SQL rule drifted (admins may invite admins and owners), the
/// check above reports it: it can fail.
#[tokio::test]
async fn a_drifted_invite_rule_is_reported() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("invite_drift_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    tenancy_testkit::pg::apply_all(&db)
        .await
        .expect("migrations");
    db.batch_execute(
        "create or replace function tenancy.may_invite(actor_role text, invited_role text) \
         returns boolean language sql immutable set search_path = '' as $$ \
         select tenancy.role_rank(actor_role) >= 3 and tenancy.role_rank(invited_role) > 0 $$",
    )
    .await
    .unwrap();
    let mut conn = tenancy_testkit::pg::connect_url(&pg.url(&name)).await;
    let disagreements = invite_disagreements(&db, &mut conn).await;
    for expected in [
        "Some(Admin) inviting admin: rust false",
        "Some(Admin) inviting owner: rust false",
        "may_invite(admin, admin)",
        "may_invite(admin, owner)",
    ] {
        assert!(
            disagreements.iter().any(|d| d == expected),
            "{expected} not reported: {disagreements:#?}"
        );
    }
}

/// Admins and owners of org A read its invitations without the hash;
/// members, viewers, another org's owner and anon read none, and nobody
/// with a user JWT reads or writes the table directly.
#[tokio::test]
async fn only_admins_read_invitations_and_never_the_hash() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let [owner, admin, member, viewer, owner_b] = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    let org = create_org(&db, owner).await;
    let org_b = create_org(&db, owner_b).await;
    add_member(&db, org, admin, "admin").await;
    add_member(&db, org, member, "member").await;
    add_member(&db, org, viewer, "viewer").await;
    let (created, _) = create_as(
        &mut conn,
        Actor::User(owner),
        &invitation(org, Some("new@example.test"), "member", 1),
    )
    .await;
    let created = created.unwrap();
    assert!(created.get("token_hash").is_none(), "{created}");

    const COLUMNS: &str = "select coalesce(jsonb_agg(jsonb_build_object('id', id, 'email', email)), '[]') \
        from org_invitations where organization_id = $1";
    for (who, sees) in [
        (owner, 1),
        (admin, 1),
        (member, 0),
        (viewer, 0),
        (owner_b, 0),
    ] {
        let rows = call_as(&mut conn, Actor::User(who), COLUMNS, &[&org])
            .await
            .unwrap();
        assert_eq!(rows.as_array().unwrap().len(), sees, "{who}");
    }
    for who in [Actor::User(owner), Actor::User(admin), Actor::Anon] {
        let hash = call_as(
            &mut conn,
            who,
            "select to_jsonb(token_hash) from org_invitations limit 1",
            &[],
        )
        .await;
        assert_denied(hash, "the token hash is never readable by a user JWT");
        let write = execute_as(
            &mut conn,
            who,
            "update org_invitations set role = 'owner' where organization_id = $1",
            &[&org],
        )
        .await;
        assert_denied(write, "no user JWT writes invitations directly");
    }
    let service = call_as(
        &mut conn,
        Actor::Service,
        "select to_jsonb(count(token_hash)) from org_invitations where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(service, json!(1));

    const PENDING: &str = "select tenancy_pending_invitations(org_id => $1)";
    let listed = call_as(&mut conn, Actor::User(admin), PENDING, &[&org])
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0].get("token_hash").is_none());
    for who in [member, viewer, owner_b] {
        assert_denied(
            call_as(&mut conn, Actor::User(who), PENDING, &[&org]).await,
            "only admins list",
        );
    }
    assert_denied(
        call_as(&mut conn, Actor::Anon, PENDING, &[&org]).await,
        "anon lists nothing",
    );
    // Org B's owner invites to org A not at all.
    let (foreign, _) = create_as(
        &mut conn,
        Actor::User(owner_b),
        &invitation(org, None, "member", 1),
    )
    .await;
    assert_denied(foreign, "an outsider invites nobody");
    let b_rows = call_as(&mut conn, Actor::User(owner_b), COLUMNS, &[&org_b])
        .await
        .unwrap();
    assert_eq!(b_rows, json!([]));
}

/// An email invitation is accepted by the user whose confirmed email
/// matches, once; every refusal is the same P0002.
#[tokio::test]
async fn a_user_accepts_with_its_confirmed_email_only() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let [owner, bob, eve] = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    let org = create_org(&db, owner).await;
    let bob_email = format!("bob-{}@example.test", Uuid::new_v4().simple());
    set_email(&db, bob, &bob_email.to_uppercase(), false).await;
    let (created, token) = create_as(
        &mut conn,
        Actor::User(owner),
        &invitation(org, Some(&bob_email), "member", 1),
    )
    .await;
    created.unwrap();
    let token = token.expose();

    // Unconfirmed: refused. Another user: refused. Anon: no execute.
    assert_refused(
        accept_as(&mut conn, Actor::User(bob), token).await,
        "unconfirmed",
    );
    assert_refused(
        accept_as(&mut conn, Actor::User(eve), token).await,
        "another email",
    );
    assert_denied(accept_as(&mut conn, Actor::Anon, token).await, "anon");
    let for_other = call_as(
        &mut conn,
        Actor::User(eve),
        "select tenancy_accept_invitation(token => $1, user_id => $2)",
        &[&token, &bob],
    )
    .await;
    assert_denied(for_other, "a user accepts only for itself");

    set_email(&db, bob, &bob_email.to_uppercase(), true).await;
    let accepted = accept_as(&mut conn, Actor::User(bob), token).await.unwrap();
    assert_eq!(accepted["joined"], true);
    assert_eq!(accepted["membership"]["role"], "member");
    assert_eq!(role_of(&db, org, bob).await.as_deref(), Some("member"));
    assert_refused(accept_as(&mut conn, Actor::User(bob), token).await, "used");
    assert_refused(
        accept_as(&mut conn, Actor::User(eve), "no-such-token").await,
        "unknown",
    );
    assert_eq!(role_of(&db, org, eve).await, None);

    // A link: anyone signed in, up to max_uses; a member keeps their role.
    let (created, link) = create_as(
        &mut conn,
        Actor::User(owner),
        &invitation(org, None, "viewer", 1),
    )
    .await;
    created.unwrap();
    let again = accept_as(&mut conn, Actor::User(bob), link.expose())
        .await
        .unwrap();
    assert_eq!(
        (again["joined"].clone(), again["membership"]["role"].clone()),
        (json!(false), json!("member"))
    );
    let joined = accept_as(&mut conn, Actor::User(eve), link.expose())
        .await
        .unwrap();
    assert_eq!(joined["joined"], true);
    let third = create_user(&db).await;
    assert_refused(
        accept_as(&mut conn, Actor::User(third), link.expose()).await,
        "used up",
    );
}

/// Revoking and resending follow the invite rules; a rotated token
/// replaces the old one.
#[tokio::test]
async fn revoke_and_rotate_follow_the_rules() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let [owner, admin, member, owner_b, joiner] = [
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
        create_user(&db).await,
    ];
    let org = create_org(&db, owner).await;
    create_org(&db, owner_b).await;
    add_member(&db, org, admin, "admin").await;
    add_member(&db, org, member, "member").await;
    let (admin_invite, _) = create_as(
        &mut conn,
        Actor::User(owner),
        &invitation(org, None, "admin", 3),
    )
    .await;
    let admin_invite: Uuid = admin_invite.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (member_invite, old) = create_as(
        &mut conn,
        Actor::User(admin),
        &invitation(org, None, "member", 3),
    )
    .await;
    let member_invite: Uuid = member_invite.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    const REVOKE: &str = "select tenancy_revoke_invitation(org_id => $1, invitation_id => $2)";
    assert_denied(
        call_as(
            &mut conn,
            Actor::User(admin),
            REVOKE,
            &[&org, &admin_invite],
        )
        .await,
        "an admin does not revoke an admin invitation",
    );
    for who in [member, owner_b] {
        assert_denied(
            call_as(&mut conn, Actor::User(who), REVOKE, &[&org, &member_invite]).await,
            "members and outsiders revoke nothing",
        );
    }
    let new = InvitationToken::generate().unwrap();
    let rotated = call_as(
        &mut conn,
        Actor::User(admin),
        "select tenancy_rotate_invitation(org_id => $1, invitation_id => $2, token_hash => $3, expires_at => now() + interval '2 days')",
        &[&org, &member_invite, &new.hash().to_hex()],
    )
    .await
    .unwrap();
    assert_eq!(rotated.as_array().unwrap().len(), 1);
    assert_refused(
        accept_as(&mut conn, Actor::User(joiner), old.expose()).await,
        "old token",
    );
    let too_long = call_as(
        &mut conn,
        Actor::User(owner),
        "select tenancy_rotate_invitation(org_id => $1, invitation_id => $2, token_hash => $3, expires_at => now() + interval '91 days')",
        &[&org, &member_invite, &InvitationToken::generate().unwrap().hash().to_hex()],
    )
    .await;
    assert_code(
        too_long,
        SqlState::INVALID_PARAMETER_VALUE,
        "at most 90 days",
    );

    let revoked = call_as(
        &mut conn,
        Actor::User(owner),
        REVOKE,
        &[&org, &admin_invite],
    )
    .await
    .unwrap();
    assert_eq!(revoked["revoked"], true);
    let revoked = call_as(
        &mut conn,
        Actor::User(admin),
        REVOKE,
        &[&org, &member_invite],
    )
    .await
    .unwrap();
    assert_eq!(revoked["revoked"], true);
    assert_refused(
        accept_as(&mut conn, Actor::User(joiner), new.expose()).await,
        "revoked",
    );
}

/// `tenancy_user_profiles` says whether each email is confirmed.
#[tokio::test]
async fn the_directory_reports_confirmed_emails() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let [owner, other] = [create_user(&db).await, create_user(&db).await];
    let org = create_org(&db, owner).await;
    add_member(&db, org, other, "member").await;
    set_email(&db, owner, &format!("{owner}@example.test"), true).await;
    set_email(&db, other, &format!("{other}@example.test"), false).await;
    let profiles = call_as(
        &mut conn,
        Actor::User(owner),
        "select tenancy_user_profiles(user_ids => $1)",
        &[&vec![owner, other]],
    )
    .await
    .unwrap();
    let confirmed = |user: Uuid| {
        profiles
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["user_id"] == json!(user))
            .map(|p| p["email_confirmed"].clone())
    };
    assert_eq!(confirmed(owner), Some(json!(true)));
    assert_eq!(confirmed(other), Some(json!(false)));
}

/// The 90-day ceiling holds on the service path too, when the invitation
/// names no `created_at` (it is measured from `now()`, the time the row
/// carries).
#[tokio::test]
async fn the_lifetime_ceiling_holds_without_a_creation_time() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let mut too_long = invitation(org, None, "member", 1);
    let object = too_long.as_object_mut().unwrap();
    object.remove("created_at");
    object.insert(
        "expires_at".into(),
        json!((chrono::Utc::now() + chrono::TimeDelta::days(91)).to_rfc3339()),
    );
    let (refused, _) = create_as(&mut conn, Actor::Service, &too_long).await;
    assert_code(
        refused,
        SqlState::INVALID_PARAMETER_VALUE,
        "at most 90 days",
    );
    // Within the ceiling, the row carries the time it was measured from.
    expiring_in(&mut too_long, 89);
    let (created, _) = create_as(&mut conn, Actor::Service, &too_long).await;
    let created = created.unwrap();
    assert!(created["created_at"].is_string(), "{created}");
}

/// Sets `invitation` to expire `days` from now.
fn expiring_in(invitation: &mut serde_json::Value, days: i64) {
    invitation["expires_at"] =
        json!((chrono::Utc::now() + chrono::TimeDelta::days(days)).to_rfc3339());
}

/// An invitation's email is stored trimmed and lowercase whoever creates
/// it (the service role, or an owner's JWT), and its invitee accepts
/// whatever the case of their confirmed email; an expiry not after the
/// creation is `22023` naming `expires_at`; a malformed hash on rotate is
/// `22023` naming `token_hash` whether or not an invitation matches.
#[tokio::test]
async fn emails_are_stored_normalized_and_bad_arguments_named() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.superuser().await;
    let [owner, bob] = [create_user(&db).await, create_user(&db).await];
    let org = create_org(&db, owner).await;
    let local = format!("bob-{}", Uuid::new_v4().simple());
    let given = format!("  {}@Example.COM ", local.to_uppercase());
    let (created, token) = create_as(
        &mut conn,
        Actor::Service,
        &invitation(org, Some(&given), "member", 1),
    )
    .await;
    assert_eq!(
        created.unwrap()["email"],
        format!("{local}@example.com"),
        "trimmed and lowercase"
    );
    let (by_owner, _) = create_as(
        &mut conn,
        Actor::User(owner),
        &invitation(org, Some("Carol@Example.com"), "viewer", 1),
    )
    .await;
    assert_eq!(by_owner.unwrap()["email"], "carol@example.com");
    set_email(&db, bob, &format!("{local}@EXAMPLE.com"), true).await;
    let accepted = accept_as(&mut conn, Actor::User(bob), token.expose())
        .await
        .unwrap();
    assert_eq!(accepted["joined"], true, "{accepted}");

    let mut at_creation = invitation(org, None, "member", 1);
    at_creation["expires_at"] = at_creation["created_at"].clone();
    let (refused, _) = create_as(&mut conn, Actor::Service, &at_creation).await;
    let said = message(&refused).unwrap_or_default();
    assert_code(
        refused,
        SqlState::INVALID_PARAMETER_VALUE,
        "expires at creation",
    );
    assert!(said.starts_with("expires_at:"), "{said}");

    let rotated = call_as(
        &mut conn,
        Actor::Service,
        "select tenancy_rotate_invitation(org_id => $1, invitation_id => $2, \
         token_hash => 'not hex', expires_at => now() + interval '1 day')",
        &[&org, &Uuid::new_v4()],
    )
    .await;
    let said = message(&rotated).unwrap_or_default();
    assert_code(
        rotated,
        SqlState::INVALID_PARAMETER_VALUE,
        "a malformed hash",
    );
    assert!(said.starts_with("token_hash:"), "{said}");
}
