//! callml under deliberate abuse, against the real binary on loopback: descriptors run out
//! (a lowered `RLIMIT_NOFILE`), idle SIP connections pile up, HTTP clients send slowly or
//! announce huge bodies, documents loop or `<Play>` what never ends. Each test reproduces a
//! finding of issue 19 and asserts that calls, `/healthz` and the log stay healthy.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::app::{CustomerApp, Reply};
use common::callml::Callml;
use common::rest::{TOKEN, get};
use common::rtp::{RtpCapture, packets_with_tone};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::wav_bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SECOND: Duration = Duration::from_secs(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

/// Opens a TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind a loopback source");
    socket.connect(to).await.expect("connect")
}

/// Waits (bounded) until the server closes `stream`; true when it did.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Whether the server has closed `stream` already (without waiting).
fn already_closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// One HTTP/1.1 request on a new connection; the status and the body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect HTTP");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_response(&mut stream).await
}

async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    tokio::time::timeout(10 * SECOND, stream.read_to_end(&mut response))
        .await
        .expect("a response within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn healthz(addr: SocketAddr) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// With 256 descriptors, 300 idle SIP TCP connections from ten addresses once made new calls
/// fail and `/healthz` stop answering. Now the SIP connection limit follows the descriptor
/// budget (half of what is left after the reserve: 96), the least recently active
/// connections are closed for new ones, a call over UDP completes, and `/healthz` answers.
#[tokio::test(flavor = "multi_thread")]
async fn idle_sip_connections_cannot_take_the_descriptors_of_calls_and_healthz() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml("<Response><Hangup/></Response>"));
    let callml =
        Callml::start_with_descriptor_limit("fd-sip", &["--voice-url", &app.url("/voice")], 256);
    assert!(
        callml
            .log()
            .contains("the descriptor limit (ulimit -n) lowers the connection limits"),
        "{}",
        callml.log()
    );
    let mut connections = Vec::new();
    for i in 0..300u32 {
        let source = Ipv4Addr::new(127, 0, 0, 10 + (i % 10) as u8);
        connections.push(connect_from(source, callml.sip).await);
    }
    // The oldest 204 are closed to make room for the newest 96.
    let (oldest, newest) = connections.split_at_mut(300 - 96);
    for (i, stream) in oldest.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, 10 * SECOND).await,
            "connection {i} of the oldest should have been closed\n{}",
            callml.log()
        );
    }
    let still_open = newest.iter().filter(|s| !already_closed(s)).count();
    assert_eq!(still_open, 96, "the newest connections stay");
    assert!(
        callml.open_descriptors() < 256 - 40,
        "descriptors are left for calls: {} open",
        callml.open_descriptors()
    );

    let (status, body) = http(callml.http, &healthz(callml.http)).await;
    assert_eq!(status, 200, "{body}");
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let warnings = callml.log().matches("connection limit reached").count();
    assert!(
        (1..=3).contains(&warnings),
        "the limit is logged once per interval, not per connection: {warnings} lines"
    );
}

/// One address may hold 64 SIP connections by default: its 65th closes its own least
/// recently active one, never another address's.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_hold_more_than_its_share_of_sip_connections() {
    let callml = Callml::start("fd-per-source", &[]);
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), callml.sip).await;
    let mut flood = Vec::new();
    for _ in 0..80 {
        flood.push(connect_from(Ipv4Addr::new(127, 0, 0, 3), callml.sip).await);
    }
    for (i, stream) in flood[..16].iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, 10 * SECOND).await,
            "flooding connection {i} should have been closed"
        );
    }
    assert_eq!(
        flood[16..].iter().filter(|s| !already_closed(s)).count(),
        64
    );
    assert!(
        !closed_by_server(&mut other, Duration::from_millis(200)).await,
        "the other address keeps its connection"
    );
}

