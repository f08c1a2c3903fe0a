//! The room engine: worker threads that run rooms (conferences). A call task lends a
//! participant's whole stream to a room ([`RoomLeg`], made by
//! [`RtpStream::into_room_leg`](super::stream::RtpStream::into_room_leg)); the room's worker
//! then drives its [`MediaSession`] — jitter buffer, codec and clock are the participant's
//! own — and every participant hears the [`Mixer`]'s mix of the others, until the owner takes
//! the leg back ([`RoomHandle::leave`]) and the stream goes on where the room left it.
//!
//! One worker per core (like [`super::relay_engine`]) owns many rooms and runs ONE 20 ms
//! tick for all of them, on absolute deadlines (`start + k × 20 ms`), never a wake-up per
//! room or per participant. At each tick, for every room:
//!
//! ```text
//! every participant: recvmmsg its RTP socket (non-blocking, all that waits) ─▶ session.handle_rtp
//!                    session.play_out(tick) ─▶ frame at the room's rate ─▶ mixer input (+ level
//!                    ─▶ speech detector ─▶ RoomEvent::Speaking)
//! prompts (to all, to one) ─▶ mixer;   mixer.mix()   ─▶ room recorder (the room's mix)
//! every participant: session.feed_at_mix_rate(its mix) ─▶ session.finish_tick(tick): encode,
//!                    send RTP (and RTCP when due), inactivity ─▶ RoomEvent::{Digit, Inactive}
//! ```
//!
//! RTP sockets are drained at the tick, not on readiness (a packet waits at most one tick in
//! the socket, as it would in a jitter buffer). RTCP sockets are lent too and registered with
//! the worker's epoll instance: a report wakes the worker between ticks and goes to its
//! session; the sessions send their own reports from the tick.
//!
//! The room mixes at 8 kHz while every participant is narrowband and at 16 kHz once one is
//! wideband (G.722, Opus): each session then exchanges 16 kHz frames
//! ([`MediaSession::set_mix_rate`]); the rate follows joins and leaves.
//!
//! A late tick does not drift: deadlines are absolute, so a tick that runs late is followed
//! by the next one on schedule. A worker that falls behind runs the missed ticks back to
//! back, up to [`CATCH_UP_TICKS`]; further behind, it skips the rest and moves every
//! session's RTP clock on by the ticks skipped ([`MediaSession::skip_frames`]), so that far
//! ends hear a gap rather than a stream running late from then on (counted and logged).
//!
//! The owner ([`RoomHandle`]) sends commands through a channel and the worker's waker;
//! the worker answers with [`RoomEvent`]s on the room's channel. The time of each
//! participant's last RTP packet is shared in an atomic ([`RoomHandle::last_rtp`]). Nothing
//! is allocated per frame or per packet in the worker (`tests/media_no_alloc.rs`): buffers
//! are made when participants join and prompts start.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::batch_recv::{BATCH, BatchReceiver, MAX_DATAGRAM};
use super::dtmf::render_tones;
use super::library::{AUDIO_SAMPLE_RATE, Audio};
pub use super::mixer::ParticipantId;
use super::mixer::{MixRate, MixRole, Mixer, NARROWBAND_FRAME, SpeechDetector, WIDEBAND_FRAME};
use super::record::Recorder;
use super::resample::FrameResampler;
use super::session::{MediaEvent, MediaSession, PTIME, SendDigitsError};
use super::stream::RtpStream;

/// The worker's own token; RTCP sockets are tokens `0..`.
const WAKER: Token = Token(usize::MAX);
/// Readiness events taken per epoll wait.
const EVENTS: usize = 256;
/// Missed ticks a worker runs back to back to catch up; further behind it skips ticks.
pub const CATCH_UP_TICKS: u32 = 3;

/// A participant's media as lent to a room, and as given back: its stream (sockets lent out
/// of it) and the sockets. Made by
/// [`RtpStream::into_room_leg`](super::stream::RtpStream::into_room_leg), turned back into
/// the stream by [`RtpStream::from_room_leg`](super::stream::RtpStream::from_room_leg).
#[derive(Debug)]
pub struct RoomLeg {
    stream: Box<RtpStream>,
    rtp: std::net::UdpSocket,
    rtcp: Option<std::net::UdpSocket>,
}

