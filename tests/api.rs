//! The REST API end to end: the real `callml serve` binary, inbound calls placed with sipp to
//! populate real call records, and HTTP requests (reqwest here; the official `twilio` and
//! `signalwire` Python libraries through `tests/python/`) against both roots.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::app::{CustomerApp, Reply};
use common::callml::{Callml, TempDir};
use common::python::{pytest, signalwire_venv, twilio_venv};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::wav_bytes;
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);
const TOKEN: &str = "api-test-auth-token";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const OTHER_ACCOUNT: &str = "ACffffffffffffffffffffffffffffffff";
const RECORDING: &str = "RE00000000000000000000000000000001";

async fn sipp(run: Sipp) -> SippRun {
    tokio::task::spawn_blocking(move || run.run())
        .await
        .expect("sipp thread")
}

/// A 16-bit mono 8 kHz WAV of a tone, `seconds` long.
fn wav(seconds: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..(8000.0 * seconds) as usize)
        .map(|i| (6000.0 * (i as f64 * 0.3).sin()) as i16)
        .collect();
    wav_bytes(&samples, 8000)
}

/// callml with real records: four inbound calls answered and hung up by callml, each after a
/// `<Play>` of a missing file (an 11200 notification of the call), one rejected busy, and one
/// completed recording of the first call (row and WAV file written the way the media layer
/// will write them).
struct Populated {
    app: CustomerApp,
    callml: Callml,
    /// Call sids, oldest first.
    calls: Vec<String>,
    recording_wav: Vec<u8>,
}

async fn populated(name: &str) -> Option<Populated> {
    let sipp_bin = require_peer("sipp", "sip-tester")?;
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Play>/missing.wav</Play><Hangup/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let voice = app.url("/voice");
    let callml = Callml::start(
        name,
        &[
            "--voice-url",
            &voice,
            "--account-sid",
            ACCOUNT,
            "--auth-token",
            TOKEN,
        ],
    );
    sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip).calls(4, 20))
        .await
        .assert_success_with_log(&callml.log());
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Reject reason="busy"/></Response>"#),
    );
    sipp(Sipp::new(&sipp_bin, "rejected.xml", callml.sip))
        .await
        .assert_success();
    let rows = callml.wait_for_ended_calls(5, 10 * SECOND);
    let calls: Vec<String> = rows.iter().map(|c| c.sid.clone()).collect();

    let recording_wav = wav(0.5);
    let file = Path::new("recordings").join(format!("{RECORDING}.wav"));
    std::fs::create_dir_all(callml.data.path().join("recordings")).expect("recordings dir");
    std::fs::write(callml.data.path().join(&file), &recording_wav).expect("recording file");
    let db = rusqlite::Connection::open(callml.data.path().join("callml.sqlite3")).expect("db");
    db.busy_timeout(5 * SECOND).expect("busy timeout");
    let now = chrono::Utc::now().timestamp_nanos_opt().expect("now");
    db.execute(
        "INSERT INTO recordings (sid, account_sid, call_sid, status, channels, duration,
             start_time, source, file, error_code, date_created, date_updated)
         VALUES (?1, ?2, ?3, 'completed', 1, 1, ?4, 'OutboundAPI', ?5, NULL, ?4, ?4)",
        rusqlite::params![RECORDING, ACCOUNT, calls[0], now, file.to_str()],
    )
    .expect("insert recording");
    Some(Populated {
        app,
        callml,
        calls,
        recording_wav,
    })
}

/// A Basic-auth HTTP client for one callml.
struct Rest {
    client: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a Twilio-shaped error with this status and code.
    fn assert_error(&self, status: u16, code: u64) {
        let body = self.json();
        assert_eq!(
            (self.status, body["code"].as_u64()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(body["status"], status);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
    }
}

impl Rest {
    fn new(callml: &Callml) -> Rest {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Rest {
            client: reqwest::Client::new(),
            base: format!("http://{}", callml.http),
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Answer {
        let response = builder.send().await.expect("request");
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        }
    }

    /// GET `path` (from the server root) with the right credentials.
    async fn get(&self, path: &str) -> Answer {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .basic_auth(ACCOUNT, Some(TOKEN)),
        )
        .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .basic_auth(ACCOUNT, Some(TOKEN))
                .form(form),
        )
        .await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(
            self.client
                .delete(format!("{}{path}", self.base))
                .basic_auth(ACCOUNT, Some(TOKEN)),
        )
        .await
    }
}

fn root() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}")
}

