//! The built-in hold music: what a queued call hears when its `<Enqueue>` names no `waitUrl`
//! (Twilio plays a classical playlist there). A short, soft arpeggio rendered once at 8 kHz —
//! each note a sine with its octave, shaped by an attack and a decay so nothing clicks — and
//! shared by every call (the samples are reference-counted); the call loops it.

use std::f64::consts::PI;
use std::sync::OnceLock;

use super::library::{AUDIO_SAMPLE_RATE, Audio};

/// Notes of one cycle, in Hz (C major and A minor arpeggios, up and down).
const NOTES: [f64; 16] = [
    261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 261.63, 329.63, 220.00, 261.63, 329.63, 440.00,
    329.63, 261.63, 220.00, 261.63,
];
/// Length of one note.
const NOTE_MS: u32 = 375;
/// Peak amplitude, as a fraction of full scale (about -14 dBFS: background music).
const AMPLITUDE: f64 = 0.2;

/// The hold music, rendered on first use.
pub fn hold_music() -> Audio {
    static MUSIC: OnceLock<Audio> = OnceLock::new();
    MUSIC.get_or_init(render).clone()
}

fn render() -> Audio {
    let rate = f64::from(AUDIO_SAMPLE_RATE);
    let per_note = (AUDIO_SAMPLE_RATE * NOTE_MS / 1000) as usize;
    let mut samples = Vec::with_capacity(per_note * NOTES.len());
    for frequency in NOTES {
        for n in 0..per_note {
            let t = n as f64 / rate;
            let progress = n as f64 / per_note as f64;
            // A quick attack, then an exponential decay to near silence at the note's end.
            let envelope = (progress * 20.0).min(1.0) * (-4.0 * progress).exp();
            let wave = (2.0 * PI * frequency * t).sin() + 0.3 * (4.0 * PI * frequency * t).sin();
            let value = AMPLITUDE * envelope * wave / 1.3 * f64::from(i16::MAX);
            samples.push(value as i16);
        }
    }
    Audio::new(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tone_level;

    #[test]
    fn the_hold_music_is_six_seconds_of_audible_notes_shared_by_every_call() {
        let music = hold_music();
        assert_eq!(music.len(), 16 * 3000);
        assert!(music.shares_samples_with(&hold_music()), "rendered once");
        let first_note = &music.samples()[200..2800];
        let fundamental = tone_level(first_note, 261.63, AUDIO_SAMPLE_RATE);
        let elsewhere = tone_level(first_note, 700.0, AUDIO_SAMPLE_RATE);
        assert!(
            fundamental > 0.03 && fundamental > 10.0 * elsewhere,
            "the first note is a C: {fundamental} against {elsewhere}"
        );
        let peak = music
            .samples()
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((3000..9000).contains(&peak), "soft, not silent: {peak}");
        let note_end = music.samples()[2990];
        assert!(
            note_end.unsigned_abs() < 800,
            "each note fades out: {note_end}"
        );
    }
}
