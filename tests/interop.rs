//! The interop matrix: real softphones against the real `callml serve` binary over loopback,
//! one test per cell (README's "Interop matrix" lists them). Each asserts what the PEER saw:
//! the call established in its log or events, the prompt heard and measured on its own
//! recording (the 440 Hz tone's share of each 20 ms frame), the codec its log says was
//! negotiated, the DTMF it sent as callml reported it to the customer app (`Digits` at the
//! `<Gather>` action), and who hung up.
//!
//! Peers: baresip (Debian `baresip`, driven through its `ctrl_tcp` module) as caller over UDP
//! with RFC 4733 digits, over TCP hanging up itself, with G.722 and with Opus (digits), and as
//! callee holding and resuming;
//! linphonec (Debian `linphone-cli`, typed at on its stdin) as caller over UDP and over TLS
//! with digits, and holding and resuming; pjsua (pjproject's `pjsua2` from PyPI, in the
//! `.venv-pjsua` virtualenv `scripts/test` makes) as caller over UDP with digits. baresip over TLS and
//! TLS+SRTP is in `tests/sip_engine.rs`, sipp and kamailio there and in `tests/sip_calls.rs`.

mod common;

use std::time::Duration;

use common::app::{CustomerApp, Reply};
use common::baresip::{BaresipPhone, Control};
use common::callml::{Callml, TempDir};
use common::linphone::Linphone;
use common::python::pjsua_venv;
use common::rest::{TOKEN, post};
use common::rtp::tone_ratio;
use common::sipp::require_peer;
use common::tls::self_signed_cn_only;
use common::wav::{read_wav, wav_bytes};

const SECOND: Duration = Duration::from_secs(1);

/// One second of a 440 Hz tone, 16-bit mono 8 kHz: the prompt every test plays.
fn tone_wav() -> Vec<u8> {
    tone_at(440.0)
}

/// 20 ms frames of a tone a phone must have heard: half of the 1 s prompt (a phone starts
/// recording a little after the call is up, and its keys cut the prompt played again in the
/// `<Gather>` short).
const HEARD_FRAMES: usize = 25;

/// One second of a tone at `frequency`, 16-bit mono 8 kHz.
fn tone_at(frequency: f64) -> Vec<u8> {
    let tone: Vec<i16> = (0..8000)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    wav_bytes(&tone, 8000)
}

/// A 16-bit mono 8 kHz WAV of silence: the phones' microphone.
fn silence_wav(seconds: f64) -> Vec<u8> {
    wav_bytes(&vec![0; (8000.0 * seconds) as usize], 8000)
}

