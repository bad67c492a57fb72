//! Organizations over SQL.

use super::args::{CreateOrgArgs, Deleted, ListOrgsArgs, OrgArg, RenameOrgArgs, SlugArg};
use super::{Idempotent, Sql, SqlError, SqlTransport, explained};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{OrgId, Slug};
use crate::model::Organization;
use crate::store::OrgQuery;
use crate::store::org_not_found;

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn create_organization(&self, org: &Organization) -> Result<Organization> {
        let what = format!("creating organization {}", org.slug.as_str());
        let args = CreateOrgArgs {
            id: org.id,
            name: &org.name,
            slug: org.slug.as_str(),
            timezone: org.timezone.name(),
            owner_user_id: org.owner_user_id,
            created_at: org.created_at,
        };
        // With an owner, the organization and (by trigger) its owner row
        // are inserted in one transaction.
        let function = if org.owner_user_id.is_some() {
            "tenancy_create_organization"
        } else {
            "tenancy_create_unowned_organization"
        };
        // As stored: for a user's JWT the database assigns id and created_at.
        let rows: Vec<Organization> = self
            .rpc(function, &what, Idempotent::No, &args)
            .await
            .map_err(|e| {
                explained(e, |kind, sql| match kind {
                    ErrorKind::AlreadyExists => Some(if sql.is_some_and(names_the_slug) {
                        format!("slug {:?} is taken", org.slug.as_str())
                    } else {
                        format!("organization {} exists", org.id)
                    }),
                    // The owner is the one reference a new organization has.
                    ErrorKind::NotFound => org
                        .owner_user_id
                        .map(|owner| format!("user {owner} does not exist")),
                    _ => None,
                })
            })?;
        rows.into_iter()
            .next()
            .ok_or_else(|| Error::unexpected(format!("{what}: {function} returned no row")))
    }

    pub(crate) async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        let rows: Vec<Organization> = self
            .rpc(
                "tenancy_organization",
                "reading an organization",
                Idempotent::Yes,
                &OrgArg { org_id: id },
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    pub(crate) async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>> {
        let args = SlugArg {
            org_slug: slug.as_str(),
        };
        let rows: Vec<Organization> = self
            .rpc(
                "tenancy_organization_by_slug",
                "reading an organization by slug",
                Idempotent::Yes,
                &args,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    pub(crate) async fn list_organizations(&self, query: &OrgQuery) -> Result<Vec<Organization>> {
        let args = ListOrgsArgs {
            max_rows: query.limit,
            skip_rows: query.offset,
            search: query.search.as_deref(),
        };
        self.rpc(
            "tenancy_list_organizations",
            "listing organizations",
            Idempotent::Yes,
            &args,
        )
        .await
    }

    pub(crate) async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        let args = RenameOrgArgs {
            org_id: id,
            new_name: name,
        };
        self.rpc(
            "tenancy_rename_organization",
            "renaming an organization",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| match kind {
                ErrorKind::NotFound => Some(org_not_found(id).message().to_owned()),
                ErrorKind::PermissionDenied => {
                    Some(format!("only admins and owners rename organization {id}"))
                }
                _ => None,
            })
        })
    }

    pub(crate) async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        // Not retried after an ambiguous failure: a retry after a delete
        // that landed would report `false`.
        let deleted: Deleted = self
            .rpc(
                "tenancy_delete_organization",
                "deleting an organization",
                Idempotent::No,
                &OrgArg { org_id: id },
            )
            .await?;
        Ok(deleted.deleted)
    }
}

/// Whether a unique violation is the slug's: its constraint, where the
/// transport reports it, or else the message names it.
fn names_the_slug(sql: &SqlError) -> bool {
    sql.constraint()
        .map_or_else(|| sql.message().contains("slug"), |c| c.contains("slug"))
}
