//! Call queues end to end: sipp callers `<Enqueue>`, sipp agents `<Dial><Queue>`, the real
//! `callml serve` binary between them, RTP peers on every phone measuring what each heard,
//! and the REST API making and emptying queues.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::callml::Callml;
use common::rtp::{Packet, RtpPeer, packets_with_tone};
use common::sipp::{Sipp, SippRun, require_peer};

const SECOND: Duration = Duration::from_secs(1);
const TOKEN: &str = "token";

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

fn server(name: &str, app: &CustomerApp) -> Callml {
    let voice = app.url("/voice");
    Callml::start(name, &["--voice-url", &voice, "--auth-token", TOKEN])
}

const MEMBER: &str =
    r#"<Response><Enqueue waitUrl="/wait" action="/left">support</Enqueue></Response>"#;
const AGENT: &str = "<Response><Dial><Queue>support</Queue></Dial></Response>";

/// Waits until the wait document was asked for by `count` different calls.
async fn waiting_calls(app: &CustomerApp, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let mut calls: Vec<String> = Vec::new();
        for request in app.requests_to("/wait") {
            let sid = request.param("CallSid").unwrap_or_default().to_owned();
            if !calls.contains(&sid) {
                calls.push(sid);
            }
        }
        if calls.len() >= count {
            return calls;
        }
        app.wait_for("/wait", app.requests_to("/wait").len() + 1, 5 * SECOND)
            .await;
    }
    panic!("{count} calls never waited");
}

fn result_of<'a>(lefts: &'a [RecordedRequest], call: &str) -> &'a str {
    lefts
        .iter()
        .find(|r| r.param("CallSid") == Some(call))
        .and_then(|r| r.param("QueueResult"))
        .unwrap_or_else(|| panic!("no action request of {call}"))
}

