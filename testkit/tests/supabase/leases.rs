//! Budget leases live through the PostgREST stand-in: two instances with
//! leased meters spend one organization's limit exactly, with their usage
//! recorded once; a user JWT's client cannot lease.

use std::sync::Arc;

use rust_decimal::Decimal;
use tenancy::limits::CurrentPeriods;
use tenancy::limits::lease::{LeaseConfig, LeaseId, LeaseRequest};
use tenancy::store::LeaseStore;
use tenancy::{
    ErrorKind, MetricKey, NewLimit, NewOrganization, PlatformOperator, Tenancy, UsageRecorder,
    UserId,
};
use tenancy_testkit::pg::{Cluster, create_user};
use tenancy_testkit::unique_slug;

use super::{server, service_store, user_client};

/// Two `Tenancy` instances, each its own client, recorder and meter, 8
/// tasks each, spend a daily limit of 300 one token at a time until
/// denied: exactly 300 pairs, and after shutdown the counter says 300 with
/// nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_spend_a_limit_exactly_through_leases() {
    let Some(server) = tokio::task::spawn_blocking(server).await.expect("start") else {
        return;
    };
    let cluster = Cluster::shared().expect("the cluster behind the server");
    let owner = UserId::from(create_user(&cluster.superuser().await).await);
    let instances: Vec<Tenancy> = (0..2)
        .map(|_| {
            Tenancy::builder()
                .store(service_store(server))
                .build()
                .expect("tenancy")
        })
        .collect();
    let org = instances[0]
        .create_organization(
            owner,
            NewOrganization::new("Leased", &unique_slug("leased")).unwrap(),
        )
        .await
        .expect("org");
    instances[0]
        .operator(&PlatformOperator::new("live"))
        .set_limit(
            org.id,
            NewLimit::from_limit_type("daily_tokens", Decimal::from(300)).unwrap(),
        )
        .await
        .expect("limit");
    let mut meters = Vec::new();
    let mut tasks = Vec::new();
    for tenancy in &instances {
        let recorder = UsageRecorder::builder(tenancy.clone())
            .start()
            .expect("recorder");
        let meter = tenancy
            .leased(
                recorder,
                LeaseConfig::default().with_share(Decimal::new(25, 2)),
            )
            .expect("meter");
        let ctx = Arc::new(tenancy.context(owner, org.id).await.expect("ctx"));
        for _ in 0..8 {
            let (meter, ctx) = (meter.clone(), Arc::clone(&ctx));
            tasks.push(tokio::spawn(async move {
                let mut pairs = 0u32;
                while let Some(held) = meter
                    .reserve(&ctx, "tokens", Decimal::ONE)
                    .await
                    .expect("reserve")
                    .into_granted()
                {
                    meter.commit(held, Decimal::ONE).await.expect("commit");
                    pairs += 1;
                }
                pairs
            }));
        }
        meters.push(meter);
    }
    let mut pairs = 0;
    for task in tasks {
        pairs += task.await.expect("task");
    }
    assert_eq!(pairs, 300, "the whole limit, not one more");
    for meter in &meters {
        let report = meter.shutdown().await.expect("shutdown");
        assert!(report.flushed);
    }
    let ctx = instances[1].context(owner, org.id).await.unwrap();
    let decision = instances[1]
        .check_limit(&ctx, "tokens", Decimal::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (decision.used, decision.reserved),
        (Decimal::from(300), Decimal::ZERO),
        "each pair recorded once, every lease returned"
    );
}

/// A user JWT's client has the capability's shape but the database refuses
/// it: leasing is the service role's.
#[tokio::test]
async fn a_user_client_cannot_lease() {
    let Some(server) = tokio::task::spawn_blocking(server).await.expect("start") else {
        return;
    };
    let cluster = Cluster::shared().expect("the cluster behind the server");
    let owner = UserId::from(create_user(&cluster.superuser().await).await);
    let service = service_store(server);
    let tenancy = Tenancy::builder().store(service.clone()).build().unwrap();
    let org = tenancy
        .create_organization(
            owner,
            NewOrganization::new("Mine", &unique_slug("mine")).unwrap(),
        )
        .await
        .unwrap();
    let as_owner = user_client(server, &service, owner);
    let now = chrono::Utc::now();
    let request = LeaseRequest::new(
        LeaseId::new_v7(),
        org.id,
        owner,
        MetricKey::TOKENS,
        CurrentPeriods::at(now, org.timezone),
        now,
        now + chrono::TimeDelta::seconds(30),
        Decimal::ZERO,
        Decimal::from(100),
    );
    let refused = as_owner.lease_budget(&request).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
    // The service client, the same request: granted (no limit: all of it).
    let granted = service.lease_budget(&request).await.expect("service lease");
    assert_eq!(granted.free, Decimal::from(100));
}
