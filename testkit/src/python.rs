//! Python for live tests: `python3` with the packages of
//! `testkit/python/requirements.txt` (supabase-py's PostgREST client,
//! `postgrest`, and its dependencies), to run the Python example
//! (`examples/python/`) and small scripts against the PostgREST stand-in.
//!
//! ```no_run
//! # async fn demo(rest_url: &str) {
//! use tenancy_testkit::python::{Python, example_path};
//! let Some(python) = Python::find() else { return };
//! let out = python
//!     .run_script(&example_path("tenancy_pages.py"), &[("SUPABASE_REST_URL", rest_url)])
//!     .await
//!     .expect("start python3");
//! out.assert_success();
//! for step in out.json_lines() {
//!     println!("{step}");
//! }
//! # }
//! ```
//!
//! What it needs, found or skipped with a `SKIPPED` line (a panic when
//! `TENANCY_REQUIRE_LIVE` is set); `scripts/install-python` installs all of
//! it:
//!
//! - Python 3.11 or newer: `$TENANCY_PYTHON` when set (strictly), else
//!   `python3` on `PATH`;
//! - the packages: `$TENANCY_PYTHON_PATH` when set (strictly: a directory
//!   from which `import postgrest` works), else
//!   `${TENANCY_CACHE_DIR:-~/.cache/tenancy}/python-<tag>/site-packages`,
//!   `<tag>` being the interpreter's (`cpython-311`), installed from the
//!   current `testkit/python/requirements.txt` (a stale install is
//!   reported, not used).
//!
//! A run gets only the variables it is given, plus `PATH`, `HOME`, `LANG`
//! and `TMPDIR` from the test process (a proxy or `SUPABASE_*` variable of
//! the developer's shell must not reach it), `PYTHONPATH` naming the
//! packages (and [`Python::with_import_dir`]'s directories), user site
//! packages off, no bytecode written into the repository, unbuffered
//! output. It is killed at its timeout.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long a script may run before it is killed, unless
/// [`Python::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const WHAT: &str = "live Python tests";

/// The committed requirements the cached packages must come from.
fn requirements_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/requirements.txt")
}

/// The directory of the Python example, `examples/python/`.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python")
}

/// The path of `file` in [`example_dir`].
pub fn example_path(file: &str) -> PathBuf {
    example_dir().join(file)
}

/// `python3` and the packages, found on this machine.
#[derive(Debug, Clone)]
pub struct Python {
    python: PathBuf,
    packages: PathBuf,
    postgrest_version: String,
    import_dirs: Vec<PathBuf>,
    timeout: Duration,
}

/// What a script printed, and how it ended.
#[derive(Debug, Clone)]
pub struct PythonOutput {
    /// How it exited; `None` when it was killed at its timeout.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl PythonOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics, showing everything it printed, unless it exited with 0.
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(self.success(), "the Python script failed: {self}");
    }

    /// Each non-empty line of stdout as JSON; panics, showing the output,
    /// at a line that is not.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line}\n{self}"))
            })
            .collect()
    }
}

impl std::fmt::Display for PythonOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status}")?,
            None => write!(f, "killed at its timeout")?,
        }
        write!(
            f,
            "\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

impl Python {
    /// Finds Python and the packages; `None` after a `SKIPPED` line when
    /// something is missing, or a panic when live tests are required. Looks
    /// once per process.
    pub fn find() -> Option<Python> {
        static FOUND: OnceLock<Result<Python, String>> = OnceLock::new();
        match FOUND.get_or_init(locate) {
            Ok(python) => Some(python.clone()),
            Err(why) => {
                crate::skip(WHAT, &format!("{why}; run scripts/install-python"));
                None
            }
        }
    }

    /// The same Python, killing a script after `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same Python with `dir` on `PYTHONPATH` too (before the
    /// packages): for scripts that import a module there, such as the
    /// example's.
    pub fn with_import_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.import_dirs.push(dir.into());
        self
    }

    /// The interpreter.
    pub fn interpreter(&self) -> &Path {
        &self.python
    }

    /// The directory of the installed packages.
    pub fn packages(&self) -> &Path {
        &self.packages
    }

    /// The version of the `postgrest` package found there.
    pub fn postgrest_version(&self) -> &str {
        &self.postgrest_version
    }

    /// Runs `python3 <script>` with `env` and waits for it, at most the
    /// timeout. An error only when it could not start.
    pub async fn run_script(
        &self,
        script: &Path,
        env: &[(&str, &str)],
    ) -> std::io::Result<PythonOutput> {
        self.run([script.as_os_str()], env).await
    }

    /// Runs `python3 -c <code>` with `env`, like
    /// [`run_script`](Self::run_script).
    pub async fn run_code(
        &self,
        code: &str,
        env: &[(&str, &str)],
    ) -> std::io::Result<PythonOutput> {
        self.run([OsStr::new("-c"), OsStr::new(code)], env).await
    }

    async fn run<'a>(
        &self,
        args: impl IntoIterator<Item = &'a OsStr>,
        env: &[(&str, &str)],
    ) -> std::io::Result<PythonOutput> {
        let python_path = std::env::join_paths(self.import_dirs.iter().chain([&self.packages]))
            .map_err(std::io::Error::other)?;
        let mut command = tokio::process::Command::new(&self.python);
        command.args(args).env_clear();
        for inherited in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command
            .env("PYTHONPATH", python_path)
            .env("PYTHONNOUSERSITE", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn()?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => {
                let output = output?;
                Ok(PythonOutput {
                    status: Some(output.status),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                })
            }
            // Dropping the future dropped the child: killed, output lost.
            Err(_) => Ok(PythonOutput {
                status: None,
                stdout: String::new(),
                stderr: format!(
                    "(harness: killed after {:.0} s; its output is lost)",
                    self.timeout.as_secs_f64()
                ),
            }),
        }
    }
}

