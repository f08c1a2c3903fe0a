//! Two [`MediaSession`]s wired back to back on virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::media::dtmf::DigitSource;
use crate::media::srtp::MasterKey;
use crate::media::tone::{sine, tone_level};

const A: &str = "127.0.0.1:20000";
const B: &str = "127.0.0.1:30000";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn rtcp_of(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip(), address.port() + 1)
}

struct Pair {
    a: MediaSession,
    b: MediaSession,
    now: Instant,
    /// Packets sent from a to b so far (RTP only), for loss patterns.
    a_to_b: u64,
}

fn config(codec: Codec, remote: &str) -> SessionConfig {
    let payload_type = codec.static_payload_type().unwrap_or(111);
    let mut config = SessionConfig::new(codec, payload_type, addr(remote));
    config.telephone_event = Some(101);
    config
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: MediaSession::new(a, now, SystemTime::now()),
            b: MediaSession::new(b, now, SystemTime::now()),
            now,
            a_to_b: 0,
        }
    }

    fn of(codec: Codec) -> Pair {
        Pair::new(config(codec, B), config(codec, A))
    }

    /// One tick on both sides; datagrams cross at once unless `drop_a_to_b` says so.
    fn step(&mut self, drop_a_to_b: &mut dyn FnMut(u64) -> bool) -> Vec<MediaEvent> {
        self.a.tick(self.now);
        self.b.tick(self.now);
        while let Some(transmit) = self.a.poll_transmit() {
            let (mut payload, rtcp) = (transmit.payload.to_vec(), transmit.rtcp);
            if rtcp {
                assert_eq!(transmit.destination, rtcp_of(addr(B)));
                self.b.handle_rtcp(&mut payload, rtcp_of(addr(A)), self.now);
            } else {
                self.a_to_b += 1;
                if !drop_a_to_b(self.a_to_b) {
                    self.b.handle_rtp(&mut payload, addr(A), self.now);
                }
            }
        }
        while let Some(transmit) = self.b.poll_transmit() {
            let (mut payload, rtcp) = (transmit.payload.to_vec(), transmit.rtcp);
            if rtcp {
                self.a.handle_rtcp(&mut payload, rtcp_of(addr(B)), self.now);
            } else {
                self.a.handle_rtp(&mut payload, addr(B), self.now);
            }
        }
        self.now += PTIME;
        std::iter::from_fn(|| self.b.poll_event()).collect()
    }

    /// Runs `ticks` ticks; returns what b heard and the events b reported.
    fn run(&mut self, ticks: usize) -> (Vec<i16>, Vec<MediaEvent>) {
        self.run_dropping(ticks, &mut |_| false)
    }

    fn run_dropping(
        &mut self,
        ticks: usize,
        drop: &mut dyn FnMut(u64) -> bool,
    ) -> (Vec<i16>, Vec<MediaEvent>) {
        let mut heard = Vec::new();
        let mut events = Vec::new();
        for _ in 0..ticks {
            events.extend(self.step(drop));
            heard.extend_from_slice(self.b.received_frame());
        }
        (heard, events)
    }
}

