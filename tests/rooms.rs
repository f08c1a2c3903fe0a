//! Conferences end to end: sipp callers `<Dial><Conference>`, the real `callml serve` binary
//! mixing them, RTP peers on every phone sending a tone of their own and measuring what each
//! heard, the REST API muting, adding and removing participants, and the conference's status
//! callbacks.

mod common;

use std::time::{Duration, Instant};

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::callml::Callml;
use common::rest::{TOKEN, delete, get, post};
use common::rtp::{Packet, RtpPeer, packets_with_tone, packets_with_tones};
use common::sipp::{Sipp, SippRun, require_peer};

const SECOND: Duration = Duration::from_secs(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

fn server(name: &str, app: &CustomerApp) -> Callml {
    let voice = app.url("/voice");
    Callml::start(name, &["--voice-url", &voice, "--auth-token", TOKEN])
}

/// A phone in the conference: its RTP peer (sending `tone`), when it started, and its call.
struct Phone {
    tone: f64,
    started: Instant,
    peer: RtpPeer,
    run: tokio::task::JoinHandle<SippRun>,
}

impl Phone {
    /// A phone that hangs up after `stay` in the call.
    fn call(sipp: &std::path::Path, callml: &Callml, tone: f64, stay: Duration) -> Phone {
        Phone::start(
            Sipp::new(sipp, "caller_hangs_up.xml", callml.sip).pause(stay),
            tone,
            stay,
        )
    }

    /// A phone that stays until callml hangs up, at most `limit`.
    fn call_until_hung_up(
        sipp: &std::path::Path,
        callml: &Callml,
        tone: f64,
        limit: Duration,
    ) -> Phone {
        Phone::start(
            Sipp::new(sipp, "callml_hangs_up.xml", callml.sip),
            tone,
            limit,
        )
    }

    fn start(sipp: Sipp, tone: f64, stay: Duration) -> Phone {
        let started = Instant::now();
        let peer = RtpPeer::start(tone, 3 * SECOND, stay + 20 * SECOND);
        let run = spawn(sipp.key("rtp_port", peer.port));
        Phone {
            tone,
            started,
            peer,
            run,
        }
    }

    /// The call ends; what the phone heard, with each packet's time since `epoch`.
    async fn hang_up(self, epoch: Instant) -> (f64, Vec<Packet>) {
        self.run.await.unwrap().assert_success();
        let offset = self.started.saturating_duration_since(epoch);
        let packets = self
            .peer
            .finish()
            .into_iter()
            .map(|mut p| {
                p.at += offset;
                p
            })
            .collect();
        (self.tone, packets)
    }
}

/// Packets of `tone` heard between `from` and `to` after the epoch.
fn heard_between(packets: &[Packet], tone: f64, from: Duration, to: Duration) -> usize {
    let window: Vec<Packet> = packets
        .iter()
        .filter(|p| p.at >= from && p.at < to)
        .cloned()
        .collect();
    // A mix of two tones: each holds about half of a frame's energy.
    packets_with_tones(&window, &[tone], 0.25)
}

fn event_names(requests: &[RecordedRequest]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| r.param("StatusCallbackEvent").map(str::to_owned))
        .collect()
}

/// Waits until the conference's status callback has sent `count` events.
async fn events(app: &CustomerApp, count: usize) -> Vec<RecordedRequest> {
    app.wait_for("/conference", count, 20 * SECOND).await
}

