//! Sample-rate conversion of mono audio by band-limited interpolation (polyphase FIR).
//!
//! Every output sample is a windowed-sinc interpolation of the input at its position
//! `k * input_rate / output_rate`, tracked as a whole index plus a rational remainder, so there
//! is no drift. The low-pass cutoff sits at [`ROLLOFF`] of the lower of the two Nyquist
//! frequencies, which is what suppresses aliasing when downsampling (44.1 kHz to 8 kHz:
//! everything above 4 kHz is attenuated by about 80 dB instead of folding back into the
//! telephone band). The kernel is a sinc with [`ZERO_CROSSINGS`] zero crossings per side under
//! a Kaiser window (β for about 80 dB stop-band rejection), stretched by the rate ratio when
//! downsampling (J. O. Smith, "Digital Audio Resampling").
//!
//! The kernel is evaluated once per converter into a bank of filters, one per distinct
//! fractional position ("phase"): `output_rate / gcd(input_rate, output_rate)` of them, which
//! is exact for every common rate pair (1 phase for 48 to 8 kHz, 80 for 44.1 to 8 kHz). For
//! unusual pairs needing more than [`MAX_PHASES`] phases the position is rounded to the
//! nearest of `MAX_PHASES` (a timing error under 1/2048 of an input sample). Each output is
//! then one dot product over contiguous memory, each row normalised to unit DC gain.
//!
//! [`Resampler`] streams: it keeps the history it needs between calls in a buffer allocated
//! once, so feeding 20 ms frames allocates nothing. [`resample`] and [`resample_i16`] convert a
//! whole signal and return exactly `ceil(len * output_rate / input_rate)` samples, aligned so
//! that output sample `k` is the input at time `k / output_rate`. [`FrameResampler`] converts
//! fixed 20 ms frames (a media session's codec rate to its audio rate, a room's prompts to
//! its mix rate).

use std::f64::consts::PI;

use thiserror::Error;

use super::codec::MAX_FRAME_SAMPLES;

/// Cutoff as a fraction of the lower Nyquist frequency (3.6 kHz for 8 kHz output).
pub const ROLLOFF: f64 = 0.90;
/// Zero crossings of the sinc on each side of the kernel centre.
pub const ZERO_CROSSINGS: usize = 24;
/// Most filter phases a converter precomputes.
pub const MAX_PHASES: usize = 1024;
/// Kaiser window β; gives roughly 80 dB stop-band attenuation.
const KAISER_BETA: f64 = 7.86;
/// Highest sample rate accepted, in Hz.
pub const MAX_RATE: u32 = 768_000;
/// Input samples buffered per refill beyond the kernel's history.
const CHUNK: usize = 1024;
/// Bound on the filter bank size (coefficients), which caps the phase count for extreme ratios.
const MAX_BANK_LEN: usize = 1 << 20;

/// An invalid rate for a [`Resampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ResampleError {
    #[error("sample rate {0} Hz is out of range (1..={MAX_RATE} Hz)")]
    RateOutOfRange(u32),
}

/// How much one [`Resampler::process`] call took and gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Input samples taken (the rest must be passed again).
    pub consumed: usize,
    /// Output samples written at the start of the output buffer.
    pub produced: usize,
}

/// A streaming mono sample-rate converter between two fixed rates.
#[derive(Debug, Clone)]
pub struct Resampler {
    input_rate: u32,
    output_rate: u32,
    /// Input samples used on each side of an output position; a filter has twice as many taps.
    half_width: usize,
    /// Filter phases; `bank` holds `phases + 1` rows of `2 * half_width` taps, row `p` for a
    /// position `p / phases` of an input sample past `centre`.
    phases: u64,
    bank: Vec<f32>,
    step_whole: usize,
    step_remainder: u64,
    /// History and pending input; `centre` indexes the input sample at or just before the
    /// position of the next output sample, `fraction / output_rate` is the rest.
    buffer: Vec<f32>,
    capacity: usize,
    centre: usize,
    fraction: u64,
    consumed_total: u64,
    produced_total: u64,
}

