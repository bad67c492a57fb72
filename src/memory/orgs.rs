//! `OrgStore` for [`MemoryStore`]: organizations: a slug index beside the tenants.

use crate::error::Result;
use crate::ids::{OrgId, Slug};
use crate::model::{Membership, Organization, Role};
use crate::store::{OrgQuery, OrgStore};
use async_trait::async_trait;

use super::tenant::Tenant;
use super::{MemoryStore, already_exists};

#[async_trait]
impl OrgStore for MemoryStore {
    async fn create_organization(&self, org: &Organization) -> Result<Organization> {
        let mut state = self.lock();
        if state.slugs.contains_key(&org.slug) {
            return Err(already_exists(format!(
                "slug {:?} is taken",
                org.slug.as_str()
            )));
        }
        if state.tenants.contains_key(&org.id) {
            return Err(already_exists(format!("organization {} exists", org.id)));
        }
        let mut tenant = Tenant::new(org.clone());
        state
            .audit
            .organization(None, Some(org), Some(org.created_at));
        if let Some(owner) = org.owner_user_id {
            let membership = Membership {
                user_id: owner,
                organization_id: org.id,
                role: Role::Owner,
                created_at: org.created_at,
            };
            state
                .audit
                .member(None, Some(&membership), Some(org.created_at));
            tenant.members.insert(owner, membership);
            state.orgs_of_user.entry(owner).or_default().insert(org.id);
        }
        state.slugs.insert(org.slug.clone(), org.id);
        state.tenants.insert(org.id, tenant);
        Ok(org.clone())
    }

    async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        Ok(self.lock().tenant(id).map(|t| t.org.clone()))
    }

    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>> {
        let state = self.lock();
        let org = state.slugs.get(slug).and_then(|id| state.tenant(*id));
        Ok(org.map(|t| t.org.clone()))
    }

    async fn list_organizations(&self, query: &OrgQuery) -> Result<Vec<Organization>> {
        let state = self.lock();
        let needle = query.search.as_deref().map(str::to_ascii_lowercase);
        let mut orgs: Vec<&Organization> = state
            .tenants
            .values()
            .map(|t| &t.org)
            .filter(|o| {
                needle.as_deref().is_none_or(|n| {
                    o.name.to_ascii_lowercase().contains(n) || o.slug.as_str().contains(n)
                })
            })
            .collect();
        orgs.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        Ok(orgs
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        let mut state = self.lock();
        let tenant = state.tenant_mut(id)?;
        let before = tenant.org.clone();
        tenant.org.name = name.to_owned();
        let after = tenant.org.clone();
        state.audit.organization(Some(&before), Some(&after), None);
        Ok(after)
    }

    async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        let mut state = self.lock();
        let Some(tenant) = state.tenants.remove(&id) else {
            return Ok(false);
        };
        state.slugs.remove(&tenant.org.slug);
        for user in tenant.members.keys() {
            if let Some(orgs) = state.orgs_of_user.get_mut(user) {
                orgs.remove(&id);
            }
        }
        state.events.retain(|(org, _)| *org != id);
        // As the SQL's cascades do: each of its rows, then the organization.
        for member in tenant.members.values() {
            state.audit.member(Some(member), None, None);
        }
        for feature in tenant.features.values() {
            state.audit.feature(id, Some(feature), None, None);
        }
        for limit in &tenant.limits {
            state.audit.limit(Some(limit), None, None);
        }
        super::invitations::delete_organization(&mut state, id);
        super::domains::delete_organization(&mut state, id);
        super::plans::delete_organization(&mut state, &tenant);
        state.audit.organization(Some(&tenant.org), None, None);
        Ok(true)
    }
}
