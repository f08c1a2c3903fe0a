//! RTP packets (RFC 3550 §5.1) and telephone-event payloads (RFC 4733 §2.3), without allocation.
//!
//! Receiving: [`RtpPacket::parse`] validates a datagram in place (version 2, CSRC list, header
//! extension, padding) and returns a borrowed view; nothing is copied.
//!
//! Sending: [`write_rtp`] fills a caller-provided buffer with the 12-byte fixed header (no CSRCs,
//! no extension, no padding) followed by the payload. [`RtpSender`] keeps the per-stream state
//! of RFC 3550 §5.1: a random SSRC, a random initial sequence number and a random initial
//! timestamp; the sequence number grows by one per packet, the timestamp by the number of
//! samples each packet carries, and the marker bit is set on the first packet of a talkspurt.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A telephone event (RFC 4733 §2.3) is a 4-byte payload: event code, end bit, reserved bit,
//! 6-bit volume (dBm0 below zero, 0..=63), 16-bit duration in timestamp units. All packets of
//! one event carry the event's start timestamp; the first has the marker bit; the final one
//! (end bit set) is usually sent three times (§2.5.1.4).

use thiserror::Error;

/// The only RTP version in use (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed RTP header, without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;
/// Largest valid payload type (7 bits).
pub const MAX_PAYLOAD_TYPE: u8 = 0x7f;

/// Why a received datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpParseError {
    #[error("RTP packet of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort { len: usize },
    #[error("RTP version {version} is not 2")]
    BadVersion { version: u8 },
    #[error("RTP header lists {csrc_count} CSRCs, which do not fit in a {len}-byte packet")]
    TruncatedCsrcList { csrc_count: u8, len: usize },
    #[error("RTP header extension runs past the end of the {len}-byte packet")]
    TruncatedExtension { len: usize },
    #[error("RTP padding of {padding} bytes does not fit in the {available}-byte payload area")]
    BadPadding { padding: u8, available: usize },
}

/// Why an RTP packet could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpWriteError {
    #[error("buffer of {available} bytes is too small for a {needed}-byte RTP packet")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("RTP payload type {0} is out of range (0..=127)")]
    PayloadTypeOutOfRange(u8),
}

