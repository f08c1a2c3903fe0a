//! The HTTP side of callml: `GET /healthz`, `GET /openapi.yaml` (the REST contract,
//! `schemas/api.openapi.yaml`) and the Twilio-compatible REST API under both roots of the
//! contract (`/2010-04-01/Accounts/{AccountSid}/...` and the same under `/api/laml`).
//!
//! - Routes come from one table ([`routes::ROUTES`]); the OpenAPI test compares it with the
//!   spec.
//! - REST requests need HTTP Basic auth `AccountSid:AuthToken` (RFC 7617); a failure is a 401
//!   with `WWW-Authenticate` and Twilio's 20003 error. Recording audio is public unless
//!   `--recording-auth` (Twilio's default: its SIDs cannot be guessed). Another account's sid in the path is a
//!   404 (20404), as on Twilio.
//! - Bodies are `application/x-www-form-urlencoded`, GET filters are in the query string;
//!   responses are Twilio-shaped JSON ([`resources`], [`paging`]); errors are
//!   `{"code", "message", "more_info", "status"}` ([`error`]).
//! - `/metrics` (Prometheus) and the web console under `/console` need the same Basic auth
//!   ([`console`]); `Calls/{CallSid}/Events.json` and `Sip.json` show a call's capture
//!   ([`capture`]).
//! - Bounded ([`HttpLimits`]): connections held at once (plus a small reserve that answers
//!   only `/healthz`), the time a request's head and body may take (slow clients), the size of
//!   a body; out of descriptors the accept loop backs off.
//! - Calls are placed and changed through the call layer's
//!   [`CallControl`](crate::call::control::CallControl); records are read from the [`Store`].

pub mod bandwidth;
pub mod bandwidth_calls;
pub mod calls;
pub mod capture;
pub mod conferences;
pub mod console;
pub mod error;
pub mod forward;
pub mod jwt;
pub mod notifications;
pub mod numbers;
pub mod paging;
pub mod params;
pub mod queues;
pub mod recordings;
pub mod registrations;
pub mod resources;
pub mod routes;
pub mod sessions;
pub mod sip;
pub mod trunks;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::call::control::CallControl;
use crate::call::queues::Queues;
use crate::call::rooms::Rooms;
use crate::config::Config;
use crate::directory::Directory;
use crate::limits::{AcceptBackoff, LogLimiter};
use crate::sip::registrar::Locations;
use crate::store::Store;
use crate::trunk::Trunks;
use bandwidth_calls::SeedCalls;
use error::ApiError;
use params::Params;
use routes::{Access, Route, resolve};

/// The REST contract, served at `GET /openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../schemas/api.openapi.yaml");
/// Largest request body accepted by default (`--http-max-body`; a `Twiml` of 4,000
/// characters fits many times over).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest request head (request line and headers) read; larger ones get 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Connections accepted beyond `--http-max-connections` that answer only `/healthz` (anything
/// else gets 429, code 20429), one request each, so that health checks pass while the limit
/// holds.
pub const HEALTH_RESERVE: usize = 8;
/// Header read timeout on a connection of the health reserve.
const HEALTH_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Bounds on what HTTP clients may hold (`--http-max-connections`, `--http-header-timeout`,
/// `--http-body-timeout`, `--http-max-body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// How long the request line and headers may take to arrive; also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: std::time::Duration,
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: std::time::Duration,
    /// Largest request body (413 beyond, told from `Content-Length` before it is read).
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 1024,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            max_body: MAX_BODY_BYTES,
        }
    }
}

/// The HTTP service's shared state.
pub struct Api {
    pub version: &'static str,
    pub account_sid: String,
    pub auth_token: String,
    /// Base of absolute URLs (`media_url`), from `--public-url`.
    pub public_url: String,
    /// Where recording files live (their paths in the store are relative to it).
    pub data_dir: PathBuf,
    /// Recording audio needs Basic auth (`--recording-auth`); public otherwise, as on Twilio.
    pub recording_auth: bool,
    pub store: Store,
    /// The call layer: creates and changes calls.
    pub calls: Arc<dyn CallControl>,
    /// The call queues.
    pub queues: Arc<Queues>,
    /// The account's SIP domains, credential lists and applications.
    pub directory: Arc<Directory>,
    /// What `/v1/users/{userId}/domains` appends to a domain's name (`--endpoint-domain-suffix`).
    pub endpoint_domain_suffix: String,
    /// The conferences.
    pub rooms: Arc<Rooms>,
    /// The SIP trunks and their registration states (`Trunks.json`); none until the server
    /// hands over its own.
    pub trunks: Arc<Trunks>,
    /// Connection, time and size bounds of the HTTP listener.
    pub limits: HttpLimits,
    /// The seed's call control (`/v1/users/{userId}/calls`, `/bridges`).
    pub seed_calls: SeedCalls,
    /// On a shared store: sends changes to a live call on to the node that runs it.
    pub forwarder: Option<forward::Forwarder>,
    /// The registrar's bindings (`SIP/Registrations.json`); none until the server hands over
    /// its own.
    pub locations: Locations,
}

