//! The PostgREST stand-in (`postrust`) for live tests and benches.
//!
//! [`Server::shared`] starts one server per process against the shared
//! private cluster ([`crate::pg::Cluster::shared`]), on a free 127.0.0.1
//! port, with a random HS256 secret. Before it starts, the harness adds the
//! test fixtures it serves (see [`TEST_FIXTURES_SQL`]). A watchdog process
//! kills the server (by pid) once the test process has exited, like the
//! cluster's.
//!
//! The binary is `$TENANCY_POSTGREST_BIN` when set and not empty, else
//! `postrust-3.1.0/bin/postrust` in the tools cache ([`crate::cache_dir`]).
//! Without it, when it is not executable, or without PostgreSQL, the
//! harness prints a `SKIPPED` line saying why and returns `None`, or panics
//! when `TENANCY_REQUIRE_LIVE` is set (non-empty, not `0`).
//!
//! # How the stand-in differs from PostgREST
//!
//! The one list of the stand-in's quirks (`postrust` 3.1.0, run with
//! `PGRST_COMPAT_MODE=true`); the crate works with both, and the tests
//! account for these:
//!
//! - It serves at its root, not under `/rest/v1`: the tests set
//!   `SUPABASE_REST_URL` (the builder's `rest_url`). A base with `/rest/v1`
//!   gets PGRST125.
//! - Permission denied (42501) comes back as 401, not 403: match on the
//!   PostgREST `code` (`SupabaseStore` maps errors by code first).
//! - A JSON `null` RPC argument arrives as an empty string (`22P02 invalid
//!   input syntax for type uuid: ""`): `SupabaseStore` leaves null arguments
//!   out, so the SQL defaults (null) apply — harmless against PostgREST.
//! - RPCs should return `jsonb` or `SETOF <table>` (not `RETURNS TABLE`);
//!   `select=` with casts on a `SETOF` function works.
//! - Object keys in responses come back sorted.
//! - Everything else the crate uses matched PostgREST: embedding
//!   (`organizations(*)`), `on_conflict` with merge-duplicates,
//!   `return=representation` on PATCH and DELETE, and the PGRST116, 202,
//!   205, 301 and 303 error bodies.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header};
use uuid::Uuid;

use crate::pg::{Cluster, DATABASE, connect_url};

/// Test-only SQL applied before the server starts:
///
/// - users appear in `auth.users` on first use: the conformance suite makes
///   up user ids, and on a real project they would be Supabase Auth users.
///   A `before insert` trigger on every table with a user foreign key
///   inserts the missing `auth.users` row;
/// - `public.brands`, a host table adopted with `tenancy.adopt_table`, for
///   the scoped-table tests.
pub const TEST_FIXTURES_SQL: &str = r#"
create schema if not exists tenancy_test;
create or replace function tenancy_test.ensure_user() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_user uuid := (pg_catalog.to_jsonb(new) ->> tg_argv[0])::uuid;
begin
  if v_user is not null then
    insert into auth.users (id, email) values (v_user, v_user::text || '@example.test')
    on conflict do nothing;
  end if;
  return new;
end
$$;
drop trigger if exists aaa_test_ensure_user on public.organizations;
create trigger aaa_test_ensure_user before insert or update on public.organizations
  for each row execute function tenancy_test.ensure_user('owner_user_id');
drop trigger if exists aaa_test_ensure_user on public.user_organizations;
create trigger aaa_test_ensure_user before insert on public.user_organizations
  for each row execute function tenancy_test.ensure_user('user_id');
drop trigger if exists aaa_test_ensure_user on public.usage_limits;
create trigger aaa_test_ensure_user before insert or update on public.usage_limits
  for each row execute function tenancy_test.ensure_user('user_id');

create table if not exists public.brands (
  id bigserial primary key,
  name text not null,
  created_at timestamptz not null default now()
);
select tenancy.adopt_table('public.brands');
"#;

