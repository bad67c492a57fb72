//! Verified domains in SQL: `org_domains` is read by the owners and admins
//! of its organization only and written by nobody but the service role;
//! the join setting changes only through `tenancy_set_domain_auto_join`, for
//! owners and admins; a user JWT lists and joins organizations for itself
//! only, through its confirmed email (`auth.users.email_confirmed_at`), and
//! unconfirmed emails, look-alike domains, subdomains not allowed and
//! disabled domains are refused; the domain check agrees with Rust's.

use serde_json::{Value, json};
use tenancy::model::domain::DomainName;
use tenancy_testkit::pg::{Actor, Cluster};
use tokio::sync::OnceCell;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::support::{assert_code, assert_denied, call_as, execute_as, visible, world};

/// Supabase's `auth.users` has `email_confirmed_at`; the test bootstrap's
/// may not: added once per process (retried: other tests may alter the
/// table at the same time).
async fn confirmable(db: &Client) {
    static DONE: OnceCell<()> = OnceCell::const_new();
    DONE.get_or_init(|| async {
        for attempt in 0..10 {
            match db
                .batch_execute(
                    "alter table auth.users add column if not exists email_confirmed_at timestamptz",
                )
                .await
            {
                Ok(()) => return,
                Err(e) if attempt < 9 => {
                    eprintln!("adding auth.users.email_confirmed_at, retrying: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("add auth.users.email_confirmed_at: {e}"),
            }
        }
    })
    .await;
}

/// A domain no other test uses.
fn fresh_domain() -> String {
    format!("d{}.example", &Uuid::new_v4().simple().to_string()[..12])
}

/// A user whose email is `<id>@<at>`, confirmed or not.
async fn user_at(db: &Client, at: &str, confirmed: bool) -> Uuid {
    confirmable(db).await;
    let id = Uuid::new_v4();
    db.execute(
        "insert into auth.users (id, email, email_confirmed_at) \
         values ($1, $2, case when $3 then now() end)",
        &[&id, &format!("{}@{at}", id.simple()), &confirmed],
    )
    .await
    .expect("insert auth.users");
    id
}

/// Records `domain` for `org` (as the service role would) with joining set
/// to `auto_join`.
async fn put_domain(db: &Client, org: Uuid, domain: &str, subdomains: bool, auto_join: &str) {
    db.query_one(
        "select tenancy_put_domain(org_id => $1, domain => $2, include_subdomains => $3)",
        &[&org, &domain, &subdomains],
    )
    .await
    .expect("put domain");
    db.query_one(
        "select tenancy_set_domain_auto_join(org_id => $1, domain => $2, auto_join => $3)",
        &[&org, &domain, &auto_join],
    )
    .await
    .expect("set auto_join");
}

async fn role_of(db: &Client, org: Uuid, user: Uuid) -> Option<String> {
    crate::support::role_of(db, org, user).await
}

const JOINABLE: &str = "select tenancy_joinable_organizations()";
const JOIN: &str = "select tenancy_join_organization(org_id => $1)";

/// The organization ids of a joinable answer.
fn orgs_of(answer: &Value) -> Vec<Uuid> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["organization"]["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn owners_and_admins_read_their_orgs_domains_and_nobody_writes_them() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let (da, db_name) = (fresh_domain(), fresh_domain());
    put_domain(&db, w.org_a, &da, false, "member").await;
    put_domain(&db, w.org_b, &db_name, false, "member").await;
    let mut conn = pg.authenticator().await;

    for (user, own, sees) in [
        (w.owner_a, w.org_a, 1),
        (w.admin_a, w.org_a, 1),
        (w.member_a, w.org_a, 0),
        (w.viewer_a, w.org_a, 0),
        (w.owner_b, w.org_b, 1),
    ] {
        let seen = visible(&mut conn, Actor::User(user), "org_domains", own)
            .await
            .unwrap();
        assert_eq!(seen, sees, "{user} reading its own org's domains");
        let foreign = if own == w.org_a { w.org_b } else { w.org_a };
        let seen = visible(&mut conn, Actor::User(user), "org_domains", foreign)
            .await
            .unwrap();
        assert_eq!(seen, 0, "{user} reading another org's domains");
    }
    assert_denied(
        visible(&mut conn, Actor::Anon, "org_domains", w.org_a).await,
        "anon reading org_domains",
    );
    assert_eq!(
        visible(&mut conn, Actor::Service, "org_domains", w.org_a)
            .await
            .unwrap(),
        1
    );

    // The function: the same readers.
    let listed = call_as(
        &mut conn,
        Actor::User(w.admin_a),
        "select tenancy_domains($1)",
        &[&w.org_a],
    )
    .await
    .unwrap();
    assert_eq!(listed[0]["domain"], json!(da));
    for user in [w.member_a, w.viewer_a, w.owner_b] {
        assert_denied(
            call_as(
                &mut conn,
                Actor::User(user),
                "select tenancy_domains($1)",
                &[&w.org_a],
            )
            .await,
            "a member, a viewer or another org's owner listing org A's domains",
        );
    }

    // No user JWT writes the table, an owner's included.
    for (sql, what) in [
        (
            "insert into org_domains (organization_id, domain, auto_join) values ($1, 'own.example', 'member')",
            "insert",
        ),
        (
            "update org_domains set auto_join = 'member', enabled = true where organization_id = $1",
            "update",
        ),
        (
            "delete from org_domains where organization_id = $1",
            "delete",
        ),
    ] {
        assert_denied(
            execute_as(&mut conn, Actor::User(w.owner_a), sql, &[&w.org_a]).await,
            what,
        );
    }
    // Nor calls the service role's functions.
    for sql in [
        "select tenancy_put_domain(org_id => $1, domain => 'own.example')",
        "select tenancy_remove_domain(org_id => $1, domain => 'own.example')",
        "select tenancy_domain_join(org_id => $1, user_id => null, email => 'a@own.example', joined_at => now())",
        "select tenancy.set_auto_join_for($1, 'own.example', 'member', now())",
        "select tenancy.domains_for($1)",
    ] {
        assert_denied(
            call_as(&mut conn, Actor::User(w.owner_a), sql, &[&w.org_a]).await,
            sql,
        );
    }
    assert_denied(
        call_as(
            &mut conn,
            Actor::User(w.owner_a),
            "select tenancy_domain_joinable(user_id => $1, email => 'a@own.example')",
            &[&w.owner_a],
        )
        .await,
        "a user reading the joinable list for any email",
    );
    let rows: i64 = db
        .query_one(
            "select count(*) from org_domains where organization_id = $1",
            &[&w.org_a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "nothing written");
}

#[tokio::test]
async fn only_owners_and_admins_change_the_join_setting() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let domain = fresh_domain();
    put_domain(&db, w.org_a, &domain, false, "off").await;
    let mut conn = pg.authenticator().await;
    let set = "select tenancy_set_domain_auto_join(org_id => $1, domain => $2, auto_join => $3)";

    for user in [w.member_a, w.viewer_a, w.owner_b] {
        assert_denied(
            call_as(
                &mut conn,
                Actor::User(user),
                set,
                &[&w.org_a, &domain, &"member"],
            )
            .await,
            "a member, a viewer or another org's owner opening org A's domain",
        );
    }
    assert_denied(
        call_as(&mut conn, Actor::Anon, set, &[&w.org_a, &domain, &"member"]).await,
        "anon",
    );
    let current: String = db
        .query_one(
            "select auto_join from org_domains where domain = $1",
            &[&domain],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, "off");

    for user in [w.admin_a, w.owner_a] {
        let changed = call_as(
            &mut conn,
            Actor::User(user),
            set,
            &[&w.org_a, &domain, &"viewer"],
        )
        .await
        .unwrap();
        assert_eq!(changed["auto_join"], json!("viewer"));
    }
    for above in ["admin", "owner"] {
        assert_code(
            call_as(
                &mut conn,
                Actor::User(w.owner_a),
                set,
                &[&w.org_a, &domain, &above],
            )
            .await,
            SqlState::INVALID_PARAMETER_VALUE,
            "auto_join above member",
        );
    }
    // Another org's owner cannot reach org A's domain through its own org.
    assert_code(
        call_as(
            &mut conn,
            Actor::User(w.owner_b),
            set,
            &[&w.org_b, &domain, &"member"],
        )
        .await,
        SqlState::NO_DATA_FOUND,
        "org B has no such domain",
    );
}

#[tokio::test]
async fn a_user_jwt_joins_for_itself_through_its_confirmed_email() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let domain = fresh_domain();
    put_domain(&db, w.org_a, &domain, false, "member").await;
    let ada = user_at(&db, &domain.to_uppercase(), true).await;
    let bob = user_at(&db, &domain, true).await;
    let mut conn = pg.authenticator().await;

    let listed = call_as(&mut conn, Actor::User(ada), JOINABLE, &[])
        .await
        .unwrap();
    assert_eq!(orgs_of(&listed), [w.org_a]);
    assert_eq!(listed[0]["role"], json!("member"));

    // Acting for another user is refused, both ways.
    assert_denied(
        call_as(
            &mut conn,
            Actor::User(ada),
            "select tenancy_joinable_organizations(user_id => $1)",
            &[&bob],
        )
        .await,
        "listing for another user",
    );
    assert_denied(
        call_as(
            &mut conn,
            Actor::User(ada),
            "select tenancy_join_organization(org_id => $1, user_id => $2)",
            &[&w.org_a, &bob],
        )
        .await,
        "joining another user",
    );
    assert_eq!(role_of(&db, w.org_a, bob).await, None);
    assert_denied(
        call_as(&mut conn, Actor::Anon, JOIN, &[&w.org_a]).await,
        "anon joining",
    );

    let joined = call_as(&mut conn, Actor::User(ada), JOIN, &[&w.org_a])
        .await
        .unwrap();
    assert_eq!(joined["joined"], json!(true));
    assert_eq!(joined["membership"]["role"], json!("member"));
    assert_eq!(role_of(&db, w.org_a, ada).await.as_deref(), Some("member"));
    let again = call_as(&mut conn, Actor::User(ada), JOIN, &[&w.org_a])
        .await
        .unwrap();
    assert_eq!(again["joined"], json!(false));
    assert_eq!(again["membership"], joined["membership"]);
    let listed = call_as(&mut conn, Actor::User(ada), JOINABLE, &[])
        .await
        .unwrap();
    assert_eq!(listed, json!([]), "a member no longer sees it");

    // A member already (an admin, whose confirmed email is not at the
    // domain) gets its membership back, unchanged; unconfirmed, it is
    // refused as anyone is.
    assert_denied(
        call_as(&mut conn, Actor::User(w.admin_a), JOIN, &[&w.org_a]).await,
        "an unconfirmed member",
    );
    db.execute(
        "update auth.users set email_confirmed_at = now() where id = $1",
        &[&w.admin_a],
    )
    .await
    .unwrap();
    let admin_joins = call_as(&mut conn, Actor::User(w.admin_a), JOIN, &[&w.org_a])
        .await
        .unwrap();
    assert_eq!(admin_joins["joined"], json!(false));
    assert_eq!(admin_joins["membership"]["role"], json!("admin"));

    // The service role joins a user by id, through the same email check.
    let joined = call_as(
        &mut conn,
        Actor::Service,
        "select tenancy_join_organization(org_id => $1, user_id => $2)",
        &[&w.org_a, &bob],
    )
    .await
    .unwrap();
    assert_eq!(joined["joined"], json!(true));
}

#[tokio::test]
async fn unconfirmed_look_alike_subdomain_and_disabled_are_refused() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let domain = fresh_domain();
    put_domain(&db, w.org_a, &domain, false, "member").await;
    let mut conn = pg.authenticator().await;

    let unconfirmed = user_at(&db, &domain, false).await;
    let look_alike = user_at(&db, &format!("{domain}.evil.io"), true).await;
    let prefixed = user_at(&db, &format!("evil{domain}"), true).await;
    let subdomain = user_at(&db, &format!("eu.{domain}"), true).await;
    for (user, what) in [
        (unconfirmed, "an unconfirmed email"),
        (look_alike, "a look-alike (domain.evil.io)"),
        (prefixed, "a look-alike (evildomain)"),
        (subdomain, "a subdomain not allowed"),
    ] {
        let listed = call_as(&mut conn, Actor::User(user), JOINABLE, &[])
            .await
            .unwrap();
        assert_eq!(listed, json!([]), "{what}: listed");
        assert_denied(
            call_as(&mut conn, Actor::User(user), JOIN, &[&w.org_a]).await,
            what,
        );
        assert_eq!(role_of(&db, w.org_a, user).await, None, "{what}");
    }

    // Subdomains allowed: the subdomain joins, the look-alikes still not.
    db.query_one(
        "select tenancy_put_domain(org_id => $1, domain => $2, include_subdomains => true)",
        &[&w.org_a, &domain],
    )
    .await
    .unwrap();
    assert_denied(
        call_as(&mut conn, Actor::User(look_alike), JOIN, &[&w.org_a]).await,
        "look-alike with subdomains allowed",
    );
    assert_denied(
        call_as(&mut conn, Actor::User(prefixed), JOIN, &[&w.org_a]).await,
        "prefixed look-alike with subdomains allowed",
    );

    // Disabled: refused, whatever the org chose.
    db.query_one(
        "select tenancy_put_domain(org_id => $1, domain => $2, enabled => false)",
        &[&w.org_a, &domain],
    )
    .await
    .unwrap();
    assert_denied(
        call_as(&mut conn, Actor::User(subdomain), JOIN, &[&w.org_a]).await,
        "a disabled domain",
    );
    db.query_one(
        "select tenancy_put_domain(org_id => $1, domain => $2, enabled => true)",
        &[&w.org_a, &domain],
    )
    .await
    .unwrap();
    let joined = call_as(&mut conn, Actor::User(subdomain), JOIN, &[&w.org_a])
        .await
        .unwrap();
    assert_eq!(joined["joined"], json!(true));

    // An organization that does not exist answers as one that refuses.
    let nowhere = Uuid::new_v4();
    let confirmed = user_at(&db, &domain, true).await;
    assert_denied(
        call_as(&mut conn, Actor::User(confirmed), JOIN, &[&nowhere]).await,
        "an organization that does not exist",
    );
    // Joining is never above member: the table refuses another value.
    assert_code(
        db.execute(
            "update org_domains set auto_join = 'admin' where organization_id = $1",
            &[&w.org_a],
        )
        .await,
        SqlState::CHECK_VIOLATION,
        "auto_join admin",
    );
}

