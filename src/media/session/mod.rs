//! The media of one call leg, sans-IO: RTP and RTCP datagrams and the 20 ms tick go in;
//! datagrams to send ([`Transmit`]) and [`MediaEvent`]s come out. [`super::stream::RtpStream`]
//! puts sockets around it; tests drive it on virtual time.
//!
//! ```text
//! handle_rtp ─▶ symmetric RTP latch ─▶ jitter buffer (RFC 3550 stats)
//!                                   └ telephone-event ─▶ RFC 4733 receiver ─▶ Digit
//! tick(now):  jitter pop ─▶ decode / conceal ─▶ resample to 8 kHz ─▶ received frame
//!             received frame ─▶ in-band DTMF ─▶ Digit;  silence detector;  recorder taps
//!             prompt / echo / silence (8 kHz) ─▶ resample ─▶ encode ─▶ RTP  (or RFC 4733 digits)
//!             inactivity check ─▶ Inactive;   every ~5 s ─▶ RTCP SR/RR + SDES
//! handle_rtcp ─▶ SR (for LSR/DLSR), report blocks about us (loss, jitter, RTT)
//! ```
//!
//! Telephone events are read as they arrive rather than at playout: a key needs no
//! de-jittering (its packets carry their own timestamps), and a sender that sends only events
//! for a while, with gaps in its sequence numbers, would otherwise hold keys back behind the
//! frames the jitter buffer conceals for the gap.
//!
//! Audio inside the session is 8 kHz mono ([`AUDIO_SAMPLE_RATE`]), the rate of prompts,
//! recordings and DTMF detection; each codec's own rate is reached through a streaming
//! resampler (G.722 16 kHz, Opus [`SessionConfig::opus_rate`]). Receiving assumes the far end
//! packetises at the tick interval (20 ms), as nearly every phone does.
//!
//! Symmetric RTP (RFC 4961 practice, for NAT) is [`super::latch`]'s: RTP follows the far
//! end's packets once a new source has passed probation. RTCP latches onto the first valid
//! report's source on its own port.
//!
//! While a same-codec bridge relays this leg, the relay engine receives its RTP:
//! [`MediaSession::lend`] hands it what receiving needs ([`RelayedLeg`]: payload types, the
//! latch, reception statistics) and [`MediaSession::take_back`] folds the result in after.
//!
//! SRTP (RFC 3711, [`super::srtp`]): with keys in [`SessionConfig::srtp`] every packet sent
//! is protected in its transmit slot and every packet received is authenticated and
//! decrypted in the receive buffer before anything reads it; one that fails authentication
//! or replays is dropped and counted ([`StreamStats::srtp_auth_failures`],
//! [`StreamStats::srtp_replays`]). The relay engine borrows the RTP contexts with the leg.
//!
//! Memory on demand, nothing per packet: the coding state ([`Coding`]: the negotiated codec's
//! encoder and decoder, the resamplers between its rate and 8 kHz or a room's 16 kHz, and a
//! tick's PCM and payload buffers) is made by the first tick that codes audio, for that codec
//! only, and dropped while a relay engine carries the leg ([`MediaSession::lend`]), as is the
//! jitter buffer's payload room ([`JitterBuffer::release`]); the room's 16 kHz frames exist
//! only in a wideband room, the in-band DTMF detector only when it listens, recorders and the
//! silence detector only while armed. Buffers are sized to the codec (a G.711 leg's jitter
//! slots hold 60 ms of G.711, not an Opus frame), and nothing grows with the call's length.
//! Once made, nothing is allocated per packet or per tick.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::codec::{Codec, MAX_PTIME_MS};
use super::dtmf::{
    Digit, DigitAction, DigitSender, DigitSource, DigitTiming, InbandDetector, InvalidDigits,
    Rfc4733Receiver,
};
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
pub use super::latch::{LATCH_PROBATION, RELATCH_AFTER};
use super::latch::{Source, SourceLatch};
use super::library::{AUDIO_SAMPLE_RATE, Audio};
use super::mixer::{MixRate, WIDEBAND_FRAME};
use super::play_stream::StreamedAudio;
use super::record::{Recorder, SilenceDetector};
use super::rtcp::REPORT_BLOCK_LEN;
use super::rtcp::{self, NtpClock, ReceptionStats, Report, RtcpPacket, SenderInfo, SequenceCheck};
use super::rtp::{RtpPacket, RtpSender};
use super::srtp::{SRTCP_OVERHEAD, SrtpConfig, SrtpError, SrtpReceiver, SrtpSender, SrtpSession};

mod coding;
mod transmit;

use coding::{Coding, coding};
use transmit::{TransmitQueue, transmit_slot_len};

/// The tick: one packet each way per 20 ms.
pub const PTIME: Duration = Duration::from_millis(20);
/// Default media inactivity timeout: no RTP for this long ends the call.
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Interval between RTCP reports (RFC 3550 §6.2 minimum; randomised ±50 % per report).
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Comfort noise (RFC 3389), static payload type 13: played as silence.
const COMFORT_NOISE: u8 = 13;
/// Samples of one tick at 8 kHz.
const FRAME: usize = (AUDIO_SAMPLE_RATE / 50) as usize;
/// The longest RTCP report a leg sends (a sender report with one report block, SDES with a
/// CNAME of 255 bytes, padded) with SRTCP's additions: the least a transmit slot holds.
const MAX_RTCP_DATAGRAM: usize =
    28 + REPORT_BLOCK_LEN + (8 + 2 + 255 + 1usize).next_multiple_of(4) + SRTCP_OVERHEAD;
/// Datagrams one tick may queue: three copies of a final DTMF packet and an RTCP report.
const TRANSMIT_SLOTS: usize = 4;
/// Events held until the call task takes them.
const EVENT_SLOTS: usize = 16;

