//! RTCP (RFC 3550 §6): reception statistics, sender and receiver reports, without allocation.
//!
//! [`ReceptionStats`] follows the appendices of RFC 3550 for one remote source: sequence number
//! extension and validation (A.1: `MAX_DROPOUT`, `MAX_MISORDER`, restart after two sequential
//! packets past a jump), expected and lost packets and the loss fraction of the last interval
//! (A.3), and the interarrival jitter estimate `J += (|D| - J) / 16` in timestamp units (A.8).
//! It yields the report block (§6.4.1) of a sender or receiver report.
//!
//! [`write_report`] builds a compound packet (§6.1): an SR when we sent RTP since the last
//! report, else an RR, followed by the mandatory SDES CNAME. [`parse_compound`] walks a
//! received compound packet and yields its SR/RR contents as borrowed views.
//!
//! ```text
//! SR:  V=2 P RC PT=200 length | SSRC of sender | NTP timestamp (64) | RTP timestamp |
//!      sender's packet count | sender's octet count | report blocks...
//! RR:  V=2 P RC PT=201 length | SSRC of packet sender | report blocks...
//! block: SSRC | fraction lost (8) cumulative lost (24, signed) | extended highest seq |
//!        interarrival jitter | last SR (LSR) | delay since last SR (DLSR, 1/65536 s)
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// RTCP packet types (RFC 3550 §12.1).
pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;
/// A jump in sequence numbers larger than this starts a new sequence (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Packets this far behind the highest are old duplicates or misordered beyond use (A.1).
pub const MAX_MISORDER: u16 = 100;
/// Length of one report block.
pub const REPORT_BLOCK_LEN: usize = 24;
/// Seconds between the NTP era (1900) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why a datagram is not a usable RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("RTCP packet of {len} bytes is shorter than its 4-byte header")]
    TooShort { len: usize },
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    #[error("RTCP packet claims {claimed} bytes but {available} remain")]
    BadLength { claimed: usize, available: usize },
    #[error("RTCP {packet_type} packet is too short for its {count} report blocks")]
    TruncatedReport { packet_type: u8, count: u8 },
    #[error("buffer of {available} bytes cannot hold the {needed}-byte report")]
    BufferTooSmall { needed: usize, available: usize },
}

/// A 64-bit NTP timestamp (seconds since 1900 in the upper 32 bits, fraction in the lower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NtpTime(pub u64);

impl NtpTime {
    pub fn from_system(time: SystemTime) -> NtpTime {
        let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
        let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((seconds << 32) | fraction)
    }

    /// The middle 32 bits, as carried in LSR (units of 1/65536 s).
    pub fn middle(self) -> u32 {
        (self.0 >> 16) as u32
    }

    pub fn plus(self, elapsed: Duration) -> NtpTime {
        let units = (elapsed.as_nanos() << 32) / 1_000_000_000;
        NtpTime(self.0.wrapping_add(units as u64))
    }
}

/// Maps the monotonic clock to wall-clock NTP time, fixed at one instant.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    origin: Instant,
    origin_ntp: NtpTime,
}

impl NtpClock {
    pub fn new(origin: Instant, wallclock: SystemTime) -> NtpClock {
        NtpClock {
            origin,
            origin_ntp: NtpTime::from_system(wallclock),
        }
    }

    pub fn at(&self, now: Instant) -> NtpTime {
        self.origin_ntp
            .plus(now.saturating_duration_since(self.origin))
    }
}

/// Converts a duration in units of 1/65536 s (DLSR, RTT) to a [`Duration`].
pub fn from_ntp_short(units: u32) -> Duration {
    Duration::from_nanos((u64::from(units) * 1_000_000_000) >> 16)
}

fn to_ntp_short(duration: Duration) -> u32 {
    ((duration.as_nanos() << 16) / 1_000_000_000).min(u128::from(u32::MAX)) as u32
}

/// What the sequence number of a received packet means (RFC 3550 A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// A usable packet, with its extended (32-bit, cycle-counting) sequence number.
    Accepted { extended: u64 },
    /// The first packet of a new sequence after a jump: forget what came before.
    Restarted { extended: u64 },
    /// Too far from the expected sequence; kept only if the next packet confirms the jump.
    Rejected,
}

