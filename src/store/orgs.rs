//! [`OrgStore`]: the organizations themselves.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{OrgId, Slug};
use crate::model::Organization;

use super::{Backend, OrgQuery};

/// Organizations: create with an owner, read, list, rename, delete.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names.
#[async_trait]
pub trait OrgStore: Backend {
    /// Inserts `org` and, when `org.owner_user_id` is set, makes that user
    /// its owner, atomically, and returns the organization as stored: a
    /// backend may assign the id and creation time itself (Supabase does
    /// for a user's JWT). `AlreadyExists` if the slug (or id) is taken.
    async fn create_organization(&self, org: &Organization) -> Result<Organization>;

    /// The organization with this id.
    async fn organization(&self, id: OrgId) -> Result<Option<Organization>>;

    /// The organization with this slug.
    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>>;

    /// A page of organizations, by name then id, optionally only those whose
    /// name or slug contains `query.search` (ignoring the case of ASCII
    /// letters only, as PostgreSQL's `lower` in the "C" collation does).
    async fn list_organizations(&self, query: &OrgQuery) -> Result<Vec<Organization>>;

    /// Renames an organization. `NotFound` if it does not exist.
    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization>;

    /// Deletes an organization and everything that belongs to it. Whether it
    /// existed.
    async fn delete_organization(&self, id: OrgId) -> Result<bool>;
}

forward_capability!(OrgStore, org_store_methods);
