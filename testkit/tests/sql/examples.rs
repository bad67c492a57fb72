//! One real response of each jsonb RPC of the migrations after the SQL
//! entry points (invitations, verified domains, the audit log, rate limits,
//! budget leases, plans, usage history), for the shape check of
//! [`crate::parity`] against `migrations/examples/`; and the check that
//! every `public.tenancy_*` function returning jsonb has an example.
//!
//! Each call runs on rows set up for it, so every array it can fill holds
//! at least one element: the shape check then goes all the way down. The
//! usage history and the audit log's retention, which reach across
//! organizations, run in a database of their own ([`private_db`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tenancy::model::invitation::InvitationToken;
use tenancy_testkit::pg::{Cluster, create_user};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::support::{add_member, at, create_org, examples, put_limit};

/// The jsonb that `sql` returns.
async fn one(db: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Value {
    db.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// A string no other test uses, `len` hex digits long.
fn fresh(len: usize) -> String {
    Uuid::new_v4().simple().to_string()[..len].to_owned()
}

/// Confirms `user`'s email, setting it to `email`.
async fn confirm_email(db: &Client, user: Uuid, email: &str) {
    db.execute(
        "update auth.users set email = $2, email_confirmed_at = now() where id = $1",
        &[&user, &email],
    )
    .await
    .unwrap();
}

/// Every response below, by RPC name.
pub async fn responses(db: &Client) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    out.extend(invitations(db).await);
    out.extend(domains(db).await);
    out.extend(audit(db).await);
    out.extend(rate_limits(db).await);
    out.extend(leases(db).await);
    out.extend(plans(db).await);
    let own = private_db().await;
    out.extend(usage_history(&own).await);
    out.push((
        "tenancy_prune_audit_log",
        one(&own, "select tenancy_prune_audit_log('30 days')", &[]).await,
    ));
    out
}

/// A database of its own, migrated, on the shared cluster: for the calls
/// that reach across organizations (the export claim takes every mapped
/// organization's hours, the audit log's retention prunes every
/// organization's events) or lock `usage_events` whole (making and
/// dropping partitions), so that no other test sees them.
async fn private_db() -> Client {
    let pg = Cluster::shared().expect("called by a live test");
    crate::support::private_db(pg, "examples").await
}

// ---- invitations --------------------------------------------------------------------------

/// An invitation as the library sends it, expiring in a week.
fn invitation(org: Uuid, owner: Uuid, email: Option<&str>, role: &str, max_uses: i32) -> Value {
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
        "created_by": owner,
        "revoked_at": null,
    })
}

/// An email invitation and a link, both pending; one accepted by token,
/// one by hash, one revoked and one resent.
async fn invitations(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let (ada, bob) = (create_user(db).await, create_user(db).await);
    let ada_email = format!("ada-{}@example.test", fresh(8));
    confirm_email(db, ada, &ada_email).await;
    let create = "select tenancy_create_invitation(invitation => $1, token_hash => $2)";
    let mut tokens = Vec::new();
    let mut created = Vec::new();
    for (email, role, uses) in [
        (Some(ada_email.as_str()), "member", 1),
        (None, "viewer", 5),
        (None, "member", 1),
        (None, "viewer", 1),
    ] {
        let token = InvitationToken::generate().unwrap();
        let hash = token.hash().to_hex();
        created.push(
            one(
                db,
                create,
                &[&invitation(org, owner, email, role, uses), &hash],
            )
            .await,
        );
        tokens.push(token);
    }
    let id = |i: usize| -> Uuid { created[i]["id"].as_str().unwrap().parse().unwrap() };
    let pending = one(
        db,
        "select tenancy_pending_invitations(org_id => $1)",
        &[&org],
    )
    .await;
    let accepted = one(
        db,
        "select tenancy_accept_invitation(token => $1, user_id => $2)",
        &[&tokens[0].expose(), &ada],
    )
    .await;
    let by_hash = one(
        db,
        "select tenancy_accept_invitation_hash(token_hash => $1, user_id => $2, \
         email => $3, at => now())",
        &[
            &tokens[1].hash().to_hex(),
            &bob,
            &format!("{bob}@example.test"),
        ],
    )
    .await;
    let revoked = one(
        db,
        "select tenancy_revoke_invitation(org_id => $1, invitation_id => $2)",
        &[&org, &id(2)],
    )
    .await;
    let rotated = one(
        db,
        "select tenancy_rotate_invitation(org_id => $1, invitation_id => $2, token_hash => $3, \
         expires_at => now() + interval '2 days')",
        &[
            &org,
            &id(3),
            &InvitationToken::generate().unwrap().hash().to_hex(),
        ],
    )
    .await;
    vec![
        ("tenancy_create_invitation", created[0].clone()),
        ("tenancy_pending_invitations", pending),
        ("tenancy_accept_invitation", accepted),
        ("tenancy_accept_invitation_hash", by_hash),
        ("tenancy_revoke_invitation", revoked),
        ("tenancy_rotate_invitation", rotated),
    ]
}

