//! The room engine against real UDP peers on loopback (no SIP): each peer is a phone's media,
//! sending a tone with its own codec every 20 ms and decoding what the room sends it; what a
//! peer heard is checked with the Goertzel filter ([`tone_level`]).

use std::net::{SocketAddr, UdpSocket as StdSocket};

use super::*;
use crate::media::codec::{Codec, Decoder, Encoder, MAX_PAYLOAD_BYTES};
use crate::media::rtp::{RtpPacket, RtpSender, TelephoneEvent};
use crate::media::session::SessionConfig;
use crate::media::tone::{sine, tone_level};

const TELEPHONE_EVENT: u8 = 101;
/// A tone peers send: loud enough to be speech, low enough that three never clip.
const TONE_AMPLITUDE: f64 = 0.25;
/// Levels above this are heard; below [`NOT_HEARD`], not.
const HEARD: f64 = 0.1;
const NOT_HEARD: f64 = 0.02;
/// Audio at the start of a phase not judged: the jitter buffers and resamplers settle.
const SETTLE: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(5);

/// The far end of one participant: a phone sending a tone and hearing the room.
struct Peer {
    socket: StdSocket,
    rtcp: StdSocket,
    /// Where the room's RTP socket for this participant is.
    room_side: SocketAddr,
    codec: Codec,
    encoder: Encoder,
    decoder: Decoder,
    sender: RtpSender,
    /// One 20 ms frame of its tone at the codec's rate (frequencies are multiples of 50 Hz,
    /// so frames repeat without a break); `None` sends silence.
    tone: Option<Vec<i16>>,
    /// What it heard, decoded at the codec's rate.
    heard: Vec<i16>,
    /// Telephone events received (event codes).
    events: Vec<u8>,
    /// Sequence number and timestamp of the last audio packet received.
    last_audio: Option<(u16, u32)>,
    packets: usize,
}

impl Peer {
    /// A peer with `codec` sending `frequencies` (summed), and its leg in the room's hands
    /// (an RtpStream with RTP and RTCP sockets whose far end is this peer).
    async fn new(
        codec: Codec,
        frequencies: &[f64],
        configure: impl FnOnce(&mut SessionConfig),
    ) -> (Peer, RoomLeg) {
        let socket = StdSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let rtcp = StdSocket::bind("127.0.0.1:0").unwrap();
        rtcp.set_read_timeout(Some(WAIT)).unwrap();
        let payload_type = codec.static_payload_type().unwrap_or(111);
        let mut config = SessionConfig::new(codec, payload_type, socket.local_addr().unwrap());
        config.telephone_event = Some(TELEPHONE_EVENT);
        config.remote_rtcp = Some(rtcp.local_addr().unwrap());
        configure(&mut config);
        let rtp_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtcp_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let room_side = rtp_socket.local_addr().unwrap();
        let stream = RtpStream::with_config(rtp_socket, Some(rtcp_socket), config);
        let leg = Box::new(stream)
            .into_room_leg()
            .map_err(|(_, e)| e)
            .unwrap();
        let rate = codec.sample_rate();
        let tone = (!frequencies.is_empty()).then(|| {
            let mut frame = vec![0i16; codec.samples_per_frame(20)];
            for &frequency in frequencies {
                for (sample, tone) in
                    frame
                        .iter_mut()
                        .zip(sine(frequency, TONE_AMPLITUDE, PTIME, rate))
                {
                    *sample += tone;
                }
            }
            frame
        });
        let peer = Peer {
            socket,
            rtcp,
            room_side,
            codec,
            encoder: Encoder::new(codec),
            decoder: Decoder::new(codec),
            sender: RtpSender::new(payload_type),
            tone,
            heard: Vec::new(),
            events: Vec::new(),
            last_audio: None,
            packets: 0,
        };
        (peer, leg)
    }

    fn send_frame(&mut self) {
        let samples = self.codec.samples_per_frame(20);
        let silence = vec![0i16; samples];
        let pcm = self.tone.as_deref().unwrap_or(&silence);
        let mut payload = [0u8; MAX_PAYLOAD_BYTES];
        let len = self.encoder.encode(pcm, &mut payload).unwrap();
        let mut datagram = [0u8; 1500];
        let units = self.codec.timestamp_increment(20);
        let written = self
            .sender
            .write_audio(&mut datagram, &payload[..len], units)
            .unwrap();
        self.socket
            .send_to(&datagram[..written], self.room_side)
            .unwrap();
    }

