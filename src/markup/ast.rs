//! The typed document model: one [`Verb`] enum, one struct per TwiML / LaML verb and noun.
//!
//! Everything the interpreter needs is decided here, once, by the parser:
//! - nesting is enforced by types (a [`Gather`] holds only [`GatherChild`]ren, a [`Dial`] holds
//!   one [`DialTarget`], which cannot mix `<Sip>` with other nouns);
//! - attribute values are typed ([`HttpMethod`], [`Repeat`], [`KeywordSet`]s of callback events,
//!   [`Duration`]s) and every attribute a document leaves out already carries the default Twilio
//!   (or, for LaML-only attributes, SignalWire) documents, so no later layer re-derives one;
//! - every verb and noun keeps the [`Position`] of its start tag, so run-time problems can be
//!   reported against the document.
//!
//! Positions are metadata, not meaning: [`Position`] compares equal to every other position
//! (as `syn` does for spans), so two documents are `==` when they say the same thing, wherever
//! their elements sit. The parser/printer round-trip property relies on this.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

/// Where an element starts in its document: 1-based line and column (in characters).
///
/// Equality and hashing ignore the value: see the module documentation.
#[derive(Clone, Copy, Default)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub const fn new(line: u32, column: u32) -> Position {
        Position { line, column }
    }
}

impl PartialEq for Position {
    fn eq(&self, _: &Position) -> bool {
        true
    }
}

impl Eq for Position {}

impl std::hash::Hash for Position {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// An enumerated attribute value: a closed list of keywords, matched ASCII-case-insensitively
/// when parsed and printed in the spelling the platforms document.
pub trait Keyword: Copy + Eq + 'static {
    /// Every value, in documentation order (also the order sets print in).
    const ALL: &'static [Self];
    /// The documented spelling.
    fn keyword(self) -> &'static str;
    /// The value whose spelling equals `text`, ignoring ASCII case.
    fn from_keyword(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.keyword().eq_ignore_ascii_case(text))
    }
}

macro_rules! keywords {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl Keyword for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn keyword(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.keyword())
            }
        }
    };
}

/// A set of [`Keyword`]s (e.g. `statusCallbackEvent="ringing answered"`): order and repeats in
/// the document do not matter.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeywordSet<K: Keyword> {
    bits: u32,
    kind: PhantomData<K>,
}

impl<K: Keyword> KeywordSet<K> {
    pub const fn empty() -> Self {
        KeywordSet {
            bits: 0,
            kind: PhantomData,
        }
    }

    pub fn of(members: &[K]) -> Self {
        let mut set = Self::empty();
        for &m in members {
            set.insert(m);
        }
        set
    }

    fn bit(member: K) -> u32 {
        let index = K::ALL.iter().position(|&k| k == member).unwrap_or(0);
        1 << index
    }

    pub fn insert(&mut self, member: K) {
        self.bits |= Self::bit(member);
    }

    pub fn contains(&self, member: K) -> bool {
        self.bits & Self::bit(member) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Members in documentation order.
    pub fn iter(&self) -> impl Iterator<Item = K> + '_ {
        K::ALL.iter().copied().filter(|&k| self.contains(k))
    }
}

impl<K: Keyword> Default for KeywordSet<K> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<K: Keyword> fmt::Debug for KeywordSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|k| k.keyword()))
            .finish()
    }
}

impl<K: Keyword> fmt::Display for KeywordSet<K> {
    /// Space-separated keywords, the form the attributes take.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(k.keyword())?;
        }
        Ok(())
    }
}