// ---- verified domains ---------------------------------------------------------------------

/// A domain with joining on: listed, joined by two users with confirmed
/// emails there (one by the email given, one by its own), then removed.
async fn domains(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let domain = format!("d{}.example", fresh(12));
    let put = one(
        db,
        "select tenancy_put_domain(org_id => $1, domain => $2, include_subdomains => true)",
        &[&org, &domain],
    )
    .await;
    let auto_join = one(
        db,
        "select tenancy_set_domain_auto_join(org_id => $1, domain => $2, auto_join => 'member')",
        &[&org, &domain],
    )
    .await;
    let listed = one(db, "select tenancy_domains($1)", &[&org]).await;
    let (ada, bob) = (create_user(db).await, create_user(db).await);
    let ada_email = format!("ada@{domain}");
    confirm_email(db, ada, &ada_email).await;
    confirm_email(db, bob, &format!("bob@team.{domain}")).await;
    let joinable = one(
        db,
        "select tenancy_domain_joinable(user_id => $1, email => $2)",
        &[&ada, &ada_email],
    )
    .await;
    let joined = one(
        db,
        "select tenancy_domain_join(org_id => $1, user_id => $2, email => $3, joined_at => now())",
        &[&org, &ada, &ada_email],
    )
    .await;
    let joinable_for_bob = one(
        db,
        "select tenancy_joinable_organizations(user_id => $1)",
        &[&bob],
    )
    .await;
    let bob_joined = one(
        db,
        "select tenancy_join_organization(org_id => $1, user_id => $2)",
        &[&org, &bob],
    )
    .await;
    let removed = one(
        db,
        "select tenancy_remove_domain(org_id => $1, domain => $2)",
        &[&org, &domain],
    )
    .await;
    vec![
        ("tenancy_put_domain", put),
        ("tenancy_set_domain_auto_join", auto_join),
        ("tenancy_domains", listed),
        ("tenancy_domain_joinable", joinable),
        ("tenancy_domain_join", joined),
        ("tenancy_joinable_organizations", joinable_for_bob),
        ("tenancy_join_organization", bob_joined),
        ("tenancy_remove_domain", removed),
    ]
}

// ---- the audit log ------------------------------------------------------------------------

/// A member added and promoted: the log's rows (the prune runs in
/// [`private_db`]).
async fn audit(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let member = create_user(db).await;
    add_member(db, org, member, "member").await;
    db.execute(
        "update user_organizations set role = 'admin' where organization_id = $1 and user_id = $2",
        &[&org, &member],
    )
    .await
    .unwrap();
    vec![(
        "tenancy_audit_log",
        one(
            db,
            "select tenancy_audit_log(org_id => $1, max_rows => 2)",
            &[&org],
        )
        .await,
    )]
}

// ---- rate limits --------------------------------------------------------------------------

