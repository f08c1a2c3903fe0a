//! Watching calls, end to end against real peers: what callml captured of sipp's calls
//! (`Calls/{Sid}/Sip.json`, the ladder sipp itself traced), Twilio's Call Events read by the
//! official `twilio` library, `/metrics` parsed by Prometheus' own parser (`prometheus_client`)
//! with counters equal to the traffic sent, the HEP mirror received by sngrep for a call over
//! TLS, and the web console in headless Chromium (the live list during a call, the call's
//! ladder and webhook, a header holding markup shown as text), with a screenshot left in
//! `target/console-screenshots/`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{CustomerApp, Reply};
use common::callml::{Callml, TempDir};
use common::python::{pytest, twilio_venv};
use common::rest::{self, TOKEN};
use common::sipp::{Sipp, SippRun, free_udp_port, require_peer};
use common::tls::self_signed;

const SECOND: Duration = Duration::from_secs(1);

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
    // The call lasts while the browser finds it in the live list.
    let call = spawn(
        Sipp::new(&sipp, "caller_sends_markup.xml", callml.sip)
            .pause(Duration::from_secs(6))
            .timeout(Duration::from_secs(30)),
    );
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
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

/// `--log-format json`: every line is one JSON object, and the lines the call's task writes
/// carry its CallSid.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_call_sid() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callml = Callml::start("observe-json-log", &["--log-format", "json"]);
    spawn(Sipp::new(&sipp, "caller_hangs_up.xml", callml.sip).pause(Duration::from_millis(300)))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let ended = callml.wait_for_ended_calls(1, 10 * SECOND);
    let sid = &ended[0].sid;
    let log = callml.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let of_the_call: Vec<_> = lines
        .iter()
        .filter(|line| line["target"] == "callml::call::driver")
        .collect();
    assert!(!of_the_call.is_empty(), "{log}");
    for line in of_the_call {
        assert_eq!(line["spans"][0]["call_sid"], sid.as_str(), "{line}");
    }
}
