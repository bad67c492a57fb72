//! The crate's error type.
//!
//! Every fallible operation returns [`Result<T>`](Result). An [`Error`] is
//! opaque: match on its [`ErrorKind`], read its message, ask
//! [`is_retryable`](Error::is_retryable), and walk its
//! [`source`](std::error::Error::source) chain. Expected outcomes — a limit
//! denial, an absent organization, a disabled feature — are values, never
//! errors.

use std::fmt;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in categories a caller can act on.
///
/// New kinds may be added, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist where its absence is not a normal
    /// outcome (for example the organization named in a write).
    NotFound,
    /// A create collided with an existing row, such as a taken slug.
    AlreadyExists,
    /// The operation raced with another change; reloading and retrying may
    /// succeed.
    Conflict,
    /// The caller passed a value that does not validate. The message starts
    /// with the field's name, and [`Error::field`] returns it.
    InvalidInput,
    /// No valid identity was presented (bad or expired token).
    Unauthenticated,
    /// The identity is known but not allowed to do this: a missing
    /// membership, a role too low, or a role rule that would be broken.
    PermissionDenied,
    /// The library or a backend is misconfigured.
    Config,
    /// A backend could not be reached or is overloaded.
    Unavailable,
    /// The store this [`Tenancy`](crate::Tenancy) was built with lacks the
    /// optional capability the call needs (a rate limiter, a report
    /// reader); the message names it. Never retryable: hand the capability
    /// to the builder.
    Unsupported,
    /// Anything else: a bug, or a backend answering something unexpected.
    Unexpected,
}

impl ErrorKind {
    /// A short lowercase name, stable across releases, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Config => "config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unexpected => "unexpected",
        }
    }

    /// Whether an error of this kind is temporary unless the code that
    /// raised it says otherwise: `Unavailable` and `Conflict`.
    fn temporary_by_default(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Conflict)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error type of every fallible operation in this crate.
///
/// Whether repeating the call may help is decided by the code that raised
/// the error, which knows: an `Unavailable` answer to a call that may have
/// been applied and is not safe to repeat (a timed-out reservation) is not
/// retryable, although `Unavailable` usually is.
///
/// ```
/// use tenancy::{ErrorKind, Slug};
///
/// let err = Slug::parse("Not A Slug").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert_eq!(err.field(), Some("slug"));
/// assert!(err.message().starts_with("slug: "));
/// assert!(!err.is_retryable());
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    field: Option<&'static str>,
    temporary: bool,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a human-readable message. It is retryable
    /// when `kind` is `Unavailable` or `Conflict`, until
    /// [`permanent`](Self::permanent) says otherwise.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            field: None,
            temporary: kind.temporary_by_default(),
            source: None,
        }
    }

    /// An [`ErrorKind::InvalidInput`] error naming the offending field; the
    /// message is `"<field>: <message>"`.
    pub fn invalid_input(field: &'static str, message: impl fmt::Display) -> Self {
        Error {
            field: Some(field),
            ..Error::new(ErrorKind::InvalidInput, format!("{field}: {message}"))
        }
    }

    /// An [`ErrorKind::PermissionDenied`] error.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::PermissionDenied, message)
    }

    /// An [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// An [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// An [`ErrorKind::Unexpected`] error.
    pub fn unexpected(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unexpected, message)
    }

    /// Attaches the underlying cause, kept intact for the `source` chain.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Marks the error as not worth retrying, whatever its kind: the call
    /// may have been applied and repeating it is not safe, or it already
    /// failed after retries.
    pub fn permanent(mut self) -> Self {
        self.temporary = false;
        self
    }

    /// Marks the error as worth retrying, whatever its kind.
    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without the kind or the source. For
    /// [`ErrorKind::InvalidInput`] it starts with the field's name.
    ///
    /// It says what failed in the caller's terms (a field, a slug, a
    /// member, an organization id) and never carries a backend's detail:
    /// SQL text, constraint and table names, key values, SQLSTATE messages
    /// and HTTP bodies stay in [`source`](std::error::Error::source) (and
    /// in `Display`, for logs). So it is safe to show the client whose
    /// request caused it; with the `axum` feature the error is a response
    /// that does (`impl IntoResponse for Error`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with another message; kind, field, retryability and
    /// source kept. For a caller that knows what a backend's error means
    /// at its call site.
    #[cfg(any(feature = "supabase", feature = "postgres"))]
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The same error naming `field` as the one that failed validation,
    /// its message prefixed `"<field>: "` as [`invalid_input`](Self::invalid_input)
    /// writes it; kind, retryability and source kept.
    #[cfg(any(feature = "supabase", feature = "postgres"))]
    pub(crate) fn with_field(mut self, field: &'static str, message: impl fmt::Display) -> Self {
        self.field = Some(field);
        self.message = format!("{field}: {message}");
        self
    }

    /// For [`ErrorKind::InvalidInput`], the name of the field that failed
    /// validation.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// Whether repeating the same call may succeed. Decided where the error
    /// was raised; by default true for `Unavailable` and `Conflict`.
    pub fn is_retryable(&self) -> bool {
        self.temporary
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(field) = self.field {
            d.field("field", &field);
        }
        d.field("retryable", &self.temporary);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// How many characters of a caller's input an error message quotes.
const QUOTED_CHARS: usize = 48;

/// `input` as an error message quotes it: Rust-escaped (control characters
/// and NUL bytes made visible) and cut to its first 48 characters, so a
/// hostile 10 kB value cannot fill a log line.
pub(crate) fn quoted(input: &str) -> String {
    match input.char_indices().nth(QUOTED_CHARS) {
        None => format!("{input:?}"),
        Some((end, _)) => {
            let total = input.chars().count();
            format!("{:?}… ({total} characters)", &input[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_field_and_source() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::invalid_input("slug", "must be lowercase").with_source(io);
        assert_eq!(err.message(), "slug: must be lowercase");
        assert_eq!(
            err.to_string(),
            "invalid_input: slug: must be lowercase (disk on fire)"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn retryability_defaults_by_kind_and_is_overridden_where_raised() {
        assert!(Error::new(ErrorKind::Unavailable, "down").is_retryable());
        assert!(Error::new(ErrorKind::Conflict, "raced").is_retryable());
        assert!(!Error::permission_denied("no").is_retryable());
        assert!(
            !Error::new(ErrorKind::Unavailable, "timed out after sending")
                .permanent()
                .is_retryable()
        );
        assert!(Error::unexpected("blip").temporary().is_retryable());
    }

    #[test]
    fn quoted_input_is_bounded_and_escaped() {
        assert_eq!(quoted("acme"), "\"acme\"");
        assert_eq!(quoted("a\0b"), "\"a\\0b\"");
        let long = "x".repeat(10_000);
        let q = quoted(&long);
        assert!(q.len() < 80, "{q}");
        assert!(q.ends_with("(10000 characters)"), "{q}");
    }
}
