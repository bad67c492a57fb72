//! Live-test support for `tenancy`: the real components its tests and
//! benches start themselves, and what they share.
//!
//! - [`pg`]: a private PostgreSQL cluster with the Supabase-like bootstrap
//!   and the migrations applied;
//! - [`postgrest`]: the PostgREST stand-in in front of it;
//! - [`pgbouncer`]: PgBouncer in transaction mode in front of it, as
//!   Supabase's pooler is;
//! - [`fault_proxy`]: an HTTP proxy that injects the faults a real server
//!   will not produce on demand;
//! - [`python`]: Python with supabase-py's PostgREST client, for the
//!   Python example and scripts calling the SQL entry points.
//!
//! Every component is found on the machine or skipped with a loud
//! `SKIPPED` line; with `TENANCY_REQUIRE_LIVE` set (as `.ci/run` does) a
//! missing component is a failure instead. `scripts/test` installs them.

pub mod browser;
pub mod cpu;
pub mod fault_proxy;
pub mod isolation;
pub mod pg;
pub mod pgbouncer;
pub mod postgrest;
pub mod python;
pub mod seed;

use std::path::PathBuf;

/// A slug no other test uses: `prefix`, a hyphen and 12 random hex digits.
pub fn unique_slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Whether a missing live component is a failure (`TENANCY_REQUIRE_LIVE`
/// set, non-empty and not `0`) rather than a skipped test.
pub fn live_required() -> bool {
    std::env::var("TENANCY_REQUIRE_LIVE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where `scripts/test` caches the tools it installs:
/// `TENANCY_CACHE_DIR`, or `~/.cache/tenancy`. `None` with neither that nor
/// `HOME` set (an empty value counts as unset).
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("TENANCY_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => Some(dir.into()),
        _ => std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".cache/tenancy")),
    }
}

/// The directory for the components' scratch files: `TMPDIR` when set and
/// not empty, else `/tmp`.
pub fn temp_dir() -> PathBuf {
    match std::env::var_os("TMPDIR") {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => PathBuf::from("/tmp"),
    }
}

/// `path` when it is a file with an execute bit set; otherwise why not,
/// naming `origin` (where the path came from) and the fix.
pub fn executable(path: PathBuf, origin: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    match path.metadata() {
        Err(e) => Err(format!("{} ({origin}): {e}", path.display())),
        Ok(meta) if !meta.is_file() => Err(format!("{} ({origin}) is not a file", path.display())),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Err(format!(
            "{} ({origin}) is not executable: chmod +x it",
            path.display()
        )),
        Ok(_) => Ok(path),
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| executable(dir.join(program), "PATH").is_ok())
    })
}

/// Skips a live test: prints `SKIPPED: <what> (<why>)` straight to stderr
/// (libtest captures `eprintln!` of passing tests, and this line must be
/// seen), or panics when live components are required.
pub fn skip(what: &str, why: &str) {
    if live_required() {
        panic!("TENANCY_REQUIRE_LIVE is set but {what} cannot run: {why}");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what} ({why})");
}

/// Starts a watchdog: a shell that waits for this test process to exit,
/// then runs `cleanup` (stop a server, remove its directory). Servers the
/// tests start outlive a killed test process otherwise. `what` names it in
/// the panic if `sh` cannot start.
pub(crate) fn spawn_watchdog(cleanup: &str, what: &str) -> std::process::Child {
    let script = format!(
        "trap '' INT HUP; while kill -0 {me} 2>/dev/null; do sleep 1; done; {cleanup}",
        me = std::process::id(),
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the {what} watchdog: {e}"))
}

/// The names of the files in `dir` (none when it cannot be read): what a
/// recorder's spool directory holds.
pub fn spool_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A line on stderr that libtest does not capture: what a live test saw,
/// for whoever runs it.
pub fn log(line: String) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
