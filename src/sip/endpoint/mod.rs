//! The SIP endpoint, sans-IO: the transaction user (RFC 3261 §8, §12–§15) for every call leg
//! callml has, inbound ([`uas`]) and outbound ([`uac`]). It turns messages into
//! [`EndpointEvent`]s for the call tasks and their commands into requests and responses.
//!
//! Shared here: request dispatch and the checks every request passes (§8.2: 416, 483 with a
//! numeric Max-Forwards, 420 with `Unsupported` for extensions other than `timer`, the
//! `application/sdp` part of a `multipart/*` body taken as the body (RFC 5621), 415 with
//! `Accept` for other bodies, 406 when `Accept` excludes SDP, 503 at shutdown; extension methods 501, other known
//! methods 405 with `Allow`), a per-source rate limit on new out-of-dialog requests (`503` with
//! `Retry-After`, answered statelessly), malformed requests answered statelessly `400`/`505`/
//! `501` and otherwise dropped. Nothing is kept for a request that fails to parse or is
//! rate-limited; retransmitted requests never reach a call (the transaction layer absorbs
//! them). Requests inside dialogs are handled in [`in_dialog`] (theirs: BYE, re-INVITE,
//! UPDATE, INFO) and [`renegotiate`] (ours: BYE, re-INVITE, UPDATE with digest
//! authentication, 491 back-off and RFC 4028 session refreshes).

mod fork;
mod in_dialog;
mod renegotiate;
mod uac;
mod uas;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::auth::DigestClient;
use super::dialog::{Dialog, DialogId};
use super::msg::{
    BRANCH_COOKIE, Essentials, Headers, Host, Message, Method, ParseError, Request, Response,
    Transport, Uri, Via, is_version_error,
};
use super::rate_limit::{Decision, RateLimitConfig, RateLimiter};
use super::registrar::gate::{DomainCall, InviteCheck};
use super::registrar::{Registrar, UserContacts};
use super::session_timer::{SessionTimer, TimerConfig};
use super::transaction::{
    DeadlineQueue, Incoming, Peer, Timing, TransactionLayer, Transmit, TxEvent, TxId,
};
use crate::ids;

pub use uac::{Branch, Credentials, OutboundInvite, Target};

/// Methods callml answers (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
/// Extensions callml supports (the `Supported` header): session timers (RFC 4028).
pub const SUPPORTED: &str = "timer";
/// How long the call layer has to answer a new offer received in a dialog before the endpoint
/// answers it with the current session, its direction mirrored.
pub const REOFFER_WAIT: Duration = Duration::from_secs(2);
/// Challenges answered for one request at most (a `stale=true` nonce may come more than once).
const MAX_AUTH_ATTEMPTS: u8 = 3;

/// Identifies a call leg inside the endpoint. Inbound legs are numbered by the endpoint;
/// outbound legs by the caller of [`Endpoint::invite`], from [`CallKey::OUTBOUND`] up, so the
/// two never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

impl CallKey {
    /// The first key of the outbound space.
    pub const OUTBOUND: u64 = 1 << 63;
}

/// What happened on a leg's signalling, for its call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSignal {
    /// Inbound: the caller acknowledged our 2xx. `sdp` is the answer an ACK carries when the
    /// INVITE had no offer (RFC 3264 §2, delayed offer).
    Acked { sdp: Option<Bytes> },
    /// Inbound: CANCEL arrived before a final response (487 sent). Outbound: our CANCEL ended
    /// the attempt (487, or a 2xx that raced it and was ended with BYE, or no answer at all).
    Canceled,
    /// The other party hung up (the BYE was answered 200), or the dialog is gone (a request
    /// in it got 408 or 481, §12.2.1.2).
    Bye,
    /// Our 2xx was never acknowledged (§13.3.1.4); a BYE was sent.
    NoAck,
    /// Outbound: a provisional response with a To tag (180 ringing, 183 session progress).
    Progress(Box<Response>),
    /// Outbound: the callee answered. The ACK is already sent unless the INVITE carried no
    /// offer: then the call must [`Endpoint::acknowledge`] with its answer.
    Answered(Box<Response>),
    /// Outbound: a final failure (3xx–6xx), already ACKed by the transaction; a 401/407 the
    /// leg's credentials could not answer ends here too.
    Rejected(Box<Response>),
    /// Outbound: no response at all from any resolved address (Timer B at the last one).
    Unreachable,
    /// Outbound: the transport could not reach the last resolved address (a connection
    /// refused or broken, a TLS handshake that failed or timed out, a TLS certificate
    /// refused); RFC 3261 §8.1.3.1 treats it as 503. `reason` says which, for the record.
    TransportFailed { reason: String },
    /// Outbound: the target could not be resolved (RFC 3263); nothing was sent.
    Unresolvable { reason: String },
    /// Outbound: the target is a registered user (a `<Client>`, or a user of one of the
    /// account's domains) with no contact registered; nothing was sent. `client` for a
    /// `<Client>`.
    NotRegistered { client: bool },
    /// In a dialog, the far end sent a new offer (re-INVITE or UPDATE, RFC 3264 §8). `held`
    /// says whether it puts us on hold (`sendonly`, `inactive`, port 0 or `0.0.0.0`). The call
    /// answers with [`Endpoint::answer_reoffer`] within [`REOFFER_WAIT`]; otherwise the
    /// endpoint answers with the current session, direction mirrored (`recvonly` to
    /// `sendonly`, `inactive` to `inactive`).
    Reoffer { sdp: Bytes, held: bool },
    /// The far end's answer to our re-INVITE or UPDATE offer (or the answer in the ACK of a
    /// re-INVITE we offered in); `held` as for [`CallSignal::Reoffer`].
    Reanswered { sdp: Bytes, held: bool },
    /// Our re-INVITE failed (after 491 retries and digest challenges): the session stays as it
    /// was, unless a [`CallSignal::Bye`] follows (408, 481: the dialog is gone).
    ReinviteFailed { status: u16 },
    /// The session timer expired without a refresh (RFC 4028 §10): a BYE was sent. A
    /// [`CallSignal::Bye`] follows (the dialog is over).
    SessionExpired,
    /// An INFO request inside the dialog (answered 200), e.g. `application/dtmf-relay`.
    Info { content_type: String, body: Bytes },
}