keywords! {
    /// `method`, `statusCallbackMethod`, ... (default `POST` everywhere).
    #[derive(Default)]
    HttpMethod { Get = "GET", #[default] Post = "POST" }
}

keywords! {
    /// A telephone keypad key, as used by `finishOnKey`.
    DtmfKey {
        D1 = "1", D2 = "2", D3 = "3", D4 = "4", D5 = "5",
        D6 = "6", D7 = "7", D8 = "8", D9 = "9", D0 = "0",
        Star = "*", Pound = "#",
    }
}

/// `statusCallbackEvent` of `<Number>`, `<Sip>`, `<Client>` (default `completed`).
pub type CallEvents = KeywordSet<CallEvent>;

keywords! {
    /// A call progress event a party's status callback can report.
    CallEvent {
        Initiated = "initiated",
        Ringing = "ringing",
        Answered = "answered",
        Completed = "completed",
    }
}

keywords! {
    /// A recording event `recordingStatusCallbackEvent` can report.
    RecordingEvent { InProgress = "in-progress", Completed = "completed", Absent = "absent" }
}

keywords! {
    /// A conference event `<Conference statusCallbackEvent>` can report.
    ConferenceEvent {
        Start = "start", End = "end", Join = "join", Leave = "leave", Mute = "mute",
        Hold = "hold", Modify = "modify", Speaker = "speaker", Announcement = "announcement",
    }
}

/// How many times `<Say>` / `<Play>` run: `loop="0"` means until the call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repeat {
    Times(NonZeroU32),
    Forever,
}

impl Repeat {
    /// The default, `loop="1"`.
    pub const ONCE: Repeat = Repeat::Times(NonZeroU32::MIN);
}

/// A validated DTMF string (`<Play digits>`, `<Number sendDigits>`): keypad keys `0-9 * #`,
/// `A-D`, and `w` (wait half a second) or `W` (wait one second).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DtmfDigits(pub(crate) String);

impl DtmfDigits {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DtmfDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Where a verb sends its result (`action` + `method`). `url` is `None` when the attribute is
/// absent or empty: the interpreter then applies each verb's own rule (re-request the current
/// document for `<Gather>`/`<Record>`, continue with the next verb for `<Dial>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Action {
    pub url: Option<String>,
    pub method: HttpMethod,
}

/// `statusCallback`, `statusCallbackMethod` and `statusCallbackEvent` of a dialled party.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallStatusCallback {
    pub url: Option<String>,
    pub method: HttpMethod,
    /// Default `completed`.
    pub events: CallEvents,
}

impl Default for CallStatusCallback {
    fn default() -> Self {
        CallStatusCallback {
            url: None,
            method: HttpMethod::Post,
            events: CallEvents::of(&[CallEvent::Completed]),
        }
    }
}

/// `recordingStatusCallback`, `recordingStatusCallbackMethod`, `recordingStatusCallbackEvent`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordingStatusCallback {
    pub url: Option<String>,
    pub method: HttpMethod,
    /// Default `completed`.
    pub events: KeywordSet<RecordingEvent>,
}

impl Default for RecordingStatusCallback {
    fn default() -> Self {
        RecordingStatusCallback {
            url: None,
            method: HttpMethod::Post,
            events: KeywordSet::of(&[RecordingEvent::Completed]),
        }
    }
}

keywords! {
    /// `trim`: whether leading and trailing silence is removed from a recording.
    Trim { TrimSilence = "trim-silence", DoNotTrim = "do-not-trim" }
}

/// A parsed document: the verbs inside `<Response>`, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Document {
    pub verbs: Vec<Verb>,
}

/// One instruction of a document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Say(Say),
    Play(Play),
    Pause(Pause),
    Gather(Gather),
    Record(Record),
    Dial(Dial),
    Hangup(Hangup),
    Redirect(Redirect),
    Reject(Reject),
    Enqueue(Enqueue),
    Leave(Leave),
    Refer(Refer),
    Echo(Echo),
}

impl Verb {
    /// Where the verb's start tag is.
    pub fn position(&self) -> Position {
        match self {
            Verb::Say(v) => v.position,
            Verb::Play(v) => v.position,
            Verb::Pause(v) => v.position,
            Verb::Gather(v) => v.position,
            Verb::Record(v) => v.position,
            Verb::Dial(v) => v.position,
            Verb::Hangup(v) => v.position,
            Verb::Redirect(v) => v.position,
            Verb::Reject(v) => v.position,
            Verb::Enqueue(v) => v.position,
            Verb::Leave(v) => v.position,
            Verb::Refer(v) => v.position,
            Verb::Echo(v) => v.position,
        }
    }

