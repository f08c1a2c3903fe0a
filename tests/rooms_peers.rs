//! Conferences with real peers besides sipp: baresip (Debian `baresip`) talking in a room with
//! two sipp phones, its audio correlated at both ends, and the official `twilio` Python
//! library (`tests/python/test_twilio.py`, marker `conference`) driving the Conferences and
//! Participants API against a live conference of sipp phones, with what each phone heard
//! checked here afterwards.

mod common;

use std::path::Path;
use std::time::Duration;

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::baresip::BaresipPhone;
use common::callml::{Callml, TempDir};
use common::python::{pytest, twilio_venv};
use common::rest::{TOKEN, post};
use common::rtp::{Packet, RtpPeer, packets_with_tones, tone_ratio, ulaw_to_linear};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::{best_correlation, read_wav, wav_bytes};

const SECOND: Duration = Duration::from_secs(1);

/// A sipp phone in a conference that stays until callml hangs up (at most a minute), with an
/// RTP peer sending `tone` and recording what it hears.
struct Phone {
    tone: f64,
    peer: RtpPeer,
    run: tokio::task::JoinHandle<SippRun>,
}

impl Phone {
    fn call(sipp: &Path, callml: &Callml, tone: f64) -> Phone {
        let peer = RtpPeer::start(tone, 3 * SECOND, 60 * SECOND);
        let sipp = Sipp::new(sipp, "callml_hangs_up.xml", callml.sip).key("rtp_port", peer.port);
        let run = tokio::task::spawn_blocking(move || sipp.run());
        Phone { tone, peer, run }
    }

    /// Waits until callml has fetched `calls` documents, this phone's call the last of them;
    /// when sipp ends first, panics with its traces (it could not start, or callml refused it).
    async fn reached(&mut self, app: &CustomerApp, calls: usize, callml: &Callml) {
        tokio::select! {
            _ = app.wait_for("/voice", calls, 10 * SECOND) => {}
            run = &mut self.run => {
                run.unwrap().assert_success_with_log(&callml.log());
                panic!("sipp's call ended before callml fetched its document");
            }
        }
    }

    /// Waits for callml's BYE; what the phone heard.
    async fn hung_up(self, callml: &Callml) -> Vec<Packet> {
        self.run
            .await
            .unwrap()
            .assert_success_with_log(&callml.log());
        let heard = self.peer.finish();
        assert_eq!(
            packets_with_tones(&heard, &[self.tone], 0.1),
            0,
            "the phone sending {} Hz heard itself",
            self.tone
        );
        heard
    }
}

/// Starts callml with `document` as every inbound call's.
async fn server(name: &str, document: &str) -> (CustomerApp, Callml) {
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml(document));
    app.serve("/conference", Reply::status(204));
    let voice = app.url("/voice");
    let callml = Callml::start(name, &["--voice-url", &voice, "--auth-token", TOKEN]);
    (app, callml)
}

fn event_names(requests: &[RecordedRequest]) -> Vec<&str> {
    requests
        .iter()
        .filter_map(|r| r.param("StatusCallbackEvent"))
        .collect()
}

/// The CallSid of each document fetch, in order.
fn call_sids(app: &CustomerApp) -> Vec<String> {
    app.requests_to("/voice")
        .iter()
        .map(|r| r.param("CallSid").expect("CallSid").to_owned())
        .collect()
}

