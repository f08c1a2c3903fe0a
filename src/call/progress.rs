//! Status callbacks: the events a customer can ask for (`statusCallbackEvent`), where they go,
//! and how call durations are counted for them.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::markup::ast::HttpMethod;

/// A status callback event (`statusCallbackEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProgressEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

/// Where status callbacks go and which events they want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackTarget {
    pub url: String,
    pub method: HttpMethod,
    pub events: BTreeSet<ProgressEvent>,
}

/// The seconds from `from` to `to`, rounded to the nearest whole second (a one-second
/// `<Pause>` measured a hair short still lasted one second).
pub fn whole_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
    let millis = (to - from).num_milliseconds().max(0);
    u32::try_from((millis + 500) / 1000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_to_the_nearest_second() {
        let start = Utc::now();
        let at = |ms: i64| start + chrono::Duration::milliseconds(ms);
        assert_eq!(whole_seconds(start, at(999)), 1);
        assert_eq!(whole_seconds(start, at(1499)), 1);
        assert_eq!(whole_seconds(start, at(1500)), 2);
        assert_eq!(whole_seconds(start, at(200)), 0);
        assert_eq!(whole_seconds(at(5), start), 0, "never negative");
    }
}
