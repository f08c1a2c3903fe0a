//! Ringback tones (`<Dial ringTone>`): what a caller hears while the dialled parties ring.
//! Frequencies and cadences follow ITU-T E.180 Supplement 2 (national tones), with amplitude
//! modulated tones (Japan, Singapore, South Africa) rendered as their carrier. One cycle of the
//! cadence is rendered at 8 kHz, once per tone for the whole process (a ringing call shares
//! it: 96 KB for the United States' six seconds, where each call once rendered its own); the
//! caller's stream loops it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::library::Audio;
use super::tone::{samples_for, sine};
use crate::markup::ast::RingTone;

/// Frequencies mixed together, and (on, off) periods in milliseconds.
struct Cadence {
    frequencies: &'static [f64],
    periods: &'static [(u64, u64)],
}

const fn cadence(frequencies: &'static [f64], periods: &'static [(u64, u64)]) -> Cadence {
    Cadence {
        frequencies,
        periods,
    }
}

/// The European tone most countries use: 425 Hz, 1 s on, 4 s off.
const EUROPEAN: Cadence = cadence(&[425.0], &[(1000, 4000)]);
/// The British double ring: 0.4 s on, 0.2 s off, 0.4 s on, 2 s off.
const DOUBLE: [(u64, u64); 2] = [(400, 200), (400, 2000)];

fn of(tone: RingTone) -> Cadence {
    use RingTone::*;
    match tone {
        Us => cadence(&[440.0, 480.0], &[(2000, 4000)]),
        UsOld => cadence(&[420.0], &[(2000, 4000)]),
        Tw => cadence(&[440.0, 480.0], &[(1000, 2000)]),
        Uk | Au | Nz => cadence(&[400.0, 450.0], &DOUBLE),
        In | Za => cadence(&[400.0], &DOUBLE),
        My | Sg => cadence(&[425.0], &DOUBLE),
        Jp => cadence(&[400.0], &[(1000, 2000)]),
        Cn => cadence(&[450.0], &[(1000, 4000)]),
        Il => cadence(&[400.0], &[(1000, 3000)]),
        Cl => cadence(&[400.0], &[(1000, 3000)]),
        Th => cadence(&[400.0], &[(1000, 4000)]),
        Fr => cadence(&[440.0], &[(1500, 3500)]),
        Ru => cadence(&[425.0], &[(800, 3200)]),
        At | Be | Bg | Br | Ch | Cz | De | Dk | Ee | Es | Fi | Gr | Hu | It | Lt | Mx | Nl | No
        | Ph | Pl | Pt | Se | Ve => EUROPEAN,
    }
}

/// Level of each component, about −19 dBm0 when two are mixed.
const AMPLITUDE: f64 = 0.08;
const RATE: u32 = 8000;

/// The tones rendered so far, shared by every call that rings with them.
static RENDERED: Mutex<Vec<(RingTone, Audio)>> = Mutex::new(Vec::new());

/// One cycle of the ringback of `tone` (the United States' when `None`, as on Twilio),
/// rendered once and shared.
pub fn ringback(tone: Option<RingTone>) -> Audio {
    let tone = tone.unwrap_or(RingTone::Us);
    let mut rendered = RENDERED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, audio)) = rendered.iter().find(|(known, _)| *known == tone) {
        return audio.clone();
    }
    let audio = render(tone);
    rendered.push((tone, audio.clone()));
    audio
}

/// One cycle of the cadence of `tone` at 8 kHz.
fn render(tone: RingTone) -> Audio {
    let cadence = of(tone);
    let mut samples: Vec<i16> = Vec::new();
    for &(on, off) in cadence.periods {
        let on = Duration::from_millis(on);
        let mut burst = vec![0i32; samples_for(on, RATE)];
        for &frequency in cadence.frequencies {
            for (slot, sample) in burst.iter_mut().zip(sine(frequency, AMPLITUDE, on, RATE)) {
                *slot += i32::from(sample);
            }
        }
        samples.extend(
            burst
                .into_iter()
                .map(|s| s.clamp(i16::MIN.into(), i16::MAX.into()) as i16),
        );
        samples.resize(
            samples.len() + samples_for(Duration::from_millis(off), RATE),
            0,
        );
    }
    Audio::new(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tone_level;

    #[test]
    fn us_ringback_is_two_seconds_of_440_and_480_hz_then_four_of_silence() {
        let audio = ringback(None);
        assert_eq!(audio.duration(), Duration::from_secs(6));
        let on = &audio.samples()[..16000];
        assert!(tone_level(on, 440.0, RATE) > 0.05);
        assert!(tone_level(on, 480.0, RATE) > 0.05);
        assert!(tone_level(on, 425.0, RATE) < tone_level(on, 440.0, RATE));
        assert!(audio.samples()[16000..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_tone_is_rendered_once_and_shared() {
        let first = ringback(Some(RingTone::Fr));
        let again = ringback(Some(RingTone::Fr));
        assert!(again.shares_samples_with(&first));
        assert!(ringback(None).shares_samples_with(&ringback(Some(RingTone::Us))));
        assert!(!ringback(Some(RingTone::Jp)).shares_samples_with(&first));
    }

    #[test]
    fn every_country_has_a_tone_and_a_cadence() {
        use crate::markup::ast::Keyword;
        for &tone in RingTone::ALL {
            let audio = ringback(Some(tone));
            assert!(audio.duration() >= Duration::from_secs(3), "{tone}");
            assert!(audio.samples().iter().any(|&s| s != 0), "{tone}");
        }
        let uk = ringback(Some(RingTone::Uk));
        assert_eq!(uk.duration(), Duration::from_millis(3000));
        assert!(tone_level(&uk.samples()[..3200], 400.0, RATE) > 0.05);
    }
}
