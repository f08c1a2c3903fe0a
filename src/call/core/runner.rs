//! Documents on a leg: a [`Runner`] holds a leg's interpreter ([`crate::interp`]) and what
//! its verbs have under way — the document being fetched, the prompt being loaded or played,
//! keys being sent, speech being listened for, the silence timeout of a `<Record>`. The call
//! core carries out the interpreter's [`Effect`]s as actions and feeds back what happened as
//! [`Event`]s; a prompt that cannot be loaded is skipped, as on Twilio, and reported on the
//! leg's call ([`Action::Warning`]). Two runners exist at most: the call's own
//! ([`RunnerId::Main`]) and one beside it ([`RunnerId::Side`], its [`Role`]): a whisper on a
//! dialled leg (`<Sip url>`, `<Number url>`), the wait document of a queued call
//! (`<Enqueue waitUrl>`, run again each time it ends), or the announcement a dequeued call
//! hears before its bridge (`<Queue url>`).
//!
//! A document that loops is stopped: after [`MAX_FETCHES_WITHOUT_PROGRESS`] fetches in a row
//! with nothing played (a prompt played out), heard or waited for (a `<Pause>` or `<Gather>`
//! timed out, a `<Dial>`, `<Record>` or `<Enqueue>` began), the document fails with 14106;
//! the driver paces fetches and failing prompts meanwhile (`call/pacing.rs`).
//!
//! When the call ends the main runner winds down as Twilio's does: a `<Record>` under way is
//! closed and its `action` still requested (`Digits=hangup`), a `<Dial>`'s `action` still
//! hears the dial's result; those requests go out as [`Action::Notify`], their answers unused.

use std::time::{Duration, Instant};

use super::{Action, CallCore, DocumentRequest, LegId, MediaCommand, Outbox, PromptRequest};
use crate::call::control::DocumentSource;
use crate::call::document::{LoadError, Loaded, Source};
use crate::call::ending::{self, Ending};
use crate::call::verbs::record_verb_spec;
use crate::interp::{DocumentKind, Effect, Event, Interpreter, VerbStep};
use crate::markup::ast::DocumentUse;
use crate::media::library::{AudioError, Prompt};
use crate::media::record::beep;
use crate::media::session::RecordingTap;

/// Documents a call may fetch in a row with nothing played, heard or waited for (a
/// `<Redirect>` loop) before it fails with 14106, as Twilio's document retrieval limit.
pub const MAX_FETCHES_WITHOUT_PROGRESS: u32 = 50;

/// Which runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerId {
    Main,
    Side,
}

/// What a runner's documents are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The call's own documents.
    Call,
    /// A whisper on an answered dialled leg; its end connects it.
    DialWhisper,
    /// A queued call's wait document; its end starts it again.
    QueueWait,
    /// What a dequeued call hears before its bridge (`<Queue url>`); its end connects it.
    QueueAnnouncement,
    /// What a conference's participant hears while it waits for the start or is held
    /// (`waitUrl`, `holdUrl`); after its end, silence.
    ConferenceMusic,
}

impl Role {
    fn kind(self) -> DocumentKind {
        match self {
            Role::Call => DocumentKind::Call,
            Role::DialWhisper | Role::QueueAnnouncement => DocumentKind::Whisper,
            Role::QueueWait => DocumentKind::Wait,
            Role::ConferenceMusic => DocumentKind::Music,
        }
    }

    /// The verbs its documents may hold and Twilio's code for one that does not belong:
    /// 12200 (schema validation) in a queue's wait document, 13238 in a conference's.
    fn rules(self) -> (DocumentUse, u32) {
        match self {
            Role::ConferenceMusic => (DocumentUse::Announcement, ending::CONFERENCE_MUSIC_VERB),
            _ => (DocumentUse::Wait, ending::SCHEMA_WARNING),
        }
    }
}

/// A leg's documents; see the module documentation.
#[derive(Debug)]
pub struct Runner {
    pub leg: LegId,
    interp: Option<Interpreter>,
    pub role: Role,
    /// The document fetch under way.
    fetch: Option<u64>,
    /// The document being fetched replaces the one running (a REST redirect).
    pub replacing: bool,
    /// Tried once, when the first document fails.
    pub fallback: Option<Source>,
    /// The prompt being loaded.
    prompt: Option<u64>,
    /// A prompt plays on the leg.
    playing: bool,
    /// `<Play digits>` keys are on their way.
    sending_digits: bool,
    /// A `<Gather>` listens for speech.
    listening: bool,
    /// The silence timeout of the `<Record>` starting, armed once it records.
    pub silence: Option<Duration>,
}

