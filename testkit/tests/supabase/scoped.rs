//! Org filters for the host's own tables: `ScopedTable` and `ForOrg`, on the
//! service client, where only the scope keeps the tenants apart.

use serde_json::{Value, json};
use tenancy::ErrorKind;
use tenancy::supabase::{ForOrg as _, RetryConfig, ScopedTable, SupabaseStore};

use super::{Brand, TwoOrgs, two_orgs};

/// Acme's and Globex's brand tables, Acme with Soap and Rope, Globex with
/// Widgets.
async fn brands(t: &TwoOrgs) -> (ScopedTable, ScopedTable) {
    let acme = t.service.table(&t.ctx(t.alice, &t.acme).await, "brands");
    let globex = t.service.table(&t.ctx(t.bob, &t.globex).await, "brands");
    let inserted: Vec<Brand> = acme
        .insert(&[json!({"name": "Soap"}), json!({"name": "Rope"})])
        .await
        .unwrap();
    assert_eq!(inserted.len(), 2);
    assert!(
        inserted
            .iter()
            .all(|b| b.organization_id == t.acme.id.to_string())
    );
    let _: Vec<Brand> = globex
        .insert(&[json!({"name": "Widgets", "organization_id": null})])
        .await
        .unwrap();
    (acme, globex)
}

fn names(rows: Vec<Brand>) -> Vec<String> {
    let mut names: Vec<String> = rows.into_iter().map(|b| b.name).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_reads_see_only_their_org_whatever_the_refinement() {
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    let (acme, _) = brands(&t).await;
    assert_eq!(names(acme.list("*").await.unwrap()), ["Rope", "Soap"]);
    let soap: Vec<Brand> = acme.fetch("*", |q| q.eq("name", "Soap")).await.unwrap();
    assert_eq!(soap.len(), 1);
    let widgets: Vec<Brand> = acme.fetch("*", |q| q.eq("name", "Widgets")).await.unwrap();
    assert!(widgets.is_empty());
    // A refinement that starts over from an unscoped builder is still
    // scoped: the tenant filter is applied after it.
    let restarted: Vec<Brand> = acme
        .fetch("*", |_| t.service.from("brands").select("*"))
        .await
        .unwrap();
    assert_eq!(names(restarted), ["Rope", "Soap"]);
    let renamed: Vec<Brand> = acme
        .update(|_| t.service.from("brands"), &json!({"name": "Soap"}))
        .await
        .unwrap();
    assert_eq!(renamed.len(), 2, "only Acme's rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_writes_never_reach_another_org() {
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    let (acme, globex) = brands(&t).await;
    // An upsert colliding with another org's row (same id) is refused by
    // the database, on the service client too, and the row is unchanged.
    let widgets: Vec<Value> = globex.list("id,name").await.unwrap();
    let takeover = acme
        .upsert::<_, Brand>(&[json!({"id": widgets[0]["id"], "name": "Mine now"})], "id")
        .await
        .unwrap_err();
    assert_eq!(takeover.kind(), ErrorKind::PermissionDenied, "{takeover}");
    let touched: Vec<Brand> = acme
        .update(|q| q.eq("name", "Widgets"), &json!({"name": "Pwned"}))
        .await
        .unwrap();
    assert!(touched.is_empty());
    let deleted: Vec<Brand> = acme.delete(|q| q).await.unwrap();
    assert_eq!(deleted.len(), 2);
    assert_eq!(names(globex.list("*").await.unwrap()), ["Widgets"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_naming_another_org_is_refused_before_anything_is_sent() {
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    let (acme, globex) = brands(&t).await;
    // The server below is unreachable, so a sent request would be
    // Unavailable, not PermissionDenied.
    let offline = SupabaseStore::builder()
        .rest_url("http://127.0.0.1:9")
        .service_role_key("k")
        .retry(RetryConfig::default().max_retries(0))
        .build()
        .unwrap();
    let offline_brands = offline.table(&t.ctx(t.alice, &t.acme).await, "brands");
    let stranger = json!({"name": "Trojan", "organization_id": t.globex.id.to_string()});
    let refused = [
        offline_brands
            .insert::<_, Brand>(std::slice::from_ref(&stranger))
            .await,
        offline_brands
            .upsert::<_, Brand>(std::slice::from_ref(&stranger), "id")
            .await,
        offline_brands
            .update::<_, Brand>(
                |q| q.eq("name", "Soap"),
                &json!({"organization_id": t.globex.id.to_string()}),
            )
            .await,
        acme.insert::<_, Brand>(&[stranger]).await,
    ];
    for result in refused {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::PermissionDenied);
    }
    assert_eq!(names(globex.list("*").await.unwrap()), ["Widgets"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_org_filters_raw_builders_and_the_column_is_configurable() {
    let Some((_, t)) = two_orgs().await else {
        return;
    };
    brands(&t).await;
    let (alice_ctx, bob_ctx) = (t.ctx(t.alice, &t.acme).await, t.ctx(t.bob, &t.globex).await);
    // While both orgs have rows.
    let bobs: Vec<Brand> = t
        .service
        .fetch(t.service.from("brands").select("*").for_org(&bob_ctx))
        .await
        .unwrap();
    assert_eq!(names(bobs), ["Widgets"]);
    let query = t
        .service
        .from("brands")
        .select("*")
        .for_org_column("organization_id", &alice_ctx);
    let alices: Vec<Brand> = t.service.fetch(query).await.unwrap();
    assert_eq!(names(alices), ["Rope", "Soap"]);
    let custom = t.service.table(&bob_ctx, "organizations").org_column("id");
    assert_eq!(custom.column(), "id");
    let orgs: Vec<Value> = custom.list("id,name").await.unwrap();
    assert_eq!(
        orgs,
        vec![json!({"id": t.globex.id.to_string(), "name": "Globex"})]
    );
}
