//! Conferences (`<Dial><Conference>`, Twilio's Conferences and Participants API, the Vonage and
//! OpenTok seeds' sessions): the one service every call and the REST API share.
//!
//! Each conference under way is a [`RoomCore`] behind its own lock, and a task
//! ([`task`]) that carries out what the core asks (the mixer, callbacks, prompts, recordings,
//! word to the participants' calls). Callers change a conference by calling the core under its
//! lock; the actions it queues go to its task in order.
//!
//! ```text
//! call: <Dial><Conference name> ─▶ Rooms::join ─▶ the conference of that name under way,
//!   or a new one ─▶ Joined { started } ─▶ (once started) Rooms::lend(media leg) ─▶ mixer
//! REST: Participants.json POST ─▶ Rooms::expect (listed `ringing`) ─▶ an outbound call whose
//!   document is the <Dial><Conference> ─▶ it answers and joins like any call
//! the conference ends ─▶ each participant's media back with Ended ─▶ their <Dial> completes
//! ```
//! Completed conferences are read from the store; participants exist only while their
//! conference is under way, as on Twilio.

pub mod announce;
pub mod monitor;
pub mod room;
mod task;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::mpsc;

use super::Services;
use super::document::Source;
use super::params::RoutedTo;
use super::registry::Registry;
use crate::ids::Sid;
use crate::media::room_engine::{RoomEngine, RoomLeg};
use crate::store::ConferenceRecord;
use room::{
    ChangeError, JoinOutcome, LeftReason, ParticipantChange, ParticipantView, RoomCore, RoomInput,
    SeatNotice, SeatOptions,
};
use task::TaskMessage;

/// Longest conference name (Twilio's).
pub const MAX_NAME_CHARS: usize = 128;

/// What a conference tells one of its participants' calls.
#[derive(Debug)]
pub enum RoomMessage {
    /// A change of the call's place in the conference.
    Notice(SeatNotice),
    /// The call's media leg, back from the mixer, with why.
    MediaBack {
        leg: Box<RoomLeg>,
        notice: SeatNotice,
    },
}

/// Why a conference could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("no conference {0} under way")]
    NoConference(String),
    #[error("the conference name must be 1 to {MAX_NAME_CHARS} characters")]
    BadName,
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("{reason}")]
    Refused { code: u32, reason: String },
    #[error("callml is stopping")]
    Stopping,
}

/// A conference under way: its rules and the channel to its task.
struct Room {
    core: Mutex<RoomCore>,
    task: mpsc::UnboundedSender<TaskMessage>,
}

impl Room {
    fn core(&self) -> MutexGuard<'_, RoomCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `change` on the core, then hands every action it queued to the task, in order.
    fn with<T>(&self, change: impl FnOnce(&mut RoomCore, Instant) -> T) -> T {
        let mut core = self.core();
        let result = change(&mut core, Instant::now());
        while let Some(action) = core.poll_action() {
            let _ = self.task.send(TaskMessage::Act(action));
        }
        result
    }
}

#[derive(Default)]
struct Open {
    by_sid: HashMap<String, Arc<Room>>,
    /// The conference under way of each name (one at a time, as on Twilio).
    by_name: HashMap<String, String>,
}

