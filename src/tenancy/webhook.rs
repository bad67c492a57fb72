//! Alerts that reach people: [`WebhookAlertSink`] POSTs each alert as JSON
//! to a URL of yours (a small service that emails, pages or posts to chat),
//! signed with a secret you share with that receiver, and retries.
//!
//! # The request
//!
//! ```text
//! POST <your url>
//! Content-Type: application/json
//! User-Agent: tenancy/<version>
//! Tenancy-Signature: t=1772618400,v1=5d41402abc4b2a76b9719d911017c592...
//!
//! {"type":"limit_alert","alert":{"key":{"org":"…","scope":{"scope":"organization"},
//!  "metric":"tokens","period":{"period":"monthly","start":"2026-03-01"},
//!  "threshold_percent":80},"limit_id":"…","limit":"1000","mode":"hard",
//!  "used":"812","resets_at":"2026-04-01T00:00:00Z","fired_at":"2026-03-04T10:00:00Z"}}
//! ```
//!
//! The body is a JSON object whose `type` is `"limit_alert"` and whose
//! `alert` is a [`LimitAlert`] (amounts are decimal strings, times RFC 3339
//! in UTC). Ignore types and fields you do not know: new ones may be added.
//!
//! # Delivery
//!
//! - A 2xx answer is delivered. Anything else is a failure.
//! - A 5xx answer, a timeout (the sink's
//!   [`timeout`](WebhookAlertSinkBuilder::timeout), 10 s by default, per
//!   request) or a failed connection is retried with exponential backoff
//!   and jitter ([`WebhookRetry`]: 3 retries by default). Every attempt is
//!   signed afresh, with its own timestamp.
//! - A 3xx or 4xx answer is not retried (redirects are not followed by the
//!   default client): fix the URL or the receiver.
//! - When the sink gives up, the [`Tenancy`](crate::Tenancy)'s alert queue
//!   logs the failure (`tracing`, level error); the usage write that raised
//!   the alert has already succeeded and is never undone or slowed. The
//!   queue tries a failed delivery again
//!   ([`alert_delivery_attempts`](crate::TenancyBuilder::alert_delivery_attempts),
//!   3 by default), each time with the sink's own retries: set it to 1 to
//!   leave retrying to the sink.
//! - An alert may arrive more than once (a retry after a timeout whose
//!   request had in fact landed): its `alert.key` identifies it, so a
//!   receiver that must not repeat itself drops a key it has seen.
//!
//! # Verifying a delivery
//!
//! The `Tenancy-Signature` header is comma-separated `name=value` pairs:
//! `t`, the Unix time in whole seconds when the request was signed
//! (decimal ASCII digits), and one or more `v1`, an HMAC-SHA256 signature
//! as 64 lowercase hexadecimal digits. The sink sends one `v1`, and a
//! header with more than 8 is refused. Other names may appear later;
//! ignore them. A receiver:
//!
//! 1. Refuses a header longer than 4096 bytes or with more than 8 `v1`
//!    (the sink sends neither) before doing any other work.
//! 2. Refuses the request if `t` is more than a tolerance away from its
//!    own clock ([`DEFAULT_TOLERANCE`]: 5 minutes), so that a captured
//!    request cannot be replayed later.
//! 3. Takes the raw body bytes, exactly as received, before any JSON
//!    parsing (re-serialized JSON would not match), and builds the signed
//!    bytes: the `t` value's ASCII digits as they appear in the header,
//!    one `.` (0x2E), then the raw body.
//! 4. Computes HMAC-SHA256 with the shared secret's bytes as the key (the
//!    UTF-8 bytes of the secret string given to
//!    [`secret`](WebhookAlertSinkBuilder::secret)) over the signed bytes,
//!    once, and writes the 32-byte result as 64 lowercase hex digits.
//! 5. Accepts the request if any `v1` equals it, comparing in constant time
//!    (`hmac.compare_digest` in Python, `crypto.timingSafeEqual` in
//!    Node.js).
//!
//! Answer 2xx once it is accepted (and queue slow work), 401 when it is
//! refused. In Python:
//!
//! ```text
//! import hashlib, hmac, time
//!
//! def verify(secret: bytes, header: str, body: bytes, tolerance: int = 300) -> bool:
//!     if len(header.encode()) > 4096:
//!         return False
//!     pairs = [p.strip().split("=", 1) for p in header.split(",") if "=" in p]
//!     ts = [v for k, v in pairs if k == "t"]
//!     sigs = [v for k, v in pairs if k == "v1"]
//!     if len(ts) != 1 or not (ts[0].isascii() and ts[0].isdigit()) or not 1 <= len(sigs) <= 8:
//!         return False
//!     if abs(time.time() - int(ts[0])) > tolerance:
//!         return False
//!     expected = hmac.new(secret, ts[0].encode() + b"." + body, hashlib.sha256).hexdigest()
//!     return any(hmac.compare_digest(expected.encode(), s.encode()) for s in sigs)
//! ```
//!
//! A receiver in Rust calls [`verify`].
//!
//! The secret is at least [`MIN_SECRET_BYTES`] (32) bytes: for example
//! `openssl rand -hex 32`, given to both sides as text. It is never logged;
//! neither is the URL's path or query, which some services use as a
//! credential.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable as _;
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use ring::hmac;
use serde::Serialize;

