//! The entry points for callers that are not the library
//! (`20261206000400_tenancy_sql_api.sql`): who may call them for what, the
//! SQLSTATE and message of each refusal, and that their answers are the
//! Rust API's for the same organization.

use chrono::{Timelike, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tenancy::postgres::PgStore;
use tenancy::{
    LimitDecision, MetricKey, NewLimit, NewOrganization, OrgId, Period, PlatformOperator,
    ReserveOutcome, Tenancy, UsageEvent, UsageLine, UserId,
};
use tenancy_testkit::pg::{self, Actor, Cluster, act, create_user};
use tenancy_testkit::unique_slug;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error};
use uuid::Uuid;

use crate::support::{add_member, assert_code, assert_denied, call_as, message, world};

const CHECK: &str =
    "select tenancy_check_limit(org_id => $1, metric => $2, amount => $3::text::numeric)";
const CHECK_FOR: &str =
    "select tenancy_check_limit(org_id => $1, metric => 'tokens', amount => 1, user_id => $2)";
const RESERVE: &str =
    "select tenancy_reserve_usage(org_id => $1, metric => $2, estimate => $3::text::numeric)";
const RESERVE_FOR: &str =
    "select tenancy_reserve_usage(org_id => $1, metric => 'tokens', estimate => 1, user_id => $2)";
const COMMIT: &str =
    "select tenancy_commit_usage(org_id => $1, reservation_id => $2, actual => $3::text::numeric)";
const COMMIT_EVENT: &str =
    "select tenancy_commit_usage(org_id => $1, reservation_id => $2, event => $3)";
const RELEASE: &str = "select tenancy_release_usage(org_id => $1, reservation_id => $2)";
const RECORD: &str = "select tenancy_record_event($1::jsonb)";
const RECORD_MANY: &str = "select tenancy_record_events($1::jsonb)";
const SUMMARY: &str = "select tenancy_usage_summary(org_id => $1)";
const SUMMARY_FOR: &str = "select tenancy_usage_summary(org_id => $1, user_id => $2)";
const ORGS: &str = "select tenancy_user_organizations()";
const ORGS_OF: &str = "select tenancy_user_organizations(user_id => $1)";
const FEATURE: &str = "select tenancy_feature(org_id => $1, feature_key => $2)";

/// A time zone whose local time is within two hours of noon now, so that
/// the Rust calls and the SQL calls of one test fall in the same periods.
fn zone_near_noon() -> &'static str {
    const ZONES: [&str; 24] = [
        "Etc/GMT+12",
        "Etc/GMT+11",
        "Etc/GMT+10",
        "Etc/GMT+9",
        "Etc/GMT+8",
        "Etc/GMT+7",
        "Etc/GMT+6",
        "Etc/GMT+5",
        "Etc/GMT+4",
        "Etc/GMT+3",
        "Etc/GMT+2",
        "Etc/GMT+1",
        "UTC",
        "Etc/GMT-1",
        "Etc/GMT-2",
        "Etc/GMT-3",
        "Etc/GMT-4",
        "Etc/GMT-5",
        "Etc/GMT-6",
        "Etc/GMT-7",
        "Etc/GMT-8",
        "Etc/GMT-9",
        "Etc/GMT-10",
        "Etc/GMT-11",
    ];
    // Etc/GMT+12 is UTC-12: local noon when UTC reads 00:00.
    ZONES[Utc::now().hour() as usize]
}

/// Any one of the calls a user JWT makes, for `org`, as `user` (its own
/// id where one is named).
async fn every_call(
    conn: &mut Client,
    user: Uuid,
    org: Uuid,
) -> Vec<(&'static str, Result<Value, Error>)> {
    let actor = Actor::User(user);
    let event = json!({"organization_id": org, "quantities": {"ads_created": 1}});
    vec![
        (
            "check",
            call_as(conn, actor, CHECK, &[&org, &"tokens", &"1"]).await,
        ),
        (
            "reserve",
            call_as(conn, actor, RESERVE, &[&org, &"tokens", &"1"]).await,
        ),
        ("record", call_as(conn, actor, RECORD, &[&event]).await),
        ("summary", call_as(conn, actor, SUMMARY, &[&org]).await),
        (
            "feature",
            call_as(conn, actor, FEATURE, &[&org, &"veo_avatars"]).await,
        ),
    ]
}