    /// The element name, e.g. `"Say"`.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Say(_) => "Say",
            Verb::Play(_) => "Play",
            Verb::Pause(_) => "Pause",
            Verb::Gather(_) => "Gather",
            Verb::Record(_) => "Record",
            Verb::Dial(_) => "Dial",
            Verb::Hangup(_) => "Hangup",
            Verb::Redirect(_) => "Redirect",
            Verb::Reject(_) => "Reject",
            Verb::Enqueue(_) => "Enqueue",
            Verb::Leave(_) => "Leave",
            Verb::Refer(_) => "Refer",
            Verb::Echo(_) => "Echo",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// <Say> and its SSML
// ---------------------------------------------------------------------------------------------

/// `<Say voice language loop>` text and SSML `</Say>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Say {
    /// Default `man`; also `woman`, `alice`, `Polly.<Name>`, `Google.<name>`, ...
    pub voice: String,
    /// Default `en-US`.
    pub language: String,
    /// Default once.
    pub repeat: Repeat,
    /// The content, verbatim: text is never trimmed (spaces are part of what is said).
    pub content: Vec<SsmlNode>,
    pub position: Position,
}

impl Say {
    pub const DEFAULT_VOICE: &'static str = "man";
    pub const DEFAULT_LANGUAGE: &'static str = "en-US";

    /// The text to speak with every SSML tag removed (the content of `<sub>` is replaced by
    /// its alias, as a speech engine would read it).
    pub fn plain_text(&self) -> String {
        let mut out = String::new();
        SsmlNode::collect_text(&self.content, &mut out);
        out
    }
}

/// A piece of `<Say>` content.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SsmlNode {
    /// Character data (entity and character references resolved).
    Text(String),
    /// `<break strength time/>`.
    Break(SsmlBreak),
    /// `<emphasis level>`.
    Emphasis {
        level: Option<EmphasisLevel>,
        children: Vec<SsmlNode>,
    },
    /// `<lang xml:lang>`.
    Lang {
        lang: String,
        children: Vec<SsmlNode>,
    },
    /// `<p>` paragraph.
    Paragraph(Vec<SsmlNode>),
    /// `<phoneme alphabet ph>`.
    Phoneme {
        alphabet: Option<PhoneticAlphabet>,
        ph: String,
        children: Vec<SsmlNode>,
    },
    /// `<prosody volume rate pitch>`; values are kept as written (`x-loud`, `+6dB`, `150%`, ...).
    Prosody {
        volume: Option<String>,
        rate: Option<String>,
        pitch: Option<String>,
        children: Vec<SsmlNode>,
    },
    /// `<s>` sentence.
    Sentence(Vec<SsmlNode>),
    /// `<say-as interpret-as format>`.
    SayAs {
        interpret_as: String,
        format: Option<String>,
        children: Vec<SsmlNode>,
    },
    /// `<sub alias>`.
    Sub {
        alias: String,
        children: Vec<SsmlNode>,
    },
    /// `<w role>`.
    Word {
        role: Option<String>,
        children: Vec<SsmlNode>,
    },
}

impl SsmlNode {
    fn collect_text(nodes: &[SsmlNode], out: &mut String) {
        for node in nodes {
            match node {
                SsmlNode::Text(text) => out.push_str(text),
                SsmlNode::Break(_) => {}
                SsmlNode::Sub { alias, .. } => out.push_str(alias),
                SsmlNode::Emphasis { children, .. }
                | SsmlNode::Lang { children, .. }
                | SsmlNode::Paragraph(children)
                | SsmlNode::Phoneme { children, .. }
                | SsmlNode::Prosody { children, .. }
                | SsmlNode::Sentence(children)
                | SsmlNode::SayAs { children, .. }
                | SsmlNode::Word { children, .. } => SsmlNode::collect_text(children, out),
            }
        }
    }
}

