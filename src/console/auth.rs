//! Who is signed in, whether they are the operator, and the CSRF token
//! every form carries.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;

use super::config::ConsoleConfig;
use super::render::ConsoleError;
use crate::axum::{bearer_token, cookie_value};
use crate::ids::UserId;
use crate::model::PlatformOperator;

/// How long a form's CSRF token stays valid: 12 hours.
const CSRF_LIFETIME_SECS: i64 = 12 * 3600;

/// The signed-in person: a verified Supabase access token.
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    pub(super) user: UserId,
    /// Set when the operator policy says this user is the operator.
    pub(super) operator: Option<PlatformOperator>,
    /// The token this viewer's forms carry.
    pub(super) csrf: String,
}

impl FromRequestParts<Arc<ConsoleConfig>> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        config: &Arc<ConsoleConfig>,
    ) -> Result<Self, Self::Rejection> {
        // Read once a request: the handler and its form both take it.
        if let Some(viewer) = parts.extensions.get::<Viewer>() {
            return Ok(viewer.clone());
        }
        if parts.method == Method::POST {
            refuse_cross_site(parts)?;
        }
        // An unreadable cookie is no token.
        let cookie = || {
            cookie_value(parts, &config.token_cookie)
                .ok()
                .flatten()
                .filter(|token| !token.is_empty())
        };
        let header = bearer_token(parts).map_err(|_| ConsoleError::ambiguous_user())?;
        let token = header
            .or_else(cookie)
            .ok_or_else(ConsoleError::unauthenticated)?;
        let claims = config.verifier.verify_async(token).await.map_err(|e| {
            tracing::debug!(error = %e, "console token rejected");
            ConsoleError::unauthenticated()
        })?;
        let user = claims
            .user_id()
            .map_err(|_| ConsoleError::unauthenticated())?;
        // A header and a session cookie of two different users: which one
        // acts? A cookie that does not verify names nobody.
        if header.is_some()
            && let Some(cookie) = cookie().filter(|c| *c != token)
            && let Ok(other) = config.verifier.verify_async(cookie).await
            && other.user_id().is_ok_and(|other| other != user)
        {
            return Err(ConsoleError::ambiguous_user());
        }
        let viewer = Viewer {
            user,
            operator: config.operators.operator_for(&claims),
            csrf: issue(
                config,
                user,
                config.tenancy.now().timestamp() + CSRF_LIFETIME_SECS,
            ),
        };
        parts.extensions.insert(viewer.clone());
        Ok(viewer)
    }
}

impl Viewer {
    /// The operator identity, or 403: the page is the operator's.
    pub(super) fn operator(&self) -> Result<&PlatformOperator, ConsoleError> {
        self.operator
            .as_ref()
            .ok_or_else(|| ConsoleError::forbidden("This page is for the platform operator."))
    }

    /// Checks a posted form's token: made for this user by this console,
    /// and not expired by the facade's clock. 403 otherwise, before anything
    /// is changed. Called by [`CsrfForm`](super::form::CsrfForm) only.
    pub(super) fn check_csrf(
        &self,
        config: &ConsoleConfig,
        token: &str,
    ) -> Result<(), ConsoleError> {
        let refused = || {
            ConsoleError::forbidden(
                "The form has expired or did not come from this console; reload the page and try again.",
            )
        };
        let (expires, tag) = token.split_once('.').ok_or_else(refused)?;
        let expires: i64 = expires.parse().map_err(|_| refused())?;
        if expires < config.tenancy.now().timestamp() {
            return Err(refused());
        }
        let tag = from_hex(tag).ok_or_else(refused)?;
        ring::hmac::verify(&config.csrf_secret, &message(self.user, expires), &tag)
            .map_err(|_| refused())
    }
}

/// A token for `user`'s forms, valid until `expires` (Unix seconds):
/// `<expires>.<hex HMAC-SHA256 of user and expiry>`.
fn issue(config: &ConsoleConfig, user: UserId, expires: i64) -> String {
    let tag = ring::hmac::sign(&config.csrf_secret, &message(user, expires));
    format!("{expires}.{}", to_hex(tag.as_ref()))
}

fn message(user: UserId, expires: i64) -> Vec<u8> {
    format!("tenancy-console-csrf:{user}:{expires}").into_bytes()
}

/// `bytes` as lowercase hex, two digits a byte.
pub(in crate::console) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`to_hex`]'s text (either case); `None` for an odd length,
/// non-ASCII text or a pair that is not hex.
pub(in crate::console) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A form posted from another site is refused whatever it carries: the
/// browser says so in `Sec-Fetch-Site`, or an `Origin` that is not this
/// host does.
fn refuse_cross_site(parts: &Parts) -> Result<(), ConsoleError> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return Err(ConsoleError::forbidden(
            "Forms are accepted only from this console.",
        ));
    }
    if let (Some(origin), Some(host)) = (header("origin"), header("host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin != "null" && origin_host != host {
            return Err(ConsoleError::forbidden(
                "Forms are accepted only from this console.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(from_hex(&to_hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("é1"), None);
    }
}
