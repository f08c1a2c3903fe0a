//! The call core: one call's whole state machine, sans-IO (`docs/architecture.md`,
//! principle 1). It owns the call's legs (their records and status callbacks, their SIP and
//! media state), the documents running on them, a `<Dial>` under way (ringing, whisper,
//! bridge, recording), hold, REST updates, shutdown and every timer. The driver
//! ([`crate::call::driver`]) turns sockets, channels and the clock into [`Input`]s given to
//! [`CallCore::handle`] and [`CallCore::handle_timeout`], carries out the [`Action`]s it takes
//! from [`CallCore::poll_action`], and sleeps until [`CallCore::poll_timeout`]. Nothing here
//! touches a socket, a file or the clock: tests drive it on virtual time.
//!
//! ```text
//! inbound INVITE ─▶ Initiated, 180 ─▶ fetch the voice URL ─▶ document ─▶ Answer ─▶ 200
//! REST Calls.json ─▶ Initiated, INVITE ─▶ 180/183 ringing ─▶ 2xx ─▶ [SendDigits] ─▶ document
//!   document: Say/Play/Gather/Record/Pause/Echo/Redirect run on the call's leg (runner.rs)
//!   <Dial> (dial.rs): children INVITEd ─▶ first 2xx wins, others CANCELed ─▶ [sendDigits]
//!          ─▶ [whisper document on the child] ─▶ [answerOnBridge: 200] ─▶ bridge
//!          ─▶ either side leaves, timeLimit, hangupOnStar ─▶ action request with Dial*
//!   ending: BYE/CANCEL, <Hangup>/<Reject>, REST completed/canceled, media timeout,
//!           --max-call-duration, shutdown ─▶ children hung up, recordings closed (a <Record>
//!           or <Dial> action still requested), final record and `completed` callback ─▶ Done
//!   the call's document fails: [200] ─▶ the application error message ─▶ BYE (apology.rs)
//! ```
//! Every way a leg ends is one [`Ending`], recorded once ([`legs::Leg::ended`]).

mod apology;
mod conference;
mod dial;
mod legs;
mod queue;
mod runner;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::control::{CallUpdate, DocumentSource};
use super::document::{LoadError, Loaded, Source};
use super::ending::Ending;
use super::media::{MediaFailure, MediaOffer, answered_config};
use super::params::CallParams;
use super::party::Party;
use super::progress::{CallbackTarget, ProgressEvent};
use super::queues::book::Standing;
use super::recording::RecordingSpec;
use super::rooms::room::{JoinOutcome, LeftReason, RoomInput, SeatNotice, SeatOptions};
use crate::config::Config;
use crate::interp::{RecordedAudio, SpeechPart, SpeechResult, SpeechSettings, VerbStep};
use crate::limits::LogLimiter;
use crate::markup::ast::HttpMethod;
use crate::media::codec::Codec;
use crate::media::dtmf::parse_sip_info;
use crate::media::library::{Audio, AudioError, Prompt};
use crate::media::play_stream::StreamedAudio;
use crate::media::session::{MediaEvent, RecordingTap, SessionConfig};
use crate::sip::endpoint::CallSignal;
use crate::store::CallRecord;
use crate::trunk::Trunks;
use apology::Apology;
use dial::DialState;
use legs::Leg;
use runner::{Role, Runner, RunnerId};
use timers::{Timer, TimerTable};

pub use conference::{is_audio_url, seat_options};
pub use legs::{LegState, progress_events};

/// A leg of the call as the core numbers them: the call's own leg is [`LegId::CALL`]; the legs
/// a `<Dial>` places come after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u32);

impl LegId {
    pub const CALL: LegId = LegId(0);
}

/// What the core needs of the configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// A leg that sends no RTP for this long is ended.
    pub media_timeout: Duration,
    /// No call lasts longer than this from its start.
    pub max_call_duration: Duration,
    /// Where `<Number>`s are sent (the first usable trunk).
    pub trunks: Arc<Trunks>,
    /// `--routing-webhook` is configured: a `<Number>`'s trunk is asked for
    /// ([`Action::AskRoute`]) instead of taking the first usable one.
    pub routing_webhook: bool,
}

impl CoreConfig {
    pub fn new(config: &Config, trunks: &Arc<Trunks>) -> CoreConfig {
        CoreConfig {
            media_timeout: config.media_timeout,
            max_call_duration: config.max_call_duration,
            trunks: Arc::clone(trunks),
            routing_webhook: config.routing_webhook.is_some(),
        }
    }
}

/// An inbound call, as the driver prepared it.
#[derive(Debug)]
pub struct InboundCall {
    pub params: CallParams,
    pub record: CallRecord,
    pub callbacks: Option<CallbackTarget>,
    /// The document to run.
    pub voice: DocumentSource,
    pub fallback: Option<Source>,
    /// The SDP answer (or our offer, for a delayed offer) and the media it sets up, or why
    /// the offer cannot be served.
    pub media: Result<InboundMedia, MediaFailure>,
}

/// The media of an inbound leg, negotiated before the call starts.
#[derive(Debug, Clone)]
pub struct InboundMedia {
    /// The SDP our 200 will carry.
    pub sdp: String,
    pub config: SessionConfig,
    /// The INVITE had no offer: `sdp` is our offer of these codecs, the answer comes in the
    /// ACK (RFC 3264 §2).
    pub delayed_offer: Option<Vec<Codec>>,
}

/// A call placed through the REST API.
#[derive(Debug)]
pub struct OutboundCall {
    pub params: CallParams,
    pub record: CallRecord,
    pub callbacks: Option<CallbackTarget>,
    pub party: Party,
    /// The caller ID presented (the From user).
    pub caller: String,
    pub document: DocumentSource,
    pub fallback: Option<Source>,
    /// How long to let it ring.
    pub timeout: Duration,
    /// Longest it may last once answered.
    pub time_limit: Duration,
    /// A recording of the whole call, from the answer.
    pub recording: Option<RecordingSpec>,
    /// Keys sent once answered, before the document runs.
    pub send_digits: Option<String>,
    /// The conference the call is placed for (REST `Participants.json`): told if the call
    /// ends before it answers.
    pub conference_sid: Option<String>,
}