/// Output of the endpoint for the call layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A new INVITE (already answered `100 Trying`); `domain` when it was admitted into one
    /// of the account's SIP domains.
    Incoming {
        call: CallKey,
        invite: Box<Request>,
        source: Peer,
        domain: Option<DomainCall>,
    },
    Signal {
        call: CallKey,
        signal: CallSignal,
    },
    /// The final response to an out-of-dialog request sent with [`Endpoint::send_request`].
    RequestAnswered {
        tx: TxId,
        response: Box<Response>,
    },
    /// That request got no final response: Timer F fired, or (`transport_failed`) the
    /// transport could not deliver it.
    RequestFailed {
        tx: TxId,
        transport_failed: bool,
    },
}

/// Why a call command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("no such call (it ended)")]
    UnknownCall,
    #[error("the INVITE already has a final response")]
    AlreadyAnswered,
    #[error("the call is not answered yet")]
    NotAnswered,
    #[error("no offer is waiting for an answer")]
    NoReoffer,
    #[error("no address to send the INVITE to")]
    NoDestination,
    #[error("the request cannot be built: {0}")]
    BadRequest(&'static str),
}

/// How the endpoint presents itself and what it accepts.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Written into Via and Contact.
    pub host: Host,
    pub udp_port: u16,
    pub tcp_port: u16,
    pub tls_port: Option<u16>,
    pub user_agent: String,
    pub timing: Timing,
    /// Session timer policy (RFC 4028): the interval asked for and the smallest accepted.
    pub session_timer: TimerConfig,
    /// Per-source limit on new out-of-dialog requests; `None` disables it.
    pub rate_limit: Option<RateLimitConfig>,
}

impl EndpointConfig {
    /// UDP and TCP on `port`, no TLS, default timers, session timers and rate limit.
    pub fn new(host: Host, port: u16, user_agent: impl Into<String>) -> EndpointConfig {
        EndpointConfig {
            host,
            udp_port: port,
            tcp_port: port,
            tls_port: None,
            user_agent: user_agent.into(),
            timing: Timing::default(),
            session_timer: TimerConfig::default(),
            rate_limit: Some(RateLimitConfig::default()),
        }
    }

    fn port(&self, transport: Transport) -> u16 {
        match transport {
            Transport::Udp => self.udp_port,
            Transport::Tcp => self.tcp_port,
            Transport::Tls => self.tls_port.unwrap_or(self.tcp_port),
        }
    }

    /// Our Contact for a leg over `transport`. It is a SIPS URI only when the dialog is SIPS
    /// (`sips`: the request that made it had a SIPS Request-URI, or a SIPS top Route or
    /// Record-Route; RFC 3261 §8.1.1.8, §12.1.1); over TLS otherwise it is `sip:` with
    /// `;transport=tls` (RFC 5630 §3.1.2), which every phone can send to.
    fn contact(&self, transport: Transport, sips: bool) -> String {
        let (scheme, param) = match transport {
            Transport::Tls if sips => ("sips", ""),
            Transport::Tls => ("sip", ";transport=tls"),
            Transport::Tcp => ("sip", ";transport=tcp"),
            Transport::Udp => ("sip", ""),
        };
        format!(
            "<{scheme}:callml@{}:{}{param}>",
            self.host,
            self.port(transport)
        )
    }

