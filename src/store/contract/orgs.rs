//! Organizations: create with the owner, unique slugs, rename, delete,
//! list.

use std::sync::Arc;

use chrono_tz::Tz;

use super::{kind, new_org, noon, record, unique_slug};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::model::{Organization, Role};
use crate::store::{DynStore, OrgQuery};

/// The organization comes back as stored, with its creator as its only
/// member, an owner; both lookups find it.
pub async fn create_organization_returns_it_with_its_owner(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    assert_eq!(org.name, "Contract");
    assert_eq!(org.owner_user_id, Some(owner));
    assert_eq!(
        store.organization(org.id).await.unwrap().as_ref(),
        Some(&org)
    );
    assert_eq!(
        store
            .organization_by_slug(&org.slug)
            .await
            .unwrap()
            .as_ref(),
        Some(&org)
    );
    let members = store.members(org.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].user_id, members[0].role), (owner, Role::Owner));
    let mine = store.memberships_of_user(owner).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].organization.id, mine[0].role),
        (org.id, Role::Owner)
    );
    assert!(store.organization(OrgId::new_v7()).await.unwrap().is_none());
}

/// A second organization with the same slug is refused and nothing of it
/// is stored.
pub async fn a_taken_slug_is_already_exists(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let intruder = UserId::new_v7();
    let copy = Organization {
        id: OrgId::new_v7(),
        owner_user_id: Some(intruder),
        ..org.clone()
    };
    assert_eq!(
        kind(store.create_organization(&copy).await),
        ErrorKind::AlreadyExists
    );
    assert!(store.organization(copy.id).await.unwrap().is_none());
    assert!(
        store
            .memberships_of_user(intruder)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Renaming returns the renamed organization; deleting removes it and
/// everything it owns, and says whether it existed.
pub async fn rename_and_delete_organizations(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let renamed = store.rename_organization(org.id, "Renamed").await.unwrap();
    assert_eq!((renamed.id, renamed.name.as_str()), (org.id, "Renamed"));
    assert_eq!(
        kind(store.rename_organization(OrgId::new_v7(), "X").await),
        ErrorKind::NotFound
    );

    assert!(store.delete_organization(org.id).await.unwrap());
    assert!(!store.delete_organization(org.id).await.unwrap());
    assert!(store.organization(org.id).await.unwrap().is_none());
    assert!(store.membership(org.id, owner).await.unwrap().is_none());
    assert!(store.memberships_of_user(owner).await.unwrap().is_empty());
    let late = record(&org, Some(owner), &[(MetricKey::TOKENS, 1)], noon());
    assert_eq!(kind(store.record_usage(&[late]).await), ErrorKind::NotFound);
}

/// Listing finds organizations by name or slug, ignoring the case of ASCII
/// letters (only), ordered by name, a page at a time.
pub async fn list_organizations_searches_and_pages(store: Arc<DynStore>) {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let mut made = Vec::new();
    for name in ["Charlie", "alpha", "Bravo", "Écoles"] {
        let org = Organization {
            id: OrgId::new_v7(),
            name: format!("{name} {tag}"),
            slug: unique_slug("list"),
            owner_user_id: Some(UserId::new_v7()),
            timezone: Tz::UTC,
            created_at: noon(),
        };
        made.push(store.create_organization(&org).await.unwrap());
    }
    let query = |search: &str, limit, offset| OrgQuery {
        search: Some(search.to_owned()),
        limit,
        offset,
    };
    let found = store
        .list_organizations(&query(&tag.to_uppercase(), 10, 0))
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("Bravo {tag}"),
            format!("Charlie {tag}"),
            format!("alpha {tag}"),
            format!("Écoles {tag}")
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        "sorted by name as the store compares bytes"
    );
    let accented = |search: &str| query(&format!("{search} {tag}"), 10, 0);
    let exact = store.list_organizations(&accented("Écoles")).await.unwrap();
    assert_eq!(exact.len(), 1, "{exact:?}");
    let ascii_case = store.list_organizations(&accented("ÉCOLES")).await.unwrap();
    assert_eq!(
        ascii_case.len(),
        1,
        "ASCII letters ignore case: {ascii_case:?}"
    );
    let unicode_case = store.list_organizations(&accented("écoles")).await.unwrap();
    assert!(unicode_case.is_empty(), "É is not é: {unicode_case:?}");
    let page = store.list_organizations(&query(&tag, 1, 1)).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, found[1].id);
    let by_slug = store
        .list_organizations(&query(made[0].slug.as_str(), 10, 0))
        .await
        .unwrap();
    assert_eq!(
        by_slug.iter().map(|o| o.id).collect::<Vec<_>>(),
        [made[0].id]
    );
    let none = store
        .list_organizations(&query("%_\\", 10, 0))
        .await
        .unwrap();
    assert!(
        none.iter()
            .all(|o| o.name.contains("%_\\") || o.slug.as_str().contains("%_\\"))
    );
}
