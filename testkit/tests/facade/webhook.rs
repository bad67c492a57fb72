//! Alerts as signed webhooks, over real HTTP: a receiver on 127.0.0.1
//! (axum) checks every delivery the way `tenancy::alerts::webhook`'s docs
//! tell a receiver to, with its own code (HMAC-SHA256 from `ring`, hex, the
//! timestamp tolerance), not the crate's helper. Deliveries are retried
//! after 5xx answers and timeouts, not after 4xx; a receiver that always
//! fails is given up on without touching the write; a wrong secret, an
//! altered body and a stale timestamp are refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use ring::hmac;
use tenancy::alerts::webhook::{
    self, DEFAULT_TOLERANCE, SIGNATURE_HEADER, WebhookAlertSink, WebhookAlertSinkBuilder,
    WebhookRetry,
};
use tenancy::alerts::{AlertSink, LogAlertSink};
use tenancy::clock::FakeClock;
use tenancy::limits::{AlertKey, LimitAlert, LimitMode, LimitScope, Period, PeriodKey};
use tenancy::{ErrorKind, LimitId, MetricKey, OrgId, Tenancy, UsageEvent};

use crate::scene::{RESERVATION_TTL, Scene, dec, monthly, scene};

const SECRET: &str = "the webhook secret, shared with the receiver (32+ bytes)";

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// This status, without looking at the request.
    Status(u16),
    /// 200, but only after this long: later than the sink waits.
    Stall(Duration),
    /// Verify as documented: 200 if the signature holds, 401 if not.
    Verify,
}

