//! In-band DTMF detection on 8 kHz audio (ITU-T Q.23 frequencies, Q.24 timing).
//!
//! Samples are cut into blocks of [`BLOCK`] samples (12.75 ms); each block is measured at the
//! eight DTMF frequencies with the Goertzel algorithm (one DFT bin each, evaluated at the exact
//! frequency). A block holds a key when all of these hold:
//! - level: each of the two tones is above about -44 dBFS;
//! - peak: the strongest row tone and the strongest column tone exceed every other tone of
//!   their group by 8 dB;
//! - twist: the column tone is at most 4 dB stronger (normal twist) and at most 8 dB weaker
//!   (reverse twist) than the row tone;
//! - purity: the two tones carry at least 80% of the block's energy. Speech spreads its energy
//!   over many harmonics and formants, so this is what keeps voices from dialling.
//!
//! A key is reported when two consecutive blocks hold it (at least 25.5 ms of tone; every tone
//! of 40 ms or more spans two whole blocks) and re-armed after two blocks without it, so one
//! press is one key and a short drop-out inside a tone does not double it.

use std::f32::consts::PI;

use super::{Digit, DigitSource};

/// Sample rate the detector works at.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples per analysis block.
pub const BLOCK: usize = 102;
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Smallest amplitude of each tone (in 16-bit units; about -44 dBFS).
const MIN_AMPLITUDE: f32 = 200.0;
/// Power ratios: 8 dB peak margin within a group, 4 dB normal and 8 dB reverse twist.
const PEAK_RATIO: f32 = 6.3;
const NORMAL_TWIST: f32 = 2.5;
const REVERSE_TWIST: f32 = 6.3;
/// Share of the block's energy the two tones must carry.
const MIN_PURITY: f32 = 0.8;
/// Blocks a key must be present to be reported, and absent to be released.
const BLOCKS_TO_DETECT: u8 = 2;
const BLOCKS_TO_RELEASE: u8 = 2;

/// The row and column frequencies of `key` (`0`-`9`, `*`, `#`, `A`-`D`), in Hz.
pub(super) fn key_frequencies(key: char) -> Option<(f32, f32)> {
    let key = key.to_ascii_uppercase();
    KEYS.iter().enumerate().find_map(|(row, keys)| {
        keys.iter()
            .position(|&k| k == key)
            .map(|column| (ROWS[row], COLUMNS[column]))
    })
}

/// Goertzel coefficients `2 cos(2π f / fs)` of the eight DTMF frequencies.
fn coefficients() -> [f32; 8] {
    let mut coefficients = [0.0; 8];
    for (coefficient, frequency) in coefficients.iter_mut().zip(ROWS.iter().chain(&COLUMNS)) {
        *coefficient = 2.0 * (2.0 * PI * frequency / SAMPLE_RATE as f32).cos();
    }
    coefficients
}

