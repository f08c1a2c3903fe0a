//! Resource JSON in Twilio's shapes (<https://www.twilio.com/docs/voice/api/call-resource>,
//! `.../recording`, `.../api/rest/notification`, `.../iam/api/account`): snake_case fields, RFC 2822 dates, durations as
//! strings, `uri` relative to the API root, `subresource_uris` for what callml serves.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::routes::API_VERSION;
use crate::config::HttpMethod;
use crate::markup::ast::Keyword;
use crate::store::{CallRecord, Direction, NotificationRecord, RecordingRecord};

/// Twilio's date format: `Tue, 31 Aug 2010 20:36:28 +0000`.
pub fn rfc2822(time: DateTime<Utc>) -> String {
    time.to_rfc2822()
}

fn rfc2822_opt(time: Option<DateTime<Utc>>) -> Value {
    time.map_or(Value::Null, |t| Value::String(rfc2822(t)))
}

/// `/2010-04-01/Accounts/{sid}`.
pub fn account_root(account_sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account_sid}")
}

pub fn call_uri(call: &CallRecord) -> String {
    format!(
        "{}/Calls/{}.json",
        account_root(&call.account_sid),
        call.sid
    )
}

pub fn call_json(call: &CallRecord) -> Value {
    let root = account_root(&call.account_sid);
    // Time spent queued before the call was placed (Twilio: milliseconds, as a string).
    let queue_time = match (call.direction, call.start_time) {
        (Direction::OutboundApi, Some(start)) => (start - call.date_created)
            .num_milliseconds()
            .max(0)
            .to_string(),
        _ => "0".to_owned(),
    };
    json!({
        "sid": call.sid,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "parent_call_sid": call.parent_call_sid,
        "account_sid": call.account_sid,
        "to": call.to,
        "to_formatted": call.to,
        "from": call.from,
        "from_formatted": call.from,
        "phone_number_sid": null,
        "status": call.status.as_str(),
        "start_time": rfc2822_opt(call.start_time),
        "end_time": rfc2822_opt(call.end_time),
        "duration": call.duration.map(|d| d.to_string()),
        "price": null,
        "price_unit": "USD",
        "direction": call.direction.as_str(),
        "answered_by": null,
        "annotation": null,
        "api_version": API_VERSION,
        "forwarded_from": call.forwarded_from,
        "group_sid": null,
        "caller_name": call.caller_name,
        "queue_time": queue_time,
        "trunk_sid": null,
        "uri": call_uri(call),
        "subresource_uris": {
            "recordings": format!("{root}/Calls/{}/Recordings.json", call.sid),
            "notifications": format!("{root}/Calls/{}/Notifications.json", call.sid),
            "events": format!("{root}/Calls/{}/Events.json", call.sid),
            "sip": format!("{root}/Calls/{}/Sip.json", call.sid),
        },
    })
}

/// `/2010-04-01/Accounts/{sid}/Recordings/{sid}` (the media; `.json` is the resource).
pub fn recording_base(recording: &RecordingRecord) -> String {
    format!(
        "{}/Recordings/{}",
        account_root(&recording.account_sid),
        recording.sid
    )
}

/// The recording resource; `public_url` is the base of its absolute `media_url`.
pub fn recording_json(recording: &RecordingRecord, public_url: &str) -> Value {
    let base = recording_base(recording);
    json!({
        "account_sid": recording.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": recording.conference_sid,
        "date_created": rfc2822(recording.date_created),
        "date_updated": rfc2822(recording.date_updated),
        "start_time": rfc2822(recording.start_time),
        // Twilio shows -1 until the recording is complete.
        "duration": recording.duration.map_or_else(|| "-1".to_owned(), |d| d.to_string()),
        "sid": recording.sid,
        "price": null,
        "price_unit": "USD",
        "status": recording.status.as_str(),
        "channels": recording.channels,
        "source": recording.source.as_str(),
        "error_code": recording.error_code,
        "uri": format!("{base}.json"),
        "encryption_details": null,
        "subresource_uris": {},
        "media_url": format!("{}{base}", public_url.trim_end_matches('/')),
    })
}

/// A notification, as Twilio shows it in lists and alone: `error_code` and `log` are strings;
/// the request and response details of Twilio's instance view (`request_variables`,
/// `response_headers`, `response_body`) are empty, since callml keeps none.
pub fn notification_json(notification: &NotificationRecord) -> Value {
    json!({
        "account_sid": notification.account_sid,
        "api_version": API_VERSION,
        "call_sid": notification.call_sid,
        "date_created": rfc2822(notification.date_created),
        "date_updated": rfc2822(notification.date_updated),
        "error_code": notification.error_code.to_string(),
        "log": notification.level.to_string(),
        "message_date": rfc2822(notification.message_date),
        "message_text": notification.message_text,
        "more_info": format!("https://www.twilio.com/docs/errors/{}", notification.error_code),
        "request_method": notification.request_method.map(HttpMethod::keyword),
        "request_url": notification.request_url,
        "request_variables": "",
        "response_body": "",
        "response_headers": "",
        "sid": notification.sid,
        "uri": format!(
            "{}/Calls/{}/Notifications/{}.json",
            account_root(&notification.account_sid),
            notification.call_sid,
            notification.sid
        ),
    })
}

