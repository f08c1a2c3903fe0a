//! The capture writer task: takes what the taps queued, counts the SIP metrics (requests,
//! responses, retransmissions, transactions), mirrors each message to the HEP collector,
//! keeps the messages of calls (masked) and the call events, and writes them in batches
//! through the store's group commits. Whatever queued while a batch was being written is the
//! next batch. Once a minute (and at start) the store prunes the capture to its retention and
//! size cap.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::sip_text::{is_call_method, mask_credentials, summarize};
use super::{CallEvent, Direction, Record, SipPacket, hep};
use crate::metrics::METRICS;
use crate::store::{CallEventRecord, CaptureBatch, CaptureLimits, SipMessageRecord, Store};

/// Records taken from the queue at once.
const MAX_BATCH: usize = 2048;
/// How often the retention and the size cap are applied.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// A message identical to one of this long ago is a retransmission (64·T1, RFC 3261 §17).
const RETRANSMISSION_WINDOW: Duration = Duration::from_secs(32);

/// What the writer does with what it is given.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Where calls' capture is kept; `None` keeps nothing (HEP and metrics only).
    pub store: Option<Store>,
    /// The HEP collector every SIP message is mirrored to.
    pub hep: Option<SocketAddr>,
    /// How long capture is kept.
    pub retention: Duration,
    /// Bytes of capture kept at most.
    pub max_bytes: u64,
}

/// Remembers the messages of the last window or two, to tell retransmissions.
#[derive(Default)]
struct RecentMessages {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    rotated: Option<Instant>,
}

impl RecentMessages {
    /// Whether the same message went the same way recently; remembers it.
    fn seen(&mut self, packet: &SipPacket, now: Instant) -> bool {
        let rotated = *self.rotated.get_or_insert(now);
        if now.duration_since(rotated) >= RETRANSMISSION_WINDOW {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Some(now);
        }
        let mut hasher = DefaultHasher::new();
        packet.direction.as_str().hash(&mut hasher);
        packet.bytes.hash(&mut hasher);
        let key = hasher.finish();
        self.previous.contains(&key) || !self.current.insert(key)
    }
}

struct Writer {
    config: WriterConfig,
    hep: Option<UdpSocket>,
    recent: RecentMessages,
    batch: CaptureBatch,
}

/// Runs until every tap is dropped, then writes what is left.
pub async fn run(config: WriterConfig, mut records: mpsc::Receiver<Record>) {
    let hep = match config.hep {
        Some(collector) => {
            let bind: SocketAddr = if collector.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            match UdpSocket::bind(bind).await {
                Ok(socket) => Some(socket),
                Err(error) => {
                    tracing::warn!(%error, %collector, "cannot open a socket for HEP: not mirrored");
                    None
                }
            }
        }
        None => None,
    };
    let mut writer = Writer {
        config,
        hep,
        recent: RecentMessages::default(),
        batch: CaptureBatch::default(),
    };
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut taken = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = records.recv_many(&mut taken, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                for record in taken.drain(..) {
                    writer.take(record).await;
                }
                writer.flush().await;
            }
            _ = prune.tick() => writer.prune().await,
        }
    }
    writer.flush().await;
}

/// The method as a metric label: the methods of RFC 3261 and its extensions, anything else
/// `other` (a peer inventing methods must not grow the registry without bound).
fn method_label(method: &str) -> &str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
    ];
    KNOWN
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("other")
}

fn utc(at: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(at)
}

impl Writer {
    async fn take(&mut self, record: Record) {
        match record {
            Record::Sip(packet) => self.sip(packet).await,
            Record::Event(event) => self.event(event),
        }
    }

    async fn sip(&mut self, packet: SipPacket) {
        let text = String::from_utf8_lossy(&packet.bytes);
        let Some(summary) = summarize(&text) else {
            return;
        };
        let direction = packet.direction.as_str();
        let retransmitted = self.recent.seen(&packet, Instant::now());
        if retransmitted {
            METRICS.sip_retransmissions.inc(&[("direction", direction)]);
        }
        match (summary.request_method.map(method_label), summary.status) {
            (Some(method), _) => {
                METRICS
                    .sip_requests
                    .inc(&[("direction", direction), ("method", method)]);
                if method != "ACK" && !retransmitted {
                    let role = match packet.direction {
                        Direction::In => "server",
                        Direction::Out => "client",
                    };
                    METRICS.sip_transactions.inc(&[("role", role)]);
                }
            }
            (None, Some(status)) => {
                // The grammar allows 100 to 699 only; anything else is one label.
                let status = if (100..700).contains(&status) {
                    status.to_string()
                } else {
                    "other".to_owned()
                };
                METRICS.sip_responses.inc(&[
                    ("direction", direction),
                    ("method", summary.cseq_method.map_or("", method_label)),
                    ("status", &status),
                ]);
            }
            (None, None) => {}
        }
        if let (Some(socket), Some(collector)) = (&self.hep, self.config.hep) {
            let (source, destination) = match packet.direction {
                Direction::In => (packet.remote, packet.local),
                Direction::Out => (packet.local, packet.remote),
            };
            if let Some(datagram) = hep::encode(
                source,
                destination,
                packet.transport,
                packet.at,
                &packet.bytes,
                summary.call_id,
            ) && socket.send_to(&datagram, collector).await.is_ok()
            {
                METRICS.hep_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        let method = summary.request_method.or(summary.cseq_method);
        let (Some(call_id), true) = (
            summary.call_id,
            self.config.store.is_some() && method.is_some_and(is_call_method),
        ) else {
            return;
        };
        self.batch.sip.push(SipMessageRecord {
            id: 0,
            sip_call_id: call_id.to_owned(),
            at: utc(packet.at),
            direction: direction.to_owned(),
            transport: packet.transport.as_str().to_owned(),
            local: packet.local.to_string(),
            remote: packet.remote.to_string(),
            first_line: summary.first_line.to_owned(),
            text: mask_credentials(&text).into_owned(),
        });
    }

    fn event(&mut self, event: CallEvent) {
        if self.config.store.is_none() {
            return;
        }
        self.batch.events.push(CallEventRecord {
            id: 0,
            call_sid: event.call_sid,
            at: utc(event.at),
            kind: event.kind.as_str().to_owned(),
            data: event.data.to_string(),
        });
    }

    async fn flush(&mut self) {
        let Some(store) = &self.config.store else {
            return;
        };
        if self.batch.sip.is_empty() && self.batch.events.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let rows = (batch.sip.len() + batch.events.len()) as u64;
        match store.save_capture(batch).await {
            Ok(()) => {
                METRICS.capture_written.fetch_add(rows, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, rows, "call capture not saved"),
        }
    }

    async fn prune(&self) {
        let Some(store) = &self.config.store else {
            return;
        };
        let retention =
            chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        let limits = CaptureLimits {
            keep_after: Utc::now()
                .checked_sub_signed(retention)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            max_bytes: self.config.max_bytes,
        };
        if let Err(error) = store.prune_capture(limits).await {
            tracing::warn!(%error, "call capture not pruned");
        }
    }
}
