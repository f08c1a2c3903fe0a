//! A minimal customer web app for load tests: answers `GET|POST /voice` with a document (the
//! `CALLML_BENCH_DOCUMENT` environment variable, default `<Response><Hangup/></Response>`)
//! and every other path (status callbacks) with 204. Prints `listening ADDR` on stdout.
//!
//! `cargo run --release --example bench_app -- 127.0.0.1:0`

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let document: Arc<Bytes> = Arc::new(Bytes::from(
        std::env::var("CALLML_BENCH_DOCUMENT")
            .unwrap_or_else(|_| "<Response><Hangup/></Response>".into()),
    ));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let document = Arc::clone(&document);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let document = Arc::clone(&document);
                    async move {
                        let is_voice = request.uri().path() == "/voice";
                        let _ = request.into_body().collect().await;
                        let response = if is_voice {
                            Response::builder()
                                .header("Content-Type", "application/xml")
                                .body(Full::new((*document).clone()))
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
