//! Ownership transfer: an owner hands it to another member, the operator
//! hands it to anyone; what happens when the second step fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tenancy::limits::{AlertKey, Limit, UsageSnapshot};
use tenancy::model::UsageRecord;
use tenancy::store::{
    AlertStore, Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue, DynStore,
    FeatureStore, HistoryQuery, LimitStore, MemberStore, MeteringStore, OrgQuery, OrgStore,
    Principal, ReconcileQuery, RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult,
    UsageQuery,
};
use tenancy::{
    Error, ErrorKind, Feature, FeatureChange, FeatureKey, LimitId, Membership, MemoryStore, OrgId,
    OrgMembership, Organization, Result, Role, Slug, Tenancy, UserId,
};

use crate::scene::{Scene, kind, scene, scene_on};

/// Every member's role in the scene's organization, by user id.
async fn roles(s: &Scene) -> Vec<(UserId, Role)> {
    let mut all: Vec<_> = s
        .op()
        .members(s.org)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    all.sort();
    all
}

async fn role_of(s: &Scene, user: UserId) -> Option<Role> {
    roles(s)
        .await
        .into_iter()
        .find(|(u, _)| *u == user)
        .map(|(_, r)| r)
}

/// An owner hands ownership to a member: the member is the owner, the
/// former owner an admin, who can neither transfer again nor take it back;
/// the new owner can hand it back.
#[tokio::test]
async fn an_owner_hands_ownership_to_a_member_and_becomes_admin() {
    let s = scene().await;
    let bob = s.member(Role::Member).await;
    let t = &s.tenancy;

    let owner = t
        .transfer_ownership(&s.owner_ctx, bob.user())
        .await
        .unwrap();
    assert_eq!(
        (owner.user_id, owner.organization_id, owner.role),
        (bob.user(), s.org, Role::Owner)
    );
    assert_eq!(owner.created_at, bob.checked_at(), "bob's joining time");
    assert_eq!(role_of(&s, bob.user()).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));

    // The former owner's new context is an admin's: nothing more to hand.
    let former = t.context(s.owner, s.org).await.unwrap();
    assert_eq!(former.role(), Role::Admin);
    assert_eq!(
        kind(t.transfer_ownership(&former, bob.user()).await),
        ErrorKind::PermissionDenied
    );
    let bob = t.context(bob.user(), s.org).await.unwrap();
    t.transfer_ownership(&bob, s.owner).await.unwrap();
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Owner));
    assert_eq!(role_of(&s, bob.user()).await, Some(Role::Admin));
}

/// Admins, members and viewers cannot transfer ownership, nor can an owner
/// to themselves or to someone outside the organization; nothing changes.
#[tokio::test]
async fn only_an_owner_transfers_and_only_to_another_member() {
    let s = scene().await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    let t = &s.tenancy;
    let before = roles(&s).await;

    for ctx in [&admin, &member, &viewer] {
        for to in [admin.user(), member.user(), viewer.user(), ctx.user()] {
            let err = t.transfer_ownership(ctx, to).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        }
    }
    let own = t
        .transfer_ownership(&s.owner_ctx, s.owner)
        .await
        .unwrap_err();
    assert_eq!(own.kind(), ErrorKind::InvalidInput, "{own}");
    assert!(own.message().contains("to"), "{own}");
    let stranger = UserId::new_v7();
    let err = t
        .transfer_ownership(&s.owner_ctx, stranger)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("is not a member"), "{err}");
    assert_eq!(roles(&s).await, before);
    assert_eq!(role_of(&s, stranger).await, None, "not added");
}

