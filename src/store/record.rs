//! The call record: one row per call leg, as the call task sees it, plus the filter used to
//! list records.
//!
//! Status and direction values are Twilio's strings (`CONTRACT.md`, "Standard request
//! parameters"); they are what the store writes and what the REST API shows.

use std::fmt;
use std::ops::Bound;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::config::HttpMethod;

/// Where a call came from: Twilio's `Direction` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// An INVITE that reached callml.
    Inbound,
    /// A call created through the REST API (`Calls.json` POST).
    OutboundApi,
    /// A child leg placed by `<Dial>`.
    OutboundDial,
}

impl Direction {
    pub const ALL: [Direction; 3] = [
        Direction::Inbound,
        Direction::OutboundApi,
        Direction::OutboundDial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
            Direction::OutboundDial => "outbound-dial",
        }
    }
}

/// A direction string that is not one of Twilio's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a call direction (inbound, outbound-api, outbound-dial)")]
pub struct UnknownDirection(pub String);

impl FromStr for Direction {
    type Err = UnknownDirection;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDirection(s.to_owned()))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Twilio's `CallStatus` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 8] = [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
    ];

    /// The statuses of a call that has not ended yet.
    pub const LIVE: [CallStatus; 3] = [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    /// True while the call has not reached a final status.
    pub fn is_live(self) -> bool {
        CallStatus::LIVE.contains(&self)
    }
}

/// A status string that is not one of Twilio's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a call status (queued, ringing, in-progress, completed, busy, failed, no-answer, canceled)"
)]
pub struct UnknownCallStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownCallStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCallStatus(s.to_owned()))
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything kept about one call leg. The call task owns its record and saves the whole of it
/// at every state change; the store keeps the last version saved.
///
/// Times keep nanosecond precision (stored as `i64` nanoseconds since the epoch, so they must lie
/// between the years 1677 and 2262).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// `CA` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    /// The call whose `<Dial>` placed this leg.
    pub parent_call_sid: Option<String>,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub status: CallStatus,
    /// When the call started ringing (inbound: INVITE received; outbound: INVITE sent).
    pub start_time: Option<DateTime<Utc>>,
    pub answer_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Whole seconds from answer to end.
    pub duration: Option<u32>,
    pub sip_call_id: Option<String>,
    /// The final SIP response code of the INVITE, when there was one.
    pub sip_response_code: Option<u16>,
    /// A Twilio error code (e.g. 11200) explaining a failure.
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
    pub forwarded_from: Option<String>,
    pub caller_name: Option<String>,
    /// The document URL the call runs (the last one fetched).
    pub url: Option<String>,
    pub method: Option<HttpMethod>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// While the call is live: the `completed` status callback it owes, so that a call left
    /// live by a process that died still gets its final callback at the next start (cleared
    /// once the call ends).
    pub pending_callback: Option<PendingCallback>,
    /// The callml node that runs the call (`--node-id`); the store stamps its own when a
    /// record without one is saved.
    pub node_id: Option<String>,
}

/// A status callback a live call owes: where it goes and the call's standard parameters
/// (form-encoded; `CallStatus` is filled in when it is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCallback {
    pub url: String,
    pub method: HttpMethod,
    pub params: String,
}

impl CallRecord {
    /// A `queued` call created at `now`, every optional field empty.
    pub fn new(
        sid: impl Into<String>,
        account_sid: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        direction: Direction,
        now: DateTime<Utc>,
    ) -> CallRecord {
        CallRecord {
            sid: sid.into(),
            account_sid: account_sid.into(),
            parent_call_sid: None,
            from: from.into(),
            to: to.into(),
            direction,
            status: CallStatus::Queued,
            start_time: None,
            answer_time: None,
            end_time: None,
            duration: None,
            sip_call_id: None,
            sip_response_code: None,
            error_code: None,
            error_message: None,
            forwarded_from: None,
            pending_callback: None,
            node_id: None,
            caller_name: None,
            url: None,
            method: None,
            date_created: now,
            date_updated: now,
        }
    }
}

/// A position in a listing order (newest `date_created` first, ties by `sid` descending):
/// lists that start after (or end before) a cursor page through a million rows without `OFFSET`
/// scans. Calls and recordings are both listed in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub date_created: DateTime<Utc>,
    pub sid: String,
}

/// The cursor of call lists.
pub type CallCursor = ListCursor;

impl ListCursor {
    /// The position of `record`: a list with this cursor starts with the record after it.
    pub fn after(record: &CallRecord) -> CallCursor {
        ListCursor {
            date_created: record.date_created,
            sid: record.sid.clone(),
        }
    }
}

/// A range of instants; both ends open by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Bound<DateTime<Utc>>,
    pub end: Bound<DateTime<Utc>>,
}

impl Default for TimeRange {
    fn default() -> Self {
        TimeRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }
}

/// Which calls a list returns; every criterion given must hold. The list is ordered newest
/// first (`date_created` descending, then `sid` descending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub account_sid: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<CallStatus>,
    pub parent_call_sid: Option<String>,
    /// Calls whose `start_time` lies in this range (calls without a start time never match a
    /// bounded range).
    pub start_time: TimeRange,
    /// Only calls after this position in the listing order.
    pub after: Option<CallCursor>,
    /// Only calls before this position in the listing order (the list is still returned newest
    /// first: the page that ends just before the cursor).
    pub before: Option<CallCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_directions_round_trip_through_twilio_strings() {
        for status in CallStatus::ALL {
            assert_eq!(status.as_str().parse::<CallStatus>(), Ok(status));
        }
        for direction in Direction::ALL {
            assert_eq!(direction.as_str().parse::<Direction>(), Ok(direction));
        }
        assert_eq!(
            "in-progress".parse::<CallStatus>(),
            Ok(CallStatus::InProgress)
        );
        assert_eq!(
            "outbound-dial".parse::<Direction>(),
            Ok(Direction::OutboundDial)
        );
        assert!("InProgress".parse::<CallStatus>().is_err());
        assert!("outbound".parse::<Direction>().is_err());
    }

    #[test]
    fn only_queued_ringing_and_in_progress_are_live() {
        let live: Vec<_> = CallStatus::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .collect();
        assert_eq!(
            live,
            [
                CallStatus::Queued,
                CallStatus::Ringing,
                CallStatus::InProgress
            ]
        );
    }
}
