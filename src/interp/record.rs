//! `<Record>`: record the caller, as Twilio documents it.
//!
//! ```text
//! start ─▶ Beep (playBeep) ─▶ Record ──┬─ a key of finishOnKey ─▶ Digits = the key
//!                                      ├─ `timeout` seconds of silence (Event::Silence)
//!                                      ├─ maxLength reached
//!                                      └─ the call ends ─▶ Digits = "hangup"
//!        ─▶ StopRecording ─▶ RecordingFinished
//!             audio ─▶ Fetch action (default: this document's URL) with RecordingUrl,
//!                      RecordingSid, RecordingDuration and Digits (when a key or the hangup
//!                      ended it) — also after the call ended, as Twilio does
//!             no audio (empty, or it failed) ─▶ the document goes on after the <Record>
//! ```
//!
//! `transcribe` is not available: the verb records without it and says so.

use std::time::{Duration, Instant};

use super::{Effect, Event, Interpreter, State};
use crate::markup::ast::{
    DtmfKey, HttpMethod, Keyword, KeywordSet, Record, RecordingStatusCallback, Trim,
};

/// What `Effect::Record` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    /// Cut leading and trailing silence when the recording closes.
    pub trim_silence: bool,
    /// Silence that ends the recording; `None`: silence never does.
    pub silence_timeout: Option<Duration>,
    /// `recordingStatusCallback*`, its URL resolved against the document.
    pub status_callback: RecordingStatusCallback,
}

/// A closed recording with audio in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAudio {
    /// `RE` + 32 hex.
    pub sid: String,
    /// Where the audio can be fetched (`RecordingUrl`).
    pub url: String,
    /// Whole seconds.
    pub duration: u32,
}

/// A `<Record>` under way.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Recording {
    action: (String, HttpMethod),
    finish_on_key: KeywordSet<DtmfKey>,
    max_length: Duration,
    settings: RecordSettings,
    phase: Phase,
    /// The call ended: whatever happens, the document does not go on.
    call_ended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Beep,
    Recording {
        until: Instant,
    },
    /// `StopRecording` was sent; `digits` is what ended the recording.
    Closing {
        digits: Option<String>,
    },
}

impl Recording {
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Recording { until } => Some(until),
            _ => None,
        }
    }

    /// Effects that stop what the recording has running.
    pub(super) fn abandon(&self) -> Vec<Effect> {
        match self.phase {
            Phase::Beep => vec![Effect::StopPrompt],
            Phase::Recording { .. } => vec![Effect::StopRecording],
            Phase::Closing { .. } => Vec::new(),
        }
    }

    fn is_finish_key(&self, key: char) -> bool {
        let mut buf = [0u8; 4];
        DtmfKey::from_keyword(key.encode_utf8(&mut buf))
            .is_some_and(|key| self.finish_on_key.contains(key))
    }
}

impl Interpreter {
    pub(super) fn start_record(&mut self, record: Record, now: Instant) {
        let line = record.position.line;
        if record.transcribe || record.transcribe_callback.is_some() {
            self.effects.push_back(Effect::Unsupported {
                verb: "Record",
                attribute: "transcribe",
                line,
            });
        }
        let url = match record.action.url.as_deref() {
            Some(url) => self.resolve(url),
            None => self.base_url.clone(),
        };
        let mut status_callback = record.recording_status_callback;
        status_callback.url = status_callback.url.map(|url| self.resolve(&url));
        let mut recording = Recording {
            action: (url, record.action.method),
            finish_on_key: record.finish_on_key,
            max_length: record.max_length,
            settings: RecordSettings {
                trim_silence: record.trim == Trim::TrimSilence,
                silence_timeout: record.timeout,
                status_callback,
            },
            phase: Phase::Beep,
            call_ended: false,
        };
        if record.play_beep {
            self.effects.push_back(Effect::Beep);
        } else {
            self.begin_recording(&mut recording, now);
        }
        self.state = State::Recording(Box::new(recording));
    }

    fn begin_recording(&mut self, recording: &mut Recording, now: Instant) {
        self.effects
            .push_back(Effect::Record(recording.settings.clone()));
        recording.phase = Phase::Recording {
            until: now + recording.max_length,
        };
    }

    fn close_recording(&mut self, recording: &mut Recording, digits: Option<String>) {
        self.effects.push_back(Effect::StopRecording);
        recording.phase = Phase::Closing { digits };
    }

    pub(super) fn record_event(&mut self, event: Event, now: Instant) {
        let State::Recording(mut recording) = std::mem::replace(&mut self.state, State::Running)
        else {
            return;
        };
        match (event, &recording.phase) {
            (Event::PromptDone, Phase::Beep) => self.begin_recording(&mut recording, now),
            (Event::Digit(key), Phase::Recording { .. }) if recording.is_finish_key(key) => {
                self.close_recording(&mut recording, Some(key.to_string()));
            }
            (Event::Silence, Phase::Recording { .. }) => {
                self.close_recording(&mut recording, None);
            }
            (Event::CallEnded, Phase::Beep) => {
                self.state = State::Finished;
                return;
            }
            (Event::CallEnded, Phase::Recording { .. }) => {
                recording.call_ended = true;
                self.close_recording(&mut recording, Some("hangup".to_owned()));
            }
            (Event::CallEnded, Phase::Closing { .. }) => recording.call_ended = true,
            // A recording that could not start reports at once.
            (Event::RecordingFinished(audio), Phase::Recording { .. }) => {
                return self.end_record(*recording, audio, None, now);
            }
            (Event::RecordingFinished(audio), Phase::Closing { digits }) => {
                let digits = digits.clone();
                return self.end_record(*recording, audio, digits, now);
            }
            (other, _) => tracing::debug!(event = ?other, "the recording ignored an event"),
        }
        self.state = State::Recording(recording);
    }

    pub(super) fn record_timeout(&mut self, now: Instant) {
        let State::Recording(mut recording) = std::mem::replace(&mut self.state, State::Running)
        else {
            return;
        };
        if recording.deadline().is_some_and(|until| now >= until) {
            self.close_recording(&mut recording, None);
        }
        self.state = State::Recording(recording);
    }

    fn end_record(
        &mut self,
        recording: Recording,
        audio: Option<RecordedAudio>,
        digits: Option<String>,
        now: Instant,
    ) {
        let Some(audio) = audio else {
            // Twilio: an empty recording is not reported; the document goes on.
            if recording.call_ended {
                self.state = State::Finished;
            } else {
                self.state = State::Running;
                self.run(now);
            }
            return;
        };
        let mut params = vec![
            ("RecordingUrl".to_owned(), audio.url),
            ("RecordingSid".to_owned(), audio.sid),
            ("RecordingDuration".to_owned(), audio.duration.to_string()),
        ];
        if let Some(digits) = digits {
            params.push(("Digits".to_owned(), digits));
        }
        let (url, method) = recording.action;
        self.state = State::Fetching;
        self.effects.push_back(Effect::Fetch {
            url,
            method,
            params,
        });
    }
}
