//! The per-call interpreter: a pure state machine that walks a document's verbs.
//!
//! The call task feeds it [`Event`]s with the current time and carries out the [`Effect`]s it
//! emits (answer, speak, play, send keys, record, echo, fetch the next document, reject, hang
//! up); the interpreter never does I/O itself. Time enters only through `now`, for `<Pause>`,
//! the `<Gather>` timeout, `<Record maxLength>` and `<Echo timeout>`.
//!
//! Answering follows the contract: the call is answered just before the first verb other than
//! `<Redirect>` or `<Reject>` runs; `<Reject>` before that rejects it (603, or 486 for
//! `reason="busy"`), after it hangs up. The end of a document hangs up.
//! Relative URLs (`<Redirect>`, `<Play>`, `action`) resolve against the URL of the current
//! document, as on Twilio.
//!
//! `<Dial>` answers first unless `answerOnBridge` is set; when it is over, its `action` is
//! requested with the dial's result (and that document replaces this one), or without an
//! `action` the document goes on with the next verb. A whisper document (`<Sip url>`, run on
//! the callee before it is connected) ends in [`Effect::Finished`] instead of hanging up.
//!
//! `<Enqueue>` puts the caller in a queue ([`Effect::Enqueue`]); when the caller leaves it, its
//! `action` is requested with the `Queue*` results ([`Event::QueueDone`]), or the document goes
//! on. A wait document ([`DocumentKind::Wait`]) runs only the verbs Twilio allows there
//! (others are skipped), `<Leave>` ends it with [`Effect::Leave`] and its end starts it again.
//!
//! `<Gather>` and `<Record>` are in `gather.rs` and `record.rs`. Keys pressed while neither runs
//! are dropped, not kept for a later `<Gather>`: Twilio hears only the keys pressed once a
//! `<Gather>` has begun (its advice is to nest the prompt in the `<Gather>` for that reason).
//! `<Echo>` sends the caller's audio back until its timeout, then the document goes on.
//! `<Say>` speaks its text split at SSML breaks ([`speech_parts`]).

mod gather;
pub mod journal;
mod record;
mod ssml;

use std::collections::VecDeque;
use std::time::Instant;

use reqwest::Url;

use crate::markup::ast::{
    Dial, DialTarget, Document, DocumentUse, Enqueue, HttpMethod, Party, Play, PlaySource,
    RejectReason, Repeat, Say, Verb, WaitUrl,
};
pub use gather::{SpeechResult, SpeechSettings};
pub use journal::VerbStep;
pub use record::{RecordSettings, RecordedAudio};
pub use ssml::{MAX_BREAK, SpeechPart, break_length, speech_parts};

/// `url` resolved against the URL of the document it appears in, as Twilio resolves
/// relative URLs; kept as written when either cannot be parsed.
pub fn resolve_url(base: &str, url: &str) -> String {
    Url::parse(base)
        .and_then(|base| base.join(url.trim()))
        .map(String::from)
        .unwrap_or_else(|_| url.trim().to_owned())
}

