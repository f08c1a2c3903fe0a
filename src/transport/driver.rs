//! The driver task: feeds received datagrams and frames to the sans-IO [`Endpoint`] with the
//! current time, sends what it transmits (UDP, or the peer's TCP/TLS connection), fires its
//! timers, resolves outbound targets (RFC 3263, through a [`Resolver`]) before handing the
//! INVITE to the endpoint, reports transport failures back to it, closes idle connections,
//! and connects the endpoint to the call tasks.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::connections::{Connections, SendOutcome};
use super::handle::{Command, IncomingCall, SignalSender, SipHandle};
use super::registrations::{Registrations, ResolvedRegistrar};
use super::stream::StreamEvent;
use crate::capture::{Capture, Direction};
use crate::sip::endpoint::{CallKey, CallSignal, Endpoint, EndpointEvent, OutboundInvite, Target};
use crate::sip::msg::{Host, NameAddr, Scheme, SipUri, Transport, Uri};
use crate::sip::registrar::UserContacts;
use crate::sip::resolve::Resolver;
use crate::sip::transaction::Peer;
use crate::store::{BindingRecord, SipWrite, Store};

/// How long the driver waits at shutdown for the last BYE transactions once every call task
/// has released its call.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(2);
/// How often idle connections are looked for.
const IDLE_SWEEP: Duration = Duration::from_secs(10);
/// How often the registrar's changed bindings are handed to the store: changes to one user
/// within this time are written once.
const BINDINGS_FLUSH: Duration = Duration::from_millis(250);

/// How outbound targets are reached.
#[derive(Clone)]
pub struct Routing {
    pub resolver: Arc<dyn Resolver>,
    /// The transport for a `sip:` URI that names none (`sips:` is always TLS).
    pub default_transport: Transport,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("default_transport", &self.default_transport)
            .finish_non_exhaustive()
    }
}

/// A registered user's bindings read from the shared store off the driver task.
struct LookedUp {
    call: CallKey,
    invite: Box<OutboundInvite>,
    stored: Vec<BindingRecord>,
}

/// A target resolved off the driver task.
struct Resolved {
    call: CallKey,
    invite: Box<OutboundInvite>,
    /// The host the URI named (for TLS SNI and certificate checks), and the outcome.
    host: String,
    peers: Result<Vec<Peer>, String>,
}

pub(super) struct Driver {
    pub(super) endpoint: Endpoint,
    /// The registering trunks' clients.
    pub(super) registrations: Registrations,
    pub(super) udp: Arc<UdpSocket>,
    pub(super) connections: Connections,
    pub(super) calls: HashMap<CallKey, SignalSender>,
    pub(super) incoming: mpsc::Sender<IncomingCall>,
    pub(super) handle: SipHandle,
    pub(super) routing: Routing,
    /// Where the registrar's changed bindings go (the store).
    pub(super) bindings: Option<mpsc::UnboundedSender<Vec<SipWrite>>>,
    /// A store shared with other nodes: a registered user is also rung at the bindings the
    /// other nodes' registrars hold (read from it at each call).
    pub(super) shared_store: Option<Store>,
    /// Every message sent and received is handed to it (the call capture, HEP, metrics).
    pub(super) capture: Capture,
    /// callml's address for captured messages: the UDP socket's, and the TLS listener's.
    pub(super) local: SocketAddr,
    pub(super) tls_local: Option<SocketAddr>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The URI to resolve for a `sip:` target that names no transport: with the configured
/// default one (UDP leaves RFC 3263's own choice).
fn with_default_transport(uri: &SipUri, default: Transport) -> SipUri {
    let mut uri = uri.clone();
    if uri.scheme == Scheme::Sip && uri.transport().is_none() && default != Transport::Udp {
        uri.params.push((
            "transport".to_owned(),
            Some(default.as_str().to_ascii_lowercase()),
        ));
    }
    uri
}

impl Driver {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut streams: mpsc::Receiver<StreamEvent>,
        mut registrars: mpsc::UnboundedReceiver<ResolvedRegistrar>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (resolved_tx, mut resolved_rx) = mpsc::unbounded_channel();
        let (looked_up_tx, mut looked_up_rx) = mpsc::unbounded_channel();
        let mut resolving: HashSet<CallKey> = HashSet::new();
        let mut buf = vec![0u8; 65_536];
        let mut stopping = *shutdown.borrow();
        let mut linger_until = None;
        let mut sweep = tokio::time::interval(IDLE_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(BINDINGS_FLUSH);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let trunks = self.registrations.trunks();
        loop {
            if stopping {
                self.endpoint.stop_accepting();
                self.registrations.unregister_all();
                self.drive_registrations().await;
                self.flush_bindings();
                if self.calls.is_empty() {
                    let deadline = *linger_until.get_or_insert_with(|| now() + SHUTDOWN_LINGER);
                    let idle = self.endpoint.is_idle() && self.registrations.is_settled();
                    if idle || now() >= deadline {
                        break;
                    }
                }
            }
            let second = tokio::time::Instant::now() + Duration::from_secs(1);
            let wake = self
                .endpoint
                .poll_timeout()
                .into_iter()
                .chain(self.registrations.poll_timeout())
                .min()
                .map(tokio::time::Instant::from_std)
                .map_or(second, |at| at.min(second));
            tokio::select! {
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((n, addr)) => {
                        let peer = Peer { transport: Transport::Udp, addr };
                        if self.capture.is_on() {
                            self.tap(Direction::In, peer, Bytes::copy_from_slice(&buf[..n]));
                        }
                        self.endpoint.handle_bytes(&buf[..n], peer, now());
                    }
                    Err(error) => tracing::debug!(%error, "SIP UDP receive error"),
                },
                Some(event) = streams.recv() => self.on_stream(event),
                Some(command) = commands.recv() => {
                    self.on_command(command, &mut resolving, &resolved_tx, &looked_up_tx);
                }
                Some(resolved) = resolved_rx.recv() => self.on_resolved(resolved, &mut resolving),
                Some(looked_up) = looked_up_rx.recv() => {
                    self.on_looked_up(looked_up, &mut resolving, &resolved_tx);
                }
                Some(resolved) = registrars.recv() => self.on_registrar_resolved(resolved),
                () = trunks.changed() => self.registrations.reconcile(&self.endpoint, now()),
                _ = tokio::time::sleep_until(wake) => {
                    let now = now();
                    self.endpoint.handle_timeout(now);
                    self.registrations.handle_timeout(now);
                }
                _ = sweep.tick() => {
                    let endpoint = &self.endpoint;
                    self.connections.close_idle(now(), |peer| endpoint.uses_flow(peer));
                }
                _ = flush.tick(), if self.bindings.is_some() => self.flush_bindings(),
                changed = shutdown.changed(), if !stopping => {
                    stopping = changed.is_err() || *shutdown.borrow();
                }
            }
            self.flush().await;
            self.dispatch();
            self.drive_registrations().await;
        }
    }