/// `<break>`: a pause inside speech, by strength or by time (both may be given).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SsmlBreak {
    pub strength: Option<BreakStrength>,
    /// `time="500ms"` or `time="2s"`.
    pub time: Option<Duration>,
}

keywords! {
    /// `<break strength>`.
    BreakStrength {
        None = "none", XWeak = "x-weak", Weak = "weak", Medium = "medium",
        Strong = "strong", XStrong = "x-strong",
    }
}

keywords! {
    /// `<emphasis level>`.
    EmphasisLevel { Strong = "strong", Moderate = "moderate", Reduced = "reduced" }
}

keywords! {
    /// `<phoneme alphabet>`.
    PhoneticAlphabet {
        Ipa = "ipa", XSampa = "x-sampa", XAmazonJyutping = "x-amazon-jyutping",
        XAmazonPinyin = "x-amazon-pinyin", XAmazonYomigana = "x-amazon-yomigana",
    }
}

// ---------------------------------------------------------------------------------------------
// <Play>, <Pause>, <Gather>, <Record>
// ---------------------------------------------------------------------------------------------

/// `<Play loop digits>URL</Play>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Play {
    /// Default once.
    pub repeat: Repeat,
    pub source: PlaySource,
    pub position: Position,
}

/// What `<Play>` plays: an audio URL (the element text) or DTMF tones (`digits`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PlaySource {
    Url(String),
    Digits(DtmfDigits),
}

/// `<Pause length/>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pause {
    /// Default 1 s.
    pub length: Duration,
    pub position: Position,
}

impl Pause {
    pub const DEFAULT_LENGTH: Duration = Duration::from_secs(1);
}

/// `<Gather>`: collect DTMF digits and/or speech while playing its children.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gather {
    pub action: Action,
    /// Default `dtmf`.
    pub input: GatherInput,
    /// Seconds of silence before the gather ends; default 5 s.
    pub timeout: Duration,
    /// Default: the value of `timeout`.
    pub speech_timeout: SpeechTimeout,
    /// Keys that end input; default `#`; empty (`finishOnKey=""`) means none.
    pub finish_on_key: KeywordSet<DtmfKey>,
    /// `None`: unlimited.
    pub num_digits: Option<NonZeroU32>,
    /// Default false.
    pub action_on_empty_result: bool,
    pub partial_result_callback: Option<String>,
    /// Default POST.
    pub partial_result_callback_method: HttpMethod,
    /// Default `en-US`.
    pub language: String,
    /// Comma-separated phrases, each trimmed; empty when absent.
    pub hints: Vec<String>,
    /// Default true.
    pub profanity_filter: bool,
    pub speech_model: Option<String>,
    /// Default false.
    pub enhanced: bool,
    pub children: Vec<GatherChild>,
    pub position: Position,
}

impl Gather {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_LANGUAGE: &'static str = "en-US";
}

keywords! {
    /// `<Gather input>`: `dtmf`, `speech`, or both (`"dtmf speech"`, either order).
    GatherInput { Dtmf = "dtmf", Speech = "speech", DtmfSpeech = "dtmf speech" }
}

/// `<Gather speechTimeout>`: seconds, or `auto` (end on the first pause in speech).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpeechTimeout {
    Auto,
    After(Duration),
}

/// What `<Gather>` may contain (Twilio: `<Say>`, `<Play>`, `<Pause>` only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GatherChild {
    Say(Say),
    Play(Play),
    Pause(Pause),
}

/// `<Record>`: record the caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub action: Action,
    /// Silence that ends the recording; default 5 s. `timeout="0"` disables it (`None`).
    pub timeout: Option<Duration>,
    /// Default every key, `1234567890*#`.
    pub finish_on_key: KeywordSet<DtmfKey>,
    /// Default 3600 s; SignalWire reads `maxLength="0"` as the default too.
    pub max_length: Duration,
    /// Default true.
    pub play_beep: bool,
    /// Default `trim-silence`.
    pub trim: Trim,
    pub recording_status_callback: RecordingStatusCallback,
    /// Default false.
    pub transcribe: bool,
    pub transcribe_callback: Option<String>,
    pub position: Position,
}

