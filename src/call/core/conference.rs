//! A call in a conference (`<Dial><Conference>`), the participant's side. The conference
//! itself is shared by its participants ([`crate::call::rooms`]): the core asks it through
//! actions and hears back inputs; the mixer gets the call's media leg while the call is in the
//! room, and gives it back when the call is held, leaves, or the conference ends.
//!
//! ```text
//! <Dial><Conference> ─▶ join ─▶ refused (full: 16020, label in use: 16025) ─▶ the dial
//!   reports failed, with a warning │ joined:
//!   Waiting (the conference has not started: waitUrl music, built-in music or silence)
//!     ─▶ Started ─▶ Lent (the media is in the mixer)
//!   Lent ─▶ Held (media back: holdUrl music or built-in music) ─▶ Resumed ─▶ Lent
//!   ─▶ the conference ends, the call is removed ─▶ media back ─▶ the dial's action
//!      (DialCallStatus=answered)
//!   `*` with hangupOnStar, timeLimit, a REST redirect ─▶ the call leaves; once its media is
//!      back, the action (or the new document)
//!   the call hangs up ─▶ it leaves; its media stays with the mixer, which closes it
//! ```

use std::time::Instant;

use super::runner::{Role, RunnerId};
use super::timers::Timer;
use super::{Action, CallCore, LegId, MediaCommand};
use crate::call::cascade;
use crate::call::control::DocumentSource;
use crate::call::document::Source;
use crate::call::rooms::room::{
    Clearing, JoinOutcome, LeftReason, RoomInput, SeatNotice, SeatOptions,
};
use crate::interp::Event;
use crate::markup::ast::{Conference, Dial, DialTarget, HttpMethod, Trim, WaitUrl};
use crate::media::hold_music::hold_music;
use crate::media::library::Audio;

/// Where the call is in its conference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Asked to join; no answer yet.
    Joining,
    /// In, the conference not started: the call plays its wait music.
    Waiting,
    /// Its media is with the mixer (or on its way there).
    Lent,
    /// Held: its media is back, playing hold music.
    Held,
    /// It left, or was removed, while its media was with the mixer: waiting for it.
    Leaving,
}

/// A call's participation in a conference.
#[derive(Debug)]
pub struct Participation {
    dial: Dial,
    name: String,
    wait: WaitUrl,
    wait_method: HttpMethod,
    conference_sid: Option<String>,
    phase: Phase,
    /// It got into the room at least once (`DialBridged`).
    mixed: bool,
    /// The built-in music plays (it starts again when it ends).
    music: Option<Audio>,
    /// What to do once the media is back after leaving: the new document of a REST redirect.
    redirect: Option<DocumentSource>,
    /// The result the dial reports (`answered`, or `failed` when refused).
    status: &'static str,
}

/// A participation that could not join: its dial reports `failed`.
fn participation_failed(dial: Dial, name: String) -> Box<Participation> {
    Box::new(Participation {
        dial,
        name,
        wait: WaitUrl::Silence,
        wait_method: HttpMethod::Post,
        conference_sid: None,
        phase: Phase::Joining,
        mixed: false,
        music: None,
        redirect: None,
        status: "failed",
    })
}

/// A conference's options for a participant, from its `<Conference>` noun.
pub fn seat_options(conference: &Conference) -> SeatOptions {
    SeatOptions {
        label: conference.participant_label.clone(),
        muted: conference.muted,
        beep: conference.beep,
        start_on_enter: conference.start_conference_on_enter,
        end_on_exit: conference.end_conference_on_exit,
        coach: conference.coach.clone(),
        max_participants: conference.max_participants,
        record: conference.record == crate::markup::ast::ConferenceRecord::RecordFromStart,
        trim_silence: conference.trim == Trim::TrimSilence,
        status_callback: conference.status_callback.clone().map(|url| Source {
            url,
            method: conference.status_callback_method,
        }),
        events: conference.status_callback_event,
        recording_status_callback: conference.recording_status_callback.clone(),
        observe_force_mute: false,
        link: None,
        application_id: None,
    }
}