    /// Sends what the trunks' registration clients asked for.
    async fn drive_registrations(&mut self) {
        self.registrations
            .drive(&mut self.endpoint, &self.routing.resolver, now());
        self.flush().await;
    }

    fn on_registrar_resolved(&mut self, resolved: ResolvedRegistrar) {
        if let Ok(peers) = &resolved.2 {
            for peer in peers.iter().filter(|p| p.transport == Transport::Tls) {
                self.connections
                    .remember_server_name(peer.addr, resolved.1.clone());
            }
        }
        self.registrations.on_resolved(resolved, now());
    }

    fn on_stream(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Opened { peer, id, writer } => {
                tracing::debug!(peer = %peer.addr, transport = %peer.transport, "SIP connection opened");
                self.connections.opened(peer, id, writer, now());
            }
            StreamEvent::Message { peer, bytes } => {
                self.tap(Direction::In, peer, bytes.clone());
                let now = now();
                self.connections.used(peer, now);
                self.endpoint.handle_bytes(&bytes, peer, now);
            }
            StreamEvent::Closed { peer, id } => {
                if self.connections.closed(peer, id) {
                    if let Some(registrar) = self.endpoint.registrar_mut() {
                        registrar.flow_closed(peer);
                    }
                    self.registrations.flow_closed(peer, now());
                }
            }
            StreamEvent::ConnectFailed { peer, reason } => {
                self.connections.connect_failed(peer);
                self.endpoint.on_transport_error(peer, reason, now());
            }
        }
    }

    fn on_command(
        &mut self,
        command: Command,
        resolving: &mut HashSet<CallKey>,
        resolved_tx: &mpsc::UnboundedSender<Resolved>,
        looked_up_tx: &mpsc::UnboundedSender<LookedUp>,
    ) {
        let now = now();
        let result = match command {
            Command::Ring(call) => self.endpoint.ring(call, now),
            Command::Answer(call, sdp) => self.endpoint.answer(call, sdp, now),
            Command::Reject(call, status) => self.endpoint.reject(call, status, now),
            Command::Hangup(call) if resolving.remove(&call) => {
                self.signal(call, CallSignal::Canceled);
                Ok(())
            }
            Command::Hangup(call) => self.endpoint.hangup(call, now),
            Command::Release(call) => {
                resolving.remove(&call);
                self.endpoint.release(call, now);
                self.calls.remove(&call);
                Ok(())
            }
            Command::Invite(call, invite, signals) => {
                self.calls.insert(call, signals);
                if !self.look_up_shared(call, &invite, resolving, looked_up_tx) {
                    let user = self.endpoint.registered_user(&invite.target);
                    self.place(call, invite, user, resolving, resolved_tx);
                }
                Ok(())
            }
            Command::Acknowledge(call, sdp) => self.endpoint.acknowledge(call, sdp),
            Command::AnswerReoffer(call, sdp) => self.endpoint.answer_reoffer(call, sdp, now),
            Command::AcceptReoffer(call) => self.endpoint.accept_reoffer(call, now),
            Command::Hold(call, held) => self.endpoint.hold(call, held, now),
            Command::Reinvite(call, sdp) => self.endpoint.reinvite(call, sdp, now),
        };
        if let Err(error) = result {
            tracing::debug!(%error, "SIP command not carried out");
        }
    }

    /// On a shared store, an INVITE to a registered user waits for the user's bindings to be
    /// read from the store (every node's); true when it does.
    fn look_up_shared(
        &self,
        call: CallKey,
        invite: &OutboundInvite,
        resolving: &mut HashSet<CallKey>,
        looked_up_tx: &mpsc::UnboundedSender<LookedUp>,
    ) -> bool {
        let Some(store) = &self.shared_store else {
            return false;
        };
        let username = match &invite.target {
            Target::Client(identity) => identity.clone(),
            Target::Uri(uri) => match uri.user.as_deref() {
                Some(user) if !user.is_empty() => user.to_owned(),
                _ => return false,
            },
            _ => return false,
        };
        if self.endpoint.registered_user(&invite.target).is_none() {
            return false;
        }
        resolving.insert(call);
        let (store, looked_up_tx) = (store.clone(), looked_up_tx.clone());
        let invite = Box::new(invite.clone());
        tokio::spawn(async move {
            let stored = store
                .bindings_of_user(&username)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, user = %username, "the other nodes' registrations could not be read: only this node's are rung");
                    Vec::new()
                });
            let _ = looked_up_tx.send(LookedUp {
                call,
                invite,
                stored,
            });
        });
        true
    }

    fn on_looked_up(
        &mut self,
        looked_up: LookedUp,
        resolving: &mut HashSet<CallKey>,
        resolved_tx: &mpsc::UnboundedSender<Resolved>,
    ) {
        let LookedUp {
            call,
            invite,
            stored,
        } = looked_up;
        if !resolving.remove(&call) {
            return;
        }
        let me = self.shared_store.as_ref().map_or("", Store::node);
        let user = self
            .endpoint
            .registered_user_with(&invite.target, &stored, me);
        self.place(call, invite, user, resolving, resolved_tx);
    }

    /// Sends an outbound INVITE to its known address (a registered `user`'s contacts when it
    /// names one), or resolves its target first.
    fn place(
        &mut self,
        call: CallKey,
        invite: Box<OutboundInvite>,
        user: Option<UserContacts>,
        resolving: &mut HashSet<CallKey>,
        resolved_tx: &mpsc::UnboundedSender<Resolved>,
    ) {
        let mut invite = invite;
        if let Some(user) = user {
            if user.branches.is_empty() {
                let client = user.client;
                return self.signal(call, CallSignal::NotRegistered { client });
            }
            if let Some(aor) = user.aor {
                invite.to = NameAddr::new(Uri::Sip(aor));
            }
            invite.target = Target::Fork(user.branches);
        }
        let uri = match &invite.target {
            Target::Peer(peer) => {
                let peers = vec![*peer];
                if self.endpoint.invite(call, *invite, peers, now()).is_err() {
                    self.signal(call, CallSignal::Unreachable);
                }
                return;
            }
            Target::Fork(_) => {
                if self
                    .endpoint
                    .invite(call, *invite, Vec::new(), now())
                    .is_err()
                {
                    self.signal(call, CallSignal::Unreachable);
                }
                return;
            }
            Target::Uri(uri) | Target::Proxy(uri) => {
                with_default_transport(uri, self.routing.default_transport)
            }
            Target::Client(_) => {
                return self.signal(call, CallSignal::NotRegistered { client: true });
            }
        };
        resolving.insert(call);
        let resolver = Arc::clone(&self.routing.resolver);
        let resolved_tx = resolved_tx.clone();
        tokio::spawn(async move {
            let host = match &uri.host {
                Host::Ip(ip) => ip.to_string(),
                Host::Domain(name) => name.trim_end_matches('.').to_owned(),
            };
            let peers = resolver
                .resolve(&uri)
                .await
                .map_err(|error| format!("cannot resolve {uri}: {error}"));
            let _ = resolved_tx.send(Resolved {
                call,
                invite,
                host,
                peers,
            });
        });
    }

    fn on_resolved(&mut self, resolved: Resolved, resolving: &mut HashSet<CallKey>) {
        let call = resolved.call;
        if !resolving.remove(&call) {
            return;
        }
        match resolved.peers {
            Ok(peers) => {
                for peer in peers.iter().filter(|p| p.transport == Transport::Tls) {
                    self.connections
                        .remember_server_name(peer.addr, resolved.host.clone());
                }
                if let Err(error) = self.endpoint.invite(call, *resolved.invite, peers, now()) {
                    tracing::info!(%error, "INVITE not sent");
                    self.signal(call, CallSignal::Unreachable);
                }
            }
            Err(reason) => {
                tracing::info!(%reason, "outbound target not resolved");
                self.signal(call, CallSignal::Unresolvable { reason });
            }
        }
    }

    /// Hands the bindings changed since the last flush to the store.
    fn flush_bindings(&mut self) {
        let (Some(out), Some(registrar)) = (&self.bindings, self.endpoint.registrar_mut()) else {
            return;
        };
        let writes = registrar.take_writes();
        if !writes.is_empty() && out.send(writes).is_err() {
            tracing::warn!("registrations changed but the store is gone: not saved");
        }
    }

    fn signal(&self, call: CallKey, signal: CallSignal) {
        if let Some(tx) = self.calls.get(&call) {
            let _ = tx.send((call, signal));
        }
    }

    async fn flush(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            let peer = transmit.peer;
            self.tap(Direction::Out, peer, transmit.payload.clone());
            match peer.transport {
                Transport::Udp => {
                    if let Err(error) = self.udp.send_to(&transmit.payload, peer.addr).await {
                        tracing::debug!(%error, peer = %peer.addr, "SIP UDP send failed");
                        // Only errors that say the peer cannot be reached end its requests;
                        // a transient one (no buffer space) is left to retransmissions.
                        if matches!(
                            error.kind(),
                            io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::HostUnreachable
                                | io::ErrorKind::NetworkUnreachable
                                | io::ErrorKind::AddrNotAvailable
                        ) {
                            let reason = format!("could not send to {}: {error}", peer.addr);
                            self.endpoint.on_transport_error(peer, reason, now());
                        }
                    }
                }
                Transport::Tcp | Transport::Tls => {
                    if self.connections.send(peer, transmit.payload, now())
                        == SendOutcome::Congested
                    {
                        tracing::debug!(peer = %peer.addr, "SIP connection queue full");
                    }
                }
            }
        }
    }

    /// Hands one message sent or received to the capture.
    fn tap(&self, direction: Direction, peer: Peer, bytes: Bytes) {
        let local = match peer.transport {
            Transport::Tls => self.tls_local.unwrap_or(self.local),
            Transport::Udp | Transport::Tcp => self.local,
        };
        self.capture
            .sip(direction, peer.transport, local, peer.addr, bytes);
    }

    fn dispatch(&mut self) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                EndpointEvent::Incoming {
                    call,
                    invite,
                    source,
                    domain,
                } => {
                    let (signal_tx, signals) = mpsc::unbounded_channel();
                    let incoming = IncomingCall {
                        key: call,
                        invite: *invite,
                        source,
                        domain,
                        signals,
                        signal_sender: signal_tx.clone(),
                        sip: self.handle.clone(),
                    };
                    match self.incoming.try_send(incoming) {
                        Ok(()) => {
                            self.calls.insert(call, signal_tx);
                        }
                        Err(_) => {
                            tracing::warn!("call layer saturated: refusing call with 503");
                            let _ = self.endpoint.reject(call, 503, now());
                        }
                    }
                }
                EndpointEvent::Signal { call, signal } => self.signal(call, signal),
                EndpointEvent::RequestAnswered { tx, response } => {
                    self.registrations.on_answered(tx, &response, now());
                }
                EndpointEvent::RequestFailed {
                    tx,
                    transport_failed,
                } => {
                    self.registrations.on_failed(tx, transport_failed, now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::Uri;

    fn sip(text: &str) -> SipUri {
        match Uri::parse(text).unwrap() {
            Uri::Sip(uri) => uri,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_transport_applies_only_to_sip_uris_naming_none() {
        let tls = |text: &str| with_default_transport(&sip(text), Transport::Tls).to_string();
        assert_eq!(
            tls("sip:bob@example.com"),
            "sip:bob@example.com;transport=tls"
        );
        assert_eq!(
            tls("sip:bob@example.com;transport=udp"),
            "sip:bob@example.com;transport=udp"
        );
        assert_eq!(tls("sips:bob@example.com"), "sips:bob@example.com");
        assert_eq!(
            with_default_transport(&sip("sip:bob@example.com"), Transport::Udp).to_string(),
            "sip:bob@example.com",
            "UDP leaves RFC 3263 its own choice (SRV for UDP and TCP)"
        );
        assert_eq!(
            with_default_transport(&sip("sip:bob@example.com"), Transport::Tcp).to_string(),
            "sip:bob@example.com;transport=tcp"
        );
    }
}
