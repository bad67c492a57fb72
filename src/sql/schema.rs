//! The schema version the database records, against the crate's.

use serde::Serialize;

use super::{Idempotent, Sql, SqlTransport};
use crate::error::Result;

/// `{version}` of `tenancy_schema_version`.
#[derive(Debug, serde::Deserialize)]
struct SchemaVersion {
    version: Option<u32>,
}

/// `{}`: no arguments (every SQL function that takes none).
#[derive(Debug, Serialize)]
pub(super) struct NoArgs {}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    /// Refuses a database whose schema version is not the crate's
    /// ([`crate::migrations::check_version`]). A database without the
    /// version function is at the baseline or has no migrations at all.
    pub(crate) async fn check_schema(&self) -> Result<()> {
        let found = match self
            .rpc::<SchemaVersion>(
                "tenancy_schema_version",
                "reading the schema version",
                Idempotent::Yes,
                &NoArgs {},
            )
            .await
        {
            Ok(found) => found.version,
            // No such function: the version table's migration is missing.
            // The cause stays the error's source, should it be another.
            Err(e) if e.kind() == crate::error::ErrorKind::Config => {
                return crate::migrations::check_version(None)
                    .map_err(|check| check.with_source(e));
            }
            Err(e) => return Err(e),
        };
        crate::migrations::check_version(found)
    }
}
