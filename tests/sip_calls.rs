//! The SIP engine's features as calls use them, end to end against real peers: `<Dial><Sip>`
//! over TLS (callml's default transport) to another callml's `--sip-tls` listener, and to its
//! `sips:` URI with SRTP,
//! `<Sip username password>` answering a sipp callee's digest challenge with
//! `sessionTimeout` asked for in `Session-Expires`, keys pressed as SIP INFO reaching
//! `<Gather>`, and a caller's hold and resume answered, reported and passed on to a bridged
//! callee.

mod common;

use std::time::Duration;

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::callml::{Callml, TempDir};
use common::sipp::{Sipp, SippRun, require_peer};
use common::tls::self_signed;

const SECOND: Duration = Duration::from_secs(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

fn param<'a>(request: &'a RecordedRequest, name: &str) -> &'a str {
    request
        .param(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", request.form))
}

/// callml dials `sip:callee@127.0.0.1:PORT` (no transport named: TLS) to a second callml
/// listening with `--sip-tls` and a self-signed certificate. With that certificate trusted
/// (`--tls-ca`) the call connects over TLS; without it the certificate is refused and the
/// dial fails.
#[tokio::test(flavor = "multi_thread")]
async fn dial_sip_goes_over_tls_and_verifies_the_certificate() {
    let (Some(sipp), Some(openssl)) = (
        require_peer("sipp", "sip-tester"),
        require_peer("openssl", "openssl"),
    ) else {
        return;
    };
    let dir = TempDir::new("dial-tls-cert");
    let (cert, key) = self_signed(&openssl, dir.path());
    let callee_app = CustomerApp::start().await;
    callee_app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    let callee = Callml::start_tls(
        "dial-tls-callee",
        &cert,
        &key,
        &["--voice-url", &callee_app.url("/voice")],
    );
    let tls_addr = callee.sip_tls.expect("a TLS listener");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" timeout="5"><Sip>sip:callee@{tls_addr}</Sip></Dial></Response>"#
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let voice = app.url("/voice");
    let trusting = Callml::start(
        "dial-tls-trusting",
        &["--voice-url", &voice, "--tls-ca", cert.to_str().unwrap()],
    );
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", trusting.sip))
        .await
        .unwrap()
        .assert_success_with_log(&trusting.log());
    let after = &app.wait_for("/after", 1, 10 * SECOND).await[0];
    assert_eq!(
        param(after, "DialCallStatus"),
        "completed",
        "{}",
        trusting.log()
    );
    let answered = callee.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(answered[0].direction, "inbound");
    assert!(answered[0].answered);
    let log = callee.log();
    assert!(
        log.contains("SIP connection opened") && log.contains("transport=TLS"),
        "the call came over TLS:\n{log}"
    );

    let doubting = Callml::start("dial-tls-doubting", &["--voice-url", &voice]);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", doubting.sip))
        .await
        .unwrap()
        .assert_success_with_log(&doubting.log());
    let after = &app.wait_for("/after", 2, 15 * SECOND).await[1];
    // A refused certificate is a transport failure (RFC 3261 §8.1.3.1 treats it as 503): the
    // dial failed; it is not a callee that did not answer. No response came, so there is no
    // DialSipResponseCode.
    assert_eq!(param(after, "DialCallStatus"), "failed");
    assert!(after.param("DialSipResponseCode").is_none());
    assert!(
        doubting.log().contains("SIP TLS connection failed"),
        "{}",
        doubting.log()
    );
    assert_eq!(
        callee.calls().len(),
        1,
        "an unverified server is never called"
    );
}

/// callml dials `sips:` another callml's `--sip-tls` listener: it offers `RTP/SAVP` with both
/// suites and requires SRTP, the callee answers with a key of its own, and the relay takes the
/// callee's SRTP (its silence while it pauses) and passes it on decrypted to the plain caller:
/// packets received on the callee leg, none failing authentication.
#[tokio::test(flavor = "multi_thread")]
async fn dial_sips_to_another_callml_sets_up_srtp() {
    let (Some(sipp), Some(openssl)) = (
        require_peer("sipp", "sip-tester"),
        require_peer("openssl", "openssl"),
    ) else {
        return;
    };
    let dir = TempDir::new("dial-sips-srtp");
    let (cert, key) = self_signed(&openssl, dir.path());
    let callee_app = CustomerApp::start().await;
    callee_app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"2\"/><Hangup/></Response>"),
    );
    let callee = Callml::start_tls(
        "dial-sips-callee",
        &cert,
        &key,
        &["--voice-url", &callee_app.url("/voice")],
    );
    let tls_addr = callee.sip_tls.expect("a TLS listener");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" timeout="5"><Sip>sips:callee@{tls_addr}</Sip></Dial></Response>"#
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let caller = Callml::start(
        "dial-sips-caller",
        &[
            "--voice-url",
            &app.url("/voice"),
            "--tls-ca",
            cert.to_str().unwrap(),
        ],
    );
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", caller.sip))
        .await
        .unwrap()
        .assert_success_with_log(&caller.log());
    let after = &app.wait_for("/after", 1, 10 * SECOND).await[0];
    assert_eq!(
        param(after, "DialCallStatus"),
        "completed",
        "{}",
        caller.log()
    );
    let log = caller.log();
    assert!(
        log.contains("caller_srtp=false callee_srtp=true"),
        "relayed with SRTP on the callee leg:\n{log}"
    );
    let bridge = log
        .lines()
        .find(|line| line.contains("bridge ended"))
        .unwrap_or_else(|| panic!("no bridge ended line:\n{log}"));
    assert!(bridge.contains("callee_srtp_auth_failures=0"), "{bridge}");
    let callee_stats = &bridge[bridge.find("callee=StreamStats").expect("callee stats")..];
    let received: u64 = callee_stats
        .split("packets_received: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|count| count.parse().ok())
        .expect("packets_received");
    assert!(
        received >= 25,
        "the callee's SRTP was received and decrypted: {received} packets\n{bridge}"
    );
}

