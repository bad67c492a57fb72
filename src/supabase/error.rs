//! Mapping PostgREST responses and transport failures onto [`ErrorKind`]:
//! the one place where HTTP statuses and PostgREST/PostgreSQL error codes
//! become kinds.

use std::fmt;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{Error, ErrorKind};
use crate::sql::SqlError;

/// How many bytes of an unexpected body an error keeps.
const EXCERPT_BYTES: usize = 300;

/// A PostgREST error response, or a response this crate could not read.
///
/// It is the [`source`](std::error::Error::source) of every [`Error`] a
/// [`SupabaseStore`](super::SupabaseStore) returns for a response, so a
/// caller can downcast to it for the raw `code`:
///
/// ```
/// use tenancy::supabase::ApiError;
/// # fn code_of(err: &tenancy::Error) -> Option<&str> {
/// std::error::Error::source(err)
///     .and_then(|s| s.downcast_ref::<ApiError>())
///     .and_then(|api| api.code())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The database error, when `code` is a SQLSTATE rather than one of
    /// PostgREST's own `PGRST…` codes: the backend-neutral source.
    sql: Option<SqlError>,
    status: u16,
    code: Option<String>,
    message: String,
    details: Option<String>,
    hint: Option<String>,
    body_excerpt: Option<String>,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The PostgREST (`PGRST…`) or PostgreSQL (SQLSTATE) code, when the
    /// body was a PostgREST error.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The error message from the body, or a description of what was
    /// wrong with the body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// PostgREST's `details`.
    pub fn details(&self) -> Option<&str> {
        self.details.as_deref()
    }

    /// PostgREST's `hint`.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The start of the body, for responses that could not be read.
    pub fn body_excerpt(&self) -> Option<&str> {
        self.body_excerpt.as_deref()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " hint: {hint}")?;
        }
        if let Some(body) = &self.body_excerpt {
            write!(f, "; body: {body}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {
    /// The [`SqlError`] when the database raised the error (a SQLSTATE
    /// code), as [`PgStore`](crate::postgres::PgStore)'s errors carry it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.sql
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// PostgREST's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    details: Option<String>,
    hint: Option<String>,
}

/// Whether a failed call may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Never: the failure is not transient.
    Never,
    /// Only if the call is idempotent: the request may have been applied.
    IfIdempotent,
    /// Always: the request never reached the server.
    Always,
}

/// A failed attempt: the error for the caller and whether to retry.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry: Retry,
}

impl Failure {
    pub(crate) fn retryable(&self, idempotent: bool) -> bool {
        match self.retry {
            Retry::Never => false,
            Retry::IfIdempotent => idempotent,
            Retry::Always => true,
        }
    }

    /// The error for the caller, after this store's own retries: retryable
    /// exactly when repeating the call is safe and may help.
    pub(crate) fn into_error(self, idempotent: bool) -> Error {
        if self.retryable(idempotent) {
            self.error.temporary()
        } else {
            self.error.permanent()
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let mut text = text.into_owned();
    if body.len() > EXCERPT_BYTES {
        text.push('…');
    }
    text
}

/// The kind for a PostgREST or SQLSTATE code; `None` for codes that say
/// nothing more than the status.
fn kind_of_code(code: &str) -> Option<ErrorKind> {
    use ErrorKind::*;
    let kind = match code {
        // Insufficient privilege: RLS, revoked grants, role-rule triggers.
        "42501" => PermissionDenied,
        // JWT missing/invalid (PGRST301), without a role (PGRST302), or
        // with bad claims / expired (PGRST303).
        "PGRST301" | "PGRST302" | "PGRST303" => Unauthenticated,
        // PostgREST has no JWT secret configured.
        "PGRST300" => Config,
        "23505" => AlreadyExists,
        // A referenced row (the organization, the user) does not exist.
        "23503" => NotFound,
        // No row where one was required; `raise … using errcode = 'P0002'`.
        "PGRST116" | "P0002" => NotFound,
        // Not null / check violations, invalid arguments.
        "23502" | "23514" => InvalidInput,
        c if c.starts_with("22") => InvalidInput,
        // A wrong REST base (PGRST125), or an unknown function, table,
        // column or relationship: the migrations are missing or the schema
        // cache is stale.
        "PGRST125" | "PGRST200" | "PGRST202" | "PGRST204" | "PGRST205" | "42883" | "42P01"
        | "42703" => Config,
        // Bad request syntax built by the caller (filters, bodies).
        c if c.starts_with("PGRST1") => InvalidInput,
        // Cannot reach or use the database.
        "PGRST000" | "PGRST001" | "PGRST002" | "PGRST003" => Unavailable,
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => Unavailable,
        // Serialization failure, deadlock, lock not available.
        "40001" | "40P01" | "55P03" => Conflict,
        _ => return None,
    };
    Some(kind)
}

fn kind_of_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        400 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 | 406 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        408 | 429 | 502 | 503 | 504 => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    }
}