use super::alerts::AlertSink;
use crate::clock::{Clock, SystemClock};
use crate::config::check_duration;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::LimitAlert;

/// The header that carries the signature: `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "Tenancy-Signature";

/// How far a delivery's timestamp may be from the receiver's clock, either
/// way, before [`verify`] refuses it as a possible replay: 5 minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The shortest secret accepted: 32 bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest [`SIGNATURE_HEADER`] value [`verify`] reads.
const MAX_HEADER_BYTES: usize = 4096;

/// The most `v1` signatures [`verify`] accepts in one header.
const MAX_SIGNATURES: usize = 8;

/// The value of the body's `type`.
const ALERT_TYPE: &str = "limit_alert";

const AGENT: &str = concat!("tenancy/", env!("CARGO_PKG_VERSION"));

/// How a delivery is retried after a 5xx answer, a timeout or a failed
/// connection: exponential backoff with jitter.
///
/// ```
/// use std::time::Duration;
/// use tenancy::alerts::webhook::WebhookRetry;
/// let retry = WebhookRetry::default()
///     .max_retries(5)
///     .delays(Duration::from_millis(100), Duration::from_secs(10));
/// assert_eq!(retry.max_retries, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookRetry {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: usize,
    /// The first delay.
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

crate::config::retry_policy!(WebhookRetry, "webhook retry");

