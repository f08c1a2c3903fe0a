//! `<Gather>`: collect keys (and speech, when a recognizer listens) while its nested
//! `<Say>`/`<Play>`/`<Pause>` prompts run, as Twilio documents it.
//!
//! ```text
//! start ─▶ Listen (input has speech) ─▶ prompts in order ──(all done)──▶ wait `timeout`
//!            a key during a prompt: StopPrompt (barge-in), then wait `timeout` for the next
//! key in finishOnKey, after digits ─▶ done, FinishedOnKey = key (the key is not a digit)
//! key in finishOnKey, no digits yet ─▶ ignored: Twilio's finish key cannot end an empty gather
//! numDigits reached ─▶ done │ timeout with no new key ─▶ done │ speech heard ─▶ done
//! done with input, or actionOnEmptyResult ─▶ Fetch action (default: this document's URL)
//!      with Digits and FinishedOnKey ("" unless a key ended it), or SpeechResult, Confidence
//! done without input ─▶ the document goes on after the <Gather>
//! ```
//!
//! The timeout starts when the prompts are over and restarts at each key. Twilio sends
//! `FinishedOnKey` on every `<Gather>` request, empty when no finish key ended it; so does
//! callml.

use std::time::Instant;

use super::{Effect, Event, Interpreter, State, remaining_after_first};
use crate::markup::ast::{
    DtmfKey, Gather, GatherChild, GatherInput, HttpMethod, Keyword, SpeechTimeout,
};

/// How a `<Gather>` listening for speech wants it recognized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechSettings {
    /// BCP-47 tag, e.g. `en-US`.
    pub language: String,
    pub hints: Vec<String>,
    pub speech_timeout: SpeechTimeout,
    pub speech_model: Option<String>,
    pub profanity_filter: bool,
    pub enhanced: bool,
}

impl SpeechSettings {
    fn of(gather: &Gather) -> SpeechSettings {
        SpeechSettings {
            language: gather.language.clone(),
            hints: gather.hints.clone(),
            speech_timeout: gather.speech_timeout,
            speech_model: gather.speech_model.clone(),
            profanity_filter: gather.profanity_filter,
            enhanced: gather.enhanced,
        }
    }
}

/// What a recognizer heard.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechResult {
    pub text: String,
    /// From 0.0 to 1.0.
    pub confidence: f64,
}

/// A `<Gather>` under way.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Gathering {
    gather: Gather,
    /// Where the result goes: `action`, or the current document's URL.
    action: (String, HttpMethod),
    /// The child to run after the current one.
    next_child: usize,
    phase: Phase,
    digits: String,
    listening: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Child `next_child - 1` is playing; `remaining` more times after this one.
    Prompt { remaining: Option<u32> },
    /// A nested `<Pause>` runs until `until`.
    Pause { until: Instant },
    /// Prompts over or interrupted: the gather ends at `until` unless a key comes.
    Waiting { until: Instant },
}

impl Gathering {
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Pause { until } | Phase::Waiting { until } => Some(until),
            Phase::Prompt { .. } => None,
        }
    }

    /// Effects that stop what the gather has running.
    pub(super) fn abandon(&self) -> Vec<Effect> {
        let mut effects = Vec::new();
        if matches!(self.phase, Phase::Prompt { .. }) {
            effects.push(Effect::StopPrompt);
        }
        if self.listening {
            effects.push(Effect::StopListening);
        }
        effects
    }

    fn is_finish_key(&self, key: char) -> bool {
        let mut buf = [0u8; 4];
        DtmfKey::from_keyword(key.encode_utf8(&mut buf))
            .is_some_and(|key| self.gather.finish_on_key.contains(key))
    }

    fn has_enough_digits(&self) -> bool {
        self.gather
            .num_digits
            .is_some_and(|n| self.digits.chars().count() >= n.get() as usize)
    }
}

/// How a gather ended.
enum Ending {
    FinishKey(char),
    Input,
    Speech(SpeechResult),
}

impl Interpreter {
    pub(super) fn start_gather(&mut self, gather: Gather, now: Instant) {
        let url = match gather.action.url.as_deref() {
            Some(url) => self.resolve(url),
            None => self.base_url.clone(),
        };
        let listening = gather.input != GatherInput::Dtmf;
        if listening {
            self.effects
                .push_back(Effect::Listen(SpeechSettings::of(&gather)));
        }
        let mut gathering = Gathering {
            action: (url, gather.action.method),
            gather,
            next_child: 0,
            phase: Phase::Waiting { until: now },
            digits: String::new(),
            listening,
        };
        self.next_gather_prompt(&mut gathering, now);
        self.state = State::Gathering(Box::new(gathering));
    }

