//! The audit log (`public.audit_events`): the row triggers record every
//! change to the audited tables, even a user JWT's direct write, with the
//! JWT's user as the actor whatever its request headers claim; the service
//! role names the actor in `request.headers`; nobody changes or deletes an
//! event, an owner included, and only the retention function prunes old
//! ones; owners and admins read their organization's log, members,
//! viewers and other organizations' users do not, the service role reads
//! every one; metering and no-op updates write nothing; secrets
//! (`token_hash`) never reach it.

use serde_json::{Value, json};
use tenancy_testkit::pg::{Actor, Cluster, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{
    Reserve, assert_code, assert_denied, call_as, create_org, event, record, reserve, world,
};

/// `sql` as `actor`, with `headers` as the request's (what PostgREST sets
/// from the HTTP request), in one transaction: the rows it changed.
async fn execute_with_headers(
    conn: &mut Client,
    actor: Actor,
    headers: &Value,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, Error> {
    let tx = conn.transaction().await?;
    tx.batch_execute(&format!("set local role {}", actor.role()))
        .await?;
    tx.execute(
        "select set_config('request.jwt.claims', $1, true), \
         set_config('request.headers', $2, true)",
        &[&actor.claims().to_string(), &headers.to_string()],
    )
    .await?;
    let changed = tx.execute(sql, params).await?;
    tx.commit().await?;
    Ok(changed)
}

/// The actor header naming `actor` as the Rust facade sends it.
fn actor_header(actor: Value) -> Value {
    json!({ "x-tenancy-actor": actor.to_string() })
}

/// Every event of `org`, oldest first, as the superuser reads them.
async fn events(db: &Client, org: Uuid) -> Vec<Value> {
    db.query(
        "select tenancy.audit_event_json(e) from public.audit_events e \
         where e.organization_id = $1 order by e.at, e.id",
        &[&org],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

const LOG: &str = "select tenancy_audit_log(org_id => $1)";

/// An owner's JWT updates `user_organizations` and `organizations`
/// directly (as through PostgREST), claiming in its headers to be an
/// operator and then another user: each change is recorded once, with the
/// owner as the actor, the row before and after, and the request id.
#[tokio::test]
async fn a_user_jwts_direct_writes_are_audited_as_its_own_user() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let before = events(&db, w.org_a).await.len();

    let posing = json!({
        "x-tenancy-actor": json!({"kind": "operator", "name": "support"}).to_string(),
        "x-tenancy-request-id": "req-direct-1",
    });
    let changed = execute_with_headers(
        &mut conn,
        Actor::User(w.owner_a),
        &posing,
        "update public.user_organizations set role = 'admin' \
         where organization_id = $1 and user_id = $2",
        &[&w.org_a, &w.member_a],
    )
    .await
    .unwrap();
    assert_eq!(changed, 1);
    let as_other_user = actor_header(json!({"kind": "user", "user_id": w.owner_b}));
    execute_with_headers(
        &mut conn,
        Actor::User(w.owner_a),
        &as_other_user,
        "update public.organizations set name = 'Renamed by JWT' where id = $1",
        &[&w.org_a],
    )
    .await
    .unwrap();

    let log = events(&db, w.org_a).await;
    assert_eq!(log.len(), before + 2, "{log:#?}");
    let (role, rename) = (&log[before], &log[before + 1]);
    assert_eq!(role["action"], "member.updated");
    assert_eq!(role["target"], json!(w.member_a));
    assert_eq!(role["before"]["role"], "member");
    assert_eq!(role["after"]["role"], "admin");
    assert_eq!(rename["action"], "organization.updated");
    assert_eq!(rename["after"]["name"], "Renamed by JWT");
    for e in [role, rename] {
        assert_eq!(e["actor_kind"], "user", "{e}");
        assert_eq!(e["actor_user_id"], json!(w.owner_a), "{e}");
        assert_eq!(e["actor_name"], Value::Null, "{e}");
    }
    // A request id is a correlation id, taken from anyone.
    assert_eq!(role["request_id"], "req-direct-1");
    assert_eq!(rename["request_id"], Value::Null);

    // A refused write leaves no trace: a member may not re-role anyone.
    let refused = execute_with_headers(
        &mut conn,
        Actor::User(w.viewer_a),
        &json!({}),
        "update public.user_organizations set role = 'viewer' \
         where organization_id = $1 and user_id = $2",
        &[&w.org_a, &w.admin_a],
    )
    .await;
    assert!(matches!(refused, Ok(0) | Err(_)), "{refused:?}");
    assert_eq!(events(&db, w.org_a).await.len(), before + 2);
}

/// The service role names the actor in `x-tenancy-actor`: a user, an
/// operator, a named service; without one, the service acted; one that
/// names no actor fails the write.
#[tokio::test]
async fn the_service_role_names_the_actor_in_its_headers() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let mut conn = pg.authenticator().await;
    let cases = [
        (
            actor_header(json!({"kind": "user", "user_id": owner})),
            json!(["user", owner, null]),
        ),
        (
            actor_header(json!({"kind": "operator", "name": "Zoë"})),
            json!(["operator", null, "Zoë"]),
        ),
        (
            actor_header(json!({"kind": "service", "name": "billing-worker"})),
            json!(["service", null, "billing-worker"]),
        ),
        (json!({}), json!(["service", null, null])),
    ];
    for (i, (headers, _)) in cases.iter().enumerate() {
        let name = format!("Name {i}");
        execute_with_headers(
            &mut conn,
            Actor::Service,
            headers,
            "update public.organizations set name = $2 where id = $1",
            &[&org, &name],
        )
        .await
        .unwrap();
    }
    let log = events(&db, org).await;
    let renames: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "organization.updated")
        .collect();
    assert_eq!(renames.len(), cases.len());
    for (event, (headers, expected)) in renames.iter().zip(&cases) {
        let got = json!([
            event["actor_kind"],
            event["actor_user_id"],
            event["actor_name"]
        ]);
        assert_eq!(&got, expected, "headers {headers}");
    }
    // The superuser's own writes (no claims, no headers): the service.
    assert_eq!(log[0]["action"], "organization.created");
    assert_eq!(log[0]["actor_kind"], "service");
    // A header that names no actor fails the service's write: nothing is
    // changed, nothing recorded as someone else.
    for bad in [
        json!({"x-tenancy-actor": "not json"}),
        actor_header(json!({"kind": "user", "user_id": "not-a-uuid"})),
        actor_header(json!({"kind": "user"})),
        actor_header(json!({"kind": "root"})),
    ] {
        let result = execute_with_headers(
            &mut conn,
            Actor::Service,
            &bad,
            "update public.organizations set name = 'Refused' where id = $1",
            &[&org],
        )
        .await;
        assert!(result.is_err(), "{bad}: {result:?}");
    }
    assert_eq!(events(&db, org).await.len(), log.len());
}

/// Nobody changes or deletes an event: not the owner whose trail it is,
/// with their JWT, not the service role, not even the tables' owner by
/// hand (the trigger refuses); TRUNCATE is refused too.
#[tokio::test]
async fn nobody_changes_or_deletes_audit_events_an_owner_included() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let trail = events(&db, w.org_a).await;
    assert!(!trail.is_empty());
    let id = trail[0]["id"].as_i64().unwrap();

    for actor in [Actor::User(w.owner_a), Actor::Service, Actor::Anon] {
        for sql in [
            "delete from public.audit_events where organization_id = $1",
            "update public.audit_events set action = 'x.y' where organization_id = $1",
            "insert into public.audit_events (organization_id, actor_kind, action) \
             values ($1, 'service', 'organization.updated')",
        ] {
            let result = execute_with_headers(&mut conn, actor, &json!({}), sql, &[&w.org_a]).await;
            assert_denied(result, &format!("{actor:?}: {sql}"));
        }
    }
    // An owner cannot reach the retention function either.
    let prune = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        "select tenancy_prune_audit_log('30 days')",
        &[],
    )
    .await;
    assert_denied(prune, "an owner pruning");

    // The tables' owner, by hand: the trigger refuses.
    for sql in [
        "delete from public.audit_events where id = $1",
        "update public.audit_events set after = null where id = $1",
    ] {
        assert_denied(db.execute(sql, &[&id]).await, sql);
    }
    // Setting the retention function's flag by hand deletes nothing young.
    let mut by_hand = pg.superuser().await;
    let tx = by_hand.transaction().await.unwrap();
    tx.execute("select set_config('tenancy.audit_prune', 'on', true)", &[])
        .await
        .unwrap();
    let flagged = tx
        .execute("delete from public.audit_events where id = $1", &[&id])
        .await;
    drop(tx);
    assert_denied(flagged, "a young event deleted with the flag set by hand");
    assert_denied(
        db.batch_execute("truncate public.audit_events").await,
        "truncate",
    );
    assert_eq!(events(&db, w.org_a).await, trail);
}

