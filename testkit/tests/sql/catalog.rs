//! The migrations and the catalog they leave: re-applying is harmless, RLS
//! is on everywhere, who may execute which function, no table privilege for
//! anon, and no loose security definer.

use serde_json::json;
use tenancy_testkit::pg::{self, Cluster};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::{TENANT_TABLES, event, record};

/// Every RPC in `public`, by name.
const RPCS: [&str; 82] = [
    "tenancy_accept_invitation",
    "tenancy_accept_invitation_hash",
    "tenancy_acquire_rate",
    "tenancy_add_member",
    "tenancy_assign_plan",
    "tenancy_audit_log",
    "tenancy_billing_customer",
    "tenancy_check_limit",
    "tenancy_claim_alert",
    "tenancy_commit_reservation",
    "tenancy_commit_usage",
    "tenancy_create_invitation",
    "tenancy_create_organization",
    "tenancy_create_unowned_organization",
    "tenancy_create_usage_partitions",
    "tenancy_delete_feature",
    "tenancy_delete_limit",
    "tenancy_delete_organization",
    "tenancy_delete_rate_limit",
    "tenancy_domain_join",
    "tenancy_domain_joinable",
    "tenancy_domains",
    "tenancy_drop_usage_events",
    "tenancy_entitlements",
    "tenancy_entitlements_version",
    "tenancy_export_ack",
    "tenancy_export_claim",
    "tenancy_feature",
    "tenancy_features",
    "tenancy_join_organization",
    "tenancy_joinable_organizations",
    "tenancy_lease_budget",
    "tenancy_limits",
    "tenancy_list_organizations",
    "tenancy_members",
    "tenancy_memberships",
    "tenancy_migrate_plan",
    "tenancy_organization",
    "tenancy_organization_by_slug",
    "tenancy_pending_invitations",
    "tenancy_plan_assignment",
    "tenancy_plan_version",
    "tenancy_plan_versions",
    "tenancy_prune_audit_log",
    "tenancy_put_domain",
    "tenancy_put_limit",
    "tenancy_put_plan_version",
    "tenancy_put_rate_limit",
    "tenancy_rate_limits",
    "tenancy_reconcile_leases",
    "tenancy_reconcile_rollups",
    "tenancy_reconcile_usage",
    "tenancy_record_event",
    "tenancy_record_events",
    "tenancy_record_usage",
    "tenancy_release_reservation",
    "tenancy_release_usage",
    "tenancy_remove_domain",
    "tenancy_remove_member",
    "tenancy_rename_organization",
    "tenancy_repair_leases",
    "tenancy_repair_rollups",
    "tenancy_repair_usage",
    "tenancy_reserve",
    "tenancy_reserve_usage",
    "tenancy_revoke_invitation",
    "tenancy_rotate_invitation",
    "tenancy_schema_version",
    "tenancy_set_billing_customer",
    "tenancy_set_domain_auto_join",
    "tenancy_set_member_role",
    "tenancy_unassign_plan",
    "tenancy_update_feature",
    "tenancy_usage_costs",
    "tenancy_usage_event",
    "tenancy_usage_events",
    "tenancy_usage_history",
    "tenancy_usage_report",
    "tenancy_usage_snapshot",
    "tenancy_usage_summary",
    "tenancy_user_organizations",
    "tenancy_user_profiles",
];

/// The RPCs a user JWT may call; every other one is for service_role only.
const USER_RPCS: [&str; 47] = [
    "tenancy_accept_invitation",
    "tenancy_accept_invitation_hash",
    "tenancy_add_member",
    "tenancy_audit_log",
    "tenancy_check_limit",
    "tenancy_commit_usage",
    "tenancy_create_invitation",
    "tenancy_create_organization",
    "tenancy_delete_feature",
    "tenancy_delete_limit",
    "tenancy_delete_organization",
    "tenancy_domains",
    "tenancy_entitlements",
    "tenancy_feature",
    "tenancy_features",
    "tenancy_join_organization",
    "tenancy_joinable_organizations",
    "tenancy_limits",
    "tenancy_members",
    "tenancy_memberships",
    "tenancy_organization",
    "tenancy_organization_by_slug",
    "tenancy_pending_invitations",
    "tenancy_plan_assignment",
    "tenancy_plan_version",
    "tenancy_plan_versions",
    "tenancy_rate_limits",
    "tenancy_record_event",
    "tenancy_record_events",
    "tenancy_release_usage",
    "tenancy_remove_member",
    "tenancy_rename_organization",
    "tenancy_reserve_usage",
    "tenancy_revoke_invitation",
    "tenancy_rotate_invitation",
    "tenancy_schema_version",
    "tenancy_set_domain_auto_join",
    "tenancy_set_member_role",
    "tenancy_usage_costs",
    "tenancy_usage_event",
    "tenancy_usage_events",
    "tenancy_usage_history",
    "tenancy_usage_report",
    "tenancy_usage_snapshot",
    "tenancy_usage_summary",
    "tenancy_user_organizations",
    "tenancy_user_profiles",
];

