//! A fault-injecting HTTP/1.1 proxy for live tests: sits between a
//! `SupabaseStore` and the PostgREST stand-in and, switchable at runtime,
//! passes requests through, refuses connections, answers 503, loses
//! responses after the request landed, or delivers every request twice.
//!
//! It is a minimal forwarder over tokio `TcpStream`s, enough for the
//! requests reqwest/postgrest send: a request head and a `Content-Length`
//! body (chunked request bodies are answered 501, loudly). Each request is
//! sent upstream on a fresh connection with `Connection: close` and the
//! whole response is read to EOF, so the proxy never has to frame response
//! bodies; the response goes back to the client with `connection: close`,
//! so every client request uses its own connection and a fault on one
//! request cannot leak into the next.
//!
//! Faults, checked in this order for each request:
//!
//! 1. [`FaultProxy::fail_next`]: the next `n` requests are answered 503
//!    without being forwarded (a 5xx burst);
//! 2. the [`Mode`]: [`Mode::Refuse`] closes the listening socket, so
//!    connecting fails (connection refused); [`Mode::Unavailable`] answers
//!    503 to everything; [`Mode::Duplicate`] forwards every request,
//!    returns the first response and then sends the same request again;
//! 3. [`FaultProxy::lose_next`]: the next `n` forwarded requests land and
//!    then have their response held back until the client gives up (a
//!    timeout after the write landed).
//!
//! Servers bind 127.0.0.1 only. Dropping the proxy stops accepting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The path fragment of the usage-recording RPC, counted separately.
pub const RECORD_RPC: &str = "/rpc/tenancy_record_usage";

/// How the proxy treats requests (after [`FaultProxy::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward and answer normally.
    PassThrough,
    /// Close the listening socket: connecting is refused.
    Refuse,
    /// Answer every request 503 without forwarding it.
    Unavailable,
    /// Forward, answer with the first response, then forward a second copy.
    Duplicate,
}

/// What the proxy has seen and done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests read from clients.
    pub requests: u64,
    /// Of those, requests to the usage-recording RPC.
    pub record_requests: u64,
    /// Requests forwarded upstream (second copies included).
    pub forwarded: u64,
    /// Requests answered 503 without forwarding.
    pub answered_503: u64,
    /// Forwarded requests whose response was withheld.
    pub lost: u64,
    /// Second copies delivered upstream.
    pub duplicated: u64,
    /// Second copies of the usage-recording RPC delivered upstream.
    pub duplicated_records: u64,
    /// Times the listener was closed for [`Mode::Refuse`].
    pub refusals: u64,
    /// Upstream failures (answered 502).
    pub upstream_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    record_requests: AtomicU64,
    forwarded: AtomicU64,
    answered_503: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    duplicated_records: AtomicU64,
    refusals: AtomicU64,
    upstream_errors: AtomicU64,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    fail_next: AtomicUsize,
    lose_next: AtomicUsize,
    /// Upstream forwards under way (second copies included).
    in_flight: AtomicUsize,
    counters: Counters,
}

/// A running proxy. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Decrements `in_flight` when dropped.
struct InFlight(Arc<State>);

