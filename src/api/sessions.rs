//! The seeds' own REST shape for SIP calls dialled into rooms (Vonage Video API and OpenTok
//! "SIP Interconnect"), a thin layer over the conferences of [`crate::call::rooms`]: a
//! session ID names a conference, a dialled SIP call is one of its participants (placed as
//! REST `Participants.json` POST places one), and its progress is reported to
//! `--room-callback` ([`crate::call::rooms::monitor`]).
//!
//! ```text
//! POST   /v2/project/{appId}/dial                                   {sessionId, token, sip}
//!        ─▶ 200 {id, connectionId, streamId}
//! DELETE /v2/project/{appId}/session/{sessionId}/connection/{connectionId}   ─▶ 204 (BYE)
//! POST   .../session/{sessionId}/connection/{connectionId}/dtmf     {digits}  ─▶ 200
//! POST   .../session/{sessionId}/dtmf                               {digits}  ─▶ 200 (all)
//! POST   .../session/{sessionId}/mute            {active, excludedStreamIds}  ─▶ 200
//! POST   .../session/{sessionId}/stream/{streamId}/mute                       ─▶ 200
//! ```
//! (`play-dtmf` is accepted for `dtmf`, as OpenTok names it.) Requests carry a JSON Web
//! Token signed HS256 with the auth token ([`super::jwt`]) in `Authorization: Bearer` or
//! `X-OPENTOK-AUTH`, issued (`iss` or `application_id`) for the path's app ID or the account
//! SID; anything else is 401. Errors are `{"code": status, "message"}`.

use chrono::Utc;
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use serde_json::{Map, Value, json};

use super::conferences::{Placement, place};
use super::error::ApiError;
use super::params::Params;
use super::routes::{Matched, Route};
use super::{Api, HttpResponse, json_response, jwt, no_content};
use crate::call::rooms::RoomError;
use crate::call::rooms::monitor::SessionLink;
use crate::ids::Sid;

/// The seeds' SIP gateway ends a call after six hours.
const MAX_CALL_SECONDS: &str = "21600";
/// The caller the seeds show when `sip.from` is not given.
const DEFAULT_FROM: &str = "+00000000";
/// Longest session ID taken (a conference's friendly name).
const MAX_SESSION_ID: usize = 128;
/// Most keys in one DTMF request.
const MAX_DIGITS: usize = 256;

/// A refusal: the HTTP status and a message.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal {
            status: error.status(),
            message: error.to_string(),
        }
    }
}

impl From<RoomError> for Refusal {
    fn from(error: RoomError) -> Refusal {
        ApiError::from(error).into()
    }
}

/// Answers one request to a session route.
pub async fn handle(api: &Api, matched: &Matched, request: Request<Incoming>) -> HttpResponse {
    match answer(api, matched, request).await {
        Ok((status, None)) => {
            let mut response = no_content();
            *response.status_mut() = status;
            response
        }
        Ok((status, Some(body))) => json_response(status, &body),
        Err(refusal) => json_response(
            refusal.status,
            &json!({ "code": refusal.status.as_u16(), "message": refusal.message }),
        ),
    }
}

