//! One conference's rules, sans-IO: who is in it and in what state, when it starts and ends,
//! who hears whom (muted, held, coaching), beeps, announcements, its recording, and every
//! status callback in order with its sequence number. The room's task
//! ([`super::task`]) and the callers of [`super::Rooms`] (call tasks, the REST API) feed it
//! [`RoomInput`]s or call its methods under the room's lock, and carry out the
//! [`RoomAction`]s it queues; time comes in as `now`.
//!
//! Twilio's rules (<https://www.twilio.com/docs/voice/twiml/conference>):
//! ```text
//! a participant joins ─▶ waits (its wait music, with its own call) until the room starts:
//!   two participants present, one of them with startConferenceOnEnter ─▶ conference-start,
//!   everyone's media goes to the mixer, the beep
//! in the room: muted (heard by nobody) │ held (its media back with its call: hold music,
//!   hears nobody) │ coaching (heard only by the call it coaches) │ announcements
//! it leaves (hangs up, `*`, timeLimit, a redirect, kicked) ─▶ participant-leave, the beep;
//!   endConferenceOnExit or the last one ─▶ conference-end: everyone's <Dial> completes
//! REST Status=completed ─▶ conference-end (conference-ended-via-api)
//! ```
//! The first participant to join sets the conference's status callback, its events, its
//! recording and `maxParticipants`.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::monitor::{self, CallState, MonitorEvent, SessionLink};
use crate::call::document::Source;
pub use crate::call::ending::Clearing;
use crate::call::params::RoutedTo;
use crate::markup::ast::{ConferenceBeep, ConferenceEvent, KeywordSet, RecordingStatusCallback};
use crate::media::room_engine::{Listeners, ParticipantId, ParticipantSettings};
use crate::store::{ConferenceRecord, ConferenceStatus};

/// Twilio's "Conference is full".
pub const CONFERENCE_FULL: u32 = 16020;
/// Twilio's "Dial->Conference: Participant label is in use by another participant".
pub const LABEL_IN_USE: u32 = 16025;
/// Twilio's "Participant label is in use by another participant" (REST).
pub const LABEL_IN_USE_API: u32 = 16026;
/// Twilio's "Participant to be whispered is on hold".
pub const COACHED_ON_HOLD: u32 = 16027;
/// Twilio's "Participant to be whispered is not present in the conference".
pub const COACHED_ABSENT: u32 = 16028;
/// Twilio's "Conference does not exist or is completed".
pub const CONFERENCE_GONE: u32 = 16022;

/// What a participant asks for when it joins (`<Conference>` attributes, or the REST
/// Participant's parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct SeatOptions {
    pub label: Option<String>,
    pub muted: bool,
    pub beep: ConferenceBeep,
    pub start_on_enter: bool,
    pub end_on_exit: bool,
    /// The call SID this participant coaches.
    pub coach: Option<String>,
    pub max_participants: u32,
    /// `record-from-start`.
    pub record: bool,
    pub trim_silence: bool,
    /// The conference's status callback (absolute URL) and method.
    pub status_callback: Option<Source>,
    pub events: KeywordSet<ConferenceEvent>,
    pub recording_status_callback: RecordingStatusCallback,
    /// The seeds' `observeForceMute`: a force mute applies to it, and `*6` toggles its mute.
    pub observe_force_mute: bool,
    /// Dialled through the seeds' session API: its steps are reported to the room callback.
    pub link: Option<SessionLink>,
    /// The application a mapped call taking the seat runs (the seed's `ApplicationId`): the
    /// room keeps the first one, for the participants it calls.
    pub application_id: Option<String>,
}

impl Default for SeatOptions {
    fn default() -> Self {
        SeatOptions {
            label: None,
            muted: false,
            beep: ConferenceBeep::True,
            start_on_enter: true,
            end_on_exit: false,
            coach: None,
            max_participants: 250,
            record: false,
            trim_silence: true,
            status_callback: None,
            events: KeywordSet::empty(),
            recording_status_callback: RecordingStatusCallback::default(),
            observe_force_mute: false,
            link: None,
            application_id: None,
        }
    }
}

/// Where a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatState {
    /// Added through the REST API; its call is being placed.
    Ringing,
    /// In, before the conference started: its call plays its wait music.
    Waiting,
    /// Its media is on its way to the mixer.
    Joining,
    /// Its media is in the mixer.
    Mixed,
    /// Held: its media is back with its call (hold music).
    Held,
}

/// A participant as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantView {
    pub call_sid: String,
    pub label: Option<String>,
    pub muted: bool,
    pub hold: bool,
    pub coaching: bool,
    pub call_sid_to_coach: Option<String>,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// Twilio's participant status: `ringing` (being called) or `connected`.
    pub status: &'static str,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// What a joining call hears back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// In; `started`: its media goes to the mixer now; otherwise it waits.
    Joined {
        conference_sid: String,
        started: bool,
    },
    /// Refused with Twilio's code: [`CONFERENCE_FULL`], [`LABEL_IN_USE`].
    Refused { code: u32, reason: String },
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// Its call hung up, for this reason.
    HungUp(Clearing),
    /// It left by itself and its call goes on (`*` with hangupOnStar, timeLimit, a redirect).
    Left,
    /// Removed through the REST API.
    Kicked,
    /// A call placed for the conference that was never answered; `status` is its final
    /// status (`busy`, `no-answer`, `failed`, `canceled`), `clearing` why.
    NotAnswered {
        status: &'static str,
        clearing: Clearing,
    },
}

