//! Rate limits through PostgREST: several `Tenancy` instances on one
//! database admit no more than the limit together, and a user client
//! (a user JWT) refuses to decide a rate limit that applies rather than
//! skipping it.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use tenancy::alerts::MemoryAlertSink;
use tenancy::clock::FakeClock;
use tenancy::limits::rate::NewRateLimit;
use tenancy::{ErrorKind, NewOrganization, PlatformOperator, ReserveOutcome, Tenancy, UserId};
use tenancy_testkit::unique_slug;

use super::{server, service_store, user_client};

/// 2, 4 and 8 instances, each with its own `SupabaseStore` client, 4
/// tasks each, at one instant: exactly the burst passes; 20 s later,
/// exactly 20 s of the rate more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_admit_the_limit_together() {
    let Some(server) = tokio::task::spawn_blocking(server).await.expect("start") else {
        return;
    };
    for instances in [2usize, 4, 8] {
        let clock = FakeClock::at("2026-03-04T12:00:00Z");
        let tenancies: Vec<Tenancy> = (0..instances)
            .map(|_| {
                Tenancy::builder()
                    .store(service_store(server))
                    .clock(clock.clone())
                    .shared_alert_sink(Arc::new(MemoryAlertSink::new()))
                    .build()
                    .expect("a tenancy")
            })
            .collect();
        let owner = UserId::new_v7();
        let new = NewOrganization::new("Rated", &unique_slug("rated")).unwrap();
        let org = tenancies[0]
            .create_organization(owner, new)
            .await
            .unwrap()
            .id;
        let operator = PlatformOperator::new("supabase-tests");
        let rpm = NewRateLimit::from_limit_type("minute_requests", Decimal::from(30)).unwrap();
        tenancies[0]
            .operator(&operator)
            .set_rate_limit(org, rpm)
            .await
            .unwrap();
        let round = || {
            let tasks: Vec<_> = tenancies
                .iter()
                .flat_map(|t| (0..4).map(move |_| t.clone()))
                .map(|t| {
                    tokio::spawn(async move {
                        let ctx = t.context(owner, org).await.unwrap();
                        let mut admitted = 0;
                        for _ in 0..(64 / instances) {
                            let outcome = t.reserve(&ctx, "tokens", Decimal::ONE).await.unwrap();
                            admitted += usize::from(matches!(outcome, ReserveOutcome::Granted(_)));
                        }
                        admitted
                    })
                })
                .collect::<Vec<_>>();
            async move {
                let mut total = 0;
                for task in tasks {
                    total += task.await.unwrap();
                }
                total
            }
        };
        assert_eq!(round().await, 30, "{instances} instances at one instant");
        clock.advance(Duration::from_secs(20));
        assert_eq!(round().await, 10, "{instances} instances 20 s later");
    }
}

/// A tenancy over a user client reads the rate limits it may see (without
/// state) and, when one applies, answers `Unsupported` naming it instead of
/// deciding without it; without one that applies, it checks as before.
#[tokio::test]
async fn a_user_client_does_not_skip_a_rate_limit() {
    let Some(server) = tokio::task::spawn_blocking(server).await.expect("start") else {
        return;
    };
    let service = service_store(server);
    let admin = Tenancy::builder().store(service.clone()).build().unwrap();
    let owner = UserId::new_v7();
    let new = NewOrganization::new("Rated", &unique_slug("rated")).unwrap();
    let org = admin.create_organization(owner, new).await.unwrap().id;
    // Uncached, so the rate limit the operator sets below (through another
    // instance) applies at once; a cached instance sees it within its TTL.
    let as_user = Tenancy::builder()
        .store(user_client(server, &service, owner))
        .feature_cache_ttl(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let ctx = as_user.context(owner, org).await.unwrap();
    assert!(
        as_user
            .check_limit(&ctx, "tokens", Decimal::ONE)
            .await
            .unwrap()
            .allowed
    );
    let operator = PlatformOperator::new("supabase-tests");
    let tpm = NewRateLimit::from_limit_type("minute_tokens", Decimal::from(1000)).unwrap();
    admin
        .operator(&operator)
        .set_rate_limit(org, tpm)
        .await
        .unwrap();
    let seen = as_user.rate_limits(&ctx).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].tat, None, "users never read the state");
    let err = as_user
        .reserve(&ctx, "tokens", Decimal::ONE)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("minute_tokens"), "{err}");
    assert!(admin.context(owner, org).await.is_ok());
}
