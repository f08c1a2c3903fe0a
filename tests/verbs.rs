//! The voice verbs end to end: the real `callml serve` binary, a local customer app, and real
//! peers — sipp playing Debian's RFC 2833 key captures, an RTP peer playing sox-made DTMF
//! tones and test signals, baresip playing a WAV into `<Record>` — with the audio callml sends
//! decoded and measured.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use callml::media::codec::{Codec, Decoder};
use callml::media::dtmf::InbandDetector;
use common::app::{CustomerApp, RecordedRequest, Reply};
use common::baresip::BaresipPhone;
use common::callml::{Callml, TempDir};
use common::rtp::{Packet, RtpCapture, linear_to_ulaw, tone_ratio, ulaw_to_linear};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::{best_correlation, download, read_wav, wav_bytes};

const SECOND: Duration = Duration::from_secs(1);
const TOKEN: &str = "verbs-auth-token";

async fn sipp(run: Sipp) -> SippRun {
    tokio::task::spawn_blocking(move || run.run())
        .await
        .expect("sipp thread")
}

fn server(name: &str, app: &CustomerApp) -> Callml {
    let voice = app.url("/voice");
    Callml::start(name, &["--voice-url", &voice, "--auth-token", TOKEN])
}

fn sine(frequency: f64, seconds: f64, rate: u32) -> Vec<i16> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * t).sin()) as i16
        })
        .collect()
}

/// Runs sox with `args`; panics with its output when it fails.
fn sox(args: &[&str]) {
    let output = Command::new("sox")
        .args(args)
        .output()
        .expect("run sox (Debian package sox)");
    assert!(
        output.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Seconds of speech espeak-ng makes of `text` with callml's default voice.
fn espeak_seconds(dir: &Path, text: &str) -> f64 {
    let path = dir.join("say.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("run espeak-ng (Debian package espeak-ng)");
    assert!(status.success());
    let (rate, _, samples) = read_wav(&std::fs::read(&path).expect("espeak output"));
    samples.len() as f64 / f64::from(rate)
}

fn audible(frame: &[i16]) -> bool {
    frame.iter().any(|&s| s.unsigned_abs() > 200)
}

/// Seconds from the first to the last audible PCMU packet.
fn audible_span(packets: &[Packet]) -> f64 {
    let frames: Vec<bool> = packets
        .iter()
        .map(|p| {
            audible(
                &p.payload
                    .iter()
                    .map(|&b| ulaw_to_linear(b))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    match (
        frames.iter().position(|&a| a),
        frames.iter().rposition(|&a| a),
    ) {
        (Some(first), Some(last)) => (last - first + 1) as f64 * 0.02,
        _ => 0.0,
    }
}

/// A symmetric RTP endpoint: once callml's first packet arrives, it sends `samples` (8 kHz)
/// back as PCMU in 20 ms packets from the same socket, and records everything it receives
/// until the stream has been idle for 600 ms (or `limit` passes).
struct AudioPeer {
    port: u16,
    thread: JoinHandle<Vec<Packet>>,
}

impl AudioPeer {
    fn start(samples: Vec<i16>, limit: Duration) -> AudioPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind RTP peer");
        let port = socket.local_addr().expect("addr").port();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut received = Vec::new();
            let mut last = Instant::now();
            let mut remote = None;
            let mut frames = samples.chunks(160);
            let mut sent = 0u32;
            let mut next_send = Instant::now();
            let mut buf = [0u8; 2048];
            while started.elapsed() < limit {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if n >= 12 && buf[0] >> 6 == 2 {
                        last = Instant::now();
                        if remote.is_none() {
                            remote = Some(from);
                            next_send = Instant::now();
                        }
                        received.push(Packet {
                            at: started.elapsed(),
                            payload_type: buf[1] & 0x7f,
                            marker: buf[1] & 0x80 != 0,
                            sequence: u16::from_be_bytes([buf[2], buf[3]]),
                            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                            payload: buf[12..n].to_vec(),
                        });
                    }
                } else if !received.is_empty() && last.elapsed() > Duration::from_millis(600) {
                    break;
                }
                let Some(to) = remote else { continue };
                while Instant::now() >= next_send {
                    let Some(frame) = frames.next() else { break };
                    let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0xad, 0xbe, 0xef];
                    packet[2..4].copy_from_slice(&(sent as u16).to_be_bytes());
                    packet[4..8].copy_from_slice(&(sent * 160).to_be_bytes());
                    packet.extend(frame.iter().map(|&s| linear_to_ulaw(s)));
                    let _ = socket.send_to(&packet, to);
                    sent += 1;
                    next_send += Duration::from_millis(20);
                }
            }
            received
        });
        AudioPeer { port, thread }
    }

    fn finish(self) -> Vec<Packet> {
        self.thread.join().expect("RTP peer thread")
    }
}

/// The customer app with `document` at `/voice`.
async fn app_serving(document: &str) -> CustomerApp {
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml(document));
    app
}

