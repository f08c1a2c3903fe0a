//! The notification record: one row per problem a call met without ending — a `<Say>` that
//! could not be spoken, a `<Play>` that could not be fetched — as Twilio's debugger keeps it
//! (the Notifications resource, <https://www.twilio.com/docs/api/rest/notification>), plus the
//! filter used to list them.

use std::fmt;

use chrono::{DateTime, Utc};

use super::record::{ListCursor, TimeRange};
use crate::config::HttpMethod;

/// Twilio's `log` level of a notification: `0` an error, `1` a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    Error,
    Warning,
}

impl LogLevel {
    /// The number Twilio shows (`log`) and filters on (`Log`).
    pub fn number(self) -> u8 {
        match self {
            LogLevel::Error => 0,
            LogLevel::Warning => 1,
        }
    }

    pub fn from_number(number: u64) -> Option<LogLevel> {
        match number {
            0 => Some(LogLevel::Error),
            1 => Some(LogLevel::Warning),
            _ => None,
        }
    }

    /// The level Twilio's error dictionary gives the codes callml reports on calls: a warning
    /// for 13520 "Say: Invalid text" and 12200 "Schema validation warning", an error for the
    /// others (11xxx HTTP failures, 13420 "Play: Invalid Content-Type", 12400 "Internal
    /// Failure").
    pub fn of_code(code: u32) -> LogLevel {
        match code {
            13520 | 12200 => LogLevel::Warning,
            _ => LogLevel::Error,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// One problem a call met. Written once, when it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// `NO` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub call_sid: String,
    pub level: LogLevel,
    /// The Twilio error code (twilio.com/docs/api/errors).
    pub error_code: u32,
    /// What happened, for a person to read.
    pub message_text: String,
    /// When it happened.
    pub message_date: DateTime<Utc>,
    /// The document that was running, and how it was requested.
    pub request_url: Option<String>,
    pub request_method: Option<HttpMethod>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// Which notifications a list returns; every criterion given must hold. The list is ordered
/// newest first (`date_created` descending, then `sid` descending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    pub account_sid: Option<String>,
    pub call_sid: Option<String>,
    pub level: Option<LogLevel>,
    /// Notifications whose `message_date` lies in this range.
    pub message_date: TimeRange,
    /// Only notifications after this position in the listing order.
    pub after: Option<ListCursor>,
    /// Only notifications before this position (the page that ends just before it).
    pub before: Option<ListCursor>,
}

impl ListCursor {
    /// The position of `record`: a list with this cursor starts with the notification after it.
    pub fn after_notification(record: &NotificationRecord) -> ListCursor {
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
    fn levels_are_twilio_numbers() {
        for level in [LogLevel::Error, LogLevel::Warning] {
            assert_eq!(LogLevel::from_number(level.number().into()), Some(level));
        }
        assert_eq!(LogLevel::from_number(2), None);
        assert_eq!(LogLevel::Warning.to_string(), "1");
        assert_eq!(LogLevel::of_code(13520), LogLevel::Warning);
        assert_eq!(LogLevel::of_code(11200), LogLevel::Error);
    }
}
