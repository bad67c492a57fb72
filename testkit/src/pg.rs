//! A private PostgreSQL cluster for live tests and benches.
//!
//! [`Cluster::start`] runs `initdb` in a temporary directory, starts
//! `postgres` on a free 127.0.0.1 port (its unix socket inside that
//! directory), creates the database [`DATABASE`], and applies the
//! Supabase-like bootstrap (`testkit/fixtures/supabase_bootstrap.sql`) and
//! every file of `migrations/` in lexical order. It never touches a system
//! cluster.
//!
//! Binaries (`initdb`, `pg_ctl`, `postgres`, executable) come from
//! `$TENANCY_PG_BIN` when set and not empty (strictly: nothing else is
//! tried), else the newest `/usr/lib/postgresql/*/bin`. The cluster's
//! directory is made in `$TMPDIR` (else `/tmp`).
//!
//! When running as root (initdb refuses to), the cluster runs as the
//! `postgres` system user (else `nobody`) through `runuser`, in `/tmp`.
//!
//! Without the binaries, without `runuser` or such a user when root, or
//! without a writable temp directory, the harness prints a `SKIPPED` line
//! saying which and returns `None` — or panics with that line when
//! `TENANCY_REQUIRE_LIVE` is set (non-empty, not `0`).
//!
//! [`Cluster::shared`] starts one cluster per process. Statics are never
//! dropped, so a small watchdog process stops the cluster and removes its
//! directory once the test process has exited; a [`Cluster`] that is
//! dropped normally stops itself at once (`pg_ctl stop -m fast`).
//!
//! Acting as a PostgREST request: [`act`] opens a transaction on a
//! connection of the `authenticator` role, `set local role` and sets
//! `request.jwt.claims`, exactly like PostgREST does.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Transaction};
use uuid::Uuid;

/// The database the harness creates, bootstrapped and migrated.
pub const DATABASE: &str = "tenancy";

/// The nil uuid: the org-wide scope in counters and alerts.
pub const NIL: Uuid = Uuid::nil();

/// A running private cluster. Dropping it stops the server and deletes its
/// files.
#[derive(Debug)]
pub struct Cluster {
    root: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<String>,
    watchdog: Option<Child>,
}

static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();