fn digits(events: &[MediaEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            MediaEvent::Digit(digit) => Some(digit.digit),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tone_crosses_every_codec_at_its_frequency() {
    for codec in Codec::ALL {
        let mut pair = Pair::of(codec);
        pair.a
            .play(Audio::new(sine(440.0, 0.3, Duration::from_secs(2), 8000)));
        let (heard, _) = pair.run(100);
        let settled = &heard[4000..12_000];
        let level = tone_level(settled, 440.0, 8000);
        assert!((level - 0.3).abs() < 0.05, "{codec:?}: 440 Hz at {level}");
        assert!(tone_level(settled, 880.0, 8000) < 0.02, "{codec:?}");
        assert_eq!(pair.b.stats().packets_received, 100, "{codec:?}");
        assert_eq!(pair.b.stats().jitter_buffer.concealed, 0, "{codec:?}");
    }
}

#[test]
fn the_prompt_ends_on_the_tick_that_sends_its_last_frame() {
    let mut pair = Pair::of(Codec::Pcmu);
    pair.a.play(Audio::new(vec![1000; 400]));
    let ends: Vec<bool> = (0..4).map(|_| pair.a.tick(pair.now)).collect();
    assert_eq!(ends, [false, false, true, false]);
    assert!(!pair.a.is_playing());
}

#[test]
fn renegotiating_keeps_the_prompt_the_ssrc_and_the_sequence() {
    let now = Instant::now();
    let mut session = MediaSession::new(config(Codec::Pcmu, A), now, SystemTime::now());
    session.play(Audio::new(vec![1000; 800]));
    session.tick(now);
    let first = RtpPacket::parse(session.poll_transmit().unwrap().payload)
        .unwrap()
        .header();
    let mut answer = SessionConfig::new(Codec::Pcma, 8, addr(B));
    answer.telephone_event = None;
    session.renegotiate(answer, now);
    assert!(session.is_playing(), "the prompt goes on");
    let mut ends = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..4 {
        ends.push(session.tick(now));
        while let Some(transmit) = session.poll_transmit() {
            if !transmit.rtcp {
                let header = RtpPacket::parse(transmit.payload).unwrap().header();
                sent.push((transmit.destination, header));
            }
        }
    }
    assert_eq!(
        ends,
        [false, false, false, true],
        "where it was: 4 frames left"
    );
    let (destination, next) = sent[0];
    assert_eq!(destination, addr(B));
    assert_eq!(next.payload_type, 8, "PCMA as answered");
    assert_eq!(next.ssrc, first.ssrc);
    assert_eq!(next.sequence, first.sequence.wrapping_add(1));
}

#[test]
fn digits_sent_as_rfc4733_arrive_once_each() {
    for codec in [Codec::Pcmu, Codec::Opus] {
        let mut pair = Pair::of(codec);
        pair.a.send_digits("1w2#").unwrap();
        let mut sent_done = false;
        let mut events = Vec::new();
        for _ in 0..150 {
            events.extend(pair.step(&mut |_| false));
            while let Some(event) = pair.a.poll_event() {
                sent_done |= event == MediaEvent::DigitsSent;
            }
        }
        assert!(sent_done, "{codec:?}");
        assert_eq!(digits(&events), "12#", "{codec:?}");
        assert!(events.iter().all(|event| !matches!(
            event,
            MediaEvent::Digit(Digit {
                source: DigitSource::Inband,
                ..
            })
        )));
    }
}

/// A telephone-event packet of `event` (8 kHz units) with RTP `sequence` and `timestamp`.
fn event_packet(sequence: u16, timestamp: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0x0e, 0x05, 0x38, 0x4e];
    packet[1] |= u8::from(duration == 0) << 7;
    packet[2..4].copy_from_slice(&sequence.to_be_bytes());
    packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&[event, u8::from(end) << 7 | 10]);
    packet.extend_from_slice(&duration.to_be_bytes());
    packet
}

#[test]
fn keys_sent_alone_with_gaps_in_their_sequence_are_reported_as_they_arrive() {
    // Debian's RFC 2833 captures replayed one after another: events only, 50 sequence
    // numbers and over a second of RTP time apart, sent 400 ms apart.
    let mut session = MediaSession::new(config(Codec::Pcmu, B), Instant::now(), SystemTime::now());
    let mut now = Instant::now();
    let mut keys = String::new();
    for (first, timestamp, event) in [
        (7984, 13_280, 1),
        (8042, 23_200, 2),
        (8087, 31_040, 3),
        (8436, 92_640, 11),
    ] {
        for n in 0..8u16 {
            let end = n == 7;
            let packet = event_packet(first + n.min(7), timestamp, event, end, n * 160);
            for _ in 0..if end { 3 } else { 1 } {
                session.handle_rtp(&mut packet.clone(), addr(A), now);
            }
            session.tick(now);
            now += PTIME;
            keys.extend(
                std::iter::from_fn(|| session.poll_event()).filter_map(|e| match e {
                    MediaEvent::Digit(digit) => Some(digit.digit),
                    _ => None,
                }),
            );
        }
        for _ in 0..13 {
            session.tick(now);
            now += PTIME;
        }
    }
    assert_eq!(keys, "123#");
}

