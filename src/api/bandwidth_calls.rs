//! The seed's call control (Bandwidth's App Platform v1, `../shared/seeds/bandwidth-sip-
//! endpoints.txt`): `POST /v1/users/{userId}/calls`, `GET|POST .../calls/{callId}` (`state`
//! `active`, `rejected` or `completed`), `POST .../calls/{callId}/audio` (`sentence` or
//! `fileUrl`), `POST /v1/users/{userId}/bridges`, and the JSON events posted to an outbound
//! call's `callbackUrl` or an incoming call's application `incomingCallUrl`: `incomingcall`,
//! `answer`, `speak`, `playback`, `hangup`.
//!
//! It is a TwiML application callml hosts itself ([`crate::call::hosted`]): a call under it runs
//! documents from `/v1/users/{userId}/control/{event}`, requested by callml's own interpreter
//! and signed as every webhook is (`X-Twilio-Signature`, checked here):
//! ```text
//! incoming   posts incomingcall; with autoAnswer answers and parks, else rings (below)
//! ring       waits up to half the fetch timeout for `state: active|rejected`, then answers
//!            (answer event) or rejects; otherwise redirects to itself: the caller keeps ringing
//! answer     an outbound call was answered: posts answer, then parks
//! park       <Pause> then <Redirect> to park: the call stays up until told
//! speak, playback   posts the event saying the audio is done, then parks
//! status     the call's status callback: posts hangup
//! ```
//! `/audio` redirects the call to `<Say>` or `<Play>` followed by `speak` or `playback`; a bridge
//! puts both calls in a two-party `<Conference>` named after it, each parked again when the
//! other leaves. Call ids are `c-` and the call's SID digits, bridge ids `brg-` and digits.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::bandwidth::{Answer, Refusal, flag, public_id, sid_of, text, users_root};
use super::params::Params;
use super::routes::Matched;
use super::{Api, HttpResponse, bytes_response, constant_time_eq};
use crate::call::control::{CallTarget, CallUpdate, DocumentSource, NewCall};
use crate::call::hosted;
use crate::ids::Sid;
use crate::markup::escape_text;
use crate::store::{CallRecord, CallStatus, Direction};
use crate::webhook::WebhookClient;
use crate::webhook::signature::signature;

/// How long a parked call waits before its document asks again (once per ten minutes).
const PARK_SECONDS: u32 = 600;
/// How long an outbound call rings unless `callTimeout` says otherwise (Bandwidth's 30 s).
const DEFAULT_RING: Duration = Duration::from_secs(30);
/// The longest `callTimeout`.
const MAX_RING: Duration = Duration::from_secs(300);
/// Longest an outbound call may last once answered.
const TIME_LIMIT: Duration = Duration::from_secs(4 * 3600);
/// How long an event may take to be delivered.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The `User-Agent` of the events, as the seed shows them.
const EVENTS_USER_AGENT: &str = "BandwidthAPI/v1";
/// Bridges remembered for `GET /bridges/{id}`, the oldest forgotten first.
const MAX_BRIDGES: usize = 10_000;

/// What the application decided for a ringing incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Answer,
    Reject,
}

/// A live call under the seed's call control.
struct Controlled {
    /// Where its events go.
    events_url: String,
    /// The decision for a ringing incoming call, awaited by its `ring` document.
    decision: watch::Sender<Option<Decision>>,
}

/// Two calls bridged.
struct Bridge {
    id: String,
    call_ids: [String; 2],
    created: DateTime<Utc>,
}

/// The seed's call control: the calls under it and the bridges made.
pub struct SeedCalls {
    webhooks: WebhookClient,
    /// callml's own HTTP address (`http://127.0.0.1:PORT`), where the control documents are.
    internal_url: String,
    /// How long a `ring` document waits for a decision.
    ring_wait: Duration,
    calls: Mutex<HashMap<String, Controlled>>,
    bridges: Mutex<VecDeque<Bridge>>,
}

