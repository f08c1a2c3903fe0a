//! [`Document`] → XML: the canonical text of a document.
//!
//! Attributes equal to their default are left out, a bare `<Dial>` number is written as a
//! `<Number>` noun, and `<Say>` content is written inline exactly as held (no indentation is
//! added inside it, since spaces are spoken). Parsing the output gives back an equal document;
//! the property tests check this.

use std::fmt::{Display, Write};
use std::time::Duration;

use super::ast::*;

/// The XML text of `document`, with an XML declaration and two-space indentation.
pub fn print(document: &Document) -> String {
    let mut out = String::with_capacity(128 + 96 * document.verbs.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if document.verbs.is_empty() {
        out.push_str("<Response/>\n");
        return out;
    }
    out.push_str("<Response>\n");
    for verb in &document.verbs {
        print_verb(&mut out, verb);
    }
    out.push_str("</Response>\n");
    out
}

/// A start tag being written.
struct Tag<'o> {
    out: &'o mut String,
    name: &'static str,
    depth: usize,
}

impl<'o> Tag<'o> {
    fn open(out: &'o mut String, depth: usize, name: &'static str) -> Tag<'o> {
        indent(out, depth);
        out.push('<');
        out.push_str(name);
        Tag { out, name, depth }
    }

    fn attr(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        let start = self.out.len();
        let _ = write!(self.out, "{value}");
        if self.out[start..].contains(['&', '<', '>', '"', '\t', '\n', '\r']) {
            let raw = self.out.split_off(start);
            escape(self.out, &raw, true);
        }
        self.out.push('"');
        self
    }

    fn attr_if(&mut self, condition: bool, name: &str, value: impl Display) -> &mut Self {
        if condition {
            self.attr(name, value);
        }
        self
    }

    fn opt(&mut self, name: &str, value: &Option<String>) -> &mut Self {
        if let Some(value) = value {
            self.attr(name, value);
        }
        self
    }

    fn method(&mut self, name: &str, method: HttpMethod) -> &mut Self {
        self.attr_if(method != HttpMethod::Post, name, method)
    }

    fn flag(&mut self, name: &str, value: bool, default: bool) -> &mut Self {
        self.attr_if(value != default, name, value)
    }

    fn seconds(&mut self, name: &str, value: Duration, default: Duration) -> &mut Self {
        self.attr_if(value != default, name, value.as_secs())
    }

    fn millis(&mut self, name: &str, value: Duration, default: Duration) -> &mut Self {
        self.attr_if(value != default, name, value.as_millis())
    }

    fn action(&mut self, url: &str, method: &str, action: &Action) -> &mut Self {
        self.opt(url, &action.url).method(method, action.method)
    }

    /// `<x …/>`.
    fn empty(&mut self) {
        self.out.push_str("/>\n");
    }

    /// `<x …>text</x>`.
    fn text(&mut self, text: &str) {
        self.out.push('>');
        escape(self.out, text, false);
        self.close_inline();
    }

    fn close_inline(&mut self) {
        self.out.push_str("</");
        self.out.push_str(self.name);
        self.out.push_str(">\n");
    }

    /// `<x …>` then one child per line, then `</x>`; `<x …/>` when `children` writes nothing.
    fn children(&mut self, children: impl FnOnce(&mut String)) {
        let mark = self.out.len();
        self.out.push_str(">\n");
        let before = self.out.len();
        children(self.out);
        if self.out.len() == before {
            self.out.truncate(mark);
            self.out.push_str("/>\n");
        } else {
            indent(self.out, self.depth);
            self.close_inline();
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// `text` XML-escaped, fit for element content and attribute values alike.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape(&mut out, text, true);
    out
}

/// XML-escapes `text`; in attributes also quotes and the whitespace that attribute-value
/// normalisation would turn into spaces. `\r` is escaped everywhere: parsers rewrite a literal
/// one as `\n`.
fn escape(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
}

fn print_verb(out: &mut String, verb: &Verb) {
    match verb {
        Verb::Say(say) => print_say(out, 1, say),
        Verb::Play(play) => print_play(out, 1, play),
        Verb::Pause(pause) => print_pause(out, 1, pause),
        Verb::Gather(g) => {
            let mut tag = Tag::open(out, 1, "Gather");
            tag.action("action", "method", &g.action)
                .attr_if(g.input != GatherInput::Dtmf, "input", g.input)
                .seconds("timeout", g.timeout, Gather::DEFAULT_TIMEOUT)
                .attr_if(
                    g.finish_on_key != KeywordSet::of(&[DtmfKey::Pound]),
                    "finishOnKey",
                    Keys(g.finish_on_key),
                )
                .flag("actionOnEmptyResult", g.action_on_empty_result, false)
                .opt("partialResultCallback", &g.partial_result_callback)
                .method(
                    "partialResultCallbackMethod",
                    g.partial_result_callback_method,
                )
                .attr_if(
                    g.language != Gather::DEFAULT_LANGUAGE,
                    "language",
                    &g.language,
                )
                .attr_if(!g.hints.is_empty(), "hints", g.hints.join(", "))
                .flag("profanityFilter", g.profanity_filter, true)
                .opt("speechModel", &g.speech_model)
                .flag("enhanced", g.enhanced, false);
            if let Some(n) = g.num_digits {
                tag.attr("numDigits", n);
            }
            match g.speech_timeout {
                SpeechTimeout::Auto => {
                    tag.attr("speechTimeout", "auto");
                }
                SpeechTimeout::After(after) => {
                    tag.seconds("speechTimeout", after, g.timeout);
                }
            }
            tag.children(|out| {
                for child in &g.children {
                    match child {
                        GatherChild::Say(say) => print_say(out, 2, say),
                        GatherChild::Play(play) => print_play(out, 2, play),
                        GatherChild::Pause(pause) => print_pause(out, 2, pause),
                    }
                }
            });
        }
        Verb::Record(r) => {
            let mut tag = Tag::open(out, 1, "Record");
            tag.action("action", "method", &r.action);
            match r.timeout {
                None => tag.attr("timeout", 0),
                Some(t) => tag.seconds("timeout", t, Record::DEFAULT_TIMEOUT),
            };
            tag.attr_if(
                r.finish_on_key != KeywordSet::of(DtmfKey::ALL),
                "finishOnKey",
                Keys(r.finish_on_key),
            )
            .seconds("maxLength", r.max_length, Record::DEFAULT_MAX_LENGTH)
            .flag("playBeep", r.play_beep, true)
            .attr_if(r.trim != Trim::TrimSilence, "trim", r.trim)
            .flag("transcribe", r.transcribe, false)
            .opt("transcribeCallback", &r.transcribe_callback);
            recording_callback(&mut tag, &r.recording_status_callback);
            tag.empty();
        }
        Verb::Dial(d) => print_dial(out, d),
        Verb::Hangup(_) => Tag::open(out, 1, "Hangup").empty(),
        Verb::Leave(_) => Tag::open(out, 1, "Leave").empty(),
        Verb::Redirect(r) => Tag::open(out, 1, "Redirect")
            .method("method", r.method)
            .text(&r.url),
        Verb::Reject(r) => Tag::open(out, 1, "Reject")
            .attr_if(r.reason != RejectReason::Rejected, "reason", r.reason)
            .empty(),
        Verb::Enqueue(e) => {
            let mut tag = Tag::open(out, 1, "Enqueue");
            tag.action("action", "method", &e.action);
            wait_url(&mut tag, "waitUrl", &e.wait);
            tag.method("waitUrlMethod", e.wait_url_method).text(&e.name);
        }
        Verb::Refer(r) => Tag::open(out, 1, "Refer")
            .action("action", "method", &r.action)
            .children(|out| Tag::open(out, 2, "Sip").text(&r.target.to_string())),
        Verb::Echo(e) => Tag::open(out, 1, "Echo")
            .seconds("timeout", e.timeout, Echo::DEFAULT_TIMEOUT)
            .empty(),
    }
}

/// `finishOnKey` text: the keys in keypad order.
struct Keys(KeywordSet<DtmfKey>);

impl Display for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|k| f.write_str(k.keyword()))
    }
}