#[test]
fn sending_digits_needs_telephone_event_and_valid_keys() {
    let mut no_events = config(Codec::Pcmu, B);
    no_events.telephone_event = None;
    let mut pair = Pair::new(no_events, config(Codec::Pcmu, A));
    assert_eq!(
        pair.a.send_digits("1"),
        Err(SendDigitsError::NoTelephoneEvent)
    );
    assert!(matches!(
        pair.b.send_digits("1x"),
        Err(SendDigitsError::Invalid(_))
    ));
}

#[test]
fn inband_tones_are_detected_when_telephone_event_is_not_negotiated() {
    for codec in [Codec::Pcma, Codec::G722, Codec::Opus] {
        let mut receiver = config(codec, A);
        receiver.telephone_event = None;
        let mut pair = Pair::new(config(codec, B), receiver);
        let mut audio = Vec::new();
        for (row, column) in [(770.0, 1336.0), (941.0, 1477.0)] {
            let duration = Duration::from_millis(120);
            let low = sine(row, 0.2, duration, 8000);
            let high = sine(column, 0.2, duration, 8000);
            audio.extend(low.iter().zip(&high).map(|(a, b)| a + b));
            audio.extend(std::iter::repeat_n(0, 1200));
        }
        pair.a.play(Audio::new(audio));
        let (_, events) = pair.run(40);
        assert_eq!(digits(&events), "5#", "{codec:?}");
    }
}

#[test]
fn symmetric_rtp_follows_the_source_address() {
    // b was told (by SDP) to send to a private address; a's packets come from A.
    let mut pair = Pair::new(config(Codec::Pcmu, B), config(Codec::Pcmu, "10.0.0.7:4000"));
    assert_eq!(pair.b.remote(), addr("10.0.0.7:4000"));
    let (_, events) = pair.run(usize::from(LATCH_PROBATION) - 1);
    assert!(
        events.is_empty() && pair.b.remote() == addr("10.0.0.7:4000"),
        "a new source is on probation for {LATCH_PROBATION} packets"
    );
    let (_, events) = pair.run(1);
    assert!(events.contains(&MediaEvent::RemoteLatched { address: addr(A) }));
    assert_eq!(pair.b.remote(), addr(A));
    pair.b.tick(pair.now);
    let transmit = pair.b.poll_transmit().unwrap();
    assert_eq!(transmit.destination, addr(A));
    // Another source is ignored while A keeps sending.
    let foreign = pair.b.stats().foreign;
    let mut buf = [0u8; 200];
    let mut intruder = RtpSender::new(0);
    let len = intruder.write_audio(&mut buf, &[0xff; 160], 160).unwrap();
    pair.b
        .handle_rtp(&mut buf[..len], addr("127.0.0.1:40000"), pair.now);
    assert_eq!(pair.b.remote(), addr(A));
    assert_eq!(pair.b.stats().foreign, foreign + 1);
    // Unknown payload types never latch.
    let mut video = RtpSender::new(96);
    let len = video.write_audio(&mut buf, &[1; 10], 3000).unwrap();
    pair.b.handle_rtp(
        &mut buf[..len],
        addr("127.0.0.1:40002"),
        pair.now + RELATCH_AFTER * 2,
    );
    assert_eq!(pair.b.remote(), addr(A));
}

#[test]
fn a_source_port_of_zero_is_never_latched_onto() {
    let mut pair = Pair::of(Codec::Pcmu);
    let packet = event_packet(1, 160, 5, false, 0);
    pair.b
        .handle_rtp(&mut packet.clone(), addr("127.0.0.1:0"), pair.now);
    let events: Vec<MediaEvent> = std::iter::from_fn(|| pair.b.poll_event()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0], MediaEvent::Digit(_)),
        "the packet is used"
    );
    pair.b.tick(pair.now);
    let transmit = pair.b.poll_transmit().expect("a packet");
    assert_eq!(
        transmit.destination,
        addr(A),
        "still sent to the SDP address"
    );
}

