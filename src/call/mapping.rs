//! The LiveSwitch seed's dynamic routing of inbound calls (its "SIP Connector" webhooks and
//! "Request Signatures"):
//!
//! - header routing: an INVITE carrying `X-Application-Id`, `X-Channel-Id`, optional
//!   `X-User-Id`, `X-Routing-Expires` (Unix seconds) and `X-Routing-Signature` =
//!   base64(HMAC-SHA256(`--signature-secret`, "{applicationId}\n{channelId}\n{expires}")) goes
//!   to that application and channel before any mapping; a bad or expired signature is 403
//!   ([`header_route`], pure);
//! - the mapping webhook (`--mapping-webhook`): a JSON POST `{headers, sdp}` of the INVITE,
//!   answered by `{applicationId, channelId, userId}` ([`ask_mapping_webhook`]);
//! - the cancel webhook (`--cancel-webhook`): a JSON POST `{headers}` when an inbound call is
//!   canceled before it is answered ([`notify_cancel`]);
//! - the outbound routing webhook (`--routing-webhook`): a JSON POST `{applicationId,
//!   channelId, clientId, userId, sipTrunks: [{id, authId, username, domain}]}` (the list left
//!   out with `--routing-webhook-exclude-trunks`) before a call to a number, answered by
//!   `{sipTrunkId}` ([`ask_routing_webhook`]).
//!
//! The webhooks go through the callback client (its timeout, its logging; a 5xx, a failed
//! connection or no answer is tried again after 0.5 s and 1 s, three attempts at most) and carry
//! `X-ApplicationSignature` = base64(HMAC-SHA256(secret, raw body)) when a secret is set. An
//! application (found by SID or FriendlyName) runs its voice settings with `ApplicationId`,
//! `ChannelId` and `UserId` as extra parameters; one with no voice URL puts the call into the
//! conference named by the channel.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::core::RouteQuery;
use super::document::{Source, room_url};
use super::params::RoutedTo;
use super::routing::{MappedVoice, application_voice};
use crate::directory::Resources;
use crate::markup::ast::HttpMethod;
use crate::sip::msg::{Headers, Request};
use crate::trunk::Trunks;
use crate::webhook::signature::{application_signature, routing_signature};
use crate::webhook::{FetchError, WebhookClient};

/// What header routing makes of an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRoute {
    /// No `X-Application-Id` (or no secret to check it with): the usual mapping applies.
    Absent,
    Routed(RoutedTo),
    /// Refused with 403, for this reason.
    Refused(String),
}

