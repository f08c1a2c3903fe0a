//! The only SIP socket code: a UDP socket and a TCP listener on the `--sip` address, a TLS
//! listener on `--sip-tls`, outgoing TCP/TLS connections, and the [`driver`] task that feeds
//! the sans-IO [`Endpoint`](crate::sip::endpoint::Endpoint) and connects it to the call tasks.
//!
//! Call tasks receive an [`IncomingCall`] with their signal channel and a [`SipHandle`] for
//! commands; a task that places outbound legs (`<Dial>`, REST calls) has their signals
//! delivered on the same channel, tagged with each leg's key. When a call task lets go of a
//! leg, its [`CallGuard`] releases it, so no party is left ringing even if the task fails.
//!
//! Accepted TCP and TLS connections are held under a total and a per-source limit (a new one
//! closes the least recently active first, [`ConnectionTable`]); out of descriptors, the
//! accept loops back off and say so once per interval.

mod connections;
pub mod dns;
mod driver;
pub mod framing;
mod handle;
mod registrations;
mod stream;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::capture::Capture;
use crate::limits::{AcceptBackoff, ConnectionTable};
use crate::sip::endpoint::{Endpoint, EndpointConfig};
use crate::sip::msg::Transport;
use crate::sip::registrar::Registrar;
use crate::sip::transaction::Peer;
use crate::store::{SipWrite, Store};
use crate::trunk::Trunks;
use connections::Connections;
pub use driver::Routing;
pub use handle::{CallGuard, IncomingCall, SignalReceiver, SignalSender, SipHandle};
use registrations::Registrations;
use tls::{TlsAcceptor, TlsConnector};

/// New calls queued for the call layer before further INVITEs are refused with 503.
const INCOMING_QUEUE: usize = 1024;
/// Accepted TCP and TLS connections held at once unless [`SipSockets::with_connection_limits`]
/// says otherwise (`--sip-max-connections`).
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Of those, from one address (`--sip-max-connections-per-source`).
const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;

/// Bound SIP sockets, before the driver runs.
pub struct SipSockets {
    udp: UdpSocket,
    tcp: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    registrar: Option<(Registrar, mpsc::UnboundedSender<Vec<SipWrite>>)>,
    /// A store shared with other nodes ([`SipSockets::with_shared_bindings`]).
    shared_store: Option<Store>,
    capture: Capture,
    /// The trunks, some of which register.
    trunks: Arc<Trunks>,
    /// Accepted TCP and TLS connections, under their limits.
    accepted: ConnectionTable,
}

