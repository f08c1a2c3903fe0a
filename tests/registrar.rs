//! The registrar against real phones: sipp and baresip register with digest over UDP and TCP
//! to a domain made through the REST API (SIP Domains, Credential Lists, Credentials, the
//! registration mapping); wrong credentials get 403; bindings are stored and survive a restart;
//! a TCP binding goes when its connection closes.

mod common;

use std::time::{Duration, Instant};

use common::app::{CustomerApp, Reply};
use common::baresip::BaresipPhone;
use common::callml::{Callml, TempDir};
use common::kamailio::{self, Kamailio};
use common::python::{pytest, python_venv};
use common::rest::{TOKEN, request};
use common::rtp::{RtpPeer, packets_with_tone};
use common::sipp::{Sipp, require_peer};
use common::tls::self_signed;
use common::wav::wav_bytes;

const DOMAIN: &str = "phones.callml.test";
const PASSWORD: &str = "Corr3ct-Horse-Battery";

async fn post(callml: &Callml, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let (status, body) = request(callml, reqwest::Method::POST, path, form).await;
    assert_eq!(status, 201, "POST {path}: {body}");
    body
}

/// A domain taking registrations and calls from `alice` and `bob` (one credential list mapped
/// for both); its sid.
async fn phones_domain(callml: &Callml, voice_url: &str) -> String {
    let domain = post(
        callml,
        "SIP/Domains.json",
        &[
            ("DomainName", DOMAIN),
            ("SipRegistration", "true"),
            ("VoiceUrl", voice_url),
        ],
    )
    .await;
    let domain_sid = domain["sid"].as_str().unwrap().to_owned();
    let list = post(
        callml,
        "SIP/CredentialLists.json",
        &[("FriendlyName", "Phones")],
    )
    .await;
    let list_sid = list["sid"].as_str().unwrap().to_owned();
    for user in ["alice", "bob"] {
        post(
            callml,
            &format!("SIP/CredentialLists/{list_sid}/Credentials.json"),
            &[("Username", user), ("Password", PASSWORD)],
        )
        .await;
    }
    for kind in ["Registrations", "Calls"] {
        post(
            callml,
            &format!("SIP/Domains/{domain_sid}/Auth/{kind}/CredentialListMappings.json"),
            &[("CredentialListSid", &list_sid)],
        )
        .await;
    }
    domain_sid
}