impl Api {
    pub fn new(
        config: &Config,
        store: Store,
        calls: Arc<dyn CallControl>,
        queues: Arc<Queues>,
        directory: Arc<Directory>,
        rooms: Arc<Rooms>,
        seed_calls: SeedCalls,
    ) -> Api {
        Api {
            version: env!("CARGO_PKG_VERSION"),
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            public_url: config.public_url.clone(),
            data_dir: config.data_dir.clone(),
            recording_auth: config.recording_auth,
            store,
            calls,
            queues,
            directory,
            endpoint_domain_suffix: config.endpoint_domain_suffix.clone(),
            rooms,
            trunks: Arc::default(),
            limits: HttpLimits {
                max_connections: config.http_max_connections as usize,
                header_timeout: config.http_header_timeout,
                body_timeout: config.http_body_timeout,
                max_body: config.http_max_body as usize,
            },
            seed_calls,
            forwarder: None,
            locations: Locations::default(),
        }
    }
}

pub type HttpResponse = Response<Full<Bytes>>;

/// What a REST handler gets of its request.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// The path as requested (for 404 messages).
    pub path: String,
    pub query: Params,
    /// The form body of a POST (empty otherwise).
    pub form: Params,
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    bytes_response(status, "application/json", body.to_string().into_bytes())
}

fn no_content() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A Twilio-shaped error body.
pub fn error(status: StatusCode, code: u32, message: &str) -> HttpResponse {
    json_response(
        status,
        &serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        }),
    )
}

fn error_response(failure: &ApiError) -> HttpResponse {
    let mut response = error(failure.status(), failure.code(), &failure.to_string());
    if matches!(failure, ApiError::Unauthenticated) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"callml\""),
        );
    }
    if failure.status().is_server_error() {
        tracing::warn!(error = %failure, "REST request failed");
    }
    response
}

