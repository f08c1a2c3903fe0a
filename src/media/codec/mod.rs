//! Audio codecs negotiated in SDP and carried in RTP.
//!
//! [`Codec`] names a codec and knows its RTP facts (RFC 3551 §6 table 4, RFC 7587 for Opus):
//! payload type, RTP clock rate, channels and `fmtp` of its `a=rtpmap`, the sample rate of its
//! linear PCM, and frame sizes. [`Encoder`] and [`Decoder`] hold the per-stream state and
//! convert between 16-bit linear PCM at the codec's [`sample_rate`](Codec::sample_rate) and
//! payload bytes, in caller buffers, allocating nothing per frame:
//!
//! | codec | PT  | RTP clock | PCM rate | 20 ms payload |
//! |-------|-----|-----------|----------|---------------|
//! | PCMU  | 0   | 8000      | 8000     | 160 bytes     |
//! | PCMA  | 8   | 8000      | 8000     | 160 bytes     |
//! | G722  | 9   | 8000 (RFC 3551 §4.5.2 quirk) | 16000 | 160 bytes |
//! | opus  | dyn | 48000, `/2` in rtpmap | 48000 (or 8/12/16/24 kHz) | ~80 bytes at 32 kbit/s |
//!
//! A lost frame is concealed by [`Decoder::conceal`]: Opus runs its own packet loss
//! concealment; G.711 and G.722 repeat the last frame, 6 dB quieter each time, then fall silent.
//! G.729 is not built in (see [`crate::sip::sdp`], which leaves it out of offers).

pub mod g711;
pub mod g722;
pub mod opus;

use thiserror::Error;

pub use g722::{G722Decoder, G722Encoder};
pub use opus::{OpusDecoder, OpusEncoder};

/// Longest packetisation interval callml sends or accepts, in milliseconds.
pub const MAX_PTIME_MS: u32 = 60;
/// Most PCM samples one frame holds (60 ms at 48 kHz).
pub const MAX_FRAME_SAMPLES: usize = 48 * MAX_PTIME_MS as usize;
/// Largest payload an [`Encoder`] writes for one frame (an Opus frame of RFC 6716 §3.4).
pub const MAX_PAYLOAD_BYTES: usize = 1275;
/// Consecutive lost frames that G.711 and G.722 concealment fills before falling silent.
const CONCEALED_REPEATS: u32 = 3;

/// An audio codec callml can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9; 16 kHz audio on an 8000 Hz RTP clock.
    G722,
    /// Opus (RFC 6716) over RTP (RFC 7587): dynamic payload type, `opus/48000/2`.
    Opus,
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error(
        "{codec:?} cannot code a frame of {samples} samples (one of 10, 20, 40 or 60 ms is needed)"
    )]
    FrameSize { codec: Codec, samples: usize },
    #[error("{codec:?} cannot run at {rate} Hz")]
    SampleRate { codec: Codec, rate: u32 },
    #[error("Opus: {0}")]
    Opus(&'static str),
}

impl Codec {
    /// Every codec, in callml's order of preference for offers.
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    /// The static RTP payload type (RFC 3551 §6), `None` for Opus, whose type is dynamic.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// RTP clock rate in Hz (the `a=rtpmap` rate and the unit of RTP timestamps).
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// The channel count written in `a=rtpmap` (RFC 7587 §7: always 2 for Opus, whatever is
    /// sent); callml codes mono.
    pub const fn rtpmap_channels(self) -> u8 {
        match self {
            Codec::Opus => 2,
            _ => 1,
        }
    }

