//! A conference's task: it carries out the actions of its [`RoomCore`] (queued under the
//! room's lock by whoever changed it, and handed here in order) and turns what happens —
//! participants' media arriving, the mixer's events, prompts loaded, recordings started —
//! into the core's inputs. One task per conference, one loop, one `select!`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::announce;
use super::room::{PromptSource, RoomAction, RoomInput, SeatNotice};
use super::{Room, RoomMessage, Rooms};
use crate::call::Services;
use crate::call::control::CallUpdate;
use crate::call::recording::{CallRecording, RecordingSpec};
use crate::config::HttpMethod;
use crate::markup::ast::RecordingStatusCallback;
use crate::media::library::Audio;
use crate::media::record::{Recorder, RecordingChannels};
use crate::media::room_engine::{Listeners, ParticipantId, RoomEvent, RoomHandle, RoomLeg};
use crate::store::RecordingSource;
use crate::webhook::CallbackQueue;

/// How long the conference's status callbacks still queued may take once it is over.
const CALLBACK_DRAIN: Duration = Duration::from_secs(30);

/// What reaches a conference's task.
pub(super) enum TaskMessage {
    /// An action of the core, in the order it was queued.
    Act(RoomAction),
    /// A participant's media leg, for the mixer.
    Leg { call_sid: String, leg: Box<RoomLeg> },
    /// Keys for a participant (the seeds' DTMF requests).
    Digits { call_sid: String, digits: String },
}

/// What a job of the task ends with.
enum Job {
    Input(RoomInput),
    Prompt {
        prompt: u64,
        to: Listeners,
        audio: Audio,
    },
    RecordingStarted(Box<(CallRecording, Recorder)>),
    Nothing,
}

/// A conference's task; see the module documentation.
pub(super) struct RoomTask {
    room: Arc<Room>,
    rooms: Weak<Rooms>,
    services: Arc<Services>,
    engine: RoomHandle,
    sid: String,
    account_sid: String,
    /// Media legs received, not (yet) in the mixer.
    legs: HashMap<String, Box<RoomLeg>>,
    /// The mixer's participant of each call in it.
    ids: HashMap<String, ParticipantId>,
    callbacks: Option<(String, CallbackQueue)>,
    /// The seeds' monitoring events, to `--room-callback`.
    monitor: Option<CallbackQueue>,
    recording: Option<CallRecording>,
    jobs: JoinSet<Job>,
    done: bool,
}

impl RoomTask {
    pub(super) fn new(
        room: Arc<Room>,
        rooms: Arc<Rooms>,
        services: Arc<Services>,
        engine: RoomHandle,
        sid: String,
        account_sid: &str,
    ) -> RoomTask {
        RoomTask {
            room,
            rooms: Arc::downgrade(&rooms),
            services,
            engine,
            sid,
            account_sid: account_sid.to_owned(),
            legs: HashMap::new(),
            ids: HashMap::new(),
            callbacks: None,
            monitor: None,
            recording: None,
            jobs: JoinSet::new(),
            done: false,
        }
    }

    /// Hands `input` to the core; the actions it queues come back through the inbox.
    fn input(&self, input: RoomInput) {
        self.room.with(|core, now| core.handle(input, now));
    }