/// Compares without stopping at the first difference, so that response times do not reveal
/// how much of a guessed token is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Api {
    /// Whether the request carries `Authorization: Basic base64(AccountSid:AuthToken)`.
    fn authenticated(&self, request: &Request<Incoming>) -> bool {
        let credentials = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, encoded) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| base64::engine::general_purpose::STANDARD.decode(encoded.trim()))
            })
            .and_then(Result::ok)
            .and_then(|decoded| String::from_utf8(decoded).ok());
        let Some((user, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
            return false;
        };
        user == self.account_sid
            && constant_time_eq(password.as_bytes(), self.auth_token.as_bytes())
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        health_only: bool,
    ) -> Result<HttpResponse, Infallible> {
        if health_only && request.uri().path() != "/healthz" {
            return Ok(error_response(&ApiError::TooManyConnections));
        }
        let response = match self.route(request).await {
            Ok(response) => response,
            Err(failure) => error_response(&failure),
        };
        Ok(response)
    }

    async fn route(&self, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
        let path = request.uri().path().to_owned();
        let matched = resolve(&path).ok_or_else(|| ApiError::NotFound(path.clone()))?;
        if matched.spec.access == Access::Session {
            return Ok(sessions::handle(self, &matched, request).await);
        }
        if matched.spec.access == Access::Bandwidth {
            return Ok(bandwidth::handle(self, &matched, request).await);
        }
        if matched.spec.access == Access::Signed {
            return Ok(bandwidth_calls::control(self, &matched, request).await);
        }
        let public_media = !self.recording_auth
            && matches!(
                matched.spec.route,
                Route::RecordingMedia | Route::RecordingWav | Route::RecordingMp3
            );
        if matched.spec.access == Access::Console {
            if !self.authenticated(&request) {
                return Err(ApiError::Unauthenticated);
            }
            if request.method() != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            return console::handle(self, &matched);
        }
        if matched.spec.access == Access::Rest {
            if !public_media && !self.authenticated(&request) {
                return Err(ApiError::Unauthenticated);
            }
            if matched.params.account_sid.as_deref() != Some(self.account_sid.as_str()) {
                return Err(ApiError::NotFound(path));
            }
        }
        if !matched.spec.methods.contains(request.method()) {
            return Err(ApiError::MethodNotAllowed);
        }
        if let Some(forwarder) = &self.forwarder {
            let owner = match (matched.spec.route, &matched.params) {
                (Route::RecordingMedia | Route::RecordingWav, params) => {
                    let sid = params.recording_sid.as_deref().unwrap_or_default();
                    forward::recording_owner(self, &request, sid)
                        .await?
                        .map(|owner| (sid, owner))
                }
                (_, params) => match params.call_sid.as_deref() {
                    Some(sid) => forward::owner(self, &request, sid)
                        .await?
                        .map(|owner| (sid, owner)),
                    None => None,
                },
            };
            if let Some((resource, owner)) = owner {
                return forward::forward(self, forwarder, request, resource, owner).await;
            }
        }
        let method = request.method().clone();
        let query = Params::parse(request.uri().query().unwrap_or(""));
        let form = if method == Method::POST {
            let body = self.read_body(request.into_body()).await?;
            Params::parse(&String::from_utf8_lossy(&body))
        } else {
            Params::default()
        };
        let rest = RestRequest { path, query, form };
        let call = matched.params.call_sid.as_deref().unwrap_or_default();
        let recording = matched.params.recording_sid.as_deref().unwrap_or_default();
        let queue = matched.params.queue_sid.as_deref().unwrap_or_default();
        let conference = matched.params.conference_sid.as_deref().unwrap_or_default();
        let notification = matched
            .params
            .notification_sid
            .as_deref()
            .unwrap_or_default();
        let domain = matched.params.domain_sid.as_deref().unwrap_or_default();
        let list = matched.params.list_sid.as_deref().unwrap_or_default();
        let item = matched.params.item_sid.as_deref().unwrap_or_default();
        match (matched.spec.route, method) {
            // Still 200 when the store is degraded: calls go on and writes are buffered, so a
            // load balancer must not take the node out; the body says so.
            (Route::Healthz, _) => {
                let health = self.store.health();
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "status": "ok",
                        "version": self.version,
                        "store": if health.is_degraded() { "degraded" } else { "ok" },
                        "store_backlog": health.backlog(),
                    }),
                ))
            }
            (Route::OpenApi, _) => Ok(bytes_response(
                StatusCode::OK,
                "application/yaml",
                OPENAPI.as_bytes().to_vec(),
            )),
            (Route::Account, _) => {
                let created = self.store.created_at().await?;
                Ok(json_response(
                    StatusCode::OK,
                    &resources::account_json(&self.account_sid, &self.auth_token, created),
                ))
            }
            (Route::Calls, Method::POST) => calls::create(self, &rest).await,
            (Route::Calls, _) => calls::list(self, &rest).await,
            (Route::Call, Method::POST) => calls::update(self, &rest, call).await,
            (Route::Call, Method::DELETE) => calls::delete(self, &rest, call).await,
            (Route::Call, _) => calls::fetch(self, &rest, call).await,
            (Route::CallRecordings, _) => recordings::list(self, &rest, Some(call)).await,
            (Route::CallRecording, Method::DELETE) => {
                recordings::delete(self, &rest, recording, Some(call)).await
            }
            (Route::CallRecording, _) => {
                recordings::fetch(self, &rest, recording, Some(call)).await
            }
            (Route::CallNotifications, _) => notifications::list(self, &rest, Some(call)).await,
            (Route::CallNotification, _) => {
                notifications::fetch(self, &rest, notification, Some(call)).await
            }
            (Route::CallEvents, _) => capture::events(self, &rest, call).await,
            (Route::CallSip, _) => capture::sip(self, &rest, call).await,
            (Route::CallTimeline, _) => capture::timeline(self, &rest, call).await,
            (Route::Notifications, _) => notifications::list(self, &rest, None).await,
            (Route::Notification, _) => notifications::fetch(self, &rest, notification, None).await,
            (Route::Recordings, _) => recordings::list(self, &rest, None).await,
            (Route::Recording, Method::DELETE) => {
                recordings::delete(self, &rest, recording, None).await
            }
            (Route::Recording, _) => recordings::fetch(self, &rest, recording, None).await,
            (Route::RecordingMedia | Route::RecordingWav, _) => {
                recordings::wav(self, &rest, recording).await
            }
            (Route::RecordingMp3, _) => recordings::mp3(self, &rest, recording).await,
            (Route::Queues, Method::POST) => queues::create(self, &rest),
            (Route::Queues, _) => queues::list(self, &rest),
            (Route::Queue, Method::POST) => queues::update(self, &rest, queue),
            (Route::Queue, Method::DELETE) => queues::delete(self, &rest, queue),
            (Route::Queue, _) => queues::fetch(self, &rest, queue),
            (Route::QueueMembers, _) => queues::members(self, &rest, queue),
            (Route::QueueMember, Method::POST) => queues::dequeue(self, &rest, queue, call),
            (Route::QueueMember, _) => queues::member(self, &rest, queue, call),
            (Route::SipDomains, Method::POST) => sip::create_domain(self, &rest).await,
            (Route::SipDomains, _) => sip::list_domains(self, &rest),
            (Route::SipRegistrations, _) => registrations::list(self, &rest, None),
            (Route::SipDomainRegistrations, _) => registrations::list(self, &rest, Some(domain)),
            (Route::SipDomain, Method::POST) => sip::update_domain(self, &rest, domain).await,
            (Route::SipDomain, Method::DELETE) => sip::delete_domain(self, &rest, domain).await,
            (Route::SipDomain, _) => sip::fetch_domain(self, &rest, domain),
            (Route::SipMappings(kind), Method::POST) => {
                sip::create_mapping(self, &rest, domain, kind).await
            }
            (Route::SipMappings(kind), _) => sip::list_mappings(self, &rest, domain, kind),
            (Route::SipMapping(kind), Method::DELETE) => {
                sip::delete_mapping(self, &rest, domain, kind, list).await
            }
            (Route::SipMapping(kind), _) => sip::fetch_mapping(self, &rest, domain, kind, list),
            (Route::SipLists(family), Method::POST) => sip::create_list(self, &rest, family).await,
            (Route::SipLists(family), _) => sip::list_lists(self, &rest, family),
            (Route::SipList(family), Method::POST) => {
                sip::update_list(self, &rest, family, list).await
            }
            (Route::SipList(family), Method::DELETE) => {
                sip::delete_list(self, &rest, family, list).await
            }
            (Route::SipList(family), _) => sip::fetch_list(self, &rest, family, list),
            (Route::SipListItems(family), Method::POST) => {
                sip::create_item(self, &rest, family, list).await
            }
            (Route::SipListItems(family), _) => sip::list_items(self, &rest, family, list),
            (Route::SipListItem(family), Method::POST) => {
                sip::update_item(self, &rest, family, list, item).await
            }
            (Route::SipListItem(family), Method::DELETE) => {
                sip::delete_item(self, &rest, family, list, item).await
            }
            (Route::SipListItem(family), _) => sip::fetch_item(self, &rest, family, list, item),
            (Route::Trunks, Method::POST) => trunks::create(self, &rest).await,
            (Route::Trunks, _) => trunks::list(self, &rest),
            (Route::Trunk, Method::POST) => trunks::update(self, &rest, item).await,
            (Route::Trunk, Method::DELETE) => trunks::delete(self, &rest, item).await,
            (Route::Trunk, _) => trunks::fetch(self, &rest, item),
            (Route::IncomingPhoneNumbers, Method::POST) => {
                numbers::create_number(self, &rest).await
            }
            (Route::IncomingPhoneNumbers, _) => numbers::list_numbers(self, &rest),
            (Route::IncomingPhoneNumber, Method::POST) => {
                numbers::update_number(self, &rest, item).await
            }
            (Route::IncomingPhoneNumber, Method::DELETE) => {
                numbers::delete_number(self, &rest, item).await
            }
            (Route::IncomingPhoneNumber, _) => numbers::fetch_number(self, &rest, item),
            (Route::Applications, Method::POST) => numbers::create_application(self, &rest).await,
            (Route::Applications, _) => numbers::list_applications(self, &rest),
            (Route::Application, Method::POST) => {
                numbers::update_application(self, &rest, item).await
            }
            (Route::Application, Method::DELETE) => {
                numbers::delete_application(self, &rest, item).await
            }
            (Route::Application, _) => numbers::fetch_application(self, &rest, item),
            (Route::Conferences, _) => conferences::list(self, &rest).await,
            (Route::Conference, Method::POST) => conferences::update(self, &rest, conference).await,
            (Route::Conference, _) => conferences::fetch(self, &rest, conference).await,
            (Route::ConferenceParticipants, Method::POST) => {
                conferences::add(self, &rest, conference).await
            }
            (Route::ConferenceParticipants, _) => {
                conferences::participants(self, &rest, conference).await
            }
            (Route::ConferenceParticipant, Method::POST) => {
                conferences::change(self, &rest, conference, call).await
            }
            (Route::ConferenceParticipant, Method::DELETE) => {
                conferences::kick(self, &rest, conference, call).await
            }
            (Route::ConferenceParticipant, _) => {
                conferences::participant(self, &rest, conference, call).await
            }
            (Route::ConferenceRecordings, _) => {
                conferences::recordings(self, &rest, conference).await
            }
            (
                Route::SessionDial
                | Route::SessionConnection
                | Route::SessionConnectionDtmf
                | Route::SessionDtmf
                | Route::SessionMute
                | Route::SessionStreamMute,
                _,
            )
            | (
                Route::Metrics
                | Route::Console
                | Route::ConsoleCall
                | Route::ConsoleScript
                | Route::ConsoleStyle,
                _,
            )
            | (
                Route::UserDomains
                | Route::UserDomain
                | Route::UserEndpoints
                | Route::UserEndpoint
                | Route::UserApplications
                | Route::UserApplication
                | Route::UserCalls
                | Route::UserCall
                | Route::UserCallAudio
                | Route::UserBridges
                | Route::UserBridge
                | Route::UserCallControl,
                _,
            ) => Err(ApiError::NotFound(rest.path)), // answered by the handlers of their access above
        }
    }
}