    /// Sends key `event` as RFC 4733 events: a start packet and three end packets.
    fn press(&mut self, event: u8) {
        let timestamp = self.sender.timestamp();
        let mut datagram = [0u8; 64];
        for (index, end) in [false, true, true, true].into_iter().enumerate() {
            let key = TelephoneEvent {
                event,
                end,
                volume: 10,
                duration: 800,
            };
            let len = self
                .sender
                .write_telephone_event(&mut datagram, TELEPHONE_EVENT, timestamp, index == 0, &key)
                .unwrap();
            self.socket
                .send_to(&datagram[..len], self.room_side)
                .unwrap();
        }
        self.sender.skip(800);
    }

    /// Takes every packet waiting.
    fn receive(&mut self) {
        let mut datagram = [0u8; 1500];
        while let Ok((len, _)) = self.socket.recv_from(&mut datagram) {
            let Ok(packet) = RtpPacket::parse(&datagram[..len]) else {
                continue;
            };
            self.packets += 1;
            if packet.payload_type() == TELEPHONE_EVENT {
                if let Ok(event) = TelephoneEvent::parse(packet.payload()) {
                    self.events.push(event.event);
                }
                continue;
            }
            self.last_audio = Some((packet.sequence(), packet.timestamp()));
            let mut pcm = vec![0i16; self.codec.samples_per_frame(20)];
            let samples = self.decoder.decode(packet.payload(), &mut pcm).unwrap();
            self.heard.extend_from_slice(&pcm[..samples]);
        }
    }

    /// How loud `frequency` is in what the peer heard since `from` (a length of `heard`),
    /// after the settling time.
    fn level(&self, from: usize, frequency: f64) -> f64 {
        let rate = self.codec.sample_rate();
        let start = from + crate::media::tone::samples_for(SETTLE, rate);
        let heard = self.heard.get(start..).unwrap_or_default();
        assert!(
            heard.len() >= rate as usize / 5,
            "{:?} peer heard only {} samples",
            self.codec,
            heard.len()
        );
        tone_level(heard, frequency, rate)
    }
}

/// Runs every peer for `duration`: one frame sent per peer every 20 ms (on absolute
/// deadlines), everything received taken. Returns where each peer's `heard` started.
fn run(peers: &mut [&mut Peer], duration: Duration) -> Vec<usize> {
    let marks = peers.iter().map(|peer| peer.heard.len()).collect();
    let frames = (duration.as_millis() / PTIME.as_millis()) as u32;
    let start = Instant::now();
    for frame in 1..=frames {
        for peer in peers.iter_mut() {
            peer.send_frame();
        }
        // Pacing the senders: 20 ms of audio per 20 ms, as a phone sends it.
        std::thread::sleep((start + PTIME * frame).saturating_duration_since(Instant::now()));
        for peer in peers.iter_mut() {
            peer.receive();
        }
    }
    marks
}

/// Events the room reported so far.
fn events(receiver: &mut mpsc::UnboundedReceiver<RoomEvent>) -> Vec<RoomEvent> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

const P1: ParticipantId = ParticipantId(1);
const P2: ParticipantId = ParticipantId(2);
const P3: ParticipantId = ParticipantId(3);
const P4: ParticipantId = ParticipantId(4);