impl SeedCalls {
    /// `fetch_timeout` is the interpreter's: a ringing call's document answers within half of it.
    pub fn new(
        webhooks: WebhookClient,
        internal_url: String,
        fetch_timeout: Duration,
    ) -> SeedCalls {
        SeedCalls {
            webhooks,
            internal_url,
            ring_wait: fetch_timeout / 2,
            calls: Mutex::new(HashMap::new()),
            bridges: Mutex::new(VecDeque::new()),
        }
    }

    fn control_url(&self, account_sid: &str, event: &str) -> String {
        hosted::control_url(&self.internal_url, account_sid, event, &[])
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Controlled>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts a call under control (once: a second time keeps the first entry).
    fn adopt(&self, call_sid: &str, events_url: &str) {
        self.lock_calls()
            .entry(call_sid.to_owned())
            .or_insert_with(|| Controlled {
                events_url: events_url.to_owned(),
                decision: watch::channel(None).0,
            });
    }

    fn events_url(&self, call_sid: &str) -> Option<String> {
        self.lock_calls()
            .get(call_sid)
            .map(|c| c.events_url.clone())
    }
}

/// The facts of a call its document requests carry.
struct CallFacts {
    sid: String,
    from: String,
    to: String,
}

impl CallFacts {
    fn of(form: &Params) -> CallFacts {
        let get = |name| form.get(name).unwrap_or_default().to_owned();
        CallFacts {
            sid: get("CallSid"),
            from: get("From"),
            to: get("To"),
        }
    }
}

/// Answers `/v1/users/{userId}/calls...` and `/bridges...` (authenticated by the caller).
pub(super) async fn answer(
    api: &Api,
    matched: &Matched,
    method: Method,
    body: &Value,
) -> Result<Answer, Refusal> {
    use super::routes::Route;
    let call = matched.params.call_id.as_deref().unwrap_or_default();
    match (matched.spec.route, method) {
        (Route::UserCalls, _) => create_call(api, body).await,
        (Route::UserCall, Method::POST) => change_call(api, call, body).await,
        (Route::UserCall, _) => Ok(Answer::ok(call_json(api, &find_call(api, call).await?))),
        (Route::UserCallAudio, _) => play_audio(api, call, body).await,
        (Route::UserBridges, _) => create_bridge(api, body).await,
        (Route::UserBridge, _) => fetch_bridge(api, matched.params.bridge_id.as_deref()),
        _ => Err(Refusal::not_found("route")),
    }
}

async fn find_call(api: &Api, id: &str) -> Result<CallRecord, Refusal> {
    let sid = sid_of(id, "c-", "CA").ok_or_else(|| Refusal::not_found(&format!("call {id:?}")))?;
    api.store
        .call(&sid)
        .await?
        .filter(|c| c.account_sid == api.account_sid)
        .ok_or_else(|| Refusal::not_found(&format!("call {id:?}")))
}

/// A call's state in the seed's words.
fn state_of(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Queued | CallStatus::Ringing => "started",
        CallStatus::InProgress => "active",
        CallStatus::Busy | CallStatus::NoAnswer | CallStatus::Canceled => "rejected",
        CallStatus::Completed | CallStatus::Failed => "completed",
    }
}

fn time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(SecondsFormat::Secs, true))
    })
}

fn call_json(api: &Api, call: &CallRecord) -> Value {
    json!({
        "id": public_id("c-", &call.sid),
        "direction": if call.direction == Direction::Inbound { "in" } else { "out" },
        "from": call.from,
        "to": call.to,
        "state": state_of(call.status),
        "startTime": time(Some(call.date_created)),
        "activeTime": time(call.answer_time),
        "endTime": time(call.end_time),
        "chargeableDuration": call.duration,
        "events": format!("{}/calls/{}/events", users_root(api), public_id("c-", &call.sid)),
    })
}

