//! The seeds' session API (Vonage Video / OpenTok SIP Interconnect) against real SIP
//! endpoints: sipp callees dialled into one session with the seed's own JSON, custom headers
//! and digest auth, the monitoring callbacks in order, RFC 4733 DTMF heard by the endpoint,
//! force mute, DELETE sending BYE, a callee that refuses; and the refusals of bad requests.

mod common;

use std::time::{Duration, Instant};

use callml::api::jwt;
use common::app::{CustomerApp, Reply};
use common::callml::Callml;
use common::rest::TOKEN;
use common::rtp::{Packet, RtpPeer, packets_with_tones};
use common::sipp::{Sipp, SippRun, require_peer};
use serde_json::{Value, json};

const SECOND: Duration = Duration::from_secs(1);
/// The seeds' example session and project.
const SESSION: &str = "2_MX4xMzExMjU3MX5-MTQ3MDI1NzY3OTkxOH45QXRr";
const PROJECT: &str = "123456";
/// RFC 4733 telephone-event payload type the callee offers.
const TELEPHONE_EVENT: u8 = 101;

/// How a request proves who it is.
#[derive(Clone, Copy)]
enum Auth {
    /// `Authorization: Bearer` (Vonage), issued for the account.
    Bearer,
    /// `X-OPENTOK-AUTH` (OpenTok), issued for the project.
    OpenTok,
}

fn token(issuer: &str, expires_in: i64, key: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jwt::sign(
        &json!({"iss": issuer, "ist": "project", "iat": now, "exp": now + expires_in}),
        key.as_bytes(),
    )
}

/// A session API request; the status and the JSON body (`null` when empty).
async fn call_api(
    callml: &Callml,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    auth: Option<(Auth, String)>,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://{}/v2/project/{PROJECT}/{path}", callml.http);
    let mut request = reqwest::Client::new().request(method, url);
    match auth {
        Some((Auth::Bearer, token)) => request = request.bearer_auth(token),
        Some((Auth::OpenTok, token)) => request = request.header("X-OPENTOK-AUTH", token),
        None => {}
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("session API request");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, body)
}

/// The session API as the account: a fresh token per request.
async fn api(
    callml: &Callml,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = (Auth::Bearer, token(&callml.account_sid, 60, TOKEN));
    call_api(callml, method, path, body, Some(auth)).await
}

/// The seed's dial body, to a callee at `addr`.
fn dial_body(addr: std::net::SocketAddr, observe_force_mute: bool) -> Value {
    json!({
        "sessionId": SESSION,
        "token": "A valid token",
        "sip": {
            "uri": format!("sip:user@{addr}"),
            "from": "from@example.com",
            "headers": { "X-Session-Tag": "seed-42" },
            "auth": { "username": "alice", "password": "s3cret" },
            "secure": false,
            "video": false,
            "observeForceMute": observe_force_mute
        }
    })
}

fn callee(sipp: Sipp) -> (std::net::SocketAddr, tokio::task::JoinHandle<SippRun>) {
    let addr = sipp.addr();
    (addr, tokio::task::spawn_blocking(move || sipp.run()))
}

/// The monitoring events received for `connection`, as `event` or `event STATE`.
fn events_of(app: &CustomerApp, connection: &str) -> Vec<String> {
    app.requests_to("/monitor")
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("JSON event"))
        .filter(|e| e["call"]["connectionId"] == connection)
        .map(|e| {
            let event = e["event"].as_str().unwrap_or("").to_owned();
            match (e["state"].as_str(), e["reason_code"].as_str()) {
                (Some(state), _) => format!("{event} {state}"),
                (None, Some(code)) => format!(
                    "{event} {code} {}",
                    e["reason_message"].as_str().unwrap_or("")
                ),
                _ => event,
            }
        })
        .collect()
}

