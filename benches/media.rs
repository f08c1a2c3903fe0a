//! Media hot paths, per 20 ms frame (release build): `cargo bench --bench media`.
//!
//! - `codec/<name>`: encode then decode one 20 ms frame (PCMU, PCMA, G.722, Opus fed at
//!   16 and 48 kHz);
//! - `transcode/*`: one direction of a PCMU↔Opus bridge per frame, as the media session does
//!   it (decode, resample, encode), and `transcode/call` both directions;
//! - `jitter/push_pop`: one packet through the jitter buffer;
//! - `dtmf/inband`: the Goertzel detector on one 8 kHz frame;
//! - `session/tick_*`: a whole leg per tick (receive, jitter, decode, DTMF, encode, send);
//! - `srtp/{protect,unprotect}_{80,32}`: one 20 ms PCMU packet (12 + 160 bytes) protected or
//!   authenticated and decrypted in place (RFC 3711), per suite; `srtp/rtcp_protect` one
//!   receiver report with SDES.
//! - `room/*`: one 20 ms frame of a room's [`Mixer`] (`set_input` for every participant,
//!   `mix`, every participant's `output` read): `mix_100_all_talking` (100 parties, every one
//!   voiced: each hears its own sum), `mix_100_3_talking` (3 voiced, 97 silent: the silent
//!   share one mix), `mix_100_all_talking_16k` (the same at 16 kHz, a room with a wideband
//!   leg), `mix_3_all_talking`; and `pcmu_mix_100_all_talking`: the 100-party frame with its
//!   G.711 work, every input decoded from PCMU and every output encoded to it, as the room
//!   worker does per tick besides the sockets and jitter buffers.
//!
//! Before the criterion runs, it prints the CPU share of one transcoded PCMU↔Opus call
//! (both directions, one frame each per 20 ms) as a percentage of one core, and the cost of a
//! 100-party room's frame (mix, and mix with G.711) against the 1 ms target.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use callml::media::codec::{Codec, Decoder, Encoder, MAX_PAYLOAD_BYTES};
use callml::media::dtmf::InbandDetector;
use callml::media::jitter::{JitterBuffer, JitterConfig};
use callml::media::library::Audio;
use callml::media::mixer::{MixRate, MixRole, Mixer, ParticipantId};
use callml::media::resample::Resampler;
use callml::media::rtp::{RtpPacket, RtpSender};
use callml::media::session::{MediaSession, PTIME, SessionConfig};
use callml::media::srtp::{MasterKey, SrtcpSender, SrtpReceiver, SrtpSender, SrtpSuite};
use callml::media::tone::sine;
use criterion::{BatchSize, Criterion, criterion_group};

/// 20 ms of a speech-band test signal at `rate`.
fn frame(rate: u32) -> Vec<i16> {
    let a = sine(440.0, 0.2, PTIME, rate);
    let b = sine(1320.0, 0.1, PTIME, rate);
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let cases = [
        ("pcmu", Codec::Pcmu, 8000),
        ("pcma", Codec::Pcma, 8000),
        ("g722", Codec::G722, 16_000),
        ("opus_16k", Codec::Opus, 16_000),
        ("opus_48k", Codec::Opus, 48_000),
    ];
    for (name, codec, rate) in cases {
        let pcm = frame(rate);
        let mut encoder = Encoder::with_rate(codec, rate).unwrap();
        let mut decoder = Decoder::with_rate(codec, rate).unwrap();
        let mut payload = [0u8; MAX_PAYLOAD_BYTES];
        let mut out = vec![0i16; pcm.len()];
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                let len = encoder.encode(black_box(&pcm), &mut payload).unwrap();
                decoder.decode(&payload[..len], &mut out).unwrap()
            })
        });
    }
    group.finish();
}

/// One direction each of a PCMU↔Opus bridge, with the session's rates: Opus is fed at
/// 16 kHz (8 kHz resampled up) and decoded straight to 8 kHz.
struct Transcoder {
    ulaw_decoder: Decoder,
    ulaw_encoder: Encoder,
    opus_encoder: Encoder,
    opus_decoder: Decoder,
    up: Resampler,
    pcm8: [i16; 160],
    pcm16: [i16; 320],
    payload: [u8; MAX_PAYLOAD_BYTES],
    ulaw_frame: [u8; 160],
    opus_frame: Vec<u8>,
}