impl Record {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_LENGTH: Duration = Duration::from_secs(3600);
}

// ---------------------------------------------------------------------------------------------
// <Dial> and its nouns
// ---------------------------------------------------------------------------------------------

/// `<Dial>`: connect the caller to another party.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dial {
    pub action: Action,
    /// Seconds to wait for an answer; default 30 s.
    pub timeout: Duration,
    /// Default false.
    pub hangup_on_star: bool,
    /// Maximum call length; default 14400 s (4 h).
    pub time_limit: Duration,
    /// For `<Sip>` dials: letters, digits and `+-_.,`, no whitespace.
    pub caller_id: Option<String>,
    /// Default `do-not-record`.
    pub record: DialRecord,
    /// Default `do-not-trim`.
    pub trim: Trim,
    pub recording_status_callback: RecordingStatusCallback,
    /// Default `both`.
    pub recording_track: RecordingTrack,
    /// Default false.
    pub answer_on_bridge: bool,
    /// Two-letter country code of the ringback tone; `None`: the caller's own.
    pub ring_tone: Option<RingTone>,
    /// Ring the nouns one after another instead of all at once; default false.
    pub sequential: bool,
    /// Where a SIP REFER received from the callee is reported (`referUrl`, `referMethod`).
    pub refer: Action,
    pub target: DialTarget,
    pub position: Position,
}

impl Dial {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(14400);
    /// At most this many `<Number>`/`<Client>` or `<Sip>` nouns ring at once.
    pub const MAX_PARTIES: usize = 10;
}

/// Whom a `<Dial>` calls. The variants are the legal combinations: `<Sip>` never mixes with
/// other nouns; `<Conference>` and `<Queue>` stand alone. A bare number (`<Dial>+1555…</Dial>`)
/// is read as one `<Number>` with default attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DialTarget {
    /// 1 to 10 `<Number>`/`<Client>` nouns, rung together (or in order when `sequential`).
    Parties(Vec<Party>),
    /// 1 to 10 `<Sip>` nouns.
    Sip(Vec<Sip>),
    Conference(Conference),
    Queue(Queue),
}

/// A `<Number>` or `<Client>` noun.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    Number(Number),
    Client(Client),
}

keywords! {
    /// `<Dial record>`; Twilio's legacy `true`/`false` read as `record-from-answer` /
    /// `do-not-record`.
    DialRecord {
        DoNotRecord = "do-not-record",
        RecordFromAnswer = "record-from-answer",
        RecordFromRinging = "record-from-ringing",
        RecordFromAnswerDual = "record-from-answer-dual",
        RecordFromRingingDual = "record-from-ringing-dual",
    }
}

keywords! {
    /// `<Dial recordingTrack>`.
    RecordingTrack { Both = "both", Inbound = "inbound", Outbound = "outbound" }
}

keywords! {
    /// `<Dial ringTone>`: the countries Twilio has ringback tones for.
    RingTone {
        At = "at", Au = "au", Bg = "bg", Br = "br", Be = "be", Ch = "ch", Cl = "cl",
        Cn = "cn", Cz = "cz", De = "de", Dk = "dk", Ee = "ee", Es = "es", Fi = "fi",
        Fr = "fr", Gr = "gr", Hu = "hu", Il = "il", In = "in", It = "it", Lt = "lt",
        Jp = "jp", Mx = "mx", My = "my", Nl = "nl", No = "no", Nz = "nz", Ph = "ph",
        Pl = "pl", Pt = "pt", Ru = "ru", Se = "se", Sg = "sg", Th = "th", Uk = "uk",
        Us = "us", UsOld = "us-old", Tw = "tw", Ve = "ve", Za = "za",
    }
}

