//! A call whose document cannot be fetched or parsed: as on Twilio, the caller (or a REST
//! call's answered callee) hears "We are sorry, an application error has occurred. Goodbye."
//! before callml hangs up, and the record and `completed` callback carry the error code.
//! sipp places or answers the calls; an RTP peer beside it records what the phone heard.

mod common;

use std::time::Duration;

use common::app::{CustomerApp, Reply};
use common::callml::{CallRow, Callml};
use common::rest;
use common::rtp::{Packet, RtpPeer, ulaw_to_linear};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::{best_correlation, read_wav_samples};

const SECOND: Duration = Duration::from_secs(1);

/// The shipped prompt, 3.5 s at 8 kHz.
const PROMPT: &[u8] = include_bytes!("../assets/application_error.wav");

async fn sipp(run: Sipp) -> SippRun {
    tokio::task::spawn_blocking(move || run.run())
        .await
        .expect("sipp thread")
}

/// What the phone heard: the µ-law packets decoded, in sequence order.
fn heard(packets: &[Packet]) -> Vec<i16> {
    let mut packets: Vec<&Packet> = packets.iter().filter(|p| p.payload_type == 0).collect();
    packets.sort_by_key(|p| p.sequence);
    packets
        .iter()
        .flat_map(|p| p.payload.iter().map(|&code| ulaw_to_linear(code)))
        .collect()
}

/// 20 ms frames of `samples` loud enough to be speech (RMS above about -36 dBFS).
fn voiced_frames(samples: &[i16]) -> usize {
    samples
        .chunks(160)
        .filter(|frame| {
            let energy: f64 = frame.iter().map(|&x| f64::from(x).powi(2)).sum();
            (energy / frame.len() as f64).sqrt() > 500.0
        })
        .count()
}

/// The phone heard the apology: a second and a half of speech at least, and a second from
/// the middle of the shipped prompt found in it as it was rendered.
fn assert_heard_the_apology(packets: &[Packet], log: &str) {
    let samples = heard(packets);
    let voiced = voiced_frames(&samples);
    assert!(
        voiced >= 75,
        "{voiced} frames of speech in {} received samples\nserver log:\n{log}",
        samples.len()
    );
    let (rate, prompt) = read_wav_samples(PROMPT);
    assert_eq!(rate, 8000);
    let template = &prompt[8000..16_000];
    let (correlation, lag) = best_correlation(&samples, template, 0..samples.len());
    assert!(
        correlation > 0.9,
        "the shipped prompt's second second is not in what the phone heard: {correlation:.2} at {lag}"
    );
}

/// The call was answered and lasted as long as the prompt before callml's BYE ended it.
fn assert_hung_up_after_the_prompt(call: &CallRow) {
    let (Some(answered), Some(ended)) = (call.answer_nanos, call.end_nanos) else {
        panic!("answered and ended: {call:?}");
    };
    let seconds = (ended - answered) as f64 / 1e9;
    assert!(
        (3.0..10.0).contains(&seconds),
        "{seconds:.2} s from the answer to the hang-up; the prompt lasts 3.5 s"
    );
}

/// sipp calls callml (whose voice URL fails as the test arranged) from a phone recording RTP;
/// callml answers, apologizes and hangs up. The caller's view, then the call's record.
async fn call_and_hear(callml: &Callml, sipp_bin: &std::path::Path) -> CallRow {
    let phone = RtpPeer::start(440.0, 800 * Duration::from_millis(1), 20 * SECOND);
    let run =
        sipp(Sipp::new(sipp_bin, "callml_hangs_up.xml", callml.sip).key("rtp_port", phone.port))
            .await;
    run.assert_success_with_log(&callml.log());
    let lines = run.start_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("SIP/2.0 200 "))
            && lines.iter().any(|l| l.starts_with("BYE ")),
        "answered, then callml's BYE: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("SIP/2.0 500 ")),
        "{lines:?}"
    );
    assert_heard_the_apology(&phone.finish(), &callml.log());
    let call = callml.wait_for_ended_calls(1, 10 * SECOND).remove(0);
    assert_hung_up_after_the_prompt(&call);
    assert_eq!(call.status, "completed", "{call:?}");
    call
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_url_answering_500_is_apologized_for_then_hung_up_with_11200() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::status(500));
    app.serve("/status", Reply::status(204));
    let voice = app.url("/voice");
    let status = app.url("/status");
    let callml = Callml::start(
        "apology-500",
        &["--voice-url", &voice, "--status-callback", &status],
    );
    let call = call_and_hear(&callml, &sipp_bin).await;
    assert_eq!(call.error_code, Some(11200), "{call:?}");
    let callbacks = app.wait_for("/status", 4, 5 * SECOND).await;
    let completed = callbacks
        .iter()
        .find(|c| c.param("CallStatus") == Some("completed"))
        .expect("the completed callback");
    assert_eq!(completed.param("ErrorCode"), Some("11200"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_url_refusing_connections_is_apologized_for_then_hung_up_with_11205() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = format!("http://{}/voice", closed.local_addr().expect("addr"));
    drop(closed);
    let callml = Callml::start(
        "apology-refused",
        &["--voice-url", &refused, "--fetch-timeout", "2"],
    );
    let call = call_and_hear(&callml, &sipp_bin).await;
    assert_eq!(call.error_code, Some(11205), "{call:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_that_does_not_parse_is_apologized_for_then_hung_up_with_12100() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml("<Response><Say>unclosed</Response>"));
    let voice = app.url("/voice");
    let callml = Callml::start("apology-parse", &["--voice-url", &voice]);
    let call = call_and_hear(&callml, &sipp_bin).await;
    assert_eq!(call.error_code, Some(12100), "{call:?}");
    assert!(
        call.error_message.as_deref().unwrap().contains("/voice:1:"),
        "{call:?}"
    );
}

/// A REST call: the callee (sipp, answering and waiting for callml's BYE) answers, the
/// call's document fails, and the callee hears the apology before the BYE.
#[tokio::test(flavor = "multi_thread")]
async fn a_rest_calls_failing_document_is_apologized_for_to_the_answered_callee() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/call", Reply::status(500));
    let callml = Callml::start("apology-rest", &["--auth-token", rest::TOKEN]);
    let phone = RtpPeer::start(440.0, 800 * Duration::from_millis(1), 20 * SECOND);
    let callee = Sipp::listen(&sipp_bin, "uas_answers.xml").key("rtp_port", phone.port);
    let to = format!("sip:bob@{};transport=udp", callee.addr());
    let answered = tokio::task::spawn_blocking(move || callee.run());
    let url = app.url("/call");
    let (status, body) = rest::post(
        &callml,
        "Calls.json",
        &[("To", &to), ("From", "+15550001111"), ("Url", &url)],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let run = answered.await.expect("sipp thread");
    run.assert_success_with_log(&callml.log());
    assert_heard_the_apology(&phone.finish(), &callml.log());
    let call = callml.wait_for_ended_calls(1, 10 * SECOND).remove(0);
    assert_eq!(call.sid, body["sid"].as_str().unwrap());
    assert_eq!(
        (call.status.as_str(), call.error_code),
        ("completed", Some(11200)),
        "{call:?}"
    );
    assert_hung_up_after_the_prompt(&call);
    assert_eq!(app.requests_to("/call").len(), 1, "fetched once");
}
