//! The SIP endpoint, sans-IO: the transaction user (RFC 3261 §8, §12–§15) for every call leg
//! callml has, inbound ([`uas`]) and outbound ([`uac`]). It turns messages into
//! [`EndpointEvent`]s for the call tasks and their commands into requests and responses.
//!
//! Shared here: request dispatch and the checks every request passes (§8.2: 416, 483, 420,
//! 415, 503 at shutdown; extension methods 501, other known methods 405 with `Allow`), requests
//! inside dialogs (BYE both ways, re-INVITE answered with the current session, INFO, OPTIONS;
//! `481` for unknown dialogs, `500` for a CSeq out of order), malformed requests answered
//! statelessly `400`/`505` and otherwise dropped with no state kept. Retransmitted requests
//! never reach a call: the transaction layer absorbs them.

mod uac;
mod uas;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::dialog::{Dialog, DialogId};
use super::msg::{
    BRANCH_COOKIE, Essentials, Headers, Host, Message, Method, ParseError, Request, Response,
    Transport, Uri, Via, is_version_error,
};
use super::transaction::{
    DeadlineQueue, Incoming, Peer, Timing, TransactionLayer, Transmit, TxEvent, TxId,
};
use crate::ids;

pub use uac::Invite;

/// Methods callml answers (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

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
    /// The other party hung up; the BYE was answered 200.
    Bye,
    /// Inbound: our 2xx was never acknowledged (§13.3.1.4); a BYE was sent.
    NoAck,
    /// Outbound: a provisional response with a To tag (180 ringing, 183 session progress).
    Progress(Box<Response>),
    /// Outbound: the callee answered. The ACK is already sent unless the INVITE carried no
    /// offer: then the call must [`Endpoint::acknowledge`] with its answer.
    Answered(Box<Response>),
    /// Outbound: a final failure (3xx–6xx), already ACKed by the transaction.
    Rejected(Box<Response>),
    /// Outbound: no response at all (Timer B, or the transport failed).
    Unreachable,
}

/// Output of the endpoint for the call layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A new INVITE (already answered `100 Trying`).
    Incoming {
        call: CallKey,
        invite: Box<Request>,
        source: Peer,
    },
    Signal {
        call: CallKey,
        signal: CallSignal,
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
    #[error("the request cannot be built: {0}")]
    BadRequest(&'static str),
}

/// How the endpoint presents itself.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Written into Via and Contact.
    pub host: Host,
    pub udp_port: u16,
    pub tcp_port: u16,
    pub tls_port: Option<u16>,
    pub user_agent: String,
    pub timing: Timing,
}

impl EndpointConfig {
    fn port(&self, transport: Transport) -> u16 {
        match transport {
            Transport::Udp => self.udp_port,
            Transport::Tcp => self.tcp_port,
            Transport::Tls => self.tls_port.unwrap_or(self.tcp_port),
        }
    }

    fn contact(&self, transport: Transport) -> String {
        let scheme = if transport == Transport::Tls {
            "sips"
        } else {
            "sip"
        };
        let param = match transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
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
    /// Inbound: retransmit our 2xx until the ACK (§13.3.1.4).
    Retransmit2xx,
    /// Outbound: give up on a cancelled INVITE that never got a final response (§9.1).
    CancelExpiry,
}

/// A 2xx being retransmitted until its ACK.
#[derive(Debug)]
struct Unacked {
    payload: Bytes,
    cseq: u32,
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
    /// The session we last offered or answered, for re-INVITEs.
    local_sdp: Option<Bytes>,
}

/// The SIP endpoint.
pub struct Endpoint {
    config: EndpointConfig,
    transactions: TransactionLayer,
    legs: HashMap<CallKey, Leg>,
    by_dialog: HashMap<DialogId, CallKey>,
    by_invite: HashMap<TxId, CallKey>,
    next_inbound: u64,
    timers: DeadlineQueue<(CallKey, LegTimer)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    accepting: bool,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            transactions: TransactionLayer::new(config.timing),
            config,
            legs: HashMap::new(),
            by_dialog: HashMap::new(),
            by_invite: HashMap::new(),
            next_inbound: 1,
            timers: DeadlineQueue::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            accepting: true,
        }
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

