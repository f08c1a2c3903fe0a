//! The per-packet media paths allocate nothing once warmed up: a counting global allocator
//! watches RTP receive (parse, symmetric latch, jitter buffer), decode and concealment, DTMF
//! detection, encode and send (the 20 ms tick), RTCP, and same-codec relaying, for every codec,
//! in the clear and with SRTP/SRTCP (protect and unprotect in place) in both suites.
//!
//! The count is per thread, so other tests running in parallel do not disturb it.

#[path = "common/media_pair.rs"]
mod media_pair;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use callml::media::codec::Codec;
use callml::media::library::Audio;
use callml::media::relay::RtpRelay;
use callml::media::session::{MediaSession, PTIME, SessionConfig};
use callml::media::srtp::{MasterKey, SrtpConfig, SrtpSuite};
use callml::media::tone::sine;
use media_pair::deliver;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Two legs back to back; `ticks` ticks with every datagram crossing (a's RTP received on the
/// way by a relay engine's lent leg and relayed once more through an [`RtpRelay`]), encrypted
/// with `srtp` when given; returns the allocations made during the last `measured` ticks.
fn run(codec: Codec, srtp: Option<SrtpSuite>, ticks: usize, measured: usize) -> u64 {
    let (a_key, b_key) = (MasterKey::random(), MasterKey::random());
    let keys = |local, remote| {
        srtp.map(|suite| SrtpConfig {
            suite,
            local,
            remote,
        })
    };
    let a_address: SocketAddr = "127.0.0.1:20000".parse().unwrap();
    let b_address: SocketAddr = "127.0.0.1:30000".parse().unwrap();
    let payload_type = codec.static_payload_type().unwrap_or(111);
    let mut a_config = SessionConfig::new(codec, payload_type, b_address);
    a_config.telephone_event = Some(101);
    a_config.srtp = keys(a_key, b_key);
    let mut b_config = SessionConfig::new(codec, payload_type, a_address);
    b_config.telephone_event = Some(101);
    b_config.inband_dtmf = Some(true);
    b_config.srtp = keys(b_key, a_key);
    let start = Instant::now();
    let mut a = MediaSession::new(a_config, start, SystemTime::now());
    let mut b = MediaSession::new(b_config, start, SystemTime::now());
    // The relay engine's receiving side of a leg whose far end is a.
    let mut relayed_config = SessionConfig::new(codec, payload_type, a_address);
    relayed_config.telephone_event = Some(101);
    // It takes a's packets and protects what it relays as b expects them from a.
    relayed_config.srtp = keys(a_key, a_key);
    let mut relayed_leg = MediaSession::new(relayed_config, start, SystemTime::now()).lend();
    let mut relay = RtpRelay::new(
        0x5555,
        codec.timestamp_increment(20),
        &[(payload_type, payload_type), (101, 101)],
        (1, 160),
    );
    a.play(Audio::new(sine(440.0, 0.3, Duration::from_secs(60), 8000)));
    b.play(Audio::new(sine(1000.0, 0.3, Duration::from_secs(60), 8000)));
    let mut datagram = [0u8; 1500];
    let mut relayed = [0u8; 1500];
    let mut before = 0;
    let mut now = start;
    for tick in 0..ticks {
        if tick == ticks - measured {
            before = allocations();
        }
        if tick % 100 == 50 {
            // Keys now and then, through the RFC 4733 sender and receiver.
            a.send_digits("1#").unwrap();
        }
        a.tick(now);
        b.tick(now);
        while let Some(transmit) = a.poll_transmit() {
            let len = transmit.payload.len();
            let rtcp = transmit.rtcp;
            datagram[..len].copy_from_slice(transmit.payload);
            if rtcp {
                b.handle_rtcp(&mut datagram[..len], a_address, now);
            } else {
                let packet = relayed_leg
                    .receive(&mut datagram[..len], a_address, now)
                    .expect("a's packets are the lent leg's");
                let out = relay.relay(&packet, &mut relayed).unwrap();
                let out = relayed_leg.protect(&mut relayed, out).unwrap();
                relayed_leg.sent(out);
                b.handle_rtp(&mut relayed[..out], a_address, now);
            }
        }
        deliver(&mut b, &mut a, b_address, &mut datagram, now);
        while a.poll_event().is_some() || b.poll_event().is_some() {}
        now += PTIME;
    }
    let stats = b.stats();
    assert!(stats.packets_received as usize >= ticks, "{stats:?}");
    assert!(stats.rtcp_received > 0, "{stats:?}");
    assert_eq!((stats.srtp_auth_failures, stats.srtp_replays), (0, 0));
    assert!(a.stats().rtcp_received > 0, "{:?}", a.stats());
    allocations() - before
}

#[test]
fn receive_decode_encode_and_relay_allocate_nothing_per_packet() {
    for codec in Codec::ALL {
        for srtp in [
            None,
            Some(SrtpSuite::AesCm128HmacSha1_80),
            Some(SrtpSuite::AesCm128HmacSha1_32),
        ] {
            // Warm-up: the first ticks size resampler and jitter state; then 30 s of call.
            let allocated = run(codec, srtp, 2000, 1500);
            assert_eq!(
                allocated, 0,
                "{codec:?} with SRTP {srtp:?} allocated {allocated} times in 1500 ticks"
            );
        }
    }
}
