//! The SIP endpoint, sans-IO: the transaction user (RFC 3261 §8.2, §12, §13.3, §15) for calls
//! that arrive at callml. It turns requests into [`EndpointEvent`]s for the call tasks and
//! their commands ([`Endpoint::ring`], [`Endpoint::answer`], ...) into responses and requests.
//!
//! Inbound INVITE: `100 Trying` at once, then whatever the call decides (180, 200 with SDP,
//! a final failure). The 2xx is retransmitted (T1 doubling to T2) until the ACK arrives; after
//! 64·T1 without one the call is ended with BYE (§13.3.1.4). CANCEL before the final response
//! answers the INVITE `487` (§9.2). Requests inside an unknown dialog get `481`, known methods
//! callml does not serve `405` with `Allow`, extension methods `501`, requests it cannot parse
//! `400` (or `505` for another SIP version), `Require`d extensions `420`. Retransmitted
//! requests never reach a call: the transaction layer absorbs them.

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

/// Methods callml answers (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

/// Identifies an inbound call inside the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// What happened on a call's signalling, for its call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSignal {
    /// The caller acknowledged our 2xx.
    Acked,
    /// CANCEL arrived before a final response; the INVITE was answered 487.
    Canceled,
    /// The caller hung up; the BYE was answered 200.
    Bye,
    /// Our 2xx was never acknowledged (§13.3.1.4); a BYE was sent.
    NoAck,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No final response yet.
    Early,
    /// 2xx sent.
    Answered,
}

/// A 2xx being retransmitted until its ACK (§13.3.1.4).
#[derive(Debug)]
struct Unacked {
    payload: Bytes,
    cseq: u32,
    interval: Duration,
    next_at: Instant,
    give_up_at: Instant,
}

#[derive(Debug)]
struct InboundCall {
    invite_tx: TxId,
    invite_headers: Headers,
    /// Where responses go (§18.2.2) and, over TCP/TLS, the flow in-dialog requests reuse.
    source: Peer,
    dialog: Dialog,
    phase: Phase,
    unacked: Option<Unacked>,
    local_sdp: Option<Bytes>,
}

