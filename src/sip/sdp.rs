//! Session descriptions (RFC 4566) and the offer/answer model (RFC 3264) for one audio stream.
//!
//! Parsing keeps what media needs: connection addresses (session and media level), the audio
//! `m=` line's port and payload types, `a=rtpmap`, `a=fmtp`, `a=ptime` and the direction
//! attributes. Answering picks the first payload type of the offer that callml supports
//! (RFC 3264 §6.1: the offerer's order is its preference) plus `telephone-event` (RFC 4733 §7)
//! at the chosen codec's clock rate when offered, and rejects other `m=` lines with port 0.
//! The answer keeps the offerer's payload type numbers, so dynamic types (Opus) are mapped per
//! leg; Opus is `opus/48000/2` with its `fmtp` (RFC 7587 §7).
//!
//! Offering ([`offer`]): the codecs in the order asked (`<Dial><Sip codecs>`), static payload
//! types for G.711 and G.722, [`OPUS_PAYLOAD_TYPE`] for Opus, and one `telephone-event` per
//! clock rate in use; [`accept_answer`] reads what the far end chose. G.729 is not built into
//! callml (no licence-clean implementation): it is never offered nor answered, and callers
//! asking for it should leave it out with a warning.
//!
//! SRTP keys (`a=crypto`, RFC 4568) are read into [`MediaDescription::crypto`] and chosen by
//! [`super::sdes`]: an answer keeps a secure offer's profile (`RTP/SAVP`) and answers its
//! first usable crypto line; our offers carry [`SrtpOffer`]'s lines when SRTP is offered.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use super::sdes::{self, CryptoAttribute, SrtpOffer};
use crate::media::codec::Codec;
use crate::media::session::SessionConfig;
use crate::media::srtp::{MasterKey, SrtpConfig};

/// Dynamic payload type callml offers Opus with.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Dynamic payload types callml offers `telephone-event` with, at 8000 and 48000 Hz.
pub const TELEPHONE_EVENT_8K: u8 = 101;
pub const TELEPHONE_EVENT_48K: u8 = 110;

/// Why an SDP body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP line {line}: {reason}")]
    Syntax { line: usize, reason: &'static str },
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("SDP audio stream has no connection address")]
    NoConnection,
    #[error("no codec in common (offered: {offered})")]
    NoCommonCodec { offered: String },
    /// An SRTP offer or answer whose keys callml cannot use.
    #[error("SRTP cannot be set up: {reason}")]
    SrtpUnusable { reason: String },
    /// Our offer required SRTP and the answer has no crypto line.
    #[error("SRTP was required (sips: target) and the answer has no a=crypto line")]
    SrtpRequired,
}

/// Media direction attribute (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction to answer with (RFC 3264 §6.1): sendonly ↔ recvonly.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub protocol: String,
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    pub direction: Direction,
    /// `a=crypto` lines (RFC 4568), in order.
    pub crypto: Vec<CryptoAttribute>,
}

