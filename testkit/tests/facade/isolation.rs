//! Tenant isolation: nothing of one organization is reachable from
//! another's context.

use std::sync::Arc;

use tenancy::store::{CommitRequest, ReleaseRequest};
use tenancy::{Clock, DynStore, ErrorKind, EventId, MemoryStore, UsageEvent, UserId};

use crate::scene::{Scene, dec, kind, monthly, scene_on};

/// Two scenes on one store: A with a feature, a limit and usage, B with
/// nothing.
async fn two_orgs() -> (Scene, Scene) {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let a = scene_on(Arc::clone(&store)).await;
    let b = scene_on(store).await;
    a.op().enable_feature(a.org, "veo_avatars").await.unwrap();
    a.limit(monthly("tokens", 100)).await;
    a.tenancy
        .record_usage(UsageEvent::new(a.org).user(a.owner).tokens(50, 0, 0))
        .await
        .unwrap();
    (a, b)
}

/// Users of B cannot act in A, and B sees none of A's features, limits,
/// usage or members.
#[tokio::test]
async fn nothing_of_one_org_is_seen_from_another() {
    let (a, b) = two_orgs().await;
    assert_eq!(
        kind(a.tenancy.context(b.owner, a.org).await),
        ErrorKind::PermissionDenied
    );
    let ctx = &b.owner_ctx;
    assert!(!b.tenancy.has_feature(ctx, "veo_avatars").await.unwrap());
    assert!(b.tenancy.features(ctx).await.unwrap().is_empty());
    assert!(b.tenancy.limits(ctx).await.unwrap().is_empty());
    assert!(b.tenancy.usage_summary(ctx).await.unwrap().is_empty());
    let b_members: Vec<UserId> = b
        .tenancy
        .members(ctx)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(b_members, vec![b.owner], "org B has only its owner");
    let decision = b
        .tenancy
        .check_limit(ctx, "tokens", dec(1_000))
        .await
        .unwrap();
    assert!(decision.allowed && decision.limit.is_none());
    // A is untouched by B's reads.
    assert_eq!(a.used(&a.owner_ctx, "tokens").await, dec(50));
}

/// A reservation of A cannot be released or committed through B's org: a
/// `Reservation` cannot be forged, and the store refuses a hold id named
/// in the wrong organization, recording nothing.
#[tokio::test]
async fn a_hold_of_one_org_cannot_be_settled_through_another() {
    let (a, b) = two_orgs().await;
    let hold = a
        .tenancy
        .reserve(&a.owner_ctx, "tokens", dec(10))
        .await
        .unwrap()
        .granted()
        .expect("10 of 100 fits");
    let now = a.clock.now();
    let release = ReleaseRequest {
        org: b.org,
        user: hold.user(),
        id: hold.id(),
        now,
    };
    assert!(!b.store.release_reservation(&release).await.unwrap());

    let usage = UsageEvent::new(b.org)
        .id(EventId::from(hold.id()))
        .user(hold.user())
        .tokens(10, 0, 0)
        .into_record(now, chrono_tz::UTC)
        .unwrap();
    let commit = CommitRequest {
        org: b.org,
        user: hold.user(),
        id: hold.id(),
        usage,
        now,
    };
    assert_eq!(
        kind(b.store.commit_reservation(&commit).await),
        ErrorKind::NotFound,
        "A's hold is unknown in B"
    );
    assert!(
        b.tenancy
            .usage_summary(&b.owner_ctx)
            .await
            .unwrap()
            .is_empty()
    );

    let d = a
        .tenancy
        .check_limit(&a.owner_ctx, "tokens", dec(0))
        .await
        .unwrap();
    assert_eq!(d.reserved, dec(10), "A's hold is untouched");
    assert_eq!(a.used(&a.owner_ctx, "tokens").await, dec(50));
}
