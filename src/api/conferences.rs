//! The Conference and Participant resources
//! (<https://www.twilio.com/docs/voice/api/conference-resource>,
//! `.../conference-participant-resource`): list and fetch conferences (from the store, so
//! completed ones too), end one or announce into it, list its recordings; list, fetch, change
//! (mute, hold, announce, coach) and remove the participants of a conference under way, and
//! add one by calling it. The conferences themselves are the call layer's
//! ([`Rooms`](crate::call::rooms::Rooms)).

use hyper::StatusCode;
use serde_json::{Value, json};

use super::calls::new_call;
use super::error::{ApiError, ParamError};
use super::paging::{ListPage, PageRequest};
use super::params::{self, Params, boolean, date_range, method};
use super::resources::{account_root, rfc2822};
use super::{Api, HttpResponse, RestRequest, json_response, no_content};
use crate::call::control::DocumentSource;
use crate::call::document::Source;
use crate::call::rooms::RoomError;
use crate::call::rooms::monitor::SessionLink;
use crate::call::rooms::room::{
    ChangeError, Clearing, LeftReason, ParticipantChange, ParticipantView,
};
use crate::ids::Sid;
use crate::markup::ast::{ConferenceBeep, ConferenceEvent, Keyword, KeywordSet, Trim};
use crate::store::{ConferenceFilter, ConferenceRecord, ConferenceStatus, ListCursor};

/// The list filters of `Conferences.json` GET, echoed in page URIs in this order.
const LIST_FILTERS: [&str; 8] = [
    "FriendlyName",
    "Status",
    "DateCreated",
    "DateCreated<",
    "DateCreated>",
    "DateUpdated",
    "DateUpdated<",
    "DateUpdated>",
];

impl From<RoomError> for ApiError {
    fn from(error: RoomError) -> ApiError {
        match error {
            RoomError::NoConference(sid) => ApiError::NotFound(sid),
            RoomError::Change(ChangeError::NoParticipant(key)) => ApiError::NotFound(key),
            RoomError::Change(change) => ApiError::Conference {
                code: change.code(),
                message: change.to_string(),
            },
            RoomError::Refused { code, reason } => ApiError::Conference {
                code,
                message: reason,
            },
            RoomError::BadName => ApiError::Param(ParamError::Invalid {
                name: "ConferenceSid",
                value: String::new(),
                expected: "a conference SID, or a name of 1 to 128 characters",
            }),
            RoomError::Stopping => ApiError::ShuttingDown,
        }
    }
}

fn conference_base(record: &ConferenceRecord) -> String {
    format!(
        "{}/Conferences/{}",
        account_root(&record.account_sid),
        record.sid
    )
}

pub fn conference_json(record: &ConferenceRecord) -> Value {
    let base = conference_base(record);
    json!({
        "account_sid": record.account_sid,
        "api_version": super::routes::API_VERSION,
        "date_created": rfc2822(record.date_created),
        "date_updated": rfc2822(record.date_updated),
        "friendly_name": record.friendly_name,
        "sid": record.sid,
        "region": "us1",
        "status": record.status.as_str(),
        "subresource_uris": {
            "participants": format!("{base}/Participants.json"),
            "recordings": format!("{base}/Recordings.json"),
        },
        "uri": format!("{base}.json"),
        "reason_conference_ended": record.reason_ended,
        "call_sid_ending_conference": record.call_sid_ending,
    })
}

fn participant_json(account_sid: &str, conference_sid: &str, p: &ParticipantView) -> Value {
    json!({
        "account_sid": account_sid,
        "call_sid": p.call_sid,
        "label": p.label,
        "conference_sid": conference_sid,
        "date_created": rfc2822(p.date_created),
        "date_updated": rfc2822(p.date_updated),
        "end_conference_on_exit": p.end_conference_on_exit,
        "muted": p.muted,
        "hold": p.hold,
        "status": p.status,
        "start_conference_on_enter": p.start_conference_on_enter,
        "coaching": p.coaching,
        "call_sid_to_coach": p.call_sid_to_coach,
        "queue_time": null,
        "uri": format!(
            "{}/Conferences/{conference_sid}/Participants/{}.json",
            account_root(account_sid),
            p.call_sid
        ),
    })
}

