//! An adaptive jitter buffer for one received RTP stream: a preallocated ring of packet slots
//! indexed by extended sequence number, played out one frame per 20 ms tick.
//!
//! Packets are [`push`](JitterBuffer::push)ed as they arrive (with their arrival time, which
//! feeds the RFC 3550 statistics in [`ReceptionStats`]) and [`pop`](JitterBuffer::pop)ped on
//! the tick. Sequence numbers are extended across the 16-bit wrap by [`ReceptionStats`]
//! (RFC 3550 A.1); a new SSRC or a confirmed sequence jump restarts the buffer.
//!
//! ```text
//!            target depth reached                 next packet present → Packet
//! Buffering ───────────────────────▶ Playing ───  next missing, later ones present → Lost
//!     ▲                                 │         (the caller conceals one frame)
//!     └──── nothing left to play ───────┘         (an underrun: the target grows)
//! ```
//!
//! Adaptation: the target depth is `1 + ceil(3 J / frame)` frames (J the interarrival jitter),
//! raised by one after each underrun in a talkspurt and lowered again after ten quiet seconds,
//! within `min_frames..=max_frames`. When the buffer holds more than two frames beyond the
//! target for a whole second, one frame is dropped to bring latency down.
//!
//! Memory is sized to what the buffer holds: each slot's payload room is the most one packet
//! of the leg's codec takes ([`JitterBuffer::with_max_payload`]: 480 bytes for 60 ms of G.711,
//! where Opus keeps [`MAX_SLOT_PAYLOAD`]), and that room is allocated with the first packet
//! stored and given back by [`JitterBuffer::release`] (while a relay engine receives the leg's
//! RTP, nothing is buffered here). Nothing allocates per packet: payloads are copied into
//! those fixed slots.

use std::time::{Duration, Instant};

use super::rtcp::{ReceptionStats, SequenceCheck};
use super::rtp::RtpPacket;

/// Largest payload a slot holds (60 ms of G.711 is 480 bytes; Opus voice frames are smaller).
pub const MAX_SLOT_PAYLOAD: usize = 1024;
/// Ticks over which an excess depth must persist before a frame is dropped.
const SHRINK_WINDOW_TICKS: u32 = 50;
/// Quiet time after which an underrun boost decays by one frame.
const BOOST_DECAY: Duration = Duration::from_secs(10);

/// Limits of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Slots in the ring: the most packets held at once.
    pub capacity: usize,
    /// Smallest and largest playout depth, in frames.
    pub min_frames: usize,
    pub max_frames: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            capacity: 32,
            min_frames: 2,
            max_frames: 10,
        }
    }
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Stored,
    /// Stored after forgetting everything before it (new SSRC or sequence restart).
    Restarted,
    /// Its frame was already played or skipped.
    Late,
    Duplicate,
    /// Too far ahead of the playout point for the ring; older packets were dropped for it.
    Overflowed,
    /// A jump in sequence numbers not yet confirmed by a following packet.
    Rejected,
    /// Payload larger than a slot holds ([`JitterBuffer::with_max_payload`]).
    Oversized,
}

/// A packet handed out for playout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferedPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub timestamp: u32,
    pub sequence: u16,
    pub payload: &'a [u8],
}

/// What to play on this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    Packet(BufferedPacket<'a>),
    /// The frame due now was lost: conceal one frame.
    Lost,
    /// Nothing to play (before the first packet, while filling, or during a pause).
    Empty,
}

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub played: u64,
    pub concealed: u64,
    pub late: u64,
    pub duplicates: u64,
    pub restarts: u64,
    pub overflow_drops: u64,
    pub latency_drops: u64,
    pub underruns: u64,
    pub oversized: u64,
}

/// A packet held: its header facts; its payload is at the slot's place in the payload room.
#[derive(Clone, Copy)]
struct Slot {
    extended: Option<u64>,
    payload_type: u8,
    marker: bool,
    timestamp: u32,
    len: usize,
}

const EMPTY_SLOT: Slot = Slot {
    extended: None,
    payload_type: 0,
    marker: false,
    timestamp: 0,
    len: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Buffering,
    Playing,
}

