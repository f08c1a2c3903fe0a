//! What callml captured of a call (see [`crate::capture`]):
//!
//! - `Calls/{CallSid}/Events.json` — Twilio's Call Events resource
//!   (<https://www.twilio.com/docs/voice/api/call-event-resource>): each request callml made to
//!   the application about this call (documents and status callbacks) with the answer, as
//!   `{"request": {url, method, parameters}, "response": {date_created, request_duration,
//!   response_code, content_type, response_body}}`, oldest first; parameter names in
//!   snake_case as Twilio shows them.
//! - `Calls/{CallSid}/Sip.json` — callml's own: every SIP message of the call and of its child
//!   legs (the ladder), oldest first, digest credentials masked.
//! - `Calls/{CallSid}/Timeline.json` — callml's own: the rest of the capture of the call and of
//!   its child legs (webhooks, each verb started and ended, each leg's media facts), oldest
//!   first.
//!
//! Both page with `PageSize` (default 50, at most 1000) and `Page` (from 0).

use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::params::whole;
use super::resources::{account_root, rfc2822};
use super::{Api, HttpResponse, RestRequest, json_response};
use crate::store::{CallFilter, CallRecord, TimeRange};

/// The highest page number read (deeper pages are as empty as this one).
const MAX_PAGE: usize = 1_000_000;
/// Child legs read with a call, at most.
const MAX_CHILD_LEGS: usize = 1000;

/// `Page` and `PageSize` of a capture list.
struct Paging {
    page: usize,
    page_size: usize,
}

impl Paging {
    fn parse(request: &RestRequest) -> Result<Paging, ApiError> {
        let page_size = whole(&request.query, "PageSize", "a whole number from 1 to 1000")?.map_or(
            DEFAULT_PAGE_SIZE,
            |n| {
                usize::try_from(n)
                    .unwrap_or(MAX_PAGE_SIZE)
                    .clamp(1, MAX_PAGE_SIZE)
            },
        );
        let page = whole(&request.query, "Page", "a whole number from 0")?
            .map_or(0, |n| usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE));
        Ok(Paging { page, page_size })
    }

    fn offset(&self) -> usize {
        self.page.saturating_mul(self.page_size)
    }

    /// The list body: `key` holding `rows`, and Twilio's paging fields.
    fn body(&self, path: &str, key: &str, rows: Vec<Value>, more: bool) -> Value {
        let page_uri = |page: usize| format!("{path}?PageSize={}&Page={page}", self.page_size);
        let start = self.offset();
        let count = rows.len();
        json!({
            key: rows,
            "first_page_uri": page_uri(0),
            "next_page_uri": if more { Value::String(page_uri(self.page + 1)) } else { Value::Null },
            "previous_page_uri": if self.page > 0 { Value::String(page_uri(self.page - 1)) } else { Value::Null },
            "page": self.page,
            "page_size": self.page_size,
            "start": start,
            "end": if count == 0 { start } else { start + count - 1 },
            "uri": page_uri(self.page),
        })
    }
}

/// The call, or 404 when it is not one of this account's.
async fn call_of_account(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<CallRecord, ApiError> {
    match api.store.call(sid).await? {
        Some(call) if call.account_sid == api.account_sid => Ok(call),
        _ => Err(ApiError::NotFound(request.path.clone())),
    }
}

/// `CallSid` to `call_sid`, `SipHeader_X-Foo` to `sip_header_x-foo`: Twilio's spelling of
/// request parameters in Call Events.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            previous_lower = false;
        } else {
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c);
        }
    }
    out
}

