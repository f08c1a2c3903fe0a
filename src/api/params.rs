//! Request parameters: form-encoded bodies and query strings as Twilio sends them (repeated
//! keys such as `StatusCallbackEvent` kept in order), and the typed readers shared by the
//! handlers (URLs, methods, integers, booleans, dates).

use std::ops::Bound;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};

use super::error::ParamError;
use crate::markup::ast::{HttpMethod, Keyword};
use crate::store::TimeRange;

/// Name/value pairs in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (a body or a query string); invalid
    /// percent-encoded UTF-8 is replaced, as form parsers do.
    pub fn parse(text: &str) -> Params {
        Params(serde_urlencoded::from_str(text).unwrap_or_default())
    }

    /// Adds `value` for `name`, after the others.
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// The first value of `name`, if given and not empty.
    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value of `name`, unless absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.given(name).filter(|v| !v.is_empty())
    }

    /// The value of `name` when given, even empty (an empty one may clear a setting).
    pub fn given(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, each also split on spaces (Twilio accepts both
    /// `Event=a&Event=b` and `Event=a b`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split_whitespace())
            .collect()
    }
}

/// An absolute `http`/`https` URL with a host.
pub fn url(name: &'static str, value: &str) -> Result<String, ParamError> {
    let valid = reqwest::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    match valid {
        Some(_) => Ok(value.to_owned()),
        None => Err(ParamError::InvalidUrl {
            name,
            value: value.to_owned(),
        }),
    }
}

/// `GET` or `POST` (any case); `POST` when absent.
pub fn method(params: &Params, name: &'static str) -> Result<HttpMethod, ParamError> {
    match params.get(name) {
        None => Ok(HttpMethod::Post),
        Some(value) => HttpMethod::from_keyword(value).ok_or_else(|| ParamError::InvalidMethod {
            name,
            value: value.to_owned(),
        }),
    }
}

/// A whole number in `0..=u64::MAX`, when given.
pub fn whole(
    params: &Params,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<u64>, ParamError> {
    params
        .get(name)
        .map(|value| {
            value.trim().parse().map_err(|_| ParamError::Invalid {
                name,
                value: value.to_owned(),
                expected,
            })
        })
        .transpose()
}

/// `true` or `false` (any case), when given.
pub fn boolean(params: &Params, name: &'static str) -> Result<Option<bool>, ParamError> {
    params
        .get(name)
        .map(|value| match value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ParamError::Invalid {
                name,
                value: value.to_owned(),
                expected: "true or false",
            }),
        })
        .transpose()
}

/// A date filter value: a day (`2024-05-01`, meaning the whole UTC day) or an instant
/// (`2024-05-01T10:00:00Z`, RFC 3339, or RFC 2822).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Day(NaiveDate),
    Instant(DateTime<Utc>),
}

impl When {
    /// Parses `value`; a date outside the years 1678 to 2261 (what the store can hold, as
    /// nanoseconds since 1970) is refused like one that does not parse.
    fn parse(name: &'static str, value: &str) -> Result<When, ParamError> {
        let value = value.trim();
        let when = When::parse_any(name, value)?;
        if !(1678..=2261).contains(&when.first().year()) {
            return Err(ParamError::Invalid {
                name,
                value: value.to_owned(),
                expected: "a date between the years 1678 and 2261",
            });
        }
        Ok(when)
    }

    fn parse_any(name: &'static str, value: &str) -> Result<When, ParamError> {
        if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            return Ok(When::Day(day));
        }
        DateTime::parse_from_rfc3339(value)
            .or_else(|_| DateTime::parse_from_rfc2822(value))
            .map(|t| When::Instant(t.with_timezone(&Utc)))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
                    .map(|t| When::Instant(t.and_utc()))
            })
            .map_err(|_| ParamError::Invalid {
                name,
                value: value.to_owned(),
                expected: "a date YYYY-MM-DD or a date-time YYYY-MM-DDTHH:MM:SSZ",
            })
    }

    /// The whole UTC day it falls in.
    fn day(self) -> When {
        match self {
            When::Day(day) => When::Day(day),
            When::Instant(t) => When::Day(t.date_naive()),
        }
    }

    /// The first instant it covers.
    fn first(self) -> DateTime<Utc> {
        match self {
            When::Day(day) => day.and_time(chrono::NaiveTime::MIN).and_utc(),
            When::Instant(t) => t,
        }
    }

    /// The instant just after what it covers (the next midnight for a day; the next second
    /// for an instant, as Twilio's times have whole seconds).
    fn after(self) -> DateTime<Utc> {
        match self {
            When::Day(_) => self.first() + TimeDelta::days(1),
            When::Instant(t) => t + TimeDelta::seconds(1),
        }
    }
}

