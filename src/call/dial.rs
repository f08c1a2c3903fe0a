//! `<Dial>`: ring the dialled parties as child legs of the call (`Direction=outbound-dial`,
//! `ParentCallSid`), connect the first to answer with the caller, and report the result as
//! Twilio's `Dial*` parameters for the `action` request.
//!
//! ```text
//! place children (all at once, or one after another with sequential="true")
//!   ─▶ first 2xx wins; the others are CANCELed (a late 2xx is ACKed and sent BYE)
//!   ─▶ whisper (<Sip url>): a document on the callee; <Hangup> there means no-answer
//!   ─▶ answerOnBridge: the caller is answered now
//!   ─▶ bridge: audio relayed both ways until either side hangs up or timeLimit passes
//! no answer within timeout ─▶ CANCEL all ─▶ no-answer │ all refused ─▶ busy/no-answer/failed
//! the caller hangs up ─▶ children CANCELed or sent BYE; the action still hears about it
//! ```
//! Everything runs in the caller's task, which owns every leg (one task per call).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;

use super::control::CallUpdate;
use super::document::Source;
use super::inbound::MEDIA_ERROR;
use super::media::{LocalLeg, MediaFailure};
use super::outbound::{TRANSPORT_FAILED, failure_status};
use super::params::{API_VERSION, CallParams, party_name};
use super::party::{DEFAULT_CODECS, Party, PartyError, caller_uri};
use super::progress::{CallbackTarget, Outcome, Progress, ProgressEvent, whole_seconds};
use super::recording::{CallRecording, RecordingSpec};
use super::session::{Session, SessionEnd, sleep_until};
use crate::ids::Sid;
use crate::markup::ast::{self, CallEvent, Dial, DialRecord, DialTarget, RecordingTrack, Trim};
use crate::media::library::Audio;
use crate::media::record::RecordingChannels;
use crate::media::relay::RtpRelay;
use crate::media::relay_engine::{BridgeHandle, RelayEngine, RelayEvent, RelayLeg, Side};
use crate::media::ringback::ringback;
use crate::media::session::MediaEvent;
use crate::media::session::RecordingTap;
use crate::media::stream::{PTIME, RtpStream};
use crate::sip::endpoint::{CallKey, CallSignal};
use crate::sip::msg::{Response, Uri};
use crate::store::RecordingSource;
use crate::store::{CallRecord, CallStatus, Direction};
use crate::transport::{CallGuard, SignalReceiver, SignalSender};

/// Twilio's "SIP URI DNS does not resolve" (13254), for parties callml cannot reach.
const UNREACHABLE: u32 = 13254;

/// One dialled party.
struct Child {
    key: CallKey,
    progress: Progress,
    /// `None` when the party could not even be placed.
    party: Option<Party>,
    leg: Option<LocalLeg>,
    /// The media of a 183 with SDP, relayed to the caller while ringing (and kept on answer).
    early: Option<Box<RtpStream>>,
    guard: Option<CallGuard>,
    ringing: bool,
    /// How the attempt ended, once it did.
    ended: Option<Outcome>,
    /// The final response (for `DialSipResponseCode` and `DialSipHeader_*`).
    response: Option<Box<Response>>,
}

impl Child {
    /// A party that failed before its INVITE.
    fn failed(progress: Progress, outcome: Outcome) -> Child {
        Child {
            key: CallKey(0),
            progress,
            party: None,
            leg: None,
            early: None,
            guard: None,
            ringing: false,
            ended: Some(outcome),
            response: None,
        }
    }
}

/// What ringing came to.
enum Ringing {
    Answered(usize, Box<Response>),
    Exhausted,
    CallerGone,
}

/// The result reported to `action`.
struct Report {
    status: &'static str,
    call_sid: Option<String>,
    duration: u32,
    bridged: bool,
    response: Option<Box<Response>>,
}

impl Report {
    fn params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            ("DialCallStatus".to_owned(), self.status.to_owned()),
            ("DialCallDuration".to_owned(), self.duration.to_string()),
            ("DialBridged".to_owned(), self.bridged.to_string()),
        ];
        if let Some(sid) = &self.call_sid {
            params.push(("DialCallSid".to_owned(), sid.clone()));
        }
        if let Some(response) = &self.response {
            params.push((
                "DialSipResponseCode".to_owned(),
                response.status.to_string(),
            ));
            if let Some(call_id) = response.headers.get("Call-ID") {
                params.push(("DialSipCallId".to_owned(), call_id.to_owned()));
            }
            for (name, value) in response.headers.iter() {
                if name.len() > 2 && name[..2].eq_ignore_ascii_case("X-") {
                    params.push((format!("DialSipHeader_{name}"), value.to_owned()));
                }
            }
        }
        params
    }
}

/// Carries out `dial` on the session's call; returns the `Dial*` parameters (and the
/// `Recording*` ones of a `<Dial record>`).
pub(super) async fn run(
    session: &mut Session,
    dial: &Dial,
    progress: &mut Progress,
) -> Vec<(String, String)> {
    let mut recording = DialRecording::new(dial);
    let mut params = dial_parties(session, dial, progress, &mut recording)
        .await
        .params();
    params.extend(recording.finish(session).await);
    params
}

