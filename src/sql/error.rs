//! SQLSTATEs onto [`ErrorKind`]s: the one map both SQL transports use, and
//! [`SqlError`], the backend-neutral cause a transport attaches.

use std::fmt;

use crate::error::ErrorKind;

/// How many bytes of an unexpected result an error keeps.
#[cfg(feature = "postgres")]
const EXCERPT_BYTES: usize = 300;

/// A database error as the SQL store saw it, whichever transport carried
/// it: the SQLSTATE, the constraint when the database named one, and
/// PostgreSQL's message, detail and hint.
///
/// In the [`source`](std::error::Error::source) chain of every error a
/// database raised, through either transport: the source of a
/// [`PgStore`](crate::postgres::PgStore) error, and the source of the
/// [`ApiError`](crate::supabase::ApiError) of a
/// [`SupabaseStore`](crate::supabase::SupabaseStore) one (PostgREST does
/// not name the constraint). [`SqlError::find`] walks the chain:
///
/// ```
/// use tenancy::sql::SqlError;
/// # fn code_of(err: &tenancy::Error) -> Option<&str> {
/// SqlError::find(err).map(|sql| sql.code())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    code: String,
    message: String,
    constraint: Option<String>,
    detail: Option<String>,
    hint: Option<String>,
}

impl SqlError {
    /// A database error with its SQLSTATE and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        SqlError {
            code: code.into(),
            message: message.into(),
            constraint: None,
            detail: None,
            hint: None,
        }
    }

    /// With the constraint the database named.
    pub fn with_constraint(mut self, constraint: Option<String>) -> Self {
        self.constraint = constraint;
        self
    }

    /// With PostgreSQL's detail and hint.
    pub fn with_detail(mut self, detail: Option<String>, hint: Option<String>) -> Self {
        self.detail = detail;
        self.hint = hint;
        self
    }

    /// The first `SqlError` in `error`'s source chain, whichever transport
    /// carried it.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a SqlError> {
        let mut next = error.source();
        while let Some(cause) = next {
            if let Some(sql) = cause.downcast_ref::<SqlError>() {
                return Some(sql);
            }
            next = cause.source();
        }
        None
    }

    /// The SQLSTATE, such as `23505`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// PostgreSQL's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The violated constraint, when the database named one.
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }

    /// PostgreSQL's detail.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// PostgreSQL's hint.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The kind this error maps onto (the SQL store's one map of
    /// SQLSTATEs; `Unexpected` for a code it does not know).
    pub fn kind(&self) -> ErrorKind {
        kind_of_sqlstate(&self.code).unwrap_or(ErrorKind::Unexpected)
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SQLSTATE {}: {}", self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}

/// The kind for a SQLSTATE; `None` for codes that say nothing more than
/// "the statement failed".
pub(crate) fn kind_of_sqlstate(code: &str) -> Option<ErrorKind> {
    use ErrorKind::*;
    let kind = match code {
        // Insufficient privilege: RLS, revoked grants, role-rule triggers.
        "42501" => PermissionDenied,
        "23505" => AlreadyExists,
        // A referenced row (the organization, the user) does not exist.
        "23503" => NotFound,
        // `raise … using errcode = 'P0002'`: no such organization or hold.
        "P0002" => NotFound,
        // Not null / check violations, invalid arguments.
        "23502" | "23514" => InvalidInput,
        c if c.starts_with("22") => InvalidInput,
        // An unknown function, table or column: the migrations are missing.
        // An unknown database: the connection URL is wrong.
        "42883" | "42P01" | "42703" | "3D000" => Config,
        // A login the server refused: a wrong password or role.
        "28P01" | "28000" => Unauthenticated,
        // Cannot reach or use the database: connection exceptions,
        // insufficient resources, operator intervention (a restart, a
        // terminated backend).
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => Unavailable,
        // Serialization failure, deadlock, lock not available; a
        // compare-and-set that lost.
        "40001" | "40P01" | "55P03" => Conflict,
        _ => return None,
    };
    Some(kind)
}

/// The hint a message gets for a code that means the schema is not what
/// the crate expects.
#[cfg(feature = "postgres")]
pub(crate) fn schema_hint(code: &str) -> Option<&'static str> {
    matches!(code, "42883" | "42P01" | "42703" | "PGRST202").then_some(
        "the function or table is missing: apply the crate's migrations to the database \
         (and reload PostgREST's schema cache)",
    )
}

/// The error for a result that does not decode into what the function
/// promises.
#[cfg(feature = "postgres")]
pub(crate) fn unexpected_result(
    function: &str,
    what: &str,
    body: &[u8],
    source: serde_json::Error,
) -> crate::error::Error {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let more = if body.len() > EXCERPT_BYTES {
        "…"
    } else {
        ""
    };
    crate::error::Error::unexpected(format!(
        "{what}: {function} returned an unexpected result: {text}{more}"
    ))
    .with_source(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_onto_kinds() {
        use ErrorKind::*;
        for (code, kind) in [
            ("42501", Some(PermissionDenied)),
            ("23505", Some(AlreadyExists)),
            ("23503", Some(NotFound)),
            ("P0002", Some(NotFound)),
            ("23514", Some(InvalidInput)),
            ("22023", Some(InvalidInput)),
            ("42883", Some(Config)),
            ("3D000", Some(Config)),
            ("28P01", Some(Unauthenticated)),
            ("08006", Some(Unavailable)),
            ("57P01", Some(Unavailable)),
            ("53300", Some(Unavailable)),
            ("40001", Some(Conflict)),
            ("40P01", Some(Conflict)),
            ("P0001", None),
            ("XX000", None),
        ] {
            assert_eq!(kind_of_sqlstate(code), kind, "{code}");
        }
    }
}
