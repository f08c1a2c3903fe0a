//! A leg's media setup: an RTP/RTCP port pair bound on the media address, the SDP this side
//! offers or answers with, and the stream once offer/answer settled (RFC 3264).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::Services;
use crate::media::codec::Codec;
use crate::media::session::SessionConfig;
use crate::media::stream::RtpStream;
use crate::sip::sdp::{self, LocalMedia, Negotiated, SdpError, SessionDescription};

/// What callml offers when it makes the offer (outbound calls, delayed-offer INVITEs), in
/// order of preference.
pub const OFFERED: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

/// Bound sockets of a leg whose stream is not negotiated yet.
pub struct LocalLeg {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    pub media: LocalMedia,
}

/// Why a leg has no media; the SIP status to refuse an offer with, and a reason.
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
    /// Binds the next free RTP/RTCP pair of the configured range, and waits until the
    /// runtime knows the sockets are writable: the stream's sends never wait, and a send on a
    /// socket whose readiness is not known yet would be dropped.
    pub async fn bind(services: &Services) -> Result<LocalLeg, MediaFailure> {
        let address = services.config.media_ip;
        let (rtp, rtcp) = services
            .ports
            .bind_pair(address)
            .map_err(|e| MediaFailure {
                status: 503,
                reason: format!("no RTP port: {e}"),
            })?;
        let port = rtp
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| MediaFailure {
                status: 503,
                reason: e.to_string(),
            })?;
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

    /// Answers `offer` (a received SDP body) with every codec callml supports.
    pub fn answer(
        self,
        offer: &[u8],
        services: &Services,
    ) -> Result<(RtpStream, String), MediaFailure> {
        let offer = SessionDescription::parse(offer).map_err(MediaFailure::unacceptable)?;
        let (answer, negotiated) =
            sdp::answer(&offer, &sdp::SUPPORTED, self.media).map_err(MediaFailure::unacceptable)?;
        Ok((self.stream(&negotiated, services)?, answer))
    }

    /// Our offer of `codecs` in order.
    pub fn offer(&self, codecs: &[Codec]) -> String {
        sdp::offer(codecs, self.media)
    }

    /// The stream, from the far end's answer to our offer of `codecs`.
    pub fn accept(
        self,
        answer: &[u8],
        codecs: &[Codec],
        services: &Services,
    ) -> Result<RtpStream, MediaFailure> {
        let config = answered_config(answer, codecs, services)?;
        Ok(RtpStream::with_config(self.rtp, Some(self.rtcp), config))
    }

    /// Our offer of `codecs` for an INVITE that had none (RFC 3264 §2, delayed offer), and a
    /// stream that sends nothing until [`RtpStream::answered`] gives it the answer from the
    /// ACK; meanwhile it is set up for the first of `codecs`, which answers usually keep.
    pub fn offer_first(
        self,
        codecs: &[Codec],
        services: &Services,
    ) -> Result<(RtpStream, String), MediaFailure> {
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
        config.inactivity_timeout = services.config.media_timeout;
        let offer = self.offer(codecs);
        Ok((
            RtpStream::with_config(self.rtp, Some(self.rtcp), config),
            offer,
        ))
    }

    fn stream(
        self,
        negotiated: &Negotiated,
        services: &Services,
    ) -> Result<RtpStream, MediaFailure> {
        let config = session_config(negotiated, services)?;
        Ok(RtpStream::with_config(self.rtp, Some(self.rtcp), config))
    }
}

/// The stream's configuration from the far end's `answer` to our offer of `codecs`.
pub fn answered_config(
    answer: &[u8],
    codecs: &[Codec],
    services: &Services,
) -> Result<SessionConfig, MediaFailure> {
    let answer = SessionDescription::parse(answer).map_err(MediaFailure::unacceptable)?;
    let negotiated = sdp::accept_answer(&answer, codecs).map_err(MediaFailure::unacceptable)?;
    session_config(&negotiated, services)
}

fn session_config(
    negotiated: &Negotiated,
    services: &Services,
) -> Result<SessionConfig, MediaFailure> {
    let mut config = negotiated.session_config().ok_or_else(|| MediaFailure {
        status: 488,
        reason: format!("codec {} is not available", negotiated.codec.encoding),
    })?;
    config.inactivity_timeout = services.config.media_timeout;
    Ok(config)
}