fn filter(api: &Api, query: &Params) -> Result<ConferenceFilter, ParamError> {
    let status = query
        .get("Status")
        .map(|s| {
            s.parse::<ConferenceStatus>()
                .map_err(|_| ParamError::Invalid {
                    name: "Status",
                    value: s.to_owned(),
                    expected: "init, in-progress or completed",
                })
        })
        .transpose()?;
    Ok(ConferenceFilter {
        account_sid: Some(api.account_sid.clone()),
        friendly_name: query.get("FriendlyName").map(str::to_owned),
        status,
        date_created: date_range(query, ["DateCreated", "DateCreated<", "DateCreated>"])?,
        date_updated: date_range(query, ["DateUpdated", "DateUpdated<", "DateUpdated>"])?,
        after: None,
        before: None,
    })
}

/// `Conferences.json` GET.
pub async fn list(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let query = &request.query;
    let mut filter = filter(api, query)?;
    let page = PageRequest::parse(query, "CF")?;
    filter.after = page.after();
    filter.before = page.before();
    let rows = api
        .store
        .list_conferences(&filter, page.limit(), page.offset())
        .await?;
    let filters = LIST_FILTERS
        .iter()
        .filter_map(|name| query.get(name).map(|v| (*name, v)))
        .collect();
    let body = ListPage {
        path: format!("{}/Conferences.json", account_root(&api.account_sid)),
        filters,
        key: "conferences",
        request: &page,
        rows,
    }
    .into_json(ListCursor::after_conference, conference_json);
    Ok(json_response(StatusCode::OK, &body))
}

