//! G.722 (ITU-T Recommendation G.722, 7 kHz audio coding within 64 kbit/s), mode 1: 64 kbit/s.
//!
//! 16 kHz linear PCM is split by a 24-tap quadrature mirror filter (QMF) into a lower and a
//! higher sub-band at 8 kHz each. Each sub-band is coded by adaptive differential PCM with its
//! own adaptive quantizer and pole-zero predictor: 6 bits per sample for the lower band, 2 bits
//! for the higher band, packed as one byte per sample pair (`IH` in the two most significant
//! bits, `IL` in the six least significant ones). A 20 ms frame is 320 samples in, 160 bytes out.
//!
//! The blocks follow the Recommendation's names (§3 encoder, §4 decoder, §6 computational
//! details): `SUBTRA`, `QUANTL`/`QUANTH`, `INVQAL`/`INVQAH`/`INVQBL`, `LOGSCL`/`LOGSCH`,
//! `SCALEL`/`SCALEH`, and the predictor blocks `RECONS`, `PARREC`, `UPPOL1`, `UPPOL2`,
//! `UPZERO`, `DELAYA`, `FILTEP`, `FILTEZ`, `PREDIC`, shared by both bands
//! (`Band::update_predictor`). Arithmetic is integer and saturating as the Recommendation
//! specifies, so encoder and decoder stay in step bit for bit.
//!
//! Input and output are 16-bit PCM: the sub-band signals are the QMF output at 15 bits, the
//! scaling every deployed G.722 implementation uses (the algorithm's `LIMIT` blocks bound the
//! reconstructed sub-band signals to 15 bits).
//!
//! RTP (RFC 3551 §4.5.2): payload type 9, and the RTP clock rate is 8000 although the audio is
//! sampled at 16 kHz — an error in the original RFC 1890 kept for compatibility; timestamps
//! advance by 160 per 20 ms. That quirk lives in [`super::Codec::clock_rate`], not here.
//!
//! Nothing here allocates; encoder and decoder state is a few hundred bytes.

/// QMF coefficients h(0)..h(23) (§3.1, table 9), scaled by 2^13; the filter is symmetric.
const QMF: [i32; 24] = [
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32,
    -156, 12, 53, -11, -11, 3,
];

/// Lower sub-band quantizer decision levels (`QUANTL`, table 10), scaled by 2^12 of `DETL`.
/// Entry 0 is the lower edge of interval 1 (zero); the search starts at entry 1.
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];
/// 6-bit code of quantizer interval `i` (1..=30) for a negative difference (table 10, `ILN`);
/// entry 0 is unused.
const ILN: [u8; 31] = [
    63, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
/// 6-bit code of quantizer interval `i` (1..=30) for a positive difference (table 10, `ILP`);
/// entry 0 is unused.
const ILP: [u8; 31] = [
    61, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];
/// 6-bit inverse quantizer output levels by code (`INVQBL` in mode 1, table 11, `QQ6`).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// 4-bit inverse quantizer output levels (`INVQAL`, table 13, `QQ4`), indexed by `IL >> 2`.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// Quantizer magnitude class of a 4-bit code, for the scale factor update (`RIL` → `IL4`).
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Lower sub-band log scale factor multipliers (`LOGSCL`, table 14, `WL`).
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// Antilog table of `SCALEL`/`SCALEH` (table 15, `ILB`).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Higher sub-band decision level (`QUANTH`, table 16), scaled by 2^12 of `DETH`.
const Q2: i32 = 564;
/// 2-bit inverse quantizer output levels by code (`INVQAH`, table 17, `QQ2`).
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// Magnitude class of a higher band code (`IH` → `IH2`) and its log scale multiplier (`WH`).
const RH2: [usize; 4] = [2, 1, 2, 1];
const WH: [i32; 3] = [0, -214, 798];

/// Upper bounds of the log scale factors (`NBL`, `NBH`).
const MAX_NBL: i32 = 18_432;
const MAX_NBH: i32 = 22_528;

fn saturate(value: i32) -> i32 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// The adaptive predictor and scale factor of one sub-band (§3.3–3.6, the same in encoder
/// and decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Band {
    /// Signal estimate `S` (pole plus zero section).
    estimate: i32,
    /// Pole section output `SP` and zero section output `SZ`.
    pole_estimate: i32,
    zero_estimate: i32,
    /// Reconstructed signals `R(n)`, `R(n-1)`, `R(n-2)`.
    reconstructed: [i32; 3],
    /// Partial reconstructions `P(n)`, `P(n-1)`, `P(n-2)`.
    partial: [i32; 3],
    /// Quantized differences `D(n)`..`D(n-6)`.
    difference: [i32; 7],
    /// Pole coefficients `A1`, `A2` (index 0 unused).
    poles: [i32; 3],
    /// Zero coefficients `B1`..`B6` (index 0 unused).
    zeros: [i32; 7],
    /// Log scale factor `NB` and scale factor `DET`.
    log_scale: i32,
    scale: i32,
}