/// What the driver tells the core.
#[derive(Debug)]
pub enum Input {
    /// A SIP signal for a leg.
    Signal(LegId, CallSignal),
    /// The SIP layer stopped: no more signals will come.
    SipGone,
    /// A change asked for through the REST API.
    Update(CallUpdate),
    Shutdown,
    /// The document asked for by the [`Action::Fetch`] with this id.
    Loaded {
        fetch: u64,
        result: Result<Loaded, LoadError>,
    },
    /// The audio asked for by the [`Action::LoadPrompt`] with this id.
    PromptLoaded {
        prompt: u64,
        result: Result<Prompt, AudioError>,
    },
    /// A leg has played out the audio it was given.
    PlayedOut(LegId),
    /// Something a leg's media reported (keys, digits sent, inactivity, silence).
    Media(LegId, MediaEvent),
    /// What the recognizer heard on a leg.
    Speech(LegId, SpeechResult),
    /// The [`Action::StartRecording`] of this leg and tap is recording (or could not start).
    RecordingStarted {
        leg: LegId,
        tap: RecordingTap,
        started: bool,
    },
    /// The [`Action::StopRecording`] of this leg and tap is closed: what it holds.
    RecordingFinished {
        leg: LegId,
        tap: RecordingTap,
        audio: Option<RecordedAudio>,
    },
    /// A leg's media could not be set up, or its RTP socket was lost.
    MediaLost {
        leg: LegId,
        reason: String,
    },
    /// The queue's answer to [`Action::Enqueue`].
    Enqueued(EnqueueResult),
    /// Where the call stands in its queue now.
    QueueStanding(Standing),
    /// An agent took this queued call (its `<Queue url>` document, if any, runs first).
    Dequeued {
        agent: String,
        queue_sid: String,
        url: Option<Source>,
        waited: Duration,
    },
    /// The bridge this call's media was lent to is over: the media is back.
    MediaReturned,
    /// `<Dial><Queue>`: the member taken for leg `leg` (its media is on its way).
    MemberMatched {
        leg: LegId,
        call_sid: String,
        queue_sid: String,
        waited: Duration,
    },
    /// `<Dial><Queue>`: the member's media arrived, with its session.
    MemberJoined {
        leg: LegId,
        config: Box<SessionConfig>,
    },
    /// `<Dial><Queue>`: no queue has that name.
    DequeueFailed {
        leg: LegId,
        reason: String,
    },
    /// `<Dial><Queue>`: the member taken has hung up.
    MemberGone {
        member: String,
    },
    /// The conference's answer to [`Action::JoinRoom`].
    RoomJoined(JoinOutcome),
    /// The answer to [`Action::JoinRoom`] when the conference runs on another node of a shared
    /// store, which takes SIP at `owner_sip_uri`: the call joins it through a SIP leg, signed
    /// with the account's `auth_token` at `now_unix` ([`crate::call::cascade`]).
    RoomElsewhere {
        owner_sip_uri: String,
        auth_token: String,
        now_unix: u64,
    },
    /// Word from the call's conference.
    RoomNotice(SeatNotice),
    /// The call's media is back from the conference's mixer, with why.
    RoomMediaBack(SeatNotice),
    /// The routing webhook's answer to the [`Action::AskRoute`] with this id: the trunk it
    /// named (`sipTrunkId`), or why it could not be asked.
    Routed {
        ask: u64,
        result: Result<String, String>,
    },
}

/// The queue's answer to an `<Enqueue>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueResult {
    Waiting(Standing),
    /// An agent was waiting: the call goes to it (after `url`, the agent's `<Queue url>`).
    Matched {
        queue_sid: String,
        agent: String,
        url: Option<Source>,
    },
    Full {
        queue_sid: String,
    },
    /// The queue could not be used (a bad name).
    Failed(String),
}

/// A command for a leg's SIP side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipCommand {
    /// 180 Ringing.
    Ring,
    /// 200 OK with this SDP.
    Answer(String),
    /// A final failure response.
    Reject(u16),
    /// BYE when answered, CANCEL when ringing.
    Hangup,
    /// Answer a re-offer with the current session, direction mirrored.
    AcceptReoffer,
    /// Hold the far end (`true`) or resume it.
    Hold(bool),
}

/// A command for a leg's media.
#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Start the leg's stream with the negotiated session.
    Connect(SessionConfig),
    /// The delayed offer's answer came: the stream takes it, going on as it was.
    Renegotiate(SessionConfig),
    /// Play `audio` (8 kHz), replacing whatever plays; [`Input::PlayedOut`] when done.
    Play(Audio),
    /// Play a `<Play>` download as it is decoded, replacing whatever plays;
    /// [`Input::PlayedOut`] when it ended and played out.
    PlayStream(StreamedAudio),
    /// Play the ringback tone, its first frame now.
    Ringback(Audio),
    /// Stop what plays, and keys being sent.
    Stop,
    /// Send keys: RFC 4733 events, or in-band tones when none were negotiated;
    /// [`MediaEvent::DigitsSent`] when done.
    SendDigits(String),
    /// A key that arrived in SIP INFO, handled as if it came in the media.
    SignalDigit(char),
    Echo(bool),
    /// Report [`MediaEvent::SilenceTimeout`] after this much silence (or stop).
    DetectSilence(Option<Duration>),
    /// The far end holds us (or stopped holding).
    SetHeld(bool),
    /// We hold the far end (or stopped holding).
    SetHolding(bool),
}

/// Prompt audio to fetch or render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptRequest {
    Say {
        parts: Vec<SpeechPart>,
        voice: String,
        language: String,
    },
    Play {
        url: String,
    },
}