/// `POST /v1/users/{userId}/calls {from, to, callbackUrl, callTimeout}`.
async fn create_call(api: &Api, body: &Value) -> Result<Answer, Refusal> {
    let to = text(body, "to").ok_or_else(|| Refusal::bad("to is required"))?;
    let from = text(body, "from").ok_or_else(|| Refusal::bad("from is required"))?;
    let to = super::calls::target(to)?;
    if matches!(to, CallTarget::Client(_)) {
        return Err(Refusal::bad(
            "to must be a number or a SIP URI (an endpoint's sipUri)",
        ));
    }
    let from = super::calls::caller("from", from)?;
    let events_url = match text(body, "callbackUrl") {
        Some(url) => super::params::url("callbackUrl", url)?,
        None => return Err(Refusal::bad("callbackUrl is required")),
    };
    let ring = match body.get("callTimeout") {
        None | Some(Value::Null) => DEFAULT_RING,
        Some(value) => value
            .as_u64()
            .map(Duration::from_secs)
            .filter(|d| !d.is_zero() && *d <= MAX_RING)
            .ok_or_else(|| Refusal::bad("callTimeout must be a number of seconds from 1 to 300"))?,
    };
    let base = &api.seed_calls.internal_url;
    let sid = Sid::new("CA").as_str().to_owned();
    let document = DocumentSource::Url {
        url: hosted::control_url(
            base,
            &api.account_sid,
            "answer",
            &[("callbackUrl", &events_url)],
        ),
        method: crate::markup::ast::HttpMethod::Post,
    };
    api.seed_calls.adopt(&sid, &events_url);
    let created = api
        .calls
        .create(NewCall {
            account_sid: api.account_sid.clone(),
            to,
            from,
            document,
            fallback: None,
            status_callback: Some(hosted::hangup_callback(base, &api.account_sid, &events_url)),
            timeout: ring,
            time_limit: TIME_LIMIT,
            recording: None,
            send_digits: None,
            sip_auth: None,
            caller_id: None,
            machine_detection: false,
            sid: Some(sid.clone()),
            conference_sid: None,
            sip_headers: Vec::new(),
            secure_media: false,
            routed: None,
        })
        .await;
    let record = match created {
        Ok(record) => record,
        Err(error) => {
            api.seed_calls.lock_calls().remove(&sid);
            return Err(error.into());
        }
    };
    Ok(Answer::created(format!(
        "{}/calls/{}",
        users_root(api),
        public_id("c-", &record.sid)
    )))
}

/// `POST .../calls/{callId} {state}`.
async fn change_call(api: &Api, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let call = find_call(api, id).await?;
    let state = text(body, "state").ok_or_else(|| Refusal::bad("state is required"))?;
    if !call.status.is_live() {
        return Err(Refusal::bad(format!("call {id} has ended")));
    }
    let decision = match state {
        "completed" => {
            api.calls.update(&call.sid, CallUpdate::Complete)?;
            return Ok(Answer::empty());
        }
        "active" => Decision::Answer,
        "rejected" => Decision::Reject,
        other => {
            return Err(Refusal::bad(format!(
                "state must be active, rejected or completed, not {other:?}"
            )));
        }
    };
    let decided = api.seed_calls.lock_calls().get(&call.sid).is_some_and(|c| {
        c.decision.send_if_modified(|current| {
            let undecided = current.is_none();
            if undecided {
                *current = Some(decision);
            }
            undecided
        })
    });
    if !decided && call.status != CallStatus::InProgress {
        return Err(Refusal::bad(format!(
            "call {id} is not an incoming call waiting to be answered"
        )));
    }
    Ok(Answer::empty())
}

