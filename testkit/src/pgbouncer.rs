//! PgBouncer in front of a private PostgreSQL cluster, in transaction
//! mode, as Supabase's pooler (Supavisor, port 6543) is: every transaction
//! may run on another server connection, so nothing may depend on session
//! state or named prepared statements.
//!
//! [`PgBouncer::start`] writes a config and an auth file into a temporary
//! directory and runs `pgbouncer` on a free 127.0.0.1 port (no unix
//! socket), forwarding every database to the cluster. [`PgBouncer::shared`]
//! starts one per process in front of [`Cluster::shared`]. The settings
//! (see [`PgBouncer::config`] for the file itself):
//!
//! - `pool_mode = transaction`, `default_pool_size = 4` server connections
//!   per database and user, `max_client_conn = 1000`;
//! - `auth_type = scram-sha-256` for clients, with the cluster's
//!   `postgres` password in plain text in the `auth_file`, which PgBouncer
//!   needs to log in to the cluster with SCRAM (the cluster stores
//!   SCRAM verifiers);
//! - `ignore_startup_parameters = extra_float_digits`, which some clients
//!   send and PgBouncer refuses otherwise;
//! - `server_login_retry = 1` (seconds): after the server was unreachable,
//!   PgBouncer tries again a second later instead of refusing clients for
//!   the default 15 s, so that restart tests recover quickly;
//!   `query_wait_timeout = 30`.
//!
//! PgBouncer refuses to run as root: then it runs as the cluster's user
//! ([`Cluster::run_as`]) through its own `-u` switch, so the process we
//! start is PgBouncer itself and its pid is the one we signal. A watchdog
//! process stops it (by the pid in its pidfile) and removes the directory
//! once the test process has exited; dropping a [`PgBouncer`] stops it at
//! once. [`stop`](PgBouncer::stop) and [`start_again`](PgBouncer::start_again)
//! restart it on the same port, for fault tests.
//!
//! The binary is `$TENANCY_PGBOUNCER_BIN` when set and not empty, else
//! `/usr/sbin/pgbouncer` (Debian's `pgbouncer` package, which
//! `scripts/test` installs). The system service that package may run
//! (port 6432, `/etc/pgbouncer`) is never used. Without the binary the
//! harness prints a `SKIPPED` line and returns `None`, or panics when
//! `TENANCY_REQUIRE_LIVE` is set (non-empty, not `0`).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::pg::Cluster;

/// Where Debian's `pgbouncer` package puts the binary.
pub const DEFAULT_BIN: &str = "/usr/sbin/pgbouncer";

/// Server connections per (database, user) pair.
pub const DEFAULT_POOL_SIZE: usize = 4;

/// How long a stopped PgBouncer gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a starting PgBouncer gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running PgBouncer. Dropping it stops the process and deletes its
/// files.
#[derive(Debug)]
pub struct PgBouncer {
    root: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<String>,
    /// The running process, `None` between [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again).
    process: Mutex<Option<Child>>,
    watchdog: Option<Child>,
}

static SHARED: OnceLock<Option<PgBouncer>> = OnceLock::new();

