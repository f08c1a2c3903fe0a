//! Prompt audio for the documents' verbs: `<Say>` spoken (split at SSML breaks, each text
//! part cached on its own), and the recording `<Record>` asks for.

use std::future::Future;
use std::pin::Pin;

use super::recording::RecordingSpec;
use crate::interp::{RecordSettings, SpeechPart};
use crate::media::library::{Audio, AudioError, AudioLibrary};
use crate::media::record::RecordingChannels;
use crate::store::RecordingSource;

/// Prompt audio on its way.
pub type PromptLoad = Pin<Box<dyn Future<Output = Result<Audio, AudioError>> + Send>>;

/// The recording `<Record>` asks for: the caller alone, mono.
pub fn record_verb_spec(settings: RecordSettings) -> RecordingSpec {
    RecordingSpec {
        source: RecordingSource::RecordVerb,
        channels: RecordingChannels::Inbound,
        trim_silence: settings.trim_silence,
        status_callback: settings.status_callback,
    }
}

/// `parts` spoken with `voice` and `language`, breaks as silence, as one prompt. Each text
/// part is cached on its own (by voice, language and text).
pub fn speak(
    library: AudioLibrary,
    parts: Vec<SpeechPart>,
    voice: String,
    language: String,
) -> PromptLoad {
    Box::pin(async move {
        let mut pieces = Vec::with_capacity(parts.len());
        for part in &parts {
            pieces.push(match part {
                SpeechPart::Text(text) => library.speech(text, &voice, &language).await?,
                SpeechPart::Break(length) => Audio::silence(*length),
            });
        }
        Ok(join(pieces))
    })
}

/// One piece as it is (sharing its samples), several one after the other.
fn join(mut pieces: Vec<Audio>) -> Audio {
    if pieces.len() == 1
        && let Some(piece) = pieces.pop()
    {
        return piece;
    }
    let len = pieces.iter().map(Audio::len).sum();
    let mut samples = Vec::with_capacity(len);
    for piece in &pieces {
        samples.extend_from_slice(piece.samples());
    }
    Audio::new(samples)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pieces_join_in_order_and_one_piece_is_shared() {
        let word = Audio::new(vec![7; 800]);
        let joined = join(vec![
            word.clone(),
            Audio::silence(Duration::from_millis(250)),
            word.clone(),
        ]);
        assert_eq!(joined.len(), 800 + 2000 + 800);
        assert!(joined.samples()[800..2800].iter().all(|&s| s == 0));
        assert_eq!(joined.samples()[2800], 7);
        assert!(join(vec![word.clone()]).shares_samples_with(&word));
        assert!(join(Vec::new()).is_empty());
    }
}
