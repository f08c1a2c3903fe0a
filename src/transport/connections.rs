//! The driver's TCP and TLS connections (RFC 3261 §18, RFC 5923 in spirit): one per peer
//! (transport + address), reused for every message to that peer whoever opened it; messages
//! for a peer without a connection wait while one is opened (TLS with the server name the
//! target was resolved from, for SNI and certificate checks, RFC 5922); connections that carry
//! no dialog or transaction are closed after [`IDLE_TIMEOUT`] without traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::stream::{self, ConnectionId, StreamEvent};
use super::tls::TlsConnector;
use crate::sip::transaction::Peer;

/// A connection with no traffic for this long, and nothing of the endpoint using it, is
/// closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Server names remembered for TLS peers at most (oldest forgotten first).
const REMEMBERED_NAMES: usize = 4096;

struct Connection {
    id: ConnectionId,
    writer: mpsc::Sender<Bytes>,
    last_used: Instant,
}

/// Why a message could not be handed to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued on an open connection, or waiting for one being opened.
    Queued,
    /// The connection's queue is full: the message is dropped (retransmissions will follow).
    Congested,
}

/// Open and opening connections of the driver.
pub struct Connections {
    open: HashMap<Peer, Connection>,
    /// Messages waiting for an outgoing connection to open.
    pending: HashMap<Peer, Vec<Bytes>>,
    /// The host name to verify for a TLS address (from the URI it was resolved from).
    server_names: HashMap<SocketAddr, String>,
    name_order: Vec<SocketAddr>,
    events: mpsc::Sender<StreamEvent>,
    tls: TlsConnector,
}

impl Connections {
    pub fn new(events: mpsc::Sender<StreamEvent>, tls: TlsConnector) -> Connections {
        Connections {
            open: HashMap::new(),
            pending: HashMap::new(),
            server_names: HashMap::new(),
            name_order: Vec::new(),
            events,
            tls,
        }
    }

    /// The name to check a TLS server at `addr` against.
    pub fn remember_server_name(&mut self, addr: SocketAddr, name: String) {
        if self.server_names.insert(addr, name).is_none() {
            self.name_order.push(addr);
            if self.name_order.len() > REMEMBERED_NAMES {
                let oldest = self.name_order.remove(0);
                self.server_names.remove(&oldest);
            }
        }
    }

    /// Sends `bytes` to `peer` over its connection, opening one when there is none.
    pub fn send(&mut self, peer: Peer, bytes: Bytes, now: Instant) -> SendOutcome {
        if let Some(connection) = self.open.get_mut(&peer) {
            match connection.writer.try_send(bytes) {
                Ok(()) => {
                    connection.last_used = now;
                    return SendOutcome::Queued;
                }
                Err(mpsc::error::TrySendError::Full(_)) => return SendOutcome::Congested,
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    self.open.remove(&peer);
                    return self.queue_for_new(peer, bytes);
                }
            }
        }
        self.queue_for_new(peer, bytes)
    }

    fn queue_for_new(&mut self, peer: Peer, bytes: Bytes) -> SendOutcome {
        let queue = self.pending.entry(peer).or_default();
        if queue.is_empty() {
            let name = self
                .server_names
                .get(&peer.addr)
                .cloned()
                .unwrap_or_else(|| peer.addr.ip().to_string());
            stream::spawn_connect(peer, name, self.tls.clone(), self.events.clone());
        }
        queue.push(bytes);
        SendOutcome::Queued
    }

    /// A connection opened (accepted or connected): it becomes the peer's, and what waited
    /// for it is sent.
    pub fn opened(
        &mut self,
        peer: Peer,
        id: ConnectionId,
        writer: mpsc::Sender<Bytes>,
        now: Instant,
    ) {
        for bytes in self.pending.remove(&peer).unwrap_or_default() {
            let _ = writer.try_send(bytes);
        }
        self.open.insert(
            peer,
            Connection {
                id,
                writer,
                last_used: now,
            },
        );
    }

    /// Traffic arrived on the peer's connection.
    pub fn used(&mut self, peer: Peer, now: Instant) {
        if let Some(connection) = self.open.get_mut(&peer) {
            connection.last_used = now;
        }
    }

    /// A connection ended; a newer one to the same peer stays. Returns whether it was the
    /// peer's connection (then nothing reaches the peer any more).
    pub fn closed(&mut self, peer: Peer, id: ConnectionId) -> bool {
        if self.open.get(&peer).is_some_and(|c| c.id == id) {
            self.open.remove(&peer);
            return true;
        }
        false
    }

    /// Opening a connection failed: what waited for it is dropped.
    pub fn connect_failed(&mut self, peer: Peer) {
        self.pending.remove(&peer);
    }

    /// Closes connections idle since `now - IDLE_TIMEOUT` that `in_use` does not need.
    pub fn close_idle(&mut self, now: Instant, in_use: impl Fn(Peer) -> bool) {
        self.open.retain(|&peer, connection| {
            let idle = now.saturating_duration_since(connection.last_used) >= IDLE_TIMEOUT;
            let keep = !idle || in_use(peer);
            if !keep {
                tracing::debug!(peer = %peer.addr, transport = %peer.transport, "closing idle SIP connection");
            }
            keep
        });
    }
}