const STAY: &str = "<Response><Pause length=\"30\"/></Response>";

#[tokio::test(flavor = "multi_thread")]
async fn gather_collects_rfc2833_keys_and_the_first_key_stops_the_prompt() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let prompt = "Please enter your account number, followed by the pound key. \
                  Take your time, we will wait for you.";
    let app = app_serving(&format!(
        "<Response><Gather action=\"/gathered\"><Say>{prompt}</Say></Gather><Say>never</Say></Response>"
    ))
    .await;
    app.serve("/gathered", Reply::xml(STAY));
    let callml = server("gather-rfc2833", &app);
    let capture = RtpCapture::start(Duration::from_millis(800), 30 * SECOND);
    let run = sipp(
        Sipp::new(&sipp_bin, "caller_presses_keys.xml", callml.sip)
            .key("rtp_port", capture.port)
            .pause(Duration::from_millis(1500)),
    )
    .await;
    run.assert_success();
    let gathered = &app.wait_for("/gathered", 1, 5 * SECOND).await[0];
    assert_eq!(gathered.method, "POST");
    assert_eq!(gathered.param("Digits"), Some("123"), "{gathered:?}");
    assert_eq!(gathered.param("FinishedOnKey"), Some("#"));
    assert_eq!(gathered.param("CallStatus"), Some("in-progress"));

    let packets = capture.finish();
    let total = packets.len() as f64 * 0.02;
    assert!(
        total > 4.0,
        "RTP went on after the keys ({total:.2} s in all)\n{}",
        callml.log()
    );
    let dir = TempDir::new("espeak");
    let full = espeak_seconds(dir.path(), prompt);
    let spoken = audible_span(&packets);
    assert!(
        spoken < 2.2 && full > 4.0,
        "the prompt ({full:.2} s) stopped at the first key 1.5 s in; audio lasted {spoken:.2} s"
    );
    assert_eq!(app.requests_to("/gathered").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn gather_ends_at_num_digits_and_ignores_the_keys_after_it() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = app_serving(
        "<Response><Gather numDigits=\"2\" action=\"/gathered\" method=\"GET\"/></Response>",
    )
    .await;
    app.serve("/gathered", Reply::xml(STAY));
    let callml = server("gather-num-digits", &app);
    let run = sipp(
        Sipp::new(&sipp_bin, "caller_presses_keys.xml", callml.sip)
            .pause(Duration::from_millis(500)),
    )
    .await;
    run.assert_success();
    let gathered = app.wait_for("/gathered", 1, 5 * SECOND).await;
    assert_eq!(gathered.len(), 1, "3 and # came after the gather");
    assert_eq!(gathered[0].method, "GET");
    assert_eq!(gathered[0].param("Digits"), Some("12"));
    assert_eq!(gathered[0].param("FinishedOnKey"), Some(""));
}

/// Keys 4, 7 and # as in-band tones, made with sox, 8 kHz 16-bit.
fn sox_keys(dir: &Path) -> Vec<i16> {
    let mut parts = Vec::new();
    for (name, row, column) in [("4", 770, 1209), ("7", 852, 1209), ("pound", 941, 1477)] {
        let path = dir.join(format!("{name}.wav"));
        let path = path.to_str().unwrap();
        sox(&[
            "-n",
            "-r",
            "8000",
            "-b",
            "16",
            "-c",
            "1",
            path,
            "synth",
            "0.15",
            "sine",
            &row.to_string(),
            "synth",
            "0.15",
            "sine",
            "mix",
            &column.to_string(),
            "pad",
            "0",
            "0.25",
            "gain",
            "-6",
        ]);
        parts.push(path.to_owned());
    }
    let keys = dir.join("keys.wav");
    let mut args: Vec<&str> = parts.iter().map(String::as_str).collect();
    args.push(keys.to_str().unwrap());
    sox(&args);
    let (rate, channels, samples) = read_wav(&std::fs::read(&keys).unwrap());
    assert_eq!((rate, channels), (8000, 1));
    samples
}

