//! The relay engine: a few worker threads that forward RTP between the two legs of every
//! same-codec bridge, so that a relayed packet never wakes a call task.
//!
//! A call task that bridges two legs with one codec lends the engine both RTP sockets with
//! what receiving and rewriting need ([`RelayedLeg`]: payload types, the symmetric-RTP latch,
//! RFC 3550 reception statistics, the leg's SRTP contexts; [`RtpRelay`]: SSRC, sequence number
//! and timestamp rewriting, RFC 3550 §7). The worker registers the sockets with its own epoll
//! instance (through mio) and, for every datagram, checks it (an SRTP leg's packet is
//! authenticated and decrypted in the receive buffer with that leg's keys; one that fails is
//! dropped and counted), rewrites it into the other leg's stream (protected in the send buffer
//! with the other leg's keys when it uses SRTP) and sends it: one send per packet, one receive
//! per socket wake-up for all that waits there (up to [`BATCH`] datagrams a call,
//! [`super::batch_recv`]), and nothing allocated. After a wake-up that left nothing unfinished
//! the worker pauses [`COALESCE`] (0.5 ms) so that the next one finds packets of many bridges
//! waiting: fewer wake-ups, for the worker and for the far ends it sends to, at the cost of at
//! most that much delay (measured in `benches/bridge_load.sh`: about 10 % less CPU per call at
//! 1,000 calls, and far fewer late packets). A socket relays at most [`BATCHES_PER_TURN`]
//! batches per turn, the rest waiting for the next, so that a flooded leg cannot starve the
//! other bridges. The call task keeps its signalling, timers and RTCP (SRTCP included), and
//! hears from the engine only when something happens that it acts on ([`RelayEvent`]); when
//! the bridge ends it takes everything back ([`BridgeHandle::finish`]) and the legs' own
//! streams go on where the relay left them, SRTP rollover counters and replay windows too.
//!
//! Shared state is per bridge and lock-free: the time of each leg's last packet (for the call
//! task's media inactivity check) in atomics. Commands (add, hold, remove) go through a
//! channel and the worker's waker.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::batch_recv::{BATCH, BatchReceiver, MAX_DATAGRAM};
use super::relay::RtpRelay;
use super::rtp::{RtpPacket, TelephoneEvent};
use super::session::RelayedLeg;

/// The worker's own token; bridge `n`'s legs are tokens `2n` and `2n + 1`.
const WAKER: Token = Token(usize::MAX);
/// Readiness events taken per epoll wait.
const EVENTS: usize = 1024;
/// Batches ([`BATCH`] datagrams each) one socket may relay per turn of the worker.
const BATCHES_PER_TURN: usize = 4;
/// How long a worker pauses after a wake-up that did not fill its event list, so that the
/// next wake-up finds more packets waiting (fewer wake-ups per packet under load; at most this
/// much added delay).
const COALESCE: Duration = Duration::from_micros(500);
/// RFC 4733 §3.2: event code 10 is `*`.
const STAR_EVENT: u8 = 10;

/// One leg of a relayed bridge as lent to the engine, and as given back.
#[derive(Debug)]
pub struct RelayLeg {
    pub socket: std::net::UdpSocket,
    pub receiving: RelayedLeg,
    /// Rewrites the other leg's packets into this leg's stream.
    pub sending: RtpRelay,
    /// The far end holds this leg: nothing is sent to it.
    pub held: bool,
}

/// The two legs of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Caller = 0,
    Callee = 1,
}

/// What a relaying worker tells the call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// The caller pressed `*` (an RFC 4733 event, watched with `hangupOnStar`); it was not
    /// passed on, and nothing more is relayed.
    StarPressed,
    /// The worker could not watch a leg's socket: nothing is relayed; take the legs back
    /// ([`BridgeHandle::finish`]) and bridge them some other way.
    CannotRelay,
}

/// The engine's workers have stopped: a bridge's legs cannot be given back.
#[derive(Debug, Error)]
#[error("the RTP relay engine has stopped")]
pub struct EngineStopped;