/// To another owner: only the caller steps down.
#[tokio::test]
async fn to_another_owner_only_the_caller_steps_down() {
    let s = scene().await;
    let second = s.member(Role::Owner).await;
    let owner = s
        .tenancy
        .transfer_ownership(&s.owner_ctx, second.user())
        .await
        .unwrap();
    assert_eq!(owner.role, Role::Owner);
    assert_eq!(role_of(&s, second.user()).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
}

/// A context confirmed while its user was an owner does not hand out
/// ownership once another owner has demoted them: the store's word counts.
#[tokio::test]
async fn a_stale_owners_context_cannot_transfer() {
    let s = scene().await;
    let second = s.member(Role::Owner).await;
    let member = s.member(Role::Member).await;
    let t = &s.tenancy;
    t.change_role(&second, s.owner, Role::Admin).await.unwrap();
    assert_eq!(s.owner_ctx.role(), Role::Owner, "the context is stale");
    let err = t
        .transfer_ownership(&s.owner_ctx, member.user())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(role_of(&s, member.user()).await, Some(Role::Member));
}

/// Through a membership cache, the transfer takes effect at once for both
/// users of the instance that made it.
#[tokio::test]
async fn a_cached_tenancy_sees_the_transfer_at_once() {
    let s = scene().await;
    let bob = s.member(Role::Member).await.user();
    let cached = Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .clock(s.clock.clone())
        .membership_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let owner = cached.context(s.owner, s.org).await.unwrap();
    assert_eq!(
        cached.context(bob, s.org).await.unwrap().role(),
        Role::Member
    );
    cached.transfer_ownership(&owner, bob).await.unwrap();
    assert_eq!(
        cached.context(bob, s.org).await.unwrap().role(),
        Role::Owner
    );
    assert_eq!(
        cached.context(s.owner, s.org).await.unwrap().role(),
        Role::Admin
    );
}

// ---- the second step failing ---------------------------------------------

/// How the next demotion of one owner misbehaves.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Fails with `Unavailable`, changing nothing.
    Fail,
    /// Lands, then reports `Unavailable`, as a lost response.
    LandThenFail,
    /// Someone else changes the owner's role to this one first.
    ChangedMeanwhile(Role),
}

/// A store whose next demotion of one owner (a role change from `owner`)
/// goes wrong as its [`Fault`] says; everything else passes through.
#[derive(Debug)]
struct Faulty {
    inner: Arc<DynStore>,
    next: Mutex<Option<(UserId, Fault)>>,
}

impl Faulty {
    fn new(inner: Arc<DynStore>) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            next: Mutex::new(None),
        })
    }

    fn on_demotion_of(&self, user: UserId, fault: Fault) {
        *self.next.lock().unwrap() = Some((user, fault));
    }

    fn take(&self, user: UserId, expected: Role, role: Role) -> Option<Fault> {
        if expected != Role::Owner || role == Role::Owner {
            return None;
        }
        let mut next = self.next.lock().unwrap();
        match *next {
            Some((target, fault)) if target == user => {
                *next = None;
                Some(fault)
            }
            _ => None,
        }
    }
}

fn unavailable() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "injected fault: the store went away",
    )
}

impl Backend for Faulty {
    fn principal(&self) -> Principal {
        self.inner.principal()
    }
}

/// `impl $trait for Faulty`, every method passing through.
macro_rules! pass_through {
    ($trait:ident { $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* }) => {
        #[tenancy::async_trait]
        impl $trait for Faulty {
            $(async fn $name(&self, $($arg: $ty),*) -> $ret {
                self.inner.$name($($arg),*).await
            })*
        }
    };
}