    /// Sample rate of the linear PCM that [`Encoder`] takes and [`Decoder`] produces.
    pub const fn sample_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => 16_000,
            Codec::Opus => 48_000,
        }
    }

    /// The encoding name of `a=rtpmap` (RFC 3551 §6, RFC 7587 §7).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// The `a=fmtp` parameters callml declares (RFC 7587 §6.1 for Opus: mono is preferred,
    /// 10 ms frames at least, in-band FEC understood).
    pub const fn fmtp(self) -> Option<&'static str> {
        match self {
            Codec::Opus => Some("minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0"),
            _ => None,
        }
    }

    /// The codec of a static payload type, if callml supports it.
    pub const fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// The codec of an `a=rtpmap` encoding name and clock rate (name matched case-insensitively).
    pub fn from_rtpmap(encoding_name: &str, clock_rate: u32) -> Option<Codec> {
        Codec::ALL.into_iter().find(|codec| {
            codec.encoding_name().eq_ignore_ascii_case(encoding_name)
                && codec.clock_rate() == clock_rate
        })
    }

    /// Whether frames of `ptime_ms` can be coded (Opus: 10, 20, 40, 60; the others any
    /// multiple of 10 up to [`MAX_PTIME_MS`]).
    pub const fn supports_ptime(self, ptime_ms: u32) -> bool {
        match self {
            Codec::Opus => matches!(ptime_ms, 10 | 20 | 40 | 60),
            _ => ptime_ms > 0 && ptime_ms <= MAX_PTIME_MS && ptime_ms % 10 == 0,
        }
    }

    /// PCM samples in a frame of `ptime_ms` (160 for 20 ms of G.711, 320 for G.722).
    pub const fn samples_per_frame(self, ptime_ms: u32) -> usize {
        (self.sample_rate() / 1000 * ptime_ms) as usize
    }

    /// The most payload bytes a frame of `ptime_ms` takes: G.711 and G.722 code 64 kbit/s,
    /// one byte per 8 kHz timestamp unit; an Opus frame up to [`MAX_PAYLOAD_BYTES`].
    pub const fn max_payload_bytes(self, ptime_ms: u32) -> usize {
        match self {
            Codec::Opus => MAX_PAYLOAD_BYTES,
            _ => (self.clock_rate() / 1000 * ptime_ms) as usize,
        }
    }

    /// RTP timestamp units in a frame of `ptime_ms` (160 for 20 ms of G.711 and G.722, 960
    /// for Opus).
    pub const fn timestamp_increment(self, ptime_ms: u32) -> u32 {
        self.clock_rate() / 1000 * ptime_ms
    }
}

/// The encoding state of one outgoing stream.
#[derive(Debug)]
pub struct Encoder {
    codec: Codec,
    state: EncoderState,
}

#[derive(Debug)]
enum EncoderState {
    G711,
    G722(Box<G722Encoder>),
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    /// An encoder taking PCM at the codec's [`sample_rate`](Codec::sample_rate).
    pub fn new(codec: Codec) -> Encoder {
        let state = match codec {
            Codec::Pcmu | Codec::Pcma => EncoderState::G711,
            Codec::G722 => EncoderState::G722(Box::default()),
            Codec::Opus => EncoderState::Opus(Box::new(OpusEncoder::mono_48k())),
        };
        Encoder { codec, state }
    }

    /// An encoder taking PCM at `rate`: the codec's own rate, or for Opus any of 8, 12, 16,
    /// 24 and 48 kHz (Opus codes the band the input has; the RTP clock stays 48 kHz).
    pub fn with_rate(codec: Codec, rate: u32) -> Result<Encoder, CodecError> {
        let state = match codec {
            Codec::Opus => EncoderState::Opus(Box::new(OpusEncoder::new(rate)?)),
            _ if rate != codec.sample_rate() => return Err(CodecError::SampleRate { codec, rate }),
            _ => return Ok(Encoder::new(codec)),
        };
        Ok(Encoder { codec, state })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Encodes one frame (`pcm` is the whole frame); returns the payload length written to
    /// `out`, which should hold [`MAX_PAYLOAD_BYTES`].
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        Ok(match &mut self.state {
            EncoderState::G711 if self.codec == Codec::Pcmu => g711::encode_ulaw(pcm, out),
            EncoderState::G711 => g711::encode_alaw(pcm, out),
            EncoderState::G722(encoder) => encoder.encode(pcm, out),
            EncoderState::Opus(encoder) => encoder.encode(pcm, out)?,
        })
    }
}

/// The decoding state of one incoming stream, with its loss concealment.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec,
    state: DecoderState,
}

#[derive(Debug)]
enum DecoderState {
    Waveform {
        g722: Option<Box<G722Decoder>>,
        /// The last frame decoded (up to [`MAX_PTIME_MS`] of the codec), replayed quieter
        /// when frames are lost.
        last: Box<[i16]>,
        last_len: usize,
        concealed: u32,
    },
    Opus(Box<OpusDecoder>),
}

