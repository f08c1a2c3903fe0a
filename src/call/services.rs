//! What every call task shares: the configuration, the trunks, the store, the webhook client, the audio
//! library, RTP ports, the relay engine, the SIP handle, the registry of live calls, the
//! queues and conferences, the speech recognizer, and the task set that shutdown waits for.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::control::BoxFuture;
use super::progress::{CallbackTarget, ProgressEvent};
use super::queues::Queues;
use super::registry::Registry;
use super::rooms::Rooms;
use super::speech;
use crate::capture::Capture;
use crate::config::Config;
use crate::directory::Directory;
use crate::media::library::AudioLibrary;
use crate::media::ports::PortAllocator;
use crate::media::relay_engine::RelayEngine;
use crate::sip::registrar::Locations;
use crate::store::Store;
use crate::transport::SipHandle;
use crate::trunk::Trunks;
use crate::webhook::WebhookClient;

/// What every call task shares.
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub webhooks: WebhookClient,
    /// Where each leg's media facts are recorded ([`crate::capture`]).
    pub capture: Capture,
    pub audio: AudioLibrary,
    pub ports: PortAllocator,
    /// Forwards the RTP of same-codec bridges.
    pub relay: RelayEngine,
    pub shutdown: watch::Receiver<bool>,
    /// Places outbound legs.
    pub sip: SipHandle,
    /// Live calls, for the REST API and for each other.
    pub registry: Registry,
    /// The call queues every call shares.
    pub queues: Arc<Queues>,
    /// The SIP trunks and their registration states.
    pub trunks: Arc<Trunks>,
    /// The account's SIP domains, credential lists and applications.
    pub directory: Arc<Directory>,
    /// Where registered phones are reached (`<Dial><Client>`, a domain user's URI).
    pub locations: Locations,
    /// The conferences every call shares.
    pub rooms: Arc<Rooms>,
    /// The base of `RecordingUrl` (`--public-url`, with the bound HTTP port when it is the
    /// default).
    pub public_url: String,
    /// callml's own HTTP address as a URL, for the documents it hosts itself
    /// ([`super::hosted`]).
    pub internal_url: String,
    /// Speech-to-text for `<Gather input="speech">`; [`speech::NoRecognizer`] by default.
    pub recognizer: Arc<dyn speech::SpeechRecognizer>,
    /// Call tasks started outside the SIP driver (outbound calls) run through here, so that
    /// shutdown waits for them too.
    pub spawner: mpsc::UnboundedSender<BoxFuture<'static, ()>>,
}

impl Services {
    /// Runs a call task alongside the others.
    pub fn spawn(&self, task: BoxFuture<'static, ()>) {
        if let Err(rejected) = self.spawner.send(task) {
            tokio::spawn(rejected.0);
        }
    }

    /// Runs work a call leaves behind (a callback drain, a late request) alongside the calls,
    /// in the current span: its log lines keep the call's CallSid.
    pub fn spawn_in_span(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn(Box::pin(tracing::Instrument::in_current_span(task)));
    }

    /// `--status-callback`: every event of every inbound call.
    pub fn inbound_callbacks(&self) -> Option<CallbackTarget> {
        self.config
            .status_callback
            .as_ref()
            .map(|url| CallbackTarget {
                url: url.clone(),
                method: crate::markup::ast::HttpMethod::Post,
                events: BTreeSet::from([
                    ProgressEvent::Initiated,
                    ProgressEvent::Ringing,
                    ProgressEvent::Answered,
                    ProgressEvent::Completed,
                ]),
            })
    }
}