/// How a leg's media is set up, from the SDP negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub codec: Codec,
    /// The payload type negotiated for the codec (dynamic for Opus).
    pub payload_type: u8,
    /// The payload type of `telephone-event` at the codec's clock rate, if negotiated.
    pub telephone_event: Option<u8>,
    /// Where the SDP says to send RTP, and RTCP (default: the RTP port + 1).
    pub remote: SocketAddr,
    pub remote_rtcp: Option<SocketAddr>,
    /// PCM rate the Opus encoder is fed (8, 12, 16, 24 or 48 kHz; the RTP clock stays 48 kHz).
    pub opus_rate: u32,
    /// No RTP for this long is reported as [`MediaEvent::Inactive`].
    pub inactivity_timeout: Duration,
    /// Look for DTMF tones in the audio; default: only when `telephone-event` was not
    /// negotiated (a phone sending both would otherwise be heard twice).
    pub inband_dtmf: Option<bool>,
    /// Follow the far end's source address (symmetric RTP).
    pub symmetric_rtp: bool,
    pub jitter: JitterConfig,
    pub digit_timing: DigitTiming,
    /// SDES CNAME of our RTCP reports.
    pub cname: String,
    /// SRTP keys (RFC 4568 SDES), when the leg's media is encrypted.
    pub srtp: Option<SrtpConfig>,
}

impl SessionConfig {
    pub fn new(codec: Codec, payload_type: u8, remote: SocketAddr) -> SessionConfig {
        SessionConfig {
            codec,
            payload_type,
            telephone_event: None,
            remote,
            remote_rtcp: None,
            opus_rate: 16_000,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            inband_dtmf: None,
            symmetric_rtp: true,
            jitter: JitterConfig::default(),
            digit_timing: DigitTiming::default(),
            cname: "callml".to_owned(),
            srtp: None,
        }
    }
}

/// A leg records through independent taps, so that a `<Record>` or a `<Dial record>` can run
/// during a recording of the whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingTap {
    /// The `<Record>` verb's recording.
    Verb = 0,
    /// A recording of the whole call (REST `Record=true`).
    Call = 1,
    /// A `<Dial record>` recording, while the dial lasts.
    Dial = 2,
}

/// Something the call task should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key press, from RFC 4733 events or in-band tones.
    Digit(Digit),
    /// The digit string given to [`MediaSession::send_digits`] has been sent.
    DigitsSent,
    /// No RTP has arrived for the inactivity timeout (reported once until RTP resumes).
    Inactive { silent_for: Duration },
    /// The silence detector armed with [`MediaSession::detect_silence`] reached its timeout.
    SilenceTimeout,
    /// Symmetric RTP: RTP is now sent to this address, where the far end's packets come from.
    RemoteLatched { address: SocketAddr },
}

/// A datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub destination: SocketAddr,
    /// Whether it goes out on the RTCP socket.
    pub rtcp: bool,
    pub payload: &'a [u8],
}

/// The far end's view of our stream, from its RTCP reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteReport {
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    /// Jitter they measured on our packets.
    pub jitter: Duration,
    pub round_trip: Option<Duration>,
}

/// Counters and quality figures of a leg, for the call record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub packets_sent: u64,
    pub octets_sent: u64,
    pub packets_received: u64,
    pub octets_received: u64,
    /// Packets lost on the way to us (RFC 3550 cumulative loss; negative with duplicates).
    pub packets_lost: i64,
    /// Share of expected packets lost, in 1/1000.
    pub loss_permille: u32,
    /// Interarrival jitter of received RTP.
    pub jitter: Duration,
    pub jitter_buffer: JitterStats,
    /// Datagrams that were not RTP, or carried a payload type not negotiated.
    pub malformed: u64,
    pub unknown_payload_type: u64,
    /// Packets from an address other than the latched one.
    pub foreign: u64,
    pub send_errors: u64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    /// SRTP and SRTCP packets dropped because their authentication tag did not match (a
    /// wrong or missing key, or an altered packet).
    pub srtp_auth_failures: u64,
    /// SRTP and SRTCP packets dropped as replays (seen before, or older than the window).
    pub srtp_replays: u64,
    pub remote: Option<RemoteReport>,
}

impl StreamStats {
    /// Adds the packet counters of `other` (what a relay counted for the leg).
    fn add_counts(&mut self, other: &StreamStats) {
        self.packets_sent += other.packets_sent;
        self.octets_sent += other.octets_sent;
        self.packets_received += other.packets_received;
        self.octets_received += other.octets_received;
        self.malformed += other.malformed;
        self.unknown_payload_type += other.unknown_payload_type;
        self.foreign += other.foreign;
        self.send_errors += other.send_errors;
        self.srtp_auth_failures += other.srtp_auth_failures;
        self.srtp_replays += other.srtp_replays;
    }

    /// Counts a packet SRTP refused.
    fn srtp_refused(&mut self, error: SrtpError) {
        match error {
            SrtpError::Authentication => self.srtp_auth_failures += 1,
            SrtpError::Replay => self.srtp_replays += 1,
            SrtpError::Malformed | SrtpError::NoRoom => self.malformed += 1,
        }
    }
}

/// Unprotects a received SRTP packet in place when the leg has keys: the RTP packet's
/// length, or `None` (counted) when it is to be dropped.
fn unprotect_rtp(
    receiver: Option<&mut SrtpReceiver>,
    datagram: &mut [u8],
    stats: &mut StreamStats,
) -> Option<usize> {
    let Some(receiver) = receiver else {
        return Some(datagram.len());
    };
    receiver
        .unprotect(datagram)
        .map_err(|error| stats.srtp_refused(error))
        .ok()
}

/// Protects an RTP packet written in `buffer[..len]` when the leg has keys: the length to
/// send, or `None` (counted as a send error) when it cannot go.
fn protect_rtp(
    sender: Option<&mut SrtpSender>,
    buffer: &mut [u8],
    len: usize,
    stats: &mut StreamStats,
) -> Option<usize> {
    let Some(sender) = sender else {
        return Some(len);
    };
    sender
        .protect(buffer, len)
        .map_err(|_| stats.send_errors += 1)
        .ok()
}

/// The checks every received RTP packet goes through: a payload type the leg takes
/// (`known`), and a source the [`SourceLatch`] accepts. Counts the packet in `stats` either
/// way; `None` when it is not the leg's.
fn admit(
    known: &[u8; 3],
    latch: &mut SourceLatch,
    stats: &mut StreamStats,
    packet: &RtpPacket<'_>,
    from: SocketAddr,
    now: Instant,
) -> Option<Source> {
    if !known.contains(&packet.payload_type()) {
        stats.unknown_payload_type += 1;
        return None;
    }
    let source = latch.check(packet, from, now);
    if source == Source::Foreign {
        stats.foreign += 1;
        return None;
    }
    stats.packets_received += 1;
    stats.octets_received += packet.payload().len() as u64;
    Some(source)
}

