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
        }
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
            && let Some(secs) = decision.retry_after_secs(Utc::now())
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