    fn signal(&mut self, call: CallKey, signal: CallSignal) {
        self.events
            .push_back(EndpointEvent::Signal { call, signal });
    }

    /// Feeds one received datagram or TCP frame.
    pub fn handle_bytes(&mut self, bytes: &[u8], source: Peer, now: Instant) {
        match super::msg::parse(bytes) {
            Ok(Message::Request(request)) => self.on_request(request, source, now),
            Ok(Message::Response(response)) => self.on_response(response, now),
            Err(e) => self.on_parse_error(e, source),
        }
    }

    /// A request that failed to parse is answered statelessly when it can be (RFC 4475
    /// expects 400 for most malformed requests), and dropped otherwise.
    fn on_parse_error(&mut self, error: ParseError, source: Peer) {
        tracing::debug!(%error, peer = %source.addr, "malformed SIP message");
        let (Some(method), Some(headers)) = (&error.request_method, &error.headers) else {
            return;
        };
        if *method == Method::Ack || headers.list("Via").next().is_none() {
            return;
        }
        let status = if is_version_error(&error) { 505 } else { 400 };
        let mut response = Response::to_request(headers, status, None);
        response.reason = if status == 505 {
            "Version Not Supported".into()
        } else {
            format!("Bad Request ({})", error.reason)
        };
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
        let mut response = Response::to_request(request_headers, status, Some(&ids::token(10)));
        self.stamp(&mut response.headers);
        if status == 405 {
            response.headers.push("Allow", ALLOW);
        }
        let _ = self.transactions.respond(tx, response, now);
    }

    fn on_request(&mut self, mut request: Request, source: Peer, now: Instant) {
        let Ok(mut e) = request.headers.essentials() else {
            return;
        };
        let reply_to = stamp_received(&mut request.headers, &mut e, source);
        let tx = match self.transactions.on_request(&request, &e, reply_to, now) {
            Incoming::New(tx) => tx,
            Incoming::Absorbed => return,
            Incoming::AckForDialog => return self.on_dialog_ack(&request, &e),
        };
        if let Some(status) = self.precheck(&request, &e) {
            return self.respond(tx, &request.headers, status, now);
        }
        if e.to.tag().is_some() {
            return self.on_in_dialog(request, &e, tx, now);
        }
        match request.method {
            Method::Invite => self.on_invite(request, &e, tx, reply_to, now),
            Method::Cancel => self.on_cancel(&request, &e, tx, now),
            Method::Options => {
                let mut response =
                    Response::to_request(&request.headers, 200, Some(&ids::token(10)));
                self.stamp(&mut response.headers);
                response.headers.push("Allow", ALLOW);
                response.headers.push("Accept", "application/sdp");
                let _ = self.transactions.respond(tx, response, now);
            }
            Method::Bye | Method::Info | Method::Ack => {
                self.respond(tx, &request.headers, 481, now)
            }
            Method::Extension(_) => self.respond(tx, &request.headers, 501, now),
            _ => self.respond(tx, &request.headers, 405, now),
        }
    }

    /// Checks every new request must pass (§8.2.1–§8.2.2, §16.3 for Max-Forwards).
    fn precheck(&self, request: &Request, e: &Essentials) -> Option<u16> {
        if !matches!(request.uri, Uri::Sip(_) | Uri::Tel(_)) {
            return Some(416);
        }
        if request
            .headers
            .get("Max-Forwards")
            .is_some_and(|m| m.trim() == "0")
            && request.method != Method::Options
        {
            return Some(483);
        }
        if matches!(
            request.method,
            Method::Invite | Method::Bye | Method::Options | Method::Info
        ) && request.headers.list("Require").next().is_some()
        {
            return Some(420);
        }
        if request.method == Method::Invite && e.to.tag().is_none() {
            if !self.accepting {
                return Some(503);
            }
            if !request.body.is_empty()
                && !request
                    .headers
                    .get("Content-Type")
                    .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"))
            {
                return Some(415);
            }
        }
        None
    }