async fn answer(
    api: &Api,
    matched: &Matched,
    request: Request<Incoming>,
) -> Result<(StatusCode, Option<Value>), Refusal> {
    let app_id = matched.params.app_id.clone().unwrap_or_default();
    authenticate(api, &app_id, &request)?;
    if !matched.spec.methods.contains(request.method()) {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{} is not allowed here", request.method()),
        });
    }
    let body = if request.method() == Method::POST {
        read_json(api, request.into_body()).await?
    } else {
        Value::Null
    };
    let session_id = matched.params.session_id.as_deref().unwrap_or_default();
    let conference = || {
        api.rooms
            .sid_of(session_id)
            .ok_or_else(|| Refusal::not_found(format!("no session {session_id:?} under way")))
    };
    let linked = |conference: &str, key: &str| {
        api.rooms
            .linked_call(conference, key)
            .map_err(|_| Refusal::not_found(format!("no SIP call {key:?} in the session")))
    };
    match matched.spec.route {
        Route::SessionDial => dial(api, &app_id, &body).await,
        Route::SessionConnection => {
            let conference = conference()?;
            let connection = matched.params.connection_id.as_deref().unwrap_or_default();
            let call = linked(&conference, connection)?;
            api.rooms.kick(&conference, &call)?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        Route::SessionConnectionDtmf => {
            let digits = digits(&body)?;
            let conference = conference()?;
            let connection = matched.params.connection_id.as_deref().unwrap_or_default();
            let call = linked(&conference, connection)?;
            api.rooms.send_digits(&conference, Some(&call), &digits)?;
            Ok((StatusCode::OK, None))
        }
        Route::SessionDtmf => {
            let digits = digits(&body)?;
            let conference = conference()?;
            api.rooms.send_digits(&conference, None, &digits)?;
            Ok((StatusCode::OK, None))
        }
        Route::SessionMute => {
            let conference = conference()?;
            let active = match body.get("active") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(active)) => *active,
                Some(_) => return Err(Refusal::bad("active must be true or false")),
            };
            let excluded = match body.get("excludedStreamIds") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(ids)) => ids
                    .iter()
                    .map(|id| id.as_str().ok_or(()))
                    .collect::<Result<Vec<_>, ()>>()
                    .map_err(|()| Refusal::bad("excludedStreamIds must be stream ID strings"))?
                    .into_iter()
                    .filter_map(|id| api.rooms.linked_call(&conference, id).ok())
                    .collect(),
                Some(_) => return Err(Refusal::bad("excludedStreamIds must be an array")),
            };
            let changed = api.rooms.force_mute(&conference, active, &excluded)?;
            Ok((
                StatusCode::OK,
                Some(
                    json!({ "sessionId": session_id, "active": active, "changed": changed.len() }),
                ),
            ))
        }
        Route::SessionStreamMute => {
            let conference = conference()?;
            let stream = matched.params.stream_id.as_deref().unwrap_or_default();
            let call = linked(&conference, stream)?;
            let others: Vec<String> = api
                .rooms
                .participants(&conference)?
                .into_iter()
                .map(|p| p.call_sid)
                .filter(|sid| *sid != call)
                .collect();
            let changed = api.rooms.force_mute(&conference, true, &others)?;
            Ok((
                StatusCode::OK,
                Some(
                    json!({ "sessionId": session_id, "streamId": stream, "muted": !changed.is_empty() }),
                ),
            ))
        }
        _ => Err(Refusal::not_found("no such session resource")),
    }
}

/// Checks the request's token: signed with the auth token, unexpired, issued for `app_id`
/// or the account.
fn authenticate(api: &Api, app_id: &str, request: &Request<Incoming>) -> Result<(), Refusal> {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    let token = bearer.or_else(|| {
        headers
            .get("x-opentok-auth")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    });
    let unauthorized = |message: String| Refusal {
        status: StatusCode::UNAUTHORIZED,
        message,
    };
    let Some(token) = token else {
        return Err(unauthorized(
            "a JWT is required in Authorization: Bearer or X-OPENTOK-AUTH".into(),
        ));
    };
    let claims = jwt::verify(token, api.auth_token.as_bytes(), Utc::now().timestamp())
        .map_err(|error| unauthorized(error.to_string()))?;
    if claims.names(app_id) || claims.names(&api.account_sid) {
        Ok(())
    } else {
        Err(unauthorized(format!(
            "the token was not issued for {app_id:?} (iss or application_id)"
        )))
    }
}

async fn read_json(api: &Api, body: Incoming) -> Result<Value, Refusal> {
    let bytes = api.read_body(body).await.map_err(|error| Refusal {
        status: error.status(),
        message: error.to_string(),
    })?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| Refusal::bad(format!("the body is not JSON: {error}")))
}

/// `POST /v2/project/{appId}/dial`.
async fn dial(
    api: &Api,
    app_id: &str,
    body: &Value,
) -> Result<(StatusCode, Option<Value>), Refusal> {
    let request = DialRequest::parse(body)?;
    let call_sid = Sid::new("CA").as_str().to_owned();
    let link = SessionLink {
        project_id: app_id.to_owned(),
        session_id: request.session_id.clone(),
        id: call_sid.clone(),
        connection_id: uuid(),
        stream_id: uuid(),
        created_at: Utc::now(),
    };
    let mut form = Params::default();
    form.push("To", &request.uri);
    form.push("From", &request.from);
    form.push("Beep", "false");
    form.push("WaitUrl", "");
    form.push("TimeLimit", MAX_CALL_SECONDS);
    if let Some((username, password)) = &request.auth {
        form.push("SipAuthUsername", username);
        form.push("SipAuthPassword", password);
    }
    let response = json!({
        "id": call_sid,
        "connectionId": link.connection_id,
        "streamId": link.stream_id,
    });
    let placement = Placement {
        link: Some(link),
        observe_force_mute: request.observe_force_mute,
        sip_headers: request.headers,
        secure_media: request.secure,
    };
    place(api, &request.session_id, &form, &call_sid, placement).await?;
    Ok((StatusCode::OK, Some(response)))
}