#[test]
fn inactivity_is_reported_once_after_the_timeout() {
    let mut quiet = config(Codec::Pcmu, A);
    quiet.inactivity_timeout = Duration::from_secs(30);
    let now = Instant::now();
    let mut session = MediaSession::new(quiet, now, SystemTime::now());
    let mut events = Vec::new();
    let mut at = now;
    for _ in 0..(31 * 50) {
        session.tick(at);
        while session.poll_transmit().is_some() {}
        events.extend(std::iter::from_fn(|| session.poll_event()));
        at += PTIME;
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0], MediaEvent::Inactive { silent_for } if silent_for >= Duration::from_secs(30))
    );
    assert_eq!(
        SessionConfig::new(Codec::Pcmu, 0, addr(A)).inactivity_timeout,
        Duration::from_secs(300)
    );
}

#[test]
fn a_held_leg_gets_no_audio_and_its_silence_is_not_inactivity() {
    let mut quiet = config(Codec::Pcmu, A);
    quiet.inactivity_timeout = Duration::from_secs(1);
    let now = Instant::now();
    let mut session = MediaSession::new(quiet, now, SystemTime::now());
    session.set_held(true, now);
    let mut at = now;
    let (mut audio_sent, mut events) = (0, Vec::new());
    for _ in 0..(3 * 50) {
        session.tick(at);
        while let Some(transmit) = session.poll_transmit() {
            audio_sent += usize::from(!transmit.rtcp);
        }
        events.extend(std::iter::from_fn(|| session.poll_event()));
        at += PTIME;
    }
    assert_eq!(audio_sent, 0, "nothing sent to a leg that holds us");
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(session.idle_for(now, at), Duration::ZERO);

    session.set_held(false, at);
    session.tick(at);
    let mut audio_sent = 0;
    while let Some(transmit) = session.poll_transmit() {
        audio_sent += usize::from(!transmit.rtcp);
    }
    assert_eq!(audio_sent, 1, "resumed: one frame per tick again");
    assert!(
        session.idle_for(now, at) < Duration::from_secs(1),
        "the clock restarts"
    );
}

#[test]
fn loss_and_rtcp_reports_reach_both_sides() {
    let mut pair = Pair::of(Codec::Pcmu);
    pair.a
        .play(Audio::new(sine(440.0, 0.3, Duration::from_secs(20), 8000)));
    // Every tenth packet from a to b is lost; 12 s of call.
    let (_, _) = pair.run_dropping(600, &mut |count| count % 10 == 0);
    let b = pair.b.stats();
    assert!(
        (95..=105).contains(&b.loss_permille),
        "b lost {}‰",
        b.loss_permille
    );
    assert!(b.jitter_buffer.concealed >= 55, "{:?}", b.jitter_buffer);
    assert!(b.rtcp_sent >= 1 && b.rtcp_received >= 1, "{b:?}");
    let a = pair.a.stats();
    let remote = a.remote.expect("b's receiver report about a's stream");
    assert!((20..=30).contains(&remote.fraction_lost), "{remote:?}");
    assert!(remote.cumulative_lost >= 20, "{remote:?}");
    assert_eq!(
        remote.round_trip.map(|rtt| rtt < Duration::from_millis(30)),
        Some(true),
        "{remote:?}"
    );
}

#[test]
fn echo_returns_what_the_far_end_says() {
    let mut pair = Pair::of(Codec::G722);
    pair.b.set_echo(true);
    pair.a
        .play(Audio::new(sine(600.0, 0.3, Duration::from_secs(2), 8000)));
    let mut returned = Vec::new();
    for _ in 0..100 {
        pair.step(&mut |_| false);
        returned.extend_from_slice(pair.a.received_frame());
    }
    let level = tone_level(&returned[6000..14_000], 600.0, 8000);
    assert!((level - 0.3).abs() < 0.05, "echoed 600 Hz at {level}");
}

#[test]
fn silence_detection_fires_after_the_timeout() {
    let mut pair = Pair::of(Codec::Pcmu);
    pair.a.play(Audio::new(sine(
        300.0,
        0.2,
        Duration::from_millis(500),
        8000,
    )));
    pair.b.detect_silence(Some(Duration::from_secs(1)));
    let (_, events) = pair.run(50);
    assert!(!events.contains(&MediaEvent::SilenceTimeout));
    let (_, events) = pair.run(40);
    assert!(events.contains(&MediaEvent::SilenceTimeout));
}

