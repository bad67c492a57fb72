//! [`MemberStore`]: memberships and their roles.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::model::{Membership, OrgMembership, Role};

use super::Backend;

/// Memberships: who belongs to which organization with which role, changed by compare-and-set.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names.
#[async_trait]
pub trait MemberStore: Backend {
    /// A user's membership in an organization, with the organization.
    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>>;

    /// Every organization the user belongs to, with their role.
    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>>;

    /// The members of an organization, by user id.
    async fn members(&self, org: OrgId) -> Result<Vec<Membership>>;

    /// Adds a member. `NotFound` if the organization does not exist,
    /// `AlreadyExists` if the user is already a member.
    async fn add_member(&self, membership: &Membership) -> Result<()>;

    /// Changes a member's role from `expected` to `role`, atomically.
    /// `NotFound` if not a member; `Conflict` if their role is no longer
    /// `expected`; `PermissionDenied` if it would leave no owner.
    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership>;

    /// Removes a member whose role is `expected`, atomically. `NotFound` if
    /// not a member; `Conflict` if their role is no longer `expected`;
    /// `PermissionDenied` if they are the last owner.
    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()>;
}

forward_capability!(MemberStore, member_store_methods);
