//! `<Dial><Sip>` end to end: sipp calls callml, callml dials sipp callees, bridges the winner
//! and reports the result to the `action` URL.

mod common;

use std::time::Duration;

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::baresip::BaresipPhone;
use common::callml::TempDir;
use common::callml::{CallRow, Callml};
use common::rtp::{
    Law, RtpCapture, RtpPeer, packets_with_tone, packets_with_tone_in, packets_with_tones,
    tone_ratio,
};
use common::sipp::{Sipp, SippRun, require_peer};
use common::tls::self_signed;
use common::wav::{best_correlation, download, read_wav, wav_bytes};

const SECOND: Duration = Duration::from_secs(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

const TOKEN: &str = "token";

fn server(name: &str, app: &CustomerApp) -> Callml {
    let voice = app.url("/voice");
    Callml::start(name, &["--voice-url", &voice, "--auth-token", TOKEN])
}

fn children<'a>(calls: &'a [CallRow], parent: &CallRow) -> Vec<&'a CallRow> {
    calls
        .iter()
        .filter(|c| c.direction == "outbound-dial" && c.sid != parent.sid)
        .collect()
}

fn param<'a>(request: &'a RecordedRequest, name: &str) -> &'a str {
    request
        .param(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", request.form))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_way_fork_connects_the_one_that_answers_and_cancels_the_rest() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let busy = Sipp::listen(&sipp, "uas_busy.xml");
    let silent = Sipp::listen(&sipp, "uas_never_answers.xml");
    let callee_phone = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(30));
    let answers = Sipp::listen(&sipp, "uas_answers_then_hangs_up.xml")
        .key("rtp_port", callee_phone.port)
        .pause(2 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" timeout="10">
                 <Sip>sip:busy@{};transport=udp</Sip>
                 <Sip>sip:silent@{};transport=udp</Sip>
                 <Sip>sip:bob@{};transport=udp?X-Customer=42</Sip>
               </Dial></Response>"#,
            busy.addr(),
            silent.addr(),
            answers.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("fork", &app);
    let callees = [spawn(busy), spawn(silent), spawn(answers)];
    let caller_phone = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(30));
    let caller = spawn(
        Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_phone.port),
    );
    caller.await.unwrap().assert_success();
    for callee in callees {
        callee.await.unwrap().assert_success();
    }

    let after = &app.wait_for("/after", 1, 10 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    assert_eq!(param(after, "DialBridged"), "true");
    assert_eq!(param(after, "DialSipResponseCode"), "200");
    let duration: u32 = param(after, "DialCallDuration").parse().unwrap();
    assert!(
        duration >= 1,
        "the callee stayed 2 s on the bridge, got {duration}"
    );

    let calls = callml.wait_for_ended_calls(4, 15 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    assert_eq!(parent.status, "completed");
    let kids = children(&calls, parent);
    assert_eq!(kids.len(), 3);
    let winner = kids
        .iter()
        .find(|c| c.sid == param(after, "DialCallSid"))
        .unwrap();
    assert_eq!(winner.status, "completed");
    let mut statuses: Vec<_> = kids.iter().map(|c| c.status.as_str()).collect();
    statuses.sort();
    // The busy callee's 486 and the answering callee's 200 race to callml (all three are
    // called at once): a 486 that comes second finds its leg already canceled. A 486 that
    // ends a leg by itself makes it busy: sequential_dials_ring_one_party_after_another.
    assert!(
        statuses == ["busy", "canceled", "completed"]
            || statuses == ["canceled", "canceled", "completed"],
        "{statuses:?}"
    );

    let to_callee = callee_phone.finish();
    let to_caller = caller_phone.finish();
    let tones_in = packets_with_tone(&to_callee, 1000.0);
    let tones_out = packets_with_tone(&to_caller, 440.0);
    assert!(
        tones_in >= 50,
        "the caller's 1 kHz reached the callee: {tones_in} packets"
    );
    assert!(
        tones_out >= 50,
        "the callee's 440 Hz reached the caller: {tones_out} packets"
    );
    // Ringback, then the callee's relayed packets, then what the document sent after the
    // dial: one stream to the caller (RFC 3550 §A.1). Packets lost on the way (a loaded machine
    // can drop a burst) leave a gap in the sequence numbers with the timestamp advanced by as
    // many frames; a switch of source that restarted the stream would not.
    let jumps: Vec<(u16, u16)> = to_caller
        .windows(2)
        .filter(|pair| {
            let frames = pair[1].sequence.wrapping_sub(pair[0].sequence);
            let elapsed = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
            frames > 3 && elapsed != u32::from(frames) * 160
        })
        .map(|pair| (pair[0].sequence, pair[1].sequence))
        .collect();
    assert!(jumps.is_empty(), "the stream restarted: {jumps:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_answering_within_the_timeout_is_no_answer_and_the_document_goes_on() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let silent = Sipp::listen(&sipp, "uas_never_answers.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeout="2"><Sip>sip:late@{};transport=udp</Sip></Dial><Redirect>/next</Redirect></Response>"#,
            silent.addr()
        )),
    );
    app.serve("/next", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("timeout", &app);
    let callee = spawn(silent);
    let heard = RtpCapture::start(Duration::from_millis(800), Duration::from_secs(30));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", heard.port))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    let heard = heard.finish();
    let ringback = packets_with_tones(&heard, &[440.0, 480.0], 0.3);
    assert!(
        (50..=110).contains(&ringback),
        "2 s of US ringback (440 + 480 Hz) while the dial rang: {ringback} of {} packets",
        heard.len()
    );
    app.wait_for("/next", 1, 5 * SECOND).await;
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    assert_eq!(children(&calls, parent)[0].status, "no-answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn codecs_are_offered_in_the_given_order_and_unknown_ones_left_out() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "uas_expects_pcma_first.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeLimit="1"><Sip codecs="G729,PCMA,PCMU">sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let callml = server("codecs", &app);
    let callee = spawn(callee);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    assert!(
        callml
            .log()
            .contains("codec not available; left out of the offer")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whisper_document_runs_on_the_callee_and_its_hangup_refuses_the_call() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    for (whisper, expected) in [
        ("<Response><Pause length=\"1\"/></Response>", "completed"),
        ("<Response><Hangup/></Response>", "no-answer"),
    ] {
        let callee = Sipp::listen(&sipp, "uas_answers.xml");
        let app = CustomerApp::start().await;
        app.serve(
            "/voice",
            Reply::xml(format!(
                r#"<Response><Dial action="/after" timeLimit="1"><Sip url="/whisper">sip:bob@{};transport=udp</Sip></Dial></Response>"#,
                callee.addr()
            )),
        );
        app.serve("/whisper", Reply::xml(whisper));
        app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
        let callml = server("whisper", &app);
        let callee = spawn(callee);
        spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
            .await
            .unwrap()
            .assert_success();
        callee.await.unwrap().assert_success();
        let fetch = &app.wait_for("/whisper", 1, 5 * SECOND).await[0];
        assert_eq!(param(fetch, "Direction"), "outbound-dial");
        assert!(
            fetch.param("SipCallId").is_some(),
            "the callee's Call-ID is passed"
        );
        let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
        let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
        assert_eq!(param(fetch, "ParentCallSid"), parent.sid);
        let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
        assert_eq!(
            param(after, "DialCallStatus"),
            expected,
            "whisper {whisper}"
        );
        assert_eq!(
            param(after, "DialBridged"),
            (expected == "completed").to_string()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn answer_on_bridge_answers_the_caller_only_when_the_callee_answers() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "uas_answers.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial answerOnBridge="true" timeLimit="1"><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let callml = server("bridge-answer", &app);
    let callee = spawn(callee);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let child = &children(&calls, parent)[0];
    assert!(
        parent.answer_nanos >= child.answer_nanos,
        "the caller is answered after the callee: {parent:?} {child:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_dials_ring_one_party_after_another() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let busy = Sipp::listen(&sipp, "uas_busy.xml");
    let answers = Sipp::listen(&sipp, "uas_answers.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial sequential="true" timeLimit="1" action="/after"><Sip>sip:a@{};transport=udp</Sip><Sip>sip:b@{};transport=udp</Sip></Dial></Response>"#,
            busy.addr(),
            answers.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("sequential", &app);
    let (busy, answers) = (spawn(busy), spawn(answers));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    busy.await.unwrap().assert_success();
    answers.await.unwrap().assert_success();
    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    let calls = callml.wait_for_ended_calls(3, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let kids = children(&calls, parent);
    let first = kids.iter().find(|c| c.status == "busy").unwrap();
    let second = kids.iter().find(|c| c.status == "completed").unwrap();
    assert!(
        second.start_nanos >= first.end_nanos,
        "the second party rings only after the first refused"
    );
    assert!(
        kids.iter()
            .all(|c| c.parent_call_sid.as_deref() == Some(parent.sid.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sip_noun_fails_over_its_uris_by_priority_until_one_answers() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    // Priority 0: a TCP port nobody listens on (connection refused); 1: a 503; 2: answers;
    // 3: a socket that must see nothing.
    let closed = common::sipp::free_tcp_port();
    let unavailable = Sipp::listen(&sipp, "uas_unavailable.xml");
    let answers = Sipp::listen(&sipp, "uas_answers.xml");
    let spare = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    spare.set_nonblocking(true).unwrap();
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeLimit="1" action="/after"><Sip>
                 <Uri priority="3">sip:spare@{};transport=udp</Uri>
                 <Uri priority="2" weight="5">sip:b@{};transport=udp</Uri>
                 <Uri priority="0">sip:closed@127.0.0.1:{closed};transport=tcp</Uri>
                 <Uri priority="1" weight="50">sip:a@{};transport=udp</Uri>
                 <Headers><Header name="X-Route" value="failover"/></Headers>
               </Sip></Dial></Response>"#,
            spare.local_addr().unwrap(),
            answers.addr(),
            unavailable.addr(),
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("failover", &app);
    let (unavailable, answers) = (spawn(unavailable), spawn(answers));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    unavailable.await.unwrap().assert_success();
    let answered = answers.await.unwrap();
    answered.assert_success();
    assert!(
        answered.messages.contains("X-Route: failover"),
        "the URI that answered got the shared header too:\n{}",
        answered.messages
    );

    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    assert_eq!(param(after, "DialSipResponseCode"), "200");
    let calls = callml.wait_for_ended_calls(4, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let mut kids = children(&calls, parent);
    kids.sort_by_key(|c| c.start_nanos);
    let statuses: Vec<&str> = kids.iter().map(|c| c.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "failed", "completed"]);
    // The refused connection counts as a 503 (RFC 3261 §8.1.3.1), then the callee's 503.
    assert_eq!(kids[0].sip_response_code, Some(503));
    assert_eq!(kids[1].sip_response_code, Some(503));
    let refused = kids[0].error_message.as_deref().unwrap_or_default();
    assert!(
        refused.contains(&format!("127.0.0.1:{closed}")),
        "the record says which connection failed: {refused}"
    );
    assert_eq!(kids[1].error_code, Some(32011));
    assert_eq!(param(after, "DialCallSid"), kids[2].sid);
    let mut buffer = [0u8; 2048];
    assert!(
        spare.recv(&mut buffer).is_err(),
        "the URI after the one that answered is never rung"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_callee_that_never_handshakes_fails_the_dial_as_a_transport_failure() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let Some(openssl) = require_peer("openssl", "openssl") else {
        return;
    };
    // Accepts TCP connections and never says a word of TLS.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = accepted.clone();
    std::thread::spawn(move || {
        for stream in mute.incoming().flatten() {
            held.lock().unwrap().push(stream);
        }
    });
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeout="25" action="/after"><Sip>sip:x@127.0.0.1:{port};transport=tls</Sip></Dial></Response>"#
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let dir = TempDir::new("tls-mute");
    let (cert, key) = self_signed(&openssl, dir.path());
    let callml = Callml::start_tls(
        "tls-mute",
        &cert,
        &key,
        &["--voice-url", &app.url("/voice"), "--auth-token", TOKEN],
    );
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "failed");
    assert_eq!(accepted.lock().unwrap().len(), 1, "callml connected once");
    let calls = callml.wait_for_ended_calls(2, 5 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let child = children(&calls, parent)[0];
    assert_eq!(child.status, "failed");
    assert_eq!(child.error_code, Some(32011));
    let message = child.error_message.as_deref().unwrap_or_default();
    assert!(
        message.contains(&format!("TLS handshake with 127.0.0.1:{port} timed out")),
        "{message}"
    );
    let rang = child.end_nanos.unwrap() - child.start_nanos.unwrap();
    assert!(
        rang < 20 * 1_000_000_000,
        "failed at the handshake's limit, long before the dial's 25 s: {rang} ns"
    );
    let log = callml.log();
    assert!(
        log.lines()
            .any(|l| l.contains("call ended abnormally") && l.contains("TLS handshake")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hangup_on_star_ends_the_bridge_and_the_document_goes_on() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "uas_answers.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial hangupOnStar="true" action="/after"><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("star", &app);
    let callee = spawn(callee);
    spawn(Sipp::new(&sipp, "caller_presses_star.xml", callml.sip).pause(SECOND))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let child = children(&calls, parent)[0];
    assert_eq!(
        child.error_message.as_deref(),
        Some("the caller pressed * (hangupOnStar)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_pressed_on_one_leg_reach_the_other_as_rfc_4733_events() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee_phone = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(30));
    let callee = Sipp::listen(&sipp, "uas_answers_then_hangs_up.xml")
        .key("rtp_port", callee_phone.port)
        .pause(3 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial><Sip>sip:bob@{};transport=udp?X-Customer=42</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let callml = server("relay-keys", &app);
    let callee = spawn(callee);
    spawn(Sipp::new(&sipp, "caller_presses_star.xml", callml.sip).pause(SECOND))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    let events: Vec<u8> = callee_phone
        .finish()
        .iter()
        .filter(|p| p.payload_type == 101)
        .map(|p| p.payload[0])
        .collect();
    assert!(!events.is_empty(), "the callee received telephone-events");
    assert!(events.iter().all(|&e| e == 10), "event 10 is *: {events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_are_dialled_through_the_configured_trunk() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let trunk = Sipp::listen(&sipp, "trunk_answers_number.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Dial timeLimit="1" action="/after"><Number>+1 (555) 123-4567</Number></Dial></Response>"#),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let dir = common::callml::TempDir::new("trunk-config");
    let config = dir.path().join("callml.toml");
    std::fs::write(
        &config,
        format!(
            "[trunk]\nhost = \"127.0.0.1\"\nport = {}\ntransport = \"udp\"\ncaller-id = \"+15550000000\"\n",
            trunk.addr().port()
        ),
    )
    .unwrap();
    let voice = app.url("/voice");
    let callml = Callml::start(
        "trunk",
        &["--voice-url", &voice, "--config", config.to_str().unwrap()],
    );
    let trunk = spawn(trunk);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    trunk.await.unwrap().assert_success();
    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let child = children(&calls, parent)[0];
    assert_eq!(child.from, "+15550000000");
    assert_eq!(child.to, "+15551234567");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_trunk_a_number_dial_fails_and_says_why() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            r#"<Response><Dial action="/after"><Number>+15551234567</Number></Dial></Response>"#,
        ),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("no-trunk", &app);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success();
    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "failed");
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    let child = children(&calls, parent)[0];
    assert_eq!(child.status, "failed");
    assert!(
        child
            .error_message
            .as_deref()
            .unwrap()
            .contains("no outbound SIP trunk is configured")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn legs_with_different_codecs_are_transcoded_both_ways() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee_phone = RtpPeer::start_with(
        Law::A,
        440.0,
        Duration::from_millis(800),
        Duration::from_secs(30),
    );
    let callee = Sipp::listen(&sipp, "uas_answers_pcma_then_hangs_up.xml")
        .key("rtp_port", callee_phone.port)
        .pause(2 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let callml = server("transcode", &app);
    let callee = spawn(callee);
    let caller_phone = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(30));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_phone.port))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    let to_callee = packets_with_tone_in(&callee_phone.finish(), 1000.0, Law::A);
    let to_caller = packets_with_tone_in(&caller_phone.finish(), 440.0, Law::Mu);
    assert!(
        to_callee >= 50,
        "the caller's PCMU 1 kHz reached the callee as PCMA: {to_callee}"
    );
    assert!(
        to_caller >= 50,
        "the callee's PCMA 440 Hz reached the caller as PCMU: {to_caller}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn early_media_from_the_callee_replaces_ringback() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee_phone = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(30));
    let callee = Sipp::listen(&sipp, "uas_early_media.xml")
        .key("rtp_port", callee_phone.port)
        .pause(2 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let callml = server("early-media", &app);
    let callee = spawn(callee);
    let heard = RtpCapture::start(Duration::from_millis(800), Duration::from_secs(30));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", heard.port))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    let heard = heard.finish();
    let ringback = packets_with_tones(&heard, &[440.0, 480.0], 0.3);
    let callee_audio = packets_with_tone(&heard, 440.0);
    assert!(
        ringback < 10,
        "the 183's media replaced the ringback: {ringback} ringback packets"
    );
    // Ringing lasts 2 s: the callee's audio during it (100 packets) and after the answer.
    // Without early media the caller would hear 100 packets of ringback and only the
    // bridged part of the callee's audio.
    assert!(
        callee_audio >= 100,
        "the callee's 440 Hz while ringing and bridged: {callee_audio} of {} packets",
        heard.len()
    );
    drop(callml);
}

/// The fraction of the 20 ms frames of `samples[at..at + window]` (8 kHz) whose energy is
/// mostly (`> 0.3`) the tone at `frequency`. Frame by frame: a bridge may repeat or drop a
/// frame, which breaks the tone's phase between frames.
fn share(samples: &[i16], at: usize, window: usize, frequency: f64) -> f64 {
    let frames: Vec<&[i16]> = samples[at..at + window].chunks_exact(160).collect();
    let toned = frames
        .iter()
        .filter(|frame| tone_ratio(frame, frequency, 8000.0) > 0.3)
        .count();
    toned as f64 / frames.len() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn dial_record_from_answer_dual_records_each_party_on_its_own_channel() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee_phone = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(30));
    let callee = Sipp::listen(&sipp, "uas_rings_then_answers.xml")
        .key("rtp_port", callee_phone.port)
        .pause(2 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" record="record-from-answer-dual"
                 recordingStatusCallback="/dial-recording">
                 <Sip>sip:bob@{};transport=udp</Sip>
               </Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    app.serve("/dial-recording", Reply::status(204));
    let callml = server("dial-record-dual", &app);
    let callee = spawn(callee);
    let caller_phone = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(30));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_phone.port))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    // Recording keeps the same-codec bridge on the frame path: both directions still flow.
    assert!(packets_with_tone(&callee_phone.finish(), 1000.0) >= 50);
    assert!(packets_with_tone(&caller_phone.finish(), 440.0) >= 50);

    let after = &app.wait_for("/after", 1, 10 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    let sid = param(after, "RecordingSid");
    let url = param(after, "RecordingUrl");
    assert!(url.ends_with(&format!("/Recordings/{sid}")), "{url}");
    let duration: u32 = param(after, "RecordingDuration").parse().unwrap();
    assert!(
        (1..=3).contains(&duration),
        "the 2 s the parties talked: {duration} s"
    );
    let callback = &app.wait_for("/dial-recording", 1, 10 * SECOND).await[0];
    assert_eq!(param(callback, "RecordingStatus"), "completed");
    assert_eq!(param(callback, "RecordingSource"), "DialVerb");
    assert_eq!(param(callback, "RecordingChannels"), "2");
    assert_eq!(param(callback, "RecordingSid"), sid);
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    assert_eq!(param(callback, "CallSid"), parent.sid, "the parent call's");

    let (rate, channels, samples) = read_wav(&download(&callml, TOKEN, url).await);
    assert_eq!((rate, channels), (8000, 2));
    let caller: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let callee: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let middle = caller.len() / 2 - 2000;
    assert!(
        share(&caller, middle, 4000, 1000.0) > 0.8,
        "the caller's 1 kHz on the left"
    );
    assert!(share(&caller, middle, 4000, 440.0) < 0.05);
    assert!(
        share(&callee, middle, 4000, 440.0) > 0.8,
        "the callee's 440 Hz on the right"
    );
    assert!(share(&callee, middle, 4000, 1000.0) < 0.05);
}

#[tokio::test(flavor = "multi_thread")]
async fn dial_record_from_ringing_keeps_the_ringback_and_the_chosen_track() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee_phone = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(30));
    let callee = Sipp::listen(&sipp, "uas_rings_then_answers.xml")
        .key("rtp_port", callee_phone.port)
        .pause(2 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" record="record-from-ringing"
                 recordingTrack="outbound">
                 <Sip>sip:bob@{};transport=udp</Sip>
               </Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("dial-record-ringing", &app);
    let callee = spawn(callee);
    let caller_phone = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(30));
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_phone.port))
        .await
        .unwrap()
        .assert_success();
    callee.await.unwrap().assert_success();
    drop((callee_phone.finish(), caller_phone.finish()));

    let after = &app.wait_for("/after", 1, 10 * SECOND).await[0];
    let (rate, channels, samples) =
        read_wav(&download(&callml, TOKEN, param(after, "RecordingUrl")).await);
    assert_eq!((rate, channels), (8000, 1));
    let seconds = samples.len() as f64 / 8000.0;
    assert!(
        (3.0..4.5).contains(&seconds),
        "1.5 s of ringing and 2 s of talk: {seconds:.2} s"
    );
    // US ringback is 440 + 480 Hz; the callee sends 440 Hz alone.
    assert!(
        share(&samples, 2000, 4000, 480.0) > 0.8,
        "the ringback the caller heard opens the recording"
    );
    let end = samples.len() - 6000;
    assert!(
        share(&samples, end, 4000, 440.0) > 0.8,
        "then the callee the caller heard"
    );
    assert!(
        share(&samples, end, 4000, 1000.0) < 0.05,
        "recordingTrack=outbound leaves the caller out"
    );
}

/// Deterministic white noise at 8 kHz (xorshift), `seconds` long: unlike a tone it correlates
/// with a copy of itself at one lag only.
fn noise(seed: u32, seconds: f64) -> Vec<i16> {
    let mut state = seed.max(1);
    (0..(8000.0 * seconds) as usize)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((state % 12_001) as i32 - 6_000) as i16
        })
        .collect()
}

/// baresip calls callml, which dials a second baresip that answers by itself; each plays its
/// own noise and records what it hears. Through the bridge each hears the other: the
/// recordings correlate with what the other side played.
#[tokio::test(flavor = "multi_thread")]
async fn baresip_on_both_ends_hear_each_other_through_the_bridge() {
    baresips_hear_each_other_through_the_bridge(false).await;
}

/// The same with `<Dial><Sip>sips:...`: callml offers `RTP/SAVP` over TLS to a callee that
/// takes only SRTP (`mediaenc=srtp-mand`), and the relay decrypts the callee's packets and
/// encrypts the caller's (plain RTP) for it; both still hear each other, and nothing failed
/// authentication.
#[tokio::test(flavor = "multi_thread")]
async fn a_sips_callee_with_mandatory_srtp_and_a_plain_caller_hear_each_other() {
    let Some((callee_log, callml_log)) = baresips_hear_each_other_through_the_bridge(true).await
    else {
        return;
    };
    assert!(
        callee_log.contains("SRTP is Enabled"),
        "the callee used SRTP:\n{callee_log}"
    );
    assert!(
        callml_log.contains("caller_srtp=false callee_srtp=true")
            && callml_log.contains("callee_srtp_auth_failures=0")
            && callml_log.contains("callee_srtp_replays=0"),
        "{callml_log}"
    );
}

/// Runs the bridge between two baresips (the callee on `sips:` with mandatory SRTP when
/// `srtp`); returns the callee's and callml's logs once both heard each other.
async fn baresips_hear_each_other_through_the_bridge(srtp: bool) -> Option<(String, String)> {
    let baresip = require_peer("baresip", "baresip")?;
    let dir = TempDir::new("bridge-baresip");
    let (caller_audio, callee_audio) = (noise(7, 4.0), noise(1234, 8.0));
    let caller_dir = dir.path().join("caller");
    let callee_dir = dir.path().join("callee");
    std::fs::create_dir_all(&caller_dir).unwrap();
    std::fs::create_dir_all(&callee_dir).unwrap();
    std::fs::write(caller_dir.join("plays.wav"), wav_bytes(&caller_audio, 8000)).unwrap();
    std::fs::write(callee_dir.join("plays.wav"), wav_bytes(&callee_audio, 8000)).unwrap();
    let caller = BaresipPhone::new(&caller_dir, &caller_dir.join("plays.wav"));
    let mut callee = BaresipPhone::new(&callee_dir, &callee_dir.join("plays.wav"));
    let mut tls_ca = None;
    if srtp {
        let openssl = require_peer("openssl", "openssl")?;
        let (cert, key) = self_signed(&openssl, dir.path());
        callee = callee
            .accepting_tls(&cert, &key)
            .with_media_encryption("srtp-mand");
        tls_ca = Some(cert);
    }
    let _callee_running = callee.start(&baresip, None, 20 * SECOND);

    let app = CustomerApp::start().await;
    let target = if srtp {
        format!("sips:phone@127.0.0.1:{}", callee.tls_port())
    } else {
        format!("sip:phone@127.0.0.1:{};transport=udp", callee.sip_port)
    };
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial><Sip>{target}</Sip></Dial></Response>"#
        )),
    );
    let voice = app.url("/voice");
    let mut args = vec!["--voice-url", &voice, "--auth-token", TOKEN];
    let ca = tls_ca
        .as_ref()
        .map(|cert| cert.to_str().unwrap().to_owned());
    if let Some(ca) = &ca {
        args.extend(["--tls-ca", ca]);
    }
    let callml = Callml::start("bridge-baresip", &args);
    let caller_running = caller.start(
        &baresip,
        Some(&format!("sip:bridge@{}", callml.sip)),
        8 * SECOND,
    );
    tokio::task::spawn_blocking(move || caller_running.wait())
        .await
        .unwrap();
    assert!(
        !callml.calls().is_empty(),
        "the caller's call never reached callml; the caller's log:\n{}",
        caller.log()
    );
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    assert!(
        calls.iter().all(|c| c.status == "completed" && c.answered),
        "{calls:?}\n{}",
        callml.log()
    );

    let (rate, channels, callee_heard) = read_wav(&callee.heard());
    assert_eq!((rate, channels), (8000, 1));
    let template = &caller_audio[8000..16000];
    let (correlation, lag) = best_correlation(&callee_heard, template, 0..callee_heard.len());
    assert!(
        correlation >= 0.9,
        "the callee heard the caller: {correlation:.3} at lag {lag}\n{}",
        callee.log()
    );
    let (_, _, caller_heard) = read_wav(&caller.heard());
    let template = &callee_audio[8000..16000];
    let (correlation, lag) = best_correlation(&caller_heard, template, 0..caller_heard.len());
    assert!(
        correlation >= 0.9,
        "the caller heard the callee: {correlation:.3} at lag {lag}\n{}",
        caller.log()
    );
    Some((callee.log(), callml.log()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callee_that_falls_silent_in_a_relayed_bridge_is_hung_up_and_the_document_goes_on() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    // The caller's phone keeps talking; the callee answers and never sends a packet.
    let caller_phone = RtpPeer::start(440.0, Duration::from_secs(30), Duration::from_secs(8));
    let silent_phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = Sipp::listen(&sipp, "uas_answers.xml")
        .key("rtp_port", silent_phone.local_addr().unwrap().port());
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after"><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let voice = app.url("/voice");
    let callml = Callml::start(
        "silent-callee",
        &[
            "--voice-url",
            &voice,
            "--auth-token",
            TOKEN,
            "--media-timeout",
            "2",
        ],
    );
    let callee = spawn(callee);
    let caller = spawn(
        Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_phone.port),
    );
    let after = &app.wait_for("/after", 1, 15 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    assert_eq!(param(after, "DialBridged"), "true");
    assert!(param(after, "DialCallDuration").parse::<u64>().unwrap() >= 2);
    caller.await.unwrap().assert_success();
    callee.await.unwrap().assert_success();
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    assert_eq!(
        parent.status, "completed",
        "the caller kept talking: {parent:?}"
    );
    let child = children(&calls, parent)[0];
    assert_eq!(
        child.error_message.as_deref(),
        Some("no RTP from the far end for 2 s")
    );
    assert_eq!(child.error_code, Some(32014), "Twilio's no-audio code");
    let heard = caller_phone.finish();
    assert!(!heard.is_empty(), "the caller heard ringback or the bridge");
    let mut relayed = [0u8; 256];
    silent_phone
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (len, _) = silent_phone
        .recv_from(&mut relayed)
        .expect("the caller's audio was relayed to the silent callee");
    assert_eq!((len, relayed[1] & 0x7f), (172, 0), "a PCMU packet");
}

/// `--max-call-duration` ends a bridged call even when its `<Dial timeLimit>` is longer: both
/// phones get a BYE from callml, and the call records Twilio's "maximum call duration" code.
#[tokio::test(flavor = "multi_thread")]
async fn the_maximum_call_duration_ends_a_bridge_whose_time_limit_is_longer() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "uas_answers.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeLimit="86400"><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let voice = app.url("/voice");
    let callml = Callml::start(
        "max-duration",
        &["--voice-url", &voice, "--max-call-duration", "3"],
    );
    let callee = spawn(callee);
    let caller = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip));
    caller.await.unwrap().assert_success();
    callee.await.unwrap().assert_success();
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls.iter().find(|c| c.direction == "inbound").unwrap();
    assert_eq!(parent.status, "completed");
    assert_eq!(parent.error_code, Some(32015), "{parent:?}");
    assert!(
        parent.duration.is_some_and(|d| (2..=3).contains(&d)),
        "answered at once, ended 3 s after the INVITE: {parent:?}"
    );
    let child = children(&calls, parent)[0];
    assert_eq!(child.status, "completed");
}