/// `POST .../calls/{callId}/audio {sentence, gender, voice, locale}` or `{fileUrl, loopEnabled}`.
async fn play_audio(api: &Api, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let call = find_call(api, id).await?;
    if !call.status.is_live() || api.seed_calls.events_url(&call.sid).is_none() {
        return Err(Refusal::bad(format!(
            "call {id} is not a live call of this API"
        )));
    }
    let prompt = match (text(body, "sentence"), text(body, "fileUrl")) {
        (Some(sentence), None) if !sentence.trim().is_empty() => {
            let voice = match text(body, "gender") {
                Some("male") => "man",
                _ => "woman",
            };
            let language = text(body, "locale")
                .filter(|l| {
                    l.len() == 5 && l.as_bytes()[2] == b'_' && l.is_char_boundary(2) && {
                        let (lang, country) = (&l[..2], &l[3..]);
                        lang.bytes().all(|b| b.is_ascii_lowercase())
                            && country.bytes().all(|b| b.is_ascii_uppercase())
                    }
                })
                .map_or_else(|| "en-US".to_owned(), |l| l.replace('_', "-"));
            format!(
                r#"<Say voice="{voice}" language="{language}">{}</Say>{}"#,
                escape_text(sentence),
                redirect(api, "speak")
            )
        }
        (None, Some(file)) => {
            let file = super::params::url("fileUrl", file)?;
            let repeat = if flag(body, "loopEnabled")?.unwrap_or(false) {
                "0"
            } else {
                "1"
            };
            format!(
                r#"<Play loop="{repeat}">{}</Play>{}"#,
                escape_text(&file),
                redirect(api, "playback")
            )
        }
        _ => {
            return Err(Refusal::bad(
                "give either a sentence to speak or a fileUrl to play",
            ));
        }
    };
    api.calls.update(
        &call.sid,
        CallUpdate::Redirect(DocumentSource::Twiml(document(&prompt))),
    )?;
    Ok(Answer::empty())
}

/// `POST /v1/users/{userId}/bridges {callIds: [a, b], bridgeAudio}`.
async fn create_bridge(api: &Api, body: &Value) -> Result<Answer, Refusal> {
    let ids: Vec<&str> = body
        .get("callIds")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [first, second] = ids.as_slice() else {
        return Err(Refusal::bad("callIds must list the two calls to bridge"));
    };
    if first == second {
        return Err(Refusal::bad("a call cannot be bridged with itself"));
    }
    let calls = [find_call(api, first).await?, find_call(api, second).await?];
    if let Some(ended) = calls.iter().find(|c| !c.status.is_live()) {
        return Err(Refusal::bad(format!(
            "call {} has ended",
            public_id("c-", &ended.sid)
        )));
    }
    let id = public_id("brg-", Sid::new("BR").as_str());
    let room = format!(
        r#"<Dial><Conference beep="false" startConferenceOnEnter="true" endConferenceOnExit="true" waitUrl="">{id}</Conference></Dial>{}"#,
        redirect(api, "park")
    );
    for call in &calls {
        api.calls.update(
            &call.sid,
            CallUpdate::Redirect(DocumentSource::Twiml(document(&room))),
        )?;
    }
    let mut bridges = api
        .seed_calls
        .bridges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if bridges.len() == MAX_BRIDGES {
        bridges.pop_front();
    }
    bridges.push_back(Bridge {
        id: id.clone(),
        call_ids: calls.map(|c| public_id("c-", &c.sid)),
        created: Utc::now(),
    });
    Ok(Answer::created(format!("{}/bridges/{id}", users_root(api))))
}

fn fetch_bridge(api: &Api, id: Option<&str>) -> Result<Answer, Refusal> {
    let id = id.unwrap_or_default();
    let bridges = api
        .seed_calls
        .bridges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bridge = bridges
        .iter()
        .find(|b| b.id == id)
        .ok_or_else(|| Refusal::not_found(&format!("bridge {id:?}")))?;
    let live = api.rooms.sid_of(&bridge.id).is_some();
    Ok(Answer::ok(json!({
        "id": bridge.id,
        "state": if live { "active" } else { "completed" },
        "bridgeAudio": true,
        "callIds": bridge.call_ids,
        "calls": bridge.call_ids.iter().map(|c| format!("{}/calls/{c}", users_root(api))).collect::<Vec<_>>(),
        "createdTime": time(Some(bridge.created)),
    })))
}

fn document(verbs: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{verbs}</Response>"#)
}

fn redirect(api: &Api, event: &str) -> String {
    format!(
        r#"<Redirect method="POST">{}</Redirect>"#,
        escape_text(&api.seed_calls.control_url(&api.account_sid, event))
    )
}

