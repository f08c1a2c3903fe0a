//! RTP echo endpoint that measures what it receives, for the bridge load benchmark
//! (`benches/bridge_load.sh`): it stands where a callee's media would be, echoes every datagram
//! back to its sender (as `sipp -rtp_echo` does, but one port per call), and counts, per stream,
//! the packets received, the packets lost (RFC 3550 §A.3: expected from the highest extended
//! sequence number minus received) and the packets that arrived late.
//!
//! Lateness: the caller (sipp `rtp_stream`) stamps packets with a timestamp that advances 160
//! units (20 ms) per packet from the wall clock at the start of the stream, and a relay only adds
//! a constant to it. A packet's transit is its arrival time minus its timestamp in time units; the
//! stream's earliest-arriving packet sets the baseline (the minimum transit) and a packet is late
//! when its transit exceeds that baseline by more than `--late-ms` (default 40 ms: two frames,
//! what a small jitter buffer absorbs). This counts the lateness of the whole path — the sender's
//! own scheduling included — so run it once without a relay for the baseline.
//!
//! SRTP (for the benchmark's SRTP modes): with `--srtp-key KEY` (base64 of a 30-byte master key
//! and salt, `AES_CM_128_HMAC_SHA1_80`) every packet the probe sends is protected with that key,
//! as the far end of an SRTP leg whose SDP carried KEY does. An echoed packet first loses the
//! sender's tag (`--received-tag`, 10 bytes) and is then protected whole, its payload still
//! under the sender's key: the relay under test authenticates and decrypts it all the same,
//! and the probe needs no key of the relay's (headers are in the clear, so the measurements
//! work unchanged).
//!
//! With `--stream` the probe stands where a caller's media would be instead: on each port it
//! waits for the first packet (callml's leg sends as soon as it answers), then sends a PCMU
//! stream to that packet's source, 160 bytes every 20 ms on a fixed timestamp schedule (as
//! sipp's `rtp_stream` does), until the end; it echoes nothing, and what it receives (the far
//! side's echo, relayed) is measured like the rest.
//!
//! Voiced packets: plain PCMU packets (payload type 0) with at least one sample above −36 dBFS
//! (a µ-law exponent of 3 or more), the audible ones — in a room, the proof that the mix a
//! participant receives carries the others' voices and not just silence.
//!
//! Usage: `rtp_probe --base PORT --count N [--step 4] [--seconds S] [--late-ms 40]
//! [--srtp-key KEY] [--received-tag 10] [--stream]`; listens on 127.0.0.1 ports BASE,
//! BASE+STEP, ... (N of them), prints `listening` once bound, and after S seconds prints one
//! JSON object with the totals (and how many streams had a late packet: a few streams late
//! for most of their length point at their sender, many streams late a few packets each at a
//! stall on the path; `late_streams_worst_at_s` says when, as `[second since start, streams]`
//! pairs of each late stream's worst packet) and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use callml::media::srtp::{MasterKey, SrtpSender, SrtpSuite};
use tokio::net::UdpSocket;

/// The suite the probe protects with.
const SUITE: SrtpSuite = SrtpSuite::AesCm128HmacSha1_80;
/// One PCMU packet of the generated stream: 20 ms at 8 kHz.
const FRAME: usize = 160;

/// Bins of the transit histogram, 1 ms each, centred on the stream's first packet.
const HISTOGRAM_BINS: usize = 4096;
const HISTOGRAM_CENTRE: i64 = (HISTOGRAM_BINS / 2) as i64;

struct Options {
    base: u16,
    count: u16,
    step: u16,
    seconds: u64,
    late_ms: i64,
    srtp_key: Option<MasterKey>,
    received_tag: usize,
    stream: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        base: 0,
        count: 0,
        step: 4,
        seconds: 60,
        late_ms: 40,
        srtp_key: None,
        received_tag: 10,
        stream: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--stream" {
            options.stream = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--base" => options.base = value.parse().map_err(bad)?,
            "--count" => options.count = value.parse().map_err(bad)?,
            "--step" => options.step = value.parse().map_err(bad)?,
            "--seconds" => options.seconds = value.parse().map_err(bad)?,
            "--late-ms" => options.late_ms = value.parse().map_err(bad)?,
            "--received-tag" => options.received_tag = value.parse().map_err(bad)?,
            "--srtp-key" => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(&value)
                    .ok()
                    .and_then(|bytes| MasterKey::from_bytes(&bytes))
                    .ok_or_else(|| format!("--srtp-key needs base64 of 30 bytes: {value}"))?;
                options.srtp_key = Some(key);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.base == 0 || options.count == 0 || options.step == 0 {
        return Err("--base and --count are required".into());
    }
    Ok(options)
}