/// What the call task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer the call (200 OK with SDP).
    Answer,
    /// Speak once: the words of each text part, silence for each break; reply
    /// [`Event::PromptDone`].
    Say {
        parts: Vec<SpeechPart>,
        voice: String,
        language: String,
    },
    /// Play the audio at `url` once; reply [`Event::PromptDone`].
    Play { url: String },
    /// Send keys (`w` waits 0.5 s, `W` 1 s) to the caller; reply [`Event::PromptDone`] once
    /// they are sent.
    PlayDigits { digits: String },
    /// Play the beep that starts a recording; reply [`Event::PromptDone`].
    Beep,
    /// Stop the prompt playing now (a key barged in); no [`Event::PromptDone`] follows.
    StopPrompt,
    /// Listen for speech for a `<Gather>`; reply [`Event::Speech`] when something was said.
    Listen(SpeechSettings),
    /// Stop listening for speech.
    StopListening,
    /// Start recording the caller; reply [`Event::Silence`] when the silence timeout passes.
    Record(RecordSettings),
    /// Close the recording; reply [`Event::RecordingFinished`].
    StopRecording,
    /// Send the caller's audio back to them (`true`), or stop doing so.
    Echo(bool),
    /// Fetch the document at `url` with `params` added to the standard ones; reply
    /// [`Event::DocumentLoaded`] or [`Event::FetchFailed`].
    Fetch {
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    },
    /// Connect the caller to the dialled parties; reply [`Event::DialDone`].
    Dial(Box<Dial>),
    /// Put the caller in a queue (URLs resolved); reply [`Event::QueueDone`] when it leaves.
    Enqueue(Box<Enqueue>),
    /// `<Leave>` in a wait document: take the caller out of its queue.
    Leave,
    /// A whisper or wait document reached its end: the callee may be connected, the wait
    /// document starts again.
    Finished,
    /// Refuse the unanswered call.
    Reject(RejectReason),
    /// End the call.
    Hangup,
    /// A verb this version does not execute; it is skipped (the call task logs it).
    Skipped { verb: &'static str, line: u32 },
    /// A verb Twilio does not allow in a wait or music document (`<Enqueue waitUrl>`,
    /// `<Conference waitUrl>`): it is skipped, the call stays where it is, and reports the
    /// mistake.
    NotAllowed { verb: &'static str, line: u32 },
    /// An attribute this version cannot honour; the verb runs without it (the call task logs
    /// it).
    Unsupported {
        verb: &'static str,
        attribute: &'static str,
        line: u32,
    },
}

/// What happened, for the interpreter.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The prompt asked for by the last `Say`/`Play`/`PlayDigits`/`Beep` finished (or could
    /// not be played: the document goes on, as Twilio's does after a failed `<Play>`).
    PromptDone,
    /// The document asked for by the last `Fetch`, with the URL it came from.
    DocumentLoaded { document: Document, url: String },
    /// The last `Fetch` failed: the call ends.
    FetchFailed,
    /// The `Dial` is over; `params` are its `Dial*` results for the `action` request.
    DialDone { params: Vec<(String, String)> },
    /// The caller left the queue of its `Enqueue`; `params` are its `Queue*` results for the
    /// `action` request.
    QueueDone { params: Vec<(String, String)> },
    /// The caller pressed a key (`0`-`9`, `*`, `#`, `A`-`D`), however it arrived.
    Digit(char),
    /// The recognizer heard the caller say something.
    Speech(SpeechResult),
    /// The caller has been silent for the recording's timeout.
    Silence,
    /// The recording closed by `StopRecording`: what it holds, or `None` when it holds no
    /// audio or could not be made.
    RecordingFinished(Option<RecordedAudio>),
    /// The call is over (the caller hung up, or callml ended it). A `<Record>` under way still
    /// reports its recording to its `action`, as Twilio's does.
    CallEnded,
}

/// What a document runs for, which decides what its end means and which verbs it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A call's own document: its end hangs up.
    Call,
    /// A whisper on an answered callee (`<Sip url>`, `<Number url>`, `<Queue url>`): its end
    /// connects the parties ([`Effect::Finished`]).
    Whisper,
    /// An `<Enqueue waitUrl>` document: its end starts it again ([`Effect::Finished`]);
    /// `<Leave>` takes the caller out of the queue. Only the verbs Twilio allows there run
    /// ([`DocumentKind::allows`]); the others are skipped ([`Effect::NotAllowed`]).
    Wait,
    /// A conference's wait or hold music (`waitUrl`, `holdUrl`): only `<Play>`, `<Say>`,
    /// `<Pause>` and `<Redirect>` run; its end leaves silence ([`Effect::Finished`]).
    Music,
}

