//! The driver of one call: the call's only task, one loop, one `select!`. It turns the SIP
//! signals of the call's legs, REST updates, shutdown, finished jobs (document fetches,
//! prompts, closed recordings), the legs' RTP sockets, the relay engine and the clock into
//! [`Input`]s for the [`CallCore`], and carries out the core's [`Action`]s: SIP commands,
//! RTP streams (play, send keys, record, bridge), store writes (records, and the
//! notifications of [`Action::Warning`]) and status callbacks. Every decision is the core's;
//! what is here is I/O.
//!
//! Media: each leg with a negotiated session has an [`RtpStream`]. Every 20 ms the live legs
//! are ticked (a prompt frame or silence sent, a received frame played out); a transcoded
//! bridge feeds each leg's received frame to the other, early media feeds the callee's to the
//! caller. A relayed bridge lends both legs to the relay engine, which forwards packets
//! without this task; the driver then only watches the legs' RTCP and their silence
//! (checked every second against the media timeout).
//!
//! Memory: the task holds the [`Driver`] once. [`run`] puts it together before the task's
//! future is made (an `async fn` keeps its arguments in its future beside what they are moved
//! into: the call leg's stream twice over, 37 KB a call where 6 KB now do), and what a leg
//! holds only while it records is boxed.

mod queues;
mod rooms;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::Services;
use super::bridge::{LendError, Relays, lend, take_back};
use super::core::{
    Action, CallCore, DocumentRequest, Input, LegId, MediaCommand, MediaRoute, PromptRequest,
    RouteQuery, SipCommand,
};
use super::document;
use super::ending;
use super::mapping;
use super::media::{LocalLeg, MediaOffer, OFFERED};
use super::pacing::Pacing;
use super::party::caller_uri;
use super::queues::{LentLeg, QueueMessage};
use super::recording::CallRecording;
use super::registry::{CallMessage, Registration};
use super::speech::{Recognition, RecognizerError};
use super::verbs;
use crate::capture::EventKind;
use crate::ids::Sid;
use crate::media::dtmf::{Digit, DigitSource, DigitTiming, render_tones};
use crate::media::library::{AUDIO_SAMPLE_RATE, Audio, Prompt};
use crate::media::relay_engine::{BridgeHandle, RelayEvent, Side};
use crate::media::session::{MediaEvent, SendDigitsError};
use crate::media::stream::{PTIME, RtpStream};
use crate::metrics::METRICS;
use crate::sip::endpoint::{CallKey, CallSignal};
use crate::store::{CallRecord, CallStatus, LogLevel, NotificationRecord, Store};
use crate::transport::{CallGuard, SignalReceiver, SignalSender, SipHandle};
use crate::webhook::CallbackQueue;
use tracing::Instrument;

/// What a job of the call's task ends with.
enum Job {
    Done(Box<Input>),
    /// A queue member's media leg for `<Dial><Queue>` leg `leg` (none if its call ended).
    MemberLeg {
        leg: LegId,
        lent: Option<LentLeg>,
    },
    /// `<Dial><Conference>` on a shared store: the conference of that name under way on
    /// another node, if any (read from the store before joining).
    RoomLookedUp {
        name: String,
        options: Box<crate::call::rooms::room::SeatOptions>,
        elsewhere: Option<crate::store::RemoteConference>,
    },
}

/// How often a relayed bridge checks that both far ends still send RTP.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How long a finished leg's last callbacks may take.
const CALLBACK_DRAIN: Duration = Duration::from_secs(30);

/// A leg's I/O: its SIP key, its media sockets or stream.
#[derive(Default)]
struct MediaLeg {
    key: Option<CallKey>,
    guard: Option<CallGuard>,
    /// Bound, not negotiated yet.
    local: Option<LocalLeg>,
    /// Its INVITE carried no offer: the 2xx's offer is answered in the ACK.
    delayed_offer: bool,
    stream: Option<RtpStream>,
    /// Answered or connected: its stream is ticked and received.
    live: bool,
    /// What plays are in-band keys (`DigitsSent` when done, not `PlayedOut`).
    inband_digits: bool,
    recognition: Option<Box<dyn Recognition>>,
    callbacks: Option<CallbackQueue>,
    /// Recordings under way, by tap (boxed: 350 bytes each that most legs never use).
    recordings: [Option<Box<CallRecording>>; 3],
}

/// How the legs' media is connected now.
enum Route {
    Apart,
    Early {
        from: LegId,
        to: LegId,
    },
    Transcode {
        caller: LegId,
        callee: LegId,
    },
    Relay {
        caller: LegId,
        callee: LegId,
        handle: BridgeHandle,
        /// What the engine was told of each leg's hold.
        held: [bool; 2],
    },
}

/// The last record saved of each leg. Should the driver end before the core said
/// [`Action::Done`] (a panic unwinding through it), the legs still live are written as
/// `failed` with Twilio's "internal failure" code, so no call is left `in-progress`.
struct LastRecords {
    store: Store,
    records: HashMap<String, CallRecord>,
    done: bool,
}