/// Where the PgBouncer binary is, or why it is not usable.
pub fn find_bin() -> Result<PathBuf, String> {
    match std::env::var_os("TENANCY_PGBOUNCER_BIN").filter(|p| !p.is_empty()) {
        Some(path) => crate::executable(path.into(), "TENANCY_PGBOUNCER_BIN"),
        None => crate::executable(
            PathBuf::from(DEFAULT_BIN),
            "Debian's pgbouncer package; install it (scripts/test does) \
             or set TENANCY_PGBOUNCER_BIN",
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

impl PgBouncer {
    /// The PgBouncer shared by every test of this process, in front of
    /// [`Cluster::shared`], started on first use; `None` (after a SKIPPED
    /// line) when PgBouncer or PostgreSQL cannot run here.
    pub fn shared() -> Option<&'static PgBouncer> {
        SHARED
            .get_or_init(|| PgBouncer::start(Cluster::shared()?))
            .as_ref()
    }

    /// Starts a PgBouncer in front of `cluster`; `None` (after a SKIPPED
    /// line) when the binary is missing and live tests are not required.
    /// Panics if it does not come up.
    pub fn start(cluster: &Cluster) -> Option<PgBouncer> {
        let bin = match find_bin() {
            Ok(bin) => bin,
            Err(why) => {
                crate::skip(
                    "live PgBouncer tests",
                    &format!("no usable pgbouncer: {why}"),
                );
                return None;
            }
        };
        // The other user must be able to enter the directory: /tmp, as
        // for the cluster.
        let base = if cluster.run_as().is_some() {
            PathBuf::from("/tmp")
        } else {
            crate::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("tenancy-pgbouncer-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("create PgBouncer's directory in {}: {e}", base.display()));
        let mut bouncer = PgBouncer {
            root: Some(root),
            bin,
            port: 0,
            password: cluster.password().to_owned(),
            run_as: cluster.run_as().map(str::to_owned),
            process: Mutex::new(None),
            watchdog: None,
        };
        let mut last_error = String::new();
        for _ in 0..3 {
            bouncer.port = free_port();
            bouncer.write_files(cluster.port());
            match bouncer.spawn() {
                Ok(child) => {
                    *bouncer.process() = Some(child);
                    bouncer.spawn_watchdog();
                    return Some(bouncer);
                }
                Err(e) => last_error = e,
            }
        }
        panic!("pgbouncer did not start three times:\n{last_error}");
    }

    fn root(&self) -> &Path {
        self.root.as_ref().expect("PgBouncer's directory").path()
    }

    /// The process slot; a test that panicked holding it left it usable.
    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config_path(&self) -> PathBuf {
        self.root().join("pgbouncer.ini")
    }

    fn pidfile(&self) -> PathBuf {
        self.root().join("pgbouncer.pid")
    }

    fn log_path(&self) -> PathBuf {
        self.root().join("pgbouncer.log")
    }

    /// The config file's text, for a cluster on `server_port`.
    fn config_text(&self, server_port: u16) -> String {
        let dir = self.root().display();
        format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {DEFAULT_POOL_SIZE}\n\
             max_client_conn = 1000\n\
             ignore_startup_parameters = extra_float_digits\n\
             server_login_retry = 1\n\
             server_connect_timeout = 5\n\
             query_wait_timeout = 30\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            port = self.port,
        )
    }

    fn write_files(&self, server_port: u16) {
        fs::write(self.config_path(), self.config_text(server_port)).expect("write pgbouncer.ini");
        fs::write(
            self.root().join("userlist.txt"),
            format!("\"postgres\" \"{}\"\n", self.password),
        )
        .expect("write userlist.txt");
        if let Some(user) = &self.run_as {
            let out = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(self.root())
                .output()
                .expect("run chown");
            assert!(
                out.status.success(),
                "chown PgBouncer's directory: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs pgbouncer on [`Self::port`] and waits until it accepts
    /// connections; its output and log when it does not.
    fn spawn(&self) -> Result<Child, String> {
        // A pidfile left by a killed process would make PgBouncer refuse
        // to start if its pid were reused; ours is known to be gone.
        let _ = fs::remove_file(self.pidfile());
        let stderr_path = self.root().join("stderr.log");
        let stderr = fs::File::create(&stderr_path).expect("create PgBouncer's stderr file");
        let mut command = Command::new(&self.bin);
        if let Some(user) = &self.run_as {
            command.args(["-u", user]);
        }
        let mut child = command
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("run {}: {e}", self.bin.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "pgbouncer exited at start ({status}):\n{}\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default(),
                    self.log()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "pgbouncer did not listen on 127.0.0.1:{} within {START_TIMEOUT:?}:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Stops PgBouncer and removes its directory after this process
    /// exits, for instances that are never dropped (statics). It reads the
    /// pid from the pidfile, so it follows restarts, and signals it only
    /// if that pid is still a pgbouncer.
    fn spawn_watchdog(&mut self) {
        let cleanup = format!(
            "p=$(cat '{pidfile}' 2>/dev/null); \
             if [ -n \"$p\" ] && [ \"$(cat /proc/$p/comm 2>/dev/null)\" = pgbouncer ]; then \
             kill -TERM \"$p\"; sleep 1; fi; \
             rm -rf '{root}'",
            pidfile = self.pidfile().display(),
            root = self.root().display(),
        );
        self.watchdog = Some(crate::spawn_watchdog(&cleanup, "PgBouncer"));
    }

    /// PgBouncer's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running process's pid; `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.process().as_ref().map(Child::id)
    }

    /// A connection string for the superuser `postgres` to `db`, through
    /// PgBouncer.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={} dbname={db}",
            self.port, self.password
        )
    }

    /// The config file PgBouncer runs with.
    pub fn config(&self) -> String {
        fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    /// PgBouncer's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops PgBouncer: SIGTERM (in 1.18 an immediate shutdown: client
    /// connections and transactions in flight are cut), then SIGKILL if it
    /// has not exited within a few seconds. Nothing listens on its port
    /// until [`start_again`](Self::start_again). Does nothing when stopped.
    pub fn stop(&self) {
        let Some(mut child) = self.process().take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts PgBouncer again after [`stop`](Self::stop), on the same port,
    /// and waits until it accepts connections. Does nothing when running.
    pub fn start_again(&self) {
        let mut process = self.process();
        if process.is_some() {
            return;
        }
        match self.spawn() {
            Ok(child) => *process = Some(child),
            Err(e) => panic!("pgbouncer did not start again on port {}:\n{e}", self.port),
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // TempDir's drop removes the files.
        self.root.take();
    }
}
