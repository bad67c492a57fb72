//! Who people are: members with their names and emails from the user
//! directory, on `MemoryStore` with a `MemoryUserDirectory`.

use std::sync::Arc;

use tenancy::memory::MemoryUserDirectory;
use tenancy::store::UserDirectory;
use tenancy::{MemoryStore, NewOrganization, Role, Tenancy, UserId, UserProfile};
use tenancy_testkit::unique_slug;

async fn org(t: &Tenancy, owner: UserId) -> tenancy::OrgId {
    let new = NewOrganization::new("Acme", unique_slug("people").as_str()).unwrap();
    t.create_organization(owner, new).await.unwrap().id
}

/// Every member, a viewer included, reads the org's members with names
/// and emails; a user the directory does not know shows its id alone.
#[tokio::test]
async fn members_come_with_their_names_and_emails() {
    let directory = Arc::new(MemoryUserDirectory::new());
    let t = Tenancy::builder()
        .store(MemoryStore::new())
        .shared_user_directory(Arc::clone(&directory) as Arc<dyn UserDirectory>)
        .build()
        .unwrap();
    let (ada, bob, nameless) = (UserId::new_v7(), UserId::new_v7(), UserId::new_v7());
    directory.insert(ada, Some("ada@example.com"), Some("Ada Lovelace"));
    directory.insert(bob, Some("bob@example.com"), None);
    let org = org(&t, ada).await;
    let owner = t.context(ada, org).await.unwrap();
    t.add_member(&owner, bob, Role::Viewer).await.unwrap();
    t.add_member(&owner, nameless, Role::Member).await.unwrap();

    let as_viewer = t.context(bob, org).await.unwrap();
    let members = t.member_profiles(&as_viewer).await.unwrap();
    let by_user: Vec<(UserId, Role, UserProfile)> = members
        .into_iter()
        .map(|(m, p)| (m.user_id, m.role, p))
        .collect();
    assert_eq!(by_user.len(), 3);
    for (user, role, profile) in &by_user {
        assert_eq!(profile.user_id, *user);
        match *user {
            u if u == ada => {
                assert_eq!(*role, Role::Owner);
                assert_eq!(profile.label(), Some("Ada Lovelace"));
                assert_eq!(profile.email.as_deref(), Some("ada@example.com"));
            }
            u if u == bob => assert_eq!(profile.label(), Some("bob@example.com")),
            _ => assert_eq!(profile, &UserProfile::new(nameless)),
        }
    }
}

/// `profiles` names only current members of the caller's organization:
/// another organization's user and a removed member stay ids, even though
/// the directory knows them.
#[tokio::test]
async fn nobody_learns_who_a_non_member_is() {
    let directory = Arc::new(MemoryUserDirectory::new());
    let t = Tenancy::builder()
        .store(MemoryStore::new())
        .shared_user_directory(Arc::clone(&directory) as Arc<dyn UserDirectory>)
        .build()
        .unwrap();
    let (ada, bob, carol, dave) = (
        UserId::new_v7(),
        UserId::new_v7(),
        UserId::new_v7(),
        UserId::new_v7(),
    );
    for (user, name) in [(ada, "Ada"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave")] {
        let email = format!("{}@example.com", name.to_lowercase());
        directory.insert(user, Some(&email), Some(name));
    }
    let acme = org(&t, ada).await;
    let _globex = org(&t, carol).await;
    let owner = t.context(ada, acme).await.unwrap();
    t.add_member(&owner, bob, Role::Member).await.unwrap();
    t.add_member(&owner, dave, Role::Member).await.unwrap();
    let as_bob = t.context(bob, acme).await.unwrap();
    let seen = t.profiles(&as_bob, &[dave, ada]).await.unwrap();
    assert_eq!(seen[0].name.as_deref(), Some("Dave"), "positive control");
    t.remove_member(&owner, dave).await.unwrap();

    let seen = t.profiles(&as_bob, &[carol, dave, ada, ada]).await.unwrap();
    let labels: Vec<Option<&str>> = seen.iter().map(UserProfile::label).collect();
    assert_eq!(labels, [None, None, Some("Ada"), Some("Ada")]);
    assert_eq!(seen[0], UserProfile::new(carol));
    assert_eq!(seen[1], UserProfile::new(dave));
}

/// Without a directory, profiles are the ids alone: pages still render.
#[tokio::test]
async fn without_a_directory_profiles_are_ids() {
    let t = Tenancy::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let ada = UserId::new_v7();
    let org = org(&t, ada).await;
    let ctx = t.context(ada, org).await.unwrap();
    let members = t.member_profiles(&ctx).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1, UserProfile::new(ada));
    assert_eq!(
        t.profiles(&ctx, &[ada]).await.unwrap(),
        [UserProfile::new(ada)]
    );
}

/// The memory directory refuses more ids than a SQL call takes, as the
/// SQL does; the facade asks in chunks, so a large organization works.
#[tokio::test]
async fn a_directory_call_is_capped_and_the_facade_chunks() {
    let directory = MemoryUserDirectory::new();
    let many: Vec<UserId> = (0..=tenancy::store::MAX_PROFILE_IDS)
        .map(|_| UserId::new_v7())
        .collect();
    let err = directory.profiles(&many).await.unwrap_err();
    assert_eq!(err.kind(), tenancy::ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("users"));

    let directory = Arc::new(directory);
    let t = Tenancy::builder()
        .store(MemoryStore::new())
        .shared_user_directory(Arc::clone(&directory) as Arc<dyn UserDirectory>)
        .build()
        .unwrap();
    let owner = many[0];
    let org = org(&t, owner).await;
    let ctx = t.context(owner, org).await.unwrap();
    for user in &many[1..] {
        t.add_member(&ctx, *user, Role::Viewer).await.unwrap();
    }
    let last = *many.last().unwrap();
    directory.insert(last, Some("last@example.com"), Some("Last"));
    let members = t.member_profiles(&ctx).await.unwrap();
    assert_eq!(members.len(), many.len());
    let named: Vec<&UserProfile> = members
        .iter()
        .map(|m| &m.1)
        .filter(|p| p.name.is_some())
        .collect();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].user_id, last);
}