impl Runner {
    pub fn new(leg: LegId, role: Role, fallback: Option<Source>) -> Runner {
        Runner {
            leg,
            interp: None,
            role,
            fetch: None,
            replacing: false,
            fallback,
            prompt: None,
            playing: false,
            sending_digits: false,
            listening: false,
            silence: None,
        }
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.interp.as_mut()?.poll_effect()
    }

    /// The next verb its documents started or ended.
    pub fn poll_verb(&mut self) -> Option<VerbStep> {
        self.interp.as_mut()?.poll_verb()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.interp.as_ref()?.poll_timeout()
    }

    /// `<Play digits>` keys were on their way and are now out.
    pub fn digits_done(&mut self) -> bool {
        std::mem::take(&mut self.sending_digits)
    }

    /// The document is given up (it failed): no more of its effects or timeouts, and its
    /// prompt, keys and speech recognition stopped.
    pub fn drop_document(&mut self, out: &mut Outbox) {
        self.stop_media(out);
        if std::mem::take(&mut self.listening) {
            out.push(Action::StopListening(self.leg));
        }
        self.interp = None;
        self.fetch = None;
        self.silence = None;
    }

    /// Stops the leg's prompt and keys (a redirect abandons them).
    pub fn stop_media(&mut self, out: &mut Outbox) {
        self.prompt = None;
        self.playing = false;
        self.sending_digits = false;
        out.push(Action::Media(self.leg, MediaCommand::Stop));
    }
}

impl CallCore {
    pub(super) fn runner_mut(&mut self, id: RunnerId) -> Option<&mut Runner> {
        match id {
            RunnerId::Main => Some(&mut self.main),
            RunnerId::Side => self.side.as_mut(),
        }
    }

    /// The runner of the documents on `leg`.
    pub(super) fn runner_for_leg(&self, leg: LegId) -> Option<RunnerId> {
        if self.main.leg == leg {
            Some(RunnerId::Main)
        } else if self.side.as_ref().is_some_and(|w| w.leg == leg) {
            Some(RunnerId::Side)
        } else {
            None
        }
    }

    /// Tells runner `id`'s interpreter what happened.
    pub(super) fn feed(&mut self, id: RunnerId, event: Event, now: Instant) {
        if let Some(interp) = self.runner_mut(id).and_then(|r| r.interp.as_mut()) {
            interp.handle(event, now);
        }
    }

    /// Tells the interpreter of the documents on `leg` what happened there.
    pub(super) fn feed_leg(&mut self, leg: LegId, event: Event, now: Instant) {
        if let Some(id) = self.runner_for_leg(leg) {
            self.feed(id, event, now);
        }
    }

    /// Loads `source` for runner `id` with the leg's standard parameters and `extra`.
    pub(super) fn fetch(
        &mut self,
        id: RunnerId,
        source: DocumentSource,
        extra: Vec<(String, String)>,
    ) {
        let fetch = self.new_id();
        let Some(runner) = self.runner_mut(id) else {
            return;
        };
        runner.fetch = Some(fetch);
        let leg = runner.leg;
        let fallback = runner.fallback.take();
        let request = match source {
            DocumentSource::Url { url, method } => DocumentRequest::Url {
                source: Source { url, method },
                params: self.leg(leg).request_params(extra),
                fallback,
            },
            DocumentSource::Twiml(text) => DocumentRequest::Inline(text),
        };
        self.out.push(Action::Fetch { fetch, request });
    }