/// The retention function deletes the events older than its argument, at
/// least the minimum retention (30 days; younger is 22023), and is the
/// service role's alone.
#[tokio::test]
async fn retention_prunes_old_events_only_through_the_function() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let org = Uuid::new_v4();
    for days in [400, 45, 10] {
        db.execute(
            "insert into public.audit_events (organization_id, actor_kind, action, target, at) \
             values ($1, 'service', 'organization.updated', $2, now() - make_interval(days => $3))",
            &[&org, &format!("{days} days"), &days],
        )
        .await
        .unwrap();
    }
    let mut conn = pg.authenticator().await;
    let prune = "select tenancy_prune_audit_log($1::text::interval)";
    assert_code(
        call_as(&mut conn, Actor::Service, prune, &[&"29 days"]).await,
        SqlState::INVALID_PARAMETER_VALUE,
        "younger than the minimum",
    );
    assert_code(
        call_as(&mut conn, Actor::Service, prune, &[&None::<String>]).await,
        SqlState::INVALID_PARAMETER_VALUE,
        "no age",
    );
    assert_denied(
        call_as(&mut conn, Actor::Anon, prune, &[&"30 days"]).await,
        "anon pruning",
    );

    let pruned = call_as(&mut conn, Actor::Service, prune, &[&"100 days"])
        .await
        .unwrap();
    assert!(pruned["deleted"].as_i64().unwrap() >= 1, "{pruned}");
    let left: Vec<Value> = events(&db, org)
        .await
        .iter()
        .map(|e| e["target"].clone())
        .collect();
    assert_eq!(left, [json!("45 days"), json!("10 days")]);
    call_as(&mut conn, Actor::Service, prune, &[&"30 days"])
        .await
        .unwrap();
    let left: Vec<Value> = events(&db, org)
        .await
        .iter()
        .map(|e| e["target"].clone())
        .collect();
    assert_eq!(left, [json!("10 days")]);
}