async fn find(api: &Api, request: &RestRequest, sid: &str) -> Result<ConferenceRecord, ApiError> {
    api.rooms
        .conference(sid)
        .await
        .filter(|record| record.account_sid == api.account_sid)
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `Conferences/{Sid}.json` GET.
pub async fn fetch(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let record = find(api, request, sid).await?;
    Ok(json_response(StatusCode::OK, &conference_json(&record)))
}

/// An announcement or hold document's URL and method, when `url_name` is given.
fn source(
    params: &Params,
    url_name: &'static str,
    method_name: &'static str,
) -> Result<Option<Source>, ParamError> {
    params
        .get(url_name)
        .map(|url| {
            Ok(Source {
                url: params::url(url_name, url)?,
                method: method(params, method_name)?,
            })
        })
        .transpose()
}

/// `Conferences/{Sid}.json` POST: `Status=completed` ends it; `AnnounceUrl` plays to all.
pub async fn update(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let record = find(api, request, sid).await?;
    let form = &request.form;
    let complete = match form.get("Status") {
        None => false,
        Some("completed") => true,
        Some(other) => {
            return Err(ParamError::Invalid {
                name: "Status",
                value: other.to_owned(),
                expected: "completed",
            }
            .into());
        }
    };
    let announce = source(form, "AnnounceUrl", "AnnounceMethod")?;
    if record.status == ConferenceStatus::Completed {
        if announce.is_some() {
            return Err(ApiError::Conference {
                code: crate::call::rooms::room::CONFERENCE_GONE,
                message: format!("Conference {sid} is completed"),
            });
        }
        return Ok(json_response(StatusCode::OK, &conference_json(&record)));
    }
    let record = api.rooms.update(sid, complete, announce)?;
    Ok(json_response(StatusCode::OK, &conference_json(&record)))
}

/// `Conferences/{Sid}/Participants.json` GET (filters `Muted`, `Hold`, `Coaching`).
pub async fn participants(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let record = find(api, request, sid).await?;
    let query = &request.query;
    let (muted, hold, coaching) = (
        boolean(query, "Muted")?,
        boolean(query, "Hold")?,
        boolean(query, "Coaching")?,
    );
    let listed = match record.status {
        ConferenceStatus::Completed => Vec::new(),
        _ => api.rooms.participants(sid).unwrap_or_default(),
    };
    let rows = listed
        .iter()
        .filter(|p| muted.is_none_or(|m| p.muted == m))
        .filter(|p| hold.is_none_or(|h| p.hold == h))
        .filter(|p| coaching.is_none_or(|c| p.coaching == c))
        .map(|p| participant_json(&api.account_sid, sid, p))
        .collect();
    let path = format!(
        "{}/Conferences/{sid}/Participants.json",
        account_root(&api.account_sid)
    );
    super::queues::page_of(request, path, "participants", rows)
}

/// `Conferences/{Sid}/Participants/{CallSid|Label}.json` GET.
pub async fn participant(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    key: &str,
) -> Result<HttpResponse, ApiError> {
    find(api, request, sid).await?;
    let view = api
        .rooms
        .participant(sid, key)
        .map_err(|_| ApiError::NotFound(request.path.clone()))?;
    Ok(json_response(
        StatusCode::OK,
        &participant_json(&api.account_sid, sid, &view),
    ))
}

/// `Conferences/{Sid}/Participants/{CallSid|Label}.json` POST.
pub async fn change(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    key: &str,
) -> Result<HttpResponse, ApiError> {
    find(api, request, sid).await?;
    let form = &request.form;
    let change = ParticipantChange {
        muted: boolean(form, "Muted")?,
        hold: boolean(form, "Hold")?,
        hold_music: form
            .get("HoldUrl")
            .map(|url| {
                Ok::<_, ParamError>(Source {
                    url: params::url("HoldUrl", url)?,
                    method: match form.get("HoldMethod") {
                        None => crate::markup::ast::HttpMethod::Get,
                        Some(_) => method(form, "HoldMethod")?,
                    },
                })
            })
            .transpose()?,
        announce: source(form, "AnnounceUrl", "AnnounceMethod")?,
        beep_on_exit: boolean(form, "BeepOnExit")?,
        end_on_exit: boolean(form, "EndConferenceOnExit")?,
        coaching: boolean(form, "Coaching")?,
        call_sid_to_coach: form.get("CallSidToCoach").map(str::to_owned),
    };
    let view = api
        .rooms
        .change(sid, key, change)
        .map_err(|error| match error {
            RoomError::Change(ChangeError::NoParticipant(_)) | RoomError::NoConference(_) => {
                ApiError::NotFound(request.path.clone())
            }
            other => other.into(),
        })?;
    Ok(json_response(
        StatusCode::OK,
        &participant_json(&api.account_sid, sid, &view),
    ))
}

/// `Conferences/{Sid}/Participants/{CallSid|Label}.json` DELETE: the participant is removed
/// (its `<Dial>` completes).
pub async fn kick(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    key: &str,
) -> Result<HttpResponse, ApiError> {
    find(api, request, sid).await?;
    api.rooms
        .kick(sid, key)
        .map_err(|_| ApiError::NotFound(request.path.clone()))?;
    Ok(no_content())
}

/// `Beep`: true, false, onEnter or onExit.
fn beep(params: &Params) -> Result<ConferenceBeep, ParamError> {
    match params.get("Beep") {
        None => Ok(ConferenceBeep::True),
        Some(value) => ConferenceBeep::from_keyword(value).ok_or_else(|| ParamError::Invalid {
            name: "Beep",
            value: value.to_owned(),
            expected: "true, false, onEnter or onExit",
        }),
    }
}

/// `ConferenceStatusCallbackEvent`: space- or comma-separated, default `start end`.
fn conference_events(params: &Params) -> Result<KeywordSet<ConferenceEvent>, ParamError> {
    let mut events = KeywordSet::empty();
    for event in params
        .all("ConferenceStatusCallbackEvent")
        .into_iter()
        .flat_map(|v| v.split([' ', ',']))
        .filter(|e| !e.is_empty())
    {
        events.insert(ConferenceEvent::from_keyword(event).ok_or_else(|| {
            ParamError::InvalidEvent {
                name: "ConferenceStatusCallbackEvent",
                value: event.to_owned(),
                allowed: "start, end, join, leave, mute, hold, modify, speaker, announcement",
            }
        })?);
    }
    if events.is_empty() {
        events = KeywordSet::of(&[ConferenceEvent::Start, ConferenceEvent::End]);
    }
    Ok(events)
}

/// The `<Dial><Conference>` document a participant added through the API runs once it
/// answers: the parameters that shape its place in the conference, as attributes.
fn participant_document(conference: &str, params: &Params) -> Result<String, ApiError> {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;")
    };
    let mut attributes = vec![format!("beep=\"{}\"", beep(params)?.keyword())];
    for (name, attribute) in [
        ("Muted", "muted"),
        ("StartConferenceOnEnter", "startConferenceOnEnter"),
        ("EndConferenceOnExit", "endConferenceOnExit"),
    ] {
        if let Some(value) = boolean(params, name)? {
            attributes.push(format!("{attribute}=\"{value}\""));
        }
    }
    if let Some(url) = params.get("WaitUrl") {
        let url = if url.is_empty() {
            String::new()
        } else {
            params::url("WaitUrl", url)?
        };
        attributes.push(format!("waitUrl=\"{}\"", escape(&url)));
        attributes.push(format!(
            "waitMethod=\"{}\"",
            method(params, "WaitMethod")?.keyword()
        ));
    }
    if let Some(label) = params.get("Label") {
        attributes.push(format!("participantLabel=\"{}\"", escape(label)));
    }
    if let Some(url) = params.get("ConferenceStatusCallback") {
        attributes.push(format!(
            "statusCallback=\"{}\"",
            escape(&params::url("ConferenceStatusCallback", url)?)
        ));
        attributes.push(format!(
            "statusCallbackMethod=\"{}\"",
            method(params, "ConferenceStatusCallbackMethod")?.keyword()
        ));
        let events: Vec<&str> = conference_events(params)?
            .iter()
            .map(|e| e.keyword())
            .collect();
        attributes.push(format!("statusCallbackEvent=\"{}\"", events.join(" ")));
    }
    match params.get("ConferenceRecord") {
        None | Some("false" | "do-not-record") => {}
        Some("true" | "record-from-start") => {
            attributes.push("record=\"record-from-start\"".into());
        }
        Some(other) => {
            return Err(ParamError::Invalid {
                name: "ConferenceRecord",
                value: other.to_owned(),
                expected: "true, false, record-from-start or do-not-record",
            }
            .into());
        }
    }
    if let Some(trim) = params.get("ConferenceTrim") {
        let trim = Trim::from_keyword(trim).ok_or_else(|| ParamError::Invalid {
            name: "ConferenceTrim",
            value: trim.to_owned(),
            expected: "trim-silence or do-not-trim",
        })?;
        attributes.push(format!("trim=\"{}\"", trim.keyword()));
    }
    if let Some(url) = params.get("ConferenceRecordingStatusCallback") {
        attributes.push(format!(
            "recordingStatusCallback=\"{}\"",
            escape(&params::url("ConferenceRecordingStatusCallback", url)?)
        ));
    }
    if let Some(max) = params.get("MaxParticipants") {
        let valid = max.parse::<u32>().ok().filter(|n| (2..=250).contains(n));
        let Some(max) = valid else {
            return Err(ParamError::Invalid {
                name: "MaxParticipants",
                value: max.to_owned(),
                expected: "a whole number from 2 to 250",
            }
            .into());
        };
        attributes.push(format!("maxParticipants=\"{max}\""));
    }
    match (boolean(params, "Coaching")?, params.get("CallSidToCoach")) {
        (Some(true) | None, Some(target)) => {
            attributes.push(format!("coach=\"{}\"", escape(target)));
        }
        (Some(true), None) => {
            return Err(ApiError::Conference {
                code: 16002,
                message: "Coaching=true needs CallSidToCoach".into(),
            });
        }
        _ => {}
    }
    if let Some(size) = params.get("JitterBufferSize") {
        attributes.push(format!("jitterBufferSize=\"{}\"", escape(size)));
    }
    Ok(format!(
        "<Response><Dial><Conference {}>{}</Conference></Dial></Response>",
        attributes.join(" "),
        escape(conference)
    ))
}