#[tokio::test]
async fn three_codecs_each_hear_the_other_two_and_not_themselves_with_mute_and_coach() {
    let engine = RoomEngine::start(2).unwrap();
    let (events_in, mut events_out) = mpsc::unbounded_channel();
    let room = engine.open(events_in);
    let (mut ulaw, ulaw_leg) = Peer::new(Codec::Pcmu, &[500.0], |_| {}).await;
    let (mut alaw, alaw_leg) = Peer::new(Codec::Pcma, &[900.0], |_| {}).await;
    let (mut g722, g722_leg) = Peer::new(Codec::G722, &[1300.0], |_| {}).await;
    for (id, leg) in [(P1, ulaw_leg), (P2, alaw_leg), (P3, g722_leg)] {
        room.join(id, leg, ParticipantSettings::default()).unwrap();
    }

    let marks = run(
        &mut [&mut ulaw, &mut alaw, &mut g722],
        Duration::from_secs(1),
    );
    let tones = [500.0, 900.0, 1300.0];
    for (index, peer) in [&ulaw, &alaw, &g722].into_iter().enumerate() {
        for (other, &frequency) in tones.iter().enumerate() {
            let level = peer.level(marks[index], frequency);
            if other == index {
                assert!(level < NOT_HEARD, "{:?} hears itself: {level}", peer.codec);
            } else {
                assert!(
                    level > HEARD,
                    "{:?} misses {frequency} Hz: {level}",
                    peer.codec
                );
            }
        }
    }
    let speaking: Vec<ParticipantId> = events(&mut events_out)
        .into_iter()
        .filter_map(|event| match event {
            RoomEvent::Speaking {
                participant,
                speaking: true,
            } => Some(participant),
            _ => None,
        })
        .collect();
    assert_eq!(speaking.len(), 3, "{speaking:?}");

    // PCMA muted: the others no longer hear it; it still hears them.
    let muted = ParticipantSettings {
        muted: true,
        ..ParticipantSettings::default()
    };
    room.update(P2, muted);
    let marks = run(
        &mut [&mut ulaw, &mut alaw, &mut g722],
        Duration::from_secs(1),
    );
    assert!(ulaw.level(marks[0], 900.0) < NOT_HEARD);
    assert!(g722.level(marks[2], 900.0) < NOT_HEARD);
    assert!(alaw.level(marks[1], 500.0) > HEARD);
    assert!(alaw.level(marks[1], 1300.0) > HEARD);
    assert!(
        events(&mut events_out).contains(&RoomEvent::Speaking {
            participant: P2,
            speaking: false
        }),
        "a muted participant is not speaking"
    );

    // Unmuted, and a fourth (PCMU) coaching PCMU: only PCMU hears the coach.
    room.update(P2, ParticipantSettings::default());
    let (mut coach, coach_leg) = Peer::new(Codec::Pcmu, &[1700.0], |_| {}).await;
    let coaching = ParticipantSettings {
        coaching: Some(P1),
        ..ParticipantSettings::default()
    };
    room.join(P4, coach_leg, coaching).unwrap();
    let marks = run(
        &mut [&mut ulaw, &mut alaw, &mut g722, &mut coach],
        Duration::from_secs(1),
    );
    assert!(ulaw.level(marks[0], 900.0) > HEARD, "unmuted");
    assert!(
        ulaw.level(marks[0], 1700.0) > HEARD,
        "the coached hears the coach"
    );
    assert!(alaw.level(marks[1], 1700.0) < NOT_HEARD);
    assert!(g722.level(marks[2], 1700.0) < NOT_HEARD);
    for frequency in tones {
        assert!(
            coach.level(marks[3], frequency) > HEARD,
            "the coach hears {frequency} Hz"
        );
    }
    assert!(coach.level(marks[3], 1700.0) < NOT_HEARD);

    let legs = room.close().await;
    let mut ids: Vec<ParticipantId> = legs.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(ids, [P1, P2, P3, P4]);
}

