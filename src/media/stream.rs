//! One call leg's RTP stream: the RTP socket (and the RTCP socket on the next port, RFC 3550
//! §11) around a sans-IO [`MediaSession`]. The call task drives it with two calls in its
//! select loop: [`RtpStream::tick`] every 20 ms (play out a received frame, send one packet:
//! prompt, echo, digits or silence, so the far end's jitter buffer and NAT bindings stay fed)
//! and [`RtpStream::poll_receive`] whenever a datagram may arrive; then it drains
//! [`RtpStream::poll_event`]. Buffers are allocated once per stream: nothing per packet.
//!
//! A same-codec bridge lends the RTP socket to the relay engine ([`RtpStream::lend_socket`],
//! [`RtpStream::return_socket`]); meanwhile the stream sends no RTP and receives only RTCP.
//! A room takes the whole stream with both sockets ([`RtpStream::into_room_leg`],
//! [`RtpStream::from_room_leg`]): its worker drives the session until it gives it back.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use socket2::{SockAddr, SockRef};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use super::batch_recv::MAX_DATAGRAM;
use super::codec::Codec;
use super::library::Audio;
use super::play_stream::StreamedAudio;
use super::record::Recorder;
use super::room_engine::RoomLeg;
use super::session::{MediaEvent, MediaSession, RecordingTap, SendDigitsError, SessionConfig};

pub use super::session::{PTIME, StreamStats};

/// An RTP stream for one leg.
pub struct RtpStream {
    socket: RtpSocket,
    rtcp: Option<UdpSocket>,
    session: MediaSession,
    /// The datagram being received, RTP or RTCP (each is handed on before the next).
    received: Box<[u8; MAX_DATAGRAM]>,
}

/// The RTP socket: here, registered with the runtime, or lent to the relay engine.
#[derive(Debug)]
enum RtpSocket {
    Here(UdpSocket),
    Lent { local: SocketAddr },
}

