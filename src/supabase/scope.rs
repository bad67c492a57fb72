//! Org filters for query builders, and scoped table handles.
//!
//! Row-level security is the safety net; these make the application's own
//! queries tenant-scoped, so a forgotten filter is impossible rather than
//! merely harmless:
//!
//! - [`ForOrg`] adds the tenant filter to a [`postgrest::Builder`]:
//!   `store.from("brands").for_org(&ctx)`.
//! - [`ScopedTable`] ([`SupabaseStore::table`]) filters every read, update
//!   and delete by the active organization, stamps `organization_id` on
//!   every insert and upsert, and refuses — before sending anything — a
//!   row or patch that names another organization.
//!
//! ```no_run
//! # use tenancy::{supabase::SupabaseStore, TenantContext};
//! # async fn get_brands(store: &SupabaseStore, ctx: &TenantContext) -> tenancy::Result<()> {
//! #[derive(serde::Deserialize)]
//! struct Brand { id: i64, name: String }
//!
//! let brands = store.table(ctx, "brands");
//! let all: Vec<Brand> = brands.list("id,name").await?;
//! let acme: Vec<Brand> = brands.fetch("id,name", |q| q.eq("name", "Acme")).await?;
//! let _: Vec<Brand> = brands.insert(&[serde_json::json!({ "name": "New" })]).await?;
//! # Ok(()) }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::OrgId;
use crate::model::TenantContext;
use crate::supabase::{Idempotent, SupabaseStore};

/// The tenant column of adopted tables (`tenancy.adopt_table`).
pub const DEFAULT_ORG_COLUMN: &str = "organization_id";

/// Adds the tenant filter to a query builder.
///
/// ```
/// use tenancy::supabase::ForOrg;
/// # fn f(ctx: &tenancy::TenantContext) {
/// let query = postgrest::Postgrest::new("http://localhost:3000")
///     .from("brands")
///     .select("*")
///     .for_org(ctx);
/// # }
/// ```
pub trait ForOrg: Sized {
    /// Keeps only rows whose `organization_id` is the context's organization.
    fn for_org(self, ctx: &TenantContext) -> Self {
        self.for_org_id(DEFAULT_ORG_COLUMN, ctx.org())
    }

    /// Keeps only rows whose `column` is the context's organization.
    fn for_org_column(self, column: &str, ctx: &TenantContext) -> Self {
        self.for_org_id(column, ctx.org())
    }

    /// Keeps only rows whose `column` is `org`. Prefer the context-taking
    /// methods: a context proves the membership.
    fn for_org_id(self, column: &str, org: OrgId) -> Self;
}

impl ForOrg for postgrest::Builder {
    fn for_org_id(self, column: &str, org: OrgId) -> Self {
        self.eq(column, org.to_string())
    }
}

/// A table seen through one organization: see the [module docs](self).
///
/// The filter is added after the caller's refinement and PostgREST ANDs
/// every top-level filter, so nothing a caller adds, nor a refinement that
/// starts over from another builder, can widen the scope.
#[derive(Debug, Clone)]
pub struct ScopedTable {
    store: SupabaseStore,
    table: String,
    column: String,
    org: OrgId,
}

impl SupabaseStore {
    /// `table` scoped to the context's organization, on this client (the
    /// service client, or a user client where RLS applies as well).
    pub fn table(&self, ctx: &TenantContext, table: &str) -> ScopedTable {
        ScopedTable {
            store: self.clone(),
            table: table.to_owned(),
            column: DEFAULT_ORG_COLUMN.to_owned(),
            org: ctx.org(),
        }
    }
}

impl ScopedTable {
    /// Uses `column` as the tenant column instead of `organization_id`.
    pub fn org_column(mut self, column: impl Into<String>) -> Self {
        self.column = column.into();
        self
    }

    /// The organization every request is scoped to.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// The tenant column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// `refine`'s builder with the tenant filter applied after it, so a
    /// refinement that starts over from another builder is still scoped
    /// (PostgREST ANDs every filter).
    fn with_tenant_filter(
        &self,
        refine: impl FnOnce(postgrest::Builder) -> postgrest::Builder,
        start: postgrest::Builder,
    ) -> postgrest::Builder {
        refine(start).for_org_id(&self.column, self.org)
    }

