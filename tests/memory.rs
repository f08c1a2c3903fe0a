//! Per-call memory: what a leg's media holds, that it is made on demand for the codec the leg
//! uses, that nothing grows with the call's length, and a heap profile of one bridged call.
//!
//! A counting global allocator keeps the bytes live per thread (for the media sessions driven
//! here on virtual time) and in the whole process (for the bridged call through an in-process
//! server), and a table of the live allocations of 256 bytes or more, so that the call's
//! heap can be broken down by allocation (each owner allocates a size of its own: a jitter
//! buffer's payload room, an Opus encoder, a receive buffer). The figures are printed for the
//! notes (`cargo test --release --test memory -- --nocapture`); the assertions are about what
//! is held, not about speed.
//!
//! By owner (`benches/heap_profile.sh` runs the same bridged calls under heaptrack and prints
//! the table of the closing note): the call's task future and the media legs it holds were the
//! two largest blocks of a call (37 and 20 KB), now a few KB each; what remains is spread over
//! SIP, the store, the call core and the relay's bridge.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use callml::media::codec::{Codec, Decoder, Encoder};
use callml::media::library::Audio;
use callml::media::resample::FrameResampler;
use callml::media::rtp::RtpSender;
use callml::media::session::{MediaSession, PTIME, RelayedLeg, SessionConfig};
use callml::media::stream::RtpStream;
use callml::media::tone::sine;
use clap::Parser;
use common::app::{CustomerApp, Reply};
use common::callml::{TempDir, rtp_range};
use common::media_pair::deliver;
use common::sipp::{Sipp, require_peer};

struct CountingAllocator;

thread_local! {
    static THREAD_LIVE: Cell<i64> = const { Cell::new(0) };
}
static PROCESS_LIVE: AtomicI64 = AtomicI64::new(0);

/// Live allocations of [`LARGE`] bytes or more: (address, size); 0 marks a free entry.
const LARGE: usize = 256;
const TABLE: usize = 16_384;
static LARGE_ADDRESSES: [AtomicUsize; TABLE] = [const { AtomicUsize::new(0) }; TABLE];
static LARGE_SIZES: [AtomicUsize; TABLE] = [const { AtomicUsize::new(0) }; TABLE];

fn count(size: usize, sign: i64) {
    let bytes = sign * size as i64;
    let _ = THREAD_LIVE.try_with(|live| live.set(live.get() + bytes));
    PROCESS_LIVE.fetch_add(bytes, Ordering::Relaxed);
}

fn remember(address: usize, size: usize) {
    if size < LARGE {
        return;
    }
    let start = (address >> 4) % TABLE;
    for probe in 0..TABLE {
        let index = (start + probe) % TABLE;
        if LARGE_ADDRESSES[index]
            .compare_exchange(0, address, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            LARGE_SIZES[index].store(size, Ordering::Release);
            return;
        }
    }
}