impl MediaDescription {
    /// The rtpmap for a payload type, falling back to RFC 3551's static assignments.
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        if let Some(map) = self.rtpmaps.iter().find(|m| m.payload_type == payload_type) {
            return Some(map.clone());
        }
        let (encoding, clock_rate) = match payload_type {
            0 => ("PCMU", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            18 => ("G729", 8000),
            _ => return None,
        };
        Some(RtpMap {
            payload_type,
            encoding: encoding.into(),
            clock_rate,
            channels: 1,
        })
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin_session_id: u64,
    pub origin_version: u64,
    pub connection: Option<IpAddr>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut sdp = SessionDescription {
            origin_session_id: 0,
            origin_version: 0,
            connection: None,
            media: Vec::new(),
        };
        let mut saw_version = false;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.is_empty() {
                continue;
            }
            let syntax = |reason| SdpError::Syntax { line, reason };
            let (kind, value) = raw
                .split_once('=')
                .ok_or(syntax("expected <type>=<value>"))?;
            if kind.len() != 1 {
                return Err(syntax("type must be one letter"));
            }
            match kind {
                "v" => {
                    if value != "0" {
                        return Err(syntax("only v=0 is supported"));
                    }
                    saw_version = true;
                }
                "o" => {
                    let fields: Vec<&str> = value.split_whitespace().collect();
                    if fields.len() != 6 {
                        return Err(syntax("o= needs six fields"));
                    }
                    sdp.origin_session_id = fields[1].parse().unwrap_or(0);
                    sdp.origin_version = fields[2].parse().map_err(|_| syntax("bad o= version"))?;
                }
                "c" => {
                    let address = parse_connection(value).map_err(syntax)?;
                    match sdp.media.last_mut() {
                        Some(m) => m.connection = Some(address),
                        None => sdp.connection = Some(address),
                    }
                }
                "m" => {
                    let mut fields = value.split_whitespace();
                    let (Some(media), Some(port), Some(protocol)) =
                        (fields.next(), fields.next(), fields.next())
                    else {
                        return Err(syntax("m= needs media, port, protocol"));
                    };
                    let port = port
                        .split('/')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or(syntax("bad m= port"))?;
                    sdp.media.push(MediaDescription {
                        media: media.to_owned(),
                        port,
                        protocol: protocol.to_owned(),
                        formats: fields.map(str::to_owned).collect(),
                        connection: None,
                        rtpmaps: Vec::new(),
                        fmtps: Vec::new(),
                        ptime: None,
                        direction: Direction::SendRecv,
                        crypto: Vec::new(),
                    });
                }
                "a" => {
                    if let Some(m) = sdp.media.last_mut() {
                        parse_media_attribute(m, value).map_err(syntax)?;
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::Syntax {
                line: 1,
                reason: "missing v=0",
            });
        }
        Ok(sdp)
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&MediaDescription> {
        self.media.iter().find(|m| m.media == "audio")
    }
}

/// A `c=` line (RFC 4566 §5.7): `IN IP4` or `IN IP6` with a unicast address of that family.
/// A multicast address (with its TTL or count) or another address type cannot carry a call
/// here, so it is refused (the offer gets 488).
fn parse_connection(value: &str) -> Result<IpAddr, &'static str> {
    let mut fields = value.split_whitespace();
    let (Some("IN"), Some(kind), Some(address)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("bad c= line");
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| "c= address is not an IP address (or is multicast with a TTL)")?;
    match (kind, address) {
        (_, address) if address.is_multicast() => Err("c= address is multicast"),
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(address),
        ("IP4" | "IP6", _) => Err("c= address does not match its address type"),
        _ => Err("c= address type is not IP4 or IP6"),
    }
}

fn parse_media_attribute(m: &mut MediaDescription, value: &str) -> Result<(), &'static str> {
    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "rtpmap" => {
            let (pt, spec) = arg.split_once(' ').ok_or("bad rtpmap")?;
            let mut parts = spec.trim().split('/');
            let encoding = parts.next().filter(|e| !e.is_empty()).ok_or("bad rtpmap")?;
            let clock_rate = parts
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or("bad rtpmap clock rate")?;
            let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            m.rtpmaps.push(RtpMap {
                payload_type: pt.trim().parse().map_err(|_| "bad rtpmap payload type")?,
                encoding: encoding.to_owned(),
                clock_rate,
                channels,
            });
        }
        "fmtp" => {
            let (pt, params) = arg.split_once(' ').ok_or("bad fmtp")?;
            let pt = pt.trim().parse().map_err(|_| "bad fmtp payload type")?;
            m.fmtps.push((pt, params.trim().to_owned()));
        }
        "ptime" => m.ptime = arg.trim().parse().ok(),
        "crypto" => m.crypto.push(CryptoAttribute::parse(arg)?),
        "sendrecv" => m.direction = Direction::SendRecv,
        "sendonly" => m.direction = Direction::SendOnly,
        "recvonly" => m.direction = Direction::RecvOnly,
        "inactive" => m.direction = Direction::Inactive,
        _ => {}
    }
    Ok(())
}

/// A codec callml can send and receive, by its RTP encoding name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedCodec {
    pub encoding: &'static str,
    pub clock_rate: u32,
}

/// G.711 µ-law and A-law (RFC 3551 §4.5.14), the codecs every callml leg supports.
pub const G711: [SupportedCodec; 2] = [
    SupportedCodec {
        encoding: "PCMU",
        clock_rate: 8000,
    },
    SupportedCodec {
        encoding: "PCMA",
        clock_rate: 8000,
    },
];

