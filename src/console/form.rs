//! The only way a console handler reads a posted form: [`CsrfForm`],
//! which refuses the post unless it carries the viewer's CSRF token, before
//! the handler runs.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequest, FromRequestParts, RawForm, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::Viewer;
use super::config::ConsoleConfig;

/// The name of the field every console form carries its token in.
const TOKEN_FIELD: &str = "csrf";

/// A posted `application/x-www-form-urlencoded` form, decoded into `T`
/// only after its CSRF token was checked: made for the signed-in user by
/// this console, not expired, posted from this site (the [`Viewer`]
/// refuses a cross-site post). Anything else is 403 before the handler
/// runs, so a handler cannot forget the check.
///
/// In this order: the viewer (401, 400, 403 from another site), the
/// content type and body (axum's 415, 413), the token (403, also when it is
/// missing or given twice), then `T` (axum's 422). `T` does not name the
/// token; give every field a default (`#[serde(default)]`) so that a
/// missing one is the handler's to explain. A form with nothing but the
/// token is `CsrfForm` ([`NoFields`]).
#[derive(Debug)]
pub(super) struct CsrfForm<T = NoFields>(pub(super) T);

/// The fields of a form that carries only its token.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NoFields {}

impl<T> FromRequest<Arc<ConsoleConfig>> for CsrfForm<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, config: &Arc<ConsoleConfig>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, config)
            .await
            .map_err(IntoResponse::into_response)?;
        let RawForm(bytes) = RawForm::from_request(Request::from_parts(parts.clone(), body), &())
            .await
            .map_err(IntoResponse::into_response)?;
        let Form(fields) = decode::<Vec<(String, String)>>(&parts, &bytes).await?;
        let mut tokens = fields.iter().filter(|(name, _)| name == TOKEN_FIELD);
        let token = match (tokens.next(), tokens.next()) {
            (Some((_, token)), None) => token.as_str(),
            _ => "",
        };
        viewer
            .check_csrf(config, token)
            .map_err(IntoResponse::into_response)?;
        let Form(form) = decode::<T>(&parts, &bytes).await?;
        Ok(CsrfForm(form))
    }
}

/// The posted `bytes` decoded as axum's [`Form`] decodes them, with its
/// rejections.
async fn decode<T: DeserializeOwned>(parts: &Parts, bytes: &Bytes) -> Result<Form<T>, Response> {
    let request = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    Form::<T>::from_request(request, &())
        .await
        .map_err(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// What reads a request body, or checks a token by hand: only this
    /// module may name them in the console.
    const ONLY_HERE: [&str; 7] = [
        "Form",
        "RawForm",
        "Json",
        "Bytes",
        "Multipart",
        "FromRequest",
        "check_csrf",
    ];

    /// The console's Rust sources other than this module and the one that
    /// issues tokens, with their comments left out.
    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("console/form.rs")
            {
                let code: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .map(|line| format!("{line}\n"))
                    .collect();
                out.push((path.display().to_string(), code));
            }
        }
    }

    #[test]
    fn no_console_handler_reads_a_form_but_through_csrf_form() {
        let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
        let mut files = Vec::new();
        sources(&console, &mut files);
        assert!(files.len() > 5, "{files:?}");
        let mut found = Vec::new();
        for (path, code) in &files {
            for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                let allowed = word == "check_csrf" && path.ends_with("console/auth.rs");
                if ONLY_HERE.contains(&word) && !allowed {
                    found.push(format!("{path}: {word}"));
                }
            }
        }
        assert!(found.is_empty(), "read forms with CsrfForm: {found:?}");
        // The check can fail: the extractor's own module names them.
        let here = include_str!("form.rs");
        assert!(here.contains("Form::<T>::from_request"));
    }
}
