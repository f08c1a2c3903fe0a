//! The Calls resource (<https://www.twilio.com/docs/voice/api/call-resource>): create an
//! outbound call, list and fetch call records, redirect / hang up / cancel a live call, delete
//! a finished one.
//!
//! Parameters are validated here into the call layer's [`NewCall`] and [`CallUpdate`]; the
//! call layer ([`CallControl`](crate::call::control::CallControl)) places and changes calls.

use std::collections::BTreeSet;
use std::time::Duration;

use hyper::StatusCode;

use super::error::{ApiError, ParamError};
use super::paging::{ListPage, PageRequest};
use super::params::{self, Params, boolean, date_range, method, whole};
use super::resources::{account_root, call_json};
use super::{Api, HttpResponse, RestRequest, json_response};
use crate::call::control::{CallTarget, CallUpdate, DocumentSource, NewCall, RecordingRequest};
use crate::call::params::party_name;
use crate::call::party::{allowed_uri_header, check_caller};
use crate::call::progress::{CallbackTarget, ProgressEvent};
use crate::markup::ast::{Keyword, KeywordSet, RecordingEvent, Trim};
use crate::markup::parse_sip_uri;
use crate::sip::msg::Uri;
use crate::store::{CallCursor, CallFilter, CallRecord, CallStatus};

/// Longest inline document (`Twiml`), in characters.
pub const MAX_TWIML_CHARS: usize = 4000;
/// How long an outbound call rings by default (`Timeout`), and at most.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an answered call may last by default (`TimeLimit`), and at most.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(4 * 3600);
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Longest `SendDigits`.
pub const MAX_SEND_DIGITS: usize = 32;
/// Longest caller identifier (`From`, `CallerId`).
const MAX_CALLER_CHARS: usize = 256;

/// The list filters of `Calls.json` GET, echoed in page URIs in this order.
const LIST_FILTERS: [&str; 7] = [
    "To",
    "From",
    "Status",
    "ParentCallSid",
    "StartTime",
    "StartTime<",
    "StartTime>",
];
/// Twilio's end-time filters, which callml does not offer (refused rather than ignored).
const UNSUPPORTED_FILTERS: [&str; 3] = ["EndTime", "EndTime<", "EndTime>"];

/// `To`: `client:NAME` (a registered client), a `sip:`/`sips:` URI (checked, kept as written;
/// its `?` headers become headers of the INVITE, so only those a `<Sip>` URI may set) or a
/// phone number (visual separators removed, `+` and 3 to 15 digits).
pub(super) fn target(value: &str) -> Result<CallTarget, ParamError> {
    if let Some(identity) = value.strip_prefix("client:") {
        return crate::api::sip::username(identity)
            .map(CallTarget::Client)
            .map_err(|_| ParamError::InvalidTo(value.to_owned()));
    }
    let scheme = value.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if matches!(scheme.as_deref(), Some("sip" | "sips")) {
        let invalid = |reason: String| ParamError::InvalidSipTo {
            uri: value.to_owned(),
            reason,
        };
        let uri = parse_sip_uri(value).map_err(|fault| invalid(fault.to_string()))?;
        if let Some(header) = uri.headers.iter().find(|h| !allowed_uri_header(&h.name)) {
            return Err(invalid(format!(
                "the header {:?} is not allowed (only X- headers and User-to-User)",
                header.name
            )));
        }
        return Ok(CallTarget::Sip(value.to_owned()));
    }
    let number: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = number.strip_prefix('+').unwrap_or(&number);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParamError::InvalidTo(value.to_owned()));
    }
    if !(3..=15).contains(&digits.len()) {
        return Err(ParamError::InvalidNumber(value.to_owned()));
    }
    Ok(CallTarget::Number(number))
}

/// `From` / `CallerId`: a number, a name, `client:NAME` or a SIP URI that can be the From of
/// the INVITE as it is ([`check_caller`]), and reasonably short.
pub(super) fn caller(name: &'static str, value: &str) -> Result<String, ParamError> {
    let checked = if value.chars().count() > MAX_CALLER_CHARS {
        Err("at most 256 characters")
    } else {
        check_caller(value)
    };
    match checked {
        Ok(()) => Ok(value.to_owned()),
        Err(reason) => Err(ParamError::InvalidCaller {
            name,
            value: value.to_owned(),
            reason,
        }),
    }
}