/// One report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the beginning (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    pub extended_highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from this source, or 0.
    pub last_sr: u32,
    /// Time since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = (self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
        out[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.extended_highest_sequence.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    fn parse(bytes: &[u8]) -> ReportBlock {
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let lost = word(4) & 0x00ff_ffff;
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: bytes[4],
            cumulative_lost,
            extended_highest_sequence: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }

    /// Loss fraction as a ratio 0.0..=1.0.
    pub fn loss_ratio(&self) -> f64 {
        f64::from(self.fraction_lost) / 256.0
    }
}

/// Statistics about one remote RTP source (RFC 3550 appendix A).
#[derive(Debug, Clone)]
pub struct ReceptionStats {
    clock_rate: u32,
    origin: Instant,
    ssrc: Option<u32>,
    max_sequence: u16,
    cycles: u64,
    base_sequence: u64,
    bad_sequence: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Last transit time in timestamp units, and the jitter estimate scaled by 16 (A.8).
    transit: Option<i64>,
    jitter_scaled: u64,
    last_sr: Option<(u32, Instant)>,
}

impl ReceptionStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate`; `origin` is any fixed
    /// instant (arrival times are measured from it).
    pub fn new(clock_rate: u32, origin: Instant) -> ReceptionStats {
        ReceptionStats {
            clock_rate: clock_rate.max(1),
            origin,
            ssrc: None,
            max_sequence: 0,
            cycles: 0,
            base_sequence: 0,
            bad_sequence: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_scaled: 0,
            last_sr: None,
        }
    }

    /// The source being tracked.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Starts over for a new source (an SSRC change).
    pub fn reset(&mut self) {
        *self = ReceptionStats::new(self.clock_rate, self.origin);
    }

    fn start_sequence(&mut self, sequence: u16) -> u64 {
        // Start one cycle in so that packets slightly older than the first stay positive.
        self.cycles = 1 << 16;
        self.max_sequence = sequence;
        self.base_sequence = self.cycles + u64::from(sequence);
        self.bad_sequence = None;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
        self.base_sequence
    }

    /// Accounts for a packet of `ssrc` with `sequence` and `timestamp` that arrived at `arrival`
    /// (A.1 and A.8). A new SSRC restarts the statistics.
    pub fn update(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        arrival: Instant,
    ) -> SequenceCheck {
        let check = if self.ssrc != Some(ssrc) {
            self.reset();
            self.ssrc = Some(ssrc);
            SequenceCheck::Restarted {
                extended: self.start_sequence(sequence),
            }
        } else {
            let delta = sequence.wrapping_sub(self.max_sequence);
            if delta < MAX_DROPOUT {
                if sequence < self.max_sequence {
                    self.cycles += 1 << 16;
                }
                self.max_sequence = sequence;
                SequenceCheck::Accepted {
                    extended: self.cycles + u64::from(sequence),
                }
            } else if delta <= u16::MAX - MAX_MISORDER {
                // A large jump: believe it only when the next packet follows it.
                if self.bad_sequence == Some(sequence) {
                    SequenceCheck::Restarted {
                        extended: self.start_sequence(sequence),
                    }
                } else {
                    self.bad_sequence = Some(sequence.wrapping_add(1));
                    return SequenceCheck::Rejected;
                }
            } else {
                // Behind the highest: a duplicate or reordered packet.
                let behind = u64::from(self.max_sequence.wrapping_sub(sequence));
                let highest = self.cycles + u64::from(self.max_sequence);
                SequenceCheck::Accepted {
                    extended: highest.saturating_sub(behind),
                }
            }
        };
        self.received += 1;
        self.update_jitter(timestamp, arrival);
        check
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: Instant) {
        let elapsed = arrival.saturating_duration_since(self.origin);
        let arrival_units =
            (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as i64;
        let transit = arrival_units - i64::from(timestamp);
        if let Some(previous) = self.transit {
            // Timestamps wrap at 2^32: reduce the difference to the nearest representative.
            let d = i64::from((transit - previous) as i32).unsigned_abs();
            if d > u64::from(self.clock_rate) {
                // A timestamp jump (a new talkspurt after silence suppression, a restarted
                // sender) is not network jitter: take it as the new baseline.
                self.transit = Some(transit);
                return;
            }
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter_scaled = self.jitter_scaled + d - ((self.jitter_scaled + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_scaled >> 4).min(u64::from(u32::MAX)) as u32
    }

    /// Interarrival jitter as time.
    pub fn jitter_duration(&self) -> Duration {
        Duration::from_nanos(u64::from(self.jitter()) * 1_000_000_000 / u64::from(self.clock_rate))
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Extended highest sequence number received.
    pub fn extended_highest(&self) -> u64 {
        self.cycles + u64::from(self.max_sequence)
    }

    /// Packets expected from the first to the highest sequence number (A.3).
    pub fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        self.extended_highest() + 1 - self.base_sequence
    }

    /// Packets lost since the beginning (negative when duplicates arrived).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Remembers an SR from this source (for LSR/DLSR in our next report).
    pub fn sender_report_received(&mut self, ntp: NtpTime, arrival: Instant) {
        self.last_sr = Some((ntp.middle(), arrival));
    }

    /// The report block about this source at `now`, starting a new loss interval (A.3).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |fraction| fraction.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((middle, at)) => (middle, to_ntp_short(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            extended_highest_sequence: self.extended_highest() as u32,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: NtpTime,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// What our next report says.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub ssrc: u32,
    /// Present when we sent RTP since the last report: an SR, else an RR.
    pub sender: Option<SenderInfo>,
    pub block: Option<ReportBlock>,
    /// Our canonical name (SDES CNAME), at most 255 bytes.
    pub cname: &'a str,
}

/// Writes a compound RTCP packet (SR or RR, then SDES CNAME) into `out`; returns its length.
pub fn write_report(report: &Report<'_>, out: &mut [u8]) -> Result<usize, RtcpError> {
    let cname = &report.cname.as_bytes()[..report.cname.len().min(255)];
    let blocks = usize::from(report.block.is_some());
    let first_len = 8 + if report.sender.is_some() { 20 } else { 0 } + blocks * REPORT_BLOCK_LEN;
    // SDES: header, SSRC, CNAME item (type, length, text), end item, padding to 32 bits.
    let sdes_len = (8 + 2 + cname.len() + 1).next_multiple_of(4);
    let needed = first_len + sdes_len;
    if out.len() < needed {
        return Err(RtcpError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let packet_type = if report.sender.is_some() { SR } else { RR };
    write_header(&mut out[..4], blocks as u8, packet_type, first_len);
    out[4..8].copy_from_slice(&report.ssrc.to_be_bytes());
    let mut at = 8;
    if let Some(info) = report.sender {
        out[8..16].copy_from_slice(&info.ntp.0.to_be_bytes());
        out[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
        out[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
        out[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
        at = 28;
    }
    if let Some(block) = &report.block {
        block.write(&mut out[at..at + REPORT_BLOCK_LEN]);
    }

    let sdes = &mut out[first_len..needed];
    write_header(&mut sdes[..4], 1, SDES, sdes_len);
    sdes[4..8].copy_from_slice(&report.ssrc.to_be_bytes());
    sdes[8] = 1; // CNAME
    sdes[9] = cname.len() as u8;
    sdes[10..10 + cname.len()].copy_from_slice(cname);
    sdes[10 + cname.len()..].fill(0);
    Ok(needed)
}

fn write_header(out: &mut [u8], count: u8, packet_type: u8, len: usize) {
    out[0] = 0x80 | (count & 0x1f);
    out[1] = packet_type;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
}

/// One packet of a received compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        blocks: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        blocks: ReportBlocks<'a>,
    },
    Bye,
    /// SDES, APP, feedback and anything else: not used.
    Other {
        packet_type: u8,
    },
}

/// The report blocks of an SR or RR, parsed on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    bytes: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.bytes
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(ReportBlock::parse)
    }
}

/// Iterates over the packets of a compound RTCP packet; stops at the first malformed one.
pub fn parse_compound(datagram: &[u8]) -> impl Iterator<Item = Result<RtcpPacket<'_>, RtcpError>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = parse_one(rest);
        match parsed {
            Ok((packet, len)) => {
                rest = &rest[len..];
                Some(Ok(packet))
            }
            Err(error) => {
                rest = &[];
                Some(Err(error))
            }
        }
    })
}

fn parse_one(bytes: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    if bytes.len() < 4 {
        return Err(RtcpError::TooShort { len: bytes.len() });
    }
    let version = bytes[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let count = bytes[0] & 0x1f;
    let packet_type = bytes[1];
    let len = (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) + 1) * 4;
    if len > bytes.len() {
        return Err(RtcpError::BadLength {
            claimed: len,
            available: bytes.len(),
        });
    }
    let body = &bytes[..len];
    let word = |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    let blocks_at = |start: usize| {
        let end = start + usize::from(count) * REPORT_BLOCK_LEN;
        body.get(start..end)
            .map(|bytes| ReportBlocks { bytes })
            .ok_or(RtcpError::TruncatedReport { packet_type, count })
    };
    let packet = match packet_type {
        SR => {
            if len < 28 {
                return Err(RtcpError::TruncatedReport { packet_type, count });
            }
            RtcpPacket::SenderReport {
                ssrc: word(4),
                info: SenderInfo {
                    ntp: NtpTime((u64::from(word(8)) << 32) | u64::from(word(12))),
                    rtp_timestamp: word(16),
                    packet_count: word(20),
                    octet_count: word(24),
                },
                blocks: blocks_at(28)?,
            }
        }
        RR => {
            if len < 8 {
                return Err(RtcpError::TruncatedReport { packet_type, count });
            }
            RtcpPacket::ReceiverReport {
                ssrc: word(4),
                blocks: blocks_at(8)?,
            }
        }
        BYE => RtcpPacket::Bye,
        other => RtcpPacket::Other { packet_type: other },
    };
    Ok((packet, len))
}

/// Round-trip time from a report block about our stream received at `now` (RFC 3550 §6.4.1:
/// arrival − LSR − DLSR), if the block refers to an SR of ours.
pub fn round_trip_time(block: &ReportBlock, now: NtpTime) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let rtt = now
        .middle()
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    // A negative result (clock trouble) wraps to a huge value: discard anything over a minute.
    (rtt < 60 << 16).then(|| from_ntp_short(rtt))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        let start = Instant::now();
        let mut stats = ReceptionStats::new(8000, start);
        let mut extended = Vec::new();
        for (index, sequence) in [65_534u16, 65_535, 0, 1].into_iter().enumerate() {
            let at = start + 20 * MS * index as u32;
            match stats.update(7, sequence, 160 * index as u32, at) {
                SequenceCheck::Accepted { extended: e }
                | SequenceCheck::Restarted { extended: e } => extended.push(e),
                SequenceCheck::Rejected => panic!("rejected {sequence}"),
            }
        }
        assert!(
            extended.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{extended:?}"
        );
        assert_eq!(stats.expected(), 4);
        assert_eq!(stats.cumulative_lost(), 0);
    }

    #[test]
    fn loss_fraction_and_cumulative_loss_follow_appendix_a3() {
        let start = Instant::now();
        let mut stats = ReceptionStats::new(8000, start);
        // 101 packets expected, every fourth lost: 3, 7, ... 99.
        for sequence in 0u16..=100 {
            if sequence % 4 != 3 {
                stats.update(
                    1,
                    sequence,
                    u32::from(sequence) * 160,
                    start + 20 * MS * u32::from(sequence),
                );
            }
        }
        let block = stats
            .report_block(start + 2 * Duration::from_secs(1))
            .unwrap();
        assert_eq!(block.cumulative_lost, 25);
        assert_eq!(block.fraction_lost, 63, "25/101 is 63/256");
        assert_eq!(block.extended_highest_sequence, (1 << 16) + 100);
        // A second interval with no loss.
        for sequence in 101u16..150 {
            stats.update(
                1,
                sequence,
                u32::from(sequence) * 160,
                start + 20 * MS * u32::from(sequence),
            );
        }
        let block = stats.report_block(start + Duration::from_secs(3)).unwrap();
        assert_eq!((block.fraction_lost, block.cumulative_lost), (0, 25));
    }

    #[test]
    fn jitter_estimate_follows_appendix_a8() {
        let start = Instant::now();
        let mut steady = ReceptionStats::new(8000, start);
        let mut jittery = ReceptionStats::new(8000, start);
        for index in 0u32..500 {
            let timestamp = index * 160;
            steady.update(1, index as u16, timestamp, start + 20 * MS * index);
            // Alternately 0 and 10 ms late: |D| is 80 timestamp units every packet.
            let late = if index % 2 == 0 {
                Duration::ZERO
            } else {
                10 * MS
            };
            jittery.update(1, index as u16, timestamp, start + 20 * MS * index + late);
        }
        assert_eq!(steady.jitter(), 0);
        assert!(
            (78..=80).contains(&jittery.jitter()),
            "{}",
            jittery.jitter()
        );
        assert_eq!(jittery.jitter_duration().as_millis(), 9);
    }

    #[test]
    fn a_large_jump_restarts_only_when_confirmed_and_a_new_ssrc_restarts_at_once() {
        let start = Instant::now();
        let mut stats = ReceptionStats::new(8000, start);
        stats.update(1, 10, 0, start);
        stats.update(1, 11, 160, start);
        assert_eq!(stats.update(1, 20_000, 320, start), SequenceCheck::Rejected);
        assert!(matches!(
            stats.update(1, 20_001, 480, start),
            SequenceCheck::Restarted { .. }
        ));
        assert!(matches!(
            stats.update(1, 20_002, 640, start),
            SequenceCheck::Accepted { .. }
        ));
        assert_eq!(stats.expected(), 2);
        assert!(matches!(
            stats.update(2, 5, 0, start),
            SequenceCheck::Restarted { .. }
        ));
        assert_eq!(stats.ssrc(), Some(2));
        assert_eq!(stats.received(), 1);
        // A reordered packet is accepted behind the highest.
        stats.update(2, 7, 320, start);
        assert_eq!(
            stats.update(2, 6, 160, start),
            SequenceCheck::Accepted {
                extended: (1 << 16) + 6
            }
        );
    }

    #[test]
    fn reports_round_trip_through_the_wire_format() {
        let block = ReportBlock {
            ssrc: 0x1234_5678,
            fraction_lost: 12,
            cumulative_lost: -3,
            extended_highest_sequence: 70_000,
            jitter: 44,
            last_sr: 0xabcd_0123,
            delay_since_last_sr: 65_536,
        };
        let sender = SenderInfo {
            ntp: NtpTime(0xe000_0000_8000_0000),
            rtp_timestamp: 1_000,
            packet_count: 50,
            octet_count: 8000,
        };
        let mut buf = [0u8; 200];
        for with_sender in [true, false] {
            let report = Report {
                ssrc: 99,
                sender: with_sender.then_some(sender),
                block: Some(block),
                cname: "callml@example",
            };
            let len = write_report(&report, &mut buf).unwrap();
            assert_eq!(len % 4, 0);
            let packets: Vec<_> = parse_compound(&buf[..len])
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(packets.len(), 2);
            assert_eq!(packets[1], RtcpPacket::Other { packet_type: SDES });
            match packets[0] {
                RtcpPacket::SenderReport { ssrc, info, blocks } => {
                    assert!(with_sender);
                    assert_eq!((ssrc, info), (99, sender));
                    assert_eq!(blocks.iter().collect::<Vec<_>>(), vec![block]);
                }
                RtcpPacket::ReceiverReport { ssrc, blocks } => {
                    assert!(!with_sender);
                    assert_eq!(ssrc, 99);
                    assert_eq!(blocks.iter().collect::<Vec<_>>(), vec![block]);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            write_report(
                &Report {
                    ssrc: 1,
                    sender: None,
                    block: None,
                    cname: "x"
                },
                &mut buf[..10]
            ),
            Err(RtcpError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn malformed_compounds_are_errors_not_panics() {
        assert_eq!(
            parse_compound(&[0x80]).next(),
            Some(Err(RtcpError::TooShort { len: 1 }))
        );
        assert_eq!(
            parse_compound(&[0x40, 200, 0, 0]).next(),
            Some(Err(RtcpError::BadVersion(1)))
        );
        assert!(matches!(
            parse_compound(&[0x80, 200, 0, 9]).next(),
            Some(Err(RtcpError::BadLength { .. }))
        ));
        // An RR claiming two blocks but carrying none.
        let rr = [0x82, 201, 0, 1, 0, 0, 0, 1];
        assert!(matches!(
            parse_compound(&rr).next(),
            Some(Err(RtcpError::TruncatedReport { .. }))
        ));
        let mut state = 7u32;
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(69_069).wrapping_add(1);
                    (state >> 24) as u8
                })
                .collect();
            for packet in parse_compound(&bytes) {
                if let Ok(
                    RtcpPacket::ReceiverReport { blocks, .. }
                    | RtcpPacket::SenderReport { blocks, .. },
                ) = packet
                {
                    let _ = blocks.iter().count();
                }
            }
        }
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        let sent = NtpTime::from_system(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let block = ReportBlock {
            last_sr: sent.middle(),
            delay_since_last_sr: to_ntp_short(Duration::from_millis(500)),
            ..ReportBlock::default()
        };
        let now = sent.plus(Duration::from_millis(580));
        let rtt = round_trip_time(&block, now).unwrap();
        assert!((rtt.as_secs_f64() - 0.080).abs() < 0.001, "{rtt:?}");
        assert_eq!(round_trip_time(&ReportBlock::default(), now), None);
        let clock = NtpClock::new(Instant::now(), UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(
            clock.at(Instant::now() - Duration::from_secs(1)).0 >> 32,
            NTP_UNIX_OFFSET + 10
        );
    }
}
