//! `<Dial>` in the call core: ring the dialled parties as child legs of the call
//! (`Direction=outbound-dial`, `ParentCallSid`), connect the first to answer with the caller,
//! and report the result as Twilio's `Dial*` parameters to the document.
//!
//! ```text
//! Ringing: every party of the group INVITEd (all at once, or one group per party with
//!          sequential="true"); the caller hears ringback, or a callee's early media (183)
//!   ─▶ first 2xx wins; the others CANCELed ─▶ SendingDigits (<Number sendDigits>)
//!   ─▶ Whisper (<Sip url>/<Number url>: a document on the callee; its <Hangup> refuses)
//!   ─▶ Bridged (answerOnBridge answers the caller now): until either side leaves, timeLimit,
//!      or hangupOnStar ─▶ Closing (a <Dial record> is closed) ─▶ DialDone to the document
//! the group's timeout ─▶ its parties CANCELed ─▶ the next group, or busy / no-answer / failed
//! the caller leaves ─▶ children CANCELed or sent BYE; the action is still requested
//! a REST redirect ─▶ children hung up, the dial dropped without its action
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use super::legs::{Leg, progress_events};
use super::runner::Role;
use super::timers::Timer;
use super::{
    Action, CallCore, LegId, MediaCommand, MediaRoute, RouteQuery, digits_timeout, twilio_headers,
};
use crate::call::document::Source;
use crate::call::ending::{Ending, Unroutable};
use crate::call::failover::{self, fails_over_on};
use crate::call::media::{MediaOffer, answered_config};
use crate::call::params::{ANSWERED_BY_UNKNOWN, CallParams, party_name};
use crate::call::party::{Party, PartyError};
use crate::call::progress::{CallbackTarget, ProgressEvent, whole_seconds};
use crate::call::recording::RecordingSpec;
use crate::ids::Sid;
use crate::interp::{Event, RecordedAudio};
use crate::markup::ast::{self, Dial, DialRecord, DialTarget, RecordingTrack, Trim};
use crate::media::library::Audio;
use crate::media::record::RecordingChannels;
use crate::media::ringback::ringback;
use crate::media::session::RecordingTap;
use crate::sip::endpoint::CallSignal;
use crate::sip::msg::{Response, Uri};
use crate::store::{CallRecord, Direction, RecordingSource};

/// A party to ring, or why it cannot be, and whether the document asked for answering
/// machine detection on it.
struct Candidate {
    party: Result<Party, (Unroutable, String)>,
    /// A `<Number>` whose trunk the routing webhook is asked for: its party is made when the
    /// answer comes.
    number: Option<ast::Number>,
    /// `To` of its record when it cannot be placed.
    name: String,
    machine_detection: bool,
    /// The other URIs of a `<Sip>`, in the order to try them when this one fails over
    /// ([`failover`](crate::call::failover)).
    fallbacks: VecDeque<Party>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    /// `<Number sendDigits>` keys go to the winner.
    SendingDigits(LegId),
    /// The whisper document runs on the winner.
    Whisper(LegId),
    Bridged(LegId),
    /// The dial is over; its recording is being closed.
    Closing,
}

/// When `<Dial record>` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordFrom {
    Ringing,
    Answer,
}

/// The result reported to the document.
#[derive(Debug, Default)]
struct Report {
    status: &'static str,
    call_sid: Option<String>,
    duration: u32,
    bridged: bool,
    response: Option<Box<Response>>,
    recording: Option<RecordedAudio>,
    /// `<Dial><Queue>`: the queue the member came from.
    queue_sid: Option<String>,
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
            for (name, value) in x_headers(response) {
                params.push((format!("DialSipHeader_{name}"), value));
            }
        }
        if let Some(sid) = &self.queue_sid {
            params.push(("QueueSid".to_owned(), sid.clone()));
        }
        if let Some(audio) = &self.recording {
            params.push(("RecordingUrl".to_owned(), audio.url.clone()));
            params.push(("RecordingSid".to_owned(), audio.sid.clone()));
            params.push(("RecordingDuration".to_owned(), audio.duration.to_string()));
        }
        params
    }
}