/// The PostgreSQL tools the harness runs.
const TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where the PostgreSQL binaries are, or why none were found.
pub fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("TENANCY_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        for tool in TOOLS {
            crate::executable(dir.join(tool), "from TENANCY_PG_BIN")?;
        }
        return Ok(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            TOOLS
                .iter()
                .all(|tool| crate::executable(bin.join(tool), "").is_ok())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no /usr/lib/postgresql/*/bin with initdb, pg_ctl and postgres; \
         set TENANCY_PG_BIN to a PostgreSQL bin directory"
            .to_owned()
    })
}

/// The directory of `migrations/`.
pub fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

/// The migration files, sorted, as (file name, SQL).
pub fn migrations() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = fs::read_dir(migrations_dir())
        .expect("read migrations/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let sql = fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {name}: {e}"));
            (name, sql)
        })
        .collect()
}

/// The Supabase-like bootstrap SQL.
pub fn bootstrap_sql() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/supabase_bootstrap.sql");
    fs::read_to_string(path).expect("read testkit/fixtures/supabase_bootstrap.sql")
}

/// The shared cluster ([`Cluster::shared`]) with the test fixtures applied
/// once per process ([`crate::postgrest::TEST_FIXTURES_SQL`]: users appear
/// in `auth.users` on first use, as the contract suite makes up user ids),
/// for tests that use a store directly; `None` (after a SKIPPED line) when
/// PostgreSQL cannot run here.
pub async fn shared_with_fixtures() -> Option<&'static Cluster> {
    static FIXTURES: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let cluster = tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("start the cluster")?;
    FIXTURES
        .get_or_init(|| async {
            let db = cluster.superuser().await;
            db.batch_execute(crate::postgrest::TEST_FIXTURES_SQL)
                .await
                .expect("test fixtures");
        })
        .await;
    Some(cluster)
}

/// Applies the bootstrap and then every migration, each in one batch.
pub async fn apply_all(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&bootstrap_sql()).await?;
    for (_, sql) in migrations() {
        client.batch_execute(&sql).await?;
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .args(["-u", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Cluster {
    /// The cluster shared by every test of this process, started on first
    /// use; `None` when PostgreSQL cannot run here (see the module docs).
    pub fn shared() -> Option<&'static Cluster> {
        SHARED.get_or_init(Cluster::start).as_ref()
    }

    /// Starts a new cluster with [`DATABASE`] ready; `None` when PostgreSQL
    /// cannot run here and live tests are not required.
    pub fn start() -> Option<Cluster> {
        let (bin, run_as, root) = match Cluster::prepare() {
            Ok(found) => found,
            Err(why) => {
                crate::skip("live PostgreSQL tests", &why);
                return None;
            }
        };
        let password = Uuid::new_v4().simple().to_string();
        let mut cluster = Cluster {
            root: Some(root),
            bin,
            port: 0,
            password,
            run_as,
            watchdog: None,
        };
        cluster.init();
        cluster.start_server();
        cluster.spawn_watchdog();
        cluster.prepare_database();
        Some(cluster)
    }

    /// The binaries, the user to run them as, and the cluster's directory;
    /// or why the cluster cannot run here.
    fn prepare() -> Result<(PathBuf, Option<String>, tempfile::TempDir), String> {
        let bin = find_bin()?;
        let run_as = if running_as_root() {
            // initdb refuses to run as root.
            if !crate::on_path("runuser") {
                return Err("running as root, PostgreSQL must run as another user \
                     through runuser, which is not on PATH (util-linux)"
                    .to_owned());
            }
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|user| user_exists(user))
                .ok_or("running as root, and `id` finds neither a postgres nor a nobody user")?;
            Some(user.to_owned())
        } else {
            None
        };
        // Root's TMPDIR may be private; /tmp is one the other user can enter.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            crate::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("tenancy-pg-")
            .tempdir_in(&base)
            .map_err(|e| {
                format!(
                    "cannot create the cluster's directory in {}: {e}; \
                     set TMPDIR to a writable directory",
                    base.display()
                )
            })?;
        Ok((bin, run_as, root))
    }

    fn root(&self) -> &Path {
        self.root.as_ref().expect("cluster root").path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// A command running `tool` from the PostgreSQL bin dir, as the
    /// unprivileged user when we are root.
    fn tool(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn init(&self) {
        let pwfile = self.root().join("pwfile");
        fs::File::create(&pwfile)
            .and_then(|mut f| writeln!(f, "{}", self.password))
            .expect("write pwfile");
        if let Some(user) = &self.run_as {
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{user}:"))
                    .arg(self.root()),
                "chown the cluster dir",
            );
        }
        run(
            self.tool("initdb")
                .arg("-D")
                .arg(self.data_dir())
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let _ = fs::remove_file(pwfile);
    }

    fn start_server(&mut self) {
        let mut last_error = String::new();
        for _ in 0..3 {
            self.port = free_port();
            match self.pg_ctl_start() {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
        }
        panic!("pg_ctl start failed three times:\n{last_error}");
    }

    /// `pg_ctl start` on [`Self::port`], waiting until it accepts
    /// connections; the output and the server log when it fails.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.root().display()
        );
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root().join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.root().join("postgres.log")).unwrap_or_default()
        ))
    }

    /// Stops the server as a planned restart does (`pg_ctl stop -m fast`:
    /// open sessions are terminated, transactions in flight roll back),
    /// keeping its files and port, for fault tests. Start it again with
    /// [`start_server_again`](Self::start_server_again). Not for
    /// [`Cluster::shared`], which other tests use at the same time.
    pub fn stop_server(&self) {
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts the server that [`stop_server`](Self::stop_server) stopped,
    /// on the same port (clients and poolers keep their connection
    /// strings), and waits until it accepts connections.
    pub fn start_server_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("pg_ctl start (again, port {}) failed:\n{e}", self.port);
        }
    }

    /// Stops the server and removes the directory after this process exits,
    /// for clusters that are never dropped (statics).
    fn spawn_watchdog(&mut self) {
        let runas = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- "),
            None => String::new(),
        };
        let cleanup = format!(
            "if [ -f '{data}/postmaster.pid' ]; then {runas}'{pg_ctl}' -D '{data}' -m immediate stop; fi; \
             rm -rf '{root}'",
            data = self.data_dir().display(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            root = self.root().display(),
        );
        self.watchdog = Some(crate::spawn_watchdog(&cleanup, "cluster"));
    }

    fn prepare_database(&self) {
        let url = self.url("postgres");
        let app_url = self.url(DATABASE);
        let password = self.password.clone();
        // Own thread and runtime: callers may already be inside a runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let admin = connect_url(&url).await;
                admin
                    .batch_execute(&format!("create database {DATABASE}"))
                    .await
                    .expect("create database");
                let db = connect_url(&app_url).await;
                apply_all(&db)
                    .await
                    .expect("apply bootstrap and migrations");
                db.batch_execute(&format!("alter role authenticator password '{password}'"))
                    .await
                    .expect("set the authenticator password");
            });
        })
        .join()
        .expect("prepare the database");
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of the superuser `postgres` and of `authenticator`.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The system user the server runs as when the tests run as root
    /// (`postgres`, else `nobody`); `None` when it runs as the current user.
    /// Other components started beside it (PgBouncer) run as the same one.
    pub fn run_as(&self) -> Option<&str> {
        self.run_as.as_deref()
    }

    /// Turns TLS on (`ssl = on`, reloaded): a throwaway CA and a server
    /// certificate for `127.0.0.1` signed by it, made with `openssl` in the
    /// cluster's directory. Returns the CA certificate (PEM) a client must
    /// trust. Plain connections keep working. For a private cluster: the
    /// shared one stays plain.
    pub async fn enable_tls(&self) -> String {
        let dir = self.root().join("tls");
        fs::create_dir_all(&dir).expect("create the TLS dir");
        let ext = dir.join("server.ext");
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions");
        let openssl = |args: &[&str], what: &str| {
            run(Command::new("openssl").current_dir(&dir).args(args), what);
        };
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=tenancy test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
            "openssl: the CA",
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            "openssl: the server key",
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
            "openssl: the server certificate",
        );
        if let Some(user) = &self.run_as {
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{user}:"))
                    .arg(&dir),
                "chown the TLS dir",
            );
        }
        fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))
            .expect("chmod the server key");
        let admin = self.superuser().await;
        // One statement each: ALTER SYSTEM refuses a multi-statement batch
        // (an implicit transaction).
        for statement in [
            format!(
                "alter system set ssl_cert_file = '{}'",
                dir.join("server.crt").display()
            ),
            format!(
                "alter system set ssl_key_file = '{}'",
                dir.join("server.key").display()
            ),
            "alter system set ssl = on".to_owned(),
            "select pg_reload_conf()".to_owned(),
        ] {
            admin.batch_execute(&statement).await.expect("turn TLS on");
        }
        // The reload is asynchronous: wait until new connections see it.
        for _ in 0..100 {
            let on: String = connect_url(&self.url(DATABASE))
                .await
                .query_one("show ssl", &[])
                .await
                .expect("show ssl")
                .get(0);
            if on == "on" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fs::read_to_string(dir.join("ca.crt")).expect("read the CA")
    }

    /// A connection string for the superuser `postgres` to `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={} dbname={db}",
            self.port, self.password
        )
    }

    /// A connection string for the `authenticator` role (what PostgREST
    /// logs in as) to `db`.
    pub fn authenticator_url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=authenticator password={} dbname={db}",
            self.port, self.password
        )
    }

    /// A superuser connection to [`DATABASE`], driven on the current runtime.
    pub async fn superuser(&self) -> Client {
        connect_url(&self.url(DATABASE)).await
    }

    /// An `authenticator` connection to [`DATABASE`], for [`act`].
    pub async fn authenticator(&self) -> Client {
        connect_url(&self.authenticator_url(DATABASE)).await
    }

    /// Creates an empty database named `name` (no bootstrap, no migrations)
    /// and returns a superuser connection to it.
    pub async fn create_database(&self, name: &str) -> Client {
        let admin = connect_url(&self.url("postgres")).await;
        admin
            .batch_execute(&format!("create database \"{name}\""))
            .await
            .expect("create database");
        connect_url(&self.url(name)).await
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.root().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // TempDir's drop removes the files.
        self.root.take();
    }
}

/// Connects to `url` and drives the connection on the current runtime.
pub async fn connect_url(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Who a request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The anon key, no user.
    Anon,
    /// A user JWT: role `authenticated`, `sub` = the user.
    User(Uuid),
    /// The service-role key.
    Service,
}

impl Actor {
    /// The database role PostgREST switches to.
    pub fn role(&self) -> &'static str {
        match self {
            Actor::Anon => "anon",
            Actor::User(_) => "authenticated",
            Actor::Service => "service_role",
        }
    }

    /// The JWT claims PostgREST puts in `request.jwt.claims`.
    pub fn claims(&self) -> serde_json::Value {
        match self {
            Actor::Anon => serde_json::json!({ "role": "anon" }),
            Actor::User(user) => serde_json::json!({
                "sub": user.to_string(),
                "role": "authenticated",
                "aud": "authenticated",
            }),
            Actor::Service => serde_json::json!({ "role": "service_role" }),
        }
    }
}

/// Runs `f` in a transaction acting as `actor`, like one PostgREST request:
/// `set local role …` and `set_config('request.jwt.claims', …, true)`.
/// Commits when `f` succeeds, rolls back when it fails, and returns its
/// result (the database error, with its SQLSTATE, on failure).
pub async fn act<T, F>(client: &mut Client, actor: Actor, f: F) -> Result<T, tokio_postgres::Error>
where
    F: AsyncFnOnce(&Transaction<'_>) -> Result<T, tokio_postgres::Error>,
{
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("set local role {}", actor.role()))
        .await?;
    tx.execute(
        "select set_config('request.jwt.claims', $1, true)",
        &[&actor.claims().to_string()],
    )
    .await?;
    match f(&tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Inserts a user into `auth.users` (as the superuser) and returns its id.
pub async fn create_user(client: &Client) -> Uuid {
    let id = Uuid::new_v4();
    client
        .execute(
            "insert into auth.users (id, email) values ($1, $2)",
            &[&id, &format!("{id}@example.test")],
        )
        .await
        .expect("insert auth.users");
    id
}
