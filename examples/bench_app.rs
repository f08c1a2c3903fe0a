//! A minimal customer web app for load tests: answers `GET|POST /voice` with a document (the
//! `CALLML_BENCH_DOCUMENT` environment variable, default `<Response><Hangup/></Response>`)
//! and every other path (status callbacks) with 204. Prints `listening ADDR` on stdout.
//!
//! For queue loads: a call whose `To` names `agent` gets `CALLML_BENCH_AGENT_DOCUMENT`
//! instead, and `{queue}` in either document becomes `q0` to `q{N-1}` (N from
//! `CALLML_BENCH_QUEUES`, default 1) in turn, one turn for callers and one for agents, so N
//! callers and N agents meet one to one.
//!
//! For room loads: `{room}` in a document becomes `r{K}`, K = (n − 1) / S, where n is the
//! call's number as the caller wrote it in `To` (`sip:+n@...`, sipp's `[call_number]`) and S
//! is `CALLML_BENCH_ROOM_SIZE` (default 3): calls 1 to S meet in `r0`, the next S in `r1`, ...
//! (a call whose `To` holds no number takes the next turn instead).
//!
//! For mapping loads: `POST /map` (the LiveSwitch seed's mapping webhook) answers
//! `{"applicationId": "bench", "channelId": "1"}`.
//!
//! `cargo run --release --example bench_app -- 127.0.0.1:0`

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let documents = Arc::new(Documents {
        caller: std::env::var("CALLML_BENCH_DOCUMENT")
            .unwrap_or_else(|_| "<Response><Hangup/></Response>".into()),
        agent: std::env::var("CALLML_BENCH_AGENT_DOCUMENT").ok(),
        queues: std::env::var("CALLML_BENCH_QUEUES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        room_size: std::env::var("CALLML_BENCH_ROOM_SIZE")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(3),
        callers_seen: AtomicU64::new(0),
        agents_seen: AtomicU64::new(0),
        rooms_seen: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let documents = Arc::clone(&documents);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let documents = Arc::clone(&documents);
                    async move {
                        let is_voice = request.uri().path() == "/voice";
                        let is_map = request.uri().path() == "/map";
                        let query = request.uri().query().unwrap_or_default().to_owned();
                        let body = match request.into_body().collect().await {
                            Ok(body) => body.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        let response = if is_voice {
                            let form = if body.is_empty() {
                                query.as_bytes()
                            } else {
                                &body[..]
                            };
                            Response::builder()
                                .header("Content-Type", "application/xml")
                                .body(Full::new(documents.for_call(form)))
                        } else if is_map {
                            Response::builder()
                                .header("Content-Type", "application/json")
                                .body(Full::new(Bytes::from_static(
                                    br#"{"applicationId":"bench","channelId":"1"}"#,
                                )))
                        } else {
                            Response::builder()
                                .status(204)
                                .body(Full::new(Bytes::new()))
                        };
                        Ok::<_, Infallible>(response.unwrap_or_default())
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The documents the app serves.
struct Documents {
    caller: String,
    agent: Option<String>,
    queues: u64,
    room_size: u64,
    callers_seen: AtomicU64,
    agents_seen: AtomicU64,
    /// Turns of calls whose `To` holds no number (rooms).
    rooms_seen: AtomicU64,
}

impl Documents {
    /// The document for the call whose request parameters are `form`.
    fn for_call(&self, form: &[u8]) -> Bytes {
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(form).unwrap_or_default();
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let (document, turn) = match &self.agent {
            Some(agent) if param("To").contains("agent") => (agent, &self.agents_seen),
            _ => (&self.caller, &self.callers_seen),
        };
        let queue = format!(
            "q{}",
            turn.fetch_add(1, Ordering::Relaxed) % self.queues.max(1)
        );
        let mut document = document.replace("{queue}", &queue);
        if document.contains("{room}") {
            let number = param("To")
                .strip_prefix('+')
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&n| n > 0);
            let index = match number {
                Some(n) => n - 1,
                None => self.rooms_seen.fetch_add(1, Ordering::Relaxed),
            };
            document = document.replace("{room}", &format!("r{}", index / self.room_size));
        }
        Bytes::from(document)
    }
}