/// The fields of the fixed header that a sender chooses per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A header extension (RFC 3550 §5.3.1): a profile-defined 16-bit value and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A validated, borrowed view over one received RTP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    datagram: &'a [u8],
    csrc_end: usize,
    extension: Option<(u16, usize, usize)>,
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates `datagram` as an RTP packet. Never panics; every malformed input is an error.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtpParseError> {
        let len = datagram.len();
        if len < RTP_HEADER_LEN {
            return Err(RtpParseError::TooShort { len });
        }
        let first = datagram[0];
        let version = first >> 6;
        if version != RTP_VERSION {
            return Err(RtpParseError::BadVersion { version });
        }
        let has_padding = first & 0x20 != 0;
        let has_extension = first & 0x10 != 0;
        let csrc_count = first & 0x0f;

        let csrc_end = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
        if csrc_end > len {
            return Err(RtpParseError::TruncatedCsrcList { csrc_count, len });
        }

        let mut payload_start = csrc_end;
        let mut extension = None;
        if has_extension {
            let header = datagram
                .get(csrc_end..csrc_end + 4)
                .ok_or(RtpParseError::TruncatedExtension { len })?;
            let profile = u16::from_be_bytes([header[0], header[1]]);
            let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let data_start = csrc_end + 4;
            let data_end = data_start + 4 * words;
            if data_end > len {
                return Err(RtpParseError::TruncatedExtension { len });
            }
            extension = Some((profile, data_start, data_end));
            payload_start = data_end;
        }

        let mut payload_end = len;
        if has_padding {
            let padding = datagram[len - 1];
            let available = len - payload_start;
            if padding == 0 || usize::from(padding) > available {
                return Err(RtpParseError::BadPadding { padding, available });
            }
            payload_end = len - usize::from(padding);
        }

        Ok(RtpPacket {
            datagram,
            csrc_end,
            extension,
            payload_start,
            payload_end,
        })
    }

    pub fn marker(&self) -> bool {
        self.datagram[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.datagram[1] & MAX_PAYLOAD_TYPE
    }

    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.datagram[2], self.datagram[3]])
    }

    pub fn timestamp(&self) -> u32 {
        read_u32(self.datagram, 4)
    }

    pub fn ssrc(&self) -> u32 {
        read_u32(self.datagram, 8)
    }

    /// The fixed-header fields, as a sender would have passed them to [`write_rtp`].
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker(),
            payload_type: self.payload_type(),
            sequence: self.sequence(),
            timestamp: self.timestamp(),
            ssrc: self.ssrc(),
        }
    }

    /// The contributing sources (usually none).
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.datagram[RTP_HEADER_LEN..self.csrc_end]
            .chunks_exact(4)
            .map(|word| u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
    }

    pub fn extension(&self) -> Option<RtpExtension<'a>> {
        self.extension.map(|(profile, start, end)| RtpExtension {
            profile,
            data: &self.datagram[start..end],
        })
    }

    /// The payload, without header, CSRCs, extension or padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.datagram[self.payload_start..self.payload_end]
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Writes a 12-byte RTP header and `payload` into `buf`; returns the packet length.
pub fn write_rtp(
    buf: &mut [u8],
    header: &RtpHeader,
    payload: &[u8],
) -> Result<usize, RtpWriteError> {
    if header.payload_type > MAX_PAYLOAD_TYPE {
        return Err(RtpWriteError::PayloadTypeOutOfRange(header.payload_type));
    }
    let needed = RTP_HEADER_LEN + payload.len();
    let available = buf.len();
    let Some(packet) = buf.get_mut(..needed) else {
        return Err(RtpWriteError::BufferTooSmall { needed, available });
    };
    packet[0] = RTP_VERSION << 6;
    packet[1] = (u8::from(header.marker) << 7) | header.payload_type;
    packet[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    packet[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    packet[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    packet[RTP_HEADER_LEN..].copy_from_slice(payload);
    Ok(needed)
}

/// The sending side of one RTP stream (one SSRC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSender {
    payload_type: u8,
    ssrc: u32,
    next_sequence: u16,
    timestamp: u32,
    talkspurt_start: bool,
}

impl RtpSender {
    /// A stream with random SSRC, initial sequence number and initial timestamp (RFC 3550 §5.1).
    /// The first packet starts a talkspurt (marker bit set).
    pub fn new(payload_type: u8) -> Self {
        Self::with_initial_state(payload_type, rand::random(), rand::random(), rand::random())
    }

    /// A stream with chosen initial values (tests, or continuing a stream after a re-INVITE).
    pub fn with_initial_state(payload_type: u8, ssrc: u32, sequence: u16, timestamp: u32) -> Self {
        RtpSender {
            payload_type,
            ssrc,
            next_sequence: sequence,
            timestamp,
            talkspurt_start: true,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Changes the payload type of the following audio packets (e.g. after renegotiation).
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type;
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// The timestamp the next audio packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Goes on from `sequence` and `timestamp` (after packets sent for this SSRC by someone
    /// else: a relay), starting a talkspurt.
    pub fn resume_at(&mut self, sequence: u16, timestamp: u32) {
        self.next_sequence = sequence;
        self.timestamp = timestamp;
        self.talkspurt_start = true;
    }

    /// Marks the next audio packet as the first of a talkspurt (after silence was not sent).
    pub fn start_talkspurt(&mut self) {
        self.talkspurt_start = true;
    }

    /// Advances the timestamp by `samples` without sending (time during which nothing was sent,
    /// or the duration of a telephone event), and starts a new talkspurt.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.talkspurt_start = true;
    }

    /// Writes the next audio packet carrying `payload` (`samples` samples long) into `buf`;
    /// returns its length. On error the stream state is unchanged.
    pub fn write_audio(
        &mut self,
        buf: &mut [u8],
        payload: &[u8],
        samples: u32,
    ) -> Result<usize, RtpWriteError> {
        let header = RtpHeader {
            marker: self.talkspurt_start,
            payload_type: self.payload_type,
            sequence: self.next_sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        let len = write_rtp(buf, &header, payload)?;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.talkspurt_start = false;
        Ok(len)
    }

    /// Writes one RFC 4733 packet of an event that began at `event_timestamp` (the sender's
    /// [`timestamp`](Self::timestamp) when the event started), with payload type
    /// `payload_type` (the negotiated `telephone-event` type). `marker` is set on the first
    /// packet of the event only. The audio timestamp is not advanced: call
    /// [`skip`](Self::skip) with the event duration once the event is over.
    pub fn write_telephone_event(
        &mut self,
        buf: &mut [u8],
        payload_type: u8,
        event_timestamp: u32,
        marker: bool,
        event: &TelephoneEvent,
    ) -> Result<usize, RtpWriteError> {
        let header = RtpHeader {
            marker,
            payload_type,
            sequence: self.next_sequence,
            timestamp: event_timestamp,
            ssrc: self.ssrc,
        };
        let len = write_rtp(buf, &header, &event.to_bytes())?;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        Ok(len)
    }
}

/// A telephone-event payload is shorter than 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("telephone-event payload of {len} bytes is shorter than 4 bytes")]
pub struct TelephoneEventTooShort {
    pub len: usize,
}

/// One RFC 4733 §2.3 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`, 16 flash (RFC 4733 §3.2).
    pub event: u8,
    /// Set on the final packet(s) of the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63); larger means quieter. Written clamped to 63.
    pub volume: u8,
    /// Duration so far, in timestamp units (samples at the clock rate).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Payload length in bytes.
    pub const LEN: usize = 4;

    /// Parses the first 4 bytes of a telephone-event payload.
    pub fn parse(payload: &[u8]) -> Result<Self, TelephoneEventTooShort> {
        let Some(bytes) = payload.get(..Self::LEN) else {
            return Err(TelephoneEventTooShort { len: payload.len() });
        };
        Ok(TelephoneEvent {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3f,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    /// The 4-byte payload (reserved bit zero, volume clamped to 63).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let duration = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | self.volume.min(0x3f),
            duration[0],
            duration[1],
        ]
    }

    /// The DTMF key this event stands for, if it is one of the 16 DTMF events.
    pub fn digit(&self) -> Option<char> {
        dtmf_digit(self.event)
    }
}

/// The DTMF key of an RFC 4733 event code (0–15).
pub fn dtmf_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The RFC 4733 event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`, lower case accepted).
pub fn dtmf_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xfffe,
            timestamp: 0x1234_5678,
            ssrc: 0xdead_beef,
        }
    }

    #[test]
    fn write_then_parse_round_trips() {
        let mut buf = [0u8; 64];
        let payload = [1u8, 2, 3, 4, 5];
        let len = write_rtp(&mut buf, &sample_header(), &payload).unwrap();
        assert_eq!(len, 17);
        assert_eq!(&buf[..4], &[0x80, 0x88, 0xff, 0xfe]);
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        assert_eq!(packet.header(), sample_header());
        assert_eq!(packet.payload(), &payload);
        assert_eq!(packet.csrcs().len(), 0);
        assert_eq!(packet.extension(), None);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        let mut datagram = vec![0xb2, 0x00, 0x00, 0x07, 0, 0, 0, 9, 0, 0, 0, 1];
        datagram.extend_from_slice(&[0, 0, 0, 0xaa, 0, 0, 0, 0xbb]);
        datagram.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]);
        datagram.extend_from_slice(&[0x55, 0x66]);
        datagram.extend_from_slice(&[0, 0, 3]);
        let packet = RtpPacket::parse(&datagram).unwrap();
        assert_eq!(packet.sequence(), 7);
        assert_eq!(packet.timestamp(), 9);
        assert_eq!(packet.ssrc(), 1);
        assert!(!packet.marker());
        assert_eq!(packet.payload_type(), 0);
        assert_eq!(packet.csrcs().collect::<Vec<_>>(), vec![0xaa, 0xbb]);
        assert_eq!(
            packet.extension(),
            Some(RtpExtension {
                profile: 0xbede,
                data: &[1, 2, 3, 4]
            })
        );
        assert_eq!(packet.payload(), &[0x55, 0x66]);
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpParseError::TooShort { len: 11 })
        );
        let mut header = [0u8; 12];
        header[0] = 0x40;
        assert_eq!(
            RtpPacket::parse(&header),
            Err(RtpParseError::BadVersion { version: 1 })
        );
        header[0] = 0x81;
        assert_eq!(
            RtpPacket::parse(&header),
            Err(RtpParseError::TruncatedCsrcList {
                csrc_count: 1,
                len: 12
            })
        );
        header[0] = 0x90;
        assert_eq!(
            RtpPacket::parse(&header),
            Err(RtpParseError::TruncatedExtension { len: 12 })
        );
        let mut with_extension = header.to_vec();
        with_extension.extend_from_slice(&[0, 0, 0, 2, 1, 2, 3, 4]);
        assert_eq!(
            RtpPacket::parse(&with_extension),
            Err(RtpParseError::TruncatedExtension { len: 20 })
        );
        let mut padded = [0u8; 14];
        padded[0] = 0xa0;
        padded[13] = 3;
        assert_eq!(
            RtpPacket::parse(&padded),
            Err(RtpParseError::BadPadding {
                padding: 3,
                available: 2
            })
        );
        padded[13] = 0;
        assert_eq!(
            RtpPacket::parse(&padded),
            Err(RtpParseError::BadPadding {
                padding: 0,
                available: 2
            })
        );
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        let mut state = 0x2545_f491_u32;
        let mut datagram = [0u8; 40];
        for round in 0..20_000 {
            for byte in datagram.iter_mut() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *byte = state as u8;
            }
            datagram[0] = (datagram[0] & 0x3f) | 0x80;
            let len = round % datagram.len();
            if let Ok(packet) = RtpPacket::parse(&datagram[..len]) {
                assert!(packet.payload().len() <= len);
                let _ = packet.csrcs().count();
            }
        }
    }

    #[test]
    fn write_reports_small_buffer_and_bad_payload_type() {
        let mut buf = [0u8; 13];
        assert_eq!(
            write_rtp(&mut buf, &sample_header(), &[0, 0]),
            Err(RtpWriteError::BufferTooSmall {
                needed: 14,
                available: 13
            })
        );
        let header = RtpHeader {
            payload_type: 128,
            ..sample_header()
        };
        assert_eq!(
            write_rtp(&mut buf, &header, &[]),
            Err(RtpWriteError::PayloadTypeOutOfRange(128))
        );
    }

    #[test]
    fn sender_advances_sequence_and_timestamp_and_marks_talkspurts() {
        let mut sender = RtpSender::with_initial_state(0, 42, 0xffff, u32::MAX - 100);
        let mut buf = [0u8; 172];
        let payload = [0xffu8; 160];

        let len = sender.write_audio(&mut buf, &payload, 160).unwrap();
        let first = RtpPacket::parse(&buf[..len]).unwrap().header();
        assert_eq!(
            (first.marker, first.sequence, first.timestamp),
            (true, 0xffff, u32::MAX - 100)
        );

        let len = sender.write_audio(&mut buf, &payload, 160).unwrap();
        let second = RtpPacket::parse(&buf[..len]).unwrap().header();
        assert_eq!(
            (second.marker, second.sequence, second.timestamp),
            (false, 0, 59)
        );
        assert_eq!(second.ssrc, 42);

        sender.skip(320);
        let len = sender.write_audio(&mut buf, &payload, 160).unwrap();
        let third = RtpPacket::parse(&buf[..len]).unwrap().header();
        assert_eq!(
            (third.marker, third.sequence, third.timestamp),
            (true, 1, 539)
        );
    }

    #[test]
    fn sender_state_is_unchanged_when_the_buffer_is_too_small() {
        let mut sender = RtpSender::with_initial_state(0, 1, 10, 1000);
        let before = sender.clone();
        assert!(
            sender
                .write_audio(&mut [0u8; 20], &[0u8; 160], 160)
                .is_err()
        );
        assert_eq!(sender, before);
    }

    #[test]
    fn random_initial_state_differs_between_streams() {
        let streams: Vec<RtpSender> = (0..4).map(|_| RtpSender::new(0)).collect();
        assert!(
            streams
                .windows(2)
                .any(|pair| pair[0].ssrc() != pair[1].ssrc())
        );
        assert!(
            streams
                .windows(2)
                .any(|pair| pair[0].timestamp() != pair[1].timestamp())
        );
    }

    #[test]
    fn telephone_event_round_trips_and_clamps_volume() {
        let event = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        assert_eq!(event.to_bytes(), [11, 0x8a, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&event.to_bytes()), Ok(event));
        assert_eq!(event.digit(), Some('#'));

        let loud = TelephoneEvent {
            volume: 200,
            ..event
        };
        assert_eq!(loud.to_bytes()[1], 0xbf);
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(TelephoneEventTooShort { len: 3 })
        );
        // The reserved bit is ignored on receipt.
        assert_eq!(
            TelephoneEvent::parse(&[5, 0x40 | 7, 0, 160])
                .unwrap()
                .volume,
            7
        );
    }

    #[test]
    fn dtmf_codes_map_both_ways() {
        for (digit, code) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(dtmf_event(digit), Some(code));
            assert_eq!(dtmf_digit(code), Some(digit));
        }
        assert_eq!(dtmf_event('d'), Some(15));
        assert_eq!(dtmf_event('x'), None);
        assert_eq!(dtmf_digit(16), None);
    }

    #[test]
    fn telephone_event_packets_share_the_stream() {
        let mut sender = RtpSender::with_initial_state(0, 7, 100, 8000);
        let mut buf = [0u8; 32];
        let start = sender.timestamp();
        let event = TelephoneEvent {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        };
        let len = sender
            .write_telephone_event(&mut buf, 101, start, true, &event)
            .unwrap();
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        assert_eq!(
            packet.header(),
            RtpHeader {
                marker: true,
                payload_type: 101,
                sequence: 100,
                timestamp: 8000,
                ssrc: 7
            }
        );
        assert_eq!(TelephoneEvent::parse(packet.payload()), Ok(event));
        assert_eq!(sender.next_sequence(), 101);
        assert_eq!(sender.timestamp(), 8000);
    }
}
