//! The live calls, by SID: how a message reaches the task of the call it names — a REST
//! update, word from another call (a queue that dequeued it, the call it is bridged with), or
//! from its conference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::metrics::METRICS;
use std::sync::atomic::Ordering;

use super::control::{CallUpdate, ControlError};
use super::queues::QueueMessage;
use super::rooms::RoomMessage;

/// What a live call's task may be told.
#[derive(Debug)]
pub enum CallMessage {
    /// A change asked for through the REST API.
    Update(CallUpdate),
    /// Word from a queue or from the call it is bridged with through a queue.
    Queue(QueueMessage),
    /// Word from the call's conference.
    Room(RoomMessage),
}

impl From<RoomMessage> for CallMessage {
    fn from(message: RoomMessage) -> CallMessage {
        CallMessage::Room(message)
    }
}

impl From<CallUpdate> for CallMessage {
    fn from(update: CallUpdate) -> CallMessage {
        CallMessage::Update(update)
    }
}

impl From<QueueMessage> for CallMessage {
    fn from(message: QueueMessage) -> CallMessage {
        CallMessage::Queue(message)
    }
}

type Live = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<CallMessage>>>>;

/// Live calls and the channel to each one's task (cheap to clone: clones share the calls).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    live: Live,
}

/// Keeps a call registered while its task runs.
#[derive(Debug)]
pub struct Registration {
    live: Live,
    sid: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        METRICS.active_calls.fetch_sub(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.sid);
    }
}

impl Registry {
    /// Registers the call `sid`; messages for it arrive on the returned receiver until the
    /// registration is dropped.
    pub fn register(&self, sid: &str) -> (mpsc::UnboundedReceiver<CallMessage>, Registration) {
        let (sender, receiver) = mpsc::unbounded_channel();
        METRICS.active_calls.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid.to_owned(), sender);
        let registration = Registration {
            live: Arc::clone(&self.live),
            sid: sid.to_owned(),
        };
        (receiver, registration)
    }

    /// Delivers `message` to the live call `sid`.
    pub fn send(&self, sid: &str, message: impl Into<CallMessage>) -> Result<(), ControlError> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = live
            .get(sid)
            .ok_or_else(|| ControlError::NotLive(sid.to_owned()))?;
        sender
            .send(message.into())
            .map_err(|_| ControlError::NotLive(sid.to_owned()))
    }

    /// How many calls are live.
    pub fn len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_registered_calls_until_they_end() {
        let registry = Registry::default();
        let (mut messages, registration) = registry.register("CA1");
        registry.send("CA1", CallUpdate::Complete).unwrap();
        assert!(matches!(
            messages.try_recv().unwrap(),
            CallMessage::Update(CallUpdate::Complete)
        ));
        assert!(matches!(
            registry.send("CA2", CallUpdate::Complete),
            Err(ControlError::NotLive(sid)) if sid == "CA2"
        ));
        drop(registration);
        assert!(registry.is_empty());
        assert!(registry.send("CA1", CallUpdate::Cancel).is_err());
    }
}