impl SipSockets {
    /// Binds UDP and TCP on `addr`. Port 0 picks one port free for both: the UDP port the
    /// system chose may be taken for TCP, so a few choices are tried.
    pub async fn bind(addr: SocketAddr) -> io::Result<SipSockets> {
        let attempts = if addr.port() == 0 { 20 } else { 1 };
        let mut last_error = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    return Ok(SipSockets {
                        udp,
                        tcp,
                        tls: None,
                        registrar: None,
                        shared_store: None,
                        capture: Capture::off(),
                        trunks: Arc::default(),
                        accepted: ConnectionTable::new(
                            "sip",
                            DEFAULT_MAX_CONNECTIONS,
                            DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
                        ),
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
    }

    /// Also listens for SIP over TLS on `addr` with `acceptor`'s certificate.
    pub async fn bind_tls(&mut self, addr: SocketAddr, acceptor: TlsAcceptor) -> io::Result<()> {
        self.tls = Some((TcpListener::bind(addr).await?, acceptor));
        Ok(())
    }

    /// Takes REGISTER requests and admits calls into domains through `registrar`; the
    /// bindings it changes are sent to `bindings` (for the store) a few times a second.
    pub fn with_registrar(
        mut self,
        registrar: Registrar,
        bindings: mpsc::UnboundedSender<Vec<SipWrite>>,
    ) -> SipSockets {
        self.registrar = Some((registrar, bindings));
        self
    }

    /// Rings registered users at the bindings the other nodes sharing `store` hold too.
    pub fn with_shared_bindings(mut self, store: Store) -> SipSockets {
        self.shared_store = Some(store);
        self
    }

    /// Holds accepted TCP and TLS connections (together) to `total` at once and `per_source`
    /// from one address; a new one closes the least recently active first.
    pub fn with_connection_limits(mut self, total: usize, per_source: usize) -> SipSockets {
        self.accepted = ConnectionTable::new("sip", total, per_source);
        self
    }

    /// Registers the trunks that ask for it (`register = true`) and keeps their state in
    /// `trunks`.
    pub fn with_trunks(mut self, trunks: Arc<Trunks>) -> SipSockets {
        self.trunks = trunks;
        self
    }

    /// Hands every SIP message sent and received (decrypted, for TLS) to `capture`.
    pub fn with_capture(mut self, capture: Capture) -> SipSockets {
        self.capture = capture;
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The bound TLS address, when listening for TLS.
    pub fn tls_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.tls.as_ref().map(|(listener, _)| listener.local_addr())
    }

    /// Starts the driver. It runs until `shutdown` turns true and every call is released;
    /// the handle places outbound legs. `connector` secures outgoing TLS connections;
    /// `routing` resolves outbound targets.
    pub fn spawn(
        self,
        config: EndpointConfig,
        connector: TlsConnector,
        routing: Routing,
        incoming: mpsc::Sender<IncomingCall>,
        shutdown: watch::Receiver<bool>,
    ) -> (SipHandle, JoinHandle<()>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (stream_tx, stream_rx) = mpsc::channel(1024);
        let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
        let local = self.udp.local_addr().unwrap_or(unbound);
        let tls_local = self
            .tls
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok());
        let mut listeners = vec![spawn_tcp_listener(
            self.tcp,
            self.accepted.clone(),
            stream_tx.clone(),
        )];
        if let Some((listener, acceptor)) = self.tls {
            let events = stream_tx.clone();
            listeners.push(tls::spawn_listener(
                listener,
                acceptor,
                self.accepted.clone(),
                move |stream, addr, ticket| {
                    let peer = Peer {
                        transport: Transport::Tls,
                        addr,
                    };
                    stream::spawn_accepted(stream, peer, events.clone(), ticket);
                },
            ));
        }
        let handle = SipHandle::new(commands);
        let mut endpoint = Endpoint::new(config);
        let mut bindings = None;
        if let Some((registrar, out)) = self.registrar {
            endpoint = endpoint.with_registrar(registrar);
            bindings = Some(out);
        }
        let (registrar_tx, registrar_rx) = mpsc::unbounded_channel();
        let registrations = Registrations::new(
            self.trunks,
            &endpoint,
            registrar_tx,
            tokio::time::Instant::now().into_std(),
        );
        let driver = driver::Driver {
            registrations,
            endpoint,
            udp: Arc::new(self.udp),
            connections: Connections::new(stream_tx, connector),
            calls: HashMap::new(),
            incoming,
            handle: handle.clone(),
            routing,
            bindings,
            shared_store: self.shared_store,
            capture: self.capture,
            local,
            tls_local,
        };
        let task = tokio::spawn(async move {
            driver
                .run(command_rx, stream_rx, registrar_rx, shutdown)
                .await;
            for listener in listeners {
                listener.abort();
            }
        });
        (handle, task)
    }
}

/// Accepts SIP over TCP into `table`; out of descriptors, backs off ([`AcceptBackoff`]).
fn spawn_tcp_listener(
    tcp: TcpListener,
    table: ConnectionTable,
    events: mpsc::Sender<stream::StreamEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = AcceptBackoff::new("sip-tcp");
        loop {
            match tcp.accept().await {
                Ok((stream, addr)) => {
                    backoff.accepted();
                    let _ = stream.set_nodelay(true);
                    let peer = Peer {
                        transport: Transport::Tcp,
                        addr,
                    };
                    let ticket = table.admit(addr.ip(), Instant::now());
                    stream::spawn_accepted(stream, peer, events.clone(), ticket);
                }
                Err(error) => {
                    let wait = backoff.failed(&error, Instant::now());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    })
}

/// Capacity of the channel that carries new calls to the call layer.
pub fn incoming_channel() -> (mpsc::Sender<IncomingCall>, mpsc::Receiver<IncomingCall>) {
    mpsc::channel(INCOMING_QUEUE)
}

#[cfg(test)]
mod tests;
