//! The console's stylesheet, embedded in the binary and served under a
//! name that changes with its content, so it can be cached for good.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::render::ConsoleError;

const STYLESHEET: &str = include_str!("assets/console.css");

/// `console-<hash>.css`: the stylesheet's name, which changes whenever its
/// content does (FNV-1a of the content).
pub(super) fn stylesheet_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let hash = STYLESHEET.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("console-{hash:016x}.css")
    })
}

/// `GET /assets/{name}`: the stylesheet, cached for a year (its name
/// changes with it; the router's layer adds the other security headers and
/// keeps this `Cache-Control`); anything else is 404.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    if name != stylesheet_name() {
        return ConsoleError::not_found().into_response();
    }
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
