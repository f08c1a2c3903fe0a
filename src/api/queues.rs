//! The Queue and Member resources (<https://www.twilio.com/docs/voice/api/queue-resource>,
//! `.../member-resource`): create, list, fetch, update and delete queues; list the calls
//! waiting in one (front first) and dequeue one — the front (`Members/Front.json`) or a given
//! call — into a new document. The queues themselves are the call layer's
//! ([`Queues`](crate::call::queues::Queues)).

use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ParamError};
use super::params::{self, Params, method, whole};
use super::resources::{account_root, rfc2822};
use super::{Api, HttpResponse, RestRequest, json_response, no_content};
use crate::call::control::DocumentSource;
use crate::call::queues::book::{
    BookError, DEFAULT_MAX_SIZE, MAX_MAX_SIZE, MemberInfo, QueueInfo, Which,
};

fn queue_uri(info: &QueueInfo) -> String {
    format!(
        "{}/Queues/{}",
        account_root(&info.record.account_sid),
        info.record.sid
    )
}

pub fn queue_json(info: &QueueInfo) -> Value {
    let base = queue_uri(info);
    json!({
        "account_sid": info.record.account_sid,
        "average_wait_time": info.average_wait_time,
        "current_size": info.current_size,
        "date_created": rfc2822(info.record.date_created),
        "date_updated": rfc2822(info.record.date_updated),
        "friendly_name": info.record.friendly_name,
        "max_size": info.record.max_size,
        "sid": info.record.sid,
        "uri": format!("{base}.json"),
        "subresource_uris": { "members": format!("{base}/Members.json") },
    })
}

fn member_json(account_sid: &str, member: &MemberInfo) -> Value {
    json!({
        "call_sid": member.call_sid,
        "date_enqueued": rfc2822(member.date_enqueued),
        "position": member.position,
        "queue_sid": member.queue_sid,
        "uri": format!(
            "{}/Queues/{}/Members/{}.json",
            account_root(account_sid),
            member.queue_sid,
            member.call_sid
        ),
        "wait_time": member.wait_time,
    })
}

impl From<BookError> for ApiError {
    fn from(error: BookError) -> ApiError {
        match error {
            BookError::NoSuchQueue(sid) => ApiError::NotFound(sid),
            BookError::NotEmpty(_) => ApiError::QueueNotEmpty(error.to_string()),
            BookError::NameTaken(_) | BookError::BadMaxSize(_) | BookError::BadName => {
                ApiError::Param(ParamError::Invalid {
                    name: match error {
                        BookError::BadMaxSize(_) => "MaxSize",
                        _ => "FriendlyName",
                    },
                    value: error.to_string(),
                    expected: "a queue name of 1 to 64 characters used by no other queue, and a MaxSize from 1 to 5000",
                })
            }
        }
    }
}

fn max_size(params: &Params) -> Result<Option<u32>, ParamError> {
    whole(params, "MaxSize", "a whole number from 1 to 5000")?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_MAX_SIZE).contains(n))
                .ok_or(ParamError::Invalid {
                    name: "MaxSize",
                    value: n.to_string(),
                    expected: "a whole number from 1 to 5000",
                })
        })
        .transpose()
}

/// A list of JSON rows, paged by `Page` and `PageSize` in the order given.
fn page_of(
    request: &RestRequest,
    path: String,
    key: &str,
    rows: Vec<Value>,
) -> Result<HttpResponse, ApiError> {
    let query = &request.query;
    let page_size = whole(query, "PageSize", "a whole number from 1 to 1000")?
        .map_or(50, |n| usize::try_from(n).unwrap_or(1000).clamp(1, 1000));
    let page = whole(query, "Page", "a whole number from 0")?
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let start = page.saturating_mul(page_size);
    let total = rows.len();
    let slice: Vec<Value> = rows.into_iter().skip(start).take(page_size).collect();
    let uri = |page: usize| format!("{path}?PageSize={page_size}&Page={page}");
    let next = (start + page_size < total).then(|| uri(page + 1));
    let previous = (page > 0).then(|| uri(page - 1));
    Ok(json_response(
        StatusCode::OK,
        &json!({
            key: slice,
            "end": (start + slice.len()).saturating_sub(1),
            "first_page_uri": uri(0),
            "next_page_uri": next,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": previous,
            "start": start,
            "uri": uri(page),
        }),
    ))
}