pass_through!(OrgStore {
    fn create_organization(org: &Organization) -> Result<Organization>;
    fn organization(id: OrgId) -> Result<Option<Organization>>;
    fn organization_by_slug(slug: &Slug) -> Result<Option<Organization>>;
    fn list_organizations(query: &OrgQuery) -> Result<Vec<Organization>>;
    fn rename_organization(id: OrgId, name: &str) -> Result<Organization>;
    fn delete_organization(id: OrgId) -> Result<bool>;
});
pass_through!(FeatureStore {
    fn features(org: OrgId) -> Result<Vec<Feature>>;
    fn update_feature(org: OrgId, key: &FeatureKey, change: &FeatureChange, now: DateTime<Utc>) -> Result<Feature>;
    fn delete_feature(org: OrgId, key: &FeatureKey) -> Result<bool>;
});
pass_through!(LimitStore {
    fn limits(org: OrgId) -> Result<Vec<Limit>>;
    fn put_limit(limit: &Limit) -> Result<Limit>;
    fn delete_limit(org: OrgId, id: LimitId) -> Result<bool>;
});
pass_through!(MeteringStore {
    fn record_usage(batch: &[UsageRecord]) -> Result<RecordOutcome>;
    fn usage_snapshot(query: &UsageQuery) -> Result<UsageSnapshot>;
    fn usage_history(query: &HistoryQuery) -> Result<Vec<CounterValue>>;
    fn reserve(request: &ReserveRequest) -> Result<ReserveResult>;
    fn commit_reservation(request: &CommitRequest) -> Result<CommitOutcome>;
    fn release_reservation(request: &ReleaseRequest) -> Result<bool>;
    fn reconcile_usage(query: &ReconcileQuery) -> Result<Vec<CounterDrift>>;
    fn repair_usage(query: &ReconcileQuery) -> Result<Vec<CounterDrift>>;
});
pass_through!(AlertStore {
    fn claim_alert(key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool>;
});

#[tenancy::async_trait]
impl MemberStore for Faulty {
    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>> {
        self.inner.membership(org, user).await
    }

    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        self.inner.memberships_of_user(user).await
    }

    async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        self.inner.members(org).await
    }

    async fn add_member(&self, membership: &Membership) -> Result<()> {
        self.inner.add_member(membership).await
    }

    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        match self.take(user, expected, role) {
            None => self.inner.set_member_role(org, user, expected, role).await,
            Some(Fault::Fail) => Err(unavailable()),
            Some(Fault::LandThenFail) => {
                self.inner
                    .set_member_role(org, user, expected, role)
                    .await?;
                Err(unavailable())
            }
            Some(Fault::ChangedMeanwhile(other)) => {
                self.inner
                    .set_member_role(org, user, expected, other)
                    .await?;
                self.inner.set_member_role(org, user, expected, role).await
            }
        }
    }

    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()> {
        self.inner.remove_member(org, user, expected).await
    }
}

/// A scene on a [`Faulty`] `MemoryStore`.
async fn faulty_scene() -> (Scene, Arc<Faulty>) {
    let faulty = Faulty::new(Arc::new(MemoryStore::new()));
    let s = scene_on(faulty.clone()).await;
    (s, faulty)
}