/// Every codec callml can answer with: G.711, G.722 (RFC 3551 §4.5.2: clock rate 8000) and
/// Opus (RFC 7587: `opus/48000/2`).
pub const SUPPORTED: [SupportedCodec; 4] = [
    G711[0],
    G711[1],
    SupportedCodec {
        encoding: "G722",
        clock_rate: 8000,
    },
    SupportedCodec {
        encoding: "opus",
        clock_rate: 48_000,
    },
];

impl SupportedCodec {
    pub const fn of(codec: Codec) -> SupportedCodec {
        SupportedCodec {
            encoding: codec.encoding_name(),
            clock_rate: codec.clock_rate(),
        }
    }
}

/// What offer/answer settled for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: RtpMap,
    /// The far end's `fmtp` parameters for the codec (e.g. Opus `useinbandfec=1`).
    pub fmtp: Option<String>,
    /// Payload type of `telephone-event` when both sides use RFC 4733 events.
    pub telephone_event: Option<u8>,
    /// The clock rate the offer gave `telephone-event`: the codec's (RFC 4733 §2.1), or 8000
    /// beside a codec of another rate (phones offer Opus/48000 with telephone-event/8000).
    pub telephone_event_rate: u32,
    /// Where to send RTP (the offer's address and port); port 0 means the stream is disabled.
    pub remote: SocketAddr,
    /// Our direction for this stream.
    pub direction: Direction,
    /// SRTP keys, when the stream is encrypted.
    pub srtp: Option<SrtpConfig>,
}

/// Our side of the audio stream.
#[derive(Debug, Clone, Copy)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    pub session_id: u64,
    pub session_version: u64,
}

impl Negotiated {
    /// The media codec of the negotiated `rtpmap`.
    pub fn media_codec(&self) -> Option<Codec> {
        Codec::from_rtpmap(&self.codec.encoding, self.codec.clock_rate)
    }

    /// The media session settings this negotiation implies (codec, payload types, address).
    pub fn session_config(&self) -> Option<SessionConfig> {
        let mut config =
            SessionConfig::new(self.media_codec()?, self.codec.payload_type, self.remote);
        config.telephone_event = self.telephone_event;
        config.srtp = self.srtp;
        Some(config)
    }
}

/// The audio stream's parameters from a description (an offer, or an answer to ours):
/// the first payload type in `m=` order that is in `supported`, and `telephone-event` at the
/// same clock rate.
fn choose(
    description: &SessionDescription,
    supported: &[SupportedCodec],
) -> Result<(usize, Negotiated), SdpError> {
    let (index, audio) = description
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.media == "audio" && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    let address = audio
        .connection
        .or(description.connection)
        .ok_or(SdpError::NoConnection)?;
    let codec = audio
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| audio.rtpmap(pt))
        .find(|map| {
            supported.iter().any(|s| {
                s.encoding.eq_ignore_ascii_case(&map.encoding) && s.clock_rate == map.clock_rate
            })
        })
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: audio
                .formats
                .iter()
                .map(|f| {
                    f.parse::<u8>()
                        .ok()
                        .and_then(|pt| audio.rtpmap(pt))
                        .map_or_else(|| f.clone(), |m| m.encoding)
                })
                .collect::<Vec<_>>()
                .join(","),
        })?;
    // telephone-event at the codec's clock rate (RFC 4733 §2.1), else at 8000: keys are read
    // from their event codes and end bits whatever the clock.
    let events: Vec<&RtpMap> = audio
        .rtpmaps
        .iter()
        .filter(|m| {
            m.encoding.eq_ignore_ascii_case("telephone-event")
                && audio
                    .formats
                    .iter()
                    .any(|f| f == &m.payload_type.to_string())
        })
        .collect();
    let event = [codec.clock_rate, 8000]
        .iter()
        .find_map(|&rate| events.iter().find(|m| m.clock_rate == rate));
    let (telephone_event, telephone_event_rate) = match event {
        Some(map) => (Some(map.payload_type), map.clock_rate),
        None => (None, codec.clock_rate),
    };
    let fmtp = audio
        .fmtps
        .iter()
        .find(|(pt, _)| *pt == codec.payload_type)
        .map(|(_, params)| params.clone());
    Ok((
        index,
        Negotiated {
            codec,
            fmtp,
            telephone_event,
            telephone_event_rate,
            remote: SocketAddr::new(address, audio.port),
            direction: audio.direction.reversed(),
            srtp: None,
        },
    ))
}