/// A `<Dial>` under way; see the module documentation.
#[derive(Debug)]
pub struct DialState {
    verb: Dial,
    /// Groups of parties still to ring, each a list of candidates' indexes.
    groups: VecDeque<Vec<usize>>,
    candidates: Vec<CandidateSlot>,
    /// The legs of the group ringing now.
    ringing: Vec<LegId>,
    /// The legs rung before, that did not answer.
    tried: Vec<LegId>,
    phase: Phase,
    /// The leg whose early media the caller hears.
    early: Option<LegId>,
    /// The ringback tone, while the caller hears it.
    ringback: Option<Audio>,
    record_from: Option<RecordFrom>,
    recording_spec: RecordingSpec,
    recording: bool,
    report: Report,
    /// The routing webhook is being asked for the numbers' trunk ([`Action::AskRoute`]):
    /// nothing rings until it answers.
    route_ask: Option<u64>,
    /// The ringing legs whose `<Sip>` has other URIs to try if they fail over, and whether
    /// the noun asked for answering machine detection.
    fallbacks: Vec<(LegId, VecDeque<Party>, bool)>,
}

/// A candidate waiting for its turn (taken when its leg is placed).
#[derive(Debug)]
struct CandidateSlot(Option<Candidate>);

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DialState {
    /// Adds `leg` to the legs ringing now.
    pub fn add_ringing(&mut self, leg: LegId) {
        self.ringing.push(leg);
    }

    /// How long each group rings (`<Dial timeout>`).
    pub fn timeout(&self) -> std::time::Duration {
        self.verb.timeout
    }

    /// The queue the member of a `<Dial><Queue>` comes from.
    pub fn set_queue_sid(&mut self, sid: String) {
        self.report.queue_sid = Some(sid);
    }

    /// The member of a `<Dial><Queue>` is here: the dial reports it.
    pub fn member_joined(&mut self, call_sid: String) {
        self.ringing.clear();
        self.report.status = "completed";
        self.report.call_sid = Some(call_sid);
    }

    /// The dialled leg the caller is bridged with.
    pub fn bridged_child(&self) -> Option<LegId> {
        match self.phase {
            Phase::Bridged(child) => Some(child),
            _ => None,
        }
    }
}