impl Band {
    const fn new(initial_scale: i32) -> Band {
        Band {
            estimate: 0,
            pole_estimate: 0,
            zero_estimate: 0,
            reconstructed: [0; 3],
            partial: [0; 3],
            difference: [0; 7],
            poles: [0; 3],
            zeros: [0; 7],
            log_scale: 0,
            scale: initial_scale,
        }
    }

    /// `LOGSCL`/`LOGSCH` then `SCALEL`/`SCALEH`: adapts the scale factor. `max_log` bounds the
    /// log scale factor and `shift` is 8 for the lower band, 10 for the higher band.
    fn adapt_scale(&mut self, multiplier: i32, max_log: i32, shift: i32) {
        self.log_scale = (((self.log_scale * 127) >> 7) + multiplier).clamp(0, max_log);
        let fraction = ILB[((self.log_scale >> 6) & 31) as usize];
        let exponent = shift - (self.log_scale >> 11);
        let scaled = if exponent < 0 {
            fraction << -exponent
        } else {
            fraction >> exponent
        };
        self.scale = scaled << 2;
    }

    /// Blocks `RECONS` to `PREDIC` (§3.6): adapts the predictor to the quantized difference `d`
    /// and computes the next signal estimate.
    fn update_predictor(&mut self, d: i32) {
        // RECONS, PARREC
        self.difference[0] = d;
        self.reconstructed[0] = saturate(self.estimate + d);
        self.partial[0] = saturate(self.zero_estimate + d);
        let sign = |value: i32| value >> 15;
        let partial_signs = self.partial.map(sign);

        // UPPOL2: second pole coefficient.
        let a1_times_4 = saturate(self.poles[1] << 2);
        let wd = if partial_signs[0] == partial_signs[1] {
            -a1_times_4
        } else {
            a1_times_4
        }
        .min(32_767);
        let mut a2 = (wd >> 7)
            + if partial_signs[0] == partial_signs[2] {
                128
            } else {
                -128
            };
        a2 += (self.poles[2] * 32_512) >> 15;
        let a2 = a2.clamp(-12_288, 12_288);

        // UPPOL1: first pole coefficient, bounded by the stability limit 15360 - |A2|.
        let step = if partial_signs[0] == partial_signs[1] {
            192
        } else {
            -192
        };
        let a1 = saturate(step + ((self.poles[1] * 32_640) >> 15));
        let limit = saturate(15_360 - a2);
        let a1 = a1.clamp(-limit, limit);

        // UPZERO: sign-sign adaptation of the zero coefficients, with leakage.
        let gain = if d == 0 { 0 } else { 128 };
        let d_sign = sign(d);
        let mut zeros = [0i32; 7];
        for ((zero, &old), &difference) in zeros
            .iter_mut()
            .zip(&self.zeros)
            .zip(&self.difference)
            .skip(1)
        {
            let agree = sign(difference) == d_sign;
            let leaked = (old * 32_640) >> 15;
            *zero = saturate(if agree { gain } else { -gain } + leaked);
        }

        // DELAYA
        for i in (1..7).rev() {
            self.difference[i] = self.difference[i - 1];
        }
        self.zeros = zeros;
        for i in (1..3).rev() {
            self.reconstructed[i] = self.reconstructed[i - 1];
            self.partial[i] = self.partial[i - 1];
        }
        self.poles = [0, a1, a2];

        // FILTEP: pole section.
        let r1 = saturate(self.reconstructed[1] + self.reconstructed[1]);
        let r2 = saturate(self.reconstructed[2] + self.reconstructed[2]);
        self.pole_estimate = saturate(((self.poles[1] * r1) >> 15) + ((self.poles[2] * r2) >> 15));

        // FILTEZ: zero section.
        let mut zero_estimate = 0;
        for i in 1..7 {
            let doubled = saturate(self.difference[i] + self.difference[i]);
            zero_estimate += (self.zeros[i] * doubled) >> 15;
        }
        self.zero_estimate = saturate(zero_estimate);

        // PREDIC
        self.estimate = saturate(self.pole_estimate + self.zero_estimate);
    }
}

/// The lower band's quantized difference and scale update for a 6-bit code: `INVQAL` (on the
/// 4 most significant bits only, so an embedded 48/56 kbit/s decoder stays in step), `LOGSCL`,
/// `SCALEL` and the predictor update. Returns nothing: the band state advances.
fn adapt_lower(band: &mut Band, code: u8) {
    let code4 = usize::from(code >> 2);
    let d = (band.scale * QM4[code4]) >> 15;
    band.adapt_scale(WL[RL42[code4]], MAX_NBL, 8);
    band.update_predictor(d);
}

