//! Markup diagnostics: what the parser found wrong, where, and how serious it is.
//!
//! Every finding is a [`Problem`] (a typed enum; its `Display` is the message users see) placed
//! at a line and column in a [`Diagnostic`]. Errors make a document unusable; warnings
//! (invalid attribute values, which keep their defaults, unknown attributes and elements,
//! stray text, ...) are ignored at run time, as Twilio and SignalWire ignore them, but
//! `callml check` reports them, and a call reports invalid values as 12200 warnings.

use std::fmt;

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding, placed in the document. Displays as `LINE:COL: error: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: u32,
    pub column: u32,
    /// The problem's text (`problem.to_string()`), kept for callers that only print.
    pub message: String,
    pub problem: Problem,
}

impl Diagnostic {
    pub fn new(problem: Problem, line: u32, column: u32) -> Diagnostic {
        Diagnostic {
            severity: problem.severity(),
            line,
            column,
            message: problem.to_string(),
            problem,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.severity, self.message
        )
    }
}

/// Everything the markup layer can find wrong with a document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    // ----- errors: the document cannot run -----
    #[error("malformed XML: {0}")]
    Xml(XmlFault),
    #[error("the root element must be <Response>, not <{found}>")]
    WrongRoot { found: String },
    #[error("content after </Response>")]
    ContentAfterRoot,
    #[error("invalid <{element}> \"{value}\": expected {expected}")]
    InvalidText {
        element: &'static str,
        value: String,
        expected: Expected,
    },
    #[error("invalid SIP URI \"{uri}\": {fault}")]
    InvalidSipUri { uri: String, fault: SipUriFault },
    #[error("<{element}> needs {what}")]
    MissingContent {
        element: &'static str,
        what: &'static str,
    },
    #[error("<{child}> is not allowed inside <{parent}>")]
    NotAllowedIn {
        child: &'static str,
        parent: &'static str,
    },
    #[error("<{verb}> cannot run in {used}: only {allowed} can")]
    NotAllowedHere {
        verb: &'static str,
        used: &'static str,
        allowed: &'static str,
    },
    #[error("<{element}> holds at most {max} <{noun}> nouns")]
    TooManyNouns {
        element: &'static str,
        noun: &'static str,
        max: usize,
    },
    #[error("<{noun}> cannot share a <Dial> with <{other}>")]
    NounConflict {
        noun: &'static str,
        other: &'static str,
    },
    #[error("<{element}> takes {first} or {second}, not both")]
    Exclusive {
        element: &'static str,
        first: &'static str,
        second: &'static str,
    },
    #[error("<{element}> appears more than once inside <{parent}>")]
    Repeated {
        element: &'static str,
        parent: &'static str,
    },

    // ----- warnings: ignored at run time -----
    /// Twilio's 12200 "Schema validation warning": the attribute keeps its default and the
    /// document runs on.
    #[error(
        "invalid {attribute}=\"{value}\" on <{element}>: expected {expected}; the default is used"
    )]
    InvalidValue {
        element: &'static str,
        attribute: &'static str,
        value: String,
        expected: Expected,
    },
    #[error(
        "unknown attribute {attribute} on <{element}> is ignored{}",
        hint(suggestion)
    )]
    UnknownAttribute {
        element: &'static str,
        attribute: String,
        suggestion: Option<&'static str>,
    },
    #[error(
        "unknown element <{element}> inside <{parent}> is ignored{}",
        element_hint(suggestion)
    )]
    UnknownElement {
        element: String,
        parent: &'static str,
        suggestion: Option<&'static str>,
    },
    #[error(
        "unknown SSML element <{element}> inside <{parent}>: the tag is dropped, its text is spoken"
    )]
    UnknownSsml {
        element: String,
        parent: &'static str,
    },
    #[error("<{element}> is not supported by callml and is ignored")]
    UnsupportedVerb { element: &'static str },
    /// Part of the vocabulary, parsed and checked, but not run by this build.
    #[error("{feature} is not available in this build: {effect}")]
    Unavailable {
        feature: &'static str,
        effect: &'static str,
    },
    #[error("{attribute} on <{element}> is ignored: callml has no TaskRouter")]
    WithoutTaskRouter {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("text inside <{element}> is ignored")]
    StrayText { element: &'static str },
    #[error("{attribute} on <{element}> has no effect without {needs}")]
    WithoutEffect {
        element: &'static str,
        attribute: &'static str,
        needs: &'static str,
    },
    #[error("<Say> has nothing to say")]
    EmptySay,
    #[error("the document has no XML root: its text is read as one <Say>")]
    BareText,
    #[error("the document is empty: the call hangs up")]
    EmptyDocument,
    #[error("<!DOCTYPE> is ignored")]
    DocType,
}

fn element_hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean <{s}>?)"),
        None => String::new(),
    }
}

fn hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

impl Problem {
    pub fn severity(&self) -> Severity {
        match self {
            Problem::Xml(_)
            | Problem::WrongRoot { .. }
            | Problem::ContentAfterRoot
            | Problem::InvalidText { .. }
            | Problem::InvalidSipUri { .. }
            | Problem::MissingContent { .. }
            | Problem::NotAllowedIn { .. }
            | Problem::NotAllowedHere { .. }
            | Problem::TooManyNouns { .. }
            | Problem::NounConflict { .. }
            | Problem::Exclusive { .. }
            | Problem::Repeated { .. } => Severity::Error,
            Problem::InvalidValue { .. }
            | Problem::UnknownAttribute { .. }
            | Problem::UnknownElement { .. }
            | Problem::UnsupportedVerb { .. }
            | Problem::Unavailable { .. }
            | Problem::WithoutTaskRouter { .. }
            | Problem::UnknownSsml { .. }
            | Problem::StrayText { .. }
            | Problem::WithoutEffect { .. }
            | Problem::EmptySay
            | Problem::BareText
            | Problem::EmptyDocument
            | Problem::DocType => Severity::Warning,
        }
    }
}

/// Why the text is not well-formed XML.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlFault {
    #[error("<{0}> is never closed")]
    Unclosed(String),
    #[error("</{0}> closes nothing")]
    UnmatchedEnd(String),
    #[error("<{expected}> is closed by </{found}>")]
    MismatchedEnd { expected: String, found: String },
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    #[error("bare '&' (write &amp;)")]
    BareAmpersand,
    #[error("invalid character reference")]
    InvalidCharRef,
    #[error("an attribute is given twice")]
    DuplicateAttribute,
    #[error("attribute without a quoted value")]
    BadAttribute,
    #[error("'<' in an attribute value (write &lt;)")]
    LessThanInAttribute,
    #[error("<{0}> is not an XML name: names start with a letter, '_' or ':'")]
    BadName(String),
    #[error("invalid markup after '<!'")]
    BadMarkup,
    #[error("invalid XML declaration")]
    BadDeclaration,
    #[error("text outside <Response>")]
    TextOutsideRoot,
    #[error(
        "elements nested deeper than {} levels",
        crate::markup::parse::MAX_DEPTH
    )]
    TooDeep,
    #[error("unreadable input")]
    Unreadable,
}

/// What an attribute value should have looked like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Boolean,
    /// An integer in `min..=max` (`max` `None`: unbounded), in `unit`s.
    Integer {
        min: u32,
        max: Option<u32>,
        unit: &'static str,
    },
    /// One keyword of a closed list.
    OneOf(Vec<&'static str>),
    /// Keywords of a closed list, separated by spaces.
    SomeOf(Vec<&'static str>),
    /// Keywords of a closed list, separated by commas.
    CommaList(Vec<&'static str>),
    /// `integer seconds` or `auto`.
    SecondsOrAuto,
    /// Keypad keys.
    Keys,
    /// DTMF digits.
    Digits,
    /// `500ms`, `2s`.
    Time,
    /// `<Sip>` dials: `callerId` characters.
    SipCallerId,
    /// A call SID.
    CallSid,
    /// A telephone number.
    PhoneNumber,
    /// Any non-empty text.
    NonEmpty,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Boolean => f.write_str("true or false"),
            Expected::Integer { min, max, unit } => {
                match max {
                    Some(max) => write!(f, "an integer from {min} to {max}")?,
                    None if *min == 0 => f.write_str("a non-negative integer")?,
                    None => write!(f, "an integer of at least {min}")?,
                }
                if unit.is_empty() {
                    Ok(())
                } else {
                    write!(f, " ({unit})")
                }
            }
            Expected::OneOf(words) => write!(f, "one of {}", words.join(", ")),
            Expected::SomeOf(words) => {
                write!(f, "space-separated values from {}", words.join(", "))
            }
            Expected::CommaList(words) => {
                write!(f, "a comma-separated list from {}", words.join(", "))
            }
            Expected::SecondsOrAuto => f.write_str("an integer of at least 1 (seconds) or auto"),
            Expected::Keys => f.write_str("keys from 0-9, * and #"),
            Expected::Digits => f.write_str("DTMF digits 0-9, *, #, A-D, w or W"),
            Expected::Time => f.write_str("a time such as 500ms or 2s"),
            Expected::SipCallerId => {
                f.write_str("letters, digits and +-_., without whitespace (a <Sip> dial)")
            }
            Expected::CallSid => f.write_str("a call SID (CA and 32 hex digits)"),
            Expected::PhoneNumber => f.write_str("a phone number"),
            Expected::NonEmpty => f.write_str("a non-empty value"),
        }
    }
}

/// Why a `<Sip>` URI was rejected (RFC 3261 §19.1.1 syntax).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SipUriFault {
    #[error("it must start with sip: or sips:")]
    Scheme,
    #[error("the host is missing or invalid")]
    Host,
    #[error("the port is not a number from 1 to 65535")]
    Port,
    #[error("transport must be udp, tcp or tls")]
    Transport,
    #[error("it contains whitespace")]
    Whitespace,
    #[error("an empty parameter or header name")]
    EmptyName,
    #[error("an invalid %-escape")]
    Escape,
    #[error("the user part has a character RFC 3261 §25.1 does not allow (escape it as %XX)")]
    User,
    #[error("a parameter has a character RFC 3261 §25.1 does not allow (escape it as %XX)")]
    Param,
    #[error(
        "a header name or value has a character RFC 3261 §25.1 does not allow (escape it as %XX)"
    )]
    HeaderText,
    #[error("a header name that is not a token (RFC 3261 §25.1)")]
    HeaderName,
    #[error("a header value with a control character (an escaped CR, LF or NUL)")]
    HeaderValue,
}
