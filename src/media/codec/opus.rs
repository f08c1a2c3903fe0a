//! Opus (RFC 6716) for RTP (RFC 7587), mono, through the pure-Rust `opus-rs` crate (a port of
//! libopus: SILK, CELT and hybrid modes, packet loss concealment; no C library, no build
//! script). This wrapper is the only place that names `opus_rs`.
//!
//! The encoder runs in VoIP mode at [`BITRATE_BPS`] (variable bitrate) with complexity
//! [`COMPLEXITY`]; the decoder produces mono at the rate it was made for, downmixing stereo
//! packets. Both keep their scratch buffers inside: no allocation per frame.

use opus_rs::Application;

use super::{Codec, CodecError, MAX_FRAME_SAMPLES};
use crate::media::resample::f32_to_i16;

/// Encoder target bitrate: wideband speech quality with room to spare.
pub const BITRATE_BPS: i32 = 32_000;
/// Encoder complexity (0..=10): 5 keeps a transcoded call well under 1% of a core.
pub const COMPLEXITY: i32 = 5;
/// PCM rates Opus can be fed and decode to.
pub const RATES: [u32; 5] = [8000, 12_000, 16_000, 24_000, 48_000];

fn check_rate(rate: u32) -> Result<i32, CodecError> {
    if RATES.contains(&rate) {
        Ok(rate as i32)
    } else {
        Err(CodecError::SampleRate {
            codec: Codec::Opus,
            rate,
        })
    }
}

/// Whether `samples` at `rate` is a frame Opus codes (10, 20, 40 or 60 ms).
fn check_frame(rate: u32, samples: usize) -> Result<(), CodecError> {
    let per_ms = (rate / 1000) as usize;
    if [10, 20, 40, 60].iter().any(|ms| ms * per_ms == samples) {
        Ok(())
    } else {
        Err(CodecError::FrameSize {
            codec: Codec::Opus,
            samples,
        })
    }
}

/// A mono Opus encoder.
pub struct OpusEncoder {
    inner: opus_rs::OpusEncoder,
    rate: u32,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder fed mono PCM at `rate` (one of [`RATES`]).
    pub fn new(rate: u32) -> Result<OpusEncoder, CodecError> {
        let mut inner = opus_rs::OpusEncoder::new(check_rate(rate)?, 1, Application::Voip)
            .map_err(CodecError::Opus)?;
        inner.bitrate_bps = BITRATE_BPS;
        inner.complexity = COMPLEXITY;
        Ok(OpusEncoder { inner, rate })
    }

    /// The encoder at 48 kHz, the rate of the RTP clock: a configuration Opus always accepts.
    pub fn mono_48k() -> OpusEncoder {
        let mut inner = opus_rs::OpusEncoder::new(48_000, 1, Application::Voip)
            .unwrap_or_else(|error| unreachable!("Opus rejects 48 kHz mono: {error}"));
        inner.bitrate_bps = BITRATE_BPS;
        inner.complexity = COMPLEXITY;
        OpusEncoder {
            inner,
            rate: 48_000,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Encodes one frame of 10, 20, 40 or 60 ms; returns the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        check_frame(self.rate, pcm.len())?;
        self.inner
            .encode_i16(pcm, pcm.len(), out)
            .map_err(CodecError::Opus)
    }
}

/// A mono Opus decoder.
pub struct OpusDecoder {
    inner: opus_rs::OpusDecoder,
    rate: u32,
    scratch: Box<[f32; MAX_FRAME_SAMPLES]>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder producing mono PCM at `rate` (one of [`RATES`]).
    pub fn new(rate: u32) -> Result<OpusDecoder, CodecError> {
        let inner = opus_rs::OpusDecoder::new(check_rate(rate)?, 1).map_err(CodecError::Opus)?;
        Ok(OpusDecoder {
            inner,
            rate,
            scratch: Box::new([0.0; MAX_FRAME_SAMPLES]),
        })
    }

    /// The decoder at 48 kHz, the rate of the RTP clock: a configuration Opus always accepts.
    pub fn mono_48k() -> OpusDecoder {
        let inner = opus_rs::OpusDecoder::new(48_000, 1)
            .unwrap_or_else(|error| unreachable!("Opus rejects 48 kHz mono: {error}"));
        OpusDecoder {
            inner,
            rate: 48_000,
            scratch: Box::new([0.0; MAX_FRAME_SAMPLES]),
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Decodes one packet into `out` (room for the packet's duration); returns the samples.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::Opus("empty packet"));
        }
        self.run(packet, out)
    }

    /// Conceals one lost frame of `out.len()` samples (10, 20, 40 or 60 ms).
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        check_frame(self.rate, out.len())?;
        self.run(&[], out)
    }

