//! The HTTP side of callml: `GET /healthz` and, under the contract's roots, the REST API.
//! Errors are Twilio-shaped JSON: `{"code", "message", "more_info", "status"}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The HTTP service's shared state.
pub struct Api {
    pub version: &'static str,
}

type HttpResponse = Response<Full<Bytes>>;

fn json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A Twilio-shaped error body.
pub fn error(status: StatusCode, code: u32, message: &str) -> HttpResponse {
    json(
        status,
        serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        }),
    )
}

impl Api {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, Infallible> {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => json(
                StatusCode::OK,
                serde_json::json!({ "status": "ok", "version": self.version }),
            ),
            (_, "/healthz") => error(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed"),
            (_, path) => error(
                StatusCode::NOT_FOUND,
                20404,
                &format!("The requested resource {path} was not found"),
            ),
        };
        Ok(response)
    }
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| Arc::clone(&api).handle(request));
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
}
