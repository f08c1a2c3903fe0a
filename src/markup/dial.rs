//! `<Dial>`, its nouns (`<Number>`, `<Sip>`, `<Client>`, `<Conference>`, `<Queue>`), and
//! `<Refer>`, which also names a `<Sip>` target.
//!
//! Combination rules (Twilio `<Dial>`/`<Number>` references and the SignalWire `<Sip>` noun):
//! up to 10 `<Number>`/`<Client>` nouns ring together; up to 10 `<Sip>` nouns, and nothing else
//! beside them; `<Conference>` and `<Queue>` stand alone. A `<Dial>` ringing `<Sip>` takes a
//! `callerId` of letters, digits and `+-_.,` only.
//!
//! A `<Sip>` URI is the element text, or in the nested form
//! `<Sip><Uri>sip:…</Uri><Headers><Header name="X-A" value="1"/></Headers></Sip>`; headers of
//! the nested form follow those of each URI's `?…` part. A dialled `<Sip>` may hold up to 10
//! `<Uri priority weight username password>`s, tried in turn (`ast::SipUriChoice`).

use std::borrow::Cow;

use super::ast::*;
use super::attrs::{self, trim_xml};
use super::error::{Expected, Problem};
use super::parse::{Attr, Child, Element, Parser, Step, push_trimmed, wait_url};
use super::sip_uri::parse_sip_uri;

/// A noun as read, before the combination rules pick a [`DialTarget`].
enum Noun {
    Number(Number),
    Client(Client),
    Sip(Sip),
    Conference(Conference),
    Queue(Queue),
}

impl Noun {
    fn name(&self) -> &'static str {
        match self {
            Noun::Number(_) => "Number",
            Noun::Client(_) => "Client",
            Noun::Sip(_) => "Sip",
            Noun::Conference(_) => "Conference",
            Noun::Queue(_) => "Queue",
        }
    }

    fn stands_alone(&self) -> bool {
        matches!(self, Noun::Conference(_) | Noun::Queue(_))
    }
}

/// `machineDetection*` / `amdStatusCallback*` attributes, gathered before knowing whether
/// detection is on.
struct AmdParts {
    mode: Option<MachineDetectionMode>,
    /// `machineDetection` was written (possibly with an invalid value).
    mode_given: bool,
    /// Where `machineDetection` was written.
    mode_offset: usize,
    settings: MachineDetection,
    /// The first tuning attribute seen, to warn about when detection stays off.
    first_setting: Option<(&'static str, usize)>,
}

impl AmdParts {
    fn new() -> AmdParts {
        AmdParts {
            mode: None,
            mode_given: false,
            mode_offset: 0,
            settings: MachineDetection::new(MachineDetectionMode::Enable),
            first_setting: None,
        }
    }
}

impl<'a> Parser<'a> {
    pub(super) fn dial(&mut self, element: &Element<'a>) -> Step<Dial> {
        let mut d = Dial {
            action: Action::default(),
            timeout: Dial::DEFAULT_TIMEOUT,
            hangup_on_star: false,
            time_limit: Dial::DEFAULT_TIME_LIMIT,
            caller_id: None,
            record: DialRecord::DoNotRecord,
            trim: Trim::DoNotTrim,
            recording_status_callback: RecordingStatusCallback::default(),
            recording_track: RecordingTrack::Both,
            answer_on_bridge: false,
            ring_tone: None,
            sequential: false,
            refer: Action::default(),
            target: DialTarget::Parties(Vec::new()),
            position: element.position,
        };
        let mut caller_id_offset = element.offset;
        self.attributes(element, "Dial", |p, a| match a.name {
            "action" => d.action.url = Parser::text(a),
            "method" => d.action.method = p.value(a, attrs::keyword).unwrap_or(d.action.method),
            "timeout" => {
                d.timeout = p
                    .value(a, |v| attrs::seconds(v, 1, Some(600)))
                    .unwrap_or(d.timeout)
            }
            "hangupOnStar" => d.hangup_on_star = p.value(a, attrs::boolean).unwrap_or(false),
            "timeLimit" => {
                d.time_limit = p
                    .value(a, |v| attrs::seconds(v, 1, Some(86400)))
                    .unwrap_or(d.time_limit)
            }
            "callerId" => {
                d.caller_id = Parser::text(a);
                caller_id_offset = a.offset;
            }
            "record" => d.record = p.value(a, attrs::dial_record).unwrap_or(d.record),
            "trim" => d.trim = p.value(a, attrs::keyword).unwrap_or(d.trim),
            "recordingTrack" => {
                d.recording_track = p.value(a, attrs::keyword).unwrap_or(d.recording_track)
            }
            "answerOnBridge" => d.answer_on_bridge = p.value(a, attrs::boolean).unwrap_or(false),
            "ringTone" => d.ring_tone = p.value(a, attrs::keyword),
            "sequential" => d.sequential = p.value(a, attrs::boolean).unwrap_or(false),
            "referUrl" => d.refer.url = Parser::text(a),
            "referMethod" => d.refer.method = p.value(a, attrs::keyword).unwrap_or(d.refer.method),
            _ => {
                if !p.recording_callback_attribute(a, &mut d.recording_status_callback) {
                    p.unknown_attribute(a);
                }
            }
        })?;

        let mut text = Cow::Borrowed("");
        let mut text_offset = element.offset;
        let mut nouns = Vec::new();
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(piece, offset) => {
                    if trim_xml(&text).is_empty() {
                        text_offset = offset;
                    }
                    push_trimmed(&mut text, piece);
                }
                Child::Element(inner) => {
                    let noun = match inner.name() {
                        "Number" => Noun::Number(self.number(&inner)?),
                        "Client" => Noun::Client(self.client(&inner)?),
                        "Sip" => Noun::Sip(self.sip(&inner)?),
                        "Conference" => Noun::Conference(self.conference(&inner)?),
                        "Queue" => Noun::Queue(self.queue(&inner)?),
                        _ => {
                            self.misplaced(&inner, "Dial")?;
                            continue;
                        }
                    };
                    nouns.push((noun, inner.offset));
                }
            }
        }

