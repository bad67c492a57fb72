//! Contexts, the org selector, and membership changes.

use std::sync::Arc;

use super::Tenancy;
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::{
    Action, Membership, MembershipChange, OrgMembership, Role, TenantContext, default_membership,
};
use crate::store::MemberStore;
use crate::store::not_a_member;

fn not_a_member_of(org: OrgId, user: UserId) -> Error {
    Error::permission_denied(format!("user {user} is not a member of organization {org}"))
}

impl Tenancy {
    /// The context of `user` acting in `org`, after the store confirms the
    /// membership (or, with a membership cache, confirmed it within the
    /// configured TTL). A user who is not a member — or an org that does not
    /// exist, indistinguishably — is `PermissionDenied`.
    pub async fn context(&self, user: UserId, org: OrgId) -> Result<TenantContext> {
        let (organization, confirmed) = self
            .inner
            .store
            .confirmed_membership(org, user, self.now())
            .await?
            .ok_or_else(|| not_a_member_of(org, user))?;
        Ok(TenantContext::new(
            user,
            organization,
            confirmed.role,
            confirmed.confirmed_at,
        ))
    }

    /// Like [`context`](Self::context) with ids as strings, as they arrive
    /// from a request. Invalid UUIDs are `InvalidInput` naming `user_id` or
    /// `org_id`.
    pub async fn context_from_strs(&self, user: &str, org: &str) -> Result<TenantContext> {
        self.context(UserId::parse(user)?, OrgId::parse(org)?).await
    }

    /// Switches `ctx`'s user to another organization, re-checking the
    /// membership.
    pub async fn switch_org(&self, ctx: &TenantContext, org: OrgId) -> Result<TenantContext> {
        self.context(ctx.user(), org).await
    }

    /// The user's organizations with their roles, for an org selector:
    /// the [default](Self::default_context) first, then by join time.
    pub async fn orgs_for_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        let mut orgs = self.inner.store.memberships_of_user(user).await?;
        let default = default_membership(&orgs).map(|m| m.organization.id);
        orgs.sort_by_key(|m| {
            (
                Some(m.organization.id) != default,
                m.joined_at,
                m.organization.id,
            )
        });
        Ok(orgs)
    }

    /// The context of `user` in their default organization — the one they
    /// joined first (see [`default_membership`]) — or `None` if they belong
    /// to none.
    pub async fn default_context(&self, user: UserId) -> Result<Option<TenantContext>> {
        let orgs = self.inner.store.memberships_of_user(user).await?;
        let Some(default) = default_membership(&orgs) else {
            return Ok(None);
        };
        Ok(Some(TenantContext::new(
            user,
            Arc::new(default.organization.clone()),
            default.role,
            self.now(),
        )))
    }

    /// The active organization's members, by user id.
    pub async fn members(&self, ctx: &TenantContext) -> Result<Vec<Membership>> {
        ctx.require(Action::ViewMembers)?;
        self.inner.store.members(ctx.org()).await
    }

    /// Adds `user` to the active organization with `role`. Owners add
    /// anyone; admins add members and viewers. `AlreadyExists` if `user` is a
    /// member.
    pub async fn add_member(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
    ) -> Result<Membership> {
        let change = MembershipChange {
            before: None,
            after: Some(role),
        };
        ctx.require_member_change(user, change)?;
        let membership = Membership {
            user_id: user,
            organization_id: ctx.org(),
            role,
            created_at: self.now(),
        };
        self.inner.store.add_member(&membership).await?;
        Ok(membership)
    }

    /// Changes `user`'s role in the active organization, following the role
    /// rules in [`model::role`](crate::model::role). Breaking a rule is
    /// `PermissionDenied`; a concurrent change to the same member is
    /// `Conflict`.
    pub async fn change_role(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
    ) -> Result<Membership> {
        let current = self.current_role(ctx, user).await?;
        let change = MembershipChange {
            before: Some(current),
            after: Some(role),
        };
        ctx.require_member_change(user, change)?;
        self.inner
            .store
            .set_member_role(ctx.org(), user, current, role)
            .await
    }

    /// Removes `user` from the active organization. Their next
    /// [`context`](Self::context) call fails.
    pub async fn remove_member(&self, ctx: &TenantContext, user: UserId) -> Result<()> {
        let current = self.current_role(ctx, user).await?;
        let change = MembershipChange {
            before: Some(current),
            after: None,
        };
        ctx.require_member_change(user, change)?;
        self.inner
            .store
            .remove_member(ctx.org(), user, current)
            .await
    }

    /// Leaves the active organization. The last owner cannot leave.
    pub async fn leave(&self, ctx: &TenantContext) -> Result<()> {
        self.remove_member(ctx, ctx.user()).await
    }

    async fn current_role(&self, ctx: &TenantContext, user: UserId) -> Result<Role> {
        let membership = self.inner.store.membership(ctx.org(), user).await?;
        membership
            .map(|m| m.role)
            .ok_or_else(|| not_a_member(ctx.org(), user))
    }
}
