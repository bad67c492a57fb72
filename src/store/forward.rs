//! Each capability trait's one list of async methods, and the forwarding
//! impls generated from it.
//!
//! A capability's list macro (`org_store_methods!`, …) hands every
//! method's signature to a callback macro. The first six lists are here;
//! later capabilities declare theirs beside their trait (`invitations.rs`,
//! …), naming their types by full path, since the lists expand in files
//! that do not import them. The `Arc<T>` and `Box<T>` forwarding impls, the
//! pass-through methods of `faults::FaultyStore`, the facade's caching and
//! instrumentation wrappers and the SQL store's impls are generated from
//! the lists and deny `clippy::missing_trait_methods`, so a method added to
//! a trait but not to its list, or the other way round, does not compile.

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
    fn reconcile_usage(query: &ReconcileQuery) -> Result<Vec<CounterDrift>>;
    fn repair_usage(query: &ReconcileQuery) -> Result<Vec<CounterDrift>>;
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

/// `#[async_trait] impl $trait for $type` from `overrides` (written out)
/// and the trait's method list, every method not overridden passing
/// straight through to `self.inner`: a wrapper store that changes only
/// some methods (fault injection, caching). The inner macro's arms name
/// the overridden methods, so they are skipped; `$d` is a `$` for the inner
/// macro's own variables.
macro_rules! pass_through_impl {
    ($d:tt $trait:ident for $type:ty [$($skip:ident),*] { $($overrides:item)* } ; $($methods:tt)*) => {
        macro_rules! pass_through {
            (@done [$d($d kept:tt)*]) => {
                #[async_trait]
                #[deny(clippy::missing_trait_methods)]
                impl $trait for $type {
                    $($overrides)*
                    $d($d kept)*
                }
            };
            $(
                (@done [$d($d kept:tt)*] fn $skip($d($d a:ident: $d t:ty),*) -> $d r:ty; $d($d rest:tt)*) => {
                    pass_through!(@done [$d($d kept)*] $d($d rest)*);
                };
            )*
            (@done [$d($d kept:tt)*] fn $d name:ident($d($d a:ident: $d t:ty),*) -> $d r:ty; $d($d rest:tt)*) => {
                pass_through!(@done [
                    $d($d kept)*
                    async fn $d name(&self, $d($d a: $d t),*) -> $d r {
                        self.inner.$d name($d($d a),*).await
                    }
                ] $d($d rest)*);
            };
        }
        pass_through!(@done [] $($methods)*);
    };
}

pub(crate) use {
    alert_store_methods, feature_store_methods, limit_store_methods, member_store_methods,
    metering_store_methods, org_store_methods, pass_through_impl,
};