/// 200 half-sent requests once held their connections for good. Now a client that does not
/// finish its headers within `--http-header-timeout` is disconnected, connections beyond
/// `--http-max-connections` answer only `/healthz` (429 with code 20429 for the rest), a body
/// announced larger than `--http-max-body` is refused before it is read (413, 20413), and one
/// that does not arrive within `--http-body-timeout` gets 408 (20408).
#[tokio::test(flavor = "multi_thread")]
async fn slow_http_clients_are_bounded_and_healthz_keeps_answering() {
    let callml = Callml::start(
        "http-slow",
        &[
            "--http-max-connections",
            "20",
            "--http-header-timeout",
            "2",
            "--http-body-timeout",
            "1",
            "--auth-token",
            common::rest::TOKEN,
        ],
    );
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(callml.http).await.expect("connect");
        stream.write_all(b"GET /heal").await.expect("write");
        slow.push(stream);
    }
    let (status, body) = http(callml.http, &healthz(callml.http)).await;
    assert_eq!(status, 200, "/healthz answers past the limit: {body}");
    let accounts = format!(
        "GET /2010-04-01/Accounts/{}.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        callml.account_sid
    );
    let (status, body) = http(callml.http, &accounts).await;
    assert_eq!(status, 429, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(json["code"], 20429);
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, 10 * SECOND).await,
            "slow client {i} is disconnected after the header timeout"
        );
    }
    // The limit is free again: the REST API answers.
    let (status, _) = http(callml.http, &accounts).await;
    assert_eq!(
        status, 401,
        "a request without credentials is answered again"
    );

    let calls = format!("/2010-04-01/Accounts/{}/Calls.json", callml.account_sid);
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            callml.account_sid,
            common::rest::TOKEN
        ))
    };
    let huge = format!(
        "POST {calls} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000000\r\n\r\n"
    );
    let mut stream = TcpStream::connect(callml.http).await.expect("connect");
    stream.write_all(huge.as_bytes()).await.expect("write");
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("20413"), "{body}");

    let partial = format!(
        "POST {calls} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nTo=sip:a"
    );
    let mut stream = TcpStream::connect(callml.http).await.expect("connect");
    stream.write_all(partial.as_bytes()).await.expect("write");
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("20408"), "{body}");
}

/// Out of descriptors, the HTTP accept loop once spun on EMFILE and wrote millions of log
/// lines. With the running server's limit lowered to a few descriptors above what it holds,
/// a burst of connections makes accept fail: the loop backs off, says so at most once per
/// interval, and `/healthz` answers once the slow clients are gone.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_accept_loop_backs_off_when_descriptors_run_out() {
    let callml = Callml::start("http-emfile", &["--http-header-timeout", "1"]);
    let held = callml.open_descriptors() as u64;
    let limit = libc::rlimit {
        rlim_cur: held + 4,
        rlim_max: held + 4,
    };
    // SAFETY: prlimit only reads `limit`; the pid is our child's.
    let set = unsafe {
        libc::prlimit(
            callml.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut stream = TcpStream::connect(callml.http).await.expect("connect");
        let _ = stream.write_all(b"GET /heal").await;
        slow.push(stream);
    }
    // Let the accept loop meet EMFILE for a while (the slow clients hold their descriptors
    // until the one-second header timeout).
    let (status, body) = http(callml.http, &healthz(callml.http)).await;
    assert_eq!(status, 200, "{body}");
    let log = callml.log();
    let warnings = log.matches("accept failed: out of descriptors").count();
    assert!(
        (1..=3).contains(&warnings),
        "EMFILE is met and logged once per interval, not per attempt: {warnings} lines\n{log}"
    );
    assert!(log.lines().count() < 200, "no log flood: {log}");
}