fn recording_callback(tag: &mut Tag<'_>, cb: &RecordingStatusCallback) {
    tag.opt("recordingStatusCallback", &cb.url)
        .method("recordingStatusCallbackMethod", cb.method)
        .attr_if(
            cb.events != RecordingStatusCallback::default().events,
            "recordingStatusCallbackEvent",
            cb.events,
        );
}

fn call_callback(tag: &mut Tag<'_>, cb: &CallStatusCallback) {
    tag.opt("statusCallback", &cb.url)
        .method("statusCallbackMethod", cb.method)
        .attr_if(
            cb.events != CallStatusCallback::default().events,
            "statusCallbackEvent",
            cb.events,
        );
}

fn wait_url(tag: &mut Tag<'_>, name: &str, wait: &WaitUrl) {
    match wait {
        WaitUrl::Default => {}
        WaitUrl::Silence => {
            tag.attr(name, "");
        }
        WaitUrl::Url(url) => {
            tag.attr(name, url);
        }
    }
}

fn machine_detection(tag: &mut Tag<'_>, amd: &Option<MachineDetection>) {
    let Some(amd) = amd else { return };
    tag.attr("machineDetection", amd.mode)
        .seconds(
            "machineDetectionTimeout",
            amd.timeout,
            MachineDetection::DEFAULT_TIMEOUT,
        )
        .millis(
            "machineDetectionSpeechThreshold",
            amd.speech_threshold,
            MachineDetection::DEFAULT_SPEECH_THRESHOLD,
        )
        .millis(
            "machineDetectionSpeechEndThreshold",
            amd.speech_end_threshold,
            MachineDetection::DEFAULT_SPEECH_END_THRESHOLD,
        )
        .millis(
            "machineDetectionSilenceTimeout",
            amd.silence_timeout,
            MachineDetection::DEFAULT_SILENCE_TIMEOUT,
        )
        .action(
            "amdStatusCallback",
            "amdStatusCallbackMethod",
            &amd.status_callback,
        );
}