/// One verified delivery, as received.
#[derive(Debug, Clone)]
struct Delivery {
    signature: String,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Receiver {
    secret: Arc<Vec<u8>>,
    /// The answers to the first requests, in order; then `then`.
    script: Arc<Mutex<VecDeque<Answer>>>,
    then: Answer,
    hits: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    delivered: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 that checks signatures with `secret`,
    /// answers `script` first and then `then`; returns it and its URL.
    async fn start(secret: &str, script: &[Answer], then: Answer) -> (Receiver, String) {
        let receiver = Receiver {
            secret: Arc::new(secret.as_bytes().to_vec()),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            then,
            hits: Arc::default(),
            refused: Arc::default(),
            delivered: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!(
            "http://{}/hooks/tenancy?path=is-secret",
            listener.local_addr().unwrap()
        );
        let app = axum::Router::new()
            .route("/hooks/tenancy", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (receiver, url)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn delivered(&self) -> Vec<Delivery> {
        self.delivered.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    let answer = r.script.lock().unwrap().pop_front().unwrap_or(r.then);
    match answer {
        Answer::Status(code) => return StatusCode::from_u16(code).unwrap(),
        Answer::Stall(long) => {
            tokio::time::sleep(long).await;
            return StatusCode::OK;
        }
        Answer::Verify => {}
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature = text("tenancy-signature");
    if !verify_as_documented(&r.secret, &signature, &body, unix_now()) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    r.delivered.lock().unwrap().push(Delivery {
        signature,
        content_type: text("content-type"),
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// The receiver's check, written from the module docs' five steps.
fn verify_as_documented(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    // 1. At most 4096 bytes and 8 `v1`, before any other work.
    if header.len() > 4096 {
        return false;
    }
    let pairs: Vec<(&str, &str)> = header
        .split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .collect();
    let timestamps: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| *k == "t")
        .map(|p| p.1)
        .collect();
    let signatures: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| *k == "v1")
        .map(|p| p.1)
        .collect();
    let [t] = timestamps[..] else { return false };
    if t.is_empty()
        || !t.bytes().all(|b| b.is_ascii_digit())
        || !(1..=8).contains(&signatures.len())
    {
        return false;
    }
    // 2. Within five minutes of the receiver's clock.
    if !t.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 300) {
        return false;
    }
    // 3. `<t>.<raw body>`; 4. HMAC-SHA256 keyed with the secret, in hex.
    let mut signed = t.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &signed);
    let expected: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    // 5. Any v1 equal, compared in constant time.
    let equal = |a: &[u8], b: &[u8]| {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    };
    signatures
        .iter()
        .any(|s| equal(s.as_bytes(), expected.as_bytes()))
}

fn unix_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// A sink to `url` with fast retries (3 after the first try) and a short
/// timeout.
fn sink_to(url: &str) -> WebhookAlertSinkBuilder {
    WebhookAlertSink::builder()
        .url(url)
        .secret(SECRET)
        .timeout(Duration::from_secs(1))
        .retry(WebhookRetry::default().delays(Duration::from_millis(5), Duration::from_millis(20)))
}

/// A tenancy on the scene's store and clock that delivers alerts to
/// `sink`, trying each alert `attempts` times.
fn tenancy_with(s: &Scene, sink: WebhookAlertSink, attempts: u32) -> Tenancy {
    Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .clock(s.clock.clone())
        .reservation_ttl(RESERVATION_TTL)
        .alert_sink(sink)
        .alert_delivery_attempts(attempts)
        .build()
        .expect("valid configuration")
}

/// Records `tokens` for the scene's owner through `tenancy`.
async fn record(s: &Scene, tenancy: &Tenancy, tokens: u64) {
    let event = UsageEvent::new(s.org).user(s.owner).tokens(tokens, 0, 0);
    tenancy.service().record_usage(event).await.expect("record");
}

/// An alert to deliver by hand.
fn alert() -> LimitAlert {
    let now = Utc::now();
    LimitAlert {
        key: AlertKey {
            org: OrgId::new_v7(),
            scope: LimitScope::Organization,
            metric: MetricKey::TOKENS,
            period: PeriodKey::containing(Period::Monthly, now, chrono_tz::UTC),
            threshold_percent: 90,
        },
        limit_id: LimitId::new_v7(),
        limit: dec(1_000),
        mode: LimitMode::Hard,
        used: dec(912),
        resets_at: now,
        fired_at: now,
    }
}

/// Usage past 80 % of a limit reaches the receiver as one signed POST that
/// passes the documented check, and the crate's own `verify`, with the
/// alert as JSON.
#[tokio::test]
async fn a_signed_alert_reaches_a_receiver_that_verifies_it() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let (receiver, url) = Receiver::start(SECRET, &[], Answer::Verify).await;
    let tenancy = tenancy_with(&s, sink_to(&url).build().unwrap(), 1);

    record(&s, &tenancy, 79).await;
    record(&s, &tenancy, 1).await;
    tenancy.flush_alerts().await;

    let delivered = receiver.delivered();
    assert_eq!((receiver.hits(), delivered.len()), (1, 1));
    let d = &delivered[0];
    assert_eq!(d.content_type, "application/json");
    let (t, v1) = d
        .signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=<unix>,v1=<hex>");
    assert!((unix_now() - t.parse::<i64>().unwrap()).abs() <= 5);
    assert!(
        v1.len() == 64
            && v1
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    webhook::verify(
        SECRET.as_bytes(),
        &d.signature,
        &d.body,
        Utc::now(),
        DEFAULT_TOLERANCE,
    )
    .expect("the crate's helper agrees");

    let json: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(json["type"], "limit_alert");
    let key = &json["alert"]["key"];
    assert_eq!(key["org"], s.org.to_string());
    assert_eq!(key["metric"], "tokens");
    assert_eq!(key["threshold_percent"], 80);
    assert_eq!(key["scope"]["scope"], "organization");
    assert_eq!(
        (&json["alert"]["used"], &json["alert"]["limit"]),
        (&"80".into(), &"100".into())
    );
    let alert: LimitAlert = serde_json::from_value(json["alert"].clone()).unwrap();
    assert_eq!((alert.key.org, alert.used), (s.org, dec(80)));
    assert_eq!(SIGNATURE_HEADER.to_ascii_lowercase(), "tenancy-signature");
}

/// 503 twice, then success: delivered on the third try, once. A timeout
/// is retried the same way; a 4xx answer is not.
#[tokio::test]
async fn deliveries_are_retried_after_5xx_and_timeouts_only() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let script = [Answer::Status(503), Answer::Status(502)];
    let (receiver, url) = Receiver::start(SECRET, &script, Answer::Verify).await;
    let tenancy = tenancy_with(&s, sink_to(&url).build().unwrap(), 1);
    record(&s, &tenancy, 85).await;
    tenancy.flush_alerts().await;
    assert_eq!((receiver.hits(), receiver.delivered().len()), (3, 1));

    let stall = [Answer::Stall(Duration::from_secs(3))];
    let (slow, url) = Receiver::start(SECRET, &stall, Answer::Verify).await;
    sink_to(&url)
        .build()
        .unwrap()
        .deliver(&alert())
        .await
        .unwrap();
    assert_eq!(
        (slow.hits(), slow.delivered().len()),
        (2, 1),
        "timed out, then delivered"
    );

    let (picky, url) = Receiver::start(SECRET, &[], Answer::Status(400)).await;
    let err = sink_to(&url)
        .build()
        .unwrap()
        .deliver(&alert())
        .await
        .unwrap_err();
    assert_eq!(picky.hits(), 1, "a 4xx is not retried");
    assert_eq!(err.kind(), ErrorKind::Unexpected, "{err}");
    assert!(err.message().contains("400"), "{err}");
}

/// A receiver that always answers 500 is tried 1 + 3 times per delivery
/// attempt, then given up on (the alert queue logs it): the usage write
/// had already succeeded and returned, and the error names neither the
/// URL's path nor the secret. A receiver that is not listening at all is
/// given up on the same way.
#[tokio::test]
async fn a_receiver_that_always_fails_is_given_up_on_and_the_write_is_unaffected() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let (receiver, url) = Receiver::start(SECRET, &[], Answer::Status(500)).await;
    let tenancy = tenancy_with(&s, sink_to(&url).build().unwrap(), 2);
    record(&s, &tenancy, 95).await;
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(95), "recorded");
    tokio::time::timeout(Duration::from_secs(10), tenancy.flush_alerts())
        .await
        .expect("the queue gives up");
    // Two thresholds crossed (80, 90), two queue attempts each, four tries
    // per attempt.
    assert_eq!(receiver.hits(), 2 * 2 * 4);
    assert!(receiver.delivered().is_empty());
    record(&s, &tenancy, 1).await;
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(96));

    let err = sink_to(&url)
        .build()
        .unwrap()
        .deliver(&alert())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.is_retryable(), "the sink retried already");
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("500") && shown.contains("http://127.0.0.1:"),
        "{shown}"
    );
    assert!(!shown.contains("hooks") && !shown.contains("is-secret") && !shown.contains(SECRET));

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let err = sink_to(&closed)
        .build()
        .unwrap()
        .deliver(&alert())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // The default sink never fails, for comparison with a failing one.
    LogAlertSink.deliver(&alert()).await.unwrap();
}