fn sids(page: &Value, key: &str) -> Vec<String> {
    page[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {page}"))
        .iter()
        .map(|c| c["sid"].as_str().expect("sid").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_listed_filtered_paged_and_fetched_in_twilio_shapes() {
    let Some(setup) = populated("api-calls").await else {
        return;
    };
    let rest = Rest::new(&setup.callml);
    let newest_first: Vec<String> = setup.calls.iter().rev().cloned().collect();
    let db_rows = setup.callml.calls();

    for prefix in ["", "/api/laml"] {
        let page = rest.get(&format!("{prefix}{}/Calls.json", root())).await;
        assert_eq!(page.status, 200);
        let body = page.json();
        assert_eq!(sids(&body, "calls"), newest_first, "{prefix}");
        assert_eq!(body["page"], 0);
        assert_eq!(body["page_size"], 50);
        assert_eq!(body["start"], 0);
        assert_eq!(body["end"], 4);
        assert_eq!(body["next_page_uri"], Value::Null);
        assert_eq!(body["previous_page_uri"], Value::Null);
        assert_eq!(
            body["first_page_uri"],
            format!("{}/Calls.json?PageSize=50&Page=0", root())
        );
    }

    // Every field, for one call, against the database row.
    let sid = &setup.calls[0];
    let row = &db_rows[0];
    let call = rest.get(&format!("{}/Calls/{sid}.json", root())).await;
    assert_eq!(call.status, 200);
    assert_eq!(
        call.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    let call = call.json();
    assert_eq!(call["sid"], *sid);
    assert_eq!(call["account_sid"], ACCOUNT);
    assert_eq!(call["from"], row.from);
    assert_eq!(call["to"], row.to);
    assert_eq!(call["to"], "+15550002222");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["api_version"], "2010-04-01");
    assert_eq!(call["duration"], "0");
    assert_eq!(call["parent_call_sid"], Value::Null);
    assert_eq!(call["price"], Value::Null);
    for date in ["date_created", "date_updated", "start_time", "end_time"] {
        let text = call[date]
            .as_str()
            .unwrap_or_else(|| panic!("{date}: {call}"));
        assert!(
            chrono::DateTime::parse_from_rfc2822(text).is_ok() && text.ends_with(" +0000"),
            "{date} = {text}"
        );
    }
    assert_eq!(call["uri"], format!("{}/Calls/{sid}.json", root()));
    assert_eq!(
        call["subresource_uris"]["recordings"],
        format!("{}/Calls/{sid}/Recordings.json", root())
    );

    // Filters.
    let busy: Vec<String> = db_rows
        .iter()
        .filter(|r| r.status == "busy")
        .map(|r| r.sid.clone())
        .collect();
    assert_eq!(busy.len(), 1, "{db_rows:?}");
    let filtered = |query: &'static str| {
        let rest = &rest;
        async move {
            let answer = rest.get(&format!("{}/Calls.json?{query}", root())).await;
            assert_eq!(answer.status, 200, "{query}: {}", answer.json());
            sids(&answer.json(), "calls")
        }
    };
    assert_eq!(filtered("Status=busy").await, busy);
    assert_eq!(filtered("Status=completed").await.len(), 4);
    assert_eq!(filtered("To=%2B15550002222").await, newest_first);
    assert_eq!(filtered("From=%2B15550001111").await, newest_first);
    assert!(filtered("To=%2B19990000000").await.is_empty());
    assert!(
        filtered("ParentCallSid=CA00000000000000000000000000000000")
            .await
            .is_empty()
    );
    let today = chrono::Utc::now().date_naive();
    let yesterday = today - chrono::Days::new(1);
    assert_eq!(filtered_day(&rest, "StartTime", today).await, newest_first);
    assert_eq!(
        filtered_day(&rest, "StartTime%3E", today).await,
        newest_first
    );
    assert_eq!(
        filtered_day(&rest, "StartTime%3C", today).await,
        newest_first
    );
    assert!(
        filtered_day(&rest, "StartTime%3C", yesterday)
            .await
            .is_empty()
    );
    assert!(filtered_day(&rest, "StartTime", yesterday).await.is_empty());

    // Paging: follow next_page_uri to the end, then previous_page_uri back.
    let mut uri = format!("{}/Calls.json?Status=completed&PageSize=2", root());
    let mut pages = Vec::new();
    loop {
        let page = rest.get(&uri).await;
        assert_eq!(page.status, 200, "{uri}");
        let body = page.json();
        pages.push(sids(&body, "calls"));
        match body["next_page_uri"].as_str() {
            Some(next) => {
                assert!(next.contains("Status=completed") && next.contains("PageToken=PA"));
                uri = next.to_owned();
            }
            None => break,
        }
    }
    let completed: Vec<String> = newest_first
        .iter()
        .filter(|s| !busy.contains(s))
        .cloned()
        .collect();
    assert_eq!(pages, [completed[..2].to_vec(), completed[2..].to_vec()]);
    let last = rest.get(&uri).await.json();
    assert_eq!(
        (last["page"].clone(), last["start"].clone()),
        (1.into(), 2.into())
    );
    let previous = last["previous_page_uri"].as_str().expect("previous page");
    assert_eq!(
        sids(&rest.get(previous).await.json(), "calls"),
        completed[..2]
    );
    let offset = rest
        .get(&format!("{}/Calls.json?PageSize=2&Page=2", root()))
        .await
        .json();
    assert_eq!(sids(&offset, "calls"), newest_first[4..]);

    // Bad filters.
    rest.get(&format!("{}/Calls.json?Status=talking", root()))
        .await
        .assert_error(400, 20001);
    rest.get(&format!("{}/Calls.json?StartTime=last+week", root()))
        .await
        .assert_error(400, 20001);
    rest.get(&format!("{}/Calls.json?PageToken=bogus", root()))
        .await
        .assert_error(400, 20001);
    drop(setup.app);
}

async fn filtered_day(rest: &Rest, name: &str, day: chrono::NaiveDate) -> Vec<String> {
    let answer = rest
        .get(&format!("{}/Calls.json?{name}={day}", root()))
        .await;
    assert_eq!(answer.status, 200);
    sids(&answer.json(), "calls")
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_accounts_errors_and_call_changes() {
    let Some(setup) = populated("api-errors").await else {
        return;
    };
    let rest = Rest::new(&setup.callml);
    let calls_path = format!("{}/Calls.json", root());

    // Authentication.
    for credentials in [Some((ACCOUNT, "wrong")), Some((OTHER_ACCOUNT, TOKEN)), None] {
        let mut request = rest.client.get(format!("{}{calls_path}", rest.base));
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let answer = rest.send(request).await;
        answer.assert_error(401, 20003);
        assert!(
            answer.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
    }
    // Another account's sid in the path, an unknown path, a wrong method.
    rest.get(&format!("/2010-04-01/Accounts/{OTHER_ACCOUNT}/Calls.json"))
        .await
        .assert_error(404, 20404);
    rest.get(&format!("{}/Messages.json", root()))
        .await
        .assert_error(404, 20404);
    rest.delete(&calls_path).await.assert_error(405, 20004);
    rest.get(&format!(
        "{}/Calls/CA00000000000000000000000000000000.json",
        root()
    ))
    .await
    .assert_error(404, 20404);

    // The account.
    for prefix in ["", "/api/laml"] {
        let account = rest.get(&format!("{prefix}{}.json", root())).await;
        assert_eq!(account.status, 200);
        let account = account.json();
        assert_eq!(account["sid"], ACCOUNT);
        assert_eq!(account["status"], "active");
        assert_eq!(account["uri"], format!("{}.json", root()));
        assert!(
            chrono::DateTime::parse_from_rfc2822(account["date_created"].as_str().unwrap()).is_ok()
        );
    }

    // Creating calls: validation answers before anything is placed.
    let cases: [(&[(&str, &str)], u64); 5] = [
        (
            &[("From", "+15550001111"), ("Url", "http://127.0.0.1:9/x")],
            21201,
        ),
        (
            &[("To", "sip:bob@127.0.0.1"), ("Url", "http://127.0.0.1:9/x")],
            21213,
        ),
        (&[("To", "sip:bob@127.0.0.1"), ("From", "+1555")], 21205),
        (
            &[
                ("To", "client:no body"),
                ("From", "+1555"),
                ("Url", "http://127.0.0.1:9/x"),
            ],
            21211,
        ),
        (
            &[
                ("To", "sip:bob@127.0.0.1"),
                ("From", "+1555"),
                ("Url", "http://127.0.0.1:9/x"),
                ("StatusCallback", "http://127.0.0.1:9/cb"),
                ("StatusCallbackEvent", "hangup"),
            ],
            21626,
        ),
    ];
    for (form, code) in cases {
        rest.post(&calls_path, form).await.assert_error(400, code);
    }
    let long = "x".repeat(4001);
    rest.post(
        &format!("/api/laml{calls_path}"),
        &[("To", "+15550002222"), ("From", "+1555"), ("Twiml", &long)],
    )
    .await
    .assert_error(400, 32018);

    // Changing finished calls; deleting one.
    let sid = &setup.calls[1];
    let call_path = format!("{}/Calls/{sid}.json", root());
    for form in [
        &[("Status", "completed")][..],
        &[("Twiml", "<Response><Hangup/></Response>")],
    ] {
        rest.post(&call_path, form).await.assert_error(400, 21220);
    }
    rest.post(&call_path, &[("Status", "ringing")])
        .await
        .assert_error(400, 20001);
    let unchanged = rest.post(&call_path, &[]).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(unchanged.json()["sid"], *sid);
    let deleted = rest.delete(&call_path).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    rest.get(&call_path).await.assert_error(404, 20404);
    assert_eq!(setup.callml.calls().len(), 4);

    // The spec is served as written.
    let spec = rest.get("/openapi.yaml").await;
    assert_eq!(spec.status, 200);
    let file =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/api.openapi.yaml"))
            .expect("spec file");
    assert_eq!(spec.body, file);
}

/// The `sid`s of a page's `notifications`, and the calls they belong to.
fn notification_calls(page: &Value) -> Vec<String> {
    page["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("no notifications in {page}"))
        .iter()
        .map(|n| n["call_sid"].as_str().expect("call_sid").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_are_listed_filtered_paged_and_fetched_in_twilio_shapes() {
    let Some(setup) = populated("api-notifications").await else {
        return;
    };
    let rest = Rest::new(&setup.callml);
    let answered: Vec<String> = setup.calls[..4].iter().rev().cloned().collect();
    let rejected = &setup.calls[4];

    // One per answered call (its <Play> of a missing file), newest first, under both roots.
    for prefix in ["", "/api/laml"] {
        let page = rest
            .get(&format!("{prefix}{}/Notifications.json", root()))
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(notification_calls(&page.json()), answered, "{prefix}");
    }

    let call = &setup.calls[0];
    let page = rest
        .get(&format!("{}/Calls/{call}/Notifications.json", root()))
        .await
        .json();
    assert_eq!(
        page["first_page_uri"],
        format!(
            "{}/Calls/{call}/Notifications.json?PageSize=50&Page=0",
            root()
        )
    );
    let list = page["notifications"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{page}");
    let notification = &list[0];
    let sid = notification["sid"].as_str().expect("sid");
    assert!(
        sid.len() == 34 && sid.starts_with("NO") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{sid}"
    );
    assert_eq!(notification["call_sid"], *call);
    assert_eq!(notification["account_sid"], ACCOUNT);
    assert_eq!(notification["api_version"], "2010-04-01");
    assert_eq!(notification["error_code"], "11200");
    assert_eq!(notification["log"], "0");
    assert_eq!(
        notification["more_info"],
        "https://www.twilio.com/docs/errors/11200"
    );
    assert_eq!(notification["request_url"], setup.app.url("/voice"));
    assert_eq!(notification["request_method"], "POST");
    let text = notification["message_text"].as_str().expect("message_text");
    assert!(
        text.contains(&setup.app.url("/missing.wav")) && text.contains("404"),
        "{text}"
    );
    for date in ["date_created", "date_updated", "message_date"] {
        let value = notification[date].as_str().expect(date);
        assert!(
            chrono::DateTime::parse_from_rfc2822(value).is_ok(),
            "{date} = {value}"
        );
    }
    assert_eq!(
        notification["uri"],
        format!("{}/Calls/{call}/Notifications/{sid}.json", root())
    );

    // Fetched alone, under its call or the account, under either root.
    for path in [
        format!("{}/Calls/{call}/Notifications/{sid}.json", root()),
        format!("/api/laml{}/Notifications/{sid}.json", root()),
    ] {
        let one = rest.get(&path).await;
        assert_eq!(one.status, 200, "{path}");
        assert_eq!(one.json(), *notification, "{path}");
    }
    rest.get(&format!(
        "{}/Calls/{}/Notifications/{sid}.json",
        root(),
        setup.calls[1]
    ))
    .await
    .assert_error(404, 20404);
    rest.get(&format!(
        "{}/Notifications/NO{}.json",
        root(),
        "0".repeat(32)
    ))
    .await
    .assert_error(404, 20404);

    // Filters: by level and by day; the rejected call met nothing.
    let listed = |query: &str| {
        let path = format!("{}/Notifications.json?{query}", root());
        let rest = &rest;
        async move { notification_calls(&rest.get(&path).await.json()) }
    };
    let today = chrono::Utc::now().date_naive();
    assert_eq!(listed("Log=0").await, answered);
    assert!(listed("Log=1").await.is_empty());
    assert_eq!(listed(&format!("MessageDate={today}")).await, answered);
    assert!(
        listed(&format!("MessageDate%3C={}", today.pred_opt().unwrap()))
            .await
            .is_empty()
    );
    rest.get(&format!("{}/Notifications.json?Log=2", root()))
        .await
        .assert_error(400, 20001);
    let none = rest
        .get(&format!("{}/Calls/{rejected}/Notifications.json", root()))
        .await
        .json();
    assert!(notification_calls(&none).is_empty());

    // Two a page: the next page follows its token.
    let first = rest
        .get(&format!("{}/Notifications.json?PageSize=2", root()))
        .await
        .json();
    let next = first["next_page_uri"].as_str().expect("a next page");
    let second = rest.get(next).await.json();
    assert_eq!(second["next_page_uri"], Value::Null);
    let mut both = notification_calls(&first);
    both.extend(notification_calls(&second));
    assert_eq!(both, answered);

    // The call and the account link them.
    let linked = rest
        .get(&format!("{}/Calls/{call}.json", root()))
        .await
        .json();
    assert_eq!(
        linked["subresource_uris"]["notifications"],
        format!("{}/Calls/{call}/Notifications.json", root())
    );
    let account = rest.get(&format!("{}.json", root())).await.json();
    assert_eq!(
        account["subresource_uris"]["notifications"],
        format!("{}/Notifications.json", root())
    );
}

/// A `<Say>` on a machine without espeak-ng is skipped and reported on the call: callml said
/// so once at start, and the call's Notifications list a 13520 warning saying what to install.
#[tokio::test(flavor = "multi_thread")]
async fn a_say_without_espeak_ng_leaves_a_warning_notification_on_the_call() {
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Say>Nobody hears this.</Say><Hangup/></Response>"),
    );
    let voice = app.url("/voice");
    let no_programs = TempDir::new("empty-path");
    let callml = Callml::start_with_env(
        "no-espeak",
        &[
            "--voice-url",
            &voice,
            "--account-sid",
            ACCOUNT,
            "--auth-token",
            TOKEN,
        ],
        &[("PATH", no_programs.path())],
    );
    let said = callml.log().matches("<Say> needs espeak-ng").count();
    assert_eq!(said, 1, "said once at start:\n{}", callml.log());
    sipp(Sipp::new(&sipp_bin, "callml_hangs_up.xml", callml.sip))
        .await
        .assert_success_with_log(&callml.log());
    let call = callml.wait_for_ended_calls(1, 10 * SECOND).remove(0);
    assert_eq!((call.status.as_str(), call.error_code), ("completed", None));

    let rest = Rest::new(&callml);
    let path = format!("{}/Calls/{}/Notifications.json", root(), call.sid);
    let page = rest.get(&path).await.json();
    let list = page["notifications"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{page}");
    let warning = &list[0];
    assert_eq!(warning["error_code"], "13520");
    assert_eq!(warning["log"], "1");
    assert_eq!(warning["request_url"], voice);
    let text = warning["message_text"].as_str().expect("message_text");
    assert!(text.contains("apt-get install espeak-ng"), "{text}");
    let warnings = rest.get(&format!("{path}?Log=1")).await.json();
    assert_eq!(notification_calls(&warnings), [call.sid.as_str()]);
    assert_eq!(
        callml.log().matches("<Say> needs espeak-ng").count(),
        1,
        "not repeated per call"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recordings_are_listed_fetched_downloaded_and_deleted() {
    let Some(setup) = populated("api-recordings").await else {
        return;
    };
    let rest = Rest::new(&setup.callml);
    let call = &setup.calls[0];
    let other_call = &setup.calls[1];

    let all = rest.get(&format!("{}/Recordings.json", root())).await;
    assert_eq!(all.status, 200);
    assert_eq!(sids(&all.json(), "recordings"), [RECORDING]);
    let of_call = rest
        .get(&format!("/api/laml{}/Calls/{call}/Recordings.json", root()))
        .await
        .json();
    assert_eq!(sids(&of_call, "recordings"), [RECORDING]);
    let of_other = rest
        .get(&format!("{}/Recordings.json?CallSid={other_call}", root()))
        .await
        .json();
    assert!(sids(&of_other, "recordings").is_empty());

    let resource = rest
        .get(&format!("{}/Recordings/{RECORDING}.json", root()))
        .await;
    assert_eq!(resource.status, 200);
    let resource = resource.json();
    assert_eq!(resource["call_sid"], *call);
    assert_eq!(resource["status"], "completed");
    assert_eq!(resource["duration"], "1");
    assert_eq!(resource["channels"], 1);
    assert_eq!(resource["source"], "OutboundAPI");
    assert_eq!(
        resource["uri"],
        format!("{}/Recordings/{RECORDING}.json", root())
    );
    rest.get(&format!(
        "{}/Calls/{other_call}/Recordings/{RECORDING}.json",
        root()
    ))
    .await
    .assert_error(404, 20404);

    // The media, from media_url and with .wav; MP3 is refused; public without credentials.
    let media_url = resource["media_url"].as_str().expect("media_url");
    let media_path = media_url
        .strip_prefix(&rest.base)
        .expect("media_url on callml");
    for path in [media_path.to_owned(), format!("{media_path}.wav")] {
        let media = rest.get(&path).await;
        assert_eq!(media.status, 200, "{path}");
        assert_eq!(
            media.headers["content-type"].to_str().unwrap(),
            "audio/x-wav"
        );
        assert_eq!(media.body, setup.recording_wav);
    }
    rest.get(&format!("{media_path}.mp3"))
        .await
        .assert_error(415, 20415);
    let anonymous = rest.send(rest.client.get(media_url)).await;
    assert_eq!(
        anonymous.status, 200,
        "recording media is public by default"
    );
    assert_eq!(anonymous.body, setup.recording_wav);

    let deleted = rest
        .delete(&format!("{}/Recordings/{RECORDING}.json", root()))
        .await;
    assert_eq!(deleted.status, 204);
    assert!(
        !setup
            .callml
            .data
            .path()
            .join(format!("recordings/{RECORDING}.wav"))
            .exists()
    );
    rest.get(&format!("{media_path}.wav"))
        .await
        .assert_error(404, 20404);
}

/// The environment the Python tests read: where callml is, its credentials, the calls the
/// Rust side made, and callml's signed document fetches as the customer app received them.
fn python_env(setup: &Populated) -> Vec<(&'static str, String)> {
    let fetches: Vec<Value> = setup
        .app
        .requests_to("/voice")
        .iter()
        .map(|r| {
            serde_json::json!({
                "url": r.url,
                "params": r.form,
                "signature": r.header("X-Twilio-Signature"),
                "signalwire_signature": r.header("X-SignalWire-Signature"),
            })
        })
        .collect();
    assert_eq!(fetches.len(), 5, "one document fetch per call");
    vec![
        ("CALLML_URL", format!("http://{}", setup.callml.http)),
        ("CALLML_ACCOUNT_SID", ACCOUNT.to_owned()),
        ("CALLML_AUTH_TOKEN", TOKEN.to_owned()),
        ("CALLML_CALL_SIDS", setup.calls.join(",")),
        ("CALLML_RECORDING_SID", RECORDING.to_owned()),
        ("CALLML_FETCHES", Value::Array(fetches).to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_twilio_and_signalwire_python_libraries_drive_the_api() {
    let Some(twilio) = twilio_venv() else {
        return;
    };
    let Some(signalwire) = signalwire_venv() else {
        return;
    };
    let Some(setup) = populated("api-python").await else {
        return;
    };
    let env = python_env(&setup);
    tokio::task::spawn_blocking(move || {
        // Conference tests run against a live conference (tests/rooms_peers.rs).
        pytest(
            &twilio,
            "test_twilio.py",
            &env,
            "not outbound and not conference",
        );
        pytest(&signalwire, "test_signalwire.py", &env, "not outbound");
    })
    .await
    .expect("pytest thread");
}

/// `sipp -sn uas` on a free loopback port, stopped on drop.
struct SippUas {
    child: std::process::Child,
    addr: String,
}

impl SippUas {
    fn start(program: &Path) -> SippUas {
        let port = common::sipp::free_udp_port();
        let media = common::sipp::free_udp_block(4);
        let child = Command::new(program)
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
                "-nostdin",
            ])
            .args([
                "-p",
                &port.to_string(),
                "-mp",
                &media.to_string(),
                "-rtp_echo",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sipp -sn uas");
        SippUas {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the outbound tests selected by `marks` (pytest `-m`) with a sipp UAS to call: with
/// the twilio library, and with the signalwire one too when `with_signalwire`.
async fn outbound_python_tests(name: &str, marks: &'static str, with_signalwire: bool) {
    let Some(twilio) = twilio_venv() else {
        return;
    };
    let Some(signalwire) = signalwire_venv() else {
        return;
    };
    let Some(sipp_bin) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let Some(setup) = populated(name).await else {
        return;
    };
    let uas = SippUas::start(&sipp_bin);
    let mut env = python_env(&setup);
    env.push(("CALLML_SIPP_UAS", uas.addr.clone()));
    tokio::task::spawn_blocking(move || {
        pytest(&twilio, "test_twilio.py", &env, marks);
        if with_signalwire {
            pytest(&signalwire, "test_signalwire.py", &env, marks);
        }
    })
    .await
    .expect("pytest thread");
    drop(uas);
}

/// Both libraries create a call to a sipp UAS, redirect it with `Twiml`, hang it up and
/// delete it.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_libraries_create_redirect_and_hang_up_outbound_calls() {
    outbound_python_tests("api-outbound", "outbound and not recording", true).await;
}

/// The twilio library downloads the recording of an outbound call made with `Record=true`.
#[tokio::test(flavor = "multi_thread")]
async fn the_twilio_library_downloads_the_recording_of_an_outbound_call() {
    outbound_python_tests("api-recorded", "recording", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recording_auth_makes_recording_media_need_credentials() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let media = "Recordings/RE0123456789abcdef0123456789abcdef.wav";
    for (args, expected) in [(vec![], 404), (vec!["--recording-auth", "true"], 401)] {
        let callml = Callml::start("recording-auth", &args);
        let url = format!(
            "http://{}/2010-04-01/Accounts/{}/{media}",
            callml.http, callml.account_sid
        );
        let status = reqwest::get(&url).await.expect("GET").status().as_u16();
        assert_eq!(status, expected, "{args:?}");
    }
}