impl LastRecords {
    /// Writes the legs still live as failed; the write's task, if anything was left live.
    fn fail_live(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let now = chrono::Utc::now();
        let live: Vec<CallRecord> = self
            .records
            .drain()
            .map(|(_, record)| record)
            .filter(|record| record.status.is_live())
            .map(|mut record| {
                record.status = CallStatus::Failed;
                record.end_time = Some(now);
                record.error_code = Some(ending::INTERNAL);
                record.error_message = Some("the call's task ended unexpectedly".into());
                record.date_updated = now;
                record
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        tracing::error!(
            legs = live.len(),
            "call task ended unexpectedly: its live legs are written as failed"
        );
        let store = self.store.clone();
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move {
            for record in live {
                if let Err(error) = store.save_call(&record).await {
                    tracing::error!(call_sid = %record.sid, %error, "could not save the call record");
                }
            }
        }))
    }
}

impl Drop for LastRecords {
    fn drop(&mut self) {
        if !self.done {
            self.fail_live();
        }
    }
}

/// Counts a leg in the call metrics when a save ends it or records its answer.
fn count_call(previous: Option<&CallRecord>, record: &CallRecord) {
    if !record.status.is_live() && previous.is_none_or(|p| p.status.is_live()) {
        METRICS.calls.inc(&[
            ("direction", record.direction.as_str()),
            ("status", record.status.as_str()),
        ]);
    }
    if let Some(answered) = record.answer_time
        && previous.is_none_or(|p| p.answer_time.is_none())
    {
        let started = record.start_time.unwrap_or(record.date_created);
        if let Ok(setup) = (answered - started).to_std() {
            METRICS.call_setup.observe(setup);
        }
    }
}

/// What the driver needs besides the core.
pub struct CallIo {
    pub sip: SipHandle,
    pub signals: SignalReceiver,
    pub signal_sender: SignalSender,
    /// The call's own leg, when it exists already (an inbound INVITE), with its stream unless
    /// its offer could not be served (then the core refuses it, 488 or 503).
    pub call_leg: Option<(CallKey, CallGuard, Option<RtpStream>)>,
    /// REST updates and word from queues, through the registry.
    pub updates: mpsc::UnboundedReceiver<CallMessage>,
    pub registration: Registration,
}

/// Runs one call to its end. The driver is made here, not in the future returned, so that
/// the call's task holds it once.
pub fn run(
    core: CallCore,
    io: CallIo,
    services: Arc<Services>,
) -> impl Future<Output = ()> + Send + 'static {
    // Every log line of the call's task carries its CallSid.
    let span = tracing::info_span!("call", call_sid = %core.sid());
    let (mut driver, registration) = Driver::new(core, io, services);
    let run = async move {
        driver.run().await;
        drop(registration);
    };
    run.instrument(span)
}

struct Driver {
    core: CallCore,
    services: Arc<Services>,
    sip: SipHandle,
    signals: SignalReceiver,
    signal_sender: SignalSender,
    updates: Option<mpsc::UnboundedReceiver<CallMessage>>,
    shutdown: watch::Receiver<bool>,
    legs: Vec<MediaLeg>,
    keys: HashMap<CallKey, LegId>,
    /// Fetches, prompts, recordings being closed and queue members on their way.
    jobs: JoinSet<Job>,
    /// A queued call taken by an agent: where its media leg goes once its announcement ran.
    lend: Option<oneshot::Sender<LentLeg>>,
    /// `<Dial><Queue>` legs and the member call each one was given (once known); `None` for a
    /// leg given back before its member's media came.
    members: HashMap<LegId, Option<String>>,
    /// When each `<Dial><Queue>` leg asked the queue (for the time to the bridge).
    dequeued_at: HashMap<LegId, Instant>,
    route: Route,
    warned_no_recognizer: bool,
    /// How fast this call may fetch documents and load prompts.
    pacing: Pacing,
    /// The leg whose socket is polled first next time (so none starves another).
    next_receive: usize,
    last_records: LastRecords,
}

impl Driver {
    /// The driver of a call, and its registration (dropped once the driver has run).
    fn new(core: CallCore, io: CallIo, services: Arc<Services>) -> (Driver, Registration) {
        let mut legs = vec![MediaLeg::default()];
        let mut keys = HashMap::new();
        if let Some((key, guard, stream)) = io.call_leg {
            legs[0].key = Some(key);
            legs[0].guard = Some(guard);
            legs[0].stream = stream;
            keys.insert(key, LegId::CALL);
        }
        let store = services.store.clone();
        let driver = Driver {
            core,
            shutdown: services.shutdown.clone(),
            services,
            sip: io.sip,
            signals: io.signals,
            signal_sender: io.signal_sender,
            updates: Some(io.updates),
            legs,
            keys,
            jobs: JoinSet::new(),
            lend: None,
            members: HashMap::new(),
            dequeued_at: HashMap::new(),
            route: Route::Apart,
            warned_no_recognizer: false,
            pacing: Pacing::default(),
            next_receive: 0,
            last_records: LastRecords {
                store,
                records: HashMap::new(),
                done: false,
            },
        };
        (driver, io.registration)
    }