/// How many 20 ms frames of the WAV recording `heard` (its first channel, at its rate) are
/// mostly a tone at `frequency`, of how many.
fn frames_with_tone(heard: &[u8], frequency: f64) -> (usize, usize) {
    let (rate, channels, samples) = read_wav(heard);
    let mono: Vec<i16> = samples
        .iter()
        .step_by(usize::from(channels.max(1)))
        .copied()
        .collect();
    let frame = (rate / 50) as usize;
    let toned = mono
        .chunks(frame)
        .filter(|chunk| tone_ratio(chunk, frequency, f64::from(rate)) > 0.8)
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

/// What the calling phone does once the first tone has played.
#[derive(PartialEq)]
enum Then {
    /// Sends `123` as RFC 4733 events: the app gets `Digits=123` and callml hangs up.
    SendsDigits,
    /// Hangs up.
    HangsUp,
}

/// baresip, configured by `setup`, calls `uri_of(callml)` and, once the first tone has
/// played, does `then`; asserts the phone established the call, heard the tone, and who hung
/// up. Returns the phone's and callml's logs; `None` when baresip is missing and the test is
/// skipped on purpose.
async fn baresip_calls(
    name: &str,
    setup: impl FnOnce(BaresipPhone) -> BaresipPhone,
    uri_of: impl FnOnce(&Callml) -> String,
    then: Then,
) -> Option<(String, String)> {
    let baresip = require_peer("baresip", "baresip")?;
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
    if then == Then::SendsDigits {
        let sent = control.command("sndcode", "123").await;
        assert_eq!(sent["ok"], true, "baresip sent the digits: {sent}");
        let action = app.wait_for("/digits", 1, 10 * SECOND).await;
        assert_eq!(action[0].param("Digits"), Some("123"), "{:?}", action[0]);
    } else {
        let hung_up = control.command("hangup", "").await;
        assert_eq!(hung_up["ok"], true, "baresip hung up: {hung_up}");
    }
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
    // Who hung up, as baresip tells it: a BYE it received, or its own.
    let reason = match then {
        Then::SendsDigits => "Connection reset by peer",
        Then::HangsUp => "Connection reset by user",
    };
    assert_eq!(closed["param"], reason, "{closed}\n{seen}");
    let (toned, frames) = frames_with_tone(&phone.heard(), 440.0);
    assert!(
        toned >= HEARD_FRAMES,
        "the phone heard the 440 Hz prompt: {toned} of {frames} frames\n{seen}"
    );
    Some((seen, callml.log()))
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_over_udp_hears_the_prompt_and_sends_rfc4733_digits() {
    baresip_calls(
        "interop-baresip-udp",
        |phone| phone,
        |callml| format!("sip:hello@{};transport=udp", callml.sip),
        Then::SendsDigits,
    )
    .await;
}

/// baresip calls over TCP, hears the prompt and hangs up itself.
#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_over_tcp_hears_the_prompt_and_hangs_up() {
    let Some((_, log)) = baresip_calls(
        "interop-baresip-tcp",
        BaresipPhone::over_tcp,
        |callml| format!("sip:hello@{};transport=tcp", callml.sip),
        Then::HangsUp,
    )
    .await
    else {
        return;
    };
    assert!(
        log.contains("SIP connection opened peer=127.0.0.1") && log.contains("transport=TCP"),
        "the call came over TCP:\n{log}"
    );
}

/// baresip offering only `codec` (its `module`, baresip's `codec` line) calls over UDP and
/// sends digits; its log must show `decoder`, the codec callml answered.
async fn baresip_calls_with_only(name: &str, module: &str, codec: &str, decoder: &str) {
    let Some((seen, _)) = baresip_calls(
        name,
        |phone| phone.with_only_codec(module, codec),
        |callml| format!("sip:hello@{};transport=udp", callml.sip),
        Then::SendsDigits,
    )
    .await
    else {
        return;
    };
    assert!(
        seen.contains(&format!("Set audio decoder: {decoder}")),
        "callml answered {decoder}:\n{seen}"
    );
}

/// baresip with only G.722 calls over UDP: its log shows callml answered G.722 at 16 kHz, it
/// heard the prompt on its 16 kHz recording, and its digits (telephone-event/8000, G.722's RTP
/// clock) arrive.
#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_with_g722_hears_the_prompt_and_sends_digits() {
    baresip_calls_with_only(
        "interop-baresip-g722",
        "g722.so",
        "G722/16000/1",
        "G722 16000Hz",
    )
    .await;
}

/// baresip with only Opus calls over UDP: its log shows callml answered Opus (48 kHz, as RFC
/// 7587 writes it), it heard the prompt, and its digits arrive, though it offers
/// `telephone-event/8000` beside Opus/48000 (callml answers the event at the rate offered).
#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_with_opus_hears_the_prompt_and_sends_digits() {
    baresip_calls_with_only(
        "interop-baresip-opus",
        "opus.so",
        "opus/48000/2",
        "opus 48000Hz",
    )
    .await;
}