/// `tenancy.checked_domain` accepts what `DomainName::parse` accepts, as the
/// same name, and refuses the rest with 22023 naming the field.
#[tokio::test]
async fn the_domain_check_agrees_with_rust() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let long_label = format!("{}.com", "a".repeat(64));
    let label63 = format!("{}.com", "a".repeat(63));
    let long_name = format!("{}.com", ["abcdefghi"; 26].join("."));
    let inputs = [
        "acme.com",
        " ACME.Com ",
        "eu.acme.com",
        "xn--bcher-kva.example",
        "a-b.co",
        "",
        "  ",
        "acme com",
        "ada@acme.com",
        ".acme.com",
        "acme.com.",
        "acme..com",
        "com",
        "-acme.com",
        "acme-.com",
        "acme_corp.com",
        "bücher.example",
        "10.0.0.1",
        "1.example",
        "a.b1",
        long_label.as_str(),
        label63.as_str(),
        long_name.as_str(),
    ];
    for input in inputs {
        let rust = DomainName::parse(input);
        let sql = db
            .query_one("select tenancy.checked_domain('domain', $1)", &[&input])
            .await;
        match (rust, sql) {
            (Ok(name), Ok(row)) => assert_eq!(name.as_str(), row.get::<_, String>(0), "{input:?}"),
            (Err(e), Err(s)) => {
                assert_eq!(e.field(), Some("domain"));
                let db_error = s.as_db_error().expect("a database error");
                assert_eq!(
                    db_error.code(),
                    &SqlState::INVALID_PARAMETER_VALUE,
                    "{input:?}"
                );
                assert!(db_error.message().starts_with("domain: "), "{input:?}");
            }
            (rust, sql) => panic!("{input:?}: Rust {rust:?}, SQL {sql:?}"),
        }
    }
}