/// The higher band's `INVQAH`, `LOGSCH`, `SCALEH` and predictor update for a 2-bit code;
/// returns the quantized difference.
fn adapt_higher(band: &mut Band, code: u8) -> i32 {
    let d = (band.scale * QM2[usize::from(code)]) >> 15;
    band.adapt_scale(WH[RH2[usize::from(code)]], MAX_NBH, 10);
    band.update_predictor(d);
    d
}

/// The 24-sample delay line of a QMF, fed two samples at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QmfHistory {
    /// Oldest first; `samples[23]` is the newest.
    samples: [i32; 24],
}

impl QmfHistory {
    const fn new() -> QmfHistory {
        QmfHistory { samples: [0; 24] }
    }

    fn push_pair(&mut self, first: i32, second: i32) {
        self.samples.copy_within(2.., 0);
        self.samples[22] = first;
        self.samples[23] = second;
    }

    /// The two polyphase sums: `(Σ h(2i)·x(j-2i), Σ h(2i+1)·x(j-2i-1))` with `x(j)` the newest.
    fn polyphase(&self) -> (i32, i32) {
        let mut even = 0;
        let mut odd = 0;
        for i in 0..12 {
            even += QMF[2 * i] * self.samples[23 - 2 * i];
            odd += QMF[2 * i + 1] * self.samples[22 - 2 * i];
        }
        (even, odd)
    }
}

/// A G.722 encoder (64 kbit/s) for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G722Encoder {
    qmf: QmfHistory,
    lower: Band,
    higher: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    pub const fn new() -> G722Encoder {
        G722Encoder {
            qmf: QmfHistory::new(),
            lower: Band::new(32),
            higher: Band::new(8),
        }
    }

    /// Encodes sample pairs of 16 kHz `pcm` into `out`, one byte per pair; returns the bytes
    /// written (`min(pcm.len() / 2, out.len())`). An odd trailing sample is ignored.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut written = 0;
        for (pair, byte) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *byte = self.encode_pair(pair[0], pair[1]);
            written += 1;
        }
        written
    }

    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF (§3.1).
        self.qmf.push_pair(i32::from(first), i32::from(second));
        let (even, odd) = self.qmf.polyphase();
        let low_input = saturate((even + odd) >> 14);
        let high_input = saturate((even - odd) >> 14);

        // Lower band: SUBTRA, QUANTL.
        let low_error = saturate(low_input - self.lower.estimate);
        let magnitude = if low_error >= 0 {
            low_error
        } else {
            -(low_error + 1)
        };
        let interval = (1..30)
            .find(|&i| magnitude < (Q6[i] * self.lower.scale) >> 12)
            .unwrap_or(30);
        let low_code = if low_error < 0 {
            ILN[interval]
        } else {
            ILP[interval]
        };
        adapt_lower(&mut self.lower, low_code);

        // Higher band: SUBTRA, QUANTH.
        let high_error = saturate(high_input - self.higher.estimate);
        let magnitude = if high_error >= 0 {
            high_error
        } else {
            -(high_error + 1)
        };
        let large = magnitude >= (Q2 * self.higher.scale) >> 12;
        let high_code = match (high_error < 0, large) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        adapt_higher(&mut self.higher, high_code);

        (high_code << 6) | low_code
    }
}

