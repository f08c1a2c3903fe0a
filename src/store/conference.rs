//! The conference record: one row per conference (Twilio's Conference resource,
//! <https://www.twilio.com/docs/voice/api/conference-resource>), written at each change of its
//! status, plus the filter used to list conferences. Its participants live only as long as
//! the conference (Twilio lists only the participants of a conference under way); the calls
//! themselves keep their own records.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::record::{ListCursor, TimeRange};
use super::recording::UnknownRecordingValue;

/// Twilio's conference `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConferenceStatus {
    /// Made, not started: fewer than two participants, or none that starts it.
    Init,
    InProgress,
    Completed,
}

impl ConferenceStatus {
    pub const ALL: [ConferenceStatus; 3] = [
        ConferenceStatus::Init,
        ConferenceStatus::InProgress,
        ConferenceStatus::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConferenceStatus::Init => "init",
            ConferenceStatus::InProgress => "in-progress",
            ConferenceStatus::Completed => "completed",
        }
    }
}

impl FromStr for ConferenceStatus {
    type Err = UnknownRecordingValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConferenceStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownRecordingValue {
                what: "conference status",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for ConferenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything kept about one conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceRecord {
    /// `CF` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    pub status: ConferenceStatus,
    /// Twilio's `reason_conference_ended` (`last-participant-left`, ...), once completed.
    pub reason_ended: Option<String>,
    /// The participant whose leaving ended it, when one did.
    pub call_sid_ending: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// The node it runs on (stamped by the store that saves it first).
    pub node_id: Option<String>,
}

/// A conference under way on another node of a shared store, and where that node takes SIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConference {
    pub sid: String,
    pub node_id: String,
    /// `sip:HOST:PORT;transport=udp`.
    pub sip_uri: String,
}

impl ConferenceRecord {
    /// A conference made at `now`, not started.
    pub fn new(
        sid: impl Into<String>,
        account_sid: impl Into<String>,
        friendly_name: impl Into<String>,
        now: DateTime<Utc>,
    ) -> ConferenceRecord {
        ConferenceRecord {
            sid: sid.into(),
            account_sid: account_sid.into(),
            friendly_name: friendly_name.into(),
            status: ConferenceStatus::Init,
            reason_ended: None,
            call_sid_ending: None,
            date_created: now,
            date_updated: now,
            node_id: None,
        }
    }
}

/// Which conferences a list returns; every criterion given must hold. Newest first
/// (`date_created` descending, then `sid` descending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceFilter {
    pub account_sid: Option<String>,
    pub friendly_name: Option<String>,
    pub status: Option<ConferenceStatus>,
    pub date_created: TimeRange,
    pub date_updated: TimeRange,
    /// Only conferences after this one in the listing order (the next page).
    pub after: Option<ListCursor>,
    /// Only conferences before this one (the previous page).
    pub before: Option<ListCursor>,
}

impl ListCursor {
    /// The position of `record` in a conference list.
    pub fn after_conference(record: &ConferenceRecord) -> ListCursor {
        ListCursor {
            date_created: record.date_created,
            sid: record.sid.clone(),
        }
    }
}
