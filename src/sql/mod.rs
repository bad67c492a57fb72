//! The SQL store, written once over a transport: every store primitive is
//! one call of an SQL function shipped in `migrations/`, with typed
//! arguments and results, sent through a transport —
//! PostgREST for [`SupabaseStore`](crate::supabase::SupabaseStore), a
//! direct connection for [`PgStore`](crate::postgres::PgStore).
//!
//! A transport knows how to call a function by name with a JSON object of
//! named arguments and hand back the JSON of its result. Everything else —
//! which function serves which primitive, its arguments, how its answer
//! becomes a store type, whether a call may be repeated — is here, once.
//! SQLSTATEs become [`ErrorKind`]s in one map, and
//! every database error carries a [`SqlError`].

mod alerts;
pub(crate) mod args;
mod audit;
mod directory;
mod domains;
pub(crate) mod error;
mod features;
mod invitations;
mod leases;
mod limits;
mod members;
mod metering;
mod orgs;
mod plans;
mod rate_limits;
mod reports;
mod schema;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::OrgId;
use crate::store::{Backend, org_not_found};

pub use error::SqlError;

/// Whether a call may be repeated after a failure that might have been
/// applied (a timeout, a dropped connection, a 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    Yes,
    No,
}

/// One call of `public.<function>`.
#[derive(Debug)]
pub(crate) struct SqlCall<'a> {
    /// The function, in `public`.
    pub(crate) function: &'static str,
    /// Its arguments: a JSON object of named arguments (absent keys take
    /// the SQL defaults), or for a function with one unnamed `jsonb`
    /// argument, that argument.
    pub(crate) args: String,
    /// For a function returning `SETOF <table>`: the columns each row
    /// carries, as a PostgREST `select` (`a,b,c::text`). `None`: every
    /// column.
    pub(crate) columns: Option<&'static str>,
    /// Whether repeating the call is safe.
    pub(crate) idempotent: Idempotent,
    /// What the call does, for error messages ("reserving").
    pub(crate) what: &'a str,
}

/// How the SQL store reaches the database.
#[async_trait]
pub(crate) trait SqlTransport: Backend {
    /// Calls the function and returns the JSON text of its result: a
    /// `jsonb` function's value, or the array of rows of a `SETOF`
    /// function. Retries what the transport may retry; errors are mapped
    /// onto kinds, retryable only where repeating the call is safe.
    async fn call(&self, call: SqlCall<'_>) -> Result<Vec<u8>>;

    /// The error for a successful call whose result does not decode into
    /// what `function` promises (a proxy's HTML page, another schema).
    fn undecodable(
        &self,
        function: &str,
        what: &str,
        body: &[u8],
        source: serde_json::Error,
    ) -> Error;

    /// Entitlement changes as the database commits them, where the
    /// transport holds a connection that can `LISTEN` (`PgStore` built with
    /// a listen URL); `None` where it cannot (PostgREST, a transaction-mode
    /// pooler): then the caches poll `tenancy_entitlements_version()`.
    async fn watch_entitlements(&self) -> Result<Option<crate::store::EntitlementWatch>>;
}

/// The store primitives over one transport (one file per capability).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    /// Calls `function` with `args` and decodes its result.
    async fn rpc<R: DeserializeOwned>(
        &self,
        function: &'static str,
        what: &str,
        idempotent: Idempotent,
        args: &impl Serialize,
    ) -> Result<R> {
        self.rpc_rows(function, None, what, idempotent, args).await
    }

    /// [`rpc`](Self::rpc) of a `SETOF` function whose rows carry `columns`.
    async fn rpc_rows<R: DeserializeOwned>(
        &self,
        function: &'static str,
        columns: Option<&'static str>,
        what: &str,
        idempotent: Idempotent,
        args: &impl Serialize,
    ) -> Result<R> {
        let args = serde_json::to_string(args).map_err(|e| {
            Error::unexpected(format!("{what}: cannot serialize the arguments")).with_source(e)
        })?;
        let call = SqlCall {
            function,
            args,
            columns,
            idempotent,
            what,
        };
        let body = self.0.call(call).await.map_err(|e| phrased(e, what))?;
        serde_json::from_slice(&body).map_err(|e| self.0.undecodable(function, what, &body, e))
    }
}

