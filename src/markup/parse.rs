//! XML text → [`Document`]: a single pass over quick-xml events, building typed nodes directly
//! (no intermediate DOM) and collecting every [`Diagnostic`] on the way.
//!
//! Rules (issue 3; Twilio's TwiML and SignalWire's LaML references):
//! - The root must be `<Response>`; an empty `<Response/>` is valid.
//! - A body that does not start with `<` (after a byte-order mark and whitespace) is a *bare
//!   text document*: it is read as one `<Say>` with default attributes whose text is the body,
//!   trimmed, and a warning says so. An empty or whitespace-only body is an empty document
//!   (warning). Twilio and SignalWire refuse both; callml accepts them so a misconfigured
//!   plain-text endpoint still does something audible, and `callml check` points it out.
//! - Malformed XML, a wrong root, content after `</Response>`, invalid attribute values and
//!   illegal nesting are errors. Unknown attributes and elements, and text where none belongs,
//!   are warnings and are ignored. Element and attribute names are case-sensitive, as on the
//!   platforms; the warning suggests the right spelling when only the case differs.
//! - Attribute values and noun texts are trimmed of XML whitespace; `<Say>` text never is.
//!   Entity and character references arrive as separate events and are resolved in place.
//! - Elements nest at most [`MAX_DEPTH`] deep, so hostile input cannot exhaust the stack.

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::escape::EscapeError;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::ast::*;
use super::attrs::{self, trim_xml};
use super::error::{Diagnostic, Expected, Problem, XmlFault};

/// Deepest element nesting accepted (a real document needs 5).
pub const MAX_DEPTH: usize = 64;

/// A document that parsed without errors, and the warnings found on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub document: Document,
    pub warnings: Vec<Diagnostic>,
}

/// Parses a TwiML / LaML voice document. On any error, returns every diagnostic found
/// (errors and warnings), ordered by position.
pub fn parse(source: &str) -> Result<Parsed, Vec<Diagnostic>> {
    let mut parser = Parser::new(source);
    let document = parser.document();
    let mut diagnostics = parser.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    match document {
        Ok(document) if !diagnostics.iter().any(Diagnostic::is_error) => Ok(Parsed {
            document,
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}

/// Stops the parse after an unrecoverable (well-formedness) error; the diagnostic is already
/// recorded.
pub(super) struct Fatal;

pub(super) type Step<T> = Result<T, Fatal>;

/// A start tag with its place in the source.
pub(super) struct Element<'a> {
    pub start: BytesStart<'a>,
    /// `<x/>`: no content and no end tag follow.
    pub empty: bool,
    pub offset: usize,
    pub position: Position,
}

impl Element<'_> {
    pub fn name(&self) -> &str {
        self.start.local_name().into_inner()
    }
}

/// What an element contains, one piece at a time.
pub(super) enum Child<'a> {
    Element(Element<'a>),
    /// A run of character data, a resolved reference or a CDATA section.
    Text(Cow<'a, str>, usize),
}

/// One attribute of the element being read, value already trimmed.
pub(super) struct Attr<'v> {
    pub element: &'static str,
    pub name: &'v str,
    pub value: &'v str,
    pub offset: usize,
}

/// Maps byte offsets to line and column, moving forward (positions are asked for in document
/// order) and restarting only when asked about an earlier offset.
struct LineCursor {
    offset: usize,
    line: u32,
    column: u32,
}

impl LineCursor {
    const START: LineCursor = LineCursor {
        offset: 0,
        line: 1,
        column: 1,
    };

    fn seek(&mut self, source: &str, target: usize) -> Position {
        let target = target.min(source.len());
        if target < self.offset {
            *self = LineCursor::START;
        }
        // Two counting passes the compiler vectorises, rather than one branchy loop.
        let span = &source.as_bytes()[self.offset..target];
        let chars = |bytes: &[u8]| bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count();
        match span.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let newlines = span.iter().filter(|&&b| b == b'\n').count();
                self.line = self.line.saturating_add(clamp_u32(newlines));
                self.column = clamp_u32(chars(&span[last + 1..]) + 1);
            }
            None => self.column = self.column.saturating_add(clamp_u32(chars(span))),
        }
        self.offset = target;
        Position::new(self.line, self.column)
    }
}