    /// Reads `columns` of the organization's rows that `refine` selects and
    /// orders (`|q| q.eq("name", "Acme").order("id")`), and decodes them.
    pub async fn fetch<T: DeserializeOwned>(
        &self,
        columns: &str,
        refine: impl FnOnce(postgrest::Builder) -> postgrest::Builder,
    ) -> Result<Vec<T>> {
        let query = self.with_tenant_filter(refine, self.store.from(&self.table).select(columns));
        let what = format!("reading {}", self.table);
        self.store.call(&what, Idempotent::Yes, query).await
    }

    /// Every row of the organization, `columns` of each.
    pub async fn list<T: DeserializeOwned>(&self, columns: &str) -> Result<Vec<T>> {
        self.fetch(columns, |q| q).await
    }

    /// Inserts `rows`, each stamped with the organization; returns the
    /// inserted rows. A row naming another organization is
    /// `PermissionDenied` and nothing is sent.
    pub async fn insert<T: Serialize, R: DeserializeOwned>(&self, rows: &[T]) -> Result<Vec<R>> {
        let body = self.stamp_all(rows)?;
        let request = self.store.from(&self.table).insert(body);
        let what = format!("inserting into {}", self.table);
        self.store.call(&what, Idempotent::No, request).await
    }

    /// Inserts or merges `rows` on the unique columns `on_conflict`, each
    /// stamped with the organization. A row naming another organization is
    /// `PermissionDenied` and nothing is sent. A conflict with another
    /// organization's row is refused by the database: tables adopted with
    /// `tenancy.adopt_table` never let a row change organization.
    pub async fn upsert<T: Serialize, R: DeserializeOwned>(
        &self,
        rows: &[T],
        on_conflict: &str,
    ) -> Result<Vec<R>> {
        let body = self.stamp_all(rows)?;
        let request = self
            .store
            .from(&self.table)
            .upsert(body)
            .on_conflict(on_conflict);
        let what = format!("upserting into {}", self.table);
        self.store.call(&what, Idempotent::Yes, request).await
    }

    /// Applies `patch` to the organization's rows that `filter` selects
    /// (`|q| q.eq("id", "7")`); returns the updated rows. A patch that
    /// would move rows to another organization is `PermissionDenied` and
    /// nothing is sent.
    pub async fn update<T: Serialize, R: DeserializeOwned>(
        &self,
        filter: impl FnOnce(postgrest::Builder) -> postgrest::Builder,
        patch: &T,
    ) -> Result<Vec<R>> {
        let patch = self.stamp(to_value(patch)?, false)?;
        let request = self
            .with_tenant_filter(filter, self.store.from(&self.table))
            .update(patch.to_string());
        let what = format!("updating {}", self.table);
        self.store.call(&what, Idempotent::No, request).await
    }

    /// Deletes the organization's rows that `filter` selects; returns them.
    pub async fn delete<R: DeserializeOwned>(
        &self,
        filter: impl FnOnce(postgrest::Builder) -> postgrest::Builder,
    ) -> Result<Vec<R>> {
        let request = self
            .with_tenant_filter(filter, self.store.from(&self.table))
            .delete();
        let what = format!("deleting from {}", self.table);
        self.store.call(&what, Idempotent::No, request).await
    }

    fn stamp_all<T: Serialize>(&self, rows: &[T]) -> Result<String> {
        let rows = rows
            .iter()
            .map(|row| self.stamp(to_value(row)?, true))
            .collect::<Result<Vec<Value>>>()?;
        Ok(Value::Array(rows).to_string())
    }

    /// Checks the tenant column of one row or patch: absent or null becomes
    /// the organization (for inserts); the organization itself passes;
    /// anything else is refused.
    fn stamp(&self, mut row: Value, insert: bool) -> Result<Value> {
        let org = self.org.to_string();
        let Value::Object(fields) = &mut row else {
            return Err(Error::invalid_input(
                "row",
                format!("a row of {} must serialize to a JSON object", self.table),
            ));
        };
        match fields.get(&self.column) {
            None | Some(Value::Null) if insert => {
                fields.insert(self.column.clone(), Value::String(org));
            }
            None => {}
            Some(Value::String(named)) if named.eq_ignore_ascii_case(&org) => {}
            Some(other) => {
                return Err(Error::permission_denied(format!(
                    "a row for {} names {} = {other} but the active organization is {org}; \
                         nothing was sent",
                    self.table, self.column
                )));
            }
        }
        Ok(row)
    }
}

fn to_value<T: Serialize>(row: &T) -> Result<Value> {
    serde_json::to_value(row)
        .map_err(|e| Error::invalid_input("row", "does not serialize to JSON").with_source(e))
}
