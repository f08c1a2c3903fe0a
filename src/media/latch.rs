//! Symmetric RTP (RFC 4961 practice, for NAT): where a leg's RTP goes, learnt from where the
//! far end's packets come from. RTP is sent to the SDP address until valid packets arrive from
//! elsewhere; from then on it goes where they come from. A new source must first send
//! [`LATCH_PROBATION`] packets of one SSRC with consecutive sequence numbers, so stray packets
//! (a previous call's stream still arriving at a reused port) do not capture the leg; packets
//! from other addresses are ignored unless the latched address has been silent for
//! [`RELATCH_AFTER`]. A datagram from source port 0 (which cannot be answered, RFC 768) is
//! accepted but never latched onto.
//!
//! Sans-IO and small enough to copy: a [`MediaSession`](super::session::MediaSession) keeps
//! one, and lends a copy to the relay engine for the length of a bridge.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rtp::RtpPacket;

/// How long a latched address must be silent before another may take its place.
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);
/// Packets in sequence a new source must send before RTP follows it.
pub const LATCH_PROBATION: u8 = 3;

/// What a packet's source is to the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The far end as known (or a source port 0 datagram, used but not followed).
    Current,
    /// A new source that passed probation: RTP now goes to it.
    Latched(SocketAddr),
    /// Someone else, or a new source still on probation: the packet is not the leg's.
    Foreign,
}

/// One leg's RTP destination and the latching state behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLatch {
    symmetric: bool,
    remote: SocketAddr,
    latched_at: Option<Instant>,
    /// A source on probation: address, SSRC, last sequence number, packets seen.
    candidate: Option<(SocketAddr, u32, u16, u8)>,
}

impl SourceLatch {
    /// RTP to `remote` (the SDP address); `symmetric` follows the far end's packets.
    pub fn new(remote: SocketAddr, symmetric: bool) -> SourceLatch {
        SourceLatch {
            symmetric,
            remote,
            latched_at: None,
            candidate: None,
        }
    }

    /// Where RTP goes now.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Whether `packet` from `from`, arriving at `now`, comes from the far end; latches onto a
    /// new source that has passed probation.
    pub fn check(&mut self, packet: &RtpPacket<'_>, from: SocketAddr, now: Instant) -> Source {
        let mut source = Source::Current;
        if self.symmetric && from != self.remote && from.port() != 0 {
            let may_latch = self
                .latched_at
                .is_none_or(|at| now.saturating_duration_since(at) >= RELATCH_AFTER);
            if !may_latch || !self.passes_probation(packet, from) {
                return Source::Foreign;
            }
            self.candidate = None;
            self.remote = from;
            source = Source::Latched(from);
        }
        if from == self.remote {
            self.latched_at = Some(now);
        }
        source
    }

    /// Counts `packet` toward latching onto `from`: true once that source has sent
    /// [`LATCH_PROBATION`] packets of one SSRC with consecutive sequence numbers.
    fn passes_probation(&mut self, packet: &RtpPacket<'_>, from: SocketAddr) -> bool {
        let (ssrc, sequence) = (packet.ssrc(), packet.sequence());
        let seen = match self.candidate {
            Some((address, s, last, seen))
                if address == from && s == ssrc && sequence == last.wrapping_add(1) =>
            {
                seen + 1
            }
            _ => 1,
        };
        self.candidate = Some((from, ssrc, sequence, seen));
        seen >= LATCH_PROBATION
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::RtpSender;

    fn packet(sender: &mut RtpSender, buffer: &mut [u8; 200]) -> usize {
        sender.write_audio(buffer, &[0; 160], 160).unwrap()
    }

    #[test]
    fn follows_a_new_source_only_after_probation_and_only_when_the_old_one_is_silent() {
        let sdp: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let nat: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stray: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let mut latch = SourceLatch::new(sdp, true);
        let mut sender = RtpSender::with_initial_state(0, 9, 100, 0);
        let mut buffer = [0u8; 200];
        let start = Instant::now();
        let mut checks = Vec::new();
        for _ in 0..4 {
            let len = packet(&mut sender, &mut buffer);
            let parsed = RtpPacket::parse(&buffer[..len]).unwrap();
            checks.push(latch.check(&parsed, nat, start));
        }
        assert_eq!(
            checks,
            [
                Source::Foreign,
                Source::Foreign,
                Source::Latched(nat),
                Source::Current
            ]
        );
        assert_eq!(latch.remote(), nat);

        // Another source is ignored while the latched one is live, even after probation.
        let mut other = RtpSender::with_initial_state(0, 10, 1, 0);
        let later = start + Duration::from_millis(500);
        for _ in 0..4 {
            let len = packet(&mut other, &mut buffer);
            let parsed = RtpPacket::parse(&buffer[..len]).unwrap();
            assert_eq!(latch.check(&parsed, stray, later), Source::Foreign);
        }
        // Once the latched source has been silent long enough, it may take over.
        let silent = start + RELATCH_AFTER;
        let results: Vec<Source> = (0..3)
            .map(|_| {
                let len = packet(&mut other, &mut buffer);
                let parsed = RtpPacket::parse(&buffer[..len]).unwrap();
                latch.check(&parsed, stray, silent)
            })
            .collect();
        assert_eq!(results[2], Source::Latched(stray));
    }

    #[test]
    fn without_symmetric_rtp_or_from_port_zero_nothing_latches() {
        let sdp: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut sender = RtpSender::with_initial_state(0, 9, 100, 0);
        let mut buffer = [0u8; 200];
        let now = Instant::now();
        let mut fixed = SourceLatch::new(sdp, false);
        let mut symmetric = SourceLatch::new(sdp, true);
        for _ in 0..5 {
            let len = packet(&mut sender, &mut buffer);
            let parsed = RtpPacket::parse(&buffer[..len]).unwrap();
            let elsewhere: SocketAddr = "127.0.0.1:5000".parse().unwrap();
            assert_eq!(fixed.check(&parsed, elsewhere, now), Source::Current);
            let port_zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
            assert_eq!(symmetric.check(&parsed, port_zero, now), Source::Current);
        }
        assert_eq!((fixed.remote(), symmetric.remote()), (sdp, sdp));
    }
}
