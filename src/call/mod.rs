//! Calls: one task per call owning its interpreter, media and record (`ARCHITECTURE.md`,
//! principle 4), plus the services every call shares.

pub mod control;
pub mod dial;
pub mod document;
pub mod inbound;
pub mod media;
pub mod outbound;
pub mod params;
pub mod party;
pub mod progress;
pub mod recording;
pub mod registry;
pub mod session;
pub mod speech;
pub mod verbs;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::media::library::AudioLibrary;
use crate::media::ports::PortAllocator;
use crate::media::relay_engine::RelayEngine;
use crate::store::Store;
use crate::transport::{IncomingCall, SipHandle};
use crate::webhook::WebhookClient;
use control::BoxFuture;
use progress::{CallbackTarget, ProgressEvent};
use registry::Registry;

/// What every call task shares.
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub webhooks: WebhookClient,
    pub audio: AudioLibrary,
    pub ports: PortAllocator,
    /// Forwards the RTP of same-codec bridges.
    pub relay: RelayEngine,
    pub shutdown: watch::Receiver<bool>,
    /// Places outbound legs.
    pub sip: SipHandle,
    /// Live calls, for the REST API.
    pub registry: Registry,
    /// The base of `RecordingUrl` (`--public-url`, with the bound HTTP port when it is the
    /// default).
    pub public_url: String,
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

    /// `--status-callback`: every event of every inbound call.
    fn inbound_callbacks(&self) -> Option<CallbackTarget> {
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

/// How long shutdown waits for call tasks to write their records.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs a task per incoming call, and the outbound call tasks handed to
/// [`Services::spawn`], until the SIP driver stops; then waits (bounded) for the call tasks
/// still running.
pub async fn serve(
    mut incoming: mpsc::Receiver<IncomingCall>,
    mut spawned: mpsc::UnboundedReceiver<BoxFuture<'static, ()>>,
    services: Arc<Services>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            call = incoming.recv() => match call {
                Some(call) => {
                    tasks.spawn(inbound::run(call, Arc::clone(&services)));
                }
                None => break,
            },
            Some(task) = spawned.recv() => {
                tasks.spawn(task);
            }
            Some(finished) = tasks.join_next() => {
                if let Err(error) = finished {
                    tracing::error!(%error, "call task failed");
                }
            }
        }
    }
    while let Ok(task) = spawned.try_recv() {
        tasks.spawn(task);
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("call tasks still running at shutdown were stopped");
    }
}