/// The one account a callml serves.
pub fn account_json(account_sid: &str, auth_token: &str, created: DateTime<Utc>) -> Value {
    let root = account_root(account_sid);
    json!({
        "auth_token": auth_token,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "friendly_name": "callml",
        "owner_account_sid": account_sid,
        "sid": account_sid,
        "status": "active",
        "subresource_uris": {
            "calls": format!("{root}/Calls.json"),
            "notifications": format!("{root}/Notifications.json"),
            "recordings": format!("{root}/Recordings.json"),
        },
        "type": "Full",
        "uri": format!("{root}.json"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallStatus, RecordingSource};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_283_286_988 + seconds, 0).unwrap()
    }

    #[test]
    fn dates_are_rfc_2822_like_twilio() {
        assert_eq!(rfc2822(at(0)), "Tue, 31 Aug 2010 20:36:28 +0000");
    }

    #[test]
    fn a_call_renders_with_twilio_field_names_and_types() {
        let mut call = CallRecord::new(
            "CA1",
            "AC1",
            "+15550001111",
            "sip:bob@example.com",
            Direction::OutboundApi,
            at(0),
        );
        call.status = CallStatus::Completed;
        call.start_time = Some(at(2));
        call.end_time = Some(at(17));
        call.duration = Some(15);
        let body = call_json(&call);
        assert_eq!(body["sid"], "CA1");
        assert_eq!(body["from"], "+15550001111");
        assert_eq!(body["to"], "sip:bob@example.com");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["direction"], "outbound-api");
        assert_eq!(body["duration"], "15");
        assert_eq!(body["queue_time"], "2000");
        assert_eq!(body["start_time"], "Tue, 31 Aug 2010 20:36:30 +0000");
        assert_eq!(body["price"], Value::Null);
        assert_eq!(body["api_version"], "2010-04-01");
        assert_eq!(body["uri"], "/2010-04-01/Accounts/AC1/Calls/CA1.json");
        assert_eq!(
            body["subresource_uris"]["recordings"],
            "/2010-04-01/Accounts/AC1/Calls/CA1/Recordings.json"
        );
    }

    #[test]
    fn a_recording_in_progress_has_duration_minus_one_and_an_absolute_media_url() {
        let recording =
            RecordingRecord::new("RE1", "AC1", "CA1", RecordingSource::OutboundApi, 2, at(0));
        let body = recording_json(&recording, "http://127.0.0.1:8080/");
        assert_eq!(body["duration"], "-1");
        assert_eq!(body["channels"], 2);
        assert_eq!(body["source"], "OutboundAPI");
        assert_eq!(body["status"], "in-progress");
        assert_eq!(body["uri"], "/2010-04-01/Accounts/AC1/Recordings/RE1.json");
        assert_eq!(
            body["media_url"],
            "http://127.0.0.1:8080/2010-04-01/Accounts/AC1/Recordings/RE1"
        );
    }

    #[test]
    fn a_notification_renders_with_twilio_field_names_and_string_codes() {
        let notification = NotificationRecord {
            sid: "NO1".into(),
            account_sid: "AC1".into(),
            call_sid: "CA1".into(),
            level: crate::store::LogLevel::Warning,
            error_code: 13520,
            message_text: "text to speech needs espeak-ng".into(),
            message_date: at(1),
            request_url: Some("https://example.com/voice".into()),
            request_method: Some(HttpMethod::Post),
            date_created: at(2),
            date_updated: at(2),
        };
        let body = notification_json(&notification);
        assert_eq!(body["error_code"], "13520");
        assert_eq!(body["log"], "1");
        assert_eq!(body["message_date"], "Tue, 31 Aug 2010 20:36:29 +0000");
        assert_eq!(body["date_created"], "Tue, 31 Aug 2010 20:36:30 +0000");
        assert_eq!(
            body["more_info"],
            "https://www.twilio.com/docs/errors/13520"
        );
        assert_eq!(body["request_method"], "POST");
        assert_eq!(body["request_url"], "https://example.com/voice");
        assert_eq!(body["api_version"], "2010-04-01");
        assert_eq!(
            body["uri"],
            "/2010-04-01/Accounts/AC1/Calls/CA1/Notifications/NO1.json"
        );
    }
}