/// A dial request's body, checked.
#[derive(Debug, PartialEq)]
struct DialRequest {
    session_id: String,
    uri: String,
    from: String,
    headers: Vec<(String, String)>,
    auth: Option<(String, String)>,
    secure: bool,
    observe_force_mute: bool,
}

impl DialRequest {
    fn parse(body: &Value) -> Result<DialRequest, Refusal> {
        let session_id = text(body, "sessionId")?
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Refusal::bad("sessionId is required"))?;
        if session_id.len() > MAX_SESSION_ID || session_id.chars().any(char::is_control) {
            return Err(Refusal::bad(format!(
                "sessionId must be 1 to {MAX_SESSION_ID} printable characters"
            )));
        }
        if text(body, "token")?.is_none() {
            return Err(Refusal::bad("token is required"));
        }
        let sip = match body.get("sip") {
            Some(Value::Object(sip)) => sip,
            _ => return Err(Refusal::bad("sip is required: {\"uri\": \"sip:...\"}")),
        };
        let sip = Value::Object(sip.clone());
        let uri = text(&sip, "uri")?.ok_or_else(|| Refusal::bad("sip.uri is required"))?;
        let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" || uri.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Refusal::bad(format!(
                "sip.uri {uri:?} is not a sip: or sips: URI"
            )));
        }
        if flag(&sip, "video")? {
            return Err(Refusal::bad(
                "sip.video is not supported: callml rooms carry audio only",
            ));
        }
        let from = match text(&sip, "from")? {
            None => DEFAULT_FROM.to_owned(),
            Some(from) if from.chars().any(|c| c.is_control() || "<>\" ".contains(c)) => {
                return Err(Refusal::bad(format!("sip.from {from:?} is not user@host")));
            }
            Some(from) if from.contains('@') && !from.starts_with("sip") => format!("sip:{from}"),
            Some(from) => from.to_owned(),
        };
        let headers = match sip.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(headers)) => custom_headers(headers)?,
            Some(_) => return Err(Refusal::bad("sip.headers must be an object")),
        };
        let auth = match sip.get("auth") {
            None | Some(Value::Null) => None,
            Some(auth) => {
                let username = text(auth, "username")?;
                let password = text(auth, "password")?;
                match (username, password) {
                    (Some(username), Some(password))
                        if !username
                            .chars()
                            .chain(password.chars())
                            .any(char::is_control) =>
                    {
                        Some((username.to_owned(), password.to_owned()))
                    }
                    (Some(_), Some(_)) => {
                        return Err(Refusal::bad(
                            "sip.auth: username and password must be one line each",
                        ));
                    }
                    _ => {
                        return Err(Refusal::bad("sip.auth needs both username and password"));
                    }
                }
            }
        };
        if body.get("streams").is_some_and(|s| !s.is_array()) {
            return Err(Refusal::bad("streams must be an array of stream IDs"));
        }
        Ok(DialRequest {
            session_id: session_id.to_owned(),
            uri: uri.to_owned(),
            from,
            headers,
            auth,
            secure: flag(&sip, "secure")?,
            observe_force_mute: flag(&sip, "observeForceMute")?,
        })
    }
}

/// The `X-` headers of `sip.headers`, each a token name and a one-line value.
fn custom_headers(headers: &Map<String, Value>) -> Result<Vec<(String, String)>, Refusal> {
    headers
        .iter()
        .map(|(name, value)| {
            let token = name.len() > 2
                && name[..2].eq_ignore_ascii_case("X-")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if !token {
                return Err(Refusal::bad(format!(
                    "sip.headers: {name:?} is not an X- header name"
                )));
            }
            match value {
                Value::String(value) if !value.chars().any(char::is_control) => {
                    Ok((name.clone(), value.clone()))
                }
                _ => Err(Refusal::bad(format!(
                    "sip.headers: the value of {name} must be a one-line string"
                ))),
            }
        })
        .collect()
}