impl Resampler {
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, ResampleError> {
        for rate in [input_rate, output_rate] {
            if rate == 0 || rate > MAX_RATE {
                return Err(ResampleError::RateOutOfRange(rate));
            }
        }
        let (half_width, phases, bank) = if input_rate == output_rate {
            // A unit impulse: the stream passes through unchanged.
            (1, 1, vec![1.0, 0.0, 0.0, 1.0])
        } else {
            let ratio = f64::from(output_rate) / f64::from(input_rate);
            let scale = ROLLOFF * ratio.min(1.0);
            let half_width = (ZERO_CROSSINGS as f64 / scale).ceil() as usize;
            let exact_phases = u64::from(output_rate / gcd(input_rate, output_rate));
            let affordable = (MAX_BANK_LEN / (2 * half_width)).clamp(16, MAX_PHASES) as u64;
            let phases = exact_phases.min(affordable);
            (half_width, phases, filter_bank(half_width, phases, scale))
        };
        let capacity = 2 * half_width + 2 + CHUNK;
        let mut resampler = Resampler {
            input_rate,
            output_rate,
            half_width,
            phases,
            bank,
            step_whole: (input_rate / output_rate) as usize,
            step_remainder: u64::from(input_rate % output_rate),
            buffer: Vec::with_capacity(capacity),
            capacity,
            centre: 0,
            fraction: 0,
            consumed_total: 0,
            produced_total: 0,
        };
        resampler.reset();
        Ok(resampler)
    }

    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Forgets all history and starts a new stream.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.buffer.resize(self.half_width, 0.0);
        self.centre = self.half_width;
        self.fraction = 0;
        self.consumed_total = 0;
        self.produced_total = 0;
    }

    /// Upper bound on the output [`process`](Self::process) can produce from `input_len` more
    /// input samples; size output buffers with it to consume the whole input in one call.
    pub fn max_output_len(&self, input_len: usize) -> usize {
        let input = u128::from(self.consumed_total) + input_len as u128;
        let total = (input * u128::from(self.output_rate)).div_ceil(u128::from(self.input_rate));
        (total - u128::from(self.produced_total)) as usize
    }

    /// Converts as much of `input` as fits into `output`. Output lags input by the kernel's
    /// half width; [`finish`](Self::finish) drains it at the end of the stream.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Progress {
        self.run(input, |sample| sample, output, |value| value)
    }

    /// [`process`](Self::process) for 16-bit samples.
    pub fn process_i16(&mut self, input: &[i16], output: &mut [i16]) -> Progress {
        self.run(input, i16_to_f32, output, f32_to_i16)
    }

    /// Writes the remaining output of the stream (the input is over); returns how many samples.
    /// Call again while it returns a full `output`; then [`reset`](Self::reset) before reuse.
    pub fn finish(&mut self, output: &mut [f32]) -> usize {
        self.drain(output, |value| value)
    }

    /// [`finish`](Self::finish) for 16-bit samples.
    pub fn finish_i16(&mut self, output: &mut [i16]) -> usize {
        self.drain(output, f32_to_i16)
    }

    fn run<I: Copy, O>(
        &mut self,
        input: &[I],
        to_f32: impl Fn(I) -> f32,
        output: &mut [O],
        from_f32: impl Fn(f32) -> O,
    ) -> Progress {
        let mut progress = Progress::default();
        loop {
            while progress.produced < output.len() && self.can_produce() {
                output[progress.produced] = from_f32(self.next_output());
                progress.produced += 1;
            }
            if progress.produced == output.len() || progress.consumed == input.len() {
                return progress;
            }
            self.compact();
            let take = (self.capacity - self.buffer.len()).min(input.len() - progress.consumed);
            let fresh = &input[progress.consumed..progress.consumed + take];
            self.buffer
                .extend(fresh.iter().map(|&sample| to_f32(sample)));
            progress.consumed += take;
            self.consumed_total += take as u64;
        }
    }

    fn drain<O>(&mut self, output: &mut [O], from_f32: impl Fn(f32) -> O) -> usize {
        let expected = (u128::from(self.consumed_total) * u128::from(self.output_rate))
            .div_ceil(u128::from(self.input_rate));
        let mut produced = 0;
        while produced < output.len() && u128::from(self.produced_total) < expected {
            if self.can_produce() {
                output[produced] = from_f32(self.next_output());
                produced += 1;
            } else {
                self.compact();
                let zeros = (self.capacity - self.buffer.len()).min(self.half_width + 1);
                self.buffer.resize(self.buffer.len() + zeros, 0.0);
            }
        }
        produced
    }

    fn can_produce(&self) -> bool {
        self.centre + self.half_width < self.buffer.len()
    }

    /// Computes the output at the current position and steps to the next one.
    fn next_output(&mut self) -> f32 {
        let taps = 2 * self.half_width;
        let output_rate = u64::from(self.output_rate);
        let phase = ((self.fraction * self.phases + output_rate / 2) / output_rate) as usize;
        let filter = &self.bank[phase * taps..(phase + 1) * taps];
        let first = self.centre + 1 - self.half_width;
        let value = dot(filter, &self.buffer[first..first + taps]);

        self.fraction += self.step_remainder;
        if self.fraction >= output_rate {
            self.fraction -= output_rate;
            self.centre += 1;
        }
        self.centre += self.step_whole;
        self.produced_total += 1;
        value
    }

    /// Drops input no future output needs.
    fn compact(&mut self) {
        let keep_from = (self.centre + 1 - self.half_width).min(self.buffer.len());
        if keep_from > 0 {
            self.buffer.drain(..keep_from);
            self.centre -= keep_from;
        }
    }
}

