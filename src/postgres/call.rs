//! One SQL function call over a pooled connection: the statement built
//! from the function's arguments in `pg_proc`, retries, timeouts, and
//! errors mapped onto kinds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable as _};
use deadpool_postgres::{Object, PoolError};
use tokio_postgres::types::Type;

use super::PgStore;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::sql::{
    Idempotent, SqlCall, SqlError, SqlTransport, sql_capability_impl, sql_store_impls,
};
use crate::store::{
    CommitOutcome, CommitRequest, CounterDrift, CounterValue, HistoryQuery, OrgQuery,
    ReconcileQuery, RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, UsageQuery,
};
use chrono::{DateTime, Utc};

sql_store_impls!(PgStore);

/// A function of the crate's in `public`, as `pg_proc` describes it.
#[derive(Debug, Clone)]
pub(super) struct Function {
    returns_set: bool,
    /// (name, type) of each argument; an unnamed one has an empty name.
    args: Vec<(String, String)>,
}

const FUNCTIONS: &str = "select p.proname::text, p.proretset, \
    coalesce(p.proargnames, '{}')::text[], \
    array(select pg_catalog.format_type(t, null) from unnest(p.proargtypes::oid[]) t)::text[] \
    from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
    where n.nspname = 'public' and p.proname like 'tenancy\\_%'";

pub(super) const SET_CLAIMS: &str = "select pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true)";

/// The audit context's headers (`$2`) for one call in service mode: a
/// materialized CTE setting `request.headers` for the statement, which the
/// call then reads from (`select (<call>) from audit_headers`).
const WITH_HEADERS: &str = "with audit_headers as materialized \
    (select pg_catalog.set_config('request.headers', $2, true) as headers)";

/// The audit context's headers, as PostgREST would set them: the SQL's
/// `tenancy.audit_actor()` reads `request.headers`.
pub(super) const SET_HEADERS: &str = "select pg_catalog.set_config('request.headers', $1, true)";

/// The task's audit context as the JSON of `request.headers`, `None`
/// without one.
pub(super) fn audit_headers() -> Option<String> {
    let headers = crate::model::audit::AuditContext::current().headers();
    if headers.is_empty() {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = headers
        .into_iter()
        .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value)))
        .collect();
    Some(serde_json::Value::Object(object).to_string())
}

/// Whether a failed attempt may be repeated.
#[derive(Debug)]
struct Failure {
    error: Error,
    /// Nothing landed (a refused connection, a serialization failure).
    nothing_landed: bool,
    /// The failure is temporary (the connection, the server).
    temporary: bool,
}

impl Failure {
    fn retryable(&self, idempotent: Idempotent) -> bool {
        self.temporary && (self.nothing_landed || idempotent == Idempotent::Yes)
    }
}

/// The error for a connection the pool could not hand out. Nothing was
/// sent. A refusal by the server at login (a wrong password, an unknown
/// database) maps by its SQLSTATE and is permanent; anything else (refused,
/// timed out, the server restarting) is temporary.
fn from_pool(err: PoolError, what: &str) -> Failure {
    let what = format!("{what}: cannot get a database connection");
    if let PoolError::Backend(backend) = &err
        && let Some(db) = backend.as_db_error()
    {
        let sql = SqlError::new(db.code().code(), db.message());
        let kind = sql.kind();
        let temporary = matches!(kind, ErrorKind::Unavailable | ErrorKind::Conflict);
        return Failure {
            error: Error::new(kind, what).with_source(sql),
            nothing_landed: true,
            temporary,
        };
    }
    Failure {
        error: Error::new(ErrorKind::Unavailable, what).with_source(err),
        nothing_landed: true,
        temporary: true,
    }
}

/// A failure before anything was sent for the call itself (reading the
/// crate's functions): temporary when the database was unreachable.
fn before_sending(error: Error) -> Failure {
    let temporary = error.kind() == ErrorKind::Unavailable;
    Failure {
        error,
        nothing_landed: true,
        temporary,
    }
}

/// The error for a failed statement: a database error by its SQLSTATE,
/// anything else (a closed connection, I/O) as `Unavailable`.
fn from_postgres(err: tokio_postgres::Error, what: &str) -> Failure {
    if let Some(db) = err.as_db_error() {
        let sql = SqlError::new(db.code().code(), db.message())
            .with_constraint(db.constraint().map(str::to_owned))
            .with_detail(db.detail().map(str::to_owned), db.hint().map(str::to_owned));
        let kind = sql.kind();
        let message = match crate::sql::error::schema_hint(sql.code()) {
            Some(hint) => format!("{what}: {hint}"),
            None => what.to_owned(),
        };
        // A serialization failure or deadlock rolled the statement back.
        let nothing_landed = matches!(sql.code(), "40001" | "40P01");
        let temporary = matches!(kind, ErrorKind::Unavailable | ErrorKind::Conflict);
        return Failure {
            error: Error::new(kind, message).with_source(sql),
            nothing_landed,
            temporary,
        };
    }
    Failure {
        error: Error::new(
            ErrorKind::Unavailable,
            format!("{what}: the database connection failed"),
        )
        .with_source(err),
        nothing_landed: false,
        temporary: true,
    }
}