/// A G.722 decoder (64 kbit/s) for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G722Decoder {
    qmf: QmfHistory,
    lower: Band,
    higher: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    pub const fn new() -> G722Decoder {
        G722Decoder {
            qmf: QmfHistory::new(),
            lower: Band::new(32),
            higher: Band::new(8),
        }
    }

    /// Decodes `payload` into 16 kHz `out`, two samples per byte; returns the samples written
    /// (`2 * min(payload.len(), out.len() / 2)`).
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let mut written = 0;
        for (&byte, pair) in payload.iter().zip(out.chunks_exact_mut(2)) {
            let (first, second) = self.decode_byte(byte);
            pair[0] = first;
            pair[1] = second;
            written += 2;
        }
        written
    }

    fn decode_byte(&mut self, byte: u8) -> (i16, i16) {
        let low_code = byte & 0x3f;
        let high_code = byte >> 6;

        // Lower band: INVQBL with the full 6 bits, RECONS, LIMIT; then the 4-bit adaptation.
        let low_difference = (self.lower.scale * QM6[usize::from(low_code)]) >> 15;
        let low = (self.lower.estimate + low_difference).clamp(-16_384, 16_383);
        adapt_lower(&mut self.lower, low_code);

        // Higher band: INVQAH, RECONS, LIMIT.
        let high_estimate = self.higher.estimate;
        let high_difference = adapt_higher(&mut self.higher, high_code);
        let high = (high_estimate + high_difference).clamp(-16_384, 16_383);

        // Receive QMF (§4.4): the difference and the sum signals feed alternate phases.
        self.qmf.push_pair(low + high, low - high);
        let (even, odd) = self.qmf.polyphase();
        (saturate(even >> 11) as i16, saturate(odd >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::tone::{sine, tone_level};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/media/g722");

    fn read_pcm(name: &str) -> Vec<i16> {
        std::fs::read(format!("{FIXTURES}/{name}"))
            .unwrap()
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect()
    }

    fn encode_all(pcm: &[i16]) -> Vec<u8> {
        let mut encoder = G722Encoder::new();
        let mut out = vec![0u8; pcm.len() / 2];
        // Frame by frame, as RTP does: state carries across calls.
        let mut written = 0;
        for frame in pcm.chunks(320) {
            written += encoder.encode(frame, &mut out[written..]);
        }
        assert_eq!(written, out.len());
        out
    }

    fn decode_all(payload: &[u8]) -> Vec<i16> {
        let mut decoder = G722Decoder::new();
        let mut out = vec![0i16; payload.len() * 2];
        let mut written = 0;
        for frame in payload.chunks(160) {
            written += decoder.decode(frame, &mut out[written..]);
        }
        assert_eq!(written, out.len());
        out
    }

    /// Signal-to-noise ratio of `decoded` against `original` delayed by `delay` samples, in dB.
    fn snr_db(original: &[i16], decoded: &[i16], delay: usize) -> f64 {
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (index, &reference) in original.iter().enumerate() {
            let Some(&output) = decoded.get(index + delay) else {
                break;
            };
            signal += f64::from(reference).powi(2);
            noise += (f64::from(reference) - f64::from(output)).powi(2);
        }
        10.0 * (signal / noise.max(1.0)).log10()
    }

    #[test]
    fn encoder_matches_an_independent_implementation_bit_for_bit() {
        let input = read_pcm("input-16k.raw");
        let reference = std::fs::read(format!("{FIXTURES}/ffmpeg.g722")).unwrap();
        let encoded = encode_all(&input);
        let first_difference = encoded.iter().zip(&reference).position(|(a, b)| a != b);
        assert_eq!(first_difference, None);
        assert_eq!(encoded.len(), reference.len());
    }

    #[test]
    fn decoder_matches_an_independent_implementation_sample_for_sample() {
        let reference = std::fs::read(format!("{FIXTURES}/ffmpeg.g722")).unwrap();
        let expected = read_pcm("ffmpeg-decoded-16k.raw");
        let decoded = decode_all(&reference);
        let first_difference = decoded.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_difference, None);
        assert_eq!(decoded.len(), expected.len());
    }

    #[test]
    fn round_trip_keeps_tones_in_both_sub_bands() {
        for (frequency, min_snr) in [
            (440.0, 30.0),
            (1000.0, 30.0),
            (3000.0, 25.0),
            (6000.0, 10.0),
        ] {
            let tone = sine(frequency, 0.3, Duration::from_millis(500), 16_000);
            let decoded = decode_all(&encode_all(&tone));
            let settled = &decoded[4000..];
            let level = tone_level(settled, frequency, 16_000);
            assert!(
                (level - 0.3).abs() < 0.03,
                "{frequency} Hz came out at {level}"
            );
            // The two QMFs delay the signal by 22 samples.
            let snr = snr_db(&tone[4000..7000], &decoded[4000..], 22);
            assert!(snr > min_snr, "{frequency} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn silence_stays_silent_and_odd_input_is_ignored() {
        let decoded = decode_all(&encode_all(&[0i16; 3200]));
        assert!(decoded.iter().all(|&sample| sample.abs() < 8), "idle noise");
        let mut encoder = G722Encoder::new();
        let mut out = [0u8; 4];
        assert_eq!(encoder.encode(&[0; 5], &mut out), 2);
        assert_eq!(encoder.encode(&[0; 20], &mut out), 4);
        let mut decoder = G722Decoder::new();
        let mut pcm = [0i16; 5];
        assert_eq!(decoder.decode(&[0xff; 4], &mut pcm), 4);
    }

    #[test]
    fn full_scale_input_never_overflows() {
        let mut square = Vec::new();
        for index in 0..16_000 {
            square.push(if (index / 7) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            });
        }
        let decoded = decode_all(&encode_all(&square));
        assert_eq!(decoded.len(), square.len());
        let mut state = 1u32;
        let arbitrary: Vec<u8> = (0..8000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect();
        assert_eq!(decode_all(&arbitrary).len(), 16_000);
    }
}