/// `Twiml`: at most 4,000 characters, and a document the markup parser accepts (else 12100
/// with the first error's `line:col`), so that nobody is rung for a document that cannot run.
fn twiml(value: &str) -> Result<DocumentSource, ParamError> {
    let chars = value.chars().count();
    if chars > MAX_TWIML_CHARS {
        return Err(ParamError::TwimlTooLong(chars));
    }
    if let Err(diagnostics) = crate::markup::parse(value) {
        let first = diagnostics.iter().find(|d| d.is_error());
        return Err(ParamError::InvalidTwiml(first.map_or_else(
            || "it does not parse".to_owned(),
            ToString::to_string,
        )));
    }
    Ok(DocumentSource::Twiml(value.to_owned()))
}

/// `Url` + `Method`, else `Twiml`; `None` when neither is given.
fn document(params: &Params) -> Result<Option<DocumentSource>, ParamError> {
    if let Some(url) = params.get("Url") {
        return Ok(Some(DocumentSource::Url {
            url: params::url("Url", url)?,
            method: method(params, "Method")?,
        }));
    }
    params.get("Twiml").map(twiml).transpose()
}

fn callback_url(name: &'static str, value: &str) -> Result<String, ParamError> {
    params::url(name, value).map_err(|_| ParamError::InvalidCallbackUrl {
        name,
        value: value.to_owned(),
    })
}

fn progress_event(value: &str) -> Result<ProgressEvent, ParamError> {
    match value {
        "initiated" => Ok(ProgressEvent::Initiated),
        "ringing" => Ok(ProgressEvent::Ringing),
        "answered" => Ok(ProgressEvent::Answered),
        "completed" => Ok(ProgressEvent::Completed),
        _ => Err(ParamError::InvalidEvent {
            name: "StatusCallbackEvent",
            value: value.to_owned(),
            allowed: "initiated, ringing, answered, completed",
        }),
    }
}

fn status_callback(params: &Params) -> Result<Option<CallbackTarget>, ParamError> {
    let Some(url) = params.get("StatusCallback") else {
        return Ok(None);
    };
    let mut events = params
        .all("StatusCallbackEvent")
        .into_iter()
        .map(progress_event)
        .collect::<Result<BTreeSet<_>, _>>()?;
    if events.is_empty() {
        events.insert(ProgressEvent::Completed);
    }
    Ok(Some(CallbackTarget {
        url: callback_url("StatusCallback", url)?,
        method: method(params, "StatusCallbackMethod")?,
        events,
    }))
}

fn recording(params: &Params) -> Result<Option<RecordingRequest>, ParamError> {
    if boolean(params, "Record")? != Some(true) {
        return Ok(None);
    }
    let dual = match params.get("RecordingChannels") {
        None | Some("mono") => false,
        Some("dual") => true,
        Some(other) => {
            return Err(ParamError::Invalid {
                name: "RecordingChannels",
                value: other.to_owned(),
                expected: "mono or dual",
            });
        }
    };
    let trim = match params.get("Trim") {
        None => Trim::TrimSilence,
        Some(value) => Trim::from_keyword(value).ok_or_else(|| ParamError::Invalid {
            name: "Trim",
            value: value.to_owned(),
            expected: "trim-silence or do-not-trim",
        })?,
    };
    let mut events = KeywordSet::empty();
    for event in params
        .all("RecordingStatusCallbackEvent")
        .into_iter()
        .flat_map(str::split_whitespace)
    {
        let event =
            RecordingEvent::from_keyword(event).ok_or_else(|| ParamError::InvalidEvent {
                name: "RecordingStatusCallbackEvent",
                value: event.to_owned(),
                allowed: "in-progress, completed, absent",
            })?;
        events.insert(event);
    }
    if events.is_empty() {
        events.insert(RecordingEvent::Completed);
    }
    Ok(Some(RecordingRequest {
        dual,
        trim,
        status_callback: params
            .get("RecordingStatusCallback")
            .map(|url| callback_url("RecordingStatusCallback", url))
            .transpose()?,
        status_callback_method: method(params, "RecordingStatusCallbackMethod")?,
        status_callback_events: events,
    }))
}

/// A duration in whole seconds from 1, `default` when absent, capped at `max`.
fn seconds(
    params: &Params,
    name: &'static str,
    default: Duration,
    max: Duration,
) -> Result<Duration, ParamError> {
    const EXPECTED: &str = "a whole number of seconds from 1";
    match whole(params, name, EXPECTED)? {
        None => Ok(default),
        Some(0) => Err(ParamError::Invalid {
            name,
            value: "0".into(),
            expected: EXPECTED,
        }),
        Some(n) => Ok(Duration::from_secs(n).min(max)),
    }
}

