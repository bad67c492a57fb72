//! Applying the embedded migrations and checking the schema version.

use tokio_postgres::types::Type;

use super::PgStore;
use super::call::from_postgres_error;
use crate::error::Result;
use crate::migrations::{self, SCHEMA_VERSION};

/// The transaction-level advisory lock `migrate` holds, so two instances
/// starting at once apply the migrations one after the other.
const MIGRATION_LOCK: i64 = 0x7465_6e61_6e63_7901;

/// Which of the version table and the baseline's tables exist.
const TABLES: &str = "select pg_catalog.to_regclass('tenancy.schema_migrations') is not null, \
    pg_catalog.to_regclass('public.usage_events') is not null";

/// The highest version recorded.
const VERSION: &str = "select max(version) from tenancy.schema_migrations";

impl PgStore {
    /// Applies the migrations this database lacks, in one transaction
    /// under an advisory lock (safe when several instances start at once;
    /// works through a transaction-mode pooler), and returns the schema
    /// version it had before. Needs the Supabase roles and `auth` schema
    /// (any Supabase project has them) and a role that may create them:
    /// Supabase's `postgres`. `Config` if the database is newer than the
    /// crate.
    pub async fn migrate(&self) -> Result<u32> {
        let what = "applying the tenancy migrations";
        let mut client = self.connection(what).await?;
        let fail = |e| from_postgres_error(e, what);
        let tx = client.transaction().await.map_err(fail)?;
        tx.query_typed(
            "select pg_catalog.pg_advisory_xact_lock($1)",
            &[(&MIGRATION_LOCK, Type::INT8)],
        )
        .await
        .map_err(fail)?;
        let tables = tx.query_typed(TABLES, &[]).await.map_err(fail)?;
        let (versioned, baseline) = tables
            .first()
            .map_or((false, false), |r| (r.get(0), r.get(1)));
        let before = if versioned {
            let recorded: Option<i32> = tx
                .query_typed(VERSION, &[])
                .await
                .map_err(fail)?
                .first()
                .and_then(|row| row.get(0));
            u32::try_from(recorded.unwrap_or(1)).unwrap_or(0)
        } else {
            u32::from(baseline)
        };
        if before > SCHEMA_VERSION {
            return migrations::check_version(Some(before)).map(|()| before);
        }
        for migration in migrations::missing(before) {
            tx.batch_execute(migration.sql)
                .await
                .map_err(|e| from_postgres_error(e, &format!("{what}: {}", migration.file)))?;
        }
        tx.commit().await.map_err(fail)?;
        self.forget_functions();
        Ok(before)
    }

    /// Refuses a database whose tenancy schema version is not the one this
    /// crate needs ([`SCHEMA_VERSION`]): a [`Config`](crate::error::ErrorKind::Config)
    /// error naming both versions and the migration files to apply. Call it
    /// once at start-up (or [`migrate`](Self::migrate)).
    pub async fn check_schema(&self) -> Result<()> {
        crate::sql::Sql(self).check_schema().await
    }
}
