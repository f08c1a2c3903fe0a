//! The only SIP socket code: a UDP socket and a TCP listener on the `--sip` address, and the
//! driver task that feeds received bytes to the sans-IO [`Endpoint`], sends what it
//! transmits, fires its timers, and connects it to the call tasks.
//!
//! Call tasks receive an [`IncomingCall`] with their signal channel and a [`SipHandle`] for
//! commands; a task that places outbound legs (`<Dial>`, REST calls) has their signals
//! delivered on the same channel, tagged with each leg's [`CallKey`]. When a call task lets
//! go of a leg, its [`CallGuard`] releases it, so no party is left ringing even if the task
//! fails.

pub mod framing;
mod stream;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::sip::endpoint::{CallKey, CallSignal, Endpoint, EndpointConfig, EndpointEvent, Invite};
use crate::sip::msg::{Request, Transport};
use crate::sip::transaction::Peer;
use stream::StreamEvent;

/// How long the driver waits at shutdown for the last BYE transactions once every call task
/// has released its call.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(2);
/// New calls queued for the call layer before further INVITEs are refused with 503.
const INCOMING_QUEUE: usize = 1024;

/// Where the signals of a call task's legs go, each tagged with its leg.
pub type SignalSender = mpsc::UnboundedSender<(CallKey, CallSignal)>;
/// The receiving end a call task listens on.
pub type SignalReceiver = mpsc::UnboundedReceiver<(CallKey, CallSignal)>;

/// A new inbound call for the call layer.
#[derive(Debug)]
pub struct IncomingCall {
    pub key: CallKey,
    pub invite: Request,
    pub source: Peer,
    pub signals: SignalReceiver,
    /// The sender of `signals`, for the outbound legs the call places.
    pub signal_sender: SignalSender,
    pub sip: SipHandle,
}

#[derive(Debug)]
enum Command {
    Ring(CallKey),
    Answer(CallKey, String),
    Reject(CallKey, u16),
    Hangup(CallKey),
    Release(CallKey),
    Invite(CallKey, Box<Invite>, SignalSender),
    Acknowledge(CallKey, String),
}

/// Commands from a call task to its SIP legs; fire-and-forget, outcomes arrive as signals.
#[derive(Debug, Clone)]
pub struct SipHandle {
    commands: mpsc::UnboundedSender<Command>,
    next_outbound: Arc<AtomicU64>,
}

impl SipHandle {
    /// Places an outbound leg; its signals arrive on `signals` tagged with the returned key.
    pub fn invite(&self, invite: Invite, signals: SignalSender) -> CallKey {
        let key = CallKey(CallKey::OUTBOUND + self.next_outbound.fetch_add(1, Ordering::Relaxed));
        let _ = self
            .commands
            .send(Command::Invite(key, Box::new(invite), signals));
        key
    }

    /// Sends the ACK with our answer for a 2xx that carried the offer.
    pub fn acknowledge(&self, call: CallKey, sdp: String) {
        let _ = self.commands.send(Command::Acknowledge(call, sdp));
    }

    pub fn ring(&self, call: CallKey) {
        let _ = self.commands.send(Command::Ring(call));
    }

    pub fn answer(&self, call: CallKey, sdp: String) {
        let _ = self.commands.send(Command::Answer(call, sdp));
    }

    pub fn reject(&self, call: CallKey, status: u16) {
        let _ = self.commands.send(Command::Reject(call, status));
    }

    /// BYE for an answered leg; CANCEL for an outbound leg still ringing.
    pub fn hangup(&self, call: CallKey) {
        let _ = self.commands.send(Command::Hangup(call));
    }

    /// A guard that releases the call when dropped.
    pub fn guard(&self, call: CallKey) -> CallGuard {
        CallGuard {
            handle: self.clone(),
            call,
        }
    }
}

/// Releases a call in the endpoint when the call task lets go of it.
#[derive(Debug)]
pub struct CallGuard {
    handle: SipHandle,
    call: CallKey,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let _ = self.handle.commands.send(Command::Release(self.call));
    }
}

/// Bound SIP sockets, before the driver runs.
pub struct SipSockets {
    udp: UdpSocket,
    tcp: TcpListener,
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
                Ok(tcp) => return Ok(SipSockets { udp, tcp }),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Starts the driver. It runs until `shutdown` turns true and every call is released;
    /// the handle places outbound legs.
    pub fn spawn(
        self,
        config: EndpointConfig,
        incoming: mpsc::Sender<IncomingCall>,
        shutdown: watch::Receiver<bool>,
    ) -> (SipHandle, JoinHandle<()>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (stream_tx, stream_rx) = mpsc::channel(1024);
        let listener_events = stream_tx.clone();
        let tcp = self.tcp;
        let accept = tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        stream::spawn_connection(stream, peer, listener_events.clone());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "SIP TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let driver = Driver {
            endpoint: Endpoint::new(config),
            udp: Arc::new(self.udp),
            streams: HashMap::new(),
            pending: HashMap::new(),
            stream_tx,
            calls: HashMap::new(),
            incoming,
            handle: SipHandle {
                commands,
                next_outbound: Arc::new(AtomicU64::new(1)),
            },
        };
        let handle = driver.handle.clone();
        let task = tokio::spawn(async move {
            driver.run(command_rx, stream_rx, shutdown).await;
            accept.abort();
        });
        (handle, task)
    }
}