/// The caller's demotion fails: the error comes back, both are owners
/// (the organization never lacked one), and the same call again finishes
/// the transfer.
#[tokio::test]
async fn a_failed_demotion_leaves_two_owners_and_a_retry_finishes() {
    let (s, faulty) = faulty_scene().await;
    let bob = s.member(Role::Member).await.user();
    faulty.on_demotion_of(s.owner, Fault::Fail);
    let err = s
        .tenancy
        .transfer_ownership(&s.owner_ctx, bob)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(role_of(&s, bob).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Owner), "two owners");

    let owner = s
        .tenancy
        .transfer_ownership(&s.owner_ctx, bob)
        .await
        .unwrap();
    assert_eq!((owner.user_id, owner.role), (bob, Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
}

/// The demotion landed but its answer was lost: the retry is refused (the
/// caller is no owner now) and changes nothing.
#[tokio::test]
async fn a_retry_after_a_demotion_that_landed_is_refused_and_harmless() {
    let (s, faulty) = faulty_scene().await;
    let bob = s.member(Role::Member).await.user();
    faulty.on_demotion_of(s.owner, Fault::LandThenFail);
    let err = s.tenancy.transfer_ownership(&s.owner_ctx, bob).await;
    assert_eq!(kind(err), ErrorKind::Unavailable);
    let after = roles(&s).await;
    assert_eq!(role_of(&s, bob).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
    let retry = s.tenancy.transfer_ownership(&s.owner_ctx, bob).await;
    assert_eq!(kind(retry), ErrorKind::PermissionDenied);
    assert_eq!(roles(&s).await, after);
}

/// The caller's role changed between the two steps (the new owner demoted
/// them): `Conflict`, and the organization keeps its new owner.
#[tokio::test]
async fn a_role_changed_between_the_steps_is_a_conflict() {
    let (s, faulty) = faulty_scene().await;
    let bob = s.member(Role::Member).await.user();
    faulty.on_demotion_of(s.owner, Fault::ChangedMeanwhile(Role::Member));
    let err = s.tenancy.transfer_ownership(&s.owner_ctx, bob).await;
    assert_eq!(kind(err), ErrorKind::Conflict);
    assert_eq!(role_of(&s, bob).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Member));
}

// ---- the operator -----------------------------------------------------------

/// The operator makes a member the owner; every other owner, however many,
/// becomes an admin; the other roles stay.
#[tokio::test]
async fn the_operator_makes_a_member_the_only_owner() {
    let s = scene().await;
    let second = s.member(Role::Owner).await.user();
    let admin = s.member(Role::Admin).await.user();
    let viewer = s.member(Role::Viewer).await.user();
    let heir = s.member(Role::Member).await.user();

    let owner = s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!((owner.user_id, owner.role), (heir, Role::Owner));
    let mut expected = vec![
        (s.owner, Role::Admin),
        (second, Role::Admin),
        (admin, Role::Admin),
        (viewer, Role::Viewer),
        (heir, Role::Owner),
    ];
    expected.sort();
    assert_eq!(roles(&s).await, expected);

    // Again: nothing left to do, nothing changes.
    s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!(roles(&s).await, expected);
}

/// Someone outside the organization is added as its owner, at the
/// operator's time; an organization that does not exist is `NotFound`.
#[tokio::test]
async fn the_operator_adds_an_outsider_as_owner() {
    let s = scene().await;
    let outsider = UserId::new_v7();
    let owner = s.op().transfer_ownership(s.org, outsider).await.unwrap();
    assert_eq!(
        owner.created_at,
        s.owner_ctx.checked_at(),
        "the clock's now"
    );
    let ctx = s.tenancy.context(outsider, s.org).await.unwrap();
    assert_eq!(ctx.role(), Role::Owner);
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));

    let nowhere = s.op().transfer_ownership(OrgId::new_v7(), outsider).await;
    assert_eq!(kind(nowhere), ErrorKind::NotFound);
}

/// An operator's transfer that fails half-way leaves the new owner in
/// place and finishes when called again.
#[tokio::test]
async fn the_operators_transfer_finishes_when_called_again() {
    let (s, faulty) = faulty_scene().await;
    let heir = s.member(Role::Viewer).await.user();
    faulty.on_demotion_of(s.owner, Fault::Fail);
    let err = s.op().transfer_ownership(s.org, heir).await;
    assert_eq!(kind(err), ErrorKind::Unavailable);
    assert_eq!(role_of(&s, heir).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Owner));
    s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!(role_of(&s, heir).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Admin));
}

/// An owner whose role changed meanwhile is passed over, not an error:
/// they are no owner either way.
#[tokio::test]
async fn the_operator_passes_over_an_owner_changed_meanwhile() {
    let (s, faulty) = faulty_scene().await;
    let heir = s.member(Role::Member).await.user();
    faulty.on_demotion_of(s.owner, Fault::ChangedMeanwhile(Role::Viewer));
    s.op().transfer_ownership(s.org, heir).await.unwrap();
    assert_eq!(role_of(&s, heir).await, Some(Role::Owner));
    assert_eq!(role_of(&s, s.owner).await, Some(Role::Viewer));
}
