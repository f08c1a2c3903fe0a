//! Prompts shipped inside the binary, played by `callml:` URLs without any HTTP or program:
//! `callml:welcome.wav` is the built-in welcome call's prompt, so a first call on a machine
//! with nothing but callml is never silent; `callml:muted.wav` and `callml:unmuted.wav` are
//! what a conference participant that observes force mute hears when it is muted or unmuted
//! (the Vonage and OpenTok seeds' English messages); `callml:application_error.wav` is what a
//! caller hears, as on Twilio, before callml hangs up because the call's document could not be
//! fetched or parsed ("We are sorry, an application error has occurred. Goodbye.").
//!
//! Each prompt is `assets/NAME.txt` spoken by espeak-ng (callml's default `<Say>` voice) and
//! stored as 8 kHz mono µ-law WAV, `assets/NAME.wav` (8 KB a second); the text lives only in
//! that file, and `scripts/render-welcome` renders the WAV from it.

/// The scheme of built-in prompts.
pub const SCHEME: &str = "callml:";
/// The welcome call's prompt.
pub const WELCOME_URL: &str = "callml:welcome.wav";
/// What the welcome prompt says.
pub const WELCOME_TEXT: &str = include_str!("../../assets/welcome.txt");

/// A conference participant muted by force or by `*6`.
pub const MUTED_URL: &str = "callml:muted.wav";
/// A conference participant unmuted.
pub const UNMUTED_URL: &str = "callml:unmuted.wav";

/// The call's own document could not be fetched or parsed: Twilio's apology, then goodbye.
pub const APPLICATION_ERROR_URL: &str = "callml:application_error.wav";

/// Every built-in prompt: its URL and its WAV file.
const PROMPTS: &[(&str, &[u8])] = &[
    (WELCOME_URL, include_bytes!("../../assets/welcome.wav")),
    (MUTED_URL, include_bytes!("../../assets/muted.wav")),
    (UNMUTED_URL, include_bytes!("../../assets/unmuted.wav")),
    (
        APPLICATION_ERROR_URL,
        include_bytes!("../../assets/application_error.wav"),
    ),
];

/// Whether `url` names a built-in prompt (one that exists or not).
pub fn is_builtin(url: &str) -> bool {
    url.get(..SCHEME.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
}

/// The WAV file of the built-in prompt `url`.
pub fn prompt(url: &str) -> Option<&'static [u8]> {
    PROMPTS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(url.trim()))
        .map(|(_, wav)| *wav)
}

/// The URLs of every built-in prompt, for messages: `callml:welcome.wav`.
pub fn listed() -> String {
    let names: Vec<&str> = PROMPTS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::decode::decode_audio;
    use crate::media::tone::rms_level;

    #[test]
    fn callml_urls_name_the_shipped_prompts() {
        assert!(is_builtin("callml:welcome.wav") && is_builtin("CALLML:x"));
        assert!(!is_builtin("https://example.com/callml:welcome.wav"));
        assert!(prompt("callml:welcome.wav").is_some());
        assert!(prompt("callml:nothing.wav").is_none());
        assert_eq!(
            listed(),
            "callml:welcome.wav, callml:muted.wav, callml:unmuted.wav, \
             callml:application_error.wav"
        );
    }

    /// The mute messages and the application error are short speech, each its text (a few
    /// words) spoken.
    #[test]
    fn the_short_messages_are_short_speech() {
        for (url, text) in [
            (MUTED_URL, include_str!("../../assets/muted.txt")),
            (UNMUTED_URL, include_str!("../../assets/unmuted.txt")),
            (
                APPLICATION_ERROR_URL,
                include_str!("../../assets/application_error.txt"),
            ),
        ] {
            let samples = decode_audio(prompt(url).unwrap(), 8000).unwrap();
            let seconds = samples.len() as f64 / 8000.0;
            let words = text.split_whitespace().count() as f64;
            assert!(
                (0.3..0.8 * words + 1.0).contains(&seconds),
                "{url}: {seconds:.2} s for {words} words"
            );
            assert!(rms_level(&samples) > 0.03, "{url} is not silence");
        }
    }

    /// The welcome prompt is small, 8 kHz, speech-loud, and as long as its text spoken at
    /// espeak-ng's 175 words a minute (give or take the pauses at its commas and stops).
    #[test]
    fn the_welcome_prompt_is_its_text_spoken() {
        let wav = prompt(WELCOME_URL).unwrap();
        assert!(wav.len() < 300 * 1024, "{} bytes", wav.len());
        let samples = decode_audio(wav, 8000).unwrap();
        let seconds = samples.len() as f64 / 8000.0;
        let words = WELCOME_TEXT.split_whitespace().count() as f64;
        let expected = words / 175.0 * 60.0;
        assert!(
            (0.8 * expected..1.3 * expected).contains(&seconds),
            "{words} words in {seconds:.1} s; spoken, about {expected:.1} s: run scripts/render-welcome"
        );
        assert!(rms_level(&samples) > 0.03, "not silence");
        assert!(WELCOME_TEXT.contains("callml") && WELCOME_TEXT.contains("voice URL"));
    }
}
