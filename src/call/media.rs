//! A leg's media setup: an RTP/RTCP port pair bound on the media address ([`LocalLeg`]), the
//! SDP this side offers ([`MediaOffer`]: codecs, and SRTP keys as the party's URI asks) or
//! answers with (a fresh SRTP key for an SRTP offer), and the session the offer/answer
//! settles on (RFC 3264, RFC 4568). Negotiation ([`answered_config`], [`LocalLeg::answer`])
//! is pure; only binding and [`LocalLeg::into_stream`] touch sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::party::{Party, SrtpPolicy};
use crate::media::codec::Codec;
use crate::media::ports::PortAllocator;
use crate::media::session::SessionConfig;
use crate::media::srtp::MasterKey;
use crate::media::stream::RtpStream;
use crate::sip::sdes::SrtpOffer;
use crate::sip::sdp::{self, LocalMedia, Negotiated, SdpError, SessionDescription};

/// What callml offers when it makes the offer (outbound calls, delayed-offer INVITEs), in
/// order of preference.
pub const OFFERED: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

/// What callml offered on a leg, kept to read the answer with: the codecs in order of
/// preference and, when SRTP was offered, its keys and whether it is required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaOffer {
    pub codecs: Vec<Codec>,
    pub srtp: Option<SrtpOffer>,
    /// The INVITE carries no offer (a `delayed-offer` trunk): the 2xx brings the far end's
    /// offer, answered in the ACK ([`LocalLeg::answer_in_ack`]).
    pub delayed: bool,
}

impl MediaOffer {
    /// An offer of `codecs` over plain RTP.
    pub fn plain(codecs: Vec<Codec>) -> MediaOffer {
        MediaOffer {
            codecs,
            srtp: None,
            delayed: false,
        }
    }

    /// The offer to `party`: its codecs, and SRTP with fresh keys as its policy says.
    pub fn for_party(party: &Party) -> MediaOffer {
        let srtp = match party.srtp {
            SrtpPolicy::Off => None,
            SrtpPolicy::Optional => Some(SrtpOffer::new(false)),
            SrtpPolicy::Required => Some(SrtpOffer::new(true)),
        };
        MediaOffer {
            codecs: party.codecs.clone(),
            srtp,
            delayed: party.delayed_offer,
        }
    }
}

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

    /// Answers `offer` (a received SDP body) with every codec callml supports (and a fresh
    /// SRTP key when it offers SRTP): our SDP and the session it sets up.
    pub fn answer(
        &self,
        offer: &[u8],
        media_timeout: Duration,
    ) -> Result<(String, SessionConfig), MediaFailure> {
        let offer = SessionDescription::parse(offer).map_err(MediaFailure::unacceptable)?;
        let (answer, negotiated) =
            sdp::answer(&offer, &sdp::SUPPORTED, self.media, MasterKey::random())
                .map_err(MediaFailure::unacceptable)?;
        Ok((answer, session_config(&negotiated, media_timeout)?))
    }

    /// Our answer, for the ACK, to the offer a 2xx brought after our INVITE without one
    /// (RFC 3264 §5 answered in the ACK, RFC 3261 §13.2.2.4), and its session.
    pub fn answer_in_ack(
        &self,
        offer: &[u8],
        media_timeout: Duration,
    ) -> Result<(String, SessionConfig), MediaFailure> {
        answer_plain(offer, self.media, media_timeout)
    }

    /// Our SDP for `offer`.
    pub fn offer(&self, offer: &MediaOffer) -> String {
        sdp::offer(&offer.codecs, self.media, offer.srtp.as_ref())
    }

    /// Our offer of `codecs` for an INVITE that had none (RFC 3264 §2, delayed offer), and a
    /// session that sends nothing until the answer from the ACK renegotiates it; meanwhile it
    /// is set up for the first of `codecs`, which answers usually keep. The offer is plain
    /// RTP.
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
        (self.offer(&MediaOffer::plain(codecs.to_vec())), config)
    }

    /// The leg's stream, with the negotiated session.
    pub fn into_stream(self, config: SessionConfig) -> RtpStream {
        RtpStream::with_config(self.rtp, Some(self.rtcp), config)
    }
}

/// The session from the far end's `answer` to our `offer`; when our INVITE made no offer,
/// the session our answer in the ACK sets up for the far end's offer (the same choice
/// [`LocalLeg::answer_in_ack`] makes).
pub fn answered_config(
    answer: &[u8],
    offer: &MediaOffer,
    media_timeout: Duration,
) -> Result<SessionConfig, MediaFailure> {
    if offer.delayed {
        let nowhere = LocalMedia {
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            session_id: 0,
            session_version: 0,
        };
        return answer_plain(answer, nowhere, media_timeout).map(|(_, config)| config);
    }
    let answer = SessionDescription::parse(answer).map_err(MediaFailure::unacceptable)?;
    let negotiated = sdp::accept_answer(&answer, &offer.codecs, offer.srtp.as_ref())
        .map_err(MediaFailure::unacceptable)?;
    session_config(&negotiated, media_timeout)
}

/// Answers a trunk's offer on plain RTP: the codec choice is deterministic, so the call core
/// and the driver reach the same session; an SRTP offer is refused (trunks get plain RTP, and
/// a key chosen twice would differ).
fn answer_plain(
    offer: &[u8],
    local: LocalMedia,
    media_timeout: Duration,
) -> Result<(String, SessionConfig), MediaFailure> {
    let offer = SessionDescription::parse(offer).map_err(MediaFailure::unacceptable)?;
    if offer
        .audio()
        .is_some_and(|audio| audio.protocol.contains("SAVP"))
    {
        return Err(MediaFailure {
            status: 488,
            reason: "an SRTP offer in the 2xx to a delayed-offer INVITE".to_owned(),
        });
    }
    let (answer, negotiated) = sdp::answer(&offer, &sdp::SUPPORTED, local, MasterKey::random())
        .map_err(MediaFailure::unacceptable)?;
    Ok((answer, session_config(&negotiated, media_timeout)?))
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
