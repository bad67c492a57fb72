//! Organizations: create, look up, rename, delete.

use tenancy::{ErrorKind, NewOrganization, OrgId, Role, UserId};

use tenancy_testkit::unique_slug;

use crate::scene::{kind, scene};

/// Creating an organization makes the creator its owner; lookups by id and
/// slug find it; a taken slug is `AlreadyExists`.
#[tokio::test]
async fn organizations_create_and_look_up() {
    let s = scene().await;
    let org = s
        .tenancy
        .service()
        .organization(s.org)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(org.owner_user_id, Some(s.owner));
    assert_eq!(org.name, "Acme");
    let by_slug = s
        .tenancy
        .service()
        .organization_by_slug(org.slug.as_str())
        .await
        .unwrap();
    assert_eq!(by_slug.as_ref().map(|o| o.id), Some(s.org));
    assert_eq!(s.owner_ctx.role(), Role::Owner);

    assert!(
        s.tenancy
            .service()
            .organization(OrgId::new_v7())
            .await
            .unwrap()
            .is_none()
    );
    let absent = s
        .tenancy
        .service()
        .organization_by_slug(&unique_slug("nobody"))
        .await
        .unwrap();
    assert!(absent.is_none());

    let again = NewOrganization::new("Other", org.slug.as_str()).unwrap();
    assert_eq!(
        kind(s.tenancy.create_organization(UserId::new_v7(), again).await),
        ErrorKind::AlreadyExists
    );
    let err = s
        .tenancy
        .service()
        .organization_by_slug("Not Valid")
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("slug"))
    );
}

/// Admins rename, only owners delete, and a deleted org is gone.
#[tokio::test]
async fn organizations_rename_and_delete() {
    let s = scene().await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    assert_eq!(
        kind(s.tenancy.rename_organization(&member, "Nope").await),
        ErrorKind::PermissionDenied
    );
    let renamed = s
        .tenancy
        .rename_organization(&admin, "  Acme Labs ")
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Labs");
    assert_eq!(
        s.tenancy
            .service()
            .organization(s.org)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Acme Labs"
    );
    assert_eq!(
        kind(s.tenancy.rename_organization(&admin, "").await),
        ErrorKind::InvalidInput
    );

    assert_eq!(
        kind(s.tenancy.delete_organization(&admin).await),
        ErrorKind::PermissionDenied
    );
    s.tenancy.delete_organization(&s.owner_ctx).await.unwrap();
    assert!(
        s.tenancy
            .service()
            .organization(s.org)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        kind(s.tenancy.context(member.user(), s.org).await),
        ErrorKind::PermissionDenied
    );
    assert!(
        s.tenancy
            .orgs_for_user(admin.user())
            .await
            .unwrap()
            .is_empty()
    );
}