/// `<Dial record>`: the caller's leg recorded (both directions: the caller, and what the
/// caller hears) from ringing or from the answer until the dial ends. Recording keeps the
/// bridge on the frame-by-frame path, where every frame passes through the caller's stream.
struct DialRecording {
    from: Option<RecordFrom>,
    spec: RecordingSpec,
    under_way: Option<CallRecording>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordFrom {
    Ringing,
    Answer,
}

impl DialRecording {
    fn new(dial: &Dial) -> DialRecording {
        let (from, dual) = match dial.record {
            DialRecord::DoNotRecord => (None, false),
            DialRecord::RecordFromAnswer => (Some(RecordFrom::Answer), false),
            DialRecord::RecordFromRinging => (Some(RecordFrom::Ringing), false),
            DialRecord::RecordFromAnswerDual => (Some(RecordFrom::Answer), true),
            DialRecord::RecordFromRingingDual => (Some(RecordFrom::Ringing), true),
        };
        let channels = match (dual, dial.recording_track) {
            (true, _) => RecordingChannels::Dual,
            (false, RecordingTrack::Both) => RecordingChannels::Mixed,
            (false, RecordingTrack::Inbound) => RecordingChannels::Inbound,
            (false, RecordingTrack::Outbound) => RecordingChannels::Outbound,
        };
        DialRecording {
            from,
            spec: RecordingSpec {
                source: RecordingSource::DialVerb,
                channels,
                trim_silence: dial.trim == Trim::TrimSilence,
                status_callback: dial.recording_status_callback.clone(),
            },
            under_way: None,
        }
    }

    /// Starts recording when `now` is the moment asked for (or past it) and the caller's
    /// media is up; a recording that cannot start is logged and the dial goes on.
    async fn start(&mut self, session: &mut Session, progress: &Progress, now: RecordFrom) {
        let due = match self.from {
            Some(RecordFrom::Ringing) => true,
            Some(RecordFrom::Answer) => now == RecordFrom::Answer,
            None => false,
        };
        if !due || self.under_way.is_some() || !session.answered {
            return;
        }
        match CallRecording::start(&session.services, &progress.params, self.spec.clone()).await {
            Ok((recording, recorder)) => {
                session.stream.start_recording(RecordingTap::Dial, recorder);
                self.under_way = Some(recording);
            }
            Err(error) => {
                tracing::warn!(call = %progress.record.sid, %error, "<Dial record> not started");
            }
        }
    }

