//! Each capability trait's one list of async methods, and the forwarding
//! impls generated from it.
//!
//! A capability's list macro (`org_store_methods!`, …) hands every
//! method's signature to a callback macro. The `Arc<T>` and `Box<T>`
//! forwarding impls (and the pass-through methods of
//! `faults::FaultyStore`) are generated from the lists and deny
//! `clippy::missing_trait_methods`, so a method added to a trait but not to
//! its list, or the other way round, does not compile.

/// Declares `$list!`, which calls `$callback! { $($prefix)* ; <methods> }`
/// with every async method of one capability trait, each as
/// `fn name(arg: Type, …) -> Return;`.
macro_rules! method_list {
    ($d:tt $list:ident { $($methods:tt)* }) => {
        macro_rules! $list {
            ($d callback:ident ! { $d($d prefix:tt)* }) => {
                $d callback! { $d($d prefix)* ; $($methods)* }
            };
        }
    };
}

method_list!($ org_store_methods {
    fn create_organization(org: &Organization) -> Result<Organization>;
    fn organization(id: OrgId) -> Result<Option<Organization>>;
    fn organization_by_slug(slug: &Slug) -> Result<Option<Organization>>;
    fn list_organizations(query: &OrgQuery) -> Result<Vec<Organization>>;
    fn rename_organization(id: OrgId, name: &str) -> Result<Organization>;
    fn delete_organization(id: OrgId) -> Result<bool>;
});

method_list!($ member_store_methods {
    fn membership(org: OrgId, user: UserId) -> Result<Option<OrgMembership>>;
    fn memberships_of_user(user: UserId) -> Result<Vec<OrgMembership>>;
    fn members(org: OrgId) -> Result<Vec<Membership>>;
    fn add_member(membership: &Membership) -> Result<()>;
    fn set_member_role(org: OrgId, user: UserId, expected: Role, role: Role) -> Result<Membership>;
    fn remove_member(org: OrgId, user: UserId, expected: Role) -> Result<()>;
});

method_list!($ feature_store_methods {
    fn features(org: OrgId) -> Result<Vec<Feature>>;
    fn update_feature(org: OrgId, key: &FeatureKey, change: &FeatureChange, now: DateTime<Utc>) -> Result<Feature>;
    fn delete_feature(org: OrgId, key: &FeatureKey) -> Result<bool>;
});

method_list!($ limit_store_methods {
    fn limits(org: OrgId) -> Result<Vec<Limit>>;
    fn put_limit(limit: &Limit) -> Result<Limit>;
    fn delete_limit(org: OrgId, id: LimitId) -> Result<bool>;
});

method_list!($ metering_store_methods {
    fn record_usage(batch: &[UsageRecord]) -> Result<RecordOutcome>;
    fn usage_snapshot(query: &UsageQuery) -> Result<UsageSnapshot>;
    fn usage_history(query: &HistoryQuery) -> Result<Vec<CounterValue>>;
    fn reserve(request: &ReserveRequest) -> Result<ReserveResult>;
    fn commit_reservation(request: &CommitRequest) -> Result<CommitOutcome>;
    fn release_reservation(request: &ReleaseRequest) -> Result<bool>;
});

method_list!($ alert_store_methods {
    fn claim_alert(key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool>;
});

/// `impl<T: $trait + ?Sized> $trait for $ptr<T>`, every method calling
/// through the pointer.
macro_rules! forward_impl {
    ($trait:ident, $ptr:ident ; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: $trait + ?Sized> $trait for $ptr<T> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    (**self).$name($($arg),*).await
                }
            )*
        }
    };
}

/// The `Arc` and `Box` forwarding impls of one capability trait, from its
/// method list.
macro_rules! forward_capability {
    ($trait:ident, $list:ident) => {
        $list!(forward_impl! { $trait, Arc });
        $list!(forward_impl! { $trait, Box });
    };
}

#[cfg(feature = "test-util")]
pub(crate) use {
    alert_store_methods, feature_store_methods, limit_store_methods, member_store_methods,
    metering_store_methods, org_store_methods,
};