fn print_say(out: &mut String, depth: usize, say: &Say) {
    let mut tag = Tag::open(out, depth, "Say");
    tag.attr_if(say.voice != Say::DEFAULT_VOICE, "voice", &say.voice)
        .attr_if(
            say.language != Say::DEFAULT_LANGUAGE,
            "language",
            &say.language,
        );
    repeat(&mut tag, say.repeat);
    if say.content.is_empty() {
        tag.empty();
        return;
    }
    tag.out.push('>');
    print_ssml(tag.out, &say.content);
    tag.close_inline();
}

fn repeat(tag: &mut Tag<'_>, repeat: Repeat) {
    match repeat {
        Repeat::Forever => {
            tag.attr("loop", 0);
        }
        Repeat::Times(n) => {
            tag.attr_if(n.get() != 1, "loop", n);
        }
    }
}

fn print_play(out: &mut String, depth: usize, play: &Play) {
    let mut tag = Tag::open(out, depth, "Play");
    repeat(&mut tag, play.repeat);
    match &play.source {
        PlaySource::Digits(digits) => tag.attr("digits", digits.as_str()).empty(),
        PlaySource::Url(url) => tag.text(url),
    }
}

fn print_pause(out: &mut String, depth: usize, pause: &Pause) {
    Tag::open(out, depth, "Pause")
        .seconds("length", pause.length, Pause::DEFAULT_LENGTH)
        .empty();
}