/// Chooses the stream parameters for an offer and writes the answer (RFC 3264 §6); an SRTP
/// offer is answered with `srtp_key`, ours ([`sdes::answer_crypto`]).
pub fn answer(
    offer: &SessionDescription,
    supported: &[SupportedCodec],
    local: LocalMedia,
    srtp_key: MasterKey,
) -> Result<(String, Negotiated), SdpError> {
    let (index, mut negotiated) = choose(offer, supported)?;
    let audio = &offer.media[index];
    let crypto = sdes::answer_crypto(audio, srtp_key)?;
    let protocol = match &crypto {
        Some(_) if sdes::is_secure_profile(&audio.protocol) => audio.protocol.as_str(),
        _ => "RTP/AVP",
    };
    let mut body = session_header(local);
    for (i, m) in offer.media.iter().enumerate() {
        if i == index {
            negotiated.srtp = crypto.as_ref().map(|(_, config)| *config);
            let stream = AudioStream {
                port: local.port,
                protocol,
                ptime: audio.ptime,
                crypto: crypto.as_ref().map(|(line, _)| line),
            };
            write_audio(&mut body, &stream, &negotiated);
        } else {
            let _ = write!(
                body,
                "m={} 0 {} {}\r\n",
                m.media,
                m.protocol,
                m.formats.join(" ")
            );
        }
    }
    Ok((body, negotiated))
}

/// The payload type callml offers `codec` with.
pub fn offered_payload_type(codec: Codec) -> u8 {
    codec.static_payload_type().unwrap_or(OPUS_PAYLOAD_TYPE)
}

/// The payload type callml offers `telephone-event` with for a codec of `clock_rate`.
pub fn offered_telephone_event(clock_rate: u32) -> u8 {
    match clock_rate {
        48_000 => TELEPHONE_EVENT_48K,
        _ => TELEPHONE_EVENT_8K,
    }
}

/// An offer of one sendrecv audio stream with `codecs` in order of preference, and
/// `telephone-event` at each clock rate they use (RFC 3264 §5). Empty `codecs` offers G.711.
/// With `srtp`, its profile and crypto lines.
pub fn offer(codecs: &[Codec], local: LocalMedia, srtp: Option<&SrtpOffer>) -> String {
    let codecs = if codecs.is_empty() {
        &[Codec::Pcmu, Codec::Pcma][..]
    } else {
        codecs
    };
    let mut events: Vec<(u8, u32)> = Vec::new();
    for codec in codecs {
        let rate = codec.clock_rate();
        let event = (offered_telephone_event(rate), rate);
        if !events.contains(&event) {
            events.push(event);
        }
    }
    let mut body = session_header(local);
    let profile = srtp.map_or("RTP/AVP", SrtpOffer::profile);
    let _ = write!(body, "m=audio {} {profile}", local.port);
    let mut listed: Vec<u8> = Vec::new();
    for pt in codecs
        .iter()
        .map(|&codec| offered_payload_type(codec))
        .chain(events.iter().map(|&(pt, _)| pt))
    {
        if !listed.contains(&pt) {
            listed.push(pt);
            let _ = write!(body, " {pt}");
        }
    }
    body.push_str("\r\n");
    let mut written: Vec<Codec> = Vec::new();
    for &codec in codecs {
        if written.contains(&codec) {
            continue;
        }
        written.push(codec);
        let pt = offered_payload_type(codec);
        let _ = write!(
            body,
            "a=rtpmap:{pt} {}/{}",
            codec.encoding_name(),
            codec.clock_rate()
        );
        if codec.rtpmap_channels() > 1 {
            let _ = write!(body, "/{}", codec.rtpmap_channels());
        }
        body.push_str("\r\n");
        if let Some(fmtp) = codec.fmtp() {
            let _ = write!(body, "a=fmtp:{pt} {fmtp}\r\n");
        }
    }
    for (pt, rate) in events {
        let _ = write!(
            body,
            "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    for line in srtp.iter().flat_map(|srtp| srtp.lines()) {
        line.write(&mut body);
    }
    body.push_str("a=ptime:20\r\na=sendrecv\r\n");
    body
}

/// Reads the answer to an [`offer`] of `offered` codecs (and `srtp`): what the far end chose,
/// with its payload types (which RFC 3264 says should be ours, but some answerers renumber)
/// and its SRTP key ([`sdes::accept_crypto`]).
pub fn accept_answer(
    answer: &SessionDescription,
    offered: &[Codec],
    srtp: Option<&SrtpOffer>,
) -> Result<Negotiated, SdpError> {
    let supported: Vec<SupportedCodec> = offered
        .iter()
        .map(|&codec| SupportedCodec::of(codec))
        .collect();
    let (index, mut negotiated) = choose(answer, &supported)?;
    negotiated.srtp = sdes::accept_crypto(&answer.media[index], srtp)?;
    Ok(negotiated)
}

fn session_header(local: LocalMedia) -> String {
    let family = if local.address.is_ipv6() {
        "IP6"
    } else {
        "IP4"
    };
    format!(
        "v=0\r\no=callml {} {} IN {family} {addr}\r\ns=callml\r\nc=IN {family} {addr}\r\nt=0 0\r\n",
        local.session_id,
        local.session_version,
        addr = local.address,
    )
}

/// How an answer's audio stream is written besides what was negotiated.
struct AudioStream<'a> {
    port: u16,
    protocol: &'a str,
    ptime: Option<u32>,
    crypto: Option<&'a CryptoAttribute>,
}

