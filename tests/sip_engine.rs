//! The SIP engine against real peers over loopback.
//!
//! sipp (Debian `sip-tester`) on both sides of the engine, over UDP and TCP: the engine (the
//! transport driver and endpoint, with this file playing the call layer) answers sipp's calls
//! with early and delayed offers, hold and resume, session refreshes and CANCEL; it calls
//! sipp callees with both offer styles, through 401 and 407 challenges, losing a CANCEL race,
//! holding and resuming them, and refreshing its session timer. The real `callml serve`
//! binary takes a baresip call over TLS (`--sip-tls`, a self-signed certificate made with
//! openssl) and calls through kamailio acting as a Record-Routing proxy.

mod common;

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use callml::sip::endpoint::{
    CallKey, CallSignal, Credentials, EndpointConfig, OutboundInvite, Target,
};
use callml::sip::msg::{Host, NameAddr, SipUri, Transport, Uri};
use callml::sip::resolve::StaticResolver;
use callml::transport::tls::{TlsConnector, Trust};
use callml::transport::{
    IncomingCall, Routing, SignalReceiver, SignalSender, SipHandle, SipSockets, incoming_channel,
};
use common::app::{CustomerApp, Reply};
use common::baresip::BaresipPhone;
use common::callml::{Callml, TempDir};
use common::kamailio::{self, Kamailio};
use common::rtp::tone_ratio;
use common::sipp::{Sipp, SippRun, free_udp_port, require_peer};
use common::tls::self_signed;
use common::wav::{read_wav, wav_bytes};
use tokio::sync::{mpsc, watch};

const SECOND: Duration = Duration::from_secs(1);

/// The SIP engine on loopback, with this test as its call layer.
struct Engine {
    sip: SipHandle,
    incoming: mpsc::Receiver<IncomingCall>,
    addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

impl Engine {
    async fn start() -> Engine {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("callml=debug")
            .with_test_writer()
            .try_init();
        let sockets = SipSockets::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = sockets.local_addr().unwrap();
        let config = EndpointConfig::new(Host::Ip(addr.ip()), addr.port(), "callml/engine-test");
        let (incoming_tx, incoming) = incoming_channel();
        let (stop, shutdown) = watch::channel(false);
        let routing = Routing {
            resolver: Arc::new(StaticResolver::new()),
            default_transport: Transport::Udp,
        };
        let (sip, _driver) = sockets.spawn(
            config,
            TlsConnector::new(&Trust::PublicRoots).unwrap(),
            routing,
            incoming_tx,
            shutdown,
        );
        Engine {
            sip,
            incoming,
            addr,
            _stop: stop,
        }
    }

    async fn next_call(&mut self) -> IncomingCall {
        tokio::time::timeout(30 * SECOND, self.incoming.recv())
            .await
            .expect("a call in time")
            .expect("the driver runs")
    }

    /// Calls `callee` (a sipp) over its transport; returns the leg and its signals.
    fn call(&self, callee: SocketAddr, tcp: bool, offer: bool) -> (CallKey, SignalReceiver) {
        let transport = if tcp { "tcp" } else { "udp" };
        let target = match Uri::parse(&format!("sip:bob@{callee};transport={transport}")).unwrap() {
            Uri::Sip(uri) => uri,
            other => panic!("{other:?}"),
        };
        let mut invite = outbound(target);
        if offer {
            invite = invite.with_sdp(sdp(1, "sendrecv"));
        }
        self.place(invite)
    }

    fn place(&self, invite: OutboundInvite) -> (CallKey, SignalReceiver) {
        let (signal_tx, signals): (SignalSender, _) = mpsc::unbounded_channel();
        (self.sip.invite(invite, signal_tx), signals)
    }
}

fn outbound(target: SipUri) -> OutboundInvite {
    OutboundInvite::new(
        Uri::Sip(target.clone()),
        NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
        NameAddr::new(Uri::Sip(target.without_params())),
        Target::Uri(target),
    )
    .with_header("X-Twilio-CallSid", format!("CA{}", "0".repeat(32)))
}

/// Our session description, at this origin version and direction.
fn sdp(version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=callml 5 {version} IN IP4 127.0.0.1\r\ns=callml\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na={direction}\r\n",
        free_udp_port()
    )
}

