//! An RTP receiver for tests: binds a loopback port, records every packet with its arrival
//! time until the stream has been idle for a while, and decodes G.711 µ-law payloads.

use std::net::UdpSocket;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One received packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Duration,
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

/// A capture running in a thread.
pub struct RtpCapture {
    pub port: u16,
    thread: JoinHandle<Vec<Packet>>,
}

impl RtpCapture {
    /// Starts capturing; the capture ends after `idle` without packets (once one arrived) or
    /// after `limit` in all.
    pub fn start(idle: Duration, limit: Duration) -> RtpCapture {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind RTP capture");
        let port = socket.local_addr().expect("addr").port();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut packets: Vec<Packet> = Vec::new();
            let mut last = Instant::now();
            let mut buf = [0u8; 2048];
            while started.elapsed() < limit {
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) if n >= 12 && buf[0] >> 6 == 2 => {
                        last = Instant::now();
                        packets.push(Packet {
                            at: started.elapsed(),
                            payload_type: buf[1] & 0x7f,
                            marker: buf[1] & 0x80 != 0,
                            sequence: u16::from_be_bytes([buf[2], buf[3]]),
                            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                            payload: buf[12..n].to_vec(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if !packets.is_empty() && last.elapsed() > idle {
                            break;
                        }
                    }
                }
            }
            packets
        });
        RtpCapture { port, thread }
    }

    pub fn finish(self) -> Vec<Packet> {
        self.thread.join().expect("capture thread")
    }
}

/// ITU-T G.711 µ-law to linear.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let sign = code & 0x80;
    let exponent = (code >> 4) & 0x07;
    let mantissa = code & 0x0f;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let value = magnitude - 0x84;
    (if sign != 0 { -value } else { value }) as i16
}

/// The energy of a 440 Hz-like tone relative to the frame's total (Goertzel).
pub fn tone_ratio(samples: &[i16], frequency: f64, rate: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * frequency / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s = x + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - k * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        power / (energy * samples.len() as f64 / 2.0)
    }
}

/// ITU-T G.711 linear to µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    value = (value + BIAS).min(0x7fff);
    let exponent = (7 - (value.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (value >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// How many PCMU packets of `packets` carry mostly `frequency`.
pub fn packets_with_tone(packets: &[Packet], frequency: f64) -> usize {
    packets_with_tone_in(packets, frequency, Law::Mu)
}

/// How many packets of `packets` in `law` carry mostly `frequency`.
pub fn packets_with_tone_in(packets: &[Packet], frequency: f64, law: Law) -> usize {
    packets
        .iter()
        .filter(|p| p.payload_type == law.payload_type())
        .filter(|p| {
            let pcm: Vec<i16> = p.payload.iter().map(|&b| law.decode(b)).collect();
            tone_ratio(&pcm, frequency, 8000.0) > 0.8
        })
        .count()
}

/// How many packets of `packets` carry every frequency of `frequencies` with at least
/// `share` of the frame's energy each (a dual tone such as a ringback).
pub fn packets_with_tones(packets: &[Packet], frequencies: &[f64], share: f64) -> usize {
    packets
        .iter()
        .filter(|p| {
            let pcm: Vec<i16> = p.payload.iter().map(|&b| ulaw_to_linear(b)).collect();
            frequencies
                .iter()
                .all(|&f| tone_ratio(&pcm, f, 8000.0) > share)
        })
        .count()
}

/// G.711 flavour of an RTP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// PCMU, payload type 0.
    Mu,
    /// PCMA, payload type 8.
    A,
}

impl Law {
    fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Mu => linear_to_ulaw(sample),
            Law::A => linear_to_alaw(sample),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Mu => ulaw_to_linear(code),
            Law::A => alaw_to_linear(code),
        }
    }
}

/// ITU-T G.711 linear to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0xd5u8, i32::from(sample))
    } else {
        (0x55u8, -i32::from(sample) - 1)
    };
    let magnitude = magnitude.min(0x7fff);
    let code = if magnitude < 256 {
        (magnitude >> 4) as u8
    } else {
        let exponent = (31 - magnitude.leading_zeros() as i32 - 7).clamp(1, 7);
        ((exponent << 4) as u8) | ((magnitude >> (exponent + 3)) & 0x0f) as u8
    };
    code ^ sign
}

/// ITU-T G.711 A-law to linear.
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }) as i16
}

/// A symmetric RTP endpoint, as a phone is: once callml's first packet arrives it sends a
/// sine tone back from the same socket (20 ms packets) for as long as the call lasts, and
/// records everything it receives, until nothing has arrived for `idle`.
pub struct RtpPeer {
    pub port: u16,
    thread: JoinHandle<Vec<Packet>>,
}

impl RtpPeer {
    pub fn start(frequency: f64, idle: Duration, limit: Duration) -> RtpPeer {
        Self::start_with(Law::Mu, frequency, idle, limit)
    }

    /// [`start`](Self::start) sending `law`.
    pub fn start_with(law: Law, frequency: f64, idle: Duration, limit: Duration) -> RtpPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind RTP peer");
        let port = socket.local_addr().expect("addr").port();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut packets: Vec<Packet> = Vec::new();
            let mut last = Instant::now();
            let mut remote = None;
            let mut sent = 0u32;
            let mut next_send = Instant::now();
            let mut buf = [0u8; 2048];
            while started.elapsed() < limit {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if n >= 12 && buf[0] >> 6 == 2 {
                        last = Instant::now();
                        remote.get_or_insert(from);
                        packets.push(Packet {
                            at: started.elapsed(),
                            payload_type: buf[1] & 0x7f,
                            marker: buf[1] & 0x80 != 0,
                            sequence: u16::from_be_bytes([buf[2], buf[3]]),
                            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                            payload: buf[12..n].to_vec(),
                        });
                    }
                } else if !packets.is_empty() && last.elapsed() > idle {
                    break;
                }
                if let Some(to) = remote {
                    while Instant::now() >= next_send {
                        let mut packet = vec![
                            0x80,
                            law.payload_type(),
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0x12,
                            0x34,
                            0x56,
                            0x78,
                        ];
                        packet[2..4].copy_from_slice(&(sent as u16).to_be_bytes());
                        packet[4..8].copy_from_slice(&(sent * 160).to_be_bytes());
                        packet.extend((0..160).map(|i| {
                            let t = f64::from(sent * 160 + i) / 8000.0;
                            linear_to_ulaw(
                                (8000.0 * (2.0 * std::f64::consts::PI * frequency * t).sin())
                                    as i16,
                            )
                        }));
                        let _ = socket.send_to(&packet, to);
                        sent += 1;
                        next_send += Duration::from_millis(20);
                    }
                }
            }
            packets
        });
        RtpPeer { port, thread }
    }

    /// What the peer received.
    pub fn finish(self) -> Vec<Packet> {
        self.thread.join().expect("RTP peer thread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_law_round_trips_within_a_step() {
        for sample in [-32768i32, -20000, -1000, -1, 0, 1, 100, 1000, 20000, 32767] {
            let back = i32::from(alaw_to_linear(linear_to_alaw(sample as i16)));
            let step = (sample.abs() / 16).max(16);
            assert!((back - sample).abs() <= step, "{sample} -> {back}");
        }
    }
}