    fn on_in_dialog(&mut self, request: Request, e: &Essentials, tx: TxId, now: Instant) {
        let call = DialogId::of_incoming(e).and_then(|id| self.by_dialog.get(&id).copied());
        let Some(call) = call else {
            return self.respond(tx, &request.headers, 481, now);
        };
        let Some(leg) = self.legs.get_mut(&call) else {
            return self.respond(tx, &request.headers, 481, now);
        };
        let in_order = leg
            .dialog
            .as_mut()
            .is_some_and(|d| d.accept_remote_seq(e.cseq.seq));
        if !in_order {
            return self.respond(tx, &request.headers, 500, now);
        }
        match request.method {
            Method::Bye => {
                self.respond(tx, &request.headers, 200, now);
                self.on_bye(call, now);
                self.forget(call);
                self.signal(call, CallSignal::Bye);
            }
            Method::Invite => {
                // A session refresh or a new offer: answer with our current session, which
                // holds both for a refresh and for the hold/resume callers do with G.711.
                let Some(sdp) = leg.local_sdp.clone() else {
                    return self.respond(tx, &request.headers, 488, now);
                };
                let contact = self.config.contact(leg.flow.transport);
                let mut response = Response::to_request(&request.headers, 200, None)
                    .with_body("application/sdp", sdp);
                response.headers.push("Contact", contact);
                response.headers.push("Allow", ALLOW);
                self.stamp(&mut response.headers);
                self.send_2xx(call, tx, response, e.cseq.seq, now);
            }
            Method::Info | Method::Options => self.respond(tx, &request.headers, 200, now),
            Method::Extension(_) => self.respond(tx, &request.headers, 501, now),
            _ => self.respond(tx, &request.headers, 405, now),
        }
    }

    fn on_dialog_ack(&mut self, request: &Request, e: &Essentials) {
        let Some(call) = DialogId::of_incoming(e).and_then(|id| self.by_dialog.get(&id).copied())
        else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        if leg.unacked.as_ref().is_some_and(|u| u.cseq == e.cseq.seq) {
            leg.unacked = None;
            let sdp = (!request.body.is_empty()).then(|| request.body.clone());
            self.signal(call, CallSignal::Acked { sdp });
        }
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
                    }
                }
                TxEvent::Timeout { id } => {
                    if let Some(call) = self.by_invite.remove(&id) {
                        self.on_invite_timeout(call);
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
        let leg = self.legs.get(&call).ok_or(EndpointError::UnknownCall)?;
        match (leg.phase, &leg.role) {
            (Phase::Answered, _) => {
                self.send_bye(call, now);
                self.forget(call);
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
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        match (leg.phase, &mut leg.role) {
            (Phase::Answered, _) => {
                self.send_bye(call, now);
                self.forget(call);
            }
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

    fn send_bye(&mut self, call: CallKey, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let Some(dialog) = leg.dialog.as_mut() else {
            return;
        };
        let via = self.config.via(leg.flow.transport);
        let mut bye = dialog.request(Method::Bye, via, &self.config.user_agent);
        bye.headers
            .push("Reason", "SIP;cause=200;text=\"Call completed\"");
        let peer = in_dialog_peer(dialog, leg.flow);
        if let Err(error) = self.transactions.send_request(bye, peer, now) {
            tracing::warn!(%error, "could not send BYE");
        }
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
        }
    }

    /// Fires due timers: transaction timers, 2xx retransmissions, cancel expiries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        self.drain_transaction_events(now);
        while let Some((at, (call, timer))) = self.timers.pop_due(now) {
            match timer {
                LegTimer::Retransmit2xx => self.retransmit_2xx(call, at, now),
                LegTimer::CancelExpiry => self.cancel_expired(call, at),
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.transactions.poll_timeout(), self.timers.next()]
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod uac_tests;