    pub(super) fn on_loaded(
        &mut self,
        fetch: u64,
        result: Result<Loaded, LoadError>,
        now: Instant,
    ) {
        let Some(id) = [RunnerId::Main, RunnerId::Side]
            .into_iter()
            .find(|id| self.runner_mut(*id).is_some_and(|r| r.fetch == Some(fetch)))
        else {
            return;
        };
        if self.closing {
            return;
        }
        let Some(runner) = self.runner_mut(id) else {
            return;
        };
        runner.fetch = None;
        let leg = runner.leg;
        match result {
            Ok(loaded) => {
                for message in &loaded.invalid_values {
                    self.out.push(Action::Warning {
                        leg,
                        code: ending::SCHEMA_WARNING,
                        message: message.clone(),
                    });
                }
                let record = &mut self.leg_mut(leg).record;
                record.url = Some(loaded.url.clone());
                record.method = loaded.method;
                let answered = self.leg(leg).is_answered();
                let Some(runner) = self.runner_mut(id) else {
                    return;
                };
                let replacing = std::mem::take(&mut runner.replacing);
                match runner.interp.as_mut() {
                    None => {
                        runner.interp = Some(Interpreter::of_kind(
                            runner.role.kind(),
                            loaded.document,
                            &loaded.url,
                            answered,
                            now,
                        ));
                    }
                    Some(interp) if replacing => interp.replace(loaded.document, &loaded.url, now),
                    Some(interp) => interp.handle(
                        Event::DocumentLoaded {
                            document: loaded.document,
                            url: loaded.url,
                        },
                        now,
                    ),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "document could not be loaded");
                let ending = Ending::DocumentFailed {
                    code: error.code,
                    message: error.to_string(),
                };
                self.document_failed(id, ending, now);
            }
        }
    }

    pub(super) fn on_prompt(
        &mut self,
        prompt: u64,
        result: Result<Prompt, AudioError>,
        now: Instant,
    ) {
        if self.is_apology_prompt(prompt) {
            return self.apology_loaded(result, now);
        }
        let Some(id) = [RunnerId::Main, RunnerId::Side].into_iter().find(|id| {
            self.runner_mut(*id)
                .is_some_and(|r| r.prompt == Some(prompt))
        }) else {
            return;
        };
        let Some(runner) = self.runner_mut(id) else {
            return;
        };
        runner.prompt = None;
        let leg = runner.leg;
        match result {
            Ok(Prompt::Clip(audio)) if !audio.is_empty() => {
                runner.playing = true;
                self.out.push(Action::Media(leg, MediaCommand::Play(audio)));
            }
            Ok(Prompt::Stream(stream)) => {
                runner.playing = true;
                self.out
                    .push(Action::Media(leg, MediaCommand::PlayStream(stream)));
            }
            Ok(Prompt::Clip(_)) => self.feed(id, Event::PromptDone, now),
            Err(error) => {
                if let Some(held_back) = self.warning_log.allow(now) {
                    tracing::warn!(call_sid = %self.leg(leg).record.sid, %error, held_back, "prompt skipped");
                }
                self.out.push(Action::Warning {
                    leg,
                    code: error.twilio_code(),
                    message: error.to_string(),
                });
                self.feed(id, Event::PromptDone, now);
            }
        }
    }

    pub(super) fn on_played_out(&mut self, leg: LegId, now: Instant) {
        if leg == LegId::CALL
            && (self.apology_played_out(now)
                || self.ringback_played_out()
                || self.hold_music_played_out()
                || self.room_music_played_out())
        {
            return;
        }
        let Some(id) = self.runner_for_leg(leg) else {
            return;
        };
        if self
            .runner_mut(id)
            .is_some_and(|r| std::mem::take(&mut r.playing))
        {
            self.fetches_without_progress = 0;
            self.feed(id, Event::PromptDone, now);
        }
    }

    pub(super) fn document_timeout(&mut self, id: RunnerId, now: Instant) {
        // A `<Pause>` ended or a `<Gather>` waited: time passed with the caller.
        self.fetches_without_progress = 0;
        if let Some(interp) = self.runner_mut(id).and_then(|r| r.interp.as_mut()) {
            interp.handle_timeout(now);
        }
    }

    /// The call is over: the verbs running end (in the journal), speech recognition stops,
    /// and a `<Record>` under way on the call's leg is told (it closes its recording and
    /// reports it to its `action`).
    pub(super) fn wind_down(&mut self, now: Instant) {
        for id in [RunnerId::Main, RunnerId::Side] {
            if let Some(interp) = self.runner_mut(id).and_then(|r| r.interp.as_mut()) {
                interp.call_ended();
            }
        }
        if std::mem::take(&mut self.main.listening) {
            self.out.push(Action::StopListening(self.main.leg));
        }
        let recording = self
            .recordings
            .iter()
            .any(|r| r.leg == self.main.leg && r.tap == RecordingTap::Verb);
        if recording {
            self.feed(RunnerId::Main, Event::CallEnded, now);
        }
    }