    async fn run(&mut self) {
        let mut ticker = tokio::time::interval(PTIME);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut idle_check = tokio::time::interval(IDLE_CHECK);
        let mut ticked = false;
        let mut shut_down = *self.shutdown.borrow();
        if shut_down {
            self.input(Input::Shutdown);
        }
        loop {
            self.carry_out().await;
            if self.core.is_done() {
                break;
            }
            let wake = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            let ticking = self.needs_ticks();
            if ticking && !ticked {
                // Media back from a room or the relay engine (or a first leg answered): the
                // ticks missed meanwhile are not owed, or 20 ms frames would go out in a burst.
                ticker.reset();
            }
            ticked = ticking;
            let relaying = matches!(self.route, Route::Relay { .. });
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some((key, signal)) => self.on_signal(key, signal),
                    None => self.input(Input::SipGone),
                },
                message = recv_update(&mut self.updates) => match message {
                    Some(CallMessage::Update(update)) => self.input(Input::Update(update)),
                    Some(CallMessage::Queue(message)) => self.on_queue_message(message),
                    Some(CallMessage::Room(message)) => self.on_room_message(message),
                    None => self.updates = None,
                },
                changed = self.shutdown.changed(), if !shut_down => {
                    shut_down = true;
                    if changed.is_ok() {
                        self.input(Input::Shutdown);
                    }
                }
                Some(finished) = self.jobs.join_next() => match finished {
                    Ok(Job::Done(input)) => {
                        if let Input::PromptLoaded { result, .. } = input.as_ref() {
                            self.pacing.prompt_result(result.is_ok());
                        }
                        self.input(*input)
                    }
                    Ok(Job::MemberLeg { leg, lent }) => self.member_leg_arrived(leg, lent),
                    Ok(Job::RoomLookedUp { name, options, elsewhere }) => {
                        self.room_looked_up(&name, &options, elsewhere);
                    }
                    Err(error) => tracing::error!(%error, "call job failed"),
                },
                _ = ticker.tick(), if ticking => self.tick(),
                received = receive_any(&mut self.legs, &mut self.next_receive) => {
                    if let Err(error) = received {
                        tracing::debug!(%error, "RTP receive error");
                    }
                }
                event = relay_event(&mut self.route) => self.on_relay_event(event).await,
                _ = idle_check.tick(), if relaying => self.check_relay_idle(),
                _ = sleep_until(wake), if wake.is_some() => self.core.handle_timeout(Instant::now()),
            }
        }
        self.set_route(MediaRoute::Apart).await;
    }

    /// Whether any leg's media needs the 20 ms tick: a live leg with a stream, unless the
    /// relay engine carries it (a relayed bridge must not wake its call task 50 times a
    /// second).
    fn needs_ticks(&self) -> bool {
        let relayed = match self.route {
            Route::Relay { caller, callee, .. } => [Some(caller), Some(callee)],
            _ => [None, None],
        };
        self.legs.iter().enumerate().any(|(index, leg)| {
            leg.live && leg.stream.is_some() && !relayed.contains(&Some(LegId(index as u32)))
        })
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, Instant::now());
    }

    fn leg(&mut self, id: LegId) -> &mut MediaLeg {
        let index = id.0 as usize;
        if self.legs.len() <= index {
            self.legs.resize_with(index + 1, MediaLeg::default);
        }
        &mut self.legs[index]
    }

    fn stream(&mut self, id: LegId) -> Option<&mut RtpStream> {
        self.leg(id).stream.as_mut()
    }

    fn on_signal(&mut self, key: CallKey, signal: CallSignal) {
        match self.keys.get(&key) {
            Some(&leg) => {
                if let CallSignal::Answered(response) = &signal {
                    self.answer_in_ack(leg, key, &response.body);
                }
                self.input(Input::Signal(leg, signal))
            }
            None => {
                // A leg already let go of (a 2xx racing our CANCEL): end it.
                if let CallSignal::Answered(_) = signal {
                    self.sip.hangup(key);
                }
            }
        }
    }

    /// The ACK for the 2xx of a delayed-offer INVITE carries our answer to its offer; the
    /// core reaches the same session from the same offer (`answered_config`). An offer that
    /// cannot be answered is acknowledged with our own offer, and the core hangs the leg up.
    fn answer_in_ack(&mut self, leg: LegId, key: CallKey, offer: &[u8]) {
        let media_timeout = self.services.config.media_timeout;
        let media = self.leg(leg);
        if !media.delayed_offer {
            return;
        }
        media.delayed_offer = false;
        let Some(local) = media.local.as_ref() else {
            return;
        };
        let sdp = match local.answer_in_ack(offer, media_timeout) {
            Ok((answer, _)) => answer,
            Err(failure) => {
                tracing::info!(%failure, "the offer in the 2xx to a delayed-offer INVITE is unusable");
                local.offer(&MediaOffer::plain(OFFERED.to_vec()))
            }
        };
        self.sip.acknowledge(key, sdp);
    }

    /// Carries out every action the core has for us.
    async fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Sip(leg, command) => self.sip_command(leg, command),
                Action::Invite {
                    leg,
                    party,
                    offer,
                    caller,
                    headers,
                } => {
                    let media_ip = self.services.config.media_ip;
                    match LocalLeg::bind(&self.services.ports, media_ip) {
                        Ok(local) => {
                            let from = caller_uri(&caller, local.media.address);
                            let invite = party.invite(from, local.offer(&offer), headers);
                            let key = self.sip.invite(invite, self.signal_sender.clone());
                            self.keys.insert(key, leg);
                            let guard = self.sip.guard(key);
                            let media = self.leg(leg);
                            media.key = Some(key);
                            media.guard = Some(guard);
                            media.local = Some(local);
                            media.delayed_offer = offer.delayed;
                        }
                        Err(failure) => self.input(Input::MediaLost {
                            leg,
                            reason: failure.reason,
                        }),
                    }
                }
                Action::Media(leg, command) => self.media_command(leg, command),
                Action::LoadPrompt {
                    leg: _,
                    prompt,
                    request,
                } => {
                    let audio = self.services.audio.clone();
                    let backoff = self.pacing.prompt_delay();
                    self.spawn_job(async move {
                        tokio::time::sleep(backoff).await;
                        let result = match request {
                            PromptRequest::Say {
                                parts,
                                voice,
                                language,
                            } => verbs::speak(audio, parts, voice, language)
                                .await
                                .map(Prompt::Clip),
                            PromptRequest::Play { url } => audio.play(&url).await,
                        };
                        Job::Done(Box::new(Input::PromptLoaded { prompt, result }))
                    });
                }
                Action::Fetch { fetch, request } => match request {
                    DocumentRequest::Inline(text) => self.input(Input::Loaded {
                        fetch,
                        result: document::inline(&text),
                    }),
                    DocumentRequest::Url {
                        source,
                        params,
                        mut fallback,
                    } => {
                        let services = Arc::clone(&self.services);
                        let pace = self.pacing.fetch_delay(Instant::now());
                        self.spawn_job(async move {
                            tokio::time::sleep(pace).await;
                            let result = document::load_with_fallback(
                                &services.webhooks,
                                &source,
                                &mut fallback,
                                &params,
                                services.config.fetch_timeout,
                            )
                            .await;
                            Job::Done(Box::new(Input::Loaded { fetch, result }))
                        });
                    }
                },
                Action::Notify {
                    url,
                    method,
                    params,
                } => {
                    let services = Arc::clone(&self.services);
                    self.services.spawn_in_span(async move {
                        let timeout = services.config.fetch_timeout;
                        if let Err(error) = services
                            .webhooks
                            .fetch_document(&url, method, &params, timeout)
                            .await
                        {
                            tracing::info!(%url, %error, "action request after the call ended failed");
                        }
                    });
                }
                Action::Listen(leg, settings) => match self.services.recognizer.start(&settings) {
                    Ok(recognition) => self.leg(leg).recognition = Some(recognition),
                    Err(RecognizerError::NotConfigured) if self.warned_no_recognizer => {}
                    Err(error) => {
                        self.warned_no_recognizer = true;
                        tracing::warn!(call_sid = %self.core.sid(), %error, "<Gather> speech input unavailable");
                    }
                },
                Action::StopListening(leg) => self.leg(leg).recognition = None,
                Action::StartRecording {
                    leg,
                    tap,
                    spec,
                    account_sid,
                    call_sid,
                } => {
                    let started = match self.stream(leg).is_some() {
                        true => {
                            CallRecording::start(&self.services, &account_sid, &call_sid, spec)
                                .await
                        }
                        false => Err(super::recording::RecordingError::NoMedia),
                    };
                    let started = match started {
                        Ok((recording, recorder)) => {
                            if let Some(stream) = self.stream(leg) {
                                stream.start_recording(tap, recorder);
                            }
                            self.leg(leg).recordings[tap as usize] = Some(Box::new(recording));
                            true
                        }
                        Err(error) => {
                            tracing::warn!(call_sid = %call_sid, %error, "recording not started");
                            false
                        }
                    };
                    self.input(Input::RecordingStarted { leg, tap, started });
                }
                Action::StopRecording { leg, tap } => {
                    let recorder = self.stream(leg).and_then(|s| s.stop_recording(tap));
                    let recording = self.leg(leg).recordings[tap as usize].take();
                    match (recording, recorder) {
                        (Some(recording), Some(recorder)) => {
                            let recording = *recording;
                            self.spawn_job(async move {
                                let audio = recording.finish(recorder).await.audio();
                                Job::Done(Box::new(Input::RecordingFinished { leg, tap, audio }))
                            });
                        }
                        _ => self.input(Input::RecordingFinished {
                            leg,
                            tap,
                            audio: None,
                        }),
                    }
                }
                Action::Route(route) => self.set_route(route).await,
                Action::Save(record) => {
                    count_call(self.last_records.records.get(&record.sid), &record);
                    if let Err(error) = self.services.store.save_call(&record).await {
                        tracing::error!(call_sid = %record.sid, %error, "could not save the call record");
                    }
                    self.last_records
                        .records
                        .insert(record.sid.clone(), *record);
                }
                Action::Verb { leg, step } => {
                    tracing::debug!(leg = leg.0, ?step, "verb");
                    if let Some(record) = self.core.leg_record(leg) {
                        self.services
                            .capture
                            .event(&record.sid, EventKind::Verb, step.to_json());
                    }
                }
                Action::Warning { leg, code, message } => {
                    if let Some(notification) = self.notification(leg, code, message)
                        && let Err(error) =
                            self.services.store.save_notification(&notification).await
                    {
                        tracing::error!(call_sid = %notification.call_sid, %error, "could not save the call's notification");
                    }
                }
                Action::Callback {
                    leg,
                    url,
                    method,
                    params,
                } => {
                    let webhooks = self.services.webhooks.clone();
                    self.leg(leg)
                        .callbacks
                        .get_or_insert_with(|| CallbackQueue::spawn(webhooks, url, method))
                        .push(params);
                }
                Action::Release(leg) => {
                    if self.route_involves(leg) {
                        self.set_route(MediaRoute::Apart).await;
                    }
                    let media = std::mem::take(self.leg(leg));
                    if let Some(key) = media.key {
                        self.keys.remove(&key);
                    }
                    if let Some(queue) = media.callbacks {
                        self.services.spawn_in_span(async move {
                            queue.finish(CALLBACK_DRAIN).await;
                        });
                    }
                    if let Some(stream) = &media.stream {
                        let stats = stream.stats();
                        if let Some(record) = self.core.leg_record(leg) {
                            let codec = stream.session().config().codec.encoding_name();
                            let facts = crate::capture::media::leg_facts(codec, &stats);
                            self.services
                                .capture
                                .event(&record.sid, EventKind::Media, facts);
                        }
                        tracing::debug!(
                            leg = leg.0,
                            srtp_auth_failures = stats.srtp_auth_failures,
                            srtp_replays = stats.srtp_replays,
                            ?stats,
                            "leg released"
                        );
                        if stats.srtp_auth_failures > 0 {
                            tracing::warn!(
                                call_sid = %self.core.sid(),
                                leg = leg.0,
                                srtp_auth_failures = stats.srtp_auth_failures,
                                "SRTP packets failed authentication and were dropped (a wrong or missing key?)"
                            );
                        }
                    }
                }
                Action::Enqueue { name } => self.enqueue(&name),
                Action::LeaveQueue { result } => {
                    self.services.queues.leave(self.core.sid(), result);
                }
                Action::LendMedia => self.lend_media(),
                Action::TellAgent { agent } => {
                    let gone = QueueMessage::MemberGone {
                        member: self.core.sid().to_owned(),
                    };
                    if self.services.registry.send(&agent, gone).is_err() {
                        tracing::debug!(%agent, "the agent's call has ended");
                    }
                }
                Action::Dequeue { leg, name, url } => self.dequeue(leg, &name, url.as_ref()),
                Action::ReturnMember(leg) => self.return_member(leg).await,
                Action::JoinRoom { name, options } => self.join_room(&name, &options),
                Action::LendToRoom { conference_sid } => self.lend_to_room(&conference_sid).await,
                Action::LeaveRoom {
                    conference_sid,
                    reason,
                } => self.leave_room(&conference_sid, reason),
                Action::TellRoom {
                    conference_sid,
                    input,
                } => self.services.rooms.tell(&conference_sid, input),
                Action::AskRoute { ask, query } => {
                    let services = Arc::clone(&self.services);
                    self.spawn_job(async move {
                        let result = ask_route(&services, &query).await;
                        Job::Done(Box::new(Input::Routed { ask, result }))
                    });
                }
                Action::Done => self.last_records.done = true,
            }
        }
    }

    /// Runs `job` beside the call's task, in its span (its log lines carry the CallSid).
    fn spawn_job(&mut self, job: impl Future<Output = Job> + Send + 'static) {
        self.jobs.spawn(job.in_current_span());
    }

    fn sip_command(&mut self, id: LegId, command: SipCommand) {
        let leg = self.leg(id);
        let Some(key) = leg.key else {
            return;
        };
        match command {
            SipCommand::Ring => self.sip.ring(key),
            SipCommand::Answer(sdp) => {
                leg.live = true;
                self.sip.answer(key, sdp);
            }
            SipCommand::Reject(status) => self.sip.reject(key, status),
            SipCommand::Hangup => self.sip.hangup(key),
            SipCommand::AcceptReoffer => self.sip.accept_reoffer(key),
            SipCommand::Hold(held) => self.sip.hold(key, held),
        }
    }

    fn media_command(&mut self, id: LegId, command: MediaCommand) {
        let now = Instant::now();
        let leg = self.leg(id);
        if let MediaCommand::Connect(config) = command {
            match leg.local.take() {
                Some(local) => {
                    leg.stream = Some(local.into_stream(config));
                    leg.live = true;
                }
                None => tracing::debug!(leg = id.0, "media connected twice"),
            }
            return;
        }
        let Some(stream) = leg.stream.as_mut() else {
            tracing::debug!(
                leg = id.0,
                ?command,
                "media command for a leg without media"
            );
            if let MediaCommand::SendDigits(_) = command {
                self.input(Input::Media(id, MediaEvent::DigitsSent));
            }
            return;
        };
        match command {
            MediaCommand::Connect(_) => {}
            MediaCommand::Renegotiate(config) => stream.answered(config),
            MediaCommand::Play(audio) => {
                leg.inband_digits = false;
                stream.play(audio);
            }
            MediaCommand::PlayStream(audio) => {
                leg.inband_digits = false;
                stream.play_stream(audio);
            }
            MediaCommand::Ringback(audio) => {
                leg.inband_digits = false;
                stream.play(audio);
                // The first frame goes out now, not at the next tick: a party answering at
                // once must not leave the caller without a word from us.
                stream.tick();
            }
            MediaCommand::Stop => {
                leg.inband_digits = false;
                stream.stop();
            }
            MediaCommand::SendDigits(digits) => match stream.send_digits(&digits) {
                Ok(()) => {}
                Err(SendDigitsError::NoTelephoneEvent) => {
                    match render_tones(&digits, DigitTiming::default(), AUDIO_SAMPLE_RATE) {
                        Ok(samples) => {
                            leg.inband_digits = true;
                            stream.play(Audio::new(samples));
                        }
                        Err(error) => {
                            tracing::warn!(%error, digits, "keys not sent");
                            self.input(Input::Media(id, MediaEvent::DigitsSent));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, digits, "keys not sent");
                    self.input(Input::Media(id, MediaEvent::DigitsSent));
                }
            },
            MediaCommand::SignalDigit(digit) => stream.session_mut().signal_digit(digit),
            MediaCommand::Echo(on) => stream.set_echo(on),
            MediaCommand::DetectSilence(timeout) => stream.detect_silence(timeout),
            MediaCommand::SetHeld(held) => {
                stream.session_mut().set_held(held, now);
                self.update_relay_hold();
            }
            MediaCommand::SetHolding(holding) => {
                stream.session_mut().set_holding(holding, now);
                self.update_relay_hold();
            }
        }
    }

    /// A problem leg `leg` met, as a notification of its call naming the document that was
    /// running.
    fn notification(&self, leg: LegId, code: u32, message: String) -> Option<NotificationRecord> {
        let record = self.core.leg_record(leg)?;
        let now = chrono::Utc::now();
        Some(NotificationRecord {
            sid: Sid::new("NO").to_string(),
            account_sid: record.account_sid.clone(),
            call_sid: record.sid.clone(),
            level: LogLevel::of_code(code),
            error_code: code,
            message_text: message,
            message_date: now,
            request_url: record.url.clone(),
            request_method: record.method,
            date_created: now,
            date_updated: now,
        })
    }

    fn route_involves(&self, leg: LegId) -> bool {
        match &self.route {
            Route::Apart => false,
            Route::Early { from, to } => *from == leg || *to == leg,
            Route::Transcode { caller, callee } | Route::Relay { caller, callee, .. } => {
                *caller == leg || *callee == leg
            }
        }
    }

    /// Connects the legs as the core asks: a relayed bridge is taken back first (its legs'
    /// streams going on from the relay's numbering); a new relayed bridge is lent to the
    /// engine, or transcoded when the engine refuses it.
    async fn set_route(&mut self, route: MediaRoute) {
        let previous = std::mem::replace(&mut self.route, Route::Apart);
        let bridged = match &previous {
            Route::Transcode { caller, callee } | Route::Relay { caller, callee, .. } => {
                Some((*caller, *callee))
            }
            Route::Apart | Route::Early { .. } => None,
        };
        if let Route::Relay {
            caller,
            callee,
            handle,
            ..
        } = previous
        {
            let returned = match handle.finish().await {
                Ok([caller_leg, callee_leg]) => {
                    let caller_back = match self.stream(caller) {
                        Some(stream) => take_back(stream, caller_leg),
                        None => Ok(()),
                    };
                    let callee_back = match self.stream(callee) {
                        Some(stream) => take_back(stream, callee_leg),
                        None => Ok(()),
                    };
                    caller_back.and(callee_back)
                }
                Err(error) => Err(std::io::Error::other(error)),
            };
            if let Err(error) = returned {
                self.input(Input::MediaLost {
                    leg: caller,
                    reason: format!("RTP socket lost: {error}"),
                });
            }
        }
        if let Some((caller, callee)) = bridged {
            self.bridge_ended(caller, callee);
        }
        self.route = match route {
            MediaRoute::Apart => Route::Apart,
            MediaRoute::Early { from, to } => Route::Early { from, to },
            MediaRoute::Bridge {
                caller,
                callee,
                relay: false,
                ..
            } => Route::Transcode { caller, callee },
            MediaRoute::Bridge {
                caller,
                callee,
                relay: true,
                watch_star,
            } => self.start_relay(caller, callee, watch_star),
        };
    }

    /// Logs what each leg of a bridge that ends received and sent.
    fn bridge_ended(&mut self, caller: LegId, callee: LegId) {
        let stats = |leg: &MediaLeg| leg.stream.as_ref().map(RtpStream::stats);
        if let (Some(caller), Some(callee)) = (
            stats(&self.legs[caller.0 as usize]),
            stats(&self.legs[callee.0 as usize]),
        ) {
            tracing::info!(
                call_sid = %self.core.sid(),
                caller_srtp_auth_failures = caller.srtp_auth_failures,
                caller_srtp_replays = caller.srtp_replays,
                callee_srtp_auth_failures = callee.srtp_auth_failures,
                callee_srtp_replays = callee.srtp_replays,
                ?caller,
                ?callee,
                "bridge ended"
            );
        }
    }

    fn start_relay(&mut self, caller: LegId, callee: LegId, watch_star: bool) -> Route {
        let (a, b) = pair(&mut self.legs, caller.0 as usize, callee.0 as usize);
        let (Some(caller_stream), Some(callee_stream)) = (a.stream.as_mut(), b.stream.as_mut())
        else {
            return Route::Transcode { caller, callee };
        };
        let Some(relays) = Relays::between(caller_stream, callee_stream) else {
            return Route::Transcode { caller, callee };
        };
        let star = watch_star
            .then(|| caller_stream.session().config().telephone_event)
            .flatten();
        let held = [
            caller_stream.session().is_held(),
            callee_stream.session().is_held(),
        ];
        let srtp = [
            caller_stream.session().config().srtp.is_some(),
            callee_stream.session().config().srtp.is_some(),
        ];
        match lend(
            &self.services.relay,
            caller_stream,
            callee_stream,
            relays,
            star,
        ) {
            Ok(handle) => {
                tracing::debug!(
                    call_sid = %self.core.sid(),
                    caller_srtp = srtp[0],
                    callee_srtp = srtp[1],
                    "bridge relayed"
                );
                Route::Relay {
                    caller,
                    callee,
                    handle,
                    held,
                }
            }
            Err(LendError::Refused) => {
                tracing::warn!("the relay engine has stopped: bridge transcoded instead");
                Route::Transcode { caller, callee }
            }
            Err(LendError::SocketLost(error)) => {
                self.input(Input::MediaLost {
                    leg: caller,
                    reason: format!("RTP socket lost: {error}"),
                });
                Route::Apart
            }
        }
    }

    /// Tells the relay engine of a change in either leg's hold.
    fn update_relay_hold(&mut self) {
        let Route::Relay {
            caller,
            callee,
            handle,
            held,
        } = &mut self.route
        else {
            return;
        };
        for (side, leg) in [(Side::Caller, *caller), (Side::Callee, *callee)] {
            let now_held = self.legs[leg.0 as usize]
                .stream
                .as_ref()
                .is_some_and(|s| s.session().is_held());
            if held[side as usize] != now_held {
                held[side as usize] = now_held;
                handle.set_held(side, now_held);
            }
        }
    }

    async fn on_relay_event(&mut self, event: Option<RelayEvent>) {
        let Route::Relay { caller, callee, .. } = self.route else {
            return;
        };
        match event {
            Some(RelayEvent::StarPressed) => {
                let star = Digit {
                    digit: '*',
                    source: DigitSource::Rfc4733,
                };
                self.input(Input::Media(caller, MediaEvent::Digit(star)));
            }
            Some(RelayEvent::CannotRelay) | None => {
                tracing::warn!("the relay engine could not take the legs: bridge transcoded");
                self.set_route(MediaRoute::Apart).await;
                self.route = Route::Transcode { caller, callee };
            }
        }
    }

    /// A relayed bridge: a leg whose far end has sent nothing for the media timeout.
    fn check_relay_idle(&mut self) {
        let Route::Relay {
            caller,
            callee,
            handle,
            ..
        } = &self.route
        else {
            return;
        };
        let now = Instant::now();
        let timeout = self.services.config.media_timeout;
        let mut silent = Vec::new();
        for (side, leg) in [(Side::Caller, *caller), (Side::Callee, *callee)] {
            if let Some(stream) = &self.legs[leg.0 as usize].stream {
                let idle = stream.session().idle_for(handle.last_rtp(side), now);
                if idle >= timeout {
                    silent.push((leg, idle));
                }
            }
        }
        for (leg, silent_for) in silent {
            self.input(Input::Media(leg, MediaEvent::Inactive { silent_for }));
        }
    }

    /// One 20 ms tick of every live leg's media, routed as the core asked; then their events
    /// go to the core.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut inputs = Vec::new();
        let (first, second, transcoded) = match self.route {
            Route::Transcode { caller, callee } => (Some(caller), Some(callee), true),
            Route::Early { from, to } => (Some(from), Some(to), false),
            Route::Apart => (None, None, false),
            Route::Relay { caller, callee, .. } => {
                self.tick_apart(now, &[caller, callee], &mut inputs);
                return self.after_tick(inputs);
            }
        };
        if let (Some(a), Some(b)) = (first, second) {
            let (leg_a, leg_b) = pair(&mut self.legs, a.0 as usize, b.0 as usize);
            if let (Some(stream_a), Some(stream_b)) = (leg_a.stream.as_mut(), leg_b.stream.as_mut())
            {
                // The first leg's frame goes to the second at once; the second's to the first
                // at the next tick.
                if stream_a.tick_at(now) {
                    inputs.push(played_out(a, &mut leg_a.inband_digits));
                }
                stream_b.feed(stream_a.received_frame());
                if stream_b.tick_at(now) {
                    inputs.push(played_out(b, &mut leg_b.inband_digits));
                }
                if transcoded {
                    stream_a.feed(stream_b.received_frame());
                }
            }
            self.tick_apart(now, &[a, b], &mut inputs);
        } else {
            self.tick_apart(now, &[], &mut inputs);
        }
        self.after_tick(inputs);
    }

    /// Ticks the live legs not in `skip`.
    fn tick_apart(&mut self, now: Instant, skip: &[LegId], inputs: &mut Vec<Input>) {
        for (index, leg) in self.legs.iter_mut().enumerate() {
            let id = LegId(index as u32);
            if !leg.live || skip.contains(&id) {
                continue;
            }
            if let Some(stream) = leg.stream.as_mut()
                && stream.tick_at(now)
            {
                inputs.push(played_out(id, &mut leg.inband_digits));
            }
        }
    }

    /// Speech recognition fed, media events collected (keys passed across a transcoded
    /// bridge), and everything handed to the core.
    fn after_tick(&mut self, mut inputs: Vec<Input>) {
        let mut relayed_keys = Vec::new();
        let transcoded = match self.route {
            Route::Transcode { caller, callee } => Some((caller, callee)),
            _ => None,
        };
        for (index, leg) in self.legs.iter_mut().enumerate() {
            let id = LegId(index as u32);
            let Some(stream) = leg.stream.as_mut() else {
                continue;
            };
            if let Some(recognition) = leg.recognition.as_mut() {
                recognition.push(stream.received_frame());
                if let Some(result) = recognition.poll_result() {
                    inputs.push(Input::Speech(id, result));
                }
            }
            while let Some(event) = stream.poll_event() {
                if let (MediaEvent::Digit(key), Some((caller, callee))) = (event, transcoded) {
                    let other = if id == caller { callee } else { caller };
                    relayed_keys.push((other, key.digit));
                }
                inputs.push(Input::Media(id, event));
            }
        }
        for (leg, digit) in relayed_keys {
            if let Some(stream) = self.stream(leg)
                && let Err(error) = stream.send_digits(&digit.to_string())
            {
                tracing::debug!(%error, digit = %digit, "key not relayed");
            }
        }
        for input in inputs {
            self.input(input);
        }
    }
}