/// What receiving one leg's RTP needs while a relay engine (not the call task) receives it:
/// lent by [`MediaSession::lend`], given back to [`MediaSession::take_back`]. Packets are
/// checked, latched and counted as [`MediaSession::handle_rtp`] does, reception statistics
/// (loss, jitter) included.
#[derive(Debug, Clone)]
pub struct RelayedLeg {
    payload_types: [u8; 3],
    latch: SourceLatch,
    reception: ReceptionStats,
    /// Counters only (packets and octets both ways, rejects, send errors).
    counts: StreamStats,
    last_rtp: Instant,
    /// Where RTP moved to, if the latch followed a new source.
    latched: Option<SocketAddr>,
    /// The leg's SRTP contexts for RTP received and sent, when it is encrypted (boxed: 1.8 KB
    /// that a plain leg does not hold).
    srtp: Option<Box<(SrtpReceiver, SrtpSender)>>,
}

impl RelayedLeg {
    /// A datagram that arrived from `from` at `now`: the packet to relay when it is this
    /// leg's RTP (authentic and new when the leg uses SRTP — it is decrypted in place —, right
    /// payload type, right source, not a stale duplicate).
    pub fn receive<'a>(
        &mut self,
        datagram: &'a mut [u8],
        from: SocketAddr,
        now: Instant,
    ) -> Option<RtpPacket<'a>> {
        let receiver = self.srtp.as_deref_mut().map(|(receiver, _)| receiver);
        let len = unprotect_rtp(receiver, datagram, &mut self.counts)?;
        let datagram: &'a [u8] = &datagram[..len];
        let Ok(packet) = RtpPacket::parse(datagram) else {
            self.counts.malformed += 1;
            return None;
        };
        let source = admit(
            &self.payload_types,
            &mut self.latch,
            &mut self.counts,
            &packet,
            from,
            now,
        )?;
        if let Source::Latched(address) = source {
            self.latched = Some(address);
        }
        self.last_rtp = now;
        let check =
            self.reception
                .update(packet.ssrc(), packet.sequence(), packet.timestamp(), now);
        (check != SequenceCheck::Rejected).then_some(packet)
    }

    /// Where this leg's RTP goes.
    pub fn destination(&self) -> SocketAddr {
        self.latch.remote()
    }

    /// When the last packet of this leg arrived.
    pub fn last_rtp(&self) -> Instant {
        self.last_rtp
    }

    /// Protects the RTP packet written in `buffer[..len]` for this leg when it uses SRTP
    /// (`buffer` has room for the tag): the length to send, or `None` when it cannot go.
    pub fn protect(&mut self, buffer: &mut [u8], len: usize) -> Option<usize> {
        let sender = self.srtp.as_deref_mut().map(|(_, sender)| sender);
        protect_rtp(sender, buffer, len, &mut self.counts)
    }

    /// Counts a packet sent on this leg with `octets` of payload (RFC 3550 §6.4.1 counts
    /// payload octets only).
    pub fn sent(&mut self, octets: usize) {
        self.counts.packets_sent += 1;
        self.counts.octets_sent += octets as u64;
    }

    /// Counts a packet that could not be sent.
    pub fn send_failed(&mut self) {
        self.counts.send_errors += 1;
    }
}

/// What a leg's media takes from its negotiated session ([`SessionConfig`]): the codec
/// state (made when first needed), the jitter buffer at the codec's clock, where to send and
/// whom to latch to. A renegotiation replaces all of it and nothing else
/// ([`MediaSession::renegotiate`]).
struct Negotiated {
    config: SessionConfig,
    detect_inband: bool,
    /// Made by the first tick that codes audio ([`coding`]), dropped while lent to a relay.
    coding: Option<Box<Coding>>,
    jitter: JitterBuffer,
    latch: SourceLatch,
    remote_rtcp: SocketAddr,
    rtcp_latched: bool,
    /// Boxed: 3.6 KB of cipher and authentication state that a plain RTP leg does not hold.
    srtp: Option<Box<SrtpSession>>,
}

impl Negotiated {
    fn new(config: SessionConfig, now: Instant) -> Negotiated {
        let codec = config.codec;
        let remote_rtcp = config.remote_rtcp.unwrap_or_else(|| {
            SocketAddr::new(config.remote.ip(), config.remote.port().wrapping_add(1))
        });
        let jitter = JitterBuffer::new(config.jitter, codec.clock_rate(), PTIME, now)
            .with_max_payload(codec.max_payload_bytes(MAX_PTIME_MS));
        Negotiated {
            detect_inband: config
                .inband_dtmf
                .unwrap_or(config.telephone_event.is_none()),
            coding: None,
            jitter,
            latch: SourceLatch::new(config.remote, config.symmetric_rtp),
            remote_rtcp,
            rtcp_latched: false,
            srtp: config
                .srtp
                .as_ref()
                .map(|keys| Box::new(SrtpSession::new(keys))),
            config,
        }
    }
}

/// A wideband room's frames: the far end's audio of the last tick at 16 kHz, and the room's
/// frame to send at the next tick.
struct RoomFrames {
    received: [i16; WIDEBAND_FRAME],
    sent: [i16; WIDEBAND_FRAME],
}

/// The prompt a leg plays.
#[derive(Debug)]
enum Playing {
    Clip { audio: Audio, position: usize },
    Stream(StreamedAudio),
}

/// The media of one leg.
pub struct MediaSession {
    negotiated: Negotiated,
    sender: RtpSender,
    rfc4733: Rfc4733Receiver,
    /// Only while in-band keys are listened for.
    inband: Option<Box<InbandDetector>>,
    /// Keys being sent while `sending_digits`: boxed (a string's 2 KB of steps, which a leg
    /// that never sends keys does not hold), made by the first string and reused by the next.
    digits: Option<Box<DigitSender>>,
    sending_digits: bool,
    event_timestamp: u32,
    prompt: Option<Playing>,
    echo: bool,
    /// A frame to send at the next tick in place of the prompt (a bridge's other leg).
    fed: Option<[i16; FRAME]>,
    /// The rate frames are exchanged at with a room's mixer.
    mix_rate: MixRate,
    /// Only in a wideband room: the far end's audio of the last tick at 16 kHz, and the
    /// room's frame to send at the next tick (when `fed_from_room`).
    room: Option<Box<RoomFrames>>,
    fed_from_room: bool,
    /// One recorder per [`RecordingTap`].
    recorders: [Option<Recorder>; 3],
    silence: Option<SilenceDetector>,