fn heard(packets: &[Packet], frequency: f64) -> usize {
    packets_with_tone(packets, frequency)
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_wait_in_order_and_agents_take_them_first_come_first_served() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve_sequence(
        "/voice",
        vec![
            Reply::xml(MEMBER),
            Reply::xml(MEMBER),
            Reply::xml(MEMBER),
            Reply::xml(AGENT),
            Reply::xml(AGENT),
        ],
    );
    app.serve(
        "/wait",
        Reply::xml("<Response><Pause length=\"1\"/></Response>"),
    );
    app.serve("/left", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("queue-fifo", &app);

    // Three callers, one after another; the third gives up after 12 s of waiting.
    let tones = [300.0, 500.0, 700.0];
    let mut members = Vec::new();
    for (index, tone) in tones.iter().enumerate() {
        let phone = RtpPeer::start(*tone, 3 * SECOND, 40 * SECOND);
        let scenario = if index == 2 {
            "caller_hangs_up.xml"
        } else {
            "callml_hangs_up.xml"
        };
        let mut run = Sipp::new(&sipp, scenario, callml.sip).key("rtp_port", phone.port);
        if index == 2 {
            run = run.pause(12 * SECOND);
        }
        members.push((spawn(run), phone));
        waiting_calls(&app, index + 1).await;
    }
    let order = waiting_calls(&app, 3).await;

    // Two agents, one after the other, each staying 3 s.
    let mut agents = Vec::new();
    for tone in [1000.0, 1300.0] {
        let phone = RtpPeer::start(tone, 3 * SECOND, 40 * SECOND);
        let run = Sipp::new(&sipp, "caller_hangs_up.xml", callml.sip)
            .key("rtp_port", phone.port)
            .pause(3 * SECOND);
        spawn(run).await.unwrap().assert_success();
        agents.push(phone);
    }
    let mut heard_by_members = Vec::new();
    for (run, phone) in members {
        run.await.unwrap().assert_success();
        heard_by_members.push(phone.finish());
    }
    let heard_by_agents: Vec<Vec<Packet>> = agents.into_iter().map(RtpPeer::finish).collect();

    let lefts = app.wait_for("/left", 3, 10 * SECOND).await;
    assert_eq!(result_of(&lefts, &order[0]), "bridged");
    assert_eq!(result_of(&lefts, &order[1]), "bridged");
    assert_eq!(result_of(&lefts, &order[2]), "hangup");
    // First come, first served, with audio both ways through the bridge.
    assert!(
        heard(&heard_by_agents[0], tones[0]) > 50,
        "agent 1 heard caller 1"
    );
    assert_eq!(heard(&heard_by_agents[0], tones[1]), 0);
    assert!(
        heard(&heard_by_agents[1], tones[1]) > 50,
        "agent 2 heard caller 2"
    );
    assert_eq!(heard(&heard_by_agents[1], tones[0]), 0);
    assert!(
        heard(&heard_by_members[0], 1000.0) > 50,
        "caller 1 heard agent 1"
    );
    assert!(
        heard(&heard_by_members[1], 1300.0) > 50,
        "caller 2 heard agent 2"
    );
    assert_eq!(
        heard(&heard_by_members[2], 1000.0),
        0,
        "caller 3 was never taken"
    );
    // The second caller's wait document saw it move up.
    let waits = app.requests_to("/wait");
    let positions: BTreeSet<&str> = waits
        .iter()
        .filter(|r| r.param("CallSid") == Some(order[1].as_str()))
        .filter_map(|r| r.param("QueuePosition"))
        .collect();
    assert!(
        positions.contains("2") && positions.contains("1"),
        "{positions:?}"
    );
    let calls = callml.wait_for_ended_calls(5, 10 * SECOND);
    assert!(calls.iter().all(|c| c.status == "completed"), "{calls:?}");
}

/// A Basic-auth POST to callml's REST API; the status and JSON body.
async fn post(callml: &Callml, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    rest(callml, reqwest::Method::POST, path, form).await
}

/// A Basic-auth GET of callml's REST API; the status and JSON body.
async fn get(callml: &Callml, path: &str) -> (u16, serde_json::Value) {
    rest(callml, reqwest::Method::GET, path, &[]).await
}

async fn rest(
    callml: &Callml,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(
            method.clone(),
            format!(
                "http://{}/2010-04-01/Accounts/{}/{path}",
                callml.http, callml.account_sid
            ),
        )
        .basic_auth(&callml.account_sid, Some(TOKEN));
    if method == reqwest::Method::POST {
        request = request.form(form);
    }
    let response = request.send().await.expect("REST request");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).expect("JSON body");
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_leave_takes_a_caller_out_and_rest_dequeues_the_front() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    let small = r#"<Response><Enqueue waitUrl="/wait" action="/left">small</Enqueue></Response>"#;
    let leaving =
        r#"<Response><Enqueue waitUrl="/wait-leave" action="/left">other</Enqueue></Response>"#;
    app.serve_sequence(
        "/voice",
        vec![Reply::xml(small), Reply::xml(small), Reply::xml(leaving)],
    );
    // <Record> does not belong in a wait document: skipped and reported, the caller stays.
    app.serve(
        "/wait",
        Reply::xml("<Response><Record/><Pause length=\"1\"/></Response>"),
    );
    app.serve("/wait-leave", Reply::xml("<Response><Leave/></Response>"));
    app.serve("/left", Reply::xml("<Response><Hangup/></Response>"));
    app.serve("/dequeued", Reply::xml("<Response><Hangup/></Response>"));
    let callml = server("queue-rest", &app);
    let (status, queue) = post(
        &callml,
        "Queues.json",
        &[("FriendlyName", "small"), ("MaxSize", "1")],
    )
    .await;
    assert_eq!(status, 201, "{queue}");
    assert_eq!(queue["max_size"], 1);
    let queue_sid = queue["sid"].as_str().unwrap().to_owned();

    let first = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", 9));
    let waiting = waiting_calls(&app, 1).await;
    let refused = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", 9));
    refused.await.unwrap().assert_success();
    let lefts = app.wait_for("/left", 1, 10 * SECOND).await;
    let full = lefts
        .iter()
        .find(|r| r.param("CallSid") != Some(waiting[0].as_str()))
        .unwrap();
    assert_eq!(full.param("QueueResult"), Some("queue-full"));
    assert_eq!(full.param("QueueSid"), Some(queue_sid.as_str()));

    let leaver = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", 9));
    leaver.await.unwrap().assert_success();
    let lefts = app.wait_for("/left", 2, 10 * SECOND).await;
    assert_eq!(lefts[1].param("QueueResult"), Some("leave"));

    let dequeue_url = app.url("/dequeued");
    let (status, member) = post(
        &callml,
        &format!("Queues/{queue_sid}/Members/Front.json"),
        &[("Url", &dequeue_url)],
    )
    .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["call_sid"], waiting[0]);
    assert_eq!(member["position"], 1);
    let (status, notes) = get(&callml, &format!("Calls/{}/Notifications.json", waiting[0])).await;
    assert_eq!(status, 200, "{notes}");
    let note = &notes["notifications"][0];
    assert_eq!(note["error_code"], "12200", "{notes}");
    assert_eq!(note["log"], "1", "a warning");
    assert!(
        note["message_text"]
            .as_str()
            .is_some_and(|m| m.contains("<Record>")),
        "{note}"
    );
    first.await.unwrap().assert_success();
    let dequeued = &app.wait_for("/dequeued", 1, 10 * SECOND).await[0];
    assert_eq!(dequeued.param("CallSid"), Some(waiting[0].as_str()));
    assert_eq!(
        app.requests_to("/left").len(),
        2,
        "a REST dequeue runs the new document, not the action"
    );
    let (status, empty) = post(
        &callml,
        &format!("Queues/{queue_sid}/Members/Front.json"),
        &[("Url", &dequeue_url)],
    )
    .await;
    assert_eq!((status, empty["code"].as_u64()), (404, Some(20404)));
}
