//! The per-call interpreter: a pure state machine that walks a document's verbs.
//!
//! The call task feeds it [`Event`]s with the current time and carries out the [`Effect`]s it
//! emits (answer, speak, play, fetch the next document, reject, hang up); the interpreter never
//! does I/O itself. Time enters only through `now`, for `<Pause>`.
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

use std::collections::VecDeque;
use std::time::Instant;

use reqwest::Url;

use crate::markup::ast::{Dial, Document, HttpMethod, PlaySource, RejectReason, Repeat, Verb};

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
    /// Speak text once; reply [`Event::PromptDone`].
    Say {
        text: String,
        voice: String,
        language: String,
    },
    /// Play the audio at `url` once; reply [`Event::PromptDone`].
    Play { url: String },
    /// Fetch the document at `url` with `params` added to the standard ones; reply
    /// [`Event::DocumentLoaded`] or [`Event::FetchFailed`].
    Fetch {
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    },
    /// Connect the caller to the dialled parties; reply [`Event::DialDone`].
    Dial(Box<Dial>),
    /// A whisper document reached its end: the callee may be connected.
    Finished,
    /// Refuse the unanswered call.
    Reject(RejectReason),
    /// End the call.
    Hangup,
    /// A verb this version does not execute; it is skipped (the call task logs it).
    Skipped { verb: &'static str, line: u32 },
}

/// What happened, for the interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The prompt asked for by the last `Say`/`Play` finished (or could not be played: the
    /// document goes on, as Twilio's does after a failed `<Play>`).
    PromptDone,
    /// The document asked for by the last `Fetch`, with the URL it came from.
    DocumentLoaded { document: Document, url: String },
    /// The last `Fetch` failed: the call ends.
    FetchFailed,
    /// The `Dial` is over; `params` are its `Dial*` results for the `action` request.
    DialDone { params: Vec<(String, String)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    Finished,
}

/// One call's document execution.
#[derive(Debug)]
pub struct Interpreter {
    verbs: Vec<Verb>,
    base_url: String,
    next: usize,
    answered: bool,
    /// A whisper document: its end means "connect", not "hang up".
    whisper: bool,
    state: State,
    effects: VecDeque<Effect>,
}

impl Interpreter {
    /// Starts on `document`, fetched from `url`; `answered` is true for calls that are already
    /// up (an outbound call the callee answered).
    pub fn new(document: Document, url: &str, answered: bool, now: Instant) -> Interpreter {
        let mut interp = Interpreter {
            verbs: document.verbs,
            base_url: url.to_owned(),
            next: 0,
            answered,
            whisper: false,
            state: State::Running,
            effects: VecDeque::new(),
        };
        interp.run(now);
        interp
    }

    /// Starts a whisper document on an answered callee (`<Sip url>`).
    pub fn whisper(document: Document, url: &str, now: Instant) -> Interpreter {
        let mut interp = Interpreter {
            verbs: document.verbs,
            base_url: url.to_owned(),
            next: 0,
            answered: true,
            whisper: true,
            state: State::Running,
            effects: VecDeque::new(),
        };
        interp.run(now);
        interp
    }

    /// Whether the document has run to its end (a `Hangup` or `Reject` was emitted).
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    pub fn handle(&mut self, event: Event, now: Instant) {
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
            (Event::DialDone { params }, State::Dialing { action }) => match action.clone() {
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
    /// API, as Twilio's `Calls/{sid}` update does).
    pub fn replace(&mut self, document: Document, url: &str, now: Instant) {
        self.verbs = document.verbs;
        self.base_url = url.to_owned();
        self.next = 0;
        self.effects.clear();
        self.state = State::Running;
        self.run(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Pausing { until } = self.state {
            if now >= until {
                self.state = State::Running;
                self.run(now);
            }
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Pausing { until } => Some(until),
            _ => None,
        }
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    fn answer(&mut self) {
        if !self.answered {
            self.answered = true;
            self.effects.push_back(Effect::Answer);
        }
    }

    fn finish(&mut self, effect: Effect) {
        self.state = State::Finished;
        self.effects.push_back(effect);
    }

    fn resolve(&self, url: &str) -> String {
        resolve_url(&self.base_url, url)
    }

    /// The effect that plays the current prompt verb (`next - 1`) once more.
    fn prompt_effect(&self) -> Option<Effect> {
        match self.verbs.get(self.next.checked_sub(1)?)? {
            Verb::Say(say) => Some(Effect::Say {
                text: say.plain_text(),
                voice: say.voice.clone(),
                language: say.language.clone(),
            }),
            Verb::Play(play) => match &play.source {
                PlaySource::Url(url) => Some(Effect::Play {
                    url: self.resolve(url),
                }),
                PlaySource::Digits(_) => None,
            },
            _ => None,
        }
    }

    /// Runs verbs until one has to wait for something.
    fn run(&mut self, now: Instant) {
        while self.state == State::Running {
            let Some(verb) = self.verbs.get(self.next).cloned() else {
                if self.whisper {
                    self.finish(Effect::Finished);
                } else {
                    self.answer();
                    self.finish(Effect::Hangup);
                }
                return;
            };
            self.next += 1;
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
                    if matches!(play.source, PlaySource::Url(_)) {
                        self.start_prompt(play.repeat);
                    } else {
                        self.skip(&verb);
                    }
                }
                Verb::Dial(dial) => {
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
        let remaining = match repeat {
            Repeat::Times(n) => Some(n.get() - 1),
            Repeat::Forever => None,
        };
        self.state = State::Prompting { remaining };
        if let Some(effect) = self.prompt_effect() {
            self.effects.push_back(effect);
        }
    }

    fn skip(&mut self, verb: &Verb) {
        self.effects.push_back(Effect::Skipped {
            verb: verb.name(),
            line: verb.position().line,
        });
    }
}

#[cfg(test)]
mod tests;
