//! The Notifications resource (<https://www.twilio.com/docs/api/rest/notification>): the
//! problems calls met without ending — a `<Say>` that could not be spoken (13520), a `<Play>`
//! that could not be fetched (11200) — listed for the account or for one call, and fetched
//! one by one. Read-only: the call layer writes them.

use hyper::StatusCode;

use super::error::{ApiError, ParamError};
use super::paging::{ListPage, PageRequest};
use super::params::{Params, date_range, whole};
use super::resources::{account_root, notification_json};
use super::{Api, HttpResponse, RestRequest, json_response};
use crate::store::{ListCursor, LogLevel, NotificationFilter, NotificationRecord};

/// The list filters of `Notifications.json` GET, echoed in page URIs in this order.
const LIST_FILTERS: [&str; 4] = ["Log", "MessageDate", "MessageDate<", "MessageDate>"];

fn filter(
    api: &Api,
    query: &Params,
    call_sid: Option<&str>,
) -> Result<NotificationFilter, ParamError> {
    let level = whole(query, "Log", "0 (errors) or 1 (warnings)")?
        .map(|number| {
            LogLevel::from_number(number).ok_or_else(|| ParamError::Invalid {
                name: "Log",
                value: number.to_string(),
                expected: "0 (errors) or 1 (warnings)",
            })
        })
        .transpose()?;
    Ok(NotificationFilter {
        account_sid: Some(api.account_sid.clone()),
        call_sid: call_sid.map(str::to_owned),
        level,
        message_date: date_range(query, ["MessageDate", "MessageDate<", "MessageDate>"])?,
        after: None,
        before: None,
    })
}

/// `Notifications.json` GET, or `Calls/{CallSid}/Notifications.json` GET when `call_sid` is
/// given.
pub async fn list(
    api: &Api,
    request: &RestRequest,
    call_sid: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let query = &request.query;
    let mut filter = filter(api, query, call_sid)?;
    let page = PageRequest::parse(query, "NO")?;
    filter.after = page.after();
    filter.before = page.before();
    let rows = api
        .store
        .list_notifications(&filter, page.limit(), page.offset())
        .await?;
    let root = account_root(&api.account_sid);
    let path = match call_sid {
        Some(call) => format!("{root}/Calls/{call}/Notifications.json"),
        None => format!("{root}/Notifications.json"),
    };
    let filters = LIST_FILTERS
        .iter()
        .filter_map(|name| query.get(name).map(|v| (*name, v)))
        .collect();
    let body = ListPage {
        path,
        filters,
        key: "notifications",
        request: &page,
        rows,
    }
    .into_json(ListCursor::after_notification, notification_json);
    Ok(json_response(StatusCode::OK, &body))
}

/// `Notifications/{NotificationSid}.json` GET (also under its call): the notification of this
/// account (and of `call_sid`, when given), or 404.
pub async fn fetch(
    api: &Api,
    request: &RestRequest,
    sid: &str,
    call_sid: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let found: Option<NotificationRecord> = api.store.notification(sid).await?;
    match found {
        Some(n)
            if n.account_sid == api.account_sid
                && call_sid.is_none_or(|call| call == n.call_sid) =>
        {
            Ok(json_response(StatusCode::OK, &notification_json(&n)))
        }
        _ => Err(ApiError::NotFound(request.path.clone())),
    }
}
