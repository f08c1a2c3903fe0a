//! The call's own document failed (it could not be fetched or parsed, or it loops): as on
//! Twilio, the caller is answered if it was not yet, hears "We are sorry, an application
//! error has occurred. Goodbye." (`callml:application_error.wav`, shipped in the binary) and
//! only then is hung up, with the document's [`Ending`] (its 11xxx, 12100 or 14106 code and
//! message in the record and the `completed` callback).
//!
//! ```text
//! document failed ─▶ [200 OK] ─▶ load the prompt ─▶ play it ─▶ played out ─▶ BYE
//!                                 └ cannot load ─────────────────────────────▶ BYE
//!                    the caller hangs up meanwhile ─▶ ended, with the document's ending
//!                    nothing played out within APOLOGY_LIMIT ──────────────────▶ BYE
//! ```
//! A whisper's, a queue's or a conference's own documents fail as before (`runner.rs`): the
//! leg they run on is not the caller's conversation with the application.

use std::time::{Duration, Instant};

use super::timers::Timer;
use super::{Action, CallCore, LegId, MediaCommand, PromptRequest};
use crate::call::ending::Ending;
use crate::media::builtin::APPLICATION_ERROR_URL;
use crate::media::library::{AudioError, Prompt};

/// The longest the apology may take, from the failure to the hang-up (the prompt lasts 3.5 s):
/// a prompt that never plays out does not keep the call.
pub const APOLOGY_LIMIT: Duration = Duration::from_secs(10);

/// The apology under way: how the call ends once it has been heard.
#[derive(Debug)]
pub struct Apology {
    ending: Ending,
    /// The prompt being loaded.
    prompt: Option<u64>,
    playing: bool,
}

impl CallCore {
    /// The call's own document failed with `ending`: the caller hears the apology first,
    /// unless the call's media is elsewhere (a bridge, a queue, a conference) or it is over.
    pub(super) fn apologize(&mut self, ending: Ending, now: Instant) {
        let leg = self.leg(LegId::CALL);
        let media_elsewhere =
            self.dial.is_some() || self.membership.is_some() || self.conference.is_some();
        if self.closing || leg.is_ended() || self.placing.is_some() || media_elsewhere {
            return self.end_call(ending, now);
        }
        tracing::info!(call_sid = %leg.record.sid, "the caller hears that an application error occurred, then callml hangs up");
        self.main.drop_document(&mut self.out);
        self.answer_call(now);
        let prompt = self.new_id();
        self.apology = Some(Apology {
            ending,
            prompt: Some(prompt),
            playing: false,
        });
        self.timers.set(Timer::Apology, now + APOLOGY_LIMIT);
        self.out.push(Action::LoadPrompt {
            leg: LegId::CALL,
            prompt,
            request: PromptRequest::Play {
                url: APPLICATION_ERROR_URL.to_owned(),
            },
        });
    }

    /// Whether `prompt` is the apology's prompt being loaded.
    pub(super) fn is_apology_prompt(&self, prompt: u64) -> bool {
        self.apology
            .as_ref()
            .is_some_and(|a| a.prompt == Some(prompt))
    }

    /// The apology's prompt, loaded (or not): it plays, or the call ends at once.
    pub(super) fn apology_loaded(&mut self, result: Result<Prompt, AudioError>, now: Instant) {
        let Some(apology) = self.apology.as_mut() else {
            return;
        };
        apology.prompt = None;
        match result {
            Ok(Prompt::Clip(audio)) if !audio.is_empty() => {
                apology.playing = true;
                self.out
                    .push(Action::Media(LegId::CALL, MediaCommand::Play(audio)));
            }
            other => {
                if let Err(error) = other {
                    tracing::error!(%error, "the application error prompt could not be loaded");
                }
                self.apology_heard(now);
            }
        }
    }

    /// The call's leg played out what it was given: the apology, if it was playing, is over.
    /// False when no apology was playing.
    pub(super) fn apology_played_out(&mut self, now: Instant) -> bool {
        if !self.apology.as_ref().is_some_and(|a| a.playing) {
            return false;
        }
        self.apology_heard(now);
        true
    }

    /// The apology is over (heard, or given up on): callml hangs up with the document's ending.
    pub(super) fn apology_heard(&mut self, now: Instant) {
        if let Some(apology) = self.apology.take() {
            self.timers.stop(Timer::Apology);
            self.end_call(apology.ending, now);
        }
    }

    /// How the call ends when it ends during an apology: with the document's failure, whoever
    /// hangs up.
    pub(super) fn ending_over_apology(&mut self, ending: Ending) -> Ending {
        match self.apology.take() {
            Some(apology) => {
                self.timers.stop(Timer::Apology);
                apology.ending
            }
            None => ending,
        }
    }
}
