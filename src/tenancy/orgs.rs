//! Organizations: create, look up, rename, delete.

use super::Tenancy;
use crate::error::{Error, Result};
use crate::ids::{OrgId, Slug, UserId};
use crate::model::audit::AuditActor;
use crate::model::org::validate_org_name;
use crate::model::{Action, NewOrganization, Organization, TenantContext};
use crate::store::OrgStore;

impl Tenancy {
    /// Creates an organization; `owner` becomes its owner and
    /// `owner_user_id`. A taken slug is `AlreadyExists`.
    pub async fn create_organization(
        &self,
        owner: UserId,
        new: NewOrganization,
    ) -> Result<Organization> {
        let org = Organization {
            id: OrgId::new_v7(),
            name: new.name,
            slug: new.slug,
            owner_user_id: Some(owner),
            timezone: new.timezone,
            created_at: self.now(),
        };
        self.audited(
            AuditActor::user(owner),
            self.inner.store.create_organization(&org),
        )
        .await
    }

    /// The organization with this id, if any.
    pub(super) async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        self.inner.store.organization(id).await
    }

    /// The organization with this slug, if any. An invalid slug is
    /// `InvalidInput`.
    pub(super) async fn organization_by_slug(&self, slug: &str) -> Result<Option<Organization>> {
        let slug = Slug::parse(slug)?;
        self.inner.store.organization_by_slug(&slug).await
    }

    /// Renames the active organization (admin or owner). Only this
    /// organization's cached entry is dropped; memberships stay cached.
    pub async fn rename_organization(
        &self,
        ctx: &TenantContext,
        name: &str,
    ) -> Result<Organization> {
        ctx.require(Action::RenameOrganization)?;
        let name = validate_org_name(name)?;
        let rename = self.inner.store.rename_organization(ctx.org(), &name);
        self.audited(AuditActor::user(ctx.user()), rename).await
    }

    /// Deletes the active organization and everything in it (owner only).
    pub async fn delete_organization(&self, ctx: &TenantContext) -> Result<()> {
        ctx.require(Action::DeleteOrganization)?;
        let delete = self.inner.store.delete_organization(ctx.org());
        let deleted = self.audited(AuditActor::user(ctx.user()), delete).await;
        let org = ctx.org();
        if !deleted? {
            return Err(Error::not_found(format!(
                "organization {org} no longer exists"
            )));
        }
        Ok(())
    }
}
