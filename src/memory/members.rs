//! `MemberStore` for [`MemoryStore`]: memberships, with the role rules of `Tenant::check_change`.

use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::model::{Membership, OrgMembership, Role};
use crate::store::MemberStore;
use async_trait::async_trait;

use super::{MemoryStore, already_exists};

#[async_trait]
impl MemberStore for MemoryStore {
    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>> {
        Ok(self.lock().org_membership(org, user))
    }

    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        let state = self.lock();
        let orgs = state.orgs_of_user.get(&user).into_iter().flatten();
        Ok(orgs
            .filter_map(|org| state.org_membership(*org, user))
            .collect())
    }

    async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        let state = self.lock();
        Ok(state
            .tenant(org)
            .map(|t| t.members.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn add_member(&self, membership: &Membership) -> Result<()> {
        let mut state = self.lock();
        let org = membership.organization_id;
        let tenant = state.tenant_mut(org)?;
        if tenant.members.contains_key(&membership.user_id) {
            return Err(already_exists(format!(
                "user {} is already a member of {org}",
                membership.user_id
            )));
        }
        tenant
            .members
            .insert(membership.user_id, membership.clone());
        state
            .orgs_of_user
            .entry(membership.user_id)
            .or_default()
            .insert(org);
        state
            .audit
            .member(None, Some(membership), Some(membership.created_at));
        Ok(())
    }

    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(org)?;
        tenant.check_change(user, expected, Some(role))?;
        let member = tenant
            .members
            .get_mut(&user)
            .ok_or_else(|| crate::store::not_a_member(org, user))?;
        let before = member.clone();
        member.role = role;
        let after = member.clone();
        state.audit.member(Some(&before), Some(&after), None);
        Ok(after)
    }

    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(org)?;
        tenant.check_change(user, expected, None)?;
        let removed = tenant.members.remove(&user);
        if let Some(orgs) = state.orgs_of_user.get_mut(&user) {
            orgs.remove(&org);
        }
        state.audit.member(removed.as_ref(), None, None);
        Ok(())
    }
}