/// Legs the engine could not take (its workers have stopped), given back.
#[derive(Debug, Error)]
#[error("the RTP relay engine has stopped")]
pub struct Refused(pub Box<[RelayLeg; 2]>);

/// The engine: its workers, each with its own epoll instance; bridges are spread among them.
pub struct RelayEngine {
    workers: Vec<WorkerHandle>,
    next_worker: AtomicUsize,
    next_bridge: AtomicU64,
    /// The instant the atomics' times count from.
    epoch: Instant,
}

impl std::fmt::Debug for RelayEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayEngine")
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
    Add(Box<NewBridge>),
    SetHeld {
        id: u64,
        side: Side,
        held: bool,
    },
    /// Stops relaying; the legs go back through `reply`, or are closed without one (the
    /// call task is gone).
    Remove {
        id: u64,
        reply: Option<oneshot::Sender<[RelayLeg; 2]>>,
    },
    Stop,
}

struct NewBridge {
    id: u64,
    legs: [RelayLeg; 2],
    star: Option<u8>,
    activity: Arc<Activity>,
    events: mpsc::UnboundedSender<RelayEvent>,
}

/// When each leg's last packet arrived, in nanoseconds from the engine's epoch.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_rtp: [AtomicU64; 2],
}

impl Activity {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

impl RelayEngine {
    /// Starts `workers` threads (at least one).
    pub fn start(workers: usize) -> io::Result<RelayEngine> {
        let epoch = Instant::now();
        let workers = (0..workers.max(1))
            .map(Worker::spawn)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(RelayEngine {
            workers,
            next_worker: AtomicUsize::new(0),
            next_bridge: AtomicU64::new(0),
            epoch,
        })
    }

    /// Relays between the `caller` and `callee` legs until [`BridgeHandle::finish`]; with
    /// `star` (the caller's telephone-event payload type, for `hangupOnStar`) a `*` from the
    /// caller is reported instead of relayed.
    pub fn relay(
        &self,
        caller: RelayLeg,
        callee: RelayLeg,
        star: Option<u8>,
    ) -> Result<BridgeHandle, Refused> {
        let id = self.next_bridge.fetch_add(1, Ordering::Relaxed);
        let worker =
            &self.workers[self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len()];
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            last_rtp: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        for (side, leg) in [&caller, &callee].into_iter().enumerate() {
            activity.last_rtp[side]
                .store(activity.nanos(leg.receiving.last_rtp()), Ordering::Relaxed);
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let bridge = NewBridge {
            id,
            legs: [caller, callee],
            star,
            activity: Arc::clone(&activity),
            events,
        };
        if let Err(refused) = worker.commands.send(Command::Add(Box::new(bridge))) {
            let Command::Add(bridge) = refused.0 else {
                unreachable!("the command sent was an Add")
            };
            return Err(Refused(Box::new(bridge.legs)));
        }
        let _ = worker.waker.wake();
        crate::metrics::METRICS
            .relayed_bridges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(BridgeHandle {
            id,
            commands: worker.commands.clone(),
            waker: Arc::clone(&worker.waker),
            activity,
            events: receiver,
            finished: false,
        })
    }
}

impl Drop for RelayEngine {
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

/// The call task's side of a relayed bridge. Dropped without [`finish`](Self::finish) (the
/// call task failed), it stops the relay and the worker closes the legs' sockets.
#[derive(Debug)]
pub struct BridgeHandle {
    id: u64,
    commands: std_mpsc::Sender<Command>,
    waker: Arc<Waker>,
    activity: Arc<Activity>,
    events: mpsc::UnboundedReceiver<RelayEvent>,
    finished: bool,
}

impl BridgeHandle {
    /// The next thing the worker has to say; `None` once the engine has stopped.
    pub async fn event(&mut self) -> Option<RelayEvent> {
        self.events.recv().await
    }

    /// The far end on `side` put its leg on hold (nothing sent to it) or took it off.
    pub fn set_held(&self, side: Side, held: bool) {
        self.command(Command::SetHeld {
            id: self.id,
            side,
            held,
        });
    }