/// The `X-` headers of a response.
fn x_headers(response: &Response) -> Vec<(String, String)> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.len() > 2 && name[..2].eq_ignore_ascii_case("X-"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

impl CallCore {
    /// Begins `dial`: every party resolved, the first group rung.
    pub(super) fn start_dial(&mut self, dial: Dial, now: Instant) {
        if let DialTarget::Conference(conference) = &dial.target {
            let conference = conference.clone();
            return self.start_conference(dial, conference, now);
        }
        let sid = self.legs[0].record.sid.clone();
        let candidates: Vec<Candidate> = match &dial.target {
            DialTarget::Sip(nouns) => nouns
                .iter()
                .map(|noun| {
                    let order = failover::order(&noun.uris, |max| rand::random_range(0..=max));
                    let mut parties: VecDeque<Party> = order
                        .into_iter()
                        .map(|i| Party::sip(noun, &noun.uris[i], &sid))
                        .collect();
                    let first = parties
                        .pop_front()
                        .ok_or_else(|| (Unroutable::Number, "a <Sip> with no URI".to_owned()));
                    Candidate {
                        party: first,
                        number: None,
                        name: String::new(),
                        machine_detection: noun.machine_detection.is_some(),
                        fallbacks: parties,
                    }
                })
                .collect(),
            DialTarget::Parties(nouns) => nouns
                .iter()
                .map(|noun| match noun {
                    ast::Party::Number(number) if self.config.routing_webhook => Candidate {
                        party: Err((Unroutable::Number, "not routed yet".to_owned())),
                        number: Some(number.clone()),
                        name: number.number.clone(),
                        machine_detection: number.machine_detection.is_some(),
                        fallbacks: VecDeque::new(),
                    },
                    ast::Party::Number(number) => Candidate {
                        party: self.number_party(number, None),
                        number: None,
                        name: number.number.clone(),
                        machine_detection: number.machine_detection.is_some(),
                        fallbacks: VecDeque::new(),
                    },
                    ast::Party::Client(client) => Candidate {
                        party: Ok(Party::client_noun(client)),
                        number: None,
                        name: format!("client:{}", client.identity),
                        machine_detection: false,
                        fallbacks: VecDeque::new(),
                    },
                })
                .collect(),
            DialTarget::Queue(_) => Vec::new(),
            DialTarget::Conference(_) => Vec::new(),
        };
        if candidates.iter().any(|c| c.machine_detection) {
            self.warn_machine_detection();
        }
        let groups: VecDeque<Vec<usize>> = if dial.sequential {
            (0..candidates.len()).map(|i| vec![i]).collect()
        } else {
            VecDeque::from([(0..candidates.len()).collect()])
        };
        let (record_from, dual) = match dial.record {
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
        let recording_spec = RecordingSpec {
            source: RecordingSource::DialVerb,
            channels,
            trim_silence: dial.trim == Trim::TrimSilence,
            status_callback: dial.recording_status_callback.clone(),
        };
        let queue = match &dial.target {
            DialTarget::Queue(queue) => Some(queue.clone()),
            _ => None,
        };
        let route_ask = candidates
            .iter()
            .any(|c| c.number.is_some())
            .then(|| self.new_id());
        self.dial = Some(Box::new(DialState {
            verb: dial,
            groups,
            candidates: candidates
                .into_iter()
                .map(|c| CandidateSlot(Some(c)))
                .collect(),
            ringing: Vec::new(),
            tried: Vec::new(),
            phase: Phase::Ringing,
            early: None,
            ringback: None,
            record_from,
            recording_spec,
            recording: false,
            report: Report::default(),
            route_ask,
            fallbacks: Vec::new(),
        }));
        self.start_dial_recording(RecordFrom::Ringing);
        if let Some(ask) = route_ask {
            let caller = &self.legs[0];
            let fields = caller.params.caller_fields(&caller.record.to);
            let query = RouteQuery {
                application_id: fields.application_id,
                channel_id: fields.channel_id,
                client_id: caller.record.sid.clone(),
                user_id: fields.user_id,
            };
            return self.out.push(Action::AskRoute { ask, query });
        }
        match queue {
            Some(queue) => self.dequeue_for_agent(queue, now),
            None => self.ring_next_group(now),
        }
    }

    /// The party for a `<Number>`: through the trunk `chosen` (by the routing webhook), else
    /// the first usable one.
    fn number_party(
        &self,
        number: &ast::Number,
        chosen: Option<&str>,
    ) -> Result<Party, (Unroutable, String)> {
        self.config
            .trunks
            .route(chosen)
            .map_err(|e| PartyError::NoTrunk(number.number.clone(), e))
            .and_then(|trunk| Party::number(number, &trunk))
            .map_err(|e| (Unroutable::Number, e.to_string()))
    }

    /// The routing webhook answered: the numbers go through the trunk it named (an unknown
    /// one fails them with 13224), or fail with 11200 when it could not be asked; then the
    /// dial rings. An answer for a dial that is over is ignored.
    pub(super) fn on_routed(&mut self, ask: u64, result: Result<String, String>, now: Instant) {
        let Some(mut dial) = self.dial.take() else {
            return;
        };
        if dial.route_ask != Some(ask) {
            self.dial = Some(dial);
            return;
        }
        dial.route_ask = None;
        for slot in &mut dial.candidates {
            let Some(candidate) = slot.0.as_mut() else {
                continue;
            };
            let Some(number) = candidate.number.take() else {
                continue;
            };
            candidate.party = match &result {
                Ok(trunk) => self.number_party(&number, Some(trunk)),
                Err(reason) => Err((
                    Unroutable::RoutingWebhook,
                    format!("the routing webhook failed: {reason}"),
                )),
            };
        }
        self.dial = Some(dial);
        self.ring_next_group(now);
    }

    /// Starts `<Dial record>` when `moment` is the one asked for (or past it) and the caller
    /// is answered.
    fn start_dial_recording(&mut self, moment: RecordFrom) {
        let answered = self.legs[0].is_answered();
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let due = match dial.record_from {
            Some(RecordFrom::Ringing) => true,
            Some(RecordFrom::Answer) => moment == RecordFrom::Answer,
            None => false,
        };
        if !due || dial.recording || !answered {
            return;
        }
        dial.recording = true;
        let spec = dial.recording_spec.clone();
        self.start_recording(LegId::CALL, RecordingTap::Dial, spec);
    }

    /// Rings the next group of parties, or reports that nobody answered.
    fn ring_next_group(&mut self, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let Some(group) = dial.groups.pop_front() else {
            return self.nobody_answered(now);
        };
        let candidates: Vec<Candidate> = group
            .into_iter()
            .filter_map(|i| dial.candidates.get_mut(i).and_then(|slot| slot.0.take()))
            .collect();
        let timeout = dial.verb.timeout;
        for candidate in candidates {
            let leg = self.place_child(candidate, now);
            if let Some(dial) = self.dial.as_mut() {
                dial.ringing.push(leg);
            }
        }
        if self.legs[0].is_answered() {
            self.start_ringback();
        }
        self.timers.set(Timer::Ring, now + timeout);
        self.check_group(now);
    }

    /// The caller hears ringback while the dialled parties ring.
    pub(super) fn start_ringback(&mut self) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let tone = ringback(dial.verb.ring_tone);
        dial.ringback = Some(tone.clone());
        self.out
            .push(Action::Media(LegId::CALL, MediaCommand::Ringback(tone)));
    }

    /// A child leg for `candidate`: its record and `initiated` callback, and its INVITE (or
    /// its failure, when it cannot be placed).
    fn place_child(&mut self, mut candidate: Candidate, now: Instant) -> LegId {
        let at = self.wall(now);
        let id = LegId(self.legs.len() as u32);
        let parent = &self.legs[0].record;
        let dial_caller = self.dial.as_ref().and_then(|d| d.verb.caller_id.clone());
        let (to, party_caller) = match &mut candidate.party {
            Ok(party) => {
                let to = party
                    .name
                    .clone()
                    .unwrap_or_else(|| party_name(&Uri::Sip(party.uri.clone())));
                let fields = self.legs[0].params.caller_fields(&to);
                let caller = party.fill_caller_id(&fields);
                (to, caller)
            }
            Err(_) => (candidate.name.clone(), None),
        };
        let caller = dial_caller
            .or(party_caller)
            .unwrap_or_else(|| parent.from.clone());
        let sid = Sid::new("CA");
        let mut record = CallRecord::new(
            sid.as_str(),
            &parent.account_sid,
            &caller,
            to,
            Direction::OutboundDial,
            at,
        );
        record.parent_call_sid = Some(parent.sid.clone());
        record.start_time = Some(at);
        let mut params = CallParams::new(&record);
        params.answered_by = candidate.machine_detection.then_some(ANSWERED_BY_UNKNOWN);
        let callbacks = candidate.party.as_ref().ok().and_then(|party| {
            let callback = &party.status_callback;
            callback.url.as_ref().map(|url| CallbackTarget {
                url: url.clone(),
                method: callback.method,
                events: progress_events(callback.events.iter()),
            })
        });
        let mut leg = Leg::new(params, record, callbacks);
        leg.outbound = true;
        leg.save(at, &mut self.out);
        leg.notify(id, ProgressEvent::Initiated, at, &mut self.out);
        if !candidate.fallbacks.is_empty()
            && let Some(dial) = self.dial.as_mut()
        {
            let fallbacks = std::mem::take(&mut candidate.fallbacks);
            dial.fallbacks
                .push((id, fallbacks, candidate.machine_detection));
        }
        match candidate.party {
            Ok(party) => {
                leg.offered = MediaOffer::for_party(&party);
                let offer = leg.offered.clone();
                let headers = twilio_headers(&leg.record);
                leg.party = Some(Box::new(party.clone()));
                self.legs.push(leg);
                self.out.push(Action::Invite {
                    leg: id,
                    party: Box::new(party),
                    offer,
                    caller,
                    headers,
                });
            }
            Err((kind, reason)) => {
                self.legs.push(leg);
                self.leg_ended(id, Ending::Unroutable(kind, reason), now);
            }
        }
        id
    }

    /// A signal for a dialled leg that has not answered.
    pub(super) fn ringing_child_signal(&mut self, id: LegId, signal: CallSignal, now: Instant) {
        match signal {
            CallSignal::Progress(response) => {
                let at = self.wall(now);
                let leg = &mut self.legs[id.0 as usize];
                if leg.record.sip_call_id.is_none() {
                    leg.record.sip_call_id = response.headers.get("Call-ID").map(str::to_owned);
                }
                leg.ringing(id, at, &mut self.out);
                self.early_media(id, &response);
            }
            CallSignal::Answered(response) => self.child_answered(id, response, now),
            CallSignal::Rejected(response) => {
                let status = response.status;
                let leg = self.leg_mut(id);
                let ending = leg.declined(status);
                leg.response = Some(response);
                let fails_over = matches!(ending, Ending::Declined(_)) && fails_over_on(status);
                self.leg_ended(id, ending, now);
                if fails_over {
                    self.fail_over(id, now);
                }
            }
            CallSignal::Unreachable => {
                self.leg_ended(id, Ending::NoResponse, now);
                self.fail_over(id, now);
            }
            CallSignal::TransportFailed { reason } => {
                self.leg_ended(id, Ending::TransportFailed(reason), now);
                self.fail_over(id, now);
            }
            CallSignal::Unresolvable { reason } => {
                self.leg_ended(id, Ending::Unresolvable(reason), now);
                self.fail_over(id, now);
            }
            CallSignal::NotRegistered { client } => {
                let to = self.legs[id.0 as usize].record.to.clone();
                self.leg_ended(id, Ending::NotRegistered { client, to }, now)
            }
            CallSignal::Canceled => self.leg_ended(id, Ending::Canceled, now),
            other => {
                tracing::debug!(leg = id.0, signal = ?other, "child signal ignored while ringing")
            }
        }
        self.check_group(now);
    }

    /// The `<Sip>` URI of ringing leg `id` failed in a way that sends the call to the noun's
    /// next URI: it rings now, as a child leg of its own, within the group's `timeout`.
    fn fail_over(&mut self, id: LegId, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let Some(index) = dial.fallbacks.iter().position(|(leg, ..)| *leg == id) else {
            return;
        };
        let (_, mut fallbacks, machine_detection) = dial.fallbacks.swap_remove(index);
        if dial.phase != Phase::Ringing || !dial.ringing.contains(&id) {
            return;
        }
        let Some(next) = fallbacks.pop_front() else {
            return;
        };
        tracing::info!(
            call_sid = %self.legs[id.0 as usize].record.sid,
            next = %next.uri,
            "<Sip> URI failed; trying the next one"
        );
        let candidate = Candidate {
            party: Ok(next),
            number: None,
            name: String::new(),
            machine_detection,
            fallbacks,
        };
        let leg = self.place_child(candidate, now);
        if let Some(dial) = self.dial.as_mut() {
            dial.ringing.push(leg);
        }
    }

    /// A 183 with SDP while the caller is answered and hears ringback: the caller hears the
    /// callee's early media instead.
    fn early_media(&mut self, id: LegId, response: &Response) {
        let caller_answered = self.legs[0].is_answered();
        let media_timeout = self.config.media_timeout;
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        if response.body.is_empty() || dial.early.is_some() || !caller_answered {
            return;
        }
        let leg = &mut self.legs[id.0 as usize];
        if leg.offered.delayed {
            // An offer in a provisional response to a delayed-offer INVITE: without PRACK
            // (RFC 3262) there is nowhere to answer it; the 2xx will bring it again.
            return;
        }
        match answered_config(&response.body, &leg.offered, media_timeout) {
            Ok(config) => {
                leg.media = Some(config.clone());
                dial.early = Some(id);
                self.out
                    .push(Action::Media(id, MediaCommand::Connect(config)));
                self.out
                    .push(Action::Media(LegId::CALL, MediaCommand::Stop));
                self.out.push(Action::Route(MediaRoute::Early {
                    from: id,
                    to: LegId::CALL,
                }));
            }
            Err(failure) => tracing::debug!(%failure, "early media not usable"),
        }
    }

    /// After a ringing child ended: the early media it sent stops (ringback again), and when
    /// every party of the group has ended, the next group rings.
    pub(super) fn check_group(&mut self, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        if dial.phase != Phase::Ringing {
            return;
        }
        if let Some(early) = dial.early
            && self.legs[early.0 as usize].is_ended()
        {
            dial.early = None;
            self.out.push(Action::Route(MediaRoute::Apart));
            if let Some(tone) = &dial.ringback {
                self.out
                    .push(Action::Media(LegId::CALL, MediaCommand::Play(tone.clone())));
            }
        }
        if !dial
            .ringing
            .iter()
            .all(|leg| self.legs[leg.0 as usize].is_ended())
        {
            return;
        }
        let rung = std::mem::take(&mut dial.ringing);
        dial.tried.extend(rung);
        self.timers.stop(Timer::Ring);
        self.stop_ringback();
        self.ring_next_group(now);
    }

    pub(super) fn stop_ringback(&mut self) {
        if let Some(dial) = self.dial.as_mut()
            && dial.ringback.take().is_some()
        {
            self.out
                .push(Action::Media(LegId::CALL, MediaCommand::Stop));
        }
    }

    /// The ringback tone played to its end: it starts again, unless early media replaced it.
    pub(super) fn ringback_played_out(&mut self) -> bool {
        let Some(dial) = self.dial.as_ref() else {
            return false;
        };
        match (&dial.ringback, dial.phase, dial.early) {
            (Some(tone), Phase::Ringing, None) => {
                self.out
                    .push(Action::Media(LegId::CALL, MediaCommand::Play(tone.clone())));
                true
            }
            _ => false,
        }
    }

    /// Nobody in any group answered: busy if anyone was busy, else no-answer, else failed.
    fn nobody_answered(&mut self, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let statuses: Vec<&'static str> = dial
            .tried
            .iter()
            .filter_map(|leg| {
                let leg = &self.legs[leg.0 as usize];
                leg.ending.as_ref().map(|e| e.dial_status(false))
            })
            .collect();
        let status = if statuses.contains(&"busy") {
            "busy"
        } else if statuses.contains(&"no-answer") || statuses.contains(&"canceled") {
            "no-answer"
        } else {
            "failed"
        };
        let last = dial.tried.last().map(|leg| &self.legs[leg.0 as usize]);
        dial.report.status = status;
        dial.report.call_sid = last
            .map(|leg| leg.record.sid.clone())
            .filter(|sid| !sid.is_empty());
        dial.report.response = last.and_then(|leg| leg.response.clone());
        self.finish_dial(now);
    }

    /// `id` answered first: the others are CANCELed, its media set up, then its keys, its
    /// whisper, the bridge.
    fn child_answered(&mut self, id: LegId, response: Box<Response>, now: Instant) {
        let at = self.wall(now);
        let media_timeout = self.config.media_timeout;
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        let others: Vec<LegId> = dial.ringing.iter().copied().filter(|l| *l != id).collect();
        dial.tried.extend(others.iter().copied());
        dial.ringing.clear();
        let had_early = dial.early.take();
        self.timers.stop(Timer::Ring);
        for other in others {
            self.hang_up_leg(other, Ending::Canceled, now);
        }
        self.stop_ringback();
        if had_early.is_some() {
            self.out.push(Action::Route(MediaRoute::Apart));
        }
        let leg = &mut self.legs[id.0 as usize];
        let call_id = response.headers.get("Call-ID").map(str::to_owned);
        leg.record.sip_call_id = call_id.clone();
        leg.record.sip_response_code = Some(response.status);
        leg.params.sip_call_id = call_id;
        leg.params.sip_headers = x_headers(&response);
        leg.answered(id, at, &mut self.out);
        let media = match leg.media.clone() {
            Some(config) => Ok(config),
            None => {
                answered_config(&response.body, &leg.offered, media_timeout).inspect(|config| {
                    leg.media = Some(config.clone());
                    self.out
                        .push(Action::Media(id, MediaCommand::Connect(config.clone())));
                })
            }
        };
        let send_digits = leg.party.as_ref().and_then(|p| p.send_digits.clone());
        let sid = leg.record.sid.clone();
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.report = Report {
            status: "completed",
            call_sid: Some(sid),
            response: Some(response),
            ..Report::default()
        };
        if let Err(failure) = media {
            dial.report.status = "failed";
            let ending = Ending::MediaFailed {
                status: 488,
                reason: format!("unusable SDP answer: {}", failure.reason),
            };
            self.hang_up_leg(id, ending, now);
            return self.finish_dial(now);
        }
        match send_digits {
            Some(digits) => {
                dial.phase = Phase::SendingDigits(id);
                self.timers
                    .set(Timer::DigitsSent, now + digits_timeout(&digits));
                self.out
                    .push(Action::Media(id, MediaCommand::SendDigits(digits)));
            }
            None => self.after_send_digits(id, now),
        }
    }

    /// The winner whose `sendDigits` are out.
    pub(super) fn dial_sending_digits(&self) -> Option<LegId> {
        match self.dial.as_ref()?.phase {
            Phase::SendingDigits(child) => Some(child),
            _ => None,
        }
    }

    /// The winner's keys are out (or it had none): its whisper, or the bridge.
    pub(super) fn after_send_digits(&mut self, id: LegId, now: Instant) {
        let whisper = self.legs[id.0 as usize].party.as_ref().and_then(|party| {
            party.url.url.clone().map(|url| Source {
                url,
                method: party.url.method,
            })
        });
        match whisper {
            Some(source) => {
                if let Some(dial) = self.dial.as_mut() {
                    dial.phase = Phase::Whisper(id);
                }
                self.start_side(id, Role::DialWhisper, source, Vec::new());
            }
            None => self.connect(id, now),
        }
    }

    /// The whisper document ran to its end: the callee is connected.
    pub(super) fn whisper_finished(&mut self, now: Instant) {
        let Some(Phase::Whisper(child)) = self.dial.as_ref().map(|d| d.phase) else {
            return;
        };
        self.side = None;
        self.connect(child, now);
    }

    /// The whisper document hung up (or failed): the callee is hung up, the dial reports
    /// `no-answer`.
    pub(super) fn whisper_refused(&mut self, ending: Ending, now: Instant) {
        let Some(Phase::Whisper(child)) = self.dial.as_ref().map(|d| d.phase) else {
            return;
        };
        self.side = None;
        self.hang_up_leg(child, ending, now);
        if let Some(dial) = self.dial.as_mut() {
            dial.report.status = "no-answer";
        }
        self.finish_dial(now);
    }

    /// Connects the caller and `child`: the caller answered if it was not yet
    /// (`answerOnBridge`), the recording from answer started, the bridge routed.
    pub(super) fn connect(&mut self, child: LegId, now: Instant) {
        self.answer_call(now);
        self.start_dial_recording(RecordFrom::Answer);
        let same_codec = match (&self.legs[0].media, &self.legs[child.0 as usize].media) {
            (Some(a), Some(b)) => a.codec == b.codec,
            _ => false,
        };
        let relay = same_codec && !self.is_recording(LegId::CALL) && !self.legs[0].awaiting_answer;
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.phase = Phase::Bridged(child);
        dial.report.bridged = true;
        self.timers
            .set(Timer::DialLimit, now + dial.verb.time_limit);
        self.out.push(Action::Route(MediaRoute::Bridge {
            caller: LegId::CALL,
            callee: child,
            relay,
            watch_star: dial.verb.hangup_on_star,
        }));
    }

    /// Whether a `*` from the caller ends the bridge now (`hangupOnStar`).
    pub(super) fn star_ends_bridge(&self) -> bool {
        self.dial
            .as_ref()
            .is_some_and(|d| d.verb.hangup_on_star && d.bridged_child().is_some())
    }

    /// `hangupOnStar`: the callee is hung up; the caller's document goes on.
    pub(super) fn hang_up_on_star(&mut self, now: Instant) {
        if let Some(child) = self.dial.as_ref().and_then(|d| d.bridged_child()) {
            self.hang_up_leg(child, Ending::HangupOnStar, now);
            self.child_gone(child, now);
        }
    }

    /// `<Dial timeLimit>` passed: the callee is hung up.
    pub(super) fn dial_time_limit(&mut self, now: Instant) {
        if let Some(child) = self.dial.as_ref().and_then(|d| d.bridged_child()) {
            self.hang_up_leg(child, Ending::TimeLimit, now);
            self.child_gone(child, now);
        }
    }

    /// The group rang for `timeout`: its parties are CANCELed (`no-answer`).
    pub(super) fn dial_ring_timeout(&mut self, now: Instant) {
        let Some(dial) = self.dial.as_ref() else {
            return;
        };
        if dial.phase != Phase::Ringing {
            return;
        }
        for leg in dial.ringing.clone() {
            self.hang_up_leg(leg, Ending::RingTimeout, now);
        }
        self.check_group(now);
    }

    /// A dialled leg has ended from inside (it hung up, fell silent, lost its media): the
    /// bridge, the whisper or the keys it was in are over, and so is the dial; a leg that was
    /// still ringing is one less in its group.
    pub(super) fn child_gone(&mut self, id: LegId, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        match dial.phase {
            Phase::Bridged(child) if child == id => self.end_bridge(child, now),
            Phase::Whisper(child) if child == id => {
                self.side = None;
                dial.report.status = "no-answer";
            }
            Phase::SendingDigits(child) if child == id => self.timers.stop(Timer::DigitsSent),
            _ => return self.check_group(now),
        }
        self.finish_dial(now);
    }

    /// The bridge with `child` is over: its duration (from the child's answer) is reported,
    /// the legs are apart again.
    fn end_bridge(&mut self, child: LegId, now: Instant) {
        let at = self.wall(now);
        self.timers.stop(Timer::DialLimit);
        let duration = self.legs[child.0 as usize]
            .record
            .answer_time
            .map(|answered| whole_seconds(answered, at))
            .unwrap_or(0);
        if let Some(dial) = self.dial.as_mut() {
            dial.report.duration = duration;
        }
        self.out.push(Action::Route(MediaRoute::Apart));
    }

    /// The dial is over: its recording is closed, then the document hears the result.
    fn finish_dial(&mut self, now: Instant) {
        self.stop_ringback();
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.phase = Phase::Closing;
        if dial.recording && self.stop_recording(LegId::CALL, RecordingTap::Dial) {
            return;
        }
        self.deliver_dial(now);
    }

    /// The `<Dial record>` recording is closed.
    pub(super) fn dial_recording_finished(&mut self, audio: Option<RecordedAudio>, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.report.recording = audio;
        dial.recording = false;
        if dial.phase == Phase::Closing {
            self.deliver_dial(now);
        }
    }

    fn deliver_dial(&mut self, now: Instant) {
        let Some(dial) = self.dial.take() else {
            return;
        };
        let params = dial.report.params();
        self.feed(super::RunnerId::Main, Event::DialDone { params }, now);
    }

    /// Ends a dial under way from outside it: every child still up is CANCELed or sent BYE.
    /// With `report`, the dial closes as usual and its `action` is requested (the caller left;
    /// Twilio still reports the dial); without, it is dropped (a redirect replaces the
    /// document).
    pub(super) fn abandon_dial(&mut self, report: bool, now: Instant) {
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        if dial.phase == Phase::Closing {
            if !report {
                self.dial = None;
            }
            return;
        }
        let live: Vec<LegId> = (1..self.legs.len() as u32)
            .map(LegId)
            .filter(|leg| !self.legs[leg.0 as usize].is_ended())
            .collect();
        match dial.phase {
            Phase::Bridged(child) => self.end_bridge(child, now),
            Phase::Ringing => {
                dial.report.status = "canceled";
                if dial.early.take().is_some() {
                    self.out.push(Action::Route(MediaRoute::Apart));
                }
            }
            Phase::SendingDigits(_) | Phase::Whisper(_) => dial.report.status = "canceled",
            Phase::Closing => {}
        }
        for timer in [Timer::Ring, Timer::DialLimit, Timer::DigitsSent] {
            self.timers.stop(timer);
        }
        self.side = None;
        for leg in live {
            let ending = if self.legs[leg.0 as usize].is_answered() {
                Ending::HungUp
            } else {
                Ending::Canceled
            };
            self.hang_up_leg(leg, ending, now);
        }
        if report {
            self.finish_dial(now);
        } else {
            self.stop_ringback();
            if self.dial.as_ref().is_some_and(|d| d.recording) {
                self.stop_recording(LegId::CALL, RecordingTap::Dial);
            }
            self.dial = None;
        }
    }
}
