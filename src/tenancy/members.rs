//! Contexts, the org selector, and membership changes.

use std::sync::Arc;

use super::Tenancy;
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::audit::AuditActor;
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
        let add = self.inner.store.add_member(&membership);
        self.audited(AuditActor::user(ctx.user()), add).await?;
        Ok(membership)
    }

    /// Changes `user`'s role in the active organization, following the role
    /// rules in [`model::role`](crate::model::role). Breaking a rule is
    /// `PermissionDenied`; a concurrent change to the same member is
    /// `Conflict`. Changing a member to the role they have is checked by the
    /// same rules and then writes nothing.
    pub async fn change_role(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
    ) -> Result<Membership> {
        Ok(self.apply_role(ctx, user, role).await?.0)
    }

    /// [`change_role`](Self::change_role), and whether the role changed
    /// (`false`: it was `role` already, and nothing was written).
    pub(crate) async fn apply_role(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
    ) -> Result<(Membership, bool)> {
        let current = self.current_membership(ctx, user).await?;
        let change = MembershipChange {
            before: Some(current.role),
            after: Some(role),
        };
        ctx.require_member_change(user, change)?;
        if current.role == role {
            return Ok((current, false));
        }
        let set = self
            .inner
            .store
            .set_member_role(ctx.org(), user, current.role, role);
        let changed = self.audited(AuditActor::user(ctx.user()), set).await?;
        Ok((changed, true))
    }

    /// Hands ownership of the active organization to another member: `to`
    /// becomes an owner and the caller, who must be one, an admin. Returns
    /// `to`'s membership.
    ///
    /// Refused with `PermissionDenied` unless the caller is an owner (by the
    /// store's word at the time of the call, not only the context's);
    /// `InvalidInput` naming `to` if `to` is the caller; `NotFound` if `to`
    /// is not a member (to hand an organization to someone outside it, add
    /// them first, or have the operator do it with
    /// [`Operator::transfer_ownership`](crate::Operator::transfer_ownership)).
    /// If `to` is an owner already, only the caller steps down.
    ///
    /// # Two steps, an owner at every instant
    ///
    /// The transfer is two compare-and-set role changes, not one
    /// transaction: first `to` is promoted to owner, then the caller is
    /// demoted to admin. The organization has an owner at every instant,
    /// and the store's last-owner rule never stands in the way.
    ///
    /// - If the promotion fails, nothing changed.
    /// - If the demotion fails (the store is unavailable, or the caller's
    ///   role changed meanwhile: `Conflict`), its error is returned and the
    ///   organization is left with **two owners**, `to` and the caller: a
    ///   state the role rules allow, which either owner can change.
    ///
    /// Retrying the same call is safe. `to` is already an owner then, so a
    /// retry only demotes the caller. If the failed demotion had in fact
    /// landed (an outage after the write), the caller is an admin already
    /// and the retry is `PermissionDenied`, changing nothing.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewOrganization, Role, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// tenancy.add_member(&ctx, bob, Role::Member).await?;
    ///
    /// let bobs = tenancy.transfer_ownership(&ctx, bob).await?;
    /// assert_eq!(bobs.role, Role::Owner);
    /// assert_eq!(tenancy.context(alice, org.id).await?.role(), Role::Admin);
    /// # Ok(()) }
    /// ```
    pub async fn transfer_ownership(&self, ctx: &TenantContext, to: UserId) -> Result<Membership> {
        ctx.require(Action::ManageOwners)?;
        let me = ctx.user();
        if to == me {
            return Err(Error::invalid_input(
                "to",
                "is the caller: ownership goes to another member",
            ));
        }
        let mine = self
            .inner
            .store
            .membership(ctx.org(), me)
            .await?
            .ok_or_else(|| not_a_member_of(ctx.org(), me))?;
        if mine.role != Role::Owner {
            return Err(Error::permission_denied(format!(
                "only owners transfer ownership; user {me} is {} in organization {}",
                mine.role,
                ctx.organization().slug
            )));
        }
        let theirs = self.current_membership(ctx, to).await?;
        let promote = MembershipChange {
            before: Some(theirs.role),
            after: Some(Role::Owner),
        };
        ctx.require_member_change(to, promote)?;
        let step_down = MembershipChange {
            before: Some(Role::Owner),
            after: Some(Role::Admin),
        };
        ctx.require_member_change(me, step_down)?;

        let store = &self.inner.store;
        let steps = async {
            let owner = if theirs.role == Role::Owner {
                theirs
            } else {
                store
                    .set_member_role(ctx.org(), to, theirs.role, Role::Owner)
                    .await?
            };
            store
                .set_member_role(ctx.org(), me, Role::Owner, Role::Admin)
                .await?;
            Ok(owner)
        };
        self.audited(AuditActor::user(me), steps).await
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
        let remove = self.inner.store.remove_member(ctx.org(), user, current);
        self.audited(AuditActor::user(ctx.user()), remove).await
    }

    /// Leaves the active organization. The last owner cannot leave.
    pub async fn leave(&self, ctx: &TenantContext) -> Result<()> {
        self.remove_member(ctx, ctx.user()).await
    }

    async fn current_role(&self, ctx: &TenantContext, user: UserId) -> Result<Role> {
        Ok(self.current_membership(ctx, user).await?.role)
    }

    /// `user`'s membership of the active organization; `NotFound` if none.
    async fn current_membership(&self, ctx: &TenantContext, user: UserId) -> Result<Membership> {
        let membership = self.inner.store.membership(ctx.org(), user).await?;
        membership
            .map(|m| Membership {
                user_id: user,
                organization_id: ctx.org(),
                role: m.role,
                created_at: m.joined_at,
            })
            .ok_or_else(|| not_a_member(ctx.org(), user))
    }
}