/// Finds DTMF keys in 8 kHz audio, frame after frame.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    coefficients: [f32; 8],
    block: [f32; BLOCK],
    filled: usize,
    candidate: Option<char>,
    candidate_blocks: u8,
    /// The key being held (reported already) and how many blocks it has been missing.
    held: Option<char>,
    missing_blocks: u8,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    pub fn new() -> InbandDetector {
        InbandDetector {
            coefficients: coefficients(),
            block: [0.0; BLOCK],
            filled: 0,
            candidate: None,
            candidate_blocks: 0,
            held: None,
            missing_blocks: 0,
        }
    }

    /// Takes the next 8 kHz samples (any length); returns a key that began in them.
    pub fn process(&mut self, samples: &[i16]) -> Option<Digit> {
        let mut found = None;
        for &sample in samples {
            self.block[self.filled] = f32::from(sample);
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                let key = self.analyse();
                if let Some(digit) = self.step(key) {
                    found.get_or_insert(digit);
                }
            }
        }
        found.map(|digit| Digit {
            digit,
            source: DigitSource::Inband,
        })
    }

    /// The key one block holds, if any.
    fn analyse(&self) -> Option<char> {
        let mut powers = [0.0f32; 8];
        for (power, &coefficient) in powers.iter_mut().zip(&self.coefficients) {
            let (mut previous, mut before) = (0.0f32, 0.0f32);
            for &sample in &self.block {
                let current = sample + coefficient * previous - before;
                before = previous;
                previous = current;
            }
            *power = previous * previous + before * before - coefficient * previous * before;
        }
        let energy: f32 = self.block.iter().map(|sample| sample * sample).sum();
        let (row, row_power) = strongest(&powers[..4])?;
        let (column, column_power) = strongest(&powers[4..])?;

        // A tone of amplitude A gives a Goertzel power of (A N / 2)².
        let min_power = (MIN_AMPLITUDE * BLOCK as f32 / 2.0).powi(2);
        let loud_enough = row_power >= min_power && column_power >= min_power;
        let twist_ok =
            column_power <= row_power * NORMAL_TWIST && row_power <= column_power * REVERSE_TWIST;
        // The energy Σx² of a tone is N A² / 2: the two tones' share of the block energy.
        let purity = (row_power + column_power) * 2.0 / (BLOCK as f32 * energy.max(1.0));
        (loud_enough && twist_ok && purity >= MIN_PURITY).then_some(KEYS[row][column])
    }

    /// Advances the press/release state with one block's key; returns a newly pressed key.
    fn step(&mut self, key: Option<char>) -> Option<char> {
        if let Some(held) = self.held {
            if key == Some(held) {
                self.missing_blocks = 0;
                return None;
            }
            self.missing_blocks += 1;
            if self.missing_blocks < BLOCKS_TO_RELEASE {
                return None;
            }
            self.held = None;
        }
        if key.is_some() && key == self.candidate {
            self.candidate_blocks += 1;
        } else {
            self.candidate = key;
            self.candidate_blocks = u8::from(key.is_some());
        }
        if self.candidate_blocks >= BLOCKS_TO_DETECT {
            self.held = self.candidate.take();
            self.candidate_blocks = 0;
            self.missing_blocks = 0;
            return self.held;
        }
        None
    }
}

