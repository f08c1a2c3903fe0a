//! Inbound calls end to end: the real `callml serve` binary, a local customer app serving
//! documents and recording callbacks, and sipp placing calls over UDP and TCP.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::callml::{Callml, TempDir};
use common::rest;
use common::rtp::{RtpCapture, tone_ratio, ulaw_to_linear};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::{best_correlation, read_wav_samples, wav_bytes};

const SECOND: Duration = Duration::from_secs(1);

async fn sipp(run: Sipp) -> SippRun {
    tokio::task::spawn_blocking(move || run.run())
        .await
        .expect("sipp thread")
}

/// A 16-bit mono 8 kHz WAV of a sine tone.
fn tone_wav(frequency: f64, seconds: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..(8000.0 * seconds) as usize)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * i as f64 / 8000.0).sin()) as i16
        })
        .collect();
    wav_bytes(&samples, 8000)
}

/// Seconds of speech espeak-ng makes of `text` with callml's default voice.
fn espeak_seconds(text: &str) -> f64 {
    let dir = common::callml::TempDir::new("espeak");
    let path = dir.path().join("say.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("run espeak-ng (Debian package espeak-ng)");
    assert!(status.success());
    let bytes = std::fs::read(&path).expect("espeak output");
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as f64;
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    let len = u32::from_le_bytes(bytes[data + 4..data + 8].try_into().unwrap());
    let len = if len == 0 || len == u32::MAX {
        (bytes.len() - data - 8) as u32
    } else {
        len
    };
    f64::from(len) / 2.0 / rate
}

/// Checks `X-Twilio-Signature` with the contract's algorithm, written out independently of
/// callml's implementation: base64(HMAC-SHA1(token, url + sorted name+value pairs)).
fn signature_is_valid(request: &RecordedRequest, token: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut params = request.form.clone();
    params.sort();
    let mut data = request.url.clone();
    for (name, value) in &params {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    request.header("X-Twilio-Signature") == Some(expected.as_str())
        && request.header("X-SignalWire-Signature") == Some(expected.as_str())
}

const TOKEN: &str = "test-auth-token";

fn server(name: &str, app: &CustomerApp, extra: &[&str]) -> Callml {
    let voice = app.url("/voice");
    let callback = app.url("/status");
    let mut args = vec![
        "--voice-url",
        voice.as_str(),
        "--status-callback",
        callback.as_str(),
        "--auth-token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    Callml::start(name, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn say_play_hangup_arrives_as_the_right_amount_of_rtp() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            "<Response><Say>Hello from callml.</Say><Play>/tone.wav</Play><Hangup/></Response>",
        ),
    );
    app.serve(
        "/tone.wav",
        Reply::binary("audio/wav", tone_wav(440.0, 1.0)),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("rtp", &app, &[]);
    assert!(
        !callml.log().contains("<Say> needs espeak-ng"),
        "espeak-ng is installed here"
    );

    let capture = RtpCapture::start(Duration::from_millis(600), Duration::from_secs(30));
    let run =
        sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip).key("rtp_port", capture.port))
            .await;
    run.assert_success();
    let packets = capture.finish();

    assert!(
        packets
            .iter()
            .all(|p| p.payload_type == 0 && p.payload.len() == 160),
        "PCMU, 20 ms"
    );
    assert!(packets[0].marker, "the first packet starts a talkspurt");
    for pair in packets.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "no gaps"
        );
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
    }
    let frames: Vec<Vec<i16>> = packets
        .iter()
        .map(|p| p.payload.iter().map(|&b| ulaw_to_linear(b)).collect())
        .collect();
    let audible: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].iter().any(|&s| s.abs() > 64))
        .collect();
    let tone_frames = frames
        .iter()
        .filter(|f| tone_ratio(f, 440.0, 8000.0) > 0.8)
        .count();
    assert!(
        (48..=51).contains(&tone_frames),
        "1 s of 440 Hz is 50 frames, got {tone_frames}"
    );
    let span = (audible.last().unwrap() - audible.first().unwrap() + 1) as f64 * 0.02;
    let expected = espeak_seconds("Hello from callml.") + 1.0;
    assert!(
        (span - expected).abs() < 0.3,
        "audio from first to last sound lasts {span:.2} s, expected {expected:.2} s"
    );
    let total = packets.len() as f64 * 0.02;
    assert!(
        total < expected + 1.0,
        "{total:.2} s of RTP for {expected:.2} s of audio"
    );

    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "completed");
    assert!(calls[0].answered);
    let fetch = &app.wait_for("/voice", 1, 5 * SECOND).await[0];
    assert_eq!(fetch.method, "POST");
    assert_eq!(fetch.param("CallStatus"), Some("ringing"));
    assert_eq!(fetch.param("From"), Some("+15550001111"));
    assert_eq!(fetch.param("To"), Some("+15550002222"));
    assert_eq!(fetch.param("SipHeader_X-Test-Call"), Some("1"));
    assert_eq!(fetch.param("CallSid"), Some(calls[0].sid.as_str()));
    assert_eq!(fetch.param("SipCallId"), calls[0].sip_call_id.as_deref());
    assert!(signature_is_valid(fetch, TOKEN), "document fetch is signed");
}

