//! The one list of the [`Store`](super::Store)'s async methods, and the
//! forwarding impls generated from it.
//!
//! `with_store_methods!` hands every method's signature to a callback
//! macro. Forwarding impls (`Arc<T>`, `Box<T>`, the pass-through methods of
//! `faults::FaultyStore`) are generated from it, so adding a method to the
//! trait means adding it here, and any forwarder that misses it does not
//! compile.

/// Calls `$callback! { $($prefix)* ; <every async Store method> }`, each
/// method as `fn name(arg: Type, …) -> Return;`.
macro_rules! with_store_methods {
    ($callback:ident ! { $($prefix:tt)* }) => {
        $callback! { $($prefix)* ;
            fn create_organization(org: &Organization) -> Result<Organization>;
            fn organization(id: OrgId) -> Result<Option<Organization>>;
            fn organization_by_slug(slug: &Slug) -> Result<Option<Organization>>;
            fn list_organizations(query: &OrgQuery) -> Result<Vec<Organization>>;
            fn rename_organization(id: OrgId, name: &str) -> Result<Organization>;
            fn delete_organization(id: OrgId) -> Result<bool>;
            fn membership(org: OrgId, user: UserId) -> Result<Option<OrgMembership>>;
            fn memberships_of_user(user: UserId) -> Result<Vec<OrgMembership>>;
            fn members(org: OrgId) -> Result<Vec<Membership>>;
            fn add_member(membership: &Membership) -> Result<()>;
            fn set_member_role(org: OrgId, user: UserId, expected: Role, role: Role) -> Result<Membership>;
            fn remove_member(org: OrgId, user: UserId, expected: Role) -> Result<()>;
            fn features(org: OrgId) -> Result<Vec<Feature>>;
            fn update_feature(org: OrgId, key: &FeatureKey, change: &FeatureChange, now: DateTime<Utc>) -> Result<Feature>;
            fn delete_feature(org: OrgId, key: &FeatureKey) -> Result<bool>;
            fn limits(org: OrgId) -> Result<Vec<Limit>>;
            fn put_limit(limit: &Limit) -> Result<Limit>;
            fn delete_limit(org: OrgId, id: LimitId) -> Result<bool>;
            fn record_usage(batch: &[UsageRecord]) -> Result<RecordOutcome>;
            fn usage_snapshot(query: &UsageQuery) -> Result<UsageSnapshot>;
            fn usage_history(query: &HistoryQuery) -> Result<Vec<CounterValue>>;
            fn reserve(request: &ReserveRequest) -> Result<ReserveResult>;
            fn commit_reservation(request: &CommitRequest) -> Result<CommitOutcome>;
            fn release_reservation(request: &ReleaseRequest) -> Result<bool>;
            fn claim_alert(key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool>;
        }
    };
}

/// `impl<T: Store + ?Sized> Store for $ptr<T>`, every method calling
/// through the pointer.
macro_rules! forward_store_through {
    ($ptr:ident) => {
        with_store_methods!(forward_store_impl! { $ptr });
    };
}

macro_rules! forward_store_impl {
    ($ptr:ident ; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: Store + ?Sized> Store for $ptr<T> {
            fn principal(&self) -> Principal {
                (**self).principal()
            }
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    (**self).$name($($arg),*).await
                }
            )*
        }
    };
}

#[cfg(feature = "test-util")]
pub(crate) use with_store_methods;