impl Api {
    /// Reads a request body of at most `--http-max-body` bytes (one announced larger is
    /// refused before it is read) within `--http-body-timeout`.
    pub async fn read_body(&self, body: Incoming) -> Result<Bytes, ApiError> {
        let max = self.limits.max_body;
        if hyper::body::Body::size_hint(&body).lower() > max as u64 {
            return Err(ApiError::BodyTooLarge(max));
        }
        let reading = Limited::new(body, max).collect();
        match tokio::time::timeout(self.limits.body_timeout, reading).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.is::<LengthLimitError>() => Err(ApiError::BodyTooLarge(max)),
            Ok(Err(error)) => Err(ApiError::Body(error)),
            Err(_) => Err(ApiError::BodyTimeout(self.limits.body_timeout.as_secs())),
        }
    }
}

/// The permit a connection holds while it is open: one of `--http-max-connections`, or one of
/// the [`HEALTH_RESERVE`] (`health_only`).
struct Admission {
    _permit: OwnedSemaphorePermit,
    health_only: bool,
}

/// A regular permit when one is free, else one of the reserve; waits when both are taken (the
/// kernel's backlog holds new connections meanwhile), saying so once per interval.
async fn admit(
    regular: &Arc<Semaphore>,
    reserve: &Arc<Semaphore>,
    full: &mut LogLimiter,
) -> Admission {
    if let Ok(permit) = Arc::clone(regular).try_acquire_owned() {
        return Admission {
            _permit: permit,
            health_only: false,
        };
    }
    if let Some(held_back) = full.allow(std::time::Instant::now()) {
        tracing::warn!(
            held_back,
            "HTTP connection limit reached: only /healthz is answered on new connections"
        );
    }
    tokio::select! {
        biased;
        Ok(permit) = Arc::clone(regular).acquire_owned() => Admission { _permit: permit, health_only: false },
        Ok(permit) = Arc::clone(reserve).acquire_owned() => Admission { _permit: permit, health_only: true },
    }
}

