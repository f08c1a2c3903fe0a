//! The seed's call control (../shared/seeds/bandwidth-sip-endpoints.txt, steps 4 to 6) with
//! real phones: callml calls a registered baresip, speaks to it on `/audio` and hangs up, each
//! step reported by the seed's JSON events; a registered baresip calls out, rings until the
//! application answers it, and is bridged with a second call the application made: both phones
//! hear each other. The request bodies are the seed's, as written.

mod common;

use std::path::Path;
use std::time::Duration;

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::baresip::BaresipPhone;
use common::callml::{Callml, TempDir};
use common::rest::json_request;
use common::rtp::tone_ratio;
use common::sipp::require_peer;
use common::wav::{read_wav_samples, wav_bytes};
use serde_json::Value;

const TOKEN: &str = "secret";
const PASSWORD: &str = "Abc123-Str0ng-Enough";
const HOST: &str = "xyz-corp-testing.sip.callml.test";
const SECOND: Duration = Duration::from_secs(1);

/// A request with HTTP Basic `token:secret` and a JSON body: status, `Location`, JSON body.
async fn call(
    callml: &Callml,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    json_request(callml, TOKEN, method, path, body).await
}

async fn post(callml: &Callml, path: &str, body: &str) -> (u16, Option<String>, Value) {
    call(callml, reqwest::Method::POST, path, Some(body)).await
}

fn last_segment(location: &str) -> &str {
    location.rsplit('/').next().unwrap()
}

/// The seed's domain, an application sending its events to `events_url` (answering incoming
/// calls itself when `auto_answer`), and the endpoint `jsmith_mobile` tied to it.
async fn seed_endpoint(callml: &Callml, events_url: &str, auto_answer: bool) {
    let user = &callml.account_sid;
    let (status, location, _) = post(
        callml,
        &format!("/v1/users/{user}/domains"),
        r#"{"name": "xyz-corp-testing", "description": "Testing Demo Domain"}"#,
    )
    .await;
    assert_eq!(status, 201);
    let domain_id = last_segment(&location.unwrap()).to_owned();
    let (status, location, _) = post(
        callml,
        &format!("/v1/users/{user}/applications"),
        &format!(
            r#"{{"name": "SIP clients", "incomingCallUrl": "{events_url}", "autoAnswer": {auto_answer}}}"#
        ),
    )
    .await;
    assert_eq!(status, 201);
    let application_id = last_segment(&location.unwrap()).to_owned();
    let (status, _, body) = post(
        callml,
        &format!("/v1/users/{user}/domains/{domain_id}/endpoints"),
        &format!(
            r#"{{"name": "jsmith_mobile", "domainId": "{domain_id}", "applicationId": "{application_id}",
                "enabled": "true", "credentials": {{"password": "{PASSWORD}"}}}}"#
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// A baresip registered as `jsmith_mobile` through callml, playing `wav`.
fn endpoint_phone(dir: &Path, callml: &Callml, wav: &Path) -> BaresipPhone {
    let phone = BaresipPhone::new(dir, wav);
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:jsmith_mobile@{HOST};transport=udp>;auth_pass={PASSWORD};\
             outbound=\"sip:{};transport=udp\";regint=60;answermode=auto\n",
            callml.sip
        ),
    )
    .unwrap();
    phone
}

/// Waits (bounded) until `phone` has registered as `jsmith_mobile`.
fn wait_for_binding(callml: &Callml, phone: &BaresipPhone) {
    for _ in 0..300 {
        let count: i64 = callml
            .db()
            .query_row(
                "SELECT count(*) FROM sip_bindings WHERE username = 'jsmith_mobile'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if count == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the phone did not register:\n{}\n{}",
        phone.log(),
        callml.log()
    );
}

/// Waits (bounded) until `phone` has printed `text`.
fn wait_for_phone_log(phone: &BaresipPhone, text: &str) {
    for _ in 0..200 {
        if phone.log().contains(text) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("baresip never printed {text:?}:\n{}", phone.log());
}

/// One second of a sine at `frequency`, repeated `seconds` times, as a WAV file in `dir`.
fn tone_wav(dir: &Path, frequency: f64, seconds: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let samples: Vec<i16> = (0..8000 * seconds)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * i as f64 / 8000.0).sin()) as i16
        })
        .collect();
    let path = dir.join("plays.wav");
    std::fs::write(&path, wav_bytes(&samples, 8000)).unwrap();
    path
}