/// What the room tells one of its participants' calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatNotice {
    /// The conference started: lend your media to the mixer.
    Started,
    /// You are held: your media comes back (with this notice); play `music` (a hold
    /// document's source, or the built-in music when `None`).
    Held { music: Option<Source> },
    /// You are no longer held: lend your media again.
    Resumed,
    /// The conference ended, or you were removed: your `<Dial>` is over.
    Ended,
    /// A key you pressed in the mixer (for `hangupOnStar`).
    Digit(char),
    /// The mixer heard nothing from you for this long: your call ends (32014).
    Inactive { silent_for: std::time::Duration },
}

/// A change to a participant through the REST API (`Participants/{CallSid}.json` POST).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantChange {
    pub muted: Option<bool>,
    pub hold: Option<bool>,
    pub hold_music: Option<Source>,
    pub announce: Option<Source>,
    pub beep_on_exit: Option<bool>,
    pub end_on_exit: Option<bool>,
    pub coaching: Option<bool>,
    pub call_sid_to_coach: Option<String>,
}

/// Why a REST change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no participant {0} in this conference")]
    NoParticipant(String),
    #[error("the participant to coach is not in the conference")]
    CoachedAbsent,
    #[error("the participant to coach is on hold")]
    CoachedOnHold,
    #[error("Coaching=true needs CallSidToCoach")]
    CoachWithoutTarget,
    #[error("the conference is over")]
    Completed,
}

impl ChangeError {
    /// Twilio's code for it.
    pub fn code(&self) -> u32 {
        match self {
            ChangeError::NoParticipant(_) => 20404,
            ChangeError::CoachedAbsent => COACHED_ABSENT,
            ChangeError::CoachedOnHold => COACHED_ON_HOLD,
            ChangeError::CoachWithoutTarget => 16002,
            ChangeError::Completed => CONFERENCE_GONE,
        }
    }
}

/// Why the conference ended (Twilio's `ReasonConferenceEnded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    ViaApi,
    EndOnExitLeft,
    EndOnExitKicked,
    LastLeft,
    LastKicked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ViaApi => "conference-ended-via-api",
            EndReason::EndOnExitLeft => "participant-with-end-conference-on-exit-left",
            EndReason::EndOnExitKicked => "participant-with-end-conference-on-exit-kicked",
            EndReason::LastLeft => "last-participant-left",
            EndReason::LastKicked => "last-participant-kicked",
        }
    }

    /// `ReasonParticipantLeft` of those still in the room when it ends.
    fn participant_reason(self) -> &'static str {
        match self {
            EndReason::ViaApi => "conference_ended_via_api",
            _ => "moderator_ended_conference",
        }
    }

    fn message(self) -> &'static str {
        match self {
            EndReason::ViaApi => "Conference ended via API",
            EndReason::EndOnExitLeft | EndReason::EndOnExitKicked => {
                "Participant with endConferenceOnExit left the conference"
            }
            EndReason::LastLeft | EndReason::LastKicked => "Last participant left the conference",
        }
    }
}

/// What the room needs from the outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    /// The notification beep.
    Beep,
    /// An announcement (`AnnounceUrl`): audio, or a document of Play/Say/Pause/Redirect.
    Announcement(Source),
    /// The seeds' force-mute message (`muted`) or its end.
    MuteMessage { muted: bool },
}

/// What the room asks its task to do.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomAction {
    /// Tell a participant's call.
    Notify {
        call_sid: String,
        notice: SeatNotice,
    },
    /// Put the media the task holds for `call_sid` into the mixer.
    Mix {
        call_sid: String,
        id: ParticipantId,
        settings: ParticipantSettings,
    },
    /// Change who hears a participant.
    Settings {
        id: ParticipantId,
        settings: ParticipantSettings,
    },
    /// Take a participant's media out of the mixer and give it back to its call with
    /// `notice` (none when its call has hung up: the media is closed).
    Unmix {
        call_sid: String,
        id: ParticipantId,
        notice: Option<SeatNotice>,
    },
    /// Give the media the task holds for `call_sid` (never mixed) back to its call.
    GiveBack {
        call_sid: String,
        notice: SeatNotice,
    },
    /// Load audio and play it to `to`; [`RoomInput::PromptLoaded`] then
    /// [`RoomInput::PromptDone`] with `prompt`.
    Play {
        prompt: u64,
        source: PromptSource,
        to: Listeners,
    },
    /// End a call placed for the conference that has not answered yet.
    Cancel { call_sid: String },
    /// Start recording the mix (`record-from-start`).
    StartRecording {
        trim_silence: bool,
        status_callback: RecordingStatusCallback,
    },
    /// Close the recording.
    StopRecording,
    /// A seeds' monitoring event (JSON) for the room callback URL.
    Monitor { body: String },
    /// A conference status callback, if the conference has one and subscribed to the event.
    Callback {
        target: Source,
        params: Vec<(String, String)>,
    },
    /// Write the conference's record.
    Save(ConferenceRecord),
    /// The conference is over and every participant's media is out of the mixer.
    Done,
}

/// What happens to the room, besides the methods.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomInput {
    /// A participant's media reached the task ([`RoomAction::Mix`] follows when it should
    /// be mixed).
    MediaArrived { call_sid: String },
    /// A participant left by itself, or its call ended.
    Left {
        call_sid: String,
        reason: LeftReason,
    },
    /// A call placed for the conference rings (its first 18x).
    Ringing { call_sid: String },
    /// A participant's phone holds the call (`sendonly`/`inactive`), or stopped holding.
    FarEndHold { call_sid: String, holding: bool },
    /// A key from a participant in the mixer; `rfc4733`: it came as an RFC 4733 event (only
    /// those toggle the seeds' `*6` mute).
    Digit {
        id: ParticipantId,
        digit: char,
        rfc4733: bool,
    },
    /// A participant started or stopped speaking.
    Speaking { id: ParticipantId, speaking: bool },
    /// The prompt of [`RoomAction::Play`] could not be loaded (it will not play).
    PromptFailed { prompt: u64, reason: String },
    /// The prompt finished playing.
    PromptDone { prompt: u64 },
    /// The mixer could not serve a participant's media: it is taken out.
    MediaLost { id: ParticipantId },
    /// The mixer heard nothing from a participant for its media timeout.
    Inactive {
        id: ParticipantId,
        silent_for: std::time::Duration,
    },
}