pub(super) struct Parser<'a> {
    source: &'a str,
    reader: Reader<&'a [u8]>,
    cursor: LineCursor,
    depth: usize,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Parser<'a> {
        Parser {
            source,
            reader: Reader::from_str(source),
            cursor: LineCursor::START,
            depth: 0,
            diagnostics: Vec::new(),
        }
    }

    pub fn position(&mut self, offset: usize) -> Position {
        self.cursor.seek(self.source, offset)
    }

    pub fn report(&mut self, problem: Problem, offset: usize) {
        let position = self.position(offset);
        self.diagnostics
            .push(Diagnostic::new(problem, position.line, position.column));
    }

    /// Reports a problem about text that starts at `offset`, placed at its first
    /// non-whitespace character.
    pub fn report_text(&mut self, problem: Problem, offset: usize) {
        let rest = self.source.get(offset..).unwrap_or("");
        let skipped = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        self.report(problem, offset + skipped);
    }

    fn fatal(&mut self, fault: XmlFault, offset: usize) -> Fatal {
        self.report(Problem::Xml(fault), offset);
        Fatal
    }

    /// Byte offset of `slice` in the source, when it is a piece of it.
    fn offset_of(&self, slice: &[u8], fallback: usize) -> usize {
        let start = self.source.as_ptr() as usize;
        let at = slice.as_ptr() as usize;
        if at >= start && at <= start + self.source.len() {
            at - start
        } else {
            fallback
        }
    }

    fn xml_error(&mut self, error: XmlError) -> Fatal {
        let offset = usize::try_from(self.reader.error_position()).unwrap_or(usize::MAX);
        self.fatal(xml_fault(error), offset)
    }

    /// The next event that matters: comments, processing instructions and declarations are
    /// skipped; a DOCTYPE is skipped with a warning.
    fn event(&mut self) -> Step<(Event<'a>, usize)> {
        loop {
            let offset = usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX);
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(error) => return Err(self.xml_error(error)),
            };
            match event {
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => continue,
                Event::DocType(_) => self.report(Problem::DocType, offset),
                event => return Ok((event, offset)),
            }
        }
    }

    /// The next piece inside `parent`, or `None` at its end tag.
    pub fn child(&mut self, parent: &Element<'a>) -> Step<Option<Child<'a>>> {
        if parent.empty {
            return Ok(None);
        }
        let (event, offset) = self.event()?;
        match event {
            Event::Start(start) | Event::Empty(start) if self.depth >= MAX_DEPTH => {
                drop(start);
                Err(self.fatal(XmlFault::TooDeep, offset))
            }
            Event::Start(start) => {
                self.depth += 1;
                Ok(Some(Child::Element(self.element(start, false, offset)?)))
            }
            Event::Empty(start) => Ok(Some(Child::Element(self.element(start, true, offset)?))),
            Event::End(_) => {
                self.depth = self.depth.saturating_sub(1);
                Ok(None)
            }
            Event::Text(text) => Ok(Some(Child::Text(
                text.xml_content(XmlVersion::Implicit1_0),
                offset,
            ))),
            Event::CData(data) => Ok(Some(Child::Text(
                data.xml_content(XmlVersion::Implicit1_0),
                offset,
            ))),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => predefined_entity(&reference),
                    Err(_) => return Err(self.fatal(XmlFault::InvalidCharRef, offset)),
                };
                match resolved {
                    Some(c) => Ok(Some(Child::Text(Cow::Owned(c.to_string()), offset))),
                    None => {
                        let name = reference.to_string();
                        Err(self.fatal(XmlFault::UnknownEntity(name), offset))
                    }
                }
            }
            Event::Eof => {
                let name = parent.name().to_owned();
                Err(self.fatal(XmlFault::Unclosed(name), parent.offset))
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {
                Ok(Some(Child::Text(Cow::Borrowed(""), offset)))
            }
        }
    }

    /// An element whose name is an XML name (XML 1.0 §2.3: it starts with a letter, `_` or
    /// `:`, never a digit, `-` or `.`).
    fn element(&mut self, start: BytesStart<'a>, empty: bool, offset: usize) -> Step<Element<'a>> {
        let name = start.name();
        let first = name.as_ref().chars().next().unwrap_or('0');
        if first.is_ascii_digit() || matches!(first, '-' | '.') {
            let name = name.as_ref().to_owned();
            return Err(self.fatal(XmlFault::BadName(name), offset));
        }
        let position = self.position(offset);
        Ok(Element {
            start,
            empty,
            offset,
            position,
        })
    }

    /// Calls `each` for every attribute of `element` (namespace declarations excluded).
    pub fn attributes(
        &mut self,
        element: &Element<'a>,
        name: &'static str,
        mut each: impl FnMut(&mut Self, &Attr<'_>),
    ) -> Step<()> {
        for attribute in element.start.attributes() {
            let attribute = match attribute {
                Ok(attribute) => attribute,
                Err(error) => return Err(self.fatal(attr_fault(&error), element.offset)),
            };
            let key = attribute.key.as_ref();
            let offset = self.offset_of(key.as_bytes(), element.offset);
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            // XML 1.0 §3.1 (AttValue): a literal `<` is not allowed in an attribute value.
            if attribute.value.contains('<') {
                return Err(self.fatal(XmlFault::LessThanInAttribute, offset));
            }
            let value = match attribute.normalized_value(XmlVersion::Implicit1_0) {
                Ok(value) => value,
                Err(error) => return Err(self.fatal(xml_fault(error), offset)),
            };
            each(
                self,
                &Attr {
                    element: name,
                    name: key,
                    value: trim_xml(&value),
                    offset,
                },
            );
        }
        Ok(())
    }

    /// Reads a typed attribute value; on failure records the error and returns `None`, so the
    /// default stays in place and the parse goes on to find further problems.
    pub fn value<T>(
        &mut self,
        attr: &Attr<'_>,
        parse: impl FnOnce(&str) -> Result<T, Expected>,
    ) -> Option<T> {
        match parse(attr.value) {
            Ok(value) => Some(value),
            Err(expected) => {
                let problem = Problem::InvalidValue {
                    element: attr.element,
                    attribute: known_attribute(attr.name).unwrap_or("attribute"),
                    value: attr.value.to_owned(),
                    expected,
                };
                self.report(problem, attr.offset);
                None
            }
        }
    }

    /// A free-text attribute (URL, name); empty means absent.
    pub fn text(attr: &Attr<'_>) -> Option<String> {
        (!attr.value.is_empty()).then(|| attr.value.to_owned())
    }

    pub fn unknown_attribute(&mut self, attr: &Attr<'_>) {
        let problem = Problem::UnknownAttribute {
            element: attr.element,
            attribute: attr.name.to_owned(),
            suggestion: ATTRIBUTES
                .iter()
                .copied()
                .find(|known| known.eq_ignore_ascii_case(attr.name) && *known != attr.name),
        };
        self.report(problem, attr.offset);
    }

    /// A TaskRouter attribute (`workflowSid`, `reservationSid`, `postWorkActivitySid`):
    /// accepted, since Twilio documents it, and ignored with a warning.
    pub fn without_task_router(&mut self, attr: &Attr<'_>, attribute: &'static str) {
        let problem = Problem::WithoutTaskRouter {
            element: attr.element,
            attribute,
        };
        self.report(problem, attr.offset);
    }

    /// An element that does not belong where it is: an error when it is part of the
    /// vocabulary (wrong nesting), a warning otherwise. Its content is skipped.
    pub fn misplaced(&mut self, element: &Element<'a>, parent: &'static str) -> Step<()> {
        let name = element.name();
        let problem = if let Some(child) = vocabulary(name) {
            Problem::NotAllowedIn { child, parent }
        } else if let Some(verb) = UNSUPPORTED.iter().find(|v| **v == name) {
            Problem::UnsupportedVerb { element: verb }
        } else {
            let text = name;
            let suggestion = VERBS
                .iter()
                .chain(NOUNS)
                .chain(SSML)
                .copied()
                .find(|known| known.eq_ignore_ascii_case(text));
            Problem::UnknownElement {
                element: text.to_owned(),
                parent,
                suggestion,
            }
        };
        self.report(problem, element.offset);
        self.skip(element)
    }

    /// Consumes an element's content.
    pub fn skip(&mut self, element: &Element<'a>) -> Step<()> {
        while let Some(child) = self.child(element)? {
            if let Child::Element(inner) = child {
                self.skip(&inner)?;
            }
        }
        Ok(())
    }

    /// The trimmed text of a noun or verb that holds only text (a URL, a number, a name);
    /// elements inside are reported and skipped.
    pub fn text_content(&mut self, element: &Element<'a>, name: &'static str) -> Step<String> {
        let mut text = Cow::Borrowed("");
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(piece, _) => push_trimmed(&mut text, piece),
                Child::Element(inner) => self.misplaced(&inner, name)?,
            }
        }
        Ok(trim_xml(&text).to_owned())
    }

    /// Content of an element that takes none: text is a warning, elements are misplaced.
    pub fn no_content(&mut self, element: &Element<'a>, name: &'static str) -> Step<()> {
        let mut warned = false;
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(piece, offset) => {
                    if !warned && !trim_xml(&piece).is_empty() {
                        warned = true;
                        self.report_text(Problem::StrayText { element: name }, offset);
                    }
                }
                Child::Element(inner) => self.misplaced(&inner, name)?,
            }
        }
        Ok(())
    }

    // ----- the document -----

    fn document(&mut self) -> Step<Document> {
        let body = self.source.trim_start_matches('\u{feff}');
        let content = trim_xml(body);
        if content.is_empty() {
            self.report(Problem::EmptyDocument, 0);
            return Ok(Document::default());
        }
        if !content.starts_with('<') {
            return Ok(self.bare_text(content));
        }
        let root = loop {
            let (event, offset) = self.event()?;
            match event {
                Event::Start(start) => {
                    self.depth = 1;
                    break self.element(start, false, offset)?;
                }
                Event::Empty(start) => break self.element(start, true, offset)?,
                Event::Text(text)
                    if trim_xml(&text.xml_content(XmlVersion::Implicit1_0)).is_empty() => {}
                Event::Eof => {
                    self.report(Problem::EmptyDocument, 0);
                    return Ok(Document::default());
                }
                Event::End(end) => {
                    let name = end.name().as_ref().to_owned();
                    return Err(self.fatal(XmlFault::UnmatchedEnd(name), offset));
                }
                _ => {
                    self.report_text(Problem::Xml(XmlFault::TextOutsideRoot), offset);
                    return Err(Fatal);
                }
            }
        };
        if root.name() != "Response" {
            let found = root.start.name().as_ref().to_owned();
            self.report(Problem::WrongRoot { found }, root.offset);
            return Err(Fatal);
        }
        self.attributes(&root, "Response", |p, a| p.unknown_attribute(a))?;
        let mut verbs = Vec::new();
        while let Some(child) = self.child(&root)? {
            match child {
                Child::Text(text, offset) => {
                    if !trim_xml(&text).is_empty() {
                        let problem = Problem::StrayText {
                            element: "Response",
                        };
                        self.report_text(problem, offset);
                    }
                }
                Child::Element(element) => {
                    if let Some(verb) = self.verb(element)? {
                        verbs.push(verb);
                    }
                }
            }
        }
        self.epilogue()?;
        Ok(Document { verbs })
    }

    /// After `</Response>`: only whitespace, comments and processing instructions.
    fn epilogue(&mut self) -> Step<()> {
        loop {
            let (event, offset) = self.event()?;
            match event {
                Event::Eof => return Ok(()),
                Event::Text(text)
                    if trim_xml(&text.xml_content(XmlVersion::Implicit1_0)).is_empty() => {}
                _ => {
                    self.report_text(Problem::ContentAfterRoot, offset);
                    return Err(Fatal);
                }
            }
        }
    }

    fn bare_text(&mut self, content: &str) -> Document {
        let offset = self.offset_of(content.as_bytes(), 0);
        self.report(Problem::BareText, offset);
        let position = self.position(offset);
        Document {
            verbs: vec![Verb::Say(Say {
                voice: Say::DEFAULT_VOICE.to_owned(),
                language: Say::DEFAULT_LANGUAGE.to_owned(),
                repeat: Repeat::ONCE,
                content: vec![SsmlNode::Text(content.to_owned())],
                position,
            })],
        }
    }

    fn verb(&mut self, element: Element<'a>) -> Step<Option<Verb>> {
        Ok(Some(match element.name() {
            "Say" => Verb::Say(self.say(&element)?),
            "Play" => Verb::Play(self.play(&element)?),
            "Pause" => Verb::Pause(self.pause(&element)?),
            "Gather" => Verb::Gather(self.gather(&element)?),
            "Record" => Verb::Record(self.record(&element)?),
            "Dial" => Verb::Dial(self.dial(&element)?),
            "Hangup" => Verb::Hangup(Hangup {
                position: self.bare_verb(&element, "Hangup")?,
            }),
            "Leave" => Verb::Leave(Leave {
                position: self.bare_verb(&element, "Leave")?,
            }),
            "Redirect" => Verb::Redirect(self.redirect(&element)?),
            "Reject" => Verb::Reject(self.reject(&element)?),
            "Enqueue" => Verb::Enqueue(self.enqueue(&element)?),
            "Refer" => Verb::Refer(self.refer(&element)?),
            "Echo" => Verb::Echo(self.echo(&element)?),
            _ => {
                self.misplaced(&element, "Response")?;
                return Ok(None);
            }
        }))
    }

    /// `<Hangup/>`, `<Leave/>`: no attributes, no content.
    fn bare_verb(&mut self, element: &Element<'a>, name: &'static str) -> Step<Position> {
        self.attributes(element, name, |p, a| p.unknown_attribute(a))?;
        self.no_content(element, name)?;
        Ok(element.position)
    }

    pub fn play(&mut self, element: &Element<'a>) -> Step<Play> {
        let mut repeat = Repeat::ONCE;
        let mut digits = None;
        self.attributes(element, "Play", |p, a| match a.name {
            "loop" => repeat = p.value(a, attrs::repeat).unwrap_or(repeat),
            "digits" => digits = p.value(a, attrs::digits),
            _ => p.unknown_attribute(a),
        })?;
        let url = self.text_content(element, "Play")?;
        let source = match (digits, url.is_empty()) {
            (Some(digits), true) => PlaySource::Digits(digits),
            (None, false) => PlaySource::Url(url),
            (Some(_), false) => {
                let problem = Problem::Exclusive {
                    element: "Play",
                    first: "digits",
                    second: "a URL",
                };
                self.report(problem, element.offset);
                PlaySource::Url(url)
            }
            (None, true) => {
                // Invalid digits leave nothing to play: the element itself is missing.
                let problem = Problem::MissingContent {
                    element: "Play",
                    what: "a URL or digits",
                };
                self.report(problem, element.offset);
                PlaySource::Url(url)
            }
        };
        Ok(Play {
            repeat,
            source,
            position: element.position,
        })
    }

    pub fn pause(&mut self, element: &Element<'a>) -> Step<Pause> {
        let mut length = Pause::DEFAULT_LENGTH;
        self.attributes(element, "Pause", |p, a| match a.name {
            "length" => length = p.value(a, |v| attrs::seconds(v, 1, None)).unwrap_or(length),
            _ => p.unknown_attribute(a),
        })?;
        self.no_content(element, "Pause")?;
        Ok(Pause {
            length,
            position: element.position,
        })
    }

    fn gather(&mut self, element: &Element<'a>) -> Step<Gather> {
        let mut g = Gather {
            action: Action::default(),
            input: GatherInput::Dtmf,
            timeout: Gather::DEFAULT_TIMEOUT,
            speech_timeout: SpeechTimeout::After(Gather::DEFAULT_TIMEOUT),
            finish_on_key: KeywordSet::of(&[DtmfKey::Pound]),
            num_digits: None,
            action_on_empty_result: false,
            partial_result_callback: None,
            partial_result_callback_method: HttpMethod::Post,
            language: Gather::DEFAULT_LANGUAGE.to_owned(),
            hints: Vec::new(),
            profanity_filter: true,
            speech_model: None,
            enhanced: false,
            children: Vec::new(),
            position: element.position,
        };
        let mut speech_timeout = None;
        let mut input_offset = element.offset;
        self.attributes(element, "Gather", |p, a| match a.name {
            "action" => g.action.url = Parser::text(a),
            "method" => g.action.method = p.value(a, attrs::keyword).unwrap_or(g.action.method),
            "input" => {
                input_offset = a.offset;
                g.input = p.value(a, attrs::gather_input).unwrap_or(g.input);
            }
            "timeout" => {
                g.timeout = p
                    .value(a, |v| attrs::seconds(v, 1, None))
                    .unwrap_or(g.timeout)
            }
            "speechTimeout" => speech_timeout = p.value(a, attrs::speech_timeout),
            "finishOnKey" => g.finish_on_key = p.value(a, attrs::keys).unwrap_or(g.finish_on_key),
            "numDigits" => g.num_digits = p.value(a, attrs::positive).or(g.num_digits),
            "actionOnEmptyResult" => {
                g.action_on_empty_result = p.value(a, attrs::boolean).unwrap_or(false)
            }
            "partialResultCallback" => g.partial_result_callback = Parser::text(a),
            "partialResultCallbackMethod" => {
                g.partial_result_callback_method =
                    p.value(a, attrs::keyword).unwrap_or(HttpMethod::Post)
            }
            "language" => {
                if let Some(language) = p.value(a, non_empty) {
                    g.language = language;
                }
            }
            "hints" => g.hints = attrs::hints(a.value),
            "profanityFilter" => g.profanity_filter = p.value(a, attrs::boolean).unwrap_or(true),
            "speechModel" => g.speech_model = Parser::text(a),
            "enhanced" => g.enhanced = p.value(a, attrs::boolean).unwrap_or(false),
            _ => p.unknown_attribute(a),
        })?;
        g.speech_timeout = speech_timeout.unwrap_or(SpeechTimeout::After(g.timeout));
        if g.input != GatherInput::Dtmf {
            let problem = Problem::Unavailable {
                feature: "speech input on <Gather>",
                effect: "no speech recognizer is configured, so no speech is ever recognized \
                         (keys still are)",
            };
            self.report(problem, input_offset);
        }
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(text, offset) => {
                    if !trim_xml(&text).is_empty() {
                        self.report_text(Problem::StrayText { element: "Gather" }, offset);
                    }
                }
                Child::Element(inner) => match inner.name() {
                    "Say" => g.children.push(GatherChild::Say(self.say(&inner)?)),
                    "Play" => g.children.push(GatherChild::Play(self.play(&inner)?)),
                    "Pause" => g.children.push(GatherChild::Pause(self.pause(&inner)?)),
                    _ => self.misplaced(&inner, "Gather")?,
                },
            }
        }
        Ok(g)
    }

    fn record(&mut self, element: &Element<'a>) -> Step<Record> {
        let mut r = Record {
            action: Action::default(),
            timeout: Some(Record::DEFAULT_TIMEOUT),
            finish_on_key: KeywordSet::of(DtmfKey::ALL),
            max_length: Record::DEFAULT_MAX_LENGTH,
            play_beep: true,
            trim: Trim::TrimSilence,
            recording_status_callback: RecordingStatusCallback::default(),
            transcribe: false,
            transcribe_callback: None,
            position: element.position,
        };
        self.attributes(element, "Record", |p, a| match a.name {
            "action" => r.action.url = Parser::text(a),
            "method" => r.action.method = p.value(a, attrs::keyword).unwrap_or(r.action.method),
            "timeout" => {
                if let Some(timeout) = p.value(a, |v| attrs::seconds(v, 0, None)) {
                    r.timeout = (!timeout.is_zero()).then_some(timeout);
                }
            }
            "finishOnKey" => r.finish_on_key = p.value(a, attrs::keys).unwrap_or(r.finish_on_key),
            "maxLength" => {
                if let Some(length) = p.value(a, |v| attrs::seconds(v, 0, Some(86400))) {
                    r.max_length = if length.is_zero() {
                        Record::DEFAULT_MAX_LENGTH
                    } else {
                        length
                    };
                }
            }
            "playBeep" => r.play_beep = p.value(a, attrs::boolean).unwrap_or(true),
            "trim" => r.trim = p.value(a, attrs::keyword).unwrap_or(r.trim),
            "transcribe" => {
                r.transcribe = p.value(a, attrs::boolean).unwrap_or(false);
                if r.transcribe {
                    let problem = Problem::Unavailable {
                        feature: "transcribe on <Record>",
                        effect: "the recording is made but never transcribed, and \
                                 transcribeCallback is never requested",
                    };
                    p.report(problem, a.offset);
                }
            }
            "transcribeCallback" => r.transcribe_callback = Parser::text(a),
            _ => {
                if !p.recording_callback_attribute(a, &mut r.recording_status_callback) {
                    p.unknown_attribute(a);
                }
            }
        })?;
        self.no_content(element, "Record")?;
        Ok(r)
    }

    /// `recordingStatusCallback*` attributes shared by `<Record>`, `<Dial>`, `<Conference>`;
    /// false when `attr` is not one of them.
    pub fn recording_callback_attribute(
        &mut self,
        attr: &Attr<'_>,
        callback: &mut RecordingStatusCallback,
    ) -> bool {
        match attr.name {
            "recordingStatusCallback" => callback.url = Parser::text(attr),
            "recordingStatusCallbackMethod" => {
                callback.method = self.value(attr, attrs::keyword).unwrap_or(callback.method)
            }
            "recordingStatusCallbackEvent" => {
                callback.events = self
                    .value(attr, attrs::keyword_set)
                    .unwrap_or(callback.events)
            }
            _ => return false,
        }
        true
    }

    fn redirect(&mut self, element: &Element<'a>) -> Step<Redirect> {
        let mut method = HttpMethod::Post;
        self.attributes(element, "Redirect", |p, a| match a.name {
            "method" => method = p.value(a, attrs::keyword).unwrap_or(method),
            _ => p.unknown_attribute(a),
        })?;
        let url = self.required_text(element, "Redirect", "a URL")?;
        Ok(Redirect {
            url,
            method,
            position: element.position,
        })
    }

    /// Text content that must not be empty.
    pub fn required_text(
        &mut self,
        element: &Element<'a>,
        name: &'static str,
        what: &'static str,
    ) -> Step<String> {
        let text = self.text_content(element, name)?;
        if text.is_empty() {
            let problem = Problem::MissingContent {
                element: name,
                what,
            };
            self.report(problem, element.offset);
        }
        Ok(text)
    }

    fn reject(&mut self, element: &Element<'a>) -> Step<Reject> {
        let mut reason = RejectReason::Rejected;
        self.attributes(element, "Reject", |p, a| match a.name {
            "reason" => reason = p.value(a, attrs::keyword).unwrap_or(reason),
            _ => p.unknown_attribute(a),
        })?;
        self.no_content(element, "Reject")?;
        Ok(Reject {
            reason,
            position: element.position,
        })
    }

    fn enqueue(&mut self, element: &Element<'a>) -> Step<Enqueue> {
        let mut action = Action::default();
        let mut wait = WaitUrl::Default;
        let mut wait_url_method = HttpMethod::Post;
        self.attributes(element, "Enqueue", |p, a| match a.name {
            "action" => action.url = Parser::text(a),
            "method" => action.method = p.value(a, attrs::keyword).unwrap_or(action.method),
            "waitUrl" => wait = wait_url(a.value),
            "waitUrlMethod" => {
                wait_url_method = p.value(a, attrs::keyword).unwrap_or(wait_url_method)
            }
            "workflowSid" => p.without_task_router(a, "workflowSid"),
            _ => p.unknown_attribute(a),
        })?;
        let name = self.required_text(element, "Enqueue", "a queue name")?;
        Ok(Enqueue {
            name,
            action,
            wait,
            wait_url_method,
            position: element.position,
        })
    }

    fn echo(&mut self, element: &Element<'a>) -> Step<Echo> {
        let mut timeout = Echo::DEFAULT_TIMEOUT;
        self.attributes(element, "Echo", |p, a| match a.name {
            "timeout" => {
                timeout = p
                    .value(a, |v| attrs::seconds(v, 5, Some(120)))
                    .unwrap_or(timeout)
            }
            _ => p.unknown_attribute(a),
        })?;
        self.no_content(element, "Echo")?;
        Ok(Echo {
            timeout,
            position: element.position,
        })
    }
}

