//! The only SIP socket code: a UDP socket and a TCP listener on the `--sip` address, a TLS
//! listener on `--sip-tls`, outgoing TCP/TLS connections, and the [`driver`] task that feeds
//! the sans-IO [`Endpoint`](crate::sip::endpoint::Endpoint) and connects it to the call tasks.
//!
//! Call tasks receive an [`IncomingCall`] with their signal channel and a [`SipHandle`] for
//! commands; a task that places outbound legs (`<Dial>`, REST calls) has their signals
//! delivered on the same channel, tagged with each leg's key. When a call task lets go of a
//! leg, its [`CallGuard`] releases it, so no party is left ringing even if the task fails.

mod connections;
pub mod dns;
mod driver;
pub mod framing;
mod handle;
mod stream;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::capture::Capture;
use crate::sip::endpoint::{Endpoint, EndpointConfig};
use crate::sip::msg::Transport;
use crate::sip::registrar::Registrar;
use crate::sip::transaction::Peer;
use crate::store::SipWrite;
use connections::Connections;
pub use driver::Routing;
pub use handle::{CallGuard, IncomingCall, SignalReceiver, SignalSender, SipHandle};
use tls::{TlsAcceptor, TlsConnector};

/// New calls queued for the call layer before further INVITEs are refused with 503.
const INCOMING_QUEUE: usize = 1024;

/// Bound SIP sockets, before the driver runs.
pub struct SipSockets {
    udp: UdpSocket,
    tcp: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    registrar: Option<(Registrar, mpsc::UnboundedSender<Vec<SipWrite>>)>,
    capture: Capture,
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
                        capture: Capture::off(),
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
        let mut listeners = vec![spawn_tcp_listener(self.tcp, stream_tx.clone())];
        if let Some((listener, acceptor)) = self.tls {
            let events = stream_tx.clone();
            listeners.push(tls::spawn_listener(
                listener,
                acceptor,
                move |stream, addr| {
                    let peer = Peer {
                        transport: Transport::Tls,
                        addr,
                    };
                    stream::spawn_connection(stream, peer, events.clone());
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
        let driver = driver::Driver {
            endpoint,
            udp: Arc::new(self.udp),
            connections: Connections::new(stream_tx, connector),
            calls: HashMap::new(),
            incoming,
            handle: handle.clone(),
            routing,
            bindings,
            capture: self.capture,
            local,
            tls_local,
        };
        let task = tokio::spawn(async move {
            driver.run(command_rx, stream_rx, shutdown).await;
            for listener in listeners {
                listener.abort();
            }
        });
        (handle, task)
    }
}

fn spawn_tcp_listener(
    tcp: TcpListener,
    events: mpsc::Sender<stream::StreamEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let peer = Peer {
                        transport: Transport::Tcp,
                        addr,
                    };
                    stream::spawn_connection(stream, peer, events.clone());
                }
                Err(error) => {
                    tracing::warn!(%error, "SIP TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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