fn write_audio(body: &mut String, stream: &AudioStream<'_>, n: &Negotiated) {
    let _ = write!(
        body,
        "m=audio {} {} {}",
        stream.port, stream.protocol, n.codec.payload_type
    );
    if let Some(te) = n.telephone_event {
        let _ = write!(body, " {te}");
    }
    body.push_str("\r\n");
    let _ = write!(
        body,
        "a=rtpmap:{} {}/{}",
        n.codec.payload_type, n.codec.encoding, n.codec.clock_rate
    );
    if n.codec.channels > 1 {
        let _ = write!(body, "/{}", n.codec.channels);
    }
    body.push_str("\r\n");
    if let Some(fmtp) = n.media_codec().and_then(Codec::fmtp) {
        let _ = write!(body, "a=fmtp:{} {fmtp}\r\n", n.codec.payload_type);
    }
    if let Some(te) = n.telephone_event {
        let _ = write!(
            body,
            "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} 0-16\r\n",
            n.telephone_event_rate
        );
    }
    if let Some(line) = stream.crypto {
        line.write(body);
    }
    let _ = write!(body, "a=ptime:{}\r\n", stream.ptime.unwrap_or(20));
    let _ = write!(body, "a={}\r\n", n.direction.attribute());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::srtp::SrtpSuite;

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    fn local() -> LocalMedia {
        LocalMedia {
            address: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 42,
            session_version: 1,
        }
    }

    #[test]
    fn multicast_and_unknown_connection_addresses_are_refused() {
        for (line, reason) in [
            ("c=IN IP4 224.2.1.1", "c= address is multicast"),
            (
                "c=IN IP4 224.2.1.1/127",
                "c= address is not an IP address (or is multicast with a TTL)",
            ),
            ("c=IN IP6 ff15::101", "c= address is multicast"),
            ("c=IN ATM 10.0.0.1", "c= address type is not IP4 or IP6"),
            ("c=IN IP4 ::1", "c= address does not match its address type"),
            (
                "c=IN IP4 media.example.com",
                "c= address is not an IP address (or is multicast with a TTL)",
            ),
        ] {
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n{line}\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n"
            );
            assert_eq!(
                SessionDescription::parse(offer.as_bytes()),
                Err(SdpError::Syntax { line: 4, reason }),
                "{line}"
            );
        }
        let unicast = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 0\r\n";
        assert!(SessionDescription::parse(unicast.as_bytes()).is_ok());
    }

    #[test]
    fn answers_with_the_offerers_first_supported_codec_and_telephone_event() {
        let offer = SessionDescription::parse(SIPP_OFFER.as_bytes()).unwrap();
        let (body, n) = answer(&offer, &G711, local(), MasterKey::random()).unwrap();
        assert_eq!(n.codec.encoding, "PCMA");
        assert_eq!(n.codec.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert!(body.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{body}");
        assert!(
            body.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{body}"
        );
        assert!(body.contains("a=sendrecv\r\n"), "{body}");
        let parsed = SessionDescription::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.audio().unwrap().port, 20000);
    }

    #[test]
    fn static_payload_types_need_no_rtpmap_and_unsupported_ones_are_skipped() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 18 0\r\nc=IN IP4 10.0.0.2\r\na=sendonly\r\n";
        let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
        let (_, n) = answer(&offer, &G711, local(), MasterKey::random()).unwrap();
        assert_eq!(n.codec.encoding, "PCMU");
        assert_eq!(n.remote, "10.0.0.2:4000".parse().unwrap());
        assert_eq!(n.direction, Direction::RecvOnly);
        assert_eq!(n.telephone_event, None);
    }

    #[test]
    fn no_common_codec_names_what_was_offered() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 18 96\r\na=rtpmap:96 opus/48000/2\r\n";
        let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
        assert_eq!(
            answer(&offer, &G711, local(), MasterKey::random()).unwrap_err(),
            SdpError::NoCommonCodec {
                offered: "G729,opus".into()
            }
        );
    }

    #[test]
    fn other_streams_are_declined_with_port_zero() {
        let offer = format!("{SIPP_OFFER}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
        let (body, _) = answer(&offer, &G711, local(), MasterKey::random()).unwrap();
        assert!(body.contains("m=video 0 RTP/AVP 96\r\n"), "{body}");
    }

    const WIDEBAND_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 107 9 0 101 100\r\na=rtpmap:107 opus/48000/2\r\n\
        a=fmtp:107 useinbandfec=1;maxplaybackrate=16000\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=rtpmap:100 telephone-event/48000\r\n";

    #[test]
    fn opus_takes_a_telephone_event_at_8000_when_none_matches_its_clock() {
        let offer = SessionDescription::parse(
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
              m=audio 4000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\n\
              a=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        let (body, n) = answer(&offer, &SUPPORTED, local(), MasterKey::random()).unwrap();
        assert_eq!(n.media_codec(), Some(Codec::Opus));
        assert_eq!(
            (n.telephone_event, n.telephone_event_rate),
            (Some(101), 8000)
        );
        assert!(body.contains("m=audio 20000 RTP/AVP 96 101\r\n"), "{body}");
        assert!(
            body.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{body}"
        );
    }

    #[test]
    fn opus_keeps_the_offerers_dynamic_type_fmtp_and_matching_telephone_event() {
        let offer = SessionDescription::parse(WIDEBAND_OFFER.as_bytes()).unwrap();
        let (body, n) = answer(&offer, &SUPPORTED, local(), MasterKey::random()).unwrap();
        assert_eq!(n.media_codec(), Some(Codec::Opus));
        assert_eq!(n.codec.payload_type, 107);
        assert_eq!(n.telephone_event, Some(100), "telephone-event at 48000 Hz");
        assert_eq!(
            n.fmtp.as_deref(),
            Some("useinbandfec=1;maxplaybackrate=16000")
        );
        assert!(body.contains("m=audio 20000 RTP/AVP 107 100\r\n"), "{body}");
        assert!(body.contains("a=rtpmap:107 opus/48000/2\r\n"), "{body}");
        assert!(
            body.contains("a=fmtp:107 minptime=10;useinbandfec=1"),
            "{body}"
        );
        assert!(
            body.contains("a=rtpmap:100 telephone-event/48000\r\n"),
            "{body}"
        );
        let config = n.session_config().unwrap();
        assert_eq!(
            (config.codec, config.payload_type, config.telephone_event),
            (Codec::Opus, 107, Some(100))
        );
    }

    #[test]
    fn g722_answers_with_its_8000_clock_and_8000_telephone_event() {
        let offer = SessionDescription::parse(WIDEBAND_OFFER.as_bytes()).unwrap();
        let (body, n) = answer(
            &offer,
            &[G711[0], SUPPORTED[2]],
            local(),
            MasterKey::random(),
        )
        .unwrap();
        assert_eq!(n.media_codec(), Some(Codec::G722));
        assert_eq!(n.telephone_event, Some(101));
        assert!(body.contains("a=rtpmap:9 G722/8000\r\n"), "{body}");
        assert!(!body.contains("fmtp:9"), "{body}");
    }

    #[test]
    fn offers_codecs_in_the_order_asked_with_events_per_clock_rate() {
        let body = offer(&[Codec::Opus, Codec::G722, Codec::Pcmu], local(), None);
        assert!(
            body.contains("m=audio 20000 RTP/AVP 111 9 0 110 101\r\n"),
            "{body}"
        );
        assert!(
            body.contains("a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10"),
            "{body}"
        );
        assert!(
            body.contains("a=rtpmap:110 telephone-event/48000\r\n"),
            "{body}"
        );
        assert!(
            body.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{body}"
        );
        let parsed = SessionDescription::parse(body.as_bytes()).unwrap();
        assert_eq!(
            parsed.audio().unwrap().formats,
            ["111", "9", "0", "110", "101"]
        );
        let g711 = offer(&[], local(), None);
        assert!(g711.contains("RTP/AVP 0 8 101\r\n"), "{g711}");
        let once = offer(&[Codec::Pcma, Codec::Pcma], local(), None);
        assert!(once.contains("RTP/AVP 8 101\r\n"), "{once}");
        assert_eq!(once.matches("a=rtpmap:8 ").count(), 1);
    }

    #[test]
    fn an_answer_to_our_offer_is_read_with_its_payload_types() {
        let ours = [Codec::Opus, Codec::Pcmu];
        let reply = "v=0\r\no=- 2 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
            m=audio 7078 RTP/AVP 96 110\r\na=rtpmap:96 opus/48000/2\r\n\
            a=rtpmap:110 telephone-event/48000\r\n";
        let reply = SessionDescription::parse(reply.as_bytes()).unwrap();
        let n = accept_answer(&reply, &ours, None).unwrap();
        assert_eq!(
            (n.media_codec(), n.codec.payload_type),
            (Some(Codec::Opus), 96)
        );
        assert_eq!(n.telephone_event, Some(110));
        assert_eq!(n.remote, "10.0.0.9:7078".parse().unwrap());
        let g722_only = "v=0\r\no=- 2 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
            m=audio 7078 RTP/AVP 9\r\n";
        let g722_only = SessionDescription::parse(g722_only.as_bytes()).unwrap();
        assert!(matches!(
            accept_answer(&g722_only, &ours, None),
            Err(SdpError::NoCommonCodec { .. })
        ));
    }

    #[test]
    fn malformed_sdp_is_an_error_not_a_panic() {
        for bad in [
            &b"\xff\xfe"[..],
            b"v=1\r\n",
            b"o=x\r\n",
            b"v=0\r\nm=audio\r\n",
            b"v=0\r\nm=audio x RTP/AVP 0\r\n",
            b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n",
            b"v=0\r\nnot a line\r\n",
        ] {
            assert!(SessionDescription::parse(bad).is_err(), "{bad:?}");
        }
        let no_audio = SessionDescription::parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\n").unwrap();
        assert_eq!(
            answer(&no_audio, &G711, local(), MasterKey::random()).unwrap_err(),
            SdpError::NoAudio
        );
    }

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn srtp_offer(protocol: &str, crypto: &str) -> SessionDescription {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 {protocol} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{crypto}"
        );
        SessionDescription::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn an_srtp_offer_is_answered_on_its_profile_with_our_key_under_its_tag() {
        let crypto = format!(
            "a=crypto:3 F8_128_HMAC_SHA1_80 inline:{KEY}\r\n\
             a=crypto:4 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31\r\n\
             a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
        );
        let offer = srtp_offer("RTP/SAVP", &crypto);
        let ours = MasterKey::random();
        let (body, n) = answer(&offer, &G711, local(), ours).unwrap();
        assert!(body.contains("m=audio 20000 RTP/SAVP 0 101\r\n"), "{body}");
        let parsed = SessionDescription::parse(body.as_bytes()).unwrap();
        let lines = &parsed.audio().unwrap().crypto;
        assert_eq!(lines.len(), 1, "{body}");
        assert_eq!(
            (lines[0].tag, lines[0].usable().unwrap()),
            (4, (SrtpSuite::AesCm128HmacSha1_32, ours)),
            "the first usable line's tag and suite, with our key"
        );
        let srtp = n.srtp.unwrap();
        assert_eq!(
            (srtp.suite, srtp.local),
            (SrtpSuite::AesCm128HmacSha1_32, ours)
        );
        assert_eq!(
            srtp.remote,
            lines_of(&offer)[1].usable().unwrap().1,
            "their key"
        );
        assert_eq!(n.session_config().unwrap().srtp, Some(srtp));
    }

    fn lines_of(sdp: &SessionDescription) -> &[CryptoAttribute] {
        &sdp.audio().unwrap().crypto
    }

    #[test]
    fn an_srtp_offer_callml_cannot_serve_is_refused_never_answered_in_the_clear() {
        for (protocol, crypto, why) in [
            (
                "RTP/SAVP",
                format!("a=crypto:1 AEAD_AES_128_GCM inline:{KEY}\r\n"),
                "AEAD_AES_128_GCM",
            ),
            (
                "RTP/SAVP",
                format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4\r\n"),
                "MKI",
            ),
            (
                "RTP/SAVP",
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n".into(),
                "30 bytes",
            ),
            ("RTP/SAVP", String::new(), "without an a=crypto line"),
            ("RTP/SAVPF", String::new(), "without an a=crypto line"),
            (
                "UDP/TLS/RTP/SAVP",
                "a=fingerprint:sha-256 AB:CD\r\n".into(),
                "DTLS",
            ),
        ] {
            let offer = srtp_offer(protocol, &crypto);
            match answer(&offer, &G711, local(), MasterKey::random()) {
                Err(SdpError::SrtpUnusable { reason }) => {
                    assert!(reason.contains(why), "{protocol} {crypto}: {reason}")
                }
                other => panic!("{protocol} {crypto}: {other:?}"),
            }
        }
    }

    #[test]
    fn best_effort_srtp_on_rtp_avp_is_answered_with_keys_when_usable_else_in_the_clear() {
        let usable = srtp_offer(
            "RTP/AVP",
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"),
        );
        let (body, n) = answer(&usable, &G711, local(), MasterKey::random()).unwrap();
        assert!(body.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{body}");
        assert!(
            body.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{body}"
        );
        assert!(n.srtp.is_some());
        let unknown = srtp_offer(
            "RTP/AVP",
            &format!("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}\r\n"),
        );
        let (body, n) = answer(&unknown, &G711, local(), MasterKey::random()).unwrap();
        assert!(!body.contains("a=crypto"), "{body}");
        assert_eq!(n.srtp, None);
    }

    #[test]
    fn our_srtp_offers_and_what_their_answers_settle() {
        let required = SrtpOffer::new(true);
        let body = offer(&[Codec::Pcmu], local(), Some(&required));
        assert!(body.contains("m=audio 20000 RTP/SAVP 0 101\r\n"), "{body}");
        let parsed = SessionDescription::parse(body.as_bytes()).unwrap();
        assert_eq!(lines_of(&parsed).len(), 2);
        let optional = SrtpOffer::new(false);
        let body = offer(&[Codec::Pcmu], local(), Some(&optional));
        assert!(body.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{body}");
        assert_eq!(body.matches("a=crypto:").count(), 2, "{body}");

        // The callee picked our tag 2 (the 32-bit suite) and sent its own key.
        let theirs = MasterKey::random();
        let mut reply = String::new();
        CryptoAttribute::new(2, SrtpSuite::AesCm128HmacSha1_32, &theirs).write(&mut reply);
        let reply = srtp_offer("RTP/SAVP", &reply);
        let n = accept_answer(&reply, &[Codec::Pcmu], Some(&required)).unwrap();
        assert_eq!(
            n.srtp,
            Some(SrtpConfig {
                suite: SrtpSuite::AesCm128HmacSha1_32,
                local: required.keys[1],
                remote: theirs,
            })
        );
        // A tag we did not offer with that suite is refused.
        let mut wrong = String::new();
        CryptoAttribute::new(1, SrtpSuite::AesCm128HmacSha1_32, &theirs).write(&mut wrong);
        assert!(matches!(
            accept_answer(
                &srtp_offer("RTP/SAVP", &wrong),
                &[Codec::Pcmu],
                Some(&required)
            ),
            Err(SdpError::SrtpUnusable { .. })
        ));
        // A plain answer: refused when SRTP was required, taken when it was optional.
        let plain = srtp_offer("RTP/AVP", "");
        assert_eq!(
            accept_answer(&plain, &[Codec::Pcmu], Some(&required)).unwrap_err(),
            SdpError::SrtpRequired
        );
        let n = accept_answer(&plain, &[Codec::Pcmu], Some(&optional)).unwrap();
        assert_eq!(n.srtp, None);
        assert!(
            SdpError::SrtpRequired
                .to_string()
                .contains("SRTP was required")
        );
    }
}