    /// Our Via for a new request over `transport`, with a fresh branch (§8.1.1.7).
    fn via(&self, transport: Transport) -> Via {
        let branch = format!("{BRANCH_COOKIE}{}", ids::token(16));
        Via::new(
            transport,
            self.host.clone(),
            Some(self.port(transport)),
            &branch,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No final response yet.
    Early,
    /// 2xx sent (inbound) or received (outbound).
    Answered,
}

/// The per-leg timers, validated against the leg's stored deadline when they fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LegTimer {
    /// Retransmit our 2xx to an INVITE or re-INVITE until the ACK (§13.3.1.4).
    Retransmit2xx,
    /// Outbound: give up on a cancelled INVITE that never got a final response (§9.1).
    CancelExpiry,
    /// The call layer did not answer a re-offer in time: answer with the current session.
    ReofferDeadline,
    /// The back-off after a 491 is over: send our re-INVITE again (§14.1).
    Backoff,
    /// The session timer wants a refresh or gives up (RFC 4028 §10).
    SessionTimer,
}

/// Which INVITE a 2xx being retransmitted answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckFor {
    /// The dialog-creating INVITE of an inbound leg; `offered` when our 2xx carried the offer
    /// (a delayed offer: their answer is in the ACK).
    Invite { offered: bool },
    /// A re-INVITE; `offered` when our 2xx carried the offer (their answer is in the ACK).
    Reinvite { offered: bool },
}

/// A 2xx being retransmitted until its ACK.
#[derive(Debug)]
struct Unacked {
    payload: Bytes,
    cseq: u32,
    ack_for: AckFor,
    interval: Duration,
    next_at: Instant,
    give_up_at: Instant,
}

#[derive(Debug)]
enum Role {
    Uas(uas::Uas),
    Uac(Box<uac::Uac>),
}

#[derive(Debug)]
struct Leg {
    role: Role,
    /// Inbound: where responses go (§18.2.2). Outbound: where the INVITE went. Over TCP/TLS,
    /// the flow in-dialog requests reuse.
    flow: Peer,
    /// Inbound: from the INVITE on. Outbound: from the first 2xx on.
    dialog: Option<Dialog>,
    phase: Phase,
    unacked: Option<Unacked>,
    /// The session we last offered or answered (RFC 3264 §8: its origin and version).
    local_sdp: Option<Bytes>,
    /// The `o=` line of the far end's last session description: an offer with the same one
    /// is a refresh, not a change (§8).
    remote_origin: Option<String>,
    /// Whether the far end allows UPDATE (its Allow header), for session refreshes.
    peer_allows_update: bool,
    /// Credentials for challenges to our requests (outbound legs given them).
    auth: Option<DigestClient>,
    /// The running session timer, and the deadline armed for it.
    timer: Option<SessionTimer>,
    timer_at: Option<Instant>,
    /// Their re-INVITE or UPDATE waiting for our answer.
    reoffer: Option<in_dialog::PendingReoffer>,
    /// Our re-INVITE or UPDATE.
    outgoing: renegotiate::Outgoing,
    /// An offer the call asked to send while another exchange was in progress.
    queued_offer: Option<Bytes>,
    /// The ACK of our last accepted re-INVITE, sent again if its 2xx is retransmitted.
    reinvite_ack: Option<(TxId, Transmit)>,
    /// The call hung up before the ACK of our 2xx: BYE when it comes (§15).
    bye_after_ack: bool,
    /// The dialog is SIPS: our Contact is a `sips:` URI ([`EndpointConfig::contact`]).
    sips: bool,
}

impl Leg {
    fn new(role: Role, flow: Peer, dialog: Option<Dialog>) -> Leg {
        Leg {
            role,
            flow,
            dialog,
            phase: Phase::Early,
            unacked: None,
            local_sdp: None,
            remote_origin: None,
            peer_allows_update: false,
            auth: None,
            timer: None,
            timer_at: None,
            reoffer: None,
            outgoing: renegotiate::Outgoing::Idle,
            queued_offer: None,
            reinvite_ack: None,
            bye_after_ack: false,
            sips: false,
        }
    }
}

/// Whether `uri` is a SIPS URI (RFC 3261 §19.1).
fn is_sips(uri: &Uri) -> bool {
    uri.as_sip()
        .is_some_and(|sip| sip.scheme == super::msg::Scheme::Sips)
}

/// Whether the first URI of a Route or Record-Route list (`name-addr` values) is SIPS.
fn top_route_is_sips<'a>(mut routes: impl Iterator<Item = &'a str>) -> bool {
    routes
        .next()
        .and_then(|route| super::msg::NameAddr::parse(route).ok())
        .is_some_and(|route| is_sips(&route.uri))
}

/// A stateless refusal of a request: the status and the header that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: u16,
    header: Option<(&'static str, String)>,
}

impl Refusal {
    fn status(status: u16) -> Refusal {
        Refusal {
            status,
            header: None,
        }
    }
}