/// A document to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentRequest {
    /// Fetch `source` with `params`; on failure `fallback`, once.
    Url {
        source: Source,
        params: Vec<(String, String)>,
        fallback: Option<Source>,
    },
    /// A document given inline (REST `Twiml`).
    Inline(String),
}

/// Where the legs' audio goes besides their own prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRoute {
    /// Each leg on its own.
    Apart,
    /// `to` hears what `from` receives (a callee's early media).
    Early { from: LegId, to: LegId },
    /// The two legs hear each other: relayed packet by packet (`relay`, same codec, nothing
    /// else needing the audio) or transcoded frame by frame. `watch_star`: the caller's `*`
    /// is reported (`hangupOnStar`).
    Bridge {
        caller: LegId,
        callee: LegId,
        relay: bool,
        watch_star: bool,
    },
}

/// What the core asks the driver to do.
#[derive(Debug)]
pub enum Action {
    Sip(LegId, SipCommand),
    /// Place a leg: bind its RTP ports, offer the party's codecs, send the INVITE from
    /// `caller` with `headers`.
    Invite {
        leg: LegId,
        party: Box<Party>,
        /// The SDP offer's codecs and SRTP keys (the core reads the answer against them).
        offer: MediaOffer,
        caller: String,
        headers: Vec<(String, String)>,
    },
    Media(LegId, MediaCommand),
    /// Fetch or render prompt audio; [`Input::PromptLoaded`] with `prompt`.
    LoadPrompt {
        leg: LegId,
        prompt: u64,
        request: PromptRequest,
    },
    /// Load a document; [`Input::Loaded`] with `fetch`.
    Fetch {
        fetch: u64,
        request: DocumentRequest,
    },
    /// Request a URL whose answer no longer matters (an `action` after the call ended).
    Notify {
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    },
    /// Start speech recognition on a leg.
    Listen(LegId, SpeechSettings),
    StopListening(LegId),
    /// Start recording a leg (of call `call_sid`) through `tap`; [`Input::RecordingStarted`].
    StartRecording {
        leg: LegId,
        tap: RecordingTap,
        spec: RecordingSpec,
        account_sid: String,
        call_sid: String,
    },
    /// Close a recording; [`Input::RecordingFinished`].
    StopRecording {
        leg: LegId,
        tap: RecordingTap,
    },
    Route(MediaRoute),
    /// Write a leg's record.
    Save(Box<CallRecord>),
    /// A leg met a problem that does not end it — a prompt that could not be loaded is
    /// skipped — reported on the leg's call as a notification with Twilio's error `code`
    /// (13520 for a `<Say>` that cannot be spoken, 11200 for a `<Play>` that cannot be
    /// fetched, ...; see [`AudioError::twilio_code`]).
    Warning {
        leg: LegId,
        code: u32,
        message: String,
    },
    /// A verb of the documents on `leg` started or ended: kept in the leg's capture.
    Verb {
        leg: LegId,
        step: VerbStep,
    },
    /// Send a status callback of a leg (in order with its others).
    Callback {
        leg: LegId,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    },
    /// The leg is over: release its SIP side and media, deliver its last callbacks.
    Release(LegId),
    /// Put the call in the queue `name`; [`Input::Enqueued`].
    Enqueue {
        name: String,
    },
    /// The call leaves its queue by itself, with Twilio's `QueueResult`.
    LeaveQueue {
        result: &'static str,
    },
    /// Lend the call's media leg to the agent that took it.
    LendMedia,
    /// Tell `agent` that this call, which it took from a queue, has hung up.
    TellAgent {
        agent: String,
    },
    /// `<Dial><Queue>`: take the member at the front of `name` for leg `leg`, or wait for one.
    Dequeue {
        leg: LegId,
        name: String,
        url: Option<Source>,
    },
    /// `<Dial><Queue>`: give the member of leg `leg` its media back (or stop waiting for one).
    ReturnMember(LegId),
    /// `<Dial><Conference>`: join the conference `name`; [`Input::RoomJoined`].
    JoinRoom {
        name: String,
        options: Box<SeatOptions>,
    },
    /// Lend the call's media leg to the conference's mixer.
    LendToRoom {
        conference_sid: String,
    },
    /// The call leaves its conference.
    LeaveRoom {
        conference_sid: String,
        reason: LeftReason,
    },
    /// Something the call's conference needs to know: its phone rings, holds it or stopped.
    TellRoom {
        conference_sid: String,
        input: RoomInput,
    },
    /// Ask the routing webhook which trunk carries the `<Number>`s of a `<Dial>`;
    /// [`Input::Routed`] with `ask`.
    AskRoute {
        ask: u64,
        query: RouteQuery,
    },
    /// The call is over: nothing more will be asked.
    Done,
}

/// What the routing webhook is told about the call placing a leg to a number (the seed's
/// `applicationId`, `channelId`, `clientId`, `userId`; the driver adds `sipTrunks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQuery {
    pub application_id: String,
    pub channel_id: String,
    /// The SID of the call placing the leg (callml has no LiveSwitch clients).
    pub client_id: String,
    pub user_id: String,
}

/// The actions waiting for the driver.
#[derive(Debug, Default)]
pub struct Outbox(VecDeque<Action>);

impl Outbox {
    pub fn push(&mut self, action: Action) {
        self.0.push_back(action);
    }
}

/// Wall-clock time for records, from the core's `now`.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    wall: DateTime<Utc>,
}

impl WallClock {
    fn at(&self, now: Instant) -> DateTime<Utc> {
        self.wall
            + chrono::Duration::from_std(now.saturating_duration_since(self.at)).unwrap_or_default()
    }
}

/// A REST call still being rung.
#[derive(Debug)]
struct Placing {
    document: DocumentSource,
    fallback: Option<Source>,
    time_limit: Duration,
    send_digits: Option<String>,
    /// Answered; its `SendDigits` are on their way.
    sending_digits: bool,
    conference_sid: Option<String>,
}