#[tokio::test(flavor = "multi_thread")]
async fn three_callers_hear_each_other_not_themselves_and_a_muted_one_goes_silent() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            r#"<Response><Dial><Conference beep="false" waitUrl="" statusCallback="/conference" statusCallbackEvent="start end join leave mute">standup</Conference></Dial></Response>"#,
        ),
    );
    app.serve("/conference", Reply::status(204));
    let callml = server("room-mix", &app);
    let epoch = Instant::now();
    let tones = [300.0, 500.0, 700.0];
    let stay = 8 * SECOND;
    let mut phones = Vec::new();
    for tone in tones {
        phones.push(Phone::call(&sipp, &callml, tone, stay));
        app.wait_for("/voice", phones.len(), 10 * SECOND).await;
    }
    // Three joins and the start.
    let started = events(&app, 4).await;
    let conference = started[0].param("ConferenceSid").unwrap().to_owned();
    let first_call = app.requests_to("/voice")[0]
        .param("CallSid")
        .unwrap()
        .to_owned();
    tokio::time::sleep(2 * SECOND).await;
    let muted_at = epoch.elapsed();
    let (status, participant) = post(
        &callml,
        &format!("Conferences/{conference}/Participants/{first_call}.json"),
        &[("Muted", "true")],
    )
    .await;
    assert_eq!(status, 200, "{participant}");
    assert_eq!(participant["muted"], true);
    let (status, listed) = get(
        &callml,
        &format!("Conferences/{conference}/Participants.json"),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["participants"].as_array().unwrap().len(), 3);

    let mut heard = Vec::new();
    for phone in phones {
        heard.push(phone.hang_up(epoch).await);
    }
    let settle = Duration::from_millis(400);
    let all_in = muted_at - SECOND;
    for (index, (own, packets)) in heard.iter().enumerate() {
        assert_eq!(
            packets_with_tones(packets, &[*own], 0.1),
            0,
            "phone {index} heard itself ({own} Hz)"
        );
        for (other, tone) in tones.iter().enumerate().filter(|(i, _)| *i != index) {
            let before = heard_between(packets, *tone, all_in, muted_at);
            assert!(
                before > 20,
                "phone {index} heard {tone} Hz in {before} packets before the mute \
                 ({} packets in all, {:?} to {:?})",
                packets.len(),
                packets.first().map(|p| p.at),
                packets.last().map(|p| p.at)
            );
            let after = heard_between(packets, *tone, muted_at + settle, muted_at + 3 * SECOND);
            if other == 0 {
                assert_eq!(after, 0, "phone {index} still heard the muted phone");
            } else {
                assert!(
                    after > 20,
                    "phone {index} heard {tone} Hz in {after} packets after"
                );
            }
        }
    }
    let all = events(&app, 9).await;
    let names = event_names(&all);
    assert_eq!(
        names[..5],
        [
            "participant-join",
            "participant-join",
            "conference-start",
            "participant-join",
            "participant-mute"
        ]
    );
    assert_eq!(names.last().map(String::as_str), Some("conference-end"));
    let sequence: Vec<u32> = all
        .iter()
        .map(|r| r.param("SequenceNumber").unwrap().parse().unwrap())
        .collect();
    assert_eq!(sequence, (1..=sequence.len() as u32).collect::<Vec<_>>());
    let (status, record) = get(&callml, &format!("Conferences/{conference}.json")).await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "completed");
    assert_eq!(record["reason_conference_ended"], "last-participant-left");
    let calls = callml.wait_for_ended_calls(3, 10 * SECOND);
    assert!(calls.iter().all(|c| c.status == "completed"), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_music_until_the_moderator_whose_exit_ends_it_for_everyone() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    let guest = r#"<Response><Dial action="/after"><Conference startConferenceOnEnter="false" beep="false">board</Conference></Dial></Response>"#;
    let host = r#"<Response><Dial><Conference endConferenceOnExit="true" beep="false">board</Conference></Dial></Response>"#;
    app.serve_sequence("/voice", vec![Reply::xml(guest), Reply::xml(host)]);
    app.serve(
        "/after",
        Reply::xml(r#"<Response><Pause length="1"/><Hangup/></Response>"#),
    );
    let callml = server("room-moderator", &app);
    let epoch = Instant::now();
    // The guest waits alone with the built-in music, then the host joins for 3 s and leaves.
    let waiting = Phone::call_until_hung_up(&sipp, &callml, 400.0, 30 * SECOND);
    app.wait_for("/voice", 1, 10 * SECOND).await;
    tokio::time::sleep(3 * SECOND).await;
    let host_joined = epoch.elapsed();
    let host_phone = Phone::call(&sipp, &callml, 900.0, 3 * SECOND);
    let (_, host_heard) = host_phone.hang_up(epoch).await;
    // The host's leaving ended the conference: the guest's <Dial> went on to its action.
    let after = app.wait_for("/after", 1, 10 * SECOND).await;
    assert_eq!(after[0].param("DialCallStatus"), Some("answered"));
    let (_, guest_heard) = waiting.hang_up(epoch).await;
    let before_host: Vec<&Packet> = guest_heard.iter().filter(|p| p.at < host_joined).collect();
    assert!(
        before_host.len() > 100,
        "the guest heard its wait music ({} packets)",
        before_host.len()
    );
    let loud = before_host
        .iter()
        .filter(|p| p.payload.iter().any(|&b| b & 0x7f < 0x60))
        .count();
    assert!(
        loud > 50,
        "the wait music is not silence ({loud} loud packets)"
    );
    assert!(
        packets_with_tone(&guest_heard, 900.0) > 20,
        "the guest heard the host"
    );
    assert!(
        packets_with_tone(&host_heard, 400.0) > 20,
        "the host heard the guest"
    );
    // Back from the room for its <Pause>, the guest's call sends at the pace of real time:
    // the 20 ms frames it did not send while the room carried its media are not owed.
    let since_host: Vec<Packet> = guest_heard
        .iter()
        .filter(|p| p.at >= host_joined)
        .cloned()
        .collect();
    let ahead = ahead_of_real_time(&since_host);
    assert!(
        ahead < Duration::from_millis(500),
        "after the room the guest received audio {ahead:?} ahead of real time (a burst)"
    );
}

/// How far the RTP timestamps of `packets` (8 kHz) ran ahead of their arrival at most: near
/// zero for a stream sent at the pace of real time, the length of a burst for one that is not.
fn ahead_of_real_time(packets: &[Packet]) -> Duration {
    let Some(first) = packets.first() else {
        return Duration::ZERO;
    };
    packets
        .iter()
        .map(|p| {
            let media = Duration::from_secs_f64(
                f64::from(p.timestamp.wrapping_sub(first.timestamp)) / 8000.0,
            );
            media.saturating_sub(p.at - first.at)
        })
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_participant_added_through_the_api_rings_answers_and_joins_and_can_be_kicked() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            r#"<Response><Dial><Conference beep="false" statusCallback="/conference" statusCallbackEvent="start end join leave">sales</Conference></Dial></Response>"#,
        ),
    );
    app.serve("/conference", Reply::status(204));
    let callml = server("room-rest", &app);
    let epoch = Instant::now();
    let caller = Phone::call(&sipp, &callml, 350.0, 12 * SECOND);
    let joined = events(&app, 1).await;
    let conference = joined[0].param("ConferenceSid").unwrap().to_owned();

    // A sipp UAS that answers, with an RTP peer sending 850 Hz.
    let callee_peer = RtpPeer::start(850.0, 3 * SECOND, 30 * SECOND);
    let uas = Sipp::listen(&sipp, "uas_answers.xml").key("rtp_port", callee_peer.port);
    let uas_addr = uas.addr();
    let answered = spawn(uas);
    let (status, added) = post(
        &callml,
        &format!("Conferences/{conference}/Participants.json"),
        &[
            ("From", "+15550001111"),
            ("To", &format!("sip:agent@{uas_addr}")),
            ("Label", "agent"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["label"], "agent");
    assert_eq!(added["conference_sid"], conference.as_str());
    let names = event_names(&events(&app, 3).await);
    assert_eq!(
        names,
        ["participant-join", "participant-join", "conference-start"]
    );
    tokio::time::sleep(2 * SECOND).await;
    let (status, agent) = get(
        &callml,
        &format!("Conferences/{conference}/Participants/agent.json"),
    )
    .await;
    assert_eq!(status, 200, "{agent}");
    assert_eq!(agent["status"], "connected");
    let (status, body) = delete(
        &callml,
        &format!("Conferences/{conference}/Participants/agent.json"),
    )
    .await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (status, gone) = get(
        &callml,
        &format!("Conferences/{conference}/Participants/agent.json"),
    )
    .await;
    assert_eq!((status, gone["code"].as_u64()), (404, Some(20404)));
    answered.await.unwrap().assert_success();
    let agent_heard = callee_peer.finish();
    assert!(
        packets_with_tone(&agent_heard, 350.0) > 20,
        "the added participant heard the caller"
    );
    let (_, caller_heard) = caller.hang_up(epoch).await;
    assert!(
        packets_with_tone(&caller_heard, 850.0) > 20,
        "the caller heard the added participant"
    );
    let (status, missing) = get(
        &callml,
        "Conferences/CF00000000000000000000000000000000.json",
    )
    .await;
    assert_eq!((status, missing["code"].as_u64()), (404, Some(20404)));
}
