//! The trunks' registrations, run by the driver task: one sans-IO [`RegisterClient`] (RFC 3261
//! §10.2) per `register = true` trunk. This glue resolves each registrar (RFC 3263), sends
//! the clients' REGISTERs through the endpoint, hands back their answers and the failures of
//! their connections, un-registers at shutdown, and publishes each state in the trunk's
//! [`TrunkState`] (what `Trunks.json` shows and outbound routing reads) with a log line
//! when it changes.
//!
//! Trunks change at run time ([`Trunks::changed`]): [`Registrations::reconcile`] starts a
//! client for a new registering trunk, replaces the client of a changed one (its new
//! REGISTER updates the binding, RFC 3261 §10.3 step 7; a binding at another registrar or
//! address of record is removed first), and un-registers (Expires: 0) a removed one, whose
//! client is dropped once its un-REGISTER is answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::sip::endpoint::{Credentials, Endpoint};
use crate::sip::msg::{Host, Response, Scheme, SipUri, Transport, Uri};
use crate::sip::register_client::{RegisterAction, RegisterClient, RegisterConfig, RegisterState};
use crate::sip::resolve::Resolver;
use crate::sip::transaction::{Peer, TxId};
use crate::trunk::{Trunk, TrunkEntry, TrunkState, TrunkTransport, Trunks};

/// A registrar's addresses, resolved off the driver task: the registration's id, the host
/// named (for TLS), and the outcome.
pub(super) type ResolvedRegistrar = (u64, String, Result<Vec<Peer>, String>);

/// One trunk's registration.
struct Registration {
    /// Names it in answers that come back later (resolutions, transactions).
    id: u64,
    /// The trunk it registers; its state is published there.
    entry: Arc<TrunkEntry>,
    /// The trunk was removed or changed: the client un-registers and is then dropped.
    retired: bool,
    client: RegisterClient,
    /// What is resolved to reach the registrar: its outbound proxy, else its host.
    next_hop: SipUri,
    peer: Option<Peer>,
    in_flight: Option<TxId>,
    /// The state last copied into the trunk's (nothing is copied while it stays the same).
    published: Option<RegisterState>,
}

/// Every registering trunk's client.
pub(super) struct Registrations {
    trunks: Arc<Trunks>,
    list: Vec<Registration>,
    by_tx: HashMap<TxId, u64>,
    resolved: mpsc::UnboundedSender<ResolvedRegistrar>,
    next_id: u64,
    /// Shutting down: nothing registers any more.
    stopping: bool,
}

impl Registrations {
    /// A client for each registering trunk, registering at `now`; a trunk whose host or
    /// outbound proxy is no SIP address shows `failed` with the reason and never registers.
    pub(super) fn new(
        trunks: Arc<Trunks>,
        endpoint: &Endpoint,
        resolved: mpsc::UnboundedSender<ResolvedRegistrar>,
        now: Instant,
    ) -> Registrations {
        let mut registrations = Registrations {
            trunks,
            list: Vec::new(),
            by_tx: HashMap::new(),
            resolved,
            next_id: 0,
            stopping: false,
        };
        registrations.reconcile(endpoint, now);
        registrations
    }

    /// Brings the clients in line with the trunks as they are now (after a change through
    /// the API): new registering trunks start, changed ones start again, removed ones
    /// un-register.
    pub(super) fn reconcile(&mut self, endpoint: &Endpoint, now: Instant) {
        if self.stopping {
            return;
        }
        let current = self.trunks.entries();
        let mut replaced = Vec::new();
        for registration in self.list.iter_mut().filter(|r| !r.retired) {
            if current.iter().any(|e| Arc::ptr_eq(e, &registration.entry)) {
                continue;
            }
            let trunk = &registration.entry.trunk;
            let successor = current
                .iter()
                .find(|e| e.trunk.id == trunk.id && e.trunk.register)
                .and_then(|e| register_config(&e.trunk, endpoint).ok());
            let config = registration.client.config();
            let same_binding = successor.is_some_and(|(next, _)| {
                next.registrar == config.registrar
                    && next.aor == config.aor
                    && next.contact == config.contact
            });
            if same_binding {
                replaced.push(registration.id);
            } else {
                tracing::info!(trunk = %trunk.id, "the trunk was changed or removed: un-registering");
                registration.retired = true;
                registration.client.unregister();
            }
        }
        self.list.retain(|r| !replaced.contains(&r.id));
        for entry in current {
            let running = self
                .list
                .iter()
                .any(|r| !r.retired && Arc::ptr_eq(&r.entry, &entry));
            if entry.trunk.register && !running {
                self.start(entry, endpoint, now);
            }
        }
    }

