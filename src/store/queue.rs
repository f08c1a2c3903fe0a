//! The rows of call queues (Twilio's Queue resource, <https://www.twilio.com/docs/voice/api/queue-resource>):
//! one per queue, so queues made through the REST API outlive a restart, and one per
//! membership — a call's stay in a queue, from `<Enqueue>` to the moment it left and why
//! (`QueueResult`) — so a restart loses no record of who waited.

use chrono::{DateTime, Utc};

/// A queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    /// `QU` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    pub max_size: u32,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// One call's stay in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMemberRecord {
    pub queue_sid: String,
    pub call_sid: String,
    pub date_enqueued: DateTime<Utc>,
    /// When it left; `None` while it waits.
    pub date_left: Option<DateTime<Utc>>,
    /// Why it left: Twilio's `QueueResult` (`bridged`, `leave`, `hangup`, `redirected`, ...).
    pub result: Option<String>,
    /// Seconds it waited.
    pub wait_time: Option<u32>,
}