/// What a leg that played out its audio tells the core.
fn played_out(leg: LegId, inband_digits: &mut bool) -> Input {
    if std::mem::take(inband_digits) {
        Input::Media(leg, MediaEvent::DigitsSent)
    } else {
        Input::PlayedOut(leg)
    }
}

/// Two different legs, mutably.
fn pair(legs: &mut [MediaLeg], a: usize, b: usize) -> (&mut MediaLeg, &mut MediaLeg) {
    if a < b {
        let (left, right) = legs.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = legs.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

/// The next datagram on any live leg's sockets, handed to its stream.
async fn receive_any(legs: &mut [MediaLeg], next: &mut usize) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        let count = legs.len();
        for offset in 0..count {
            let index = (*next + offset) % count;
            let leg = &mut legs[index];
            if !leg.live {
                continue;
            }
            if let Some(stream) = leg.stream.as_mut()
                && let Poll::Ready(received) = stream.poll_receive(cx)
            {
                *next = (index + 1) % count;
                return Poll::Ready(received);
            }
        }
        Poll::Pending
    })
    .await
}

/// The relay engine's next event about the relayed bridge; never resolves without one.
async fn relay_event(route: &mut Route) -> Option<RelayEvent> {
    match route {
        Route::Relay { handle, .. } => handle.event().await,
        _ => std::future::pending().await,
    }
}