        let number = trim_xml(&text);
        if nouns.is_empty() {
            if number.is_empty() {
                let problem = Problem::MissingContent {
                    element: "Dial",
                    what: "a number or a noun",
                };
                self.report(problem, element.offset);
            } else {
                let number = self.phone_number("Dial", number, text_offset);
                d.target =
                    DialTarget::Parties(vec![Party::Number(bare_number(number, d.position))]);
            }
            return Ok(d);
        }
        if !number.is_empty() {
            let problem = Problem::Exclusive {
                element: "Dial",
                first: "a number as text",
                second: "nouns",
            };
            self.report(problem, text_offset);
        }
        d.target = self.dial_target(nouns);
        if let (DialTarget::Sip(_), Some(caller_id)) = (&d.target, &d.caller_id) {
            if !attrs::is_sip_caller_id(caller_id) {
                let problem = Problem::InvalidValue {
                    element: "Dial",
                    attribute: "callerId",
                    value: caller_id.clone(),
                    expected: Expected::SipCallerId,
                };
                self.report(problem, caller_id_offset);
                d.caller_id = None;
            }
        }
        Ok(d)
    }

    /// Applies the combination rules; on a violation reports it and returns what it could.
    fn dial_target(&mut self, nouns: Vec<(Noun, usize)>) -> DialTarget {
        if let Some(index) = nouns.iter().position(|(n, _)| n.stands_alone()) {
            if nouns.len() > 1 {
                let alone = nouns[index].0.name();
                let (other, offset) = nouns
                    .iter()
                    .enumerate()
                    .find(|(i, _)| *i != index)
                    .map(|(_, (n, offset))| (n.name(), *offset))
                    .unwrap_or((alone, 0));
                self.report(Problem::NounConflict { noun: alone, other }, offset);
            }
            return match nouns.into_iter().nth(index) {
                Some((Noun::Conference(c), _)) => DialTarget::Conference(c),
                Some((Noun::Queue(q), _)) => DialTarget::Queue(q),
                _ => DialTarget::Parties(Vec::new()),
            };
        }
        let any_sip = nouns.iter().any(|(n, _)| matches!(n, Noun::Sip(_)));
        let mut sips = Vec::new();
        let mut parties = Vec::new();
        let mut overflow = None;
        for (noun, offset) in nouns {
            let name = noun.name();
            match noun {
                Noun::Sip(sip) => sips.push(sip),
                Noun::Number(number) if !any_sip => parties.push(Party::Number(number)),
                Noun::Client(client) if !any_sip => parties.push(Party::Client(client)),
                _ => {
                    let problem = Problem::NounConflict {
                        noun: "Sip",
                        other: name,
                    };
                    self.report(problem, offset);
                    continue;
                }
            }
            if overflow.is_none() && sips.len().max(parties.len()) > Dial::MAX_PARTIES {
                overflow = Some((name, offset));
            }
        }
        if let Some((noun, offset)) = overflow {
            let problem = Problem::TooManyNouns {
                element: "Dial",
                noun,
                max: Dial::MAX_PARTIES,
            };
            self.report(problem, offset);
        }
        if any_sip {
            DialTarget::Sip(sips)
        } else {
            DialTarget::Parties(parties)
        }
    }

    /// A telephone number given as text; reports it when it is not one.
    fn phone_number(&mut self, element: &'static str, number: &str, offset: usize) -> String {
        if !attrs::is_phone_number(number) {
            let problem = Problem::InvalidText {
                element,
                value: number.to_owned(),
                expected: Expected::PhoneNumber,
            };
            self.report_text(problem, offset);
        }
        number.to_owned()
    }

    fn number(&mut self, element: &Element<'a>) -> Step<Number> {
        let mut n = Number {
            number: String::new(),
            send_digits: None,
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            byoc: None,
            machine_detection: None,
            position: element.position,
        };
        let mut amd = AmdParts::new();
        self.attributes(element, "Number", |p, a| match a.name {
            "sendDigits" => n.send_digits = p.value(a, attrs::digits),
            "url" => n.url.url = Parser::text(a),
            "method" => n.url.method = p.value(a, attrs::keyword).unwrap_or(n.url.method),
            "byoc" => n.byoc = Parser::text(a),
            _ => {
                if !p.call_callback_attribute(a, &mut n.status_callback)
                    && !p.amd_attribute(a, &mut amd)
                {
                    p.unknown_attribute(a);
                }
            }
        })?;
        n.machine_detection = self.finish_amd(amd, "Number");
        let text = self.required_text(element, "Number", "a phone number")?;
        if !text.is_empty() {
            n.number = self.phone_number("Number", &text, element.offset);
        }
        Ok(n)
    }

    /// `statusCallback*` of a dialled party; false when `attr` is not one of them.
    fn call_callback_attribute(&mut self, attr: &Attr<'_>, cb: &mut CallStatusCallback) -> bool {
        match attr.name {
            "statusCallback" => cb.url = Parser::text(attr),
            "statusCallbackMethod" => {
                cb.method = self.value(attr, attrs::keyword).unwrap_or(cb.method)
            }
            "statusCallbackEvent" => {
                cb.events = self.value(attr, attrs::keyword_set).unwrap_or(cb.events)
            }
            _ => return false,
        }
        true
    }

    /// Answering-machine detection attributes; false when `attr` is not one of them.
    fn amd_attribute(&mut self, attr: &Attr<'_>, amd: &mut AmdParts) -> bool {
        let settings = &mut amd.settings;
        let name: &'static str = match attr.name {
            "machineDetection" => {
                amd.mode = self.value(attr, attrs::keyword);
                amd.mode_given = true;
                amd.mode_offset = attr.offset;
                return true;
            }
            "machineDetectionTimeout" => {
                settings.timeout = self
                    .value(attr, |v| attrs::seconds(v, 3, Some(60)))
                    .unwrap_or(settings.timeout);
                "machineDetectionTimeout"
            }
            "machineDetectionSpeechThreshold" => {
                settings.speech_threshold = self
                    .value(attr, |v| attrs::millis(v, 1000, 6000))
                    .unwrap_or(settings.speech_threshold);
                "machineDetectionSpeechThreshold"
            }
            "machineDetectionSpeechEndThreshold" => {
                settings.speech_end_threshold = self
                    .value(attr, |v| attrs::millis(v, 500, 5000))
                    .unwrap_or(settings.speech_end_threshold);
                "machineDetectionSpeechEndThreshold"
            }
            "machineDetectionSilenceTimeout" => {
                settings.silence_timeout = self
                    .value(attr, |v| attrs::millis(v, 2000, 10000))
                    .unwrap_or(settings.silence_timeout);
                "machineDetectionSilenceTimeout"
            }
            "amdStatusCallback" => {
                settings.status_callback.url = Parser::text(attr);
                "amdStatusCallback"
            }
            "amdStatusCallbackMethod" => {
                settings.status_callback.method = self
                    .value(attr, attrs::keyword)
                    .unwrap_or(settings.status_callback.method);
                "amdStatusCallbackMethod"
            }
            _ => return false,
        };
        amd.first_setting.get_or_insert((name, attr.offset));
        true
    }

    fn finish_amd(&mut self, amd: AmdParts, element: &'static str) -> Option<MachineDetection> {
        match (amd.mode, amd.first_setting) {
            (Some(mode), _) => {
                let problem = Problem::Unavailable {
                    feature: "machineDetection",
                    effect: "no answering machine is detected: AnsweredBy is always unknown",
                };
                self.report(problem, amd.mode_offset);
                Some(MachineDetection {
                    mode,
                    ..amd.settings
                })
            }
            (None, Some((attribute, offset))) if !amd.mode_given => {
                let problem = Problem::WithoutEffect {
                    element,
                    attribute,
                    needs: "machineDetection",
                };
                self.report(problem, offset);
                None
            }
            (None, _) => None,
        }
    }

    fn sip(&mut self, element: &Element<'a>) -> Step<Sip> {
        let mut s = Sip {
            uris: Vec::new(),
            codecs: Sip::DEFAULT_CODECS.to_vec(),
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            username: None,
            password: None,
            session_timeout: None,
            machine_detection: None,
            position: element.position,
        };
        let mut amd = AmdParts::new();
        self.attributes(element, "Sip", |p, a| match a.name {
            "codecs" => {
                if let Some(codecs) = p.value(a, attrs::keyword_list) {
                    s.codecs = codecs;
                }
            }
            "url" => s.url.url = Parser::text(a),
            "method" => s.url.method = p.value(a, attrs::keyword).unwrap_or(s.url.method),
            "username" => s.username = Parser::text(a),
            "password" => s.password = Parser::text(a),
            "sessionTimeout" => {
                if let Some(timeout) = p.value(a, |v| attrs::seconds(v, 0, None)) {
                    s.session_timeout = (!timeout.is_zero()).then_some(timeout);
                }
            }
            _ => {
                if !p.call_callback_attribute(a, &mut s.status_callback)
                    && !p.amd_attribute(a, &mut amd)
                {
                    p.unknown_attribute(a);
                }
            }
        })?;
        s.machine_detection = self.finish_amd(amd, "Sip");
        s.uris = self.sip_uris(element, "Sip", true)?;
        Ok(s)
    }

    /// The URIs of a `<Sip>` element: its text, or the nested `<Uri>`/`<Headers>` form, with
    /// several `<Uri>`s (and their `priority`, `weight`, `username`, `password`) only when
    /// `several` (a dialled `<Sip>`; `<Refer><Sip>` names one target). Never empty: a URI
    /// that is missing or does not parse is reported and stands in as a placeholder.
    fn sip_uris(
        &mut self,
        element: &Element<'a>,
        name: &'static str,
        several: bool,
    ) -> Step<Vec<SipUriChoice>> {
        let mut text = Cow::Borrowed("");
        let mut nested: Vec<(SipUriChoice, String, usize)> = Vec::new();
        let mut headers = Vec::new();
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(piece, _) => push_trimmed(&mut text, piece),
                Child::Element(inner) => match inner.name() {
                    "Uri" => {
                        let (choice, uri) = self.uri_choice(&inner, several)?;
                        if !several && !nested.is_empty() {
                            let problem = Problem::Repeated {
                                element: "Uri",
                                parent: name,
                            };
                            self.report(problem, inner.offset);
                        } else if nested.len() == Sip::MAX_URIS {
                            let problem = Problem::TooManyNouns {
                                element: name,
                                noun: "Uri",
                                max: Sip::MAX_URIS,
                            };
                            self.report(problem, inner.offset);
                        }
                        nested.push((choice, uri, inner.offset));
                    }
                    "Headers" => self.sip_headers(&inner, &mut headers)?,
                    _ => self.misplaced(&inner, name)?,
                },
            }
        }
        let text = trim_xml(&text);
        if nested.is_empty() {
            let uri = self.sip_uri_text(text, name, element.offset, &headers);
            return Ok(vec![SipUriChoice::new(uri)]);
        }
        if !text.is_empty() {
            let problem = Problem::Exclusive {
                element: name,
                first: "a URI as text",
                second: "<Uri>",
            };
            self.report(problem, element.offset);
        }
        Ok(nested
            .into_iter()
            .map(|(mut choice, uri, offset)| {
                choice.uri = self.sip_uri_text(&uri, "Uri", offset, &headers);
                choice
            })
            .collect())
    }

    /// A `<Uri>` child: its attributes (only a dialled `<Sip>`'s take them) and its text,
    /// parsed once the `<Headers>` that may follow are read.
    fn uri_choice(&mut self, element: &Element<'a>, several: bool) -> Step<(SipUriChoice, String)> {
        let mut choice = SipUriChoice::new(placeholder_uri());
        self.attributes(element, "Uri", |p, a| match a.name {
            "priority" if several => {
                choice.priority = p
                    .value(a, |v| attrs::integer(v, 0, Some(65535), ""))
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(choice.priority)
            }
            "weight" if several => {
                choice.weight = p
                    .value(a, |v| attrs::integer(v, 1, Some(65535), ""))
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(choice.weight)
            }
            "username" if several => choice.username = Parser::text(a),
            "password" if several => choice.password = Parser::text(a),
            _ => p.unknown_attribute(a),
        })?;
        let uri = self.text_content(element, "Uri")?;
        Ok((choice, uri))
    }

    /// `text` parsed as a SIP URI, `headers` after its own; a placeholder once reported
    /// when it is empty or no URI.
    fn sip_uri_text(
        &mut self,
        text: &str,
        element: &'static str,
        offset: usize,
        headers: &[SipHeader],
    ) -> SipUri {
        let uri = trim_xml(text);
        if uri.is_empty() {
            let problem = Problem::MissingContent {
                element,
                what: "a SIP URI",
            };
            self.report(problem, offset);
            return placeholder_uri();
        }
        match parse_sip_uri(uri) {
            Ok(mut parsed) => {
                parsed.headers.extend(headers.iter().cloned());
                parsed
            }
            Err(fault) => {
                let uri = uri.to_owned();
                self.report(Problem::InvalidSipUri { uri, fault }, offset);
                placeholder_uri()
            }
        }
    }

    fn sip_headers(&mut self, element: &Element<'a>, headers: &mut Vec<SipHeader>) -> Step<()> {
        self.attributes(element, "Headers", |p, a| p.unknown_attribute(a))?;
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(text, offset) => {
                    if !trim_xml(&text).is_empty() {
                        self.report_text(Problem::StrayText { element: "Headers" }, offset);
                    }
                }
                Child::Element(inner) if inner.name() == "Header" => {
                    let (mut name, mut value) = (String::new(), String::new());
                    self.attributes(&inner, "Header", |p, a| match a.name {
                        "name" => name = a.value.to_owned(),
                        "value" => value = a.value.to_owned(),
                        _ => p.unknown_attribute(a),
                    })?;
                    self.no_content(&inner, "Header")?;
                    if name.is_empty() {
                        let problem = Problem::MissingContent {
                            element: "Header",
                            what: "a name attribute",
                        };
                        self.report(problem, inner.offset);
                    }
                    headers.push(SipHeader { name, value });
                }
                Child::Element(inner) => self.misplaced(&inner, "Headers")?,
            }
        }
        Ok(())
    }

    fn client(&mut self, element: &Element<'a>) -> Step<Client> {
        let mut c = Client {
            identity: String::new(),
            parameters: Vec::new(),
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            position: element.position,
        };
        self.attributes(element, "Client", |p, a| match a.name {
            "url" => c.url.url = Parser::text(a),
            "method" => c.url.method = p.value(a, attrs::keyword).unwrap_or(c.url.method),
            _ => {
                if !p.call_callback_attribute(a, &mut c.status_callback) {
                    p.unknown_attribute(a);
                }
            }
        })?;
        let mut text = Cow::Borrowed("");
        let mut identity: Option<String> = None;
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(piece, _) => push_trimmed(&mut text, piece),
                Child::Element(inner) => match inner.name() {
                    "Identity" => {
                        self.attributes(&inner, "Identity", |p, a| p.unknown_attribute(a))?;
                        let value = self.text_content(&inner, "Identity")?;
                        if identity.replace(value).is_some() {
                            let problem = Problem::Repeated {
                                element: "Identity",
                                parent: "Client",
                            };
                            self.report(problem, inner.offset);
                        }
                    }
                    "Parameter" => {
                        let mut parameter = ClientParameter {
                            name: String::new(),
                            value: String::new(),
                        };
                        self.attributes(&inner, "Parameter", |p, a| match a.name {
                            "name" => parameter.name = a.value.to_owned(),
                            "value" => parameter.value = a.value.to_owned(),
                            _ => p.unknown_attribute(a),
                        })?;
                        self.no_content(&inner, "Parameter")?;
                        if parameter.name.is_empty() {
                            let problem = Problem::MissingContent {
                                element: "Parameter",
                                what: "a name attribute",
                            };
                            self.report(problem, inner.offset);
                        }
                        c.parameters.push(parameter);
                    }
                    _ => self.misplaced(&inner, "Client")?,
                },
            }
        }
        let text = trim_xml(&text);
        c.identity = match identity {
            Some(identity) if !text.is_empty() => {
                let problem = Problem::Exclusive {
                    element: "Client",
                    first: "an identity as text",
                    second: "<Identity>",
                };
                self.report(problem, element.offset);
                identity
            }
            Some(identity) => identity,
            None => text.to_owned(),
        };
        if c.identity.is_empty() {
            let problem = Problem::MissingContent {
                element: "Client",
                what: "an identity",
            };
            self.report(problem, element.offset);
        }
        Ok(c)
    }

    fn conference(&mut self, element: &Element<'a>) -> Step<Conference> {
        let mut c = Conference {
            name: String::new(),
            muted: false,
            beep: ConferenceBeep::True,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            wait: WaitUrl::Default,
            wait_method: HttpMethod::Post,
            max_participants: Conference::DEFAULT_MAX_PARTICIPANTS,
            record: ConferenceRecord::DoNotRecord,
            region: None,
            coach: None,
            trim: Trim::TrimSilence,
            status_callback_event: KeywordSet::empty(),
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            recording_status_callback: RecordingStatusCallback::default(),
            event_callback_url: None,
            jitter_buffer_size: JitterBufferSize::Large,
            participant_label: None,
            position: element.position,
        };
        self.attributes(element, "Conference", |p, a| match a.name {
            "muted" => c.muted = p.value(a, attrs::boolean).unwrap_or(false),
            "beep" => c.beep = p.value(a, attrs::keyword).unwrap_or(c.beep),
            "startConferenceOnEnter" => {
                c.start_conference_on_enter = p.value(a, attrs::boolean).unwrap_or(true)
            }
            "endConferenceOnExit" => {
                c.end_conference_on_exit = p.value(a, attrs::boolean).unwrap_or(false)
            }
            "waitUrl" => c.wait = wait_url(a.value),
            "waitMethod" => c.wait_method = p.value(a, attrs::keyword).unwrap_or(c.wait_method),
            "maxParticipants" => {
                c.max_participants = p
                    .value(a, |v| attrs::integer(v, 2, Some(250), ""))
                    .unwrap_or(c.max_participants)
            }
            "record" => c.record = p.value(a, attrs::keyword).unwrap_or(c.record),
            "region" => c.region = p.value(a, attrs::keyword),
            "coach" => c.coach = p.value(a, call_sid),
            "trim" => c.trim = p.value(a, attrs::keyword).unwrap_or(c.trim),
            "statusCallbackEvent" => {
                c.status_callback_event = p
                    .value(a, attrs::keyword_set)
                    .unwrap_or(c.status_callback_event)
            }
            "statusCallback" => c.status_callback = Parser::text(a),
            "statusCallbackMethod" => {
                c.status_callback_method = p
                    .value(a, attrs::keyword)
                    .unwrap_or(c.status_callback_method)
            }
            "eventCallbackUrl" => c.event_callback_url = Parser::text(a),
            "jitterBufferSize" => {
                c.jitter_buffer_size = p.value(a, attrs::keyword).unwrap_or(c.jitter_buffer_size)
            }
            "participantLabel" => c.participant_label = Parser::text(a),
            _ => {
                if !p.recording_callback_attribute(a, &mut c.recording_status_callback) {
                    p.unknown_attribute(a);
                }
            }
        })?;
        c.name = self.required_text(element, "Conference", "a conference name")?;
        Ok(c)
    }

    fn queue(&mut self, element: &Element<'a>) -> Step<Queue> {
        let mut url = Action::default();
        self.attributes(element, "Queue", |p, a| match a.name {
            "url" => url.url = Parser::text(a),
            "method" => url.method = p.value(a, attrs::keyword).unwrap_or(url.method),
            "reservationSid" => p.without_task_router(a, "reservationSid"),
            "postWorkActivitySid" => p.without_task_router(a, "postWorkActivitySid"),
            _ => p.unknown_attribute(a),
        })?;
        let name = self.required_text(element, "Queue", "a queue name")?;
        Ok(Queue {
            name,
            url,
            position: element.position,
        })
    }

    pub(super) fn refer(&mut self, element: &Element<'a>) -> Step<Refer> {
        let problem = Problem::Unavailable {
            feature: "<Refer>",
            effect: "the verb is skipped and the document goes on",
        };
        self.report(problem, element.offset);
        let mut action = Action::default();
        self.attributes(element, "Refer", |p, a| match a.name {
            "action" => action.url = Parser::text(a),
            "method" => action.method = p.value(a, attrs::keyword).unwrap_or(action.method),
            _ => p.unknown_attribute(a),
        })?;
        let mut target = None;
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(text, offset) => {
                    if !trim_xml(&text).is_empty() {
                        self.report_text(Problem::StrayText { element: "Refer" }, offset);
                    }
                }
                Child::Element(inner) if inner.name() == "Sip" => {
                    self.attributes(&inner, "Sip", |p, a| p.unknown_attribute(a))?;
                    let uri = self.sip_uris(&inner, "Sip", false)?.swap_remove(0).uri;
                    if target.replace(uri).is_some() {
                        let problem = Problem::Repeated {
                            element: "Sip",
                            parent: "Refer",
                        };
                        self.report(problem, inner.offset);
                    }
                }
                Child::Element(inner) => self.misplaced(&inner, "Refer")?,
            }
        }
        let target = target.unwrap_or_else(|| {
            let problem = Problem::MissingContent {
                element: "Refer",
                what: "a <Sip> target",
            };
            self.report(problem, element.offset);
            placeholder_uri()
        });
        Ok(Refer {
            action,
            target,
            position: element.position,
        })
    }
}

/// `<Dial>+15551234567</Dial>`: a `<Number>` with default attributes.
fn bare_number(number: String, position: Position) -> Number {
    Number {
        number,
        send_digits: None,
        url: Action::default(),
        status_callback: CallStatusCallback::default(),
        byoc: None,
        machine_detection: None,
        position,
    }
}

fn call_sid(value: &str) -> Result<String, Expected> {
    if crate::ids::Sid::is_valid("CA", value) {
        Ok(value.to_owned())
    } else {
        Err(Expected::CallSid)
    }
}

/// Stands in for a URI that failed to parse; the error already recorded makes the whole
/// document fail, so it is never run.
fn placeholder_uri() -> SipUri {
    SipUri {
        scheme: SipScheme::Sip,
        user: None,
        host: String::new(),
        port: None,
        transport: None,
        params: Vec::new(),
        headers: Vec::new(),
    }
}