fn forget(address: usize, size: usize) {
    if size < LARGE {
        return;
    }
    let start = (address >> 4) % TABLE;
    for probe in 0..TABLE {
        let index = (start + probe) % TABLE;
        if LARGE_ADDRESSES[index].load(Ordering::Acquire) == address {
            LARGE_SIZES[index].store(0, Ordering::Release);
            LARGE_ADDRESSES[index].store(0, Ordering::Release);
            return;
        }
    }
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
            remember(ptr as usize, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
            remember(ptr as usize, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        forget(ptr as usize, layout.size());
        count(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            forget(ptr as usize, layout.size());
            count(layout.size(), -1);
            count(new_size, 1);
            remember(new as usize, new_size);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn thread_live() -> i64 {
    THREAD_LIVE.with(Cell::get)
}

/// The live large allocations now, as size -> how many.
fn large_allocations() -> BTreeMap<usize, i64> {
    let mut sizes = BTreeMap::new();
    for size in &LARGE_SIZES {
        let size = size.load(Ordering::Acquire);
        if size != 0 {
            *sizes.entry(size).or_insert(0) += 1;
        }
    }
    sizes
}

/// Two legs of `codec` back to back for `ticks` ticks, each receiving what the other sends;
/// `bad` sends the first, every second, a packet of a payload type it did not negotiate and
/// one of its own far larger than any frame. Returns the bytes live on this thread after
/// `sample_at` ticks and at the end.
fn run_call(codec: Codec, ticks: usize, sample_at: usize, bad: bool) -> (i64, i64) {
    let a_address: SocketAddr = "127.0.0.1:20000".parse().unwrap();
    let b_address: SocketAddr = "127.0.0.1:30000".parse().unwrap();
    let payload_type = codec.static_payload_type().unwrap_or(111);
    let start = Instant::now();
    let mut a = MediaSession::new(
        SessionConfig::new(codec, payload_type, b_address),
        start,
        SystemTime::now(),
    );
    let mut b = MediaSession::new(
        SessionConfig::new(codec, payload_type, a_address),
        start,
        SystemTime::now(),
    );
    a.play(Audio::new(sine(440.0, 0.3, Duration::from_secs(10), 8000)));
    let mut stranger = RtpSender::new(if codec == Codec::Pcmu { 8 } else { 0 });
    let mut oversized = RtpSender::new(payload_type);
    let mut datagram = [0u8; 1500];
    let mut sampled = 0;
    let mut now = start;
    for tick in 0..ticks {
        if tick == sample_at {
            sampled = thread_live();
        }
        if tick % 500 == 0 {
            // The prompt ends and starts again: audio the whole call long.
            a.play(Audio::new(sine(440.0, 0.3, Duration::from_secs(10), 8000)));
        }
        a.tick(now);
        b.tick(now);
        deliver(&mut a, &mut b, a_address, &mut datagram, now);
        deliver(&mut b, &mut a, b_address, &mut datagram, now);
        if bad && tick % 50 == 25 {
            let len = stranger.write_audio(&mut datagram, &[0; 160], 160).unwrap();
            a.handle_rtp(&mut datagram[..len], b_address, now);
            let len = oversized
                .write_audio(&mut datagram, &[0; 1400], 160)
                .unwrap();
            a.handle_rtp(&mut datagram[..len], b_address, now);
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        now += PTIME;
    }
    (sampled, thread_live())
}

/// Bytes live on this thread for a session of `codec` as made, after `ticks` ticks with the
/// far end's packets, and after [`MediaSession::lend`].
fn session_bytes(codec: Codec, ticks: usize) -> (i64, i64, i64) {
    let far: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let payload_type = codec.static_payload_type().unwrap_or(111);
    let before = thread_live();
    let start = Instant::now();
    let mut session = MediaSession::new(
        SessionConfig::new(codec, payload_type, far),
        start,
        SystemTime::now(),
    );
    let made = thread_live() - before;
    let mut peer = MediaSession::new(
        SessionConfig::new(codec, payload_type, "127.0.0.1:40002".parse().unwrap()),
        start,
        SystemTime::now(),
    );
    let mut datagram = [0u8; 1500];
    let mut now = start;
    for _ in 0..ticks {
        peer.tick(now);
        while let Some(transmit) = peer.poll_transmit() {
            let len = transmit.payload.len();
            let rtcp = transmit.rtcp;
            datagram[..len].copy_from_slice(transmit.payload);
            if !rtcp {
                session.handle_rtp(&mut datagram[..len], far, now);
            }
        }
        session.tick(now);
        while session.poll_transmit().is_some() {}
        now += PTIME;
    }
    let peer_bytes = {
        let with_peer = thread_live();
        drop(peer);
        with_peer - thread_live()
    };
    let used = thread_live() - before;
    let lent = session.lend();
    let while_lent = thread_live() - before;
    drop(lent);
    assert!(peer_bytes > 0);
    (made, used, while_lent)
}

#[test]
fn a_leg_makes_coding_state_only_for_its_codec_and_gives_it_up_while_relayed() {
    let (pcmu_made, pcmu_used, pcmu_lent) = session_bytes(Codec::Pcmu, 100);
    let (g722_made, g722_used, g722_lent) = session_bytes(Codec::G722, 100);
    let (opus_made, opus_used, opus_lent) = session_bytes(Codec::Opus, 100);
    println!(
        "media session heap bytes (made / after 2 s of audio both ways / while lent to a relay):\n  \
         PCMU {pcmu_made} / {pcmu_used} / {pcmu_lent}\n  \
         G722 {g722_made} / {g722_used} / {g722_lent}\n  \
         Opus {opus_made} / {opus_used} / {opus_lent}"
    );
    // Made: no codec state yet, for any codec: the transmit ring (longer slots for Opus's
    // longer packets) and the jitter buffer's slots, without payload room.
    for made in [pcmu_made, g722_made, opus_made] {
        assert!(made < 8192, "a session as made holds {made} bytes");
    }
    type Make = Box<dyn Fn() -> Box<dyn std::any::Any>>;
    let owners: [(&str, Make); 6] = [
        (
            "Opus encoder at 16 kHz",
            Box::new(|| Box::new(Encoder::with_rate(Codec::Opus, 16_000).unwrap())),
        ),
        (
            "Opus decoder at 8 kHz",
            Box::new(|| Box::new(Decoder::with_rate(Codec::Opus, 8000).unwrap())),
        ),
        (
            "G.722 encoder",
            Box::new(|| Box::new(Encoder::new(Codec::G722))),
        ),
        (
            "G.722 decoder",
            Box::new(|| Box::new(Decoder::new(Codec::G722))),
        ),
        (
            "PCMU decoder",
            Box::new(|| Box::new(Decoder::new(Codec::Pcmu))),
        ),
        (
            "resampler 8 -> 16 kHz",
            Box::new(|| Box::new(FrameResampler::new(8000, 16_000))),
        ),
    ];
    for (owner, make) in owners {
        let before = thread_live();
        let made = make();
        println!("  {owner}: {} bytes", thread_live() - before);
        drop(made);
    }
    // In use: a PCMU leg holds no Opus state and no resampler — its jitter slots hold 60 ms of
    // G.711 (32 x 480 bytes) — where an Opus leg holds its encoder, decoder and resamplers.
    assert!(
        pcmu_used < 24 * 1024,
        "a PCMU leg in use holds {pcmu_used} bytes"
    );
    assert!(
        opus_used > pcmu_used + 32 * 1024,
        "Opus {opus_used} against PCMU {pcmu_used}"
    );
    // Lent to a relay: the coding state and the payload room are given back.
    for ((made, used), lent) in [
        ((pcmu_made, pcmu_used), pcmu_lent),
        ((g722_made, g722_used), g722_lent),
        ((opus_made, opus_used), opus_lent),
    ] {
        assert_eq!(lent, made, "lent, a leg holds what it held as made");
        assert!(lent < used, "{used} in use, {lent} lent");
    }
}

#[test]
fn a_leg_holds_inline_only_what_every_leg_uses() {
    // SRTP contexts (3.6 KB), a key string being sent (2 KB) are boxed when present: a leg's
    // stream sits in the call task's memory for the whole call, and in the relay engine's
    // table while relayed.
    let sizes = [
        ("MediaSession", std::mem::size_of::<MediaSession>()),
        ("RtpStream", std::mem::size_of::<RtpStream>()),
        ("RelayedLeg", std::mem::size_of::<RelayedLeg>()),
    ];
    println!("inline sizes: {sizes:?}");
    assert!(sizes[0].1 < 4096, "{sizes:?}");
    assert!(sizes[1].1 < 4096 + 128, "{sizes:?}");
    assert!(sizes[2].1 < 1024, "{sizes:?}");
}

#[test]
fn per_call_state_does_not_grow_with_call_length_nor_with_bad_packets() {
    // One hour of a G.711 call on virtual time, and ten minutes of a transcoded Opus one,
    // with a payload type that is not the leg's and an oversized packet every second.
    for (codec, minutes) in [(Codec::Pcmu, 60), (Codec::Opus, 10)] {
        let ticks = minutes * 60 * 50;
        let (after_a_minute, at_the_end) = run_call(codec, ticks, 60 * 50, true);
        println!(
            "{codec:?}: {after_a_minute} bytes live after 1 min, {at_the_end} after {minutes} min"
        );
        assert_eq!(
            after_a_minute, at_the_end,
            "{codec:?}: the call's memory changed between 1 and {minutes} min"
        );
    }
}

#[derive(Parser)]
struct ServeCommand {
    #[command(flatten)]
    args: callml::config::ServeArgs,
}

/// A far end's media, allocating nothing: the callee's sends back every packet it receives;
/// the caller's sends a PCMU packet every 20 ms to where callml's first packet came from (so
/// that, through the relay and the callee's echo, both legs receive RTP all along).
fn rtp_peer(stop: Arc<AtomicBool>, sends: bool) -> (u16, std::thread::JoinHandle<u64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PTIME)).unwrap();
    let port = socket.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut sender = RtpSender::new(0);
        let mut outgoing = [0u8; 200];
        let mut received = 0;
        let mut remote = None;
        let mut next_send = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                received += 1;
                remote.get_or_insert(from);
                if !sends {
                    let _ = socket.send_to(&buf[..len], from);
                }
            }
            if let Some(remote) = remote.filter(|_| sends && Instant::now() >= next_send) {
                let len = sender
                    .write_audio(&mut outgoing, &[0xff; 160], 160)
                    .unwrap();
                let _ = socket.send_to(&outgoing[..len], remote);
                next_send += PTIME;
            }
        }
        received
    });
    (port, thread)
}