/// The jitter buffer of one received stream.
pub struct JitterBuffer {
    config: JitterConfig,
    /// RTP timestamp units in one frame (the tick), for the jitter-based target.
    frame_units: u32,
    slots: Box<[Slot]>,
    /// `max_payload` bytes for each slot, allocated with the first packet stored; empty
    /// before that and after [`release`](Self::release).
    payloads: Box<[u8]>,
    max_payload: usize,
    reception: ReceptionStats,
    state: State,
    /// Extended sequence number of the next frame to play.
    next: Option<u64>,
    highest: u64,
    boost: usize,
    last_underrun: Option<Instant>,
    excess_ticks: u32,
    stats: JitterStats,
}

impl std::fmt::Debug for JitterBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitterBuffer")
            .field("state", &self.state)
            .field("next", &self.next)
            .field("highest", &self.highest)
            .field("target", &self.target_frames())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl JitterBuffer {
    /// A buffer for a stream with RTP clock `clock_rate` and `frame` per tick; `origin` is any
    /// fixed instant (arrival times are measured from it).
    pub fn new(
        config: JitterConfig,
        clock_rate: u32,
        frame: Duration,
        origin: Instant,
    ) -> JitterBuffer {
        let capacity = config.capacity.max(4);
        let max_frames = config.max_frames.clamp(1, capacity - 2);
        let config = JitterConfig {
            capacity,
            min_frames: config.min_frames.clamp(1, max_frames),
            max_frames,
        };
        let frame_units = (u128::from(clock_rate) * frame.as_nanos() / 1_000_000_000).max(1) as u32;
        JitterBuffer {
            config,
            frame_units,
            slots: vec![EMPTY_SLOT; capacity].into_boxed_slice(),
            payloads: Box::default(),
            max_payload: MAX_SLOT_PAYLOAD,
            reception: ReceptionStats::new(clock_rate, origin),
            state: State::Buffering,
            next: None,
            highest: 0,
            boost: 0,
            last_underrun: None,
            excess_ticks: 0,
            stats: JitterStats::default(),
        }
    }

    /// Slots holding at most `bytes` of payload each (up to [`MAX_SLOT_PAYLOAD`]): the most
    /// one packet of the stream's codec takes; a larger packet is refused as
    /// [`PushOutcome::Oversized`].
    pub fn with_max_payload(mut self, bytes: usize) -> JitterBuffer {
        self.max_payload = bytes.clamp(1, MAX_SLOT_PAYLOAD);
        self.payloads = Box::default();
        self.clear();
        self
    }

    /// Forgets what is held and gives the payload room back (reception statistics stay);
    /// the next packet stored allocates it again.
    pub fn release(&mut self) {
        self.clear();
        self.payloads = Box::default();
    }

    /// Heap bytes the buffer holds now: its slots, and their payload room once allocated.
    pub fn allocated_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots) + self.payloads.len()
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// RFC 3550 statistics of the received stream (loss, jitter, RTCP report blocks).
    pub fn reception(&self) -> &ReceptionStats {
        &self.reception
    }

    pub fn reception_mut(&mut self) -> &mut ReceptionStats {
        &mut self.reception
    }

    /// The playout depth aimed at, in frames.
    pub fn target_frames(&self) -> usize {
        let jitter_frames = (3 * self.reception.jitter()).div_ceil(self.frame_units) as usize;
        (1 + jitter_frames + self.boost).clamp(self.config.min_frames, self.config.max_frames)
    }

    /// Frames from the playout point to the newest packet held.
    pub fn depth(&self) -> usize {
        match self.next {
            Some(next) if self.highest >= next => (self.highest - next + 1) as usize,
            _ => 0,
        }
    }

    fn index(&self, extended: u64) -> usize {
        (extended % self.slots.len() as u64) as usize
    }

    fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.extended = None;
        }
        self.state = State::Buffering;
        self.next = None;
        self.excess_ticks = 0;
    }

    /// Takes a received packet that arrived at `arrival`.
    pub fn push(&mut self, packet: &RtpPacket<'_>, arrival: Instant) -> PushOutcome {
        let payload = packet.payload();
        if payload.len() > self.max_payload {
            self.stats.oversized += 1;
            return PushOutcome::Oversized;
        }
        let mut outcome = PushOutcome::Stored;
        let extended = match self.reception.update(
            packet.ssrc(),
            packet.sequence(),
            packet.timestamp(),
            arrival,
        ) {
            SequenceCheck::Rejected => return PushOutcome::Rejected,
            SequenceCheck::Accepted { extended } => extended,
            SequenceCheck::Restarted { extended } => {
                if self.next.is_some() {
                    self.stats.restarts += 1;
                    outcome = PushOutcome::Restarted;
                }
                self.clear();
                self.highest = extended;
                extended
            }
        };
        let next = *self.next.get_or_insert(extended);
        if extended < next {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        let capacity = self.slots.len() as u64;
        if extended >= next + capacity {
            // Make room: skip the oldest frames so this one fits at the end of the ring.
            let new_next = extended + 1 - capacity;
            for skipped in next..new_next.min(next + capacity) {
                let index = self.index(skipped);
                if self.slots[index].extended.take().is_some() {
                    self.stats.overflow_drops += 1;
                }
            }
            self.next = Some(new_next);
            outcome = PushOutcome::Overflowed;
        }
        let index = self.index(extended);
        if self.slots[index].extended == Some(extended) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        if self.payloads.is_empty() {
            self.payloads = vec![0; self.slots.len() * self.max_payload].into_boxed_slice();
        }
        let start = index * self.max_payload;
        self.payloads[start..start + payload.len()].copy_from_slice(payload);
        self.slots[index] = Slot {
            extended: Some(extended),
            payload_type: packet.payload_type(),
            marker: packet.marker(),
            timestamp: packet.timestamp(),
            len: payload.len(),
        };
        self.highest = self.highest.max(extended);
        outcome
    }

    /// The frame to play on the tick at `now`.
    pub fn pop(&mut self, now: Instant) -> Playout<'_> {
        let Some(next) = self.next else {
            return Playout::Empty;
        };
        if let Some(at) = self.last_underrun
            && self.boost > 0
            && now.saturating_duration_since(at) >= BOOST_DECAY
        {
            self.boost -= 1;
            self.last_underrun = Some(now);
        }
        let depth = self.depth();
        if self.state == State::Buffering {
            if depth < self.target_frames() {
                return Playout::Empty;
            }
            self.state = State::Playing;
        }
        if depth == 0 {
            // Nothing left: a pause in the talkspurt or packets arriving too late.
            self.state = State::Buffering;
            self.stats.underruns += 1;
            self.boost = (self.boost + 1).min(self.config.max_frames);
            self.last_underrun = Some(now);
            return Playout::Empty;
        }
        self.shrink_if_too_deep(depth);
        let next = self.next.unwrap_or(next);
        let index = self.index(next);
        self.next = Some(next + 1);
        if self.slots[index].extended != Some(next) {
            self.stats.concealed += 1;
            return Playout::Lost;
        }
        self.slots[index].extended = None;
        self.stats.played += 1;
        let slot = &self.slots[index];
        let start = index * self.max_payload;
        Playout::Packet(BufferedPacket {
            payload_type: slot.payload_type,
            marker: slot.marker,
            timestamp: slot.timestamp,
            sequence: next as u16,
            payload: &self.payloads[start..start + slot.len],
        })
    }

    /// Drops the oldest frame when the depth stayed two frames over the target for a second.
    fn shrink_if_too_deep(&mut self, depth: usize) {
        if depth > self.target_frames() + 2 {
            self.excess_ticks += 1;
        } else {
            self.excess_ticks = 0;
        }
        if self.excess_ticks >= SHRINK_WINDOW_TICKS
            && let Some(next) = self.next
        {
            let index = self.index(next);
            self.slots[index].extended = None;
            self.next = Some(next + 1);
            self.stats.latency_drops += 1;
            self.excess_ticks = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{RtpHeader, write_rtp};

    const TICK: Duration = Duration::from_millis(20);

    struct Wire {
        buf: [u8; 64],
    }

    impl Wire {
        fn new() -> Wire {
            Wire { buf: [0; 64] }
        }

        /// A packet of `ssrc` with `sequence`, timestamp `160 * index`, payload `[tag]`.
        fn packet(&mut self, ssrc: u32, sequence: u16, timestamp: u32, tag: u8) -> RtpPacket<'_> {
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence,
                timestamp,
                ssrc,
            };
            let len = write_rtp(&mut self.buf, &header, &[tag]).unwrap();
            RtpPacket::parse(&self.buf[..len]).unwrap()
        }
    }

    fn buffer(start: Instant) -> JitterBuffer {
        JitterBuffer::new(JitterConfig::default(), 8000, TICK, start)
    }

    /// What `pop` gave, as the payload tag, `L` for lost, `-` for empty.
    fn drain(buffer: &mut JitterBuffer, now: Instant, ticks: usize) -> String {
        (0..ticks)
            .map(|_| match buffer.pop(now) {
                Playout::Packet(packet) => char::from(packet.payload[0]),
                Playout::Lost => 'L',
                Playout::Empty => '-',
            })
            .collect()
    }

    #[test]
    fn reordered_packets_play_in_sequence_order() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        for (arrival, (sequence, tag)) in [
            (100u16, b'a'),
            (102, b'c'),
            (101, b'b'),
            (104, b'e'),
            (103, b'd'),
        ]
        .into_iter()
        .enumerate()
        {
            let packet = wire.packet(1, sequence, u32::from(sequence) * 160, tag);
            assert_eq!(
                jb.push(&packet, start + TICK * arrival as u32),
                PushOutcome::Stored
            );
        }
        assert_eq!(drain(&mut jb, start, 6), "abcde-");
        assert_eq!(jb.stats().played, 5);
    }

    #[test]
    fn lost_packets_are_reported_for_concealment_and_late_ones_dropped() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        for sequence in [10u16, 11, 13, 14] {
            jb.push(
                &wire.packet(
                    1,
                    sequence,
                    u32::from(sequence) * 160,
                    b'0' + sequence as u8 - 10,
                ),
                start,
            );
        }
        assert_eq!(drain(&mut jb, start, 4), "01L3");
        // 12 arrives after its frame was concealed.
        assert_eq!(
            jb.push(&wire.packet(1, 12, 12 * 160, b'2'), start),
            PushOutcome::Late
        );
        assert_eq!(drain(&mut jb, start, 2), "4-");
        let stats = jb.stats();
        assert_eq!((stats.concealed, stats.late, stats.underruns), (1, 1, 1));
        assert_eq!(
            jb.reception().cumulative_lost(),
            0,
            "12 arrived, late but counted"
        );
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        for (index, sequence) in [65_534u16, 65_535, 0, 1].into_iter().enumerate() {
            jb.push(
                &wire.packet(1, sequence, index as u32 * 160, b'a' + index as u8),
                start,
            );
        }
        assert_eq!(drain(&mut jb, start, 5), "abcd-");
    }

    #[test]
    fn duplicates_are_ignored() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        jb.push(&wire.packet(1, 5, 0, b'a'), start);
        assert_eq!(
            jb.push(&wire.packet(1, 5, 0, b'a'), start),
            PushOutcome::Duplicate
        );
        jb.push(&wire.packet(1, 6, 160, b'b'), start);
        assert_eq!(drain(&mut jb, start, 3), "ab-");
        assert_eq!(jb.stats().duplicates, 1);
    }

    #[test]
    fn a_new_ssrc_restarts_the_buffer() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        for sequence in 0u16..4 {
            jb.push(
                &wire.packet(1, sequence, u32::from(sequence) * 160, b'a'),
                start,
            );
        }
        assert_eq!(drain(&mut jb, start, 2), "aa");
        for sequence in 9000u16..9003 {
            let outcome = jb.push(&wire.packet(2, sequence, 5_000_000, b'z'), start);
            assert_ne!(outcome, PushOutcome::Late);
        }
        assert_eq!(drain(&mut jb, start, 4), "zzz-");
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(jb.reception().ssrc(), Some(2));
    }

    #[test]
    fn timestamp_jumps_within_a_sequence_play_on() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        jb.push(&wire.packet(1, 1, 0, b'a'), start);
        jb.push(&wire.packet(1, 2, 160, b'b'), start);
        // Silence suppression: the next talkspurt starts 10 s later in timestamp.
        jb.push(&wire.packet(1, 3, 80_000, b'c'), start + TICK);
        assert_eq!(drain(&mut jb, start, 4), "abc-");
    }

    #[test]
    fn a_confirmed_sequence_jump_restarts_and_a_lone_one_is_rejected() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        jb.push(&wire.packet(1, 1, 0, b'a'), start);
        jb.push(&wire.packet(1, 2, 160, b'b'), start);
        assert_eq!(
            jb.push(&wire.packet(1, 30_000, 320, b'x'), start),
            PushOutcome::Rejected
        );
        assert_eq!(
            jb.push(&wire.packet(1, 3, 320, b'c'), start),
            PushOutcome::Stored
        );
        assert_eq!(drain(&mut jb, start, 3), "abc");
        jb.push(&wire.packet(1, 40_000, 480, b'x'), start);
        assert_eq!(
            jb.push(&wire.packet(1, 40_001, 640, b'y'), start),
            PushOutcome::Restarted
        );
        jb.push(&wire.packet(1, 40_002, 800, b'z'), start);
        assert_eq!(drain(&mut jb, start, 3), "yz-");
    }

    #[test]
    fn depth_adapts_to_jitter_and_underruns_on_virtual_time() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        // Steady arrival: the target stays at the minimum.
        let mut now = start;
        let mut sequence = 0u16;
        for _ in 0..100 {
            jb.push(
                &wire.packet(1, sequence, u32::from(sequence) * 160, b'a'),
                now,
            );
            sequence += 1;
            let _ = jb.pop(now);
            now += TICK;
        }
        assert_eq!(jb.target_frames(), 2);
        // Packets arrive in bursts of three every 60 ms: jitter rises, and so does the target.
        for round in 0..100u32 {
            if round % 3 == 2 {
                for _ in 0..3 {
                    jb.push(
                        &wire.packet(1, sequence, u32::from(sequence) * 160, b'b'),
                        now,
                    );
                    sequence += 1;
                }
            }
            let _ = jb.pop(now);
            now += TICK;
        }
        assert!(jb.target_frames() >= 4, "target {}", jb.target_frames());
        // With the deeper buffer, further bursts play without underruns once settled.
        let mut underruns_while_bursty = 0;
        for round in 0..150u32 {
            if round % 3 == 2 {
                for _ in 0..3 {
                    jb.push(
                        &wire.packet(1, sequence, u32::from(sequence) * 160, b'b'),
                        now,
                    );
                    sequence += 1;
                }
            }
            let _ = jb.pop(now);
            now += TICK;
            if round == 10 {
                underruns_while_bursty = jb.stats().underruns;
            }
        }
        assert_eq!(jb.stats().underruns, underruns_while_bursty);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn excess_depth_is_trimmed_and_overflow_keeps_the_newest() {
        let start = Instant::now();
        let mut jb = buffer(start);
        let mut wire = Wire::new();
        // Ten frames arrive at once, then one per tick: latency is 8 frames over the target.
        let mut sequence = 0u16;
        for _ in 0..10 {
            jb.push(
                &wire.packet(1, sequence, u32::from(sequence) * 160, b'a'),
                start,
            );
            sequence += 1;
        }
        let mut now = start;
        for _ in 0..400 {
            jb.push(
                &wire.packet(1, sequence, u32::from(sequence) * 160, b'a'),
                now,
            );
            sequence += 1;
            let _ = jb.pop(now);
            now += TICK;
        }
        assert!(jb.depth() <= jb.target_frames() + 2, "depth {}", jb.depth());
        assert!(jb.stats().latency_drops >= 5);

        let mut jb = buffer(start);
        for sequence in 0u16..40 {
            jb.push(
                &wire.packet(1, sequence, u32::from(sequence) * 160, sequence as u8),
                start,
            );
        }
        assert_eq!(jb.stats().overflow_drops, 8);
        match jb.pop(start) {
            Playout::Packet(packet) => assert_eq!(packet.payload, &[8]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payload_room_is_sized_to_the_codec_allocated_on_first_packet_and_released() {
        let start = Instant::now();
        let mut jb = buffer(start).with_max_payload(480);
        let slots_only = jb.allocated_bytes();
        assert!(
            slots_only < 2048,
            "no payload room before a packet: {slots_only}"
        );
        let mut wire = Wire::new();
        jb.push(&wire.packet(1, 10, 1600, b'a'), start);
        assert_eq!(jb.allocated_bytes(), slots_only + 32 * 480);

        // A packet larger than a slot holds is refused, not stored.
        let mut big = [0u8; 600];
        let header = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 11,
            timestamp: 1760,
            ssrc: 1,
        };
        let len = write_rtp(&mut big, &header, &[7; 481]).unwrap();
        let oversized = RtpPacket::parse(&big[..len]).unwrap();
        assert_eq!(jb.push(&oversized, start), PushOutcome::Oversized);
        assert_eq!(jb.stats().oversized, 1);

        // Released while a relay receives the stream: the room goes, the statistics stay, and
        // playout starts again from the next packet stored.
        jb.release();
        assert_eq!(jb.allocated_bytes(), slots_only);
        assert_eq!(jb.reception().expected(), 1);
        let mut now = start;
        for sequence in 12u16..15 {
            jb.push(
                &wire.packet(1, sequence, u32::from(sequence) * 160, sequence as u8),
                now,
            );
            now += TICK;
        }
        assert_eq!(drain(&mut jb, now, 3), "\u{c}\u{d}\u{e}");
        assert_eq!(jb.allocated_bytes(), slots_only + 32 * 480);
    }
}
