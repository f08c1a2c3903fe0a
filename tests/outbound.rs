//! Outbound calls through the call layer's `CallControl` (what the REST API calls), against
//! sipp callees: answered calls run their document, busy and unanswered ones end with the
//! right status, and live updates redirect or cancel them.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use callml::call::control::{CallControl, CallTarget, CallUpdate, DocumentSource, NewCall};
use callml::call::progress::{CallbackTarget, ProgressEvent};
use callml::config::{Config, ServeArgs};
use callml::markup::ast::HttpMethod;
use callml::server::{self, Running};
use common::app::{CustomerApp, Reply};
use common::callml::TempDir;
use common::rtp::RtpPeer;
use common::sipp::{Sipp, SippRun, require_peer};

const SECOND: Duration = Duration::from_secs(1);

struct Server {
    running: Running,
    _stop: tokio::sync::watch::Sender<bool>,
    data: TempDir,
}

async fn start() -> Server {
    let data = TempDir::new("outbound");
    let config = Config::load(ServeArgs {
        sip: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data.path().to_owned()),
        auth_token: Some("token".into()),
        rtp_ports: Some(common::callml::rtp_range().parse().unwrap()),
        ..Default::default()
    })
    .expect("config");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = server::start(config, shutdown)
        .await
        .expect("server starts");
    Server {
        running,
        _stop: stop,
        data,
    }
}

fn new_call(to: String, document: DocumentSource, app: &CustomerApp) -> NewCall {
    NewCall {
        account_sid: "AC00000000000000000000000000000000".into(),
        to: CallTarget::Sip(to),
        from: "+15550001111".into(),
        document,
        fallback: None,
        status_callback: Some(CallbackTarget {
            url: app.url("/status"),
            method: HttpMethod::Post,
            events: BTreeSet::from([
                ProgressEvent::Initiated,
                ProgressEvent::Ringing,
                ProgressEvent::Answered,
                ProgressEvent::Completed,
            ]),
        }),
        timeout: 30 * SECOND,
        time_limit: 3600 * SECOND,
        recording: None,
        send_digits: None,
        sip_auth: None,
        caller_id: None,
        machine_detection: false,
        sid: None,
        conference_sid: None,
        sip_headers: Vec::new(),
        secure_media: false,
        routed: None,
    }
}

fn callee(sipp: Sipp) -> (std::net::SocketAddr, tokio::task::JoinHandle<SippRun>) {
    let addr = sipp.addr();
    (addr, tokio::task::spawn_blocking(move || sipp.run()))
}