/// A recording callml has asked the driver for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenRecording {
    leg: LegId,
    tap: RecordingTap,
    state: RecordingState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordingState {
    Starting { stop_at_once: bool },
    Running,
    Closing,
}

/// One call's state machine; see the module documentation.
#[derive(Debug)]
pub struct CallCore {
    config: CoreConfig,
    clock: WallClock,
    legs: Vec<Leg>,
    main: Runner,
    /// A document beside the call's own (a whisper, a queue's wait or announcement).
    side: Option<Runner>,
    /// The call's stay in a queue (`<Enqueue>`).
    membership: Option<queue::Membership>,
    /// The call's participation in a conference (`<Dial><Conference>`).
    conference: Option<Box<conference::Participation>>,
    dial: Option<Box<DialState>>,
    placing: Option<Placing>,
    /// The call's document failed: the caller hears so before callml hangs up.
    apology: Option<Apology>,
    /// The REST call's whole-call recording, started at the answer.
    call_recording: Option<RecordingSpec>,
    recordings: Vec<OpenRecording>,
    timers: TimerTable,
    out: Outbox,
    next_id: u64,
    /// The call's leg has ended: what is left is closing recordings and requesting actions.
    closing: bool,
    done: bool,
    warned_machine_detection: bool,
    /// Documents fetched since something was last played, heard or waited for: a loop once
    /// it reaches [`MAX_FETCHES_WITHOUT_PROGRESS`].
    fetches_without_progress: u32,
    /// Repeated warnings of this call (a prompt that keeps failing) go to the log once per
    /// interval.
    warning_log: LogLimiter,
}

impl CallCore {
    fn with_call_leg(config: CoreConfig, leg: Leg, main: Runner, now: Instant) -> CallCore {
        let wall = leg.record.date_created;
        let mut core = CallCore {
            timers: TimerTable::default(),
            config,
            clock: WallClock { at: now, wall },
            legs: vec![leg],
            main,
            side: None,
            membership: None,
            conference: None,
            dial: None,
            placing: None,
            apology: None,
            call_recording: None,
            recordings: Vec::new(),
            out: Outbox::default(),
            next_id: 1,
            closing: false,
            done: false,
            warned_machine_detection: false,
            fetches_without_progress: 0,
            warning_log: LogLimiter::default(),
        };
        core.timers
            .set(Timer::CallLimit, now + core.config.max_call_duration);
        core
    }

    /// An inbound call: recorded as ringing, `180`, and its document fetched; or refused when
    /// its offer cannot be served.
    pub fn inbound(config: CoreConfig, call: InboundCall, now: Instant) -> CallCore {
        let mut leg = Leg::new(call.params, call.record, call.callbacks);
        let fallback = call.fallback;
        let media = call.media;
        if let Ok(media) = &media {
            leg.answer_sdp = Some(media.sdp.clone());
            leg.media = Some(media.config.clone());
            if let Some(codecs) = &media.delayed_offer {
                leg.offered = MediaOffer::plain(codecs.clone());
                leg.awaiting_answer = true;
            }
        }
        let mut core = CallCore::with_call_leg(
            config,
            leg,
            Runner::new(LegId::CALL, Role::Call, fallback),
            now,
        );
        let at = core.wall(now);
        let leg = &mut core.legs[0];
        leg.record_ringing(at, &mut core.out);
        leg.notify(LegId::CALL, ProgressEvent::Initiated, at, &mut core.out);
        tracing::info!(call_sid = %leg.record.sid, from = %leg.record.from, to = %leg.record.to, "inbound call");
        match media {
            Err(failure) => {
                let ending = Ending::MediaFailed {
                    status: failure.status,
                    reason: failure.reason,
                };
                core.end_call(ending, now);
            }
            Ok(_) => {
                core.out.push(Action::Sip(LegId::CALL, SipCommand::Ring));
                core.legs[0].notify(LegId::CALL, ProgressEvent::Ringing, at, &mut core.out);
                core.fetch(RunnerId::Main, call.voice, Vec::new());
            }
        }
        core.settle(now);
        core
    }

    /// A REST call: `initiated`, its INVITE, and the ringing timeout.
    pub fn outbound(config: CoreConfig, call: OutboundCall, now: Instant) -> CallCore {
        let mut leg = Leg::new(call.params, call.record, call.callbacks);
        leg.outbound = true;
        leg.offered = MediaOffer::for_party(&call.party);
        let mut core = CallCore::with_call_leg(
            config,
            leg,
            Runner::new(LegId::CALL, Role::Call, call.fallback.clone()),
            now,
        );
        core.call_recording = call.recording;
        core.placing = Some(Placing {
            document: call.document,
            fallback: call.fallback,
            time_limit: call.time_limit,
            send_digits: call.send_digits,
            sending_digits: false,
            conference_sid: call.conference_sid,
        });
        let at = core.wall(now);
        let leg = &mut core.legs[0];
        leg.notify(LegId::CALL, ProgressEvent::Initiated, at, &mut core.out);
        let headers = twilio_headers(&leg.record);
        let offer = core.legs[0].offered.clone();
        core.out.push(Action::Invite {
            leg: LegId::CALL,
            party: Box::new(call.party),
            offer,
            caller: call.caller,
            headers,
        });
        let leg = &mut core.legs[0];
        leg.record.start_time = Some(at);
        leg.save(at, &mut core.out);
        core.timers.set(Timer::Ring, now + call.timeout);
        core.settle(now);
        core
    }

    /// The SID of the call's own leg.
    pub fn sid(&self) -> &str {
        &self.legs[0].record.sid
    }

    /// The record of leg `leg` as it is now (the call's, or a dialled leg's).
    pub fn leg_record(&self, leg: LegId) -> Option<&CallRecord> {
        self.legs.get(leg.0 as usize).map(|leg| &leg.record)
    }