/// The error for a response with a non-success status.
pub(crate) fn from_status(status: StatusCode, body: &[u8], what: &str) -> Failure {
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| b.code.is_some() || b.message.is_some());
    let (kind, api) = match parsed {
        Some(b) => {
            let kind = b
                .code
                .as_deref()
                .and_then(kind_of_code)
                .unwrap_or_else(|| kind_of_status(status));
            let message = b.message.unwrap_or_default();
            let sql = b
                .code
                .as_deref()
                .filter(|c| !c.starts_with("PGRST"))
                .map(|c| {
                    SqlError::new(c, message.clone()).with_detail(b.details.clone(), b.hint.clone())
                });
            let api = ApiError {
                sql,
                status: status.as_u16(),
                message,
                code: b.code,
                details: b.details,
                hint: b.hint,
                body_excerpt: None,
            };
            (kind, api)
        }
        None => {
            // Not a PostgREST error body: a proxy, a gateway, something else
            // listening. Gateways failing are transient; anything else is a
            // response we do not understand.
            let kind = match kind_of_status(status) {
                ErrorKind::Unavailable => ErrorKind::Unavailable,
                _ if status.is_server_error() => ErrorKind::Unavailable,
                _ => ErrorKind::Unexpected,
            };
            let api = ApiError {
                sql: None,
                status: status.as_u16(),
                code: None,
                message: "the response is not a PostgREST error".to_owned(),
                details: None,
                hint: None,
                body_excerpt: Some(excerpt(body)),
            };
            (kind, api)
        }
    };
    let retry = match kind {
        ErrorKind::Unavailable | ErrorKind::Conflict => Retry::IfIdempotent,
        _ if status.is_server_error() => Retry::IfIdempotent,
        _ => Retry::Never,
    };
    let message = match api.code.as_deref() {
        Some("PGRST125") => format!(
            "{what}: no such path on the server: check the REST base URL \
             (SUPABASE_REST_URL, or SUPABASE_URL whose REST base is {{SUPABASE_URL}}/rest/v1; \
             a self-hosted PostgREST usually serves at its root)"
        ),
        Some("PGRST202") | Some("42883") => format!(
            "{what}: the function is missing: apply the crate's migrations to the database \
             (and reload PostgREST's schema cache)"
        ),
        // The source (the ApiError) says why; Display prints it once.
        _ => what.to_owned(),
    };
    Failure {
        error: Error::new(kind, message).with_source(api),
        retry,
    }
}

/// The error for a success status whose body is not what was expected.
pub(crate) fn unexpected_body(
    status: StatusCode,
    body: &[u8],
    what: &str,
    source: serde_json::Error,
) -> Error {
    let api = ApiError {
        sql: None,
        status: status.as_u16(),
        code: None,
        message: format!("unexpected response body ({source})"),
        details: None,
        hint: None,
        body_excerpt: Some(excerpt(body)),
    };
    Error::new(
        ErrorKind::Unexpected,
        format!("{what}: the server's answer is not what the call returns"),
    )
    .with_source(api)
}

/// The error for a request that got no response.
pub(crate) fn from_transport(err: reqwest::Error, what: &str) -> Failure {
    let (kind, retry, why) = if err.is_connect() {
        (
            ErrorKind::Unavailable,
            Retry::Always,
            "cannot connect to PostgREST",
        )
    } else if err.is_timeout() {
        (
            ErrorKind::Unavailable,
            Retry::IfIdempotent,
            "PostgREST timed out",
        )
    } else if err.is_request() || err.is_body() {
        (
            ErrorKind::Unavailable,
            Retry::IfIdempotent,
            "the request to PostgREST failed",
        )
    } else if err.is_builder() {
        (ErrorKind::Config, Retry::Never, "cannot build the request")
    } else {
        (
            ErrorKind::Unexpected,
            Retry::Never,
            "unexpected failure talking to PostgREST",
        )
    };
    Failure {
        error: Error::new(kind, format!("{what}: {why}")).with_source(err),
        retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind of an HTTP `status` answer carrying PostgREST's `code`.
    fn kind(status: u16, code: &str) -> ErrorKind {
        let body = format!(r#"{{"code":"{code}","message":"m"}}"#);
        from_status(StatusCode::from_u16(status).unwrap(), body.as_bytes(), "t")
            .error
            .kind()
    }

    #[test]
    fn codes_win_over_statuses() {
        use ErrorKind::*;
        // (status, code, kind): the stand-in answers 42501 with 401, say;
        // the code decides.
        let cases = [
            (401, "42501", PermissionDenied),
            (401, "PGRST303", Unauthenticated),
            (409, "23505", AlreadyExists),
            (409, "23503", NotFound),
            (404, "PGRST202", Config),
            (400, "22023", InvalidInput),
            (500, "40001", Conflict),
            (503, "PGRST001", Unavailable),
        ];
        for (status, code, expected) in cases {
            assert_eq!(kind(status, code), expected, "{status} {code}");
        }
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        for (status, code, expected) in [
            (403, "XX999", ErrorKind::PermissionDenied),
            (500, "P0001", ErrorKind::Unexpected),
        ] {
            assert_eq!(kind(status, code), expected, "{status} {code}");
        }
    }

    #[test]
    fn foreign_bodies_keep_status_and_excerpt() {
        let f = from_status(StatusCode::BAD_REQUEST, b"<html>nope</html>", "reading");
        assert_eq!(f.error.kind(), ErrorKind::Unexpected);
        // Said once: the message says what was being done, the source why.
        assert_eq!(f.error.message(), "reading");
        let shown = f.error.to_string();
        assert!(
            shown.contains("HTTP 400") && shown.contains("<html>nope</html>"),
            "{shown}"
        );
        assert_eq!(shown.matches("<html>nope</html>").count(), 1, "{shown}");
        let gw = from_status(StatusCode::BAD_GATEWAY, b"bad gateway", "reading");
        assert_eq!(gw.error.kind(), ErrorKind::Unavailable);
        assert!(gw.retryable(true) && !gw.retryable(false));
    }
}