fn pcmu_only(run: Sipp) -> Sipp {
    run.key("codec_pt", 0)
        .key("codec_rtpmap", "PCMU/8000")
        .key("codec_attribute", "a=ptime:20")
}

#[tokio::test(flavor = "multi_thread")]
async fn gather_detects_in_band_keys_made_with_sox() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let Some(_) = require_peer("sox", "sox") else {
        return;
    };
    let dir = TempDir::new("inband");
    let mut audio = vec![0; 4000];
    audio.extend(sox_keys(dir.path()));
    audio.extend(vec![0; 4000]);
    let app =
        app_serving("<Response><Gather action=\"/gathered\" timeout=\"3\"/></Response>").await;
    app.serve("/gathered", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("gather-inband", &app);
    let peer = AudioPeer::start(audio, 30 * SECOND);
    let run = sipp(pcmu_only(
        Sipp::new(&sipp_bin, "caller_offers_one_codec.xml", callml.sip).key("rtp_port", peer.port),
    ))
    .await;
    run.assert_success();
    peer.finish();
    let gathered = &app.wait_for("/gathered", 1, 5 * SECOND).await[0];
    assert_eq!(gathered.param("Digits"), Some("47"));
    assert_eq!(gathered.param("FinishedOnKey"), Some("#"));
}

/// Decodes a captured stream of one codec to PCM at the decoder's rate.
fn decode(packets: &[Packet], codec: Codec) -> Vec<i16> {
    let mut decoder = match codec {
        Codec::Opus => Decoder::with_rate(Codec::Opus, 48_000).unwrap(),
        other => Decoder::new(other),
    };
    let mut pcm = Vec::new();
    let mut frame = [0i16; 5760];
    for packet in packets {
        let n = match codec {
            Codec::Pcmu => {
                for (out, &code) in frame.iter_mut().zip(&packet.payload) {
                    *out = ulaw_to_linear(code);
                }
                packet.payload.len()
            }
            _ => decoder.decode(&packet.payload, &mut frame).expect("decode"),
        };
        pcm.extend_from_slice(&frame[..n]);
    }
    pcm
}

