//! DTMF in SIP INFO requests: the two body formats in common use. Neither is an RFC; both are
//! widely deployed (Cisco, Asterisk, FreeSWITCH, Twilio).
//!
//! `application/dtmf-relay`:
//! ```text
//! Signal=5
//! Duration=160
//! ```
//! `Signal` is the key (`0`–`9`, `*`, `#`, `A`–`D`, or its RFC 4733 event number such as `10`
//! for `*`); `Duration` is in milliseconds and optional. `application/dtmf` carries the key
//! (or its event number) alone. Keys are case-insensitive; lines may end in CRLF or LF.

use std::time::Duration;

use thiserror::Error;

use crate::media::rtp::{dtmf_digit, dtmf_event};

/// A key press from a SIP INFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipInfoDigit {
    pub digit: char,
    pub duration: Option<Duration>,
}

/// Why a SIP INFO body is not a key press.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SipInfoError {
    #[error("SIP INFO content type {0:?} does not carry DTMF")]
    UnsupportedContentType(String),
    #[error("SIP INFO DTMF body is not UTF-8")]
    NotUtf8,
    #[error("SIP INFO dtmf-relay body has no Signal line")]
    MissingSignal,
    #[error("SIP INFO signal {0:?} is not a DTMF key")]
    BadSignal(String),
    #[error("SIP INFO duration {0:?} is not a number of milliseconds")]
    BadDuration(String),
}

/// Parses the body of a SIP INFO with `content_type` (parameters allowed).
pub fn parse_sip_info(content_type: &str, body: &[u8]) -> Result<SipInfoDigit, SipInfoError> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|_| SipInfoError::NotUtf8)?;
    match media_type.as_str() {
        "application/dtmf-relay" => parse_relay(text),
        "application/dtmf" => Ok(SipInfoDigit {
            digit: parse_key(text.trim())?,
            duration: None,
        }),
        _ => Err(SipInfoError::UnsupportedContentType(
            content_type.to_owned(),
        )),
    }
}

fn parse_relay(text: &str) -> Result<SipInfoDigit, SipInfoError> {
    let mut digit = None;
    let mut duration = None;
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "signal" => digit = Some(parse_key(value)?),
            "duration" => {
                let millis = value
                    .parse::<u64>()
                    .map_err(|_| SipInfoError::BadDuration(value.to_owned()))?;
                duration = Some(Duration::from_millis(millis));
            }
            _ => {}
        }
    }
    Ok(SipInfoDigit {
        digit: digit.ok_or(SipInfoError::MissingSignal)?,
        duration,
    })
}

fn parse_key(value: &str) -> Result<char, SipInfoError> {
    let bad = || SipInfoError::BadSignal(value.to_owned());
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(key), None) => dtmf_event(key).and_then(dtmf_digit).ok_or_else(bad),
        _ => value
            .parse::<u8>()
            .ok()
            .and_then(dtmf_digit)
            .ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_bodies() {
        let parsed = parse_sip_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n");
        assert_eq!(
            parsed,
            Ok(SipInfoDigit {
                digit: '5',
                duration: Some(Duration::from_millis(160))
            })
        );
        let parsed = parse_sip_info(
            "Application/DTMF-Relay; charset=utf-8",
            b"signal = #\nduration= 250",
        )
        .unwrap();
        assert_eq!(parsed.digit, '#');
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Signal=10")
                .unwrap()
                .digit,
            '*'
        );
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Signal=d")
                .unwrap()
                .digit,
            'D'
        );
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Signal=7")
                .unwrap()
                .duration,
            None
        );
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(parse_sip_info("application/dtmf", b"9").unwrap().digit, '9');
        assert_eq!(
            parse_sip_info("application/dtmf", b" 11\r\n")
                .unwrap()
                .digit,
            '#'
        );
        assert_eq!(parse_sip_info("application/dtmf", b"*").unwrap().digit, '*');
    }

    #[test]
    fn bad_bodies_are_typed_errors() {
        assert_eq!(
            parse_sip_info("application/sdp", b"v=0"),
            Err(SipInfoError::UnsupportedContentType(
                "application/sdp".into()
            ))
        );
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Duration=160"),
            Err(SipInfoError::MissingSignal)
        );
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Signal=X"),
            Err(SipInfoError::BadSignal("X".into()))
        );
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Signal=16"),
            Err(SipInfoError::BadSignal("16".into()))
        );
        assert_eq!(
            parse_sip_info("application/dtmf-relay", b"Signal=1\nDuration=soon"),
            Err(SipInfoError::BadDuration("soon".into()))
        );
        assert_eq!(
            parse_sip_info("application/dtmf", b""),
            Err(SipInfoError::BadSignal(String::new()))
        );
        assert_eq!(
            parse_sip_info("application/dtmf", b"\xff"),
            Err(SipInfoError::NotUtf8)
        );
    }
}
