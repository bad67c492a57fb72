//! The SQL this crate needs, embedded: every file of `migrations/` with the
//! schema version it brings, the version this crate expects, and what a
//! database at an older version must apply.
//!
//! The model (the whole of it is in `migrations/README.md`):
//!
//! - **Versioned and append-only.** The six `20260301…` files are the
//!   baseline, schema version 1. Every later file is one capability (its
//!   tables, RLS and functions together), brings the next version, and
//!   records it in `tenancy.schema_migrations` in the transaction that
//!   applies it. A released file is never edited: an upgrade is a new file.
//! - **Checked at start-up.** `PgStore::check_schema` (feature `postgres`)
//!   and `SupabaseStore::check_schema` (feature `supabase`) refuse a
//!   database whose version is not [`SCHEMA_VERSION`], with a
//!   [`Config`](crate::error::ErrorKind::Config) error naming both versions
//!   and the files to apply.
//! - **Applied** by `PgStore::migrate` (feature `postgres`; what is
//!   missing, in one transaction, under a lock), or by the Supabase CLI: [`write_missing`] copies the missing files into a
//!   project's `supabase/migrations/`, named after its latest migration,
//!   for `supabase db push`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The schema version this crate's code expects.
pub const SCHEMA_VERSION: u32 = 14;

/// One migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its name in `migrations/`, such as `20261206000200_tenancy_store_functions.sql`.
    pub file: &'static str,
    /// The schema version a database has once this file (and every one
    /// before it) is applied. The baseline's six files all bring version 1.
    pub version: u32,
    /// The SQL.
    pub sql: &'static str,
}

impl Migration {
    /// The file's name without its timestamp and extension
    /// (`tenancy_store_functions`).
    pub fn name(&self) -> &'static str {
        let stem = self.file.strip_suffix(".sql").unwrap_or(self.file);
        stem.split_once('_').map_or(stem, |(_, name)| name)
    }
}

macro_rules! migrations {
    ($($version:literal $file:literal),* $(,)?) => {
        &[$(Migration {
            file: $file,
            version: $version,
            sql: include_str!(concat!("../migrations/", $file)),
        }),*]
    };
}

/// Every migration, in the order to apply them.
pub const MIGRATIONS: &[Migration] = migrations![
    1 "20260301000100_tenancy_tables.sql",
    1 "20260301000200_tenancy_helpers.sql",
    1 "20260301000300_tenancy_triggers.sql",
    1 "20260301000400_tenancy_rls.sql",
    1 "20260301000500_tenancy_rpc.sql",
    1 "20260301000600_tenancy_adopt_table.sql",
    2 "20261206000100_tenancy_schema_version.sql",
    3 "20261206000200_tenancy_store_functions.sql",
    4 "20261206000300_tenancy_grants_and_domains.sql",
    5 "20261206000400_tenancy_sql_api.sql",
    6 "20261206000500_tenancy_user_directory.sql",
    7 "20261206000600_tenancy_reconciliation.sql",
    8 "20261206000700_tenancy_invitations.sql",
    9 "20261206000800_tenancy_verified_domains.sql",
    10 "20261206000900_tenancy_audit_log.sql",
    11 "20261206001000_tenancy_rate_limits.sql",
    12 "20261206001100_tenancy_budget_leases.sql",
    13 "20261206001200_tenancy_plans.sql",
    14 "20261206001300_tenancy_usage_history.sql",
];

/// The migrations a database at schema version `applied` lacks (0: none
/// applied), in order.
pub fn missing(applied: u32) -> impl Iterator<Item = &'static Migration> {
    MIGRATIONS.iter().filter(move |m| m.version > applied)
}

/// The [`Config`](crate::error::ErrorKind::Config) error for a database at schema
/// version `found` (`None`: no version recorded, the baseline or nothing),
/// or `Ok` when it is [`SCHEMA_VERSION`].
pub fn check_version(found: Option<u32>) -> Result<()> {
    match found {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(newer) if newer > SCHEMA_VERSION => Err(Error::config(format!(
            "the database's tenancy schema is version {newer}, newer than this crate's \
             {SCHEMA_VERSION}: upgrade the tenancy crate"
        ))),
        Some(older) => {
            let files: Vec<&str> = missing(older).map(|m| m.file).collect();
            Err(Error::config(format!(
                "the database's tenancy schema is version {older}, this crate needs \
                 {SCHEMA_VERSION}: apply {} (PgStore::migrate, or \
                 tenancy::migrations::write_missing and `supabase db push`)",
                files.join(", ")
            )))
        }
        None => {
            // Without the version table the database has the baseline
            // (version 1) or none of the crate's tables; which, only it knows.
            let after_baseline: Vec<&str> = missing(1).map(|m| m.file).collect();
            Err(Error::config(format!(
                "the database records no tenancy schema version (version 1 or older), this \
                 crate needs {SCHEMA_VERSION}: apply {} after the baseline, or every file \
                 from {} on a database without the crate's tables (PgStore::migrate does \
                 either, or tenancy::migrations::write_missing and `supabase db push`)",
                after_baseline.join(", "),
                MIGRATIONS[0].file,
            )))
        }
    }
}

