//! Audio codecs negotiated in SDP and carried in RTP.
//!
//! [`Codec`] names a codec by its static RTP payload type (RFC 3551 §6, table 4) and converts
//! between 16-bit linear PCM at the codec's clock rate and payload bytes, into caller buffers.
//! The G.711 codecs are stateless; stateful codecs (G.722, Opus) will bring encoder objects.

pub mod g711;

/// An audio codec callml can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// Every codec, in callml's order of preference for offers and answers.
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// The static RTP payload type (RFC 3551 §6).
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// RTP clock rate in Hz (the `a=rtpmap` rate).
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
        }
    }

    /// Sample rate of the linear PCM that `encode` takes and `decode` produces.
    pub const fn sample_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
        }
    }

    /// The encoding name of `a=rtpmap` (RFC 3551 §6).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec of a static payload type, if callml supports it.
    pub const fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
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

    /// Number of samples in a packet of `ptime_ms` milliseconds (160 for 20 ms of G.711).
    pub const fn samples_per_packet(self, ptime_ms: u32) -> usize {
        (self.sample_rate() / 1000 * ptime_ms) as usize
    }

    /// Encodes `min(pcm.len(), out.len())` samples; returns the number of bytes written.
    /// G.711 produces one byte per sample.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self {
            Codec::Pcmu => g711::encode_ulaw(pcm, out),
            Codec::Pcma => g711::encode_alaw(pcm, out),
        }
    }

    /// Decodes `min(payload.len(), out.len())` bytes; returns the number of samples written.
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            Codec::Pcmu => g711::decode_ulaw(payload, out),
            Codec::Pcma => g711::decode_alaw(payload, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_payload_types_and_rtpmap_names() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
        assert_eq!(Codec::from_rtpmap("pcmu", 8000), Some(Codec::Pcmu));
        assert_eq!(Codec::from_rtpmap("PCMA", 16000), None);
        assert_eq!(Codec::Pcmu.samples_per_packet(20), 160);
    }

    #[test]
    fn encode_and_decode_dispatch_to_the_right_law() {
        let pcm = [0i16; 160];
        let mut payload = [0u8; 160];
        assert_eq!(Codec::Pcmu.encode(&pcm, &mut payload), 160);
        assert!(payload.iter().all(|&byte| byte == 0xff));
        assert_eq!(Codec::Pcma.encode(&pcm, &mut payload), 160);
        assert!(payload.iter().all(|&byte| byte == 0xd5));
        let mut decoded = [1i16; 160];
        assert_eq!(Codec::Pcma.decode(&payload, &mut decoded), 160);
        assert!(decoded.iter().all(|&sample| sample == 8));
    }
}