#[tokio::test]
async fn prompts_to_all_and_to_one_digits_both_ways_inactivity_and_hold() {
    let engine = RoomEngine::start(1).unwrap();
    let (events_in, mut events_out) = mpsc::unbounded_channel();
    let room = engine.open(events_in);
    let (mut a, a_leg) = Peer::new(Codec::Pcmu, &[], |_| {}).await;
    let (mut b, b_leg) = Peer::new(Codec::Pcmu, &[], |_| {}).await;
    let short_timeout = |config: &mut SessionConfig| {
        config.inactivity_timeout = Duration::from_millis(300);
    };
    // c sends nothing and times out; d holds the call: it sends nothing either, is sent
    // nothing, and is not inactive.
    let (mut c, c_leg) = Peer::new(Codec::Pcmu, &[], short_timeout).await;
    let (mut d, d_leg) = Peer::new(Codec::Pcmu, &[], short_timeout).await;
    room.join(P1, a_leg, ParticipantSettings::default())
        .unwrap();
    room.join(P2, b_leg, ParticipantSettings::default())
        .unwrap();
    room.join(P3, c_leg, ParticipantSettings::default())
        .unwrap();
    let holding = ParticipantSettings {
        far_end_holding: true,
        ..ParticipantSettings::default()
    };
    room.join(P4, d_leg, holding).unwrap();

    let beep = |frequency: f64, millis: u64| {
        Audio::new(sine(frequency, 0.3, Duration::from_millis(millis), 8000))
    };
    room.play(Listeners::All, beep(1000.0, 800), 7);
    room.play(Listeners::One(P2), beep(2000.0, 800), 8);
    let marks = run(&mut [&mut a, &mut b], Duration::from_millis(800));
    assert!(a.level(marks[0], 1000.0) > HEARD);
    assert!(
        a.level(marks[0], 2000.0) < NOT_HEARD,
        "the prompt to b only"
    );
    assert!(b.level(marks[1], 1000.0) > HEARD);
    assert!(b.level(marks[1], 2000.0) > HEARD);

    // Digits: a presses 5 (RFC 4733); the room sends 1 to b as events.
    a.press(5);
    room.send_digits(P2, "1".to_owned());
    room.play(Listeners::All, beep(1000.0, 10_000), 9);
    run(&mut [&mut a, &mut b], Duration::from_millis(600));
    room.stop_prompts();
    run(&mut [&mut a, &mut b], Duration::from_millis(200));
    assert!(b.events.contains(&1), "{:?}", b.events);
    assert!(a.events.is_empty());

    let reported = events(&mut events_out);
    for expected in [
        RoomEvent::PromptDone { prompt: 7 },
        RoomEvent::PromptDone { prompt: 8 },
        RoomEvent::PromptDone { prompt: 9 },
        RoomEvent::Digit {
            participant: P1,
            digit: '5',
        },
        RoomEvent::DigitsSent { participant: P2 },
    ] {
        assert!(
            reported.contains(&expected),
            "{expected:?} in {reported:#?}"
        );
    }
    let inactive: Vec<ParticipantId> = reported
        .iter()
        .filter_map(|event| match event {
            RoomEvent::Inactive { participant, .. } => Some(*participant),
            _ => None,
        })
        .collect();
    assert_eq!(inactive, [P3], "the holding participant is not inactive");
    assert!(
        !reported
            .iter()
            .any(|event| matches!(event, RoomEvent::Speaking { .. })),
        "nobody spoke: {reported:#?}"
    );
    c.receive();
    d.receive();
    assert!(c.packets > 50, "c is sent the room: {}", c.packets);
    assert_eq!(
        d.packets, 0,
        "nothing goes to a far end that holds the call"
    );
    assert!(room.last_rtp(P1).unwrap() > room.last_rtp(P3).unwrap());
    assert!(room.last_rtp(ParticipantId(99)).is_none());
}

#[tokio::test]
async fn a_leg_that_leaves_goes_on_from_where_the_room_left_it_with_rtcp_served_meanwhile() {
    let engine = RoomEngine::start(1).unwrap();
    let (events_in, _events_out) = mpsc::unbounded_channel();
    let room = engine.open(events_in);
    let (mut a, a_leg) = Peer::new(Codec::Pcmu, &[500.0], |_| {}).await;
    let (mut b, b_leg) = Peer::new(Codec::Pcma, &[900.0], |_| {}).await;
    room.join(P1, a_leg, ParticipantSettings::default())
        .unwrap();
    room.join(P2, b_leg, ParticipantSettings::default())
        .unwrap();
    let refused = room.join(
        P1,
        Peer::new(Codec::Pcmu, &[], |_| {}).await.1,
        ParticipantSettings::default(),
    );
    assert!(matches!(refused, Err(Refused::AlreadyJoined(P1, _))));

    // A receiver report from a's phone reaches a's session through the room's worker; the
    // session's own reports (the first after 2.5 s) reach the phone.
    let mut report = [0u8; 8];
    report.copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 9]);
    run(&mut [&mut a, &mut b], Duration::from_millis(3000));
    let mut buf = [0u8; 1500];
    let (len, from) = a
        .rtcp
        .recv_from(&mut buf)
        .expect("an RTCP report from the room");
    assert_eq!(buf[1], crate::media::rtcp::SR, "{:?}", &buf[..len]);
    a.rtcp.send_to(&report, from).unwrap();
    run(&mut [&mut a, &mut b], Duration::from_millis(100));

    let leg = room.leave(P1).await.unwrap();
    assert!(matches!(
        room.leave(P1).await,
        Err(LeaveError::NotInRoom(P1))
    ));
    let stats = leg.session().stats();
    assert_eq!(stats.rtcp_received, 1, "{stats:?}");
    assert!(stats.packets_received >= 150, "{stats:?}");
    a.receive();
    let (sequence, timestamp) = a.last_audio.expect("a heard the room");
    assert!(a.level(0, 900.0) > HEARD);

    // The stream, back in the runtime, ticks on (its first sends may find the socket not yet
    // seen writable by the runtime: those packets are counted as send errors).
    let mut stream = RtpStream::from_room_leg(leg).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut ticks = tokio::time::interval(PTIME);
    while a.last_audio == Some((sequence, timestamp)) {
        assert!(Instant::now() < deadline, "nothing after the room");
        ticks.tick().await;
        stream.tick();
        a.receive();
    }
    let (next_sequence, next_timestamp) = a.last_audio.unwrap();
    let packets = next_sequence.wrapping_sub(sequence);
    assert!(
        (1..=3).contains(&packets),
        "the stream goes on where the room left it: {sequence} then {next_sequence}"
    );
    assert_eq!(
        next_timestamp.wrapping_sub(timestamp),
        160 * u32::from(packets),
        "one frame of timestamp per packet"
    );
    assert_eq!(
        stream.stats().send_errors,
        u64::from(packets - 1),
        "every packet before was a send the runtime refused"
    );
    // b alone in the room hears silence now.
    let marks = run(&mut [&mut b], Duration::from_millis(600));
    assert!(b.level(marks[0], 500.0) < NOT_HEARD);
}