/// The functions in `tenancy` a user JWT may execute (migrations/README.md
/// lists them): those its policies, triggers and RPCs call.
const USER_HELPERS: [&str; 76] = [
    "checked_amount",
    "checked_metric",
    "checked_report_args",
    "day_starts_at",
    "decide",
    "effective_features",
    "effective_limits",
    "effective_plan",
    "effective_rate_limits",
    "entitlement_source_json",
    "entitlements_valid_until",
    "event_amounts",
    "feature_json",
    "has_feature",
    "has_role",
    "hour_start",
    "iana_zone",
    "invitation_refused",
    "is_member",
    "is_privileged",
    "is_timezone",
    "json_amount",
    "limit_json",
    "limit_level",
    "limit_percent",
    "max_invitation_lifetime",
    "max_profile_ids",
    "may_invite",
    "member_accept_invitation",
    "member_audit_log",
    "member_check_limit",
    "member_commit_usage",
    "member_create_invitation",
    "member_domains",
    "member_entitlements",
    "member_feature",
    "member_join",
    "member_joinable",
    "member_pending_invitations",
    "member_record_events",
    "member_release_usage",
    "member_reserve_usage",
    "member_revoke_invitation",
    "member_rotate_invitation",
    "member_set_auto_join",
    "member_usage_costs",
    "member_usage_report",
    "member_usage_snapshot",
    "member_usage_summary",
    "member_user_profiles",
    "membership_cas_failed",
    "membership_json",
    "org_exists",
    "org_ids",
    "organization_json",
    "other_owner_exists",
    "period_resets_at",
    "period_start",
    "period_starts_at",
    "plan_assignment_json",
    "plan_version_json",
    "plan_visible",
    "rate_limit_entry_json",
    "rate_limit_json",
    "report_bucket",
    "require_member",
    "require_report_reader",
    "require_role",
    "role_in",
    "role_rank",
    "round_half_even",
    "schema_version",
    "token_fields",
    "usage_event_json",
    "usage_lines",
    "within_limit",
];

/// The functions in `tenancy` that are not trigger functions and that
/// service_role may not execute: the checked paths for user JWTs
/// (`member_*`), and adopt_table (for migrations).
const NOT_FOR_SERVICE: [&str; 23] = [
    "adopt_table",
    "member_accept_invitation",
    "member_audit_log",
    "member_check_limit",
    "member_commit_usage",
    "member_create_invitation",
    "member_domains",
    "member_entitlements",
    "member_feature",
    "member_join",
    "member_joinable",
    "member_pending_invitations",
    "member_record_events",
    "member_release_usage",
    "member_reserve_usage",
    "member_revoke_invitation",
    "member_rotate_invitation",
    "member_set_auto_join",
    "member_usage_costs",
    "member_usage_report",
    "member_usage_snapshot",
    "member_usage_summary",
    "member_user_profiles",
];

/// The catalog checks, on `db`.
pub async fn assert_catalog(db: &Client) {
    assert_rls_everywhere(db).await;
    assert_rpc_grants(db).await;
    assert_helper_grants(db).await;
    assert_no_anon_table_privilege(db).await;
    assert_auth_users_private(db).await;
    assert_definers_pinned(db).await;
}

