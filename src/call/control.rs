//! What the REST API asks of the call layer: create an outbound call, and change a live one
//! (redirect it to a new document, hang it up, cancel it before it is answered).
//!
//! The API depends only on [`CallControl`]; the call layer implements it over its registry of
//! live call tasks.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::params::RoutedTo;
use super::progress::CallbackTarget;
use crate::markup::ast::{HttpMethod, KeywordSet, RecordingEvent, Trim};
use crate::store::{CallRecord, StoreError};

/// A boxed future, so that [`CallControl`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a call's document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentSource {
    /// Fetched from the customer's URL.
    Url { url: String, method: HttpMethod },
    /// Given inline (the `Twiml` parameter).
    Twiml(String),
}

/// Who an outbound call rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallTarget {
    /// A `sip:` or `sips:` URI, as given.
    Sip(String),
    /// A phone number, sent through the configured outbound trunk.
    Number(String),
    /// `client:NAME`: every device registered as `NAME` in the account's SIP domains.
    Client(String),
}

/// Recording of a whole outbound call (`Record`, `RecordingChannels`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRequest {
    /// `dual` (one channel per party) or `mono`.
    pub dual: bool,
    pub trim: Trim,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    /// Events asked for: `in-progress`, `completed`, `absent`.
    pub status_callback_events: KeywordSet<RecordingEvent>,
}

/// A validated `Calls.json` POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub account_sid: String,
    pub to: CallTarget,
    pub from: String,
    pub document: DocumentSource,
    pub fallback: Option<(String, HttpMethod)>,
    pub status_callback: Option<CallbackTarget>,
    /// How long to let it ring (`Timeout`, default 60 s, at most 600 s).
    pub timeout: Duration,
    /// Longest the call may last once answered (`TimeLimit`, default 4 h).
    pub time_limit: Duration,
    pub recording: Option<RecordingRequest>,
    /// DTMF to send once answered (`SendDigits`).
    pub send_digits: Option<String>,
    /// Digest credentials for the callee's 401/407 (`SipAuthUsername`, `SipAuthPassword`).
    pub sip_auth: Option<(String, String)>,
    /// Caller ID presented on the SIP leg (`CallerId`), when it differs from `from`.
    pub caller_id: Option<String>,
    /// `MachineDetection` was asked for (not available: `AnsweredBy=unknown`).
    pub machine_detection: bool,
    /// The call's SID, when the caller needs it before the call starts (a conference
    /// participant is listed under it at once); made otherwise.
    pub sid: Option<String>,
    /// The conference the call is placed for: told when the call ends before it answers.
    pub conference_sid: Option<String>,
    /// `X-` headers for the INVITE (the seeds' `sip.headers`), checked by the caller.
    pub sip_headers: Vec<(String, String)>,
    /// SRTP is required whatever the URI says (the seeds' `secure: true`).
    pub secure_media: bool,
    /// The seed's mapping fields the call carries (a conference participant: the room's
    /// channel and application), for its requests and its trunk's caller-ID templates.
    pub routed: Option<RoutedTo>,
}

/// A change to a live call (`Calls/{CallSid}.json` POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// Stop the current document and run this one.
    Redirect(DocumentSource),
    /// `Status=completed`: hang up, whatever the call is doing.
    Complete,
    /// `Status=canceled`: end a call that is queued or ringing; answered calls are unaffected.
    Cancel,
}

/// Why the call layer refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no live call {0}")]
    NotLive(String),
    #[error("the call cannot be placed: {0}")]
    Unroutable(String),
    #[error("callml is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The call layer as the REST API sees it.
pub trait CallControl: Send + Sync + 'static {
    /// Saves the call as `queued` and starts it; returns the saved record at once.
    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<CallRecord, ControlError>>;

    /// Applies a change to a live call.
    fn update(&self, sid: &str, change: CallUpdate) -> Result<(), ControlError>;
}
