//! Why a request was refused: the rejections of the extractors, as JSON
//! responses with their status.

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use crate::error::{Error, ErrorKind};
use crate::limits::LimitDecision;

/// Why a request was refused. Turns into a JSON response that names the
/// problem without leaking details (token errors are logged at debug level
/// instead).
#[derive(Debug)]
#[non_exhaustive]
pub enum TenantRejection {
    /// 401: no token, or a bad, expired or forged one.
    Unauthenticated,
    /// 400: the request names an organization that is not a UUID (or is
    /// empty, not text, or named twice).
    BadOrgId,
    /// 400: the request carries more than one `Authorization` header.
    DoubledAuthorization,
    /// 403: the user is not a member of the requested organization.
    NotAMember,
    /// 403: the user belongs to no organization.
    NoOrganization,
    /// 403: the feature is off for the organization.
    FeatureDisabled(&'static str),
    /// 403: the role may not do this.
    Forbidden,
    /// 429: a limit would be exceeded.
    LimitExceeded(Box<LimitDecision>),
    /// 503: the store could not be reached.
    Unavailable,
    /// 500: the server is set up wrong: the org's path parameter is not in
    /// the route, or a guard names an invalid feature key, metric or
    /// estimate. The message says which.
    Misconfigured(String),
    /// 500: anything else.
    Internal,
    /// A handler's own call failed: the response is the error's
    /// ([`impl IntoResponse for Error`](#impl-IntoResponse-for-Error)),
    /// by its kind. What `?` on a [`crate::Result`] gives in a handler
    /// that returns `Result<_, TenantRejection>`.
    Error(Error),
}

impl TenantRejection {
    /// Maps a store error met while resolving the context.
    pub fn from_error(error: Error) -> Self {
        match error.kind() {
            ErrorKind::PermissionDenied => TenantRejection::NotAMember,
            ErrorKind::Unauthenticated => TenantRejection::Unauthenticated,
            ErrorKind::Unavailable | ErrorKind::Conflict => {
                tracing::warn!(error = %error, "tenant resolution unavailable");
                TenantRejection::Unavailable
            }
            _ => {
                tracing::error!(error = %error, "tenant resolution failed");
                TenantRejection::Internal
            }
        }
    }

    /// Maps an error from a guard's own call: an invalid input there is
    /// the guard's constant (`what`), a configuration error.
    pub(crate) fn from_guard_error(error: Error, what: String) -> Self {
        if error.kind() != ErrorKind::InvalidInput {
            return TenantRejection::from_error(error);
        }
        let message = format!("{what}: {}", error.message());
        tracing::error!(error = %error, "{message}");
        TenantRejection::Misconfigured(message)
    }
}

impl TenantRejection {
    /// The HTTP status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            TenantRejection::Unauthenticated => StatusCode::UNAUTHORIZED,
            TenantRejection::BadOrgId | TenantRejection::DoubledAuthorization => {
                StatusCode::BAD_REQUEST
            }
            TenantRejection::NotAMember
            | TenantRejection::NoOrganization
            | TenantRejection::FeatureDisabled(_)
            | TenantRejection::Forbidden => StatusCode::FORBIDDEN,
            TenantRejection::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            TenantRejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            TenantRejection::Misconfigured(_) | TenantRejection::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            TenantRejection::Error(error) => status_of(error.kind()),
        }
    }

    /// The stable code in the JSON body's `error` field
    /// (`"limit_exceeded"`, `"not_a_member"`, …).
    pub fn code(&self) -> &'static str {
        match self {
            TenantRejection::Unauthenticated => "unauthenticated",
            TenantRejection::BadOrgId => "bad_org_id",
            TenantRejection::DoubledAuthorization => "doubled_authorization",
            TenantRejection::NotAMember => "not_a_member",
            TenantRejection::NoOrganization => "no_organization",
            TenantRejection::FeatureDisabled(_) => "feature_disabled",
            TenantRejection::Forbidden => "forbidden",
            TenantRejection::LimitExceeded(_) => "limit_exceeded",
            TenantRejection::Unavailable => "unavailable",
            TenantRejection::Misconfigured(_) => "misconfigured",
            TenantRejection::Internal => "internal",
            TenantRejection::Error(error) => error.kind().as_str(),
        }
    }

    /// What the JSON body's `message` says.
    fn message(&self) -> String {
        match self {
            TenantRejection::Unauthenticated => "a valid access token is required".into(),
            TenantRejection::BadOrgId => "the organization id is not a UUID".into(),
            TenantRejection::DoubledAuthorization => {
                "send one Authorization header, not several".into()
            }
            TenantRejection::NotAMember => "you are not a member of this organization".into(),
            TenantRejection::NoOrganization => "you belong to no organization".into(),
            TenantRejection::FeatureDisabled(key) => format!("the feature {key} is off"),
            TenantRejection::Forbidden => "your role does not allow this".into(),
            TenantRejection::LimitExceeded(d) => {
                format!("the {} limit would be exceeded", d.metric)
            }
            TenantRejection::Unavailable => "try again shortly".into(),
            TenantRejection::Misconfigured(message) => message.clone(),
            TenantRejection::Internal => "an internal error".into(),
            TenantRejection::Error(error) => public_message(error).into_owned(),
        }
    }
}

