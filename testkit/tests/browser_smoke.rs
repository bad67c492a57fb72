//! The real-browser harness, proven on two small server-rendered pages:
//! `testkit/browser/smoke.mjs` follows a link, submits a form that works
//! without JavaScript, reads the result, takes screenshots and checks
//! accessibility, including a page that must fail the check. Then the
//! harness's own failure paths: a scenario whose assertion fails, and one
//! that hangs past its timeout and is killed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use tenancy_testkit::browser::{Browser, scenario_path};

/// How the test server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As a console page should.
    Correct,
    /// The form handler drops the name: the scenario's result check fails.
    LosesName,
    /// The home page never answers: the scenario overruns its timeout.
    Hangs,
}

#[derive(Debug, Default)]
struct Seen {
    orgs: Vec<String>,
    /// The `content-type` of each form post.
    post_types: Vec<String>,
}

#[derive(Debug, Clone)]
struct App {
    mode: Mode,
    seen: Arc<Mutex<Seen>>,
}

/// A running test server on 127.0.0.1; dropping it stops the server.
struct Server {
    base_url: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mode: Mode) -> Server {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = App {
        mode,
        seen: Arc::clone(&seen),
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/new", get(new_form).post(create))
        .route("/broken", get(broken))
        .route("/style.css", get(style))
        .route("/logo.svg", get(logo))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the test server");
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    Server {
        base_url,
        seen,
        task,
    }
}

/// The console will send a strict CSP; the harness must work under it.
async fn security_headers(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    );
    response
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, main: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · tenancy test page</title>
<link rel="stylesheet" href="/style.css">
<link rel="icon" href="/logo.svg">
</head>
<body>
<header><a href="/"><img src="/logo.svg" alt="" width="32" height="32"> tenancy</a></header>
<main>
{main}
</main>
</body>
</html>
"#
    ))
}

#[derive(Debug, Deserialize)]
struct HomeQuery {
    created: Option<usize>,
}

async fn home(State(app): State<App>, Query(q): Query<HomeQuery>) -> Html<String> {
    if app.mode == Mode::Hangs {
        std::future::pending::<()>().await;
    }
    let seen = app.seen.lock().unwrap();
    let status = match q.created.and_then(|i| seen.orgs.get(i)) {
        Some(name) => format!(
            "<p role=\"status\">Created organization “{}”.</p>\n",
            escape(name)
        ),
        None => String::new(),
    };
    let list = if seen.orgs.is_empty() {
        "<p>No organizations yet.</p>".to_owned()
    } else {
        let items: String = seen
            .orgs
            .iter()
            .map(|name| format!("  <li>{}</li>\n", escape(name)))
            .collect();
        format!("<ul aria-label=\"Organizations\">\n{items}</ul>")
    };
    page(
        "Organizations",
        &format!(
            "{status}<h1>Organizations</h1>\n{list}\n<p><a href=\"/new\">New organization</a></p>"
        ),
    )
}

async fn new_form() -> Html<String> {
    page(
        "New organization",
        r#"<h1>New organization</h1>
<form method="post" action="/new">
  <label for="name">Name</label>
  <input id="name" name="name" required maxlength="100" autocomplete="organization">
  <button type="submit">Create organization</button>
</form>
<p><a href="/">Back to organizations</a></p>"#,
    )
}

#[derive(Debug, Deserialize)]
struct NewOrg {
    name: String,
}

async fn create(State(app): State<App>, headers: HeaderMap, body: String) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let Ok(form) = serde_urlencoded::from_str::<NewOrg>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad form").into_response();
    };
    let mut seen = app.seen.lock().unwrap();
    seen.post_types.push(content_type);
    let name = match app.mode {
        Mode::LosesName => String::new(),
        _ => form.name.trim().to_owned(),
    };
    seen.orgs.push(name);
    let index = seen.orgs.len() - 1;
    // Post/redirect/get: reloading the result page does not post again.
    Redirect::to(&format!("/?created={index}")).into_response()
}