/// An org-wide and a per-user rate limit, both decided once before the
/// answers (so each `tat` is set), then one deleted.
async fn rate_limits(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let put = "select tenancy_put_rate_limit(limit_id => $1, org_id => $2, metric => $3, \
         rate_window => 'minute', limit_value => 60, burst => 10, mode => $4, \
         created_at => '2026-03-14T12:00:00Z', user_id => $5)";
    let org_wide = one(
        db,
        put,
        &[&Uuid::now_v7(), &org, &"requests", &"hard", &None::<Uuid>],
    )
    .await;
    let theirs = one(
        db,
        put,
        &[&Uuid::now_v7(), &org, &"tokens", &"soft", &Some(owner)],
    )
    .await;
    let acquire = "select tenancy_acquire_rate(org_id => $1, user_id => $2, \
         charges => '[[\"requests\", \"1\"], [\"tokens\", \"5\"]]', now_us => $3, \
         action => 'acquire')";
    let now_us = at("2026-03-14T12:00:00Z").timestamp_micros();
    one(db, acquire, &[&org, &owner, &now_us]).await;
    let acquired = one(db, acquire, &[&org, &owner, &(now_us + 1_000_000)]).await;
    let states = one(db, "select tenancy_rate_limits($1)", &[&org]).await;
    let id: Uuid = theirs["id"].as_str().unwrap().parse().unwrap();
    let deleted = one(
        db,
        "select tenancy_delete_rate_limit(org_id => $1, limit_id => $2)",
        &[&org, &id],
    )
    .await;
    vec![
        ("tenancy_put_rate_limit", org_wide),
        ("tenancy_acquire_rate", acquired),
        ("tenancy_rate_limits", states),
        ("tenancy_delete_rate_limit", deleted),
    ]
}

// ---- budget leases ------------------------------------------------------------------------

/// A lease on a monthly tokens limit, consumed by a recorded event, then
/// its `consumed` drifted: the check and the repair report it.
async fn leases(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    put_limit(db, org, None, "tokens", "monthly", 1000, "hard").await;
    let lease = Uuid::now_v7();
    let noon = at("2026-03-14T12:00:00Z");
    let granted = one(
        db,
        "select tenancy_lease_budget(org_id => $1, lease_id => $2, user_id => $3, \
         metric => 'tokens', daily_start => '2026-03-14', monthly_start => '2026-03-01', \
         now => $4, expires_at => $5, spoken_for => 0, want => 100, min_grant => 0, \
         share => 1, purge_before => $6)",
        &[
            &org,
            &lease,
            &owner,
            &noon,
            &(noon + Duration::seconds(30)),
            &(noon - Duration::days(1)),
        ],
    )
    .await;
    let mut used = crate::support::event(org, Some(owner), json!({"tokens": 40}));
    used["metadata"] = json!({"tenancy_lease": lease.to_string()});
    crate::support::record(db, &json!([used])).await;
    db.execute(
        "update public.usage_leases set consumed = 0 where id = $1",
        &[&lease],
    )
    .await
    .unwrap();
    let mut out = vec![("tenancy_lease_budget", granted)];
    for rpc in ["tenancy_reconcile_leases", "tenancy_repair_leases"] {
        let sql = format!("select {rpc}(org_id => $1, period => 'monthly', period_start => $2)");
        out.push((rpc, one(db, &sql, &[&org, &crate::support::month()]).await));
    }
    out
}

// ---- plans --------------------------------------------------------------------------------

