//! Usage history through PostgREST with user JWTs: the report, token rows
//! and event reads answer an owner what they answer the service role; a
//! member reads the organization's totals and only its own events and
//! per-user rows; another organization's owner reads nothing; the rollup
//! tables follow the same rule, and the export, retention and billing
//! functions refuse every user JWT.

use chrono::{Duration, TimeZone, Utc};
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tenancy::model::report::{EventQuery, ReportDimension, ReportQuery, UsageFilter};
use tenancy::store::ReportStore;
use tenancy::{ErrorKind, Role, UsageEvent};

use super::{two_orgs, user_client};

#[tokio::test]
async fn user_jwts_read_history_under_the_per_user_rule() {
    let Some((server, t)) = two_orgs().await else {
        return;
    };
    let alice_ctx = t.ctx(t.alice, &t.acme).await;
    let carol = tenancy::UserId::new_v7();
    t.tenancy
        .add_member(&alice_ctx, carol, Role::Member)
        .await
        .unwrap();
    // Usage in the last hour (the entry points' window), by alice and carol.
    let now = Utc::now();
    let service = t.tenancy.service();
    for (user, tokens) in [(t.alice, 100), (carol, 40), (t.alice, 7)] {
        service
            .record_usage(
                UsageEvent::new(t.acme.id)
                    .user(user)
                    .ai_call("openai", "gpt-4o", "chat")
                    .tokens(tokens, 0, 1)
                    .reasoning_tokens(2)
                    .cost_usd(dec!(0.01))
                    .at(now - Duration::minutes(30)),
            )
            .await
            .unwrap();
    }
    let from = Utc.timestamp_opt(now.timestamp() - 86_400, 0).unwrap();
    let to = now + Duration::hours(2);
    let by_user = ReportQuery::new(t.acme.id, from, to).group_by([ReportDimension::User]);
    let totals = ReportQuery::new(t.acme.id, from, to);

    let as_alice = user_client(server, &t.service, t.alice);
    let as_carol = user_client(server, &t.service, carol);
    let as_bob = user_client(server, &t.service, t.bob);

    // The owner's JWT reads what the service role reads.
    let owners = as_alice.usage_report(&by_user).await.unwrap();
    assert_eq!(owners, t.service.usage_report(&by_user).await.unwrap());
    let users: Vec<_> = owners.rows.iter().map(|r| r.key.user).collect();
    assert!(
        users.contains(&Some(t.alice)) && users.contains(&Some(carol)),
        "{owners:?}"
    );
    let events = EventQuery::new(t.acme.id, from, to);
    assert_eq!(
        as_alice.usage_events(&events).await.unwrap().events.len(),
        3
    );

    // A member: the totals, and its own rows only.
    let member_totals = as_carol.usage_report(&totals).await.unwrap();
    assert_eq!(
        member_totals,
        t.service.usage_report(&totals).await.unwrap()
    );
    let tokens: u32 = 100 + 40 + 7 + 3 * 3;
    assert_eq!(
        member_totals
            .rows
            .iter()
            .map(|r| r.amounts[&tenancy::MetricKey::TOKENS])
            .sum::<rust_decimal::Decimal>(),
        rust_decimal::Decimal::from(tokens)
    );
    let err = as_carol.usage_report(&by_user).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let own = by_user.clone().filter(UsageFilter {
        users: vec![carol],
        ..UsageFilter::default()
    });
    let own_rows = as_carol.usage_report(&own).await.unwrap();
    assert!(!own_rows.rows.is_empty());
    assert!(own_rows.rows.iter().all(|r| r.key.user == Some(carol)));
    let carol_events = as_carol.usage_events(&events).await.unwrap().events;
    assert_eq!(carol_events.len(), 1);
    assert_eq!(carol_events[0].user, Some(carol));
    let alices = as_alice.usage_events(&events).await.unwrap().events;
    let alices_id = alices.iter().find(|e| e.user == Some(t.alice)).unwrap().id;
    assert_eq!(
        as_carol.usage_event(t.acme.id, alices_id).await.unwrap(),
        None
    );
    assert!(
        as_alice
            .usage_event(t.acme.id, alices_id)
            .await
            .unwrap()
            .is_some()
    );

    // Another organization's owner: refused, every read.
    for err in [
        as_bob.usage_report(&totals).await.unwrap_err(),
        as_bob.usage_events(&events).await.unwrap_err(),
        as_bob.usage_costs(&totals).await.unwrap_err(),
        as_bob.usage_event(t.acme.id, alices_id).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    }

    // The rollup tables, read directly: the same rule.
    let rows = async |client: &tenancy::supabase::SupabaseStore, table: &str| -> Vec<Value> {
        let body: Value = client
            .fetch(
                client
                    .from(table)
                    .eq("organization_id", t.acme.id.to_string())
                    .select("user_id"),
            )
            .await
            .unwrap();
        body.as_array().unwrap().clone()
    };
    for table in [
        "usage_rollups",
        "usage_token_rollups",
        "usage_rollups_periods",
        "usage_events",
    ] {
        let all = rows(&as_alice, table).await;
        let mine = rows(&as_carol, table).await;
        assert!(mine.len() < all.len(), "{table}: {mine:?} of {all:?}");
        assert!(
            mine.iter().all(|r| r["user_id"] == json!(carol)),
            "{table}: {mine:?}"
        );
        assert!(
            rows(&as_bob, table).await.is_empty(),
            "{table} for another org"
        );
    }

    // Service-only functions: every user JWT is refused.
    for (function, args) in [
        (
            "tenancy_export_claim",
            json!({"meter": "m", "metric": "tokens", "unit_scale": 1,
            "up_to": now, "now": now, "max_items": 10}),
        ),
        (
            "tenancy_export_ack",
            json!({"meter": "m", "batch_id": 1, "at": now}),
        ),
        (
            "tenancy_set_billing_customer",
            json!({"org_id": t.acme.id, "stripe_customer_id": "cus_x"}),
        ),
        ("tenancy_billing_customer", json!({"org_id": t.acme.id})),
        (
            "tenancy_drop_usage_events",
            json!({"before": "2000-01-01T00:00:00Z"}),
        ),
        (
            "tenancy_reconcile_rollups",
            json!({"org_id": t.acme.id, "since": from, "until": to}),
        ),
        (
            "tenancy_repair_rollups",
            json!({"org_id": t.acme.id, "since": from, "until": to}),
        ),
    ] {
        let err = as_alice
            .fetch::<Value>(as_alice.rpc(function, args.to_string()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{function}: {err}");
    }
    let err = as_alice
        .set_billing_customer(t.acme.id, Some("cus_x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}
