//! Speech input for `<Gather input="speech">` (and `"dtmf speech"`): a pluggable recognizer.
//!
//! callml ships no speech-to-text engine. [`Services::recognizer`](super::Services) holds a
//! [`SpeechRecognizer`]; the default, [`NoRecognizer`], reports that none is configured. The
//! call then logs a warning (once per call) and the `<Gather>` takes keys only, so documents
//! that ask for speech still run. An engine plugs in by implementing the two traits: the
//! session hands each [`Recognition`] the caller's audio every 20 ms and passes its final
//! result to the interpreter (`SpeechResult`, `Confidence` on the `action` request).
//! `partialResultCallback` would carry a recognizer's interim results; with none configured it
//! does not apply.

use thiserror::Error;

use crate::interp::{SpeechResult, SpeechSettings};

/// Why speech cannot be recognized.
#[derive(Debug, Error)]
pub enum RecognizerError {
    #[error("no speech recognizer is configured; <Gather> takes keys only")]
    NotConfigured,
    #[error("the speech recognizer failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A speech-to-text engine.
pub trait SpeechRecognizer: Send + Sync {
    /// Starts recognizing one `<Gather>`'s speech.
    fn start(&self, settings: &SpeechSettings) -> Result<Box<dyn Recognition>, RecognizerError>;
}

/// One `<Gather>`'s recognition.
pub trait Recognition: Send {
    /// Takes 20 ms of the caller's audio, 8 kHz mono.
    fn push(&mut self, frame: &[i16]);
    /// What the caller said, once they have finished saying it.
    fn poll_result(&mut self) -> Option<SpeechResult>;
}

/// The default: no engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecognizer;

impl SpeechRecognizer for NoRecognizer {
    fn start(&self, _: &SpeechSettings) -> Result<Box<dyn Recognition>, RecognizerError> {
        Err(RecognizerError::NotConfigured)
    }
}