/// The most requests the app got at `path` within any one second.
fn busiest_second(app: &CustomerApp, path: &str) -> usize {
    let times: Vec<_> = app
        .requests_to(path)
        .iter()
        .map(|r| r.received_at)
        .collect();
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && t.duration_since(*start) < SECOND)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// `<Redirect>` to itself on an unanswered call once fetched 5,500 documents a second,
/// forever. Now fetches keep to 10 a second after a burst of 10, and after 50 in a row with
/// nothing played the call fails with Twilio's 14106 (the caller is answered, hears that an
/// application error occurred, and callml hangs up).
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_loop_is_paced_then_stopped_with_14106() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/loop",
        Reply::xml(format!(
            "<Response><Redirect>{}</Redirect></Response>",
            app.url("/loop")
        )),
    );
    let callml = Callml::start("loop-redirect", &["--voice-url", &app.url("/loop")]);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    assert_eq!(
        app.requests_to("/loop").len(),
        51,
        "the voice URL and 50 redirects"
    );
    let busiest = busiest_second(&app, "/loop");
    assert!(busiest <= 20, "{busiest} fetches in one second");
    let call = &callml.wait_for_ended_calls(1, 10 * SECOND)[0];
    assert_eq!(call.status, "completed");
    assert!(
        call.answered,
        "answered to hear the application error: {call:?}"
    );
    assert_eq!(call.error_code, Some(14106));
    let skipped = callml.log().matches("document could not be loaded").count();
    assert!(skipped <= 1, "no warning per fetch: {skipped}");
}

/// The common hold loop with a broken URL, `<Play>BROKEN</Play><Redirect>SELF</Redirect>`,
/// once fetched 2,400 documents a second. Now each failed `<Play>` makes the next wait longer
/// (0.1 s doubling to 5 s), so in six seconds (the call's `--max-call-duration`, counted
/// from the INVITE) the app sees a handful of requests; each failure is a notification with
/// its code (11200 for the 404), and the log says so once per interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_hold_loop_with_a_broken_play_backs_off() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/hold",
        Reply::xml(format!(
            "<Response><Play>{}</Play><Redirect>{}</Redirect></Response>",
            app.url("/broken.wav"),
            app.url("/hold")
        )),
    );
    app.serve("/broken.wav", Reply::status(404));
    let callml = Callml::start(
        "loop-broken-play",
        &["--voice-url", &app.url("/hold"), "--max-call-duration", "6"],
    );
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let fetches = app.requests_to("/hold").len();
    let plays = app.requests_to("/broken.wav").len();
    assert!((3..=12).contains(&fetches), "{fetches} documents in 6 s");
    assert!((3..=12).contains(&plays), "{plays} plays in 6 s");
    let call = &callml.wait_for_ended_calls(1, 10 * SECOND)[0];
    assert_eq!(call.error_code, Some(32015), "ended by --max-call-duration");
    let codes: Vec<i64> = callml
        .db()
        .prepare("SELECT error_code FROM notifications WHERE call_sid = ?1")
        .unwrap()
        .query_map([&call.sid], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == 11200),
        "{codes:?}"
    );
    let warnings = callml.log().matches("prompt skipped").count();
    assert!(warnings <= 2, "{warnings} warning lines");
}

/// `<Play loop="0">` of a file that is not audio once failed 2,600 times a second. Now the
/// failures back off like any failed prompt: a handful in six seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_endless_play_of_a_file_that_is_not_audio_backs_off() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            "<Response><Play loop=\"0\">{}</Play></Response>",
            app.url("/page.html")
        )),
    );
    app.serve(
        "/page.html",
        Reply::binary("text/html", b"<html>not audio</html>".to_vec()),
    );
    let callml = Callml::start(
        "loop-not-audio",
        &[
            "--voice-url",
            &app.url("/voice"),
            "--max-call-duration",
            "6",
        ],
    );
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let call = &callml.wait_for_ended_calls(1, 10 * SECOND)[0];
    let failures: i64 = callml
        .db()
        .query_row(
            "SELECT COUNT(*) FROM notifications WHERE call_sid = ?1",
            [&call.sid],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (3..=12).contains(&failures),
        "{failures} failed plays in 6 s"
    );
}

