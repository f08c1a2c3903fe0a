//! What a conference plays into its mix, as one piece of audio: an announcement
//! (`AnnounceUrl`: an audio file, or a document of `<Play>`, `<Say>`, `<Pause>` and
//! `<Redirect>`, as Twilio allows), the notification beep, and the seeds' force-mute
//! messages.
//!
//! A document is run by the interpreter on a clock of its own: each prompt is loaded and
//! appended, each pause becomes silence, a redirect fetches the next document. Verbs an
//! announcement may not hold are skipped (Twilio's 13238).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::Services;
use crate::call::core::is_audio_url;
use crate::call::document::{self, Source};
use crate::call::verbs::speak;
use crate::interp::{DocumentKind, Effect, Event, Interpreter};
use crate::media::library::{AUDIO_SAMPLE_RATE, Audio};
use crate::media::tone::sine;

/// The longest announcement rendered (a `<Play loop="0">` would never end).
const MAX_LENGTH: Duration = Duration::from_secs(300);
/// Redirects followed in one announcement.
const MAX_REDIRECTS: usize = 10;

/// The notification beep played when someone joins or leaves: two short rising tones.
pub fn beep() -> Audio {
    let mut samples = sine(660.0, 0.3, Duration::from_millis(120), AUDIO_SAMPLE_RATE);
    samples.extend_from_slice(Audio::silence(Duration::from_millis(40)).samples());
    samples.extend(sine(
        880.0,
        0.3,
        Duration::from_millis(160),
        AUDIO_SAMPLE_RATE,
    ));
    Audio::new(samples)
}

/// The built-in prompt of the seeds' message to a participant muted (or unmuted) by force or
/// by `*6`.
pub fn mute_message_url(muted: bool) -> &'static str {
    if muted {
        crate::media::builtin::MUTED_URL
    } else {
        crate::media::builtin::UNMUTED_URL
    }
}

/// The announcement at `source`, rendered.
pub async fn render(services: &Arc<Services>, source: &Source) -> Result<Audio, String> {
    if is_audio_url(&source.url) {
        return services
            .audio
            .fetch(&source.url)
            .await
            .map_err(|e| e.to_string());
    }
    let timeout = services.config.fetch_timeout;
    let loaded = document::load(&services.webhooks, source, &[], timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut clock = Instant::now();
    let mut interp = Interpreter::of_kind(
        DocumentKind::Music,
        loaded.document,
        &loaded.url,
        true,
        clock,
    );
    let mut samples: Vec<i16> = Vec::new();
    let mut redirects = 0;
    let max_samples = MAX_LENGTH.as_secs() as usize * AUDIO_SAMPLE_RATE as usize;
    loop {
        while let Some(effect) = interp.poll_effect() {
            let piece = match effect {
                Effect::Say {
                    parts,
                    voice,
                    language,
                } => Some(speak(services.audio.clone(), parts, voice, language).await),
                Effect::Play { url } => Some(services.audio.fetch(&url).await),
                Effect::Fetch { url, method, .. } if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    let next = Source { url, method };
                    match document::load(&services.webhooks, &next, &[], timeout).await {
                        Ok(loaded) => interp.handle(
                            Event::DocumentLoaded {
                                document: loaded.document,
                                url: loaded.url,
                            },
                            clock,
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "announcement redirect failed");
                            return Ok(Audio::new(samples));
                        }
                    }
                    None
                }
                Effect::NotAllowed { verb, line } => {
                    tracing::warn!(url = %source.url, verb, line, "verb not allowed in an announcement: skipped");
                    None
                }
                Effect::Fetch { .. } | Effect::Finished | Effect::Hangup | Effect::Reject(_) => {
                    return Ok(Audio::new(samples));
                }
                _ => None,
            };
            if let Some(piece) = piece {
                match piece {
                    Ok(audio) => {
                        clock += audio.duration();
                        samples.extend_from_slice(audio.samples());
                    }
                    Err(error) => {
                        tracing::warn!(url = %source.url, %error, "announcement prompt skipped")
                    }
                }
                interp.handle(Event::PromptDone, clock);
            }
            if samples.len() >= max_samples {
                return Ok(Audio::new(samples));
            }
        }
        let Some(deadline) = interp.poll_timeout() else {
            return Ok(Audio::new(samples));
        };
        let pause = deadline.saturating_duration_since(clock);
        samples.extend_from_slice(Audio::silence(pause).samples());
        clock = deadline;
        interp.handle_timeout(clock);
        if samples.len() >= max_samples {
            return Ok(Audio::new(samples));
        }
    }
}