#[derive(Debug, Clone)]
struct Seat {
    id: ParticipantId,
    call_sid: String,
    label: Option<String>,
    muted: bool,
    beep: ConferenceBeep,
    start_on_enter: bool,
    end_on_exit: bool,
    coaching: Option<String>,
    observe_force_mute: bool,
    state: SeatState,
    held: bool,
    hold_music: Option<Source>,
    /// Its phone holds the call: nothing is sent to it.
    far_end_holding: bool,
    /// The last RFC 4733 key, for the seeds' `*6`.
    last_digit: Option<char>,
    link: Option<SessionLink>,
    date_created: DateTime<Utc>,
    date_updated: DateTime<Utc>,
}

/// The settings fixed by the first participant.
#[derive(Debug, Clone)]
struct FirstSettings {
    status_callback: Option<Source>,
    events: KeywordSet<ConferenceEvent>,
    max_participants: u32,
    record: bool,
    trim_silence: bool,
    recording_status_callback: RecordingStatusCallback,
}

/// What a prompt under way is for.
#[derive(Debug, Clone, PartialEq)]
enum PromptUse {
    Beep,
    /// An announcement; `to` is the participant's call for a participant's one.
    Announcement {
        url: String,
        to: Option<String>,
    },
    MuteMessage,
}

/// Wall-clock time from `now`.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    wall: DateTime<Utc>,
}

impl WallClock {
    fn at(&self, now: Instant) -> DateTime<Utc> {
        self.wall
            + chrono::Duration::from_std(now.saturating_duration_since(self.at)).unwrap_or_default()
    }
}

/// One conference; see the module documentation.
#[derive(Debug)]
pub struct RoomCore {
    record: ConferenceRecord,
    clock: WallClock,
    seats: Vec<Seat>,
    next_id: u64,
    first: Option<FirstSettings>,
    sequence: u32,
    next_prompt: u64,
    prompts: Vec<(u64, PromptUse)>,
    recording: bool,
    /// Participants whose media is out of the mixer waiting for the end to complete.
    ending: Option<EndReason>,
    /// The application of the first mapped call seated ([`SeatOptions::application_id`]).
    application_id: Option<String>,
    out: VecDeque<RoomAction>,
}

