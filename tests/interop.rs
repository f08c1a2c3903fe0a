//! The interop matrix: real softphones against the real `callml serve` binary over loopback,
//! one test per cell (README's "Interop matrix" lists them). Each asserts what the PEER saw:
//! the call established in its log or events, the prompt heard and measured on its own
//! recording (the 440 Hz tone's share of each 20 ms frame), the codec its log says was
//! negotiated, the DTMF it sent as callml reported it to the customer app (`Digits` at the
//! `<Gather>` action), and who hung up.
//!
//! Peers: baresip (Debian `baresip`, driven through its `ctrl_tcp` module) as caller over UDP
//! and TCP with RFC 4733 digits, with G.722 and with Opus, and as callee holding and resuming;
//! linphonec (Debian `linphone-cli`) as caller over UDP with digits. baresip over TLS and
//! TLS+SRTP is in `tests/sip_engine.rs`, sipp and kamailio there and in `tests/sip_calls.rs`.

mod common;

use std::time::Duration;

use common::app::{CustomerApp, Reply};
use common::baresip::{BaresipPhone, Control};
use common::callml::{Callml, TempDir};
use common::rest::{TOKEN, post};
use common::rtp::tone_ratio;
use common::sipp::require_peer;
use common::wav::{read_wav, wav_bytes};

const SECOND: Duration = Duration::from_secs(1);

/// One second of a 440 Hz tone, 16-bit mono 8 kHz: the prompt every test plays.
fn tone_wav() -> Vec<u8> {
    let tone: Vec<i16> = (0..8000)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    wav_bytes(&tone, 8000)
}

/// A 16-bit mono 8 kHz WAV of silence: the phones' microphone.
fn silence_wav(seconds: f64) -> Vec<u8> {
    wav_bytes(&vec![0; (8000.0 * seconds) as usize], 8000)
}

/// How many 20 ms frames of the WAV recording `heard` are mostly the 440 Hz tone, of how many.
fn toned_frames(heard: &[u8]) -> (usize, usize) {
    let (rate, channels, samples) = read_wav(heard);
    let frame = (rate / 50) as usize * usize::from(channels.max(1));
    let mono: Vec<i16> = samples
        .iter()
        .step_by(usize::from(channels.max(1)))
        .copied()
        .collect();
    let frame = frame / usize::from(channels.max(1));
    let toned = mono
        .chunks(frame)
        .filter(|chunk| tone_ratio(chunk, 440.0, f64::from(rate)) > 0.8)
        .count();
    (toned, mono.len() / frame)
}

/// The customer app for a caller: `/voice` plays the tone and moves on to `/gather`, which
/// plays it again inside a `<Gather numDigits=3>`; the digits go to `/digits`, which hangs up.
/// The test sends its digits once `/gather` was fetched (the first tone fully played).
async fn gathering_app() -> CustomerApp {
    let app = CustomerApp::start().await;
    app.serve("/tone.wav", Reply::binary("audio/wav", tone_wav()));
    app.serve(
        "/voice",
        Reply::xml("<Response><Play>/tone.wav</Play><Redirect>/gather</Redirect></Response>"),
    );
    app.serve(
        "/gather",
        Reply::xml(
            "<Response><Gather action=\"/digits\" numDigits=\"3\" timeout=\"10\">\
             <Play loop=\"10\">/tone.wav</Play></Gather><Hangup/></Response>",
        ),
    );
    app.serve("/digits", Reply::xml("<Response><Hangup/></Response>"));
    app
}

/// baresip, configured by `setup`, calls `uri_of(callml)` and sends `123` as RFC 4733 events
/// once the first tone has played; asserts the phone established the call, heard the tone,
/// and was hung up on by callml after the app got `Digits=123`. Returns the phone's log.
async fn baresip_calls_and_sends_digits(
    name: &str,
    setup: impl FnOnce(BaresipPhone) -> BaresipPhone,
    uri_of: impl FnOnce(&Callml) -> String,
) -> String {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return String::new();
    };
    let dir = TempDir::new(name);
    let app = gathering_app().await;
    let voice = app.url("/voice");
    let callml = Callml::start(name, &["--voice-url", &voice]);
    let wav = dir.path().join("silence.wav");
    std::fs::write(&wav, silence_wav(30.0)).unwrap();
    let phone = setup(BaresipPhone::new(&dir.path().join("phone"), &wav).with_control());
    let running = phone.start(&baresip, None, 30 * SECOND);
    let mut control = Control::connect(&phone).await;
    let dialled = control.command("dial", &uri_of(&callml)).await;
    assert_eq!(dialled["ok"], true, "baresip dialled: {dialled}");
    control.event("CALL_ESTABLISHED", 10 * SECOND).await;
    app.wait_for("/gather", 1, 10 * SECOND).await;
    let sent = control.command("sndcode", "123").await;
    assert_eq!(sent["ok"], true, "baresip sent the digits: {sent}");
    let action = app.wait_for("/digits", 1, 10 * SECOND).await;
    assert_eq!(action[0].param("Digits"), Some("123"), "{:?}", action[0]);
    let closed = control.event("CALL_CLOSED", 10 * SECOND).await;
    control.command("quit", "").await;
    tokio::task::spawn_blocking(move || running.wait())
        .await
        .unwrap();
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(
        calls[0].status,
        "completed",
        "{:?}\n{}",
        calls[0],
        callml.log()
    );
    let seen = phone.log();
    assert!(seen.contains("Call established"), "{seen}");
    // callml hung up (the app's <Hangup/>): baresip reports the BYE it received.
    assert_eq!(
        closed["param"], "Connection reset by peer",
        "callml hung up: {closed}\n{seen}"
    );
    let (toned, frames) = toned_frames(&phone.heard());
    assert!(
        toned >= 40,
        "the phone heard the 440 Hz prompt: {toned} of {frames} frames\n{seen}"
    );
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_over_udp_hears_the_prompt_and_sends_rfc4733_digits() {
    baresip_calls_and_sends_digits(
        "interop-baresip-udp",
        |phone| phone,
        |callml| format!("sip:hello@{};transport=udp", callml.sip),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_over_tcp_hears_the_prompt_and_sends_rfc4733_digits() {
    let seen =
        baresip_calls_and_sends_digits("interop-baresip-tcp", BaresipPhone::over_tcp, |callml| {
            format!("sip:hello@{};transport=tcp", callml.sip)
        })
        .await;
    assert!(seen.contains("tcp"), "{seen}");
}
