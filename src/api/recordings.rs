//! The Recordings resource (<https://www.twilio.com/docs/voice/api/recording>): list, fetch
//! and delete recording records, and serve their audio as WAV with the account's auth.

use hyper::StatusCode;

use super::error::{ApiError, ParamError};
use super::paging::{ListPage, PageRequest};
use super::params::{Params, date_range};
use super::resources::{account_root, recording_json};
use super::{Api, HttpResponse, RestRequest, json_response};
use crate::store::{ListCursor, RecordingFilter, RecordingRecord};

/// The list filters of `Recordings.json` GET, echoed in page URIs in this order.
const LIST_FILTERS: [&str; 5] = [
    "CallSid",
    "ConferenceSid",
    "DateCreated",
    "DateCreated<",
    "DateCreated>",
];

fn filter(
    api: &Api,
    query: &Params,
    call_sid: Option<&str>,
) -> Result<RecordingFilter, ParamError> {
    Ok(RecordingFilter {
        account_sid: Some(api.account_sid.clone()),
        call_sid: call_sid.or(query.get("CallSid")).map(str::to_owned),
        conference_sid: query.get("ConferenceSid").map(str::to_owned),
        date_created: date_range(query, ["DateCreated", "DateCreated<", "DateCreated>"])?,
        after: None,
        before: None,
    })
}

/// `Recordings.json` GET, or `Calls/{CallSid}/Recordings.json` GET when `call_sid` is given.
pub async fn list(
    api: &Api,
    request: &RestRequest,
    call_sid: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let query = &request.query;
    let mut filter = filter(api, query, call_sid)?;
    let page = PageRequest::parse(query, "RE")?;
    filter.after = page.after();
    filter.before = page.before();
    let rows = api
        .store
        .list_recordings(&filter, page.limit(), page.offset())
        .await?;
    let root = account_root(&api.account_sid);
    let path = match call_sid {
        Some(call) => format!("{root}/Calls/{call}/Recordings.json"),
        None => format!("{root}/Recordings.json"),
    };
    let filters = LIST_FILTERS
        .iter()
        .filter(|name| call_sid.is_none() || **name != "CallSid")
        .filter_map(|name| query.get(name).map(|v| (*name, v)))
        .collect();
    let body = ListPage {
        path,
        filters,
        key: "recordings",
        request: &page,
        rows,
    }
    .into_json(ListCursor::after_recording, |r| {
        recording_json(r, &api.public_url)
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// The recording `sid` of this account (and of `call_sid`, when given), or 404.
async fn find(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    call_sid: Option<&str>,
) -> Result<RecordingRecord, ApiError> {
    match api.store.recording(sid).await? {
        Some(r)
            if r.account_sid == api.account_sid
                && call_sid.is_none_or(|call| call == r.call_sid) =>
        {
            Ok(r)
        }
        _ => Err(ApiError::NotFound(request.path.clone())),
    }
}

/// `Recordings/{RecordingSid}.json` GET (also under a call).
pub async fn fetch(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    call_sid: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let recording = find(api, request, sid, call_sid).await?;
    Ok(json_response(
        StatusCode::OK,
        &recording_json(&recording, &api.public_url),
    ))
}

/// `Recordings/{RecordingSid}.json` DELETE (also under a call): the record and its file.
pub async fn delete(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    call_sid: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let recording = find(api, request, sid, call_sid).await?;
    if recording.status.is_live() {
        return Err(ApiError::RecordingLive(recording.sid));
    }
    api.store.delete_recording(&recording.sid).await?;
    if let Some(file) = &recording.file {
        let path = api.data_dir.join(file);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not remove a deleted recording's file");
            }
        }
    }
    Ok(super::no_content())
}

/// `Recordings/{RecordingSid}.wav` (or without extension) GET: the audio.
pub async fn wav(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let recording = find(api, request, sid, None).await?;
    let not_found = || ApiError::NotFound(request.path.clone());
    let file = recording.file.as_ref().ok_or_else(not_found)?;
    let bytes = match tokio::fs::read(api.data_dir.join(file)).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(error) => return Err(ApiError::Media(error)),
    };
    Ok(super::bytes_response(StatusCode::OK, "audio/x-wav", bytes))
}

/// `Recordings/{RecordingSid}.mp3` GET: not available (no MP3 encoder), once the recording is
/// known to exist.
pub async fn mp3(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    find(api, request, sid, None).await?;
    Err(ApiError::Mp3Unavailable)
}