    /// Whether the call is over (after [`Action::Done`]).
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.0.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        if self.done {
            return;
        }
        match input {
            Input::Signal(leg, signal) => self.on_signal(leg, signal, now),
            Input::SipGone => {
                self.call_ended(Ending::Internal("the SIP layer stopped".into()), now)
            }
            Input::Update(update) => self.on_update(update, now),
            Input::Shutdown => self.end_call(Ending::Shutdown, now),
            Input::Loaded { fetch, result } => self.on_loaded(fetch, result, now),
            Input::PromptLoaded { prompt, result } => self.on_prompt(prompt, result, now),
            Input::PlayedOut(leg) => self.on_played_out(leg, now),
            Input::Media(leg, event) => self.on_media(leg, event, now),
            Input::Speech(leg, result) => {
                self.fetches_without_progress = 0;
                self.feed_leg(leg, crate::interp::Event::Speech(result), now)
            }
            Input::RecordingStarted { leg, tap, started } => {
                self.on_recording_started(leg, tap, started, now)
            }
            Input::RecordingFinished { leg, tap, audio } => {
                self.on_recording_finished(leg, tap, audio, now)
            }
            Input::MediaLost { leg, reason } => self.on_media_lost(leg, reason, now),
            Input::Enqueued(result) => self.on_enqueued(result, now),
            Input::QueueStanding(standing) => self.on_standing(standing),
            Input::Dequeued {
                agent,
                queue_sid,
                url,
                waited,
            } => self.on_dequeued(agent, queue_sid, url, waited, now),
            Input::MediaReturned => self.on_media_returned(now),
            Input::MemberMatched {
                leg,
                call_sid,
                queue_sid,
                waited,
            } => self.on_member_matched(leg, call_sid, queue_sid, waited),
            Input::MemberJoined { leg, config } => self.on_member_joined(leg, *config, now),
            Input::DequeueFailed { leg, reason } => self.on_dequeue_failed(leg, reason, now),
            Input::MemberGone { member } => self.on_member_gone(&member, now),
            Input::RoomJoined(outcome) => self.on_room_joined(outcome, now),
            Input::RoomElsewhere {
                owner_sip_uri,
                auth_token,
                now_unix,
            } => self.on_room_elsewhere(&owner_sip_uri, &auth_token, now_unix, now),
            Input::RoomNotice(notice) => self.on_room_notice(notice, now),
            Input::RoomMediaBack(notice) => self.on_room_media_back(notice, now),
            Input::Routed { ask, result } => self.on_routed(ask, result, now),
        }
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.expired(now) {
            match timer {
                Timer::Ring if self.placing.is_some() => self.end_call(Ending::RingTimeout, now),
                Timer::Ring => self.dial_ring_timeout(now),
                Timer::DialLimit => {
                    if !self.room_time_limit(now) {
                        self.dial_time_limit(now)
                    }
                }
                Timer::CallLimit => self.end_call(Ending::MaxDuration, now),
                Timer::DigitsSent => self.digits_sent(None, now),
                Timer::MainDocument => self.document_timeout(RunnerId::Main, now),
                Timer::SideDocument => self.document_timeout(RunnerId::Side, now),
                Timer::Apology => self.apology_heard(now),
            }
        }
        self.settle(now);
    }

    fn wall(&self, now: Instant) -> DateTime<Utc> {
        self.clock.at(now)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn leg(&self, id: LegId) -> &Leg {
        &self.legs[id.0 as usize]
    }

    fn leg_mut(&mut self, id: LegId) -> &mut Leg {
        &mut self.legs[id.0 as usize]
    }

    /// Hangs up leg `id` from our side with `ending`.
    fn hang_up_leg(&mut self, id: LegId, ending: Ending, now: Instant) {
        let at = self.wall(now);
        let leg = &mut self.legs[id.0 as usize];
        leg.hang_up(id, ending, at, &mut self.out);
    }

    /// Records that leg `id` was ended by its far end (or its SIP side) with `ending`.
    fn leg_ended(&mut self, id: LegId, ending: Ending, now: Instant) {
        let at = self.wall(now);
        let leg = &mut self.legs[id.0 as usize];
        leg.ended(id, ending, at, &mut self.out);
    }

    /// callml ends the call (once), with `ending`: the call's leg hung up (BYE, CANCEL or
    /// the final response the ending calls for); see [`finish_call`](Self::finish_call).
    fn end_call(&mut self, ending: Ending, now: Instant) {
        self.finish_call(ending, true, now);
    }

    /// The call's far end (or its SIP side) ended the call, with `ending`.
    fn call_ended(&mut self, ending: Ending, now: Instant) {
        self.finish_call(ending, false, now);
    }

    /// The call ends (once): a dial under way is abandoned (its `action` still requested),
    /// the call's leg hung up when `hang_up`, the documents wound down (a `<Record>` under way
    /// still reports to its `action`), every recording closed.
    fn finish_call(&mut self, ending: Ending, hang_up: bool, now: Instant) {
        if self.legs[0].is_ended() {
            return;
        }
        let ending = self.ending_over_apology(ending);
        self.abandon_dial(true, now);
        if let Some(sid) = self.placing.take().and_then(|p| p.conference_sid) {
            let status = ending.call_status(false).as_str();
            self.out.push(Action::LeaveRoom {
                conference_sid: sid,
                reason: LeftReason::NotAnswered {
                    status,
                    clearing: ending.clearing(false),
                },
            });
        }
        self.quit_queue(now);
        self.quit_room(ending.clearing(true), now);
        if hang_up {
            self.hang_up_leg(LegId::CALL, ending, now);
        } else {
            self.leg_ended(LegId::CALL, ending, now);
        }
        self.closing = true;
        for timer in [
            Timer::Ring,
            Timer::DialLimit,
            Timer::CallLimit,
            Timer::DigitsSent,
        ] {
            self.timers.stop(timer);
        }
        self.side = None;
        self.wind_down(now);
        let own_verb = |r: &OpenRecording| r.leg == LegId::CALL && r.tap == RecordingTap::Verb;
        let others: Vec<(LegId, RecordingTap)> = self
            .recordings
            .iter()
            .filter(|r| !own_verb(r))
            .map(|r| (r.leg, r.tap))
            .collect();
        for (leg, tap) in others {
            self.stop_recording(leg, tap);
        }
    }

    /// Carries out what the documents asked for, refreshes their timers, and says when the
    /// call is done.
    fn settle(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            for id in [RunnerId::Main, RunnerId::Side] {
                while let Some(runner) = self.runner_mut(id)
                    && let Some(step) = runner.poll_verb()
                {
                    let leg = runner.leg;
                    self.out.push(Action::Verb { leg, step });
                }
                while let Some(effect) = self.runner_mut(id).and_then(Runner::poll_effect) {
                    progressed = true;
                    self.apply_effect(id, effect, now);
                }
            }
            if !progressed {
                break;
            }
        }
        self.timers
            .set_or_stop(Timer::MainDocument, self.main.poll_timeout());
        let side = self.side.as_ref().and_then(Runner::poll_timeout);
        self.timers.set_or_stop(Timer::SideDocument, side);
        for (index, leg) in self.legs.iter_mut().enumerate() {
            let id = LegId(index as u32);
            if leg.is_ended() && !leg.released && !self.recordings.iter().any(|r| r.leg == id) {
                leg.released = true;
                self.out.push(Action::Release(id));
            }
        }
        if self.closing
            && !self.done
            && self.recordings.is_empty()
            && self.dial.is_none()
            && self.membership.is_none()
            && self.conference.is_none()
        {
            self.done = true;
            self.timers = TimerTable::default();
            self.out.push(Action::Done);
        }
    }

    fn on_signal(&mut self, id: LegId, signal: CallSignal, now: Instant) {
        if self.leg(id).is_ended() {
            tracing::debug!(leg = id.0, ?signal, "signal for an ended leg ignored");
            return;
        }
        if id == LegId::CALL && self.placing.is_some() {
            return self.placing_signal(signal, now);
        }
        if id != LegId::CALL && !self.leg(id).is_answered() {
            return self.ringing_child_signal(id, signal, now);
        }
        match signal {
            CallSignal::Bye if id == LegId::CALL => self.call_ended(Ending::FarEndHungUp, now),
            CallSignal::Bye => {
                self.leg_ended(id, Ending::FarEndHungUp, now);
                self.child_gone(id, now);
            }
            CallSignal::Canceled => self.call_ended(Ending::CallerCanceled, now),
            CallSignal::NoAck => {
                // Reported when Timer H fires, as Twilio's debugger would: a notification of
                // the call besides its record's error.
                let message = Ending::NoAck.message().unwrap_or_default();
                self.out.push(Action::Warning {
                    leg: LegId::CALL,
                    code: crate::call::ending::NO_ACK,
                    message,
                });
                self.call_ended(Ending::NoAck, now)
            }
            CallSignal::SessionExpired if id == LegId::CALL => {
                self.call_ended(Ending::SessionExpired, now)
            }
            CallSignal::SessionExpired => {
                self.leg_ended(id, Ending::SessionExpired, now);
                self.child_gone(id, now);
            }
            CallSignal::Acked { sdp } => self.on_acked(id, sdp.as_deref(), now),
            CallSignal::Info { content_type, body } => match parse_sip_info(&content_type, &body) {
                Ok(info) => self
                    .out
                    .push(Action::Media(id, MediaCommand::SignalDigit(info.digit))),
                Err(error) => tracing::debug!(%error, "SIP INFO without a key ignored"),
            },
            CallSignal::Reoffer { held, .. } => self.on_reoffer(id, held),
            other => tracing::debug!(leg = id.0, signal = ?other, "signal ignored"),
        }
    }

    /// The ACK of an inbound call: with a delayed offer, it carries the answer to ours.
    fn on_acked(&mut self, id: LegId, sdp: Option<&[u8]>, now: Instant) {
        let media_timeout = self.config.media_timeout;
        let leg = self.leg_mut(id);
        if !leg.awaiting_answer {
            return;
        }
        leg.awaiting_answer = false;
        let negotiated = match sdp {
            Some(sdp) => answered_config(sdp, &leg.offered, media_timeout),
            None => Err(MediaFailure {
                status: 488,
                reason: "the ACK carried no SDP answer to our offer".into(),
            }),
        };
        match negotiated {
            Ok(config) => {
                self.leg_mut(id).media = Some(config.clone());
                self.out
                    .push(Action::Media(id, MediaCommand::Renegotiate(config)));
            }
            Err(failure) => self.end_call(
                Ending::MediaFailed {
                    status: failure.status,
                    reason: failure.reason,
                },
                now,
            ),
        }
    }

    /// A re-offer (hold or resume) is answered at once; in a bridge, a change of hold is
    /// passed on to the other leg.
    fn on_reoffer(&mut self, id: LegId, held: bool) {
        let leg = self.leg_mut(id);
        leg.held = held;
        tracing::info!(
            leg = id.0,
            held,
            "{}",
            if held {
                "the far end put the call on hold"
            } else {
                "the far end renegotiated the session (resumed)"
            }
        );
        self.out
            .push(Action::Media(id, MediaCommand::SetHeld(held)));
        self.out.push(Action::Sip(id, SipCommand::AcceptReoffer));
        if id == LegId::CALL {
            self.room_far_end_hold(held);
        }
        let Some(other) = self.bridged_with(id) else {
            return;
        };
        let other_leg = self.leg_mut(other);
        if other_leg.holding != held {
            other_leg.holding = held;
            self.out
                .push(Action::Media(other, MediaCommand::SetHolding(held)));
            self.out.push(Action::Sip(other, SipCommand::Hold(held)));
        }
    }

    fn on_update(&mut self, update: CallUpdate, now: Instant) {
        if self.closing {
            return;
        }
        match update {
            CallUpdate::Complete => self.end_call(Ending::HungUp, now),
            CallUpdate::Cancel if !self.legs[0].is_answered() => {
                self.end_call(Ending::Canceled, now)
            }
            CallUpdate::Cancel => {}
            CallUpdate::Redirect(_) if self.apology.is_some() => {
                tracing::info!(call_sid = %self.sid(), "redirect ignored: the call is ending on an application error");
            }
            CallUpdate::Redirect(source) => {
                if let Some(placing) = &mut self.placing {
                    placing.document = source;
                    return;
                }
                self.abandon_dial(false, now);
                if self.redirect_from_queue(&source, now) || self.redirect_from_room(&source, now) {
                    return;
                }
                self.main.stop_media(&mut self.out);
                self.main.replacing = true;
                self.fetch(RunnerId::Main, source, Vec::new());
            }
        }
    }

    fn on_media(&mut self, id: LegId, event: MediaEvent, now: Instant) {
        match event {
            MediaEvent::Digit(digit) => {
                tracing::debug!(key = %digit.digit, source = ?digit.source, "key pressed");
                if id == LegId::CALL && digit.digit == '*' && self.star_ends_bridge() {
                    return self.hang_up_on_star(now);
                }
                self.fetches_without_progress = 0;
                self.feed_leg(id, crate::interp::Event::Digit(digit.digit), now);
            }
            MediaEvent::DigitsSent => self.digits_sent(Some(id), now),
            MediaEvent::Inactive { silent_for } => {
                let ending = Ending::MediaTimeout { silent_for };
                if id == LegId::CALL {
                    self.end_call(ending, now);
                } else if !self.leg(id).is_ended() {
                    self.hang_up_leg(id, ending, now);
                    self.child_gone(id, now);
                }
            }
            MediaEvent::SilenceTimeout => self.feed_leg(id, crate::interp::Event::Silence, now),
            MediaEvent::RemoteLatched { address } => {
                tracing::debug!(leg = id.0, %address, "RTP latched to the far end's source");
            }
        }
    }

    fn on_media_lost(&mut self, id: LegId, reason: String, now: Instant) {
        tracing::error!(leg = id.0, %reason, "media lost");
        if id == LegId::CALL {
            self.end_call(Ending::Internal(reason), now);
        } else if !self.leg(id).is_ended() {
            self.hang_up_leg(id, Ending::Internal(reason), now);
            self.child_gone(id, now);
        }
    }

    /// Keys to a leg are out (or given up on, `None`): what waited for them goes on.
    fn digits_sent(&mut self, id: Option<LegId>, now: Instant) {
        let for_placing = self.placing.as_ref().is_some_and(|p| p.sending_digits);
        if for_placing && id.is_none_or(|id| id == LegId::CALL) {
            self.timers.stop(Timer::DigitsSent);
            return self.start_placed_document(now);
        }
        if let Some(child) = self.dial_sending_digits() {
            if id.is_none_or(|id| id == child) {
                self.timers.stop(Timer::DigitsSent);
                return self.after_send_digits(child, now);
            }
        }
        if let Some(id) = id
            && let Some(runner) = self.runner_for_leg(id)
            && self.runner_mut(runner).is_some_and(Runner::digits_done)
        {
            self.feed(runner, crate::interp::Event::PromptDone, now);
        }
    }

    fn on_recording_started(&mut self, leg: LegId, tap: RecordingTap, started: bool, now: Instant) {
        let Some(index) = self
            .recordings
            .iter()
            .position(|r| r.leg == leg && r.tap == tap)
        else {
            return;
        };
        let stop_at_once = matches!(
            self.recordings[index].state,
            RecordingState::Starting { stop_at_once: true }
        );
        if !started {
            self.recordings.remove(index);
            if tap == RecordingTap::Verb {
                self.feed_leg(leg, crate::interp::Event::RecordingFinished(None), now);
            }
            return;
        }
        if stop_at_once {
            self.recordings[index].state = RecordingState::Closing;
            self.out.push(Action::StopRecording { leg, tap });
            return;
        }
        self.recordings[index].state = RecordingState::Running;
        if tap == RecordingTap::Verb
            && let Some(runner) = self.runner_for_leg(leg)
            && let Some(silence) = self.runner_mut(runner).and_then(|r| r.silence.take())
        {
            self.out.push(Action::Media(
                leg,
                MediaCommand::DetectSilence(Some(silence)),
            ));
        }
    }

    fn on_recording_finished(
        &mut self,
        leg: LegId,
        tap: RecordingTap,
        audio: Option<RecordedAudio>,
        now: Instant,
    ) {
        self.recordings.retain(|r| !(r.leg == leg && r.tap == tap));
        match tap {
            RecordingTap::Verb => {
                self.feed_leg(leg, crate::interp::Event::RecordingFinished(audio), now)
            }
            RecordingTap::Dial => self.dial_recording_finished(audio, now),
            RecordingTap::Call => {}
        }
    }

    /// Asks the driver to record `leg` through `tap`.
    fn start_recording(&mut self, leg: LegId, tap: RecordingTap, spec: RecordingSpec) {
        if self.recordings.iter().any(|r| r.leg == leg && r.tap == tap) {
            return;
        }
        self.recordings.push(OpenRecording {
            leg,
            tap,
            state: RecordingState::Starting {
                stop_at_once: false,
            },
        });
        let record = &self.leg(leg).record;
        self.out.push(Action::StartRecording {
            leg,
            tap,
            spec,
            account_sid: record.account_sid.clone(),
            call_sid: record.sid.clone(),
        });
    }

    /// Closes the recording of `leg` through `tap`; false when none runs.
    fn stop_recording(&mut self, leg: LegId, tap: RecordingTap) -> bool {
        let Some(recording) = self
            .recordings
            .iter_mut()
            .find(|r| r.leg == leg && r.tap == tap)
        else {
            return false;
        };
        match recording.state {
            RecordingState::Running => {
                recording.state = RecordingState::Closing;
                self.out.push(Action::StopRecording { leg, tap });
            }
            RecordingState::Starting { .. } => {
                recording.state = RecordingState::Starting { stop_at_once: true };
            }
            RecordingState::Closing => {}
        }
        true
    }

    fn is_recording(&self, leg: LegId) -> bool {
        self.recordings.iter().any(|r| r.leg == leg)
    }

    /// Answers the call's leg if it is still ringing: `200` with its SDP, `in-progress`.
    fn answer_call(&mut self, now: Instant) {
        let at = self.wall(now);
        let leg = &mut self.legs[0];
        if leg.state != LegState::Early {
            return;
        }
        if let Some(sdp) = leg.answer_sdp.take() {
            self.out
                .push(Action::Sip(LegId::CALL, SipCommand::Answer(sdp)));
        }
        leg.answered(LegId::CALL, at, &mut self.out);
        if let Some(spec) = self.call_recording.take() {
            self.start_recording(LegId::CALL, RecordingTap::Call, spec);
        }
    }

    /// The REST call's leg while it rings.
    fn placing_signal(&mut self, signal: CallSignal, now: Instant) {
        let at = self.wall(now);
        match signal {
            CallSignal::Progress(response) => {
                let leg = &mut self.legs[0];
                if leg.record.sip_call_id.is_none() {
                    leg.record.sip_call_id = response.headers.get("Call-ID").map(str::to_owned);
                }
                let first = leg.ringing(LegId::CALL, at, &mut self.out);
                let conference = self.placing.as_ref().and_then(|p| p.conference_sid.clone());
                if let Some(conference_sid) = conference.filter(|_| first) {
                    let call_sid = self.legs[0].record.sid.clone();
                    self.out.push(Action::TellRoom {
                        conference_sid,
                        input: RoomInput::Ringing { call_sid },
                    });
                }
            }
            CallSignal::Answered(response) => {
                self.timers.stop(Timer::Ring);
                let leg = &mut self.legs[0];
                leg.record.sip_response_code = Some(response.status);
                leg.record.sip_call_id = response.headers.get("Call-ID").map(str::to_owned);
                let negotiated =
                    answered_config(&response.body, &leg.offered, self.config.media_timeout);
                let config = match negotiated {
                    Ok(config) => config,
                    Err(failure) => {
                        return self.end_call(
                            Ending::MediaFailed {
                                status: 488,
                                reason: format!("unusable SDP answer: {}", failure.reason),
                            },
                            now,
                        );
                    }
                };
                leg.media = Some(config.clone());
                self.out
                    .push(Action::Media(LegId::CALL, MediaCommand::Connect(config)));
                self.answer_call(now);
                let Some(placing) = &mut self.placing else {
                    return;
                };
                let limit = now + placing.time_limit;
                if self
                    .timers
                    .get(Timer::CallLimit)
                    .is_none_or(|at| limit < at)
                {
                    self.timers.set(Timer::CallLimit, limit);
                }
                match placing.send_digits.take() {
                    Some(digits) => {
                        placing.sending_digits = true;
                        self.timers
                            .set(Timer::DigitsSent, now + digits_timeout(&digits));
                        self.out
                            .push(Action::Media(LegId::CALL, MediaCommand::SendDigits(digits)));
                    }
                    None => self.start_placed_document(now),
                }
            }
            CallSignal::Rejected(response) => {
                let ending = self.legs[0].declined(response.status);
                self.call_ended(ending, now)
            }
            CallSignal::Unreachable => self.call_ended(Ending::NoResponse, now),
            CallSignal::TransportFailed { reason } => {
                self.call_ended(Ending::TransportFailed(reason), now)
            }
            CallSignal::Unresolvable { reason } => {
                self.call_ended(Ending::Unresolvable(reason), now)
            }
            CallSignal::NotRegistered { client } => {
                let to = self.legs[0].record.to.clone();
                self.call_ended(Ending::NotRegistered { client, to }, now)
            }
            CallSignal::Canceled => self.call_ended(Ending::Canceled, now),
            other => tracing::debug!(signal = ?other, "signal ignored while ringing"),
        }
    }

    /// The REST call was answered (and its digits sent): its document starts.
    fn start_placed_document(&mut self, now: Instant) {
        let Some(placing) = self.placing.take() else {
            return;
        };
        let _ = now;
        self.main.fallback = placing.fallback;
        self.fetch(RunnerId::Main, placing.document, Vec::new());
    }

    /// The other leg of a bridge `id` is in.
    fn bridged_with(&self, id: LegId) -> Option<LegId> {
        let child = self.dial.as_ref()?.bridged_child()?;
        match id {
            LegId::CALL => Some(child),
            other if other == child => Some(LegId::CALL),
            _ => None,
        }
    }

    /// Warns, once per call, that answering-machine detection is not available.
    fn warn_machine_detection(&mut self) {
        if !self.warned_machine_detection {
            self.warned_machine_detection = true;
            tracing::warn!(call_sid = %self.legs[0].record.sid, "answering machine detection is not available in this version: AnsweredBy=unknown");
        }
    }
}

/// The headers callml's INVITEs carry about the leg they place.
fn twilio_headers(record: &CallRecord) -> Vec<(String, String)> {
    vec![
        ("X-Twilio-CallSid".to_owned(), record.sid.clone()),
        ("X-Twilio-AccountSid".to_owned(), record.account_sid.clone()),
        (
            "X-Twilio-ApiVersion".to_owned(),
            super::params::API_VERSION.to_owned(),
        ),
    ]
}

/// How long sending `digits` may take before it is given up on: a base plus a slot per key
/// (`w` waits half a second, `W` a second).
fn digits_timeout(digits: &str) -> Duration {
    Duration::from_secs(2) + Duration::from_secs(1) * digits.len() as u32
}