impl std::fmt::Debug for RtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpStream")
            .field("socket", &self.socket)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl RtpStream {
    /// A stream sending `codec` with payload type `payload_type` to `remote`, with default
    /// settings and neither RTCP nor telephone events (so keys are detected in-band);
    /// [`with_config`](Self::with_config) sets the rest.
    pub fn new(socket: UdpSocket, remote: SocketAddr, codec: Codec, payload_type: u8) -> RtpStream {
        RtpStream::with_config(
            socket,
            None,
            SessionConfig::new(codec, payload_type, remote),
        )
    }

    /// A stream with its RTCP socket (normally the RTP port + 1, see
    /// [`PortAllocator::bind_pair`](super::ports::PortAllocator::bind_pair)) and configuration.
    pub fn with_config(
        socket: UdpSocket,
        rtcp: Option<UdpSocket>,
        config: SessionConfig,
    ) -> RtpStream {
        RtpStream {
            socket: RtpSocket::Here(socket),
            rtcp,
            session: MediaSession::new(config, Instant::now(), SystemTime::now()),
            received: Box::new([0; MAX_DATAGRAM]),
        }
    }

    /// The far end answered the offer this stream started with (its `remote` unspecified,
    /// nothing sent yet): the session takes the answer's destination, codec and events, and
    /// whatever is playing or recording goes on.
    pub fn answered(&mut self, config: SessionConfig) {
        self.session.renegotiate(config, Instant::now());
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            RtpSocket::Here(socket) => socket.local_addr(),
            RtpSocket::Lent { local } => Ok(*local),
        }
    }

    /// Takes the RTP socket out of the runtime for the relay engine; until
    /// [`return_socket`](Self::return_socket) the stream sends no RTP and receives only RTCP.
    pub fn lend_socket(&mut self) -> io::Result<std::net::UdpSocket> {
        let local = self.local_addr()?;
        match std::mem::replace(&mut self.socket, RtpSocket::Lent { local }) {
            RtpSocket::Here(socket) => socket.into_std(),
            RtpSocket::Lent { .. } => Err(io::Error::other("the RTP socket is already lent")),
        }
    }

    /// Takes the RTP socket back from the relay engine (registering it with the runtime).
    pub fn return_socket(&mut self, socket: std::net::UdpSocket) -> io::Result<()> {
        self.socket = RtpSocket::Here(UdpSocket::from_std(socket)?);
        Ok(())
    }

    /// Lends the whole stream to a room ([`RoomHandle::join`](super::room_engine::RoomHandle::join)):
    /// both sockets leave the runtime and the room's worker drives the session until
    /// [`from_room_leg`](Self::from_room_leg). On failure the stream comes back unchanged.
    pub fn into_room_leg(mut self: Box<Self>) -> Result<RoomLeg, (Box<RtpStream>, io::Error)> {
        let rtp = match self.lend_socket() {
            Ok(rtp) => rtp,
            Err(error) => return Err((self, error)),
        };
        let rtcp = match self.rtcp.take().map(UdpSocket::into_std).transpose() {
            Ok(rtcp) => rtcp,
            Err(error) => {
                // The RTCP socket is gone with the error; the RTP one goes back.
                let error = self.return_socket(rtp).err().unwrap_or(error);
                return Err((self, error));
            }
        };
        Ok(RoomLeg::new(self, rtp, rtcp))
    }

    /// Takes a stream back from a room ([`RoomHandle::leave`](super::room_engine::RoomHandle::leave)),
    /// its sockets registered with the runtime again: it goes on from where the room left it
    /// (sequence numbers, timestamps, statistics). Must be called within a tokio runtime.
    pub fn from_room_leg(leg: RoomLeg) -> io::Result<Box<RtpStream>> {
        let (mut stream, rtp, rtcp) = leg.into_parts();
        stream.return_socket(rtp)?;
        stream.rtcp = rtcp.map(UdpSocket::from_std).transpose()?;
        Ok(stream)
    }

    pub fn stats(&self) -> StreamStats {
        self.session.stats()
    }

    /// The media state itself, for what the stream does not wrap.
    pub fn session(&self) -> &MediaSession {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut MediaSession {
        &mut self.session
    }

    /// Starts playing `audio` (8 kHz samples) from its beginning, replacing any prompt.
    pub fn play(&mut self, audio: Audio) {
        self.session.play(audio);
    }

    /// Starts playing a stream as it is decoded, replacing any prompt.
    pub fn play_stream(&mut self, audio: StreamedAudio) {
        self.session.play_stream(audio);
    }

    /// Stops the current prompt and any keys being sent; silence follows.
    pub fn stop(&mut self) {
        self.session.stop();
    }

    pub fn is_playing(&self) -> bool {
        self.session.is_playing()
    }

    /// See [`MediaSession::send_digits`].
    pub fn send_digits(&mut self, digits: &str) -> Result<(), SendDigitsError> {
        self.session.send_digits(digits)
    }

    /// See [`MediaSession::feed`].
    pub fn feed(&mut self, frame: &[i16]) {
        self.session.feed(frame);
    }

    /// See [`MediaSession::received_frame`].
    pub fn received_frame(&self) -> &[i16] {
        self.session.received_frame()
    }

    /// See [`MediaSession::set_echo`].
    pub fn set_echo(&mut self, echo: bool) {
        self.session.set_echo(echo);
    }

    /// See [`MediaSession::start_recording`].
    pub fn start_recording(&mut self, tap: RecordingTap, recorder: Recorder) {
        self.session.start_recording(tap, recorder);
    }

    /// See [`MediaSession::stop_recording`].
    pub fn stop_recording(&mut self, tap: RecordingTap) -> Option<Recorder> {
        self.session.stop_recording(tap)
    }

    /// See [`MediaSession::is_recording`].
    pub fn is_recording(&self) -> bool {
        self.session.is_recording()
    }

    /// See [`MediaSession::detect_silence`].
    pub fn detect_silence(&mut self, timeout: Option<std::time::Duration>) {
        self.session.detect_silence(timeout);
    }

    /// The next event (keys, digits sent, inactivity, silence, latching).
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.session.poll_event()
    }

    /// Runs one 20 ms tick now and sends what it produced. Returns true when this tick
    /// finished the current prompt.
    pub fn tick(&mut self) -> bool {
        self.tick_at(Instant::now())
    }

    /// [`tick`](Self::tick) at a given instant.
    pub fn tick_at(&mut self, now: Instant) -> bool {
        let finished = self.session.tick(now);
        while let Some(transmit) = self.session.poll_transmit() {
            if transmit.destination.ip().is_unspecified() {
                // No address yet: our offer's answer has not come (a delayed offer).
                continue;
            }
            let socket = match (&self.rtcp, transmit.rtcp, &self.socket) {
                (Some(rtcp), true, _) => rtcp,
                (_, false, RtpSocket::Here(socket)) => socket,
                (None, true, _) | (_, false, RtpSocket::Lent { .. }) => continue,
            };
            // Straight to the socket, not through tokio's readiness: a socket just registered
            // again (back from a room or the relay engine) is not known writable until the
            // runtime's next poll, and the packet would be dropped for nothing.
            let sent = SockRef::from(socket)
                .send_to(transmit.payload, &SockAddr::from(transmit.destination));
            if sent.is_err() {
                self.session.send_failed();
            }
        }
        finished
    }

    /// Waits for the next datagram on the RTP or RTCP socket and hands it to the session
    /// (only RTCP while the RTP socket is lent).
    pub async fn receive(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_receive(cx)).await
    }

    /// Hands the next datagram waiting on the RTP socket (unless it is lent) or the RTCP
    /// socket to the session; `Pending` when none waits (the task is woken when one comes).
    /// The driver of a call polls every leg's stream this way in its one loop.
    pub fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let RtpSocket::Here(socket) = &self.socket {
            let mut buf = ReadBuf::new(&mut self.received[..]);
            if let Poll::Ready(received) = socket.poll_recv_from(cx, &mut buf) {
                let from = received?;
                let len = buf.filled().len();
                self.session
                    .handle_rtp(&mut self.received[..len], from, Instant::now());
                return Poll::Ready(Ok(()));
            }
        }
        if let Some(rtcp) = &self.rtcp {
            let mut buf = ReadBuf::new(&mut self.received[..]);
            if let Poll::Ready(received) = rtcp.poll_recv_from(cx, &mut buf) {
                let from = received?;
                let len = buf.filled().len();
                self.session
                    .handle_rtcp(&mut self.received[..len], from, Instant::now());
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::rtp::RtpPacket;
    use crate::media::tone::sine;

    #[tokio::test]
    async fn sends_and_receives_over_real_sockets_with_rtcp() {
        let (rtp_a, rtcp_a) = (
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        );
        // Sends are non-blocking: the sockets must have been seen writable once.
        rtp_a.writable().await.unwrap();
        rtcp_a.writable().await.unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut config = SessionConfig::new(Codec::Pcmu, 0, peer.local_addr().unwrap());
        config.remote_rtcp = Some(peer_rtcp.local_addr().unwrap());
        let mut stream = RtpStream::with_config(rtp_a, Some(rtcp_a), config);
        stream.play(Audio::new(sine(
            440.0,
            0.3,
            Duration::from_millis(100),
            8000,
        )));
        let start = Instant::now();
        let mut finished = 0;
        for tick in 0..300u32 {
            finished += u32::from(stream.tick_at(start + PTIME * tick));
        }
        assert_eq!(finished, 1);
        let mut buf = [0u8; 1500];
        let (len, _) = peer.recv_from(&mut buf).await.unwrap();
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        assert_eq!((packet.payload_type(), packet.payload().len()), (0, 160));
        let (len, _) = peer_rtcp.recv_from(&mut buf).await.unwrap();
        assert_eq!(buf[1], crate::media::rtcp::SR);
        assert!(len >= 28);

        // A packet back from the peer is received and counted.
        let mut sender = crate::media::rtp::RtpSender::new(0);
        let len = sender.write_audio(&mut buf, &[0xff; 160], 160).unwrap();
        peer.send_to(&buf[..len], stream.local_addr().unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), stream.receive())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stream.stats().packets_received, 1);
        assert_eq!(stream.stats().packets_sent, 300);
        assert_eq!(stream.stats().send_errors, 0);
    }
}