/// callml calls baresip (REST `Calls`), which answers, hears the prompt, puts the call on hold
/// and takes it off hold (re-INVITEs `sendonly` then `sendrecv`, each answered: its
/// `CALL_REMOTE_SDP` events). The call survives: after the resume its digit reaches the
/// `<Gather>` action, it receives the keys the action plays (`<Play digits>`, RFC 4733: its
/// `CALL_DTMF_START` events), and callml hangs up after the action's tone. (baresip 1.0's
/// `sndfile` stops its recording at the hold and opens none after it, so media after the
/// resume is shown by the keys the phone received, not measured on a recording.)
#[tokio::test(flavor = "multi_thread")]
async fn baresip_as_callee_hears_the_prompt_holds_resumes_and_gets_keys_after() {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return;
    };
    let dir = TempDir::new("interop-baresip-hold");
    let app = CustomerApp::start().await;
    app.serve("/tone.wav", Reply::binary("audio/wav", tone_wav()));
    app.serve(
        "/answered",
        Reply::xml("<Response><Play>/tone.wav</Play><Redirect>/waiting</Redirect></Response>"),
    );
    app.serve(
        "/waiting",
        Reply::xml(
            "<Response><Gather action=\"/resumed\" numDigits=\"1\" timeout=\"20\">\
             <Play loop=\"30\">/tone.wav</Play></Gather><Hangup/></Response>",
        ),
    );
    app.serve(
        "/resumed",
        Reply::xml("<Response><Play digits=\"47\"/><Play>/tone.wav</Play><Hangup/></Response>"),
    );
    let voice = app.url("/unused");
    let callml = Callml::start(
        "interop-baresip-hold",
        &["--voice-url", &voice, "--auth-token", TOKEN],
    );
    let wav = dir.path().join("silence.wav");
    std::fs::write(&wav, silence_wav(30.0)).unwrap();
    let phone = BaresipPhone::new(&dir.path().join("phone"), &wav).with_control();
    let running = phone.start(&baresip, None, 30 * SECOND);
    let mut control = Control::connect(&phone).await;
    let to = format!("sip:phone@127.0.0.1:{};transport=udp", phone.sip_port);
    let url = app.url("/answered");
    let (status, created) = post(
        &callml,
        "Calls.json",
        &[("To", &to), ("From", "+15550001111"), ("Url", &url)],
    )
    .await;
    assert_eq!(status, 201, "{created}");
    control.event("CALL_ESTABLISHED", 10 * SECOND).await;
    control.event("CALL_RTPESTAB", 10 * SECOND).await;
    app.wait_for("/waiting", 1, 10 * SECOND).await;
    let held = control.command("hold", "").await;
    assert_eq!(held["ok"], true, "baresip put the call on hold: {held}");
    control
        .event_with("CALL_REMOTE_SDP", Some("answer"), 10 * SECOND)
        .await;
    let resumed = control.command("resume", "").await;
    assert_eq!(resumed["ok"], true, "baresip resumed the call: {resumed}");
    control
        .event_with("CALL_REMOTE_SDP", Some("answer"), 10 * SECOND)
        .await;
    let sent = control.command("sndcode", "5").await;
    assert_eq!(sent["ok"], true, "baresip sent the digit: {sent}");
    let action = app.wait_for("/resumed", 1, 10 * SECOND).await;
    assert_eq!(action[0].param("Digits"), Some("5"), "{:?}", action[0]);
    // Media flows to the phone after the resume: it receives the action's RFC 4733 keys.
    for key in ["4", "7"] {
        control
            .event_with("CALL_DTMF_START", Some(key), 10 * SECOND)
            .await;
    }
    let closed = control.event("CALL_CLOSED", 10 * SECOND).await;
    control.command("quit", "").await;
    tokio::task::spawn_blocking(move || running.wait())
        .await
        .unwrap();
    let seen = phone.log();
    assert_eq!(
        closed["param"], "Connection reset by peer",
        "callml hung up: {closed}\n{seen}"
    );
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(
        calls[0].status,
        "completed",
        "{:?}\n{}",
        calls[0],
        callml.log()
    );
    let (toned, frames) = frames_with_tone(&phone.heard(), 440.0);
    assert!(
        toned >= HEARD_FRAMES,
        "the phone heard the prompt before the hold: {toned} of {frames} frames\n{seen}"
    );
}

/// linphonec calls callml, over TLS when `tls`, else UDP; once the first tone has played it
/// types `1`, `2`, `3` (sent as RFC 4733 events): the app gets `Digits=123` and hangs up.
/// With `hold`, the phone first pauses the call and resumes it (re-INVITEs), and the action
/// plays a 660 Hz tone before hanging up, which the phone must hear. Asserts the phone
/// connected, heard the prompt on its recording, and saw the call end without hanging up
/// itself. Returns callml's log; `None` when a peer is missing and the test is skipped on
/// purpose.
async fn linphonec_calls(name: &str, tls: bool, hold: bool) -> Option<String> {
    let (Some(linphonec), Some(openssl)) = (
        require_peer("linphonec", "linphone-cli"),
        require_peer("openssl", "openssl"),
    ) else {
        return None;
    };
    let dir = TempDir::new(name);
    let app = gathering_app().await;
    if hold {
        app.serve("/after.wav", Reply::binary("audio/wav", tone_at(660.0)));
        app.serve(
            "/digits",
            Reply::xml("<Response><Play>/after.wav</Play><Hangup/></Response>"),
        );
    }
    let voice = app.url("/voice");
    let (cert, key) = self_signed_cn_only(&openssl, dir.path());
    let callml = if tls {
        Callml::start_tls(name, &cert, &key, &["--voice-url", &voice])
    } else {
        Callml::start(name, &["--voice-url", &voice])
    };
    let wav = dir.path().join("silence.wav");
    std::fs::write(&wav, silence_wav(30.0)).unwrap();
    let root = tls.then_some(cert.as_path());
    let mut phone = Linphone::start(&linphonec, &dir.path().join("phone"), &wav, root);
    let uri = match callml.sip_tls {
        Some(addr) if tls => format!("sip:hello@{addr};transport=tls"),
        _ => format!("sip:hello@{}", callml.sip),
    };
    phone.send(&format!("call {uri}"));
    phone.wait_for("connected.", 10 * SECOND).await;
    app.wait_for("/gather", 1, 10 * SECOND).await;
    if hold {
        phone.send("pause");
        phone.wait_for("is now paused.", 10 * SECOND).await;
        phone.send("resume");
        phone
            .wait_for_times("Media streams established", 2, 10 * SECOND)
            .await;
    }
    for digit in ["1", "2", "3"] {
        phone.send(digit);
    }
    let action = app.wait_for("/digits", 1, 10 * SECOND).await;
    assert_eq!(action[0].param("Digits"), Some("123"), "{:?}", action[0]);
    // callml hangs up (the action's <Hangup/>); the test never told the phone to.
    phone.wait_for("ended (No error)", 10 * SECOND).await;
    let heard = phone.quit().await;
    let seen = phone.log();
    assert!(seen.contains("Media streams established"), "{seen}");
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "completed", "{:?}", calls[0]);
    let (toned, frames) = frames_with_tone(&heard, 440.0);
    assert!(
        toned >= HEARD_FRAMES,
        "the phone heard the 440 Hz prompt: {toned} of {frames} frames\n{seen}"
    );
    if hold {
        let (after, frames) = frames_with_tone(&heard, 660.0);
        assert!(
            after >= HEARD_FRAMES,
            "the phone heard the 660 Hz tone after resuming: {after} of {frames} frames\n{seen}"
        );
    }
    Some(callml.log())
}

