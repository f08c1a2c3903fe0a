//! HEP v3 (the Homer Encapsulation Protocol, <https://github.com/sipcapture/HEP>): each SIP
//! message callml sends or receives is mirrored to a collector (Homer, `sngrep -L udp:ADDR`)
//! as one UDP datagram: `HEP3`, the total length, then chunks of vendor 0 — address family
//! (1), IP protocol (2), IPv4/IPv6 source and destination (3–6), ports (7, 8), time in seconds
//! and microseconds (9, 10), protocol type 1 = SIP (11), capture agent id (12), the message
//! (15) and its Call-ID as correlation id (17). Messages on TLS connections are sent
//! decrypted, marked TCP. Pure: [`encode`] and [`decode`] work on bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sip::msg::Transport;

/// The capture agent id callml sends (chunk 12).
pub const AGENT_ID: u32 = 0x6361_6c6c; // "call"
/// The largest datagram sent: longer messages are not mirrored.
pub const MAX_PACKET: usize = 65_000;

/// One mirrored message, as [`decode`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepPacket {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// 17 (UDP) or 6 (TCP, also for TLS).
    pub ip_protocol: u8,
    pub seconds: u32,
    pub micros: u32,
    /// 1 for SIP.
    pub protocol_type: u8,
    pub agent_id: u32,
    pub payload: Vec<u8>,
    pub correlation_id: Option<String>,
}

fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((value.len() + 6) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// The HEP v3 datagram of one message, or `None` when it would not fit one datagram or the
/// two addresses are of different families.
pub fn encode(
    source: SocketAddr,
    destination: SocketAddr,
    transport: Transport,
    at: SystemTime,
    payload: &[u8],
    correlation_id: Option<&str>,
) -> Option<Vec<u8>> {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]);
    let protocol = if transport == Transport::Udp { 17 } else { 6 };
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            chunk(&mut out, 1, &[2]);
            chunk(&mut out, 2, &[protocol]);
            chunk(&mut out, 3, &from.octets());
            chunk(&mut out, 4, &to.octets());
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            chunk(&mut out, 1, &[10]);
            chunk(&mut out, 2, &[protocol]);
            chunk(&mut out, 5, &from.octets());
            chunk(&mut out, 6, &to.octets());
        }
        _ => return None,
    }
    chunk(&mut out, 7, &source.port().to_be_bytes());
    chunk(&mut out, 8, &destination.port().to_be_bytes());
    let seconds = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    chunk(&mut out, 9, &seconds.to_be_bytes());
    chunk(&mut out, 10, &since.subsec_micros().to_be_bytes());
    chunk(&mut out, 11, &[1]);
    chunk(&mut out, 12, &AGENT_ID.to_be_bytes());
    if payload.len() > MAX_PACKET {
        return None;
    }
    chunk(&mut out, 15, payload);
    if let Some(id) = correlation_id {
        chunk(&mut out, 17, id.as_bytes());
    }
    let total = u16::try_from(out.len()).ok()?;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    Some(out)
}

/// Reads a HEP v3 datagram (for tests and tools); `None` when it is not one.
pub fn decode(datagram: &[u8]) -> Option<HepPacket> {
    if datagram.get(..4)? != b"HEP3" {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*datagram.get(4)?, *datagram.get(5)?]));
    let body = datagram.get(6..total)?;
    let mut at = 0;
    let (mut source_ip, mut destination_ip) = (None, None);
    let (mut source_port, mut destination_port) = (0, 0);
    let mut packet = HepPacket {
        source: SocketAddr::from(([0, 0, 0, 0], 0)),
        destination: SocketAddr::from(([0, 0, 0, 0], 0)),
        ip_protocol: 0,
        seconds: 0,
        micros: 0,
        protocol_type: 0,
        agent_id: 0,
        payload: Vec::new(),
        correlation_id: None,
    };
    while at + 6 <= body.len() {
        let kind = u16::from_be_bytes([body[at + 2], body[at + 3]]);
        let length = usize::from(u16::from_be_bytes([body[at + 4], body[at + 5]]));
        let value = body.get(at + 6..at + length)?;
        let u32_of = |v: &[u8]| v.try_into().ok().map(u32::from_be_bytes);
        match kind {
            2 => packet.ip_protocol = *value.first()?,
            3 => source_ip = Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
            4 => destination_ip = Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
            5 => source_ip = Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
            6 => destination_ip = Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
            7 => source_port = u16::from_be_bytes(value.try_into().ok()?),
            8 => destination_port = u16::from_be_bytes(value.try_into().ok()?),
            9 => packet.seconds = u32_of(value)?,
            10 => packet.micros = u32_of(value)?,
            11 => packet.protocol_type = *value.first()?,
            12 => packet.agent_id = u32_of(value)?,
            15 => packet.payload = value.to_vec(),
            17 => packet.correlation_id = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        at += length.max(6);
    }
    packet.source = SocketAddr::new(source_ip?, source_port);
    packet.destination = SocketAddr::new(destination_ip?, destination_port);
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_encoded_message_decodes_to_the_same_facts() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000);
        let from: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let to: SocketAddr = "127.0.0.2:5070".parse().unwrap();
        let datagram = encode(
            from,
            to,
            Transport::Tls,
            at,
            b"INVITE x SIP/2.0\r\n\r\n",
            Some("id@h"),
        )
        .unwrap();
        assert_eq!(&datagram[..4], b"HEP3");
        assert_eq!(
            usize::from(u16::from_be_bytes([datagram[4], datagram[5]])),
            datagram.len()
        );
        let packet = decode(&datagram).unwrap();
        assert_eq!(packet.source, from);
        assert_eq!(packet.destination, to);
        assert_eq!(packet.ip_protocol, 6, "TLS is mirrored as TCP");
        assert_eq!((packet.seconds, packet.micros), (1_700_000_000, 123_456));
        assert_eq!(packet.protocol_type, 1);
        assert_eq!(packet.agent_id, AGENT_ID);
        assert_eq!(packet.payload, b"INVITE x SIP/2.0\r\n\r\n");
        assert_eq!(packet.correlation_id.as_deref(), Some("id@h"));
    }

    #[test]
    fn ipv6_addresses_use_their_own_chunks() {
        let from: SocketAddr = "[::1]:5060".parse().unwrap();
        let to: SocketAddr = "[::1]:5070".parse().unwrap();
        let datagram = encode(from, to, Transport::Udp, SystemTime::now(), b"x", None).unwrap();
        let packet = decode(&datagram).unwrap();
        assert_eq!((packet.source, packet.destination), (from, to));
        assert_eq!(packet.ip_protocol, 17);
        let mixed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            encode(from, mixed, Transport::Udp, SystemTime::now(), b"x", None),
            None
        );
    }

    #[test]
    fn truncated_datagrams_are_refused() {
        let from: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let datagram = encode(from, from, Transport::Udp, SystemTime::now(), b"abc", None).unwrap();
        assert_eq!(decode(&datagram[..datagram.len() - 1]), None);
        assert_eq!(decode(b"HEP2"), None);
    }
}
