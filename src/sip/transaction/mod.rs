//! The SIP transaction layer (RFC 3261 §17), sans-IO: all four state machines with their
//! timers, driven by `now` and producing [`Transmit`]s and [`TxEvent`]s.
//!
//! ```text
//! client INVITE (§17.1.1, RFC 6026 §8.4)     client non-INVITE (§17.1.2)
//!   Calling --1xx--> Proceeding                Trying --1xx--> Proceeding
//!   Calling/Proceeding --2xx--> Accepted (M)   Trying/Proceeding --final--> Completed (K)
//!   Calling/Proceeding --3xx-6xx, ACK--> Completed (D)
//!   Calling: A retransmits (T1, doubling), B (64·T1) times out
//!                                            Trying/Proceeding: E retransmits (→ T2), F times out
//! server INVITE (§17.2.1, RFC 6026 §8.5)     server non-INVITE (§17.2.2)
//!   Proceeding --2xx--> Accepted (L)           Trying --1xx--> Proceeding
//!   Proceeding --3xx-6xx--> Completed          Trying/Proceeding --final--> Completed (J)
//!   Completed: G retransmits (→ T2), H (64·T1) gives up; --ACK--> Confirmed (I = T4)
//! ```
//! Over reliable transports A, E and G never fire and D, I, J, K are zero.
//! Retransmitted requests are absorbed by server transactions (the last response is sent
//! again), so the TU sees each request once; retransmitted final responses are absorbed by
//! client transactions (a non-2xx is ACKed again), except 2xx to INVITE, which go to the TU.

mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::msg::{
    BRANCH_COOKIE, Essentials, Headers, Message, Method, Request, Response, Transport,
};
pub use timers::{DeadlineQueue, Timing};

/// Where a message goes or came from: the transport and the remote socket address (for
/// connection-oriented transports, the connection to that address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A message to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub payload: Bytes,
}

/// Identifies one transaction in the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

/// What the transaction user must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A response to a client transaction: every provisional, the first final, and for INVITE
    /// every 2xx (retransmissions included, which the TU acknowledges again).
    Response { id: TxId, response: Response },
    /// Timer B or F fired: no final response will come (§17.1.1.2: the TU treats it as 408).
    Timeout { id: TxId },
    /// The transport could not deliver the request (a connection refused or broken, a TLS
    /// certificate refused): no final response will come (§17.1.4; §8.1.3.1: the TU treats
    /// it as 503).
    TransportFailed { id: TxId },
    /// Timer H fired: the ACK for our non-2xx final response never came (§17.2.1).
    AckTimeout { id: TxId },
}

/// How an incoming request was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A new server transaction: the TU must process the request and respond through it.
    New(TxId),
    /// A retransmission or an ACK for a non-2xx response, absorbed by its transaction.
    Absorbed,
    /// An ACK that matches no transaction: the ACK for a 2xx, which belongs to the dialog.
    AckForDialog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

/// Server transactions are matched by branch, sent-by and method (§17.2.3); requests from
/// pre-RFC 3261 elements (no magic cookie) by Call-ID, CSeq, From tag and sent-by instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
    },
    Legacy {
        call_id: String,
        cseq: u32,
        from_tag: String,
        sent_by: String,
        method: Method,
    },
}

impl ServerKey {
    fn new(e: &Essentials, method: Method) -> ServerKey {
        match e.via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) => ServerKey::Branch {
                branch: b.to_owned(),
                sent_by: e.via.sent_by(),
                method,
            },
            _ => ServerKey::Legacy {
                call_id: e.call_id.clone(),
                cseq: e.cseq.seq,
                from_tag: e.from.tag().unwrap_or_default().to_owned(),
                sent_by: e.via.sent_by(),
                method,
            },
        }
    }
}

/// Client transactions are matched by our branch and the CSeq method (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// A, E or G.
    Retransmit,
    /// B, D, F, H, I, J, K, L or M: what it means depends on the state.
    Expire,
}