/// The frequency between 300 and 600 Hz (1 Hz steps) that carries the most energy.
fn dominant_frequency(samples: &[i16], rate: f64) -> f64 {
    (300..=600)
        .map(f64::from)
        .max_by(|a, b| tone_ratio(samples, *a, rate).total_cmp(&tone_ratio(samples, *b, rate)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn play_arrives_at_440_hz_in_pcmu_pcma_g722_and_opus() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = app_serving("<Response><Play>/tone.wav</Play><Hangup/></Response>").await;
    app.serve(
        "/tone.wav",
        Reply::binary("audio/wav", wav_bytes(&sine(440.0, 1.0, 8000), 8000)),
    );
    let callml = server("play-codecs", &app);
    let codecs = [
        (Codec::Pcmu, 0, "PCMU/8000", "a=ptime:20", 8000.0, 160),
        (Codec::Pcma, 8, "PCMA/8000", "a=ptime:20", 8000.0, 160),
        (Codec::G722, 9, "G722/8000", "a=ptime:20", 16000.0, 160),
        (
            Codec::Opus,
            111,
            "opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            48000.0,
            960,
        ),
    ];
    for (codec, payload_type, rtpmap, attribute, rate, step) in codecs {
        let capture = RtpCapture::start(Duration::from_millis(600), 30 * SECOND);
        let run = sipp(
            Sipp::new(&sipp_bin, "caller_offers_one_codec.xml", callml.sip)
                .key("rtp_port", capture.port)
                .key("codec_pt", payload_type)
                .key("codec_rtpmap", rtpmap)
                .key("codec_attribute", attribute),
        )
        .await;
        run.assert_success();
        let packets = capture.finish();
        assert!(
            packets.iter().all(|p| p.payload_type == payload_type),
            "{codec:?}: every packet has payload type {payload_type}"
        );
        for pair in packets.windows(2) {
            assert_eq!(
                pair[1].timestamp.wrapping_sub(pair[0].timestamp),
                step,
                "{codec:?}: 20 ms per packet"
            );
        }
        let pcm = decode(&packets, codec);
        let per_frame = (rate / 50.0) as usize;
        let loud: Vec<usize> = (0..pcm.len() / per_frame)
            .filter(|&i| audible(&pcm[i * per_frame..(i + 1) * per_frame]))
            .collect();
        let (first, last) = (loud[0], *loud.last().unwrap());
        let seconds = (last - first + 1) as f64 / 50.0;
        assert!(
            (0.9..=1.1).contains(&seconds),
            "{codec:?}: the tone lasts {seconds:.2} s"
        );
        let middle = (first + last) / 2 * per_frame;
        let window = &pcm[middle - per_frame * 12..middle + per_frame * 12];
        let frequency = dominant_frequency(window, rate);
        assert!(
            (frequency - 440.0).abs() <= 2.0,
            "{codec:?}: the tone arrives at {frequency} Hz"
        );
        assert!(
            tone_ratio(window, 440.0, rate) > 0.8,
            "{codec:?}: the tone is clean ({:.2} of the energy at 440 Hz)",
            tone_ratio(window, 440.0, rate)
        );
    }
    callml.wait_for_ended_calls(4, 10 * SECOND);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_sends_back_what_the_caller_says() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = app_serving("<Response><Echo timeout=\"5\"/><Hangup/></Response>").await;
    let callml = server("echo", &app);
    let peer = AudioPeer::start(sine(523.0, 2.0, 8000), 30 * SECOND);
    let run = sipp(pcmu_only(
        Sipp::new(&sipp_bin, "caller_offers_one_codec.xml", callml.sip).key("rtp_port", peer.port),
    ))
    .await;
    run.assert_success();
    let packets = peer.finish();
    let echoed = packets
        .iter()
        .filter(|p| {
            let pcm: Vec<i16> = p.payload.iter().map(|&b| ulaw_to_linear(b)).collect();
            tone_ratio(&pcm, 523.0, 8000.0) > 0.8
        })
        .count();
    assert!(
        (90..=101).contains(&echoed),
        "2 s of 523 Hz is 100 packets; {echoed} came back"
    );
    let total = packets.len() as f64 * 0.02;
    assert!(
        (4.5..6.5).contains(&total),
        "the echo lasted its 5 s timeout ({total:.2} s of RTP)"
    );
}

/// The RFC 4733 events in `packets`: (key, start timestamp, end seen), one per event.
fn telephone_events(packets: &[Packet]) -> Vec<(u8, u32, Duration, bool)> {
    let mut events: Vec<(u8, u32, Duration, bool)> = Vec::new();
    for p in packets.iter().filter(|p| p.payload_type == 101) {
        let end = p.payload[1] & 0x80 != 0;
        match events.last_mut() {
            Some(last) if last.1 == p.timestamp => last.3 |= end,
            _ => events.push((p.payload[0], p.timestamp, p.at, end)),
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn play_digits_arrive_as_rfc4733_events_or_as_tones() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = app_serving("<Response><Play digits=\"1w2#\"/><Hangup/></Response>").await;
    let callml = server("play-digits", &app);
    let capture = RtpCapture::start(Duration::from_millis(600), 30 * SECOND);
    let run =
        sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip).key("rtp_port", capture.port))
            .await;
    run.assert_success();
    let events = telephone_events(&capture.finish());
    let keys: Vec<(u8, bool)> = events.iter().map(|e| (e.0, e.3)).collect();
    assert_eq!(keys, [(1, true), (2, true), (11, true)], "{events:?}");
    let wait = events[1].2 - events[0].2;
    assert!(
        wait >= Duration::from_millis(650),
        "w waits half a second between the keys (starts {wait:?} apart)"
    );

    // A caller without telephone-event hears the keys as tones.
    let capture = RtpCapture::start(Duration::from_millis(600), 30 * SECOND);
    let run = sipp(pcmu_only(
        Sipp::new(&sipp_bin, "caller_offers_one_codec.xml", callml.sip)
            .key("rtp_port", capture.port),
    ))
    .await;
    run.assert_success();
    let packets = capture.finish();
    let mut detector = InbandDetector::new();
    let heard: String = packets
        .iter()
        .filter_map(|p| {
            let pcm: Vec<i16> = p.payload.iter().map(|&b| ulaw_to_linear(b)).collect();
            detector.process(&pcm)
        })
        .map(|digit| digit.digit)
        .collect();
    assert_eq!(heard, "12#");
}

#[tokio::test(flavor = "multi_thread")]
async fn say_makes_ssml_breaks_silence() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app =
        app_serving("<Response><Say>One.<break time=\"2s\"/>Two.</Say><Hangup/></Response>").await;
    let callml = server("say-break", &app);
    let capture = RtpCapture::start(Duration::from_millis(600), 30 * SECOND);
    let run =
        sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip).key("rtp_port", capture.port))
            .await;
    run.assert_success();
    let packets = capture.finish();
    let loud: Vec<bool> = packets
        .iter()
        .map(|p| {
            audible(
                &p.payload
                    .iter()
                    .map(|&b| ulaw_to_linear(b))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let first = loud.iter().position(|&a| a).expect("speech");
    let last = loud.iter().rposition(|&a| a).expect("speech");
    let longest_gap = loud[first..=last]
        .split(|&a| a)
        .map(<[bool]>::len)
        .max()
        .unwrap_or(0);
    let gap = longest_gap as f64 * 0.02;
    assert!(
        (1.9..2.6).contains(&gap),
        "the break is a {gap:.2} s silence between the words"
    );
    assert!(
        !callml.log().contains("<break"),
        "the SSML is not spoken as text"
    );
}

/// The recording rows: (sid, call sid, status, source, channels, duration, error code).
type RecordingRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn recording_rows(callml: &Callml) -> Vec<RecordingRow> {
    let db = callml.db();
    let mut statement = db
        .prepare(
            "SELECT sid, call_sid, status, source, channels, duration, error_code FROM recordings",
        )
        .expect("query recordings");
    statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

fn statuses(callbacks: &[RecordedRequest]) -> Vec<&str> {
    callbacks
        .iter()
        .map(|c| c.param("RecordingStatus").unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn record_ends_on_a_key_and_reports_its_recording() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = app_serving(
        "<Response><Record action=\"/recorded\" trim=\"do-not-trim\" \
         recordingStatusCallback=\"/recording-status\" \
         recordingStatusCallbackEvent=\"in-progress completed absent\"/></Response>",
    )
    .await;
    app.serve("/recorded", Reply::xml(STAY));
    app.serve("/recording-status", Reply::status(204));
    let callml = server("record-key", &app);
    let run = sipp(
        Sipp::new(&sipp_bin, "caller_presses_keys.xml", callml.sip)
            .pause(Duration::from_millis(2000)),
    )
    .await;
    run.assert_success();
    let recorded = &app.wait_for("/recorded", 1, 5 * SECOND).await[0];
    assert_eq!(recorded.param("Digits"), Some("1"), "{recorded:?}");
    let sid = recorded.param("RecordingSid").expect("RecordingSid");
    assert!(
        sid.len() == 34 && sid.starts_with("RE") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
    );
    let url = recorded.param("RecordingUrl").expect("RecordingUrl");
    assert_eq!(
        url,
        format!(
            "http://{}/2010-04-01/Accounts/{}/Recordings/{sid}",
            callml.http, callml.account_sid
        )
    );
    assert_eq!(recorded.param("RecordingDuration"), Some("2"));

    let (rate, channels, samples) = read_wav(&download(&callml, TOKEN, url).await);
    assert_eq!((rate, channels), (8000, 1));
    let seconds = samples.len() as f64 / 8000.0;
    assert!(
        (1.4..2.2).contains(&seconds),
        "about 2 s between the beep and the key, untrimmed: {seconds:.2} s"
    );
    assert_eq!(
        download(&callml, TOKEN, &format!("{url}.wav")).await.len(),
        44 + samples.len() * 2
    );

    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    let rows = recording_rows(&callml);
    assert_eq!(
        rows,
        [(
            sid.to_owned(),
            calls[0].sid.clone(),
            "completed".to_owned(),
            "RecordVerb".to_owned(),
            1,
            Some(2),
            None
        )]
    );
    let callbacks = app.wait_for("/recording-status", 2, 5 * SECOND).await;
    assert_eq!(statuses(&callbacks), ["in-progress", "completed"]);
    let completed = &callbacks[1];
    for (name, value) in [
        ("RecordingSid", sid),
        ("RecordingUrl", url),
        ("RecordingDuration", "2"),
        ("RecordingChannels", "1"),
        ("RecordingSource", "RecordVerb"),
        ("CallSid", calls[0].sid.as_str()),
        ("AccountSid", callml.account_sid.as_str()),
    ] {
        assert_eq!(completed.param(name), Some(value), "{name}");
    }
    assert!(completed.param("RecordingStartTime").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_recording_is_absent_and_the_document_goes_on() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = app_serving(
        "<Response><Record action=\"/recorded\" timeout=\"1\" \
         recordingStatusCallback=\"/recording-status\" recordingStatusCallbackEvent=\"absent\"/>\
         <Redirect>/after</Redirect></Response>",
    )
    .await;
    app.serve("/after", Reply::xml(STAY));
    app.serve("/recording-status", Reply::status(204));
    let callml = server("record-silent", &app);
    let run =
        sipp(Sipp::new(&sipp_bin, "caller_hangs_up.xml", callml.sip).pause(Duration::from_secs(4)))
            .await;
    run.assert_success();
    app.wait_for("/after", 1, 5 * SECOND).await;
    let callbacks = app.wait_for("/recording-status", 1, 5 * SECOND).await;
    assert_eq!(statuses(&callbacks), ["absent"]);
    assert_eq!(callbacks[0].param("ErrorCode"), Some("16102"));
    assert!(
        app.requests_to("/recorded").is_empty(),
        "an empty recording is not reported to the action"
    );
    let rows = recording_rows(&callml);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].2.as_str(), rows[0].6), ("absent", Some(16102)));
    let recordings = callml.data.path().join("recordings");
    let files = std::fs::read_dir(&recordings)
        .map(|dir| dir.count())
        .unwrap_or(0);
    assert_eq!(files, 0, "no file is kept for an absent recording");
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_plays_a_wav_into_record_and_the_recording_matches_it_trimmed() {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return;
    };
    let (Some(_), Some(_)) = (
        require_peer("sox", "sox"),
        require_peer("espeak-ng", "espeak-ng"),
    ) else {
        return;
    };
    let dir = TempDir::new("baresip-record");
    let speech = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&speech)
        .arg("This is callml recording a call. One, two, three, four.")
        .status()
        .expect("espeak-ng");
    assert!(status.success());
    let speech8k = dir.path().join("speech8k.wav");
    sox(&[
        speech.to_str().unwrap(),
        "-r",
        "8000",
        "-c",
        "1",
        "-b",
        "16",
        "-e",
        "signed-integer",
        speech8k.to_str().unwrap(),
    ]);
    let played = dir.path().join("played.wav");
    sox(&[
        speech8k.to_str().unwrap(),
        played.to_str().unwrap(),
        "pad",
        "1.5",
        "2",
    ]);
    let (_, _, speech_samples) = read_wav(&std::fs::read(&speech8k).unwrap());
    // The words themselves, without espeak's own silence around them.
    let first = speech_samples
        .iter()
        .position(|s| s.unsigned_abs() > 500)
        .unwrap();
    let last = speech_samples
        .iter()
        .rposition(|s| s.unsigned_abs() > 500)
        .unwrap();
    let template = &speech_samples[first..=last];

    let app = app_serving(
        "<Response><Record action=\"/recorded\" timeout=\"10\" maxLength=\"60\"/></Response>",
    )
    .await;
    app.serve("/recorded", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("record-baresip", &app);

    let phone = BaresipPhone::new(&dir.path().join("phone"), &played);
    let calling = phone.start(
        &baresip,
        Some(&format!("sip:record@{}", callml.sip)),
        Duration::from_secs(20),
    );
    tokio::task::spawn_blocking(move || calling.wait())
        .await
        .unwrap();

    let recorded = app.wait_for("/recorded", 1, 10 * SECOND).await;
    let recorded = &recorded[0];
    assert_eq!(
        recorded.param("Digits"),
        Some("hangup"),
        "baresip hung up when its file ended\n{}",
        phone.log()
    );
    let url = recorded.param("RecordingUrl").expect("RecordingUrl");
    let (rate, channels, recording) = read_wav(&download(&callml, TOKEN, url).await);
    assert_eq!((rate, channels), (8000, 1));
    let recording_seconds = recording.len() as f64 / 8000.0;
    let speech_seconds = template.len() as f64 / 8000.0;
    assert!(
        recording_seconds < speech_seconds + 0.8 && recording_seconds > speech_seconds - 0.2,
        "silence trimmed: {recording_seconds:.2} s recorded for {speech_seconds:.2} s of speech \
         between 1.5 s and 2 s of silence"
    );
    let (correlation, lag) = best_correlation(&recording, template, 0..4000);
    assert!(
        correlation >= 0.9,
        "the recording correlates with what baresip played: {correlation:.3} at lag {lag}"
    );
}