/// The SQL block that follows `<!-- example: <name> -->` in
/// `migrations/README.md`: the documented examples the stand-in serves
/// (`ads`, the host table whose inserts stop at a limit), so the tests run
/// exactly what the documentation shows.
pub fn readme_example(name: &str) -> String {
    let path = crate::pg::migrations_dir().join("README.md");
    let readme =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let marker = format!("<!-- example: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{} has no {marker}", path.display()))
        .1;
    let block = after
        .split_once("```sql\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("no ```sql block after {marker}"))
        .0;
    block.to_owned()
}

/// A running stand-in.
#[derive(Debug)]
pub struct Server {
    url: String,
    secret: String,
    pid: u32,
    /// The server and its watchdog, held, never waited on: the watchdog
    /// stops the server once the test process exits.
    _processes: [Child; 2],
}

static SHARED: OnceLock<Option<Server>> = OnceLock::new();

/// Where the stand-in binary is, or why it is not usable.
pub fn find_bin() -> Result<PathBuf, String> {
    match std::env::var_os("TENANCY_POSTGREST_BIN").filter(|p| !p.is_empty()) {
        Some(path) => crate::executable(path.into(), "TENANCY_POSTGREST_BIN"),
        None => {
            let cache = crate::cache_dir().ok_or(
                "TENANCY_POSTGREST_BIN is not set, and neither is TENANCY_CACHE_DIR or HOME \
                 to find the cached stand-in",
            )?;
            crate::executable(
                cache.join("postrust-3.1.0/bin/postrust"),
                "the cached stand-in; set TENANCY_POSTGREST_BIN or run scripts/test",
            )
        }
    }
}

fn skip(why: &str) -> Option<Server> {
    crate::skip("live PostgREST tests", why);
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A blocking `GET /healthz`; whether it answered 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// Runs SQL as the superuser, on its own thread and runtime (callers may be
/// inside a runtime that is about to end).
pub fn run_sql(cluster: &Cluster, sql: &str) {
    let url = cluster.url(DATABASE);
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let db = connect_url(&url).await;
            db.batch_execute(&sql).await.expect("run SQL");
        });
    })
    .join()
    .expect("SQL thread");
}

impl Server {
    /// The server shared by every test of this process; `None` (after a
    /// SKIPPED line) when PostgreSQL or the binary is missing.
    pub fn shared() -> Option<&'static Server> {
        SHARED.get_or_init(Server::start_shared).as_ref()
    }

    fn start_shared() -> Option<Server> {
        let bin = match find_bin() {
            Ok(bin) => bin,
            Err(why) => return skip(&format!("no usable PostgREST stand-in: {why}")),
        };
        let cluster = Cluster::shared()?;
        run_sql(cluster, TEST_FIXTURES_SQL);
        run_sql(cluster, &readme_example("ads"));
        Some(Server::start(cluster, &bin))
    }

    /// Starts a server against `cluster` (migrated). Panics if it does not
    /// become healthy.
    pub fn start(cluster: &Cluster, bin: &std::path::Path) -> Server {
        let secret = format!("test-secret-{}", Uuid::new_v4().simple());
        let db_url = format!(
            "postgres://authenticator:{}@127.0.0.1:{}/{DATABASE}",
            password_of(cluster),
            cluster.port()
        );
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = crate::temp_dir().join(format!("tenancy-postrust-{port}.log"));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("create the server log {}: {e}", log.display()));
            let mut child = Command::new(bin)
                .env("DATABASE_URL", &db_url)
                .env("PGRST_DB_SCHEMAS", "public")
                .env("PGRST_DB_ANON_ROLE", "anon")
                .env("PGRST_JWT_SECRET", &secret)
                .env("PGRST_SERVER_HOST", "127.0.0.1")
                .env("PGRST_SERVER_PORT", port.to_string())
                .env("PGRST_COMPAT_MODE", "true")
                .env("PGRST_DB_CHANNEL_ENABLED", "true")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut up = false;
            while Instant::now() < deadline {
                if healthy(port) {
                    up = true;
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            if up {
                let pid = child.id();
                let watchdog = spawn_watchdog(pid);
                return Server {
                    url: format!("http://127.0.0.1:{port}"),
                    secret,
                    pid,
                    _processes: [child, watchdog],
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the PostgREST stand-in did not become healthy:\n{last}");
    }

    /// The REST base URL (the stand-in serves at its root).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Signs `claims` with the server's secret.
    pub fn jwt(&self, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .expect("sign a JWT")
    }

    /// The service-role key.
    pub fn service_key(&self) -> String {
        self.jwt(
            serde_json::json!({ "role": "service_role", "iss": "supabase", "exp": far_future() }),
        )
    }

    /// The anon key.
    pub fn anon_key(&self) -> String {
        self.jwt(serde_json::json!({ "role": "anon", "iss": "supabase", "exp": far_future() }))
    }

    /// A user's access token.
    pub fn user_token(&self, user: Uuid) -> String {
        self.jwt(serde_json::json!({
            "sub": user.to_string(),
            "role": "authenticated",
            "aud": "authenticated",
            "exp": far_future(),
        }))
    }
}

fn far_future() -> i64 {
    chrono::Utc::now().timestamp() + 10 * 365 * 24 * 3600
}

/// The cluster's password, read from its authenticator connection string.
fn password_of(cluster: &Cluster) -> String {
    cluster
        .authenticator_url(DATABASE)
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("password=").map(str::to_owned))
        .expect("password in the connection string")
}

/// Kills `pid` once this process has exited.
fn spawn_watchdog(pid: u32) -> Child {
    crate::spawn_watchdog(&format!("kill {pid} 2>/dev/null"), "PostgREST")
}