/// Owners and admins read their organization's log (RPC and table);
/// members, viewers, another organization's owner and anon do not; a
/// user JWT cannot ask for every organization; the service role reads
/// every organization's.
#[tokio::test]
async fn owners_and_admins_read_their_orgs_log_and_nobody_else_does() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg.authenticator().await;
    let expected = events(&db, w.org_a).await.len();
    assert!(expected >= 5, "the world's changes are in the log");

    for reader in [w.owner_a, w.admin_a] {
        let log = call_as(&mut conn, Actor::User(reader), LOG, &[&w.org_a])
            .await
            .unwrap();
        let log = log.as_array().unwrap();
        assert_eq!(log.len(), expected, "{reader}");
        assert!(log.iter().all(|e| e["organization_id"] == json!(w.org_a)));
        let rows = crate::support::visible(&mut conn, Actor::User(reader), "audit_events", w.org_a)
            .await
            .unwrap();
        assert_eq!(rows as usize, expected);
    }
    for outsider in [w.member_a, w.viewer_a, w.owner_b] {
        assert_denied(
            call_as(&mut conn, Actor::User(outsider), LOG, &[&w.org_a]).await,
            &format!("{outsider} reading org A's log"),
        );
        let rows =
            crate::support::visible(&mut conn, Actor::User(outsider), "audit_events", w.org_a)
                .await
                .unwrap();
        assert_eq!(rows, 0, "{outsider} selecting org A's events");
    }
    assert_denied(
        call_as(&mut conn, Actor::Anon, LOG, &[&w.org_a]).await,
        "anon",
    );
    assert_denied(
        crate::support::visible(&mut conn, Actor::Anon, "audit_events", w.org_a).await,
        "anon selecting",
    );
    // A user JWT names its organization.
    assert_code(
        call_as(&mut conn, Actor::User(w.owner_a), LOG, &[&None::<Uuid>]).await,
        SqlState::INVALID_PARAMETER_VALUE,
        "a user JWT reading every organization",
    );
    // The service role: one organization, or all of them.
    let all = call_as(
        &mut conn,
        Actor::Service,
        "select tenancy_audit_log(max_rows => 1001)",
        &[],
    )
    .await
    .unwrap();
    let orgs: std::collections::BTreeSet<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["organization_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(orgs.len() >= 2, "{orgs:?}");
    let b = call_as(&mut conn, Actor::Service, LOG, &[&w.org_b])
        .await
        .unwrap();
    assert!(
        b.as_array()
            .unwrap()
            .iter()
            .all(|e| e["organization_id"] == json!(w.org_b))
    );
    // Bounds.
    assert_code(
        call_as(
            &mut conn,
            Actor::Service,
            "select tenancy_audit_log(max_rows => 1002)",
            &[],
        )
        .await,
        SqlState::INVALID_PARAMETER_VALUE,
        "max_rows over 1001",
    );
}