/// A caller that sends no offer (RFC 3264 delayed offer) gets callml's offer in the 200 and
/// answers in the ACK; the prompt then goes to the address of that answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_offer_gets_our_offer_and_its_answer_from_the_ack_is_used() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Play>/tone.wav</Play><Pause length=\"5\"/></Response>"),
    );
    app.serve(
        "/tone.wav",
        Reply::binary("audio/wav", tone_wav(440.0, 1.0)),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("delayed-offer", &app, &[]);
    let capture = RtpCapture::start(Duration::from_millis(600), Duration::from_secs(30));
    sipp(
        Sipp::new(&sipp_bin, "engine_uac_delayed_offer.xml", callml.sip)
            .key("rtp_port", capture.port)
            .pause(Duration::from_secs(2)),
    )
    .await
    .assert_success_with_log(&callml.log());
    let packets = capture.finish();
    assert!(
        packets.iter().all(|p| p.payload_type == 0),
        "PCMU, as answered"
    );
    let tone = packets
        .iter()
        .filter(|p| {
            let frame: Vec<i16> = p.payload.iter().map(|&b| ulaw_to_linear(b)).collect();
            tone_ratio(&frame, 440.0, 8000.0) > 0.8
        })
        .count();
    assert!(
        tone >= 40,
        "the 1 s prompt reached the ACK's address: {tone} frames"
    );
    let calls = callml.wait_for_ended_calls(1, Duration::from_secs(10));
    assert_eq!(calls[0].status, "completed");
    assert!(calls[0].answered);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_fetches_the_next_document_with_its_method() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Redirect method="GET">/next?step=2</Redirect></Response>"#),
    );
    app.serve(
        "/next",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("redirect", &app, &[]);
    sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip))
        .await
        .assert_success();
    let next = &app.wait_for("/next", 1, 5 * SECOND).await[0];
    assert_eq!(next.method, "GET");
    assert_eq!(next.param("step"), Some("2"), "the URL's own query is kept");
    assert_eq!(
        next.param("CallStatus"),
        Some("ringing"),
        "Redirect first does not answer"
    );
    assert!(
        next.body.is_empty(),
        "GET carries its parameters in the query string"
    );
    assert!(signature_is_valid(next, TOKEN));
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "completed");
    assert!(
        calls[0].duration >= Some(1),
        "a one-second Pause is counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_answers_486_or_603_without_answering() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    for (document, code, status) in [
        (
            r#"<Response><Reject reason="busy"/></Response>"#,
            "486",
            "busy",
        ),
        (
            "<Response><Reject/><Say>never</Say></Response>",
            "603",
            "no-answer",
        ),
    ] {
        let app = CustomerApp::start().await;
        app.serve("/voice", Reply::xml(document));
        app.serve("/status", Reply::status(204));
        let callml = server("reject", &app, &[]);
        let run = sipp(Sipp::new(&sipp_bin, "rejected.xml", callml.sip)).await;
        run.assert_success();
        assert!(
            run.start_lines()
                .iter()
                .any(|l| l.starts_with(&format!("SIP/2.0 {code} "))),
            "{:?}",
            run.start_lines()
        );
        assert!(
            !run.start_lines()
                .iter()
                .any(|l| l.starts_with("SIP/2.0 200"))
        );
        let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
        assert_eq!(calls[0].status, status);
        assert_eq!(
            calls[0].sip_response_code.map(|c| c.to_string()).as_deref(),
            Some(code)
        );
        assert!(!calls[0].answered);
    }
}