/// Writes the migrations a database at schema version `applied` lacks into
/// `dir` (a Supabase project's `supabase/migrations/`), each named
/// `<timestamp>_<name>.sql` with timestamps after the latest migration
/// already in `dir` (and after `now`, UTC, `YYYYMMDDHHMMSS`), so that the
/// Supabase CLI applies them in order. Returns the paths written. Files
/// already there are left alone; a crate file whose name is already in
/// `dir` (with any timestamp) is not written again.
pub fn write_missing(
    dir: &Path,
    applied: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<PathBuf>> {
    let io = |what: String| move |e: std::io::Error| Error::config(what).with_source(e);
    let mut latest: u64 = now.format("%Y%m%d%H%M%S").to_string().parse().unwrap_or(0);
    let mut present = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))? {
        let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((stamp, rest)) = name.split_once('_') {
            if let Ok(stamp) = stamp.parse::<u64>() {
                latest = latest.max(stamp);
            }
            present.push(rest.to_owned());
        }
    }
    let mut written = Vec::new();
    for migration in missing(applied) {
        let name = format!("{}.sql", migration.name());
        if present.contains(&name) {
            continue;
        }
        latest = latest.checked_add(1).ok_or_else(|| {
            Error::config(format!(
                "{} holds a migration dated at the end of time; name the files by hand",
                dir.display()
            ))
        })?;
        let path = dir.join(format!("{latest}_{name}"));
        std::fs::write(&path, migration.sql).map_err(io(format!("writing {}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is exactly the directory, in order, and every file
    /// after the baseline records the version it is listed with.
    #[test]
    fn the_list_is_the_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(files, listed);
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version <= w[1].version));
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        for m in MIGRATIONS.iter().filter(|m| m.version > 1) {
            let records = format!("({}, '{}')", m.version, m.file.trim_end_matches(".sql"));
            let compact: String = m.sql.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                compact.contains(&records),
                "{} must record {records}",
                m.file
            );
        }
    }

    #[test]
    fn a_stale_or_newer_schema_names_the_fix() {
        assert!(check_version(Some(SCHEMA_VERSION)).is_ok());
        let old = check_version(None).unwrap_err();
        assert_eq!(old.kind(), crate::error::ErrorKind::Config);
        assert!(old.message().contains("version 1 or older"), "{old}");
        assert!(
            old.message().contains("20260301000100_tenancy_tables.sql"),
            "names the baseline for an empty database: {old}"
        );
        assert!(
            old.message()
                .contains("20261206000100_tenancy_schema_version.sql"),
            "{old}"
        );
        let two = check_version(Some(2)).unwrap_err();
        assert!(
            two.message()
                .contains(&format!("version 2, this crate needs {SCHEMA_VERSION}")),
            "{two}"
        );
        assert!(!two.message().contains("schema_version.sql"), "{two}");
        let newer = check_version(Some(SCHEMA_VERSION + 1)).unwrap_err();
        assert!(
            newer.message().contains("upgrade the tenancy crate"),
            "{newer}"
        );
    }

    #[test]
    fn missing_files_are_written_after_the_latest() {
        let dir = std::env::temp_dir().join(format!("tenancy-mig-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("29990101000000_host.sql"), "select 1;").unwrap();
        let now = chrono::Utc::now();
        let written = write_missing(&dir, 2, now).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "29990101000001_tenancy_store_functions.sql",
                "29990101000002_tenancy_grants_and_domains.sql",
                "29990101000003_tenancy_sql_api.sql",
                "29990101000004_tenancy_user_directory.sql",
                "29990101000005_tenancy_reconciliation.sql",
                "29990101000006_tenancy_invitations.sql",
                "29990101000007_tenancy_verified_domains.sql",
                "29990101000008_tenancy_audit_log.sql",
                "29990101000009_tenancy_rate_limits.sql",
                "29990101000010_tenancy_budget_leases.sql",
                "29990101000011_tenancy_plans.sql",
                "29990101000012_tenancy_usage_history.sql",
            ]
        );
        assert!(
            write_missing(&dir, 2, now).unwrap().is_empty(),
            "written once"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // A migration dated at the end of time: a Config error, no panic.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}_host.sql", u64::MAX)), "select 1;").unwrap();
        let err = write_missing(&dir, 2, now).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Config);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