    /// When the last packet from `side` arrived.
    pub fn last_rtp(&self, side: Side) -> Instant {
        let nanos = self.activity.last_rtp[side as usize].load(Ordering::Relaxed);
        self.activity.epoch + Duration::from_nanos(nanos)
    }

    /// Stops relaying and gives both legs back: `[caller, callee]`.
    pub async fn finish(mut self) -> Result<[RelayLeg; 2], EngineStopped> {
        let (reply, legs) = oneshot::channel();
        self.command(Command::Remove {
            id: self.id,
            reply: Some(reply),
        });
        self.finished = true;
        legs.await.map_err(|_| EngineStopped)
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for BridgeHandle {
    fn drop(&mut self) {
        crate::metrics::METRICS
            .relayed_bridges
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if !self.finished {
            self.command(Command::Remove {
                id: self.id,
                reply: None,
            });
        }
    }
}

/// A relayed bridge inside a worker.
struct Bridge {
    legs: [WorkerLeg; 2],
    star: Option<u8>,
    activity: Arc<Activity>,
    events: mpsc::UnboundedSender<RelayEvent>,
    /// The caller pressed a watched `*`, or the legs could not be watched: nothing more is
    /// relayed.
    stopped: bool,
    /// Both sockets are registered with the worker's epoll instance.
    registered: bool,
}

struct WorkerLeg {
    socket: UdpSocket,
    receiving: RelayedLeg,
    sending: RtpRelay,
    held: bool,
}

/// One worker thread's state.
struct Worker {
    poll: Poll,
    commands: std_mpsc::Receiver<Command>,
    bridges: Vec<Option<Bridge>>,
    free: Vec<usize>,
    slots: HashMap<u64, usize>,
    batch: BatchReceiver,
    out: Box<[u8; MAX_DATAGRAM]>,
    /// (slot, side) of sockets left unfinished, served first at the next turn.
    deferred: Vec<(usize, usize)>,
}

impl Worker {
    fn spawn(index: usize) -> io::Result<WorkerHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, receiver) = std_mpsc::channel();
        let mut worker = Worker {
            poll,
            commands: receiver,
            bridges: Vec::new(),
            free: Vec::new(),
            slots: HashMap::new(),
            batch: BatchReceiver::default(),
            out: Box::new([0; MAX_DATAGRAM]),
            deferred: Vec::with_capacity(EVENTS),
        };
        let thread = std::thread::Builder::new()
            .name(format!("rtp-relay-{index}"))
            .spawn(move || {
                if let Err(error) = worker.run() {
                    tracing::error!(%error, "RTP relay worker stopped");
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
        loop {
            // Sockets left unfinished last turn are served again without waiting.
            let timeout = (!self.deferred.is_empty()).then_some(Duration::ZERO);
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let now = Instant::now();
            let carried = self.deferred.len();
            for index in 0..carried {
                let (slot, side) = self.deferred[index];
                self.forward_or_defer(slot, side, now);
            }
            self.deferred.drain(..carried);
            let mut ready = 0;
            for event in events.iter() {
                ready += 1;
                match event.token() {
                    WAKER => {
                        if !self.take_commands(now) {
                            return Ok(());
                        }
                    }
                    Token(token) => self.forward_or_defer(token / 2, token % 2, now),
                }
            }
            if ready < EVENTS && self.deferred.is_empty() {
                std::thread::sleep(COALESCE);
            }
        }
    }

    /// Applies what the call tasks asked for; false on [`Command::Stop`].
    fn take_commands(&mut self, now: Instant) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Add(bridge) => self.add(*bridge, now),
                Command::SetHeld { id, side, held } => {
                    if let Some(bridge) = self
                        .slots
                        .get(&id)
                        .and_then(|&slot| self.bridges[slot].as_mut())
                    {
                        bridge.legs[side as usize].held = held;
                    }
                }
                Command::Remove { id, reply } => {
                    if let (Some(legs), Some(reply)) = (self.remove(id), reply) {
                        let _ = reply.send(legs);
                    }
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn add(&mut self, bridge: NewBridge, now: Instant) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.bridges.push(None);
            self.bridges.len() - 1
        });
        let NewBridge {
            id,
            legs: [caller, callee],
            star,
            activity,
            events,
        } = bridge;
        let mut legs = [WorkerLeg::from(caller), WorkerLeg::from(callee)];
        let mut registered = [false; 2];
        for (side, leg) in legs.iter_mut().enumerate() {
            match self.poll.registry().register(
                &mut leg.socket,
                Token(slot * 2 + side),
                Interest::READABLE,
            ) {
                Ok(()) => registered[side] = true,
                Err(error) => tracing::warn!(%error, "RTP socket not registered for relaying"),
            }
        }
        let relaying = registered == [true, true];
        if !relaying {
            // The legs stay here, unwatched, until the call task takes them back.
            for (leg, registered) in legs.iter_mut().zip(registered) {
                if registered {
                    let _ = self.poll.registry().deregister(&mut leg.socket);
                }
            }
            let _ = events.send(RelayEvent::CannotRelay);
        }
        self.bridges[slot] = Some(Bridge {
            legs,
            star,
            activity,
            events,
            stopped: !relaying,
            registered: relaying,
        });
        self.slots.insert(id, slot);
        if relaying {
            // Whatever arrived during the hand-over.
            self.forward_or_defer(slot, 0, now);
            self.forward_or_defer(slot, 1, now);
        }
    }

    fn remove(&mut self, id: u64) -> Option<[RelayLeg; 2]> {
        let slot = self.slots.remove(&id)?;
        let bridge = self.bridges[slot].take()?;
        self.free.push(slot);
        let registered = bridge.registered;
        Some(bridge.legs.map(|mut leg| {
            if registered && let Err(error) = self.poll.registry().deregister(&mut leg.socket) {
                tracing::warn!(%error, "RTP socket not deregistered");
            }
            RelayLeg {
                socket: leg.socket.into(),
                receiving: leg.receiving,
                sending: leg.sending,
                held: leg.held,
            }
        }))
    }

    /// [`forward`](Self::forward), remembering a socket it had to leave unfinished.
    fn forward_or_defer(&mut self, slot: usize, side: usize, now: Instant) {
        if !self.forward(slot, side, now) {
            self.deferred.push((slot, side));
        }
    }

    /// Relays what waits on leg `side` of the bridge in `slot` onto its other leg, up to
    /// [`BATCHES_PER_TURN`] batches (so that a flooded socket cannot starve the others);
    /// false when it stopped there with more possibly waiting.
    fn forward(&mut self, slot: usize, side: usize, now: Instant) -> bool {
        let Some(Some(bridge)) = self.bridges.get_mut(slot) else {
            return true;
        };
        let [caller, callee] = &mut bridge.legs;
        let (from, to) = match side {
            0 => (caller, callee),
            _ => (callee, caller),
        };
        for _ in 0..BATCHES_PER_TURN {
            let count = match self.batch.receive(&from.socket) {
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // Empty (WouldBlock), or an error the socket reports once: the next
                // datagram raises a new event.
                Err(_) => return true,
            };
            for index in 0..count {
                let Some((datagram, source)) = self.batch.datagram_mut(index) else {
                    continue;
                };
                let Some(packet) = from.receiving.receive(datagram, source, now) else {
                    continue;
                };
                bridge.activity.last_rtp[side].store(bridge.activity.nanos(now), Ordering::Relaxed);
                if bridge.stopped {
                    continue;
                }
                if side == Side::Caller as usize && is_star(&packet, bridge.star) {
                    bridge.stopped = true;
                    let _ = bridge.events.send(RelayEvent::StarPressed);
                    continue;
                }
                if !to.held {
                    send(&packet, to, &mut self.out[..]);
                }
            }
            if count < BATCH {
                // The socket was empty when the batch was taken: drained.
                return true;
            }
        }
        false
    }
}

/// Rewrites `packet` into `to`'s stream, protects it with `to`'s SRTP keys when it has
/// them, and sends it there.
fn send(packet: &RtpPacket<'_>, to: &mut WorkerLeg, out: &mut [u8]) {
    let destination: SocketAddr = to.receiving.destination();
    if destination.ip().is_unspecified() {
        return;
    }
    let len = match to.sending.relay(packet, out) {
        Ok(len) => len,
        Err(error) => return tracing::trace!(%error, "packet not relayed"),
    };
    let Some(len) = to.receiving.protect(out, len) else {
        return;
    };
    match to.socket.send_to(&out[..len], destination) {
        Ok(_) => to.receiving.sent(packet.payload().len()),
        Err(_) => to.receiving.send_failed(),
    }
}

impl From<RelayLeg> for WorkerLeg {
    fn from(leg: RelayLeg) -> WorkerLeg {
        WorkerLeg {
            socket: UdpSocket::from_std(leg.socket),
            receiving: leg.receiving,
            sending: leg.sending,
            held: leg.held,
        }
    }
}

/// Whether a packet is the `*` key (RFC 4733 event 10) under the watched payload type.
fn is_star(packet: &RtpPacket<'_>, telephone_event: Option<u8>) -> bool {
    telephone_event.is_some_and(|watched| packet.payload_type() == watched)
        && TelephoneEvent::parse(packet.payload()).is_ok_and(|event| event.event == STAR_EVENT)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as StdSocket;
    use std::time::SystemTime;

    use super::*;
    use crate::media::codec::Codec;
    use crate::media::rtp::RtpSender;
    use crate::media::session::{MediaSession, SessionConfig, StreamStats};
    use crate::media::srtp::{MasterKey, SrtpConfig, SrtpReceiver, SrtpSender, SrtpSuite};

    const WAIT: Duration = Duration::from_secs(5);

    /// A leg: our socket, and the far end's socket that its session sends to.
    fn leg(ssrc: u32, next: (u16, u32), held: bool) -> (RelayLeg, StdSocket) {
        leg_with_srtp(ssrc, next, held, None)
    }

    fn leg_with_srtp(
        ssrc: u32,
        next: (u16, u32),
        held: bool,
        srtp: Option<SrtpConfig>,
    ) -> (RelayLeg, StdSocket) {
        let far = StdSocket::bind("127.0.0.1:0").unwrap();
        far.set_read_timeout(Some(WAIT)).unwrap();
        let ours = StdSocket::bind("127.0.0.1:0").unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut config = SessionConfig::new(Codec::Pcmu, 0, far.local_addr().unwrap());
        config.telephone_event = Some(101);
        config.srtp = srtp;
        let mut session = MediaSession::new(config, Instant::now(), SystemTime::now());
        let leg = RelayLeg {
            socket: ours,
            receiving: session.lend(),
            sending: RtpRelay::new(ssrc, 160, &[(0, 0), (101, 101)], next),
            held,
        };
        (leg, far)
    }

    /// A session's statistics once it has taken back what a relay received for it.
    fn stats_taken_back(receiving: RelayedLeg, far: &StdSocket) -> StreamStats {
        let config = SessionConfig::new(Codec::Pcmu, 0, far.local_addr().unwrap());
        let mut session = MediaSession::new(config, Instant::now(), SystemTime::now());
        session.take_back(receiving);
        session.stats()
    }

    fn send_audio(far: &StdSocket, sender: &mut RtpSender, to: SocketAddr, count: usize) {
        let mut buf = [0u8; 200];
        for _ in 0..count {
            let len = sender.write_audio(&mut buf, &[0x55; 160], 160).unwrap();
            far.send_to(&buf[..len], to).unwrap();
        }
    }

    fn receive(far: &StdSocket) -> (u32, u16, u8) {
        let mut buf = [0u8; 1500];
        let (len, _) = far.recv_from(&mut buf).unwrap();
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        assert_eq!(packet.payload(), &[0x55; 160]);
        (packet.ssrc(), packet.sequence(), packet.payload_type())
    }

    #[tokio::test]
    async fn relays_both_ways_rewritten_reports_a_star_and_gives_the_legs_back() {
        let engine = RelayEngine::start(2).unwrap();
        let (caller, caller_far) = leg(0xaaaa, (100, 1600), false);
        let (callee, callee_far) = leg(0xbbbb, (7000, 48_000), false);
        let (caller_address, callee_address) = (
            caller.socket.local_addr().unwrap(),
            callee.socket.local_addr().unwrap(),
        );
        let mut handle = engine.relay(caller, callee, Some(101)).unwrap();

        let mut from_caller = RtpSender::with_initial_state(0, 1, 40_000, 9);
        send_audio(&caller_far, &mut from_caller, caller_address, 3);
        let relayed: Vec<_> = (0..3).map(|_| receive(&callee_far)).collect();
        assert_eq!(
            relayed,
            [(0xbbbb, 7000, 0), (0xbbbb, 7001, 0), (0xbbbb, 7002, 0)],
            "the callee's SSRC and its own sequence numbers"
        );
        let mut from_callee = RtpSender::with_initial_state(0, 2, 9, 9);
        send_audio(&callee_far, &mut from_callee, callee_address, 2);
        let relayed: Vec<_> = (0..2).map(|_| receive(&caller_far)).collect();
        assert_eq!(relayed, [(0xaaaa, 100, 0), (0xaaaa, 101, 0)]);

        // A `*` from the caller is reported, not relayed.
        let mut buf = [0u8; 200];
        let star = TelephoneEvent {
            event: STAR_EVENT,
            end: false,
            volume: 10,
            duration: 160,
        };
        let len = from_caller
            .write_telephone_event(&mut buf, 101, 3 * 160, true, &star)
            .unwrap();
        caller_far.send_to(&buf[..len], caller_address).unwrap();
        let event = tokio::time::timeout(WAIT, handle.event()).await.unwrap();
        assert_eq!(event, Some(RelayEvent::StarPressed));
        assert!(handle.last_rtp(Side::Caller) > handle.last_rtp(Side::Callee));

        let [caller, callee] = handle.finish().await.unwrap();
        assert_eq!(caller.sending.next(), (102, 1600 + 2 * 160));
        assert_eq!(callee.sending.next(), (7003, 48_000 + 3 * 160));
        let caller_stats = stats_taken_back(caller.receiving, &caller_far);
        let callee_stats = stats_taken_back(callee.receiving, &callee_far);
        assert_eq!(
            (caller_stats.packets_received, caller_stats.packets_sent),
            (4, 2)
        );
        assert_eq!(
            (callee_stats.packets_received, callee_stats.packets_sent),
            (2, 3)
        );
        // The sockets are back in the caller's hands and work.
        caller.socket.set_nonblocking(false).unwrap();
        caller_far.send_to(&[9; 20], caller_address).unwrap();
        let mut back = [0u8; 64];
        caller.socket.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(caller.socket.recv_from(&mut back).unwrap().0, 20);
    }

    #[tokio::test]
    async fn an_srtp_leg_is_unprotected_and_reprotected_and_a_wrong_key_is_dropped_and_counted() {
        let engine = RelayEngine::start(1).unwrap();
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let (ours, theirs) = (MasterKey::random(), MasterKey::random());
        let keys = SrtpConfig {
            suite,
            local: ours,
            remote: theirs,
        };
        let (caller, caller_far) = leg(0xaaaa, (100, 1600), false);
        let (callee, callee_far) = leg_with_srtp(0xbbbb, (7000, 48_000), false, Some(keys));
        let (caller_address, callee_address) = (
            caller.socket.local_addr().unwrap(),
            callee.socket.local_addr().unwrap(),
        );
        let handle = engine.relay(caller, callee, None).unwrap();

        // Plain RTP from the caller reaches the callee protected with our key.
        send_audio(
            &caller_far,
            &mut RtpSender::with_initial_state(0, 1, 40_000, 9),
            caller_address,
            2,
        );
        let mut hears_us = SrtpReceiver::new(suite, &ours);
        for sequence in [7000, 7001] {
            let mut buf = [0u8; 1500];
            let (len, _) = callee_far.recv_from(&mut buf).unwrap();
            assert_eq!(len, 12 + 160 + 10, "an 80-bit tag");
            let plain = hears_us.unprotect(&mut buf[..len]).unwrap();
            let packet = RtpPacket::parse(&buf[..plain]).unwrap();
            assert_eq!((packet.ssrc(), packet.sequence()), (0xbbbb, sequence));
            assert_eq!(packet.payload(), &[0x55; 160]);
        }

        // SRTP from the callee under its key reaches the caller in the clear; a packet under
        // another key is dropped.
        let mut rtp = RtpSender::with_initial_state(0, 2, 9, 9);
        for key in [theirs, MasterKey::random(), theirs] {
            let mut buf = [0u8; 200];
            let len = rtp.write_audio(&mut buf, &[0x55; 160], 160).unwrap();
            let len = SrtpSender::new(suite, &key).protect(&mut buf, len).unwrap();
            callee_far.send_to(&buf[..len], callee_address).unwrap();
        }
        assert_eq!(receive(&caller_far), (0xaaaa, 100, 0));
        // The dropped packet leaves its gap in the sequence, as a lost one would.
        assert_eq!(receive(&caller_far), (0xaaaa, 102, 0));
        let [_, callee] = handle.finish().await.unwrap();
        let stats = stats_taken_back(callee.receiving, &callee_far);
        assert_eq!(
            (
                stats.packets_received,
                stats.srtp_auth_failures,
                stats.packets_sent
            ),
            (2, 1, 2)
        );
    }

    #[tokio::test]
    async fn nothing_is_sent_to_a_held_leg() {
        let engine = RelayEngine::start(1).unwrap();
        let (caller, caller_far) = leg(1, (1, 160), false);
        let (callee, callee_far) = leg(2, (1, 160), true);
        let caller_address = caller.socket.local_addr().unwrap();
        let callee_address = callee.socket.local_addr().unwrap();
        let handle = engine.relay(caller, callee, None).unwrap();
        send_audio(
            &caller_far,
            &mut RtpSender::with_initial_state(0, 5, 1, 0),
            caller_address,
            4,
        );
        // The held callee still sends; the caller hears it.
        send_audio(
            &callee_far,
            &mut RtpSender::with_initial_state(0, 6, 1, 0),
            callee_address,
            1,
        );
        assert_eq!(receive(&caller_far).0, 1);
        let [caller, callee] = handle.finish().await.unwrap();
        assert_eq!(
            stats_taken_back(caller.receiving, &caller_far).packets_received,
            4,
            "the caller's packets arrived"
        );
        assert_eq!(
            callee.sending.next(),
            (1, 160),
            "none went to the held callee"
        );
        callee_far.set_nonblocking(true).unwrap();
        assert!(callee_far.recv_from(&mut [0u8; 64]).is_err());
    }

    #[tokio::test]
    async fn a_backlog_longer_than_a_turn_is_relayed_whole_in_order() {
        let engine = RelayEngine::start(1).unwrap();
        let (caller, caller_far) = leg(1, (1, 160), false);
        let (callee, callee_far) = leg(2, (500, 160), false);
        let caller_address = caller.socket.local_addr().unwrap();
        // More than one turn's worth waits before the engine takes the legs.
        let backlog = BATCH * BATCHES_PER_TURN + 5;
        send_audio(
            &caller_far,
            &mut RtpSender::with_initial_state(0, 5, 1, 0),
            caller_address,
            backlog,
        );
        let handle = engine.relay(caller, callee, None).unwrap();
        let sequences: Vec<u16> = (0..backlog).map(|_| receive(&callee_far).1).collect();
        assert_eq!(sequences, (500..500 + backlog as u16).collect::<Vec<_>>());
        handle.finish().await.unwrap();
    }

    #[tokio::test]
    async fn a_handle_dropped_without_finishing_closes_the_legs() {
        let engine = RelayEngine::start(1).unwrap();
        let (caller, _caller_far) = leg(1, (1, 160), false);
        let (callee, _callee_far) = leg(2, (1, 160), false);
        let caller_address = caller.socket.local_addr().unwrap();
        drop(engine.relay(caller, callee, None).unwrap());
        let deadline = Instant::now() + WAIT;
        while StdSocket::bind(caller_address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the caller's socket is still open"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