/// The SIP endpoint.
pub struct Endpoint {
    config: EndpointConfig,
    transactions: TransactionLayer,
    legs: HashMap<CallKey, Leg>,
    by_dialog: HashMap<DialogId, CallKey>,
    by_invite: HashMap<TxId, CallKey>,
    /// Our re-INVITEs and UPDATEs, by transaction.
    dialog_requests: HashMap<TxId, CallKey>,
    /// Out-of-dialog requests of other parts (the trunks' REGISTERs), by transaction.
    requests: HashSet<TxId>,
    /// Our BYEs, kept until answered (to answer a digest challenge), after their leg is gone.
    byes: HashMap<TxId, renegotiate::ByeAttempt>,
    limiter: Option<RateLimiter>,
    /// Outbound legs rung at several registered contacts.
    forks: fork::Forks,
    /// Takes REGISTER and decides who may call into a domain; without one REGISTER is 405.
    registrar: Option<Registrar>,
    next_inbound: u64,
    timers: DeadlineQueue<(CallKey, LegTimer)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    accepting: bool,
    /// What the transport said while [`on_transport_error`](Self::on_transport_error) fails
    /// the transactions of a peer, for the legs that end of it.
    transport_failure: Option<String>,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        let limiter = config.rate_limit.and_then(|c| match RateLimiter::new(c) {
            Ok(limiter) => Some(limiter),
            Err(error) => {
                tracing::warn!(%error, "SIP rate limit disabled");
                None
            }
        });
        Endpoint {
            transactions: TransactionLayer::new(config.timing),
            config,
            legs: HashMap::new(),
            by_dialog: HashMap::new(),
            by_invite: HashMap::new(),
            dialog_requests: HashMap::new(),
            requests: HashSet::new(),
            byes: HashMap::new(),
            limiter,
            forks: fork::Forks::default(),
            registrar: None,
            next_inbound: 1,
            timers: DeadlineQueue::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            accepting: true,
            transport_failure: None,
        }
    }

    /// Takes REGISTER requests and admits INVITEs to domains through `registrar`.
    pub fn with_registrar(mut self, registrar: Registrar) -> Endpoint {
        self.registrar = Some(registrar);
        self
    }

    /// The registrar, for the driver (bindings to store, connections that closed).
    pub fn registrar_mut(&mut self) -> Option<&mut Registrar> {
        self.registrar.as_mut()
    }

    /// The contacts `target` names when it is a registered user (a [`Target::Client`], or a
    /// URI whose host is one of the account's domains); `None` for any other target.
    pub fn registered_user(&self, target: &Target) -> Option<UserContacts> {
        match (target, &self.registrar) {
            (Target::Client(_), None) => Some(UserContacts::default()),
            (_, Some(registrar)) => registrar.user_contacts(target),
            (_, None) => None,
        }
    }

    /// [`registered_user`](Self::registered_user), with the bindings other nodes hold for the
    /// user (`stored`, read from a shared store; this node is `me`).
    pub fn registered_user_with(
        &self,
        target: &Target,
        stored: &[crate::store::BindingRecord],
        me: &str,
    ) -> Option<UserContacts> {
        match &self.registrar {
            Some(registrar) => registrar.user_contacts_with(target, stored, me),
            None => self.registered_user(target),
        }
    }

    /// Sends an out-of-dialog request built elsewhere (a trunk's REGISTER) to `peer`, with our
    /// Via on top; its final response comes back as [`EndpointEvent::RequestAnswered`], or
    /// its failure as [`EndpointEvent::RequestFailed`].
    pub fn send_request(
        &mut self,
        mut request: Request,
        peer: Peer,
        now: Instant,
    ) -> Result<TxId, EndpointError> {
        let mut headers = Headers::new();
        headers.push("Via", self.config.via(peer.transport).to_string());
        for (name, value) in request.headers.iter() {
            if !name.eq_ignore_ascii_case("Via") {
                headers.push(name, value);
            }
        }
        request.headers = headers;
        let tx = self
            .transactions
            .send_request(request, peer, now)
            .map_err(|_| EndpointError::BadRequest("the request has no Via branch"))?;
        self.requests.insert(tx);
        Ok(tx)
    }

    /// Our contact address for `user` over `transport`, as other parts bind it (a trunk's
    /// registration): `sip:user@host:port`, with `;transport=` for TCP and TLS.
    pub fn contact_uri(&self, user: &str, transport: Transport) -> super::msg::SipUri {
        let mut uri = super::msg::SipUri::new(
            super::msg::Scheme::Sip,
            Some(user),
            self.config.host.clone(),
            Some(self.config.port(transport)),
        );
        if transport != Transport::Udp {
            let name = transport.as_str().to_ascii_lowercase();
            uri.params.push(("transport".to_owned(), Some(name)));
        }
        uri
    }

    /// How callml names itself (`User-Agent`, `Server`).
    pub fn user_agent(&self) -> &str {
        &self.config.user_agent
    }

    /// Stops taking new calls (they get 503): used at shutdown.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Legs not yet released.
    pub fn call_count(&self) -> usize {
        self.legs.len()
    }

    /// Whether any transaction or leg still needs the endpoint.
    pub fn is_idle(&self) -> bool {
        self.legs.is_empty() && self.transactions.is_empty()
    }

    /// Whether a leg or a transaction still sends over `peer` (a connection that must stay
    /// open).
    pub fn uses_flow(&self, peer: Peer) -> bool {
        self.legs.values().any(|leg| leg.flow == peer)
            || self.transactions.uses_peer(peer)
            || self.registrar.as_ref().is_some_and(|r| r.uses_flow(peer))
    }

    fn signal(&mut self, call: CallKey, signal: CallSignal) {
        if self.forks.is_branch(call) {
            return self.forks.hold_signal(call, signal);
        }
        self.events
            .push_back(EndpointEvent::Signal { call, signal });
    }

    /// Feeds one received datagram or TCP/TLS frame.
    pub fn handle_bytes(&mut self, bytes: &[u8], source: Peer, now: Instant) {
        match super::msg::parse(bytes) {
            Ok(Message::Request(request)) => self.on_request(request, source, now),
            Ok(Message::Response(response)) => self.on_response(response, now),
            Err(e) => self.on_parse_error(e, source),
        }
        self.settle_forks(now);
    }

    /// The transport could not reach `peer` (a connection that failed to open or broke, a
    /// TLS certificate refused, a send error): requests waiting on it fail now rather than
    /// at Timer B/F, and an outbound INVITE moves on to its next address (RFC 3263 §4.3).
    /// `reason` is the transport's words (`TLS handshake with … timed out`).
    pub fn on_transport_error(&mut self, peer: Peer, reason: String, now: Instant) {
        self.transport_failure = Some(reason);
        self.transactions.on_peer_failed(peer);
        self.drain_transaction_events(now);
        self.transport_failure = None;
        self.settle_forks(now);
    }

    /// Why a transaction failed on the transport, in words.
    fn transport_failure_reason(&self) -> String {
        self.transport_failure
            .clone()
            .unwrap_or_else(|| "the transport could not reach the callee".to_owned())
    }

    /// A request that failed to parse is answered statelessly when it can be (RFC 4475
    /// expects 400 for most malformed requests, 501 for an unknown method), and dropped
    /// otherwise.
    fn on_parse_error(&mut self, error: ParseError, source: Peer) {
        tracing::debug!(%error, peer = %source.addr, "malformed SIP message");
        let (Some(method), Some(headers)) = (&error.request_method, &error.headers) else {
            return;
        };
        if *method == Method::Ack || headers.list("Via").next().is_none() {
            return;
        }
        let status = if is_version_error(&error) {
            505
        } else if matches!(method, Method::Extension(_)) {
            501
        } else {
            400
        };
        let mut response = Response::to_request(headers, status, None);
        if status == 400 {
            response.reason = format!("Bad Request ({})", error.reason);
        }
        self.stamp(&mut response.headers);
        self.transmits.push_back(Transmit {
            peer: source,
            payload: Message::Response(response).to_bytes(),
        });
    }

    fn stamp(&self, headers: &mut Headers) {
        headers.push("Server", self.config.user_agent.clone());
    }

    fn respond(&mut self, tx: TxId, request_headers: &Headers, status: u16, now: Instant) {
        self.refuse(tx, request_headers, Refusal::status(status), now);
    }

    /// Answers through the transaction with a final status and its explaining header.
    fn refuse(&mut self, tx: TxId, request_headers: &Headers, refusal: Refusal, now: Instant) {
        let mut response =
            Response::to_request(request_headers, refusal.status, Some(&ids::token(10)));
        self.stamp(&mut response.headers);
        if refusal.status == 405 {
            response.headers.push("Allow", ALLOW);
        }
        if let Some((name, value)) = refusal.header {
            response.headers.push(name, value);
        }
        let _ = self.transactions.respond(tx, response, now);
    }

    fn on_request(&mut self, mut request: Request, source: Peer, now: Instant) {
        let Ok(mut e) = request.headers.essentials() else {
            return;
        };
        let reply_to = stamp_received(&mut request.headers, &mut e, source);
        if let Some(retry_after) = self.rate_limited(&request, &e, source, now) {
            let mut response = Response::to_request(&request.headers, 503, None);
            self.stamp(&mut response.headers);
            response
                .headers
                .push("Retry-After", retry_after.to_string());
            self.transmits.push_back(Transmit {
                peer: reply_to,
                payload: Message::Response(response).to_bytes(),
            });
            return;
        }
        keep_only_the_sdp_part(&mut request);
        let tx = match self.transactions.on_request(&request, &e, reply_to, now) {
            Incoming::New(tx) => tx,
            Incoming::Absorbed => return,
            Incoming::AckForDialog => return self.on_dialog_ack(&request, &e, now),
        };
        if let Some(refusal) = self.precheck(&request, &e) {
            return self.refuse(tx, &request.headers, refusal, now);
        }
        if e.to.tag().is_some() {
            return self.on_in_dialog(request, &e, tx, now);
        }
        match request.method {
            Method::Invite => {
                let check = match self.registrar.as_mut() {
                    Some(registrar) => registrar.check_invite(&request, &e, source, now),
                    None => InviteCheck::NotForADomain,
                };
                let domain = match check {
                    InviteCheck::NotForADomain => None,
                    InviteCheck::Admitted(domain) => Some(domain),
                    InviteCheck::Refused(mut response) => {
                        self.stamp(&mut response.headers);
                        let _ = self.transactions.respond(tx, *response, now);
                        return;
                    }
                };
                self.on_invite(request, &e, tx, reply_to, domain, now)
            }
            Method::Register if self.registrar.is_some() => {
                if let Some(registrar) = self.registrar.as_mut() {
                    let mut response = registrar.on_register(&request, &e, source, now);
                    self.stamp(&mut response.headers);
                    let _ = self.transactions.respond(tx, response, now);
                }
            }
            Method::Cancel => self.on_cancel(&request, &e, tx, now),
            Method::Options => {
                let mut response =
                    Response::to_request(&request.headers, 200, Some(&ids::token(10)));
                self.stamp(&mut response.headers);
                response.headers.push("Allow", ALLOW);
                response.headers.push("Accept", "application/sdp");
                response.headers.push("Supported", SUPPORTED);
                let _ = self.transactions.respond(tx, response, now);
            }
            Method::Bye | Method::Info | Method::Update | Method::Ack => {
                self.respond(tx, &request.headers, 481, now)
            }
            Method::Extension(_) => self.respond(tx, &request.headers, 501, now),
            _ => self.respond(tx, &request.headers, 405, now),
        }
    }

    /// A new request from outside any dialog that the source's bucket cannot pay for: the
    /// `Retry-After` seconds. Retransmissions of requests already taken, ACK and CANCEL pass.
    fn rate_limited(
        &mut self,
        request: &Request,
        e: &Essentials,
        source: Peer,
        now: Instant,
    ) -> Option<u64> {
        if e.to.tag().is_some()
            || matches!(request.method, Method::Ack | Method::Cancel)
            || self.transactions.is_known(e, &request.method)
        {
            return None;
        }
        let decision = self.limiter.as_mut()?.check(source.addr.ip(), now);
        match decision {
            Decision::Allow => None,
            limited => {
                tracing::debug!(peer = %source.addr, "SIP request refused by the rate limit");
                limited.retry_after_secs()
            }
        }
    }

    /// Checks every new request must pass (§8.2.1–§8.2.3, §16.3 for Max-Forwards).
    fn precheck(&self, request: &Request, e: &Essentials) -> Option<Refusal> {
        if !matches!(request.uri, Uri::Sip(_) | Uri::Tel(_)) {
            return Some(Refusal::status(416));
        }
        if let Some(value) = request.headers.get("Max-Forwards") {
            match value.trim().parse::<u32>() {
                Err(_) => return Some(Refusal::status(400)),
                Ok(0) if request.method != Method::Options => {
                    return Some(Refusal::status(483));
                }
                Ok(_) => {}
            }
        }
        let implemented = matches!(
            request.method,
            Method::Invite | Method::Bye | Method::Options | Method::Info | Method::Update
        );
        if implemented {
            let unsupported: Vec<&str> = request
                .headers
                .list("Require")
                .filter(|option| !option.eq_ignore_ascii_case(SUPPORTED))
                .collect();
            if !unsupported.is_empty() {
                return Some(Refusal {
                    status: 420,
                    header: Some(("Unsupported", unsupported.join(", "))),
                });
            }
        }
        let offer_method = matches!(request.method, Method::Invite | Method::Update);
        if offer_method
            && !request.body.is_empty()
            && !request
                .headers
                .get("Content-Type")
                .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"))
        {
            return Some(Refusal {
                status: 415,
                header: Some(("Accept", "application/sdp".into())),
            });
        }
        if request.method == Method::Invite && e.to.tag().is_none() {
            if !self.accepting {
                return Some(Refusal::status(503));
            }
            if !accepts_sdp(&request.headers) {
                return Some(Refusal {
                    status: 406,
                    header: Some(("Accept", "application/sdp".into())),
                });
            }
        }
        None
    }

    fn on_response(&mut self, response: Response, now: Instant) {
        if let Ok(e) = response.headers.essentials() {
            self.transactions.on_response(response, &e, now);
        }
        self.drain_transaction_events(now);
    }

    fn drain_transaction_events(&mut self, now: Instant) {
        while let Some(event) = self.transactions.poll_event() {
            match event {
                TxEvent::Response { id, response } => {
                    if let Some(&call) = self.by_invite.get(&id) {
                        self.on_invite_response(call, id, response, now);
                    } else if let Some(&call) = self.dialog_requests.get(&id) {
                        self.on_dialog_response(call, id, response, now);
                    } else if self.byes.contains_key(&id) {
                        self.on_bye_response(id, response, now);
                    } else if response.status >= 200 && self.requests.remove(&id) {
                        self.events.push_back(EndpointEvent::RequestAnswered {
                            tx: id,
                            response: Box::new(response),
                        });
                    }
                }
                TxEvent::Timeout { id } | TxEvent::TransportFailed { id } => {
                    let transport_failed = matches!(event, TxEvent::TransportFailed { .. });
                    if let Some(&call) = self.by_invite.get(&id) {
                        self.on_invite_timeout(call, id, transport_failed, now);
                    } else if let Some(call) = self.dialog_requests.remove(&id) {
                        self.on_dialog_timeout(call, id, now);
                    } else if self.byes.remove(&id).is_some() {
                        tracing::debug!(?id, "BYE got no response");
                    } else if self.requests.remove(&id) {
                        self.events.push_back(EndpointEvent::RequestFailed {
                            tx: id,
                            transport_failed,
                        });
                    } else {
                        tracing::debug!(?id, "request got no response");
                    }
                }
                TxEvent::AckTimeout { id } => {
                    tracing::debug!(?id, "no ACK for a failure response");
                }
            }
        }
    }

    /// Ends an answered leg with BYE (§15.1.1); an outbound leg that is still ringing is
    /// cancelled instead (§9.1).
    pub fn hangup(&mut self, call: CallKey, now: Instant) -> Result<(), EndpointError> {
        if self.hang_up_fork(call, now) {
            self.settle_forks(now);
            return Ok(());
        }
        let leg = self.legs.get(&call).ok_or(EndpointError::UnknownCall)?;
        match (leg.phase, &leg.role) {
            (Phase::Answered, _) => {
                self.end_answered(call, now);
                Ok(())
            }
            (Phase::Early, Role::Uac(_)) => {
                self.cancel(call, now);
                Ok(())
            }
            (Phase::Early, Role::Uas(_)) => Err(EndpointError::NotAnswered),
        }
    }

    /// The call task is gone: make sure the other party is not left hanging, then forget the
    /// leg (an outbound leg being cancelled stays until its INVITE transaction ends).
    pub fn release(&mut self, call: CallKey, now: Instant) {
        if self.release_fork(call, now) {
            return self.settle_forks(now);
        }
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        match (leg.phase, &mut leg.role) {
            (Phase::Answered, _) => self.end_answered(call, now),
            (Phase::Early, Role::Uas(_)) => {
                self.final_failure(call, 500, now);
                self.forget(call);
            }
            (Phase::Early, Role::Uac(uac)) => {
                uac.released = true;
                self.cancel(call, now);
            }
        }
    }

    /// BYE for an answered leg, once its dialog is confirmed: a callee must not send BYE
    /// before the ACK of its 2xx arrives or is given up on (§15), so until then the BYE waits.
    fn end_answered(&mut self, call: CallKey, now: Instant) {
        if let Some(leg) = self.legs.get_mut(&call) {
            if leg
                .unacked
                .as_ref()
                .is_some_and(|u| matches!(u.ack_for, AckFor::Invite { .. }))
            {
                leg.bye_after_ack = true;
                return;
            }
        }
        self.send_bye(call, now);
        self.forget(call);
    }

    fn forget(&mut self, call: CallKey) {
        if let Some(leg) = self.legs.remove(&call) {
            if let Some(dialog) = &leg.dialog {
                self.by_dialog.remove(&dialog.id);
            }
            match &leg.role {
                Role::Uas(uas) => {
                    self.by_invite.remove(&uas.invite_tx);
                }
                Role::Uac(uac) => {
                    self.by_invite.remove(&uac.invite_tx);
                }
            }
            self.dialog_requests.retain(|_, owner| *owner != call);
        }
    }

    /// Fires due timers: transaction timers, 2xx retransmissions, cancel expiries, re-offer
    /// deadlines, 491 back-offs and session timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        self.drain_transaction_events(now);
        while let Some((at, (call, timer))) = self.timers.pop_due(now) {
            match timer {
                LegTimer::Retransmit2xx => self.retransmit_2xx(call, at, now),
                LegTimer::CancelExpiry => self.cancel_expired(call, at),
                LegTimer::ReofferDeadline => self.reoffer_expired(call, at, now),
                LegTimer::Backoff => self.backoff_over(call, at, now),
                LegTimer::SessionTimer => self.session_timer_fired(call, at, now),
            }
            self.drain_transaction_events(now);
        }
        if let Some(registrar) = self.registrar.as_mut() {
            registrar.handle_timeout(now);
        }
        self.settle_forks(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.transactions.poll_timeout(),
            self.timers.next(),
            self.registrar.as_ref().and_then(Registrar::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.transactions.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }
}