impl RoomLeg {
    pub(super) fn new(
        stream: Box<RtpStream>,
        rtp: std::net::UdpSocket,
        rtcp: Option<std::net::UdpSocket>,
    ) -> RoomLeg {
        RoomLeg { stream, rtp, rtcp }
    }

    pub(super) fn into_parts(
        self,
    ) -> (
        Box<RtpStream>,
        std::net::UdpSocket,
        Option<std::net::UdpSocket>,
    ) {
        (self.stream, self.rtp, self.rtcp)
    }

    /// The leg's media state (statistics, codec, where it sends).
    pub fn session(&self) -> &MediaSession {
        self.stream.session()
    }
}

/// How a participant takes part in a room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParticipantSettings {
    /// Heard by nobody (it still hears the room).
    pub muted: bool,
    /// Heard only by that participant (a coach, Twilio's `coach`); it hears the whole room.
    pub coaching: Option<ParticipantId>,
    /// The phone holds us (`sendonly`/`inactive`): nothing is sent to it, and its silence is
    /// not inactivity.
    pub far_end_holding: bool,
}

impl ParticipantSettings {
    fn role(&self) -> MixRole {
        MixRole {
            muted: self.muted,
            coaching: self.coaching,
            listening: !self.far_end_holding,
        }
    }
}

/// Who hears a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listeners {
    All,
    One(ParticipantId),
}

/// What a room's worker tells the room's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomEvent {
    /// A key pressed: RFC 4733 or in-band, as the participant's session reports it.
    Digit {
        participant: ParticipantId,
        digit: char,
    },
    /// A participant started or stopped speaking (an energy detector with a 500 ms hangover,
    /// [`SpeechDetector`]; Twilio's `speaker` event). Muted participants are not reported.
    Speaking {
        participant: ParticipantId,
        speaking: bool,
    },
    /// No RTP from the participant for its session's inactivity timeout (reported once until
    /// RTP resumes; never while the far end holds the call).
    Inactive {
        participant: ParticipantId,
        silent_for: Duration,
    },
    /// A [`RoomHandle::play`] finished, or was cut ([`RoomHandle::stop_prompts`], its one
    /// listener left).
    PromptDone { prompt: u64 },
    /// The digits of [`RoomHandle::send_digits`] have been sent.
    DigitsSent { participant: ParticipantId },
    /// The participant's sockets failed: it is no longer served (neither heard nor sent
    /// to); the owner takes the leg back with [`RoomHandle::leave`].
    SocketLost { participant: ParticipantId },
}

/// The engine's workers have stopped.
#[derive(Debug, Error)]
#[error("the room engine has stopped")]
pub struct EngineStopped;

/// A leg a room did not take, given back.
#[derive(Debug, Error)]
pub enum Refused {
    #[error("the room engine has stopped")]
    EngineStopped(RoomLeg),
    #[error("participant {0:?} is in the room already")]
    AlreadyJoined(ParticipantId, RoomLeg),
}

impl Refused {
    /// The leg, to go on with outside the room.
    pub fn into_leg(self) -> RoomLeg {
        match self {
            Refused::EngineStopped(leg) | Refused::AlreadyJoined(_, leg) => leg,
        }
    }
}

/// Why a leg could not be taken back.
#[derive(Debug, Error)]
pub enum LeaveError {
    #[error("participant {0:?} is not in the room")]
    NotInRoom(ParticipantId),
    #[error(transparent)]
    EngineStopped(#[from] EngineStopped),
}

/// The engine: its workers, each with its own epoll instance and tick; rooms are spread
/// among them.
pub struct RoomEngine {
    workers: Vec<WorkerHandle>,
    next_worker: AtomicUsize,
    next_room: AtomicU64,
    /// The instant the activity atomics count from.
    epoch: Instant,
}

impl std::fmt::Debug for RoomEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomEngine")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

struct WorkerHandle {
    commands: std_mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

enum Command {
    Open {
        room: u64,
        events: mpsc::UnboundedSender<RoomEvent>,
    },
    Join(Box<NewParticipant>),
    Update {
        room: u64,
        id: ParticipantId,
        settings: ParticipantSettings,
    },
    Leave {
        room: u64,
        id: ParticipantId,
        reply: oneshot::Sender<RoomLeg>,
    },
    /// Closes the room; its legs go back through `reply`, or are closed without one.
    Close {
        room: u64,
        reply: Option<oneshot::Sender<Vec<(ParticipantId, RoomLeg)>>>,
    },
    Play {
        room: u64,
        to: Listeners,
        audio: Audio,
        prompt: u64,
    },
    StopPrompts {
        room: u64,
    },
    SendDigits {
        room: u64,
        id: ParticipantId,
        digits: String,
    },
    Record {
        room: u64,
        recorder: Box<Recorder>,
    },
    StopRecording {
        room: u64,
        reply: oneshot::Sender<Option<Recorder>>,
    },
    Stop,
}

struct NewParticipant {
    room: u64,
    id: ParticipantId,
    leg: RoomLeg,
    settings: ParticipantSettings,
    activity: Arc<Activity>,
}

/// When a participant's last RTP packet arrived, in nanoseconds from the engine's epoch.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_rtp: AtomicU64,
}

impl Activity {
    fn store(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.last_rtp.store(nanos, Ordering::Relaxed);
    }