/// Answering-machine detection on a dialled `<Number>` or `<Sip>` (Twilio's
/// `machineDetection*` and `amdStatusCallback*` attributes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MachineDetection {
    pub mode: MachineDetectionMode,
    /// `machineDetectionTimeout`, 3–60 s, default 30 s.
    pub timeout: Duration,
    /// `machineDetectionSpeechThreshold`, 1000–6000 ms, default 2400 ms.
    pub speech_threshold: Duration,
    /// `machineDetectionSpeechEndThreshold`, 500–5000 ms, default 1200 ms.
    pub speech_end_threshold: Duration,
    /// `machineDetectionSilenceTimeout`, 2000–10000 ms, default 5000 ms.
    pub silence_timeout: Duration,
    /// `amdStatusCallback` + `amdStatusCallbackMethod`.
    pub status_callback: Action,
}

impl MachineDetection {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_SPEECH_THRESHOLD: Duration = Duration::from_millis(2400);
    pub const DEFAULT_SPEECH_END_THRESHOLD: Duration = Duration::from_millis(1200);
    pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_millis(5000);

    pub fn new(mode: MachineDetectionMode) -> MachineDetection {
        MachineDetection {
            mode,
            timeout: Self::DEFAULT_TIMEOUT,
            speech_threshold: Self::DEFAULT_SPEECH_THRESHOLD,
            speech_end_threshold: Self::DEFAULT_SPEECH_END_THRESHOLD,
            silence_timeout: Self::DEFAULT_SILENCE_TIMEOUT,
            status_callback: Action::default(),
        }
    }
}

keywords! {
    /// `machineDetection`.
    MachineDetectionMode { Enable = "Enable", DetectMessageEnd = "DetectMessageEnd" }
}

/// `<Number>`: a telephone number (E.164, or an unformatted national number).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Number {
    /// As written, trimmed: `+` and digits, possibly with spaces, `-`, `.`, `(` `)`.
    pub number: String,
    pub send_digits: Option<DtmfDigits>,
    /// Document run on the callee before it is connected (`url` + `method`).
    pub url: Action,
    pub status_callback: CallStatusCallback,
    /// A BYOC trunk SID (`BY…`).
    pub byoc: Option<String>,
    pub machine_detection: Option<MachineDetection>,
    pub position: Position,
}

/// `<Sip>`: a SIP endpoint, by URI — the element text, or one or more nested `<Uri>`s tried
/// in turn (see [`SipUriChoice`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sip {
    /// 1 to [`Sip::MAX_URIS`] URIs; the element text is one with the default priority and
    /// weight.
    pub uris: Vec<SipUriChoice>,
    /// Offered in this order; default `PCMU,PCMA`.
    pub codecs: Vec<Codec>,
    /// Document run on the callee before it is connected (`url` + `method`).
    pub url: Action,
    pub status_callback: CallStatusCallback,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `Session-Expires`; `None` when absent or 0 (the platform default).
    pub session_timeout: Option<Duration>,
    pub machine_detection: Option<MachineDetection>,
    pub position: Position,
}

impl Sip {
    pub const DEFAULT_CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
    /// At most this many `<Uri>`s in one `<Sip>`.
    pub const MAX_URIS: usize = 10;
}

/// One `<Uri priority weight username password>` of a `<Sip>`: the URIs are tried by
/// priority, lowest first, and within a priority in a weighted random order (RFC 2782's
/// selection); the next one is tried when one does not answer, cannot be reached or
/// answers 5xx. Ranges and defaults are those of Twilio's origination URIs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipUriChoice {
    /// With the `<Headers>` of the `<Sip>` after its own `?…` headers.
    pub uri: SipUri,
    /// 0–65535, default 10; the lowest is tried first.
    pub priority: u16,
    /// 1–65535, default 10: a URI's share of the first tries among those of its priority.
    pub weight: u16,
    /// Digest credentials for this URI; `None`: those of the `<Sip>`.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl SipUriChoice {
    pub const DEFAULT_PRIORITY: u16 = 10;
    pub const DEFAULT_WEIGHT: u16 = 10;

    /// `uri` with the default priority and weight and no credentials of its own.
    pub fn new(uri: SipUri) -> SipUriChoice {
        SipUriChoice {
            uri,
            priority: Self::DEFAULT_PRIORITY,
            weight: Self::DEFAULT_WEIGHT,
            username: None,
            password: None,
        }
    }

    /// Whether the text form can say it: no attribute of its own.
    pub fn is_plain(&self) -> bool {
        self.priority == Self::DEFAULT_PRIORITY
            && self.weight == Self::DEFAULT_WEIGHT
            && self.username.is_none()
            && self.password.is_none()
    }
}