/// An audio file's URL (as Twilio allows for `waitUrl`, `holdUrl` and `announceUrl`) rather
/// than a document's: it is played in a loop.
pub fn is_audio_url(url: &str) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    [".wav", ".mp3", ".ogg", ".flac", ".ulaw", ".au"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

impl CallCore {
    /// `<Dial><Conference>`: the call asks to join the conference.
    pub(super) fn start_conference(&mut self, dial: Dial, conference: Conference, now: Instant) {
        let mut options = seat_options(&conference);
        options.application_id = self.legs[0]
            .params
            .routed
            .as_ref()
            .map(|routed| routed.application_id.clone())
            .filter(|id| !id.is_empty());
        self.answer_call(now);
        self.conference = Some(Box::new(Participation {
            name: conference.name.clone(),
            wait: conference.wait.clone(),
            wait_method: conference.wait_method,
            dial,
            conference_sid: None,
            phase: Phase::Joining,
            mixed: false,
            music: None,
            redirect: None,
            status: "answered",
        }));
        self.out.push(Action::JoinRoom {
            name: conference.name,
            options: Box::new(options),
        });
    }

    pub(super) fn on_room_joined(&mut self, outcome: JoinOutcome, now: Instant) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        match outcome {
            JoinOutcome::Joined {
                conference_sid,
                started,
            } => {
                tracing::info!(call_sid = %self.legs[0].record.sid, conference = %conference_sid, started, "joined the conference");
                participation.conference_sid = Some(conference_sid);
                self.timers
                    .set(Timer::DialLimit, now + participation.dial.time_limit);
                if started {
                    self.lend_to_room();
                } else {
                    participation.phase = Phase::Waiting;
                    self.play_room_music(now);
                }
            }
            JoinOutcome::Refused { code, reason } => {
                tracing::warn!(call_sid = %self.legs[0].record.sid, conference = %participation.name, code, %reason, "could not join the conference");
                participation.status = "failed";
                self.out.push(Action::Warning {
                    leg: LegId::CALL,
                    code,
                    message: format!("<Conference>{}</Conference>: {reason}", participation.name),
                });
                self.conference_done(now);
            }
        }
    }

    /// The conference runs on another node: instead of joining here, the call dials the
    /// owner with the signed document that seats the leg there ([`cascade`]), keeping the
    /// `<Dial>`'s own attributes (action, timeLimit, hangupOnStar, record); it reports as a
    /// `<Dial><Sip>` does.
    pub(super) fn on_room_elsewhere(
        &mut self,
        owner_sip_uri: &str,
        auth_token: &str,
        now_unix: u64,
        now: Instant,
    ) {
        let Some(participation) = self.conference.take_if(|p| p.phase == Phase::Joining) else {
            return;
        };
        let mut dial = participation.dial;
        let DialTarget::Conference(conference) = &dial.target else {
            return;
        };
        let target = cascade::owner_document(conference).and_then(|document| {
            let header = cascade::sign(auth_token, &document, now_unix);
            cascade::leg_to_owner(owner_sip_uri, &header)
        });
        let Some(target) = target else {
            tracing::warn!(call_sid = %self.legs[0].record.sid, owner = owner_sip_uri, "the conference's node cannot be dialled");
            self.conference = Some(participation_failed(dial, participation.name));
            return self.conference_done(now);
        };
        dial.target = target;
        self.start_dial(dial, now);
    }

    pub(super) fn on_room_notice(&mut self, notice: SeatNotice, now: Instant) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        match notice {
            SeatNotice::Started | SeatNotice::Resumed => {
                if matches!(participation.phase, Phase::Waiting | Phase::Held) {
                    self.stop_room_music();
                    self.lend_to_room();
                }
            }
            SeatNotice::Ended => match participation.phase {
                Phase::Lent | Phase::Leaving => participation.phase = Phase::Leaving,
                Phase::Joining | Phase::Waiting | Phase::Held => {
                    self.stop_room_music();
                    self.conference_done(now);
                }
            },
            SeatNotice::Held { .. } => {}
            SeatNotice::Inactive { silent_for } => self.end_call(
                crate::call::ending::Ending::MediaTimeout { silent_for },
                now,
            ),
            SeatNotice::Digit(digit) => {
                if digit == '*' && participation.dial.hangup_on_star {
                    self.leave_room(LeftReason::Left, now);
                } else {
                    self.feed_leg(LegId::CALL, Event::Digit(digit), now);
                }
            }
        }
    }

    /// The call's media is back from the mixer, with why.
    pub(super) fn on_room_media_back(&mut self, notice: SeatNotice, now: Instant) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        match notice {
            SeatNotice::Held { music } if participation.phase == Phase::Lent => {
                participation.phase = Phase::Held;
                match music {
                    Some(source) => self.start_room_document(Role::ConferenceMusic, source),
                    None => self.play_builtin_music(),
                }
            }
            _ => {
                if participation.phase != Phase::Leaving {
                    participation.phase = Phase::Leaving;
                }
                self.conference_done(now);
            }
        }
    }

    /// The call leaves the conference by itself (`*`, timeLimit, a redirect).
    pub(super) fn leave_room(&mut self, reason: LeftReason, now: Instant) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        let phase = participation.phase.clone();
        if let Some(sid) = participation.conference_sid.clone() {
            self.out.push(Action::LeaveRoom {
                conference_sid: sid,
                reason,
            });
        }
        match phase {
            Phase::Lent => {
                if let Some(participation) = self.conference.as_mut() {
                    participation.phase = Phase::Leaving;
                }
            }
            Phase::Leaving => {}
            Phase::Joining | Phase::Waiting | Phase::Held => {
                self.stop_room_music();
                self.conference_done(now);
            }
        }
    }

    /// `<Dial timeLimit>` in a conference.
    pub(super) fn room_time_limit(&mut self, now: Instant) -> bool {
        if self.conference.is_none() {
            return false;
        }
        self.leave_room(LeftReason::Left, now);
        true
    }

    /// A REST redirect of a call in a conference: it leaves, and the new document runs once
    /// its media is back. True when it was in one.
    pub(super) fn redirect_from_room(&mut self, source: &DocumentSource, now: Instant) -> bool {
        let Some(participation) = self.conference.as_mut() else {
            return false;
        };
        participation.redirect = Some(source.clone());
        self.leave_room(LeftReason::Left, now);
        true
    }

    /// The call ends while in a conference: it leaves it; its media, if with the mixer, is
    /// closed there. The dial's action is still requested.
    pub(super) fn quit_room(&mut self, clearing: Clearing, now: Instant) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        if let Some(sid) = participation.conference_sid.clone() {
            self.out.push(Action::LeaveRoom {
                conference_sid: sid,
                reason: LeftReason::HungUp(clearing),
            });
        }
        self.conference_done(now);
    }

    /// The call's phone holds it, or stopped holding: the mixer stops sending to it.
    pub(super) fn room_far_end_hold(&mut self, holding: bool) {
        if let Some(sid) = self
            .conference
            .as_ref()
            .and_then(|p| p.conference_sid.clone())
        {
            let call_sid = self.legs[0].record.sid.clone();
            self.out.push(Action::TellRoom {
                conference_sid: sid,
                input: RoomInput::FarEndHold { call_sid, holding },
            });
        }
    }

    /// The built-in music played to its end: it starts again while the call waits or is held.
    pub(super) fn room_music_played_out(&mut self) -> bool {
        let Some(music) = self.conference.as_ref().and_then(|p| p.music.clone()) else {
            return false;
        };
        self.out
            .push(Action::Media(LegId::CALL, MediaCommand::Play(music)));
        true
    }

    /// A wait or hold document could not be loaded: the built-in music plays instead.
    pub(super) fn room_document_failed(&mut self) {
        self.side = None;
        if self
            .conference
            .as_ref()
            .is_some_and(|p| matches!(p.phase, Phase::Waiting | Phase::Held))
        {
            self.play_builtin_music();
        }
    }

    fn lend_to_room(&mut self) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        let Some(sid) = participation.conference_sid.clone() else {
            return;
        };
        participation.phase = Phase::Lent;
        participation.mixed = true;
        self.out.push(Action::LendToRoom {
            conference_sid: sid,
        });
    }

    /// What a waiting call hears: the wait document, the built-in music, or nothing.
    fn play_room_music(&mut self, _now: Instant) {
        let Some(participation) = self.conference.as_ref() else {
            return;
        };
        match participation.wait.clone() {
            WaitUrl::Url(url) => {
                let source = Source {
                    url,
                    method: participation.wait_method,
                };
                self.start_room_document(Role::ConferenceMusic, source);
            }
            WaitUrl::Default => self.play_builtin_music(),
            WaitUrl::Silence => {}
        }
    }

    /// A wait or hold document (or an audio file's URL, played in a loop).
    fn start_room_document(&mut self, role: Role, source: Source) {
        if is_audio_url(&source.url) {
            self.side = Some(super::runner::Runner::new(LegId::CALL, role, None));
            let looped = format!(
                "<Response><Play loop=\"0\">{}</Play></Response>",
                crate::markup::escape_text(&source.url)
            );
            self.fetch(RunnerId::Side, DocumentSource::Twiml(looped), Vec::new());
        } else {
            self.start_side(LegId::CALL, role, source, Vec::new());
        }
    }

    fn play_builtin_music(&mut self) {
        let Some(participation) = self.conference.as_mut() else {
            return;
        };
        let music = hold_music();
        participation.music = Some(music.clone());
        self.out
            .push(Action::Media(LegId::CALL, MediaCommand::Play(music)));
    }

    fn stop_room_music(&mut self) {
        self.side = None;
        if let Some(participation) = self.conference.as_mut() {
            participation.music = None;
        }
        self.out
            .push(Action::Media(LegId::CALL, MediaCommand::Stop));
    }

    /// The call is out of the conference: the dial reports it (`DialCallStatus=answered`,
    /// with neither `DialCallSid` nor `DialCallDuration`, as Twilio's), or a REST redirect's
    /// document runs.
    fn conference_done(&mut self, now: Instant) {
        let Some(participation) = self.conference.take() else {
            return;
        };
        self.timers.stop(Timer::DialLimit);
        if let Some(source) = participation.redirect {
            self.main.replacing = true;
            self.fetch(RunnerId::Main, source, Vec::new());
            return;
        }
        let mut params = vec![
            ("DialCallStatus".to_owned(), participation.status.to_owned()),
            ("DialBridged".to_owned(), participation.mixed.to_string()),
        ];
        if let Some(sid) = participation.conference_sid {
            params.push(("ConferenceSid".to_owned(), sid));
        }
        self.feed(RunnerId::Main, Event::DialDone { params }, now);
    }
}