    fn load(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_rtp.load(Ordering::Relaxed))
    }
}

impl RoomEngine {
    /// Starts `workers` threads (at least one), each ticking every 20 ms.
    pub fn start(workers: usize) -> io::Result<RoomEngine> {
        let epoch = Instant::now();
        let workers = (0..workers.max(1))
            .map(Worker::spawn)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(RoomEngine {
            workers,
            next_worker: AtomicUsize::new(0),
            next_room: AtomicU64::new(0),
            epoch,
        })
    }

    /// A new, empty room on one of the workers; its events go to `events`.
    pub fn open(&self, events: mpsc::UnboundedSender<RoomEvent>) -> RoomHandle {
        let room = self.next_room.fetch_add(1, Ordering::Relaxed);
        let worker =
            &self.workers[self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len()];
        let handle = RoomHandle {
            room,
            commands: worker.commands.clone(),
            waker: Arc::clone(&worker.waker),
            epoch: self.epoch,
            members: Mutex::new(HashMap::new()),
            closed: false,
        };
        handle.command(Command::Open { room, events });
        handle
    }
}

impl Drop for RoomEngine {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.commands.send(Command::Stop);
            let _ = worker.waker.wake();
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The owner's side of a room. Dropped without [`close`](Self::close), it closes the room
/// and the legs still in it (their sockets are closed).
#[derive(Debug)]
pub struct RoomHandle {
    room: u64,
    commands: std_mpsc::Sender<Command>,
    waker: Arc<Waker>,
    epoch: Instant,
    /// The participants in the room, as the owner put them there.
    members: Mutex<HashMap<ParticipantId, Arc<Activity>>>,
    closed: bool,
}

impl RoomHandle {
    /// Puts `leg` in the room as participant `id`, from the worker's next turn: its session
    /// stops what it was playing or echoing and hears the room.
    pub fn join(
        &self,
        id: ParticipantId,
        leg: RoomLeg,
        settings: ParticipantSettings,
    ) -> Result<(), Refused> {
        let mut members = self.members();
        if members.contains_key(&id) {
            return Err(Refused::AlreadyJoined(id, leg));
        }
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            last_rtp: AtomicU64::new(0),
        });
        activity.store(leg.session().last_rtp());
        let joining = NewParticipant {
            room: self.room,
            id,
            leg,
            settings,
            activity: Arc::clone(&activity),
        };
        if let Err(refused) = self.commands.send(Command::Join(Box::new(joining))) {
            let Command::Join(joining) = refused.0 else {
                unreachable!("the command sent was a Join")
            };
            return Err(Refused::EngineStopped(joining.leg));
        }
        let _ = self.waker.wake();
        members.insert(id, activity);
        Ok(())
    }

    /// Changes how participant `id` takes part (mute, coaching, hold).
    pub fn update(&self, id: ParticipantId, settings: ParticipantSettings) {
        self.command(Command::Update {
            room: self.room,
            id,
            settings,
        });
    }

    /// Takes participant `id`'s leg out of the room; its stream goes on from where the room
    /// left it.
    pub async fn leave(&self, id: ParticipantId) -> Result<RoomLeg, LeaveError> {
        if self.members().remove(&id).is_none() {
            return Err(LeaveError::NotInRoom(id));
        }
        let (reply, leg) = oneshot::channel();
        self.command(Command::Leave {
            room: self.room,
            id,
            reply,
        });
        Ok(leg.await.map_err(|_| EngineStopped)?)
    }

    /// Closes the room and gives every leg back.
    pub async fn close(mut self) -> Vec<(ParticipantId, RoomLeg)> {
        self.closed = true;
        self.members().clear();
        let (reply, legs) = oneshot::channel();
        self.command(Command::Close {
            room: self.room,
            reply: Some(reply),
        });
        legs.await.unwrap_or_default()
    }

    /// Mixes `audio` (8 kHz) into what `to` hears (a beep, an announcement), from the next
    /// tick; [`RoomEvent::PromptDone`] with `prompt` follows when it ends. Prompts to the
    /// same listeners play at once, summed.
    pub fn play(&self, to: Listeners, audio: Audio, prompt: u64) {
        self.command(Command::Play {
            room: self.room,
            to,
            audio,
            prompt,
        });
    }

    /// Cuts every prompt playing (each reports [`RoomEvent::PromptDone`]).
    pub fn stop_prompts(&self) {
        self.command(Command::StopPrompts { room: self.room });
    }

    /// Sends `digits` to participant `id` as RFC 4733 events, as
    /// [`MediaSession::send_digits`] does ([`RoomEvent::DigitsSent`] follows); to a far end
    /// that did not negotiate `telephone-event`, as in-band tones only it hears.
    pub fn send_digits(&self, id: ParticipantId, digits: String) {
        self.command(Command::SendDigits {
            room: self.room,
            id,
            digits,
        });
    }

    /// Records the room's mix (everyone heard by all, and the prompts to all) from the next
    /// tick, into `recorder` as its inbound side (8 kHz; use
    /// [`RecordingChannels::Inbound`](super::record::RecordingChannels::Inbound) or `Mixed`).
    /// Replaces a recording already running, which is then finished unread.
    pub fn record(&self, recorder: Recorder) {
        self.command(Command::Record {
            room: self.room,
            recorder: Box::new(recorder),
        });
    }

    /// Stops recording and gives the recorder back (to [`Recorder::finish`]).
    pub async fn stop_recording(&self) -> Option<Recorder> {
        let (reply, recorder) = oneshot::channel();
        self.command(Command::StopRecording {
            room: self.room,
            reply,
        });
        recorder.await.ok().flatten()
    }

    /// When participant `id`'s last RTP packet arrived (for the owner's inactivity check, like
    /// [`BridgeHandle::last_rtp`](super::relay_engine::BridgeHandle::last_rtp)).
    pub fn last_rtp(&self, id: ParticipantId) -> Option<Instant> {
        self.members().get(&id).map(|activity| activity.load())
    }

    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, Arc<Activity>>> {
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for RoomHandle {
    fn drop(&mut self) {
        if !self.closed {
            self.command(Command::Close {
                room: self.room,
                reply: None,
            });
        }
    }
}

/// A participant inside a worker.
struct Member {
    id: ParticipantId,
    stream: Box<RtpStream>,
    rtp: UdpSocket,
    rtcp: Option<(UdpSocket, Token)>,
    settings: ParticipantSettings,
    activity: Arc<Activity>,
    speech: SpeechDetector,
    /// Its sockets failed: it is not served until the owner takes it back.
    lost: bool,
}

impl Member {
    fn session(&mut self) -> &mut MediaSession {
        self.stream.session_mut()
    }
}

/// A prompt playing in a room.
struct Prompt {
    to: Listeners,
    audio: Audio,
    position: usize,
    /// The owner's id; `None` for the worker's own (in-band digits), reported to nobody.
    id: Option<u64>,
    /// 8 kHz to a wideband room's 16 kHz.
    upsample: Option<FrameResampler>,
    narrow: [i16; NARROWBAND_FRAME],
    wide: Box<[i16; WIDEBAND_FRAME]>,
}

impl Prompt {
    fn new(to: Listeners, audio: Audio, id: Option<u64>, rate: MixRate) -> Prompt {
        let mut prompt = Prompt {
            to,
            audio,
            position: 0,
            id,
            upsample: None,
            narrow: [0; NARROWBAND_FRAME],
            wide: Box::new([0; WIDEBAND_FRAME]),
        };
        prompt.set_rate(rate);
        prompt
    }

    fn set_rate(&mut self, rate: MixRate) {
        self.upsample = FrameResampler::new(AUDIO_SAMPLE_RATE, rate.hz());
    }

    /// The next frame at the room's rate; `None` once the prompt is over.
    fn next_frame(&mut self) -> Option<&[i16]> {
        let samples = self.audio.samples();
        if self.position >= samples.len() {
            return None;
        }
        let end = (self.position + NARROWBAND_FRAME).min(samples.len());
        let taken = end - self.position;
        self.narrow[..taken].copy_from_slice(&samples[self.position..end]);
        self.narrow[taken..].fill(0);
        self.position = end;
        Some(match &mut self.upsample {
            Some(up) => {
                up.convert(&self.narrow, &mut self.wide[..]);
                &self.wide[..]
            }
            None => &self.narrow,
        })
    }
}

/// A room's recording of its mix, at 8 kHz.
struct RoomRecorder {
    recorder: Box<Recorder>,
    downsample: Option<FrameResampler>,
    frame: [i16; NARROWBAND_FRAME],
}

impl RoomRecorder {
    fn new(recorder: Box<Recorder>, rate: MixRate) -> RoomRecorder {
        RoomRecorder {
            recorder,
            downsample: FrameResampler::new(rate.hz(), AUDIO_SAMPLE_RATE),
            frame: [0; NARROWBAND_FRAME],
        }
    }

    fn push(&mut self, mix: &[i16]) {
        match &mut self.downsample {
            Some(down) => {
                down.convert(mix, &mut self.frame);
                self.recorder.push(&self.frame, &[]);
            }
            None => self.recorder.push(mix, &[]),
        }
    }
}

/// A room inside a worker.
struct Room {
    id: u64,
    events: mpsc::UnboundedSender<RoomEvent>,
    mixer: Mixer,
    /// In the mixer's order.
    members: Vec<Member>,
    prompts: Vec<Prompt>,
    recorder: Option<RoomRecorder>,
}

impl Room {
    fn event(&self, event: RoomEvent) {
        let _ = self.events.send(event);
    }

    fn index_of(&self, id: ParticipantId) -> Option<usize> {
        self.members.iter().position(|member| member.id == id)
    }

    /// Mixes at the rate its participants' codecs need.
    fn follow_codecs(&mut self) {
        let rate = MixRate::for_codecs(
            self.members
                .iter()
                .map(|member| member.stream.session().config().codec),
        );
        if rate == self.mixer.rate() {
            return;
        }
        self.mixer.set_rate(rate);
        for member in &mut self.members {
            member.session().set_mix_rate(rate);
        }
        for prompt in &mut self.prompts {
            prompt.set_rate(rate);
        }
        if let Some(recording) = &mut self.recorder {
            recording.downsample = FrameResampler::new(rate.hz(), AUDIO_SAMPLE_RATE);
        }
    }

    /// Ends the prompts `finished` says are over, reporting each.
    fn end_prompts(&mut self, finished: impl Fn(&Prompt) -> bool) {
        let mut index = 0;
        while index < self.prompts.len() {
            if finished(&self.prompts[index]) {
                let prompt = self.prompts.swap_remove(index);
                if let Some(prompt) = prompt.id {
                    self.event(RoomEvent::PromptDone { prompt });
                }
            } else {
                index += 1;
            }
        }
    }

    /// One 20 ms tick at `tick` (the scheduled instant).
    fn tick(&mut self, tick: Instant, batch: &mut BatchReceiver) {
        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            if member.lost {
                self.mixer.set_silent(index);
                continue;
            }
            if receive(member, batch).is_err() {
                member.lost = true;
                self.mixer.set_silent(index);
                let participant = member.id;
                self.event(RoomEvent::SocketLost { participant });
                continue;
            }
            let session = member.stream.session_mut();
            member.activity.store(session.last_rtp());
            let level = if session.play_out(tick) {
                self.mixer.set_input(index, session.received_at_mix_rate())
            } else {
                self.mixer.set_silent(index);
                0
            };
            let heard = if member.settings.muted { 0 } else { level };
            if let Some(speaking) = member.speech.push(heard) {
                let participant = member.id;
                self.event(RoomEvent::Speaking {
                    participant,
                    speaking,
                });
            }
        }

        let mut finished = false;
        for prompt in &mut self.prompts {
            let to = prompt.to;
            let Some(frame) = prompt.next_frame() else {
                finished = true;
                continue;
            };
            match to {
                Listeners::All => self.mixer.add_to_all(frame),
                Listeners::One(id) => {
                    if let Some(index) = self.members.iter().position(|member| member.id == id) {
                        self.mixer.add_private(index, frame);
                    }
                }
            }
        }
        if finished {
            self.end_prompts(|prompt| prompt.position >= prompt.audio.len());
        }

        self.mixer.mix();
        if let Some(recording) = &mut self.recorder {
            recording.push(self.mixer.room_mix());
        }

        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            if member.lost {
                continue;
            }
            let session = member.stream.session_mut();
            if let Some(frame) = self.mixer.output(index) {
                session.feed_at_mix_rate(frame);
            }
            session.finish_tick(tick);
            send(member);
            while let Some(event) = member.session().poll_event() {
                let participant = member.id;
                let event = match event {
                    MediaEvent::Digit(digit) => RoomEvent::Digit {
                        participant,
                        digit: digit.digit,
                    },
                    MediaEvent::Inactive { silent_for } => RoomEvent::Inactive {
                        participant,
                        silent_for,
                    },
                    MediaEvent::DigitsSent => RoomEvent::DigitsSent { participant },
                    MediaEvent::SilenceTimeout | MediaEvent::RemoteLatched { .. } => continue,
                };
                let _ = self.events.send(event);
            }
        }
    }
}