/// The caller's error for a failed statement outside the retry loop.
pub(super) fn from_postgres_error(err: tokio_postgres::Error, what: &str) -> Error {
    from_postgres(err, what).error
}

impl PgStore {
    /// A connection from the pool, for work outside the store calls
    /// (migrations, user transactions); errors as the calls map them.
    pub(super) async fn connection(&self, what: &str) -> Result<Object> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| from_pool(e, what).error)
    }

    /// Forgets the functions read from `pg_proc` (after a migration).
    pub(super) fn forget_functions(&self) {
        *crate::sync::lock(&self.inner.functions) = None;
        crate::sync::lock(&self.inner.statements).clear();
    }

    /// The crate's functions, read from `pg_proc` on first use and again
    /// when `refresh` (a function was missing: the schema may have changed).
    async fn functions(&self, refresh: bool) -> Result<Arc<HashMap<String, Function>>> {
        if !refresh && let Some(known) = crate::sync::lock(&self.inner.functions).clone() {
            return Ok(known);
        }
        let what = "reading the crate's functions";
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| from_pool(e, what).error)?;
        let rows = client
            .query_typed(FUNCTIONS, &[])
            .await
            .map_err(|e| from_postgres(e, what).error)?;
        let mut functions = HashMap::new();
        for row in rows {
            let names: Vec<String> = row.get(2);
            let types: Vec<String> = row.get(3);
            let args = types
                .into_iter()
                .enumerate()
                .map(|(i, ty)| (names.get(i).cloned().unwrap_or_default(), ty))
                .collect();
            functions.insert(
                row.get(0),
                Function {
                    returns_set: row.get(1),
                    args,
                },
            );
        }
        let functions = Arc::new(functions);
        *crate::sync::lock(&self.inner.functions) = Some(Arc::clone(&functions));
        crate::sync::lock(&self.inner.statements).clear();
        Ok(functions)
    }

    /// The statement calling `call.function` with the arguments its JSON
    /// names, taking that JSON as `$1` and answering one text column: the
    /// function's `jsonb`, or its rows as a JSON array.
    async fn statement(&self, call: &SqlCall<'_>) -> Result<Arc<str>> {
        let mut functions = self.functions(false).await?;
        if !functions.contains_key(call.function) {
            functions = self.functions(true).await?;
        }
        let function = functions.get(call.function).ok_or_else(|| {
            Error::config(format!(
                "{}: the function public.{} is missing: apply the crate's migrations \
                 (PgStore::migrate)",
                call.what, call.function
            ))
        })?;
        let unnamed = function.args.len() == 1 && function.args[0].0.is_empty();
        let given: Vec<String> = if unnamed {
            Vec::new()
        } else {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&call.args).map_err(|e| {
                    Error::unexpected(format!("{}: the arguments are not an object", call.what))
                        .with_source(e)
                })?;
            object.into_iter().map(|(k, _)| k).collect()
        };
        let key = format!(
            "{}({}){}",
            call.function,
            given.join(","),
            call.columns.unwrap_or("*")
        );
        if let Some(sql) = crate::sync::lock(&self.inner.statements).get(&key) {
            return Ok(Arc::clone(sql));
        }
        let sql: Arc<str> = build_statement(call, function, unnamed, &given)?.into();
        crate::sync::lock(&self.inner.statements).insert(key, Arc::clone(&sql));
        Ok(sql)
    }

    /// One attempt, within the call timeout: the statement (built on first
    /// use), a connection, the claims in user mode, the statement's answer.
    async fn attempt(&self, call: &SqlCall<'_>) -> Result<Vec<u8>, Failure> {
        let what = call.what;
        let timeout = self.inner.call_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = |nothing_landed| Failure {
            error: Error::new(
                ErrorKind::Unavailable,
                format!("{what}: no answer within {}", DurationText(timeout)),
            ),
            nothing_landed,
            temporary: true,
        };
        let prepare = async {
            let sql = self.statement(call).await.map_err(before_sending)?;
            let client = self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| from_pool(e, what))?;
            Ok::<_, Failure>((sql, client))
        };
        let (sql, mut client) = tokio::time::timeout_at(deadline, prepare)
            .await
            .map_err(|_| timed_out(true))??;
        match tokio::time::timeout_at(deadline, self.run(&mut client, &sql, &call.args, what)).await
        {
            Ok(result) => result,
            Err(_) => {
                // Cancel the statement and drop the connection: its state is
                // unknown.
                let cancel = client.cancel_token();
                let _ = Object::take(client);
                let _ = match &self.inner.connector {
                    super::Connector::Plain => cancel.cancel_query(tokio_postgres::NoTls).await,
                    super::Connector::Rustls(tls) => cancel.cancel_query(tls.clone()).await,
                };
                Err(timed_out(false))
            }
        }
    }

    async fn run(
        &self,
        client: &mut Object,
        sql: &str,
        args: &str,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        let fail = |e| from_postgres(e, what);
        let headers = audit_headers();
        let row = match (&self.user, headers) {
            (None, None) => client
                .query_typed(sql, &[(&args, Type::TEXT)])
                .await
                .map_err(fail)?,
            (None, Some(headers)) => {
                // One statement, no transaction round it: the setting is
                // made when the CTE's row is read, before the target list
                // (the call) is computed, and lasts until the statement's
                // implicit transaction ends.
                let with_headers = format!("{WITH_HEADERS} select ({sql}) from audit_headers");
                client
                    .query_typed(
                        &with_headers,
                        &[(&args, Type::TEXT), (&headers, Type::TEXT)],
                    )
                    .await
                    .map_err(fail)?
            }
            (user, headers) => {
                let tx = client.transaction().await.map_err(fail)?;
                if let Some(user) = user {
                    tx.query_typed(
                        SET_CLAIMS,
                        &[(&user.role, Type::TEXT), (&user.json, Type::TEXT)],
                    )
                    .await
                    .map_err(fail)?;
                }
                if let Some(headers) = headers {
                    tx.query_typed(SET_HEADERS, &[(&headers, Type::TEXT)])
                        .await
                        .map_err(fail)?;
                }
                let rows = tx
                    .query_typed(sql, &[(&args, Type::TEXT)])
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                rows
            }
        };
        let text: Option<String> = row.first().and_then(|r| r.get(0));
        Ok(text.unwrap_or_else(|| "null".to_owned()).into_bytes())
    }
}