/// Waits until `connection` has had `count` monitoring events.
async fn wait_for_events(app: &CustomerApp, connection: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + 15 * SECOND;
    loop {
        let events = events_of(app, connection);
        if events.len() >= count || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Packets of `tone` heard between `from` and `to` after the peer started.
fn heard(packets: &[Packet], tone: f64, from: Duration, to: Duration) -> usize {
    let window: Vec<Packet> = packets
        .iter()
        .filter(|p| p.at >= from && p.at < to)
        .cloned()
        .collect();
    packets_with_tones(&window, &[tone], 0.25)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_dial_rings_sip_endpoints_into_a_session_with_monitoring_dtmf_mute_and_bye() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/monitor", Reply::status(204));
    let monitor = app.url("/monitor");
    let callml = Callml::start(
        "sessions",
        &["--auth-token", TOKEN, "--room-callback", &monitor],
    );
    let started = Instant::now();
    let tones = [440.0, 660.0];
    let peers: Vec<RtpPeer> = tones
        .iter()
        .map(|&tone| RtpPeer::start(tone, 3 * SECOND, 40 * SECOND))
        .collect();
    let mut callees = Vec::new();
    let mut connections = Vec::new();
    for (index, peer) in peers.iter().enumerate() {
        let (addr, run) =
            callee(Sipp::listen(&sipp, "session_callee.xml").key("rtp_port", peer.port));
        callees.push(run);
        let auth = match index {
            0 => (Auth::Bearer, token(&callml.account_sid, 60, TOKEN)),
            _ => (Auth::OpenTok, token(PROJECT, 60, TOKEN)),
        };
        let (status, body) = call_api(
            &callml,
            reqwest::Method::POST,
            "dial",
            Some(dial_body(addr, index == 0)),
            Some(auth),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for field in ["id", "connectionId", "streamId"] {
            assert!(
                body[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field}: {body}"
            );
        }
        connections.push(body);
    }
    let connection = |i: usize| connections[i]["connectionId"].as_str().unwrap().to_owned();
    for index in 0..2 {
        let events = wait_for_events(&app, &connection(index), 4).await;
        assert_eq!(
            events,
            [
                "callCreated",
                "callUpdated DIALING",
                "callUpdated RINGING",
                "callUpdated ACTIVE"
            ],
            "connection {index}"
        );
    }
    let first = &app.requests_to("/monitor")[0];
    let event: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(event["sessionId"], SESSION);
    assert_eq!(event["projectId"], PROJECT);
    assert_eq!(event["call"]["id"], connections[0]["id"]);
    assert!(event["timestamp"].as_i64().unwrap() >= event["call"]["createdAt"].as_i64().unwrap());

    // A callee that refuses: its call is destroyed with the SIP status; the room goes on.
    let (busy_addr, busy) = callee(Sipp::listen(&sipp, "uas_busy.xml"));
    let mut busy_body = dial_body(busy_addr, false);
    busy_body["sip"]["auth"] = Value::Null;
    let (status, refused) = api(&callml, reqwest::Method::POST, "dial", Some(busy_body)).await;
    assert_eq!(status, 200, "{refused}");
    let refused_connection = refused["connectionId"].as_str().unwrap();
    let events = wait_for_events(&app, refused_connection, 4).await;
    assert_eq!(
        events,
        [
            "callCreated",
            "callUpdated DIALING",
            "callUpdated HANGUP",
            "callDestroyed 486 Busy Here"
        ]
    );
    busy.await.unwrap().assert_success();

    // Both hear each other; then keys to the first, and a force mute of the first.
    tokio::time::sleep(2 * SECOND).await;
    let (status, body) = api(
        &callml,
        reqwest::Method::POST,
        &format!("session/{SESSION}/connection/{}/dtmf", connection(0)),
        Some(json!({"digits": "1#"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stream = |i: usize| connections[i]["streamId"].as_str().unwrap().to_owned();
    let muted_at = started.elapsed();
    let (status, body) = api(
        &callml,
        reqwest::Method::POST,
        &format!("session/{SESSION}/mute"),
        Some(json!({"active": true, "excludedStreamIds": [stream(1)]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["changed"], 1,
        "only the first observes force mute: {body}"
    );
    tokio::time::sleep(3 * SECOND).await;

    for index in 0..2 {
        let (status, body) = api(
            &callml,
            reqwest::Method::DELETE,
            &format!("session/{SESSION}/connection/{}", connection(index)),
            None,
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    for run in callees {
        run.await.unwrap().assert_success_with_log(&callml.log());
    }
    let first_events = wait_for_events(&app, &connection(0), 7).await;
    assert_eq!(
        first_events[4..],
        [
            "muteForced",
            "callUpdated HANGUP",
            "callDestroyed 700 Normal Clearing"
        ]
    );
    let second_events = wait_for_events(&app, &connection(1), 6).await;
    assert_eq!(
        second_events[4..],
        ["callUpdated HANGUP", "callDestroyed 700 Normal Clearing"]
    );

    let heard_by: Vec<Vec<Packet>> = peers.into_iter().map(RtpPeer::finish).collect();
    let before = muted_at.saturating_sub(2 * SECOND);
    assert!(
        heard(&heard_by[0], tones[1], before, muted_at) > 20,
        "the first endpoint heard the second"
    );
    assert!(
        heard(&heard_by[1], tones[0], before, muted_at) > 20,
        "the second endpoint heard the first"
    );
    let after = heard(
        &heard_by[1],
        tones[0],
        muted_at + SECOND,
        muted_at + 3 * SECOND,
    );
    assert_eq!(
        after, 0,
        "the force-muted first endpoint is silent for the second"
    );
    let events: Vec<u8> = heard_by[0]
        .iter()
        .filter(|p| p.payload_type == TELEPHONE_EVENT && !p.payload.is_empty())
        .map(|p| p.payload[0])
        .collect();
    assert!(
        events.contains(&1),
        "the first endpoint got key 1 as RFC 4733: {events:?}"
    );
    assert!(
        events.contains(&11),
        "the first endpoint got # as RFC 4733: {events:?}"
    );
    assert!(
        !heard_by[1]
            .iter()
            .any(|p| p.payload_type == TELEPHONE_EVENT),
        "the keys went to the first endpoint only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_session_requests_get_a_clear_json_refusal() {
    let callml = Callml::start("sessions-bad", &["--auth-token", TOKEN]);
    let sip = json!({"uri": "sip:user@127.0.0.1:9"});
    let good = Some(json!({"sessionId": SESSION, "token": "t", "sip": sip, "video": false}));
    let post = reqwest::Method::POST;

    let (status, body) = call_api(&callml, post.clone(), "dial", good.clone(), None).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(401)), "{body}");
    let wrong_key = (
        Auth::Bearer,
        token(&callml.account_sid, 60, "not the token"),
    );
    let (status, body) =
        call_api(&callml, post.clone(), "dial", good.clone(), Some(wrong_key)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    let expired = (Auth::Bearer, token(&callml.account_sid, -10, TOKEN));
    let (status, body) = call_api(&callml, post.clone(), "dial", good.clone(), Some(expired)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let stranger = (Auth::OpenTok, token("another-project", 60, TOKEN));
    let (status, body) =
        call_api(&callml, post.clone(), "dial", good.clone(), Some(stranger)).await;
    assert_eq!(status, 401, "{body}");

    for (body, expected) in [
        (json!({"token": "t", "sip": sip}), "sessionId"),
        (
            json!({"sessionId": SESSION, "token": "t", "sip": {}}),
            "sip.uri",
        ),
        (
            json!({"sessionId": SESSION, "token": "t", "sip": {"uri": "sip:a@127.0.0.1", "video": true}}),
            "audio only",
        ),
    ] {
        let (status, answer) = api(&callml, post.clone(), "dial", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["code"], 400);
        assert!(
            answer["message"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
    let (status, answer) = call_api(
        &callml,
        post.clone(),
        "dial",
        None,
        Some((Auth::Bearer, token(&callml.account_sid, 60, TOKEN))),
    )
    .await;
    assert_eq!(status, 400, "an empty body: {answer}");

    let (status, answer) = api(
        &callml,
        reqwest::Method::DELETE,
        &format!("session/{SESSION}/connection/e9f8c166-6c67-440d-994a-04fb6dfed007"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains(SESSION),
        "{answer}"
    );
    let (status, answer) = api(
        &callml,
        post.clone(),
        &format!("session/{SESSION}/dtmf"),
        Some(json!({"digits": "12x"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("digits"),
        "{answer}"
    );
}