fn row(data: &TempDir, sid: &str) -> (String, Option<i64>, Option<i64>) {
    let db = rusqlite::Connection::open_with_flags(
        data.path().join("callml.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row(
        "SELECT status, sip_response_code, duration FROM calls WHERE sid = ?1",
        [sid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

async fn wait_status(
    data: &TempDir,
    sid: &str,
    status: &str,
) -> (String, Option<i64>, Option<i64>) {
    for _ in 0..200 {
        let got = row(data, sid);
        if got.0 == status {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {sid} never reached {status}: {:?}", row(data, sid));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answered_call_runs_its_document_and_reports_every_event() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let server = start().await;
    let (addr, callee) = callee(Sipp::listen(&sipp, "uas_answers.xml"));
    let document = DocumentSource::Url {
        url: app.url("/voice"),
        method: HttpMethod::Post,
    };
    let record = server
        .running
        .control
        .create(new_call(format!("sip:bob@{addr}"), document, &app))
        .await
        .expect("call created");
    assert_eq!(record.status.as_str(), "queued");
    assert_eq!(record.to, format!("sip:bob@{addr}"));
    callee.await.unwrap().assert_success();
    let (status, code, duration) = wait_status(&server.data, &record.sid, "completed").await;
    assert_eq!(code, Some(200), "{status}");
    assert!(duration >= Some(1), "the Pause is counted: {duration:?}");
    let fetch = &app.wait_for("/voice", 1, 5 * SECOND).await[0];
    assert_eq!(fetch.param("Direction"), Some("outbound-api"));
    assert_eq!(fetch.param("CallStatus"), Some("in-progress"));
    let callbacks = app.wait_for("/status", 4, 10 * SECOND).await;
    let statuses: Vec<_> = callbacks
        .iter()
        .map(|c| c.param("CallStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_and_unanswered_callees_end_as_twilio_reports_them() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/status", Reply::status(204));
    let server = start().await;
    let inline = DocumentSource::Twiml("<Response><Hangup/></Response>".into());

    let (addr, busy) = callee(Sipp::listen(&sipp, "uas_busy.xml"));
    let call = server
        .running
        .control
        .create(new_call(format!("sip:busy@{addr}"), inline.clone(), &app))
        .await
        .unwrap();
    busy.await.unwrap().assert_success();
    assert_eq!(
        wait_status(&server.data, &call.sid, "busy").await.1,
        Some(486)
    );

    let (addr, ringing) = callee(Sipp::listen(&sipp, "uas_never_answers.xml"));
    let mut request = new_call(format!("sip:late@{addr}"), inline, &app);
    request.timeout = 2 * SECOND;
    let call = server.running.control.create(request).await.unwrap();
    ringing.await.unwrap().assert_success();
    assert_eq!(
        wait_status(&server.data, &call.sid, "no-answer").await.1,
        Some(487)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn live_updates_cancel_a_ringing_call_and_redirect_an_answered_one() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/status", Reply::status(204));
    app.serve("/second", Reply::xml("<Response><Hangup/></Response>"));
    let server = start().await;
    let control: Arc<dyn CallControl> = Arc::clone(&server.running.control);

    let (addr, ringing) = callee(Sipp::listen(&sipp, "uas_never_answers.xml"));
    let inline = DocumentSource::Twiml("<Response><Hangup/></Response>".into());
    let call = control
        .create(new_call(format!("sip:late@{addr}"), inline, &app))
        .await
        .unwrap();
    wait_status(&server.data, &call.sid, "ringing").await;
    control.update(&call.sid, CallUpdate::Cancel).unwrap();
    ringing.await.unwrap().assert_success();
    assert_eq!(
        wait_status(&server.data, &call.sid, "canceled").await.1,
        Some(487)
    );
    assert!(
        control.update(&call.sid, CallUpdate::Complete).is_err(),
        "no longer live"
    );

    let (addr, answered) = callee(Sipp::listen(&sipp, "uas_answers.xml"));
    let waiting = DocumentSource::Twiml("<Response><Pause length=\"60\"/></Response>".into());
    let call = control
        .create(new_call(format!("sip:bob@{addr}"), waiting, &app))
        .await
        .unwrap();
    wait_status(&server.data, &call.sid, "in-progress").await;
    let second = DocumentSource::Url {
        url: app.url("/second"),
        method: HttpMethod::Get,
    };
    control
        .update(&call.sid, CallUpdate::Redirect(second))
        .unwrap();
    answered.await.unwrap().assert_success();
    wait_status(&server.data, &call.sid, "completed").await;
    assert_eq!(
        app.wait_for("/second", 1, 5 * SECOND).await[0].method,
        "GET"
    );
}

/// `SendDigits` go out once the callee answers, as RFC 4733 events it receives in order, and
/// only then does the document run.
#[tokio::test(flavor = "multi_thread")]
async fn send_digits_reach_the_callee_as_rfc_4733_events_after_the_answer() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/status", Reply::status(204));
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"1\"/><Hangup/></Response>"),
    );
    let server = start().await;
    let phone = RtpPeer::start(440.0, Duration::from_millis(1500), 20 * SECOND);
    let (addr, callee) = callee(Sipp::listen(&sipp, "uas_answers.xml").key("rtp_port", phone.port));
    let document = DocumentSource::Url {
        url: app.url("/voice"),
        method: HttpMethod::Post,
    };
    let mut request = new_call(format!("sip:bob@{addr}"), document, &app);
    request.send_digits = Some("12#".into());
    let call = server.running.control.create(request).await.unwrap();
    callee.await.unwrap().assert_success();
    wait_status(&server.data, &call.sid, "completed").await;
    let mut events: Vec<u8> = phone
        .finish()
        .iter()
        .filter(|p| p.payload_type == 101)
        .map(|p| p.payload[0])
        .collect();
    events.dedup();
    assert_eq!(events, [1, 2, 11], "keys 1, 2 and # (event 11), in order");
    app.wait_for("/voice", 1, 5 * SECOND).await;
}