/// Index and power of the strongest tone of a group, if it stands out from the others.
fn strongest(powers: &[f32]) -> Option<(usize, f32)> {
    let (index, &peak) = powers
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let stands_out = powers
        .iter()
        .enumerate()
        .all(|(other, &power)| other == index || power * PEAK_RATIO <= peak);
    stands_out.then_some((index, peak))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::tone::sine;

    fn key_tone(key: char, milliseconds: u64, amplitude: f64) -> Vec<i16> {
        let (row, column) = (0..4)
            .flat_map(|row| (0..4).map(move |column| (row, column)))
            .find(|&(row, column)| KEYS[row][column] == key)
            .unwrap();
        let duration = Duration::from_millis(milliseconds);
        let low = sine(f64::from(ROWS[row]), amplitude, duration, SAMPLE_RATE);
        let high = sine(f64::from(COLUMNS[column]), amplitude, duration, SAMPLE_RATE);
        low.iter()
            .zip(&high)
            .map(|(a, b)| a.saturating_add(*b))
            .collect()
    }

    fn silence(milliseconds: usize) -> Vec<i16> {
        vec![0; milliseconds * 8]
    }

    /// Keys found in `audio`, fed in 20 ms frames.
    fn detect(audio: &[i16]) -> String {
        let mut detector = InbandDetector::new();
        audio
            .chunks(160)
            .filter_map(|frame| detector.process(frame))
            .map(|digit| digit.digit)
            .collect()
    }

    /// A deterministic pseudo-random generator (xorshift).
    struct Noise(u32);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            f64::from(self.0) / f64::from(u32::MAX) * 2.0 - 1.0
        }
    }

    #[test]
    fn every_key_is_detected_once() {
        let keys = "123A456B789C*0#D";
        let mut audio = Vec::new();
        for key in keys.chars() {
            audio.extend(key_tone(key, 80, 0.25));
            audio.extend(silence(60));
        }
        assert_eq!(detect(&audio), keys);
    }

    #[test]
    fn repeated_keys_need_a_pause_between_them() {
        let mut audio = key_tone('5', 100, 0.25);
        audio.extend(silence(50));
        audio.extend(key_tone('5', 100, 0.25));
        // A 5 ms drop-out inside a tone is not a second press.
        audio.extend(silence(50));
        audio.extend(key_tone('9', 100, 0.25));
        audio.extend(silence(5));
        audio.extend(key_tone('9', 100, 0.25));
        assert_eq!(detect(&audio), "559");
    }

    #[test]
    fn timing_level_and_twist_limits() {
        // 40 ms tones pass (Q.24); 20 ms blips do not.
        let mut audio = key_tone('1', 40, 0.25);
        audio.extend(silence(100));
        audio.extend(key_tone('2', 20, 0.25));
        audio.extend(silence(100));
        // Too quiet: about -50 dBFS per tone.
        audio.extend(key_tone('3', 100, 0.003));
        audio.extend(silence(100));
        assert_eq!(detect(&audio), "1");

        let duration = Duration::from_millis(100);
        let twisted: Vec<i16> = sine(697.0, 0.02, duration, 8000)
            .iter()
            .zip(&sine(1209.0, 0.3, duration, 8000))
            .map(|(a, b)| a + b)
            .collect();
        assert_eq!(
            detect(&twisted),
            "",
            "the column tone 23 dB above the row tone"
        );
    }

    #[test]
    fn keys_survive_noise_and_g711() {
        let mut noise = Noise(0x1234_5678);
        let mut audio = Vec::new();
        for key in "0123456789*#".chars() {
            audio.extend(key_tone(key, 70, 0.2));
            audio.extend(silence(50));
        }
        // White noise 20 dB below the tones, then through µ-law and back.
        let noisy: Vec<i16> = audio
            .iter()
            .map(|&sample| {
                let value = f64::from(sample) + noise.next() * 0.02 * 32767.0 * 3f64.sqrt();
                let coded = crate::media::codec::g711::linear_to_ulaw(
                    value.clamp(-32768.0, 32767.0) as i16,
                );
                crate::media::codec::g711::ulaw_to_linear(coded)
            })
            .collect();
        assert_eq!(detect(&noisy), "0123456789*#");
    }

    #[test]
    fn speech_like_sounds_and_noise_dial_nothing() {
        let mut noise = Noise(42);
        // Voiced sounds: a gliding pitch with twenty harmonics shaped by two formants,
        // syllables of 150-300 ms, plus noise bursts (fricatives) and music-like chords.
        let mut audio = Vec::new();
        let mut phase = 0.0f64;
        for syllable in 0..200 {
            let length = 1200 + (syllable * 397) % 1200;
            let pitch = 90.0 + f64::from((syllable * 37) % 160);
            let formant1 = 300.0 + f64::from((syllable * 53) % 700);
            let formant2 = 900.0 + f64::from((syllable * 71) % 1500);
            for n in 0..length {
                let glide = pitch * (1.0 + 0.1 * (n as f64 / length as f64));
                phase += 2.0 * std::f64::consts::PI * glide / 8000.0;
                let mut value = 0.0;
                for harmonic in 1..=20 {
                    let frequency = glide * f64::from(harmonic);
                    let gain = 1.0 / (1.0 + ((frequency - formant1) / 150.0).powi(2))
                        + 0.5 / (1.0 + ((frequency - formant2) / 200.0).powi(2));
                    value += gain * (phase * f64::from(harmonic)).sin();
                }
                audio.push((value * 3000.0).clamp(-32768.0, 32767.0) as i16);
            }
            if syllable % 5 == 0 {
                audio.extend((0..800).map(|_| (noise.next() * 4000.0) as i16));
            }
        }
        assert!(audio.len() > 8000 * 30, "over half a minute of sound");
        assert_eq!(detect(&audio), "");
    }

    #[test]
    fn espeak_speech_dials_nothing() {
        let Some(espeak) = crate::programs::require_peer("espeak-ng", "espeak-ng") else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("callml-inband-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("speech.wav");
        let text = "Thank you for calling. Please listen carefully, as our menu options have \
            changed. For sales, press one. For support, press two. To hear these options again, \
            press the star key. Seven, eight, nine. Hello? Are you still there? Goodbye.";
        let spoken = std::process::Command::new(espeak)
            .arg("-w")
            .arg(&wav)
            .arg(text)
            .status()
            .expect("run espeak-ng");
        assert!(spoken.success(), "espeak-ng failed: {spoken}");
        let samples =
            crate::media::decode::decode_audio(&std::fs::read(&wav).unwrap(), SAMPLE_RATE).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(samples.len() > 8000 * 10);
        assert_eq!(detect(&samples), "");
        // The same speech with keys mixed in: only the keys come out.
        let mut mixed = samples.clone();
        for (index, key) in "42#".chars().enumerate() {
            let at = 8000 * (2 + 3 * index);
            for (offset, sample) in key_tone(key, 100, 0.3).into_iter().enumerate() {
                mixed[at + offset] = sample.saturating_add(mixed[at + offset] / 8);
            }
        }
        assert_eq!(detect(&mixed), "42#");
    }
}