/// A plan of every kind of entry, assigned with a trial that falls back
/// to it, an override on top; version 2 migrated to, then unassigned.
async fn plans(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let key = format!("p{}", fresh(16));
    let plan = |name: &str| {
        json!({
            "key": key,
            "name": name,
            "features": [
                {"key": "veo", "enabled": true, "config": {"tier": "pro"}},
                {"key": "beta", "enabled": false, "config": null}
            ],
            "limits": [
                {"id": Uuid::new_v4(), "metric": "tokens", "period": "monthly",
                 "value": "1000", "mode": "hard"}
            ],
            "rate_limits": [
                {"id": Uuid::new_v4(), "metric": "requests", "window": "minute",
                 "value": "60", "burst": "10", "mode": "hard"}
            ]
        })
    };
    let now = at("2026-03-01T00:00:00Z");
    let put = "select tenancy_put_plan_version($1::jsonb, $2)";
    let first = one(db, put, &[&plan("Pro"), &now]).await;
    one(db, put, &[&plan("Pro 2"), &now]).await;
    let assigned = one(
        db,
        "select tenancy_assign_plan(org_id => $1, plan_key => $2, version => 1, \
         started_at => $3, trial_ends_at => $4, fallback_key => $2, fallback_version => 1)",
        &[&org, &key, &now, &at("2027-03-01T00:00:00Z")],
    )
    .await;
    // An override of the plan's limit, lapsing.
    db.execute(
        "select tenancy_put_limit(limit_id => $1, org_id => $2, metric => 'tokens', \
         period => 'monthly', limit_value => 5, expires_at => '2027-01-01T00:00:00Z')",
        &[&Uuid::now_v7(), &org],
    )
    .await
    .unwrap();
    let entitlements = one(
        db,
        "select tenancy_entitlements(org_id => $1, at => $2)",
        &[&org, &at("2026-12-01T00:00:00Z")],
    )
    .await;
    let versions = one(db, "select tenancy_plan_versions($1)", &[&key]).await;
    let version = one(db, "select tenancy_plan_version($1, 1)", &[&key]).await;
    let assignment = one(db, "select tenancy_plan_assignment($1)", &[&org]).await;
    let migrated = one(
        db,
        "select tenancy_migrate_plan(plan_key => $1, from_version => 1, to_version => 2, \
         org_id => $2)",
        &[&key, &org],
    )
    .await;
    let unassigned = one(db, "select tenancy_unassign_plan($1)", &[&org]).await;
    vec![
        ("tenancy_put_plan_version", first),
        ("tenancy_assign_plan", assigned),
        ("tenancy_entitlements", entitlements),
        ("tenancy_plan_versions", versions),
        ("tenancy_plan_version", version),
        ("tenancy_plan_assignment", assignment),
        ("tenancy_migrate_plan", migrated),
        ("tenancy_unassign_plan", unassigned),
    ]
}

// ---- usage history ------------------------------------------------------------------------

/// An event as the library sends it to `tenancy_record_usage`, with its
/// token classes, provenance and cost: `tokens` is the sum of its classes.
fn usage(org: Uuid, user: Option<Uuid>, occurred_at: DateTime<Utc>, tokens: u64) -> Value {
    let day = occurred_at.date_naive();
    json!({
        "id": Uuid::now_v7(),
        "organization_id": org,
        "user_id": user,
        "provider": "openai",
        "model": "gpt-x",
        "operation": "chat",
        "input_tokens": tokens,
        "cached_input_tokens": 1,
        "cache_write_tokens": 1,
        "output_tokens": 0,
        "reasoning_tokens": 1,
        "audio_input_tokens": 0,
        "audio_output_tokens": 0,
        "image_input_tokens": 0,
        "image_output_tokens": 0,
        "quantities": {},
        "cost_usd": "0.015",
        "cost_source": "price_table",
        "price_provider": "openai",
        "price_model": "gpt-x",
        "price_effective_from": "2001-01-01",
        "price_table": "2001-02",
        "occurred_at": occurred_at,
        "metadata": {"request": "r1"},
        "amounts": {"tokens": (tokens + 3).to_string(), "cost_usd": "0.015"},
        "daily_start": day,
        "monthly_start": day.format("%Y-%m-01").to_string(),
    })
}