/// One RTP source seen on one port.
struct Stream {
    ssrc: u32,
    first_sequence: u16,
    /// Highest extended sequence number (cycles in the high bits).
    highest: u64,
    received: u64,
    first_timestamp: u32,
    /// Transit of the first packet, microseconds (arrival minus timestamp time).
    first_transit_us: i64,
    /// Transit relative to the first packet's, 1 ms bins.
    histogram: Box<[u32; HISTOGRAM_BINS]>,
    out_of_range: u64,
    /// The largest relative transit seen (µs) and when that packet arrived (µs from start).
    worst: (i64, i64),
    /// Plain PCMU packets with audible content.
    voiced: u64,
}

impl Stream {
    fn new(ssrc: u32, sequence: u16, timestamp: u32, arrival_us: i64) -> Stream {
        Stream {
            ssrc,
            first_sequence: sequence,
            highest: u64::from(sequence) + (1 << 16),
            received: 0,
            first_timestamp: timestamp,
            first_transit_us: arrival_us,
            histogram: Box::new([0; HISTOGRAM_BINS]),
            out_of_range: 0,
            worst: (i64::MIN, 0),
            voiced: 0,
        }
    }

    fn record(&mut self, sequence: u16, timestamp: u32, arrival_us: i64) {
        self.received += 1;
        let delta = sequence.wrapping_sub(self.highest as u16) as i16;
        if delta > 0 {
            self.highest += delta as u64;
        }
        // Timestamp units (8 kHz: 125 µs) since the first packet, signed across wrap-around.
        let units = i64::from(timestamp.wrapping_sub(self.first_timestamp) as i32);
        let transit_us = arrival_us - units * 125 - self.first_transit_us;
        if transit_us > self.worst.0 {
            self.worst = (transit_us, arrival_us);
        }
        let bin = transit_us.div_euclid(1000) + HISTOGRAM_CENTRE;
        match usize::try_from(bin) {
            Ok(bin) if bin < HISTOGRAM_BINS => self.histogram[bin] += 1,
            _ => self.out_of_range += 1,
        }
    }

    fn expected(&self) -> u64 {
        self.highest - (u64::from(self.first_sequence) + (1 << 16)) + 1
    }

    /// Packets whose transit exceeds the stream's minimum by more than `late_ms`, and the
    /// largest excess seen (ms).
    fn lateness(&self, late_ms: i64) -> (u64, i64) {
        let Some(min) = self.histogram.iter().position(|&n| n > 0) else {
            return (self.out_of_range, 0);
        };
        let max = self.histogram.iter().rposition(|&n| n > 0).unwrap_or(min);
        let late: u64 = self
            .histogram
            .iter()
            .enumerate()
            .filter(|(bin, _)| (*bin as i64 - min as i64) > late_ms)
            .map(|(_, &n)| u64::from(n))
            .sum();
        (late + self.out_of_range, max as i64 - min as i64)
    }
}

/// The streams of one port, by source address (locked only by that port's task until the end).
type Streams = Arc<Mutex<HashMap<SocketAddr, Stream>>>;

/// What a port does with what it receives besides measuring it.
#[derive(Clone, Copy)]
struct Role {
    srtp_key: Option<MasterKey>,
    received_tag: usize,
    stream: bool,
    until: Instant,
}

async fn serve(socket: UdpSocket, streams: Streams, started: Instant, role: Role) {
    let socket = Arc::new(socket);
    let mut buffer = [0u8; 2048];
    let mut protectors: HashMap<SocketAddr, SrtpSender> = HashMap::new();
    let mut streaming = false;
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let arrival_us = started.elapsed().as_micros() as i64;
        if len < 12 || buffer[0] >> 6 != 2 {
            continue;
        }
        if role.stream {
            if !streaming {
                streaming = true;
                tokio::spawn(stream_to(Arc::clone(&socket), from, role));
            }
        } else {
            echo(&socket, &mut buffer, len, from, &mut protectors, role);
        }
        let sequence = u16::from_be_bytes([buffer[2], buffer[3]]);
        let timestamp = u32::from_be_bytes([buffer[4], buffer[5], buffer[6], buffer[7]]);
        let ssrc = u32::from_be_bytes([buffer[8], buffer[9], buffer[10], buffer[11]]);
        let mut streams = streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stream = streams
            .entry(from)
            .or_insert_with(|| Stream::new(ssrc, sequence, timestamp, arrival_us));
        if stream.ssrc != ssrc {
            // A new source on the same address and port: a new stream.
            *stream = Stream::new(ssrc, sequence, timestamp, arrival_us);
        }
        stream.record(sequence, timestamp, arrival_us);
        if role.srtp_key.is_none() && buffer[1] & 0x7f == 0 && is_voiced(&buffer[12..len]) {
            stream.voiced += 1;
        }
    }
}