/// The events received so far, parsed, with their type.
fn events(requests: &[RecordedRequest]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON event"))
        .collect()
}

/// Waits (bounded) until an event of `kind` for `call_id` has arrived at `path`.
async fn wait_for_event(app: &CustomerApp, path: &str, kind: &str, call_id: &str) -> Value {
    let deadline = std::time::Instant::now() + 20 * SECOND;
    loop {
        let received = events(&app.requests_to(path));
        if let Some(event) = received
            .iter()
            .find(|e| e["eventType"] == kind && e["callId"] == call_id)
        {
            return event.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} event for {call_id} at {path}; received {received:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 20 ms frames of `samples` where `frequency` holds most of the energy.
fn frames_with_tone(samples: &[i16], frequency: f64) -> usize {
    samples
        .chunks(160)
        .filter(|frame| frame.iter().any(|&s| s.unsigned_abs() > 1000))
        .filter(|frame| tone_ratio(frame, frequency, 8000.0) > 0.5)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn callml_calls_a_registered_endpoint_speaks_and_hangs_up_with_the_seeds_events() {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return;
    };
    require_peer("espeak-ng", "espeak-ng");
    let dir = TempDir::new("bandwidth-outbound");
    let app = CustomerApp::start().await;
    app.serve("/events", Reply::status(200));
    let callml = Callml::start("bandwidth-outbound", &["--auth-token", TOKEN]);
    let user = callml.account_sid.clone();
    seed_endpoint(&callml, &app.url("/incoming"), false).await;
    let silence = dir.path().join("silence.wav");
    // 30 s: baresip hangs up when its file ends.
    std::fs::write(&silence, wav_bytes(&vec![0; 8000 * 30], 8000)).unwrap();
    let phone = endpoint_phone(dir.path(), &callml, &silence);
    let running = phone.start(&baresip, None, 30 * SECOND);
    wait_for_binding(&callml, &phone);

    // Step 1 of the seed: a call to the endpoint's SIP URI, with the seed's body.
    let (status, location, body) = post(
        &callml,
        &format!("/v1/users/{user}/calls"),
        &format!(
            r#"{{
  "from"        : "+1555444333",
  "to"          : "sip:jsmith_mobile@{HOST}",
  "callbackUrl" : "{}"
}}"#,
            app.url("/events")
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let location = location.unwrap();
    assert!(
        location.starts_with(&format!("/v1/users/{user}/calls/c-")),
        "{location}"
    );
    let call_id = last_segment(&location).to_owned();

    // Step 2: the answer event, in the seed's shape.
    let answer = wait_for_event(&app, "/events", "answer", &call_id).await;
    let request = &app.requests_to("/events")[0];
    assert_eq!(
        (request.header("User-Agent"), request.header("Content-Type")),
        (Some("BandwidthAPI/v1"), Some("application/json"))
    );
    assert_eq!(answer["callState"], "active");
    assert_eq!(answer["from"], "+1555444333");
    assert_eq!(answer["to"], format!("sip:jsmith_mobile@{HOST}"));
    assert!(
        answer["callUri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/users/{user}/calls/{call_id}")),
        "{answer}"
    );
    let (_, _, fetched) = call(&callml, reqwest::Method::GET, &location, None).await;
    assert_eq!(
        (fetched["state"].as_str(), fetched["direction"].as_str()),
        (Some("active"), Some("out")),
        "{fetched}"
    );

    // Steps 3 and 4: speak, then the speak event when it is done.
    let (status, _, body) = post(
        &callml,
        &format!("{location}/audio"),
        r#"{
  "gender"   : "female",
  "voice"    : "kate",
  "sentence" : "Hello sip client",
  "locale"   : "en_US"
}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let spoken = wait_for_event(&app, "/events", "speak", &call_id).await;
    assert_eq!(
        (spoken["status"].as_str(), spoken["state"].as_str()),
        (Some("done"), Some("PLAYBACK_STOP"))
    );

    // Step 5: hang up; the hangup event follows.
    let (status, _, body) = post(&callml, &location, r#"{"state": "completed"}"#).await;
    assert_eq!(status, 200, "{body}");
    let hangup = wait_for_event(&app, "/events", "hangup", &call_id).await;
    assert_eq!(hangup["cause"], "NORMAL_CLEARING");
    let (_, _, fetched) = call(&callml, reqwest::Method::GET, &location, None).await;
    assert_eq!(fetched["state"], "completed", "{fetched}");
    assert!(app.requests_to("/incoming").is_empty());
    drop(running);

    // The phone answered and heard the sentence.
    let log = phone.log();
    assert!(log.contains("Call established"), "{log}");
    let (_, heard) = read_wav_samples(&phone.heard());
    let spoken_frames = heard
        .chunks(160)
        .filter(|frame| {
            let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
            (energy / frame.len() as f64).sqrt() > 300.0
        })
        .count();
    assert!(
        spoken_frames >= 20,
        "the phone heard {spoken_frames} frames of speech\n{}",
        callml.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_endpoint_rings_until_answered_and_is_bridged_with_a_second_call() {
    let Some(baresip) = require_peer("baresip", "baresip") else {
        return;
    };
    let dir = TempDir::new("bandwidth-bridge");
    let app = CustomerApp::start().await;
    app.serve("/incoming", Reply::status(200));
    app.serve("/events", Reply::status(200));
    let callml = Callml::start("bandwidth-bridge", &["--auth-token", TOKEN]);
    let user = callml.account_sid.clone();
    seed_endpoint(&callml, &app.url("/incoming"), false).await;

    // The far party (the seed's PSTN): a plain baresip playing 440 Hz.
    let far_dir = dir.path().join("far");
    let far = BaresipPhone::new(&far_dir, &tone_wav(&far_dir, 440.0, 30));
    let _far_running = far.start(&baresip, None, 40 * SECOND);
    // The endpoint: registered, playing 1 kHz, calling a number.
    let endpoint_dir = dir.path().join("endpoint");
    let endpoint = endpoint_phone(&endpoint_dir, &callml, &tone_wav(&endpoint_dir, 1000.0, 30));
    let endpoint_running = endpoint.start(
        &baresip,
        Some(&format!("sip:+15552223333@{HOST}")),
        40 * SECOND,
    );

    // Step 5.1: the incomingcall event; the call rings (autoAnswer is false).
    let first = events(&app.wait_for("/incoming", 1, 20 * SECOND).await);
    let incoming = &first[0];
    assert_eq!(incoming["eventType"], "incomingcall", "{incoming}");
    assert_eq!(incoming["from"], format!("sip:jsmith_mobile@{HOST}"));
    assert_eq!(incoming["to"], format!("sip:+15552223333@{HOST}"));
    let incoming_id = incoming["callId"].as_str().unwrap().to_owned();
    let incoming_uri = format!("/v1/users/{user}/calls/{incoming_id}");
    let (_, _, fetched) = call(&callml, reqwest::Method::GET, &incoming_uri, None).await;
    assert_eq!(
        (fetched["state"].as_str(), fetched["direction"].as_str()),
        (Some("started"), Some("in")),
        "ringing, not answered: {fetched}"
    );

    // 5.2 and 5.3: a call to the far party, answered.
    let (status, location, body) = post(
        &callml,
        &format!("/v1/users/{user}/calls"),
        &format!(
            r#"{{"from": "+1555444333", "to": "sip:phone@127.0.0.1:{};transport=udp", "callbackUrl": "{}"}}"#,
            far.sip_port,
            app.url("/events")
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let far_id = last_segment(&location.unwrap()).to_owned();
    wait_for_event(&app, "/events", "answer", &far_id).await;

    // 5.4: answer the ringing call, then bridge the two.
    let (status, _, body) = post(&callml, &incoming_uri, r#"{"state": "active"}"#).await;
    assert_eq!(status, 200, "{body}");
    wait_for_event(&app, "/incoming", "answer", &incoming_id).await;
    let bridge = format!(r#"{{"callIds": ["{incoming_id}", "{far_id}"]}}"#);
    let (status, location, body) =
        post(&callml, &format!("/v1/users/{user}/bridges"), &bridge).await;
    assert_eq!(status, 201, "{body}");
    let bridge_uri = location.unwrap();
    assert!(
        last_segment(&bridge_uri).starts_with("brg-"),
        "{bridge_uri}"
    );
    let mut active = Value::Null;
    for _ in 0..100 {
        active = call(&callml, reqwest::Method::GET, &bridge_uri, None)
            .await
            .2;
        if active["state"] == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active["state"], "active", "{active}");
    assert_eq!(active["callIds"][0], incoming_id.as_str());

    // Both talk for 2 s of bridged audio, then the application hangs up both calls.
    tokio::time::sleep(2 * SECOND).await;
    for uri in [&incoming_uri, &format!("/v1/users/{user}/calls/{far_id}")] {
        let (status, _, body) = post(&callml, uri, r#"{"state": "completed"}"#).await;
        assert_eq!(status, 200, "{body}");
    }
    wait_for_event(&app, "/incoming", "hangup", &incoming_id).await;
    wait_for_event(&app, "/events", "hangup", &far_id).await;
    // Each phone saw its call end (and closed its recording).
    for phone in [&endpoint, &far] {
        wait_for_phone_log(phone, "session closed");
    }
    drop(endpoint_running);

    for phone in [&endpoint, &far] {
        let log = phone.log();
        assert!(log.contains("Call established"), "{log}");
    }
    let (_, endpoint_heard) = read_wav_samples(&endpoint.heard());
    let (_, far_heard) = read_wav_samples(&far.heard());
    let (to_endpoint, to_far) = (
        frames_with_tone(&endpoint_heard, 440.0),
        frames_with_tone(&far_heard, 1000.0),
    );
    assert!(
        to_endpoint >= 50 && to_far >= 50,
        "through the bridge the endpoint heard {to_endpoint} frames of 440 Hz and the far party \
         {to_far} of 1 kHz\n{}",
        callml.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_control_documents_need_callmls_signature() {
    let callml = Callml::start("bandwidth-call-refusals", &["--auth-token", TOKEN]);
    let user = callml.account_sid.clone();
    let calls = format!("/v1/users/{user}/calls");
    for (body, says) in [
        (
            r#"{"from": "+1555444333", "callbackUrl": "http://127.0.0.1:9/"}"#,
            "to",
        ),
        (
            r#"{"to": "+15552223333", "callbackUrl": "http://127.0.0.1:9/"}"#,
            "from",
        ),
        (r#"{"from": "+1555444333", "to": "sip:a@b"}"#, "callbackUrl"),
        (
            r#"{"from": "+1555444333", "to": "sip:a@b", "callbackUrl": "ftp://x"}"#,
            "callbackUrl",
        ),
        (
            r#"{"from": "+1555444333", "to": "sip:a@b", "callbackUrl": "http://127.0.0.1:9/", "callTimeout": 0}"#,
            "callTimeout",
        ),
    ] {
        let (status, _, refusal) = post(&callml, &calls, body).await;
        assert_eq!(status, 400, "{body}: {refusal}");
        assert!(
            refusal["message"].as_str().unwrap().contains(says),
            "{body}: {refusal}"
        );
    }
    let unknown = format!("{calls}/c-00000000000000000000000000000000");
    let (status, _, _) = post(&callml, &unknown, r#"{"state": "completed"}"#).await;
    assert_eq!(status, 404);
    let (status, _, _) = post(
        &callml,
        &format!("{unknown}/audio"),
        r#"{"sentence": "hi"}"#,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, refusal) = post(
        &callml,
        &format!("/v1/users/{user}/bridges"),
        r#"{"callIds": ["c-00000000000000000000000000000000"]}"#,
    )
    .await;
    assert_eq!(status, 400, "{refusal}");

    // A control document asked for by anyone but callml: 403, and no event is sent.
    let app = CustomerApp::start().await;
    let forged = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/users/{user}/control/status?callbackUrl={}",
            callml.http,
            app.url("/events")
        ))
        .header("X-Twilio-Signature", "forged")
        .form(&[
            ("CallSid", "CA00000000000000000000000000000000"),
            ("CallStatus", "completed"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.requests().is_empty());
}