impl InFlight {
    fn new(state: &Arc<State>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes one from `counter` if it is positive.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port in front of `upstream`
    /// (`http://127.0.0.1:port`), in [`Mode::PassThrough`].
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the upstream is http://127.0.0.1:port");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            mode: Mutex::new(Mode::PassThrough),
            fail_next: AtomicUsize::new(0),
            lose_next: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&state), listener, addr));
        FaultProxy {
            addr,
            state,
            accept,
        }
    }

    /// The base URL to give the store.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode for the requests that arrive from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// A 5xx burst: the next `n` requests are answered 503 unforwarded.
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` forwarded requests land but lose their response.
    pub fn lose_next(&self, n: usize) {
        self.state.lose_next.store(n, Ordering::SeqCst);
    }

    /// Counts so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.state.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            connections: get(&c.connections),
            requests: get(&c.requests),
            record_requests: get(&c.record_requests),
            forwarded: get(&c.forwarded),
            answered_503: get(&c.answered_503),
            lost: get(&c.lost),
            duplicated: get(&c.duplicated),
            duplicated_records: get(&c.duplicated_records),
            refusals: get(&c.refusals),
            upstream_errors: get(&c.upstream_errors),
        }
    }

    /// Waits (up to `limit`) until no forward is under way, second copies
    /// included; whether it got there.
    pub async fn settled(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.state.in_flight.load(Ordering::SeqCst) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl State {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

async fn accept_loop(state: Arc<State>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    loop {
        if state.mode() == Mode::Refuse {
            if listener.take().is_some() {
                state.counters.refusals.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let Some(current) = &listener else {
            // Back from a refusal: listen on the same port again (tokio
            // sets SO_REUSEADDR).
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            continue;
        };
        tokio::select! {
            accepted = current.accept() => {
                if let Ok((client, _)) = accepted {
                    state.counters.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = client.set_nodelay(true);
                    tokio::spawn(serve(Arc::clone(&state), client));
                }
            }
            // Re-check the mode now and then.
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

/// A request read off a client connection, rewritten for upstream.
struct Request {
    /// Head (with `Connection: close`) and body, ready to send.
    bytes: Vec<u8>,
    is_record: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request; `Err` carries a status to answer with, `Ok(None)` is
/// a closed connection.
async fn read_request(client: &mut TcpStream) -> Result<Option<Request>, u16> {
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > 64 * 1024 {
            return Err(431);
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let mut rewritten = format!("{request_line}\r\n");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name_lc = name.trim().to_ascii_lowercase();
        match name_lc.as_str() {
            "content-length" => {
                content_length = value.trim().parse().map_err(|_| 400u16)?;
            }
            "transfer-encoding" => return Err(501),
            "connection" | "keep-alive" => continue,
            _ => {}
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < content_length {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(content_length);
    let mut bytes = rewritten.into_bytes();
    bytes.extend_from_slice(&body);
    Ok(Some(Request {
        bytes,
        is_record: request_line.contains(RECORD_RPC),
    }))
}

fn canned(status: u16, reason: &str) -> Vec<u8> {
    let body = format!("fault proxy: {status} {reason}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` upstream on a fresh connection and reads the whole
/// response (to EOF).
async fn forward(state: &Arc<State>, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let _in_flight = InFlight::new(state);
    let exchange = async {
        let mut upstream = TcpStream::connect(state.upstream).await?;
        upstream.set_nodelay(true)?;
        upstream.write_all(request).await?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out"))??;
    state.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    if response.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "empty upstream response",
        ));
    }
    Ok(response)
}

/// The response with its `connection` headers replaced by `close`, so the
/// client never reuses a connection the proxy is about to close.
fn closing(response: Vec<u8>) -> Vec<u8> {
    let Some(head_end) = find(&response, b"\r\n\r\n") else {
        return response;
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let mut out = String::with_capacity(head.len() + 32);
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 {
            let name = line.split(':').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response[head_end + 4..]);
    bytes
}

/// Serves one client connection: one request, one (or no) response.
async fn serve(state: Arc<State>, mut client: TcpStream) {
    let request = match read_request(&mut client).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(status) => {
            let _ = client.write_all(&canned(status, "Unsupported")).await;
            return;
        }
    };
    let c = &state.counters;
    c.requests.fetch_add(1, Ordering::SeqCst);
    if request.is_record {
        c.record_requests.fetch_add(1, Ordering::SeqCst);
    }
    let mode = state.mode();
    // A duplicate's second copy counts as in flight from the start, so
    // `settled` cannot slip between the two copies.
    let _both_copies = (mode == Mode::Duplicate).then(|| InFlight::new(&state));
    if take_one(&state.fail_next) || mode == Mode::Unavailable {
        c.answered_503.fetch_add(1, Ordering::SeqCst);
        let _ = client.write_all(&canned(503, "Service Unavailable")).await;
        let _ = client.shutdown().await;
        return;
    }
    if mode == Mode::Refuse {
        // A request on a connection accepted just before the refusal.
        return;
    }
    let response = match forward(&state, &request.bytes).await {
        Ok(response) => response,
        Err(_) => {
            c.upstream_errors.fetch_add(1, Ordering::SeqCst);
            let _ = client.write_all(&canned(502, "Bad Gateway")).await;
            return;
        }
    };
    if take_one(&state.lose_next) {
        c.lost.fetch_add(1, Ordering::SeqCst);
        // The write landed; hold the connection silently until the client
        // gives up on it.
        let mut byte = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(120), client.read(&mut byte)).await;
        return;
    }
    let _ = client.write_all(&closing(response)).await;
    let _ = client.shutdown().await;
    drop(client);
    if mode == Mode::Duplicate {
        if forward(&state, &request.bytes).await.is_ok() {
            c.duplicated.fetch_add(1, Ordering::SeqCst);
            if request.is_record {
                c.duplicated_records.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            c.upstream_errors.fetch_add(1, Ordering::SeqCst);
        }
    }
}