/// Appends a piece of text that will be trimmed once complete: while the buffer holds only
/// whitespace (which trimming would drop) the piece replaces it, so the common cases, one
/// piece or whitespace between elements, borrow from the source instead of allocating.
pub(super) fn push_trimmed<'a>(buffer: &mut Cow<'a, str>, piece: Cow<'a, str>) {
    if trim_xml(buffer).is_empty() {
        *buffer = piece;
    } else {
        buffer.to_mut().push_str(&piece);
    }
}

/// `waitUrl`: absent is the platform's music, empty is silence.
pub(super) fn wait_url(value: &str) -> WaitUrl {
    if value.is_empty() {
        WaitUrl::Silence
    } else {
        WaitUrl::Url(value.to_owned())
    }
}

pub(super) fn non_empty(value: &str) -> Result<String, Expected> {
    if value.is_empty() {
        Err(Expected::NonEmpty)
    } else {
        Ok(value.to_owned())
    }
}

fn predefined_entity(reference: &str) -> Option<char> {
    match reference {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

fn attr_fault(error: &AttrError) -> XmlFault {
    match error {
        AttrError::Duplicated(..) => XmlFault::DuplicateAttribute,
        _ => XmlFault::BadAttribute,
    }
}

fn xml_fault(error: XmlError) -> XmlFault {
    match error {
        XmlError::Syntax(syntax) => match syntax {
            SyntaxError::InvalidBangMarkup => XmlFault::BadMarkup,
            SyntaxError::UnclosedPI => XmlFault::Unterminated("processing instruction"),
            SyntaxError::UnclosedXmlDecl => XmlFault::Unterminated("XML declaration"),
            SyntaxError::UnclosedComment => XmlFault::Unterminated("comment"),
            SyntaxError::UnclosedDoctype => XmlFault::Unterminated("DOCTYPE"),
            SyntaxError::UnclosedCData => XmlFault::Unterminated("CDATA section"),
            SyntaxError::UnclosedTag => XmlFault::Unterminated("tag"),
            SyntaxError::UnclosedSingleQuotedAttributeValue
            | SyntaxError::UnclosedDoubleQuotedAttributeValue => {
                XmlFault::Unterminated("attribute value")
            }
        },
        XmlError::IllFormed(ill) => match ill {
            IllFormedError::MissingEndTag(name) => XmlFault::Unclosed(name),
            IllFormedError::UnmatchedEndTag(name) => XmlFault::UnmatchedEnd(name),
            IllFormedError::MismatchedEndTag { expected, found } => {
                XmlFault::MismatchedEnd { expected, found }
            }
            IllFormedError::UnclosedReference => XmlFault::BareAmpersand,
            IllFormedError::MissingDeclVersion(_) | IllFormedError::UnknownVersion => {
                XmlFault::BadDeclaration
            }
            IllFormedError::MissingDoctypeName | IllFormedError::DoubleHyphenInComment => {
                XmlFault::BadMarkup
            }
        },
        XmlError::InvalidAttr(error) => attr_fault(&error),
        XmlError::Escape(escape) => match escape {
            EscapeError::UnrecognizedEntity(_, name) => XmlFault::UnknownEntity(name),
            EscapeError::UnterminatedEntity(_) => XmlFault::BareAmpersand,
            EscapeError::InvalidCharRef(_) | EscapeError::TooManyNestedEntities => {
                XmlFault::InvalidCharRef
            }
        },
        XmlError::Io(_) | XmlError::Encoding(_) | XmlError::Namespace(_) => XmlFault::Unreadable,
    }
}

/// The verbs callml runs.
pub(super) const VERBS: &[&str] = &[
    "Say", "Play", "Pause", "Gather", "Record", "Dial", "Hangup", "Redirect", "Reject", "Enqueue",
    "Leave", "Refer", "Echo",
];

/// Nouns and the elements nested in them.
pub(super) const NOUNS: &[&str] = &[
    "Number",
    "Sip",
    "Client",
    "Conference",
    "Queue",
    "Identity",
    "Parameter",
    "Uri",
    "Headers",
    "Header",
];

/// SSML elements kept inside `<Say>`.
pub(super) const SSML: &[&str] = &[
    "break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w",
];

/// Twilio / SignalWire verbs callml does not run: a warning, not an unknown-element guess.
const UNSUPPORTED: &[&str] = &[
    "Connect",
    "Start",
    "Stop",
    "Pay",
    "Prompt",
    "Sms",
    "Message",
    "Stream",
    "Siprec",
    "Transcription",
    "Recording",
    "Conversation",
    "VirtualAgent",
    "Task",
    "Room",
    "Verto",
    "Application",
    "Autopilot",
    "Config",
];

/// Every attribute of the vocabulary, for suggestions and for naming a bad value.
const ATTRIBUTES: &[&str] = &[
    "action",
    "actionOnEmptyResult",
    "alias",
    "alphabet",
    "amdStatusCallback",
    "amdStatusCallbackMethod",
    "answerOnBridge",
    "beep",
    "byoc",
    "callerId",
    "codecs",
    "coach",
    "digits",
    "endConferenceOnExit",
    "enhanced",
    "eventCallbackUrl",
    "finishOnKey",
    "format",
    "hangupOnStar",
    "hints",
    "input",
    "interpret-as",
    "jitterBufferSize",
    "language",
    "length",
    "level",
    "loop",
    "machineDetection",
    "machineDetectionSilenceTimeout",
    "machineDetectionSpeechEndThreshold",
    "machineDetectionSpeechThreshold",
    "machineDetectionTimeout",
    "maxLength",
    "maxParticipants",
    "method",
    "muted",
    "name",
    "numDigits",
    "participantLabel",
    "partialResultCallback",
    "partialResultCallbackMethod",
    "password",
    "ph",
    "pitch",
    "playBeep",
    "postWorkActivitySid",
    "priority",
    "profanityFilter",
    "rate",
    "reason",
    "record",
    "recordingStatusCallback",
    "recordingStatusCallbackEvent",
    "recordingStatusCallbackMethod",
    "recordingTrack",
    "referMethod",
    "referUrl",
    "region",
    "reservationSid",
    "ringTone",
    "role",
    "sendDigits",
    "sequential",
    "sessionTimeout",
    "speechModel",
    "speechTimeout",
    "startConferenceOnEnter",
    "statusCallback",
    "statusCallbackEvent",
    "statusCallbackMethod",
    "strength",
    "time",
    "timeLimit",
    "timeout",
    "transcribe",
    "transcribeCallback",
    "trim",
    "url",
    "username",
    "value",
    "voice",
    "volume",
    "waitMethod",
    "waitUrl",
    "waitUrlMethod",
    "weight",
    "workflowSid",
    "xml:lang",
];

fn known_attribute(name: &str) -> Option<&'static str> {
    ATTRIBUTES.iter().copied().find(|known| *known == name)
}

/// The vocabulary's spelling of an element name, if it is one.
fn vocabulary(name: &str) -> Option<&'static str> {
    VERBS
        .iter()
        .chain(NOUNS)
        .chain(SSML)
        .copied()
        .find(|known| *known == name)
}

pub(super) fn is_vocabulary(name: &str) -> bool {
    vocabulary(name).is_some()
}

/// The SSML spelling of an element name, if it is an SSML element `<Say>` keeps.
pub(super) fn vocabulary_ssml(name: &str) -> Option<&'static str> {
    SSML.iter().copied().find(|known| *known == name)
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