impl RoomCore {
    /// A new conference named `friendly_name`, not started; its record is saved at once.
    pub fn new(
        sid: &str,
        account_sid: &str,
        friendly_name: &str,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> RoomCore {
        let record = ConferenceRecord::new(sid, account_sid, friendly_name, wall);
        let mut room = RoomCore {
            record,
            clock: WallClock { at: now, wall },
            seats: Vec::new(),
            next_id: 0,
            first: None,
            sequence: 0,
            next_prompt: 0,
            prompts: Vec::new(),
            recording: false,
            ending: None,
            application_id: None,
            out: VecDeque::new(),
        };
        room.save();
        room
    }

    pub fn sid(&self) -> &str {
        &self.record.sid
    }

    /// The seed's mapping fields of a call placed for this room: its channel (the room's
    /// name) and the application of the first mapped call seated.
    pub fn mapping(&self) -> RoutedTo {
        RoutedTo {
            application_id: self.application_id.clone().unwrap_or_default(),
            channel_id: self.record.friendly_name.clone(),
            user_id: None,
        }
    }

    pub fn friendly_name(&self) -> &str {
        &self.record.friendly_name
    }

    /// The conference as its record shows it now.
    pub fn record(&self) -> &ConferenceRecord {
        &self.record
    }

    pub fn is_completed(&self) -> bool {
        self.record.status == ConferenceStatus::Completed
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<RoomAction> {
        self.out.pop_front()
    }

    /// The participants, in the order they joined.
    pub fn participants(&self) -> Vec<ParticipantView> {
        self.seats.iter().map(view).collect()
    }

    /// The participant with this call SID or label.
    pub fn participant(&self, key: &str) -> Option<ParticipantView> {
        self.seat_by_key(key).map(|i| view(&self.seats[i]))
    }

    /// The call of the participant dialled through the seeds' session API whose connection
    /// or stream is `key`.
    pub fn linked_call(&self, key: &str) -> Option<&str> {
        self.seats
            .iter()
            .find(|s| {
                s.link
                    .as_ref()
                    .is_some_and(|l| l.connection_id == key || l.stream_id == key)
            })
            .map(|s| s.call_sid.as_str())
    }

    /// The call SIDs of the participants.
    pub fn call_sids(&self) -> Vec<String> {
        self.seats.iter().map(|s| s.call_sid.clone()).collect()
    }

    /// A call placed for the conference (REST `Participants.json` POST): listed as `ringing`
    /// until it answers and joins, or until [`LeftReason::NotAnswered`].
    pub fn expect(
        &mut self,
        call_sid: &str,
        options: &SeatOptions,
        now: Instant,
    ) -> Result<(), JoinOutcome> {
        self.check_room_for(options)?;
        self.fix_first(options);
        let seat = self.new_seat(call_sid, options, SeatState::Ringing, now);
        self.monitor(&seat, MonitorEvent::Created, now);
        self.monitor(&seat, MonitorEvent::Updated(CallState::Dialing), now);
        self.seats.push(seat);
        Ok(())
    }

    /// A call's `<Dial><Conference>`: it joins, or is refused.
    pub fn join(&mut self, call_sid: &str, options: &SeatOptions, now: Instant) -> JoinOutcome {
        if self.is_completed() || self.ending.is_some() {
            return JoinOutcome::Refused {
                code: CONFERENCE_GONE,
                reason: "the conference is over".into(),
            };
        }
        if self.application_id.is_none() {
            self.application_id.clone_from(&options.application_id);
        }
        let expected = self
            .seats
            .iter()
            .position(|s| s.call_sid == call_sid && s.state == SeatState::Ringing);
        let index = match expected {
            Some(index) => {
                let seat = &mut self.seats[index];
                seat.state = SeatState::Waiting;
                seat.date_updated = self.clock.at(now);
                index
            }
            None => {
                if let Err(refused) = self.check_room_for(options) {
                    return refused;
                }
                self.fix_first(options);
                let seat = self.new_seat(call_sid, options, SeatState::Waiting, now);
                self.seats.push(seat);
                self.seats.len() - 1
            }
        };
        self.participant_event(ConferenceEvent::Join, "participant-join", index, &[], now);
        let seat = self.seats[index].clone();
        self.monitor(&seat, MonitorEvent::Updated(CallState::Active), now);
        let started = self.record.status == ConferenceStatus::InProgress;
        if started {
            self.seats[index].state = SeatState::Joining;
            if self.seats[index].beep.on_enter() {
                self.play(PromptSource::Beep, Listeners::All, PromptUse::Beep);
            }
        } else {
            self.maybe_start(now);
        }
        JoinOutcome::Joined {
            conference_sid: self.record.sid.clone(),
            started: self
                .seats
                .get(index)
                .is_some_and(|s| s.state == SeatState::Joining),
        }
    }

    /// REST `Participants/{CallSid}.json` POST.
    pub fn change(
        &mut self,
        key: &str,
        change: ParticipantChange,
        now: Instant,
    ) -> Result<ParticipantView, ChangeError> {
        if self.is_completed() {
            return Err(ChangeError::Completed);
        }
        let index = self
            .seat_by_key(key)
            .ok_or_else(|| ChangeError::NoParticipant(key.to_owned()))?;
        let coaching = match (change.coaching, &change.call_sid_to_coach) {
            (Some(false), _) => Some(None),
            (_, Some(target)) => Some(Some(self.coachable(target)?)),
            (Some(true), None) => match &self.seats[index].coaching {
                Some(target) => Some(Some(self.coachable(target)?)),
                None => return Err(ChangeError::CoachWithoutTarget),
            },
            (None, None) => None,
        };
        let mut modified = false;
        let seat = &mut self.seats[index];
        seat.date_updated = self.clock.at(now);
        if let Some(beep) = change.beep_on_exit {
            seat.beep = match (seat.beep.on_enter(), beep) {
                (true, true) => ConferenceBeep::True,
                (true, false) => ConferenceBeep::OnEnter,
                (false, true) => ConferenceBeep::OnExit,
                (false, false) => ConferenceBeep::False,
            };
            modified = true;
        }
        if let Some(end) = change.end_on_exit {
            seat.end_on_exit = end;
            modified = true;
        }
        if let Some(coaching) = coaching {
            seat.coaching = coaching;
            modified = true;
        }
        if let Some(music) = change.hold_music {
            seat.hold_music = Some(music);
        }
        if let Some(muted) = change.muted
            && muted != self.seats[index].muted
        {
            self.seats[index].muted = muted;
            let event = if muted {
                "participant-mute"
            } else {
                "participant-unmute"
            };
            self.participant_event(ConferenceEvent::Mute, event, index, &[], now);
        }
        if let Some(hold) = change.hold
            && hold != self.seats[index].held
        {
            self.set_hold(index, hold, now);
        }
        if modified {
            self.participant_event(
                ConferenceEvent::Modify,
                "participant-modify",
                index,
                &[],
                now,
            );
        }
        self.refresh_settings();
        if let Some(source) = change.announce {
            let call_sid = self.seats[index].call_sid.clone();
            let id = self.seats[index].id;
            self.play(
                PromptSource::Announcement(source.clone()),
                Listeners::One(id),
                PromptUse::Announcement {
                    url: source.url,
                    to: Some(call_sid),
                },
            );
        }
        Ok(view(&self.seats[index]))
    }

    /// REST `Conferences/{Sid}.json` POST `AnnounceUrl`: everyone hears it.
    pub fn announce(&mut self, source: Source) {
        self.play(
            PromptSource::Announcement(source.clone()),
            Listeners::All,
            PromptUse::Announcement {
                url: source.url,
                to: None,
            },
        );
    }

    /// REST `Status=completed`.
    pub fn complete(&mut self, now: Instant) {
        self.end(EndReason::ViaApi, None, now);
    }

    /// REST `Participants/{CallSid}.json` DELETE, or a force hang-up: the participant is
    /// removed and its `<Dial>` completes.
    pub fn kick(&mut self, key: &str, now: Instant) -> Result<(), ChangeError> {
        let index = self
            .seat_by_key(key)
            .ok_or_else(|| ChangeError::NoParticipant(key.to_owned()))?;
        let call_sid = self.seats[index].call_sid.clone();
        self.leave(&call_sid, LeftReason::Kicked, now);
        Ok(())
    }

    /// The seeds' force mute: every participant that observes it, but those in `excluded`,
    /// is muted (`active`) or unmuted, and hears the message. Returns the calls affected.
    pub fn force_mute(&mut self, active: bool, excluded: &[String], now: Instant) -> Vec<String> {
        let affected: Vec<usize> = (0..self.seats.len())
            .filter(|&i| {
                let seat = &self.seats[i];
                seat.observe_force_mute
                    && seat.muted != active
                    && !excluded.contains(&seat.call_sid)
            })
            .collect();
        for &index in &affected {
            self.set_muted_with_message(index, active, now);
            if active {
                let seat = self.seats[index].clone();
                self.monitor(&seat, MonitorEvent::MuteForced, now);
            }
        }
        affected
            .into_iter()
            .map(|i| self.seats[i].call_sid.clone())
            .collect()
    }

    pub fn handle(&mut self, input: RoomInput, now: Instant) {
        match input {
            RoomInput::MediaArrived { call_sid } => {
                let Some(index) = self.seats.iter().position(|s| s.call_sid == call_sid) else {
                    // It left, or the conference ended, while its media was on its way.
                    self.out.push_back(RoomAction::GiveBack {
                        call_sid,
                        notice: SeatNotice::Ended,
                    });
                    return;
                };
                if let Some(reason) = self.ending {
                    let seat = self.seats.remove(index);
                    self.out.push_back(RoomAction::GiveBack {
                        call_sid,
                        notice: SeatNotice::Ended,
                    });
                    let extra = [
                        ("ParticipantCallStatus", "in-progress"),
                        ("ReasonParticipantLeft", reason.participant_reason()),
                    ];
                    self.seat_event(
                        ConferenceEvent::Leave,
                        "participant-leave",
                        &seat,
                        &extra,
                        now,
                    );
                    self.monitor_gone(&seat, Clearing::NORMAL, now);
                    self.finish_if_empty(now);
                    return;
                }
                let seat = &mut self.seats[index];
                if seat.state == SeatState::Joining {
                    seat.state = SeatState::Mixed;
                    let settings = self.settings_of(index);
                    let seat = &self.seats[index];
                    self.out.push_back(RoomAction::Mix {
                        call_sid: seat.call_sid.clone(),
                        id: seat.id,
                        settings,
                    });
                    self.refresh_settings();
                } else {
                    // Held while its media was on its way: straight back.
                    self.out.push_back(RoomAction::GiveBack {
                        call_sid,
                        notice: SeatNotice::Held {
                            music: seat.hold_music.clone(),
                        },
                    });
                }
            }
            RoomInput::Ringing { call_sid } => {
                if let Some(seat) = self
                    .seats
                    .iter()
                    .find(|s| s.call_sid == call_sid && s.state == SeatState::Ringing)
                {
                    let seat = seat.clone();
                    self.monitor(&seat, MonitorEvent::Updated(CallState::Ringing), now);
                }
            }
            RoomInput::FarEndHold { call_sid, holding } => {
                if let Some(seat) = self.seats.iter_mut().find(|s| s.call_sid == call_sid) {
                    seat.far_end_holding = holding;
                    let seat = seat.clone();
                    let state = if holding {
                        CallState::OnHold
                    } else {
                        CallState::Active
                    };
                    self.monitor(&seat, MonitorEvent::Updated(state), now);
                    self.refresh_settings();
                }
            }
            RoomInput::Left { call_sid, reason } => self.leave(&call_sid, reason, now),
            RoomInput::Digit { id, digit, rfc4733 } => self.on_digit(id, digit, rfc4733, now),
            RoomInput::Speaking { id, speaking } => {
                if let Some(index) = self.seats.iter().position(|s| s.id == id) {
                    let event = if speaking {
                        "participant-speech-start"
                    } else {
                        "participant-speech-stop"
                    };
                    self.participant_event(ConferenceEvent::Speaker, event, index, &[], now);
                }
            }
            RoomInput::PromptFailed { prompt, reason } => {
                if let Some(PromptUse::Announcement { url, to }) = self.take_prompt(prompt) {
                    tracing::warn!(conference = %self.record.sid, %url, %reason, "announcement failed");
                    self.announcement_event(
                        "announcement-fail",
                        &url,
                        to.as_deref(),
                        Some(&reason),
                        now,
                    );
                }
            }
            RoomInput::PromptDone { prompt } => {
                if let Some(PromptUse::Announcement { url, to }) = self.take_prompt(prompt) {
                    self.announcement_event("announcement-end", &url, to.as_deref(), None, now);
                }
            }
            RoomInput::Inactive { id, silent_for } => {
                if let Some(seat) = self.seats.iter().find(|s| s.id == id) {
                    self.out.push_back(RoomAction::Notify {
                        call_sid: seat.call_sid.clone(),
                        notice: SeatNotice::Inactive { silent_for },
                    });
                }
            }
            RoomInput::MediaLost { id } => {
                if let Some(seat) = self.seats.iter().find(|s| s.id == id) {
                    let call_sid = seat.call_sid.clone();
                    tracing::warn!(conference = %self.record.sid, call_sid = %call_sid, "the mixer lost a participant's media");
                    self.leave(&call_sid, LeftReason::Kicked, now);
                }
            }
        }
    }

    fn take_prompt(&mut self, prompt: u64) -> Option<PromptUse> {
        let index = self.prompts.iter().position(|(p, _)| *p == prompt)?;
        Some(self.prompts.remove(index).1)
    }

    fn seat_by_key(&self, key: &str) -> Option<usize> {
        self.seats
            .iter()
            .position(|s| s.call_sid == key)
            .or_else(|| {
                self.seats
                    .iter()
                    .position(|s| s.label.as_deref() == Some(key))
            })
    }

    fn coachable(&self, target: &str) -> Result<String, ChangeError> {
        let seat = self
            .seats
            .iter()
            .find(|s| s.call_sid == target && s.state != SeatState::Ringing)
            .ok_or(ChangeError::CoachedAbsent)?;
        if seat.held {
            return Err(ChangeError::CoachedOnHold);
        }
        Ok(target.to_owned())
    }

    fn check_room_for(&self, options: &SeatOptions) -> Result<(), JoinOutcome> {
        let max = self
            .first
            .as_ref()
            .map_or(options.max_participants, |f| f.max_participants);
        if self.seats.len() as u32 >= max {
            return Err(JoinOutcome::Refused {
                code: CONFERENCE_FULL,
                reason: format!("the conference is full ({max} participants)"),
            });
        }
        if let Some(label) = &options.label
            && self.seats.iter().any(|s| s.label.as_ref() == Some(label))
        {
            return Err(JoinOutcome::Refused {
                code: LABEL_IN_USE,
                reason: format!("the label {label:?} is in use by another participant"),
            });
        }
        Ok(())
    }

    fn fix_first(&mut self, options: &SeatOptions) {
        if self.first.is_none() {
            self.first = Some(FirstSettings {
                status_callback: options.status_callback.clone(),
                events: options.events,
                max_participants: options.max_participants,
                record: options.record,
                trim_silence: options.trim_silence,
                recording_status_callback: options.recording_status_callback.clone(),
            });
        }
    }

    /// A monitoring event of `seat`, if it was dialled through the seeds' session API.
    fn monitor(&mut self, seat: &Seat, event: MonitorEvent, now: Instant) {
        if let Some(link) = &seat.link {
            let body = monitor::body(link, event, self.clock.at(now));
            self.out.push_back(RoomAction::Monitor { body });
        }
    }

    /// `seat` is gone from the room: its call is over for the session.
    fn monitor_gone(&mut self, seat: &Seat, clearing: Clearing, now: Instant) {
        self.monitor(seat, MonitorEvent::Updated(CallState::Hangup), now);
        self.monitor(seat, MonitorEvent::Destroyed(clearing), now);
    }

    fn new_seat(
        &mut self,
        call_sid: &str,
        options: &SeatOptions,
        state: SeatState,
        now: Instant,
    ) -> Seat {
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let at = self.clock.at(now);
        Seat {
            id,
            call_sid: call_sid.to_owned(),
            label: options.label.clone(),
            muted: options.muted,
            beep: options.beep,
            start_on_enter: options.start_on_enter,
            end_on_exit: options.end_on_exit,
            coaching: options.coach.clone(),
            observe_force_mute: options.observe_force_mute,
            state,
            held: false,
            hold_music: None,
            far_end_holding: false,
            last_digit: None,
            link: options.link.clone(),
            date_created: at,
            date_updated: at,
        }
    }

    /// Starts the conference when two participants are in and one of them starts it.
    fn maybe_start(&mut self, now: Instant) {
        let present: Vec<usize> = (0..self.seats.len())
            .filter(|&i| self.seats[i].state != SeatState::Ringing)
            .collect();
        if present.len() < 2 || !present.iter().any(|&i| self.seats[i].start_on_enter) {
            return;
        }
        self.record.status = ConferenceStatus::InProgress;
        self.record.date_updated = self.clock.at(now);
        self.save();
        self.conference_event(ConferenceEvent::Start, "conference-start", &[], now);
        for index in present {
            let seat = &mut self.seats[index];
            if seat.state == SeatState::Waiting {
                seat.state = SeatState::Joining;
                self.out.push_back(RoomAction::Notify {
                    call_sid: seat.call_sid.clone(),
                    notice: SeatNotice::Started,
                });
            }
        }
        self.play(PromptSource::Beep, Listeners::All, PromptUse::Beep);
        if let Some(first) = &self.first
            && first.record
        {
            self.recording = true;
            self.out.push_back(RoomAction::StartRecording {
                trim_silence: first.trim_silence,
                status_callback: first.recording_status_callback.clone(),
            });
        }
    }

    fn set_hold(&mut self, index: usize, hold: bool, now: Instant) {
        let seat = &mut self.seats[index];
        seat.held = hold;
        let event = if hold {
            "participant-hold"
        } else {
            "participant-unhold"
        };
        match (hold, seat.state) {
            (true, SeatState::Mixed) => {
                seat.state = SeatState::Held;
                self.out.push_back(RoomAction::Unmix {
                    call_sid: seat.call_sid.clone(),
                    id: seat.id,
                    notice: Some(SeatNotice::Held {
                        music: seat.hold_music.clone(),
                    }),
                });
            }
            (true, SeatState::Joining) => seat.state = SeatState::Held,
            (false, SeatState::Held) => {
                seat.state = SeatState::Joining;
                self.out.push_back(RoomAction::Notify {
                    call_sid: seat.call_sid.clone(),
                    notice: SeatNotice::Resumed,
                });
            }
            _ => {}
        }
        self.participant_event(ConferenceEvent::Hold, event, index, &[], now);
    }

    fn set_muted_with_message(&mut self, index: usize, muted: bool, now: Instant) {
        let seat = &mut self.seats[index];
        seat.muted = muted;
        seat.date_updated = self.clock.at(now);
        let id = seat.id;
        let event = if muted {
            "participant-mute"
        } else {
            "participant-unmute"
        };
        self.participant_event(ConferenceEvent::Mute, event, index, &[], now);
        self.refresh_settings();
        self.play(
            PromptSource::MuteMessage { muted },
            Listeners::One(id),
            PromptUse::MuteMessage,
        );
    }

    /// A key from the mixer: `*6` toggles the mute of a participant that observes force
    /// mute (RFC 4733 keys only, as the seeds say); every key goes to its call.
    fn on_digit(&mut self, id: ParticipantId, digit: char, rfc4733: bool, now: Instant) {
        let Some(index) = self.seats.iter().position(|s| s.id == id) else {
            return;
        };
        let seat = &mut self.seats[index];
        let toggle =
            seat.observe_force_mute && rfc4733 && digit == '6' && seat.last_digit == Some('*');
        seat.last_digit = rfc4733.then_some(digit);
        let call_sid = seat.call_sid.clone();
        let muted = seat.muted;
        if toggle {
            self.set_muted_with_message(index, !muted, now);
        }
        self.out.push_back(RoomAction::Notify {
            call_sid,
            notice: SeatNotice::Digit(digit),
        });
    }

    /// A participant leaves, for `reason`.
    fn leave(&mut self, call_sid: &str, reason: LeftReason, now: Instant) {
        let Some(index) = self.seats.iter().position(|s| s.call_sid == call_sid) else {
            return;
        };
        let seat = self.seats.remove(index);
        match (seat.state, reason) {
            (SeatState::Mixed, LeftReason::HungUp(_)) => self.out.push_back(RoomAction::Unmix {
                call_sid: seat.call_sid.clone(),
                id: seat.id,
                notice: None,
            }),
            (SeatState::Mixed, _) => self.out.push_back(RoomAction::Unmix {
                call_sid: seat.call_sid.clone(),
                id: seat.id,
                notice: Some(SeatNotice::Ended),
            }),
            (SeatState::Ringing, LeftReason::Kicked) => self.out.push_back(RoomAction::Cancel {
                call_sid: seat.call_sid.clone(),
            }),
            (SeatState::Waiting | SeatState::Held, LeftReason::Kicked) => {
                self.out.push_back(RoomAction::Notify {
                    call_sid: seat.call_sid.clone(),
                    notice: SeatNotice::Ended,
                })
            }
            // Joining: its media comes back with Ended when it arrives; the others have left.
            _ => {}
        }
        let (call_status, why) = match reason {
            LeftReason::HungUp(_) => ("completed", "participant_hung_up"),
            LeftReason::Left => ("in-progress", "participant_hung_up"),
            LeftReason::Kicked => ("in-progress", "participant_updated_via_api"),
            LeftReason::NotAnswered { status, .. } => (status, "participant_add_failed"),
        };
        let extra = [
            ("ParticipantCallStatus", call_status),
            ("ReasonParticipantLeft", why),
        ];
        self.seat_event(
            ConferenceEvent::Leave,
            "participant-leave",
            &seat,
            &extra,
            now,
        );
        let clearing = match reason {
            LeftReason::HungUp(clearing) | LeftReason::NotAnswered { clearing, .. } => clearing,
            LeftReason::Left | LeftReason::Kicked => Clearing::NORMAL,
        };
        self.monitor_gone(&seat, clearing, now);
        // Whoever coached it has nobody to coach.
        for other in &mut self.seats {
            if other.coaching.as_deref() == Some(call_sid) {
                other.coaching = None;
            }
        }
        self.refresh_settings();
        if self.ending.is_some() {
            self.finish_if_empty(now);
            return;
        }
        let kicked = reason == LeftReason::Kicked;
        if seat.end_on_exit && seat.state != SeatState::Ringing {
            let why = if kicked {
                EndReason::EndOnExitKicked
            } else {
                EndReason::EndOnExitLeft
            };
            self.end(why, Some(&seat), now);
        } else if self.seats.is_empty() {
            let why = if kicked {
                EndReason::LastKicked
            } else {
                EndReason::LastLeft
            };
            self.end(why, Some(&seat), now);
        } else if seat.beep.on_exit() && self.record.status == ConferenceStatus::InProgress {
            self.play(PromptSource::Beep, Listeners::All, PromptUse::Beep);
        }
    }

    /// The conference ends: every participant is taken out; it is over once they are.
    fn end(&mut self, reason: EndReason, ending: Option<&Seat>, now: Instant) {
        if self.is_completed() || self.ending.is_some() {
            return;
        }
        self.ending = Some(reason);
        self.record.reason_ended = Some(reason.as_str().to_owned());
        self.record.call_sid_ending = match reason {
            EndReason::ViaApi => None,
            _ => ending.map(|s| s.call_sid.clone()),
        };
        let mut extra = vec![
            ("ReasonConferenceEnded", reason.as_str().to_owned()),
            ("Reason", reason.message().to_owned()),
        ];
        if let Some(seat) = ending.filter(|_| reason != EndReason::ViaApi) {
            extra.push(("CallSidEndingConference", seat.call_sid.clone()));
            if let Some(label) = &seat.label {
                extra.push(("ParticipantLabelEndingConference", label.clone()));
            }
        }
        // A seat whose media is on its way stays until it arrives and is given back.
        let (joining, seats): (Vec<Seat>, Vec<Seat>) = std::mem::take(&mut self.seats)
            .into_iter()
            .partition(|seat| seat.state == SeatState::Joining);
        self.seats = joining;
        for seat in &seats {
            match seat.state {
                SeatState::Mixed => self.out.push_back(RoomAction::Unmix {
                    call_sid: seat.call_sid.clone(),
                    id: seat.id,
                    notice: Some(SeatNotice::Ended),
                }),
                SeatState::Ringing => self.out.push_back(RoomAction::Cancel {
                    call_sid: seat.call_sid.clone(),
                }),
                SeatState::Waiting | SeatState::Held => self.out.push_back(RoomAction::Notify {
                    call_sid: seat.call_sid.clone(),
                    notice: SeatNotice::Ended,
                }),
                SeatState::Joining => {} // kept in the room above
            }
        }
        for seat in &seats {
            let why = reason.participant_reason();
            self.monitor_gone(seat, Clearing::NORMAL, now);
            let status = if seat.state == SeatState::Ringing {
                "canceled"
            } else {
                "in-progress"
            };
            self.seat_event(
                ConferenceEvent::Leave,
                "participant-leave",
                seat,
                &[
                    ("ParticipantCallStatus", status),
                    ("ReasonParticipantLeft", why),
                ],
                now,
            );
        }
        if self.recording {
            self.recording = false;
            self.out.push_back(RoomAction::StopRecording);
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.conference_event(ConferenceEvent::End, "conference-end", &extra, now);
        self.finish_if_empty(now);
    }

    fn finish_if_empty(&mut self, now: Instant) {
        if self.ending.is_none() || !self.seats.is_empty() || self.is_completed() {
            return;
        }
        self.record.status = ConferenceStatus::Completed;
        self.record.date_updated = self.clock.at(now);
        self.save();
        self.out.push_back(RoomAction::Done);
    }

    /// Who hears participant `index`, for the mixer.
    fn settings_of(&self, index: usize) -> ParticipantSettings {
        let seat = &self.seats[index];
        let coaching = seat.coaching.as_ref().and_then(|target| {
            self.seats
                .iter()
                .find(|s| &s.call_sid == target && s.state == SeatState::Mixed)
                .map(|s| s.id)
        });
        ParticipantSettings {
            muted: seat.muted,
            coaching,
            far_end_holding: seat.far_end_holding,
        }
    }

    /// Sends the mixer the settings of every mixed participant (after any change; the mixer
    /// ignores the ones that did not change).
    fn refresh_settings(&mut self) {
        for index in 0..self.seats.len() {
            if self.seats[index].state == SeatState::Mixed {
                let settings = self.settings_of(index);
                self.out.push_back(RoomAction::Settings {
                    id: self.seats[index].id,
                    settings,
                });
            }
        }
    }

    fn play(&mut self, source: PromptSource, to: Listeners, use_: PromptUse) {
        let prompt = self.next_prompt;
        self.next_prompt += 1;
        self.prompts.push((prompt, use_));
        self.out.push_back(RoomAction::Play { prompt, source, to });
    }

    fn save(&mut self) {
        self.out.push_back(RoomAction::Save(self.record.clone()));
    }

    /// A conference-level status callback (`conference-start`, `conference-end`).
    fn conference_event(
        &mut self,
        kind: ConferenceEvent,
        name: &str,
        extra: &[(&str, &str)],
        now: Instant,
    ) {
        self.callback(kind, name, None, extra, now);
    }

    fn participant_event(
        &mut self,
        kind: ConferenceEvent,
        name: &str,
        index: usize,
        extra: &[(&str, &str)],
        now: Instant,
    ) {
        let seat = self.seats[index].clone();
        self.seat_event(kind, name, &seat, extra, now);
    }

    fn seat_event(
        &mut self,
        kind: ConferenceEvent,
        name: &str,
        seat: &Seat,
        extra: &[(&str, &str)],
        now: Instant,
    ) {
        self.callback(kind, name, Some(seat), extra, now);
    }

    fn announcement_event(
        &mut self,
        name: &str,
        url: &str,
        to: Option<&str>,
        failure: Option<&str>,
        now: Instant,
    ) {
        let seat = to
            .and_then(|call| self.seats.iter().find(|s| s.call_sid == call))
            .cloned();
        let mut extra = vec![("AnnounceUrl", url)];
        if let Some(reason) = failure {
            extra.push(("ReasonAnnouncementFailed", reason));
        }
        self.callback(
            ConferenceEvent::Announcement,
            name,
            seat.as_ref(),
            &extra,
            now,
        );
    }

    /// Queues the callback of `name` when the conference subscribed to `kind`; the sequence
    /// number counts every callback sent.
    fn callback(
        &mut self,
        kind: ConferenceEvent,
        name: &str,
        seat: Option<&Seat>,
        extra: &[(&str, &str)],
        now: Instant,
    ) {
        let Some(first) = &self.first else {
            return;
        };
        let Some(target) = first.status_callback.clone() else {
            return;
        };
        if !first.events.contains(kind) {
            return;
        }
        self.sequence += 1;
        let mut params = vec![
            ("ConferenceSid".to_owned(), self.record.sid.clone()),
            ("FriendlyName".to_owned(), self.record.friendly_name.clone()),
            ("AccountSid".to_owned(), self.record.account_sid.clone()),
            ("SequenceNumber".to_owned(), self.sequence.to_string()),
            ("Timestamp".to_owned(), self.clock.at(now).to_rfc2822()),
            ("StatusCallbackEvent".to_owned(), name.to_owned()),
        ];
        if let Some(seat) = seat {
            params.extend([
                ("CallSid".to_owned(), seat.call_sid.clone()),
                ("Muted".to_owned(), seat.muted.to_string()),
                ("Hold".to_owned(), seat.held.to_string()),
                ("Coaching".to_owned(), seat.coaching.is_some().to_string()),
                (
                    "EndConferenceOnExit".to_owned(),
                    seat.end_on_exit.to_string(),
                ),
                (
                    "StartConferenceOnEnter".to_owned(),
                    seat.start_on_enter.to_string(),
                ),
            ]);
            if let Some(label) = &seat.label {
                params.push(("ParticipantLabel".to_owned(), label.clone()));
            }
            if let Some(target) = &seat.coaching {
                params.push(("CallSidToCoach".to_owned(), target.clone()));
            }
        }
        params.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.out.push_back(RoomAction::Callback { target, params });
    }
}

fn view(seat: &Seat) -> ParticipantView {
    ParticipantView {
        call_sid: seat.call_sid.clone(),
        label: seat.label.clone(),
        muted: seat.muted,
        hold: seat.held,
        coaching: seat.coaching.is_some(),
        call_sid_to_coach: seat.coaching.clone(),
        start_conference_on_enter: seat.start_on_enter,
        end_conference_on_exit: seat.end_on_exit,
        status: if seat.state == SeatState::Ringing {
            "ringing"
        } else {
            "connected"
        },
        date_created: seat.date_created,
        date_updated: seat.date_updated,
    }
}

impl ConferenceBeep {
    /// Beeps when a participant joins.
    pub fn on_enter(self) -> bool {
        matches!(self, ConferenceBeep::True | ConferenceBeep::OnEnter)
    }

    /// Beeps when a participant leaves.
    pub fn on_exit(self) -> bool {
        matches!(self, ConferenceBeep::True | ConferenceBeep::OnExit)
    }
}
