//! A leg's media setup: an RTP/RTCP port pair bound on the media address, the SDP this side
//! offers or answers with, and the stream once offer/answer settled (RFC 3264).

use tokio::net::UdpSocket;

use super::Services;
use crate::media::codec::Codec;
use crate::media::stream::RtpStream;
use crate::sip::sdp::{self, LocalMedia, Negotiated, SdpError, SessionDescription};

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
        let answer = SessionDescription::parse(answer).map_err(MediaFailure::unacceptable)?;
        let negotiated = sdp::accept_answer(&answer, codecs).map_err(MediaFailure::unacceptable)?;
        self.stream(&negotiated, services)
    }

    fn stream(
        self,
        negotiated: &Negotiated,
        services: &Services,
    ) -> Result<RtpStream, MediaFailure> {
        let mut config = negotiated.session_config().ok_or_else(|| MediaFailure {
            status: 488,
            reason: format!("codec {} is not available", negotiated.codec.encoding),
        })?;
        config.inactivity_timeout = services.config.media_timeout;
        Ok(RtpStream::with_config(self.rtp, Some(self.rtcp), config))
    }
}