    fn run(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let capacity = out.len().min(MAX_FRAME_SAMPLES);
        let samples = self
            .inner
            .decode(packet, capacity, &mut self.scratch[..capacity])
            .map_err(CodecError::Opus)?
            .min(capacity);
        for (sample, &value) in out.iter_mut().zip(&self.scratch[..samples]) {
            *sample = f32_to_i16(value);
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::tone::{rms_level, sine, tone_level};

    fn round_trip(rate: u32, frequency: f64) -> Vec<i16> {
        let frame = (rate / 50) as usize;
        let tone = sine(frequency, 0.3, Duration::from_millis(600), rate);
        let mut encoder = OpusEncoder::new(rate).unwrap();
        let mut decoder = OpusDecoder::new(rate).unwrap();
        let mut packet = [0u8; 1275];
        let mut out = vec![0i16; frame];
        let mut decoded = Vec::new();
        for chunk in tone.chunks_exact(frame) {
            let len = encoder.encode(chunk, &mut packet).unwrap();
            assert!(len < 200, "{len} bytes at {BITRATE_BPS} bit/s");
            assert_eq!(decoder.decode(&packet[..len], &mut out), Ok(frame));
            decoded.extend_from_slice(&out);
        }
        decoded
    }

    #[test]
    fn tones_survive_at_every_rate() {
        for rate in [8000, 16_000, 48_000] {
            let decoded = round_trip(rate, 440.0);
            let settled = &decoded[decoded.len() / 2..];
            let level = tone_level(settled, 440.0, rate);
            assert!((level - 0.3).abs() < 0.05, "{rate} Hz: level {level}");
        }
        let wideband = round_trip(16_000, 5000.0);
        let level = tone_level(&wideband[wideband.len() / 2..], 5000.0, 16_000);
        assert!(level > 0.2, "a 5 kHz tone passes in wideband: {level}");
    }

    #[test]
    fn lost_frames_are_concealed_and_bad_input_is_an_error() {
        let mut decoder = OpusDecoder::new(48_000).unwrap();
        let mut out = [0i16; 960];
        let _ = round_trip(48_000, 440.0);
        assert_eq!(decoder.conceal(&mut out), Ok(960));
        assert!(rms_level(&out) < 0.01, "nothing to conceal yet is silence");
        assert!(decoder.decode(&[], &mut out).is_err());
        assert!(decoder.conceal(&mut out[..100]).is_err());
        // Arbitrary bytes never panic.
        let mut state = 0x1234_5678u32;
        for len in 2..200 {
            let mut packet = [0u8; 200];
            for byte in packet.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *byte = (state >> 24) as u8;
            }
            let _ = decoder.decode(&packet[..len], &mut out);
        }
    }

    /// The packets of an Ogg stream (RFC 3533: pages of lacing values), headers included.
    fn ogg_packets(data: &[u8]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut current = Vec::new();
        let mut at = 0;
        while at + 27 <= data.len() {
            assert_eq!(&data[at..at + 4], b"OggS");
            let segments = usize::from(data[at + 26]);
            let lacing = &data[at + 27..at + 27 + segments];
            let mut body = at + 27 + segments;
            for &len in lacing {
                current.extend_from_slice(&data[body..body + usize::from(len)]);
                body += usize::from(len);
                if len < 255 {
                    packets.push(std::mem::take(&mut current));
                }
            }
            at = body;
        }
        packets
    }

    #[test]
    fn decodes_what_libopus_encoded() {
        let file = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/media/opus/tone-440hz-libopus.opus"
        ))
        .unwrap();
        let packets = ogg_packets(&file);
        assert!(packets[0].starts_with(b"OpusHead"));
        let mut decoder = OpusDecoder::new(48_000).unwrap();
        let mut out = [0i16; 960];
        let mut decoded = Vec::new();
        for packet in &packets[2..] {
            let samples = decoder.decode(packet, &mut out).unwrap();
            decoded.extend_from_slice(&out[..samples]);
        }
        assert!(decoded.len() >= 48_000, "{} samples", decoded.len());
        let middle = &decoded[12_000..36_000];
        // -10 dBFS is 0.316 of full scale.
        let level = tone_level(middle, 440.0, 48_000);
        assert!((level - 0.316).abs() < 0.03, "440 Hz at {level}");
        assert!(tone_level(middle, 880.0, 48_000) < 0.01);
    }

    #[test]
    fn rejects_rates_and_frame_sizes_opus_does_not_have() {
        assert!(OpusEncoder::new(44_100).is_err());
        let mut encoder = OpusEncoder::new(8000).unwrap();
        assert_eq!(
            encoder.encode(&[0; 150], &mut [0; 100]),
            Err(CodecError::FrameSize {
                codec: Codec::Opus,
                samples: 150
            })
        );
    }
}