/// SSML inline: `<name attrs>children</name>`, or `<name attrs/>` without children.
fn ssml_element(
    out: &mut String,
    name: &str,
    attrs: &[(&str, Option<&str>)],
    children: &[SsmlNode],
) {
    out.push('<');
    out.push_str(name);
    for (attr, value) in attrs {
        if let Some(value) = value {
            out.push(' ');
            out.push_str(attr);
            out.push_str("=\"");
            escape(out, value, true);
            out.push('"');
        }
    }
    if children.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        print_ssml(out, children);
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

fn print_ssml(out: &mut String, nodes: &[SsmlNode]) {
    for node in nodes {
        match node {
            SsmlNode::Text(text) => escape(out, text, false),
            SsmlNode::Break(b) => {
                let time = b.time.map(|t| format!("{}ms", t.as_millis()));
                let strength = b.strength.map(|s| s.keyword());
                ssml_element(
                    out,
                    "break",
                    &[("strength", strength), ("time", time.as_deref())],
                    &[],
                );
            }
            SsmlNode::Emphasis { level, children } => ssml_element(
                out,
                "emphasis",
                &[("level", level.map(|l| l.keyword()))],
                children,
            ),
            SsmlNode::Lang { lang, children } => {
                ssml_element(out, "lang", &[("xml:lang", Some(lang))], children)
            }
            SsmlNode::Paragraph(children) => ssml_element(out, "p", &[], children),
            SsmlNode::Phoneme {
                alphabet,
                ph,
                children,
            } => ssml_element(
                out,
                "phoneme",
                &[
                    ("alphabet", alphabet.map(|a| a.keyword())),
                    ("ph", Some(ph)),
                ],
                children,
            ),
            SsmlNode::Prosody {
                volume,
                rate,
                pitch,
                children,
            } => ssml_element(
                out,
                "prosody",
                &[
                    ("volume", volume.as_deref()),
                    ("rate", rate.as_deref()),
                    ("pitch", pitch.as_deref()),
                ],
                children,
            ),
            SsmlNode::Sentence(children) => ssml_element(out, "s", &[], children),
            SsmlNode::SayAs {
                interpret_as,
                format,
                children,
            } => ssml_element(
                out,
                "say-as",
                &[
                    ("interpret-as", Some(interpret_as)),
                    ("format", format.as_deref()),
                ],
                children,
            ),
            SsmlNode::Sub { alias, children } => {
                ssml_element(out, "sub", &[("alias", Some(alias))], children)
            }
            SsmlNode::Word { role, children } => {
                ssml_element(out, "w", &[("role", role.as_deref())], children)
            }
        }
    }
}

fn print_dial(out: &mut String, d: &Dial) {
    let mut tag = Tag::open(out, 1, "Dial");
    tag.action("action", "method", &d.action)
        .seconds("timeout", d.timeout, Dial::DEFAULT_TIMEOUT)
        .flag("hangupOnStar", d.hangup_on_star, false)
        .seconds("timeLimit", d.time_limit, Dial::DEFAULT_TIME_LIMIT)
        .opt("callerId", &d.caller_id)
        .attr_if(d.record != DialRecord::DoNotRecord, "record", d.record)
        .attr_if(d.trim != Trim::DoNotTrim, "trim", d.trim)
        .attr_if(
            d.recording_track != RecordingTrack::Both,
            "recordingTrack",
            d.recording_track,
        )
        .flag("answerOnBridge", d.answer_on_bridge, false)
        .flag("sequential", d.sequential, false)
        .action("referUrl", "referMethod", &d.refer);
    if let Some(tone) = d.ring_tone {
        tag.attr("ringTone", tone);
    }
    recording_callback(&mut tag, &d.recording_status_callback);
    tag.children(|out| match &d.target {
        DialTarget::Parties(parties) => {
            for party in parties {
                match party {
                    Party::Number(n) => print_number(out, n),
                    Party::Client(c) => print_client(out, c),
                }
            }
        }
        DialTarget::Sip(sips) => sips.iter().for_each(|s| print_sip(out, s)),
        DialTarget::Conference(c) => print_conference(out, c),
        DialTarget::Queue(q) => Tag::open(out, 2, "Queue")
            .action("url", "method", &q.url)
            .text(&q.name),
    });
}

fn print_number(out: &mut String, n: &Number) {
    let mut tag = Tag::open(out, 2, "Number");
    if let Some(digits) = &n.send_digits {
        tag.attr("sendDigits", digits.as_str());
    }
    tag.action("url", "method", &n.url).opt("byoc", &n.byoc);
    call_callback(&mut tag, &n.status_callback);
    machine_detection(&mut tag, &n.machine_detection);
    tag.text(&n.number);
}

fn print_sip(out: &mut String, s: &Sip) {
    let mut tag = Tag::open(out, 2, "Sip");
    if s.codecs != Sip::DEFAULT_CODECS {
        let codecs: Vec<&str> = s.codecs.iter().map(|c| c.keyword()).collect();
        tag.attr("codecs", codecs.join(","));
    }
    tag.action("url", "method", &s.url)
        .opt("username", &s.username)
        .opt("password", &s.password);
    if let Some(timeout) = s.session_timeout {
        tag.attr("sessionTimeout", timeout.as_secs());
    }
    call_callback(&mut tag, &s.status_callback);
    machine_detection(&mut tag, &s.machine_detection);
    match s.uris.as_slice() {
        [only] if only.is_plain() => tag.text(&only.uri.to_string()),
        uris => tag.children(|out| {
            for choice in uris {
                Tag::open(out, 3, "Uri")
                    .attr_if(
                        choice.priority != SipUriChoice::DEFAULT_PRIORITY,
                        "priority",
                        choice.priority,
                    )
                    .attr_if(
                        choice.weight != SipUriChoice::DEFAULT_WEIGHT,
                        "weight",
                        choice.weight,
                    )
                    .opt("username", &choice.username)
                    .opt("password", &choice.password)
                    .text(&choice.uri.to_string());
            }
        }),
    }
}

fn print_client(out: &mut String, c: &Client) {
    let mut tag = Tag::open(out, 2, "Client");
    tag.action("url", "method", &c.url);
    call_callback(&mut tag, &c.status_callback);
    if c.parameters.is_empty() {
        tag.text(&c.identity);
        return;
    }
    tag.children(|out| {
        Tag::open(out, 3, "Identity").text(&c.identity);
        for parameter in &c.parameters {
            Tag::open(out, 3, "Parameter")
                .attr("name", &parameter.name)
                .attr("value", &parameter.value)
                .empty();
        }
    });
}

fn print_conference(out: &mut String, c: &Conference) {
    let mut tag = Tag::open(out, 2, "Conference");
    tag.flag("muted", c.muted, false)
        .attr_if(c.beep != ConferenceBeep::True, "beep", c.beep)
        .flag("startConferenceOnEnter", c.start_conference_on_enter, true)
        .flag("endConferenceOnExit", c.end_conference_on_exit, false);
    wait_url(&mut tag, "waitUrl", &c.wait);
    tag.method("waitMethod", c.wait_method)
        .attr_if(
            c.max_participants != Conference::DEFAULT_MAX_PARTICIPANTS,
            "maxParticipants",
            c.max_participants,
        )
        .attr_if(
            c.record != ConferenceRecord::DoNotRecord,
            "record",
            c.record,
        )
        .opt("coach", &c.coach)
        .attr_if(c.trim != Trim::TrimSilence, "trim", c.trim)
        .attr_if(
            !c.status_callback_event.is_empty(),
            "statusCallbackEvent",
            c.status_callback_event,
        )
        .opt("statusCallback", &c.status_callback)
        .method("statusCallbackMethod", c.status_callback_method)
        .opt("eventCallbackUrl", &c.event_callback_url)
        .attr_if(
            c.jitter_buffer_size != JitterBufferSize::Large,
            "jitterBufferSize",
            c.jitter_buffer_size,
        )
        .opt("participantLabel", &c.participant_label);
    if let Some(region) = c.region {
        tag.attr("region", region);
    }
    recording_callback(&mut tag, &c.recording_status_callback);
    tag.text(&c.name);
}
