//! A leg's media setup: an RTP/RTCP port pair bound on the media address ([`LocalLeg`]), the
//! SDP this side offers or answers with, and the session the offer/answer settles on
//! (RFC 3264). Negotiation ([`answered_config`], [`LocalLeg::answer`]) is pure; only binding
//! and [`LocalLeg::into_stream`] touch sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::media::codec::Codec;
use crate::media::ports::PortAllocator;
use crate::media::session::SessionConfig;
use crate::media::stream::RtpStream;
use crate::sip::sdp::{self, LocalMedia, Negotiated, SdpError, SessionDescription};

/// What callml offers when it makes the offer (outbound calls, delayed-offer INVITEs), in
/// order of preference.
pub const OFFERED: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

/// Bound sockets of a leg whose stream is not started yet.
pub struct LocalLeg {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    pub media: LocalMedia,
}

/// Why a leg has no media: the SIP status to refuse an offer with, and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MediaFailure {
    pub status: u16,
    pub reason: String,
}

impl MediaFailure {
    fn unacceptable(error: SdpError) -> MediaFailure {
        MediaFailure {
            status: 488,
            reason: format!("SDP refused: {error}"),
        }
    }
}

impl LocalLeg {
    /// Binds the next free RTP/RTCP pair of the configured range on `address`.
    pub fn bind(ports: &PortAllocator, address: IpAddr) -> Result<LocalLeg, MediaFailure> {
        let no_port = |e: std::io::Error| MediaFailure {
            status: 503,
            reason: format!("no RTP port: {e}"),
        };
        let (rtp, rtcp) = ports.bind_pair(address).map_err(no_port)?;
        let port = rtp.local_addr().map_err(no_port)?.port();
        Ok(LocalLeg {
            rtp,
            rtcp,
            media: LocalMedia {
                address,
                port,
                session_id: rand::random::<u32>().into(),
                session_version: 1,
            },
        })
    }

    /// Answers `offer` (a received SDP body) with every codec callml supports: our SDP and
    /// the session it sets up.
    pub fn answer(
        &self,
        offer: &[u8],
        media_timeout: Duration,
    ) -> Result<(String, SessionConfig), MediaFailure> {
        let offer = SessionDescription::parse(offer).map_err(MediaFailure::unacceptable)?;
        let (answer, negotiated) =
            sdp::answer(&offer, &sdp::SUPPORTED, self.media).map_err(MediaFailure::unacceptable)?;
        Ok((answer, session_config(&negotiated, media_timeout)?))
    }

    /// Our offer of `codecs` in order.
    pub fn offer(&self, codecs: &[Codec]) -> String {
        sdp::offer(codecs, self.media)
    }

    /// Our offer of `codecs` for an INVITE that had none (RFC 3264 §2, delayed offer), and a
    /// session that sends nothing until the answer from the ACK renegotiates it; meanwhile it
    /// is set up for the first of `codecs`, which answers usually keep.
    pub fn offer_first(
        &self,
        codecs: &[Codec],
        media_timeout: Duration,
    ) -> (String, SessionConfig) {
        let first = codecs.first().copied().unwrap_or(Codec::Pcmu);
        let unknown = SocketAddr::new(
            match self.media.address {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            },
            0,
        );
        let mut config = SessionConfig::new(first, sdp::offered_payload_type(first), unknown);
        config.telephone_event = Some(sdp::offered_telephone_event(first.clock_rate()));
        config.inactivity_timeout = media_timeout;
        (self.offer(codecs), config)
    }

    /// The leg's stream, with the negotiated session.
    pub fn into_stream(self, config: SessionConfig) -> RtpStream {
        RtpStream::with_config(self.rtp, Some(self.rtcp), config)
    }
}

/// The session from the far end's `answer` to our offer of `codecs`.
pub fn answered_config(
    answer: &[u8],
    codecs: &[Codec],
    media_timeout: Duration,
) -> Result<SessionConfig, MediaFailure> {
    let answer = SessionDescription::parse(answer).map_err(MediaFailure::unacceptable)?;
    let negotiated = sdp::accept_answer(&answer, codecs).map_err(MediaFailure::unacceptable)?;
    session_config(&negotiated, media_timeout)
}

fn session_config(
    negotiated: &Negotiated,
    media_timeout: Duration,
) -> Result<SessionConfig, MediaFailure> {
    let mut config = negotiated.session_config().ok_or_else(|| MediaFailure {
        status: 488,
        reason: format!("codec {} is not available", negotiated.codec.encoding),
    })?;
    config.inactivity_timeout = media_timeout;
    Ok(config)
}