fn send_digits(params: &Params) -> Result<Option<String>, ParamError> {
    let Some(digits) = params.get("SendDigits") else {
        return Ok(None);
    };
    let valid = digits.len() <= MAX_SEND_DIGITS
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'w' | b'W'));
    if !valid {
        return Err(ParamError::Invalid {
            name: "SendDigits",
            value: digits.to_owned(),
            expected: "at most 32 of 0-9, *, # and w (a half-second pause)",
        });
    }
    Ok(Some(digits.to_owned()))
}

/// Validates a `Calls.json` POST into a [`NewCall`] for `account_sid`.
pub fn new_call(account_sid: &str, params: &Params) -> Result<NewCall, ParamError> {
    let to = target(params.get("To").ok_or(ParamError::MissingTo)?)?;
    let from = caller("From", params.get("From").ok_or(ParamError::MissingFrom)?)?;
    let document = document(params)?.ok_or(ParamError::MissingDocument)?;
    let fallback = params
        .get("FallbackUrl")
        .map(|url| {
            Ok::<_, ParamError>((
                params::url("FallbackUrl", url)?,
                method(params, "FallbackMethod")?,
            ))
        })
        .transpose()?;
    let sip_auth = match (params.get("SipAuthUsername"), params.get("SipAuthPassword")) {
        (Some(user), Some(password)) => {
            // Both go into a digest Authorization header: no line breaks or other controls.
            for (name, value) in [("SipAuthUsername", user), ("SipAuthPassword", password)] {
                if value.chars().any(char::is_control) {
                    let shown = if name == "SipAuthPassword" {
                        "(not shown)".to_owned()
                    } else {
                        value.escape_debug().to_string()
                    };
                    return Err(ParamError::Invalid {
                        name,
                        value: shown,
                        expected: "text without control characters (no line breaks)",
                    });
                }
            }
            Some((user.to_owned(), password.to_owned()))
        }
        (None, None) => None,
        _ => return Err(ParamError::IncompleteSipAuth),
    };
    Ok(NewCall {
        account_sid: account_sid.to_owned(),
        to,
        from,
        document,
        fallback,
        status_callback: status_callback(params)?,
        timeout: seconds(params, "Timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT)?,
        time_limit: seconds(params, "TimeLimit", DEFAULT_TIME_LIMIT, MAX_TIME_LIMIT)?,
        recording: recording(params)?,
        send_digits: send_digits(params)?,
        sip_auth,
        caller_id: params
            .get("CallerId")
            .map(|id| caller("CallerId", id))
            .transpose()?,
        machine_detection: machine_detection(params)?,
        sid: None,
        conference_sid: None,
        sip_headers: Vec::new(),
        secure_media: false,
        routed: None,
    })
}

/// `MachineDetection`: `Enable` or `DetectMessageEnd` asks for answering-machine detection.
fn machine_detection(params: &Params) -> Result<bool, ParamError> {
    match params.get("MachineDetection") {
        None => Ok(false),
        Some("Enable" | "DetectMessageEnd") => Ok(true),
        Some(other) => Err(ParamError::Invalid {
            name: "MachineDetection",
            value: other.to_owned(),
            expected: "Enable or DetectMessageEnd",
        }),
    }
}

/// Validates a `Calls/{CallSid}.json` POST: `Status` wins over a new document; `None` when it
/// asks for no change.
pub fn call_update(params: &Params) -> Result<Option<CallUpdate>, ParamError> {
    match params.get("Status") {
        Some("completed") => return Ok(Some(CallUpdate::Complete)),
        Some("canceled") => return Ok(Some(CallUpdate::Cancel)),
        Some(other) => return Err(ParamError::InvalidUpdateStatus(other.to_owned())),
        None => {}
    }
    Ok(document(params)?.map(CallUpdate::Redirect))
}

fn call_filter(api: &Api, query: &Params) -> Result<CallFilter, ParamError> {
    for name in UNSUPPORTED_FILTERS {
        if let Some(value) = query.get(name) {
            return Err(ParamError::Invalid {
                name,
                value: value.to_owned(),
                expected: "not supported by callml (filter on StartTime instead)",
            });
        }
    }
    let status = query
        .get("Status")
        .map(|s| {
            s.parse::<CallStatus>().map_err(|_| ParamError::Invalid {
                name: "Status",
                value: s.to_owned(),
                expected: "queued, ringing, in-progress, completed, busy, failed, no-answer or canceled",
            })
        })
        .transpose()?;
    Ok(CallFilter {
        account_sid: Some(api.account_sid.clone()),
        to: query.get("To").map(as_recorded),
        from: query.get("From").map(as_recorded),
        status,
        parent_call_sid: query.get("ParentCallSid").map(str::to_owned),
        start_time: date_range(query, ["StartTime", "StartTime<", "StartTime>"])?,
        after: None,
        before: None,
    })
}

/// `Calls.json` GET.
pub async fn list(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let query = &request.query;
    let mut filter = call_filter(api, query)?;
    let page = PageRequest::parse(query, "CA")?;
    filter.after = page.after();
    filter.before = page.before();
    let rows = api
        .store
        .list_calls(&filter, page.limit(), page.offset())
        .await?;
    let body = ListPage {
        path: format!("{}/Calls.json", account_root(&api.account_sid)),
        filters: LIST_FILTERS
            .iter()
            .filter_map(|name| query.get(name).map(|v| (*name, v)))
            .collect(),
        key: "calls",
        request: &page,
        rows,
    }
    .into_json(CallCursor::after, call_json);
    Ok(json_response(StatusCode::OK, &body))
}

/// The call `sid` of this account, or 404.
pub async fn find(api: &Api, request: &RestRequest, sid: &str) -> Result<CallRecord, ApiError> {
    match api.store.call(sid).await? {
        Some(call) if call.account_sid == api.account_sid => Ok(call),
        _ => Err(ApiError::NotFound(request.path.clone())),
    }
}

/// `Calls/{CallSid}.json` GET.
pub async fn fetch(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let call = find(api, request, sid).await?;
    Ok(json_response(StatusCode::OK, &call_json(&call)))
}

/// `Calls.json` POST.
pub async fn create(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let call = new_call(&api.account_sid, &request.form)?;
    let control = &api.calls;
    let record = control.create(call).await?;
    Ok(json_response(StatusCode::CREATED, &call_json(&record)))
}

/// `Calls/{CallSid}.json` POST.
pub async fn update(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let call = find(api, request, sid).await?;
    let Some(change) = call_update(&request.form)? else {
        return Ok(json_response(StatusCode::OK, &call_json(&call)));
    };
    if !call.status.is_live() {
        return Err(ApiError::CallNotLive(call.sid));
    }
    let ends = matches!(change, CallUpdate::Complete | CallUpdate::Cancel);
    api.calls.update(&call.sid, change)?;
    let mut call = find(api, request, sid).await?;
    // A hang-up answers the state the call ends in, as Twilio does, once its task has
    // written it (a moment: the call only has to send its BYE or CANCEL).
    let deadline = tokio::time::Instant::now() + END_WAIT;
    while ends && call.status.is_live() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(END_POLL).await;
        call = find(api, request, sid).await?;
    }
    Ok(json_response(StatusCode::OK, &call_json(&call)))
}

