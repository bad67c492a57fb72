//! The contract of verified domains: the operator's records per
//! organization, the organization's join setting, the organizations an
//! email may join, and joining (check and membership in one step). Every
//! test uses domains of its own (`<random>.example`): the joinable list
//! spans every organization of a shared database.

use std::sync::Arc;

use chrono::TimeDelta;

use super::{kind, new_org, noon};
use crate::error::ErrorKind;
use crate::ids::{OrgId, UserId};
use crate::model::Role;
use crate::model::domain::{AutoJoin, DomainChange, DomainName};
use crate::store::DynStore;

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __domain_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            domains_are_put_listed_and_removed_per_organization,
            auto_join_is_set_per_domain_of_the_named_organization,
            joining_matches_the_exact_domain_only,
            subdomains_join_only_where_allowed_and_the_most_specific_decides,
            a_disabled_domain_matches_nothing,
            joinable_lists_the_organizations_not_yet_joined,
            concurrent_joins_make_one_membership,
            deleting_an_organization_deletes_its_domains,
        }
    };
}

/// A domain no other test uses.
fn fresh_domain() -> DomainName {
    let id = uuid::Uuid::new_v4().simple().to_string();
    DomainName::parse(&format!("d{}.example", &id[..12])).unwrap()
}

fn name(text: &str) -> DomainName {
    DomainName::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// An organization with `domain` recorded and joining set to `auto_join`.
async fn org_with_domain(
    store: &DynStore,
    domain: &DomainName,
    include_subdomains: bool,
    auto_join: AutoJoin,
) -> OrgId {
    let (org, _) = new_org(store).await;
    store
        .put_domain(
            org.id,
            domain,
            &DomainChange::include_subdomains(include_subdomains),
            noon(),
        )
        .await
        .unwrap();
    store
        .set_auto_join(org.id, domain, auto_join, noon())
        .await
        .unwrap();
    org.id
}

/// A new domain takes the defaults; a put changes only the fields it
/// names and never the organization's join setting or `created_at`; the
/// list is by name and holds only the named organization's domains;
/// removing answers whether it was there; an unknown organization is
/// `NotFound` to put and empty to list.
pub async fn domains_are_put_listed_and_removed_per_organization(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let (other, _) = new_org(&*store).await;
    let base = fresh_domain();
    let (b, a) = (name(&format!("b.{base}")), name(&format!("a.{base}")));
    let later = noon() + TimeDelta::hours(1);

    let fresh = store
        .put_domain(org.id, &b, &DomainChange::default(), noon())
        .await
        .unwrap();
    assert_eq!(fresh.organization_id, org.id);
    assert_eq!(fresh.domain, b);
    assert!(fresh.enabled && !fresh.include_subdomains);
    assert_eq!(fresh.auto_join, AutoJoin::Off);
    assert_eq!((fresh.created_at, fresh.updated_at), (noon(), noon()));

    store
        .set_auto_join(org.id, &b, AutoJoin::Viewer, noon())
        .await
        .unwrap();
    let changed = store
        .put_domain(org.id, &b, &DomainChange::include_subdomains(true), later)
        .await
        .unwrap();
    assert!(changed.include_subdomains && changed.enabled);
    assert_eq!(
        changed.auto_join,
        AutoJoin::Viewer,
        "the org's choice is kept"
    );
    assert_eq!((changed.created_at, changed.updated_at), (noon(), later));
    let disabled = store
        .put_domain(org.id, &b, &DomainChange::enabled(false), later)
        .await
        .unwrap();
    assert!(!disabled.enabled && disabled.include_subdomains);

    store
        .put_domain(org.id, &a, &DomainChange::default(), noon())
        .await
        .unwrap();
    // The same name in another organization is another record.
    store
        .put_domain(other.id, &a, &DomainChange::default(), noon())
        .await
        .unwrap();
    let listed = store.domains(org.id).await.unwrap();
    let names: Vec<&DomainName> = listed.iter().map(|d| &d.domain).collect();
    assert_eq!(names, [&a, &b]);
    assert_eq!(listed[1], disabled);
    assert_eq!(store.domains(other.id).await.unwrap().len(), 1);

    assert!(store.remove_domain(org.id, &a).await.unwrap());
    assert!(!store.remove_domain(org.id, &a).await.unwrap());
    assert_eq!(store.domains(org.id).await.unwrap().len(), 1);
    assert_eq!(
        store.domains(other.id).await.unwrap().len(),
        1,
        "other org untouched"
    );

    let nowhere = OrgId::new_v7();
    assert_eq!(
        kind(
            store
                .put_domain(nowhere, &a, &DomainChange::default(), noon())
                .await
        ),
        ErrorKind::NotFound
    );
    assert!(store.domains(nowhere).await.unwrap().is_empty());
    assert!(!store.remove_domain(nowhere, &a).await.unwrap());
}

/// The join setting changes one domain of the named organization: another
/// organization's domain of the same name is untouched, and a domain the
/// organization does not have is `NotFound`.
pub async fn auto_join_is_set_per_domain_of_the_named_organization(store: Arc<DynStore>) {
    let domain = fresh_domain();
    let org = org_with_domain(&*store, &domain, false, AutoJoin::Off).await;
    let other = org_with_domain(&*store, &domain, false, AutoJoin::Off).await;
    let later = noon() + TimeDelta::minutes(5);

    let set = store
        .set_auto_join(org, &domain, AutoJoin::Member, later)
        .await
        .unwrap();
    assert_eq!((set.auto_join, set.updated_at), (AutoJoin::Member, later));
    assert_eq!(
        store.domains(other).await.unwrap()[0].auto_join,
        AutoJoin::Off
    );

    let missing = fresh_domain();
    assert_eq!(
        kind(
            store
                .set_auto_join(org, &missing, AutoJoin::Member, later)
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            store
                .set_auto_join(OrgId::new_v7(), &domain, AutoJoin::Member, later)
                .await
        ),
        ErrorKind::NotFound
    );
}

/// An email at the domain joins with the domain's role (its case
/// ignored), once: joining again changes nothing. Look-alikes, a subdomain
/// the record does not allow, an address without a domain, joining turned
/// off and an organization that does not exist are all `PermissionDenied`
/// and add nobody.
pub async fn joining_matches_the_exact_domain_only(store: Arc<DynStore>) {
    let domain = fresh_domain();
    let org = org_with_domain(&*store, &domain, false, AutoJoin::Member).await;
    let later = noon() + TimeDelta::hours(2);

    for email in [
        format!("ada@{domain}.evil.io"),
        format!("ada@evil{domain}"),
        format!("ada@eu.{domain}"),
        format!("{domain}"),
        format!("ada@{domain}@evil.io"),
    ] {
        let user = UserId::new_v7();
        assert_eq!(
            kind(store.join_by_domain(org, user, &email, noon()).await),
            ErrorKind::PermissionDenied,
            "{email}"
        );
        assert!(
            store.membership(org, user).await.unwrap().is_none(),
            "{email}"
        );
    }

    let ada = UserId::new_v7();
    let email = format!("Ada@{}", domain.as_str().to_uppercase());
    let joined = store
        .join_by_domain(org, ada, &email, noon())
        .await
        .unwrap();
    assert!(joined.joined);
    assert_eq!(
        (joined.membership.user_id, joined.membership.organization_id),
        (ada, org)
    );
    assert_eq!(
        (joined.membership.role, joined.membership.created_at),
        (Role::Member, noon())
    );
    assert_eq!(
        store.membership(org, ada).await.unwrap().map(|m| m.role),
        Some(Role::Member)
    );
    let again = store.join_by_domain(org, ada, &email, later).await.unwrap();
    assert!(!again.joined);
    assert_eq!(again.membership, joined.membership, "nothing changed");

    // An existing member of a higher role keeps it.
    let (owned, owner) = new_org(&*store).await;
    store
        .put_domain(owned.id, &domain, &DomainChange::default(), noon())
        .await
        .unwrap();
    store
        .set_auto_join(owned.id, &domain, AutoJoin::Viewer, noon())
        .await
        .unwrap();
    let kept = store
        .join_by_domain(owned.id, owner, &format!("o@{domain}"), later)
        .await
        .unwrap();
    assert!(!kept.joined);
    assert_eq!(kept.membership.role, Role::Owner);

    let off = org_with_domain(&*store, &domain, false, AutoJoin::Off).await;
    let bob = UserId::new_v7();
    assert_eq!(
        kind(
            store
                .join_by_domain(off, bob, &format!("bob@{domain}"), noon())
                .await
        ),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(
            store
                .join_by_domain(OrgId::new_v7(), bob, &format!("bob@{domain}"), noon())
                .await
        ),
        ErrorKind::PermissionDenied
    );
    assert!(store.memberships_of_user(bob).await.unwrap().is_empty());
}

/// With `include_subdomains`, an email at any subdomain matches (not a
/// look-alike); where several domains match, the longest decides, its
/// `off` included.
pub async fn subdomains_join_only_where_allowed_and_the_most_specific_decides(
    store: Arc<DynStore>,
) {
    let domain = fresh_domain();
    let org = org_with_domain(&*store, &domain, true, AutoJoin::Member).await;
    let contractors = name(&format!("contractors.{domain}"));
    let support = name(&format!("support.{domain}"));
    for (sub, auto_join) in [(&contractors, AutoJoin::Off), (&support, AutoJoin::Viewer)] {
        store
            .put_domain(org, sub, &DomainChange::default(), noon())
            .await
            .unwrap();
        store
            .set_auto_join(org, sub, auto_join, noon())
            .await
            .unwrap();
    }

    let eu = UserId::new_v7();
    let joined = store
        .join_by_domain(org, eu, &format!("eu@a.eu.{domain}"), noon())
        .await
        .unwrap();
    assert_eq!(joined.membership.role, Role::Member);
    let helper = UserId::new_v7();
    let joined = store
        .join_by_domain(org, helper, &format!("h@support.{domain}"), noon())
        .await
        .unwrap();
    assert_eq!(joined.membership.role, Role::Viewer, "support.* decides");
    for email in [
        format!("c@contractors.{domain}"),
        format!("c@{domain}.evil.io"),
        format!("c@evil{domain}"),
    ] {
        let user = UserId::new_v7();
        assert_eq!(
            kind(store.join_by_domain(org, user, &email, noon()).await),
            ErrorKind::PermissionDenied,
            "{email}"
        );
    }
    // contractors.* allows no subdomains: a deeper address falls back to the
    // parent, which does.
    let deeper = UserId::new_v7();
    let joined = store
        .join_by_domain(org, deeper, &format!("x@eu.contractors.{domain}"), noon())
        .await
        .unwrap();
    assert_eq!(joined.membership.role, Role::Member);
}

/// A disabled domain matches nothing: not joinable, joining refused; once
/// enabled again, it matches.
pub async fn a_disabled_domain_matches_nothing(store: Arc<DynStore>) {
    let domain = fresh_domain();
    let org = org_with_domain(&*store, &domain, false, AutoJoin::Member).await;
    store
        .put_domain(org, &domain, &DomainChange::enabled(false), noon())
        .await
        .unwrap();
    let ada = UserId::new_v7();
    let email = format!("ada@{domain}");
    assert!(
        store
            .joinable_organizations(ada, &email)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        kind(store.join_by_domain(org, ada, &email, noon()).await),
        ErrorKind::PermissionDenied
    );
    assert!(store.membership(org, ada).await.unwrap().is_none());

    store
        .put_domain(org, &domain, &DomainChange::enabled(true), noon())
        .await
        .unwrap();
    assert_eq!(
        store
            .joinable_organizations(ada, &email)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .join_by_domain(org, ada, &email, noon())
            .await
            .unwrap()
            .joined
    );
}

/// The joinable list: every organization whose deciding domain lets the
/// email join, with the role, minus those the user belongs to and those
/// with joining off; by name; nothing for look-alikes or an address
/// without a domain.
pub async fn joinable_lists_the_organizations_not_yet_joined(store: Arc<DynStore>) {
    let domain = fresh_domain();
    let member_org = org_with_domain(&*store, &domain, false, AutoJoin::Member).await;
    let viewer_org = org_with_domain(&*store, &domain, false, AutoJoin::Viewer).await;
    let off_org = org_with_domain(&*store, &domain, false, AutoJoin::Off).await;
    let joined_org = org_with_domain(&*store, &domain, false, AutoJoin::Member).await;
    let ada = UserId::new_v7();
    let email = format!("ada@{domain}");
    store
        .join_by_domain(joined_org, ada, &email, noon())
        .await
        .unwrap();

    let found = store.joinable_organizations(ada, &email).await.unwrap();
    let mut got: Vec<(OrgId, Role, &DomainName)> = found
        .iter()
        .map(|j| (j.organization.id, j.role, &j.domain))
        .collect();
    got.sort();
    let mut want = vec![
        (member_org, Role::Member, &domain),
        (viewer_org, Role::Viewer, &domain),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(!found.iter().any(|j| j.organization.id == off_org));
    // By name (all "Contract" here), then id.
    let ids: Vec<OrgId> = found.iter().map(|j| j.organization.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);

    for other in [
        format!("ada@{domain}.evil.io"),
        format!("ada@evil{domain}"),
        format!("ada@eu.{domain}"),
        domain.to_string(),
    ] {
        assert!(
            store
                .joinable_organizations(ada, &other)
                .await
                .unwrap()
                .is_empty(),
            "{other}"
        );
    }
}

/// Joins of one user racing each other make one membership: exactly one
/// answers `joined: true`, the others the same membership, unchanged.
pub async fn concurrent_joins_make_one_membership(store: Arc<DynStore>) {
    let domain = fresh_domain();
    let org = org_with_domain(&*store, &domain, false, AutoJoin::Viewer).await;
    let ada = UserId::new_v7();
    let email = format!("ada@{domain}");
    let joins: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let email = email.clone();
            tokio::spawn(async move {
                store
                    .join_by_domain(org, ada, &email, noon() + TimeDelta::seconds(i))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for join in joins {
        outcomes.push(join.await.unwrap().unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| o.joined).count(), 1);
    let first = &outcomes.iter().find(|o| o.joined).unwrap().membership;
    assert!(outcomes.iter().all(|o| &o.membership == first));
    let members = store.members(org).await.unwrap();
    assert_eq!(members.iter().filter(|m| m.user_id == ada).count(), 1);
}

/// An organization's domains go with it: nothing left to list, and it is
/// no longer joinable.
pub async fn deleting_an_organization_deletes_its_domains(store: Arc<DynStore>) {
    let domain = fresh_domain();
    let org = org_with_domain(&*store, &domain, false, AutoJoin::Member).await;
    let ada = UserId::new_v7();
    let email = format!("ada@{domain}");
    assert_eq!(
        store
            .joinable_organizations(ada, &email)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.delete_organization(org).await.unwrap());
    assert!(store.domains(org).await.unwrap().is_empty());
    assert!(
        store
            .joinable_organizations(ada, &email)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        kind(store.join_by_domain(org, ada, &email, noon()).await),
        ErrorKind::PermissionDenied
    );
}