/// Two hours of a user's events (on `db`, a database of its own: the
/// export claim takes every organization's hours), a billing customer, a
/// rollup drifted; the partition of December 1999 made and dropped.
async fn usage_history(db: &Client) -> Vec<(&'static str, Value)> {
    let owner = create_user(db).await;
    let org = create_org(db, owner).await;
    let events = [
        usage(org, Some(owner), at("2001-02-03T10:10:00Z"), 10),
        usage(org, Some(owner), at("2001-02-03T11:20:00Z"), 20),
    ];
    crate::support::record(db, &json!(events)).await;
    let event: Uuid = events[0]["id"].as_str().unwrap().parse().unwrap();
    let range = "since => '2001-02-03T00:00:00Z', until => '2001-02-04T00:00:00Z'";
    let customer = one(
        db,
        "select tenancy_set_billing_customer(org_id => $1, stripe_customer_id => $2)",
        &[&org, &format!("cus_{}", fresh(12))],
    )
    .await;
    let meter = format!("cost_cents_{}", fresh(12));
    let claimed = one(
        db,
        "select tenancy_export_claim($1, 'cost_usd', 100, '2001-02-03T12:00:00Z', \
         '2001-02-04T00:00:00Z', 1000)",
        &[&meter],
    )
    .await;
    let batch = claimed[0]["id"].as_i64().unwrap();
    let acked = one(
        db,
        "select tenancy_export_ack($1, $2, now())",
        &[&meter, &batch],
    )
    .await;
    let mut out = vec![
        (
            "tenancy_usage_events",
            one(
                db,
                &format!("select tenancy_usage_events(org_id => $1, {range})"),
                &[&org],
            )
            .await,
        ),
        (
            "tenancy_usage_event",
            one(
                db,
                "select tenancy_usage_event(org_id => $1, event_id => $2)",
                &[&org, &event],
            )
            .await,
        ),
        (
            "tenancy_usage_report",
            one(
                db,
                &format!(
                    "select tenancy_usage_report(org_id => $1, {range}, granularity => 'hour', \
                     group_by => '{{user,metric}}', max_rows => 2)"
                ),
                &[&org],
            )
            .await,
        ),
        (
            "tenancy_usage_costs",
            one(
                db,
                &format!(
                    "select tenancy_usage_costs(org_id => $1, {range}, granularity => 'hour', \
                     group_by => '{{user,operation}}', max_rows => 1)"
                ),
                &[&org],
            )
            .await,
        ),
        ("tenancy_set_billing_customer", customer),
        (
            "tenancy_billing_customer",
            one(db, "select tenancy_billing_customer($1)", &[&org]).await,
        ),
        ("tenancy_export_claim", claimed),
        ("tenancy_export_ack", acked),
    ];
    db.execute(
        "update usage_rollups set amount = amount + 5 where organization_id = $1 \
         and metric = 'tokens'",
        &[&org],
    )
    .await
    .unwrap();
    for rpc in ["tenancy_reconcile_rollups", "tenancy_repair_rollups"] {
        let sql = format!("select {rpc}($1, '2001-02-03T00:00:00Z', '2001-02-04T00:00:00Z')");
        out.push((rpc, one(db, &sql, &[&org]).await));
    }
    out.push((
        "tenancy_create_usage_partitions",
        one(
            db,
            "select tenancy_create_usage_partitions('1999-12-01T00:00:00Z', 1)",
            &[],
        )
        .await,
    ));
    out.push((
        "tenancy_drop_usage_events",
        one(
            db,
            "select tenancy_drop_usage_events('2000-01-01T00:00:00Z')",
            &[],
        )
        .await,
    ));
    out
}

// ---- completeness -------------------------------------------------------------------------

/// Every `public.tenancy_*` function returning jsonb, from the catalog.
async fn jsonb_rpcs(db: &Client) -> BTreeSet<String> {
    db.query(
        "select p.proname::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
         where n.nspname = 'public' and p.proname like 'tenancy\\_%' \
         and p.prorettype = 'jsonb'::regtype and not p.proretset",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Every jsonb RPC the migrations define has an example, and every
/// example names one: with the parity check, which calls each example's
/// RPC, no jsonb RPC goes unchecked.
#[tokio::test]
async fn every_jsonb_rpc_has_an_example() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let rpcs = jsonb_rpcs(&db).await;
    let examples: BTreeSet<String> = examples().into_iter().collect();
    let missing: Vec<&String> = rpcs.difference(&examples).collect();
    let stray: Vec<&String> = examples.difference(&rpcs).collect();
    assert!(
        missing.is_empty() && stray.is_empty(),
        "jsonb RPCs without an example: {missing:?}; examples of no jsonb RPC: {stray:?}"
    );
}
