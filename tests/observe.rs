//! Watching calls, end to end against real peers: what callml captured of sipp's calls
//! (`Calls/{Sid}/Sip.json`, the ladder sipp itself traced), Twilio's Call Events read by the
//! official `twilio` library, `/metrics` parsed by Prometheus' own parser (`prometheus_client`)
//! with counters equal to the traffic sent, the HEP mirror received by sngrep for a call over
//! TLS, the web console in headless Chromium (the live list during a call, the call's
//! ladder, timeline and media facts, a header holding markup shown as text, a registered
//! phone), with screenshots left in `target/console-screenshots/` (or `CALLML_SCREENSHOT_DIR`),
//! the call's timeline of verbs and media facts (`Timeline.json`), the registrar's bindings
//! (`SIP/Registrations.json`), and JSON log lines each naming their call.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{CustomerApp, Reply};
use common::callml::{Callml, TempDir};
use common::python::{pytest, twilio_venv};
use common::rest::{self, PHONE_PASSWORD, PHONES_DOMAIN, TOKEN, phones_domain};
use common::rtp::RtpPeer;
use common::sipp::{Sipp, SippRun, free_udp_port, require_peer};
use common::tls::self_signed;

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

/// GET on callml's HTTP listener, with the account's credentials or none.
async fn http_get(callml: &Callml, path: &str, authenticated: bool) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new().get(format!("http://{}{path}", callml.http));
    if authenticated {
        request = request.basic_auth(&callml.account_sid, Some(TOKEN));
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// One message of sipp's trace (`-trace_msg`).
struct Traced {
    sent: bool,
    start_line: String,
    call_id: String,
    cseq_method: String,
}

/// Every message sipp sent or received, in order.
fn sipp_trace(run: &SippRun) -> Vec<Traced> {
    run.messages
        .split("----------------------------------------------- ")
        .filter_map(|block| {
            let mut lines = block.lines().map(str::trim);
            lines.next()?;
            let header = lines.next()?;
            let sent = header.contains("message sent");
            if !sent && !header.contains("message received") {
                return None;
            }
            let mut lines = lines.skip_while(|l| l.is_empty());
            let start_line = lines.next()?.to_owned();
            let mut call_id = String::new();
            let mut cseq_method = String::new();
            for line in lines {
                if let Some(value) = line.strip_prefix("Call-ID:") {
                    call_id = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("CSeq:") {
                    cseq_method = value.split_whitespace().nth(1).unwrap_or("").to_owned();
                }
            }
            Some(Traced {
                sent,
                start_line,
                call_id,
                cseq_method,
            })
        })
        .collect()
}

/// What sipp sent: requests by method; and received: responses by `METHOD STATUS`, as JSON.
fn sipp_counts(trace: &[Traced]) -> String {
    let mut requests = std::collections::BTreeMap::<String, u64>::new();
    let mut responses = std::collections::BTreeMap::<String, u64>::new();
    for message in trace {
        if message.sent && !message.start_line.starts_with("SIP/2.0") {
            let method = message
                .start_line
                .split(' ')
                .next()
                .unwrap_or("")
                .to_owned();
            *requests.entry(method).or_default() += 1;
        } else if !message.sent && message.start_line.starts_with("SIP/2.0 ") {
            let status = message.start_line.split(' ').nth(1).unwrap_or("");
            *responses
                .entry(format!("{} {status}", message.cseq_method))
                .or_default() += 1;
        }
    }
    serde_json::json!({ "requests": requests, "responses": responses }).to_string()
}

async fn call_sids(callml: &Callml) -> Vec<String> {
    let (status, page) = rest::get(callml, "Calls.json?PageSize=100").await;
    assert_eq!(status, 200, "{page}");
    page["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["sid"].as_str().expect("sid").to_owned())
        .collect()
}

/// Three sipp calls into a document with a status callback: each call's captured ladder is
/// the one sipp traced, message for message; the Call Events hold the document fetch and the
/// callbacks as the `twilio` library reads them; `/metrics` counts exactly the traffic sent;
/// nothing is served without the account's credentials.
#[tokio::test(flavor = "multi_thread")]
async fn capture_events_and_metrics_match_the_traffic_sent() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let Some(python) = twilio_venv() else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"5\"/></Response>"),
    );
    app.serve("/status", Reply::xml("<Response/>"));
    let voice = app.url("/voice");
    let status_callback = app.url("/status");
    let callml = Callml::start(
        "observe-capture",
        &[
            "--auth-token",
            TOKEN,
            "--voice-url",
            &voice,
            "--status-callback",
            &status_callback,
        ],
    );
    const CALLS: u32 = 3;
    let run = spawn(
        Sipp::new(&sipp, "caller_hangs_up.xml", callml.sip)
            .calls(CALLS, 10)
            .pause(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    run.assert_success_with_log(&callml.log());
    let ended = callml.wait_for_ended_calls(CALLS as usize, 10 * SECOND);
    assert_eq!(ended.len(), CALLS as usize);
    // The completed callbacks are the last requests about each call.
    let deadline = Instant::now() + 10 * SECOND;
    while app
        .requests_to("/status")
        .iter()
        .filter(|r| r.param("CallStatus") == Some("completed"))
        .count()
        < CALLS as usize
    {
        assert!(Instant::now() < deadline, "no completed callbacks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let trace = sipp_trace(&run);
    let sids = call_sids(&callml).await;
    assert_eq!(sids.len(), CALLS as usize);
    let mut ladder = Vec::new();
    for sid in &sids {
        let deadline = Instant::now() + 10 * SECOND;
        let (messages, call_id) = loop {
            let (status, page) = rest::get(&callml, &format!("Calls/{sid}/Sip.json")).await;
            assert_eq!(status, 200, "{page}");
            let messages = page["messages"].as_array().expect("messages").clone();
            let call_id = messages
                .first()
                .map(|m| m["sip_call_id"].as_str().unwrap().to_owned());
            // The capture is written a moment after the call's record.
            if messages.len() >= 7 || Instant::now() > deadline {
                break (messages, call_id.expect("a captured message"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let captured: Vec<String> = messages
            .iter()
            .map(|m| m["first_line"].as_str().unwrap().to_owned())
            .collect();
        let traced: Vec<&str> = trace
            .iter()
            .filter(|m| m.call_id == call_id)
            .map(|m| m.start_line.as_str())
            .collect();
        assert_eq!(
            captured, traced,
            "callml's ladder of {sid} is the one sipp traced"
        );
        for m in &messages {
            assert_eq!(m["call_sid"], sid.as_str());
            assert_eq!(m["transport"], "UDP");
            let text = m["message"].as_str().unwrap();
            assert!(text.starts_with(m["first_line"].as_str().unwrap()));
            assert!(text.contains(&format!("Call-ID: {call_id}")), "{text}");
        }
        let directions: Vec<&str> = messages
            .iter()
            .map(|m| m["direction"].as_str().unwrap())
            .collect();
        assert_eq!(directions[0], "in", "the INVITE came from sipp");
        ladder = captured;
    }
    assert!(ladder[0].starts_with("INVITE "));
    assert!(ladder.iter().any(|l| l.starts_with("BYE ")));

    let (status, page) =
        rest::get(&callml, "Calls/CA00000000000000000000000000000000/Sip.json").await;
    assert_eq!((status, page["code"].as_u64()), (404, Some(20404)));
    let other_account = format!(
        "/2010-04-01/Accounts/AC{}/Calls/{}/Events.json",
        "1".repeat(32),
        sids[0]
    );
    assert_eq!(http_get(&callml, &other_account, true).await.0, 404);
    for path in [
        "/metrics".to_owned(),
        "/console".to_owned(),
        format!("/console/calls/{}", sids[0]),
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}/Events.json",
            callml.account_sid, sids[0]
        ),
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}/Sip.json",
            callml.account_sid, sids[0]
        ),
    ] {
        let (status, body) = http_get(&callml, &path, false).await;
        assert_eq!(status, 401, "{path} needs the account's credentials");
        assert!(!body.contains("INVITE"), "{path}: {body}");
    }

    // The last callback is counted once its answer is read.
    let callbacks = app.requests_to("/status").len();
    let counted =
        format!("callml_webhook_duration_seconds_count{{kind=\"callback\"}} {callbacks}\n");
    let deadline = Instant::now() + 10 * SECOND;
    let text = loop {
        let (status, text) = http_get(&callml, "/metrics", true).await;
        assert_eq!(status, 200);
        if text.contains(&counted) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let metrics = TempDir::new("observe-metrics");
    let metrics_file = metrics.path().join("metrics.txt");
    std::fs::write(&metrics_file, text).unwrap();
    let env = [
        ("CALLML_URL", format!("http://{}", callml.http)),
        ("CALLML_ACCOUNT_SID", callml.account_sid.clone()),
        ("CALLML_AUTH_TOKEN", TOKEN.to_owned()),
        ("CALLML_OBSERVE_CALLS", sids.join(",")),
        ("CALLML_OBSERVE_VOICE_URL", voice.clone()),
        ("CALLML_OBSERVE_STATUS_URL", status_callback.clone()),
        ("CALLML_OBSERVE_METRICS", metrics_file.display().to_string()),
        ("CALLML_OBSERVE_EXPECTED_CALLS", CALLS.to_string()),
        ("CALLML_OBSERVE_SIPP", sipp_counts(&trace)),
        ("CALLML_OBSERVE_CALLBACKS", callbacks.to_string()),
    ];
    pytest(&python, "test_observe.py", &env, "observe");
}

/// A sngrep listening for HEP receives the INVITE callml took over TLS, decrypted; the
/// capture shows it on TLS too.
#[tokio::test(flavor = "multi_thread")]
async fn sngrep_receives_the_invite_of_a_tls_call_over_hep() {
    let (Some(sipp), Some(openssl), Some(sngrep)) = (
        require_peer("sipp", "sip-tester"),
        require_peer("openssl", "openssl"),
        require_peer("sngrep", "sngrep"),
    ) else {
        return;
    };
    let dir = TempDir::new("observe-hep");
    let (cert, key) = self_signed(&openssl, dir.path());
    let hep_port = free_udp_port();
    let pcap = dir.path().join("hep.pcap");
    let collector = SngrepCollector::start(&sngrep, hep_port, &pcap);
    let callee_app = CustomerApp::start().await;
    callee_app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    let hep = format!("127.0.0.1:{hep_port}");
    let callee = Callml::start_tls(
        "observe-hep-callee",
        &cert,
        &key,
        &[
            "--auth-token",
            TOKEN,
            "--voice-url",
            &callee_app.url("/voice"),
            "--hep",
            &hep,
        ],
    );
    let tls_addr = callee.sip_tls.expect("a TLS listener");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeout="5"><Sip>sip:callee@{tls_addr};transport=tls</Sip></Dial></Response>"#
        )),
    );
    let caller = Callml::start(
        "observe-hep-caller",
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
    let answered = callee.wait_for_ended_calls(1, 10 * SECOND);
    assert!(answered[0].answered, "{}", callee.log());

    let deadline = Instant::now() + 10 * SECOND;
    let received = loop {
        let bytes = std::fs::read(&pcap).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if text.contains("INVITE sip:callee@") && text.contains("BYE sip:") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "sngrep did not receive the INVITE and the BYE over HEP: {}",
            collector.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        received.contains("X-Twilio-CallSid: CA"),
        "the INVITE as the caller sent it, decrypted"
    );
    let sids = call_sids(&callee).await;
    let (_, page) = rest::get(&callee, &format!("Calls/{}/Sip.json", sids[0])).await;
    let invite = &page["messages"][0];
    assert!(
        invite["first_line"]
            .as_str()
            .unwrap()
            .starts_with("INVITE sip:callee@")
    );
    assert_eq!(invite["transport"], "TLS");
    assert_eq!(invite["local_address"], tls_addr.to_string());
}

/// sngrep collecting HEP on a port and writing what it gets to a pcap; stopped on drop.
struct SngrepCollector {
    child: Child,
    log: std::path::PathBuf,
}

impl SngrepCollector {
    fn start(program: &Path, port: u16, pcap: &Path) -> SngrepCollector {
        let log = pcap.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{port}"), "-O"])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run sngrep");
        // sngrep is listening once its port is taken.
        let deadline = Instant::now() + 10 * SECOND;
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "sngrep did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        SngrepCollector { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SngrepCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium logs in, sees a sipp call in the live list while it lasts, then opens
/// the call's page: INVITE, 200 and BYE in the ladder, the webhook with its status, and the
/// caller's header holding `<script>` shown as text without running.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_a_live_call_and_its_ladder_in_chromium() {
    let (Some(sipp), Some(_), Some(_)) = (
        require_peer("sipp", "sip-tester"),
        require_peer("chromium", "chromium"),
        require_peer("chromedriver", "chromium-driver"),
    ) else {
        return;
    };
    let Some(python) = twilio_venv() else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"30\"/></Response>"),
    );
    let callml = Callml::start(
        "observe-console",
        &["--auth-token", TOKEN, "--voice-url", &app.url("/voice")],
    );
    // A phone registered, for the registrations view.
    phones_domain(&callml).await;
    register_alice(&sipp, &callml, free_udp_port(), 300).await;
    // The call lasts while the browser finds it in the live list.
    let call = spawn(
        Sipp::new(&sipp, "caller_sends_markup.xml", callml.sip)
            .pause(Duration::from_secs(6))
            .timeout(Duration::from_secs(30)),
    );
    // CALLML_SCREENSHOT_DIR=docs/screenshots (scripts/screenshots) writes README's images.
    let screenshots = match std::env::var_os("CALLML_SCREENSHOT_DIR") {
        Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots"),
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let env = [
        ("CALLML_URL", format!("http://{}", callml.http)),
        ("CALLML_ACCOUNT_SID", callml.account_sid.clone()),
        ("CALLML_AUTH_TOKEN", TOKEN.to_owned()),
        ("CALLML_OBSERVE_VOICE_URL", app.url("/voice")),
        ("CALLML_SCREENSHOTS", screenshots.display().to_string()),
    ];
    let python_task = tokio::task::spawn_blocking(move || {
        pytest(&python, "test_observe.py", &env, "console");
    });
    let run = call.await.unwrap();
    run.assert_success_with_log(&callml.log());
    python_task.await.expect("the console test passed");
}

/// A sipp call into a `<Dial>` of a second sipp that answers, is recorded from the answer and
/// hangs up after 2 s, with status callbacks on both legs and a recording callback; a
/// symmetric RTP phone behind each sipp. `extra` are more flags for callml.
struct DialledCall {
    callml: Callml,
    app: CustomerApp,
    parent: common::callml::CallRow,
    child: common::callml::CallRow,
    /// The packets each phone received from callml.
    caller_received: usize,
    callee_received: usize,
}

async fn dialled_call(name: &str, extra: &[&str]) -> Option<DialledCall> {
    let sipp = require_peer("sipp", "sip-tester")?;
    let callee_phone = RtpPeer::start(440.0, 800 * MILLISECOND, 30 * SECOND);
    let callee = Sipp::listen(&sipp, "uas_answers_then_hangs_up.xml")
        .key("rtp_port", callee_phone.port)
        .pause(2 * SECOND);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial action="/after" timeout="10" record="record-from-answer" recordingStatusCallback="/recording"><Sip statusCallback="/child-status" statusCallbackEvent="initiated ringing answered completed">sip:bob@{};transport=udp?X-Customer=42</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    for path in ["/status", "/child-status", "/recording"] {
        app.serve(path, Reply::xml("<Response/>"));
    }
    let voice = app.url("/voice");
    let status = app.url("/status");
    let mut args = vec!["--auth-token", TOKEN, "--voice-url", &voice];
    args.extend(["--status-callback", &status]);
    args.extend(extra);
    let callml = Callml::start(name, &args);
    let callee = spawn(callee);
    let caller_phone = RtpPeer::start(1000.0, 800 * MILLISECOND, 30 * SECOND);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", caller_phone.port))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    callee.await.unwrap().assert_success_with_log(&callml.log());
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let parent = calls
        .iter()
        .find(|c| c.direction == "inbound")
        .unwrap()
        .clone();
    let child = calls
        .iter()
        .find(|c| c.direction == "outbound-dial")
        .unwrap()
        .clone();
    // The last requests about the call: both legs' completed callbacks and the recording's.
    app.wait_for("/recording", 1, 10 * SECOND).await;
    let deadline = Instant::now() + 10 * SECOND;
    for path in ["/status", "/child-status"] {
        while !app
            .requests_to(path)
            .iter()
            .any(|r| r.param("CallStatus") == Some("completed"))
        {
            assert!(Instant::now() < deadline, "no completed callback to {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let caller_received = caller_phone.finish().len();
    let callee_received = callee_phone.finish().len();
    Some(DialledCall {
        callml,
        app,
        parent,
        child,
        caller_received,
        callee_received,
    })
}

/// Whether a JSON log line names `sid` in a field of its own or of one of its spans.
fn names_call(line: &serde_json::Value, sid: &str) -> bool {
    line["call_sid"] == sid
        || line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|span| span["call_sid"] == sid))
}

/// `--log-format json`: every line is one JSON object, and every line about the call — the
/// call's task, its child leg, the recording, the document fetches, the status callbacks
/// and their deliveries — carries its CallSid (the parent's, or the child leg's for lines
/// about it), as `call_sid` in its own fields or in its span's, from the first line naming
/// the call to the end of the log.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_call_sid() {
    let Some(call) = dialled_call("observe-json-log", &["--log-format", "json"]).await else {
        return;
    };
    let log = call.callml.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let about_calls: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            let target = line["target"].as_str().unwrap_or("");
            target.starts_with("callml::call") || target.starts_with("callml::webhook")
        })
        .collect();
    // The call's lines, from its first to its last.
    let first = about_calls
        .iter()
        .position(|line| names_call(line, &call.parent.sid))
        .unwrap_or_else(|| panic!("no line names {}:\n{log}", call.parent.sid));
    let during: Vec<_> = about_calls[first..].to_vec();
    let targets: std::collections::BTreeSet<&str> = during
        .iter()
        .filter_map(|line| line["target"].as_str())
        .collect();
    for expected in [
        "callml::call::core",
        "callml::call::driver",
        "callml::call::recording",
    ] {
        assert!(
            targets.contains(expected),
            "no line from {expected}: {targets:?}\n{log}"
        );
    }
    for line in &during {
        assert!(
            names_call(line, &call.parent.sid) || names_call(line, &call.child.sid),
            "a line about the call without its CallSid: {line}"
        );
    }
}