/// Neither anon nor authenticated holds a privilege on `auth.users`: a
/// user JWT learns who others are only through `tenancy_user_profiles`.
async fn assert_auth_users_private(db: &Client) {
    for role in ["anon", "authenticated"] {
        let held: bool = db
            .query_one(
                "select has_table_privilege($1, 'auth.users', \
                 'select, insert, update, delete, truncate, references, trigger') \
                 or has_any_column_privilege($1, 'auth.users', 'select')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!held, "{role} holds a privilege on auth.users");
    }
}

/// RLS on every table of `public`.
async fn assert_rls_everywhere(db: &Client) {
    let tables: Vec<(String, bool)> = db
        .query(
            "select c.relname::text, c.relrowsecurity from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let no_rls: Vec<&str> = tables
        .iter()
        .filter(|t| !t.1)
        .map(|t| t.0.as_str())
        .collect();
    assert!(
        no_rls.is_empty(),
        "tables without RLS in public: {no_rls:?}"
    );
    for table in TENANT_TABLES {
        assert!(
            tables.iter().any(|t| t.0 == table),
            "positive control: the check sees {table}: {tables:?}"
        );
    }
}

/// Who may execute each function of `public`: the bootstrap grants every
/// new one to anon and authenticated, as Supabase does, so only the
/// migrations' revokes protect them.
async fn assert_rpc_grants(db: &Client) {
    let functions: Vec<(String, bool, bool, bool)> = db
        .query(
            "select p.proname::text, has_function_privilege('anon', p.oid, 'execute'), \
             has_function_privilege('authenticated', p.oid, 'execute'), \
             has_function_privilege('service_role', p.oid, 'execute') \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'public' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let names = |keep: fn(&(String, bool, bool, bool)) -> bool| -> Vec<&str> {
        functions
            .iter()
            .filter(|f| keep(f))
            .map(|f| f.0.as_str())
            .collect()
    };
    assert_eq!(
        names(|f| f.0.starts_with("tenancy_")),
        RPCS,
        "the RPCs in public, each once"
    );
    assert_eq!(names(|f| f.1), Vec::<&str>::new(), "anon executes none");
    assert_eq!(names(|f| f.2), USER_RPCS, "what authenticated executes");
    assert_eq!(names(|f| f.3), names(|_| true), "service_role executes all");
}

/// Who may execute each function of `tenancy`: anon nothing (PostgreSQL
/// grants execute on each new function to PUBLIC, and only the
/// migrations' revokes take it back), authenticated exactly
/// [`USER_HELPERS`], service_role every one but [`NOT_FOR_SERVICE`] and the
/// trigger functions, which nobody calls.
async fn assert_helper_grants(db: &Client) {
    let helpers: Vec<(String, bool, bool, bool, bool)> = db
        .query(
            "select p.proname::text, has_function_privilege('anon', p.oid, 'execute'), \
             has_function_privilege('authenticated', p.oid, 'execute'), \
             has_function_privilege('service_role', p.oid, 'execute'), \
             p.prorettype = 'pg_catalog.trigger'::regtype \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'tenancy' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let names = |keep: fn(&(String, bool, bool, bool, bool)) -> bool| -> Vec<&str> {
        helpers
            .iter()
            .filter(|h| keep(h))
            .map(|h| h.0.as_str())
            .collect()
    };
    assert_eq!(
        names(|h| h.1),
        Vec::<&str>::new(),
        "functions in tenancy anon may execute"
    );
    assert_eq!(
        names(|h| h.2),
        USER_HELPERS,
        "functions in tenancy authenticated may execute"
    );
    let not_for_service: Vec<&str> = names(|h| !h.3 && !h.4);
    assert_eq!(
        not_for_service, NOT_FOR_SERVICE,
        "functions in tenancy service_role may not execute, trigger functions aside"
    );
    // Trigger functions are not for calling, by anyone.
    assert!(
        names(|h| h.4).contains(&"user_organizations_guard"),
        "positive control: the query finds the trigger functions: {helpers:?}"
    );
    let callable = names(|h| h.4 && (h.2 || h.3));
    assert!(
        callable.is_empty(),
        "trigger functions authenticated or service_role may call: {callable:?}"
    );
}

/// anon holds no privilege on any tenancy table: every table of `public`
/// and of `tenancy` (month partitions aside: `usage_events`' are checked
/// through it), read from the catalog so a new table cannot be forgotten;
/// but the host's own tables adopted with `tenancy.adopt_table` (they
/// carry its `tenancy_keep_organization_id` trigger), whose privileges
/// are the host's.
async fn assert_no_anon_table_privilege(db: &Client) {
    let listed: Vec<(String, bool)> = db
        .query(
            "select n.nspname || '.' || c.relname, n.nspname = 'public' from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname in ('public', 'tenancy') and c.relkind in ('r', 'p') \
             and not c.relispartition and not exists (select 1 from pg_trigger t \
               where t.tgrelid = c.oid and t.tgname = 'tenancy_keep_organization_id') \
             order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for expected in TENANT_TABLES.iter().map(|t| format!("public.{t}")).chain([
        "public.audit_events".into(),
        "tenancy.usage_rate_state".into(),
    ]) {
        assert!(
            listed.iter().any(|(t, _)| *t == expected),
            "positive control: the catalog lists {expected}: {listed:?}"
        );
    }
    for (table, public) in listed {
        let (anon, service, truncate): (bool, bool, bool) = db
            .query_one(
                "select has_table_privilege('anon', $1, \
                 'select, insert, update, delete, truncate, references, trigger'), \
                 has_table_privilege('service_role', $1, 'select'), \
                 has_table_privilege('authenticated', $1, 'truncate') \
                 or has_table_privilege('service_role', $1, 'truncate')",
                &[&table],
            )
            .await
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .unwrap();
        assert!(!anon, "anon holds a privilege on {table}");
        if public {
            assert!(service, "positive control: service_role reads {table}");
        }
        // TRUNCATE fires no row trigger: no audit row, no last-owner rule.
        assert!(!truncate, "an API role may truncate {table}");
    }
    // Whoever could setval the audit log's id sequence back would make
    // every later audit row collide, blocking every audited change.
    for role in ["anon", "authenticated", "service_role"] {
        let held: bool = db
            .query_one(
                "select has_sequence_privilege($1, \
                 pg_get_serial_sequence('public.audit_events', 'id'), 'usage, select, update')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            !held,
            "{role} holds a privilege on the audit log's id sequence"
        );
    }
}

/// No security definer function in `public`; every one in `tenancy` pins
/// its search_path to ''.
async fn assert_definers_pinned(db: &Client) {
    let definers: Vec<(String, String, bool)> = db
        .query(
            "select n.nspname::text, p.proname::text, \
             coalesce(p.proconfig @> array['search_path=\"\"'], false) \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname in ('public', 'tenancy') and p.prosecdef order by 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let in_public: Vec<&str> = definers
        .iter()
        .filter(|d| d.0 == "public")
        .map(|d| d.1.as_str())
        .collect();
    assert!(
        in_public.is_empty(),
        "security definer functions in public: {in_public:?}"
    );
    assert!(
        definers
            .iter()
            .any(|d| d.0 == "tenancy" && d.1 == "is_member"),
        "positive control: the same query finds the definers in tenancy: {definers:?}"
    );
    let loose: Vec<&str> = definers
        .iter()
        .filter(|d| !d.2)
        .map(|d| d.1.as_str())
        .collect();
    assert!(
        loose.is_empty(),
        "security definer functions without search_path = '': {loose:?}"
    );
}

/// The columns of `usage_counters`' primary key, in order.
async fn counter_key(db: &Client) -> Vec<String> {
    db.query(
        "select a.attname::text from pg_index i, unnest(i.indkey) with ordinality k (attnum, n) \
         join pg_attribute a on a.attnum = k.attnum \
         where i.indexrelid = 'public.usage_counters_pkey'::regclass \
           and a.attrelid = i.indrelid order by k.n",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A database whose `usage_counters` was created with the metric before
/// the period gets the current key when the migrations are applied again.
#[tokio::test]
async fn reapplying_rekeys_counters_created_with_the_earlier_key() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("rekey_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    pg::apply_all(&db).await.unwrap();
    let current = [
        "organization_id",
        "scope_user_id",
        "period",
        "period_start",
        "metric",
    ];
    assert_eq!(counter_key(&db).await, current, "positive control");
    db.batch_execute(
        "alter table public.usage_counters drop constraint usage_counters_pkey, \
         add constraint usage_counters_pkey \
         primary key (organization_id, scope_user_id, metric, period, period_start)",
    )
    .await
    .unwrap();
    assert_eq!(counter_key(&db).await[2], "metric");
    pg::apply_all(&db).await.expect("re-apply");
    assert_eq!(counter_key(&db).await, current);
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_reapply_cleanly() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("fresh_{}", Uuid::new_v4().simple());
    let db = pg.create_database(&name).await;
    pg::apply_all(&db).await.expect("first application");
    pg::apply_all(&db).await.expect("second application");
    // Each file on its own, again, in order: every one is re-runnable.
    for (file, sql) in pg::migrations() {
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("re-apply {file}: {e}"));
    }
    let policies: i64 = db
        .query_one(
            "select count(*) from pg_policies where schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(policies, 27, "policies are replaced, not duplicated");
    assert_catalog(&db).await;

    // Truncating organizations (its own database: it empties the table)
    // takes the usage log along, which no foreign key or row trigger does.
    let org: Uuid = db
        .query_one(
            "insert into organizations (name, slug) values ('Gone', 'gone') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    record(&db, &json!([event(org, None, json!({"tokens": 1}))])).await;
    let count = "select count(*) from usage_events";
    let before: i64 = db.query_one(count, &[]).await.unwrap().get(0);
    assert_eq!(before, 1, "positive control: the event is stored");
    db.batch_execute("truncate organizations cascade")
        .await
        .unwrap();
    let after: i64 = db.query_one(count, &[]).await.unwrap().get(0);
    assert_eq!(after, 0, "truncating organizations empties the usage log");
}

#[tokio::test]
async fn catalog_rls_on_every_public_table_and_no_definer_in_public() {
    let Some(pg) = Cluster::shared() else { return };
    assert_catalog(&pg.superuser().await).await;
}