keywords! {
    /// A codec `<Sip codecs>` may offer.
    Codec { Pcmu = "PCMU", Pcma = "PCMA", G722 = "G722", G729 = "G729", Opus = "OPUS" }
}

/// A `sip:`/`sips:` URI as `<Sip>` and `<Refer><Sip>` take it (RFC 3261 §19.1), split into
/// the parts the dialler needs. The headers come from `?name=value&…` (percent-decoded) and,
/// in the nested form, from `<Headers><Header name value/></Headers>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipUri {
    pub scheme: SipScheme,
    /// The user part, as written (still percent-encoded).
    pub user: Option<String>,
    /// Host name, IPv4 address, or IPv6 reference in brackets.
    pub host: String,
    pub port: Option<u16>,
    /// `;transport=` as written; `None` when the URI names none, and then callml's default
    /// applies (TLS, SignalWire's rule, unless `--sip-transport` says otherwise).
    pub transport: Option<SipTransport>,
    /// Every other URI parameter, in order, `;name` or `;name=value`.
    pub params: Vec<UriParam>,
    pub headers: Vec<SipHeader>,
}

keywords! {
    /// URI scheme.
    SipScheme { Sip = "sip", Sips = "sips" }
}

keywords! {
    /// `;transport=` of a SIP URI.
    SipTransport { Udp = "udp", Tcp = "tcp", Tls = "tls" }
}

/// A SIP URI parameter other than `transport`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UriParam {
    pub name: String,
    pub value: Option<String>,
}

/// A header to add to the INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipHeader {
    pub name: String,
    pub value: String,
}

/// `<Client>`: a registered client, by identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    /// The element text, or the text of its `<Identity>` child.
    pub identity: String,
    /// `<Parameter name value/>` children, in order.
    pub parameters: Vec<ClientParameter>,
    pub url: Action,
    pub status_callback: CallStatusCallback,
    pub position: Position,
}

/// `<Parameter name value/>` inside `<Client>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientParameter {
    pub name: String,
    pub value: String,
}

/// `<Conference>`: join a named conference room.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conference {
    pub name: String,
    /// Default false.
    pub muted: bool,
    /// Default `true`.
    pub beep: ConferenceBeep,
    /// Default true.
    pub start_conference_on_enter: bool,
    /// Default false.
    pub end_conference_on_exit: bool,
    pub wait: WaitUrl,
    /// Default POST.
    pub wait_method: HttpMethod,
    /// 2–250, default 250.
    pub max_participants: u32,
    /// Default `do-not-record`.
    pub record: ConferenceRecord,
    pub region: Option<Region>,
    /// Call SID (`CA…`) of the participant this one coaches.
    pub coach: Option<String>,
    /// Default `trim-silence`.
    pub trim: Trim,
    /// Default: no events.
    pub status_callback_event: KeywordSet<ConferenceEvent>,
    pub status_callback: Option<String>,
    /// Default POST.
    pub status_callback_method: HttpMethod,
    pub recording_status_callback: RecordingStatusCallback,
    pub event_callback_url: Option<String>,
    /// Default `large`.
    pub jitter_buffer_size: JitterBufferSize,
    pub participant_label: Option<String>,
    pub position: Position,
}

impl Conference {
    pub const DEFAULT_MAX_PARTICIPANTS: u32 = 250;
}

keywords! {
    /// `<Conference beep>`.
    ConferenceBeep { True = "true", False = "false", OnEnter = "onEnter", OnExit = "onExit" }
}

keywords! {
    /// `<Conference record>`.
    ConferenceRecord { DoNotRecord = "do-not-record", RecordFromStart = "record-from-start" }
}