fn locate() -> Result<Python, String> {
    let python = match std::env::var_os("TENANCY_PYTHON").filter(|p| !p.is_empty()) {
        Some(path) => crate::executable(path.into(), "TENANCY_PYTHON")?,
        None => std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("python3"))
                    .find(|p| crate::executable(p.clone(), "PATH").is_ok())
            })
            .ok_or("python3 is not on PATH; set TENANCY_PYTHON")?,
    };
    // The cache tag names the package directory; the version must be 3.11
    // or newer (postgrest needs it).
    let probe = "import sys; print(sys.implementation.cache_tag, sys.version_info >= (3, 11), \
                 sys.version.split()[0])";
    let out = python_output(&python, &["-c", probe], None)?;
    let mut words = out.split_whitespace();
    let (Some(tag), Some(recent), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Err(format!("{} printed {out:?}", python.display()));
    };
    if recent != "True" {
        return Err(format!(
            "{} is Python {version}; the postgrest client needs 3.11 or newer",
            python.display()
        ));
    }
    let packages = match std::env::var_os("TENANCY_PYTHON_PATH").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => cached_packages(tag)?,
    };
    let postgrest_version = python_output(
        &python,
        &["-c", "import postgrest; print(postgrest.__version__)"],
        Some(&packages),
    )
    .map_err(|why| format!("cannot import postgrest from {}: {why}", packages.display()))?;
    Ok(Python {
        python,
        packages,
        postgrest_version,
        import_dirs: Vec::new(),
        timeout: DEFAULT_TIMEOUT,
    })
}

/// The packages `scripts/install-python` installed for interpreter `tag`,
/// if they come from the current requirements.
fn cached_packages(tag: &str) -> Result<PathBuf, String> {
    let cache = crate::cache_dir().ok_or(
        "TENANCY_PYTHON_PATH is not set, and neither is TENANCY_CACHE_DIR or HOME to find \
         the cached packages",
    )?;
    let root = cache.join(format!("python-{tag}"));
    let packages = root.join("site-packages");
    if !packages.join("postgrest").is_dir() {
        return Err(format!("no postgrest package in {}", packages.display()));
    }
    let requirements = std::fs::read(requirements_path())
        .map_err(|e| format!("read testkit/python/requirements.txt: {e}"))?;
    if std::fs::read(root.join("installed-requirements.txt"))
        .ok()
        .as_deref()
        != Some(&requirements[..])
    {
        return Err(format!(
            "the packages in {} were not installed from the current \
             testkit/python/requirements.txt",
            packages.display()
        ));
    }
    Ok(packages)
}

/// What `python args…` printed (trimmed), with `packages` as `PYTHONPATH`;
/// why not, when it could not run or failed.
fn python_output(python: &Path, args: &[&str], packages: Option<&Path>) -> Result<String, String> {
    let mut command = std::process::Command::new(python);
    command
        .args(args)
        .env_remove("PYTHONPATH")
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    if let Some(packages) = packages {
        command.env("PYTHONPATH", packages);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        return Err(format!(
            "{} failed ({}): {last}",
            python.display(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