    /// Closes the recording; `RecordingUrl`, `RecordingSid` and `RecordingDuration` for the
    /// `action` when it holds audio.
    async fn finish(self, session: &mut Session) -> Vec<(String, String)> {
        let (Some(recording), Some(recorder)) = (
            self.under_way,
            session.stream.stop_recording(RecordingTap::Dial),
        ) else {
            return Vec::new();
        };
        match recording.finish(recorder).await.audio() {
            Some(audio) => vec![
                ("RecordingUrl".to_owned(), audio.url),
                ("RecordingSid".to_owned(), audio.sid),
                ("RecordingDuration".to_owned(), audio.duration.to_string()),
            ],
            None => Vec::new(),
        }
    }
}

/// Rings the parties of `dial` and bridges the first to answer.
async fn dial_parties(
    session: &mut Session,
    dial: &Dial,
    progress: &mut Progress,
    recording: &mut DialRecording,
) -> Report {
    let sid = progress.record.sid.clone();
    let trunk = session.services.config.trunk.clone();
    let parties: Vec<Result<Party, PartyError>> = match &dial.target {
        DialTarget::Sip(nouns) => nouns
            .iter()
            .map(|noun| Ok(Party::sip(noun, &sid)))
            .collect(),
        DialTarget::Parties(nouns) => nouns
            .iter()
            .map(|noun| match noun {
                ast::Party::Number(number) => Party::number(number, trunk.as_ref()),
                ast::Party::Client(_) => Err(PartyError::NoRegistrar),
            })
            .collect(),
        DialTarget::Conference(_) | DialTarget::Queue(_) => {
            tracing::warn!(call = %sid, "<Dial> to a <Conference> or <Queue> is not supported yet");
            return Report {
                status: "failed",
                call_sid: None,
                duration: 0,
                bridged: false,
                response: None,
            };
        }
    };
    recording
        .start(session, progress, RecordFrom::Ringing)
        .await;
    let (signal_sender, mut signals) = mpsc::unbounded_channel();
    let groups: Vec<Vec<Result<Party, PartyError>>> = if dial.sequential {
        parties.into_iter().map(|party| vec![party]).collect()
    } else {
        vec![parties]
    };
    let mut tried: Vec<Tried> = Vec::new();
    for group in groups {
        let mut children = Vec::with_capacity(group.len());
        for party in group {
            children.push(place(session, dial, progress, party, &signal_sender).await);
        }
        let ringing = ring(session, dial, &mut children, &mut signals).await;
        match ringing {
            Ringing::Answered(winner, response) => {
                let mut others: Vec<Child> = Vec::new();
                let mut chosen = None;
                for (index, child) in children.into_iter().enumerate() {
                    if index == winner {
                        chosen = Some(child);
                    } else {
                        others.push(child);
                    }
                }
                for child in others {
                    abandon(session, child, CallStatus::Canceled).await;
                }
                let Some(child) = chosen else {
                    break;
                };
                return connect(
                    session,
                    dial,
                    progress,
                    child,
                    response,
                    &mut signals,
                    recording,
                )
                .await;
            }
            Ringing::CallerGone => {
                for child in children {
                    abandon(session, child, CallStatus::Canceled).await;
                }
                return Report {
                    status: "canceled",
                    call_sid: None,
                    duration: 0,
                    bridged: false,
                    response: None,
                };
            }
            Ringing::Exhausted => {
                for child in children {
                    tried.push(Tried {
                        sid: child.progress.record.sid.clone(),
                        status: child
                            .ended
                            .as_ref()
                            .map_or(CallStatus::Failed, |o| o.status),
                        response: child.response.clone(),
                    });
                    finish(session, child).await;
                }
            }
        }
    }
    failure_report(&tried)
}

/// A party that was tried and did not answer.
struct Tried {
    sid: String,
    status: CallStatus,
    response: Option<Box<Response>>,
}

/// The report when nobody answered: busy if anyone was busy, else no-answer, else failed.
fn failure_report(tried: &[Tried]) -> Report {
    let statuses: Vec<CallStatus> = tried.iter().map(|t| t.status).collect();
    let status = if statuses.contains(&CallStatus::Busy) {
        "busy"
    } else if statuses.contains(&CallStatus::NoAnswer) || statuses.contains(&CallStatus::Canceled) {
        "no-answer"
    } else {
        "failed"
    };
    let last = tried.last();
    Report {
        status,
        call_sid: last.map(|t| t.sid.clone()),
        duration: 0,
        bridged: false,
        response: last.and_then(|t| t.response.clone()),
    }
}

/// The child's record and callbacks, and its INVITE on the wire (or a failed attempt when it
/// cannot be placed).
async fn place(
    session: &Session,
    dial: &Dial,
    parent: &Progress,
    party: Result<Party, PartyError>,
    signals: &SignalSender,
) -> Child {
    let services = &session.services;
    let sid = Sid::new("CA");
    let (to, party_caller) = match &party {
        Ok(party) => (
            party_name(&Uri::Sip(party.uri.clone())),
            party.caller_id.clone(),
        ),
        Err(_) => (String::new(), None),
    };
    let caller = dial
        .caller_id
        .clone()
        .or(party_caller)
        .unwrap_or_else(|| parent.record.from.clone());
    let mut record = CallRecord::new(
        sid.as_str(),
        &parent.record.account_sid,
        &caller,
        to,
        Direction::OutboundDial,
        Utc::now(),
    );
    record.parent_call_sid = Some(parent.record.sid.clone());
    let params = CallParams {
        call_sid: sid.to_string(),
        account_sid: parent.record.account_sid.clone(),
        from: record.from.clone(),
        to: record.to.clone(),
        direction: Direction::OutboundDial,
        parent_call_sid: Some(parent.record.sid.clone()),
        forwarded_from: None,
        caller_name: None,
        sip_call_id: None,
        sip_source_ip: None,
        sip_headers: Vec::new(),
    };
    let callbacks = party.as_ref().ok().and_then(|party| {
        let callback = &party.status_callback;
        callback.url.as_ref().map(|url| CallbackTarget {
            url: url.clone(),
            method: callback.method,
            events: callback
                .events
                .iter()
                .map(|event| match event {
                    CallEvent::Initiated => ProgressEvent::Initiated,
                    CallEvent::Ringing => ProgressEvent::Ringing,
                    CallEvent::Answered => ProgressEvent::Answered,
                    CallEvent::Completed => ProgressEvent::Completed,
                })
                .collect::<BTreeSet<_>>(),
        })
    });
    let mut progress = Progress::new(
        params,
        record,
        services.store.clone(),
        &services.webhooks,
        callbacks,
    );
    progress.record.start_time = Some(Utc::now());
    progress.save().await;
    progress.notify(ProgressEvent::Initiated);
    let party = match party {
        Ok(party) => party,
        Err(error) => {
            return Child::failed(
                progress,
                Outcome::new(CallStatus::Failed).error(UNREACHABLE, error.to_string()),
            );
        }
    };
    let leg = match LocalLeg::bind(services).await {
        Ok(leg) => leg,
        Err(failure) => {
            return Child::failed(
                progress,
                Outcome::new(CallStatus::Failed).reason(failure.reason),
            );
        }
    };
    let headers = vec![
        ("X-Twilio-CallSid".to_owned(), progress.record.sid.clone()),
        (
            "X-Twilio-AccountSid".to_owned(),
            progress.record.account_sid.clone(),
        ),
        ("X-Twilio-ApiVersion".to_owned(), API_VERSION.to_owned()),
    ];
    let from = caller_uri(&caller, leg.media.address);
    let invite = party.invite(from, leg.offer(&party.codecs), headers);
    let key = session.sip.invite(invite, signals.clone());
    Child {
        key,
        progress,
        party: Some(party),
        leg: Some(leg),
        early: None,
        guard: Some(session.sip.guard(key)),
        ringing: false,
        ended: None,
        response: None,
    }
}

/// Rings `children` until one answers, all fail, the timeout passes, or the caller leaves;
/// meanwhile an answered caller hears ringback.
async fn ring(
    session: &mut Session,
    dial: &Dial,
    children: &mut [Child],
    signals: &mut SignalReceiver,
) -> Ringing {
    let tone = ringback(dial.ring_tone);
    if session.answered {
        // The first frame goes out now, not at the first tick: a party answering at once
        // must not leave the caller without a word from us.
        session.stream.play(tone.clone());
        session.stream.tick();
    }
    let ringing = ring_until_decided(session, dial, children, signals, &tone).await;
    session.stream.stop();
    ringing
}

async fn ring_until_decided(
    session: &mut Session,
    dial: &Dial,
    children: &mut [Child],
    signals: &mut SignalReceiver,
    tone: &Audio,
) -> Ringing {
    let deadline = tokio::time::Instant::now() + dial.timeout;
    let mut ticker = tokio::time::interval(PTIME);
    let mut shutdown = session.services.shutdown.clone();
    // The child whose early media the caller hears instead of ringback.
    let mut early: Option<usize> = None;
    loop {
        if children.iter().all(|c| c.ended.is_some()) {
            return Ringing::Exhausted;
        }
        tokio::select! {
            Some((key, signal)) = signals.recv() => {
                let Some(index) = children.iter().position(|c| c.key == key && c.ended.is_none()) else {
                    if let CallSignal::Answered(_) = signal {
                        session.sip.hangup(key);
                    }
                    continue;
                };
                let child = &mut children[index];
                match signal {
                    CallSignal::Progress(response) => {
                        if !child.ringing {
                            child.ringing = true;
                            child.progress.record.sip_call_id = response.headers.get("Call-ID").map(str::to_owned);
                            child.progress.ringing().await;
                            child.progress.notify(ProgressEvent::Ringing);
                        }
                        if early.is_none() && session.answered && start_early_media(session, child, &response) {
                            early = Some(index);
                            session.stream.stop();
                        }
                    }
                    CallSignal::Answered(response) => return Ringing::Answered(index, response),
                    CallSignal::Rejected(response) => {
                        child.ended = Some(Outcome::new(failure_status(response.status)).sip(response.status));
                        child.response = Some(response);
                    }
                    CallSignal::Unreachable => {
                        child.ended = Some(Outcome::new(CallStatus::NoAnswer).sip(408).reason("no response"));
                    }
                    CallSignal::TransportFailed => {
                        child.ended = Some(Outcome::new(CallStatus::Failed).sip(503).reason(TRANSPORT_FAILED));
                    }
                    CallSignal::Unresolvable { reason } => {
                        child.ended = Some(Outcome::new(CallStatus::Failed).error(UNREACHABLE, reason));
                    }
                    CallSignal::Canceled => {
                        child.ended = Some(Outcome::new(CallStatus::Canceled).sip(487));
                    }
                    other => tracing::debug!(signal = ?other, "child signal ignored while ringing"),
                }
                if early == Some(index) && children[index].ended.is_some() {
                    early = None;
                    children[index].early = None;
                    session.stream.play(tone.clone());
                }
            }
            signal = session.signals.recv() => {
                if let Some(outcome) = session.on_signal(signal) {
                    session.ending = Some(outcome);
                    return Ringing::CallerGone;
                }
            }
            update = recv_control(&mut session.control) => {
                if let Some(outcome) = caller_update(session, update) {
                    session.ending = Some(outcome);
                    return Ringing::CallerGone;
                }
            }
            _ = ticker.tick(), if session.answered => {
                match early.and_then(|i| children[i].early.as_deref_mut()) {
                    Some(stream) => {
                        stream.tick();
                        session.stream.feed(stream.received_frame());
                        session.stream.tick();
                    }
                    None => {
                        if session.stream.tick() {
                            session.stream.play(tone.clone());
                        }
                    }
                }
            }
            received = session.stream.receive(), if session.answered => {
                if let Err(error) = received {
                    tracing::debug!(%error, "RTP receive error");
                }
            }
            received = receive_early(children, early) => {
                if let Err(error) = received {
                    tracing::debug!(%error, "RTP receive error (early media)");
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                for child in children.iter_mut().filter(|c| c.ended.is_none()) {
                    session.sip.hangup(child.key);
                    child.ended = Some(Outcome::new(CallStatus::NoAnswer).sip(487));
                }
                return Ringing::Exhausted;
            }
            _ = shutdown.changed() => {
                let outcome = session.hang_up(Outcome::new(CallStatus::Completed).reason("callml is shutting down"), CallStatus::Failed, 503);
                session.ending = Some(outcome);
                return Ringing::CallerGone;
            }
        }
    }
}

/// Sets up the media a provisional response with SDP (183 Session Progress) describes;
/// false when it has none or it cannot be used.
fn start_early_media(session: &Session, child: &mut Child, response: &Response) -> bool {
    if response.body.is_empty() || child.early.is_some() {
        return false;
    }
    let (Some(leg), Some(party)) = (child.leg.take(), child.party.as_ref()) else {
        return false;
    };
    match leg.accept(&response.body, &party.codecs, &session.services) {
        Ok(stream) => {
            child.early = Some(Box::new(stream));
            true
        }
        Err(failure) => {
            tracing::debug!(%failure, "early media not usable");
            false
        }
    }
}

/// The next datagram of the early media being relayed; never resolves without one.
async fn receive_early(children: &mut [Child], early: Option<usize>) -> std::io::Result<()> {
    match early
        .and_then(|i| children.get_mut(i))
        .and_then(|c| c.early.as_deref_mut())
    {
        Some(stream) => stream.receive().await,
        None => std::future::pending().await,
    }
}

/// A REST update that arrives while dialling: hanging up ends the caller's call.
fn caller_update(session: &mut Session, update: Option<CallUpdate>) -> Option<Outcome> {
    match update {
        Some(CallUpdate::Complete) => Some(session.hang_up(
            Outcome::new(CallStatus::Completed),
            CallStatus::Canceled,
            487,
        )),
        Some(CallUpdate::Cancel) if !session.answered => Some(session.hang_up(
            Outcome::new(CallStatus::Canceled),
            CallStatus::Canceled,
            487,
        )),
        Some(CallUpdate::Redirect(_)) => {
            tracing::warn!("a redirect during <Dial> is not applied; hang up or wait for the dial");
            None
        }
        Some(CallUpdate::Cancel) => None,
        None => {
            session.control = None;
            None
        }
    }
}

async fn recv_control(
    control: &mut Option<mpsc::UnboundedReceiver<CallUpdate>>,
) -> Option<CallUpdate> {
    match control {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Stops a child that lost (or whose caller left): CANCEL or BYE, and its final record.
async fn abandon(session: &Session, mut child: Child, status: CallStatus) {
    if child.ended.is_none() {
        session.sip.hangup(child.key);
        child.ended = Some(Outcome::new(status).sip(487));
    }
    finish(session, child).await;
}

async fn finish(session: &Session, mut child: Child) {
    drop(child.guard.take());
    let outcome = child
        .ended
        .take()
        .unwrap_or_else(|| Outcome::new(CallStatus::Completed));
    child.progress.end(outcome, &session.services).await;
}

/// The winner answered: whisper, answer the caller if needed, bridge, report.
async fn connect(
    session: &mut Session,
    dial: &Dial,
    progress: &mut Progress,
    mut child: Child,
    response: Box<Response>,
    signals: &mut SignalReceiver,
    recording: &mut DialRecording,
) -> Report {
    child.progress.record.sip_call_id = response.headers.get("Call-ID").map(str::to_owned);
    child.progress.record.sip_response_code = Some(response.status);
    child.progress.params.sip_call_id = child.progress.record.sip_call_id.clone();
    child.progress.params.sip_headers = response
        .headers
        .iter()
        .filter(|(name, _)| name.len() > 2 && name[..2].eq_ignore_ascii_case("X-"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    child.progress.answered().await;
    let mut report = Report {
        status: "completed",
        call_sid: Some(child.progress.record.sid.clone()),
        duration: 0,
        bridged: false,
        response: Some(response.clone()),
    };
    let accepted = match (child.early.take(), child.leg.take()) {
        (Some(early), _) => Ok(*early),
        (None, Some(leg)) => {
            let codecs = child
                .party
                .as_ref()
                .map_or(&DEFAULT_CODECS[..], |p| &p.codecs[..]);
            leg.accept(&response.body, codecs, &session.services)
        }
        (None, None) => Err(MediaFailure {
            status: 488,
            reason: "no media prepared".into(),
        }),
    };
    let mut child_stream = match accepted {
        Ok(stream) => stream,
        Err(failure) => {
            session.sip.hangup(child.key);
            child.ended = Some(
                Outcome::new(CallStatus::Failed)
                    .error(MEDIA_ERROR, format!("unusable SDP answer: {failure}")),
            );
            report.status = "failed";
            finish(session, child).await;
            return report;
        }
    };

    if let Some(digits) = child.party.as_ref().and_then(|p| p.send_digits.clone()) {
        send_digits(session, &mut child_stream, &digits).await;
    }
    if let Some(url) = child.party.as_ref().and_then(|p| p.url.url.clone()) {
        match whisper(session, &mut child, child_stream, signals, url).await {
            Whisper::Connect(stream) => child_stream = *stream,
            Whisper::Refused => {
                report.status = "no-answer";
                finish(session, child).await;
                return report;
            }
            Whisper::CallerGone => {
                report.status = "canceled";
                finish(session, child).await;
                return report;
            }
        }
    }
    if !session.answered {
        session.answer(progress).await;
    }
    recording.start(session, progress, RecordFrom::Answer).await;
    report.bridged = true;
    let ended = bridge(session, dial, &mut child, &mut child_stream, signals).await;
    child.ended = Some(ended);
    let duration = child
        .progress
        .record
        .answer_time
        .map(|at| whole_seconds(at, Utc::now()))
        .unwrap_or(0);
    report.duration = duration;
    finish(session, child).await;
    report
}

/// How often a relayed bridge checks that both far ends still send RTP.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The two directions of a same-codec bridge.
struct Relays {
    to_callee: RtpRelay,
    to_caller: RtpRelay,
}

impl Relays {
    /// Relays between two legs with the same codec, mapping their payload types (and their
    /// telephone-event types when both have one); `None` when the codecs differ.
    fn between(caller: &RtpStream, callee: &RtpStream) -> Option<Relays> {
        let (a, b) = (caller.session().config(), callee.session().config());
        if a.codec != b.codec {
            return None;
        }
        let units = a.codec.timestamp_increment(PTIME.as_millis() as u32);
        let mut forward = vec![(a.payload_type, b.payload_type)];
        let mut backward = vec![(b.payload_type, a.payload_type)];
        if let (Some(ta), Some(tb)) = (a.telephone_event, b.telephone_event) {
            forward.push((ta, tb));
            backward.push((tb, ta));
        }
        Some(Relays {
            to_callee: RtpRelay::new(
                callee.session().ssrc(),
                units,
                &forward,
                callee.session().next_rtp(),
            ),
            to_caller: RtpRelay::new(
                caller.session().ssrc(),
                units,
                &backward,
                caller.session().next_rtp(),
            ),
        })
    }
}

/// Why a bridge's legs were not lent to the relay engine.
#[derive(Debug, thiserror::Error)]
enum LendError {
    /// The engine has stopped; both streams have their sockets back.
    #[error("the relay engine has stopped")]
    Refused,
    /// The runtime would not give a socket up or take it back: that leg has no RTP socket.
    #[error("RTP socket lost: {0}")]
    SocketLost(std::io::Error),
}

/// Lends both legs' RTP sockets and receiving state to the relay engine.
fn lend(
    engine: &RelayEngine,
    caller: &mut RtpStream,
    callee: &mut RtpStream,
    relays: Relays,
    star: Option<u8>,
) -> Result<BridgeHandle, LendError> {
    let caller_socket = caller.lend_socket().map_err(LendError::SocketLost)?;
    let callee_socket = match callee.lend_socket() {
        Ok(socket) => socket,
        Err(error) => {
            caller
                .return_socket(caller_socket)
                .map_err(LendError::SocketLost)?;
            return Err(LendError::SocketLost(error));
        }
    };
    let leg = |stream: &RtpStream, socket, sending| RelayLeg {
        socket,
        receiving: stream.session().lend(),
        sending,
        held: stream.session().is_held(),
    };
    let legs = (
        leg(caller, caller_socket, relays.to_caller),
        leg(callee, callee_socket, relays.to_callee),
    );
    engine.relay(legs.0, legs.1, star).map_err(|refused| {
        let [caller_leg, callee_leg] = *refused.0;
        match caller
            .return_socket(caller_leg.socket)
            .and(callee.return_socket(callee_leg.socket))
        {
            Ok(()) => LendError::Refused,
            Err(error) => LendError::SocketLost(error),
        }
    })
}

/// Gives a leg back to its stream after a relayed bridge: what was received (latch,
/// statistics, counters), the sequence number and timestamp to go on from, and the socket
/// (an error when the runtime would not take it back).
fn take_back(stream: &mut RtpStream, leg: RelayLeg) -> std::io::Result<()> {
    let session = stream.session_mut();
    session.take_back(leg.receiving);
    session.resume_rtp_at(leg.sending.next());
    stream.return_socket(leg.socket)
}

/// A leg's RTP socket is gone: both legs are hung up and the call fails with a media error.
fn media_lost(session: &mut Session, child: &Child, error: &std::io::Error) -> Outcome {
    tracing::error!(%error, call = %child.progress.record.sid, "RTP socket lost in a bridge");
    end_both(
        session,
        child,
        Outcome::new(CallStatus::Failed).error(MEDIA_ERROR, format!("RTP socket lost: {error}")),
        500,
        Outcome::new(CallStatus::Failed).error(MEDIA_ERROR, "RTP socket lost"),
    )
}

/// Sends a key pressed on one leg to the other as an RFC 4733 event (when the other leg
/// negotiated telephone-event and is not sending digits already).
fn relay_digit(stream: &mut RtpStream, digit: char) {
    if let Err(error) = stream.send_digits(&digit.to_string()) {
        tracing::debug!(%error, digit = %digit, "key not relayed");
    }
}

/// Sends `digits` to the callee (`<Number sendDigits>`) and waits until they are out, the
/// caller hearing silence meanwhile. A party that did not negotiate telephone-event gets none.
async fn send_digits(session: &mut Session, child_stream: &mut RtpStream, digits: &str) {
    if let Err(error) = child_stream.send_digits(digits) {
        tracing::warn!(%error, "sendDigits not sent");
        return;
    }
    let mut ticker = tokio::time::interval(PTIME);
    let give_up =
        tokio::time::Instant::now() + DIGITS_TIMEOUT_BASE + DIGIT_SLOT * digits.len() as u32;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                child_stream.tick();
                session.stream.tick();
                while let Some(event) = child_stream.poll_event() {
                    if event == MediaEvent::DigitsSent {
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(give_up) => return,
        }
    }
}

/// How long sending digits may take: a base plus a slot per key (`W` waits a second).
const DIGITS_TIMEOUT_BASE: std::time::Duration = std::time::Duration::from_secs(2);
const DIGIT_SLOT: std::time::Duration = std::time::Duration::from_secs(1);

enum Whisper {
    Connect(Box<RtpStream>),
    Refused,
    CallerGone,
}

/// Runs the `<Sip url>` document on the answered callee, the caller waiting meanwhile.
async fn whisper(
    session: &mut Session,
    child: &mut Child,
    stream: RtpStream,
    signals: &mut SignalReceiver,
    url: String,
) -> Whisper {
    let Some(guard) = child.guard.take() else {
        return Whisper::Refused;
    };
    let (_unused, closed) = mpsc::unbounded_channel();
    let placeholder: SignalReceiver = closed;
    let mut callee = Session {
        key: child.key,
        sip: session.sip.clone(),
        signals: std::mem::replace(signals, placeholder),
        services: Arc::clone(&session.services),
        stream,
        answer_sdp: None,
        awaiting_answer: None,
        answered: true,
        fallback: None,
        control: None,
        time_limit: None,
        guard,
        ending: None,
    };
    let source = Source {
        url,
        method: child
            .party
            .as_ref()
            .map(|p| p.url.method)
            .unwrap_or_default(),
    };
    let first = callee.load(&source, Vec::new(), &child.progress);
    let mut ticker = tokio::time::interval(PTIME);
    let result = {
        let run = callee.run(first, &mut child.progress, true);
        tokio::pin!(run);
        loop {
            tokio::select! {
                end = &mut run => break Some(end),
                signal = session.signals.recv() => {
                    if let Some(outcome) = session.on_signal(signal) {
                        session.ending = Some(outcome);
                        break None;
                    }
                }
                _ = ticker.tick(), if session.answered => {
                    session.stream.tick();
                }
            }
        }
    };
    let Session {
        signals: taken,
        stream,
        guard,
        ..
    } = callee;
    *signals = taken;
    child.guard = Some(guard);
    match result {
        Some(SessionEnd::Connect) => Whisper::Connect(Box::new(stream)),
        Some(SessionEnd::Ended(outcome)) => {
            child.ended = Some(outcome);
            Whisper::Refused
        }
        None => {
            session.sip.hangup(child.key);
            child.ended = Some(Outcome::new(CallStatus::Completed).reason("the caller hung up"));
            Whisper::CallerGone
        }
    }
}

/// Connects the caller and the callee until one of them leaves or the time limit passes;
/// returns the callee's outcome. Legs with the same codec are relayed packet by packet
/// (nothing decoded); others are transcoded frame by frame.
async fn bridge(
    session: &mut Session,
    dial: &Dial,
    child: &mut Child,
    child_stream: &mut RtpStream,
    signals: &mut SignalReceiver,
) -> Outcome {
    let bridge = Bridge {
        limit: Some(tokio::time::Instant::now() + dial.time_limit),
        hangup_on_star: dial.hangup_on_star,
    };
    // A recorded bridge mixes frames; a caller whose answer to our offer has not come yet (a
    // delayed offer) may still change codec: both go through the frame path.
    let relays = match session.stream.is_recording() || session.awaiting_answer.is_some() {
        true => None,
        false => Relays::between(&session.stream, child_stream),
    };
    let ended = match relays {
        Some(relays) => {
            bridge
                .relay(session, child, child_stream, signals, relays)
                .await
        }
        None => {
            bridge
                .transcode(session, child, child_stream, signals)
                .await
        }
    };
    tracing::info!(
        call = %child.progress.record.sid,
        caller = ?session.stream.stats(),
        callee = ?child_stream.stats(),
        "bridge ended"
    );
    ended
}

/// What both bridge loops share.
struct Bridge {
    limit: Option<tokio::time::Instant>,
    hangup_on_star: bool,
}

impl Bridge {
    /// Same codec on both legs: the relay engine forwards each packet as it arrives
    /// ([`crate::media::relay_engine`]); this task keeps the signalling, the timers and RTCP,
    /// and takes both legs back when the bridge ends, their streams going on where the relay
    /// left them. Should the engine refuse the legs, the bridge is transcoded instead.
    async fn relay(
        &self,
        session: &mut Session,
        child: &Child,
        child_stream: &mut RtpStream,
        signals: &mut SignalReceiver,
        relays: Relays,
    ) -> Outcome {
        let star = self
            .hangup_on_star
            .then(|| session.stream.session().config().telephone_event)
            .flatten();
        let mut handle = match lend(
            &session.services.relay,
            &mut session.stream,
            child_stream,
            relays,
            star,
        ) {
            Ok(handle) => handle,
            Err(LendError::Refused) => {
                tracing::warn!("the relay engine has stopped: bridge transcoded instead");
                return self.transcode(session, child, child_stream, signals).await;
            }
            Err(LendError::SocketLost(error)) => return media_lost(session, child, &error),
        };
        let mut shutdown = session.services.shutdown.clone();
        let shutting_down_now = shutdown.changed();
        tokio::pin!(shutting_down_now);
        let limit = sleep_until(self.limit);
        tokio::pin!(limit);
        let mut idle_check = tokio::time::interval(IDLE_CHECK);
        let media_timeout = session.services.config.media_timeout;
        // What the engine was told: each leg's hold as lent, then every change.
        let mut held = [
            session.stream.session().is_held(),
            child_stream.session().is_held(),
        ];
        let ended = loop {
            tokio::select! {
                event = handle.event() => match event {
                    Some(RelayEvent::StarPressed) => {
                        session.sip.hangup(child.key);
                        break Some(Outcome::new(CallStatus::Completed).reason(STAR_PRESSED));
                    }
                    Some(RelayEvent::CannotRelay) | None => break None,
                },
                // RTCP: the RTP sockets are with the engine.
                _ = session.stream.receive() => {}
                _ = child_stream.receive() => {}
                _ = idle_check.tick() => {
                    let now = std::time::Instant::now();
                    let caller_idle = session.stream.session().idle_for(handle.last_rtp(Side::Caller), now);
                    if caller_idle >= media_timeout {
                        break Some(caller_silent(session, child, media_timeout));
                    }
                    if child_stream.session().idle_for(handle.last_rtp(Side::Callee), now) >= media_timeout {
                        break Some(callee_silent(session, child, media_timeout));
                    }
                }
                signal = signals.recv() => {
                    if let Some(outcome) = callee_signal(session, child, child_stream, signal) {
                        break Some(outcome);
                    }
                }
                signal = session.signals.recv() => {
                    if let Some(outcome) = caller_signal(session, child, child_stream, signal) {
                        break Some(outcome);
                    }
                }
                update = recv_control(&mut session.control) => {
                    if let Some(outcome) = rest_update(session, child, update) {
                        break Some(outcome);
                    }
                }
                _ = &mut limit => break Some(time_limit(session, child)),
                _ = &mut shutting_down_now => break Some(shutting_down(session, child)),
            }
            for (side, stream) in [
                (Side::Caller, &session.stream),
                (Side::Callee, &*child_stream),
            ] {
                let now_held = stream.session().is_held();
                if held[side as usize] != now_held {
                    held[side as usize] = now_held;
                    handle.set_held(side, now_held);
                }
            }
        };
        let returned = match handle.finish().await {
            Ok([caller, callee]) => {
                take_back(&mut session.stream, caller).and(take_back(child_stream, callee))
            }
            Err(error) => Err(std::io::Error::other(error)),
        };
        match (ended, returned) {
            (_, Err(error)) => media_lost(session, child, &error),
            (Some(outcome), Ok(())) => outcome,
            (None, Ok(())) => {
                tracing::warn!("the relay engine could not take the legs: bridge transcoded");
                self.transcode(session, child, child_stream, signals).await
            }
        }
    }

    /// Different codecs: every 20 ms each leg plays out one received frame (through its
    /// jitter buffer) and sends one; the caller's goes to the callee at once, the callee's to
    /// the caller at the next tick. Keys are re-sent as RFC 4733 events.
    async fn transcode(
        &self,
        session: &mut Session,
        child: &Child,
        child_stream: &mut RtpStream,
        signals: &mut SignalReceiver,
    ) -> Outcome {
        let mut shutdown = session.services.shutdown.clone();
        let mut ticker = tokio::time::interval(PTIME);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    session.stream.tick();
                    child_stream.feed(session.stream.received_frame());
                    child_stream.tick();
                    session.stream.feed(child_stream.received_frame());
                    while let Some(event) = session.stream.poll_event() {
                        match event {
                            MediaEvent::Digit(key) if key.digit == '*' && self.hangup_on_star => {
                                session.sip.hangup(child.key);
                                return Outcome::new(CallStatus::Completed).reason(STAR_PRESSED);
                            }
                            MediaEvent::Digit(key) => relay_digit(child_stream, key.digit),
                            MediaEvent::Inactive { silent_for } => {
                                return caller_silent(session, child, silent_for);
                            }
                            _ => {}
                        }
                    }
                    while let Some(event) = child_stream.poll_event() {
                        match event {
                            MediaEvent::Digit(key) => relay_digit(&mut session.stream, key.digit),
                            MediaEvent::Inactive { silent_for } => {
                                return callee_silent(session, child, silent_for);
                            }
                            _ => {}
                        }
                    }
                }
                received = session.stream.receive() => {
                    if let Err(error) = received {
                        tracing::debug!(%error, "RTP receive error (caller)");
                    }
                }
                received = child_stream.receive() => {
                    if let Err(error) = received {
                        tracing::debug!(%error, "RTP receive error (callee)");
                    }
                }
                signal = signals.recv() => {
                    if let Some(outcome) = callee_signal(session, child, child_stream, signal) {
                        return outcome;
                    }
                }
                signal = session.signals.recv() => {
                    if let Some(outcome) = caller_signal(session, child, child_stream, signal) {
                        return outcome;
                    }
                }
                update = recv_control(&mut session.control) => {
                    if let Some(outcome) = rest_update(session, child, update) {
                        return outcome;
                    }
                }
                _ = sleep_until(self.limit) => return time_limit(session, child),
                _ = shutdown.changed() => return shutting_down(session, child),
            }
        }
    }
}

/// Why a bridge ended by `hangupOnStar`.
const STAR_PRESSED: &str = "the caller pressed * (hangupOnStar)";

/// The callee's signalling during the bridge: its BYE ends the bridge; its hold and resume
/// are answered and passed on to the caller.
fn callee_signal(
    session: &mut Session,
    child: &Child,
    child_stream: &mut RtpStream,
    signal: Option<(CallKey, CallSignal)>,
) -> Option<Outcome> {
    match signal {
        Some((key, CallSignal::Bye)) if key == child.key => {
            Some(Outcome::new(CallStatus::Completed))
        }
        Some((key, CallSignal::Reoffer { held, .. })) if key == child.key => {
            tracing::info!(call = %child.progress.record.sid, held, "the callee renegotiated; passed on to the caller");
            let now = std::time::Instant::now();
            child_stream.session_mut().set_held(held, now);
            session.sip.accept_reoffer(child.key);
            if session.stream.session().is_holding() != held {
                session.stream.session_mut().set_holding(held, now);
                session.sip.hold(session.key, held);
            }
            None
        }
        Some((key, other)) if key == child.key => {
            tracing::debug!(signal = ?other, "callee signal ignored while bridged");
            None
        }
        Some(_) => None,
        None => Some(Outcome::new(CallStatus::Failed).reason("the SIP layer stopped")),
    }
}

/// The caller's signalling during the bridge: when the caller leaves, so does the callee; its
/// hold and resume are passed on to the callee.
fn caller_signal(
    session: &mut Session,
    child: &Child,
    child_stream: &mut RtpStream,
    signal: Option<(CallKey, CallSignal)>,
) -> Option<Outcome> {
    if let Some((key, CallSignal::Reoffer { held, .. })) = &signal {
        // Passed on only when the hold state changes (not for refreshes or new addresses).
        if *key == session.key && child_stream.session().is_holding() != *held {
            child_stream
                .session_mut()
                .set_holding(*held, std::time::Instant::now());
            session.sip.hold(child.key, *held);
        }
    }
    let outcome = session.on_signal(signal)?;
    session.sip.hangup(child.key);
    session.ending = Some(outcome);
    Some(Outcome::new(CallStatus::Completed))
}

/// A REST update during the bridge: hanging up the caller ends both legs.
fn rest_update(
    session: &mut Session,
    child: &Child,
    update: Option<CallUpdate>,
) -> Option<Outcome> {
    let outcome = caller_update(session, update)?;
    session.sip.hangup(child.key);
    session.ending = Some(outcome);
    Some(Outcome::new(CallStatus::Completed))
}

fn time_limit(session: &Session, child: &Child) -> Outcome {
    session.sip.hangup(child.key);
    Outcome::new(CallStatus::Completed).reason("the dial reached its time limit")
}

fn shutting_down(session: &mut Session, child: &Child) -> Outcome {
    let outcome = Outcome::new(CallStatus::Completed).reason("callml is shutting down");
    end_both(session, child, outcome.clone(), 503, outcome)
}

/// The caller sent no RTP for `silent_for`: the whole call ends.
fn caller_silent(session: &mut Session, child: &Child, silent_for: std::time::Duration) -> Outcome {
    let reason = format!("no RTP from the caller for {} s", silent_for.as_secs());
    end_both(
        session,
        child,
        Outcome::new(CallStatus::Completed).reason(reason),
        500,
        Outcome::new(CallStatus::Completed),
    )
}

/// Ends the whole call from inside a bridge: the callee is hung up, the caller ends with
/// `caller` (failing with `code` if it was never answered), and the callee's `callee` outcome
/// is returned for the bridge.
fn end_both(
    session: &mut Session,
    child: &Child,
    caller: Outcome,
    code: u16,
    callee: Outcome,
) -> Outcome {
    session.sip.hangup(child.key);
    let outcome = session.hang_up(caller, CallStatus::Failed, code);
    session.ending = Some(outcome);
    callee
}

/// The callee sent no RTP for `silent_for`: the callee is hung up, the document goes on.
fn callee_silent(session: &Session, child: &Child, silent_for: std::time::Duration) -> Outcome {
    session.sip.hangup(child.key);
    Outcome::new(CallStatus::Completed).reason(format!(
        "no RTP from the callee for {} s",
        silent_for.as_secs()
    ))
}