/// Converts a stream of fixed frames between two rates, exactly `out.len()` samples per
/// call (a 20 ms tick at the output rate): the resampler's lag is paid once, as leading
/// silence. Buffers are allocated in [`new`](Self::new); nothing per frame.
pub struct FrameResampler {
    resampler: Resampler,
    pending: Box<[i16; 2 * MAX_FRAME_SAMPLES]>,
    len: usize,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("input_rate", &self.resampler.input_rate())
            .field("output_rate", &self.resampler.output_rate())
            .finish_non_exhaustive()
    }
}

impl FrameResampler {
    /// A converter from `input_rate` to `output_rate`; `None` when the rates are equal (no
    /// conversion needed) or cannot be converted.
    pub fn new(input_rate: u32, output_rate: u32) -> Option<FrameResampler> {
        if input_rate == output_rate {
            return None;
        }
        Resampler::new(input_rate, output_rate)
            .ok()
            .map(|resampler| FrameResampler {
                resampler,
                pending: Box::new([0; 2 * MAX_FRAME_SAMPLES]),
                len: 0,
            })
    }

    /// Converts one frame of `input` into `out` (at most [`MAX_FRAME_SAMPLES`] samples).
    pub fn convert(&mut self, input: &[i16], out: &mut [i16]) {
        let room = self.pending.len() - self.len;
        let progress = self
            .resampler
            .process_i16(input, &mut self.pending[self.len..self.len + room]);
        self.len += progress.produced;
        if self.len < out.len() {
            // Start of the stream: the filter's lag becomes silence in front.
            let missing = out.len() - self.len;
            self.pending.copy_within(..self.len, missing);
            self.pending[..missing].fill(0);
            self.len = out.len();
        }
        out.copy_from_slice(&self.pending[..out.len()]);
        self.pending.copy_within(out.len()..self.len, 0);
        self.len -= out.len();
    }

    /// Forgets the stream so far: the next frame starts a new one (after a gap in the audio,
    /// so that the end of the last one does not ring into it).
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.len = 0;
    }
}

/// Converts a whole signal; the result has `ceil(len * output_rate / input_rate)` samples.
pub fn resample(
    input: &[f32],
    input_rate: u32,
    output_rate: u32,
) -> Result<Vec<f32>, ResampleError> {
    let mut resampler = Resampler::new(input_rate, output_rate)?;
    let mut output = vec![0.0; resampler.max_output_len(input.len())];
    let progress = resampler.process(input, &mut output);
    let flushed = resampler.finish(&mut output[progress.produced..]);
    output.truncate(progress.produced + flushed);
    Ok(output)
}

/// [`resample`] for 16-bit samples.
pub fn resample_i16(
    input: &[i16],
    input_rate: u32,
    output_rate: u32,
) -> Result<Vec<i16>, ResampleError> {
    let mut resampler = Resampler::new(input_rate, output_rate)?;
    let mut output = vec![0; resampler.max_output_len(input.len())];
    let progress = resampler.process_i16(input, &mut output);
    let flushed = resampler.finish_i16(&mut output[progress.produced..]);
    output.truncate(progress.produced + flushed);
    Ok(output)
}

/// A 16-bit sample as a float in -1.0..1.0.
pub fn i16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32_768.0
}

