//! Errors as a web app returns them (shared by the test binaries of each
//! backend, `#[path]`-included): the crate's errors, provoked through
//! a backend, turned into axum responses, and checked for database detail
//! the body must not carry.

use std::sync::Arc;

use axum::response::IntoResponse;
use rust_decimal::Decimal;
use serde_json::Value;
use tenancy::limits::NewLimit;
use tenancy::store::{DynStore, MemberStore, OrgStore};
use tenancy::{
    ErrorKind, Membership, MetricKey, NewOrganization, OrgId, Organization, Period,
    PlatformOperator, Role, Tenancy, UserId,
};

use tenancy_testkit::unique_slug;

/// Text a response body never holds: SQLSTATE messages, constraint, table
/// and function names, key values, HTTP and PostgREST detail.
pub const DATABASE_DETAIL: [&str; 16] = [
    "duplicate key",
    "violates",
    "constraint",
    "_pkey",
    "_key\"",
    "Key (",
    "SQLSTATE",
    "23505",
    "23503",
    "42501",
    "P0002",
    "PGRST",
    "HTTP ",
    "tenancy_",
    "public.",
    "row-level security",
];

/// The status and JSON body `error` makes as a response.
pub async fn response_of(error: tenancy::Error) -> (u16, Value) {
    let response = error.into_response();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .expect("a response body");
    (status, serde_json::from_slice(&bytes).expect("a JSON body"))
}

/// The response of `error`, after checking its kind and that the body
/// holds none of [`DATABASE_DETAIL`] and says `says`.
pub async fn assert_safe(error: tenancy::Error, kind: ErrorKind, says: &str) -> Value {
    assert_eq!(error.kind(), kind, "{error}");
    let shown = error.to_string();
    let (status, body) = response_of(error).await;
    let text = body.to_string();
    for detail in DATABASE_DETAIL {
        assert!(
            !text.contains(detail),
            "{status} {text} holds {detail:?} (from {shown})"
        );
    }
    assert_eq!(body["error"], kind.as_str(), "{text}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{text} does not say {says:?}");
    body
}

/// Provokes the errors a web app meets through `tenancy` (built on the
/// backend under test) and, where given, a user-mode store acting as
/// `user_of(outsider)`: a taken slug, a member added twice, a limit for an
/// organization that does not exist, another organization's member
/// added through a user's store, a removal of someone who is not a member.
/// Each answers with its kind, a message in the caller's terms, and no
/// database detail. `users` makes users the backend knows.
pub async fn errors_are_safe_responses(
    tenancy: &Tenancy,
    store: &Arc<DynStore>,
    users: &mut dyn FnMut() -> UserId,
    user_store: Option<&dyn Fn(UserId) -> Arc<DynStore>>,
) {
    let (owner, member, outsider) = (users(), users(), users());
    let slug = unique_slug("safe");
    let org = tenancy
        .create_organization(owner, NewOrganization::new("Safe", &slug).unwrap())
        .await
        .expect("create");
    let taken = tenancy
        .create_organization(outsider, NewOrganization::new("Again", &slug).unwrap())
        .await
        .unwrap_err();
    assert_safe(
        taken,
        ErrorKind::AlreadyExists,
        &format!("slug \"{slug}\" is taken"),
    )
    .await;

    let ctx = tenancy.context(owner, org.id).await.unwrap();
    tenancy
        .add_member(&ctx, member, Role::Member)
        .await
        .unwrap();
    let twice = store
        .add_member(&membership(member, org.id, Role::Viewer))
        .await
        .unwrap_err();
    assert_safe(twice, ErrorKind::AlreadyExists, "is already a member").await;

    let nowhere = OrgId::new_v7();
    let admin = PlatformOperator::new("safe-errors");
    let limit = NewLimit::new(MetricKey::TOKENS, Period::Daily, Decimal::ONE).unwrap();
    let missing = tenancy
        .operator(&admin)
        .set_limit(nowhere, limit)
        .await
        .unwrap_err();
    assert_safe(missing, ErrorKind::NotFound, &nowhere.to_string()).await;

    let absent = store
        .remove_member(org.id, outsider, Role::Member)
        .await
        .unwrap_err();
    assert_safe(absent, ErrorKind::NotFound, "is not a member").await;

    if let Some(user_store) = user_store {
        let theirs = user_store(outsider);
        let other: Organization = store.organization(org.id).await.unwrap().unwrap();
        let refused = theirs
            .add_member(&membership(outsider, other.id, Role::Owner))
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused.kind(),
                ErrorKind::PermissionDenied | ErrorKind::NotFound
            ),
            "{refused}"
        );
        let kind = refused.kind();
        assert_safe(refused, kind, &other.id.to_string()).await;
    }
}

fn membership(user: UserId, org: OrgId, role: Role) -> Membership {
    Membership {
        user_id: user,
        organization_id: org,
        role,
        created_at: chrono::Utc::now(),
    }
}