/// A `<Play>` whose URL answers 404 and one that answers an HTML page left no error code in
/// the call's record. Now each is a notification of the call with Twilio's code — 11200 for
/// the 404, 12300 "Invalid Content-Type" for the page — naming the URL and the reason, listed
/// by `Calls/{Sid}/Notifications.json`, and the call goes on to the next verb (the caller
/// hears the tone of the third `<Play>`).
#[tokio::test(flavor = "multi_thread")]
async fn failed_plays_are_notifications_with_their_codes_and_the_call_goes_on() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            "<Response><Play>{}</Play><Play>{}</Play><Play>{}</Play></Response>",
            app.url("/missing.wav"),
            app.url("/page.html"),
            app.url("/tone.wav")
        )),
    );
    app.serve("/missing.wav", Reply::status(404));
    app.serve(
        "/page.html",
        Reply::binary(
            "text/html; charset=utf-8",
            b"<html>hold music</html>".to_vec(),
        ),
    );
    app.serve(
        "/tone.wav",
        Reply::binary("audio/wav", tone_wav(440.0, 1.0)),
    );
    let callml = Callml::start(
        "play-failures",
        &["--voice-url", &app.url("/voice"), "--auth-token", TOKEN],
    );
    let capture = RtpCapture::start(Duration::from_millis(600), 20 * SECOND);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", capture.port))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let heard = packets_with_tone(&capture.finish(), 440.0);
    assert!(
        (45..=51).contains(&heard),
        "1 s of 440 Hz after the failures: {heard} frames"
    );
    let call = &callml.wait_for_ended_calls(1, 10 * SECOND)[0];
    assert_eq!(call.status, "completed");

    let (status, body) = get(&callml, &format!("Calls/{}/Notifications.json", call.sid)).await;
    assert_eq!(status, 200, "{body}");
    let mut notes: Vec<&serde_json::Value> = body["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .collect();
    notes.sort_by_key(|note| note["error_code"].as_str().unwrap_or_default().to_owned());
    assert_eq!(notes.len(), 2, "{body}");
    let expected = [
        ("11200", app.url("/missing.wav"), "HTTP 404"),
        ("12300", app.url("/page.html"), "Content-Type text/html"),
    ];
    for (note, (code, url, reason)) in notes.iter().zip(expected) {
        assert_eq!(note["error_code"], code, "{note}");
        assert_eq!(note["call_sid"], call.sid.as_str(), "{note}");
        assert_eq!(note["request_url"], app.url("/voice").as_str(), "{note}");
        let text = note["message_text"].as_str().unwrap_or_default();
        assert!(text.contains(&url) && text.contains(reason), "{text}");
    }
    let log = callml.log();
    assert!(
        log.contains("prompt skipped") && log.contains("/missing.wav"),
        "the failure is logged: {log}"
    );
}

/// A 16-bit mono 8 kHz WAV of a sine tone.
fn tone_wav(frequency: f64, seconds: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..(8000.0 * seconds) as usize)
        .map(|i| (8000.0 * (std::f64::consts::TAU * frequency * i as f64 / 8000.0).sin()) as i16)
        .collect();
    wav_bytes(&samples, 8000)
}

