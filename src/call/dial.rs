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
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;

use super::control::CallUpdate;
use super::document::Source;
use super::inbound::MEDIA_ERROR;
use super::media::{LocalLeg, MediaFailure};
use super::params::{API_VERSION, CallParams, party};
use super::progress::{CallbackTarget, Outcome, Progress, ProgressEvent, whole_seconds};
use super::session::{Session, SessionEnd, sleep_until};
use crate::ids::Sid;
use crate::interp::resolve_url;
use crate::markup::ast::{self, CallEvent, Dial, DialTarget, SipScheme, SipTransport};
use crate::media::codec::Codec;
use crate::media::library::Audio;
use crate::media::ringback::ringback;
use crate::media::stream::{PTIME, RtpStream};
use crate::sip::endpoint::{CallKey, CallSignal, Invite};
use crate::sip::msg::{Host, NameAddr, Response, Scheme, SipUri, Transport, Uri};
use crate::sip::transaction::Peer;
use crate::store::{CallRecord, CallStatus, Direction};
use crate::transport::{CallGuard, SignalReceiver, SignalSender};

/// Standard headers Twilio lets a `<Sip>` URI set besides `X-` ones.
const ALLOWED_STANDARD_HEADERS: [&str; 1] = ["User-to-User"];

/// One dialled party.
struct Child {
    key: CallKey,
    progress: Progress,
    noun: ast::Sip,
    leg: Option<LocalLeg>,
    codecs: Vec<Codec>,
    guard: Option<CallGuard>,
    ringing: bool,
    /// How the attempt ended, once it did.
    ended: Option<Outcome>,
    /// The final response (for `DialSipResponseCode` and `DialSipHeader_*`).
    response: Option<Box<Response>>,
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

/// Carries out `dial` on the session's call; returns the `Dial*` parameters.
pub(super) async fn run(
    session: &mut Session,
    dial: &Dial,
    progress: &mut Progress,
) -> Vec<(String, String)> {
    let nouns = match &dial.target {
        DialTarget::Sip(nouns) => nouns.clone(),
        other => {
            let what = match other {
                DialTarget::Parties(_) => {
                    "<Number>/<Client> (no outbound trunk or registrar is configured)"
                }
                DialTarget::Conference(_) => "<Conference>",
                _ => "<Queue>",
            };
            tracing::warn!(call = %progress.record.sid, "Dial to {what} is not supported yet");
            let report = Report {
                status: "failed",
                call_sid: None,
                duration: 0,
                bridged: false,
                response: None,
            };
            return report.params();
        }
    };
    let (signal_sender, mut signals) = mpsc::unbounded_channel();
    let groups: Vec<Vec<ast::Sip>> = if dial.sequential {
        nouns.into_iter().map(|noun| vec![noun]).collect()
    } else {
        vec![nouns]
    };
    let mut tried: Vec<Tried> = Vec::new();
    for group in groups {
        let mut children = Vec::with_capacity(group.len());
        for noun in group {
            children.push(place(session, dial, progress, noun, &signal_sender).await);
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
                return connect(session, dial, progress, child, response, &mut signals)
                    .await
                    .params();
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
                }
                .params();
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
    failure_report(&tried).params()
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
    noun: ast::Sip,
    signals: &SignalSender,
) -> Child {
    let services = &session.services;
    let sid = Sid::new("CA");
    let target = sip_uri(&noun.uri);
    let caller = dial
        .caller_id
        .clone()
        .unwrap_or_else(|| parent.record.from.clone());
    let mut record = CallRecord::new(
        sid.as_str(),
        &parent.record.account_sid,
        &caller,
        party(&Uri::Sip(target.clone())),
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
    let base = parent.record.url.as_deref().unwrap_or_default();
    let callbacks = noun.status_callback.url.as_ref().map(|url| CallbackTarget {
        url: resolve_url(base, url),
        method: noun.status_callback.method,
        events: noun
            .status_callback
            .events
            .iter()
            .map(|event| match event {
                CallEvent::Initiated => ProgressEvent::Initiated,
                CallEvent::Ringing => ProgressEvent::Ringing,
                CallEvent::Answered => ProgressEvent::Answered,
                CallEvent::Completed => ProgressEvent::Completed,
            })
            .collect::<BTreeSet<_>>(),
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
    let codecs = offer_codecs(&noun, &progress.record.sid);
    let mut child = Child {
        key: CallKey(0),
        progress,
        noun,
        leg: None,
        codecs,
        guard: None,
        ringing: false,
        ended: None,
        response: None,
    };
    let destination = match destination(&child.noun.uri, &target).await {
        Ok(peer) => peer,
        Err(reason) => {
            child.ended = Some(Outcome::new(CallStatus::Failed).error(13254, reason));
            return child;
        }
    };
    let leg = match LocalLeg::bind(services) {
        Ok(leg) => leg,
        Err(failure) => {
            child.ended = Some(Outcome::new(CallStatus::Failed).reason(failure.reason));
            return child;
        }
    };
    let media_ip = leg.media.address;
    let mut headers = vec![
        (
            "X-Twilio-CallSid".to_owned(),
            child.progress.record.sid.clone(),
        ),
        (
            "X-Twilio-AccountSid".to_owned(),
            child.progress.record.account_sid.clone(),
        ),
        ("X-Twilio-ApiVersion".to_owned(), API_VERSION.to_owned()),
    ];
    for header in &child.noun.uri.headers {
        let allowed = header.name.len() > 2 && header.name[..2].eq_ignore_ascii_case("X-")
            || ALLOWED_STANDARD_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&header.name));
        if allowed {
            headers.push((header.name.clone(), header.value.clone()));
        } else {
            tracing::warn!(header = %header.name, "<Sip> URI header not allowed; left out");
        }
    }
    let from = Uri::Sip(SipUri::new(
        Scheme::Sip,
        Some(&caller),
        Host::Ip(media_ip),
        None,
    ));
    let invite = Invite {
        uri: Uri::Sip(target.clone()),
        from: NameAddr::new(from),
        to: NameAddr::new(Uri::Sip(target.without_params())),
        destination,
        sdp: Some(leg.offer(&child.codecs)),
        headers,
    };
    child.key = session.sip.invite(invite, signals.clone());
    child.guard = Some(session.sip.guard(child.key));
    child.leg = Some(leg);
    child
}

/// The codecs to offer, in the `<Sip codecs>` order; those this build cannot use (G.729) are
/// left out with a warning (and the default G.711 pair is offered if none is left).
fn offer_codecs(noun: &ast::Sip, sid: &str) -> Vec<Codec> {
    let mut codecs = Vec::new();
    for codec in &noun.codecs {
        let supported = match codec {
            ast::Codec::Pcmu => Some(Codec::Pcmu),
            ast::Codec::Pcma => Some(Codec::Pcma),
            ast::Codec::G722 => Some(Codec::G722),
            ast::Codec::Opus => Some(Codec::Opus),
            ast::Codec::G729 => {
                tracing::warn!(call = %sid, codec = %codec, "codec not available; left out of the offer");
                None
            }
        };
        if let Some(codec) = supported {
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
    }
    if codecs.is_empty() {
        codecs.extend_from_slice(&[Codec::Pcmu, Codec::Pcma]);
    }
    codecs
}

/// The markup's `<Sip>` URI as the SIP layer's.
fn sip_uri(uri: &ast::SipUri) -> SipUri {
    let host = Host::parse(&uri.host).unwrap_or_else(|_| Host::Domain(uri.host.clone()));
    let mut sip = SipUri::new(
        match uri.scheme {
            SipScheme::Sip => Scheme::Sip,
            SipScheme::Sips => Scheme::Sips,
        },
        uri.user.as_deref(),
        host,
        uri.port,
    );
    sip.params
        .push(("transport".to_owned(), Some(uri.transport.to_string())));
    sip.params
        .extend(uri.params.iter().map(|p| (p.name.clone(), p.value.clone())));
    sip
}

/// Where a `<Sip>` URI is reached: the transport it names, an IP literal or A/AAAA name.
async fn destination(uri: &ast::SipUri, target: &SipUri) -> Result<Peer, String> {
    let transport = match (uri.scheme, uri.transport) {
        (SipScheme::Sips, _) | (_, SipTransport::Tls) => {
            return Err(
                "SIP over TLS is not available in this version yet; add ;transport=udp or ;transport=tcp"
                    .to_owned(),
            );
        }
        (_, SipTransport::Tcp) => Transport::Tcp,
        (_, SipTransport::Udp) => Transport::Udp,
    };
    let port = target.port.unwrap_or(transport.default_port());
    let addr = match &target.host {
        Host::Ip(ip) => SocketAddr::new(*ip, port),
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .next()
            .ok_or_else(|| format!("{name} has no address"))?,
    };
    Ok(Peer { transport, addr })
}

fn failure_status(code: u16) -> CallStatus {
    match code {
        486 | 600 | 603 => CallStatus::Busy,
        408 | 480 | 487 => CallStatus::NoAnswer,
        _ => CallStatus::Failed,
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
        session.stream.play(tone.clone());
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
                    }
                    CallSignal::Answered(response) => return Ringing::Answered(index, response),
                    CallSignal::Rejected(response) => {
                        child.ended = Some(Outcome::new(failure_status(response.status)).sip(response.status));
                        child.response = Some(response);
                    }
                    CallSignal::Unreachable => {
                        child.ended = Some(Outcome::new(CallStatus::NoAnswer).sip(408).reason("no response"));
                    }
                    CallSignal::Canceled => {
                        child.ended = Some(Outcome::new(CallStatus::Canceled).sip(487));
                    }
                    other => tracing::debug!(signal = ?other, "child signal ignored while ringing"),
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
                if session.stream.tick() {
                    session.stream.play(tone.clone());
                }
            }
            received = session.stream.receive(), if session.answered => {
                if let Err(error) = received {
                    tracing::debug!(%error, "RTP receive error");
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
    let accepted = match child.leg.take() {
        Some(leg) => leg.accept(&response.body, &child.codecs, &session.services),
        None => Err(MediaFailure {
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

    if let Some(url) = child.noun.url.url.clone() {
        let url = resolve_url(progress.record.url.as_deref().unwrap_or_default(), &url);
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
        answered: true,
        fallback: None,
        control: None,
        time_limit: None,
        guard,
        ending: None,
    };
    let source = Source {
        url,
        method: child.noun.url.method,
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

/// Relays audio between the caller and the callee until one of them leaves or the time
/// limit passes; returns the callee's outcome. Every 20 ms each leg plays out one received
/// frame (through its jitter buffer) and sends one: the caller's goes to the callee at once,
/// the callee's to the caller at the next tick.
async fn bridge(
    session: &mut Session,
    dial: &Dial,
    child: &mut Child,
    child_stream: &mut RtpStream,
    signals: &mut SignalReceiver,
) -> Outcome {
    let limit = Some(tokio::time::Instant::now() + dial.time_limit);
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
            Some((key, signal)) = signals.recv() => {
                if key == child.key {
                    match signal {
                        CallSignal::Bye => return Outcome::new(CallStatus::Completed),
                        other => tracing::debug!(signal = ?other, "callee signal ignored while bridged"),
                    }
                }
            }
            signal = session.signals.recv() => {
                if let Some(outcome) = session.on_signal(signal) {
                    session.sip.hangup(child.key);
                    session.ending = Some(outcome);
                    return Outcome::new(CallStatus::Completed);
                }
            }
            update = recv_control(&mut session.control) => {
                if let Some(outcome) = caller_update(session, update) {
                    session.sip.hangup(child.key);
                    session.ending = Some(outcome);
                    return Outcome::new(CallStatus::Completed);
                }
            }
            _ = sleep_until(limit) => {
                session.sip.hangup(child.key);
                return Outcome::new(CallStatus::Completed).reason("the dial reached its time limit");
            }
            _ = shutdown.changed() => {
                session.sip.hangup(child.key);
                let outcome = session.hang_up(Outcome::new(CallStatus::Completed).reason("callml is shutting down"), CallStatus::Failed, 503);
                session.ending = Some(outcome);
                return Outcome::new(CallStatus::Completed).reason("callml is shutting down");
            }
        }
    }
}