/// How many packets carry `tone` with at least a quarter of their energy (a mix of two holds
/// about half of each).
fn heard_tone(packets: &[Packet], tone: f64) -> usize {
    packets_with_tones(packets, &[tone], 0.25)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_twilio_library_lists_mutes_adds_to_and_ends_a_live_conference() {
    let Some(twilio) = twilio_venv() else {
        return;
    };
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let (app, callml) = server(
        "rooms-library",
        r#"<Response><Dial><Conference beep="false" waitUrl="" statusCallback="/conference" statusCallbackEvent="start end join leave mute">library</Conference></Dial></Response>"#,
    )
    .await;
    let mut first = Phone::call(&sipp, &callml, 300.0);
    first.reached(&app, 1, &callml).await;
    let mut second = Phone::call(&sipp, &callml, 500.0);
    second.reached(&app, 2, &callml).await;
    let started = app.wait_for("/conference", 3, 20 * SECOND).await;
    assert_eq!(
        event_names(&started),
        ["participant-join", "participant-join", "conference-start"]
    );
    let calls = call_sids(&app);

    // The agent the library adds: a sipp UAS that answers, its RTP peer sending 850 Hz.
    let agent_peer = RtpPeer::start(850.0, 3 * SECOND, 60 * SECOND);
    let uas = Sipp::listen(&sipp, "uas_answers.xml").key("rtp_port", agent_peer.port);
    let uas_addr = uas.addr();
    let agent_run = tokio::task::spawn_blocking(move || uas.run());

    let env = vec![
        ("CALLML_URL", format!("http://{}", callml.http)),
        ("CALLML_ACCOUNT_SID", callml.account_sid.clone()),
        ("CALLML_AUTH_TOKEN", TOKEN.to_owned()),
        ("CALLML_CONFERENCE_NAME", "library".to_owned()),
        ("CALLML_CONFERENCE_CALLS", calls.join(",")),
        ("CALLML_SIPP_UAS", uas_addr.to_string()),
    ];
    tokio::task::spawn_blocking(move || pytest(&twilio, "test_twilio.py", &env, "conference"))
        .await
        .expect("pytest thread");

    // The library's `update(status="completed")` hung every participant up.
    let muted_heard = first.hung_up(&callml).await;
    let other_heard = second.hung_up(&callml).await;
    agent_run
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let agent_heard = agent_peer.finish();

    // The unmuted phone heard the first one until the mute, then never again, and the
    // agent once it had joined (the library muted before it added the agent).
    let first_agent = other_heard
        .iter()
        .position(|p| heard_tone(std::slice::from_ref(p), 850.0) == 1)
        .expect("the second phone heard the agent");
    let (before_agent, with_agent) = other_heard.split_at(first_agent);
    assert!(
        heard_tone(before_agent, 300.0) > 40,
        "the second phone heard the first before the mute: {} of {} packets",
        heard_tone(before_agent, 300.0),
        before_agent.len()
    );
    assert!(
        heard_tone(with_agent, 850.0) > 50,
        "the second phone heard the agent"
    );
    assert_eq!(
        packets_with_tones(with_agent, &[300.0], 0.1),
        0,
        "the second phone heard the muted phone"
    );
    // The muted phone still heard the room: the second phone and the agent.
    assert!(heard_tone(&muted_heard, 500.0) > 20);
    assert!(
        heard_tone(&muted_heard, 850.0) > 50,
        "the muted phone heard the agent"
    );
    // The agent heard the unmuted phone and not the muted one.
    assert!(
        heard_tone(&agent_heard, 500.0) > 50,
        "the agent heard the second phone ({} packets)",
        agent_heard.len()
    );
    assert_eq!(
        packets_with_tones(&agent_heard, &[300.0], 0.1),
        0,
        "the agent heard the muted phone"
    );

    let events = app.wait_for("/conference", 9, 20 * SECOND).await;
    let names = event_names(&events);
    assert_eq!(
        names[..5],
        [
            "participant-join",
            "participant-join",
            "conference-start",
            "participant-mute",
            "participant-join"
        ],
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "participant-leave").count(),
        3,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"conference-end"), "{names:?}");
    let ended = callml.wait_for_ended_calls(3, 10 * SECOND);
    assert!(
        ended.iter().all(|c| c.status == "completed" && c.answered),
        "{ended:?}"
    );
}

/// `seconds` of white noise at 8 kHz (±6,000), from `seed`: it correlates with a copy of
/// itself at one lag only.
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

