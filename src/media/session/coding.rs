//! A leg's coding state, made on demand: the negotiated codec's encoder and decoder, the
//! resamplers between their rates and the session's 8 kHz (and a wideband room's 16 kHz), and
//! one tick's PCM and payload. Made by the first tick that codes audio and dropped while a
//! relay engine carries the leg (`MediaSession::lend`).

use super::{PTIME, SessionConfig};
use crate::media::codec::{Codec, Decoder, Encoder};
use crate::media::library::AUDIO_SAMPLE_RATE;
use crate::media::mixer::MixRate;
use crate::media::resample::FrameResampler;

/// Samples per 20 ms tick at `rate`.
const fn per_tick(rate: u32) -> usize {
    (rate / 50) as usize
}

/// Turning the leg's audio into packets and back, for the negotiated codec only: encoder,
/// decoder, the resamplers between their rates and 8 kHz (and a wideband room's 16 kHz), and
/// one tick's PCM and payload.
pub(super) struct Coding {
    pub(super) encoder: Encoder,
    pub(super) decoder: Decoder,
    pub(super) to_codec: Option<FrameResampler>,
    pub(super) from_codec: Option<FrameResampler>,
    /// The encoder's and the decoder's PCM rates, and their samples per tick.
    pub(super) encode_rate: u32,
    pub(super) decode_rate: u32,
    pub(super) encode_samples: usize,
    pub(super) decode_samples: usize,
    /// Conversions to and from a wideband room's 16 kHz ([`MediaSession::set_mix_rate`]):
    /// decoded audio up to the room (when it is not 16 kHz already), the room's frames down
    /// to 8 kHz (for a narrowband encoder, and for recorders).
    pub(super) to_room: Option<FrameResampler>,
    pub(super) from_room: Option<FrameResampler>,
    /// One tick of PCM at the encoder's or the decoder's rate, and one encoded payload.
    pub(super) pcm: Box<[i16]>,
    pub(super) payload: Box<[u8]>,
}

impl Coding {
    pub(super) fn new(config: &SessionConfig, mix_rate: MixRate) -> Coding {
        let codec = config.codec;
        let (encoder, encode_rate) = match codec {
            Codec::Opus => match Encoder::with_rate(codec, config.opus_rate) {
                Ok(encoder) => (encoder, config.opus_rate),
                Err(_) => (Encoder::new(codec), codec.sample_rate()),
            },
            _ => (Encoder::new(codec), codec.sample_rate()),
        };
        let (decoder, decode_rate) = decoder_for(codec, mix_rate);
        let mut coding = Coding {
            to_codec: FrameResampler::new(AUDIO_SAMPLE_RATE, encode_rate),
            from_codec: FrameResampler::new(decode_rate, AUDIO_SAMPLE_RATE),
            encode_rate,
            decode_rate,
            encode_samples: per_tick(encode_rate),
            decode_samples: per_tick(decode_rate),
            to_room: None,
            from_room: None,
            encoder,
            decoder,
            pcm: vec![0; per_tick(encode_rate).max(per_tick(decode_rate))].into_boxed_slice(),
            payload: vec![0; codec.max_payload_bytes(PTIME.as_millis() as u32)].into_boxed_slice(),
        };
        coding.set_room_resamplers(mix_rate);
        coding
    }

    /// Decodes at the room's rate where the codec can (Opus), and sets up the conversions a
    /// wideband room needs.
    pub(super) fn set_mix_rate(&mut self, codec: Codec, mix_rate: MixRate) {
        let (decoder, decode_rate) = decoder_for(codec, mix_rate);
        if decode_rate != self.decode_rate {
            self.decoder = decoder;
            self.decode_rate = decode_rate;
            self.decode_samples = per_tick(decode_rate);
            self.from_codec = FrameResampler::new(decode_rate, AUDIO_SAMPLE_RATE);
            if self.decode_samples > self.pcm.len() {
                self.pcm = vec![0; self.decode_samples].into_boxed_slice();
            }
        }
        self.set_room_resamplers(mix_rate);
    }

    /// The conversions to and from a wideband room's 16 kHz, none in a narrowband room.
    fn set_room_resamplers(&mut self, mix_rate: MixRate) {
        let room = MixRate::Wideband.hz();
        (self.to_room, self.from_room) = match mix_rate {
            MixRate::Narrowband => (None, None),
            MixRate::Wideband => (
                FrameResampler::new(self.decode_rate, room),
                FrameResampler::new(room, AUDIO_SAMPLE_RATE),
            ),
        };
    }
}

/// The leg's coding state, made now if the leg has none.
pub(super) fn coding<'a>(
    slot: &'a mut Option<Box<Coding>>,
    config: &SessionConfig,
    mix_rate: MixRate,
) -> &'a mut Coding {
    slot.get_or_insert_with(|| Box::new(Coding::new(config, mix_rate)))
}

/// The decoder of `codec` and its PCM rate: the mix rate where the codec decodes to it
/// directly (G.711 at 8 kHz, G.722 at 16 kHz, Opus at either), else the codec's own.
fn decoder_for(codec: Codec, mix_rate: MixRate) -> (Decoder, u32) {
    match Decoder::with_rate(codec, mix_rate.hz()) {
        Ok(decoder) => (decoder, mix_rate.hz()),
        Err(_) => (Decoder::new(codec), codec.sample_rate()),
    }
}