#[tokio::test(flavor = "multi_thread")]
async fn linphonec_calls_over_udp_hears_the_prompt_and_sends_digits() {
    linphonec_calls("interop-linphonec-udp", false, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn linphonec_calls_over_tls_hears_the_prompt_and_sends_digits() {
    let Some(log) = linphonec_calls("interop-linphonec-tls", true, false).await else {
        return;
    };
    assert!(
        log.contains("SIP connection opened peer=127.0.0.1") && log.contains("transport=TLS"),
        "the call came over TLS:\n{log}"
    );
}

/// linphonec puts its call on hold and resumes it (`pause`, `resume`): callml answers both
/// re-INVITEs, the call survives, and after the resume the phone's digits arrive and it hears
/// the 660 Hz tone the action plays.
#[tokio::test(flavor = "multi_thread")]
async fn linphonec_holds_resumes_and_hears_the_tone_played_after() {
    let Some(log) = linphonec_calls("interop-linphonec-hold", false, true).await else {
        return;
    };
    assert!(
        log.contains("the far end put the call on hold") && log.contains("(resumed)"),
        "callml saw the hold and the resume:\n{log}"
    );
}

/// pjsua (pjproject 2.15's `pjsua2` from PyPI, run by `tests/python/pjsua_caller.py`) calls
/// callml over UDP: its call is confirmed, it hears the prompt on its own recording, its RFC
/// 4733 digits reach `<Gather>` as `Digits=123`, and callml hangs up (the script never does).
#[tokio::test(flavor = "multi_thread")]
async fn pjsua_calls_over_udp_hears_the_prompt_and_sends_digits() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Some(python) = pjsua_venv() else {
        return;
    };
    let dir = TempDir::new("interop-pjsua");
    let app = gathering_app().await;
    let voice = app.url("/voice");
    let callml = Callml::start("interop-pjsua", &["--voice-url", &voice]);
    let recording = dir.path().join("heard.wav");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pjsua_caller.py");
    let mut pjsua = tokio::process::Command::new(python)
        .arg(script)
        .arg(format!("sip:hello@{}", callml.sip))
        .arg(&recording)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run pjsua_caller.py");
    let mut stdin = pjsua.stdin.take().expect("pjsua stdin");
    let mut lines = BufReader::new(pjsua.stdout.take().expect("pjsua stdout")).lines();
    let mut seen = Vec::new();
    let mut wait_for = async |wanted: &str| loop {
        let line = tokio::time::timeout(10 * SECOND, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("pjsua did not print {wanted:?}: {seen:?}"))
            .expect("read pjsua")
            .unwrap_or_else(|| panic!("pjsua exited before {wanted:?}: {seen:?}"));
        seen.push(line.clone());
        if line.starts_with(wanted) {
            return line;
        }
    };
    wait_for("STATE CONFIRMED").await;
    app.wait_for("/gather", 1, 10 * SECOND).await;
    stdin
        .write_all(b"dtmf 123\n")
        .await
        .expect("write to pjsua");
    let action = app.wait_for("/digits", 1, 10 * SECOND).await;
    assert_eq!(action[0].param("Digits"), Some("123"), "{:?}", action[0]);
    wait_for("STATE DISCONNECTED").await;
    let exit = tokio::time::timeout(10 * SECOND, pjsua.wait())
        .await
        .expect("pjsua exits after the call")
        .expect("pjsua status");
    assert!(exit.success(), "pjsua_caller.py failed: {exit}");
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "completed", "{:?}", calls[0]);
    let (toned, frames) =
        frames_with_tone(&std::fs::read(&recording).expect("pjsua recording"), 440.0);
    assert!(
        toned >= HEARD_FRAMES,
        "pjsua heard the 440 Hz prompt: {toned} of {frames} frames"
    );
}
