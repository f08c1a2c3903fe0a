//! Requests another node must answer (`docs/scaling.md`, "REST on any node"). On a shared store
//! every node answers REST reads from the store, but only the node whose task runs a call can
//! change it, and only the node that recorded a recording has its audio: a POST or DELETE naming
//! a live call of another node (the call itself, its recordings, its place in a queue or a
//! conference), and a GET of recording audio that is not on this node's disk, are sent on to
//! the owner's REST API (where its heartbeat says it listens) with the client's own credentials,
//! and its answer is handed back as it came, so that the client cannot tell which node served
//! it. A forwarded request carries [`FORWARDED_BY`] and is never forwarded again.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::error::ApiError;
use super::{Api, HttpResponse};

/// The header a forwarded request carries: the id of the node that forwarded it.
pub const FORWARDED_BY: &str = "x-callml-forwarded-by";

/// Longest a forwarded request may take: a hang-up answers once the call has ended (3 s at
/// most), and the owner may be busy.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends requests on to the node that runs a call; present on a shared store only.
pub struct Forwarder {
    pub client: reqwest::Client,
}

/// Where a change to the call `sid` must be made: `Some((node, url))` when the call is live on
/// another node registered at `url`; `None` when this node answers (its own call, a call that
/// has ended, an unknown one, or a request already forwarded to it).
pub async fn owner(
    api: &Api,
    request: &Request<Incoming>,
    sid: &str,
) -> Result<Option<(String, String)>, ApiError> {
    if request.method() == Method::GET || request.headers().contains_key(FORWARDED_BY) {
        return Ok(None);
    }
    let Some(call) = api.store.call(sid).await? else {
        return Ok(None);
    };
    let node = match call.node_id {
        Some(node) if call.status.is_live() && node != api.store.node() => node,
        _ => return Ok(None),
    };
    match api.store.node_api_url(&node).await? {
        Some(url) => Ok(Some((node, url))),
        // Its row is gone: the node was taken for dead and its calls are being failed.
        None => Err(ApiError::NodeUnreachable {
            resource: sid.to_owned(),
            node,
        }),
    }
}

/// Where the audio of the recording `sid` must be read: `Some((node, url))` when its file is
/// not on this node's disk and the call it belongs to ran on another node registered at `url`;
/// `None` when this node answers (its own recording, an unknown one, a node no longer
/// registered, or a request already forwarded to it).
pub async fn recording_owner(
    api: &Api,
    request: &Request<Incoming>,
    sid: &str,
) -> Result<Option<(String, String)>, ApiError> {
    if request.headers().contains_key(FORWARDED_BY) {
        return Ok(None);
    }
    let Some(recording) = api.store.recording(sid).await? else {
        return Ok(None);
    };
    if let Some(file) = &recording.file
        && tokio::fs::try_exists(api.data_dir.join(file))
            .await
            .unwrap_or(false)
    {
        return Ok(None);
    }
    let Some(call) = api.store.call(&recording.call_sid).await? else {
        return Ok(None);
    };
    let Some(node) = call.node_id.filter(|node| node != api.store.node()) else {
        return Ok(None);
    };
    Ok(api.store.node_api_url(&node).await?.map(|url| (node, url)))
}

/// Sends `request` (already authenticated here) about `resource` (a call or recording SID) to
/// the node `node` at `url` and returns its answer; a node that does not answer is
/// [`ApiError::NodeUnreachable`].
pub async fn forward(
    api: &Api,
    forwarder: &Forwarder,
    request: Request<Incoming>,
    resource: &str,
    (node, url): (String, String),
) -> Result<HttpResponse, ApiError> {
    let unreachable = |node: String| ApiError::NodeUnreachable {
        resource: resource.to_owned(),
        node,
    };
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
    );
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = api.read_body(request.into_body()).await?;
    let mut outgoing = forwarder
        .client
        .request(method, &target)
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED_BY, api.store.node())
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(resource, node, url = target, %error, "a request could not be forwarded to the node that holds its resource");
            return Err(unreachable(node));
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| HeaderValue::from_bytes(value.as_bytes()).ok());
    let body = answer
        .bytes()
        .await
        .map_err(|_| unreachable(node.clone()))?;
    tracing::debug!(
        resource,
        node,
        status = status.as_u16(),
        "request forwarded to the node that holds its resource"
    );
    let mut response = Response::new(Full::new(Bytes::from(body.to_vec())));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}