impl DecoderState {
    fn waveform(codec: Codec) -> DecoderState {
        DecoderState::Waveform {
            g722: (codec == Codec::G722).then(Box::default),
            last: vec![0; codec.samples_per_frame(MAX_PTIME_MS)].into_boxed_slice(),
            last_len: 0,
            concealed: 0,
        }
    }
}

impl Decoder {
    /// A decoder producing PCM at the codec's [`sample_rate`](Codec::sample_rate).
    pub fn new(codec: Codec) -> Decoder {
        let state = match codec {
            Codec::Opus => DecoderState::Opus(Box::new(OpusDecoder::mono_48k())),
            _ => DecoderState::waveform(codec),
        };
        Decoder { codec, state }
    }

    /// A decoder producing PCM at `rate` (for Opus any of 8, 12, 16, 24 and 48 kHz).
    pub fn with_rate(codec: Codec, rate: u32) -> Result<Decoder, CodecError> {
        let state = match codec {
            Codec::Opus => DecoderState::Opus(Box::new(OpusDecoder::new(rate)?)),
            _ if rate != codec.sample_rate() => return Err(CodecError::SampleRate { codec, rate }),
            _ => DecoderState::waveform(codec),
        };
        Ok(Decoder { codec, state })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Decodes one payload into `out`; returns the samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        match &mut self.state {
            DecoderState::Waveform {
                g722,
                last,
                last_len,
                concealed,
            } => {
                let written = match g722 {
                    Some(decoder) => decoder.decode(payload, out),
                    None if self.codec == Codec::Pcmu => g711::decode_ulaw(payload, out),
                    None => g711::decode_alaw(payload, out),
                };
                let kept = written.min(last.len());
                last[..kept].copy_from_slice(&out[..kept]);
                *last_len = kept;
                *concealed = 0;
                Ok(written)
            }
            DecoderState::Opus(decoder) => decoder.decode(payload, out),
        }
    }

