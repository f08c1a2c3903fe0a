//! Per-call capture: every SIP message callml sends or receives, every request to a customer
//! URL with its answer, each verb its documents started and ended, and each leg's media facts, kept for the console, `Calls/{Sid}/Sip.json`
//! and `Calls/{Sid}/Events.json`; and the mirror of every SIP message to a HEP collector
//! (`--hep`).
//!
//! The taps ([`Capture::sip`] in the transport driver, [`Capture::event`] in the webhook client
//! and the call task) cost one copy and a `try_send` on a bounded channel; a full channel drops
//! the record (counted in `callml_capture_dropped_total`) instead of slowing the call. The
//! [`writer`] task does the rest off the hot path: reads the message's first line, `Call-ID`
//! and `CSeq`, masks digest credentials, counts the SIP metrics, sends HEP, and writes batches
//! through the store's group commits, pruning by age and size.

pub mod hep;
pub mod media;
pub mod sip_text;
pub mod writer;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::METRICS;
use crate::sip::msg::Transport;

/// Records waiting for the writer before the taps drop new ones.
pub const QUEUE_CAPACITY: usize = 32 * 1024;

/// Whether callml received or sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One SIP message as it crossed the wire (decrypted, for TLS).
#[derive(Debug, Clone)]
pub struct SipPacket {
    pub at: SystemTime,
    pub direction: Direction,
    pub transport: Transport,
    /// callml's address (the listener's, for TCP and TLS connections).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub bytes: Bytes,
}

/// What a call event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A document fetch: request and response (the document).
    Document,
    /// A status callback: request and response.
    Callback,
    /// A leg's media facts when it ends.
    Media,
    /// A verb of the leg's documents started or ended (name, line, attributes, outcome).
    Verb,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Document => "document",
            EventKind::Callback => "callback",
            EventKind::Media => "media",
            EventKind::Verb => "verb",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        match text {
            "document" => Some(EventKind::Document),
            "callback" => Some(EventKind::Callback),
            "media" => Some(EventKind::Media),
            "verb" => Some(EventKind::Verb),
            _ => None,
        }
    }
}

/// Something that happened to a call, as JSON (`request`/`response` for webhooks, the leg's
/// stream statistics for media).
#[derive(Debug, Clone)]
pub struct CallEvent {
    pub call_sid: String,
    pub at: SystemTime,
    pub kind: EventKind,
    pub data: serde_json::Value,
}

/// What the taps hand to the writer.
#[derive(Debug)]
pub enum Record {
    Sip(SipPacket),
    Event(CallEvent),
}

/// The taps' end of the capture channel: cheap to clone; does nothing when capture and HEP
/// are both off ([`Capture::off`]).
#[derive(Debug, Clone, Default)]
pub struct Capture {
    records: Option<mpsc::Sender<Record>>,
}

impl Capture {
    /// A tap that records nothing.
    pub fn off() -> Capture {
        Capture::default()
    }

    /// A tap and the receiving end for [`writer::run`].
    pub fn channel() -> (Capture, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (Capture { records: Some(tx) }, rx)
    }

    pub fn is_on(&self) -> bool {
        self.records.is_some()
    }

    fn push(&self, record: Record) {
        if let Some(records) = &self.records
            && records.try_send(record).is_err()
        {
            METRICS.capture_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A SIP message sent or received.
    pub fn sip(
        &self,
        direction: Direction,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Bytes,
    ) {
        if self.is_on() {
            self.push(Record::Sip(SipPacket {
                at: SystemTime::now(),
                direction,
                transport,
                local,
                remote,
                bytes,
            }));
        }
    }

    /// An event of the call `call_sid`.
    pub fn event(&self, call_sid: &str, kind: EventKind, data: serde_json::Value) {
        if self.is_on() {
            self.push(Record::Event(CallEvent {
                call_sid: call_sid.to_owned(),
                at: SystemTime::now(),
                kind,
                data,
            }));
        }
    }
}