impl Transcoder {
    fn new() -> Transcoder {
        let mut encoder = Encoder::with_rate(Codec::Opus, 16_000).unwrap();
        let mut payload = [0u8; MAX_PAYLOAD_BYTES];
        let len = encoder.encode(&frame(16_000), &mut payload).unwrap();
        let mut ulaw_frame = [0u8; 160];
        Encoder::new(Codec::Pcmu)
            .encode(&frame(8000), &mut ulaw_frame)
            .unwrap();
        Transcoder {
            ulaw_decoder: Decoder::new(Codec::Pcmu),
            ulaw_encoder: Encoder::new(Codec::Pcmu),
            opus_encoder: encoder,
            opus_decoder: Decoder::with_rate(Codec::Opus, 8000).unwrap(),
            up: Resampler::new(8000, 16_000).unwrap(),
            pcm8: [0; 160],
            pcm16: [0; 320],
            payload,
            ulaw_frame,
            opus_frame: payload[..len].to_vec(),
        }
    }

    fn pcmu_to_opus(&mut self) -> usize {
        self.ulaw_decoder
            .decode(&self.ulaw_frame, &mut self.pcm8)
            .unwrap();
        self.up.process_i16(&self.pcm8, &mut self.pcm16);
        self.opus_encoder
            .encode(&self.pcm16, &mut self.payload)
            .unwrap()
    }

    fn opus_to_pcmu(&mut self) -> usize {
        self.opus_decoder
            .decode(&self.opus_frame, &mut self.pcm8)
            .unwrap();
        self.ulaw_encoder
            .encode(&self.pcm8, &mut self.payload)
            .unwrap()
    }
}

fn transcode(c: &mut Criterion) {
    let mut group = c.benchmark_group("transcode");
    let mut transcoder = Transcoder::new();
    group.bench_function("pcmu_to_opus", |bencher| {
        bencher.iter(|| transcoder.pcmu_to_opus())
    });
    group.bench_function("opus_to_pcmu", |bencher| {
        bencher.iter(|| transcoder.opus_to_pcmu())
    });
    group.bench_function("call", |bencher| {
        bencher.iter(|| transcoder.pcmu_to_opus() + transcoder.opus_to_pcmu())
    });
    group.finish();
}

fn jitter(c: &mut Criterion) {
    let start = Instant::now();
    let mut buffer = JitterBuffer::new(JitterConfig::default(), 8000, PTIME, start);
    let mut sender = RtpSender::new(0);
    let mut datagram = [0u8; 200];
    let mut now = start;
    c.bench_function("jitter/push_pop", |bencher| {
        bencher.iter(|| {
            let len = sender
                .write_audio(&mut datagram, &[0xff; 160], 160)
                .unwrap();
            let packet = RtpPacket::parse(&datagram[..len]).unwrap();
            buffer.push(&packet, now);
            now += PTIME;
            matches!(buffer.pop(now), callml::media::jitter::Playout::Packet(_))
        })
    });
}

fn dtmf(c: &mut Criterion) {
    let mut detector = InbandDetector::new();
    let speech = frame(8000);
    c.bench_function("dtmf/inband", |bencher| {
        bencher.iter(|| detector.process(black_box(&speech)))
    });
}

fn session_tick(c: &mut Criterion) {
    for (name, codec) in [
        ("session/tick_pcmu", Codec::Pcmu),
        ("session/tick_opus", Codec::Opus),
    ] {
        let a_address: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        let payload_type = codec.static_payload_type().unwrap_or(111);
        let start = Instant::now();
        let mut sending = MediaSession::new(
            SessionConfig::new(codec, payload_type, "127.0.0.1:30000".parse().unwrap()),
            start,
            SystemTime::now(),
        );
        let mut leg = MediaSession::new(
            SessionConfig::new(codec, payload_type, a_address),
            start,
            SystemTime::now(),
        );
        sending.play(Audio::new(sine(
            440.0,
            0.3,
            Duration::from_secs(3600),
            8000,
        )));
        leg.play(Audio::new(sine(
            440.0,
            0.3,
            Duration::from_secs(3600),
            8000,
        )));
        let mut datagram = [0u8; 1500];
        let mut now = start;
        c.bench_function(name, |bencher| {
            bencher.iter(|| {
                sending.tick(now);
                while let Some(transmit) = sending.poll_transmit() {
                    let len = transmit.payload.len();
                    datagram[..len].copy_from_slice(transmit.payload);
                    leg.handle_rtp(&mut datagram[..len], a_address, now);
                }
                leg.tick(now);
                while leg.poll_transmit().is_some() {}
                now += PTIME;
            })
        });
    }
}