/// The call's timeline (`Calls/{Sid}/Timeline.json`) holds each verb started and ended with
/// its attributes and outcome, the webhooks of both legs, and each leg's media facts, whose
/// packet counts are what the phones received from callml.
#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_holds_each_verb_and_each_legs_media_facts() {
    let Some(call) = dialled_call("observe-timeline", &[]).await else {
        return;
    };
    let sid = &call.parent.sid;
    let deadline = Instant::now() + 10 * SECOND;
    let entries = loop {
        let (status, page) = rest::get(
            &call.callml,
            &format!("Calls/{sid}/Timeline.json?PageSize=1000"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().expect("entries").clone();
        // The capture is written a moment after the records and callbacks: every request the
        // application received, and both legs' media facts.
        let media = entries.iter().filter(|e| e["kind"] == "media").count();
        let webhooks = entries
            .iter()
            .filter(|e| e["kind"] == "document" || e["kind"] == "callback")
            .count();
        if media == 2 && webhooks == call.app.requests().len() {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "the timeline is incomplete: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let verbs: Vec<(String, String, String)> = entries
        .iter()
        .filter(|e| e["kind"] == "verb")
        .map(|e| {
            let data = &e["data"];
            let what = data["outcome"].as_str().unwrap_or("").to_owned();
            (
                data["event"].as_str().unwrap().to_owned(),
                data["verb"].as_str().unwrap().to_owned(),
                what,
            )
        })
        .collect();
    let expected = [
        ("started", "Dial", ""),
        ("ended", "Dial", "completed"),
        ("started", "Hangup", ""),
        ("ended", "Hangup", "completed"),
    ];
    assert_eq!(
        verbs,
        expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())),
        "{entries:#?}"
    );
    let dial = entries
        .iter()
        .find(|e| e["kind"] == "verb" && e["data"]["verb"] == "Dial")
        .unwrap();
    assert_eq!(dial["call_sid"], sid.as_str());
    assert_eq!(dial["data"]["line"], 1);
    let attributes = &dial["data"]["attributes"];
    assert_eq!(attributes["record"], "record-from-answer");
    assert_eq!(attributes["timeout"], "10");
    assert!(attributes["action"].as_str().unwrap().ends_with("/after"));
    assert!(
        attributes["Sip"]
            .as_str()
            .unwrap()
            .starts_with("sip:bob@127.0.0.1:")
    );
    // Webhooks of both legs, in order with the verbs: the document before the <Dial>.
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let first_document = kinds.iter().position(|k| *k == "document").unwrap();
    let first_verb = kinds.iter().position(|k| *k == "verb").unwrap();
    assert!(first_document < first_verb, "{kinds:?}");
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "callback" && e["call_sid"] == call.child.sid.as_str()),
        "the child leg's callbacks are in the parent's timeline"
    );
    // Twilio's Events resource stays webhooks only.
    let (_, events) = rest::get(
        &call.callml,
        &format!("Calls/{sid}/Events.json?PageSize=1000"),
    )
    .await;
    let webhooks = kinds
        .iter()
        .zip(&entries)
        .filter(|(k, e)| matches!(**k, "document" | "callback") && e["call_sid"] == sid.as_str())
        .count();
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        webhooks,
        "{events:#}\n{entries:#?}"
    );

    for (leg, received_by_phone) in [
        (&call.parent, call.caller_received),
        (&call.child, call.callee_received),
    ] {
        let facts = &entries
            .iter()
            .find(|e| e["kind"] == "media" && e["call_sid"] == leg.sid.as_str())
            .unwrap_or_else(|| panic!("no media facts of {}: {entries:#?}", leg.sid))["data"];
        assert_eq!(facts["codec"], "PCMU", "{facts}");
        let sent = facts["packets_sent"].as_u64().unwrap() as usize;
        let received = facts["packets_received"].as_u64().unwrap();
        // Loopback may drop a burst on a loaded machine, never invent packets.
        assert!(
            received_by_phone <= sent && received_by_phone * 10 >= sent * 9,
            "{}: callml counted {sent} packets sent, the phone received {received_by_phone}",
            leg.sid
        );
        assert!(received >= 50, "the phone's tone was counted: {facts}");
        let mos = facts["mos"].as_f64().unwrap();
        assert!((1.0..=4.5).contains(&mos), "{facts}");
        assert!(facts["jitter_ms"].as_f64().is_some(), "{facts}");
    }
    let (status, _) = rest::get(
        &call.callml,
        "Calls/CA00000000000000000000000000000000/Timeline.json",
    )
    .await;
    assert_eq!(status, 404);
}

