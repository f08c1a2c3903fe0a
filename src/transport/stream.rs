//! Connection-oriented SIP transports (RFC 3261 §18.3) over TCP and TLS: one task per
//! connection reads frames into the driver's channel and writes what the driver queues for
//! it. Each connection is known by its [`Peer`] (transport and remote address, so a TCP and a
//! TLS connection to the same address are different peers) and a [`ConnectionId`], so that
//! the end of an old connection is never mistaken for the end of a newer one to the same peer.
//! Dropping a connection's writer closes it; an accepted connection is also closed when its
//! listener's [`ConnectionTable`](crate::limits::ConnectionTable) needs room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::framing::Framer;
use super::tls::TlsConnector;
use crate::limits::Ticket;
use crate::sip::msg::Transport;
use crate::sip::transaction::Peer;

/// How long an outgoing connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one connection before the driver's sends fail fast.
const WRITE_QUEUE: usize = 256;

/// Identifies one connection among those to the same peer over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(u64);

impl ConnectionId {
    fn next() -> ConnectionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnectionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What connection tasks tell the driver.
#[derive(Debug)]
pub enum StreamEvent {
    Opened {
        peer: Peer,
        id: ConnectionId,
        writer: mpsc::Sender<Bytes>,
    },
    Message {
        peer: Peer,
        bytes: Bytes,
    },
    Closed {
        peer: Peer,
        id: ConnectionId,
    },
    /// An outgoing connection could not be opened (refused, timed out, TLS handshake or
    /// certificate verification failed).
    ConnectFailed {
        peer: Peer,
        /// In words, for the record of a call that ends of it.
        reason: String,
    },
}

/// Runs one connection until either side closes it (or the driver drops its writer).
pub fn spawn_connection<S>(stream: S, peer: Peer, events: mpsc::Sender<StreamEvent>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    run_connection(stream, peer, events, None);
}

/// Runs one accepted connection like [`spawn_connection`], held in its listener's connection
/// table by `ticket`: its traffic keeps it recent, and the table may close it for a newer one.
pub fn spawn_accepted<S>(stream: S, peer: Peer, events: mpsc::Sender<StreamEvent>, ticket: Ticket)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    run_connection(stream, peer, events, Some(ticket));
}

fn run_connection<S>(
    stream: S,
    peer: Peer,
    events: mpsc::Sender<StreamEvent>,
    ticket: Option<Ticket>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (writer, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let id = ConnectionId::next();
    tokio::spawn(async move {
        if events
            .send(StreamEvent::Opened { peer, id, writer })
            .await
            .is_err()
        {
            return;
        }
        let (mut reader, mut write_half) = tokio::io::split(stream);
        let write = async {
            while let Some(bytes) = queue.recv().await {
                if write_half.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = write_half.shutdown().await;
        };
        let read = async {
            let mut framer = Framer::new();
            loop {
                framer.buffer_mut().reserve(4096);
                match reader.read_buf(framer.buffer_mut()).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(ticket) = &ticket {
                            ticket.touch(std::time::Instant::now());
                        }
                    }
                }
                loop {
                    match framer.next_message() {
                        Ok(Some(bytes)) => {
                            if events
                                .send(StreamEvent::Message { peer, bytes })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::info!(peer = %peer.addr, %error, "closing SIP connection");
                            return;
                        }
                    }
                }
            }
        };
        let evicted = async {
            match &ticket {
                Some(ticket) => ticket.evicted().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = write => {}
            _ = read => {}
            () = evicted => tracing::debug!(peer = %peer.addr, "SIP connection closed to make room"),
        }
        let _ = events.send(StreamEvent::Closed { peer, id }).await;
    });
}

/// Opens a connection to `peer` (TCP, or TLS checked against `server_name`) and runs it, or
/// reports the failure.
pub fn spawn_connect(
    peer: Peer,
    server_name: String,
    tls: TlsConnector,
    events: mpsc::Sender<StreamEvent>,
) {
    tokio::spawn(async move {
        let reason = match peer.transport {
            Transport::Tls => match tls.connect(peer.addr, &server_name).await {
                Ok(stream) => {
                    spawn_connection(stream, peer, events.clone());
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "SIP TLS connection failed");
                    error.to_string()
                }
            },
            Transport::Tcp | Transport::Udp => {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        spawn_connection(stream, peer, events.clone());
                        return;
                    }
                    Ok(Err(error)) => {
                        tracing::info!(peer = %peer.addr, %error, "SIP TCP connect failed");
                        format!("TCP connection to {} failed: {error}", peer.addr)
                    }
                    Err(_) => {
                        tracing::info!(peer = %peer.addr, "SIP TCP connect timed out");
                        format!("TCP connection to {} timed out", peer.addr)
                    }
                }
            }
        };
        let _ = events
            .send(StreamEvent::ConnectFailed { peer, reason })
            .await;
    });
}
