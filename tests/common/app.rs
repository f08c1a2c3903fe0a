//! A stand-in for a customer's web application, for integration tests: a real HTTP/1.1 server
//! on `127.0.0.1:0` in the test's tokio runtime that serves configured documents by path and
//! records every request it receives (callml's document fetches and status callbacks).
//!
//! ```ignore
//! let app = CustomerApp::start().await;
//! app.serve("/voice", Reply::xml("<Response><Hangup/></Response>"));
//! // ... point callml at app.url("/voice"), place a call ...
//! let fetches = app.wait_for("/voice", 1, Duration::from_secs(5)).await;
//! assert_eq!(fetches[0].param("CallStatus"), Some("ringing"));
//! ```
//!
//! Paths without a configured reply answer 404 (and are recorded too).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One answer of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    /// Further response headers.
    pub headers: Vec<(String, String)>,
    /// Waited before answering (the request is recorded on arrival).
    pub delay: Duration,
}

impl Reply {
    /// 200 with an XML document.
    pub fn xml(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            content_type: "application/xml".into(),
            body: Bytes::from(body.into()),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// 200 with binary content (e.g. a WAV file for `<Play>`).
    pub fn binary(content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            content_type: content_type.into(),
            body: Bytes::from(body),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// An empty answer with this status (e.g. 204 for a callback, 500 for a failure).
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            content_type: "text/plain".into(),
            body: Bytes::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// A redirect (e.g. 302) to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::status(status).with_header("location", location)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_delay(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }

    pub fn with_content_type(self, content_type: impl Into<String>) -> Reply {
        Reply {
            content_type: content_type.into(),
            ..self
        }
    }
}

/// A request as the app received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The decoded query string.
    pub query_params: Vec<(String, String)>,
    /// The decoded form body (`application/x-www-form-urlencoded` only).
    pub form: Vec<(String, String)>,
    pub body: Bytes,
    /// The full URL as a customer app would rebuild it: `http://<addr><path>[?<query>]`.
    pub url: String,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of a header (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a parameter from the form body, else from the query string.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .chain(&self.query_params)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    /// Replies per path; the front one answers, and is removed while others follow it.
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running app; stops when dropped.
pub struct CustomerApp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    arrivals: watch::Receiver<usize>,
    server: JoinHandle<()>,
}

impl CustomerApp {
    /// Binds `127.0.0.1:0` and starts serving in the current runtime.
    pub async fn start() -> CustomerApp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the customer app");
        let addr = listener.local_addr().expect("customer app address");
        let shared = Arc::new(Shared::default());
        let (arrived, arrivals) = watch::channel(0);
        let server = tokio::spawn(serve(listener, addr, Arc::clone(&shared), arrived));
        CustomerApp {
            addr,
            shared,
            arrivals,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` (which starts with `/`) on this app.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every request to `path` with `reply`.
    pub fn serve(&self, path: &str, reply: Reply) {
        self.serve_sequence(path, vec![reply]);
    }

    /// Answers requests to `path` with these replies in turn; the last one then repeats.
    pub fn serve_sequence(&self, path: &str, replies: Vec<Reply>) {
        assert!(
            !replies.is_empty(),
            "serve_sequence needs at least one reply"
        );
        lock(&self.shared.replies).insert(path.to_owned(), replies.into());
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The requests received so far for `path`, in arrival order.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until at least `count` requests to `path` have arrived and returns all of them;
    /// panics with what did arrive when `timeout` passes first.
    pub async fn wait_for(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<RecordedRequest> {
        let mut arrivals = self.arrivals.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.requests_to(path);
            if seen.len() >= count {
                return seen;
            }
            let changed = tokio::time::timeout_at(deadline, arrivals.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                let all: Vec<_> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.url))
                    .collect();
                panic!(
                    "waited {timeout:?} for {count} requests to {path}, got {}; all requests: {all:#?}",
                    seen.len()
                );
            }
        }
    }
}

impl Drop for CustomerApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    arrived: watch::Sender<usize>,
) {
    let arrived = Arc::new(arrived);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let arrived = Arc::clone(&arrived);
        let service = service_fn(move |request| {
            answer(request, addr, Arc::clone(&shared), Arc::clone(&arrived))
        });
        // Connections end with the server task: the JoinSet aborts them when dropped.
        connections.spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(encoded).unwrap_or_default()
}

async fn answer(
    request: Request<Incoming>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    arrived: Arc<watch::Sender<usize>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let received_at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_form = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        url: match &query {
            Some(q) => format!("http://{addr}{path}?{q}"),
            None => format!("http://{addr}{path}"),
        },
        query_params: query
            .as_deref()
            .map(|q| pairs(q.as_bytes()))
            .unwrap_or_default(),
        form: if is_form { pairs(&body) } else { Vec::new() },
        path,
        query,
        headers,
        body,
        received_at,
    };
    let reply = {
        let mut replies = lock(&shared.replies);
        match replies.get_mut(&recorded.path) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        }
    }
    .unwrap_or_else(|| Reply::status(404));
    lock(&shared.requests).push(recorded);
    arrived.send_modify(|n| *n += 1);

    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = status;
    if let Ok(value) = reply.content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}