/// Hands every datagram waiting on `member`'s RTP socket to its session; an error when the
/// socket failed.
fn receive(member: &mut Member, batch: &mut BatchReceiver) -> io::Result<()> {
    loop {
        let count = match batch.receive(&member.rtp) {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // An ICMP error a previous send raised, reported once: not the socket's end.
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => return Ok(()),
            Err(error) => return Err(error),
        };
        let arrival = Instant::now();
        let session = member.stream.session_mut();
        for index in 0..count {
            if let Some((datagram, from)) = batch.datagram_mut(index) {
                session.handle_rtp(datagram, from, arrival);
            }
        }
        if count < BATCH {
            return Ok(());
        }
    }
}

/// Sends what `member`'s session queued: RTP on its RTP socket, RTCP on its RTCP socket.
fn send(member: &mut Member) {
    let session = member.stream.session_mut();
    let mut failed = 0;
    while let Some(transmit) = session.poll_transmit() {
        if transmit.destination.ip().is_unspecified() {
            continue;
        }
        let socket = match (&member.rtcp, transmit.rtcp) {
            (_, false) => &member.rtp,
            (Some((rtcp, _)), true) => rtcp,
            (None, true) => continue,
        };
        if socket
            .send_to(transmit.payload, transmit.destination)
            .is_err()
        {
            failed += 1;
        }
    }
    for _ in 0..failed {
        session.send_failed();
    }
}