/// Deliberately inaccessible: an image without alt text, a button without
/// a name.
async fn broken() -> Html<String> {
    page(
        "Broken on purpose",
        r#"<h1>Broken on purpose</h1>
<img src="/logo.svg" width="64" height="64">
<form method="post" action="/new"><button type="submit"></button></form>"#,
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        "body { font-family: sans-serif; margin: 0; color: #1a1a1a; background: #fff; }
header { padding: .75rem 1.5rem; background: #1d3557; }
header a { color: #fff; text-decoration: none; font-weight: bold; display: inline-flex; gap: .5rem; align-items: center; }
main { padding: 1.5rem; max-width: 40rem; }
a { color: #1d4ed8; }
label { display: block; font-weight: bold; margin-bottom: .25rem; }
input { font: inherit; padding: .4rem; width: 20rem; max-width: 100%; }
button { font: inherit; margin-top: .75rem; display: block; padding: .4rem 1rem; background: #1d3557; color: #fff; border: 0; border-radius: .25rem; }
[role=status] { background: #e6f4ea; border: 1px solid #137333; padding: .5rem 1rem; }
",
    )
}

async fn logo() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#e63946"/><text x="16" y="22" font-size="16" text-anchor="middle" fill="#fff" font-family="sans-serif">t</text></svg>"##,
    )
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test]
async fn smoke_scenario_clicks_through_submits_screenshots_and_checks_accessibility() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let server = serve(Mode::Correct).await;
    let out = browser
        .run_scenario(&scenario_path("smoke.mjs"), &server.base_url)
        .await
        .unwrap();
    println!(
        "{}\n{}\n(elapsed {:?})",
        out.stdout, out.stderr, out.elapsed
    );

    // The form reached the server as a plain HTML form post.
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.orgs, ["Acme & Sons <Ltd>"]);
    assert_eq!(seen.post_types, ["application/x-www-form-urlencoded"]);

    // The screenshots are full pages at the default 1280 px width.
    for name in ["smoke-home", "smoke-created"] {
        let path = browser.screenshot_dir().join(format!("{name}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (width, height) = png_size(&bytes);
        assert_eq!(width, 1280, "{name}.png width");
        assert!(height >= 720, "{name}.png height {height}");
        assert!(
            out.stdout.contains(&path.display().to_string()),
            "{name} not reported"
        );
    }

    // Three pages passed, and the broken one was caught for both faults,
    // audited as a copy (no JavaScript) and in place.
    assert_eq!(
        out.stdout
            .matches("no serious or critical violations")
            .count(),
        3,
        "{}",
        out.stdout
    );
    for how in ["without JavaScript", "with JavaScript"] {
        let caught = out
            .stdout
            .split(&format!(
                "expected failure (accessibility of the broken page {how})"
            ))
            .nth(1)
            .unwrap_or_else(|| panic!("no expected failure {how}:\n{}", out.stdout));
        let caught = caught.split("\n  ok (").next().unwrap();
        assert!(caught.contains("[critical] image-alt"), "{caught}");
        assert!(caught.contains("[critical] button-name"), "{caught}");
    }
}

#[tokio::test]
async fn a_failing_assertion_fails_the_run_with_its_output() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let server = serve(Mode::LosesName).await;
    let shots = tempfile::tempdir().unwrap();
    let browser = browser.with_screenshot_dir(shots.path());
    let err = browser
        .run_scenario(&scenario_path("smoke.mjs"), &server.base_url)
        .await
        .expect_err("the scenario must fail when the name is lost");
    let message = err.to_string();
    println!("{message}");

    assert_eq!(
        err.exit_status().and_then(|s| s.code()),
        Some(1),
        "{message}"
    );
    assert!(
        err.stderr()
            .contains("FAILED: scenario smoke in step \"submit the form\""),
        "{message}"
    );
    assert!(
        err.stderr()
            .contains("Created organization “Acme & Sons <Ltd>”."),
        "{message}"
    );
    // The message carries what the scenario printed on both streams, and
    // the failure screenshot.
    assert!(
        err.stdout().contains("scenario smoke: FAILED in"),
        "{message}"
    );
    assert!(message.contains("scenario smoke: FAILED in"), "{message}");
    assert!(message.contains("step: submit the form"), "{message}");
    assert!(
        message.contains("FAILED: scenario smoke in step \"submit the form\""),
        "{message}"
    );
    let failure_shot = shots.path().join("smoke-failure.png");
    assert!(
        message.contains(&failure_shot.display().to_string()),
        "{message}"
    );
    let (width, _) = png_size(&std::fs::read(&failure_shot).unwrap());
    assert_eq!(width, 1280);
}

#[tokio::test]
async fn a_hanging_scenario_is_killed_at_its_timeout() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let server = serve(Mode::Hangs).await;
    let shots = tempfile::tempdir().unwrap();
    let browser = browser
        .with_timeout(Duration::from_secs(5))
        .with_screenshot_dir(shots.path());
    let err = browser
        .run_scenario(&scenario_path("smoke.mjs"), &server.base_url)
        .await
        .expect_err("the scenario must time out");
    let message = err.to_string();
    println!("{message}");

    assert!(err.is_timeout(), "{message}");
    assert!(err.elapsed() < Duration::from_secs(9), "{message}");
    // What it printed before the kill is kept.
    assert!(
        err.stdout().contains("step: open the home page"),
        "{message}"
    );
    // Every process of the run died at the kill (a survivor is named in
    // the message), and none kept the pipes open to cut the output off.
    assert_eq!(err.survivors(), &[] as &[u32], "{message}");
    assert!(
        !message.contains("survived") && !message.contains("cut off"),
        "{message}"
    );
    // The kill was reported: at least the scenario's own `node`.
    assert!(
        err.stderr()
            .contains("harness: at the timeout, the run had"),
        "{message}"
    );
}