keywords! {
    /// `<Conference region>`.
    Region {
        Us1 = "us1", Us2 = "us2", Ie1 = "ie1", De1 = "de1", Sg1 = "sg1", Br1 = "br1",
        Au1 = "au1", Jp1 = "jp1",
    }
}

keywords! {
    /// `<Conference jitterBufferSize>`.
    JitterBufferSize { Off = "off", Small = "small", Medium = "medium", Large = "large" }
}

/// What a participant hears while waiting (`waitUrl`, `<Enqueue waitUrl>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum WaitUrl {
    /// Attribute absent: the platform's hold music.
    #[default]
    Default,
    /// `waitUrl=""`: silence.
    Silence,
    Url(String),
}

/// `<Queue url method>name</Queue>` inside `<Dial>`: bridge to the first caller waiting there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Queue {
    pub name: String,
    /// Document played to the dequeued caller before the bridge (`url` + `method`).
    pub url: Action,
    pub position: Position,
}

// ---------------------------------------------------------------------------------------------
// The remaining verbs
// ---------------------------------------------------------------------------------------------

/// `<Hangup/>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hangup {
    pub position: Position,
}

/// `<Redirect method>URL</Redirect>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Redirect {
    pub url: String,
    /// Default POST.
    pub method: HttpMethod,
    pub position: Position,
}

/// `<Reject reason/>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reject {
    /// Default `rejected`.
    pub reason: RejectReason,
    pub position: Position,
}

keywords! {
    /// `<Reject reason>`: `rejected` answers 603, `busy` 486.
    RejectReason { Rejected = "rejected", Busy = "busy" }
}

/// `<Enqueue action method waitUrl waitUrlMethod>name</Enqueue>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Enqueue {
    pub name: String,
    pub action: Action,
    pub wait: WaitUrl,
    /// Default POST.
    pub wait_url_method: HttpMethod,
    pub position: Position,
}

/// What a document is fetched for, which limits the verbs it may use (Twilio's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DocumentUse {
    /// A call's own document (the voice URL, a redirect, an action): any verb.
    #[default]
    Call,
    /// An `<Enqueue waitUrl>` document, run in a loop while the caller waits.
    Wait,
    /// A `<Queue url>` document, heard by a dequeued caller before its bridge.
    Announcement,
}

impl DocumentUse {
    /// Whether `verb` may run in a document of this use.
    pub fn allows(self, verb: &Verb) -> bool {
        match self {
            DocumentUse::Call => true,
            DocumentUse::Wait => matches!(
                verb,
                Verb::Play(_)
                    | Verb::Say(_)
                    | Verb::Pause(_)
                    | Verb::Gather(_)
                    | Verb::Redirect(_)
                    | Verb::Leave(_)
                    | Verb::Hangup(_)
            ),
            DocumentUse::Announcement => matches!(
                verb,
                Verb::Play(_) | Verb::Say(_) | Verb::Pause(_) | Verb::Redirect(_)
            ),
        }
    }

    /// The verbs allowed, in words.
    pub fn allowed(self) -> &'static str {
        match self {
            DocumentUse::Call => "every verb",
            DocumentUse::Wait => "Play, Say, Pause, Gather, Redirect, Leave and Hangup",
            DocumentUse::Announcement => "Play, Say, Pause and Redirect",
        }
    }

    /// What the document is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            DocumentUse::Call => "a call's document",
            DocumentUse::Wait => "an <Enqueue waitUrl> document",
            DocumentUse::Announcement => "a <Queue url> document",
        }
    }
}

/// `<Leave/>`: leave the queue; the document after `<Enqueue>` continues.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leave {
    pub position: Position,
}

/// `<Refer action method><Sip>URI</Sip></Refer>`: transfer by SIP REFER.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Refer {
    pub action: Action,
    pub target: SipUri,
    pub position: Position,
}

/// `<Echo timeout/>` (LaML): send the caller's audio back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Echo {
    /// 5–120 s, default 60 s (SignalWire).
    pub timeout: Duration,
    pub position: Position,
}

impl Echo {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
}