    async fn act(&mut self, action: RoomAction) {
        match action {
            RoomAction::Notify { call_sid, notice } => self.tell(&call_sid, notice),
            RoomAction::Mix {
                call_sid,
                id,
                settings,
            } => {
                let Some(leg) = self.legs.remove(&call_sid) else {
                    return;
                };
                match self.engine.join(id, *leg, settings) {
                    Ok(()) => {
                        tracing::debug!(conference = %self.sid, call_sid = %call_sid, "participant's media in the mixer");
                        self.ids.insert(call_sid, id);
                    }
                    Err(refused) => {
                        tracing::error!(conference = %self.sid, call_sid = %call_sid, %refused, "the mixer refused a participant's media");
                        self.give_back(&call_sid, Box::new(refused.into_leg()), SeatNotice::Ended);
                        self.input(RoomInput::Left {
                            call_sid,
                            reason: super::room::LeftReason::Kicked,
                        });
                    }
                }
            }
            RoomAction::Settings { id, settings } => self.engine.update(id, settings),
            RoomAction::Unmix {
                call_sid,
                id,
                notice,
            } => {
                self.ids.remove(&call_sid);
                match self.engine.leave(id).await {
                    Ok(leg) => match notice {
                        Some(notice) => self.give_back(&call_sid, Box::new(leg), notice),
                        None => drop(leg),
                    },
                    Err(error) => {
                        tracing::error!(conference = %self.sid, call_sid = %call_sid, %error, "a participant's media could not be taken back");
                        if notice.is_some() {
                            self.tell(&call_sid, SeatNotice::Ended);
                        }
                    }
                }
            }
            RoomAction::GiveBack { call_sid, notice } => {
                if let Some(leg) = self.legs.remove(&call_sid) {
                    self.give_back(&call_sid, leg, notice);
                }
            }
            RoomAction::Play { prompt, source, to } => self.load_prompt(prompt, source, to),
            RoomAction::Cancel { call_sid } => {
                let _ = self
                    .rooms
                    .upgrade()
                    .map(|rooms| rooms.registry().send(&call_sid, CallUpdate::Cancel));
            }
            RoomAction::StartRecording {
                trim_silence,
                status_callback,
            } => self.start_recording(trim_silence, status_callback),
            RoomAction::StopRecording => {
                if let Some(recording) = self.recording.take()
                    && let Some(recorder) = self.engine.stop_recording().await
                {
                    recording.finish(recorder).await;
                }
            }
            RoomAction::Callback { target, params } => {
                let queue = self.callbacks.get_or_insert_with(|| {
                    (
                        target.url.clone(),
                        CallbackQueue::spawn(
                            self.services.webhooks.clone(),
                            target.url.clone(),
                            target.method,
                        ),
                    )
                });
                queue.1.push(params);
            }
            RoomAction::Monitor { body } => {
                let Some(url) = &self.services.config.room_callback else {
                    return;
                };
                let queue = self.monitor.get_or_insert_with(|| {
                    CallbackQueue::spawn(
                        self.services.webhooks.clone(),
                        url.clone(),
                        HttpMethod::Post,
                    )
                });
                queue.push_json(body);
            }
            RoomAction::Save(record) => {
                if let Err(error) = self.services.store.save_conference(&record).await {
                    tracing::error!(conference = %self.sid, %error, "could not save the conference record");
                }
            }
            RoomAction::Done => self.done = true,
        }
    }

    /// Word to a participant's call (gone calls are not told).
    fn tell(&self, call_sid: &str, notice: SeatNotice) {
        if let Some(rooms) = self.rooms.upgrade() {
            let _ = rooms.registry().send(call_sid, RoomMessage::Notice(notice));
        }
    }

    fn give_back(&self, call_sid: &str, leg: Box<RoomLeg>, notice: SeatNotice) {
        if let Some(rooms) = self.rooms.upgrade() {
            let _ = rooms
                .registry()
                .send(call_sid, RoomMessage::MediaBack { leg, notice });
        }
    }

    fn load_prompt(&mut self, prompt: u64, source: PromptSource, to: Listeners) {
        let services = Arc::clone(&self.services);
        self.jobs.spawn(async move {
            let audio = match source {
                PromptSource::Beep => Ok(announce::beep()),
                PromptSource::MuteMessage { muted } => services
                    .audio
                    .fetch(announce::mute_message_url(muted))
                    .await
                    .map_err(|e| e.to_string()),
                PromptSource::Announcement(source) => announce::render(&services, &source).await,
            };
            match audio {
                Ok(audio) => Job::Prompt { prompt, to, audio },
                Err(reason) => Job::Input(RoomInput::PromptFailed { prompt, reason }),
            }
        });
    }