/// `signal` (8 kHz) through a second-order notch at `frequency`: what a phone heard without
/// the other phone's tone, so that it can be correlated with what baresip played.
fn notch(signal: &[i16], frequency: f64) -> Vec<i16> {
    let w = 2.0 * std::f64::consts::PI * frequency / 8000.0;
    let (r, cos) = (0.98, w.cos());
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    signal
        .iter()
        .map(|&x| {
            let x = f64::from(x);
            let y = x - 2.0 * cos * x1 + x2 + 2.0 * r * cos * y1 - r * r * y2;
            (x2, x1, y2, y1) = (x1, x, y1, y);
            y.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// A phone's received PCMU, decoded in the order it arrived.
fn decoded(packets: &[Packet]) -> Vec<i16> {
    packets
        .iter()
        .filter(|p| p.payload_type == 0)
        .flat_map(|p| p.payload.iter().map(|&b| ulaw_to_linear(b)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_in_a_room_hears_both_sipp_phones_and_both_hear_it() {
    let (Some(baresip), Some(sipp)) = (
        require_peer("baresip", "baresip"),
        require_peer("sipp", "sip-tester"),
    ) else {
        return;
    };
    let (app, callml) = server(
        "rooms-baresip",
        r#"<Response><Dial><Conference beep="false" waitUrl="" statusCallback="/conference" statusCallbackEvent="start end join leave">peers</Conference></Dial></Response>"#,
    )
    .await;
    let tones = [300.0, 700.0];
    let mut first = Phone::call(&sipp, &callml, tones[0]);
    first.reached(&app, 1, &callml).await;
    let mut second = Phone::call(&sipp, &callml, tones[1]);
    second.reached(&app, 2, &callml).await;
    let started = app.wait_for("/conference", 3, 20 * SECOND).await;
    assert_eq!(event_names(&started)[2], "conference-start");
    let conference = started[0].param("ConferenceSid").unwrap().to_owned();

    // baresip calls in and talks: 5 s of noise from its WAV file, then it hangs up.
    let dir = TempDir::new("rooms-baresip-phone");
    let played = noise(4242, 5.0);
    let wav = dir.path().join("plays.wav");
    std::fs::write(&wav, wav_bytes(&played, 8000)).unwrap();
    let phone = BaresipPhone::new(&dir.path().join("phone"), &wav);
    let running = phone.start(
        &baresip,
        Some(&format!("sip:peers@{}", callml.sip)),
        9 * SECOND,
    );
    tokio::task::spawn_blocking(move || running.wait())
        .await
        .unwrap();
    let log = phone.log();
    assert!(log.contains("Call established"), "{log}");
    let baresip_call = call_sids(&app)[2].clone();
    let events = app.requests_to("/conference");
    assert!(
        events.iter().any(
            |e| e.param("StatusCallbackEvent") == Some("participant-join")
                && e.param("CallSid") == Some(baresip_call.as_str())
        ),
        "baresip joined the conference: {:?}",
        event_names(&events)
    );

    // End the conference: callml hangs up both phones.
    let (status, body) = post(
        &callml,
        &format!("Conferences/{conference}.json"),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let heard = [first.hung_up(&callml).await, second.hung_up(&callml).await];
    let calls = callml.wait_for_ended_calls(3, 10 * SECOND);
    let baresip_row = calls.iter().find(|c| c.sid == baresip_call).unwrap();
    assert!(
        baresip_row.answered && baresip_row.status == "completed",
        "{baresip_row:?}"
    );

    // baresip heard both phones at once, and not itself.
    let (rate, channels, recorded) = read_wav(&phone.heard());
    assert_eq!((rate, channels), (8000, 1));
    let both = recorded
        .chunks_exact(160)
        .filter(|frame| tones.iter().all(|&f| tone_ratio(frame, f, 8000.0) > 0.25))
        .count();
    assert!(
        both >= 150,
        "baresip heard both tones in {both} of {} frames",
        recorded.len() / 160
    );
    let (itself, _) = best_correlation(&recorded, &played[8000..16000], 0..recorded.len());
    println!(
        "baresip heard both tones in {both} of {} frames; its own noise correlates {itself:.3}",
        recorded.len() / 160
    );
    assert!(itself < 0.2, "baresip heard itself: {itself:.3}");

    // Each phone heard baresip's noise (once the other phone's tone is taken out of what it
    // heard and out of the noise alike), and the other phone.
    for (index, packets) in heard.iter().enumerate() {
        let other = tones[1 - index];
        assert!(
            heard_tone(packets, other) > 50,
            "phone {index} heard {other} Hz"
        );
        let signal = notch(&decoded(packets), other);
        let template = notch(&played, other);
        let (correlation, lag) = best_correlation(&signal, &template[8000..16000], 0..signal.len());
        println!("phone {index} heard baresip's noise: correlation {correlation:.3} at lag {lag}");
        assert!(
            correlation >= 0.8,
            "phone {index} heard baresip: correlation {correlation:.3} at lag {lag}\n{log}"
        );
    }
}