/// An HTTP server of a WAV that never ends: 8 kHz 16-bit mono 440 Hz, its RIFF and data sizes
/// `2^32 - 1` (as ffmpeg writes to a pipe), sent chunked as fast as each connection takes it.
/// Counts the bytes it sent.
struct EndlessWav {
    url: String,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl EndlessWav {
    async fn start() -> EndlessWav {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/endless.wav", listener.local_addr().unwrap());
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, counter.clone()));
            }
        });
        EndlessWav { url, sent, server }
    }

    async fn serve(mut stream: TcpStream, sent: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let mut header = wav_bytes(&[], 8000)[..44].to_vec();
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        header[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let mut chunk = header;
        let mut position = 0u64;
        loop {
            // 0.1 s of tone per chunk, the phase running on.
            for _ in 0..800 {
                let phase = std::f64::consts::TAU * 440.0 * position as f64 / 8000.0;
                chunk.extend_from_slice(&((8000.0 * phase.sin()) as i16).to_le_bytes());
                position += 1;
            }
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                std::mem::take(&mut chunk),
                b"\r\n".to_vec(),
            ]
            .concat();
            if stream.write_all(&framed).await.is_err() {
                return;
            }
            sent.fetch_add(framed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for EndlessWav {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// callml's resident memory now, in KB (`VmRSS` of /proc/PID/status).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Each `<Play>` held its whole download in memory (up to 50 MB): ten endless streams took
/// RSS to 380 MB, and each failed at the limit without a sound. Now ten calls each play an
/// endless WAV served chunked as fast as the connection takes it: the callers hear the tone
/// as it comes, the server can send only what the calls play plus what buffers hold (the
/// body is read only as the 2 s ring of decoded audio drains), and callml's RSS stays
/// bounded. The figures are printed for the closing note.
#[tokio::test(flavor = "multi_thread")]
async fn ten_endless_plays_are_heard_as_they_come_in_bounded_memory() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let endless = EndlessWav::start().await;
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!("<Response><Play>{}</Play></Response>", endless.url)),
    );
    let callml = Callml::start("endless-play", &["--voice-url", &app.url("/voice")]);
    let pid = callml.pid();
    let before = rss_kb(pid);
    let capture = RtpCapture::start(Duration::from_millis(600), 30 * SECOND);
    let calls = spawn(
        Sipp::new(&sipp, "caller_hangs_up.xml", callml.sip)
            .calls(10, 10)
            .pause(6 * SECOND)
            .key("rtp_port", capture.port),
    );
    let mut peak = before;
    let mut samples = Vec::new();
    while !calls.is_finished() {
        let now = rss_kb(pid);
        peak = peak.max(now);
        samples.push(now);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    calls.await.unwrap().assert_success_with_log(&callml.log());
    let heard = packets_with_tone(&capture.finish(), 440.0);
    let sent = endless.sent();
    eprintln!(
        "endless plays: RSS before {} KB, peak {peak} KB (+{} KB for 10 streams), samples {samples:?}; \
         {sent} bytes served to 10 calls of 6 s; {heard} frames of 440 Hz heard",
        before,
        peak - before
    );
    assert!(
        heard >= 10 * 4 * 50,
        "ten callers hear the stream for most of their 6 s: {heard} frames"
    );
    assert!(
        peak - before < 64 * 1024,
        "RSS grew by {} KB for ten endless streams",
        peak - before
    );
    assert!(
        sent < 10 * 16 * 1024 * 1024,
        "the body is read only as it plays: {sent} bytes sent"
    );
    let calls = callml.wait_for_ended_calls(10, 10 * SECOND);
    assert!(
        calls.iter().all(|call| call.status == "completed"),
        "{calls:?}"
    );
    let failures: i64 = callml
        .db()
        .query_row("SELECT COUNT(*) FROM notifications", [], |r| r.get(0))
        .unwrap();
    assert_eq!(failures, 0, "no <Play> failed");
}

/// The `.part` file (or file) of the recording being written, and its length.
fn recording_on_disk(callml: &Callml) -> Option<(std::path::PathBuf, u64)> {
    let dir = callml.data.path().join("recordings");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let length = entry.metadata().ok()?.len();
        Some((entry.path(), length))
    })
}