impl DocumentKind {
    /// Whether `verb` may run in a document of this kind (Twilio's rules, [`DocumentUse`]).
    pub fn allows(self, verb: &Verb) -> bool {
        match self {
            DocumentKind::Call | DocumentKind::Whisper => true,
            DocumentKind::Wait => DocumentUse::Wait.allows(verb),
            DocumentKind::Music => DocumentUse::Announcement.allows(verb),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Ready to run the verb at `next`.
    Running,
    /// A prompt is playing; `remaining` more times after it (`None` = until the call ends).
    Prompting {
        remaining: Option<u32>,
    },
    Pausing {
        until: Instant,
    },
    Fetching,
    Dialing {
        action: Option<(String, HttpMethod)>,
    },
    Enqueued {
        action: Option<(String, HttpMethod)>,
    },
    Gathering(Box<gather::Gathering>),
    Recording(Box<record::Recording>),
    Echoing {
        until: Instant,
    },
    Finished,
}

/// One call's document execution.
#[derive(Debug)]
pub struct Interpreter {
    verbs: Vec<Verb>,
    base_url: String,
    next: usize,
    answered: bool,
    /// What the end of the document means.
    kind: DocumentKind,
    state: State,
    effects: VecDeque<Effect>,
    /// The verb running (its name and line), for the journal.
    current: Option<(&'static str, u32)>,
    /// Verbs started and ended, for the call's capture ([`Interpreter::poll_verb`]).
    journal: VecDeque<VerbStep>,
}

impl Interpreter {
    /// Starts on `document`, fetched from `url`; `answered` is true for calls that are already
    /// up (an outbound call the callee answered).
    pub fn new(document: Document, url: &str, answered: bool, now: Instant) -> Interpreter {
        Interpreter::of_kind(DocumentKind::Call, document, url, answered, now)
    }

    /// Starts a whisper document on an answered callee (`<Sip url>`).
    pub fn whisper(document: Document, url: &str, now: Instant) -> Interpreter {
        Interpreter::of_kind(DocumentKind::Whisper, document, url, true, now)
    }

    /// Starts a document of `kind`.
    pub fn of_kind(
        kind: DocumentKind,
        document: Document,
        url: &str,
        answered: bool,
        now: Instant,
    ) -> Interpreter {
        let mut interp = Interpreter {
            verbs: document.verbs,
            base_url: url.to_owned(),
            next: 0,
            answered,
            kind,
            state: State::Running,
            effects: VecDeque::new(),
            current: None,
            journal: VecDeque::new(),
        };
        interp.run(now);
        interp
    }

    /// Whether the document has run to its end (a `Hangup` or `Reject` was emitted, or the
    /// call ended during a `<Record>` that had nothing to report).
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    pub fn handle(&mut self, event: Event, now: Instant) {
        match &event {
            Event::CallEnded => self.end_verb(journal::outcome::CALL_ENDED),
            Event::FetchFailed => self.end_verb(journal::outcome::FAILED),
            Event::DialDone { params } => self.end_verb_with(params, "DialCallStatus"),
            Event::QueueDone { params } => self.end_verb_with(params, "QueueResult"),
            _ => {}
        }
        match self.state {
            State::Gathering(_) => return self.gather_event(event, now),
            State::Recording(_) => return self.record_event(event, now),
            _ => {}
        }
        match (event, &self.state) {
            (Event::PromptDone, State::Prompting { remaining }) => match remaining {
                Some(0) => {
                    self.state = State::Running;
                    self.run(now);
                }
                _ => {
                    let remaining = remaining.map(|n| n - 1);
                    self.state = State::Prompting { remaining };
                    if let Some(effect) = self.prompt_effect() {
                        self.effects.push_back(effect);
                    }
                }
            },
            (Event::DocumentLoaded { document, url }, State::Fetching) => {
                self.verbs = document.verbs;
                self.base_url = url;
                self.next = 0;
                self.state = State::Running;
                self.run(now);
            }
            (Event::FetchFailed, State::Fetching) => self.finish(Effect::Hangup),
            (Event::DialDone { params }, State::Dialing { action })
            | (Event::QueueDone { params }, State::Enqueued { action }) => match action.clone() {
                Some((url, method)) => {
                    self.state = State::Fetching;
                    self.effects.push_back(Effect::Fetch {
                        url,
                        method,
                        params,
                    });
                }
                None => {
                    self.state = State::Running;
                    self.run(now);
                }
            },
            (event, state) => {
                tracing::debug!(?event, ?state, "interpreter ignored an event");
            }
        }
    }

    /// Abandons whatever runs now and starts `document` (a live redirect through the REST
    /// API, as Twilio's `Calls/{sid}` update does). The effects that stop the abandoned verb's
    /// media (prompt, echo, recording, listening) come first.
    pub fn replace(&mut self, document: Document, url: &str, now: Instant) {
        self.end_verb(journal::outcome::REDIRECTED);
        let cleanup = self.abandon();
        self.verbs = document.verbs;
        self.base_url = url.to_owned();
        self.next = 0;
        self.effects.clear();
        self.effects.extend(cleanup);
        self.state = State::Running;
        self.run(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Pausing { until } if now >= until => {
                self.state = State::Running;
                self.run(now);
            }
            State::Echoing { until } if now >= until => {
                self.effects.push_back(Effect::Echo(false));
                self.state = State::Running;
                self.run(now);
            }
            State::Gathering(_) => self.gather_timeout(now),
            State::Recording(_) => self.record_timeout(now),
            _ => {}
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Pausing { until } | State::Echoing { until } => Some(*until),
            State::Gathering(gathering) => gathering.deadline(),
            State::Recording(recording) => recording.deadline(),
            _ => None,
        }
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The call ended: the verb running ends in the journal with `call-ended` (only a
    /// `<Record>` is told [`Event::CallEnded`], by the call core, to report its recording).
    pub fn call_ended(&mut self) {
        self.end_verb(journal::outcome::CALL_ENDED);
    }

    /// The next verb started or ended, oldest first.
    pub fn poll_verb(&mut self) -> Option<VerbStep> {
        self.journal.pop_front()
    }

    /// Journals the end of the verb running, if one is.
    fn end_verb(&mut self, outcome: &str) {
        if let Some((verb, line)) = self.current.take() {
            self.journal.push_back(VerbStep::Ended {
                verb,
                line,
                outcome: outcome.to_owned(),
            });
        }
    }

    /// Journals the end of a `<Dial>` or `<Enqueue>` with its result parameter `name`.
    fn end_verb_with(&mut self, params: &[(String, String)], name: &str) {
        let result = params
            .iter()
            .find(|(n, _)| n == name)
            .map_or(journal::outcome::COMPLETED, |(_, value)| value.as_str())
            .to_owned();
        self.end_verb(&result);
    }

    /// Journals the start of `verb` (ending the one before it).
    fn begin_verb(&mut self, verb: &Verb) {
        self.end_verb(journal::outcome::COMPLETED);
        let (name, line) = (verb.name(), verb.position().line);
        self.journal.push_back(VerbStep::Started {
            verb: name,
            line,
            attributes: journal::attributes(verb),
        });
        self.current = Some((name, line));
    }

    fn answer(&mut self) {
        if !self.answered {
            self.answered = true;
            self.effects.push_back(Effect::Answer);
        }
    }

    fn finish(&mut self, effect: Effect) {
        self.end_verb(journal::outcome::COMPLETED);
        self.state = State::Finished;
        self.effects.push_back(effect);
    }

    fn resolve(&self, url: &str) -> String {
        resolve_url(&self.base_url, url)
    }

    /// Makes the URLs a `<Dial>` hands to the call layer absolute, against the document
    /// that holds it: `recordingStatusCallback`, each party's `url` and `statusCallback`, and
    /// a conference's `statusCallback`, `recordingStatusCallback`, `eventCallbackUrl` and
    /// `waitUrl`.
    fn resolve_dial_urls(&self, dial: &mut Dial) {
        let resolve = |url: &mut Option<String>| {
            if let Some(relative) = url.as_mut() {
                *relative = self.resolve(relative);
            }
        };
        resolve(&mut dial.recording_status_callback.url);
        match &mut dial.target {
            DialTarget::Sip(nouns) => {
                for noun in nouns {
                    resolve(&mut noun.url.url);
                    resolve(&mut noun.status_callback.url);
                }
            }
            DialTarget::Parties(nouns) => {
                for noun in nouns {
                    let (url, status_callback) = match noun {
                        Party::Number(number) => (&mut number.url, &mut number.status_callback),
                        Party::Client(client) => (&mut client.url, &mut client.status_callback),
                    };
                    resolve(&mut url.url);
                    resolve(&mut status_callback.url);
                }
            }
            DialTarget::Queue(queue) => resolve(&mut queue.url.url),
            DialTarget::Conference(conference) => {
                resolve(&mut conference.status_callback);
                resolve(&mut conference.recording_status_callback.url);
                resolve(&mut conference.event_callback_url);
                if let WaitUrl::Url(url) = &mut conference.wait {
                    *url = self.resolve(url);
                }
            }
        }
    }

    /// The effects that stop what the current verb has running.
    fn abandon(&self) -> Vec<Effect> {
        match &self.state {
            State::Prompting { .. } => vec![Effect::StopPrompt],
            State::Echoing { .. } => vec![Effect::Echo(false)],
            State::Gathering(gathering) => gathering.abandon(),
            State::Recording(recording) => recording.abandon(),
            _ => Vec::new(),
        }
    }

    /// The effect that speaks `say` once.
    fn say_effect(say: &Say) -> Effect {
        Effect::Say {
            parts: speech_parts(say),
            voice: say.voice.clone(),
            language: say.language.clone(),
        }
    }

    /// The effect that plays `play` once.
    fn play_effect(&self, play: &Play) -> Effect {
        match &play.source {
            PlaySource::Url(url) => Effect::Play {
                url: self.resolve(url),
            },
            PlaySource::Digits(digits) => Effect::PlayDigits {
                digits: digits.as_str().to_owned(),
            },
        }
    }

    /// The effect that plays the current prompt verb (`next - 1`) once more.
    fn prompt_effect(&self) -> Option<Effect> {
        match self.verbs.get(self.next.checked_sub(1)?)? {
            Verb::Say(say) => Some(Self::say_effect(say)),
            Verb::Play(play) => Some(self.play_effect(play)),
            _ => None,
        }
    }

    /// Runs verbs until one has to wait for something.
    fn run(&mut self, now: Instant) {
        while self.state == State::Running {
            let Some(verb) = self.verbs.get(self.next).cloned() else {
                self.end_verb(journal::outcome::COMPLETED);
                if self.kind == DocumentKind::Call {
                    self.answer();
                    self.finish(Effect::Hangup);
                } else {
                    self.finish(Effect::Finished);
                }
                return;
            };
            self.next += 1;
            self.begin_verb(&verb);
            if !self.kind.allows(&verb) {
                self.end_verb(journal::outcome::NOT_ALLOWED);
                self.effects.push_back(Effect::NotAllowed {
                    verb: verb.name(),
                    line: verb.position().line,
                });
                continue;
            }
            match verb {
                Verb::Redirect(redirect) => {
                    self.state = State::Fetching;
                    self.effects.push_back(Effect::Fetch {
                        url: self.resolve(&redirect.url),
                        method: redirect.method,
                        params: Vec::new(),
                    });
                }
                Verb::Reject(reject) => {
                    if self.answered {
                        self.finish(Effect::Hangup);
                    } else {
                        self.finish(Effect::Reject(reject.reason));
                    }
                }
                Verb::Hangup(_) => {
                    self.answer();
                    self.finish(Effect::Hangup);
                }
                Verb::Pause(pause) => {
                    self.answer();
                    self.state = State::Pausing {
                        until: now + pause.length,
                    };
                }
                Verb::Say(ref say) => {
                    self.answer();
                    self.start_prompt(say.repeat);
                }
                Verb::Play(ref play) => {
                    self.answer();
                    self.start_prompt(play.repeat);
                }
                Verb::Gather(gather) => {
                    self.answer();
                    self.start_gather(gather, now);
                }
                Verb::Record(record) => {
                    self.answer();
                    self.start_record(record, now);
                }
                Verb::Echo(echo) => {
                    self.answer();
                    self.effects.push_back(Effect::Echo(true));
                    self.state = State::Echoing {
                        until: now + echo.timeout,
                    };
                }
                Verb::Enqueue(mut enqueue) => {
                    self.answer();
                    let action = enqueue
                        .action
                        .url
                        .as_deref()
                        .map(|url| (self.resolve(url), enqueue.action.method));
                    if let WaitUrl::Url(url) = &mut enqueue.wait {
                        *url = self.resolve(url);
                    }
                    self.state = State::Enqueued { action };
                    self.effects.push_back(Effect::Enqueue(Box::new(enqueue)));
                }
                Verb::Leave(_) if self.kind == DocumentKind::Wait => {
                    self.finish(Effect::Leave);
                }
                Verb::Dial(mut dial) => {
                    self.resolve_dial_urls(&mut dial);
                    if !dial.answer_on_bridge {
                        self.answer();
                    }
                    let action = dial
                        .action
                        .url
                        .as_deref()
                        .map(|url| (self.resolve(url), dial.action.method));
                    self.state = State::Dialing { action };
                    self.effects.push_back(Effect::Dial(Box::new(dial)));
                }
                other => {
                    self.answer();
                    self.skip(&other);
                }
            }
        }
    }

    fn start_prompt(&mut self, repeat: Repeat) {
        self.state = State::Prompting {
            remaining: remaining_after_first(repeat),
        };
        if let Some(effect) = self.prompt_effect() {
            self.effects.push_back(effect);
        }
    }

    fn skip(&mut self, verb: &Verb) {
        self.end_verb(journal::outcome::SKIPPED);
        self.effects.push_back(Effect::Skipped {
            verb: verb.name(),
            line: verb.position().line,
        });
    }
}

/// How many more times a prompt plays after its first time (`None`: until stopped).
fn remaining_after_first(repeat: Repeat) -> Option<u32> {
    match repeat {
        Repeat::Times(n) => Some(n.get() - 1),
        Repeat::Forever => None,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod verb_tests;