    fn start_recording(&mut self, trim_silence: bool, status_callback: RecordingStatusCallback) {
        let services = Arc::clone(&self.services);
        let account_sid = self.account_sid.clone();
        let sid = self.sid.clone();
        self.jobs.spawn(async move {
            let spec = RecordingSpec {
                source: RecordingSource::Conference,
                channels: RecordingChannels::Mixed,
                trim_silence,
                status_callback,
            };
            match CallRecording::start_for_conference(&services, &account_sid, &sid, spec).await
            {
                Ok(started) => Job::RecordingStarted(Box::new(started)),
                Err(error) => {
                    tracing::error!(conference = %sid, %error, "the conference recording could not start");
                    Job::Nothing
                }
            }
        });
    }

    fn on_job(&mut self, job: Job) {
        match job {
            Job::Input(input) => self.input(input),
            Job::Prompt { prompt, to, audio } => self.engine.play(to, audio, prompt),
            Job::RecordingStarted(started) => {
                let (recording, recorder) = *started;
                self.engine.record(recorder);
                self.recording = Some(recording);
            }
            Job::Nothing => {}
        }
    }

    fn on_engine(&mut self, event: RoomEvent) {
        let input = match event {
            RoomEvent::Digit { participant, digit } => RoomInput::Digit {
                id: participant,
                digit,
                rfc4733: true,
            },
            RoomEvent::DigitsSent { .. } => return,
            RoomEvent::Speaking {
                participant,
                speaking,
            } => RoomInput::Speaking {
                id: participant,
                speaking,
            },
            RoomEvent::PromptDone { prompt } => RoomInput::PromptDone { prompt },
            RoomEvent::Inactive {
                participant,
                silent_for,
            } => RoomInput::Inactive {
                id: participant,
                silent_for,
            },
            RoomEvent::SocketLost { participant } => RoomInput::MediaLost { id: participant },
        };
        self.input(input);
    }

    /// The conference is over: whatever media still arrives goes back; callbacks drain.
    async fn finish(mut self, mut inbox: mpsc::UnboundedReceiver<TaskMessage>) {
        if let Some(rooms) = self.rooms.upgrade() {
            rooms.closed(&self.sid);
        }
        inbox.close();
        while let Some(message) = inbox.recv().await {
            if let TaskMessage::Leg { call_sid, leg, .. } = message {
                self.give_back(&call_sid, leg, SeatNotice::Ended);
            }
        }
        for (call_sid, leg) in std::mem::take(&mut self.legs) {
            self.give_back(&call_sid, leg, SeatNotice::Ended);
        }
        if let Some(recording) = self.recording.take()
            && let Some(recorder) = self.engine.stop_recording().await
        {
            recording.finish(recorder).await;
        }
        for (_, leg) in self.engine.close().await {
            drop(leg);
        }
        if let Some((_, queue)) = self.callbacks.take() {
            queue.finish(CALLBACK_DRAIN).await;
        }
        if let Some(queue) = self.monitor.take() {
            queue.finish(CALLBACK_DRAIN).await;
        }
        tracing::info!(conference = %self.sid, "conference over");
    }
}

/// The task's loop.
pub(super) async fn run(
    mut task: RoomTask,
    mut inbox: mpsc::UnboundedReceiver<TaskMessage>,
    mut engine_events: mpsc::UnboundedReceiver<RoomEvent>,
) {
    while !task.done {
        tokio::select! {
            message = inbox.recv() => match message {
                Some(TaskMessage::Act(action)) => task.act(action).await,
                Some(TaskMessage::Leg { call_sid, leg }) => {
                    task.legs.insert(call_sid.clone(), leg);
                    task.input(RoomInput::MediaArrived { call_sid });
                }
                Some(TaskMessage::Digits { call_sid, digits }) => {
                    if let Some(id) = task.ids.get(&call_sid) {
                        task.engine.send_digits(*id, digits);
                    }
                }
                None => break,
            },
            Some(event) = engine_events.recv() => task.on_engine(event),
            Some(Ok(job)) = task.jobs.join_next() => task.on_job(job),
        }
    }
    task.finish(inbox).await;
}
