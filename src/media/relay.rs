//! Relaying RTP between two legs that share a codec, without decoding (ARCHITECTURE.md
//! principle 4): each packet is rewritten into the outgoing leg's stream — our SSRC, a
//! continuous sequence number and timestamp, the payload type negotiated on that leg — into a
//! caller buffer, allocating nothing.
//!
//! The output continues the leg's own stream: its first packet carries the sequence number and
//! timestamp the leg's sender would have used next (so that a receiver that heard ringback or a
//! prompt on this SSRC sees no jump, RFC 3550 §A.1), and [`RtpRelay::next`] hands them back
//! when the bridge ends. When the incoming source changes (a new SSRC: the far end restarted, or
//! the bridge switched legs) the output carries on where it was: the next sequence number, the timestamp one frame
//! on, and the marker bit set to tell the receiver a new talkspurt begins (RFC 3550 §5.1).
//! Header extensions and CSRC lists are not forwarded.

use thiserror::Error;

use super::rtp::{RtpHeader, RtpPacket, RtpWriteError, write_rtp};

/// Payload type mappings one relay holds (codec and telephone-event, per clock rate).
const MAX_MAPPINGS: usize = 4;

/// Why a packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RelayError {
    #[error("payload type {0} is not negotiated on the outgoing leg")]
    UnmappedPayloadType(u8),
    #[error(transparent)]
    Write(#[from] RtpWriteError),
}

/// Rewrites one direction of a same-codec bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpRelay {
    ssrc: u32,
    /// Timestamp units of one frame, for the gap left at a source change.
    frame_units: u32,
    mappings: [(u8, u8); MAX_MAPPINGS],
    mapping_count: usize,
    source: Option<u32>,
    sequence_delta: u16,
    timestamp_delta: u32,
    /// The (sequence number, timestamp) of the newest packet written.
    last: (u16, u32),
}

impl RtpRelay {
    /// A relay sending as `ssrc` with frames of `frame_units` timestamp units (160 for 20 ms
    /// at 8 kHz) and the payload type mappings `(incoming, outgoing)` (at most four); its first
    /// packet carries `next`, the (sequence number, timestamp) the leg would have sent next.
    pub fn new(ssrc: u32, frame_units: u32, mappings: &[(u8, u8)], next: (u16, u32)) -> RtpRelay {
        let mut table = [(0, 0); MAX_MAPPINGS];
        let count = mappings.len().min(MAX_MAPPINGS);
        table[..count].copy_from_slice(&mappings[..count]);
        RtpRelay {
            ssrc,
            frame_units,
            mappings: table,
            mapping_count: count,
            source: None,
            sequence_delta: 0,
            timestamp_delta: 0,
            last: (next.0.wrapping_sub(1), next.1.wrapping_sub(frame_units)),
        }
    }

    /// The (sequence number, timestamp) the leg's next packet must carry after the relayed
    /// ones: where its own sender takes over when the bridge ends.
    pub fn next(&self) -> (u16, u32) {
        let (sequence, timestamp) = self.last;
        (
            sequence.wrapping_add(1),
            timestamp.wrapping_add(self.frame_units),
        )
    }

    /// Writes `packet` as the outgoing leg's packet into `out`; returns its length.
    pub fn relay(&mut self, packet: &RtpPacket<'_>, out: &mut [u8]) -> Result<usize, RelayError> {
        let incoming = packet.payload_type();
        let payload_type = self.mappings[..self.mapping_count]
            .iter()
            .find(|(from, _)| *from == incoming)
            .map(|(_, to)| *to)
            .ok_or(RelayError::UnmappedPayloadType(incoming))?;
        let mut marker = packet.marker();
        if self.source != Some(packet.ssrc()) {
            let (next_sequence, next_timestamp) = self.next();
            self.sequence_delta = next_sequence.wrapping_sub(packet.sequence());
            self.timestamp_delta = next_timestamp.wrapping_sub(packet.timestamp());
            self.source = Some(packet.ssrc());
            marker = true;
        }
        let sequence = packet.sequence().wrapping_add(self.sequence_delta);
        let timestamp = packet.timestamp().wrapping_add(self.timestamp_delta);
        let header = RtpHeader {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        let len = write_rtp(out, &header, packet.payload())?;
        if (sequence.wrapping_sub(self.last.0) as i16) > 0 {
            self.last = (sequence, timestamp);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::RtpSender;

    fn relayed(relay: &mut RtpRelay, sender: &mut RtpSender) -> RtpHeader {
        let mut incoming = [0u8; 200];
        let len = sender.write_audio(&mut incoming, &[7; 160], 160).unwrap();
        let packet = RtpPacket::parse(&incoming[..len]).unwrap();
        let mut out = [0u8; 200];
        let len = relay.relay(&packet, &mut out).unwrap();
        let rewritten = RtpPacket::parse(&out[..len]).unwrap();
        assert_eq!(rewritten.payload(), &[7; 160]);
        rewritten.header()
    }

    #[test]
    fn rewrites_ssrc_and_payload_type_and_continues_across_a_source_change() {
        let mut relay = RtpRelay::new(0xabcd, 160, &[(107, 111), (101, 100)], (65_534, 1000));
        let mut first = RtpSender::with_initial_state(107, 1, 12, 777_000);
        let headers: Vec<RtpHeader> = (0..3).map(|_| relayed(&mut relay, &mut first)).collect();
        assert_eq!(
            headers
                .iter()
                .map(|h| (h.sequence, h.timestamp, h.ssrc, h.payload_type))
                .collect::<Vec<_>>(),
            vec![
                (65_534, 1000, 0xabcd, 111),
                (65_535, 1160, 0xabcd, 111),
                (0, 1320, 0xabcd, 111)
            ]
        );
        assert!(headers[0].marker && !headers[1].marker);
        // The far end restarts with a new SSRC and random sequence and timestamp.
        let mut second = RtpSender::with_initial_state(107, 2, 5000, 9_000_000);
        second.start_talkspurt();
        let after: Vec<RtpHeader> = (0..2).map(|_| relayed(&mut relay, &mut second)).collect();
        assert_eq!(
            (after[0].sequence, after[0].timestamp, after[0].marker),
            (1, 1480, true)
        );
        assert_eq!(
            (after[1].sequence, after[1].timestamp, after[1].marker),
            (2, 1640, false)
        );
        assert_eq!(
            relay.next(),
            (3, 1800),
            "where the leg's own sender goes on"
        );
    }

    #[test]
    fn unmapped_payload_types_and_small_buffers_are_errors() {
        let mut relay = RtpRelay::new(1, 160, &[(0, 0)], (0, 0));
        let mut incoming = [0u8; 200];
        let len = RtpSender::with_initial_state(8, 1, 1, 1)
            .write_audio(&mut incoming, &[0; 160], 160)
            .unwrap();
        let packet = RtpPacket::parse(&incoming[..len]).unwrap();
        assert_eq!(
            relay.relay(&packet, &mut [0; 200]),
            Err(RelayError::UnmappedPayloadType(8))
        );
        let mut relay = RtpRelay::new(1, 160, &[(8, 8)], (0, 0));
        assert!(matches!(
            relay.relay(&packet, &mut [0; 20]),
            Err(RelayError::Write(_))
        ));
    }
}
