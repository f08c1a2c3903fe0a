//! One call leg's RTP stream (RFC 3550): the socket, the sender state, and the playout of
//! prompts. Every 20 ms tick sends one packet: the next 20 ms of the prompt, or silence when
//! none plays, so the far end's jitter buffer and NAT bindings stay fed. Buffers are allocated
//! once per stream: nothing is allocated per packet.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::codec::{Codec, Encoder};
use super::library::Audio;
use super::rtp::{RtpPacket, RtpSender};

/// Packetisation interval.
pub const PTIME: Duration = Duration::from_millis(20);
const MAX_FRAME: usize = 960;
const MAX_DATAGRAM: usize = 1500;

/// Counters kept on a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub send_errors: u64,
}

/// An RTP stream for one leg.
pub struct RtpStream {
    socket: UdpSocket,
    remote: SocketAddr,
    encoder: Encoder,
    sender: RtpSender,
    samples_per_packet: usize,
    prompt: Option<(Audio, usize)>,
    pcm: [i16; MAX_FRAME],
    payload: [u8; MAX_FRAME],
    datagram: [u8; MAX_DATAGRAM],
    received: Box<[u8; MAX_DATAGRAM]>,
    stats: StreamStats,
}

impl RtpStream {
    /// A stream sending `codec` with payload type `payload_type` to `remote`.
    pub fn new(socket: UdpSocket, remote: SocketAddr, codec: Codec, payload_type: u8) -> RtpStream {
        let samples_per_packet =
            (codec.clock_rate() as usize * PTIME.as_millis() as usize / 1000).min(MAX_FRAME);
        RtpStream {
            socket,
            remote,
            encoder: Encoder::new(codec)
                .unwrap_or_else(|_| Encoder::new(Codec::Pcmu).expect("G.711 has no failure")),
            sender: RtpSender::new(payload_type),
            samples_per_packet,
            prompt: None,
            pcm: [0; MAX_FRAME],
            payload: [0; MAX_FRAME],
            datagram: [0; MAX_DATAGRAM],
            received: Box::new([0; MAX_DATAGRAM]),
            stats: StreamStats::default(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Starts playing `audio` (8 kHz samples) from its beginning, replacing any prompt.
    pub fn play(&mut self, audio: Audio) {
        self.prompt = Some((audio, 0));
        self.sender.start_talkspurt();
    }

    /// Stops the current prompt; silence follows.
    pub fn stop(&mut self) {
        self.prompt = None;
    }

    pub fn is_playing(&self) -> bool {
        self.prompt.is_some()
    }

    /// Sends the next packet. Returns true when this packet finished the current prompt.
    pub fn tick(&mut self) -> bool {
        let frame = &mut self.pcm[..self.samples_per_packet];
        let mut finished = false;
        match &mut self.prompt {
            Some((audio, position)) => {
                let samples = audio.samples();
                let end = (*position + frame.len()).min(samples.len());
                let taken = end - *position;
                frame[..taken].copy_from_slice(&samples[*position..end]);
                frame[taken..].fill(0);
                *position = end;
                if end >= samples.len() {
                    finished = true;
                }
            }
            None => frame.fill(0),
        }
        if finished {
            self.prompt = None;
        }
        let encoded = self.encoder.encode(frame, &mut self.payload).unwrap_or(0);
        let samples = self.samples_per_packet as u32;
        match self
            .sender
            .write_audio(&mut self.datagram, &self.payload[..encoded], samples)
        {
            Ok(len) => match self.socket.try_send_to(&self.datagram[..len], self.remote) {
                Ok(_) => self.stats.packets_sent += 1,
                Err(_) => self.stats.send_errors += 1,
            },
            Err(_) => self.stats.send_errors += 1,
        }
        finished
    }

    /// Waits for the next datagram on the socket and accounts for it.
    pub async fn receive(&mut self) -> io::Result<()> {
        let (len, _from) = self.socket.recv_from(&mut self.received[..]).await?;
        if RtpPacket::parse(&self.received[..len]).is_ok() {
            self.stats.packets_received += 1;
        }
        Ok(())
    }
}