    fn start(&mut self, entry: Arc<TrunkEntry>, endpoint: &Endpoint, now: Instant) {
        let trunk = &entry.trunk;
        match register_config(trunk, endpoint) {
            Ok((config, next_hop)) => {
                tracing::info!(trunk = %trunk.id, registrar = %config.registrar, contact = %config.contact, "registering the trunk");
                self.next_id += 1;
                self.list.push(Registration {
                    id: self.next_id,
                    entry,
                    retired: false,
                    client: RegisterClient::new(config, rand::random(), now),
                    next_hop,
                    peer: None,
                    in_flight: None,
                    published: None,
                });
            }
            Err(reason) => {
                tracing::warn!(trunk = %trunk.id, %reason, "the trunk cannot register");
                entry.set_state(TrunkState::Failed {
                    status: 0,
                    reason,
                    retry_in: 0,
                });
            }
        }
    }

    /// The trunks the clients follow.
    pub(super) fn trunks(&self) -> Arc<Trunks> {
        Arc::clone(&self.trunks)
    }

    fn by_id(&mut self, id: u64) -> Option<&mut Registration> {
        self.list.iter_mut().find(|r| r.id == id)
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.list
            .iter()
            .filter_map(|r| r.client.poll_timeout())
            .min()
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for registration in &mut self.list {
            registration.client.handle_timeout(now);
        }
    }

    /// A final response to one of the REGISTERs.
    pub(super) fn on_answered(&mut self, tx: TxId, response: &Response, now: Instant) {
        if let Some(registration) = self.by_tx.remove(&tx).and_then(|id| self.by_id(id)) {
            registration.in_flight = None;
            registration.client.on_response(response, now);
        }
    }

    /// One of the REGISTERs got no final response.
    pub(super) fn on_failed(&mut self, tx: TxId, transport_failed: bool, now: Instant) {
        if let Some(registration) = self.by_tx.remove(&tx).and_then(|id| self.by_id(id)) {
            registration.in_flight = None;
            registration.peer = None;
            registration.client.on_no_response(transport_failed, now);
        }
    }

    pub(super) fn on_resolved(&mut self, resolved: ResolvedRegistrar, now: Instant) {
        let (id, _, outcome) = resolved;
        let Some(registration) = self.by_id(id) else {
            return;
        };
        match outcome.map(|peers| peers.into_iter().next()) {
            Ok(Some(peer)) => {
                registration.peer = Some(peer);
                registration.client.on_resolved();
            }
            Ok(None) => registration.client.on_unresolvable("no address", now),
            Err(reason) => registration.client.on_unresolvable(&reason, now),
        }
    }

    /// A TCP/TLS connection closed: a registration made over it is made again.
    pub(super) fn flow_closed(&mut self, peer: Peer, now: Instant) {
        for registration in &mut self.list {
            if registration.peer == Some(peer) {
                tracing::info!(trunk = %registration.entry.trunk.id, peer = %peer.addr, "the connection to the registrar closed: registering again");
                registration.client.flow_failed(now);
            }
        }
    }

    /// Removes every binding (shutdown); nothing registers again.
    pub(super) fn unregister_all(&mut self) {
        self.stopping = true;
        for registration in &mut self.list {
            registration.client.unregister();
        }
    }

    /// Whether no registration has anything in flight.
    pub(super) fn is_settled(&self) -> bool {
        self.list.iter().all(|r| r.client.is_settled())
    }

    /// Carries out what the clients asked for, and publishes their states.
    pub(super) fn drive(
        &mut self,
        endpoint: &mut Endpoint,
        resolver: &Arc<dyn Resolver>,
        now: Instant,
    ) {
        for registration in &mut self.list {
            while let Some(action) = registration.client.poll_action() {
                match action {
                    RegisterAction::Resolve => resolve(
                        registration.id,
                        &registration.next_hop,
                        resolver,
                        &self.resolved,
                    ),
                    RegisterAction::Send(request) => {
                        let Some(peer) = registration.peer else {
                            registration.client.on_no_response(true, now);
                            continue;
                        };
                        match endpoint.send_request(*request, peer, now) {
                            Ok(tx) => {
                                if let Some(old) = registration.in_flight.replace(tx) {
                                    self.by_tx.remove(&old);
                                }
                                self.by_tx.insert(tx, registration.id);
                            }
                            Err(error) => {
                                tracing::warn!(%error, "REGISTER not sent");
                                registration.client.on_no_response(true, now);
                            }
                        }
                    }
                }
            }
            publish(registration);
        }
        self.list.retain(|r| {
            let gone = r.retired
                && r.client.is_settled()
                && matches!(r.client.state(), RegisterState::Unregistered);
            !gone
        });
    }
}