/// The SIP endpoint.
pub struct Endpoint {
    config: EndpointConfig,
    transactions: TransactionLayer,
    calls: HashMap<CallKey, InboundCall>,
    by_dialog: HashMap<DialogId, CallKey>,
    next_call: u64,
    retransmissions: DeadlineQueue<CallKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    accepting: bool,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            transactions: TransactionLayer::new(config.timing),
            config,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            next_call: 1,
            retransmissions: DeadlineQueue::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            accepting: true,
        }
    }

    /// Stops taking new calls (they get 503): used at shutdown.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Calls not yet released.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Whether any transaction or call still needs the endpoint.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.transactions.is_empty()
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
        response.reason = format!("Bad Request ({})", error.reason);
        if status == 505 {
            response.reason = "Version Not Supported".into();
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
            Incoming::AckForDialog => return self.on_dialog_ack(&e),
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

    fn on_invite(
        &mut self,
        request: Request,
        e: &Essentials,
        tx: TxId,
        source: Peer,
        now: Instant,
    ) {
        let local_tag = ids::token(10);
        let dialog = match Dialog::as_uas(&request, e, &local_tag) {
            Ok(d) => d,
            Err(_) => return self.respond(tx, &request.headers, 400, now),
        };
        let call = CallKey(self.next_call);
        self.next_call += 1;
        let mut trying = Response::to_request(&request.headers, 100, None);
        self.stamp(&mut trying.headers);
        let _ = self.transactions.respond(tx, trying, now);
        self.by_dialog.insert(dialog.id.clone(), call);
        self.calls.insert(
            call,
            InboundCall {
                invite_tx: tx,
                invite_headers: request.headers.clone(),
                source,
                dialog,
                phase: Phase::Early,
                unacked: None,
                local_sdp: None,
            },
        );
        self.events.push_back(EndpointEvent::Incoming {
            call,
            invite: Box::new(request),
            source,
        });
    }

    fn on_cancel(&mut self, request: &Request, e: &Essentials, tx: TxId, now: Instant) {
        let Some(invite_tx) = self.transactions.invite_for_cancel(e) else {
            return self.respond(tx, &request.headers, 481, now);
        };
        self.respond(tx, &request.headers, 200, now);
        if !self.transactions.is_proceeding(invite_tx) {
            return;
        }
        let Some((&call, _)) = self.calls.iter().find(|(_, c)| c.invite_tx == invite_tx) else {
            return;
        };
        self.final_failure(call, 487, now);
        self.forget(call);
        self.events.push_back(EndpointEvent::Signal {
            call,
            signal: CallSignal::Canceled,
        });
    }

    fn on_in_dialog(&mut self, request: Request, e: &Essentials, tx: TxId, now: Instant) {
        let call = DialogId::of_incoming(e).and_then(|id| self.by_dialog.get(&id).copied());
        let Some(call) = call else {
            return self.respond(tx, &request.headers, 481, now);
        };
        let Some(state) = self.calls.get_mut(&call) else {
            return self.respond(tx, &request.headers, 481, now);
        };
        if !state.dialog.accept_remote_seq(e.cseq.seq) {
            return self.respond(tx, &request.headers, 500, now);
        }
        match request.method {
            Method::Bye => {
                self.respond(tx, &request.headers, 200, now);
                if self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.phase == Phase::Early)
                {
                    self.final_failure(call, 487, now);
                }
                self.forget(call);
                self.events.push_back(EndpointEvent::Signal {
                    call,
                    signal: CallSignal::Bye,
                });
            }
            Method::Invite => {
                // A session refresh or a new offer: answer with our current session, which
                // holds both for a refresh and for the hold/resume callers do with G.711.
                let Some(sdp) = state.local_sdp.clone() else {
                    return self.respond(tx, &request.headers, 488, now);
                };
                let contact = self.config.contact(state.source.transport);
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

    fn on_dialog_ack(&mut self, e: &Essentials) {
        let Some(call) = DialogId::of_incoming(e).and_then(|id| self.by_dialog.get(&id).copied())
        else {
            return;
        };
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        if state.unacked.as_ref().is_some_and(|u| u.cseq == e.cseq.seq) {
            state.unacked = None;
            self.events.push_back(EndpointEvent::Signal {
                call,
                signal: CallSignal::Acked,
            });
        }
    }

    fn on_response(&mut self, response: Response, now: Instant) {
        if let Ok(e) = response.headers.essentials() {
            self.transactions.on_response(response, &e, now);
        }
    }

    /// Sends `180 Ringing` (or another provisional status) with our To tag.
    pub fn ring(&mut self, call: CallKey, now: Instant) -> Result<(), EndpointError> {
        let state = self.calls.get(&call).ok_or(EndpointError::UnknownCall)?;
        if state.phase != Phase::Early {
            return Err(EndpointError::AlreadyAnswered);
        }
        let mut response =
            Response::to_request(&state.invite_headers, 180, Some(&state.dialog.id.local_tag));
        response
            .headers
            .push("Contact", self.config.contact(state.source.transport));
        self.stamp(&mut response.headers);
        let tx = state.invite_tx;
        self.transactions
            .respond(tx, response, now)
            .map_err(|_| EndpointError::AlreadyAnswered)
    }

    /// Answers the INVITE `200 OK` with our SDP.
    pub fn answer(
        &mut self,
        call: CallKey,
        sdp: String,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let state = self
            .calls
            .get_mut(&call)
            .ok_or(EndpointError::UnknownCall)?;
        if state.phase != Phase::Early {
            return Err(EndpointError::AlreadyAnswered);
        }
        state.phase = Phase::Answered;
        let sdp = Bytes::from(sdp);
        state.local_sdp = Some(sdp.clone());
        let mut response =
            Response::to_request(&state.invite_headers, 200, Some(&state.dialog.id.local_tag))
                .with_body("application/sdp", sdp);
        response
            .headers
            .push("Contact", self.config.contact(state.source.transport));
        response.headers.push("Allow", ALLOW);
        let (tx, cseq) = (
            state.invite_tx,
            state
                .invite_headers
                .essentials()
                .map(|e| e.cseq.seq)
                .unwrap_or(0),
        );
        self.stamp(&mut response.headers);
        self.send_2xx(call, tx, response, cseq, now);
        Ok(())
    }

    fn send_2xx(&mut self, call: CallKey, tx: TxId, response: Response, cseq: u32, now: Instant) {
        let payload = Message::Response(response.clone()).to_bytes();
        if self.transactions.respond(tx, response, now).is_err() {
            return;
        }
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let timing = self.config.timing;
        let reliable = state.source.transport.is_reliable();
        // Over reliable transports the 2xx is not retransmitted, but the wait for the ACK is.
        let first = if reliable {
            timing.timeout()
        } else {
            timing.t1
        };
        state.unacked = Some(Unacked {
            payload,
            cseq,
            interval: timing.t1,
            next_at: now + first,
            give_up_at: now + timing.timeout(),
        });
        self.retransmissions.push(now + first, call);
    }

    /// Ends an unanswered call with a final failure status (486, 603, 500, 488...).
    pub fn reject(
        &mut self,
        call: CallKey,
        status: u16,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let state = self.calls.get(&call).ok_or(EndpointError::UnknownCall)?;
        if state.phase != Phase::Early {
            return Err(EndpointError::AlreadyAnswered);
        }
        self.final_failure(call, status, now);
        self.forget(call);
        Ok(())
    }

    fn final_failure(&mut self, call: CallKey, status: u16, now: Instant) {
        let Some(state) = self.calls.get(&call) else {
            return;
        };
        let mut response = Response::to_request(
            &state.invite_headers,
            status,
            Some(&state.dialog.id.local_tag),
        );
        self.stamp(&mut response.headers);
        let tx = state.invite_tx;
        let _ = self.transactions.respond(tx, response, now);
    }

    /// Ends an answered call with BYE (§15.1.1).
    pub fn hangup(&mut self, call: CallKey, now: Instant) -> Result<(), EndpointError> {
        let state = self
            .calls
            .get_mut(&call)
            .ok_or(EndpointError::UnknownCall)?;
        if state.phase == Phase::Early {
            return Err(EndpointError::UnknownCall);
        }
        self.send_bye(call, now);
        self.forget(call);
        Ok(())
    }

    /// The call task is gone: make sure the caller is not left hanging, then forget the call.
    pub fn release(&mut self, call: CallKey, now: Instant) {
        match self.calls.get(&call).map(|c| c.phase) {
            Some(Phase::Early) => self.final_failure(call, 500, now),
            Some(Phase::Answered) => self.send_bye(call, now),
            None => return,
        }
        self.forget(call);
    }

    fn send_bye(&mut self, call: CallKey, now: Instant) {
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let transport = state.source.transport;
        let branch = format!("{BRANCH_COOKIE}{}", ids::token(16));
        let via = Via::new(
            transport,
            self.config.host.clone(),
            Some(self.config.port(transport)),
            &branch,
        );
        let mut bye = state
            .dialog
            .request(Method::Bye, via, &self.config.user_agent);
        let peer = in_dialog_peer(&state.dialog, state.source);
        bye.headers
            .push("Reason", "SIP;cause=200;text=\"Call completed\"");
        if let Err(error) = self.transactions.send_request(bye, peer, now) {
            tracing::warn!(%error, "could not send BYE");
        }
    }

    fn forget(&mut self, call: CallKey) {
        if let Some(state) = self.calls.remove(&call) {
            self.by_dialog.remove(&state.dialog.id);
        }
    }

    /// Fires due timers: transaction timers and 2xx retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        while let Some(event) = self.transactions.poll_event() {
            if let TxEvent::Timeout { id } | TxEvent::AckTimeout { id } = event {
                tracing::debug!(?id, "transaction timed out");
            }
        }
        while let Some((at, call)) = self.retransmissions.pop_due(now) {
            let timing = self.config.timing;
            let Some(state) = self.calls.get_mut(&call) else {
                continue;
            };
            let Some(unacked) = state.unacked.as_mut() else {
                continue;
            };
            if unacked.next_at != at {
                continue;
            }
            if now >= unacked.give_up_at {
                state.unacked = None;
                self.send_bye(call, now);
                self.forget(call);
                self.events.push_back(EndpointEvent::Signal {
                    call,
                    signal: CallSignal::NoAck,
                });
                continue;
            }
            unacked.interval = (unacked.interval * 2).min(timing.t2);
            unacked.next_at = (now + unacked.interval).min(unacked.give_up_at);
            let (payload, next) = (unacked.payload.clone(), unacked.next_at);
            let peer = state.source;
            self.transmits.push_back(Transmit { peer, payload });
            self.retransmissions.push(next, call);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.transactions.poll_timeout(),
            self.retransmissions.next(),
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
/// address, and the source of the INVITE otherwise (a peer behind NAT, or a host name).
fn in_dialog_peer(dialog: &Dialog, source: Peer) -> Peer {
    if source.transport.is_reliable() {
        return source;
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
            Host::Domain(_) => source,
        },
        None => source,
    }
}

#[cfg(test)]
mod tests;