/// Checks an INVITE's routing headers against `secret` at `now_unix` (seconds).
pub fn header_route(headers: &Headers, secret: Option<&str>, now_unix: u64) -> HeaderRoute {
    let (Some(application_id), Some(secret)) = (headers.get("X-Application-Id"), secret) else {
        return HeaderRoute::Absent;
    };
    let refuse = |reason: &str| HeaderRoute::Refused(reason.to_owned());
    let Some(channel_id) = headers.get("X-Channel-Id") else {
        return refuse("X-Application-Id without X-Channel-Id");
    };
    let Some(expires) = headers.get("X-Routing-Expires") else {
        return refuse("X-Application-Id without X-Routing-Expires");
    };
    let Some(signature) = headers.get("X-Routing-Signature") else {
        return refuse("X-Application-Id without X-Routing-Signature");
    };
    let expected = routing_signature(secret, application_id, channel_id, expires);
    if !constant_time_eq(expected.as_bytes(), signature.trim().as_bytes()) {
        return refuse("X-Routing-Signature does not match");
    }
    match expires.trim().parse::<u64>() {
        Ok(at) if at > now_unix => HeaderRoute::Routed(RoutedTo {
            application_id: application_id.to_owned(),
            channel_id: channel_id.to_owned(),
            user_id: headers.get("X-User-Id").map(str::to_owned),
        }),
        Ok(_) => refuse("X-Routing-Expires has passed"),
        Err(_) => refuse("X-Routing-Expires is not Unix seconds"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a call could not be mapped dynamically; each has the SIP status it is refused with.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("the mapping webhook failed: {0}")]
    Webhook(#[from] FetchError),
    #[error("the mapping webhook's answer is unusable: {0}")]
    BadAnswer(String),
    #[error("no application has the SID or FriendlyName {0:?}")]
    UnknownApplication(String),
}

impl MappingError {
    /// 480 when the webhook did not answer (in time), 404 for an unknown application, 500
    /// for an error answer or an unusable one.
    pub fn sip_status(&self) -> u16 {
        match self {
            MappingError::Webhook(FetchError::Timeout(_) | FetchError::Connect(_)) => 480,
            MappingError::UnknownApplication(_) => 404,
            MappingError::Webhook(_) | MappingError::BadAnswer(_) => 500,
        }
    }

    /// The Twilio error code the call's record carries.
    pub fn twilio_code(&self) -> u32 {
        match self {
            MappingError::Webhook(error) => error.twilio_code(),
            MappingError::BadAnswer(_) => 12100,
            MappingError::UnknownApplication(_) => 21218,
        }
    }
}

/// The INVITE's headers as the seed's JSON object (a repeated header's values joined by
/// `, `).
fn headers_json(headers: &Headers) -> Value {
    let mut object = Map::new();
    for (name, value) in headers.iter() {
        match object.get_mut(name) {
            Some(Value::String(text)) => {
                text.push_str(", ");
                text.push_str(value);
            }
            _ => {
                object.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    Value::Object(object)
}

/// The signature header for `body`, when a secret is configured.
fn signed(secret: Option<&str>, body: &str) -> Vec<(&'static str, String)> {
    secret
        .map(|secret| {
            (
                "X-ApplicationSignature",
                application_signature(secret, body.as_bytes()),
            )
        })
        .into_iter()
        .collect()
}

/// Asks the mapping webhook where `invite` goes.
pub async fn ask_mapping_webhook(
    client: &WebhookClient,
    url: &str,
    secret: Option<&str>,
    invite: &Request,
    timeout: Duration,
) -> Result<RoutedTo, MappingError> {
    let body = json!({
        "headers": headers_json(&invite.headers),
        "sdp": String::from_utf8_lossy(&invite.body),
    })
    .to_string();
    let answer = client
        .exchange_json_retried(url, &body, &signed(secret, &body), timeout)
        .await?;
    parse_answer(&answer)
}

/// `{applicationId, channelId, userId}`; `applicationId` and `channelId` required.
fn parse_answer(answer: &str) -> Result<RoutedTo, MappingError> {
    let value: Value = serde_json::from_str(answer)
        .map_err(|e| MappingError::BadAnswer(format!("not JSON: {e}")))?;
    let text = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|t| !t.is_empty())
    };
    let application_id =
        text("applicationId").ok_or_else(|| MappingError::BadAnswer("no applicationId".into()))?;
    let channel_id =
        text("channelId").ok_or_else(|| MappingError::BadAnswer("no channelId".into()))?;
    Ok(RoutedTo {
        application_id,
        channel_id,
        user_id: text("userId"),
    })
}

/// The voice settings of the application `routed` names: its own, or the conference named
/// by the channel when it has no voice URL.
pub fn resolve(resources: &Resources, routed: &RoutedTo) -> Result<MappedVoice, MappingError> {
    let app = resources
        .application(&routed.application_id)
        .ok_or_else(|| MappingError::UnknownApplication(routed.application_id.clone()))?;
    let mut voice = application_voice(app);
    if voice.voice.is_none() {
        voice.voice = Some(Source {
            url: room_url(&routed.channel_id),
            method: HttpMethod::Post,
        });
    }
    Ok(voice)
}

/// Asks the routing webhook which trunk carries a call to a number: the `sipTrunkId` it
/// names (whether such a trunk exists is the caller's to check), or why there is none.
pub async fn ask_routing_webhook(
    client: &WebhookClient,
    url: &str,
    secret: Option<&str>,
    query: &RouteQuery,
    trunks: Option<&Trunks>,
    timeout: Duration,
) -> Result<String, String> {
    let mut body = json!({
        "applicationId": query.application_id,
        "channelId": query.channel_id,
        "clientId": query.client_id,
        "userId": query.user_id,
    });
    if let Some(trunks) = trunks {
        let listed: Vec<Value> = trunks
            .entries()
            .iter()
            .map(|entry| {
                let trunk = &entry.trunk;
                json!({
                    "id": trunk.id,
                    "authId": trunk.digest_user(),
                    "username": trunk.username,
                    "domain": trunk.host,
                })
            })
            .collect();
        body["sipTrunks"] = Value::Array(listed);
    }
    let body = body.to_string();
    let answer = client
        .exchange_json_retried(url, &body, &signed(secret, &body), timeout)
        .await
        .map_err(|error| error.to_string())?;
    let value: Value =
        serde_json::from_str(&answer).map_err(|e| format!("the answer is not JSON: {e}"))?;
    value
        .get("sipTrunkId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "the answer has no sipTrunkId".to_owned())
}

/// Tells the cancel webhook that the call `invite` started was canceled before its answer.
pub async fn notify_cancel(
    client: &WebhookClient,
    url: &str,
    secret: Option<&str>,
    invite: &Request,
    timeout: Duration,
) {
    let body = json!({ "headers": headers_json(&invite.headers) }).to_string();
    if let Err(error) = client
        .exchange_json_retried(url, &body, &signed(secret, &body), timeout)
        .await
    {
        tracing::info!(%url, %error, "the cancel webhook failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Message, parse};

    fn headers(extra: &str) -> Headers {
        let text = format!(
            "INVITE sip:x@callml SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:x@callml>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Request(request) => request.headers,
            Message::Response(_) => panic!(),
        }
    }

    fn signed_headers(app: &str, channel: &str, expires: u64, secret: &str) -> Headers {
        let signature = routing_signature(secret, app, channel, &expires.to_string());
        headers(&format!(
            "X-Application-Id: {app}\r\nX-Channel-Id: {channel}\r\nX-User-Id: u1\r\n\
             X-Routing-Expires: {expires}\r\nX-Routing-Signature: {signature}\r\n"
        ))
    }

    #[test]
    fn signed_routing_headers_route_and_bad_ones_are_refused() {
        let good = signed_headers("my-app", "581233", 2_000, "s3cret");
        assert_eq!(
            header_route(&good, Some("s3cret"), 1_000),
            HeaderRoute::Routed(RoutedTo {
                application_id: "my-app".into(),
                channel_id: "581233".into(),
                user_id: Some("u1".into()),
            })
        );
        assert!(matches!(
            header_route(&good, Some("s3cret"), 2_000),
            HeaderRoute::Refused(reason) if reason.contains("passed")
        ));
        assert!(matches!(
            header_route(&good, Some("other"), 1_000),
            HeaderRoute::Refused(reason) if reason.contains("does not match")
        ));
        assert_eq!(header_route(&good, None, 1_000), HeaderRoute::Absent);
        assert_eq!(
            header_route(&headers(""), Some("s3cret"), 1_000),
            HeaderRoute::Absent
        );
        assert!(matches!(
            header_route(&headers("X-Application-Id: a\r\n"), Some("s"), 1),
            HeaderRoute::Refused(_)
        ));
    }

    #[test]
    fn answers_need_an_application_and_a_channel() {
        let routed = parse_answer(r#"{"applicationId":"my-app","channelId":"7"}"#).unwrap();
        assert_eq!(routed.user_id, None);
        for bad in [
            "{}",
            r#"{"channelId":"7"}"#,
            r#"{"applicationId":"a"}"#,
            "<xml/>",
        ] {
            let error = parse_answer(bad).unwrap_err();
            assert_eq!(error.sip_status(), 500, "{bad}");
        }
        assert_eq!(
            MappingError::Webhook(FetchError::Timeout(Duration::from_secs(1))).sip_status(),
            480
        );
        assert_eq!(
            MappingError::Webhook(FetchError::HttpStatus(500)).sip_status(),
            500
        );
    }

    #[test]
    fn headers_travel_as_one_object() {
        let json = headers_json(&headers("X-A: 1\r\nX-A: 2\r\n"));
        assert_eq!(json["X-A"], "1, 2");
        assert_eq!(json["Call-ID"], "c");
    }
}
