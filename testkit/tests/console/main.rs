//! The console, mounted in the example host app: its security over real
//! HTTP (`security`), and its pages in a real browser (`browser`).

#[path = "../../../examples/host_app.rs"]
mod host_app;

#[allow(dead_code)]
#[path = "../../../examples/admin.rs"]
mod admin;

mod audit;
mod browser;
mod domains;
mod invitations;
mod onboarding;
mod ownership;
mod plans;
mod rate_limits;
mod reports;
mod security;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tenancy::UserId;
use tenancy::clock::FakeClock;

/// When the demo's clock stands: late in a month, so its charts have days.
const DEMO_NOW: &str = "2026-11-24T03:00:00Z";

/// A client of a console mounted at `/console` on `base`.
struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client that does not follow redirects, so tests see them.
    fn new(base: String) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Client { base, http }
    }
}

/// The demo app served on a loopback port.
struct Site {
    client: Client,
    demo: host_app::Demo,
    /// The demo's clock, shared with its facade: advancing it ages the
    /// console's form tokens.
    clock: FakeClock,
}

/// A response: status, headers, body.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no form on the page:\n{}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

async fn site() -> Site {
    let clock = FakeClock::at(DEMO_NOW);
    let demo = host_app::demo_with(clock.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = host_app::router(demo.app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Site {
        client: Client::new(base),
        demo,
        clock,
    }
}

impl std::ops::Deref for Site {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Site {
    fn cookie(user: UserId) -> String {
        format!("sb-access-token={}", host_app::sign_token(user))
    }

    async fn read(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }
}

impl Client {
    /// `GET /console<path>` signed in as `user`.
    async fn get(&self, user: UserId, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}/console{path}", self.base))
            .header("cookie", Site::cookie(user))
            .send()
            .await
            .unwrap();
        Site::read(response).await
    }

    /// `POST /console<path>` as a form, signed in as `user`, with `headers`.
    async fn post(
        &self,
        user: UserId,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .http
            .post(format!("{}/console{path}", self.base))
            .header("cookie", Site::cookie(user))
            .form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Site::read(request.send().await.unwrap()).await
    }
}