/// `Queues.json` POST: `FriendlyName`, `MaxSize` (default 100).
pub fn create(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let name = request
        .form
        .get("FriendlyName")
        .ok_or(ParamError::Invalid {
            name: "FriendlyName",
            value: String::new(),
            expected: "a queue name of 1 to 64 characters",
        })?;
    let size = max_size(&request.form)?.unwrap_or(DEFAULT_MAX_SIZE);
    let info = api.queues.create(name, size)?;
    Ok(json_response(StatusCode::CREATED, &queue_json(&info)))
}

/// `Queues.json` GET.
pub fn list(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let rows = api.queues.list().iter().map(queue_json).collect();
    let path = format!("{}/Queues.json", account_root(&api.account_sid));
    page_of(request, path, "queues", rows)
}

fn find(api: &Api, request: &RestRequest, sid: &str) -> Result<QueueInfo, ApiError> {
    api.queues
        .info(sid)
        .filter(|info| info.record.account_sid == api.account_sid)
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `Queues/{QueueSid}.json` GET.
pub fn fetch(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &queue_json(&find(api, request, sid)?),
    ))
}

/// `Queues/{QueueSid}.json` POST: `FriendlyName`, `MaxSize`.
pub fn update(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    find(api, request, sid)?;
    let info = api.queues.update(
        sid,
        request.form.get("FriendlyName"),
        max_size(&request.form)?,
    )?;
    Ok(json_response(StatusCode::OK, &queue_json(&info)))
}

/// `Queues/{QueueSid}.json` DELETE: an empty queue.
pub fn delete(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    find(api, request, sid)?;
    api.queues.delete(sid)?;
    Ok(no_content())
}

/// `Queues/{QueueSid}/Members.json` GET: front first.
pub fn members(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    find(api, request, sid)?;
    let rows = api
        .queues
        .members(sid)
        .unwrap_or_default()
        .iter()
        .map(|member| member_json(&api.account_sid, member))
        .collect();
    let path = format!(
        "{}/Queues/{sid}/Members.json",
        account_root(&api.account_sid)
    );
    page_of(request, path, "queue_members", rows)
}

fn which(call: &str) -> Which {
    if call == "Front" {
        Which::Front
    } else {
        Which::Call(call.to_owned())
    }
}

/// `Queues/{QueueSid}/Members/{CallSid|Front}.json` GET.
pub fn member(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    call: &str,
) -> Result<HttpResponse, ApiError> {
    find(api, request, sid)?;
    let members = api.queues.members(sid).unwrap_or_default();
    let found = match which(call) {
        Which::Front => members.first(),
        Which::Call(call) => members.iter().find(|m| m.call_sid == call),
    };
    let member = found.ok_or_else(|| ApiError::NotFound(request.path.clone()))?;
    Ok(json_response(
        StatusCode::OK,
        &member_json(&api.account_sid, member),
    ))
}

/// `Queues/{QueueSid}/Members/{CallSid|Front}.json` POST `Url` (and `Method`): the member
/// leaves the queue for that document.
pub fn dequeue(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    call: &str,
) -> Result<HttpResponse, ApiError> {
    find(api, request, sid)?;
    let url = request.form.get("Url").ok_or(ParamError::MissingDocument)?;
    let document = DocumentSource::Url {
        url: params::url("Url", url)?,
        method: method(&request.form, "Method")?,
    };
    let member = api
        .queues
        .dequeue_to(sid, &which(call), document)
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))?;
    Ok(json_response(
        StatusCode::OK,
        &member_json(&api.account_sid, &member),
    ))
}