/// A `multipart/*` body with an `application/sdp` part (SIP-I/SIP-T: SDP next to ISUP, RFC
/// 5621) becomes that part alone, so the offer is read as any other; the other parts are
/// dropped. Any other body stays as it came (a multipart without SDP is then answered 415).
fn keep_only_the_sdp_part(request: &mut Request) {
    let part = request
        .headers
        .get("Content-Type")
        .and_then(|content_type| super::msg::multipart::sdp_part(content_type, &request.body));
    if let Some(range) = part {
        request.body = request.body.slice(range);
        request.headers.set("Content-Type", "application/sdp");
        request
            .headers
            .set("Content-Length", request.body.len().to_string());
    }
}

/// Whether a request's `Accept` lets us answer with SDP (§8.2.3): no header, an empty one
/// (read leniently as no preference), or a list with `application/sdp` or a wildcard.
fn accepts_sdp(headers: &Headers) -> bool {
    let mut listed = headers.list("Accept").peekable();
    if listed.peek().is_none() {
        return true;
    }
    listed.any(|range| {
        let media = range.split(';').next().unwrap_or_default().trim();
        ["application/sdp", "application/*", "*/*"]
            .iter()
            .any(|ok| media.eq_ignore_ascii_case(ok))
    })
}

/// Records where a request really came from in its top Via (`received`, RFC 3261 §18.2.1;
/// `rport`, RFC 3581 §4) and returns where responses must go (§18.2.2).
fn stamp_received(headers: &mut Headers, e: &mut Essentials, source: Peer) -> Peer {
    let source_ip = source.addr.ip();
    let mut changed = false;
    if e.via.host != Host::Ip(source_ip) {
        e.via.set_param("received", Some(source_ip.to_string()));
        changed = true;
    }
    if e.via.has_rport() {
        e.via
            .set_param("rport", Some(source.addr.port().to_string()));
        changed = true;
    }
    if changed {
        replace_top_via(headers, &e.via);
    }
    if source.transport.is_reliable() || e.via.has_rport() {
        return source;
    }
    let port = e.via.port.unwrap_or(source.transport.default_port());
    Peer {
        transport: source.transport,
        addr: std::net::SocketAddr::new(source_ip, port),
    }
}

