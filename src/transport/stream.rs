//! Connection-oriented SIP transports (RFC 3261 §18.3): one task per connection reads frames
//! into the driver's channel and writes what the driver queues for it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::framing::Framer;

/// How long an outgoing connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one connection before the driver's sends fail fast.
const WRITE_QUEUE: usize = 256;

/// What connection tasks tell the driver.
#[derive(Debug)]
pub enum StreamEvent {
    Opened {
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    Message {
        peer: SocketAddr,
        bytes: Bytes,
    },
    Closed {
        peer: SocketAddr,
    },
    ConnectFailed {
        peer: SocketAddr,
    },
}

/// Runs one connection until either side closes it.
pub fn spawn_connection<S>(stream: S, peer: SocketAddr, events: mpsc::Sender<StreamEvent>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (writer, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    tokio::spawn(async move {
        if events
            .send(StreamEvent::Opened { peer, writer })
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
        };
        let read = async {
            let mut framer = Framer::new();
            loop {
                framer.buffer_mut().reserve(4096);
                match reader.read_buf(framer.buffer_mut()).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
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
                            tracing::info!(%peer, %error, "closing SIP connection");
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = write => {}
            _ = read => {}
        }
        let _ = events.send(StreamEvent::Closed { peer }).await;
    });
}

/// Opens a TCP connection to `peer` and runs it, or reports the failure.
pub fn spawn_connect(peer: SocketAddr, events: mpsc::Sender<StreamEvent>) {
    tokio::spawn(async move {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                spawn_connection(stream, peer, events);
            }
            Ok(Err(error)) => {
                tracing::info!(%peer, %error, "SIP TCP connect failed");
                let _ = events.send(StreamEvent::ConnectFailed { peer }).await;
            }
            Err(_) => {
                tracing::info!(%peer, "SIP TCP connect timed out");
                let _ = events.send(StreamEvent::ConnectFailed { peer }).await;
            }
        }
    });
}