    /// Carries out one effect of runner `id`'s interpreter.
    pub(super) fn apply_effect(&mut self, id: RunnerId, effect: Effect, now: Instant) {
        let Some(runner) = self.runner_mut(id) else {
            return;
        };
        let leg = runner.leg;
        if self.closing {
            return self.apply_after_end(id, effect);
        }
        match effect {
            Effect::Answer => self.answer_call(now),
            Effect::Say {
                parts,
                voice,
                language,
            } => self.load_prompt(
                id,
                PromptRequest::Say {
                    parts,
                    voice,
                    language,
                },
            ),
            Effect::Play { url } => self.load_prompt(id, PromptRequest::Play { url }),
            Effect::PlayDigits { digits } => {
                if let Some(runner) = self.runner_mut(id) {
                    runner.sending_digits = true;
                }
                self.out
                    .push(Action::Media(leg, MediaCommand::SendDigits(digits)));
            }
            Effect::Beep => {
                if let Some(runner) = self.runner_mut(id) {
                    runner.playing = true;
                }
                self.out
                    .push(Action::Media(leg, MediaCommand::Play(beep())));
            }
            Effect::StopPrompt => {
                let runner = match id {
                    RunnerId::Main => Some(&mut self.main),
                    RunnerId::Side => self.side.as_mut(),
                };
                if let Some(runner) = runner {
                    runner.stop_media(&mut self.out);
                }
            }
            Effect::Listen(settings) => {
                if let Some(runner) = self.runner_mut(id) {
                    runner.listening = true;
                }
                self.out.push(Action::Listen(leg, settings));
            }
            Effect::StopListening => {
                if let Some(runner) = self.runner_mut(id) {
                    runner.listening = false;
                }
                self.out.push(Action::StopListening(leg));
            }
            Effect::Record(settings) => {
                self.fetches_without_progress = 0;
                if let Some(runner) = self.runner_mut(id) {
                    runner.silence = settings.silence_timeout;
                }
                self.start_recording(leg, RecordingTap::Verb, record_verb_spec(settings));
            }
            Effect::StopRecording => {
                self.out
                    .push(Action::Media(leg, MediaCommand::DetectSilence(None)));
                if !self.stop_recording(leg, RecordingTap::Verb) {
                    self.feed(id, Event::RecordingFinished(None), now);
                }
            }
            Effect::Echo(on) => self.out.push(Action::Media(leg, MediaCommand::Echo(on))),
            Effect::Fetch {
                url,
                method,
                params,
            } => {
                self.fetches_without_progress += 1;
                if self.fetches_without_progress > MAX_FETCHES_WITHOUT_PROGRESS {
                    let ending = Ending::DocumentFailed {
                        code: ending::DOCUMENT_LOOP,
                        message: format!(
                            "{MAX_FETCHES_WITHOUT_PROGRESS} documents in a row were fetched with                              nothing played, heard or waited for: the document loops ({url})"
                        ),
                    };
                    return self.document_failed(id, ending, now);
                }
                self.fetch(id, DocumentSource::Url { url, method }, params)
            }
            Effect::Dial(dial) => match id {
                RunnerId::Main => {
                    self.fetches_without_progress = 0;
                    self.start_dial(*dial, now)
                }
                RunnerId::Side => {
                    tracing::warn!(call_sid = %self.leg(leg).record.sid, "<Dial> in a whisper document is not run");
                    let params = vec![("DialCallStatus".to_owned(), "failed".to_owned())];
                    self.feed(id, Event::DialDone { params }, now);
                }
            },
            Effect::Enqueue(enqueue) => {
                self.fetches_without_progress = 0;
                self.start_enqueue(*enqueue, now)
            }
            Effect::Leave => self.leave_queue(now),
            Effect::Finished => self.side_finished(now),
            Effect::Reject(reason) => match self.role_of(id) {
                Some(Role::DialWhisper) => self.whisper_refused(Ending::HungUp, now),
                _ => self.end_call(Ending::Rejected(reason), now),
            },
            Effect::Hangup => match self.role_of(id) {
                Some(Role::DialWhisper) => self.whisper_refused(Ending::HungUp, now),
                _ => self.end_call(Ending::HungUp, now),
            },
            Effect::Skipped { verb, line } => {
                tracing::warn!(call_sid = %self.leg(leg).record.sid, verb, line, "verb not supported yet; skipped");
            }
            Effect::NotAllowed { verb, line } => {
                let (rules, code) = self.role_of(id).unwrap_or(Role::QueueWait).rules();
                let message = format!(
                    "<{verb}> on line {line} of the document is skipped: {} may hold only {}",
                    rules.describe(),
                    rules.allowed()
                );
                self.out.push(Action::Warning { leg, code, message });
            }
            Effect::Unsupported {
                verb,
                attribute,
                line,
            } => {
                tracing::warn!(call_sid = %self.leg(leg).record.sid, verb, attribute, line, "attribute not available; the verb runs without it");
            }
        }
    }