#[tokio::test]
async fn a_wideband_participant_switches_the_room_to_16_khz_and_back() {
    let engine = RoomEngine::start(1).unwrap();
    let (events_in, _events_out) = mpsc::unbounded_channel();
    let room = engine.open(events_in);
    let (mut p1, p1_leg) = Peer::new(Codec::Pcmu, &[500.0], |_| {}).await;
    let (mut p2, p2_leg) = Peer::new(Codec::Pcmu, &[900.0], |_| {}).await;
    room.join(P1, p1_leg, ParticipantSettings::default())
        .unwrap();
    room.join(P2, p2_leg, ParticipantSettings::default())
        .unwrap();
    let marks = run(&mut [&mut p1, &mut p2], Duration::from_millis(600));
    assert!(p1.level(marks[0], 900.0) > HEARD);

    // Two wideband phones join: one sends 6 kHz (above what 8 kHz can carry) with 1 kHz.
    let (mut w1, w1_leg) = Peer::new(Codec::G722, &[1000.0, 6000.0], |_| {}).await;
    let (mut w2, w2_leg) = Peer::new(Codec::Opus, &[], |config| config.opus_rate = 16_000).await;
    room.join(P3, w1_leg, ParticipantSettings::default())
        .unwrap();
    room.join(P4, w2_leg, ParticipantSettings::default())
        .unwrap();
    let marks = run(
        &mut [&mut p1, &mut p2, &mut w1, &mut w2],
        Duration::from_secs(1),
    );
    let opus_rate = w2.codec.sample_rate();
    let opus_heard = &w2.heard[marks[3] + crate::media::tone::samples_for(SETTLE, opus_rate)..];
    assert!(
        tone_level(opus_heard, 6000.0, opus_rate) > HEARD,
        "6 kHz crossed the room: it mixes at 16 kHz"
    );
    for frequency in [500.0, 900.0, 1000.0] {
        assert!(
            tone_level(opus_heard, frequency, opus_rate) > HEARD,
            "{frequency} Hz"
        );
    }
    assert!(w1.level(marks[2], 500.0) > HEARD);
    assert!(w1.level(marks[2], 6000.0) < NOT_HEARD, "not itself");
    assert!(p1.level(marks[0], 1000.0) > HEARD);
    assert!(p1.level(marks[0], 900.0) > HEARD);

    // Both leave: the room is narrowband again, and the two PCMU phones still hear each other.
    room.leave(P3).await.unwrap();
    let w2_leg = room.leave(P4).await.unwrap();
    assert_eq!(w2_leg.session().mix_rate(), MixRate::Narrowband);
    let marks = run(&mut [&mut p1, &mut p2], Duration::from_millis(600));
    assert!(p1.level(marks[0], 900.0) > HEARD);
    assert!(p2.level(marks[1], 500.0) > HEARD);
    assert!(p2.level(marks[1], 1000.0) < NOT_HEARD);
}

#[tokio::test]
async fn a_dropped_handle_closes_the_room_and_its_legs() {
    let engine = RoomEngine::start(1).unwrap();
    let (events_in, _events_out) = mpsc::unbounded_channel();
    let room = engine.open(events_in);
    let (a, a_leg) = Peer::new(Codec::Pcmu, &[], |_| {}).await;
    room.join(P1, a_leg, ParticipantSettings::default())
        .unwrap();
    drop(room);
    let deadline = Instant::now() + WAIT;
    while StdSocket::bind(a.room_side).is_err() {
        assert!(Instant::now() < deadline, "the leg's socket is still open");
        std::thread::sleep(Duration::from_millis(5));
    }
}