/// After kill -9 during `<Record>`, the recording stayed `in-progress` forever with a 404
/// media URL, though its audio was on disk as `.wav.part` with an unfinished header. Now the
/// next start finishes it: the WAV gets its header and its name, the row becomes `completed`
/// with the real duration, its `completed` status callback is sent; the orphaned call, marked
/// `failed`, gets its final status callback flagged `Recovered=true`; a further restart
/// changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_recording_cut_by_kill_9_is_finished_at_the_next_start() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            "<Response><Record maxLength=\"60\" timeout=\"0\" trim=\"trim-silence\" \
             recordingStatusCallback=\"{}\" \
             recordingStatusCallbackEvent=\"in-progress completed absent\"/></Response>",
            app.url("/recording")
        )),
    );
    app.serve("/recording", Reply::status(204));
    app.serve("/status", Reply::status(204));
    let mut callml = Callml::start(
        "kill-record",
        &[
            "--voice-url",
            &app.url("/voice"),
            "--status-callback",
            &app.url("/status"),
        ],
    );
    let sip = callml.sip;
    let caller = tokio::task::spawn_blocking(move || {
        Sipp::new(&sipp, "callml_hangs_up.xml", sip)
            .timeout(Duration::from_secs(8))
            .run()
    });
    let started = &app.wait_for("/recording", 1, 10 * SECOND).await[0];
    assert_eq!(started.param("RecordingStatus"), Some("in-progress"));
    let sid = started
        .param("RecordingSid")
        .expect("RecordingSid")
        .to_owned();
    // Wait (bounded) until at least 1.5 s of audio is on disk.
    let deadline = std::time::Instant::now() + 10 * SECOND;
    let (part, _) = loop {
        match recording_on_disk(&callml) {
            Some((path, length)) if length >= 44 + 24_000 => break (path, length),
            _ if std::time::Instant::now() > deadline => panic!("no audio written"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(part.to_string_lossy().ends_with(".wav.part"), "{part:?}");
    callml.signal_and_wait("KILL", 5 * SECOND);
    let _ = caller.await;
    let data = std::mem::replace(
        &mut callml.data,
        common::callml::TempDir::new("kill-record-unused"),
    );

    let before_restart = app.requests_to("/status").len();
    assert!(
        app.requests_to("/status")
            .iter()
            .all(|r| r.param("CallStatus") != Some("completed")),
        "no final callback before the restart"
    );
    let mut restarted = Callml::start_in(data, &[]);
    let statuses = app
        .wait_for("/status", before_restart + 1, 20 * SECOND)
        .await;
    let last = statuses.last().unwrap();
    assert_eq!(last.param("CallStatus"), Some("failed"));
    assert_eq!(last.param("Recovered"), Some("true"));
    assert_eq!(last.param("CallSid"), started.param("CallSid"));
    let callbacks = app.wait_for("/recording", 2, 20 * SECOND).await;
    let completed = &callbacks[1];
    assert_eq!(completed.param("RecordingStatus"), Some("completed"));
    assert_eq!(completed.param("RecordingSid"), Some(sid.as_str()));
    let duration: u32 = completed
        .param("RecordingDuration")
        .and_then(|d| d.parse().ok())
        .expect("RecordingDuration");
    assert!(duration >= 1, "{duration} s");
    let url = completed.param("RecordingUrl").expect("RecordingUrl");
    assert!(
        url.starts_with(&format!("http://{}/", restarted.http)),
        "{url}"
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let wav = reqwest::get(format!("{url}.wav"))
        .await
        .expect("GET the recording");
    assert_eq!(wav.status().as_u16(), 200);
    let wav = wav.bytes().await.expect("WAV body");
    let data_bytes = u32::from_le_bytes(wav[40..44].try_into().unwrap()) as usize;
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(
        data_bytes,
        wav.len() - 44,
        "the header says what the file holds"
    );
    assert_eq!(
        ((data_bytes as u32 + 8_000) / 16_000),
        duration,
        "the duration is the audio's"
    );
    let (status, seconds): (String, Option<u32>) = restarted
        .db()
        .query_row(
            "SELECT status, duration FROM recordings WHERE sid = ?1",
            [&sid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), seconds), ("completed", Some(duration)));

    // Once finished, it stays finished: a further restart sends nothing more.
    restarted.signal_and_wait("TERM", 10 * SECOND);
    let data = std::mem::replace(
        &mut restarted.data,
        common::callml::TempDir::new("kill-record-unused-2"),
    );
    let again = Callml::start_in(data, &[]);
    let (status, _) = http(again.http, &healthz(again.http)).await;
    assert_eq!(status, 200);
    assert!(
        !again
            .log()
            .contains("recordings left in progress by a previous run")
    );
    assert_eq!(app.requests_to("/recording").len(), 2);
    assert_eq!(
        app.requests_to("/status").len(),
        before_restart + 1,
        "the final callback is sent once"
    );
}

/// The first message of `trace` (sipp's `-trace_msg`) whose start line begins with `start`.
fn traced_message<'a>(trace: &'a str, start: &str) -> &'a str {
    let at = trace
        .find(&format!("\n{start}"))
        .unwrap_or_else(|| panic!("no {start:?} in the trace:\n{trace}"));
    let message = &trace[at + 1..];
    let end = message.find("\n\n").unwrap_or(message.len());
    &message[..end]
}