    /// Starts the next child, or the wait for keys after the last one.
    fn next_gather_prompt(&mut self, gathering: &mut Gathering, now: Instant) {
        let Some(child) = gathering.gather.children.get(gathering.next_child) else {
            gathering.phase = Phase::Waiting {
                until: now + gathering.gather.timeout,
            };
            return;
        };
        gathering.next_child += 1;
        gathering.phase = match child {
            GatherChild::Say(say) => {
                self.effects.push_back(Self::say_effect(say));
                Phase::Prompt {
                    remaining: remaining_after_first(say.repeat),
                }
            }
            GatherChild::Play(play) => {
                let effect = self.play_effect(play);
                self.effects.push_back(effect);
                Phase::Prompt {
                    remaining: remaining_after_first(play.repeat),
                }
            }
            GatherChild::Pause(pause) => Phase::Pause {
                until: now + pause.length,
            },
        };
    }

    /// The current prompt child once more.
    fn repeat_gather_prompt(&mut self, gathering: &Gathering) {
        let child = gathering
            .next_child
            .checked_sub(1)
            .and_then(|index| gathering.gather.children.get(index));
        let effect = match child {
            Some(GatherChild::Say(say)) => Self::say_effect(say),
            Some(GatherChild::Play(play)) => self.play_effect(play),
            _ => return,
        };
        self.effects.push_back(effect);
    }

    pub(super) fn gather_event(&mut self, event: Event, now: Instant) {
        let State::Gathering(mut gathering) = std::mem::replace(&mut self.state, State::Running)
        else {
            return;
        };
        match event {
            Event::PromptDone => {
                if let Phase::Prompt { remaining } = gathering.phase {
                    match remaining {
                        Some(0) => self.next_gather_prompt(&mut gathering, now),
                        _ => {
                            gathering.phase = Phase::Prompt {
                                remaining: remaining.map(|n| n - 1),
                            };
                            self.repeat_gather_prompt(&gathering);
                        }
                    }
                }
            }
            Event::Digit(key) => {
                self.barge_in(&gathering);
                if gathering.is_finish_key(key) {
                    if !gathering.digits.is_empty() {
                        return self.end_gather(*gathering, Ending::FinishKey(key), now);
                    }
                } else {
                    gathering.digits.push(key);
                    if gathering.has_enough_digits() {
                        return self.end_gather(*gathering, Ending::Input, now);
                    }
                }
                gathering.phase = Phase::Waiting {
                    until: now + gathering.gather.timeout,
                };
            }
            Event::Speech(result) => {
                self.barge_in(&gathering);
                return self.end_gather(*gathering, Ending::Speech(result), now);
            }
            other => tracing::debug!(event = ?other, "the gather ignored an event"),
        }
        self.state = State::Gathering(gathering);
    }

    /// Input arrived: a prompt still playing stops.
    fn barge_in(&mut self, gathering: &Gathering) {
        if matches!(gathering.phase, Phase::Prompt { .. }) {
            self.effects.push_back(Effect::StopPrompt);
        }
    }

    pub(super) fn gather_timeout(&mut self, now: Instant) {
        let State::Gathering(mut gathering) = std::mem::replace(&mut self.state, State::Running)
        else {
            return;
        };
        match gathering.phase {
            Phase::Pause { until } if now >= until => {
                self.next_gather_prompt(&mut gathering, now);
            }
            Phase::Waiting { until } if now >= until => {
                return self.end_gather(*gathering, Ending::Input, now);
            }
            _ => {}
        }
        self.state = State::Gathering(gathering);
    }

    fn end_gather(&mut self, gathering: Gathering, ending: Ending, now: Instant) {
        if gathering.listening {
            self.effects.push_back(Effect::StopListening);
        }
        let params = match ending {
            Ending::Speech(result) => vec![
                ("SpeechResult".to_owned(), result.text),
                ("Confidence".to_owned(), result.confidence.to_string()),
            ],
            Ending::FinishKey(_) | Ending::Input
                if gathering.digits.is_empty() && !gathering.gather.action_on_empty_result =>
            {
                self.state = State::Running;
                return self.run(now);
            }
            Ending::FinishKey(key) => vec![
                ("Digits".to_owned(), gathering.digits),
                ("FinishedOnKey".to_owned(), key.to_string()),
            ],
            Ending::Input => vec![
                ("Digits".to_owned(), gathering.digits),
                ("FinishedOnKey".to_owned(), String::new()),
            ],
        };
        let (url, method) = gathering.action;
        self.state = State::Fetching;
        self.effects.push_back(Effect::Fetch {
            url,
            method,
            params,
        });
    }
}