fn replace_top_via(headers: &mut Headers, via: &Via) {
    let mut rebuilt = Headers::new();
    let mut done = false;
    for (name, value) in headers.iter() {
        if !done && name.eq_ignore_ascii_case("Via") {
            let mut parts = super::msg::split_list(value).into_iter();
            parts.next();
            let mut line = via.to_string();
            for rest in parts {
                line.push_str(", ");
                line.push_str(rest);
            }
            rebuilt.push(name, line);
            done = true;
        } else {
            rebuilt.push(name, value);
        }
    }
    *headers = rebuilt;
}

/// Where an in-dialog request goes: over a connection-oriented transport, the flow the
/// dialog was created on; over UDP, the first route or the remote target when it names an IP
/// address, and the flow otherwise (a peer behind NAT, or a host name).
fn in_dialog_peer(dialog: &Dialog, flow: Peer) -> Peer {
    if flow.transport.is_reliable() {
        return flow;
    }
    let target = dialog
        .first_route()
        .unwrap_or_else(|| dialog.remote_target.clone());
    match target.as_sip() {
        Some(uri) => match &uri.host {
            Host::Ip(ip) => Peer {
                transport: Transport::Udp,
                addr: std::net::SocketAddr::new(*ip, uri.port.unwrap_or(5060)),
            },
            Host::Domain(_) => flow,
        },
        None => flow,
    }
}

/// Sets a request's CSeq number and gives it a new top Via, for sending it again as a new
/// transaction (§8.1.3.5, §22.2, §14.1).
fn renew(request: &mut Request, seq: u32, via: Via) {
    request
        .headers
        .set("CSeq", format!("{seq} {}", request.method));
    let mut rebuilt = Headers::new();
    let mut replaced = false;
    for (name, value) in request.headers.iter() {
        if !replaced && name.eq_ignore_ascii_case("Via") {
            rebuilt.push("Via", via.to_string());
            replaced = true;
        } else {
            rebuilt.push(name, value);
        }
    }
    request.headers = rebuilt;
}

/// The `o=` line of a session description, if it has one.
fn origin_of(sdp: &[u8]) -> Option<String> {
    std::str::from_utf8(sdp).ok().and_then(|text| {
        text.lines()
            .map(|l| l.trim_end_matches('\r'))
            .find(|l| l.starts_with("o="))
            .map(str::to_owned)
    })
}

/// A fresh client nonce for a digest answer.
fn cnonce() -> String {
    ids::token(16)
}

#[cfg(test)]
mod in_dialog_tests;
#[cfg(test)]
mod outbound_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod uac_tests;