/// SRTP per packet, in place, as the relay engine and the media session do it.
fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp");
    let mut plain = [0u8; 200];
    let len = RtpSender::new(0)
        .write_audio(&mut plain, &[0x55; 160], 160)
        .unwrap();
    for (name, suite) in [
        ("80", SrtpSuite::AesCm128HmacSha1_80),
        ("32", SrtpSuite::AesCm128HmacSha1_32),
    ] {
        let key = MasterKey::random();
        let mut sender = SrtpSender::new(suite, &key);
        let mut sequence = 0u16;
        group.bench_function(format!("protect_{name}"), |bencher| {
            bencher.iter(|| {
                let mut buffer = plain;
                sequence = sequence.wrapping_add(1);
                buffer[2..4].copy_from_slice(&sequence.to_be_bytes());
                sender.protect(black_box(&mut buffer), len).unwrap()
            })
        });
        // Each packet is new to the receiver (its replay window refuses repeats): protected
        // in the untimed setup.
        let mut sender = SrtpSender::new(suite, &key);
        let mut receiver = SrtpReceiver::new(suite, &key);
        let mut sequence = 0u16;
        group.bench_function(format!("unprotect_{name}"), |bencher| {
            bencher.iter_batched(
                || {
                    let mut buffer = plain;
                    sequence = sequence.wrapping_add(1);
                    buffer[2..4].copy_from_slice(&sequence.to_be_bytes());
                    let protected = sender.protect(&mut buffer, len).unwrap();
                    (buffer, protected)
                },
                |(mut buffer, protected)| {
                    receiver
                        .unprotect(black_box(&mut buffer[..protected]))
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    // A receiver report with one block and an SDES CNAME, as the session sends every ~5 s.
    let report: [u8; 52] = {
        let mut report = [0u8; 52];
        report[..8].copy_from_slice(&[0x81, 201, 0, 7, 1, 2, 3, 4]);
        report[32..40].copy_from_slice(&[0x81, 202, 0, 4, 1, 2, 3, 4]);
        report
    };
    let mut rtcp = SrtcpSender::new(&MasterKey::random());
    group.bench_function("rtcp_protect", |bencher| {
        bencher.iter(|| {
            let mut buffer = [0u8; 80];
            buffer[..52].copy_from_slice(&report);
            rtcp.protect(black_box(&mut buffer), 52).unwrap()
        })
    });
    group.finish();
}

/// A room of `parties` at `rate` whose first `talking` participants say a tone each (different
/// frequencies, voiced) and the rest say nothing: the mixer and every participant's 20 ms input.
struct Room {
    mixer: Mixer,
    inputs: Vec<Vec<i16>>,
    talking: usize,
}

impl Room {
    fn new(parties: usize, talking: usize, rate: MixRate) -> Room {
        let mut mixer = Mixer::new(rate);
        let inputs = (0..parties)
            .map(|index| {
                mixer.add(ParticipantId(index as u64), MixRole::default());
                sine(200.0 + 17.0 * index as f64, 0.1, PTIME, rate.hz())
            })
            .collect();
        Room {
            mixer,
            inputs,
            talking,
        }
    }

    /// One frame: every input set, the mix, every output read.
    fn frame(&mut self) -> i64 {
        for (index, input) in self.inputs.iter().enumerate() {
            if index < self.talking {
                self.mixer.set_input(index, black_box(input));
            } else {
                self.mixer.set_silent(index);
            }
        }
        self.mixer.mix();
        let mut heard = 0i64;
        for index in 0..self.inputs.len() {
            if let Some(output) = self.mixer.output(index) {
                heard += i64::from(black_box(output)[0]);
            }
        }
        heard
    }
}

/// A room's frame with its G.711 work: every participant's PCMU payload decoded into the
/// mixer, every participant's mix encoded to PCMU.
struct PcmuRoom {
    room: Room,
    payloads: Vec<[u8; 160]>,
    decoder: Decoder,
    encoder: Encoder,
    pcm: [i16; 160],
    out: [u8; MAX_PAYLOAD_BYTES],
}

impl PcmuRoom {
    fn new(parties: usize) -> PcmuRoom {
        let room = Room::new(parties, parties, MixRate::Narrowband);
        let mut encoder = Encoder::new(Codec::Pcmu);
        let payloads = room
            .inputs
            .iter()
            .map(|input| {
                let mut payload = [0u8; 160];
                encoder.encode(input, &mut payload).unwrap();
                payload
            })
            .collect();
        PcmuRoom {
            room,
            payloads,
            decoder: Decoder::new(Codec::Pcmu),
            encoder,
            pcm: [0; 160],
            out: [0; MAX_PAYLOAD_BYTES],
        }
    }

    fn frame(&mut self) -> usize {
        let mixer = &mut self.room.mixer;
        for (index, payload) in self.payloads.iter().enumerate() {
            self.decoder
                .decode(black_box(payload), &mut self.pcm)
                .unwrap();
            mixer.set_input(index, &self.pcm);
        }
        mixer.mix();
        let mut sent = 0;
        for index in 0..self.payloads.len() {
            if let Some(output) = mixer.output(index) {
                sent += self.encoder.encode(output, &mut self.out).unwrap();
                black_box(&self.out);
            }
        }
        sent
    }
}

fn room(c: &mut Criterion) {
    let mut group = c.benchmark_group("room");
    let cases = [
        ("mix_100_all_talking", 100, 100, MixRate::Narrowband),
        ("mix_100_3_talking", 100, 3, MixRate::Narrowband),
        ("mix_100_all_talking_16k", 100, 100, MixRate::Wideband),
        ("mix_3_all_talking", 3, 3, MixRate::Narrowband),
    ];
    for (name, parties, talking, rate) in cases {
        let mut room = Room::new(parties, talking, rate);
        group.bench_function(name, |bencher| bencher.iter(|| room.frame()));
    }
    let mut room = PcmuRoom::new(100);
    group.bench_function("pcmu_mix_100_all_talking", |bencher| {
        bencher.iter(|| room.frame())
    });
    group.finish();
}

/// Prints what one frame of a 100-party room costs, every participant talking: the mix
/// alone, and with every input decoded from and every output encoded to PCMU.
fn report_room_frame() {
    fn per_frame(mut frame: impl FnMut()) -> Duration {
        for _ in 0..200 {
            frame();
        }
        let frames = 2000u32;
        let started = Instant::now();
        for _ in 0..frames {
            frame();
        }
        started.elapsed() / frames
    }
    let mut room = Room::new(100, 100, MixRate::Narrowband);
    let mix = per_frame(|| {
        black_box(room.frame());
    });
    let mut room = PcmuRoom::new(100);
    let with_g711 = per_frame(|| {
        black_box(room.frame());
    });
    println!(
        "100-party room, every party talking, per 20 ms frame: mix {:.1} µs, with G.711 decode \
         and encode {:.1} µs (target < 1000 µs; {:.2}% of one core)",
        mix.as_secs_f64() * 1e6,
        with_g711.as_secs_f64() * 1e6,
        with_g711.as_secs_f64() / PTIME.as_secs_f64() * 100.0
    );
}

/// Prints the CPU share of one transcoded call: both directions, once per 20 ms.
fn report_transcode_share() {
    let mut transcoder = Transcoder::new();
    for _ in 0..500 {
        transcoder.pcmu_to_opus();
        transcoder.opus_to_pcmu();
    }
    let frames = 5000u32;
    let started = Instant::now();
    for _ in 0..frames {
        black_box(transcoder.pcmu_to_opus());
        black_box(transcoder.opus_to_pcmu());
    }
    let per_frame = started.elapsed() / frames;
    let share = per_frame.as_secs_f64() / PTIME.as_secs_f64() * 100.0;
    println!(
        "PCMU<->Opus transcoded call: {:.1} µs of CPU per 20 ms = {share:.2}% of one core",
        per_frame.as_secs_f64() * 1e6
    );
}

criterion_group!(
    benches,
    codecs,
    transcode,
    jitter,
    dtmf,
    session_tick,
    srtp,
    room
);

fn main() {
    report_transcode_share();
    report_room_frame();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
