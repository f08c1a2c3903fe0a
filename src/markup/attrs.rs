//! Typed attribute values: each function reads one (already trimmed) attribute value into its
//! typed form, or says what it should have been ([`Expected`]).
//!
//! Leniency follows the platforms: keywords and booleans match ASCII-case-insensitively, lists
//! accept spaces and commas as separators, and values are trimmed before they get here.

use std::num::NonZeroU32;
use std::time::Duration;

use super::ast::{
    DialRecord, DtmfDigits, DtmfKey, GatherInput, Keyword, KeywordSet, Repeat, SpeechTimeout,
};
use super::error::Expected;

/// XML whitespace (XML 1.0 §2.3 `S`): what attribute and noun values are trimmed of.
pub(crate) fn trim_xml(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

pub(crate) fn boolean(value: &str) -> Result<bool, Expected> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(Expected::Boolean)
    }
}

pub(crate) fn keyword<K: Keyword>(value: &str) -> Result<K, Expected> {
    K::from_keyword(value).ok_or_else(|| Expected::OneOf(spellings::<K>()))
}

fn spellings<K: Keyword>() -> Vec<&'static str> {
    K::ALL.iter().map(|k| k.keyword()).collect()
}

fn is_list_separator(c: char) -> bool {
    matches!(c, ' ' | ',' | '\t' | '\r' | '\n')
}

/// Space- (or comma-) separated keywords; order and repeats do not matter.
pub(crate) fn keyword_set<K: Keyword>(value: &str) -> Result<KeywordSet<K>, Expected> {
    let mut set = KeywordSet::empty();
    for word in value.split(is_list_separator).filter(|w| !w.is_empty()) {
        set.insert(K::from_keyword(word).ok_or_else(|| Expected::SomeOf(spellings::<K>()))?);
    }
    Ok(set)
}

/// Comma-separated keywords in order (`<Sip codecs>`); at least one.
pub(crate) fn keyword_list<K: Keyword>(value: &str) -> Result<Vec<K>, Expected> {
    let list: Option<Vec<K>> = value
        .split(',')
        .map(|w| K::from_keyword(trim_xml(w)))
        .collect();
    match list {
        Some(list) if !list.is_empty() && !value.is_empty() => Ok(list),
        _ => Err(Expected::CommaList(spellings::<K>())),
    }
}

/// A decimal integer in `min..=max`.
pub(crate) fn integer(
    value: &str,
    min: u32,
    max: Option<u32>,
    unit: &'static str,
) -> Result<u32, Expected> {
    let expected = || Expected::Integer { min, max, unit };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let n: u32 = value.parse().map_err(|_| expected())?;
    if n < min || max.is_some_and(|max| n > max) {
        return Err(expected());
    }
    Ok(n)
}

/// Whole seconds in `min..=max`.
pub(crate) fn seconds(value: &str, min: u32, max: Option<u32>) -> Result<Duration, Expected> {
    integer(value, min, max, "seconds").map(|n| Duration::from_secs(n.into()))
}

/// Whole milliseconds in `min..=max`.
pub(crate) fn millis(value: &str, min: u32, max: u32) -> Result<Duration, Expected> {
    integer(value, min, Some(max), "milliseconds").map(|n| Duration::from_millis(n.into()))
}

/// `loop`: a count, `0` meaning forever.
pub(crate) fn repeat(value: &str) -> Result<Repeat, Expected> {
    let n = integer(value, 0, None, "")?;
    Ok(NonZeroU32::new(n).map_or(Repeat::Forever, Repeat::Times))
}

pub(crate) fn positive(value: &str) -> Result<NonZeroU32, Expected> {
    let n = integer(value, 1, None, "")?;
    NonZeroU32::new(n).ok_or(Expected::Integer {
        min: 1,
        max: None,
        unit: "",
    })
}

/// `<Gather speechTimeout>`.
pub(crate) fn speech_timeout(value: &str) -> Result<SpeechTimeout, Expected> {
    if value.eq_ignore_ascii_case("auto") {
        return Ok(SpeechTimeout::Auto);
    }
    seconds(value, 1, None)
        .map(SpeechTimeout::After)
        .map_err(|_| Expected::SecondsOrAuto)
}

/// `<Gather input>`: `dtmf`, `speech`, or both in either order.
pub(crate) fn gather_input(value: &str) -> Result<GatherInput, Expected> {
    let (mut dtmf, mut speech) = (false, false);
    for word in value.split(is_list_separator).filter(|w| !w.is_empty()) {
        if word.eq_ignore_ascii_case("dtmf") {
            dtmf = true;
        } else if word.eq_ignore_ascii_case("speech") {
            speech = true;
        } else {
            dtmf = false;
            speech = false;
            break;
        }
    }
    match (dtmf, speech) {
        (true, false) => Ok(GatherInput::Dtmf),
        (false, true) => Ok(GatherInput::Speech),
        (true, true) => Ok(GatherInput::DtmfSpeech),
        (false, false) => Err(Expected::SomeOf(vec!["dtmf", "speech"])),
    }
}

/// `finishOnKey`: any of `0-9 * #`; empty means no key.
pub(crate) fn keys(value: &str) -> Result<KeywordSet<DtmfKey>, Expected> {
    let mut set = KeywordSet::empty();
    let mut buf = [0u8; 4];
    for c in value.chars() {
        set.insert(DtmfKey::from_keyword(c.encode_utf8(&mut buf)).ok_or(Expected::Keys)?);
    }
    Ok(set)
}