/// The stored bindings: (user, contact, transport).
fn stored_bindings(callml: &Callml) -> Vec<(String, String, String)> {
    let db = callml.db();
    let mut stmt = db
        .prepare("SELECT username, contact, transport FROM sip_bindings ORDER BY username, contact")
        .expect("query bindings");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

/// Waits (bounded) until the stored bindings satisfy `done`.
fn wait_for_bindings(
    callml: &Callml,
    what: &str,
    done: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    wait_for_bindings_or(callml, what, done, String::new)
}

/// [`wait_for_bindings`], with `context` (a peer's log) in the failure message.
fn wait_for_bindings_or(
    callml: &Callml,
    what: &str,
    done: impl Fn(&[(String, String, String)]) -> bool,
    context: impl Fn() -> String,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bindings = stored_bindings(callml);
        if done(&bindings) {
            return bindings;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: bindings are {bindings:?}\nserver log:\n{}\n{}",
            callml.log(),
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sipp_register(sipp: &std::path::Path, callml: &Callml, user: &str, password: &str) -> Sipp {
    Sipp::new(sipp, "register_digest.xml", callml.sip)
        .key("user", user)
        .key("domain", DOMAIN)
        .key("expires", 120)
        .auth(user, password)
        .timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_registers_with_digest_over_udp_and_tcp_and_bindings_survive_a_restart() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let mut callml = Callml::start("registrar-sipp", &["--auth-token", TOKEN]);
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;

    let udp = sipp_register(&sipp, &callml, "alice", PASSWORD);
    let udp_port = udp.addr().port();
    let run = tokio::task::spawn_blocking(move || udp.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    let challenge = run
        .messages
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect::<Vec<_>>();
    assert!(
        challenge.len() == 1 && challenge[0].contains("algorithm=MD5"),
        "one MD5 challenge: {challenge:?}"
    );
    let granted = format!("Contact: <sip:alice@127.0.0.1:{udp_port};transport=UDP>;expires=120");
    assert!(
        run.messages
            .to_ascii_lowercase()
            .contains(&granted.to_ascii_lowercase()),
        "the 200 lists the binding with its expiry ({granted}):\n{}",
        run.messages
    );

    let tcp = sipp_register(&sipp, &callml, "bob", PASSWORD).tcp();
    let run = tokio::task::spawn_blocking(move || tcp.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    assert!(
        run.messages
            .to_ascii_lowercase()
            .contains(";transport=tcp>;expires=120"),
        "bob registered over TCP:\n{}",
        run.messages
    );
    // sipp closed its TCP connection when it ended: bob's binding went with it, alice's stays.
    let stored = wait_for_bindings(&callml, "alice over UDP only", |b| {
        b.len() == 1 && b[0].0 == "alice" && b[0].2 == "UDP"
    });
    assert!(
        callml.log().contains("its connection closed"),
        "{stored:?}\n{}",
        callml.log()
    );

    assert!(
        callml
            .signal_and_wait("TERM", Duration::from_secs(15))
            .success()
    );
    let data = std::mem::replace(&mut callml.data, TempDir::new("registrar-sipp-unused"));
    let callml = Callml::start_in(data, &["--auth-token", TOKEN]);
    let query = Sipp::new(&sipp, "register_query.xml", callml.sip)
        .key("user", "alice")
        .key("domain", DOMAIN)
        .auth("alice", PASSWORD)
        .timeout(Duration::from_secs(10));
    let run = tokio::task::spawn_blocking(move || query.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    let restored = format!("<sip:alice@127.0.0.1:{udp_port};transport=UDP>;expires=");
    assert!(
        run.messages
            .to_ascii_lowercase()
            .contains(&restored.to_ascii_lowercase()),
        "after a restart the UDP binding is still there ({restored}):\n{}",
        run.messages
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_and_an_unknown_user_get_the_same_403() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callml = Callml::start("registrar-refused", &["--auth-token", TOKEN]);
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;
    let mut answers = Vec::new();
    for (user, password) in [("alice", "Wr0ng-Password-1"), ("mallory", PASSWORD)] {
        let run = Sipp::new(&sipp, "register_refused.xml", callml.sip)
            .key("user", user)
            .key("domain", DOMAIN)
            .key("expires", 120)
            .auth(user, password)
            .timeout(Duration::from_secs(10));
        let run = tokio::task::spawn_blocking(move || run.run())
            .await
            .unwrap();
        run.assert_success_with_log(&callml.log());
        let last = run
            .messages
            .lines()
            .rfind(|l| l.starts_with("SIP/2.0 "))
            .unwrap()
            .to_owned();
        answers.push(last);
    }
    assert_eq!(answers[0], "SIP/2.0 403 Forbidden");
    assert_eq!(answers[0], answers[1], "nothing tells the two apart");
    assert!(stored_bindings(&callml).is_empty());
}

/// A baresip configuration registering `alice` at the domain over `transport` through
/// callml's SIP address.
fn registering_phone(dir: &std::path::Path, callml: &Callml, transport: &str) -> BaresipPhone {
    std::fs::create_dir_all(dir).unwrap();
    let wav = dir.join("silence.wav");
    std::fs::write(&wav, wav_bytes(&vec![0; 8000], 8000)).unwrap();
    let phone = BaresipPhone::new(dir, &wav);
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:alice@{DOMAIN};transport={transport}>;auth_pass={PASSWORD};\
             outbound=\"sip:{};transport={transport}\";regint=60;answermode=auto\n",
            callml.sip
        ),
    )
    .unwrap();
    phone
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_registers_over_udp_and_tcp_and_a_tcp_binding_goes_with_its_connection() {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return;
    };
    let dir = TempDir::new("registrar-baresip");
    let callml = Callml::start("registrar-baresip", &["--auth-token", TOKEN]);
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;

    let udp_phone = registering_phone(&dir.path().join("udp"), &callml, "udp");
    let udp_running = udp_phone.start(&baresip, None, Duration::from_secs(30));
    let stored = wait_for_bindings_or(
        &callml,
        "baresip over UDP",
        |b| b.len() == 1,
        || udp_phone.log(),
    );
    assert_eq!(stored[0].0, "alice");
    assert_eq!(stored[0].2, "UDP");
    assert!(
        stored[0].1.contains(&udp_phone.sip_port.to_string()),
        "{stored:?}"
    );

    let tcp_phone = registering_phone(&dir.path().join("tcp"), &callml, "tcp");
    let tcp_running = tcp_phone.start(&baresip, None, Duration::from_secs(30));
    let stored = wait_for_bindings_or(
        &callml,
        "baresip over TCP too",
        |b| b.len() == 2,
        || tcp_phone.log(),
    );
    assert!(stored.iter().any(|b| b.2 == "TCP"), "{stored:?}");
    // baresip saw its registrations accepted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tcp_phone.log().contains("200 OK") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(tcp_phone.log().contains("200 OK"), "{}", tcp_phone.log());
    assert!(udp_phone.log().contains("200 OK"), "{}", udp_phone.log());

    drop(tcp_running);
    let stored = wait_for_bindings(&callml, "the TCP binding gone with baresip", |b| {
        b.len() == 1
    });
    assert_eq!(stored[0].2, "UDP");
    drop(udp_running);
}

/// Registers `user` from a fresh UDP port with sipp; the port (where the phone is reached).
async fn register_from_port(sipp: &std::path::Path, callml: &Callml, user: &str) -> u16 {
    let register = sipp_register(sipp, callml, user, PASSWORD);
    let port = register.addr().port();
    let run = tokio::task::spawn_blocking(move || register.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn dial_client_rings_every_registered_phone_and_connects_the_one_that_answers() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            r#"<Response><Dial action="/after" timeout="10"><Client>
                 <Identity>alice</Identity><Parameter name="Customer" value="42"/>
               </Client></Dial></Response>"#,
        ),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = Callml::start(
        "registrar-fork",
        &["--voice-url", &app.url("/voice"), "--auth-token", TOKEN],
    );
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;
    let desk = register_from_port(&sipp, &callml, "alice").await;
    let mobile = register_from_port(&sipp, &callml, "alice").await;

    let desk_media = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(30));
    let answers = Sipp::listen(&sipp, "uas_answers_then_hangs_up.xml")
        .port(desk)
        .key("rtp_port", desk_media.port)
        .pause(Duration::from_secs(2));
    let rings = Sipp::listen(&sipp, "uas_never_answers.xml").port(mobile);
    let callees = [
        tokio::task::spawn_blocking(move || answers.run()),
        tokio::task::spawn_blocking(move || rings.run()),
    ];
    let caller_media = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(30));
    let caller =
        Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_media.port);
    let caller = tokio::task::spawn_blocking(move || caller.run());
    caller.await.unwrap().assert_success_with_log(&callml.log());
    let [answered, canceled] = callees;
    let answered = answered.await.unwrap();
    answered.assert_success_with_log(&callml.log());
    // The phone that rang without answering got CANCEL (its scenario waits for one).
    canceled
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let invite = answered
        .messages
        .lines()
        .find(|l| l.starts_with("INVITE "))
        .unwrap();
    assert!(
        invite.starts_with(&format!("INVITE sip:alice@127.0.0.1:{desk};transport=UDP")),
        "the Request-URI is the registered contact: {invite}"
    );
    assert!(
        answered
            .messages
            .contains(&format!("To: <sip:alice@{DOMAIN}>")),
        "the To is the address of record:\n{}",
        answered.messages
    );

    let after = &app.wait_for("/after", 1, Duration::from_secs(10)).await[0];
    assert_eq!(after.param("DialCallStatus"), Some("completed"));
    assert_eq!(after.param("DialBridged"), Some("true"));
    let calls = callml.wait_for_ended_calls(2, Duration::from_secs(15));
    let child = calls
        .iter()
        .find(|c| c.direction == "outbound-dial")
        .unwrap();
    assert_eq!(child.to, "client:alice");
    assert_eq!(child.status, "completed");
    assert!(
        common::rtp::packets_with_tone(&desk_media.finish(), 1000.0) >= 50,
        "the caller's tone reached the phone that answered"
    );
    assert!(
        common::rtp::packets_with_tone(&caller_media.finish(), 440.0) >= 50,
        "the phone's tone reached the caller"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dialling_a_user_with_no_registered_phone_is_no_answer_with_480() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Dial action="/client"><Client>carol</Client></Dial></Response>"#),
    );
    app.serve(
        "/client",
        Reply::xml(format!(
            r#"<Response><Dial action="/sip"><Sip>sip:bob@{DOMAIN}</Sip></Dial></Response>"#
        )),
    );
    app.serve("/sip", Reply::xml("<Response><Hangup/></Response>"));
    let callml = Callml::start(
        "registrar-nobody",
        &["--voice-url", &app.url("/voice"), "--auth-token", TOKEN],
    );
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;
    let caller_media = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(20));
    let caller =
        Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_media.port);
    let run = tokio::task::spawn_blocking(move || caller.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    for path in ["/client", "/sip"] {
        let after = &app.wait_for(path, 1, Duration::from_secs(10)).await[0];
        assert_eq!(after.param("DialCallStatus"), Some("no-answer"), "{path}");
    }
    let calls = callml.wait_for_ended_calls(3, Duration::from_secs(15));
    let mut children: Vec<_> = calls
        .iter()
        .filter(|c| c.direction == "outbound-dial")
        .map(|c| {
            (
                c.to.as_str(),
                c.status.as_str(),
                c.sip_response_code,
                c.error_code,
            )
        })
        .collect();
    children.sort();
    assert_eq!(
        children,
        [
            ("client:carol", "no-answer", Some(480), Some(31480)),
            (
                "sip:bob@phones.callml.test",
                "no-answer",
                Some(480),
                Some(32009)
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_baresip_calls_in_with_digest_and_runs_the_domain_voice_url() {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return;
    };
    let dir = TempDir::new("registrar-calls-in");
    let app = CustomerApp::start().await;
    app.serve(
        "/domain-voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    app.serve(
        "/default-voice",
        Reply::xml("<Response><Hangup/></Response>"),
    );
    let callml = Callml::start(
        "registrar-calls-in",
        &[
            "--voice-url",
            &app.url("/default-voice"),
            "--auth-token",
            TOKEN,
        ],
    );
    let domain_sid = phones_domain(&callml, &app.url("/domain-voice")).await;
    let phone = registering_phone(dir.path(), &callml, "udp");
    let running = phone.start(
        &baresip,
        Some(&format!("sip:+15552223333@{DOMAIN}")),
        Duration::from_secs(20),
    );
    let request = &app
        .wait_for("/domain-voice", 1, Duration::from_secs(15))
        .await[0];
    assert_eq!(request.param("SipDomain"), Some(DOMAIN));
    assert_eq!(request.param("SipDomainSid"), Some(domain_sid.as_str()));
    assert_eq!(
        request.param("From"),
        Some(format!("sip:alice@{DOMAIN}").as_str())
    );
    assert_eq!(
        request.param("To"),
        Some(format!("sip:+15552223333@{DOMAIN}").as_str())
    );
    assert_eq!(request.param("Direction"), Some("inbound"));
    assert!(request.param("SipCallId").is_some());
    let calls = callml.wait_for_ended_calls(1, Duration::from_secs(15));
    assert_eq!(calls[0].status, "completed", "{calls:?}");
    assert!(app.requests_to("/default-voice").is_empty());
    drop(running);
    // The phone answered callml's 407 and its call was answered, then hung up by callml.
    let log = phone.log();
    assert!(log.contains("Call established"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_into_a_domain_need_credentials_and_a_listed_source() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callml = Callml::start("registrar-gate", &["--auth-token", TOKEN]);
    let domain_sid = phones_domain(&callml, "http://127.0.0.1:9/voice").await;
    let refused = |callml: &Callml| {
        Sipp::new(&sipp, "domain_invite_refused.xml", callml.sip)
            .key("domain", DOMAIN)
            .timeout(Duration::from_secs(10))
    };
    let run = refused(&callml);
    let run = tokio::task::spawn_blocking(move || run.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    assert!(
        run.messages
            .contains("SIP/2.0 407 Proxy Authentication Required")
            && run
                .messages
                .contains("Proxy-Authenticate: Digest realm=\"callml\""),
        "no credentials: a challenge\n{}",
        run.messages
    );

    // An IP access control list that does not hold 127.0.0.1: 403 before any challenge.
    let acl = post(
        &callml,
        "SIP/IpAccessControlLists.json",
        &[("FriendlyName", "Office")],
    )
    .await;
    let acl_sid = acl["sid"].as_str().unwrap();
    post(
        &callml,
        &format!("SIP/IpAccessControlLists/{acl_sid}/IpAddresses.json"),
        &[
            ("FriendlyName", "LAN"),
            ("IpAddress", "10.0.0.0"),
            ("CidrPrefixLength", "8"),
        ],
    )
    .await;
    post(
        &callml,
        &format!("SIP/Domains/{domain_sid}/Auth/Calls/IpAccessControlListMappings.json"),
        &[("IpAccessControlListSid", acl_sid)],
    )
    .await;
    let run = refused(&callml);
    let run = tokio::task::spawn_blocking(move || run.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    assert!(
        run.messages.contains("SIP/2.0 403 Forbidden")
            && !run.messages.contains("407 Proxy Authentication Required"),
        "a source in no list: 403\n{}",
        run.messages
    );
    assert!(callml.calls().is_empty(), "no call was started");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_twilio_library_makes_a_domain_a_phone_then_registers_to() {
    let Some(python) = python_venv(
        "CALLML_PYTHON_VENV",
        ".venv",
        "python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements-twilio.txt",
    ) else {
        return;
    };
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callml = Callml::start("registrar-twilio-library", &["--auth-token", TOKEN]);
    let env = vec![
        ("CALLML_URL", format!("http://{}", callml.http)),
        ("CALLML_ACCOUNT_SID", callml.account_sid.clone()),
        ("CALLML_AUTH_TOKEN", TOKEN.to_owned()),
    ];
    tokio::task::spawn_blocking(move || {
        pytest(&python, "test_twilio_sip.py", &env, "not outbound")
    })
    .await
    .expect("pytest thread");

    let register = Sipp::new(&sipp, "register_digest.xml", callml.sip)
        .key("user", "alice")
        .key("domain", "py.sip.callml.test")
        .key("expires", 300)
        .auth("alice", "IWasAtSignal2018")
        .timeout(Duration::from_secs(10));
    let run = tokio::task::spawn_blocking(move || register.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    wait_for_bindings(
        &callml,
        "alice registered with the library's credential",
        |b| b.len() == 1 && b[0].0 == "alice",
    );
    // The password is nowhere in the database: only its digests are.
    let db = callml.db();
    let stored: String = db
        .query_row(
            "SELECT ha1_md5 || ha1_sha256 FROM sip_credentials WHERE username = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored.len(), 32 + 64);
    let dump: Vec<String> = db
        .prepare("SELECT * FROM sip_credentials")
        .unwrap()
        .query_map([], |r| {
            (0..r.as_ref().column_count())
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join(" "))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        dump.iter().all(|row| !row.contains("IWasAtSignal2018")),
        "{dump:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_registers_over_tls_and_is_reached_over_its_connection() {
    let (Some(baresip), Some(openssl)) = (
        require_peer("baresip", "baresip"),
        require_peer("openssl", "openssl"),
    ) else {
        return;
    };
    let dir = TempDir::new("registrar-tls");
    let (cert, key) = self_signed(&openssl, dir.path());
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Dial action="/after" timeout="10"><Client>alice</Client></Dial></Response>"#),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = Callml::start_tls(
        "registrar-tls",
        &cert,
        &key,
        &["--voice-url", &app.url("/voice"), "--auth-token", TOKEN],
    );
    let tls = callml.sip_tls.expect("a TLS listener");
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;
    let phone_dir = dir.path().join("phone");
    let phone = registering_phone(&phone_dir, &callml, "tls");
    let config = phone_dir.join("config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("sip_cafile {}\n", cert.display()));
    std::fs::write(&config, text).unwrap();
    std::fs::write(
        phone_dir.join("accounts"),
        format!(
            "<sip:alice@{DOMAIN};transport=tls>;auth_pass={PASSWORD};\
             outbound=\"sip:{tls};transport=tls\";regint=60;answermode=auto\n"
        ),
    )
    .unwrap();
    let running = phone.start(&baresip, None, Duration::from_secs(30));
    let stored = wait_for_bindings_or(
        &callml,
        "baresip over TLS",
        |b| b.len() == 1,
        || phone.log(),
    );
    assert_eq!(stored[0].2, "TLS", "{stored:?}");

    // A call to alice reaches the phone over the connection it registered on.
    let caller_media = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(20));
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let caller =
        Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_media.port);
    let run = tokio::task::spawn_blocking(move || caller.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    let after = &app.wait_for("/after", 1, Duration::from_secs(15)).await[0];
    assert_eq!(
        after.param("DialCallStatus"),
        Some("completed"),
        "{}\n{}",
        callml.log(),
        phone.log()
    );
    assert!(phone.log().contains("Call established"), "{}", phone.log());
    drop(running);
    wait_for_bindings(&callml, "the TLS binding gone with baresip", |b| {
        b.is_empty()
    });
}

/// kamailio as the phones' outbound proxy: it relays REGISTER to callml with a `Path` (RFC
/// 3327) and record-routes; requests to the phone carry that path as their Route.
fn edge_proxy_config(listen: u16, callml: std::net::SocketAddr) -> String {
    let head = kamailio::config_head(listen, &["path", "xlog"]);
    format!(
        r#"{head}
request_route {{
    xlog("L_INFO", "$rm $ru from $si:$sp Route: $hdr(Route) Path: $hdr(Path)\n");
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
    if (is_present_hf("Route")) {{
        # callml calling a phone through the Path it registered with: our own Route goes
        # (loose_route), the Request-URI is the phone's contact.
        loose_route();
        record_route();
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        add_path();
    }} else {{
        record_route();
    }}
    $du = "sip:{callml}";
    t_relay();
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_registered_through_kamailio_is_called_through_it() {
    let (Some(sipp), Some(kamailio)) = (require_peer("sipp", "sip-tester"), kamailio::program())
    else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            r#"<Response><Dial action="/after" timeout="10" timeLimit="1"><Client>alice</Client></Dial></Response>"#,
        ),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let callml = Callml::start(
        "registrar-behind-kamailio",
        &["--voice-url", &app.url("/voice"), "--auth-token", TOKEN],
    );
    phones_domain(&callml, "http://127.0.0.1:9/voice").await;
    let proxy = Kamailio::start(&kamailio, "registrar-kamailio", |port| {
        edge_proxy_config(port, callml.sip)
    });

    // The phone registers through the proxy; callml stores the Path.
    let register = Sipp::new(&sipp, "register_digest.xml", proxy.addr)
        .key("user", "alice")
        .key("domain", DOMAIN)
        .key("expires", 120)
        .auth("alice", PASSWORD)
        .timeout(Duration::from_secs(10));
    let phone_port = register.addr().port();
    let run = tokio::task::spawn_blocking(move || register.run())
        .await
        .unwrap();
    run.assert_success_with_log(&format!("{}\n{}", callml.log(), proxy.log()));

    // A call to alice reaches the phone through the proxy, and so do the ACK and the BYE.
    let phone_media = RtpPeer::start(440.0, Duration::from_millis(800), Duration::from_secs(20));
    let phone = Sipp::listen(&sipp, "uas_behind_proxy.xml")
        .port(phone_port)
        .key("rtp_port", phone_media.port)
        .timeout(Duration::from_secs(15));
    let phone = tokio::task::spawn_blocking(move || phone.run());
    let caller_media = RtpPeer::start(1000.0, Duration::from_millis(800), Duration::from_secs(20));
    let caller =
        Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_media.port);
    let caller = tokio::task::spawn_blocking(move || caller.run());
    caller.await.unwrap().assert_success_with_log(&callml.log());
    let phone = phone.await.unwrap();
    phone.assert_success_with_log(&format!("{}\n{}", callml.log(), proxy.log()));
    let proxy_via = format!("Via: SIP/2.0/UDP {};branch=", proxy.addr);
    for method in ["INVITE", "ACK", "BYE"] {
        let request = phone
            .messages
            .split("UDP message received")
            .find(|m| m.contains(&format!("\n{method} sip:alice@")))
            .unwrap_or_else(|| panic!("no {method}:\n{}", phone.messages));
        let top_via = request.lines().find(|l| l.starts_with("Via:")).unwrap();
        assert!(
            top_via.starts_with(&proxy_via),
            "the {method} came through the proxy: {top_via}"
        );
    }
    let after = &app.wait_for("/after", 1, Duration::from_secs(10)).await[0];
    assert_eq!(after.param("DialCallStatus"), Some("completed"));
    let heard = packets_with_tone(&phone_media.finish(), 1000.0);
    assert!(
        heard >= 25,
        "the phone heard the caller's 1 kHz: {heard} packets"
    );
}