/// The account's conferences; see the module documentation.
pub struct Rooms {
    account_sid: String,
    engine: RoomEngine,
    registry: Registry,
    open: Mutex<Open>,
    services: OnceLock<Weak<Services>>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl Rooms {
    pub fn new(account_sid: &str, engine: RoomEngine, registry: Registry) -> Arc<Rooms> {
        Arc::new(Rooms {
            account_sid: account_sid.to_owned(),
            engine,
            registry,
            open: Mutex::new(Open::default()),
            services: OnceLock::new(),
        })
    }

    /// Gives the conferences' tasks what they use (set once, when the services exist).
    pub fn attach(&self, services: &Arc<Services>) {
        let _ = self.services.set(Arc::downgrade(services));
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn room(&self, sid: &str) -> Result<Arc<Room>, RoomError> {
        self.open()
            .by_sid
            .get(sid)
            .cloned()
            .ok_or_else(|| RoomError::NoConference(sid.to_owned()))
    }

    /// The conference under way named `name` (or with SID `name`), or a new one of that name.
    fn room_named(self: &Arc<Self>, name: &str) -> Result<Arc<Room>, RoomError> {
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(RoomError::BadName);
        }
        let mut open = self.open();
        if let Some(room) = open.by_sid.get(name) {
            return Ok(Arc::clone(room));
        }
        if let Some(sid) = open.by_name.get(name)
            && let Some(room) = open.by_sid.get(sid)
        {
            return Ok(Arc::clone(room));
        }
        let services = self
            .services
            .get()
            .and_then(Weak::upgrade)
            .ok_or(RoomError::Stopping)?;
        let sid = Sid::new("CF");
        let core = RoomCore::new(
            sid.as_str(),
            &self.account_sid,
            name,
            Instant::now(),
            Utc::now(),
        );
        let (sender, inbox) = mpsc::unbounded_channel();
        let room = Arc::new(Room {
            core: Mutex::new(core),
            task: sender,
        });
        let (events, engine_events) = mpsc::unbounded_channel();
        let handle = self.engine.open(events);
        let task = task::RoomTask::new(
            Arc::clone(&room),
            Arc::clone(self),
            services,
            handle,
            sid.as_str().to_owned(),
            &self.account_sid,
        );
        tokio::spawn(task::run(task, inbox, engine_events));
        open.by_sid
            .insert(sid.as_str().to_owned(), Arc::clone(&room));
        open.by_name
            .insert(name.to_owned(), sid.as_str().to_owned());
        tracing::info!(conference = %sid.as_str(), name, "conference created");
        // The record saved at creation goes to the task with the first change.
        room.with(|_, _| ());
        Ok(room)
    }

    /// The conference is over: it is no longer found by name or SID.
    fn closed(&self, sid: &str) {
        let mut open = self.open();
        open.by_sid.remove(sid);
        open.by_name.retain(|_, s| s != sid);
    }

    /// `<Dial><Conference>` of call `call_sid`.
    pub fn join(
        self: &Arc<Self>,
        name: &str,
        call_sid: &str,
        options: &SeatOptions,
    ) -> JoinOutcome {
        match self.room_named(name) {
            Ok(room) => room.with(|core, now| core.join(call_sid, options, now)),
            Err(error) => JoinOutcome::Refused {
                code: room::CONFERENCE_GONE,
                reason: error.to_string(),
            },
        }
    }

    /// A call placed for the conference `name_or_sid` (REST `Participants.json` POST): the
    /// conference of that name is made when none is under way; a SID must be under way.
    /// Returns the conference's SID and the seed's mapping fields the call carries
    /// ([`RoomCore::mapping`]).
    pub fn expect(
        self: &Arc<Self>,
        name_or_sid: &str,
        call_sid: &str,
        options: &SeatOptions,
    ) -> Result<(String, RoutedTo), RoomError> {
        let room = if name_or_sid.starts_with("CF") && name_or_sid.len() == 34 {
            self.room(name_or_sid)?
        } else {
            self.room_named(name_or_sid)?
        };
        room.with(|core, now| {
            core.expect(call_sid, options, now)
                .map(|()| (core.sid().to_owned(), core.mapping()))
                .map_err(|refused| match refused {
                    JoinOutcome::Refused { code, reason } => RoomError::Refused { code, reason },
                    JoinOutcome::Joined { .. } => RoomError::Stopping,
                })
        })
    }

    /// The call's media leg for the mixer; given back when the conference is over.
    pub fn lend(
        &self,
        conference_sid: &str,
        call_sid: &str,
        leg: Box<RoomLeg>,
    ) -> Result<(), Box<RoomLeg>> {
        let Ok(room) = self.room(conference_sid) else {
            return Err(leg);
        };
        room.task
            .send(TaskMessage::Leg {
                call_sid: call_sid.to_owned(),
                leg,
            })
            .map_err(|refused| match refused.0 {
                TaskMessage::Leg { leg, .. } => leg,
                _ => unreachable!("the message sent was a leg"),
            })
    }

    /// Something that happened to a participant's call.
    pub fn tell(&self, conference_sid: &str, input: RoomInput) {
        if let Ok(room) = self.room(conference_sid) {
            room.with(|core, now| core.handle(input, now));
        }
    }

    /// A participant's call leaves (or its call ended).
    pub fn left(&self, conference_sid: &str, call_sid: &str, reason: LeftReason) {
        self.tell(
            conference_sid,
            RoomInput::Left {
                call_sid: call_sid.to_owned(),
                reason,
            },
        );
    }

    /// The conference `sid`, under way or over.
    pub async fn conference(&self, sid: &str) -> Option<ConferenceRecord> {
        if let Ok(room) = self.room(sid) {
            return Some(room.core().record().clone());
        }
        let services = self.services.get().and_then(Weak::upgrade)?;
        services.store.conference(sid).await.ok().flatten()
    }

    /// The participants of the conference `sid` under way.
    pub fn participants(&self, sid: &str) -> Result<Vec<ParticipantView>, RoomError> {
        Ok(self.room(sid)?.core().participants())
    }

    /// The participant with this call SID or label.
    pub fn participant(&self, sid: &str, key: &str) -> Result<ParticipantView, RoomError> {
        self.room(sid)?
            .core()
            .participant(key)
            .ok_or_else(|| ChangeError::NoParticipant(key.to_owned()).into())
    }

    /// REST `Participants/{CallSid}.json` POST.
    pub fn change(
        &self,
        sid: &str,
        key: &str,
        change: ParticipantChange,
    ) -> Result<ParticipantView, RoomError> {
        Ok(self
            .room(sid)?
            .with(|core, now| core.change(key, change, now))?)
    }

    /// REST `Participants/{CallSid}.json` DELETE.
    pub fn kick(&self, sid: &str, key: &str) -> Result<(), RoomError> {
        Ok(self.room(sid)?.with(|core, now| core.kick(key, now))?)
    }

    /// REST `Conferences/{Sid}.json` POST: `Status=completed` and/or `AnnounceUrl`.
    pub fn update(
        &self,
        sid: &str,
        complete: bool,
        announce: Option<Source>,
    ) -> Result<ConferenceRecord, RoomError> {
        let room = self.room(sid)?;
        Ok(room.with(|core, now| {
            if let Some(source) = announce {
                core.announce(source);
            }
            if complete {
                core.complete(now);
            }
            core.record().clone()
        }))
    }

    /// The seeds' force mute of a session; the calls muted or unmuted.
    pub fn force_mute(
        &self,
        sid: &str,
        active: bool,
        excluded: &[String],
    ) -> Result<Vec<String>, RoomError> {
        Ok(self
            .room(sid)?
            .with(|core, now| core.force_mute(active, excluded, now)))
    }

    /// Keys sent to one participant, or to every participant when `call_sid` is `None` (the
    /// seeds' DTMF requests).
    pub fn send_digits(
        &self,
        sid: &str,
        call_sid: Option<&str>,
        digits: &str,
    ) -> Result<(), RoomError> {
        let room = self.room(sid)?;
        let calls = match call_sid {
            Some(call) => {
                room.core()
                    .participant(call)
                    .ok_or_else(|| ChangeError::NoParticipant(call.to_owned()))?;
                vec![call.to_owned()]
            }
            None => room.core().call_sids(),
        };
        for call in calls {
            let _ = room.task.send(TaskMessage::Digits {
                call_sid: call,
                digits: digits.to_owned(),
            });
        }
        Ok(())
    }

    /// The call of the participant of conference `sid` whose seeds' connection or stream ID
    /// is `key`.
    pub fn linked_call(&self, sid: &str, key: &str) -> Result<String, RoomError> {
        self.room(sid)?
            .core()
            .linked_call(key)
            .map(str::to_owned)
            .ok_or_else(|| ChangeError::NoParticipant(key.to_owned()).into())
    }

    /// The conference under way named `name`, if any.
    pub fn sid_of(&self, name: &str) -> Option<String> {
        self.open().by_name.get(name).cloned()
    }

    /// How many conferences are under way.
    pub fn len(&self) -> usize {
        self.open().by_sid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }
}