/// A float sample as 16 bits, rounded and clipped to the 16-bit range.
pub fn f32_to_i16(value: f32) -> i16 {
    (value * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// `phases + 1` filters of `2 * half_width` taps; filter `p` interpolates at `p / phases` of
/// an input sample after the centre tap (`half_width - 1`), each scaled to unit DC gain.
fn filter_bank(half_width: usize, phases: u64, scale: f64) -> Vec<f32> {
    let taps = 2 * half_width;
    let mut bank = Vec::with_capacity((phases as usize + 1) * taps);
    let mut row = vec![0.0f64; taps];
    for phase in 0..=phases {
        let offset = phase as f64 / phases as f64;
        for (index, coefficient) in row.iter_mut().enumerate() {
            let distance = half_width as f64 - 1.0 - index as f64 + offset;
            *coefficient = windowed_sinc(distance * scale);
        }
        let gain: f64 = row.iter().sum();
        bank.extend(row.iter().map(|&coefficient| (coefficient / gain) as f32));
    }
    bank
}

/// `sinc(x)` under a Kaiser window reaching zero at `ZERO_CROSSINGS` zero crossings.
fn windowed_sinc(x: f64) -> f64 {
    let edge = x / ZERO_CROSSINGS as f64;
    if edge.abs() >= 1.0 {
        return 0.0;
    }
    let sinc = if x == 0.0 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    };
    sinc * bessel_i0(KAISER_BETA * (1.0 - edge * edge).sqrt()) / bessel_i0(KAISER_BETA)
}

/// Modified Bessel function of the first kind, order zero (power series).
fn bessel_i0(x: f64) -> f64 {
    let quarter_square = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        term *= quarter_square / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Dot product in eight independent lanes, so the compiler can vectorise it.
fn dot(filter: &[f32], samples: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let filter_chunks = filter.chunks_exact(8);
    let sample_chunks = samples.chunks_exact(8);
    let tail: f32 = filter_chunks
        .remainder()
        .iter()
        .zip(sample_chunks.remainder())
        .map(|(coefficient, sample)| coefficient * sample)
        .sum();
    for (coefficients, window) in filter_chunks.zip(sample_chunks) {
        for lane in 0..8 {
            lanes[lane] += coefficients[lane] * window[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::tone::{sine, tone_level};

    fn zero_crossings(samples: &[i16]) -> usize {
        samples
            .windows(2)
            .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
            .count()
    }

    #[test]
    fn a_440_hz_tone_keeps_its_pitch_and_level_from_22050_to_8000() {
        let input = sine(440.0, 0.5, Duration::from_secs(1), 22_050);
        let output = resample_i16(&input, 22_050, 8000).unwrap();
        assert_eq!(output.len(), 8000);
        assert!((tone_level(&output, 440.0, 8000) - 0.5).abs() < 0.01);
        let crossings = zero_crossings(&output);
        assert!(
            (878..=882).contains(&crossings),
            "{crossings} zero crossings"
        );
    }

    #[test]
    fn a_6_khz_tone_at_44100_does_not_alias_into_the_telephone_band() {
        let input = sine(6000.0, 0.9, Duration::from_secs(1), 44_100);
        let output = resample_i16(&input, 44_100, 8000).unwrap();
        assert_eq!(output.len(), 8000);
        // Without a low-pass, 6 kHz would fold to 2 kHz at nearly full level.
        let steady = &output[200..7800];
        assert!(tone_level(steady, 2000.0, 8000) < 1e-4);
        assert!(steady.iter().all(|sample| sample.unsigned_abs() < 8));
    }

    #[test]
    fn common_rates_convert_to_8000_with_the_right_length_and_pitch() {
        for rate in [
            8000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
        ] {
            let input = sine(1000.0, 0.5, Duration::from_millis(500), rate);
            let output = resample_i16(&input, rate, 8000).unwrap();
            let expected_len = (input.len() * 8000).div_ceil(rate as usize);
            assert_eq!(output.len(), expected_len, "from {rate}");
            assert!((4000..=4001).contains(&expected_len));
            let level = tone_level(&output[100..3900], 1000.0, 8000);
            assert!((level - 0.5).abs() < 0.01, "from {rate}: level {level}");
        }
    }

    #[test]
    fn an_unusual_rate_pair_uses_rounded_phases_and_stays_clean() {
        // gcd(12345, 8000) = 5: 1600 exact phases, more than MAX_PHASES.
        let resampler = Resampler::new(12_345, 8000).unwrap();
        assert_eq!(resampler.phases, MAX_PHASES as u64);
        let input = sine(1000.0, 0.5, Duration::from_secs(1), 12_345);
        let output = resample_i16(&input, 12_345, 8000).unwrap();
        assert_eq!(output.len(), 8000);
        let expected = sine(1000.0, 0.5, Duration::from_secs(1), 8000);
        let worst = output[100..7900]
            .iter()
            .zip(&expected[100..7900])
            .map(|(got, want)| (i32::from(*got) - i32::from(*want)).abs())
            .max()
            .unwrap();
        assert!(worst < 40, "sample error {worst}");
    }

    #[test]
    fn upsampling_between_8_16_and_48_khz_preserves_a_tone() {
        for (from, to) in [
            (8000, 16_000),
            (8000, 48_000),
            (16_000, 48_000),
            (48_000, 16_000),
        ] {
            let input = sine(1000.0, 0.5, Duration::from_millis(200), from);
            let output = resample_i16(&input, from, to).unwrap();
            assert_eq!(output.len() as u32, to / 5, "{from} -> {to}");
            let middle = &output[output.len() / 4..output.len() * 3 / 4];
            let level = tone_level(middle, 1000.0, to);
            assert!((level - 0.5).abs() < 0.01, "{from} -> {to}: level {level}");
            let expected = sine(1000.0, 0.5, Duration::from_millis(200), to);
            let worst = middle
                .iter()
                .zip(&expected[output.len() / 4..])
                .map(|(got, want)| (i32::from(*got) - i32::from(*want)).abs())
                .max()
                .unwrap();
            assert!(worst < 40, "{from} -> {to}: sample error {worst}");
        }
    }

    #[test]
    fn streaming_in_20_ms_frames_matches_the_whole_signal_conversion() {
        let input = sine(700.0, 0.7, Duration::from_millis(300), 48_000);
        let whole = resample_i16(&input, 48_000, 8000).unwrap();

        let mut resampler = Resampler::new(48_000, 8000).unwrap();
        let mut streamed = Vec::new();
        let mut frame_out = [0i16; 160];
        for frame in input.chunks(960) {
            let progress = resampler.process_i16(frame, &mut frame_out);
            assert_eq!(progress.consumed, frame.len());
            streamed.extend_from_slice(&frame_out[..progress.produced]);
        }
        loop {
            let produced = resampler.finish_i16(&mut frame_out);
            streamed.extend_from_slice(&frame_out[..produced]);
            if produced < frame_out.len() {
                break;
            }
        }
        assert_eq!(streamed, whole);
    }

    #[test]
    fn a_small_output_buffer_stops_consumption_without_losing_input() {
        let input: Vec<f32> = (0..4000).map(|n| (n as f32 * 0.01).sin() * 0.5).collect();
        let whole = resample(&input, 16_000, 8000).unwrap();

        let mut resampler = Resampler::new(16_000, 8000).unwrap();
        let mut collected = Vec::new();
        let mut rest = &input[..];
        let mut out = [0.0f32; 7];
        while !rest.is_empty() {
            let progress = resampler.process(rest, &mut out);
            collected.extend_from_slice(&out[..progress.produced]);
            rest = &rest[progress.consumed..];
        }
        loop {
            let produced = resampler.finish(&mut out);
            collected.extend_from_slice(&out[..produced]);
            if produced == 0 {
                break;
            }
        }
        assert_eq!(collected, whole);
        assert_eq!(collected.len(), 2000);
    }

    #[test]
    fn equal_rates_reproduce_the_input() {
        let input = sine(440.0, 0.5, Duration::from_millis(100), 8000);
        let output = resample_i16(&input, 8000, 8000).unwrap();
        assert_eq!(output, input);
    }

    #[test]
    fn a_constant_signal_keeps_its_level() {
        let input = vec![0.25f32; 44_100];
        let output = resample(&input, 44_100, 8000).unwrap();
        assert!(
            output[1000..7000]
                .iter()
                .all(|value| (value - 0.25).abs() < 1e-3)
        );
    }

    #[test]
    fn rejects_zero_and_absurd_rates() {
        assert_eq!(
            Resampler::new(0, 8000).err(),
            Some(ResampleError::RateOutOfRange(0))
        );
        assert_eq!(
            Resampler::new(8000, 10_000_000).err(),
            Some(ResampleError::RateOutOfRange(10_000_000))
        );
        assert_eq!(resample(&[], 44_100, 8000), Ok(Vec::new()));
    }

    #[test]
    fn sample_conversions_are_exact_at_the_ends() {
        assert_eq!(f32_to_i16(i16_to_f32(i16::MIN)), i16::MIN);
        assert_eq!(f32_to_i16(i16_to_f32(i16::MAX)), i16::MAX);
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
    }
}