struct Driver {
    endpoint: Endpoint,
    udp: Arc<UdpSocket>,
    streams: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    /// Messages waiting for an outgoing connection to open.
    pending: HashMap<SocketAddr, Vec<Bytes>>,
    stream_tx: mpsc::Sender<StreamEvent>,
    calls: HashMap<CallKey, SignalSender>,
    incoming: mpsc::Sender<IncomingCall>,
    handle: SipHandle,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut streams: mpsc::Receiver<StreamEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 65_536];
        let mut stopping = *shutdown.borrow();
        let mut linger_until = None;
        loop {
            if stopping {
                self.endpoint.stop_accepting();
                if self.calls.is_empty() {
                    let deadline = *linger_until.get_or_insert_with(|| now() + SHUTDOWN_LINGER);
                    if self.endpoint.is_idle() || now() >= deadline {
                        break;
                    }
                }
            }
            let wake = self
                .endpoint
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1))
                .min(tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((n, addr)) => {
                        let peer = Peer { transport: Transport::Udp, addr };
                        self.endpoint.handle_bytes(&buf[..n], peer, now());
                    }
                    Err(error) => tracing::debug!(%error, "SIP UDP receive error"),
                },
                Some(event) = streams.recv() => self.on_stream(event),
                Some(command) = commands.recv() => self.on_command(command),
                _ = tokio::time::sleep_until(wake) => self.endpoint.handle_timeout(now()),
                changed = shutdown.changed(), if !stopping => {
                    stopping = changed.is_err() || *shutdown.borrow();
                }
            }
            self.flush().await;
            self.dispatch();
        }
    }

    fn on_stream(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Opened { peer, writer } => {
                for bytes in self.pending.remove(&peer).unwrap_or_default() {
                    let _ = writer.try_send(bytes);
                }
                self.streams.insert(peer, writer);
            }
            StreamEvent::Message { peer, bytes } => {
                let peer = Peer {
                    transport: Transport::Tcp,
                    addr: peer,
                };
                self.endpoint.handle_bytes(&bytes, peer, now());
            }
            StreamEvent::Closed { peer } => {
                self.streams.remove(&peer);
            }
            StreamEvent::ConnectFailed { peer } => {
                self.pending.remove(&peer);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = now();
        let result = match command {
            Command::Ring(call) => self.endpoint.ring(call, now),
            Command::Answer(call, sdp) => self.endpoint.answer(call, sdp, now),
            Command::Reject(call, status) => self.endpoint.reject(call, status, now),
            Command::Hangup(call) => self.endpoint.hangup(call, now),
            Command::Release(call) => {
                self.endpoint.release(call, now);
                self.calls.remove(&call);
                Ok(())
            }
            Command::Invite(call, invite, signals) => {
                self.calls.insert(call, signals.clone());
                let result = self.endpoint.invite(call, *invite, now);
                if result.is_err() {
                    let _ = signals.send((call, CallSignal::Unreachable));
                }
                result
            }
            Command::Acknowledge(call, sdp) => self.endpoint.acknowledge(call, sdp),
        };
        if let Err(error) = result {
            tracing::debug!(%error, "SIP command not carried out");
        }
    }

    async fn flush(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            match transmit.peer.transport {
                Transport::Udp => {
                    if let Err(error) = self
                        .udp
                        .send_to(&transmit.payload, transmit.peer.addr)
                        .await
                    {
                        tracing::debug!(%error, peer = %transmit.peer.addr, "SIP UDP send failed");
                    }
                }
                Transport::Tcp | Transport::Tls => {
                    let addr = transmit.peer.addr;
                    match self.streams.get(&addr) {
                        Some(writer) => {
                            if writer.try_send(transmit.payload).is_err() {
                                tracing::debug!(peer = %addr, "SIP connection queue full or closed");
                            }
                        }
                        None => {
                            let queue = self.pending.entry(addr).or_default();
                            if queue.is_empty() {
                                stream::spawn_connect(addr, self.stream_tx.clone());
                            }
                            queue.push(transmit.payload);
                        }
                    }
                }
            }
        }
    }

    fn dispatch(&mut self) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                EndpointEvent::Incoming {
                    call,
                    invite,
                    source,
                } => {
                    let (signal_tx, signals) = mpsc::unbounded_channel();
                    let incoming = IncomingCall {
                        key: call,
                        invite: *invite,
                        source,
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
                EndpointEvent::Signal { call, signal } => {
                    if let Some(tx) = self.calls.get(&call) {
                        let _ = tx.send((call, signal));
                    }
                }
            }
        }
    }
}

/// Capacity of the channel that carries new calls to the call layer.
pub fn incoming_channel() -> (mpsc::Sender<IncomingCall>, mpsc::Receiver<IncomingCall>) {
    mpsc::channel(INCOMING_QUEUE)
}
