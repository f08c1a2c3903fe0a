//! The seeds' SIP call monitoring (Vonage/OpenTok SIP Interconnect, "Monitoring call
//! progress"): a participant dialled through the session API
//! ([`crate::api::sessions`]) is linked to its session, and each step of its call is
//! reported as a JSON event to the room callback URL (`--room-callback`):
//!
//! ```text
//! dial ─▶ callCreated, callUpdated DIALING ─▶ 18x: RINGING ─▶ joined: ACTIVE
//!   ─▶ its phone holds (sendonly, inactive, port 0): ON_HOLD ─▶ resumes: ACTIVE
//!   ─▶ force mute (observeForceMute): muteForced
//!   ─▶ it leaves, its call ends or the room ends: callUpdated HANGUP, callDestroyed with
//!      reason_code/reason_message (a SIP status for a failed handshake, 700 normal,
//!      703 unexpected, 704 media timeout, 705 maximum duration)
//! ```

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::call::ending::Clearing;

/// A participant's place in a seed session: what its monitoring events carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLink {
    /// The application (project) the session belongs to: the path's `appId`.
    pub project_id: String,
    /// The session (the room's friendly name).
    pub session_id: String,
    /// The SIP call's ID (its call SID).
    pub id: String,
    /// The participant's connection in the session.
    pub connection_id: String,
    /// The participant's stream in the session.
    pub stream_id: String,
    pub created_at: DateTime<Utc>,
}

/// A `callUpdated` state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Dialing,
    Ringing,
    OnHold,
    Active,
    Hangup,
}

impl CallState {
    fn as_str(self) -> &'static str {
        match self {
            CallState::Dialing => "DIALING",
            CallState::Ringing => "RINGING",
            CallState::OnHold => "ON_HOLD",
            CallState::Active => "ACTIVE",
            CallState::Hangup => "HANGUP",
        }
    }
}

/// One monitoring event of a linked participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorEvent {
    Created,
    Updated(CallState),
    Destroyed(Clearing),
    MuteForced,
}

/// The JSON body of `event` for `link` at `at`.
pub fn body(link: &SessionLink, event: MonitorEvent, at: DateTime<Utc>) -> String {
    let mut body = json!({
        "sessionId": link.session_id,
        "projectId": link.project_id,
        "timestamp": at.timestamp_millis(),
        "call": {
            "id": link.id,
            "connectionId": link.connection_id,
            "createdAt": link.created_at.timestamp_millis(),
        },
    });
    let fields: &[(&str, Value)] = &match event {
        MonitorEvent::Created => vec![("event", json!("callCreated"))],
        MonitorEvent::Updated(state) => vec![
            ("event", json!("callUpdated")),
            ("state", json!(state.as_str())),
        ],
        MonitorEvent::Destroyed(clearing) => vec![
            ("event", json!("callDestroyed")),
            ("reason_code", json!(clearing.code.to_string())),
            ("reason_message", json!(clearing.message)),
        ],
        MonitorEvent::MuteForced => vec![("event", json!("muteForced"))],
    };
    for (name, value) in fields {
        body[*name] = value.clone();
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn link() -> SessionLink {
        SessionLink {
            project_id: "123456".into(),
            session_id: "2_MX4xMzExMjU3MX5".into(),
            id: "CA00000000000000000000000000000001".into(),
            connection_id: "e9f8c166-6c67-440d-994a-04fb6dfed007".into(),
            stream_id: "482bce73-f882-40fd-8ca5-cb74ff416036".into(),
            created_at: Utc.timestamp_millis_opt(1_470_257_688_143).unwrap(),
        }
    }

    #[test]
    fn events_have_the_seeds_fields() {
        let at = Utc.timestamp_millis_opt(1_470_257_688_309).unwrap();
        let created: Value =
            serde_json::from_str(&body(&link(), MonitorEvent::Created, at)).unwrap();
        assert_eq!(
            created,
            json!({
                "sessionId": "2_MX4xMzExMjU3MX5",
                "projectId": "123456",
                "event": "callCreated",
                "timestamp": 1_470_257_688_309_i64,
                "call": {
                    "id": "CA00000000000000000000000000000001",
                    "connectionId": "e9f8c166-6c67-440d-994a-04fb6dfed007",
                    "createdAt": 1_470_257_688_143_i64,
                }
            })
        );
        let updated: Value =
            serde_json::from_str(&body(&link(), MonitorEvent::Updated(CallState::OnHold), at))
                .unwrap();
        assert_eq!(updated["event"], "callUpdated");
        assert_eq!(updated["state"], "ON_HOLD");
        let destroyed: Value = serde_json::from_str(&body(
            &link(),
            MonitorEvent::Destroyed(Clearing::sip(400)),
            at,
        ))
        .unwrap();
        assert_eq!(destroyed["reason_code"], "400");
        assert_eq!(destroyed["reason_message"], "Bad Request");
    }
}