#[tokio::test]
async fn the_recorder_tap_takes_both_directions() {
    use crate::media::record::{Recorder, RecordingChannels, RecordingOptions};
    let dir = std::env::temp_dir().join(format!("callml-session-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tap.wav");
    let mut pair = Pair::of(Codec::Pcmu);
    pair.a
        .play(Audio::new(sine(440.0, 0.3, Duration::from_secs(1), 8000)));
    pair.b
        .play(Audio::new(sine(1000.0, 0.3, Duration::from_secs(1), 8000)));
    let recorder =
        Recorder::start(RecordingOptions::new(path.clone(), RecordingChannels::Dual)).unwrap();
    pair.b.start_recording(RecordingTap::Verb, recorder);
    pair.run(50);
    let info = pair
        .b
        .stop_recording(RecordingTap::Verb)
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(info.duration, Duration::from_secs(1));
    let bytes = std::fs::read(&path).unwrap();
    let samples: Vec<i16> = bytes[44..]
        .chunks_exact(2)
        .map(|p| i16::from_le_bytes([p[0], p[1]]))
        .collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert!(
        tone_level(&left[2000..], 440.0, 8000) > 0.25,
        "the caller on the left"
    );
    assert!(
        tone_level(&right[2000..], 1000.0, 8000) > 0.25,
        "callml on the right"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_verb_recording_runs_inside_a_call_recording() {
    use crate::media::record::{Recorder, RecordingChannels, RecordingOptions};
    let dir = std::env::temp_dir().join(format!("callml-session-taps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = |name: &str| {
        Recorder::start(RecordingOptions::new(
            dir.join(name),
            RecordingChannels::Inbound,
        ))
        .unwrap()
    };
    let mut pair = Pair::of(Codec::Pcmu);
    pair.b
        .start_recording(RecordingTap::Call, start("call.wav"));
    pair.run(20);
    pair.b
        .start_recording(RecordingTap::Verb, start("verb.wav"));
    pair.run(30);
    let verb = pair.b.stop_recording(RecordingTap::Verb).unwrap();
    pair.run(10);
    let call = pair.b.stop_recording(RecordingTap::Call).unwrap();
    assert_eq!(verb.finish().await.unwrap().duration, PTIME * 30);
    assert_eq!(call.finish().await.unwrap().duration, PTIME * 60);
    assert!(pair.b.stop_recording(RecordingTap::Call).is_none());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_lent_leg_receives_latches_and_counts_and_the_session_takes_it_all_back() {
    let start = Instant::now();
    let mut session = MediaSession::new(
        config(Codec::Pcmu, "10.0.0.7:4000"),
        start,
        SystemTime::now(),
    );
    let mut leg = session.lend();
    let mut sender = RtpSender::with_initial_state(0, 77, 500, 8000);
    let mut buf = [0u8; 200];
    let mut at = start;
    let mut relayed = 0;
    for _ in 0..5 {
        at += PTIME;
        let len = sender.write_audio(&mut buf, &[0xff; 160], 160).unwrap();
        relayed += usize::from(leg.receive(&mut buf[..len], addr(A), at).is_some());
    }
    assert_eq!(
        relayed, 3,
        "a new source's first two packets are on probation"
    );
    assert_eq!(leg.destination(), addr(A), "latched after probation");
    let mut video = RtpSender::new(96);
    let len = video.write_audio(&mut buf, &[1; 10], 3000).unwrap();
    assert!(leg.receive(&mut buf[..len], addr(A), at).is_none());
    assert!(leg.receive(&mut [1, 2, 3], addr(A), at).is_none());
    leg.sent(172);
    leg.send_failed();
    assert_eq!(leg.last_rtp(), at);
    assert_eq!(
        session.remote(),
        addr("10.0.0.7:4000"),
        "unchanged while lent"
    );

    session.take_back(leg);
    assert_eq!(session.remote(), addr(A));
    let events: Vec<MediaEvent> = std::iter::from_fn(|| session.poll_event()).collect();
    assert_eq!(events, [MediaEvent::RemoteLatched { address: addr(A) }]);
    let stats = session.stats();
    assert_eq!(
        (
            stats.packets_received,
            stats.octets_received,
            stats.foreign,
            stats.unknown_payload_type,
            stats.malformed,
            stats.packets_sent,
            stats.send_errors
        ),
        (3, 480, 2, 1, 1, 1, 1)
    );
    assert_eq!(stats.packets_lost, 0);
    assert_eq!(
        session.idle_for(start, at),
        Duration::ZERO,
        "the last packet counts"
    );
}

fn srtp(local: MasterKey, remote: MasterKey) -> Option<SrtpConfig> {
    Some(SrtpConfig {
        suite: crate::media::srtp::SrtpSuite::AesCm128HmacSha1_32,
        local,
        remote,
    })
}

#[test]
fn srtp_legs_hear_each_other_and_rtcp_goes_through_srtcp() {
    let (a_key, b_key) = (MasterKey::random(), MasterKey::random());
    let (mut a, mut b) = (config(Codec::G722, B), config(Codec::G722, A));
    a.srtp = srtp(a_key, b_key);
    b.srtp = srtp(b_key, a_key);
    let mut pair = Pair::new(a, b);
    pair.a
        .play(Audio::new(sine(440.0, 0.3, Duration::from_secs(8), 8000)));
    let (heard, _) = pair.run(400);
    let level = tone_level(&heard[4000..12_000], 440.0, 8000);
    assert!((level - 0.3).abs() < 0.05, "440 Hz at {level}");
    let stats = pair.b.stats();
    assert_eq!(stats.packets_received, 400);
    assert!(stats.rtcp_received > 0, "{stats:?}");
    assert!(pair.a.stats().remote.is_some(), "a read b's SRTCP reports");
    assert_eq!((stats.srtp_auth_failures, stats.srtp_replays), (0, 0));
}

#[test]
fn a_wrong_key_drops_and_counts_every_packet_and_the_session_goes_on() {
    let (mut a, mut b) = (config(Codec::Pcmu, B), config(Codec::Pcmu, A));
    a.srtp = srtp(MasterKey::random(), MasterKey::random());
    b.srtp = srtp(MasterKey::random(), MasterKey::random());
    let mut pair = Pair::new(a, b);
    pair.a
        .play(Audio::new(sine(440.0, 0.3, Duration::from_secs(8), 8000)));
    let (heard, _) = pair.run(300);
    assert!(heard.iter().all(|&sample| sample == 0), "nothing decoded");
    let stats = pair.b.stats();
    assert_eq!(stats.packets_received, 0);
    assert_eq!(
        stats.srtp_auth_failures,
        300 + pair.a.stats().rtcp_sent,
        "every RTP and RTCP packet of a"
    );
    assert_eq!(pair.b.stats().packets_sent, 300, "b keeps sending");
}

#[test]
fn a_replayed_packet_is_dropped_and_counted() {
    let key = MasterKey::random();
    let mut a = config(Codec::Pcmu, B);
    a.srtp = srtp(key, key);
    let mut b = config(Codec::Pcmu, A);
    b.srtp = srtp(key, key);
    let now = Instant::now();
    let mut sender = MediaSession::new(a, now, SystemTime::now());
    let mut receiver = MediaSession::new(b, now, SystemTime::now());
    sender.tick(now);
    let packet = sender.poll_transmit().unwrap().payload.to_vec();
    assert_eq!(packet.len(), 12 + 160 + 4, "a 32-bit tag");
    receiver.handle_rtp(&mut packet.clone(), addr(A), now);
    receiver.handle_rtp(&mut packet.clone(), addr(A), now);
    let stats = receiver.stats();
    assert_eq!((stats.packets_received, stats.srtp_replays), (1, 1));
}

#[test]
fn renegotiating_with_the_same_keys_keeps_the_srtp_streams_going() {
    let key = MasterKey::random();
    let mut a = config(Codec::Pcmu, B);
    a.srtp = srtp(key, key);
    let now = Instant::now();
    let mut sender = MediaSession::new(a.clone(), now, SystemTime::now());
    let mut receiver = MediaSession::new(a.clone(), now, SystemTime::now());
    sender.tick(now);
    let first = sender.poll_transmit().unwrap().payload.to_vec();
    receiver.handle_rtp(&mut first.clone(), addr(B), now);
    // A re-INVITE that changes nothing about the keys: the replay window survives.
    receiver.renegotiate(a, now);
    receiver.handle_rtp(&mut first.clone(), addr(B), now);
    assert_eq!(receiver.stats().srtp_replays, 1);
}