impl Default for WebhookRetry {
    /// 3 retries, 250 ms doubling up to 5 s.
    fn default() -> Self {
        WebhookRetry {
            max_retries: 3,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// An [`AlertSink`] that POSTs each alert, signed, to a URL (the module
/// docs say what is sent and how a receiver verifies it).
///
/// ```
/// use tenancy::alerts::webhook::WebhookAlertSink;
/// use tenancy::{MemoryStore, Tenancy};
///
/// let sink = WebhookAlertSink::builder()
///     .url("https://alerts.example.com/tenancy")
///     .secret("a shared secret of at least 32 bytes")
///     .build()?;
/// let tenancy = Tenancy::builder().store(MemoryStore::new()).alert_sink(sink).build()?;
/// # Ok::<(), tenancy::Error>(())
/// ```
pub struct WebhookAlertSink {
    client: reqwest::Client,
    url: reqwest::Url,
    key: hmac::Key,
    timeout: Duration,
    retry: WebhookRetry,
    clock: Arc<dyn Clock>,
}

impl WebhookAlertSink {
    /// A builder; the URL and the secret are required.
    pub fn builder() -> WebhookAlertSinkBuilder {
        WebhookAlertSinkBuilder::default()
    }

    /// One attempt: signs `body` now and POSTs it.
    async fn post(&self, body: &[u8]) -> Result<(), Failure> {
        let timestamp = self.clock.now().timestamp();
        let signature = signature_value(&self.key, timestamp, body);
        let sent = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, AGENT)
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let retry = !e.is_builder() && !e.is_redirect();
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                // Without the URL: its path may be a credential.
                let e = e.without_url();
                return Err(Failure {
                    error: Error::new(
                        ErrorKind::Unavailable,
                        format!("webhook POST to {} {what}", origin(&self.url)),
                    )
                    .with_source(e),
                    retry,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = status.is_server_error();
        let kind = if retry {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Unexpected
        };
        Err(Failure {
            error: Error::new(
                kind,
                format!(
                    "webhook POST to {} answered {status}{}",
                    origin(&self.url),
                    if retry { "" } else { "; not retried" }
                ),
            ),
            retry,
        })
    }
}

impl fmt::Debug for WebhookAlertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookAlertSink")
            .field("url", &origin(&self.url))
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AlertSink for WebhookAlertSink {
    /// POSTs the alert, retrying 5xx answers, timeouts and failed
    /// connections. The error after the last attempt is not retryable
    /// ([`Error::is_retryable`]): the sink has retried already.
    async fn deliver(&self, alert: &LimitAlert) -> Result<()> {
        let body = serde_json::to_vec(&Envelope {
            kind: ALERT_TYPE,
            alert,
        })
        .map_err(|e| Error::unexpected("encoding an alert as JSON").with_source(e))?;
        let attempt = || self.post(&body);
        attempt
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retry)
            .notify(|f: &Failure, delay| {
                tracing::warn!(error = %f.error, ?delay, "webhook alert delivery failed; retrying");
            })
            .await
            .map_err(|f| f.error.permanent())
    }
}

/// A failed attempt, and whether another may succeed.
struct Failure {
    error: Error,
    retry: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    alert: &'a LimitAlert,
}

/// Builds a [`WebhookAlertSink`]: the URL and the secret are required;
/// [`build`](Self::build) checks every setting, so a bad one is a `Config`
/// error naming it (never the secret).
///
/// ```
/// use tenancy::ErrorKind;
/// use tenancy::alerts::webhook::WebhookAlertSink;
///
/// let err = WebhookAlertSink::builder()
///     .url("https://alerts.example.com/tenancy")
///     .secret("too short")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert!(err.message().contains("webhook secret") && !err.message().contains("too short"));
/// ```
pub struct WebhookAlertSinkBuilder {
    url: Option<String>,
    secret: Option<Vec<u8>>,
    client: Option<reqwest::Client>,
    timeout: Duration,
    retry: WebhookRetry,
    clock: Arc<dyn Clock>,
}

impl Default for WebhookAlertSinkBuilder {
    fn default() -> Self {
        WebhookAlertSinkBuilder {
            url: None,
            secret: None,
            client: None,
            timeout: Duration::from_secs(10),
            retry: WebhookRetry::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl WebhookAlertSinkBuilder {
    /// Where alerts are POSTed: an `http` or `https` URL. Required.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The secret shared with the receiver, at least [`MIN_SECRET_BYTES`]
    /// bytes. Required.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// The HTTP client; by default one that follows no redirects. The
    /// sink sets its own per-request timeout and headers.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// How long one attempt may take, connection included. Default 10 s;
    /// 100 ms to 5 minutes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How failed attempts are retried; [`WebhookRetry::default`] by
    /// default.
    pub fn retry(mut self, retry: WebhookRetry) -> Self {
        self.retry = retry;
        self
    }

    /// The clock the signatures' timestamps are read from;
    /// [`SystemClock`] by default. Receivers compare them with their own
    /// clocks, so change it only in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the sink.
    pub fn build(self) -> Result<WebhookAlertSink> {
        let raw = self
            .url
            .ok_or_else(|| Error::config("the webhook url is required: call .url(...)"))?;
        // The parser's error names what is wrong, never the text: the URL
        // is not quoted, since its path or query may be a credential.
        let url = reqwest::Url::parse(&raw)
            .map_err(|e| Error::config("the webhook url is not a valid URL").with_source(e))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(Error::config(format!(
                "the webhook url must be http or https with a host, not {}",
                origin(&url)
            )));
        }
        let secret = self
            .secret
            .ok_or_else(|| Error::config("the webhook secret is required: call .secret(...)"))?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::config(format!(
                "the webhook secret is {} bytes; it must be at least {MIN_SECRET_BYTES}",
                secret.len()
            )));
        }
        check_duration(
            "webhook timeout",
            self.timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )?;
        self.retry.validate()?;
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::config("building the webhook HTTP client").with_source(e))?,
        };
        Ok(WebhookAlertSink {
            client,
            url,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            timeout: self.timeout,
            retry: self.retry,
            clock: self.clock,
        })
    }
}

impl fmt::Debug for WebhookAlertSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self
            .url
            .as_deref()
            .map(|u| reqwest::Url::parse(u).map_or_else(|_| "<invalid>".into(), |u| origin(&u)));
        f.debug_struct("WebhookAlertSinkBuilder")
            .field("url", &url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The [`SIGNATURE_HEADER`] value for `body` signed with `secret` at
/// `timestamp` (Unix seconds): `t=<timestamp>,v1=<hex>`. For a receiver's
/// tests; the sink signs its own requests.
///
/// ```
/// use tenancy::alerts::webhook::sign;
///
/// // HMAC-SHA256 of the bytes `1772618400.{"type":"limit_alert"}`.
/// assert_eq!(
///     sign(b"a shared secret of at least 32 bytes", 1772618400, br#"{"type":"limit_alert"}"#),
///     "t=1772618400,v1=37867085430a4fd4bdc7ef4c319c61389d98e3b287b78b4cb683f42924e81490",
/// );
/// ```
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    signature_value(&hmac::Key::new(hmac::HMAC_SHA256, secret), timestamp, body)
}

/// Checks a delivery as the module docs describe: a header of at most
/// 4096 bytes with at most 8 `v1` signatures, `t` within `tolerance` of
/// `now` (either way), and a `v1` signature of `<t>.<body>` with `secret`.
/// `body` is the raw request body; `header` the [`SIGNATURE_HEADER`]
/// value. The HMAC is computed once, whatever the header holds.
///
/// [`ErrorKind::Unauthenticated`] when the header is too long, has too
/// many signatures or is missing parts, the timestamp is out of
/// tolerance, or no signature matches; the message says which. A receiver
/// answers 401 then.
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use tenancy::ErrorKind;
/// use tenancy::alerts::webhook::{DEFAULT_TOLERANCE, sign, verify};
///
/// let secret = b"a shared secret of at least 32 bytes";
/// let body = br#"{"type":"limit_alert","alert":{}}"#;
/// let sent_at = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
/// let header = sign(secret, sent_at.timestamp(), body);
///
/// assert!(verify(secret, &header, body, sent_at, DEFAULT_TOLERANCE).is_ok());
/// let err = verify(b"another secret", &header, body, sent_at, DEFAULT_TOLERANCE).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Unauthenticated);
/// let replayed = sent_at + Duration::from_secs(600);
/// assert!(verify(secret, &header, body, replayed, DEFAULT_TOLERANCE).is_err());
/// ```
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<()> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(unverified(format_args!(
            "the header is {} bytes, more than {MAX_HEADER_BYTES}",
            header.len()
        )));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for pair in header.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", t)) if timestamp.replace(t).is_some() => {
                return Err(unverified("more than one t"));
            }
            Some(("v1", _)) if signatures.len() == MAX_SIGNATURES => {
                return Err(unverified(format_args!(
                    "more than {MAX_SIGNATURES} v1 signatures"
                )));
            }
            Some(("v1", signature)) => signatures.push(signature),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return Err(unverified("no t"));
    };
    let seconds: i64 = match t.parse() {
        Ok(seconds) if t.bytes().all(|b| b.is_ascii_digit()) => seconds,
        _ => return Err(unverified("t is not a Unix time in seconds")),
    };
    if signatures.is_empty() {
        return Err(unverified("no v1 signature"));
    }
    let age = now.timestamp().abs_diff(seconds);
    if age > tolerance.as_secs() {
        return Err(unverified(format_args!(
            "signed {age} s from now, more than the tolerance of {} s",
            tolerance.as_secs()
        )));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(t.as_bytes());
    context.update(b".");
    context.update(body);
    let expected = context.sign();
    // ring has no supported constant-time comparison (`ring::constant_time`
    // is deprecated), so each candidate goes through `hmac::verify`, whose
    // check is constant-time: the HMAC of the candidate against that of the
    // expected tag, both over 32 bytes. Equal tags give equal HMACs, and
    // the timing of a mismatch tells nothing about the expected tag.
    let blinded = hmac::sign(&key, expected.as_ref());
    let matches = signatures
        .iter()
        .filter_map(|s| decode_tag(s))
        .any(|tag| hmac::verify(&key, &tag, blinded.as_ref()).is_ok());
    if !matches {
        return Err(unverified(
            "no v1 signature matches: the body was altered or signed with another secret",
        ));
    }
    Ok(())
}