/// REST text that reaches the INVITE is checked where it enters. A `From` or `CallerId` with a
/// space, `"`, `<`, `@` or a line break once got 201 and a call that never went out; inline
/// `Twiml` that does not parse rang the callee before failing; `?X-...` headers in a SIP `To`
/// stayed in the Request-URI. Now the first two are 400 (21212, 12100) and nothing is rung,
/// and the headers arrive as headers (RFC 3261 §19.1.5): the sipp callee sees exactly one
/// INVITE, the valid one.
#[tokio::test(flavor = "multi_thread")]
async fn rest_text_that_reaches_the_invite_is_checked_where_it_enters() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "uas_answers_then_hangs_up.xml")
        .pause(SECOND)
        .timeout(30 * SECOND);
    let to = format!("sip:bob@{};transport=udp", callee.addr());
    let answered = spawn(callee);
    let callml = Callml::start("rest-edge", &["--auth-token", common::rest::TOKEN]);
    let calls = "Calls.json";
    let pause = r#"<Response><Pause length="10"/></Response>"#;
    for from in [
        "alice smith",
        "\"alice\"",
        "<sip:alice@example.com>",
        "alice@example.com",
        "alice\r\nX-Injected: 1",
    ] {
        for form in [
            [("To", to.as_str()), ("From", from), ("Twiml", pause)].to_vec(),
            [
                ("To", to.as_str()),
                ("From", "alice"),
                ("CallerId", from),
                ("Twiml", pause),
            ]
            .to_vec(),
        ] {
            let (status, body) = common::rest::post(&callml, calls, &form).await;
            assert_eq!((status, &body["code"]), (400, &21212.into()), "{form:?}");
        }
    }
    for twiml in [
        "<Response><Play>",
        "<Respond/>",
        r#"<Response><Dial><Sip>sip:a@b?X-A=1%0D%0AVia:%20x</Sip></Dial></Response>"#,
    ] {
        let form = [("To", to.as_str()), ("From", "alice"), ("Twiml", twiml)];
        let (status, body) = common::rest::post(&callml, calls, &form).await;
        assert_eq!((status, &body["code"]), (400, &12100.into()), "{twiml}");
        assert!(body["message"].as_str().unwrap().contains("1:"), "{body}");
    }
    let not_allowed = format!("{to}?Via=SIP/2.0/UDP%20evil");
    let form = [
        ("To", not_allowed.as_str()),
        ("From", "alice"),
        ("Twiml", pause),
    ];
    let (status, body) = common::rest::post(&callml, calls, &form).await;
    assert_eq!((status, &body["code"]), (400, &21211.into()), "{body}");

    let with_header = format!("{to}?X-Customer=42");
    let form = [
        ("To", with_header.as_str()),
        ("From", "alice"),
        ("Twiml", pause),
    ];
    let (status, body) = common::rest::post(&callml, calls, &form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["to"], format!("sip:bob@{}", common_addr(&to)));
    let run = answered.await.unwrap();
    run.assert_success_with_log(&callml.log());
    let invites = run
        .start_lines()
        .into_iter()
        .filter(|l| l.starts_with("INVITE "))
        .count();
    assert_eq!(invites, 1, "only the valid call rings");
    let invite = traced_message(&run.messages, "INVITE ");
    let request_uri = invite.lines().next().unwrap();
    assert!(!request_uri.contains('?'), "{request_uri}");
    assert!(invite.contains("\nX-Customer: 42"), "{invite}");
    let from = invite
        .lines()
        .find(|l| l.starts_with("From:"))
        .unwrap_or_default();
    assert!(from.contains("<sip:alice@"), "{from}");
    assert_eq!(callml.calls().len(), 1, "no record for a refused call");
}