/// A sink with another secret is refused by the receiver (401, not
/// retried); so is a body altered after signing, and a request signed ten
/// minutes ago (a replay). The crate's `verify` refuses the same ones.
#[tokio::test]
async fn a_wrong_secret_an_altered_body_and_a_replay_are_refused() {
    let (receiver, url) = Receiver::start(SECRET, &[], Answer::Verify).await;
    let wrong = sink_to(&url)
        .secret("not the receiver's secret, though long enough")
        .build()
        .unwrap();
    let err = wrong.deliver(&alert()).await.unwrap_err();
    assert!(err.message().contains("401"), "{err}");
    assert_eq!((receiver.hits(), receiver.refused()), (1, 1), "not retried");

    let stale_clock = FakeClock::new(Utc::now() - Duration::from_secs(600));
    let stale = sink_to(&url).clock(stale_clock).build().unwrap();
    assert!(stale.deliver(&alert()).await.is_err());
    assert_eq!(receiver.refused(), 2, "a replayed request");

    sink_to(&url)
        .build()
        .unwrap()
        .deliver(&alert())
        .await
        .unwrap();
    let good = receiver.delivered().pop().expect("delivered");
    let now = unix_now();
    assert!(verify_as_documented(
        SECRET.as_bytes(),
        &good.signature,
        &good.body,
        now
    ));
    let mut altered = good.body.clone();
    let at = altered.len() / 2;
    altered[at] ^= 1;
    assert!(!verify_as_documented(
        SECRET.as_bytes(),
        &good.signature,
        &altered,
        now
    ));
    assert!(!verify_as_documented(
        b"another secret",
        &good.signature,
        &good.body,
        now
    ));
    assert!(!verify_as_documented(
        SECRET.as_bytes(),
        &good.signature,
        &good.body,
        now + 301
    ));

    let check = |secret: &str, body: &[u8], at| {
        webhook::verify(
            secret.as_bytes(),
            &good.signature,
            body,
            at,
            DEFAULT_TOLERANCE,
        )
        .map_err(|e| e.kind())
    };
    assert_eq!(check(SECRET, &good.body, Utc::now()), Ok(()));
    let refused = Err(ErrorKind::Unauthenticated);
    assert_eq!(check(SECRET, &altered, Utc::now()), refused);
    assert_eq!(check("another secret", &good.body, Utc::now()), refused);
    let later = Utc::now() + Duration::from_secs(301);
    assert_eq!(check(SECRET, &good.body, later), refused);
}

/// A header that asks for a lot of work is refused before any, by the
/// crate's `verify` and by a receiver written from the docs alike: 100,000
/// `v1` entries, or 9 of them, even with the right signature among them. A
/// right signature among a few bogus ones is accepted by both.
#[test]
fn a_flooded_signature_header_is_refused_and_a_few_bogus_ones_are_not() {
    let body = br#"{"type":"limit_alert"}"#;
    let now = Utc::now();
    let header = webhook::sign(SECRET.as_bytes(), now.timestamp(), body);
    let both = |h: &str| {
        let ours = verify_as_documented(SECRET.as_bytes(), h, body, now.timestamp());
        let crate_says = webhook::verify(SECRET.as_bytes(), h, body, now, DEFAULT_TOLERANCE);
        assert_eq!(ours, crate_says.is_ok(), "{crate_says:?}");
        crate_says.map_err(|e| (e.kind(), e.message().to_owned()))
    };

    let flood = format!("{}{header}", "v1=,".repeat(100_000));
    let (kind, why) = both(&flood).unwrap_err();
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert!(why.contains("bytes, more than"), "{why}");

    let bogus = ["", "00", "not hex", &"0".repeat(64), &"f".repeat(66)].map(|v| format!("v1={v}"));
    both(&format!("{},{header}", bogus.join(","))).unwrap();
    let nine = format!("{},{},{header}", bogus.join(","), bogus[..3].join(","));
    let (_, why) = both(&nine).unwrap_err();
    assert!(why.contains("more than 8 v1"), "{why}");
}