/// `Conferences/{Sid or FriendlyName}/Participants.json` POST: the participant is listed at
/// once (`ringing`) and called; when it answers it joins the conference (made now if a name
/// has none under way).
pub async fn add(api: &Api, request: &RestRequest, key: &str) -> Result<HttpResponse, ApiError> {
    let call_sid = Sid::new("CA").as_str().to_owned();
    let conference_sid = place(api, key, &request.form, &call_sid, Placement::default()).await?;
    let view = api.rooms.participant(&conference_sid, &call_sid)?;
    let mut body = participant_json(&api.account_sid, &conference_sid, &view);
    body["status"] = json!("queued");
    body["queue_time"] = json!("0");
    Ok(json_response(StatusCode::CREATED, &body))
}

/// What the seeds' session API adds to a participant placed as a REST one is.
#[derive(Debug, Default)]
pub struct Placement {
    pub link: Option<SessionLink>,
    pub observe_force_mute: bool,
    /// `X-` headers for the INVITE.
    pub sip_headers: Vec<(String, String)>,
    /// SRTP required.
    pub secure_media: bool,
}

/// Places call `call_sid` as REST `Participants.json` POST parameters `form` describe, for
/// the conference `key` (its SID, or a name: made when none is under way); the participant
/// is listed at once. Returns the conference's SID.
pub async fn place(
    api: &Api,
    key: &str,
    form: &Params,
    call_sid: &str,
    placement: Placement,
) -> Result<String, ApiError> {
    let document = participant_document(key, form)?;
    let mut form_with_document = form.clone();
    form_with_document.push("Twiml", &document);
    let mut call = new_call(&api.account_sid, &form_with_document)?;
    call.document = DocumentSource::Twiml(document.clone());
    let mut options = crate::call::core::seat_options(
        &crate::markup::parse(&document)
            .ok()
            .and_then(|parsed| conference_of(parsed.document))
            .ok_or_else(|| ParamError::Invalid {
                name: "To",
                value: String::new(),
                expected: "parameters that make a valid conference participant",
            })?,
    );
    options.link = placement.link;
    options.observe_force_mute = placement.observe_force_mute;
    call.sip_headers = placement.sip_headers;
    call.secure_media = placement.secure_media;
    let (conference_sid, mapping) = api.rooms.expect(key, call_sid, &options)?;
    call.sid = Some(call_sid.to_owned());
    call.conference_sid = Some(conference_sid.clone());
    call.routed = Some(mapping);
    if let Err(error) = api.calls.create(call).await {
        api.rooms.left(
            &conference_sid,
            call_sid,
            LeftReason::NotAnswered {
                status: "failed",
                clearing: Clearing::UNEXPECTED,
            },
        );
        return Err(error.into());
    }
    Ok(conference_sid)
}

fn conference_of(document: crate::markup::ast::Document) -> Option<crate::markup::ast::Conference> {
    document.verbs.into_iter().find_map(|verb| match verb {
        crate::markup::ast::Verb::Dial(dial) => match dial.target {
            crate::markup::ast::DialTarget::Conference(conference) => Some(conference),
            _ => None,
        },
        _ => None,
    })
}

/// `Conferences/{Sid}/Recordings.json` GET.
pub async fn recordings(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    find(api, request, sid).await?;
    super::recordings::list_of_conference(api, request, sid).await
}