/// The callee challenges the INVITE with 401; `<Sip username password>` answers it (sipp
/// verifies the digest, or refuses the call with 403), and the INVITEs ask for the
/// `sessionTimeout` as `Session-Expires`.
#[tokio::test(flavor = "multi_thread")]
async fn sip_credentials_answer_the_callee_challenge_and_session_timeout_is_asked() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "engine_uas_challenge_401.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" timeLimit="2">
                 <Sip username="alice" password="s3cret" sessionTimeout="1800">sip:bob@{};transport=udp</Sip>
               </Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = Callml::start("dial-digest", &["--voice-url", &app.url("/voice")]);
    let callee = spawn(callee);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let callee = callee.await.unwrap();
    callee.assert_success_with_log(&callml.log());
    let after = &app.wait_for("/after", 1, 10 * SECOND).await[0];
    assert_eq!(param(after, "DialCallStatus"), "completed");
    let invites: Vec<&str> = callee
        .messages
        .split("\n\n")
        .filter(|m| m.contains("INVITE sip:bob@"))
        .collect();
    assert_eq!(invites.len(), 2, "{}", callee.messages);
    for invite in &invites {
        assert!(
            invite.contains("Session-Expires: 1800"),
            "sessionTimeout asked for:\n{invite}"
        );
    }
    assert!(invites[1].contains("Authorization: Digest username=\"alice\""));
    assert!(
        !callml.log().contains("s3cret"),
        "the password is never logged"
    );
}

/// Keys pressed as SIP INFO (`application/dtmf-relay` and `application/dtmf`) reach
/// `<Gather>`, which stops at `#`.
#[tokio::test(flavor = "multi_thread")]
async fn keys_sent_by_sip_info_reach_gather() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Gather action="/keys" timeout="10"/></Response>"#),
    );
    app.serve("/keys", Reply::xml("<Response><Hangup/></Response>"));
    let callml = Callml::start("sip-info-keys", &["--voice-url", &app.url("/voice")]);
    spawn(Sipp::new(&sipp, "caller_presses_keys_by_info.xml", callml.sip).pause(SECOND))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let keys = &app.wait_for("/keys", 1, 10 * SECOND).await[0];
    assert_eq!(param(keys, "Digits"), "42");
}

/// The caller holds (`sendonly`) and resumes (`sendrecv`) in re-INVITEs: the call answers
/// each (`recvonly`, then `sendrecv`, with the origin version counted up) and logs the hold
/// and the resume.
#[tokio::test(flavor = "multi_thread")]
async fn a_callers_hold_and_resume_are_answered_and_reported() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Pause length="20"/></Response>"#),
    );
    let callml = Callml::start("hold", &["--voice-url", &app.url("/voice")]);
    spawn(Sipp::new(&sipp, "engine_uac_hold_resume.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let log = callml.log();
    assert!(log.contains("the far end put the call on hold"), "{log}");
    assert!(log.contains("resumed"), "{log}");
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "completed");
}

/// A bridged caller holds and resumes: each re-INVITE is answered and passed on to the callee
/// as a re-INVITE of callml's own (`sendonly`, then `sendrecv`), which the callee checks.
#[tokio::test(flavor = "multi_thread")]
async fn a_bridged_callers_hold_and_resume_reach_the_callee() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callee = Sipp::listen(&sipp, "uas_expects_hold_and_resume.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    let callml = Callml::start("bridged-hold", &["--voice-url", &app.url("/voice")]);
    let callee = spawn(callee);
    spawn(Sipp::new(&sipp, "caller_holds_and_resumes.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    callee.await.unwrap().assert_success_with_log(&callml.log());
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    assert!(calls.iter().all(|c| c.status == "completed"), "{calls:?}");
}