async fn next(signals: &mut SignalReceiver, within: Duration) -> CallSignal {
    tokio::time::timeout(within, signals.recv())
        .await
        .expect("a signal in time")
        .expect("the driver runs")
        .1
}

/// Plays the call layer for an inbound call: rings, answers (with our offer when the INVITE
/// had none) and collects every signal until the call ends.
async fn answer(call: IncomingCall) -> (bool, Vec<CallSignal>) {
    let offered = call.has_offer();
    let IncomingCall {
        key,
        mut signals,
        sip,
        ..
    } = call;
    let _guard = sip.guard(key);
    sip.ring(key);
    sip.answer(key, sdp(1, "sendrecv"));
    let mut seen = Vec::new();
    loop {
        let signal = next(&mut signals, 30 * SECOND).await;
        let done = matches!(signal, CallSignal::Bye | CallSignal::NoAck);
        seen.push(signal);
        if done {
            return (offered, seen);
        }
    }
}

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

/// Starts a sipp callee and waits until it holds its port (a call to it over TCP would
/// otherwise be refused while it starts).
async fn listening(sipp: Sipp, tcp: bool) -> tokio::task::JoinHandle<SippRun> {
    let addr = sipp.addr();
    let run = spawn(sipp);
    for _ in 0..200 {
        let taken = if tcp {
            std::net::TcpListener::bind(addr).is_err()
        } else {
            std::net::UdpSocket::bind(addr).is_err()
        };
        if taken {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sipp did not bind {addr}");
}

fn with_transport(sipp: Sipp, tcp: bool) -> Sipp {
    if tcp { sipp.tcp() } else { sipp }
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_calls_in_with_early_and_delayed_offers_over_udp_and_tcp() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    for tcp in [false, true] {
        let mut engine = Engine::start().await;
        let run = spawn(with_transport(
            Sipp::new(&program, "caller_hangs_up.xml", engine.addr).pause(SECOND / 2),
            tcp,
        ));
        let (offered, signals) = answer(engine.next_call().await).await;
        assert!(offered);
        assert_eq!(
            signals,
            vec![CallSignal::Acked { sdp: None }, CallSignal::Bye]
        );
        run.await.unwrap().assert_success();

        let run = spawn(with_transport(
            Sipp::new(&program, "engine_uac_delayed_offer.xml", engine.addr).pause(SECOND / 2),
            tcp,
        ));
        let (offered, signals) = answer(engine.next_call().await).await;
        run.await.unwrap().assert_success();
        assert!(!offered, "the INVITE had no offer");
        match &signals[..] {
            [CallSignal::Acked { sdp: Some(answer) }, CallSignal::Bye] => {
                assert!(answer.starts_with(b"v=0"), "{answer:?}")
            }
            other => panic!("tcp={tcp}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_holds_resumes_refreshes_and_cancels() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    for tcp in [false, true] {
        let mut engine = Engine::start().await;
        // Nobody answers the re-offers here: the engine's default answers hold and resume.
        let run = spawn(with_transport(
            Sipp::new(&program, "engine_uac_hold_resume.xml", engine.addr),
            tcp,
        ));
        let (_, signals) = answer(engine.next_call().await).await;
        run.await.unwrap().assert_success();
        let holds: Vec<bool> = signals
            .iter()
            .filter_map(|s| match s {
                CallSignal::Reoffer { held, .. } => Some(*held),
                _ => None,
            })
            .collect();
        assert_eq!(holds, vec![true, false], "tcp={tcp}: {signals:?}");

        let run = spawn(with_transport(
            Sipp::new(&program, "engine_uac_session_refresh.xml", engine.addr),
            tcp,
        ));
        let (_, signals) = answer(engine.next_call().await).await;
        assert_eq!(
            signals,
            vec![CallSignal::Acked { sdp: None }, CallSignal::Bye]
        );
        run.await.unwrap().assert_success();

        let run = spawn(with_transport(
            Sipp::new(&program, "cancel_while_ringing.xml", engine.addr),
            tcp,
        ));
        let call = engine.next_call().await;
        call.sip.ring(call.key);
        let mut signals = call.signals;
        assert_eq!(next(&mut signals, 10 * SECOND).await, CallSignal::Canceled);
        run.await.unwrap().assert_success();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_calls_sipp_with_early_and_delayed_offers_over_udp_and_tcp() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let engine = Engine::start().await;
    for tcp in [false, true] {
        let callee = with_transport(Sipp::listen(&program, "uas_answers.xml"), tcp);
        let callee_addr = callee.addr();
        let run = listening(callee, tcp).await;
        let (key, mut signals) = engine.call(callee_addr, tcp, true);
        loop {
            match next(&mut signals, 10 * SECOND).await {
                CallSignal::Progress(_) => {}
                CallSignal::Answered(ok) => {
                    assert_eq!(ok.status, 200);
                    break;
                }
                other => panic!("tcp={tcp}: {other:?}"),
            }
        }
        engine.sip.hangup(key);
        run.await.unwrap().assert_success();

        let callee = with_transport(Sipp::listen(&program, "engine_uas_delayed_offer.xml"), tcp);
        let callee_addr = callee.addr();
        let run = listening(callee, tcp).await;
        let (key, mut signals) = engine.call(callee_addr, tcp, false);
        loop {
            match next(&mut signals, 10 * SECOND).await {
                CallSignal::Progress(_) => {}
                CallSignal::Answered(ok) => {
                    assert!(ok.body.starts_with(b"v=0"), "the callee's offer");
                    break;
                }
                other => panic!("tcp={tcp}: {other:?}"),
            }
        }
        engine.sip.acknowledge(key, sdp(1, "sendrecv"));
        engine.sip.hangup(key);
        run.await.unwrap().assert_success();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_answers_401_and_407_challenges_with_its_credentials() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let engine = Engine::start().await;
    for (status, tcp) in [(401, false), (407, false), (401, true), (407, true)] {
        let callee = with_transport(
            Sipp::listen(&program, &format!("engine_uas_challenge_{status}.xml")),
            tcp,
        );
        let transport = if tcp { "tcp" } else { "udp" };
        let target = match Uri::parse(&format!("sip:bob@{};transport={transport}", callee.addr()))
            .unwrap()
        {
            Uri::Sip(uri) => uri,
            other => panic!("{other:?}"),
        };
        let run = listening(callee, tcp).await;
        let (key, mut signals) = engine.place(
            outbound(target)
                .with_sdp(sdp(1, "sendrecv"))
                .with_credentials(Credentials::new("alice", "s3cret")),
        );
        match next(&mut signals, 10 * SECOND).await {
            CallSignal::Answered(ok) => assert_eq!(ok.status, 200),
            other => panic!("{status} over {transport}: {other:?}"),
        }
        engine.sip.hangup(key);
        let run = run.await.unwrap();
        run.assert_success();
        assert!(
            !run.messages.contains("s3cret"),
            "the password never crosses the wire"
        );
        if status == 407 {
            // sipp's verifyauth reads only Authorization: check the digest here.
            let credentials = run
                .messages
                .lines()
                .find_map(|l| l.strip_prefix("Proxy-Authorization: Digest "))
                .expect("Proxy-Authorization sent");
            assert_eq!(
                expected_response(credentials, "INVITE", "alice", "s3cret"),
                param(credentials, "response")
            );
        }
    }
}

/// A parameter of a Digest credentials value.
fn param<'a>(credentials: &'a str, name: &str) -> &'a str {
    credentials
        .split(", ")
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
        .unwrap_or_else(|| panic!("no {name} in {credentials}"))
}

/// RFC 2617 §3.2.2.1 with qop=auth and MD5, written out here independently of callml.
fn expected_response(credentials: &str, method: &str, user: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    let hex = |text: String| {
        Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let ha1 = hex(format!("{user}:{}:{password}", param(credentials, "realm")));
    let ha2 = hex(format!("{method}:{}", param(credentials, "uri")));
    hex(format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        param(credentials, "nonce"),
        param(credentials, "nc"),
        param(credentials, "cnonce"),
        param(credentials, "qop")
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_loses_a_cancel_race_and_ends_the_call_with_bye() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let engine = Engine::start().await;
    for tcp in [false, true] {
        let callee = with_transport(Sipp::listen(&program, "engine_uas_cancel_race.xml"), tcp);
        let callee_addr = callee.addr();
        let run = listening(callee, tcp).await;
        let (key, mut signals) = engine.call(callee_addr, tcp, true);
        match next(&mut signals, 10 * SECOND).await {
            CallSignal::Progress(ringing) => assert_eq!(ringing.status, 180),
            other => panic!("{other:?}"),
        }
        engine.sip.hangup(key);
        assert_eq!(next(&mut signals, 10 * SECOND).await, CallSignal::Canceled);
        run.await.unwrap().assert_success();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_holds_and_resumes_a_callee() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let engine = Engine::start().await;
    for tcp in [false, true] {
        let callee = with_transport(Sipp::listen(&program, "engine_uas_hold_resume.xml"), tcp);
        let callee_addr = callee.addr();
        let run = listening(callee, tcp).await;
        let (key, mut signals) = engine.call(callee_addr, tcp, true);
        assert!(matches!(
            next(&mut signals, 10 * SECOND).await,
            CallSignal::Answered(_)
        ));
        engine.sip.reinvite(key, sdp(1, "sendonly"));
        match next(&mut signals, 10 * SECOND).await {
            CallSignal::Reanswered { sdp, held } => {
                assert!(!held, "recvonly is not a hold of us");
                assert!(contains(&sdp, "a=recvonly"));
            }
            other => panic!("{other:?}"),
        }
        engine.sip.reinvite(key, sdp(1, "sendrecv"));
        assert!(matches!(
            next(&mut signals, 10 * SECOND).await,
            CallSignal::Reanswered { held: false, .. }
        ));
        engine.sip.hangup(key);
        run.await.unwrap().assert_success();
    }
}

fn contains(body: &Bytes, text: &str) -> bool {
    std::str::from_utf8(body).is_ok_and(|b| b.contains(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_refreshes_its_session_timer_with_update() {
    let Some(program) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let engine = Engine::start().await;
    let callee = Sipp::listen(&program, "engine_uas_session_refresh.xml");
    let callee_addr = callee.addr();
    let run = listening(callee, false).await;
    let (_key, mut signals) = engine.call(callee_addr, false, true);
    assert!(matches!(
        next(&mut signals, 10 * SECOND).await,
        CallSignal::Answered(_)
    ));
    // The refresh is due at half the 90 s interval; the callee hangs up after answering it.
    assert_eq!(next(&mut signals, 60 * SECOND).await, CallSignal::Bye);
    run.await.unwrap().assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_callml_over_tls() {
    baresip_calls_callml_over_tls_and_hears_a_tone(None).await;
}

/// The same call with baresip's `mediaenc=srtp-mand`: it offers `RTP/SAVP` with SDES keys and
/// refuses any answer in the clear, so its established call and the tone it heard are
/// callml's SRTP (answer, protect) at work.
#[tokio::test(flavor = "multi_thread")]
async fn baresip_calls_callml_over_tls_with_mandatory_srtp_and_hears_the_tone() {
    let (phone_log, callml_log) =
        baresip_calls_callml_over_tls_and_hears_a_tone(Some("srtp-mand")).await;
    assert!(
        phone_log.contains("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)"),
        "baresip used SRTP:\n{phone_log}"
    );
    assert!(
        callml_log.contains("srtp_auth_failures=0"),
        "nothing failed authentication:\n{callml_log}"
    );
}

/// baresip (with `media_encryption` as its `mediaenc`, if any) calls callml over TLS and
/// hears the tone callml plays; returns the phone's and callml's logs.
async fn baresip_calls_callml_over_tls_and_hears_a_tone(
    media_encryption: Option<&str>,
) -> (String, String) {
    let (Some(baresip), Some(openssl)) = (
        require_peer("baresip", "baresip"),
        require_peer("openssl", "openssl"),
    ) else {
        return (String::new(), String::new());
    };
    let dir = TempDir::new("baresip-tls");
    let (cert, key) = self_signed(&openssl, dir.path());
    let app = CustomerApp::start().await;
    let tone: Vec<i16> = (0..8000)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    app.serve(
        "/tone.wav",
        Reply::binary("audio/wav", wav_bytes(&tone, 8000)),
    );
    app.serve(
        "/voice",
        Reply::xml("<Response><Play>/tone.wav</Play><Hangup/></Response>"),
    );
    let voice = app.url("/voice");
    let callml = Callml::start_tls("tls", &cert, &key, &["--voice-url", &voice]);
    let tls_addr = callml.sip_tls.expect("a TLS listener");

    let phone_dir = dir.path().join("phone");
    let wav = dir.path().join("silence.wav");
    std::fs::write(&wav, silence_wav(4.0)).unwrap();
    let mut phone = BaresipPhone::new(&phone_dir, &wav).over_tls(&cert);
    if let Some(mode) = media_encryption {
        phone = phone.with_media_encryption(mode);
    }
    let running = phone.start(
        &baresip,
        Some(&format!("sip:hello@{tls_addr};transport=tls")),
        5 * SECOND,
    );
    tokio::task::spawn_blocking(move || running.wait())
        .await
        .unwrap();
    let calls = callml.wait_for_ended_calls(1, 30 * SECOND);
    let call = &calls[0];
    assert_eq!(call.direction, "inbound");
    assert_eq!(call.status, "completed", "{call:?}\n{}", callml.log());
    let log = callml.log();
    assert!(
        log.contains("SIP connection opened peer=127.0.0.1") && log.contains("transport=TLS"),
        "the call came over TLS:\n{log}"
    );
    // What the phone saw: the call established, no refusal to send to our Contact, and the
    // BYE from callml after the tone.
    let seen = phone.log();
    assert!(seen.contains("Call established"), "{seen}");
    assert!(!seen.contains("Function not implemented"), "{seen}");
    assert!(seen.contains("session closed"), "{seen}");
    let (_, _, heard) = read_wav(&phone.heard());
    let toned = heard
        .chunks(160)
        .filter(|frame| tone_ratio(frame, 440.0, 8000.0) > 0.8)
        .count();
    assert!(
        toned >= 40,
        "the phone heard the 440 Hz tone over TLS: {toned} of {} frames\n{seen}",
        heard.len() / 160
    );
    (seen, log)
}

/// A 16-bit mono 8 kHz WAV of silence.
fn silence_wav(seconds: f64) -> Vec<u8> {
    wav_bytes(&vec![0; (8000.0 * seconds) as usize], 8000)
}

/// A minimal kamailio configuration: record-route every dialog-creating request and relay it
/// to callml; requests inside dialogs follow their Route set.
fn kamailio_config(listen: u16, callml: SocketAddr) -> String {
    let head = kamailio::config_head(listen, &[]);
    format!(
        r#"{head}
request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    record_route();
    $du = "sip:{callml}";
    t_relay();
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_through_kamailio_follow_its_record_route() {
    let (Some(sipp), Some(kamailio)) = (require_peer("sipp", "sip-tester"), kamailio::program())
    else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    let voice = app.url("/voice");
    let callml = Callml::start("kamailio", &["--voice-url", &voice]);
    let proxy = Kamailio::start(&kamailio, "kamailio", |port| {
        kamailio_config(port, callml.sip)
    });
    let proxy_port = proxy.addr.port();
    let run = tokio::task::spawn_blocking({
        let sipp = sipp.clone();
        move || Sipp::new(&sipp, "proxied_caller.xml", proxy.addr).run()
    })
    .await
    .unwrap();
    run.assert_success();
    let bye = run
        .messages
        .split("\n\n")
        .find(|m| m.contains("BYE sip:"))
        .unwrap_or_else(|| panic!("no BYE received:\n{}", run.messages));
    assert!(
        bye.contains(&format!("Via: SIP/2.0/UDP 127.0.0.1:{proxy_port}")),
        "callml's BYE went through the proxy (its Via is on top):\n{bye}"
    );
    let calls = callml.wait_for_ended_calls(1, 10 * SECOND);
    assert_eq!(calls[0].status, "completed");
}