/// `digits` / `sendDigits`.
pub(crate) fn digits(value: &str) -> Result<DtmfDigits, Expected> {
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D' | b'w' | b'W'));
    if valid {
        Ok(DtmfDigits(value.to_owned()))
    } else {
        Err(Expected::Digits)
    }
}

/// `<Dial record>`, also Twilio's legacy `true` / `false`.
pub(crate) fn dial_record(value: &str) -> Result<DialRecord, Expected> {
    match boolean(value) {
        Ok(true) => Ok(DialRecord::RecordFromAnswer),
        Ok(false) => Ok(DialRecord::DoNotRecord),
        Err(_) => keyword(value),
    }
}

/// SSML `<break time>`: `500ms`, `2s`, `1.5s`.
pub(crate) fn ssml_time(value: &str) -> Result<Duration, Expected> {
    let (number, scale_ms) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return Err(Expected::Time);
    };
    let valid = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1
        && number != ".";
    if !valid {
        return Err(Expected::Time);
    }
    let n: f64 = number.parse().map_err(|_| Expected::Time)?;
    let ms = (n * scale_ms).round();
    if ms > f64::from(u32::MAX) {
        return Err(Expected::Time);
    }
    Ok(Duration::from_millis(ms as u64))
}

/// `callerId` of a `<Dial>` that rings `<Sip>` nouns: letters, digits and `+-_.,` (the seed's
/// rule), so no whitespace.
pub(crate) fn is_sip_caller_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '+' | '-' | '_' | '.' | ','))
}

/// A dialable number: `+` only in front, digits, and the separators people write
/// (`(415) 555-1212`, `415.555.1212`); at least one digit.
pub(crate) fn is_phone_number(value: &str) -> bool {
    let body = value.strip_prefix('+').unwrap_or(value);
    body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')'))
}

/// Comma-separated phrases of `<Gather hints>`, trimmed, empty ones dropped.
pub(crate) fn hints(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(trim_xml)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::ast::{CallEvent, Codec};

    #[test]
    fn booleans_ignore_case_and_reject_others() {
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("False"), Ok(false));
        assert_eq!(boolean("yes"), Err(Expected::Boolean));
        assert_eq!(boolean("1"), Err(Expected::Boolean));
    }

    #[test]
    fn integers_respect_their_range() {
        assert_eq!(integer("30", 1, Some(600), ""), Ok(30));
        assert!(integer("0", 1, Some(600), "").is_err());
        assert!(integer("601", 1, Some(600), "").is_err());
        assert!(integer("-1", 0, None, "").is_err());
        assert!(integer("+5", 0, None, "").is_err());
        assert!(integer("99999999999", 0, None, "").is_err());
    }

    #[test]
    fn loop_zero_is_forever() {
        assert_eq!(repeat("0"), Ok(Repeat::Forever));
        assert_eq!(repeat("1"), Ok(Repeat::ONCE));
    }

    #[test]
    fn event_sets_accept_spaces_and_commas() {
        let set: KeywordSet<CallEvent> = keyword_set("ringing, Answered  ringing").unwrap();
        assert!(set.contains(CallEvent::Ringing) && set.contains(CallEvent::Answered));
        assert!(!set.contains(CallEvent::Completed));
        assert!(keyword_set::<CallEvent>("ringing busy").is_err());
    }

    #[test]
    fn codec_lists_keep_order() {
        assert_eq!(
            keyword_list::<Codec>("opus, pcmu"),
            Ok(vec![Codec::Opus, Codec::Pcmu])
        );
        assert!(keyword_list::<Codec>("PCMU,,PCMA").is_err());
        assert!(keyword_list::<Codec>("").is_err());
        assert!(keyword_list::<Codec>("GSM").is_err());
    }

    #[test]
    fn gather_input_in_either_order() {
        assert_eq!(gather_input("speech dtmf"), Ok(GatherInput::DtmfSpeech));
        assert_eq!(gather_input("DTMF"), Ok(GatherInput::Dtmf));
        assert!(gather_input("voice").is_err());
        assert!(gather_input("").is_err());
    }

    #[test]
    fn ssml_times() {
        assert_eq!(ssml_time("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(ssml_time("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(ssml_time("5").is_err());
        assert!(ssml_time(".s").is_err());
        assert!(ssml_time("1e9s").is_err());
    }

    #[test]
    fn caller_ids_and_numbers() {
        assert!(is_sip_caller_id("+1-alice_b.c,d"));
        assert!(!is_sip_caller_id("alice smith"));
        assert!(!is_sip_caller_id("a@b"));
        assert!(is_phone_number("+1 (415) 555-1212"));
        assert!(!is_phone_number("1+2"));
        assert!(!is_phone_number("sip:alice@example.com"));
        assert!(!is_phone_number("+"));
    }

    #[test]
    fn keys_and_digits() {
        assert_eq!(keys("").map(|k| k.is_empty()), Ok(true));
        assert!(keys("#*1").unwrap().contains(DtmfKey::Star));
        assert!(keys("x").is_err());
        assert!(digits("ww1234#").is_ok());
        assert!(digits("12 34").is_err());
        assert!(digits("").is_err());
    }
}