/// Keyset pages through the RPC: newest first, filtered by action, each
/// page after the previous one's last event.
#[tokio::test]
async fn the_rpc_pages_newest_first_after_a_cursor() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    for _ in 0..5 {
        let user = create_user(&db).await;
        crate::support::add_member(&db, org, user, "viewer").await;
    }
    let mut conn = pg.authenticator().await;
    let page = "select tenancy_audit_log(org_id => $1, action => 'member', max_rows => 2, \
                before_at => $2, before_id => $3)";
    let mut seen: Vec<Value> = Vec::new();
    let (mut at, mut id): (Option<chrono::DateTime<chrono::Utc>>, Option<i64>) = (None, None);
    loop {
        let got = call_as(&mut conn, Actor::User(owner), page, &[&org, &at, &id])
            .await
            .unwrap();
        let got = got.as_array().unwrap().clone();
        let Some(last) = got.last() else { break };
        at = Some(serde_json::from_value(last["at"].clone()).unwrap());
        id = last["id"].as_i64();
        seen.extend(got);
    }
    assert_eq!(seen.len(), 6, "the owner and five viewers");
    let all: Vec<Value> = events(&db, org)
        .await
        .into_iter()
        .filter(|e| e["action"] == "member.created")
        .rev()
        .collect();
    assert_eq!(seen, all);
}

/// Recording usage, holding it and claiming an alert write no event; nor
/// does an update that changes nothing.
#[tokio::test]
async fn metering_and_no_op_updates_write_no_event() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let owner = create_user(&db).await;
    let org = create_org(&db, owner).await;
    let before = events(&db, org).await;
    record(
        &db,
        &json!([event(org, Some(owner), json!({"tokens": 30}))]),
    )
    .await;
    let (_, held) = reserve(&db, &Reserve::new(org, owner, 10)).await;
    assert_eq!(held["granted"], true);
    db.execute(
        "update public.organizations set name = name where id = $1",
        &[&org],
    )
    .await
    .unwrap();
    assert_eq!(events(&db, org).await, before);
}

/// A table a later migration attaches the trigger to: its `token_hash`
/// column never reaches the log, and the target column and organization
/// column are the trigger's arguments.
#[tokio::test]
async fn a_token_hash_never_reaches_the_log() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let table = format!("audit_probe_{}", Uuid::new_v4().simple());
    db.batch_execute(&format!(
        "create table public.{table} (organization_id uuid, id uuid, email text, token_hash text); \
         create trigger audit_log after insert or update or delete on public.{table} \
         for each row execute function tenancy.audit_row('invitation', 'id');"
    ))
    .await
    .unwrap();
    let (org, id) = (Uuid::new_v4(), Uuid::new_v4());
    db.execute(
        &format!("insert into public.{table} values ($1, $2, 'a@example.test', 'secret-hash')"),
        &[&org, &id],
    )
    .await
    .unwrap();
    db.execute(
        &format!("update public.{table} set token_hash = 'rotated' where id = $1"),
        &[&id],
    )
    .await
    .unwrap();
    db.execute(
        &format!("update public.{table} set email = 'b@example.test' where id = $1"),
        &[&id],
    )
    .await
    .unwrap();
    db.batch_execute(&format!("drop table public.{table}"))
        .await
        .unwrap();
    let log = events(&db, org).await;
    // Rotating the hash alone changes nothing the log shows.
    let actions: Vec<&Value> = log.iter().map(|e| &e["action"]).collect();
    assert_eq!(
        actions,
        [&json!("invitation.created"), &json!("invitation.updated")]
    );
    assert_eq!(log[0]["target"], json!(id));
    assert_eq!(log[1]["after"]["email"], "b@example.test");
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains("token_hash") && !text.contains("secret-hash") && !text.contains("rotated")
    );
}

/// Every audited table that exists carries the `audit_log` trigger: the
/// four of the baseline, the invitations' and domains' tables (their
/// migrations run before this one), and the rate limits' (its migration
/// attaches the trigger itself).
#[tokio::test]
async fn every_audited_table_that_exists_has_the_trigger() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    for table in [
        "organizations",
        "user_organizations",
        "org_features",
        "usage_limits",
        "org_invitations",
        "org_domains",
        "usage_rate_limits",
    ] {
        let row = db
            .query_one(
                "select pg_catalog.to_regclass('public.' || $1) is not null, exists ( \
                   select 1 from pg_catalog.pg_trigger t \
                   where t.tgrelid = pg_catalog.to_regclass('public.' || $1) \
                     and t.tgname = 'audit_log' and not t.tgisinternal)",
                &[&table],
            )
            .await
            .unwrap();
        let (exists, audited): (bool, bool) = (row.get(0), row.get(1));
        assert_eq!(
            audited, exists,
            "{table}: exists {exists}, audited {audited}"
        );
        assert!(exists, "positive control: {table} exists");
    }
    // Metering is not audited.
    let metering: i64 = db
        .query_one(
            "select count(*) from pg_catalog.pg_trigger t \
             join pg_catalog.pg_class c on c.oid = t.tgrelid \
             where t.tgname = 'audit_log' and c.relname like 'usage\\_%' \
               and c.relname not in ('usage_limits', 'usage_rate_limits')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(metering, 0);
}