/// `host:port` of a `sip:user@host:port;params` URI.
fn common_addr(uri: &str) -> &str {
    let after = uri.split_once('@').map_or(uri, |(_, a)| a);
    after.split(';').next().unwrap_or(after)
}

/// A SIP-I/SIP-T carrier's INVITE carries its offer in a `multipart/mixed` body next to ISUP
/// (RFC 5621). Such calls were answered 415; now the `application/sdp` part is the offer, the
/// ISUP part is ignored, and the caller is answered and hears the document's audio.
#[tokio::test(flavor = "multi_thread")]
async fn a_sip_i_invite_with_sdp_and_isup_is_answered_with_audio() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Play>/tone.wav</Play><Hangup/></Response>"),
    );
    let tone: Vec<i16> = (0..8000)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    app.serve(
        "/tone.wav",
        Reply::binary("audio/wav", common::wav::wav_bytes(&tone, 8000)),
    );
    let callml = Callml::start("sip-i", &["--voice-url", &app.url("/voice")]);
    let capture = common::rtp::RtpCapture::start(Duration::from_millis(600), 30 * SECOND);
    spawn(Sipp::new(&sipp, "caller_sends_sip_i.xml", callml.sip).key("rtp_port", capture.port))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let packets = capture.finish();
    let tone_packets = common::rtp::packets_with_tone(&packets, 440.0);
    assert!(
        (45..=51).contains(&tone_packets),
        "1 s of 440 Hz is 50 packets, got {tone_packets}"
    );
    let call = &callml.wait_for_ended_calls(1, 10 * SECOND)[0];
    assert_eq!(call.status, "completed");
}

/// Two nodes share one PostgreSQL store; node A is killed (-9) during a live call and never
/// comes back. Node B sees A's heartbeat go stale, marks the call `failed` and sends the final
/// status callback it owed (`Recovered=true`), as A itself would have at its next start.
#[tokio::test(flavor = "multi_thread")]
async fn a_survivor_node_finishes_the_live_calls_of_a_node_killed_during_them() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let url = common::postgres::cluster().database("survivor");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"60\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let (voice, status) = (app.url("/voice"), app.url("/status"));
    let node = |id: &'static str| {
        Callml::start(
            id,
            &[
                "--store",
                &url,
                "--node-id",
                id,
                "--voice-url",
                &voice,
                "--status-callback",
                &status,
            ],
        )
    };
    let mut node_a = node("node-a");
    let node_b = node("node-b");
    let caller = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", node_a.sip).timeout(30 * SECOND));
    let mut seen = 1;
    let answered = loop {
        let statuses = app.wait_for("/status", seen, 10 * SECOND).await;
        if let Some(answered) = statuses
            .iter()
            .find(|r| r.param("CallStatus") == Some("in-progress"))
        {
            break answered.clone();
        }
        seen += 1;
    };
    node_a.signal_and_wait("KILL", 5 * SECOND);
    let before = app.requests_to("/status").len();

    let statuses = app.wait_for("/status", before + 1, 40 * SECOND).await;
    let last = statuses.last().unwrap();
    assert_eq!(last.param("CallSid"), answered.param("CallSid"));
    assert_eq!(last.param("CallStatus"), Some("failed"));
    assert_eq!(last.param("Recovered"), Some("true"));
    assert!(
        node_b.log().contains("a node stopped heartbeating"),
        "{}",
        node_b.log()
    );
    caller.abort();
}

/// `--store` naming a PostgreSQL that is not there: `serve` stops at once with one line that
/// names the store and the reason, and exit code 1 (no retry loop, no half-started node).
#[test]
fn an_unreachable_store_at_start_is_one_line_and_exit_code_1() {
    let port = common::sipp::free_tcp_port();
    let url = format!("postgres://callml@127.0.0.1:{port}/callml");
    let data = common::callml::TempDir::new("store-down");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_callml"))
        .args(["serve", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--store", &url, "--data-dir"])
        .arg(data.path())
        .env_remove("CALLML_CONFIG")
        .output()
        .expect("run callml");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.starts_with("callml: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains(&url), "{line}");
    assert!(line.contains("refused"), "{line}");
}