    /// Effects once the call is over: a recording is still closed and an `action` still
    /// requested; everything else is moot.
    fn apply_after_end(&mut self, id: RunnerId, effect: Effect) {
        let Some(leg) = self.runner_mut(id).map(|r| r.leg) else {
            return;
        };
        match effect {
            Effect::StopRecording => {
                if !self.stop_recording(leg, RecordingTap::Verb) {
                    tracing::debug!("no recording to close after the call ended");
                }
            }
            Effect::Fetch {
                url,
                method,
                params,
            } => {
                let params = self.leg(leg).request_params(params);
                self.out.push(Action::Notify {
                    url,
                    method,
                    params,
                });
            }
            other => {
                tracing::debug!(effect = ?other, "effect after the call ended not carried out")
            }
        }
    }

    fn load_prompt(&mut self, id: RunnerId, request: PromptRequest) {
        let prompt = self.new_id();
        let Some(runner) = self.runner_mut(id) else {
            return;
        };
        runner.prompt = Some(prompt);
        let leg = runner.leg;
        self.out.push(Action::LoadPrompt {
            leg,
            prompt,
            request,
        });
    }

    fn role_of(&mut self, id: RunnerId) -> Option<Role> {
        self.runner_mut(id).map(|r| r.role)
    }

    /// Starts a document beside the call's own, on `leg`, for `role`, with `extra` parameters.
    pub(super) fn start_side(
        &mut self,
        leg: LegId,
        role: Role,
        source: Source,
        extra: Vec<(String, String)>,
    ) {
        self.side = Some(Runner::new(leg, role, None));
        self.fetch(
            RunnerId::Side,
            DocumentSource::Url {
                url: source.url,
                method: source.method,
            },
            extra,
        );
    }

    /// A side document ran to its end: a whisper or an announcement connects its leg, a wait
    /// document starts again.
    fn side_finished(&mut self, now: Instant) {
        match self.side.as_ref().map(|r| r.role) {
            Some(Role::DialWhisper) => self.whisper_finished(now),
            Some(Role::QueueAnnouncement) => {
                self.side = None;
                self.lend_to_agent(now);
            }
            Some(Role::QueueWait) => self.restart_wait(now),
            Some(Role::ConferenceMusic) => self.side = None,
            Some(Role::Call) | None => {}
        }
    }

    /// A document could not be loaded: the call's own ends the call once the caller heard
    /// that an application error occurred (`apology.rs`); a whisper refuses its leg; a
    /// queue's wait or announcement document is given up (the call waits with hold music, or
    /// goes on to its bridge).
    fn document_failed(&mut self, id: RunnerId, ending: Ending, now: Instant) {
        match self.role_of(id) {
            Some(Role::Call) | None => self.apologize(ending, now),
            Some(Role::DialWhisper) => self.whisper_refused(ending, now),
            Some(Role::QueueWait) => {
                self.side = None;
                self.play_hold_music();
            }
            Some(Role::QueueAnnouncement) => {
                self.side = None;
                self.lend_to_agent(now);
            }
            Some(Role::ConferenceMusic) => self.room_document_failed(),
        }
    }
}