    /// Fills `out` (one frame) in place of a lost packet; returns the samples written.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        match &mut self.state {
            DecoderState::Waveform {
                last,
                last_len,
                concealed,
                ..
            } => {
                *concealed += 1;
                let len = out.len();
                if *concealed > CONCEALED_REPEATS || *last_len == 0 {
                    out.fill(0);
                    return Ok(len);
                }
                let shift = *concealed;
                for (index, sample) in out.iter_mut().enumerate() {
                    *sample = last[index % *last_len] >> shift;
                }
                Ok(len)
            }
            DecoderState::Opus(decoder) => decoder.conceal(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{sine, tone_level};
    use std::time::Duration;

    #[test]
    fn payload_types_clock_rates_and_rtpmap_names() {
        assert_eq!(Codec::Pcmu.static_payload_type(), Some(0));
        assert_eq!(Codec::Pcma.static_payload_type(), Some(8));
        assert_eq!(Codec::G722.static_payload_type(), Some(9));
        assert_eq!(Codec::Opus.static_payload_type(), None);
        assert_eq!(Codec::from_payload_type(9), Some(Codec::G722));
        assert_eq!(Codec::from_payload_type(18), None);
        assert_eq!(Codec::from_rtpmap("pcmu", 8000), Some(Codec::Pcmu));
        assert_eq!(Codec::from_rtpmap("OPUS", 48_000), Some(Codec::Opus));
        assert_eq!(Codec::from_rtpmap("G722", 16_000), None);
        assert_eq!(Codec::from_rtpmap("PCMA", 16_000), None);
        assert_eq!(Codec::G722.clock_rate(), 8000);
        assert_eq!(Codec::G722.sample_rate(), 16_000);
        assert_eq!(Codec::Opus.rtpmap_channels(), 2);
        assert!(Codec::Opus.fmtp().unwrap().contains("useinbandfec=1"));
        assert_eq!(Codec::Pcmu.samples_per_frame(20), 160);
        assert_eq!(Codec::G722.samples_per_frame(20), 320);
        assert_eq!(Codec::G722.timestamp_increment(20), 160);
        assert_eq!(Codec::Opus.timestamp_increment(20), 960);
        assert_eq!(Codec::Pcmu.max_payload_bytes(60), 480);
        assert_eq!(Codec::G722.max_payload_bytes(20), 160);
        assert_eq!(Codec::Opus.max_payload_bytes(20), MAX_PAYLOAD_BYTES);
        assert!(Codec::Opus.supports_ptime(20) && !Codec::Opus.supports_ptime(30));
        assert!(Codec::Pcma.supports_ptime(30) && !Codec::Pcma.supports_ptime(25));
    }

    #[test]
    fn g711_encoders_dispatch_to_the_right_law() {
        let pcm = [0i16; 160];
        let mut payload = [0u8; 160];
        let mut ulaw = Encoder::new(Codec::Pcmu);
        assert_eq!(ulaw.encode(&pcm, &mut payload), Ok(160));
        assert!(payload.iter().all(|&byte| byte == 0xff));
        let mut alaw = Encoder::new(Codec::Pcma);
        assert_eq!(alaw.encode(&pcm, &mut payload), Ok(160));
        assert!(payload.iter().all(|&byte| byte == 0xd5));
        let mut decoded = [1i16; 160];
        let mut decoder = Decoder::new(Codec::Pcma);
        assert_eq!(decoder.decode(&payload, &mut decoded), Ok(160));
        assert!(decoded.iter().all(|&sample| sample == 8));
    }

    #[test]
    fn only_opus_runs_at_other_rates() {
        assert_eq!(
            Encoder::with_rate(Codec::G722, 8000).unwrap_err(),
            CodecError::SampleRate {
                codec: Codec::G722,
                rate: 8000
            }
        );
        assert!(Encoder::with_rate(Codec::Opus, 16_000).is_ok());
        assert!(Decoder::with_rate(Codec::Opus, 8000).is_ok());
        assert!(Decoder::with_rate(Codec::Opus, 44_100).is_err());
    }

    #[test]
    fn waveform_concealment_repeats_quieter_then_falls_silent() {
        let tone = sine(1000.0, 0.5, Duration::from_millis(20), 8000);
        let mut encoder = Encoder::new(Codec::Pcmu);
        let mut decoder = Decoder::new(Codec::Pcmu);
        let mut payload = [0u8; 160];
        let mut frame = [0i16; 160];
        encoder.encode(&tone, &mut payload).unwrap();
        decoder.decode(&payload, &mut frame).unwrap();
        let original = tone_level(&frame, 1000.0, 8000);
        let mut levels = Vec::new();
        for _ in 0..4 {
            assert_eq!(decoder.conceal(&mut frame), Ok(160));
            levels.push(tone_level(&frame, 1000.0, 8000));
        }
        assert!((levels[0] - original / 2.0).abs() < 0.01, "{levels:?}");
        assert!((levels[1] - original / 4.0).abs() < 0.01, "{levels:?}");
        assert_eq!(levels[3], 0.0);
        // A real frame resets the concealment.
        decoder.decode(&payload, &mut frame).unwrap();
        decoder.conceal(&mut frame).unwrap();
        assert!((tone_level(&frame, 1000.0, 8000) - original / 2.0).abs() < 0.01);
    }

    #[test]
    fn every_codec_carries_a_tone_through_encode_and_decode() {
        for codec in Codec::ALL {
            let rate = codec.sample_rate();
            let frame_len = codec.samples_per_frame(20);
            let tone = sine(440.0, 0.3, Duration::from_millis(400), rate);
            let mut encoder = Encoder::new(codec);
            let mut decoder = Decoder::new(codec);
            let mut payload = [0u8; MAX_PAYLOAD_BYTES];
            let mut frame = vec![0i16; frame_len];
            let mut decoded = Vec::new();
            for chunk in tone.chunks_exact(frame_len) {
                let len = encoder.encode(chunk, &mut payload).unwrap();
                assert!(len > 0 && len <= MAX_PAYLOAD_BYTES);
                let samples = decoder.decode(&payload[..len], &mut frame).unwrap();
                assert_eq!(samples, frame_len, "{codec:?}");
                decoded.extend_from_slice(&frame);
            }
            let settled = &decoded[decoded.len() / 2..];
            let level = tone_level(settled, 440.0, rate);
            assert!((level - 0.3).abs() < 0.05, "{codec:?}: 440 Hz at {level}");
            assert!(tone_level(settled, 1000.0, rate) < 0.02, "{codec:?}");
        }
    }
}