fn unverified(why: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        format!("webhook signature refused: {why}"),
    )
}

/// `t=<timestamp>,v1=<lowercase hex of HMAC-SHA256(key, "<timestamp>.<body>")>`.
fn signature_value(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={timestamp},v1={}", hex(context.sign().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A `v1` value as an HMAC-SHA256 tag: 64 hex digits, lowercase or
/// uppercase; `None` for anything else.
fn decode_tag(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut tag = [0; 32];
    for (byte, pair) in tag.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(tag)
}

/// `scheme://host[:port]`: the URL without its path, query or credentials.
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Signatures are HMAC-SHA256 in 64 lowercase hex digits (RFC 4231,
    /// test case 2); `v1` values are read in either case.
    #[test]
    fn signs_hmac_sha256_in_lowercase_hex() {
        assert_eq!(sign(b"Jefe", 0, b"").len(), "t=0,v1=".len() + 64);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let upper = "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843";
        assert_eq!(
            decode_tag(upper).as_ref().map(|t| &t[..]),
            Some(tag.as_ref())
        );
        assert_eq!(decode_tag(&upper[..62]), None, "31 bytes");
        assert_eq!(decode_tag(&format!("{upper}00")), None, "33 bytes");
        assert_eq!(decode_tag(&upper.replace('B', "g")), None);
        assert_eq!(decode_tag(""), None);
    }

    /// A header cannot make `verify` compute an HMAC per entry: more than
    /// 8 `v1`, or more than 4096 bytes, is refused before any HMAC, even
    /// with the right signature among them; a few bogus ones beside the
    /// right one are fine.
    #[test]
    fn verify_bounds_the_work_a_header_asks_for() {
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
        let body = b"{\"type\":\"limit_alert\"}";
        let header = sign(SECRET, now.timestamp(), body);
        let ok = |h: &str| verify(SECRET, h, body, now, DEFAULT_TOLERANCE);
        let refused = |h: &str| {
            let err = ok(h).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
            err.message().to_owned()
        };

        let flood = format!("{},{header}", "v1=,".repeat(100_000));
        assert!(refused(&flood).contains("more than 4096"));
        let wrong = "0".repeat(64);
        let seven_bogus = ["", "00", "zz", &wrong, &wrong, &"0".repeat(66), "x"]
            .map(|v| format!("v1={v}"))
            .join(",");
        ok(&format!("{seven_bogus},{header}")).unwrap();
        ok(&format!("{header},{seven_bogus}")).unwrap();
        let nine = format!("v1={wrong},{seven_bogus},{header}");
        assert!(nine.len() <= MAX_HEADER_BYTES);
        assert!(refused(&nine).contains("more than 8 v1"));

        // The timestamp is checked before any signature.
        let stale = now + Duration::from_secs(301);
        let err = verify(
            SECRET,
            &format!("t={},v1=00", now.timestamp()),
            body,
            stale,
            DEFAULT_TOLERANCE,
        )
        .unwrap_err();
        assert!(err.message().contains("tolerance"), "{err}");
    }

    #[test]
    fn verify_refuses_what_it_should() {
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
        let body = b"{\"type\":\"limit_alert\"}";
        let header = sign(SECRET, now.timestamp(), body);
        let ok = |h: &str, b: &[u8]| verify(SECRET, h, b, now, DEFAULT_TOLERANCE);
        ok(&header, body).unwrap();
        // Extra fields and spaces are ignored; any matching v1 is enough.
        ok(&format!("v0=zz, {header}, v1=00, x=1"), body).unwrap();
        let refused = |h: &str, b: &[u8]| {
            let err = ok(h, b).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
            err.message().to_owned()
        };
        assert!(refused(&header, b"{}").contains("no v1 signature matches"));
        assert!(refused("v1=00", body).contains("no t"));
        assert!(refused(&format!("t=1,{header}"), body).contains("more than one t"));
        assert!(refused("t=-5,v1=00", body).contains("Unix time"));
        assert!(refused("t=+5,v1=00", body).contains("Unix time"));
        assert!(refused(&format!("t={}", now.timestamp()), body).contains("no v1"));
        assert!(refused("", body).contains("no t"));
        let late = now + Duration::from_secs(301);
        let err = verify(SECRET, &header, body, late, DEFAULT_TOLERANCE).unwrap_err();
        assert!(err.message().contains("tolerance"), "{err}");
        let early = now - Duration::from_secs(301);
        assert!(verify(SECRET, &header, body, early, DEFAULT_TOLERANCE).is_err());
        let edge = now + Duration::from_secs(300);
        verify(SECRET, &header, body, edge, DEFAULT_TOLERANCE).unwrap();
    }

    #[test]
    fn builder_checks_and_redacts() {
        let base = || {
            WebhookAlertSink::builder()
                .url("https://hooks.example.com/services/T0/B0/XXXXSECRETPATH?token=abc")
                .secret(SECRET)
        };
        let sink = base().build().unwrap();
        let shown = format!("{sink:?}");
        assert!(shown.contains("https://hooks.example.com"), "{shown}");
        for hidden in ["XXXXSECRETPATH", "token", "0123456789abcdef"] {
            assert!(!shown.contains(hidden), "{shown}");
            assert!(!format!("{:?}", base()).contains(hidden));
        }
        let config = |b: WebhookAlertSinkBuilder| {
            let err = b.build().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            err.message().to_owned()
        };
        assert!(config(base().secret("short")).contains("webhook secret"));
        assert!(config(base().url("ftp://x.example")).contains("http or https"));
        assert!(config(base().url("not a url")).contains("webhook url"));
        // A URL that does not parse is not quoted: its path or query may be
        // a credential. The parser's reason is the source.
        for bad in [
            "hooks.example.com/services/XXXXSECRETPATH?token=abc",
            "https://hooks.example.com:99999/XXXXSECRETPATH?token=abc",
            "https://hooks example.com/XXXXSECRETPATH?token=abc",
        ] {
            let err = base().url(bad).build().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("webhook url is not a valid URL"), "{shown}");
            assert!(
                !shown.contains("XXXXSECRETPATH") && !shown.contains("token"),
                "{shown}"
            );
            assert!(std::error::Error::source(&err).is_some());
        }
        assert!(config(WebhookAlertSink::builder().secret(SECRET)).contains("webhook url"));
        assert!(
            config(WebhookAlertSink::builder().url("https://x.example")).contains("webhook secret")
        );
        assert!(config(base().timeout(Duration::ZERO)).contains("webhook timeout"));
        let retry = WebhookRetry::default().max_retries(21);
        assert!(config(base().retry(retry)).contains("max_retries"));
    }
}
