//! Calls: one task per call (`docs/architecture.md`, principle 4). Each call's state machine
//! is a sans-IO [`core::CallCore`]; its task is a [`driver`] that feeds it and carries out
//! what it asks. [`inbound`] and [`outbound`] start calls; the rest are the pieces they share:
//! how a leg ends ([`ending`]), who a dialled leg rings ([`party`]) and in which order a
//! `<Sip>`'s URIs are tried ([`failover`]), documents ([`document`]),
//! request parameters ([`params`]), status callbacks ([`progress`]), recordings
//! ([`recording`]), media setup ([`media`]) and bridging ([`bridge`]), speech input
//! ([`speech`]), prompts ([`verbs`]), live calls for the REST API ([`registry`], [`control`]),
//! call queues ([`queues`]), conferences ([`rooms`]), and what every call shares
//! ([`services`]).
//!
//! Imports go one way: `inbound`/`outbound` → `driver` → `core` → the shared pieces.

pub mod bridge;
pub mod cascade;
pub mod control;
pub mod core;
pub mod document;
pub mod driver;
pub mod ending;
pub mod failover;
pub mod hosted;
pub mod inbound;
pub mod mapping;
pub mod media;
pub mod outbound;
pub mod pacing;
pub mod params;
pub mod party;
pub mod progress;
pub mod queues;
pub mod recording;
pub mod recovery;
pub mod registry;
pub mod rooms;
pub mod routing;
pub mod services;
pub mod speech;
pub mod verbs;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::transport::IncomingCall;
use control::BoxFuture;
pub use services::Services;

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