    last_rtp: Instant,
    inactive_reported: bool,
    /// The far end put this leg on hold: nothing is sent, silence is not inactivity.
    held: bool,
    /// We put the far end on hold (a bridge passing on the other leg's hold): it may send
    /// nothing, and that is not inactivity either.
    holding: bool,
    ntp: NtpClock,
    next_rtcp: Instant,

    received: [i16; FRAME],
    sent: [i16; FRAME],
    transmit: TransmitQueue,
    events: [Option<MediaEvent>; EVENT_SLOTS],
    event_head: usize,
    event_len: usize,
    stats: StreamStats,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("codec", &self.negotiated.config.codec)
            .field("remote", &self.negotiated.latch.remote())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// The media of a leg starting at `now`; `wallclock` is the same moment in wall-clock time
    /// (for RTCP's NTP timestamps).
    pub fn new(config: SessionConfig, now: Instant, wallclock: SystemTime) -> MediaSession {
        let remote = config.remote;
        let slot_len = transmit_slot_len(config.codec);
        let negotiated = Negotiated::new(config, now);
        MediaSession {
            sender: RtpSender::new(negotiated.config.payload_type),
            inband: negotiated
                .detect_inband
                .then(|| Box::new(InbandDetector::new())),
            negotiated,
            rfc4733: Rfc4733Receiver::new(),
            digits: None,
            sending_digits: false,
            event_timestamp: 0,
            prompt: None,
            echo: false,
            fed: None,
            mix_rate: MixRate::Narrowband,
            room: None,
            fed_from_room: false,
            recorders: [None, None, None],
            silence: None,
            last_rtp: now,
            inactive_reported: false,
            held: false,
            holding: false,
            ntp: NtpClock::new(now, wallclock),
            next_rtcp: now + RTCP_INTERVAL / 2,
            received: [0; FRAME],
            sent: [0; FRAME],
            transmit: TransmitQueue::new(remote, slot_len),
            events: [None; EVENT_SLOTS],
            event_head: 0,
            event_len: 0,
            stats: StreamStats::default(),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.negotiated.config
    }

    /// Where RTP goes now (the SDP address, or the latched one).
    pub fn remote(&self) -> SocketAddr {
        self.negotiated.latch.remote()
    }

    pub fn stats(&self) -> StreamStats {
        let reception = self.negotiated.jitter.reception();
        let expected = reception.expected();
        let lost = reception.cumulative_lost();
        StreamStats {
            packets_lost: lost,
            loss_permille: (lost.max(0) as u64 * 1000)
                .checked_div(expected)
                .map_or(0, |permille| permille as u32),
            jitter: reception.jitter_duration(),
            jitter_buffer: self.negotiated.jitter.stats(),
            ..self.stats
        }
    }

    /// The far end's audio of the last tick, 8 kHz (silence when nothing played).
    pub fn received_frame(&self) -> &[i16] {
        &self.received
    }

    /// Sends `frame` (8 kHz, 20 ms) at the next tick in place of any prompt: how a bridge
    /// gives this leg the other leg's audio. Used once.
    pub fn feed(&mut self, frame: &[i16]) {
        let mut fed = [0; FRAME];
        let n = frame.len().min(FRAME);
        fed[..n].copy_from_slice(&frame[..n]);
        self.fed = Some(fed);
    }

    /// Exchanges frames with a room's mixer at `rate` from the next tick on:
    /// [`received_at_mix_rate`](Self::received_at_mix_rate) and
    /// [`feed_at_mix_rate`](Self::feed_at_mix_rate) take 20 ms frames at that rate. In a
    /// wideband (16 kHz) room a wideband codec is decoded and encoded at 16 kHz without
    /// conversion (Opus's decoder is remade at 16 kHz) and a narrowband one is converted;
    /// the 8 kHz [`received_frame`](Self::received_frame) is then only kept up when something
    /// reads it (in-band DTMF, the silence detector, a recorder), and is silence otherwise.
    /// [`MixRate::Narrowband`] (the default) is the leg's ordinary 8 kHz audio.
    pub fn set_mix_rate(&mut self, rate: MixRate) {
        if rate != self.mix_rate {
            self.mix_rate = rate;
            self.fed_from_room = false;
            self.room = (rate == MixRate::Wideband).then(|| {
                Box::new(RoomFrames {
                    received: [0; WIDEBAND_FRAME],
                    sent: [0; WIDEBAND_FRAME],
                })
            });
            if let Some(coding) = &mut self.negotiated.coding {
                coding.set_mix_rate(self.negotiated.config.codec, rate);
            }
        }
    }

    pub fn mix_rate(&self) -> MixRate {
        self.mix_rate
    }

    /// The far end's audio of the last tick at the [mix rate](Self::set_mix_rate) (silence
    /// when nothing played).
    pub fn received_at_mix_rate(&self) -> &[i16] {
        match &self.room {
            Some(room) => &room.received[..],
            None => &self.received,
        }
    }

    /// Sends `frame` (20 ms at the [mix rate](Self::set_mix_rate); shorter is padded with
    /// silence) at the next tick in place of any prompt: what a room gives this leg to hear.
    /// Used once.
    pub fn feed_at_mix_rate(&mut self, frame: &[i16]) {
        match &mut self.room {
            None => self.feed(frame),
            Some(room) => {
                let n = frame.len().min(WIDEBAND_FRAME);
                room.sent[..n].copy_from_slice(&frame[..n]);
                room.sent[n..].fill(0);
                self.fed_from_room = true;
            }
        }
    }

    /// Moves the stream's clock on by `frames` ticks that were not run (a room's worker
    /// fell too far behind and skipped them): the far end sees a gap in the audio rather than
    /// a stream that lags behind real time from then on.
    pub fn skip_frames(&mut self, frames: u32) {
        let units = self
            .negotiated
            .config
            .codec
            .timestamp_increment(PTIME.as_millis() as u32);
        self.sender.skip(units.wrapping_mul(frames));
    }

    /// When the far end's last RTP packet arrived (or the session started, or a hold ended).
    pub fn last_rtp(&self) -> Instant {
        self.last_rtp
    }

    /// Starts playing `audio` (8 kHz) from its beginning, replacing any prompt.
    pub fn play(&mut self, audio: Audio) {
        self.prompt = Some(Playing::Clip { audio, position: 0 });
        self.sender.start_talkspurt();
    }

    /// Starts playing a stream (8 kHz) as it is decoded, replacing any prompt.
    pub fn play_stream(&mut self, audio: StreamedAudio) {
        self.prompt = Some(Playing::Stream(audio));
        self.sender.start_talkspurt();
    }

    /// Stops the current prompt (barge-in) and any keys still being sent; silence follows.
    /// A key cut short gets no end packet; the far end's receiver ends it on its own
    /// (RFC 4733 §2.5.2.2).
    pub fn stop(&mut self) {
        self.prompt = None;
        self.sending_digits = false;
    }

    pub fn is_playing(&self) -> bool {
        self.prompt.is_some()
    }

    /// Sends what the far end says back to it (`<Echo>`), instead of prompts.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// Sends `digits` as RFC 4733 events (`w` 0.5 s, `W` 1 s); [`MediaEvent::DigitsSent`]
    /// follows. Replaces a string still being sent. Without a negotiated `telephone-event`
    /// the keys are refused.
    pub fn send_digits(&mut self, digits: &str) -> Result<(), SendDigitsError> {
        if self.negotiated.config.telephone_event.is_none() {
            return Err(SendDigitsError::NoTelephoneEvent);
        }
        let sender = DigitSender::new(
            digits,
            self.negotiated.config.digit_timing,
            self.negotiated.config.codec.clock_rate(),
            PTIME,
        )?;
        match &mut self.digits {
            Some(kept) => **kept = sender,
            None => self.digits = Some(Box::new(sender)),
        }
        self.sending_digits = true;
        Ok(())
    }

    /// Taps both directions into `recorder` from the next tick on, through `tap` (replacing
    /// a recorder already there).
    pub fn start_recording(&mut self, tap: RecordingTap, recorder: Recorder) {
        self.recorders[tap as usize] = Some(recorder);
    }

    /// Stops `tap` and hands its recorder back (to [`Recorder::finish`]).
    pub fn stop_recording(&mut self, tap: RecordingTap) -> Option<Recorder> {
        self.recorders[tap as usize].take()
    }

    /// Whether any tap is recording.
    pub fn is_recording(&self) -> bool {
        self.recorders.iter().any(Option::is_some)
    }

    /// Arms (`Some`) or disarms the silence detector: [`MediaEvent::SilenceTimeout`] once the
    /// far end has been silent for the timeout.
    pub fn detect_silence(&mut self, timeout: Option<Duration>) {
        self.silence = timeout.map(SilenceDetector::new);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        if self.event_len == 0 {
            return None;
        }
        let event = self.events[self.event_head].take();
        self.event_head = (self.event_head + 1) % EVENT_SLOTS;
        self.event_len -= 1;
        event
    }

    /// A key pressed outside the media (a SIP INFO): reported like the keys heard in it.
    pub fn signal_digit(&mut self, digit: char) {
        self.push_event(MediaEvent::Digit(Digit {
            digit,
            source: DigitSource::SipInfo,
        }));
    }

    fn push_event(&mut self, event: MediaEvent) {
        if self.event_len == EVENT_SLOTS {
            // The call task is not listening: drop the oldest.
            self.poll_event();
        }
        let index = (self.event_head + self.event_len) % EVENT_SLOTS;
        self.events[index] = Some(event);
        self.event_len += 1;
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.transmit.pop()
    }

    /// Counts a datagram that could not be sent.
    pub fn send_failed(&mut self) {
        self.stats.send_errors += 1;
    }

    /// Takes a datagram received on the RTP port.
    /// With SRTP the packet is authenticated and decrypted in place first.
    pub fn handle_rtp(&mut self, datagram: &mut [u8], from: SocketAddr, now: Instant) {
        let receiver = self
            .negotiated
            .srtp
            .as_mut()
            .map(|srtp| &mut srtp.rtp_receiver);
        let Some(len) = unprotect_rtp(receiver, datagram, &mut self.stats) else {
            return;
        };
        let Ok(packet) = RtpPacket::parse(&datagram[..len]) else {
            self.stats.malformed += 1;
            return;
        };
        if !self.admit(&packet, from, now) {
            return;
        }
        if self.negotiated.jitter.push(&packet, now) == PushOutcome::Restarted {
            self.rfc4733.reset();
        }
        // Keys are read on arrival, not at playout: a key sent alone leaves a gap in the
        // sequence that playout would conceal, skipping the key.
        if Some(packet.payload_type()) == self.negotiated.config.telephone_event
            && let Some(digit) =
                self.rfc4733
                    .receive(packet.marker(), packet.timestamp(), packet.payload())
        {
            self.push_event(MediaEvent::Digit(digit));
        }
    }

    /// Lends the relay engine what receiving this leg's RTP needs for the length of a bridge
    /// (no playout, no ticks meanwhile); [`take_back`](Self::take_back) folds it back in.
    /// Meanwhile the leg holds no coding state and no buffered payloads: the first tick after
    /// the bridge makes them again.
    pub fn lend(&mut self) -> RelayedLeg {
        self.negotiated.coding = None;
        self.negotiated.jitter.release();
        RelayedLeg {
            payload_types: self.known_payload_types(),
            latch: self.negotiated.latch,
            reception: self.negotiated.jitter.reception().clone(),
            counts: StreamStats::default(),
            last_rtp: self.last_rtp,
            latched: None,
            srtp: self
                .negotiated
                .srtp
                .as_ref()
                .map(|srtp| Box::new((srtp.rtp_receiver.clone(), srtp.rtp_sender.clone()))),
        }
    }

    /// Takes back what [`lend`](Self::lend) lent, with what the relay saw: the latch (and a
    /// [`MediaEvent::RemoteLatched`] if it moved), reception statistics, counters, the time of
    /// the last packet.
    pub fn take_back(&mut self, leg: RelayedLeg) {
        self.negotiated.latch = leg.latch;
        if let Some(address) = leg.latched {
            self.latched_onto(address);
        }
        *self.negotiated.jitter.reception_mut() = leg.reception;
        if let (Some(srtp), Some(contexts)) = (&mut self.negotiated.srtp, leg.srtp) {
            (srtp.rtp_receiver, srtp.rtp_sender) = *contexts;
        }
        self.stats.add_counts(&leg.counts);
        if leg.last_rtp > self.last_rtp {
            self.restart_inactivity_clock(leg.last_rtp);
        }
    }

    /// How long the far end has sent nothing while a relay receives its RTP (no ticks run):
    /// `relayed_rtp` is when the relay last received a packet. Zero while either side holds
    /// the call; a resume restarts the clock.
    pub fn idle_for(&self, relayed_rtp: Instant, now: Instant) -> Duration {
        if self.on_hold() {
            return Duration::ZERO;
        }
        now.saturating_duration_since(relayed_rtp.max(self.last_rtp))
    }

    /// The far end put this leg on hold (its offer was `sendonly` or `inactive`, so our
    /// answer is `recvonly` or `inactive`): nothing is sent to it (RFC 3264 §6.1) and its
    /// silence is not inactivity. Resuming sends again and restarts the inactivity clock.
    pub fn set_held(&mut self, held: bool, now: Instant) {
        if self.held && !held {
            self.restart_inactivity_clock(now);
        }
        self.held = held;
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// We put the far end on hold (`holding`) or took it off: while held it may stay silent
    /// without that counting as inactivity; taking it off restarts the inactivity clock.
    pub fn set_holding(&mut self, holding: bool, now: Instant) {
        if self.holding && !holding {
            self.restart_inactivity_clock(now);
        }
        self.holding = holding;
    }

    /// Silence counts from `now`: a hold was lifted, or a relay received a packet.
    fn restart_inactivity_clock(&mut self, now: Instant) {
        self.last_rtp = now;
        self.inactive_reported = false;
    }

    pub fn is_holding(&self) -> bool {
        self.holding
    }

    fn on_hold(&self) -> bool {
        self.held || self.holding
    }

    /// Takes the far end's answer after the session started on a guess (a delayed offer: our
    /// offer went in the 200 and the answer came in the ACK). What the session takes from the
    /// negotiation ([`Negotiated`]: codec state, jitter buffer, destination, latch) becomes the
    /// answer's; everything else — what is playing, the recorders, echo, silence detection,
    /// pending events, hold, the SSRC and sequence numbers, the statistics — carries on. Keys
    /// being sent carry on when the telephone-event payload type is the same; SRTP streams
    /// under a key that did not change go on where they were ([`SrtpSession::renewed`]).
    pub fn renegotiate(&mut self, config: SessionConfig, now: Instant) {
        if config.telephone_event != self.negotiated.config.telephone_event {
            self.sending_digits = false;
        }
        self.sender.set_payload_type(config.payload_type);
        let earlier = self.negotiated.srtp.take().zip(self.negotiated.config.srtp);
        self.transmit.fit(transmit_slot_len(config.codec));
        self.negotiated = Negotiated::new(config, now);
        if !self.negotiated.detect_inband {
            self.inband = None;
        } else if self.inband.is_none() {
            self.inband = Some(Box::new(InbandDetector::new()));
        }
        // Streams under unchanged keys go on: their packet indexes and replay windows too.
        if let (Some(keys), Some((earlier, earlier_keys))) = (self.negotiated.config.srtp, earlier)
        {
            self.negotiated.srtp = Some(Box::new(SrtpSession::renewed(
                &keys,
                *earlier,
                &earlier_keys,
            )));
        }
    }

    /// The SSRC this leg sends with.
    pub fn ssrc(&self) -> u32 {
        self.sender.ssrc()
    }

    /// The (sequence number, timestamp) of this leg's next packet: where a relay starts.
    pub fn next_rtp(&self) -> (u16, u32) {
        (self.sender.next_sequence(), self.sender.timestamp())
    }

    /// Goes on sending from `next` (sequence number, timestamp) after a relay sent for this
    /// leg's SSRC.
    pub fn resume_rtp_at(&mut self, next: (u16, u32)) {
        self.sender.resume_at(next.0, next.1);
    }

    /// Whether a received packet belongs to this leg (payload type, and the far end's address
    /// with symmetric RTP latching), counting it when it does.
    fn admit(&mut self, packet: &RtpPacket<'_>, from: SocketAddr, now: Instant) -> bool {
        let known = self.known_payload_types();
        match admit(
            &known,
            &mut self.negotiated.latch,
            &mut self.stats,
            packet,
            from,
            now,
        ) {
            None => return false,
            Some(Source::Latched(address)) => self.latched_onto(address),
            Some(_) => {}
        }
        self.last_rtp = now;
        self.inactive_reported = false;
        true
    }

    /// The payload types this leg takes: the codec's, telephone-event's, comfort noise.
    fn known_payload_types(&self) -> [u8; 3] {
        let codec = self.negotiated.config.payload_type;
        [
            codec,
            self.negotiated.config.telephone_event.unwrap_or(codec),
            COMFORT_NOISE,
        ]
    }

    /// RTP follows the far end to `address`; RTCP too, unless it has latched on its own.
    fn latched_onto(&mut self, address: SocketAddr) {
        if !self.negotiated.rtcp_latched {
            self.negotiated.remote_rtcp =
                SocketAddr::new(address.ip(), address.port().wrapping_add(1));
        }
        self.push_event(MediaEvent::RemoteLatched { address });
    }

    /// Takes a datagram received on the RTCP port.
    /// With SRTP the packet is authenticated and decrypted in place first (SRTCP).
    pub fn handle_rtcp(&mut self, datagram: &mut [u8], from: SocketAddr, now: Instant) {
        let len = match &mut self.negotiated.srtp {
            Some(srtp) => match srtp.rtcp_receiver.unprotect(datagram) {
                Ok(len) => len,
                Err(error) => return self.stats.srtp_refused(error),
            },
            None => datagram.len(),
        };
        let mut valid = false;
        for packet in rtcp::parse_compound(&datagram[..len]) {
            let Ok(packet) = packet else {
                break;
            };
            valid = true;
            let blocks = match packet {
                RtcpPacket::SenderReport { ssrc, info, blocks } => {
                    if Some(ssrc) == self.negotiated.jitter.reception().ssrc() {
                        self.negotiated
                            .jitter
                            .reception_mut()
                            .sender_report_received(info.ntp, now);
                    }
                    blocks
                }
                RtcpPacket::ReceiverReport { blocks, .. } => blocks,
                _ => continue,
            };
            for block in blocks
                .iter()
                .filter(|block| block.ssrc == self.sender.ssrc())
            {
                self.stats.remote = Some(RemoteReport {
                    fraction_lost: block.fraction_lost,
                    cumulative_lost: block.cumulative_lost,
                    jitter: Duration::from_nanos(
                        u64::from(block.jitter) * 1_000_000_000
                            / u64::from(self.negotiated.config.codec.clock_rate()),
                    ),
                    round_trip: rtcp::round_trip_time(&block, self.ntp.at(now)),
                });
            }
        }
        if valid {
            self.stats.rtcp_received += 1;
            if self.negotiated.config.symmetric_rtp
                && !self.negotiated.rtcp_latched
                && from.port() != 0
            {
                self.negotiated.remote_rtcp = from;
                self.negotiated.rtcp_latched = true;
            }
        } else {
            self.stats.malformed += 1;
        }
    }

    /// Runs one 20 ms step at `now`: plays out one received frame and sends one. Returns true
    /// when this tick finished the prompt. The same as [`play_out`](Self::play_out) then
    /// [`finish_tick`](Self::finish_tick), which a room calls apart to mix in between.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.play_out(now);
        self.finish_tick(now)
    }

    /// The receive half of a tick: plays out one received frame at `now` (the jitter
    /// buffer's next packet, decoded, or a lost one concealed) into
    /// [`received_frame`](Self::received_frame) — and, in a wideband room,
    /// [`received_at_mix_rate`](Self::received_at_mix_rate) — and reports in-band keys.
    /// Returns whether the frame holds the far end's audio (false: silence, nothing to play).
    pub fn play_out(&mut self, now: Instant) -> bool {
        let needs_narrowband = self.needs_narrowband_received();
        let mix_rate = self.mix_rate;
        let negotiated = &mut self.negotiated;
        let decoded = match negotiated.jitter.pop(now) {
            Playout::Packet(packet) if packet.payload_type == negotiated.config.payload_type => {
                let coding = coding(&mut negotiated.coding, &negotiated.config, mix_rate);
                let pcm = &mut coding.pcm[..coding.decode_samples];
                let decoded = match coding.decoder.decode(packet.payload, pcm) {
                    Ok(samples) if samples >= pcm.len() => true,
                    Ok(samples) => {
                        pcm[samples..].fill(0);
                        true
                    }
                    Err(_) => coding.decoder.conceal(pcm).is_ok(),
                };
                decoded.then_some(coding)
            }
            // Telephone events (read on arrival) and comfort noise: silence.
            Playout::Packet(_) => None,
            Playout::Lost => {
                let coding = coding(&mut negotiated.coding, &negotiated.config, mix_rate);
                let pcm = &mut coding.pcm[..coding.decode_samples];
                coding.decoder.conceal(pcm).is_ok().then_some(coding)
            }
            Playout::Empty => None,
        };
        let played = decoded.is_some();
        if let Some(coding) = decoded {
            let pcm = &coding.pcm[..coding.decode_samples];
            if let Some(room) = &mut self.room {
                match &mut coding.to_room {
                    Some(up) => up.convert(pcm, &mut room.received),
                    None => room.received.copy_from_slice(&pcm[..WIDEBAND_FRAME]),
                }
            }
            if mix_rate == MixRate::Narrowband || needs_narrowband {
                match &mut coding.from_codec {
                    Some(bridge) => bridge.convert(pcm, &mut self.received),
                    None => self.received.copy_from_slice(&pcm[..FRAME]),
                }
            } else {
                self.received.fill(0);
            }
        } else {
            self.received.fill(0);
            if let Some(room) = &mut self.room {
                room.received.fill(0);
                // The next talkspurt starts a new stream: the last one must not ring into it.
                if let Some(up) = self
                    .negotiated
                    .coding
                    .as_mut()
                    .and_then(|coding| coding.to_room.as_mut())
                {
                    up.reset();
                }
            }
        }
        if let Some(inband) = &mut self.inband
            && let Some(digit) = inband.process(&self.received)
        {
            self.push_event(MediaEvent::Digit(digit));
        }
        if let Some(silence) = &mut self.silence
            && silence.push(&self.received)
        {
            self.silence = None;
            self.push_event(MediaEvent::SilenceTimeout);
        }
        played
    }

    /// Whether anything reads the 8 kHz received frame besides a room (which takes the
    /// 16 kHz one when wideband): in-band DTMF detection, the silence detector, recorders.
    fn needs_narrowband_received(&self) -> bool {
        self.negotiated.detect_inband || self.silence.is_some() || self.is_recording()
    }

    /// The send half of a tick, after [`play_out`](Self::play_out): sends one frame (keys
    /// being sent, else the frame fed, echo, the prompt or silence), feeds the recorders,
    /// checks for inactivity and sends RTCP when due. Returns true when this tick finished
    /// the prompt.
    pub fn finish_tick(&mut self, now: Instant) -> bool {
        let finished = self.send_one();
        for recorder in self.recorders.iter_mut().flatten() {
            recorder.push(&self.received, &self.sent);
        }
        let silent_for = now.saturating_duration_since(self.last_rtp);
        if !self.on_hold()
            && !self.inactive_reported
            && silent_for >= self.negotiated.config.inactivity_timeout
        {
            self.inactive_reported = true;
            self.push_event(MediaEvent::Inactive { silent_for });
        }
        if now >= self.next_rtcp {
            self.send_report(now);
        }
        finished
    }

    /// The send half of a tick; true when the prompt finished.
    fn send_one(&mut self) -> bool {
        if self.sending_digits
            && let Some(digits) = &mut self.digits
        {
            match digits.tick() {
                DigitAction::Event {
                    event,
                    first,
                    copies,
                } => {
                    self.sent.fill(0);
                    self.fed_from_room = false;
                    self.send_event(event, first, copies);
                    return false;
                }
                DigitAction::Pause => {}
                DigitAction::Done => {
                    self.sending_digits = false;
                    self.push_event(MediaEvent::DigitsSent);
                }
            }
        }
        let mut finished = false;
        if std::mem::take(&mut self.fed_from_room) {
            self.send_room_frame();
            return false;
        }
        if let Some(fed) = self.fed.take() {
            self.sent = fed;
        } else if self.echo {
            self.sent.copy_from_slice(&self.received);
        } else if let Some(Playing::Clip { audio, position }) = &mut self.prompt {
            let samples = audio.samples();
            let end = (*position + FRAME).min(samples.len());
            let taken = end - *position;
            self.sent[..taken].copy_from_slice(&samples[*position..end]);
            self.sent[taken..].fill(0);
            *position = end;
            finished = end >= samples.len();
        } else if let Some(Playing::Stream(audio)) = &self.prompt {
            finished = audio.take_frame(&mut self.sent);
        } else {
            self.sent.fill(0);
        }
        if finished {
            self.prompt = None;
        }
        self.send_audio();
        finished
    }

    /// Sends the 16 kHz frame a wideband room fed: straight to a 16 kHz encoder (G.722,
    /// Opus), else down to 8 kHz first; `sent` holds it at 8 kHz when a recorder needs it.
    fn send_room_frame(&mut self) {
        let recording = self.is_recording();
        let negotiated = &mut self.negotiated;
        let coding = coding(&mut negotiated.coding, &negotiated.config, self.mix_rate);
        let encodes_wideband = coding.encode_rate == MixRate::Wideband.hz();
        if !encodes_wideband || recording {
            match (&mut coding.from_room, &self.room) {
                (Some(down), Some(room)) => down.convert(&room.sent, &mut self.sent),
                _ => self.sent.fill(0),
            }
        }
        if encodes_wideband {
            self.encode_and_send(Pcm::Room);
        } else {
            self.send_audio();
        }
    }

    /// Encodes and sends `self.sent` (8 kHz).
    fn send_audio(&mut self) {
        self.encode_and_send(Pcm::Sent);
    }

    fn encode_and_send(&mut self, source: Pcm) {
        let units = self
            .negotiated
            .config
            .codec
            .timestamp_increment(PTIME.as_millis() as u32);
        if self.held {
            // Time goes on for the stream; nothing is sent to a leg that holds us.
            self.sender.skip(units);
            return;
        }
        let negotiated = &mut self.negotiated;
        let coding = coding(&mut negotiated.coding, &negotiated.config, self.mix_rate);
        let pcm = &mut coding.pcm[..coding.encode_samples];
        match (source, &mut coding.to_codec, &self.room) {
            (Pcm::Room, _, Some(room)) => pcm.copy_from_slice(&room.sent[..pcm.len()]),
            (Pcm::Room, _, None) => pcm.fill(0),
            (Pcm::Sent, Some(bridge), _) => bridge.convert(&self.sent, pcm),
            (Pcm::Sent, None, _) => pcm.copy_from_slice(&self.sent[..pcm.len()]),
        }
        let Ok(len) = coding.encoder.encode(pcm, &mut coding.payload) else {
            self.stats.send_errors += 1;
            return;
        };
        let Some((index, slot)) = self.transmit.next_slot() else {
            self.stats.send_errors += 1;
            self.sender.skip(units);
            return;
        };
        match self.sender.write_audio(slot, &coding.payload[..len], units) {
            Ok(written) => {
                let sender = negotiated.srtp.as_mut().map(|srtp| &mut srtp.rtp_sender);
                let Some(written) = protect_rtp(sender, slot, written, &mut self.stats) else {
                    return;
                };
                self.transmit
                    .commit(index, negotiated.latch.remote(), false, written);
                self.stats.packets_sent += 1;
                self.stats.octets_sent += len as u64;
            }
            Err(_) => self.stats.send_errors += 1,
        }
    }

    fn send_event(&mut self, event: super::rtp::TelephoneEvent, first: bool, copies: u8) {
        let Some(payload_type) = self.negotiated.config.telephone_event else {
            return;
        };
        if first {
            self.event_timestamp = self.sender.timestamp();
        }
        for copy in 0..copies {
            let Some((index, slot)) = self.transmit.next_slot() else {
                self.stats.send_errors += 1;
                break;
            };
            let marker = first && copy == 0;
            match self.sender.write_telephone_event(
                slot,
                payload_type,
                self.event_timestamp,
                marker,
                &event,
            ) {
                Ok(written) => {
                    let sender = self
                        .negotiated
                        .srtp
                        .as_mut()
                        .map(|srtp| &mut srtp.rtp_sender);
                    let Some(written) = protect_rtp(sender, slot, written, &mut self.stats) else {
                        continue;
                    };
                    self.transmit
                        .commit(index, self.negotiated.latch.remote(), false, written);
                    self.stats.packets_sent += 1;
                    self.stats.octets_sent += 4;
                }
                Err(_) => self.stats.send_errors += 1,
            }
        }
        if event.end {
            // Audio resumes after the event's duration.
            self.sender.skip(u32::from(event.duration));
        }
    }

    fn send_report(&mut self, now: Instant) {
        // RFC 3550 §6.2: randomise the interval to 0.5–1.5 times the nominal one.
        let spread = 0.5 + rand::random::<f64>();
        self.next_rtcp = now + RTCP_INTERVAL.mul_f64(spread);
        let sender = (self.stats.packets_sent > 0).then(|| SenderInfo {
            ntp: self.ntp.at(now),
            rtp_timestamp: self.sender.timestamp(),
            packet_count: self.stats.packets_sent as u32,
            octet_count: self.stats.octets_sent as u32,
        });
        let block = self.negotiated.jitter.reception_mut().report_block(now);
        let report = Report {
            ssrc: self.sender.ssrc(),
            sender,
            block,
            cname: &self.negotiated.config.cname,
        };
        let destination = self.negotiated.remote_rtcp;
        let Some((index, slot)) = self.transmit.next_slot() else {
            self.stats.send_errors += 1;
            return;
        };
        let written = rtcp::write_report(&report, slot)
            .map_err(|_| SrtpError::Malformed)
            .and_then(|len| match &mut self.negotiated.srtp {
                Some(srtp) => srtp.rtcp_sender.protect(slot, len),
                None => Ok(len),
            });
        match written {
            Ok(len) => {
                self.transmit.commit(index, destination, true, len);
                self.stats.rtcp_sent += 1;
            }
            Err(_) => self.stats.send_errors += 1,
        }
    }
}

/// Which frame a tick encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pcm {
    /// `sent`, at 8 kHz.
    Sent,
    /// The 16 kHz frame a wideband room fed, for a 16 kHz encoder.
    Room,
}

/// Why digits cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendDigitsError {
    #[error(
        "the far end did not negotiate telephone-event, so keys cannot be sent as RFC 4733 events"
    )]
    NoTelephoneEvent,
    #[error(transparent)]
    Invalid(#[from] InvalidDigits),
}

#[cfg(test)]
mod tests;