#[derive(Debug)]
struct Transaction {
    kind: Kind,
    state: State,
    peer: Peer,
    server_key: Option<ServerKey>,
    client_key: Option<ClientKey>,
    /// Client: the request (retransmitted, and the source of the non-2xx ACK).
    request: Option<Request>,
    request_bytes: Bytes,
    /// Server: the last response sent (sent again for each retransmitted request).
    last_response: Option<Bytes>,
    /// Client INVITE: the ACK sent for a non-2xx final response.
    ack_bytes: Option<Bytes>,
    interval: Duration,
    retransmit_at: Option<Instant>,
    expire_at: Option<Instant>,
}

impl Transaction {
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// All transactions of one SIP endpoint.
#[derive(Debug)]
pub struct TransactionLayer {
    timing: Timing,
    next_id: u64,
    transactions: HashMap<TxId, Transaction>,
    servers: HashMap<ServerKey, TxId>,
    clients: HashMap<ClientKey, TxId>,
    timers: DeadlineQueue<(TxId, Slot)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

/// Errors the TU can get when it misuses a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction {0:?} does not exist (it may have terminated)")]
    Unknown(TxId),
    #[error("transaction {0:?} already sent a final response")]
    AlreadyFinal(TxId),
    #[error("request has no branch in its top Via")]
    NoBranch,
    #[error("response status {0} cannot be sent here")]
    BadStatus(u16),
}

impl TransactionLayer {
    pub fn new(timing: Timing) -> TransactionLayer {
        TransactionLayer {
            timing,
            next_id: 1,
            transactions: HashMap::new(),
            servers: HashMap::new(),
            clients: HashMap::new(),
            timers: DeadlineQueue::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    fn allocate(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    fn arm(&mut self, id: TxId, slot: Slot, at: Option<Instant>) {
        let Some(tx) = self.transactions.get_mut(&id) else {
            return;
        };
        match slot {
            Slot::Retransmit => tx.retransmit_at = at,
            Slot::Expire => tx.expire_at = at,
        }
        if let Some(at) = at {
            self.timers.push(at, (id, slot));
        }
    }

    fn send(&mut self, peer: Peer, payload: Bytes) {
        self.transmits.push_back(Transmit { peer, payload });
    }

    /// Feeds a received request. `e` are its parsed essentials.
    pub fn on_request(
        &mut self,
        request: &Request,
        e: &Essentials,
        peer: Peer,
        now: Instant,
    ) -> Incoming {
        if request.method == Method::Ack {
            let key = ServerKey::new(e, Method::Invite);
            let Some(&id) = self.servers.get(&key) else {
                return Incoming::AckForDialog;
            };
            let reliable = peer.transport.is_reliable();
            let Some(tx) = self.transactions.get_mut(&id) else {
                return Incoming::AckForDialog;
            };
            return match tx.state {
                State::Completed => {
                    tx.state = State::Confirmed;
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        self.timing.t4
                    };
                    self.arm(id, Slot::Retransmit, None);
                    self.arm(id, Slot::Expire, Some(now + wait));
                    Incoming::Absorbed
                }
                State::Confirmed => Incoming::Absorbed,
                // RFC 6026 §8.5: in Accepted the ACK for the 2xx goes to the TU.
                _ => Incoming::AckForDialog,
            };
        }
        let key = ServerKey::new(e, request.method.clone());
        if let Some(&id) = self.servers.get(&key) {
            if let Some(tx) = self.transactions.get(&id) {
                // RFC 6026 §8.5: retransmissions in Accepted are absorbed without a response.
                if tx.state != State::Accepted {
                    if let Some(last) = tx.last_response.clone() {
                        self.send(tx.peer, last);
                    }
                }
            }
            return Incoming::Absorbed;
        }
        let id = self.allocate();
        let (kind, state) = if request.method == Method::Invite {
            (Kind::InviteServer, State::Proceeding)
        } else {
            (Kind::NonInviteServer, State::Trying)
        };
        self.transactions.insert(
            id,
            Transaction {
                kind,
                state,
                peer,
                server_key: Some(key.clone()),
                client_key: None,
                request: None,
                request_bytes: Bytes::new(),
                last_response: None,
                ack_bytes: None,
                interval: self.timing.t1,
                retransmit_at: None,
                expire_at: None,
            },
        );
        self.servers.insert(key, id);
        Incoming::New(id)
    }

    /// Whether a request with these essentials belongs to a server transaction that exists
    /// (a retransmission), without creating one: the endpoint asks before it spends any
    /// resource on a new request (rate limiting).
    pub fn is_known(&self, e: &Essentials, method: &Method) -> bool {
        self.servers
            .contains_key(&ServerKey::new(e, method.clone()))
    }

    /// Whether a live transaction exchanges messages with `peer`.
    pub fn uses_peer(&self, peer: Peer) -> bool {
        self.transactions.values().any(|tx| tx.peer == peer)
    }

    /// The INVITE server transaction a CANCEL refers to (§9.2: same branch and sent-by).
    pub fn invite_for_cancel(&self, cancel: &Essentials) -> Option<TxId> {
        let id = *self.servers.get(&ServerKey::new(cancel, Method::Invite))?;
        self.transactions.contains_key(&id).then_some(id)
    }

    /// Whether a server INVITE transaction can still take a final response.
    pub fn is_proceeding(&self, id: TxId) -> bool {
        self.transactions
            .get(&id)
            .is_some_and(|tx| tx.state == State::Proceeding)
    }

    /// Sends a response through a server transaction.
    pub fn respond(&mut self, id: TxId, response: Response, now: Instant) -> Result<(), TxError> {
        let status = response.status;
        let payload = Message::Response(response).to_bytes();
        let timing = self.timing;
        let tx = self.transactions.get_mut(&id).ok_or(TxError::Unknown(id))?;
        match (tx.kind, tx.state) {
            (Kind::InviteServer, State::Proceeding)
            | (Kind::NonInviteServer, State::Trying | State::Proceeding) => {}
            (Kind::InviteServer | Kind::NonInviteServer, _) => {
                return Err(TxError::AlreadyFinal(id));
            }
            _ => return Err(TxError::Unknown(id)),
        }
        if !(100..=699).contains(&status) {
            return Err(TxError::BadStatus(status));
        }
        tx.last_response = Some(payload.clone());
        let peer = tx.peer;
        let reliable = tx.reliable();
        let (retransmit, expire) = match (tx.kind, status) {
            (_, 100..=199) => {
                tx.state = State::Proceeding;
                (None, None)
            }
            (Kind::InviteServer, 200..=299) => {
                tx.state = State::Accepted;
                (None, Some(now + timing.timeout()))
            }
            (Kind::InviteServer, _) => {
                tx.state = State::Completed;
                tx.interval = timing.t1;
                let g = (!reliable).then(|| now + timing.t1);
                (g, Some(now + timing.timeout()))
            }
            (_, _) => {
                tx.state = State::Completed;
                let j = if reliable {
                    Duration::ZERO
                } else {
                    timing.timeout()
                };
                (None, Some(now + j))
            }
        };
        let is_provisional = status < 200;
        self.send(peer, payload);
        if !is_provisional {
            self.arm(id, Slot::Retransmit, retransmit);
            self.arm(id, Slot::Expire, expire);
        }
        Ok(())
    }

    /// Starts a client transaction for `request`, whose top Via must carry a fresh branch.
    pub fn send_request(
        &mut self,
        request: Request,
        peer: Peer,
        now: Instant,
    ) -> Result<TxId, TxError> {
        let e = request
            .headers
            .essentials()
            .map_err(|_| TxError::NoBranch)?;
        let branch = e.via.branch().ok_or(TxError::NoBranch)?.to_owned();
        let method = request.method.clone();
        let kind = if method == Method::Invite {
            Kind::InviteClient
        } else {
            Kind::NonInviteClient
        };
        let payload = Message::Request(request.clone()).to_bytes();
        let id = self.allocate();
        let key = ClientKey { branch, method };
        let reliable = peer.transport.is_reliable();
        self.transactions.insert(
            id,
            Transaction {
                kind,
                state: if kind == Kind::InviteClient {
                    State::Calling
                } else {
                    State::Trying
                },
                peer,
                server_key: None,
                client_key: Some(key.clone()),
                request: (kind == Kind::InviteClient).then_some(request),
                request_bytes: payload.clone(),
                last_response: None,
                ack_bytes: None,
                interval: self.timing.t1,
                retransmit_at: None,
                expire_at: None,
            },
        );
        self.clients.insert(key, id);
        self.send(peer, payload);
        let retransmit = (!reliable).then(|| now + self.timing.t1);
        self.arm(id, Slot::Retransmit, retransmit);
        self.arm(id, Slot::Expire, Some(now + self.timing.timeout()));
        Ok(id)
    }

    /// Feeds a received response. Returns true when it matched a client transaction.
    pub fn on_response(&mut self, response: Response, e: &Essentials, now: Instant) -> bool {
        let Some(branch) = e.via.branch() else {
            return false;
        };
        let key = ClientKey {
            branch: branch.to_owned(),
            method: e.cseq.method.clone(),
        };
        let Some(&id) = self.clients.get(&key) else {
            return false;
        };
        let timing = self.timing;
        let Some(tx) = self.transactions.get_mut(&id) else {
            return false;
        };
        let status = response.status;
        let reliable = tx.reliable();
        match (tx.kind, tx.state, status) {
            (Kind::InviteClient, State::Calling | State::Proceeding, 100..=199) => {
                tx.state = State::Proceeding;
                self.arm(id, Slot::Retransmit, None);
                self.arm(id, Slot::Expire, None);
                self.events.push_back(TxEvent::Response { id, response });
            }
            (Kind::InviteClient, State::Calling | State::Proceeding, 200..=299) => {
                tx.state = State::Accepted;
                self.arm(id, Slot::Retransmit, None);
                self.arm(id, Slot::Expire, Some(now + timing.timeout()));
                self.events.push_back(TxEvent::Response { id, response });
            }
            (Kind::InviteClient, State::Accepted, 200..=299) => {
                self.events.push_back(TxEvent::Response { id, response });
            }
            (Kind::InviteClient, State::Calling | State::Proceeding, _) => {
                tx.state = State::Completed;
                let ack = tx.request.as_ref().map(|invite| {
                    Message::Request(non_2xx_ack(invite, &response.headers)).to_bytes()
                });
                tx.ack_bytes = ack.clone();
                let peer = tx.peer;
                if let Some(ack) = ack {
                    self.send(peer, ack);
                }
                self.arm(id, Slot::Retransmit, None);
                self.arm(id, Slot::Expire, Some(now + timing.timer_d(reliable)));
                self.events.push_back(TxEvent::Response { id, response });
            }
            (Kind::InviteClient, State::Completed, 300..=699) => {
                if let Some(ack) = tx.ack_bytes.clone() {
                    let peer = tx.peer;
                    self.send(peer, ack);
                }
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding, 100..=199) => {
                tx.state = State::Proceeding;
                self.events.push_back(TxEvent::Response { id, response });
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding, _) => {
                tx.state = State::Completed;
                let k = if reliable { Duration::ZERO } else { timing.t4 };
                self.arm(id, Slot::Retransmit, None);
                self.arm(id, Slot::Expire, Some(now + k));
                self.events.push_back(TxEvent::Response { id, response });
            }
            _ => {}
        }
        true
    }

    /// The transport could not deliver for this transaction (§17.1.4, §17.2.4).
    pub fn on_transport_error(&mut self, id: TxId) {
        if let Some(tx) = self.transactions.get(&id) {
            if matches!(tx.kind, Kind::InviteClient | Kind::NonInviteClient)
                && matches!(tx.state, State::Calling | State::Trying | State::Proceeding)
            {
                self.events.push_back(TxEvent::TransportFailed { id });
            }
            self.terminate(id);
        }
    }

    /// The transport cannot reach `peer` (a connection that failed to open, or a send that
    /// failed): every client transaction still waiting for a final response from it fails
    /// with [`TxEvent::TransportFailed`] (§17.1.4, §8.1.3.1).
    pub fn on_peer_failed(&mut self, peer: Peer) {
        let mut failed: Vec<TxId> = self
            .transactions
            .iter()
            .filter(|(_, tx)| {
                tx.peer == peer
                    && matches!(tx.kind, Kind::InviteClient | Kind::NonInviteClient)
                    && matches!(tx.state, State::Calling | State::Trying | State::Proceeding)
            })
            .map(|(&id, _)| id)
            .collect();
        failed.sort();
        for id in failed {
            self.on_transport_error(id);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, (id, slot))) = self.timers.pop_due(now) {
            let Some(tx) = self.transactions.get(&id) else {
                continue;
            };
            let current = match slot {
                Slot::Retransmit => tx.retransmit_at,
                Slot::Expire => tx.expire_at,
            };
            if current != Some(at) {
                continue;
            }
            match slot {
                Slot::Retransmit => self.retransmit(id, now),
                Slot::Expire => self.expire(id),
            }
        }
    }

    fn retransmit(&mut self, id: TxId, now: Instant) {
        let timing = self.timing;
        let Some(tx) = self.transactions.get_mut(&id) else {
            return;
        };
        let (payload, next) = match (tx.kind, tx.state) {
            // Timer A: doubles without bound (B ends it).
            (Kind::InviteClient, State::Calling) => {
                tx.interval *= 2;
                (tx.request_bytes.clone(), tx.interval)
            }
            // Timer E: doubles up to T2; in Proceeding it is T2.
            (Kind::NonInviteClient, State::Trying) => {
                tx.interval = (tx.interval * 2).min(timing.t2);
                (tx.request_bytes.clone(), tx.interval)
            }
            (Kind::NonInviteClient, State::Proceeding) => (tx.request_bytes.clone(), timing.t2),
            // Timer G: doubles up to T2.
            (Kind::InviteServer, State::Completed) => {
                tx.interval = (tx.interval * 2).min(timing.t2);
                match tx.last_response.clone() {
                    Some(last) => (last, tx.interval),
                    None => return,
                }
            }
            _ => return,
        };
        let peer = tx.peer;
        self.send(peer, payload);
        self.arm(id, Slot::Retransmit, Some(now + next));
    }

    fn expire(&mut self, id: TxId) {
        let Some(tx) = self.transactions.get(&id) else {
            return;
        };
        match (tx.kind, tx.state) {
            (Kind::InviteClient, State::Calling)
            | (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                self.events.push_back(TxEvent::Timeout { id });
            }
            (Kind::InviteServer, State::Completed) => {
                self.events.push_back(TxEvent::AckTimeout { id });
            }
            _ => {}
        }
        self.terminate(id);
    }

    fn terminate(&mut self, id: TxId) {
        if let Some(tx) = self.transactions.remove(&id) {
            if let Some(key) = tx.server_key {
                self.servers.remove(&key);
            }
            if let Some(key) = tx.client_key {
                self.clients.remove(&key);
            }
        }
    }

    /// The earliest moment [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }
}

/// The ACK a client INVITE transaction sends for a 300–699 response (§17.1.1.3): the
/// INVITE's Request-URI, top Via, From, Call-ID and Route set; the response's To; CSeq ACK.
fn non_2xx_ack(invite: &Request, response: &Headers) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.list("Via").next() {
        headers.push("Via", via);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            headers.push(name, v);
        }
    }
    if let Some(to) = response.get("To") {
        headers.push("To", to);
    }
    let seq = invite.headers.essentials().map(|e| e.cseq.seq).unwrap_or(1);
    headers.push("CSeq", format!("{seq} ACK"));
    for route in invite.headers.all("Route") {
        headers.push("Route", route);
    }
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests;