/// The `digits` of a DTMF request: `0-9`, `*`, `#`, and `p` for a 500 ms pause.
fn digits(body: &Value) -> Result<String, Refusal> {
    let digits = text(body, "digits")?
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Refusal::bad("digits is required"))?;
    let valid = digits.len() <= MAX_DIGITS
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || "*#p".contains(c));
    if !valid {
        return Err(Refusal::bad(format!(
            "digits {digits:?}: up to {MAX_DIGITS} of 0-9, *, # and p (pause)"
        )));
    }
    Ok(digits.replace('p', "w"))
}

/// The string field `name` of `object`, if present.
fn text<'a>(object: &'a Value, name: &str) -> Result<Option<&'a str>, Refusal> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Refusal::bad(format!("{name} must be a string"))),
    }
}

/// The boolean field `name` of `object` (false when absent).
fn flag(object: &Value, name: &str) -> Result<bool, Refusal> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(Refusal::bad(format!("{name} must be true or false"))),
    }
}

/// A random UUID (version 4, RFC 9562 §5.4), as the seeds' connection and stream IDs are.
fn uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: Value) -> String {
        DialRequest::parse(&body).unwrap_err().message
    }

    #[test]
    fn the_seeds_dial_example_parses() {
        let body = json!({
            "sessionId": "2_MX4xMzExMjU3MX5-MTQ3MDI1NzY3OTkxOH45QXRr",
            "token": "A valid token",
            "sip": {
                "uri": "sip:user@sip.partner.com;transport=tls",
                "from": "from@example.com",
                "headers": { "X-headerKey": "headerValue" },
                "auth": { "username": "username", "password": "password" },
                "secure": true,
                "video": false,
                "observeForceMute": true
            }
        });
        let request = DialRequest::parse(&body).unwrap();
        assert_eq!(
            request,
            DialRequest {
                session_id: "2_MX4xMzExMjU3MX5-MTQ3MDI1NzY3OTkxOH45QXRr".into(),
                uri: "sip:user@sip.partner.com;transport=tls".into(),
                from: "sip:from@example.com".into(),
                headers: vec![("X-headerKey".into(), "headerValue".into())],
                auth: Some(("username".into(), "password".into())),
                secure: true,
                observe_force_mute: true,
            }
        );
        let minimal = json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b"}});
        let request = DialRequest::parse(&minimal).unwrap();
        assert_eq!(request.from, DEFAULT_FROM);
        assert!(!request.secure && request.headers.is_empty() && request.auth.is_none());
    }

    #[test]
    fn bad_dial_bodies_say_what_is_wrong() {
        let sip = json!({"uri": "sip:a@b"});
        assert!(refused(json!({"token": "t", "sip": sip})).contains("sessionId"));
        assert!(refused(json!({"sessionId": "", "token": "t", "sip": sip})).contains("sessionId"));
        assert!(refused(json!({"sessionId": "s", "sip": sip})).contains("token"));
        assert!(refused(json!({"sessionId": "s", "token": "t"})).contains("sip"));
        assert!(
            refused(json!({"sessionId": "s", "token": "t", "sip": {"from": "a@b"}}))
                .contains("sip.uri")
        );
        assert!(
            refused(json!({"sessionId": "s", "token": "t", "sip": {"uri": "tel:+1555"}}))
                .contains("not a sip:")
        );
        assert!(
            refused(
                json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b", "video": true}})
            )
            .contains("audio only")
        );
        let injected = json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b",
            "headers": {"X-A": "1\r\nBYE sip:x SIP/2.0"}}});
        assert!(refused(injected).contains("one-line"));
        let standard = json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b",
            "headers": {"Contact": "sip:evil@x"}}});
        assert!(refused(standard).contains("X- header"));
        let half_auth = json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b",
            "auth": {"username": "u"}}});
        assert!(refused(half_auth).contains("username and password"));
        let injected_auth = json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b",
            "auth": {"username": "u\r\nX-Evil: 1", "password": "p"}}});
        assert!(refused(injected_auth).contains("one line"));
        assert!(
            refused(
                json!({"sessionId": "s", "token": "t", "sip": {"uri": "sip:a@b", "secure": "yes"}})
            )
            .contains("secure")
        );
    }

    #[test]
    fn digits_take_pauses_and_refuse_the_rest() {
        assert_eq!(digits(&json!({"digits": "1p2#*"})).unwrap(), "1w2#*");
        assert!(digits(&json!({})).is_err());
        assert!(digits(&json!({"digits": "12a"})).is_err());
        assert!(digits(&json!({"digits": "1".repeat(MAX_DIGITS + 1)})).is_err());
    }

    #[test]
    fn connection_ids_are_version_4_uuids() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(id, uuid());
    }
}