/// One worker thread's state.
struct Worker {
    poll: Poll,
    commands: std_mpsc::Receiver<Command>,
    rooms: Vec<Room>,
    /// Each RTCP token's room and participant.
    rtcp_owners: Vec<Option<(u64, ParticipantId)>>,
    free_tokens: Vec<usize>,
    batch: BatchReceiver,
    rtcp_buffer: Box<[u8; MAX_DATAGRAM]>,
    /// Ticks skipped because the worker fell too far behind.
    skipped_ticks: u64,
}

impl Worker {
    fn spawn(index: usize) -> io::Result<WorkerHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, receiver) = std_mpsc::channel();
        let mut worker = Worker {
            poll,
            commands: receiver,
            rooms: Vec::new(),
            rtcp_owners: Vec::new(),
            free_tokens: Vec::new(),
            batch: BatchReceiver::default(),
            rtcp_buffer: Box::new([0; MAX_DATAGRAM]),
            skipped_ticks: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("rtp-room-{index}"))
            .spawn(move || {
                if let Err(error) = worker.run() {
                    tracing::error!(%error, "room worker stopped");
                }
            })?;
        Ok(WorkerHandle {
            commands,
            waker,
            thread: Some(thread),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = Instant::now() + PTIME;
        loop {
            // A worker without rooms sleeps until a command comes: no ticks while idle.
            let idle = self.rooms.is_empty();
            let timeout = (!idle).then(|| next_tick.saturating_duration_since(Instant::now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        if !self.take_commands() {
                            return Ok(());
                        }
                    }
                    Token(token) => self.receive_rtcp(token),
                }
            }
            let now = Instant::now();
            if idle {
                next_tick = now + PTIME;
                continue;
            }
            if now < next_tick {
                continue;
            }
            let behind = (now.duration_since(next_tick).as_nanos() / PTIME.as_nanos()) as u32;
            if behind > CATCH_UP_TICKS {
                let skipped = behind - CATCH_UP_TICKS;
                next_tick += PTIME * skipped;
                self.skip_ticks(skipped);
            }
            for room in &mut self.rooms {
                room.tick(next_tick, &mut self.batch);
            }
            next_tick += PTIME;
        }
    }

    /// Moves every session's clock past `ticks` ticks that will not run.
    fn skip_ticks(&mut self, ticks: u32) {
        self.skipped_ticks += u64::from(ticks);
        tracing::warn!(
            ticks,
            total = self.skipped_ticks,
            "room worker fell behind: ticks skipped"
        );
        for room in &mut self.rooms {
            for member in &mut room.members {
                member.session().skip_frames(ticks);
            }
        }
    }

    fn room(&mut self, id: u64) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == id)
    }

    /// Applies what the owners asked for; false on [`Command::Stop`].
    fn take_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Open { room, events } => self.rooms.push(Room {
                    id: room,
                    events,
                    mixer: Mixer::new(MixRate::Narrowband),
                    members: Vec::new(),
                    prompts: Vec::new(),
                    recorder: None,
                }),
                Command::Join(joining) => self.join(*joining),
                Command::Update { room, id, settings } => {
                    if let Some(room) = self.room(room)
                        && let Some(index) = room.index_of(id)
                    {
                        room.mixer.set_role(index, settings.role());
                        let member = &mut room.members[index];
                        let session = member.stream.session_mut();
                        if settings.far_end_holding != session.is_held() {
                            session.set_held(settings.far_end_holding, Instant::now());
                        }
                        member.settings = settings;
                    }
                }
                Command::Leave { room, id, reply } => {
                    if let Some(leg) = self.leave(room, id) {
                        let _ = reply.send(leg);
                    }
                }
                Command::Close { room, reply } => {
                    let legs = self.close(room);
                    if let Some(reply) = reply {
                        let _ = reply.send(legs);
                    }
                }
                Command::Play {
                    room,
                    to,
                    audio,
                    prompt,
                } => {
                    if let Some(room) = self.room(room) {
                        let absent =
                            matches!(to, Listeners::One(id) if room.index_of(id).is_none());
                        if absent {
                            room.event(RoomEvent::PromptDone { prompt });
                        } else {
                            let rate = room.mixer.rate();
                            room.prompts
                                .push(Prompt::new(to, audio, Some(prompt), rate));
                        }
                    }
                }
                Command::StopPrompts { room } => {
                    if let Some(room) = self.room(room) {
                        room.end_prompts(|_| true);
                    }
                }
                Command::SendDigits { room, id, digits } => {
                    if let Some(room) = self.room(room) {
                        send_digits(room, id, &digits);
                    }
                }
                Command::Record { room, recorder } => {
                    if let Some(room) = self.room(room) {
                        room.recorder = Some(RoomRecorder::new(recorder, room.mixer.rate()));
                    }
                }
                Command::StopRecording { room, reply } => {
                    let recorder = self
                        .room(room)
                        .and_then(|room| room.recorder.take())
                        .map(|recording| *recording.recorder);
                    let _ = reply.send(recorder);
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn join(&mut self, joining: NewParticipant) {
        let NewParticipant {
            room,
            id,
            leg,
            settings,
            activity,
        } = joining;
        let token = self.free_tokens.pop().unwrap_or_else(|| {
            self.rtcp_owners.push(None);
            self.rtcp_owners.len() - 1
        });
        let RoomLeg {
            mut stream,
            rtp,
            rtcp,
        } = leg;
        let mut lost = false;
        let rtcp = rtcp.map(|socket| {
            let mut socket = UdpSocket::from_std(socket);
            if let Err(error) =
                self.poll
                    .registry()
                    .register(&mut socket, Token(token), Interest::READABLE)
            {
                tracing::warn!(%error, "a room participant's RTCP socket cannot be watched");
                lost = true;
            }
            (socket, Token(token))
        });
        if rtcp.is_some() && !lost {
            self.rtcp_owners[token] = Some((room, id));
        } else {
            self.free_tokens.push(token);
        }
        let Some(room) = self.rooms.iter_mut().find(|candidate| candidate.id == room) else {
            return;
        };
        let now = Instant::now();
        let session = stream.session_mut();
        session.stop();
        session.set_echo(false);
        if settings.far_end_holding != session.is_held() {
            session.set_held(settings.far_end_holding, now);
        }
        session.set_mix_rate(room.mixer.rate());
        room.mixer.add(id, settings.role());
        room.members.push(Member {
            id,
            stream,
            rtp: UdpSocket::from_std(rtp),
            rtcp,
            settings,
            activity,
            speech: SpeechDetector::default(),
            lost,
        });
        if lost {
            room.event(RoomEvent::SocketLost { participant: id });
        }
        room.follow_codecs();
    }

    /// Takes participant `id` out of `room`: its leg, back at 8 kHz.
    fn leave(&mut self, room: u64, id: ParticipantId) -> Option<RoomLeg> {
        let slot = self
            .rooms
            .iter()
            .position(|candidate| candidate.id == room)?;
        let index = self.rooms[slot].index_of(id)?;
        let room = &mut self.rooms[slot];
        room.mixer.remove(index);
        let member = room.members.swap_remove(index);
        room.end_prompts(|prompt| prompt.to == Listeners::One(id));
        room.follow_codecs();
        Some(self.give_back(member))
    }

    fn close(&mut self, room: u64) -> Vec<(ParticipantId, RoomLeg)> {
        let Some(slot) = self.rooms.iter().position(|candidate| candidate.id == room) else {
            return Vec::new();
        };
        let room = self.rooms.swap_remove(slot);
        room.members
            .into_iter()
            .map(|member| (member.id, self.give_back(member)))
            .collect()
    }

    /// A member's leg as it leaves the worker: RTCP no longer watched, the session at 8 kHz.
    fn give_back(&mut self, mut member: Member) -> RoomLeg {
        if let Some((socket, Token(token))) = &mut member.rtcp {
            if self.rtcp_owners[*token].take().is_some() {
                self.free_tokens.push(*token);
            }
            let _ = self.poll.registry().deregister(socket);
        }
        member.session().set_mix_rate(MixRate::Narrowband);
        RoomLeg {
            stream: member.stream,
            rtp: member.rtp.into(),
            rtcp: member.rtcp.map(|(socket, _)| socket.into()),
        }
    }

    /// Hands every RTCP datagram waiting on socket `token` to its participant's session.
    fn receive_rtcp(&mut self, token: usize) {
        let Some(Some((room, id))) = self.rtcp_owners.get(token).copied() else {
            return;
        };
        let Some(room) = self.rooms.iter_mut().find(|candidate| candidate.id == room) else {
            return;
        };
        let Some(member) = room.members.iter_mut().find(|member| member.id == id) else {
            return;
        };
        let Some((socket, _)) = &member.rtcp else {
            return;
        };
        loop {
            match socket.recv_from(&mut self.rtcp_buffer[..]) {
                Ok((len, from)) => {
                    member.stream.session_mut().handle_rtcp(
                        &mut self.rtcp_buffer[..len],
                        from,
                        Instant::now(),
                    );
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // Drained (WouldBlock), or an error reported once.
                Err(_) => return,
            }
        }
    }
}

/// Sends `digits` to participant `id` of `room`: RFC 4733 events, or in-band tones only it
/// hears when its far end takes no events.
fn send_digits(room: &mut Room, id: ParticipantId, digits: &str) {
    let Some(index) = room.index_of(id) else {
        return;
    };
    let member = &mut room.members[index];
    let timing = member.stream.session().config().digit_timing;
    match member.session().send_digits(digits) {
        Ok(()) => {}
        Err(SendDigitsError::NoTelephoneEvent) => {
            match render_tones(digits, timing, AUDIO_SAMPLE_RATE) {
                Ok(tones) => {
                    let rate = room.mixer.rate();
                    let tones = Prompt::new(Listeners::One(id), Audio::new(tones), None, rate);
                    room.prompts.push(tones);
                }
                Err(error) => tracing::warn!(%error, "digits not sent to a room participant"),
            }
        }
        Err(error) => tracing::warn!(%error, "digits not sent to a room participant"),
    }
}

#[cfg(test)]
#[path = "room_engine_tests.rs"]
mod tests;