/// A failed call's message, `what` alone from the transport, completed
/// with what its kind means ("adding a member: already exists"). A message
/// the transport made longer (a hint on what to fix) is kept.
fn phrased(error: Error, what: &str) -> Error {
    if error.message() != what {
        return error;
    }
    let meaning = match error.kind() {
        ErrorKind::NotFound => "not found",
        ErrorKind::AlreadyExists => "already exists",
        ErrorKind::Conflict => "something changed meanwhile; reload and retry",
        ErrorKind::InvalidInput => "the database refused a value",
        ErrorKind::Unauthenticated => "the credentials were refused",
        ErrorKind::PermissionDenied => "not allowed",
        ErrorKind::Config => "the database is not set up for this crate",
        ErrorKind::Unavailable => "the database is unavailable",
        ErrorKind::Unsupported => "not supported by this database",
        ErrorKind::Unexpected => "the database answered something unexpected",
    };
    error.with_message(format!("{what}: {meaning}"))
}

/// A write to `org` refused for want of the organization says so, as the
/// other stores do.
pub(crate) fn org_missing(org: OrgId) -> impl FnOnce(Error) -> Error {
    move |error| {
        explained(error, |kind, _| {
            (kind == ErrorKind::NotFound).then(|| org_not_found(org).message().to_owned())
        })
    }
}

/// A value the database refused (`22023`) whose message starts with one
/// of `fields`' SQL names (`"since: …"`), as [`Error::invalid_input`]
/// names it: the Rust field it stands for, as the other stores name it.
/// The database's error stays the source.
pub(crate) fn named_field(
    fields: &'static [(&'static str, &'static str)],
) -> impl FnOnce(Error) -> Error {
    move |error| {
        if error.kind() != ErrorKind::InvalidInput {
            return error;
        }
        let named = SqlError::find(&error).and_then(|sql| {
            fields.iter().find_map(|(name, field)| {
                let rest = sql.message().strip_prefix(name)?.strip_prefix(':')?;
                Some((*field, rest.trim_start().to_owned()))
            })
        });
        match named {
            Some((field, rest)) => error.with_field(field, rest),
            None => error,
        }
    }
}

/// `error` in the caller's terms where its call site knows them:
/// `explain` gets the kind and the database's error, when there is one,
/// and returns the message (`None` keeps it). The database's own text
/// stays in the source.
pub(crate) fn explained(
    error: Error,
    explain: impl FnOnce(ErrorKind, Option<&SqlError>) -> Option<String>,
) -> Error {
    match explain(error.kind(), SqlError::find(&error)) {
        Some(message) => error.with_message(message),
        None => error,
    }
}

/// Implements every capability trait for `$store` (a [`SqlTransport`]) by
/// calling the [`Sql`] primitives of the same name, from the capabilities'
/// method lists, and the optional [`UserDirectory`](crate::store::UserDirectory).
macro_rules! sql_store_impls {
    ($store:ty) => {
        $crate::store::org_store_methods!(sql_capability_impl! { OrgStore, $store });
        $crate::store::member_store_methods!(sql_capability_impl! { MemberStore, $store });
        $crate::store::feature_store_methods!(sql_capability_impl! { FeatureStore, $store });
        $crate::store::limit_store_methods!(sql_capability_impl! { LimitStore, $store });
        $crate::store::metering_store_methods!(sql_capability_impl! { MeteringStore, $store });
        $crate::store::alert_store_methods!(sql_capability_impl! { AlertStore, $store });
        $crate::store::invitation_store_methods!(sql_capability_impl! { InvitationStore, $store });
        $crate::store::domain_store_methods!(sql_capability_impl! { DomainStore, $store });
        $crate::store::audit_store_methods!(sql_capability_impl! { AuditStore, $store });
        $crate::store::plan_store_methods!(sql_capability_impl! { PlanStore, $store });
        $crate::store::rate_limit_store_methods!(sql_capability_impl! { RateLimitStore, $store });
        $crate::store::lease_store_methods!(sql_capability_impl! { LeaseStore, $store });
        $crate::store::report_store_methods!(sql_capability_impl! { ReportStore, $store });

        #[async_trait::async_trait]
        impl $crate::store::UserDirectory for $store {
            async fn profiles(
                &self,
                users: &[$crate::ids::UserId],
            ) -> $crate::error::Result<Vec<$crate::model::UserProfile>> {
                $crate::sql::Sql(self).profiles(users).await
            }
        }
    };
}

macro_rules! sql_capability_impl {
    ($trait:ident, $store:ty ; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::store::$trait for $store {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    $crate::sql::Sql(self).$name($($arg),*).await
                }
            )*
        }
    };
}

pub(crate) use {sql_capability_impl, sql_store_impls};