/// Twilio's date filters on one field: `Name` (that UTC day; a date-time names the day it falls
/// in, as the helper libraries send dates as midnight date-times), `Name<` (on or before the day
/// or second) and `Name>` (on or after it). Several narrow the range together.
pub fn date_range(params: &Params, names: [&'static str; 3]) -> Result<TimeRange, ParamError> {
    let [exact, before, after] = names;
    let mut start: Option<DateTime<Utc>> = None;
    let mut end: Option<DateTime<Utc>> = None;
    let mut narrow_start = |t: DateTime<Utc>| start = Some(start.map_or(t, |s| s.max(t)));
    if let Some(v) = params.get(exact) {
        narrow_start(When::parse(exact, v)?.day().first());
    }
    if let Some(v) = params.get(after) {
        narrow_start(When::parse(after, v)?.first());
    }
    let mut narrow_end = |t: DateTime<Utc>| end = Some(end.map_or(t, |e| e.min(t)));
    if let Some(v) = params.get(exact) {
        narrow_end(When::parse(exact, v)?.day().after());
    }
    if let Some(v) = params.get(before) {
        narrow_end(When::parse(before, v)?.after());
    }
    Ok(TimeRange {
        start: start.map_or(Bound::Unbounded, Bound::Included),
        end: end.map_or(Bound::Unbounded, Bound::Excluded),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn repeated_and_space_separated_values_are_all_kept() {
        let params = Params::parse(
            "StatusCallbackEvent=initiated&StatusCallbackEvent=ringing+answered&To=%2B1555&Empty=",
        );
        assert_eq!(
            params.all("StatusCallbackEvent"),
            ["initiated", "ringing", "answered"]
        );
        assert_eq!(params.get("To"), Some("+1555"));
        assert_eq!(params.get("Empty"), None);
        assert_eq!(params.get("Missing"), None);
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(url("Url", "http://127.0.0.1:9/doc?x=1").is_ok());
        assert!(url("Url", "https://example.com").is_ok());
        for bad in ["ftp://example.com/x", "/relative", "not a url", "http://"] {
            assert_eq!(
                url("Url", bad).unwrap_err().code(),
                21205,
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn methods_default_to_post_and_refuse_others() {
        let params = Params::parse("Method=get&FallbackMethod=PUT");
        assert_eq!(method(&params, "Method"), Ok(HttpMethod::Get));
        assert_eq!(
            method(&params, "StatusCallbackMethod"),
            Ok(HttpMethod::Post)
        );
        assert_eq!(method(&params, "FallbackMethod").unwrap_err().code(), 21209);
    }

    #[test]
    fn day_filters_cover_whole_days_and_inequalities_include_the_day() {
        let params = Params::parse("StartTime%3E=2024-05-01&StartTime%3C=2024-05-03");
        let range = date_range(&params, ["StartTime", "StartTime<", "StartTime>"]).unwrap();
        assert_eq!(range.start, Bound::Included(utc("2024-05-01T00:00:00Z")));
        assert_eq!(range.end, Bound::Excluded(utc("2024-05-04T00:00:00Z")));

        for exact in ["2024-05-01", "2024-05-01T00:00:00Z", "2024-05-01T13:14:15Z"] {
            let params = Params::parse(&format!("StartTime={exact}"));
            let range = date_range(&params, ["StartTime", "StartTime<", "StartTime>"]).unwrap();
            assert_eq!(
                range.start,
                Bound::Included(utc("2024-05-01T00:00:00Z")),
                "{exact}"
            );
            assert_eq!(
                range.end,
                Bound::Excluded(utc("2024-05-02T00:00:00Z")),
                "{exact}"
            );
        }
    }

    #[test]
    fn instant_filters_are_inclusive_to_the_second() {
        let params =
            Params::parse("StartTime%3E=2024-05-01T10:00:00Z&StartTime%3C=2024-05-01T11:00:00Z");
        let range = date_range(&params, ["StartTime", "StartTime<", "StartTime>"]).unwrap();
        assert_eq!(range.start, Bound::Included(utc("2024-05-01T10:00:00Z")));
        assert_eq!(range.end, Bound::Excluded(utc("2024-05-01T11:00:01Z")));
        for out_of_range in [
            "9999-12-31",
            "StartTime%3C=0001-01-01T00:00:00Z",
            "1600-01-01",
        ] {
            let query = if out_of_range.contains('=') {
                out_of_range.to_owned()
            } else {
                format!("StartTime={out_of_range}")
            };
            assert!(
                date_range(
                    &Params::parse(&query),
                    ["StartTime", "StartTime<", "StartTime>"]
                )
                .is_err(),
                "{query}"
            );
        }
        let bad = Params::parse("StartTime=yesterday");
        assert_eq!(
            date_range(&bad, ["StartTime", "StartTime<", "StartTime>"])
                .unwrap_err()
                .code(),
            20001
        );
    }
}