/// How long a `Status=completed`/`canceled` update waits to answer the final state.
const END_WAIT: Duration = Duration::from_secs(3);
const END_POLL: Duration = Duration::from_millis(10);

/// A `To`/`From` filter as calls record the party: a SIP URI without its parameters (the
/// `To` given at create, `;transport=udp` and all, finds the call), a number as it is.
fn as_recorded(value: &str) -> String {
    match Uri::parse(value) {
        Ok(uri) => party_name(&uri),
        Err(_) => value.to_owned(),
    }
}

/// `Calls/{CallSid}.json` DELETE.
pub async fn delete(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let call = find(api, request, sid).await?;
    if call.status.is_live() {
        return Err(ApiError::CallLive(call.sid));
    }
    api.store.delete_call(&call.sid).await?;
    Ok(super::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::ast::HttpMethod;

    const AC: &str = "AC0123456789abcdef0123456789abcdef";

    fn parse(body: &str) -> Result<NewCall, ParamError> {
        new_call(AC, &Params::parse(body))
    }

    fn code(body: &str) -> u32 {
        parse(body).expect_err(body).code()
    }

    #[test]
    fn a_full_create_request_becomes_a_new_call() {
        let call = parse(
            "To=sip%3Abob%40127.0.0.1%3A5070%3Btransport%3Dudp&From=%2B15550001111\
             &Url=http%3A%2F%2F127.0.0.1%3A9000%2Fdoc&Method=GET\
             &FallbackUrl=http%3A%2F%2F127.0.0.1%3A9000%2Ffallback\
             &StatusCallback=http%3A%2F%2F127.0.0.1%3A9000%2Fcb\
             &StatusCallbackEvent=initiated&StatusCallbackEvent=ringing+answered\
             &StatusCallbackMethod=GET&Timeout=900&TimeLimit=30&Record=true\
             &RecordingChannels=dual&Trim=do-not-trim\
             &RecordingStatusCallback=http%3A%2F%2F127.0.0.1%3A9000%2Frec\
             &RecordingStatusCallbackEvent=in-progress+completed\
             &SendDigits=1234w%23&SipAuthUsername=u&SipAuthPassword=p&CallerId=alice\
             &MachineDetection=DetectMessageEnd",
        )
        .unwrap();
        assert_eq!(
            call.to,
            CallTarget::Sip("sip:bob@127.0.0.1:5070;transport=udp".into())
        );
        assert_eq!(call.from, "+15550001111");
        assert_eq!(
            call.document,
            DocumentSource::Url {
                url: "http://127.0.0.1:9000/doc".into(),
                method: HttpMethod::Get
            }
        );
        assert_eq!(
            call.fallback,
            Some(("http://127.0.0.1:9000/fallback".into(), HttpMethod::Post))
        );
        let callback = call.status_callback.unwrap();
        assert_eq!(callback.method, HttpMethod::Get);
        assert_eq!(
            callback.events.into_iter().collect::<Vec<_>>(),
            [
                ProgressEvent::Initiated,
                ProgressEvent::Ringing,
                ProgressEvent::Answered
            ]
        );
        assert_eq!(call.timeout, MAX_TIMEOUT, "Timeout is capped at 600 s");
        assert_eq!(call.time_limit, Duration::from_secs(30));
        let recording = call.recording.unwrap();
        assert!(recording.dual);
        assert_eq!(recording.trim, Trim::DoNotTrim);
        assert_eq!(
            recording.status_callback_events,
            KeywordSet::of(&[RecordingEvent::InProgress, RecordingEvent::Completed])
        );
        assert_eq!(call.send_digits.as_deref(), Some("1234w#"));
        assert_eq!(call.sip_auth, Some(("u".into(), "p".into())));
        assert_eq!(call.caller_id.as_deref(), Some("alice"));
        assert!(call.machine_detection);
    }

    #[test]
    fn defaults_apply_and_url_wins_over_twiml() {
        let call = parse(
            "To=%2B1+(555)+000-2222&From=me&Url=https%3A%2F%2Fexample.com%2Fx\
             &Twiml=%3CResponse%2F%3E&StatusCallback=https%3A%2F%2Fexample.com%2Fcb",
        )
        .unwrap();
        assert_eq!(call.to, CallTarget::Number("+15550002222".into()));
        assert!(matches!(call.document, DocumentSource::Url { .. }));
        assert_eq!(call.timeout, DEFAULT_TIMEOUT);
        assert_eq!(call.time_limit, DEFAULT_TIME_LIMIT);
        assert_eq!(
            call.status_callback
                .unwrap()
                .events
                .into_iter()
                .collect::<Vec<_>>(),
            [ProgressEvent::Completed]
        );
        assert_eq!(call.recording, None);
        let call = parse("To=%2B15550002222&From=me&Twiml=%3CResponse%2F%3E").unwrap();
        assert_eq!(call.document, DocumentSource::Twiml("<Response/>".into()));
    }

    #[test]
    fn invalid_requests_get_twilio_codes() {
        assert_eq!(code("From=me&Url=http%3A%2F%2Fx%2F"), 21201);
        assert_eq!(code("To=%2B15550002222&Url=http%3A%2F%2Fx%2F"), 21213);
        assert_eq!(code("To=%2B15550002222&From=me"), 21205);
        assert_eq!(code("To=%2B15550002222&From=me&Url=nope"), 21205);
        assert_eq!(
            code("To=client%3Ab%20ob&From=me&Url=http%3A%2F%2Fx%2F"),
            21211
        );
        assert_eq!(
            parse("To=client%3Abob&From=me&Url=http%3A%2F%2Fx%2F")
                .unwrap()
                .to,
            CallTarget::Client("bob".into())
        );
        assert_eq!(code("To=sip%3A&From=me&Url=http%3A%2F%2Fx%2F"), 21211);
        for to in [
            "sip%3Abob%40x%3FVia%3Dx",
            "sip%3Abob%40x%3FX-A%3D1%250D%250AVia%3A%2520x",
            "sip%3Ab%22ob%40x",
        ] {
            assert_eq!(
                code(&format!("To={to}&From=me&Url=http%3A%2F%2Fx%2F")),
                21211,
                "{to}"
            );
        }
        for from in ["alice+smith", "%22alice%22", "%3Csip%3Aa%40b%3E", "a%40b"] {
            assert_eq!(
                code(&format!("To=123&From={from}&Url=http%3A%2F%2Fx%2F")),
                21212,
                "{from}"
            );
            assert_eq!(
                code(&format!(
                    "To=123&From=me&CallerId={from}&Url=http%3A%2F%2Fx%2F"
                )),
                21212,
                "{from}"
            );
        }
        assert_eq!(code("To=12&From=me&Url=http%3A%2F%2Fx%2F"), 21217);
        assert_eq!(code("To=123&From=me%0A&Url=http%3A%2F%2Fx%2F"), 21212);
        assert_eq!(
            code("To=123&From=me&Url=http%3A%2F%2Fx%2F&Method=PUT"),
            21209
        );
        assert_eq!(
            code("To=123&From=me&Url=http%3A%2F%2Fx%2F&StatusCallback=x"),
            21609
        );
        assert_eq!(
            code(
                "To=123&From=me&Url=http%3A%2F%2Fx%2F&StatusCallback=http%3A%2F%2Fx%2F&StatusCallbackEvent=hungup"
            ),
            21626
        );
        let long = format!("To=123&From=me&Twiml={}", "a".repeat(MAX_TWIML_CHARS + 1));
        assert_eq!(code(&long), 32018);
        let wrapper = "<Response><Say></Say></Response>".len();
        let exact = format!(
            "To=123&From=me&Twiml=%3CResponse%3E%3CSay%3E{}%3C%2FSay%3E%3C%2FResponse%3E",
            "a".repeat(MAX_TWIML_CHARS - wrapper)
        );
        assert!(parse(&exact).is_ok());
        for broken in [
            "%3CReply%2F%3E",
            "%3CResponse%3E",
            "%3CResponse%3E%3CPlay%3E%3C%2FResponse%3E",
            "%3CResponse%3E%3CDial%3E%3CSip%3Ehttp%3A%2F%2Fx%3C%2FSip%3E%3C%2FDial%3E%3C%2FResponse%3E",
        ] {
            let error = parse(&format!("To=123&From=me&Twiml={broken}")).unwrap_err();
            assert_eq!(error.code(), 12100, "{broken}");
            assert!(error.to_string().contains("1:"), "a line:col in {error}");
        }
        let update = call_update(&Params::parse("Twiml=%3CResponse%3E%3CHangup%3E"));
        assert_eq!(update.map_err(|e| e.code()), Err(12100));
        for bad in [
            "Timeout=abc",
            "Timeout=0",
            "TimeLimit=-5",
            "Record=maybe",
            "Record=true&RecordingChannels=stereo",
            "SendDigits=12x",
            "SipAuthUsername=u",
            "SipAuthUsername=u%0D%0AX-Injected%3A+1&SipAuthPassword=p",
            "SipAuthUsername=u&SipAuthPassword=p%0A",
            "MachineDetection=yes",
        ] {
            assert_eq!(
                code(&format!("To=123&From=me&Url=http%3A%2F%2Fx%2F&{bad}")),
                20001,
                "{bad}"
            );
        }
    }

    #[test]
    fn updates_prefer_status_then_url_then_twiml() {
        let update = |body: &str| call_update(&Params::parse(body));
        assert_eq!(
            update("Status=completed&Url=http%3A%2F%2Fx%2F"),
            Ok(Some(CallUpdate::Complete))
        );
        assert_eq!(update("Status=canceled"), Ok(Some(CallUpdate::Cancel)));
        assert_eq!(
            update("Url=http%3A%2F%2Fx%2F&Method=GET&Twiml=%3CResponse%2F%3E"),
            Ok(Some(CallUpdate::Redirect(DocumentSource::Url {
                url: "http://x/".into(),
                method: HttpMethod::Get
            })))
        );
        assert_eq!(
            update("Twiml=%3CResponse%2F%3E"),
            Ok(Some(CallUpdate::Redirect(DocumentSource::Twiml(
                "<Response/>".into()
            ))))
        );
        assert_eq!(update(""), Ok(None));
        assert_eq!(update("Status=busy").unwrap_err().code(), 20001);
    }
}