/// Serves HTTP on `listener` until `shutdown` turns true, holding at most
/// `api.limits.max_connections` connections (plus the [`HEALTH_RESERVE`]); out of descriptors,
/// the accept loop backs off ([`AcceptBackoff`]).
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut shutdown: watch::Receiver<bool>) {
    let limits = api.limits;
    let regular = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let reserve = Arc::new(Semaphore::new(HEALTH_RESERVE));
    let mut backoff = AcceptBackoff::new("http");
    let mut full = LogLimiter::default();
    loop {
        let admission = tokio::select! {
            admission = admit(&regular, &reserve, &mut full) => admission,
            _ = shutdown.changed() => return,
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.accepted();
                    accepted
                }
                Err(error) => {
                    let wait = backoff.failed(&error, std::time::Instant::now());
                    tokio::time::sleep(wait).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // A reserve permit taken while the limit held is traded for a regular one freed since.
        let admission = match admission {
            Admission {
                health_only: true, ..
            } => match Arc::clone(&regular).try_acquire_owned() {
                Ok(permit) => Admission {
                    _permit: permit,
                    health_only: false,
                },
                Err(_) => admission,
            },
            regular => regular,
        };
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let health_only = admission.health_only;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .max_buf_size(MAX_HEAD_BYTES)
                .header_read_timeout(if health_only {
                    HEALTH_HEADER_TIMEOUT.min(limits.header_timeout)
                } else {
                    limits.header_timeout
                })
                .keep_alive(!health_only);
            let service = hyper::service::service_fn(move |request| {
                Arc::clone(&api).handle(request, health_only)
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
            drop(admission);
        });
    }
}
