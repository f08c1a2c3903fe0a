//! What a document did, verb by verb, for the call's capture (the console's timeline): each
//! verb's start with its name, line and main attributes, and its end with the outcome. Kept
//! beside the interpreter's effects, never in their way: the call core drains it after each
//! step ([`super::Interpreter::poll_verb`]). Twilio's Call Events resource has no verbs, so
//! they stay out of `Events.json`.

use std::time::Duration;

use crate::markup::ast::{Action, DialTarget, Party, PlaySource, Repeat, Verb, WaitUrl};

/// Characters of a `<Say>`'s text kept in its attributes.
const MAX_TEXT: usize = 200;

/// How a verb ended, besides the results of `<Dial>` and `<Enqueue>` (their
/// `DialCallStatus` and `QueueResult`).
pub mod outcome {
    /// It ran to its end and the document went on.
    pub const COMPLETED: &str = "completed";
    /// The document it asked for could not be fetched: the call ends.
    pub const FAILED: &str = "failed";
    /// A REST update replaced the document while it ran.
    pub const REDIRECTED: &str = "redirected";
    /// The call ended while it ran.
    pub const CALL_ENDED: &str = "call-ended";
    /// This version does not run it.
    pub const SKIPPED: &str = "skipped";
    /// Not allowed in this kind of document (a wait or music document).
    pub const NOT_ALLOWED: &str = "not-allowed";
}

/// One step of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerbStep {
    Started {
        verb: &'static str,
        line: u32,
        attributes: Vec<(&'static str, String)>,
    },
    Ended {
        verb: &'static str,
        line: u32,
        outcome: String,
    },
}

impl VerbStep {
    /// The step as JSON for the capture (`event`: `started` or `ended`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            VerbStep::Started {
                verb,
                line,
                attributes,
            } => {
                let attributes: serde_json::Map<String, serde_json::Value> = attributes
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), value.clone().into()))
                    .collect();
                serde_json::json!({
                    "event": "started", "verb": verb, "line": line, "attributes": attributes,
                })
            }
            VerbStep::Ended {
                verb,
                line,
                outcome,
            } => serde_json::json!({
                "event": "ended", "verb": verb, "line": line, "outcome": outcome,
            }),
        }
    }
}

fn seconds(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 {
        format!("{}", duration.as_secs())
    } else {
        format!("{seconds}")
    }
}

fn repeat(out: &mut Vec<(&'static str, String)>, repeat: Repeat) {
    match repeat {
        Repeat::Times(n) if n.get() == 1 => {}
        Repeat::Times(n) => out.push(("loop", n.to_string())),
        Repeat::Forever => out.push(("loop", "0".to_owned())),
    }
}

fn action(out: &mut Vec<(&'static str, String)>, action: &Action) {
    if let Some(url) = &action.url {
        out.push(("action", url.clone()));
        out.push(("method", action.method.to_string()));
    }
}

/// The attributes that say what `verb` does, as the document would spell them (defaults
/// included where they matter, like a `<Dial>`'s `timeout`).
pub fn attributes(verb: &Verb) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match verb {
        Verb::Say(say) => {
            out.push(("voice", say.voice.clone()));
            out.push(("language", say.language.clone()));
            repeat(&mut out, say.repeat);
            out.push(("text", say.plain_text().chars().take(MAX_TEXT).collect()));
        }
        Verb::Play(play) => {
            match &play.source {
                PlaySource::Url(url) => out.push(("url", url.clone())),
                PlaySource::Digits(digits) => out.push(("digits", digits.as_str().to_owned())),
            }
            repeat(&mut out, play.repeat);
        }
        Verb::Pause(pause) => out.push(("length", seconds(pause.length))),
        Verb::Gather(gather) => {
            out.push(("input", gather.input.to_string()));
            action(&mut out, &gather.action);
            out.push(("timeout", seconds(gather.timeout)));
            if let Some(n) = gather.num_digits {
                out.push(("numDigits", n.to_string()));
            }
        }
        Verb::Record(record) => {
            action(&mut out, &record.action);
            out.push(("maxLength", seconds(record.max_length)));
            if let Some(timeout) = record.timeout {
                out.push(("timeout", seconds(timeout)));
            }
            out.push(("playBeep", record.play_beep.to_string()));
        }
        Verb::Dial(dial) => {
            action(&mut out, &dial.action);
            out.push(("timeout", seconds(dial.timeout)));
            out.push(("timeLimit", seconds(dial.time_limit)));
            if let Some(caller_id) = &dial.caller_id {
                out.push(("callerId", caller_id.clone()));
            }
            out.push(("record", dial.record.to_string()));
            if dial.answer_on_bridge {
                out.push(("answerOnBridge", "true".to_owned()));
            }
            if dial.sequential {
                out.push(("sequential", "true".to_owned()));
            }
            dial_target(&mut out, &dial.target);
        }
        Verb::Redirect(redirect) => {
            out.push(("url", redirect.url.clone()));
            out.push(("method", redirect.method.to_string()));
        }
        Verb::Reject(reject) => out.push(("reason", reject.reason.to_string())),
        Verb::Enqueue(enqueue) => {
            out.push(("name", enqueue.name.clone()));
            action(&mut out, &enqueue.action);
            if let WaitUrl::Url(url) = &enqueue.wait {
                out.push(("waitUrl", url.clone()));
            }
        }
        Verb::Refer(refer) => {
            action(&mut out, &refer.action);
            out.push(("Sip", refer.target.to_string()));
        }
        Verb::Echo(echo) => out.push(("timeout", seconds(echo.timeout))),
        Verb::Hangup(_) | Verb::Leave(_) => {}
    }
    out
}

/// The nouns a `<Dial>` rings, each under its element's name (several joined by spaces).
fn dial_target(out: &mut Vec<(&'static str, String)>, target: &DialTarget) {
    let joined = |items: Vec<String>| items.join(" ");
    match target {
        DialTarget::Sip(nouns) => out.push((
            "Sip",
            joined(
                nouns
                    .iter()
                    .flat_map(|sip| sip.uris.iter().map(|choice| choice.uri.to_string()))
                    .collect(),
            ),
        )),
        DialTarget::Parties(parties) => {
            let numbers: Vec<String> = parties
                .iter()
                .filter_map(|party| match party {
                    Party::Number(number) => Some(number.number.clone()),
                    Party::Client(_) => None,
                })
                .collect();
            let clients: Vec<String> = parties
                .iter()
                .filter_map(|party| match party {
                    Party::Client(client) => Some(client.identity.clone()),
                    Party::Number(_) => None,
                })
                .collect();
            if !numbers.is_empty() {
                out.push(("Number", joined(numbers)));
            }
            if !clients.is_empty() {
                out.push(("Client", joined(clients)));
            }
        }
        DialTarget::Conference(conference) => out.push(("Conference", conference.name.clone())),
        DialTarget::Queue(queue) => out.push(("Queue", queue.name.clone())),
    }
}
