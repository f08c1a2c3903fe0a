//! The recording record: one row per recording of a call, with the audio file it points to,
//! plus the filter used to list recordings.
//!
//! Status and source values are Twilio's strings for the Recording resource
//! (<https://www.twilio.com/docs/voice/api/recording>); they are what the store writes and what
//! the REST API shows.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::record::{ListCursor, TimeRange};
use crate::markup::ast::HttpMethod;

/// Twilio's recording `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingStatus {
    InProgress,
    Paused,
    Stopped,
    Processing,
    Completed,
    Absent,
    Failed,
}

impl RecordingStatus {
    pub const ALL: [RecordingStatus; 7] = [
        RecordingStatus::InProgress,
        RecordingStatus::Paused,
        RecordingStatus::Stopped,
        RecordingStatus::Processing,
        RecordingStatus::Completed,
        RecordingStatus::Absent,
        RecordingStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::InProgress => "in-progress",
            RecordingStatus::Paused => "paused",
            RecordingStatus::Stopped => "stopped",
            RecordingStatus::Processing => "processing",
            RecordingStatus::Completed => "completed",
            RecordingStatus::Absent => "absent",
            RecordingStatus::Failed => "failed",
        }
    }

    /// True while audio may still be written to the file.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            RecordingStatus::InProgress | RecordingStatus::Paused | RecordingStatus::Processing
        )
    }
}

/// Twilio's recording `source` values: what started the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingSource {
    DialVerb,
    Conference,
    OutboundApi,
    Trunking,
    RecordVerb,
    StartCallRecordingApi,
    StartConferenceRecordingApi,
}

impl RecordingSource {
    pub const ALL: [RecordingSource; 7] = [
        RecordingSource::DialVerb,
        RecordingSource::Conference,
        RecordingSource::OutboundApi,
        RecordingSource::Trunking,
        RecordingSource::RecordVerb,
        RecordingSource::StartCallRecordingApi,
        RecordingSource::StartConferenceRecordingApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingSource::DialVerb => "DialVerb",
            RecordingSource::Conference => "Conference",
            RecordingSource::OutboundApi => "OutboundAPI",
            RecordingSource::Trunking => "Trunking",
            RecordingSource::RecordVerb => "RecordVerb",
            RecordingSource::StartCallRecordingApi => "StartCallRecordingAPI",
            RecordingSource::StartConferenceRecordingApi => "StartConferenceRecordingAPI",
        }
    }
}

/// A recording status or source string that is not one of Twilio's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a recording {what}")]
pub struct UnknownRecordingValue {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for RecordingStatus {
    type Err = UnknownRecordingValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordingStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownRecordingValue {
                what: "status",
                value: s.to_owned(),
            })
    }
}

impl FromStr for RecordingSource {
    type Err = UnknownRecordingValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordingSource::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownRecordingValue {
                what: "source",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for RecordingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RecordingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything kept about one recording. Whoever records a call saves the whole record at each
/// change (started, completed, failed); the store keeps the last version saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    /// `RE` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    /// The call recorded; empty for a conference's recording.
    pub call_sid: String,
    /// The conference recorded (`CF` + 32 hex), for a `<Conference record>` recording.
    pub conference_sid: Option<String>,
    pub status: RecordingStatus,
    /// 1 (mono) or 2 (dual: one channel per party).
    pub channels: u8,
    /// Whole seconds of audio, once known.
    pub duration: Option<u32>,
    pub start_time: DateTime<Utc>,
    pub source: RecordingSource,
    /// The WAV file, relative to the data directory (e.g. `recordings/RE....wav`).
    pub file: Option<PathBuf>,
    /// A Twilio error code, when the recording failed.
    pub error_code: Option<u32>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// Where its status callbacks go, kept so that a recording finished by crash recovery
    /// still reports.
    pub status_callback: Option<RecordingCallbackTarget>,
}

/// A recording's `recordingStatusCallback`, `recordingStatusCallbackMethod` and
/// `recordingStatusCallbackEvent`, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingCallbackTarget {
    pub url: String,
    pub method: HttpMethod,
    /// The events asked for, space-separated (`in-progress completed absent`).
    pub events: String,
}

impl RecordingCallbackTarget {
    /// Whether `event` (`completed`, `absent`, ...) was asked for.
    pub fn wants(&self, event: &str) -> bool {
        self.events.split_whitespace().any(|e| e == event)
    }
}

impl RecordingRecord {
    /// An `in-progress` recording of `call_sid` started at `now`, written to
    /// `recordings/<sid>.wav` in the data directory.
    pub fn new(
        sid: impl Into<String>,
        account_sid: impl Into<String>,
        call_sid: impl Into<String>,
        source: RecordingSource,
        channels: u8,
        now: DateTime<Utc>,
    ) -> RecordingRecord {
        let sid = sid.into();
        let file = PathBuf::from("recordings").join(format!("{sid}.wav"));
        RecordingRecord {
            sid,
            account_sid: account_sid.into(),
            call_sid: call_sid.into(),
            conference_sid: None,
            status: RecordingStatus::InProgress,
            channels,
            duration: None,
            start_time: now,
            source,
            file: Some(file),
            error_code: None,
            date_created: now,
            date_updated: now,
            status_callback: None,
        }
    }
}

/// Which recordings a list returns; every criterion given must hold. The list is ordered newest
/// first (`date_created` descending, then `sid` descending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    pub account_sid: Option<String>,
    pub call_sid: Option<String>,
    pub conference_sid: Option<String>,
    /// Recordings whose `date_created` lies in this range.
    pub date_created: TimeRange,
    /// Only recordings after this position in the listing order.
    pub after: Option<ListCursor>,
    /// Only recordings before this position in the listing order (the list is still returned
    /// newest first: the page that ends just before the cursor).
    pub before: Option<ListCursor>,
}

impl ListCursor {
    /// The position of `record`: a list with this cursor starts with the recording after it.
    pub fn after_recording(record: &RecordingRecord) -> ListCursor {
        ListCursor {
            date_created: record.date_created,
            sid: record.sid.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_sources_round_trip_through_twilio_strings() {
        for status in RecordingStatus::ALL {
            assert_eq!(status.as_str().parse::<RecordingStatus>(), Ok(status));
        }
        for source in RecordingSource::ALL {
            assert_eq!(source.as_str().parse::<RecordingSource>(), Ok(source));
        }
        assert_eq!(
            "OutboundAPI".parse::<RecordingSource>(),
            Ok(RecordingSource::OutboundApi)
        );
        assert!("done".parse::<RecordingStatus>().is_err());
    }
}
