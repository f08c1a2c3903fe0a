//! Tone generation and single-frequency measurement.
//!
//! [`sine`] renders a pure tone (beeps, test signals); [`beep`] is the recording beep with
//! short raised-cosine edges so it does not click. [`tone_level`] measures how strongly one
//! frequency is present with the Goertzel algorithm (one DFT bin, O(n), no allocation), which
//! tests use to check frequencies and in-band DTMF detection will build on.

use std::f64::consts::PI;
use std::time::Duration;

/// Frequency of the recording beep, in Hz.
pub const BEEP_FREQUENCY_HZ: f64 = 1000.0;
/// Length of the recording beep.
pub const BEEP_DURATION: Duration = Duration::from_millis(250);
/// Peak amplitude of the recording beep, as a fraction of full scale (about -8 dBFS).
pub const BEEP_AMPLITUDE: f64 = 0.4;
/// Length of the fade in and fade out of the beep.
const BEEP_RAMP: Duration = Duration::from_millis(5);

/// Number of samples `duration` lasts at `sample_rate`, rounded to the nearest sample.
pub fn samples_for(duration: Duration, sample_rate: u32) -> usize {
    (duration.as_secs_f64() * f64::from(sample_rate)).round() as usize
}

/// A sine of `frequency_hz` at `amplitude` (fraction of full scale, clamped to 0..=1), lasting
/// `duration`, at `sample_rate` Hz, starting at phase zero.
pub fn sine(frequency_hz: f64, amplitude: f64, duration: Duration, sample_rate: u32) -> Vec<i16> {
    let peak = amplitude.clamp(0.0, 1.0) * f64::from(i16::MAX);
    let step = 2.0 * PI * frequency_hz / f64::from(sample_rate);
    (0..samples_for(duration, sample_rate))
        .map(|n| (peak * (step * n as f64).sin()).round() as i16)
        .collect()
}

/// The recording beep at `sample_rate` Hz.
pub fn beep(sample_rate: u32) -> Vec<i16> {
    let mut samples = sine(
        BEEP_FREQUENCY_HZ,
        BEEP_AMPLITUDE,
        BEEP_DURATION,
        sample_rate,
    );
    let ramp = samples_for(BEEP_RAMP, sample_rate).min(samples.len() / 2);
    let len = samples.len();
    for i in 0..ramp {
        let gain = 0.5 - 0.5 * (PI * i as f64 / ramp as f64).cos();
        for index in [i, len - 1 - i] {
            samples[index] = (f64::from(samples[index]) * gain).round() as i16;
        }
    }
    samples
}

/// Amplitude of `frequency_hz` in `samples` (at `sample_rate`), as a fraction of full scale:
/// a full-scale sine at that frequency measures about 1.0, silence 0.0. Uses the Goertzel
/// recurrence; accurate when the signal spans several periods of the frequency.
pub fn tone_level(samples: &[i16], frequency_hz: f64, sample_rate: u32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let omega = 2.0 * PI * frequency_hz / f64::from(sample_rate);
    let coefficient = 2.0 * omega.cos();
    let (mut previous, mut before_previous) = (0.0f64, 0.0f64);
    for &sample in samples {
        let current =
            f64::from(sample) / f64::from(i16::MAX) + coefficient * previous - before_previous;
        before_previous = previous;
        previous = current;
    }
    let power = previous * previous + before_previous * before_previous
        - coefficient * previous * before_previous;
    2.0 * power.max(0.0).sqrt() / samples.len() as f64
}

/// Root-mean-square level of `samples` as a fraction of full scale.
pub fn rms_level(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&sample| {
            let value = f64::from(sample) / f64::from(i16::MAX);
            value * value
        })
        .sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_has_the_requested_length_amplitude_and_frequency() {
        let tone = sine(440.0, 0.5, Duration::from_millis(500), 8000);
        assert_eq!(tone.len(), 4000);
        let peak = tone
            .iter()
            .map(|sample| sample.unsigned_abs())
            .max()
            .unwrap();
        assert!((16_000..=16_384).contains(&peak), "peak {peak}");
        assert!((tone_level(&tone, 440.0, 8000) - 0.5).abs() < 0.01);
        assert!(tone_level(&tone, 1000.0, 8000) < 0.01);
        assert!((rms_level(&tone) - 0.5 / 2f64.sqrt()).abs() < 0.01);
    }

    #[test]
    fn amplitude_is_clamped_to_full_scale() {
        let tone = sine(1000.0, 3.0, Duration::from_millis(10), 8000);
        assert_eq!(tone.iter().copied().max(), Some(i16::MAX));
    }

    #[test]
    fn beep_fades_in_and_out() {
        let samples = beep(8000);
        assert_eq!(samples.len(), 2000);
        assert_eq!((samples[0], samples[samples.len() - 1]), (0, 0));
        let middle = &samples[800..1200];
        assert!(tone_level(middle, BEEP_FREQUENCY_HZ, 8000) > 0.38);
        assert!(
            samples[..5]
                .iter()
                .all(|sample| sample.unsigned_abs() < 2000)
        );
    }

    #[test]
    fn empty_input_measures_silence() {
        assert_eq!(tone_level(&[], 440.0, 8000), 0.0);
        assert_eq!(rms_level(&[]), 0.0);
    }
}