/// sipp registers `alice` from `port` for `expires` seconds (0 removes the binding).
async fn register_alice(sipp: &Path, callml: &Callml, port: u16, expires: u32) {
    let register = Sipp::new(sipp, "register_digest.xml", callml.sip)
        .port(port)
        .key("user", "alice")
        .key("domain", PHONES_DOMAIN)
        .key("expires", expires)
        .auth("alice", PHONE_PASSWORD)
        .timeout(10 * SECOND);
    tokio::task::spawn_blocking(move || register.run())
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
}

/// `SIP/Registrations.json` and `SIP/Domains/{Sid}/Registrations.json` list the contact sipp
/// registered — user, contact, expiry, user agent, source — and no longer once sipp
/// unregisters it; an unknown domain is 404, and nothing is listed without credentials.
#[tokio::test(flavor = "multi_thread")]
async fn the_registrars_bindings_are_listed_over_rest() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callml = Callml::start("observe-registrations", &["--auth-token", TOKEN]);
    let domain = phones_domain(&callml).await;
    let port = free_udp_port();
    register_alice(&sipp, &callml, port, 120).await;

    let (status, all) = rest::get(&callml, "SIP/Registrations.json").await;
    assert_eq!(status, 200, "{all}");
    let (status, of_domain) =
        rest::get(&callml, &format!("SIP/Domains/{domain}/Registrations.json")).await;
    assert_eq!(status, 200, "{of_domain}");
    assert_eq!(all["registrations"], of_domain["registrations"]);
    let listed = all["registrations"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{all}");
    let alice = &listed[0];
    assert_eq!(alice["domain_sid"], domain.as_str());
    assert_eq!(alice["domain_name"], PHONES_DOMAIN);
    assert_eq!(alice["username"], "alice");
    assert_eq!(
        alice["address_of_record"],
        format!("sip:alice@{PHONES_DOMAIN}")
    );
    assert_eq!(
        alice["contact"],
        format!("sip:alice@127.0.0.1:{port};transport=UDP")
    );
    let expires = alice["expires"].as_i64().unwrap();
    assert!((110..=120).contains(&expires), "{alice}");
    assert_eq!(alice["user_agent"], "sipp");
    assert_eq!(alice["transport"], "UDP");
    assert_eq!(alice["source"], format!("127.0.0.1:{port}"));
    assert!(alice["date_expires"].as_str().unwrap().ends_with("+0000"));
    assert_eq!(
        all["uri"],
        format!(
            "/2010-04-01/Accounts/{}/SIP/Registrations.json?PageSize=50&Page=0",
            callml.account_sid
        )
    );

    let (status, body) = rest::get(
        &callml,
        "SIP/Domains/SD00000000000000000000000000000000/Registrations.json",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (404, Some(20404)),
        "{body}"
    );
    let path = format!(
        "/2010-04-01/Accounts/{}/SIP/Registrations.json",
        callml.account_sid
    );
    let (status, body) = http_get(&callml, &path, false).await;
    assert_eq!(status, 401);
    assert!(!body.contains("alice"), "{body}");

    register_alice(&sipp, &callml, port, 0).await;
    let (_, all) = rest::get(&callml, "SIP/Registrations.json").await;
    assert_eq!(all["registrations"], serde_json::json!([]), "unregistered");
}