/// The process's live bytes once they have held still for 300 ms (at most 5 s).
async fn settled_live() -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = PROCESS_LIVE.load(Ordering::Relaxed);
    let mut still_since = Instant::now();
    while Instant::now() < deadline && still_since.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = PROCESS_LIVE.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_of_one_bridged_call_by_allocation() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    let data = TempDir::new("memory");
    let callee = Sipp::listen(&sipp, "uas_answers.xml");
    app.serve(
        "/voice",
        Reply::xml(format!(
            r#"<Response><Dial timeLimit="3"><Sip>sip:bob@{};transport=udp</Sip></Dial></Response>"#,
            callee.addr()
        )),
    );
    app.serve("/status", Reply::status(204));
    let ports = rtp_range();
    let voice = app.url("/voice");
    let status = app.url("/status");
    let data_dir = data.path().to_str().unwrap().to_owned();
    let command = ServeCommand::parse_from([
        "serve",
        "--sip",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--rtp-ports",
        &ports,
        "--voice-url",
        &voice,
        "--status-callback",
        &status,
    ]);
    let config = callml::config::Config::load(command.args).unwrap();
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let server = callml::server::start(config, shutdown).await.unwrap();
    let sip = server.sip;

    let stop = Arc::new(AtomicBool::new(false));
    let mut figures = Vec::new();
    // The first call warms up what a server makes once (pools, caches, the relay workers);
    // the second is measured.
    for call in 1..=2usize {
        let (caller_port, caller_echo) = rtp_peer(Arc::clone(&stop), true);
        let (callee_port, callee_echo) = rtp_peer(Arc::clone(&stop), false);
        let callee = Sipp::listen(&sipp, "uas_answers.xml")
            .port(callee.addr().port())
            .key("rtp_port", callee_port);
        let callee = tokio::task::spawn_blocking(move || callee.run());
        let idle = settled_live().await;
        let idle_large = large_allocations();
        // The peak, sampled while the call runs, with the large allocations live at it.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = Arc::clone(&sampling);
            std::thread::spawn(move || {
                let mut peak = (i64::MIN, BTreeMap::new());
                while sampling.load(Ordering::Relaxed) {
                    let live = PROCESS_LIVE.load(Ordering::Relaxed);
                    if live > peak.0 {
                        peak = (live, large_allocations());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                peak
            })
        };
        let caller = Sipp::new(&sipp, "callml_hangs_up.xml", sip).key("rtp_port", caller_port);
        let caller = tokio::task::spawn_blocking(move || caller.run());
        caller.await.unwrap().assert_success();
        callee.await.unwrap().assert_success();
        let deadline = Instant::now() + Duration::from_secs(10);
        while app
            .requests_to("/status")
            .iter()
            .filter(|request| request.param("CallStatus") == Some("completed"))
            .count()
            < call
        {
            assert!(Instant::now() < deadline, "call {call} did not complete");
            let seen = app.requests_to("/status").len();
            app.wait_for("/status", seen + 1, Duration::from_secs(10))
                .await;
        }
        sampling.store(false, Ordering::Relaxed);
        let (peak, peak_large) = sampler.join().unwrap();
        let after = settled_live().await;
        stop.store(true, Ordering::Relaxed);
        let received = (caller_echo.join().unwrap(), callee_echo.join().unwrap());
        stop.store(false, Ordering::Relaxed);
        assert!(
            received.0 > 50 && received.1 > 50,
            "both far ends received media: {received:?}"
        );
        figures.push((idle, peak, after, idle_large, peak_large));
    }
    let (idle, peak, after, idle_large, peak_large) = figures.pop().unwrap();
    println!(
        "one bridged call: process heap live {idle} B idle, {peak} B at the call's peak (+{} B), \
         {after} B after it ended ({:+} B)",
        peak - idle,
        after - idle
    );
    println!("allocations of {LARGE} B or more live at the peak and not before (size x count):");
    let mut large_total = 0;
    for (size, count) in &peak_large {
        let extra = count - idle_large.get(size).copied().unwrap_or(0);
        if extra > 0 {
            large_total += *size as i64 * extra;
            println!("  {size:>7} B x {extra}");
        }
    }
    println!(
        "  = {large_total} B in large allocations, {} B in smaller ones",
        peak - idle - large_total
    );
    // No block of the call is large: its task's future was 37 KB (the call leg's stream held
    // twice over) and its two legs 20 KB in one block.
    let largest = peak_large
        .iter()
        .filter(|(size, count)| **count > idle_large.get(size).copied().unwrap_or(0))
        .map(|(size, _)| *size)
        .max()
        .unwrap_or(0);
    assert!(
        largest < 16 * 1024,
        "the call's largest block is {largest} B"
    );
    // When it ends the call gives back its task, its legs and their media (12 KB and more in
    // blocks of their own); what stays a while is its SIP transactions, kept 32 s after they
    // complete (RFC 3261 Timers D, J, L), and the store's and webhook client's bounded caches.
    assert!(
        peak - after > 24 * 1024,
        "only {} B of the call's {} B given back when it ended",
        peak - after,
        peak - idle
    );
    let _ = shutdown_tx.send(true);
    server.stopped().await;
}
