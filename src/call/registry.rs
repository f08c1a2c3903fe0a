//! The live calls, by SID: how a REST update reaches the task of the call it names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::control::{CallUpdate, ControlError};

type Live = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<CallUpdate>>>>;

/// Live calls and the channel to each one's task.
#[derive(Debug, Default)]
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
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.sid);
    }
}

impl Registry {
    /// Registers the call `sid`; updates for it arrive on the returned receiver until the
    /// registration is dropped.
    pub fn register(&self, sid: &str) -> (mpsc::UnboundedReceiver<CallUpdate>, Registration) {
        let (sender, receiver) = mpsc::unbounded_channel();
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

    /// Delivers `update` to the live call `sid`.
    pub fn send(&self, sid: &str, update: CallUpdate) -> Result<(), ControlError> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = live
            .get(sid)
            .ok_or_else(|| ControlError::NotLive(sid.to_owned()))?;
        sender
            .send(update)
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
    fn updates_reach_registered_calls_until_they_end() {
        let registry = Registry::default();
        let (mut updates, registration) = registry.register("CA1");
        registry.send("CA1", CallUpdate::Complete).unwrap();
        assert_eq!(updates.try_recv().unwrap(), CallUpdate::Complete);
        assert!(matches!(
            registry.send("CA2", CallUpdate::Complete),
            Err(ControlError::NotLive(sid)) if sid == "CA2"
        ));
        drop(registration);
        assert!(registry.is_empty());
        assert!(registry.send("CA1", CallUpdate::Cancel).is_err());
    }
}