impl From<Error> for TenantRejection {
    /// [`TenantRejection::Error`]: the response the error makes.
    fn from(error: Error) -> Self {
        TenantRejection::Error(error)
    }
}

/// The `Retry-After` of a denial at `now`: the whole seconds until its
/// `resets_at` (the end of a budget's period, or the instant a rate limit
/// admits the same request), rounded **up**, at least 1, so a client that
/// waits that long is not refused again for the same reason; `None` when
/// retrying never helps (no `resets_at`).
pub(crate) fn retry_after_secs(
    decision: &LimitDecision,
    now: chrono::DateTime<Utc>,
) -> Option<u64> {
    let wait = decision.resets_at? - now;
    let micros = wait.num_microseconds().unwrap_or(i64::MAX).max(0);
    let secs = micros.div_euclid(1_000_000) + i64::from(micros.rem_euclid(1_000_000) > 0);
    Some(u64::try_from(secs.max(1)).unwrap_or(1))
}

/// The status of an error of `kind` in a response.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Config | ErrorKind::Unexpected => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a response says of an error: its message where that is the
/// client's business (what it asked for is missing, taken, invalid,
/// forbidden, or changed meanwhile), a fixed sentence where the fault is
/// the server's (its configuration, a backend down or answering oddly) or
/// the credentials'.
fn public_message(error: &Error) -> std::borrow::Cow<'_, str> {
    match error.kind() {
        ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::Conflict
        | ErrorKind::InvalidInput
        | ErrorKind::PermissionDenied => error.message().into(),
        ErrorKind::Unauthenticated => "a valid access token is required".into(),
        ErrorKind::Unavailable => "try again shortly".into(),
        ErrorKind::Unsupported => "this server does not offer this".into(),
        ErrorKind::Config | ErrorKind::Unexpected => "an internal error".into(),
    }
}

/// An error as a JSON response: the status by its kind, `error` the
/// kind's stable name ([`ErrorKind::as_str`]), `message` the error's
/// [`message`](Error::message) where the fault is the client's (not found,
/// already exists, conflict, invalid input, permission denied) and a fixed
/// sentence where it is the server's or the credentials', and `field` for
/// invalid input. The whole
/// error, its source included, is logged with `tracing` (warn for a
/// client's error, error for the server's); the body never holds a
/// backend's detail.
///
/// | kind | status |
/// |---|---|
/// | `not_found` | 404 |
/// | `already_exists`, `conflict` | 409 |
/// | `invalid_input` | 422 |
/// | `unauthenticated` | 401 (with `WWW-Authenticate: Bearer`) |
/// | `permission_denied` | 403 |
/// | `unavailable` | 503 (with `Retry-After: 1` when retrying may help) |
/// | `unsupported` | 501 |
/// | `config`, `unexpected` | 500 |
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status_of(self.kind());
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::warn!(error = %self, "request refused");
        }
        let mut body = json!({"error": self.kind().as_str(), "message": public_message(&self)});
        if let Some(field) = self.field() {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.kind() == ErrorKind::Unavailable && self.is_retryable() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl fmt::Display for TenantRejection {
    /// `"<status>: <code>: <message>"`, as the response says it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.status().as_u16(),
            self.code(),
            self.message()
        )
    }
}

impl std::error::Error for TenantRejection {}