/// `select public.f(a => x.a, …)::text from json_to_record($1::json) as
/// x(a type, …)`, or for a `SETOF` function its rows aggregated into a
/// JSON array.
fn build_statement(
    call: &SqlCall<'_>,
    function: &Function,
    unnamed: bool,
    given: &[String],
) -> Result<String> {
    let name = call.function;
    if unnamed {
        return Ok(format!("select public.{name}($1::jsonb)::text"));
    }
    let mut named = Vec::new();
    let mut record = Vec::new();
    for key in given {
        let (arg, ty) = function
            .args
            .iter()
            .find(|(arg, _)| arg == key)
            .ok_or_else(|| {
                Error::config(format!(
                    "{}: public.{name} has no argument {key:?}: the database's migrations \
                     are older than the crate's",
                    call.what
                ))
            })?;
        named.push(format!("\"{arg}\" => x.\"{arg}\""));
        record.push(format!("\"{arg}\" {ty}"));
    }
    let invoke = format!("public.{name}({})", named.join(", "));
    let from = if record.is_empty() {
        String::new()
    } else {
        format!(" from json_to_record($1::json) as x({})", record.join(", "))
    };
    if !function.returns_set {
        if from.is_empty() {
            return Ok(format!("select {invoke}::text where $1::text is not null"));
        }
        return Ok(format!("select {invoke}::text{from}"));
    }
    let row = match call.columns {
        None => "r".to_owned(),
        Some(columns) => {
            let mut object = String::from("json_build_object(");
            for (i, column) in columns.split(',').enumerate() {
                let (column, cast) = column.split_once("::").unwrap_or((column, ""));
                if i > 0 {
                    object.push_str(", ");
                }
                let _ = write!(object, "'{column}', r.\"{column}\"");
                if !cast.is_empty() {
                    let _ = write!(object, "::{cast}");
                }
            }
            object.push(')');
            object
        }
    };
    let source = if from.is_empty() {
        format!(" from {invoke} r where $1::text is not null")
    } else {
        format!("{from} cross join lateral {invoke} r")
    };
    Ok(format!(
        "select coalesce(json_agg({row}), '[]')::text{source}"
    ))
}

struct DurationText(Duration);

impl std::fmt::Display for DurationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0.as_millis())
    }
}

#[async_trait]
impl SqlTransport for PgStore {
    async fn call(&self, call: SqlCall<'_>) -> Result<Vec<u8>> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_secs(1))
            .with_max_times(self.inner.max_retries)
            .with_jitter();
        let idempotent = call.idempotent;
        (|| self.attempt(&call))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retryable(idempotent))
            .notify(|f: &Failure, delay| {
                tracing::debug!(error = %f.error, ?delay, "retrying a database call");
            })
            .await
            .map_err(|f| {
                if f.retryable(idempotent) {
                    f.error.temporary()
                } else {
                    f.error.permanent()
                }
            })
    }

    fn undecodable(
        &self,
        function: &str,
        what: &str,
        body: &[u8],
        source: serde_json::Error,
    ) -> Error {
        crate::sql::error::unexpected_result(function, what, body, source)
    }

    /// The `LISTEN` connection's changes, when the store has one.
    async fn watch_entitlements(&self) -> Result<Option<crate::store::EntitlementWatch>> {
        Ok(self.inner.listener.as_ref().and_then(|l| l.watch()))
    }
}