/// An SRTP offer callml can serve is answered on `RTP/SAVP` with a key of its own under the
/// tag of the first line it supports (the scenario checks the answer); one it cannot serve —
/// an unknown suite, an MKI, a malformed key, `RTP/SAVP` without keys — gets 488 and a failed
/// call with Twilio's 32102, never an answer in the clear.
#[tokio::test(flavor = "multi_thread")]
async fn srtp_offers_are_answered_with_srtp_or_refused_with_488() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml("<Response><Hangup/></Response>"));
    app.serve("/status", Reply::status(204));
    let callml = server("srtp-offers", &app, &[]);
    let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    sipp(Sipp::new(&sipp_bin, "caller_offers_srtp.xml", callml.sip).key("key", key))
        .await
        .assert_success_with_log(&callml.log());
    let refused = [
        (
            "RTP/SAVP",
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{key}"),
        ),
        (
            "RTP/SAVP",
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:4"),
        ),
        (
            "RTP/SAVP",
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".into(),
        ),
        (
            "UDP/TLS/RTP/SAVP",
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}"),
        ),
    ];
    for (profile, crypto) in &refused {
        let run = sipp(
            Sipp::new(&sipp_bin, "caller_offers_unusable_srtp.xml", callml.sip)
                .key("profile", profile)
                .key("crypto", crypto),
        )
        .await;
        run.assert_success_with_log(&callml.log());
        assert!(
            !run.start_lines()
                .iter()
                .any(|l| l.starts_with("SIP/2.0 200")),
            "{profile} {crypto}: {:?}",
            run.start_lines()
        );
    }
    let calls = callml.wait_for_ended_calls(1 + refused.len(), 10 * SECOND);
    let (answered, failed): (Vec<_>, Vec<_>) = calls.iter().partition(|call| call.answered);
    assert_eq!(answered.len(), 1, "{calls:?}");
    assert_eq!(answered[0].status, "completed");
    assert_eq!(failed.len(), refused.len(), "{calls:?}");
    for call in failed {
        assert_eq!(
            (
                call.status.as_str(),
                call.error_code,
                call.sip_response_code
            ),
            ("failed", Some(32102), Some(488)),
            "{call:?}"
        );
        assert!(
            call.error_message
                .as_deref()
                .is_some_and(|m| m.contains("SRTP")),
            "{call:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_the_fetch_gives_487_and_a_canceled_call() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Say>too late</Say></Response>").with_delay(3 * SECOND),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("cancel", &app, &[]);
    let run = sipp(Sipp::new(&sipp_bin, "cancel_while_ringing.xml", callml.sip)).await;
    run.assert_success();
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "canceled");
    assert_eq!(calls[0].sip_response_code, Some(487));
    let callbacks = app.wait_for("/status", 3, 5 * SECOND).await;
    let last = callbacks.last().unwrap();
    assert_eq!(last.param("CallStatus"), Some("canceled"));
    assert_eq!(last.param("CallDuration"), Some("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retransmitted_invite_does_not_start_a_second_call() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/></Response>")
            .with_delay(Duration::from_millis(400)),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("retransmit", &app, &[]);
    sipp(Sipp::new(&sipp_bin, "retransmitted_invite.xml", callml.sip))
        .await
        .assert_success();
    callml.wait_for_ended_calls(1, 10 * SECOND);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(callml.calls().len(), 1, "one call row");
    assert_eq!(app.requests_to("/voice").len(), 1, "one document fetch");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_calls_at_ten_per_second_each_get_four_signed_callbacks_in_order() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("fifty", &app, &[]);
    let run = sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip).calls(50, 10)).await;
    run.assert_success();
    assert_eq!(run.successful, 50);
    let calls = callml.wait_for_ended_calls(50, 20 * SECOND);
    let odd: Vec<_> = calls
        .iter()
        .filter(|c| !(c.status == "completed" && c.duration >= Some(1)))
        .collect();
    assert!(
        odd.is_empty(),
        "calls that did not complete their Pause: {odd:#?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.status == "completed" && c.duration >= Some(1)),
        "{calls:#?}"
    );

    let callbacks = app.wait_for("/status", 200, 20 * SECOND).await;
    let mut by_call: BTreeMap<String, Vec<&RecordedRequest>> = BTreeMap::new();
    for cb in &callbacks {
        assert!(signature_is_valid(cb, TOKEN), "callback signature");
        by_call
            .entry(cb.param("CallSid").unwrap().to_owned())
            .or_default()
            .push(cb);
    }
    assert_eq!(by_call.len(), 50);
    for (sid, cbs) in by_call {
        let statuses: Vec<_> = cbs.iter().map(|c| c.param("CallStatus").unwrap()).collect();
        assert_eq!(
            statuses,
            ["initiated", "ringing", "in-progress", "completed"],
            "{sid}"
        );
        let sequence: Vec<_> = cbs
            .iter()
            .map(|c| c.param("SequenceNumber").unwrap())
            .collect();
        assert_eq!(sequence, ["0", "1", "2", "3"], "{sid}");
        assert!(
            cbs.iter()
                .all(|c| c.param("CallbackSource") == Some("call-progress-events"))
        );
        assert!(
            cbs.iter()
                .all(|c| c.param("Timestamp").is_some_and(|t| t.ends_with("+0000")))
        );
        let duration: u32 = cbs[3].param("CallDuration").unwrap().parse().unwrap();
        assert!(duration >= 1, "the Pause is counted: {duration}");
    }
}