/// Members act for themselves within their role; nobody reaches another
/// organization, another member, or the unchecked functions behind the
/// entry points.
#[tokio::test]
async fn entry_points_act_for_the_caller_within_its_role() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;

    // Positive control: a member does everything in its own organization.
    for (what, result) in every_call(&mut conn, w.member_a, w.org_a).await {
        assert!(result.is_ok(), "a member's {what}: {result:?}");
    }
    // A viewer checks and reads, and consumes nothing.
    for (what, result) in every_call(&mut conn, w.viewer_a, w.org_a).await {
        match what {
            "reserve" | "record" => assert_denied(result, &format!("a viewer's {what}")),
            _ => assert!(result.is_ok(), "a viewer's {what}: {result:?}"),
        }
    }
    let refused = call_as(
        &mut conn,
        Actor::User(w.viewer_a),
        RESERVE,
        &[&w.org_a, &"tokens", &"1"],
    )
    .await;
    assert!(
        message(&refused)
            .unwrap()
            .contains("a viewer of organization"),
        "{refused:?}"
    );
    // Another organization's owner reaches none of it.
    for (what, result) in every_call(&mut conn, w.owner_b, w.org_a).await {
        assert_denied(result, &format!("an outsider's {what}"));
    }
    // A member acts only for itself.
    let member = Actor::User(w.member_a);
    for (what, sql) in [
        ("check", CHECK_FOR),
        ("reserve", RESERVE_FOR),
        ("summary", SUMMARY_FOR),
    ] {
        let result = call_as(&mut conn, member, sql, &[&w.org_a, &w.owner_a]).await;
        assert_denied(result, &format!("a member's {what} for its owner"));
    }
    assert_denied(
        call_as(&mut conn, member, ORGS_OF, &[&w.owner_a]).await,
        "another user's organizations",
    );
    let for_owner =
        json!({"organization_id": w.org_a, "user_id": w.owner_a, "quantities": {"ads_created": 1}});
    assert_denied(
        call_as(&mut conn, member, RECORD, &[&for_owner]).await,
        "recording as another user",
    );
    let mixed = json!([
        {"organization_id": w.org_a, "quantities": {"ads_created": 1}},
        {"organization_id": w.org_b, "quantities": {"ads_created": 1}},
    ]);
    let before = usage_events(&db, w.org_a).await;
    assert_denied(
        call_as(&mut conn, member, RECORD_MANY, &[&mixed]).await,
        "a batch with another organization's event",
    );
    assert_eq!(
        usage_events(&db, w.org_a).await,
        before,
        "all of a batch or none"
    );
    // The owner's hold is the owner's.
    let held = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        RESERVE,
        &[&w.org_a, &"tokens", &"5"],
    )
    .await
    .unwrap();
    let hold: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    assert_denied(
        call_as(&mut conn, member, COMMIT, &[&w.org_a, &hold, &"5"]).await,
        "committing another member's hold",
    );
    assert_denied(
        call_as(&mut conn, member, RELEASE, &[&w.org_a, &hold]).await,
        "releasing another member's hold",
    );
    let released = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        RELEASE,
        &[&w.org_a, &hold],
    )
    .await;
    assert_eq!(
        released.unwrap(),
        json!({"released": true}),
        "positive control"
    );
    // Nobody signed in: anon executes none of them.
    assert_denied(
        call_as(&mut conn, Actor::Anon, CHECK, &[&w.org_a, &"tokens", &"1"]).await,
        "anon",
    );
    // The unchecked work is the service role's; the checked path is the
    // JWT's.
    assert_denied(
        call_as(
            &mut conn,
            member,
            "select tenancy.check_limit_for($1, $2, 'tokens', 1)",
            &[&w.org_b, &w.owner_b],
        )
        .await,
        "a user JWT calling the unchecked function",
    );
    assert_denied(
        call_as(
            &mut conn,
            Actor::Service,
            "select tenancy.member_check_limit($1, null, 'tokens', 1)",
            &[&w.org_a],
        )
        .await,
        "the service role calling the checked path",
    );
    // The service role acts for anyone, and names the user of a hold.
    let reserved = call_as(
        &mut conn,
        Actor::Service,
        RESERVE_FOR,
        &[&w.org_b, &w.owner_b],
    )
    .await;
    assert_eq!(reserved.unwrap()["granted"], true);
    let orgs = call_as(&mut conn, Actor::Service, ORGS_OF, &[&w.owner_b])
        .await
        .unwrap();
    assert_eq!(orgs[0]["organization"]["id"], json!(w.org_b));
}