/// The next REST update; never resolves once the channel is gone.
async fn recv_update(
    updates: &mut Option<mpsc::UnboundedReceiver<CallMessage>>,
) -> Option<CallMessage> {
    match updates {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never resolves without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks `--routing-webhook` which trunk carries a number (the trunk list included unless
/// `--routing-webhook-exclude-trunks`); the answer is logged when it fails.
pub(crate) async fn ask_route(services: &Services, query: &RouteQuery) -> Result<String, String> {
    let config = &services.config;
    let Some(url) = config.routing_webhook.as_ref() else {
        return Err("no routing webhook is configured".to_owned());
    };
    let trunks = (!config.routing_webhook_exclude_trunks).then_some(services.trunks.as_ref());
    let result = mapping::ask_routing_webhook(
        &services.webhooks,
        url.as_str(),
        config.signature_secret.as_deref(),
        query,
        trunks,
        config.fetch_timeout,
    )
    .await;
    if let Err(error) = &result {
        tracing::warn!(url = url.as_str(), %error, "the routing webhook failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Direction;

    #[tokio::test]
    async fn legs_left_live_by_a_driver_that_ends_early_are_written_as_failed() {
        let dir = std::env::temp_dir().join(format!("callml-driver-{}", crate::ids::Sid::new("")));
        std::fs::create_dir_all(&dir).unwrap();
        let (store, _) = Store::open(&dir, "test").unwrap();
        let mut live = CallRecord::new(
            "CA1",
            "AC1",
            "+1",
            "+2",
            Direction::Inbound,
            chrono::Utc::now(),
        );
        live.status = CallStatus::InProgress;
        let mut ended = live.clone();
        ended.sid = "CA2".into();
        ended.status = CallStatus::Completed;
        let mut records = LastRecords {
            store: store.clone(),
            records: HashMap::from([("CA1".into(), live), ("CA2".into(), ended)]),
            done: false,
        };
        records
            .fail_live()
            .expect("a live leg to write")
            .await
            .unwrap();
        let written = store.call("CA1").await.unwrap().unwrap();
        assert_eq!(written.status, CallStatus::Failed);
        assert_eq!(written.error_code, Some(ending::INTERNAL));
        assert_eq!(
            store.call("CA2").await.unwrap(),
            None,
            "ended legs are left alone"
        );
        assert!(records.fail_live().is_none(), "once");
        std::fs::remove_dir_all(dir).ok();
    }
}