/// The silent wait of a call that has nothing to do.
fn park(api: &Api) -> String {
    document(&format!(
        r#"<Pause length="{PARK_SECONDS}"/>{}"#,
        redirect(api, "park")
    ))
}

/// Answers a ringing call (`<Play digits="w">` answers and sends nothing), then parks it.
fn answer_and_park(api: &Api) -> String {
    document(&format!(
        r#"<Play digits="w"/><Pause length="{PARK_SECONDS}"/>{}"#,
        redirect(api, "park")
    ))
}

/// Answers one request for a control document, made by callml's own interpreter.
pub async fn control(api: &Api, matched: &Matched, request: Request<Incoming>) -> HttpResponse {
    let refuse = |status: StatusCode, message: &str| {
        bytes_response(status, "text/plain", message.as_bytes().to_vec())
    };
    if request.method() != Method::POST {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    let url = format!(
        "{}{}",
        api.seed_calls.internal_url,
        request.uri().path_and_query().map_or("", |p| p.as_str())
    );
    let query = Params::parse(request.uri().query().unwrap_or(""));
    let signed = request
        .headers()
        .get("x-twilio-signature")
        .map(|v| v.as_bytes().to_vec());
    let Ok(body) = api.read_body(request.into_body()).await else {
        return refuse(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    let form = Params::parse(&String::from_utf8_lossy(&body));
    let expected = signature(&api.auth_token, &url, form.pairs());
    let user = matched.params.user_id.as_deref().unwrap_or_default();
    if user != api.account_sid || !signed.is_some_and(|s| constant_time_eq(&s, expected.as_bytes()))
    {
        return refuse(StatusCode::FORBIDDEN, "not signed by callml");
    }
    let call = CallFacts::of(&form);
    let seed = &api.seed_calls;
    let xml = match matched.params.event.as_deref().unwrap_or_default() {
        "incoming" => incoming(api, &call, query.get("application").unwrap_or_default()).await,
        "ring" => ring(api, &call).await,
        "answer" => {
            let events_url = query.get("callbackUrl").unwrap_or_default();
            seed.adopt(&call.sid, events_url);
            post_event(
                api,
                events_url,
                "answer",
                &call,
                &[("callState", json!("active"))],
            );
            park(api)
        }
        "park" => park(api),
        kind @ ("speak" | "playback") => {
            if let Some(events_url) = seed.events_url(&call.sid) {
                post_event(
                    api,
                    &events_url,
                    kind,
                    &call,
                    &[("status", json!("done")), ("state", json!("PLAYBACK_STOP"))],
                );
            }
            park(api)
        }
        "status" => {
            seed.lock_calls().remove(&call.sid);
            let events_url = query.get("callbackUrl").unwrap_or_default();
            let status = form.get("CallStatus").unwrap_or_default();
            post_event(
                api,
                events_url,
                "hangup",
                &call,
                &[
                    ("callState", json!("completed")),
                    ("cause", json!(hangup_cause(status))),
                ],
            );
            return bytes_response(StatusCode::NO_CONTENT, "text/plain", Vec::new());
        }
        _ => return refuse(StatusCode::NOT_FOUND, "no such control document"),
    };
    bytes_response(StatusCode::OK, "application/xml", xml.into_bytes())
}

/// The first document of an incoming call to `application`.
async fn incoming(api: &Api, call: &CallFacts, application: &str) -> String {
    let found = api
        .directory
        .read()
        .applications
        .get(application)
        .and_then(|a| Some((a.incoming_call_url.clone()?, a.auto_answer)));
    let Some((events_url, auto_answer)) = found else {
        tracing::warn!(call_sid = %call.sid, %application, "the application of an incoming call is gone");
        return document("<Reject/>");
    };
    api.seed_calls.adopt(&call.sid, &events_url);
    post_event(
        api,
        &events_url,
        "incomingcall",
        call,
        &[("callState", json!("active"))],
    );
    if auto_answer {
        answer_and_park(api)
    } else {
        ring(api, call).await
    }
}

/// A ringing incoming call's document: the decision when it comes in time, or ring on.
async fn ring(api: &Api, call: &CallFacts) -> String {
    let seed = &api.seed_calls;
    let Some((mut decisions, events_url)) = seed
        .lock_calls()
        .get(&call.sid)
        .map(|c| (c.decision.subscribe(), c.events_url.clone()))
    else {
        return document("<Reject/>");
    };
    let decided = tokio::time::timeout(seed.ring_wait, decisions.wait_for(Option::is_some))
        .await
        .ok()
        .and_then(|decision| decision.ok().and_then(|d| *d));
    match decided {
        Some(Decision::Answer) => {
            post_event(
                api,
                &events_url,
                "answer",
                call,
                &[("callState", json!("active"))],
            );
            answer_and_park(api)
        }
        Some(Decision::Reject) => document("<Reject/>"),
        None => document(&redirect(api, "ring")),
    }
}

/// The seed's hang-up cause for a Twilio call status.
fn hangup_cause(status: &str) -> &'static str {
    match status {
        "busy" => "USER_BUSY",
        "no-answer" => "NO_ANSWER",
        "canceled" => "ORIGINATOR_CANCEL",
        "failed" => "CALL_REJECTED",
        _ => "NORMAL_CLEARING",
    }
}

/// Posts one event to `events_url` in the background: `{eventType, callId, callUri, from, to,
/// time}` and `fields`.
fn post_event(api: &Api, events_url: &str, kind: &str, call: &CallFacts, fields: &[(&str, Value)]) {
    if events_url.is_empty() || call.sid.len() < 2 {
        return;
    }
    let call_id = public_id("c-", &call.sid);
    let mut event = json!({
        "eventType": kind,
        "callId": call_id,
        "callUri": format!("{}{}/calls/{call_id}", api.public_url, users_root(api)),
        "from": call.from,
        "to": call.to,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    for (name, value) in fields {
        event[*name] = value.clone();
    }
    let client = api.seed_calls.webhooks.clone();
    let url = events_url.to_owned();
    let body = event.to_string();
    let kind = kind.to_owned();
    tokio::spawn(async move {
        if let Err(error) = client
            .deliver_json_as(&url, &body, EVENTS_USER_AGENT, EVENT_TIMEOUT)
            .await
        {
            tracing::warn!(%url, event = %kind, %error, "the event could not be delivered");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_causes_are_the_seeds_words() {
        assert_eq!(state_of(CallStatus::Ringing), "started");
        assert_eq!(state_of(CallStatus::InProgress), "active");
        assert_eq!(state_of(CallStatus::Busy), "rejected");
        assert_eq!(state_of(CallStatus::Completed), "completed");
        assert_eq!(hangup_cause("completed"), "NORMAL_CLEARING");
        assert_eq!(hangup_cause("busy"), "USER_BUSY");
        assert_eq!(hangup_cause("no-answer"), "NO_ANSWER");
    }

    #[test]
    fn control_documents_parse() {
        let redirect = r#"<Redirect method="POST">http://127.0.0.1:1/v1/users/AC1/control/park?a=1&amp;b=2</Redirect>"#;
        for verbs in [
            format!(r#"<Pause length="{PARK_SECONDS}"/>{redirect}"#),
            format!(r#"<Play digits="w"/><Pause length="{PARK_SECONDS}"/>{redirect}"#),
            format!(
                r#"<Dial><Conference beep="false" startConferenceOnEnter="true" endConferenceOnExit="true" waitUrl="">brg-1</Conference></Dial>{redirect}"#
            ),
            format!(r#"<Say voice="woman" language="en-US">Hello &amp; bye</Say>{redirect}"#),
            "<Reject/>".to_owned(),
        ] {
            let parsed = crate::markup::parse(&document(&verbs));
            assert!(
                parsed.as_ref().is_ok_and(|p| p.warnings.is_empty()),
                "{verbs}: {parsed:?}"
            );
        }
    }
}