/// Copies a client's state into its trunk's when it changed, logging the change.
fn publish(registration: &mut Registration) {
    if registration.published.as_ref() == Some(registration.client.state()) {
        return;
    }
    registration.published = Some(registration.client.state().clone());
    let entry = &registration.entry;
    let state = match registration.client.state().clone() {
        RegisterState::Registering => TrunkState::Registering,
        RegisterState::Registered { expires } => TrunkState::Registered { expires },
        RegisterState::Failed {
            status,
            reason,
            retry_in,
        } => TrunkState::Failed {
            status,
            reason,
            retry_in: u32::try_from(retry_in.as_secs()).unwrap_or(u32::MAX),
        },
        RegisterState::Unregistering | RegisterState::Unregistered => TrunkState::Unregistered,
    };
    let before = entry.state();
    if before == state {
        return;
    }
    let trunk = &entry.trunk.id;
    match &state {
        TrunkState::Registered { expires } => {
            if !matches!(before, TrunkState::Registered { .. }) {
                tracing::info!(%trunk, expires, "trunk registered");
            }
        }
        TrunkState::Failed {
            status,
            reason,
            retry_in,
        } => {
            tracing::warn!(%trunk, status, %reason, retry_in, "trunk registration failed; next attempt in {retry_in} s")
        }
        TrunkState::Unregistered => tracing::info!(%trunk, "trunk unregistered"),
        TrunkState::Registering | TrunkState::NotRegistering => {
            tracing::info!(%trunk, "trunk registering")
        }
    }
    entry.set_state(state);
}

fn resolve(
    id: u64,
    next_hop: &SipUri,
    resolver: &Arc<dyn Resolver>,
    resolved: &mpsc::UnboundedSender<ResolvedRegistrar>,
) {
    let uri = next_hop.clone();
    let resolver = Arc::clone(resolver);
    let resolved = resolved.clone();
    tokio::spawn(async move {
        let host = match &uri.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Domain(name) => name.trim_end_matches('.').to_owned(),
        };
        let peers = resolver
            .resolve(&uri)
            .await
            .map_err(|error| error.to_string());
        let _ = resolved.send((id, host, peers));
    });
}

/// The registration a trunk asks for, and the next hop to resolve: REGISTER
/// `sip:host:port` (with its transport), address of record `sip:username@host`, our contact
/// `sip:username@callml:port`, through the outbound proxy when it has one.
fn register_config(trunk: &Trunk, endpoint: &Endpoint) -> Result<(RegisterConfig, SipUri), String> {
    let username = trunk
        .username
        .clone()
        .ok_or("register = true needs a username")?;
    let host = Host::parse(&trunk.host).unwrap_or_else(|_| Host::Domain(trunk.host.clone()));
    let transport = match trunk.transport {
        TrunkTransport::Udp => Transport::Udp,
        TrunkTransport::Tcp => Transport::Tcp,
        TrunkTransport::Tls => Transport::Tls,
    };
    let with_transport = |mut uri: SipUri| {
        if transport != Transport::Udp && uri.transport().is_none() {
            uri.params.push((
                "transport".to_owned(),
                Some(trunk.transport.as_str().to_owned()),
            ));
        }
        uri
    };
    let registrar = with_transport(SipUri::new(
        Scheme::Sip,
        None,
        host.clone(),
        Some(trunk.port()),
    ));
    let aor = SipUri::new(Scheme::Sip, Some(&username), host, None);
    let (next_hop, route) = match &trunk.outbound_proxy {
        Some(proxy) => match Uri::parse(proxy) {
            Ok(Uri::Sip(proxy)) => {
                let mut route = proxy.without_params();
                route.params.push(("lr".to_owned(), None));
                (with_transport(proxy), Some(format!("<{route}>")))
            }
            _ => return Err(format!("outbound-proxy {proxy:?} is not a sip: URI")),
        },
        None => (registrar.clone(), None),
    };
    let credentials = trunk
        .password
        .as_ref()
        .zip(trunk.digest_user())
        .map(|(password, user)| Credentials::new(user, password.as_str()));
    let config = RegisterConfig {
        contact: endpoint.contact_uri(&username, transport),
        registrar,
        aor,
        expires: trunk.register_expiry,
        credentials,
        route,
        user_agent: endpoint.user_agent().to_owned(),
    };
    Ok((config, next_hop))
}