async fn usage_events(db: &Client, org: Uuid) -> i64 {
    db.query_one(
        "select count(*) from usage_events where organization_id = $1",
        &[&org],
    )
    .await
    .unwrap()
    .get(0)
}

/// Every refusal is its documented SQLSTATE, with a message naming what
/// was wrong.
#[tokio::test]
async fn refusals_name_what_was_wrong() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let member = Actor::User(w.member_a);
    let org = w.org_a;
    let missing = Uuid::new_v4();
    let old = (Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    let cases: Vec<(&str, Result<Value, Error>, SqlState, &str)> = vec![
        (
            "a bad metric",
            call_as(&mut conn, member, CHECK, &[&org, &"Tokens", &"1"]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "metric: \"Tokens\" is not a metric",
        ),
        (
            "a negative amount",
            call_as(&mut conn, member, CHECK, &[&org, &"tokens", &"-1"]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "amount: -1 is negative",
        ),
        (
            "an estimate past 10^18",
            call_as(&mut conn, member, RESERVE, &[&org, &"tokens", &"1000000000000000001"]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "estimate: 1000000000000000001 exceeds the largest accepted amount",
        ),
        (
            "a TTL of zero",
            call_as(
                &mut conn,
                member,
                "select tenancy_reserve_usage(org_id => $1, metric => 'tokens', estimate => 1, ttl_seconds => 0)",
                &[&org],
            )
            .await,
            SqlState::INVALID_PARAMETER_VALUE,
            "ttl_seconds: 0 is not from 1 to 604800",
        ),
        (
            "an unknown organization (service role)",
            call_as(&mut conn, Actor::Service, CHECK, &[&missing, &"tokens", &"1"]).await,
            SqlState::NO_DATA_FOUND,
            "not found",
        ),
        (
            "an unknown organization (a user: not a member)",
            call_as(&mut conn, member, CHECK, &[&missing, &"tokens", &"1"]).await,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "not a member of organization",
        ),
        (
            "no such hold",
            call_as(&mut conn, member, COMMIT, &[&org, &missing, &"1"]).await,
            SqlState::NO_DATA_FOUND,
            "no reservation",
        ),
        (
            "an event field that does not exist",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": org, "input_token": 5})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "an event has no field input_token",
        ),
        (
            "an event 40 days old",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": org, "occurred_at": old})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "occurred_at: ",
        ),
        (
            "an event time PostgreSQL would read but RFC 3339 is not",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": org, "occurred_at": "now"})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "occurred_at: \"now\" is not an RFC 3339 timestamp",
        ),
        (
            "a negative quantity",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": org, "quantities": {"images": -2}})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "quantity: -2 is negative",
        ),
        (
            "fractional tokens",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": org, "input_tokens": 1.5})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "input_tokens: 1.5 is not a whole number",
        ),
        (
            "an event without an organization",
            call_as(&mut conn, Actor::Service, RECORD, &[&json!({"input_tokens": 5})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "organization_id: every event needs one",
        ),
        (
            "an event without an organization (a user)",
            call_as(&mut conn, member, RECORD, &[&json!({"input_tokens": 5})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "organization_id: every event needs one",
        ),
        (
            "an organization that is not a UUID (a user)",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": "nope"})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "organization_id: \"nope\" is not a UUID",
        ),
        (
            "an event id that is not a UUID (a user)",
            call_as(&mut conn, member, RECORD, &[&json!({"organization_id": org, "id": 7})]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "id: 7 is not a UUID",
        ),
        (
            "both an amount and an event to commit",
            call_as(
                &mut conn,
                member,
                "select tenancy_commit_usage(org_id => $1, reservation_id => $2, actual => 1, event => '{}')",
                &[&org, &missing],
            )
            .await,
            SqlState::INVALID_PARAMETER_VALUE,
            "give exactly one of actual",
        ),
        (
            "a hold without a user (service role)",
            call_as(&mut conn, Actor::Service, RESERVE, &[&org, &"tokens", &"1"]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "user_id is required",
        ),
        (
            "organizations of nobody (service role)",
            call_as(&mut conn, Actor::Service, ORGS, &[]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "user_id is required with the service role",
        ),
        (
            "a feature without a key",
            call_as(&mut conn, member, "select tenancy_feature(org_id => $1, feature_key => null)", &[&org]).await,
            SqlState::INVALID_PARAMETER_VALUE,
            "feature_key: is required",
        ),
    ];
    for (what, result, code, says) in cases {
        let text = message(&result).unwrap_or_default();
        assert_code(result, code, what);
        assert!(
            text.contains(says),
            "{what}: {text:?} does not say {says:?}"
        );
    }
}

/// A commit counts once however often it is retried, and an event handed
/// to a commit gets the hold's id, organization and user.
#[tokio::test]
async fn a_retried_commit_counts_once() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let member = Actor::User(w.member_a);
    let held = call_as(&mut conn, member, RESERVE, &[&w.org_a, &"tokens", &"500"])
        .await
        .unwrap();
    let hold: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    let event = json!({"provider": "openai", "model": "gpt-4o", "input_tokens": 300, "output_tokens": 120, "cost_usd": "0.0123"});
    let first = call_as(&mut conn, member, COMMIT_EVENT, &[&w.org_a, &hold, &event]).await;
    assert_eq!(
        first.unwrap(),
        json!({"released_hold": true, "recorded": true})
    );
    let again = call_as(&mut conn, member, COMMIT_EVENT, &[&w.org_a, &hold, &event]).await;
    assert_eq!(
        again.unwrap(),
        json!({"released_hold": false, "recorded": false})
    );
    let row = db
        .query_one(
            "select user_id, amounts from usage_events where organization_id = $1 and id = $2",
            &[&w.org_a, &hold],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<Uuid>>(0), Some(w.member_a));
    assert_eq!(
        row.get::<_, Value>(1),
        json!({"tokens": "420", "cost_usd": "0.0123"})
    );
    let elsewhere = json!({"organization_id": w.org_b, "input_tokens": 1});
    let wrong_org = call_as(
        &mut conn,
        member,
        COMMIT_EVENT,
        &[&w.org_a, &hold, &elsewhere],
    )
    .await;
    assert_code(
        wrong_org,
        SqlState::INVALID_PARAMETER_VALUE,
        "an event of another organization",
    );
}

/// One organization, with an org-wide and a per-user limit, used through
/// both the Rust API and the entry points.
struct Agreement {
    tenancy: Tenancy,
    org: OrgId,
    member: UserId,
    db: Client,
    conn: Client,
}

async fn agreement(pg: &Cluster) -> Agreement {
    let db = pg.superuser().await;
    let conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let store = PgStore::builder()
        .url(pg.url(pg::DATABASE))
        .pool_size(2)
        .build()
        .expect("a PgStore");
    let tenancy = Tenancy::builder().store(store).build().expect("tenancy");
    let owner = create_user(&db).await;
    let member = create_user(&db).await;
    let new = NewOrganization::new("Agreement", &unique_slug("agree"))
        .and_then(|n| n.timezone(zone_near_noon()))
        .unwrap();
    let org = tenancy
        .create_organization(UserId::from(owner), new)
        .await
        .expect("create");
    add_member(&db, Uuid::from(org.id), member, "member").await;
    let member = UserId::from(member);
    let admin = PlatformOperator::new("agreement-test");
    let operator = tenancy.operator(&admin);
    let limits = [
        NewLimit::new(MetricKey::TOKENS, Period::Monthly, dec!(100000)),
        NewLimit::new(MetricKey::TOKENS, Period::Daily, dec!(5000))
            .map(|l| l.for_user(member).soft()),
        NewLimit::new(MetricKey::ADS_CREATED, Period::Daily, dec!(3)),
        NewLimit::new(MetricKey::COST_USD, Period::Monthly, dec!(2.5)),
    ];
    for limit in limits {
        operator
            .set_limit(org.id, limit.unwrap())
            .await
            .expect("limit");
    }
    operator
        .enable_feature(org.id, "veo_avatars")
        .await
        .unwrap();
    operator
        .set_feature_config(org.id, "veo_avatars", json!({"max_seconds": 30}))
        .await
        .unwrap();
    Agreement {
        tenancy,
        org: org.id,
        member,
        db,
        conn,
    }
}

impl Agreement {
    async fn sql(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Value {
        call_as(
            &mut self.conn,
            Actor::User(Uuid::from(self.member)),
            sql,
            params,
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// The member's decision on `amount` of `metric`, from both sides.
    async fn decisions(&mut self, metric: &str, amount: Decimal) -> (LimitDecision, LimitDecision) {
        let ctx = self.tenancy.context(self.member, self.org).await.unwrap();
        let rust = self
            .tenancy
            .check_limit(&ctx, metric, amount)
            .await
            .unwrap();
        let org = Uuid::from(self.org);
        let sql = self.sql(CHECK, &[&org, &metric, &amount.to_string()]).await;
        (rust, serde_json::from_value(sql).expect("a LimitDecision"))
    }

    async fn assert_decisions_agree(&mut self, what: &str) {
        for metric in ["tokens", "ads_created", "cost_usd", "images"] {
            for amount in [
                dec!(0),
                dec!(1),
                dec!(2.5),
                dec!(3),
                dec!(4000),
                dec!(200000),
            ] {
                let (rust, sql) = self.decisions(metric, amount).await;
                assert_eq!(sql, rust, "{what}: {amount} {metric}");
            }
        }
    }

    async fn assert_summaries_agree(&mut self, what: &str) -> Vec<UsageLine> {
        let ctx = self.tenancy.context(self.member, self.org).await.unwrap();
        let rust = self.tenancy.usage_summary(&ctx).await.unwrap();
        let org = Uuid::from(self.org);
        let sql: Vec<UsageLine> =
            serde_json::from_value(self.sql(SUMMARY, &[&org]).await).expect("usage lines");
        assert_eq!(sql, rust, "{what}");
        rust
    }
}

/// The same organization read and used through the Rust API and through
/// the entry points: the same decisions, the same usage lines, the same
/// organizations and feature; events recorded either way count the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_points_agree_with_the_rust_api() {
    let Some(pg) = Cluster::shared() else { return };
    let mut a = agreement(pg).await;
    let org = Uuid::from(a.org);
    a.assert_decisions_agree("an empty organization").await;

    // Events recorded alternately through Rust and SQL.
    let events = [
        UsageEvent::new(a.org)
            .ai_call("openai", "gpt-4o", "ad_copy")
            .tokens(1200, 300, 450)
            .cost_usd(dec!(0.0123)),
        UsageEvent::new(a.org).quantity(MetricKey::ADS_CREATED, dec!(1)),
        UsageEvent::new(a.org)
            .ai_call("google", "veo-3", "avatar")
            .cost_usd(dec!(1.25))
            .quantity(MetricKey::TOKENS, dec!(10)),
        UsageEvent::new(a.org)
            .tokens(0, 0, 0)
            .quantity(MetricKey::parse("images").unwrap(), dec!(4)),
    ];
    let mut expected: std::collections::BTreeMap<String, Decimal> = Default::default();
    for (i, event) in events.into_iter().enumerate() {
        let event = event.user(a.member);
        for (metric, amount) in event.amounts().unwrap() {
            *expected.entry(metric.to_string()).or_default() += amount;
        }
        if i % 2 == 0 {
            a.tenancy.service().record_usage(event).await.unwrap();
        } else {
            let body = json!({
                "organization_id": org,
                "provider": event.provider,
                "model": event.model,
                "operation": event.operation,
                "input_tokens": event.input_tokens,
                "cached_input_tokens": event.cached_input_tokens,
                "output_tokens": event.output_tokens,
                "quantities": event.quantities,
                "cost_usd": event.cost_usd,
            });
            let recorded = a.sql(RECORD, &[&body]).await;
            assert_eq!(recorded["inserted"], 1);
        }
    }
    let lines = a.assert_summaries_agree("after recording").await;
    for (metric, total) in &expected {
        let line = lines
            .iter()
            .find(|l| {
                l.metric.as_str() == metric
                    && l.period == Period::Monthly
                    && l.scope.user().is_none()
            })
            .unwrap_or_else(|| panic!("a line for {metric}: {lines:?}"));
        assert_eq!(
            line.used, *total,
            "{metric}: what UsageEvent::amounts counts"
        );
    }
    a.assert_decisions_agree("after recording").await;

    // A hold taken through SQL counts in Rust's decisions, and one taken
    // through Rust in SQL's.
    let held = a.sql(RESERVE, &[&org, &"tokens", &"2000"]).await;
    assert_eq!(held["granted"], true);
    let ctx = a.tenancy.context(a.member, a.org).await.unwrap();
    let ReserveOutcome::Granted(rust_hold) = a
        .tenancy
        .reserve(&ctx, "ads_created", dec!(1))
        .await
        .unwrap()
    else {
        panic!("the Rust reserve is granted");
    };
    a.assert_decisions_agree("with a hold from each side").await;
    a.assert_summaries_agree("with a hold from each side").await;

    // A denial from either side carries the decision the other reports.
    let denied = a.sql(RESERVE, &[&org, &"ads_created", &"3"]).await;
    assert_eq!(denied["granted"], false);
    let (rust, _) = a.decisions("ads_created", dec!(3)).await;
    let sql_denial: LimitDecision = serde_json::from_value(denied["decision"].clone()).unwrap();
    assert_eq!(sql_denial, rust, "SQL's denial is Rust's check");
    let ReserveOutcome::Denied(rust_denial) =
        a.tenancy.reserve(&ctx, "cost_usd", dec!(5)).await.unwrap()
    else {
        panic!("the Rust reserve is denied");
    };
    let (_, sql) = a.decisions("cost_usd", dec!(5)).await;
    assert_eq!(rust_denial, sql, "Rust's denial is SQL's check");

    // Committing the SQL hold through SQL, releasing the Rust one.
    let hold: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    let committed = a.sql(COMMIT, &[&org, &hold, &"1500"]).await;
    assert_eq!(committed, json!({"released_hold": true, "recorded": true}));
    assert!(a.tenancy.release(&rust_hold).await.unwrap());
    a.assert_decisions_agree("after the commit and the release")
        .await;
    a.assert_summaries_agree("after the commit and the release")
        .await;

    // The organizations and the feature.
    let orgs = a.sql(ORGS, &[]).await;
    let rust_orgs = a.tenancy.orgs_for_user(a.member).await.unwrap();
    assert_eq!(orgs.as_array().unwrap().len(), rust_orgs.len());
    assert_eq!(orgs[0]["organization"]["id"], json!(org));
    assert_eq!(orgs[0]["role"], json!(rust_orgs[0].role.as_str()));
    let feature = a.sql(FEATURE, &[&org, &"veo_avatars"]).await;
    let config: Option<Value> = a.tenancy.feature_config(&ctx, "veo_avatars").await.unwrap();
    assert!(a.tenancy.has_feature(&ctx, "veo_avatars").await.unwrap());
    assert_eq!(
        feature,
        json!({"key": "veo_avatars", "enabled": true, "config": config})
    );
    let off = a.sql(FEATURE, &[&org, &"exports_csv"]).await;
    assert_eq!(
        off,
        json!({"key": "exports_csv", "enabled": false, "config": null})
    );
}

/// One response of each entry point, for the shape check against
/// `migrations/examples/` (called by `parity`): `org` has an org-wide and
/// a per-user limit and `member` is its member; every answer has its
/// fullest shape (a granted hold, a deciding limit, limited and unlimited
/// lines, a feature with a config).
pub async fn entry_point_responses(
    db: &Client,
    org: Uuid,
    member: Uuid,
) -> Vec<(&'static str, Value)> {
    let one = async |sql: &str, params: &[&(dyn ToSql + Sync)]| -> Value {
        db.query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    };
    db.execute(
        "insert into org_features (organization_id, feature_key, enabled, config) \
         values ($1, 'veo_avatars', true, '{\"max_seconds\": 30}') \
         on conflict (organization_id, feature_key) do update set enabled = true, config = excluded.config",
        &[&org],
    )
    .await
    .unwrap();
    let event =
        json!({"organization_id": org, "user_id": member, "quantities": {"ads_created": 1}});
    let batch = json!([{"organization_id": org, "user_id": member, "input_tokens": 10}, event]);
    let recorded = one(RECORD, &[&event]).await;
    let reserve = "select tenancy_reserve_usage(org_id => $1, metric => 'tokens', estimate => 5, user_id => $2)";
    let held = one(reserve, &[&org, &member]).await;
    let hold: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    let released = one(reserve, &[&org, &member]).await;
    let to_release: Uuid = released["reservation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    vec![
        ("tenancy_record_event", recorded),
        ("tenancy_record_events", one(RECORD_MANY, &[&batch]).await),
        ("tenancy_check_limit", one(CHECK_FOR, &[&org, &member]).await),
        ("tenancy_reserve_usage", held),
        (
            "tenancy_commit_usage",
            one(
                "select tenancy_commit_usage(org_id => $1, reservation_id => $2, actual => 4, user_id => $3)",
                &[&org, &hold, &member],
            )
            .await,
        ),
        (
            "tenancy_release_usage",
            one(
                "select tenancy_release_usage(org_id => $1, reservation_id => $2, user_id => $3)",
                &[&org, &to_release, &member],
            )
            .await,
        ),
        ("tenancy_usage_summary", one(SUMMARY_FOR, &[&org, &member]).await),
        ("tenancy_user_organizations", one(ORGS_OF, &[&member]).await),
        ("tenancy_feature", one(FEATURE, &[&org, &"veo_avatars"]).await),
    ]
}

/// `tenancy_user_organizations` lists them in `Tenancy::orgs_for_user`'s
/// order, the default first, ties in join time included.
#[tokio::test]
async fn organizations_come_in_the_rust_order() {
    let Some(pg) = Cluster::shared() else { return };
    let mut a = agreement(pg).await;
    let user = create_user(&a.db).await;
    let mut orgs = vec![Uuid::from(a.org)];
    for _ in 0..3 {
        orgs.push(crate::support::create_org(&a.db, create_user(&a.db).await).await);
    }
    // Joined all at once, with different roles: the highest role is the
    // default, then the rest by id.
    for (org, role) in orgs.iter().zip(["viewer", "member", "admin", "member"]) {
        a.db.execute(
            "insert into user_organizations (organization_id, user_id, role, created_at) \
             values ($1, $2, $3, '2026-03-01T00:00:00Z')",
            &[org, &user, &role],
        )
        .await
        .unwrap();
    }
    let rust: Vec<Uuid> = a
        .tenancy
        .orgs_for_user(UserId::from(user))
        .await
        .unwrap()
        .iter()
        .map(|m| Uuid::from(m.organization.id))
        .collect();
    let sql = call_as(&mut a.conn, Actor::User(user), ORGS, &[])
        .await
        .unwrap();
    let sql: Vec<Uuid> = sql
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["organization"]["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(sql, rust);
    assert_eq!(rust[0], orgs[2], "the admin membership is the default");
}

/// A hold the server took for a user is the server's to settle: the user
/// can neither commit it cheaply, release it, nor pre-empt its commit by
/// recording an event under its id; the server's commit records in full.
#[tokio::test]
async fn a_user_cannot_settle_a_hold_the_server_took_for_it() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let member = Actor::User(w.member_a);
    let held = call_as(
        &mut conn,
        Actor::Service,
        "select tenancy_reserve_usage(org_id => $1, metric => 'tokens', estimate => 500, user_id => $2)",
        &[&w.org_a, &w.member_a],
    )
    .await
    .unwrap();
    let hold: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    for (what, result) in [
        (
            "a commit of nothing",
            call_as(&mut conn, member, COMMIT, &[&w.org_a, &hold, &"0"]).await,
        ),
        (
            "a release",
            call_as(&mut conn, member, RELEASE, &[&w.org_a, &hold]).await,
        ),
    ] {
        let says = message(&result).unwrap_or_default();
        assert_denied(result, what);
        assert!(
            says.contains("only the server commits or releases it"),
            "{says}"
        );
    }
    let squat = json!({"id": hold, "organization_id": w.org_a, "quantities": {"images": 0}});
    let recorded = call_as(&mut conn, member, RECORD, &[&squat]).await.unwrap();
    assert_ne!(
        recorded["ids"][0],
        json!(hold),
        "the user's id stands for one of its own"
    );
    let again = call_as(&mut conn, member, RECORD, &[&squat]).await.unwrap();
    assert_eq!(
        again["duplicates"], 1,
        "the same client id is the same event"
    );
    let committed = call_as(
        &mut conn,
        Actor::Service,
        "select tenancy_commit_usage(org_id => $1, reservation_id => $2, actual => 420, user_id => $3)",
        &[&w.org_a, &hold, &w.member_a],
    )
    .await
    .unwrap();
    assert_eq!(committed, json!({"released_hold": true, "recorded": true}));
    let amounts: Value = db
        .query_one(
            "select amounts from usage_events where organization_id = $1 and id = $2",
            &[&w.org_a, &hold],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(amounts, json!({"tokens": "420"}));
}

/// A user's client id for a hold stands for a hold of its own: naming
/// another member's hold id reserves anew and leaves that hold alone.
#[tokio::test]
async fn a_reservation_id_cannot_take_over_another_members_hold() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let reserve_as = "select tenancy_reserve_usage(org_id => $1, metric => 'tokens', \
         estimate => $2::text::numeric, reservation_id => $3)";
    let client = Uuid::new_v4();
    let owners = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        reserve_as,
        &[&w.org_a, &"300", &client],
    )
    .await
    .unwrap();
    let owners_hold: Uuid = owners["reservation_id"].as_str().unwrap().parse().unwrap();
    let again = call_as(
        &mut conn,
        Actor::User(w.owner_a),
        reserve_as,
        &[&w.org_a, &"300", &client],
    )
    .await
    .unwrap();
    assert_eq!(
        again["reservation_id"], owners["reservation_id"],
        "a retry holds once"
    );
    for id in [owners_hold, client] {
        let theirs = call_as(
            &mut conn,
            Actor::User(w.member_a),
            reserve_as,
            &[&w.org_a, &"0", &id],
        )
        .await
        .unwrap();
        assert_ne!(theirs["reservation_id"], json!(owners_hold));
    }
    let (user, amount): (Uuid, Decimal) = db
        .query_one(
            "select user_id, amount::text from usage_reservations where organization_id = $1 and id = $2",
            &[&w.org_a, &owners_hold],
        )
        .await
        .map(|r| (r.get(0), r.get::<_, String>(1).parse().unwrap()))
        .unwrap_or_else(|e| panic!("the owner's hold: {e}"));
    assert_eq!((user, amount), (w.owner_a, dec!(300)));
}

/// Without a user, only the service role (or a direct connection) counts
/// a row's usage: anon cannot charge an organization by naming it.
#[tokio::test]
async fn count_usage_refuses_anon() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    // Outside `public`, whose tables all have RLS (the catalog test checks).
    let table = format!("api_test.open_form_{}", Uuid::new_v4().simple());
    db.batch_execute(&format!(
        "create schema if not exists api_test; \
         grant usage on schema api_test to anon, service_role; \
         create table {table} (organization_id uuid not null); \
         grant insert on {table} to anon, service_role; \
         create trigger counted after insert on {table} \
           for each row execute function tenancy.count_usage('signups');"
    ))
    .await
    .unwrap();
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let insert = format!("insert into {table} (organization_id) values ($1)");
    let anon = act(&mut conn, Actor::Anon, async |tx| {
        tx.execute(&insert, &[&w.org_a]).await
    })
    .await;
    let says = message(&anon).unwrap_or_default();
    assert_denied(anon, "anon naming an organization");
    assert!(
        says.contains("needs a signed-in user or the service role"),
        "{says}"
    );
    let service = act(&mut conn, Actor::Service, async |tx| {
        tx.execute(&insert, &[&w.org_a]).await
    })
    .await;
    assert_eq!(service.unwrap(), 1, "the service role counts org-wide");
    let used: i64 = db
        .query_one(
            "select count(*) from usage_events where organization_id = $1 and amounts ? 'signups'",
            &[&w.org_a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(used, 1);
}

/// A call records at most 1000 events, an event at most 32 quantities.
#[tokio::test]
async fn record_calls_are_bounded() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let w = world(&db).await;
    let mut conn = pg::connect_url(&pg.authenticator_url(pg::DATABASE)).await;
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"organization_id": w.org_a, "quantities": {"images": 1}}))
        .collect();
    let refused = call_as(
        &mut conn,
        Actor::Service,
        RECORD_MANY,
        &[&Value::Array(many)],
    )
    .await;
    let says = message(&refused).unwrap_or_default();
    assert_code(refused, SqlState::INVALID_PARAMETER_VALUE, "1001 events");
    assert!(says.contains("the most is 1000"), "{says}");
    let quantities: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("metric_{i}"), json!(1))).collect();
    let wide = json!({"organization_id": w.org_a, "quantities": quantities});
    let refused = call_as(&mut conn, Actor::Service, RECORD, &[&wide]).await;
    assert_code(refused, SqlState::INVALID_PARAMETER_VALUE, "33 quantities");
    let thousand: Vec<Value> = (0..1000)
        .map(|_| json!({"organization_id": w.org_a, "quantities": {"images": 1}}))
        .collect();
    let recorded = call_as(
        &mut conn,
        Actor::Service,
        RECORD_MANY,
        &[&Value::Array(thousand)],
    )
    .await
    .unwrap();
    assert_eq!(recorded["inserted"], 1000, "positive control");
}