impl IntoResponse for TenantRejection {
    fn into_response(self) -> Response {
        if let TenantRejection::Error(error) = self {
            return error.into_response();
        }
        let status = self.status();
        let mut body = json!({"error": self.code(), "message": self.message()});
        match &self {
            TenantRejection::FeatureDisabled(key) => body["feature"] = json!(key),
            TenantRejection::LimitExceeded(decision) => {
                body["metric"] = json!(decision.metric);
                body["requested"] = json!(decision.requested);
                body["used"] = json!(decision.used);
                body["reserved"] = json!(decision.reserved);
                body["limit"] = json!(decision.limit);
                body["remaining"] = json!(decision.remaining);
                body["resets_at"] = json!(decision.resets_at);
            }
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let TenantRejection::LimitExceeded(decision) = &self
            && let Some(secs) = retry_after_secs(decision, Utc::now())
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response's status, headers and JSON body.
    async fn answer(response: Response) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    const EVERY_KIND: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Conflict,
        ErrorKind::InvalidInput,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::Config,
        ErrorKind::Unavailable,
        ErrorKind::Unsupported,
        ErrorKind::Unexpected,
    ];

    /// Every kind has its status and its code, and the body says the
    /// message only where it is the client's business; a source never
    /// reaches it.
    #[tokio::test]
    async fn every_kind_answers_with_its_status_and_code() {
        let leak = "duplicate key value violates unique constraint \"organizations_slug_key\"";
        for kind in EVERY_KIND {
            let error =
                Error::new(kind, "slug \"acme\" is taken").with_source(std::io::Error::other(leak));
            let rejection = TenantRejection::from(error);
            assert_eq!(rejection.code(), kind.as_str());
            let status = rejection.status();
            let (got, headers, body) = answer(rejection.into_response()).await;
            assert_eq!(got, status);
            let want = match kind {
                ErrorKind::NotFound => 404,
                ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
                ErrorKind::InvalidInput => 422,
                ErrorKind::Unauthenticated => 401,
                ErrorKind::PermissionDenied => 403,
                ErrorKind::Unavailable => 503,
                ErrorKind::Unsupported => 501,
                ErrorKind::Config | ErrorKind::Unexpected => 500,
            };
            assert_eq!(got.as_u16(), want, "{kind}");
            assert_eq!(body["error"], kind.as_str());
            let text = body.to_string();
            assert!(!text.contains("violates"), "{kind}: {text}");
            let clients = matches!(
                kind,
                ErrorKind::NotFound
                    | ErrorKind::AlreadyExists
                    | ErrorKind::Conflict
                    | ErrorKind::InvalidInput
                    | ErrorKind::PermissionDenied
            );
            assert_eq!(
                body["message"] == "slug \"acme\" is taken",
                clients,
                "{kind}: {text}"
            );
            assert_eq!(
                headers.contains_key(header::WWW_AUTHENTICATE),
                kind == ErrorKind::Unauthenticated
            );
            assert_eq!(
                headers.get(header::RETRY_AFTER).is_some(),
                kind == ErrorKind::Unavailable,
                "{kind}: retryable by default"
            );
        }
    }

    /// `Retry-After` rounds up to whole seconds: 1.2 s is 2, an instant
    /// in the past is 1, and a denial that never frees has none.
    #[tokio::test]
    async fn retry_after_rounds_up() {
        let now = Utc::now();
        let mut decision = LimitDecision {
            allowed: false,
            metric: crate::limits::rate::REQUESTS,
            requested: 1.into(),
            used: 10.into(),
            reserved: 0.into(),
            limit: Some(10.into()),
            remaining: Some(0.into()),
            resets_at: Some(now + chrono::TimeDelta::milliseconds(1200)),
            level: crate::limits::LimitLevel::Exceeded,
            decided_by: None,
        };
        assert_eq!(retry_after_secs(&decision, now), Some(2));
        decision.resets_at = Some(now + chrono::TimeDelta::seconds(3));
        assert_eq!(retry_after_secs(&decision, now), Some(3));
        decision.resets_at = Some(now - chrono::TimeDelta::seconds(3));
        assert_eq!(retry_after_secs(&decision, now), Some(1));
        decision.resets_at = Some(now + chrono::TimeDelta::seconds(30));
        let (status, headers, body) =
            answer(TenantRejection::LimitExceeded(Box::new(decision.clone())).into_response())
                .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((29..=30).contains(&secs), "{secs}");
        assert_eq!(body["metric"], "requests");
        decision.resets_at = None;
        let (_, headers, body) =
            answer(TenantRejection::LimitExceeded(Box::new(decision)).into_response()).await;
        assert!(headers.get(header::RETRY_AFTER).is_none());
        assert!(body["resets_at"].is_null());
    }

    #[tokio::test]
    async fn invalid_input_names_its_field() {
        let (status, _, body) =
            answer(Error::invalid_input("slug", "must be lowercase").into_response()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], "slug");
        assert_eq!(body["message"], "slug: must be lowercase");
    }
}
