//! `tenancy.within_limit` in an RLS policy on a host table, written to by a
//! user JWT directly through the stand-in: the `ads` example of
//! `migrations/README.md`, which the harness applies as it is written
//! there (`postgrest::readme_example`).

use chrono::{Timelike, Utc};
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tenancy::{
    MetricKey, NewLimit, NewOrganization, Organization, Period, PlatformOperator, Role, UserId,
};
use tenancy_testkit::postgrest::Server;
use tenancy_testkit::unique_slug;

use crate::{server, service_store};

/// An `Etc/GMT` zone whose local time is within an hour of noon now, so a
/// test's inserts do not straddle the end of a day.
fn zone_near_noon() -> String {
    let offset = 12 - i64::from(Utc::now().hour());
    match offset {
        0 => "UTC".to_owned(),
        // Etc/GMT-5 is five hours ahead of UTC.
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// `POST /ads` as `user`: the status and the body.
async fn insert_ad(server: &Server, user: UserId, org: &Organization, title: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/ads", server.url()))
        .bearer_auth(server.user_token(user.as_uuid()))
        .header("Prefer", "return=minimal")
        .json(&json!({"organization_id": org.id, "title": title}))
        .send()
        .await
        .expect("POST /ads");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The organization's `ads_created` usage today, as the service role reads
/// it through `tenancy_usage_summary`.
async fn ads_today(server: &Server, org: &Organization) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/rpc/tenancy_usage_summary", server.url()))
        .bearer_auth(server.service_key())
        .json(&json!({"org_id": org.id}))
        .send()
        .await
        .expect("summary");
    assert!(response.status().is_success(), "{response:?}");
    let lines: Vec<Value> = response.json().await.unwrap();
    lines
        .iter()
        .find(|l| {
            l["metric"] == "ads_created"
                && l["period"] == "daily"
                && l["scope"] == json!({"scope": "organization"})
        })
        .map_or(json!("0"), |l| l["used"].clone())
}

fn assert_refused(answer: &(u16, Value), what: &str) {
    assert!(
        matches!(answer.0, 401 | 403) && answer.1["code"] == "42501",
        "{what}: {answer:?}"
    );
}

/// Under the `daily_ads` hard limit a member's insert goes through and
/// counts; at the limit it is refused and counts nothing; raising the limit
/// lets inserts through again. A viewer, and a member of another
/// organization, insert nothing at all.
#[tokio::test]
async fn inserts_stop_at_the_daily_ads_limit() {
    let Some(server) = tokio::task::spawn_blocking(server).await.expect("start") else {
        return;
    };
    let tenancy = tenancy::Tenancy::builder()
        .store(service_store(server))
        .build()
        .expect("tenancy");
    let (owner, member, viewer, outsider) = (
        UserId::new_v7(),
        UserId::new_v7(),
        UserId::new_v7(),
        UserId::new_v7(),
    );
    let new = |name: &str| {
        NewOrganization::new(name, &unique_slug("ads"))
            .and_then(|n| n.timezone(&zone_near_noon()))
            .unwrap()
    };
    let acme = tenancy
        .create_organization(owner, new("Acme"))
        .await
        .unwrap();
    let globex = tenancy
        .create_organization(outsider, new("Globex"))
        .await
        .unwrap();
    let ctx = tenancy.context(owner, acme.id).await.unwrap();
    tenancy
        .add_member(&ctx, member, Role::Member)
        .await
        .unwrap();
    tenancy
        .add_member(&ctx, viewer, Role::Viewer)
        .await
        .unwrap();
    let admin = PlatformOperator::new("policy-test");
    let operator = tenancy.operator(&admin);
    let limit = NewLimit::new(MetricKey::ADS_CREATED, Period::Daily, dec!(3)).unwrap();
    operator.set_limit(acme.id, limit.clone()).await.unwrap();

    for n in 1..=3 {
        let answer = insert_ad(server, member, &acme, &format!("ad {n}")).await;
        assert_eq!(answer.0, 201, "insert {n} of 3: {answer:?}");
    }
    assert_eq!(ads_today(server, &acme).await, "3", "each ad counted once");
    let over = insert_ad(server, member, &acme, "ad 4").await;
    assert_refused(&over, "the fourth ad");
    let says = over.1["message"].as_str().unwrap_or_default();
    assert!(says.contains("ads_within_daily_limit"), "{says}");
    assert_eq!(
        ads_today(server, &acme).await,
        "3",
        "a refused ad counts nothing"
    );

    assert_refused(
        &insert_ad(server, viewer, &acme, "viewer's").await,
        "a viewer",
    );
    assert_refused(
        &insert_ad(server, outsider, &acme, "outsider's").await,
        "an outsider",
    );
    assert_eq!(ads_today(server, &acme).await, "3");

    // The limit is read live: raised, the next insert goes through.
    let raised = NewLimit::new(MetricKey::ADS_CREATED, Period::Daily, dec!(4)).unwrap();
    operator.set_limit(acme.id, raised).await.unwrap();
    let answer = insert_ad(server, member, &acme, "ad 4 again").await;
    assert_eq!(answer.0, 201, "{answer:?}");
    assert_refused(
        &insert_ad(server, member, &acme, "ad 5").await,
        "past the raised limit",
    );

    // Another organization's limit is its own: Globex has none.
    for n in 1..=5 {
        let answer = insert_ad(server, outsider, &globex, &format!("globex {n}")).await;
        assert_eq!(answer.0, 201, "{answer:?}");
    }
    assert_eq!(ads_today(server, &globex).await, "5");
    assert_eq!(ads_today(server, &acme).await, "4");
}