/// The voice URL fails: the fallback URL is asked, told why. (Without a fallback the caller
/// hears that an application error occurred: tests/application_error.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_voice_url_falls_back_with_its_error_code_and_url() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::status(500));
    app.serve("/fallback", Reply::xml("<Response><Hangup/></Response>"));
    app.serve("/status", Reply::status(204));
    let fallback = app.url("/fallback");
    let callml = server("fallback", &app, &["--voice-fallback-url", &fallback]);
    sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip))
        .await
        .assert_success();
    let used = &app.wait_for("/fallback", 1, 5 * SECOND).await[0];
    assert_eq!(used.param("ErrorCode"), Some("11200"));
    assert_eq!(used.param("ErrorUrl"), Some(app.url("/voice").as_str()));
    assert_eq!(
        callml.wait_for_ended_calls(1, 10 * SECOND)[0].status,
        "completed"
    );
}

/// A caller that takes callml's 200 OK and never ACKs it (sipp): with `--sip-t1-ms 50` callml
/// retransmits the 200 from 50 ms, doubling, and after Timer H (64*T1 = 3.2 s) hangs up with
/// BYE (RFC 3261 §13.3.1.4), which sipp receives and answers; the record says 32022, so does a
/// notification of the call, and the log says it when it happens.
#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_never_acks_gets_the_200_again_then_a_bye_after_timer_h() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"30\"/></Response>"),
    );
    let voice = app.url("/voice");
    let callml = Callml::start(
        "no-ack",
        &[
            "--voice-url",
            &voice,
            "--auth-token",
            rest::TOKEN,
            "--sip-t1-ms",
            "50",
        ],
    );
    let run = sipp(Sipp::new(&sipp_bin, "caller_never_acks.xml", callml.sip)).await;
    run.assert_success_with_log(&callml.log());
    let lines = run.start_lines();
    let oks = lines
        .iter()
        .filter(|l| l.starts_with("SIP/2.0 200 "))
        .count();
    assert!(
        oks >= 5,
        "the 200 retransmitted at T1 = 50 ms, doubling, until Timer H: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("ACK ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("BYE ")), "{lines:?}");
    let call = callml.wait_for_ended_calls(1, 10 * SECOND).remove(0);
    assert_eq!(
        (call.status.as_str(), call.error_code),
        ("completed", Some(32022)),
        "{call:?}"
    );
    let (Some(answered), Some(ended)) = (call.answer_nanos, call.end_nanos) else {
        panic!("answered and ended: {call:?}");
    };
    let seconds = (ended - answered) as f64 / 1e9;
    assert!(
        (3.0..10.0).contains(&seconds),
        "Timer H is 64*T1 = 3.2 s, not 32 s: {seconds:.2} s"
    );
    let (status, notifications) =
        rest::get(&callml, &format!("Calls/{}/Notifications.json", call.sid)).await;
    assert_eq!(status, 200, "{notifications}");
    let codes: Vec<&str> = notifications["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|n| n["error_code"].as_str())
        .collect();
    assert_eq!(codes, ["32022"], "{notifications}");
    let log = callml.log();
    assert!(
        log.lines()
            .any(|l| l.contains("call ended abnormally") && l.contains("32022")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_work_over_tcp() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let callml = server("tcp", &app, &[]);
    sipp(
        Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip)
            .tcp()
            .calls(3, 3),
    )
    .await
    .assert_success();
    let caller = sipp(
        Sipp::new(&sipp_bin, "caller_hangs_up.xml", callml.sip)
            .tcp()
            .pause(Duration::from_millis(500)),
    )
    .await;
    caller.assert_success();
    let calls = callml.wait_for_ended_calls(4, 10 * SECOND);
    assert!(calls.iter().all(|c| c.status == "completed"), "{calls:#?}");
}

/// The run command on a machine with nothing but callml: no voice URL, and a `PATH` holding no
/// program at all. The caller hears the welcome prompt shipped in the binary, all of it, as
/// loud as it was rendered; callml says once at start that `<Say>` would need espeak-ng.
#[tokio::test(flavor = "multi_thread")]
async fn the_welcome_call_plays_the_shipped_prompt_with_no_programs_installed() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let no_programs = TempDir::new("empty-path");
    let callml = Callml::start_with_env("welcome", &[], &[("PATH", no_programs.path())]);
    let capture = RtpCapture::start(Duration::from_millis(600), Duration::from_secs(60));
    let run =
        sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip).key("rtp_port", capture.port))
            .await;
    run.assert_success_with_log(&callml.log());
    let heard: Vec<i16> = capture
        .finish()
        .iter()
        .filter(|p| p.payload_type == 0)
        .flat_map(|p| p.payload.iter().map(|&b| ulaw_to_linear(b)))
        .collect();
    let wav = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/welcome.wav"))
        .expect("the shipped prompt");
    let (rate, shipped) = read_wav_samples(&wav);
    assert_eq!(rate, 8000);

    // From the first sound to the last, as long as the prompt, and as loud.
    let sounding = |samples: &[i16]| {
        let loud = |s: &i16| s.unsigned_abs() > 256;
        let first = samples.iter().position(loud).expect("some sound");
        let last = samples.iter().rposition(loud).expect("some sound");
        (first, last + 1)
    };
    let (heard_from, heard_to) = sounding(&heard);
    let (shipped_from, shipped_to) = sounding(&shipped);
    let seconds = |from: usize, to: usize| (to - from) as f64 / 8000.0;
    let (heard_seconds, shipped_seconds) = (
        seconds(heard_from, heard_to),
        seconds(shipped_from, shipped_to),
    );
    assert!(
        (heard_seconds - shipped_seconds).abs() < 0.05,
        "heard {heard_seconds:.2} s of the {shipped_seconds:.2} s prompt"
    );
    let rms = |samples: &[i16]| {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    };
    let (heard_rms, shipped_rms) = (
        rms(&heard[heard_from..heard_to]),
        rms(&shipped[shipped_from..shipped_to]),
    );
    assert!(
        (heard_rms / shipped_rms - 1.0).abs() < 0.05,
        "energy {heard_rms:.0} heard, {shipped_rms:.0} shipped"
    );
    // And it is the prompt itself: a second from its middle is found where it belongs.
    let middle = shipped_from + 10 * 8000;
    let expected_at = heard_from + (middle - shipped_from);
    let (correlation, _) = best_correlation(
        &heard,
        &shipped[middle..middle + 8000],
        expected_at.saturating_sub(800)..expected_at + 800,
    );
    assert!(correlation > 0.95, "correlation {correlation:.3}");

    let call = &callml.wait_for_ended_calls(1, 10 * SECOND)[0];
    assert_eq!((call.status.as_str(), call.error_code), ("completed", None));
    let notifications: i64 = callml
        .db()
        .query_row("SELECT count(*) FROM notifications", [], |row| row.get(0))
        .expect("count notifications");
    assert_eq!(notifications, 0, "nothing went wrong on the welcome call");
    assert_eq!(
        callml.log().matches("<Say> needs espeak-ng").count(),
        1,
        "said once at start:\n{}",
        callml.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hangs_up_live_calls_and_keeps_their_records() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"60\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let mut callml = server("sigterm", &app, &[]);
    let call = tokio::task::spawn_blocking({
        let run = Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip);
        move || run.run()
    });
    app.wait_for("/status", 3, 30 * SECOND).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = callml.signal_and_wait("TERM", Duration::from_secs(15));
        (status, callml)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    call.await.unwrap().assert_success();
    let calls = status.1.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, "completed");
    assert!(calls[0].ended);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_marks_its_live_calls_failed_on_restart() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"60\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let mut callml = server("killed", &app, &[]);
    let sip = callml.sip;
    let caller = tokio::task::spawn_blocking(move || {
        Sipp::new(&sipp_bin, "callml_hangs_up.xml", sip)
            .timeout(Duration::from_secs(5))
            .run()
    });
    app.wait_for("/status", 3, 30 * SECOND).await;
    assert_eq!(
        callml.calls()[0].status,
        "in-progress",
        "the live call is on record"
    );
    callml.signal_and_wait("KILL", Duration::from_secs(5));
    let _ = caller.await;
    let data = std::mem::replace(&mut callml.data, common::callml::TempDir::new("unused"));
    let restarted = Callml::start_in(data, &[]);
    let calls = restarted.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, "failed");
    assert_eq!(
        calls[0].error_message.as_deref(),
        Some("callml stopped while the call was live")
    );
}