/// One captured webhook as a Twilio Call Event.
fn twilio_event(data: &Value, at: chrono::DateTime<chrono::Utc>) -> Value {
    let request = &data["request"];
    let parameters: serde_json::Map<String, Value> = request["parameters"]
        .as_object()
        .map(|params| {
            params
                .iter()
                .map(|(name, value)| (snake_case(name), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let response = &data["response"];
    json!({
        "request": {
            "method": request["method"],
            "url": request["url"],
            "parameters": parameters,
        },
        "response": {
            "date_created": rfc2822(at),
            "request_duration": response["request_duration"],
            "response_code": response["response_code"],
            "content_type": response["content_type"],
            "response_body": response["response_body"],
        },
    })
}

/// `Calls/{CallSid}/Events.json` GET.
pub async fn events(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let call = call_of_account(api, request, sid).await?;
    let paging = Paging::parse(request)?;
    // Verbs and media facts are callml's own; Twilio's resource lists the webhooks only.
    let rows = api
        .store
        .call_events(vec![call.sid.clone()], usize::MAX >> 1, 0)
        .await?;
    let webhooks: Vec<_> = rows
        .iter()
        .filter(|row| matches!(row.kind.as_str(), "document" | "callback"))
        .collect();
    let page: Vec<Value> = webhooks
        .iter()
        .skip(paging.offset())
        .take(paging.page_size)
        .filter_map(|row| {
            serde_json::from_str::<Value>(&row.data)
                .ok()
                .map(|data| twilio_event(&data, row.at))
        })
        .collect();
    let more = webhooks.len() > paging.offset() + page.len();
    let path = format!(
        "{}/Calls/{}/Events.json",
        account_root(&api.account_sid),
        call.sid
    );
    Ok(json_response(
        StatusCode::OK,
        &paging.body(&path, "events", page, more),
    ))
}

/// The call and its child legs.
async fn family(api: &Api, call: CallRecord) -> Result<Vec<CallRecord>, ApiError> {
    let filter = CallFilter {
        account_sid: Some(api.account_sid.clone()),
        parent_call_sid: Some(call.sid.clone()),
        start_time: TimeRange::default(),
        ..CallFilter::default()
    };
    let mut legs = api.store.list_calls(&filter, MAX_CHILD_LEGS, 0).await?;
    legs.reverse();
    legs.insert(0, call);
    Ok(legs)
}

/// `Calls/{CallSid}/Sip.json` GET: the SIP messages of the call and its child legs.
pub async fn sip(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let call = call_of_account(api, request, sid).await?;
    let paging = Paging::parse(request)?;
    let legs = family(api, call).await?;
    let call_ids: Vec<String> = legs
        .iter()
        .filter_map(|leg| leg.sip_call_id.clone())
        .collect();
    let rows = api
        .store
        .sip_messages(call_ids, paging.page_size + 1, paging.offset())
        .await?;
    let more = rows.len() > paging.page_size;
    let messages: Vec<Value> = rows
        .into_iter()
        .take(paging.page_size)
        .map(|m| {
            let leg = legs
                .iter()
                .find(|leg| leg.sip_call_id.as_deref() == Some(m.sip_call_id.as_str()))
                .map(|leg| leg.sid.clone());
            json!({
                "call_sid": leg,
                "sip_call_id": m.sip_call_id,
                "timestamp": m.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "direction": m.direction,
                "transport": m.transport,
                "local_address": m.local,
                "remote_address": m.remote,
                "first_line": m.first_line,
                "message": m.text,
            })
        })
        .collect();
    let path = format!("{}/Calls/{sid}/Sip.json", account_root(&api.account_sid));
    Ok(json_response(
        StatusCode::OK,
        &paging.body(&path, "messages", messages, more),
    ))
}

/// `Calls/{CallSid}/Timeline.json` GET: everything captured of the call and its child legs
/// but the SIP messages — webhooks, verbs started and ended, each leg's media facts — oldest
/// first, as stored.
pub async fn timeline(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let call = call_of_account(api, request, sid).await?;
    let paging = Paging::parse(request)?;
    let sids: Vec<String> = family(api, call)
        .await?
        .into_iter()
        .map(|leg| leg.sid)
        .collect();
    let rows = api
        .store
        .call_events(sids, paging.page_size + 1, paging.offset())
        .await?;
    let more = rows.len() > paging.page_size;
    let entries: Vec<Value> = rows
        .into_iter()
        .take(paging.page_size)
        .map(|row| {
            json!({
                "call_sid": row.call_sid,
                "timestamp": row.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "kind": row.kind,
                "data": serde_json::from_str::<Value>(&row.data).unwrap_or(Value::Null),
            })
        })
        .collect();
    let path = format!(
        "{}/Calls/{sid}/Timeline.json",
        account_root(&api.account_sid)
    );
    Ok(json_response(
        StatusCode::OK,
        &paging.body(&path, "entries", entries, more),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_are_spelled_as_twilio_shows_them() {
        assert_eq!(snake_case("CallSid"), "call_sid");
        assert_eq!(snake_case("ApiVersion"), "api_version");
        assert_eq!(snake_case("SipCallId"), "sip_call_id");
        assert_eq!(snake_case("Caller"), "caller");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }
}
