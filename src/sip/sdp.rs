//! Session descriptions (RFC 4566) and the offer/answer model (RFC 3264) for one audio stream.
//!
//! Parsing keeps what media needs: connection addresses (session and media level), the audio
//! `m=` line's port and payload types, `a=rtpmap`, `a=fmtp`, `a=ptime` and the direction
//! attributes. Answering picks the first payload type of the offer that callml supports
//! (RFC 3264 §6.1: the offerer's order is its preference) plus `telephone-event` (RFC 4733 §7)
//! when offered, and rejects other `m=` lines with port 0.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

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
                    let address = parse_connection(value).ok_or(syntax("bad c= line"))?;
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

fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut fields = value.split_whitespace();
    let (Some("IN"), Some(_), Some(address)) = (fields.next(), fields.next(), fields.next()) else {
        return None;
    };
    address.split('/').next()?.parse().ok()
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

/// What offer/answer settled for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: RtpMap,
    /// Payload type of `telephone-event` when both sides use RFC 4733 events.
    pub telephone_event: Option<u8>,
    /// Where to send RTP (the offer's address and port); port 0 means the stream is disabled.
    pub remote: SocketAddr,
    /// Our direction for this stream.
    pub direction: Direction,
}

/// Our side of the audio stream.
#[derive(Debug, Clone, Copy)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    pub session_id: u64,
    pub session_version: u64,
}

/// Chooses the stream parameters for an offer and writes the answer (RFC 3264 §6).
pub fn answer(
    offer: &SessionDescription,
    supported: &[SupportedCodec],
    local: LocalMedia,
) -> Result<(String, Negotiated), SdpError> {
    let (index, audio) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.media == "audio" && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    let address = audio
        .connection
        .or(offer.connection)
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
    let telephone_event = audio
        .rtpmaps
        .iter()
        .find(|m| {
            m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == codec.clock_rate
        })
        .filter(|m| {
            audio
                .formats
                .iter()
                .any(|f| f == &m.payload_type.to_string())
        })
        .map(|m| m.payload_type);
    let direction = audio.direction.reversed();
    let negotiated = Negotiated {
        codec,
        telephone_event,
        remote: SocketAddr::new(address, audio.port),
        direction,
    };
    let mut body = session_header(local);
    for (i, m) in offer.media.iter().enumerate() {
        if i == index {
            write_audio(&mut body, local.port, &negotiated, audio.ptime);
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

/// An offer for one audio stream with `codecs` in order of preference and `telephone-event`
/// (RFC 3264 §5). Static payload types are used where RFC 3551 assigns one.
pub fn offer(codecs: &[SupportedCodec], local: LocalMedia) -> String {
    let mut maps: Vec<RtpMap> = Vec::new();
    let mut dynamic = 96u8;
    for codec in codecs {
        let payload_type = match (codec.encoding, codec.clock_rate) {
            ("PCMU", 8000) => 0,
            ("PCMA", 8000) => 8,
            ("G722", 8000) => 9,
            _ => {
                dynamic += 1;
                dynamic - 1
            }
        };
        maps.push(RtpMap {
            payload_type,
            encoding: codec.encoding.to_owned(),
            clock_rate: codec.clock_rate,
            channels: 1,
        });
    }
    let event = TELEPHONE_EVENT_PAYLOAD_TYPE;
    let mut body = session_header(local);
    let formats: Vec<String> = maps
        .iter()
        .map(|m| m.payload_type.to_string())
        .chain(std::iter::once(event.to_string()))
        .collect();
    let _ = write!(
        body,
        "m=audio {} RTP/AVP {}\r\n",
        local.port,
        formats.join(" ")
    );
    for map in &maps {
        let _ = write!(
            body,
            "a=rtpmap:{} {}/{}\r\n",
            map.payload_type, map.encoding, map.clock_rate
        );
    }
    let _ = write!(
        body,
        "a=rtpmap:{event} telephone-event/8000\r\na=fmtp:{event} 0-16\r\n"
    );
    body.push_str("a=ptime:20\r\na=sendrecv\r\n");
    body
}

/// The payload type callml offers for `telephone-event`.
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// What the answer to our offer settled (RFC 3264 §6.1: the answerer picks from our list).
pub fn accept_answer(
    supported: &[SupportedCodec],
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    let audio = answer.audio().ok_or(SdpError::NoAudio)?;
    let address = audio
        .connection
        .or(answer.connection)
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
            offered: audio.formats.join(","),
        })?;
    let telephone_event = audio
        .rtpmaps
        .iter()
        .find(|m| m.encoding.eq_ignore_ascii_case("telephone-event"))
        .map(|m| m.payload_type);
    Ok(Negotiated {
        codec,
        telephone_event,
        remote: SocketAddr::new(address, audio.port),
        direction: audio.direction.reversed(),
    })
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

fn write_audio(body: &mut String, port: u16, n: &Negotiated, ptime: Option<u32>) {
    let _ = write!(body, "m=audio {port} RTP/AVP {}", n.codec.payload_type);
    if let Some(te) = n.telephone_event {
        let _ = write!(body, " {te}");
    }
    body.push_str("\r\n");
    let _ = write!(
        body,
        "a=rtpmap:{} {}/{}\r\n",
        n.codec.payload_type, n.codec.encoding, n.codec.clock_rate
    );
    if let Some(te) = n.telephone_event {
        let _ = write!(
            body,
            "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} 0-16\r\n",
            n.codec.clock_rate
        );
    }
    let _ = write!(body, "a=ptime:{}\r\n", ptime.unwrap_or(20));
    let _ = write!(body, "a={}\r\n", n.direction.attribute());
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn answers_with_the_offerers_first_supported_codec_and_telephone_event() {
        let offer = SessionDescription::parse(SIPP_OFFER.as_bytes()).unwrap();
        let (body, n) = answer(&offer, &G711, local()).unwrap();
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
        let (_, n) = answer(&offer, &G711, local()).unwrap();
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
            answer(&offer, &G711, local()).unwrap_err(),
            SdpError::NoCommonCodec {
                offered: "G729,opus".into()
            }
        );
    }

    #[test]
    fn other_streams_are_declined_with_port_zero() {
        let offer = format!("{SIPP_OFFER}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
        let (body, _) = answer(&offer, &G711, local()).unwrap();
        assert!(body.contains("m=video 0 RTP/AVP 96\r\n"), "{body}");
    }

    #[test]
    fn our_offer_lists_codecs_in_order_and_accepts_the_answer() {
        let pcma_first = [G711[1], G711[0]];
        let body = offer(&pcma_first, local());
        assert!(body.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"), "{body}");
        assert!(
            body.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{body}"
        );
        let parsed = SessionDescription::parse(body.as_bytes()).unwrap();
        let (answer_body, _) = answer(
            &parsed,
            &G711,
            LocalMedia {
                port: 30000,
                ..local()
            },
        )
        .unwrap();
        let answer = SessionDescription::parse(answer_body.as_bytes()).unwrap();
        let n = accept_answer(&pcma_first, &answer).unwrap();
        assert_eq!(n.codec.encoding, "PCMA");
        assert_eq!(n.remote.port(), 30000);
        assert_eq!(n.telephone_event, Some(101));
        let refused = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
        let refused = SessionDescription::parse(refused.as_bytes()).unwrap();
        assert!(accept_answer(&G711, &refused).is_err());
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
            answer(&no_audio, &G711, local()).unwrap_err(),
            SdpError::NoAudio
        );
    }
}