/// Whether a PCMU payload holds a sample above −36 dBFS (µ-law exponent 3 or more; the
/// silence code 0xFF has exponent 0).
fn is_voiced(payload: &[u8]) -> bool {
    payload.iter().any(|&code| (!code >> 4) & 0x07 >= 3)
}

/// Sends `buffer[..len]` back to `from`, protected again with the probe's key if it has one.
fn echo(
    socket: &UdpSocket,
    buffer: &mut [u8],
    len: usize,
    from: SocketAddr,
    protectors: &mut HashMap<SocketAddr, SrtpSender>,
    role: Role,
) {
    let len = match &role.srtp_key {
        Some(key) => {
            let protector = protectors
                .entry(from)
                .or_insert_with(|| SrtpSender::new(SUITE, key));
            let plain = len.saturating_sub(role.received_tag);
            match protector.protect(buffer, plain) {
                Ok(len) => len,
                Err(_) => return,
            }
        }
        None => len,
    };
    let _ = socket.try_send_to(&buffer[..len], from);
}

/// A PCMU stream to `to`, one packet per 20 ms on a fixed schedule, until the probe's end.
async fn stream_to(socket: Arc<UdpSocket>, to: SocketAddr, role: Role) {
    let mut protector = role.srtp_key.map(|key| SrtpSender::new(SUITE, &key));
    let ssrc: u32 = rand::random();
    let (mut sequence, mut timestamp): (u16, u32) = (rand::random(), rand::random());
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut packet = [0u8; 12 + FRAME + 10];
    // A 1 kHz tone in µ-law (eight samples a period): a steady payload, as a caller talking.
    for (index, byte) in packet[12..12 + FRAME].iter_mut().enumerate() {
        *byte = [0xff, 0xa0, 0x80, 0xa0, 0xff, 0x20, 0x00, 0x20][index % 8];
    }
    packet[0] = 0x80;
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    loop {
        ticks.tick().await;
        if Instant::now() >= role.until {
            return;
        }
        packet[2..4].copy_from_slice(&sequence.to_be_bytes());
        packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
        let mut buffer = packet;
        let len = match &mut protector {
            Some(protector) => match protector.protect(&mut buffer, 12 + FRAME) {
                Ok(len) => len,
                Err(_) => return,
            },
            None => 12 + FRAME,
        };
        let _ = socket.send_to(&buffer[..len], to).await;
        sequence = sequence.wrapping_add(1);
        timestamp = timestamp.wrapping_add(FRAME as u32);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("rtp_probe: {message}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let role = Role {
        srtp_key: options.srtp_key,
        received_tag: options.received_tag,
        stream: options.stream,
        until: started + Duration::from_secs(options.seconds),
    };
    let mut ports: Vec<Streams> = Vec::with_capacity(usize::from(options.count));
    for index in 0..options.count {
        let port = options.base + index * options.step;
        let socket = UdpSocket::bind(("127.0.0.1", port)).await?;
        let streams = Streams::default();
        ports.push(Arc::clone(&streams));
        tokio::spawn(serve(socket, streams, started, role));
    }
    println!("listening");
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;

    let (mut count, mut received, mut expected, mut late, mut late_streams, mut worst_ms) =
        (0, 0u64, 0u64, 0u64, 0u64, 0i64);
    let mut voiced = 0u64;
    // When the late streams' worst packets arrived: second since start -> streams.
    let mut worst_at: std::collections::BTreeMap<i64, u32> = std::collections::BTreeMap::new();
    for port in &ports {
        let streams = port.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for stream in streams.values() {
            count += 1;
            received += stream.received;
            voiced += stream.voiced;
            expected += stream.expected();
            let (stream_late, stream_worst) = stream.lateness(options.late_ms);
            late += stream_late;
            if stream_late > 0 {
                late_streams += 1;
                *worst_at.entry(stream.worst.1 / 1_000_000).or_default() += 1;
            }
            worst_ms = worst_ms.max(stream_worst);
        }
    }
    println!(
        "{{\"streams\": {}, \"received\": {received}, \"expected\": {expected}, \"lost\": {}, \"late\": {late}, \"late_streams\": {late_streams}, \"late_streams_worst_at_s\": {:?}, \"late_ms\": {}, \"worst_delay_ms\": {worst_ms}, \"voiced\": {voiced}}}",
        count,
        expected.saturating_sub(received),
        worst_at
            .iter()
            .map(|(second, streams)| [*second, i64::from(*streams)])
            .collect::<Vec<_>>(),
        options.late_ms,
    );
    std::process::exit(0);
}
