//! Turning pages and errors into responses: templates, the headers every
//! console response carries, and the page chrome (navigation, org
//! selector).

use askama::Template;
use axum::extract::{FromRequestParts, NestedPath};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::{Error, ErrorKind};

/// The Content-Security-Policy of every console response: nothing but this
/// console's own stylesheet and images, no scripts at all, forms only to
/// itself, never framed.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where the console is mounted (`/tenancy` for
/// `app.nest("/tenancy", …)`, empty at the root): links start with it.
#[derive(Debug, Clone)]
pub(super) struct Base(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let nested = NestedPath::from_request_parts(parts, state).await;
        let prefix = nested.as_ref().map_or("", |n| n.as_str());
        Ok(Base(prefix.trim_end_matches('/').to_owned()))
    }
}

impl Base {
    /// `path` (starting with `/`) under the mount point.
    pub(super) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// The start page: the mount point itself (`/console`, which `nest`
    /// matches, unlike `/console/`), or `/` at the root.
    pub(super) fn home(&self) -> String {
        if self.0.is_empty() {
            "/".to_owned()
        } else {
            self.0.clone()
        }
    }
}

/// A rendered page.
pub(super) fn page<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            ConsoleError::internal().into_response()
        }
    }
}

/// After a successful form: back to `to` (303, so a reload does not post
/// again).
pub(super) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// `html` as a response with `status`. The security headers are the
/// router's layer's ([`security_headers`]).
pub(super) fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The headers of every console response, set by the router's layer: CSP,
/// no sniffing, no framing, no caching of pages that show a user's data
/// (unless the response set its own `Cache-Control`), no referrer to
/// elsewhere.
pub(super) fn security_headers(headers: &mut axum::http::HeaderMap) {
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
}

/// Why a console request failed, as a page a person can read. Store errors
/// map to statuses by kind; details go to the log, not the page.
#[derive(Debug)]
pub(super) struct ConsoleError {
    status: StatusCode,
    title: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    status: u16,
    message: &'a str,
}

impl ConsoleError {
    pub(super) fn unauthenticated() -> Self {
        ConsoleError {
            status: StatusCode::UNAUTHORIZED,
            title: "Sign in",
            message: "Sign in to the application first: this page needs your session.".into(),
        }
    }

    /// 400 for a request that names its user ambiguously: several
    /// `Authorization` headers, or a header and a session cookie of
    /// different users.
    pub(super) fn ambiguous_user() -> Self {
        ConsoleError {
            status: StatusCode::BAD_REQUEST,
            title: "Who are you?",
            message: "This request names more than one user. Sign in again.".into(),
        }
    }

    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        ConsoleError {
            status: StatusCode::FORBIDDEN,
            title: "Not allowed",
            message: message.into(),
        }
    }

    pub(super) fn not_found() -> Self {
        ConsoleError {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            message: "There is nothing here.".into(),
        }
    }

    pub(super) fn internal() -> Self {
        ConsoleError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Something went wrong",
            message: "The console could not do that. It has been logged.".into(),
        }
    }

    fn unavailable() -> Self {
        ConsoleError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "Try again shortly",
            message: "The console cannot reach its data just now. Try again in a moment.".into(),
        }
    }
}

/// Store errors by kind. A person sees the message of a refusal they can
/// act on (a value to correct, a rule of the role matrix, a thing missing
/// or already there, a change made meanwhile): those name the field or the
/// rule, never a secret. A capability the store lacks (`Unsupported`) is a
/// fixed 501 page. Any other kind shows a generic page and logs the
/// details, which may name a backend.
impl From<Error> for ConsoleError {
    fn from(error: Error) -> Self {
        let (status, title) = match error.kind() {
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "Not allowed"),
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "That did not work"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "Changed meanwhile"),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "Already there"),
            ErrorKind::Unauthenticated => return ConsoleError::unauthenticated(),
            // A capability the store does not have (usage history, rate
            // limits, leases): nothing to retry, nothing secret.
            ErrorKind::Unsupported => {
                tracing::warn!(error = %error, "console request needs a capability the store lacks");
                return ConsoleError {
                    status: StatusCode::NOT_IMPLEMENTED,
                    title: "Not available",
                    message: "The store behind this console does not offer this page's data."
                        .to_owned(),
                };
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %error, "console request failed: a backend is unavailable");
                return ConsoleError::unavailable();
            }
            _ => {
                tracing::error!(error = %error, "console request failed");
                return ConsoleError::internal();
            }
        };
        ConsoleError {
            status,
            title,
            message: error.message().to_owned(),
        }
    }
}

/// Why a form was refused, to show beside the form again, when the person
/// can act on it: `InvalidInput`, `NotFound`, `Conflict` and
/// `AlreadyExists`, with their status and message. Any other error is the
/// error page instead ([`ConsoleError::from`]): a denial as 403, a failure
/// as 500 or 503 with its details only in the log.
pub(super) fn form_refusal(error: Error) -> Result<(StatusCode, String), ConsoleError> {
    match error.kind() {
        ErrorKind::InvalidInput
        | ErrorKind::NotFound
        | ErrorKind::Conflict
        | ErrorKind::AlreadyExists => {
            let shown = ConsoleError::from(error);
            Ok((shown.status, shown.message))
        }
        _ => Err(error.into()),
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            title: self.title,
            status: self.status.as_u16(),
            message: &self.message,
        };
        let html = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".into());
        html_response(self.status, html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_refusal_shows_only_what_the_person_can_act_on() {
        let cases = [
            (
                Error::invalid_input("limit_value", "\"x\" is not a number"),
                StatusCode::BAD_REQUEST,
            ),
            (
                Error::new(ErrorKind::NotFound, "no feature \"exports\""),
                StatusCode::NOT_FOUND,
            ),
            (
                Error::new(ErrorKind::Conflict, "changed meanwhile"),
                StatusCode::CONFLICT,
            ),
            (
                Error::new(ErrorKind::AlreadyExists, "already there"),
                StatusCode::CONFLICT,
            ),
        ];
        for (error, status) in cases {
            let message = error.message().to_owned();
            let (shown_status, shown) = form_refusal(error).expect("shown beside the form");
            assert_eq!((shown_status, shown), (status, message));
        }
        let secret = "host=10.0.0.7 password=hunter2";
        for (kind, status) in [
            (ErrorKind::Unexpected, StatusCode::INTERNAL_SERVER_ERROR),
            (ErrorKind::Config, StatusCode::INTERNAL_SERVER_ERROR),
            (ErrorKind::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorKind::PermissionDenied, StatusCode::FORBIDDEN),
            (ErrorKind::Unsupported, StatusCode::NOT_IMPLEMENTED),
        ] {
            let page = form_refusal(Error::new(kind, secret)).expect_err("the error page");
            assert_eq!(page.status, status, "{kind:?}");
            if kind != ErrorKind::PermissionDenied {
                assert!(
                    !page.message.contains("hunter2"),
                    "{kind:?}: {}",
                    page.message
                );
            }
        }
    }
}
